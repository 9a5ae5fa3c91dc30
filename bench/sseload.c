/*
 * sseload: an epoll subscriber load client for the subscribe workload.
 * N connections, each a subscriber of one of C channels (connection i of
 * user u%05d, i mod C), that count the events they receive and take their
 * latency: read time minus the "ts_us" wall-clock stamp the echo backend
 * (--stream-rate) put into the event when it wrote it.  Two modes, one
 * counting and one latency measure, so the two sides compare:
 *
 *   sse    GET <path>?user=uNNNNN HTTP/1.1 to nginx's ws_agent_subscribe
 *          location: Server-Sent Events, chunked (or until close for an
 *          HTTP/1.0 answer); every "data:" line is one envelope
 *          {"id":..,"seq":N,..,"event":{"type":"agent_..","ts_us":T,..}}
 *   redis  SUBSCRIBE <prefix>uNNNNN straight to redis-server (hiredis's
 *          reply parser on the raw socket): every "message" push is the
 *          same envelope, as the module PUBLISHed it
 *
 * Connections open at most --pending at a time; the measured window
 * (--warmup, then --duration) starts when all are live (sse: ": live"
 * came; redis: SUBSCRIBE confirmed), or after --ramp seconds with those
 * that are (the line says how many).  A line "live conns=L of=N secs=S"
 * goes to stdout when the ramp is over (a script aligns its own window to
 * it), then one result line of key=value pairs.  Per connection the
 * envelope's "seq" (one publisher per channel: it grows by one) tells
 * events missing (seq_missing) or repeated (seq_dup); a subscriber the
 * server closed is counted in "closed" and not reopened.
 *
 *   sseload --port P [--mode sse|redis] [--path /sub] [--prefix agent:events:]
 *           [--conns N] [--channels C] [--threads T] [--pending K]
 *           [--ramp S] [--warmup S] [--duration S]
 *
 * Bounded: ramp + warmup + duration.
 */

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>

#include "wsb.h"


#define SL_SSE           0
#define SL_REDIS         1

#define SL_CONNECTING    0
#define SL_HEADER        1      /* sse: the response header; redis: the
                                   SUBSCRIBE confirmation */
#define SL_BODY          2      /* sse: before ": live" */
#define SL_LIVE          3
#define SL_FREE          4

#define SL_CHUNK_SIZE    0      /* sse chunked body: the size line */
#define SL_CHUNK_DATA    1
#define SL_CHUNK_CRLF    2      /* the CRLF after a chunk's data */
#define SL_CHUNK_NONE    3      /* not chunked: the body is all data */

#define SL_READ_CHUNK    (64 * 1024)
#define SL_RESERVOIR     (8 * 1024 * 1024)


typedef struct sl_worker_s  sl_worker_t;

typedef struct {
    int            fd;
    int            state;
    int            idx;
    int            want_out;
    int            chunk;           /* SL_CHUNK_* */
    uint64_t       chunk_left;
    int            has_seq;
    uint64_t       last_seq;
    wsb_buf_t      in;              /* bytes read */
    wsb_buf_t      body;            /* sse: the body, chunks removed */
    wsb_buf_t      out;
    redisReader   *reader;
    sl_worker_t   *w;
} sl_conn_t;


struct sl_worker_s {
    pthread_t      tid;
    int            epfd;
    int            nconns;
    sl_conn_t     *conns;
    int            next;            /* next to open */
    int            pending;         /* opened, not live yet */
    uint32_t       rnd;
    int64_t        wall_us;         /* at the last read */
    uint64_t       now;

    uint64_t       events;          /* in the measured window */
    uint64_t       events_all;
    uint64_t       bytes;           /* in the measured window */
    uint64_t       no_ts;
    uint64_t       seq_missing;
    uint64_t       seq_dup;
    uint64_t       gaps;            /* sse "event: gap" */
    uint64_t       closed;          /* by the server, once live */
    uint64_t       errors;
    uint64_t       nsamples;
    uint32_t      *samples;
    size_t         samples_cap;
};


static int                 sl_mode = SL_SSE;
static int                 sl_conns = 1;
static int                 sl_channels = 1;
static int                 sl_threads = 1;
static int                 sl_pending_max = 100;
static double              sl_ramp = 30;
static double              sl_warmup = 1;
static double              sl_duration = 5;
static const char         *sl_path = "/sub";
static const char         *sl_prefix = "agent:events:";
static const char         *sl_host = "127.0.0.1";
static int                 sl_port;
static struct sockaddr_in  sl_addr;

