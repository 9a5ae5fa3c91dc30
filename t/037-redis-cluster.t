# Redis Cluster (SPEC-transport.md, Part 3): `ws_agent_redis cluster;` with
# `ws_agent_redis_cluster SEED ...`: each event goes as SPUBLISH to the
# master owning its channel's slot (CRC16 mod 16384, {hash tags}); MOVED
# sends it again to the node named and refreshes the map; a master that
# goes away holds its events until its slots have a new master.
#
# The cluster is the harness's (WsAgent::Cluster, use_cluster()): 3 masters
# and 3 replicas on 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1 .. _6, made once
# for the file and every node up and the cluster ok again before each
# block ($TEST_NGINX_CLUSTER_MASTER_1 .. _3: the masters when the block
# starts).  `--- cluster_subscribe` SSUBSCRIBEs each channel on the nodes
# of its owner's shard and follows the slots as they move; `---
# cluster_delivered` checks seq 1 .. N of each channel arrived, per node in
# order, from the channel's shard only; `--- cluster_classic_subscribe`
# (PSUBSCRIBE * on every node) must get nothing.  Each delivery check
# prints its numbers (sent, received, copies, missing, counted lost).

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
# a debug line per frame of 24 connections would be the file's main cost
log_level('info');

our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed);

# event k of a connection: a published type, its number
sub event { my ($k) = @_; qq({"type":"$Types[$k % 5]","n":$k}) }

# The backend's steps: the ack, then $n events $gap apart (cut at frame
# byte k + 2 with $cut), then it records.
sub backend {
    my ($n, $gap, $cut) = @_;
    join "\n", 'send text {"type":"connection_ready"}',
        (map { ("send text " . event($_)
                . ($cut ? " pieces " . ($_ + 2) . " gap random 1-3ms" : ''),
                "wait $gap") } 1 .. $n), 'record';
}

# $conns parallel clients (users $prefix$i), each receiving $n events.
sub client {
    my ($conns, $n, $prefix) = @_;
    $prefix //= '';
    join "\n", "parallel $conns", "handshake /ws X-User-Id: $prefix\$i",
        'recv text {"type":"connection_ready"}',
        (map { "recv text " . event($_) . " within 20s" } 1 .. $n),
        'send close 1000', 'recv close 1000 within 20s';
}

sub channels { my ($prefix, @users) = @_;
               join ' ', map { "agent:events:$prefix$_" } @users }

sub delivered { my ($n, $opt, $prefix, @users) = @_;
                join "\n", map { "agent:events:$prefix$_ $n $opt" } @users }

# the status page: one worker, "address":"cluster", and its "nodes": the
# three masters of the block's start, each connected
our $Nodes = '"redis_workers":\[\{(?=.*"address":"cluster")(?=.*"nodes":\['
    . join('', map { '(?=[^\]]*\{(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_CLUSTER_MASTER_'
                     . $_ . '")(?=[^}]*"connected":true)(?=[^}]*"role":"master")'
                     . '(?=[^}]*"tls":false)(?=[^}]*"queued":0[,}])'
                     . '(?=[^}]*"in_flight":0[,}])(?=[^}]*"reconnects":0[,}])'
                     . '(?=[^}]*"last_error":"")[^}]*\})' } 1 .. 3)
    . '\{[^{}\]]*\}(?:,\{[^{}\]]*\}){2}\])';
our $NoLoss = '"events_dropped_total":\{"queue_overflow":0,"redis_error":0,"lost_at_exit":0,';

# TEST 5: users whose channels' slots are below 200 (redis-cli's reshard
# of 200 slots takes the source's lowest: 0 .. 199 of the first master)
our @Low = (grep { WsAgent::Cluster::key_slot("agent:events:r$_") < 200 }
            1 .. 5000)[0 .. 5];

# "slot S moved to" for the slots of agent:events:1 .. 4 (TEST 4)
our $Moved = join '|', map { WsAgent::Cluster::key_slot("agent:events:$_") } 1 .. 4;

