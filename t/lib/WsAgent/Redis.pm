package WsAgent::Redis;

# A private redis-server for one test file (never the system one), plus
# raw-RESP helpers: one-shot commands and a SUBSCRIBE listener.  It listens
# on 127.0.0.1 unless host => another loopback address (a second Redis on
# 127.0.0.2 can then take the same port: Linux answers on all of 127/8).
# With sentinel => 1 it is a sentinel (redis-server CONF --sentinel: the
# config file is the sentinel's, which it rewrites); WsAgent::Sentinel
# builds its topology from these.
# It may also listen with TLS on tls_port (certificates from WsAgent::Tls),
# while the plain port stays open for the harness and the subscriber, and
# have ACL users made with ACL SETUSER after every start.

use strict;
use warnings;

use IO::Socket::INET;
use IO::Socket::UNIX;
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Util qw(wait_until kill_pid spit slurp);

my $BINARY = $ENV{TEST_NGINX_REDIS_BINARY} || 'redis-server';

sub new {
    my ($class, %opt) = @_;
    mkdir $opt{dir};
    return bless { host => '127.0.0.1', %opt, config => '', unix => 0,
                   tls => '', acl => '' },
                 $class;
}

sub port { $_[0]{port} }
sub host { $_[0]{host} }
sub pid { $_[0]{pid} }
sub tls_port { $_[0]{tls_port} }
sub sock_path { "$_[0]{dir}/redis.sock" }
sub running { !!$_[0]{pid} }

# (Re)starts redis unless it already runs with this extra config.  tls:
# "" (no TLS) or "CERT [auth-clients]", CERT a server certificate of
# WsAgent::Tls ("server", "wrong-server"), auth-clients: clients must show
# a certificate of the good CA.  acl: lines of ACL SETUSER arguments.
sub ensure {
    my ($self, %opt) = @_;
    my $config = $opt{config} // '';
    my $unix = $opt{unix} ? 1 : 0;
    my $tls = $opt{tls} // '';
    my $acl = $opt{acl} // '';
    return 1 if $self->{pid} && $config eq $self->{config}
                && $unix == $self->{unix} && $tls eq $self->{tls}
                && $acl eq $self->{acl};
    $self->stop;
    @$self{qw(config unix tls acl)} = ($config, $unix, $tls, $acl);
    return $self->start;
}

# The redis.conf lines of "CERT [auth-clients]".
sub tls_conf {
    my ($self, $port) = @_;
    my ($cert, @opt) = split ' ', $self->{tls};
    my $pki = $self->{pki} or die "redis tls: no certificates (WsAgent::Tls)\n";
    my %opt = map { $_ => 1 } @opt;
    die "redis tls: unknown option(s) @opt (want auth-clients)\n"
        if grep { $_ ne 'auth-clients' } @opt;
    die "redis tls: no certificate $cert in " . $pki->dir . "\n"
        unless -f $pki->file($cert) && -f $pki->file("$cert.key");
    return "tls-port $port\n"
         . "tls-cert-file " . $pki->file($cert) . "\n"
         . "tls-key-file " . $pki->file("$cert.key") . "\n"
         . "tls-ca-cert-file " . $pki->file('ca') . "\n"
         . "tls-auth-clients " . ($opt{'auth-clients'} ? 'yes' : 'no') . "\n";
}

