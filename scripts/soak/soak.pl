#!/usr/bin/perl
# Soak and fault run of the gate and the publisher: see scripts/soak.sh.
#
# Processes (all started here, all stopped by PID): redis-server, nginx
# (master + 2 workers, the module loaded), a scripted backend (one event
# loop, random ack delay 0-500 ms, then three agent events), a Redis
# subscriber (PSUBSCRIBE), and client processes, each an event loop that
# keeps opening connections: messages right after the 101 (held by the
# gate), more after the ack, then a clean close or a drop.  Faults, once
# each: Redis killed and restarted, nginx -s reload, a worker SIGKILLed,
# the backend SIGKILLed while connections are gated (and restarted).
# Every side writes one line per fact to its own log; the checks at the end
# read the logs.
#
# Worker memory over ONE lifetime: the faults replace workers (reload,
# SIGKILL), so a start/end comparison of "the workers" compares different
# processes.  A sampler process records every worker's VmRSS, RssAnon,
# descriptors and TCP connections once a second, per pid; the faults are
# scheduled so that one worker (born at the reload, at 4 % of the run)
# lives through nearly all of it, Redis outage and backend kill included.
# For the longest-lived pid the checks compare its RSS after warm-up with
# its RSS at the end, and its descriptors other than TCP connections.
#
# Events: every loss counts.  The access log gives, per connection, the
# worker and how many events it handed to the publisher
# ($ws_agent_events_published); the subscriber says which arrived.  What a
# surviving worker's connections lost must equal the module's loss counters
# (events_dropped_total: queue_overflow + lost_at_exit + redis_error), only
# events handed while Redis was away (down, or paused) may be missing, and
# queue_overflow must be what ws_agent_redis_queue promises: per worker and
# outage, at most the events it took in minus the queue's size (and at
# least that, counted strictly inside the outage: the bound is a bound),
# with queued + in_flight of every worker, sampled during the outages,
# never above it.  Only the SIGKILLed worker's queue goes uncounted (its
# memory went with it): reported, at most the queue's size.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../../t/lib";

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use WsAgent::Frame qw(encode_frame parse_frame ws_accept random_key);
use WsAgent::Util qw(free_port);

my $SECONDS  = $ENV{SOAK_SECONDS} || $ARGV[0] || 600;
my $CLIENTS  = $ENV{SOAK_CLIENTS} || 4;       # client processes
my $RATE     = $ENV{SOAK_RATE} || 60;         # new connections/s per client
my $INFLIGHT = $ENV{SOAK_INFLIGHT} || 80;     # open connections per client
my $NGINX    = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $MODULE   = $ENV{SOAK_MODULE} or die "SOAK_MODULE: the module .so\n";
my $DIR      = $ENV{SOAK_DIR} || tempdir('ws_agent_soak.XXXXXX', TMPDIR => 1);
my $EVENTS   = 3;                              # per connection, after the ack
my $QUEUE    = $ENV{SOAK_QUEUE} || 10000;     # ws_agent_redis_queue
# the longest-lived worker's RSS may grow this much after warm-up (kB)
# "none": RSS is not judged (under ASan its quarantine keeps freed memory)
my $RSS_GROWTH = $ENV{SOAK_RSS_GROWTH_KB} || 2048;

$SIG{PIPE} = 'IGNORE';
$| = 1;
make_path("$DIR/logs");

my %port = (nginx => free_port(), backend => free_port(),
            redis => free_port());
my (%pid, @faults);
my $t0 = time;
my $main = $$;

# whatever happens, stop what was started here, by PID
END { if ($$ == $main) { stop($_, 'KILL') for keys %pid } }
$SIG{INT} = $SIG{TERM} = sub { exit 2 };

sub note { my $m = sprintf "%7.2f (%.2f) %s", time - $t0, time, "@_";
           print "$m\n";
           push @faults, $m }

# ---------------------------------------------------------------- processes

sub spawn {
    my ($name, $code) = @_;
    my $p = fork // die "fork: $!\n";
    if (!$p) { $SIG{TERM} = 'DEFAULT'; $code->(); POSIX::_exit(0) }
    $pid{$name} = $p;
    return $p;
}

sub stop {
    my ($name, $sig) = @_;
    my $p = delete $pid{$name} or return;
    kill $sig // 'TERM', $p;
    for (1 .. 100) { return if waitpid($p, WNOHANG) == $p; sleep 0.05 }
    kill 'KILL', $p;
    waitpid $p, 0;
}

# The subscriber always uses the unix socket, nginx TCP.  closed => 1: the
# TCP port stays closed until open_redis_port(), so after a restart the
# subscriber is back before nginx can publish (else what nginx sends first
# would be lost to the subscriber, and counted by nobody).
my $REDIS_SOCK = "$DIR/redis.sock";

sub redis_start {
    my (%opt) = @_;
    spawn(redis => sub {
        exec 'redis-server', '--port', $opt{closed} ? 0 : $port{redis},
             '--bind', '127.0.0.1', '--unixsocket', $REDIS_SOCK,
             '--unixsocketperm', '700', '--save', '', '--appendonly', 'no',
             '--dir', $DIR, '--logfile', "$DIR/logs/redis.log";
    });
    for (1 .. 100) {
        return if IO::Socket::UNIX->new(Peer => $REDIS_SOCK)
                  && ($opt{closed}
                      || IO::Socket::INET->new("127.0.0.1:$port{redis}"));
        sleep 0.05;
    }
    die "redis did not start\n";
}

# one command over the unix socket; its reply's first line
sub redis_cmd {
    my @args = @_;
    my $s = IO::Socket::UNIX->new(Peer => $REDIS_SOCK) or return "";
    print $s '*' . @args . "\r\n",
             map { '$' . length($_) . "\r\n$_\r\n" } @args;
    my $r = <$s> // '';
    $r =~ s/\r\n$//;
    return $r;
}

