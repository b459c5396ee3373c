/* The email.send effect: validate a payload, build the RFC 5322 / MIME
 * message, and deliver it over SMTP with libcurl.
 *
 * A message is a pure function of (payload, From, Message-ID, date): a retry
 * of the same effect, built with the same Message-ID (mail_message_id() of
 * the effect's idempotency key), is the same mail to its recipients. */
#ifndef BUREAU_EFFECT_MAIL_H
#define BUREAU_EFFECT_MAIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "effect/effect.h"

#define MAIL_MAX_RCPTS 100           /* per field: to, cc */
#define MAIL_MAX_ADDR 320            /* bytes of one address, display name included */
#define MAIL_MAX_SUBJECT 998         /* bytes */
#define MAIL_MAX_BODY (1024 * 1024)  /* bytes of text, and of html */
#define MAIL_MAX_MSGID 250           /* bytes of one in_reply_to / references id */
#define MAIL_MAX_REFS 100            /* ids in references */
/* The largest message mail_build() can make from a valid payload (both
 * bodies at their maximum, quoted-printable at its worst): the right
 * maximum for its output Buf. */
#define MAIL_MAX_MESSAGE (8 * 1024 * 1024)
/* Room for "<" + 32 hex + "@" + a domain of up to 255 bytes + ">" + NUL. */
#define MAIL_MESSAGE_ID_SIZE 300

/* Checks an email.send payload:
 *   {to, cc?, subject, text, html?, in_reply_to?, references?}
 * to, cc: "addr@domain" or "Display Name <addr@domain>", or a list of 1..100
 * of them; subject (no CR/LF, <= 998 bytes), text and html (<= 1 MiB each):
 * UTF-8 strings; in_reply_to: one "<id>"; references: "<id>" strings, as one
 * string (several separated by spaces) or a list. Unknown keys are refused.
 * Returns 0, or ERR_INVAL with the first problem, naming the field
 * ("to[2]: 'x' is not an email address"). */
int mail_payload_check(const json_t *payload, Err *err);

/* Writes "<HEX@DOMAIN>" into out (size >= MAIL_MESSAGE_ID_SIZE): HEX is the
 * first 32 hex digits of SHA-256("bureau-mail:" + key), DOMAIN the (lower
 * case) domain of from's address, "bureau.invalid" when from has none. The
 * same key and From always give the same id. */
void mail_message_id(const char *key, const char *from, char *out, size_t size);

/* Appends the whole message for a payload that passed mail_payload_check()
 * to out, with CRLF line endings: Date (date_ms, in UTC), From, To, Cc,
 * Subject, Message-ID, In-Reply-To, References, MIME-Version, and a
 * quoted-printable text/plain body, or a multipart/alternative of text and
 * html. Non-ASCII subjects and display names become RFC 2047 encoded-words;
 * header lines are folded at 78 columns. Line breaks in the bodies (CRLF, LF
 * or a lone CR) become CRLF. Returns 0, ERR_INVAL (the payload or from is not
 * valid; err says which field) or ERR_TOOBIG (out's maximum; use
 * MAIL_MAX_MESSAGE). On error out may hold part of the message. */
int mail_build(const json_t *payload, const char *from, const char *message_id,
               int64_t date_ms, Buf *out, Err *err);

typedef enum MailStarttls {
    MAIL_STARTTLS_REQUIRED = 0, /* smtp://: fail unless the server upgrades to TLS */
    MAIL_STARTTLS_TRY = 1,      /* smtp://: upgrade when offered, else plain text */
    MAIL_STARTTLS_NEVER = 2,    /* smtp://: plain text */
} MailStarttls;

/* How to reach the SMTP server. Holds the password: wipe it with
 * mail_settings_done() when done, never log it. */
typedef struct MailSettings {
    char url[512];         /* smtp://HOST:PORT or smtps://HOST:PORT */
    char from[321];        /* the From header and MAIL FROM */
    char user[257];        /* login, or empty: no AUTH */
    char password[1024];   /* secret */
    bool password_missing; /* user is set but the variable is unset or too long */
    char password_env[129];/* the variable's name (for messages) */
    char ca_file[1024];    /* CA bundle, or empty: the system's */
    MailStarttls starttls;
    int connect_timeout_s; /* connecting (TCP and TLS) */
    int timeout_s;         /* the whole delivery */
} MailSettings;

/* Fills s from cfg's smtp.* settings; reads the password, now, from the
 * environment variable smtp.password_env names. */
void mail_settings_from_config(const Config *cfg, MailSettings *s);
/* Wipes the password. */
void mail_settings_done(MailSettings *s);

/* Delivers one message (msg[0..len), from mail_build()) for payload to every
 * to and cc address, once each; MAIL FROM is from's address (s->from when
 * from is NULL or empty). Blocks up to s->timeout_s; any thread. Fills *out:
 *   EFFECT_DELIVERED  the server accepted the message (2xx/3xx)
 *   EFFECT_RETRY      SMTP 4xx; no connection, a timeout, a TLS failure
 *                     (STARTTLS required but not offered included), the
 *                     connection lost
 *   EFFECT_PERMANENT  SMTP 5xx; no or a bad url or from, smtp.user set without
 *                     its password, an invalid payload
 * out->code is the last SMTP reply code (0 when none came), out->detail what
 * happened (never the password). Returns 0 when *out holds an outcome, or
 * ERR_INTERNAL when libcurl could not start (*out then says RETRY). */
int mail_send(const MailSettings *s, const char *from, const json_t *payload, const char *msg,
              size_t len, EffectOutcome *out);

#endif
