# Publishing to Redis over TLS (issue #14; /work/wt/SPEC-transport.md):
# the server's certificate checked against ws_agent_redis_tls_trusted_certificate
# and ws_agent_redis_tls_name (or ADDR's host), a client certificate when the
# server asks for one, verification off, the nginx -t errors of the tls
# directives, and many connections' events cut at every offset.
#
# The private Redis listens with TLS on $TEST_NGINX_REDIS_TLS_PORT (--- redis_tls:
# CERT [auth-clients]) and plainly on $TEST_NGINX_REDIS_PORT, where the
# subscriber stays; the file's CA and certificates are in $TEST_NGINX_TLS_DIR
# (ca.pem, wrong-ca.pem, server.pem/.key and wrong-server.pem/.key for
# redis.test, localhost and 127.0.0.1, client.pem/.key of the good CA).
# Nothing reaches Redis but through its TLS port: a plain client there gets
# no reply.  A server certificate of an untrusted CA reads "verify failed (20:
# unable to get local issuer certificate)" (the spec's example) or, as
# SSL_get_verify_result gives it when nginx's verify callback lets the
# handshake go on, "(21: unable to verify the first certificate)": both
# are accepted, no other code.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

repeat_each(1);
no_shuffle();
use_redis();
# a debug line per frame of the many connections would be the main cost;
# the module's "connected" line is info
log_level('info');

$ENV{TEST_NGINX_CONNS} ||= 24;
die "TEST_NGINX_CONNS: 20 to 40\n"
    unless $ENV{TEST_NGINX_CONNS} =~ /^\d+$/
           && $ENV{TEST_NGINX_CONNS} >= 20 && $ENV{TEST_NGINX_CONNS} <= 40;
our @Users = 1 .. $ENV{TEST_NGINX_CONNS};

# --- the concurrency blocks, as in t/025-interleave.t -----------------------

# the five published types, another type, an event with one letter wrong
our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed chat_message Xgent_started);
our %Published = map { $_ => 1 } @Types[0 .. 4];

# every type cut once at every offset from the start of the type member to
# past its end, the types taking turns: [payload, cut] pairs
sub every_cut {
    map { my $cut = $_; map { [qq({"type":"$_","user":"\$user","cut":$cut}),
                               $cut] } @Types } 3 .. 28;
}

# bursts of all the types in one write, cut every N bytes (odd N)
sub bursts {
    my @sizes = (3, 5, 7, 9, 11, 13, 17, 19, 23, 29);
    map { my $b = $_; [$sizes[$b - 1],
                       map { qq({"type":"$_","user":"\$user","burst":$b}) }
                       @Types[$b % 7 .. 6], @Types[0 .. $b % 7 - 1]] }
        1 .. @sizes;
}

# what the subscriber of every user's channel must see, in order
sub envelopes {
    my ($payloads) = @_;
    my @want;
    for my $u (@Users) {
        my $seq = 0;
        for my $p (@$payloads) {
            my ($type) = $p =~ /^\{"type":"(\w+)"/;
            next unless $Published{$type};
            (my $event = $p =~ s/\$user/$u/gr) =~ s/([{}])/\\$1/g;
            $seq++;
            push @want, "agent:events:$u ^\\{\"connection_id\":"
                . "\"ws_${u}_\\d+_[0-9a-f]{8}\",\"user\":\"$u\",\"seq\":$seq,"
                . "\"ts_ms\":\\d{13},\"type\":\"$type\",\"event\":$event\\}\$";
        }
    }
    return join "\n", @want;
}

sub channels { join ' ', map { "agent:events:$_" } @Users }

sub per_user {
    my ($text) = @_;
    return [map { my $u = $_; $text =~ s/\$(?:user|i)\b/$u/gr } @Users];
}

# --- the file's defaults -----------------------------------------------------

my $http = <<'_EOC_';
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_TLS_PORT tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_name redis.test;
_EOC_

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 4s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;')
    . "    location = /status { ws_agent_status; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", $http) unless defined $block->http_config;
    $block->set_value("config", $ws_location) unless defined $block->config;
    $block->set_value("redis_tls", "server") unless defined $block->redis_tls;
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: a CA that signed the server's certificate and its name: events published through TLS reach the subscriber; the status says tls, the address and the role
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_completed"}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_completed"}
sleep 500ms
http_get /status => "events_published_total":2,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"tls":true)(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_REDIS_TLS_PORT")(?=[^}]*"role":"master")(?=[^}]*"queued":0,)(?=[^}]*"in_flight":0[,}])
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 "seq":1,.*"type":"agent_started"
agent:events:1 "seq":2,.*"type":"agent_completed"
--- error_log eval
[qr/\[info\].*ws_agent: Redis 127\.0\.0\.1:\d+ connected/]



=== TEST 2: no ws_agent_redis_tls_name: ADDR's host (localhost) is the name checked
--- http_config
    ws_agent_redis localhost:$TEST_NGINX_REDIS_TLS_PORT tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"tool_completed"}
