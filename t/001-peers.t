# Self-test of the WebSocket peers: stock nginx (no ws_agent module) proxies
# the test client to the scripted backend; a private redis takes PUBLISH.
# The SSE clients (sse_subscribe) read a fixed event stream nginx returns,
# and a scripted one (WsAgent::Sse::Origin) it proxies, chunked.
# The end of the file proves that wrong expectations do fail.

use Test::Nginx::Socket::WsAgent 'no_plan';
use File::Temp qw(tempdir);
use Cwd qw(abs_path);

our $Proxy = <<'_EOC_';
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection upgrade;
        proxy_set_header X-Proxied yes;
        proxy_read_timeout 5s;
    }
_EOC_

# the SSE blocks' locations: a fixed stream (by Content-Length) that says
# every field of the format, and the scripted origin (chunked by nginx)
our $Sse = <<'_EOC_';
    location = /fixed {
        default_type text/event-stream;
        if ($arg_rate) { limit_rate 200; }
        return 200 "retry: 1000\n\n: live\n\nid: 1\nevent: x\ndata: {\"a\":1}\n\ndata: line one\ndata: line two\n\n:comment two\nid: 7\r\nevent:y\r\ndata:no space\r\n\r\ndata\n\nid: 9\n\nfoo: bar\ndata: after unknown\n\nretry: soon\n\nevent: z\rdata: a\rdata: b\r\rdata: incomplete";
    }
    location /o/ {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SSE_ORIGIN_PORT/;
        proxy_buffering off;
        proxy_read_timeout 10s;
    }
_EOC_
my $origin = WsAgent::Sse::Origin->start;
$ENV{TEST_NGINX_SSE_ORIGIN_PORT} = $origin->port;
END { local $?; $origin->stop if $origin }

# a throw-away certificate for the TLS listener of TEST 14
my $certs = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
       . " -keyout $certs/key.pem -out $certs/cert.pem 2>/dev/null") == 0
    or die "openssl req failed";
$ENV{TEST_NGINX_CERT_DIR} = $certs;

# TEST 21's 1000 clients at once: nginx closes idle connections (those
# whose request it has not read yet) once fewer than 1/16 are free
worker_connections(2048);

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $block->{sse_subscribe} ? $Sse : $Proxy)
        unless defined $block->config;
});

run_tests();

# --- checks can fail --------------------------------------------------------

my $dir = tempdir(CLEANUP => 1);
my $lib = abs_path('t/lib');
(my $wrong = <<'_EOT_') =~ s/\@PROXY\@/$Proxy/;
use Test::Nginx::Socket::WsAgent 'no_plan';
our $Proxy = <<'_EOC_';
@PROXY@_EOC_
add_block_preprocessor(sub {
    $_[0]->set_value(config => $main::Proxy) unless defined $_[0]->config;
});
run_tests();
__DATA__

=== TEST 1: wrong transcript
--- ws_backend
echo
--- ws_client
handshake /ws
send text hello
recv text hello
--- ws_backend_transcript
recv text nope
recv eof

=== TEST 2: wrong recv text
--- ws_backend
send text hello
--- ws_client
handshake /ws
recv text wrong
send text after
--- ws_backend_request_headers
X-Proxied: no

=== TEST 3: missing redis message
--- redis_subscribe: ch
--- ws_client
redis_cmd PUBLISH ch x
--- redis_messages
ch x
ch y
--- wait: 0.5

=== TEST 4: the 101 selects a subprotocol not offered
--- ws_backend
protocol other
--- ws_client
handshake /ws Sec-WebSocket-Protocol: chat
send text after

=== TEST 5: wrong response_header
--- ws_backend
protocol chat
--- ws_client
handshake /ws Sec-WebSocket-Protocol: chat
response_header Sec-WebSocket-Protocol: nope

=== TEST 6: wrong sse_check
--- config
    location = /fixed {
        default_type text/event-stream;
        return 200 ": live\n\nid: 1\ndata: right\n\n";
    }
--- sse_subscribe
a: /fixed
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    is($c->{a}{events}[0]{data}, 'right', "$name - the right data");
    is($c->{a}{events}[0]{data}, 'wrong', "$name - the wrong data");
}

