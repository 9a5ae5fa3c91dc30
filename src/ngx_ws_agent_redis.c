/*
 * The Redis publisher (see ngx_ws_agent_redis.h).
 *
 * The worker's events go to Redis through targets: one node (the
 * connection, ngx_ws_agent_redis_node.c) and the events held for it.  A
 * single server or a sentinel's master is one target; in a cluster each
 * master is one, an event goes to the target owning its channel's slot,
 * and the events of slots with no known master wait in "unrouted" until
 * the map names one.  Replies come in order per target.
 *
 * Every change to what a target holds goes through the
 * ngx_ws_agent_redis_queue_*() functions, which keep the counts, the one
 * bound over all targets (ws_agent_redis_queue) and the status page's
 * figures; every loss goes through ngx_ws_agent_redis_lost(), which counts
 * it and has it logged.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_redis.h"
#include "ngx_ws_agent_redis_node.h"
#include "ngx_ws_agent_redis_sentinel.h"
#include "ngx_ws_agent_redis_cluster.h"
#include "ngx_ws_agent_stats.h"

#include <openssl/sha.h>


#define NGX_WS_AGENT_REDIS_WINDOW       1024
#define NGX_WS_AGENT_REDIS_EXIT_FLUSH   500
#define NGX_WS_AGENT_REDIS_LOSS_WINDOW  1000
#define NGX_WS_AGENT_REDIS_MIGRATING    100     /* ms, the map asked again */


typedef enum {
    NGX_WS_AGENT_LINE_RESEND = 0,
    NGX_WS_AGENT_LINE_WAITING,
    NGX_WS_AGENT_LINE_IN_FLIGHT,
    NGX_WS_AGENT_NLINES
} ngx_ws_agent_line_e;


/* an event, as the RESP command that publishes it */
typedef struct {
    ngx_queue_t                   queue;
    ngx_uint_t                    stamp;        /* arrival order */
    uint16_t                      slot;         /* in a cluster */
    unsigned                      line:2;
    unsigned                      asking:1;     /* ASKING first (ASK) */
    unsigned                      asked:1;      /* ASKING was answered */
    unsigned                      script:1;     /* EVALSHA (a stream) */
    size_t                        len;
    u_char                        data[1];
} ngx_ws_agent_item_t;


/*
 * What a target holds, in three lines, each in the order its events are
 * sent:
 *   resend     sent on a connection lost before Redis replied (or sent to
 *              the wrong node): they go first on the next one (Redis may
 *              have published them, then a subscriber sees their seq twice)
 *   waiting    never sent
 *   in_flight  sent on this connection, reply pending (pipelined, at most
 *              NGX_WS_AGENT_REDIS_WINDOW)
 * Only an event never sent may be dropped, so a drop counted is an event
 * Redis never had: when ws_agent_redis_queue events are held (all targets)
 * the oldest waiting event gives way, and when none is waiting (all were
 * sent) the new one is dropped.
 */
typedef struct {
    ngx_queue_t                   line[NGX_WS_AGENT_NLINES];
    ngx_uint_t                    n[NGX_WS_AGENT_NLINES];

    ngx_ws_agent_redis_node_t     node;
    ngx_ws_agent_redis_server_t   server;       /* a cluster master's */
    ngx_str_t                     name;         /* for the log */
    u_char                        text[sizeof("cluster node ")
                                       + NGX_SOCKADDR_STRLEN];
    time_t                        down_logged_at;
    ngx_uint_t                    reconnects;   /* connects after the first */
    ngx_uint_t                    connects;
    unsigned                      down_logged:1;
    unsigned                      open:1;       /* its node is started */
} ngx_ws_agent_redis_target_t;


typedef enum {
    NGX_WS_AGENT_LOST_OLDEST = 0,               /* gave way to a new one */
    NGX_WS_AGENT_LOST_NEW,                      /* the queue was all sent */
    NGX_WS_AGENT_LOST_REFUSED,                  /* Redis answered an error */
    NGX_WS_AGENT_NLOST
} ngx_ws_agent_lost_e;


typedef struct {
    ngx_ws_agent_main_conf_t     *conf;
    ngx_log_t                    *log;

    ngx_ws_agent_redis_target_t  *targets[NGX_WS_AGENT_MAX_NODES];
    ngx_uint_t                    ntargets;
    ngx_ws_agent_redis_target_t   unrouted;     /* a cluster's, no node */

    ngx_ws_agent_redis_sentinel_t sentinel;     /* sentinel:NAME only */
    ngx_ws_agent_redis_node_t    *steered[1];   /* the nodes it steers */
    ngx_ws_agent_redis_cluster_t *cluster;      /* cluster only */
    uint8_t                      *route;        /* slot: target, or 0xff */

    ngx_uint_t                    held;         /* all targets, all lines */
    ngx_uint_t                    unsent;       /* resend + waiting */
    ngx_uint_t                    size;         /* ws_agent_redis_queue */
    ngx_uint_t                    stamp;

    /* losses not logged yet: one line per kind at the end of a window */
    ngx_event_t                   loss_log;
    ngx_event_t                   migrating;    /* a slot waits: map again */
    ngx_uint_t                    migrating_slot;   /* the last one logged */
    ngx_uint_t                    unlogged[NGX_WS_AGENT_NLOST];
    u_char                        refused[NGX_WS_AGENT_ERROR_LEN];
    const char                   *refused_cmd;  /* the last refused one's */

    ngx_ws_agent_worker_stats_t  *stats;        /* this worker's slot */

    u_char                        append_sha[41];   /* the script's */

    unsigned                      active:1;    /* configured here */
    unsigned                      exiting:1;
    unsigned                      mapped:1;    /* a cluster map came */
} ngx_ws_agent_redis_t;


#define NGX_WS_AGENT_NO_TARGET  NGX_WS_AGENT_NO_ROUTE

#define ngx_ws_agent_redis_literal(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)


/*
 * The append (ws_agent_stream), atomic on the node that owns the stream:
 * (connection id, seq) is marked in a bitmap first, so an event sent
 * again after a lost reply is neither appended nor published twice (the
 * reply is then nil); the PUBLISH carries the entry's id in front of the
 * envelope, so a live subscriber and a replaying one see the same id.
 * MINID trims by the new entry's own time, and the stream expires when
 * its newest entry is older than age.
 */
