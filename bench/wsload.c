/*
 * wsload: an epoll WebSocket load generator (RFC 6455 client, every frame
 * masked with a fresh key).  Four modes:
 *
 *   echo       C connections, each keeping W messages of S bytes in flight
 *              (closed loop); messages/s and round-trip p50/p99/p999 from
 *              every sample (a fair reservoir past 8M samples).  Text frames
 *              whose payload starts with {"type":"agent_ are counted as
 *              events, not replies (the --events backend).
 *   handshake  C slots, each in a loop: connect, upgrade, wait for the ready
 *              frame, send one message, get the echo, close (close frame,
 *              the server closes TCP first); handshakes/s and cycle time.
 *   idle       open C connections (at most --pending handshakes at a time),
 *              print "idle_ready" when all got the ready frame, hold them
 *              for --hold seconds (or until SIGTERM/SIGINT), then close.
 *   sink       C connections that, after the ready frame, send nothing and
 *              count the data frames they receive (a --stream-rate backend):
 *              frames/s, and the relay latency p50/p99/p999 of the events
 *              among them (receive time - their "ts_us" wall-clock stamp).
 *
 * One result line of key=value pairs on stdout.  Every run is bounded:
 * warmup + duration (+ 2 s drain + 2 s close) or ramp + hold.
 *
 * SIGUSR1 prints a line "mark n=K replies=R events=E frames=F" with the
 * totals so far (whole run, not only the measured window): a script takes
 * two marks around an interval (bench/callgrind.sh: around the profiler's
 * zero and dump) and counts the messages in between.
 */

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "wsb.h"


#define WL_ECHO          0
#define WL_HANDSHAKE     1
#define WL_IDLE          2
#define WL_SINK          3

#define WL_CONNECTING    0
#define WL_UPGRADING     1
#define WL_WAIT_READY    2
#define WL_RUN           3
#define WL_HS_ECHO       4
#define WL_CLOSING       5
#define WL_FREE          6

#define WL_K_REPLY       0
#define WL_K_EVENT       1
#define WL_K_READY       2
#define WL_K_CLOSE       3
#define WL_K_OTHER       4

#define WL_PEEK          20
#define WL_SINK_PEEK     64     /* sink: "ts_us" is in an event's first 64 */
#define WL_READ_CHUNK    (64 * 1024)
#define WL_RESERVOIR     (8 * 1024 * 1024)
#define WL_GRACE_NS      2000000000ULL


typedef struct wl_worker_s  wl_worker_t;

typedef struct {
    int            fd;
    int            state;
    int            idx;
    int            want_out;
    int            got_close;
    int            kind;            /* of the frame being received */
    uint64_t       skip;            /* its payload bytes still to come */
    uint64_t       started;         /* handshake mode: cycle start */
    uint64_t      *sent;            /* ring of send times, window long */
    unsigned       head;
    unsigned       inflight;
    wsb_buf_t      in;
    wsb_buf_t      out;
    wl_worker_t   *w;
} wl_conn_t;


struct wl_worker_s {
    pthread_t      tid;
    int            epfd;
    int            nconns;
    wl_conn_t     *conns;
    uint32_t       rnd;
    uint64_t       now;
    int            pending;         /* connections before their ready */
    int            next_idle;       /* idle mode: next to open */

    uint64_t       msgs;            /* in the measured window */
    uint64_t       msgs_all;        /* single writer; marks read them */
    uint64_t       events_all;
    uint64_t       frames_all;
    int64_t        wall_us;         /* sink: wall clock at the last read */
    uint64_t       events;
    uint64_t       errors;
    uint64_t       nsamples;        /* seen; kept: min(n, reservoir) */
    uint32_t      *samples;
    size_t         samples_cap;
};


static int                 wl_mode = WL_ECHO;
static int                 wl_conns = 50;
static int                 wl_threads = 1;
static int                 wl_size = 64;
static int                 wl_window = 8;
static int                 wl_binary;
static int                 wl_pending_max = 200;
static double              wl_duration = 5;
static double              wl_warmup = 1;
static double              wl_hold = 5;
static const char         *wl_path = "/ws";
static struct sockaddr_in  wl_addr;

static unsigned char      *wl_payload;
static char                wl_request[1024];
static size_t              wl_request_len;

