#!/bin/bash
# The benchmark, one command: builds everything, then in ONE run alternates
# stock nginx (A: /usr/sbin/nginx, no load_module, no ws_agent directives)
# and nginx + module (B: the same binary and config plus load_module and the
# ws_agent directives), A B A B..., one worker, and prints medians, spread
# (min..max over rounds) and the ratio B/A for each workload.
#
#   bench/run.sh                       3 rounds, about 6 minutes
#   ROUNDS=5 DURATION=8 bench/run.sh   more rounds, longer runs
#   WORKLOADS=paced bench/run.sh       only the paced-publish workload
#   WORKLOADS=cluster bench/run.sh     one Redis node vs a 3-master Redis
#                                      Cluster, events/s from one worker
#   WORKLOADS=subscribe bench/run.sh   SSE subscribers of ws_agent_subscribe
#                                      vs the same number subscribed to
#                                      Redis directly, events/s and latency
#   NO_BUILD=1 MODULE=/tmp/m.so bench/run.sh   no bootstrap/build; that .so
#
# Knobs (environment): ROUNDS (3), DURATION (5 s measured per run), WARMUP
# (1 s), IDLE_CONNS (5000), EVENTS (events per message in the publish
# workload, 8), EV_CONNS (20), PACE_RATE (events/s of the paced stream, all
# connections together, 50000), PACE_CONNS (10 sink connections),
# WORKLOADS (any of "idle small large hs events paced cluster subscribe";
# all but cluster and subscribe by default), CLUSTER_NODES (masters of the
# cluster workload's Redis Cluster, 3), SUB_CASES (the subscribe workload's
# cases, N:C:R = N subscribers of C channels, each channel published at R
# events/s; see below), SUB_RAMP (30 s at most to connect them),
# NO_BUILD (1: skip scripts/bootstrap.sh, the packages and
# scripts/build.sh; the bench programs are still made), MODULE (the .so,
# build/ngx_ws_agent_module.so).  Results: bench/out/<time>/ (results.tsv,
# summary.txt, nginx logs).  Everything is bounded: each load run lasts
# WARMUP + DURATION (+ at most 4 s to drain and close).
# PIN=1 (on 2+ CPUs): the nginx worker runs on CPU 0
# (worker_cpu_affinity), this script and everything it starts (load
# generator, backends, redis-server, subscriber) on the other CPUs.  Off by
# default: on this 2-core machine the load side then saturates its one core
# (the worker idles at 55-80 %), so the ratios measure the load generator,
# not nginx; it is for machines with cores to spare for the load.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
IDLE_CONNS=${IDLE_CONNS:-5000}
EVENTS=${EVENTS:-8}
EV_CONNS=${EV_CONNS:-20}
PACE_RATE=${PACE_RATE:-50000}
PACE_CONNS=${PACE_CONNS:-10}
WORKLOADS=${WORKLOADS:-idle small large hs events paced}
CLUSTER_NODES=${CLUSTER_NODES:-3}
SUB_CASES=${SUB_CASES:-1:1:5000 100:1:500 1000:1:50 1000:50:50 100:1:2000 1000:1:200}
SUB_RAMP=${SUB_RAMP:-30}
NGINX=${NGINX:-/usr/sbin/nginx}
PIN=${PIN:-0}
ncpu=$(nproc)
affinity=
if [ "$PIN" = 1 ] && [ "$ncpu" -ge 2 ] && command -v taskset > /dev/null; then
    taskset -pc "1-$((ncpu - 1))" $$ > /dev/null
    affinity="worker_cpu_affinity 1;"
fi
warmup_us=$(awk -v s="$WARMUP" 'BEGIN { printf "%d", s * 1e6 }')
duration_us=$(awk -v s="$DURATION" 'BEGIN { printf "%d", s * 1e6 }')

bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
. "$bench/lib.sh"
module=${MODULE:-"$repo/build/ngx_ws_agent_module.so"}
out="$bench/out/$(date +%Y%m%d-%H%M%S)"
results="$out/results.tsv"
hz=$(getconf CLK_TCK)

wants() {       # is workload $1 in WORKLOADS?
    case " $WORKLOADS " in *" $1 "*) return 0 ;; esac
    return 1
}

# --- build ------------------------------------------------------------------

if [ -z "${NO_BUILD:-}" ]; then
    "$repo/scripts/bootstrap.sh"
    if [ -f "$bench/PACKAGES" ]; then
        extra=$(grep -v '^#' "$bench/PACKAGES" | tr '\n' ' ')
        for p in $extra; do
            dpkg-query -W -f '${Status}' "$p" 2>/dev/null \
                | grep -q "install ok installed" \
                || { apt-get update -qq; apt-get install -y -qq "$p" >/dev/null; }
        done
    fi
    "$repo/scripts/build.sh"
fi
[ -f "$module" ] || { echo "run.sh: no module $module" >&2; exit 1; }
make -s -C "$bench"
if [ -n "${PERF:-}" ] && ! command -v perf > /dev/null; then
    echo "run.sh: PERF=1 needs perf: apt-get install linux-perf" >&2
    exit 1
fi

mkdir -p "$out"
: > "$results"

# --- processes this script starts, ended by PID only ------------------------

pids=()
nginx_pid=

