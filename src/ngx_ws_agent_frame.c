/*
 * WebSocket frame parser (see ngx_ws_agent_frame.h).  It validates what a
 * proxy must: masking by direction, RSV bits (no extension is ever
 * negotiated through the module), opcodes, control frame rules, the 64-bit
 * length's top bit, continuation order, and the configured frame limit.
 */

#include <string.h>

#include "ngx_ws_agent_frame.h"


enum {
    ST_HEADER = 0,
    ST_PAYLOAD,
    ST_END,
    ST_ERROR
};


static ws_frame_event_e ws_frame_fail(ws_frame_parser_t *p,
    const unsigned char **pos, const unsigned char *hstart, unsigned code,
    const char *reason);
static int ws_frame_check_first(ws_frame_parser_t *p);
static ws_frame_event_e ws_frame_header_done(ws_frame_parser_t *p,
    const unsigned char **pos, const unsigned char *hstart);


void
ws_frame_parser_init(ws_frame_parser_t *p, int from_client,
    uint64_t max_frame)
{
    memset(p, 0, sizeof(ws_frame_parser_t));

    p->from_client = from_client ? 1 : 0;
    p->max_frame = max_frame;
    p->hneed = 2;
    p->state = ST_HEADER;
}


ws_frame_event_e
ws_frame_parse(ws_frame_parser_t *p, const unsigned char **pos,
    const unsigned char *last, ws_frame_chunk_t *chunk)
{
    size_t                n;
    uint64_t              left;
    const unsigned char  *hstart;

    switch (p->state) {

    case ST_ERROR:
        return WS_FRAME_ERROR;

    case ST_END:
        p->state = ST_HEADER;
        p->hlen = 0;
        p->hneed = 2;
        return WS_FRAME_END;

    case ST_PAYLOAD:
        if (*pos >= last) {
            return WS_FRAME_AGAIN;
        }

        left = p->len - p->done;
        n = (size_t) (last - *pos);

        if ((uint64_t) n > left) {
            n = (size_t) left;
        }

        chunk->data = *pos;
        chunk->len = n;
        chunk->offset = p->done;

        *pos += n;
        p->done += n;

        if (p->done == p->len) {
            p->state = ST_END;
        }

        return WS_FRAME_PAYLOAD;

    default: /* ST_HEADER */
        break;
    }

    hstart = (p->hlen == 0) ? *pos : NULL;

    if (p->hlen == 0 && last - *pos >= 2) {
        /* the common case: a header that starts here, taken at once */
        p->hdr[0] = (*pos)[0];
        p->hdr[1] = (*pos)[1];
        p->hlen = 2;
        *pos += 2;

        if (ws_frame_check_first(p) != 0) {
            return ws_frame_fail(p, pos, hstart, p->error, p->reason);
        }

        n = p->hneed - 2;

        if ((size_t) (last - *pos) >= n) {
            memcpy(p->hdr + 2, *pos, n);
            *pos += n;
            p->hlen = p->hneed;

            return ws_frame_header_done(p, pos, hstart);
        }
    }

    while (*pos < last && p->hlen < p->hneed) {

        p->hdr[p->hlen++] = *(*pos)++;

        if (p->hlen == 2 && ws_frame_check_first(p) != 0) {
            return ws_frame_fail(p, pos, hstart, p->error, p->reason);
        }
    }

    if (p->hlen < 2 || p->hlen < p->hneed) {
        return WS_FRAME_AGAIN;
    }

    return ws_frame_header_done(p, pos, hstart);
}


/* checks that need only the first two bytes; sets hneed */

static int
ws_frame_check_first(ws_frame_parser_t *p)
{
    unsigned  b0, b1, len7;

    b0 = p->hdr[0];
    b1 = p->hdr[1];

    p->fin = (b0 >> 7) & 1;
    p->opcode = b0 & 0x0f;
    p->masked = (b1 >> 7) & 1;
    len7 = b1 & 0x7f;

    if (b0 & 0x70) {
        p->error = WS_CLOSE_PROTOCOL;
        p->reason = "reserved bits set";
        return -1;
    }

    switch (p->opcode) {
    case WS_OP_CONT:
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        break;

    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!p->fin) {
            p->error = WS_CLOSE_PROTOCOL;
            p->reason = "fragmented control frame";
            return -1;
        }

        if (len7 > 125) {
            p->error = WS_CLOSE_PROTOCOL;
            p->reason = "control frame over 125 bytes";
            return -1;
        }

        break;

    default:
        p->error = WS_CLOSE_PROTOCOL;
        p->reason = "reserved opcode";
        return -1;
    }

    if (p->from_client && !p->masked) {
        p->error = WS_CLOSE_PROTOCOL;
        p->reason = "unmasked client frame";
        return -1;
    }

    if (!p->from_client && p->masked) {
        p->error = WS_CLOSE_PROTOCOL;
        p->reason = "masked server frame";
        return -1;
    }

    if (p->opcode == WS_OP_CONT && !p->in_message) {
        p->error = WS_CLOSE_PROTOCOL;
        p->reason = "continuation outside a message";
        return -1;
    }

    if ((p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY)
        && p->in_message)
    {
        p->error = WS_CLOSE_PROTOCOL;
        p->reason = "new message inside a fragmented message";
        return -1;
    }

    p->hneed = 2 + (len7 == 126 ? 2 : (len7 == 127 ? 8 : 0))
               + (p->masked ? 4 : 0);

    return 0;
}


