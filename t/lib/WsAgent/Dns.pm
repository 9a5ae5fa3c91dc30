package WsAgent::Dns;

# A tiny DNS responder for one test file: UDP on 127.0.0.1, a port from the
# kernel, a forked child started and stopped by PID.  It answers from a
# records file it rereads on every query, so a block can move a name while
# nginx runs (the dns_set / dns_remove steps):
#
#     redis.test 127.0.0.2            A: one or more IPv4 addresses
#     other.test 127.0.0.1 127.0.0.3
#     broken.test servfail            SERVFAIL (rcode 2)
#     silent.test drop                no answer at all (the asker times out)
#
# A name not in the file is NXDOMAIN (rcode 3).  A name in the file has no
# AAAA (or other) records: NOERROR with no answers.  Answers are
# authoritative, with TTL 1.  Names are matched without regard to case.
# Every query is appended to a log (time, type, name, rcode) that a block
# can check (the dns_queried step).  Only the protocol's few bytes that
# this needs (RFC 1035 4.1) are written here: no Net::DNS.

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Socket qw(inet_aton inet_ntoa);
use Time::HiRes qw(time);
use WsAgent::Util qw(kill_pid slurp spit);

my %TYPE = (1 => 'A', 2 => 'NS', 5 => 'CNAME', 6 => 'SOA', 12 => 'PTR',
            15 => 'MX', 16 => 'TXT', 28 => 'AAAA', 33 => 'SRV', 255 => 'ANY');
my %TYPE_NUM = reverse %TYPE;

sub new {
    my ($class, %opt) = @_;
    mkdir $opt{dir};
    my $self = bless { %opt }, $class;
    $self->set_records('');
    return $self;
}

sub port { $_[0]{port} }
sub running { !!$_[0]{pid} }
sub records_file { "$_[0]{dir}/records" }
sub query_log { "$_[0]{dir}/queries" }

sub start {
    my ($self) = @_;
    return 1 if $self->{pid};
    # bound here, so the port is known before the child runs
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $self->{port} // 0, Proto => 'udp')
        or die "dns: cannot bind UDP on 127.0.0.1: $!\n";
    $self->{port} = $sock->sockport;
    my $parent = $$;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        eval { $self->serve($sock, $parent) };
        print STDERR "dns responder: $@" if $@;
        POSIX::_exit(0);
    }
    close $sock;
    $self->{pid} = $pid;
    return 1;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill_pid(delete $self->{pid}, signals => [qw(TERM KILL)], grace => 2);
}

# The whole table, as the file's text ("NAME VALUE..." lines); the query
# log starts afresh.
sub set_records {
    my ($self, $text) = @_;
    my %rec;
    for my $line (split /\n/, $text // '') {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '' || $line =~ /^#/;
        my ($name, @v) = split ' ', $line;
        die "dns record '$line': want NAME ADDR... | NAME servfail | "
            . "NAME drop\n" unless @v && _valid(@v);
        $rec{lc $name} = [@v];
    }
    $self->{records} = \%rec;
    $self->write_records;
    spit($self->query_log, '');
}

sub _valid {
    my @v = @_;
    return 1 if @v == 1 && $v[0] =~ /^(servfail|drop)$/;
    return !grep { !/^\d{1,3}(\.\d{1,3}){3}$/ } @v;
}

# set(NAME, ADDR...) / remove(NAME): one name, the rest kept
sub set {
    my ($self, $name, @v) = @_;
    die "dns_set $name: want ADDR... | servfail | drop\n"
        unless @v && _valid(@v);
    $self->{records}{lc $name} = [@v];
    $self->write_records;
}

sub remove {
    my ($self, $name) = @_;
    delete $self->{records}{lc $name};
    $self->write_records;
}

# written aside and renamed: the responder never reads half a file
sub write_records {
    my ($self) = @_;
    my $r = $self->{records};
    my $file = $self->records_file;
    spit("$file.tmp", join '', map { "$_ @{ $r->{$_} }\n" } sort keys %$r);
    rename "$file.tmp", $file or die "rename $file.tmp: $!\n";
}

# [time, type, name, rcode] of every query answered (or dropped) so far
sub queries {
    my ($self) = @_;
    return map { [split ' ', $_] } split /\n/, slurp($self->query_log) // '';
}

# --- the child ---------------------------------------------------------------

sub serve {
    my ($self, $sock, $parent) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    my $sel = IO::Select->new($sock);
    while (1) {
        # never outlive the test file
        POSIX::_exit(0) if getppid() != $parent;
        next unless $sel->can_read(0.5);
        my $peer = recv($sock, my $pkt, 512, 0);
        next unless defined $peer;
        my ($reply, $log) = $self->answer($pkt);
        if (defined $log) {
            open my $fh, '>>', $self->query_log;
            printf $fh "%.3f %s\n", time, $log;
            close $fh;
        }
        send($sock, $reply, 0, $peer) if defined $reply;
    }
}

