/*
 * One connection to one Redis node (see ngx_ws_agent_redis_node.h).
 *
 * A node goes IDLE -> (RESOLVING) -> CONNECTING -> (HANDSHAKE) -> SETUP ->
 * READY, and from any of them to IDLE through node_down(), the one way a
 * connection ends before worker exit; node_down() tells the owner and arms
 * the retry timer (back-off with jitter).  Every timer here is cancelable:
 * a graceful shutdown never waits for Redis.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include <poll.h>

#include "ngx_ws_agent_redis_node.h"


#define NGX_WS_AGENT_NODE_BACKOFF_MIN   100
#define NGX_WS_AGENT_NODE_BACKOFF_MAX   5000
#define NGX_WS_AGENT_NODE_TIMEOUT       5000    /* connect .. ready */
#define NGX_WS_AGENT_NODE_OUT           16384   /* write buffer, first size */
#define NGX_WS_AGENT_NODE_READ          16384

/* the setup's steps, in the order they are sent */
#define NGX_WS_AGENT_NODE_AUTH          0
#define NGX_WS_AGENT_NODE_SELECT        1
#define NGX_WS_AGENT_NODE_ROLE          2
#define NGX_WS_AGENT_NODE_SCRIPT        3

#define ngx_ws_agent_redis_node_in_setup(node)                               \
    ((node)->step < (node)->nsteps)


