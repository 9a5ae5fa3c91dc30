/*
 * The subscribers' side of Redis (see ngx_ws_agent_feed.h).
 *
 * A channel is in the worker's tree while anyone watches it or a command
 * about it is on the way.  Its state says what Redis was last asked:
 *   idle           nothing (the connection is down, or not asked yet)
 *   subscribing    SUBSCRIBE sent, not confirmed
 *   subscribed     confirmed: messages flow, watchers were told live()
 *   unsubscribing  UNSUBSCRIBE sent (the last watcher left)
 * Pub/sub replies come in the order of the commands, so a channel left
 * and watched again (UNSUBSCRIBE, then SUBSCRIBE) is live only when every
 * command sent about it is confirmed: at the last SUBSCRIBE's reply.  Watchers are told on the node's events, never asked to
 * answer synchronously: what they do about it (close a client) they post.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_feed.h"
#include "ngx_ws_agent_redis_node.h"
#include "ngx_ws_agent_redis_sentinel.h"
#include "ngx_ws_agent_stats.h"


typedef enum {
    NGX_WS_AGENT_CHANNEL_IDLE = 0,
    NGX_WS_AGENT_CHANNEL_SUBSCRIBING,
    NGX_WS_AGENT_CHANNEL_SUBSCRIBED,
    NGX_WS_AGENT_CHANNEL_UNSUBSCRIBING
} ngx_ws_agent_channel_state_e;


struct ngx_ws_agent_feed_channel_s {
    ngx_str_node_t                  sn;         /* its name, in the tree */
    ngx_queue_t                     watchers;
    ngx_uint_t                      nwatchers;
    ngx_ws_agent_channel_state_e    state;
    ngx_uint_t                      pending;    /* commands unconfirmed */
    unsigned                        on_redis:1; /* Redis has it subscribed */
    u_char                          name[1];
};


struct ngx_ws_agent_feed_read_s {
    ngx_queue_t                     queue;
    ngx_ws_agent_feed_read_pt       handler;
    void                           *data;       /* NULL: canceled */
    unsigned                        sent:1;
    size_t                          len;
    u_char                          cmd[1];
};


typedef struct {
    ngx_ws_agent_main_conf_t       *conf;
    ngx_log_t                      *log;

    ngx_ws_agent_redis_node_t       sub;        /* pub/sub */
    ngx_ws_agent_redis_node_t       reads;      /* XRANGE */
    ngx_ws_agent_redis_node_t      *steered[2];
    ngx_ws_agent_redis_sentinel_t   sentinel;   /* sentinel:NAME only */

    ngx_rbtree_t                    tree;
    ngx_rbtree_node_t               sentinel_node;
    ngx_uint_t                      nchannels;
    ngx_uint_t                      subscribed;

    ngx_queue_t                     waiting;    /* reads not sent */
    ngx_queue_t                     sent;       /* reads awaiting a reply */

    unsigned                        active:1;
    unsigned                        exiting:1;
} ngx_ws_agent_feed_t;


static ngx_ws_agent_feed_channel_t *ngx_ws_agent_feed_lookup(
    ngx_ws_agent_feed_t *fd, u_char *name, size_t len);
