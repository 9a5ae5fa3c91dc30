/*
 * Request headers as the module and the JWT check both touch them: finding
 * one by name, taking one out before the request goes upstream.  Below
 * both of them, so neither calls into the other.
 */

#ifndef _NGX_WS_AGENT_HEADERS_H_INCLUDED_
#define _NGX_WS_AGENT_HEADERS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * The first header of that name in a request's or a response's list, or
 * NULL; one whose hash is 0 is deleted, and skipped.
 */
ngx_table_elt_t *ngx_ws_agent_find_header(ngx_list_t *headers,
    ngx_str_t *name);

/* takes one header out of the request before it goes upstream */
ngx_int_t ngx_ws_agent_remove_header(ngx_http_request_t *r,
    ngx_table_elt_t *victim);

/* the request asks for Upgrade: websocket (RFC 6455 4.2.1: any case) */
ngx_uint_t ngx_ws_agent_upgrade_is_websocket(ngx_http_request_t *r);


#endif /* _NGX_WS_AGENT_HEADERS_H_INCLUDED_ */