static void ngx_ws_agent_redis_node_connect(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_node_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_ws_agent_redis_node_peer(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_node_connected(ngx_event_t *ev);
#if (NGX_SSL)
static void ngx_ws_agent_redis_node_tls(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_node_handshake(ngx_connection_t *c);
#endif
static void ngx_ws_agent_redis_node_setup(ngx_ws_agent_redis_node_t *node);
static ngx_int_t ngx_ws_agent_redis_node_command(
    ngx_ws_agent_redis_node_t *node, ngx_uint_t step, int argc,
    const char **argv, const size_t *argvlen);
static void ngx_ws_agent_redis_node_setup_reply(
    ngx_ws_agent_redis_node_t *node, redisReply *rr);
static void ngx_ws_agent_redis_node_up(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_node_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static void ngx_ws_agent_redis_node_drop(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_node_retry(ngx_event_t *ev);
static void ngx_ws_agent_redis_node_timeout(ngx_event_t *ev);
static void ngx_ws_agent_redis_node_read(ngx_event_t *ev);
static void ngx_ws_agent_redis_node_write(ngx_event_t *ev);
static ngx_int_t ngx_ws_agent_redis_node_reserve(
    ngx_ws_agent_redis_node_t *node, size_t len);
static void ngx_ws_agent_redis_node_status(ngx_ws_agent_redis_node_t *node);
static redisReader *ngx_ws_agent_redis_node_reader(void);
static const char *ngx_ws_agent_redis_node_lost(
    ngx_ws_agent_redis_node_t *node, const char *why);
static void ngx_ws_agent_redis_free_object(void *reply);
static u_char *ngx_ws_agent_redis_node_log(ngx_log_t *log, u_char *buf,
    size_t len);


#if (NGX_SSL)

static ngx_int_t
ngx_ws_agent_redis_tls_init(ngx_conf_t *cf, ngx_ws_agent_redis_server_t *rd)
{
    ngx_pool_cleanup_t  *cln;

    if (rd->tls_certificate.len && rd->tls_certificate_key.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis_tls_certificate\" is set "
                           "without \"ws_agent_redis_tls_certificate_key\"");
        return NGX_ERROR;
    }

    if (rd->tls_certificate_key.len && rd->tls_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis_tls_certificate_key\" is set "
                           "without \"ws_agent_redis_tls_certificate\"");
        return NGX_ERROR;
    }

    if (rd->tls_verify && rd->tls_trusted_certificate.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has tls and "
                           "ws_agent_redis_tls_verify on but no "
                           "\"ws_agent_redis_tls_trusted_certificate\"");
        return NGX_ERROR;
    }

    rd->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (rd->ssl == NULL) {
        return NGX_ERROR;
    }

    rd->ssl->log = cf->log;

    if (ngx_ssl_create(rd->ssl, rd->tls_protocols, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(rd->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = rd->ssl;

    if (rd->tls_certificate.len
        && ngx_ssl_certificate(cf, rd->ssl, &rd->tls_certificate,
                               &rd->tls_certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ssl_ciphers(cf, rd->ssl, &rd->tls_ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (rd->tls_trusted_certificate.len
        && ngx_ssl_trusted_certificate(cf, rd->ssl,
                                       &rd->tls_trusted_certificate, 4)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}

#else

static ngx_int_t
ngx_ws_agent_redis_tls_init(ngx_conf_t *cf, ngx_ws_agent_redis_server_t *rd)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"ws_agent_redis\" has tls but this nginx was built "
                       "without SSL");
    return NGX_ERROR;
}

#endif


ngx_int_t
ngx_ws_agent_redis_server_init(ngx_conf_t *cf,
    ngx_ws_agent_redis_server_t *rd, ngx_ws_agent_redis_server_t *sentinels)
    /* sentinels: the sentinels, or a cluster's seeds */
{
    u_char                    *p;
    ngx_url_t                  u;
    ngx_uint_t                 i;
    ngx_resolver_t            *resolver;
    ngx_http_core_loc_conf_t  *clcf;

    static const char  *tls[] = {
        "ws_agent_redis_tls_trusted_certificate",
        "ws_agent_redis_tls_name",
        "ws_agent_redis_tls_certificate",
        "ws_agent_redis_tls_certificate_key",
        "ws_agent_redis_tls_ciphers",
        "ws_agent_redis_tls_protocols",
        "ws_agent_redis_tls_verify"
    };
    ngx_uint_t  set[7];

    set[0] = rd->tls_trusted_certificate.len != 0;
    set[1] = rd->tls_name.len != 0;
    set[2] = rd->tls_certificate.len != 0;
    set[3] = rd->tls_certificate_key.len != 0;
    set[4] = rd->tls_ciphers.len != 0;
    set[5] = rd->tls_protocols != 0;
    set[6] = rd->tls_verify != NGX_CONF_UNSET;

    if (!rd->tls && !sentinels->tls) {
        for (i = 0; i < 7; i++) {
            if (set[i]) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"%s\" is set but \"ws_agent_redis\" "
                                   "has no tls", tls[i]);
                return NGX_ERROR;
            }
        }
    }

    /* the TLS settings, defaulted: the sentinels' TLS uses them too */
    ngx_conf_init_value(rd->tls_verify, 1);

    if (rd->tls_protocols == 0) {
        rd->tls_protocols = NGX_CONF_BITMASK_SET
                            | NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3;
    }

    if (rd->tls_ciphers.len == 0) {
        ngx_str_set(&rd->tls_ciphers, "DEFAULT");
    }

    if (rd->cluster) {
        if (rd->db) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_redis\" is cluster: db= is not "
                               "supported (a cluster has one database)");
            return NGX_ERROR;
        }

        if (rd->tls && rd->tls_verify && rd->tls_name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_redis\" is cluster with tls: set "
                               "\"ws_agent_redis_tls_name\" to the name the "
                               "nodes' certificates carry");
            return NGX_ERROR;
        }

        /* the seeds are nodes of the cluster: the same AUTH and TLS */
        sentinels->user = rd->user;
        sentinels->password = rd->password;
        sentinels->tls = rd->tls;

        if (rd->tls) {
            if (ngx_ws_agent_redis_tls_init(cf, rd) != NGX_OK) {
                return NGX_ERROR;
            }

            sentinels->ssl = rd->ssl;
            sentinels->tls_verify = rd->tls_verify;
            sentinels->tls_name = rd->tls_name;
        }

        return NGX_OK;
    }

    if (rd->master.len) {
        /* the sentinels name the master by its address */
        rd->need_master = 1;
        if ((rd->tls || sentinels->tls) && rd->tls_verify
            && rd->tls_name.len == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_redis\" names a sentinel master "
                               "with tls: set \"ws_agent_redis_tls_name\" to "
                               "the name the servers' certificates carry");
            return NGX_ERROR;
        }

        rd->host = rd->master;

        if (sentinels->tls) {
            sentinels->tls_verify = rd->tls_verify;
            sentinels->tls_name = rd->tls_name;
            sentinels->tls_trusted_certificate = rd->tls_trusted_certificate;
            sentinels->tls_certificate = rd->tls_certificate;
            sentinels->tls_certificate_key = rd->tls_certificate_key;
            sentinels->tls_ciphers = rd->tls_ciphers;
            sentinels->tls_protocols = rd->tls_protocols;

            if (ngx_ws_agent_redis_tls_init(cf, sentinels) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        return rd->tls ? ngx_ws_agent_redis_tls_init(cf, rd) : NGX_OK;
    }

    if (rd->unix_socket) {
        return NGX_OK;
    }

    /*
     * A name is resolved before every connect when http has a resolver,
     * so one that moves is followed; without one (and for an IP), it is
     * resolved here, once, as nginx does for proxy_pass.  Core's merge has
     * run (it comes first): http's resolver is the one configured, or a
     * dummy with no servers.
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    resolver = (clcf->resolver && clcf->resolver->connections.nelts)
               ? clcf->resolver : NULL;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = rd->addr;
    u.default_port = 6379;
    u.no_resolve = (resolver != NULL);

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has an invalid address "
                           "\"%V\": %s", &rd->addr,
                           u.err ? u.err : "cannot parse");
        return NGX_ERROR;
    }

    if (u.naddrs) {
        rd->addrs = u.addrs;
        rd->naddrs = u.naddrs;

    } else if (resolver) {
        /* http's own level is never merged: its resolver_timeout may be unset */
        rd->resolver = resolver;
        rd->resolver_timeout = (clcf->resolver_timeout == NGX_CONF_UNSET_MSEC)
                               ? 30000 : clcf->resolver_timeout;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" address \"%V\" does not "
                           "resolve", &rd->addr);
        return NGX_ERROR;
    }

    /* the host, NUL-terminated: for the resolver, SNI and verification */
    p = ngx_pnalloc(cf->pool, u.host.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, u.host.data, u.host.len);
    p[u.host.len] = '\0';

    rd->host.data = p;
    rd->host.len = u.host.len;
    rd->port = u.port;

    if (!rd->tls) {
        return NGX_OK;
    }

    if (rd->tls_name.len == 0) {
        rd->tls_name = rd->host;
    }

    return ngx_ws_agent_redis_tls_init(cf, rd);
}


void
ngx_ws_agent_redis_node_start(ngx_ws_agent_redis_node_t *node,
    ngx_ws_agent_redis_server_t *server, ngx_ws_agent_redis_node_handler_t *h,
    void *data, ngx_log_t *log, ngx_ws_agent_node_stats_t *stats)
{
    ngx_str_t    script;
    const char  *action;

    /* set by ngx_ws_agent_redis_node_script() and _action() before */
    script = node->script;
    action = node->ready_action;

    ngx_memzero(node, sizeof(ngx_ws_agent_redis_node_t));

    node->script = script;
    node->ready_action = action ? action : "publishing to Redis";

    node->server = server;

    /* nginx's own lines about this connection (SSL, connect) say whose */
    node->own_log = *log;
    node->own_log.handler = ngx_ws_agent_redis_node_log;
    node->own_log.data = node;
    node->own_log.action = NULL;
    node->log = &node->own_log;
    log = node->log;
    node->handler = h;
    node->data = data;
    node->stats = stats ? stats : &node->unshown;
    node->backoff = NGX_WS_AGENT_NODE_BACKOFF_MIN;

    node->retry.handler = ngx_ws_agent_redis_node_retry;
    node->retry.data = node;
    node->retry.log = log;
    node->retry.cancelable = 1;

    node->deadline.handler = ngx_ws_agent_redis_node_timeout;
    node->deadline.data = node;
    node->deadline.log = log;
    node->deadline.cancelable = 1;

    node->stats->tls = server->tls;

    if (server->master.len == 0) {
        ngx_ws_agent_redis_node_connect(node);
    }
}


void
ngx_ws_agent_redis_node_connect_to(ngx_ws_agent_redis_node_t *node,
    struct sockaddr *sa, socklen_t socklen)
{
    if (node->known
        && ngx_cmp_sockaddr(sa, socklen, &node->sockaddr.sockaddr,
                            node->socklen, 1)
           == NGX_OK
        && (node->state != NGX_WS_AGENT_NODE_IDLE || node->retry.timer_set))
    {
        /* there, or on the way */
        return;
    }

    if (node->state != NGX_WS_AGENT_NODE_IDLE
        && node->state != NGX_WS_AGENT_NODE_CLOSED)
    {
        ngx_ws_agent_redis_node_down(node, "the master moved", 1);
    }

    if (node->state == NGX_WS_AGENT_NODE_CLOSED) {
        return;
    }

    if (node->retry.timer_set) {
        ngx_del_timer(&node->retry);
    }

    ngx_memcpy(&node->sockaddr, sa, socklen);
    node->socklen = socklen;
    node->known = 1;

    ngx_ws_agent_redis_node_connect(node);
}


void
ngx_ws_agent_redis_node_reset(ngx_ws_agent_redis_node_t *node,
    const char *why)
{
    if (node->state != NGX_WS_AGENT_NODE_IDLE
        && node->state != NGX_WS_AGENT_NODE_CLOSED)
    {
        ngx_ws_agent_redis_node_down(node, why, 1);
    }
}


static void
ngx_ws_agent_redis_node_connect(ngx_ws_agent_redis_node_t *node)
{
    ngx_resolver_ctx_t           *ctx, temp;
    ngx_ws_agent_redis_server_t  *rd = node->server;

    ngx_memzero(&temp, sizeof(ngx_resolver_ctx_t));

    ngx_add_timer(&node->deadline, NGX_WS_AGENT_NODE_TIMEOUT);

    node->role_text[0] = '\0';
    node->not_master = 0;

    if (rd->master.len) {
        /* where the sentinels said the master is */
        ngx_ws_agent_redis_node_peer(node);
        return;
    }

    if (rd->resolver == NULL) {
        /* the addresses the configuration fixed, in turn */
        ngx_memcpy(&node->sockaddr,
                   rd->addrs[node->next_addr % rd->naddrs].sockaddr,
                   rd->addrs[node->next_addr % rd->naddrs].socklen);
        node->socklen = rd->addrs[node->next_addr % rd->naddrs].socklen;
        node->next_addr++;

        ngx_ws_agent_redis_node_peer(node);
        return;
    }

    node->state = NGX_WS_AGENT_NODE_RESOLVING;
    node->log->action = "resolving the Redis name";

    temp.name = rd->host;

    ctx = ngx_resolve_start(rd->resolver, &temp);
    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_ws_agent_redis_node_down(node, "cannot start resolving", 0);
        return;
    }

    ctx->name = rd->host;
    ctx->handler = ngx_ws_agent_redis_node_resolved;
    ctx->data = node;
    ctx->timeout = rd->resolver_timeout;
    ctx->cancelable = 1;

    node->resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* ngx_resolve_name() freed ctx */
        node->resolving = NULL;
        ngx_ws_agent_redis_node_down(node, "cannot start resolving", 0);
    }
}


