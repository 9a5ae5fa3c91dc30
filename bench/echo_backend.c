/*
 * echo_backend: a single-threaded epoll WebSocket echo server for the bench.
 * Right after the 101 it sends the readiness ack {"type":"connection_ready"}
 * (in the same write), then echoes every data frame with its opcode.  With
 * --events N each client message is first answered with N agent events
 * {"type":"agent_thinking","ts_us":<wall clock>,...}, then the echo; the
 * Redis subscriber measures publish latency from ts_us.
 *
 * With --stream-rate R every upgraded connection also receives R agent
 * events per second, paced, whatever the client sends: the loop wakes every
 * millisecond (epoll_wait's timeout), and each connection gets the events
 * due by then in one write (due = R x time since its upgrade; a connection
 * more than 100 ms behind, because its writes block, drops that debt and
 * counts it as "late").  ts_us is stamped when the batch is written.  The
 * echo goes on as usual on these connections.  On SIGUSR1 (or at exit) the
 * backend prints its stream totals.
 *
 *   echo_backend --port P [--events N] [--stream-rate R]
 */

#include <getopt.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <openssl/evp.h>

#include "wsb.h"


#define EB_MAX_FD       65536
#define EB_READ_CHUNK   (64 * 1024)
#define EB_GUID         "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define EB_READY        "{\"type\":\"connection_ready\"}"
#define EB_TICK_NS      1000000ULL
#define EB_MAX_BEHIND   100000000ULL     /* ns of stream debt kept */
#define EB_OUT_HIGH     (1024 * 1024)    /* out bytes: stream waits */


typedef struct {
    int          fd;
    int          upgraded;
    int          closing;       /* close echoed: close once out is sent */
    int          want_out;      /* EPOLLOUT armed */
    unsigned     events_sent;
    int          streaming;     /* in eb_stream[] at stream_idx */
    int          stream_idx;
    uint64_t     stream_start;  /* monotonic ns of the upgrade */
    uint64_t     stream_due;    /* events due at stream_start .. now */
    wsb_buf_t    in;
    wsb_buf_t    out;
} eb_conn_t;


static int         eb_epfd;
static int         eb_events;
static eb_conn_t  *eb_conns[EB_MAX_FD];

static double      eb_stream_rate;          /* events/s per connection */
static eb_conn_t  *eb_stream[EB_MAX_FD];    /* the streaming connections */
static int         eb_nstream;
static uint64_t    eb_stream_events;        /* written, all connections */
static uint64_t    eb_stream_late;          /* debt dropped, events */
static volatile sig_atomic_t  eb_report;


static void eb_accept(int lfd);
static void eb_read(eb_conn_t *c);
static int eb_handshake(eb_conn_t *c);
static void eb_frames(eb_conn_t *c);
static void eb_append_frame(eb_conn_t *c, int opcode,
    const unsigned char *payload, size_t len);
static void eb_flush(eb_conn_t *c);
static void eb_close(eb_conn_t *c);
static void eb_stream_add(eb_conn_t *c);
static void eb_stream_del(eb_conn_t *c);
static void eb_stream_tick(uint64_t now);
static void eb_append_event(eb_conn_t *c, int64_t ts_us);
static void eb_on_signal(int signo);
static void eb_print_stream(void);


int
main(int argc, char **argv)
{
    int                 lfd, port, n, i, one, opt, fd, timeout;
    uint64_t            now, next_tick;
    struct sockaddr_in  sin;
    struct epoll_event  ev, evs[512];
    eb_conn_t          *c;

    static struct option  longopts[] = {
        { "port",   required_argument, NULL, 'p' },
        { "events", required_argument, NULL, 'e' },
        { "stream-rate", required_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 }
    };

    port = 0;

    while ((opt = getopt_long(argc, argv, "p:e:r:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            port = atoi(optarg);
            break;
        case 'e':
            eb_events = atoi(optarg);
            break;
        case 'r':
            eb_stream_rate = atof(optarg);
            break;
        default:
            fprintf(stderr, "usage: echo_backend --port P [--events N] "
                    "[--stream-rate R]\n");
            return 2;
        }
    }

    if (port <= 0) {
        fprintf(stderr, "echo_backend: --port is required\n");
        return 2;
    }

    if (eb_stream_rate < 0) {
        fprintf(stderr, "echo_backend: --stream-rate must be >= 0\n");
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, eb_on_signal);
    signal(SIGTERM, eb_on_signal);
    signal(SIGINT, eb_on_signal);
    wsb_raise_nofile();

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd == -1) {
        wsb_die("socket");
    }

    one = 1;
    (void) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    if (bind(lfd, (struct sockaddr *) &sin, sizeof(sin)) == -1) {
        wsb_die("bind");
    }

    if (listen(lfd, 4096) == -1) {
        wsb_die("listen");
    }

    wsb_nonblock(lfd);

    eb_epfd = epoll_create1(0);
    if (eb_epfd == -1) {
        wsb_die("epoll_create1");
    }

    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (epoll_ctl(eb_epfd, EPOLL_CTL_ADD, lfd, &ev) == -1) {
        wsb_die("epoll_ctl");
    }

    printf("echo_backend: listening on 127.0.0.1:%d, %d events per message, "
           "stream %.1f events/s per connection\n",
           port, eb_events, eb_stream_rate);
    fflush(stdout);

    next_tick = wsb_now_ns() + EB_TICK_NS;

    for ( ;; ) {
        timeout = -1;

        if (eb_nstream > 0) {
            now = wsb_now_ns();
            /* round up: never wake before the tick */
            timeout = now >= next_tick
                      ? 0 : (int) ((next_tick - now + 999999) / 1000000);
        }

        n = epoll_wait(eb_epfd, evs, 512, timeout);
        if (n == -1) {
            if (errno != EINTR) {
                wsb_die("epoll_wait");
            }
            n = 0;
        }

        if (eb_report) {
            eb_print_stream();
            if (eb_report == SIGTERM || eb_report == SIGINT) {
                return 0;
            }
            eb_report = 0;
        }

        for (i = 0; i < n; i++) {
            c = evs[i].data.ptr;

            if (c == NULL) {
                eb_accept(lfd);
                continue;
            }

            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                fd = c->fd;
                eb_read(c);
                if (eb_conns[fd] != c) {
                    continue;       /* closed */
                }
            }

            if (evs[i].events & EPOLLOUT) {
                eb_flush(c);
            }
        }

        if (eb_nstream > 0) {
            now = wsb_now_ns();
            if (now >= next_tick) {
                eb_stream_tick(now);
                next_tick = now - (now - next_tick) % EB_TICK_NS
                            + EB_TICK_NS;
            }
        }
    }

    return 0;
}


