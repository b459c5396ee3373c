/* Cron schedules (flow_cron.h). Placeholder until it lands. */
#include "flow/flow_cron.h"
