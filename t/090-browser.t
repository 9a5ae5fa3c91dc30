# A real browser: Debian's chromium (headless, driven by playwright-core
# from t/browser/) loads a page nginx serves, which opens the gated,
# JWT-checked /ws the way browsers must carry a token:
# new WebSocket(url, ['bearer.' + jwt]).  What the page saw comes back as
# JSON and is checked here, with the backend's transcript and the
# handshake as Chromium sent and got it.
#
# Without chromium, node or t/browser/node_modules (scripts/bootstrap.sh
# browser installs them) the file is skipped when run by hand, and fails
# under CI=true or scripts/test.sh.

use Test::Nginx::Socket::WsAgent;
use WsAgent::Browser;
use WsAgent::Conf qw(ws_location);
use WsAgent::Jwt;

if (my $why = WsAgent::Browser::missing()) {
    my $how = 'scripts/bootstrap.sh browser installs it';
    plan skip_all => "no browser test: $why ($how)"
        unless WsAgent::Browser::required();
    plan tests => 1;
    fail("the browser test can run: $why ($how; CI and scripts/test.sh "
         . "need it)");
    exit;
}
plan 'no_plan';

my $jwt = WsAgent::Jwt->new;
$ENV{TEST_NGINX_JWT_DIR} = $jwt->dir;
$ENV{TEST_NGINX_JWT} = $jwt->token(alg => 'HS256',
    claims => qq({"sub":"alice","exp":@{[time + 600]}}));

