/* bureau demo --data DIR: a demo consultancy (docs/demo.md). Its raw inputs
 * (demo_data.c) go through the real importers and connectors: contacts
 * from CSV and three months of mail from an mbox (the importers), Stripe
 * events signed and checked by the Stripe connector, the calendar by the
 * ICS connector; then the built-in workflows are enabled and run until they
 * are idle, so the inbox, customers, digest and spend pages have something
 * to show. Sandbox mode: nothing leaves. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/tokens.h"
#include "cli/cli.h"
#include "cli/demo.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/crypto.h"
#include "flow/engine.h"
#include "flow/goals.h"
#include "ingest/ingest.h"
#include "memory/identity.h"
#include "pull/pull.h"

#define DEMO_ME "me@bureau-consulting.example"
#define DEMO_STRIPE_SECRET "whsec_demo_not_a_secret"
#define DEMO_SEED 20261125

static const char demo_yaml[] =
    "# The demo company (bureau demo). Sandbox: nothing leaves.\n"
    "smtp:\n"
    "  from: " DEMO_ME "\n"
    "models:\n"
    "  local:\n"
    "    rules:\n"
    "      lead: [quote, proposal, pricing, estimate, budget, inquiry, cost, website]\n"
    "      support: [broken, error, bug, crash, slow, \"not working\", fix, cannot, invalid]\n"
    "      feedback: [feedback, love, suggestion, confusing, guide, export, crashes]\n"
    "      other: [newsletter, unsubscribe, receipt, update, milestone, coffee, meetup]\n"
    "connectors:\n"
    "  - name: stripe\n"
    "    kind: stripe\n"
    "    secret: " DEMO_STRIPE_SECRET "\n"
    "    consent: transactional\n"
    "  - name: calendar\n"
    "    kind: ics\n"
    "    path: \"%s/demo/calendar.ics\"\n"
    "    interval_s: 300\n"
    "    horizon_days: 30\n";

static const char *const BUILTINS[] = { "email-triage",   "lead-intake",     "support-reply",
                                        "onboarding",     "feedback-digest", "renewal-watch",
                                        "renewal-draft",  "content-pipeline", NULL };

static const char *stripe_header(void *ctx, const char *name)
{
    return !strcasecmp(name, "Stripe-Signature") ? ctx : NULL;
}

/* Each Stripe event as the connector receives it: signed now, checked and
 * mapped by ingest_stripe(). */
static int post_stripe(Ledger *l, const Config *cfg, const char *dir, int n, int *added, Err *err)
{
    const ConnectorConfig *c = core_config_connector(cfg, "stripe");
    if (!c)
        return err_set(err, ERR_CONFIG, "the demo config has no stripe connector");
    for (int i = 1; i <= n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/stripe/%03d.json", dir, i);
        FILE *f = fopen(path, "r");
        if (!f)
            return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
        char body[16384];
        size_t len = fread(body, 1, sizeof body - 1, f);
        fclose(f);
        body[len] = '\0';
        int64_t now_s = core_time_now_ms() / 1000;
        Buf signed_text;
        buf_init(&signed_text, 0);
        buf_printf(&signed_text, "%lld.%s", (long long)now_s, body);
        unsigned char mac[32];
        core_hmac_sha256(DEMO_STRIPE_SECRET, strlen(DEMO_STRIPE_SECRET), signed_text.ptr,
                         signed_text.len, mac);
        buf_done(&signed_text);
        char header[128];
        int o = snprintf(header, sizeof header, "t=%lld,v1=", (long long)now_s);
        for (int k = 0; k < 32; k++)
            o += snprintf(header + o, sizeof header - (size_t)o, "%02x", mac[k]);
        IngestRequest req = { .conn = c,
                              .secret = DEMO_STRIPE_SECRET,
                              .secret_len = strlen(DEMO_STRIPE_SECRET),
                              .header = stripe_header,
                              .header_ctx = header,
                              .body = body,
                              .body_len = len,
                              .now_s = now_s,
                              .limits = ledger_limits(l) };
        Event *ev = NULL;
        IngestReason why;
        if (ingest_stripe(&req, &ev, &why, err) < 0)
            return err->code;
        LedgerAppendResult res;
        if (ledger_append(l, &ev, 1, &res, err) < 0)
            return err->code;
        *added += !res.duplicate;
    }
    return 0;
}

static int import_file(Ledger *l, Cli *cli, const char *path, bool mbox, PullImportStats *st,
                       Err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    int rc = mbox ? pull_import_mbox(l, cli->data_dir, f, -1, "import", 0, NULL, NULL, st, err)
                  : pull_import_contacts(l, f, -1, "import", NULL, NULL, NULL, st, err);
    fclose(f);
    return rc;
}

