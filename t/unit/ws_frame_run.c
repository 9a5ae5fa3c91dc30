/*
 * Test driver for the frame parser (see ws_frame_run.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_ws_agent_frame.h"
#include "ws_frame_run.h"


#define wst_fail(r, ...)                                                    \
    do {                                                                    \
        if ((r)->fail == NULL) {                                            \
            snprintf((r)->text, sizeof((r)->text), __VA_ARGS__);            \
            (r)->fail = (r)->text;                                          \
        }                                                                   \
    } while (0)


static void wst_log_u64(wst_buf_t *log, uint64_t v);
static int wst_feed(wst_run_t *r, ws_frame_parser_t *p, wst_buf_t *frame,
    int *in_frame, size_t *frame_start, size_t *hlen,
    const unsigned char *seg, size_t n, size_t off);


void
wst_buf_add(wst_buf_t *b, const void *data, size_t len)
{
    size_t          size;
    unsigned char  *d;

    if (b->len + len > b->size) {
        size = b->size ? b->size : 256;

        while (size < b->len + len) {
            size *= 2;
        }

        d = realloc(b->data, size);

        if (d == NULL) {
            abort();
        }

        b->data = d;
        b->size = size;
    }

    if (len) {
        memcpy(b->data + b->len, data, len);
        b->len += len;
    }
}


void
wst_buf_byte(wst_buf_t *b, unsigned c)
{
    unsigned char  ch;

    ch = (unsigned char) c;
    wst_buf_add(b, &ch, 1);
}


void
wst_buf_free(wst_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(wst_buf_t));
}


int
wst_run(wst_run_t *r, int from_client, uint64_t max_frame,
    const unsigned char *in, size_t len, const size_t *cuts, size_t ncuts)
{
    int                 in_frame, rc;
    size_t              i, from, to, frame_start, hlen;
    unsigned char      *seg;
    wst_buf_t           frame;
    ws_frame_parser_t   p;

    memset(r, 0, sizeof(wst_run_t));
    memset(&frame, 0, sizeof(wst_buf_t));

    ws_frame_parser_init(&p, from_client, max_frame);

    in_frame = 0;
    frame_start = 0;
    hlen = 0;
    from = 0;
    rc = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;

        if (to < from || to > len) {
            wst_fail(r, "bad cut %zu", to);
            break;
        }

        /* its own buffer, exactly the segment's size */
        seg = malloc(to - from + 1);

        if (seg == NULL) {
            abort();
        }

        memcpy(seg, in + from, to - from);

        rc = wst_feed(r, &p, &frame, &in_frame, &frame_start, &hlen, seg,
                      to - from, from);

        free(seg);

        if (rc != 0) {
            break;
        }

        from = to;
    }

    if (r->fail == NULL && r->error == 0) {
        wst_log_tail(&r->log, in_frame ? 0 : p.hlen, in_frame, frame.data,
                     frame.len);
    }

    wst_buf_free(&frame);

    return r->fail ? -1 : 0;
}


/* returns 1 when the run is over (error or broken promise), else 0 */

