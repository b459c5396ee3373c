/* The "identity" projection and the operator's merges (identity.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/log.h"
#include "ledger/projection.h"
#include "ledger/ledger.h"
#include "memory/identity.h"

#define PERSONS_MAX 64     /* persons read from one event */
#define IDS_PER_PERSON 3
#define VALUE_MAX 320

static const char *const tables[] = { "contacts", "identities", "orgs", "facts", NULL };

/* Free-mail providers (sorted, for bsearch): their users are people, not
 * organisations. */
static const char *const freemail[] = {
    "163.com",        "aim.com",        "aol.com",         "fastmail.com",    "free.fr",
    "gmail.com",      "gmx.at",         "gmx.ch",          "gmx.com",         "gmx.de",
    "gmx.net",        "googlemail.com", "hey.com",         "hotmail.co.uk",   "hotmail.com",
    "hotmail.de",     "hotmail.fr",     "hotmail.it",      "icloud.com",      "laposte.net",
    "libero.it",      "live.com",       "live.fr",         "mac.com",         "mail.com",
    "mail.ru",        "me.com",         "msn.com",         "naver.com",       "orange.fr",
    "outlook.com",    "outlook.de",     "outlook.fr",      "pm.me",           "proton.me",
    "protonmail.com", "qq.com",         "sfr.fr",          "t-online.de",     "tuta.io",
    "tutanota.com",   "wanadoo.fr",     "web.de",          "yahoo.co.uk",     "yahoo.com",
    "yahoo.de",       "yahoo.es",       "yahoo.fr",        "yahoo.it",        "yandex.com",
    "yandex.ru",      "ymail.com",      "zoho.com",
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool memory_freemail(const char *domain)
{
    return bsearch(&domain, freemail, sizeof freemail / sizeof freemail[0], sizeof freemail[0],
                   cmp_str) != NULL;
}

/* ---- reading persons from events ---- */

typedef struct Ident {
    char kind[8];          /* email | phone | payment */
    char value[VALUE_MAX + 1];
} Ident;

typedef struct Person {
    Ident ids[IDS_PER_PERSON];
    int n;
    char name[129];
    char company[129];
    char resolved[27]; /* the contact it was resolved to */
} Person;

/* "Ann <ann@x.com>" or "ann@x.com", trimmed and lower-cased; false when it
 * is not an address. */
static bool norm_email(const char *s, char out[VALUE_MAX + 1])
{
    if (!s)
        return false;
    const char *lt = strrchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    const char *p = lt && gt ? lt + 1 : s, *end = lt && gt ? gt : s + strlen(s);
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    size_t n = (size_t)(end - p);
    if (n < 3 || n > VALUE_MAX)
        return false;
    int at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c == '<' || c == '>' || c == ',' || c == '"')
            return false;
        at += c == '@';
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    const char *a = strchr(out, '@');
    /* .invalid (RFC 2606) is never a person: it stands for a missing address
     * (a mail whose From could not be read, see pull/email.c) */
    if (n >= 8 && !strcmp(out + n - 8, ".invalid"))
        return false;
    return at == 1 && a != out && a[1] && strchr(a, '.');
}

/* +digits (a leading + kept), at least 7 digits. */
static bool norm_phone(const char *s, char out[VALUE_MAX + 1])
{
    if (!s)
        return false;
    size_t n = 0, digits = 0;
    for (const char *p = s; *p && n < 24; p++) {
        if (*p == '+' && n == 0)
            out[n++] = '+';
        else if (isdigit((unsigned char)*p)) {
            out[n++] = *p;
            digits++;
        } else if (!strchr(" -./()", *p))
            return false;
    }
    out[n] = '\0';
    return digits >= 7 && digits <= 15;
}

static void add_id(Person *p, const char *kind, const char *value)
{
    if (p->n == IDS_PER_PERSON)
        return;
    snprintf(p->ids[p->n].kind, sizeof p->ids[0].kind, "%s", kind);
    snprintf(p->ids[p->n].value, sizeof p->ids[0].value, "%s", value);
    p->n++;
}

static void set_name(char *dst, size_t size, const char *v)
{
    if (v && *v && !*dst)
        snprintf(dst, size, "%s", v);
}

/* {email, name?} (or a plain address string). */
static void person_from_party(const json_t *party, Person *out, size_t *n)
{
    if (*n == PERSONS_MAX)
        return;
    Person *p = &out[*n];
    memset(p, 0, sizeof *p);
    char v[VALUE_MAX + 1];
    const char *email = json_is_string(party) ? json_string_value(party)
                                              : json_string_value(json_object_get(party, "email"));
    if (norm_email(email, v))
        add_id(p, "email", v);
    set_name(p->name, sizeof p->name, json_string_value(json_object_get(party, "name")));
    if (p->n)
        (*n)++;
}

static const char *field(const json_t *fields, const char *const *names)
{
    for (int i = 0; names[i]; i++) {
        const char *v = json_string_value(json_object_get(fields, names[i]));
        if (v && *v)
            return v;
    }
    return NULL;
}