static ngx_str_t  ngx_ws_agent_redis_append_script = ngx_string(
    "if redis.call('SETBIT',KEYS[2],ARGV[1],1)==1 then return false end\n"
    "redis.call('PEXPIRE',KEYS[2],3600000)\n"
    "local id\n"
    "if ARGV[2]~='0' then\n"
    " id=redis.call('XADD',KEYS[1],'MAXLEN','~',ARGV[2],'*',"
    "'t',ARGV[6],'e',ARGV[7])\n"
    "else\n"
    " id=redis.call('XADD',KEYS[1],'*','t',ARGV[6],'e',ARGV[7])\n"
    "end\n"
    "if ARGV[3]~='0' then\n"
    " local ms=tonumber(string.match(id,'^%d+'))-tonumber(ARGV[3])\n"
    " if ms>0 then redis.call('XTRIM',KEYS[1],'MINID','~',"
    "string.format('%.0f',ms)) end\n"
    " redis.call('PEXPIRE',KEYS[1],ARGV[3])\n"
    "end\n"
    "redis.call(ARGV[5],ARGV[4],'{\"id\":\"'..id..'\",'..string.sub(ARGV[7],2))\n"
    "return id\n");


static u_char *ngx_ws_agent_redis_append(u_char *p,
    ngx_ws_agent_redis_event_t *ev);
static u_char *ngx_ws_agent_redis_arg(u_char *p, u_char *data, size_t len);
static void ngx_ws_agent_redis_target_start(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_node_stats_t *stats);
static ngx_ws_agent_redis_target_t *ngx_ws_agent_redis_target_of(
    ngx_ws_agent_redis_t *rs, ngx_uint_t slot);
static ngx_ws_agent_redis_target_t *ngx_ws_agent_redis_target_at(
    ngx_ws_agent_redis_t *rs, struct sockaddr *sa, socklen_t socklen);
static void ngx_ws_agent_redis_target_init(ngx_ws_agent_redis_target_t *t);
static void ngx_ws_agent_redis_map(ngx_ws_agent_redis_cluster_t *cl);
static void ngx_ws_agent_redis_redirect(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item,
    redisReply *rr);
static void ngx_ws_agent_redis_migrating(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item,
    redisReply *rr);
static void ngx_ws_agent_redis_migrating_handler(ngx_event_t *ev);
static void ngx_ws_agent_redis_summary(ngx_ws_agent_redis_t *rs);

