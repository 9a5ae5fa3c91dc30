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

# a debug line per frame of the many connections would be the main cost
log_level('info');

$ENV{TEST_NGINX_CONNS} ||= 24;
our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed chat_message Xgent_started);
our %Published = map { $_ => 1 } @Types[0 .. 4];

# every type cut once at every offset from 3 to 28, the types taking turns
sub every_cut {
    map { my $cut = $_; map { [qq({"type":"$_","user":"\$user","cut":$cut}),
                               $cut] } @Types } 3 .. 28;
}

# what connection $i's WebSocket subscriber must get, in order: every
# published one, with its stream id first and its seq
sub subscribed {
    my $seq = 0;
    map { my ($type) = $_->[0] =~ /^\{"type":"(\w+)"/;
          $Published{$type}
              ? do { $seq++;
                     (my $ev = $_->[0] =~ s/\$user/\$i/r) =~ s/([{}])/\\$1/g;
                     "recv_like text ^\\{\"id\":\"\\d+-\\d+\",\"connection_id\":"
                     . "\"ws_\$i(?:_)\\d+_[0-9a-f]{8}\",\"user\":\"\$i\",\"seq\":$seq,"
                     . "\"ts_ms\":\\d{13},\"type\":\"$type\",\"event\":$ev\\}\$" }
              : () } every_cut();
}

our $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;',
    'ws_agent_stream agent:stream:$ws_agent_user maxlen=100;') . <<'EOC';
        location /sub {
            ws_agent_subscribe agent:events:$arg_user;
            ws_agent_subscribe_stream agent:stream:$arg_user;
            ws_agent_subscribe_heartbeat 30s;
        }
        location = /status { ws_agent_status; }
EOC

add_block_preprocessor(sub {
    my $block = shift;

    # under valgrind nginx is one process: no worker to reload
    if ($ENV{TEST_NGINX_USE_VALGRIND} && defined $block->needs_workers) {
        $block->set_value("SKIP", 1);
    }

    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n[error]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: a WebSocket subscriber gets the user's events live, each a text frame with the stream id; a ping after 300 ms of silence
--- config eval
$::config =~ s/heartbeat 30s/heartbeat 300ms/r
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



=== TEST 4: many subscribers in one worker, each of its own user, whose events come cut at every offset: each gets its user's events once, in order, with their ids, and no one else's
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait random 0-200ms',
    map({ "send text $_->[0] pieces $_->[1] gap random 1-3ms" } ::every_cut()),
    'record'
--- ws_client eval
CORE::join "\n", 'parallel $TEST_NGINX_CONNS', 'handshake /sub?user=$i',
    'recv text {"type":"live"}',
    'handshake /ws X-User-Id: $i',
    'recv text {"type":"connection_ready"}',
    map({ "recv text " . $_->[0] =~ s/\$user/\$i/r } ::every_cut()),
    'conn 1',
    ::subscribed(),
    'recv nothing 300ms',
    'send close 1000', 'recv close 1000'
--- wait: 10
--- timeout: 20
--- ws_backend_connections: $TEST_NGINX_CONNS



=== TEST 5: Redis restarted (with its append-only file) while a subscriber is connected: it keeps receiving, and what was published meanwhile comes from the stream, once
--- redis_config
appendonly yes
appendfsync always
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
wait 1000ms
send text {"type":"tool_executing","n":3}
send text {"type":"tool_completed","n":4}
wait 1500ms
send text {"type":"agent_completed","n":5}
record
--- ws_client
handshake /sub?user=11
recv text {"type":"live"}
handshake /ws X-User-Id: 11
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
conn 1
recv_like text "seq":1,.*"n":1\}\}$
recv_like text "seq":2,.*"n":2\}\}$
redis_stop
sleep 300ms
redis_start
recv_like text "seq":3,.*"n":3\}\}$ within 5s
recv_like text "seq":4,.*"n":4\}\}$
recv_like text "seq":5,.*"n":5\}\}$ within 5s
recv nothing 300ms
http_get /status => "subscribers":1,"subscriptions":1,.*"subscriber_gaps_total":0,
send close 1000
recv close 1000
--- wait: 8
--- timeout: 10
--- no_error_log
[alert]
[crit]
--- error_log
unavailable for subscribers



=== TEST 6: Redis restarted empty (no persistence): the subscriber is told of the gap, then gets what came after
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
wait 1000ms
send text {"type":"tool_executing","n":2}
wait 1500ms
send text {"type":"agent_completed","n":3}
record
--- ws_client
handshake /sub?user=12
recv text {"type":"live"}
handshake /ws X-User-Id: 12
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
conn 1
recv_like text "seq":1,.*"n":1\}\}$
redis_stop
sleep 300ms
redis_start
recv_like text ^\{"type":"gap","last_event_id":"\d+-\d+","first_id":"(\d+-\d+)?"\}$ within 5s
recv_like text "seq":2,.*"n":2\}\}$ within 5s
recv_like text "seq":3,.*"n":3\}\}$ within 5s
recv nothing 300ms
send close 1000
recv close 1000
--- wait: 8
--- timeout: 10
--- no_error_log
[alert]
[crit]



