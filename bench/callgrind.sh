#!/bin/bash
# Instructions per relayed message, counted by valgrind's callgrind: a
# repeatable cost figure on a machine without hardware counters, where
# wall-clock throughput moves more between runs than the module's cost.
#
# nginx runs under `valgrind --tool=callgrind` as one process
# (master_process off, daemon off, worker_processes 1).  For each run: the
# load starts; after WARM seconds (connections open, code translated) the
# counters are zeroed (`vgdb ... zero`, the command callgrind_control -z
# sends), after MEASURE more seconds dumped (`vgdb ... dump`, as
# callgrind_control -d); wsload marks its totals (SIGUSR1) right before and
# after each.  Ir (instructions executed in user space by nginx, its module
# and the libraries it calls: yajl, hiredis, libc) / messages relayed
# between zero and dump = Ir per message.  Connection set-up and teardown
# are outside the window.  Runs:
#
#   stock  small    64 B echo, 50 conns x 8, /ws     (stock nginx, no module)
#   module small    the same with the module (ws_agent on, publish on /ws)
#   stock  ev       the events workload (EVENTS agent events + the echo per
#                   64 B message, EV_CONNS conns x 4), plain relay
#   module ev       the same, location without ws_agent_publish
#   module evpub    the same with ws_agent_publish, redsub subscribed
#   module evstream the same with ws_agent_stream agent:stream:$ws_agent_user
#                   maxlen=1000 as well (/ev-stream: each event one EVALSHA
#                   of the stream script instead of a PUBLISH), redsub
#                   subscribed
#   cluster evpub   (not by default) the same publishing into a 3-master
#                   Redis Cluster (SPUBLISH by slot; no subscriber: the
#                   published counter is shown instead)
#
# and prints Ir/message for each, the module's extra Ir/message over stock,
# and Ir per published event = (Ir/msg evpub - Ir/msg ev) / events per msg
# (for cluster:evpub likewise, against module:ev), and the stream append's
# cost per event = (Ir/msg evstream - Ir/msg evpub) / events per msg.
# Top functions by Ir (self) of each run, with Ir per message, and Ir by
# object: out/callgrind-<time>/top-*.txt (inclusive: annotate-*.txt).
# Under callgrind nginx is ~50x slower: the rates are low, but the ratio
# Ir / message does not depend on them.
#
#   bench/callgrind.sh                       about 2 minutes
#   MEASURE=10 bench/callgrind.sh            a longer measured window
#   MODULE=/tmp/m.so RUNS="module:ev module:evpub" bench/callgrind.sh
#   RUNS="module:ev module:evpub cluster:evpub" bench/callgrind.sh
#   RUNS="module:ev module:evpub module:evstream" bench/callgrind.sh
#
# Knobs: MODULE (build/ngx_ws_agent_module.so; not rebuilt here), NGINX
# (/usr/sbin/nginx), WARM (3 s), MEASURE (5 s), EVENTS (8), EV_CONNS (20),
# RUNS (kind:name pairs, the five above by default), TOP (15 functions).
# Every load run is bounded: WARM + MEASURE + at most ~6 s to stop.
set -euo pipefail

NGINX=${NGINX:-/usr/sbin/nginx}
WARM=${WARM:-3}
MEASURE=${MEASURE:-5}
EVENTS=${EVENTS:-8}
EV_CONNS=${EV_CONNS:-20}
TOP=${TOP:-15}
RUNS=${RUNS:-stock:small module:small stock:ev module:ev module:evpub module:evstream}

bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
. "$bench/lib.sh"
module=${MODULE:-"$repo/build/ngx_ws_agent_module.so"}
out="$bench/out/callgrind-$(date +%Y%m%d-%H%M%S)"

# Debian packages: valgrind (vgdb, callgrind_annotate), redis-server, curl
missing=
for p in valgrind redis-server curl; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "callgrind.sh: installing$missing"
    apt-get update -qq
    apt-get install -y -qq $missing > /dev/null
fi
for tool in valgrind vgdb callgrind_annotate redis-server curl; do
    command -v "$tool" > /dev/null \
        || { echo "callgrind.sh: needs $tool" >&2; exit 1; }
done
[ -f "$module" ] || { echo "callgrind.sh: no module $module (scripts/build.sh)" >&2; exit 1; }
vgdb=$(command -v vgdb)
make -s -C "$bench"
mkdir -p "$out"

