# ws_agent_stream: each published event is also appended to the user's
# Redis Stream, in one script with the PUBLISH (SCRIPT LOAD in every
# connection's setup, EVALSHA per event): fields t (type) and e (the
# envelope), the channel's envelope led by the entry's id, MAXLEN / MINID
# bounds, (connection id, seq) appended once however often it is sent (a
# reply lost on the way: a proxy in the file swallows it), SCRIPT FLUSH,
# many connections cut at every offset.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
use WsAgent::Util qw(free_port);
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time);

repeat_each(1);
no_shuffle();
use_redis();
log_level('info');

$ENV{TEST_NGINX_CONNS} ||= 24;
our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed chat_message Xgent_started);
our %Published = map { $_ => 1 } @Types[0 .. 4];

sub every_cut {
    map { my $cut = $_; map { [qq({"type":"$_","user":"\$user","cut":$cut}),
                               $cut] } @Types } 3 .. 28;
}
our $PerUser = grep { my ($t) = $_->[0] =~ /"type":"(\w+)"/; $Published{$t} } every_cut();

our $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;',
    'ws_agent_stream agent:stream:$ws_agent_user maxlen=1000;')
    . "        location = /status { ws_agent_status; }\n";

# A TCP proxy in front of Redis (for the de-duplication block): it
# forwards both ways until a command it forwards matches TRIGGER; from
# then on it swallows what Redis answers and, 300 ms later, closes both
# sides: Redis has run those commands, nginx never hears it did, so it
# sends them again (through the proxy again, now forwarding everything).
our $ProxyPid;
sub start_proxy {
    my ($port, $redis_port, $trigger) = @_;
    stop_proxy();
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $port, Listen => 8, ReuseAddr => 1)
        or die "proxy: listen $port: $!\n";
    my $pid = fork // die "fork: $!\n";
    if ($pid) { close $listen; $ProxyPid = $pid; return }
    my ($armed, $born) = (1, time);
    while (time - $born < 60) {
        next unless IO::Select->new($listen)->can_read(1);
        my $c = $listen->accept or next;
        my $r = IO::Socket::INET->new("127.0.0.1:$redis_port") or next;
        my $sel = IO::Select->new($c, $r);
        my $swallow_until;
        CONN: while (time - $born < 60) {
            for my $s ($sel->can_read(0.05)) {
                my $n = sysread $s, my $d, 65536;
                last CONN unless $n;
                if ($s == $c) {
                    syswrite $r, $d;
                    if ($armed && $d =~ /$trigger/) {
                        ($armed, $swallow_until) = (0, time + 0.3);
                    }
                } elsif (!defined $swallow_until) {
                    syswrite $c, $d;
                }
            }
            last if defined $swallow_until && time > $swallow_until;
        }
        close $c;
        close $r;
    }
    POSIX::_exit(0);
}
sub stop_proxy {
    return unless $ProxyPid;
    kill 'KILL', $ProxyPid;
    waitpid $ProxyPid, 0;
    undef $ProxyPid;
}
END { local $?; stop_proxy() }

add_block_preprocessor(sub {
    my $block = shift;

    $ENV{TEST_NGINX_PROXY_PORT} ||= free_port(below => 32768);
    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n[error]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: each event is appended (t: its type, e: the envelope), in order; the channel's envelope is led by the same entry id
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"chat_message"}
send text {"type":"agent_completed","n":2}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"chat_message"}
recv text {"type":"agent_completed","n":2}
sleep 300ms
redis_cmd XLEN agent:stream:1 => 2
redis_cmd XRANGE agent:stream:1 - + => /^\[\[(\d{13}-\d+), \[t, agent_started, e, \{"connection_id":"ws_1_\d+_[0-9a-f]{8}","user":"1","seq":1,"ts_ms":\d{13},"type":"agent_started","event":\{"type":"agent_started","n":1\}\}\]\], \[(\d{13}-\d+), \[t, agent_completed, e, \{"connection_id":"ws_1_[^"]+","user":"1","seq":2,[^\]]*"event":\{"type":"agent_completed","n":2\}\}\]\]\]$/
http_get /status => "events_published_total":2,.*"events_deduplicated_total":0,
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 ^\{"id":"\d{13}-\d+","connection_id":"ws_1_\d+_[0-9a-f]{8}","user":"1","seq":1,"ts_ms":\d{13},"type":"agent_started","event":\{"type":"agent_started","n":1\}\}$
agent:events:1 ^\{"id":"\d{13}-\d+","connection_id":"ws_1_.*"seq":2,.*"type":"agent_completed"



=== TEST 2: the channel's id and the stream's are the same entry's (a subscriber replaying and one live see one id)
--- config eval
$::config . "        location /sub { ws_agent_subscribe agent:events:\$arg_user; ws_agent_subscribe_stream agent:stream:\$arg_user; }\n"
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
record
--- sse_subscribe
live: /sub?user=2
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
sse_wait live 2 events within 5s
send close 1000
recv close 1000
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my @live = map { $_->{json}{id} } @{ $c->{live}{events} };
    my $r = WsAgent::Redis::reply_text(
        WsAgent::Sections::redis()->command('XRANGE', 'agent:stream:2', '-', '+'));
    my @stream = $r =~ /\[(\d{13}-\d+), \[t,/g;
    is("@live", "@stream", "$name - the ids on the channel are the stream's entries' ids");
    is(scalar @stream, 2, "$name - two entries");
}



=== TEST 3: maxlen=10 and 150 events: the stream is trimmed (MAXLEN ~ keeps whole nodes), the newest entry is the last event
--- config eval
$::config =~ s/maxlen=1000/maxlen=10/r
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}} } 1 .. 150), 'record'
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 3', 'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. 150),
    'sleep 300ms',
    'redis_cmd XLEN agent:stream:3 => /^([1-9]\d|1[01]\d|\d)$/',
    'redis_cmd XREVRANGE agent:stream:3 + - COUNT 1 => /"seq":150,.*"n":150\}\}\]\]\]$/',
    'send close 1000', 'recv close 1000'



