#!/bin/bash
# The race ngx_ws_agent closes, shown end to end on loopback.  From a fresh
# Debian 12 machine, as root:
#
#   scripts/demo.sh
#
# Installs what is missing (bootstrap.sh), builds the module (build.sh), then
# in a temporary directory starts a private redis-server, the demo backend
# (scripts/demo/backend.pl: 300 ms of set-up with its receive loop already
# running), nginx with the built module, and a Redis subscriber; runs the
# same client (scripts/demo/client.pl) straight at the backend and then
# through nginx; prints what the subscriber received; stops everything it
# started, by PID.  Then a second client of the same user, an SSE
# subscriber (curl -N on nginx's ws_agent_subscribe location), watches the
# events live, goes away during a second run, and resumes with its last id:
# it gets exactly the events it missed, from the user's Redis Stream.
# Nothing of the system's nginx or redis is used.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

say() { printf '\n== %s\n' "$*"; }

say "bootstrap and build"
scripts/bootstrap.sh
scripts/build.sh

so="$repo/build/ngx_ws_agent_module.so"
nginx_bin=${NGINX_BINARY:-/usr/sbin/nginx}
user_id=42
channel="agent:events:$user_id"

tmp=$(mktemp -d /tmp/ngx_ws_agent_demo.XXXXXX)
chmod 755 "$tmp"          # nginx's workers run as nobody
pids=()

