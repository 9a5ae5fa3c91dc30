#!/bin/sh
# Prints the results table of one bench/run.sh run: per workload the median
# and spread (min..max over rounds) of stock nginx and nginx + module, the
# ratio of the medians, the target and whether it is met.  Rows of a
# workload that did not run (WORKLOADS=...) are left out.
#
#   bench/summary.sh bench/out/<time>/results.tsv [machine.txt]
set -eu

[ $# -ge 2 ] && cat "$2" && echo

awk -F'\t' '
function sortv(a, n,    i, j, t) {
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
}
function stat(k, m,    n, a, i) {
    if (!(k SUBSEP m in v)) { MED = ""; SPREAD = "-"; return }
    n = split(v[k, m], a, " ")
    for (i = 1; i <= n; i++) a[i] += 0
    sortv(a, n)
    MED = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    SPREAD = (n > 1) ? fmt(a[1]) ".." fmt(a[n]) : ""
}
function fmt(x) {
    if (x == "") return "-"
    return (x >= 1000) ? sprintf("%.0f", x) : sprintf("%.3g", x)
}
# name, unit, kind and metric of A, of B, target: ">=R", "<=R" or "+D" (B-A)
function row(name, unit, ka, ma, kb, mb, target,    a, b, sa, sb, ratio, ok) {
    stat(ka, ma); a = MED; sa = SPREAD
    stat(kb, mb); b = MED; sb = SPREAD
    ratio = (a != "" && b != "" && a > 0) ? sprintf("%.3f", b / a) : "-"
    ok = ""
    if (target ~ /^>=/ && ratio != "-") ok = (b / a >= substr(target, 3) + 0) ? "met" : "MISSED"
    if (target ~ /^<=/ && ratio != "-") ok = (b / a <= substr(target, 3) + 0) ? "met" : "MISSED"
    if (target ~ /^\+/ && a != "" && b != "") {
        ratio = sprintf("%+.2f", b - a)
        ok = (b - a <= substr(target, 2) + 0) ? "met" : "MISSED"
    }
    printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
        name, unit, fmt(a), sa, fmt(b), sb, ratio, target, ok
}
function abs_row(name, unit, k, m, target,    b, ok) {
    stat(k, m); b = MED
    ok = ""
    if (target ~ /^>=/ && b != "") ok = (b >= substr(target, 3) + 0) ? "met" : "MISSED"
    printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
        name, unit, "", "", fmt(b), SPREAD, "", target, ok
}
# one value per row, A or B column; target ">=95%": at least 95 % of the
# pace (PACE_RATE); target ">=50k*": the pace is at least 50 000 and the
# value at least 99 % of it (a window holds +-1 ms of the stream at its
# edges, and the paced backend never exceeds its rate)
function pace_row(name, unit, k, m, target,    b, ok, t) {
    stat(k, m); b = MED
    ok = ""
    if (b != "" && target == ">=95%") ok = (b >= 0.95 * PACE) ? "met" : "MISSED"
    if (b != "" && target ~ /^>=[0-9]+k\*$/) {
        t = substr(target, 3) * 1000
        ok = (PACE >= t && b >= 0.99 * PACE) ? "met" : "MISSED"
    }
    if (k == "stock")
        printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
            name, unit, fmt(b), SPREAD, "", "", "", target, ok
    else
        printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
            name, unit, "", "", fmt(b), SPREAD, "", target, ok
}
# the ratio B/A taken round by round (A and B of a round ran back to
# back), then its median and spread: steadier than the ratio of medians
# when whole rounds run faster or slower than others
function paired_row(name, ka, ma, kb, mb, target,    r, n, a, med, ok) {
    n = 0
    for (r in rounds)
        if ((ka, ma, r) in rv && (kb, mb, r) in rv && rv[ka, ma, r] > 0)
            a[++n] = rv[kb, mb, r] / rv[ka, ma, r]
    if (n == 0) return
    sortv(a, n)
    med = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    ok = ""
    if (target ~ /^>=/) ok = (med >= substr(target, 3) + 0) ? "met" : "MISSED"
    printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
        name, "ratio", "", "", "", (n > 1) ? sprintf("%.3f..%.3f", a[1], a[n]) : "", \
        sprintf("%.3f", med), target, ok
}
function has(k, m) { return (k SUBSEP m) in v }
{ v[$2, $3] = ((($2, $3) in v) ? v[$2, $3] " " : "") $4; rounds[$1] = 1
  rv[$2, $3, $1] = $4 }
# the cases of the subscribe workload (sub<N>-<C>-<R>_...), in their order
$2 == "stock" || $2 == "module" { AB = 1 }
$3 ~ /^sub[0-9]+-[0-9]+-[0-9]+_rate$/ {
    t = substr($3, 1, length($3) - 5)
    if (!(t in subcase)) { subcase[t] = ++nsub; subtag[nsub] = t }
}
END {
    printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
        (AB || !nsub) ? "workload (A = stock, B = module)" \
                      : "workload (A = Redis, B = SSE)", \
        "unit", "A median", "A min..max", \
        "B median", "B min..max", "B/A", "target", ""
    print "|------------------------------------|-----------|-----------|-----------------|-----------|-----------------|--------|---------|--------|"
    stat("direct", "pace_rate"); PACE = MED + 0
    if (has("stock", "small_rate") || has("module", "small_rate")) {
    row("small 64 B, 50 conns x 8", "msg/s", "stock", "small_rate", "module", "small_rate", ">=0.95")
    paired_row("small: B/A round by round", "stock", "small_rate", "module", "small_rate", ">=0.95")
    row("small: round trip p50", "us", "stock", "small_p50", "module", "small_p50", "")
    row("small: round trip p99", "us", "stock", "small_p99", "module", "small_p99", "<=1.10")
    row("small: round trip p999", "us", "stock", "small_p999", "module", "small_p999", "")
    row("small: worker CPU per message", "us", "stock", "small_cpu", "module", "small_cpu", "")
    }
    if (has("stock", "large_rate") || has("module", "large_rate")) {
    row("large 64 KiB, 10 conns x 2", "msg/s", "stock", "large_rate", "module", "large_rate", ">=0.98")
    paired_row("large: B/A round by round", "stock", "large_rate", "module", "large_rate", ">=0.98")
    row("large: round trip p50", "us", "stock", "large_p50", "module", "large_p50", "")
    row("large: round trip p99", "us", "stock", "large_p99", "module", "large_p99", "<=1.10")
    row("large: worker CPU per message", "us", "stock", "large_cpu", "module", "large_cpu", "")
    }
    if (has("stock", "hs_rate") || has("module", "hs_rate")) {
    row("handshakes, 20 in parallel", "hs/s", "stock", "hs_rate", "module", "hs_rate", ">=0.90")
    paired_row("handshakes: B/A round by round", "stock", "hs_rate", "module", "hs_rate", ">=0.90")
    row("handshake cycle p99", "us", "stock", "hs_p99", "module", "hs_p99", "")
    row("handshake: worker CPU per cycle", "us", "stock", "hs_cpu", "module", "hs_cpu", "")
    }
    if (has("stock", "idle_kib") || has("module", "idle_kib")) {
    row("idle upgraded connection (RSS)", "KiB/conn", "stock", "idle_kib", "module", "idle_kib", "+1")
    row("idle, module without publish", "KiB/conn", "stock", "idle_kib", "module", "idle_nopub_kib", "+1")
    }
    if (has("stock", "ev_rate") || has("module", "ev_rate")) {
    row("events relay, no publish (A/B)", "msg/s", "stock", "ev_rate", "module", "ev_rate", "")
    row("events relay: publish off/on (B)", "msg/s", "module", "ev_rate", "module", "evpub_rate", ">=0.9")
    row("events relayed: publish off/on (B)", "event/s", "module", "ev_events", "module", "evpub_events", "")
    row("events: worker CPU/msg off/on (B)", "us", "module", "ev_cpu", "module", "evpub_cpu", "")
    abs_row("events published (subscriber)", "event/s", "module", "pub_rate", ">=50000")
    abs_row("publish latency p50", "us", "module", "pub_p50", "")
    abs_row("publish latency p99", "us", "module", "pub_p99", "")
    abs_row("dropped: Redis queue overflow", "events", "module", "pub_overflow", "")
    }
    if (has("stock", "paced_rate") || has("module", "paced_rate")) {
    row("paced: relay, stream no pub (A/B)", "msg/s", "stock", "paced_rate", "module", "paced_rate", "")
    row("paced: relay, publish off/on (B)", "msg/s", "module", "paced_rate", "module", "pacedpub_rate", ">=0.9")
    paired_row("paced: off/on round by round (B)", "module", "paced_rate", "module", "pacedpub_rate", ">=0.9")
    paired_row("paced: A/B no pub round by round", "stock", "paced_rate", "module", "paced_rate", "")
    row("paced: relay p99 (A/B no pub)", "us", "stock", "paced_p99", "module", "paced_p99", "")
    row("paced: relay p99 off/on (B)", "us", "module", "paced_p99", "module", "pacedpub_p99", "")
    row("paced: worker CPU (A/B no pub)", "% core", "stock", "paced_cpu_pct", "module", "paced_cpu_pct", "")
    row("paced: worker CPU off/on (B)", "% core", "module", "paced_cpu_pct", "module", "pacedpub_cpu_pct", "")
    row("paced: machine busy (A/B no pub)", "% 2 cores", "stock", "paced_busy_pct", "module", "paced_busy_pct", "")
    row("paced: machine busy off/on (B)", "% 2 cores", "module", "paced_busy_pct", "module", "pacedpub_busy_pct", "")
    pace_row("paced: stream received, A", "event/s", "stock", "paced_sink", ">=95%")
    pace_row("paced: stream received, B no pub", "event/s", "module", "paced_sink", ">=95%")
    pace_row("paced: stream received, B publish", "event/s", "module", "pacedpub_sink", ">=95%")
    row("paced: stream latency p99 (A/B)", "us", "stock", "paced_sink_p99", "module", "paced_sink_p99", "")
    row("paced: stream lat. p99 off/on (B)", "us", "module", "paced_sink_p99", "module", "pacedpub_sink_p99", "")
    pace_row("paced: published (subscriber)", "event/s", "module", "pacedpub_pub_rate", ">=50k*")
    pace_row("paced: published (status counter)", "event/s", "module", "pacedpub_pub_ctr", ">=50k*")
    abs_row("paced: publish latency p50", "us", "module", "pacedpub_pub_p50", "")
    abs_row("paced: publish latency p99", "us", "module", "pacedpub_pub_p99", "")
    abs_row("paced: dropped, queue overflow", "events", "module", "pacedpub_overflow", "")
    abs_row("paced: redis-server CPU", "% core", "module", "pacedpub_redis_cpu_pct", "")
    }
    if (has("single", "clev_pub_redis") || has("cluster", "clev_pub_redis")) {
    row("cluster: published, Redis counts", "event/s", "single", "clev_pub_redis", "cluster", "clev_pub_redis", "")
    paired_row("cluster: published, round by round", "single", "clev_pub_redis", "cluster", "clev_pub_redis", "")
    row("cluster: published, status counter", "event/s", "single", "clev_pub_ctr", "cluster", "clev_pub_ctr", "")
    row("cluster: relay (events workload)", "msg/s", "single", "clev_rate", "cluster", "clev_rate", "")
    row("cluster: events relayed", "event/s", "single", "clev_events", "cluster", "clev_events", "")
    row("cluster: dropped, queue overflow", "event/s", "single", "clev_overflow", "cluster", "clev_overflow", "")
    row("cluster: worker CPU", "% core", "single", "clev_cpu_pct", "cluster", "clev_cpu_pct", "")
    row("cluster: worker CPU per published", "us", "single", "clev_cpu_per_event", "cluster", "clev_cpu_per_event", "")
    row("cluster: redis-server CPU, summed", "% core", "single", "clev_redis_cpu_pct", "cluster", "clev_redis_cpu_pct", "")
    row("cluster: machine busy", "% 2 cores", "single", "clev_busy_pct", "cluster", "clev_busy_pct", "")
    CLUSTER = 1
    }
    if (has("single", "clpace_pub_redis") || has("cluster", "clpace_pub_redis")) {
    row("cl-paced: published, Redis", "event/s", "single", "clpace_pub_redis", "cluster", "clpace_pub_redis", "")
    row("cl-paced: published, counter", "event/s", "single", "clpace_pub_ctr", "cluster", "clpace_pub_ctr", "")
    row("cl-paced: stream received", "event/s", "single", "clpace_rate", "cluster", "clpace_rate", "")
    row("cl-paced: dropped, overflow", "event/s", "single", "clpace_overflow", "cluster", "clpace_overflow", "")
    row("cl-paced: worker CPU", "% core", "single", "clpace_cpu_pct", "cluster", "clpace_cpu_pct", "")
    paired_row("cl-paced: worker CPU by round", "single", "clpace_cpu_pct", "cluster", "clpace_cpu_pct", "")
    row("cl-paced: worker CPU per event", "us", "single", "clpace_cpu_per_event", "cluster", "clpace_cpu_per_event", "")
    row("cl-paced: redis-server CPU sum", "% core", "single", "clpace_redis_cpu_pct", "cluster", "clpace_redis_cpu_pct", "")
    row("cl-paced: machine busy", "% 2 cores", "single", "clpace_busy_pct", "cluster", "clpace_busy_pct", "")
    CLUSTER = 1
    }
    for (i = 1; i <= nsub; i++) {
        t = subtag[i]
        split(substr(t, 4), q, "-")
        h = sprintf("sub %s/%sch@%s", q[1], q[2], q[3])
        row(h ": delivered", "event/s", "redis", t "_rate", "sse", t "_rate", "")
        row(h ": latency p50", "us", "redis", t "_p50", "sse", t "_p50", "")
        row(h ": latency p99", "us", "redis", t "_p99", "sse", t "_p99", "")
        row(h ": fan-out us/ev", "us", "redis", t "_fan_us", "sse", t "_fan_us", "")
        row(h ": worker CPU", "% core", "redis", t "_cpu_pct", "sse", t "_cpu_pct", "")
        row(h ": redis CPU", "% core", "redis", t "_redis_cpu_pct", "sse", t "_redis_cpu_pct", "")
        row(h ": client CPU", "% core", "redis", t "_client_cpu_pct", "sse", t "_client_cpu_pct", "")
        row(h ": lost", "events", "redis", t "_lost", "sse", t "_lost", "")
        SUB = 1
    }
    print ""
    if (SUB) {
        print "subscribe rows (\"sub N/Cch@R\": N subscribers of C channels, each channel"
        print "published at R events/s by its own /st-stream connection, with ws_agent_stream;"
        print "offered = N x R deliveries/s): A = sseload --mode redis, N SUBSCRIBEs straight"
        print "to redis-server; B = sseload --mode sse, N GET /sub?user= of ws_agent_subscribe"
        print "(one SUBSCRIBE per channel in the worker).  Latency: backend write (ts_us) ->"
        print "subscriber read.  Fan-out CPU/event: the CPU of redis-server (A) or of the"
        print "nginx worker (B) per delivered event, each with its share of the publishing;"
        print "worker, redis, client CPU: the nginx worker, redis-server, sseload; lost:"
        print "events missing in the seq of a subscriber, subscribers closed, gaps."
        print ""
    }
    if (CLUSTER) {
        print "cluster rows: A = the module publishing into ONE redis-server (PUBLISH),"
        print "B = the same module into a Redis Cluster of 3 masters (SPUBLISH to the"
        print "slot owner of each channel); both: the events workload on /ev (closed loop),"
        print "one worker, no subscriber; published = PUBLISH + SPUBLISH calls in INFO"
        print "commandstats, summed over the masters, per second of the window."
        print "cl-paced: the same, the paced stream (PACE_RATE events/s, PACE_CONNS"
        print "sink connections on /st) published instead: equal rates, the CPU rows"
        print "compare the costs of one rate."
        print ""
    }
    line = ""
    if (has("direct", "small_rate")) {
        stat("direct", "small_rate"); line = line "; small " fmt(MED) " msg/s (p99 "
        stat("direct", "small_p99"); line = line fmt(MED) " us)"
    }
    if (has("direct", "large_rate")) {
        stat("direct", "large_rate"); line = line "; large " fmt(MED) " msg/s (p99 "
        stat("direct", "large_p99"); line = line fmt(MED) " us)"
    }
    if (has("direct", "hs_rate")) {
        stat("direct", "hs_rate"); line = line "; handshakes " fmt(MED) "/s"
    }
    if (has("direct", "ev_rate")) {
        stat("direct", "ev_rate"); line = line "; events workload " fmt(MED) " msg/s, "
        stat("direct", "ev_events"); line = line fmt(MED) " event/s"
    }
    if (line != "" || has("direct", "sink_rate"))
        print "load generator ceiling, straight to the echo backend (no nginx):"
    if (line != "") print "  " substr(line, 3)
    if (has("direct", "sink_rate")) {
        stat("direct", "sink_rate"); printf "  paced stream (PACE_RATE %s event/s): sink received %s event/s", fmt(PACE), fmt(MED)
        stat("direct", "sink_p99"); printf " (latency p99 %s us)\n", fmt(MED)
        print ""
        print "paced: the small echo relay (64 B, 50 conns x 8, /ws) while a sink receives"
        print "PACE_RATE events/s through the same worker: A = stock, B no pub = ws_agent"
        print "without ws_agent_publish, B publish = with it (redsub subscribed).  CPU and"
        print "busy shares are over the measured window; \"% 2 cores\": 100 = both busy."
        print ">=50k* met: PACE_RATE >= 50000 and >= 99 % of it published (a window holds"
        print "  +-1 ms of the stream at its edges); >=95%: received >= 0.95 PACE_RATE."
    }
}' "$1"