static uint64_t            sl_measure_start;    /* 0: the ramp goes on */
static uint64_t            sl_measure_end;
static volatile int        sl_stop;
static int                 sl_live;             /* atomic */


static void *sl_worker(void *data);
static void sl_open(sl_conn_t *c);
static void sl_on_event(sl_conn_t *c, uint32_t events);
static void sl_request(sl_conn_t *c);
static void sl_read(sl_conn_t *c);
static int sl_sse_header(sl_conn_t *c);
static int sl_sse_dechunk(sl_conn_t *c);
static void sl_sse_lines(sl_conn_t *c);
static void sl_redis_replies(sl_conn_t *c);
static void sl_went_live(sl_conn_t *c);
static void sl_envelope(sl_conn_t *c, const char *p, size_t len);
static void sl_flush(sl_conn_t *c);
static void sl_finish(sl_conn_t *c);
static void sl_sample(sl_worker_t *w, uint32_t us);
static void sl_usage(void);
static void sl_on_signal(int signo);


static inline uint64_t
sl_load(uint64_t *x)
{
    return __atomic_load_n(x, __ATOMIC_ACQUIRE);
}


static inline int
sl_measuring(sl_worker_t *w)
{
    uint64_t  start = sl_load(&sl_measure_start);

    return start != 0 && w->now >= start && w->now < sl_measure_end;
}