static void ngx_ws_agent_feed_command(ngx_ws_agent_feed_t *fd,
    const char *verb, ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_free(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_tell(ngx_ws_agent_feed_channel_t *ch,
    ngx_uint_t live);
static void ngx_ws_agent_feed_sub_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_feed_sub_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_feed_sub_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static void ngx_ws_agent_feed_send_reads(ngx_ws_agent_feed_t *fd);
static void ngx_ws_agent_feed_reads_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_feed_reads_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_feed_reads_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);


static ngx_ws_agent_redis_node_handler_t  ngx_ws_agent_feed_sub_handler = {
    ngx_ws_agent_feed_sub_ready,
    ngx_ws_agent_feed_sub_reply,
    ngx_ws_agent_feed_sub_down
};

static ngx_ws_agent_redis_node_handler_t  ngx_ws_agent_feed_reads_handler = {
    ngx_ws_agent_feed_reads_ready,
    ngx_ws_agent_feed_reads_reply,
    ngx_ws_agent_feed_reads_down
};

/* the worker's feed: a per-worker object, set up at worker start */
static ngx_ws_agent_feed_t  ngx_ws_agent_feed;


ngx_int_t
ngx_ws_agent_feed_init_process(ngx_cycle_t *cycle,
    ngx_ws_agent_main_conf_t *wmcf)
{
    ngx_ws_agent_feed_t  *fd = &ngx_ws_agent_feed;

    ngx_memzero(fd, sizeof(ngx_ws_agent_feed_t));

    if (wmcf == NULL || !wmcf->configured || !wmcf->subscribers) {
        return NGX_OK;
    }

    fd->conf = wmcf;
    fd->log = cycle->log;
    fd->active = 1;

    ngx_rbtree_init(&fd->tree, &fd->sentinel_node,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&fd->waiting);
    ngx_queue_init(&fd->sent);

    ngx_ws_agent_redis_node_action(&fd->sub, "subscribing to Redis");
    ngx_ws_agent_redis_node_action(&fd->reads,
                                   "reading streams from Redis");

    ngx_ws_agent_redis_node_start(&fd->sub, &wmcf->redis,
                                  &ngx_ws_agent_feed_sub_handler, fd,
                                  cycle->log, NULL);
    ngx_ws_agent_redis_node_start(&fd->reads, &wmcf->redis,
                                  &ngx_ws_agent_feed_reads_handler, fd,
                                  cycle->log, NULL);

    if (wmcf->redis.master.len) {
        fd->steered[0] = &fd->sub;
        fd->steered[1] = &fd->reads;

        ngx_ws_agent_redis_sentinel_start(&fd->sentinel, &wmcf->sentinels,
                                          &wmcf->redis, fd->steered, 2,
                                          cycle->log);
    }

    return NGX_OK;
}


void
ngx_ws_agent_feed_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t               *q;
    ngx_ws_agent_feed_t       *fd = &ngx_ws_agent_feed;
    ngx_ws_agent_feed_read_t  *rd;

    if (!fd->active) {
        return;
    }

    fd->exiting = 1;

    ngx_ws_agent_redis_node_close(&fd->sub);
    ngx_ws_agent_redis_node_close(&fd->reads);

    if (fd->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_close(&fd->sentinel);
    }

    /* the clients are gone by now (their pools' cleanups); reads are not */
    while (!ngx_queue_empty(&fd->sent)) {
        q = ngx_queue_head(&fd->sent);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue));
    }

    while (!ngx_queue_empty(&fd->waiting)) {
        q = ngx_queue_head(&fd->waiting);
        rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);
        ngx_queue_remove(q);
        ngx_free(rd);
    }
}


ngx_int_t
ngx_ws_agent_feed_watch(ngx_ws_agent_watch_t *w, ngx_str_t *channel,
    ngx_log_t *log)
{
    uint32_t                      hash;
    ngx_ws_agent_feed_t          *fd = &ngx_ws_agent_feed;
    ngx_ws_agent_feed_channel_t  *ch;

    if (!fd->active || fd->exiting) {
        return NGX_ERROR;
    }

    ch = ngx_ws_agent_feed_lookup(fd, channel->data, channel->len);

    if (ch == NULL) {
        ch = ngx_alloc(offsetof(ngx_ws_agent_feed_channel_t, name)
                       + channel->len, log);
        if (ch == NULL) {
            return NGX_ERROR;
        }

        hash = ngx_crc32_long(channel->data, channel->len);

        ngx_memcpy(ch->name, channel->data, channel->len);
        ch->sn.str.data = ch->name;
        ch->sn.str.len = channel->len;
        ch->sn.node.key = hash;
        ngx_queue_init(&ch->watchers);
        ch->nwatchers = 0;
        ch->state = NGX_WS_AGENT_CHANNEL_IDLE;
        ch->pending = 0;
        ch->on_redis = 0;

        ngx_rbtree_insert(&fd->tree, &ch->sn.node);
        fd->nchannels++;
    }

    w->channel = ch;
    ngx_queue_insert_tail(&ch->watchers, &w->queue);
    ch->nwatchers++;

    switch (ch->state) {

    case NGX_WS_AGENT_CHANNEL_SUBSCRIBED:
        w->handler->live(w);
        break;

    case NGX_WS_AGENT_CHANNEL_SUBSCRIBING:
        break;

    default: /* idle, or on the way out: asked (again) */
        if (ngx_ws_agent_redis_node_ready(&fd->sub)) {
            ngx_ws_agent_feed_command(fd, "SUBSCRIBE", ch);
            ch->state = NGX_WS_AGENT_CHANNEL_SUBSCRIBING;
        }

        break;
    }

    return NGX_OK;
}


