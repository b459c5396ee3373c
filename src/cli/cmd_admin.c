/* bureau replay, audit verify, backup, restore. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "ledger/projection.h"

int cmd_replay(Cli *cli)
{
    const char *only = cli_opt(cli, "projection");
    bool check = cli_flag(cli, "check"), full = cli_flag(cli, "full"),
         snapshot = cli_flag(cli, "snapshot");
    if (check + snapshot > 1)
        return cli_usage_error(cli, "--check and --snapshot do not go together");
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    ledger_projections_builtin();
    Err err = { 0 };
    if (check) {
        ReplayCheck res[64];
        size_t n = 0;
        if (ledger_replay_check(s, only, res, 64, &n, &err) < 0) {
            store_close(s);
            return cli_fail_err(cli, &err);
        }
        rc = EXIT_OK;
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            if (!res[i].equal)
                rc = EXIT_FAIL;
            if (cli->json)
                json_array_append_new(arr, json_pack("{s:s, s:b, s:s, s:s}", "projection",
                                                     res[i].projection->name, "equal",
                                                     res[i].equal, "live", res[i].live,
                                                     "rebuilt", res[i].rebuilt));
            else
                printf("%-20s %s  live %.16s  rebuilt %.16s\n", res[i].projection->name,
                       res[i].equal ? "ok      " : "MISMATCH", res[i].live, res[i].rebuilt);
        }
        if (cli->json)
            cli_print_json(json_pack("{s:b, s:o}", "ok", rc == EXIT_OK, "projections", arr));
        else
            json_decref(arr);
        if (rc)
            fprintf(stderr, "bureau replay: the rebuilt tables differ from the live ones\n");
        store_close(s);
        return rc;
    }
    if (snapshot) {
        int64_t seq = 0;
        rc = ledger_snapshot(s, only, &seq, &err);
        store_close(s);
        if (rc < 0)
            return cli_fail_err(cli, &err);
        if (cli->json)
            cli_print_json(json_pack("{s:I}", "seq", (json_int_t)seq));
        else
            printf("snapshot at seq %lld\n", (long long)seq);
        return EXIT_OK;
    }
    int64_t events = 0;
    rc = ledger_replay(s, only, full, &events, &err);
    store_close(s);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(json_pack("{s:I}", "events_applied", (json_int_t)events));
    else
        printf("replayed: %lld events applied\n", (long long)events);
    return EXIT_OK;
}

int cmd_audit_verify(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    Err err = { 0 };
    int64_t count = 0, bad = 0;
    rc = ledger_verify(s, &count, &bad, &err);
    store_close(s);
    if (rc == ERR_CHAIN) {
        if (cli->json)
            cli_print_json(json_pack("{s:b, s:I, s:s}", "ok", 0, "bad_seq", (json_int_t)bad,
                                     "error", err.msg));
        else
            printf("FAILED: %s\n", err.msg);
        return EXIT_FAIL;
    }
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(json_pack("{s:b, s:I}", "ok", 1, "events", (json_int_t)count));
    else
        printf("ok: %lld events\n", (long long)count);
    return EXIT_OK;
}

/* True when path names the same file as the live database (or its WAL). */
static bool is_live_database(const char *data_dir, const char *path)
{
    struct stat a, b;
    if (stat(path, &a) < 0)
        return false;
    char *db = ledger_db_path(data_dir);
    bool same = false;
    const char *suffixes[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3 && !same; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s%s", db, suffixes[i]);
        same = stat(p, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
    }
    free(db);
    return same;
}

int cmd_backup(Cli *cli)
{
    if (is_live_database(cli->data_dir, cli->pos[0]))
        return cli_fail(cli, "%s is the live database: choose another file", cli->pos[0]);
    if (access(cli->pos[0], F_OK) == 0 && !cli_flag(cli, "force"))
        return cli_fail(cli, "%s exists: pass --force to replace it", cli->pos[0]);
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    Err err = { 0 };
    int64_t head = 0;
    rc = store_backup_to(s, cli->pos[0], &err);
    store_close(s);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    /* Report what the copy holds, read from the copy itself. */
    StoreOptions o = { .readonly = true };
    if (store_open(cli->pos[0], &o, &s, &err) < 0 || ledger_head(s, &head, NULL, &err) < 0) {
        store_close(s);
        return cli_fail_err(cli, &err);
    }
    store_close(s);
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:I}", "file", cli->pos[0], "events", (json_int_t)head));
    else
        printf("backup written: %s (%lld events)\n", cli->pos[0], (long long)head);
    return EXIT_OK;
}

int cmd_restore(Cli *cli)
{
    const char *file = cli->pos[0];
    if (access(file, R_OK) != 0)
        return cli_fail(cli, "cannot read %s", file);
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    Err err = { 0 };
    Store *src = NULL, *dst = NULL;
    StoreOptions ro = { .readonly = true };
    int64_t count = 0, bad = 0;
    int version = 0;
    if (store_open(file, &ro, &src, &err) < 0 || store_schema_version(src, &version, &err) < 0) {
        rc = cli_fail(cli, "%s is not a Bureau backup: %s", file, err.msg);
        goto out;
    }
    if (version > ledger_schema_latest()) {
        rc = cli_fail(cli, "refusing to restore %s: its schema version %d is newer than this "
                           "bureau binary knows (%d)", file, version, ledger_schema_latest());
        goto out;
    }
    if (ledger_verify(src, &count, &bad, &err) < 0) {
        rc = cli_fail(cli, "refusing to restore %s: %s", file, err.msg);
        goto out;
    }
    /* The live database must exist (bureau init) and be migrated; the
     * restored content is migrated again below if it is older. */
    if (ledger_db_prepare(cli->data_dir, &cli->config, true, &err) < 0 ||
        (rc = cli_open_reader(cli, &dst)) != 0) {
        rc = rc ? rc : cli_fail_err(cli, &err);
        goto out;
    }
    if (store_restore_from(dst, src, &err) < 0) {
        rc = cli_fail_err(cli, &err);
        goto out;
    }
    store_close(dst);
    dst = NULL;
    if (ledger_db_prepare(cli->data_dir, &cli->config, false, &err) < 0) {
        rc = cli_fail_err(cli, &err);
        goto out;
    }
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:I}", "restored", file, "events", (json_int_t)count));
    else
        printf("restored: %s (%lld events, chain verified)\n", file, (long long)count);
    rc = EXIT_OK;
out:
    store_close(src);
    store_close(dst);
    return rc;
}
