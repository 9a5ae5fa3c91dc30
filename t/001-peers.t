# Self-test of the WebSocket peers: stock nginx (no ws_agent module) proxies
# the test client to the scripted backend; a private redis takes PUBLISH.
# The end of the file proves that wrong expectations do fail.

use Test::Nginx::Socket 'no_plan';
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

# a throw-away certificate for the TLS listener of TEST 14
my $certs = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
       . " -keyout $certs/key.pem -out $certs/cert.pem 2>/dev/null") == 0
    or die "openssl req failed";
$ENV{TEST_NGINX_CERT_DIR} = $certs;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $Proxy) unless defined $block->config;
});

run_tests();

# --- checks can fail --------------------------------------------------------

my $dir = tempdir(CLEANUP => 1);
my $lib = abs_path('t/lib');
(my $wrong = <<'_EOT_') =~ s/\@PROXY\@/$Proxy/;
use Test::Nginx::Socket 'no_plan';
our $Proxy = <<'_EOC_';
@PROXY@_EOC_
add_block_preprocessor(sub { $_[0]->set_value(config => $main::Proxy) });
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
_EOT_
open my $fh, '>', "$dir/wrong.t" or die $!;
print $fh $wrong;
close $fh;

my $out = do {
    local $ENV{TEST_NGINX_SERVROOT} = "$dir/servroot";
    local $ENV{TEST_NGINX_PORT} = WsAgent::Util::free_port();
    `$^X -I$lib $dir/wrong.t 2>&1`;
};
my $status = $? >> 8;
ok($status != 0, 'a file with wrong expectations fails') or diag($out);
like($out, qr/^not ok \d+ - TEST 1: wrong transcript - ws_backend_transcript$/m,
     'a wrong backend transcript fails');
like($out, qr/^ok \d+ - TEST 1: wrong transcript - ws step 3: recv text hello$/m,
     'the right steps of that block pass');
like($out, qr/^not ok \d+ - TEST 2: wrong recv text - ws step 2: recv text wrong$/m,
     'a wrong recv text fails');
like($out, qr/^#\s+expected: text wrong\n#\s+got: text hello$/m,
     'and says what came instead');
like($out, qr/^ok \d+ # skip .*ws step 3: send text after/m,
     'the steps after a failed one are skipped');
like($out, qr/^not ok \d+ - TEST 2: wrong recv text - ws_backend_request_headers$/m,
     'a wrong backend request header fails');
like($out, qr/^not ok \d+ - TEST 3: missing redis message - redis_messages$/m,
     'a missing redis message fails');
like($out, qr/^not ok \d+ - TEST 4: the 101 selects a subprotocol not offered - ws step 1: handshake/m,
     'a 101 selecting a subprotocol that was not offered fails the handshake');
like($out, qr/^#\s+the 101 selects subprotocol 'other', not offered$/m,
     'and says which');
like($out, qr/^not ok \d+ - TEST 5: wrong response_header - ws step 2: response_header Sec-WebSocket-Protocol: nope$/m,
     'a wrong response_header fails');
is(scalar(() = $out =~ /^not ok/mg), 6, 'exactly the wrong checks fail')
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