void
ngx_ws_agent_feed_unwatch(ngx_ws_agent_watch_t *w)
{
    ngx_ws_agent_feed_t          *fd = &ngx_ws_agent_feed;
    ngx_ws_agent_feed_channel_t  *ch = w->channel;

    if (ch == NULL) {
        return;
    }

    ngx_queue_remove(&w->queue);
    w->channel = NULL;

    if (--ch->nwatchers || fd->exiting) {
        return;
    }

    switch (ch->state) {

    case NGX_WS_AGENT_CHANNEL_SUBSCRIBED:
    case NGX_WS_AGENT_CHANNEL_SUBSCRIBING:
        ngx_ws_agent_feed_command(fd, "UNSUBSCRIBE", ch);
        ch->state = NGX_WS_AGENT_CHANNEL_UNSUBSCRIBING;
        break;

    case NGX_WS_AGENT_CHANNEL_UNSUBSCRIBING:
        break;

    default: /* idle: Redis knows nothing of it */
        ngx_ws_agent_feed_free(fd, ch);
        break;
    }
}


static ngx_ws_agent_feed_channel_t *
ngx_ws_agent_feed_lookup(ngx_ws_agent_feed_t *fd, u_char *name, size_t len)
{
    ngx_str_t        s;
    ngx_str_node_t  *sn;

    s.data = name;
    s.len = len;

    sn = ngx_str_rbtree_lookup(&fd->tree, &s, ngx_crc32_long(name, len));

    return (ngx_ws_agent_feed_channel_t *) sn;
}


static void
ngx_ws_agent_feed_command(ngx_ws_agent_feed_t *fd, const char *verb,
    ngx_ws_agent_feed_channel_t *ch)
{
    int          len;
    char        *cmd;
    const char  *argv[2];
    size_t       argvlen[2];

    argv[0] = verb;
    argvlen[0] = ngx_strlen(verb);
    argv[1] = (const char *) ch->name;
    argvlen[1] = ch->sn.str.len;

    len = redisFormatCommandArgv(&cmd, 2, argv, argvlen);
    if (len < 0) {
        ngx_ws_agent_redis_node_reset(&fd->sub, "out of memory");
        return;
    }

    ch->pending++;

    if (ngx_ws_agent_redis_node_send(&fd->sub, (u_char *) cmd, len)
        != NGX_OK)
    {
        ngx_ws_agent_redis_node_reset(&fd->sub, "out of memory");
    }

    redisFreeCommand(cmd);
}


static void
ngx_ws_agent_feed_free(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch)
{
    ngx_rbtree_delete(&fd->tree, &ch->sn.node);
    fd->nchannels--;
    ngx_free(ch);
}


/* every watcher of ch: live() or lost(); each may leave meanwhile */

static void
ngx_ws_agent_feed_tell(ngx_ws_agent_feed_channel_t *ch, ngx_uint_t live)
{
    ngx_queue_t           *q, *next;
    ngx_ws_agent_watch_t  *w;

    for (q = ngx_queue_head(&ch->watchers);
         q != ngx_queue_sentinel(&ch->watchers);
         q = next)
    {
        next = ngx_queue_next(q);
        w = ngx_queue_data(q, ngx_ws_agent_watch_t, queue);

        if (live) {
            w->handler->live(w);

        } else {
            w->handler->lost(w);
        }
    }
}


/* the pub/sub connection */

static void
ngx_ws_agent_feed_sub_ready(ngx_ws_agent_redis_node_t *node)
{
    ngx_rbtree_node_t            *n, *next, *root, *sentinel;
    ngx_ws_agent_feed_t          *fd = node->data;
    ngx_ws_agent_feed_channel_t  *ch;

    ngx_log_error(NGX_LOG_INFO, fd->log, 0,
                  "ws_agent: Redis %V connected for subscribers, "
                  "%ui channel(s) to subscribe", &fd->conf->redis.addr,
                  fd->nchannels);

    sentinel = fd->tree.sentinel;
    root = fd->tree.root;

    if (root == sentinel) {
        return;
    }

    for (n = ngx_rbtree_min(root, sentinel); n; n = next) {
        next = ngx_rbtree_next(&fd->tree, n);
        ch = (ngx_ws_agent_feed_channel_t *) n;

        if (ch->nwatchers == 0) {
            ngx_ws_agent_feed_free(fd, ch);
            continue;
        }

        ngx_ws_agent_feed_command(fd, "SUBSCRIBE", ch);
        ch->state = NGX_WS_AGENT_CHANNEL_SUBSCRIBING;
    }
}


