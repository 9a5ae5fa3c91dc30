/*
 * Redis Cluster's map (see ngx_ws_agent_redis_cluster.h).
 *
 * The seed connection carries only CLUSTER SLOTS: each reply answers the
 * oldest one asked.  A seed may be a replica: the map is the same.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_ws_agent_redis_cluster.h"


/*
 * A failover a client is not told of (CLUSTER FAILOVER: the old master
 * goes on taking SPUBLISH as a replica, no MOVED) shows in the map only
 */
#define NGX_WS_AGENT_CLUSTER_EVERY  2000


static void ngx_ws_agent_redis_cluster_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_cluster_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_redis_cluster_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static void ngx_ws_agent_redis_cluster_ask(ngx_ws_agent_redis_cluster_t *cl);
static void ngx_ws_agent_redis_cluster_every(ngx_event_t *ev);
static void ngx_ws_agent_redis_crc16_init(void);
static ngx_int_t ngx_ws_agent_redis_cluster_parse(
    ngx_ws_agent_redis_cluster_t *cl, redisReply *rr);
static ngx_int_t ngx_ws_agent_redis_cluster_master(
    ngx_ws_agent_redis_cluster_t *cl, redisReply *node, ngx_uint_t *index);


static ngx_ws_agent_redis_node_handler_t  ngx_ws_agent_redis_cluster_handler
    = {
    ngx_ws_agent_redis_cluster_ready,
    ngx_ws_agent_redis_cluster_reply,
    ngx_ws_agent_redis_cluster_down
};


void
ngx_ws_agent_redis_cluster_start(ngx_ws_agent_redis_cluster_t *cl,
    ngx_ws_agent_redis_server_t *seeds, ngx_ws_agent_redis_map_pt map,
    void *data, ngx_log_t *log)
{
    ngx_uint_t  i;

    ngx_ws_agent_redis_crc16_init();

    cl->log = log;
    cl->map = map;
    cl->data = data;
    cl->nmasters = 0;
    cl->asked = 0;
    cl->again = 0;

    for (i = 0; i < NGX_WS_AGENT_SLOTS; i++) {
        cl->slots[i] = NGX_WS_AGENT_NO_MASTER;
    }

    ngx_memzero(&cl->every, sizeof(ngx_event_t));
    cl->every.handler = ngx_ws_agent_redis_cluster_every;
    cl->every.data = cl;
    cl->every.log = log;
    cl->every.cancelable = 1;

    ngx_add_timer(&cl->every, NGX_WS_AGENT_CLUSTER_EVERY);

    ngx_ws_agent_redis_node_start(&cl->node, seeds,
                                  &ngx_ws_agent_redis_cluster_handler, cl,
                                  log, NULL);
}


void
ngx_ws_agent_redis_cluster_refresh(ngx_ws_agent_redis_cluster_t *cl)
{
    if (!ngx_ws_agent_redis_node_ready(&cl->node)) {
        /* asked as soon as the seed connection is up */
        return;
    }

    if (cl->asked) {
        cl->again = 1;
        return;
    }

    ngx_ws_agent_redis_cluster_ask(cl);
}


void
ngx_ws_agent_redis_cluster_close(ngx_ws_agent_redis_cluster_t *cl)
{
    if (cl->every.timer_set) {
        ngx_del_timer(&cl->every);
    }

    ngx_ws_agent_redis_node_close(&cl->node);
}


ngx_uint_t
ngx_ws_agent_redis_cluster_route(ngx_ws_agent_redis_cluster_t *cl,
    uint8_t *index, uint8_t *route, ngx_uint_t *owns)
{
    ngx_uint_t  m, i, slot, changed;

    changed = 0;

    for (slot = 0; slot < NGX_WS_AGENT_SLOTS; slot++) {
        m = cl->slots[slot];
        i = (m == NGX_WS_AGENT_NO_MASTER) ? NGX_WS_AGENT_NO_ROUTE : index[m];

        if (route[slot] != i) {
            route[slot] = (uint8_t) i;
            changed++;
        }

        if (i != NGX_WS_AGENT_NO_ROUTE) {
            owns[i]++;
        }
    }

    return changed;
}


static void
ngx_ws_agent_redis_cluster_every(ngx_event_t *ev)
{
    ngx_ws_agent_redis_cluster_t  *cl = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_ws_agent_redis_cluster_refresh(cl);
    ngx_add_timer(&cl->every, NGX_WS_AGENT_CLUSTER_EVERY);
}


