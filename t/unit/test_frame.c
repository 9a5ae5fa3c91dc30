/*
 * Unit tests for the WebSocket frame parser (src/ngx_ws_agent_frame.c),
 * printed as TAP.  Frames are built by an encoder of our own (checked
 * against the RFC 6455 section 5.7 bytes), never by ws_frame_write_header(),
 * and every sequence must parse to the same event stream however the input
 * is cut.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_ws_agent_frame.h"
#include "ws_frame_run.h"


#define T_SPLIT3_MAX  300        /* every 3-way split up to this size */


typedef struct {
    const char     *name;
    int             from_client;
    uint64_t        max_frame;
    wst_buf_t       wire;
    wst_buf_t       expect;       /* event stream, without its tail */
    unsigned        msg_opcode;   /* the open message's opcode */
} t_seq_t;


static void t_ok(int ok, const char *fmt, ...);
static void t_diag(const char *fmt, ...);
static size_t t_hex(wst_buf_t *b, const char *hex);
static void t_seq_init(t_seq_t *s, const char *name, int from_client,
    uint64_t max_frame);
static void t_seq_free(t_seq_t *s);
static void t_frame(t_seq_t *s, unsigned b0, const unsigned char *mask,
    const unsigned char *payload, uint64_t len);
static void t_expect_tail(t_seq_t *s, wst_buf_t *want);
static int t_same(wst_run_t *r, const wst_buf_t *want, const size_t *cuts,
    size_t ncuts);
static int t_run_same(t_seq_t *s, const wst_buf_t *want, const size_t *cuts,
    size_t ncuts);
static void t_check_wire(t_seq_t *s, const char *hex, const char *what);
static void t_check_seq(t_seq_t *s);
static void t_check_big_seq(t_seq_t *s, const size_t *marks, size_t nmarks);
static void t_error(const char *name, int from_client, uint64_t max_frame,
    t_seq_t *prefix, const char *bad, size_t detect, unsigned code);

static void t_sequences(void);
static void t_big_sequences(void);
static void t_errors(void);
static void t_limits(void);
static void t_boundary(void);
static void t_write_header(void);
static void t_write_close(void);


static unsigned        t_count, t_failed;

static unsigned char   rfc_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
static unsigned char   mask_a[4] = { 0x01, 0x80, 0xfe, 0x7f };
static unsigned char   mask_b[4] = { 0xa5, 0x5a, 0x00, 0xff };
static unsigned char   mask_zero[4] = { 0, 0, 0, 0 };


int
main(void)
{
    t_sequences();
    t_big_sequences();
    t_errors();
    t_limits();
    t_boundary();
    t_write_header();
    t_write_close();

    printf("1..%u\n", t_count);

    return t_failed ? 1 : 0;
}


static void
t_ok(int ok, const char *fmt, ...)
{
    va_list  args;

    t_count++;

    if (!ok) {
        t_failed++;
    }

    printf("%sok %u - ", ok ? "" : "not ", t_count);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
    fflush(stdout);
}


static void
t_diag(const char *fmt, ...)
{
    va_list  args;

    printf("#   ");

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");
}


static size_t
t_hex(wst_buf_t *b, const char *hex)
{
    size_t    n;
    unsigned  c;

    n = 0;

    while (*hex) {
        if (*hex == ' ') {
            hex++;
            continue;
        }

        if (sscanf(hex, "%2x", &c) != 1) {
            abort();
        }

        wst_buf_byte(b, c);
        hex += 2;
        n++;
    }

    return n;
}


static void
t_seq_init(t_seq_t *s, const char *name, int from_client, uint64_t max_frame)
{
    memset(s, 0, sizeof(t_seq_t));

    s->name = name;
    s->from_client = from_client;
    s->max_frame = max_frame;
}


static void
t_seq_free(t_seq_t *s)
{
    wst_buf_free(&s->wire);
    wst_buf_free(&s->expect);
}


/*
 * Append one frame (first byte b0, minimal length encoding, masked with
 * mask when not NULL) to the wire, and the events it must produce to the
 * expected stream.
 */

static void
t_frame(t_seq_t *s, unsigned b0, const unsigned char *mask,
    const unsigned char *payload, uint64_t len)
{
    size_t          hlen;
    uint64_t        i;
    unsigned        opcode, msg;
    unsigned char   h[WS_FRAME_MAX_HEADER], m;

    opcode = b0 & 0x0f;
    m = mask ? 0x80 : 0;
    h[0] = (unsigned char) b0;

    if (len <= 125) {
        h[1] = (unsigned char) (m | len);
        hlen = 2;

    } else if (len <= 65535) {
        h[1] = m | 126;
        h[2] = (unsigned char) (len / 256);
        h[3] = (unsigned char) (len % 256);
        hlen = 4;

    } else {
        h[1] = m | 127;

        for (i = 0; i < 8; i++) {
            h[9 - i] = (unsigned char) ((len >> (8 * i)) & 0xff);
        }

        hlen = 10;
    }

    if (mask) {
        memcpy(&h[hlen], mask, 4);
        hlen += 4;
    }

    wst_buf_add(&s->wire, h, hlen);

    for (i = 0; i < len; i++) {
        wst_buf_byte(&s->wire, payload[i] ^ (mask ? mask[i % 4] : 0));
    }

    if (opcode == WS_OP_TEXT || opcode == WS_OP_BINARY) {
        s->msg_opcode = opcode;
    }

    msg = (opcode == WS_OP_CONT) ? s->msg_opcode : opcode;

    wst_log_header(&s->expect, opcode, b0 >> 7, mask ? 1 : 0,
                   mask ? mask : mask_zero, len, msg, h, hlen);

    /* the expected payload is the unmasked one, whatever was on the wire */
    wst_log_end(&s->expect, payload, (size_t) len);
}