static uint64_t            wl_measure_start;
static uint64_t            wl_measure_end;
static volatile int        wl_stop;
static volatile sig_atomic_t  wl_mark_req;
static int                 wl_marks;
static wl_worker_t        *wl_workers;
static int                 wl_ready;        /* atomic */


static void *wl_worker(void *data);
static void wl_open(wl_conn_t *c);
static void wl_on_event(wl_conn_t *c, uint32_t events);
static void wl_read(wl_conn_t *c);
static void wl_frame_start(wl_conn_t *c, int opcode, const unsigned char *p,
    uint64_t len);
static void wl_frame_done(wl_conn_t *c);
static void wl_sink_latency(wl_conn_t *c, const unsigned char *p,
    size_t len);
static void wl_sink_frame(wl_conn_t *c);
static void wl_send_message(wl_conn_t *c);
static void wl_send_close(wl_conn_t *c);
static void wl_flush(wl_conn_t *c);
static void wl_finish(wl_conn_t *c, int completed);
static void wl_sample(wl_worker_t *w, uint64_t ns);
static void wl_usage(void);
static void wl_on_signal(int signo);
static void wl_on_mark(int signo);
static void wl_check_mark(void);

/* a counter that one worker writes and the main thread reads for marks */
#define wl_inc(x)  __atomic_store_n(&(x), (x) + 1, __ATOMIC_RELAXED)


