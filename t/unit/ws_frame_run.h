/*
 * Test driver for the frame parser, shared by t/unit/test_frame.c and
 * fuzz/fuzz_frame.c: feeds an input cut into segments (each in its own
 * exact-size heap buffer, so ASan sees any read past a segment), checks the
 * pull interface's promises on every call, and records the event stream in
 * a form that does not depend on where the input was cut.
 */

#ifndef _WS_FRAME_RUN_H_INCLUDED_
#define _WS_FRAME_RUN_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef struct {
    unsigned char  *data;
    size_t          len;
    size_t          size;
} wst_buf_t;


typedef struct {
    wst_buf_t       log;          /* the event stream, see wst_log_*() */
    unsigned        error;        /* p->error, 0 if no ERROR event */
    size_t          error_pos;    /* input offset of *pos after ERROR */
    size_t          error_hstart; /* input offset of the offending header */
    size_t          events;       /* calls to ws_frame_parse() */
    const char     *fail;         /* first broken promise, NULL if none */
    char            text[160];
} wst_run_t;


void wst_buf_add(wst_buf_t *b, const void *data, size_t len);
void wst_buf_byte(wst_buf_t *b, unsigned c);
void wst_buf_free(wst_buf_t *b);

/*
 * Parse in[0 .. len) cut at cuts[0 .. ncuts) (ascending, each <= len).
 * Returns 0, or -1 with r->fail set when the parser broke a promise.
 */
int wst_run(wst_run_t *r, int from_client, uint64_t max_frame,
    const unsigned char *in, size_t len, const size_t *cuts, size_t ncuts);
void wst_run_free(wst_run_t *r);

/* the log records, also used to build expected streams */
void wst_log_header(wst_buf_t *log, unsigned opcode, unsigned fin,
    unsigned masked, const unsigned char mask[4], uint64_t len,
    unsigned msg_opcode, const unsigned char *hdr, size_t hlen);
void wst_log_end(wst_buf_t *log, const unsigned char *payload, size_t len);
void wst_log_error(wst_buf_t *log, unsigned code);
void wst_log_tail(wst_buf_t *log, unsigned hlen, int in_frame,
    const unsigned char *partial, size_t len);


#endif /* _WS_FRAME_RUN_H_INCLUDED_ */
