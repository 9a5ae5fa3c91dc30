/*
 * What every part of ngx_ws_agent shares: the configuration, filled by the
 * module file and read by the others, and the name of the per-connection
 * context (ngx_ws_agent.h puts it together from the parts' own structs).
 */

#ifndef _NGX_WS_AGENT_CONF_H_INCLUDED_
#define _NGX_WS_AGENT_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_frame.h"
#include "ngx_ws_agent_json.h"


/* "ws_" user prefix "_" unix time "_" 8 hex */
#define NGX_WS_AGENT_USER_PREFIX    8
#define NGX_WS_AGENT_ID_LEN                                                  \
    (sizeof("ws_") - 1 + NGX_WS_AGENT_USER_PREFIX + 1 + NGX_TIME_T_LEN + 1 + 8)


/*
 * One Redis server as the configuration names it: where (an address fixed
 * when the configuration is read, or a name resolved before every connect),
 * who (ACL user, password, db) and how (TLS).  Filled by the module file,
 * completed by ngx_ws_agent_redis_server_init(), read by the transport.
 */
typedef struct {
    ngx_str_t                   addr;       /* as written, for logs */
    ngx_str_t                   host;       /* name or IP, without port */
    in_port_t                   port;
    ngx_addr_t                 *addrs;      /* NULL: resolve at run time */
    ngx_uint_t                  naddrs;
    ngx_resolver_t             *resolver;   /* http's, when addrs is NULL */
    ngx_msec_t                  resolver_timeout;

    ngx_str_t                   master;     /* sentinel:NAME, or "" */

    ngx_str_t                   user;
    ngx_str_t                   password;
    ngx_int_t                   db;

    ngx_flag_t                  tls_verify;
    ngx_str_t                   tls_name;   /* NUL-terminated */
    ngx_str_t                   tls_trusted_certificate;
    ngx_str_t                   tls_certificate;
    ngx_str_t                   tls_certificate_key;
    ngx_str_t                   tls_ciphers;
    ngx_uint_t                  tls_protocols;
#if (NGX_SSL)
    ngx_ssl_t                  *ssl;        /* NULL: plain */
#endif

    unsigned                    unix_socket:1;
    unsigned                    tls:1;
    unsigned                    cluster:1;      /* "cluster": the seeds' */
    unsigned                    need_master:1;  /* ROLE must say master */
} ngx_ws_agent_redis_server_t;


typedef struct {
    ngx_ws_agent_redis_server_t redis;
    ngx_ws_agent_redis_server_t sentinels;  /* for redis.master */
    ngx_ws_agent_redis_server_t seeds;      /* for redis.cluster */
    ngx_uint_t                  queue;
    unsigned                    configured:1;
    unsigned                    streams:1;      /* a ws_agent_stream is on */
    unsigned                    subscribers:1;  /* a ws_agent_subscribe */
    unsigned                    sentinels_configured:1;
    unsigned                    seeds_configured:1;
} ngx_ws_agent_main_conf_t;


/* ws_agent_publish: decided once, when the directive is read */
typedef struct {
    ngx_http_complex_value_t    value;
    ngx_uint_t                  names_user;     /* uses $ws_agent_user */
} ngx_ws_agent_channel_t;


/*
 * ws_agent_stream: the Redis Stream each published event is also appended
 * to, capped by length and/or age
 */
typedef struct {
    ngx_http_complex_value_t    value;
    ngx_uint_t                  names_user;
    ngx_uint_t                  maxlen;         /* 0: no MAXLEN */
    ngx_msec_t                  age;            /* 0: no MINID */
    ngx_uint_t                  in_location;    /* not a default above */
} ngx_ws_agent_stream_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_str_t                   ready_type;
    ngx_str_t                   type_key;
    ngx_msec_t                  ready_timeout;
    ngx_flag_t                  ready_forward;
    size_t                      gate_buffer;
    size_t                      max_frame_size;
    ngx_ws_agent_channel_t     *publish;        /* NULL: off */
    ngx_ws_agent_stream_t      *stream;         /* NULL: off */
    ngx_array_t                *events;         /* of ngx_str_t */
    size_t                      event_max_size;
    ngx_http_complex_value_t   *user;
    ngx_flag_t                  lifecycle;
    ngx_uint_t                  status;         /* 0: not a status location */

    ngx_ws_agent_channel_t     *subscribe;      /* NULL: not a subscriber
                                                   location */
    ngx_http_complex_value_t   *subscribe_stream;
    ngx_msec_t                  subscribe_heartbeat;
    ngx_msec_t                  subscribe_retry;
    size_t                      subscribe_buffer;

    ngx_flag_t                  jwt;
    ngx_array_t                *jwt_keys;       /* opaque: src/..._jwt.c */
    ngx_array_t                *jwt_claims;
    ngx_http_complex_value_t   *jwt_token;
    ngx_str_t                   jwt_protocol_prefix;
    time_t                      jwt_leeway;
} ngx_ws_agent_loc_conf_t;


typedef struct ngx_ws_agent_ctx_s  ngx_ws_agent_ctx_t;


extern ngx_module_t  ngx_ws_agent_module;


/*
 * n in decimal at p, returns the end: for the per-event formatting, where
 * ngx_sprintf()'s format parsing costs more than the rest of the envelope
 */
static ngx_inline u_char *
ngx_ws_agent_decimal(u_char *p, uint64_t n)
{
    u_char   tmp[NGX_INT64_LEN];
    u_char  *q = tmp + NGX_INT64_LEN;

    do {
        *--q = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return ngx_cpymem(p, q, tmp + NGX_INT64_LEN - q);
}


#endif /* _NGX_WS_AGENT_CONF_H_INCLUDED_ */
