/*
 * The status location (see ngx_ws_agent_status.h).  One table names every
 * counter once; both formats are written from it.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <yajl/yajl_gen.h>

#include "ngx_ws_agent_stats.h"
#include "ngx_ws_agent_status.h"


#define NGX_WS_AGENT_STATUS_MAX  (64 * 1024)     /* and per worker */


static u_char *ngx_ws_agent_status_seconds(u_char *p, u_char *end,
    ngx_msec_t ms);


typedef struct {
    const char   *name;         /* after the "ngx_ws_agent_" prefix */
    const char   *type;
    const char   *help;
    const char   *label;        /* NULL: no label */
    const char   *value;
    ngx_uint_t    counter;
} ngx_ws_agent_metric_t;


static ngx_int_t ngx_ws_agent_status_prometheus(ngx_http_request_t *r,
    ngx_buf_t *b);
static size_t ngx_ws_agent_status_size(void);
static void ngx_ws_agent_status_node(yajl_gen g,
    ngx_ws_agent_node_stats_t *ns, ngx_uint_t listed);
static ngx_int_t ngx_ws_agent_status_json(ngx_http_request_t *r,
    ngx_buf_t *b);
static double ngx_ws_agent_status_quantile(ngx_atomic_t *buckets,
    ngx_atomic_uint_t count, double q);
static ngx_int_t ngx_ws_agent_status_send(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, ngx_buf_t *b);


