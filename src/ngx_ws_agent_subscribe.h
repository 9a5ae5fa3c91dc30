/*
 * The subscriber location (ws_agent_subscribe): a user's events as
 * Server-Sent Events, replayed from the stream from the client's
 * Last-Event-ID, then live from the worker's shared subscription to the
 * channel, with no gap and no duplicate at the switch.  Below it: the
 * feed (ngx_ws_agent_feed.c) only.
 */

#ifndef _NGX_WS_AGENT_SUBSCRIBE_H_INCLUDED_
#define _NGX_WS_AGENT_SUBSCRIBE_H_INCLUDED_


#include "ngx_ws_agent_conf.h"


/* the location's content handler */
ngx_int_t ngx_ws_agent_subscribe_handler(ngx_http_request_t *r);


#endif /* _NGX_WS_AGENT_SUBSCRIBE_H_INCLUDED_ */