# With closed => 1 the TCP port stays closed (only the unix socket listens)
# until open_port: a test can get ready before nginx can reach Redis.
sub start {
    my ($self, %opt) = @_;
    return 1 if $self->{pid};
    my $dir = $self->{dir};
    local $self->{unix} = 1 if $opt{closed};
    local $self->{via_unix} = 1 if $opt{closed};
    my $conf = "port " . ($opt{closed} ? 0 : $self->{port})
             . "\nbind $self->{host}\n"
             . ($self->{sentinel} ? '' : "save \"\"\nappendonly no\n")
             . "daemonize no\ndir $dir\n"
             . "logfile $dir/redis.log\n";
    $conf .= "unixsocket " . $self->sock_path . "\nunixsocketperm 777\n"
        if $self->{unix};
    $conf .= $self->tls_conf($opt{closed} ? 0 : $self->{tls_port})
        if $self->{tls} ne '';
    $conf .= "$self->{config}\n";
    spit("$dir/redis.conf", $conf);
    ($self->{password}) = $self->{config} =~ /^\s*requirepass\s+(\S+)/m;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/redis.stdout";
        open STDERR, '>&', \*STDOUT;
        exec $BINARY, "$dir/redis.conf",
             $self->{sentinel} ? '--sentinel' : () or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $up = wait_until(5, sub {
        my $r = eval { $self->command('PING') };
        $r && !(ref $r eq 'HASH' && $r->{error} =~ /^(timeout|connection)/);
    });
    die "redis-server did not come up on $self->{host}:$self->{port}:\n"
        . (slurp("$dir/redis.log") // '') unless $up;
    for my $line (grep { /\S/ } split /\n/, $self->{acl}) {
        my $r = reply_text($self->command('ACL', 'SETUSER', split ' ', $line));
        die "redis ACL SETUSER $line: $r\n" unless $r eq 'OK';
    }
    return 1;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill_pid(delete $self->{pid}, signals => [qw(TERM KILL)], grace => 3);
}

# SIGKILL by PID: no shutdown, no goodbye to clients or replicas.
sub crash {
    my ($self) = @_;
    return unless $self->{pid};
    kill_pid(delete $self->{pid}, signals => ['KILL'], grace => 3);
}

sub open_port {
    my ($self) = @_;
    local $self->{via_unix} = 1;
    my $r = $self->command('CONFIG', 'SET', 'port', $self->{port},
        $self->{tls} ne '' ? ('tls-port', $self->{tls_port}) : ());
    die "cannot open redis port: " . reply_text($r) . "\n"
        unless reply_text($r) eq 'OK';
}

sub connect {
    my ($self) = @_;
    if ($self->{via_unix}) {
        my $u = IO::Socket::UNIX->new(Peer => $self->sock_path, Timeout => 2)
            or die "cannot connect to redis on " . $self->sock_path
                   . ": $!\n";
        return $u;
    }
    my $s = IO::Socket::INET->new(PeerAddr => $self->{host},
        PeerPort => $self->{port}, Proto => 'tcp', Timeout => 2)
        or die "cannot connect to redis on $self->{port}: $!\n";
    return $s;
}

sub encode {
    my @args = @_;
    return '*' . @args . "\r\n"
         . join '', map { '$' . length($_) . "\r\n$_\r\n" } @args;
}

# One reply off the front of $$buf: (value) or () if incomplete. Errors are
# { error => text }, arrays are array refs.
sub parse_reply {
    my ($buf) = @_;
    my $pos = 0;
    my @v = _parse($buf, \$pos) or return ();
    substr($$buf, 0, $pos) = '';
    return @v;
}

sub _parse {
    my ($buf, $pos) = @_;
    my $eol = index $$buf, "\r\n", $$pos;
    return () if $eol < 0;
    my $type = substr $$buf, $$pos, 1;
    my $line = substr $$buf, $$pos + 1, $eol - $$pos - 1;
    my $next = $eol + 2;
    if ($type eq '+' || $type eq ':') { $$pos = $next; return ($line) }
    if ($type eq '-') { $$pos = $next; return ({ error => $line }) }
    if ($type eq '$') {
        if ($line < 0) { $$pos = $next; return (undef) }
        return () if length($$buf) < $next + $line + 2;
        $$pos = $next + $line + 2;
        return (substr $$buf, $next, $line);
    }
    if ($type eq '*') {
        my $p = $next;
        my @items;
        for (1 .. $line) {
            my @v = _parse($buf, \$p) or return ();
            push @items, $v[0];
        }
        $$pos = $p;
        return ([@items]);
    }
    die "bad RESP from redis: '$type$line'\n";
}

sub read_reply {
    my ($sock, $buf, $deadline) = @_;
    while (1) {
        my @v = parse_reply($buf);
        return $v[0] if @v;
        my $left = $deadline - time;
        return { error => 'timeout' } if $left <= 0;
        next unless IO::Select->new($sock)->can_read($left);
        my $n = sysread $sock, $$buf, 65536, length $$buf;
        return { error => 'connection closed' } unless $n;
    }
}

# command(ARGS) -> reply, on a fresh connection (authenticating if needed)
sub command {
    my ($self, @args) = @_;
    my $s = $self->connect;
    my $buf = '';
    if (defined $self->{password}) {
        print $s encode('AUTH', $self->{password});
        read_reply($s, \$buf, time + 2);
    }
    print $s encode(@args);
    my $r = read_reply($s, \$buf, time + 2);
    close $s;
    return $r;
}

sub reply_text {
    my ($r) = @_;
    return 'nil' unless defined $r;
    return "(error) $r->{error}" if ref $r eq 'HASH';
    return '[' . join(', ', map { reply_text($_) } @$r) . ']' if ref $r;
    return $r;
}


package WsAgent::Redis::Subscriber;

# SUBSCRIBE to channels before the client runs; collect messages after.

use Time::HiRes qw(time sleep);

sub new {
    my ($class, $redis, @channels) = @_;
    my $self = bless { redis => $redis, channels => \@channels,
                       messages => [] }, $class;
    # a Redis that is down now is subscribed to by the redis_start step
    $self->subscribe if $redis->running;
    return $self;
}

# (Re)connects and subscribes; messages collected so far are kept, so a
# block can restart Redis in the middle (redis_stop / redis_start steps).
sub subscribe {
    my ($self, %opt) = @_;
    my ($redis, @channels) = ($self->{redis}, @{ $self->{channels} });
    local $redis->{via_unix} = 1 if $opt{via_unix};
    my $sock = $redis->connect;
    @$self{qw(sock buf)} = ($sock, '');
    if (defined $redis->{password}) {
        print $sock WsAgent::Redis::encode('AUTH', $redis->{password});
        WsAgent::Redis::read_reply($sock, \$self->{buf}, time + 2);
    }
    print $sock WsAgent::Redis::encode('SUBSCRIBE', @channels);
    for (@channels) {
        my $r = WsAgent::Redis::read_reply($sock, \$self->{buf}, time + 2);
        die "SUBSCRIBE failed: " . WsAgent::Redis::reply_text($r) . "\n"
            unless ref $r eq 'ARRAY' && $r->[0] eq 'subscribe';
    }
}

# Takes in what has arrived within $secs (before Redis is stopped).
sub drain {
    my ($self, $secs) = @_;
    return unless $self->{sock};
    $self->collect(1e9, $secs, 0);
}

# Reads until $count messages arrived or $timeout passed, then $grace more
# seconds to catch extra ones. Returns [channel, message] pairs.
sub collect {
    my ($self, $count, $timeout, $grace) = @_;
    return @{ $self->{messages} } unless $self->{sock};
    my $deadline = time + $timeout;
    my $msgs = $self->{messages};
    while (1) {
        my $end = @$msgs >= $count ? time + $grace : $deadline;
        my $r = WsAgent::Redis::read_reply($self->{sock}, \$self->{buf}, $end);
        last if ref $r eq 'HASH';      # timeout or closed
        push @$msgs, [$r->[1], $r->[2]] if ref $r eq 'ARRAY' && $r->[0] eq 'message';
        last if @$msgs > $count;
    }
    return @$msgs;
}

sub close { close $_[0]{sock} if $_[0]{sock} }

1;
