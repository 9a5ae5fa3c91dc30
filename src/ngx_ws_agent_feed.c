/*
 * The subscribers' side of Redis (see ngx_ws_agent_feed.h).
 *
 * A shard is one server's pair of connections (pub/sub and reads): the
 * only one, or, in a Redis Cluster, one per master the map names, with
 * SSUBSCRIBE (sharded pub/sub: a channel lives on its slot's master) and
 * each read sent to its stream's slot's master.
 *
 * A channel is in the worker's tree while anyone watches it or a command
 * about it is on the way.  Its state says what its shard was last asked:
 *   idle           nothing (the connection is down, no master is known
 *                  for its slot, or not asked yet)
 *   subscribing    (S)SUBSCRIBE sent, not confirmed
 *   subscribed     confirmed: messages flow, watchers were told live()
 *   unsubscribing  (S)UNSUBSCRIBE sent (the last watcher left)
 * Pub/sub replies come in the order of the commands, so a channel left
 * and watched again (UNSUBSCRIBE, then SUBSCRIBE) is live only when every
 * command sent about it is confirmed: at the last SUBSCRIBE's reply.
 * A channel whose slot moves (the map, a MOVED, or Redis dropping it with
 * a sunsubscribe) leaves its shard: its watchers are told lost(), and
 * live() once the new owner confirms it; whatever a shard says about a
 * channel that is not (or no longer) its own is ignored.  Watchers are
 * told on the node's events, never asked to answer synchronously: what
 * they do about it (close a client) they post.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_feed.h"
#include "ngx_ws_agent_redis_cluster.h"
#include "ngx_ws_agent_redis_node.h"
#include "ngx_ws_agent_redis_sentinel.h"
#include "ngx_ws_agent_stats.h"


#define NGX_WS_AGENT_FEED_AGAIN      100     /* ms, after ASK or no map */
#define NGX_WS_AGENT_FEED_REDIRECTS  16      /* then the read's error */
#define NGX_WS_AGENT_FEED_NO_SHARD   NGX_WS_AGENT_NO_ROUTE


typedef enum {
    NGX_WS_AGENT_CHANNEL_IDLE = 0,
    NGX_WS_AGENT_CHANNEL_SUBSCRIBING,
    NGX_WS_AGENT_CHANNEL_SUBSCRIBED,
    NGX_WS_AGENT_CHANNEL_UNSUBSCRIBING
} ngx_ws_agent_channel_state_e;


typedef struct ngx_ws_agent_feed_s        ngx_ws_agent_feed_t;
typedef struct ngx_ws_agent_feed_shard_s  ngx_ws_agent_feed_shard_t;


struct ngx_ws_agent_feed_channel_s {
    ngx_str_node_t                  sn;         /* its name, in the tree */
    ngx_queue_t                     watchers;
    ngx_uint_t                      nwatchers;
    ngx_ws_agent_channel_state_e    state;
    ngx_ws_agent_feed_shard_t      *shard;      /* NULL: no master known */
    ngx_uint_t                      slot;       /* in a cluster */
    ngx_uint_t                      pending;    /* commands unconfirmed */
    unsigned                        on_redis:1; /* its shard has it */
    u_char                          name[1];
};


struct ngx_ws_agent_feed_read_s {
    ngx_queue_t                     queue;      /* a shard's, or unrouted */
    ngx_ws_agent_feed_read_pt       handler;
    void                           *data;       /* NULL: canceled */
    ngx_uint_t                      slot;
    ngx_uint_t                      redirects;
    unsigned                        sent:1;
    size_t                          len;
    u_char                          cmd[1];
};


/*
 * A (S)SUBSCRIBE or (S)UNSUBSCRIBE sent and not answered yet: replies come
 * in the order of the commands, so each one is matched to its command by
 * place, and checked by name; a sunsubscribe that answers nothing is Redis
 * dropping the channel (its slot moved)
 */
typedef struct {
    ngx_queue_t                     queue;
    ngx_ws_agent_feed_channel_t    *channel;    /* NULL: it left the shard */
    unsigned                        subscribe:1;
    size_t                          len;
    u_char                          name[1];
} ngx_ws_agent_feed_cmd_t;


/* one server's connections: the only one, or a cluster master's */
struct ngx_ws_agent_feed_shard_s {
    ngx_ws_agent_feed_t            *feed;
    ngx_ws_agent_redis_node_t       sub;        /* pub/sub */
    ngx_ws_agent_redis_node_t       reads;      /* XRANGE */
    ngx_ws_agent_redis_server_t     server;     /* a cluster master's */
    ngx_str_t                      *name;       /* for the log */
    ngx_queue_t                     waiting;    /* reads not sent */
    ngx_queue_t                     sent;       /* reads awaiting a reply */
    ngx_queue_t                     commands;   /* pub/sub, unanswered */
    ngx_uint_t                      subscribed; /* channels it has */
    unsigned                        open:1;     /* its nodes are started */
};


struct ngx_ws_agent_feed_s {
    ngx_ws_agent_main_conf_t       *conf;
    ngx_log_t                      *log;

    ngx_ws_agent_feed_shard_t      *shards[NGX_WS_AGENT_MAX_NODES];
    ngx_uint_t                      nshards;
    ngx_ws_agent_redis_node_t      *steered[2];
    ngx_ws_agent_redis_sentinel_t   sentinel;   /* sentinel:NAME only */
    ngx_ws_agent_redis_cluster_t   *cluster;    /* cluster only */
    uint8_t                        *route;      /* slot: shard, or none */