static void
ngx_ws_agent_redis_node_resolved(ngx_resolver_ctx_t *ctx)
{
    u_char                      why[NGX_WS_AGENT_ERROR_LEN];
    ngx_uint_t                  i;
    ngx_ws_agent_redis_node_t  *node = ctx->data;

    node->resolving = NULL;

    if (ctx->state) {
        ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                     "cannot resolve \"%V\": %s%Z", &ctx->name,
                     ngx_resolver_strerror(ctx->state));
        why[NGX_WS_AGENT_ERROR_LEN - 1] = '\0';
        ngx_resolve_name_done(ctx);
        ngx_ws_agent_redis_node_down(node, (char *) why, 0);
        return;
    }

    i = node->next_addr++ % ctx->naddrs;

    ngx_memcpy(&node->sockaddr, ctx->addrs[i].sockaddr,
               ctx->addrs[i].socklen);
    node->socklen = ctx->addrs[i].socklen;
    ngx_inet_set_port(&node->sockaddr.sockaddr, node->server->port);

    ngx_resolve_name_done(ctx);

    ngx_ws_agent_redis_node_peer(node);
}


static void
ngx_ws_agent_redis_node_peer(ngx_ws_agent_redis_node_t *node)
{
    u_char            why[NGX_WS_AGENT_ERROR_LEN];
    ngx_int_t         rc;
    ngx_err_t         err;
    ngx_connection_t  *c;

    node->name.data = node->text;
    node->name.len = ngx_sock_ntop(&node->sockaddr.sockaddr, node->socklen,
                                   node->text, NGX_SOCKADDR_STRLEN, 1);
    ngx_ws_agent_redis_node_status(node);

    ngx_memzero(&node->peer, sizeof(ngx_peer_connection_t));
    node->peer.sockaddr = &node->sockaddr.sockaddr;
    node->peer.socklen = node->socklen;
    node->peer.name = &node->name;
    node->peer.get = ngx_event_get_peer;
    node->peer.log = node->log;
    node->peer.log_error = NGX_ERROR_ERR;

    node->state = NGX_WS_AGENT_NODE_CONNECTING;
    node->log->action = "connecting to Redis";

    ngx_set_socket_errno(0);

    rc = ngx_event_connect_peer(&node->peer);
    err = ngx_socket_errno;

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        node->peer.connection = NULL;

        if (rc == NGX_DECLINED) {
            ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                         "connect() failed (%d: %s)%Z", err, strerror(err));

        } else if (err) {
            /* socket() failed: EMFILE when no fd is free */
            ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                         "cannot open a socket (%d: %s)%Z", err,
                         strerror(err));

        } else {
            ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                         "cannot open a socket (no free connection: "
                         "worker_connections)%Z");
        }

        why[NGX_WS_AGENT_ERROR_LEN - 1] = '\0';
        ngx_ws_agent_redis_node_down(node, (char *) why, 0);
        return;
    }

    c = node->peer.connection;
    c->data = node;

    /* for nginx's TLS connection state: freed with the connection */
    c->pool = ngx_create_pool(1024, node->log);
    if (c->pool == NULL) {
        ngx_ws_agent_redis_node_down(node, "out of memory", 0);
        return;
    }
    c->read->handler = ngx_ws_agent_redis_node_connected;
    c->write->handler = ngx_ws_agent_redis_node_connected;

    if (rc == NGX_OK) {
        ngx_ws_agent_redis_node_connected(c->write);
    }
}


