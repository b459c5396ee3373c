/* Private to src/flow/workflow.c, steps.c and catalog.c: the parser entry
 * that the catalog uses to also check a file's name against its file name. */
#ifndef BUREAU_FLOW_WORKFLOW_INT_H
#define BUREAU_FLOW_WORKFLOW_INT_H

#include "flow/workflow.h"

/* flow_workflow_parse_report(), and when expect_name is not NULL a `name`
 * other than expect_name is one more problem (named at the `name` value). */
int flow__workflow_parse(const char *text, size_t len, const char *path, const char *expect_name,
                         FlowWorkflow **ret, char **ret_report, Err *err);

/* True when s is 1-FLOW_NAME_MAX of [a-z0-9_-]. */
bool flow__name_ok(const char *s);

/* True when s is a trigger event type: segments of [a-z0-9_-] joined by
 * '.', or such a prefix followed by ".*". */
bool flow__event_pattern_ok(const char *s);

/* A Lua error message without its "CHUNK:LINE: " prefix (borrowed from
 * msg). */
const char *flow__lua_message(const char *msg);

#endif
