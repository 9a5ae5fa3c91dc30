#!/bin/sh
# Prints the results table of one bench/run.sh run: per workload the median
# and spread (min..max over rounds) of stock nginx and nginx + module, the
# ratio of the medians, the target and whether it is met.
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
{ v[$2, $3] = ((($2, $3) in v) ? v[$2, $3] " " : "") $4; rounds[$1] = 1 }
END {
    printf "| %-34s | %-9s | %9s | %-15s | %9s | %-15s | %6s | %-7s | %-6s |\n", \
        "workload (A = stock, B = module)", "unit", "A median", "A min..max", \
        "B median", "B min..max", "B/A", "target", ""
    print "|------------------------------------|-----------|-----------|-----------------|-----------|-----------------|--------|---------|--------|"
    row("small 64 B, 50 conns x 8", "msg/s", "stock", "small_rate", "module", "small_rate", ">=0.95")
    row("small: round trip p50", "us", "stock", "small_p50", "module", "small_p50", "")
    row("small: round trip p99", "us", "stock", "small_p99", "module", "small_p99", "<=1.10")
    row("small: round trip p999", "us", "stock", "small_p999", "module", "small_p999", "")
    row("small: worker CPU per message", "us", "stock", "small_cpu", "module", "small_cpu", "")
    row("large 64 KiB, 10 conns x 2", "msg/s", "stock", "large_rate", "module", "large_rate", ">=0.98")
    row("large: round trip p50", "us", "stock", "large_p50", "module", "large_p50", "")
    row("large: round trip p99", "us", "stock", "large_p99", "module", "large_p99", "<=1.10")
    row("large: worker CPU per message", "us", "stock", "large_cpu", "module", "large_cpu", "")
    row("handshakes, 20 in parallel", "hs/s", "stock", "hs_rate", "module", "hs_rate", ">=0.90")
    row("handshake cycle p99", "us", "stock", "hs_p99", "module", "hs_p99", "")
    row("handshake: worker CPU per cycle", "us", "stock", "hs_cpu", "module", "hs_cpu", "")
    row("idle upgraded connection (RSS)", "KiB/conn", "stock", "idle_kib", "module", "idle_kib", "+1")
    row("idle, module without publish", "KiB/conn", "stock", "idle_kib", "module", "idle_nopub_kib", "+1")
    row("events relay, no publish (A/B)", "msg/s", "stock", "ev_rate", "module", "ev_rate", "")
    row("events relay: publish off/on (B)", "msg/s", "module", "ev_rate", "module", "evpub_rate", ">=0.9")
    row("events relayed: publish off/on (B)", "event/s", "module", "ev_events", "module", "evpub_events", "")
    row("events: worker CPU/msg off/on (B)", "us", "module", "ev_cpu", "module", "evpub_cpu", "")
    abs_row("events published (subscriber)", "event/s", "module", "pub_rate", ">=50000")
    abs_row("publish latency p50", "us", "module", "pub_p50", "")
    abs_row("publish latency p99", "us", "module", "pub_p99", "")
    abs_row("dropped: Redis queue overflow", "events", "module", "pub_overflow", "")
    print ""
    print "load generator ceiling, straight to the echo backend (no nginx):"
    stat("direct", "small_rate"); printf "  small %s msg/s (p99 ", fmt(MED)
    stat("direct", "small_p99"); printf "%s us); ", fmt(MED)
    stat("direct", "large_rate"); printf "large %s msg/s (p99 ", fmt(MED)
    stat("direct", "large_p99"); printf "%s us); ", fmt(MED)
    stat("direct", "hs_rate"); printf "handshakes %s/s; ", fmt(MED)
    stat("direct", "ev_rate"); printf "events workload %s msg/s, ", fmt(MED)
    stat("direct", "ev_events"); printf "%s event/s\n", fmt(MED)
}' "$1"