static void
ngx_ws_agent_feed_sub_reply(ngx_ws_agent_redis_node_t *node, redisReply *rr)
{
    redisReply                   *kind, *name;
    ngx_queue_t                  *q, *next;
    ngx_ws_agent_watch_t         *w;
    ngx_ws_agent_feed_t          *fd = node->data;
    ngx_ws_agent_feed_channel_t  *ch;

    if (rr->type == REDIS_REPLY_ERROR) {
        /* NOPERM for a channel, most likely: said, and asked again later */
        ngx_log_error(NGX_LOG_ERR, fd->log, 0,
                      "ws_agent: Redis %V refused a subscription: %*s",
                      &fd->conf->redis.addr, (size_t) rr->len, rr->str);
        ngx_ws_agent_redis_node_reset(node, rr->str);
        return;
    }

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements != 3
        || rr->element[0]->type != REDIS_REPLY_STRING
        || rr->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = rr->element[0];
    name = rr->element[1];

    ch = ngx_ws_agent_feed_lookup(fd, (u_char *) name->str, name->len);
    if (ch == NULL) {
        return;
    }

    if (kind->len == 7 && ngx_strncmp(kind->str, "message", 7) == 0) {

        if (ch->state != NGX_WS_AGENT_CHANNEL_SUBSCRIBED
            || rr->element[2]->type != REDIS_REPLY_STRING)
        {
            return;
        }

        for (q = ngx_queue_head(&ch->watchers);
             q != ngx_queue_sentinel(&ch->watchers);
             q = next)
        {
            next = ngx_queue_next(q);
            w = ngx_queue_data(q, ngx_ws_agent_watch_t, queue);
            w->handler->message(w, (u_char *) rr->element[2]->str,
                                rr->element[2]->len);
        }

        return;
    }

    if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0) {

        if (!ch->on_redis) {
            ch->on_redis = 1;
            fd->subscribed++;
            ngx_ws_agent_gauge(subscriptions, 1);
        }

        if (ch->pending && --ch->pending == 0
            && ch->state == NGX_WS_AGENT_CHANNEL_SUBSCRIBING)
        {
            ch->state = NGX_WS_AGENT_CHANNEL_SUBSCRIBED;
            ngx_ws_agent_feed_tell(ch, 1);
        }

        return;
    }

    if (kind->len == 11 && ngx_strncmp(kind->str, "unsubscribe", 11) == 0) {

        if (ch->on_redis) {
            ch->on_redis = 0;
            fd->subscribed--;
            ngx_ws_agent_gauge(subscriptions, -1);
        }

        if (ch->pending && --ch->pending == 0
            && ch->state == NGX_WS_AGENT_CHANNEL_UNSUBSCRIBING)
        {
            ngx_ws_agent_feed_free(fd, ch);
        }
    }
}


static void
ngx_ws_agent_feed_sub_down(ngx_ws_agent_redis_node_t *node, const char *why,
    ngx_uint_t logged)
{
    ngx_rbtree_node_t            *n, *next, *root, *sentinel;
    ngx_ws_agent_feed_t          *fd = node->data;
    ngx_ws_agent_feed_channel_t  *ch;

    if (fd->exiting) {
        return;
    }

    if (node->not_master && fd->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_ask(&fd->sentinel);
    }

    if (!logged && fd->subscribed) {
        ngx_log_error(NGX_LOG_ERR, fd->log, 0,
                      "ws_agent: Redis %V unavailable for subscribers (%s): "
                      "%ui channel(s) wait, their clients resume from the "
                      "stream once it is back", &fd->conf->redis.addr, why,
                      fd->subscribed);
    }

    ngx_ws_agent_gauge(subscriptions, -(ngx_atomic_int_t) fd->subscribed);
    fd->subscribed = 0;

    sentinel = fd->tree.sentinel;
    root = fd->tree.root;

    if (root == sentinel) {
        return;
    }

    for (n = ngx_rbtree_min(root, sentinel); n; n = next) {
        next = ngx_rbtree_next(&fd->tree, n);
        ch = (ngx_ws_agent_feed_channel_t *) n;

        ch->state = NGX_WS_AGENT_CHANNEL_IDLE;
        ch->pending = 0;
        ch->on_redis = 0;

        if (ch->nwatchers == 0) {
            ngx_ws_agent_feed_free(fd, ch);
            continue;
        }

        ngx_ws_agent_feed_tell(ch, 0);
    }
}


ngx_uint_t
ngx_ws_agent_feed_subscriptions(void)
{
    return ngx_ws_agent_feed.subscribed;
}


/* stream reads */