=== TEST 7: a client never live; sse_wait for more than came
--- config
    location = /fixed {
        default_type text/event-stream;
        return 200 ": live\n\nid: 1\ndata: right\n\n";
    }
    location = /trickle {
        default_type text/event-stream;
        limit_rate 1;
        return 200 "retry: 1000\n\n: live\n\n";
    }
--- sse_subscribe
z: /trickle
a: /fixed
--- sse_live_timeout: 500ms
--- ws_client
sse_wait a 5 events within 300ms
_EOT_
open my $fh, '>', "$dir/wrong.t" or die $!;
print $fh $wrong;
close $fh;

my $out = do {
    local $ENV{TEST_NGINX_SERVROOT} = "$dir/servroot";
    # CPAN's runner takes TEST_NGINX_SERVER_PORT (this file's) before
    # TEST_NGINX_PORT
    local $ENV{TEST_NGINX_PORT} = local $ENV{TEST_NGINX_SERVER_PORT}
        = WsAgent::Util::free_port();
    # the child runs on this file's runner, CPAN's or the bundled one
    my $runner = $Test::Nginx::Socket::WsAgent::RunnerLib;
    `$^X -I$lib -I$runner $dir/wrong.t 2>&1`;
};
my $status = $? >> 8;
ok($status != 0, 'a file with wrong expectations fails') or diag($out);
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 1: wrong transcript - ws_backend_transcript$/m,
     'a wrong backend transcript fails');
like($out, qr/^ok \d+ - (?:\S+ )?TEST 1: wrong transcript - ws step 3: recv text hello$/m,
     'the right steps of that block pass');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 2: wrong recv text - ws step 2: recv text wrong$/m,
     'a wrong recv text fails');
like($out, qr/^#\s+expected: text wrong\n#\s+got: text hello$/m,
     'and says what came instead');
like($out, qr/^ok \d+ # skip .*ws step 3: send text after/m,
     'the steps after a failed one are skipped');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 2: wrong recv text - ws_backend_request_headers$/m,
     'a wrong backend request header fails');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 3: missing redis message - redis_messages$/m,
     'a missing redis message fails');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 4: the 101 selects a subprotocol not offered - ws step 1: handshake/m,
     'a 101 selecting a subprotocol that was not offered fails the handshake');
like($out, qr/^#\s+the 101 selects subprotocol 'other', not offered$/m,
     'and says which');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 5: wrong response_header - ws step 2: response_header Sec-WebSocket-Protocol: nope$/m,
     'a wrong response_header fails');
like($out, qr/^ok \d+ - (?:\S+ )?TEST 6: wrong sse_check - the right data$/m,
     'a right sse_check passes');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 6: wrong sse_check - the wrong data$/m,
     'a wrong sse_check fails');
like($out, qr/^#\s+sse clients:\n#\s+a: connection 1: 200, 1 event\(s\) \(ids 1\), 1 comment\(s\), end eof$/m,
     'and the clients are summed up');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 7: a client never live; sse_wait for more than came - sse_subscribe: 2 client\(s\) live or answered$/m,
     'a client not live in time fails');
like($out, qr/^#\s+1 of 2 not live after 0\.\d s:\n#\s+z: connection 1: (?:no response yet|200), 0 event\(s\), comments: none$/m,
     'and says which and how far it got');
like($out, qr/^not ok \d+ - (?:\S+ )?TEST 7: a client never live; sse_wait for more than came - ws step 1: sse_wait a 5 events within 300ms$/m,
     'an sse_wait that times out fails');
like($out, qr/^#\s+after 0\.3 s: a has 1 event\(s\), want 5 /m,
     'and says how many came');
is(scalar(() = $out =~ /^not ok/mg), 9, 'exactly the wrong checks fail')
    or diag($out);

# --- where "pieces" cuts ------------------------------------------------------

is_deeply([WsAgent::Stream::cut_points('1,4..6,9', 10)], [1, 4, 5, 6, 9],
          'pieces 1,4..6,9 cuts before those bytes');
is_deeply([WsAgent::Stream::cut_points('every 3', 10)], [3, 6, 9],
          'pieces every 3 cuts every 3 bytes');
ok(!eval { WsAgent::Stream::cut_points('4,10', 10); 1 }
   && $@ =~ /cut 10 is not inside the 10 bytes/,
   'a cut at the end is a mistake in the test');
