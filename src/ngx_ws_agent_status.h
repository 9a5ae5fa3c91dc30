/*
 * The status location (ws_agent_status): the shared counters as JSON
 * (yajl) or in Prometheus's text exposition format.
 */

#ifndef _NGX_WS_AGENT_STATUS_H_INCLUDED_
#define _NGX_WS_AGENT_STATUS_H_INCLUDED_


#include "ngx_ws_agent_conf.h"


#define NGX_WS_AGENT_STATUS_JSON        1
#define NGX_WS_AGENT_STATUS_PROMETHEUS  2


ngx_int_t ngx_ws_agent_status_handler(ngx_http_request_t *r);


#endif /* _NGX_WS_AGENT_STATUS_H_INCLUDED_ */