static ngx_ws_agent_metric_t  ngx_ws_agent_metrics[] = {

    { "connections_total", "counter",
      "WebSocket connections that met the gate.", NULL, NULL,
      NGX_WS_AGENT_CONNECTIONS },
    { "connections_active", "gauge",
      "Upgraded connections open now.", NULL, NULL, NGX_WS_AGENT_ACTIVE },
    { "connections_gated", "gauge",
      "Connections waiting for the backend's ack now.", NULL, NULL,
      NGX_WS_AGENT_GATED },
    { "acks_total", "counter",
      "Readiness acks received.", NULL, NULL, NGX_WS_AGENT_ACKS },
    { "ready_timeouts_total", "counter",
      "Connections closed with 1013: no ack within ws_agent_ready_timeout.",
      NULL, NULL, NGX_WS_AGENT_READY_TIMEOUTS },
    { "backend_failed_before_ready_total", "counter",
      "Backends that closed or failed before their ack (1014).", NULL, NULL,
      NGX_WS_AGENT_BACKEND_FAILED_BEFORE_READY },
    { "client_left_while_gated_total", "counter",
      "Clients gone while gated; their frames still went to the backend.",
      NULL, NULL, NGX_WS_AGENT_CLIENT_LEFT_WHILE_GATED },
    { "frames_held_total", "counter",
      "Client frames held behind the gate.", NULL, NULL,
      NGX_WS_AGENT_FRAMES_HELD },
    { "bytes_held_total", "counter",
      "Client bytes held behind the gate.", NULL, NULL,
      NGX_WS_AGENT_BYTES_HELD },
    { "frames_dropped_total", "counter",
      "Held frames dropped because the connection failed while gated.",
      NULL, NULL, NGX_WS_AGENT_FRAMES_DROPPED },
    { "backpressure_total", "counter",
      "Times a full gate buffer stopped reading a client.", NULL, NULL,
      NGX_WS_AGENT_BACKPRESSURE },
    { "closes_sent_total", "counter",
      "Close frames the module sent, by code.", "code", "1001",
      NGX_WS_AGENT_SENT_1001 },
    { "closes_sent_total", NULL, NULL, "code", "1002",
      NGX_WS_AGENT_SENT_1002 },
    { "closes_sent_total", NULL, NULL, "code", "1009",
      NGX_WS_AGENT_SENT_1009 },
    { "closes_sent_total", NULL, NULL, "code", "1013",
      NGX_WS_AGENT_SENT_1013 },
    { "closes_sent_total", NULL, NULL, "code", "1014",
      NGX_WS_AGENT_SENT_1014 },
    { "protocol_errors_total", "counter",
      "RFC 6455 violations, by the side that committed them.", "side",
      "client", NGX_WS_AGENT_PROTOCOL_ERRORS_CLIENT },
    { "protocol_errors_total", NULL, NULL, "side", "backend",
      NGX_WS_AGENT_PROTOCOL_ERRORS_BACKEND },
    { "events_seen_total", "counter",
      "Backend messages of a type in ws_agent_events.", NULL, NULL,
      NGX_WS_AGENT_EVENTS_SEEN },
    { "events_queued_total", "counter",
      "Event envelopes handed to the Redis publisher.", NULL, NULL,
      NGX_WS_AGENT_EVENTS_QUEUED },
    { "events_published_total", "counter",
      "Envelopes Redis acknowledged (events and lifecycle).", NULL, NULL,
      NGX_WS_AGENT_EVENTS_PUBLISHED },
    { "lifecycle_queued_total", "counter",
      "Lifecycle envelopes handed to the Redis publisher.", NULL, NULL,
      NGX_WS_AGENT_LIFECYCLE_QUEUED },
    { "events_dropped_total", "counter",
      "Messages not published, by reason.", "reason", "queue_overflow",
      NGX_WS_AGENT_EVENTS_OVERFLOW },
    { "events_dropped_total", NULL, NULL, "reason", "redis_error",
      NGX_WS_AGENT_EVENTS_REDIS_ERROR },
    { "events_dropped_total", NULL, NULL, "reason", "lost_at_exit",
      NGX_WS_AGENT_EVENTS_LOST_AT_EXIT },
    { "events_dropped_total", NULL, NULL, "reason", "oversized",
      NGX_WS_AGENT_EVENTS_OVERSIZED },
    { "events_dropped_total", NULL, NULL, "reason", "not_json",
      NGX_WS_AGENT_EVENTS_NOT_JSON },
    { "events_dropped_total", NULL, NULL, "reason", "untyped",
      NGX_WS_AGENT_EVENTS_UNTYPED },
    { "events_dropped_total", NULL, NULL, "reason", "other_type",
      NGX_WS_AGENT_EVENTS_OTHER_TYPE },
    { "events_dropped_total", NULL, NULL, "reason", "unrouted",
      NGX_WS_AGENT_EVENTS_UNROUTED },
    { "redis_reconnects_total", "counter",
      "Reconnection attempts to Redis, all workers.", NULL, NULL,
      NGX_WS_AGENT_REDIS_RECONNECTS },
    { "events_deduplicated_total", "counter",
      "Events sent again after a lost reply that the stream already had.",
      NULL, NULL, NGX_WS_AGENT_EVENTS_DEDUPLICATED },
    { "subscribers", "gauge",
      "Clients of ws_agent_subscribe locations connected now.", NULL, NULL,
      NGX_WS_AGENT_SUBSCRIBERS },
    { "subscriptions", "gauge",
      "Channels the workers have subscribed on Redis now.", NULL, NULL,
      NGX_WS_AGENT_SUBSCRIPTIONS },
    { "subscriber_events_total", "counter",
      "Events sent to subscribers (live and replayed).", NULL, NULL,
      NGX_WS_AGENT_SUB_EVENTS },
    { "subscriber_replayed_total", "counter",
      "Events subscribers got from the stream (catching up).", NULL, NULL,
      NGX_WS_AGENT_SUB_REPLAYED },
    { "subscriber_resumes_total", "counter",
      "Subscribers that came back with a Last-Event-ID.", NULL, NULL,
      NGX_WS_AGENT_SUB_RESUMES },
    { "subscriber_gaps_total", "counter",
      "Resumes whose id was no longer in the stream (told as a gap).",
      NULL, NULL, NGX_WS_AGENT_SUB_GAPS },
    { "subscriber_slow_closes_total", "counter",
      "Subscribers closed for reading slower than events came.", NULL, NULL,
      NGX_WS_AGENT_SUB_SLOW_CLOSES },

    { NULL, NULL, NULL, NULL, NULL, 0 }
};