ngx_ws_agent_feed_read_t *
ngx_ws_agent_feed_read(ngx_str_t *stream, ngx_str_t *start, ngx_uint_t count,
    ngx_ws_agent_feed_read_pt handler, void *data, ngx_log_t *log)
{
    int                        len;
    char                      *cmd;
    u_char                     num[NGX_INT_T_LEN];
    const char                *argv[6];
    size_t                     argvlen[6];
    ngx_ws_agent_feed_t       *fd = &ngx_ws_agent_feed;
    ngx_ws_agent_feed_read_t  *rd;

    if (!fd->active || fd->exiting) {
        return NULL;
    }

    argv[1] = (const char *) stream->data;
    argvlen[1] = stream->len;

    if (start) {
        argv[0] = "XRANGE";
        argvlen[0] = 6;
        argv[2] = (const char *) start->data;
        argvlen[2] = start->len;
        argv[3] = "+";
        argvlen[3] = 1;

    } else {
        argv[0] = "XREVRANGE";
        argvlen[0] = 9;
        argv[2] = "+";
        argvlen[2] = 1;
        argv[3] = "-";
        argvlen[3] = 1;
    }

    argv[4] = "COUNT";
    argvlen[4] = 5;
    argv[5] = (const char *) num;
    argvlen[5] = ngx_sprintf(num, "%ui", count) - num;

    len = redisFormatCommandArgv(&cmd, 6, argv, argvlen);
    if (len < 0) {
        return NULL;
    }

    rd = ngx_alloc(offsetof(ngx_ws_agent_feed_read_t, cmd) + len, log);
    if (rd == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    ngx_memcpy(rd->cmd, cmd, len);
    rd->len = len;
    rd->handler = handler;
    rd->data = data;
    rd->sent = 0;

    redisFreeCommand(cmd);

    ngx_queue_insert_tail(&fd->waiting, &rd->queue);
    ngx_ws_agent_feed_send_reads(fd);

    return rd;
}


void
ngx_ws_agent_feed_cancel(ngx_ws_agent_feed_read_t *rd)
{
    rd->data = NULL;

    if (!rd->sent) {
        ngx_queue_remove(&rd->queue);
        ngx_free(rd);
    }

    /* a sent one is freed when its reply comes */
}


static void
ngx_ws_agent_feed_send_reads(ngx_ws_agent_feed_t *fd)
{
    ngx_queue_t               *q;
    ngx_ws_agent_feed_read_t  *rd;

    while (ngx_ws_agent_redis_node_ready(&fd->reads)
           && !ngx_queue_empty(&fd->waiting))
    {
        q = ngx_queue_head(&fd->waiting);
        rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);

        if (ngx_ws_agent_redis_node_send(&fd->reads, rd->cmd, rd->len)
            != NGX_OK)
        {
            ngx_ws_agent_redis_node_reset(&fd->reads, "out of memory");
            return;
        }

        ngx_queue_remove(q);
        ngx_queue_insert_tail(&fd->sent, q);
        rd->sent = 1;
    }
}


static void
ngx_ws_agent_feed_reads_ready(ngx_ws_agent_redis_node_t *node)
{
    ngx_ws_agent_feed_send_reads(node->data);
}


static void
ngx_ws_agent_feed_reads_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr)
{
    ngx_queue_t               *q;
    ngx_ws_agent_feed_t       *fd = node->data;
    ngx_ws_agent_feed_read_t  *rd;

    if (ngx_queue_empty(&fd->sent)) {
        ngx_log_error(NGX_LOG_ALERT, fd->log, 0,
                      "ws_agent: Redis %V sent a stream reply to no read",
                      &fd->conf->redis.addr);
        return;
    }

    q = ngx_queue_head(&fd->sent);
    rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);
    ngx_queue_remove(q);

    if (rd->data) {
        rd->handler(rd->data, rr);
    }

    ngx_free(rd);
}


/* reads unanswered go again, first and in order, on the next connection */

static void
ngx_ws_agent_feed_reads_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged)
{
    ngx_queue_t               *q;
    ngx_ws_agent_feed_t       *fd = node->data;
    ngx_ws_agent_feed_read_t  *rd;

    if (fd->exiting) {
        return;
    }

    if (node->not_master && fd->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_ask(&fd->sentinel);
    }

    while (!ngx_queue_empty(&fd->sent)) {
        q = ngx_queue_last(&fd->sent);
        rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);
        ngx_queue_remove(q);

        if (rd->data == NULL) {
            ngx_free(rd);
            continue;
        }

        rd->sent = 0;
        ngx_queue_insert_head(&fd->waiting, q);
    }
}