my $http = <<'_EOC_';
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_2;
_EOC_

our $Location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 4s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');
my $config = $Location . "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", $http) unless defined $block->http_config;
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: the harness: its CRC16 slots are CLUSTER KEYSLOT's (hash tags too); SPUBLISH by hand reaches the sharded subscriber, on the owner's shard only (MOVED elsewhere); it follows a slot moved, a CLUSTER FAILOVER and a SIGKILLed master
--- http_config
--- config
    location = /x { return 204; }
--- cluster_subscribe: agent:events:h1 agent:events:{team1}:a agent:events:{team1}:b
--- ws_client
cluster_keyslot agent:events:1 => 14020
cluster_keyslot agent:events:{team1}:a => 1608
cluster_keyslot agent:events:{team1}:zz => 1608
cluster_keyslot agent:events:{}:1
cluster_keyslot {}{team1}
cluster_keyslot a{b}{c}
cluster_keyslot {team1
cluster_keyslot 123456789 => 12739
cluster_wait_ok 5
cluster_cmd agent:events:h1 SPUBLISH agent:events:h1 {"seq":1} => 1
cluster_cmd other:agent:events:h1 SPUBLISH agent:events:h1 {"seq":9} =~ ^\(error\) MOVED 6540 127\.0\.0\.1:\d+$
cluster_cmd other:agent:events:h1 SSUBSCRIBE agent:events:h1 =~ ^\(error\) MOVED 6540 
cluster_cmd agent:events:{team1}:a SPUBLISH agent:events:{team1}:a {"seq":1} => 1
cluster_cmd agent:events:{team1}:b SPUBLISH agent:events:{team1}:b {"seq":1} => 1
cluster_move agent:events:h1 to next
cluster_cmd agent:events:h1 SPUBLISH agent:events:h1 {"seq":2} => 1
cluster_failover agent:events:h1
cluster_cmd agent:events:h1 SPUBLISH agent:events:h1 {"seq":3} => 1
cluster_kill agent:events:h1
cluster_wait_promoted 15
cluster_cmd agent:events:h1 SPUBLISH agent:events:h1 {"seq":4} => 1
cluster_cmd agent:events:{team1}:a SPUBLISH agent:events:{team1}:a {"seq":2} => 1
--- cluster_delivered
agent:events:h1 4 last nodes>=3
agent:events:{team1}:a 2
agent:events:{team1}:b 1



=== TEST 2: (a) 30 users' events land on their slots' masters (each master gets some), per connection in order, nowhere else; a classic PSUBSCRIBE * on every node gets nothing; status lists the 3 masters in "nodes"
--- ws_backend eval
::backend(5, '20ms')
--- ws_client eval
::client(30, 5)
--- meanwhile eval
"sleep 1500ms\nhttp_get /status => \"events_published_total\":150,.*$::Nodes\ncluster_status_nodes /status"
--- cluster_subscribe eval
::channels('', 1 .. 30)
--- cluster_classic_subscribe: *
--- cluster_delivered eval
::delivered(5, 'master', '', 1 .. 30) . "\nevery master"
--- ws_backend_connections: 30
--- wait: 10
--- error_log eval
[qr/\[info\].*ws_agent: Redis cluster map: 3 masters/]
--- no_error_log
[error]
[alert]
[crit]
moved to



=== TEST 3: (b) hash tags: agent:events:{team1}:USER lands on team1's slot (1608) for every user, on its master; an empty tag {} hashes the whole channel
--- config eval
# quoted: a { in a bare word would open a block
$::Location =~ s/agent:events:\$ws_agent_user/"agent:events:{team1}:\$ws_agent_user"/r
. "    location = /status { ws_agent_status; }\n"
. ($::Location =~ s{location /ws}{location /ws2}r
              =~ s/agent:events:\$ws_agent_user/"agent:events:{}:\$ws_agent_user"/r)
--- ws_backend eval
::backend(3, '20ms')
--- ws_client
parallel 6
handshake /ws X-User-Id: $i
recv text {"type":"connection_ready"}
recv text {"type":"agent_thinking","n":1}
recv text {"type":"tool_executing","n":2}
recv text {"type":"tool_completed","n":3}
handshake /ws2 X-User-Id: e$i
recv text {"type":"connection_ready"}
recv text {"type":"agent_thinking","n":1}
recv text {"type":"tool_executing","n":2}
recv text {"type":"tool_completed","n":3}
cluster_keyslot agent:events:{team1}:$i => 1608
--- cluster_subscribe eval
::channels('{team1}:', 1 .. 6) . ' ' . ::channels('{}:e', 1 .. 6)
--- cluster_classic_subscribe: *
--- cluster_delivered eval
::delivered(3, 'master', '{team1}:', 1 .. 6) . "\n"
. ::delivered(3, 'master', '{}:e', 1 .. 6)
--- wait: 10
--- no_error_log
[error]
[alert]
[crit]



=== TEST 4: (c) the slots of 4 users' channels move to another master while 12 connections publish (40 events each, 50 ms apart): MOVED, "slot S moved to", the events go to the new master; none lost beyond what the log and the counters count
--- ws_backend eval
::backend(40, '50ms')
--- ws_client eval
::client(12, 40)
--- meanwhile eval
"sleep 800ms
cluster_move agent:events:1 agent:events:2 agent:events:3 agent:events:4 to next
sleep 3000ms
http_get /status => $::NoLoss.*$::Nodes"
--- cluster_subscribe eval
::channels('', 1 .. 12)
--- cluster_delivered eval
::delivered(40, 'last nodes>=3', '', 1 .. 4) . "\n" . ::delivered(40, 'master', '', 5 .. 12)
--- cluster_loss: accounted /status
--- wait: 15
--- error_log eval
[qr/\[notice\].*ws_agent: Redis cluster: slot (?:$::Moved) moved to 127\.0\.0\.1:\d+/]
--- no_error_log
[alert]
[crit]
event(s) lost



=== TEST 5: (c) redis-cli --cluster reshard of 200 slots (6 users' channels among them) between two bursts of events on open connections: the burst after goes to the new master (a MOVED, or the map learnt again every 2 s first), nothing lost
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
wait 3500ms
send text {"type":"tool_executing","n":3}
wait 50ms
send text {"type":"tool_completed","n":4}
record
--- ws_client eval
"parallel 6\nhandshake /ws X-User-Id: r\$i\n"
. "recv text {\"type\":\"connection_ready\"}\n"
. "recv text {\"type\":\"agent_started\",\"n\":1}\n"
. "recv text {\"type\":\"agent_thinking\",\"n\":2}\n"
. "recv text {\"type\":\"tool_executing\",\"n\":3} within 10s\n"
. "recv text {\"type\":\"tool_completed\",\"n\":4}\n"
. "send close 1000\nrecv close 1000"
--- config eval
# user r$i publishes on agent:events:r$Low[i - 1] (the map below)
$::Location =~ s/agent:events:\$ws_agent_user/agent:events:r\$low/r
. "    location = /status { ws_agent_status; }\n"
--- http_config eval
"    ws_agent_redis cluster;\n"
. "    ws_agent_redis_cluster 127.0.0.1:\$TEST_NGINX_CLUSTER_PORT_1 127.0.0.1:\$TEST_NGINX_CLUSTER_PORT_2;\n"
. "    map \$http_x_user_id \$low {\n"
. CORE::join('', map { "        r$_ $::Low[$_ - 1];\n" } 1 .. 6) . "    }\n"
--- meanwhile eval
"sleep 800ms
cluster_reshard 200 from agent:events:r$::Low[0] to next
sleep 3500ms
http_get /status => $::NoLoss"
--- cluster_subscribe eval
CORE::join ' ', map { "agent:events:r$_" } @::Low
--- cluster_delivered eval
CORE::join "\n", map { "agent:events:r$_ 4 last nodes>=3" } @::Low
--- wait: 10
--- error_log eval
[qr/\[notice\].*ws_agent: Redis cluster(?:: slot \d+ moved to 127\.0\.0\.1:\d+| map: 3 masters, \d+ slot\(s\) routed anew)/]
--- no_error_log
[alert]
[crit]
event(s) lost



=== TEST 6: (d) CLUSTER FAILOVER on the replica of agent:events:1's master while 12 connections publish: its slots' events reach the new master; missing at most what the log and counters count
--- ws_backend eval
::backend(40, '50ms')
--- ws_client eval
::client(12, 40)
--- meanwhile
sleep 800ms
cluster_failover agent:events:1
sleep 4000ms
http_get /status => "redis_workers":\[\{(?=[^}]*"queued":0[,}])(?=[^}]*"in_flight":0[,}])
cluster_status_nodes /status
--- cluster_subscribe eval
::channels('', 1 .. 12)
--- cluster_delivered eval
::delivered(40, 'last', '', 1 .. 12)
--- cluster_loss: accounted /status
--- wait: 15
--- no_error_log
[alert]
[crit]



