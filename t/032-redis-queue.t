# ws_agent_redis_queue N bounds the events a worker holds for Redis, sent
# or not: at most N waiting and in flight together.  When N are held, the
# oldest event not yet sent gives way; when all N were sent and await
# Redis's reply, the new event is the one dropped.  Either way it is
# counted (events_dropped_total{queue_overflow}) and logged, and the log's
# figures add up to the counter.  Redis is held with CLIENT PAUSE (it reads
# the PUBLISHes but answers none) or stopped; every block checks, from the
# status page and the subscriber, that what arrived plus what was counted
# as dropped is what was queued, and that queued + in flight never exceed N.

use Test::Nginx::Socket 'no_plan';
use WsAgent::Conf qw(ws_location);

repeat_each(1);
no_shuffle();
use_redis();

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;')
    . "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("config", $ws_location) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: queue 1, Redis paused: the one event in flight holds the queue; the 3 after it are dropped, counted, logged once; only the first arrives
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_redis_queue 1;
--- ws_backend
send text {"type":"connection_ready"}
wait 500ms
send text {"type":"agent_started","n":1}
send text {"type":"agent_started","n":2}
send text {"type":"agent_started","n":3}
send text {"type":"agent_started","n":4}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
redis_cmd CLIENT PAUSE 2000 WRITE => OK
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_started","n":2}
recv text {"type":"agent_started","n":3}
recv text {"type":"agent_started","n":4}
sleep 300ms
http_get /status => "events_queued_total":4,"events_published_total":0,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":3,.*"redis_workers":\[\{"pid":\d+,"connected":true,"queued":0,"in_flight":1,
sleep 2s
http_get /status => "events_queued_total":4,"events_published_total":1,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":3,.*"redis_workers":\[\{"pid":\d+,"connected":true,"queued":0,"in_flight":0,
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 "seq":1,.*"n":1\}\}$
--- error_log eval
[qr/\[warn\].*ws_agent: Redis queue full \(1 events, all sent and awaiting replies\), dropped 3 new event\(s\)$/]
--- no_error_log eval
[qr/Redis queue full(?!.*dropped 3 new event)/, '[alert]', '[crit]',
 'not published', 'not sent']



=== TEST 2: queue 3, Redis paused: 3 in flight, the 2 after them dropped; Redis answers the 3 when the pause ends; the log line comes at worker exit if not before
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_redis_queue 3;
--- ws_backend
send text {"type":"connection_ready"}
wait 500ms
send text {"type":"tool_executing","n":1}
send text {"type":"tool_executing","n":2}
send text {"type":"tool_executing","n":3}
send text {"type":"tool_executing","n":4}
send text {"type":"tool_executing","n":5}
record
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
redis_cmd CLIENT PAUSE 1000 WRITE => OK
recv text {"type":"tool_executing","n":1}
recv text {"type":"tool_executing","n":2}
recv text {"type":"tool_executing","n":3}
recv text {"type":"tool_executing","n":4}
recv text {"type":"tool_executing","n":5}
sleep 200ms
http_get /status => "events_queued_total":5,"events_published_total":0,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":2,.*"redis_workers":\[\{"pid":\d+,"connected":true,"queued":0,"in_flight":3,
sleep 600ms
http_get /status => "events_queued_total":5,"events_published_total":3,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":2,.*"in_flight":0,
send close 1000
recv close 1000
--- redis_subscribe: agent:events:2
--- redis_messages_like
agent:events:2 "seq":1,.*"n":1\}\}$
agent:events:2 "seq":2,.*"n":2\}\}$
agent:events:2 "seq":3,.*"n":3\}\}$
--- error_log eval
[qr/\[warn\].*ws_agent: Redis queue full \(3 events, all sent and awaiting replies\), dropped 2 new event\(s\)$/]
--- no_error_log eval
[qr/Redis queue full(?!.*dropped 2 new event)/, '[alert]', '[crit]',
 'not published', 'not sent']



