# ws_agent_stream, more of the publishing side than t/038: two connections
# of one user in one stream, the default bound (maxlen=1000), age= trimming
# by whole nodes, a stream that expired and starts again, Redis stopped
# mid-stream and started again empty, the directive at server level and
# "ws_agent_stream off", ACL users (what the spec lists; no +script; keys
# that do not cover the stream), and the Sentinel master SIGKILLed
# mid-stream (the last block: the topology starts for it).
#
# The streams are read back with "--- redis_stream" (WsAgent::RedisStream):
# every entry's fields, ids rising, each (connection, seq) once, the seen
# bits of STREAM:seen:CONNECTION, and the channel's messages compared with
# the entries.  Redis has no persistence here: a restarted Redis starts
# with no streams.  The private Redis is kept for the file: every block
# has users of its own.
#
# Redis 7.0 trims with "~" by whole macro nodes, a node holding at most
# stream-node-max-entries (100) entries and stream-node-max-bytes (4096):
# about 24 of these envelopes.  MAXLEN ~ 1000 after 1100 appends leaves
# 1012 here; MINID ~ drops a node only when its newest entry is older than
# the bound.  The blocks assert what holds for any node size: at least N
# left, at most N and one node of 100, the newest last and contiguous;
# with no trimming every event would stay.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(with_changes ws_location);
use WsAgent::Sentinel;
use WsAgent::RedisStream;

repeat_each(1);
no_shuffle();
use_redis();
log_level('info');

our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed);

# event k: a published type, its number
sub event { my ($k) = @_; qq({"type":"$Types[$k % 5]","n":$k}) }

# the envelope of user $u's event $seq as the channel has it (the entry's
# id first), a regex
sub envelope {
    my ($u, $seq, $event) = @_;
    my ($type) = $event =~ /^\{"type":"(\w+)"/;
    return '^\{"id":"\d+-\d+","connection_id":"ws_' . quotemeta($u)
        . '_\d+_[0-9a-f]{8}","user":"' . quotemeta($u) . '","seq":' . $seq
        . ',"ts_ms":\d{13},"type":"' . $type . '","event":' . quotemeta($event)
        . '\}$';
}

# ws_backend steps: events $from .. $to in one write
sub burst {
    my ($from, $to) = @_;
    'send texts ' . join ' | ', map { event($_) } $from .. $to;
}

# redis_messages_like lines of user $u's events $k[0] .. (seq 1 ..)
sub channel_like {
    my ($u, @k) = @_;
    join "\n", map { "agent:events:$u " . envelope($u, $_ + 1, event($k[$_])) }
               0 .. $#k;
}

our $Location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 4s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;',
    'ws_agent_stream agent:stream:$ws_agent_user maxlen=100;');