my $location = ws_location(<<'_EOC_');
ws_agent on;
ws_agent_jwt on;
ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
_EOC_

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $location) unless defined $block->config;
    $block->set_value(no_error_log => "[error]\n[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: Chromium: new WebSocket(url, ['bearer.' + jwt]) opens, its onopen message reaches the backend after the ack, only the token entry is negotiated
--- user_files
>>> page.html
<!doctype html>
<meta charset="utf-8">
<title>ws_agent in a browser</title>
<link rel="icon" href="data:,">
<script>
'use strict';
const entry = 'bearer.' + '$TEST_NGINX_JWT';
const hello = '{"type":"user_message","text":"sent in onopen"}';
const result = { events: [], received: [] };
const t0 = performance.now();
const ms = () => Math.round(performance.now() - t0);
const ws = new WebSocket('ws://' + location.host + '/ws', [entry]);
ws.onopen = () => {
    result.events.push('open');
    result.open_ms = ms();
    result.protocol = ws.protocol;
    result.extensions = ws.extensions;
    ws.send(hello);     // at once: the backend is not ready yet
};
ws.onmessage = (e) => {
    result.events.push('message');
    result.received.push(e.data);
    if (e.data === hello) {
        result.echo_ms = ms();
        ws.close(1000, 'done');
    }
};
ws.onerror = () => result.events.push('error');
ws.onclose = (e) => {
    result.events.push('close');
    result.close = { code: e.code, reason: e.reason, clean: e.wasClean };
    window.wsAgentResult = result;
};
</script>
--- ws_backend
# set-up time; it reads and records meanwhile, so a message the gate let
# through would show before the ack
wait 300ms
send text {"type":"connection_ready"}
echo
--- browser: /page.html
--- browser_check eval
sub {
    package main;       # Test::More's functions; eval runs in Test::Base's
    my ($r, $name) = @_;
    my ($p, $hs) = ($r->{page}, $r->{handshake});
    my $entry = "bearer.$ENV{TEST_NGINX_JWT}";
    my $hello = '{"type":"user_message","text":"sent in onopen"}';
    my %req = map { lc $_ => $hs->{request}{$_} } keys %{ $hs->{request} || {} };
    my %res = map { lc $_ => $hs->{response}{$_} } keys %{ $hs->{response} || {} };

    # (a) the token as the only subprotocol opens
    is($req{'sec-websocket-protocol'}, $entry,
       "$name - Chromium offered the token entry as its only subprotocol");
    is($hs->{status}, 101, "$name - the handshake got a 101");
    is(join(' ', @{ $p->{events} }), 'open message message close',
       "$name - the WebSocket opened, got two messages, closed");
    is("$p->{close}{code} $p->{close}{clean}", '1000 1',
       "$name - it closed cleanly with 1000");

    # (b) the message sent in onopen waited for the ack, and was answered
    is_deeply($p->{received}, ['{"type":"connection_ready"}', $hello],
              "$name - the page got the ack, then the echo of its onopen message");

    # (c) the offer and what was negotiated
    is($req{'sec-websocket-extensions'},
       'permessage-deflate; client_max_window_bits',
       "$name - Chromium offered permessage-deflate");
    is($res{'sec-websocket-protocol'}, $entry,
       "$name - the 101 selects the token entry");
    ok(!exists $res{'sec-websocket-extensions'},
       "$name - the 101 selects no extension")
        or diag("Sec-WebSocket-Extensions: $res{'sec-websocket-extensions'}");
    is($p->{protocol}, $entry, "$name - ws.protocol is the token entry");
    is($p->{extensions}, '', "$name - ws.extensions is empty");
    Test::More::note("$name - open after " . ($p->{open_ms} // '-')
                     . " ms, echo after " . ($p->{echo_ms} // '-') . ' ms');
}
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text {"type":"user_message","text":"sent in onopen"}
sent text {"type":"user_message","text":"sent in onopen"}
recv close 1000 done
sent close 1000
--- ws_backend_request_headers
!Sec-WebSocket-Extensions
!Sec-WebSocket-Protocol



=== TEST 2: Chromium: an EventSource on ws_agent_subscribe gets alice's events, is dropped, reconnects with Last-Event-ID and gets exactly what it missed
--- http_config
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        ws_agent on;
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_user $ws_agent_jwt_sub;
        ws_agent_publish agent:events:$ws_agent_user;
        ws_agent_stream agent:stream:$ws_agent_user;
    }
    # EventSource cannot send headers: the token is a query argument
    location /sub {
        ws_agent_jwt on;
        ws_agent_jwt_key hmac $TEST_NGINX_JWT_DIR/secret;
        ws_agent_jwt_token $arg_token;
        ws_agent_subscribe agent:events:$ws_agent_jwt_sub;
        ws_agent_subscribe_stream agent:stream:$ws_agent_jwt_sub;
        ws_agent_subscribe_retry 2s;
        ws_agent_subscribe_heartbeat 30s;
    }
    # a proxy in front of it that drops a stream quiet for 1 s: the
    # browser's own reconnect (after retry: 2000) is what is tested
    location /events {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/sub;
        proxy_http_version 1.1;
        proxy_buffering off;
        proxy_read_timeout 1s;
    }
--- user_files
>>> page.html
<!doctype html>
<meta charset="utf-8">
<title>ws_agent EventSource</title>
<link rel="icon" href="data:,">
<script>
'use strict';
const jwt = '$TEST_NGINX_JWT';
const result = { events: [], got: [] };
const t0 = performance.now();
const ms = () => Math.round(performance.now() - t0);
const es = new EventSource('/events?token=' + jwt);
const types = ['agent_started', 'agent_thinking', 'tool_executing',
               'tool_completed', 'agent_completed'];
es.onopen = () => {
    result.events.push('open ' + ms());
    if (!window.wsOpened) {
        window.wsOpened = true;
        // alice's agent, on the gated WebSocket: its events are the feed
        new WebSocket('ws://' + location.host + '/ws', ['bearer.' + jwt]);
    }
};
es.onerror = () => result.events.push('error ' + ms());
for (const t of types) {
    es.addEventListener(t, (e) => {
        const env = JSON.parse(e.data);
        result.got.push({ type: e.type, id: e.lastEventId, env_id: env.id,
                          seq: env.seq, user: env.user, ms: ms() });
        if (t === 'agent_completed') {
            es.close();
            window.wsAgentResult = result;
        }
    });
}
setTimeout(() => { window.wsAgentResult = result; }, 20000);
</script>
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
wait 1800ms
send text {"type":"agent_thinking"}
send text {"type":"tool_executing"}
send text {"type":"tool_completed"}
send text {"type":"agent_completed"}
record
--- redis_subscribe: agent:events:alice
--- browser: /page.html
--- browser_timeout: 40
--- browser_check eval
sub {
    package main;
    my ($r, $name) = @_;
    my $p = $r->{page};
    my @got = @{ $p->{got} || [] };
    is(join(' ', map { $_->{seq} } @got), '1 2 3 4 5',
       "$name - the page got seq 1..5 once each, in order");
    is(join(' ', map { $_->{type} } @got),
       'agent_started agent_thinking tool_executing tool_completed agent_completed',
       "$name - as the events their types name");
    is(scalar(grep { $_->{id} && $_->{id} eq $_->{env_id} } @got), 5,
       "$name - every event's lastEventId is its envelope's stream id");
    is(scalar(grep { $_->{user} eq 'alice' } @got), 5,
       "$name - all of them alice's");
    my @opens = grep { /^open/ } @{ $p->{events} };
    is(scalar(@opens), 2, "$name - the EventSource opened twice (dropped once, reconnected)")
        or diag(join ', ', @{ $p->{events} });
    my ($second) = $opens[1] =~ /(\d+)/;
    ok(defined $second && $got[1] && $got[1]{ms} >= $second,
       "$name - what it missed came after the reconnect (from the stream)")
        or diag(explain($p));
}
--- redis_messages_like
agent:events:alice ^\{"id":"\d+-\d+",.*"seq":1,.*"type":"agent_started"
agent:events:alice "seq":2,.*"type":"agent_thinking"
agent:events:alice "seq":3,.*"type":"tool_executing"
agent:events:alice "seq":4,.*"type":"tool_completed"
agent:events:alice "seq":5,.*"type":"agent_completed"
--- wait: 8
--- no_error_log
[alert]
[crit]
--- error_log
upstream timed out