# the subscriber's last "S subscribed" time in sub.log
sub subscribed_at {
    my $t = 0;
    for (lines("$DIR/logs/sub.log")) { $t = $1 if /^S subscribed (\S+)/ }
    return $t;
}

sub nginx_conf {
    open my $f, '>', "$DIR/nginx.conf" or die;
    print $f <<"EOF";
load_module $MODULE;
daemon off;
master_process on;
worker_processes 2;
worker_rlimit_nofile 8192;
error_log $DIR/logs/error.log info;
pid $DIR/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp_body;
    proxy_temp_path $DIR/tmp_proxy;
    fastcgi_temp_path $DIR/tmp_fcgi;
    uwsgi_temp_path $DIR/tmp_uwsgi;
    scgi_temp_path $DIR/tmp_scgi;
    ws_agent_redis 127.0.0.1:$port{redis};
    ws_agent_redis_queue $QUEUE;
    log_format soak '\$pid \$ws_agent_connection_id \$ws_agent_events_published';
    server {
        listen 127.0.0.1:$port{nginx} backlog=4096;
        location /ws {
            proxy_pass http://127.0.0.1:$port{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-WS-Connection-Id \$ws_agent_connection_id;
            proxy_read_timeout 60s;
            access_log $DIR/logs/access.log soak;
            ws_agent on;
            ws_agent_ready_timeout 5s;
            ws_agent_user \$http_x_user_id;
            ws_agent_publish agent:events:\$ws_agent_user;
        }
        location = /status { ws_agent_status; }
    }
}
EOF
    close $f;
}

sub workers {
    my $master = $pid{nginx} or return ();
    opendir my $d, '/proc' or return ();
    my @w;
    for my $p (grep { /^\d+$/ } readdir $d) {
        open my $s, '<', "/proc/$p/stat" or next;
        my $st = <$s> // next;
        my ($ppid) = $st =~ /^\d+ \(.*?\) \S (\d+)/ or next;
        push @w, $p if $ppid == $master;
    }
    @w = sort { $a <=> $b } @w;
    return @w;
}

sub proc_info {
    my ($p) = @_;
    my ($rss) = (`cat /proc/$p/status 2>/dev/null` =~ /VmRSS:\s+(\d+)/);
    opendir my $d, "/proc/$p/fd" or return ($rss // 0, 0);
    my $fds = grep { /^\d+$/ } readdir $d;
    return ($rss // 0, $fds);
}

sub sample {
    my ($label) = @_;
    my @w = workers();
    my @s = map { [ $_, proc_info($_) ] } @w;
    my $line = "$label: " . join ', ',
        map { "worker $_->[0] RSS $_->[1] kB, $_->[2] fds" } @s;
    note $line;
    return \@s;
}

# Socket inodes that are not connections: unix sockets (nginx's channel)
# and listening TCP sockets.  Both are made before a worker is forked and
# live as long as it does, so this map is never stale for them, however
# long after it the worker's descriptors are read.
sub not_conn_sockets {
    my %ino;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $t, '<', $f or next;
        <$t>;
        while (<$t>) {
            my @c = split;
            $ino{$c[9]} = 1 if @c > 9 && $c[3] eq '0A';
        }
    }
    if (open my $u, '<', '/proc/net/unix') {
        <$u>;
        while (<$u>) { my @c = split; $ino{$c[6]} = 1 if @c > 6 }
    }
    return \%ino;
}

# one worker now: VmRSS and RssAnon (kB), descriptors, and how many of them
# are TCP connections (any other socket: accepted, connecting to the
# backend or Redis, or reset by its peer and not yet closed); the others
# (logs, listening socket, channel, epoll, eventfd) are the worker's own
# and constant.  undef if it is gone.
sub worker_fds {
    my ($p, $own) = @_;
    open my $s, '<', "/proc/$p/status" or return;
    my %m = map { /^(\w+):\s+(\d+)/ ? ($1, $2) : () } <$s>;
    defined $m{VmRSS} or return;
    opendir my $d, "/proc/$p/fd" or return;
    my ($fds, $conns) = (0, 0);
    for my $fd (grep { /^\d+$/ } readdir $d) {
        my $l = readlink "/proc/$p/fd/$fd" // next;
        $fds++;
        $conns++ if $l =~ /^socket:\[(\d+)\]$/ && !$own->{$1};
    }
    return { rss => $m{VmRSS}, anon => $m{RssAnon} // 0, fds => $fds,
             conns => $conns };
}

# once a second until killed: "W time pid VmRSS RssAnon fds tcp-connections"
sub sampler {
    open my $log, '>>', "$DIR/logs/workers.log" or die;
    $log->autoflush(1);
    while (1) {
        my $next = time + 1;
        my $own = not_conn_sockets();
        for my $w (workers()) {
            my $i = worker_fds($w, $own) or next;
            printf $log "W %.3f %d %d %d %d %d\n", time, $w,
                   @$i{qw(rss anon fds conns)};
        }
        my $left = $next - time;
        sleep $left if $left > 0;
    }
}

sub http_get {
    my ($path) = @_;
    my $s = IO::Socket::INET->new("127.0.0.1:$port{nginx}") or return '';
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    $r =~ s/^.*?\r\n\r\n//s;
    return $r;
}

# ------------------------------------------------------------------ backend

sub backend {
    my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port{backend}",
                                  Listen => 1024, ReuseAddr => 1)
        or die "backend listen: $!\n";
    $l->blocking(0);
    open my $log, '>>', "$DIR/logs/backend.log" or die;
    $log->autoflush(1);
    my $sel = IO::Select->new($l);
    my %c;
    while (1) {
        my $now = time;
        for my $fd (keys %c) {
            my $k = $c{$fd};
            next unless $k->{ack_at} && $now >= $k->{ack_at};
            delete $k->{ack_at};
            my $out = encode_frame('text', '{"type":"connection_ready"}');
            for my $n (1 .. $EVENTS) {
                my $type = (qw(agent_started tool_executing agent_completed))[$n - 1];
                $out .= encode_frame('text',
                    qq({"type":"$type","n":$n,"soak":"$k->{sid}"}));
                print $log "E $k->{wsid} $n ", sprintf('%.3f', time), "\n";
            }
            syswrite $k->{s}, $out;
        }
        for my $s ($sel->can_read(0.01)) {
            if ($s == $l) {
                while (my $n = $l->accept) {
                    $n->blocking(0);
                    setsockopt $n, IPPROTO_TCP, TCP_NODELAY, 1;
                    $sel->add($n);
                    $c{fileno $n} = { s => $n, buf => '', hs => 1 };
                }
                next;
            }
            my $k = $c{fileno $s};
            my $r = sysread $s, my $data, 65536;
            if (!$r) {
                next if !defined $r && $!{EAGAIN};
                printf $log "X %s eof %.3f\n", $k->{sid}, time if $k->{sid};
                $sel->remove($s); delete $c{fileno $s}; close $s;
                next;
            }
            $k->{buf} .= $data;
            if ($k->{hs}) {
                next unless $k->{buf} =~ s/^(.*?)\r\n\r\n//s;
                my $req = $1;
                my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () }
                        split /\r\n/, $req;
                $k->{hs} = 0;
                $k->{sid} = $h{'x-soak-id'} // '-';
                $k->{wsid} = $h{'x-ws-connection-id'} // '-';
                print $log "A $k->{sid} $k->{wsid}\n";
                syswrite $s, "HTTP/1.1 101 Switching Protocols\r\n"
                    . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    . "Sec-WebSocket-Accept: "
                    . ws_accept($h{'sec-websocket-key'} // '') . "\r\n\r\n";
                $k->{ack_at} = time + rand 0.5;
            }
            while (my $f = parse_frame(\$k->{buf})) {
                if ($f->{opcode} == 1) {
                    print $log "R $k->{sid} $f->{payload}\n";
                } elsif ($f->{opcode} == 8) {
                    my $code = length $f->{payload} >= 2
                             ? unpack('n', $f->{payload}) : 0;
                    printf $log "X %s close %d %.3f\n", $k->{sid}, $code, time;
                    syswrite $s, encode_frame('close', $f->{payload});
                    $sel->remove($s); delete $c{fileno $s}; close $s;
                    last;
                }
            }
        }
    }
}

