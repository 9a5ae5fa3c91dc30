/*
 * The Redis publisher (see ngx_ws_agent_redis.h).
 *
 * The worker's events wait in its queue (ngx_ws_agent_redis_queue_t,
 * below) and go to Redis through a node (ngx_ws_agent_redis_node.c: the
 * connection on nginx's own machinery), pipelined, their replies taken in
 * order.  Every change to the queue goes through the
 * ngx_ws_agent_redis_queue_*() functions, which keep its counts, its bound
 * and the status page's figures; every loss goes through
 * ngx_ws_agent_redis_lost(), which counts it and has it logged.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_redis.h"
#include "ngx_ws_agent_redis_node.h"
#include "ngx_ws_agent_redis_sentinel.h"
#include "ngx_ws_agent_stats.h"


#define NGX_WS_AGENT_REDIS_WINDOW       1024
#define NGX_WS_AGENT_REDIS_EXIT_FLUSH   500
#define NGX_WS_AGENT_REDIS_LOSS_WINDOW  1000


/* an event, as the RESP command that publishes it */
typedef struct {
    ngx_queue_t                   queue;
    size_t                        len;
    u_char                        data[1];
} ngx_ws_agent_item_t;


/*
 * The events the worker holds for Redis, at most ws_agent_redis_queue of
 * them in all, in three lines, each in the order its events are sent:
 *   resend     sent on a connection lost before Redis replied: they go
 *              first on the next one (Redis may have published them, then
 *              a subscriber sees their seq twice)
 *   waiting    never sent
 *   in_flight  sent on this connection, reply pending (pipelined, at most
 *              NGX_WS_AGENT_REDIS_WINDOW)
 * Only an event never sent may be dropped, so a drop counted is an event
 * Redis never had: when the queue is full the oldest waiting event gives
 * way, and when none is waiting (all were sent) the new one is dropped.
 */
typedef struct {
    ngx_queue_t                   resend;
    ngx_queue_t                   waiting;
    ngx_queue_t                   in_flight;
    ngx_uint_t                    nresend;
    ngx_uint_t                    nwaiting;
    ngx_uint_t                    nin_flight;
    ngx_uint_t                    size;         /* ws_agent_redis_queue */
} ngx_ws_agent_redis_queue_t;


typedef enum {
    NGX_WS_AGENT_LOST_OLDEST = 0,               /* gave way to a new one */
    NGX_WS_AGENT_LOST_NEW,                      /* the queue was all sent */
    NGX_WS_AGENT_LOST_REFUSED,                  /* Redis answered an error */
    NGX_WS_AGENT_NLOST
} ngx_ws_agent_lost_e;


typedef struct {
    ngx_ws_agent_main_conf_t     *conf;
    ngx_log_t                    *log;
    ngx_ws_agent_redis_node_t     node;
    ngx_ws_agent_redis_sentinel_t sentinel;     /* sentinel:NAME only */

    ngx_ws_agent_redis_queue_t    queue;

    /* losses not logged yet: one line per kind at the end of a window */
    ngx_event_t                   loss_log;
    ngx_uint_t                    unlogged[NGX_WS_AGENT_NLOST];
    u_char                        refused[NGX_WS_AGENT_ERROR_LEN];

    ngx_ws_agent_worker_stats_t  *stats;        /* this worker's slot */
    time_t                        down_logged_at;

    unsigned                      active:1;    /* configured here */
    unsigned                      down_logged:1;
    unsigned                      exiting:1;
} ngx_ws_agent_redis_t;