=== TEST 3: queue 3, 2 in flight when Redis dies: they are sent again first, in order; of the 3 events while it is down the oldest unsent ones give way
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_redis_queue 3;
--- ws_backend
send text {"type":"connection_ready"}
wait 500ms
send text {"type":"agent_thinking","n":1}
send text {"type":"agent_thinking","n":2}
wait 1500ms
send text {"type":"agent_thinking","n":3}
send text {"type":"agent_thinking","n":4}
send text {"type":"agent_thinking","n":5}
record
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
redis_cmd CLIENT PAUSE 10000 WRITE => OK
recv text {"type":"agent_thinking","n":1}
recv text {"type":"agent_thinking","n":2}
sleep 200ms
http_get /status => "events_queued_total":2,"events_published_total":0,.*"redis_workers":\[\{"pid":\d+,"connected":true,"queued":0,"in_flight":2,
redis_stop
recv text {"type":"agent_thinking","n":3} within 3s
recv text {"type":"agent_thinking","n":4}
recv text {"type":"agent_thinking","n":5}
sleep 200ms
http_get /status => "events_queued_total":5,"events_published_total":0,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":2,.*"redis_workers":\[\{"pid":\d+,"connected":false,"queued":3,"in_flight":0,
redis_start
sleep 3s
http_get /status => "events_queued_total":5,"events_published_total":3,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":2,.*"queued":0,"in_flight":0,
send close 1000
recv close 1000
--- redis_subscribe: agent:events:3
--- redis_messages_like
agent:events:3 "seq":1,.*"n":1\}\}$
agent:events:3 "seq":2,.*"n":2\}\}$
agent:events:3 "seq":5,.*"n":5\}\}$
--- wait: 3
--- error_log eval
[qr/\[warn\].*ws_agent: Redis queue full \(3 events\), dropped 2 oldest unsent event\(s\)$/,
 qr/\[notice\].*ws_agent: Redis 127\.0\.0\.1:\d+ connected again, 3 event\(s\) waiting/]
--- no_error_log eval
[qr/Redis queue full(?!.*dropped 2 oldest unsent event)/, '[alert]', '[crit]',
 'not published', 'not sent']



=== TEST 4: queue 1, Redis down, the worker exits 0.2 s after the drops: the drop and the loss at exit are both logged, 2 + 1 = the 3 events queued
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_redis_queue 1;
--- redis_stopped
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_started","n":2}
send text {"type":"agent_started","n":3}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_started","n":2}
recv text {"type":"agent_started","n":3}
http_get /status => "events_queued_total":3,"events_published_total":0,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":2,.*"redis_workers":\[\{"pid":\d+,"connected":false,"queued":1,"in_flight":0,
send close 1000
recv close 1000
--- error_log eval
[qr/\[warn\].*ws_agent: Redis queue full \(1 events\), dropped 2 oldest unsent event\(s\)$/,
 qr/\[warn\].*ws_agent: worker exiting with 1 event\(s\) not sent to Redis 127\.0\.0\.1:\d+$/]
--- no_error_log eval
[qr/Redis queue full(?!.*dropped 2 oldest unsent event)/, '[alert]', '[crit]',
 'awaiting a reply']



=== TEST 5: Redis refuses PUBLISH (an ACL without it): each refusal is counted, and logged in one line with their number
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=s3cret;
--- redis_config
user default on >s3cret ~* &* +@all -publish
requirepass s3cret
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_started","n":2}
send text {"type":"agent_started","n":3}
record
--- ws_client
handshake /ws X-User-Id: 5
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_started","n":2}
recv text {"type":"agent_started","n":3}
sleep 300ms
http_get /status => "events_queued_total":3,"events_published_total":0,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":0,"redis_error":3,"lost_at_exit":0,.*"in_flight":0,
send close 1000
recv close 1000
--- error_log eval
[qr/\[error\].*ws_agent: Redis refused PUBLISH \(3 event\(s\) lost\): NOPERM/]
--- no_error_log eval
[qr/refused PUBLISH(?! \(3 event)/, 'Redis queue full', '[alert]', '[crit]']



=== TEST 6: the worker exits while Redis is paused with 2 events in flight: after its 500 ms, it says they were sent and not answered (the last block: the pause outlasts it)
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_redis_queue 2;
--- ws_backend
send text {"type":"connection_ready"}
wait 300ms
send text {"type":"agent_started","n":1}
send text {"type":"agent_started","n":2}
record
--- ws_client
handshake /ws X-User-Id: 6
recv text {"type":"connection_ready"}
redis_cmd CLIENT PAUSE 4000 WRITE => OK
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_started","n":2}
sleep 200ms
http_get /status => "events_queued_total":2,"events_published_total":0,.*"queue_overflow":0,.*"queued":0,"in_flight":2,
send close 1000
recv close 1000
--- error_log eval
[qr/\[warn\].*ws_agent: worker exiting with 2 event\(s\) sent to Redis 127\.0\.0\.1:\d+ and awaiting a reply \(Redis may still publish them\)$/]
--- no_error_log eval
['not sent to Redis', 'Redis queue full', '[alert]', '[crit]']