static size_t persons_of(const Event *ev, const json_t *d, Person *out)
{
    size_t n = 0;
    const char *t = ev->type;
    char v[VALUE_MAX + 1];
    if (!strcmp(t, "email.received")) {
        person_from_party(json_object_get(d, "from"), out, &n);
        const char *lists[] = { "to", "cc" };
        for (int l = 0; l < 2; l++) {
            size_t i;
            const json_t *x;
            json_array_foreach(json_object_get(d, lists[l]), i, x) person_from_party(x, out, &n);
        }
    } else if (!strcmp(t, "form.submitted") || !strcmp(t, "contact.imported")) {
        bool form = !strcmp(t, "form.submitted");
        const json_t *f = form ? json_object_get(d, "fields") : d;
        static const char *const emails[] = { "email", "Email", "e-mail", "mail", NULL };
        static const char *const names[] = { "name", "Name", "full_name", "fullname", NULL };
        static const char *const phones[] = { "phone", "Phone", "tel", "telephone", "mobile",
                                              NULL };
        static const char *const companies[] = { "company", "Company", "organisation",
                                                  "organization", NULL };
        Person *p = &out[0];
        memset(p, 0, sizeof *p);
        if (norm_email(field(f, emails), v))
            add_id(p, "email", v);
        if (norm_phone(field(f, phones), v))
            add_id(p, "phone", v);
        set_name(p->name, sizeof p->name, field(f, names));
        set_name(p->company, sizeof p->company, field(f, companies));
        n = p->n ? 1 : 0;
    } else if (!strncmp(t, "payment.", 8) || !strncmp(t, "invoice.", 8) ||
               !strncmp(t, "subscription.", 13) || !strcmp(t, "checkout.completed")) {
        const json_t *c = json_object_get(d, "customer");
        Person *p = &out[0];
        memset(p, 0, sizeof *p);
        const char *id = json_string_value(json_object_get(c, "id"));
        if (id && *id && strlen(id) <= VALUE_MAX)
            add_id(p, "payment", id);
        if (norm_email(json_string_value(json_object_get(c, "email")), v))
            add_id(p, "email", v);
        set_name(p->name, sizeof p->name, json_string_value(json_object_get(c, "name")));
        n = p->n ? 1 : 0;
    } else if (!strncmp(t, "calendar.event.", 15)) {
        person_from_party(json_object_get(d, "organizer"), out, &n);
        size_t i;
        const json_t *x;
        json_array_foreach(json_object_get(d, "attendees"), i, x) person_from_party(x, out, &n);
    }
    return n;
}

/* ---- resolving ---- */

static void derived_id(char prefix, const char *a, const char *b, char out[27])
{
    char key[VALUE_MAX + 32], hex[CORE_SHA256_HEX + 1];
    snprintf(key, sizeof key, "%s:%s", a, b);
    core_sha256_hex(key, strlen(key), hex);
    out[0] = prefix;
    memcpy(out + 1, hex, 25);
    out[26] = '\0';
}

/* The contact an identity points to, following merges to the one that
 * stands; "" when unknown. */
static int lookup(Store *tx, const Ident *id, char out[27], Err *err)
{
    out[0] = '\0';
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "SELECT coalesce(c.merged_into, i.contact_id) FROM identities i"
                           " JOIN contacts c ON c.id = i.contact_id"
                           " WHERE i.kind = ?1 AND i.value = ?2",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id->kind, strlen(id->kind));
    store_bind_text(st, 2, id->value, strlen(id->value));
    if ((rc = store_step(st, err)) == STORE_ROW)
        snprintf(out, 27, "%s", store_col_text(st, 0, NULL));
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

static int org_for(Store *tx, const Event *ev, const Person *p, char out[27], Err *err)
{
    out[0] = '\0';
    const char *domain = NULL;
    for (int i = 0; i < p->n && !domain; i++)
        if (!strcmp(p->ids[i].kind, "email"))
            domain = strchr(p->ids[i].value, '@') + 1;
    if (!domain || memory_freemail(domain))
        return 0;
    derived_id('o', "org", domain, out);
    return store_execf(tx, err,
                       "INSERT INTO orgs(id, domain, name, first_seq) VALUES (?1, ?2, nullif(?3, ''), ?4)"
                       " ON CONFLICT(id) DO UPDATE SET name = coalesce(name, nullif(?3, ''))",
                       "sssi", out, domain, p->company, ev->seq);
}

/* ---- facts ---- */

/* Records value (JSON text) for key of contact. Nothing when a current fact
 * already says the same; else the new fact supersedes the current ones from
 * the same kind of source (an operator's, all of them) and stands beside
 * the others as a conflict. */