# --- processes this script starts, ended by PID only ------------------------

pids=()
nginx_pid=
load_pid=
sub_pid=

cleanup() {
    local p
    for p in "$load_pid" "$sub_pid" "$nginx_pid" "${pids[@]}"; do
        stop_pid "$p"
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bport=$(free_port)
eport=$(free_port)
rport=$(free_port)
nport=$(free_port)

start_echo_backends
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --logfile "$out/redis.log" &
pids+=($!)
wait_port "$bport" 50
wait_port "$eport" 50
wait_port "$rport" 50
case " $RUNS " in *" cluster:"*) start_cluster ;; esac

# --- nginx, one process -----------------------------------------------------

# $1 = stock | module (bench/lib.sh); a slow ack under callgrind is fine
write_conf() {
    local dir="$out/$1"
    bench_conf "$1" "$dir" "master_process off;" 1024 1024 \
        "ws_agent_ready_timeout 60s;"
    "$NGINX" -t -p "$dir" -c "$dir/nginx.conf" > "$dir/nginx-t.log" 2>&1 \
        || { cat "$dir/nginx-t.log" >&2; exit 1; }
}

metric() {      # a counter of the module's status, outside the window
    curl -s --max-time 10 "http://127.0.0.1:$nport/ws-agent/metrics" \
        | awk -v k="$1" 'index($0, k " ") == 1 && !done { print $2; done = 1 }' \
        || true
}

# the value of key $2 in the key=value line $1
field() {
    echo "$1" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'
}

# total Ir of a callgrind dump: "totals:" (the sum of its cost lines, what
# the per-function figures add up to; "summary:" can differ by a few %)
dump_ir() {
    awk '/^totals:/ { t = $2 } /^summary:/ { s = $2 }
         END { print (t != "") ? t : s }' "$1"
}

# Self Ir per function and per object (binary or library) of a dump, from
# its cost lines.  callgrind_annotate 3.19's self listing is wrong for a
# dump taken mid-run (the frames on the stack at the zero come with
# "calls=0" and their inclusive cost lands on __libc_start_main), its
# inclusive listing is right and is kept as well.  Output lines:
# "F<TAB>Ir<TAB>function<TAB>object", "O<TAB>Ir<TAB>object".  Functions of the
# stripped /usr/sbin/nginx that it does not export are shown as addresses.
cg_self() {
    awk '
    function name(kind, s,    id, rest) {   # "(id) name", "(id)", "name"
        if (s ~ /^\([0-9]+\)/) {
            id = substr(s, 1, index(s, ")"))
            rest = substr(s, length(id) + 1)
            sub(/^ /, "", rest)
            if (rest != "") names[kind, id] = rest
            return names[kind, id]
        }
        return s
    }
    /^ob=/  { ob = name("ob", substr($0, 4)); next }
    /^cob=/ { name("ob", substr($0, 5)); next }
    /^fn=/  { fn = name("fn", substr($0, 4)); key = fn "\t" ob; skip = 0; next }
    /^cfn=/ { name("fn", substr($0, 5)); next }
    /^(fl|fi|fe)=/ { name("fl", substr($0, 4)); next }
    /^(cfi|cfl)=/ { name("fl", substr($0, 5)); next }
    /^calls=/ { skip = 1; next }        # the next cost line is a call
    /^[0-9+*-]/ {
        if (skip) { skip = 0; next }
        self[key] += $2
        next
    }
    END {
        for (k in self) {
            split(k, a, "\t")
            obj[a[2]] += self[k]
            printf "F\t%d\t%s\t%s\n", self[k], a[1], a[2]
        }
        for (o in obj) printf "O\t%d\t%s\n", obj[o], o
    }' "$1"
}

