package WsAgent::Backend;

# The scripted WebSocket backend of a "--- ws_backend" block: a forked server
# on 127.0.0.1:PORT, one forked child per accepted connection, each running
# the same step list and writing what it saw to DIR/conn-N.{headers,transcript}
# (N = accept order); DIR/conn-N.done appears when that connection is over.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Frame qw(encode_frame ws_accept close_payload);
use WsAgent::Util qw(parse_duration describe_payload wait_until kill_pid
                     slurp trim);

my $MAX_LIFE = 60;    # no backend connection outlives this, whatever happens

# Step text -> list of step hashes; dies with a readable message.
# $user in a step is the X-User-Id of the connection's upgrade request
# (each connection parses its steps again); before that, it reads as 1.
sub parse_steps {
    my ($text, $user) = @_;
    my @steps;
    for my $line (split /\n/, $text // '') {
        $line = trim($line);
        next if $line eq '' || $line =~ /^#/;
        my %s = (text => $line);
        $line =~ s/\$user\b/$user \/\/ 1/ge;
        if ($line =~ s/^with_101\s+//) {
            die "with_101 must be the first step: '$s{text}'\n"
                if grep { $_->{op} ne 'protocol' } @steps;
            $s{with_101} = 1;
        }
        if    ($line =~ /^send\s+(.*)$/)       { $s{op} = 'send';
                                                 $s{send} = WsAgent::Send::parse($1) }
        elsif ($line =~ /^(wait|sleep)\s+(.+)$/) { @s{qw(op dur)} = ($1, $2);
                                                 parse_duration($2) }
        elsif ($line =~ /^(echo|record|record_past_close|drop)$/) {
            $s{op} = $1 }
        elsif ($line =~ /^close(?:\s+(\d+)\s*(.*))?$/) {
            @s{qw(op code reason)} = ('close', $1, $2) }
        elsif ($line =~ /^status\s+(\d{3})$/) {
            die "status must be the first step\n" if @steps;
            @s{qw(op code)} = ('status', $1) }
        elsif ($line =~ /^protocol\s+(\S+)$/) {
            die "protocol must be the first step\n" if @steps;
            @s{qw(op protocol)} = ('protocol', $1) }
        else { die "unknown ws_backend step '$line'\n" }
        die "with_101 applies to a send step\n"
            if $s{with_101} && $s{op} ne 'send';
        push @steps, \%s;
    }
    return \@steps;
}

sub start {
    my ($class, %opt) = @_;
    my $self = bless { port => $opt{port}, dir => $opt{dir},
                       steps => $opt{steps} }, $class;
    mkdir $self->{dir};
    unlink glob "$self->{dir}/conn-*";
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $self->{port}, Proto => 'tcp', Listen => 128,
        ReuseAddr => 1) or die "backend cannot listen on $self->{port}: $!\n";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp 0, 0;
        eval { $self->_serve($listen) };
        POSIX::_exit(0);
    }
    close $listen;
    $self->{pid} = $pid;
    return $self;
}

sub _serve {
    my ($self, $listen) = @_;
    local $SIG{CHLD} = 'IGNORE';
    local $SIG{PIPE} = 'IGNORE';
    my $end = time + $MAX_LIFE;
    my $n = 0;
    while (time < $end) {
        my $sel = IO::Select->new($listen);
        next unless $sel->can_read(0.5);
        my $conn = $listen->accept or next;
        $n++;
        WsAgent::Util::spit("$self->{dir}/conn-$n.transcript", '');
        my $pid = fork;
        if (defined $pid && $pid == 0) {
            close $listen;
            srand;
            eval { WsAgent::Backend::Conn->new($self, $n, $conn)->run };
            if ($@) {
                open my $fh, '>>', "$self->{dir}/conn-$n.transcript";
                print $fh "recv error internal: $@";
            }
            WsAgent::Util::spit("$self->{dir}/conn-$n.done", '');
            POSIX::_exit(0);
        }
        close $conn;
    }
}

sub connections {
    my ($self) = @_;
    my @t = glob "$self->{dir}/conn-*.transcript";
    return scalar @t;
}

# Waits until every accepted connection is over; returns the numbers of
# those still running when $timeout ran out.
sub wait_done {
    my ($self, $timeout) = @_;
    my @open;
    wait_until($timeout, sub {
        @open = grep { !-e "$self->{dir}/conn-$_.done" } 1 .. $self->connections;
        !@open;
    });
    return @open;
}