static int fact(Store *tx, const Event *ev, const char *contact, const char *key,
                const char *value, double confidence, const char *source, Err *err)
{
    int64_t same = 0;
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "SELECT count(*) FROM facts WHERE contact_id = ?1 AND key = ?2"
                           " AND superseded_by IS NULL AND value = ?3",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, contact, strlen(contact));
    store_bind_text(st, 2, key, strlen(key));
    store_bind_text(st, 3, value, strlen(value));
    if ((rc = store_step(st, err)) == STORE_ROW)
        same = store_col_int(st, 0);
    store_stmt_done(st);
    if (rc < 0 || same)
        return rc < 0 ? rc : 0;
    const char *at = ev->occurred_at[0] ? ev->occurred_at : ev->received_at;
    if ((rc = store_execf(tx, err,
                          "INSERT INTO facts(contact_id, first_contact, key, value, confidence,"
                          " source, source_seq, observed_at) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                          "sssrsis", contact, key, value, confidence, source, ev->seq, at)) < 0)
        return rc;
    return store_execf(tx, err,
                       "UPDATE facts SET superseded_by = last_insert_rowid()"
                       " WHERE contact_id = ?1 AND key = ?2 AND superseded_by IS NULL"
                       " AND id != last_insert_rowid() AND (source = ?3 OR ?3 = 'operator')",
                       "sss", contact, key, source);
}

static int fact_str(Store *tx, const Event *ev, const char *contact, const char *key,
                    const char *s, double confidence, const char *source, Err *err)
{
    if (!s || !*s)
        return 0;
    json_t *v = json_string(s);
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(v);
    int rc = text ? fact(tx, ev, contact, key, text, confidence, source, err) : 0;
    free(text);
    return rc;
}

static const char *source_of(const char *type)
{
    return !strcmp(type, "email.received")     ? "email"
         : !strcmp(type, "form.submitted")     ? "form"
         : !strcmp(type, "contact.imported")   ? "import"
         : !strncmp(type, "subscription.", 13) ? "subscription"
         : !strncmp(type, "calendar.", 9)      ? "calendar"
                                               : "payment";
}

/* The current value of a fact (JSON), or NULL. */
static json_t *fact_current(Store *tx, const char *contact, const char *key)
{
    StoreStmt *st;
    Err err = { 0 };
    json_t *v = NULL;
    if (store_prepare(tx,
                      "SELECT value FROM facts WHERE contact_id = ?1 AND key = ?2"
                      " AND superseded_by IS NULL ORDER BY id DESC LIMIT 1",
                      &st, &err) < 0)
        return NULL;
    store_bind_text(st, 1, contact, strlen(contact));
    store_bind_text(st, 2, key, strlen(key));
    if (store_step(st, &err) == STORE_ROW) {
        size_t len;
        const char *t = store_col_text(st, 0, &len);
        v = json_loadb(t, len, JSON_DECODE_ANY, NULL);
    }
    store_stmt_done(st);
    return v;
}

static int fact_json(Store *tx, const Event *ev, const char *contact, const char *key, json_t *v,
                     double confidence, const char *source, Err *err)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    int rc = text ? fact(tx, ev, contact, key, text, confidence, source, err) : 0;
    free(text);
    return rc;
}

/* What an event says about the contact it names, beyond its identities:
 * payments, subscriptions, the last contact. */
static int event_facts(Store *tx, const Event *ev, const json_t *d, const char *contact,
                       bool first, Err *err)
{
    const char *t = ev->type, *src = source_of(t);
    int rc = 0;
    const char *at = ev->occurred_at[0] ? ev->occurred_at : ev->received_at;
    (void)contact;
    if (!first) /* the last contact is on the contact's row (contacts.last_*) */
        return 0;
    bool paid = !strcmp(t, "payment.succeeded") || !strcmp(t, "invoice.paid");
    bool refunded = !strcmp(t, "payment.refunded");
    const char *cur = json_string_value(json_object_get(d, "currency"));
    json_int_t amount = json_integer_value(json_object_get(d, "amount"));
    if ((paid || refunded) && cur && amount > 0) {
        json_t *total = fact_current(tx, contact, "payment_total");
        if (!json_is_object(total)) {
            json_decref(total);
            total = json_object();
        }
        json_int_t sum = json_integer_value(json_object_get(total, cur));
        json_object_set_new(total, cur, json_integer(paid ? sum + amount : sum - amount));
        if ((rc = fact_json(tx, ev, contact, "payment_total", total, 1.0, "payment", err)) < 0)
            return rc;
        if (paid)
            rc = fact_json(tx, ev, contact, "last_payment",
                           json_pack("{s:I, s:s, s:s, s:I}", "amount", amount, "currency", cur,
                                     "at", at, "seq", (json_int_t)ev->seq),
                           1.0, "payment", err);
    }
    if (!strncmp(t, "subscription.", 13)) {
        json_t *s = json_pack("{s:s}", "event", t + 13);
        static const char *const keys[] = { "plan", "status", "interval", "current_period_end",
                                             "cancel_at", NULL };
        for (int i = 0; keys[i]; i++)
            if (json_object_get(d, keys[i]))
                json_object_set(s, keys[i], json_object_get(d, keys[i]));
        rc = fact_json(tx, ev, contact, "subscription", s, 1.0, src, err);
    }
    return rc;
}

static int resolve(Store *tx, const Event *ev, Person *p, Err *err)
{
    char contact[27] = "", found[27];
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++) {
        if ((rc = lookup(tx, &p->ids[i], found, err)) < 0)
            return rc;
        if (found[0] && !contact[0])
            snprintf(contact, sizeof contact, "%s", found);
        /* a second contact among the identities is not merged by itself:
         * the operator decides (bureau memory merge) */
    }
    char org[27];
    if ((rc = org_for(tx, ev, p, org, err)) < 0)
        return rc;
    const char *email = NULL, *phone = NULL;
    for (int i = 0; i < p->n; i++) {
        if (!email && !strcmp(p->ids[i].kind, "email"))
            email = p->ids[i].value;
        if (!phone && !strcmp(p->ids[i].kind, "phone"))
            phone = p->ids[i].value;
    }
    if (!contact[0]) {
        derived_id('c', p->ids[0].kind, p->ids[0].value, contact);
        rc = store_execf(tx, err,
                         "INSERT OR IGNORE INTO contacts(id, name, email, phone, org_id, first_seq,"
                         " last_seq, events) VALUES (?1, nullif(?2, ''), ?3, ?4, nullif(?5, ''),"
                         " ?6, 0, 0)",
                         "sssssi", contact, p->name, email, phone, org, ev->seq);
    }
    if (rc == 0)
        rc = store_execf(tx, err,
                         "UPDATE contacts SET name = coalesce(name, nullif(?2, '')),"
                         " email = coalesce(email, ?3), phone = coalesce(phone, ?4),"
                         " org_id = coalesce(org_id, nullif(?5, '')), last_seq = ?6,"
                         " last_at = ?7, last_type = ?8,"
                         " events = events + (last_seq != ?6) WHERE id = ?1",
                         "sssssiss", contact, p->name, email, phone, org, ev->seq,
                         ev->occurred_at[0] ? ev->occurred_at : ev->received_at, ev->type);
    for (int i = 0; i < p->n && rc == 0; i++)
        rc = store_execf(tx, err,
                         "INSERT OR IGNORE INTO identities(kind, value, contact_id, first_contact,"
                         " seq) VALUES (?1, ?2, ?3, ?3, ?4)",
                         "sssi", p->ids[i].kind, p->ids[i].value, contact, ev->seq);
    /* what it says about them: the identities and names given */
    const char *src = source_of(ev->type);
    if (rc == 0)
        rc = fact_str(tx, ev, contact, "name", p->name, 0.8, src, err);
    if (rc == 0)
        rc = fact_str(tx, ev, contact, "company", p->company, 0.7, src, err);
    if (rc == 0 && email)
        rc = fact_str(tx, ev, contact, "email", email, 1.0, src, err);
    if (rc == 0 && phone)
        rc = fact_str(tx, ev, contact, "phone", phone, 0.9, src, err);
    if (rc == 0)
        snprintf(p->resolved, sizeof p->resolved, "%s", contact);
    return rc;
}

