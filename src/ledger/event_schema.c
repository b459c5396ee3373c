/* The data shapes of the event types every layer shares (DESIGN.md,
 * "Canonical events"). Each rule is a path into data, where "x[]" means
 * every element of the array x; extra fields are allowed and kept. */
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "ledger/event.h"

typedef enum Kind {
    K_STR,      /* string */
    K_TEXT,     /* string, may be empty */
    K_EMAIL,    /* string with one @ and no spaces */
    K_AMOUNT,   /* integer >= 0, minor units */
    K_CURRENCY, /* three lower-case letters (ISO 4217) */
    K_TIME,     /* RFC 3339 */
    K_OBJ,
    K_ARR,
} Kind;

typedef struct Rule {
    const char *path;
    Kind kind;
    bool required;
} Rule;

typedef struct Shape {
    const char *type; /* exact type, or prefix ending in '.' */
    const Rule *rules;
} Shape;

static const Rule email_received[] = {
    { "from", K_OBJ, true },          { "from.email", K_EMAIL, true },
    { "from.name", K_TEXT, false },   { "to", K_ARR, true },
    { "to[]", K_OBJ, true },          { "to[].email", K_EMAIL, true },
    { "to[].name", K_TEXT, false },   { "cc", K_ARR, false },
    { "cc[]", K_OBJ, true },          { "cc[].email", K_EMAIL, true },
    { "cc[].name", K_TEXT, false },   { "subject", K_TEXT, true },
    { "text", K_TEXT, true },         { "html", K_TEXT, false },
    { "message_id", K_STR, true },    { "in_reply_to", K_STR, false },
    { "references", K_ARR, false },   { "references[]", K_STR, true },
    { "attachments", K_ARR, false },  { "attachments[]", K_OBJ, true },
    { "attachments[].name", K_TEXT, true }, { "attachments[].type", K_STR, true },
    { "attachments[].size", K_AMOUNT, true }, { "attachments[].sha256", K_STR, true },
    { "folder", K_STR, false },       { NULL, 0, false },
};

static const Rule form_submitted[] = {
    { "form", K_STR, true },          { "fields", K_OBJ, true },
    { "files", K_ARR, false },        { "files[]", K_OBJ, true },
    { "files[].field", K_STR, true }, { "files[].name", K_TEXT, true },
    { "files[].type", K_STR, true },  { "files[].size", K_AMOUNT, true },
    { "files[].sha256", K_STR, true }, { NULL, 0, false },
};

static const Rule payment[] = {
    { "amount", K_AMOUNT, true },     { "currency", K_CURRENCY, true },
    { "customer", K_OBJ, true },      { "customer.id", K_STR, false },
    { "customer.email", K_EMAIL, false }, { "customer.name", K_TEXT, false },
    { "description", K_TEXT, false }, { "provider_id", K_STR, true },
    { NULL, 0, false },
};

static const Rule subscription[] = {
    { "customer", K_OBJ, true },      { "customer.id", K_STR, false },
    { "customer.email", K_EMAIL, false }, { "customer.name", K_TEXT, false },
    { "plan", K_STR, true },          { "amount", K_AMOUNT, true },
    { "currency", K_CURRENCY, true }, { "interval", K_STR, true },
    { "status", K_STR, true },        { "current_period_end", K_TIME, true },
    { "cancel_at", K_TIME, false },   { NULL, 0, false },
};

static const Rule calendar_event[] = {
    { "uid", K_STR, true },           { "summary", K_TEXT, true },
    { "description", K_TEXT, false }, { "start", K_STR, true },
    { "end", K_STR, true },           { "tzid", K_STR, false },
    { "location", K_TEXT, false },    { "organizer", K_OBJ, false },
    { "organizer.email", K_EMAIL, true }, { "organizer.name", K_TEXT, false },
    { "attendees", K_ARR, false },    { "attendees[]", K_OBJ, true },
    { "attendees[].email", K_EMAIL, true }, { "attendees[].name", K_TEXT, false },
    { "attendees[].role", K_STR, false }, { "attendees[].status", K_STR, false },
    { "changes", K_ARR, false },      { "changes[]", K_STR, true },
    { NULL, 0, false },
};

static const Rule contact_imported[] = {
    { "email", K_EMAIL, true },       { "name", K_TEXT, false },
    { "company", K_TEXT, false },     { "phone", K_STR, false },
    { "tags", K_ARR, false },         { "tags[]", K_STR, true },
    { "fields", K_OBJ, false },       { NULL, 0, false },
};

