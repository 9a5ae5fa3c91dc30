/*
 * WebSocket (RFC 6455) frame parser: incremental over any split of the byte
 * stream, pure C, no nginx types, no allocation.  Unit tests and fuzzers
 * link this file alone.
 *
 * Pull interface: call ws_frame_parse() repeatedly; each call consumes some
 * bytes of [*pos, last) and reports one event:
 *
 *   WS_FRAME_HEADER   a frame header is complete; p->opcode, p->fin,
 *                     p->masked, p->mask, p->len and the raw header bytes
 *                     p->hdr[0 .. p->hlen) are valid.
 *   WS_FRAME_PAYLOAD  chunk->data/len is a piece of payload as it is on the
 *                     wire (still masked); chunk->offset is its offset in
 *                     the frame's payload (the mask phase).
 *   WS_FRAME_END      the current frame is complete.
 *   WS_FRAME_AGAIN    all input consumed; feed more.
 *   WS_FRAME_ERROR    protocol violation; p->error is the close code
 *                     (1002 or 1009), p->reason a static string.  The
 *                     parser stays in error; *pos points at the first byte
 *                     of the offending frame's header when the header lies
 *                     in this buffer, else at the end of the input consumed.
 */

#ifndef _NGX_WS_AGENT_FRAME_H_INCLUDED_
#define _NGX_WS_AGENT_FRAME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/*
 * Linked into a .so that nginx loads with RTLD_GLOBAL: these unprefixed
 * names stay inside the module.
 */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif


#define WS_OP_CONT    0x0
#define WS_OP_TEXT    0x1
#define WS_OP_BINARY  0x2
#define WS_OP_CLOSE   0x8
#define WS_OP_PING    0x9
#define WS_OP_PONG    0xa

#define WS_CLOSE_NORMAL        1000
#define WS_CLOSE_GOING_AWAY    1001
#define WS_CLOSE_PROTOCOL      1002
#define WS_CLOSE_TOO_BIG       1009
#define WS_CLOSE_TRY_AGAIN     1013
#define WS_CLOSE_BAD_GATEWAY   1014

#define WS_FRAME_MAX_HEADER    14


typedef enum {
    WS_FRAME_AGAIN = 0,
    WS_FRAME_HEADER,
    WS_FRAME_PAYLOAD,
    WS_FRAME_END,
    WS_FRAME_ERROR
} ws_frame_event_e;


typedef struct {
    const unsigned char  *data;
    size_t                len;
    uint64_t              offset;
} ws_frame_chunk_t;


typedef struct {
    /* configuration, set before the first call */
    uint64_t              max_frame;     /* 0: no limit */

    /* the current frame, valid from HEADER to END */
    uint64_t              len;
    uint64_t              done;          /* payload bytes reported */
    unsigned char         mask[4];
    unsigned char         hdr[WS_FRAME_MAX_HEADER];

    /* bytes, not bit-fields: read and written on every call */
    unsigned char         from_client;   /* frames must be masked */
    unsigned char         opcode;
    unsigned char         fin;
    unsigned char         masked;
    unsigned char         hlen;          /* header bytes so far */
    unsigned char         hneed;         /* header size once known */
    unsigned char         state;

    /* message level */
    unsigned char         in_message;    /* a fragmented message is open */
    unsigned char         msg_opcode;    /* its first frame's opcode */

    uint16_t              error;
    const char           *reason;
} ws_frame_parser_t;


void ws_frame_parser_init(ws_frame_parser_t *p, int from_client,
    uint64_t max_frame);
ws_frame_event_e ws_frame_parse(ws_frame_parser_t *p,
    const unsigned char **pos, const unsigned char *last,
    ws_frame_chunk_t *chunk);

/* 1 if the current frame (after HEADER) is a control frame */
#define ws_frame_is_control(p)  (((p)->opcode & 0x8) != 0)

/* the data opcode of the message the current frame belongs to */
#define ws_frame_message_opcode(p)                                          \
    ((p)->opcode == WS_OP_CONT ? (p)->msg_opcode : (p)->opcode)

/* 1 if the current frame ends its message (valid after HEADER) */
#define ws_frame_message_ends(p)  ((p)->fin)

/*
 * 1 when the parser stands between frames (a control frame may be written
 * into the stream here, even inside a fragmented message); after ERROR,
 * 1 when *pos went back to the offending header's first byte.
 */
int ws_frame_at_boundary(const ws_frame_parser_t *p);

/* XOR-unmask len bytes from src into dst; offset is the payload offset */
void ws_frame_unmask(unsigned char *dst, const unsigned char *src,
    size_t len, const unsigned char mask[4], uint64_t offset);

/*
 * Write a complete frame header for a payload of len bytes into out
 * (at least WS_FRAME_MAX_HEADER bytes); with mask != NULL the header
 * carries it.  Returns the header size.
 */
size_t ws_frame_write_header(unsigned char *out, unsigned opcode, int fin,
    uint64_t len, const unsigned char *mask);

/*
 * A whole close frame with code and reason (truncated to fit 125 bytes of
 * payload), masked with mask when mask != NULL.  out needs 131 bytes.
 * Returns the frame size.
 */
size_t ws_frame_write_close(unsigned char *out, unsigned code,
    const char *reason, size_t reason_len, const unsigned char *mask);


#if defined(__GNUC__)
#pragma GCC visibility pop
#endif


#endif /* _NGX_WS_AGENT_FRAME_H_INCLUDED_ */