/* the non-blocking connect is done, one way or the other */

static void
ngx_ws_agent_redis_node_connected(ngx_event_t *ev)
{
    int                         err;
    u_char                      why[NGX_WS_AGENT_ERROR_LEN];
    socklen_t                   len;
    ngx_connection_t           *c = ev->data;
    ngx_ws_agent_redis_node_t  *node = c->data;

    if (node->state != NGX_WS_AGENT_NODE_CONNECTING) {
        return;
    }

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                     "connect() failed (%d: %s)%Z", err, strerror(err));
        why[NGX_WS_AGENT_ERROR_LEN - 1] = '\0';
        ngx_ws_agent_redis_node_down(node, (char *) why, 0);
        return;
    }

    node->reader = ngx_ws_agent_redis_node_reader();
    if (node->reader == NULL) {
        ngx_ws_agent_redis_node_down(node, "out of memory", 0);
        return;
    }

#if (NGX_SSL)
    if (node->server->ssl) {
        ngx_ws_agent_redis_node_tls(node);
        return;
    }
#endif

    ngx_ws_agent_redis_node_setup(node);
}


#if (NGX_SSL)

static void
ngx_ws_agent_redis_node_tls(ngx_ws_agent_redis_node_t *node)
{
    ngx_int_t                     rc;
    ngx_connection_t             *c = node->peer.connection;
    ngx_ws_agent_redis_server_t  *rd = node->server;

    if (ngx_ssl_create_connection(rd->ssl, c, NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_ws_agent_redis_node_down(node, "TLS connection not created", 0);
        return;
    }

    /* SNI carries a name, never an address */
    if (ngx_inet_addr(rd->tls_name.data, rd->tls_name.len) == INADDR_NONE
#if (NGX_HAVE_INET6)
        && ngx_inet6_addr(rd->tls_name.data, rd->tls_name.len, NULL)
           != NGX_OK
#endif
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) rd->tls_name.data) == 0)
    {
        ngx_ws_agent_redis_node_down(node, "TLS server name not set", 0);
        return;
    }

    node->state = NGX_WS_AGENT_NODE_HANDSHAKE;
    node->log->action = "TLS handshaking with Redis";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_ws_agent_redis_node_handshake;
        return;
    }

    ngx_ws_agent_redis_node_handshake(c);
}


