# The subscriber location over WebSocket: the same location as the SSE
# clients', upgraded.  Each event is one text frame with the envelope (its
# stream id in "id"); {"type":"live"} says the replay is done; a gap is
# {"type":"gap",...}; heartbeats are pings.  The client's pings are
# answered, its close echoed.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

repeat_each(1);
no_shuffle();
use_redis();

my $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;',
    'ws_agent_stream agent:stream:$ws_agent_user maxlen=100;') . <<'EOC';
        location /sub {
            ws_agent_subscribe agent:events:$arg_user;
            ws_agent_subscribe_stream agent:stream:$arg_user;
            ws_agent_subscribe_heartbeat 300ms;
        }
        location = /status { ws_agent_status; }
EOC

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n[error]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: a WebSocket subscriber gets the user's events live, each a text frame with the stream id
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_completed"}
record
--- ws_client
handshake /sub?user=7
recv text {"type":"live"}
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_completed"}
conn 1
recv_like text ^\{"id":"\d+-\d+","connection_id":"ws_7_\d+_[0-9a-f]{8}","user":"7","seq":1,"ts_ms":\d+,"type":"agent_started","event":\{"type":"agent_started"\}\}$
recv_like text ^\{"id":"\d+-\d+","connection_id":"ws_7_.*"seq":2,.*"type":"agent_completed"
recv ping
send ping hi
recv pong hi
send close 1000
recv close 1000



=== TEST 2: resumed with last_event_id=0: the whole stream first, then {"type":"live"}
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_started","n":2}
send text {"type":"agent_started","n":3}
record
--- ws_client
handshake /ws X-User-Id: 8
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_started","n":2}
recv text {"type":"agent_started","n":3}
sleep 200ms
handshake /sub?user=8&last_event_id=0
recv_like text "seq":1,.*"n":1\}\}$
recv_like text "seq":2,.*"n":2\}\}$
recv_like text "seq":3,.*"n":3\}\}$
recv text {"type":"live"}
send close 1000
recv close 1000



=== TEST 3: an id trimmed away: {"type":"gap"} with the oldest id left, then the rest
--- ws_client
redis_cmd XADD agent:stream:9 5-0 t agent_started e {"seq":5}
redis_cmd XADD agent:stream:9 6-0 t agent_started e {"seq":6}
handshake /sub?user=9&last_event_id=4-0
recv text {"type":"gap","last_event_id":"4-0","first_id":"5-0"}
recv text {"id":"5-0","seq":5}
recv text {"id":"6-0","seq":6}
recv text {"type":"live"}
send close 1000
recv close 1000
