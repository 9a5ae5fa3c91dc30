/*
 * Message typing: what a backend text message is, learned as its pieces
 * pass (frames, TCP reads), without a copy unless it is an event to
 * publish.  The gate feeds it; it answers with a verdict and hands events
 * on to the publisher.  Its state is one connection's, in that
 * connection's context: pieces of many connections' messages interleave.
 *
 * The pieces are the message's text as the endpoint sees it (today: the
 * frames' payload; with permessage-deflate kept, the inflated text).
 */

#ifndef _NGX_WS_AGENT_MESSAGE_H_INCLUDED_
#define _NGX_WS_AGENT_MESSAGE_H_INCLUDED_


#include "ngx_ws_agent_conf.h"
#include "ngx_ws_agent_events.h"


/* the longest type the typer captures: longer ones are no configured name */
#define NGX_WS_AGENT_TYPE_MAX  128


typedef enum {
    NGX_WS_AGENT_MSG_NONE = 0,      /* not looked at, or done with */
    NGX_WS_AGENT_MSG_NEW,           /* started, no byte seen yet */
    NGX_WS_AGENT_MSG_TYPING,        /* its type not read yet */
    NGX_WS_AGENT_MSG_ACK,           /* typed as the readiness ack */
    NGX_WS_AGENT_MSG_EVENT          /* typed as an event to publish */
} ngx_ws_agent_msg_state_e;


typedef enum {
    NGX_WS_AGENT_NEITHER = 0,       /* relayed as it is, nothing else */
    NGX_WS_AGENT_ACK,               /* a whole, valid readiness ack */
    NGX_WS_AGENT_EVENT              /* a whole, valid event, published */
} ngx_ws_agent_verdict_e;


typedef struct {
    ws_json_typer_t             typer;
    u_char                      type[NGX_WS_AGENT_TYPE_MAX];
    ngx_str_t                  *event;      /* the configured type it is */
    u_char                     *text;       /* an event's text, heap */
    size_t                      len;
    size_t                      cap;
    ngx_uint_t                  state;      /* ngx_ws_agent_msg_state_e */
    ngx_uint_t                  want_ack;   /* the gate waits for one */
    ngx_uint_t                  too_big;    /* over ws_agent_event_max_size */
} ngx_ws_agent_msg_t;


/*
 * A backend text message begins; want_ack: it may be the readiness ack.
 * Looked at only when the gate waits for the ack or events are (the check
 * inline: most messages of an open, unpublished relay need no call).
 */
#define ngx_ws_agent_msg_start(ctx, want_ack)                                \
    do {                                                                     \
        if ((want_ack) || ngx_ws_agent_events_inspected(ctx)) {              \
            ngx_ws_agent_msg_begin(ctx, want_ack);                           \
        }                                                                    \
    } while (0)

void ngx_ws_agent_msg_begin(ngx_ws_agent_ctx_t *ctx, ngx_uint_t want_ack);

/* a piece of its text; NGX_ERROR only when memory ran out */
ngx_int_t ngx_ws_agent_msg_piece(ngx_ws_agent_ctx_t *ctx, const u_char *data,
    size_t len);

/*
 * The message is whole: what it was (an event is published by now).
 * Called only for a message still wanted (ngx_ws_agent_msg_wanted()).
 */
ngx_ws_agent_verdict_e ngx_ws_agent_msg_end(ngx_ws_agent_ctx_t *ctx);

/* the connection is over: what a message held is given back */
void ngx_ws_agent_msg_free(ngx_ws_agent_ctx_t *ctx);


/* whether the current message's pieces still matter */
#define ngx_ws_agent_msg_wanted(m)  ((m)->state != NGX_WS_AGENT_MSG_NONE)


#endif /* _NGX_WS_AGENT_MESSAGE_H_INCLUDED_ */