static void
ngx_ws_agent_redis_node_handshake(ngx_connection_t *c)
{
    long                          rc;
    u_char                        why[NGX_WS_AGENT_ERROR_LEN];
    ngx_ws_agent_redis_node_t    *node = c->data;
    ngx_ws_agent_redis_server_t  *rd = node->server;

    if (!c->ssl->handshaked) {
        ngx_ws_agent_redis_node_down(node, "TLS handshake failed", 0);
        return;
    }

    if (rd->tls_verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                         "TLS certificate verify failed (%l: %s)%Z", rc,
                         X509_verify_cert_error_string(rc));
            why[NGX_WS_AGENT_ERROR_LEN - 1] = '\0';
            ngx_ws_agent_redis_node_down(node, (char *) why, 0);
            return;
        }

        if (ngx_ssl_check_host(c, &rd->tls_name) != NGX_OK) {
            ngx_snprintf(why, NGX_WS_AGENT_ERROR_LEN - 1,
                         "TLS certificate does not match \"%V\"%Z",
                         &rd->tls_name);
            why[NGX_WS_AGENT_ERROR_LEN - 1] = '\0';
            ngx_ws_agent_redis_node_down(node, (char *) why, 0);
            return;
        }
    }

    ngx_ws_agent_redis_node_setup(node);
}

#endif


/*
 * AUTH, SELECT, ROLE (and SCRIPT LOAD) go in one write; their replies come first, in
 * that order, and the node is ready when the last one is in
 */

static void
ngx_ws_agent_redis_node_setup(ngx_ws_agent_redis_node_t *node)
{
    u_char                        db[NGX_INT_T_LEN];
    ngx_connection_t             *c = node->peer.connection;
    const char                   *argv[3];
    size_t                        argvlen[3];
    ngx_ws_agent_redis_server_t  *rd = node->server;

    node->state = NGX_WS_AGENT_NODE_SETUP;
    node->log->action = "setting up the Redis connection";
    node->nsteps = 0;
    node->step = 0;

    c->read->handler = ngx_ws_agent_redis_node_read;
    c->write->handler = ngx_ws_agent_redis_node_write;

    if (rd->password.len) {
        argv[0] = "AUTH";
        argvlen[0] = 4;

        if (rd->user.len) {
            argv[1] = (const char *) rd->user.data;
            argvlen[1] = rd->user.len;
            argv[2] = (const char *) rd->password.data;
            argvlen[2] = rd->password.len;

        } else {
            argv[1] = (const char *) rd->password.data;
            argvlen[1] = rd->password.len;
        }

        if (ngx_ws_agent_redis_node_command(node, NGX_WS_AGENT_NODE_AUTH,
                                            rd->user.len ? 3 : 2, argv,
                                            argvlen)
            != NGX_OK)
        {
            return;
        }
    }

    if (rd->db) {
        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", rd->db) - db;

        if (ngx_ws_agent_redis_node_command(node, NGX_WS_AGENT_NODE_SELECT,
                                            2, argv, argvlen)
            != NGX_OK)
        {
            return;
        }
    }

    argv[0] = "ROLE";
    argvlen[0] = 4;

    if (ngx_ws_agent_redis_node_command(node, NGX_WS_AGENT_NODE_ROLE, 1,
                                        argv, argvlen)
        != NGX_OK)
    {
        return;
    }

    if (node->script.len) {
        argv[0] = "SCRIPT";
        argvlen[0] = 6;
        argv[1] = "LOAD";
        argvlen[1] = 4;
        argv[2] = (const char *) node->script.data;
        argvlen[2] = node->script.len;

        if (ngx_ws_agent_redis_node_command(node, NGX_WS_AGENT_NODE_SCRIPT,
                                            3, argv, argvlen)
            != NGX_OK)
        {
            return;
        }
    }

    ngx_ws_agent_redis_node_write(c->write);
}


static ngx_int_t
ngx_ws_agent_redis_node_command(ngx_ws_agent_redis_node_t *node,
    ngx_uint_t step, int argc, const char **argv, const size_t *argvlen)
{
    int    len;
    char  *cmd;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        ngx_ws_agent_redis_node_down(node, "out of memory", 0);
        return NGX_ERROR;
    }

    if (ngx_ws_agent_redis_node_reserve(node, len) != NGX_OK) {
        redisFreeCommand(cmd);
        ngx_ws_agent_redis_node_down(node, "out of memory", 0);
        return NGX_ERROR;
    }

    node->last = ngx_cpymem(node->last, cmd, len);
    node->steps[node->nsteps++] = step;

    redisFreeCommand(cmd);

    return NGX_OK;
}


