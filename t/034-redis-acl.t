# Publishing as a Redis ACL user (issue #14; /work/wt/SPEC-transport.md):
# ws_agent_redis ... user=NAME password=P authenticates as that user on
# every connect.  The private Redis has a user "publisher" that may only
# PUBLISH to agent:events:* (--- redis_acl: ACL SETUSER after every start);
# the subscriber is Redis's default user.  A wrong password is refused
# clearly and nothing is published; a channel outside the user's pattern
# is refused per PUBLISH, counted as events_dropped_total{reason="redis_error"};
# the default user with requirepass still works; an empty user= stops nginx.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

repeat_each(1);
no_shuffle();
use_redis();
log_level('info');

$ENV{TEST_NGINX_CONNS} ||= 24;
die "TEST_NGINX_CONNS: 20 to 40\n"
    unless $ENV{TEST_NGINX_CONNS} =~ /^\d+$/
           && $ENV{TEST_NGINX_CONNS} >= 20 && $ENV{TEST_NGINX_CONNS} <= 40;
our @Users = 1 .. $ENV{TEST_NGINX_CONNS};

# the concurrency block, as in t/025-interleave.t: every type cut once at
# every offset from the start of the type member to past its end
our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed chat_message Xgent_started);
our %Published = map { $_ => 1 } @Types[0 .. 4];

sub every_cut {
    map { my $cut = $_; map { [qq({"type":"$_","user":"\$user","cut":$cut}),
                               $cut] } @Types } 3 .. 28;
}

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

my $acl = 'publisher on >secret resetchannels &agent:events:* -@all'
        . ' +publish +spublish +ping +role +select';

my $http = <<'_EOC_';
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=publisher password=secret;
_EOC_

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 4s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');
my $status = "    location = /status { ws_agent_status; }\n"
           . "    location = /metrics { ws_agent_status prometheus; }\n";

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", $http) unless defined $block->http_config;
    $block->set_value("config", $ws_location . $status)
        unless defined $block->config;
    $block->set_value("redis_acl", $acl) unless defined $block->redis_acl;
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: user=publisher password=secret: events published as that user
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
sleep 300ms
http_get /status => "events_published_total":2,.*"redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"last_error":"")(?=[^}]*"tls":false)
redis_cmd ACL LOG => []
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 "seq":1,.*"type":"agent_started"
agent:events:1 "seq":2,.*"type":"agent_completed"



=== TEST 2: a wrong password: AUTH refused, said clearly and in the status; nothing published
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT user=publisher password=wrong;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 700ms
http_get /status => "events_published_total":0,.*"redis_workers":\[\{(?=[^}]*"connected":false)(?=[^}]*"queued":1)(?=[^}]*"last_error":"[^"]*WRONGPASS)
send close 1000
recv close 1000
--- redis_subscribe: agent:events:2
--- redis_messages
--- wait: 1
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ refused AUTH \(check ws_agent_redis user= and password=\): WRONGPASS invalid username-password pair or user is disabled\./]
--- no_error_log eval
['[alert]', '[crit]', qr/ws_agent: Redis \S+ connected/]



=== TEST 3: a channel outside the user's pattern: PUBLISH refused with NOPERM, the event counted as a redis_error drop; the next event on an allowed channel is published
--- config
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        ws_agent on;
        ws_agent_user $http_x_user_id;
        ws_agent_publish other:events:$ws_agent_user;
    }
    location /ok {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        ws_agent on;
        ws_agent_user $http_x_user_id;
        ws_agent_publish agent:events:$ws_agent_user;
    }
    location = /status { ws_agent_status; }
    location = /metrics { ws_agent_status prometheus; }
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
record
--- ws_client
handshake /ws X-User-Id: 3
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 500ms
http_get /metrics => (?m)^ngx_ws_agent_events_dropped_total\{reason="redis_error"\} 1$
handshake /ok X-User-Id: 3
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
sleep 500ms
http_get /status => "events_queued_total":2,"events_published_total":1,.*"redis_error":1,.*"redis_workers":\[\{(?=[^}]*"connected":true)
--- redis_subscribe: other:events:3 agent:events:3
--- redis_messages_like
agent:events:3 "seq":1,.*"type":"agent_started"
--- error_log eval
[qr/\[error\].*ws_agent: Redis refused PUBLISH \(1 event\(s\) lost\): NOPERM/]
--- no_error_log eval
['[alert]', '[crit]', 'refused AUTH', qr/refused PUBLISH(?! \(1 event)/]



=== TEST 4: password only (requirepass, the default user) still works
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT password=s3cret;
--- redis_config
requirepass s3cret
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"tool_completed"}
record
--- ws_client
handshake /ws X-User-Id: 4
recv text {"type":"connection_ready"}
recv text {"type":"tool_completed"}
send close 1000
recv close 1000
--- redis_subscribe: agent:events:4
--- redis_messages_like
agent:events:4 "seq":1,.*"type":"tool_completed"



=== TEST 5: user=publisher password=secret over TLS
--- redis_tls
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_TLS_PORT tls user=publisher password=secret;
    ws_agent_redis_tls_trusted_certificate $TEST_NGINX_TLS_DIR/ca.pem;
    ws_agent_redis_tls_name redis.test;
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_thinking"}
record
--- ws_client
handshake /ws X-User-Id: 5
recv text {"type":"connection_ready"}
recv text {"type":"agent_thinking"}
sleep 300ms
http_get /status => "redis_workers":\[\{(?=[^}]*"connected":true)(?=[^}]*"tls":true)
send close 1000
recv close 1000
--- redis_subscribe: agent:events:5
--- redis_messages_like
agent:events:5 "seq":1,.*"type":"agent_thinking"



=== TEST 6: nginx -t: an empty user=
--- http_config
    ws_agent_redis 127.0.0.1:6379 user= password=secret;
--- must_die
--- error_log
"ws_agent_redis" has an empty user=



=== TEST 7: many connections in one worker as the ACL user, events cut in two at every offset of the type member: each published once, on its own channel, in order
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