    ngx_rbtree_t                    tree;
    ngx_rbtree_node_t               sentinel_node;
    ngx_uint_t                      nchannels;
    ngx_uint_t                      subscribed;

    ngx_queue_t                     unrouted;   /* reads, no master known */
    ngx_event_t                     again;      /* route what waits, soon */

    const char                     *subscribe;  /* the verbs: sharded */
    const char                     *unsubscribe;    /* in a cluster */

    unsigned                        active:1;
    unsigned                        exiting:1;
};


static ngx_ws_agent_feed_shard_t *ngx_ws_agent_feed_shard_add(
    ngx_ws_agent_feed_t *fd, ngx_ws_agent_redis_server_t *server,
    ngx_str_t *name);
static ngx_ws_agent_feed_shard_t *ngx_ws_agent_feed_shard_at(
    ngx_ws_agent_feed_t *fd, struct sockaddr *sa, socklen_t socklen);
static void ngx_ws_agent_feed_shard_open(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_shard_t *sh);
static void ngx_ws_agent_feed_shard_close(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_shard_t *sh);
static ngx_ws_agent_feed_shard_t *ngx_ws_agent_feed_owner(
    ngx_ws_agent_feed_t *fd, ngx_uint_t slot);
static void ngx_ws_agent_feed_map(ngx_ws_agent_redis_cluster_t *cl);
static void ngx_ws_agent_feed_again(ngx_event_t *ev);
static void ngx_ws_agent_feed_soon(ngx_ws_agent_feed_t *fd);

static ngx_ws_agent_feed_channel_t *ngx_ws_agent_feed_lookup(
    ngx_ws_agent_feed_t *fd, u_char *name, size_t len);
static void ngx_ws_agent_feed_subscribe(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_detach(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_command(ngx_ws_agent_feed_shard_t *sh,
    ngx_uint_t subscribe, ngx_ws_agent_feed_channel_t *ch, u_char *name,
    size_t len);
static ngx_ws_agent_feed_cmd_t *ngx_ws_agent_feed_answered(
    ngx_ws_agent_feed_shard_t *sh, ngx_uint_t subscribe, redisReply *name);
static void ngx_ws_agent_feed_forget(ngx_ws_agent_feed_shard_t *sh,
    ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_unsubscribed(ngx_ws_agent_feed_shard_t *sh,
    ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_free(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch);
static void ngx_ws_agent_feed_tell(ngx_ws_agent_feed_channel_t *ch,
    ngx_uint_t live);
static void ngx_ws_agent_feed_sub_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_feed_sub_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_feed_sub_moved(ngx_ws_agent_feed_shard_t *sh,
    ngx_ws_agent_feed_channel_t *ch, redisReply *rr);
static void ngx_ws_agent_feed_sub_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);

static void ngx_ws_agent_feed_route_read(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_read_t *rd, ngx_ws_agent_feed_shard_t *sh);
static void ngx_ws_agent_feed_route_reads(ngx_ws_agent_feed_t *fd,
    ngx_queue_t *from);
static void ngx_ws_agent_feed_send_reads(ngx_ws_agent_feed_shard_t *sh);
static void ngx_ws_agent_feed_reads_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_feed_reads_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_feed_reads_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static void ngx_ws_agent_feed_free_reads(ngx_queue_t *q);


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
    ngx_ws_agent_feed_t        *fd = &ngx_ws_agent_feed;
    ngx_ws_agent_feed_shard_t  *sh;

    ngx_memzero(fd, sizeof(ngx_ws_agent_feed_t));

    if (wmcf == NULL || !wmcf->configured || !wmcf->subscribers) {
        return NGX_OK;
    }

    fd->conf = wmcf;
    fd->log = cycle->log;
    fd->active = 1;

    ngx_rbtree_init(&fd->tree, &fd->sentinel_node,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&fd->unrouted);

    fd->again.handler = ngx_ws_agent_feed_again;
    fd->again.data = fd;
    fd->again.log = cycle->log;
    fd->again.cancelable = 1;

    if (wmcf->redis.cluster) {
        fd->subscribe = "SSUBSCRIBE";
        fd->unsubscribe = "SUNSUBSCRIBE";

        fd->cluster = ngx_pcalloc(cycle->pool,
                                  sizeof(ngx_ws_agent_redis_cluster_t));
        fd->route = ngx_pnalloc(cycle->pool, NGX_WS_AGENT_SLOTS);
        if (fd->cluster == NULL || fd->route == NULL) {
            return NGX_ERROR;
        }

        ngx_memset(fd->route, NGX_WS_AGENT_FEED_NO_SHARD, NGX_WS_AGENT_SLOTS);

        /* the masters' shards come with the map */
        ngx_ws_agent_redis_node_action(&fd->cluster->node,
                            "learning the cluster map for subscribers");
        ngx_ws_agent_redis_cluster_start(fd->cluster, &wmcf->seeds,
                                         ngx_ws_agent_feed_map, fd,
                                         cycle->log);
        return NGX_OK;
    }

    fd->subscribe = "SUBSCRIBE";
    fd->unsubscribe = "UNSUBSCRIBE";

    sh = ngx_ws_agent_feed_shard_add(fd, NULL, &wmcf->redis.addr);
    if (sh == NULL) {
        return NGX_ERROR;
    }

    ngx_ws_agent_feed_shard_open(fd, sh);

    if (wmcf->redis.master.len) {
        fd->steered[0] = &sh->sub;
        fd->steered[1] = &sh->reads;

        ngx_ws_agent_redis_sentinel_start(&fd->sentinel, &wmcf->sentinels,
                                          &wmcf->redis, fd->steered, 2,
                                          cycle->log);
    }

    return NGX_OK;
}


void
ngx_ws_agent_feed_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                  i;
    ngx_queue_t                *q;
    ngx_ws_agent_feed_t        *fd = &ngx_ws_agent_feed;
    ngx_ws_agent_feed_shard_t  *sh;

    if (!fd->active) {
        return;
    }

    fd->exiting = 1;

    if (fd->again.timer_set) {
        ngx_del_timer(&fd->again);
    }

    for (i = 0; i < fd->nshards; i++) {
        sh = fd->shards[i];

        if (sh->open) {
            ngx_ws_agent_redis_node_close(&sh->sub);
            ngx_ws_agent_redis_node_close(&sh->reads);
        }

        /* the clients are gone by now (their pools' cleanups); reads not */
        ngx_ws_agent_feed_free_reads(&sh->sent);
        ngx_ws_agent_feed_free_reads(&sh->waiting);

        while (!ngx_queue_empty(&sh->commands)) {
            q = ngx_queue_head(&sh->commands);
            ngx_queue_remove(q);
            ngx_free(ngx_queue_data(q, ngx_ws_agent_feed_cmd_t, queue));
        }
    }

    ngx_ws_agent_feed_free_reads(&fd->unrouted);

    if (fd->cluster) {
        ngx_ws_agent_redis_cluster_close(fd->cluster);
    }

    if (fd->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_close(&fd->sentinel);
    }
}


/* shards */

static ngx_ws_agent_feed_shard_t *
ngx_ws_agent_feed_shard_add(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_redis_server_t *server, ngx_str_t *name)
{
    ngx_ws_agent_feed_shard_t  *sh;

    sh = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_ws_agent_feed_shard_t));
    if (sh == NULL) {
        return NULL;
    }

    sh->feed = fd;

    if (server) {
        sh->server = *server;
        sh->name = &sh->server.addr;

    } else {
        sh->name = name;
    }

    ngx_queue_init(&sh->waiting);
    ngx_queue_init(&sh->sent);
    ngx_queue_init(&sh->commands);

    fd->shards[fd->nshards++] = sh;

    return sh;
}


