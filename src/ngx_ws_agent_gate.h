/*
 * The readiness gate: joins nginx's upgraded relay
 * (ngx_http_upstream_process_upgraded) at the connection level by wrapping
 * the client connection's recv/send and the upstream connection's recv and
 * read handler.  Every byte of both directions passes the frame parser
 * once; client bytes are held until the backend's ack, then replayed in
 * order; backend text messages go to message typing as they pass.
 *
 * What the wrappers assume of nginx's relay (1.22 to mainline; check these
 * when nginx changes ngx_http_upstream_process_upgraded()):
 *
 *  1. It reads a side only through c->recv and writes the other only
 *     through c->send, into and out of u->buffer (backend -> client) and
 *     u->from_client (client -> backend); it reads while recv returns > 0
 *     and room is left, and stops at NGX_AGAIN or 0.
 *  2. It ends the relay when a side's read->eof is set and that side's
 *     buffer is written out, or when both sides are at EOF; recv returning
 *     0 with read->eof set is how the gate ends a direction.
 *  3. A recv that returns NGX_AGAIN with read->ready cleared is not called
 *     again until an event (or the gate's ngx_post_event()) runs the relay:
 *     the gate posts the read event of a side it has bytes for.
 *  4. Client bytes pipelined after the upgrade request sit in r->header_in
 *     and would be written upstream before anything is read: the gate takes
 *     them at attach, when the 101 goes out (the header filter runs before
 *     ngx_http_upstream_upgrade()).  Backend bytes read with the 101 sit in
 *     u->buffer and are examined at attach.
 *  5. Its only timer on reading is the upstream's proxy_read_timeout, armed
 *     whenever the upstream is not ready; while gated the gate owns that
 *     wait (ws_agent_ready_timeout), so its read handler ignores the
 *     upstream's read timeout until the gate opens.
 *  6. The upstream connection may be reused or freed when the request is
 *     finalized before the context's cleanup: detach gives back only the
 *     functions of a connection that is still this request's.
 */

#ifndef _NGX_WS_AGENT_GATE_H_INCLUDED_
#define _NGX_WS_AGENT_GATE_H_INCLUDED_


#include "ngx_ws_agent_conf.h"


/* the relay as the gate sees it */
typedef enum {
    NGX_WS_AGENT_RELAY_UNATTACHED = 0,  /* not an upgraded WebSocket (yet) */
    NGX_WS_AGENT_RELAY_GATED,           /* client bytes held, waiting */
    NGX_WS_AGENT_RELAY_OPEN,            /* ack seen: held bytes, then live */
    NGX_WS_AGENT_RELAY_CLOSING,         /* the module ends it: its close
                                           frames go out, then EOF */
    NGX_WS_AGENT_RELAY_DETACHED         /* the request is over */
} ngx_ws_agent_phase_e;


/* who closed first, for ws_close and the logs */
#define NGX_WS_AGENT_BY_NETWORK     0
#define NGX_WS_AGENT_BY_CLIENT      1
#define NGX_WS_AGENT_BY_BACKEND     2
#define NGX_WS_AGENT_BY_MODULE      3


/* what happens to the bytes one side sends */
typedef enum {
    NGX_WS_AGENT_PASS = 0,          /* validated, passed on (the client's
                                       are held while gated) */
    NGX_WS_AGENT_DROP,              /* validated, looked at, not passed on:
                                       the sender spoke after its close, or
                                       the receiver got the module's close */
    NGX_WS_AGENT_GONE,              /* (backend -> client) the client left
                                       while gated: its output is swallowed */
    NGX_WS_AGENT_STOP,              /* (client -> backend) not read: the
                                       client left or broke the protocol
                                       while gated */
    NGX_WS_AGENT_END                /* the module's bytes out, then EOF */
} ngx_ws_agent_flow_e;


/* the sender's own close frame */
typedef enum {
    NGX_WS_AGENT_NO_CLOSE = 0,
    NGX_WS_AGENT_CLOSE_PASSING,     /* its header passed */
    NGX_WS_AGENT_CLOSE_PASSED       /* all of it: nothing may follow */
} ngx_ws_agent_close_e;


typedef struct {
    ws_frame_parser_t           frames;
    ngx_buf_t                  *out;        /* module-made bytes, given to
                                               nginx before more is read */
    ngx_uint_t                  flow;       /* ngx_ws_agent_flow_e */
    ngx_uint_t                  close;      /* ngx_ws_agent_close_e */
} ngx_ws_agent_direction_t;


typedef struct {
    ngx_uint_t                  phase;      /* ngx_ws_agent_phase_e */

    ngx_connection_t           *client;
    ngx_connection_t           *upstream;
    ngx_recv_pt                 client_recv;
    ngx_send_pt                 client_send;
    ngx_recv_pt                 upstream_recv;
    ngx_event_handler_pt        upstream_read;

    ngx_ws_agent_direction_t    c2b;        /* client -> backend */
    ngx_ws_agent_direction_t    b2c;        /* backend -> client */

    /* client bytes held while gated, replayed in order after the ack */
    ngx_buf_t                  *hold;
    size_t                      hold_complete;  /* up to the last whole
                                                   frame */
    ngx_uint_t                  hold_full;      /* counted once a stretch */

    /* the close owed to the backend once it is ready (1001, 1002, 1009) */
    ngx_uint_t                  owed_code;

    /* a candidate ack kept from the client (ws_agent_ready_forward off) */
    ngx_buf_t                  *withheld;
    ngx_uint_t                  withholding;    /* the current message */

    ngx_event_t                 ready_timer;
    ngx_msec_t                  start;
    ngx_msec_t                  ready_ms;

    ngx_uint_t                  frames_held;
    ngx_uint_t                  close_code;     /* the first one seen */
    ngx_uint_t                  close_by;
    ngx_uint_t                  sent_code;      /* the module's own */
} ngx_ws_agent_relay_t;


/* the 101 of an Upgrade: websocket request goes out, nginx relays next */
ngx_int_t ngx_ws_agent_gate_attach(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx);

/* the request is over: the relay's functions back, timers off */
void ngx_ws_agent_gate_detach(ngx_ws_agent_ctx_t *ctx);


#define ngx_ws_agent_gate_attached(relay)                                    \
    ((relay)->phase != NGX_WS_AGENT_RELAY_UNATTACHED)
#define ngx_ws_agent_gate_opened(relay)                                      \
    ((relay)->ready_ms != NGX_TIMER_INFINITE)


#endif /* _NGX_WS_AGENT_GATE_H_INCLUDED_ */