int
main(int argc, char **argv)
{
    int           opt, i, j, port, all_ready;
    char         *host, *p;
    size_t        n, total, kept, k;
    uint32_t     *all;
    uint64_t      t0, msgs, msgs_all, events, errors, seen;
    double        secs;
    wl_worker_t  *workers, *w;

    static struct option  longopts[] = {
        { "mode",     required_argument, NULL, 'm' },
        { "host",     required_argument, NULL, 'H' },
        { "port",     required_argument, NULL, 'p' },
        { "path",     required_argument, NULL, 'P' },
        { "conns",    required_argument, NULL, 'c' },
        { "threads",  required_argument, NULL, 't' },
        { "size",     required_argument, NULL, 's' },
        { "window",   required_argument, NULL, 'w' },
        { "duration", required_argument, NULL, 'd' },
        { "warmup",   required_argument, NULL, 'W' },
        { "hold",     required_argument, NULL, 'h' },
        { "pending",  required_argument, NULL, 'n' },
        { "binary",   no_argument,       NULL, 'b' },
        { NULL, 0, NULL, 0 }
    };

    host = "127.0.0.1";
    port = 0;

    while ((opt = getopt_long(argc, argv, "m:H:p:P:c:t:s:w:d:W:h:n:b",
                              longopts, NULL)) != -1)
    {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "echo") == 0) {
                wl_mode = WL_ECHO;
            } else if (strcmp(optarg, "handshake") == 0) {
                wl_mode = WL_HANDSHAKE;
            } else if (strcmp(optarg, "idle") == 0) {
                wl_mode = WL_IDLE;
            } else if (strcmp(optarg, "sink") == 0) {
                wl_mode = WL_SINK;
            } else {
                wl_usage();
            }
            break;
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'P': wl_path = optarg; break;
        case 'c': wl_conns = atoi(optarg); break;
        case 't': wl_threads = atoi(optarg); break;
        case 's': wl_size = atoi(optarg); break;
        case 'w': wl_window = atoi(optarg); break;
        case 'd': wl_duration = atof(optarg); break;
        case 'W': wl_warmup = atof(optarg); break;
        case 'h': wl_hold = atof(optarg); break;
        case 'n': wl_pending_max = atoi(optarg); break;
        case 'b': wl_binary = 1; break;
        default: wl_usage();
        }
    }

    if (port <= 0 || wl_conns <= 0 || wl_threads <= 0 || wl_size < 0
        || wl_window <= 0 || wl_threads > wl_conns || wl_pending_max <= 0)
    {
        wl_usage();
    }

    memset(&wl_addr, 0, sizeof(wl_addr));
    wl_addr.sin_family = AF_INET;
    wl_addr.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &wl_addr.sin_addr) != 1) {
        fprintf(stderr, "wsload: bad --host \"%s\"\n", host);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, wl_on_signal);
    signal(SIGINT, wl_on_signal);
    signal(SIGUSR1, wl_on_mark);
    wsb_raise_nofile();

    /* a JSON object of exactly wl_size bytes: {"type":"chat","pad":"xx"} */
    wl_payload = malloc(wl_size + 1);
    if (wl_payload == NULL) {
        wsb_die("malloc");
    }
    memset(wl_payload, 'x', wl_size);
    if (wl_size >= 25) {
        p = (char *) wl_payload;
        memcpy(p, "{\"type\":\"chat\",\"pad\":\"", 22);
        memcpy(p + wl_size - 2, "\"}", 2);
    }

    wl_request_len = snprintf(wl_request, sizeof(wl_request),
        "GET %s HTTP/1.1\r\n"
        "Host: %s:%d\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "X-User-Id: u%%05d\r\n"
        "\r\n", wl_path, host, port);

    workers = calloc(wl_threads, sizeof(wl_worker_t));
    if (workers == NULL) {
        wsb_die("calloc");
    }
    wl_workers = workers;

    t0 = wsb_now_ns();
    wl_measure_start = t0 + (uint64_t) (wl_warmup * 1e9);
    wl_measure_end = wl_measure_start + (uint64_t) (wl_duration * 1e9);

    for (i = 0; i < wl_threads; i++) {
        w = &workers[i];
        w->nconns = wl_conns / wl_threads + (i < wl_conns % wl_threads);
        w->conns = calloc(w->nconns, sizeof(wl_conn_t));
        w->rnd = 0x9e3779b9u * (i + 1);
        w->samples_cap = WL_RESERVOIR / wl_threads;
        w->samples = malloc(w->samples_cap * sizeof(uint32_t));
        if (w->conns == NULL || w->samples == NULL) {
            wsb_die("calloc");
        }

        for (j = 0; j < w->nconns; j++) {
            w->conns[j].idx = j * wl_threads + i;
            w->conns[j].w = w;
            w->conns[j].fd = -1;
            w->conns[j].state = WL_FREE;
            w->conns[j].sent = calloc(wl_window, sizeof(uint64_t));
            if (w->conns[j].sent == NULL) {
                wsb_die("calloc");
            }
        }

        if (pthread_create(&w->tid, NULL, wl_worker, w) != 0) {
            wsb_die("pthread_create");
        }
    }

    if (wl_mode == WL_IDLE) {
        /* ramp: at most warmup + duration seconds to open them all */
        all_ready = 0;
        while (!wl_stop && wsb_now_ns() < wl_measure_end) {
            if (__atomic_load_n(&wl_ready, __ATOMIC_RELAXED) >= wl_conns) {
                all_ready = 1;
                break;
            }
            wl_check_mark();
            usleep(10000);
        }

        printf("idle_ready conns=%d ok=%d secs=%.2f\n",
               __atomic_load_n(&wl_ready, __ATOMIC_RELAXED), all_ready,
               (wsb_now_ns() - t0) / 1e9);
        fflush(stdout);

        t0 = wsb_now_ns() + (uint64_t) (wl_hold * 1e9);
        while (!wl_stop && wsb_now_ns() < t0) {
            wl_check_mark();
            usleep(10000);
        }

    } else {
        while (!wl_stop && wsb_now_ns() < wl_measure_end) {
            wl_check_mark();
            usleep(1000);
        }
    }

    wl_stop = 1;

    msgs = msgs_all = events = errors = seen = 0;
    total = 0;

    for (i = 0; i < wl_threads; i++) {
        pthread_join(workers[i].tid, NULL);
        msgs += workers[i].msgs;
        msgs_all += workers[i].msgs_all;
        events += workers[i].events;
        errors += workers[i].errors;
        seen += workers[i].nsamples;
        total += workers[i].nsamples < workers[i].samples_cap
                 ? workers[i].nsamples : workers[i].samples_cap;
    }

    all = malloc((total + 1) * sizeof(uint32_t));
    if (all == NULL) {
        wsb_die("malloc");
    }

    n = 0;
    for (i = 0; i < wl_threads; i++) {
        kept = workers[i].nsamples < workers[i].samples_cap
               ? workers[i].nsamples : workers[i].samples_cap;
        for (k = 0; k < kept; k++) {
            all[n++] = workers[i].samples[k];
        }
    }

    qsort(all, n, sizeof(uint32_t), wsb_cmp_u32);

    secs = wl_duration;

    wl_check_mark();

    printf("mode=%s conns=%d threads=%d size=%d window=%d secs=%.2f "
           "msgs=%llu rate=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
           "samples=%llu kept=%zu events=%llu events_rate=%.0f "
           "msgs_all=%llu errors=%llu\n",
           wl_mode == WL_ECHO ? "echo"
           : wl_mode == WL_HANDSHAKE ? "handshake"
           : wl_mode == WL_SINK ? "sink" : "idle",
           wl_conns, wl_threads, wl_size, wl_window, secs,
           (unsigned long long) msgs, msgs / secs,
           wsb_quantile(all, n, 0.50) / 1e3,
           wsb_quantile(all, n, 0.99) / 1e3,
           wsb_quantile(all, n, 0.999) / 1e3,
           (unsigned long long) seen, n,
           (unsigned long long) events, events / secs,
           (unsigned long long) msgs_all, (unsigned long long) errors);

    return 0;
}