static void
t_expect_tail(t_seq_t *s, wst_buf_t *want)
{
    memset(want, 0, sizeof(wst_buf_t));
    wst_buf_add(want, s->expect.data, s->expect.len);
    wst_log_tail(want, 0, 0, NULL, 0);
}


/* 1 if the run kept every promise and produced want */

static int
t_same(wst_run_t *r, const wst_buf_t *want, const size_t *cuts, size_t ncuts)
{
    size_t  i;

    if (r->fail == NULL && r->log.len == want->len
        && memcmp(r->log.data, want->data, want->len) == 0)
    {
        return 1;
    }

    if (r->fail) {
        t_diag("broken promise: %s", r->fail);

    } else {
        for (i = 0; i < r->log.len && i < want->len; i++) {
            if (r->log.data[i] != want->data[i]) {
                break;
            }
        }

        t_diag("event streams differ at log byte %zu (got %zu, want %zu)",
               i, r->log.len, want->len);
    }

    for (i = 0; i < ncuts && i < 8; i++) {
        t_diag("cut at %zu", cuts[i]);
    }

    if (ncuts > 8) {
        t_diag("... %zu cuts", ncuts);
    }

    return 0;
}


static int
t_run_same(t_seq_t *s, const wst_buf_t *want, const size_t *cuts,
    size_t ncuts)
{
    int        ok;
    wst_run_t  r;

    wst_run(&r, s->from_client, s->max_frame, s->wire.data, s->wire.len,
            cuts, ncuts);

    ok = t_same(&r, want, cuts, ncuts);

    wst_run_free(&r);

    return ok;
}


static void
t_check_wire(t_seq_t *s, const char *hex, const char *what)
{
    int        ok;
    wst_buf_t  b;

    memset(&b, 0, sizeof(wst_buf_t));
    t_hex(&b, hex);

    ok = (b.len <= s->wire.len && memcmp(b.data, s->wire.data, b.len) == 0);

    t_ok(ok, "%s: the test encoder gives %s", s->name, what);

    wst_buf_free(&b);
}


/* one-shot, byte at a time, every 2-way and (if small) every 3-way split */

static void
t_check_seq(t_seq_t *s)
{
    int        ok;
    size_t     n, i, j, *cuts, c[2];
    wst_buf_t  want;

    n = s->wire.len;
    t_expect_tail(s, &want);

    t_ok(t_run_same(s, &want, NULL, 0),
         "%s: one-shot parse gives the expected frames", s->name);

    cuts = malloc((n + 1) * sizeof(size_t));

    if (cuts == NULL) {
        abort();
    }

    for (i = 0; i + 1 < n; i++) {
        cuts[i] = i + 1;
    }

    t_ok(t_run_same(s, &want, cuts, n ? n - 1 : 0),
         "%s: byte at a time gives the same events", s->name);

    free(cuts);

    ok = 1;

    for (i = 0; ok && i <= n; i++) {
        ok = t_run_same(s, &want, &i, 1);
    }

    t_ok(ok, "%s: every 2-way split (%zu) gives the same events", s->name,
         n + 1);

    if (n > T_SPLIT3_MAX) {
        wst_buf_free(&want);
        return;
    }

    ok = 1;

    for (i = 0; ok && i <= n; i++) {
        for (j = i; ok && j <= n; j++) {
            c[0] = i;
            c[1] = j;
            ok = t_run_same(s, &want, c, 2);
        }
    }

    t_ok(ok, "%s: every 3-way split (%zu) gives the same events", s->name,
         (n + 1) * (n + 2) / 2);

    wst_buf_free(&want);
}


/*
 * Large sequences: one-shot, byte at a time, and splits within 200 bytes
 * of each mark (header/payload boundaries), plus a sparse sweep.
 */

