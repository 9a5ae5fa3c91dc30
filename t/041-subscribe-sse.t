# The subscriber location over Server-Sent Events (ws_agent_subscribe), with
# real SSE clients (WsAgent::Sse: --- sse_subscribe / sse_check) beside the
# gated WebSockets whose events they watch: the format; catch-up from the
# stream and the switch to live under a steady stream of events, resumed
# again and again, checked by id and seq; 1000 subscribers on 50 channels in
# one worker (one SUBSCRIBE each); a slow subscriber closed while fast ones
# keep up; JWT (my channel only, 401 with no Redis read); Redis restarted
# under the subscribers.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
use WsAgent::Jwt;

repeat_each(1);
no_shuffle();
use_redis();
worker_connections(4096);
log_level('info');

my $jwt = WsAgent::Jwt->new;
$ENV{TEST_NGINX_JWT_DIR} = $jwt->dir;
for my $who (qw(alice bob)) {
    $ENV{'TEST_NGINX_JWT_' . uc $who} = $jwt->token(alg => 'HS256',
        claims => qq({"sub":"$who","exp":@{[time + 600]}}));
}

our $config = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;',
    'ws_agent_stream agent:stream:$ws_agent_user maxlen=100000;') . <<'EOC';
        location /sub {
            ws_agent_subscribe agent:events:$arg_user;
            ws_agent_subscribe_stream agent:stream:$arg_user;
        }
        location = /status { ws_agent_status; }
EOC

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", $config) unless defined $block->config;
    $block->set_value("no_error_log", "[alert]\n[crit]\n[error]\n")
        unless defined $block->no_error_log;
});

sub by_connection { WsAgent::Sse::by_connection(@_) }

our ($Conns, $Events) = (4, 600);

run_tests();

__DATA__

=== TEST 1: the event stream: headers, retry, ": live", then each event with its stream id, its type and the envelope
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","run":"r1"}
send text {"type":"chat_message"}
send text {"type":"agent_completed","run":"r1"}
record
--- sse_subscribe
a: /sub?user=1
h: /sub?user=1 ; http10
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","run":"r1"}
recv text {"type":"chat_message"}
recv text {"type":"agent_completed","run":"r1"}
sse_wait a 2 events within 5s
sse_wait h 2 events within 5s
send close 1000
recv close 1000
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    for my $k (qw(a h)) {
        my $conn = $c->{$k}{connections}[0];
        is($conn->{status}, 200, "$name - $k: 200");
        is($conn->{headers}{'content-type'}, 'text/event-stream', "$name - $k: text/event-stream");
        is($conn->{headers}{'cache-control'}, 'no-cache', "$name - $k: Cache-Control: no-cache");
        is($conn->{headers}{'x-accel-buffering'}, 'no', "$name - $k: X-Accel-Buffering: no");
        is($conn->{retry}, 3000, "$name - $k: retry: 3000");
        ok($conn->{live}, "$name - $k: : live");
        my @ev = @{ $c->{$k}{events} };
        is(join(' ', map { $_->{event} } @ev), 'agent_started agent_completed',
           "$name - $k: two events, named by their types");
        is(join(' ', map { $_->{json}{seq} } @ev), '1 2', "$name - $k: seq 1 2");
        is(scalar(grep { $_->{id} =~ /^\d{13}-\d+$/ && $_->{id} eq $_->{json}{id} } @ev), 2,
           "$name - $k: each id: is the envelope's stream id");
        like($ev[0]{data}, qr/^\{"id":"\d+-\d+","connection_id":"ws_1_\d+_[0-9a-f]{8}","user":"1","seq":1,"ts_ms":\d{13},"type":"agent_started","event":\{"type":"agent_started","run":"r1"\}\}$/,
             "$name - $k: data: the envelope");
    }
    is($c->{a}{connections}[0]{headers}{'transfer-encoding'}, 'chunked', "$name - HTTP/1.1: chunked");
    ok(!$c->{h}{connections}[0]{headers}{'transfer-encoding'}, "$name - HTTP/1.0: until close");
}



=== TEST 2: a steady stream of 2400 events (4 connections x 600) while 20 clients drop and resume again and again: each gets every seq of every connection once, in order, ids rising, no gap and no duplicate at any switch
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 1ms} } 1 .. $::Events),
    'record'