record
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
recv text {"type":"tool_completed"}
sleep 500ms
http_get /status => "redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"tls":true)(?=[^}]*"address":"127\.0\.0\.1:$TEST_NGINX_REDIS_TLS_PORT")
send close 1000
recv close 1000
--- redis_subscribe: agent:events:2
--- redis_messages_like
agent:events:2 "seq":1,.*"type":"tool_completed"



=== TEST 3: a server certificate of another CA: "certificate verify failed", the events wait; the server restarted with a certificate the CA trusts gets every one of them, in order, none lost
--- redis_tls: wrong-server
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started","n":1}
send text {"type":"agent_thinking","n":2}
send text {"type":"tool_executing","n":3}
wait 1500ms
send text {"type":"agent_completed","n":4}
record
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
recv text {"type":"agent_started","n":1}
recv text {"type":"agent_thinking","n":2}
recv text {"type":"tool_executing","n":3}
sleep 700ms
http_get /status => "events_queued_total":3,"events_published_total":0,.*"redis_workers":\[\{(?=[^}]*"connected":false)(?=[^}]*"queued":3,)(?=[^}]*"in_flight":0[,}])(?=[^}]*"last_error":"TLS certificate verify failed \((?:20: unable to get local issuer certificate|21: unable to verify the first certificate)\)")(?=[^}]*"tls":true)
redis_stop
redis_start tls server
recv text {"type":"agent_completed","n":4} within 3s
send close 1000
recv close 1000
--- redis_subscribe: agent:events:3
--- redis_messages_like
agent:events:3 "seq":1,.*"n":1\}\}$
agent:events:3 "seq":2,.*"n":2\}\}$
agent:events:3 "seq":3,.*"n":3\}\}$
agent:events:3 "seq":4,.*"n":4\}\}$
--- wait: 10
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ unavailable \(TLS certificate verify failed \((?:20: unable to get local issuer certificate|21: unable to verify the first certificate)\)\); events wait in a queue of 10000, reconnecting with back-off/,
 qr/\[notice\].*ws_agent: Redis 127\.0\.0\.1:\d+ connected again, [34] event\(s\) waiting/]
--- no_error_log
[alert]
Redis queue full
not sent to Redis



=== TEST 4: ws_agent_redis_tls_name that is not the certificate's: "does not match", nothing published
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_TLS_PORT tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_name other.test;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 700ms
http_get /status => "redis_workers":\[\{(?=[^}]*"connected":false)(?=[^}]*"queued":1)(?=[^}]*"last_error":"TLS certificate does not match \\"other\.test\\"")
send close 1000
recv close 1000
--- redis_subscribe: agent:events:4
--- redis_messages
--- wait: 1
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ unavailable \(TLS certificate does not match "other\.test"\); events wait/]
--- no_error_log eval
['[alert]', qr/ws_agent: Redis \S+ connected/]



=== TEST 5: a server that asks for a client certificate, none configured: never connected, a clear reason
--- redis_tls: server auth-clients
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 5
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 1s
http_get /status => "events_published_total":0,.*"redis_workers":\[\{(?=[^}]*"connected":false)(?=[^}]*"queued":1)(?=[^}]*"last_error":"[^"]+")
send close 1000
recv close 1000
--- redis_subscribe: agent:events:5
--- redis_messages
--- wait: 1
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ unavailable \([^)]+\); events wait/,
 qr/certificate required|alert number 116|peer did not return a certificate|unavailable \(connection lost right after the TLS handshake: does the server require ws_agent_redis_tls_certificate\?\)/]
