/*
 * Agent events: what the backend tells the client, typed by the gate as it
 * passes and, for the types in ws_agent_events, wrapped in an envelope for
 * the connection's Redis channel.
 */

#ifndef _NGX_WS_AGENT_EVENTS_H_INCLUDED_
#define _NGX_WS_AGENT_EVENTS_H_INCLUDED_


#include "ngx_ws_agent.h"


/* at the upgrade: evaluates the channel once, publishes ws_open */
void ngx_ws_agent_events_start(ngx_ws_agent_ctx_t *ctx);

/* the configured event type (ws_agent_events) named type, or NULL */
ngx_str_t *ngx_ws_agent_events_find(ngx_ws_agent_ctx_t *ctx, u_char *type,
    size_t len);

/*
 * A message's type is known, ev is what ngx_ws_agent_events_find() made of
 * it: ev again when the message is to be published, else NULL (counted:
 * another type, or no channel to publish on).
 */
ngx_str_t *ngx_ws_agent_events_wanted(ngx_ws_agent_ctx_t *ctx,
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


#endif /* _NGX_WS_AGENT_EVENTS_H_INCLUDED_ */