static void
t_check_big_seq(t_seq_t *s, const size_t *marks, size_t nmarks)
{
    int        ok;
    size_t     n, i, k, a, b, *cuts, c[2], runs;
    wst_buf_t  want;

    n = s->wire.len;
    t_expect_tail(s, &want);

    t_ok(t_run_same(s, &want, NULL, 0),
         "%s: one-shot parse gives the expected frames", s->name);

    cuts = malloc(n * sizeof(size_t));

    if (cuts == NULL) {
        abort();
    }

    for (i = 0; i + 1 < n; i++) {
        cuts[i] = i + 1;
    }

    t_ok(t_run_same(s, &want, cuts, n - 1),
         "%s: byte at a time gives the same events", s->name);

    free(cuts);

    ok = 1;
    runs = 0;

    for (k = 0; ok && k < nmarks; k++) {
        a = marks[k] > 200 ? marks[k] - 200 : 0;
        b = marks[k] + 200 < n ? marks[k] + 200 : n;

        for (i = a; ok && i <= b; i++) {
            ok = t_run_same(s, &want, &i, 1);
            runs++;
        }
    }

    for (i = 0; ok && i <= n; i += 4093) {
        ok = t_run_same(s, &want, &i, 1);
        runs++;
    }

    t_ok(ok, "%s: %zu 2-way splits around the frame boundaries give the "
         "same events", s->name, runs);

    ok = 1;
    runs = 0;

    for (k = 0; ok && k < nmarks; k++) {
        a = marks[k];
        b = a + 16 < n ? a + 16 : n;

        /* both cuts inside or just after the header */
        for (i = a; ok && i <= b; i++) {
            for (c[0] = i, c[1] = i; ok && c[1] <= b; c[1]++) {
                ok = t_run_same(s, &want, c, 2);
                runs++;
            }

            /* one inside the header, one near the payload's end */
            for (c[0] = i, c[1] = n > 20 ? n - 20 : i; ok && c[1] <= n;
                 c[1]++)
            {
                if (c[1] >= c[0]) {
                    ok = t_run_same(s, &want, c, 2);
                    runs++;
                }
            }
        }
    }

    t_ok(ok, "%s: %zu 3-way splits through the headers give the same "
         "events", s->name, runs);

    wst_buf_free(&want);
}


