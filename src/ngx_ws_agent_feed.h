/*
 * The subscribers' side of Redis, one per worker: a pub/sub connection
 * that holds one SUBSCRIBE per channel however many local clients watch
 * it (UNSUBSCRIBE when the last leaves), and a second connection for the
 * stream reads (XRANGE), whose replies come back in order to whoever
 * asked.  Both are nodes (ngx_ws_agent_redis_node.c) to the server of
 * ws_agent_redis, or to the master its sentinels name.  Above it: only
 * the subscriber location (ngx_ws_agent_subscribe.c).
 */

#ifndef _NGX_WS_AGENT_FEED_H_INCLUDED_
#define _NGX_WS_AGENT_FEED_H_INCLUDED_


#include "ngx_ws_agent_conf.h"

#include <hiredis/hiredis.h>


typedef struct ngx_ws_agent_feed_channel_s  ngx_ws_agent_feed_channel_t;
typedef struct ngx_ws_agent_watch_s         ngx_ws_agent_watch_t;
typedef struct ngx_ws_agent_feed_read_s     ngx_ws_agent_feed_read_t;


/* what a watcher of a channel is told */
typedef struct {
    /* the channel is subscribed on Redis (again, after a reconnect) */
    void  (*live)(ngx_ws_agent_watch_t *w);
    /* a message on it */
    void  (*message)(ngx_ws_agent_watch_t *w, u_char *data, size_t len);
    /* the subscription is gone (Redis down): live() comes again later */
    void  (*lost)(ngx_ws_agent_watch_t *w);
} ngx_ws_agent_watch_handler_t;


/* one client's watch of one channel, in that client's own memory */
struct ngx_ws_agent_watch_s {
    ngx_queue_t                     queue;      /* the channel's watchers */
    ngx_ws_agent_feed_channel_t    *channel;
    ngx_ws_agent_watch_handler_t   *handler;
    void                           *data;
};


/*
 * A stream read's answer: reply is XRANGE's (an array of [id, fields]),
 * or an error reply; data is the asker's.  Never called once canceled.
 */
typedef void (*ngx_ws_agent_feed_read_pt)(void *data, redisReply *reply);


/* worker start and exit (nothing happens without ws_agent_subscribe) */
ngx_int_t ngx_ws_agent_feed_init_process(ngx_cycle_t *cycle,
    ngx_ws_agent_main_conf_t *wmcf);
void ngx_ws_agent_feed_exit_process(ngx_cycle_t *cycle);

/*
 * w watches channel (copied): live() as soon as the channel is subscribed
 * (at once when it already is), then every message.  NGX_ERROR: no memory,
 * or no Redis in this worker.
 */
ngx_int_t ngx_ws_agent_feed_watch(ngx_ws_agent_watch_t *w, ngx_str_t *channel,
    ngx_log_t *log);
void ngx_ws_agent_feed_unwatch(ngx_ws_agent_watch_t *w);

/*
 * XRANGE stream start + COUNT count, sent once the read connection is up
 * (again after a reconnect, until answered); start as Redis takes it
 * ("(1-2" is exclusive); start NULL: XREVRANGE stream + - COUNT count,
 * the newest entries.  Returns the read, which the asker may cancel.
 */
ngx_ws_agent_feed_read_t *ngx_ws_agent_feed_read(ngx_str_t *stream,
    ngx_str_t *start, ngx_uint_t count, ngx_ws_agent_feed_read_pt handler,
    void *data, ngx_log_t *log);
void ngx_ws_agent_feed_cancel(ngx_ws_agent_feed_read_t *rd);

/* channels this worker has subscribed, for the status page */
ngx_uint_t ngx_ws_agent_feed_subscriptions(void);


#endif /* _NGX_WS_AGENT_FEED_H_INCLUDED_ */
