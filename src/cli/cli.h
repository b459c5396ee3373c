/* The `bureau` command: shared option parsing, output and setup helpers.
 * Global options (--data, --json, --log-level, --help) may stand before or
 * after the subcommand. stdout carries only the promised output; errors and
 * notices go to stderr. Exit codes: 0 ok, 1 failure, 2 usage. */
#ifndef BUREAU_CLI_CLI_H
#define BUREAU_CLI_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "core/config.h"
#include "core/err.h"
#include "ledger/ledger.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#define CLI_MAX_OPTS 16
#define CLI_MAX_POS 8

typedef struct CliOpt {
    const char *name;  /* without the leading "--" */
    const char *arg;   /* NULL for a flag, else the argument's name for help */
    const char *help;
} CliOpt;

typedef struct CliCommand CliCommand;

typedef struct Cli {
    const char *data_dir;
    bool data_given; /* --data or BUREAU_DATA named it (not the default) */
    bool json;
    bool help;
    const char *log_level;
    const char *command;     /* e.g. "ingest", "audit verify" */
    const struct CliCommand *cmd;
    const char *values[CLI_MAX_OPTS]; /* per command option: its value, or "" for a set flag */
    const char *pos[CLI_MAX_POS];
    int npos;
    Config config;
} Cli;

struct CliCommand {
    const char *name;
    const char *args;    /* positional arguments, for help */
    const char *summary;
    const CliOpt *opts;  /* NULL-terminated by name, may be NULL */
    int (*run)(Cli *cli);
    int min_pos, max_pos;
};

/* Parses argv (after the command words) into cli. Returns 0 or EXIT_USAGE
 * (after printing why). */
int cli_parse(Cli *cli, const CliCommand *cmd, int argc, char **argv);
/* The value of option name of the current command; NULL when not given,
 * "" for a flag that was given. */
const char *cli_opt(const Cli *cli, const char *name);
bool cli_flag(const Cli *cli, const char *name);
/* Parses an integer option value; prints a usage error naming the option. */
int cli_int(const char *opt, const char *value, long long min, long long max, long long *ret);

void cli_usage(const CliCommand *cmd, FILE *out);

/* Prints "bureau CMD: MSG" on stderr; returns EXIT_FAIL. */
int cli_fail(const Cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_fail_err(const Cli *cli, const Err *err);
int cli_usage_error(const Cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads DATA/bureau.yaml into cli->config (defaults when missing). */
int cli_load_config(Cli *cli);
/* Opens the ledger of the data directory (must be initialised). */
int cli_open_ledger(Cli *cli, bool watch, Ledger **ret);
/* Opens a read connection to the data directory's database. */
int cli_open_reader(Cli *cli, Store **ret);
/* Loads the config, opens the ledger and a reader (for commands that read
 * and then append); 0 or an exit code, with nothing left open. */
int cli_open_both(Cli *cli, Ledger **l, Store **rd);

/* Writes v as one compact JSON line to stdout and decrefs it. */
void cli_print_json(json_t *v);

/* Command entry points. */
int cmd_init(Cli *cli);
int cmd_version(Cli *cli);
int cmd_ingest(Cli *cli);
int cmd_events(Cli *cli);
int cmd_event_show(Cli *cli);
int cmd_replay(Cli *cli);
int cmd_audit_verify(Cli *cli);
int cmd_backup(Cli *cli);
int cmd_restore(Cli *cli);
int cmd_serve(Cli *cli);
int cmd_token_create(Cli *cli);
int cmd_token_list(Cli *cli);
int cmd_token_revoke(Cli *cli);
int cmd_workflows_list(Cli *cli);
int cmd_workflows_show(Cli *cli);
int cmd_workflows_validate(Cli *cli);
int cmd_workflows_enable(Cli *cli);
int cmd_workflows_run(Cli *cli);
int cmd_demo(Cli *cli);
int cmd_workflows_disable(Cli *cli);
int cmd_tasks(Cli *cli);
int cmd_task_show(Cli *cli);
int cmd_task_retry(Cli *cli);
int cmd_task_skip(Cli *cli);
int cmd_task_cancel(Cli *cli);
int cmd_run(Cli *cli);
int cmd_task_compensate(Cli *cli);
int cmd_trace(Cli *cli);
int cmd_mode(Cli *cli);
int cmd_goal(Cli *cli);
int cmd_goals(Cli *cli);
int cmd_inbox(Cli *cli);
int cmd_approve(Cli *cli);
int cmd_reject(Cli *cli);
int cmd_effects(Cli *cli);
int cmd_effects_cancel(Cli *cli);
int cmd_effects_resolve(Cli *cli);
int cmd_models(Cli *cli);
int cmd_models_call(Cli *cli);
int cmd_models_stats(Cli *cli);
int cmd_models_canary(Cli *cli);
int cmd_spend(Cli *cli);
int cmd_label(Cli *cli);
int cmd_batch_run(Cli *cli);
int cmd_memory_contacts(Cli *cli);
int cmd_memory_profile(Cli *cli);
int cmd_memory_merge(Cli *cli);
int cmd_memory_unmerge(Cli *cli);
int cmd_memory_facts(Cli *cli);
int cmd_memory_fact(Cli *cli);
int cmd_memory_export(Cli *cli);
int cmd_memory_forget(Cli *cli);
int cmd_memory_context(Cli *cli);
int cmd_memory_consolidate(Cli *cli);
int cmd_memory_reembed(Cli *cli);
int cmd_memory_search(Cli *cli);
int cmd_content(Cli *cli);
int cmd_content_show(Cli *cli);
int cmd_connectors(Cli *cli);
int cmd_connectors_replay(Cli *cli);
int cmd_import_mbox(Cli *cli);
int cmd_import_contacts(Cli *cli);


#endif
