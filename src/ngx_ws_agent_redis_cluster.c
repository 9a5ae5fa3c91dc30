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
 * CRC16-CCITT (XMODEM), as Redis's keyHashSlot(), of the key's hash tag,
 * a byte at a time: crc16_tab[i] is the CRC of the byte i (polynomial
 * 0x1021), Redis's crc16.c table.  Bit by bit it cost ~1 470 instructions
 * per event for an "agent:events:u00000" channel (bench/callgrind.sh
 * cluster:evpub), by table ~280.
 */

static const uint16_t  ngx_ws_agent_crc16_tab[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
    0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294, 0x72f7, 0x62d6,
    0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de,
    0x2462, 0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485,
    0xa56a, 0xb54b, 0x8528, 0x9509, 0xe5ee, 0xf5cf, 0xc5ac, 0xd58d,
    0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695, 0x46b4,
    0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc,
    0x48c4, 0x58e5, 0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823,
    0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948, 0x9969, 0xa90a, 0xb92b,
    0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
    0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a,
    0x6ca6, 0x7c87, 0x4ce4, 0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41,
    0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b, 0x8d68, 0x9d49,
    0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70,
    0xff9f, 0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78,
    0x9188, 0x81a9, 0xb1ca, 0xa1eb, 0xd10c, 0xc12d, 0xf14e, 0xe16f,
    0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046, 0x6067,
    0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e,
    0x02b1, 0x1290, 0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256,
    0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e, 0xe54f, 0xd52c, 0xc50d,
    0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
    0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c,
    0x26d3, 0x36f2, 0x0691, 0x16b0, 0x6657, 0x7676, 0x4615, 0x5634,
    0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9, 0xb98a, 0xa9ab,
    0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3,
    0xcb7d, 0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a,
    0x4a75, 0x5a54, 0x6a37, 0x7a16, 0x0af1, 0x1ad0, 0x2ab3, 0x3a92,
    0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8, 0x8dc9,
    0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1,
    0xef1f, 0xff3e, 0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8,
    0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93, 0x3eb2, 0x0ed1, 0x1ef0,
};


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
                          ^ ngx_ws_agent_crc16_tab[((crc >> 8) ^ key[i]) & 0xff]);
    }

    return crc & (NGX_WS_AGENT_SLOTS - 1);
}