static void
t_sequences(void)
{
    size_t         i;
    t_seq_t        s;
    unsigned char  p[256], close[32];

    /* RFC 6455 5.7: a single-frame unmasked text message */
    t_seq_init(&s, "unmasked \"Hello\" (RFC 6455 5.7)", 0, 0);
    t_frame(&s, 0x81, NULL, (unsigned char *) "Hello", 5);
    t_check_wire(&s, "81 05 48 65 6c 6c 6f", "81 05 48 65 6c 6c 6f");
    t_check_seq(&s);
    t_seq_free(&s);

    /* RFC 6455 5.7: a single-frame masked text message */
    t_seq_init(&s, "masked \"Hello\" (RFC 6455 5.7)", 1, 0);
    t_frame(&s, 0x81, rfc_mask, (unsigned char *) "Hello", 5);
    t_check_wire(&s, "81 85 37 fa 21 3d 7f 9f 4d 51 58",
                 "81 85 37 fa 21 3d 7f 9f 4d 51 58");
    t_check_seq(&s);
    t_seq_free(&s);

    /* RFC 6455 5.7: a fragmented unmasked text message */
    t_seq_init(&s, "fragmented \"Hel\"+\"lo\" (RFC 6455 5.7)", 0, 0);
    t_frame(&s, 0x01, NULL, (unsigned char *) "Hel", 3);
    t_frame(&s, 0x80, NULL, (unsigned char *) "lo", 2);
    t_check_wire(&s, "01 03 48 65 6c 80 02 6c 6f",
                 "01 03 48 65 6c 80 02 6c 6f");
    t_check_seq(&s);
    t_seq_free(&s);

    /* RFC 6455 5.7: unmasked ping, then its pong */
    t_seq_init(&s, "unmasked ping and pong (RFC 6455 5.7)", 0, 0);
    t_frame(&s, 0x89, NULL, (unsigned char *) "Hello", 5);
    t_frame(&s, 0x8a, NULL, (unsigned char *) "Hello", 5);
    t_check_wire(&s, "89 05 48 65 6c 6c 6f 8a 05 48 65 6c 6c 6f",
                 "89 05 48 65 6c 6c 6f 8a 05 ...");
    t_check_seq(&s);
    t_seq_free(&s);

    /* RFC 6455 5.7: masked pong */
    t_seq_init(&s, "masked pong (RFC 6455 5.7)", 1, 0);
    t_frame(&s, 0x8a, rfc_mask, (unsigned char *) "Hello", 5);
    t_check_wire(&s, "8a 85 37 fa 21 3d 7f 9f 4d 51 58",
                 "8a 85 37 fa 21 3d 7f 9f 4d 51 58");
    t_check_seq(&s);
    t_seq_free(&s);

    for (i = 0; i < sizeof(p); i++) {
        p[i] = (unsigned char) (i * 7 + 3);
    }

    /* RFC 6455 5.7: 256 bytes binary in a single unmasked frame */
    t_seq_init(&s, "256-byte binary, 16-bit length (RFC 6455 5.7)", 0, 0);
    t_frame(&s, 0x82, NULL, p, 256);
    t_check_wire(&s, "82 7e 01 00", "82 7E 0100");
    t_check_seq(&s);
    t_seq_free(&s);

    /* a fragmented client message with control frames between fragments */
    close[0] = 0x03;
    close[1] = 0xe8;
    memcpy(&close[2], "bye", 3);

    t_seq_init(&s, "client text in 3 fragments around ping, pong, close", 1,
               0);
    t_frame(&s, 0x01, mask_a, (unsigned char *) "Hel", 3);
    t_frame(&s, 0x89, mask_b, (unsigned char *) "are you there", 13);
    t_frame(&s, 0x00, rfc_mask, (unsigned char *) "l", 1);
    t_frame(&s, 0x8a, mask_a, NULL, 0);
    t_frame(&s, 0x80, mask_b, (unsigned char *) "o, world", 8);
    t_frame(&s, 0x02, mask_zero, p, 40);
    t_frame(&s, 0x89, rfc_mask, (unsigned char *) "x", 1);
    t_frame(&s, 0x80, mask_a, p + 40, 3);
    t_frame(&s, 0x88, mask_b, close, 5);
    t_check_seq(&s);
    t_seq_free(&s);

    /* zero-length frames of every kind, unmasked */
    t_seq_init(&s, "server zero-length text, fragments, ping, pong, close", 0,
               0);
    t_frame(&s, 0x81, NULL, NULL, 0);
    t_frame(&s, 0x01, NULL, NULL, 0);
    t_frame(&s, 0x00, NULL, NULL, 0);
    t_frame(&s, 0x89, NULL, NULL, 0);
    t_frame(&s, 0x00, NULL, NULL, 0);
    t_frame(&s, 0x80, NULL, NULL, 0);
    t_frame(&s, 0x82, NULL, NULL, 0);
    t_frame(&s, 0x8a, NULL, NULL, 0);
    t_frame(&s, 0x88, NULL, NULL, 0);
    t_check_wire(&s, "81 00 01 00 00 00 89 00 00 00 80 00 82 00 8a 00 88 00",
                 "81 00 01 00 00 00 89 00 ...");
    t_check_seq(&s);
    t_seq_free(&s);

    /* the same, masked */
    t_seq_init(&s, "client zero-length frames, masked", 1, 0);
    t_frame(&s, 0x02, mask_a, NULL, 0);
    t_frame(&s, 0x89, mask_b, NULL, 0);
    t_frame(&s, 0x00, rfc_mask, NULL, 0);
    t_frame(&s, 0x80, mask_a, NULL, 0);
    t_frame(&s, 0x81, mask_b, NULL, 0);
    t_frame(&s, 0x88, mask_a, NULL, 0);
    t_check_seq(&s);
    t_seq_free(&s);

    /* close frames with a code */
    t_seq_init(&s, "server close 1000, then close 1001 \"going away\"", 0, 0);
    t_frame(&s, 0x88, NULL, close, 2);
    memcpy(&close[2], "going away", 10);
    close[1] = 0xe9;
    t_frame(&s, 0x88, NULL, close, 12);
    t_check_wire(&s, "88 02 03 e8 88 0c 03 e9", "88 02 03 e8 88 0c 03 e9");
    t_check_seq(&s);
    t_seq_free(&s);

    t_seq_init(&s, "client close 1001 \"going away\", masked", 1, 0);
    t_frame(&s, 0x88, rfc_mask, close, 12);
    t_check_seq(&s);
    t_seq_free(&s);

    /* lengths on both sides of the 7-bit/16-bit boundary, masked */
    t_seq_init(&s, "client 125-byte ping, 126-byte binary, empty text", 1, 0);
    t_frame(&s, 0x89, mask_a, p, 125);
    t_frame(&s, 0x82, mask_b, p + 1, 126);
    t_frame(&s, 0x81, rfc_mask, NULL, 0);
    t_check_wire(&s, "89 fd 01 80 fe 7f", "89 FD + mask for 125 bytes");
    t_check_seq(&s);
    t_seq_free(&s);

    /* fragments long enough for 16-bit lengths, a pong between them */
    t_seq_init(&s, "server binary in 16-bit-length fragments", 0, 0);
    t_frame(&s, 0x02, NULL, p, 126);
    t_frame(&s, 0x8a, NULL, p, 7);
    t_frame(&s, 0x80, NULL, p + 126, 130);
    t_check_seq(&s);
    t_seq_free(&s);
}