int
main(int argc, char **argv)
{
    int           opt, i, j, live;
    size_t        n, total, kept, k;
    uint32_t     *all;
    uint64_t      t0, ramp_end, now, events, events_all, bytes, seen;
    uint64_t      no_ts, missing, dup, gaps, closed, errors;
    double        secs;
    sl_worker_t  *workers, *w;

    static struct option  longopts[] = {
        { "mode",     required_argument, NULL, 'm' },
        { "host",     required_argument, NULL, 'H' },
        { "port",     required_argument, NULL, 'p' },
        { "path",     required_argument, NULL, 'P' },
        { "prefix",   required_argument, NULL, 'x' },
        { "conns",    required_argument, NULL, 'c' },
        { "channels", required_argument, NULL, 'C' },
        { "threads",  required_argument, NULL, 't' },
        { "pending",  required_argument, NULL, 'n' },
        { "ramp",     required_argument, NULL, 'r' },
        { "warmup",   required_argument, NULL, 'W' },
        { "duration", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 }
    };

    while ((opt = getopt_long(argc, argv, "m:H:p:P:x:c:C:t:n:r:W:d:",
                              longopts, NULL)) != -1)
    {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "sse") == 0) {
                sl_mode = SL_SSE;
            } else if (strcmp(optarg, "redis") == 0) {
                sl_mode = SL_REDIS;
            } else {
                sl_usage();
            }
            break;
        case 'H': sl_host = optarg; break;
        case 'p': sl_port = atoi(optarg); break;
        case 'P': sl_path = optarg; break;
        case 'x': sl_prefix = optarg; break;
        case 'c': sl_conns = atoi(optarg); break;
        case 'C': sl_channels = atoi(optarg); break;
        case 't': sl_threads = atoi(optarg); break;
        case 'n': sl_pending_max = atoi(optarg); break;
        case 'r': sl_ramp = atof(optarg); break;
        case 'W': sl_warmup = atof(optarg); break;
        case 'd': sl_duration = atof(optarg); break;
        default: sl_usage();
        }
    }

    if (sl_port <= 0 || sl_conns <= 0 || sl_channels <= 0
        || sl_channels > sl_conns || sl_threads <= 0
        || sl_threads > sl_conns || sl_pending_max <= 0 || sl_duration <= 0)
    {
        sl_usage();
    }

    memset(&sl_addr, 0, sizeof(sl_addr));
    sl_addr.sin_family = AF_INET;
    sl_addr.sin_port = htons(sl_port);
    if (inet_pton(AF_INET, sl_host, &sl_addr.sin_addr) != 1) {
        fprintf(stderr, "sseload: bad --host \"%s\"\n", sl_host);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, sl_on_signal);
    signal(SIGINT, sl_on_signal);
    wsb_raise_nofile();

    workers = calloc(sl_threads, sizeof(sl_worker_t));
    if (workers == NULL) {
        wsb_die("calloc");
    }

    t0 = wsb_now_ns();

    for (i = 0; i < sl_threads; i++) {
        w = &workers[i];
        w->nconns = sl_conns / sl_threads + (i < sl_conns % sl_threads);
        w->conns = calloc(w->nconns, sizeof(sl_conn_t));
        w->rnd = 0x9e3779b9u * (i + 1);
        w->samples_cap = SL_RESERVOIR / sl_threads;
        w->samples = malloc(w->samples_cap * sizeof(uint32_t));
        if (w->conns == NULL || w->samples == NULL) {
            wsb_die("calloc");
        }

        for (j = 0; j < w->nconns; j++) {
            w->conns[j].idx = j * sl_threads + i;
            w->conns[j].w = w;
            w->conns[j].fd = -1;
            w->conns[j].state = SL_FREE;
        }

        if (pthread_create(&w->tid, NULL, sl_worker, w) != 0) {
            wsb_die("pthread_create");
        }
    }

    /* the ramp: until all are live, at most --ramp seconds */
    ramp_end = t0 + (uint64_t) (sl_ramp * 1e9);

    for ( ;; ) {
        now = wsb_now_ns();
        live = __atomic_load_n(&sl_live, __ATOMIC_RELAXED);
        if (live >= sl_conns || now >= ramp_end || sl_stop) {
            break;
        }
        usleep(2000);
    }

    sl_measure_end = now + (uint64_t) ((sl_warmup + sl_duration) * 1e9);
    __atomic_store_n(&sl_measure_start, now + (uint64_t) (sl_warmup * 1e9),
                     __ATOMIC_RELEASE);

    printf("live conns=%d of=%d secs=%.3f\n", live, sl_conns,
           (now - t0) / 1e9);
    fflush(stdout);

    while (!sl_stop && wsb_now_ns() < sl_measure_end) {
        usleep(1000);
    }

    sl_stop = 1;

    events = events_all = bytes = seen = no_ts = missing = dup = gaps = 0;
    closed = errors = 0;
    total = 0;

    for (i = 0; i < sl_threads; i++) {
        w = &workers[i];
        pthread_join(w->tid, NULL);
        events += w->events;
        events_all += w->events_all;
        bytes += w->bytes;
        no_ts += w->no_ts;
        missing += w->seq_missing;
        dup += w->seq_dup;
        gaps += w->gaps;
        closed += w->closed;
        errors += w->errors;
        seen += w->nsamples;
        total += w->nsamples < w->samples_cap ? w->nsamples : w->samples_cap;
    }

    all = malloc((total + 1) * sizeof(uint32_t));
    if (all == NULL) {
        wsb_die("malloc");
    }

    n = 0;
    for (i = 0; i < sl_threads; i++) {
        w = &workers[i];
        kept = w->nsamples < w->samples_cap ? w->nsamples : w->samples_cap;
        for (k = 0; k < kept; k++) {
            all[n++] = w->samples[k];
        }
    }

    qsort(all, n, sizeof(uint32_t), wsb_cmp_u32);

    secs = sl_duration;

    printf("mode=%s conns=%d channels=%d threads=%d live=%d secs=%.2f "
           "events=%llu rate=%.0f per_conn=%.1f mbytes_s=%.2f "
           "p50_us=%u p99_us=%u p999_us=%u samples=%llu kept=%zu "
           "no_ts=%llu seq_missing=%llu seq_dup=%llu gaps=%llu "
           "closed=%llu events_all=%llu errors=%llu\n",
           sl_mode == SL_SSE ? "sse" : "redis", sl_conns, sl_channels,
           sl_threads, live, secs, (unsigned long long) events,
           events / secs, events / secs / sl_conns, bytes / secs / 1e6,
           wsb_quantile(all, n, 0.50), wsb_quantile(all, n, 0.99),
           wsb_quantile(all, n, 0.999), (unsigned long long) seen, n,
           (unsigned long long) no_ts, (unsigned long long) missing,
           (unsigned long long) dup, (unsigned long long) gaps,
           (unsigned long long) closed, (unsigned long long) events_all,
           (unsigned long long) errors);

    return 0;
}