our $Status = "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", with_changes($Location, $block->ws_agent) . $Status)
        unless defined $block->config;
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: two connections of one user: one stream, each connection its own seq 1..N and seen key
--- ws_backend
send text {"type":"connection_ready"}
wait 100ms
send text {"type":"agent_started","n":1}
wait 200ms
send text {"type":"agent_completed","n":2}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
sleep 700ms
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 ^\{"id":"\d+-\d+","connection_id":"ws_1_.*"seq":1,.*"n":1\}\}$
agent:events:1 ^\{"id":"\d+-\d+","connection_id":"ws_1_.*"seq":1,.*"n":1\}\}$
agent:events:1 ^\{"id":"\d+-\d+","connection_id":"ws_1_.*"seq":2,.*"n":2\}\}$
agent:events:1 ^\{"id":"\d+-\d+","connection_id":"ws_1_.*"seq":2,.*"n":2\}\}$
--- redis_stream
agent:stream:1 4 seq 1..2 conns 2 channel agent:events:1 seen



=== TEST 2: no maxlen= or age=: maxlen=1000: after 1100 events 1000..1099 entries left, the newest last
--- ws_agent
ws_agent_stream agent:stream:$ws_agent_user;
--- ws_backend eval
"send text {\"type\":\"connection_ready\"}\n" . ::burst(1, 550) . "\nwait 100ms\n"
. ::burst(551, 1100) . "\nrecord"
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
sleep 1500ms
--- redis_subscribe: agent:events:2
--- redis_stream
agent:stream:2 1000..1099 seq *..1100 channel_tail agent:events:2
--- wait: 5



=== TEST 3: age=3s: 100 events, 50 more 2 s later, 5 more 1.5 s after: MINID ~ drops the nodes whose newest entry is older than 3 s (55..154 left, the newest last); the stream expires within 3 s
--- ws_agent
ws_agent_stream agent:stream:$ws_agent_user age=3s;
--- ws_backend eval
"send text {\"type\":\"connection_ready\"}\n" . ::burst(1, 100) . "\nwait 2s\n"
. ::burst(101, 150) . "\nwait 1500ms\n" . ::burst(151, 155) . "\nrecord"
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
sleep 2500ms
redis_cmd XLEN agent:stream:3 => 150
sleep 1200ms
--- redis_subscribe: agent:events:3
--- redis_stream
agent:stream:3 55..154 seq *..155 pttl<=3000 channel_tail agent:events:3
--- wait: 3



=== TEST 4: age=1s: a second without events and the stream is gone, its seen key is not; the next event starts a new stream (seq 3)
--- ws_agent
ws_agent_stream agent:stream:$ws_agent_user age=1s;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
wait 2s
send text {"type":"agent_completed","n":3}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
sleep 100ms
redis_cmd XLEN agent:stream:4 => 2
sleep 1500ms
redis_cmd EXISTS agent:stream:4 => 0
redis_cmd KEYS agent:stream:4:seen:* => /^\[agent:stream:4:seen:ws_4_\d+_[0-9a-f]{8}\]$/
recv text {"type":"agent_completed","n":3} within 2s
sleep 200ms
--- redis_subscribe: agent:events:4
--- redis_stream
agent:stream:4 1 seq 3..3 pttl<=1000 seen



=== TEST 5: Redis stopped mid-stream, started again empty: the events queued meanwhile are appended once each, in order (seq 6..20); the channel has 1..20 once
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { ("send text " . ::event($_), 'wait 20ms') } 1 .. 5), 'wait 1500ms',
    (map { ("send text " . ::event($_), 'wait 20ms') } 6 .. 15), 'wait 1500ms',
    (map { ("send text " . ::event($_), 'wait 20ms') } 16 .. 20), 'record'
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 5', 'recv text {"type":"connection_ready"}',
    (map { "recv text " . ::event($_) } 1 .. 5), 'redis_stop',
    (map { "recv text " . ::event($_) . " within 3s" } 6 .. 15), 'redis_start',
    (map { "recv text " . ::event($_) . " within 3s" } 16 .. 20), 'sleep 300ms',
    'http_get /status => "events_published_total":20,.*"events_deduplicated_total":0, within 10s'
--- redis_subscribe: agent:events:5
--- redis_messages_like eval
::channel_like(5, 1 .. 20)
--- redis_stream
agent:stream:5 15 seq 6..20 channel_tail agent:events:5 seen
--- wait: 8
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ unavailable/,
 qr/\[notice\].*ws_agent: Redis 127\.0\.0\.1:\d+ connected again, 1[0-5] event\(s\) waiting/]
--- no_error_log
[alert]
[crit]



=== TEST 6: ws_agent_stream at server level reaches a location; "ws_agent_stream off" in another publishes without a stream (no "id")
--- config eval
"    ws_agent_publish agent:events:\$ws_agent_user;\n"
. "    ws_agent_stream agent:stream:\$ws_agent_user maxlen=50;\n"
. ::ws_location('ws_agent on;', 'ws_agent_user $http_x_user_id;')
. (::ws_location('ws_agent on;', 'ws_agent_user $http_x_user_id;', 'ws_agent_stream off;')
   =~ s{location /ws}{location /off}r)
. $::Status
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"tool_completed","n":1}
record
--- ws_client
handshake /off X-User-Id: 6o
recv text {"type":"connection_ready"}
recv text {"type":"tool_completed","n":1}
handshake /ws X-User-Id: 6s
recv text {"type":"connection_ready"}
recv text {"type":"tool_completed","n":1}
sleep 300ms
redis_cmd KEYS agent:stream:6o* => []
--- redis_subscribe: agent:events:6o agent:events:6s
--- redis_messages_like
agent:events:6o ^\{"connection_id":"ws_6o_\d+_[0-9a-f]{8}","user":"6o","seq":1,.*"n":1\}\}$
agent:events:6s ^\{"id":"\d+-\d+","connection_id":"ws_6s_\d+_[0-9a-f]{8}","user":"6s","seq":1,.*"n":1\}\}$
--- redis_stream
agent:stream:6s 1 seq 1..1 channel agent:events:6s



