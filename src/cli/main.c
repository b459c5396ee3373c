/* bureau: the operator's command line. A thin client of libbureau. */
#include <stdlib.h>
#include <string.h>

#include "api/tokens.h"
#include "cli/cli.h"
#include "flow/effects.h"
#include "flow/engine.h"
#include "memory/identity.h"
#include "model/router.h"
#include "pull/ics.h"
#include "ledger/projection.h"
#include "pull/pull.h"

static const CliOpt ingest_opts[] = {
    { "file", "F", "read from file F instead of stdin" },
    { "bulk", NULL, "read NDJSON: one event per line" },
    { "strict", NULL, "with --bulk: write nothing when any line is bad" },
    { NULL, NULL, NULL },
};

static const CliOpt events_opts[] = {
    { "type", "T", "only events of type T" },
    { "source", "S", "only events from source S" },
    { "subject", "S", "only events about subject S (e.g. contact:ID)" },
    { "since", "SEQ", "only events after seq SEQ" },
    { "limit", "N", "at most N events" },
    { NULL, NULL, NULL },
};

static const CliOpt replay_opts[] = {
    { "projection", "NAME", "only this projection" },
    { "check", NULL, "rebuild in a rolled-back transaction and compare digests" },
    { "full", NULL, "ignore snapshots: rebuild from the first event" },
    { "snapshot", NULL, "store a snapshot of the projections at their checkpoint" },
    { NULL, NULL, NULL },
};

static const CliOpt backup_opts[] = {
    { "force", NULL, "replace FILE if it exists" },
    { NULL, NULL, NULL },
};

static const CliOpt serve_opts[] = {
    { "listen", "HOST:PORT", "address to listen on (default server.listen, 127.0.0.1:8470)" },
    { NULL, NULL, NULL },
};

static const CliOpt token_opts[] = {
    { "name", "N", "a name to recognise the token by (default operator)" },
    { NULL, NULL, NULL },
};

static const CliOpt tasks_opts[] = {
    { "status", "S", "only tasks in state S (queued, running, inbox, succeeded, failed, canceled)" },
    { "workflow", "W", "only tasks of workflow W" },
    { "limit", "N", "at most N tasks, newest first (default 100)" },
    { NULL, NULL, NULL },
};

static const CliOpt content_opts[] = {
    { "limit", "N", "at most N pieces, newest first (default 100, at most 1000)" },
    { NULL, NULL, NULL },
};

static const CliOpt goals_opts[] = {
    { "limit", "N", "at most N goals, newest first (default 100)" },
    { NULL, NULL, NULL },
};

static const CliOpt approve_opts[] = {
    { "edit", "FILE", "approve FILE instead: the whole edited payload as JSON" },
    { NULL, NULL, NULL },
};

static const CliOpt reject_opts[] = {
    { "reason", "R", "why (required; kept with the decision)" },
    { NULL, NULL, NULL },
};

static const CliOpt effects_opts[] = {
    { "status", "S",
      "only effects in state S (requested, held, captured, delivered, uncertain, failed, "
      "canceled, compensated)" },
    { "task", "ID", "only the effects of task ID" },
    { "limit", "N", "at most N effects, newest first (default 100)" },
    { NULL, NULL, NULL },
};

static const CliOpt resolve_opts[] = {
    { "sent", NULL, "it did arrive: record it as delivered" },
    { "resend", NULL, "send it again" },
    { "reason", "R", "a note kept with the decision" },
    { NULL, NULL, NULL },
};

static const CliOpt cancel_opts[] = {
    { "reason", "R", "a note kept with the decision" },
    { NULL, NULL, NULL },
};

static const CliOpt call_opts[] = {
    { "text", "T", "the text (or prompt) to send" },
    { "file", "F", "read it from file F" },
    { "system", "S", "a system prompt" },
    { "labels", "A,B", "classify: the labels to choose from" },
    { "now", NULL, "run now even when the route defers to the batch window" },
    { NULL, NULL, NULL },
};

