/*
 * What the bench programs share: clocks, growable byte buffers, RFC 6455
 * frame headers, percentiles.  Header-only, static functions, so each
 * program is one .c file plus this.
 */

#ifndef _WSB_H_INCLUDED_
#define _WSB_H_INCLUDED_


#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>


#define WSB_TEXT    0x1
#define WSB_BINARY  0x2
#define WSB_CLOSE   0x8
#define WSB_PING    0x9
#define WSB_PONG    0xa


typedef struct {
    unsigned char  *data;
    size_t          pos;        /* consumed up to here */
    size_t          len;        /* filled up to here */
    size_t          cap;
} wsb_buf_t;


static inline uint64_t
wsb_now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/* wall clock: the backend stamps events with it, the subscriber reads it */
static inline int64_t
wsb_wall_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


static inline void
wsb_die(const char *what)
{
    perror(what);
    exit(2);
}


static inline void
wsb_buf_reserve(wsb_buf_t *b, size_t more)
{
    size_t  cap;

    if (b->pos > 0 && b->pos == b->len) {
        b->pos = 0;
        b->len = 0;
    }

    if (b->len + more <= b->cap) {
        return;
    }

    if (b->pos > 0) {
        memmove(b->data, b->data + b->pos, b->len - b->pos);
        b->len -= b->pos;
        b->pos = 0;

        if (b->len + more <= b->cap) {
            return;
        }
    }

    cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        cap *= 2;
    }

    b->data = realloc(b->data, cap);
    if (b->data == NULL) {
        wsb_die("realloc");
    }
    b->cap = cap;
}


static inline void
wsb_buf_free(wsb_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->pos = 0;
    b->len = 0;
    b->cap = 0;
}


/* writes a frame header (FIN set) for len bytes; returns its size */
static inline size_t
wsb_frame_header(unsigned char *p, int opcode, uint64_t len, int masked)
{
    size_t  n;

    p[0] = 0x80 | opcode;
    if (len < 126) {
        p[1] = (unsigned char) len;
        n = 2;

    } else if (len < 65536) {
        p[1] = 126;
        p[2] = (unsigned char) (len >> 8);
        p[3] = (unsigned char) len;
        n = 4;

    } else {
        p[1] = 127;
        for (n = 0; n < 8; n++) {
            p[2 + n] = (unsigned char) (len >> (56 - 8 * n));
        }
        n = 10;
    }

    if (masked) {
        p[1] |= 0x80;
    }

    return n;
}


/*
 * parses a frame header in p[0..avail); returns its size with the mask key,
 * 0 if more bytes are needed
 */
static inline size_t
wsb_frame_parse(const unsigned char *p, size_t avail, int *opcode,
    uint64_t *len, const unsigned char **mask)
{
    size_t  n, i;

    if (avail < 2) {
        return 0;
    }

    *opcode = p[0] & 0x0f;
    *len = p[1] & 0x7f;
    n = 2;

    if (*len == 126) {
        n = 4;
    } else if (*len == 127) {
        n = 10;
    }

    if (p[1] & 0x80) {
        n += 4;
    }

    if (avail < n) {
        return 0;
    }

    if ((p[1] & 0x7f) == 126) {
        *len = ((uint64_t) p[2] << 8) | p[3];

    } else if ((p[1] & 0x7f) == 127) {
        *len = 0;
        for (i = 0; i < 8; i++) {
            *len = (*len << 8) | p[2 + i];
        }
    }

    *mask = (p[1] & 0x80) ? p + n - 4 : NULL;

    return n;
}


/* XOR with a 4-byte key, 8 bytes at a time; off is the key phase */
static inline void
wsb_mask(unsigned char *dst, const unsigned char *src, size_t len,
    const unsigned char *key)
{
    size_t    i;
    uint64_t  k8, w;

    memcpy(&k8, key, 4);
    memcpy((unsigned char *) &k8 + 4, key, 4);

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }

    for ( /* void */ ; i < len; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}


static inline void
wsb_raise_nofile(void)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}


static inline void
wsb_nonblock(int fd)
{
    int  fl;

    fl = fcntl(fd, F_GETFL);
    if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) {
        wsb_die("fcntl");
    }
}


/* a non-blocking connect to sa begun (TCP_NODELAY): the fd, or -1 */
static inline int
wsb_connect(const struct sockaddr_in *sa)
{
    int  fd, one;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd == -1) {
        wsb_die("socket");
    }

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (const struct sockaddr *) sa, sizeof(*sa)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    return fd;
}


/* the begun connect's outcome, once the fd is writable: 0, or its errno */
static inline int
wsb_connect_error(int fd)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(err);
    (void) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);

    return err;
}


/*
 * Writes out what b holds from b->pos: 0 all of it (b emptied), 1 the
 * socket is full (b keeps the rest), -1 an error (errno)
 */
static inline int
wsb_write_out(int fd, wsb_buf_t *b)
{
    ssize_t  n;

    while (b->pos < b->len) {
        n = write(fd, b->data + b->pos, b->len - b->pos);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            return errno == EAGAIN ? 1 : -1;
        }

        b->pos += n;
    }

    b->pos = 0;
    b->len = 0;

    return 0;
}


/*
 * A latency sample into a reservoir of cap: every one while it has room,
 * then Algorithm R (xorshift32 in *rnd); *n counts every sample seen
 */
static inline void
wsb_reservoir_add(uint32_t *samples, size_t cap, uint64_t *n, uint32_t *rnd,
    uint32_t v)
{
    uint32_t  r;
    uint64_t  j;

    if (*n < cap) {
        samples[(*n)++] = v;
        return;
    }

    (*n)++;

    r = *rnd;
    r ^= r << 13;
    r ^= r >> 17;
    r ^= r << 5;
    *rnd = r;

    j = (((uint64_t) r << 32) | (r ^ 0x5bd1e995u)) % *n;
    if (j < cap) {
        samples[j] = v;
    }
}


static inline int
wsb_cmp_u32(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return (x > y) - (x < y);
}


/* p-th quantile (0..1) of n sorted samples */
static inline uint32_t
wsb_quantile(const uint32_t *s, size_t n, double p)
{
    size_t  i;

    if (n == 0) {
        return 0;
    }

    i = (size_t) (p * (double) n);
    if (i >= n) {
        i = n - 1;
    }

    return s[i];
}


#endif /* _WSB_H_INCLUDED_ */