static void
t_big_sequences(void)
{
    size_t          i, marks[3];
    t_seq_t         s;
    unsigned char  *p, close[2];

    p = malloc(65536);

    if (p == NULL) {
        abort();
    }

    for (i = 0; i < 65536; i++) {
        p[i] = (unsigned char) ((i * 131) ^ (i >> 8));
    }

    /* RFC 6455 5.7: 64KiB binary in a single unmasked frame */
    t_seq_init(&s, "64 KiB binary, 64-bit length (RFC 6455 5.7)", 0, 0);
    t_frame(&s, 0x82, NULL, p, 65536);
    t_check_wire(&s, "82 7f 00 00 00 00 00 01 00 00",
                 "82 7F 0000000000010000");
    marks[0] = 0;
    marks[1] = 10 + 65536;
    t_check_big_seq(&s, marks, 2);
    t_seq_free(&s);

    close[0] = 0x03;
    close[1] = 0xe8;

    t_seq_init(&s, "client 64 KiB and 65535-byte binary, then close", 1, 0);
    t_frame(&s, 0x82, mask_a, p, 65536);
    t_frame(&s, 0x82, mask_b, p + 1, 65535);
    t_frame(&s, 0x88, rfc_mask, close, 2);
    t_check_wire(&s, "82 ff 00 00 00 00 00 01 00 00 01 80 fe 7f",
                 "82 FF 0000000000010000 + mask");
    marks[0] = 0;
    marks[1] = 14 + 65536;
    marks[2] = marks[1] + 8 + 65535;
    t_check_big_seq(&s, marks, 3);
    t_seq_free(&s);

    free(p);
}


/*
 * prefix (valid frames, may be NULL) then the offending header bad; the
 * violation shows once detect header bytes are in.  Checks the code, the
 * events before it, *pos placement for every 2-way split and byte at a
 * time, and that the parser stays in error.
 */

static void
t_error(const char *name, int from_client, uint64_t max_frame,
    t_seq_t *prefix, const char *bad, size_t detect, unsigned code)
{
    int                    ok, ok_pos;
    size_t                 n, i, hstart, d, seg, want_pos, *cuts;
    t_seq_t                s;
    wst_buf_t              want;
    wst_run_t              r;
    ws_frame_chunk_t       chunk;
    ws_frame_event_e       ev;
    ws_frame_parser_t      p;
    const unsigned char   *pos, *last;
    static unsigned char   valid[] = { 0x82, 0x80, 1, 2, 3, 4,
                                       0x82, 0x00 };

    t_seq_init(&s, name, from_client, max_frame);

    if (prefix) {
        wst_buf_add(&s.wire, prefix->wire.data, prefix->wire.len);
        wst_buf_add(&s.expect, prefix->expect.data, prefix->expect.len);
    }

    hstart = s.wire.len;
    t_hex(&s.wire, bad);
    n = s.wire.len;

    memset(&want, 0, sizeof(wst_buf_t));
    wst_buf_add(&want, s.expect.data, s.expect.len);
    wst_log_error(&want, code);

    /* one-shot: the code, the events before it, *pos at the header */
    wst_run(&r, from_client, max_frame, s.wire.data, n, NULL, 0);
    ok = t_same(&r, &want, NULL, 0);

    if (ok && (r.error != code || r.error_pos != hstart)) {
        t_diag("error %u at %zu, want %u at %zu", r.error, r.error_pos, code,
               hstart);
        ok = 0;
    }

    wst_run_free(&r);

    t_ok(ok, "%s: close code %u, *pos at the offending header", name, code);

    /* every 2-way split: *pos at the header if it began in this buffer */
    d = hstart + detect - 1;
    ok = 1;
    ok_pos = 1;

    for (i = 0; ok && ok_pos && i <= n; i++) {
        wst_run(&r, from_client, max_frame, s.wire.data, n, &i, 1);
        ok = t_same(&r, &want, &i, 1);

        /* the buffer holding the detecting byte starts at seg */
        seg = (i <= d) ? i : 0;
        want_pos = (seg <= hstart) ? hstart : hstart + detect;

        if (ok && r.error_pos != want_pos) {
            t_diag("cut at %zu: *pos at %zu, want %zu", i, r.error_pos,
                   want_pos);
            ok_pos = 0;
        }

        wst_run_free(&r);
    }

    t_ok(ok && ok_pos, "%s: every 2-way split, same events and *pos", name);

    /* byte at a time: the header never lies in one buffer */
    cuts = malloc(n * sizeof(size_t));

    if (cuts == NULL) {
        abort();
    }

    for (i = 0; i + 1 < n; i++) {
        cuts[i] = i + 1;
    }

    wst_run(&r, from_client, max_frame, s.wire.data, n, cuts, n - 1);
    ok = t_same(&r, &want, cuts, n - 1);

    if (ok && r.error_pos != hstart + detect) {
        t_diag("*pos at %zu, want %zu", r.error_pos, hstart + detect);
        ok = 0;
    }

    wst_run_free(&r);
    free(cuts);

    t_ok(ok, "%s: byte at a time, *pos after the detecting byte", name);

    /* stays in error, even when fed a fresh valid frame */
    ws_frame_parser_init(&p, from_client, max_frame);
    pos = s.wire.data;
    last = pos + n;

    do {
        ev = ws_frame_parse(&p, &pos, last, &chunk);
    } while (ev != WS_FRAME_ERROR && ev != WS_FRAME_AGAIN);

    ok = (ev == WS_FRAME_ERROR);

    for (i = 0; ok && i < 3; i++) {
        pos = from_client ? valid : valid + 6;
        last = from_client ? valid + 6 : valid + 8;

        ev = ws_frame_parse(&p, &pos, last, &chunk);

        ok = (ev == WS_FRAME_ERROR && pos == (from_client ? valid : valid + 6)
              && p.error == code && p.reason != NULL);
    }

    t_ok(ok, "%s: the parser stays in error", name);

    wst_buf_free(&want);
    t_seq_free(&s);
}