/* a cluster master's shard, made on first sight and opened when closed */

static ngx_ws_agent_feed_shard_t *
ngx_ws_agent_feed_shard_at(ngx_ws_agent_feed_t *fd, struct sockaddr *sa,
    socklen_t socklen)
{
    ngx_uint_t                    i;
    ngx_addr_t                   *addr;
    ngx_ws_agent_feed_shard_t    *sh;
    ngx_ws_agent_redis_server_t   server;

    for (i = 0; i < fd->nshards; i++) {
        sh = fd->shards[i];
        addr = &sh->server.addrs[0];

        if (ngx_cmp_sockaddr(sa, socklen, addr->sockaddr, addr->socklen, 1)
            == NGX_OK)
        {
            goto found;
        }
    }

    if (fd->nshards == NGX_WS_AGENT_MAX_NODES) {
        ngx_log_error(NGX_LOG_ERR, fd->log, 0,
                      "ws_agent: Redis cluster has more than %d masters, "
                      "subscribers of the others wait", NGX_WS_AGENT_MAX_NODES);
        return NULL;
    }

    if (ngx_ws_agent_redis_server_at(&server, &fd->conf->redis, sa, socklen)
        != NGX_OK)
    {
        return NULL;
    }

    sh = ngx_ws_agent_feed_shard_add(fd, &server, NULL);
    if (sh == NULL) {
        return NULL;
    }

found:

    if (!sh->open) {
        ngx_ws_agent_feed_shard_open(fd, sh);
    }

    return sh;
}


static void
ngx_ws_agent_feed_shard_open(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_shard_t *sh)
{
    ngx_ws_agent_redis_server_t  *server;

    server = fd->cluster ? &sh->server : &fd->conf->redis;

    sh->open = 1;

    ngx_ws_agent_redis_node_action(&sh->sub, "subscribing to Redis");
    ngx_ws_agent_redis_node_action(&sh->reads,
                                   "reading streams from Redis");

    ngx_ws_agent_redis_node_start(&sh->sub, server,
                                  &ngx_ws_agent_feed_sub_handler, sh,
                                  fd->log, NULL);
    ngx_ws_agent_redis_node_start(&sh->reads, server,
                                  &ngx_ws_agent_feed_reads_handler, sh,
                                  fd->log, NULL);
}


/*
 * A master that owns no slot now (failed over, emptied by a reshard) and
 * that nothing waits on: its connections closed, so it is not retried
 */

static void
ngx_ws_agent_feed_shard_close(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_shard_t *sh)
{
    ngx_log_error(NGX_LOG_INFO, fd->log, 0,
                  "ws_agent: Redis %V owns no slot now, its subscriber "
                  "connections are closed", sh->name);

    ngx_ws_agent_redis_node_close(&sh->sub);
    ngx_ws_agent_redis_node_close(&sh->reads);
    sh->open = 0;
}


static ngx_ws_agent_feed_shard_t *
ngx_ws_agent_feed_owner(ngx_ws_agent_feed_t *fd, ngx_uint_t slot)
{
    ngx_uint_t  i;

    if (fd->cluster == NULL) {
        return fd->shards[0];
    }

    i = fd->route[slot];

    return (i == NGX_WS_AGENT_FEED_NO_SHARD) ? NULL : fd->shards[i];
}


