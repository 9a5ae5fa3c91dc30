# What both bench scripts share (sourced by run.sh and callgrind.sh): ports
# and the nginx.conf.

listening() {    # bash's /dev/tcp: no iproute2 needed
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null
}

# a TCP port nobody listens on, below the ephemeral range
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((10000 + RANDOM % 20000))
        if ! listening "$p"; then
            echo "$p"
            return
        fi
    done
    echo "${0##*/}: no free port" >&2
    exit 1
}

# PID [SIGNAL]: a process this script started, ended and reaped
stop_pid() {
    [ -n "$1" ] || return 0
    kill "-${2:-TERM}" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# the echo backends of the echo and events workloads, their pids in pids[]
start_echo_backends() {
    "$bench/echo_backend" --port "$bport" > "$out/backend.log" 2>&1 &
    pids+=($!)
    "$bench/echo_backend" --port "$eport" --events "$EVENTS" \
        > "$out/backend-events.log" 2>&1 &
    pids+=($!)
}

# The cluster workload's Redis Cluster (run.sh WORKLOADS=cluster,
# callgrind.sh's cluster:evpub run): CLUSTER_NODES masters, no replicas.
#
# CLUSTER_NODES redis-server 7 processes, cluster-enabled, each with its own
# directory (nodes.conf) under $out/redis-cluster, client and bus ports
# (cluster-port) below 32768 on 127.0.0.1, made a cluster with
# `redis-cli --cluster create ... --cluster-yes`; their pids in pids[] and
# cluster_pids, their ports in cluster_ports (the module's seeds, see
# bench_conf); the map and where the events workload's channels
# (agent:events:u00000..) land go to stdout and $out/log.txt.  Uses the
# caller's $out, $CLUSTER_NODES (3), $EV_CONNS.
cluster_ports=
cluster_pids=
start_cluster() {
    local i p b d addrs= ok
    for i in $(seq 1 "${CLUSTER_NODES:-3}"); do
        p=$(free_port)
        b=$(free_port)
        while [ "$b" = "$p" ]; do b=$(free_port); done
        d="$out/redis-cluster/node$i"
        mkdir -p "$d"
        redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
            --daemonize no --dir "$d" --logfile "$d/redis.log" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-port "$b" --cluster-node-timeout 5000 &
        pids+=($!)
        cluster_pids="$cluster_pids $!"
        cluster_ports="${cluster_ports:+$cluster_ports }$p"
        addrs="$addrs 127.0.0.1:$p"
    done
    for p in $cluster_ports; do wait_port "$p"; done
    timeout 60 redis-cli --cluster create $addrs --cluster-yes \
        > "$out/redis-cluster/create.log" 2>&1 \
        || { cat "$out/redis-cluster/create.log" >&2
             echo "${0##*/}: redis-cli --cluster create failed" >&2; exit 1; }
    for _ in $(seq 1 300); do           # bounded: 30 s
        ok=1
        for p in $cluster_ports; do
            timeout 2 redis-cli -p "$p" cluster info 2>/dev/null \
                | grep -q '^cluster_state:ok' || ok=0
        done
        [ "$ok" = 1 ] && break
        sleep 0.1
    done
    [ "$ok" = 1 ] || { echo "${0##*/}: the cluster is not ok within 30 s" >&2; exit 1; }
    {
        p=${cluster_ports%% *}
        echo "cluster: masters on $cluster_ports (bus ports: cluster-port, see redis-cluster/)"
        timeout 2 redis-cli -p "$p" cluster nodes | sed 's/^/  /'
        echo "  the events workload's channels (agent:events:u00000..u$(printf %05d $((EV_CONNS - 1)))) by owner:"
        for i in $(seq 0 $((EV_CONNS - 1))); do
            timeout 2 redis-cli -p "$p" cluster keyslot \
                "agent:events:u$(printf %05d "$i")"
        done | awk -v ranges="$(timeout 2 redis-cli -p "$p" cluster nodes \
                  | awk '/master/ { a = $2; sub(/@.*/, "", a)
                                for (i = 9; i <= NF; i++) printf "%s %s;", a, $i }')" '
            BEGIN { n = split(ranges, r, ";") }
            { for (i = 1; i < n; i++) { split(r[i], a, " "); split(a[2], s, "-")
                  if (s[2] == "") s[2] = s[1]
                  if ($1 >= s[1] && $1 <= s[2]) { c[a[1]]++; break } } }
            END { for (k in c) printf "    %s: %d channels\n", k, c[k] }'
    } | tee -a "$out/log.txt"
}

