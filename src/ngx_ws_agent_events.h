/*
 * Agent events: what the backend tells the client, typed and wrapped in an
 * envelope for the connection's Redis channel.  The gate hands over each
 * complete text message; this file decides whether it is published.
 */

#ifndef _NGX_WS_AGENT_EVENTS_H_INCLUDED_
#define _NGX_WS_AGENT_EVENTS_H_INCLUDED_


#include "ngx_ws_agent.h"


/* at the upgrade: evaluates the channel once, publishes ws_open */
void ngx_ws_agent_events_start(ngx_ws_agent_ctx_t *ctx);

/* a complete backend text message (not the ack) */
void ngx_ws_agent_events_message(ngx_ws_agent_ctx_t *ctx, u_char *msg,
    size_t len);

/* a message over ws_agent_event_max_size: relayed, not published */
void ngx_ws_agent_events_oversized(ngx_ws_agent_ctx_t *ctx);

/* the module's own envelopes (ws_agent_lifecycle on); event is JSON */
void ngx_ws_agent_events_lifecycle(ngx_ws_agent_ctx_t *ctx,
    const char *type, const char *event);


#endif /* _NGX_WS_AGENT_EVENTS_H_INCLUDED_ */
