# A Redis host NAME resolved at run time with nginx's own http-level
# `resolver`, before every (re)connect (SPEC-transport.md): the name that
# moves is followed on reconnect, a name that does not exist yet holds the
# events in the queue until it does.  Without a resolver the name is
# resolved once, when the configuration is read (as before).
#
# The names come from the harness's DNS responder (WsAgent::Dns, UDP on
# 127.0.0.1:$TEST_NGINX_DNS_PORT): `--- dns_records` is its table when the
# block starts, the dns_set / dns_remove steps change it while nginx runs,
# TTL 1 and `valid=1s` keep nginx's cache short.  Redis A is the file's
# private Redis on 127.0.0.1:$TEST_NGINX_REDIS_PORT; `--- redis_b` starts
# Redis B on 127.0.0.2, the same port (Linux answers on all of 127/8), so
# moving the name from 127.0.0.1 to 127.0.0.2 moves nginx from A to B.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

my ($so) = grep { m{ngx_ws_agent_module\.so$} }
           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the built module'
    unless $so;

repeat_each(1);
no_shuffle();
use_redis();
use_dns();
# a debug line per frame of TEST 9's connections would be its main cost
log_level('info');

# TEST 9: connections, events per connection
our ($Conns, $Events) = (24, 30);
our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed);

# event k of TEST 9: a published type, cut at frame byte k + 2 (k = 1:
# inside "type", k = 30: past the user), one every 80 ms
sub event { my ($k, $who) = @_;
            qq({"type":"$Types[$k % 5]","user":"$who","n":$k}) }

sub channels { join ' ', map { "agent:events:$_" } 1 .. $Conns }

my $http = <<'_EOC_';
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    ws_agent_redis redis.test:$TEST_NGINX_REDIS_PORT;
_EOC_

my $config = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 4s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;')
    . "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", $http) unless defined $block->http_config;
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: the harness's DNS responder: A from its table, several addresses, NXDOMAIN for an unknown name, no AAAA, SERVFAIL, no answer; a record changed, removed; every query logged
--- http_config
--- config
    location = /x { return 204; }
--- dns_records
redis.test 127.0.0.1
two.test 127.0.0.2 127.0.0.3
broken.test servfail
--- ws_client
dns_query redis.test A => NOERROR 127.0.0.1
dns_query REDIS.Test A => NOERROR 127.0.0.1
dns_query redis.test AAAA => NOERROR
dns_query two.test A => NOERROR 127.0.0.2 127.0.0.3
dns_query nowhere.test A => NXDOMAIN
dns_query nowhere.test AAAA => NXDOMAIN
dns_query broken.test A => SERVFAIL
dns_set redis.test 127.0.0.2
dns_query redis.test A => NOERROR 127.0.0.2
dns_remove redis.test
dns_query redis.test A => NXDOMAIN
dns_set silent.test drop
dns_query silent.test A => timeout
dns_queried redis.test A == 4
dns_queried redis.test AAAA == 1
dns_queried two.test A >= 1



=== TEST 2: nginx's own resolver takes its answers (a proxy_pass through a variable, stock nginx): the name, then NXDOMAIN (Host not found), then the name again once nginx's cache (valid=1s: up to 2 s, it counts whole seconds) has passed
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
--- config
    location = /via {
        set $up redis.test;
        proxy_pass http://$up:$TEST_NGINX_SERVER_PORT/hello;
    }
    location = /hello { return 200 "hello from $server_addr\n"; }
--- dns_records
redis.test 127.0.0.1
--- ws_client
http_get /via => ^hello from 127\.0\.0\.1$
dns_remove redis.test
sleep 2100ms
http_get /via => 502 Bad Gateway
dns_set redis.test 127.0.0.1
sleep 2100ms
http_get /via => ^hello from 127\.0\.0\.1$
dns_queried redis.test A == 3
dns_queried redis.test AAAA == 0
--- error_log
redis.test could not be resolved (3: Host not found)



