/* Email parsing throughput: an mbox of BENCH_MESSAGES (default 5000) mixed
 * messages (plain, quoted-printable ISO-8859-1, multipart/alternative with
 * HTML, HTML only, a base64 attachment) is
 *  1. parsed message by message into email.received data (GMime, nothing
 *     stored): messages parsed per second;
 *  2. imported with `bureau import mbox`'s code into a fresh ledger
 *     (durable appends, raw messages and attachments stored by hash).
 * BENCH_DIR picks the directory for the data (default /tmp). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "ledger/ledger.h"
#include "ledger/projection.h"
#include "pull/email.h"
#include "pull/pull.h"

static void message(Buf *b, int i)
{
    buf_printf(b, "From sender%d@example.com Mon Nov 20 10:00:00 2023\n", i % 97);
    buf_printf(b, "From: =?ISO-8859-1?Q?Ren=E9e_%d?= <sender%d@example.com>\n"
                  "To: Ops <ops@example.com>, team@example.com\nCc: boss@example.com\n"
                  "Subject: =?UTF-8?B?R3LDvMOfZSDinIU=?= %d\nDate: Mon, 20 Nov 2023 10:00:00 +0000\n"
                  "Message-ID: <bench-%d@example.com>\nReferences: <root-%d@example.com>\n"
                  "MIME-Version: 1.0\n",
               i, i % 97, i, i, i / 10);
    switch (i % 5) {
    case 0:
        buf_puts(b, "Content-Type: text/plain; charset=utf-8\n\n");
        for (int k = 0; k < 20; k++)
            buf_puts(b, "Hello, could you send a quote for the new site? Thanks a lot.\n");
        break;
    case 1:
        buf_puts(b, "Content-Type: text/plain; charset=ISO-8859-1\n"
                    "Content-Transfer-Encoding: quoted-printable\n\n");
        for (int k = 0; k < 20; k++)
            buf_puts(b, "Le caf=E9 est pr=EAt, la r=E9union commence =E0 dix heures pr=E9cises.=\n"
                        " Merci.\n");
        break;
    case 2:
        buf_puts(b, "Content-Type: multipart/alternative; boundary=\"alt\"\n\n--alt\n"
                    "Content-Type: text/plain; charset=utf-8\n\nPlain part of the message.\n"
                    "--alt\nContent-Type: text/html; charset=utf-8\n\n<html><body>");
        for (int k = 0; k < 20; k++)
            buf_puts(b, "<p>HTML <b>part</b> &amp; more</p>\n");
        buf_puts(b, "</body></html>\n--alt--\n");
        break;
    case 3:
        buf_puts(b, "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style>"
                    "</head><body>");
        for (int k = 0; k < 20; k++)
            buf_puts(b, "<div>Only HTML here, caf&eacute; &#8364;5</div>\n");
        buf_puts(b, "</body></html>\n");
        break;
    default:
        buf_puts(b, "Content-Type: multipart/mixed; boundary=\"mix\"\n\n--mix\n"
                    "Content-Type: text/plain\n\nSee the attachment.\n--mix\n"
                    "Content-Type: application/pdf; name=\"a.pdf\"\n"
                    "Content-Disposition: attachment; filename=\"a.pdf\"\n"
                    "Content-Transfer-Encoding: base64\n\n");
        for (int k = 0; k < 200; k++) /* ~15 KiB */
            buf_printf(b, "JVBERi0xLjQgZmFrZSBpbnZvaWNlIGNvbnRlbnQgJWQgbGluZSAlMDVk%08d\n", i * 1000 + k);
        buf_puts(b, "--mix--\n");
        break;
    }
    buf_puts(b, "\n");
}

int main(void)
{
    int n = getenv("BENCH_MESSAGES") ? atoi(getenv("BENCH_MESSAGES")) : 5000;
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    if (n < 1)
        n = 1;
    log_set_level(LOG_ERROR);
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("machine: %s, %ld cores; data in %s (%s)\n", cpu, sysconf(_SC_NPROCESSORS_ONLN), base,
           fs_name(base));
    Buf mbox;
    buf_init(&mbox, 0);
    size_t *starts = calloc((size_t)n + 1, sizeof *starts);
    for (int i = 0; i < n; i++) {
        starts[i] = mbox.len;
        message(&mbox, i);
    }
    starts[n] = mbox.len;

    /* 1: parse only */
    double t0 = now_s(), c0 = cpu_s();
    int warnings = 0;
    for (int i = 0; i < n; i++) {
        const char *m = mbox.ptr + starts[i];
        const char *body = strchr(m, '\n') + 1; /* past the "From " line */
        PullEmailOptions o = { .source = "bench" };
        json_t *d = NULL;
        Err e = { 0 };
        if (pull_email_parse(body, mbox.ptr + starts[i + 1] - body, &o, &d, NULL, NULL, &e) < 0) {
            fprintf(stderr, "parse: %s\n", e.msg);
            return 1;
        }
        warnings += json_object_get(d, "warnings") != NULL;
        json_decref(d);
    }
    double t = now_s() - t0, c = cpu_s() - c0;
    printf("parse: %d messages (%.1f MiB) in %.3f s: %.0f messages/s, %.1f MiB/s, %.1f us CPU each"
           " (%d with warnings)\n",
           n, (double)mbox.len / 1048576.0, t, n / t, (double)mbox.len / 1048576.0 / t,
           c / n * 1e6, warnings);

    /* 2: the whole import into a durable ledger */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/bureau-bench-pull.XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    ledger_projections_builtin();
    pull_projections_register();
    Config cfg;
    core_config_defaults(&cfg);
    Err e = { 0 };
    Ledger *l = NULL;
    LedgerOptions lo = { .config = &cfg };
    if (ledger_db_prepare(dir, &cfg, true, &e) < 0 || ledger_open(dir, &lo, &l, &e) < 0) {
        fprintf(stderr, "ledger: %s\n", e.msg);
        return 1;
    }
    FILE *in = fmemopen(mbox.ptr, mbox.len, "r");
    PullImportStats st;
    t0 = now_s();
    c0 = cpu_s();
    int rc = pull_import_mbox(l, dir, in, (int64_t)mbox.len, "bench", 0, NULL, NULL, &st, &e);
    t = now_s() - t0;
    c = cpu_s() - c0;
    fclose(in);
    ledger_close(l);
    rm_tree(dir);
    if (rc < 0) {
        fprintf(stderr, "import: %s\n", e.msg);
        return 1;
    }
    printf("import mbox: %lld messages in %.3f s: %.0f messages/s (%lld added; durable appends, "
           "raw messages and attachments stored, synced once per batch of 256), %.1f us CPU each\n",
           (long long)st.seen, t, (double)st.seen / t, (long long)st.added,
           c / (double)st.seen * 1e6);
    buf_done(&mbox);
    free(starts);
    return 0;
}