static void
eb_on_signal(int signo)
{
    eb_report = signo;
}


static void
eb_print_stream(void)
{
    printf("stream: rate_per_conn=%.1f conns=%d events=%llu late=%llu\n",
           eb_stream_rate, eb_nstream,
           (unsigned long long) eb_stream_events,
           (unsigned long long) eb_stream_late);
    fflush(stdout);
}


static void
eb_stream_add(eb_conn_t *c)
{
    c->streaming = 1;
    c->stream_idx = eb_nstream;
    c->stream_start = wsb_now_ns();
    c->stream_due = 0;
    eb_stream[eb_nstream++] = c;
}


static void
eb_stream_del(eb_conn_t *c)
{
    eb_conn_t  *last;

    if (!c->streaming) {
        return;
    }

    last = eb_stream[--eb_nstream];
    eb_stream[c->stream_idx] = last;
    last->stream_idx = c->stream_idx;
    c->streaming = 0;
}


/* writes every streaming connection's events due by now, one batch each */
static void
eb_stream_tick(uint64_t now)
{
    int        i, fd;
    int64_t    ts;
    uint64_t   due, n, behind;
    eb_conn_t  *c;

    ts = wsb_wall_us();

    for (i = 0; i < eb_nstream; /* void */ ) {
        c = eb_stream[i];

        due = (uint64_t) ((double) (now - c->stream_start) * eb_stream_rate
                          / 1e9);
        n = due - c->stream_due;

        if (n == 0) {
            i++;
            continue;
        }

        behind = (uint64_t) ((double) n * 1e9 / eb_stream_rate);

        if (c->out.len - c->out.pos > EB_OUT_HIGH || behind > EB_MAX_BEHIND) {
            /* the peer does not keep up: give up the debt, count it */
            if (behind > EB_MAX_BEHIND) {
                eb_stream_late += n;
                c->stream_due = due;
            }
            i++;
            continue;
        }

        c->stream_due = due;
        eb_stream_events += n;

        while (n--) {
            eb_append_event(c, ts);
        }

        fd = c->fd;
        eb_flush(c);

        if (eb_conns[fd] == c) {
            i++;
        }
        /* else closed: eb_stream[i] is another connection now */
    }
}


static void
eb_append_event(eb_conn_t *c, int64_t ts_us)
{
    int   n;
    char  ev[160];

    n = snprintf(ev, sizeof(ev),
                 "{\"type\":\"agent_thinking\",\"ts_us\":%lld,"
                 "\"step\":%u,\"text\":\"considering the next "
                 "tool call\"}",
                 (long long) ts_us, c->events_sent++);
    eb_append_frame(c, WSB_TEXT, (unsigned char *) ev, n);
}


static void
eb_accept(int lfd)
{
    int                 fd, one;
    eb_conn_t          *c;
    struct epoll_event  ev;

    for ( ;; ) {
        fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (fd == -1) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                perror("echo_backend: accept4");
            }
            return;
        }

        if (fd >= EB_MAX_FD) {
            close(fd);
            continue;
        }

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        c = calloc(1, sizeof(eb_conn_t));
        if (c == NULL) {
            wsb_die("calloc");
        }

        c->fd = fd;
        eb_conns[fd] = c;

        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(eb_epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
            wsb_die("epoll_ctl");
        }
    }
}


