/*
 * The readiness gate (see ngx_ws_agent_gate.h for what it assumes of
 * nginx's relay).
 *
 * nginx's upgraded relay reads each side with c->recv and writes the other
 * side with c->send.  The gate wraps:
 *
 *   client recv    client -> backend bytes: validated; while gated they are
 *                  read into the hold buffer instead of nginx's, and after
 *                  the ack they are handed back to nginx, in order, as if
 *                  just read, so nginx's own writer delivers them;
 *   upstream recv  backend -> client bytes: validated, text messages
 *                  handed to message typing as they pass;
 *   client send    only to swallow output once the client has gone while
 *                  gated (its held frames still go to the backend);
 *   upstream read handler   only to own the wait for the ack.
 *
 * The relay's phase (gated, open, closing) changes in one function each:
 * ngx_ws_agent_gate_open(), ngx_ws_agent_gate_end(), and detach; what each
 * side's bytes become is its direction's flow.  Frames the module makes
 * (close frames) enter a stream the same way as held bytes: the recv
 * wrapper of that direction returns them before reading more, then reports
 * EOF when the module ends the connection, so nginx finishes the relay on
 * its own path.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_ws_agent.h"
#include "ngx_ws_agent_gate.h"
#include "ngx_ws_agent_message.h"
#include "ngx_ws_agent_events.h"
#include "ngx_ws_agent_stats.h"


/* whom ngx_ws_agent_gate_end() may still send a close frame */
#define NGX_WS_AGENT_CLOSE_CLIENT   1
#define NGX_WS_AGENT_CLOSE_BACKEND  2