static ngx_msec_t  ngx_ws_agent_bounds[] = { NGX_WS_AGENT_READY_BUCKETS };


ngx_int_t
ngx_ws_agent_status_handler(ngx_http_request_t *r)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 format, type;
    ngx_buf_t                *b;
    ngx_uint_t                fmt;
    ngx_ws_agent_loc_conf_t  *wlcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_ws_agent_module);
    fmt = wlcf->status;

    b = ngx_create_temp_buf(r->pool, ngx_ws_agent_status_size());
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {

        if (format.len == 4 && ngx_strncmp(format.data, "json", 4) == 0) {
            fmt = NGX_WS_AGENT_STATUS_JSON;

        } else if (format.len == 10
                   && ngx_strncmp(format.data, "prometheus", 10) == 0)
        {
            fmt = NGX_WS_AGENT_STATUS_PROMETHEUS;

        } else {
            p = ngx_slprintf(b->last, b->end,
                             "unknown format \"%V\": use json or "
                             "prometheus\n", &format);
            b->last = p;
            ngx_str_set(&type, "text/plain");

            return ngx_ws_agent_status_send(r, NGX_HTTP_BAD_REQUEST, &type,
                                            b);
        }
    }

    if (fmt == NGX_WS_AGENT_STATUS_PROMETHEUS) {
        rc = ngx_ws_agent_status_prometheus(r, b);
        ngx_str_set(&type, "text/plain; version=0.0.4");

    } else {
        rc = ngx_ws_agent_status_json(r, b);
        ngx_str_set(&type, "application/json");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_ws_agent_status_send(r, NGX_HTTP_OK, &type, b);
}