static ngx_int_t ngx_ws_agent_redis_queue_room(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_queue_put(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item,
    ngx_ws_agent_line_e line);
static void ngx_ws_agent_redis_queue_take(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item);
static ngx_ws_agent_item_t *ngx_ws_agent_redis_queue_next(
    ngx_ws_agent_redis_target_t *t);
static void ngx_ws_agent_redis_queue_requeue(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t);
static void ngx_ws_agent_redis_queue_reroute(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t);
static void ngx_ws_agent_redis_queue_free(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_uint_t *unsent,
    ngx_uint_t *unanswered);
static void ngx_ws_agent_redis_queue_gauges(ngx_ws_agent_redis_t *rs);
static void ngx_ws_agent_redis_lost(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_lost_e kind, ngx_uint_t n);
static void ngx_ws_agent_redis_refused(ngx_ws_agent_redis_t *rs,
    ngx_uint_t script, redisReply *rr);
static void ngx_ws_agent_redis_loss_log(ngx_event_t *ev);
static void ngx_ws_agent_redis_log_losses(ngx_ws_agent_redis_t *rs);

static void ngx_ws_agent_redis_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_redis_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static void ngx_ws_agent_redis_error(ngx_ws_agent_redis_t *rs,
    const char *err, size_t len);
static void ngx_ws_agent_redis_send(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t);
static void ngx_ws_agent_redis_send_all(ngx_ws_agent_redis_t *rs);


static ngx_ws_agent_redis_node_handler_t  ngx_ws_agent_redis_handler = {
    ngx_ws_agent_redis_ready,
    ngx_ws_agent_redis_reply,
    ngx_ws_agent_redis_down
};

/* the worker's publisher: a per-worker object, set up at worker start */
static ngx_ws_agent_redis_t  ngx_ws_agent_redis;


ngx_int_t
ngx_ws_agent_redis_init_process(ngx_cycle_t *cycle,
    ngx_ws_agent_main_conf_t *wmcf)
{
    ngx_ws_agent_redis_t         *rs = &ngx_ws_agent_redis;
    ngx_ws_agent_redis_target_t  *t;

    ngx_memzero(rs, sizeof(ngx_ws_agent_redis_t));

    if (wmcf == NULL || !wmcf->configured) {
        return NGX_OK;
    }

    rs->conf = wmcf;
    rs->log = cycle->log;
    rs->stats = ngx_ws_agent_slot;
    rs->stats->redis = 1;
    rs->active = 1;
    rs->size = wmcf->queue;

    if (wmcf->streams) {
        u_char  md[SHA_DIGEST_LENGTH];

        SHA1(ngx_ws_agent_redis_append_script.data,
             ngx_ws_agent_redis_append_script.len, md);
        ngx_hex_dump(rs->append_sha, md, SHA_DIGEST_LENGTH);
    }

    rs->loss_log.handler = ngx_ws_agent_redis_loss_log;
    rs->loss_log.data = rs;
    rs->loss_log.log = cycle->log;
    rs->loss_log.cancelable = 1;

    rs->migrating.handler = ngx_ws_agent_redis_migrating_handler;
    rs->migrating.data = rs;
    rs->migrating.log = cycle->log;
    rs->migrating.cancelable = 1;
    rs->migrating_slot = NGX_WS_AGENT_SLOTS;

    ngx_ws_agent_redis_target_init(&rs->unrouted);

    if (wmcf->redis.cluster) {
        rs->route = ngx_palloc(cycle->pool, NGX_WS_AGENT_SLOTS);
        /* zeroed: the seed node's script and action are set before start */
        rs->cluster = ngx_pcalloc(cycle->pool,
                                  sizeof(ngx_ws_agent_redis_cluster_t));
        if (rs->route == NULL || rs->cluster == NULL) {
            return NGX_ERROR;
        }

        ngx_memset(rs->route, NGX_WS_AGENT_NO_TARGET, NGX_WS_AGENT_SLOTS);

        /* the worker's line on the page sums its masters up */
        ngx_cpystrn(rs->stats->node.address, (u_char *) "cluster",
                    sizeof(rs->stats->node.address));
        rs->stats->node.tls = wmcf->redis.tls;

        ngx_ws_agent_redis_cluster_start(rs->cluster, &wmcf->seeds,
                                         ngx_ws_agent_redis_map, rs,
                                         cycle->log);
        return NGX_OK;
    }

    t = ngx_pcalloc(cycle->pool, sizeof(ngx_ws_agent_redis_target_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    ngx_ws_agent_redis_target_init(t);
    t->name = wmcf->redis.addr;
    t->open = 1;

    rs->targets[0] = t;
    rs->ntargets = 1;

    ngx_ws_agent_redis_target_start(rs, t, &rs->stats->node);

    if (wmcf->redis.master.len) {
        /* the node connects where the sentinels say the master is */
        rs->steered[0] = &t->node;
        ngx_ws_agent_redis_sentinel_start(&rs->sentinel, &wmcf->sentinels,
                                          &wmcf->redis, rs->steered, 1,
                                          cycle->log);
    }

    return NGX_OK;
}


ngx_int_t
ngx_ws_agent_redis_publish(ngx_ws_agent_redis_event_t *ev, ngx_log_t *log)
{
    u_char                       *p;
    size_t                        len, size;
    ngx_str_t                    *key;
    ngx_uint_t                    i;
    ngx_ws_agent_item_t          *item;
    ngx_ws_agent_redis_t         *rs = &ngx_ws_agent_redis;
    ngx_ws_agent_redis_target_t  *t;

    if (!rs->active || rs->exiting) {
        return NGX_DECLINED;
    }

    if (ngx_ws_agent_redis_queue_room(rs) != NGX_OK) {
        /* dropped and counted: taken all the same, its seq is the gap */
        return NGX_OK;
    }

    len = 0;

    for (i = 0; i < ev->nparts; i++) {
        len += ev->parts[i].len;
    }

    /* every argument's "$<n>\r\n" and "\r\n", and the command's "*<n>" */
    size = 16 + 12 * (NGX_SIZE_T_LEN + 5) + ev->channel->len + len;

    if (ev->stream) {
        size += 40 + 2 * ev->stream->len
                + ev->connection_id->len + sizeof(":seen:")
                + 3 * NGX_INT64_LEN + ev->type.len
                + sizeof("SPUBLISH");
    }

    /* formatted once here: the node only copies it out */
    item = ngx_alloc(offsetof(ngx_ws_agent_item_t, data) + size, log);
    if (item == NULL) {
        return NGX_ERROR;
    }

    p = item->data;

    if (ev->stream) {
        p = ngx_ws_agent_redis_append(p, ev);
        key = ev->stream;

    } else {
        /* a cluster's pub/sub is sharded: SPUBLISH reaches the slot's shard */
        p = rs->cluster
            ? ngx_ws_agent_redis_literal(p, "*3\r\n$8\r\nSPUBLISH\r\n")
            : ngx_ws_agent_redis_literal(p, "*3\r\n$7\r\nPUBLISH\r\n");
        p = ngx_ws_agent_redis_arg(p, ev->channel->data, ev->channel->len);
        key = ev->channel;
    }

    /* the envelope, always the last argument */
    *p++ = '$';
    p = ngx_ws_agent_decimal(p, len);
    *p++ = '\r';
    *p++ = '\n';

    for (i = 0; i < ev->nparts; i++) {
        p = ngx_cpymem(p, ev->parts[i].data, ev->parts[i].len);
    }

    *p++ = '\r';
    *p++ = '\n';

    item->len = p - item->data;
    item->stamp = rs->stamp++;
    item->asking = 0;
    item->asked = 0;
    item->script = ev->stream ? 1 : 0;
    item->slot = rs->cluster
                 ? (uint16_t) ngx_ws_agent_redis_slot(key->data, key->len)
                 : 0;

    t = ngx_ws_agent_redis_target_of(rs, item->slot);

    ngx_ws_agent_redis_queue_put(rs, t, item, NGX_WS_AGENT_LINE_WAITING);
    ngx_ws_agent_redis_queue_gauges(rs);
    ngx_ws_agent_redis_send(rs, t);

    return NGX_OK;
}


/*
 * EVALSHA of the append script, all its arguments but the envelope:
 *   KEYS  stream, stream:seen:<connection id>
 *   ARGV  seq, maxlen, age (ms), channel, PUBLISH|SPUBLISH, type, envelope
 */

static u_char *
ngx_ws_agent_redis_append(u_char *p, ngx_ws_agent_redis_event_t *ev)
{
    u_char                  *q;
    ngx_ws_agent_redis_t    *rs = &ngx_ws_agent_redis;
    u_char                   num[NGX_INT64_LEN];

    p = ngx_ws_agent_redis_literal(p, "*12\r\n$7\r\nEVALSHA\r\n");
    p = ngx_ws_agent_redis_arg(p, rs->append_sha, 40);
    p = ngx_ws_agent_redis_literal(p, "$1\r\n2\r\n");
    p = ngx_ws_agent_redis_arg(p, ev->stream->data, ev->stream->len);

    /* stream:seen:<id>: the suffix keeps the stream's {hash tag} and slot */
    *p++ = '$';
    p = ngx_ws_agent_decimal(p, ev->stream->len + sizeof(":seen:") - 1
                                + ev->connection_id->len);
    *p++ = '\r';
    *p++ = '\n';
    p = ngx_cpymem(p, ev->stream->data, ev->stream->len);
    p = ngx_cpymem(p, ":seen:", sizeof(":seen:") - 1);
    p = ngx_cpymem(p, ev->connection_id->data, ev->connection_id->len);
    *p++ = '\r';
    *p++ = '\n';

    q = ngx_ws_agent_decimal(num, ev->seq);
    p = ngx_ws_agent_redis_arg(p, num, q - num);
    q = ngx_ws_agent_decimal(num, ev->conf->maxlen);
    p = ngx_ws_agent_redis_arg(p, num, q - num);
    q = ngx_ws_agent_decimal(num, ev->conf->age);
    p = ngx_ws_agent_redis_arg(p, num, q - num);

    p = ngx_ws_agent_redis_arg(p, ev->channel->data, ev->channel->len);

    if (rs->cluster) {
        p = ngx_ws_agent_redis_arg(p, (u_char *) "SPUBLISH", 8);

    } else {
        p = ngx_ws_agent_redis_arg(p, (u_char *) "PUBLISH", 7);
    }

    return ngx_ws_agent_redis_arg(p, ev->type.data, ev->type.len);
}


/* one bulk string argument, in RESP */

static u_char *
ngx_ws_agent_redis_arg(u_char *p, u_char *data, size_t len)
{
    *p++ = '$';
    p = ngx_ws_agent_decimal(p, len);
    *p++ = '\r';
    *p++ = '\n';
    p = ngx_cpymem(p, data, len);
    *p++ = '\r';
    *p++ = '\n';

    return p;
}


/* pipelines held events (those to send again first) while the window allows */

static void
ngx_ws_agent_redis_send(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t)
{
    ngx_ws_agent_item_t  *item;

    static u_char  asking[] = "*1\r\n$6\r\nASKING\r\n";

    if (!t->open) {
        return;
    }

    while (ngx_ws_agent_redis_node_ready(&t->node)
           && t->n[NGX_WS_AGENT_LINE_IN_FLIGHT] < NGX_WS_AGENT_REDIS_WINDOW)
    {
        item = ngx_ws_agent_redis_queue_next(t);
        if (item == NULL) {
            break;
        }

        if (item->asking) {
            /* ASK: this one command goes to the importing node */
            if (ngx_ws_agent_redis_node_send(&t->node, asking,
                                             sizeof(asking) - 1)
                != NGX_OK)
            {
                break;
            }

            item->asked = 0;
        }

        if (ngx_ws_agent_redis_node_send(&t->node, item->data, item->len)
            != NGX_OK)
        {
            break;
        }

        ngx_ws_agent_redis_queue_take(rs, t, item);
        ngx_ws_agent_redis_queue_put(rs, t, item,
                                     NGX_WS_AGENT_LINE_IN_FLIGHT);
    }

    ngx_ws_agent_redis_queue_gauges(rs);
}


static void
ngx_ws_agent_redis_send_all(ngx_ws_agent_redis_t *rs)
{
    ngx_uint_t  i;

    for (i = 0; i < rs->ntargets; i++) {
        ngx_ws_agent_redis_send(rs, rs->targets[i]);
    }
}


/* replies come in the order of the commands: in_flight's head is answered */

static void
ngx_ws_agent_redis_reply(ngx_ws_agent_redis_node_t *node, redisReply *rr)
{
    ngx_uint_t                    script;
    ngx_ws_agent_item_t          *item;
    ngx_ws_agent_redis_t         *rs = &ngx_ws_agent_redis;
    ngx_ws_agent_redis_target_t  *t = node->data;

    if (t->n[NGX_WS_AGENT_LINE_IN_FLIGHT] == 0) {
        ngx_log_error(NGX_LOG_ALERT, rs->log, 0,
                      "ws_agent: Redis %V sent a reply to no command",
                      &t->name);
        return;
    }

    item = ngx_queue_data(ngx_queue_head(&t->line[NGX_WS_AGENT_LINE_IN_FLIGHT]),
                          ngx_ws_agent_item_t, queue);

    if (item->asking && !item->asked) {
        /* ASKING's +OK: the command's own reply comes next */
        item->asked = 1;
        return;
    }

    if (rr->type == REDIS_REPLY_ERROR && rs->cluster) {

        if (item->script && ngx_strncmp(rr->str, "ASK ", 4) == 0) {
            ngx_ws_agent_redis_migrating(rs, t, item, rr);
            return;
        }

        if (ngx_strncmp(rr->str, "MOVED ", 6) == 0
            || ngx_strncmp(rr->str, "ASK ", 4) == 0)
        {
            ngx_ws_agent_redis_redirect(rs, t, item, rr);
            return;
        }

        if (ngx_strncmp(rr->str, "CLUSTERDOWN", 11) == 0
            || ngx_strncmp(rr->str, "TRYAGAIN", 8) == 0)
        {
            /* kept: what is in flight goes again, after back-off */
            ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                          "ws_agent: Redis %V answered \"%*s\": events "
                          "wait and go again", &t->name, (size_t) rr->len,
                          rr->str);
            ngx_ws_agent_redis_error(rs, rr->str, rr->len);
            ngx_ws_agent_redis_node_reset(node, rr->str);
            ngx_ws_agent_redis_cluster_refresh(rs->cluster);
            return;
        }
    }

    if (rr->type == REDIS_REPLY_ERROR
        && ngx_strncmp(rr->str, "NOSCRIPT", 8) == 0)
    {
        /* SCRIPT FLUSH: a new connection loads it again; events go again */
        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis %V lost the append script (NOSCRIPT), "
                      "reconnecting to load it again", &t->name);
        ngx_ws_agent_redis_error(rs, rr->str, rr->len);
        ngx_ws_agent_redis_node_reset(node, "NOSCRIPT");
        return;
    }

    script = item->script;
    ngx_ws_agent_redis_queue_take(rs, t, item);
    ngx_free(item);

    if (rr->type == REDIS_REPLY_NIL) {
        /* the stream had it: a reply lost, the event sent again */
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_DEDUPLICATED, 1);
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_PUBLISHED, 1);
        rs->stats->published++;

    } else if (rr->type == REDIS_REPLY_ERROR) {
        ngx_ws_agent_redis_refused(rs, script, rr);

    } else {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_PUBLISHED, 1);
        rs->stats->published++;
    }

    ngx_ws_agent_redis_send(rs, t);
}


