# ws_agent_status: counters of all workers from shared memory, as JSON and
# in Prometheus's exposition format; they move exactly as the traffic of the
# block implies, with two workers, and survive a reload.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(with_changes ws_location);

repeat_each(1);
no_shuffle();
workers(2);

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 500ms;',
    'ws_agent_user $http_x_user_id;');
my $status = <<'_EOC_';
    location = /status { ws_agent_status; }
    location = /metrics { ws_agent_status prometheus; }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    # under valgrind nginx is one process: no second worker, no reload
    if ($ENV{TEST_NGINX_USE_VALGRIND} && defined $block->needs_workers) {
        $block->set_value("SKIP", 1);
    }

    $block->set_value("config",
                      with_changes($ws_location, $block->ws_agent) . $status)
        unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: JSON: three gated connections, two held frames each
--- ws_backend
wait 400ms
send text {"type":"connection_ready"}
record
--- ws_client
http_get /status => "connections_total":0,"connections_active":0,"connections_gated":0,"acks_total":0,
handshake /ws
send text a
send text b
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
handshake /ws
send text a
send text b
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
handshake /ws
send text a
send text b
recv text {"type":"connection_ready"}
sleep 100ms
http_get /status => "connections_total":3,"connections_active":1,"connections_gated":0,"acks_total":3,"ready_timeouts_total":0,"backend_failed_before_ready_total":0,"client_left_while_gated_total":0,"frames_held_total":6,"bytes_held_total":\d+,"frames_dropped_total":0,
send close 1000
recv close 1000
sleep 300ms
http_get /status => "connections_total":3,"connections_active":0,.*"ready_ms":\{"count":3,"sum":\d+,"p50":[\d.]+,"p99":[\d.]+,"buckets":\{"1":\d+,"5":\d+,.*"\+Inf":0\}\},"redis_workers":\[\]\}