int cmd_demo(Cli *cli)
{
    const char *dir = cli->data_dir;
    char path[4096];
    snprintf(path, sizeof path, "%s/bureau.db", dir);
    if (access(path, F_OK) == 0)
        return cli_fail(cli, "%s already holds a data directory; the demo wants its own (remove "
                             "it, or name another with --data)", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return cli_fail(cli, "cannot create %s: %s", dir, strerror(errno));
    /* its config, before anything opens the database */
    snprintf(path, sizeof path, "%s/bureau.yaml", dir);
    FILE *y = fopen(path, "w");
    if (!y)
        return cli_fail(cli, "cannot write %s: %s", path, strerror(errno));
    fprintf(y, demo_yaml, dir);
    fclose(y);
    int rc = cli_load_config(cli);
    if (rc)
        return rc;
    Err err = { 0 };
    if (ledger_db_prepare(dir, &cli->config, true, &err) < 0)
        return cli_fail_err(cli, &err);
    snprintf(path, sizeof path, "%s/demo", dir);
    DemoCounts counts;
    if (demo_data_write(path, core_time_now_ms(), DEMO_SEED, DEMO_ME, &counts, &err) < 0)
        return cli_fail_err(cli, &err);
    Ledger *l = NULL;
    if ((rc = cli_open_ledger(cli, false, &l)))
        return rc;
    char token[API_TOKEN_LEN + 1] = "", token_id[CORE_ULID_LEN + 1] = "";
    PullImportStats contacts = { 0 }, mail = { 0 };
    int stripe_added = 0;
    char file[4200];
    rc = api_token_create(l, "demo", token, token_id, &err);
    /* the workflows first: the planner acts on what arrives after */
    for (int i = 0; rc == 0 && BUILTINS[i]; i++)
        rc = flow_workflow_set_enabled(l, dir, BUILTINS[i], true, &err);
    snprintf(file, sizeof file, "%s/contacts.csv", path);
    if (rc == 0)
        rc = import_file(l, cli, file, false, &contacts, &err);
    snprintf(file, sizeof file, "%s/mail.mbox", path);
    if (rc == 0)
        rc = import_file(l, cli, file, true, &mail, &err);
    if (rc == 0)
        rc = post_stripe(l, &cli->config, path, counts.stripe_events, &stripe_added, &err);
    /* the calendar, by one poll of its connector */
    int64_t meetings = 0;
    Store *rd = NULL;
    if (rc == 0)
        rc = ledger_reader_open(l, &rd, &err);
    const ConnectorConfig *cal = core_config_connector(&cli->config, "calendar");
    PullOptions po = { .data_dir = dir, .config = &cli->config, .ledger = l };
    if (rc == 0 && cal)
        rc = pull_poll_once(&po, cal, NULL, rd, &meetings, &err);
    /* retainers, as the operator records them */
    static const struct { const char *who; int days, hours; } retainers[] = {
        { "raj@nimbus.example", 21, 20 },
        { "grace@okaforlogistics.example", 75, 12 },
    };
    for (int i = 0; rc == 0 && i < 2; i++) {
        char id[MEMORY_CONTACT_ID_LEN + 1], day[CORE_TIME_LEN + 1];
        core_time_format(core_time_now_ms() + (int64_t)retainers[i].days * 86400000, day);
        day[10] = '\0';
        json_t *v = json_pack("{s:s, s:i}", "ends_at", day, "hours", retainers[i].hours);
        if (memory_contact_find(rd, retainers[i].who, id, &err) == 0)
            rc = memory_fact_record(l, rd, id, "retainer", v, 1.0, "operator", &err);
        else
            err.code = 0;
        json_decref(v);
    }
    store_close(rd);
    /* the workflows, until they are idle; then the scheduled ones once, as
     * their schedules would, over what the first round made */
    FlowEngine *e = NULL;
    if (rc == 0)
        rc = flow_engine_start(l, dir, &cli->config, &e, &err);
    if (rc == 0)
        rc = flow_engine_wait_idle(e, 600000, 0, &err);
    static const char *const now_once[] = { "feedback-digest", "renewal-watch" };
    for (int i = 0; rc == 0 && i < 2; i++) {
        char slot[CORE_TIME_LEN + 1], key[128];
        core_time_format(core_time_now_ms(), slot);
        snprintf(key, sizeof key, "schedule:%s:demo", now_once[i]);
        json_t *d = json_pack("{s:s, s:s, s:s}", "workflow", now_once[i], "slot", slot, "by",
                              "operator");
        Event *ev = NULL;
        rc = ledger_event_new("schedule.fired", "operator", NULL, d, key, ledger_limits(l), &ev,
                              &err);
        json_decref(d);
        if (rc == 0)
            rc = ledger_append(l, &ev, 1, NULL, &err);
    }
    if (rc == 0)
        rc = flow_engine_wait_idle(e, 600000, 0, &err);
    /* a goal in words, as the operator would state one: its proposal waits
     * in the inbox beside the drafts (docs/goals.md) */
    if (rc == 0 && (rc = ledger_reader_open(l, &rd, &err)) == 0) {
        json_t *g = NULL;
        rc = flow_goal_submit(l, rd, flow_engine_router(e), dir,
                              "a digest of this week's customer feedback", "demo", &g, &err);
        json_decref(g);
        store_close(rd);
    }
    flow_engine_stop(e);
    ledger_close(l);
    if (rc < 0)
        return cli_fail_err(cli, &err);
    /* the token, for `make run` to show each time (a demo, not a real install) */
    snprintf(path, sizeof path, "%s/demo-token", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, token, strlen(token)) < 0)
            err.code = 0;
        close(fd);
    }
    if (cli->json) {
        cli_print_json(json_pack("{s:s, s:I, s:I, s:i, s:I, s:s}", "data_dir", dir, "contacts",
                                 (json_int_t)contacts.added, "emails", (json_int_t)mail.added,
                                 "stripe_events", stripe_added, "calendar_events",
                                 (json_int_t)meetings, "token", token));
    } else {
        printf("demo company built in %s (sandbox: nothing leaves)\n", dir);
        printf("  %lld contacts, %lld emails, %d Stripe events, %lld calendar events imported\n",
               (long long)contacts.added, (long long)mail.added, stripe_added,
               (long long)meetings);
        printf("  workflows enabled and run until idle: bureau --data %s inbox\n", dir);
        printf("operator API token:\n%s\n", token);
    }
    return EXIT_OK;
}
