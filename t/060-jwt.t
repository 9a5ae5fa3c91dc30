# Verified identity: tokens made in the test for each algorithm, good and
# bad, in each place they may be carried; a rejected request gets 401 and
# never reaches the backend; the channel is the verified sub's.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Jwt;

repeat_each(1);
no_shuffle();

my $jwt = WsAgent::Jwt->new;
my $now = time;
my $good = qq({"sub":"alice","aud":"chat","iss":"auth.example","exp":@{[$now + 600]}});

my %tokens = (
    HS256 => [alg => 'HS256'], HS384 => [alg => 'HS384'],
    HS512 => [alg => 'HS512'], RS256 => [alg => 'RS256'],
    RS384 => [alg => 'RS384'], RS512 => [alg => 'RS512'],
    PS256 => [alg => 'PS256'], ES256 => [alg => 'ES256'],
    ES384 => [alg => 'ES384'],
    K1    => [alg => 'RS256', kid => 'k1'],
    E1    => [alg => 'ES256', kid => 'e1'],
    UNKNOWN_KID => [alg => 'RS256', kid => 'nope'],
    EXPIRED => [alg => 'HS256',
                claims => qq({"sub":"alice","exp":@{[$now - 3600]}})],
    NBF => [alg => 'HS256',
            claims => qq({"sub":"alice","nbf":@{[$now + 3600]}})],
    NONE => [alg => 'none'],
    WRONG_AUD => [alg => 'HS256',
                  claims => qq({"sub":"alice","aud":"admin","iss":"auth.example"})],
    AUD_LIST => [alg => 'HS256',
                 claims => qq({"sub":"bob","aud":["x","chat"],"iss":"auth.example"})],
    WRONG_ISS => [alg => 'HS256',
                  claims => qq({"sub":"alice","aud":"chat","iss":"evil"})],
    BAD_SIG => [alg => 'HS256', secret => 'not-the-secret'],
);

for my $name (keys %tokens) {
    my %o = (claims => $good, @{ $tokens{$name} });
    $ENV{"TEST_NGINX_JWT_$name"} = $jwt->token(%o);
}

# HS256 "signed" with the RSA public key's PEM as the secret: the classic
# algorithm confusion attack on an RS256 verifier
$ENV{TEST_NGINX_JWT_CONFUSED} = $jwt->token(alg => 'HS256', claims => $good,
    secret => WsAgent::Util::slurp($jwt->dir . '/rsa.pub'));
$ENV{TEST_NGINX_JWT_GARBAGE} = 'not.a.token';
$ENV{TEST_NGINX_JWT_DIR} = $jwt->dir;

my $api = <<'_EOC_';
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/rsa.pub;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/ec256.pub;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/ec384.pub;
        add_header X-Sub "$ws_agent_jwt_sub" always;
        add_header X-Iss "$ws_agent_jwt_claim_iss" always;
    }
_EOC_

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("config", $api) unless defined $block->config;
    $block->set_value("user_files", ">>> ok.txt\nok\n")
        unless defined $block->user_files;
    $block->set_value("no_error_log", "[alert]\n[crit]\n")
        unless defined $block->no_error_log || defined $block->must_die;
});

run_tests();

__DATA__

=== TEST 1: HS256 in Authorization: Bearer
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_HS256
--- response_headers
X-Sub: alice
X-Iss: auth.example
--- response_body
ok



=== TEST 2: HS384
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_HS384
--- response_headers
X-Sub: alice



=== TEST 3: HS512
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_HS512
--- response_headers
X-Sub: alice



=== TEST 4: RS256
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_RS256
--- response_headers
X-Sub: alice



=== TEST 5: RS384
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_RS384
--- response_headers
X-Sub: alice



=== TEST 6: RS512
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_RS512
--- response_headers
X-Sub: alice



=== TEST 7: PS256
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_PS256
--- response_headers
X-Sub: alice



=== TEST 8: ES256
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_ES256
--- response_headers
X-Sub: alice



