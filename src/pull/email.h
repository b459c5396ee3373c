/* Email as events: raw RFC 822 bytes parsed with GMime 3 into
 * email.received (docs/events.md), and the HTML-to-text used for bodies.
 *
 * A message is never refused for its content: what GMime cannot parse
 * fully is still an event, with `warnings` saying what was wrong, and the
 * raw bytes are kept content-addressed (DATA/files/SHA256) so that it can be
 * parsed again. Only storage failures are errors. Thread-safe. */
#ifndef BUREAU_PULL_EMAIL_H
#define BUREAU_PULL_EMAIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"
#include "ledger/event.h"

#define PULL_EMAIL_MAX_MESSAGE (256u << 20) /* hard cap of one raw message */
#define PULL_EMAIL_MAX_PARTS 1000           /* MIME parts walked per message */
#define PULL_EMAIL_MAX_DEPTH 32             /* multipart nesting */
#define PULL_EMAIL_MAX_TEXT (192 * 1024)    /* text and html, each, in the event */
#define PULL_EMAIL_MAX_ADDRS 100            /* per address list */
#define PULL_EMAIL_MAX_REFS 50              /* References kept */
#define PULL_EMAIL_MAX_ATTACHMENTS 100      /* attachments listed */
#define PULL_EMAIL_MAX_WARNINGS 20

typedef struct PullEmailOptions {
    const char *data_dir;          /* NULL: nothing is stored (tests, bench) */
    size_t max_attachment_bytes;   /* larger attachments are listed, not stored; 0: 10 MiB */
    const char *source;            /* the event's source (required) */
    const char *consent;           /* default "none" */
    const char *folder;            /* IMAP folder, or NULL */
    size_t full_size;              /* raw was cut at len bytes of a message of full_size (0: whole) */
    const EventLimits *limits;
    bool defer_sync;               /* files are not synced one by one: the caller runs
                                    * ingest_files_sync() before appending the event */
} PullEmailOptions;

/* The data of email.received for raw[0..len). *ret_message_id (may be
 * NULL) gets the Message-ID without angle brackets, or "" (caller frees);
 * *ret_date_ms the Date header (0 when absent or unreadable). ERR_IO when
 * the raw message or an attachment cannot be stored. */
int pull_email_parse(const char *raw, size_t len, const PullEmailOptions *o, json_t **ret_data,
                     char **ret_message_id, int64_t *ret_date_ms, Err *err);

/* The whole event: data as above, occurred_at from Date, idempotency key
 * "email:" + Message-ID, else "email-sha256:" + the raw message's hash. */
int pull_email_event(const char *raw, size_t len, const PullEmailOptions *o, Event **ret,
                     char **ret_message_id, Err *err);

/* Readable UTF-8 text of an HTML document: tags dropped (script and style
 * with their content), block ends as line breaks, entities decoded,
 * whitespace collapsed. Appends to out (ERR_TOOBIG at its maximum). */
int pull_html_to_text(const char *html, size_t len, Buf *out);

#endif