static void
t_errors(void)
{
    char           bad[64], name[64];
    unsigned       op;
    t_seq_t        srv, cli, frag, cfrag;
    unsigned char  p[8];

    memset(p, 'x', sizeof(p));

    /* valid traffic before each violation, so *pos is not just 0 */
    t_seq_init(&srv, "", 0, 0);
    t_frame(&srv, 0x81, NULL, (unsigned char *) "Hello", 5);
    t_frame(&srv, 0x89, NULL, NULL, 0);

    t_seq_init(&cli, "", 1, 0);
    t_frame(&cli, 0x81, rfc_mask, (unsigned char *) "Hello", 5);
    t_frame(&cli, 0x8a, mask_a, NULL, 0);

    t_seq_init(&frag, "", 0, 0);
    t_frame(&frag, 0x01, NULL, (unsigned char *) "Hel", 3);
    t_frame(&frag, 0x89, NULL, p, 2);

    t_seq_init(&cfrag, "", 1, 0);
    t_frame(&cfrag, 0x02, mask_b, p, 4);
    t_frame(&cfrag, 0x00, mask_a, p, 1);

    t_error("unmasked client frame", 1, 0, &cli, "81 05 48 65 6c 6c 6f",
            2, 1002);
    t_error("unmasked client frame first", 1, 0, NULL, "82 00", 2, 1002);
    t_error("masked server frame", 0, 0, &srv,
            "81 85 37 fa 21 3d 7f 9f 4d 51 58", 2, 1002);

    t_error("RSV1 set", 0, 0, &srv, "c1 05 48 65 6c 6c 6f", 2, 1002);
    t_error("RSV2 set", 0, 0, &srv, "a1 01 48", 2, 1002);
    t_error("RSV3 set", 0, 0, &srv, "91 00", 2, 1002);
    t_error("RSV1 on a masked client frame", 1, 0, &cli,
            "c2 80 01 02 03 04", 2, 1002);
    t_error("RSV3 on a continuation", 0, 0, &frag, "90 02 6c 6f", 2, 1002);

    for (op = 3; op <= 0xf; op++) {
        if (op >= 8 && op <= 0xa) {
            continue;
        }

        snprintf(name, sizeof(name), "reserved opcode 0x%x", op);
        snprintf(bad, sizeof(bad), "%02x 00", 0x80 | op);
        t_error(name, 0, 0, &srv, bad, 2, 1002);

        snprintf(name, sizeof(name), "reserved opcode 0x%x, client, no FIN",
                 op);
        snprintf(bad, sizeof(bad), "%02x 80 01 02 03 04", op);
        t_error(name, 1, 0, &cli, bad, 2, 1002);
    }

    t_error("ping over 125 bytes (16-bit length)", 0, 0, &srv,
            "89 7e 00 7e", 2, 1002);
    t_error("close over 125 bytes (64-bit length)", 0, 0, &srv,
            "88 7f 00 00 00 00 00 00 00 7e", 2, 1002);
    t_error("pong with a 16-bit length under 126", 1, 0, &cli,
            "8a fe 00 05 01 02 03 04", 2, 1002);

    t_error("fragmented ping", 0, 0, &srv, "09 00", 2, 1002);
    t_error("fragmented close", 1, 0, &cli, "08 82 01 02 03 04 02 ea",
            2, 1002);
    t_error("fragmented pong inside a message", 0, 0, &frag, "0a 00",
            2, 1002);

    t_error("64-bit length with the top bit set", 0, 0, &srv,
            "82 7f 80 00 00 00 00 00 00 00", 10, 1002);
    t_error("64-bit length all ones, masked", 1, 0, &cli,
            "82 ff ff ff ff ff ff ff ff ff 01 02 03 04", 14, 1002);
    t_error("64-bit length with the top bit set, limit set", 0, 1024, &srv,
            "81 7f 80 00 00 00 00 00 00 01", 10, 1002);

    t_error("continuation first", 0, 0, NULL, "80 02 6c 6f", 2, 1002);
    t_error("continuation after a whole message", 0, 0, &srv,
            "00 00", 2, 1002);
    t_error("masked continuation after a whole message", 1, 0, &cli,
            "80 80 01 02 03 04", 2, 1002);

    t_error("new text inside a fragmented message", 0, 0, &frag,
            "81 02 6c 6f", 2, 1002);
    t_error("new binary inside a fragmented message", 0, 0, &frag,
            "02 00", 2, 1002);
    t_error("new text inside a fragmented client message", 1, 0, &cfrag,
            "81 80 01 02 03 04", 2, 1002);

    t_error("frame over the limit (16-bit length)", 0, 100, &srv,
            "82 7e 00 65", 4, 1009);
    t_error("frame over the limit (64-bit length)", 0, 65535, &srv,
            "82 7f 00 00 00 00 00 01 00 00", 10, 1009);
    t_error("client frame over the limit (16-bit length)", 1, 200, &cli,
            "82 fe 00 c9 01 02 03 04", 8, 1009);
    t_error("ping over a limit of 5", 0, 5, &srv,
            "89 06 48 65 6c 6c 6f 21", 2, 1009);
    t_error("continuation over the limit", 0, 5, &frag,
            "80 06 6c 6f 6c 6f 6c 6f", 2, 1009);

    t_seq_free(&srv);
    t_seq_free(&cli);
    t_seq_free(&frag);
    t_seq_free(&cfrag);
}