=== TEST 4: age=1s (and no MAXLEN): entries older than a second are trimmed, the stream expires a second after its newest
--- config eval
$::config =~ s/maxlen=1000/age=1s/r
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
wait 1500ms
send text {"type":"agent_thinking","n":2}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
sleep 200ms
redis_cmd XLEN agent:stream:4 => 1
redis_cmd PTTL agent:stream:4 => /^([1-9]\d{0,2}|1000)$/
sleep 1200ms
redis_cmd EXISTS agent:stream:4 => 0
send close 1000
recv close 1000



=== TEST 5: a reply lost after Redis ran the script (a proxy swallows it and drops the connection): the event goes again, is neither appended nor published twice, and is counted as deduplicated
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_PROXY_PORT;
--- post_setup_server_root
main::start_proxy($ENV{TEST_NGINX_PROXY_PORT}, $ENV{TEST_NGINX_REDIS_PORT}, qr/"n":10\}/);
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 20ms} } 1 .. 30), 'record'
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 5', 'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. 30),
    'sleep 1500ms',
    'redis_cmd XLEN agent:stream:5 => 30',
    'http_get /status => "events_published_total":30,.*"events_deduplicated_total":[1-9]',
    'send close 1000', 'recv close 1000'
--- redis_subscribe: agent:events:5
--- redis_messages_like eval
CORE::join "\n", map { 'agent:events:5 "seq":' . $_ . ',.*"n":' . $_ . '\}\}$' } 1 .. 30
--- wait: 5
--- no_error_log
[alert]
[crit]
--- error_log
ws_agent: Redis 127.0.0.1
connected again



=== TEST 6: SCRIPT FLUSH mid-stream: NOSCRIPT is said, the connection loads the script again, no event lost or doubled
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 10ms} } 1 .. 20),
    'wait 300ms',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 10ms} } 21 .. 40), 'record'
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 6', 'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. 20),
    'redis_cmd SCRIPT FLUSH => OK',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 21 .. 40),
    'sleep 800ms',
    'redis_cmd XLEN agent:stream:6 => 40',
    'send close 1000', 'recv close 1000'
--- redis_subscribe: agent:events:6
--- redis_messages_like eval
CORE::join "\n", map { 'agent:events:6 "seq":' . $_ . ',.*"n":' . $_ . '\}\}$' } 1 .. 40
--- wait: 5
--- no_error_log
[alert]
[crit]
--- error_log
lost the append script (NOSCRIPT), reconnecting to load it again