static int merged(Store *tx, const json_t *d, bool undo, Err *err)
{
    const char *into = json_string_value(json_object_get(d, "into"));
    const char *from = json_string_value(json_object_get(d, "from"));
    const char *who = json_string_value(json_object_get(d, "contact"));
    if (!undo) {
        if (!into || !from || !strcmp(into, from))
            return 0;
        /* contacts merged into `from` before follow it */
        int rc = store_execf(tx, err,
                             "UPDATE contacts SET merged_into = ?1 WHERE id = ?2 OR merged_into = ?2",
                             "ss", into, from);
        if (rc == 0)
            rc = store_execf(tx, err, "UPDATE identities SET contact_id = ?1 WHERE contact_id = ?2",
                             "ss", into, from);
        return rc < 0 ? rc
                      : store_execf(tx, err, "UPDATE facts SET contact_id = ?1 WHERE contact_id = ?2",
                                    "ss", into, from);
    }
    if (!who)
        return 0;
    int rc = store_execf(tx, err, "UPDATE contacts SET merged_into = NULL WHERE id = ?1", "s",
                         who);
    if (rc == 0)
        rc = store_execf(tx, err, "UPDATE identities SET contact_id = ?1 WHERE first_contact = ?1",
                         "s", who);
    if (rc == 0)
        rc = store_execf(tx, err, "UPDATE facts SET contact_id = ?1 WHERE first_contact = ?1", "s",
                         who);
    /* a fact of its own superseded, while merged, by one that stays with the
     * other contact is current again */
    return rc < 0 ? rc
                  : store_execf(tx, err,
                                "UPDATE facts SET superseded_by = NULL WHERE contact_id = ?1"
                                " AND superseded_by IN (SELECT id FROM facts WHERE contact_id != ?1)",
                                "s", who);
}

/* memory.fact.recorded: a fact from a workflow step or the operator about
 * a contact (by id or by one of its identities, resolved when recorded). */
static int recorded_fact(Store *tx, const Event *ev, const json_t *d, Err *err)
{
    const char *contact = json_string_value(json_object_get(d, "contact"));
    const char *key = json_string_value(json_object_get(d, "key"));
    const json_t *value = json_object_get(d, "value");
    const char *source = json_string_value(json_object_get(d, "source"));
    if (!contact || !key || !value)
        return 0;
    int64_t known = 0;
    int rc = store_query_int(tx, "SELECT count(*) FROM contacts WHERE id = ?1", contact, 0, &known,
                             err);
    if (rc < 0 || !known)
        return rc;
    double conf = json_is_number(json_object_get(d, "confidence"))
                      ? json_number_value(json_object_get(d, "confidence"))
                      : 1.0;
    return fact_json(tx, ev, contact, key, json_incref((json_t *)value), conf,
                     source && !strcmp(source, "step")      ? "step"
                     : source && !strcmp(source, "extract") ? "extract"
                                                            : "operator",
                     err);
}

static int apply(Store *tx, const Event *ev, Err *err)
{
    const char *t = ev->type;
    bool merge = !strcmp(t, "memory.merged"), unmerge = !strcmp(t, "memory.unmerged");
    bool recorded = !strcmp(t, "memory.fact.recorded");
    bool person = !strcmp(t, "email.received") || !strcmp(t, "form.submitted") ||
                  !strcmp(t, "contact.imported") || !strncmp(t, "payment.", 8) ||
                  !strncmp(t, "invoice.", 8) || !strncmp(t, "subscription.", 13) ||
                  !strcmp(t, "checkout.completed") || !strncmp(t, "calendar.event.", 15);
    if (!merge && !unmerge && !person && !recorded)
        return 0;
    json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!d)
        return 0;
    int rc = 0;
    if (person) {
        Person *ps = xcalloc(PERSONS_MAX, sizeof *ps);
        size_t n = persons_of(ev, d, ps);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = resolve(tx, ev, &ps[i], err);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = event_facts(tx, ev, d, ps[i].resolved, i == 0, err);
        free(ps);
    } else if (recorded) {
        rc = recorded_fact(tx, ev, d, err);
    } else {
        rc = merged(tx, d, unmerge, err);
    }
    json_decref(d);
    return rc;
}

