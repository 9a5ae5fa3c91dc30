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

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../../t/lib";

use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
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

sub redis_start {
    spawn(redis => sub {
        exec 'redis-server', '--port', $port{redis}, '--bind', '127.0.0.1',
             '--save', '', '--appendonly', 'no', '--dir', $DIR,
             '--logfile', "$DIR/logs/redis.log";
    });
    for (1 .. 100) {
        my $s = IO::Socket::INET->new("127.0.0.1:$port{redis}") and return;
        sleep 0.05;
    }
    die "redis did not start\n";
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
    server {
        listen 127.0.0.1:$port{nginx} backlog=4096;
        location /ws {
            proxy_pass http://127.0.0.1:$port{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header X-WS-Connection-Id \$ws_agent_connection_id;
            proxy_read_timeout 60s;
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
        my $s = IO::Socket::INET->new("127.0.0.1:$port{redis}");
        if (!$s) { sleep 0.1; next }
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

print "soak: $SECONDS s, $CLIENTS clients x $RATE conn/s, dir $DIR\n";
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
sleep 0.5;

my $until = time + $SECONDS;
for my $k (1 .. $CLIENTS) {
    spawn("client$k" => sub { client($k, $until) });
}

spawn(sampler => \&sampler);

sleep 5;
my $rss_start = sample('workers after warm-up');
# Reload first and kill one of the new workers soon after: the other one
# then lives from 4 % of the run to its end, through the Redis outage and
# the backend kill, and its memory can be followed over one lifetime.
my @plan = ([0.04, 'reload'], [0.07, 'worker_kill'], [0.12, 'redis_kill'],
            [0.22, 'redis_start'], [0.75, 'backend_kill']);
my (%win, %before_reload);
for my $step (@plan) {
    my ($at, $what) = @$step;
    my $wait = $t0 + 5.5 + $at * $SECONDS - time;
    sleep $wait if $wait > 0;
    if ($what eq 'redis_kill') {
        $win{redis}[0] = time;      # the kill, not the reaping after it
        stop('redis', 'KILL');
        note 'fault: redis-server SIGKILLed';
    } elsif ($what eq 'redis_start') {
        redis_start();
        $win{redis}[1] = time;
        note 'fault: redis-server restarted';
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
sleep 3;        # the last events reach Redis and the subscriber
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

my ($ev_total, $ev_checked, $ev_lost, $ev_redis_down) = (0, 0, 0, 0);
my %clean = map { ($wsid{$_} // '') => 1 }
            grep { $done{$_}{how} eq 'clean' && !hit($done{$_}) } keys %done;
for my $key (sort keys %events) {
    $ev_total++;
    my ($id) = split / /, $key;
    next unless $clean{$id};
    my $t = $events{$key};
    if ($win{redis} && $t >= $win{redis}[0] - 0.5 && $t <= $win{redis}[1] + 3) {
        $ev_redis_down++;
        next;
    }
    next if $win{worker} && abs($t - $win{worker}) < 1;
    $ev_checked++;
    if (!$got{$key}) {
        $ev_lost++;
        push @fail, "event $key (sent at " . sprintf('%.2f', $t - $t0)
                    . " s) never reached the subscriber" if @fail < 40;
    }
}
my $ev_got = 0;
$ev_got += $_ for values %got;
my $seq_gaps = 0;
for my $id (keys %seqs) {
    my @q = @{ $seqs{$id} };
    for my $i (1 .. $#q) { $seq_gaps++ if $q[$i] <= $q[$i - 1] }
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
    $warm = $win{redis}[1] + 8
        if $win{redis} && $win{redis}[1] + 8 > $warm
           && $win{redis}[1] + 8 < $last;
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
print "events: $ev_total sent by the backend, $ev_got received by the ",
      "subscriber; checked (clean, Redis up) $ev_checked, lost $ev_lost; ",
      "while Redis was down or reconnecting $ev_redis_down; ",
      "seq out of order $seq_gaps\n";
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
print "FAIL: $_\n" for @fail, @mem_fail;

my $ok = !$lost_msgs && !$reordered && !$ev_lost && !@alerts && $conns
         && !@mem_fail;
print $ok ? "soak: PASS\n" : "soak: FAIL\n";
exit($ok ? 0 : 1);