# Transcript of connection $n as a list of lines.
sub transcript {
    my ($self, $n) = @_;
    my $t = slurp("$self->{dir}/conn-$n.transcript");
    return undef unless defined $t;
    return [map { s/\s+$//r } split /\n/, $t];
}

# { request_line => ..., headers => [[name, value], ...] } of connection $n.
sub request {
    my ($self, $n) = @_;
    my $raw = slurp("$self->{dir}/conn-$n.headers") // return undef;
    my ($line, @lines) = split /\r?\n/, $raw;
    return { request_line => $line,
             headers => [map { /^([^:]+):\s*(.*)$/ ? [$1, $2] : () } @lines] };
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill_pid(-$self->{pid}, grace => 1);
    kill_pid($self->{pid}, grace => 1);
    delete $self->{pid};
}


package WsAgent::Backend::Conn;

# One accepted connection running the step list.

use Time::HiRes qw(time sleep);
use WsAgent::Frame qw(encode_frame ws_accept close_payload);
use WsAgent::Util qw(parse_duration describe_payload);

sub new {
    my ($class, $server, $n, $sock) = @_;
    open my $log, '>>', "$server->{dir}/conn-$n.transcript" or die $!;
    $log->autoflush(1);
    return bless { server => $server, n => $n, log => $log,
                   stream => WsAgent::Stream->new($sock),
                   end => time + $MAX_LIFE, closed => 0 }, $class;
}

sub rec {
    my ($self, $line) = @_;
    print { $self->{log} } "$line\n";
}

sub run {
    my ($self) = @_;
    my @steps = @{ $self->{server}{steps} };
    my $s = $self->{stream};
    my $req = $self->read_request // return;
    my $dir = $self->{server}{dir};
    WsAgent::Util::spit("$dir/conn-$self->{n}.headers", $req);

    if (@steps && $steps[0]{op} eq 'status') {
        my $code = shift(@steps)->{code};
        my $body = "not a websocket\n";
        $s->write_all("HTTP/1.1 $code Scripted\r\nContent-Type: text/plain\r\n"
            . "Content-Length: " . length($body) . "\r\nConnection: close\r\n"
            . "\r\n$body");
        $self->rec("sent status $code");
        return $self->finish;
    }
    # this connection's own steps: $user is its X-User-Id
    if (grep { $_->{text} =~ /\$user\b/ } @steps) {
        my ($user) = $req =~ /^X-User-Id:[ \t]*(.*?)\s*$/mi;
        @steps = @{ WsAgent::Backend::parse_steps(
                        join("\n", map { $_->{text} } @steps), $user // '') };
    }
    my ($key) = $req =~ /^Sec-WebSocket-Key:\s*(\S+)/mi;
    unless ($key) {
        $s->write_all("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                      . "Connection: close\r\n\r\n");
        $self->rec('recv error no Sec-WebSocket-Key');
        return $self->finish;
    }
    my $protocol = @steps && $steps[0]{op} eq 'protocol'
                 ? shift(@steps)->{protocol} : undef;
    my $resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
             . "Connection: Upgrade\r\nSec-WebSocket-Accept: "
             . ws_accept($key) . "\r\n"
             . (defined $protocol ? "Sec-WebSocket-Protocol: $protocol\r\n" : '')
             . "\r\n";
    if (@steps && $steps[0]{with_101}) {
        my ($bytes, $lines) = WsAgent::Send::build(shift(@steps)->{send});
        $s->write_all($resp . $bytes);
        $self->rec("sent $_") for @$lines;
    } else {
        $s->write_all($resp);
    }

    for my $step (@steps) {
        last if $self->{closed};
        my $op = $step->{op};
        if ($op eq 'send') {
            my ($bytes, $lines) = WsAgent::Send::build($step->{send});
            $self->{sent_close} = 1 if $step->{send}{kind} eq 'close';
            $self->rec("sent $_") for @$lines;
            $s->write_all($bytes, map { $_ => $step->{send}{$_} }
                                  qw(split pieces gap));
        } elsif ($op eq 'wait') {
            $self->pump(time + parse_duration($step->{dur}));
        } elsif ($op eq 'sleep') {
            sleep parse_duration($step->{dur});
        } elsif ($op eq 'echo') {
            $self->pump($self->{end}, echo => 1);
        } elsif ($op eq 'record') {
            $self->pump($self->{end});
        } elsif ($op eq 'record_past_close') {
            $self->pump($self->{end}, past_close => 1);
        } elsif ($op eq 'close') {
            my $p = close_payload($step->{code}, $step->{reason});
            $s->write_all(encode_frame('close', $p));
            $self->rec('sent ' . describe_payload('close', $p));
            $self->{sent_close} = 1;
            $self->pump(time + 5);
            $self->{closed} = 1;
        } elsif ($op eq 'drop') {
            $self->{closed} = 1;
        }
    }
    # after the last step: behave like a plain server until the peer is done
    $self->pump($self->{end}) unless $self->{closed};
    $self->finish;
}

sub finish {
    my ($self) = @_;
    $self->{stream}->close;
    $self->{closed} = 1;
}

sub read_request {
    my ($self) = @_;
    my $s = $self->{stream};
    my $deadline = time + 5;
    while ($s->{buf} !~ /\r\n\r\n/) {
        my $n = $s->fill($deadline);
        if (!$n) {
            next if !defined $n && time < $deadline;
            $self->rec(defined $n ? 'recv eof' : 'recv error no request');
            $self->finish;
            return undef;
        }
    }
    $s->{buf} =~ s/^(.*?\r\n)\r\n//s;
    return $1;
}

# Reads and records until $deadline or the connection is over.
sub pump {
    my ($self, $deadline, %opt) = @_;
    my $s = $self->{stream};
    while (!$self->{closed} && time < $deadline) {
        my $m = $s->read_message($deadline);
        last if $m eq 'timeout';
        if ($m eq 'eof') {
            $self->rec('recv eof');
            $self->{closed} = 1;
            last;
        }
        if ($m->{error}) {
            $self->rec("recv error $m->{error}");
            next;
        }
        my $masked = exists $m->{masked} ? $m->{masked} : $m->{frame}{masked};
        if (!$masked) {
            $self->rec('recv error unmasked');
            next;
        }
        $self->rec('recv ' . describe_payload($m->{type}, $m->{payload}));
        if ($m->{type} eq 'close') {
            unless ($self->{sent_close}) {
                my $code = length $m->{payload} >= 2
                         ? unpack('n', $m->{payload}) : undef;
                my $p = close_payload($code);
                $s->write_all(encode_frame('close', $p));
                $self->rec('sent ' . describe_payload('close', $p));
                $self->{sent_close} = 1;
            }
            # past_close: whatever the peer sends after its close, until EOF
            $self->{closed} = 1 unless $opt{past_close};
        } elsif ($opt{echo} && $m->{type} =~ /^(text|binary)$/) {
            $s->write_all(encode_frame($m->{type}, $m->{payload}));
            $self->rec('sent ' . describe_payload($m->{type}, $m->{payload}));
        }
    }
}

1;
