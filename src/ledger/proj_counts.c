/* Projection "counts": how many events arrived per UTC day (of received_at),
 * type and source. The dashboard's ingest overview reads it. */
#include <string.h>

#include "ledger/projection.h"

static const char *const tables[] = { "event_counts", NULL };

static int apply(Store *tx, const Event *ev, Err *err)
{
    StoreStmt *st;
    int rc = store_prepare(tx,
                           "INSERT INTO event_counts(day, type, source, n) VALUES (?1, ?2, ?3, 1)"
                           " ON CONFLICT(day, type, source) DO UPDATE SET n = n + 1",
                           &st, err);
    if (rc < 0)
        return rc;
    store_bind_text(st, 1, ev->received_at, 10); /* YYYY-MM-DD */
    store_bind_text(st, 2, ev->type, strlen(ev->type));
    store_bind_text(st, 3, ev->source, strlen(ev->source));
    return store_stmt_exec(st, err);
}

static const Projection counts = {
    .name = "counts",
    .version = 1,
    .tables = tables,
    .apply = apply,
};

void ledger_projections_builtin(void)
{
    ledger_projection_register(&counts);
}
