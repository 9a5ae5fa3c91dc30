/*
 * Redis Cluster's map: which master owns which of the 16384 slots, learnt
 * from a seed (CLUSTER SLOTS, the next seed when one fails) and learnt
 * again when asked; and a channel's slot (CRC16, {hash tags}).
 */

#ifndef _NGX_WS_AGENT_REDIS_CLUSTER_H_INCLUDED_
#define _NGX_WS_AGENT_REDIS_CLUSTER_H_INCLUDED_


#include "ngx_ws_agent_redis_node.h"


#define NGX_WS_AGENT_SLOTS           16384
#define NGX_WS_AGENT_NO_MASTER       0xffff
#define NGX_WS_AGENT_NO_ROUTE        0xff    /* a route: no owner known */


typedef struct {
    ngx_sockaddr_t                sockaddr;
    socklen_t                     socklen;
} ngx_ws_agent_redis_master_t;


typedef struct ngx_ws_agent_redis_cluster_s  ngx_ws_agent_redis_cluster_t;

/* a new map is in cl->masters and cl->slots */
typedef void (*ngx_ws_agent_redis_map_pt)(ngx_ws_agent_redis_cluster_t *cl);


struct ngx_ws_agent_redis_cluster_s {
    ngx_ws_agent_redis_node_t     node;         /* to a seed */
    ngx_log_t                    *log;
    ngx_ws_agent_redis_map_pt     map;
    void                         *data;

    ngx_ws_agent_redis_master_t   masters[NGX_WS_AGENT_MAX_NODES];
    ngx_uint_t                    nmasters;
    uint16_t                      slots[NGX_WS_AGENT_SLOTS];  /* master */

    ngx_event_t                   every;        /* learn it again, always */
    ngx_uint_t                    asked;        /* CLUSTER SLOTS unanswered */
    unsigned                      again:1;      /* asked while one was out */
};


void ngx_ws_agent_redis_cluster_start(ngx_ws_agent_redis_cluster_t *cl,
    ngx_ws_agent_redis_server_t *seeds, ngx_ws_agent_redis_map_pt map,
    void *data, ngx_log_t *log);

/*
 * The map onto an owner's route: route[slot] = index[the slot's master]
 * (index[m] may be NGX_WS_AGENT_NO_ROUTE), owns[i] += the slots routed to
 * i; returns how many slots were routed anew
 */
ngx_uint_t ngx_ws_agent_redis_cluster_route(ngx_ws_agent_redis_cluster_t *cl,
    uint8_t *index, uint8_t *route, ngx_uint_t *owns);

/* learn the map again (once more after the one being learnt, if any) */
void ngx_ws_agent_redis_cluster_refresh(ngx_ws_agent_redis_cluster_t *cl);

void ngx_ws_agent_redis_cluster_close(ngx_ws_agent_redis_cluster_t *cl);

/*
 * A redirect: "MOVED slot ip:port" (the slot has a new owner) or "ASK slot
 * ip:port" (this one command goes there).  NGX_OK: rd is filled in;
 * NGX_DECLINED: not a redirect, or not one that can be followed
 */
typedef struct {
    ngx_uint_t                    slot;
    ngx_uint_t                    moved;        /* MOVED, not ASK */
    ngx_str_t                     where;        /* "ip:port", for the log */
    ngx_sockaddr_t                sockaddr;
    socklen_t                     socklen;
} ngx_ws_agent_redis_redirect_t;

ngx_int_t ngx_ws_agent_redis_redirect_parse(u_char *text, size_t len,
    ngx_ws_agent_redis_redirect_t *rd);

/* the slot of a key (a channel), as Redis computes it */
ngx_uint_t ngx_ws_agent_redis_slot(u_char *key, size_t len);

#endif /* _NGX_WS_AGENT_REDIS_CLUSTER_H_INCLUDED_ */
