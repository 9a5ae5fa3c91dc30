/*
 * libFuzzer harness for the frame parser.  The first input byte picks the
 * direction (bit 0) and the frame limit (bits 1-3); the rest is the byte
 * stream, parsed in one piece, cut at three positions taken from the input,
 * and (when short) byte at a time.  The driver (t/unit/ws_frame_run.c)
 * checks every call's promises: *pos moves forward within the buffer,
 * payload chunks are contiguous and within the frame, done <= len, and the
 * *pos placement on ERROR.  All cuts must give the one-shot event stream.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_ws_agent_frame.h"
#include "ws_frame_run.h"


#define FZ_BYTEWISE_MAX  512


static void fz_same(const char *what, wst_run_t *a, wst_run_t *b);
static void fz_kept(const char *what, wst_run_t *r);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);


static const uint64_t  fz_limits[8] = {
    0, 0, 1, 5, 125, 126, 1000, 65536
};


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    int                   from_client;
    size_t                n, i, j, t, cuts[3], *bytewise;
    uint64_t              max_frame;
    wst_run_t             whole, split;
    const unsigned char  *in;

    if (size == 0) {
        return 0;
    }

    from_client = data[0] & 1;
    max_frame = fz_limits[(data[0] >> 1) & 7];
    in = data + 1;
    n = size - 1;

    wst_run(&whole, from_client, max_frame, in, n, NULL, 0);
    fz_kept("one-shot", &whole);

    /* three cuts from the input's ends, so the fuzzer can steer them */
    for (i = 0; i < 3; i++) {
        t = (n > i) ? ((size_t) in[n - 1 - i] << 8 | in[i]) : 0;
        cuts[i] = t % (n + 1);
    }

    for (i = 1; i < 3; i++) {
        for (j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    }

    wst_run(&split, from_client, max_frame, in, n, cuts, 3);
    fz_kept("3 cuts", &split);
    fz_same("3 cuts", &whole, &split);
    wst_run_free(&split);

    if (n > 1 && n <= FZ_BYTEWISE_MAX) {
        bytewise = malloc((n - 1) * sizeof(size_t));

        if (bytewise == NULL) {
            abort();
        }

        for (i = 0; i + 1 < n; i++) {
            bytewise[i] = i + 1;
        }

        wst_run(&split, from_client, max_frame, in, n, bytewise, n - 1);
        fz_kept("byte at a time", &split);
        fz_same("byte at a time", &whole, &split);
        wst_run_free(&split);

        free(bytewise);
    }

    wst_run_free(&whole);

    return 0;
}


static void
fz_kept(const char *what, wst_run_t *r)
{
    if (r->fail) {
        fprintf(stderr, "%s: %s\n", what, r->fail);
        abort();
    }
}


static void
fz_same(const char *what, wst_run_t *a, wst_run_t *b)
{
    if (a->error != b->error || a->log.len != b->log.len
        || memcmp(a->log.data, b->log.data, a->log.len) != 0)
    {
        fprintf(stderr, "%s: event stream differs from one-shot "
                "(error %u vs %u, log %zu vs %zu bytes)\n", what, a->error,
                b->error, a->log.len, b->log.len);
        abort();
    }
}