cleanup() {
    local p
    stop_pid "${perf_pid:-}" INT
    for p in ${sub_pids:-} "$nginx_pid" "${pids[@]}"; do
        stop_pid "$p"
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bport=$(free_port)
eport=$(free_port)
sport=$(free_port)
rport=$(free_port)
nport=$(free_port)
# the subscribe workload's stream backend (one per run, its rate the case's)
subport=
if wants subscribe; then
    subport=$(free_port)
fi

start_echo_backends
# the paced stream: every connection to it gets PACE_RATE / PACE_CONNS
# events/s, whatever it sends; the sink opens PACE_CONNS of them
stream_rate=$(awk -v r="$PACE_RATE" -v c="$PACE_CONNS" \
              'BEGIN { printf "%.3f", r / c }')
"$bench/echo_backend" --port "$sport" --stream-rate "$stream_rate" \
    > "$out/backend-stream.log" 2>&1 &
stream_pid=$!
pids+=($!)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$out/redis.log" &
redis_pid=$!
pids+=($!)
wait_port "$bport"
wait_port "$eport"
wait_port "$sport"
wait_port "$rport"

# --- the cluster workload's Redis Cluster (bench/lib.sh) --------------------

if wants cluster; then
    start_cluster
fi

# --- nginx ------------------------------------------------------------------

# $1 = stock | module (bench/lib.sh)
write_conf() {
    bench_conf "$1" "$out/$1" "$affinity
worker_rlimit_nofile 20000;
master_process on;" 16384 4096 ""
}

start_nginx() {
    local kind=$1 dir="$out/$1"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" 2>> "$dir/logs/stderr.log" &
    nginx_pid=$!
    wait_port "$nport"
    worker_pid=
    for _ in $(seq 1 100); do
        worker_pid=$(pgrep -P "$nginx_pid" | head -1 || true)
        [ -n "$worker_pid" ] && break
        sleep 0.05
    done
    [ -n "$worker_pid" ] || { echo "run.sh: no nginx worker" >&2; exit 1; }
}

stop_nginx() {
    kill -TERM "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null || true
    nginx_pid=
}

# PERF=1: round 1 of each workload runs under perf record (cpu-clock, the
# only event this VM has) on the nginx worker; reports go to $out/perf-*.txt.
# Profiled runs are slower: take numbers from a run without PERF.
perf_pid=
perf_start() {  # round kind name
    [ -n "${PERF:-}" ] && [ "$1" = 1 ] || return 0
    perf record -q -e cpu-clock -F 2000 -g -p "$worker_pid" \
        -o "$out/perf-$2-$3.data" > /dev/null 2>&1 &
    perf_pid=$!
    sleep 0.3
}

perf_stop() {   # kind name
    [ -n "$perf_pid" ] || return 0
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf_pid=
    perf report -i "$out/perf-$1-$2.data" --stdio --no-children \
        --sort dso,sym -g none --percent-limit 0.7 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -45 > "$out/perf-$1-$2.txt"
    perf report -i "$out/perf-$1-$2.data" --stdio --no-children \
        --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' \
        | head -12 >> "$out/perf-$1-$2.txt"
}

cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# key=value line -> value of $2
field() {
    echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'
}

record() {      # round kind metric value
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$results"
}

# one echo run through nginx; records rate, p50, p99, p999, cpu us/msg
echo_run() {    # round kind name port path conns size window
    local r=$1 kind=$2 name=$3 port=$4 path=$5 line t0 t1 all
    perf_start "$r" "$kind" "$name"
    t0=$(cpu_ticks "$worker_pid")
    line=$("$bench/wsload" --mode echo --port "$port" --path "$path" \
           --conns "$6" --size "$7" --window "$8" \
           --warmup "$WARMUP" --duration "$DURATION")
    t1=$(cpu_ticks "$worker_pid")
    perf_stop "$kind" "$name"
    echo "  $kind $name: $line" >> "$out/log.txt"
    all=$(field "$line" msgs_all)
    record "$r" "$kind" "${name}_rate" "$(field "$line" rate)"
    record "$r" "$kind" "${name}_p50" "$(field "$line" p50_us)"
    record "$r" "$kind" "${name}_p99" "$(field "$line" p99_us)"
    record "$r" "$kind" "${name}_p999" "$(field "$line" p999_us)"
    record "$r" "$kind" "${name}_cpu" \
        "$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$all" \
           'BEGIN { printf "%.2f", n ? d * 1e6 / hz / n : 0 }')"
    [ "$name" = ev ] || [ "$name" = evpub ] && \
        record "$r" "$kind" "${name}_events" "$(field "$line" events_rate)"
    [ "$(field "$line" errors)" = 0 ] || \
        echo "  warning: $kind $name: errors=$(field "$line" errors)" >&2
}

handshake_run() {
    local r=$1 kind=$2 line t0 t1
    perf_start "$r" "$kind" hs
    t0=$(cpu_ticks "$worker_pid")
    line=$("$bench/wsload" --mode handshake --port "$nport" --path /ws \
           --conns 20 --warmup "$WARMUP" --duration "$DURATION")
    t1=$(cpu_ticks "$worker_pid")
    perf_stop "$kind" hs
    echo "  $kind handshake: $line" >> "$out/log.txt"
    record "$r" "$kind" hs_rate "$(field "$line" rate)"
    record "$r" "$kind" hs_p99 "$(field "$line" p99_us)"
    record "$r" "$kind" hs_cpu \
        "$(awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$(field "$line" msgs_all)" \
           'BEGIN { printf "%.2f", n ? d * 1e6 / hz / n : 0 }')"
}

