# Agent events to Redis pub/sub: the configured types, one envelope each, on
# the connection's own channel, in order, without ever holding the relay.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(with_changes ws_location);

repeat_each(1);
no_shuffle();
use_redis();

my $http = <<'_EOC_';
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", $http) unless defined $block->http_config;
    $block->set_value("config", with_changes($ws_location, $block->ws_agent))
        unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: the five agent events reach the user's channel as exact envelopes, seq 1..5
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","run":1}
send text {"type":"agent_thinking","text":"hm"}
send text {"type":"tool_executing","tool":"search","args":{"q":"x"}}
send text {"type":"tool_completed","tool":"search","ok":true}
send text {"type":"agent_completed","answer":"42"}
record
--- ws_client
handshake /ws X-User-Id: 42
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","run":1}
recv text {"type":"agent_thinking","text":"hm"}
recv text {"type":"tool_executing","tool":"search","args":{"q":"x"}}
recv text {"type":"tool_completed","tool":"search","ok":true}
recv text {"type":"agent_completed","answer":"42"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:42
--- redis_messages_like
agent:events:42 ^\{"connection_id":"ws_42_\d+_[0-9a-f]{8}","user":"42","seq":1,"ts_ms":\d{13},"type":"agent_started","event":\{"type":"agent_started","run":1\}\}$
agent:events:42 ^\{"connection_id":"ws_42_\d+_[0-9a-f]{8}","user":"42","seq":2,"ts_ms":\d{13},"type":"agent_thinking","event":\{"type":"agent_thinking","text":"hm"\}\}$
agent:events:42 ^\{"connection_id":"ws_42_\d+_[0-9a-f]{8}","user":"42","seq":3,"ts_ms":\d{13},"type":"tool_executing","event":\{"type":"tool_executing","tool":"search","args":\{"q":"x"\}\}\}$
agent:events:42 ^\{"connection_id":"ws_42_\d+_[0-9a-f]{8}","user":"42","seq":4,"ts_ms":\d{13},"type":"tool_completed","event":\{"type":"tool_completed","tool":"search","ok":true\}\}$
agent:events:42 ^\{"connection_id":"ws_42_\d+_[0-9a-f]{8}","user":"42","seq":5,"ts_ms":\d{13},"type":"agent_completed","event":\{"type":"agent_completed","answer":"42"\}\}$



=== TEST 2: other types, invalid JSON, non-objects and binary frames are relayed, not published
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"chat_message","text":"hi"}
send text not json {
send text ["agent_started"]
send text {"kind":"agent_started"}
send binary 7b2274797065223a226167656e745f73746172746564227d
send text {"type":"agent_completed"}
record
--- ws_client
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"chat_message","text":"hi"}
recv text not json {
recv text ["agent_started"]
recv text {"kind":"agent_started"}
recv binary 7b2274797065223a226167656e745f73746172746564227d
recv text {"type":"agent_completed"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:7
--- redis_messages_like
agent:events:7 "seq":1,.*"type":"agent_completed","event":\{"type":"agent_completed"\}\}$



=== TEST 3: a fragmented event is published whole
--- ws_backend
send text {"type":"connection_ready"}
send text_fragments {"type":"tool_ | executing","tool": | "calc"} split 3
record
--- ws_client
handshake /ws X-User-Id: 9
recv text {"type":"connection_ready"}
recv text {"type":"tool_executing","tool":"calc"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:9
--- redis_messages_like
agent:events:9 "seq":1,.*"event":\{"type":"tool_executing","tool":"calc"\}\}$



=== TEST 4: an event over ws_agent_event_max_size is relayed but not published
--- ws_agent
ws_agent_event_max_size 40;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_thinking","text":"a long long long thought"}
send text {"type":"agent_thinking","t":"x"}
record
--- ws_client
handshake /ws X-User-Id: 5
recv text {"type":"connection_ready"}
recv text {"type":"agent_thinking","text":"a long long long thought"}
recv text {"type":"agent_thinking","t":"x"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:5
--- redis_messages_like
agent:events:5 "seq":1,.*"event":\{"type":"agent_thinking","t":"x"\}\}$



=== TEST 5: several users at once: no event lands on another user's channel
--- ws_backend
send text {"type":"connection_ready"}
wait random 0-100ms
send text {"type":"agent_started"}
send text {"type":"agent_completed"}
record
--- ws_client
parallel 3
handshake /ws X-User-Id: user$i
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_completed"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:user1 agent:events:user2
--- redis_messages_like eval
my @m;
for my $u (1, 2) {
    push @m, "agent:events:user$u \"user\":\"user$u\",\"seq\":1,.*\"type\":\"agent_started\"";
    push @m, "agent:events:user$u \"user\":\"user$u\",\"seq\":2,.*\"type\":\"agent_completed\"";
}
CORE::join("\n", @m);



=== TEST 6: no user, channel uses it: nothing published, warned with the connection id
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:
--- redis_messages
--- error_log eval
[qr/\[warn\].*ws_agent ws_anon_\d+_[0-9a-f]{8}: ws_agent_user is empty, so channel "agent:events:\$ws_agent_user" names nobody/]



=== TEST 7: ws_agent_events chooses the types
--- ws_agent
ws_agent_publish chan:$ws_agent_user;
ws_agent_events chat_message;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"chat_message","m":1}
record
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"chat_message","m":1}
send close 1000
recv close 1000
--- redis_subscribe: chan:3
--- redis_messages_like
chan:3 "seq":1,.*"type":"chat_message","event":\{"type":"chat_message","m":1\}\}$



=== TEST 8: lifecycle envelopes: ws_open, ws_ready, events, ws_close
--- ws_agent
ws_agent_lifecycle on;
--- ws_backend
wait 100ms
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 11
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:11
--- redis_messages_like
agent:events:11 "seq":1,.*"type":"ws_open","event":\{\}\}$
agent:events:11 "seq":2,.*"type":"ws_ready","event":\{"ready_ms":\d+\}\}$
agent:events:11 "seq":3,.*"type":"agent_started","event":\{"type":"agent_started"\}\}$
agent:events:11 "seq":4,.*"type":"ws_close","event":\{"code":1000,"by":"client"\}\}$



=== TEST 9: lifecycle: ws_ready_timeout and the module's close
--- ws_agent
ws_agent_lifecycle on;
ws_agent_ready_timeout 200ms;
--- ws_backend
wait 1s
--- ws_client
handshake /ws X-User-Id: 12
recv close 1013
--- redis_subscribe: agent:events:12
--- redis_messages_like
agent:events:12 "seq":1,.*"type":"ws_open"
agent:events:12 "seq":2,.*"type":"ws_ready_timeout","event":\{"waited_ms":\d+\}\}$
agent:events:12 "seq":3,.*"type":"ws_close","event":\{"code":1013,"by":"module"\}\}$



=== TEST 10: a user string that needs escaping still makes valid JSON
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: a"b\c
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:a"b\c
--- redis_messages_like
agent:events:a"b\c ^\{"connection_id":"ws_abc_\d+_[0-9a-f]{8}","user":"a\\"b\\\\c","seq":1,



=== TEST 11: an event followed by the start of another value is not JSON: relayed, not published
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","x":1} "x
send text {"type":"agent_thinking"} {
send text {"type":"agent_completed"}
record
--- ws_client
handshake /ws X-User-Id: 13
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","x":1} "x
recv text {"type":"agent_thinking"} {
recv text {"type":"agent_completed"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:13
--- redis_messages_like
agent:events:13 "seq":1,.*"type":"agent_completed","event":\{"type":"agent_completed"\}\}$
