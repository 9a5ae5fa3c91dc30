/*
 * The counters' storage (see ngx_ws_agent_stats.h): a small shared zone
 * named "ws_agent_stats".  nginx hands a zone of the same name and size to
 * the new cycle on reload, so the counters carry on.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent.h"
#include "ngx_ws_agent_stats.h"


static ngx_int_t ngx_ws_agent_stats_init_zone(ngx_shm_zone_t *zone,
    void *data);


static ngx_ws_agent_stats_t         ngx_ws_agent_local_stats;
static ngx_ws_agent_worker_stats_t  ngx_ws_agent_local_slot;

ngx_ws_agent_stats_t         *ngx_ws_agent_stats = &ngx_ws_agent_local_stats;
ngx_ws_agent_worker_stats_t  *ngx_ws_agent_slot = &ngx_ws_agent_local_slot;

static ngx_msec_t  ngx_ws_agent_ready_bounds[] = { NGX_WS_AGENT_READY_BUCKETS };


ngx_int_t
ngx_ws_agent_stats_init_conf(ngx_conf_t *cf)
{
    ngx_str_t        name = ngx_string("ws_agent_stats");
    ngx_shm_zone_t  *zone;

    zone = ngx_shared_memory_add(cf, &name,
                                 ngx_align(sizeof(ngx_ws_agent_stats_t),
                                           ngx_pagesize)
                                 + 16 * ngx_pagesize,
                                 &ngx_ws_agent_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_ws_agent_stats_init_zone;
    zone->noreuse = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_ws_agent_stats_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t       *shpool;
    ngx_ws_agent_stats_t  *stats;

    if (data) {
        /* a reload: the old cycle's counters go on */
        zone->data = data;
        ngx_ws_agent_stats = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        ngx_ws_agent_stats = shpool->data;
        return NGX_OK;
    }

    stats = ngx_slab_calloc(shpool, sizeof(ngx_ws_agent_stats_t));
    if (stats == NULL) {
        return NGX_ERROR;
    }

    shpool->data = stats;
    zone->data = stats;
    ngx_ws_agent_stats = stats;

    return NGX_OK;
}


void
ngx_ws_agent_stats_ready(ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_WS_AGENT_NBUCKETS - 1; i++) {
        if (ms <= ngx_ws_agent_ready_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&ngx_ws_agent_stats->ready[i], 1);
    (void) ngx_atomic_fetch_add(&ngx_ws_agent_stats->ready_sum_ms, ms);
}


/*
 * Slots are claimed by pid, so the workers of a reload and the old ones
 * finishing their connections never share one; a slot whose worker died
 * without exiting (SIGKILL) is taken over, and until then the status
 * location leaves it out.
 */

ngx_int_t
ngx_ws_agent_stats_init_process(void)
{
    ngx_uint_t                    i;
    ngx_atomic_uint_t             pid;
    ngx_ws_agent_worker_stats_t  *w;

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &ngx_ws_agent_stats->workers[i];
        pid = w->pid;

        if (ngx_ws_agent_stats_alive(w)) {
            continue;
        }

        if (ngx_atomic_cmp_set(&w->pid, pid, (ngx_atomic_uint_t) ngx_pid)) {
            w->active = 0;
            w->gated = 0;
            w->redis = 0;
            w->queued = 0;
            w->in_flight = 0;
            w->published = 0;
            w->last_error[0] = '\0';
            ngx_memzero(&w->node, sizeof(ngx_ws_agent_node_stats_t));
            w->nnodes = 0;
            ngx_ws_agent_slot = w;
            return NGX_OK;
        }
    }

    /* more workers than slots: this one counts in the totals, unseen */
    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "ws_agent: more than %d workers alive, worker %P is left "
                  "out of the status gauges", NGX_WS_AGENT_MAX_WORKERS,
                  ngx_pid);

    return NGX_OK;
}


void
ngx_ws_agent_stats_exit_process(void)
{
    ngx_ws_agent_worker_stats_t  *w = ngx_ws_agent_slot;

    if (w == &ngx_ws_agent_local_slot) {
        return;
    }

    /* connections a fast shutdown abandons count nowhere from here on */
    ngx_ws_agent_slot = &ngx_ws_agent_local_slot;

    w->node.connected = 0;
    w->nnodes = 0;
    w->queued = 0;
    w->in_flight = 0;
    (void) ngx_atomic_cmp_set(&w->pid, (ngx_atomic_uint_t) ngx_pid, 0);
}


ngx_uint_t
ngx_ws_agent_stats_alive(ngx_ws_agent_worker_stats_t *w)
{
    ngx_atomic_uint_t  pid = w->pid;

    if (pid == 0) {
        return 0;
    }

    /* EPERM: somebody else's process has the pid, but it is not gone */
    return kill((pid_t) pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


ngx_atomic_uint_t
ngx_ws_agent_stats_value(ngx_uint_t counter)
{
    ngx_uint_t                    i;
    ngx_atomic_uint_t             n;
    ngx_ws_agent_worker_stats_t  *w;

    if (counter != NGX_WS_AGENT_ACTIVE && counter != NGX_WS_AGENT_GATED
        && counter != NGX_WS_AGENT_SUBSCRIBERS
        && counter != NGX_WS_AGENT_SUBSCRIPTIONS)
    {
        return ngx_ws_agent_stats->counters[counter];
    }

    n = 0;

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &ngx_ws_agent_stats->workers[i];

        if (ngx_ws_agent_stats_alive(w)) {
            switch (counter) {
            case NGX_WS_AGENT_ACTIVE:
                n += w->active;
                break;
            case NGX_WS_AGENT_GATED:
                n += w->gated;
                break;
            case NGX_WS_AGENT_SUBSCRIBERS:
                n += w->subscribers;
                break;
            default:
                n += w->subscriptions;
                break;
            }
        }
    }

    return n;
}