static void
ngx_ws_agent_redis_node_setup_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr)
{
    size_t                        len;
    ngx_uint_t                    step;
    ngx_ws_agent_redis_server_t  *rd = node->server;

    static const char  *what[] = {
        "AUTH (check ws_agent_redis user= and password=)",
        "SELECT (check ws_agent_redis db=)",
        "ROLE",
        "SCRIPT LOAD (ws_agent_stream needs a user allowed +script|load "
        "+evalsha +setbit +pexpire +xadd +xtrim, the channel's publish, "
        "and the stream's keys with their :seen: bitmaps, e.g. "
        "~agent:stream:*)"
    };

    step = node->steps[node->step++];

    if (rr->type == REDIS_REPLY_ERROR && step == NGX_WS_AGENT_NODE_ROLE) {
        /* a user without +role may still publish: the role stays unknown */
        ngx_log_error(NGX_LOG_WARN, node->log, 0,
                      "ws_agent: Redis %V refused ROLE, its role is not "
                      "checked: %*s", &rd->addr, (size_t) rr->len, rr->str);

    } else if (rr->type == REDIS_REPLY_ERROR) {
        /* an operator's error: said plainly, once per cause */
        ngx_log_error(NGX_LOG_ERR, node->log, 0,
                      "ws_agent: Redis %V refused %s: %*s", &rd->addr,
                      what[step], (size_t) rr->len, rr->str);

        ngx_ws_agent_redis_node_down(node, rr->str, 1);
        return;

    } else if (step == NGX_WS_AGENT_NODE_ROLE) {
        /* ["master", ...], ["slave", ...] or ["sentinel", ...] */
        if (rr->type == REDIS_REPLY_ARRAY && rr->elements
            && rr->element[0]->type == REDIS_REPLY_STRING)
        {
            len = ngx_min((size_t) rr->element[0]->len,
                          sizeof(node->role_text) - 1);
            ngx_memcpy(node->role_text, rr->element[0]->str, len);
            node->role_text[len] = '\0';
        }

        /*
         * a demoted master still takes PUBLISH, and its subscribers are
         * not the ones waiting: a sentinel's master must say "master"
         */
        if (rd->need_master
            && ngx_strcmp(node->role_text, "master") != 0)
        {
            ngx_log_error(NGX_LOG_ERR, node->log, 0,
                          "ws_agent: Redis %V at %V is not a master "
                          "(ROLE says %s), %s", &rd->addr, &node->name,
                          node->role_text[0] ? (char *) node->role_text
                                             : "nothing",
                          rd->master.len ? "asking the sentinels again"
                                         : "learning the cluster map again");
            node->not_master = 1;
            node->known = 0;
            ngx_ws_agent_redis_node_down(node, "not a master", 1);
            return;
        }
    }

    if (!ngx_ws_agent_redis_node_in_setup(node)) {
        ngx_ws_agent_redis_node_up(node);
    }
}


static void
ngx_ws_agent_redis_node_up(ngx_ws_agent_redis_node_t *node)
{
    if (node->deadline.timer_set) {
        ngx_del_timer(&node->deadline);
    }

    node->state = NGX_WS_AGENT_NODE_READY;
    node->log->action = (char *) node->ready_action;
    node->backoff = NGX_WS_AGENT_NODE_BACKOFF_MIN;

    ngx_ws_agent_redis_node_status(node);
    node->stats->connected = 1;

    node->handler->ready(node);
}


/* the one way a connection ends before exit: the owner is told, retry set */

static void
ngx_ws_agent_redis_node_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged)
{
    u_char      reason[NGX_WS_AGENT_ERROR_LEN];
    ngx_msec_t  delay;

    /* why may live in what drop() frees (the reader, a reply) */
    ngx_cpystrn(reason, (u_char *) why, NGX_WS_AGENT_ERROR_LEN);
    why = (const char *) reason;

    ngx_ws_agent_redis_node_drop(node);

    node->state = NGX_WS_AGENT_NODE_IDLE;
    node->stats->connected = 0;
    ngx_cpystrn(node->stats->last_error, (u_char *) why,
                NGX_WS_AGENT_ERROR_LEN);

    node->handler->down(node, why, logged);

    if (node->state != NGX_WS_AGENT_NODE_IDLE || node->retry.timer_set) {
        return;
    }

    /* exponential back-off with +-25% jitter, so workers do not stampede */
    delay = node->backoff - node->backoff / 4
            + (ngx_msec_t) ngx_random() % (node->backoff / 2 + 1);

    node->backoff = ngx_min(node->backoff * 2, NGX_WS_AGENT_NODE_BACKOFF_MAX);

    ngx_add_timer(&node->retry, delay);
}


/* everything of the current attempt freed: resolver, socket, buffers */

static void
ngx_ws_agent_redis_node_drop(ngx_ws_agent_redis_node_t *node)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c = node->peer.connection;

    if (node->deadline.timer_set) {
        ngx_del_timer(&node->deadline);
    }

    if (node->resolving) {
        ngx_resolve_name_done(node->resolving);
        node->resolving = NULL;
    }

    if (c) {
#if (NGX_SSL)
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }
#endif
        pool = c->pool;
        ngx_close_connection(c);
        node->peer.connection = NULL;

        if (pool) {
            ngx_destroy_pool(pool);
        }
    }

    if (node->reader) {
        redisReaderFree(node->reader);
        node->reader = NULL;
    }

    node->pos = node->start;
    node->last = node->start;
    node->nsteps = 0;
    node->step = 0;
}


static void
ngx_ws_agent_redis_node_retry(ngx_event_t *ev)
{
    ngx_ws_agent_redis_node_t  *node = ev->data;

    if (node->state != NGX_WS_AGENT_NODE_IDLE
        || (node->server->master.len && !node->known))
    {
        /* a master's node waits for the sentinels to name one */
        return;
    }

    node->stats->reconnects++;

    if (node->stats != &node->unshown) {
        ngx_ws_agent_count(NGX_WS_AGENT_REDIS_RECONNECTS, 1);
    }

    ngx_ws_agent_redis_node_connect(node);
}


static void
ngx_ws_agent_redis_node_timeout(ngx_event_t *ev)
{
    ngx_ws_agent_redis_node_t  *node = ev->data;

    ngx_ws_agent_redis_node_down(node, "timed out", 0);
}


/* replies: the setup's first, then the owner's, in the order sent */