=== TEST 2: Prometheus: every line follows the exposition grammar; close codes and protocol errors are counted
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 81026869
recv close 1002
sleep 300ms
http_get /metrics => \A(?:(?:# HELP ngx_ws_agent_[a-z_]+ [^\n]+|# TYPE ngx_ws_agent_[a-z_]+ (?:counter|gauge|histogram)|ngx_ws_agent_[a-z_]+(?:\{[a-z]+="[^"\n]*"\})? [0-9]+(?:\.[0-9]+)?)\n)+\z
http_get /metrics => (?m)^ngx_ws_agent_closes_sent_total\{code="1002"\} 1$.*^ngx_ws_agent_protocol_errors_total\{side="client"\} 1$\n^ngx_ws_agent_protocol_errors_total\{side="backend"\} 0$
http_get /metrics => (?m)^ngx_ws_agent_ready_seconds_bucket\{le="0\.001"\} \d+$.*^ngx_ws_agent_ready_seconds_bucket\{le="0\.01"\} \d+$.*^ngx_ws_agent_ready_seconds_bucket\{le="2\.5"\} \d+$.*^ngx_ws_agent_ready_seconds_bucket\{le="10"\} \d+$.*^ngx_ws_agent_ready_seconds_bucket\{le="\+Inf"\} 1$\n^ngx_ws_agent_ready_seconds_sum [0-9.]+$\n^ngx_ws_agent_ready_seconds_count 1$



=== TEST 3: a ready timeout and a backend gone before its ack
--- ws_backend
wait 1s
--- ws_client
handshake /ws
send text lost
recv close 1013 within 2s
sleep 300ms
http_get /metrics => (?m)^ngx_ws_agent_ready_timeouts_total 1$.*^ngx_ws_agent_frames_dropped_total 1$.*^ngx_ws_agent_closes_sent_total\{code="1013"\} 1$



=== TEST 4: the format can be asked for; an unknown one is a clear 400
--- request
GET /status?format=xml
--- error_code: 400
--- response_body
unknown format "xml": use json or prometheus



=== TEST 5: ?format=prometheus on a JSON status location
--- request
GET /status?format=prometheus
--- response_headers
Content-Type: text/plain; version=0.0.4
--- response_body_like: ^# HELP ngx_ws_agent_connections_total



=== TEST 6: counters survive a reload
--- needs_workers
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
sleep 300ms
http_get /status => "connections_total":1,
nginx_reload
sleep 1s
http_get /status => "connections_total":1,"connections_active":0,
handshake /ws
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
sleep 300ms
http_get /status => "connections_total":2,"connections_active":0,



=== TEST 7: events and Redis: seen, published, dropped by reason, worker state (both connections get all seven messages; the second has no user)
--- needs_workers
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- ws_agent
ws_agent_publish agent:events:$ws_agent_user;
ws_agent_event_max_size 100;
--- redis_config
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_completed"}
send text not json
send text {"type":"chat"}
send text {"no":"type"}
send text {"type":"agent_thinking","pad":"................................................................................................"}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_completed"}
recv text not json
recv text {"type":"chat"}
recv text {"no":"type"}
recv_like text agent_thinking
handshake /ws
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 500ms
http_get /status => "events_seen_total":6,"events_queued_total":2,"events_published_total":2,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":0,"redis_error":0,"lost_at_exit":0,"oversized":1,"not_json":2,"untyped":2,"other_type":2,"unrouted":3\}
http_get /status => "redis_workers":\[\{"pid":\d+,"connected":true,"queued":0,"in_flight":0,"reconnects":0,"published":\d+,"last_error":"","address":"127\.0\.0\.1:\d+","tls":false,"role":"master"\},\{"pid":\d+,"connected":true,



=== TEST 8: two workers both publish (reuseport spreads 20 connections), every event arrives, the counters add up
--- needs_workers
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 reuseport;
        location /ws {
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            ws_agent on;
            ws_agent_user $http_x_user_id;
            ws_agent_publish agent:all;
        }
    }
--- config
    location = /status { ws_agent_status; }
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client eval
CORE::join("\n", 'port $TEST_NGINX_RAND_PORT_1',
    (map { ("handshake /ws X-User-Id: u$_",
            'recv text {"type":"connection_ready"}',
            'recv text {"type":"agent_started"}') } 1 .. 20),
    'sleep 500ms',
    'port $TEST_NGINX_SERVER_PORT',
    'http_get /status => "events_published_total":20,.*"redis_workers":\[\{"pid":\d+,"connected":true,[^}]*"published":[1-9]\d*,[^}]*\},\{"pid":\d+,"connected":true,[^}]*"published":[1-9]\d*,')
--- redis_subscribe: agent:all
--- redis_messages_like eval
CORE::join "\n", map { 'agent:all "seq":1,.*"type":"agent_started"' } 1 .. 20
--- wait: 3



=== TEST 9: workers SIGKILLed with a gated connection: the respawned workers' status leaves the dead ones' gauges and Redis slots out
--- needs_workers
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- redis_config
--- ws_backend
wait 1500ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
sleep 200ms
http_get /status => "connections_active":1,"connections_gated":1,
nginx_kill_workers
recv eof
sleep 500ms
http_get /status => "connections_active":0,"connections_gated":0,
http_get /status => "redis_workers":\[\{"pid":\d+,[^\]]*?\},\{"pid":\d+,[^\]]*?\}\]\}
--- no_error_log
[crit]
[emerg]
--- error_log
exited on signal 9



=== TEST 10: a client that left while gated is sent no 1013 and none is counted; its held frame is counted as dropped
--- ws_backend
wait 1500ms
--- ws_client
handshake /ws
send text lost
drop
sleep 1200ms
http_get /metrics => (?m)^ngx_ws_agent_ready_timeouts_total 1$.*^ngx_ws_agent_frames_dropped_total 1$.*^ngx_ws_agent_closes_sent_total\{code="1001"\} 0$.*^ngx_ws_agent_closes_sent_total\{code="1013"\} 0$
--- error_log
client left while gated, 1 frames held for the backend
backend not ready after
--- timeout: 5