static ngx_int_t
ngx_ws_agent_status_prometheus(ngx_http_request_t *r, ngx_buf_t *b)
{
    u_char                       *p, *end;
    ngx_uint_t                    i, j;
    ngx_atomic_uint_t             n, cum;
    ngx_ws_agent_node_stats_t    *ns;
    ngx_ws_agent_stats_t         *st;
    ngx_ws_agent_metric_t        *m;
    ngx_ws_agent_worker_stats_t  *w;

    st = ngx_ws_agent_stats;
    p = b->last;
    end = b->end;

    for (m = ngx_ws_agent_metrics; m->name; m++) {

        if (m->type) {
            p = ngx_slprintf(p, end, "# HELP ngx_ws_agent_%s %s\n"
                             "# TYPE ngx_ws_agent_%s %s\n",
                             m->name, m->help, m->name, m->type);
        }

        n = ngx_ws_agent_stats_value(m->counter);

        if (m->label) {
            p = ngx_slprintf(p, end, "ngx_ws_agent_%s{%s=\"%s\"} %uA\n",
                             m->name, m->label, m->value, n);

        } else {
            p = ngx_slprintf(p, end, "ngx_ws_agent_%s %uA\n", m->name, n);
        }
    }

    p = ngx_slprintf(p, end,
                     "# HELP ngx_ws_agent_ready_seconds Time from the "
                     "upgrade to the backend's ack.\n"
                     "# TYPE ngx_ws_agent_ready_seconds histogram\n");

    cum = 0;

    for (i = 0; i < NGX_WS_AGENT_NBUCKETS; i++) {
        cum += st->ready[i];

        if (i < NGX_WS_AGENT_NBUCKETS - 1) {
            p = ngx_slprintf(p, end, "ngx_ws_agent_ready_seconds_bucket"
                             "{le=\"");
            p = ngx_ws_agent_status_seconds(p, end, ngx_ws_agent_bounds[i]);
            p = ngx_slprintf(p, end, "\"} %uA\n", cum);

        } else {
            p = ngx_slprintf(p, end, "ngx_ws_agent_ready_seconds_bucket"
                             "{le=\"+Inf\"} %uA\n", cum);
        }
    }

    n = st->ready_sum_ms;

    p = ngx_slprintf(p, end, "ngx_ws_agent_ready_seconds_sum %uA.%03uA\n"
                     "ngx_ws_agent_ready_seconds_count %uA\n",
                     n / 1000, n % 1000, cum);

    p = ngx_slprintf(p, end,
                     "# HELP ngx_ws_agent_redis_connected 1 when the "
                     "worker's Redis connection is ready.\n"
                     "# TYPE ngx_ws_agent_redis_connected gauge\n");

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &st->workers[i];

        if (w->redis && ngx_ws_agent_stats_alive(w)) {
            p = ngx_slprintf(p, end, "ngx_ws_agent_redis_connected"
                             "{pid=\"%uA\"} %uA\n", w->pid, w->node.connected);
        }
    }

    p = ngx_slprintf(p, end,
                     "# HELP ngx_ws_agent_redis_queue_depth Events waiting "
                     "for Redis in the worker.\n"
                     "# TYPE ngx_ws_agent_redis_queue_depth gauge\n");

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &st->workers[i];

        if (w->redis && ngx_ws_agent_stats_alive(w)) {
            p = ngx_slprintf(p, end, "ngx_ws_agent_redis_queue_depth"
                             "{pid=\"%uA\"} %uA\n", w->pid,
                             w->queued + w->in_flight);
        }
    }

    p = ngx_slprintf(p, end,
                     "# HELP ngx_ws_agent_redis_node_info The Redis node "
                     "the worker publishes to: its address, ROLE, TLS.\n"
                     "# TYPE ngx_ws_agent_redis_node_info gauge\n");

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &st->workers[i];

        if (!w->redis || !ngx_ws_agent_stats_alive(w)) {
            continue;
        }

        n = ngx_min(w->nnodes, NGX_WS_AGENT_MAX_NODES);
        ns = n ? w->nodes : &w->node;

        for (j = 0; j < (n ? n : 1); j++) {
            if (n && ns[j].address[0] == '\0') {
                /* a cluster node that is no master now */
                continue;
            }

            p = ngx_slprintf(p, end, "ngx_ws_agent_redis_node_info"
                             "{pid=\"%uA\",address=\"%s\",role=\"%s\","
                             "tls=\"%s\"} 1\n", w->pid, ns[j].address,
                             ns[j].role, ns[j].tls ? "on" : "off");
        }
    }

    if (p == end) {
        return NGX_ERROR;
    }

    b->last = p;

    return NGX_OK;
}


/*
 * Room for the page: the counters, and each live worker with its cluster
 * masters (a line of either format is well under these sizes)
 */

static size_t
ngx_ws_agent_status_size(void)
{
    size_t                        size;
    ngx_uint_t                    i;
    ngx_ws_agent_worker_stats_t  *w;

    size = NGX_WS_AGENT_STATUS_MAX;

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &ngx_ws_agent_stats->workers[i];

        if (w->redis && ngx_ws_agent_stats_alive(w)) {
            size += 1024 + ngx_min(w->nnodes, NGX_WS_AGENT_MAX_NODES) * 768;
        }
    }

    return size;
}


/* a Redis connection's address, TLS and role (and, in a list, connected) */