ok(!eval { WsAgent::Stream::cut_points('5,4', 10); 1 }
   && $@ =~ /must ascend/, 'cuts ascend');

# --- the SSE stream parser, byte by byte ---------------------------------------

{
    my $p = WsAgent::Sse::Stream->new;
    my @items = map { $p->feed($_) } split //,
        "\xEF\xBB\xBFdata: a\r\r\nid: 5\r\n\r\ndata:b\rdata\r\r: c\r\nretry: 20\n\nid: x\0y\ndata: d\n\n"
        . "data: left";
    is_deeply(\@items, [
        ['event', { id => undef, event => 'message', data => 'a', last_event_id => '' }],
        ['last_id', 5],
        ['event', { id => undef, event => 'message', data => "b\n", last_event_id => 5 }],
        ['comment', 'c'],
        ['retry', 20],
        ['event', { id => undef, event => 'message', data => 'd', last_event_id => 5 }],
    ], 'sse parser, a byte at a time: BOM, CR then CRLF, an id without data, a bare field, '
       . 'an id with NUL ignored, the unfinished event kept back');
    is_deeply([WsAgent::Sse::Stream->new(last_id => 7)->feed("data: x\n\n")],
              [['event', { id => undef, event => 'message', data => 'x',
                           last_event_id => 7 }]],
              'a new connection starts from the last event id');
}
ok(!eval { WsAgent::Sse::parse_clients("a: /s ; fast"); 1 }
   && $@ =~ /unknown option 'fast'/, 'sse_subscribe: an unknown option is an error');
ok(!eval { WsAgent::Sse::parse_clients("b x2: /s\nb1: /s"); 1 }
   && $@ =~ /two clients named b1/, 'sse_subscribe: names are unique');
ok(!eval { WsAgent::Sse::parse_clients("a: /s ; resumes=2"); 1 }
   && $@ =~ /go with drop_after/, 'sse_subscribe: resumes needs drop_after');
is_deeply([map { [$_->{name}, $_->{path}, $_->{headers}] }
           @{ WsAgent::Sse::parse_clients("b x2: /s?u=\$n | X-U: \$n  # two\n# none\na: /t A: 1 | B: 2") }],
          [['b1', '/s?u=1', [['X-U', '1']]], ['b2', '/s?u=2', [['X-U', '2']]],
           ['a', '/t', [['A', '1'], ['B', '2']]]],
          'sse_subscribe: groups, $n, headers, comments');

__DATA__

=== TEST 1: echo through stock proxy_pass; request headers reach the backend
--- ws_backend
send text {"type":"connection_ready"}
echo
--- ws_client
handshake /ws X-User-Id: 42 | X-Other: a b
recv text {"type":"connection_ready"}
send text hello
recv text hello
send binary 0a0b0c
recv binary 0a0b0c
send ping p1
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text hello
sent text hello
recv binary 0a0b0c
sent binary 0a0b0c
recv ping p1
recv eof
--- ws_backend_request_headers
Upgrade: websocket
X-User-Id: 42
X-Other: a b
X-Proxied: yes
!X-Absent
--- no_error_log
[error]



=== TEST 2: big messages both ways are summarised by length and digest
--- ws_backend
echo
--- ws_client
handshake /ws
send big 70000
recv big 70000
--- ws_backend_transcript_like
^recv binary len=70000 sha1=[0-9a-f]{40}$
^sent binary len=70000 sha1=[0-9a-f]{40}$
^recv eof$



=== TEST 3: fragmented text, written in pieces, arrives as one message
--- ws_backend
send text_fragments He | llo |  world split 3
record
--- ws_client
handshake /ws
recv text Hello world
send text_fragments a | b | c split 2
--- ws_backend_transcript
sent text_fragments He | llo |  world
recv text abc
recv eof



=== TEST 4: a frame in the same write as the 101
--- ws_backend
with_101 send text early
--- ws_client
handshake /ws
recv text early within 1s
--- ws_backend_transcript
sent text early
recv eof



=== TEST 5: client starts the close handshake
--- ws_backend
record
--- ws_client
handshake /ws
send close 1000 bye
recv close 1000
recv eof
--- ws_backend_transcript
recv close 1000 bye
sent close 1000



