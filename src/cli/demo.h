/* `bureau demo` (cmd_demo.c): a demo consultancy in a data dir, fed
 * through the real importers and connectors. demo_data.c writes its raw
 * inputs. */
#ifndef BUREAU_CLI_DEMO_H
#define BUREAU_CLI_DEMO_H

#include <stdint.h>

#include "core/err.h"

typedef struct DemoCounts {
    int contacts, emails, payments, subscriptions, stripe_events, meetings;
} DemoCounts;

/* Writes dir/contacts.csv, dir/mail.mbox, dir/stripe/NNN.json (Stripe
 * events, in the order to post them) and dir/calendar.ics for a company
 * whose operator is me, dated around now_ms; the same seed gives the same
 * files. */
int demo_data_write(const char *dir, int64_t now_ms, uint64_t seed, const char *me,
                    DemoCounts *counts, Err *err);

#endif
