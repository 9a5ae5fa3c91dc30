/*
 * Where the master is, as Redis Sentinel says (ngx_ws_agent_redis_sentinel.h).
 *
 * On each connection to a sentinel the first reply answers
 * SENTINEL get-master-addr-by-name, the second confirms the SUBSCRIBE to
 * +switch-master, and every later one is a message on that channel.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_ws_agent_redis_sentinel.h"


static void ngx_ws_agent_redis_sentinel_ready(ngx_ws_agent_redis_node_t *node);
static void ngx_ws_agent_redis_sentinel_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr);
static void ngx_ws_agent_redis_sentinel_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged);
static ngx_int_t ngx_ws_agent_redis_sentinel_send(
    ngx_ws_agent_redis_sentinel_t *sn, int argc, const char **argv);
static void ngx_ws_agent_redis_sentinel_switch(
    ngx_ws_agent_redis_sentinel_t *sn, u_char *p, size_t len);
static ngx_int_t ngx_ws_agent_redis_sentinel_master(
    ngx_ws_agent_redis_sentinel_t *sn, u_char *ip, size_t iplen,
    u_char *port, size_t portlen);


static ngx_ws_agent_redis_node_handler_t  ngx_ws_agent_redis_sentinel_handler
    = {
    ngx_ws_agent_redis_sentinel_ready,
    ngx_ws_agent_redis_sentinel_reply,
    ngx_ws_agent_redis_sentinel_down
};


void
ngx_ws_agent_redis_sentinel_start(ngx_ws_agent_redis_sentinel_t *sn,
    ngx_ws_agent_redis_server_t *sentinels, ngx_ws_agent_redis_server_t *data,
    ngx_ws_agent_redis_node_t **masters, ngx_uint_t n, ngx_log_t *log)
{
    ngx_memzero(sn, sizeof(ngx_ws_agent_redis_sentinel_t));

    sn->masters = masters;
    sn->nmasters = n;
    sn->data = data;
    sn->log = log;

    ngx_ws_agent_redis_node_start(&sn->node, sentinels,
                                  &ngx_ws_agent_redis_sentinel_handler, sn,
                                  log, NULL);
}


void
ngx_ws_agent_redis_sentinel_ask(ngx_ws_agent_redis_sentinel_t *sn)
{
    /* in subscribed mode only a new connection can ask again */
    ngx_ws_agent_redis_node_reset(&sn->node, "asking again");
}


void
ngx_ws_agent_redis_sentinel_close(ngx_ws_agent_redis_sentinel_t *sn)
{
    ngx_ws_agent_redis_node_close(&sn->node);
}


static void
ngx_ws_agent_redis_sentinel_ready(ngx_ws_agent_redis_node_t *node)
{
    ngx_ws_agent_redis_sentinel_t  *sn = node->data;

    const char  *ask[] = { "SENTINEL", "get-master-addr-by-name", NULL };
    const char  *subscribe[] = { "SUBSCRIBE", "+switch-master" };

    ask[2] = (const char *) sn->data->master.data;

    sn->replies = 0;

    if (sn->last_error[0]) {
        ngx_log_error(NGX_LOG_NOTICE, sn->log, 0,
                      "ws_agent: Redis sentinel at %V connected (the last "
                      "one tried was not: %s)", &node->name, sn->last_error);
        sn->last_error[0] = '\0';
    }

    if (ngx_ws_agent_redis_sentinel_send(sn, 3, ask) != NGX_OK
        || ngx_ws_agent_redis_sentinel_send(sn, 2, subscribe) != NGX_OK)
    {
        ngx_ws_agent_redis_node_reset(node, "out of memory");
    }
}


