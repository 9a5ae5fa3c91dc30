# The nginx.conf of both bench scripts (sourced by run.sh and callgrind.sh):
# stock and module get the same file, the module's lines only in "module".
#
#   bench_conf KIND DIR MAIN CONNS BACKLOG EXTRA
#
# KIND stock | module; DIR gets nginx.conf, logs/, tmp/; MAIN: lines for the
# main context (process model, affinity, limits); CONNS: worker_connections;
# BACKLOG: the listen backlog; EXTRA: one more directive in every module
# location (or "").  Uses the caller's $module, $rport, $bport, $eport,
# $nport, and $sport when set (the paced stream's backend).

bench_conf() {
    local kind=$1 dir=$2 main=$3 conns=$4 backlog=$5 extra=$6
    mkdir -p "$dir/logs" "$dir/tmp"

    m() { [ "$kind" = module ] && echo "$*" || true; }

    # one WebSocket location: $1 path, $2 upstream, $3 1 = publish
    loc() {
        echo "location $1 {"
        echo "            proxy_pass http://$2;"
        m "            ws_agent on;"
        m "            ws_agent_user \$http_x_user_id;"
        if [ "$3" = 1 ]; then
            m "            ws_agent_publish agent:events:\$ws_agent_user;"
        fi
        if [ -n "$extra" ]; then
            m "            $extra"
        fi
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
    $(m "ws_agent_redis 127.0.0.1:$rport;")

    upstream echo { server 127.0.0.1:$bport; }
    upstream echo_events { server 127.0.0.1:$eport; }
    $([ -n "${sport:-}" ] && echo "upstream echo_stream { server 127.0.0.1:$sport; }")

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

        $(m "location = /ws-agent/metrics { ws_agent_status prometheus; }")
    }
}
EOF
}