=== TEST 7: one SUBSCRIBE per channel per worker: three subscribers of one user, one of another; UNSUBSCRIBE when the last leaves
--- ws_client
handshake /sub?user=21
recv text {"type":"live"}
handshake /sub?user=21
recv text {"type":"live"}
handshake /sub?user=21
recv text {"type":"live"}
handshake /sub?user=22
recv text {"type":"live"}
redis_cmd PUBSUB NUMSUB agent:events:21 agent:events:22 => [agent:events:21, 1, agent:events:22, 1]
http_get /status => "subscribers":4,"subscriptions":2,
redis_cmd PUBLISH agent:events:21 {"id":"9999999999999-0","seq":1} => 1
conn 1
recv text {"id":"9999999999999-0","seq":1}
conn 2
recv text {"id":"9999999999999-0","seq":1}
conn 3
recv text {"id":"9999999999999-0","seq":1}
conn 4
recv nothing 200ms
conn 1
send close 1000
recv close 1000
conn 2
send close 1000
recv close 1000
redis_cmd PUBSUB NUMSUB agent:events:21 => [agent:events:21, 1]
conn 3
send close 1000
recv close 1000
sleep 200ms
redis_cmd PUBSUB NUMSUB agent:events:21 => [agent:events:21, 0]
http_get /status => "subscribers":1,"subscriptions":1,



=== TEST 8: nginx -t: ws_agent_subscribe without ws_agent_redis
--- http_config
--- config
    location /sub { ws_agent_subscribe agent:events:$arg_user; }
--- must_die
--- error_log
"ws_agent_subscribe" is set but no "ws_agent_redis" is configured in the http block



=== TEST 9: nginx -t: in a Redis Cluster, a subscriber's stream without a hash tag is refused, saying what it needs
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:7000;
--- config
    location /sub { ws_agent_subscribe "agent:events:{$arg_user}"; ws_agent_subscribe_stream agent:stream:$arg_user; }
--- must_die
--- error_log
"ws_agent_subscribe_stream" "agent:stream:$arg_user" has no {hash tag}: in a Redis Cluster the stream and the channel must share one



=== TEST 10: nginx -t: in a Redis Cluster, a subscriber's channel without its stream's hash tag is refused
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:7000;
--- config
    location /sub { ws_agent_subscribe agent:events:$arg_user; ws_agent_subscribe_stream "agent:stream:{$arg_user}"; }
--- must_die
--- error_log
"ws_agent_subscribe" "agent:events:$arg_user" does not carry the stream's hash tag "{$arg_user}": in a Redis Cluster both must be on one slot



=== TEST 11: nginx -t: a subscriber buffer under 8k
--- config
    location /sub { ws_agent_subscribe agent:events:$arg_user; ws_agent_subscribe_buffer 4k; }
--- must_die
--- error_log
"ws_agent_subscribe_buffer" must be at least 8k (it holds the largest event twice)



=== TEST 12: nginx -t: ws_agent_subscribe twice
--- config
    location /sub { ws_agent_subscribe a; ws_agent_subscribe b; }
--- must_die
--- error_log
"ws_agent_subscribe" directive is duplicate



=== TEST 13: nginx -t: an empty channel
--- config
    location /sub { ws_agent_subscribe ""; }
--- must_die
--- error_log
"ws_agent_subscribe" directive takes a channel name, not an empty string



=== TEST 14: nginx -t: a zero heartbeat or retry
--- config
    location /sub { ws_agent_subscribe a; ws_agent_subscribe_heartbeat 0; }
--- must_die
--- error_log
"ws_agent_subscribe_heartbeat" directive must be greater than zero



=== TEST 15: a channel that evaluates empty is refused with 403, logged; a Last-Event-ID that is no stream id with 400
--- config
    location /sub {
        ws_agent_subscribe $arg_user;
        ws_agent_subscribe_stream agent:stream:$arg_user;
    }
--- ws_client
http_get /sub => 403 Forbidden
http_get /sub?user=1&last_event_id=abc => 400 Bad Request
http_get /sub?user=1&last_event_id=12- => 400 Bad Request
--- error_log
ws_agent subscriber: channel "$arg_user" names nobody, refused
Last-Event-ID "abc" is not a stream id



=== TEST 16: a reload closes the old worker's subscribers at once (it does not wait for them); they come back on the new one and resume
--- needs_workers
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
record
--- ws_client
handshake /sub?user=31
recv text {"type":"live"}
handshake /ws X-User-Id: 31
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
conn 1
recv_like text "seq":1,.*"n":1\}\}$
nginx_reload
recv eof within 5s
handshake /sub?user=31&last_event_id=0
recv_like text "seq":1,.*"n":1\}\}$
recv text {"type":"live"}
send close 1000
recv close 1000
--- no_error_log
[alert]
[crit]
[error]
open socket
