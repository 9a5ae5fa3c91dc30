# Subscribers in a Redis Cluster: per worker, a pub/sub connection and a
# read connection to each master; one SSUBSCRIBE per channel on its slot's
# master, each stream read sent to its slot's master.  A slot that moves (a
# MOVED, the sunsubscribe a master pushes when it gives a slot up, or the
# map learnt again), a CLUSTER FAILOVER, a master SIGKILLed: the channel
# is subscribed on the new owner and its clients catch up from the stream,
# which moved with the slot: every seq once, ids only rising.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
use WsAgent::Cluster;

my $cli = `redis-cli --version 2>/dev/null` // '';
plan skip_all => 'no redis-cli 7 (Debian 12: apt-get install redis-tools)'
    unless $cli =~ /redis-cli (\d+)/ && $1 >= 7;

repeat_each(1);
no_shuffle();
use_cluster();
log_level('info');

# quoted: a { in a bare word would open a block
my $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish "agent:events:{$ws_agent_user}";',
    'ws_agent_stream "agent:stream:{$ws_agent_user}" maxlen=10000;') . <<'EOC';
        location /sub {
            ws_agent_subscribe "agent:events:{$arg_user}";
            ws_agent_subscribe_stream "agent:stream:{$arg_user}";
            ws_agent_subscribe_heartbeat 1s;
        }
        location = /status { ws_agent_status; }
EOC

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<'_EOC_') unless defined $block->http_config;
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_1 127.0.0.1:$TEST_NGINX_CLUSTER_PORT_2;
_EOC_
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

# every client of USERS (names PREFIX<user>...): each seq 1..N of its
# user's one connection exactly once (or, with $dups, at least once: a
# SIGKILLed master loses what it had not passed on, and nginx sends it
# again), first seen in order, ids rising and the envelopes' own
sub check_clients {
    my ($c, $name, $n, $dups, @clients) = @_;
    my $twice = 0;
    for my $k (@clients) {
        my ($seqs, $bad_id, $disorder) = WsAgent::Sse::by_connection($c->{$k});
        my @cids = keys %$seqs;
        is(scalar @cids, 1, "$name - $k: the events of its user's one connection");
        my @got = map { @{ $seqs->{$_} } } @cids;
        my (%seen, @first);
        push @first, $_ for grep { !$seen{$_}++ } @got;
        is("@first", join(' ', 1 .. $n), "$name - $k: every seq, first seen in order");
        $twice += @got - @first;
        is(@got - @first, 0, "$name - $k: none twice") unless $dups;
        is($bad_id, 0, "$name - $k: every id: is its envelope's id");
        is($disorder, 0, "$name - $k: ids only rise");
    }
    Test::More::note("$name - seqs that came twice: $twice");
}

our @Users = 1 .. 12;

run_tests();

__DATA__

=== TEST 1: 12 users' SSE subscribers: one SSUBSCRIBE per channel, on its slot's master only; every event to its user's subscriber, with the stream's ids
--- ws_backend
send text {"type":"connection_ready"}
wait 500ms
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
send text {"type":"tool_executing","n":3}
send text {"type":"tool_completed","n":4}
send text {"type":"agent_completed","n":5}
record
--- sse_subscribe
s x12: /sub?user=$n
--- ws_client
parallel 12
handshake /ws X-User-Id: $i
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
recv text {"type":"tool_executing","n":3}
recv text {"type":"tool_completed","n":4}
recv text {"type":"agent_completed","n":5}
sleep 1s
send close 1000
recv close 1000
--- meanwhile eval
CORE::join "\n", 'sleep 300ms',
    'http_get /status => "subscribers":12,"subscriptions":12,',
    map { ("cluster_cmd agent:events:{$_} PUBSUB SHARDNUMSUB agent:events:{$_} => [agent:events:{$_}, 1]",
           "cluster_cmd other:agent:events:{$_} PUBSUB SHARDNUMSUB agent:events:{$_} => [agent:events:{$_}, 0]") } @::Users
--- timeout: 30
--- wait: 10
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    ::check_clients($c, $name, 5, 0, map { "s$_" } @::Users);
    for my $u (@::Users) {
        my @users = map { $_->{json}{user} } @{ $c->{"s$u"}{events} };
        is(scalar(grep { $_ ne $u } @users), 0, "$name - s$u: no other user's event");
    }
}
--- no_error_log
[alert]
[crit]
[error]



