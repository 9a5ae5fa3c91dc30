/*
 * Agent events (see ngx_ws_agent_events.h).  The part of the envelope that
 * names the connection is generated with yajl once per connection; per
 * event only the sequence number, the time and the (configured, escaped)
 * type are written before the event's own text.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent.h"
#include "ngx_ws_agent_events.h"
#include "ngx_ws_agent_redis.h"
#include "ngx_ws_agent_stats.h"


#define NGX_WS_AGENT_HEAD_LEN                                                \
    (sizeof("\"seq\":,\"ts_ms\":,\"type\":\"\",\"event\":") - 1              \
     + 2 * NGX_INT64_LEN)


static void ngx_ws_agent_events_send(ngx_ws_agent_ctx_t *ctx,
    u_char *type, size_t type_len, u_char *event, size_t event_len);


void
ngx_ws_agent_events_start(ngx_ws_agent_ctx_t *ctx)
{
    size_t                    len;
    ngx_str_t                 channel;
    ngx_http_request_t       *r;
    ngx_ws_agent_events_t    *ev;
    ngx_ws_agent_loc_conf_t  *wlcf;

    wlcf = ctx->conf;
    r = ctx->request;
    ev = &ctx->events;

    if (wlcf->publish == NULL) {
        ev->state = NGX_WS_AGENT_PUBLISH_OFF;
        return;
    }

    ev->state = NGX_WS_AGENT_PUBLISH_UNROUTED;

    if (ngx_http_complex_value(r, &wlcf->publish->value, &channel)
        != NGX_OK)
    {
        return;
    }

    /* never a shared channel by accident: no user, no publishing */
    if (channel.len == 0
        || (ctx->user.len == 0 && wlcf->publish->names_user))
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ws_agent %V: ws_agent_user is empty, so channel "
                      "\"%V\" names nobody; this connection's events are "
                      "not published", &ctx->id, &wlcf->publish->value.value);
        return;
    }

    len = ws_json_envelope_prefix(NULL, 0, ctx->id.data, ctx->id.len,
                                  ctx->user.data, ctx->user.len);
    if (len == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ws_agent %V: cannot build the envelope", &ctx->id);
        return;
    }

    /* the heap: the request pool is full by now (see the context) */
    ev->envelope.data = ngx_alloc(len, r->connection->log);
    if (ev->envelope.data == NULL) {
        return;
    }

    ev->envelope.len = ws_json_envelope_prefix(ev->envelope.data, len,
                                               ctx->id.data, ctx->id.len,
                                               ctx->user.data,
                                               ctx->user.len);
    ev->channel = channel;
    ev->state = NGX_WS_AGENT_PUBLISH_ON;

    if (wlcf->stream) {
        if (ngx_http_complex_value(r, &wlcf->stream->value, &ev->stream)
            != NGX_OK)
        {
            ev->state = NGX_WS_AGENT_PUBLISH_UNROUTED;
            return;
        }

        if (ev->stream.len == 0
            || (ctx->user.len == 0 && wlcf->stream->names_user))
        {
            /* published, but not kept: said once for the connection */
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "ws_agent %V: stream \"%V\" names nobody; this "
                          "connection's events are published, not kept",
                          &ctx->id, &wlcf->stream->value.value);
            ev->stream.len = 0;
        }
    }

    ngx_ws_agent_events_lifecycle(ctx, "ws_open", "{}");
}


void
ngx_ws_agent_events_stop(ngx_ws_agent_ctx_t *ctx, ngx_uint_t code,
    const char *by)
{
    ngx_ws_agent_events_t  *ev = &ctx->events;
    u_char                  event[sizeof("{\"code\":,\"by\":\"\"}")
                                  + NGX_INT_T_LEN + 16];

    if (ev->state == NGX_WS_AGENT_PUBLISH_ON && ctx->conf->lifecycle) {
        *ngx_snprintf(event, sizeof(event) - 1,
                      "{\"code\":%ui,\"by\":\"%s\"}", code, by) = '\0';
        ngx_ws_agent_events_lifecycle(ctx, "ws_close", (char *) event);
    }

    ev->state = NGX_WS_AGENT_PUBLISH_OFF;

    if (ev->envelope.data) {
        ngx_free(ev->envelope.data);
        ev->envelope.data = NULL;
    }
}


ngx_str_t *
ngx_ws_agent_events_find(ngx_ws_agent_ctx_t *ctx, const u_char *type,
    size_t len)
{
    ngx_str_t   *ev;
    ngx_uint_t   i;

    if (ctx->events.state == NGX_WS_AGENT_PUBLISH_OFF) {
        return NULL;
    }

    ev = ctx->conf->events->elts;

    for (i = 0; i < ctx->conf->events->nelts; i++) {
        if (ev[i].len == len && ngx_memcmp(ev[i].data, type, len) == 0) {
            return &ev[i];
        }
    }

    return NULL;
}


