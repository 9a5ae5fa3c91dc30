package WsAgent::Frame;

# RFC 6455 frame codec and a socket stream that reads frames with deadlines.
# Used by both peers: the scripted backend (unmasked sends) and the test
# client (masked sends).

use strict;
use warnings;

use Exporter 'import';
use Digest::SHA qw(sha1_base64);
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use Errno qw(EAGAIN EINTR EWOULDBLOCK);

our @EXPORT_OK = qw(encode_frame parse_frame ws_accept random_key
                    close_payload %OPCODE %OPNAME);

our %OPCODE = (continuation => 0, text => 1, binary => 2, close => 8,
               ping => 9, pong => 10);
our %OPNAME = reverse %OPCODE;

sub ws_accept {
    my ($key) = @_;
    my $b64 = sha1_base64($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11');
    return $b64 . '=';
}

sub random_key {
    my $raw = pack 'C16', map { int rand 256 } 1 .. 16;
    require MIME::Base64;
    return MIME::Base64::encode_base64($raw, '');
}

sub close_payload {
    my ($code, $reason) = @_;
    return '' unless defined $code && length $code;
    return pack('n', $code) . ($reason // '');
}

# encode_frame(opcode_name_or_number, payload, mask => 0|1, fin => 0|1)
sub encode_frame {
    my ($op, $payload, %opt) = @_;
    $op = $OPCODE{$op} // die "unknown opcode '$op'\n" if $op !~ /^\d+$/;
    my $fin = $opt{fin} // 1;
    my $len = length $payload;
    my $head = pack 'C', ($fin ? 0x80 : 0) | ($opt{rsv} // 0) << 4 | $op;
    my $mbit = $opt{mask} ? 0x80 : 0;
    if    ($len < 126)   { $head .= pack 'C', $mbit | $len }
    elsif ($len < 65536) { $head .= pack 'Cn', $mbit | 126, $len }
    else                 { $head .= pack 'CQ>', $mbit | 127, $len }
    return $head . $payload unless $opt{mask};
    my $key = pack 'C4', map { int rand 256 } 1 .. 4;
    my $masked = $payload ^ substr($key x (int($len / 4) + 1), 0, $len);
    return $head . $key . $masked;
}

# Takes one frame off the front of $$buf; undef if not complete yet.
sub parse_frame {
    my ($buf) = @_;
    return undef if length $$buf < 2;
    my ($b0, $b1) = unpack 'CC', $$buf;
    my $len = $b1 & 0x7f;
    my $off = 2;
    if ($len == 126) {
        return undef if length $$buf < 4;
        $len = unpack 'n', substr($$buf, 2, 2);
        $off = 4;
    } elsif ($len == 127) {
        return undef if length $$buf < 10;
        $len = unpack 'Q>', substr($$buf, 2, 8);
        $off = 10;
    }
    my $masked = $b1 & 0x80;
    my $key = '';
    if ($masked) {
        return undef if length $$buf < $off + 4;
        $key = substr $$buf, $off, 4;
        $off += 4;
    }
    return undef if length $$buf < $off + $len;
    my $payload = substr $$buf, $off, $len;
    substr($$buf, 0, $off + $len) = '';
    $payload ^= substr($key x (int($len / 4) + 1), 0, $len) if $masked;
    return { fin => ($b0 & 0x80) ? 1 : 0, rsv => ($b0 >> 4) & 7,
             opcode => $b0 & 0x0f, masked => $masked ? 1 : 0,
             payload => $payload };
}


package WsAgent::Stream;

# A socket plus a read buffer. Every read is bounded by a deadline.

use Time::HiRes qw(time sleep);
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);

sub new {
    my ($class, $sock) = @_;
    # plain sockets go non-blocking so that writes, too, have a deadline
    unless ($sock->isa('IO::Socket::SSL')) {
        setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
        $sock->blocking(0);
    }
    return bless { sock => $sock, buf => '', eof => 0, partial => [] }, $class;
}

sub sock { $_[0]{sock} }

# Reads whatever arrives before $deadline; returns bytes read, 0 on EOF,
# undef on timeout.
sub fill {
    my ($self, $deadline) = @_;
    my $sock = $self->{sock};
    return 0 if $self->{eof};
    my $pending = $sock->can('pending') ? $sock->pending : 0;
    unless ($pending) {
        my $left = $deadline - time;
        $left = 0 if $left < 0;
        my @ready = IO::Select->new($sock)->can_read($left);
        return undef unless @ready;
    }
    my $n = sysread $sock, my $chunk, 65536;
    if (!defined $n) {
        # IO::Socket::SSL may want more bytes before it has a record
        return undef if $!{EAGAIN} || $!{EWOULDBLOCK} || $!{EINTR};
        $self->{eof} = 1;
        $self->{error} = "$!";
        return 0;
    }
    if ($n == 0) { $self->{eof} = 1; return 0 }
    $self->{buf} .= $chunk;
    return $n;
}

# Next complete frame, or 'eof' / 'timeout'.
sub read_frame {
    my ($self, $deadline) = @_;
    while (1) {
        my $f = WsAgent::Frame::parse_frame(\$self->{buf});
        return $f if $f;
        my $n = $self->fill($deadline);
        return 'eof' if defined $n && $n == 0;
        return 'timeout' if !defined $n && time >= $deadline;
    }
}

# Next message: control frames as they come, data frames reassembled.
# Returns { type, payload, frames, error? } or 'eof' / 'timeout'.
sub read_message {
    my ($self, $deadline) = @_;
    while (1) {
        my $f = $self->read_frame($deadline);
        return $f unless ref $f;
        my $name = $WsAgent::Frame::OPNAME{$f->{opcode}};
        my $msg = { frame => $f };
        if (!defined $name) {
            return { %$msg, error => "opcode $f->{opcode}" };
        }
        if ($f->{rsv}) {
            return { %$msg, error => "rsv $f->{rsv}" };
        }
        if ($f->{opcode} >= 8) {
            return { %$msg, type => $name, payload => $f->{payload} };
        }
        my $partial = $self->{partial};
        if ($name eq 'continuation') {
            return { %$msg, error => 'continuation without start' }
                unless @$partial;
        } elsif (@$partial) {
            @$partial = ();
            return { %$msg, error => 'new message inside fragmented one' };
        }
        push @$partial, $f;
        next unless $f->{fin};
        my @frames = splice @$partial;
        return { %$msg, frames => scalar @frames,
                 masked => (grep { !$_->{masked} } @frames) ? 0 : 1,
                 type => $WsAgent::Frame::OPNAME{$frames[0]{opcode}},
                 payload => join '', map { $_->{payload} } @frames };
    }
}

# Writes all bytes; split => N writes them in N pieces 30 ms apart;
# pieces => SPEC cuts them at byte offsets (see cut_points), gap => DURATION
# apart (default 5ms; "random 0-3ms" is drawn again for every gap).
# Gives up (returns 0) if the peer stops reading for 10 s.
sub write_all {
    my ($self, $bytes, %opt) = @_;
    my $deadline = time + ($opt{timeout} // 10);
    my @chunks;
    my $gap = $opt{pieces} ? $opt{gap} // '5ms' : '30ms';
    if ($opt{pieces}) {
        my $at = 0;
        for my $cut (cut_points($opt{pieces}, length $bytes), length $bytes) {
            push @chunks, substr $bytes, $at, $cut - $at;
            $at = $cut;
        }
    } else {
        my $pieces = $opt{split} || 1;
        my $size = int((length($bytes) + $pieces - 1) / $pieces) || 1;
        @chunks = unpack "(a$size)*", $bytes;
    }
    for my $i (0 .. $#chunks) {
        sleep WsAgent::Util::parse_duration($gap) if $i;
        my $data = $chunks[$i];
        while (length $data) {
            my $n = syswrite $self->{sock}, $data;
            if (!defined $n) {
                return 0 unless $!{EINTR} || $!{EAGAIN} || $!{EWOULDBLOCK};
                return 0 if time >= $deadline;
                IO::Select->new($self->{sock})->can_write(0.05);
                next;
            }
            substr($data, 0, $n) = '';
        }
    }
    return 1;
}

# "3,7,11" (cut before byte 3, 7 and 11), "5..9" (before each of 5 to 9),
# "every 7", or a mix such as "1,4..6": the ascending cut offsets into
# $len bytes; an offset outside 1 .. $len - 1 is a mistake in the test.
# Without $len only the spec itself is checked.
sub cut_points {
    my ($spec, $len) = @_;
    my @cuts;
    if ($spec =~ /^every\s+(\d+)$/) {
        die "pieces every 0\n" unless $1;
        return () unless defined $len;
        for (my $c = $1; $c < $len; $c += $1) { push @cuts, $c }
        return @cuts;
    }
    for my $item (split /,/, $spec) {
        my ($from, $to) = $item =~ /^(\d+)(?:\.\.(\d+))?$/
            or die "bad pieces '$spec'\n";
        push @cuts, $from .. ($to // $from);
    }
    for my $i (0 .. $#cuts) {
        die "pieces $spec: cut $cuts[$i] is not inside the "
            . ($len // 'frame\'s') . " bytes\n"
            if $cuts[$i] < 1 || defined $len && $cuts[$i] >= $len;
        die "pieces $spec: offsets must ascend\n"
            if $i && $cuts[$i] <= $cuts[$i - 1];
    }
    return @cuts;
}

sub close {
    my ($self) = @_;
    close $self->{sock} if $self->{sock};
    $self->{eof} = 1;
}


package WsAgent::Send;

# The "send ..." step shared by both peers: parse once, then build the bytes
# (masked for the client, unmasked for the backend) and the transcript lines.

use WsAgent::Util qw(describe_payload big_payload trim);

# "text hi split 3" -> { kind => 'text', arg => 'hi', split => 3 }
# "text hi pieces 1,3 gap 2ms" -> { ..., pieces => '1,3', gap => '2ms' }
sub parse {
    my ($rest) = @_;
    my %s;
    $s{split} = $1 if $rest =~ s/\s+split\s+(\d+)\s*$//;
    if ($rest =~ s/\s+pieces\s+(every\s+\d+|[\d.,]+)
                   (?:\s+gap\s+((?:random\s+)?\S+))?\s*$//x) {
        @s{qw(pieces gap)} = ($1, $2);
        WsAgent::Stream::cut_points($s{pieces});
        WsAgent::Util::parse_duration($s{gap}) if defined $s{gap};
    }
    my ($kind, $arg) = $rest =~ /^\s*(\w+)(?:\s(.*))?$/s
        or die "bad send step '$rest'\n";
    $arg = trim($arg);
    @s{qw(kind arg)} = ($kind, $arg);
    if ($kind eq 'binary' || $kind eq 'raw') {
        (my $hex = $arg) =~ s/\s+//g;
        die "bad hex '$arg'\n" if $hex =~ /[^0-9a-fA-F]/ || length($hex) % 2;
        $s{bytes} = pack 'H*', $hex;
    } elsif ($kind eq 'close') {
        my ($code, $reason) = $arg =~ /^(\d*)\s*(.*)$/;
        $s{bytes} = WsAgent::Frame::close_payload($code, $reason);
    } elsif ($kind eq 'big') {
        die "send big wants a size\n" unless $arg =~ /^\d+$/;
    } elsif ($kind eq 'many') {
        my ($n, $type, $prefix) = $arg =~ /^(\d+)\s+(text|binary)\s+(.*)$/
            or die "want 'send many N text PREFIX'\n";
        @s{qw(n type prefix)} = ($n, $type, $prefix);
    } elsif ($kind !~ /^(text|texts|ping|pong|text_fragments)$/) {
        die "unknown send kind '$kind'\n";
    }
    return \%s;
}

# -> (bytes, [transcript lines without the 'sent ' prefix])
sub build {
    my ($s, %opt) = @_;
    my $mask = $opt{mask};
    my $k = $s->{kind};
    my $enc = sub { WsAgent::Frame::encode_frame(@_, mask => $mask) };
    if ($k eq 'raw') {
        return ($s->{bytes}, ['raw ' . unpack 'H*', $s->{bytes}]);
    }
    if ($k eq 'text_fragments') {
        my @parts = split /\s\|\s/, $s->{arg}, -1;
        my $bytes = '';
        for my $i (0 .. $#parts) {
            $bytes .= WsAgent::Frame::encode_frame($i ? 0 : 1, $parts[$i],
                          fin => $i == $#parts ? 1 : 0, mask => $mask);
        }
        return ($bytes, ['text_fragments ' . join ' | ', @parts]);
    }
    if ($k eq 'texts') {
        # several whole messages in one write (a burst)
        my @msgs = split /\s\|\s/, $s->{arg}, -1;
        return (join('', map { $enc->('text', $_) } @msgs),
                [map { describe_payload('text', $_) } @msgs]);
    }
    if ($k eq 'big') {
        my $p = big_payload($s->{arg});
        return ($enc->('binary', $p), [describe_payload('binary', $p)]);
    }
    if ($k eq 'many') {
        my ($bytes, @lines) = ('');
        for my $i (1 .. $s->{n}) {
            my $p = "$s->{prefix}$i";
            $bytes .= $enc->($s->{type}, $p);
            push @lines, describe_payload($s->{type}, $p);
        }
        return ($bytes, \@lines);
    }
    my $p = exists $s->{bytes} ? $s->{bytes} : $s->{arg};
    utf8::encode($p) if utf8::is_utf8($p);
    return ($enc->($k, $p), [describe_payload($k, $p)]);
}

1;
