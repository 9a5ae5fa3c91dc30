/*
 * Message typing (see ngx_ws_agent_message.h).
 *
 * Most messages open with their type: {"type":"chat",...  When the first
 * piece says so and the type is one nobody wants, the message is let go
 * without a parser at all (the glance); anything else goes to the typer,
 * which reports the type as soon as it has read it.  A message nobody
 * wants (not the ack, not a published event) is not looked at any further;
 * only an event to publish is copied, up to ws_agent_event_max_size, for
 * its envelope.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent.h"
#include "ngx_ws_agent_message.h"
#include "ngx_ws_agent_events.h"


static ngx_int_t ngx_ws_agent_msg_glance(ngx_ws_agent_ctx_t *ctx,
    const u_char *data, size_t len);
static int ngx_ws_agent_msg_typed(void *data, const unsigned char *type,
    size_t len);
static ngx_int_t ngx_ws_agent_msg_keep(ngx_ws_agent_ctx_t *ctx,
    const u_char *data, size_t len);
static void ngx_ws_agent_msg_stop(ngx_ws_agent_ctx_t *ctx,
    ws_json_result_e rc);


void
ngx_ws_agent_msg_begin(ngx_ws_agent_ctx_t *ctx, ngx_uint_t want_ack)
{
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    /* the typer starts with the first piece, unless a glance is enough */
    m->state = NGX_WS_AGENT_MSG_NEW;
    m->want_ack = want_ack;
    m->event = NULL;
    m->too_big = 0;
    m->len = 0;
}


ngx_int_t
ngx_ws_agent_msg_piece(ngx_ws_agent_ctx_t *ctx, const u_char *data,
    size_t len)
{
    ws_json_result_e     rc;
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    if (m->state == NGX_WS_AGENT_MSG_NEW) {

        if (len == 0) {
            return NGX_OK;
        }

        if (ngx_ws_agent_msg_glance(ctx, data, len) == NGX_OK) {
            m->state = NGX_WS_AGENT_MSG_NONE;
            return NGX_OK;
        }

        ws_json_typer_init(&m->typer, ctx->conf->type_key.data,
                           ctx->conf->type_key.len, m->type, sizeof(m->type),
                           ngx_ws_agent_msg_typed, ctx);

        m->state = NGX_WS_AGENT_MSG_TYPING;
    }

    rc = ws_json_typer_feed(&m->typer, data, len);

    if (rc != WS_JSON_MORE) {
        ngx_ws_agent_msg_stop(ctx, rc);
        return NGX_OK;
    }

    /* the type may be unknown yet: keep the text while it may be an event */
    if (m->state == NGX_WS_AGENT_MSG_ACK || m->too_big
        || !ngx_ws_agent_events_publishing(ctx))
    {
        return NGX_OK;
    }

    return ngx_ws_agent_msg_keep(ctx, data, len);
}


ngx_ws_agent_verdict_e
ngx_ws_agent_msg_end(ngx_ws_agent_ctx_t *ctx)
{
    size_t               len;
    ngx_uint_t           state;
    ws_json_result_e     rc;
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    switch (m->state) {

    case NGX_WS_AGENT_MSG_NONE:
        return NGX_WS_AGENT_NEITHER;

    case NGX_WS_AGENT_MSG_NEW:
        /* an empty text message is not JSON */
        ngx_ws_agent_msg_stop(ctx, WS_JSON_INVALID);
        return NGX_WS_AGENT_NEITHER;

    default:
        break;
    }

    rc = ws_json_typer_finish(&m->typer, &len);
    state = m->state;

    ngx_ws_agent_msg_stop(ctx, rc);

    if (rc != WS_JSON_TYPED) {
        return NGX_WS_AGENT_NEITHER;
    }

    if (state == NGX_WS_AGENT_MSG_ACK) {
        return NGX_WS_AGENT_ACK;
    }

    if (state != NGX_WS_AGENT_MSG_EVENT) {
        return NGX_WS_AGENT_NEITHER;
    }

    if (m->too_big) {
        ngx_ws_agent_events_oversized(ctx);
        return NGX_WS_AGENT_NEITHER;
    }

    ngx_ws_agent_events_publish(ctx, m->event, m->text, m->len);

    return NGX_WS_AGENT_EVENT;
}


void
ngx_ws_agent_msg_free(ngx_ws_agent_ctx_t *ctx)
{
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    m->state = NGX_WS_AGENT_MSG_NONE;

    if (m->text) {
        ngx_free(m->text);
        m->text = NULL;
        m->cap = 0;
    }
}


static ngx_int_t
ngx_ws_agent_msg_glance(ngx_ws_agent_ctx_t *ctx, const u_char *data,
    size_t len)
{
    const u_char        *p, *last, *q;
    ngx_str_t           *key;
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    key = &ctx->conf->type_key;
    p = data;
    last = p + len;

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

    if (q == last || *q != '"' || (size_t) (q - p) > sizeof(m->type)) {
        return NGX_DECLINED;
    }

    if ((m->want_ack
         && (size_t) (q - p) == ctx->conf->ready_type.len
         && ngx_strncmp(p, ctx->conf->ready_type.data, q - p) == 0)
        || ngx_ws_agent_events_find(ctx, p, q - p) != NULL)
    {
        /* wanted: the typer reads it properly, validation included */
        return NGX_DECLINED;
    }

    /* neither the ack nor an event: only counted */
    ngx_ws_agent_events_typed(ctx, NULL);

    return NGX_OK;
}


static int
ngx_ws_agent_msg_typed(void *data, const unsigned char *type, size_t len)
{
    ngx_ws_agent_ctx_t  *ctx = data;
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    if (m->want_ack
        && len == ctx->conf->ready_type.len
        && ngx_memcmp(type, ctx->conf->ready_type.data, len) == 0)
    {
        m->state = NGX_WS_AGENT_MSG_ACK;
        return 1;
    }

    m->event = ngx_ws_agent_events_typed(ctx,
                   ngx_ws_agent_events_find(ctx, (u_char *) type, len));

    if (m->event) {
        m->state = NGX_WS_AGENT_MSG_EVENT;
        return 1;
    }

    return 0;
}


/* the heap, not the request pool: it is given back when the message is */

static ngx_int_t
ngx_ws_agent_msg_keep(ngx_ws_agent_ctx_t *ctx, const u_char *data,
    size_t len)
{
    u_char              *t;
    size_t               cap, limit;
    ngx_ws_agent_msg_t  *m = &ctx->msg;

    limit = ctx->conf->event_max_size;

    if (m->len + len > limit) {
        m->too_big = 1;
        return NGX_OK;
    }

    if (m->len + len > m->cap) {
        cap = m->cap ? m->cap : 1024;

        while (cap < m->len + len) {
            cap *= 2;
        }

        cap = ngx_min(cap, limit);

        t = ngx_alloc(cap, ctx->request->connection->log);
        if (t == NULL) {
            return NGX_ERROR;
        }

        if (m->text) {
            ngx_memcpy(t, m->text, m->len);
            ngx_free(m->text);
        }

        m->text = t;
        m->cap = cap;
    }

    ngx_memcpy(m->text + m->len, data, len);
    m->len += len;

    return NGX_OK;
}


/* a message is done with: why it was not published is counted once */

static void
ngx_ws_agent_msg_stop(ngx_ws_agent_ctx_t *ctx, ws_json_result_e rc)
{
    ctx->msg.state = NGX_WS_AGENT_MSG_NONE;

    if (rc != WS_JSON_TYPED && rc != WS_JSON_DROPPED) {
        ngx_ws_agent_events_rejected(ctx, rc);
    }
}