=== TEST 2: the slots of 4 users move to another master while 8 connections publish (30 events each, 40 ms apart) to 8 steady subscribers and 8 that drop and resume: each gets every seq once, in order, from the new owner
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait 300ms',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 40ms} } 1 .. 30), 'record'
--- sse_subscribe eval
CORE::join "\n", 's x8: /sub?user=m$n',
    'r x8: /sub?user=m$n ; drop_after=7 ; resume_after=150ms ; resumes=20'
--- ws_client eval
CORE::join "\n", 'parallel 8', 'handshake /ws X-User-Id: m$i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_} within 20s} } 1 .. 30),
    'sleep 3s', 'send close 1000', 'recv close 1000 within 20s'
--- meanwhile
sleep 900ms
cluster_move agent:events:{m1} agent:events:{m2} agent:events:{m3} agent:events:{m4} to next
sleep 4s
http_get /status => "subscriptions":8,
cluster_cmd agent:events:{m1} PUBSUB SHARDNUMSUB agent:events:{m1} => [agent:events:{m1}, 1]
cluster_cmd agent:events:{m4} PUBSUB SHARDNUMSUB agent:events:{m4} => [agent:events:{m4}, 1]
--- timeout: 40
--- wait: 20
--- sse_settle: 1s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    ::check_clients($c, $name, 30, 0, (map { "s$_" } 1 .. 8), map { "r$_" } 1 .. 8);
}
--- error_log eval
[qr/ws_agent: Redis \S+ (dropped the subscription of "agent:events:\{m[1-4]\}"|: the slot of "agent:events:\{m[1-4]\}" moved)|ws_agent: Redis cluster map for subscribers: 3 masters, [1-9]/]
--- no_error_log
[alert]
[crit]
event(s) lost



=== TEST 3: CLUSTER FAILOVER of the master of a user's slot while 6 connections publish (40 events, 50 ms apart): its subscribers go over to the new master and get every seq once
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait 300ms',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 50ms} } 1 .. 40), 'record'
--- sse_subscribe eval
CORE::join "\n", 's x6: /sub?user=f$n',
    'r x6: /sub?user=f$n ; drop_after=9 ; resume_after=100ms ; resumes=20'
--- ws_client eval
CORE::join "\n", 'parallel 6', 'handshake /ws X-User-Id: f$i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_} within 20s} } 1 .. 40),
    'sleep 4s', 'send close 1000', 'recv close 1000 within 20s'
--- meanwhile
sleep 900ms
cluster_failover agent:events:{f1}
sleep 5s
cluster_cmd agent:events:{f1} PUBSUB SHARDNUMSUB agent:events:{f1} => [agent:events:{f1}, 1]
--- timeout: 40
--- wait: 25
--- sse_settle: 1s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    ::check_clients($c, $name, 40, 0, (map { "s$_" } 1 .. 6), map { "r$_" } 1 .. 6);
}
--- no_error_log
[alert]
[crit]
event(s) lost



=== TEST 4: SIGKILL of a user's master while 6 connections publish: once its replica is promoted the subscribers are live on it; no seq missing, first seen in order, ids only rise (what the dead master had not passed on is sent again)
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait 300ms',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 50ms} } 1 .. 40), 'record'
--- sse_subscribe eval
CORE::join "\n", 's x6: /sub?user=k$n',
    'r x6: /sub?user=k$n ; drop_after=9 ; resume_after=200ms ; resumes=30'
--- ws_client eval
CORE::join "\n", 'parallel 6', 'handshake /ws X-User-Id: k$i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_} within 30s} } 1 .. 40),
    'sleep 5s', 'send close 1000', 'recv close 1000 within 20s'
--- meanwhile
sleep 900ms
cluster_kill agent:events:{k1}
cluster_wait_promoted 15
--- timeout: 60
--- wait: 40
--- sse_settle: 2s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    ::check_clients($c, $name, 40, 1, (map { "s$_" } 1 .. 6), map { "r$_" } 1 .. 6);
}
--- no_error_log
[alert]
[crit]