static void ngx_ws_agent_redis_queue_init(ngx_ws_agent_redis_t *rs);
static ngx_uint_t ngx_ws_agent_redis_queue_held(ngx_ws_agent_redis_t *rs);
static ngx_int_t ngx_ws_agent_redis_queue_room(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_queue_add(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_item_t *item);
static ngx_ws_agent_item_t *ngx_ws_agent_redis_queue_next(
    ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_queue_sent(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_item_t *item);
static void ngx_ws_agent_redis_queue_answered(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_item_t *item);
static void ngx_ws_agent_redis_queue_requeue(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_queue_free(ngx_ws_agent_redis_t *rs,
    ngx_uint_t *unsent, ngx_uint_t *unanswered);
static void ngx_ws_agent_redis_queue_gauges(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_lost(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_lost_e kind, ngx_uint_t n);
static void ngx_ws_agent_redis_loss_log(ngx_event_t *ev);
static void ngx_ws_agent_redis_log_losses(ngx_ws_agent_redis_t *rs);

static void ngx_ws_agent_redis_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_redis_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static void ngx_ws_agent_redis_error(ngx_ws_agent_redis_t *rs,
    const char *err, size_t len);
static void ngx_ws_agent_redis_send(ngx_ws_agent_redis_t *rs);


static ngx_ws_agent_redis_node_handler_t  ngx_ws_agent_redis_handler = {
    ngx_ws_agent_redis_ready,
    ngx_ws_agent_redis_reply,
    ngx_ws_agent_redis_down
};

/* the worker's publisher: a per-worker object, set up at worker start */
static ngx_ws_agent_redis_t  ngx_ws_agent_redis;


ngx_int_t
ngx_ws_agent_redis_init_process(ngx_cycle_t *cycle,
    ngx_ws_agent_main_conf_t *wmcf)
{
    ngx_ws_agent_redis_t  *rs = &ngx_ws_agent_redis;

    ngx_memzero(rs, sizeof(ngx_ws_agent_redis_t));

    if (wmcf == NULL || !wmcf->configured) {
        return NGX_OK;
    }

    rs->conf = wmcf;
    rs->log = cycle->log;
    rs->stats = ngx_ws_agent_slot;
    rs->stats->redis = 1;
    rs->active = 1;

    ngx_ws_agent_redis_queue_init(rs);

    rs->loss_log.handler = ngx_ws_agent_redis_loss_log;
    rs->loss_log.data = rs;
    rs->loss_log.log = cycle->log;
    rs->loss_log.cancelable = 1;

    ngx_ws_agent_redis_node_start(&rs->node, &wmcf->redis,
                                  &ngx_ws_agent_redis_handler, rs,
                                  cycle->log, 1);

    if (wmcf->redis.master.len) {
        /* the node connects where the sentinels say the master is */
        ngx_ws_agent_redis_sentinel_start(&rs->sentinel, &wmcf->sentinels,
                                          &wmcf->redis, &rs->node,
                                          cycle->log);
    }

    return NGX_OK;
}


ngx_int_t
ngx_ws_agent_redis_publish(ngx_str_t *channel, ngx_str_t *parts,
    ngx_uint_t n, ngx_log_t *log)
{
    u_char                *p;
    size_t                 len;
    ngx_uint_t             i;
    ngx_ws_agent_item_t   *item;
    ngx_ws_agent_redis_t  *rs = &ngx_ws_agent_redis;

    if (!rs->active || rs->exiting) {
        return NGX_DECLINED;
    }

    if (ngx_ws_agent_redis_queue_room(rs) != NGX_OK) {
        /* dropped and counted: taken all the same, its seq is the gap */
        return NGX_OK;
    }

    len = 0;

    for (i = 0; i < n; i++) {
        len += parts[i].len;
    }

    /*
     * formatted once here, so hiredis only copies it out; NUL-terminated
     * (not counted in item->len): hiredis looks through it with strchr()
     */
    item = ngx_alloc(offsetof(ngx_ws_agent_item_t, data)
                     + sizeof("*3\r\n$7\r\nPUBLISH\r\n") - 1
                     + 2 * (1 + NGX_SIZE_T_LEN + 4)
                     + channel->len + len + 1, log);
    if (item == NULL) {
        return NGX_ERROR;
    }

    /* *3 $7 PUBLISH $<n> channel $<n> message, in RESP */
    p = ngx_cpymem(item->data, "*3\r\n$7\r\nPUBLISH\r\n$",
                   sizeof("*3\r\n$7\r\nPUBLISH\r\n$") - 1);
    p = ngx_ws_agent_decimal(p, channel->len);
    *p++ = '\r';
    *p++ = '\n';
    p = ngx_cpymem(p, channel->data, channel->len);
    p = ngx_cpymem(p, "\r\n$", sizeof("\r\n$") - 1);
    p = ngx_ws_agent_decimal(p, len);
    *p++ = '\r';
    *p++ = '\n';

    for (i = 0; i < n; i++) {
        p = ngx_cpymem(p, parts[i].data, parts[i].len);
    }

    *p++ = '\r';
    *p++ = '\n';

    item->len = p - item->data;
    *p = '\0';

    ngx_ws_agent_redis_queue_add(rs, item);
    ngx_ws_agent_redis_send(rs);

    return NGX_OK;
}


/* pipelines held events (those to send again first) while the window allows */

static void
ngx_ws_agent_redis_send(ngx_ws_agent_redis_t *rs)
{
    ngx_ws_agent_item_t  *item;

    while (ngx_ws_agent_redis_node_ready(&rs->node)
           && rs->queue.nin_flight < NGX_WS_AGENT_REDIS_WINDOW)
    {
        item = ngx_ws_agent_redis_queue_next(rs);
        if (item == NULL) {
            return;
        }

        if (ngx_ws_agent_redis_node_send(&rs->node, item->data, item->len)
            != NGX_OK)
        {
            return;
        }

        ngx_ws_agent_redis_queue_sent(rs, item);
    }
}


/* replies come in the order of the commands: in_flight's head is answered */

static void
ngx_ws_agent_redis_reply(ngx_ws_agent_redis_node_t *node, redisReply *rr)
{
    ngx_ws_agent_redis_t  *rs = node->data;

    if (rs->queue.nin_flight == 0) {
        ngx_log_error(NGX_LOG_ALERT, rs->log, 0,
                      "ws_agent: Redis %V sent a reply to no command",
                      &rs->conf->redis.addr);
        return;
    }

    ngx_ws_agent_redis_queue_answered(rs, ngx_queue_data(
                          ngx_queue_head(&rs->queue.in_flight),
                          ngx_ws_agent_item_t, queue));

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_ws_agent_redis_error(rs, rr->str, rr->len);
        ngx_cpystrn(rs->refused, (u_char *) rr->str,
                    ngx_min((size_t) rr->len + 1, NGX_WS_AGENT_ERROR_LEN));
        ngx_ws_agent_redis_lost(rs, NGX_WS_AGENT_LOST_REFUSED, 1);

    } else {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_PUBLISHED, 1);
        rs->stats->published++;
    }

    ngx_ws_agent_redis_send(rs);
}


/* the queue: the only functions that change its lines and counts */

static void
ngx_ws_agent_redis_queue_init(ngx_ws_agent_redis_t *rs)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    ngx_queue_init(&q->resend);
    ngx_queue_init(&q->waiting);
    ngx_queue_init(&q->in_flight);
    q->size = rs->conf->queue;
}


static ngx_uint_t
ngx_ws_agent_redis_queue_held(ngx_ws_agent_redis_t *rs)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    return q->nresend + q->nwaiting + q->nin_flight;
}