--- sse_subscribe eval
CORE::join "\n", 'steady: /sub?user=50',
    map { "r$_: /sub?user=50 ; drop_after=" . (13 + 7 * $_) . " ; resume_after=" . ($_ % 4 * 10) . "ms ; resumes=1000" } 1 .. 20
--- ws_client eval
CORE::join "\n", "parallel $::Conns", 'handshake /ws X-User-Id: 50',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. $::Events),
    'sleep 500ms', 'send close 1000', 'recv close 1000'
--- timeout: 30
--- wait: 20
--- sse_settle: 1s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my $want = join ',', (join(' ', 1 .. $::Events)) x $::Conns;
    my $resumes = 0;
    for my $k ('steady', map { "r$_" } 1 .. 20) {
        my ($seqs, $bad_id, $disorder) = ::by_connection($c->{$k});
        is(scalar keys %$seqs, $::Conns, "$name - $k: events of the $::Conns connections");
        my $got = join ',', map { join ' ', @{ $seqs->{$_} } } sort keys %$seqs;
        ok($got eq $want, "$name - $k: every seq of every connection once, in order")
            or diag("$k: " . join('; ', map { my @s = @{ $seqs->{$_} };
                        scalar(@s) . " events, first " . join(' ', @s[0 .. 9]) } sort keys %$seqs));
        is($bad_id, 0, "$name - $k: every id: is its envelope's id");
        is($disorder, 0, "$name - $k: ids only rise");
        $resumes += @{ $c->{$k}{connections} } - 1;
    }
    cmp_ok($resumes, '>=', 200, "$name - the 20 clients resumed 200 times or more");
    Test::More::note("$name - $resumes resumes over the 20 clients");
}
--- no_error_log
[alert]
[crit]
[error]
reads too slowly



=== TEST 3: 1000 SSE subscribers on 50 channels in one worker: one SUBSCRIBE per channel, every event to every subscriber of its channel and no other
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait 300ms',
    (map { qq{send text {"type":"tool_executing","user":"\$user","n":$_}} } 1 .. 20),
    'record'
--- sse_subscribe eval
CORE::join "\n", map { "c${_}_ x20: /sub?user=$_" } 1 .. 50
--- sse_live_timeout: 30s
--- ws_client eval
CORE::join "\n", 'parallel 50', 'handshake /ws X-User-Id: $i',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"tool_executing","user":"\$i","n":$_}} } 1 .. 20),
    'sleep 1s', 'send close 1000', 'recv close 1000'
--- meanwhile
sleep 300ms
http_get /status => "subscribers":1000,"subscriptions":50,
redis_cmd PUBSUB NUMSUB agent:events:1 agent:events:25 agent:events:50 => [agent:events:1, 1, agent:events:25, 1, agent:events:50, 1]
--- timeout: 30
--- wait: 20
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my ($ok, @bad) = (0);
    for my $u (1 .. 50) {
        for my $k (1 .. 20) {
            my $cl = $c->{"c${u}_$k"};
            my @ev = @{ $cl->{events} };
            my $good = @ev == 20
                && 20 == grep { $_->{json}{user} eq $u && $_->{json}{event}{user} eq $u } @ev;
            my @n = map { $_->{json}{event}{n} } @ev;
            $good &&= "@n" eq join ' ', 1 .. 20;
            $good ? $ok++ : push @bad, "c${u}_$k: " . scalar(@ev) . " events (@n)";
        }
    }
    is($ok, 1000, "$name - all 1000 subscribers got their channel's 20 events, in order, and nothing else")
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}



=== TEST 4: a slow subscriber is closed (counted, logged) once its buffer is full, while five fast ones on the same channel get everything (400 events of 2 kB, 2 ms apart)
--- config eval
# a listen with a small send buffer: nginx's own buffering is what is tested
"        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1 sndbuf=16k;\n"
. $::config =~ s/(ws_agent_subscribe_stream [^\n]*\n)/$1            ws_agent_subscribe_buffer 16k;\n/r
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { 'send text {"type":"agent_thinking","n":' . $_ . ',"pad":"' . ('x' x 2000) . "\"}\nwait 2ms" } 1 .. 400),
    'record'
--- sse_subscribe
slow: /sub?user=60 ; slow=1s ; port=$TEST_NGINX_RAND_PORT_1
fast x5: /sub?user=60 ; port=$TEST_NGINX_RAND_PORT_1
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 60',
    'recv text {"type":"connection_ready"}',
    (map { 'recv_like text ^\{"type":"agent_thinking","n":' . $_ . ',' } 1 .. 400),
    'sse_wait fast 400 events within 10s',
    'http_get /status => "subscriber_slow_closes_total":1,',
    'send close 1000', 'recv close 1000'