=== TEST 7: an ACL user allowed what the spec lists (+evalsha +script|load +setbit +pexpire +xadd +xtrim +publish, ~agent:stream:*): streams work, with age= too
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=streamer password=secret;
--- redis_acl
streamer on >secret resetchannels &agent:events:* resetkeys ~agent:stream:* -@all +ping +role +evalsha +script|load +setbit +pexpire +xadd +xtrim +publish
--- ws_agent
ws_agent_stream agent:stream:$ws_agent_user maxlen=100 age=1h;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
record
--- ws_client
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
sleep 300ms
http_get /status => "events_published_total":2,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"last_error":"")
redis_cmd ACL LOG => []
--- redis_subscribe: agent:events:7
--- redis_messages_like
agent:events:7 ^\{"id":"\d+-\d+",.*"seq":1,
agent:events:7 ^\{"id":"\d+-\d+",.*"seq":2,
--- redis_stream
agent:stream:7 2 seq 1..2 channel agent:events:7 seen pttl<=3600000



=== TEST 8: an ACL user with every permission the spec lists but +script|load: SCRIPT LOAD refused, said with what the user needs; the events wait (status: queued, last_error), none published, the loss said at exit
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=streamer password=secret;
--- redis_acl
streamer on >secret resetchannels &agent:events:* resetkeys ~agent:stream:* -@all +ping +role +evalsha +setbit +pexpire +xadd +xtrim +publish
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
record
--- ws_client
handshake /ws X-User-Id: 8
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
sleep 500ms
http_get /status => "events_queued_total":2,"events_published_total":0,.*"redis_workers":\[\{(?=[^}]*"connected":false)(?=[^}]*"queued":2,)(?=[^}]*"last_error":"NOPERM[^"]*script\|load)
redis_cmd EXISTS agent:stream:8 => 0
--- redis_subscribe: agent:events:8
--- redis_messages
--- wait: 1
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ refused SCRIPT LOAD \(ws_agent_stream needs a user allowed [^)]*\+script\|load[^)]*~agent:stream:\*\): NOPERM/,
 qr/\[warn\].*ws_agent: worker exiting with 2 event\(s\) not sent to Redis 127\.0\.0\.1:\d+$/]
--- no_error_log eval
['[alert]', '[crit]', qr/ws_agent: Redis \S+ connected/]



