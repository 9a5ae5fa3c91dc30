# Redis Sentinel (SPEC-transport.md, Part 2): ws_agent_redis
# sentinel:mymaster with ws_agent_redis_sentinels.  A private topology
# (WsAgent::Sentinel: a master, its replica, three sentinels) for the whole
# file; the subscriber listens on every data node and records which node
# delivered each event, and every PUBLISH each node executed (MONITOR).
#
# Killing the master (SIGKILL) or SENTINEL FAILOVER while a backend streams
# on three connections: every event, before and after, must reach the
# subscriber on the new master, except the spec's window (PUBLISHed to the
# old master after the promotion and before +switch-master reached the
# worker: delivered by the old master only).  The counts are printed.
#
# The blocks run in order: the kill (an automatic failover) before the
# SENTINEL FAILOVER (a sentinel that voted in one does not start another
# for 2 x failover-timeout; a manual one is not held back).

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
use WsAgent::Sentinel;
use WsAgent::Util qw(slurp);

repeat_each(1);
no_shuffle();
use_sentinel();

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;')
    . "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<'_EOC_') unless defined $block->http_config;
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_1 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_2 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_3;
_EOC_
    $block->set_value("config", $ws_location) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

# The stream of blocks 2 and 3: per connection N events, 50 ms apart
# (about 20 a second per connection, 60 on the three).
our $N = 120;
sub stream_steps {
    join "\n", (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 50ms} }
                1 .. $N), 'record';
}

sub error_log_text {
    slurp(WsAgent::Sections::server_root() . '/logs/error.log') // '';
}

# Blocks 2 and 3: sent against delivered, per connection and seq, on the
# new master; what is missing there must be the window's.  Returns the
# tally.
sub check_stream {
    my ($sen, $name, @users) = @_;
    my $act = $sen->last_action;
    my $sw = $sen->last_switch;
    ok($act && $sw, "$name - a $act->{what} and a +switch-master were seen")
        or return;
    my $sub = $sen->subscriber;
    my $sent = WsAgent::Sentinel::sent_by_channel($sen->backend,
                   'agent:events:', qr/"type":"agent_thinking"/);
    is_deeply($sent, { map { ("agent:events:$_" => $N) } @users },
              "$name - the backend sent $N events on each connection");
    # the spec's window: from the kill or SENTINEL FAILOVER (the promotion
    # comes after it) to the last sentinel's +switch-master, and 0.5 s for
    # the worker to act on it
    my @window = ($act->{time}, $sw->{last} + 0.5);
    my $t = WsAgent::Sentinel::tally(sub => $sub, sent => $sent,
        to => $sw->{new}, old => $sw->{old}, window => \@window, timeout => 8);
    my $T = $t->{total};
    my @old = grep { defined $_->{seq} } $sub->messages($sw->{old});
    my @direct_old = $sub->direct_publishes($sw->{old});
    my $before = grep { $_->{time} < $act->{time} } @direct_old;
    my $after = grep { $_->{time} >= $act->{time} } @direct_old;
    diag(sprintf "%s:\n  %s: 127.0.0.1:%d -> 127.0.0.1:%d, +switch-master "
         . "%.2f-%.2f s after it\n  PUBLISHes nginx sent the old master: %d "
         . "before the %s, %d after it\n  %s", $name, $act->{what},
         $sw->{old}, $sw->{new}, $sw->{first} - $act->{time},
         $sw->{last} - $act->{time}, $before, $act->{what}, $after,
         join "\n  ", split /\n/, WsAgent::Sentinel::tally_text($t));
    # when the window's events reached the old master, against the switch
    my %win = map { my $ch = $_; map { ("$ch $_" => 1) } @{ $t->{channels}{$ch}{window} } }
              keys %{ $t->{channels} };
    my @wt = sort { $a <=> $b } map { $_->{time} }
             grep { $win{"$_->{channel} $_->{seq}"} } @old;
    diag(sprintf "%s: the window's events reached the old master from %+.3f s to "
         . "%+.3f s of the last +switch-master", $name, $wt[0] - $sw->{last},
         $wt[-1] - $sw->{last}) if @wt;
    diag("$name: the subscriber was not subscribed on 127.0.0.1:$_->[0] for "
         . sprintf('%.1f ms', 1000 * ($_->[2] - $_->[1])))
        for grep { $_->[1] >= $act->{time} - 1 } $sub->gaps;
    is($T->{lost}, 0, "$name - every event reached the subscriber on the new "
       . "master, but those of the window (lost: $T->{lost})");
    is($T->{extra}, 0, "$name - no seq that was never sent");
    my @bad = grep { defined $_->{n} && $_->{seq} != $_->{n} }
              grep { defined $_->{seq} } $sub->messages($sw->{new}), @old;
    is(scalar @bad, 0, "$name - each event kept its seq (sent twice or not)")
        or diag("seq != n: " . join ', ', map { "$_->{channel} seq $_->{seq} "
                                                . "n $_->{n}" } @bad[0 .. 4]);
    my $log = error_log_text();
    like($log, qr/\[notice\][^\n]*ws_agent: Redis sentinel:mymaster switched master from 127\.0\.0\.1:$sw->{old} to 127\.0\.0\.1:$sw->{new}$/m,
         "$name - the switch is logged at notice");
    return ($t, $sw, $act);
}

