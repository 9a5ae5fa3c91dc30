/*
 * The counters' storage (see ngx_ws_agent_stats.h).
 */

#include "ngx_ws_agent_stats.h"


static ngx_atomic_t  ngx_ws_agent_local_counters[NGX_WS_AGENT_NCOUNTERS];

ngx_atomic_t  *ngx_ws_agent_counters = ngx_ws_agent_local_counters;