static void
wl_usage(void)
{
    fprintf(stderr,
        "usage: wsload --port P [--mode echo|handshake|idle|sink] [--host IP]\n"
        "              [--path /ws] [--conns C] [--threads T] [--size S]\n"
        "              [--window W] [--warmup SEC] [--duration SEC]\n"
        "              [--hold SEC] [--pending N] [--binary]\n");
    exit(2);
}


static void
wl_on_signal(int signo)
{
    (void) signo;
    wl_stop = 1;
}


static void
wl_on_mark(int signo)
{
    (void) signo;
    wl_mark_req = 1;
}


/* main thread: prints the running totals when SIGUSR1 asked for them */
static void
wl_check_mark(void)
{
    int       i;
    uint64_t  replies, events, frames;

    if (!wl_mark_req) {
        return;
    }

    wl_mark_req = 0;
    replies = events = frames = 0;

    for (i = 0; i < wl_threads; i++) {
        replies += __atomic_load_n(&wl_workers[i].msgs_all, __ATOMIC_RELAXED);
        events += __atomic_load_n(&wl_workers[i].events_all,
                                  __ATOMIC_RELAXED);
        frames += __atomic_load_n(&wl_workers[i].frames_all,
                                  __ATOMIC_RELAXED);
    }

    printf("mark n=%d replies=%llu events=%llu frames=%llu\n", ++wl_marks,
           (unsigned long long) replies, (unsigned long long) events,
           (unsigned long long) frames);
    fflush(stdout);
}


static void *
wl_worker(void *data)
{
    wl_worker_t         *w = data;
    int                  i, n, active;
    uint64_t             drain_end, close_end;
    wl_conn_t           *c;
    struct epoll_event   evs[256];

    w->epfd = epoll_create1(0);
    if (w->epfd == -1) {
        wsb_die("epoll_create1");
    }

    w->now = wsb_now_ns();

    if (wl_mode != WL_IDLE) {
        for (i = 0; i < w->nconns; i++) {
            wl_open(&w->conns[i]);
        }
    }

    drain_end = 0;
    close_end = 0;

    for ( ;; ) {
        /* idle mode: keep at most wl_pending_max handshakes going */
        while (wl_mode == WL_IDLE && !wl_stop && w->next_idle < w->nconns
               && w->pending < wl_pending_max / wl_threads + 1)
        {
            wl_open(&w->conns[w->next_idle++]);
        }

        n = epoll_wait(w->epfd, evs, 256, 5);
        if (n == -1 && errno != EINTR) {
            wsb_die("epoll_wait");
        }

        w->now = wsb_now_ns();

        for (i = 0; i < n; i++) {
            wl_on_event(evs[i].data.ptr, evs[i].events);
        }

        if (!wl_stop) {
            continue;
        }

        /* stop: drain what is in flight, then close every connection */
        if (drain_end == 0) {
            drain_end = w->now + WL_GRACE_NS;
        }

        if (close_end == 0) {
            active = 0;
            for (i = 0; i < w->nconns; i++) {
                c = &w->conns[i];
                if (c->state == WL_HS_ECHO
                    || (c->state == WL_RUN && c->inflight > 0)
                    || c->state == WL_CONNECTING || c->state == WL_UPGRADING
                    || c->state == WL_WAIT_READY)
                {
                    active++;
                }
            }

            if (active > 0 && w->now < drain_end && wl_mode != WL_IDLE) {
                continue;
            }

            for (i = 0; i < w->nconns; i++) {
                c = &w->conns[i];
                if (c->state == WL_FREE || c->state == WL_CLOSING) {
                    continue;
                }

                if (c->state == WL_RUN || c->state == WL_HS_ECHO) {
                    wl_send_close(c);
                } else {
                    wl_finish(c, 0);
                }
            }

            close_end = w->now + WL_GRACE_NS;
        }

        active = 0;
        for (i = 0; i < w->nconns; i++) {
            if (w->conns[i].state != WL_FREE) {
                active++;
            }
        }

        if (active == 0) {
            break;
        }

        if (w->now >= close_end) {
            for (i = 0; i < w->nconns; i++) {
                if (w->conns[i].state != WL_FREE) {
                    wl_finish(&w->conns[i], 0);
                }
            }
            break;
        }
    }

    close(w->epfd);
    return NULL;
}


