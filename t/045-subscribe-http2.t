# The subscriber location over HTTP/2 (cleartext, prior knowledge), the way
# a browser's EventSource reaches it behind "listen ... http2": many SSE
# streams on one connection (WsAgent::Sse's h2=CONN, carried by
# t/lib/h2-transport.py on Debian's python3-h2), beside the gated
# WebSockets whose events they watch.  Streams catch up and go live, are
# reset and resumed while the others on the connection go on, and a stream
# that gets no window back is closed while the fast ones keep up.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

# scripts/test.sh (which installs it) sets WS_AGENT_H2_REQUIRED: missing, it fails
if (system('/usr/bin/python3', '-c', 'import h2') != 0) {
    my $why = 'no python3-h2 (Debian 12: apt-get install python3-h2)';
    plan skip_all => $why unless $ENV{WS_AGENT_H2_REQUIRED};
    plan tests => 1;
    fail($why);
    exit;
}

repeat_each(1);
no_shuffle();
use_redis();
log_level('info');

our $config = "        listen 127.0.0.1:\$TEST_NGINX_RAND_PORT_1 http2;\n"
    . ws_location(
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

run_tests();

__DATA__

=== TEST 1: 12 streams on one HTTP/2 connection, 4 per channel (one with last_event_id=0): each gets its channel's 40 events once, in order, with the envelopes' ids; status counts 12 subscribers, 3 subscriptions
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait 300ms',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 5ms} } 1 .. 40),
    'record'
--- sse_subscribe eval
CORE::join "\n", (map { "u${_}_ x3: /sub?user=h1$_ ; h2=c ; port=\$TEST_NGINX_RAND_PORT_1" } 1 .. 3),
    map { "late$_: /sub?user=h1$_&last_event_id=0 ; h2=c ; port=\$TEST_NGINX_RAND_PORT_1" } 1 .. 3
--- ws_client eval
CORE::join "\n", 'parallel 3', 'handshake /ws X-User-Id: h1$i',
    'recv text {"type":"connection_ready"}',
    'http_get /status => "subscribers":12,"subscriptions":3,',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. 40),
    'sleep 500ms', 'send close 1000', 'recv close 1000'
--- wait: 10
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    for my $u (1 .. 3) {
        for my $k ((map { "u${u}_$_" } 1 .. 3), "late$u") {
            my $cl = $c->{$k};
            my $conn = $cl->{connections}[0];
            is($conn->{status}, 200, "$name - $k: 200 over HTTP/2");
            is($conn->{headers}{'content-type'}, 'text/event-stream', "$name - $k: text/event-stream");
            my ($seqs, $bad_id, $disorder) = ::by_connection($cl);
            my @s = map { @$_ } values %$seqs;
            is(scalar keys %$seqs, 1, "$name - $k: one connection's events");
            is("@s", join(' ', 1 .. 40), "$name - $k: the 40 events once, in order");
            is($bad_id, 0, "$name - $k: every id: is its envelope's id");
            is($disorder, 0, "$name - $k: ids only rise");
        }
    }
}



=== TEST 2: on one HTTP/2 connection, 10 streams reset and resumed with their Last-Event-ID again and again while a steady one goes on, under 3 x 300 events: each gets every seq of every WebSocket once, in order, ids rising
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { qq{send text {"type":"agent_thinking","n":$_}\nwait 2ms} } 1 .. 300),
    'record'
--- sse_subscribe eval
CORE::join "\n", 'steady: /sub?user=h2 ; h2=c ; port=$TEST_NGINX_RAND_PORT_1',
    map { "r$_: /sub?user=h2 ; h2=c ; port=\$TEST_NGINX_RAND_PORT_1 ; drop_after=" . (11 + 5 * $_) . " ; resume_after=" . ($_ % 3 * 10) . "ms ; resumes=1000" } 1 .. 10
--- ws_client eval
CORE::join "\n", 'parallel 3', 'handshake /ws X-User-Id: h2',
    'recv text {"type":"connection_ready"}',
    (map { qq{recv text {"type":"agent_thinking","n":$_}} } 1 .. 300),
    'sleep 500ms', 'send close 1000', 'recv close 1000'
--- timeout: 30
--- wait: 20
--- sse_settle: 1s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my $want = join ',', (join(' ', 1 .. 300)) x 3;
    my $resumes = 0;
    for my $k ('steady', map { "r$_" } 1 .. 10) {
        my ($seqs, $bad_id, $disorder) = ::by_connection($c->{$k});
        my $got = join ',', map { join ' ', @{ $seqs->{$_} } } sort keys %$seqs;
        ok($got eq $want, "$name - $k: every seq of the 3 connections once, in order")
            or diag("$k: " . join('; ', map { my @s = @{ $seqs->{$_} };
                        scalar(@s) . " events, first " . join(' ', @s[0 .. 9]) } sort keys %$seqs));
        is($bad_id, 0, "$name - $k: every id: is its envelope's id");
        is($disorder, 0, "$name - $k: ids only rise");
        $resumes += @{ $c->{$k}{connections} } - 1;
    }
    is(scalar @{ $c->{steady}{connections} }, 1, "$name - steady: one stream throughout");
    cmp_ok($resumes, '>=', 30, "$name - the 10 streams were reset and resumed 30 times or more");
    Test::More::note("$name - $resumes resumes over the 10 streams");
}
--- no_error_log
[alert]
[crit]
[error]
reads too slowly



=== TEST 3: a stream that gets no window back is closed (counted, logged) once its buffer is full, while five fast streams on the same HTTP/2 connection get everything (300 events of 2 kB, 10 ms apart: 200 kB/s a stream)
--- config eval
$::config =~ s/(ws_agent_subscribe_stream [^\n]*\n)/$1            ws_agent_subscribe_buffer 16k;\n/r
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}',
    (map { 'send text {"type":"agent_thinking","n":' . $_ . ',"pad":"' . ('x' x 2000) . "\"}\nwait 10ms" } 1 .. 300),
    'record'
--- sse_subscribe
slow: /sub?user=h3 ; slow ; h2=c ; port=$TEST_NGINX_RAND_PORT_1
fast x5: /sub?user=h3 ; h2=c ; port=$TEST_NGINX_RAND_PORT_1
--- ws_client eval
CORE::join "\n", 'handshake /ws X-User-Id: h3',
    'recv text {"type":"connection_ready"}',
    (map { 'recv_like text ^\{"type":"agent_thinking","n":' . $_ . ',' } 1 .. 300),
    'sse_wait fast 300 events within 10s',
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
        is("@n", join(' ', 1 .. 300), "$name - $k: all 300, in order");
    }
    my $slow = $c->{slow}{connections}[0];
    cmp_ok(scalar @{ $slow->{events} }, '<', 300, "$name - slow: not everything");
    like($slow->{end}, qr/^(eof|error: stream reset \d+)$/, "$name - slow: its stream ended by nginx");
}
--- no_error_log
[alert]
[crit]
[error]
--- error_log eval
[qr/\[warn\].*ws_agent subscriber: client reads too slowly \(\d+ bytes wait, ws_agent_subscribe_buffer is 16384\), closed; it resumes with its Last-Event-ID/]
