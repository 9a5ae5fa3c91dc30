#!/usr/bin/perl
# The demo's agent backend: a WebSocket server with the set-up race that
# ngx_ws_agent closes.  Like many real backends it accepts the WebSocket,
# then spends SETUP_MS on "auth, agent factory, tools" while its receive
# loop already runs: a message that arrives in that window has no handler
# and is lost.  Then it sends {"type":"connection_ready"} and answers each
# user message with the five agent events and a final answer.
#
#   scripts/demo/backend.pl PORT [SETUP_MS]      (127.0.0.1 only)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../../t/lib";

use IO::Socket::INET;
use IO::Select;
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Frame qw(encode_frame ws_accept);

my $port = shift // die "usage: backend.pl PORT [SETUP_MS]\n";
my $setup_ms = shift // 300;
my $json = JSON::PP->new->canonical;

$| = 1;

my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                Proto => 'tcp', Listen => 16, ReuseAddr => 1)
    or die "backend: cannot listen on 127.0.0.1:$port: $!\n";

# one child per connection; the children end with their connections, and
# with the parent if it is told to stop
my %kids;
$SIG{CHLD} = sub { while ((my $k = waitpid(-1, POSIX::WNOHANG())) > 0) {
                       delete $kids{$k} } };
$SIG{TERM} = sub { kill 'TERM', keys %kids; exit 0 };

while (1) {
    my $c = $srv->accept or next;
    my $pid = fork;
    if (!defined $pid) { close $c; next }
    if ($pid == 0) {
        $SIG{TERM} = 'DEFAULT';
        $SIG{CHLD} = 'DEFAULT';
        close $srv;
        serve($c);
        POSIX::_exit(0);
    }
    $kids{$pid} = 1;
    close $c;
}


sub serve {
    my ($c) = @_;

    my ($req, $rest) = read_request($c) or return;
    my %h = map { /^([^:]+):\s*(.*?)\s*$/ ? (lc $1, $2) : () }
            split /\r\n/, $req;
    my $key = $h{'sec-websocket-key'} or return;

    my $ext = $h{"sec-websocket-extensions"}
              ? "; extensions offered: $h{'sec-websocket-extensions'}" : "";
    my $via = $h{'x-ws-connection-id'}
            ? "via nginx, X-WS-Connection-Id: $h{'x-ws-connection-id'}"
            : 'direct, no proxy';
    print "  backend: accepted the WebSocket ($via$ext)\n";
    print "  backend: setting up the session (auth, agent factory, tools)"
          . " for $setup_ms ms; the receive loop is already running\n";

    syswrite $c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 . "Connection: Upgrade\r\nSec-WebSocket-Accept: "
                 . ws_accept($key) . "\r\n\r\n";

    my $t0 = time;
    my $ms = sub { sprintf '+%3dms', (time - $t0) * 1000 };
    my $s = WsAgent::Stream->new($c);
    $s->{buf} = $rest;

    # the race: frames read before set-up is done have nowhere to go
    my $ready_at = $t0 + $setup_ms / 1000;
    while (time < $ready_at) {
        my $m = $s->read_message($ready_at);
        last if !ref $m && $m eq 'timeout';
        return if !ref $m || $m->{error};
        if ($m->{type} eq 'close') { finish($s, $m, $ms); return }
        next unless $m->{type} eq 'text' || $m->{type} eq 'binary';
        print "  backend: ", $ms->(), " message lost: Message routing failed"
              . " (session not set up yet): $m->{payload}\n";
    }

    send_json($s, [type => 'connection_ready']);
    print "  backend: ", $ms->(), " set-up done, sent"
          . " {\"type\":\"connection_ready\"}\n";

    while (1) {
        my $m = $s->read_message(time + 10);
        return if !ref $m || $m->{error};
        if ($m->{type} eq 'close') { finish($s, $m, $ms); return }
        if ($m->{type} eq 'ping') {
            $s->write_all(encode_frame('pong', $m->{payload}));
            next;
        }
        next unless $m->{type} eq 'text';
        print "  backend: ", $ms->(), " received: $m->{payload}\n";
        answer($s, $m->{payload});
        print "  backend: ", $ms->(), " streamed 5 agent events and the"
              . " answer\n";
    }
}


# the agent's run: five events, then the answer (not an agent event)
sub answer {
    my ($s, $payload) = @_;
    my $q = eval { $json->decode($payload)->{text} } // $payload;
    my $run = sprintf 'run_%08x', int rand 0xffffffff;
    my @steps = (
        [type => 'agent_started', run_id => $run, agent => 'travel-assistant',
         model => 'gpt-4o', input => $q],
        [type => 'agent_thinking', run_id => $run,
         thought => 'The user asks for current weather; call get_weather.'],
        [type => 'tool_executing', run_id => $run, tool => 'get_weather',
         call_id => 'call_1', args => { city => 'Paris', unit => 'celsius' }],
        [type => 'tool_completed', run_id => $run, tool => 'get_weather',
         call_id => 'call_1', duration_ms => 118,
         result => { temp_c => 14, conditions => 'light rain' }],
        [type => 'agent_completed', run_id => $run, duration_ms => 402,
         tokens => { input => 412, output => 38 }],
        [type => 'message', role => 'assistant', run_id => $run,
         content => 'It is 14 C with light rain in Paris right now.'],
    );
    for my $step (@steps) {
        sleep 0.08;
        send_json($s, $step);
    }
}


# a JSON object with its keys in the order given ("type" first)
sub send_json {
    my ($s, $pairs) = @_;
    my @kv = @$pairs;
    my @out;
    while (my ($k, $v) = splice @kv, 0, 2) {
        push @out, $json->encode($k) . ':'
                   . (ref $v || $v !~ /^\d+$/ ? $json->encode($v) : $v);
    }
    $s->write_all(encode_frame('text', '{' . join(',', @out) . '}'));
}


sub finish {
    my ($s, $m, $ms) = @_;
    my $code = length $m->{payload} >= 2 ? unpack('n', $m->{payload}) : '';
    print "  backend: ", $ms->(), " client closed ($code)\n";
    $s->write_all(encode_frame('close', substr($m->{payload}, 0, 2)));
    $s->close;
}


# the upgrade request, and any bytes that came after it
sub read_request {
    my ($c) = @_;
    my $buf = '';
    my $deadline = time + 5;
    my $sel = IO::Select->new($c);
    while ($buf !~ /\r\n\r\n/) {
        return unless $sel->can_read($deadline - time > 0
                                     ? $deadline - time : 0);
        my $n = sysread $c, $buf, 65536, length $buf;
        return unless $n;
    }
    my $at = index($buf, "\r\n\r\n") + 4;
    return (substr($buf, 0, $at), substr($buf, $at));
}