static void
wl_open(wl_conn_t *c)
{
    int                 fd;
    struct epoll_event  ev;

    fd = wsb_connect(&wl_addr);
    if (fd == -1) {
        perror("wsload: connect");
        c->w->errors++;
        c->state = WL_FREE;
        return;
    }

    c->fd = fd;
    c->state = WL_CONNECTING;
    c->got_close = 0;
    c->skip = 0;
    c->head = 0;
    c->inflight = 0;
    c->started = c->w->now;
    c->in.pos = c->in.len = 0;
    c->out.pos = c->out.len = 0;
    c->w->pending++;

    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    c->want_out = 1;
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        wsb_die("epoll_ctl");
    }
}


static void
wl_on_event(wl_conn_t *c, uint32_t events)
{
    int  n;

    if (c->state == WL_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }

        if (wsb_connect_error(c->fd)) {
            c->w->errors++;
            wl_finish(c, 0);
            return;
        }

        wsb_buf_reserve(&c->out, wl_request_len + 16);
        n = snprintf((char *) c->out.data + c->out.len, wl_request_len + 16,
                     wl_request, c->idx);
        c->out.len += n;
        c->state = WL_UPGRADING;
        wl_flush(c);
        return;
    }

    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        wl_read(c);
    }

    if (c->state != WL_FREE && (events & EPOLLOUT)) {
        wl_flush(c);
    }
}


static void
wl_read(wl_conn_t *c)
{
    int                   opcode;
    char                 *h, *end;
    size_t                hlen, avail, need;
    ssize_t               n;
    uint64_t              len, take;
    unsigned char        *p;
    const unsigned char  *mask;

    wsb_buf_reserve(&c->in, WL_READ_CHUNK);

    n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);

    if (n == -1) {
        if (errno == EAGAIN || errno == EINTR) {
            return;
        }
        c->w->errors++;
        wl_finish(c, 0);
        return;
    }

    if (n == 0) {
        /* the server closed TCP: after the close handshake that is done */
        if (c->state == WL_CLOSING) {
            wl_finish(c, 1);
        } else {
            c->w->errors++;
            wl_finish(c, 0);
        }
        return;
    }

    c->in.len += n;

    if (wl_mode == WL_SINK) {
        c->w->wall_us = wsb_wall_us();
    }

    if (c->state == WL_UPGRADING) {
        h = (char *) c->in.data + c->in.pos;
        end = memmem(h, c->in.len - c->in.pos, "\r\n\r\n", 4);
        if (end == NULL) {
            return;
        }

        if (c->in.len - c->in.pos < 12 || memcmp(h + 9, "101", 3) != 0) {
            c->w->errors++;
            wl_finish(c, 0);
            return;
        }

        c->in.pos += end + 4 - h;
        c->state = WL_WAIT_READY;
    }

    while (c->in.pos < c->in.len && c->state != WL_FREE) {
        p = c->in.data + c->in.pos;
        avail = c->in.len - c->in.pos;

        if (c->skip > 0) {
            take = c->skip < avail ? c->skip : avail;
            c->in.pos += take;
            c->skip -= take;
            if (c->skip == 0) {
                wl_frame_done(c);
            }
            continue;
        }

        hlen = wsb_frame_parse(p, avail, &opcode, &len, &mask);
        if (hlen == 0) {
            break;
        }

        need = wl_mode == WL_SINK ? WL_SINK_PEEK : WL_PEEK;
        need = hlen + (len < need ? len : need);
        if (avail < need) {
            break;
        }

        if (mask != NULL) {
            fprintf(stderr, "wsload: masked frame from the server\n");
            c->w->errors++;
            wl_finish(c, 0);
            return;
        }

        wl_frame_start(c, opcode, p + hlen, len);
        c->in.pos += hlen;
        c->skip = len;

        if (len == 0) {
            wl_frame_done(c);
        }
    }

    if (c->state != WL_FREE) {
        wl_flush(c);
    }
}