static const Projection identity_projection = {
    .name = "identity",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void memory_projections_register(void)
{
    ledger_projection_register(&identity_projection);
    /* after identity: an item's contact is read from the identities the
     * same event has just written */
    memory__items_register();
}

/* ---- the person an item is about (items.c) ---- */

/* The contact an identity was first given to (identities.first_contact): it
 * never changes once written, so it is the same whether the identity tables
 * are at this event or at the head of the log (a rebuild of "items" alone
 * sees the latter). Merges are followed when reading. */
static int first_contact(Store *tx, const Event *ev, const char *kind, const char *value,
                         char out[27], Err *err)
{
    /* an identity first seen after this event is not known to it (a
     * rebuild of "items" alone sees the identities of later events too) */
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "SELECT first_contact FROM identities WHERE kind = ?1 AND value = ?2"
                           " AND seq <= ?3",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, kind, strlen(kind));
    store_bind_text(st, 2, value, strlen(value));
    store_bind_int(st, 3, ev->seq);
    if ((rc = store_step(st, err)) == STORE_ROW)
        snprintf(out, 27, "%s", store_col_text(st, 0, NULL));
    store_stmt_done(st);
    return rc < 0 ? rc : 0;
}

int memory__item_contact(Store *tx, const Event *ev, const json_t *d,
                         char out[MEMORY_CONTACT_ID_LEN + 1], Err *err)
{
    out[0] = '\0';
    if (!strcmp(ev->type, "email.received") || !strcmp(ev->type, "form.submitted")) {
        Person *ps = xcalloc(PERSONS_MAX, sizeof *ps);
        size_t n = persons_of(ev, d, ps);
        int rc = 0;
        /* the sender of an email, the person of a form: the first person read */
        if (n && ps[0].n)
            rc = first_contact(tx, ev, ps[0].ids[0].kind, ps[0].ids[0].value, out, err);
        free(ps);
        return rc;
    }
    /* a note: data.contact (a contact id or an email address) */
    const char *who = json_string_value(json_object_get(d, "contact"));
    if (!who)
        return 0;
    char v[VALUE_MAX + 1];
    if (norm_email(who, v))
        return first_contact(tx, ev, "email", v, out, err);
    int64_t first = 0;
    int rc = store_query_int(tx, "SELECT first_seq FROM contacts WHERE id = ?1", who, 0, &first,
                             err);
    if (rc == 0 && first > 0 && first <= ev->seq)
        snprintf(out, MEMORY_CONTACT_ID_LEN + 1, "%s", who);
    return rc;
}

/* ---- reading ---- */

int memory_contact_find(Store *rd, const char *what, char out[MEMORY_CONTACT_ID_LEN + 1],
                        Err *err)
{
    Ident id = { 0 };
    char v[VALUE_MAX + 1];
    if (norm_email(what, v))
        snprintf(id.kind, sizeof id.kind, "email");
    else if (norm_phone(what, v))
        snprintf(id.kind, sizeof id.kind, "phone");
    if (id.kind[0]) {
        snprintf(id.value, sizeof id.value, "%s", v);
        int rc = lookup(rd, &id, out, err);
        if (rc < 0)
            return rc;
        if (out[0])
            return 0;
    }
    /* a contact id, or a payment customer id */
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT coalesce(merged_into, id) FROM contacts WHERE id = ?1"
                           " UNION ALL SELECT coalesce(c.merged_into, c.id) FROM identities i"
                           " JOIN contacts c ON c.id = i.contact_id"
                           " WHERE i.kind = 'payment' AND i.value = ?1 LIMIT 1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, what, strlen(what));
    out[0] = '\0';
    if ((rc = store_step(st, err)) == STORE_ROW)
        snprintf(out, MEMORY_CONTACT_ID_LEN + 1, "%s", store_col_text(st, 0, NULL));
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    return out[0] ? 0 : err_set(err, ERR_NOTFOUND, "no contact '%.100s'", what);
}

static json_t *text_or_null(StoreStmt *st, int col)
{
    const char *v = store_col_text(st, col, NULL);
    return v ? json_string(v) : json_null();
}

int memory_contact_get(Store *rd, const char *id, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT c.id, c.name, c.email, c.phone, c.merged_into, c.first_seq,"
                           " c.last_seq, c.events, o.id, o.domain, o.name FROM contacts c"
                           " LEFT JOIN orgs o ON o.id = c.org_id WHERE c.id = ?1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, id, strlen(id));
    json_t *c = NULL;
    if ((rc = store_step(st, err)) == STORE_ROW) {
        c = json_pack("{s:s, s:o, s:o, s:o, s:o, s:I, s:I, s:I}", "id",
                      store_col_text(st, 0, NULL), "name", text_or_null(st, 1), "email",
                      text_or_null(st, 2), "phone", text_or_null(st, 3), "merged_into",
                      text_or_null(st, 4), "first_seq", (json_int_t)store_col_int(st, 5),
                      "last_seq", (json_int_t)store_col_int(st, 6), "events",
                      (json_int_t)store_col_int(st, 7));
        json_object_set_new(c, "org",
                            store_col_text(st, 8, NULL)
                                ? json_pack("{s:s, s:s, s:o}", "id", store_col_text(st, 8, NULL),
                                            "domain", store_col_text(st, 9, NULL), "name",
                                            text_or_null(st, 10))
                                : json_null());
    }
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (!c)
        return err_set(err, ERR_NOTFOUND, "no contact '%.40s'", id);
    json_t *ids = json_array(), *merged_ids = json_array();
    if ((rc = store_prepare(rd,
                            "SELECT kind, value, seq FROM identities WHERE contact_id = ?1"
                            " ORDER BY seq, kind, value",
                            &st, err)) == 0) {
        store_bind_text(st, 1, id, strlen(id));
        while ((rc = store_step(st, err)) == STORE_ROW)
            json_array_append_new(ids, json_pack("{s:s, s:s, s:I}", "kind",
                                                 store_col_text(st, 0, NULL), "value",
                                                 store_col_text(st, 1, NULL), "seq",
                                                 (json_int_t)store_col_int(st, 2)));
        store_stmt_done(st);
    }
    if (rc >= 0 && (rc = store_prepare(rd, "SELECT id FROM contacts WHERE merged_into = ?1"
                                           " ORDER BY first_seq",
                                       &st, err)) == 0) {
        store_bind_text(st, 1, id, strlen(id));
        while ((rc = store_step(st, err)) == STORE_ROW)
            json_array_append_new(merged_ids, json_string(store_col_text(st, 0, NULL)));
        store_stmt_done(st);
    }
    json_object_set_new(c, "identities", ids);
    json_object_set_new(c, "merged", merged_ids);
    /* the name it goes by: the operator's, else the fullest current name
     * fact (a calendar's "Ann" beside an email's "Ann Smith"), else the
     * first name seen */
    if (rc >= 0 && store_prepare(rd,
                                 "SELECT value FROM facts WHERE contact_id = ?1 AND key = 'name'"
                                 " AND superseded_by IS NULL ORDER BY source = 'operator' DESC,"
                                 " length(value) DESC,"
                                 " confidence DESC, id DESC LIMIT 1",
                                 &st, err) == 0) {
        store_bind_text(st, 1, id, strlen(id));
        if (store_step(st, err) == STORE_ROW) {
            size_t len;
            const char *v = store_col_text(st, 0, &len);
            json_t *name = json_loadb(v, len, JSON_DECODE_ANY, NULL);
            if (json_is_string(name))
                json_object_set(c, "name", name);
            json_decref(name);
        }
        store_stmt_done(st);
    }
    if (rc < 0) {
        json_decref(c);
        return rc;
    }
    *ret = c;
    return 0;
}