static void
ngx_ws_agent_status_node(yajl_gen g, ngx_ws_agent_node_stats_t *ns,
    ngx_uint_t listed)
{
    if (listed) {
        yajl_gen_string(g, (const unsigned char *) "connected", 9);
        yajl_gen_bool(g, ns->connected != 0);
    }

    yajl_gen_string(g, (const unsigned char *) "address", 7);
    yajl_gen_string(g, ns->address,
                    ngx_strnlen(ns->address, sizeof(ns->address)));
    yajl_gen_string(g, (const unsigned char *) "tls", 3);
    yajl_gen_bool(g, ns->tls != 0);
    yajl_gen_string(g, (const unsigned char *) "role", 4);
    yajl_gen_string(g, ns->role, ngx_strnlen(ns->role, sizeof(ns->role)));

    if (listed) {
        /* a cluster master's own figures (the worker's are above them) */
        yajl_gen_string(g, (const unsigned char *) "queued", 6);
        yajl_gen_integer(g, (long long) ns->queued);
        yajl_gen_string(g, (const unsigned char *) "in_flight", 9);
        yajl_gen_integer(g, (long long) ns->in_flight);
        yajl_gen_string(g, (const unsigned char *) "reconnects", 10);
        yajl_gen_integer(g, (long long) ns->reconnects);
        yajl_gen_string(g, (const unsigned char *) "last_error", 10);
        yajl_gen_string(g, ns->last_error,
                        ngx_strnlen(ns->last_error, sizeof(ns->last_error)));
    }
}


static ngx_int_t
ngx_ws_agent_status_json(ngx_http_request_t *r, ngx_buf_t *b)
{
    size_t                        len;
    u_char                        num[NGX_ATOMIC_T_LEN + 8];
    ngx_uint_t                    i, j, n, open;
    yajl_gen                      g;
    yajl_gen_status               gs;
    ngx_atomic_uint_t             count;
    const unsigned char          *buf;
    ngx_ws_agent_stats_t         *st;
    ngx_ws_agent_metric_t        *m;
    ngx_ws_agent_worker_stats_t  *w;

    st = ngx_ws_agent_stats;

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        return NGX_ERROR;
    }

#define ngx_ws_agent_key(s)                                                  \
    yajl_gen_string(g, (const unsigned char *) s, ngx_strlen(s))

#define ngx_ws_agent_num(fmt, v)                                             \
    yajl_gen_number(g, (const char *) num,                                   \
                    ngx_sprintf(num, fmt, v) - num)

    yajl_gen_map_open(g);

    open = 0;

    for (m = ngx_ws_agent_metrics; m->name; m++) {

        /* labelled counters of one name become one object */
        if (m->type && open) {
            yajl_gen_map_close(g);
            open = 0;
        }

        if (m->type) {
            ngx_ws_agent_key(m->name);

            if (m->label) {
                yajl_gen_map_open(g);
                open = 1;
            }
        }

        if (m->label) {
            ngx_ws_agent_key(m->value);
        }

        ngx_ws_agent_num("%uA", ngx_ws_agent_stats_value(m->counter));
    }

    if (open) {
        yajl_gen_map_close(g);
    }

    count = 0;

    for (i = 0; i < NGX_WS_AGENT_NBUCKETS; i++) {
        count += st->ready[i];
    }

    ngx_ws_agent_key("ready_ms");
    yajl_gen_map_open(g);
    ngx_ws_agent_key("count");
    ngx_ws_agent_num("%uA", count);
    ngx_ws_agent_key("sum");
    ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) st->ready_sum_ms);
    ngx_ws_agent_key("p50");
    ngx_ws_agent_num("%.1f", ngx_ws_agent_status_quantile(st->ready, count,
                                                           0.5));
    ngx_ws_agent_key("p99");
    ngx_ws_agent_num("%.1f", ngx_ws_agent_status_quantile(st->ready, count,
                                                           0.99));
    ngx_ws_agent_key("buckets");
    yajl_gen_map_open(g);

    for (i = 0; i < NGX_WS_AGENT_NBUCKETS; i++) {
        if (i < NGX_WS_AGENT_NBUCKETS - 1) {
            len = ngx_sprintf(num, "%M", ngx_ws_agent_bounds[i]) - num;
            yajl_gen_string(g, num, len);

        } else {
            ngx_ws_agent_key("+Inf");
        }

        ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) st->ready[i]);
    }

    yajl_gen_map_close(g);
    yajl_gen_map_close(g);

    ngx_ws_agent_key("redis_workers");
    yajl_gen_array_open(g);

    for (i = 0; i < NGX_WS_AGENT_MAX_WORKERS; i++) {
        w = &st->workers[i];

        if (!w->redis || !ngx_ws_agent_stats_alive(w)) {
            continue;
        }

        yajl_gen_map_open(g);
        ngx_ws_agent_key("pid");
        ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) w->pid);
        ngx_ws_agent_key("connected");
        yajl_gen_bool(g, w->node.connected != 0);
        ngx_ws_agent_key("queued");
        ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) w->queued);
        ngx_ws_agent_key("in_flight");
        ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) w->in_flight);
        ngx_ws_agent_key("reconnects");
        ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) w->node.reconnects);
        ngx_ws_agent_key("published");
        ngx_ws_agent_num("%uA", (ngx_atomic_uint_t) w->published);
        ngx_ws_agent_key("last_error");
        yajl_gen_string(g, w->last_error,
                        ngx_strnlen(w->last_error, NGX_WS_AGENT_ERROR_LEN));
        ngx_ws_agent_status_node(g, &w->node, 0);

        n = ngx_min(w->nnodes, NGX_WS_AGENT_MAX_NODES);

        if (n) {
            ngx_ws_agent_key("nodes");
            yajl_gen_array_open(g);

            for (j = 0; j < n; j++) {
                if (w->nodes[j].address[0] == '\0') {
                    continue;
                }

                yajl_gen_map_open(g);
                ngx_ws_agent_status_node(g, &w->nodes[j], 1);
                yajl_gen_map_close(g);
            }

            yajl_gen_array_close(g);
        }

        yajl_gen_map_close(g);
    }

    yajl_gen_array_close(g);
    gs = yajl_gen_map_close(g);