/*
 * Makes room for one event: NGX_OK when there is room (an oldest waiting
 * event may have given way), NGX_DECLINED when the new one is dropped;
 * either drop is counted
 */

static ngx_int_t
ngx_ws_agent_redis_queue_room(ngx_ws_agent_redis_t *rs)
{
    ngx_queue_t                 *h;
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    if (ngx_ws_agent_redis_queue_held(rs) < q->size) {
        return NGX_OK;
    }

    if (q->nwaiting == 0) {
        ngx_ws_agent_redis_lost(rs, NGX_WS_AGENT_LOST_NEW, 1);
        return NGX_DECLINED;
    }

    h = ngx_queue_head(&q->waiting);
    ngx_queue_remove(h);
    q->nwaiting--;
    ngx_free(ngx_queue_data(h, ngx_ws_agent_item_t, queue));

    ngx_ws_agent_redis_lost(rs, NGX_WS_AGENT_LOST_OLDEST, 1);
    ngx_ws_agent_redis_queue_gauges(rs);

    return NGX_OK;
}


static void
ngx_ws_agent_redis_queue_add(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_item_t *item)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    ngx_queue_insert_tail(&q->waiting, &item->queue);
    q->nwaiting++;

    ngx_ws_agent_redis_queue_gauges(rs);
}


/* the event to send next: one to send again first, then the oldest waiting */

static ngx_ws_agent_item_t *
ngx_ws_agent_redis_queue_next(ngx_ws_agent_redis_t *rs)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    if (q->nresend) {
        return ngx_queue_data(ngx_queue_head(&q->resend),
                              ngx_ws_agent_item_t, queue);
    }

    if (q->nwaiting) {
        return ngx_queue_data(ngx_queue_head(&q->waiting),
                              ngx_ws_agent_item_t, queue);
    }

    return NULL;
}


/* the event queue_next() gave is with hiredis now: its reply is awaited */

static void
ngx_ws_agent_redis_queue_sent(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_item_t *item)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    if (q->nresend) {
        q->nresend--;

    } else {
        q->nwaiting--;
    }

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_tail(&q->in_flight, &item->queue);
    q->nin_flight++;

    ngx_ws_agent_redis_queue_gauges(rs);
}



static void
ngx_ws_agent_redis_queue_answered(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_item_t *item)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    ngx_queue_remove(&item->queue);
    q->nin_flight--;
    ngx_free(item);

    ngx_ws_agent_redis_queue_gauges(rs);
}