/*
 * A stream append answered ASK: its slot is migrating and the stream has
 * gone to the importing master, but the slot's sharded channel is served
 * here until the slot is handed over (a SPUBLISH there would reach no
 * subscriber: Redis 7.0 answers MOVED to SSUBSCRIBE on an importing
 * slot).  So the slot's events wait, in order, unrouted, and the map is
 * asked again every NGX_WS_AGENT_REDIS_MIGRATING ms: the owner answers ASK
 * until it has handed the slot over, then MOVED, and they go to the new
 * owner, which publishes them where the subscribers have gone.
 */

static void
ngx_ws_agent_redis_migrating(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item,
    redisReply *rr)
{
    ngx_ws_agent_redis_queue_take(rs, t, item);
    ngx_ws_agent_redis_queue_put(rs, &rs->unrouted, item,
                                 NGX_WS_AGENT_LINE_RESEND);

    if (rs->route[item->slot] != NGX_WS_AGENT_NO_TARGET) {
        /* what else of the slot t holds unsent waits behind it */
        rs->route[item->slot] = NGX_WS_AGENT_NO_TARGET;
        ngx_ws_agent_redis_queue_reroute(rs, t);
    }

    if (rs->migrating_slot != item->slot) {
        rs->migrating_slot = item->slot;

        ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                      "ws_agent: Redis cluster: slot %ui is migrating "
                      "(\"%*s\"): its stream appends wait until %V hands "
                      "it over", (ngx_uint_t) item->slot, (size_t) rr->len,
                      rr->str, &t->name);
    }

    if (!rs->migrating.timer_set && !rs->exiting) {
        ngx_add_timer(&rs->migrating, NGX_WS_AGENT_REDIS_MIGRATING);
    }

    ngx_ws_agent_redis_queue_gauges(rs);
    ngx_ws_agent_redis_send(rs, t);
}


