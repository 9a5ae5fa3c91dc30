/*
 * Counters: one table, named once, incremented from every part of the
 * module without locks.  ngx_ws_agent_counters points at this worker's own
 * table until a shared zone replaces it.
 */

#ifndef _NGX_WS_AGENT_STATS_H_INCLUDED_
#define _NGX_WS_AGENT_STATS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_WS_AGENT_CONNECTIONS = 0,
    NGX_WS_AGENT_ACTIVE,
    NGX_WS_AGENT_GATED,
    NGX_WS_AGENT_ACKS,
    NGX_WS_AGENT_READY_TIMEOUTS,
    NGX_WS_AGENT_BACKEND_FAILED_BEFORE_READY,
    NGX_WS_AGENT_CLIENT_LEFT_WHILE_GATED,
    NGX_WS_AGENT_FRAMES_HELD,
    NGX_WS_AGENT_BYTES_HELD,
    NGX_WS_AGENT_FRAMES_DROPPED,
    NGX_WS_AGENT_BACKPRESSURE,
    NGX_WS_AGENT_SENT_1001,
    NGX_WS_AGENT_SENT_1002,
    NGX_WS_AGENT_SENT_1009,
    NGX_WS_AGENT_SENT_1013,
    NGX_WS_AGENT_SENT_1014,
    NGX_WS_AGENT_PROTOCOL_ERRORS_CLIENT,
    NGX_WS_AGENT_PROTOCOL_ERRORS_BACKEND,
    NGX_WS_AGENT_EVENTS_SEEN,
    NGX_WS_AGENT_EVENTS_QUEUED,
    NGX_WS_AGENT_EVENTS_OVERSIZED,
    NGX_WS_AGENT_EVENTS_NOT_JSON,
    NGX_WS_AGENT_EVENTS_UNTYPED,
    NGX_WS_AGENT_EVENTS_OTHER_TYPE,
    NGX_WS_AGENT_EVENTS_UNROUTED,
    NGX_WS_AGENT_LIFECYCLE_QUEUED,
    NGX_WS_AGENT_NCOUNTERS
} ngx_ws_agent_counter_e;


extern ngx_atomic_t  *ngx_ws_agent_counters;

#define ngx_ws_agent_count(c, n)                                             \
    (void) ngx_atomic_fetch_add(&ngx_ws_agent_counters[c], n)


#endif /* _NGX_WS_AGENT_STATS_H_INCLUDED_ */
