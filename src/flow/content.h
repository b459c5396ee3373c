/* Published content and its engagement (docs/builtin-workflows.md,
 * "content-pipeline"): the "content" projection and its queries.
 *
 * A piece is what the content pipeline published: `content.published
 * {piece, title, idea_seq, effect}`, the piece being the publishing task's
 * id. Any later event whose data names the piece (`data.piece`) reports
 * engagement with it: a view, a click, a reply, a sale. Its metric is
 * `data.metric` (else the event's type) and its value `data.value` or
 * `data.count` (else 1). Bureau's own events (task, step, approval, effect,
 * model, memory, connector, ledger, ...) never count as engagement. */
#ifndef BUREAU_FLOW_CONTENT_H
#define BUREAU_FLOW_CONTENT_H

#include <jansson.h>

#include "core/err.h"
#include "store/store.h"

#define CONTENT_PIECE_MAX  128  /* bytes of a piece id */
#define CONTENT_METRIC_MAX 64   /* bytes of a metric name */
#define CONTENT_RECENT     50   /* engagement events a piece's view lists */

/* Registers the "content" projection (before ledger_open). */
void content_projection_register(void);

/* The published pieces, newest first, at most limit (1..1000): [{piece,
 * title, published_at, idea_seq, effect, seq, engagement: {metric: total},
 * events}]. */
int content_list(Store *rd, int limit, json_t **ret, Err *err);

/* One piece: as in the list, plus `recent`, its last CONTENT_RECENT
 * engagement events [{seq, type, metric, value, occurred_at}], newest first.
 * ERR_NOTFOUND for a piece never published. */
int content_get(Store *rd, const char *piece, json_t **ret, Err *err);

#endif