static void
wl_frame_start(wl_conn_t *c, int opcode, const unsigned char *p,
    uint64_t len)
{
    if (opcode == WSB_CLOSE) {
        c->kind = WL_K_CLOSE;

    } else if (opcode == WSB_TEXT && len >= 20
               && memcmp(p, "{\"type\":\"connection_", 20) == 0)
    {
        c->kind = WL_K_READY;

    } else if (opcode == WSB_TEXT && len >= 15
               && memcmp(p, "{\"type\":\"agent_", 15) == 0)
    {
        c->kind = WL_K_EVENT;

        if (wl_mode == WL_SINK && c->state == WL_RUN) {
            wl_sink_latency(c, p, len < WL_SINK_PEEK ? len : WL_SINK_PEEK);
        }

    } else if (opcode == WSB_TEXT || opcode == WSB_BINARY) {
        c->kind = WL_K_REPLY;

    } else {
        c->kind = WL_K_OTHER;
    }
}


/* sink: a data frame received after the ready frame */
static void
wl_sink_frame(wl_conn_t *c)
{
    wl_worker_t  *w = c->w;

    if (c->state != WL_RUN) {
        return;
    }

    wl_inc(w->frames_all);
    wl_inc(w->msgs_all);

    if (w->now >= wl_measure_start && w->now <= wl_measure_end) {
        w->msgs++;
        if (c->kind == WL_K_EVENT) {
            w->events++;
        }
    }
}


/* sink: the relay latency of an event from its "ts_us" stamp */
static void
wl_sink_latency(wl_conn_t *c, const unsigned char *p, size_t len)
{
    int64_t               ts, lat;
    const unsigned char  *q, *end;
    wl_worker_t          *w = c->w;

    if (w->now < wl_measure_start || w->now > wl_measure_end) {
        return;
    }

    q = memmem(p, len, "\"ts_us\":", 8);
    if (q == NULL) {
        return;
    }

    end = p + len;
    ts = 0;
    for (q += 8; q < end && *q >= '0' && *q <= '9'; q++) {
        ts = ts * 10 + (*q - '0');
    }

    if (q == end) {
        return;             /* the number may go on past the peek */
    }

    lat = w->wall_us - ts;
    if (lat < 0) {
        lat = 0;
    }

    wl_sample(w, (uint64_t) lat * 1000);
}


static void
wl_frame_done(wl_conn_t *c)
{
    int           i;
    uint64_t      sent;
    wl_worker_t  *w = c->w;

    switch (c->kind) {

    case WL_K_READY:
        if (c->state != WL_WAIT_READY) {
            break;
        }

        w->pending--;

        if (wl_mode == WL_IDLE || wl_mode == WL_SINK) {
            c->state = WL_RUN;
            __atomic_add_fetch(&wl_ready, 1, __ATOMIC_RELAXED);

        } else if (wl_mode == WL_HANDSHAKE) {
            c->state = WL_HS_ECHO;
            wl_send_message(c);

        } else {
            c->state = WL_RUN;
            for (i = 0; i < wl_window && !wl_stop; i++) {
                wl_send_message(c);
            }
        }
        break;

    case WL_K_REPLY:
        if (c->state == WL_HS_ECHO) {
            wl_send_close(c);
            break;
        }

        if (wl_mode == WL_SINK) {
            wl_sink_frame(c);
            break;
        }

        if (c->state != WL_RUN || c->inflight == 0) {
            break;
        }

        sent = c->sent[c->head];
        c->head = (c->head + 1) % wl_window;
        c->inflight--;
        wl_inc(w->msgs_all);

        if (sent >= wl_measure_start && w->now <= wl_measure_end) {
            w->msgs++;
            wl_sample(w, w->now - sent);
        }

        if (!wl_stop) {
            wl_send_message(c);
        }
        break;

    case WL_K_EVENT:
        if (c->state == WL_RUN) {
            wl_inc(w->events_all);
        }

        if (wl_mode == WL_SINK) {
            wl_sink_frame(c);
            break;
        }

        if (w->now >= wl_measure_start && w->now <= wl_measure_end) {
            w->events++;
        }
        break;

    case WL_K_CLOSE:
        c->got_close = 1;
        break;

    default:
        break;
    }
}