/* what the limits still allow */

static void
t_limits(void)
{
    int                    ok;
    size_t                 i;
    t_seq_t                s;
    ws_frame_chunk_t       chunk;
    ws_frame_parser_t      p;
    const unsigned char   *pos;
    unsigned char          buf[256];
    static unsigned char   huge[] = { 0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 'a', 'b' };

    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = (unsigned char) i;
    }

    t_seq_init(&s, "frames exactly at a limit of 126", 0, 126);
    t_frame(&s, 0x82, NULL, buf, 126);
    t_frame(&s, 0x89, NULL, buf, 125);
    t_frame(&s, 0x01, NULL, buf, 126);
    t_frame(&s, 0x80, NULL, buf, 126);
    t_check_seq(&s);
    t_seq_free(&s);

    t_seq_init(&s, "client frames exactly at a limit of 5", 1, 5);
    t_frame(&s, 0x81, rfc_mask, (unsigned char *) "Hello", 5);
    t_frame(&s, 0x89, mask_a, (unsigned char *) "Hello", 5);
    t_check_seq(&s);
    t_seq_free(&s);

    /* the largest legal length: header accepted, payload streams */
    ws_frame_parser_init(&p, 0, 0);
    pos = huge;

    ok = (ws_frame_parse(&p, &pos, huge + sizeof(huge), &chunk)
          == WS_FRAME_HEADER
          && p.len == 0x7fffffffffffffffULL && p.hlen == 10
          && ws_frame_parse(&p, &pos, huge + sizeof(huge), &chunk)
             == WS_FRAME_PAYLOAD
          && chunk.len == 2 && chunk.offset == 0 && p.done == 2
          && ws_frame_parse(&p, &pos, huge + sizeof(huge), &chunk)
             == WS_FRAME_AGAIN);

    t_ok(ok, "a 2^63-1 byte frame header is accepted without a limit");
}


/*
 * ws_frame_at_boundary() tells the gate where a close frame may be written;
 * after ERROR that is so only when *pos went back to the offending header
 * (every run in t_error() checks it too).
 */

static void
t_boundary(void)
{
    int                    ok;
    ws_frame_chunk_t       chunk;
    ws_frame_parser_t      p;
    const unsigned char   *pos, *last;
    static unsigned char   in[] = { 0x81, 0x02, 'h', 'i', 0xc1, 0x00 };

    ws_frame_parser_init(&p, 0, 0);
    pos = in;
    last = in + 3;

    ok = ws_frame_at_boundary(&p)
         && ws_frame_parse(&p, &pos, last, &chunk) == WS_FRAME_HEADER
         && !ws_frame_at_boundary(&p)
         && ws_frame_parse(&p, &pos, last, &chunk) == WS_FRAME_PAYLOAD
         && !ws_frame_at_boundary(&p);

    last = in + sizeof(in);

    ok = ok
         && ws_frame_parse(&p, &pos, last, &chunk) == WS_FRAME_PAYLOAD
         && ws_frame_at_boundary(&p)
         && ws_frame_parse(&p, &pos, last, &chunk) == WS_FRAME_END
         && ws_frame_at_boundary(&p)
         && ws_frame_parse(&p, &pos, last, &chunk) == WS_FRAME_ERROR
         && pos == in + 4 && ws_frame_at_boundary(&p);

    t_ok(ok, "at_boundary: after ERROR with *pos at the header, a close "
         "frame may follow (regression)");

    ws_frame_parser_init(&p, 0, 0);
    pos = in;
    last = in + 5;

    while (ws_frame_parse(&p, &pos, last, &chunk) != WS_FRAME_AGAIN) {
        /* void */
    }

    pos = in + 5;
    last = in + sizeof(in);

    ok = ws_frame_parse(&p, &pos, last, &chunk) == WS_FRAME_ERROR
         && pos == last && !ws_frame_at_boundary(&p);

    t_ok(ok, "at_boundary: after ERROR on a header split across buffers, "
         "not at a boundary");
}