static ngx_uint_t
ngx_ws_agent_feed_index(ngx_ws_agent_feed_t *fd, ngx_ws_agent_feed_shard_t *sh)
{
    ngx_uint_t  i;

    for (i = 0; fd->shards[i] != sh; i++) { /* void */ }

    return i;
}


/*
 * A map (every 2 s, or asked after a redirect): every slot routed to its
 * master's shard; channels whose slot moved leave their shard for the
 * owner's; reads not sent go to their slot's owner; shards that own
 * nothing and hold nothing closed
 */

static void
ngx_ws_agent_feed_map(ngx_ws_agent_redis_cluster_t *cl)
{
    ngx_uint_t                    i, m, changed;
    ngx_uint_t                    owns[NGX_WS_AGENT_MAX_NODES];
    ngx_uint_t                    holds[NGX_WS_AGENT_MAX_NODES];
    uint8_t                       shard[NGX_WS_AGENT_MAX_NODES];
    ngx_queue_t                   all;
    ngx_rbtree_node_t            *n, *next;
    ngx_ws_agent_feed_t          *fd = cl->data;
    ngx_ws_agent_feed_shard_t    *sh;
    ngx_ws_agent_feed_channel_t  *ch;

    if (fd->exiting) {
        return;
    }

    for (m = 0; m < cl->nmasters; m++) {
        sh = ngx_ws_agent_feed_shard_at(fd, &cl->masters[m].sockaddr.sockaddr,
                                        cl->masters[m].socklen);
        shard[m] = sh ? (uint8_t) ngx_ws_agent_feed_index(fd, sh)
                      : NGX_WS_AGENT_FEED_NO_SHARD;
    }

    ngx_memzero(owns, sizeof(owns));
    ngx_memzero(holds, sizeof(holds));
    changed = ngx_ws_agent_redis_cluster_route(cl, shard, fd->route, owns);

    if (changed) {
        ngx_log_error(NGX_LOG_INFO, fd->log, 0,
                      "ws_agent: Redis cluster map for subscribers: %ui "
                      "masters, %ui slot(s) routed anew", cl->nmasters,
                      changed);
    }

    if (fd->tree.root != fd->tree.sentinel) {

        for (n = ngx_rbtree_min(fd->tree.root, fd->tree.sentinel);
             n;
             n = next)
        {
            next = ngx_rbtree_next(&fd->tree, n);
            ch = (ngx_ws_agent_feed_channel_t *) n;
            sh = ngx_ws_agent_feed_owner(fd, ch->slot);

            if (ch->shard && ch->shard != sh) {
                if (ch->nwatchers == 0) {
                    /* on its way out: what the old owner says is ignored */
                    ngx_ws_agent_feed_free(fd, ch);
                    continue;
                }

                ngx_ws_agent_feed_detach(fd, ch);
            }

            if (ch->state == NGX_WS_AGENT_CHANNEL_IDLE) {
                ngx_ws_agent_feed_subscribe(fd, ch);
            }

            if (ch->shard) {
                holds[ngx_ws_agent_feed_index(fd, ch->shard)]++;
            }
        }
    }

    /* every read not sent, routed by the map as it is now */
    ngx_queue_init(&all);
    ngx_queue_add(&all, &fd->unrouted);
    ngx_queue_init(&fd->unrouted);

    for (i = 0; i < fd->nshards; i++) {
        ngx_queue_add(&all, &fd->shards[i]->waiting);
        ngx_queue_init(&fd->shards[i]->waiting);
    }

    ngx_ws_agent_feed_route_reads(fd, &all);

    for (i = 0; i < fd->nshards; i++) {
        sh = fd->shards[i];

        if (sh->open && owns[i] == 0 && holds[i] == 0
            && ngx_queue_empty(&sh->waiting) && ngx_queue_empty(&sh->sent))
        {
            ngx_ws_agent_feed_shard_close(fd, sh);
        }
    }
}


/* after a redirect that names no new owner, or with no map yet */

static void
ngx_ws_agent_feed_soon(ngx_ws_agent_feed_t *fd)
{
    if (!fd->again.timer_set && !fd->exiting) {
        ngx_add_timer(&fd->again, NGX_WS_AGENT_FEED_AGAIN);
    }

    if (fd->cluster) {
        ngx_ws_agent_redis_cluster_refresh(fd->cluster);
    }
}


static void
ngx_ws_agent_feed_again(ngx_event_t *ev)
{
    ngx_queue_t                   all;
    ngx_rbtree_node_t            *n, *next;
    ngx_ws_agent_feed_t          *fd = ev->data;
    ngx_ws_agent_feed_channel_t  *ch;

    if (fd->exiting) {
        return;
    }

    if (fd->tree.root != fd->tree.sentinel) {

        for (n = ngx_rbtree_min(fd->tree.root, fd->tree.sentinel);
             n;
             n = next)
        {
            next = ngx_rbtree_next(&fd->tree, n);
            ch = (ngx_ws_agent_feed_channel_t *) n;

            if (ch->nwatchers && ch->state == NGX_WS_AGENT_CHANNEL_IDLE) {
                ngx_ws_agent_feed_subscribe(fd, ch);
            }
        }
    }

    ngx_queue_init(&all);
    ngx_queue_add(&all, &fd->unrouted);
    ngx_queue_init(&fd->unrouted);

    ngx_ws_agent_feed_route_reads(fd, &all);
}


/* watchers and channels */

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
        ch->shard = NULL;
        ch->slot = fd->cluster ? ngx_ws_agent_redis_slot(ch->name,
                                                         channel->len)
                               : 0;
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
        ngx_ws_agent_feed_subscribe(fd, ch);
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
        ngx_ws_agent_feed_command(ch->shard, 0, ch, ch->name,
                                  ch->sn.str.len);
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