static void
eb_read(eb_conn_t *c)
{
    ssize_t  n;

    wsb_buf_reserve(&c->in, EB_READ_CHUNK);

    n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);

    if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
        eb_close(c);
        return;
    }

    if (n == -1) {
        return;
    }

    c->in.len += n;

    if (!c->upgraded) {
        if (eb_handshake(c) != 0) {
            return;
        }
    }

    if (c->upgraded && !c->closing) {
        eb_frames(c);
    }

    eb_flush(c);
}


/* answers the HTTP upgrade; 0 when done or waiting for more, -1 closed */
static int
eb_handshake(eb_conn_t *c)
{
    char           *req, *end, *key, *eol;
    size_t          klen, hlen;
    unsigned char   md[EVP_MAX_MD_SIZE], kbuf[128];
    unsigned int    mdlen;
    char            accept[64], head[256];
    int             n;

    req = (char *) c->in.data + c->in.pos;
    end = memmem(req, c->in.len - c->in.pos, "\r\n\r\n", 4);

    if (end == NULL) {
        if (c->in.len - c->in.pos > 16384) {
            eb_close(c);
            return -1;
        }
        return 0;
    }

    hlen = end + 4 - req;

    key = memmem(req, hlen, "Sec-WebSocket-Key:", 18);
    if (key == NULL) {
        key = memmem(req, hlen, "sec-websocket-key:", 18);
    }

    if (key == NULL) {
        eb_close(c);
        return -1;
    }

    key += 18;
    while (*key == ' ') {
        key++;
    }

    eol = memchr(key, '\r', end + 2 - key);
    klen = eol - key;

    if (klen + sizeof(EB_GUID) > sizeof(kbuf)) {
        eb_close(c);
        return -1;
    }

    memcpy(kbuf, key, klen);
    memcpy(kbuf + klen, EB_GUID, sizeof(EB_GUID) - 1);

    if (!EVP_Digest(kbuf, klen + sizeof(EB_GUID) - 1, md, &mdlen, EVP_sha1(),
                    NULL))
    {
        eb_close(c);
        return -1;
    }

    (void) EVP_EncodeBlock((unsigned char *) accept, md, mdlen);

    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n", accept);

    wsb_buf_reserve(&c->out, n);
    memcpy(c->out.data + c->out.len, head, n);
    c->out.len += n;

    eb_append_frame(c, WSB_TEXT, (const unsigned char *) EB_READY,
                    sizeof(EB_READY) - 1);

    c->in.pos += hlen;
    c->upgraded = 1;

    if (eb_stream_rate > 0) {
        eb_stream_add(c);
    }

    return 0;
}


/* echoes every whole frame in the input */
static void
eb_frames(eb_conn_t *c)
{
    int                   opcode, i;
    size_t                hlen;
    uint64_t              len;
    unsigned char        *p, *payload;
    const unsigned char  *mask;

    for ( ;; ) {
        p = c->in.data + c->in.pos;

        hlen = wsb_frame_parse(p, c->in.len - c->in.pos, &opcode, &len,
                               &mask);
        if (hlen == 0) {
            return;
        }

        if (c->in.len - c->in.pos < hlen + len) {
            /* the reader grows the buffer by a chunk per read */
            return;
        }

        payload = p + hlen;
        if (mask) {
            wsb_mask(payload, payload, len, mask);
        }

        c->in.pos += hlen + len;

        switch (opcode) {

        case WSB_TEXT:
        case WSB_BINARY:
        case 0:
            for (i = 0; i < eb_events; i++) {
                eb_append_event(c, wsb_wall_us());
            }

            eb_append_frame(c, opcode, payload, len);
            break;

        case WSB_CLOSE:
            eb_append_frame(c, WSB_CLOSE, payload, len);
            c->closing = 1;
            eb_stream_del(c);
            return;

        case WSB_PING:
            eb_append_frame(c, WSB_PONG, payload, len);
            break;

        default:
            break;
        }
    }
}


static void
eb_append_frame(eb_conn_t *c, int opcode, const unsigned char *payload,
    size_t len)
{
    wsb_buf_reserve(&c->out, len + 10);
    c->out.len += wsb_frame_header(c->out.data + c->out.len, opcode, len, 0);
    memcpy(c->out.data + c->out.len, payload, len);
    c->out.len += len;
}


static void
eb_flush(eb_conn_t *c)
{
    ssize_t             n;
    struct epoll_event  ev;

    while (c->out.pos < c->out.len) {
        n = write(c->fd, c->out.data + c->out.pos, c->out.len - c->out.pos);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            if (errno != EAGAIN) {
                eb_close(c);
                return;
            }

            if (!c->want_out) {
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.ptr = c;
                (void) epoll_ctl(eb_epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->want_out = 1;
            }
            return;
        }

        c->out.pos += n;
    }

    c->out.pos = 0;
    c->out.len = 0;

    if (c->closing) {
        /* the server closes the TCP connection first (RFC 6455 7.1.1) */
        eb_close(c);
        return;
    }

    if (c->want_out) {
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        (void) epoll_ctl(eb_epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}


static void
eb_close(eb_conn_t *c)
{
    eb_stream_del(c);
    eb_conns[c->fd] = NULL;
    close(c->fd);
    wsb_buf_free(&c->in);
    wsb_buf_free(&c->out);
    free(c);
}
