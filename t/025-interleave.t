# Many connections in one worker, backend messages cut across reads: each
# connection's gate opens on its own ack, each event is published once on
# its own channel, however the pieces of different connections interleave.
#
# Every connection is user $i (X-User-Id: $i, i = 1 .. TEST_NGINX_CONNS,
# default 40); the backend writes $user into its messages and cuts them
# with "pieces OFFSETS gap DURATION" (byte offsets into the frame: 2 header
# bytes, so payload byte k is frame byte k + 2, and the member "type":"..."
# starts at frame byte 3).  TEST 1 cuts connection i's ack at byte i: it
# needs 28 connections for every offset of the type member, and the ack has
# 41 bytes, so 40 at most.

use Test::Nginx::Socket 'no_plan';
use WsAgent::Conf qw(with_changes ws_location);

repeat_each(1);
no_shuffle();
use_redis();
# a debug line per frame of 40 connections would be the test's main cost
log_level('info');

$ENV{TEST_NGINX_CONNS} ||= 40;
die "TEST_NGINX_CONNS: 1 to 40 (TEST 1 cuts connection i's ack at byte i)\n"
    unless $ENV{TEST_NGINX_CONNS} =~ /^\d+$/
           && $ENV{TEST_NGINX_CONNS} >= 1 && $ENV{TEST_NGINX_CONNS} <= 40;
our @Users = 1 .. $ENV{TEST_NGINX_CONNS};

# the five published types, another type, an event with one letter wrong
our @Types = qw(agent_started agent_thinking tool_executing tool_completed
                agent_completed chat_message Xgent_started);
our %Published = map { $_ => 1 } @Types[0 .. 4];

# TEST 3: every type cut once at every offset from the start of the type
# member to past its end, the types taking turns: [payload, cut] pairs
sub every_cut {
    map { my $cut = $_; map { [qq({"type":"$_","user":"\$user","cut":$cut}),
                               $cut] } @Types } 3 .. 28;
}

# TEST 4: bursts of all the types in one write, cut every N bytes (odd N)
sub bursts {
    my @sizes = (3, 5, 7, 9, 11, 13, 17, 19, 23, 29);
    map { my $b = $_; [$sizes[$b - 1],
                       map { qq({"type":"$_","user":"\$user","burst":$b}) }
                       @Types[$b % 7 .. 6], @Types[0 .. $b % 7 - 1]] }
        1 .. @sizes;
}

# What the subscriber of every user's channel must see, in order: the
# envelope of each published message among @$payloads, seq 1, 2, ...
sub envelopes {
    my ($payloads) = @_;
    my @want;
    for my $u (@Users) {
        my $seq = 0;
        for my $p (@$payloads) {
            my ($type) = $p =~ /^\{"type":"(\w+)"/;
            next unless $Published{$type};
            # the event verbatim; of a regex's specials it holds only { }
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

# the same lines for every user: $user (backend) / $i (client) filled in
sub per_user {
    my ($text) = @_;
    return [map { my $u = $_; $text =~ s/\$(?:user|i)\b/$u/gr } @Users];
}

my $http = <<'_EOC_';
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 4s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');

add_block_preprocessor(sub {
    my $block = shift;

    $block->set_value("http_config", $http) unless defined $block->http_config;
    $block->set_value("config", with_changes($ws_location, $block->ws_agent))
        unless defined $block->config;
    $block->set_value("no_error_log", "[error]\n[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();

__DATA__

=== TEST 1: acks cut in two, connection i's at byte i (every offset of the type member), among other connections' events written a byte at a time, open each gate: the message sent after the 101 reaches the backend after the ack
--- ws_backend
wait random 0-200ms
send text {"type":"tool_executing","user":"$user"} pieces 2..30 gap random 0-2ms
send text {"type":"connection_ready","user":"$user"} pieces $user gap 30ms
send text {"type":"tool_completed","user":"$user"} pieces 2..30 gap random 0-2ms
echo
--- ws_client
parallel $TEST_NGINX_CONNS
handshake /ws X-User-Id: $i
send text early $i
recv text {"type":"tool_executing","user":"$i"}
recv text {"type":"connection_ready","user":"$i"}
recv text {"type":"tool_completed","user":"$i"}
recv text early $i
send close 1000
recv close 1000
--- ws_backend_connections: $TEST_NGINX_CONNS
--- ws_backend_transcripts eval
::per_user(<<'_EOT_')
sent text {"type":"tool_executing","user":"$user"}
sent text {"type":"connection_ready","user":"$user"}
sent text {"type":"tool_completed","user":"$user"}
recv text early $user
sent text early $user
recv close 1000
sent close 1000
_EOT_



=== TEST 2: look-alikes of the ack, written a byte at a time among other connections' acks, open no gate; the real ack does
--- ws_backend
wait random 0-300ms
send text {"type":"connection_readyX","user":"$user"} pieces 2..30 gap random 0-2ms
wait 20ms
send text {"type":"connection_read","user":"$user"} pieces 2..30 gap random 0-2ms
wait 20ms
send text {"typeX":"connection_ready","user":"$user"} pieces 2..30 gap random 0-2ms
wait 20ms
send text {"type":"Xonnection_ready","user":"$user"} pieces 2..30 gap random 0-2ms
wait 20ms
send text {"type":"connection_ready","user":"$user"} pieces 2..30 gap random 0-2ms
echo
--- ws_client
parallel $TEST_NGINX_CONNS
handshake /ws X-User-Id: $i
send text early $i
recv text {"type":"connection_readyX","user":"$i"}
recv text {"type":"connection_read","user":"$i"}
recv text {"typeX":"connection_ready","user":"$i"}
recv text {"type":"Xonnection_ready","user":"$i"}
recv text {"type":"connection_ready","user":"$i"}
recv text early $i
send close 1000
recv close 1000
--- ws_backend_connections: $TEST_NGINX_CONNS
--- ws_backend_transcripts eval
::per_user(<<'_EOT_')
sent text {"type":"connection_readyX","user":"$user"}
sent text {"type":"connection_read","user":"$user"}
sent text {"typeX":"connection_ready","user":"$user"}
sent text {"type":"Xonnection_ready","user":"$user"}
sent text {"type":"connection_ready","user":"$user"}
recv text early $user
sent text early $user
recv close 1000
sent close 1000
_EOT_



=== TEST 3: events of every type cut in two at every offset of the type member: each published once, on its own user's channel, with its own type and body; every frame reaches its client
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
--- wait: 5
--- ws_backend_transcripts eval
::per_user(CORE::join "\n", 'sent text {"type":"connection_ready"}',
    map({ "sent text $_->[0]" } ::every_cut()),
    'recv close 1000', 'sent close 1000')



=== TEST 4: bursts of events cut every 3, 5, 7 ... 29 bytes, and a fragmented event cut every 3: each published once on its own channel, every frame intact
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
--- wait: 5
--- ws_backend_transcripts eval
::per_user(CORE::join "\n", 'sent text {"type":"connection_ready"}',
    map({ my ($size, @m) = @$_; map { "sent text $_" } @m } ::bursts()),
    'sent text_fragments {"type":"tool_ | comp | leted","user":"$user"}',
    'recv close 1000', 'sent close 1000')
