/*
 * redsub: a Redis pub/sub subscriber for the publish workload (hiredis sync
 * API).  PSUBSCRIBEs to a pattern, and for every message received in the
 * measured window counts it and takes its latency: now minus the "ts_us"
 * wall-clock stamp the echo backend put into the event when it wrote the
 * frame (so: backend write -> nginx relay -> module -> Redis -> here).
 *
 *   redsub --port P [--pattern 'agent:events:*'] [--warmup S] [--duration S]
 *
 * One line of key=value pairs on stdout.  Bounded: warmup + duration + 1 s.
 */

#include <getopt.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "wsb.h"


#define RS_MAX_SAMPLES  (16 * 1024 * 1024)


int
main(int argc, char **argv)
{
    int              opt, port;
    char            *pattern, *ts;
    size_t           n, cap;
    double           warmup, duration;
    int64_t          lat, now_us;
    uint32_t        *samples;
    uint64_t         t0, start, end, now, count, all, bad;
    redisReply      *reply, *msg;
    redisContext    *rc;
    struct timeval   tv;

    static struct option  longopts[] = {
        { "port",     required_argument, NULL, 'p' },
        { "pattern",  required_argument, NULL, 'P' },
        { "warmup",   required_argument, NULL, 'W' },
        { "duration", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 }
    };

    port = 0;
    pattern = "agent:events:*";
    warmup = 1;
    duration = 5;

    while ((opt = getopt_long(argc, argv, "p:P:W:d:", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'P': pattern = optarg; break;
        case 'W': warmup = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        default:
            fprintf(stderr, "usage: redsub --port P [--pattern GLOB] "
                    "[--warmup S] [--duration S]\n");
            return 2;
        }
    }

    tv.tv_sec = 0;
    tv.tv_usec = 100000;

    rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (rc == NULL || rc->err) {
        fprintf(stderr, "redsub: connect: %s\n", rc ? rc->errstr : "oom");
        return 1;
    }

    reply = redisCommand(rc, "PSUBSCRIBE %s", pattern);
    if (reply == NULL) {
        fprintf(stderr, "redsub: PSUBSCRIBE: %s\n", rc->errstr);
        return 1;
    }
    freeReplyObject(reply);

    /* short reads so the window's end is seen even when nothing comes */
    (void) redisSetTimeout(rc, tv);

    cap = RS_MAX_SAMPLES;
    samples = malloc(cap * sizeof(uint32_t));
    if (samples == NULL) {
        wsb_die("malloc");
    }

    printf("redsub: subscribed to %s\n", pattern);
    fflush(stdout);

    t0 = wsb_now_ns();
    start = t0 + (uint64_t) (warmup * 1e9);
    end = start + (uint64_t) (duration * 1e9);

    n = 0;
    count = 0;
    all = 0;
    bad = 0;

    for ( ;; ) {
        now = wsb_now_ns();
        if (now >= end) {
            break;
        }

        reply = NULL;
        if (redisGetReply(rc, (void **) &reply) != REDIS_OK) {
            if (rc->err == REDIS_ERR_IO && (errno == EAGAIN
                                            || errno == EWOULDBLOCK))
            {
                /* the timeout: hiredis marks the context failed; reset */
                rc->err = 0;
                continue;
            }

            fprintf(stderr, "redsub: %s\n", rc->errstr);
            break;
        }

        now_us = wsb_wall_us();
        now = wsb_now_ns();
        all++;

        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4) {
            freeReplyObject(reply);
            continue;
        }

        if (now >= start && now < end) {
            count++;
            msg = reply->element[3];
            ts = strstr(msg->str, "\"ts_us\":");

            if (ts == NULL) {
                bad++;

            } else {
                lat = now_us - strtoll(ts + 8, NULL, 10);
                if (lat < 0) {
                    lat = 0;
                }

                if (n < cap) {
                    samples[n++] = lat > UINT32_MAX ? UINT32_MAX
                                                    : (uint32_t) lat;
                }
            }
        }

        freeReplyObject(reply);
    }

    qsort(samples, n, sizeof(uint32_t), wsb_cmp_u32);

    printf("events=%llu rate=%.0f p50_us=%u p99_us=%u p999_us=%u "
           "received_all=%llu no_ts=%llu\n",
           (unsigned long long) count, count / duration,
           wsb_quantile(samples, n, 0.50), wsb_quantile(samples, n, 0.99),
           wsb_quantile(samples, n, 0.999),
           (unsigned long long) all, (unsigned long long) bad);

    redisFree(rc);

    return 0;
}