static int
wst_feed(wst_run_t *r, ws_frame_parser_t *p, wst_buf_t *frame, int *in_frame,
    size_t *frame_start, size_t *hlen, const unsigned char *seg, size_t n,
    size_t off)
{
    size_t                calls, at, k;
    unsigned char         tmp[4096];
    const unsigned char  *pos, *last, *before, *again;
    ws_frame_chunk_t      chunk;
    ws_frame_event_e      ev;

    pos = seg;
    last = seg + n;

    for (calls = 0; ; calls++) {

        if (calls > 3 * n + 8) {
            wst_fail(r, "no progress at %zu", off + (size_t) (pos - seg));
            return 1;
        }

        before = pos;
        memset(&chunk, 0, sizeof(ws_frame_chunk_t));

        /* between frames: nothing of the next one consumed, or END due */
        at = off + (size_t) (pos - seg);
        k = *in_frame ? (p->done == p->len) : (at == *frame_start);

        if ((size_t) ws_frame_at_boundary(p) != k) {
            wst_fail(r, "at_boundary %d at %zu, frame at %zu",
                     ws_frame_at_boundary(p), at, *frame_start);
            return 1;
        }

        ev = ws_frame_parse(p, &pos, last, &chunk);
        r->events++;

        if (pos < before || pos > last) {
            wst_fail(r, "*pos moved from %zu to %+td", off + (before - seg),
                     pos - before);
            return 1;
        }

        at = off + (size_t) (pos - seg);

        switch (ev) {

        case WS_FRAME_AGAIN:
            if (pos != last) {
                wst_fail(r, "AGAIN with %td bytes left at %zu", last - pos,
                         at);
                return 1;
            }

            return 0;

        case WS_FRAME_HEADER:
            if (*in_frame) {
                wst_fail(r, "HEADER inside a frame at %zu", at);
                return 1;
            }

            if (p->hlen < 2 || p->hlen > WS_FRAME_MAX_HEADER
                || at != *frame_start + p->hlen)
            {
                wst_fail(r, "HEADER hlen %u at %zu, frame at %zu",
                         (unsigned) p->hlen, at, *frame_start);
                return 1;
            }

            if (p->masked != p->from_client || (p->len >> 63) != 0
                || (p->max_frame && p->len > p->max_frame)
                || (ws_frame_is_control(p) && (p->len > 125 || !p->fin))
                || p->done != 0)
            {
                wst_fail(r, "HEADER accepted a bad frame at %zu", at);
                return 1;
            }

            wst_log_header(&r->log, p->opcode, p->fin, p->masked, p->mask,
                           p->len, ws_frame_message_opcode(p), p->hdr,
                           p->hlen);

            *in_frame = 1;
            *hlen = p->hlen;
            frame->len = 0;
            break;

        case WS_FRAME_PAYLOAD:
            if (!*in_frame || chunk.data != before || chunk.len == 0
                || chunk.len != (size_t) (pos - before)
                || chunk.offset != frame->len
                || chunk.offset + chunk.len > p->len
                || p->done != chunk.offset + chunk.len)
            {
                wst_fail(r, "PAYLOAD chunk off %llu len %zu done %llu "
                         "of %llu (seen %zu) at %zu",
                         (unsigned long long) chunk.offset, chunk.len,
                         (unsigned long long) p->done,
                         (unsigned long long) p->len, frame->len, at);
                return 1;
            }

            while (chunk.len) {
                k = chunk.len < sizeof(tmp) ? chunk.len : sizeof(tmp);
                ws_frame_unmask(tmp, chunk.data, k, p->mask, chunk.offset);
                wst_buf_add(frame, tmp, k);
                chunk.data += k;
                chunk.len -= k;
                chunk.offset += k;
            }

            break;

        case WS_FRAME_END:
            if (!*in_frame || pos != before || frame->len != p->len
                || p->done != p->len
                || at != *frame_start + *hlen + p->len)
            {
                wst_fail(r, "END after %zu of %llu bytes at %zu", frame->len,
                         (unsigned long long) p->len, at);
                return 1;
            }

            wst_log_end(&r->log, frame->data, frame->len);

            *in_frame = 0;
            *frame_start = at;
            frame->len = 0;
            break;

        case WS_FRAME_ERROR:
            r->error = p->error;
            r->error_pos = at;
            r->error_hstart = *frame_start;

            if ((p->error != 1002 && p->error != 1009) || p->reason == NULL
                || *in_frame)
            {
                wst_fail(r, "ERROR %u (%s) at %zu", (unsigned) p->error,
                         p->reason ? p->reason : "no reason", at);
                return 1;
            }

            /* the documented *pos placement */
            if (off <= *frame_start) {
                if (at != *frame_start) {
                    wst_fail(r, "ERROR *pos at %zu, header at %zu", at,
                             *frame_start);
                    return 1;
                }

            } else if (at <= *frame_start
                       || at > *frame_start + WS_FRAME_MAX_HEADER)
            {
                wst_fail(r, "ERROR *pos at %zu, split header at %zu", at,
                         *frame_start);
                return 1;
            }

            /*
             * *pos back at the offending header: the bytes before it end
             * between frames, so a close frame may follow them
             */
            if (ws_frame_at_boundary(p) != (at == *frame_start)) {
                wst_fail(r, "at_boundary %d after ERROR at %zu, header "
                         "at %zu", ws_frame_at_boundary(p), at,
                         *frame_start);
                return 1;
            }

            again = pos;

            if (ws_frame_parse(p, &again, last, &chunk) != WS_FRAME_ERROR
                || again != pos)
            {
                wst_fail(r, "parser left the error state at %zu", at);
                return 1;
            }

            wst_log_error(&r->log, p->error);
            return 1;

        default:
            wst_fail(r, "unknown event %d at %zu", (int) ev, at);
            return 1;
        }
    }
}


void
wst_run_free(wst_run_t *r)
{
    wst_buf_free(&r->log);
}


static void
wst_log_u64(wst_buf_t *log, uint64_t v)
{
    unsigned       i;
    unsigned char  b[8];

    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char) (v >> (56 - 8 * i));
    }

    wst_buf_add(log, b, 8);
}


void
wst_log_header(wst_buf_t *log, unsigned opcode, unsigned fin,
    unsigned masked, const unsigned char mask[4], uint64_t len,
    unsigned msg_opcode, const unsigned char *hdr, size_t hlen)
{
    wst_buf_byte(log, 'H');
    wst_buf_byte(log, opcode);
    wst_buf_byte(log, fin);
    wst_buf_byte(log, masked);
    wst_buf_add(log, mask, 4);
    wst_log_u64(log, len);
    wst_buf_byte(log, msg_opcode);
    wst_buf_byte(log, (unsigned) hlen);
    wst_buf_add(log, hdr, hlen);
}


void
wst_log_end(wst_buf_t *log, const unsigned char *payload, size_t len)
{
    wst_buf_byte(log, 'E');
    wst_log_u64(log, len);
    wst_buf_add(log, payload, len);
}


void
wst_log_error(wst_buf_t *log, unsigned code)
{
    wst_buf_byte(log, 'X');
    wst_buf_byte(log, code >> 8);
    wst_buf_byte(log, code);
}


void
wst_log_tail(wst_buf_t *log, unsigned hlen, int in_frame,
    const unsigned char *partial, size_t len)
{
    wst_buf_byte(log, 'T');
    wst_buf_byte(log, hlen);
    wst_buf_byte(log, in_frame ? 1 : 0);
    wst_log_u64(log, len);
    wst_buf_add(log, partial, len);
}