static const CliOpt stats_opts[] = {
    { "route", "R", "only route R" },
    { "since", "DAY", "only decisions from this UTC day on (YYYY-MM-DD)" },
    { "by", "K", "also per template (NAME@VERSION) or workflow" },
    { NULL, NULL, NULL },
};

static const CliOpt canary_opts[] = {
    { "promote", NULL, "make the canary the route's first candidate now" },
    { "rollback", NULL, "send the canary no more calls" },
    { "reason", "R", "a note kept with the decision" },
    { NULL, NULL, NULL },
};

static const CliOpt spend_opts[] = {
    { "by", "K", "group by route (default), provider, workflow, customer or day" },
    { "since", "DAY", "only spend from this UTC day on (YYYY-MM-DD)" },
    { NULL, NULL, NULL },
};

static const CliOpt contacts_opts[] = {
    { "query", "Q", "only contacts whose name, email or organisation domain holds Q" },
    { "limit", "N", "at most N contacts, most recently seen first (default 100)" },
    { NULL, NULL, NULL },
};

static const CliOpt search_opts[] = {
    { "subject", "ID|EMAIL", "only items about this contact (an id, email, phone or payment id)" },
    { "kind", "K", "only items of these kinds: email, form, note, summary (comma-separated)" },
    { "since", "TIME", "only items that occurred at or after TIME (RFC 3339)" },
    { "k", "N", "at most N hits (default 10, at most 100)" },
    { "mode", "M", "hybrid (default), or one retriever alone: bm25 or vector" },
    { NULL, NULL, NULL },
};

static const CliOpt facts_opts[] = {
    { "history", NULL, "also the facts that newer ones superseded" },
    { NULL, NULL, NULL },
};

static const CliOpt export_opts[] = {
    { "out", "FILE", "write it to FILE (created; it must not exist) instead of stdout" },
    { NULL, NULL, NULL },
};

static const CliOpt forget_opts[] = {
    { "dry-run", NULL, "list what would go, change nothing" },
    { NULL, NULL, NULL },
};

static const CliOpt context_opts[] = {
    { "query", "Q", "the items that match Q best (default: the latest)" },
    { "budget", "TOKENS", "at most this many tokens (about 4 bytes each; default 1000)" },
    { NULL, NULL, NULL },
};

static const CliOpt replay_from_opts[] = {
    { "from", "CURSOR", "0 (the beginning) or a cursor as `bureau connectors --json` shows it" },
    { NULL, NULL, NULL },
};

static const CliOpt import_opts[] = {
    { "source", "S", "the events' source (default import)" },
    { "max-message-bytes", "N", "mbox: larger messages keep only their header (default 25 MiB)" },
    { NULL, NULL, NULL },
};

static const CliOpt run_opts[] = {
    { "until-idle", NULL, "exit 0 once no step is ready or running (waits and timers aside)" },
    { "timeout", "S", "with --until-idle: fail after S seconds" },
    { "wait-timers", "S", "with --until-idle: also wait for timers due within S seconds" },
    { NULL, NULL, NULL },
};