/* an idle channel asked of its slot's owner, once that one is up */

static void
ngx_ws_agent_feed_subscribe(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch)
{
    if (ch->shard == NULL) {
        ch->shard = ngx_ws_agent_feed_owner(fd, ch->slot);

        if (ch->shard == NULL) {
            /* no master known for its slot yet: the map will say */
            ch->state = NGX_WS_AGENT_CHANNEL_IDLE;
            return;
        }
    }

    if (!ngx_ws_agent_redis_node_ready(&ch->shard->sub)) {
        /* asked when the connection is up (sub_ready) */
        ch->state = NGX_WS_AGENT_CHANNEL_IDLE;
        return;
    }

    ngx_ws_agent_feed_command(ch->shard, 1, ch, ch->name, ch->sn.str.len);
    ch->state = NGX_WS_AGENT_CHANNEL_SUBSCRIBING;
}


/*
 * ch leaves its shard (its slot moved): unsubscribed there if the shard
 * has it (what the shard answers about it is ignored from now on: its
 * commands are forgotten), its watchers told lost() if they were live;
 * idle, with no shard
 */

static void
ngx_ws_agent_feed_detach(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch)
{
    ngx_ws_agent_feed_shard_t     *sh = ch->shard;
    ngx_ws_agent_channel_state_e   was = ch->state;

    if (sh == NULL) {
        return;
    }

    ngx_ws_agent_feed_forget(sh, ch);

    if (ch->on_redis) {
        ngx_ws_agent_feed_unsubscribed(sh, ch);

        if (ngx_ws_agent_redis_node_ready(&sh->sub)) {
            ngx_ws_agent_feed_command(sh, 0, NULL, ch->name, ch->sn.str.len);
        }
    }

    ch->shard = NULL;
    ch->state = NGX_WS_AGENT_CHANNEL_IDLE;
    ch->pending = 0;

    if (was == NGX_WS_AGENT_CHANNEL_SUBSCRIBED) {
        ngx_ws_agent_feed_tell(ch, 0);
    }
}


static void
ngx_ws_agent_feed_command(ngx_ws_agent_feed_shard_t *sh,
    ngx_uint_t subscribe, ngx_ws_agent_feed_channel_t *ch, u_char *name,
    size_t len)
{
    int                       n;
    char                     *cmd;
    const char               *argv[2];
    size_t                    argvlen[2];
    ngx_ws_agent_feed_cmd_t  *c;

    argv[0] = subscribe ? sh->feed->subscribe : sh->feed->unsubscribe;
    argvlen[0] = ngx_strlen(argv[0]);
    argv[1] = (const char *) name;
    argvlen[1] = len;

    c = ngx_alloc(offsetof(ngx_ws_agent_feed_cmd_t, name) + len, sh->feed->log);
    if (c == NULL) {
        ngx_ws_agent_redis_node_reset(&sh->sub, "out of memory");
        return;
    }

    n = redisFormatCommandArgv(&cmd, 2, argv, argvlen);
    if (n < 0) {
        ngx_free(c);
        ngx_ws_agent_redis_node_reset(&sh->sub, "out of memory");
        return;
    }

    c->channel = ch;
    c->subscribe = subscribe;
    c->len = len;
    ngx_memcpy(c->name, name, len);
    ngx_queue_insert_tail(&sh->commands, &c->queue);

    if (ch) {
        ch->pending++;
    }

    if (ngx_ws_agent_redis_node_send(&sh->sub, (u_char *) cmd, n) != NGX_OK) {
        ngx_ws_agent_redis_node_reset(&sh->sub, "out of memory");
    }

    redisFreeCommand(cmd);
}


/*
 * The command a confirmation answers: the oldest unanswered one, which
 * must be of its kind and name (subscribe: 1, 0, or 2 for an error, which
 * names nothing); NULL, with the connection reset, if it is not
 */

static ngx_ws_agent_feed_cmd_t *
ngx_ws_agent_feed_answered(ngx_ws_agent_feed_shard_t *sh,
    ngx_uint_t subscribe, redisReply *name)
{
    ngx_ws_agent_feed_cmd_t  *c;

    if (ngx_queue_empty(&sh->commands)) {
        c = NULL;

    } else {
        c = ngx_queue_data(ngx_queue_head(&sh->commands),
                           ngx_ws_agent_feed_cmd_t, queue);

        if (subscribe != 2
            && (c->subscribe != subscribe || c->len != name->len
                || ngx_strncmp(c->name, name->str, c->len) != 0))
        {
            c = NULL;
        }
    }

    if (c == NULL) {
        ngx_log_error(NGX_LOG_ERR, sh->feed->log, 0,
                      "ws_agent: Redis %V answered a subscription out of "
                      "order, reconnecting", sh->name);
        ngx_ws_agent_redis_node_reset(&sh->sub, "a reply out of order");
        return NULL;
    }

    ngx_queue_remove(&c->queue);

    if (c->channel) {
        c->channel->pending--;
    }

    return c;
}


/* what sh answers about ch from now on is answered to nobody */

static void
ngx_ws_agent_feed_forget(ngx_ws_agent_feed_shard_t *sh,
    ngx_ws_agent_feed_channel_t *ch)
{
    ngx_queue_t              *q;
    ngx_ws_agent_feed_cmd_t  *c;

    for (q = ngx_queue_head(&sh->commands);
         q != ngx_queue_sentinel(&sh->commands);
         q = ngx_queue_next(q))
    {
        c = ngx_queue_data(q, ngx_ws_agent_feed_cmd_t, queue);

        if (c->channel == ch) {
            c->channel = NULL;
        }
    }

    ch->pending = 0;
}


