/*
 * Verified identity: a JWT checked with OpenSSL before the upgrade, so a
 * per-user channel cannot be claimed by someone else.  Keys are loaded and
 * checked when the configuration is read; the algorithm is pinned by the
 * key's type, so "none" and HS/RS confusion never verify.
 */

#ifndef _NGX_WS_AGENT_JWT_H_INCLUDED_
#define _NGX_WS_AGENT_JWT_H_INCLUDED_


#include "ngx_ws_agent.h"


/* directive handlers */
char *ngx_ws_agent_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_ws_agent_jwt_claim(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * Access phase: NGX_DECLINED when the request may go on (identity in ctx),
 * NGX_HTTP_UNAUTHORIZED (with WWW-Authenticate set) when it may not.
 */
ngx_int_t ngx_ws_agent_jwt_check(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx);

/*
 * Header filter, on the backend's 101: when the client offered the token as
 * a Sec-WebSocket-Protocol entry and the backend selected no subprotocol,
 * the 101 selects that entry (a browser fails a 101 that selects none).
 */
ngx_int_t ngx_ws_agent_jwt_select_protocol(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx);

/* $ws_agent_jwt_sub and $ws_agent_jwt_claim_NAME */
ngx_int_t ngx_ws_agent_jwt_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#endif /* _NGX_WS_AGENT_JWT_H_INCLUDED_ */