#undef ngx_ws_agent_key
#undef ngx_ws_agent_num

    if (gs != yajl_gen_status_ok
        || yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok
        || len + 1 > (size_t) (b->end - b->last))
    {
        yajl_gen_free(g);
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, buf, len);
    *b->last++ = '\n';

    yajl_gen_free(g);

    return NGX_OK;
}


/* a quantile from the histogram, interpolated inside its bucket */

static double
ngx_ws_agent_status_quantile(ngx_atomic_t *buckets,
    ngx_atomic_uint_t count, double q)
{
    double             rank, lo, hi;
    ngx_uint_t         i;
    ngx_atomic_uint_t  cum;

    if (count == 0) {
        return 0;
    }

    rank = q * (double) count;
    cum = 0;

    for (i = 0; i < NGX_WS_AGENT_NBUCKETS; i++) {

        if (buckets[i] && (double) (cum + buckets[i]) >= rank) {
            lo = i ? (double) ngx_ws_agent_bounds[i - 1] : 0;

            if (i == NGX_WS_AGENT_NBUCKETS - 1) {
                return lo;
            }

            hi = (double) ngx_ws_agent_bounds[i];

            return lo + (hi - lo) * (rank - (double) cum)
                        / (double) buckets[i];
        }

        cum += buckets[i];
    }

    return (double) ngx_ws_agent_bounds[NGX_WS_AGENT_NBUCKETS - 2];
}


static ngx_int_t
ngx_ws_agent_status_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, ngx_buf_t *b)
{
    ngx_int_t    rc;
    ngx_chain_t  out;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_length_n = b->last - b->pos;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (b->last == b->pos) {
        b->last_buf = 0;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * ms as seconds in the shortest decimal form (0.01, 1, 2.5): the form
 * Prometheus itself writes "le" in, so a bucket's series keeps its name
 * when Prometheus 3 normalizes them
 */

static u_char *
ngx_ws_agent_status_seconds(u_char *p, u_char *end, ngx_msec_t ms)
{
    size_t  n;
    u_char  frac[NGX_INT_T_LEN];

    p = ngx_slprintf(p, end, "%M", ms / 1000);

    if (ms % 1000 == 0) {
        return p;
    }

    n = ngx_sprintf(frac, "%03M", ms % 1000) - frac;

    while (frac[n - 1] == '0') {
        n--;
    }

    return ngx_slprintf(p, end, ".%*s", n, frac);
}
