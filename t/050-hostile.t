# Hostile input: what the module answers to every RFC 6455 violation a
# client or a backend can commit, to lengths that cannot be honoured, to
# slow-loris and flooding peers and to garbage where a handshake should be.
# Each answer is a close code to the right peer, one log line with the
# connection id, no [alert] or [crit], and nginx serving the next
# connection.  t/020-gate.t already covers, after the ack: an unmasked
# client frame, RSV1, a 126-byte control frame, a fragmented control frame,
# opcode 3, a 2^63 length, a frame over ws_agent_max_frame_size, an
# unmasked frame while gated and a masked backend frame; they are not
# repeated here.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(with_changes ws_location);

repeat_each(1);
no_shuffle();

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 3s;',
    'ws_agent_user $http_x_user_id;');

# the connection after the hostile one: nginx still serves it normally
my $next = <<'_EOS_';
handshake /ws X-User-Id: next
recv text {"type":"connection_ready"}
send text still here
send close 1000
recv close 1000
_EOS_

# n masked pings with a zero key, payloads p001.., as one raw write
sub pings { join '', map { '898400000000' . unpack 'H*', sprintf 'p%03d', $_ } 1 .. $_[0] }

$ENV{TEST_NGINX_HOSTILE_NEXT} = 1;

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config) {
        $block->set_value("config", with_changes($ws_location, $block->ws_agent));
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }

    # "--- ws_client" ending in "NEXT" runs a normal connection after it
    if (defined $block->ws_client && $block->ws_client =~ /^NEXT$/m) {
        (my $steps = $block->ws_client) =~ s/^NEXT$/$next/m;
        $block->set_value("ws_client", $steps);
    }
});

run_tests();

__DATA__

=== TEST 1: client RSV2 and RSV3 bits while gated: 1002 at once, the frame held before still owed to the backend
--- ws_backend
wait 500ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h1
send text held
send raw a18000000000
recv close 1002 within 1s
NEXT
--- error_log eval
[qr/ws_agent ws_h1_\d+_[0-9a-f]{8}: client protocol error: reserved bits set, closing with 1002; 1 frames held go to the backend once it is ready/]



=== TEST 2: a client continuation frame with no message started: 1002 to both sides
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h2
recv text {"type":"connection_ready"}
send text before
send raw 808300000000616263
recv close 1002
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text before
recv close 1002 continuation outside a message
sent close 1002
--- error_log
client protocol error: continuation outside a message, closing with 1002



=== TEST 3: a new client text message inside a fragmented one: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h3
recv text {"type":"connection_ready"}
send raw 01830000000061626381830000000064656680830000000067686a
recv close 1002
NEXT
--- error_log
client protocol error: new message inside a fragmented message, closing with 1002



=== TEST 4: a reserved control opcode (0xB) from the client: 1002
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h4
recv text {"type":"connection_ready"}
send raw 8b8000000000
recv close 1002
NEXT
--- error_log
client protocol error: reserved opcode, closing with 1002



=== TEST 5: a 2^63 length while gated, its header sent byte at a time: 1002 once the header is in
--- ws_backend
wait 2s
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h5
send text held
send raw 82ff8000000000000000 00000000 split 14
recv close 1002 within 1s
NEXT
--- error_log
client protocol error: 64-bit length with the top bit set, closing with 1002; 1 frames held go to the backend once it is ready



=== TEST 6: a 2^62 length (valid, over the 1m default limit) while gated: 1009 from the header alone
--- ws_backend
wait 2s
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h6
send raw 82ff400000000000000000000000
recv close 1009 within 1s
NEXT
--- error_log
client protocol error: frame over the size limit, closing with 1009; 0 frames held go to the backend once it is ready



=== TEST 7: a 16-bit length one byte over ws_agent_max_frame_size, payload never sent: 1009 from the header
--- ws_agent
ws_agent_max_frame_size 1k;
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
send raw 82fe040100000000
recv close 1009
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv close 1009 frame over the size limit
sent close 1009
--- error_log
client protocol error: frame over the size limit, closing with 1009



=== TEST 8: slow loris: a text frame byte at a time while gated is delivered whole after the ack
--- ws_backend
wait 200ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h8
send text hello split 11
send text world
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text hello
recv text world
recv close 1000
sent close 1000



