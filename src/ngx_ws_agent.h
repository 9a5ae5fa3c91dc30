/*
 * One proxied WebSocket's context: the identity the module file makes and
 * the parts each concern owns, each defined in its own header: the relay
 * (ngx_ws_agent_gate.h), the message being typed
 * (ngx_ws_agent_message.h), the publishing (ngx_ws_agent_events.h).
 * A part is written only by its own file.  Everything per connection lives
 * here, never in a static.
 */

#ifndef _NGX_WS_AGENT_H_INCLUDED_
#define _NGX_WS_AGENT_H_INCLUDED_


#include "ngx_ws_agent_conf.h"
#include "ngx_ws_agent_gate.h"
#include "ngx_ws_agent_message.h"
#include "ngx_ws_agent_events.h"


struct ngx_ws_agent_ctx_s {
    ngx_http_request_t         *request;
    ngx_ws_agent_loc_conf_t    *conf;

    ngx_str_t                   id;
    ngx_str_t                   user;
    u_char                      id_buf[NGX_WS_AGENT_ID_LEN];

    /* verified identity (ws_agent_jwt) */
    ngx_str_t                   jwt_sub;
    void                       *jwt_claims;     /* a yajl_val tree */
    ngx_str_t                   jwt_protocol;   /* the Sec-WebSocket-Protocol
                                                   entry that carried it */
    unsigned                    jwt_verified:1;

    ngx_ws_agent_relay_t        relay;
    ngx_ws_agent_msg_t          msg;
    ngx_ws_agent_events_t       events;
};


/* the context of a gated WebSocket request, made when first asked for */
ngx_ws_agent_ctx_t *ngx_ws_agent_get_ctx(ngx_http_request_t *r);

/* the connection id (and user), made once, when first needed */
ngx_int_t ngx_ws_agent_identify(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx);


#endif /* _NGX_WS_AGENT_H_INCLUDED_ */