static void
sl_usage(void)
{
    fprintf(stderr,
        "usage: sseload --port P [--mode sse|redis] [--host IP] [--path /sub]\n"
        "               [--prefix agent:events:] [--conns N] [--channels C]\n"
        "               [--threads T] [--pending K] [--ramp SEC]\n"
        "               [--warmup SEC] [--duration SEC]\n");
    exit(2);
}


static void
sl_on_signal(int signo)
{
    (void) signo;
    sl_stop = 1;
}


static void *
sl_worker(void *data)
{
    sl_worker_t         *w = data;
    int                  i, n;
    struct epoll_event   evs[256];

    w->epfd = epoll_create1(0);
    if (w->epfd == -1) {
        wsb_die("epoll_create1");
    }

    while (!sl_stop) {
        /* at most --pending connections on their way to live at a time */
        while (w->next < w->nconns
               && w->pending < sl_pending_max / sl_threads + 1)
        {
            sl_open(&w->conns[w->next++]);
        }

        n = epoll_wait(w->epfd, evs, 256, 5);
        if (n == -1 && errno != EINTR) {
            wsb_die("epoll_wait");
        }

        w->now = wsb_now_ns();

        for (i = 0; i < n; i++) {
            sl_on_event(evs[i].data.ptr, evs[i].events);
        }
    }

    for (i = 0; i < w->nconns; i++) {
        if (w->conns[i].state != SL_FREE) {
            sl_finish(&w->conns[i]);
        }
    }

    close(w->epfd);
    return NULL;
}


static void
sl_open(sl_conn_t *c)
{
    int                 fd;
    struct epoll_event  ev;

    fd = wsb_connect(&sl_addr);
    if (fd == -1) {
        perror("sseload: connect");
        c->w->errors++;
        return;
    }

    c->fd = fd;
    c->state = SL_CONNECTING;
    c->has_seq = 0;
    c->w->pending++;

    if (sl_mode == SL_REDIS) {
        c->reader = redisReaderCreate();
        if (c->reader == NULL) {
            wsb_die("redisReaderCreate");
        }
    }

    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    c->want_out = 1;
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        wsb_die("epoll_ctl");
    }
}


static void
sl_on_event(sl_conn_t *c, uint32_t events)
{
    if (c->state == SL_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }

        if (wsb_connect_error(c->fd)) {
            c->w->errors++;
            sl_finish(c);
            return;
        }

        sl_request(c);
        return;
    }

    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        sl_read(c);
    }

    if (c->state != SL_FREE && (events & EPOLLOUT)) {
        sl_flush(c);
    }
}


/* the GET of the SSE location, or the SUBSCRIBE */
static void
sl_request(sl_conn_t *c)
{
    int     n;
    size_t  len;
    char    user[16];

    snprintf(user, sizeof(user), "u%05d", c->idx % sl_channels);
    len = strlen(sl_path) + strlen(sl_prefix) + strlen(sl_host) + 256;

    wsb_buf_reserve(&c->out, len);

    if (sl_mode == SL_SSE) {
        n = snprintf((char *) c->out.data + c->out.len, len,
                     "GET %s%cuser=%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\n"
                     "Accept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n"
                     "\r\n", sl_path, strchr(sl_path, '?') ? '&' : '?',
                     user, sl_host, sl_port);

    } else {
        n = snprintf((char *) c->out.data + c->out.len, len,
                     "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s%s\r\n",
                     strlen(sl_prefix) + strlen(user), sl_prefix, user);
    }

    c->out.len += n;
    c->state = SL_HEADER;
    c->chunk = SL_CHUNK_NONE;
    sl_flush(c);
}


static void
sl_read(sl_conn_t *c)
{
    ssize_t  n;

    wsb_buf_reserve(&c->in, SL_READ_CHUNK);

    n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);

    if (n == -1) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        c->w->errors++;
        sl_finish(c);
        return;
    }

    if (n == 0) {
        /* the server closed it (a subscriber too slow, or a failure) */
        if (c->state == SL_LIVE) {
            c->w->closed++;
        } else {
            c->w->errors++;
        }
        sl_finish(c);
        return;
    }

    c->w->wall_us = wsb_wall_us();
    c->in.len += n;

    if (sl_measuring(c->w)) {
        c->w->bytes += n;
    }

    if (sl_mode == SL_REDIS) {
        if (redisReaderFeed(c->reader, (char *) c->in.data + c->in.pos,
                            c->in.len - c->in.pos)
            != REDIS_OK)
        {
            wsb_die("redisReaderFeed");
        }
        c->in.pos = c->in.len;
        sl_redis_replies(c);
        return;
    }

    if (c->state == SL_HEADER && sl_sse_header(c) != 0) {
        return;
    }

    if (c->state == SL_FREE || sl_sse_dechunk(c) != 0) {
        return;
    }

    sl_sse_lines(c);
}