# --------------------------------------------------------------- subscriber

sub subscriber {
    open my $log, '>>', "$DIR/logs/sub.log" or die;
    $log->autoflush(1);
    while (1) {
        my $s = IO::Socket::UNIX->new(Peer => $REDIS_SOCK);
        if (!$s) { sleep 0.05; next }
        print $s "*2\r\n\$10\r\nPSUBSCRIBE\r\n\$14\r\nagent:events:*\r\n";
        print $log "S subscribed ", sprintf('%.3f', time), "\n";
        my $buf = '';
        while (1) {
            my $r = sysread $s, my $d, 65536;
            last unless $r;
            $buf .= $d;
            # pmessage arrays: *4 $8 pmessage $pattern $channel $message
            while ($buf =~ /\A\*(\d+)\r\n/) {
                my $n = $1;
                my $pos = length "*$n\r\n";
                my @items;
                for (1 .. $n) {
                    last unless substr($buf, $pos) =~ /\A([\$:])(-?\d+)\r\n/;
                    my ($t, $len) = ($1, $2);
                    $pos += length("$t$len\r\n");
                    if ($t eq ':') { push @items, $len; next }
                    last if length($buf) < $pos + $len + 2;
                    push @items, substr($buf, $pos, $len);
                    $pos += $len + 2;
                }
                last if @items < $n;
                substr($buf, 0, $pos) = '';
                next unless $items[0] eq 'pmessage';
                my $m = $items[3];
                my ($id) = $m =~ /"connection_id":"([^"]+)"/;
                my ($seq) = $m =~ /"seq":(\d+)/;
                my ($ev) = $m =~ /"event":\{[^{}]*"n":(\d+)/;
                print $log "M ", $id // '-', ' ', $seq // '-', ' ',
                           $ev // '-', "\n";
            }
        }
        print $log "S lost ", sprintf('%.3f', time), "\n";
        sleep 0.1;
    }
}

# ------------------------------------------------------------------ clients

