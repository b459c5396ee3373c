/* Workflow definitions (workflow.h). Placeholder until it lands. */
#include "flow/workflow.h"
