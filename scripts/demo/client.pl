#!/usr/bin/perl
# The demo's chat client: opens a WebSocket and sends its first message the
# moment the 101 arrives, as a browser app does on "open".  Prints every
# message it gets, with the time since the 101, until the agent's answer or
# until WAIT_MS pass after {"type":"connection_ready"} with nothing more.
# Exits 0 when the answer came, 2 when it did not.
#
#   scripts/demo/client.pl PORT [PATH] [USER_ID] [WAIT_MS]   (127.0.0.1)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../../t/lib";

use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use WsAgent::Frame qw(encode_frame ws_accept random_key);

my $port = shift // die "usage: client.pl PORT [PATH] [USER_ID] [WAIT_MS]\n";
my $path = shift // '/ws';
my $user = shift // '42';
my $wait = (shift // 1000) / 1000;

$| = 1;

my $c = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                              Proto => 'tcp', Timeout => 5)
    or die "client: cannot connect to 127.0.0.1:$port: $!\n";

my $key = random_key();
syswrite $c, "GET $path HTTP/1.1\r\nHost: localhost\r\n"
             . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
             . "Sec-WebSocket-Extensions: permessage-deflate\r\n"
             . "X-User-Id: $user\r\n\r\n";

# the 101, and whatever came with it
my $buf = '';
my $sel = IO::Select->new($c);
my $limit = time + 5;
while ($buf !~ /\r\n\r\n/) {
    die "client: no 101 within 5 s\n" unless $sel->can_read($limit - time);
    sysread($c, $buf, 65536, length $buf) or die "client: connection closed\n";
}
my $at = index($buf, "\r\n\r\n") + 4;
my $head = substr $buf, 0, $at;
die "client: expected 101, got: " . (split /\r\n/, $head)[0] . "\n"
    unless $head =~ m{^HTTP/1\.1 101 }
           && $head =~ /^Sec-WebSocket-Accept:\s*\Q${\ ws_accept($key)}\E\s*$/mi;

my $t0 = time;
my $ms = sub { sprintf '+%3dms', (time - $t0) * 1000 };

my $s = WsAgent::Stream->new($c);
$s->{buf} = substr $buf, $at;

my $first = '{"type":"user_message","text":"What is the weather in Paris?"}';
$s->write_all(encode_frame('text', $first, mask => 1));
print "  client:  ", $ms->(), " got 101, sent at once: $first\n";
print "  client:        (server chose extensions: $1)\n"
    if $head =~ /^Sec-WebSocket-Extensions:\s*(.*?)\s*$/mi;

my ($ready, $answer);
my $deadline = time + 5;

while (1) {
    my $m = $s->read_message($deadline);
    if (!ref $m) {
        print "  client:  ", $ms->(),
              $m eq 'eof' ? " connection closed\n" : " nothing more\n";
        last;
    }
    if ($m->{error}) { print "  client:  bad frame: $m->{error}\n"; last }
    if ($m->{type} eq 'close') {
        my $code = length $m->{payload} >= 2 ? unpack 'n', $m->{payload} : '';
        print "  client:  ", $ms->(), " recv close $code\n";
        last;
    }
    next unless $m->{type} eq 'text';
    print "  client:  ", $ms->(), " recv $m->{payload}\n";
    if ($m->{payload} =~ /"type":"connection_ready"/) {
        $ready = 1;
        $deadline = time + $wait;
    }
    if ($m->{payload} =~ /"type":"message"/) { $answer = 1; last }
}

if ($answer) {
    print "  client:  ", $ms->(), " got the answer\n";
} elsif ($ready) {
    printf "  client:  %s no answer %.1f s after connection_ready: the first"
           . " message never reached a handler\n", $ms->(), $wait;
}

# a clean goodbye
$s->write_all(encode_frame('close', pack('n', 1000), mask => 1));
my $bye = time + 1;
while (1) {
    my $m = $s->read_message($bye);
    last if !ref $m || $m->{error} || $m->{type} eq 'close';
}
$s->close;

exit($answer ? 0 : 2);