=== TEST 7: a location without ws_agent_stream is unchanged: no "id", nothing appended
--- config eval
$::config =~ s/\s*ws_agent_stream [^\n]*//r
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 300ms
redis_cmd EXISTS agent:stream:7 => 0
send close 1000
recv close 1000
--- redis_subscribe: agent:events:7
--- redis_messages_like
agent:events:7 ^\{"connection_id":"ws_7_.*"seq":1,.*"type":"agent_started"



=== TEST 8: many connections in one worker, events cut at every offset of the type member: each user's stream holds exactly its published events, once, in order
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait random 0-200ms',
    map({ "send text $_->[0] pieces $_->[1] gap random 1-3ms" } ::every_cut()),
    'record'
--- ws_client eval
CORE::join "\n", 'parallel $TEST_NGINX_CONNS', 'handshake /ws X-User-Id: p$i',
    'recv text {"type":"connection_ready"}',
    map({ "recv text " . $_->[0] =~ s/\$user/p\$i/r } ::every_cut()),
    'sleep 500ms',
    "redis_cmd XLEN agent:stream:p\$i => $::PerUser",
    "redis_cmd XREVRANGE agent:stream:p\$i + - COUNT 1 => /\"user\":\"p\$i\",\"seq\":$::PerUser,.*\"cut\":28\\}\\}\\]\\]\\]\$/",
    'send close 1000', 'recv close 1000'
--- wait: 10
--- timeout: 20



=== TEST 9: an ACL user that may PUBLISH but not load scripts: the refusal is said, with what the user needs
--- redis_acl
publisher on >secret resetchannels &agent:events:* -@all +publish +ping +role
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=publisher password=secret;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 9
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 500ms
http_get /status => "redis_workers":\[\{[^}]*"connected":false.*"last_error":"NOPERM
send close 1000
recv close 1000
--- no_error_log
[alert]
[crit]
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ refused SCRIPT LOAD \(ws_agent_stream needs a user allowed \+script\|load \+evalsha .*~agent:stream:\*\)/]



=== TEST 10: nginx -t: ws_agent_stream without ws_agent_publish
--- config eval
$::config =~ s/\s*ws_agent_publish [^\n]*//r
--- must_die
--- error_log
"ws_agent_stream" is set but "ws_agent_publish" is off: the stream takes the events published on a channel



=== TEST 11: nginx -t: a bad maxlen=, a bad age=, an unknown parameter, no bound
--- config eval
$::config =~ s/maxlen=1000/maxlen=ten/r
--- must_die
--- error_log
"ws_agent_stream" has an invalid "maxlen=ten" (a number of entries)



=== TEST 12: nginx -t: a bad age=
--- config eval
$::config =~ s/maxlen=1000/age=soon/r
--- must_die
--- error_log
"ws_agent_stream" has an invalid "age=soon" (a time, such as age=1h)



=== TEST 13: nginx -t: an unknown parameter
--- config eval
$::config =~ s/maxlen=1000/max=10/r
--- must_die
--- error_log
"ws_agent_stream" has an unknown parameter "max=10" (expected maxlen= or age=)



=== TEST 14: nginx -t: maxlen=0 without age= is no bound
--- config eval
$::config =~ s/maxlen=1000/maxlen=0/r
--- must_die
--- error_log
"ws_agent_stream" directive needs a bound: maxlen=N (more than 0) or age=TIME



=== TEST 15: nginx -t: a Redis Cluster stream without a hash tag, and one whose channel has another
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:7000;
--- must_die
--- error_log
"ws_agent_stream" "agent:stream:$ws_agent_user" has no {hash tag}: in a Redis Cluster the stream and the channel must share one, e.g. "agent:stream:{$ws_agent_user}" and "agent:events:{$ws_agent_user}" (quoted)



=== TEST 16: nginx -t: a Redis Cluster channel without the stream's hash tag
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:7000;
--- config eval
# quoted: a { in a bare word would open a block
$::config =~ s/agent:stream:\$ws_agent_user/"agent:stream:{\$ws_agent_user}"/r
--- must_die
--- error_log
"ws_agent_publish" "agent:events:$ws_agent_user" does not carry the stream's hash tag "{$ws_agent_user}": in a Redis Cluster both must be on one slot



=== TEST 17: ws_agent_stream at http and server level is the default of the locations that publish: /status and a plain proxy, which do not, start and work; /ws appends
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    ws_agent_stream agent:stream:http:$ws_agent_user maxlen=100;
--- config eval
'        ws_agent_stream agent:stream:$ws_agent_user maxlen=100;' . "\n"
. WsAgent::Conf::ws_location('ws_agent on;', 'ws_agent_user $http_x_user_id;',
                             'ws_agent_publish agent:events:$ws_agent_user;')
. "        location = /status { ws_agent_status; }\n"
. '        location /plain { ws_agent on; proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT; }' . "\n"
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 17
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 300ms
redis_cmd XLEN agent:stream:17 => 1
redis_cmd EXISTS agent:stream:http:17 => 0
http_get /status => "events_published_total":1,
send close 1000
recv close 1000



=== TEST 18: an ACL user that may load the script but not run it: each event's EVALSHA is refused, lost and said as such (not as a refused PUBLISH)
--- redis_acl
publisher on >secret resetchannels &agent:events:* ~agent:stream:* -@all +publish +ping +role +script|load
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=publisher password=secret;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_completed"}
record
--- ws_client
handshake /ws X-User-Id: 18
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_completed"}
sleep 1500ms
http_get /status => "redis_error":2,.*"last_error":"NOPERM[^"]*evalsha
send close 1000
recv close 1000
--- no_error_log
[alert]
[crit]
refused PUBLISH
refused SCRIPT LOAD
--- error_log eval
[qr/\[error\].*ws_agent: Redis refused EVALSHA \(the stream's append\) \(2 event\(s\) lost\): NOPERM/]