run_tests();

__DATA__

=== TEST 1: events reach the subscriber on the master the sentinels name; status: its address, role "master"
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
send text {"type":"agent_completed","n":3}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
recv text {"type":"agent_completed","n":3}
sleep 300ms
http_get /status => "redis_workers":\[\{[^{}]*"connected":true
http_get /status => "redis_workers":\[\{[^{}]*"address":"127.0.0.1:$TEST_NGINX_SENTINEL_MASTER_PORT"
http_get /status => "redis_workers":\[\{[^{}]*"role":"master"
http_get /status => "redis_workers":\[\{[^{}]*"tls":false
send close 1000
recv close 1000
--- sentinel_subscribe: agent:events:1
--- sentinel_check eval
sub {
    package main;
    my ($sen, $name) = @_;
    my $sub = $sen->subscriber;
    my $m = $ENV{TEST_NGINX_SENTINEL_MASTER_PORT};
    my $r = $ENV{TEST_NGINX_SENTINEL_REPLICA_PORT};
    WsAgent::Util::wait_until(3, sub { $sub->messages($m) >= 3 });
    is(join(' ', map { "$_->{channel}:$_->{seq}:$_->{n}" } $sub->messages($m)),
       'agent:events:1:1:1 agent:events:1:2:2 agent:events:1:3:3',
       "$name - seq 1..3 delivered by the master 127.0.0.1:$m");
    is(scalar $sub->direct_publishes($m), 3,
       "$name - nginx PUBLISHed 3 times to the master");
    is(scalar $sub->direct_publishes($r), 0,
       "$name - and never to the replica 127.0.0.1:$r");
}



=== TEST 2: the master is killed (SIGKILL) mid-stream, 3 connections at 20 events/s each: after the failover every event reaches the new master's subscriber; the switch is logged
--- ws_backend eval
main::stream_steps()
--- ws_client
handshake /ws X-User-Id: 21
handshake /ws X-User-Id: 22
handshake /ws X-User-Id: 23
sleep 2s
sentinel_kill_master
sentinel_wait_switch 15s
sentinel_restart_old_master
sleep 3500ms
http_get /status => "redis_workers":\[\{[^{}]*"connected":true
http_get /status => "redis_workers":\[\{[^{}]*"address":"127.0.0.1:$TEST_NGINX_SENTINEL_REPLICA_PORT"
http_get /status => "redis_workers":\[\{[^{}]*"role":"master"
--- timeout: 5
--- sentinel_subscribe: agent:events:21 agent:events:22 agent:events:23
--- sentinel_check eval
sub {
    package main;
    my ($sen, $name) = @_;
    my ($t, $sw, $act) = check_stream($sen, $name, 21, 22, 23) or return;
    # a killed master publishes nothing after the kill: no window
    is($t->{total}{window}, 0, "$name - nothing in the window (the old master is dead)");
    my ($restart) = grep { $_->{what} eq 'restart' } @{ $sen->history };
    is(scalar $sen->subscriber->direct_publishes($sw->{old}, $restart->{time}), 0,
       "$name - the old master, back as a replica, gets no PUBLISH from nginx");
}
--- error_log
ws_agent: Redis sentinel:mymaster switched master from 127.0.0.1:$TEST_NGINX_SENTINEL_MASTER_PORT to 127.0.0.1:$TEST_NGINX_SENTINEL_REPLICA_PORT



=== TEST 3: SENTINEL FAILOVER mid-stream (no kill): the same count; after the switch the old master gets no PUBLISH from nginx
--- ws_backend eval
main::stream_steps()
--- ws_client
handshake /ws X-User-Id: 31
handshake /ws X-User-Id: 32
handshake /ws X-User-Id: 33
sleep 2s
sentinel_failover
sentinel_wait_switch 10s
sleep 4500ms
http_get /status => "redis_workers":\[\{[^{}]*"connected":true
http_get /status => "redis_workers":\[\{[^{}]*"address":"127.0.0.1:$TEST_NGINX_SENTINEL_REPLICA_PORT"
http_get /status => "redis_workers":\[\{[^{}]*"role":"master"
--- timeout: 5
--- sentinel_subscribe: agent:events:31 agent:events:32 agent:events:33
--- sentinel_check eval
sub {
    package main;
    my ($sen, $name) = @_;
    my ($t, $sw, $act) = check_stream($sen, $name, 31, 32, 33) or return;
    my @late = $sen->subscriber->direct_publishes($sw->{old}, $sw->{last} + 0.5);
    is(scalar @late, 0, "$name - no PUBLISH from nginx reached the old master "
       . "0.5 s after the last +switch-master or later")
        or diag("late: " . join ', ', map { sprintf "%s seq %s at +%.3f s",
                $_->{channel}, $_->{seq}, $_->{time} - $sw->{last} } @late[0 .. 4]);
    my @direct = $sen->subscriber->direct_publishes($sw->{old}, $act->{time});
    diag(sprintf "%s: last PUBLISH from nginx to the old master %s", $name,
         @direct ? sprintf('%+.3f s from the last +switch-master',
                           $direct[-1]{time} - $sw->{last}) : 'before the failover');
}
--- error_log
ws_agent: Redis sentinel:mymaster switched master from 127.0.0.1:$TEST_NGINX_SENTINEL_MASTER_PORT to 127.0.0.1:$TEST_NGINX_SENTINEL_REPLICA_PORT



=== TEST 4: the first sentinel address is a closed port: the worker asks the next one and publishes to the master
--- http_config
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels 127.0.0.1:$TEST_NGINX_RAND_PORT_1 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_1 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_2;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_completed","n":2}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_completed","n":2}
sleep 500ms
http_get /status => "redis_workers":\[\{[^{}]*"address":"127.0.0.1:$TEST_NGINX_SENTINEL_MASTER_PORT"
http_get /status => "redis_workers":\[\{[^{}]*"role":"master"
send close 1000
recv close 1000
--- sentinel_subscribe: agent:events:4
--- sentinel_check eval
sub {
    package main;
    my ($sen, $name) = @_;
    my $m = $ENV{TEST_NGINX_SENTINEL_MASTER_PORT};
    WsAgent::Util::wait_until(3, sub { $sen->subscriber->messages($m) >= 2 });
    is(join(' ', map { "$_->{channel}:$_->{seq}" } $sen->subscriber->messages($m)),
       'agent:events:4:1 agent:events:4:2',
       "$name - seq 1..2 delivered by the master 127.0.0.1:$m");
}
--- error_log
ws_agent: Redis sentinel at 127.0.0.1:$TEST_NGINX_RAND_PORT_1 unavailable (connect() failed (111: Connection refused))



=== TEST 5: nginx -t: sentinel:NAME without ws_agent_redis_sentinels
--- http_config
    ws_agent_redis sentinel:mymaster;
--- nginx_t_fail
--- error_log
[emerg]
"ws_agent_redis" names a sentinel master but no "ws_agent_redis_sentinels" is set



=== TEST 6: nginx -t: ws_agent_redis_sentinels with a plain ws_agent_redis address
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_SENTINEL_NODE_PORT_1;
    ws_agent_redis_sentinels 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_1;
--- nginx_t_fail
--- error_log
[emerg]
"ws_agent_redis_sentinels" is set but "ws_agent_redis" does not name a sentinel master (sentinel:NAME)



=== TEST 7: a master name the sentinels do not monitor: logged, events wait in the queue, nothing is published
--- http_config
    ws_agent_redis sentinel:nosuchmaster;
    ws_agent_redis_sentinels 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_1 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_2 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_3;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
send text {"type":"agent_completed","n":3}
record
--- ws_client
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
recv text {"type":"agent_completed","n":3}
sleep 1s
http_get /status => "redis_workers":\[\{[^{}]*"connected":false
http_get /status => "redis_workers":\[\{[^{}]*"queued":3,
send close 1000
recv close 1000
--- sentinel_subscribe: agent:events:7
--- sentinel_check eval
sub {
    package main;
    my ($sen, $name) = @_;
    my $sub = $sen->subscriber;
    is(scalar(map { $sub->direct_publishes($_) } $sen->node_ports), 0,
       "$name - no data node got a PUBLISH");
}
--- error_log eval
[qr/\[error\].*ws_agent: Redis sentinels do not know master "nosuchmaster"/]
