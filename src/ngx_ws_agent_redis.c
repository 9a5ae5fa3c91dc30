/*
 * The Redis publisher (see ngx_ws_agent_redis.h).
 *
 * hiredis's async context runs on nginx's event loop through a small
 * adapter: the Redis socket gets an ngx_connection_t whose level-triggered
 * read/write events call redisAsyncHandleRead/Write.  hiredis 0.14 closes
 * the socket itself after calling the adapter's cleanup, so cleanup only
 * takes the socket out of the event loop.  A lost connection is never
 * re-made from inside a hiredis callback: a cancelable timer does it, so a
 * new socket never meets the old one's fd number half-freed, and graceful
 * shutdown never waits for it.
 *
 * The commands the worker holds are its queue (ngx_ws_agent_redis_queue_t,
 * below): every change to it goes through the ngx_ws_agent_redis_queue_*()
 * functions, which keep its counts, its bound and the status page's
 * figures; every loss goes through ngx_ws_agent_redis_lost(), which counts
 * it and has it logged.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <poll.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/sds.h>

#include "ngx_ws_agent_redis.h"
#include "ngx_ws_agent_stats.h"


#define NGX_WS_AGENT_REDIS_WINDOW       1024
#define NGX_WS_AGENT_REDIS_BACKOFF_MIN  100
#define NGX_WS_AGENT_REDIS_BACKOFF_MAX  5000
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
    redisAsyncContext            *ac;
    ngx_connection_t             *conn;
    ngx_event_t                   retry;
    ngx_msec_t                    backoff;

    ngx_ws_agent_redis_queue_t    queue;

    /* losses not logged yet: one line per kind at the end of a window */
    ngx_event_t                   loss_log;
    ngx_uint_t                    unlogged[NGX_WS_AGENT_NLOST];
    u_char                        refused[NGX_WS_AGENT_ERROR_LEN];

    ngx_ws_agent_worker_stats_t  *stats;        /* this worker's slot */
    time_t                        down_logged_at;

    unsigned                      active:1;    /* configured here */
    unsigned                      ready:1;     /* AUTH and SELECT done */
    unsigned                      down_logged:1;
    unsigned                      exiting:1;
    unsigned                      writing:1;   /* in redisAsyncHandleWrite */
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

static void *ngx_ws_agent_redis_create_integer(const redisReadTask *task,
    long long value);