static void
ngx_ws_agent_redis_migrating_handler(ngx_event_t *ev)
{
    ngx_ws_agent_redis_t  *rs = ev->data;

    /* the map routes the waiting slots again (to the owner, or the new) */
    ngx_ws_agent_redis_cluster_refresh(rs->cluster);
}


/* a redirect (MOVED, ASK): the event goes again, first, to that node */

static void
ngx_ws_agent_redis_redirect(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item,
    redisReply *rr)
{
    ngx_int_t                       slot;
    ngx_uint_t                      i, moved;
    ngx_ws_agent_redis_target_t    *to;
    ngx_ws_agent_redis_redirect_t   rd;

    to = NULL;
    slot = 0;
    moved = 0;

    if (ngx_ws_agent_redis_redirect_parse((u_char *) rr->str, rr->len, &rd)
        == NGX_OK)
    {
        slot = rd.slot;
        moved = rd.moved;
        to = ngx_ws_agent_redis_target_at(rs, &rd.sockaddr.sockaddr,
                                          rd.socklen);
    }

    ngx_ws_agent_redis_queue_take(rs, t, item);

    if (to == NULL) {
        /* an answer we cannot follow: the event is lost, and says why */
        ngx_ws_agent_redis_refused(rs, item->script, rr);
        ngx_free(item);
        return;
    }

    item->asking = !moved;

    ngx_ws_agent_redis_queue_put(rs, to, item, NGX_WS_AGENT_LINE_RESEND);

    if (moved) {
        for (i = 0; i < rs->ntargets && rs->targets[i] != to; i++) {
            /* void */
        }

        if (rs->route[slot] != i) {
            rs->route[slot] = (uint8_t) i;

            ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                          "ws_agent: Redis cluster: slot %i moved to %V",
                          slot, &rd.where);

            ngx_ws_agent_redis_cluster_refresh(rs->cluster);
        }
    }

    ngx_ws_agent_redis_queue_gauges(rs);
    ngx_ws_agent_redis_send(rs, to);
    ngx_ws_agent_redis_send(rs, t);
}


/* targets */

static void
ngx_ws_agent_redis_target_init(ngx_ws_agent_redis_target_t *t)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_WS_AGENT_NLINES; i++) {
        ngx_queue_init(&t->line[i]);
        t->n[i] = 0;
    }
}


static ngx_ws_agent_redis_target_t *
ngx_ws_agent_redis_target_of(ngx_ws_agent_redis_t *rs, ngx_uint_t slot)
{
    if (rs->cluster == NULL) {
        return rs->targets[0];
    }

    if (rs->route[slot] == NGX_WS_AGENT_NO_TARGET) {
        return &rs->unrouted;
    }

    return rs->targets[rs->route[slot]];
}


/* a cluster master's target: found, or made (and its node started) */

static ngx_ws_agent_redis_target_t *
ngx_ws_agent_redis_target_at(ngx_ws_agent_redis_t *rs, struct sockaddr *sa,
    socklen_t socklen)
{
    ngx_uint_t                    i;
    ngx_addr_t                   *addr;
    ngx_ws_agent_redis_target_t  *t;

    for (i = 0; i < rs->ntargets; i++) {
        t = rs->targets[i];
        addr = &t->server.addrs[0];

        if (ngx_cmp_sockaddr(sa, socklen, addr->sockaddr, addr->socklen, 1)
            == NGX_OK)
        {
            goto found;
        }
    }

    if (rs->ntargets == NGX_WS_AGENT_MAX_NODES) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "ws_agent: Redis cluster has more than %d masters",
                      NGX_WS_AGENT_MAX_NODES);
        return NULL;
    }

    t = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_ws_agent_redis_target_t));
    if (t == NULL
        || ngx_ws_agent_redis_server_at(&t->server, &rs->conf->redis, sa,
                                        socklen)
           != NGX_OK)
    {
        return NULL;
    }

    ngx_ws_agent_redis_target_init(t);

    t->name.data = t->text;
    t->name.len = ngx_sprintf(t->text, "cluster node %V", &t->server.addr)
                  - t->text;

    i = rs->ntargets++;
    rs->targets[i] = t;
    rs->stats->nnodes = rs->ntargets;

found:

    if (!t->open) {
        t->open = 1;
        ngx_ws_agent_redis_target_start(rs, t, &rs->stats->nodes[i]);
    }

    return t;
}


static void
ngx_ws_agent_redis_target_start(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_node_stats_t *stats)
{
    if (rs->conf->streams) {
        ngx_ws_agent_redis_node_script(&t->node,
                                       &ngx_ws_agent_redis_append_script);
    }

    ngx_ws_agent_redis_node_start(&t->node, t->server.addr.len ? &t->server
                                                            : &rs->conf->redis,
                                  &ngx_ws_agent_redis_handler, t, rs->log,
                                  stats);
}


/*
 * A new map: every slot routed to its master's target, the events held
 * for a slot elsewhere moved, targets that own nothing and hold nothing
 * closed
 */

