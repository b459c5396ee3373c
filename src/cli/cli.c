/* Option parsing and shared helpers of the `bureau` command. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/log.h"

static const CliOpt global_opts[] = {
    { "data", "DIR", "data directory (default $BUREAU_DATA or ./bureau-data)" },
    { "json", NULL, "machine-readable output" },
    { "log-level", "LEVEL", "debug | info | warn | error | off" },
    { "help", NULL, "show this help" },
    { NULL, NULL, NULL },
};

static int find_opt(const CliOpt *opts, const char *name, size_t len)
{
    for (int i = 0; opts && opts[i].name; i++)
        if (strlen(opts[i].name) == len && !strncmp(opts[i].name, name, len))
            return i;
    return -1;
}

int cli_parse(Cli *cli, const CliCommand *cmd, int argc, char **argv)
{
    bool only_pos = false;
    cli->cmd = cmd;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
            if (cli->npos >= CLI_MAX_POS || cli->npos >= cmd->max_pos)
                return cli_usage_error(cli, "unexpected argument '%s'", a);
            cli->pos[cli->npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (strncmp(a, "--", 2))
            return cli_usage_error(cli, "unknown option '%s' (options start with --)", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int g = find_opt(global_opts, name, len), k = g < 0 ? find_opt(cmd->opts, name, len) : -1;
        if (g < 0 && k < 0)
            return cli_usage_error(cli, "unknown option '--%.*s'", (int)len, name);
        const CliOpt *o = g >= 0 ? &global_opts[g] : &cmd->opts[k];
        const char *val = "";
        if (o->arg) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return cli_usage_error(cli, "option '--%s' needs a value (%s)", o->name, o->arg);
        } else if (eq) {
            return cli_usage_error(cli, "option '--%s' takes no value", o->name);
        }
        if (g >= 0) {
            if (!strcmp(o->name, "data"))
                cli->data_dir = val;
            else if (!strcmp(o->name, "json"))
                cli->json = true;
            else if (!strcmp(o->name, "log-level"))
                cli->log_level = val;
            else
                cli->help = true;
        } else {
            cli->values[k] = val;
        }
    }
    if (cli->help)
        return 0;
    if (cli->npos < cmd->min_pos)
        return cli_usage_error(cli, "missing argument: %s", cmd->args);
    if (cli->log_level) {
        LogLevel lv;
        if (log_level_parse(cli->log_level, &lv) < 0)
            return cli_usage_error(cli, "--log-level must be debug, info, warn, error or off");
    }
    return 0;
}

const char *cli_opt(const Cli *cli, const char *name)
{
    int k = find_opt(cli->cmd->opts, name, strlen(name));
    return k >= 0 ? cli->values[k] : NULL;
}

bool cli_flag(const Cli *cli, const char *name)
{
    return cli_opt(cli, name) != NULL;
}

int cli_int(const char *opt, const char *value, long long min, long long max, long long *ret)
{
    char *end;
    long long v = strtoll(value, &end, 10);
    if (!*value || *end || v < min || v > max) {
        fprintf(stderr, "bureau: --%s must be an integer from %lld to %lld\n", opt, min, max);
        return EXIT_USAGE;
    }
    *ret = v;
    return 0;
}

void cli_usage(const CliCommand *cmd, FILE *out)
{
    fprintf(out, "usage: bureau %s%s%s [options]\n\n%s\n\n", cmd->name, cmd->args ? " " : "",
            cmd->args ? cmd->args : "", cmd->summary);
    if (cmd->opts && cmd->opts[0].name) {
        fprintf(out, "options:\n");
        for (int i = 0; cmd->opts[i].name; i++) {
            char left[64];
            snprintf(left, sizeof left, "--%s%s%s", cmd->opts[i].name, cmd->opts[i].arg ? " " : "",
                     cmd->opts[i].arg ? cmd->opts[i].arg : "");
            fprintf(out, "  %-22s %s\n", left, cmd->opts[i].help);
        }
        fputc('\n', out);
    }
    fprintf(out, "global options:\n");
    for (int i = 0; global_opts[i].name; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", global_opts[i].name, global_opts[i].arg ? " " : "",
                 global_opts[i].arg ? global_opts[i].arg : "");
        fprintf(out, "  %-22s %s\n", left, global_opts[i].help);
    }
}

int cli_fail(const Cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bureau %s: ", cli->command ? cli->command : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return EXIT_FAIL;
}

int cli_fail_err(const Cli *cli, const Err *err)
{
    return cli_fail(cli, "%s", err->msg[0] ? err->msg : err_str(err->code));
}

int cli_usage_error(const Cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bureau %s: ", cli->command ? cli->command : "");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see bureau %s --help)\n", cli->command ? cli->command : "");
    va_end(ap);
    return EXIT_USAGE;
}

int cli_load_config(Cli *cli)
{
    size_t n = strlen(cli->data_dir) + sizeof "/bureau.yaml";
    char *path = xmalloc(n);
    snprintf(path, n, "%s/bureau.yaml", cli->data_dir);
    Err err = { 0 };
    core_config_done(&cli->config);
    core_config_defaults(&cli->config);
    int rc = core_config_load(path, &cli->config, &err);
    free(path);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    LogLevel lv = cli->config.log_level;
    if (cli->log_level)
        log_level_parse(cli->log_level, &lv);
    log_set_level(lv);
    return 0;
}

int cli_open_ledger(Cli *cli, bool watch, Ledger **ret)
{
    Err err = { 0 };
    LedgerOptions o = { .config = &cli->config, .watch = watch };
    if (ledger_open(cli->data_dir, &o, ret, &err) < 0)
        return cli_fail_err(cli, &err);
    return 0;
}

int cli_open_reader(Cli *cli, Store **ret)
{
    Err err = { 0 };
    if (ledger_reader_open_dir(cli->data_dir, &cli->config, ret, &err) < 0)
        return cli_fail_err(cli, &err);
    return 0;
}

void cli_print_json(json_t *v)
{
    Buf b;
    buf_init(&b, 0);
    core_json_dump(v, &b);
    buf_putc(&b, '\n');
    fwrite(b.ptr, 1, b.len, stdout);
    fflush(stdout);
    buf_done(&b);
    json_decref(v);
}

int cli_open_both(Cli *cli, Ledger **l, Store **rd)
{
    *l = NULL;
    *rd = NULL;
    int rc = cli_load_config(cli);
    if (rc || (rc = cli_open_ledger(cli, false, l)))
        return rc;
    if ((rc = cli_open_reader(cli, rd))) {
        ledger_close(*l);
        *l = NULL;
    }
    return rc;
}
