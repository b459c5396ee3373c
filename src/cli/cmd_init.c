/* bureau init, bureau version. */
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/tokens.h"
#include "cli/cli.h"

static int mkdir_p(const char *path)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1; *s && rc == 0; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0700) < 0 && errno != EEXIST)
                rc = -1;
            *s = '/';
        }
    if (rc == 0 && mkdir(p, 0700) < 0 && errno != EEXIST)
        rc = -1;
    free(p);
    return rc;
}

int cmd_init(Cli *cli)
{
    if (mkdir_p(cli->data_dir) < 0)
        return cli_fail(cli, "cannot create %s: %s", cli->data_dir, strerror(errno));
    size_t n = strlen(cli->data_dir) + sizeof "/bureau.yaml";
    char *yaml = xmalloc(n);
    snprintf(yaml, n, "%s/bureau.yaml", cli->data_dir);
    bool wrote_config = false;
    int fd = open(yaml, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        size_t len = strlen(core_config_default_yaml);
        bool ok = write(fd, core_config_default_yaml, len) == (ssize_t)len && fsync(fd) == 0;
        close(fd);
        if (!ok) {
            unlink(yaml);
            int rc = cli_fail(cli, "cannot write %s", yaml);
            free(yaml);
            return rc;
        }
        wrote_config = true;
    } else if (errno != EEXIST) {
        int rc = cli_fail(cli, "cannot create %s: %s", yaml, strerror(errno));
        free(yaml);
        return rc;
    }
    free(yaml);
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    Err err = { 0 };
    char *db = ledger_db_path(cli->data_dir);
    bool existed = access(db, F_OK) == 0;
    free(db);
    if (ledger_db_prepare(cli->data_dir, &cli->config, true, &err) < 0)
        return cli_fail_err(cli, &err);
    /* A new install gets its operator token, shown this once. */
    char token[API_TOKEN_LEN + 1] = "", id[CORE_ULID_LEN + 1] = "";
    if (!existed) {
        Ledger *l = NULL;
        if ((rc = cli_open_ledger(cli, false, &l)))
            return rc;
        rc = api_token_create(l, "operator", token, id, &err);
        ledger_close(l);
        if (rc < 0)
            return cli_fail_err(cli, &err);
    }
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:b, s:b}", "data_dir", cli->data_dir, "created_database",
                              !existed, "created_config", wrote_config);
        if (token[0]) {
            json_object_set_new(o, "token", json_string(token));
            json_object_set_new(o, "token_id", json_string(id));
        }
        cli_print_json(o);
    } else {
        printf("%s %s\n", existed ? "up to date:" : "initialised:", cli->data_dir);
        if (token[0])
            printf("operator API token (shown only this once; keep it safe):\n%s\n", token);
    }
    return EXIT_OK;
}

int cmd_version(Cli *cli)
{
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:s}", "version", BUREAU_VERSION, "sqlite",
                                 sqlite3_libversion()));
    else
        printf("bureau %s\n", BUREAU_VERSION);
    return EXIT_OK;
}