int memory_contacts_list(Store *rd, const char *query, int64_t limit, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT c.id, c.name, c.email, o.domain, c.last_seq, c.events"
                           " FROM contacts c LEFT JOIN orgs o ON o.id = c.org_id"
                           " WHERE c.merged_into IS NULL AND (?1 IS NULL"
                           "  OR instr(lower(coalesce(c.name, '')), lower(?1)) > 0"
                           "  OR instr(coalesce(c.email, ''), lower(?1)) > 0"
                           "  OR instr(coalesce(o.domain, ''), lower(?1)) > 0)"
                           " ORDER BY c.last_seq DESC LIMIT ?2",
                           &st, err);
    if (rc < 0)
        return rc;
    if (query)
        store_bind_text(st, 1, query, strlen(query));
    store_bind_int(st, 2, limit > 0 ? limit : 100);
    json_t *list = json_array();
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(list, json_pack("{s:s, s:o, s:o, s:o, s:I, s:I}", "id",
                                              store_col_text(st, 0, NULL), "name",
                                              text_or_null(st, 1), "email", text_or_null(st, 2),
                                              "org", text_or_null(st, 3), "last_seq",
                                              (json_int_t)store_col_int(st, 4), "events",
                                              (json_int_t)store_col_int(st, 5)));
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

static int standing(Store *rd, const char *id, bool *stands, Err *err);
static int record(Ledger *l, const char *type, json_t *d, Err *err);

/* ---- facts, read and recorded ---- */

int memory_facts(Store *rd, const char *contact, bool history, json_t **ret, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(rd,
                           "SELECT f.id, f.key, f.value, f.confidence, f.source, f.source_seq,"
                           " f.observed_at, f.superseded_by,"
                           " (SELECT count(*) FROM facts g WHERE g.contact_id = f.contact_id"
                           "  AND g.key = f.key AND g.superseded_by IS NULL) > 1"
                           " FROM facts f WHERE f.contact_id = ?1"
                           " AND (?2 OR f.superseded_by IS NULL) ORDER BY f.key, f.id",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, contact, strlen(contact));
    store_bind_int(st, 2, history);
    json_t *list = json_array();
    /* the last contact, kept on the contact's row rather than as a fact per event */
    StoreStmt *lc;
    if (store_prepare(rd, "SELECT last_at, last_type, last_seq FROM contacts WHERE id = ?1"
                          " AND last_at IS NOT NULL",
                      &lc, err) == 0) {
        store_bind_text(lc, 1, contact, strlen(contact));
        if (store_step(lc, err) == STORE_ROW)
            json_array_append_new(
                list, json_pack("{s:n, s:s, s:{s:s, s:s, s:I}, s:f, s:s, s:I, s:s, s:b, s:b}",
                                "id", "key", "last_contact", "value", "at",
                                store_col_text(lc, 0, NULL), "type", store_col_text(lc, 1, NULL),
                                "seq", (json_int_t)store_col_int(lc, 2), "confidence", 1.0,
                                "source", "event", "seq", (json_int_t)store_col_int(lc, 2),
                                "observed_at", store_col_text(lc, 0, NULL), "current", 1,
                                "conflict", 0));
        store_stmt_done(lc);
    }
    while ((rc = store_step(st, err)) == STORE_ROW) {
        size_t len;
        const char *v = store_col_text(st, 2, &len);
        json_t *value = json_loadb(v, len, JSON_DECODE_ANY, NULL);
        bool current = store_col_text(st, 7, NULL) == NULL;
        json_t *f = json_pack("{s:I, s:s, s:o, s:f, s:s, s:I, s:s, s:b, s:b}", "id",
                              (json_int_t)store_col_int(st, 0), "key", store_col_text(st, 1, NULL),
                              "value", value ? value : json_null(), "confidence",
                              store_col_real(st, 3), "source", store_col_text(st, 4, NULL), "seq",
                              (json_int_t)store_col_int(st, 5), "observed_at",
                              store_col_text(st, 6, NULL), "current", current, "conflict",
                              current && store_col_int(st, 8));
        if (!current)
            json_object_set_new(f, "superseded_by", json_integer(store_col_int(st, 7)));
        json_array_append_new(list, f);
    }
    store_stmt_done(st);
    if (rc < 0) {
        json_decref(list);
        return rc;
    }
    *ret = list;
    return 0;
}