sub client {
    my ($k, $until) = @_;
    srand($$ ^ time);
    open my $log, '>>', "$DIR/logs/client.$k.log" or die;
    $log->autoflush(1);
    my $sel = IO::Select->new;
    my (%c, $seq);
    my $next = time;
    while (time < $until || %c) {
        my $now = time;
        while ($now < $until && $now >= $next && keys %c < $INFLIGHT) {
            $next += 1 / $RATE;
            my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port{nginx}",
                                          Blocking => 1) or do {
                print $log "F connect $!\n"; last;
            };
            $s->blocking(0);
            setsockopt $s, IPPROTO_TCP, TCP_NODELAY, 1;
            my $sid = "c$k-" . ++$seq;
            my $key = random_key();
            syswrite $s, "GET /ws HTTP/1.1\r\nHost: localhost\r\n"
                . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                . "Sec-WebSocket-Key: $key\r\nSec-WebSocket-Version: 13\r\n"
                . "X-User-Id: u" . ($seq % 50) . "\r\nX-Soak-Id: $sid\r\n\r\n";
            $sel->add($s);
            $c{fileno $s} = { s => $s, sid => $sid, buf => '', st => 'hs',
                              t => $now, sent => 0, events => 0,
                              deadline => $now + 15 };
        }
        $next = $now if $next < $now - 1;
        for my $s ($sel->can_read(0.005)) {
            my $x = $c{fileno $s} or next;
            my $r = sysread $s, my $d, 65536;
            if (!$r) {
                next if !defined $r && $!{EAGAIN};
                done($log, $sel, \%c, $x, $x->{st} eq 'closing'
                     ? 'clean' : "eof-in-$x->{st}", '-');
                next;
            }
            $x->{buf} .= $d;
            if ($x->{st} eq 'hs') {
                next unless $x->{buf} =~ s/^(HTTP\/1\.1 (\d+).*?)\r\n\r\n//s;
                if ($2 != 101) {
                    done($log, $sel, \%c, $x, "status-$2", '-');
                    next;
                }
                $x->{st} = 'gated';
                send_msgs($log, $x, 1 + int rand 3);
                if (rand() < 0.15) {
                    done($log, $sel, \%c, $x, 'drop-gated', '-');
                    next;
                }
            }
            while (my $f = parse_frame(\$x->{buf})) {
                if ($f->{opcode} == 8) {
                    my $code = length $f->{payload} >= 2
                             ? unpack('n', $f->{payload}) : 0;
                    if ($x->{st} ne 'closing') {
                        syswrite $s, encode_frame('close', $f->{payload},
                                                  mask => 1);
                    }
                    done($log, $sel, \%c, $x, $x->{st} eq 'closing'
                         ? 'clean' : "closed-by-peer", $code);
                    last;
                }
                next unless $f->{opcode} == 1;
                if ($f->{payload} =~ /connection_ready/) {
                    $x->{st} = 'open';
                    send_msgs($log, $x, 1 + int rand 3);
                } elsif (++$x->{events} == $EVENTS) {
                    if (rand() < 0.1) {
                        done($log, $sel, \%c, $x, 'drop-open', '-');
                        last;
                    }
                    syswrite $s, encode_frame('close', pack('n', 1000),
                                              mask => 1);
                    $x->{st} = 'closing';
                }
            }
        }
        for my $x (values %c) {
            done($log, $sel, \%c, $x, "timeout-in-$x->{st}", '-')
                if time > $x->{deadline};
        }
    }
}

sub send_msgs {
    my ($log, $x, $n) = @_;
    my $out = '';
    for (1 .. $n) {
        my $m = "$x->{sid}:" . ++$x->{sent};
        $out .= encode_frame('text', $m, mask => 1);
        print $log "S $x->{sid} $m\n";
    }
    syswrite $x->{s}, $out;
}

sub done {
    my ($log, $sel, $c, $x, $how, $code) = @_;
    printf $log "C %s %s %s %.3f %.3f\n", $x->{sid}, $how, $code, $x->{t},
                time;
    $sel->remove($x->{s});
    delete $c->{fileno $x->{s}};
    close $x->{s};
}

# --------------------------------------------------------------------- run

print "soak: $SECONDS s, $CLIENTS clients x $RATE conn/s, ws_agent_redis_queue "
    . "$QUEUE, dir $DIR\n";
redis_start();
nginx_conf();
spawn(nginx => sub {
    exec $NGINX, '-p', $DIR, '-c', "$DIR/nginx.conf", '-e',
         "$DIR/logs/error.log";
});
sleep 1;
my @w0 = workers();
die "nginx did not start\n" unless @w0 == 2;
spawn(backend => \&backend);
spawn(subscriber => \&subscriber);
for (1 .. 100) { last if subscribed_at(); sleep 0.05 }
die "the subscriber did not subscribe\n" unless subscribed_at();
sleep 0.5;

my $until = time + $SECONDS;
for my $k (1 .. $CLIENTS) {
    spawn("client$k" => sub { client($k, $until) });
}

spawn(sampler => \&sampler);

# the status location, decoded; {} when it does not answer
sub status {
    my $j = eval { JSON::PP::decode_json(http_get('/status')) };
    return ref $j eq 'HASH' ? $j : {};
}