static void
ngx_ws_agent_redis_cluster_ask(ngx_ws_agent_redis_cluster_t *cl)
{
    static u_char  cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";

    if (ngx_ws_agent_redis_node_send(&cl->node, cmd, sizeof(cmd) - 1)
        != NGX_OK)
    {
        ngx_ws_agent_redis_node_reset(&cl->node, "out of memory");
        return;
    }

    cl->asked++;
    cl->again = 0;
}


static void
ngx_ws_agent_redis_cluster_ready(ngx_ws_agent_redis_node_t *node)
{
    ngx_ws_agent_redis_cluster_t  *cl = node->data;

    cl->asked = 0;
    ngx_ws_agent_redis_cluster_ask(cl);
}


static void
ngx_ws_agent_redis_cluster_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr)
{
    ngx_ws_agent_redis_cluster_t  *cl = node->data;

    if (cl->asked) {
        cl->asked--;
    }

    if (rr->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "ws_agent: Redis cluster seed %V refused CLUSTER "
                      "SLOTS: %*s", &node->name, (size_t) rr->len, rr->str);
        ngx_ws_agent_redis_node_reset(node, "CLUSTER SLOTS refused");
        return;
    }

    if (ngx_ws_agent_redis_cluster_parse(cl, rr) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "ws_agent: Redis cluster seed %V answered CLUSTER "
                      "SLOTS with no usable map", &node->name);

    } else {
        cl->map(cl);
    }

    if (cl->again && cl->asked == 0) {
        ngx_ws_agent_redis_cluster_ask(cl);
    }
}


/*
 * [[start, end, [ip, port, id, ...], replica...], ...]: the masters are the
 * first node of each range; slots no range names have no master
 */

static ngx_int_t
ngx_ws_agent_redis_cluster_parse(ngx_ws_agent_redis_cluster_t *cl,
    redisReply *rr)
{
    size_t       i;
    ngx_int_t    start, end, s;
    ngx_uint_t   m;
    redisReply  *range;

    if (rr->type != REDIS_REPLY_ARRAY || rr->elements == 0) {
        return NGX_ERROR;
    }

    cl->nmasters = 0;

    for (s = 0; s < NGX_WS_AGENT_SLOTS; s++) {
        cl->slots[s] = NGX_WS_AGENT_NO_MASTER;
    }

    for (i = 0; i < rr->elements; i++) {
        range = rr->element[i];

        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
            || range->element[0]->type != REDIS_REPLY_INTEGER
            || range->element[1]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        start = (ngx_int_t) range->element[0]->integer;
        end = (ngx_int_t) range->element[1]->integer;

        if (start < 0 || end >= NGX_WS_AGENT_SLOTS || start > end) {
            continue;
        }

        if (ngx_ws_agent_redis_cluster_master(cl, range->element[2], &m)
            != NGX_OK)
        {
            continue;
        }

        for (s = start; s <= end; s++) {
            cl->slots[s] = (uint16_t) m;
        }
    }

    return cl->nmasters ? NGX_OK : NGX_ERROR;
}


/* a master's [ip, port, ...]: its index in cl->masters (added if new) */

static ngx_int_t
ngx_ws_agent_redis_cluster_master(ngx_ws_agent_redis_cluster_t *cl,
    redisReply *node, ngx_uint_t *index)
{
    u_char          *ip;
    size_t           len;
    ngx_uint_t       i;
    socklen_t        socklen;
    ngx_sockaddr_t   sa;

    if (node->type != REDIS_REPLY_ARRAY || node->elements < 2
        || node->element[0]->type != REDIS_REPLY_STRING
        || node->element[1]->type != REDIS_REPLY_INTEGER
        || node->element[1]->integer < 1
        || node->element[1]->integer > 65535)
    {
        return NGX_ERROR;
    }

    ip = (u_char *) node->element[0]->str;
    len = node->element[0]->len;

    if (len == 0) {
        /* "": the node does not know its address: the seed's own is it */
        ngx_memcpy(&sa, &cl->node.sockaddr, cl->node.socklen);
        socklen = cl->node.socklen;
        ngx_inet_set_port(&sa.sockaddr,
                          (in_port_t) node->element[1]->integer);

    } else if (ngx_ws_agent_redis_sockaddr(ip, len, node->element[1]->integer,
                                           &sa, &socklen)
               != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "ws_agent: Redis cluster names a master \"%*s\", "
                      "which is not an IP address (set "
                      "cluster-preferred-endpoint-type ip)", len, ip);
        return NGX_ERROR;
    }

    for (i = 0; i < cl->nmasters; i++) {
        if (ngx_cmp_sockaddr(&sa.sockaddr, socklen,
                             &cl->masters[i].sockaddr.sockaddr,
                             cl->masters[i].socklen, 1)
            == NGX_OK)
        {
            *index = i;
            return NGX_OK;
        }
    }

    if (cl->nmasters == NGX_WS_AGENT_MAX_NODES) {
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "ws_agent: Redis cluster has more than %d masters; "
                      "the slots of the others are not published to",
                      NGX_WS_AGENT_MAX_NODES);
        return NGX_ERROR;
    }

    ngx_memcpy(&cl->masters[i].sockaddr, &sa, socklen);
    cl->masters[i].socklen = socklen;
    *index = cl->nmasters++;

    return NGX_OK;
}