--- timeout: 30
--- wait: 10
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    for my $k (map { "fast$_" } 1 .. 5) {
        my @n = map { $_->{json}{event}{n} } @{ $c->{$k}{events} };
        is("@n", join(' ', 1 .. 400), "$name - $k: all 400, in order");
    }
    my $slow = $c->{slow}{connections}[0];
    cmp_ok(scalar @{ $slow->{events} }, '<', 400, "$name - slow: not everything");
    is($slow->{end}, 'eof', "$name - slow: closed by nginx");
    is($slow->{complete}, 0, "$name - slow: without the last chunk");
}
--- no_error_log
[alert]
[crit]
[error]
--- error_log eval
[qr/\[warn\].*ws_agent subscriber: client reads too slowly \(\d+ bytes wait, ws_agent_subscribe_buffer is 16384\), closed; it resumes with its Last-Event-ID/]



=== TEST 5: JWT: a subscriber reads its own events only; without a valid token it gets 401 and nothing is asked of Redis
--- config
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        ws_agent on;
        ws_agent_user $http_x_user_id;
        ws_agent_publish agent:events:$ws_agent_user;
        ws_agent_stream agent:stream:$ws_agent_user;
    }
    location /sub {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_jwt_token $arg_token;
        ws_agent_subscribe agent:events:$ws_agent_jwt_sub;
        ws_agent_subscribe_stream agent:stream:$ws_agent_jwt_sub;
    }
    location = /status { ws_agent_status; }
--- ws_backend
send text {"type":"connection_ready"}
wait 300ms
send text {"type":"agent_started","for":"$user"}
record
--- sse_subscribe
alice: /sub?token=$TEST_NGINX_JWT_ALICE&user=bob
bob: /sub?token=$TEST_NGINX_JWT_BOB
anon: /sub?user=alice
forged: /sub?token=$TEST_NGINX_JWT_ALICE.x
--- ws_client
handshake /ws X-User-Id: alice
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","for":"alice"}
handshake /ws X-User-Id: bob
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","for":"bob"}
sse_wait alice 1 events within 5s
sse_wait bob 1 events within 5s
redis_cmd CONFIG RESETSTAT
http_get /sub?user=alice => 401 Authorization Required
http_get /sub?token=nope => 401 Authorization Required
redis_cmd INFO commandstats => !/cmdstat_(xrange|xrevrange|subscribe)/
http_get /status => "subscribers":2,
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    is(join(' ', map { $_->{json}{user} } @{ $c->{alice}{events} }), 'alice', "$name - alice: her event only");
    is(join(' ', map { $_->{json}{user} } @{ $c->{bob}{events} }), 'bob', "$name - bob: his only");
    is($c->{anon}{connections}[0]{status}, 401, "$name - no token: 401");
    is($c->{forged}{connections}[0]{status}, 401, "$name - a bad signature: 401");
    is(scalar @{ $c->{anon}{events} }, 0, "$name - no token: no event");
}
--- no_error_log
[alert]
[crit]



=== TEST 6: Redis restarted (with its append-only file) under 20 subscribers of a steady stream: they keep receiving, each seq once, in order
--- redis_config
appendonly yes
appendfsync always
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 10ms} } 1 .. 300),
    'record'
--- sse_subscribe
s x20: /sub?user=70
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: 70',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. 100),
    'redis_stop', 'sleep 300ms', 'redis_start',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 101 .. 300),
    'sse_wait s 300 events within 10s',
    'http_get /status => "subscriber_gaps_total":0,',
    'send close 1000', 'recv close 1000'
--- timeout: 30
--- wait: 10
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    for my $k (map { "s$_" } 1 .. 20) {
        my ($seqs, $bad_id, $disorder) = ::by_connection($c->{$k});
        my ($cid) = keys %$seqs;
        is(join(' ', @{ $seqs->{$cid} || [] }), join(' ', 1 .. 300), "$name - $k: seq 1..300 once each");
        is($bad_id + $disorder, 0, "$name - $k: ids as the stream's, rising");
        is(scalar @{ $c->{$k}{connections} }, 1, "$name - $k: on its first connection");
    }
}
--- no_error_log
[alert]
[crit]
--- error_log
unavailable for subscribers