static const Shape shapes[] = {
    { "email.received", email_received },
    { "form.submitted", form_submitted },
    { "payment.succeeded", payment },
    { "payment.refunded", payment },
    { "invoice.paid", payment },
    { "invoice.payment_failed", payment },
    { "subscription.created", subscription },
    { "subscription.updated", subscription },
    { "subscription.canceled", subscription },
    { "calendar.event.created", calendar_event },
    { "calendar.event.updated", calendar_event },
    { "calendar.event.canceled", calendar_event },
    { "contact.imported", contact_imported },
};

static bool email_ok(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at || at == s || at == s + len - 1 || len > 254 || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= ' ')
            return false;
    return true;
}

static int check_value(const json_t *v, Kind kind, const char *where, Err *err)
{
    switch (kind) {
    case K_OBJ:
        if (!json_is_object(v))
            return err_set(err, ERR_INVAL, "field '%s': must be an object, not %s", where,
                           core_json_type_name(v));
        return 0;
    case K_ARR:
        if (!json_is_array(v))
            return err_set(err, ERR_INVAL, "field '%s': must be an array, not %s", where,
                           core_json_type_name(v));
        return 0;
    case K_AMOUNT:
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return err_set(err, ERR_INVAL,
                           "field '%s': must be a non-negative integer (minor units)", where);
        return 0;
    default:
        break;
    }
    if (!json_is_string(v))
        return err_set(err, ERR_INVAL, "field '%s': must be a string, not %s", where,
                       core_json_type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    int64_t ms;
    switch (kind) {
    case K_STR:
        if (len == 0)
            return err_set(err, ERR_INVAL, "field '%s': must not be empty", where);
        break;
    case K_EMAIL:
        if (!email_ok(s, len))
            return err_set(err, ERR_INVAL, "field '%s': not an email address", where);
        break;
    case K_CURRENCY:
        if (len != 3 || s[0] < 'a' || s[0] > 'z' || s[1] < 'a' || s[1] > 'z' || s[2] < 'a' ||
            s[2] > 'z')
            return err_set(err, ERR_INVAL,
                           "field '%s': must be an ISO 4217 code in lower case (e.g. eur)", where);
        break;
    case K_TIME:
        if (core_time_parse(s, len, &ms) < 0)
            return err_set(err, ERR_INVAL, "field '%s': not an RFC 3339 time", where);
        break;
    default:
        break;
    }
    return 0;
}

/* Applies the rule at path (relative to v) with where = the printable
 * location so far. */
static int check_path(const json_t *v, const char *path, const Rule *r, const char *where,
                      Err *err)
{
    const char *dot = strchr(path, '.');
    size_t seg = dot ? (size_t)(dot - path) : strlen(path);
    bool each = seg >= 2 && path[seg - 2] == '[' && path[seg - 1] == ']';
    size_t name_len = each ? seg - 2 : seg;
    char name[64], here[256];
    if (name_len >= sizeof name)
        return ERR_INTERNAL;
    memcpy(name, path, name_len);
    name[name_len] = '\0';
    snprintf(here, sizeof here, "%s%s%s", where, where[0] ? "." : "", name);
    const json_t *child = json_is_object(v) ? json_object_get(v, name) : NULL;
    if (!child || json_is_null(child)) {
        /* a missing parent is reported by the parent's own rule */
        if (r->required && !dot && !each)
            return err_set(err, ERR_INVAL, "field '%s': required", here);
        return 0;
    }
    if (each) {
        if (!json_is_array(child))
            return 0; /* reported by the array's own rule */
        size_t i;
        const json_t *el;
        json_array_foreach(child, i, el) {
            char at[300];
            snprintf(at, sizeof at, "%s[%zu]", here, i);
            int rc = dot ? (json_is_object(el) ? check_path(el, dot + 1, r, at, err) : 0)
                         : check_value(el, r->kind, at, err);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (dot)
        return json_is_object(child) ? check_path(child, dot + 1, r, here, err) : 0;
    return check_value(child, r->kind, here, err);
}

int ledger_event_check_data(const char *type, const json_t *data, Err *err)
{
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        if (strcmp(shapes[i].type, type))
            continue;
        for (const Rule *r = shapes[i].rules; r->path; r++) {
            int rc = check_path(data, r->path, r, "data", err);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    return 0;
}
