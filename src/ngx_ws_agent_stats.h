/*
 * Counters: one table, named once, incremented from every part of the
 * module without locks.  They live in a shared memory zone, so the status
 * location sums every worker and the numbers survive a reload; until the
 * zone exists (nginx -t, a configuration without ws_agent) they point at
 * this process's own table.
 */

#ifndef _NGX_WS_AGENT_STATS_H_INCLUDED_
#define _NGX_WS_AGENT_STATS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_WS_AGENT_CONNECTIONS = 0,
    NGX_WS_AGENT_ACTIVE,        /* gauges: summed from the live workers' */
    NGX_WS_AGENT_GATED,         /* slots, see ngx_ws_agent_stats_value() */
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
    NGX_WS_AGENT_EVENTS_PUBLISHED,
    NGX_WS_AGENT_EVENTS_OVERFLOW,
    NGX_WS_AGENT_EVENTS_REDIS_ERROR,
    NGX_WS_AGENT_EVENTS_LOST_AT_EXIT,
    NGX_WS_AGENT_EVENTS_OVERSIZED,
    NGX_WS_AGENT_EVENTS_NOT_JSON,
    NGX_WS_AGENT_EVENTS_UNTYPED,
    NGX_WS_AGENT_EVENTS_OTHER_TYPE,
    NGX_WS_AGENT_EVENTS_UNROUTED,
    NGX_WS_AGENT_LIFECYCLE_QUEUED,
    NGX_WS_AGENT_REDIS_RECONNECTS,
    NGX_WS_AGENT_EVENTS_DEDUPLICATED,
    NGX_WS_AGENT_SUBSCRIBERS,       /* gauges, as ACTIVE */
    NGX_WS_AGENT_SUBSCRIPTIONS,
    NGX_WS_AGENT_SUB_EVENTS,
    NGX_WS_AGENT_SUB_REPLAYED,
    NGX_WS_AGENT_SUB_RESUMES,
    NGX_WS_AGENT_SUB_GAPS,
    NGX_WS_AGENT_SUB_SLOW_CLOSES,
    NGX_WS_AGENT_NCOUNTERS
} ngx_ws_agent_counter_e;


/* ready latency buckets, upper bounds in ms; the last one is +Inf */
#define NGX_WS_AGENT_READY_BUCKETS                                           \
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000
#define NGX_WS_AGENT_NBUCKETS       14

#define NGX_WS_AGENT_MAX_WORKERS    256
#define NGX_WS_AGENT_ERROR_LEN      120


#define NGX_WS_AGENT_MAX_NODES      16


/* one Redis connection of a worker, as the status page shows it */
typedef struct {
    ngx_atomic_t                 connected;
    ngx_atomic_t                 tls;
    ngx_atomic_t                 reconnects;
    ngx_atomic_t                 queued;     /* a cluster master's share */
    ngx_atomic_t                 in_flight;
    u_char                       address[NGX_SOCKADDR_STRLEN];
    u_char                       role[16];   /* ROLE's answer, or "" */
    u_char                       last_error[NGX_WS_AGENT_ERROR_LEN];
} ngx_ws_agent_node_stats_t;


/*
 * One worker's own numbers: its open and gated connections (so a worker
 * killed with SIGKILL takes its share with it) and its Redis connection
 * (in a cluster: "node" sums up, "nodes" are the masters').
 */
typedef struct {
    ngx_atomic_t                 pid;        /* 0: a free slot */
    ngx_atomic_t                 active;
    ngx_atomic_t                 gated;
    ngx_atomic_t                 subscribers;
    ngx_atomic_t                 subscriptions;
    ngx_atomic_t                 redis;      /* 1: publishes to Redis */
    ngx_atomic_t                 queued;
    ngx_atomic_t                 in_flight;
    ngx_atomic_t                 published;
    u_char                       last_error[NGX_WS_AGENT_ERROR_LEN];
    ngx_ws_agent_node_stats_t    node;
    ngx_atomic_t                 nnodes;
    ngx_ws_agent_node_stats_t    nodes[NGX_WS_AGENT_MAX_NODES];
} ngx_ws_agent_worker_stats_t;


typedef struct {
    ngx_atomic_t                 counters[NGX_WS_AGENT_NCOUNTERS];
    ngx_atomic_t                 ready[NGX_WS_AGENT_NBUCKETS];
    ngx_atomic_t                 ready_sum_ms;
    ngx_ws_agent_worker_stats_t  workers[NGX_WS_AGENT_MAX_WORKERS];
} ngx_ws_agent_stats_t;


extern ngx_ws_agent_stats_t         *ngx_ws_agent_stats;
extern ngx_ws_agent_worker_stats_t  *ngx_ws_agent_slot;

#define ngx_ws_agent_count(c, n)                                             \
    (void) ngx_atomic_fetch_add(&ngx_ws_agent_stats->counters[c], n)

/* only this worker writes its slot; the status location reads it */
#define ngx_ws_agent_gauge(field, n)                                         \
    (void) ngx_atomic_fetch_add(&ngx_ws_agent_slot->field, n)


/* postconfiguration: the zone (reused across reloads) */
ngx_int_t ngx_ws_agent_stats_init_conf(ngx_conf_t *cf);

void ngx_ws_agent_stats_ready(ngx_msec_t ms);

/* this worker's slot, claimed at worker start, freed at exit */
ngx_int_t ngx_ws_agent_stats_init_process(void);
void ngx_ws_agent_stats_exit_process(void);

/* a slot whose worker is alive: not free, and its pid not gone */
ngx_uint_t ngx_ws_agent_stats_alive(ngx_ws_agent_worker_stats_t *w);

/* a counter's value, or a gauge summed over the live workers */
ngx_atomic_uint_t ngx_ws_agent_stats_value(ngx_uint_t counter);


#endif /* _NGX_WS_AGENT_STATS_H_INCLUDED_ */