static const CliCommand commands[] = {
    { "init", NULL,
      "Create the data directory, its database and a bureau.yaml with every setting\n"
      "commented out. Safe to run again.",
      NULL, cmd_init, 0, 0 },
    { "demo", NULL,
      "Build a demo consultancy in the data directory (it must not hold one yet):\n"
      "contacts, three months of mail, payments and a calendar through the real\n"
      "importers and connectors, the built-in workflows run until idle. Sandbox.",
      NULL, cmd_demo, 0, 0 },
    { "ingest", NULL,
      "Append one JSON event read from stdin (or --file), or with --bulk one event per\n"
      "line (NDJSON). With --json, prints {\"seq\",\"id\",\"duplicate\",\"line\"} per\n"
      "event as soon as it is durable. Bad lines are reported as 'line N: reason';\n"
      "the others are kept and the exit status is 1.",
      ingest_opts, cmd_ingest, 0, 0 },
    { "events", NULL, "List events in seq order (with --json: one event object per line).",
      events_opts, cmd_events, 0, 0 },
    { "event show", "SEQ|ID", "Show one event, with its hashes.", NULL, cmd_event_show, 1, 1 },
    { "replay", NULL,
      "Rebuild the projections from the log. --check proves that a rebuild equals the\n"
      "live tables (a digest per projection) without changing them.",
      replay_opts, cmd_replay, 0, 0 },
    { "audit verify", NULL,
      "Recompute the hash chain. Exit 0 with 'ok: N events', or 1 naming the first bad seq.",
      NULL, cmd_audit_verify, 0, 0 },
    { "backup", "FILE",
      "Write a consistent online copy of the database to FILE (never the live database;\n"
      "an existing FILE only with --force).",
      backup_opts, cmd_backup, 1, 1 },
    { "restore", "FILE",
      "Replace the database with the backup FILE, after verifying the backup's chain.", NULL,
      cmd_restore, 1, 1 },
    { "serve", NULL,
      "Serve the HTTP API, webhooks and /metrics. Prints 'listening on ADDRESS' once\n"
      "ready; SIGTERM or SIGINT stops accepting, finishes requests in flight and exits 0.",
      serve_opts, cmd_serve, 0, 0 },
    { "token create", NULL, "Create an API token and print it (alone, once) on stdout.",
      token_opts, cmd_token_create, 0, 0 },
    { "token list", NULL, "List API tokens (never the tokens themselves).", NULL,
      cmd_token_list, 0, 0 },
    { "token revoke", "ID", "Revoke an API token.", NULL, cmd_token_revoke, 1, 1 },
    { "workflows list", NULL,
      "List the workflows: the built-ins and DATA/workflows/*.yaml, enabled or not.", NULL,
      cmd_workflows_list, 0, 0 },
    { "workflows show", "NAME", "Show a workflow: trigger, steps and version.", NULL,
      cmd_workflows_show, 1, 1 },
    { "workflows validate", "FILE",
      "Validate a workflow file; problems are printed as FILE:LINE:COL: message. With\n"
      "--data DIR, also check its scripts (DATA/agents) and the workflows it starts.",
      NULL, cmd_workflows_validate, 1, 1 },
    { "workflows run", "NAME",
      "Fire a scheduled workflow now, as its schedule would (schedule.fired).", NULL,
      cmd_workflows_run, 1, 1 },
    { "workflows enable", "NAME", "Enable a workflow (recorded as an event).", NULL,
      cmd_workflows_enable, 1, 1 },
    { "workflows disable", "NAME", "Disable a workflow (recorded as an event).", NULL,
      cmd_workflows_disable, 1, 1 },
    { "tasks", NULL, "List tasks, newest first (with --json: one object per line).", tasks_opts,
      cmd_tasks, 0, 0 },
    { "task show", "ID", "Show a task: each step's state, attempts, timings and output.", NULL,
      cmd_task_show, 1, 1 },
    { "task retry", "ID", "Run again the failed step of a task in the inbox.", NULL,
      cmd_task_retry, 1, 1 },
    { "task skip", "ID", "Skip the failed step of a task in the inbox and go on.", NULL,
      cmd_task_skip, 1, 1 },
    { "task cancel", "ID", "Cancel a task that has not finished.", NULL, cmd_task_cancel, 1, 1 },
    { "task compensate", "ID",
      "Undo what a task did: its effects, newest first (a sent mail gets a correction\n"
      "draft in the inbox; a webhook its configured reverse call). Cancels it first.",
      NULL, cmd_task_compensate, 1, 1 },
    { "trace", "TASK",
      "The lineage of a task: its trigger, each step's inputs and outputs, approvals\n"
      "(who decided what, when) and effects with their delivery, from the ledger.",
      NULL, cmd_trace, 1, 1 },
    { "mode", "[sandbox|production]",
      "Show the mode, or switch it (an audited event). In sandbox, effects are\n"
      "captured and never sent; in production they are delivered.",
      NULL, cmd_mode, 0, 1 },
    { "goal", "TEXT",
      "State a goal in words; the planner (the plan route) proposes a workflow or a\n"
      "new task graph for it, which waits in the inbox for your approval. Nothing\n"
      "runs before you approve it (bureau approve ID). Words given apart are joined\n"
      "by spaces.",
      NULL, cmd_goal, 1, CLI_MAX_POS },
    { "goals", NULL, "List goals and what became of them (with --json: one object per line).",
      goals_opts, cmd_goals, 0, 0 },
    { "inbox", NULL,
      "Pending approvals and failures waiting for you (with --json: one object per line).",
      NULL, cmd_inbox, 0, 0 },
    { "approve", "ID", "Approve a pending approval as it is, or --edit FILE with the payload.",
      approve_opts, cmd_approve, 1, 1 },
    { "reject", "ID", "Reject a pending approval (--reason required).", reject_opts, cmd_reject,
      1, 1 },
    { "effects cancel", "ID",
      "Cancel an effect not yet delivered (held in its undo window, waiting, failed or\n"
      "uncertain); its step is skipped and the task goes on.",
      cancel_opts, cmd_effects_cancel, 1, 1 },
    { "effects resolve", "ID",
      "Settle an uncertain or failed effect: --sent (it arrived) or --resend.", resolve_opts,
      cmd_effects_resolve, 1, 1 },
    { "effects", NULL, "List effects, newest first (with --json: one object per line).",
      effects_opts, cmd_effects, 0, 0 },
    { "run", NULL,
      "Run the planner and the runner in the foreground (without the HTTP server).\n"
      "--until-idle exits 0 once nothing is ready or running: for scripts and cron.",
      run_opts, cmd_run, 0, 0 },
    { "models call", "ROUTE",
      "Run one call through the model router, as a step would; prints the output\n"
      "(--json: with provider, model, cost_usd, latency_ms, cached, label, confidence).",
      call_opts, cmd_models_call, 1, 1 },
    { "models stats", NULL,
      "Model quality from your decisions: per route and model, approved / edited /\n"
      "rejected rates with 95% intervals, edit distance, cost per approved draft,\n"
      "latency; shadows, the canary and the marginal value of a dearer model.",
      stats_opts, cmd_models_stats, 0, 0 },
    { "models canary", "ROUTE",
      "Decide a route's canary by hand: --promote or --rollback.", canary_opts,
      cmd_models_canary, 1, 1 },
    { "models", NULL, "The model providers (kind, model, breaker, price) and the routes.", NULL,
      cmd_models, 0, 0 },
    { "spend", NULL, "Model spend from the ledger, grouped by route, provider, workflow,\n"
      "customer or day.", spend_opts, cmd_spend, 0, 0 },
    { "label", "EVENT LABEL",
      "Label an event (seq or id) for the local classifier: it learns from it.", NULL,
      cmd_label, 2, 2 },
    { "memory contacts", NULL,
      "Contacts resolved from the events (emails, forms, payments, calendars, imports).",
      contacts_opts, cmd_memory_contacts, 0, 0 },
    { "memory profile", "EMAIL|PHONE|ID",
      "A contact: name, email, phone, organisation, identities, merges.", NULL,
      cmd_memory_profile, 1, 1 },
    { "memory facts", "CONTACT", "What is known about a contact, with sources and confidence.",
      facts_opts, cmd_memory_facts, 1, 1 },
    { "memory fact", "CONTACT KEY VALUE",
      "Record a fact as the operator (VALUE: JSON, or text); it supersedes the others.", NULL,
      cmd_memory_fact, 3, 3 },
    { "memory context", "CONTACT",
      "What a draft about a contact should know: profile, facts, matching items,\n"
      "within a token budget, each part cited by its event's seq.",
      context_opts, cmd_memory_context, 1, 1 },
    { "memory consolidate", "",
      "Fold the expired items into summaries, per contact and month, through the\n"
      "summarize route; the items leave short-term memory (events). Nightly in serve.",
      forget_opts, cmd_memory_consolidate, 0, 0 },
    { "memory reembed", "",
      "After a swap of the embed route's model: embed every item with it (stored,\n"
      "keyed by model), then drop the other models' vectors.",
      NULL, cmd_memory_reembed, 0, 0 },
    { "memory export", "CONTACT",
      "Everything held about a contact as JSON: profile, facts with history, events.",
      export_opts, cmd_memory_export, 1, 1 },
    { "memory forget", "CONTACT",
      "Forget a person: their events are redacted (the chain still verifies), every\n"
      "projection rebuilt, their files deleted, the database vacuumed. No prompt.",
      forget_opts, cmd_memory_forget, 1, 1 },
    { "memory search", "QUERY",
      "Search emails, forms and notes: full-text (BM25) and local vectors, fused,\n"
      "recent first when equal (--json: one object per hit).",
      search_opts, cmd_memory_search, 1, 1 },
    { "memory merge", "A B",
      "Merge contact B into A (each an email, phone, payment id or contact id); an event.",
      NULL, cmd_memory_merge, 2, 2 },
    { "memory unmerge", "ID", "Undo a merge: the merged-away contact stands again.", NULL,
      cmd_memory_unmerge, 1, 1 },
    { "content show", "PIECE",
      "A published piece with its engagement totals and its last 50 engagement events.",
      NULL, cmd_content_show, 1, 1 },
    { "content", NULL,
      "Pieces the content pipeline published, newest first, with their engagement\n"
      "(with --json: one object per piece).",
      content_opts, cmd_content, 0, 0 },
    { "batch run", NULL, "Wake the model calls waiting for the batch window: they run now.", NULL,
      cmd_batch_run, 0, 0 },
    { "connectors replay", "NAME",
      "Read a pull connector again from --from CURSOR at its next poll (in bureau serve);\n"
      "what is already in the ledger is dropped by its idempotency key.",
      replay_from_opts, cmd_connectors_replay, 1, 1 },
    { "connectors", NULL,
      "The pull connectors (imap, ics): last success, last error, cursor, events today\n"
      "(with --json: one object per connector).",
      NULL, cmd_connectors, 0, 0 },
    { "import mbox", "FILE",
      "Import every message of an mbox file as email.received (the IMAP parser). Running\n"
      "it again adds nothing. Progress on a terminal; a summary at the end.",
      import_opts, cmd_import_mbox, 1, 1 },
    { "import contacts", "FILE.csv",
      "Import contacts from CSV (the first row names the columns: email, name or first/last\n"
      "name, company, phone, tags; others are kept as fields) as contact.imported.\n"
      "Bad rows are reported as 'line N: reason' and skipped (exit 1).",
      import_opts, cmd_import_contacts, 1, 1 },
    { "version", NULL, "Print the version.", NULL, cmd_version, 0, 0 },
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* Every command's human output says which mode the install is in (on
 * stderr: stdout stays what the command promises; never with --json). */