--- no_error_log eval
['[alert]', qr/ws_agent: Redis \S+ connected/]



=== TEST 6: the same server, ws_agent_redis_tls_certificate and _key of the CA: events flow
--- redis_tls: server auth-clients
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_TLS_PORT tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_name redis.test;
    ws_agent_redis_tls_certificate $TEST_NGINX_TLS_DIR/client.pem;
    ws_agent_redis_tls_certificate_key $TEST_NGINX_TLS_DIR/client.key;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_thinking"}
record
--- ws_client
handshake /ws X-User-Id: 6
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_thinking"}
sleep 500ms
http_get /status => "redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"tls":true)
send close 1000
recv close 1000
--- redis_subscribe: agent:events:6
--- redis_messages_like
agent:events:6 "seq":1,.*"type":"agent_started"
agent:events:6 "seq":2,.*"type":"agent_thinking"



=== TEST 7: ws_agent_redis_tls_verify off, no CA: a certificate nothing trusts is accepted
--- redis_tls: wrong-server
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_TLS_PORT tls;
    ws_agent_redis_tls_verify off;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 7
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 500ms
http_get /status => "redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"tls":true)
send close 1000
recv close 1000
--- redis_subscribe: agent:events:7
--- redis_messages_like
agent:events:7 "seq":1,.*"type":"agent_started"



=== TEST 8: nginx -t: ws_agent_redis_tls_trusted_certificate without tls
--- http_config
    ws_agent_redis 127.0.0.1:6379;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
--- must_die
--- error_log
"ws_agent_redis_tls_trusted_certificate" is set but "ws_agent_redis" has no tls



=== TEST 9: nginx -t: ws_agent_redis_tls_name without tls
--- http_config
    ws_agent_redis 127.0.0.1:6379;
    ws_agent_redis_tls_name redis.test;
--- must_die
--- error_log
"ws_agent_redis_tls_name" is set but "ws_agent_redis" has no tls



=== TEST 10: nginx -t: ws_agent_redis_tls_verify without tls
--- http_config
    ws_agent_redis 127.0.0.1:6379;
    ws_agent_redis_tls_verify off;
--- must_die
--- error_log
"ws_agent_redis_tls_verify" is set but "ws_agent_redis" has no tls



=== TEST 11: nginx -t: a client certificate without tls
--- http_config
    ws_agent_redis 127.0.0.1:6379;
    ws_agent_redis_tls_certificate $TEST_NGINX_TLS_DIR/client.pem;
    ws_agent_redis_tls_certificate_key $TEST_NGINX_TLS_DIR/client.key;
--- must_die
--- error_log eval
[qr/"ws_agent_redis_tls_certificate(?:_key)?" is set but "ws_agent_redis" has no tls/]



=== TEST 12: nginx -t: ws_agent_redis_tls_protocols and _ciphers without tls
--- http_config
    ws_agent_redis 127.0.0.1:6379;
    ws_agent_redis_tls_protocols TLSv1.3;
    ws_agent_redis_tls_ciphers HIGH;
--- must_die
--- error_log eval
[qr/"ws_agent_redis_tls_(?:protocols|ciphers)" is set but "ws_agent_redis" has no tls/]



=== TEST 13: nginx -t: tls with verification on (the default) but no CA
--- http_config
    ws_agent_redis 127.0.0.1:6379 tls;
--- must_die
--- error_log
"ws_agent_redis" has tls and ws_agent_redis_tls_verify on but no "ws_agent_redis_tls_trusted_certificate"



=== TEST 14: nginx -t: tls, ws_agent_redis_tls_verify on said, no CA
--- http_config
    ws_agent_redis 127.0.0.1:6379 tls;
    ws_agent_redis_tls_verify on;
--- must_die
--- error_log
"ws_agent_redis" has tls and ws_agent_redis_tls_verify on but no "ws_agent_redis_tls_trusted_certificate"



=== TEST 15: nginx -t: a client certificate without its key
--- http_config
    ws_agent_redis 127.0.0.1:6379 tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_certificate $TEST_NGINX_TLS_DIR/client.pem;
--- must_die
--- error_log
"ws_agent_redis_tls_certificate" is set without "ws_agent_redis_tls_certificate_key"



=== TEST 16: nginx -t: a client key without its certificate
--- http_config
    ws_agent_redis 127.0.0.1:6379 tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_certificate_key $TEST_NGINX_TLS_DIR/client.key;