static void
ngx_ws_agent_redis_cluster_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged)
{
    ngx_ws_agent_redis_cluster_t  *cl = node->data;

    cl->asked = 0;

    if (!logged) {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "ws_agent: Redis cluster seed %V unavailable (%s), "
                      "trying the next one", &node->name, why);
    }
}


/*
 * CRC16-CCITT (XMODEM: polynomial 0x1021, no reflection, initial 0), as
 * Redis's keyHashSlot(), of the key's hash tag, a byte at a time through a
 * table of each byte's CRC, computed once per process at worker start (a
 * per-worker constant).  Bit by bit it cost ~1 470 instructions per event
 * for an "agent:events:u00000" channel (bench/callgrind.sh cluster:evpub).
 */

static uint16_t  ngx_ws_agent_crc16_tab[256];


static void
ngx_ws_agent_redis_crc16_init(void)
{
    ngx_uint_t  i, b;
    uint16_t    crc;

    for (i = 0; i < 256; i++) {
        crc = (uint16_t) (i << 8);

        for (b = 0; b < 8; b++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }

        ngx_ws_agent_crc16_tab[i] = crc;
    }
}


ngx_uint_t
ngx_ws_agent_redis_slot(u_char *key, size_t len)
{
    size_t     i, s, e;
    uint16_t   crc;

    for (s = 0; s < len && key[s] != '{'; s++) { /* void */ }

    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++) { /* void */ }

        if (e < len && e > s + 1) {
            /* a non-empty {tag}: only it is hashed */
            key += s + 1;
            len = e - s - 1;
        }
    }

    crc = 0;

    for (i = 0; i < len; i++) {
        crc = (uint16_t) ((crc << 8)
                          ^ ngx_ws_agent_crc16_tab[((crc >> 8) ^ key[i])
                                                   & 0xff]);
    }

    return crc & (NGX_WS_AGENT_SLOTS - 1);
}


ngx_int_t
ngx_ws_agent_redis_redirect_parse(u_char *text, size_t len,
    ngx_ws_agent_redis_redirect_t *rd)
{
    u_char     *p, *last, *host, *colon;
    ngx_int_t   slot, port;

    last = text + len;

    if (len > 6 && ngx_strncmp(text, "MOVED ", 6) == 0) {
        rd->moved = 1;
        p = text + 6;

    } else if (len > 4 && ngx_strncmp(text, "ASK ", 4) == 0) {
        rd->moved = 0;
        p = text + 4;

    } else {
        return NGX_DECLINED;
    }

    host = ngx_strlchr(p, last, ' ');
    if (host == NULL) {
        return NGX_DECLINED;
    }

    slot = ngx_atoi(p, host - p);
    if (slot == NGX_ERROR || slot >= NGX_WS_AGENT_SLOTS) {
        return NGX_DECLINED;
    }

    host++;
    colon = NULL;

    for (p = last; p > host; p--) {
        if (p[-1] == ':') {
            colon = p - 1;
            break;
        }
    }

    if (colon == NULL) {
        return NGX_DECLINED;
    }

    port = ngx_atoi(colon + 1, last - colon - 1);

    if (ngx_ws_agent_redis_sockaddr(host, colon - host, port, &rd->sockaddr,
                                    &rd->socklen)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    rd->slot = slot;
    rd->where.data = host;
    rd->where.len = last - host;

    return NGX_OK;
}