=== TEST 7: (d) SIGKILL of agent:events:1's master while 12 connections publish: its events wait until the replica is promoted (node timeout 1 s), then reach the new master; missing at most what the log and counters count
--- ws_backend eval
::backend(60, '80ms')
--- ws_client eval
::client(12, 60)
--- meanwhile
sleep 800ms
cluster_kill agent:events:1
cluster_wait_promoted 15
sleep 7000ms
http_get /status => "redis_workers":\[\{(?=[^}]*"queued":0[,}])(?=[^}]*"in_flight":0[,}])
cluster_status_nodes /status
--- cluster_subscribe eval
::channels('', 1 .. 12)
--- cluster_delivered eval
::delivered(60, 'last', '', 1 .. 12)
--- cluster_loss: accounted /status
--- wait: 20
--- error_log eval
[qr/\[error\].*ws_agent: Redis .*127\.0\.0\.1:\d+ unavailable \((?:connection closed|connection lost|connect\(\) failed)/,
 qr/\[notice\].*ws_agent: Redis cluster map: 3 masters/]
--- no_error_log
[alert]
[crit]



=== TEST 8: (e) nginx -t: "cluster" without ws_agent_redis_cluster
--- http_config
    ws_agent_redis cluster;
--- nginx_t_fail
--- error_log eval
[qr/\[emerg\].*"ws_agent_redis" is cluster but no "ws_agent_redis_cluster" is set/]



=== TEST 9: (e) nginx -t: ws_agent_redis_cluster with a ws_agent_redis that is not cluster
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1;
    ws_agent_redis_cluster 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1;
--- nginx_t_fail
--- error_log eval
[qr/\[emerg\].*"ws_agent_redis_cluster" is set but "ws_agent_redis" is not cluster/]



=== TEST 10: (e) nginx -t: cluster with db=
--- http_config
    ws_agent_redis cluster db=1;
    ws_agent_redis_cluster 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1;
--- nginx_t_fail
--- error_log eval
[qr/\[emerg\].*"ws_agent_redis" is cluster: db= is not supported \(a cluster has one database\)/]



=== TEST 11: (e) nginx -t: a seed that is not an address
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1 no-such-host.invalid:7000;
--- nginx_t_fail
--- error_log eval
[qr/\[emerg\].*"ws_agent_redis_cluster" has an invalid address "no-such-host\.invalid:7000": /]



=== TEST 12: (f) 24 connections in one worker, 30 events each cut at byte k + 2 (inside "type", past it), 40 ms apart: every event lands on its channel's master, per connection in order, none elsewhere
--- ws_backend eval
::backend(30, '40ms', 1)
--- ws_client eval
::client(24, 30)
--- cluster_subscribe eval
::channels('', 1 .. 24)
--- cluster_classic_subscribe: *
--- cluster_delivered eval
::delivered(30, 'master', '', 1 .. 24) . "\nevery master"
--- ws_backend_connections: 24
--- wait: 15
--- no_error_log
[error]
[alert]
[crit]