#define ngx_ws_agent_at(d, side)                                             \
    (ws_frame_at_boundary(&(d)->frames) ? NGX_WS_AGENT_CLOSE_##side : 0)


/* the largest text message examined as a readiness ack */
#define NGX_WS_AGENT_ACK_MAX       4096

/* room for released withheld bytes, a read and a close frame */
#define NGX_WS_AGENT_B2C_OUT       (3 * NGX_WS_AGENT_ACK_MAX)
#define NGX_WS_AGENT_WITHHELD_MAX  (NGX_WS_AGENT_ACK_MAX + 256)
#define NGX_WS_AGENT_CLOSE_MAX     (WS_FRAME_MAX_HEADER + 125)

/* reads of client bytes to drop (after its close) before others' turn */
#define NGX_WS_AGENT_DROP_READS    16


static ssize_t ngx_ws_agent_client_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static ssize_t ngx_ws_agent_client_send(ngx_connection_t *c, u_char *buf,
    size_t size);
static ssize_t ngx_ws_agent_upstream_recv(ngx_connection_t *c, u_char *buf,
    size_t size);
static void ngx_ws_agent_upstream_read(ngx_event_t *ev);

static ssize_t ngx_ws_agent_absorb(ngx_ws_agent_ctx_t *ctx,
    ngx_connection_t *c);
static void ngx_ws_agent_hold_input(ngx_ws_agent_ctx_t *ctx, size_t n);
static ssize_t ngx_ws_agent_c2b_input(ngx_ws_agent_ctx_t *ctx, u_char *buf,
    size_t n);
static ssize_t ngx_ws_agent_b2c_input(ngx_ws_agent_ctx_t *ctx, u_char *buf,
    size_t n, ngx_uint_t copy);
static ngx_int_t ngx_ws_agent_b2c_header(ngx_ws_agent_ctx_t *ctx,
    ngx_uint_t copy);
static ngx_int_t ngx_ws_agent_b2c_payload(ngx_ws_agent_ctx_t *ctx,
    ws_frame_chunk_t *ch, ngx_uint_t copy);
static ngx_int_t ngx_ws_agent_b2c_end(ngx_ws_agent_ctx_t *ctx);

static void ngx_ws_agent_set_phase(ngx_ws_agent_relay_t *relay,
    ngx_uint_t phase);
static void ngx_ws_agent_gate_open(ngx_ws_agent_ctx_t *ctx);
static void ngx_ws_agent_gate_end(ngx_ws_agent_ctx_t *ctx, ngx_uint_t code,
    const char *reason, ngx_uint_t close);
static void ngx_ws_agent_client_left(ngx_ws_agent_ctx_t *ctx);
static void ngx_ws_agent_client_broke(ngx_ws_agent_ctx_t *ctx,
    ws_frame_parser_t *p);
static void ngx_ws_agent_ready_timeout(ngx_event_t *ev);

static ngx_int_t ngx_ws_agent_send_close(ngx_ws_agent_ctx_t *ctx,
    ngx_ws_agent_direction_t *d, ngx_uint_t code, const char *reason);
static ngx_int_t ngx_ws_agent_release_withheld(ngx_ws_agent_relay_t *relay,
    ngx_uint_t pass);
static void ngx_ws_agent_mask_key(u_char *mask, ngx_log_t *log);
static ngx_buf_t *ngx_ws_agent_out(ngx_ws_agent_ctx_t *ctx, ngx_buf_t **bp,
    size_t size);
static ngx_int_t ngx_ws_agent_append(ngx_buf_t *b, const u_char *p,
    size_t len);
static size_t ngx_ws_agent_drain(ngx_buf_t *b, u_char *buf, size_t size);
static void ngx_ws_agent_note_close(ngx_ws_agent_relay_t *relay,
    ws_frame_parser_t *p, ws_frame_chunk_t *ch);
static void ngx_ws_agent_kick(ngx_connection_t *c);


ngx_int_t
ngx_ws_agent_gate_attach(ngx_http_request_t *r, ngx_ws_agent_ctx_t *ctx)
{
    size_t                 n, len;
    ssize_t                kept;
    ngx_buf_t             *hin;
    ngx_connection_t      *c, *uc;
    ngx_http_upstream_t   *u;
    ngx_ws_agent_relay_t  *relay;

    u = r->upstream;
    c = r->connection;
    uc = u->peer.connection;
    relay = &ctx->relay;

    relay->client = c;
    relay->upstream = uc;
    relay->client_recv = c->recv;
    relay->client_send = c->send;
    relay->upstream_recv = uc->recv;
    relay->upstream_read = uc->read->handler;

    ws_frame_parser_init(&relay->c2b.frames, 1, ctx->conf->max_frame_size);
    ws_frame_parser_init(&relay->b2c.frames, 0, ctx->conf->max_frame_size);

    relay->phase = NGX_WS_AGENT_RELAY_GATED;
    relay->start = ngx_current_msec;
    relay->ready_ms = NGX_TIMER_INFINITE;

    ngx_ws_agent_count(NGX_WS_AGENT_CONNECTIONS, 1);
    ngx_ws_agent_gauge(active, 1);
    ngx_ws_agent_gauge(gated, 1);

    ngx_ws_agent_events_start(ctx);

    relay->ready_timer.handler = ngx_ws_agent_ready_timeout;
    relay->ready_timer.data = ctx;
    relay->ready_timer.log = c->log;
    ngx_add_timer(&relay->ready_timer, ctx->conf->ready_timeout);

    c->recv = ngx_ws_agent_client_recv;
    c->send = ngx_ws_agent_client_send;
    uc->recv = ngx_ws_agent_upstream_recv;
    uc->read->handler = ngx_ws_agent_upstream_read;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "ws_agent %V: gate closed, waiting for \"%V\"",
                   &ctx->id, &ctx->conf->ready_type);

    /*
     * Client bytes pipelined after the request: nginx would write
     * r->header_in straight upstream, so they go behind the gate now.
     */

    hin = r->header_in;
    len = hin->last - hin->pos;

    if (len) {
        n = ngx_max(len, ctx->conf->gate_buffer);

        relay->hold = ngx_create_temp_buf(r->pool, n);
        if (relay->hold == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(relay->hold->last, hin->pos, len);
        hin->pos = hin->last;

        ngx_ws_agent_hold_input(ctx, len);
    }

    /* backend bytes read with the 101: the ack may be among them */

    len = u->buffer.last - u->buffer.pos;

    if (len) {
        kept = ngx_ws_agent_b2c_input(ctx, u->buffer.pos, len,
                                      relay->phase == NGX_WS_AGENT_RELAY_GATED
                                      && !ctx->conf->ready_forward);
        if (kept == NGX_ERROR) {
            return NGX_ERROR;
        }

        u->buffer.last = u->buffer.pos + kept;

        if (relay->b2c.out || relay->b2c.flow == NGX_WS_AGENT_END) {
            uc->read->ready = 1;
        }
    }

    return NGX_OK;
}


/* client -> backend */

static ssize_t
ngx_ws_agent_client_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    ssize_t                    n;
    ngx_uint_t                 i;
    ngx_buf_t                 *hold;
    ngx_http_request_t        *r;
    ngx_ws_agent_ctx_t        *ctx;
    ngx_ws_agent_relay_t      *relay;
    ngx_ws_agent_direction_t  *d;

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);
    relay = &ctx->relay;
    d = &relay->c2b;

    if (r->upstream == NULL || r->upstream->peer.connection == NULL) {
        /* the relay is over (lingering close) */
        return relay->client_recv(c, buf, size);
    }

    hold = relay->hold;

    if (hold && relay->phase == NGX_WS_AGENT_RELAY_OPEN) {
        n = ngx_min((size_t) (hold->last - hold->pos), size);
        ngx_memcpy(buf, hold->pos, n);
        hold->pos += n;

        if (hold->pos == hold->last) {
            ngx_pfree(r->pool, hold->start);
            relay->hold = NULL;
        }

        c->read->ready = 1;

        if (n) {
            return n;
        }
    }

    if (d->out && d->out->pos < d->out->last) {
        c->read->ready = 1;
        n = ngx_ws_agent_drain(d->out, buf, size);

        if (relay->b2c.flow == NGX_WS_AGENT_END
            && d->out->pos == d->out->last)
        {
            /* nginx writes it upstream before it reads again */
            ngx_ws_agent_kick(relay->upstream);
        }

        return n;
    }

    if (d->flow == NGX_WS_AGENT_END) {
        c->read->ready = 0;
        c->read->eof = 1;
        return 0;
    }

    if (d->flow == NGX_WS_AGENT_STOP
        || relay->phase == NGX_WS_AGENT_RELAY_CLOSING)
    {
        c->read->ready = 0;
        return NGX_AGAIN;
    }

    if (relay->phase == NGX_WS_AGENT_RELAY_GATED) {
        return ngx_ws_agent_absorb(ctx, c);
    }

    /* bytes after the client's close frame are read and dropped */
    for (i = 0; i < NGX_WS_AGENT_DROP_READS; i++) {
        n = relay->client_recv(c, buf, size);

        if (n <= 0) {
            return n;
        }

        n = ngx_ws_agent_c2b_input(ctx, buf, n);

        if (n != 0) {
            return n;
        }
    }

    /* a client still sending: the other connections' turn first */
    ngx_post_event(c->read, &ngx_posted_events);

    return NGX_AGAIN;
}


