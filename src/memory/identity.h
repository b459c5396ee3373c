/* Identity: contacts, their identities and organisations, resolved from
 * every event that names a person (the "identity" projection), and the
 * operator's merges (docs/memory.md).
 *
 * A person named by an event is a set of identities (an email address, a
 * phone number, a payment customer id) with a name and maybe a company.
 * When one of them is known, the person is that contact and the others
 * join it; when none is, a new contact begins, its id derived from its
 * first identity so that replay gives the same ids. Two known identities of
 * different contacts in one event are not merged by themselves: merging is
 * the operator's (memory.merged), and can be undone (memory.unmerged). */
#ifndef BUREAU_MEMORY_IDENTITY_H
#define BUREAU_MEMORY_IDENTITY_H

#include <jansson.h>
#include <stdbool.h>

#include "core/err.h"
#include "ledger/ledger.h"

#define MEMORY_CONTACT_ID_LEN 26

/* Registers the "identity" projection (call before ledger_open). */
void memory_projections_register(void);

/* Whether domain (lower case) is a free-mail provider's: its users get no
 * organisation. */
bool memory_freemail(const char *domain);

/* The contact an email address, a phone, a payment customer id or a contact
 * id names (following merges to the contact that stands); ERR_NOTFOUND. */
int memory_contact_find(Store *rd, const char *what, char out[MEMORY_CONTACT_ID_LEN + 1],
                        Err *err);

/* A contact: {id, name, email, phone, org: {id, domain, name} | null,
 * identities: [{kind, value, seq}], merged: [ids merged into it],
 * merged_into, first_seq, last_seq, events}. */
int memory_contact_get(Store *rd, const char *id, json_t **ret, Err *err);

/* Contacts that stand (not merged away), most recently seen first; query
 * (may be NULL) matches name, email or organisation domain. */
int memory_contacts_list(Store *rd, const char *query, int64_t limit, json_t **ret, Err *err);

/* A contact's facts: the current ones (with history, the superseded too),
 * by key then age: [{id, key, value, confidence, source, seq, observed_at,
 * current, conflict, superseded_by?}]. conflict: another current fact of
 * the key says something else. */
int memory_facts(Store *rd, const char *contact, bool history, json_t **ret, Err *err);
/* Records memory.fact.recorded (source "operator" or "step"): it
 * supersedes the current facts of the key from that kind of source (an
 * operator's: all of them). */
int memory_fact_record(Ledger *l, Store *rd, const char *contact, const char *key,
                       const json_t *value, double confidence, const char *source, Err *err);

/* Everything held about a contact: {exported_at, profile, facts (with
 * their history), events: every event naming them (by subject, or holding
 * one of their identities), whole}. */
int memory_export(Store *rd, const char *contact, json_t **ret, Err *err);

/* Forgets a contact: the data of every event that names them (and the
 * labels made from those) is redacted in the ledger (ledger_redact: the
 * chain still verifies), every projection is rebuilt from the log without
 * it, projection snapshots are dropped, the files those events stored are
 * deleted, and the database is checkpointed and vacuumed so the bytes are
 * gone from the data directory. dry_run: only reports. *report: {contact,
 * events: [seq], files: [sha256], dry_run, redaction_seq?, files_removed?}. */
int memory_forget(Ledger *l, Store *rd, const char *data_dir, const char *contact, bool dry_run,
                  json_t **report, Err *err);

/* Records memory.merged: from joins into (both must stand, and differ). */
int memory_merge(Ledger *l, Store *rd, const char *into, const char *from, const char *by,
                 Err *err);
/* Records memory.unmerged: a merged-away contact stands again with the
 * identities it brought. */
int memory_unmerge(Ledger *l, Store *rd, const char *contact, const char *by, Err *err);

/* Internal to memory (items.c): the contact an item event is about (the
 * sender of an email, the person of a form, data.contact of a note) as
 * first given to its identity; "" when none. */
int memory__item_contact(Store *tx, const Event *ev, const json_t *d,
                         char out[MEMORY_CONTACT_ID_LEN + 1], Err *err);
void memory__items_register(void);

#endif