/* 0: the header is in and good; else not yet, or the connection failed */
static int
sl_sse_header(sl_conn_t *c)
{
    char    *h, *end;
    size_t   len;

    h = (char *) c->in.data + c->in.pos;
    len = c->in.len - c->in.pos;
    end = memmem(h, len, "\r\n\r\n", 4);

    if (end == NULL) {
        return 1;
    }

    if (len < 12 || memcmp(h + 9, "200", 3) != 0) {
        fprintf(stderr, "sseload: %.*s\n", (int) (strchr(h, '\r') - h), h);
        c->w->errors++;
        sl_finish(c);
        return 1;
    }

    *end = '\0';
    c->chunk = strcasestr(h, "\r\ntransfer-encoding: chunked") != NULL
               ? SL_CHUNK_SIZE : SL_CHUNK_NONE;
    c->chunk_left = 0;
    c->in.pos += end + 4 - h;
    c->state = SL_BODY;

    return 0;
}


/* the chunks' data from in to body; not 0: the connection failed */
static int
sl_sse_dechunk(sl_conn_t *c)
{
    int             d;
    size_t          avail, take;
    uint64_t        size;
    unsigned char  *p, *lf;

    while (c->in.pos < c->in.len) {
        p = c->in.data + c->in.pos;
        avail = c->in.len - c->in.pos;

        switch (c->chunk) {

        case SL_CHUNK_NONE:
        case SL_CHUNK_DATA:
            take = avail;
            if (c->chunk == SL_CHUNK_DATA && c->chunk_left < take) {
                take = c->chunk_left;
            }

            wsb_buf_reserve(&c->body, take);
            memcpy(c->body.data + c->body.len, p, take);
            c->body.len += take;
            c->in.pos += take;

            if (c->chunk == SL_CHUNK_DATA) {
                c->chunk_left -= take;
                if (c->chunk_left == 0) {
                    c->chunk = SL_CHUNK_CRLF;
                }
            }
            break;

        case SL_CHUNK_CRLF:
            if (avail < 2) {
                return 0;
            }
            if (p[0] != '\r' || p[1] != '\n') {
                goto bad;
            }
            c->in.pos += 2;
            c->chunk = SL_CHUNK_SIZE;
            break;

        default: /* SL_CHUNK_SIZE: hex digits, maybe extensions, CRLF */
            lf = memchr(p, '\n', avail);
            if (lf == NULL) {
                return 0;
            }

            size = 0;
            for ( /* void */ ; p < lf; p++) {
                d = (*p >= '0' && *p <= '9') ? *p - '0'
                    : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
                    : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10 : -1;
                if (d < 0) {
                    break;
                }
                size = size * 16 + d;
            }

            c->in.pos = lf + 1 - c->in.data;

            if (size == 0) {
                /* the last chunk: the server ends the stream */
                goto bad;
            }

            c->chunk = SL_CHUNK_DATA;
            c->chunk_left = size;
            break;
        }
    }

    return 0;

bad:

    if (c->state == SL_LIVE) {
        c->w->closed++;
    } else {
        c->w->errors++;
    }
    sl_finish(c);
    return 1;
}


/* complete lines of the body: "data: " envelopes, ": live", "event: gap" */
static void
sl_sse_lines(sl_conn_t *c)
{
    char    *p, *lf, *end;
    size_t   len;

    p = (char *) c->body.data + c->body.pos;
    end = (char *) c->body.data + c->body.len;

    while (p < end) {
        lf = memchr(p, '\n', end - p);
        if (lf == NULL) {
            break;
        }

        len = lf - p;

        if (len > 6 && memcmp(p, "data: ", 6) == 0) {
            sl_envelope(c, p + 6, len - 6);

        } else if (len == 6 && memcmp(p, ": live", 6) == 0) {
            sl_went_live(c);

        } else if (len == 10 && memcmp(p, "event: gap", 10) == 0) {
            c->w->gaps++;
        }

        p = lf + 1;
    }

    c->body.pos = (unsigned char *) p - c->body.data;
}


