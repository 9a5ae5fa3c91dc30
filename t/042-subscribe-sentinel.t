# Subscribers behind Redis Sentinel: the subscription and the stream reads
# follow the master the sentinels name, like the publisher.  The master is
# killed (SIGKILL) while events stream to SSE subscribers: after the
# failover they are live on the new master, and catch up from its copy of
# the stream.  What the dead master never passed to its replica may be
# published again by nginx (its reply was lost) and come twice, with a new
# id; nothing may be missing, and ids only rise.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
use WsAgent::Sentinel;

repeat_each(1);
no_shuffle();
use_sentinel();
log_level('info');

my $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;',
    'ws_agent_stream agent:stream:$ws_agent_user;') . <<'EOC';
        location /sub {
            ws_agent_subscribe agent:events:$arg_user;
            ws_agent_subscribe_stream agent:stream:$arg_user;
            ws_agent_subscribe_heartbeat 1s;
        }
        location = /status { ws_agent_status; }
EOC

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", <<'_EOC_') unless defined $block->http_config;
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_1 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_2 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_3;
_EOC_
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

our $N = 200;

sub idcmp { WsAgent::Sse::idcmp(@_) }

run_tests();

__DATA__

=== TEST 1: the master is killed mid-stream under 10 SSE subscribers (5 of them resuming again and again): after the failover all are live on the new master; no seq is missing, ids only rise
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 20ms} } 1 .. $::N),
    'record'
--- sse_subscribe eval
CORE::join "\n", 's x5: /sub?user=81',
    map { "r$_: /sub?user=81 ; drop_after=" . (11 * $_) . " ; resume_after=100ms ; resumes=50" } 1 .. 5
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 81',
    'recv text {"type":"connection_ready"}',
    'sleep 1500ms', 'sentinel_kill_master', 'sentinel_wait_switch 15s',
    'sse_wait s 200 events within 15s',
    'http_get /status => "subscriptions":1,',
    'sentinel_restart_old_master'
--- timeout: 30
--- wait: 20
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my $dups = 0;
    for my $k ((map { "s$_" } 1 .. 5), map { "r$_" } 1 .. 5) {
        my (%seen, @first, $disorder);
        my $prev = '0-0';
        for my $e (@{ $c->{$k}{events} }) {
            my $j = $e->{json} or next;
            push @first, $j->{seq} unless $seen{ $j->{seq} }++;
            $disorder++ unless ::idcmp($e->{id}, $prev) > 0;
            $prev = $e->{id};
        }
        is(join(' ', grep { !$seen{$_} } 1 .. $::N), '', "$name - $k: no seq missing");
        is("@first", join(' ', 1 .. $::N), "$name - $k: first seen in order");
        is($disorder // 0, 0, "$name - $k: ids only rise");
        $dups += grep { $_ > 1 } values %seen;
    }
    Test::More::note("$name - seqs that came twice (sent again to the new master): $dups");
}
--- error_log
ws_agent: Redis sentinel:mymaster switched master