=== TEST 9: ES384
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_ES384
--- response_headers
X-Sub: alice



=== TEST 10: the token in ?token=
--- request
GET /ok.txt?token=$TEST_NGINX_JWT_ES256
--- response_headers
X-Sub: alice



=== TEST 11: no token: 401 with WWW-Authenticate, the reason logged
--- request
GET /ok.txt
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
JWT rejected: no token in the request



=== TEST 12: expired
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_EXPIRED
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer error="invalid_token"
--- error_log
JWT rejected: expired ("exp" is in the past)
--- no_error_log eval
[qr/ws_agent.*eyJ/]



=== TEST 13: not yet valid
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_NBF
--- error_code: 401
--- error_log
JWT rejected: not yet valid ("nbf" is in the future)



=== TEST 14: a bad signature
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_BAD_SIG
--- error_code: 401
--- error_log
JWT rejected: bad signature



=== TEST 15: alg none is never accepted
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_NONE
--- error_code: 401
--- error_log
JWT rejected: algorithm missing or not supported ("none" never is)



=== TEST 16: HS256 signed with the RSA public key as the secret: no HMAC key, rejected
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/rsa.pub;
    }
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_CONFUSED
--- error_code: 401
--- error_log
JWT rejected: no configured key for the token's algorithm and kid



=== TEST 17: an RS256 token where only an HMAC key is configured: rejected
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
    }
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_RS256
--- error_code: 401
--- error_log
JWT rejected: no configured key for the token's algorithm and kid



=== TEST 18: garbage
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_GARBAGE
--- error_code: 401
--- error_log
JWT rejected: malformed token header



=== TEST 19: required claims: aud and iss must match
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_jwt_claim aud chat;
        ws_agent_jwt_claim iss auth.example;
    }
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_WRONG_AUD
--- error_code: 401
--- error_log
JWT rejected: a required claim (ws_agent_jwt_claim) does not match



=== TEST 20: required claims: a wrong iss
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_jwt_claim aud chat;
        ws_agent_jwt_claim iss auth.example;
    }
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_WRONG_ISS
--- error_code: 401



=== TEST 21: required claims: aud as a list containing the value
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_jwt_claim aud chat;
        add_header X-Sub "$ws_agent_jwt_sub" always;
    }
--- request
GET /ok.txt
--- more_headers
Authorization: Bearer $TEST_NGINX_JWT_AUD_LIST
--- response_headers
X-Sub: bob



=== TEST 22: JWKS: kid selects the RSA key and the EC key; an unknown kid is rejected
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key jwks $TEST_NGINX_JWT_DIR/jwks.json;
        add_header X-Sub "$ws_agent_jwt_sub" always;
    }
    location = /e1 {
        ws_agent_jwt on;
        ws_agent_jwt_key jwks $TEST_NGINX_JWT_DIR/jwks.json;
        ws_agent_jwt_token $arg_t;
        add_header X-Sub "$ws_agent_jwt_sub" always;
        try_files /ok.txt =404;
    }
--- ws_client
http_get /ok.txt?token=$TEST_NGINX_JWT_K1 => ^ok
http_get /e1?t=$TEST_NGINX_JWT_E1 => ^ok
http_get /ok.txt?token=$TEST_NGINX_JWT_UNKNOWN_KID => 401 Authorization Required
--- error_log
JWT rejected: no configured key for the token's algorithm and kid



