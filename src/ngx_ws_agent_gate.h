/*
 * The readiness gate: joins nginx's upgraded relay
 * (ngx_http_upstream_process_upgraded) at the connection level by wrapping
 * the client connection's recv/send and the upstream connection's recv.
 * Every byte of both directions passes the frame parser once; client bytes
 * are held until the backend's ack, then replayed in order.
 */

#ifndef _NGX_WS_AGENT_GATE_H_INCLUDED_
#define _NGX_WS_AGENT_GATE_H_INCLUDED_


#include "ngx_ws_agent.h"


/* called as the 101 goes out, before nginx starts relaying */
ngx_int_t ngx_ws_agent_gate_attach(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx);


/* the request is over: the relay's functions back, timers off */
void ngx_ws_agent_gate_detach(ngx_ws_agent_ctx_t *ctx);


#endif /* _NGX_WS_AGENT_GATE_H_INCLUDED_ */
