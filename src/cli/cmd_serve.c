/* bureau serve, bureau token create|list|revoke. */
#include <signal.h>
#include <string.h>

#include "api/server.h"
#include "api/tokens.h"
#include "cli/cli.h"
#include "core/log.h"
#include "flow/effects.h"
#include "flow/engine.h"
#include "pull/pull.h"

/* A message in a connector's Sent folder settles the uncertain mail it is. */
static int sent_seen(void *ctx, Ledger *l, Store *rd, const char *message_id, Err *err)
{
    const Config *cfg = ctx;
    int settled = 0;
    int rc = flow_effect_sent_seen(l, rd, cfg->smtp_from, message_id, "connector:sent", &settled,
                                   err);
    if (rc == 0 && settled)
        log_info("uncertain mail found in the Sent folder: delivered",
                 json_pack("{s:i}", "effects", settled));
    return rc < 0 ? rc : settled;
}

int cmd_serve(Cli *cli)
{
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    const char *listen = cli_opt(cli, "listen");
    /* Signals are taken by sigwait() below, never by another thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    Ledger *l = NULL;
    if ((rc = cli_open_ledger(cli, true, &l)))
        return rc;
    ApiOptions o = { .data_dir = cli->data_dir, .config = &cli->config, .ledger = l,
                     .listen = listen };
    ApiServer *srv = NULL;
    Err err = { 0 };
    if (api_server_start(&o, &srv, &err) < 0) {
        ledger_close(l);
        return cli_fail_err(cli, &err);
    }
    FlowEngine *engine = NULL;
    if (flow_engine_start(l, cli->data_dir, &cli->config, &engine, &err) < 0) {
        api_server_stop(srv, 0);
        ledger_close(l);
        return cli_fail_err(cli, &err);
    }
    api_server_set_models_health(srv, flow_engine_models_health, engine);
    api_server_set_router(srv, flow_engine_router(engine));
    PullOptions po = { .data_dir = cli->data_dir, .config = &cli->config, .ledger = l,
                       .sent = sent_seen, .sent_ctx = &cli->config };
    PullRuntime *pull = NULL;
    if (pull_runtime_start(&po, &pull, &err) < 0) {
        /* the API borrows the engine's router: it stops first */
        api_server_stop(srv, 0);
        flow_engine_stop(engine);
        ledger_close(l);
        return cli_fail_err(cli, &err);
    }
    log_info("listening", json_pack("{s:s, s:s, s:I}", "address", api_server_address(srv),
                                    "data", cli->data_dir, "head",
                                    (json_int_t)ledger_head_seq(l)));
    printf("listening on %s\n", api_server_address(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("stopping", json_pack("{s:s}", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    pull_runtime_stop(pull); /* a poll in flight ends after its batch */
    api_server_stop(srv, 30000);
    flow_engine_stop(engine); /* steps in flight are recorded first */
    ledger_close(l); /* drains the writer: every acknowledged event is durable */
    log_info("stopped", NULL);
    return EXIT_OK;
}

int cmd_token_create(Cli *cli)
{
    const char *name = cli_opt(cli, "name");
    int rc = cli_load_config(cli);
    Ledger *l = NULL;
    if (rc || (rc = cli_open_ledger(cli, false, &l)))
        return rc;
    char token[API_TOKEN_LEN + 1], id[CORE_ULID_LEN + 1];
    Err err = { 0 };
    rc = api_token_create(l, name ? name : "operator", token, id, &err);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    if (cli->json)
        cli_print_json(json_pack("{s:s, s:s}", "token", token, "id", id));
    else
        printf("%s\n", token);
    fprintf(stderr, "token %s created; it is shown only this once\n", id);
    return EXIT_OK;
}

static int list_one(void *ctx, const ApiTokenInfo *t)
{
    const Cli *cli = ctx;
    if (cli->json) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "id", t->id, "name", t->name, "created_at",
                              t->created_at);
        json_object_set_new(o, "revoked_at", t->revoked_at ? json_string(t->revoked_at)
                                                           : json_null());
        cli_print_json(o);
    } else {
        printf("%-26s  %-24s  %s  %s\n", t->id, t->name, t->created_at,
               t->revoked_at ? "revoked" : "live");
    }
    return 0;
}

int cmd_token_list(Cli *cli)
{
    int rc = cli_load_config(cli);
    Store *s = NULL;
    if (rc || (rc = cli_open_reader(cli, &s)))
        return rc;
    Err err = { 0 };
    if (!cli->json)
        printf("%-26s  %-24s  %-24s  %s\n", "ID", "NAME", "CREATED_AT", "STATE");
    rc = api_token_list(s, list_one, cli, &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
    store_close(s);
    return rc;
}

int cmd_token_revoke(Cli *cli)
{
    int rc = cli_load_config(cli);
    Ledger *l = NULL;
    Store *s = NULL;
    if (rc || (rc = cli_open_ledger(cli, false, &l)))
        return rc;
    Err err = { 0 };
    if ((rc = cli_open_reader(cli, &s)) == 0) {
        rc = api_token_revoke(l, s, cli->pos[0], &err) < 0 ? cli_fail_err(cli, &err) : EXIT_OK;
        store_close(s);
    }
    ledger_close(l);
    if (rc == EXIT_OK) {
        if (cli->json)
            cli_print_json(json_pack("{s:s, s:b}", "id", cli->pos[0], "revoked", 1));
        else
            printf("revoked: %s\n", cli->pos[0]);
    }
    return rc;
}