static void
ngx_ws_agent_redis_map(ngx_ws_agent_redis_cluster_t *cl)
{
    ngx_uint_t                    i, m, changed, level;
    ngx_uint_t                    owns[NGX_WS_AGENT_MAX_NODES];
    uint8_t                       target[NGX_WS_AGENT_MAX_NODES];
    ngx_ws_agent_redis_t         *rs = cl->data;
    ngx_ws_agent_redis_target_t  *t;

    for (m = 0; m < cl->nmasters; m++) {
        t = ngx_ws_agent_redis_target_at(rs, &cl->masters[m].sockaddr.sockaddr,
                                         cl->masters[m].socklen);
        if (t == NULL) {
            target[m] = NGX_WS_AGENT_NO_TARGET;
            continue;
        }

        for (i = 0; rs->targets[i] != t; i++) { /* void */ }

        target[m] = (uint8_t) i;
    }

    ngx_memzero(owns, sizeof(owns));
    changed = ngx_ws_agent_redis_cluster_route(cl, target, rs->route, owns);

    if (changed) {
        level = rs->mapped ? NGX_LOG_NOTICE : NGX_LOG_INFO;

        ngx_log_error(level, rs->log, 0, "ws_agent: Redis cluster map: %ui "
                      "masters, %ui slot(s) routed anew", cl->nmasters,
                      changed);
        rs->mapped = 1;
    }

    ngx_ws_agent_redis_queue_reroute(rs, &rs->unrouted);

    for (i = 0; i < rs->ntargets; i++) {
        ngx_ws_agent_redis_queue_reroute(rs, rs->targets[i]);
    }

    for (i = 0; i < rs->ntargets; i++) {
        t = rs->targets[i];

        if (t->open && owns[i] == 0
            && t->n[NGX_WS_AGENT_LINE_RESEND] + t->n[NGX_WS_AGENT_LINE_WAITING]
               + t->n[NGX_WS_AGENT_LINE_IN_FLIGHT] == 0)
        {
            /* not a master now (failed over, emptied by a reshard) */
            ngx_ws_agent_redis_node_close(&t->node);
            t->open = 0;

            /* and not on the status page's list of masters either */
            ngx_memzero(t->node.stats, sizeof(ngx_ws_agent_node_stats_t));
        }
    }

    ngx_ws_agent_redis_queue_gauges(rs);
    ngx_ws_agent_redis_summary(rs);
    ngx_ws_agent_redis_send_all(rs);
}


/* a cluster's line on the status page: connected when every master is */

static void
ngx_ws_agent_redis_summary(ngx_ws_agent_redis_t *rs)
{
    ngx_uint_t  i, up, reconnects;

    if (rs->cluster == NULL) {
        return;
    }

    up = (rs->ntargets != 0);
    reconnects = 0;

    for (i = 0; i < rs->ntargets; i++) {
        if (rs->targets[i]->open
            && !ngx_ws_agent_redis_node_ready(&rs->targets[i]->node))
        {
            up = 0;
        }

        reconnects += rs->targets[i]->reconnects;
    }

    rs->stats->node.connected = up;
    rs->stats->node.reconnects = reconnects;
}


/* the queue: the only functions that change the lines and counts */

static ngx_int_t
ngx_ws_agent_redis_queue_room(ngx_ws_agent_redis_t *rs)
{
    ngx_uint_t                    i;
    ngx_queue_t                  *h;
    ngx_ws_agent_item_t          *item, *oldest;
    ngx_ws_agent_redis_target_t  *t, *from;

    if (rs->held < rs->size) {
        return NGX_OK;
    }

    /* the oldest event never sent, of all targets */
    oldest = NULL;
    from = NULL;

    for (i = 0; i <= rs->ntargets; i++) {
        t = (i == rs->ntargets) ? &rs->unrouted : rs->targets[i];

        if (t->n[NGX_WS_AGENT_LINE_WAITING] == 0) {
            continue;
        }

        h = ngx_queue_head(&t->line[NGX_WS_AGENT_LINE_WAITING]);
        item = ngx_queue_data(h, ngx_ws_agent_item_t, queue);

        if (oldest == NULL || item->stamp < oldest->stamp) {
            oldest = item;
            from = t;
        }
    }

    if (oldest == NULL) {
        ngx_ws_agent_redis_lost(rs, NGX_WS_AGENT_LOST_NEW, 1);
        return NGX_DECLINED;
    }

    ngx_ws_agent_redis_queue_take(rs, from, oldest);
    ngx_free(oldest);

    ngx_ws_agent_redis_lost(rs, NGX_WS_AGENT_LOST_OLDEST, 1);
    ngx_ws_agent_redis_queue_gauges(rs);

    return NGX_OK;
}


static void
ngx_ws_agent_redis_queue_put(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item,
    ngx_ws_agent_line_e line)
{
    ngx_queue_insert_tail(&t->line[line], &item->queue);
    item->line = line;
    t->n[line]++;
    rs->held++;

    if (line != NGX_WS_AGENT_LINE_IN_FLIGHT) {
        rs->unsent++;
    }
}


static void
ngx_ws_agent_redis_queue_take(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_ws_agent_item_t *item)
{
    ngx_queue_remove(&item->queue);
    t->n[item->line]--;
    rs->held--;

    if (item->line != NGX_WS_AGENT_LINE_IN_FLIGHT) {
        rs->unsent--;
    }
}


/* the event to send next: one to send again first, then the oldest waiting */

static ngx_ws_agent_item_t *
ngx_ws_agent_redis_queue_next(ngx_ws_agent_redis_target_t *t)
{
    ngx_ws_agent_line_e  line;

    if (t->n[NGX_WS_AGENT_LINE_RESEND]) {
        line = NGX_WS_AGENT_LINE_RESEND;

    } else if (t->n[NGX_WS_AGENT_LINE_WAITING]) {
        line = NGX_WS_AGENT_LINE_WAITING;

    } else {
        return NULL;
    }

    return ngx_queue_data(ngx_queue_head(&t->line[line]),
                          ngx_ws_agent_item_t, queue);
}


/*
 * The connection is gone: the events in flight were sent before those
 * still to send again, so they go in front of them, in order
 */

static void
ngx_ws_agent_redis_queue_requeue(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t)
{
    ngx_uint_t            n;
    ngx_queue_t          *q, *resend, *in_flight;
    ngx_ws_agent_item_t  *item;

    n = t->n[NGX_WS_AGENT_LINE_IN_FLIGHT];

    if (n == 0) {
        return;
    }

    resend = &t->line[NGX_WS_AGENT_LINE_RESEND];
    in_flight = &t->line[NGX_WS_AGENT_LINE_IN_FLIGHT];

    for (q = ngx_queue_head(in_flight); q != ngx_queue_sentinel(in_flight);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_ws_agent_item_t, queue);
        item->line = NGX_WS_AGENT_LINE_RESEND;
    }

    ngx_queue_add(in_flight, resend);
    ngx_queue_init(resend);
    ngx_queue_add(resend, in_flight);
    ngx_queue_init(in_flight);

    t->n[NGX_WS_AGENT_LINE_RESEND] += n;
    t->n[NGX_WS_AGENT_LINE_IN_FLIGHT] = 0;
    rs->unsent += n;

    ngx_ws_agent_redis_queue_gauges(rs);
}