static void
ngx_ws_agent_feed_unsubscribed(ngx_ws_agent_feed_shard_t *sh,
    ngx_ws_agent_feed_channel_t *ch)
{
    if (ch->on_redis) {
        ch->on_redis = 0;
        sh->subscribed--;
        sh->feed->subscribed--;
        ngx_ws_agent_gauge(subscriptions, -1);
    }
}


static void
ngx_ws_agent_feed_free(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_channel_t *ch)
{
    if (ch->shard) {
        ngx_ws_agent_feed_forget(ch->shard, ch);
        ngx_ws_agent_feed_unsubscribed(ch->shard, ch);
    }

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
    ngx_uint_t                    n;
    ngx_rbtree_node_t            *rn, *next;
    ngx_ws_agent_feed_shard_t    *sh = node->data;
    ngx_ws_agent_feed_t          *fd = sh->feed;
    ngx_ws_agent_feed_channel_t  *ch;

    n = 0;

    if (fd->tree.root != fd->tree.sentinel) {

        for (rn = ngx_rbtree_min(fd->tree.root, fd->tree.sentinel);
             rn;
             rn = next)
        {
            next = ngx_rbtree_next(&fd->tree, rn);
            ch = (ngx_ws_agent_feed_channel_t *) rn;

            if (ch->state != NGX_WS_AGENT_CHANNEL_IDLE
                || (ch->shard != sh
                    && (ch->shard || ngx_ws_agent_feed_owner(fd, ch->slot)
                                     != sh)))
            {
                continue;
            }

            if (ch->nwatchers == 0) {
                ngx_ws_agent_feed_free(fd, ch);
                continue;
            }

            ngx_ws_agent_feed_subscribe(fd, ch);
            n++;
        }
    }

    ngx_log_error(NGX_LOG_INFO, fd->log, 0,
                  "ws_agent: Redis %V connected for subscribers, "
                  "%ui channel(s) to subscribe", sh->name, n);
}


