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
 * One event as the publisher takes it: the envelope (the concatenation of
 * its parts, copied) for the channel, and, when stream is set, appended to
 * that stream too, in one script with the PUBLISH: the envelope on the
 * channel then begins with the stream entry's "id", and (connection id,
 * seq) is appended once however often it is sent again.
 */
typedef struct {
    ngx_str_t                  *channel;
    ngx_str_t                  *stream;         /* NULL: pub/sub only */
    ngx_ws_agent_stream_t      *conf;           /* the stream's bounds */
    ngx_str_t                  *connection_id;
    ngx_uint_t                  seq;
    ngx_str_t                   type;           /* as the envelope has it */
    ngx_str_t                  *parts;
    ngx_uint_t                  nparts;
} ngx_ws_agent_redis_event_t;


/*
 * Queues the event (PUBLISH channel envelope, or the stream's script).  Returns NGX_OK when taken: queued, or dropped
 * because ws_agent_redis_queue events are held and all of them were sent
 * (counted and logged as queue_overflow; the caller's seq moves on, so a
 * subscriber sees the gap).  NGX_DECLINED when no Redis is configured in
 * this worker, NGX_ERROR on allocation failure.
 */
ngx_int_t ngx_ws_agent_redis_publish(ngx_ws_agent_redis_event_t *ev,
    ngx_log_t *log);

#endif /* _NGX_WS_AGENT_REDIS_H_INCLUDED_ */