/*
 * While gated the client is read into the hold buffer; when it is full the
 * client is not read at all, so TCP pushes back.  A client that leaves
 * while gated is not reported to nginx yet: its frames are still owed to
 * the backend.
 */

static ssize_t
ngx_ws_agent_absorb(ngx_ws_agent_ctx_t *ctx, ngx_connection_t *c)
{
    size_t                 room;
    ssize_t                n;
    ngx_buf_t             *hold;
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;

    if (relay->hold == NULL) {
        relay->hold = ngx_create_temp_buf(ctx->request->pool,
                                          ctx->conf->gate_buffer);
        if (relay->hold == NULL) {
            return NGX_ERROR;
        }
    }

    hold = relay->hold;

    for ( ;; ) {

        room = hold->end - hold->last;

        if (room == 0) {
            if (!relay->hold_full) {
                relay->hold_full = 1;
                ngx_ws_agent_count(NGX_WS_AGENT_BACKPRESSURE, 1);
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "ws_agent %V: gate buffer full, client paused",
                           &ctx->id);
            return NGX_AGAIN;
        }

        n = relay->client_recv(c, hold->last, room);

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (n == 0 || n == NGX_ERROR) {
            c->read->eof = 0;
            c->read->error = 0;
            c->read->ready = 0;

            ngx_ws_agent_client_left(ctx);
            return NGX_AGAIN;
        }

        ngx_ws_agent_hold_input(ctx, n);

        if (relay->c2b.flow != NGX_WS_AGENT_PASS
            || relay->phase != NGX_WS_AGENT_RELAY_GATED)
        {
            return NGX_AGAIN;
        }
    }
}


/*
 * n client bytes just placed at hold->last: validated, then held.  After a
 * protocol error only the whole frames before it stay.
 */

static void
ngx_ws_agent_hold_input(ngx_ws_agent_ctx_t *ctx, size_t n)
{
    ssize_t                kept;
    ngx_buf_t             *hold;
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;
    hold = relay->hold;
    kept = ngx_ws_agent_c2b_input(ctx, hold->last, n);

    if (relay->c2b.flow == NGX_WS_AGENT_STOP) {
        hold->last = hold->start + relay->hold_complete;
        return;
    }

    if (kept > 0) {
        hold->last += kept;
        ngx_ws_agent_count(NGX_WS_AGENT_BYTES_HELD, kept);
    }
}


/*
 * Client bytes [buf, buf + n): validated frame by frame.  Returns how many
 * of them may go on; a protocol error ends the connection after the valid
 * ones.
 */

static ssize_t
ngx_ws_agent_c2b_input(ngx_ws_agent_ctx_t *ctx, u_char *buf, size_t n)
{
    ngx_uint_t                 at_frame;
    ws_frame_chunk_t           ch;
    ws_frame_parser_t         *p;
    const u_char              *pos, *last, *mark;
    ngx_ws_agent_relay_t      *relay;
    ngx_ws_agent_direction_t  *d;

    relay = &ctx->relay;
    d = &relay->c2b;

    if (d->flow == NGX_WS_AGENT_DROP) {
        return 0;
    }

    p = &d->frames;
    pos = buf;
    last = buf + n;

    for ( ;; ) {

        mark = pos;

        switch (ws_frame_parse(p, &pos, last, &ch)) {

        case WS_FRAME_AGAIN:
            return n;

        case WS_FRAME_HEADER:
            if (d->close == NGX_WS_AGENT_CLOSE_PASSED) {
                /* RFC 6455 5.5.1: nothing may follow a close frame */
                ngx_log_error(NGX_LOG_INFO, relay->client->log, 0,
                              "ws_agent %V: client sent frames after its "
                              "close frame; they are dropped", &ctx->id);
                d->flow = NGX_WS_AGENT_DROP;

                return mark - buf;
            }

            if (p->opcode == WS_OP_CLOSE) {
                d->close = NGX_WS_AGENT_CLOSE_PASSING;
            }

            break;

        case WS_FRAME_PAYLOAD:
            if (p->opcode == WS_OP_CLOSE) {
                ngx_ws_agent_note_close(relay, p, &ch);
            }

            break;

        case WS_FRAME_END:
            if (p->opcode == WS_OP_CLOSE) {
                d->close = NGX_WS_AGENT_CLOSE_PASSED;
            }

            if (relay->phase == NGX_WS_AGENT_RELAY_GATED && relay->hold) {
                /* buf is always appended at hold->last */
                relay->frames_held++;
                ngx_ws_agent_count(NGX_WS_AGENT_FRAMES_HELD, 1);
                relay->hold_complete = (relay->hold->last - relay->hold->start)
                                       + (pos - buf);
            }

            break;

        default: /* WS_FRAME_ERROR */

            /*
             * errors are found in headers: the parser stands at the
             * offending header when it began in this buffer, which is
             * when the bytes before it end a frame
             */
            at_frame = ws_frame_at_boundary(p);

            ngx_ws_agent_count(NGX_WS_AGENT_PROTOCOL_ERRORS_CLIENT, 1);

            if (relay->phase == NGX_WS_AGENT_RELAY_GATED) {
                ngx_ws_agent_client_broke(ctx, p);
                return NGX_AGAIN;
            }

            ngx_log_error(NGX_LOG_ERR, relay->client->log, 0,
                          "ws_agent %V: client protocol error: %s, "
                          "closing with %ui",
                          &ctx->id, p->reason, (ngx_uint_t) p->error);

            ngx_ws_agent_gate_end(ctx, p->error, p->reason,
                                  ngx_ws_agent_at(&relay->b2c, CLIENT)
                                  | (at_frame ? NGX_WS_AGENT_CLOSE_BACKEND
                                              : 0));

            n = at_frame ? (size_t) (pos - buf) : 0;

            if (n == 0) {
                return NGX_AGAIN;
            }

            return n;
        }
    }
}


