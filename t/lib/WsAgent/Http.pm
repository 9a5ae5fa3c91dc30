package WsAgent::Http;

# The plain HTTP client of "--- request" / "--- raw_request" blocks.

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use WsAgent::Util ();

# Builds the bytes of a Test::Nginx "request" section: first line is
# "METHOD URI [HTTP/x.y]", the rest is the body.
sub build_request {
    my ($request, $more_headers) = @_;
    my ($line, $body) = split /\n/, $request, 2;
    $line =~ s/\s+$//;
    $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/\d\.\d$};
    $body //= '';
    chomp $body;
    my @h = (['Host', 'localhost'], ['Connection', 'close']);
    for my $extra (WsAgent::Util::parse_header_list($more_headers, 'lines')) {
        @h = grep { lc $_->[0] ne lc $extra->[0] } @h;
        push @h, $extra if defined $extra->[1];
    }
    push @h, ['Content-Length', length $body]
        if length $body && !grep { lc $_->[0] eq 'content-length' } @h;
    return "$line\r\n" . join('', map { "$_->[0]: $_->[1]\r\n" } @h)
         . "\r\n$body";
}

# Sends bytes, reads until EOF or timeout. -> { raw, status, headers, body,
# error }
sub send_request {
    my ($port, $bytes, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $port, Proto => 'tcp', Timeout => $timeout)
        or return { error => "connect to port $port: $!" };
    my $deadline = time + $timeout;
    local $SIG{PIPE} = 'IGNORE';
    syswrite $sock, $bytes;
    my $raw = '';
    my $error;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0 || !IO::Select->new($sock)->can_read($left)) {
            $error = "client socket timed out after ${timeout}s";
            last;
        }
        my $n = sysread $sock, $raw, 65536, length $raw;
        last unless $n;
    }
    close $sock;
    return { %{ parse_response($raw) }, raw => $raw, error => $error };
}

sub parse_response {
    my ($raw) = @_;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return {} unless defined $head && $head =~ m{^HTTP/\d\.\d (\d{3})};
    my $status = $1;
    my @headers = map { /^([^:]+):\s*(.*)$/ ? [$1, $2] : () }
                  split /\r\n/, $head;
    $body //= '';
    my %h = map { (lc $_->[0], $_->[1]) } @headers;
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            last if $len == 0;
            $out .= substr $body, 0, $len, '';
            $body =~ s/^\r\n//;
        }
        $body = $out;
    } elsif (defined $h{'content-length'}) {
        $body = substr $body, 0, $h{'content-length'};
    }
    return { status => $status, headers => \@headers, body => $body };
}

1;