=== TEST 6: backend starts the close handshake, the client replies
--- ws_backend
close 1001 going away
--- ws_client
handshake /ws
recv close 1001 going away
recv eof
--- ws_backend_transcript
sent close 1001 going away
recv close 1001



=== TEST 7: backend answers the upgrade with 200
--- ws_backend
status 200
--- ws_client
handshake_expect 200 /ws
--- ws_backend_transcript
sent status 200



=== TEST 8: no backend at all: 502
--- config
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection upgrade;
    }
--- ws_client
handshake_expect 502 /ws
--- error_log
Connection refused



=== TEST 9: an unmasked client frame is recorded as an error; silence is checked
--- ws_backend
wait 300ms
send text late
--- ws_client
handshake /ws
send raw 810568656c6c6f
recv nothing 150ms
recv text late
--- ws_backend_transcript
recv error unmasked
sent text late
recv eof



=== TEST 10: handshake_with: a frame pipelined with the upgrade request
--- ws_backend
record
--- ws_client
handshake_with /ws text first
send many 3 text m
--- ws_backend_transcript
recv text first
recv text m1
recv text m2
recv text m3
recv eof



=== TEST 11: redis: PUBLISH from the client steps reaches the subscriber
--- config
    location = /t { return 200; }
--- redis_subscribe: ch other
--- ws_client
redis_cmd PUBLISH ch x => 1
redis_cmd PUBLISH other "y z"
--- redis_messages
ch x
other y z



=== TEST 12: redis restarts on the same port; messages_like
--- config
    location = /t { return 200; }
--- redis_subscribe: ch
--- ws_client
redis_cmd PUBLISH ch before
redis_stop
redis_start
redis_cmd PING => PONG
--- redis_messages_like
ch ^bef



=== TEST 13: 50 parallel clients, backend ready after a random delay
--- ws_backend
sleep random 0-300ms
send text ready
echo
--- ws_client
parallel 50
handshake /ws
send text early $i
recv text ready
recv text early $i
--- ws_backend_connections: 50
--- ws_backend_transcripts eval
[map { "sent text ready\nrecv text early $_\nsent text early $_\nrecv eof" } 1 .. 50]



=== TEST 14: handshake_tls on another port (TEST_NGINX_RAND_PORT_1)
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
        ssl_certificate $TEST_NGINX_CERT_DIR/cert.pem;
        ssl_certificate_key $TEST_NGINX_CERT_DIR/key.pem;
        location /ws {
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
        }
    }
--- ws_backend
echo
--- ws_client
port $TEST_NGINX_RAND_PORT_1
handshake_tls /ws
send text over tls
recv text over tls
send close 1000
recv close 1000
--- ws_backend_transcript
recv text over tls
sent text over tls
recv close 1000
sent close 1000



=== TEST 15: the backend's subprotocol reaches the client through stock proxy_pass
--- ws_backend
protocol chat
echo
--- ws_client
handshake /ws Sec-WebSocket-Protocol: bearer.x, chat
response_header Sec-WebSocket-Protocol: chat
send text hi
recv text hi
--- ws_backend_request_headers
Sec-WebSocket-Protocol: bearer.x, chat



=== TEST 16: pieces at byte offsets, several messages in one write, $user from the upgrade request
--- ws_backend
send text {"user":"$user"} pieces 1,5..7 gap 1ms
send texts a | b$user | c pieces every 3 gap random 0-2ms
send text_fragments x | y pieces 2 gap 1ms
record
--- ws_client
handshake /ws X-User-Id: 42
recv text {"user":"42"}
recv text a
recv text b42
recv text c
recv text xy
send text hi pieces 3 gap 1ms
--- ws_backend_transcript
sent text {"user":"42"}
sent text a
sent text b42
sent text c
sent text_fragments x | y
recv text hi
recv eof



