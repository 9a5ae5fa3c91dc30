/*
 * What every part of ngx_ws_agent shares: the configuration structs and the
 * per-connection context.  The module file fills the configuration; the gate
 * owns the context's relay state; the variables read it.
 */

#ifndef _NGX_WS_AGENT_H_INCLUDED_
#define _NGX_WS_AGENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_frame.h"
#include "ngx_ws_agent_json.h"


/* the largest text message examined as a readiness ack */
#define NGX_WS_AGENT_ACK_MAX        4096

/* "ws_" user prefix "_" unix time "_" 8 hex */
#define NGX_WS_AGENT_USER_PREFIX    8
#define NGX_WS_AGENT_ID_LEN                                                  \
    (sizeof("ws_") - 1 + NGX_WS_AGENT_USER_PREFIX + 1 + NGX_TIME_T_LEN + 1 + 8)


typedef struct {
    ngx_str_t                   addr;       /* as written, for logs */
    ngx_str_t                   host;       /* resolved IP, or unix path */
    in_port_t                   port;       /* 0 for a unix socket */
    ngx_str_t                   password;
    ngx_int_t                   db;
    ngx_uint_t                  queue;
    unsigned                    configured:1;
} ngx_ws_agent_main_conf_t;


typedef struct {
    ngx_flag_t                  enable;
    ngx_str_t                   ready_type;
    ngx_str_t                   type_key;
    ngx_msec_t                  ready_timeout;
    ngx_flag_t                  ready_forward;
    size_t                      gate_buffer;
    size_t                      max_frame_size;
    ngx_http_complex_value_t   *publish;        /* NULL: off */
    ngx_array_t                *events;         /* of ngx_str_t */
    size_t                      event_max_size;
    ngx_http_complex_value_t   *user;
    ngx_flag_t                  lifecycle;
    ngx_uint_t                  status;         /* 0: not a status location */

    ngx_flag_t                  jwt;
    ngx_array_t                *jwt_keys;       /* opaque: src/..._jwt.c */
    ngx_array_t                *jwt_claims;
    ngx_http_complex_value_t   *jwt_token;
    ngx_str_t                   jwt_protocol_prefix;
    time_t                      jwt_leeway;
} ngx_ws_agent_loc_conf_t;


#define NGX_WS_AGENT_MSG_NONE    0
#define NGX_WS_AGENT_MSG_NEW     1      /* no piece seen yet */
#define NGX_WS_AGENT_MSG_TYPING  2
#define NGX_WS_AGENT_MSG_ACK     3
#define NGX_WS_AGENT_MSG_EVENT   4

#define NGX_WS_AGENT_BY_NETWORK  0
#define NGX_WS_AGENT_BY_CLIENT   1
#define NGX_WS_AGENT_BY_BACKEND  2
#define NGX_WS_AGENT_BY_MODULE   3


typedef struct ngx_ws_agent_ctx_s  ngx_ws_agent_ctx_t;

struct ngx_ws_agent_ctx_s {
    ngx_http_request_t         *request;
    ngx_ws_agent_loc_conf_t    *conf;

    ngx_str_t                   id;
    ngx_str_t                   user;
    u_char                      id_buf[NGX_WS_AGENT_ID_LEN];

    /* the relay's connections and the functions the gate wraps */
    ngx_connection_t           *client;
    ngx_connection_t           *upstream;
    ngx_recv_pt                 client_recv;
    ngx_send_pt                 client_send;
    ngx_recv_pt                 upstream_recv;

    ws_frame_parser_t           c2b;            /* client frames */
    ws_frame_parser_t           b2c;            /* backend frames */

    /* client bytes held while gated, replayed in order after the ack */
    ngx_buf_t                  *hold;
    size_t                      hold_complete;  /* up to the last whole
                                                   frame */

    /* module-made bytes each direction returns before reading more */
    ngx_buf_t                  *c2b_out;
    ngx_buf_t                  *b2c_out;

    /* a candidate ack kept from the client (ws_agent_ready_forward off) */
    ngx_buf_t                  *withheld;

    /* the backend text message being typed (ack, events) */
    ws_json_typer_t             typer;
    ngx_str_t                  *msg_event;      /* its event type */
    u_char                     *msg;            /* an event's text */
    size_t                      msg_len;
    size_t                      msg_cap;

    ngx_event_t                 ready_timer;
    ngx_msec_t                  start;
    ngx_msec_t                  ready_ms;

    /* verified identity (ws_agent_jwt) */
    ngx_str_t                   jwt_sub;
    void                       *jwt_claims;     /* a yajl_val tree */
    ngx_str_t                   jwt_protocol;   /* the Sec-WebSocket-Protocol
                                                   entry that carried it */

    ngx_str_t                   channel;
    ngx_str_t                   envelope;       /* its connection part */
    ngx_uint_t                  seq;

    ngx_uint_t                  frames_held;
    ngx_uint_t                  events_published;
    ngx_uint_t                  close_code;
    ngx_uint_t                  c2b_fail_code;

    unsigned                    attached:1;
    unsigned                    jwt_verified:1;
    unsigned                    gated:1;
    unsigned                    ready:1;
    unsigned                    failed:1;       /* the module ended it */
    unsigned                    client_gone:1;  /* TCP gone while gated */
    unsigned                    client_close:1; /* client sent close */
    unsigned                    client_closed:1;/* all of its close */
    unsigned                    c2b_drop:1;     /* client data after it */
    unsigned                    client_failed:1;/* protocol error, gated */
    unsigned                    b2c_drop:1;     /* client already closed */
    unsigned                    backend_close:1;
    unsigned                    backend_closed:1; /* its close is out */
    unsigned                    c2b_eof:1;      /* then report EOF */
    unsigned                    b2c_eof:1;
    unsigned                    withholding:1;  /* a text message */
    unsigned                    msg_state:3;
    unsigned                    msg_big:1;      /* over event_max_size */
    unsigned                    inspect:1;      /* events are looked at */
    unsigned                    publishing:1;
    unsigned                    unrouted:1;     /* no channel to use */
    unsigned                    close_by:2;     /* who closed first */
    unsigned                    paused:1;       /* gate buffer was full */
};


extern ngx_module_t  ngx_ws_agent_module;


/* the context of a gated WebSocket request, made when first asked for */
ngx_ws_agent_ctx_t *ngx_ws_agent_get_ctx(ngx_http_request_t *r);

/* the connection id (and user), made once, when first needed */
ngx_int_t ngx_ws_agent_identify(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx);

/* the first request header of that name, or NULL */
ngx_table_elt_t *ngx_ws_agent_find_header(ngx_http_request_t *r,
    ngx_str_t *name);

/* takes one header out of the request before it goes upstream */
ngx_int_t ngx_ws_agent_remove_header(ngx_http_request_t *r,
    ngx_table_elt_t *victim);



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


#endif /* _NGX_WS_AGENT_H_INCLUDED_ */