int memory_fact_record(Ledger *l, Store *rd, const char *contact, const char *key,
                       const json_t *value, double confidence, const char *source, Err *err)
{
    size_t n = strlen(key);
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++)
        ok = (key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') || key[i] == '_';
    if (!ok)
        return err_set(err, ERR_INVAL, "key: '%.64s': 1-64 of a-z, 0-9 and _", key);
    if (!(confidence >= 0 && confidence <= 1))
        return err_set(err, ERR_INVAL, "confidence: must be from 0 to 1");
    bool stands = false;
    int rc = standing(rd, contact, &stands, err);
    if (rc < 0)
        return rc;
    if (!stands)
        return err_set(err, ERR_NOTFOUND, "no contact '%.40s' standing", contact);
    return record(l, "memory.fact.recorded",
                  json_pack("{s:s, s:s, s:O, s:f, s:s}", "contact", contact, "key", key, "value",
                            value, "confidence", confidence, "source", source),
                  err);
}

/* ---- merges ---- */

static int standing(Store *rd, const char *id, bool *stands, Err *err)
{
    int64_t n = 0;
    int rc = store_query_int(rd, "SELECT count(*) FROM contacts WHERE id = ?1 AND merged_into IS NULL",
                             id, 0, &n, err);
    *stands = n > 0;
    return rc;
}

static int record(Ledger *l, const char *type, json_t *d, Err *err)
{
    Event *ev = NULL;
    int rc = ledger_event_new(type, "operator", NULL, d, NULL, ledger_limits(l), &ev, err);
    json_decref(d);
    return rc < 0 ? rc : ledger_append(l, &ev, 1, NULL, err);
}

int memory_merge(Ledger *l, Store *rd, const char *into, const char *from, const char *by,
                 Err *err)
{
    if (!strcmp(into, from))
        return err_set(err, ERR_INVAL, "a contact cannot be merged into itself");
    bool a = false, b = false;
    int rc = standing(rd, into, &a, err);
    if (rc == 0)
        rc = standing(rd, from, &b, err);
    if (rc < 0)
        return rc;
    if (!a || !b)
        return err_set(err, ERR_NOTFOUND, "no contact '%.40s' standing (merged away, or unknown)",
                       !a ? into : from);
    return record(l, "memory.merged", json_pack("{s:s, s:s, s:s}", "into", into, "from", from, "by",
                                                by),
                  err);
}

int memory_unmerge(Ledger *l, Store *rd, const char *contact, const char *by, Err *err)
{
    int64_t merged_away = 0;
    int rc = store_query_int(rd, "SELECT count(*) FROM contacts WHERE id = ?1 AND merged_into IS NOT NULL",
                             contact, 0, &merged_away, err);
    if (rc < 0)
        return rc;
    if (!merged_away)
        return err_set(err, ERR_EXISTS, "contact '%.40s' is not merged into another", contact);
    return record(l, "memory.unmerged", json_pack("{s:s, s:s}", "contact", contact, "by", by),
                  err);
}

/* ---- export ---- */

int memory_export(Store *rd, const char *contact, json_t **ret, Err *err)
{
    json_t *profile = NULL, *facts = NULL;
    int rc = memory_contact_get(rd, contact, &profile, err);
    if (rc == 0)
        rc = memory_facts(rd, contact, true, &facts, err);
    if (rc < 0) {
        json_decref(profile);
        return rc;
    }
    /* the events that name them: by subject, or holding one of their
     * identities (the contact and those merged into it) */
    json_t *events = json_array();
    StoreStmt *st;
    rc = store_prepare(rd,
                       "SELECT e.seq FROM events e WHERE e.subject = 'contact:' || ?1"
                       " OR EXISTS (SELECT 1 FROM identities i WHERE i.contact_id = ?1"
                       "  AND instr(lower(e.data), lower(json_quote(i.value))) > 0)"
                       " ORDER BY e.seq LIMIT 100000",
                       &st, err);
    int64_t *seqs = NULL;
    size_t n = 0;
    if (rc == 0) {
        store_bind_text(st, 1, contact, strlen(contact));
        while ((rc = store_step(st, err)) == STORE_ROW) {
            seqs = xrealloc(seqs, (n + 1) * sizeof *seqs);
            seqs[n++] = store_col_int(st, 0);
        }
        store_stmt_done(st);
    }
    for (size_t i = 0; rc >= 0 && i < n; i++) {
        Event *ev = NULL;
        Err e2 = { 0 };
        if (ledger_event_get(rd, seqs[i], NULL, &ev, &e2) == 0)
            json_array_append_new(events, ledger_event_to_json(ev));
        ledger_event_free(ev);
    }
    free(seqs);
    if (rc < 0) {
        json_decref(profile);
        json_decref(facts);
        json_decref(events);
        return rc;
    }
    char now[CORE_TIME_LEN + 1];
    core_time_format(core_time_now_ms(), now);
    *ret = json_pack("{s:s, s:o, s:o, s:o}", "exported_at", now, "profile", profile, "facts", facts,
                     "events", events);
    return 0;
}

/* ---- forget ---- */

