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
 * Events are items on two queues: "waiting" (not yet sent) and "in_flight"
 * (sent, reply pending; at most NGX_WS_AGENT_REDIS_WINDOW, pipelined).  When
 * the connection goes, the in-flight items go back to the front of the
 * waiting queue, in order, and are sent again once Redis is back.
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


/* an event, as the RESP command that publishes it */
typedef struct {
    ngx_queue_t                   queue;
    size_t                        len;
    u_char                        data[1];
} ngx_ws_agent_item_t;


typedef struct {
    ngx_ws_agent_main_conf_t     *conf;
    ngx_log_t                    *log;
    redisAsyncContext            *ac;
    ngx_connection_t             *conn;
    ngx_event_t                   retry;
    ngx_msec_t                    backoff;

    ngx_queue_t                   waiting;
    ngx_queue_t                   in_flight;
    ngx_uint_t                    nwaiting;
    ngx_uint_t                    nin_flight;

    ngx_uint_t                    dropped_unlogged;
    time_t                        drop_logged;
    ngx_uint_t                    errors_unlogged;
    ngx_ws_agent_worker_stats_t  *stats;        /* this worker's slot */
    time_t                        error_logged;
    time_t                        down_logged_at;

    unsigned                      active:1;    /* configured here */
    unsigned                      ready:1;     /* AUTH and SELECT done */
    unsigned                      down_logged:1;
    unsigned                      exiting:1;
    unsigned                      writing:1;   /* in redisAsyncHandleWrite */
} ngx_ws_agent_redis_t;


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
static void ngx_ws_agent_redis_drop_oldest(ngx_ws_agent_redis_t *rs);

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

    ngx_queue_init(&rs->waiting);
    ngx_queue_init(&rs->in_flight);

    rs->retry.handler = ngx_ws_agent_redis_retry;
    rs->retry.data = rs;
    rs->retry.log = cycle->log;
    rs->retry.cancelable = 1;

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

    if (rs->nwaiting + rs->nin_flight >= rs->conf->queue) {
        ngx_ws_agent_redis_drop_oldest(rs);
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

    ngx_queue_insert_tail(&rs->waiting, &item->queue);
    rs->nwaiting++;

    ngx_ws_agent_redis_send(rs);

    rs->stats->queued = rs->nwaiting;

    return NGX_OK;
}


/* the waiting queue is full: the oldest event gives way, counted */

static void
ngx_ws_agent_redis_drop_oldest(ngx_ws_agent_redis_t *rs)
{
    ngx_queue_t  *q;

    ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_OVERFLOW, 1);
    rs->dropped_unlogged++;

    if (!ngx_queue_empty(&rs->waiting)) {
        q = ngx_queue_head(&rs->waiting);
        ngx_queue_remove(q);
        rs->nwaiting--;
        ngx_free(ngx_queue_data(q, ngx_ws_agent_item_t, queue));
    }

    if (ngx_time() != rs->drop_logged) {
        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis queue full (%ui events), dropped "
                      "%ui oldest event(s)",
                      rs->conf->queue, rs->dropped_unlogged);
        rs->drop_logged = ngx_time();
        rs->dropped_unlogged = 0;
    }
}


/* pipelines waiting events while the window allows */

static void
ngx_ws_agent_redis_send(ngx_ws_agent_redis_t *rs)
{
    ngx_queue_t          *q;
    ngx_ws_agent_item_t  *item;

    while (rs->ready
           && rs->nin_flight < NGX_WS_AGENT_REDIS_WINDOW
           && !ngx_queue_empty(&rs->waiting))
    {
        q = ngx_queue_head(&rs->waiting);
        item = ngx_queue_data(q, ngx_ws_agent_item_t, queue);

        if (redisAsyncFormattedCommand(rs->ac, ngx_ws_agent_redis_on_publish,
                                       item, (const char *) item->data,
                                       item->len)
            != REDIS_OK)
        {
            return;
        }

        ngx_queue_remove(q);
        rs->nwaiting--;
        ngx_queue_insert_tail(&rs->in_flight, q);
        rs->nin_flight++;
    }

    rs->stats->queued = rs->nwaiting;
    rs->stats->in_flight = rs->nin_flight;
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

    ngx_queue_remove(&item->queue);
    rs->nin_flight--;
    ngx_free(item);

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_REDIS_ERROR, 1);
        ngx_ws_agent_redis_error(rs, rr->str, rr->len);
        rs->errors_unlogged++;

        if (ngx_time() != rs->error_logged) {
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "ws_agent: Redis refused PUBLISH (%ui event(s) "
                          "lost): %*s", rs->errors_unlogged,
                          (size_t) rr->len, rr->str);
            rs->error_logged = ngx_time();
            rs->errors_unlogged = 0;
        }

    } else {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_PUBLISHED, 1);
        rs->stats->published++;
    }

    ngx_ws_agent_redis_send(rs);
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
                      "waiting", &wmcf->addr, rs->nwaiting);

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

    /* unanswered events go back to the front of the line, in order */
    if (!ngx_queue_empty(&rs->in_flight)) {
        ngx_queue_add(&rs->in_flight, &rs->waiting);
        ngx_queue_init(&rs->waiting);
        ngx_queue_add(&rs->waiting, &rs->in_flight);
        ngx_queue_init(&rs->in_flight);
        rs->nwaiting += rs->nin_flight;
        rs->nin_flight = 0;
    }

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
                      rs->nwaiting + rs->nin_flight);

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
 * Worker exit: waiting events get a short, bounded chance to reach Redis,
 * then everything is freed; what is left is counted and logged.
 */

void
ngx_ws_agent_redis_exit_process(ngx_cycle_t *cycle)
{
    int                    rc;
    ngx_msec_t             start, left;
    ngx_queue_t           *q;
    struct pollfd          pfd;
    ngx_uint_t             lost;
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

    while (rs->ready && rs->ac
           && (rs->nwaiting || rs->nin_flight))
    {
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

    lost = 0;

    while (!ngx_queue_empty(&rs->waiting)) {
        q = ngx_queue_head(&rs->waiting);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ws_agent_item_t, queue));
        lost++;
    }

    while (!ngx_queue_empty(&rs->in_flight)) {
        q = ngx_queue_head(&rs->in_flight);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ws_agent_item_t, queue));
        lost++;
    }

    if (lost) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_LOST_AT_EXIT, lost);

        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ws_agent: worker exiting with %ui event(s) not "
                      "published to Redis %V", lost, &rs->conf->addr);
    }

    rs->nwaiting = 0;
    rs->nin_flight = 0;
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