=== TEST 9: slow loris: the ack arrives while a client frame is half in; the frame reaches the backend whole, in order
--- ws_backend
wait 250ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h9
send text first
send text 0123456789abcdefghijklmnopqrstuvwxyz split 42
send text last
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text first
recv text 0123456789abcdefghijklmnopqrstuvwxyz
recv text last
recv close 1000
sent close 1000



=== TEST 10: slow loris: a 64-bit-length header, mask and payload byte at a time after the ack
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h10
recv text {"type":"connection_ready"}
send raw 82ff0000000000000005 00000000 68656c6c6f split 19
send close 1000
recv close 1000
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv binary 68656c6c6f
recv close 1000
sent close 1000



=== TEST 11: a flood of 300 pings before the ack: all held, delivered after the ack in order, none answered by nginx
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client eval
"handshake /ws X-User-Id: h11
send raw " . main::pings(300) . "
send text after the pings
recv text {\"type\":\"connection_ready\"}
recv nothing 200ms
send close 1000
recv close 1000
NEXT"
--- ws_backend_transcript eval
CORE::join("\n", 'sent text {"type":"connection_ready"}',
     (map { sprintf 'recv ping p%03d', $_ } 1 .. 300),
     'recv text after the pings', 'recv close 1000', 'sent close 1000') . "\n"
--- error_log eval
[qr/backend ready after \d+ ms, 301 frames held/]



=== TEST 12: 2000 pings past a 1k gate buffer: back-pressure, nothing dropped
--- ws_agent
ws_agent_gate_buffer 1k;
--- ws_backend
wait 500ms
send text {"type":"connection_ready"}
record
--- ws_client eval
"handshake /ws
send raw " . main::pings(999) . main::pings(999) . "
recv text {\"type\":\"connection_ready\"}
send close 1000
recv close 1000
NEXT"
--- ws_backend_transcript eval
CORE::join("\n", 'sent text {"type":"connection_ready"}',
     (map { sprintf 'recv ping p%03d', $_ } 1 .. 999, 1 .. 999),
     'recv close 1000', 'sent close 1000') . "\n"
--- timeout: 10



=== TEST 13: 3000 small messages past a 1k gate buffer, one write: all delivered after the ack, in order
--- ws_agent
ws_agent_gate_buffer 1k;
--- ws_backend
wait 500ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send many 3000 text m
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
NEXT
--- ws_backend_transcript eval
CORE::join("\n", 'sent text {"type":"connection_ready"}',
     (map { "recv text m$_" } 1 .. 3000),
     'recv close 1000', 'sent close 1000') . "\n"
--- timeout: 10



=== TEST 14: a client that sends after its own close: its close reaches the backend and is answered, what follows it is dropped and logged
# RFC 6455 5.5.1: no data after a close.  The backend reads on past the
# close until EOF, so anything forwarded after it would be in the transcript.
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record_past_close
--- ws_client
handshake /ws X-User-Id: h14
send text before
send close 1000
send text after close
send binary 0a0b
send ping late
recv text {"type":"connection_ready"}
recv close 1000
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text before
recv close 1000
sent close 1000
recv eof
--- error_log
client sent frames after its close frame; they are dropped



=== TEST 15: the same with the gate open: data after the client's close is dropped
--- ws_backend
send text {"type":"connection_ready"}
record_past_close
--- ws_client
handshake /ws X-User-Id: h15
recv text {"type":"connection_ready"}
send text before
send close 1001 bye
send text after close
send many 20 text m
recv close 1001
drop
sleep 200ms
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text before
recv close 1001 bye
sent close 1001
recv eof
--- error_log
client sent frames after its close frame; they are dropped



=== TEST 16: a client close frame with a 1-byte body (RFC 6455 5.5.1) passes to the backend as it is
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h16
recv text {"type":"connection_ready"}
send raw 88810000000003
recv close
NEXT
--- ws_backend_transcript_like
^sent text \{"type":"connection_ready"\}$
^recv close
^sent close



=== TEST 17: invalid UTF-8 in a client text frame is relayed untouched (the endpoints judge text, RFC 6455 8.1)
--- ws_backend
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h17
recv text {"type":"connection_ready"}
send raw 818400000000c328ffff
send close 1000
recv close 1000
NEXT
--- ws_backend_transcript_like
^sent text \{"type":"connection_ready"\}$
^recv text \xc3\(\xff\xff$
^recv close 1000$
^sent close 1000$



=== TEST 18: garbage instead of a handshake: 400 from nginx, nothing reaches the backend
--- ws_backend
send text {"type":"connection_ready"}
record
--- raw_request eval
"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" . ("\x00" x 64) . "\r\n\r\n"
--- error_code: 400
--- ws_backend_connections: 0



=== TEST 19: WebSocket frames instead of a handshake: 400
--- ws_backend
send text {"type":"connection_ready"}
record
--- raw_request eval
"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" x 20
--- error_code: 400
--- ws_backend_connections: 0



=== TEST 20: an upgrade request without Host: 400, nothing reaches the backend
--- ws_backend
send text {"type":"connection_ready"}
record
--- raw_request eval
"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
--- error_code: 400
--- ws_backend_connections: 0



=== TEST 21: a backend sending an HTTP response as bytes after its 101, before the ack: 1002 to the client, held frames dropped
--- ws_backend
send raw 485454502f312e3120323030204f4b0d0a0d0a
record
--- ws_client
handshake /ws X-User-Id: h21
send text held
recv close 1002 within 1s
--- error_log eval
[qr/ws_agent ws_h21_\d+_[0-9a-f]{8}: backend protocol error: reserved bits set, closing the client with 1002/]



=== TEST 22: a backend sending garbage after the ack: 1002 to the client; the next connection is served
--- ws_backend
send text {"type":"connection_ready"}
wait 300ms
send raw 3c68746d6c3e
record
--- ws_client
handshake /ws X-User-Id: h22
recv text {"type":"connection_ready"}
recv close 1002
handshake /ws X-User-Id: h22b
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: reserved bits set, closing the client with 1002



=== TEST 23: a 2^63 length from the backend: 1002 to the client
--- ws_backend
send text {"type":"connection_ready"}
send raw 827f8000000000000000
record
--- ws_client
handshake /ws X-User-Id: h23
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: 64-bit length with the top bit set, closing the client with 1002



=== TEST 24: a backend frame over ws_agent_max_frame_size, header only: 1009 to the client
--- ws_agent
ws_agent_max_frame_size 1k;
--- ws_backend
send text {"type":"connection_ready"}
send raw 827f0000000000100000
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv close 1009
--- error_log
backend protocol error: frame over the size limit, closing the client with 1009



=== TEST 25: a 126-byte ping from the backend: 1002
--- ws_backend
send text {"type":"connection_ready"}
send raw 897e007e
record
--- ws_client
handshake /ws X-User-Id: h25
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: control frame over 125 bytes, closing the client with 1002



=== TEST 26: a fragmented pong from the backend: 1002
--- ws_backend
send text {"type":"connection_ready"}
send raw 0a00
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: fragmented control frame, closing the client with 1002



=== TEST 27: a reserved opcode (0xF) from the backend while gated: 1002, held frames dropped
--- ws_backend
wait 100ms
send raw 8f00
record
--- ws_client
handshake /ws X-User-Id: h27
send text held
recv close 1002 within 1s
--- error_log
backend protocol error: reserved opcode, closing the client with 1002



=== TEST 28: a backend continuation frame with no message started: 1002
--- ws_backend
send text {"type":"connection_ready"}
send raw 80026869
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: continuation outside a message, closing the client with 1002



=== TEST 29: a new backend message inside a fragmented one: 1002
--- ws_backend
send text {"type":"connection_ready"}
send raw 0102686981026869
record
--- ws_client
handshake /ws
recv text {"type":"connection_ready"}
recv close 1002
--- error_log
backend protocol error: new message inside a fragmented message, closing the client with 1002



=== TEST 30: a backend ack split byte at a time opens the gate; the held message follows
--- ws_backend
wait 100ms
send text {"type":"connection_ready"} split 28
record
--- ws_client
handshake /ws X-User-Id: h30
send text held
recv text {"type":"connection_ready"} within 3s
send close 1000
recv close 1000
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text held
recv close 1000
sent close 1000



=== TEST 31: a backend that sends data after its own close: the client gets the close, not the data
--- ws_backend
send text {"type":"connection_ready"}
send raw 880203e8
send text after close
record
--- ws_client
handshake /ws X-User-Id: h31
recv text {"type":"connection_ready"}
recv close 1000
recv eof
NEXT
--- error_log
backend sent frames after its close frame; they are dropped



=== TEST 32: a client that drops mid-frame while gated: the whole frames before it reach the backend, not the half one
--- ws_backend
wait 400ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: h32
send text whole
send raw 818a00000000616263
drop
NEXT
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text whole
recv close 1001 client went away
sent close 1001