/* a cluster's new map: t's unsent events of slots now elsewhere go there */

static void
ngx_ws_agent_redis_queue_reroute(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t)
{
    ngx_uint_t                    line;
    ngx_queue_t                  *q, *next;
    ngx_ws_agent_item_t          *item;
    ngx_ws_agent_redis_target_t  *to;

    for (line = NGX_WS_AGENT_LINE_RESEND; line <= NGX_WS_AGENT_LINE_WAITING;
         line++)
    {
        for (q = ngx_queue_head(&t->line[line]);
             q != ngx_queue_sentinel(&t->line[line]);
             q = next)
        {
            next = ngx_queue_next(q);
            item = ngx_queue_data(q, ngx_ws_agent_item_t, queue);
            to = ngx_ws_agent_redis_target_of(rs, item->slot);

            if (to != t) {
                ngx_ws_agent_redis_queue_take(rs, t, item);
                ngx_ws_agent_redis_queue_put(rs, to, item, line);
            }
        }
    }
}


/*
 * Worker exit: everything t holds is freed; how many were never sent, and
 * how many were sent without a reply (Redis may still publish those)
 */

static void
ngx_ws_agent_redis_queue_free(ngx_ws_agent_redis_t *rs,
    ngx_ws_agent_redis_target_t *t, ngx_uint_t *unsent,
    ngx_uint_t *unanswered)
{
    ngx_uint_t            i;
    ngx_queue_t          *h;
    ngx_ws_agent_item_t  *item;

    *unsent += t->n[NGX_WS_AGENT_LINE_WAITING];
    *unanswered += t->n[NGX_WS_AGENT_LINE_RESEND]
                   + t->n[NGX_WS_AGENT_LINE_IN_FLIGHT];

    for (i = 0; i < NGX_WS_AGENT_NLINES; i++) {
        while (!ngx_queue_empty(&t->line[i])) {
            h = ngx_queue_head(&t->line[i]);
            item = ngx_queue_data(h, ngx_ws_agent_item_t, queue);
            ngx_ws_agent_redis_queue_take(rs, t, item);
            ngx_free(item);
        }
    }

    ngx_ws_agent_redis_queue_gauges(rs);
}


/* the status page's per-worker figures: queued (not in flight), in_flight */

static void
ngx_ws_agent_redis_queue_gauges(ngx_ws_agent_redis_t *rs)
{
    ngx_uint_t                    i;
    ngx_ws_agent_redis_target_t  *t;

    rs->stats->queued = rs->unsent;
    rs->stats->in_flight = rs->held - rs->unsent;

    if (rs->cluster == NULL) {
        return;
    }

    /* a cluster's masters, each on its own line of the page */
    for (i = 0; i < rs->ntargets; i++) {
        t = rs->targets[i];

        if (t->open) {
            t->node.stats->queued = t->n[NGX_WS_AGENT_LINE_RESEND]
                                    + t->n[NGX_WS_AGENT_LINE_WAITING];
            t->node.stats->in_flight = t->n[NGX_WS_AGENT_LINE_IN_FLIGHT];
        }
    }
}


/*
 * Losses: counted at once, logged at the end of a window that the first
 * one opens (NGX_WS_AGENT_REDIS_LOSS_WINDOW), one line per kind with its
 * number, so the lines add up to the counters and an outage does not log
 * every event; what is left at worker exit is logged then.
 */

static void
ngx_ws_agent_redis_lost(ngx_ws_agent_redis_t *rs, ngx_ws_agent_lost_e kind,
    ngx_uint_t n)
{
    ngx_ws_agent_count(kind == NGX_WS_AGENT_LOST_REFUSED
                       ? NGX_WS_AGENT_EVENTS_REDIS_ERROR
                       : NGX_WS_AGENT_EVENTS_OVERFLOW, n);

    rs->unlogged[kind] += n;

    if (!rs->loss_log.timer_set && !rs->exiting) {
        ngx_add_timer(&rs->loss_log, NGX_WS_AGENT_REDIS_LOSS_WINDOW);
    }
}


/* an event Redis answered with an error: lost, and said with the command */

static void
ngx_ws_agent_redis_refused(ngx_ws_agent_redis_t *rs, ngx_uint_t script,
    redisReply *rr)
{
    ngx_ws_agent_redis_error(rs, rr->str, rr->len);
    ngx_cpystrn(rs->refused, (u_char *) rr->str,
                ngx_min((size_t) rr->len + 1, NGX_WS_AGENT_ERROR_LEN));
    rs->refused_cmd = script ? "EVALSHA (the stream's append)"
                             : (rs->cluster ? "SPUBLISH" : "PUBLISH");
    ngx_ws_agent_redis_lost(rs, NGX_WS_AGENT_LOST_REFUSED, 1);
}


static void
ngx_ws_agent_redis_loss_log(ngx_event_t *ev)
{
    ngx_ws_agent_redis_log_losses(ev->data);
}


static void
ngx_ws_agent_redis_log_losses(ngx_ws_agent_redis_t *rs)
{
    ngx_uint_t  *n = rs->unlogged;

    if (n[NGX_WS_AGENT_LOST_OLDEST]) {
        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis queue full (%ui events), dropped "
                      "%ui oldest unsent event(s)",
                      rs->size, n[NGX_WS_AGENT_LOST_OLDEST]);
    }

    if (n[NGX_WS_AGENT_LOST_NEW]) {
        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis queue full (%ui events, all sent and "
                      "awaiting replies), dropped %ui new event(s)",
                      rs->size, n[NGX_WS_AGENT_LOST_NEW]);
    }

    if (n[NGX_WS_AGENT_LOST_REFUSED]) {
        ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                      "ws_agent: Redis refused %s (%ui event(s) "
                      "lost): %s", rs->refused_cmd,
                      n[NGX_WS_AGENT_LOST_REFUSED], rs->refused);
    }

    ngx_memzero(rs->unlogged, sizeof(rs->unlogged));
}

/* the node's news */