sub read_records {
    my ($self) = @_;
    my %rec;
    for (split /\n/, slurp($self->records_file) // '') {
        my ($name, @v) = split ' ';
        $rec{lc $name} = \@v if defined $name;
    }
    return \%rec;
}

# A query's bytes -> (reply bytes or undef, log text or undef)
sub answer {
    my ($self, $pkt) = @_;
    return () if length $pkt < 12;
    my ($id, $flags, $qd) = unpack 'n n n', $pkt;
    return () if $flags & 0x8000;                 # a response, not a query
    my ($name, $end) = parse_name($pkt, 12);
    if ($qd != 1 || !defined $name || length $pkt < $end + 4) {
        return (header($id, $flags, 1, 0, 0), undef);   # FORMERR
    }
    my ($qtype, $qclass) = unpack 'n n', substr $pkt, $end, 4;
    my $question = substr $pkt, 12, $end + 4 - 12;
    my $type = $TYPE{$qtype} // $qtype;
    my $rec = $self->read_records->{lc $name};
    my ($rcode, @addrs) = (0);
    if (!$rec) {
        $rcode = 3;                                   # NXDOMAIN
    } elsif ($rec->[0] eq 'drop') {
        return (undef, "$type $name drop");
    } elsif ($rec->[0] eq 'servfail') {
        $rcode = 2;
    } elsif ($qtype == 1 && $qclass == 1) {
        @addrs = @$rec;
    }
    my $reply = header($id, $flags, $rcode, 1, scalar @addrs) . $question;
    # each answer names the question's name by a pointer to offset 12
    $reply .= pack('n n n N n', 0xC00C, 1, 1, 1, 4) . inet_aton($_)
        for @addrs;
    return ($reply, "$type $name "
                    . ({ 0 => 'NOERROR', 2 => 'SERVFAIL', 3 => 'NXDOMAIN' }
                       ->{$rcode}) . (@addrs ? " @addrs" : ''));
}

# QR, the query's opcode and RD, AA, RA; counts: qd, an (ns, ar 0)
sub header {
    my ($id, $qflags, $rcode, $qd, $an) = @_;
    my $flags = 0x8000 | ($qflags & 0x7800) | 0x0400 | ($qflags & 0x0100)
              | 0x0080 | $rcode;
    return pack 'n6', $id, $flags, $qd, $an, 0, 0;
}

# labels from $off (no compression in a question): (name, offset after it)
sub parse_name {
    my ($pkt, $off) = @_;
    my @labels;
    while (1) {
        return () if $off >= length $pkt;
        my $len = ord substr $pkt, $off, 1;
        $off++;
        last if $len == 0;
        return () if $len > 63 || $off + $len > length $pkt;
        push @labels, substr $pkt, $off, $len;
        $off += $len;
    }
    return (join('.', @labels), $off);
}

# --- a client, for the harness's own checks (the dns_query step) -----------

# query(PORT, NAME, TYPE, TIMEOUT) -> { rcode => NAME, answers => [ADDR...],
# aa => 0|1, ttl => [...] } or { error => text }
sub query {
    my ($port, $name, $type, $timeout) = @_;
    my $qtype = $TYPE_NUM{uc $type} // die "dns query: unknown type $type\n";
    my $id = int rand 65536;
    my $q = pack('n6', $id, 0x0100, 1, 0, 0, 0)
          . join('', map { chr(length) . $_ } split /\./, $name) . "\0"
          . pack('n n', $qtype, 1);
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'udp')
        or return { error => "socket: $!" };
    send($s, $q, 0);
    return { error => 'timeout' }
        unless IO::Select->new($s)->can_read($timeout // 2);
    recv($s, my $r, 512, 0);
    close $s;
    return { error => 'short reply' } if length $r < 12;
    my ($rid, $flags, $qd, $an) = unpack 'n n n n', $r;
    return { error => "id $rid, want $id" } if $rid != $id;
    my (undef, $off) = parse_name($r, 12);
    return { error => 'bad question in reply' } unless defined $off;
    $off += 4;
    my (@answers, @ttl);
    for (1 .. $an) {
        # the name: a pointer (2 bytes) or labels
        if ((ord(substr $r, $off, 1) & 0xC0) == 0xC0) { $off += 2 }
        else { (undef, $off) = parse_name($r, $off) }
        my ($t, $c, $ttl, $len) = unpack 'n n N n', substr $r, $off, 10;
        $off += 10;
        my $data = substr $r, $off, $len;
        $off += $len;
        push @ttl, $ttl;
        push @answers, $t == 1 && $len == 4 ? inet_ntoa($data)
                                            : "type$t:" . unpack 'H*', $data;
    }
    my $rc = $flags & 0xF;
    return { rcode => { 0 => 'NOERROR', 1 => 'FORMERR', 2 => 'SERVFAIL',
                        3 => 'NXDOMAIN' }->{$rc} // "rcode$rc",
             aa => ($flags & 0x0400) ? 1 : 0, answers => \@answers,
             ttl => \@ttl };
}

1;