static void ngx_ws_agent_redis_free_object(void *reply);
static void ngx_ws_agent_redis_replies(redisAsyncContext *ac);
static void ngx_ws_agent_redis_connect(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_retry(ngx_event_t *ev);
static void ngx_ws_agent_redis_schedule(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_error(ngx_ws_agent_redis_t *rs,
    const char *err, size_t len);
static void ngx_ws_agent_redis_down(ngx_ws_agent_redis_t *rs,
    const char *why);
static void ngx_ws_agent_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_ws_agent_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_ws_agent_redis_on_setup(redisAsyncContext *ac, void *reply,
    void *data);
static void ngx_ws_agent_redis_setup(ngx_ws_agent_redis_t *rs,
    ngx_uint_t step);
static void ngx_ws_agent_redis_on_publish(redisAsyncContext *ac,
    void *reply, void *data);
static void ngx_ws_agent_redis_send(ngx_ws_agent_redis_t *rs);

static void ngx_ws_agent_redis_add_read(void *data);
static void ngx_ws_agent_redis_del_read(void *data);
static void ngx_ws_agent_redis_add_write(void *data);
static void ngx_ws_agent_redis_del_write(void *data);
static void ngx_ws_agent_redis_cleanup(void *data);
static void ngx_ws_agent_redis_read_handler(ngx_event_t *ev);
static void ngx_ws_agent_redis_write_handler(ngx_event_t *ev);


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
    rs->backoff = NGX_WS_AGENT_REDIS_BACKOFF_MIN;

    ngx_ws_agent_redis_queue_init(rs);

    rs->retry.handler = ngx_ws_agent_redis_retry;
    rs->retry.data = rs;
    rs->retry.log = cycle->log;
    rs->retry.cancelable = 1;

    rs->loss_log.handler = ngx_ws_agent_redis_loss_log;
    rs->loss_log.data = rs;
    rs->loss_log.log = cycle->log;
    rs->loss_log.cancelable = 1;

    ngx_ws_agent_redis_connect(rs);

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

    while (rs->ready && rs->queue.nin_flight < NGX_WS_AGENT_REDIS_WINDOW) {

        item = ngx_ws_agent_redis_queue_next(rs);
        if (item == NULL) {
            return;
        }

        if (redisAsyncFormattedCommand(rs->ac, ngx_ws_agent_redis_on_publish,
                                       item, (const char *) item->data,
                                       item->len)
            != REDIS_OK)
        {
            return;
        }

        ngx_ws_agent_redis_queue_sent(rs, item);
    }
}


static void
ngx_ws_agent_redis_on_publish(redisAsyncContext *ac, void *reply, void *data)
{
    redisReply            *rr = reply;
    ngx_ws_agent_item_t   *item = data;
    ngx_ws_agent_redis_t  *rs = &ngx_ws_agent_redis;

    if (rr == NULL) {
        /* the connection is going: on_disconnect puts it back in line */
        return;
    }

    ngx_ws_agent_redis_queue_answered(rs, item);

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


/* replies come in the order of the commands: item is in_flight's head */

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

/*
 * Every PUBLISH is answered with an integer at the top level: the reader
 * hands out one static object for those instead of a heap object per
 * event (replies are taken one at a time: the callback has it, then it is
 * "freed").  Everything else goes to hiredis's own functions.
 */

static redisReplyObjectFunctions  *ngx_ws_agent_redis_hiredis_fn;
static redisReplyObjectFunctions   ngx_ws_agent_redis_fn;
static redisReply                  ngx_ws_agent_redis_integer;


static void *
ngx_ws_agent_redis_create_integer(const redisReadTask *task, long long value)
{
    if (task->parent != NULL) {
        return ngx_ws_agent_redis_hiredis_fn->createInteger(task, value);
    }

    ngx_memzero(&ngx_ws_agent_redis_integer, sizeof(redisReply));
    ngx_ws_agent_redis_integer.type = REDIS_REPLY_INTEGER;
    ngx_ws_agent_redis_integer.integer = value;

    return &ngx_ws_agent_redis_integer;
}


static void
ngx_ws_agent_redis_free_object(void *reply)
{
    if (reply != &ngx_ws_agent_redis_integer) {
        ngx_ws_agent_redis_hiredis_fn->freeObject(reply);
    }
}


static void
ngx_ws_agent_redis_replies(redisAsyncContext *ac)
{
    if (ngx_ws_agent_redis_hiredis_fn == NULL) {
        ngx_ws_agent_redis_hiredis_fn = ac->c.reader->fn;
        ngx_ws_agent_redis_fn = *ac->c.reader->fn;
        ngx_ws_agent_redis_fn.createInteger =
                                         ngx_ws_agent_redis_create_integer;
        ngx_ws_agent_redis_fn.freeObject = ngx_ws_agent_redis_free_object;
    }

    ac->c.reader->fn = &ngx_ws_agent_redis_fn;
}


/* connection life */

static void
ngx_ws_agent_redis_connect(ngx_ws_agent_redis_t *rs)
{
    ngx_connection_t          *c;
    redisAsyncContext         *ac;
    ngx_ws_agent_main_conf_t  *wmcf = rs->conf;

    if (wmcf->port) {
        ac = redisAsyncConnect((char *) wmcf->host.data, wmcf->port);

    } else {
        ac = redisAsyncConnectUnix((char *) wmcf->host.data);
    }

    if (ac == NULL) {
        ngx_ws_agent_redis_down(rs, "out of memory");
        ngx_ws_agent_redis_schedule(rs);
        return;
    }

    if (ac->err) {
        ngx_ws_agent_redis_down(rs, ac->errstr);
        redisAsyncFree(ac);
        ngx_ws_agent_redis_schedule(rs);
        return;
    }

    c = ngx_get_connection(ac->c.fd, rs->log);
    if (c == NULL) {
        ngx_ws_agent_redis_down(rs, "no free connection");
        redisAsyncFree(ac);
        ngx_ws_agent_redis_schedule(rs);
        return;
    }

    ngx_ws_agent_redis_replies(ac);

    c->data = ac;
    c->read->handler = ngx_ws_agent_redis_read_handler;
    c->write->handler = ngx_ws_agent_redis_write_handler;
    c->read->log = rs->log;
    c->write->log = rs->log;

    ac->data = rs;
    ac->ev.data = c;
    ac->ev.addRead = ngx_ws_agent_redis_add_read;
    ac->ev.delRead = ngx_ws_agent_redis_del_read;
    ac->ev.addWrite = ngx_ws_agent_redis_add_write;
    ac->ev.delWrite = ngx_ws_agent_redis_del_write;
    ac->ev.cleanup = ngx_ws_agent_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_ws_agent_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_ws_agent_redis_on_disconnect);

    rs->ac = ac;
    rs->conn = c;

    /* the non-blocking connect completes when the socket turns writable */
    ngx_ws_agent_redis_add_write(c);
}


static void
ngx_ws_agent_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_ws_agent_redis_t  *rs = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context after this */
        rs->ac = NULL;
        ngx_ws_agent_redis_down(rs, ac->errstr);
        ngx_ws_agent_redis_schedule(rs);
        return;
    }

    ngx_ws_agent_redis_setup(rs, 0);
}