static ssize_t
ngx_ws_agent_client_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    ngx_http_request_t  *r;
    ngx_ws_agent_ctx_t  *ctx;

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);

    if (ctx->relay.b2c.flow == NGX_WS_AGENT_GONE
        && r->upstream && r->upstream->peer.connection)
    {
        return size;
    }

    return ctx->relay.client_send(c, buf, size);
}


/* backend -> client */

static ssize_t
ngx_ws_agent_upstream_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    ssize_t                    n;
    ngx_uint_t                 copy, pass;
    ngx_http_request_t        *r;
    ngx_http_upstream_t       *u;
    ngx_ws_agent_ctx_t        *ctx;
    ngx_ws_agent_relay_t      *relay;
    ngx_ws_agent_direction_t  *d;

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);
    relay = &ctx->relay;
    d = &relay->b2c;

    for ( ;; ) {

        if (d->out && d->out->pos < d->out->last) {
            c->read->ready = 1;
            n = ngx_ws_agent_drain(d->out, buf, size);

            if (d->out->pos == d->out->last
                && relay->phase == NGX_WS_AGENT_RELAY_OPEN)
            {
                /* the candidate-ack buffer is not needed after the gate */
                ngx_pfree(r->pool, d->out->start);
                d->out = NULL;
            }

            return n;
        }

        if (d->flow == NGX_WS_AGENT_END) {
            u = r->upstream;

            if ((relay->c2b.out && relay->c2b.out->pos < relay->c2b.out->last)
                || u->from_client.pos != u->from_client.last)
            {
                /* the backend's close frame is not out yet */
                c->read->ready = 0;
                return NGX_AGAIN;
            }

            c->read->ready = 0;
            c->read->eof = 1;
            return 0;
        }

        /* a candidate ack may have to be kept: read a bounded copy */
        pass = (d->flow == NGX_WS_AGENT_PASS);
        copy = relay->phase == NGX_WS_AGENT_RELAY_GATED
               && !ctx->conf->ready_forward && pass;

        n = relay->upstream_recv(c, buf,
                                 copy ? ngx_min(size, NGX_WS_AGENT_ACK_MAX)
                                      : size);

        if (n == NGX_AGAIN) {
            return n;
        }

        if (n == 0 || n == NGX_ERROR) {

            if (relay->phase != NGX_WS_AGENT_RELAY_GATED
                || d->close != NGX_WS_AGENT_NO_CLOSE)
            {
                return n;
            }

            c->read->eof = 0;
            c->read->error = 0;

            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "ws_agent %V: backend %s before it was ready "
                          "(%M ms after the upgrade), closing with 1014",
                          &ctx->id, n == 0 ? "closed" : "failed",
                          ngx_current_msec - relay->start);

            ngx_ws_agent_count(NGX_WS_AGENT_BACKEND_FAILED_BEFORE_READY, 1);

            ngx_ws_agent_gate_end(ctx, WS_CLOSE_BAD_GATEWAY,
                                  "backend closed before ready",
                                  ngx_ws_agent_at(d, CLIENT));
            continue;
        }

        n = ngx_ws_agent_b2c_input(ctx, buf, n, copy);

        if (n > 0 && !pass) {
            /* the client has its close frame, or is gone: only looked at */
            n = 0;
        }

        if (n > 0) {
            if (d->out || d->flow == NGX_WS_AGENT_END) {
                c->read->ready = 1;
            }

            return n;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if ((d->out && d->out->pos < d->out->last)
            || d->flow == NGX_WS_AGENT_END)
        {
            continue;
        }

        if (!c->read->ready) {
            return NGX_AGAIN;
        }
    }
}


/*
 * While gated the gate owns the wait for the backend: its
 * ws_agent_ready_timeout ends it with 1013, whatever proxy_read_timeout
 * says; nginx arms that timer again once the relay runs after the ack.
 */

static void
ngx_ws_agent_upstream_read(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_ws_agent_ctx_t  *ctx;

    c = ev->data;
    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);

    if (ev->timedout && ctx->relay.phase == NGX_WS_AGENT_RELAY_GATED) {
        ev->timedout = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "ws_agent %V: proxy_read_timeout while gated, "
                       "ws_agent_ready_timeout decides", &ctx->id);
        return;
    }

    ctx->relay.upstream_read(ev);
}


