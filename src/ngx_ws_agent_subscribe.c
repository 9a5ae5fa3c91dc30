/*
 * The subscriber location (see ngx_ws_agent_subscribe.h).
 *
 * One client, in its request's pool, goes through three states:
 *   waiting   its channel is not subscribed on Redis (yet, or since Redis
 *             went away): nothing to do but heartbeats
 *   reading   the channel is live; the stream is read from the client's
 *             last id, while the live messages that arrive are held
 *   live      messages go out as they come, those at or below the last
 *             id sent dropped (they were replayed)
 * The channel is subscribed before the stream is read, so an event is
 * either in what the read returns or in what the subscription brings
 * after it (often both: the ids tell), never in neither.
 *
 * Output goes through two buffers of half ws_agent_subscribe_buffer each:
 * one handed to nginx's output filters until sent, one filling.  A live
 * event that finds both full closes the client (it resumes with its
 * Last-Event-ID); a replay waits instead until the client has read.
 * The feed's callbacks never finalize the request themselves: a close is
 * posted, so the feed's lists stay whole while it walks them.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_subscribe.h"
#include "ngx_ws_agent_feed.h"
#include "ngx_ws_agent_headers.h"
#include "ngx_ws_agent_stats.h"

#include <openssl/sha.h>


#define NGX_WS_AGENT_SUB_BATCH      100     /* entries per stream read */
#define NGX_WS_AGENT_SUB_HELD       1000    /* live messages held, reading */
#define NGX_WS_AGENT_SUB_ID_LEN     (2 * NGX_INT64_LEN + 2)
#define NGX_WS_AGENT_SUB_WS_MAX     65536   /* a client frame, at most */


typedef enum {
    NGX_WS_AGENT_SUB_WAITING = 0,
    NGX_WS_AGENT_SUB_READING,
    NGX_WS_AGENT_SUB_LIVE
} ngx_ws_agent_sub_state_e;


/* a stream entry id, ms-seq */
typedef struct {
    uint64_t                    ms;
    uint64_t                    seq;
} ngx_ws_agent_sid_t;


typedef struct {
    ngx_queue_t                 queue;
    size_t                      len;
    u_char                      data[1];
} ngx_ws_agent_held_t;


typedef struct {
    ngx_http_request_t         *request;
    ngx_ws_agent_loc_conf_t    *conf;
    ngx_ws_agent_sub_state_e    state;

    ngx_str_t                   channel;
    ngx_str_t                   stream;         /* "": live only */
    ngx_ws_agent_watch_t        watch;
    ngx_ws_agent_feed_read_t   *read;           /* in flight */

    ngx_ws_agent_sid_t          last;           /* the last id sent */
    ngx_str_t                   given;          /* Last-Event-ID, as sent */

    ngx_queue_t                 held;
    ngx_uint_t                  nheld;

    ngx_buf_t                  *fill;
    ngx_buf_t                  *flight;         /* NULL: nothing in flight */
    ngx_buf_t                   bufs[2];
    ngx_chain_t                 out;

    ngx_event_t                 heartbeat;
    ngx_event_t                 close;
    ngx_event_t                 send;           /* live events, once a read */
    const char                 *why;            /* the close's, for the log */

    /* a WebSocket subscriber: the client's frames (pings, its close) */
    ws_frame_parser_t           frames;
    u_char                      ctl[125];       /* a control payload */
    size_t                      nctl;

    unsigned                    ws:1;           /* WebSocket, not SSE */
    unsigned                    ws_closing:1;   /* close sent: then TCP */
    unsigned                    has_last:1;     /* last is set */
    unsigned                    check_gap:1;    /* is last still there? */
    unsigned                    reread:1;       /* held ones were dropped */
    unsigned                    paused:1;       /* replay waits for room */
    unsigned                    told_live:1;    /* ": live" was sent */
    unsigned                    wrote:1;        /* since the heartbeat */
    unsigned                    closing:1;
} ngx_ws_agent_sub_t;


static ngx_int_t ngx_ws_agent_sub_header(ngx_http_request_t *r,
    const char *name, const char *value);
static ngx_int_t ngx_ws_agent_sub_last_event_id(ngx_http_request_t *r,
    ngx_ws_agent_sub_t *sub);
static ngx_int_t ngx_ws_agent_sub_parse_id(u_char *p, size_t len,
    ngx_ws_agent_sid_t *id);
static ngx_int_t ngx_ws_agent_sub_cmp(ngx_ws_agent_sid_t *a,
    ngx_ws_agent_sid_t *b);
static ngx_int_t ngx_ws_agent_sub_start(ngx_http_request_t *r,
    ngx_ws_agent_sub_t *sub);
static void ngx_ws_agent_sub_cleanup(void *data);
static ngx_ws_agent_sub_t *ngx_ws_agent_sub_of(ngx_http_request_t *r);

static void ngx_ws_agent_sub_live(ngx_ws_agent_watch_t *w);
static void ngx_ws_agent_sub_message(ngx_ws_agent_watch_t *w, u_char *data,
    size_t len);
static void ngx_ws_agent_sub_lost(ngx_ws_agent_watch_t *w);

static void ngx_ws_agent_sub_read(ngx_ws_agent_sub_t *sub);
static void ngx_ws_agent_sub_entries(void *data, redisReply *rr);
static void ngx_ws_agent_sub_go_live(ngx_ws_agent_sub_t *sub);
static void ngx_ws_agent_sub_hold(ngx_ws_agent_sub_t *sub, u_char *data,
    size_t len);
static void ngx_ws_agent_sub_drop_held(ngx_ws_agent_sub_t *sub);
static ngx_int_t ngx_ws_agent_sub_deliver(ngx_ws_agent_sub_t *sub,
    u_char *data, size_t len);
