# The readiness gate: nothing the client sends reaches the backend before the
# backend's ack; afterwards every held frame goes first, in order.

use File::Temp qw(tempdir);
use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(with_changes ws_location);

# a throw-away certificate for the TLS block
my $certs = tempdir(CLEANUP => 1);
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost"
       . " -keyout $certs/key.pem -out $certs/cert.pem 2>/dev/null") == 0
    or die "openssl failed\n";
$ENV{TEST_NGINX_CERT_DIR} = $certs;

repeat_each(1);
no_shuffle();

my $ws_location = ws_location(
    'proxy_set_header X-WS-Connection-Id $ws_agent_connection_id;',
    'ws_agent on;',
    'ws_agent_ready_timeout 3s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_max_frame_size 2m;');

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config) {
        $block->set_value("config",
                          with_changes($ws_location, $block->ws_agent));
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: the race: 3 messages sent right after the 101 reach the backend after its ack, in order
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: 42
send text m1
send text m2
send text m3
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text m1
recv text m2
recv text m3
recv close 1000
sent close 1000
--- error_log eval
[qr/ws_agent ws_42_\d+_[0-9a-f]{8}: backend ready after \d+ ms, 3 frames held/]



=== TEST 2: a fragmented ack split across TCP writes opens the gate
--- ws_backend
wait 200ms
send text_fragments {"type": | "connection_ | ready"} split 3
record
--- ws_client
handshake /ws
send text early
recv text {"type":"connection_ready"}
send text late
send close 1000
recv close 1000
--- ws_backend_transcript
sent text_fragments {"type": | "connection_ | ready"}
recv text early
recv text late
recv close 1000
sent close 1000



=== TEST 3: an ack in the same packet as the 101; client bytes pipelined with the request are held too
--- ws_backend
with_101 send text {"type":"connection_ready"}
record
--- ws_client
handshake_with /ws text first
recv text {"type":"connection_ready"}
send text second
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text first
recv text second
recv close 1000
sent close 1000



=== TEST 4: pipelined client bytes wait for a late ack
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake_with /ws text first
send text second
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text first
recv text second
recv close 1000
sent close 1000



=== TEST 5: ws_agent_ready_forward off: the client never sees the ack, other text goes on
--- ws_agent
ws_agent_ready_forward off;
--- ws_backend
send text {"type":"agent_started"}
wait 200ms
send text_fragments {"type":"connection | _ready"} split 2
echo
--- ws_client
handshake /ws
send text hi
recv text {"type":"agent_started"}
recv text hi
send close 1000
recv close 1000



=== TEST 6: backend frames before the ack reach the client at once
--- ws_backend
send text hello
wait 800ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text held
recv text hello within 400ms
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text hello
sent text {"type":"connection_ready"}
recv text held
recv close 1000
sent close 1000



=== TEST 7: a text message of another type or not JSON is not the ack
--- ws_backend
send text {"type":"connection_readyX"}
send text connection_ready
send text ["connection_ready"]
send text {"kind":"connection_ready"}
send text {"nested":{"type":"connection_ready"}}
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text held
recv text {"type":"connection_readyX"}
recv text connection_ready
recv text ["connection_ready"]
recv text {"kind":"connection_ready"}
recv text {"nested":{"type":"connection_ready"}}
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_readyX"}
sent text connection_ready
sent text ["connection_ready"]
sent text {"kind":"connection_ready"}
sent text {"nested":{"type":"connection_ready"}}
sent text {"type":"connection_ready"}
recv text held
recv close 1000
sent close 1000



=== TEST 8: ws_agent_ready_type and ws_agent_type_key name the ack
--- ws_agent
ws_agent_ready_type go;
ws_agent_type_key event;
--- ws_backend
wait 100ms
send text {"type":"connection_ready"}
wait 200ms
send text {"event":"go","type":"x"}
record
--- ws_client
handshake /ws
send text held
recv text {"type":"connection_ready"}
recv text {"event":"go","type":"x"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
sent text {"event":"go","type":"x"}
recv text held
recv close 1000
sent close 1000



=== TEST 9: no ack in time: 1013 to the client, upstream closed, logged with the connection id
--- ws_agent
ws_agent_ready_timeout 300ms;
--- ws_backend
wait 2s
--- ws_client
handshake /ws X-User-Id: u7
send text lost
recv close 1013 within 2s
--- ws_backend_transcript
recv eof
--- error_log eval
[qr/\[error\].*ws_agent ws_u7_\d+_[0-9a-f]{8}: backend not ready after \d+ ms, closing with 1013; 1 frames \(\d+ bytes\) held are dropped/]



=== TEST 10: backend gone before the ack: 1014 to the client, logged
--- ws_backend
wait 200ms
drop
--- ws_client
handshake /ws
send text x
recv close 1014 within 2s
--- error_log eval
[qr/\[error\].*ws_agent ws_anon_\d+_[0-9a-f]{8}: backend closed before it was ready .*closing with 1014/]



=== TEST 11: over 1 MiB in 20 frames before the ack, 64k gate buffer: all delivered after the ack, byte for byte
--- ws_backend
wait 500ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send big 60000
send big 60001
send big 60002
send big 60003
send big 60004
send big 60005
send big 60006
send big 60007
send big 60008
send big 60009
send big 60010
send big 60011
send big 60012
send big 60013
send big 60014
send big 60015
send big 60016
send big 60017
send big 60018
send big 60019
recv text {"type":"connection_ready"} within 5s
send close 1000
recv close 1000 within 5s
--- ws_backend_transcript_like
^sent text \{"type":"connection_ready"\}$
^recv binary len=60000 sha1=
^recv binary len=60001 sha1=
^recv binary len=60002 sha1=
^recv binary len=60003 sha1=
^recv binary len=60004 sha1=
^recv binary len=60005 sha1=
^recv binary len=60006 sha1=
^recv binary len=60007 sha1=
^recv binary len=60008 sha1=
^recv binary len=60009 sha1=
^recv binary len=60010 sha1=
^recv binary len=60011 sha1=
^recv binary len=60012 sha1=
^recv binary len=60013 sha1=
^recv binary len=60014 sha1=
^recv binary len=60015 sha1=
^recv binary len=60016 sha1=
^recv binary len=60017 sha1=
^recv binary len=60018 sha1=
^recv binary len=60019 sha1=
^recv close 1000$
^sent close 1000$
--- timeout: 10



=== TEST 12: one 1.5 MB frame before the ack passes the 64k gate buffer intact
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
echo
--- ws_client
handshake /ws
send big 1500000
recv text {"type":"connection_ready"} within 5s
recv big 1500000 within 5s
send close 1000
recv close 1000
--- timeout: 10



=== TEST 13: a ping before the ack is held in order with the data
--- ws_backend
wait 200ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
send ping p
send text b
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text a
recv ping p
recv text b
recv close 1000
sent close 1000



=== TEST 14: a client close before the ack reaches the backend behind the data it followed
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
send close 1000 bye
recv text {"type":"connection_ready"}
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text a
recv close 1000 bye
sent close 1000



=== TEST 15: a client that drops TCP before the ack: the backend still gets every whole frame, then 1001
--- ws_backend
wait 400ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
send text b
drop
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text a
recv text b
recv close 1001 client went away
sent close 1001
--- error_log
client left while gated, 2 frames held for the backend



=== TEST 16: permessage-deflate is never negotiated through a gated location
--- ws_backend
send text {"type":"connection_ready"}
--- ws_client
handshake /ws Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_request_headers
!Sec-WebSocket-Extensions
Upgrade: websocket



=== TEST 17: the backend receives $ws_agent_connection_id; variables reach the access log
--- http_config
    log_format ws 'WSLOG id=$ws_agent_connection_id user=$ws_agent_user ready_ms=$ws_agent_ready_ms held=$ws_agent_frames_held close=$ws_agent_close_code';
--- ws_agent
proxy_set_header X-User-Id $ws_agent_user;
access_log logs/error.log ws;
--- ws_backend
wait 200ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: 10146348
send text a
send text b
recv text {"type":"connection_ready"}
send close 4000
recv close 4000
--- ws_backend_request_headers
X-User-Id: 10146348
--- error_log eval
[qr/WSLOG id=ws_10146348_\d{10}_[0-9a-f]{8} user=10146348 ready_ms=\d+ held=2 close=4000/]



=== TEST 18: after the ack, traffic flows both ways untouched
--- ws_backend
send text {"type":"connection_ready"}
echo
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send text one
recv text one
send binary 00ff10
recv binary 00ff10
send text_fragments a | b | c
recv text abc
send big 70000
recv big 70000
send close 1000
recv close 1000



=== TEST 19: unmasked client frame after the ack: 1002 to the client, close to the backend, logged
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 81026869
recv close 1002
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv close 1002 unmasked client frame
sent close 1002
--- error_log
client protocol error: unmasked client frame, closing with 1002



=== TEST 20: RSV1 without an extension: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw c18000000000
recv close 1002
--- error_log
client protocol error: reserved bits set



=== TEST 21: a control frame over 125 bytes: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 89fe007e00000000
recv close 1002
--- error_log
client protocol error: control frame over 125 bytes



=== TEST 22: a fragmented control frame: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 098000000000
recv close 1002
--- error_log
client protocol error: fragmented control frame



=== TEST 23: a reserved opcode: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 838000000000
recv close 1002
--- error_log
client protocol error: reserved opcode



=== TEST 24: a 64-bit length with the top bit set: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 82ff800000000000000000000000
recv close 1002
--- error_log
client protocol error: 64-bit length with the top bit set



=== TEST 25: a frame over ws_agent_max_frame_size: 1009
--- ws_agent
ws_agent_max_frame_size 1k;
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send text small
send big 2000
recv close 1009
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text small
recv close 1009 frame over the size limit
sent close 1009
--- error_log
client protocol error: frame over the size limit, closing with 1009



=== TEST 26: a protocol error while gated: 1002 to the client at once; the whole frames before it still reach the backend, then 1002
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
send text b
send raw 81026869
recv close 1002 within 200ms
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text a
recv text b
recv close 1002 client protocol error
sent close 1002
--- error_log
client protocol error: unmasked client frame, closing with 1002; 2 frames held go to the backend once it is ready



=== TEST 26b: a frame over the size limit while gated, split across writes: 1009, the frames before it delivered
--- ws_agent
ws_agent_max_frame_size 1k;
ws_agent_ready_forward off;
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
send big 5000 split 3
recv close 1009 within 1s
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text a
recv close 1009 client protocol error
sent close 1009



=== TEST 27: a masked frame from the backend: 1002 to the client, logged as the backend's fault
--- ws_backend
send text {"type":"connection_ready"}
send raw 81820000000068 69
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: masked server frame



=== TEST 28: TLS between client and nginx
--- config
    listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
    ssl_certificate $TEST_NGINX_CERT_DIR/cert.pem;
    ssl_certificate_key $TEST_NGINX_CERT_DIR/key.pem;
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        ws_agent on;
    }
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
echo
--- ws_client
port $TEST_NGINX_RAND_PORT_1
handshake_tls /ws
send text one
send text two
recv text {"type":"connection_ready"}
recv text one
recv text two
send big 100000
recv big 100000
send close 1000
recv close 1000
--- ws_backend_transcript_like
^sent text \{"type":"connection_ready"\}$
^recv text one$
^sent text one$
^recv text two$
^sent text two$
^recv binary len=100000
^sent binary len=100000
^recv close 1000$
^sent close 1000$



=== TEST 29: a non-WebSocket request on a ws_agent location passes untouched
--- config
    location /plain {
        ws_agent on;
        return 200 "plain\n";
    }
--- request
GET /plain
--- response_body
plain



=== TEST 30: a backend that answers the upgrade with 200 passes untouched
--- ws_backend
status 200
--- ws_client
handshake_expect 200 /ws



=== TEST 31: 50 concurrent connections with random ack delays: each backend connection gets exactly its own client's messages, in order
--- ws_backend
wait random 0-300ms
send text {"type":"connection_ready"}
record
--- ws_client
parallel 50
handshake /ws X-User-Id: u$i
send text a$i
send text b$i
send text c$i
recv text {"type":"connection_ready"} within 3s
send close 1000
recv close 1000
--- ws_backend_connections: 50
--- ws_backend_transcripts eval
[map { "sent text {\"type\":\"connection_ready\"}\nrecv text a$_\nrecv text b$_\nrecv text c$_\nrecv close 1000\nsent close 1000" } 1 .. 50]
--- timeout: 10



=== TEST 32: ws_agent off: the relay is stock nginx's, even with an early message
--- ws_agent
ws_agent off;
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text early
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
recv text early
sent text {"type":"connection_ready"}
recv close 1000
sent close 1000



=== TEST 33: another protocol upgraded through a ws_agent location (Upgrade: foo) is relayed untouched, not read as WebSocket frames
--- ws_backend
record
--- ws_client
handshake /ws | Upgrade: foo
send raw 81026869
recv nothing 300ms
drop
--- ws_backend_request_headers
Upgrade: foo
--- ws_backend_transcript_like
^recv error unmasked$
^recv eof$
--- no_error_log
protocol error
gate closed



=== TEST 34: Upgrade: WebSocket in another case is gated all the same
--- ws_backend
wait 200ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws | Upgrade: WebSocket
send text early
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text early
recv close 1000
sent close 1000



=== TEST 35: proxy_read_timeout shorter than ws_agent_ready_timeout: while gated the module owns the wait, the client gets 1013 and the log line
--- ws_agent
proxy_read_timeout 300ms;
ws_agent_ready_timeout 1200ms;
--- ws_backend
wait 3s
--- ws_client
handshake /ws
send text held
recv close 1013 backend not ready within 3s
--- error_log
backend not ready after
closing with 1013; 1 frames
--- no_error_log
upstream timed out
[alert]
--- timeout: 6



=== TEST 36: after the ack proxy_read_timeout is nginx's again
--- ws_agent
proxy_read_timeout 400ms;
ws_agent_ready_timeout 2s;
--- ws_backend
send text {"type":"connection_ready"}
wait 3s
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv eof within 2s
--- error_log
upstream timed out
--- timeout: 6



=== TEST 37: $ws_agent_close_code says 1001 when the module said goodbye to the backend for a client that left while gated
--- http_config
    log_format ws 'WSLOG close=$ws_agent_close_code held=$ws_agent_frames_held';
--- ws_agent
access_log logs/error.log ws;
--- ws_backend
wait 400ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
drop
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text a
recv close 1001 client went away
sent close 1001
--- error_log
WSLOG close=1001 held=1