=== TEST 17: sse: every field of the format, by Content-Length, on HTTP/1.1 and HTTP/1.0
--- sse_subscribe
a: /fixed X-User-Id: 1
e: /fixed ; http10
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my @want = (
        { id => 1, event => 'x', data => '{"a":1}' },
        { id => undef, event => 'message', data => "line one\nline two" },
        { id => 7, event => 'y', data => 'no space' },
        { id => undef, event => 'message', data => '' },
        { id => undef, event => 'message', data => 'after unknown' },
        { id => undef, event => 'z', data => "a\nb" },
    );
    for my $k (qw(a e)) {
        my $conn = $c->{$k}{connections}[0];
        is(scalar @{ $c->{$k}{connections} }, 1, "$name - $k: one connection");
        is($conn->{status}, 200, "$name - $k: status 200");
        is($conn->{headers}{'content-type'}, 'text/event-stream',
           "$name - $k: content-type");
        ok(!$conn->{headers}{'transfer-encoding'}, "$name - $k: by Content-Length");
        is_deeply([map { { id => $_->{id}, event => $_->{event}, data => $_->{data} } }
                   @{ $c->{$k}{events} }], \@want,
                  "$name - $k: id, event, data (lines joined), CRLF and CR, "
                  . "no event without data, the one left at the end dropped");
        is_deeply($c->{$k}{ids}, [1, 7], "$name - $k: ids");
        is_deeply($conn->{comments}, ['live', 'comment two'], "$name - $k: comments");
        is($conn->{retry}, 1000, "$name - $k: retry (retry: soon ignored)");
        is_deeply($c->{$k}{events}[0]{json}, { a => 1 }, "$name - $k: json");
        ok(!defined $c->{$k}{events}[1]{json}, "$name - $k: json undef when not JSON");
        is($conn->{end}, 'eof', "$name - $k: end eof");
        ok($conn->{complete}, "$name - $k: the whole body");
    }
    like($c->{a}{connections}[0]{request},
         qr{^GET /fixed HTTP/1\.1\r\n.*^Accept: text/event-stream\r\n.*^X-User-Id: 1\r\n}ms,
         "$name - a: request line and headers");
    like($c->{e}{connections}[0]{request}, qr{^GET /fixed HTTP/1\.0\r\n},
         "$name - e: HTTP/1.0");
}



=== TEST 18: sse: 50 clients b1..b50 ($n) and HTTP/1.0, through proxy_pass, chunked, chunks ending mid-line
--- sse_subscribe
b x50: /o/s?n=3&pieces=7 | X-User-Id: $n
h: /o/s?n=3&crlf=1&pieces=5 ; http10
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my @bad;
    for my $n (1 .. 50) {
        my $b = $c->{"b$n"};
        my $conn = $b->{connections}[0];
        push @bad, "b$n: " . join ' ', map { $_ // 'undef' }
                $conn->{status}, $conn->{headers}{'transfer-encoding'},
                "@{ $b->{ids} }", (map { $_->{json}{user} } @{ $b->{events} }),
                $conn->{end}, $conn->{complete}
            unless $b->{group} eq 'b' && $b->{n} == $n
                   && $conn->{status} == 200
                   && ($conn->{headers}{'transfer-encoding'} // '') eq 'chunked'
                   && "@{ $b->{ids} }" eq '1 2 3'
                   && !grep({ $_->{json}{user} ne $n || $_->{event} ne 'tick' }
                            @{ $b->{events} })
                   && $conn->{end} eq 'eof' && $conn->{complete}
                   && $conn->{request} =~ /^X-User-Id: $n\r$/m;
    }
    ok(!@bad, "$name - b1..b50: 200 chunked, ids 1 2 3 with their own user, "
              . "the last chunk") or diag(join "\n", @bad);
    my $h = $c->{h}{connections}[0];
    is($h->{headers}{'transfer-encoding'}, undef, "$name - h: HTTP/1.0, not chunked");
    is("@{ $c->{h}{ids} }", '1 2 3', "$name - h: ids (CRLF)");
    is($h->{end}, 'eof', "$name - h: until close");
    ok($h->{complete}, "$name - h: a close-delimited body is complete at its close");
}



=== TEST 19: sse: drop_after and resume, by Last-Event-ID and by query; last_event_id on the first connect; sse_wait
--- sse_subscribe
c: /o/s?n=6&every=20&hold=1 ; drop_after=2 ; resume_after=100ms
q: /o/s?n=3&hold=1 ; drop_after=1 ; resumes=2 ; resume_by=query ; resume_after=0
l: /o/s?n=2&hold=1 ; last_event_id=40
--- ws_client
sse_wait c 8 events within 5s
sse_wait q 5 events
sse_wait l 2 events
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my @cc = @{ $c->{c}{connections} };
    is(scalar @cc, 2, "$name - c: two connections");
    is("@{ $c->{c}{ids} }", '1 2 3 4 5 6 7 8', "$name - c: ids go on after the resume");
    is($cc[0]{end}, 'dropped', "$name - c: the first dropped");
    is(scalar @{ $cc[0]{events} }, 2, "$name - c: after 2 events");
    like($cc[1]{request}, qr/^Last-Event-ID: 2\r$/m, "$name - c: resumed with Last-Event-ID: 2");
    unlike($cc[0]{request}, qr/Last-Event-ID/, "$name - c: none on the first");
    is($cc[1]{events}[0]{json}{last_event_id}, '2', "$name - c: the server got it");
    ok($cc[1]{t} - $cc[0]{events}[-1]{t} >= 0.09, "$name - c: resume_after 100ms");
    is($cc[1]{end}, 'stopped', "$name - c: the second stopped by the harness");
    my @q = @{ $c->{q}{connections} };
    is(scalar @q, 3, "$name - q: resumes=2: three connections");
    is_deeply([map { $_->{end} } @q], [qw(dropped dropped stopped)], "$name - q: ends");
    like($q[1]{request}, qr{^GET /o/s\?n=3&hold=1&last_event_id=1 HTTP}, "$name - q: by query");
    like($q[2]{request}, qr{^GET /o/s\?n=3&hold=1&last_event_id=2 HTTP}, "$name - q: replaced");
    unlike($q[1]{request}, qr/Last-Event-ID/, "$name - q: no header");
    is("@{ $c->{q}{ids} }", '1 2 3 4 5', "$name - q: ids");
    like($c->{l}{connections}[0]{request}, qr/^Last-Event-ID: 40\r$/m,
         "$name - l: last_event_id=40 on the first connect");
    is("@{ $c->{l}{ids} }", '41 42', "$name - l: ids");
}



