/*
 * Agent events: what the backend tells the client, typed as it passes
 * (ngx_ws_agent_message.c) and, for the types in ws_agent_events, wrapped
 * in an envelope for the connection's Redis channel.  Also the module's
 * own lifecycle envelopes.  Below it: only the publisher.
 */

#ifndef _NGX_WS_AGENT_EVENTS_H_INCLUDED_
#define _NGX_WS_AGENT_EVENTS_H_INCLUDED_


#include "ngx_ws_agent_conf.h"


typedef enum {
    NGX_WS_AGENT_PUBLISH_OFF = 0,    /* ws_agent_publish off: not looked at */
    NGX_WS_AGENT_PUBLISH_UNROUTED,   /* looked at and counted, no channel */
    NGX_WS_AGENT_PUBLISH_ON          /* published on the channel */
} ngx_ws_agent_events_state_e;


/* one connection's publishing */
typedef struct {
    ngx_str_t                   channel;
    ngx_str_t                   stream;     /* "": not kept */
    ngx_str_t                   envelope;   /* its connection part, heap */
    ngx_uint_t                  seq;        /* the last one published */
    ngx_uint_t                  state;      /* ngx_ws_agent_events_state_e */
} ngx_ws_agent_events_t;


/* at the upgrade: evaluates the channel once, publishes ws_open */
void ngx_ws_agent_events_start(ngx_ws_agent_ctx_t *ctx);

/* the connection is over: publishes ws_close, gives the envelope back */
void ngx_ws_agent_events_stop(ngx_ws_agent_ctx_t *ctx, ngx_uint_t code,
    const char *by);

/* the configured event type (ws_agent_events) named type, or NULL */
ngx_str_t *ngx_ws_agent_events_find(ngx_ws_agent_ctx_t *ctx,
    const u_char *type, size_t len);

/*
 * A message's type is known, ev is what ngx_ws_agent_events_find() made of
 * it: ev again when the message is to be published, else NULL (counted:
 * another type, or no channel to publish on).
 */
ngx_str_t *ngx_ws_agent_events_typed(ngx_ws_agent_ctx_t *ctx,
    ngx_str_t *ev);

/* a whole, valid event message of a wanted type */
void ngx_ws_agent_events_publish(ngx_ws_agent_ctx_t *ctx, ngx_str_t *type,
    u_char *event, size_t len);

/* a message that had no type: not JSON, not an object, no type member */
void ngx_ws_agent_events_rejected(ngx_ws_agent_ctx_t *ctx,
    ws_json_result_e why);

/* an event over ws_agent_event_max_size: relayed, not published */
void ngx_ws_agent_events_oversized(ngx_ws_agent_ctx_t *ctx);

/* the module's own envelopes (ws_agent_lifecycle on); event is JSON */
void ngx_ws_agent_events_lifecycle(ngx_ws_agent_ctx_t *ctx,
    const char *type, const char *event);


#define ngx_ws_agent_events_inspected(ctx)                                   \
    ((ctx)->events.state != NGX_WS_AGENT_PUBLISH_OFF)
#define ngx_ws_agent_events_publishing(ctx)                                  \
    ((ctx)->events.state == NGX_WS_AGENT_PUBLISH_ON)


#endif /* _NGX_WS_AGENT_EVENTS_H_INCLUDED_ */
