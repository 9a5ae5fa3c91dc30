/*
 * The readiness gate (see ngx_ws_agent_gate.h).
 *
 * nginx's upgraded relay reads each side with c->recv and writes the other
 * side with c->send.  The gate wraps:
 *
 *   client recv    client -> backend bytes: validated; while gated they are
 *                  read into the hold buffer instead of nginx's, and after
 *                  the ack they are handed back to nginx, in order, as if
 *                  just read, so nginx's own writer delivers them;
 *   upstream recv  backend -> client bytes: validated, text messages
 *                  typed as they pass (the ack, the events to publish);
 *   client send    only to swallow output once the client has gone while
 *                  gated (its held frames still go to the backend).
 *
 * Frames the module makes (close frames) enter a stream the same way: the
 * recv wrapper of that direction returns them before reading more, and then
 * reports EOF when the module ends the connection, so nginx finishes the
 * relay on its own path.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_ws_agent_gate.h"
#include "ngx_ws_agent_events.h"
#include "ngx_ws_agent_json.h"
#include "ngx_ws_agent_stats.h"


/* whom ngx_ws_agent_fail() may still send a close frame */
#define NGX_WS_AGENT_CLOSE_CLIENT   1
#define NGX_WS_AGENT_CLOSE_BACKEND  2

#define ngx_ws_agent_at(p, side)                                             \
    (ws_frame_at_boundary(p) ? NGX_WS_AGENT_CLOSE_##side : 0)


/* where the typer leaves a message's type for its callback */
static u_char  ngx_ws_agent_type[128];


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

static ssize_t ngx_ws_agent_absorb(ngx_ws_agent_ctx_t *ctx,
    ngx_connection_t *c);
static void ngx_ws_agent_hold_input(ngx_ws_agent_ctx_t *ctx, size_t n);
static ssize_t ngx_ws_agent_c2b_input(ngx_ws_agent_ctx_t *ctx, u_char *buf,
    size_t n);
static void ngx_ws_agent_client_failed(ngx_ws_agent_ctx_t *ctx,
    ws_frame_parser_t *p);
static ssize_t ngx_ws_agent_b2c_input(ngx_ws_agent_ctx_t *ctx, u_char *buf,
    size_t n, ngx_uint_t copy);
static ngx_int_t ngx_ws_agent_b2c_header(ngx_ws_agent_ctx_t *ctx,
    ngx_uint_t copy);
static ngx_int_t ngx_ws_agent_b2c_payload(ngx_ws_agent_ctx_t *ctx,
    ws_frame_chunk_t *ch, ngx_uint_t copy);
static ngx_int_t ngx_ws_agent_b2c_end(ngx_ws_agent_ctx_t *ctx);
static ngx_int_t ngx_ws_agent_msg_start(ngx_ws_agent_ctx_t *ctx);
static ngx_int_t ngx_ws_agent_msg_piece(ngx_ws_agent_ctx_t *ctx,
    ws_frame_chunk_t *ch);
static ngx_uint_t ngx_ws_agent_msg_end(ngx_ws_agent_ctx_t *ctx);
static void ngx_ws_agent_msg_stop(ngx_ws_agent_ctx_t *ctx,
    ws_json_result_e rc);
static int ngx_ws_agent_msg_typed(void *data, const unsigned char *type,
    size_t len);
static ngx_int_t ngx_ws_agent_msg_glance(ngx_ws_agent_ctx_t *ctx,
    ws_frame_chunk_t *ch);
static void ngx_ws_agent_open(ngx_ws_agent_ctx_t *ctx);
static void ngx_ws_agent_fail(ngx_ws_agent_ctx_t *ctx, ngx_uint_t code,
    const char *reason, ngx_uint_t close);
static ngx_int_t ngx_ws_agent_queue_close(ngx_ws_agent_ctx_t *ctx,
    ngx_uint_t to_backend, ngx_uint_t code, const char *reason);
static ngx_buf_t *ngx_ws_agent_out(ngx_ws_agent_ctx_t *ctx, ngx_buf_t **bp,
    size_t size);
static ngx_int_t ngx_ws_agent_append(ngx_buf_t *b, const u_char *p,
    size_t len);
static size_t ngx_ws_agent_drain(ngx_buf_t *b, u_char *buf, size_t size);
static void ngx_ws_agent_note_close(ngx_ws_agent_ctx_t *ctx,
    ws_frame_parser_t *p, ws_frame_chunk_t *ch);
static void ngx_ws_agent_kick(ngx_connection_t *c);
static void ngx_ws_agent_ready_timeout(ngx_event_t *ev);


ngx_int_t
ngx_ws_agent_gate_attach(ngx_http_request_t *r, ngx_ws_agent_ctx_t *ctx)
{
    size_t                 n, len;
    ssize_t                kept;
    ngx_buf_t             *hin;
    ngx_connection_t      *c, *uc;
    ngx_http_upstream_t   *u;

    u = r->upstream;
    c = r->connection;
    uc = u->peer.connection;

    ctx->client = c;
    ctx->upstream = uc;
    ctx->client_recv = c->recv;
    ctx->client_send = c->send;
    ctx->upstream_recv = uc->recv;

    ws_frame_parser_init(&ctx->c2b, 1, ctx->conf->max_frame_size);
    ws_frame_parser_init(&ctx->b2c, 0, ctx->conf->max_frame_size);

    ctx->attached = 1;
    ctx->gated = 1;
    ctx->start = ngx_current_msec;

    ngx_ws_agent_count(NGX_WS_AGENT_CONNECTIONS, 1);
    ngx_ws_agent_gauge(active, 1);
    ngx_ws_agent_gauge(gated, 1);

    ngx_ws_agent_events_start(ctx);

    ctx->ready_timer.handler = ngx_ws_agent_ready_timeout;
    ctx->ready_timer.data = ctx;
    ctx->ready_timer.log = c->log;
    ngx_add_timer(&ctx->ready_timer, ctx->conf->ready_timeout);

    c->recv = ngx_ws_agent_client_recv;
    c->send = ngx_ws_agent_client_send;
    uc->recv = ngx_ws_agent_upstream_recv;

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

        ctx->hold = ngx_create_temp_buf(r->pool, n);
        if (ctx->hold == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ctx->hold->last, hin->pos, len);
        hin->pos = hin->last;

        ngx_ws_agent_hold_input(ctx, len);
    }

    /* backend bytes read with the 101: the ack may be among them */

    len = u->buffer.last - u->buffer.pos;

    if (len) {
        kept = ngx_ws_agent_b2c_input(ctx, u->buffer.pos, len,
                                      ctx->gated
                                      && !ctx->conf->ready_forward);
        if (kept == NGX_ERROR) {
            return NGX_ERROR;
        }

        u->buffer.last = u->buffer.pos + kept;

        if (ctx->b2c_out || ctx->b2c_eof) {
            uc->read->ready = 1;
        }
    }

    return NGX_OK;
}