ngx_str_t *
ngx_ws_agent_events_typed(ngx_ws_agent_ctx_t *ctx, ngx_str_t *ev)
{
    if (ctx->events.state == NGX_WS_AGENT_PUBLISH_OFF) {
        return NULL;
    }

    if (ev == NULL) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_OTHER_TYPE, 1);
        return NULL;
    }

    ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_SEEN, 1);

    if (ctx->events.state != NGX_WS_AGENT_PUBLISH_ON) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_UNROUTED, 1);
        return NULL;
    }

    return ev;
}


void
ngx_ws_agent_events_publish(ngx_ws_agent_ctx_t *ctx, ngx_str_t *type,
    u_char *event, size_t len)
{
    ngx_ws_agent_events_send(ctx, type->data, type->len, event, len);
}


void
ngx_ws_agent_events_rejected(ngx_ws_agent_ctx_t *ctx, ws_json_result_e why)
{
    if (ctx->events.state == NGX_WS_AGENT_PUBLISH_OFF) {
        return;
    }

    ngx_ws_agent_count(why == WS_JSON_INVALID ? NGX_WS_AGENT_EVENTS_NOT_JSON
                                              : NGX_WS_AGENT_EVENTS_UNTYPED,
                       1);
}


void
ngx_ws_agent_events_oversized(ngx_ws_agent_ctx_t *ctx)
{
    ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_OVERSIZED, 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "ws_agent %V: event over ws_agent_event_max_size, "
                   "relayed, not published", &ctx->id);
}


void
ngx_ws_agent_events_lifecycle(ngx_ws_agent_ctx_t *ctx, const char *type,
    const char *event)
{
    if (ctx->events.state != NGX_WS_AGENT_PUBLISH_ON || !ctx->conf->lifecycle)
    {
        return;
    }

    ngx_ws_agent_count(NGX_WS_AGENT_LIFECYCLE_QUEUED, 1);

    ngx_ws_agent_events_send(ctx, (u_char *) type, ngx_strlen(type),
                             (u_char *) event, ngx_strlen(event));
}


/*
 * The one place an envelope is put together:
 *   prefix (per connection) + "seq","ts_ms","type","event": + event + "}"
 * The type is a configured name or the module's own; it is escaped all the
 * same.
 */

static void
ngx_ws_agent_events_send(ngx_ws_agent_ctx_t *ctx, u_char *type,
    size_t type_len, u_char *event, size_t event_len)
{
    u_char                      *p, *head;
    size_t                       i, esc;
    ngx_str_t                    parts[4];
    ngx_time_t                  *tp;
    ngx_ws_agent_redis_event_t   rev;
    u_char        buf[NGX_WS_AGENT_HEAD_LEN + 256];

    /* configured names and the module's own rarely need escaping */
    for (i = 0; i < type_len; i++) {
        if (type[i] < 0x20 || type[i] == '"' || type[i] == '\\') {
            break;
        }
    }

    esc = (i == type_len) ? 0 : ngx_escape_json(NULL, type, type_len);

    if (type_len + esc > 256) {
        return;
    }

    tp = ngx_timeofday();
    head = buf;

    p = ngx_cpymem(head, "\"seq\":", sizeof("\"seq\":") - 1);
    p = ngx_ws_agent_decimal(p, ctx->events.seq + 1);
    p = ngx_cpymem(p, ",\"ts_ms\":", sizeof(",\"ts_ms\":") - 1);
    p = ngx_ws_agent_decimal(p, (uint64_t) tp->sec * 1000 + tp->msec);
    p = ngx_cpymem(p, ",\"type\":\"", sizeof(",\"type\":\"") - 1);

    rev.type.data = p;

    if (esc == 0) {
        p = ngx_cpymem(p, type, type_len);

    } else {
        p = (u_char *) ngx_escape_json(p, type, type_len);
    }

    rev.type.len = p - rev.type.data;

    p = ngx_cpymem(p, "\",\"event\":", sizeof("\",\"event\":") - 1);

    parts[0] = ctx->events.envelope;
    parts[1].data = head;
    parts[1].len = p - head;
    parts[2].data = event;
    parts[2].len = event_len;
    parts[3].data = (u_char *) "}";
    parts[3].len = 1;

    rev.channel = &ctx->events.channel;
    rev.stream = ctx->events.stream.len ? &ctx->events.stream : NULL;
    rev.conf = ctx->conf->stream;
    rev.connection_id = &ctx->id;
    rev.seq = ctx->events.seq + 1;
    rev.parts = parts;
    rev.nparts = 4;

    if (ngx_ws_agent_redis_publish(&rev, ctx->request->connection->log)
        == NGX_OK)
    {
        ctx->events.seq++;
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_QUEUED, 1);
    }
}