# While Redis is away: the status page every 0.2 s, the most each worker
# held (queued + in_flight), which ws_agent_redis_queue bounds; per outage
# too, to see that a worker which had to drop held exactly that many.
my (%held_max, %held_win, $held_samples);
sub held {
    my ($name, $w) = @_;
    my $h = $w->{queued} + $w->{in_flight};
    for my $m (\$held_max{$w->{pid}}, \$held_win{$name}{$w->{pid}}) {
        $$m = $h if $h > ($$m // -1);
    }
    return $h;
}

sub watch_queue {
    my ($secs, $name) = @_;
    my $end = time + $secs;
    while (time < $end) {
        held($name, $_) for @{ status()->{redis_workers} || [] };
        $held_samples++;
        my $left = $end - time;
        sleep($left < 0.2 ? $left : 0.2) if $left > 0;
    }
}

# After an outage, bounded (10 s): every 50 ms the status page, until each
# live worker is connected again and holds fewer than ws_agent_redis_queue
# events (from then on a new event finds room: its drops are over); per
# pid, the first time of each
my %back;
sub watch_back {
    my ($name) = @_;
    my $b = $back{$name} = {};
    for (1 .. 200) {
        my @w = @{ status()->{redis_workers} || [] };
        my $now = time;
        for my $w (@w) {
            my $h = held($name, $w);
            next unless $w->{connected};
            $b->{$w->{pid}}{connected} //= $now;
            $b->{$w->{pid}}{below} //= $now if $h < $QUEUE;
        }
        return if @w && !grep { !defined $b->{$_->{pid}}{below} } @w;
        sleep 0.05;
    }
}

sleep 5;
my $rss_start = sample('workers after warm-up');
# Reload first and kill one of the new workers soon after: the other one
# then lives from 4 % of the run to its end, through the Redis outage and
# the backend kill, and its memory can be followed over one lifetime.  The
# worker kill comes before Redis's faults, so every loss the module counts
# is a surviving worker's.  Redis is then killed (down 10 % of the run)
# and, later, paused (CLIENT PAUSE WRITE, 3 % of the run, at least 1 s: it
# reads the PUBLISHes and answers none).
my $PAUSE_MS = int(1000 * ($SECONDS * 0.03 < 1 ? 1 : $SECONDS * 0.03));
my @plan = ([0.04, 'reload'], [0.07, 'worker_kill'], [0.12, 'redis_kill'],
            [0.22, 'redis_start'], [0.30, 'redis_pause'],
            [0.75, 'backend_kill']);
my (%win, %before_reload);
for my $step (@plan) {
    my ($at, $what) = @$step;
    my $wait = $t0 + 5.5 + $at * $SECONDS - time;
    if ($win{redis} && !$win{redis}[1]) {
        watch_queue($wait, 'down') if $wait > 0;    # Redis is down
    } else {
        sleep $wait if $wait > 0;
    }
    if ($what eq 'redis_kill') {
        $win{redis}[0] = time;      # the kill, not the reaping after it
        stop('redis', 'KILL');
        note 'fault: redis-server SIGKILLed';
    } elsif ($what eq 'redis_start') {
        my $start = time;
        redis_start(closed => 1);
        for (1 .. 100) { last if subscribed_at() > $start; sleep 0.05 }
        my $r = redis_cmd('CONFIG', 'SET', 'port', $port{redis});
        $win{redis}[1] = time;      # nginx can reach it from here
        note "fault: redis-server restarted (subscriber first; port open: $r)";
        watch_back('down');
        note 'fault: workers connected to Redis again, holding fewer than '
             . "$QUEUE events, after the port opened: " . join ', ',
             map { sprintf '%d %.2f s, %.2f s', $_,
                   ($back{down}{$_}{connected} // 9e9) - $win{redis}[1],
                   ($back{down}{$_}{below} // 9e9) - $win{redis}[1] }
             sort keys %{ $back{down} };
    } elsif ($what eq 'redis_pause') {
        # apart from the outage's end (once every worker held fewer than
        # the queue again): each loss belongs to one of them
        my ($last) = sort { $b <=> $a } map { $_->{below} // 0 }
                     values %{ $back{down} || {} };
        sleep $last + 1.5 - time if $last && $last + 1.5 > time;
        $win{pause}[0] = time;
        my $r = redis_cmd('CLIENT', 'PAUSE', $PAUSE_MS, 'WRITE');
        $win{pause}[1] = $win{pause}[0] + $PAUSE_MS / 1000;
        note "fault: Redis paused for $PAUSE_MS ms (CLIENT PAUSE WRITE: $r)";
        watch_queue($PAUSE_MS / 1000, 'paused');
        watch_back('paused');
    } elsif ($what eq 'reload') {
        %before_reload = map { $_ => 1 } workers();
        system $NGINX, '-p', $DIR, '-c', "$DIR/nginx.conf", '-e',
               "$DIR/logs/error.log", '-s', 'reload';
        $win{reload} = time;
        note 'fault: nginx -s reload';
    } elsif ($what eq 'worker_kill') {
        # one of the workers the reload started (the old ones may still be
        # finishing their connections)
        my @new = grep { !$before_reload{$_} } workers();
        my ($w) = @new ? @new : workers();
        note 'status before: ' . join ' ', http_get('/status')
            =~ /"(connections_active|connections_gated)":(\d+)/g;
        kill 'KILL', $w;
        $win{worker} = time;
        $win{killed} = $w;
        note "fault: worker $w SIGKILLed";
    } elsif ($what eq 'backend_kill') {
        $win{backend} = time;
        stop('backend', 'KILL');
        note 'fault: backend SIGKILLed';
        sleep 0.3;
        spawn(backend => \&backend);
        note 'fault: backend restarted';
    }
}

for my $k (1 .. $CLIENTS) {
    my $p = delete $pid{"client$k"};
    waitpid $p, 0;
}
note 'clients done';
# the last events reach Redis (bounded: every worker's queue empty) and
# the subscriber
for (1 .. 100) {
    my @w = @{ status()->{redis_workers} || [] };
    last if @w && !grep { $_->{queued} + $_->{in_flight} } @w;
    sleep 0.1;
}
sleep 1;
my $status = http_get('/status');
my $rss_end = sample('workers at the end');

# The end of each worker's life as measured: once its connections are gone
# (a gated connection whose client left waits up to ws_agent_ready_timeout
# for the backend), at most its Redis connection is left; bounded wait.
stop('sampler');
my $end;
for (1 .. 40) {
    my $own = not_conn_sockets();
    $end = { map { my $i = worker_fds($_, $own); $i ? ($_ => $i) : () }
             workers() };
    last unless grep { $_->{conns} > 1 } values %$end;
    sleep 0.25;
}
if (open my $wl, '>>', "$DIR/logs/workers.log") {
    printf $wl "W %.3f %d %d %d %d %d\n", time, $_, @{ $end->{$_} }{qw(rss
           anon fds conns)} for sort keys %$end;
}

stop($_) for qw(subscriber backend);
stop('nginx', 'QUIT');
stop('redis');

# ------------------------------------------------------------------- checks

sub lines { open my $f, '<', $_[0] or return (); return <$f> }

my (%sent, %done, %recv, %wsid, %events, %got, %bx, @fail);
for my $k (1 .. $CLIENTS) {
    for (lines("$DIR/logs/client.$k.log")) {
        if (/^S (\S+) (\S+)/) { push @{ $sent{$1} }, $2 }
        elsif (/^C (\S+) (\S+) (\S+) (\S+) (\S+)/) {
            $done{$1} = { sid => $1, how => $2, code => $3, t0 => $4,
                          t1 => $5 } }
    }
}
for (lines("$DIR/logs/backend.log")) {
    if (/^R (\S+) (\S+)/) { push @{ $recv{$1} }, $2 }
    elsif (/^A (\S+) (\S+)/) { $wsid{$1} = $2 }
    elsif (/^E (\S+) (\d+) (\S+)/) { $events{"$1 $2"} = $3 }
    elsif (/^X (\S+) .* (\d+\.\d+)$/) { $bx{$1} = $2 }
}
my %seqs;
for (lines("$DIR/logs/sub.log")) {
    $got{"$1 $3"}++, push @{ $seqs{$1} }, $2 if /^M (\S+) (\d+) (\d+)/;
}

# a connection is exempt from the loss check when a fault hit it: from its
# start until the backend's ack is due (500 ms) after its end, nginx may
# still hold its frames; and whatever its times, when the backend had not
# finished with it (no "X" line before the fault): its frames may sit
# unread in the killed backend's socket, or in the killed worker (a backend
# slowed by a busy machine acks and reads late)
sub hit {
    my ($d) = @_;
    for my $t (grep { defined } $win{worker}, $win{backend}) {
        return 1 if $d->{t0} <= $t + 0.2 && $d->{t1} + 0.7 >= $t;
        return 1 if $d->{t0} <= $t + 0.2 && ($bx{$d->{sid}} // 9e9) >= $t;
    }
    return 0;
}

my %how;
my ($conns, $msgs, $lost_msgs, $exempt, $reordered) = (0, 0, 0, 0, 0);
for my $sid (sort keys %done) {
    my $d = $done{$sid};
    $conns++;
    $how{$d->{how} . ($d->{code} ne '-' ? " $d->{code}" : '')}++;
    my @s = @{ $sent{$sid} // [] };
    my @r = @{ $recv{$sid} // [] };
    $msgs += @s;
    if (hit($d)) { $exempt++; next }
    next if $d->{how} =~ /^status-/;
    if ("@s" ne "@r") {
        my %in = map { $_ => 1 } @r;
        my $missing = grep { !$in{$_} } @s;
        $lost_msgs += $missing;
        $reordered++ if !$missing;
        push @fail, "$sid ($d->{how} $d->{code}): sent [@s], backend got [@r]"
            if @fail < 20;
    }
}

# ---- events: every loss, against the module's counters and promise
my $st = eval { JSON::PP::decode_json($status) } || {};
my $drop = $st->{events_dropped_total} || {};
my ($n_queued, $n_published) = map { $st->{$_} // 0 }
                               qw(events_queued_total events_published_total);
my ($n_overflow, $n_exit, $n_refused) = map { $drop->{$_} // 0 }
                                        qw(queue_overflow lost_at_exit redis_error);
my $n_counted = $n_overflow + $n_exit + $n_refused;

# per connection (access log): its worker, the events handed to the publisher
my (%worker_of, %handed);
for (lines("$DIR/logs/access.log")) {
    ($worker_of{$2}, $handed{$2}) = ($1, $3) if /^(\d+) (ws_\S+) (\d+)$/;
}

# Redis away, per worker: [from, to] where its drops may happen (the
# edges included: from before the fault until it holds fewer than
# ws_agent_redis_queue again) and [from, to] where every event it takes in
# is held for sure (after the fault, before it is connected again / the
# pause ends); 0.2 s margins for the backend -> nginx delay
my @away;
for my $name (qw(down paused)) {
    my ($from, $to) = $name eq 'down' ? @{ $win{redis} || [] }[0, 1]
                                      : @{ $win{pause} || [] }[0, 1];
    next unless defined $to && $back{$name};
    my %w;
    for my $pid (keys %{ $back{$name} }) {
        my $b = $back{$name}{$pid};
        $w{$pid} = [$from - 0.2, ($b->{below} // 9e9) + 0.2, $from + 0.2,
                    ($name eq 'down' ? $b->{connected} // $to : $to) - 0.2];
    }
    push @away, ["Redis $name", \%w, $from, $to, $name];
}
my $away = sub {
    my ($t, $pid) = @_;
    grep { my $r = $_->[1]{$pid}; $r && $t >= $r->[0] && $t <= $r->[1] } @away;
};

my ($ev_total, $ev_handed, $ev_got_handed, $lost_surv, $lost_up) = (0) x 5;
my ($lost_killed, $not_handed, %took, %took_in, %lost_in) = (0, 0);
for my $key (sort keys %events) {
    $ev_total++;
    my ($id, $n) = split / /, $key;
    my $t = $events{$key};
    if (!exists $handed{$id}) {
        # no access-log line: the SIGKILLed worker's connection
        $lost_killed++ unless $got{$key};
        next;
    }
    if ($n > $handed{$id}) { $not_handed++; next }   # its connection ended first
    $ev_handed++;
    my $pid = $worker_of{$id};
    my @in = $away->($t, $pid);
    for my $a (@in) {
        my $r = $a->[1]{$pid};
        $took{$a->[0]}{$pid}++;
        $took_in{$a->[0]}{$pid}++ if $t >= $r->[2] && $t <= $r->[3];
        $lost_in{$a->[0]}{$pid}++ unless $got{$key};
    }
    if ($got{$key}) { $ev_got_handed++; next }
    $lost_surv++;
    next if @in;
    $lost_up++;
    push @fail, "event $key (handed at " . sprintf('%.2f', $t - $t0)
                . " s, Redis up) never reached the subscriber" if @fail < 40;
}
# a clean close means the client had every event: so had the publisher
for my $sid (grep { $done{$_}{how} eq 'clean' } sort keys %done) {
    my $id = $wsid{$sid} // next;
    next unless exists $handed{$id} && $handed{$id} != $EVENTS;
    push @fail, "$sid ($id): closed cleanly after $EVENTS events, the "
                . "publisher was handed $handed{$id}" if @fail < 40;
    $lost_up++;
}

# what ws_agent_redis_queue promises: a worker that took in E events while
# Redis was away holds QUEUE of them and drops the rest, so it loses at
# most E - QUEUE of them, and at least that many of those it took in
# while they were held for sure
my ($promise_bad, @promise) = (0);
for my $a (@away) {
    my @w = sort keys %{ $a->[1] };
    my @per;
    for my $w (@w) {
        my ($e, $ein, $lost) = map { $_->{$a->[0]}{$w} // 0 }
                               \%took, \%took_in, \%lost_in;
        my $hi = $e > $QUEUE ? $e - $QUEUE : 0;
        my $lo = $ein > $QUEUE ? $ein - $QUEUE : 0;
        # it had to drop: then it held exactly QUEUE (it lost no more)
        my $most = $held_win{$a->[4]}{$w} // 0;
        my $kept = $lost >= $lo && $lost <= $hi
                   && ($lo == 0 || $most == $QUEUE);
        $promise_bad++ unless $kept;
        push @per, "worker $w took in $e ($ein held for sure), held at most "
                   . "$most, lost $lost, promised $lo to $hi"
                   . ($kept ? '' : ': BROKEN');
    }
    push @promise, sprintf "%s %.1f-%.1f s: %s", $a->[0], $a->[2] - $t0,
                   $a->[3] - $t0, join('; ', @per) || 'no worker';
}
my $held_over = grep { $_ > $QUEUE } values %held_max;

my $ev_got = 0;
$ev_got += $_ for values %got;
my $ev_unique = keys %got;
# a seq below one already seen is a resend (after a reconnect) when that
# seq arrived before, out of order otherwise
my ($seq_dups, $seq_disorder) = (0, 0);
for my $id (keys %seqs) {
    my ($max, %seen) = (0);
    for my $q (@{ $seqs{$id} }) {
        if ($seen{$q}++) { $seq_dups++ }
        elsif ($q < $max) { $seq_disorder++ }
        $max = $q if $q > $max;
    }
}

my @alerts = grep { /\[(alert|crit|emerg)\]/
                    && !/worker process \d+ exited on signal 9/ }
             lines("$DIR/logs/error.log");
my $n1014 = grep { /closing with 1014/ } lines("$DIR/logs/error.log");

# ---- one worker's lifetime: the longest-lived pid of workers.log
my %life;      # pid => [ [time, VmRSS, RssAnon, fds, tcp connections], ... ]
for (lines("$DIR/logs/workers.log")) {
    push @{ $life{$2} }, [$1, $3, $4, $5, $6]
        if /^W (\S+) (\d+) (\d+) (\d+) (\d+) (\d+)/;
}
my $span = sub { $life{$_[0]}[-1][0] - $life{$_[0]}[0][0] };
my ($long) = sort { $span->($b) <=> $span->($a) } keys %life;
my (@mem_fail, $mem_line);
if (!$long || @{ $life{$long} } < 3) {
    push @mem_fail, 'no worker lived long enough to be sampled';
} else {
    my @s = @{ $life{$long} };
    my ($born, $last) = ($s[0][0], $s[-1][0]);
    # warm-up: 10 % of its life, and past the Redis outage (the queue it
    # fills, ws_agent_redis_queue events at most, is a one-time high-water
    # mark: glibc keeps freed memory, RSS does not fall back)
    my $warm = $born + 0.1 * ($last - $born);
    for my $back (grep { defined } $win{redis}[1], $win{pause}[1]) {
        $warm = $back + 8 if $back + 8 > $warm && $back + 8 < $last;
    }
    my ($w) = grep { $_->[0] >= $warm } @s;
    my $e = $s[-1];
    # its own descriptors (not connections) never vary in a sound worker:
    # the fewest over its life is the count at its birth
    my $own_min = (sort { $a <=> $b } map { $_->[3] - $_->[4] } @s)[0];
    my $own_max = (sort { $b <=> $a } map { $_->[3] - $_->[4] } @s)[0];
    my $rss_max = (sort { $b <=> $a } map { $_->[1] } @s)[0];
    my $grow = $e->[1] - $w->[1];
    # the WebSocket connections it served after warm-up (one "backend
    # ready" line each, info level), to read the bound per connection
    my $served = 0;
    for (lines("$DIR/logs/error.log")) {
        next unless m{^(\d+)/(\d+)/(\d+) (\d+):(\d+):(\d+) \[info\] $long#\d+: .*: backend ready after};
        $served++ if POSIX::mktime($6, $5, $4, $3, $2 - 1, $1 - 1900)
                     >= int $w->[0];
    }
    my $at = sub { sprintf '%.0f s', $_[0] - $t0 };
    $mem_line = sprintf "worker %d over one lifetime: %.0f s (%s to %s of "
        . "the run, %d samples, %d connections served after warm-up); "
        . "after warm-up (%s): RSS %d kB (anon %d), %d fds = %d "
        . "connections + %d own; at its end (idle): RSS %d kB (anon %d), "
        . "%d fds = %d connections + %d own; RSS %+d kB (%+.1f%%), anon "
        . "%+d kB; max RSS %d kB; own fds over its life %d..%d",
        $long, $last - $born, $at->($born), $at->($last), scalar @s,
        $served, $at->($w->[0]), $w->[1], $w->[2], $w->[3], $w->[4],
        $w->[3] - $w->[4], $e->[1], $e->[2], $e->[3], $e->[4],
        $e->[3] - $e->[4], $grow, 100 * $grow / $w->[1], $e->[2] - $w->[2],
        $rss_max, $own_min, $own_max;
    push @mem_fail, "worker $long: RSS grew $grow kB after warm-up "
                    . "(bound $RSS_GROWTH kB)"
        if $RSS_GROWTH ne 'none' && $grow > $RSS_GROWTH;
    push @mem_fail, "worker $long: " . ($e->[3] - $e->[4]) . " descriptors "
                    . "of its own (not connections) at its end, $own_min at "
                    . "its birth" if $e->[3] - $e->[4] > $own_min;
    push @mem_fail, "worker $long: $e->[4] connections left at its end "
                    . "(1 is its Redis connection)" if $e->[4] > 1;
}

my $sum = sub { my $t = 0; $t += $_->[$_[0]] for @{ $_[1] }; $t };
print "\n==== soak results ($SECONDS s, dir $DIR)\n";
print "connections: $conns (", sprintf('%.0f', $conns / $SECONDS), "/s); ",
      join(', ', map { "$how{$_} $_" } sort keys %how), "\n";
print "client messages: $msgs sent; lost $lost_msgs; connections out of ",
      "order $reordered; connections exempt (hit by a fault) $exempt\n";
my $pct = sub { $_[1] ? sprintf('%.2f %%', 100 * $_[0] / $_[1]) : '0 %' };
my $events_ok = !$lost_up && $lost_surv == $n_counted && !$n_exit
                && !$n_refused && !$promise_bad && !$held_over
                && !$seq_disorder && (!@away || $held_samples);
print "events: $ev_total sent by the backend, $ev_handed of them handed to ",
      "the publisher by the surviving workers ($not_handed not: their ",
      "connections ended first); events_queued_total $n_queued, ",
      "events_published_total $n_published; the subscriber received ",
      "$ev_got ($ev_unique distinct, $seq_dups sent again after a ",
      "reconnect, $seq_disorder out of order)\n";
print "events lost: $lost_surv of $ev_handed handed (",
      $pct->($lost_surv, $ev_handed), "); the module's counters: ",
      "queue_overflow $n_overflow + lost_at_exit $n_exit + redis_error ",
      "$n_refused = $n_counted: ", $lost_surv == $n_counted ? 'equal'
      : $lost_surv > $n_counted ? 'FEWER (losses nobody counted)'
      : 'MORE (drops counted that did not happen)',
      "; lost while Redis was up $lost_up; with the SIGKILLed worker ",
      "$lost_killed (its queue and sockets, uncounted: its memory went ",
      "with it)\n";
print "queue_overflow promised by ws_agent_redis_queue $QUEUE (a worker ",
      "loses what it took in while Redis was away beyond $QUEUE): ",
      join(' | ', @promise) || 'no outage', " => ",
      $promise_bad ? 'BROKEN' : 'kept', "\n";
print "queue bound: most held by a worker (queued + in_flight) in ",
      $held_samples // 0, " samples while Redis was away: ",
      join(', ', map { "worker $_ $held_max{$_}" } sort keys %held_max)
      || 'none', " (bound $QUEUE): ", $held_over ? 'EXCEEDED' : 'kept',
      "\n";
print "1014 closes logged: $n1014\n";
printf "workers (different processes: the faults replace them) RSS start "
     . "%d kB (%s fds), end %d kB (%s fds)\n",
       $sum->(1, $rss_start), join('+', map { $_->[2] } @$rss_start),
       $sum->(1, $rss_end), join('+', map { $_->[2] } @$rss_end);
print "$mem_line\n" if $mem_line;
print "[alert]/[crit]/[emerg] (other than the SIGKILLed worker): ",
      scalar(@alerts), "\n";
print "  $_" for @alerts[0 .. ($#alerts < 9 ? $#alerts : 9)];
print "status: $status\n";
print "faults:\n", map { "  $_\n" } @faults;

push @fail, "events: $lost_surv lost, the counters say $n_counted"
    if $lost_surv != $n_counted;
push @fail, "events: what $promise_bad worker(s) lost while Redis was "
            . "away is not what ws_agent_redis_queue $QUEUE promises"
    if $promise_bad;
push @fail, "events: a worker held more than ws_agent_redis_queue $QUEUE"
    if $held_over;
push @fail, "events: lost_at_exit $n_exit, redis_error $n_refused (no "
            . "worker exits while Redis is away, Redis refuses nothing)"
    if $n_exit || $n_refused;
push @fail, "events: Redis was away but the status page was never read "
            . "meanwhile" if @away && !$held_samples;
push @fail, "events: $seq_disorder arrived out of order" if $seq_disorder;
print "FAIL: $_\n" for @fail, @mem_fail;

my $ok = !$lost_msgs && !$reordered && $events_ok && !@alerts && $conns
         && !@mem_fail;
printf "soak: %s (client messages lost %d; events lost %d of %d handed "
     . "(%s), counted %d, %s)\n", $ok ? 'PASS' : 'FAIL', $lost_msgs,
     $lost_surv, $ev_handed, $pct->($lost_surv, $ev_handed), $n_counted,
     $promise_bad ? "not what ws_agent_redis_queue $QUEUE promises"
                  : "what ws_agent_redis_queue $QUEUE promises";
exit($ok ? 0 : 1);