# worker RSS delta over IDLE_CONNS upgraded, acked, idle connections
idle_run() {     # round kind path metric
    local r=$1 kind=$2 path=$3 before after line lp f="$out/idle.out"
    "$bench/wsload" --mode handshake --port "$nport" --path "$path" --conns 1 \
        --warmup 0 --duration 0.2 > /dev/null
    sleep 0.2
    before=$(rss_kb "$worker_pid")
    "$bench/wsload" --mode idle --port "$nport" --path "$path" \
        --conns "$IDLE_CONNS" --warmup 0 --duration 30 --hold 60 > "$f" &
    lp=$!
    line=
    for _ in $(seq 1 400); do            # the ramp is bounded at 30 s
        line=$(grep '^idle_ready' "$f" || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    sleep 0.5
    after=$(rss_kb "$worker_pid")
    kill -TERM "$lp"
    wait "$lp" || true
    echo "  $kind idle $path: $line rss_before=$before rss_after=$after" \
        >> "$out/log.txt"
    [ "$(field "$line" ok)" = 1 ] || echo "  warning: idle: $line" >&2
    record "$r" "$kind" "$4" \
        "$(awk -v a="$after" -v b="$before" -v n="$(field "$line" conns)" \
           'BEGIN { printf "%.3f", n ? (a - b) / n : 0 }')"
}

metric() {      # prometheus counter value from the module's status
    curl -s "http://127.0.0.1:$nport/ws-agent/metrics" \
        | awk -v k="$1" 'index($0, k) == 1 { print $2 }' | head -1
}

events_run() {
    local r=$1 kind=$2 line sub p0 p1 d0 d1 sp
    echo_run "$r" "$kind" ev "$nport" /ev-nopub "$EV_CONNS" 64 4
    [ "$kind" = module ] || return 0

    p0=$(metric ngx_ws_agent_events_published_total)
    d0=$(metric 'ngx_ws_agent_events_dropped_total{reason="queue_overflow"}')
    "$bench/redsub" --port "$rport" --warmup "$WARMUP" \
        --duration "$DURATION" > "$out/redsub.out" &
    sp=$!
    sleep 0.2
    echo_run "$r" "$kind" evpub "$nport" /ev "$EV_CONNS" 64 4
    wait "$sp" || true
    sub=$(tail -1 "$out/redsub.out")
    p1=$(metric ngx_ws_agent_events_published_total)
    d1=$(metric 'ngx_ws_agent_events_dropped_total{reason="queue_overflow"}')
    echo "  $kind redsub: $sub published=$((p1 - p0)) overflow=$((d1 - d0))" \
        >> "$out/log.txt"
    record "$r" "$kind" pub_rate "$(field "$sub" rate)"
    record "$r" "$kind" pub_p50 "$(field "$sub" p50_us)"
    record "$r" "$kind" pub_p99 "$(field "$sub" p99_us)"
    record "$r" "$kind" pub_overflow "$((d1 - d0))"
}

# Fork-free snapshots for the paced window: on a saturated 2-core machine
# every fork (date, awk, curl) can take 100 ms, so these use only bash
# builtins and set globals (no $(...) subshell): EPOCHREALTIME, /proc read
# with `read`, and the module's counters over bash's /dev/tcp.

now_us() { NOW_US=${EPOCHREALTIME/./}; }

sleep_until_us() {      # sleep until the EPOCHREALTIME microsecond $1
    local d
    now_us
    d=$(($1 - NOW_US))
    ((d > 0)) || return 0
    printf -v d '%d.%06d' $((d / 1000000)) $((d % 1000000))
    sleep "$d"
}

snap_ticks() {          # utime + stime of pid $1 -> TICKS
    local a
    read -ra a < "/proc/$1/stat"
    TICKS=$((a[13] + a[14]))
}

snap_machine() {        # busy (all but idle, iowait) and all jiffies -> M_BUSY M_ALL
    local a i t=0
    read -ra a < /proc/stat
    for ((i = 1; i < ${#a[@]}; i++)); do t=$((t + a[i])); done
    M_ALL=$t
    M_BUSY=$((t - a[4] - a[5]))
}

# the module's counters (published seen queued overflow) -> COUNTERS, with
# the time of the request's middle -> COUNTERS_US
snap_counters() {
    local fd line t0 p=0 s=0 q=0 o=0
    now_us; t0=$NOW_US
    if exec {fd}<>"/dev/tcp/127.0.0.1/$nport"; then
        printf 'GET /ws-agent/metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&"$fd"
        while IFS= read -r -u "$fd" line; do
            line=${line%$'\r'}
            case $line in
            "ngx_ws_agent_events_published_total "*) p=${line##* } ;;
            "ngx_ws_agent_events_seen_total "*) s=${line##* } ;;
            "ngx_ws_agent_events_queued_total "*) q=${line##* } ;;
            'ngx_ws_agent_events_dropped_total{reason="queue_overflow"} '*)
                o=${line##* } ;;
            esac
        done
        exec {fd}>&-
    fi
    now_us
    COUNTERS="$p $s $q $o"
    COUNTERS_US=$(((t0 + NOW_US) / 2))
    COUNTERS_MS=$(((NOW_US - t0) / 1000))
}

# paced publish: the small echo relay (64 B, 50 conns x 8, on /ws) while a
# sink on $path receives the paced stream (PACE_RATE events/s in all)
# through the same worker; with publish=1 redsub counts what reaches Redis.
# Records the relay's rate and p99, the sink's rate and stream latency, the
# worker's CPU (% of one core) and the machine's busy share over the
# measured window; with publish: the subscriber's rate and latency and the
# status counters' deltas over the window.
paced_run() {   # round kind name path publish
    local r=$1 kind=$2 name=$3 path=$4 pub=$5 sub= sp= lp sinkp line sink
    local t0 t1 c0 c1 mb0 mb1 ma0 ma1 rc0=0 rc1=0 k0= k1= q0= q1= qm0= qm1=
    local launched secs qsecs low
    if [ "$pub" = 1 ]; then
        "$bench/redsub" --port "$rport" --warmup "$WARMUP" \
            --duration "$DURATION" > "$out/redsub-paced.out" &
        sp=$!
        for _ in $(seq 1 40); do
            grep -q subscribed "$out/redsub-paced.out" && break
            sleep 0.05
        done
    fi
    perf_start "$r" "$kind" "$name"
    now_us; launched=$NOW_US
    "$bench/wsload" --mode sink --port "$nport" --path "$path" \
        --conns "$PACE_CONNS" --warmup "$WARMUP" --duration "$DURATION" \
        > "$out/sink.out" &
    sinkp=$!
    "$bench/wsload" --mode echo --port "$nport" --path /ws --conns 50 \
        --size 64 --window 8 --warmup "$WARMUP" --duration "$DURATION" \
        > "$out/relay.out" &
    lp=$!

    # the script's window lies inside the loads' measured window (launch +
    # WARMUP .. + DURATION): 0.05 s after its start, 0.2 s before its end
    sleep_until_us $((launched + warmup_us + 50000))
    now_us; t0=$NOW_US
    snap_ticks "$worker_pid"; c0=$TICKS
    snap_machine; mb0=$M_BUSY; ma0=$M_ALL
    if [ "$pub" = 1 ]; then
        snap_ticks "$redis_pid"; rc0=$TICKS
        snap_counters; k0=$COUNTERS; q0=$COUNTERS_US; qm0=$COUNTERS_MS
    fi
    sleep_until_us $((launched + warmup_us + duration_us - 200000))
    now_us; t1=$NOW_US
    snap_ticks "$worker_pid"; c1=$TICKS
    snap_machine; mb1=$M_BUSY; ma1=$M_ALL
    if [ "$pub" = 1 ]; then
        snap_ticks "$redis_pid"; rc1=$TICKS
        snap_counters; k1=$COUNTERS; q1=$COUNTERS_US; qm1=$COUNTERS_MS
    fi

    wait "$lp" || true
    wait "$sinkp" || true
    perf_stop "$kind" "$name"
    kill -USR1 "$stream_pid"    # its running totals, "late" among them
    sleep 0.05
    line=$(tail -1 "$out/relay.out")
    sink=$(tail -1 "$out/sink.out")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    echo "  $kind $name relay: $line" >> "$out/log.txt"
    echo "  $kind $name sink: $sink" >> "$out/log.txt"
    echo "  $kind $name backend $(tail -1 "$out/backend-stream.log")" >> "$out/log.txt"
    echo "  $kind $name window: secs=$secs (from launch +$(((t0 - launched) / 1000)) ms) worker_ticks=$((c1 - c0)) machine_busy=$((mb1 - mb0))/$((ma1 - ma0))" \
        >> "$out/log.txt"
    record "$r" "$kind" "${name}_rate" "$(field "$line" rate)"
    record "$r" "$kind" "${name}_p99" "$(field "$line" p99_us)"
    record "$r" "$kind" "${name}_sink" "$(field "$sink" rate)"
    record "$r" "$kind" "${name}_sink_p99" "$(field "$sink" p99_us)"
    record "$r" "$kind" "${name}_cpu_pct" \
        "$(awk -v d=$((c1 - c0)) -v hz="$hz" -v s="$secs" \
           'BEGIN { printf "%.1f", d * 100 / hz / s }')"
    record "$r" "$kind" "${name}_busy_pct" \
        "$(awk -v b=$((mb1 - mb0)) -v a=$((ma1 - ma0)) \
           'BEGIN { printf "%.1f", a ? b * 100 / a : 0 }')"
    [ "$(field "$line" errors)" = 0 ] || \
        echo "  warning: $kind $name relay: errors=$(field "$line" errors)" >&2
    [ "$(field "$sink" errors)" = 0 ] || \
        echo "  warning: $kind $name sink: errors=$(field "$sink" errors)" >&2
    low=$(awk -v s="$(field "$sink" rate)" -v p="$PACE_RATE" \
          'BEGIN { print (s < 0.95 * p) ? 1 : 0 }')
    if [ "$low" = 1 ]; then
        echo "  warning: $kind $name: the sink received $(field "$sink" rate) events/s, < 95 % of PACE_RATE=$PACE_RATE" \
            | tee -a "$out/log.txt" >&2
    fi

    [ "$pub" = 1 ] || return 0
    wait "$sp" || true
    sub=$(tail -1 "$out/redsub-paced.out")
    qsecs=$(awk -v a="$q0" -v b="$q1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    set -- $k0 $k1      # published seen queued overflow, at start and end
    echo "  $kind $name redsub: $sub" >> "$out/log.txt"
    echo "  $kind $name counters: published=$(($5 - $1)) seen=$(($6 - $2)) queued=$(($7 - $3)) overflow=$(($8 - $4)) in $qsecs s (start: $k0, read in $qm0 ms; end: $k1, read in $qm1 ms)" \
        >> "$out/log.txt"
    record "$r" "$kind" "${name}_pub_rate" "$(field "$sub" rate)"
    record "$r" "$kind" "${name}_pub_ctr" \
        "$(awk -v d=$(($5 - $1)) -v s="$qsecs" 'BEGIN { printf "%.0f", (s > 0 ? d / s : 0) }')"
    record "$r" "$kind" "${name}_pub_p50" "$(field "$sub" p50_us)"
    record "$r" "$kind" "${name}_pub_p99" "$(field "$sub" p99_us)"
    record "$r" "$kind" "${name}_overflow" "$(($8 - $4))"
    record "$r" "$kind" "${name}_redis_cpu_pct" \
        "$(awk -v d=$((rc1 - rc0)) -v hz="$hz" -v s="$secs" \
           'BEGIN { printf "%.1f", d * 100 / hz / s }')"
}

# Redis's own count of PUBLISH and SPUBLISH calls on the node at port $1
# (INFO commandstats, fork-free over /dev/tcp) -> RCALLS; exact, whatever
# subscribes or not; their rejected_calls (a MOVED answer among them: a
# wrong slot) -> RREJ
snap_rcalls() {
    local fd line v c=0 j=0
    if exec {fd}<>"/dev/tcp/127.0.0.1/$1"; then
        printf 'INFO commandstats\r\nQUIT\r\n' >&"$fd"
        while IFS= read -r -u "$fd" line; do
            case $line in
            cmdstat_publish:calls=*|cmdstat_spublish:calls=*)
                v=${line#*calls=}; v=${v%%,*}; c=$((c + v))
                case $line in *rejected_calls=*)
                    v=${line#*rejected_calls=}; v=${v%%,*}; j=$((j + v)) ;;
                esac ;;
            esac
        done
        exec {fd}>&-
    fi
    RCALLS=$c
    RREJ=$j
}

# cluster workload, one side, into the single redis-server (kind single:
# the module's config) or the Redis Cluster (kind cluster: SPUBLISH to each
# channel's slot owner), from the one worker, no subscriber on either side;
# one channel per connection (agent:events:u00000...).  name clev: the
# events workload publishing (/ev: every 64 B message answered with EVENTS
# agent events, EV_CONNS conns x 4, closed loop): as many as the machine
# lets through; name clpace: the paced stream publishing (/st, PACE_CONNS
# sink connections, PACE_RATE events/s in all): the same rate both ways, so
# the CPU rows compare costs.  Over a window inside the load's measured one
# (as paced_run's): events published per second as Redis counts them
# (PUBLISH / SPUBLISH calls, summed over the masters) and as the module does
# (events_published_total), the relay's msg/s (clev) or the sink's events/s
# (clpace), overflow drops, the worker's, the Redis servers' (summed) and
# the machine's CPU.
cluster_run() {  # round kind (single | cluster) name (clev | clpace)
    local r=$1 kind=$2 name=$3 ports pidl lp line launched t0 t1 c0 c1 mb0 mb1 ma0 ma1
    local k0 k1 q0 q1 qm0 qm1 p i secs qsecs
    local -a rc0 rc1 rt0 rt1 rj0 rj1
    if [ "$kind" = cluster ]; then
        ports=$cluster_ports; pidl=$cluster_pids
    else
        ports=$rport; pidl=$redis_pid
    fi
    now_us; launched=$NOW_US
    if [ "$name" = clev ]; then
        "$bench/wsload" --mode echo --port "$nport" --path /ev \
            --conns "$EV_CONNS" --size 64 --window 4 --warmup "$WARMUP" \
            --duration "$DURATION" > "$out/cl-load.out" &
    else
        "$bench/wsload" --mode sink --port "$nport" --path /st \
            --conns "$PACE_CONNS" --warmup "$WARMUP" \
            --duration "$DURATION" > "$out/cl-load.out" &
    fi
    lp=$!

    sleep_until_us $((launched + warmup_us + 50000))
    now_us; t0=$NOW_US
    snap_ticks "$worker_pid"; c0=$TICKS
    snap_machine; mb0=$M_BUSY; ma0=$M_ALL
    i=0; for p in $pidl; do snap_ticks "$p"; rt0[i++]=$TICKS; done
    i=0; for p in $ports; do snap_rcalls "$p"; rj0[i]=$RREJ; rc0[i++]=$RCALLS; done
    snap_counters; k0=$COUNTERS; q0=$COUNTERS_US; qm0=$COUNTERS_MS
    sleep_until_us $((launched + warmup_us + duration_us - 200000))
    now_us; t1=$NOW_US
    snap_ticks "$worker_pid"; c1=$TICKS
    snap_machine; mb1=$M_BUSY; ma1=$M_ALL
    i=0; for p in $pidl; do snap_ticks "$p"; rt1[i++]=$TICKS; done
    i=0; for p in $ports; do snap_rcalls "$p"; rj1[i]=$RREJ; rc1[i++]=$RCALLS; done
    snap_counters; k1=$COUNTERS; q1=$COUNTERS_US; qm1=$COUNTERS_MS

    wait "$lp" || true
    line=$(tail -1 "$out/cl-load.out")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    qsecs=$(awk -v a="$q0" -v b="$q1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    local calls=0 rticks=0 per=
    i=0
    for p in $ports; do
        calls=$((calls + rc1[i] - rc0[i]))
        rticks=$((rticks + rt1[i] - rt0[i]))
        per="$per $p:calls=$((rc1[i] - rc0[i])),rejected=$((rj1[i] - rj0[i])),ticks=$((rt1[i] - rt0[i]))"
        i=$((i + 1))
    done
    set -- $k0 $k1      # published seen queued overflow, at start and end
    {
        echo "  $kind $name load: $line"
        echo "  $kind $name window: secs=$secs worker_ticks=$((c1 - c0)) machine_busy=$((mb1 - mb0))/$((ma1 - ma0)) redis:$per"
        echo "  $kind $name counters: published=$(($5 - $1)) seen=$(($6 - $2)) queued=$(($7 - $3)) overflow=$(($8 - $4)) in $qsecs s (read in $qm0, $qm1 ms)"
    } >> "$out/log.txt"
    record "$r" "$kind" ${name}_rate "$(field "$line" rate)"
    [ "$name" = clev ] && \
        record "$r" "$kind" ${name}_events "$(field "$line" events_rate)"
    record "$r" "$kind" ${name}_pub_redis \
        "$(awk -v d="$calls" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? d / s : 0) }')"
    record "$r" "$kind" ${name}_pub_ctr \
        "$(awk -v d=$(($5 - $1)) -v s="$qsecs" 'BEGIN { printf "%.0f", (s > 0 ? d / s : 0) }')"
    record "$r" "$kind" ${name}_overflow \
        "$(awk -v d=$(($8 - $4)) -v s="$qsecs" 'BEGIN { printf "%.0f", (s > 0 ? d / s : 0) }')"
    record "$r" "$kind" ${name}_cpu_pct \
        "$(awk -v d=$((c1 - c0)) -v hz="$hz" -v s="$secs" \
           'BEGIN { printf "%.1f", d * 100 / hz / s }')"
    record "$r" "$kind" ${name}_cpu_per_event \
        "$(awk -v d=$((c1 - c0)) -v hz="$hz" -v n="$calls" \
           'BEGIN { printf "%.3f", n ? d * 1e6 / hz / n : 0 }')"
    record "$r" "$kind" ${name}_redis_cpu_pct \
        "$(awk -v d="$rticks" -v hz="$hz" -v s="$secs" \
           'BEGIN { printf "%.1f", d * 100 / hz / s }')"
    record "$r" "$kind" ${name}_busy_pct \
        "$(awk -v b=$((mb1 - mb0)) -v a=$((ma1 - ma0)) \
           'BEGIN { printf "%.1f", a ? b * 100 / a : 0 }')"
    [ "$(field "$line" errors)" = 0 ] || \
        echo "  warning: $kind $name load: errors=$(field "$line" errors)" >&2
    return 0
}

# The subscribe workload (issue #15): one case N:C:R, one side.  C
# publishers (a wsload sink of C connections on /st-stream, users
# u00000..: ws_agent_publish into agent:events:<user> and ws_agent_stream
# agent:stream:<user> maxlen=1000), each streamed R events/s by its own
# stream backend (echo_backend --stream-rate R, started for the run), and N
# subscribers, connection i of user i mod C, all connected and live before
# the publishers start:
#   kind sse    sseload --mode sse on nginx's /sub?user= (ws_agent_subscribe:
#               one SUBSCRIBE per channel in the worker, the fan-out in it)
#   kind redis  sseload --mode redis: N SUBSCRIBEs straight to redis-server
#               (the fan-out in Redis; the baseline)
# Over a window inside sseload's measured one (as paced_run's): events/s
# delivered to all subscribers, latency (backend write -> subscriber read,
# from the event's ts_us), the worker's, redis-server's and sseload's CPU,
# the machine's, what the module published and sent to subscribers (its
# counters), and what went missing (seq jumps, closes, gaps).
sub_pids=
snap_sub_counters() {   # -> SUBCTR="published sub_events slow_closes"
    local fd line p=0 e=0 k=0
    if exec {fd}<>"/dev/tcp/127.0.0.1/$nport"; then
        printf 'GET /ws-agent/metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&"$fd"
        while IFS= read -r -u "$fd" line; do
            line=${line%$'\r'}
            case $line in
            "ngx_ws_agent_events_published_total "*) p=${line##* } ;;
            "ngx_ws_agent_subscriber_events_total "*) e=${line##* } ;;
            "ngx_ws_agent_subscriber_slow_closes_total "*) k=${line##* } ;;
            esac
        done
        exec {fd}>&-
    fi
    SUBCTR="$p $e $k"
}

sub_run() {     # round kind (redis | sse) case (N:C:R)
    local r=$1 kind=$2 n c rate tag port mode f line first sbp slp pubp
    local launched t0 t1 c0 c1 rc0 rc1 lc0 lc1 mb0 mb1 ma0 ma1 k0 k1 secs
    local delivered lost fan m
    IFS=: read -r n c rate <<< "$3"
    tag="sub$n-$c-$rate"
    if [ "$kind" = sse ]; then port=$nport; mode=sse; else port=$rport; mode=redis; fi

    "$bench/echo_backend" --port "$subport" --stream-rate "$rate" \
        > "$out/backend-sub.log" 2>&1 &
    sbp=$!
    sub_pids="$sbp"
    wait_port "$subport"

    f="$out/sseload.out"
    : > "$f"
    "$bench/sseload" --mode "$mode" --port "$port" --conns "$n" \
        --channels "$c" --ramp "$SUB_RAMP" --warmup "$WARMUP" \
        --duration "$DURATION" > "$f" &
    slp=$!
    sub_pids="$sub_pids $slp"
    first=
    for _ in $(seq 1 $(((SUB_RAMP + 5) * 50))); do
        IFS= read -r first < "$f" || true
        case $first in live*) break ;; esac
        sleep 0.02
    done
    case $first in
    live*) ;;
    *) echo "run.sh: $kind $tag: sseload did not connect its subscribers" >&2; exit 1 ;;
    esac

    # the publishers, once every subscriber is live; sseload's window starts
    # WARMUP after its "live" line, ends DURATION later
    now_us; launched=$NOW_US
    "$bench/wsload" --mode sink --port "$nport" --path /st-stream \
        --conns "$c" --warmup 0 \
        --duration "$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN { print w + d + 5 }')" \
        > "$out/sub-pub.out" &
    pubp=$!
    sub_pids="$sub_pids $pubp"

    sleep_until_us $((launched + warmup_us + 100000))
    now_us; t0=$NOW_US
    snap_ticks "$worker_pid"; c0=$TICKS
    snap_ticks "$redis_pid"; rc0=$TICKS
    snap_ticks "$slp"; lc0=$TICKS
    snap_machine; mb0=$M_BUSY; ma0=$M_ALL
    snap_sub_counters; k0=$SUBCTR
    sleep_until_us $((launched + warmup_us + duration_us - 200000))
    now_us; t1=$NOW_US
    snap_ticks "$worker_pid"; c1=$TICKS
    snap_ticks "$redis_pid"; rc1=$TICKS
    snap_ticks "$slp"; lc1=$TICKS
    snap_machine; mb1=$M_BUSY; ma1=$M_ALL
    snap_sub_counters; k1=$SUBCTR

    wait "$slp" || true
    kill -TERM "$pubp"
    wait "$pubp" || true
    kill -USR1 "$sbp"           # the stream backend's totals, late= among them
    sleep 0.05
    stop_pid "$sbp"
    sub_pids=

    line=$(tail -1 "$f")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
    delivered=$(field "$line" rate)
    lost=$(( $(field "$line" seq_missing) + $(field "$line" closed) + $(field "$line" gaps) ))
    set -- $k0 $k1      # published sub_events slow_closes, at start and end
    {
        echo "  $kind $tag: $first"
        echo "  $kind $tag: $line"
        echo "  $kind $tag publishers: $(tail -1 "$out/sub-pub.out")"
        echo "  $kind $tag backend $(grep '^stream:' "$out/backend-sub.log" | tail -1)"
        echo "  $kind $tag window: secs=$secs worker_ticks=$((c1 - c0)) redis_ticks=$((rc1 - rc0)) sseload_ticks=$((lc1 - lc0)) machine_busy=$((mb1 - mb0))/$((ma1 - ma0)) published=$(($4 - $1)) sub_events=$(($5 - $2)) slow_closes=$(($6 - $3))"
    } >> "$out/log.txt"
    record "$r" "$kind" "${tag}_offered" $((n * rate))
    record "$r" "$kind" "${tag}_rate" "$delivered"
    record "$r" "$kind" "${tag}_p50" "$(field "$line" p50_us)"
    record "$r" "$kind" "${tag}_p99" "$(field "$line" p99_us)"
    record "$r" "$kind" "${tag}_p999" "$(field "$line" p999_us)"
    record "$r" "$kind" "${tag}_lost" "$lost"
    record "$r" "$kind" "${tag}_pub" \
        "$(awk -v d=$(($4 - $1)) -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? d / s : 0) }')"
    for m in cpu_pct:$((c1 - c0)) redis_cpu_pct:$((rc1 - rc0)) client_cpu_pct:$((lc1 - lc0)); do
        record "$r" "$kind" "${tag}_${m%%:*}" \
            "$(awk -v d="${m#*:}" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.1f", d * 100 / hz / s }')"
    done
    record "$r" "$kind" "${tag}_busy_pct" \
        "$(awk -v b=$((mb1 - mb0)) -v a=$((ma1 - ma0)) 'BEGIN { printf "%.1f", a ? b * 100 / a : 0 }')"
    # the fan-out's CPU per delivered event: the worker's (sse) or
    # redis-server's (redis), each with its share of the publishing
    if [ "$kind" = sse ]; then fan=$((c1 - c0)); else fan=$((rc1 - rc0)); fi
    record "$r" "$kind" "${tag}_fan_us" \
        "$(awk -v d="$fan" -v hz="$hz" -v n="$delivered" -v s="$secs" \
           'BEGIN { printf "%.2f", (n > 0 ? d * 1e6 / hz / (n * s) : 0) }')"
    [ "$kind" = sse ] && record "$r" "$kind" "${tag}_slow" $(($6 - $3))

    if [ "$(field "$line" live)" != "$n" ] || [ "$(field "$line" errors)" != 0 ] \
       || [ "$lost" != 0 ]; then
        echo "  warning: $kind $tag: $line" | tee -a "$out/log.txt" >&2
    fi
    if awk -v d="$delivered" -v o=$((n * rate)) 'BEGIN { exit !(d < 0.95 * o) }'; then
        echo "  note: $kind $tag: delivered $delivered events/s, < 95 % of the $((n * rate)) offered (saturated)" \
            | tee -a "$out/log.txt" >&2
    fi
    return 0
}

# --- the load generator's own ceiling: straight to the echo backend ---------

echo "run.sh: results in $out"
{
    echo "machine: nproc=$(nproc) cpu=\"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)\" kernel=$(uname -r)"
    echo "nginx: $("$NGINX" -v 2>&1)"
    echo "rounds=$ROUNDS duration=$DURATION warmup=$WARMUP idle_conns=$IDLE_CONNS events=$EVENTS ev_conns=$EV_CONNS pace_rate=$PACE_RATE pace_conns=$PACE_CONNS"
    echo "workloads: $WORKLOADS"
    wants subscribe && echo "sub_cases: $SUB_CASES (N subscribers:C channels:R events/s per channel)"
    if [ -n "$affinity" ]; then
        echo "pinned: nginx worker on CPU 0, load generator, backends, redis-server, subscriber on CPU 1-$((ncpu - 1))"
    else
        echo "not pinned (PIN=$PIN)"
    fi
    echo "module: $module ($(stat -c '%y' "$module" | cut -d. -f1))"
} | tee "$out/machine.txt"
record 0 direct pace_rate "$PACE_RATE"

echo "direct (load generator + backend, no nginx):" | tee -a "$out/log.txt"
for spec in "small 50 64 8" "large 10 65536 2"; do
    set -- $spec
    wants "$1" || continue
    line=$("$bench/wsload" --mode echo --port "$bport" --conns "$2" \
           --size "$3" --window "$4" --warmup "$WARMUP" --duration "$DURATION")
    echo "  direct $1: $line" >> "$out/log.txt"
    record 0 direct "$1_rate" "$(field "$line" rate)"
    record 0 direct "$1_p99" "$(field "$line" p99_us)"
done
if wants hs; then
    line=$("$bench/wsload" --mode handshake --port "$bport" --conns 20 \
           --warmup "$WARMUP" --duration "$DURATION")
    echo "  direct handshake: $line" >> "$out/log.txt"
    record 0 direct hs_rate "$(field "$line" rate)"
fi
if wants events; then
    line=$("$bench/wsload" --mode echo --port "$eport" --conns "$EV_CONNS" \
           --size 64 --window 4 --warmup "$WARMUP" --duration "$DURATION")
    echo "  direct ev: $line" >> "$out/log.txt"
    record 0 direct ev_rate "$(field "$line" rate)"
    record 0 direct ev_events "$(field "$line" events_rate)"
fi
if wants paced; then
    line=$("$bench/wsload" --mode sink --port "$sport" --conns "$PACE_CONNS" \
           --warmup "$WARMUP" --duration "$DURATION")
    echo "  direct sink: $line" >> "$out/log.txt"
    record 0 direct sink_rate "$(field "$line" rate)"
    record 0 direct sink_p99 "$(field "$line" p99_us)"
    awk -v s="$(field "$line" rate)" -v p="$PACE_RATE" \
        'BEGIN { exit !(s < 0.95 * p) }' \
        && echo "  warning: direct sink: $(field "$line" rate) events/s, < 95 % of PACE_RATE=$PACE_RATE" >&2
fi

# --- A B A B ----------------------------------------------------------------

write_conf stock
write_conf module
wants cluster && write_conf cluster

# the workloads of the stock/module rounds (all but cluster)
ab=
for w in idle small large hs events paced; do wants "$w" && ab=1; done

for r in $(seq 1 "$ROUNDS"); do
    for kind in ${ab:+stock module}; do
        echo "round $r/$ROUNDS: $kind" | tee -a "$out/log.txt"
        start_nginx "$kind"
        if wants idle; then
            idle_run "$r" "$kind" /ws idle_kib
            # diagnostic: the same without ws_agent_publish (events not read)
            if [ "$kind" = module ]; then
                stop_nginx
                start_nginx "$kind"
                idle_run "$r" "$kind" /ev-nopub idle_nopub_kib
            fi
        fi
        wants small && echo_run "$r" "$kind" small "$nport" /ws 50 64 8
        wants large && echo_run "$r" "$kind" large "$nport" /ws 10 65536 2
        wants hs && handshake_run "$r" "$kind"
        wants events && events_run "$r" "$kind"
        if wants paced; then
            # B: publish off then on in odd rounds, on then off in even
            # ones, so that a drift of the machine's load does not always
            # favour the same side
            if [ "$kind" = module ] && [ $((r % 2)) = 0 ]; then
                paced_run "$r" "$kind" pacedpub /st 1
                paced_run "$r" "$kind" paced /st-nopub 0
            else
                paced_run "$r" "$kind" paced /st-nopub 0
                [ "$kind" = module ] && paced_run "$r" "$kind" pacedpub /st 1
            fi
        fi
        stop_nginx
    done
    if wants subscribe; then
        # A = N subscribers straight to Redis, B = N SSE subscribers of the
        # module; A then B in odd rounds, B then A in even ones
        order="redis sse"
        [ $((r % 2)) = 0 ] && order="sse redis"
        echo "round $r/$ROUNDS: subscribe workload" | tee -a "$out/log.txt"
        start_nginx module
        for spec in $SUB_CASES; do
            for kind in $order; do
                sub_run "$r" "$kind" "$spec"
            done
        done
        stop_nginx
    fi
    if wants cluster; then
        # A = the module into one redis-server, B = the same module into
        # the Redis Cluster; A then B in odd rounds, B then A in even ones
        order="single cluster"
        [ $((r % 2)) = 0 ] && order="cluster single"
        for kind in $order; do
            echo "round $r/$ROUNDS: cluster workload, $kind" | tee -a "$out/log.txt"
            if [ "$kind" = single ]; then start_nginx module; else start_nginx cluster; fi
            cluster_run "$r" "$kind" clev
            cluster_run "$r" "$kind" clpace
            stop_nginx
        done
    fi
done

"$bench/summary.sh" "$results" "$out/machine.txt" | tee "$out/summary.txt"