static ngx_int_t
ngx_ws_agent_redis_sentinel_send(ngx_ws_agent_redis_sentinel_t *sn,
    int argc, const char **argv)
{
    int        i, len;
    char      *cmd;
    size_t     argvlen[3];
    ngx_int_t  rc;

    for (i = 0; i < argc; i++) {
        argvlen[i] = ngx_strlen(argv[i]);
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    rc = ngx_ws_agent_redis_node_send(&sn->node, (u_char *) cmd, len);

    redisFreeCommand(cmd);

    return rc;
}


static void
ngx_ws_agent_redis_sentinel_reply(ngx_ws_agent_redis_node_t *node,
    redisReply *rr)
{
    redisReply                     **e;
    ngx_ws_agent_redis_sentinel_t   *sn = node->data;

    switch (sn->replies++) {

    case 0:
        /* get-master-addr-by-name: [ip, port], or nil */
        if (rr->type == REDIS_REPLY_ARRAY && rr->elements == 2
            && rr->element[0]->type == REDIS_REPLY_STRING
            && rr->element[1]->type == REDIS_REPLY_STRING)
        {
            e = rr->element;

            if (ngx_ws_agent_redis_sentinel_master(sn, (u_char *) e[0]->str,
                                                   e[0]->len,
                                                   (u_char *) e[1]->str,
                                                   e[1]->len)
                == NGX_OK)
            {
                return;
            }
        }

        if (rr->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, sn->log, 0,
                          "ws_agent: Redis sentinel at %V refused "
                          "SENTINEL get-master-addr-by-name: %*s",
                          &node->name, (size_t) rr->len, rr->str);

        } else if (ngx_time() - sn->unknown_logged_at >= 60) {
            /* the sentinels are asked in turn: once a minute is enough */
            ngx_log_error(NGX_LOG_ERR, sn->log, 0,
                          "ws_agent: Redis sentinels do not know master "
                          "\"%V\" (asked %V)", &sn->data->master,
                          &node->name);
            sn->unknown_logged_at = ngx_time();
        }

        /* the next sentinel, after back-off */
        ngx_ws_agent_redis_node_reset(node, "no master address");
        return;

    case 1:
        /* ["subscribe", "+switch-master", 1] */
        return;

    default:
        /* ["message", "+switch-master", "name oldip oldport newip newport"] */
        if (rr->type == REDIS_REPLY_ARRAY && rr->elements == 3
            && rr->element[2]->type == REDIS_REPLY_STRING)
        {
            ngx_ws_agent_redis_sentinel_switch(sn,
                                             (u_char *) rr->element[2]->str,
                                             rr->element[2]->len);
        }

        return;
    }
}


static void
ngx_ws_agent_redis_sentinel_switch(ngx_ws_agent_redis_sentinel_t *sn,
    u_char *p, size_t len)
{
    u_char      *last, *word[5];
    size_t       wlen[5];
    ngx_uint_t   n;

    last = p + len;

    for (n = 0; n < 5; n++) {
        while (p < last && *p == ' ') {
            p++;
        }

        word[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        wlen[n] = p - word[n];

        if (wlen[n] == 0) {
            return;
        }
    }

    if (wlen[0] != sn->data->master.len
        || ngx_strncmp(word[0], sn->data->master.data, wlen[0]) != 0)
    {
        /* another master these sentinels watch */
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, sn->log, 0,
                  "ws_agent: Redis sentinel:%V switched master from "
                  "%*s:%*s to %*s:%*s", &sn->data->master,
                  wlen[1], word[1], wlen[2], word[2],
                  wlen[3], word[3], wlen[4], word[4]);

    if (ngx_ws_agent_redis_sentinel_master(sn, word[3], wlen[3], word[4],
                                           wlen[4])
        != NGX_OK)
    {
        ngx_ws_agent_redis_sentinel_ask(sn);
    }
}


/* the master is at ip:port (text, as sentinels write it) */

static ngx_int_t
ngx_ws_agent_redis_sentinel_master(ngx_ws_agent_redis_sentinel_t *sn,
    u_char *ip, size_t iplen, u_char *port, size_t portlen)
{
    ngx_int_t        n;
    socklen_t        len;
    ngx_uint_t       i;
    ngx_sockaddr_t   sa;

    n = ngx_atoi(port, portlen);

    if (ngx_ws_agent_redis_sockaddr(ip, iplen, n, &sa, &len) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, sn->log, 0,
                      "ws_agent: Redis sentinel named master \"%V\" at "
                      "\"%*s:%*s\", which is not an IP address and port (set "
                      "\"sentinel resolve-hostnames no\" or use IPs)",
                      &sn->data->master, iplen, ip, portlen, port);
        return NGX_ERROR;
    }

    for (i = 0; i < sn->nmasters; i++) {
        ngx_ws_agent_redis_node_connect_to(sn->masters[i], &sa.sockaddr, len);
    }

    return NGX_OK;
}


static void
ngx_ws_agent_redis_sentinel_down(ngx_ws_agent_redis_node_t *node,
    const char *why, ngx_uint_t logged)
{
    size_t                          len;
    ngx_ws_agent_redis_sentinel_t  *sn = node->data;

    if (logged) {
        return;
    }

    /* each new reason once, the same one again every minute */
    len = ngx_strlen(why);

    if (ngx_strcmp(sn->last_error, why) == 0
        && ngx_time() - sn->down_logged_at < 60)
    {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, sn->log, 0,
                  "ws_agent: Redis sentinel at %V unavailable (%s)",
                  &node->name, why);

    len = ngx_min(len, NGX_WS_AGENT_ERROR_LEN - 1);
    ngx_memcpy(sn->last_error, why, len);
    sn->last_error[len] = '\0';
    sn->down_logged_at = ngx_time();
}