# PORT [TRIES of 0.1 s, 50 by default]
wait_port() {
    for _ in $(seq 1 "${2:-50}"); do
        listening "$1" && return 0
        sleep 0.1
    done
    echo "${0##*/}: nothing listens on $1" >&2
    exit 1
}

# The nginx.conf: stock and module get the same file, the module's lines
# only in "module".
#
#   bench_conf KIND DIR MAIN CONNS BACKLOG EXTRA
#
# KIND stock | module | cluster (the module publishing to the Redis Cluster
# of $cluster_ports: `ws_agent_redis cluster;` and `ws_agent_redis_cluster`
# with them as seeds, instead of `ws_agent_redis 127.0.0.1:$rport;`);
# DIR gets nginx.conf, logs/, tmp/; MAIN: lines for the
# main context (process model, affinity, limits); CONNS: worker_connections;
# BACKLOG: the listen backlog; EXTRA: one more directive in every module
# location (or "").  Uses the caller's $module, $rport, $bport, $eport,
# $nport, $sport when set (the paced stream's backend: /st, /st-nopub) and
# $subport when set (the subscribe workload's stream backend: /st-stream,
# publishing into the channel and the stream of the user, and /sub, the
# subscriber location, in the module's file).  /ev-stream: /ev with
# ws_agent_stream (callgrind.sh's module:evstream).

bench_conf() {
    local kind=$1 dir=$2 main=$3 conns=$4 backlog=$5 extra=$6
    mkdir -p "$dir/logs" "$dir/tmp"

    m() { [ "$kind" != stock ] && echo "$*" || true; }
    redis_conf() {
        local p seeds=
        if [ "$kind" = cluster ]; then
            for p in $cluster_ports; do seeds="$seeds 127.0.0.1:$p"; done
            echo "ws_agent_redis cluster;"
            echo "    ws_agent_redis_cluster$seeds;"
        else
            m "ws_agent_redis 127.0.0.1:$rport;"
        fi
    }

    # one WebSocket location: $1 path, $2 upstream, $3 1 = publish, $4 1 =
    # and append to the user's stream (the module's kind only: a cluster
    # would want {hash tags})
    loc() {
        echo "location $1 {"
        echo "            proxy_pass http://$2;"
        m "            ws_agent on;"
        m "            ws_agent_user \$http_x_user_id;"
        if [ "$3" = 1 ]; then
            m "            ws_agent_publish agent:events:\$ws_agent_user;"
        fi
        if [ "${4:-}" = 1 ] && [ "$kind" = module ]; then
            echo "            ws_agent_stream agent:stream:\$ws_agent_user maxlen=1000;"
        fi
        if [ -n "$extra" ]; then
            m "            $extra"
        fi
        echo "        }"
    }

    # the subscriber location: SSE (or WebSocket) of the channel and the
    # stream that /st-stream publishes for user ?user=
    sub_loc() {
        echo "location /sub {"
        echo "            ws_agent_subscribe agent:events:\$arg_user;"
        echo "            ws_agent_subscribe_stream agent:stream:\$arg_user;"
        echo "        }"
    }

    cat > "$dir/nginx.conf" <<EOF
$(m "load_module $module;")
worker_processes 1;
$main
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;

events {
    worker_connections $conns;
}

http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    $(redis_conf)

    upstream echo { server 127.0.0.1:$bport; }
    upstream echo_events { server 127.0.0.1:$eport; }
    $([ -n "${sport:-}" ] && echo "upstream echo_stream { server 127.0.0.1:$sport; }")
    $([ -n "${subport:-}" ] && echo "upstream echo_substream { server 127.0.0.1:$subport; }")

    proxy_http_version 1.1;
    proxy_set_header Upgrade \$http_upgrade;
    proxy_set_header Connection "upgrade";
    proxy_read_timeout 1h;
    proxy_send_timeout 1h;

    server {
        listen 127.0.0.1:$nport backlog=$backlog;

        $(loc /ws echo 1)
        $(loc /ev-nopub echo_events 0)
        $(loc /ev echo_events 1)
        $([ -n "${sport:-}" ] && loc /st-nopub echo_stream 0)
        $([ -n "${sport:-}" ] && loc /st echo_stream 1)
        $(loc /ev-stream echo_events 1 1)
        $([ -n "${subport:-}" ] && loc /st-stream echo_substream 1 1)
        $([ -n "${subport:-}" ] && [ "$kind" = module ] && sub_loc)

        $(m "location = /ws-agent/metrics { ws_agent_status prometheus; }")
    }
}
EOF
}