stop() {
    local pid
    # newest first: the subscriber and nginx go before Redis and the backend
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap stop EXIT
trap 'exit 130' INT TERM

# free loopback ports, from the kernel
read -r redis_port backend_port nginx_port < <(perl -I t/lib \
    -MWsAgent::Util=free_port -e 'print join(" ", map free_port(), 1..3), "\n"')

wait_for() {    # wait_for SECONDS DESCRIPTION COMMAND...
    local secs=$1 what=$2
    shift 2
    for _ in $(seq $((secs * 20))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "demo: $what did not come up; logs in $tmp:" >&2
    tail -n 20 "$tmp"/*.log >&2 || true
    exit 1
}

say "starting redis-server, the backend, nginx and a subscriber (in $tmp)"

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --dir "$tmp" \
    --logfile "$tmp/redis.log" &
redis_pid=$!
wait_for 5 "redis-server" sh -c \
    "redis-cli -p $redis_port PING | grep -q PONG"
echo "redis-server  127.0.0.1:$redis_port  pid $redis_pid  (no persistence)"

perl scripts/demo/backend.pl "$backend_port" 300 &
backend_pid=$!
pids+=("$backend_pid")
wait_for 5 "the backend" perl -MIO::Socket::INET -e \
    "IO::Socket::INET->new('127.0.0.1:$backend_port') or exit 1"
echo "backend       127.0.0.1:$backend_port  pid $backend_pid  (300 ms set-up)"

mkdir -p "$tmp/logs" "$tmp/tmp"
cat > "$tmp/nginx.conf" <<EOF
load_module $so;

daemon off;
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log info;

events { worker_connections 256; }

http {
    client_body_temp_path $tmp/tmp/body;
    proxy_temp_path       $tmp/tmp/proxy;
    fastcgi_temp_path     $tmp/tmp/fastcgi;
    uwsgi_temp_path       $tmp/tmp/uwsgi;
    scgi_temp_path        $tmp/tmp/scgi;

    log_format ws_agent '\$remote_addr "\$request" \$status'
                        ' id=\$ws_agent_connection_id user=\$ws_agent_user'
                        ' ready_ms=\$ws_agent_ready_ms'
                        ' held=\$ws_agent_frames_held'
                        ' published=\$ws_agent_events_published'
                        ' close=\$ws_agent_close_code';

    ws_agent_redis 127.0.0.1:$redis_port;

    upstream agent_backend { server 127.0.0.1:$backend_port; }

    server {
        listen 127.0.0.1:$nginx_port;
        access_log $tmp/logs/access.log ws_agent;

        location /ws {
            proxy_pass http://agent_backend;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-WS-Connection-Id \$ws_agent_connection_id;
            proxy_read_timeout 1h;

            ws_agent on;
            ws_agent_user \$http_x_user_id;
            ws_agent_publish agent:events:\$ws_agent_user;
            ws_agent_stream agent:stream:\$ws_agent_user maxlen=1000;
            ws_agent_lifecycle on;
        }

        # the user's other clients: Server-Sent Events, resumable
        location /sub {
            ws_agent_subscribe agent:events:\$arg_user;
            ws_agent_subscribe_stream agent:stream:\$arg_user;
        }
    }
}
EOF

"$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" -t -q
"$nginx_bin" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/logs/error.log" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_for 5 "nginx" perl -MIO::Socket::INET -e \
    "IO::Socket::INET->new('127.0.0.1:$nginx_port') or exit 1"
echo "nginx         127.0.0.1:$nginx_port  pid $nginx_pid  ($so)"

redis-cli -p "$redis_port" --raw SUBSCRIBE "$channel" > "$tmp/sub.out" 2>&1 &
sub_pid=$!
pids+=("$sub_pid")
wait_for 5 "the subscriber" grep -q "^$channel\$" "$tmp/sub.out"
echo "subscriber    redis-cli SUBSCRIBE $channel  pid $sub_pid"

sse_url="http://127.0.0.1:$nginx_port/sub?user=$user_id"
curl -sN "$sse_url" > "$tmp/sse1.out" 2>&1 &
sse_pid=$!
pids+=("$sse_pid")
wait_for 5 "the SSE subscriber" grep -q '^: live' "$tmp/sse1.out"
echo "SSE client    curl -N $sse_url  pid $sse_pid"

# Redis last, so it outlives the subscriber and nginx's publisher
pids=("$redis_pid" "${pids[@]}")

say "(1) the client straight to the backend, no nginx: the first message is lost"
perl scripts/demo/client.pl "$backend_port" /ws "$user_id" 1000 || true
sleep 0.2

say "(2) the same client through nginx + ngx_ws_agent: held until the ack"
perl scripts/demo/client.pl "$nginx_port" /ws "$user_id" 1000 || true

# the connection's end is logged and published when nginx finalizes it
wait_for 3 "the ws_close envelope" grep -q '"type":"ws_close"' "$tmp/sub.out"
wait_for 3 "the access log line" test -s "$tmp/logs/access.log"

echo
echo "  nginx error.log (ws_agent lines):"
grep 'ws_agent' "$tmp/logs/error.log" | sed 's/^[0-9/]* [0-9:]* /    /'
echo "  nginx access.log (the module's variables):"
sed 's/^/    /' "$tmp/logs/access.log"

say "(3) what the subscriber on $channel received (one envelope per event)"
perl -MJSON::PP -ne '
    BEGIN { $j = JSON::PP->new->canonical }
    chomp;
    if ($want == 2) { $want = 0; $n++;
        my $e = eval { $j->decode($_) };
        printf "  %-16s seq=%-2s %s\n", $e ? $e->{type} : "?",
               $e ? $e->{seq} : "?", $_;
        next }
    if ($want == 1) { $want = 2; next }
    $want = 1 if $_ eq "message";
    END { print "  ($n envelopes)\n" }' "$tmp/sub.out"

sse_events() {     # the events of an SSE capture: id, event type, seq
    perl -ne '
        $id = $1 if /^id: (.*)/;
        $ev = $1 if /^event: (.*)/;
        if (/^data: .*"seq":(\d+)/) { $n++;
            printf "  id=%-17s %-16s seq=%s\n", $id, $ev, $1 }
        END { print "  ($n events)\n" }' "$1"
}

say "(4) a second client of user $user_id: an SSE subscriber (curl -N $sse_url)"
echo "  it watched run (2) live:"
sse_events "$tmp/sse1.out"
last_id=$(sed -n 's/^id: //p' "$tmp/sse1.out" | tail -n 1)

kill -TERM "$sse_pid"
wait "$sse_pid" 2>/dev/null || true
echo "  it disconnects (last id $last_id); the agent runs again meanwhile:"
perl scripts/demo/client.pl "$nginx_port" /ws "$user_id" 1000 > /dev/null || true
wait_for 3 "the second run's ws_close" sh -c \
    "test \$(grep -c '\"type\":\"ws_close\"' '$tmp/sub.out') -ge 2"

say "(5) it resumes with Last-Event-ID: $last_id"
curl -sN -H "Last-Event-ID: $last_id" "$sse_url" > "$tmp/sse2.out" 2>&1 &
sse_pid=$!
pids+=("$sse_pid")
wait_for 5 "the resumed SSE subscriber" grep -q '^: live' "$tmp/sse2.out"
echo "  replayed from the stream, then live (': live'), exactly what it missed:"
sse_events "$tmp/sse2.out"
first_seq=$(sed -n 's/^data: .*"seq":\([0-9]*\).*/\1/p' "$tmp/sse2.out" | head -n 1)
echo "  (the second run's connection counts seq from $first_seq again; no id"
echo "   of the first run comes twice, none of the second is missing)"

say "done: stopping everything this demo started"
