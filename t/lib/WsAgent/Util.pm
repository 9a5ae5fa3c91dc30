package WsAgent::Util;

# Small helpers shared by the harness: free ports, durations, payload
# descriptions, bounded waits and process clean-up.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha1_hex);
use POSIX ();

our @EXPORT_OK = qw(free_port port_is_free parse_duration describe_payload
                    big_payload wait_until kill_pid slurp spit
                    parse_header_list trim expected_lines worker_pids
                    tcp_connections);

my %ports_given;

sub port_is_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Proto => 'tcp', ReuseAddr => 1, Listen => 1)
        or return 0;
    close $s;
    return 1;
}

# A port the kernel says is free now, never handed out twice by this process.
# free_port(below => 32768): one below the kernel's ephemeral range
# (32768-60999 here), chosen at random from 10000 up and checked free, for
# servers whose port must not collide with the machine's outgoing
# connections (a busy machine hands out ephemeral ports all the time).
sub free_port {
    my (%opt) = @_;
    if (my $below = $opt{below}) {
        my $from = $opt{from} // 10000;
        for (1 .. 200) {
            my $port = $from + int rand($below - $from);
            next if $ports_given{$port} || !port_is_free($port);
            $ports_given{$port}++;
            return $port;
        }
        die "no free port found in $from .. " . ($below - 1);
    }
    for (1 .. 50) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1)
            or die "cannot bind a free port: $!";
        my $port = $s->sockport;
        close $s;
        next if $ports_given{$port}++;
        return $port;
    }
    die "no free port found";
}

# "300ms", "1s", "1.5s", "2" (seconds), "random 0-300ms" -> seconds.
sub parse_duration {
    my ($text) = @_;
    $text = trim($text);
    if ($text =~ /^random\s+(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*(ms|s)?$/) {
        my $unit = ($3 // 's') eq 'ms' ? 0.001 : 1;
        return ($1 + rand($2 - $1)) * $unit;
    }
    return $1 / 1000 if $text =~ /^(\d+(?:\.\d+)?)\s*ms$/;
    return $1 if $text =~ /^(\d+(?:\.\d+)?)\s*s?$/;
    die "bad duration '$text' (want e.g. 300ms, 1s, random 0-300ms)\n";
}

# How a payload appears in transcripts and step results: verbatim text,
# hex for binary, a digest once it is too long to read.
sub describe_payload {
    my ($type, $payload) = @_;
    if ($type eq 'close') {
        return 'close' if length($payload) < 2;
        my $code = unpack 'n', substr($payload, 0, 2);
        my $reason = substr $payload, 2;
        return length $reason ? "close $code $reason" : "close $code";
    }
    if (length($payload) > 256) {
        return sprintf '%s len=%d sha1=%s', $type, length $payload,
                       sha1_hex($payload);
    }
    return "$type " . unpack('H*', $payload) if $type eq 'binary';
    return "$type $payload";
}

# The deterministic body of "send big N": byte i is i % 251.
sub big_payload {
    my ($n) = @_;
    return pack 'C*', map { $_ % 251 } 0 .. $n - 1;
}

# Poll $cond every few ms until true or $timeout seconds passed.
sub wait_until {
    my ($timeout, $cond) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = $cond->();
        return $r if $r;
        return 0 if time >= $deadline;
        sleep 0.01;
    }
}

# Stop a process we started: signals in order, each given $grace seconds.
# Reaps it if it is our child. A negative pid means the process group.
sub kill_pid {
    my ($pid, %opt) = @_;
    return unless $pid;
    my @signals = @{ $opt{signals} || [qw(TERM KILL)] };
    my $grace = $opt{grace} // 2;
    my $gone = sub {
        my $r = waitpid(abs $pid, POSIX::WNOHANG());
        return 1 if $r == abs($pid) || ($r == -1 && !kill 0, $pid);
        return 0;
    };
    for my $sig (@signals) {
        return 1 if $gone->();
        kill $sig, $pid;
        return 1 if wait_until($grace, $gone);
    }
    return 0;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    my $data = <$fh>;
    return $data // '';
}

sub spit {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "cannot write $file: $!";
    print $fh $data;
    close $fh or die "cannot write $file: $!";
}

sub trim {
    my ($s) = @_;
    return '' unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    return $s;
}

# "A: 1 | B: 2" or lines -> ([name, value], ...); "!Name" gives [name, undef].
# With $lines_only, only newlines separate headers.
sub parse_header_list {
    my ($text, $lines_only) = @_;
    my @out;
    my $sep = $lines_only ? qr/\n/ : qr/\n|\s\|\s/;
    for my $item (split /\s*(?:$sep)\s*/, $text // '') {
        $item = trim($item);
        next if $item eq '' || $item =~ /^#/;
        if ($item =~ /^!\s*([^:\s]+)$/) {
            push @out, [$1, undef];
        } elsif ($item =~ /^([^:\s]+)\s*:\s*(.*)$/) {
            push @out, [$1, $2];
        } else {
            die "bad header '$item' (want 'Name: value' or '!Name')\n";
        }
    }
    return @out;
}

# A section's lines: trimmed, without blank lines and "#" comments (an
# array from "eval" is taken as it is).
sub expected_lines {
    my ($text) = @_;
    return () unless defined $text;
    return @$text if ref $text eq 'ARRAY';
    return grep { $_ ne '' && !/^#/ } map { trim($_) } split /\n/, $text;
}

# The children of $master (nginx's workers), from /proc.
sub worker_pids {
    my ($master) = @_;
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        # pid (comm) state ppid ...: comm may hold spaces
        push @w, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $master;
    }
    return @w;
}

# TCP connections on local port $port, neither listening nor in TIME_WAIT
# (a socket its process closed has no descriptor left).
sub tcp_connections {
    my ($port) = @_;
    my $n = 0;
    for my $file ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $file or next;
        while (my $line = <$fh>) {
            my ($local, $state) = (split ' ', $line)[1, 3];
            next unless defined $state && $local =~ /:([0-9A-F]{4})$/;
            $n++ if hex($1) == $port && $state ne '0A' && $state ne '06';
        }
    }
    return $n;
}

1;
