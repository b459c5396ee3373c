/* Unit tests of event validation, canonical data, shared-type shapes and
 * the chain hash. */
#include <criterion/criterion.h>
#include <string.h>

#include "ledger/event.h"

static int parse(const char *text, Event **ev, Err *e)
{
    EventLimits lim = { .max_data_bytes = 4096 };
    return ledger_event_parse(text, strlen(text), &lim, ev, e);
}

static void refused(const char *text, const char *want)
{
    Event *ev = NULL;
    Err e = { 0 };
    int rc = parse(text, &ev, &e);
    cr_assert(rc < 0, "accepted: %s", text);
    cr_assert_null(ev);
    cr_assert(strstr(e.msg, want), "for %s\n  got: %s\n want: %s", text, e.msg, want);
}

Test(event, minimal_event_gets_defaults)
{
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(parse("{\"type\":\"lead.created\",\"source\":\"cli\",\"data\":{\"b\":1,\"a\":2}}",
                       &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->type, "lead.created");
    cr_assert_str_eq(ev->consent, "none");
    cr_assert_null(ev->subject);
    cr_assert_str_eq(ev->idempotency_key, "");
    cr_assert(core_trace_valid(ev->trace_id, strlen(ev->trace_id)));
    cr_assert_str_eq(ev->data, "{\"a\":2,\"b\":1}");
    cr_assert_str_eq(ev->occurred_at, ev->received_at);
    char dh[CORE_SHA256_HEX + 1];
    core_sha256_hex(ev->data, ev->data_len, dh);
    cr_assert_str_eq(ev->data_hash, dh);
    ledger_event_free(ev);
}

Test(event, header_fields_are_kept_and_key_is_hashed)
{
    Event *ev = NULL;
    Err e = { 0 };
    const char *t = "{\"type\":\"email.sent\",\"source\":\"imap:work\",\"subject\":\"contact:01ABC\","
                    "\"occurred_at\":\"2026-11-25T13:00:00+01:00\",\"consent\":\"marketing\","
                    "\"idempotency_key\":\"abc\",\"trace_id\":\"0123456789abcdef0123456789abcdef\","
                    "\"data\":{}}";
    cr_assert_eq(parse(t, &ev, &e), 0, "%s", e.msg);
    cr_assert_str_eq(ev->subject, "contact:01ABC");
    cr_assert_str_eq(ev->occurred_at, "2026-11-25T12:00:00.000Z");
    cr_assert_str_eq(ev->consent, "marketing");
    cr_assert_str_eq(ev->idempotency_key,
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    cr_assert_str_eq(ev->trace_id, "0123456789abcdef0123456789abcdef");
    ledger_event_free(ev);
}

Test(event, bad_headers_are_refused_naming_the_field)
{
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"data\":[]}", "field 'data': must be an object");
    refused("{\"source\":\"s\",\"data\":{}}", "field 'type': required");
    refused("{\"type\":\"a.b\",\"data\":{}}", "field 'source': required");
    refused("{\"type\":\"a.b\",\"source\":\"s\"}", "field 'data': required");
    refused("{\"type\":\"Email.Received\",\"source\":\"s\",\"data\":{}}", "field 'type'");
    refused("{\"type\":\"noperiod\",\"source\":\"s\",\"data\":{}}", "field 'type'");
    refused("{\"type\":\"a..b\",\"source\":\"s\",\"data\":{}}", "field 'type'");
    refused("{\"type\":\"a.b.\",\"source\":\"s\",\"data\":{}}", "field 'type'");
    refused("{\"type\":7,\"source\":\"s\",\"data\":{}}", "field 'type': must be a string, not integer");
    refused("{\"type\":\"a.b\",\"source\":\"has space\",\"data\":{}}", "field 'source'");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"consent\":\"yes\",\"data\":{}}", "field 'consent'");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"occurred_at\":\"yesterday\",\"data\":{}}",
            "field 'occurred_at'");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"subject\":\"no-colon\",\"data\":{}}",
            "field 'subject'");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"trace_id\":\"xyz\",\"data\":{}}", "field 'trace_id'");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"idempotency_key\":\"\",\"data\":{}}",
            "field 'idempotency_key'");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"colour\":1,\"data\":{}}", "field 'colour': unknown");
    refused("{\"type\":\"a.b\",\"source\":\"s\",\"seq\":1,\"data\":{}}",
            "field 'seq': assigned by the ledger");
    refused("[1,2]", "must be a JSON object, not array");
    refused("{\"type\":\"a.b\",", "malformed JSON at line 1");
}

Test(event, oversized_data_is_refused)
{
    char big[8000];
    int n = snprintf(big, sizeof big, "{\"type\":\"a.b\",\"source\":\"s\",\"data\":{\"x\":\"");
    memset(big + n, 'x', 5000);
    strcpy(big + n + 5000, "\"}}");
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(parse(big, &ev, &e), ERR_TOOBIG);
    cr_assert(strstr(e.msg, "field 'data': larger than the limit of 4096 bytes"), "%s", e.msg);
}