static void mode_banner(Cli *cli)
{
    if (cli->json || !strcmp(cli->command, "version") || !strcmp(cli->command, "serve") ||
        !strcmp(cli->command, "mode"))
        return;
    Store *rd = NULL;
    Err err = { 0 };
    char mode[FLOW_MODE_MAX];
    if (ledger_reader_open_dir(cli->data_dir, &cli->config, &rd, &err) < 0)
        return; /* not initialised (yet): nothing to say */
    fflush(stdout);
    if (flow_mode_get(rd, mode, &err) == 0)
        fprintf(stderr, "[mode: %s%s]\n", mode,
                !strcmp(mode, "sandbox") ? " - effects are captured, nothing is sent" : "");
    store_close(rd);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bureau [--data DIR] [--json] COMMAND [options]\n\n"
            "Bureau: the operating system of a one-person company.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *nl = strchr(commands[i].summary, '\n');
        int len = nl ? (int)(nl - commands[i].summary) : (int)strlen(commands[i].summary);
        fprintf(out, "  %-14s %.*s\n", commands[i].name, len, commands[i].summary);
    }
    fprintf(out, "\nRun 'bureau COMMAND --help' for a command's options.\n");
}

static bool takes_value(const char *opt)
{
    return !strcmp(opt, "--data") || !strcmp(opt, "--log-level");
}