/*
 * The connection is gone: the events in flight were sent before those
 * still to send again, so they go in front of them, in order
 */

static void
ngx_ws_agent_redis_queue_requeue(ngx_ws_agent_redis_t *rs)
{
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    if (q->nin_flight == 0) {
        return;
    }

    ngx_queue_add(&q->in_flight, &q->resend);
    ngx_queue_init(&q->resend);
    ngx_queue_add(&q->resend, &q->in_flight);
    ngx_queue_init(&q->in_flight);

    q->nresend += q->nin_flight;
    q->nin_flight = 0;

    ngx_ws_agent_redis_queue_gauges(rs);
}


/*
 * Worker exit: everything held is freed; how many were never sent, and how
 * many were sent without a reply (Redis may still publish those)
 */

static void
ngx_ws_agent_redis_queue_free(ngx_ws_agent_redis_t *rs, ngx_uint_t *unsent,
    ngx_uint_t *unanswered)
{
    ngx_uint_t                   i;
    ngx_queue_t                 *line[3], *h;
    ngx_ws_agent_redis_queue_t  *q = &rs->queue;

    *unsent = q->nwaiting;
    *unanswered = q->nresend + q->nin_flight;

    line[0] = &q->resend;
    line[1] = &q->waiting;
    line[2] = &q->in_flight;

    for (i = 0; i < 3; i++) {
        while (!ngx_queue_empty(line[i])) {
            h = ngx_queue_head(line[i]);
            ngx_queue_remove(h);
            ngx_free(ngx_queue_data(h, ngx_ws_agent_item_t, queue));
        }
    }

    q->nresend = 0;
    q->nwaiting = 0;
    q->nin_flight = 0;

    ngx_ws_agent_redis_queue_gauges(rs);
}


/* the status page's per-worker figures: queued (not in flight), in_flight */

static void
ngx_ws_agent_redis_queue_gauges(ngx_ws_agent_redis_t *rs)
{
    rs->stats->queued = rs->queue.nresend + rs->queue.nwaiting;
    rs->stats->in_flight = rs->queue.nin_flight;
}


/*
 * Losses: counted at once, logged at the end of a window that the first
 * one opens (NGX_WS_AGENT_REDIS_LOSS_WINDOW), one line per kind with its
 * number, so the lines add up to the counters and an outage does not log
 * every event; what is left at worker exit is logged then.
 */

static void
ngx_ws_agent_redis_lost(ngx_ws_agent_redis_t *rs, ngx_ws_agent_lost_e kind,
    ngx_uint_t n)
{
    ngx_ws_agent_count(kind == NGX_WS_AGENT_LOST_REFUSED
                       ? NGX_WS_AGENT_EVENTS_REDIS_ERROR
                       : NGX_WS_AGENT_EVENTS_OVERFLOW, n);

    rs->unlogged[kind] += n;

    if (!rs->loss_log.timer_set && !rs->exiting) {
        ngx_add_timer(&rs->loss_log, NGX_WS_AGENT_REDIS_LOSS_WINDOW);
    }
}


static void
ngx_ws_agent_redis_loss_log(ngx_event_t *ev)
{
    ngx_ws_agent_redis_log_losses(ev->data);
}


static void
ngx_ws_agent_redis_log_losses(ngx_ws_agent_redis_t *rs)
{
    ngx_uint_t  *n = rs->unlogged;

    if (n[NGX_WS_AGENT_LOST_OLDEST]) {
        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis queue full (%ui events), dropped "
                      "%ui oldest unsent event(s)",
                      rs->queue.size, n[NGX_WS_AGENT_LOST_OLDEST]);
    }

    if (n[NGX_WS_AGENT_LOST_NEW]) {
        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis queue full (%ui events, all sent and "
                      "awaiting replies), dropped %ui new event(s)",
                      rs->queue.size, n[NGX_WS_AGENT_LOST_NEW]);
    }

    if (n[NGX_WS_AGENT_LOST_REFUSED]) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "ws_agent: Redis refused PUBLISH (%ui event(s) "
                      "lost): %s", n[NGX_WS_AGENT_LOST_REFUSED],
                      rs->refused);
    }

    ngx_memzero(rs->unlogged, sizeof(rs->unlogged));
}

/* the node's news */

