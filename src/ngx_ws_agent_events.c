/*
 * Agent events (see ngx_ws_agent_events.h): typing with yajl, the envelope
 * with yajl's generator, the hand-over to the Redis publisher.
 */

#include "ngx_ws_agent_events.h"
#include "ngx_ws_agent_json.h"
#include "ngx_ws_agent_redis.h"
#include "ngx_ws_agent_stats.h"


#define NGX_WS_AGENT_HEAD_BUF  512


static void ngx_ws_agent_events_publish(ngx_ws_agent_ctx_t *ctx,
    u_char *type, size_t type_len, u_char *event, size_t event_len);


void
ngx_ws_agent_events_start(ngx_ws_agent_ctx_t *ctx)
{
    ngx_str_t                 channel;
    ngx_http_request_t       *r;
    ngx_ws_agent_loc_conf_t  *wlcf;

    wlcf = ctx->conf;
    r = ctx->request;

    if (wlcf->publish == NULL) {
        return;
    }

    ctx->inspect = 1;

    if (ngx_http_complex_value(r, wlcf->publish, &channel) != NGX_OK) {
        ctx->unrouted = 1;
        return;
    }

    /* never a shared channel by accident: no user, no publishing */
    if (channel.len == 0
        || (ctx->user.len == 0
            && ngx_strlcasestrn(wlcf->publish->value.data,
                                wlcf->publish->value.data
                                + wlcf->publish->value.len,
                                (u_char *) "ws_agent_user",
                                sizeof("ws_agent_user") - 2)
               != NULL))
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ws_agent %V: ws_agent_user is empty, so channel "
                      "\"%V\" names nobody; this connection's events are "
                      "not published", &ctx->id, &wlcf->publish->value);
        ctx->unrouted = 1;
        return;
    }

    ctx->channel = channel;
    ctx->publishing = 1;

    ngx_ws_agent_events_lifecycle(ctx, "ws_open", "{}");
}


void
ngx_ws_agent_events_message(ngx_ws_agent_ctx_t *ctx, u_char *msg, size_t len)
{
    size_t                    type_len;
    u_char                    type[128];
    ngx_str_t                *ev;
    ngx_uint_t                i;
    ngx_ws_agent_loc_conf_t  *wlcf;

    wlcf = ctx->conf;
    type_len = sizeof(type);

    switch (ws_json_type(msg, len, wlcf->type_key.data, wlcf->type_key.len,
                         type, &type_len))
    {
    case WS_JSON_TYPED:
        break;

    case WS_JSON_INVALID:
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_NOT_JSON, 1);
        return;

    default:
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_UNTYPED, 1);
        return;
    }

    ev = wlcf->events->elts;

    for (i = 0; i < wlcf->events->nelts; i++) {
        if (ev[i].len == type_len
            && ngx_memcmp(ev[i].data, type, type_len) == 0)
        {
            break;
        }
    }

    if (i == wlcf->events->nelts) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_OTHER_TYPE, 1);
        return;
    }

    ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_SEEN, 1);

    if (!ctx->publishing) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_UNROUTED, 1);
        return;
    }

    ngx_ws_agent_events_publish(ctx, type, type_len, msg, len);
}


void
ngx_ws_agent_events_oversized(ngx_ws_agent_ctx_t *ctx)
{
    ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_OVERSIZED, 1);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ctx->client->log, 0,
                   "ws_agent %V: message over ws_agent_event_max_size, "
                   "relayed, not published", &ctx->id);
}


void
ngx_ws_agent_events_lifecycle(ngx_ws_agent_ctx_t *ctx, const char *type,
    const char *event)
{
    if (!ctx->publishing || !ctx->conf->lifecycle) {
        return;
    }

    ngx_ws_agent_count(NGX_WS_AGENT_LIFECYCLE_QUEUED, 1);

    ngx_ws_agent_events_publish(ctx, (u_char *) type, ngx_strlen(type),
                                (u_char *) event, ngx_strlen(event));
}


/* the one place an envelope is built */

static void
ngx_ws_agent_events_publish(ngx_ws_agent_ctx_t *ctx, u_char *type,
    size_t type_len, u_char *event, size_t event_len)
{
    u_char         *head;
    size_t          len;
    ngx_str_t       parts[3];
    ngx_time_t     *tp;
    ngx_uint_t      seq;
    u_char          buf[NGX_WS_AGENT_HEAD_BUF];
    ngx_log_t      *log;

    log = ctx->request->connection->log;
    tp = ngx_timeofday();
    seq = ctx->seq + 1;
    head = buf;

    len = ws_json_envelope_head(buf, sizeof(buf), ctx->id.data, ctx->id.len,
                                ctx->user.data, ctx->user.len, seq,
                                (unsigned long long) tp->sec * 1000
                                + tp->msec, type, type_len);

    if (len > sizeof(buf)) {
        /* a long user name: room from the pool, for this envelope only */
        head = ngx_palloc(ctx->request->pool, len);
        if (head == NULL) {
            return;
        }

        len = ws_json_envelope_head(head, len, ctx->id.data, ctx->id.len,
                                    ctx->user.data, ctx->user.len, seq,
                                    (unsigned long long) tp->sec * 1000
                                    + tp->msec, type, type_len);
    }

    if (len == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "ws_agent %V: cannot build the envelope of a \"%*s\" "
                      "event", &ctx->id, type_len, type);
        goto done;
    }

    parts[0].data = head;
    parts[0].len = len;
    parts[1].data = event;
    parts[1].len = event_len;
    parts[2].data = (u_char *) "}";
    parts[2].len = 1;

    if (ngx_ws_agent_redis_publish(&ctx->channel, parts, 3, log) == NGX_OK) {
        ctx->seq = seq;
        ctx->events_published++;
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_QUEUED, 1);
    }

done:

    if (head != buf) {
        ngx_pfree(ctx->request->pool, head);
    }
}
