/*
 * One connection to one Redis node, on nginx's own machinery: the name
 * resolved with http's resolver before every connect (or an address fixed
 * when the configuration was read), an event-driven peer connection, TLS
 * with nginx's client (ngx_ssl_*), and the setup every connect needs:
 * AUTH [user] password, SELECT db, ROLE.  hiredis only parses the replies
 * (redisReader) and formats the setup commands.
 *
 * The node's owner hands it formatted commands once it is ready, and gets
 * their replies in order; the node reconnects by itself with back-off and
 * tells its owner when it is up, and when it went down (what was sent and
 * not answered is then the owner's to send again).
 */

#ifndef _NGX_WS_AGENT_REDIS_NODE_H_INCLUDED_
#define _NGX_WS_AGENT_REDIS_NODE_H_INCLUDED_


#include "ngx_ws_agent_conf.h"
#include "ngx_ws_agent_stats.h"

#include <hiredis/hiredis.h>


typedef struct ngx_ws_agent_redis_node_s  ngx_ws_agent_redis_node_t;

typedef struct {
    /* setup is done: commands may be sent */
    void  (*ready)(ngx_ws_agent_redis_node_t *node);
    /* the reply to the oldest command sent and not yet answered */
    void  (*reply)(ngx_ws_agent_redis_node_t *node, redisReply *reply);
    /*
     * the connection is gone (why: a reason for the log; logged: the node
     * has logged the cause itself); commands unanswered will never be
     */
    void  (*down)(ngx_ws_agent_redis_node_t *node, const char *why,
                  ngx_uint_t logged);
} ngx_ws_agent_redis_node_handler_t;


typedef enum {
    NGX_WS_AGENT_NODE_IDLE = 0,     /* waiting to connect again */
    NGX_WS_AGENT_NODE_RESOLVING,
    NGX_WS_AGENT_NODE_CONNECTING,
    NGX_WS_AGENT_NODE_HANDSHAKE,    /* TLS */
    NGX_WS_AGENT_NODE_SETUP,        /* AUTH, SELECT, ROLE answered? */
    NGX_WS_AGENT_NODE_READY,
    NGX_WS_AGENT_NODE_CLOSED        /* worker exit: never again */
} ngx_ws_agent_redis_node_state_e;


struct ngx_ws_agent_redis_node_s {
    ngx_ws_agent_redis_server_t        *server;
    ngx_log_t                          *log;        /* &own_log */
    ngx_log_t                           own_log;    /* "while <action>" */
    ngx_ws_agent_redis_node_state_e     state;

    ngx_peer_connection_t               peer;
    ngx_resolver_ctx_t                 *resolving;
    ngx_sockaddr_t                      sockaddr;
    socklen_t                           socklen;
    ngx_str_t                           name;       /* peer, as ip:port */
    u_char                              text[NGX_SOCKADDR_STRLEN];
    ngx_uint_t                          next_addr;  /* round robin */

    redisReader                        *reader;
    ngx_uint_t                          steps[4];   /* the setup's commands */
    ngx_uint_t                          nsteps;
    ngx_uint_t                          step;       /* the next reply's */
    u_char                              role_text[16];

    /* bytes to write: [pos, last) of [start, end) */
    u_char                             *start;
    u_char                             *pos;
    u_char                             *last;
    u_char                             *end;

    ngx_event_t                         retry;
    ngx_event_t                         deadline;   /* connect..ready */
    ngx_msec_t                          backoff;

    ngx_ws_agent_redis_node_handler_t  *handler;
    void                               *data;
    ngx_str_t                           script;     /* SCRIPT LOAD, or "" */
    const char                         *ready_action;   /* for the log */
    ngx_ws_agent_node_stats_t          *stats;      /* on the status page */
    ngx_ws_agent_node_stats_t           unshown;    /* or: not on it */

    unsigned                            known:1;    /* sockaddr is set */
    unsigned                            not_master:1;   /* ROLE said so */
};


/* init_main_conf: where to connect, and the TLS context; logs its errors */
ngx_int_t ngx_ws_agent_redis_server_init(ngx_conf_t *cf,
    ngx_ws_agent_redis_server_t *server,
    ngx_ws_agent_redis_server_t *sentinels);

/*
 * worker start: the node begins connecting (a sentinel master's node waits
 * for node_connect_to()); stats: where the status page finds it, or NULL
 */
void ngx_ws_agent_redis_node_start(ngx_ws_agent_redis_node_t *node,
    ngx_ws_agent_redis_server_t *server, ngx_ws_agent_redis_node_handler_t *h,
    void *data, ngx_log_t *log, ngx_ws_agent_node_stats_t *stats);

/*
 * before node_start(): every connect's setup also loads this Lua script
 * (its text), so EVALSHA never meets NOSCRIPT after a restart or failover
 */
#define ngx_ws_agent_redis_node_script(node, text)                           \
    ((node)->script = *(text))

/* before node_start(): what the log says the ready connection does */
#define ngx_ws_agent_redis_node_action(node, text)                           \
    ((node)->ready_action = (text))

/*
 * a sentinel master's node: the master is at sa now; a connection to
 * another address is closed (its unanswered commands are the owner's)
 */
void ngx_ws_agent_redis_node_connect_to(ngx_ws_agent_redis_node_t *node,
    struct sockaddr *sa, socklen_t socklen);

/* the connection closed now (owner told), connecting again after back-off */
void ngx_ws_agent_redis_node_reset(ngx_ws_agent_redis_node_t *node,
    const char *why);

#define ngx_ws_agent_redis_node_ready(node)                                  \
    ((node)->state == NGX_WS_AGENT_NODE_READY)

/* one formatted command (copied), written once this event loop turn ends */
ngx_int_t ngx_ws_agent_redis_node_send(ngx_ws_agent_redis_node_t *node,
    u_char *data, size_t len);

/*
 * Worker exit: writes what is pending and reads replies for at most
 * timeout ms, blocking; NGX_ERROR when the connection is gone
 */
ngx_int_t ngx_ws_agent_redis_node_wait(ngx_ws_agent_redis_node_t *node,
    ngx_msec_t timeout);

/*
 * ip (text, as Redis writes addresses) and port as a socket address:
 * NGX_OK, or NGX_DECLINED when ip is not an IP address or port no port
 */
ngx_int_t ngx_ws_agent_redis_sockaddr(u_char *ip, size_t len, ngx_int_t port,
    ngx_sockaddr_t *sa, socklen_t *socklen);

/*
 * A cluster master's server: as the configuration says how (TLS, ACL
 * user, db), at sa, which ROLE must confirm is a master; allocated from
 * the cycle's pool.  NGX_ERROR: no memory
 */
ngx_int_t ngx_ws_agent_redis_server_at(ngx_ws_agent_redis_server_t *server,
    ngx_ws_agent_redis_server_t *conf, struct sockaddr *sa,
    socklen_t socklen);

/* worker exit: the connection closed, no handler called again */
void ngx_ws_agent_redis_node_close(ngx_ws_agent_redis_node_t *node);

#endif /* _NGX_WS_AGENT_REDIS_NODE_H_INCLUDED_ */