static void
ngx_ws_agent_feed_sub_reply(ngx_ws_agent_redis_node_t *node, redisReply *rr)
{
    u_char                       *kind;
    size_t                        len;
    redisReply                   *name;
    ngx_queue_t                  *q, *next;
    ngx_ws_agent_watch_t         *w;
    ngx_ws_agent_feed_cmd_t      *c;
    ngx_ws_agent_feed_shard_t    *sh = node->data;
    ngx_ws_agent_feed_t          *fd = sh->feed;
    ngx_ws_agent_feed_channel_t  *ch;

    if (rr->type == REDIS_REPLY_ERROR) {
        c = ngx_ws_agent_feed_answered(sh, 2, NULL);
        if (c == NULL) {
            return;
        }

        ch = c->channel;
        ngx_free(c);

        if (fd->cluster
            && (ngx_strncmp(rr->str, "MOVED ", 6) == 0
                || ngx_strncmp(rr->str, "ASK ", 4) == 0))
        {
            if (ch) {
                ngx_ws_agent_feed_sub_moved(sh, ch, rr);
            }

            /* an unsubscribe of a channel that left: nothing to undo */
            return;
        }

        /* NOPERM for a channel, most likely: said, and asked again later */
        ngx_log_error(NGX_LOG_ERR, fd->log, 0,
                      "ws_agent: Redis %V refused a subscription: %*s",
                      sh->name, (size_t) rr->len, rr->str);
        ngx_ws_agent_redis_node_reset(node, rr->str);
        return;
    }

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements != 3
        || rr->element[0]->type != REDIS_REPLY_STRING
        || rr->element[1]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    /* the sharded kinds are the plain ones with an "s" in front */
    kind = (u_char *) rr->element[0]->str;
    len = rr->element[0]->len;

    if (fd->cluster && len > 1 && kind[0] == 's') {
        kind++;
        len--;
    }

    name = rr->element[1];

    if (len == 7 && ngx_strncmp(kind, "message", 7) == 0) {
        ch = ngx_ws_agent_feed_lookup(fd, (u_char *) name->str, name->len);

        /* a shard the channel has left may still pass messages on */
        if (ch == NULL || ch->shard != sh
            || ch->state != NGX_WS_AGENT_CHANNEL_SUBSCRIBED
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

    if (len == 9 && ngx_strncmp(kind, "subscribe", 9) == 0) {
        c = ngx_ws_agent_feed_answered(sh, 1, name);
        if (c == NULL) {
            return;
        }

        ch = c->channel;
        ngx_free(c);

        if (ch == NULL) {
            /* confirmed after the channel left: not wanted here */
            ngx_ws_agent_feed_command(sh, 0, NULL, (u_char *) name->str,
                                      name->len);
            return;
        }

        if (!ch->on_redis) {
            ch->on_redis = 1;
            sh->subscribed++;
            fd->subscribed++;
            ngx_ws_agent_gauge(subscriptions, 1);
        }

        if (ch->pending == 0
            && ch->state == NGX_WS_AGENT_CHANNEL_SUBSCRIBING)
        {
            ch->state = NGX_WS_AGENT_CHANNEL_SUBSCRIBED;
            ngx_ws_agent_feed_tell(ch, 1);
        }

        return;
    }

    if (len == 11 && ngx_strncmp(kind, "unsubscribe", 11) == 0) {

        if (!ngx_queue_empty(&sh->commands)) {
            c = ngx_queue_data(ngx_queue_head(&sh->commands),
                               ngx_ws_agent_feed_cmd_t, queue);

            if (!c->subscribe && c->len == name->len
                && ngx_strncmp(c->name, name->str, c->len) == 0)
            {
                /* the answer to an unsubscribe */
                c = ngx_ws_agent_feed_answered(sh, 0, name);
                ch = c->channel;
                ngx_free(c);

                if (ch == NULL) {
                    return;
                }

                ngx_ws_agent_feed_unsubscribed(sh, ch);

                if (ch->pending == 0
                    && ch->state == NGX_WS_AGENT_CHANNEL_UNSUBSCRIBING)
                {
                    ngx_ws_agent_feed_free(fd, ch);
                }

                return;
            }
        }

        /*
         * answering nothing: Redis dropped the channel (its slot left
         * this master); subscribed again where the map says, caught up
         */
        ch = ngx_ws_agent_feed_lookup(fd, (u_char *) name->str, name->len);

        if (ch == NULL || ch->shard != sh || !ch->on_redis) {
            return;
        }

        ngx_log_error(NGX_LOG_INFO, fd->log, 0,
                      "ws_agent: Redis %V dropped the subscription of "
                      "\"%V\" (its slot moved)", sh->name, &ch->sn.str);

        ngx_ws_agent_feed_unsubscribed(sh, ch);
        ngx_ws_agent_feed_detach(fd, ch);

        if (ch->nwatchers == 0) {
            ngx_ws_agent_feed_free(fd, ch);
            return;
        }

        ngx_ws_agent_feed_soon(fd);
    }
}


/*
 * A MOVED or an ASK for ch's SUBSCRIBE: ch leaves this shard; after a
 * MOVED it goes to the new owner at once, after an ASK (its slot is being
 * migrated) where the map says, a little later
 */

static void
ngx_ws_agent_feed_sub_moved(ngx_ws_agent_feed_shard_t *sh,
    ngx_ws_agent_feed_channel_t *ch, redisReply *rr)
{
    ngx_ws_agent_feed_t            *fd = sh->feed;
    ngx_ws_agent_feed_shard_t      *to;
    ngx_ws_agent_redis_redirect_t   rd;

    if (ngx_ws_agent_redis_redirect_parse((u_char *) rr->str, rr->len, &rd)
        != NGX_OK
        || rd.slot != ch->slot)
    {
        ngx_log_error(NGX_LOG_ERR, fd->log, 0,
                      "ws_agent: Redis %V answered the subscription of "
                      "\"%V\" with \"%*s\"", sh->name, &ch->sn.str,
                      (size_t) rr->len, rr->str);
        ngx_ws_agent_redis_node_reset(&sh->sub, "a redirect out of place");
        return;
    }

    ngx_log_error(NGX_LOG_INFO, fd->log, 0,
                  "ws_agent: Redis %V: the slot of \"%V\" moved to %V",
                  sh->name, &ch->sn.str, &rd.where);

    to = rd.moved ? ngx_ws_agent_feed_shard_at(fd, &rd.sockaddr.sockaddr,
                                               rd.socklen)
                  : NULL;

    /* after an ASK: the owner is being changed, the map will say */
    fd->route[rd.slot] = to ? (uint8_t) ngx_ws_agent_feed_index(fd, to)
                            : NGX_WS_AGENT_FEED_NO_SHARD;

    ngx_ws_agent_feed_detach(fd, ch);

    if (ch->nwatchers == 0) {
        ngx_ws_agent_feed_free(fd, ch);
        return;
    }

    ngx_ws_agent_feed_subscribe(fd, ch);

    if (ch->shard == NULL) {
        ngx_ws_agent_feed_soon(fd);

    } else if (fd->cluster) {
        ngx_ws_agent_redis_cluster_refresh(fd->cluster);
    }
}


static void
ngx_ws_agent_feed_sub_down(ngx_ws_agent_redis_node_t *node, const char *why,
    ngx_uint_t logged)
{
    ngx_queue_t                  *q;
    ngx_rbtree_node_t            *n, *next;
    ngx_ws_agent_feed_shard_t    *sh = node->data;
    ngx_ws_agent_feed_t          *fd = sh->feed;
    ngx_ws_agent_feed_channel_t  *ch;

    if (fd->exiting) {
        return;
    }

    if (node->not_master && fd->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_ask(&fd->sentinel);
    }

    if (fd->cluster) {
        /* a master gone may be a failover: the map will say */
        ngx_ws_agent_redis_cluster_refresh(fd->cluster);
    }

    if (!logged && sh->subscribed) {
        ngx_log_error(NGX_LOG_ERR, fd->log, 0,
                      "ws_agent: Redis %V unavailable for subscribers (%s): "
                      "%ui channel(s) wait, their clients resume from the "
                      "stream once it is back", sh->name, why,
                      sh->subscribed);
    }

    ngx_ws_agent_gauge(subscriptions, -(ngx_atomic_int_t) sh->subscribed);
    fd->subscribed -= sh->subscribed;
    sh->subscribed = 0;

    /* never answered now */
    while (!ngx_queue_empty(&sh->commands)) {
        q = ngx_queue_head(&sh->commands);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ws_agent_feed_cmd_t, queue));
    }

    if (fd->tree.root == fd->tree.sentinel) {
        return;
    }

    for (n = ngx_rbtree_min(fd->tree.root, fd->tree.sentinel); n; n = next) {
        next = ngx_rbtree_next(&fd->tree, n);
        ch = (ngx_ws_agent_feed_channel_t *) n;

        if (ch->shard != sh) {
            continue;
        }

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
    rd->redirects = 0;
    rd->slot = fd->cluster ? ngx_ws_agent_redis_slot(stream->data,
                                                     stream->len)
                           : 0;

    redisFreeCommand(cmd);

    ngx_ws_agent_feed_route_read(fd, rd,
                                 ngx_ws_agent_feed_owner(fd, rd->slot));

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


/* rd waits on sh (NULL: no master known), and goes as soon as it can */

static void
ngx_ws_agent_feed_route_read(ngx_ws_agent_feed_t *fd,
    ngx_ws_agent_feed_read_t *rd, ngx_ws_agent_feed_shard_t *sh)
{
    rd->sent = 0;

    if (sh == NULL) {
        ngx_queue_insert_tail(&fd->unrouted, &rd->queue);
        ngx_ws_agent_feed_soon(fd);
        return;
    }

    ngx_queue_insert_tail(&sh->waiting, &rd->queue);
    ngx_ws_agent_feed_send_reads(sh);
}


static void
ngx_ws_agent_feed_route_reads(ngx_ws_agent_feed_t *fd, ngx_queue_t *from)
{
    ngx_queue_t               *q;
    ngx_ws_agent_feed_read_t  *rd;

    while (!ngx_queue_empty(from)) {
        q = ngx_queue_head(from);
        ngx_queue_remove(q);
        rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);

        ngx_ws_agent_feed_route_read(fd, rd,
                                     ngx_ws_agent_feed_owner(fd, rd->slot));
    }
}


static void
ngx_ws_agent_feed_send_reads(ngx_ws_agent_feed_shard_t *sh)
{
    ngx_queue_t               *q;
    ngx_ws_agent_feed_read_t  *rd;

    while (ngx_ws_agent_redis_node_ready(&sh->reads)
           && !ngx_queue_empty(&sh->waiting))
    {
        q = ngx_queue_head(&sh->waiting);
        rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);

        if (ngx_ws_agent_redis_node_send(&sh->reads, rd->cmd, rd->len)
            != NGX_OK)
        {
            ngx_ws_agent_redis_node_reset(&sh->reads, "out of memory");
            return;
        }

        ngx_queue_remove(q);
        ngx_queue_insert_tail(&sh->sent, q);
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
    ngx_queue_t                    *q;
    ngx_ws_agent_feed_shard_t      *sh = node->data, *to;
    ngx_ws_agent_feed_t            *fd = sh->feed;
    ngx_ws_agent_feed_read_t       *rd;
    ngx_ws_agent_redis_redirect_t   redirect;

    if (ngx_queue_empty(&sh->sent)) {
        ngx_log_error(NGX_LOG_ALERT, fd->log, 0,
                      "ws_agent: Redis %V sent a stream reply to no read",
                      sh->name);
        return;
    }

    q = ngx_queue_head(&sh->sent);
    rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);
    ngx_queue_remove(q);

    if (rd->data && fd->cluster && rr->type == REDIS_REPLY_ERROR
        && ((rd->redirects < NGX_WS_AGENT_FEED_REDIRECTS
             && (ngx_strncmp(rr->str, "MOVED ", 6) == 0
                 || ngx_strncmp(rr->str, "ASK ", 4) == 0))
            || ngx_strncmp(rr->str, "TRYAGAIN", 8) == 0
            || ngx_strncmp(rr->str, "CLUSTERDOWN", 11) == 0))
    {
        /*
         * the stream is elsewhere, or will be (a slot being moved, a
         * master being replaced): read there, or a little later; a
         * redirect that keeps coming back ends as the asker's error
         */
        rd->redirects += (rr->str[0] == 'M' || rr->str[0] == 'A');
        to = NULL;

        if (ngx_ws_agent_redis_redirect_parse((u_char *) rr->str, rr->len,
                                              &redirect)
            == NGX_OK
            && redirect.moved)
        {
            to = ngx_ws_agent_feed_shard_at(fd, &redirect.sockaddr.sockaddr,
                                            redirect.socklen);
        }

        if (to == NULL) {
            /* the map, a little later */
            ngx_queue_insert_tail(&fd->unrouted, &rd->queue);
            rd->sent = 0;
            ngx_ws_agent_feed_soon(fd);
            return;
        }

        ngx_ws_agent_redis_cluster_refresh(fd->cluster);
        ngx_ws_agent_feed_route_read(fd, rd, to);
        return;
    }

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
    ngx_queue_t                *q;
    ngx_ws_agent_feed_shard_t  *sh = node->data;
    ngx_ws_agent_feed_t        *fd = sh->feed;
    ngx_ws_agent_feed_read_t   *rd;

    if (fd->exiting) {
        return;
    }

    if (node->not_master && fd->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_ask(&fd->sentinel);
    }

    if (fd->cluster) {
        ngx_ws_agent_redis_cluster_refresh(fd->cluster);
    }

    while (!ngx_queue_empty(&sh->sent)) {
        q = ngx_queue_last(&sh->sent);
        rd = ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue);
        ngx_queue_remove(q);

        if (rd->data == NULL) {
            ngx_free(rd);
            continue;
        }

        rd->sent = 0;
        ngx_queue_insert_head(&sh->waiting, q);
    }
}


static void
ngx_ws_agent_feed_free_reads(ngx_queue_t *from)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(from)) {
        q = ngx_queue_head(from);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ws_agent_feed_read_t, queue));
    }
}