/* AUTH, then SELECT, then ready; each step only once the last one is ok */

static void
ngx_ws_agent_redis_setup(ngx_ws_agent_redis_t *rs, ngx_uint_t step)
{
    u_char                     db[NGX_INT_T_LEN];
    size_t                     len;
    const char                *argv[2];
    size_t                     argvlen[2];
    ngx_ws_agent_main_conf_t  *wmcf = rs->conf;

    if (step == 0 && wmcf->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;
        argv[1] = (const char *) wmcf->password.data;
        argvlen[1] = wmcf->password.len;

        (void) redisAsyncCommandArgv(rs->ac, ngx_ws_agent_redis_on_setup,
                                     (void *) 1, 2, argv, argvlen);
        return;
    }

    if (step <= 1 && wmcf->db) {
        len = ngx_sprintf(db, "%i", wmcf->db) - db;

        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = len;

        (void) redisAsyncCommandArgv(rs->ac, ngx_ws_agent_redis_on_setup,
                                     (void *) 2, 2, argv, argvlen);
        return;
    }

    rs->ready = 1;
    rs->backoff = NGX_WS_AGENT_REDIS_BACKOFF_MIN;
    rs->stats->connected = 1;

    if (rs->down_logged) {
        ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                      "ws_agent: Redis %V connected again, %ui event(s) "
                      "waiting", &wmcf->addr,
                      ngx_ws_agent_redis_queue_held(rs));

    } else {
        ngx_log_error(NGX_LOG_INFO, rs->log, 0,
                      "ws_agent: Redis %V connected", &wmcf->addr);
    }

    rs->down_logged = 0;

    ngx_ws_agent_redis_send(rs);
}


static void
ngx_ws_agent_redis_on_setup(redisAsyncContext *ac, void *reply, void *data)
{
    redisReply            *rr = reply;
    ngx_uint_t             step = (ngx_uint_t) data;
    ngx_ws_agent_redis_t  *rs = ac->data;

    if (rr == NULL) {
        return;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        /* a wrong password or db is an operator's error: say it plainly */
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "ws_agent: Redis %V refused %s: %*s",
                      &rs->conf->addr, step == 1 ? "AUTH (check "
                      "ws_agent_redis password=)" : "SELECT (check "
                      "ws_agent_redis db=)", (size_t) rr->len, rr->str);
        rs->down_logged = 1;
        rs->down_logged_at = ngx_time();
        ngx_ws_agent_redis_error(rs, rr->str, rr->len);
        redisAsyncDisconnect(ac);
        return;
    }

    ngx_ws_agent_redis_setup(rs, step);
}


static void
ngx_ws_agent_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_ws_agent_redis_t  *rs = ac->data;

    rs->ac = NULL;
    rs->ready = 0;
    rs->stats->connected = 0;

    /* unanswered events are sent again first on the next connection */
    ngx_ws_agent_redis_queue_requeue(rs);

    if (rs->exiting) {
        return;
    }

    ngx_ws_agent_redis_down(rs, ac->errstr[0] ? ac->errstr
                                              : "connection closed");
    ngx_ws_agent_redis_schedule(rs);
}


static void
ngx_ws_agent_redis_down(ngx_ws_agent_redis_t *rs, const char *why)
{
    size_t      len;
    ngx_uint_t  same;

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
                      "event(s) waiting", &rs->conf->addr, why,
                      ngx_ws_agent_redis_queue_held(rs));

        rs->down_logged_at = ngx_time();
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                  "ws_agent: Redis %V unavailable (%s); events wait in a "
                  "queue of %ui, reconnecting with back-off",
                  &rs->conf->addr, why, rs->conf->queue);

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


static void
ngx_ws_agent_redis_schedule(ngx_ws_agent_redis_t *rs)
{
    ngx_msec_t  delay;

    if (rs->exiting || rs->retry.timer_set) {
        return;
    }

    /* exponential back-off with +-25% jitter, so workers do not stampede */
    delay = rs->backoff - rs->backoff / 4
            + (ngx_msec_t) ngx_random() % (rs->backoff / 2 + 1);

    rs->backoff = ngx_min(rs->backoff * 2, NGX_WS_AGENT_REDIS_BACKOFF_MAX);

    ngx_add_timer(&rs->retry, delay);
}