=== TEST 20: sse: slow clients, answers that are not 200, nowait
--- sse_subscribe
n: /o/s?n=5&every=200&hold=1
s: /o/s?n=5&every=200&hold=1&pad=3000 ; slow
w: /o/s?n=5&every=200&hold=1 ; slow=400ms
x: /o/s?status=403
y: /nope
f: /o/s?live=0&n=1&every=1500&hold=1 ; nowait
--- ws_client
sse_wait n 5 events within 3s
sse_wait f 1 event within 3s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    is("@{ $c->{n}{ids} }", '1 2 3 4 5', "$name - n: every event");
    is(scalar @{ $c->{s}{events} }, 0, "$name - s: slow: live, then reads nothing");
    is_deeply($c->{s}{connections}[0]{comments}, ['live'], "$name - s: it was live");
    is($c->{s}{connections}[0]{end}, 'stopped', "$name - s: stopped");
    is("@{ $c->{w}{ids} }", '1 2 3 4 5', "$name - w: slow=400ms: every event");
    my $w = $c->{w}{connections}[0];
    ok($w->{events}[0]{t} - $w->{t} >= 0.39, "$name - w: the first read after the pause");
    my $x = $c->{x}{connections}[0];
    is($x->{status}, 403, "$name - x: status 403");
    is($x->{body}, "status 403\n", "$name - x: the body kept as it is");
    is(scalar @{ $x->{events} }, 0, "$name - x: no events");
    is($c->{y}{connections}[0]{status}, 404, "$name - y: 404");
    like($c->{y}{connections}[0]{body}, qr/404 Not Found/, "$name - y: nginx's page");
    is("@{ $c->{f}{ids} }", '1', "$name - f: nowait: not live when the steps began");
    is_deeply($c->{f}{connections}[0]{comments}, [], "$name - f: no comment");
}



=== TEST 21: sse: 1000 clients at once (5 processes), live at once, the rest of the stream a second later (limit_rate)
--- sse_subscribe
k x1000: /fixed?rate=1
--- ws_client
sse_wait k 6 events within 10s
--- sse_check eval
sub {
    package main;
    my ($c, $name) = @_;
    my @bad = grep { "@{ $c->{\"k$_\"}{ids} }" ne '1 7'
                     || $c->{"k$_"}{connections}[0]{end} ne 'eof' } 1 .. 1000;
    ok(!@bad, "$name - every client read the whole stream")
        or diag(scalar(@bad) . " did not, first: k$bad[0]");
}
