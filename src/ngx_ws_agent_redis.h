/*
 * The Redis publisher: one hiredis async connection per worker on nginx's
 * event loop, reconnecting with back-off, and a bounded queue for the
 * events it holds (waiting, or sent and awaiting Redis's reply) while
 * Redis is slow or away.  Publishing never blocks and never fails the
 * caller: what cannot be sent is counted and logged.
 */

#ifndef _NGX_WS_AGENT_REDIS_H_INCLUDED_
#define _NGX_WS_AGENT_REDIS_H_INCLUDED_


#include "ngx_ws_agent_conf.h"


ngx_int_t ngx_ws_agent_redis_init_process(ngx_cycle_t *cycle,
    ngx_ws_agent_main_conf_t *wmcf);
void ngx_ws_agent_redis_exit_process(ngx_cycle_t *cycle);

/*
 * Queues PUBLISH channel message, the message being the concatenation of
 * the n parts (copied).  Returns NGX_OK when taken: queued, or dropped
 * because ws_agent_redis_queue events are held and all of them were sent
 * (counted and logged as queue_overflow; the caller's seq moves on, so a
 * subscriber sees the gap).  NGX_DECLINED when no Redis is configured in
 * this worker, NGX_ERROR on allocation failure.
 */
ngx_int_t ngx_ws_agent_redis_publish(ngx_str_t *channel, ngx_str_t *parts,
    ngx_uint_t n, ngx_log_t *log);

#endif /* _NGX_WS_AGENT_REDIS_H_INCLUDED_ */