/* The seqs of every event that names contact: by subject, holding one of
 * its identities (as written, or as the identity projection read it), the
 * facts recorded about it, and the labels made from those events. */
static int naming_events(Store *rd, const char *contact, json_t *seqs, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(
        rd,
        "WITH named(seq) AS ("
        " SELECT e.seq FROM events e WHERE e.type NOT LIKE 'ledger.%' AND ("
        "  e.subject = 'contact:' || ?1"
        "  OR json_extract(e.data, '$.contact') = ?1"
        "  OR EXISTS (SELECT 1 FROM identities i WHERE i.contact_id = ?1"
        "   AND instr(lower(e.data), lower(i.value)) > 0))"
        " UNION SELECT seq FROM identities WHERE contact_id = ?1"
        " UNION SELECT source_seq FROM facts WHERE contact_id = ?1)"
        " SELECT seq FROM named"
        " UNION SELECT e.seq FROM events e WHERE e.type = 'model.labeled'"
        "  AND json_extract(e.data, '$.event_seq') IN (SELECT seq FROM named)"
        " ORDER BY 1 LIMIT 100001",
        &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, contact, strlen(contact));
    while ((rc = store_step(st, err)) == STORE_ROW)
        json_array_append_new(seqs, json_integer(store_col_int(st, 0)));
    store_stmt_done(st);
    if (rc < 0)
        return rc;
    if (json_array_size(seqs) > LEDGER_REDACT_MAX)
        return err_set(err, ERR_TOOBIG, "more than %d events name this contact", LEDGER_REDACT_MAX);
    return 0;
}

/* The stored files those events reference (form uploads, attachments). */
static json_t *files_of(Store *rd, const json_t *seqs)
{
    json_t *files = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(seqs, i, v) {
        Event *ev = NULL;
        Err err = { 0 };
        if (ledger_event_get(rd, json_integer_value(v), NULL, &ev, &err) < 0)
            continue;
        json_t *d = json_loadb(ev->data, ev->data_len, 0, NULL);
        /* an email's raw message (pull/email.c) goes with it */
        const char *raw = json_string_value(json_object_get(d, "raw_sha256"));
        if (raw && strlen(raw) == 64 && strspn(raw, "0123456789abcdef") == 64)
            json_array_append_new(files, json_string(raw));
        const char *lists[] = { "files", "attachments" };
        for (int l = 0; l < 2; l++) {
            size_t j;
            json_t *f;
            json_array_foreach(json_object_get(d, lists[l]), j, f) {
                const char *h = json_string_value(json_object_get(f, "sha256"));
                bool hex = h && strlen(h) == 64;
                for (const char *p = h; hex && *p; p++)
                    hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
                if (hex)
                    json_array_append_new(files, json_string(h));
            }
        }
        json_decref(d);
        ledger_event_free(ev);
    }
    return files;
}

int memory_forget(Ledger *l, Store *rd, const char *data_dir, const char *contact, bool dry_run,
                  json_t **report, Err *err)
{
    bool stands = false;
    int rc = standing(rd, contact, &stands, err);
    if (rc < 0)
        return rc;
    if (!stands)
        return err_set(err, ERR_NOTFOUND, "no contact '%.40s' standing", contact);
    /* the contacts merged into it go too: their identities are its own now */
    json_t *seqs = json_array();
    if ((rc = naming_events(rd, contact, seqs, err)) < 0) {
        json_decref(seqs);
        return rc;
    }
    json_t *files = files_of(rd, seqs);
    json_t *rep = json_pack("{s:s, s:O, s:O, s:b}", "contact", contact, "events", seqs, "files",
                            files, "dry_run", dry_run);
    if (dry_run || json_array_size(seqs) == 0) {
        json_decref(seqs);
        json_decref(files);
        *report = rep;
        return 0;
    }
    size_t n = json_array_size(seqs);
    int64_t *v = xcalloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = json_integer_value(json_array_get(seqs, i));
    int64_t at = 0;
    rc = ledger_redact(l, rd, v, n, "forget", contact, &at, err);
    free(v);
    int64_t replayed = 0;
    /* every projection from the log again: what was known of them goes */
    if (rc == 0)
        rc = ledger_replay(rd, NULL, true, &replayed, err);
    /* snapshots hold old projection rows */
    if (rc == 0)
        rc = store_exec(rd, "DELETE FROM projection_snapshots", err);
    /* the full-text index merges its deleted entries away */
    if (rc == 0)
        rc = store_exec(rd, "INSERT INTO items_fts(items_fts) VALUES('optimize')", err);
    /* stored vectors of items that are gone (memory/vectors.h) */
    if (rc == 0)
        rc = store_exec(rd, "DELETE FROM item_vectors WHERE item_id NOT IN (SELECT id FROM items)",
                        err);
    size_t removed = 0, i;
    json_t *h;
    json_array_foreach(files, i, h) {
        char path[4096];
        snprintf(path, sizeof path, "%s/files/%s", data_dir, json_string_value(h));
        removed += rc == 0 && remove(path) == 0;
    }
    /* the freed pages and the log's old frames still hold the bytes */
    if (rc == 0)
        rc = store_exec(rd, "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
                        err);
    json_object_set_new(rep, "redaction_seq", json_integer(at));
    json_object_set_new(rep, "files_removed", json_integer((json_int_t)removed));
    json_decref(seqs);
    json_decref(files);
    if (rc < 0) {
        json_decref(rep);
        return rc;
    }
    log_warn("contact forgotten", json_pack("{s:s, s:I, s:I}", "contact", contact, "events",
                                            (json_int_t)n, "redaction_seq", (json_int_t)at));
    *report = rep;
    return 0;
}