int main(int argc, char **argv)
{
    Cli cli = { 0 };
    /* Find the command words, skipping global options before them. */
    int first = -1;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            if (takes_value(argv[i]))
                i++;
            continue;
        }
        first = i;
        break;
    }
    if (first < 0) {
        bool help = false;
        for (int i = 1; i < argc; i++)
            help |= !strcmp(argv[i], "--help");
        usage(help ? stdout : stderr);
        return help ? EXIT_OK : EXIT_USAGE;
    }
    if (!strcmp(argv[first], "help")) {
        usage(stdout);
        return EXIT_OK;
    }
    const CliCommand *cmd = NULL;
    int words = 0;
    for (size_t i = 0; i < NCOMMANDS && !cmd; i++) {
        const char *name = commands[i].name, *sp = strchr(name, ' ');
        if (!sp && !strcmp(name, argv[first])) {
            cmd = &commands[i];
            words = 1;
        } else if (sp && !strncmp(name, argv[first], (size_t)(sp - name)) &&
                   strlen(argv[first]) == (size_t)(sp - name)) {
            if (first + 1 < argc && !strcmp(sp + 1, argv[first + 1])) {
                cmd = &commands[i];
                words = 2;
            }
        }
    }
    if (!cmd) {
        /* "bureau audit" or "bureau event" alone: list that group's commands */
        bool group = false, help = false;
        for (size_t i = 0; i < NCOMMANDS; i++) {
            const char *sp = strchr(commands[i].name, ' ');
            if (sp && strlen(argv[first]) == (size_t)(sp - commands[i].name) &&
                !strncmp(commands[i].name, argv[first], (size_t)(sp - commands[i].name)))
                group = true;
        }
        for (int i = first + 1; i < argc; i++)
            help |= !strcmp(argv[i], "--help");
        if (group) {
            FILE *out = help ? stdout : stderr;
            fprintf(out, "usage: bureau %s SUBCOMMAND [options]\n\nsubcommands:\n", argv[first]);
            for (size_t i = 0; i < NCOMMANDS; i++)
                if (!strncmp(commands[i].name, argv[first], strlen(argv[first])) &&
                    commands[i].name[strlen(argv[first])] == ' ')
                    fprintf(out, "  %s\n", commands[i].name);
            return help ? EXIT_OK : EXIT_USAGE;
        }
        fprintf(stderr, "bureau: unknown command '%s'%s%s\n", argv[first],
                first + 1 < argc && argv[first + 1][0] != '-' ? " " : "",
                first + 1 < argc && argv[first + 1][0] != '-' ? argv[first + 1] : "");
        usage(stderr);
        return EXIT_USAGE;
    }
    cli.command = cmd->name;
    /* Everything but the command words goes to the parser. */
    char **rest = calloc((size_t)argc, sizeof *rest);
    int n = 0;
    for (int i = 1; i < argc; i++)
        if (i < first || i >= first + words)
            rest[n++] = argv[i];
    int rc = cli_parse(&cli, cmd, n, rest);
    free(rest);
    if (rc != 0)
        return rc;
    if (cli.help) {
        cli_usage(cmd, stdout);
        return EXIT_OK;
    }
    if (cli.data_dir && !*cli.data_dir) {
        fprintf(stderr, "bureau %s: --data needs a directory, not an empty string\n", cmd->name);
        return EXIT_USAGE;
    }
    if (!cli.data_dir) {
        const char *env = getenv("BUREAU_DATA");
        cli.data_given = env && *env;
        cli.data_dir = env && *env ? env : "./bureau-data";
    } else {
        cli.data_given = true;
    }
    ledger_projections_builtin();
    api_projections_register();
    flow_projections_register();
    model_projections_register();
    memory_projections_register();
    pull_projections_register();
    core_config_defaults(&cli.config);
    rc = cmd->run(&cli);
    mode_banner(&cli);
    core_config_done(&cli.config);
    return rc;
}