static ngx_int_t ngx_ws_agent_sub_event(ngx_ws_agent_sub_t *sub,
    ngx_str_t *id, ngx_str_t *type, ngx_str_t *head, ngx_str_t *data);
static void ngx_ws_agent_sub_gap(ngx_ws_agent_sub_t *sub, ngx_str_t *first);

static ngx_int_t ngx_ws_agent_sub_room(ngx_ws_agent_sub_t *sub, size_t len);
static u_char *ngx_ws_agent_sub_text(ngx_ws_agent_sub_t *sub, u_char *p,
    size_t len);
static void ngx_ws_agent_sub_flush(ngx_ws_agent_sub_t *sub);
static void ngx_ws_agent_sub_send_handler(ngx_event_t *ev);
static void ngx_ws_agent_sub_write_handler(ngx_http_request_t *r);
static void ngx_ws_agent_sub_heartbeat(ngx_event_t *ev);
static ngx_int_t ngx_ws_agent_sub_ws_handshake(ngx_http_request_t *r,
    ngx_ws_agent_sub_t *sub);
static void ngx_ws_agent_sub_ws_read(ngx_http_request_t *r);
static void ngx_ws_agent_sub_ws_control(ngx_ws_agent_sub_t *sub);
static ngx_int_t ngx_ws_agent_sub_ws_frame(ngx_ws_agent_sub_t *sub,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_ws_agent_sub_post_close(ngx_ws_agent_sub_t *sub,
    const char *why);
static void ngx_ws_agent_sub_close_handler(ngx_event_t *ev);


static ngx_ws_agent_watch_handler_t  ngx_ws_agent_sub_watch_handler = {
    ngx_ws_agent_sub_live,
    ngx_ws_agent_sub_message,
    ngx_ws_agent_sub_lost
};


ngx_int_t
ngx_ws_agent_subscribe_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_ws_agent_sub_t        *sub;
    ngx_ws_agent_loc_conf_t   *wlcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_ws_agent_module);

    sub = ngx_pcalloc(r->pool, sizeof(ngx_ws_agent_sub_t));
    if (sub == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    sub->request = r;
    sub->conf = wlcf;

    if (ngx_http_complex_value(r, &wlcf->subscribe->value, &sub->channel)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (sub->channel.len == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ws_agent subscriber: channel \"%V\" names nobody, "
                      "refused", &wlcf->subscribe->value.value);
        return NGX_HTTP_FORBIDDEN;
    }

    if (wlcf->subscribe_stream) {
        if (ngx_http_complex_value(r, wlcf->subscribe_stream, &sub->stream)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_ws_agent_sub_last_event_id(r, sub);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_ws_agent_upgrade_is_websocket(r)) {
        rc = ngx_ws_agent_sub_ws_handshake(r, sub);
        if (rc != NGX_OK) {
            return rc;
        }

        goto start;
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type, "text/event-stream");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ngx_ws_agent_sub_header(r, "Cache-Control", "no-cache") != NGX_OK
        || ngx_ws_agent_sub_header(r, "X-Accel-Buffering", "no") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

start:

    /*
     * tcp_nodelay (on by default), as nginx does for keep-alive and
     * upgraded connections: an event goes when it comes, not held back
     * by Nagle until the client has acknowledged the one before
     */
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay
#if (NGX_HTTP_V2)
        && r->stream == NULL
#endif
        && ngx_tcp_nodelay(r->connection) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    if (ngx_ws_agent_sub_start(r, sub) != NGX_OK) {
        return NGX_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_ws_agent_sub_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}


/*
 * Where the client left off: the Last-Event-ID header (EventSource sends
 * it when it reconnects), else the last_event_id argument (a first
 * connect); "0" is the stream's start.  Without either: live only.
 */

static ngx_int_t
ngx_ws_agent_sub_last_event_id(ngx_http_request_t *r, ngx_ws_agent_sub_t *sub)
{
    ngx_str_t         id, name;
    ngx_table_elt_t  *h;

    ngx_str_null(&id);
    ngx_str_set(&name, "Last-Event-ID");

    h = ngx_ws_agent_find_header(&r->headers_in.headers, &name);
    if (h) {
        id = h->value;
    }

    if (id.len == 0
        && ngx_http_arg(r, (u_char *) "last_event_id",
                        sizeof("last_event_id") - 1, &id)
           != NGX_OK)
    {
        ngx_str_null(&id);
    }

    if (id.len == 0 || sub->stream.len == 0) {
        return NGX_OK;
    }

    if (ngx_ws_agent_sub_parse_id(id.data, id.len, &sub->last) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ws_agent subscriber: Last-Event-ID \"%V\" is not a "
                      "stream id (such as 1733241600000-0)", &id);
        return NGX_HTTP_BAD_REQUEST;
    }

    sub->given = id;
    sub->has_last = 1;

    ngx_ws_agent_count(NGX_WS_AGENT_SUB_RESUMES, 1);

    /* 0-0 is no entry: everything after it, nothing to miss */
    sub->check_gap = (sub->last.ms || sub->last.seq);

    return NGX_OK;
}


/* "ms-seq", or "ms" (seq 0) */

static ngx_int_t
ngx_ws_agent_sub_parse_id(u_char *p, size_t len, ngx_ws_agent_sid_t *id)
{
    u_char    *dash, *last;
    uint64_t  *n;

    last = p + len;
    dash = ngx_strlchr(p, last, '-');

    if (p == last || dash == p || dash + 1 == last) {
        return NGX_ERROR;
    }

    id->ms = 0;
    id->seq = 0;
    n = &id->ms;

    for ( /* void */ ; p < last; p++) {
        if (p == dash) {
            n = &id->seq;
            continue;
        }

        if (*p < '0' || *p > '9' || *n > (NGX_MAX_UINT32_VALUE * 1000ULL)) {
            return NGX_ERROR;
        }

        *n = *n * 10 + (*p - '0');
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ws_agent_sub_cmp(ngx_ws_agent_sid_t *a, ngx_ws_agent_sid_t *b)
{
    if (a->ms != b->ms) {
        return a->ms < b->ms ? -1 : 1;
    }

    if (a->seq != b->seq) {
        return a->seq < b->seq ? -1 : 1;
    }

    return 0;
}


static ngx_int_t
ngx_ws_agent_sub_start(ngx_http_request_t *r, ngx_ws_agent_sub_t *sub)
{
    size_t                     half;
    u_char                    *p;
    ngx_uint_t                 i;
    ngx_pool_cleanup_t        *cln;
    ngx_ws_agent_loc_conf_t   *wlcf = sub->conf;
    u_char                     retry[sizeof("retry: \n\n") + NGX_INT_T_LEN];

    half = wlcf->subscribe_buffer / 2;

    for (i = 0; i < 2; i++) {
        p = ngx_palloc(r->pool, half);
        if (p == NULL) {
            return NGX_ERROR;
        }

        sub->bufs[i].start = p;
        sub->bufs[i].pos = p;
        sub->bufs[i].last = p;
        sub->bufs[i].end = p + half;
        sub->bufs[i].memory = 1;
    }

    sub->fill = &sub->bufs[0];
    ngx_queue_init(&sub->held);

    sub->heartbeat.handler = ngx_ws_agent_sub_heartbeat;
    sub->heartbeat.data = sub;
    sub->heartbeat.log = r->connection->log;
    sub->heartbeat.cancelable = 1;

    sub->close.handler = ngx_ws_agent_sub_close_handler;
    sub->close.data = sub;
    sub->close.log = r->connection->log;

    sub->send.handler = ngx_ws_agent_sub_send_handler;
    sub->send.data = sub;
    sub->send.log = r->connection->log;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_ws_agent_sub_cleanup;
    cln->data = sub;

    r->read_event_handler = sub->ws ? ngx_ws_agent_sub_ws_read
                                    : ngx_http_test_reading;
    r->write_event_handler = ngx_ws_agent_sub_write_handler;

    /* a graceful shutdown closes it: the client resumes elsewhere */
    r->connection->idle = 1;

    ngx_ws_agent_gauge(subscribers, 1);

    if (!sub->ws) {
        p = ngx_sprintf(retry, "retry: %M\n\n", wlcf->subscribe_retry);
        (void) ngx_ws_agent_sub_text(sub, retry, p - retry);
    }

    ngx_add_timer(&sub->heartbeat, wlcf->subscribe_heartbeat);

    sub->watch.handler = &ngx_ws_agent_sub_watch_handler;
    sub->watch.data = sub;

    if (ngx_ws_agent_feed_watch(&sub->watch, &sub->channel,
                                r->connection->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_ws_agent_sub_flush(sub);

    if (sub->ws && ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_ws_agent_sub_cleanup(void *data)
{
    ngx_ws_agent_sub_t  *sub = data;

    ngx_ws_agent_feed_unwatch(&sub->watch);

    if (sub->read) {
        ngx_ws_agent_feed_cancel(sub->read);
        sub->read = NULL;
    }

    ngx_ws_agent_sub_drop_held(sub);

    if (sub->heartbeat.timer_set) {
        ngx_del_timer(&sub->heartbeat);
    }

    if (sub->close.posted) {
        ngx_delete_posted_event(&sub->close);
    }

    if (sub->send.posted) {
        ngx_delete_posted_event(&sub->send);
    }

    ngx_ws_agent_gauge(subscribers, -1);
}


/*
 * The client of a request, found by its pool's cleanup: the module's
 * request context is the WebSocket one (ws_agent_jwt makes it here too)
 */

static ngx_ws_agent_sub_t *
ngx_ws_agent_sub_of(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_ws_agent_sub_cleanup) {
            return cln->data;
        }
    }

    return NULL;
}


/* the feed's news */

static void
ngx_ws_agent_sub_live(ngx_ws_agent_watch_t *w)
{
    ngx_ws_agent_sub_t  *sub = w->data;

    if (sub->closing) {
        return;
    }

    if (sub->read) {
        /* subscribed again before a read came back: it starts over */
        ngx_ws_agent_feed_cancel(sub->read);
        sub->read = NULL;
    }

    if (sub->stream.len == 0) {
        ngx_ws_agent_sub_go_live(sub);
        return;
    }

    /* a fresh client's position: the stream's newest entry, if any */
    sub->state = NGX_WS_AGENT_SUB_READING;
    sub->reread = 0;

    ngx_ws_agent_sub_read(sub);
}


static void
ngx_ws_agent_sub_message(ngx_ws_agent_watch_t *w, u_char *data, size_t len)
{
    ngx_ws_agent_sub_t  *sub = w->data;

    if (sub->closing) {
        return;
    }

    switch (sub->state) {

    case NGX_WS_AGENT_SUB_LIVE:
        if (ngx_ws_agent_sub_deliver(sub, data, len) != NGX_OK) {
            return;
        }

        /*
         * sent once the feed's read is done: the events that came in one
         * read from Redis go to the client in one write
         */
        if (!sub->send.posted) {
            ngx_post_event(&sub->send, &ngx_posted_events);
        }

        break;

    case NGX_WS_AGENT_SUB_READING:
        ngx_ws_agent_sub_hold(sub, data, len);
        break;

    default: /* waiting: none come */
        break;
    }
}


static void
ngx_ws_agent_sub_lost(ngx_ws_agent_watch_t *w)
{
    ngx_ws_agent_sub_t  *sub = w->data;

    sub->state = NGX_WS_AGENT_SUB_WAITING;
    sub->paused = 0;

    if (sub->read) {
        ngx_ws_agent_feed_cancel(sub->read);
        sub->read = NULL;
    }

    ngx_ws_agent_sub_drop_held(sub);

    /* what was published meanwhile is read from last on, if still there */
    sub->check_gap = sub->has_last && (sub->last.ms || sub->last.seq);
}


/* the stream */

static void
ngx_ws_agent_sub_read(ngx_ws_agent_sub_t *sub)
{
    u_char      *p;
    ngx_str_t    start;
    ngx_uint_t   count;
    u_char       text[NGX_WS_AGENT_SUB_ID_LEN + 1];

    p = text;
    count = NGX_WS_AGENT_SUB_BATCH;

    if (!sub->has_last) {
        /* a fresh client: where the stream is now (its newest entry) */
        sub->read = ngx_ws_agent_feed_read(&sub->stream, NULL, 1,
                                           ngx_ws_agent_sub_entries, sub,
                                           sub->request->connection->log);
        goto done;

    } else if (sub->check_gap) {
        /* from last itself: is it still there? */
        p = ngx_sprintf(p, "%uL-%uL", sub->last.ms, sub->last.seq);
        count++;

    } else {
        p = ngx_sprintf(p, "(%uL-%uL", sub->last.ms, sub->last.seq);
    }

    start.data = text;
    start.len = p - text;

    sub->read = ngx_ws_agent_feed_read(&sub->stream, &start, count,
                                       ngx_ws_agent_sub_entries, sub,
                                       sub->request->connection->log);
done:

    if (sub->read == NULL) {
        ngx_ws_agent_sub_post_close(sub, "cannot read the stream");
    }
}


/* a stream read's entries: [[id, [field, value, ...]], ...] */

static void
ngx_ws_agent_sub_entries(void *data, redisReply *rr)
{
    size_t               i, j, n, first;
    ngx_int_t            rc;
    ngx_str_t            id, type, head, env;
    redisReply          *e, *f;
    ngx_ws_agent_sid_t   sid;
    ngx_ws_agent_sub_t  *sub = data;
    u_char               text[sizeof("{\"id\":\"\",") + NGX_WS_AGENT_SUB_ID_LEN];

    sub->read = NULL;

    if (rr->type != REDIS_REPLY_ARRAY) {
        ngx_log_error(NGX_LOG_ERR, sub->request->connection->log, 0,
                      "ws_agent subscriber: reading stream \"%V\" failed: "
                      "%*s", &sub->stream,
                      rr->type == REDIS_REPLY_ERROR ? (size_t) rr->len : 0,
                      rr->type == REDIS_REPLY_ERROR ? rr->str : "");
        ngx_ws_agent_sub_post_close(sub, NULL);
        return;
    }

    n = rr->elements;

    if (!sub->has_last) {
        /* a fresh client's position: the newest entry, or the start */
        sub->last.ms = 0;
        sub->last.seq = 0;

        if (n && rr->element[0]->type == REDIS_REPLY_ARRAY
            && rr->element[0]->elements
            && rr->element[0]->element[0]->type == REDIS_REPLY_STRING)
        {
            e = rr->element[0]->element[0];
            (void) ngx_ws_agent_sub_parse_id((u_char *) e->str, e->len,
                                             &sub->last);
        }

        sub->has_last = 1;
        ngx_ws_agent_sub_go_live(sub);
        return;
    }

    first = 0;

    for (i = 0; i < n; i++) {
        e = rr->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2
            || e->element[0]->type != REDIS_REPLY_STRING
            || e->element[1]->type != REDIS_REPLY_ARRAY)
        {
            continue;
        }

        id.data = (u_char *) e->element[0]->str;
        id.len = e->element[0]->len;

        if (ngx_ws_agent_sub_parse_id(id.data, id.len, &sid) != NGX_OK) {
            continue;
        }

        if (sub->check_gap) {
            sub->check_gap = 0;

            if (ngx_ws_agent_sub_cmp(&sid, &sub->last) == 0) {
                /* still there: nothing was trimmed after it */
                first = 1;
                continue;
            }

            ngx_ws_agent_sub_gap(sub, &id);
        }

        if (ngx_ws_agent_sub_cmp(&sid, &sub->last) <= 0) {
            continue;
        }

        ngx_str_null(&type);
        ngx_str_null(&env);
        f = e->element[1];

        for (j = 0; j + 1 < f->elements; j += 2) {
            if (f->element[j]->type != REDIS_REPLY_STRING
                || f->element[j]->len != 1
                || f->element[j + 1]->type != REDIS_REPLY_STRING)
            {
                continue;
            }

            if (f->element[j]->str[0] == 't') {
                type.data = (u_char *) f->element[j + 1]->str;
                type.len = f->element[j + 1]->len;

            } else if (f->element[j]->str[0] == 'e') {
                env.data = (u_char *) f->element[j + 1]->str;
                env.len = f->element[j + 1]->len;
            }
        }

        if (env.len < 2 || env.data[0] != '{') {
            continue;
        }

        /* the envelope as the channel carries it: the id first */
        head.data = text;
        head.len = ngx_sprintf(text, "{\"id\":\"%V\",", &id) - text;
        env.data++;
        env.len--;

        rc = ngx_ws_agent_sub_event(sub, &id, &type, &head, &env);

        if (rc == NGX_AGAIN) {
            /* the client has not read yet: this one is read again later */
            sub->paused = 1;
            ngx_ws_agent_sub_flush(sub);
            return;
        }

        if (rc != NGX_OK) {
            return;
        }

        sub->last = sid;
        ngx_ws_agent_count(NGX_WS_AGENT_SUB_REPLAYED, 1);
    }

    if (sub->check_gap) {
        /* nothing at or after last: it was trimmed, and all after it */
        sub->check_gap = 0;
        ngx_str_null(&id);
        ngx_ws_agent_sub_gap(sub, &id);
    }

    ngx_ws_agent_sub_flush(sub);

    if (sub->closing) {
        return;
    }

    if (n >= NGX_WS_AGENT_SUB_BATCH + first || sub->reread) {
        /* more may follow, or live ones were dropped while reading */
        sub->reread = 0;

        if (sub->flight && sub->fill->last > sub->fill->start) {
            sub->paused = 1;
            return;
        }

        ngx_ws_agent_sub_read(sub);
        return;
    }

    ngx_ws_agent_sub_go_live(sub);
}


static void
ngx_ws_agent_sub_go_live(ngx_ws_agent_sub_t *sub)
{
    ngx_queue_t          *q;
    ngx_ws_agent_held_t  *h;

    static u_char  live[] = ": live\n\n";
    static u_char  ws_live[] = "\x81\x0f{\"type\":\"live\"}";

    sub->state = NGX_WS_AGENT_SUB_LIVE;

    while (!ngx_queue_empty(&sub->held)) {
        q = ngx_queue_head(&sub->held);
        h = ngx_queue_data(q, ngx_ws_agent_held_t, queue);

        ngx_queue_remove(q);
        sub->nheld--;

        if (!sub->closing) {
            (void) ngx_ws_agent_sub_deliver(sub, h->data, h->len);
        }

        ngx_free(h);
    }

    if (sub->told_live || sub->closing) {
        ngx_ws_agent_sub_flush(sub);
        return;
    }

    if (sub->ws) {
        if (ngx_ws_agent_sub_room(sub, sizeof(ws_live) - 1) == NGX_OK) {
            (void) ngx_ws_agent_sub_text(sub, ws_live, sizeof(ws_live) - 1);
            sub->told_live = 1;
        }

    } else if (ngx_ws_agent_sub_room(sub, sizeof(live) - 1) == NGX_OK) {
        (void) ngx_ws_agent_sub_text(sub, live, sizeof(live) - 1);
        sub->told_live = 1;
    }

    ngx_ws_agent_sub_flush(sub);
}


/* a live message that came while the stream was read: kept, bounded */

static void
ngx_ws_agent_sub_hold(ngx_ws_agent_sub_t *sub, u_char *data, size_t len)
{
    ngx_ws_agent_held_t  *h;

    if (sub->nheld == NGX_WS_AGENT_SUB_HELD) {
        /* all of them are in the stream: it is read once more instead */
        ngx_ws_agent_sub_drop_held(sub);
        sub->reread = 1;
        return;
    }

    h = ngx_alloc(offsetof(ngx_ws_agent_held_t, data) + len,
                  sub->request->connection->log);
    if (h == NULL) {
        sub->reread = 1;
        return;
    }

    h->len = len;
    ngx_memcpy(h->data, data, len);

    ngx_queue_insert_tail(&sub->held, &h->queue);
    sub->nheld++;
}


static void
ngx_ws_agent_sub_drop_held(ngx_ws_agent_sub_t *sub)
{
    ngx_queue_t  *q;

    while (sub->nheld) {
        q = ngx_queue_head(&sub->held);
        ngx_queue_remove(q);
        sub->nheld--;
        ngx_free(ngx_queue_data(q, ngx_ws_agent_held_t, queue));
    }
}


/*
 * A message from the channel: {"id":"<id>",...,"type":"<type>",...} when
 * its publisher keeps a stream (ids at or below the last one sent were
 * replayed: dropped), any other message as it is, without an id.
 */

static ngx_int_t
ngx_ws_agent_sub_deliver(ngx_ws_agent_sub_t *sub, u_char *data, size_t len)
{
    u_char              *p, *last, *q;
    ngx_int_t            rc;
    ngx_str_t            id, type, env;
    ngx_ws_agent_sid_t   sid;

    static u_char  id_key[] = "{\"id\":\"";
    static u_char  type_key[] = ",\"type\":\"";

    last = data + len;
    ngx_str_null(&id);
    ngx_str_null(&type);

    if (len > sizeof(id_key) - 1
        && ngx_strncmp(data, id_key, sizeof(id_key) - 1) == 0)
    {
        p = data + sizeof(id_key) - 1;
        q = ngx_strlchr(p, last, '"');

        if (q && ngx_ws_agent_sub_parse_id(p, q - p, &sid) == NGX_OK) {
            if (sub->has_last && ngx_ws_agent_sub_cmp(&sid, &sub->last) <= 0)
            {
                return NGX_OK;
            }

            id.data = p;
            id.len = q - p;
        }
    }

    /* the envelope's own "type" comes before its "event" */
    p = ngx_strlcasestrn(data, last, type_key, sizeof(type_key) - 2);

    if (p) {
        p += sizeof(type_key) - 1;

        for (q = p; q < last && *q != '"'; q++) {
            if (*q == '\\') {
                q++;
            }
        }

        if (q < last) {
            type.data = p;
            type.len = q - p;
        }
    }

    env.data = data;
    env.len = len;

    rc = ngx_ws_agent_sub_event(sub, id.len ? &id : NULL, &type, NULL, &env);

    if (rc == NGX_AGAIN) {
        /* a live one finds no room: the client reads too slowly */
        ngx_ws_agent_count(NGX_WS_AGENT_SUB_SLOW_CLOSES, 1);
        ngx_log_error(NGX_LOG_WARN, sub->request->connection->log, 0,
                      "ws_agent subscriber: client reads too slowly (%uz "
                      "bytes wait, ws_agent_subscribe_buffer is %uz), "
                      "closed; it resumes with its Last-Event-ID",
                      ngx_buf_size(sub->fill)
                      + (sub->flight ? ngx_buf_size(sub->flight) : 0),
                      sub->conf->subscribe_buffer);
        ngx_ws_agent_sub_post_close(sub, NULL);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    if (id.len) {
        sub->last = sid;
        sub->has_last = 1;
    }

    return NGX_OK;
}


/*
 * One event, as Server-Sent Events frame it: "id:", "event:", and the
 * envelope (head, then data) on "data:" lines (a line break in the
 * backend's JSON starts another).  NGX_AGAIN: no room now.
 */

static ngx_int_t
ngx_ws_agent_sub_event(ngx_ws_agent_sub_t *sub, ngx_str_t *id,
    ngx_str_t *type, ngx_str_t *head, ngx_str_t *data)
{
    u_char     *p, *s, *end;
    size_t      size, breaks;
    ngx_int_t   rc;

    if (sub->ws) {
        /* a text frame of the envelope, the id in it */
        size = (head ? head->len : 0) + data->len;
        rc = ngx_ws_agent_sub_ws_frame(sub, WS_OP_TEXT, NULL, size);
        if (rc != NGX_OK) {
            return rc;
        }

        p = sub->fill->last;

        if (head) {
            p = ngx_cpymem(p, head->data, head->len);
        }

        sub->fill->last = ngx_cpymem(p, data->data, data->len);

        ngx_ws_agent_count(NGX_WS_AGENT_SUB_EVENTS, 1);
        return NGX_OK;
    }

    breaks = 0;
    end = data->data + data->len;

    for (s = data->data; s < end; s++) {
        if (*s == '\n' || (*s == '\r' && (s + 1 == end || s[1] != '\n'))) {
            breaks++;
        }
    }

    size = (id ? sizeof("id: \n") - 1 + id->len : 0)
           + (type->len ? sizeof("event: \n") - 1 + type->len : 0)
           + (breaks + 1) * (sizeof("data: \n") - 1)
           + (head ? head->len : 0) + data->len + 1;

    rc = ngx_ws_agent_sub_room(sub, size);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, sub->request->connection->log, 0,
                      "ws_agent subscriber: an event of %uz bytes is more "
                      "than half of ws_agent_subscribe_buffer (%uz), "
                      "closed", size, sub->conf->subscribe_buffer);
        ngx_ws_agent_sub_post_close(sub, NULL);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    p = sub->fill->last;

    if (id) {
        p = ngx_cpymem(p, "id: ", 4);
        p = ngx_cpymem(p, id->data, id->len);
        *p++ = '\n';
    }

    if (type->len) {
        p = ngx_cpymem(p, "event: ", 7);
        p = ngx_cpymem(p, type->data, type->len);
        *p++ = '\n';
    }

    p = ngx_cpymem(p, "data: ", 6);

    if (head) {
        p = ngx_cpymem(p, head->data, head->len);
    }

    for (s = data->data; s < end; s++) {
        if (*s == '\r' || *s == '\n') {
            if (*s == '\r' && s + 1 < end && s[1] == '\n') {
                s++;
            }

            p = ngx_cpymem(p, "\ndata: ", 7);
            continue;
        }

        *p++ = *s;
    }

    *p++ = '\n';
    *p++ = '\n';

    sub->fill->last = p;
    sub->wrote = 1;

    ngx_ws_agent_count(NGX_WS_AGENT_SUB_EVENTS, 1);

    return NGX_OK;
}


/* the id given is gone: said so, with the oldest entry there is */

static void
ngx_ws_agent_sub_gap(ngx_ws_agent_sub_t *sub, ngx_str_t *first)
{
    u_char  *p, *start;
    size_t   size;

    ngx_ws_agent_count(NGX_WS_AGENT_SUB_GAPS, 1);

    ngx_log_error(NGX_LOG_INFO, sub->request->connection->log, 0,
                  "ws_agent subscriber: %uL-%uL is no longer in stream "
                  "\"%V\", the client is told of the gap",
                  sub->last.ms, sub->last.seq, &sub->stream);

    u_char   text[sizeof("{\"type\":\"gap\",\"last_event_id\":\"\","
                         "\"first_id\":\"\"}")
                  + 2 * NGX_WS_AGENT_SUB_ID_LEN];

    size = sizeof("event: gap\ndata: {\"last_event_id\":\"\","
                  "\"first_id\":\"\"}\n\n") + 2 * NGX_WS_AGENT_SUB_ID_LEN;

    if (sub->ws) {
        p = ngx_sprintf(text, "{\"type\":\"gap\",\"last_event_id\":"
                        "\"%uL-%uL\",\"first_id\":\"%V\"}", sub->last.ms,
                        sub->last.seq, first);
        (void) ngx_ws_agent_sub_ws_frame(sub, WS_OP_TEXT, text, p - text);
        return;
    }

    if (ngx_ws_agent_sub_room(sub, size) != NGX_OK) {
        return;
    }

    start = sub->fill->last;
    p = ngx_sprintf(start, "event: gap\ndata: {\"last_event_id\":\"%uL-%uL\","
                    "\"first_id\":\"%V\"}\n\n", sub->last.ms, sub->last.seq,
                    first);
    sub->fill->last = p;
    sub->wrote = 1;
}


/* output */

static ngx_int_t
ngx_ws_agent_sub_room(ngx_ws_agent_sub_t *sub, size_t len)
{
    if (len > (size_t) (sub->fill->end - sub->fill->start)) {
        return NGX_ERROR;
    }

    if ((size_t) (sub->fill->end - sub->fill->last) >= len) {
        return NGX_OK;
    }

    /*
     * what is in flight may have gone by now (the socket took it): then
     * the full one goes out and the other one fills
     */
    ngx_ws_agent_sub_flush(sub);

    if (!sub->closing && (size_t) (sub->fill->end - sub->fill->last) >= len) {
        return NGX_OK;
    }

    return NGX_AGAIN;
}


static u_char *
ngx_ws_agent_sub_text(ngx_ws_agent_sub_t *sub, u_char *p, size_t len)
{
    sub->fill->last = ngx_cpymem(sub->fill->last, p, len);
    sub->wrote = 1;

    return sub->fill->last;
}


static void
ngx_ws_agent_sub_flush(ngx_ws_agent_sub_t *sub)
{
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_event_t               *wev;
    ngx_http_request_t        *r = sub->request;
    ngx_http_core_loc_conf_t  *clcf;

    if (sub->closing) {
        return;
    }

    for ( ;; ) {
        if (sub->flight == NULL) {
            if (sub->fill->last == sub->fill->pos) {
                return;
            }

            b = sub->fill;
            sub->flight = b;
            sub->fill = (b == &sub->bufs[0]) ? &sub->bufs[1] : &sub->bufs[0];

            b->flush = 1;
            sub->out.buf = b;
            sub->out.next = NULL;

            rc = ngx_http_output_filter(r, &sub->out);

        } else {
            rc = ngx_http_output_filter(r, NULL);
        }

        if (rc == NGX_ERROR) {
            ngx_ws_agent_sub_post_close(sub, "writing to the client failed");
            return;
        }

        b = sub->flight;

        if (ngx_buf_size(b) != 0) {
            break;
        }

        b->pos = b->start;
        b->last = b->start;
        sub->flight = NULL;

        if (sub->fill->last == sub->fill->pos) {
            break;
        }
    }

    wev = r->connection->write;

    if (sub->flight == NULL) {
        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        if (sub->ws_closing) {
            /* the close frame is out: the TCP connection goes too */
            ngx_ws_agent_sub_post_close(sub, NULL);
        }

        return;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (!wev->delayed && !wev->timer_set) {
        ngx_add_timer(wev, clcf->send_timeout);
    }

    if (ngx_handle_write_event(wev, clcf->send_lowat) != NGX_OK) {
        ngx_ws_agent_sub_post_close(sub, "writing to the client failed");
    }
}


static void
ngx_ws_agent_sub_send_handler(ngx_event_t *ev)
{
    ngx_ws_agent_sub_flush(ev->data);
}


static void
ngx_ws_agent_sub_write_handler(ngx_http_request_t *r)
{
    ngx_event_t         *wev = r->connection->write;
    ngx_ws_agent_sub_t  *sub;

    sub = ngx_ws_agent_sub_of(r);
    if (sub == NULL || sub->closing) {
        return;
    }

    if (wev->timedout) {
        wev->timedout = 0;
        ngx_ws_agent_sub_post_close(sub, "the client timed out reading");
        return;
    }

    ngx_ws_agent_sub_flush(sub);

    if (sub->paused && sub->flight == NULL && !sub->closing) {
        sub->paused = 0;

        if (sub->state == NGX_WS_AGENT_SUB_READING) {
            ngx_ws_agent_sub_read(sub);
        }
    }
}


static void
ngx_ws_agent_sub_heartbeat(ngx_event_t *ev)
{
    ngx_ws_agent_sub_t  *sub = ev->data;

    static u_char  beat[] = ": heartbeat\n\n";

    if (sub->closing) {
        return;
    }

    if (sub->wrote) {
        /* nothing to say: the connection was not idle */

    } else if (sub->ws) {
        if (ngx_ws_agent_sub_ws_frame(sub, WS_OP_PING, NULL, 0) == NGX_OK) {
            ngx_ws_agent_sub_flush(sub);
        }

    } else if (ngx_ws_agent_sub_room(sub, sizeof(beat) - 1) == NGX_OK) {
        (void) ngx_ws_agent_sub_text(sub, beat, sizeof(beat) - 1);
        ngx_ws_agent_sub_flush(sub);
    }

    sub->wrote = 0;

    ngx_add_timer(ev, sub->conf->subscribe_heartbeat);
}


/* closes are posted: the feed may be walking a list this client is in */

static void
ngx_ws_agent_sub_post_close(ngx_ws_agent_sub_t *sub, const char *why)
{
    if (sub->closing) {
        return;
    }

    sub->closing = 1;
    sub->why = why;

    ngx_post_event(&sub->close, &ngx_posted_events);
}


static void
ngx_ws_agent_sub_close_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_ws_agent_sub_t  *sub = ev->data;
    ngx_http_request_t  *r = sub->request;

    c = r->connection;

    if (sub->why) {
        ngx_log_error(NGX_LOG_INFO, c->log, 0, "ws_agent subscriber: %s",
                      sub->why);
    }

    c->error = 1;
    ngx_http_finalize_request(r, NGX_ERROR);
    ngx_http_run_posted_requests(c);
}


/*
 * WebSocket on the same location (RFC 6455 4.2.2): the 101, with the
 * client's key hashed into Sec-WebSocket-Accept.  The client's frames are
 * read only to answer pings and its close.
 */

static ngx_int_t
ngx_ws_agent_sub_ws_handshake(ngx_http_request_t *r, ngx_ws_agent_sub_t *sub)
{
    u_char           *p;
    ngx_str_t         src, dst, name;
    ngx_table_elt_t  *key, *h;
    u_char            md[SHA_DIGEST_LENGTH];

    static u_char  guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    ngx_str_set(&name, "Sec-WebSocket-Key");
    key = ngx_ws_agent_find_header(&r->headers_in.headers, &name);

    if (key == NULL || key->value.len == 0 || key->value.len > 64
        || r->http_version != NGX_HTTP_VERSION_11)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ws_agent subscriber: a WebSocket upgrade without "
                      "Sec-WebSocket-Key, or not HTTP/1.1: refused");
        return NGX_HTTP_BAD_REQUEST;
    }

    p = ngx_pnalloc(r->pool, key->value.len + sizeof(guid) - 1
                             + ngx_base64_encoded_length(SHA_DIGEST_LENGTH));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    src.data = p;
    src.len = ngx_cpymem(ngx_cpymem(p, key->value.data, key->value.len),
                         guid, sizeof(guid) - 1) - p;

    SHA1(src.data, src.len, md);

    src.data = md;
    src.len = SHA_DIGEST_LENGTH;
    dst.data = p + key->value.len + sizeof(guid) - 1;
    ngx_encode_base64(&dst, &src);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Sec-WebSocket-Accept");
    h->value = dst;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    if (ngx_ws_agent_sub_header(r, "Upgrade", "websocket") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;

    sub->ws = 1;
    ws_frame_parser_init(&sub->frames, 1, NGX_WS_AGENT_SUB_WS_MAX);

    return NGX_OK;
}


static void
ngx_ws_agent_sub_ws_read(ngx_http_request_t *r)
{
    ssize_t               n;
    ngx_connection_t     *c = r->connection;
    ws_frame_chunk_t      chunk;
    ngx_ws_agent_sub_t   *sub;
    ws_frame_event_e      ev;
    const u_char         *pos, *last;
    size_t                i, off;
    u_char                buf[4096];

    sub = ngx_ws_agent_sub_of(r);
    if (sub == NULL || sub->closing) {
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_ws_agent_sub_post_close(sub, NULL);
            return;
        }

        pos = buf;
        last = buf + n;

        for ( ;; ) {
            ev = ws_frame_parse(&sub->frames, &pos, last, &chunk);

            if (ev == WS_FRAME_AGAIN) {
                break;
            }

            if (ev == WS_FRAME_ERROR) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "ws_agent subscriber: %s, closing with %ui",
                              sub->frames.reason,
                              (ngx_uint_t) sub->frames.error);
                buf[0] = (u_char) (sub->frames.error >> 8);
                buf[1] = (u_char) (sub->frames.error & 0xff);
                (void) ngx_ws_agent_sub_ws_frame(sub, WS_OP_CLOSE, buf, 2);
                sub->ws_closing = 1;
                ngx_ws_agent_sub_flush(sub);
                return;
            }

            if (ev == WS_FRAME_HEADER) {
                sub->nctl = 0;
                continue;
            }

            if (ev == WS_FRAME_PAYLOAD) {
                if (!ws_frame_is_control(&sub->frames)) {
                    continue;       /* a subscriber has nothing to say */
                }

                for (i = 0; i < chunk.len && sub->nctl < 125; i++) {
                    off = (size_t) ((chunk.offset + i) & 3);
                    sub->ctl[sub->nctl++] = chunk.data[i]
                                            ^ sub->frames.mask[off];
                }

                continue;
            }

            /* WS_FRAME_END */

            if (ws_frame_is_control(&sub->frames)) {
                ngx_ws_agent_sub_ws_control(sub);

                if (sub->ws_closing || sub->closing) {
                    return;
                }
            }
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_ws_agent_sub_post_close(sub, NULL);
    }
}


static void
ngx_ws_agent_sub_ws_control(ngx_ws_agent_sub_t *sub)
{
    switch (sub->frames.opcode) {

    case WS_OP_PING:
        if (ngx_ws_agent_sub_ws_frame(sub, WS_OP_PONG, sub->ctl, sub->nctl)
            == NGX_OK)
        {
            ngx_ws_agent_sub_flush(sub);
        }

        break;

    case WS_OP_CLOSE:
        /* echoed, code and all; then the connection is over */
        (void) ngx_ws_agent_sub_ws_frame(sub, WS_OP_CLOSE, sub->ctl,
                                         ngx_min(sub->nctl, 2));
        sub->ws_closing = 1;
        ngx_ws_agent_sub_flush(sub);
        break;

    default: /* pong */
        break;
    }
}


/*
 * A server frame's header (and payload, when data is given) into the
 * fill buffer; the caller writes len payload bytes after it when data is
 * NULL.  NGX_AGAIN: no room now.
 */

static ngx_int_t
ngx_ws_agent_sub_ws_frame(ngx_ws_agent_sub_t *sub, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    u_char     *p;
    ngx_int_t   rc;

    if (sub->ws_closing) {
        /* nothing follows a close frame (RFC 6455 5.5.1) */
        return NGX_DECLINED;
    }

    rc = ngx_ws_agent_sub_room(sub, len + 10);

    if (rc == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ERR, sub->request->connection->log, 0,
                      "ws_agent subscriber: an event of %uz bytes is more "
                      "than half of ws_agent_subscribe_buffer (%uz), "
                      "closed", len, sub->conf->subscribe_buffer);
        ngx_ws_agent_sub_post_close(sub, NULL);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    p = sub->fill->last;
    *p++ = (u_char) (0x80 | opcode);

    if (len < 126) {
        *p++ = (u_char) len;

    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;

    } else {
        *p++ = 127;
        *p++ = 0;
        *p++ = 0;
        *p++ = 0;
        *p++ = 0;
        *p++ = (u_char) (len >> 24);
        *p++ = (u_char) (len >> 16);
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    if (data) {
        p = ngx_cpymem(p, data, len);
    }

    sub->fill->last = p;
    sub->wrote = 1;

    return NGX_OK;
}