# the top $3 functions of self file $1, per message of count $2
cg_top() {
    # (no `head` in these pipelines: with pipefail its early exit would fail them)
    grep '^F' "$1" | sort -t"$(printf '\t')" -k2,2nr \
        | awk -F'\t' -v n="$2" -v top="$3" -v t="$(awk -F'\t' '/^O/ { s += $2 } END { print s }' "$1")" '
            NR <= top { o = $4; sub(/.*\//, "", o)
              printf "%14.0f %6.2f%% %9.1f  %s [%s]\n", $2, 100 * $2 / t, $2 / n, $3, o }'
}

results="$out/results.tsv"
printf 'kind\tname\tpath\tIr\treplies\tevents\treplies_uncertain\n' > "$results"

# one run: nginx under callgrind, the load, zero, MEASURE s, dump
cg_run() {      # kind name
    local kind=$1 name=$2 dir="$out/$1" path conns window tag
    local dump m1 m2 m3 m4 ir replies events spread p0= p1= d1= i wfd
    tag="$kind-$name"
    case $name in
    small) path=/ws;       conns=50;          window=8 ;;
    ev)    path=/ev-nopub; conns=$EV_CONNS;   window=4 ;;
    evpub) path=/ev;       conns=$EV_CONNS;   window=4 ;;
    evstream) path=/ev-stream; conns=$EV_CONNS; window=4 ;;
    *) echo "callgrind.sh: unknown run $name" >&2; exit 1 ;;
    esac

    echo "callgrind.sh: $tag ($path, $conns conns x $window)"
    valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.$tag.%p" \
        --vgdb=yes --vgdb-prefix="$out/vgdb-$tag" \
        "$NGINX" -p "$dir" -c "$dir/nginx.conf" \
        > "$out/valgrind-$tag.log" 2>&1 &
    nginx_pid=$!
    wait_port "$nport" 600

    if [ "$name" = evpub ] || [ "$name" = evstream ]; then
        p0=$(metric ngx_ws_agent_events_published_total)
    fi
    if [ "$name" != ev ] && [ -n "$p0" ] && [ "$kind" = module ]; then
        "$bench/redsub" --port "$rport" --warmup 0 \
            --duration "$(awk -v w="$WARM" -v m="$MEASURE" 'BEGIN { print w + m + 1 }')" \
            > "$out/redsub-$tag.out" &
        sub_pid=$!
        sleep 0.3
    fi

    "$bench/wsload" --mode echo --port "$nport" --path "$path" \
        --conns "$conns" --size 64 --window "$window" --warmup 0 \
        --duration $((WARM + MEASURE + 30)) > "$out/wsload-$tag.out" &
    load_pid=$!

    # wsload marks its totals right before and right after each control
    # command: the zero and the dump happen between the two marks
    # (vgdb ... zero / dump is what callgrind_control -z / -d send, without
    # the perl start and the process listing: a narrower pair of marks)
    sleep "$WARM"
    kill -USR1 "$load_pid"
    "$vgdb" --vgdb-prefix="$out/vgdb-$tag" --pid="$nginx_pid" zero \
        > "$out/control-$tag.log" 2>&1
    kill -USR1 "$load_pid"
    sleep "$MEASURE"
    kill -USR1 "$load_pid"
    "$vgdb" --vgdb-prefix="$out/vgdb-$tag" --pid="$nginx_pid" dump \
        >> "$out/control-$tag.log" 2>&1
    kill -USR1 "$load_pid"

    kill -TERM "$load_pid"
    wait "$load_pid" || true
    load_pid=

    if [ -n "$sub_pid" ]; then
        wait "$sub_pid" || true     # it ends about 1 s after the dump
        sub_pid=
    fi
    if [ "$kind" != stock ]; then
        p1=$(metric ngx_ws_agent_events_published_total)
        d1=$(metric 'ngx_ws_agent_events_dropped_total{reason="queue_overflow"}')
    fi

    kill -TERM "$nginx_pid"
    # under valgrind the TERM can be taken while epoll_wait goes on sleeping
    # (seen once: nginx idle 2.5 minutes until a connection came, then it
    # exited): a connection a second wakes its loop, 30 at most, then KILL
    # (the -d dump is written already)
    for _ in $(seq 1 30); do
        kill -0 "$nginx_pid" 2>/dev/null || break
        sleep 1
        kill -0 "$nginx_pid" 2>/dev/null || break
        { exec {wfd}<>"/dev/tcp/127.0.0.1/$nport" && exec {wfd}>&-; } 2>/dev/null || true
    done
    if kill -0 "$nginx_pid" 2>/dev/null; then
        echo "callgrind.sh: $tag: nginx still up 30 s after TERM: KILL" >&2
        kill -KILL "$nginx_pid" 2>/dev/null || true
    fi
    wait "$nginx_pid" || true
    nginx_pid=

    # the -d dump: callgrind.<tag>.<pid>.1 (the exit dump has no suffix)
    dump=$(ls "$out"/callgrind."$tag".*.1 2>/dev/null | awk 'NR == 1' || true)
    [ -n "$dump" ] || { echo "callgrind.sh: $tag: no dump (see $out/control-$tag.log)" >&2; exit 1; }
    ir=$(dump_ir "$dump")
    for i in 1 2 3 4; do
        grep -q "^mark n=$i " "$out/wsload-$tag.out" \
            || { echo "callgrind.sh: $tag: no wsload mark $i" >&2; exit 1; }
    done
    m1=$(grep '^mark n=1 ' "$out/wsload-$tag.out")
    m2=$(grep '^mark n=2 ' "$out/wsload-$tag.out")
    m3=$(grep '^mark n=3 ' "$out/wsload-$tag.out")
    m4=$(grep '^mark n=4 ' "$out/wsload-$tag.out")
    # the middles of the two pairs; the pairs' widths bound the error
    replies=$(( ($(field "$m3" replies) + $(field "$m4" replies)
                 - $(field "$m1" replies) - $(field "$m2" replies)) / 2 ))
    events=$(( ($(field "$m3" events) + $(field "$m4" events)
                - $(field "$m1" events) - $(field "$m2" events)) / 2 ))
    spread=$(( ($(field "$m2" replies) - $(field "$m1" replies)
                + $(field "$m4" replies) - $(field "$m3" replies)) / 2 ))
    [ "$replies" -gt 0 ] || { echo "callgrind.sh: $tag: no message relayed in the window" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$name" "$path" "$ir" "$replies" "$events" "$spread" >> "$results"
    [ "$(field "$(tail -1 "$out/wsload-$tag.out")" errors)" = 0 ] \
        || echo "callgrind.sh: warning: $tag: wsload errors: $(tail -1 "$out/wsload-$tag.out")" >&2
    if [ -n "$p0" ] && [ "$kind" = cluster ]; then
        echo "  $tag: published over the whole run $((p1 - p0)), queue overflow $d1 (no subscriber)" \
            | tee -a "$out/notes.txt"
    elif [ -n "$p0" ]; then
        echo "  $tag: published over the whole run $((p1 - p0)), queue overflow $d1; redsub (whole run): $(tail -1 "$out/redsub-$tag.out")" \
            | tee -a "$out/notes.txt"
    elif [ -n "$d1" ] && [ "$d1" != 0 ]; then
        echo "  $tag: queue overflow $d1" >> "$out/notes.txt"
    fi

    cg_self "$dump" > "$out/self-$tag.tsv"
    {
        echo "$tag: top functions by Ir (self), from $dump"
        echo "            Ir  share  Ir/msg  function [object]"
        cg_top "$out/self-$tag.tsv" "$replies" 40
        echo
        echo "by object:"
        grep '^O' "$out/self-$tag.tsv" | sort -t"$(printf '\t')" -k2,2nr \
            | awk -F'\t' -v n="$replies" '{ printf "%14.0f %9.1f Ir/msg  %s\n", $2, $2 / n, $3 }'
    } > "$out/top-$tag.txt"
    callgrind_annotate --inclusive=yes "$dump" 2>/dev/null \
        | head -80 > "$out/annotate-$tag-inclusive.txt" || true
    echo "  $tag: Ir=$ir replies=$replies (+-$spread) events=$events ($dump)"
}