--- must_die
--- error_log
"ws_agent_redis_tls_certificate_key" is set without "ws_agent_redis_tls_certificate"



=== TEST 17: nginx -t: a CA file that is not there: nginx's own error
--- http_config
    ws_agent_redis 127.0.0.1:6379 tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/missing-ca.pem;
--- must_die
--- error_log eval
[qr/\[emerg\].*SSL_CTX_load_verify_locations\("[^"]*\/missing-ca\.pem"\) failed/]



=== TEST 18: nginx -t: a client certificate file that is not there: nginx's own error
--- http_config
    ws_agent_redis 127.0.0.1:6379 tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_certificate $TEST_NGINX_TLS_DIR/missing-client.pem;
    ws_agent_redis_tls_certificate_key $TEST_NGINX_TLS_DIR/client.key;
--- must_die
--- error_log eval
[qr/\[emerg\].*cannot load certificate "[^"]*\/missing-client\.pem"/]



=== TEST 19: nginx -t: tls with a unix socket is not supported
--- http_config
    ws_agent_redis unix:/tmp/ws-agent-redis.sock tls;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
--- must_die
--- error_log
"ws_agent_redis" has tls with a unix socket



=== TEST 20: nginx -t: an unknown parameter names tls and user= among the expected ones
--- http_config
    ws_agent_redis 127.0.0.1:6379 ssl;
--- must_die
--- error_log
"ws_agent_redis" has an unknown parameter "ssl" (expected tls, user=, password= or db=)



=== TEST 21: many connections in one worker, events cut in two at every offset of the type member: each published once over TLS, on its own user's channel, in order
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait random 0-200ms',
    map({ "send text $_->[0] pieces $_->[1] gap random 1-3ms" } ::every_cut()),
    'record'
--- ws_client eval
CORE::join "\n", 'parallel $TEST_NGINX_CONNS', 'handshake /ws X-User-Id: $i',
    'recv text {"type":"connection_ready"}',
    map({ "recv text " . $_->[0] =~ s/\$user/\$i/r } ::every_cut()),
    'send close 1000', 'recv close 1000'
--- redis_subscribe eval
::channels()
--- redis_messages_like eval
::envelopes([map { $_->[0] } ::every_cut()])
--- wait: 10
--- ws_backend_connections: $TEST_NGINX_CONNS
--- ws_backend_transcripts eval
::per_user(CORE::join "\n", 'sent text {"type":"connection_ready"}',
    map({ "sent text $_->[0]" } ::every_cut()),
    'recv close 1000', 'sent close 1000')



=== TEST 22: many connections, bursts of events cut every 3, 5, 7 ... 29 bytes and a fragmented event cut every 3: each published once over TLS on its own channel, in order
--- ws_backend eval
CORE::join "\n", 'send text {"type":"connection_ready"}', 'wait random 0-200ms',
    map({ my ($size, @m) = @$_;
          "send texts " . CORE::join(' | ', @m) . " pieces every $size gap random 0-2ms" }
        ::bursts()),
    'send text_fragments {"type":"tool_ | comp | leted","user":"$user"} pieces every 3 gap 1ms',
    'record'
--- ws_client eval
CORE::join "\n", 'parallel $TEST_NGINX_CONNS', 'handshake /ws X-User-Id: $i',
    'recv text {"type":"connection_ready"}',
    map({ my ($size, @m) = @$_; map { "recv text " . s/\$user/\$i/r } @m }
        ::bursts()),
    'recv text {"type":"tool_completed","user":"$i"}',
    'send close 1000', 'recv close 1000'
--- redis_subscribe eval
::channels()
--- redis_messages_like eval
::envelopes([(map { my ($size, @m) = @$_; @m } ::bursts()),
             '{"type":"tool_completed","user":"$user"}'])
--- wait: 10
--- ws_backend_connections: $TEST_NGINX_CONNS
--- ws_backend_transcripts eval
::per_user(CORE::join "\n", 'sent text {"type":"connection_ready"}',
    map({ my ($size, @m) = @$_; map { "sent text $_" } @m } ::bursts()),
    'sent text_fragments {"type":"tool_ | comp | leted","user":"$user"}',
    'recv close 1000', 'sent close 1000')