static void
ngx_ws_agent_redis_retry(ngx_event_t *ev)
{
    ngx_ws_agent_redis_t  *rs = ev->data;

    if (rs->exiting || rs->ac) {
        return;
    }

    rs->stats->reconnects++;
    ngx_ws_agent_count(NGX_WS_AGENT_REDIS_RECONNECTS, 1);

    ngx_ws_agent_redis_connect(rs);
}


/*
 * Worker exit: held events get a short, bounded chance to reach Redis,
 * then everything is freed; what is left is counted and logged, and so
 * are the losses of the last window.
 */

void
ngx_ws_agent_redis_exit_process(ngx_cycle_t *cycle)
{
    int                    rc;
    ngx_msec_t             start, left;
    struct pollfd          pfd;
    ngx_uint_t             unsent, unanswered;
    redisAsyncContext     *ac;
    ngx_ws_agent_redis_t  *rs = &ngx_ws_agent_redis;

    if (!rs->active) {
        return;
    }

    if (rs->retry.timer_set) {
        ngx_del_timer(&rs->retry);
    }

    start = ngx_current_msec;
    ngx_time_update();

    while (rs->ready && rs->ac && ngx_ws_agent_redis_queue_held(rs)) {
        ngx_time_update();
        left = NGX_WS_AGENT_REDIS_EXIT_FLUSH - (ngx_current_msec - start);

        if ((ngx_msec_int_t) left <= 0) {
            break;
        }

        ngx_ws_agent_redis_send(rs);

        ac = rs->ac;
        pfd.fd = ac->c.fd;
        pfd.events = POLLIN | (sdslen(ac->c.obuf) ? POLLOUT : 0);
        pfd.revents = 0;

        rc = poll(&pfd, 1, (int) left);

        if (rc <= 0) {
            break;
        }

        if (pfd.revents & POLLOUT) {
            redisAsyncHandleWrite(ac);
        }

        if (rs->ac && (pfd.revents & (POLLIN | POLLHUP | POLLERR))) {
            redisAsyncHandleRead(rs->ac);
        }
    }

    rs->exiting = 1;

    if (rs->ac) {
        redisAsyncFree(rs->ac);
        rs->ac = NULL;
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
                      "to Redis %V", unsent, &rs->conf->addr);
    }

    if (unanswered) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ws_agent: worker exiting with %ui event(s) sent to "
                      "Redis %V and awaiting a reply (Redis may still "
                      "publish them)", unanswered, &rs->conf->addr);
    }
}


/* the adapter: hiredis asks, nginx's event loop does */

static void
ngx_ws_agent_redis_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_ws_agent_redis_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


/*
 * Once connected, hiredis's "something to write" becomes a posted event:
 * it runs after every event of this loop iteration, so all the PUBLISHes
 * they queued leave in one write(), with no epoll_ctl() pair per write.
 * Epoll is asked only while connecting and when a write left bytes over
 * (the socket is full): then writability is worth waiting for.
 */

static void
ngx_ws_agent_redis_add_write(void *data)
{
    ngx_connection_t   *c = data;
    redisAsyncContext  *ac = c->data;

    if (c->write->active) {
        /* waiting for room already */
        return;
    }

    if ((ac->c.flags & REDIS_CONNECTED) && !ngx_ws_agent_redis.writing) {
        ngx_post_event(c->write, &ngx_posted_events);
        return;
    }

    (void) ngx_add_event(c->write, NGX_WRITE_EVENT, 0);
}


static void
ngx_ws_agent_redis_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


static void
ngx_ws_agent_redis_cleanup(void *data)
{
    ngx_connection_t  *c = data;

    ngx_ws_agent_redis_del_read(c);
    ngx_ws_agent_redis_del_write(c);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (ngx_ws_agent_redis.conn == c) {
        ngx_ws_agent_redis.conn = NULL;
    }

    /* hiredis closes the fd itself, right after this */
    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);
}


static void
ngx_ws_agent_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncHandleRead(c->data);
}


static void
ngx_ws_agent_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    /* hiredis asks again only when bytes are left over: epoll then */
    ngx_ws_agent_redis.writing = 1;
    redisAsyncHandleWrite(c->data);
    ngx_ws_agent_redis.writing = 0;
}