=== TEST 3: (a) redis.test is 127.0.0.1, where Redis A listens: the name is resolved with the resolver (A only: ipv6=off), events reach A, the status shows the peer
--- dns_records
redis.test 127.0.0.1
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
sleep 300ms
http_get /status => "events_published_total":2,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_REDIS_PORT")(?=[^}]*"tls":false)
dns_queried redis.test A
dns_queried redis.test AAAA == 0
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 "seq":1,.*"type":"agent_started"
agent:events:1 "seq":2,.*"type":"agent_thinking"
--- error_log eval
[qr/\[info\].*ws_agent: Redis redis\.test:\d+ connected(?! again)/]
--- no_error_log
[error]
[alert]
[crit]
unavailable



=== TEST 4: (b) the name moves to 127.0.0.2 (Redis B, same port), then A is stopped: nginx reconnects, resolves again, and the 3 events after the move reach B; the 2 before it are A's; none lost, none twice
--- dns_records
redis.test 127.0.0.1
--- redis_b
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
wait 2000ms
send text {"type":"tool_executing","n":3}
send text {"type":"tool_completed","n":4}
send text {"type":"agent_completed","n":5}
record
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
sleep 300ms
http_get /status => "events_published_total":2,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_REDIS_PORT")
dns_set redis.test 127.0.0.2
redis_stop
recv text {"type":"tool_executing","n":3} within 3s
recv text {"type":"tool_completed","n":4}
recv text {"type":"agent_completed","n":5}
sleep 2500ms
http_get /status => "events_queued_total":5,"events_published_total":5,"lifecycle_queued_total":0,"events_dropped_total":\{"queue_overflow":0,"redis_error":0,"lost_at_exit":0,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"queued":0[,}])(?=[^}]*"in_flight":0[,}])(?=[^}]*"address":"127\.0\.0\.2:$TEST_NGINX_REDIS_PORT")
dns_queried redis.test A >= 2
send close 1000
recv close 1000
--- redis_subscribe: agent:events:2
--- redis_messages_like
agent:events:2 "seq":1,.*"n":1\}\}$
agent:events:2 "seq":2,.*"n":2\}\}$
--- redis_b_subscribe: agent:events:2
--- redis_b_messages_like
agent:events:2 "seq":3,.*"n":3\}\}$
agent:events:2 "seq":4,.*"n":4\}\}$
agent:events:2 "seq":5,.*"n":5\}\}$
--- wait: 5
--- error_log eval
[qr/\[error\].*ws_agent: Redis redis\.test:\d+ unavailable \(.*\); events wait in a queue of 10000, reconnecting with back-off/,
 qr/\[notice\].*ws_agent: Redis redis\.test:\d+ connected again, \d+ event\(s\) waiting/]
--- no_error_log
[alert]
[crit]
dropped
event(s) lost
not sent to Redis



=== TEST 5: (b) the name moves while A stays up: nginx keeps its connection; once A closes it (CLIENT KILL), after nginx's cache has expired (2 s), the reconnect goes to B: nothing more on A
--- dns_records
redis.test 127.0.0.1
--- redis_b
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
wait 1000ms
send text {"type":"agent_thinking","n":2}
wait 3000ms
send text {"type":"tool_executing","n":3}
send text {"type":"agent_completed","n":4}
record
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
dns_set redis.test 127.0.0.2
recv text {"type":"agent_thinking","n":2} within 2s
sleep 1500ms
redis_cmd CLIENT KILL TYPE normal => 1
recv text {"type":"tool_executing","n":3} within 3s
recv text {"type":"agent_completed","n":4}
sleep 2s
http_get /status => "events_published_total":4,.*"events_dropped_total":\{"queue_overflow":0,"redis_error":0,"lost_at_exit":0,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"queued":0[,}])(?=[^}]*"in_flight":0[,}])(?=[^}]*"address":"127\.0\.0\.2:$TEST_NGINX_REDIS_PORT")
send close 1000
recv close 1000
--- redis_subscribe: agent:events:3
--- redis_messages_like
agent:events:3 "seq":1,.*"n":1\}\}$
agent:events:3 "seq":2,.*"n":2\}\}$
--- redis_b_subscribe: agent:events:3
--- redis_b_messages_like
agent:events:3 "seq":3,.*"n":3\}\}$
agent:events:3 "seq":4,.*"n":4\}\}$
--- wait: 5
--- error_log eval
[qr/ws_agent: Redis redis\.test:\d+ unavailable \(connection closed\)/,
 qr/\[notice\].*ws_agent: Redis redis\.test:\d+ connected again, \d+ event\(s\) waiting/]