/*
 * Backend bytes [buf, buf + n).  Without copy they stay where they are and
 * the return value says how many go on.  With copy (gated, ack not to be
 * forwarded) every frame is rebuilt into b2c.out or, for a text message
 * that may be the ack, into the withheld buffer, and 0 is returned.
 */

static ssize_t
ngx_ws_agent_b2c_input(ngx_ws_agent_ctx_t *ctx, u_char *buf, size_t n,
    ngx_uint_t copy)
{
    ngx_uint_t                 at_frame;
    ws_frame_chunk_t           ch;
    ws_frame_parser_t         *p;
    const u_char              *pos, *last, *mark;
    ngx_ws_agent_relay_t      *relay;
    ngx_ws_agent_direction_t  *d;

    relay = &ctx->relay;
    d = &relay->b2c;
    p = &d->frames;
    pos = buf;
    last = buf + n;

    if (copy && ngx_ws_agent_out(ctx, &d->out, NGX_WS_AGENT_B2C_OUT) == NULL)
    {
        return NGX_ERROR;
    }

    for ( ;; ) {

        mark = pos;

        switch (ws_frame_parse(p, &pos, last, &ch)) {

        case WS_FRAME_AGAIN:
            return copy ? 0 : (ssize_t) n;

        case WS_FRAME_HEADER:
            if (d->close == NGX_WS_AGENT_CLOSE_PASSED) {
                if (d->flow == NGX_WS_AGENT_PASS) {
                    /* RFC 6455 5.5.1: nothing may follow a close frame */
                    ngx_log_error(NGX_LOG_INFO, relay->client->log, 0,
                                  "ws_agent %V: backend sent frames after "
                                  "its close frame; they are dropped",
                                  &ctx->id);
                    d->flow = NGX_WS_AGENT_DROP;
                }

                return copy ? 0 : mark - buf;
            }

            if (ngx_ws_agent_b2c_header(ctx, copy) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        case WS_FRAME_PAYLOAD:
            if (ngx_ws_agent_b2c_payload(ctx, &ch, copy) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        case WS_FRAME_END:
            if (ngx_ws_agent_b2c_end(ctx) != NGX_OK) {
                return NGX_ERROR;
            }

            break;

        default: /* WS_FRAME_ERROR */
            at_frame = ws_frame_at_boundary(p);   /* as for the client */

            ngx_log_error(NGX_LOG_ERR, relay->client->log, 0,
                          "ws_agent %V: backend protocol error: %s, "
                          "closing the client with %ui",
                          &ctx->id, p->reason, (ngx_uint_t) p->error);

            ngx_ws_agent_count(NGX_WS_AGENT_PROTOCOL_ERRORS_BACKEND, 1);

            ngx_ws_agent_gate_end(ctx, p->error, "backend protocol error",
                                  (at_frame ? NGX_WS_AGENT_CLOSE_CLIENT : 0)
                                  | ngx_ws_agent_at(&relay->c2b, BACKEND));

            if (copy || !at_frame || pos == buf) {
                return 0;
            }

            return pos - buf;
        }
    }
}


static ngx_int_t
ngx_ws_agent_b2c_header(ngx_ws_agent_ctx_t *ctx, ngx_uint_t copy)
{
    ngx_buf_t             *dst;
    ws_frame_parser_t     *p;
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;
    p = &relay->b2c.frames;

    if (p->opcode == WS_OP_CLOSE) {
        relay->b2c.close = NGX_WS_AGENT_CLOSE_PASSING;
    }

    if (p->opcode == WS_OP_TEXT) {
        relay->withholding = copy;
        ngx_ws_agent_msg_start(ctx, relay->phase == NGX_WS_AGENT_RELAY_GATED);

    } else if (p->opcode == WS_OP_BINARY) {
        relay->withholding = 0;
    }

    if (!copy) {
        return NGX_OK;
    }

    /* the frame's own header bytes, from the parser's copy */

    dst = relay->b2c.out;

    if (relay->withholding && !ws_frame_is_control(p)) {

        if (ngx_ws_agent_out(ctx, &relay->withheld, NGX_WS_AGENT_WITHHELD_MAX)
            == NULL)
        {
            return NGX_ERROR;
        }

        if ((size_t) (relay->withheld->end - relay->withheld->last)
            >= p->hlen + p->len)
        {
            dst = relay->withheld;

        } else if (ngx_ws_agent_release_withheld(relay, 1) != NGX_OK) {
            /* too big to be the ack: let it all go */
            return NGX_ERROR;
        }
    }

    return ngx_ws_agent_append(dst, p->hdr, p->hlen);
}


static ngx_int_t
ngx_ws_agent_b2c_payload(ngx_ws_agent_ctx_t *ctx, ws_frame_chunk_t *ch,
    ngx_uint_t copy)
{
    ngx_buf_t             *dst;
    ws_frame_parser_t     *p;
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;
    p = &relay->b2c.frames;

    if (p->opcode == WS_OP_CLOSE) {
        ngx_ws_agent_note_close(relay, p, ch);

    } else if (!ws_frame_is_control(p) && ngx_ws_agent_msg_wanted(&ctx->msg))
    {
        if (ngx_ws_agent_msg_piece(ctx, ch->data, ch->len) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (!copy) {
        return NGX_OK;
    }

    dst = (relay->withholding && !ws_frame_is_control(p)) ? relay->withheld
                                                           : relay->b2c.out;

    return ngx_ws_agent_append(dst, ch->data, ch->len);
}


static ngx_int_t
ngx_ws_agent_b2c_end(ngx_ws_agent_ctx_t *ctx)
{
    ngx_uint_t             ack;
    ws_frame_parser_t     *p;
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;
    p = &relay->b2c.frames;

    if (p->opcode == WS_OP_CLOSE) {
        relay->b2c.close = NGX_WS_AGENT_CLOSE_PASSED;
    }

    if (ws_frame_is_control(p) || !p->fin
        || ws_frame_message_opcode(p) != WS_OP_TEXT)
    {
        return NGX_OK;
    }

    ack = ngx_ws_agent_msg_wanted(&ctx->msg)
          && ngx_ws_agent_msg_end(ctx) == NGX_WS_AGENT_ACK
          && relay->phase == NGX_WS_AGENT_RELAY_GATED;

    /* a withheld message that is not the ack goes on after all */
    if (relay->withholding
        && ngx_ws_agent_release_withheld(relay, !ack) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ack) {
        ngx_ws_agent_gate_open(ctx);
    }

    return NGX_OK;
}


/* the relay's phase: leaving the gate is counted here, whichever way */

static void
ngx_ws_agent_set_phase(ngx_ws_agent_relay_t *relay, ngx_uint_t phase)
{
    if (relay->phase == NGX_WS_AGENT_RELAY_GATED) {
        ngx_ws_agent_gauge(gated, -1);

        if (relay->ready_timer.timer_set) {
            ngx_del_timer(&relay->ready_timer);
        }

        if (phase != NGX_WS_AGENT_RELAY_OPEN) {
            ngx_ws_agent_count(NGX_WS_AGENT_FRAMES_DROPPED,
                               relay->frames_held);
        }
    }

    relay->phase = phase;
}


/* gated -> open, on the ack: held frames go first, in order, then live */

static void
ngx_ws_agent_gate_open(ngx_ws_agent_ctx_t *ctx)
{
    ngx_ws_agent_relay_t  *relay;
    u_char                 event[sizeof("{\"ready_ms\":}") + NGX_INT_T_LEN];

    relay = &ctx->relay;

    ngx_ws_agent_set_phase(relay, NGX_WS_AGENT_RELAY_OPEN);
    relay->ready_ms = ngx_current_msec - relay->start;

    if (relay->withheld) {
        ngx_pfree(ctx->request->pool, relay->withheld->start);
        relay->withheld = NULL;
    }

    ngx_log_error(NGX_LOG_INFO, relay->client->log, 0,
                  "ws_agent %V: backend ready after %M ms, "
                  "%ui frames held",
                  &ctx->id, relay->ready_ms, relay->frames_held);

    ngx_ws_agent_count(NGX_WS_AGENT_ACKS, 1);
    ngx_ws_agent_stats_ready(relay->ready_ms);

    *ngx_sprintf(event, "{\"ready_ms\":%M}", relay->ready_ms) = '\0';
    ngx_ws_agent_events_lifecycle(ctx, "ws_ready", (char *) event);

    if (relay->c2b.flow == NGX_WS_AGENT_STOP) {
        /* the client left or broke the protocol: its frames, then goodbye */
        if (relay->owed_code) {
            (void) ngx_ws_agent_send_close(ctx, &relay->c2b,
                                           relay->owed_code,
                                           relay->owed_code
                                           == WS_CLOSE_GOING_AWAY
                                           ? "client went away"
                                           : "client protocol error");
        }

        relay->c2b.flow = NGX_WS_AGENT_END;
    }

    if (relay->hold || relay->c2b.out
        || relay->c2b.flow == NGX_WS_AGENT_END)
    {
        ngx_ws_agent_kick(relay->client);
    }
}


/*
 * gated or open -> closing: the one way the module ends a connection.  A
 * close frame to the client (and to the backend once it has been let in),
 * then EOF to nginx.  A close frame goes only where the stream stands
 * between frames (close): where a frame is half out, the peer gets the TCP
 * close alone.
 */

static void
ngx_ws_agent_gate_end(ngx_ws_agent_ctx_t *ctx, ngx_uint_t code,
    const char *reason, ngx_uint_t close)
{
    ngx_uint_t             was;
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;
    was = relay->phase;

    if (was != NGX_WS_AGENT_RELAY_GATED && was != NGX_WS_AGENT_RELAY_OPEN) {
        return;
    }

    ngx_ws_agent_set_phase(relay, NGX_WS_AGENT_RELAY_CLOSING);

    relay->close_code = code;
    relay->close_by = NGX_WS_AGENT_BY_MODULE;

    if ((close & NGX_WS_AGENT_CLOSE_CLIENT)
        && relay->b2c.flow == NGX_WS_AGENT_PASS)
    {
        (void) ngx_ws_agent_release_withheld(relay, 1);
        (void) ngx_ws_agent_send_close(ctx, &relay->b2c, code, reason);
    }

    relay->b2c.flow = NGX_WS_AGENT_END;

    if ((close & NGX_WS_AGENT_CLOSE_BACKEND)
        && was == NGX_WS_AGENT_RELAY_OPEN)
    {
        (void) ngx_ws_agent_send_close(ctx, &relay->c2b, code, reason);
        ngx_ws_agent_kick(relay->client);
    }

    ngx_ws_agent_kick(relay->upstream);
}


/* gated, the client's TCP is gone: its whole frames are still owed */

static void
ngx_ws_agent_client_left(ngx_ws_agent_ctx_t *ctx)
{
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;

    relay->hold->last = relay->hold->start + relay->hold_complete;

    relay->owed_code = (relay->c2b.close == NGX_WS_AGENT_CLOSE_PASSED)
                       ? 0 : WS_CLOSE_GOING_AWAY;
    relay->c2b.flow = NGX_WS_AGENT_STOP;
    relay->b2c.flow = NGX_WS_AGENT_GONE;

    ngx_ws_agent_count(NGX_WS_AGENT_CLIENT_LEFT_WHILE_GATED, 1);

    ngx_log_error(NGX_LOG_INFO, relay->client->log, 0,
                  "ws_agent %V: client left while gated, "
                  "%ui frames held for the backend",
                  &ctx->id, relay->frames_held);
}


/*
 * Gated, the client broke the protocol: it is told so at once; the whole
 * frames it sent before are still owed to the backend, which gets them,
 * then the same close code, once it is ready.  Until then nothing more of
 * the backend's reaches the client.
 */

static void
ngx_ws_agent_client_broke(ngx_ws_agent_ctx_t *ctx, ws_frame_parser_t *p)
{
    ngx_ws_agent_relay_t  *relay;

    relay = &ctx->relay;

    ngx_log_error(NGX_LOG_ERR, relay->client->log, 0,
                  "ws_agent %V: client protocol error: %s, closing with "
                  "%ui; %ui frames held go to the backend once it is ready",
                  &ctx->id, p->reason, (ngx_uint_t) p->error,
                  relay->frames_held);

    relay->close_code = p->error;
    relay->close_by = NGX_WS_AGENT_BY_MODULE;
    relay->owed_code = (relay->c2b.close == NGX_WS_AGENT_CLOSE_PASSED)
                       ? 0 : p->error;
    relay->c2b.flow = NGX_WS_AGENT_STOP;

    if (ws_frame_at_boundary(&relay->b2c.frames)
        && relay->b2c.flow == NGX_WS_AGENT_PASS)
    {
        (void) ngx_ws_agent_release_withheld(relay, 1);
        (void) ngx_ws_agent_send_close(ctx, &relay->b2c, p->error,
                                       p->reason);
    }

    relay->b2c.flow = NGX_WS_AGENT_DROP;
    ngx_ws_agent_kick(relay->upstream);
}


static void
ngx_ws_agent_ready_timeout(ngx_event_t *ev)
{
    ngx_ws_agent_ctx_t    *ctx = ev->data;
    ngx_ws_agent_relay_t  *relay = &ctx->relay;

    u_char  event[sizeof("{\"waited_ms\":}") + NGX_INT_T_LEN];

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "ws_agent %V: backend not ready after %M ms, "
                  "closing with 1013; %ui frames (%uz bytes) held "
                  "are dropped",
                  &ctx->id, ngx_current_msec - relay->start,
                  relay->frames_held,
                  relay->hold ? (size_t) (relay->hold->last - relay->hold->pos)
                              : 0);

    ngx_ws_agent_count(NGX_WS_AGENT_READY_TIMEOUTS, 1);

    *ngx_sprintf(event, "{\"waited_ms\":%M}",
                 ngx_current_msec - relay->start) = '\0';
    ngx_ws_agent_events_lifecycle(ctx, "ws_ready_timeout", (char *) event);

    ngx_ws_agent_gate_end(ctx, WS_CLOSE_TRY_AGAIN, "backend not ready",
                          ngx_ws_agent_at(&relay->b2c, CLIENT));
}


/*
 * The one way a close frame of the module's enters a stream (d: the
 * direction it goes with); the first one names the connection's end and
 * is counted, once it is queued.
 */

static ngx_int_t
ngx_ws_agent_send_close(ngx_ws_agent_ctx_t *ctx, ngx_ws_agent_direction_t *d,
    ngx_uint_t code, const char *reason)
{
    size_t                 len;
    u_char                *mask;
    ngx_buf_t             *b;
    ngx_uint_t             counter;
    ngx_ws_agent_relay_t  *relay;
    u_char                 key[4];
    u_char                 frame[NGX_WS_AGENT_CLOSE_MAX];

    relay = &ctx->relay;
    mask = NULL;

    if (d == &relay->c2b) {
        /* frames toward the backend are masked with a fresh key */
        ngx_ws_agent_mask_key(key, relay->client->log);
        mask = key;
    }

    b = ngx_ws_agent_out(ctx, &d->out, NGX_WS_AGENT_CLOSE_MAX);
    if (b == NULL) {
        return NGX_ERROR;
    }

    len = ws_frame_write_close(frame, code, reason, ngx_strlen(reason), mask);

    if (ngx_ws_agent_append(b, frame, len) != NGX_OK) {
        return NGX_ERROR;
    }

    if (relay->close_code == 0) {
        relay->close_code = code;
        relay->close_by = NGX_WS_AGENT_BY_MODULE;
    }

    if (relay->sent_code) {
        return NGX_OK;
    }

    relay->sent_code = code;

    switch (code) {
    case WS_CLOSE_GOING_AWAY:
        counter = NGX_WS_AGENT_SENT_1001;
        break;
    case WS_CLOSE_PROTOCOL:
        counter = NGX_WS_AGENT_SENT_1002;
        break;
    case WS_CLOSE_TOO_BIG:
        counter = NGX_WS_AGENT_SENT_1009;
        break;
    case WS_CLOSE_TRY_AGAIN:
        counter = NGX_WS_AGENT_SENT_1013;
        break;
    default: /* WS_CLOSE_BAD_GATEWAY */
        counter = NGX_WS_AGENT_SENT_1014;
        break;
    }

    ngx_ws_agent_count(counter, 1);

    return NGX_OK;
}


/*
 * The one way withheld bytes (a candidate ack, ws_agent_ready_forward off)
 * leave the withheld buffer: on to the client (pass), or dropped (the ack).
 */

static ngx_int_t
ngx_ws_agent_release_withheld(ngx_ws_agent_relay_t *relay, ngx_uint_t pass)
{
    ngx_int_t   rc;
    ngx_buf_t  *w;

    w = relay->withheld;
    relay->withholding = 0;

    if (w == NULL || w->pos == w->last) {
        return NGX_OK;
    }

    rc = pass ? ngx_ws_agent_append(relay->b2c.out, w->pos, w->last - w->pos)
              : NGX_OK;

    w->pos = w->start;
    w->last = w->start;

    return rc;
}


/*
 * RFC 6455 5.3 asks for an unpredictable key; should OpenSSL fail to give
 * one, nginx's own generator still makes a valid frame, and it is said.
 */

static void
ngx_ws_agent_mask_key(u_char *mask, ngx_log_t *log)
{
    uint32_t  r;

    if (RAND_bytes(mask, 4) == 1) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "ws_agent: RAND_bytes() failed, masking a close frame "
                  "with ngx_random()");

    r = (uint32_t) ngx_random();
    ngx_memcpy(mask, &r, 4);
}


/* small helpers */

static ngx_buf_t *
ngx_ws_agent_out(ngx_ws_agent_ctx_t *ctx, ngx_buf_t **bp, size_t size)
{
    if (*bp == NULL) {
        *bp = ngx_create_temp_buf(ctx->request->pool, size);
    }

    return *bp;
}


static ngx_int_t
ngx_ws_agent_append(ngx_buf_t *b, const u_char *p, size_t len)
{
    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;
    }

    if ((size_t) (b->end - b->last) < len) {
        /* the sizes above make this unreachable; never write past end */
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, p, len);

    return NGX_OK;
}


static size_t
ngx_ws_agent_drain(ngx_buf_t *b, u_char *buf, size_t size)
{
    size_t  n;

    n = ngx_min((size_t) (b->last - b->pos), size);
    ngx_memcpy(buf, b->pos, n);
    b->pos += n;

    return n;
}


/* the first close code seen names the connection's end */

static void
ngx_ws_agent_note_close(ngx_ws_agent_relay_t *relay, ws_frame_parser_t *p,
    ws_frame_chunk_t *ch)
{
    u_char  code[2];

    if (relay->close_code || ch->offset != 0 || ch->len < 2) {
        return;
    }

    ws_frame_unmask(code, ch->data, 2, p->mask, 0);
    relay->close_code = (code[0] << 8) | code[1];
    relay->close_by = p->from_client ? NGX_WS_AGENT_BY_CLIENT
                                     : NGX_WS_AGENT_BY_BACKEND;
}


static void
ngx_ws_agent_kick(ngx_connection_t *c)
{
    c->read->ready = 1;
    ngx_post_event(c->read, &ngx_posted_events);
}


void
ngx_ws_agent_gate_detach(ngx_ws_agent_ctx_t *ctx)
{
    ngx_http_upstream_t   *u;
    ngx_ws_agent_relay_t  *relay;
    static const char     *by[] = { "network", "client", "backend",
                                    "module" };

    relay = &ctx->relay;

    if (relay->phase == NGX_WS_AGENT_RELAY_UNATTACHED
        || relay->phase == NGX_WS_AGENT_RELAY_DETACHED)
    {
        return;
    }

    if (relay->phase == NGX_WS_AGENT_RELAY_GATED && relay->frames_held) {
        ngx_log_error(NGX_LOG_INFO, relay->client->log, 0,
                      "ws_agent %V: relay ended while gated, %ui frames "
                      "held are dropped", &ctx->id, relay->frames_held);
    }

    ngx_ws_agent_set_phase(relay, NGX_WS_AGENT_RELAY_DETACHED);

    if (relay->ready_timer.timer_set) {
        ngx_del_timer(&relay->ready_timer);
    }

    ngx_ws_agent_msg_free(ctx);

    ngx_ws_agent_gauge(active, -1);

    ngx_ws_agent_events_stop(ctx, relay->close_code, by[relay->close_by]);

    relay->client->recv = relay->client_recv;
    relay->client->send = relay->client_send;

    /* a closed upstream connection may already serve someone else */
    u = ctx->request->upstream;

    if (u && u->peer.connection == relay->upstream) {
        relay->upstream->recv = relay->upstream_recv;
        relay->upstream->read->handler = relay->upstream_read;
    }
}