Test(event, shared_type_shapes)
{
    refused("{\"type\":\"payment.succeeded\",\"source\":\"stripe\",\"data\":{\"amount\":\"12\","
            "\"currency\":\"eur\",\"customer\":{},\"provider_id\":\"pi_1\"}}",
            "field 'data.amount': must be a non-negative integer");
    refused("{\"type\":\"payment.succeeded\",\"source\":\"stripe\",\"data\":{\"amount\":12,"
            "\"currency\":\"EUR\",\"customer\":{},\"provider_id\":\"pi_1\"}}",
            "field 'data.currency'");
    refused("{\"type\":\"payment.refunded\",\"source\":\"stripe\",\"data\":{\"amount\":12,"
            "\"currency\":\"eur\",\"customer\":{\"email\":\"nope\"},\"provider_id\":\"pi_1\"}}",
            "field 'data.customer.email': not an email address");
    refused("{\"type\":\"email.received\",\"source\":\"imap\",\"data\":{\"from\":{},\"to\":[],"
            "\"subject\":\"s\",\"text\":\"t\",\"message_id\":\"<m@x>\"}}",
            "field 'data.from.email': required");
    refused("{\"type\":\"email.received\",\"source\":\"imap\",\"data\":{\"from\":{\"email\":\"a@b.c\"},"
            "\"to\":[{\"email\":\"x@y.z\"},{\"name\":\"n\"}],\"subject\":\"s\",\"text\":\"t\","
            "\"message_id\":\"<m@x>\"}}",
            "field 'data.to[1].email': required");
    refused("{\"type\":\"subscription.created\",\"source\":\"stripe\",\"data\":{\"customer\":{},"
            "\"plan\":\"p\",\"amount\":1,\"currency\":\"usd\",\"interval\":\"month\",\"status\":\"active\","
            "\"current_period_end\":\"soon\"}}",
            "field 'data.current_period_end': not an RFC 3339 time");
    refused("{\"type\":\"contact.imported\",\"source\":\"csv\",\"data\":{\"name\":\"x\"}}",
            "field 'data.email': required");
    refused("{\"type\":\"calendar.event.created\",\"source\":\"ics\",\"data\":{\"uid\":\"u\","
            "\"summary\":\"s\",\"start\":\"a\",\"end\":\"b\",\"attendees\":[{\"email\":1}]}}",
            "field 'data.attendees[0].email': must be a string");
    Event *ev = NULL;
    Err e = { 0 };
    const char *ok = "{\"type\":\"email.received\",\"source\":\"imap\",\"data\":{\"from\":{\"email\":"
                     "\"ann@example.com\",\"name\":\"Ann\"},\"to\":[{\"email\":\"me@example.org\"}],"
                     "\"subject\":\"Hello\",\"text\":\"\",\"message_id\":\"<1@x>\",\"extra\":true}}";
    cr_assert_eq(parse(ok, &ev, &e), 0, "%s", e.msg);
    cr_assert(strstr(ev->data, "\"extra\":true"), "extra fields are kept");
    ledger_event_free(ev);
}

Test(event, chain_hash_covers_every_header_field)
{
    Event *ev = NULL;
    Err e = { 0 };
    cr_assert_eq(parse("{\"type\":\"a.b\",\"source\":\"s\",\"data\":{\"k\":1}}", &ev, &e), 0);
    ev->seq = 7;
    strcpy(ev->id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    const char *prev = "00000000000000000000000000000000000000000000000000000000000000ff";
    char h1[CORE_SHA256_HEX + 1], h2[CORE_SHA256_HEX + 1];
    cr_assert_eq(ledger_event_chain_hash(ev, prev, h1), 0);
    cr_assert_eq(ledger_event_chain_hash(ev, prev, h2), 0);
    cr_assert_str_eq(h1, h2, "deterministic");
    ev->seq = 8;
    ledger_event_chain_hash(ev, prev, h2);
    cr_assert_str_neq(h1, h2, "seq is covered");
    ev->seq = 7;
    strcpy(ev->consent, "marketing");
    ledger_event_chain_hash(ev, prev, h2);
    cr_assert_str_neq(h1, h2, "consent is covered");
    strcpy(ev->consent, "none");
    ev->data_hash[0] = ev->data_hash[0] == 'a' ? 'b' : 'a';
    ledger_event_chain_hash(ev, prev, h2);
    cr_assert_str_neq(h1, h2, "data_hash is covered");
    ev->data_hash[0] = ev->data_hash[0] == 'a' ? 'b' : 'a';
    ledger_event_chain_hash(ev, "00000000000000000000000000000000000000000000000000000000000000fe", h2);
    cr_assert_str_neq(h1, h2, "prev_hash is covered");
    /* netstrings: moving a byte between fields changes the hash */
    free(ev->type);
    free(ev->source);
    ev->type = strdup("a.bs");
    ev->source = strdup("");
    ledger_event_chain_hash(ev, prev, h2);
    cr_assert_str_neq(h1, h2);
    ledger_event_free(ev);
}

Test(event, type_names)
{
    cr_assert(ledger_type_valid("email.received", 14));
    cr_assert(ledger_type_valid("calendar.event.created", 22));
    cr_assert(ledger_type_valid("stripe.charge_2.x", 17));
    cr_assert(!ledger_type_valid("email", 5));
    cr_assert(!ledger_type_valid(".a.b", 4));
    cr_assert(!ledger_type_valid("1a.b", 4));
    cr_assert(!ledger_type_valid("a.B", 3));
    cr_assert(!ledger_type_valid("a-b.c", 5));
}