static void
sl_redis_replies(sl_conn_t *c)
{
    void        *r;
    redisReply  *reply, *kind;

    for ( ;; ) {
        r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
            fprintf(stderr, "sseload: redis reply: %s\n", c->reader->errstr);
            c->w->errors++;
            sl_finish(c);
            return;
        }

        if (r == NULL) {
            return;
        }

        reply = r;

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 3
            && reply->element[0]->type == REDIS_REPLY_STRING)
        {
            kind = reply->element[0];

            if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0
                && reply->element[2]->type == REDIS_REPLY_STRING)
            {
                if (c->state == SL_LIVE) {
                    sl_envelope(c, reply->element[2]->str,
                                reply->element[2]->len);
                }

            } else if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0)
            {
                sl_went_live(c);
            }

        } else if (reply->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "sseload: redis: %s\n", reply->str);
            c->w->errors++;
        }

        freeReplyObject(reply);
    }
}


static void
sl_went_live(sl_conn_t *c)
{
    if (c->state == SL_LIVE) {
        return;
    }

    c->state = SL_LIVE;
    c->w->pending--;
    __atomic_add_fetch(&sl_live, 1, __ATOMIC_RELAXED);
}


/* {"id":..,"seq":N,..,"event":{..,"ts_us":T,..}}: counted, timed */
static void
sl_envelope(sl_conn_t *c, const char *p, size_t len)
{
    int64_t       ts, lat;
    uint64_t      seq;
    const char   *q, *end;
    sl_worker_t  *w = c->w;

    end = p + len;
    w->events_all++;

    q = memmem(p, len, "\"seq\":", 6);
    if (q != NULL) {
        seq = 0;
        for (q += 6; q < end && *q >= '0' && *q <= '9'; q++) {
            seq = seq * 10 + (*q - '0');
        }

        if (c->has_seq && seq != c->last_seq + 1) {
            if (seq > c->last_seq) {
                w->seq_missing += seq - c->last_seq - 1;
            } else {
                w->seq_dup++;
            }
        }

        if (!c->has_seq || seq > c->last_seq) {
            c->last_seq = seq;
        }
        c->has_seq = 1;
    }

    if (!sl_measuring(w)) {
        return;
    }

    w->events++;

    /* the backend's stamp, in the event object (not the envelope's ts_ms) */
    q = memmem(p, len, "\"event\":{", 9);
    if (q != NULL) {
        q = memmem(q, end - q, "\"ts_us\":", 8);
    }

    if (q == NULL) {
        w->no_ts++;
        return;
    }

    ts = 0;
    for (q += 8; q < end && *q >= '0' && *q <= '9'; q++) {
        ts = ts * 10 + (*q - '0');
    }

    lat = w->wall_us - ts;
    if (lat < 0) {
        lat = 0;
    }

    sl_sample(w, lat > UINT32_MAX ? UINT32_MAX : (uint32_t) lat);
}


static void
sl_flush(sl_conn_t *c)
{
    int                 rc;
    struct epoll_event  ev;

    if (c->state == SL_CONNECTING || c->state == SL_FREE) {
        return;
    }

    rc = wsb_write_out(c->fd, &c->out);

    if (rc == -1) {
        c->w->errors++;
        sl_finish(c);
        return;
    }

    if (rc == 1) {
        return;     /* EPOLLOUT is armed until the request is out */
    }

    if (c->want_out) {
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        (void) epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}


static void
sl_finish(sl_conn_t *c)
{
    if (c->state == SL_LIVE) {
        __atomic_sub_fetch(&sl_live, 1, __ATOMIC_RELAXED);
    } else if (c->state != SL_FREE) {
        c->w->pending--;
    }

    close(c->fd);
    c->fd = -1;
    c->state = SL_FREE;

    if (c->reader != NULL) {
        redisReaderFree(c->reader);
        c->reader = NULL;
    }

    wsb_buf_free(&c->in);
    wsb_buf_free(&c->body);
    wsb_buf_free(&c->out);
}


static void
sl_sample(sl_worker_t *w, uint32_t us)
{
    wsb_reservoir_add(w->samples, w->samples_cap, &w->nsamples, &w->rnd, us);
}