static void
ngx_ws_agent_redis_ready(ngx_ws_agent_redis_node_t *node)
{
    ngx_ws_agent_redis_t  *rs = node->data;

    if (rs->down_logged) {
        ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                      "ws_agent: Redis %V connected again, %ui event(s) "
                      "waiting", &rs->conf->redis.addr,
                      ngx_ws_agent_redis_queue_held(rs));

    } else {
        ngx_log_error(NGX_LOG_INFO, rs->log, 0,
                      "ws_agent: Redis %V connected", &rs->conf->redis.addr);
    }

    rs->down_logged = 0;

    ngx_ws_agent_redis_send(rs);
}


static void
ngx_ws_agent_redis_down(ngx_ws_agent_redis_node_t *node, const char *why,
    ngx_uint_t logged)
{
    size_t                 len;
    ngx_uint_t             same;
    ngx_ws_agent_redis_t  *rs = node->data;

    /* unanswered events are sent again first on the next connection */
    ngx_ws_agent_redis_queue_requeue(rs);

    if (rs->exiting) {
        return;
    }

    if (node->not_master) {
        ngx_ws_agent_redis_sentinel_ask(&rs->sentinel);
    }

    if (logged) {
        /* the node said why (a refused AUTH): "still unavailable" next */
        ngx_ws_agent_redis_error(rs, why, ngx_strlen(why));
        rs->down_logged = 1;
        rs->down_logged_at = ngx_time();
        return;
    }

    len = ngx_min(ngx_strlen(why), NGX_WS_AGENT_ERROR_LEN - 1);
    same = (ngx_strlen(rs->stats->last_error) == len
            && ngx_strncmp(rs->stats->last_error, why, len) == 0);

    ngx_ws_agent_redis_error(rs, why, len);

    if (rs->down_logged) {
        /*
         * each new reason once (the first was "connection refused", now
         * it is "Too many open files"), the same one again every minute
         */
        if (same && ngx_time() - rs->down_logged_at < 60) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rs->log, 0,
                           "ws_agent: Redis still unavailable: %s", why);
            return;
        }

        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis %V still unavailable (%s), %ui "
                      "event(s) waiting", &rs->conf->redis.addr, why,
                      ngx_ws_agent_redis_queue_held(rs));

        rs->down_logged_at = ngx_time();
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                  "ws_agent: Redis %V unavailable (%s); events wait in a "
                  "queue of %ui, reconnecting with back-off",
                  &rs->conf->redis.addr, why, rs->conf->queue);

    rs->down_logged = 1;
    rs->down_logged_at = ngx_time();
}


/* the last error, for the status page */

static void
ngx_ws_agent_redis_error(ngx_ws_agent_redis_t *rs, const char *err,
    size_t len)
{
    len = ngx_min(len, NGX_WS_AGENT_ERROR_LEN - 1);

    ngx_memcpy(rs->stats->last_error, err, len);
    rs->stats->last_error[len] = '\0';
}


/*
 * Worker exit: held events get a short, bounded chance to reach Redis,
 * then everything is freed; what is left is counted and logged, and so
 * are the losses of the last window.
 */

void
ngx_ws_agent_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_msec_t             start, left;
    ngx_uint_t             unsent, unanswered;
    ngx_ws_agent_redis_t  *rs = &ngx_ws_agent_redis;

    if (!rs->active) {
        return;
    }

    ngx_time_update();
    start = ngx_current_msec;

    while (ngx_ws_agent_redis_node_ready(&rs->node)
           && ngx_ws_agent_redis_queue_held(rs))
    {
        ngx_time_update();
        left = NGX_WS_AGENT_REDIS_EXIT_FLUSH - (ngx_current_msec - start);

        if ((ngx_msec_int_t) left <= 0) {
            break;
        }

        ngx_ws_agent_redis_send(rs);

        if (ngx_ws_agent_redis_node_wait(&rs->node, left) != NGX_OK) {
            break;
        }
    }

    rs->exiting = 1;

    ngx_ws_agent_redis_node_close(&rs->node);

    if (rs->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_close(&rs->sentinel);
    }

    if (rs->loss_log.timer_set) {
        ngx_del_timer(&rs->loss_log);
    }

    ngx_ws_agent_redis_log_losses(rs);

    ngx_ws_agent_redis_queue_free(rs, &unsent, &unanswered);

    if (unsent + unanswered) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_LOST_AT_EXIT,
                           unsent + unanswered);
    }

    if (unsent) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ws_agent: worker exiting with %ui event(s) not sent "
                      "to Redis %V", unsent, &rs->conf->redis.addr);
    }

    if (unanswered) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ws_agent: worker exiting with %ui event(s) sent to "
                      "Redis %V and awaiting a reply (Redis may still "
                      "publish them)", unanswered, &rs->conf->redis.addr);
    }
}
