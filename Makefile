# Bureau: `make run` and `make test` are the two commands; see README.md.
# Meson + Ninja do the building; this file only wraps them.

BUILD      ?= build
TEST_BUILD ?= build-test
BENCH_BUILD ?= build-bench
DATA       ?= ./bureau-data
LISTEN     ?= 127.0.0.1:8470

.PHONY: all deps build run test bench clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@scripts/deps.sh
	meson setup $(BUILD) --buildtype=debugoptimized -Dtests=disabled

build: $(BUILD)/build.ninja
	@ninja -C $(BUILD) bureau

run: build
	@scripts/run.sh $(BUILD)/bureau "$(DATA)" "$(LISTEN)"

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

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(BENCH_BUILD)
