# ws_agent_stream in a Redis Cluster: the stream, its :seen: keys and the
# channel share the user's {hash tag}, so the append script runs on the
# slot's master and SPUBLISHes there.  Several users on the three masters:
# each stream holds its user's events once, in order, on the owner of its
# slot, and the sharded subscribers get the envelopes with the entries' ids.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
use WsAgent::Cluster;

my ($so) = grep { m{ngx_ws_agent_module\.so$} }
           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the built module'
    unless $so;
my $cli = `redis-cli --version 2>/dev/null` // '';
plan skip_all => 'no redis-cli 7 (Debian 12: apt-get install redis-tools)'
    unless $cli =~ /redis-cli (\d+)/ && $1 >= 7;

repeat_each(1);
no_shuffle();
use_cluster();
log_level('info');

our @Users = 1 .. 12;

# quoted: a { in a bare word would open a block
my $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish "agent:events:{$ws_agent_user}";',
    'ws_agent_stream "agent:stream:{$ws_agent_user}" maxlen=1000;')
    . "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<'_EOC_') unless defined $block->http_config;
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_2;
_EOC_
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n[error]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: 12 users on the three masters: each stream holds its 5 events once, in order, on its slot's master (the script SPUBLISHes there: the sharded subscribers get every event)
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
send text {"type":"tool_executing","n":3}
send text {"type":"tool_completed","n":4}
send text {"type":"agent_completed","n":5}
record
--- ws_client
parallel 12
handshake /ws X-User-Id: $i
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
recv text {"type":"tool_executing","n":3}
recv text {"type":"tool_completed","n":4}
recv text {"type":"agent_completed","n":5}
sleep 2s
send close 1000
recv close 1000
--- meanwhile eval
CORE::join "\n", 'sleep 1500ms',
    (map { ("cluster_cmd agent:stream:{$_} XLEN agent:stream:{$_} => 5",
            "cluster_cmd agent:stream:{$_} XREVRANGE agent:stream:{$_} + - COUNT 1 =~ \"user\":\"$_\",\"seq\":5,.*\"n\":5",
            "cluster_cmd other:agent:stream:{$_} EXISTS agent:stream:{$_} =~ MOVED|^0\$") } @::Users),
    'http_get /status => "events_published_total":60,.*"events_dropped_total":\{"queue_overflow":0,"redis_error":0,'
--- cluster_subscribe eval
CORE::join ' ', map { "agent:events:{$_}" } @::Users
--- cluster_delivered eval
CORE::join "\n", (map { "agent:events:{$_} 5 master" } @::Users), 'every master'
--- wait: 10



=== TEST 2: the slots of 4 users move to another master while 8 connections publish (30 events each, 40 ms apart): MOVED, the events go to the new owner, and each stream there holds every seq once (the keys moved with the slot)
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 40ms} } 1 .. 30), 'record'
--- ws_client eval
CORE::join "\n", 'parallel 8', 'handshake /ws X-User-Id: m$i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_} within 20s} } 1 .. 30),
    'sleep 2s', 'send close 1000', 'recv close 1000 within 20s'
--- meanwhile eval
CORE::join "\n", 'sleep 600ms',
    'cluster_move agent:stream:{m1} agent:stream:{m2} agent:stream:{m3} agent:stream:{m4} to next',
    'sleep 3500ms',
    (map { ("cluster_cmd agent:stream:{m$_} XLEN agent:stream:{m$_} => 30",
            "cluster_cmd agent:stream:{m$_} XREVRANGE agent:stream:{m$_} + - COUNT 1 =~ \"user\":\"m$_\",\"seq\":30,") } 1 .. 8)
--- cluster_subscribe eval
CORE::join ' ', map { "agent:events:{m$_}" } 1 .. 8
--- cluster_delivered eval
CORE::join "\n", (map { "agent:events:{m$_} 30 last nodes>=3" } 1 .. 4), map { "agent:events:{m$_} 30 master" } 5 .. 8
--- wait: 15
--- no_error_log
[alert]
[crit]
event(s) lost



=== TEST 3: the same moves held open for 300 ms each between MIGRATE and SETSLOT NODE (a reshard of many keys): the old owner answers ASK, and the slot's appends wait for the handover, then go to the new owner, where the subscribers have gone: none missed, in order; each stream holds every seq once
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 40ms} } 1 .. 60), 'record'
--- ws_client eval
CORE::join "\n", 'parallel 8', 'handshake /ws X-User-Id: h$i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_} within 20s} } 1 .. 60),
    'sleep 2s', 'send close 1000', 'recv close 1000 within 20s'
--- meanwhile eval
CORE::join "\n", 'sleep 300ms',
    'cluster_move agent:stream:{h1} agent:stream:{h2} agent:stream:{h3} agent:stream:{h4} to next hold 300ms',
    'sleep 3500ms',
    (map { ("cluster_cmd agent:stream:{h$_} XLEN agent:stream:{h$_} => 60",
            "cluster_cmd agent:stream:{h$_} XRANGE agent:stream:{h$_} - + =~ " . CORE::join('.*', map { qq{"seq":$_,} } 1 .. 60)) } 1 .. 8)
--- cluster_subscribe eval
CORE::join ' ', map { "agent:events:{h$_}" } 1 .. 8
--- cluster_delivered eval
CORE::join "\n", (map { "agent:events:{h$_} 60 last nodes>=3" } 1 .. 4), map { "agent:events:{h$_} 60 master" } 5 .. 8
--- wait: 15
--- no_error_log
[alert]
[crit]
event(s) lost



=== TEST 4: 12 connections start at random during the held moves of 4 users' slots (a first event's keys exist nowhere yet): every event reaches the sharded subscribers in order, each stream holds every seq once
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 30ms} } 1 .. 50), 'record'
--- ws_client eval
CORE::join "\n", 'parallel 12', 'sleep random 0-1500ms', 'handshake /ws X-User-Id: k$i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_} within 20s} } 1 .. 50),
    'sleep 2s', 'send close 1000', 'recv close 1000 within 20s'
--- meanwhile eval
CORE::join "\n", 'sleep 200ms',
    'cluster_move agent:stream:{k1} agent:stream:{k2} agent:stream:{k3} agent:stream:{k4} to next hold 300ms',
    'sleep 4s',
    (map { ("cluster_cmd agent:stream:{k$_} XLEN agent:stream:{k$_} => 50",
            "cluster_cmd agent:stream:{k$_} XRANGE agent:stream:{k$_} - + =~ " . CORE::join('.*', map { qq{"seq":$_,} } 1 .. 50)) } 1 .. 12)
--- cluster_subscribe eval
CORE::join ' ', map { "agent:events:{k$_}" } 1 .. 12
--- cluster_delivered eval
CORE::join "\n", (map { "agent:events:{k$_} 50 last" } 1 .. 4), map { "agent:events:{k$_} 50 master" } 5 .. 12
--- wait: 15
--- no_error_log
[alert]
[crit]
event(s) lost
