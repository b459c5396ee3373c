/* The Lua sandbox (flow_lua.h). Placeholder until it lands. */
#include "flow/flow_lua.h"