static void
ngx_ws_agent_redis_node_read(ngx_event_t *ev)
{
    void                       *reply;
    ssize_t                     n;
    ngx_connection_t           *c = ev->data;
    ngx_ws_agent_redis_node_t  *node = c->data;
    u_char                      buf[NGX_WS_AGENT_NODE_READ];

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_ws_agent_redis_node_down(node, "event error", 0);
            }

            return;
        }

        if (n == 0) {
            ngx_ws_agent_redis_node_down(node,
                                    ngx_ws_agent_redis_node_lost(node,
                                                       "connection closed"), 0);
            return;
        }

        if (n == NGX_ERROR) {
            ngx_ws_agent_redis_node_down(node,
                                    ngx_ws_agent_redis_node_lost(node,
                                                       "connection lost"), 0);
            return;
        }

        if (redisReaderFeed(node->reader, (char *) buf, n) != REDIS_OK) {
            ngx_ws_agent_redis_node_down(node, "out of memory", 0);
            return;
        }

        for ( ;; ) {
            if (redisReaderGetReply(node->reader, &reply) != REDIS_OK) {
                ngx_ws_agent_redis_node_down(node, node->reader->errstr, 0);
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (ngx_ws_agent_redis_node_in_setup(node)) {
                ngx_ws_agent_redis_node_setup_reply(node, reply);

            } else {
                node->handler->reply(node, reply);
            }

            ngx_ws_agent_redis_free_object(reply);

            if (node->peer.connection != c) {
                /* the reply brought it down (or exit closed it) */
                return;
            }
        }
    }
}


/*
 * A TLS server that wants a client certificate ends the connection right
 * after the handshake (TLS 1.3); its alert is often lost to the reset
 */

static const char *
ngx_ws_agent_redis_node_lost(ngx_ws_agent_redis_node_t *node,
    const char *why)
{
#if (NGX_SSL)
    if (node->state == NGX_WS_AGENT_NODE_SETUP && node->server->ssl) {
        return "connection lost right after the TLS handshake: does the "
               "server require ws_agent_redis_tls_certificate?";
    }
#endif

    return why;
}


static void
ngx_ws_agent_redis_node_write(ngx_event_t *ev)
{
    ssize_t                     n;
    ngx_connection_t           *c = ev->data;
    ngx_ws_agent_redis_node_t  *node = c->data;

    while (node->pos < node->last) {

        n = c->send(c, node->pos, node->last - node->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_ws_agent_redis_node_down(node, "event error", 0);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_ws_agent_redis_node_down(node,
                                    ngx_ws_agent_redis_node_lost(node,
                                                       "connection lost"), 0);
            return;
        }

        node->pos += n;
    }

    node->pos = node->start;
    node->last = node->start;
}


