# Bureau: `make run` and `make test` are the two commands; see README.md.
# Meson + Ninja do the building; this file only wraps them.

BUILD      ?= build
TEST_BUILD ?= build-test
BENCH_BUILD ?= build-bench
DEMO       ?= ./demo-data
LISTEN     ?= 127.0.0.1:8470

.PHONY: all deps build run test bench fuzz clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@scripts/deps.sh
	meson setup $(BUILD) --buildtype=debugoptimized -Dtests=disabled

build: $(BUILD)/build.ninja
	@ninja -C $(BUILD) bureau

run: build
	@scripts/run.sh $(BUILD)/bureau "$(DEMO)" "$(LISTEN)"

$(TEST_BUILD)/build.ninja:
	@scripts/deps.sh
	meson setup $(TEST_BUILD) --buildtype=debug -Db_sanitize=address,undefined \
	  -Dwerror=true -Dtests=enabled

test: $(TEST_BUILD)/build.ninja
	@ninja -C $(TEST_BUILD)
	@tests/run.sh $(TEST_BUILD)

$(BENCH_BUILD)/build.ninja:
	@scripts/deps.sh
	meson setup $(BENCH_BUILD) --buildtype=release -Dtests=disabled -Dbench=true

bench: $(BENCH_BUILD)/build.ninja
	@ninja -C $(BENCH_BUILD)
	@bench/run.sh $(BENCH_BUILD)

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

$(FUZZ_BUILD)/build.ninja:
	@scripts/deps.sh fuzz
	CC=clang meson setup $(FUZZ_BUILD) --buildtype=debug -Db_sanitize=address,undefined \
	  -Dtests=disabled -Dfuzz=true

# Runs each libFuzzer driver for FUZZ_SECONDS over its seed corpus.
fuzz: $(FUZZ_BUILD)/build.ninja
	@ninja -C $(FUZZ_BUILD)
	@for f in $(FUZZ_BUILD)/fuzz_*; do \
	  [ -f "$$f" ] && [ -x "$$f" ] || continue; \
	  n=$$(basename $$f); mkdir -p $(FUZZ_BUILD)/corpus-$$n; \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/fuzz/lsan.supp \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 $(FUZZ_BUILD)/corpus-$$n tests/fuzz/seeds/$$n || exit 1; \
	done

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(BENCH_BUILD) $(FUZZ_BUILD)
