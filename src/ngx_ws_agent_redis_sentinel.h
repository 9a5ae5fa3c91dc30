/*
 * Where the master is, as Redis Sentinel says: one connection per worker
 * to a sentinel (the next one when it fails) that asks
 * SENTINEL get-master-addr-by-name, then listens to +switch-master, and
 * points its owner's nodes (the publisher's, the subscribers') at the
 * master it names.
 */

#ifndef _NGX_WS_AGENT_REDIS_SENTINEL_H_INCLUDED_
#define _NGX_WS_AGENT_REDIS_SENTINEL_H_INCLUDED_


#include "ngx_ws_agent_redis_node.h"


typedef struct {
    ngx_ws_agent_redis_node_t     node;         /* to a sentinel */
    ngx_ws_agent_redis_node_t   **masters;      /* the nodes it steers */
    ngx_uint_t                    nmasters;
    ngx_ws_agent_redis_server_t  *data;         /* master's name */
    ngx_log_t                    *log;
    ngx_uint_t                    replies;      /* on this connection */
    time_t                        down_logged_at;
    time_t                        unknown_logged_at;
    u_char                        last_error[NGX_WS_AGENT_ERROR_LEN];
} ngx_ws_agent_redis_sentinel_t;


/* worker start: asks the sentinels, then steers the n nodes of masters */
void ngx_ws_agent_redis_sentinel_start(ngx_ws_agent_redis_sentinel_t *sn,
    ngx_ws_agent_redis_server_t *sentinels, ngx_ws_agent_redis_server_t *data,
    ngx_ws_agent_redis_node_t **masters, ngx_uint_t n, ngx_log_t *log);

/* the master named was not one (ROLE): ask again */
void ngx_ws_agent_redis_sentinel_ask(ngx_ws_agent_redis_sentinel_t *sn);

void ngx_ws_agent_redis_sentinel_close(ngx_ws_agent_redis_sentinel_t *sn);

#endif /* _NGX_WS_AGENT_REDIS_SENTINEL_H_INCLUDED_ */