static void
t_write_header(void)
{
    int             ok;
    size_t          i, k, n, hn;
    t_seq_t         s;
    wst_buf_t       want;
    wst_run_t       r;
    unsigned char  *payload, *out, hdr[WS_FRAME_MAX_HEADER];
    static const uint64_t  lens[] = { 0, 1, 125, 126, 127, 65535, 65536 };
    static const size_t    hsize[] = { 2, 2, 2, 4, 4, 4, 10 };

    payload = malloc(65536);
    out = malloc(65536 + WS_FRAME_MAX_HEADER);

    if (payload == NULL || out == NULL) {
        abort();
    }

    for (i = 0; i < 65536; i++) {
        payload[i] = (unsigned char) (i ^ (i >> 5));
    }

    for (k = 0; k < 2; k++) {
        for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {

            t_seq_init(&s, "", k, 0);
            t_frame(&s, 0x82, k ? mask_b : NULL, payload, lens[i]);

            hn = ws_frame_write_header(out, WS_OP_BINARY, 1, lens[i],
                                       k ? mask_b : NULL);

            for (n = 0; n < lens[i]; n++) {
                out[hn + n] = payload[n] ^ (k ? mask_b[n % 4] : 0);
            }

            n += hn;

            ok = (hn == hsize[i] + (k ? 4 : 0) && n == s.wire.len
                  && memcmp(out, s.wire.data, n) == 0);

            t_expect_tail(&s, &want);
            wst_run(&r, k, 0, out, n, NULL, 0);
            ok = ok && t_same(&r, &want, NULL, 0);
            wst_run_free(&r);
            wst_buf_free(&want);

            t_ok(ok, "write_header, %s, length %llu: %zu-byte header, "
                 "parses back", k ? "masked" : "unmasked",
                 (unsigned long long) lens[i], hn);

            t_seq_free(&s);
        }
    }

    /* fragmented: non-FIN text, FIN continuation */
    t_seq_init(&s, "", 1, 0);
    t_frame(&s, 0x01, mask_a, payload, 200);
    t_frame(&s, 0x80, rfc_mask, payload + 200, 3);

    n = ws_frame_write_header(out, WS_OP_TEXT, 0, 200, mask_a);
    ws_frame_unmask(out + n, payload, 200, mask_a, 0);
    n += 200;
    hn = ws_frame_write_header(out + n, WS_OP_CONT, 1, 3, rfc_mask);
    ws_frame_unmask(out + n + hn, payload + 200, 3, rfc_mask, 0);
    n += hn + 3;

    t_expect_tail(&s, &want);
    wst_run(&r, 1, 0, out, n, NULL, 0);
    ok = (n == s.wire.len && memcmp(out, s.wire.data, n) == 0
          && t_same(&r, &want, NULL, 0));
    wst_run_free(&r);
    wst_buf_free(&want);
    t_seq_free(&s);

    t_ok(ok, "write_header: a fragmented masked message parses back");

    /* lengths past 32 bits: header only */
    hn = ws_frame_write_header(hdr, WS_OP_BINARY, 1, 0x123456789aULL, NULL);
    ok = (hn == 10 && memcmp(hdr, "\x82\x7f\x00\x00\x00\x12\x34\x56\x78\x9a",
                              10) == 0);
    t_ok(ok, "write_header: a 40-bit length in network order");

    free(payload);
    free(out);
}


static void
t_write_close(void)
{
    int             ok;
    size_t          i, k, n, rl, want_rl;
    t_seq_t         s;
    wst_buf_t       want;
    wst_run_t       r;
    unsigned char  *out, payload[125];
    char            reason[200];
    static const size_t  rlens[] = { 0, 3, 122, 123, 124, 200 };

    for (i = 0; i < sizeof(reason); i++) {
        reason[i] = (char) ('a' + i % 26);
    }

    for (k = 0; k < 2; k++) {
        for (i = 0; i < sizeof(rlens) / sizeof(rlens[0]); i++) {
            rl = rlens[i];
            want_rl = rl > 123 ? 123 : rl;

            payload[0] = 1009 >> 8;
            payload[1] = 1009 & 0xff;
            memcpy(payload + 2, reason, want_rl);

            t_seq_init(&s, "", k, 0);
            t_frame(&s, 0x88, k ? mask_a : NULL, payload, 2 + want_rl);

            /* exactly the documented 131 bytes, so ASan sees any overrun */
            out = malloc(131);

            if (out == NULL) {
                abort();
            }

            n = ws_frame_write_close(out, WS_CLOSE_TOO_BIG,
                                     rl ? reason : NULL, rl,
                                     k ? mask_a : NULL);

            ok = (n == s.wire.len && memcmp(out, s.wire.data, n) == 0);

            t_expect_tail(&s, &want);
            wst_run(&r, k, 0, out, n, NULL, 0);
            ok = ok && t_same(&r, &want, NULL, 0);
            wst_run_free(&r);
            wst_buf_free(&want);
            free(out);

            t_ok(ok, "write_close, %s, %zu-byte reason: %zu-byte frame with "
                 "%zu bytes of reason, parses back",
                 k ? "masked" : "unmasked", rl, n, want_rl);

            t_seq_free(&s);
        }
    }
}