{
    echo "machine: nproc=$(nproc) cpu=\"$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)\" kernel=$(uname -r)"
    echo "nginx: $("$NGINX" -v 2>&1); $(valgrind --version)"
    echo "module: $module ($(stat -c '%y' "$module" | cut -d. -f1))"
    echo "warm=$WARM measure=$MEASURE events=$EVENTS ev_conns=$EV_CONNS runs=\"$RUNS\""
} | tee "$out/machine.txt"

write_conf stock
write_conf module
[ -n "$cluster_ports" ] && write_conf cluster

for run in $RUNS; do
    cg_run "${run%%:*}" "${run#*:}"
done

# --- the table --------------------------------------------------------------

{
    cat "$out/machine.txt"
    echo
    awk -F'\t' '
    NR > 1 { k = $1 ":" $2; ir[k] = $4; n[k] = $5; ev[k] = $6; u[k] = $7
             order[++cnt] = k; path[k] = $3 }
    function per(k) { return (k in ir && n[k] > 0) ? ir[k] / n[k] : "" }
    END {
        printf "| %-15s | %-10s | %9s | %7s | %9s | %14s | %10s | %10s |\n", "run", "path", "messages", "+-", "events", "Ir", "Ir/message", "events/msg"
        print "|-----------------|------------|-----------|---------|-----------|----------------|------------|------------|"
        for (i = 1; i <= cnt; i++) {
            k = order[i]
            printf "| %-15s | %-10s | %9d | %6.2f%% | %9d | %14.0f | %10.0f | %10.2f |\n", \
                k, path[k], n[k], 100 * u[k] / n[k], ev[k], ir[k], per(k), ev[k] / n[k]
        }
        print ""
        if (per("stock:small") != "" && per("module:small") != "")
            printf "small echo: module - stock = %+.0f Ir/message (%+.1f %%)\n", \
                per("module:small") - per("stock:small"), \
                100 * (per("module:small") / per("stock:small") - 1)
        if (per("stock:ev") != "" && per("module:ev") != "")
            printf "events relay, no publish: module - stock = %+.0f Ir/message (%+.1f %%)\n", \
                per("module:ev") - per("stock:ev"), \
                100 * (per("module:ev") / per("stock:ev") - 1)
        if (per("module:ev") != "" && per("module:evpub") != "") {
            d = per("module:evpub") - per("module:ev")
            e = ev["module:evpub"] / n["module:evpub"]
            printf "events relay: publish on - off = %+.0f Ir/message (x%.2f)\n", \
                d, per("module:evpub") / per("module:ev")
            if (e > 0)
                printf "Ir per published event = %.0f / %.2f events per message = %.0f\n", d, e, d / e
        }
        if (per("module:evpub") != "" && per("module:evstream") != "") {
            d = per("module:evstream") - per("module:evpub")
            e = ev["module:evstream"] / n["module:evstream"]
            printf "events relay: ws_agent_stream on - off (publishing both) = %+.0f Ir/message\n", d
            if (e > 0) {
                printf "Ir per event of the stream append (EVALSHA instead of PUBLISH) = %.0f / %.2f = %.0f\n", d, e, d / e
                if (per("module:ev") != "")
                    printf "Ir per published event with ws_agent_stream = %.0f / %.2f = %.0f\n", \
                        per("module:evstream") - per("module:ev"), e, \
                        (per("module:evstream") - per("module:ev")) / e
            }
        }
        if (per("module:ev") != "" && per("cluster:evpub") != "") {
            d = per("cluster:evpub") - per("module:ev")
            e = ev["cluster:evpub"] / n["cluster:evpub"]
            printf "events relay, cluster: publish on - off = %+.0f Ir/message (x%.2f)\n", \
                d, per("cluster:evpub") / per("module:ev")
            if (e > 0)
                printf "Ir per published event, Redis Cluster (SPUBLISH by slot) = %.0f / %.2f = %.0f\n", d, e, d / e
        }
    }' "$results"
    echo
    echo "Ir: user-space instructions of the nginx process (nginx, the module,"
    echo "yajl, hiredis, libc; not the kernel) between the zero and the dump;"
    echo "messages: echoes the load generator received in the same window (the"
    echo "middle of its totals just before and after each control command; +-: half"
    echo "the messages relayed while the two commands ran, the bound of the error)."
    [ -f "$out/notes.txt" ] && cat "$out/notes.txt"
    echo
    echo "Ir per message by object:"
    for run in $RUNS; do
        tag="${run%%:*}-${run#*:}"
        [ -f "$out/top-$tag.txt" ] || continue
        printf '  %-16s' "$tag"
        sed -n '/^by object:/,$p' "$out/top-$tag.txt" \
            | awk 'NR > 1 && NR <= 7 { o = $4; sub(/.*\//, "", o); printf "  %s %.0f", o, $2 }'
        echo
    done
    for pub in evpub evstream; do
        if [ -f "$out/self-module-$pub.tsv" ]; then
            echo
            echo "top $TOP functions by Ir (self), module $pub (Ir/msg: per relayed"
            echo "message, each with $EVENTS events):"
            echo "            Ir  share  Ir/msg  function [object]"
            cg_top "$out/self-module-$pub.tsv" \
                "$(awk -F'\t' '$1 == "module" && $2 == "'"$pub"'" { print $5 }' "$results")" "$TOP"
        fi
    done
} | tee "$out/summary.txt"
echo "callgrind.sh: results in $out"
