package WsAgent::WsClient;

# The test client of a "--- ws_client" block. run() executes the step list
# against nginx and returns one result per step; the runner turns results
# into TAP (so parallel copies can run in child processes).

use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use WsAgent::Frame qw(encode_frame ws_accept random_key close_payload);
use WsAgent::Util qw(parse_duration describe_payload big_payload trim
                     parse_header_list);

my $DEFAULT_WITHIN = 5;

sub parse_steps {
    my ($text) = @_;
    my @steps;
    for my $line (split /\n/, $text // '') {
        $line = trim($line);
        next if $line eq '' || $line =~ /^#/;
        push @steps, parse_step($line);
    }
    return \@steps;
}

sub parse_step {
    my ($line) = @_;
    my %s = (text => $line);
    if ($line =~ /^(handshake|handshake_tls)(?:\s+(.*))?$/) {
        @s{qw(op tls expect)} = ('handshake', $1 eq 'handshake_tls', 101);
        _path_and_headers(\%s, $2);
    } elsif ($line =~ /^handshake(_tls)?_expect\s+(\d{3})(?:\s+(.*))?$/) {
        @s{qw(op tls expect)} = ('handshake', !!$1, $2);
        _path_and_headers(\%s, $3);
    } elsif ($line =~ /^handshake_with\s+(?:(\/\S*)\s+)?(.*)$/) {
        @s{qw(op expect path)} = ('handshake', 101, $1 // '/');
        $s{headers} = [];
        $s{with} = WsAgent::Send::parse($2);
    } elsif ($line =~ /^response_header\s+(.*)$/) {
        my ($h) = parse_header_list($1);
        @s{qw(op name want)} = ('response_header', @$h);
    } elsif ($line =~ /^port\s+(\d+)$/) {
        @s{qw(op port)} = ('port', $1);
    } elsif ($line =~ /^header\s+(.*)$/) {
        @s{qw(op headers)} = ('header', [parse_header_list($1)]);
    } elsif ($line =~ /^send\s+(.*)$/) {
        @s{qw(op send)} = ('send', WsAgent::Send::parse($1));
    } elsif ($line =~ /^(recv|recv_like)\s+(.*)$/) {
        my ($like, $rest) = ($1 eq 'recv_like', $2);
        $s{op} = 'recv';
        $s{like} = $like;
        while (1) {
            if ($rest =~ s/\s+within\s+(\S+)$//) { $s{within} = parse_duration($1) }
            elsif ($rest =~ s/\s+noreply$//)     { $s{noreply} = 1 }
            else { last }
        }
        my ($type, $arg) = $rest =~ /^(\w+)(?:\s+(.*))?$/
            or die "bad recv step '$line'\n";
        $arg = trim($arg);
        if ($type eq 'nothing') {
            $s{within} = parse_duration($arg || '200ms');
            $arg = '';
        }
        die "unknown recv type '$type'\n"
            unless $type =~ /^(text|binary|ping|pong|close|eof|nothing|big)$/;
        $arg = lc($arg =~ s/\s+//gr) if $type eq 'binary' && $arg !~ /len=/;
        @s{qw(type arg)} = ($type, $arg);
        $s{re} = qr/$arg/ if $like;
    } elsif ($line =~ /^sleep\s+(.+)$/) {
        @s{qw(op dur)} = ('sleep', $1);
        parse_duration($1);
    } elsif ($line eq 'drop') {
        $s{op} = 'drop';
    } elsif ($line =~ /^http_get\s+(\S+)(?:\s+=>\s+(.*?))?(?:\s+within\s+(\S+))?$/) {
        @s{qw(op path want within)} = ('http_get', $1, $2, $3);
    } elsif ($line =~ /^redis_start\s+tls\s+(\S.*)$/) {
        @s{qw(op tls)} = ('redis_start', trim($1));
    } elsif ($line =~ /^(redis(?:_b)?_stop|redis(?:_b)?_start|nginx_reload|nginx_kill_workers)$/) {
        $s{op} = $1;
    } elsif ($line =~ /^(redis(?:_b)?_cmd)\s+(.*?)(?:\s+=>\s+(.*))?$/) {
        @s{qw(op args want)} = ($1, [_words($2)], $3);
    } elsif ($line =~ /^(sentinel_kill_master|sentinel_failover|sentinel_restart_old_master)$/) {
        $s{op} = $1;
    } elsif ($line =~ /^sentinel_wait_switch(?:\s+(\S+))?$/) {
        @s{qw(op secs)} = ('sentinel_wait_switch', parse_duration($1 // '15s'));
    } elsif ($line =~ /^dns_set\s+(\S+)\s+(\S.*)$/) {
        @s{qw(op name values)} = ('dns_set', $1, [split ' ', $2]);
    } elsif ($line =~ /^dns_remove\s+(\S+)$/) {
        @s{qw(op name)} = ('dns_remove', $1);
    } elsif ($line =~ /^dns_queried\s+(\S+)(?:\s+([A-Z]+))?(?:\s+(>=|==)\s*(\d+))?$/) {
        @s{qw(op name type cmp n)} = ('dns_queried', $1, $2 // 'A',
                                      $3 // '>=', $4 // 1);
    } elsif ($line =~ /^dns_query\s+(\S+)\s+([A-Za-z]+)\s+=>\s+(.*)$/) {
        @s{qw(op name type want)} = ('dns_query', $1, uc $2, trim($3));
    } elsif ($line =~ /^sse_wait\s+(\S+)\s+(\d+)\s+events?(?:\s+within\s+(\S+))?$/) {
        @s{qw(op name n within)} = ('sse_wait', $1, $2,
                                    parse_duration($3 // "${DEFAULT_WITHIN}s"));
    } elsif ($line =~ /^sse_/) {
        die "bad sse step '$line' (want: sse_wait NAME N events [within 5s])\n";
    } elsif ($line =~ /^(cluster_[a-z_]+)(?:\s+(.*))?$/) {
        @s{qw(op arg)} = ($1, trim($2));
    } elsif ($line =~ /^conn\s+(\d+)$/) {
        @s{qw(op n)} = ('conn', $1);
    } elsif ($line =~ /^parallel\s+(\d+)$/) {
        @s{qw(op n)} = ('parallel', $1);
    } else {
        die "unknown ws_client step '$line'\n";
    }
    return \%s;
}

sub _path_and_headers {
    my ($s, $rest) = @_;
    $rest = trim($rest);
    $s->{path} = $rest =~ s/^(\/\S*)\s*// ? $1 : '/';
    $rest =~ s/^\|\s*//;
    $s->{headers} = [parse_header_list($rest)];
}

# split on blanks; "double quoted" words may hold blanks
sub _words {
    my ($text) = @_;
    my @w;
    push @w, defined $1 ? $1 : $2 while $text =~ /\G\s*(?:"([^"]*)"|(\S+))/gc;
    return @w;
}

# run(steps => [...], port => N, hooks => {...}) -> [ {ok, skip, msg} ... ]
sub run {
    my ($class, %opt) = @_;
    my $self = bless { %opt, headers => [], conns => [] }, $class;
    local $SIG{PIPE} = 'IGNORE';
    my @results;
    my $failed;
    for my $step (@{ $opt{steps} }) {
        if ($failed) {
            push @results, { skip => 1, msg => 'an earlier step failed' };
            next;
        }
        my ($ok, $msg) = eval { $self->step($step) };
        ($ok, $msg) = (0, "died: $@") if $@;
        push @results, { ok => $ok ? 1 : 0, msg => $msg // '' };
        $failed = 1 unless $ok;
    }
    $_->close for @{ $self->{conns} };
    return \@results;
}

# the connection the steps act on: the last one opened, or the one
# chosen with "conn N" (1 = the first handshake's) until the next handshake
sub stream {
    my ($self) = @_;
    return $self->{conns}[$self->{current} // -1];
}

sub step {
    my ($self, $s) = @_;
    my $op = $s->{op};
    return $self->handshake($s) if $op eq 'handshake';
    if ($op eq 'header') {
        push @{ $self->{headers} }, @{ $s->{headers} };
        return 1;
    }
    if ($op eq 'port') { $self->{port} = $s->{port}; return 1 }
    if ($op eq 'conn') {
        return (0, "no connection $s->{n}")
            unless $s->{n} >= 1 && $s->{n} <= @{ $self->{conns} };
        $self->{current} = $s->{n} - 1;
        return 1;
    }
    if ($op eq 'sleep') { sleep parse_duration($s->{dur}); return 1 }
    if ($op =~ /^(redis(_b)?_(stop|start|cmd)|nginx_reload|nginx_kill_workers|http_get|dns_\w+|sentinel_\w+|cluster_\w+|sse_wait)$/) {
        my $hook = $self->{hooks}{$op} or return (0, "no $op in this block");
        return $hook->($s);
    }
    my $st = $self->stream or return (0, 'no connection: handshake first');
    return $self->response_header($st, $s) if $op eq 'response_header';
    if ($op eq 'drop') { $st->close; return 1 }
    if ($op eq 'send') {
        my ($bytes) = WsAgent::Send::build($s->{send}, mask => 1);
        $self->{sent_close} = 1 if $s->{send}{kind} eq 'close';
        return $st->write_all($bytes, map { $_ => $s->{send}{$_} }
                                      qw(split pieces gap))
            ? 1 : (0, "write failed: $!");
    }
    return $self->recv($st, $s) if $op eq 'recv';
    return (0, "step '$op' not runnable here");
}

sub connect {
    my ($self, $tls) = @_;
    my %addr = (PeerAddr => '127.0.0.1', PeerPort => $self->{port},
                Proto => 'tcp', Timeout => 5);
    if ($tls) {
        require IO::Socket::SSL;
        return IO::Socket::SSL->new(%addr, SSL_verify_mode => 0,
                                    SSL_hostname => 'localhost')
            || die "tls connect: $! " . IO::Socket::SSL::errstr() . "\n";
    }
    return IO::Socket::INET->new(%addr) || die "connect: $!\n";
}

sub handshake {
    my ($self, $s) = @_;
    my $key = random_key();
    my @h = (['Host', "localhost:$self->{port}"], ['Upgrade', 'websocket'],
             ['Connection', 'Upgrade'], ['Sec-WebSocket-Key', $key],
             ['Sec-WebSocket-Version', '13']);
    for my $extra (@{ $self->{headers} }, @{ $s->{headers} }) {
        @h = grep { lc $_->[0] ne lc $extra->[0] } @h;
        push @h, $extra if defined $extra->[1];
    }
    my $req = "GET $s->{path} HTTP/1.1\r\n"
            . join('', map { "$_->[0]: $_->[1]\r\n" } @h) . "\r\n";
    if ($s->{with}) {
        my ($bytes) = WsAgent::Send::build($s->{with}, mask => 1);
        $req .= $bytes;
    }
    my $st = WsAgent::Stream->new($self->connect($s->{tls}));
    push @{ $self->{conns} }, $st;
    delete $self->{current};
    $st->write_all($req) or return (0, "write failed: $!");

    my $deadline = time + $DEFAULT_WITHIN;
    while ($st->{buf} !~ /\r\n\r\n/) {
        my $n = $st->fill($deadline);
        return (0, 'connection closed before a response')
            if defined $n && $n == 0;
        return (0, 'no response within 5s') if !defined $n && time >= $deadline;
    }
    $st->{buf} =~ s/^(.*?)\r\n\r\n//s;
    my ($status_line, @lines) = split /\r\n/, $1;
    my ($status) = $status_line =~ m{^HTTP/\d\.\d (\d{3})}
        or return (0, "bad status line '$status_line'");
    my %resp = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () } @lines;
    $st->{response} = \%resp;
    return (0, "expected status $s->{expect}, got '$status_line'")
        if $status != $s->{expect};
    return 1 if $status != 101;
    my $want = ws_accept($key);
    return (0, "bad Sec-WebSocket-Accept '" . ($resp{'sec-websocket-accept'}
                                               // '') . "', want '$want'")
        if ($resp{'sec-websocket-accept'} // '') ne $want;
    return (0, "101 without 'Upgrade: websocket'")
        if lc($resp{upgrade} // '') ne 'websocket';
    # RFC 6455 4.1: a subprotocol the client did not offer fails the connection
    my ($offer) = map { $_->[1] } grep { lc $_->[0] eq 'sec-websocket-protocol' } @h;
    my $selected = $resp{'sec-websocket-protocol'};
    return (0, "the 101 selects subprotocol '$selected', not offered")
        if defined $selected
           && !grep { $_ eq $selected } split /\s*,\s*/, trim($offer // '');
    return 1;
}

# a header of the last handshake's response: "Name: value", or "!Name" absent
sub response_header {
    my ($self, $st, $s) = @_;
    my $got = ($st->{response} // {})->{lc $s->{name}};
    return defined $got ? (0, "got '$s->{name}: $got', want none") : 1
        unless defined $s->{want};
    return (0, "got " . (defined $got ? "'$s->{name}: $got'" : 'no ' . $s->{name})
               . ", want '$s->{name}: $s->{want}'")
        if ($got // '') ne $s->{want};
    return 1;
}

sub recv {
    my ($self, $st, $s) = @_;
    my $within = $s->{within} // $DEFAULT_WITHIN;
    my $m = $st->read_message(time + $within);
    my $got = !ref $m          ? $m
            : $m->{error}      ? "error $m->{error}"
            : describe_payload($m->{type}, $m->{payload});
    $got = "masked $got" if ref $m && !$m->{error} && $m->{frame}{masked};
    my ($type, $arg) = @$s{qw(type arg)};
    my $ok;
    if ($type eq 'nothing') {
        $ok = $got eq 'timeout';
        return $ok ? 1 : (0, "expected nothing for ${within}s, got: $got");
    }
    if ($type eq 'eof') {
        $ok = $got eq 'eof';
    } elsif ($type eq 'big') {
        my $want = describe_payload('binary', big_payload($arg));
        $ok = $got eq $want;
        $arg = $want =~ s/^binary //r;
        $type = 'binary';
    } elsif ($s->{like}) {
        $ok = ref $m && !$m->{error} && !$m->{frame}{masked}
              && $m->{type} eq $type && $m->{payload} =~ $s->{re};
    } elsif ($type eq 'close' && $arg =~ /^\d+$/) {
        $ok = $got =~ /^close $arg(?: |$)/;
    } elsif ($type eq 'close' && $arg eq '') {
        $ok = $got =~ /^close(?: |$)/;
    } else {
        $ok = $got eq "$type $arg";
    }
    if ($ok && $type eq 'close' && !$s->{noreply} && !$self->{sent_close}) {
        my $code = length $m->{payload} >= 2 ? unpack('n', $m->{payload}) : undef;
        $st->write_all(encode_frame('close', close_payload($code), mask => 1));
        $self->{sent_close} = 1;
    }
    my $want = $type eq 'eof' ? 'eof'
             : $s->{like} ? "$type matching /$arg/" : "$type $arg";
    return $ok ? (1, "got $got") : (0, "expected: $want\n     got: $got");
}

1;