static void
wl_send_message(wl_conn_t *c)
{
    uint32_t        r;
    unsigned char  *p, key[4];

    wsb_buf_reserve(&c->out, wl_size + 14);
    p = c->out.data + c->out.len;

    r = c->w->rnd;
    r ^= r << 13;
    r ^= r >> 17;
    r ^= r << 5;
    c->w->rnd = r;
    memcpy(key, &r, 4);

    p += wsb_frame_header(p, wl_binary ? WSB_BINARY : WSB_TEXT, wl_size, 1);
    memcpy(p, key, 4);
    p += 4;
    wsb_mask(p, wl_payload, wl_size, key);
    p += wl_size;

    c->out.len = p - c->out.data;

    if (wl_mode == WL_ECHO) {
        c->sent[(c->head + c->inflight) % wl_window] = c->w->now;
        c->inflight++;
    }
}


/* close frame, status 1000; then wait for the server's close and its FIN */
static void
wl_send_close(wl_conn_t *c)
{
    unsigned char  *p, key[4], code[2] = { 0x03, 0xe8 };

    wsb_buf_reserve(&c->out, 8);
    p = c->out.data + c->out.len;

    memcpy(key, &c->w->rnd, 4);
    p += wsb_frame_header(p, WSB_CLOSE, 2, 1);
    memcpy(p, key, 4);
    p += 4;
    wsb_mask(p, code, 2, key);
    p += 2;

    c->out.len = p - c->out.data;
    c->state = WL_CLOSING;
    wl_flush(c);
}


static void
wl_flush(wl_conn_t *c)
{
    int                 rc;
    struct epoll_event  ev;

    if (c->state == WL_CONNECTING || c->state == WL_FREE) {
        return;         /* a new socket: it waits for its EPOLLOUT */
    }

    rc = wsb_write_out(c->fd, &c->out);

    if (rc == -1) {
        c->w->errors++;
        wl_finish(c, 0);
        return;
    }

    if (rc == 1) {
        if (!c->want_out) {
            ev.events = EPOLLIN | EPOLLOUT;
            ev.data.ptr = c;
            (void) epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
            c->want_out = 1;
        }
        return;
    }

    if (c->want_out) {
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        (void) epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}


/* closes the socket; handshake mode counts the cycle and starts the next */
static void
wl_finish(wl_conn_t *c, int completed)
{
    wl_worker_t  *w = c->w;

    if (c->state == WL_CONNECTING || c->state == WL_UPGRADING
        || c->state == WL_WAIT_READY)
    {
        w->pending--;
    }

    if (c->state == WL_RUN && wl_mode == WL_IDLE) {
        __atomic_sub_fetch(&wl_ready, 1, __ATOMIC_RELAXED);
    }

    close(c->fd);
    c->fd = -1;
    c->state = WL_FREE;

    if (wl_mode != WL_HANDSHAKE) {
        return;
    }

    if (completed) {
        wl_inc(w->msgs_all);
        if (c->started >= wl_measure_start && w->now <= wl_measure_end) {
            w->msgs++;
            wl_sample(w, w->now - c->started);
        }
    }

    if (!wl_stop) {
        wl_open(c);
    }
}


static void
wl_sample(wl_worker_t *w, uint64_t ns)
{
    wsb_reservoir_add(w->samples, w->samples_cap, &w->nsamples, &w->rnd,
                      ns > UINT32_MAX ? UINT32_MAX : (uint32_t) ns);
}
