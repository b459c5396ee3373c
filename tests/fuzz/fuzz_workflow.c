/* libFuzzer driver: workflow YAML through parsing and validation. Any input
 * must give a workflow whose definition rebuilds to the same version, or a
 * clean error that says why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flow/workflow.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FlowWorkflow *w = NULL, *back = NULL;
    char *report = NULL;
    Err err = { 0 };
    if (flow_workflow_parse_report((const char *)data, size, "fuzz.yaml", &w, &report, &err) ==
        0) {
        if (flow_workflow_from_json(w->definition, &back, &err) < 0 ||
            strcmp(back->version, w->version))
            __builtin_trap();
        flow_workflow_free(back);
        flow_workflow_free(w);
    } else if (!err.msg[0]) {
        __builtin_trap(); /* every refusal says why */
    }
    free(report);
    return 0;
}
