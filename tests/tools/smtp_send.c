/* smtp_send: builds one email.send message from a payload file and delivers
 * it with mail_send(), for tests/integration/test_smtp.sh.
 *
 *   smtp_send --url URL --from FROM [--user U --password-env VAR]
 *             [--ca-file PEM] [--starttls required|try|never] [--timeout S]
 *             [--key KEY] [--date-ms MS] [--save FILE] PAYLOAD.json
 *
 * Prints one JSON line: {"result": "delivered" | "retry" | "permanent",
 * "code": N, "detail": "...", "message_id": "<...>"}. Exit 0 when there is an
 * outcome (whatever it is), 2 on a usage or payload file error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/json.h"
#include "effect/mail.h"

#define PAYLOAD_MAX (4 * 1024 * 1024)

static int usage(const char *msg)
{
    fprintf(stderr, "smtp_send: %s\n", msg);
    return 2;
}

static int read_file(const char *path, Buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    char chunk[65536];
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        rc = buf_append(out, chunk, n);
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}

#define SET(field, val) snprintf(cfg.field, sizeof cfg.field, "%s", (val))

int main(int argc, char **argv)
{
    Config cfg;
    core_config_defaults(&cfg);
    const char *key = "smtp-send-test", *path = NULL, *save = NULL;
    long long date_ms = 1764072000000LL; /* 2025-11-25T12:00:00Z */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            path = a;
            continue;
        }
        if (i + 1 >= argc)
            return usage("an option needs a value");
        const char *v = argv[++i];
        if (!strcmp(a, "--url"))
            SET(smtp_url, v);
        else if (!strcmp(a, "--from"))
            SET(smtp_from, v);
        else if (!strcmp(a, "--user"))
            SET(smtp_user, v);
        else if (!strcmp(a, "--password-env"))
            SET(smtp_password_env, v);
        else if (!strcmp(a, "--ca-file"))
            SET(smtp_ca_file, v);
        else if (!strcmp(a, "--starttls"))
            cfg.smtp_starttls = !strcmp(v, "try") ? 1 : !strcmp(v, "never") ? 2 : 0;
        else if (!strcmp(a, "--timeout"))
            cfg.smtp_timeout_s = atoi(v);
        else if (!strcmp(a, "--key"))
            key = v;
        else if (!strcmp(a, "--date-ms"))
            date_ms = atoll(v);
        else if (!strcmp(a, "--save"))
            save = v;
        else
            return usage("unknown option");
    }
    if (!path)
        return usage("no payload file");

    int status = 2;
    Buf text, msg;
    buf_init(&text, PAYLOAD_MAX);
    buf_init(&msg, MAIL_MAX_MESSAGE);
    json_t *payload = NULL;
    MailSettings s;
    mail_settings_from_config(&cfg, &s);
    Err err = { 0 };
    EffectOutcome out = { 0 };
    char mid[MAIL_MESSAGE_ID_SIZE];
    mail_message_id(key, s.from, mid, sizeof mid);

    if (read_file(path, &text) < 0) {
        usage("cannot read the payload file");
        goto out;
    }
    if (core_json_parse(buf_cstr(&text), text.len, &payload, &err) < 0) {
        fprintf(stderr, "smtp_send: %s\n", err.msg);
        goto out;
    }
    if (mail_build(payload, s.from, mid, date_ms, &msg, &err) < 0) {
        out.result = EFFECT_PERMANENT;
        snprintf(out.detail, sizeof out.detail, "%s", err.msg);
    } else {
        if (save) {
            FILE *f = fopen(save, "wb");
            if (!f || fwrite(msg.ptr, 1, msg.len, f) != msg.len) {
                usage("cannot write --save file");
                if (f)
                    fclose(f);
                goto out;
            }
            fclose(f);
        }
        mail_send(&s, NULL, payload, msg.ptr, msg.len, &out);
    }
    static const char *const names[] = { "delivered", "retry", "permanent" };
    json_t *line = json_pack("{s:s, s:I, s:s, s:s}", "result", names[out.result], "code",
                             (json_int_t)out.code, "detail", out.detail, "message_id", mid);
    Buf o;
    buf_init(&o, 0);
    core_json_dump(line, &o);
    printf("%s\n", buf_cstr(&o));
    buf_done(&o);
    json_decref(line);
    status = 0;
out:
    mail_settings_done(&s);
    json_decref(payload);
    buf_done(&text);
    buf_done(&msg);
    core_config_done(&cfg);
    return status;
}