=== TEST 23: a rejected upgrade never reaches the backend
--- config
    location /ws {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- ws_backend
send text {"type":"connection_ready"}
--- ws_client
handshake_expect 401 /ws Authorization: Bearer $TEST_NGINX_JWT_EXPIRED
handshake_expect 401 /ws
--- ws_backend_connections: 0



=== TEST 24: the channel is the verified sub's, whatever X-User-Id the client adds; the token came as a subprotocol and is not forwarded
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /ws {
        ws_agent_jwt on;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/ec256.pub;
        ws_agent on;
        ws_agent_user $ws_agent_jwt_sub;
        ws_agent_publish agent:events:$ws_agent_user;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header X-User-Id $ws_agent_jwt_sub;
    }
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: mallory | Sec-WebSocket-Protocol: chat, bearer.$TEST_NGINX_JWT_ES256
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
send close 1000
recv close 1000
--- ws_backend_request_headers
X-User-Id: alice
Sec-WebSocket-Protocol: chat
--- redis_subscribe: agent:events:alice agent:events:mallory
--- redis_messages_like
agent:events:alice ^\{"connection_id":"ws_alice_\d+_[0-9a-f]{8}","user":"alice","seq":1,



=== TEST 25: the token as the only subprotocol: it is not forwarded, and the 101 selects it (a browser fails a 101 that selects none)
--- config
    location /ws {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- ws_backend
send text {"type":"connection_ready"}
--- ws_client
handshake /ws Sec-WebSocket-Protocol: bearer.$TEST_NGINX_JWT_HS256
response_header Sec-WebSocket-Protocol: bearer.$TEST_NGINX_JWT_HS256
recv text {"type":"connection_ready"}
--- ws_backend_request_headers
!Sec-WebSocket-Protocol



=== TEST 26: the token and chat offered, the backend selects chat: the 101 keeps chat
--- config
    location /ws {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- ws_backend
protocol chat
send text {"type":"connection_ready"}
--- ws_client
handshake /ws Sec-WebSocket-Protocol: bearer.$TEST_NGINX_JWT_HS256, chat
response_header Sec-WebSocket-Protocol: chat
recv text {"type":"connection_ready"}
--- ws_backend_request_headers
Sec-WebSocket-Protocol: chat



=== TEST 27: the token and chat offered, the backend selects none: the 101 selects the token entry, also without the gate
--- config
    location /ws {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- ws_backend
send text {"type":"connection_ready"}
--- ws_client
handshake /ws Sec-WebSocket-Protocol: chat, bearer.$TEST_NGINX_JWT_HS256
response_header Sec-WebSocket-Protocol: bearer.$TEST_NGINX_JWT_HS256
recv text {"type":"connection_ready"}
--- ws_backend_request_headers
Sec-WebSocket-Protocol: chat



=== TEST 28: the token in Authorization, chat offered, the backend selects none: the 101 selects none
--- config
    location /ws {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
    }
--- ws_backend
send text {"type":"connection_ready"}
--- ws_client
handshake /ws Authorization: Bearer $TEST_NGINX_JWT_HS256 | Sec-WebSocket-Protocol: chat
response_header !Sec-WebSocket-Protocol
recv text {"type":"connection_ready"}
--- ws_backend_request_headers
Sec-WebSocket-Protocol: chat



=== TEST 29: nginx -t fails on a key file that is not a PEM public key
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/bad.pem;
    }
--- must_die
--- error_log
"ws_agent_jwt_key" file "



=== TEST 30: nginx -t fails on an RSA key under 2048 bits
--- config
    location = /ok.txt {
        ws_agent_jwt on;
        ws_agent_jwt_key pem $TEST_NGINX_JWT_DIR/small.pub;
    }
--- must_die
--- error_log
is shorter than 2048 bits



=== TEST 31: nginx -t fails on a missing key file, an unknown key type, jwt without a key
--- config
    location = /a { ws_agent_jwt_key pem /no/such/file.pem; }
--- must_die
--- error_log
"ws_agent_jwt_key" cannot open "/no/such/file.pem"



=== TEST 32: an unknown key type
--- config
    location = /a { ws_agent_jwt_key x509 $TEST_NGINX_JWT_DIR/rsa.pub; }
--- must_die
--- error_log
"ws_agent_jwt_key" has an unknown key type "x509" (expected hmac, pem or jwks)



=== TEST 33: ws_agent_jwt on without a key
--- config
    location = /a { ws_agent_jwt on; }
--- must_die
--- error_log
"ws_agent_jwt" is on but no "ws_agent_jwt_key" is set