=== TEST 9: an ACL user whose keys do not cover the stream: the script's first write refused inside it, counted as a redis_error drop, logged; nothing published
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=streamer password=secret;
--- redis_acl
streamer on >secret resetchannels &agent:events:* resetkeys ~other:* -@all +ping +role +evalsha +script|load +setbit +pexpire +xadd +xtrim +publish
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
record
--- ws_client
handshake /ws X-User-Id: 9
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
sleep 500ms
http_get /status => "events_queued_total":1,"events_published_total":0,.*"redis_error":1,
redis_cmd EXISTS agent:stream:9 => 0
--- redis_subscribe: agent:events:9
--- redis_messages
--- wait: 1
--- error_log eval
[qr/\[error\].*ws_agent: Redis refused EVALSHA \(the stream's append\) \(1 event\(s\) lost\): .*(?:NOPERM|No permissions)/]
--- no_error_log eval
['[alert]', '[crit]', 'refused SCRIPT LOAD']



=== TEST 10: Sentinel: the master SIGKILLed mid-stream (3 connections, 60 events each): on the new master each stream holds seq 1..60 once, in order
--- http_config
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_1 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_2 127.0.0.1:$TEST_NGINX_SENTINEL_PORT_3;
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { ("send text " . ::event($_), 'wait 50ms') } 1 .. 60), 'record'
--- ws_client
handshake /ws X-User-Id: 101
handshake /ws X-User-Id: 102
handshake /ws X-User-Id: 103
sleep 1500ms
sentinel_kill_master
sentinel_wait_switch 15s
sentinel_restart_old_master
sleep 3s
http_get /status => "redis_workers":\[\{[^{}]*"address":"127.0.0.1:$TEST_NGINX_SENTINEL_REPLICA_PORT"
--- timeout: 5
--- sentinel_subscribe: agent:events:101 agent:events:102 agent:events:103
--- sentinel_check eval
sub {
    package main;
    my ($sen, $name) = @_;
    my $new = $sen->last_switch ? $sen->last_switch->{new} : undef;
    ok($new, "$name - a +switch-master was seen") or return;
    my $node = $sen->node($new);
    my $cmd = sub { $node->command(@_) };
    for my $u (101 .. 103) {
        my $key = "agent:stream:$u";
        my $e = [];
        WsAgent::Util::wait_until(8, sub {
            $e = eval { WsAgent::RedisStream::entries($cmd, $key) } || [];
            @$e && ($e->[-1]{seq} // 0) >= 60 });
        my ($bad, $seqs) = WsAgent::RedisStream::entry_problems($key, $e);
        my @conns = keys %$seqs;
        is_deeply([map { WsAgent::RedisStream::seq_text(@{ $seqs->{$_} }) } @conns], ['1..60'],
                  "$name - $key on the new master 127.0.0.1:$new: one connection, seq 1..60 once")
            or diag(join "\n", @$bad[0 .. ($#$bad < 5 ? $#$bad : 5)]);
        is(scalar @$bad, 0, "$name - $key: fields, envelopes, ids rising")
            or diag(join "\n", @$bad[0 .. ($#$bad < 5 ? $#$bad : 5)]);
        # what the new master delivered on the channel is the entries as published
        my %pub = map { (WsAgent::RedisStream::published($_) => 1) } @$e;
        my @m = grep { $_->{channel} eq "agent:events:$u" } $sen->subscriber->messages($new);
        my @odd = grep { !$pub{$_->{payload}} } @m;
        is(scalar @odd, 0, "$name - agent:events:$u: the " . @m . " message(s) the new "
           . "master delivered are its stream's entries, with their ids")
            or diag("first: $odd[0]{payload}");
    }
    my $res = WsAgent::Http::send_request(WsAgent::Sections::server_port(),
        WsAgent::Http::build_request("GET /status"), 3);
    my ($d) = ($res->{body} // '') =~ /"events_deduplicated_total":(\d+)/;
    diag("$name: events_deduplicated_total $d (sent again after the kill, already appended)");
}
--- error_log
ws_agent: Redis sentinel:mymaster switched master from 127.0.0.1:$TEST_NGINX_SENTINEL_MASTER_PORT to 127.0.0.1:$TEST_NGINX_SENTINEL_REPLICA_PORT
--- no_error_log
[alert]
[crit]