ngx_int_t
ngx_ws_agent_redis_node_send(ngx_ws_agent_redis_node_t *node, u_char *data,
    size_t len)
{
    ngx_connection_t  *c = node->peer.connection;

    if (ngx_ws_agent_redis_node_reserve(node, len) != NGX_OK) {
        return NGX_ERROR;
    }

    node->last = ngx_cpymem(node->last, data, len);

    /*
     * posted: it runs after every event of this loop turn, so all the
     * commands they queued leave in one write()
     */
    if (!c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/* room for len more bytes at last: the sent part reused, or more memory */

static ngx_int_t
ngx_ws_agent_redis_node_reserve(ngx_ws_agent_redis_node_t *node, size_t len)
{
    u_char  *p;
    size_t   size, used;

    if ((size_t) (node->end - node->last) >= len) {
        return NGX_OK;
    }

    used = node->last - node->pos;
    size = node->end - node->start;

    if (node->pos != node->start && size - used >= len) {
        ngx_memmove(node->start, node->pos, used);
        node->pos = node->start;
        node->last = node->start + used;
        return NGX_OK;
    }

    size = ngx_max(size, NGX_WS_AGENT_NODE_OUT);

    while (size - used < len) {
        size *= 2;
    }

    p = ngx_alloc(size, node->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (used) {
        ngx_memcpy(p, node->pos, used);
    }

    if (node->start) {
        ngx_free(node->start);
    }

    node->start = p;
    node->pos = p;
    node->last = p + used;
    node->end = p + size;

    return NGX_OK;
}


ngx_int_t
ngx_ws_agent_redis_node_wait(ngx_ws_agent_redis_node_t *node,
    ngx_msec_t timeout)
{
    int                rc;
    struct pollfd      pfd;
    ngx_connection_t  *c = node->peer.connection;

    if (node->state != NGX_WS_AGENT_NODE_READY) {
        return NGX_ERROR;
    }

    if (node->pos < node->last) {
        c->write->ready = 1;
        ngx_ws_agent_redis_node_write(c->write);

        if (node->peer.connection != c) {
            return NGX_ERROR;
        }
    }

    pfd.fd = c->fd;
    pfd.events = POLLIN | (node->pos < node->last ? POLLOUT : 0);
    pfd.revents = 0;

    rc = poll(&pfd, 1, (int) timeout);

    if (rc <= 0) {
        return NGX_ERROR;
    }

    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
        /*
         * as epoll would say it: with EPOLLRDHUP, ngx_unix_recv() reads
         * nothing unless the event says bytes are available
         */
        c->read->ready = 1;
        c->read->available = -1;
        ngx_ws_agent_redis_node_read(c->read);
    }

    return node->peer.connection == c ? NGX_OK : NGX_ERROR;
}


void
ngx_ws_agent_redis_node_close(ngx_ws_agent_redis_node_t *node)
{
    if (node->retry.timer_set) {
        ngx_del_timer(&node->retry);
    }

    if (node->peer.connection && node->peer.connection->write->posted) {
        ngx_delete_posted_event(node->peer.connection->write);
    }

    ngx_ws_agent_redis_node_drop(node);

    if (node->start) {
        ngx_free(node->start);
        node->start = NULL;
    }

    node->state = NGX_WS_AGENT_NODE_CLOSED;
    node->stats->connected = 0;
}


ngx_int_t
ngx_ws_agent_redis_sockaddr(u_char *ip, size_t len, ngx_int_t port,
    ngx_sockaddr_t *sa, socklen_t *socklen)
{
    if (port < 1 || port > 65535) {
        return NGX_DECLINED;
    }

    ngx_memzero(sa, sizeof(ngx_sockaddr_t));

    sa->sockaddr_in.sin_addr.s_addr = ngx_inet_addr(ip, len);

    if (sa->sockaddr_in.sin_addr.s_addr != INADDR_NONE) {
        sa->sockaddr_in.sin_family = AF_INET;
        *socklen = sizeof(struct sockaddr_in);

#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(ip, len, sa->sockaddr_in6.sin6_addr.s6_addr)
               == NGX_OK)
    {
        sa->sockaddr_in6.sin6_family = AF_INET6;
        *socklen = sizeof(struct sockaddr_in6);
#endif

    } else {
        return NGX_DECLINED;
    }

    ngx_inet_set_port(&sa->sockaddr, (in_port_t) port);

    return NGX_OK;
}


/* the status page's view of the node: address, TLS, role */

static void
ngx_ws_agent_redis_node_status(ngx_ws_agent_redis_node_t *node)
{
    size_t  len;

    len = ngx_min(node->name.len, sizeof(node->stats->address) - 1);
    ngx_memcpy(node->stats->address, node->name.data, len);
    node->stats->address[len] = '\0';

    ngx_memcpy(node->stats->role, node->role_text, sizeof(node->role_text));
}


/*
 * Every PUBLISH is answered with an integer at the top level: the reader
 * hands out one object for those instead of a heap object per event (a
 * per-worker object: replies are taken one at a time, the owner has it,
 * then it is "freed").  Everything else goes to hiredis's own functions.
 */

static redisReplyObjectFunctions  *ngx_ws_agent_redis_hiredis_fn;
static redisReplyObjectFunctions   ngx_ws_agent_redis_fn;
static redisReply                  ngx_ws_agent_redis_integer;


static void *
ngx_ws_agent_redis_create_integer(const redisReadTask *task, long long value)
{
    if (task->parent != NULL) {
        return ngx_ws_agent_redis_hiredis_fn->createInteger(task, value);
    }

    ngx_memzero(&ngx_ws_agent_redis_integer, sizeof(redisReply));
    ngx_ws_agent_redis_integer.type = REDIS_REPLY_INTEGER;
    ngx_ws_agent_redis_integer.integer = value;

    return &ngx_ws_agent_redis_integer;
}


static void
ngx_ws_agent_redis_free_object(void *reply)
{
    if (reply != &ngx_ws_agent_redis_integer) {
        ngx_ws_agent_redis_hiredis_fn->freeObject(reply);
    }
}


static redisReader *
ngx_ws_agent_redis_node_reader(void)
{
    redisReader  *reader;

    reader = redisReaderCreate();
    if (reader == NULL) {
        return NULL;
    }

    if (ngx_ws_agent_redis_hiredis_fn == NULL) {
        ngx_ws_agent_redis_hiredis_fn = reader->fn;
        ngx_ws_agent_redis_fn = *reader->fn;
        ngx_ws_agent_redis_fn.createInteger =
                                         ngx_ws_agent_redis_create_integer;
        ngx_ws_agent_redis_fn.freeObject = ngx_ws_agent_redis_free_object;
    }

    reader->fn = &ngx_ws_agent_redis_fn;

    return reader;
}


static u_char *
ngx_ws_agent_redis_node_log(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                     *p;
    ngx_ws_agent_redis_node_t  *node = log->data;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(p, len, " while %s", log->action);
    }

    return ngx_snprintf(p, len - (p - buf), ", redis: %V (%V)",
                        &node->server->addr, &node->name);
}


ngx_int_t
ngx_ws_agent_redis_server_at(ngx_ws_agent_redis_server_t *server,
    ngx_ws_agent_redis_server_t *conf, struct sockaddr *sa, socklen_t socklen)
{
    u_char      *p;
    ngx_addr_t  *addr;

    addr = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_addr_t) + socklen);
    p = ngx_pnalloc(ngx_cycle->pool, NGX_SOCKADDR_STRLEN);
    if (addr == NULL || p == NULL) {
        return NGX_ERROR;
    }

    addr->sockaddr = (struct sockaddr *) (addr + 1);
    addr->socklen = socklen;
    ngx_memcpy(addr->sockaddr, sa, socklen);

    *server = *conf;
    server->cluster = 0;
    server->need_master = 1;
    server->addr.data = p;
    server->addr.len = ngx_sock_ntop(sa, socklen, p, NGX_SOCKADDR_STRLEN, 1);
    server->addrs = addr;
    server->naddrs = 1;

    return NGX_OK;
}