static void
ngx_ws_agent_redis_ready(ngx_ws_agent_redis_node_t *node)
{
    ngx_ws_agent_redis_t         *rs = &ngx_ws_agent_redis;
    ngx_ws_agent_redis_target_t  *t = node->data;

    if (t->down_logged) {
        ngx_log_error(NGX_LOG_NOTICE, rs->log, 0,
                      "ws_agent: Redis %V connected again, %ui event(s) "
                      "waiting", &t->name,
                      t->n[NGX_WS_AGENT_LINE_RESEND]
                      + t->n[NGX_WS_AGENT_LINE_WAITING]);

    } else {
        ngx_log_error(NGX_LOG_INFO, rs->log, 0,
                      "ws_agent: Redis %V connected", &t->name);
    }

    t->down_logged = 0;

    if (t->connects++) {
        t->reconnects++;
    }

    ngx_ws_agent_redis_summary(rs);
    ngx_ws_agent_redis_send(rs, t);
}


static void
ngx_ws_agent_redis_down(ngx_ws_agent_redis_node_t *node, const char *why,
    ngx_uint_t logged)
{
    size_t                        len;
    ngx_uint_t                    same;
    ngx_ws_agent_redis_t         *rs = &ngx_ws_agent_redis;
    ngx_ws_agent_redis_target_t  *t = node->data;

    /* unanswered events are sent again first on the next connection */
    ngx_ws_agent_redis_queue_requeue(rs, t);

    if (rs->exiting) {
        return;
    }

    ngx_ws_agent_redis_summary(rs);

    if (node->not_master && rs->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_ask(&rs->sentinel);
    }

    if (rs->cluster) {
        /* a master gone may have been replaced: the map says */
        ngx_ws_agent_redis_cluster_refresh(rs->cluster);
    }

    if (logged) {
        /* the node said why (a refused AUTH): "still unavailable" next */
        ngx_ws_agent_redis_error(rs, why, ngx_strlen(why));
        t->down_logged = 1;
        t->down_logged_at = ngx_time();
        return;
    }

    len = ngx_min(ngx_strlen(why), NGX_WS_AGENT_ERROR_LEN - 1);
    same = (ngx_strlen(rs->stats->last_error) == len
            && ngx_strncmp(rs->stats->last_error, why, len) == 0);

    ngx_ws_agent_redis_error(rs, why, len);

    if (t->down_logged) {
        /*
         * each new reason once (the first was "connection refused", now
         * it is "Too many open files"), the same one again every minute
         */
        if (same && ngx_time() - t->down_logged_at < 60) {
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rs->log, 0,
                           "ws_agent: Redis still unavailable: %s", why);
            return;
        }

        ngx_log_error(NGX_LOG_WARN, rs->log, 0,
                      "ws_agent: Redis %V still unavailable (%s), %ui "
                      "event(s) waiting", &t->name, why, rs->held);

        t->down_logged_at = ngx_time();
        return;
    }

    ngx_log_error(NGX_LOG_ERR, rs->log, 0,
                  "ws_agent: Redis %V unavailable (%s); events wait in a "
                  "queue of %ui, reconnecting with back-off",
                  &t->name, why, rs->conf->queue);

    t->down_logged = 1;
    t->down_logged_at = ngx_time();
}


/* the last error, for the status page */

static void
ngx_ws_agent_redis_error(ngx_ws_agent_redis_t *rs, const char *err,
    size_t len)
{
    len = ngx_min(len, NGX_WS_AGENT_ERROR_LEN - 1);

    ngx_memcpy(rs->stats->last_error, err, len);
    rs->stats->last_error[len] = '\0';
}


/*
 * Worker exit: held events get a short, bounded chance to reach Redis,
 * then everything is freed; what is left is counted and logged, and so
 * are the losses of the last window.
 */

void
ngx_ws_agent_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_msec_t                    start, left;
    ngx_uint_t                    i, unsent, unanswered, waited;
    ngx_ws_agent_redis_t         *rs = &ngx_ws_agent_redis;
    ngx_ws_agent_redis_target_t  *t;

    if (!rs->active) {
        return;
    }

    ngx_time_update();
    start = ngx_current_msec;

    for ( ;; ) {
        ngx_time_update();
        left = NGX_WS_AGENT_REDIS_EXIT_FLUSH - (ngx_current_msec - start);

        if (rs->held == 0 || (ngx_msec_int_t) left <= 0) {
            break;
        }

        waited = 0;

        for (i = 0; i < rs->ntargets; i++) {
            t = rs->targets[i];

            if (!t->open || !ngx_ws_agent_redis_node_ready(&t->node)
                || t->n[NGX_WS_AGENT_LINE_RESEND]
                   + t->n[NGX_WS_AGENT_LINE_WAITING]
                   + t->n[NGX_WS_AGENT_LINE_IN_FLIGHT] == 0)
            {
                continue;
            }

            ngx_ws_agent_redis_send(rs, t);

            /* one node at a time, in short turns when there are several */
            (void) ngx_ws_agent_redis_node_wait(&t->node,
                                   rs->ntargets > 1 ? ngx_min(left, 20)
                                                    : left);
            waited = 1;
        }

        if (!waited) {
            break;
        }
    }

    rs->exiting = 1;

    for (i = 0; i < rs->ntargets; i++) {
        if (rs->targets[i]->open) {
            ngx_ws_agent_redis_node_close(&rs->targets[i]->node);
        }
    }

    if (rs->conf->redis.master.len) {
        ngx_ws_agent_redis_sentinel_close(&rs->sentinel);
    }

    if (rs->cluster) {
        ngx_ws_agent_redis_cluster_close(rs->cluster);
    }

    if (rs->loss_log.timer_set) {
        ngx_del_timer(&rs->loss_log);
    }

    if (rs->migrating.timer_set) {
        ngx_del_timer(&rs->migrating);
    }

    ngx_ws_agent_redis_log_losses(rs);

    unsent = 0;
    unanswered = 0;

    ngx_ws_agent_redis_queue_free(rs, &rs->unrouted, &unsent, &unanswered);

    for (i = 0; i < rs->ntargets; i++) {
        ngx_ws_agent_redis_queue_free(rs, rs->targets[i], &unsent,
                                      &unanswered);
    }

    if (unsent + unanswered) {
        ngx_ws_agent_count(NGX_WS_AGENT_EVENTS_LOST_AT_EXIT,
                           unsent + unanswered);
    }

    if (unsent) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ws_agent: worker exiting with %ui event(s) not sent "
                      "to Redis %V", unsent, &rs->conf->redis.addr);
    }

    if (unanswered) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ws_agent: worker exiting with %ui event(s) sent to "
                      "Redis %V and awaiting a reply (Redis may still "
                      "publish them)", unanswered, &rs->conf->redis.addr);
    }
}