static ws_frame_event_e
ws_frame_header_done(ws_frame_parser_t *p, const unsigned char **pos,
    const unsigned char *hstart)
{
    unsigned   len7, i, m;
    uint64_t   len;

    len7 = p->hdr[1] & 0x7f;
    m = 2;

    if (len7 == 126) {
        len = ((uint64_t) p->hdr[2] << 8) | p->hdr[3];
        m = 4;

    } else if (len7 == 127) {
        if (p->hdr[2] & 0x80) {
            return ws_frame_fail(p, pos, hstart, WS_CLOSE_PROTOCOL,
                                 "64-bit length with the top bit set");
        }

        len = 0;

        for (i = 2; i < 10; i++) {
            len = (len << 8) | p->hdr[i];
        }

        m = 10;

    } else {
        len = len7;
    }

    if (p->max_frame && len > p->max_frame) {
        return ws_frame_fail(p, pos, hstart, WS_CLOSE_TOO_BIG,
                             "frame over the size limit");
    }

    if (p->masked) {
        memcpy(p->mask, &p->hdr[m], 4);

    } else {
        memset(p->mask, 0, 4);
    }

    p->len = len;
    p->done = 0;

    if (p->opcode == WS_OP_TEXT || p->opcode == WS_OP_BINARY) {
        p->msg_opcode = p->opcode;
        p->in_message = p->fin ? 0 : 1;

    } else if (p->opcode == WS_OP_CONT && p->fin) {
        p->in_message = 0;
    }

    p->state = (len == 0) ? ST_END : ST_PAYLOAD;

    return WS_FRAME_HEADER;
}


static ws_frame_event_e
ws_frame_fail(ws_frame_parser_t *p, const unsigned char **pos,
    const unsigned char *hstart, unsigned code, const char *reason)
{
    p->state = ST_ERROR;
    p->error = (uint16_t) code;
    p->reason = reason;

    if (hstart != NULL) {
        /*
         * the offending header stays unconsumed: the bytes before *pos end
         * at a frame boundary, where the gate may write its close frame
         */
        *pos = hstart;
        p->hlen = 0;
    }

    return WS_FRAME_ERROR;
}


int
ws_frame_at_boundary(const ws_frame_parser_t *p)
{
    /* in ST_ERROR, hlen is 0 only when *pos went back to the header */
    return p->state == ST_END
           || ((p->state == ST_HEADER || p->state == ST_ERROR)
               && p->hlen == 0);
}


void
ws_frame_unmask(unsigned char *dst, const unsigned char *src, size_t len,
    const unsigned char mask[4], uint64_t offset)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        dst[i] = src[i] ^ mask[(offset + i) & 3];
    }
}


size_t
ws_frame_write_header(unsigned char *out, unsigned opcode, int fin,
    uint64_t len, const unsigned char *mask)
{
    size_t    n;
    unsigned  i, mbit;

    mbit = mask ? 0x80 : 0;

    out[0] = (unsigned char) ((fin ? 0x80 : 0) | (opcode & 0x0f));

    if (len < 126) {
        out[1] = (unsigned char) (mbit | len);
        n = 2;

    } else if (len <= 0xffff) {
        out[1] = (unsigned char) (mbit | 126);
        out[2] = (unsigned char) (len >> 8);
        out[3] = (unsigned char) len;
        n = 4;

    } else {
        out[1] = (unsigned char) (mbit | 127);

        for (i = 0; i < 8; i++) {
            out[2 + i] = (unsigned char) (len >> (56 - 8 * i));
        }

        n = 10;
    }

    if (mask) {
        memcpy(&out[n], mask, 4);
        n += 4;
    }

    return n;
}


size_t
ws_frame_write_close(unsigned char *out, unsigned code, const char *reason,
    size_t reason_len, const unsigned char *mask)
{
    size_t          n, plen;
    unsigned char   payload[125];

    if (reason_len > sizeof(payload) - 2) {
        reason_len = sizeof(payload) - 2;
    }

    payload[0] = (unsigned char) (code >> 8);
    payload[1] = (unsigned char) code;

    if (reason_len) {
        memcpy(&payload[2], reason, reason_len);
    }

    plen = 2 + reason_len;

    n = ws_frame_write_header(out, WS_OP_CLOSE, 1, plen, mask);

    if (mask) {
        ws_frame_unmask(&out[n], payload, plen, mask, 0);

    } else {
        memcpy(&out[n], payload, plen);
    }

    return n + plen;
}