--- no_error_log
[alert]
[crit]
dropped
event(s) lost



=== TEST 6: (c) the name does not exist when nginx starts (NXDOMAIN): "cannot resolve", events wait in the queue; the record appears: every waiting event arrives, in order
--- dns_records
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
send text {"type":"tool_executing","n":3}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
recv text {"type":"tool_executing","n":3}
sleep 500ms
http_get /status => "events_queued_total":3,"events_published_total":0,.*"redis_workers":\[\{(?=[^}]*"connected":false)(?=[^}]*"queued":3[,}])(?=[^}]*"in_flight":0[,}])
dns_queried redis.test A >= 1
dns_set redis.test 127.0.0.1
sleep 4500ms
http_get /status => "events_queued_total":3,"events_published_total":3,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"queued":0[,}])(?=[^}]*"in_flight":0[,}])(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_REDIS_PORT")
send close 1000
recv close 1000
--- redis_subscribe: agent:events:4
--- redis_messages_like
agent:events:4 "seq":1,.*"n":1\}\}$
agent:events:4 "seq":2,.*"n":2\}\}$
agent:events:4 "seq":3,.*"n":3\}\}$
--- wait: 5
--- error_log eval
[qr/\[error\].*ws_agent: Redis redis\.test:\d+ unavailable \(cannot resolve "redis\.test": Host not found\); events wait in a queue of 10000, reconnecting with back-off/,
 qr/\[notice\].*ws_agent: Redis redis\.test:\d+ connected again, 3 event\(s\) waiting/]
--- no_error_log
[alert]
[crit]
dropped
event(s) lost



=== TEST 7: (d) without a resolver a name is resolved once, when the configuration is read: nginx starts with localhost:PORT, events reach A, the responder is never asked
--- http_config
    ws_agent_redis localhost:$TEST_NGINX_REDIS_PORT;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 5
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 300ms
http_get /status => "events_published_total":1,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_REDIS_PORT")
dns_queried localhost A == 0
send close 1000
recv close 1000
--- redis_subscribe: agent:events:5
--- redis_messages_like
agent:events:5 "seq":1,.*"type":"agent_started"
--- no_error_log
[error]
[alert]
[crit]



=== TEST 8: (d) without a resolver a name that does not resolve stops nginx -t, as before
--- http_config
    ws_agent_redis redis.test:$TEST_NGINX_REDIS_PORT;
--- nginx_t_fail
--- error_log eval
[qr/\[emerg\].*"ws_agent_redis" (?:address "redis\.test:\d+" does not resolve|has an invalid address "redis\.test:\d+": host not found)/]



=== TEST 9: (e) 24 connections in one worker publish 30 events each, cut at every offset, while the name moves to B and A is stopped: every event reaches A or B, per connection in order; on both only those sent again after the reconnect
--- dns_records
redis.test 127.0.0.1
--- redis_b
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait random 0-200ms',
    (map { ("send text " . ::event($_, '$user') . " pieces " . ($_ + 2)
            . " gap random 1-3ms", 'wait 80ms') } 1 .. $::Events),
    'record'
--- ws_client eval
CORE::join "\n", "parallel $::Conns", 'handshake /ws X-User-Id: $i',
    'recv text {"type":"connection_ready"}',
    (map { "recv text " . ::event($_, '$i') } 1 .. $::Events),
    'send close 1000', 'recv close 1000'
--- meanwhile
sleep 1200ms
dns_set redis.test 127.0.0.2
redis_stop
sleep 4500ms
http_get /status => "events_dropped_total":\{"queue_overflow":0,"redis_error":0,"lost_at_exit":0,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"queued":0[,}])(?=[^}]*"in_flight":0[,}])(?=[^}]*"address":"127\.0\.0\.2:$TEST_NGINX_REDIS_PORT")
--- redis_subscribe eval
::channels()
--- redis_b_subscribe eval
::channels()
--- redis_delivered eval
CORE::join "\n", map { "agent:events:$_ $::Events a>=1 b>=1" } 1 .. $::Conns
--- ws_backend_connections eval
$::Conns
--- wait: 10
--- error_log eval
[qr/\[notice\].*ws_agent: Redis redis\.test:\d+ connected again, \d+ event\(s\) waiting/]
--- no_error_log
[alert]
[crit]
dropped
event(s) lost
not sent to Redis
