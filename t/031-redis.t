# The Redis side of publishing: down at start, killed mid-stream, AUTH and
# db, unix sockets, reloads.  The relay never waits for Redis; what waited
# in the queue arrives once Redis is back.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

repeat_each(1);
no_shuffle();
use_redis();

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", $ws_location) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: Redis down when nginx starts, started later: queued events flow after the reconnect
--- redis_stopped
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_thinking"}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_thinking"}
redis_start
sleep 1500ms
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 "seq":1,.*"type":"agent_started"
agent:events:1 "seq":2,.*"type":"agent_thinking"
--- wait: 5
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ unavailable \(.*\); events wait in a queue of 10000, reconnecting with back-off/,
 qr/\[notice\].*ws_agent: Redis 127\.0\.0\.1:\d+ connected again, 2 event\(s\) waiting/]



=== TEST 2: Redis killed mid-stream: the client gets every frame; publishing resumes, nothing lost
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
wait 500ms
send text {"type":"agent_thinking"}
send text {"type":"tool_executing"}
wait 1500ms
send text {"type":"agent_completed"}
record
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
redis_stop
recv text {"type":"agent_thinking"}
recv text {"type":"tool_executing"}
redis_start
recv text {"type":"agent_completed"} within 3s
sleep 1500ms
send close 1000
recv close 1000
--- redis_subscribe: agent:events:2
--- redis_messages_like
agent:events:2 "seq":1,.*"type":"agent_started"
agent:events:2 "seq":2,.*"type":"agent_thinking"
agent:events:2 "seq":3,.*"type":"tool_executing"
agent:events:2 "seq":4,.*"type":"agent_completed"
--- wait: 5
--- error_log eval
[qr/ws_agent: Redis 127\.0\.0\.1:\d+ unavailable/,
 qr/ws_agent: Redis 127\.0\.0\.1:\d+ connected again/]



=== TEST 3: a full queue drops the oldest events, counted and logged; seq shows the gap
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_redis_queue 2;
--- redis_stopped
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_started","n":2}
send text {"type":"agent_started","n":3}
send text {"type":"agent_started","n":4}
record
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_started","n":2}
recv text {"type":"agent_started","n":3}
recv text {"type":"agent_started","n":4}
redis_start
sleep 1500ms
send close 1000
recv close 1000
--- redis_subscribe: agent:events:3
--- redis_messages_like
agent:events:3 "seq":3,.*"n":3\}\}$
agent:events:3 "seq":4,.*"n":4\}\}$
--- wait: 5
--- error_log eval
[qr/\[warn\].*ws_agent: Redis queue full \(2 events\), dropped 2 oldest unsent event\(s\)$/]



=== TEST 4: requirepass with password= works
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=s3cret;
--- redis_config
requirepass s3cret
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:4
--- redis_messages_like
agent:events:4 "seq":1,.*"type":"agent_started"



=== TEST 5: a wrong password is logged clearly, the relay is untouched
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=wrong;
--- redis_config
requirepass s3cret
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 5
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:5
--- redis_messages
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ refused AUTH \(check ws_agent_redis user= and password=\): WRONGPASS/]



=== TEST 6: db= selects the database (PUBLISH is server-wide; a wrong db is refused clearly)
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=99;
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: 6
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ refused SELECT \(check ws_agent_redis db=\): ERR/]



=== TEST 7: a unix socket address
--- http_config
    ws_agent_redis unix:$TEST_NGINX_REDIS_SOCK db=1;
--- redis_unix
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"tool_completed"}
record
--- ws_client
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"tool_completed"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:7
--- redis_messages_like
agent:events:7 "seq":1,.*"type":"tool_completed"



=== TEST 8: a graceful reload while events flow: the old worker finishes its connection, nothing lost
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
wait 600ms
send text {"type":"agent_completed"}
echo
--- ws_client
handshake /ws X-User-Id: 8
send text before-ack
nginx_reload
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_completed"} within 2s
send text after-reload
recv text after-reload
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
sent text {"type":"agent_started"}
recv text before-ack
sent text {"type":"agent_completed"}
recv text after-reload
sent text after-reload
recv close 1000
sent close 1000
--- redis_subscribe: agent:events:8
--- redis_messages_like
agent:events:8 "seq":1,.*"type":"agent_started"
agent:events:8 "seq":2,.*"type":"agent_completed"
--- wait: 3