/* client -> backend */

static ssize_t
ngx_ws_agent_client_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    ssize_t               n;
    ngx_uint_t            i;
    ngx_buf_t            *hold;
    ngx_http_request_t   *r;
    ngx_ws_agent_ctx_t   *ctx;

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);

    if (r->upstream == NULL || r->upstream->peer.connection == NULL) {
        /* the relay is over (lingering close) */
        return ctx->client_recv(c, buf, size);
    }

    hold = ctx->hold;

    if (hold && !ctx->gated && !ctx->failed) {
        n = ngx_min((size_t) (hold->last - hold->pos), size);
        ngx_memcpy(buf, hold->pos, n);
        hold->pos += n;

        if (hold->pos == hold->last) {
            ngx_pfree(r->pool, hold->start);
            ctx->hold = NULL;
        }

        c->read->ready = 1;

        if (n) {
            return n;
        }
    }

    if (ctx->c2b_out && ctx->c2b_out->pos < ctx->c2b_out->last) {
        c->read->ready = 1;
        n = ngx_ws_agent_drain(ctx->c2b_out, buf, size);

        if (ctx->b2c_eof && ctx->c2b_out->pos == ctx->c2b_out->last) {
            /* nginx writes it upstream before it reads again */
            ngx_ws_agent_kick(ctx->upstream);
        }

        return n;
    }

    if (ctx->c2b_eof) {
        c->read->ready = 0;
        c->read->eof = 1;
        return 0;
    }

    if (ctx->failed || ctx->client_gone || ctx->client_failed) {
        c->read->ready = 0;
        return NGX_AGAIN;
    }

    if (ctx->gated) {
        return ngx_ws_agent_absorb(ctx, c);
    }

    /* bytes after the client's close frame are read and dropped */
    for (i = 0; i < NGX_WS_AGENT_DROP_READS; i++) {
        n = ctx->client_recv(c, buf, size);

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
    size_t      room;
    ssize_t     n;
    ngx_buf_t  *hold;

    if (ctx->hold == NULL) {
        ctx->hold = ngx_create_temp_buf(ctx->request->pool,
                                        ctx->conf->gate_buffer);
        if (ctx->hold == NULL) {
            return NGX_ERROR;
        }
    }

    hold = ctx->hold;

    for ( ;; ) {

        room = hold->end - hold->last;

        if (room == 0) {
            if (!ctx->paused) {
                ctx->paused = 1;
                ngx_ws_agent_count(NGX_WS_AGENT_BACKPRESSURE, 1);
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "ws_agent %V: gate buffer full, client paused",
                           &ctx->id);
            return NGX_AGAIN;
        }

        n = ctx->client_recv(c, hold->last, room);

        if (n == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (n == 0 || n == NGX_ERROR) {
            c->read->eof = 0;
            c->read->error = 0;
            c->read->ready = 0;
            ctx->client_gone = 1;

            /* only whole frames are owed to the backend */
            hold->last = hold->start + ctx->hold_complete;

            ngx_ws_agent_count(NGX_WS_AGENT_CLIENT_LEFT_WHILE_GATED, 1);

            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "ws_agent %V: client left while gated, "
                          "%ui frames held for the backend",
                          &ctx->id, ctx->frames_held);
            return NGX_AGAIN;
        }

        ngx_ws_agent_hold_input(ctx, n);

        if (ctx->failed || ctx->client_failed) {
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
    ssize_t     kept;
    ngx_buf_t  *hold;

    hold = ctx->hold;
    kept = ngx_ws_agent_c2b_input(ctx, hold->last, n);

    if (ctx->client_failed) {
        hold->last = hold->start + ctx->hold_complete;
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
    ngx_uint_t          at_frame;
    ws_frame_chunk_t    ch;
    ws_frame_parser_t  *p;
    const u_char       *pos, *last, *mark;

    if (ctx->c2b_drop) {
        return 0;
    }

    p = &ctx->c2b;
    pos = buf;
    last = buf + n;

    for ( ;; ) {

        at_frame = ws_frame_at_boundary(p);
        mark = pos;

        switch (ws_frame_parse(p, &pos, last, &ch)) {

        case WS_FRAME_AGAIN:
            return n;

        case WS_FRAME_HEADER:
            if (ctx->client_closed) {
                /* RFC 6455 5.5.1: nothing may follow a close frame */
                ngx_log_error(NGX_LOG_INFO, ctx->client->log, 0,
                              "ws_agent %V: client sent frames after its "
                              "close frame; they are dropped", &ctx->id);
                ctx->c2b_drop = 1;

                return mark - buf;
            }

            if (p->opcode == WS_OP_CLOSE) {
                ctx->client_close = 1;
            }

            break;

        case WS_FRAME_PAYLOAD:
            if (p->opcode == WS_OP_CLOSE) {
                ngx_ws_agent_note_close(ctx, p, &ch);
            }

            break;

        case WS_FRAME_END:
            if (p->opcode == WS_OP_CLOSE) {
                ctx->client_closed = 1;
            }

            if (ctx->gated && ctx->hold) {
                /* buf is always appended at hold->last */
                ctx->frames_held++;
                ngx_ws_agent_count(NGX_WS_AGENT_FRAMES_HELD, 1);
                ctx->hold_complete = (ctx->hold->last - ctx->hold->start)
                                     + (pos - buf);
            }

            break;

        default: /* WS_FRAME_ERROR */
            ngx_ws_agent_count(NGX_WS_AGENT_PROTOCOL_ERRORS_CLIENT, 1);

            if (ctx->gated) {
                ngx_ws_agent_client_failed(ctx, p);
                return NGX_AGAIN;
            }

            ngx_log_error(NGX_LOG_ERR, ctx->client->log, 0,
                          "ws_agent %V: client protocol error: %s, "
                          "closing with %ui",
                          &ctx->id, p->reason, (ngx_uint_t) p->error);

            ngx_ws_agent_fail(ctx, p->error, p->reason,
                              ngx_ws_agent_at(&ctx->b2c, CLIENT)
                              | (at_frame ? NGX_WS_AGENT_CLOSE_BACKEND : 0));

            n = at_frame ? (size_t) (pos - buf) : 0;

            if (n == 0) {
                return NGX_AGAIN;
            }

            return n;
        }
    }
}


/*
 * A client that breaks the protocol while gated is told so at once; the
 * whole frames it sent before are still owed to the backend, which gets
 * them, then the same close code, once it is ready.  Until then nothing
 * more of the backend's reaches the client.
 */

static void
ngx_ws_agent_client_failed(ngx_ws_agent_ctx_t *ctx, ws_frame_parser_t *p)
{
    ngx_log_error(NGX_LOG_ERR, ctx->client->log, 0,
                  "ws_agent %V: client protocol error: %s, closing with "
                  "%ui; %ui frames held go to the backend once it is ready",
                  &ctx->id, p->reason, (ngx_uint_t) p->error,
                  ctx->frames_held);

    ctx->client_failed = 1;
    ctx->c2b_fail_code = p->error;
    ctx->close_code = p->error;
    ctx->close_by = NGX_WS_AGENT_BY_MODULE;

    ngx_ws_agent_count(p->error == WS_CLOSE_TOO_BIG ? NGX_WS_AGENT_SENT_1009
                                                    : NGX_WS_AGENT_SENT_1002,
                       1);

    if (ws_frame_at_boundary(&ctx->b2c) && !ctx->client_gone) {
        if (ctx->withholding && ctx->withheld) {
            (void) ngx_ws_agent_append(ctx->b2c_out, ctx->withheld->pos,
                                       ctx->withheld->last
                                       - ctx->withheld->pos);
            ctx->withholding = 0;
        }

        (void) ngx_ws_agent_queue_close(ctx, 0, p->error, p->reason);
    }

    ctx->b2c_drop = 1;
    ngx_ws_agent_kick(ctx->upstream);
}


static ssize_t
ngx_ws_agent_client_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    ngx_http_request_t  *r;
    ngx_ws_agent_ctx_t  *ctx;

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);

    if (ctx->client_gone
        && r->upstream && r->upstream->peer.connection)
    {
        return size;
    }

    return ctx->client_send(c, buf, size);
}


/* backend -> client */

static ssize_t
ngx_ws_agent_upstream_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    ssize_t               n;
    ngx_uint_t            copy, drop;
    ngx_http_request_t   *r;
    ngx_http_upstream_t  *u;
    ngx_ws_agent_ctx_t   *ctx;

    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);

    for ( ;; ) {

        if (ctx->b2c_out && ctx->b2c_out->pos < ctx->b2c_out->last) {
            c->read->ready = 1;
            n = ngx_ws_agent_drain(ctx->b2c_out, buf, size);

            if (ctx->b2c_out->pos == ctx->b2c_out->last && !ctx->gated
                && !ctx->failed)
            {
                /* the candidate-ack buffer is not needed after the gate */
                ngx_pfree(r->pool, ctx->b2c_out->start);
                ctx->b2c_out = NULL;
            }

            return n;
        }

        if (ctx->b2c_eof) {
            u = r->upstream;

            if ((ctx->c2b_out && ctx->c2b_out->pos < ctx->c2b_out->last)
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
        copy = ctx->gated && !ctx->conf->ready_forward && !ctx->b2c_drop;

        n = ctx->upstream_recv(c, buf,
                               copy ? ngx_min(size, NGX_WS_AGENT_ACK_MAX)
                                    : size);

        if (n == NGX_AGAIN) {
            return n;
        }

        if (n == 0 || n == NGX_ERROR) {

            if (!ctx->gated || ctx->failed || ctx->backend_close) {
                return n;
            }

            c->read->eof = 0;
            c->read->error = 0;

            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "ws_agent %V: backend %s before it was ready "
                          "(%M ms after the upgrade), closing with 1014",
                          &ctx->id, n == 0 ? "closed" : "failed",
                          ngx_current_msec - ctx->start);

            ngx_ws_agent_count(NGX_WS_AGENT_BACKEND_FAILED_BEFORE_READY, 1);

            ngx_ws_agent_fail(ctx, WS_CLOSE_BAD_GATEWAY,
                              "backend closed before ready",
                              ngx_ws_agent_at(&ctx->b2c, CLIENT));
            continue;
        }

        drop = ctx->b2c_drop;
        n = ngx_ws_agent_b2c_input(ctx, buf, n, copy);

        if (n > 0 && drop) {
            /* the client got its close frame already: only looked at */
            n = 0;
        }

        if (n > 0) {
            if (ctx->b2c_out || ctx->b2c_eof) {
                c->read->ready = 1;
            }

            return n;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if ((ctx->b2c_out && ctx->b2c_out->pos < ctx->b2c_out->last)
            || ctx->b2c_eof)
        {
            continue;
        }

        if (!c->read->ready) {
            return NGX_AGAIN;
        }
    }
}


/*
 * Backend bytes [buf, buf + n).  Without copy they stay where they are and
 * the return value says how many go on.  With copy (gated, ack not to be
 * forwarded) every frame is rebuilt into b2c_out or, for a text message
 * that may be the ack, into the withheld buffer, and 0 is returned.
 */

static ssize_t
ngx_ws_agent_b2c_input(ngx_ws_agent_ctx_t *ctx, u_char *buf, size_t n,
    ngx_uint_t copy)
{
    ngx_uint_t          at_frame;
    ws_frame_chunk_t    ch;
    ws_frame_parser_t  *p;
    const u_char       *pos, *last, *mark;

    p = &ctx->b2c;
    pos = buf;
    last = buf + n;

    if (copy && ngx_ws_agent_out(ctx, &ctx->b2c_out, NGX_WS_AGENT_B2C_OUT)
                == NULL)
    {
        return NGX_ERROR;
    }

    for ( ;; ) {

        at_frame = ws_frame_at_boundary(p);
        mark = pos;

        switch (ws_frame_parse(p, &pos, last, &ch)) {

        case WS_FRAME_AGAIN:
            return copy ? 0 : (ssize_t) n;

        case WS_FRAME_HEADER:
            if (ctx->backend_closed) {
                /* RFC 6455 5.5.1: nothing may follow a close frame */
                ngx_log_error(NGX_LOG_INFO, ctx->client->log, 0,
                              "ws_agent %V: backend sent frames after its "
                              "close frame; they are dropped", &ctx->id);
                ctx->b2c_drop = 1;

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
            ngx_log_error(NGX_LOG_ERR, ctx->client->log, 0,
                          "ws_agent %V: backend protocol error: %s, "
                          "closing the client with %ui",
                          &ctx->id, p->reason, (ngx_uint_t) p->error);

            ngx_ws_agent_count(NGX_WS_AGENT_PROTOCOL_ERRORS_BACKEND, 1);

            ngx_ws_agent_fail(ctx, p->error, "backend protocol error",
                              (at_frame ? NGX_WS_AGENT_CLOSE_CLIENT : 0)
                              | ngx_ws_agent_at(&ctx->c2b, BACKEND));

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
    ngx_buf_t          *dst;
    ws_frame_parser_t  *p;

    p = &ctx->b2c;

    if (p->opcode == WS_OP_CLOSE) {
        ctx->backend_close = 1;
    }

    if (p->opcode == WS_OP_TEXT) {
        ctx->withholding = copy;

        if ((ctx->gated || ctx->inspect)
            && ngx_ws_agent_msg_start(ctx) != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (p->opcode == WS_OP_BINARY) {
        ctx->withholding = 0;
    }

    if (!copy) {
        return NGX_OK;
    }

    /* the frame's own header bytes, from the parser's copy */

    dst = ctx->b2c_out;

    if (ctx->withholding && !ws_frame_is_control(p)) {

        if (ngx_ws_agent_out(ctx, &ctx->withheld, NGX_WS_AGENT_WITHHELD_MAX)
            == NULL)
        {
            return NGX_ERROR;
        }

        if ((size_t) (ctx->withheld->end - ctx->withheld->last)
            >= p->hlen + p->len)
        {
            dst = ctx->withheld;

        } else {
            /* too big to be the ack: let it all go */
            if (ngx_ws_agent_append(ctx->b2c_out, ctx->withheld->pos,
                                    ctx->withheld->last - ctx->withheld->pos)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            ctx->withheld->pos = ctx->withheld->start;
            ctx->withheld->last = ctx->withheld->start;
            ctx->withholding = 0;
        }
    }

    return ngx_ws_agent_append(dst, p->hdr, p->hlen);
}


static ngx_int_t
ngx_ws_agent_b2c_payload(ngx_ws_agent_ctx_t *ctx, ws_frame_chunk_t *ch,
    ngx_uint_t copy)
{
    ngx_buf_t          *dst;
    ws_frame_parser_t  *p;

    p = &ctx->b2c;

    if (p->opcode == WS_OP_CLOSE) {
        ngx_ws_agent_note_close(ctx, p, ch);

    } else if (ctx->msg_state && !ws_frame_is_control(p)) {
        if (ngx_ws_agent_msg_piece(ctx, ch) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (!copy) {
        return NGX_OK;
    }

    dst = (ctx->withholding && !ws_frame_is_control(p)) ? ctx->withheld
                                                         : ctx->b2c_out;

    return ngx_ws_agent_append(dst, ch->data, ch->len);
}


static ngx_int_t
ngx_ws_agent_b2c_end(ngx_ws_agent_ctx_t *ctx)
{
    ngx_uint_t          ack;
    ngx_buf_t          *w;
    ws_frame_parser_t  *p;

    p = &ctx->b2c;

    if (p->opcode == WS_OP_CLOSE) {
        ctx->backend_closed = 1;
    }

    if (ws_frame_is_control(p) || !p->fin
        || ws_frame_message_opcode(p) != WS_OP_TEXT)
    {
        return NGX_OK;
    }

    ack = ctx->msg_state ? ngx_ws_agent_msg_end(ctx) : 0;

    w = ctx->withheld;

    if (ctx->withholding && w) {
        /* not the ack: the message goes on to the client after all */
        if (!ack && ngx_ws_agent_append(ctx->b2c_out, w->pos,
                                        w->last - w->pos)
                    != NGX_OK)
        {
            return NGX_ERROR;
        }

        w->pos = w->start;
        w->last = w->start;
    }

    ctx->withholding = 0;

    if (ack) {
        ngx_ws_agent_open(ctx);
    }

    return NGX_OK;
}


/*
 * A backend text message is typed as it passes, piece by piece, without a
 * copy: the typer reports the type as soon as it has read it, and a message
 * nobody wants (not the ack, not a published event) is not looked at any
 * further.  Only an event to publish is copied, up to
 * ws_agent_event_max_size, for its envelope.
 */

static ngx_int_t
ngx_ws_agent_msg_start(ngx_ws_agent_ctx_t *ctx)
{
    /* the typer starts with the first piece, unless a glance is enough */
    ctx->msg_state = NGX_WS_AGENT_MSG_NEW;
    ctx->msg_event = NULL;
    ctx->msg_big = 0;
    ctx->msg_len = 0;

    return NGX_OK;
}


/*
 * Most messages open with their type: {"type":"chat",...  When the first
 * piece says so and the type is one nobody wants, the message is let go
 * without a parser at all; anything else goes to the typer.
 */

static ngx_int_t
ngx_ws_agent_msg_glance(ngx_ws_agent_ctx_t *ctx, ws_frame_chunk_t *ch)
{
    u_char     *p, *last, *q;
    ngx_str_t  *key;

    key = &ctx->conf->type_key;
    p = (u_char *) ch->data;
    last = p + ch->len;

    if ((size_t) (last - p) < key->len + 6
        || p[0] != '{' || p[1] != '"'
        || ngx_strncmp(p + 2, key->data, key->len) != 0
        || p[2 + key->len] != '"' || p[3 + key->len] != ':'
        || p[4 + key->len] != '"')
    {
        return NGX_DECLINED;
    }

    p += 5 + key->len;
    q = p + ws_json_plain(p, last);

    if (q == last || *q != '"' || (size_t) (q - p) > sizeof(ngx_ws_agent_type))
    {
        return NGX_DECLINED;
    }

    if ((ctx->gated
         && (size_t) (q - p) == ctx->conf->ready_type.len
         && ngx_strncmp(p, ctx->conf->ready_type.data, q - p) == 0)
        || (ctx->inspect
            && ngx_ws_agent_events_find(ctx, p, q - p) != NULL))
    {
        /* wanted: the typer reads it properly, validation included */
        return NGX_DECLINED;
    }

    /* neither the ack nor an event: only counted */
    if (ctx->inspect) {
        (void) ngx_ws_agent_events_wanted(ctx, NULL);
    }

    return NGX_OK;
}


static int
ngx_ws_agent_msg_typed(void *data, const unsigned char *type, size_t len)
{
    ngx_ws_agent_ctx_t  *ctx = data;

    if (ctx->gated
        && len == ctx->conf->ready_type.len
        && ngx_memcmp(type, ctx->conf->ready_type.data, len) == 0)
    {
        ctx->msg_state = NGX_WS_AGENT_MSG_ACK;
        return 1;
    }

    if (ctx->inspect) {
        ctx->msg_event = ngx_ws_agent_events_wanted(ctx,
                             ngx_ws_agent_events_find(ctx, (u_char *) type,
                                                      len));
        if (ctx->msg_event) {
            ctx->msg_state = NGX_WS_AGENT_MSG_EVENT;
            return 1;
        }
    }

    return 0;
}


static ngx_int_t
ngx_ws_agent_msg_piece(ngx_ws_agent_ctx_t *ctx, ws_frame_chunk_t *ch)
{
    u_char            *m;
    size_t             cap, limit;
    ws_json_result_e   rc;

    if (ctx->msg_state == NGX_WS_AGENT_MSG_NEW) {

        if (ch->len == 0) {
            return NGX_OK;
        }

        if (ngx_ws_agent_msg_glance(ctx, ch) == NGX_OK) {
            ctx->msg_state = NGX_WS_AGENT_MSG_NONE;
            return NGX_OK;
        }

        ws_json_typer_init(&ctx->typer, ctx->conf->type_key.data,
                           ctx->conf->type_key.len, ngx_ws_agent_type,
                           sizeof(ngx_ws_agent_type), ngx_ws_agent_msg_typed,
                           ctx);

        ctx->msg_state = NGX_WS_AGENT_MSG_TYPING;
    }

    rc = ws_json_typer_feed(&ctx->typer, ch->data, ch->len);

    if (rc != WS_JSON_MORE) {
        ngx_ws_agent_msg_stop(ctx, rc);
        return NGX_OK;
    }

    /* the type may be unknown yet: keep the text while it may be an event */
    if (!ctx->publishing || ctx->msg_state == NGX_WS_AGENT_MSG_ACK
        || ctx->msg_big)
    {
        return NGX_OK;
    }

    limit = ctx->conf->event_max_size;

    if (ctx->msg_len + ch->len > limit) {
        ctx->msg_big = 1;
        return NGX_OK;
    }

    if (ctx->msg_len + ch->len > ctx->msg_cap) {
        cap = ctx->msg_cap ? ctx->msg_cap : 1024;

        while (cap < ctx->msg_len + ch->len) {
            cap *= 2;
        }

        cap = ngx_min(cap, limit);

        /* the heap, not the request pool: it is given back when done */
        m = ngx_alloc(cap, ctx->client->log);
        if (m == NULL) {
            return NGX_ERROR;
        }

        if (ctx->msg) {
            ngx_memcpy(m, ctx->msg, ctx->msg_len);
            ngx_free(ctx->msg);
        }

        ctx->msg = m;
        ctx->msg_cap = cap;
    }

    ngx_memcpy(ctx->msg + ctx->msg_len, ch->data, ch->len);
    ctx->msg_len += ch->len;

    return NGX_OK;
}


/* the end of a typed message; returns 1 for the ack */

static ngx_uint_t
ngx_ws_agent_msg_end(ngx_ws_agent_ctx_t *ctx)
{
    size_t             len;
    ngx_uint_t         state;
    ws_json_result_e   rc;

    if (ctx->msg_state == NGX_WS_AGENT_MSG_NEW) {
        /* an empty text message is not JSON */
        ctx->msg_state = NGX_WS_AGENT_MSG_NONE;

        if (ctx->inspect) {
            ngx_ws_agent_events_rejected(ctx, WS_JSON_INVALID);
        }

        return 0;
    }

    rc = ws_json_typer_finish(&ctx->typer, &len);
    state = ctx->msg_state;

    ngx_ws_agent_msg_stop(ctx, rc);

    if (rc != WS_JSON_TYPED) {
        return 0;
    }

    if (state == NGX_WS_AGENT_MSG_ACK) {
        return 1;
    }

    if (state == NGX_WS_AGENT_MSG_EVENT) {
        if (ctx->msg_big) {
            ngx_ws_agent_events_oversized(ctx);

        } else {
            ngx_ws_agent_events_publish(ctx, ctx->msg_event, ctx->msg,
                                        ctx->msg_len);
        }
    }

    return 0;
}


/* a message is done with: why it was not published is counted once */

static void
ngx_ws_agent_msg_stop(ngx_ws_agent_ctx_t *ctx, ws_json_result_e rc)
{
    ctx->msg_state = NGX_WS_AGENT_MSG_NONE;

    if (ctx->inspect && rc != WS_JSON_TYPED && rc != WS_JSON_DROPPED) {
        ngx_ws_agent_events_rejected(ctx, rc);
    }
}


/* the ack: held frames go first, in order, then live traffic */

static void
ngx_ws_agent_open(ngx_ws_agent_ctx_t *ctx)
{
    u_char  event[sizeof("{\"ready_ms\":}") + NGX_INT_T_LEN];

    ctx->gated = 0;
    ctx->ready = 1;
    ctx->ready_ms = ngx_current_msec - ctx->start;

    if (ctx->ready_timer.timer_set) {
        ngx_del_timer(&ctx->ready_timer);
    }

    if (ctx->withheld) {
        ngx_pfree(ctx->request->pool, ctx->withheld->start);
        ctx->withheld = NULL;
    }


    ngx_log_error(NGX_LOG_INFO, ctx->client->log, 0,
                  "ws_agent %V: backend ready after %M ms, "
                  "%ui frames held",
                  &ctx->id, ctx->ready_ms, ctx->frames_held);

    ngx_ws_agent_count(NGX_WS_AGENT_ACKS, 1);
    ngx_ws_agent_stats_ready(ctx->ready_ms);
    ngx_ws_agent_gauge(gated, -1);

    *ngx_sprintf(event, "{\"ready_ms\":%M}", ctx->ready_ms) = '\0';
    ngx_ws_agent_events_lifecycle(ctx, "ws_ready", (char *) event);

    if (ctx->client_failed && !ctx->client_close) {
        (void) ngx_ws_agent_queue_close(ctx, 1, ctx->c2b_fail_code,
                                        "client protocol error");
        ctx->c2b_eof = 1;

    } else if (ctx->client_gone || ctx->client_failed) {
        /* the backend gets every whole frame, then the client's goodbye */
        if (!ctx->client_close) {
            ngx_ws_agent_count(NGX_WS_AGENT_SENT_1001, 1);
            (void) ngx_ws_agent_queue_close(ctx, 1, WS_CLOSE_GOING_AWAY,
                                            "client went away");
        }

        ctx->c2b_eof = 1;
    }

    if (ctx->hold || ctx->c2b_out || ctx->c2b_eof) {
        ngx_ws_agent_kick(ctx->client);
    }
}


/*
 * The one way the module ends a connection: a close frame to the client
 * (and to the backend once it has been let in), then EOF to nginx.  A close
 * frame goes only where the stream stands between frames (close): where a
 * frame is half out, the peer gets the TCP close alone.
 */

static void
ngx_ws_agent_fail(ngx_ws_agent_ctx_t *ctx, ngx_uint_t code,
    const char *reason, ngx_uint_t close)
{
    if (ctx->failed) {
        return;
    }

    ctx->failed = 1;
    ctx->close_code = code;
    ctx->close_by = NGX_WS_AGENT_BY_MODULE;

    if (ctx->gated) {
        ngx_ws_agent_gauge(gated, -1);
        ngx_ws_agent_count(NGX_WS_AGENT_FRAMES_DROPPED, ctx->frames_held);
    }

    switch (code) {
    case WS_CLOSE_PROTOCOL:
        ngx_ws_agent_count(NGX_WS_AGENT_SENT_1002, 1);
        break;
    case WS_CLOSE_TOO_BIG:
        ngx_ws_agent_count(NGX_WS_AGENT_SENT_1009, 1);
        break;
    case WS_CLOSE_TRY_AGAIN:
        ngx_ws_agent_count(NGX_WS_AGENT_SENT_1013, 1);
        break;
    default: /* WS_CLOSE_BAD_GATEWAY */
        ngx_ws_agent_count(NGX_WS_AGENT_SENT_1014, 1);
        break;
    }

    if (ctx->ready_timer.timer_set) {
        ngx_del_timer(&ctx->ready_timer);
    }

    if ((close & NGX_WS_AGENT_CLOSE_CLIENT) && !ctx->client_gone
        && !ctx->b2c_drop)
    {
        if (ctx->withholding && ctx->withheld) {
            (void) ngx_ws_agent_append(ctx->b2c_out, ctx->withheld->pos,
                                       ctx->withheld->last
                                       - ctx->withheld->pos);
            ctx->withholding = 0;
        }

        (void) ngx_ws_agent_queue_close(ctx, 0, code, reason);
    }

    ctx->b2c_eof = 1;

    if ((close & NGX_WS_AGENT_CLOSE_BACKEND) && !ctx->gated) {
        (void) ngx_ws_agent_queue_close(ctx, 1, code, reason);
        ngx_ws_agent_kick(ctx->client);
    }

    ngx_ws_agent_kick(ctx->upstream);
}


static ngx_int_t
ngx_ws_agent_queue_close(ngx_ws_agent_ctx_t *ctx, ngx_uint_t to_backend,
    ngx_uint_t code, const char *reason)
{
    u_char      frame[NGX_WS_AGENT_CLOSE_MAX];
    size_t      len;
    ngx_buf_t  *b;
    u_char      mask[4];

    if (to_backend) {
        /* frames toward the backend are masked with a fresh key */
        if (RAND_bytes(mask, sizeof(mask)) != 1) {
            ngx_memzero(mask, sizeof(mask));
        }

        b = ngx_ws_agent_out(ctx, &ctx->c2b_out, NGX_WS_AGENT_CLOSE_MAX);

    } else {
        b = ngx_ws_agent_out(ctx, &ctx->b2c_out, NGX_WS_AGENT_CLOSE_MAX);
    }

    if (b == NULL) {
        return NGX_ERROR;
    }

    len = ws_frame_write_close(frame, code, reason, ngx_strlen(reason),
                               to_backend ? mask : NULL);

    return ngx_ws_agent_append(b, frame, len);
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
ngx_ws_agent_note_close(ngx_ws_agent_ctx_t *ctx, ws_frame_parser_t *p,
    ws_frame_chunk_t *ch)
{
    u_char  code[2];

    if (ctx->close_code || ch->offset != 0 || ch->len < 2) {
        return;
    }

    ws_frame_unmask(code, ch->data, 2, p->mask, 0);
    ctx->close_code = (code[0] << 8) | code[1];
    ctx->close_by = p->from_client ? NGX_WS_AGENT_BY_CLIENT
                                   : NGX_WS_AGENT_BY_BACKEND;
}


static void
ngx_ws_agent_kick(ngx_connection_t *c)
{
    c->read->ready = 1;
    ngx_post_event(c->read, &ngx_posted_events);
}


static void
ngx_ws_agent_ready_timeout(ngx_event_t *ev)
{
    ngx_ws_agent_ctx_t  *ctx = ev->data;

    u_char  event[sizeof("{\"waited_ms\":}") + NGX_INT_T_LEN];

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "ws_agent %V: backend not ready after %M ms, "
                  "closing with 1013; %ui frames (%uz bytes) held "
                  "are dropped",
                  &ctx->id, ngx_current_msec - ctx->start, ctx->frames_held,
                  ctx->hold ? (size_t) (ctx->hold->last - ctx->hold->pos)
                            : 0);

    ngx_ws_agent_count(NGX_WS_AGENT_READY_TIMEOUTS, 1);

    *ngx_sprintf(event, "{\"waited_ms\":%M}",
                 ngx_current_msec - ctx->start) = '\0';
    ngx_ws_agent_events_lifecycle(ctx, "ws_ready_timeout", (char *) event);

    ngx_ws_agent_fail(ctx, WS_CLOSE_TRY_AGAIN, "backend not ready",
                      ngx_ws_agent_at(&ctx->b2c, CLIENT));
}


void
ngx_ws_agent_gate_detach(ngx_ws_agent_ctx_t *ctx)
{
    ngx_http_upstream_t  *u;
    u_char                event[sizeof("{\"code\":,\"by\":\"backend\"}")
                                + NGX_INT_T_LEN];
    static const char    *by[] = { "network", "client", "backend", "module" };

    if (ctx->ready_timer.timer_set) {
        ngx_del_timer(&ctx->ready_timer);
    }

    if (ctx->gated && !ctx->failed) {
        ngx_ws_agent_gauge(gated, -1);
    }

    ctx->msg_state = NGX_WS_AGENT_MSG_NONE;

    if (ctx->msg) {
        ngx_free(ctx->msg);
        ctx->msg = NULL;
    }

    ngx_ws_agent_gauge(active, -1);

    *ngx_sprintf(event, "{\"code\":%ui,\"by\":\"%s\"}", ctx->close_code,
                 by[ctx->close_by]) = '\0';
    ngx_ws_agent_events_lifecycle(ctx, "ws_close", (char *) event);

    ctx->client->recv = ctx->client_recv;
    ctx->client->send = ctx->client_send;

    /* a closed upstream connection may already serve someone else */
    u = ctx->request->upstream;

    if (u && u->peer.connection == ctx->upstream) {
        ctx->upstream->recv = ctx->upstream_recv;
    }
}
