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
#
# SOAK_REDIS=sentinel / cluster (see scripts/soak.sh): the Redis topology
# instead of one redis-server, the master SIGKILLed instead of Redis's
# kill and restart (the outage: until each worker is connected to the new
# master and holds fewer than the queue's size), a subscriber on every data
# node; an event lost beyond the counters must be one of the documented
# window's (handed around the kill), any other loss fails.

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
use WsAgent::Redis ();
use WsAgent::Util qw(free_port port_is_free);

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
# single (one redis-server), sentinel (master, replica, three sentinels) or
# cluster (3 masters + 3 replicas): where the events go, and the Redis fault
my $MODE = $ENV{SOAK_REDIS} || 'single';
die "SOAK_REDIS: single, sentinel or cluster, not '$MODE'\n"
    unless $MODE =~ /^(single|sentinel|cluster)$/;
my $USERS = 50;                                # X-User-Id u0 .. u49

$SIG{PIPE} = 'IGNORE';
$| = 1;
make_path("$DIR/logs");

my %port = (nginx => free_port(), backend => free_port(),
            redis => free_port());
my (%pid, @faults);
my $t0 = time;
my $main = $$;

# whatever happens, stop what was started here, by PID
# (nginx first, TERM: a SIGKILLed master would leave its workers running;
# a worker left anyway is killed by its PID)
END {
    if ($$ == $main) {
        my @w = workers();
        stop('nginx', 'TERM');
        for my $w (@w) {
            my $cmd = `cat /proc/$w/cmdline 2>/dev/null` // '';
            kill 'KILL', $w if $cmd =~ /^nginx: worker process/;
        }
        stop($_, 'KILL') for keys %pid;
    }
}
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

# the subscriber's last "S subscribed" time in sub.log (sentinel, cluster:
# when it first carried every channel on every node)
sub subscribed_at {
    my $t = 0;
    my $re = $MODE eq 'single' ? qr/^S subscribed (\S+)/ : qr/^S ready (\S+)/;
    for (lines("$DIR/logs/sub.log")) { $t = $1 if /$re/ }
    return $t;
}

# ------------------------------------------- Sentinel and Cluster topologies
#
# SOAK_REDIS=sentinel: data nodes node1 (the master) and node2 (its
# replica), sentinels sentinel1..3 monitoring "mymaster" (quorum 2,
# down-after 1000 ms).  SOAK_REDIS=cluster: node1..node6 made a cluster by
# redis-cli --cluster create --cluster-replicas 1 (cluster-node-timeout
# 1500 ms).  Every one a redis-server started here (spawn: stopped by PID
# at the end, whatever happens), on a loopback port below 32768 (above is
# the ephemeral range, where this machine's many short connections make a
# port found free collide), a cluster node's bus port (+10000) as well.
# The fault: the master (cluster: the master owning most users' channels)
# SIGKILLed; the sentinels, or the cluster, promote its replica.

my $SENTINEL_NAME = 'mymaster';
my $master_at;      # "127.0.0.1:PORT": the master the faults are about
my (@data_ports, @sentinel_ports);
my %low_given;

sub low_port {
    my ($bus) = @_;
    for (1 .. 500) {
        my $p = 12000 + int rand(($bus ? 22000 : 32000) - 12000);
        next if $low_given{$p} || ($bus && $low_given{$p + 10000});
        next unless port_is_free($p) && (!$bus || port_is_free($p + 10000));
        $low_given{$p} = 1;
        $low_given{$p + 10000} = 1 if $bus;
        return $p;
    }
    die "no free loopback port below 32768\n";
}

# one command to 127.0.0.1:PORT on a fresh connection (closed with RST: no
# TIME_WAIT left behind), its reply (WsAgent::Redis: errors { error }),
# { error } when it does not answer within 2 s
sub port_cmd {
    my ($port, @cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Timeout => 1)
        or return { error => "connect: $!" };
    setsockopt $s, Socket::SOL_SOCKET(), Socket::SO_LINGER(), pack('ii', 1, 0);
    print $s WsAgent::Redis::encode(@cmd);
    my $buf = '';
    my $r = WsAgent::Redis::read_reply($s, \$buf, time + 2);
    close $s;
    return $r;
}

sub node_conf {
    my ($i, $port, @extra) = @_;
    my $d = "$DIR/node$i";
    make_path($d);
    open my $f, '>', "$d/redis.conf" or die "$d/redis.conf: $!\n";
    print $f join "\n", "port $port", 'bind 127.0.0.1', 'save ""',
        'appendonly no', 'daemonize no', "dir $d",
        "logfile $DIR/logs/node$i.log", 'repl-diskless-sync-delay 0', @extra,
        '';
    close $f;
    return "$d/redis.conf";
}

sub node_start {
    my ($i) = @_;
    my $conf = "$DIR/node$i/redis.conf";
    spawn("node$i" => sub { exec 'redis-server', $conf });
}

sub sentinel_start {
    my ($i) = @_;
    my $conf = "$DIR/sentinel$i/sentinel.conf";
    spawn("sentinel$i" => sub { exec 'redis-server', $conf, '--sentinel' });
}

sub wait_for {
    my ($secs, $what, $cond) = @_;
    my $end = time + $secs;
    while (1) {
        return 1 if $cond->();
        die "$what: not within $secs s\n" if time >= $end;
        sleep 0.05;
    }
}

sub pong { my $r = port_cmd($_[0], 'PING'); !ref $r && ($r // '') eq 'PONG' }

sub info_field {
    my ($port, $section, $field) = @_;
    my $r = port_cmd($port, 'INFO', $section);
    return undef if ref $r || !defined $r;
    return $r =~ /^\Q$field\E:(\S*)\r?$/m ? $1 : undef;
}

# [k, v, k, v] -> { k => v }
sub pairs { my ($r) = @_; ref $r eq 'ARRAY' ? {@$r} : {} }

# the master's port as the first sentinel answering says, or undef
sub sentinel_master {
    for my $p (@sentinel_ports) {
        my $r = port_cmd($p, 'SENTINEL', 'get-master-addr-by-name',
                         $SENTINEL_NAME);
        return $r->[1] if ref $r eq 'ARRAY' && defined $r->[1];
    }
    return undef;
}

# '' when all three sentinels name $master, see it as one, know the other
# two sentinels and the replica (linked); else what is missing
sub sentinel_not_ready {
    my ($master, $replica) = @_;
    for my $p (@sentinel_ports) {
        my $a = port_cmd($p, 'SENTINEL', 'get-master-addr-by-name',
                         $SENTINEL_NAME);
        return "sentinel $p names no master" unless ref $a eq 'ARRAY'
            && ($a->[1] // 0) == $master;
        my $m = pairs(port_cmd($p, 'SENTINEL', 'master', $SENTINEL_NAME));
        return "sentinel $p: master flags $m->{flags}"
            unless ($m->{flags} // '') eq 'master';
        return "sentinel $p sees " . ($m->{'num-other-sentinels'} // '?')
               . " other sentinels"
            unless ($m->{'num-other-sentinels'} // 0) == 2;
        my $l = port_cmd($p, 'SENTINEL', 'replicas', $SENTINEL_NAME);
        my ($r) = grep { ($_->{port} // 0) == $replica }
                  map { pairs($_) } ref $l eq 'ARRAY' ? @$l : ();
        return "sentinel $p does not know the replica $replica yet"
            unless $r && $r->{flags} eq 'slave'
                   && $r->{'master-link-status'} eq 'ok';
    }
    return '';
}

sub sentinel_topology {
    @data_ports = map { low_port() } 1 .. 2;
    @sentinel_ports = map { low_port() } 1 .. 3;
    node_conf(1, $data_ports[0]);
    node_conf(2, $data_ports[1], "replicaof 127.0.0.1 $data_ports[0]");
    node_start($_) for 1, 2;
    wait_for(10, 'the data nodes answering', sub { !grep { !pong($_) } @data_ports });
    wait_for(10, 'the replica in sync', sub {
        (info_field($data_ports[1], 'replication', 'master_link_status')
         // '') eq 'up' });
    for my $i (1 .. 3) {
        my $d = "$DIR/sentinel$i";
        make_path($d);
        open my $f, '>', "$d/sentinel.conf" or die;
        print $f join "\n", "port $sentinel_ports[$i - 1]", 'bind 127.0.0.1',
            'daemonize no', "dir $d", "logfile $DIR/logs/sentinel$i.log",
            'sentinel resolve-hostnames no',
            "sentinel monitor $SENTINEL_NAME 127.0.0.1 $data_ports[0] 2",
            "sentinel down-after-milliseconds $SENTINEL_NAME 1000",
            "sentinel failover-timeout $SENTINEL_NAME 6000",
            "sentinel parallel-syncs $SENTINEL_NAME 1", '';
        close $f;
        sentinel_start($i);
    }
    my $why = '';
    eval { wait_for(20, 'the sentinels ready', sub {
        ($why = sentinel_not_ready(@data_ports)) eq '' }) }
        or die "the sentinels not ready after 20 s: $why\n";
    $master_at = "127.0.0.1:$data_ports[0]";
    note "sentinel topology: master 127.0.0.1:$data_ports[0], replica "
         . "127.0.0.1:$data_ports[1], sentinels "
         . join(' ', map { "127.0.0.1:$_" } @sentinel_ports);
}

# CRC16/XMODEM of the key (its {hash tag} when it has a non-empty one)
# mod 16384: Redis Cluster's slot
sub crc16 {
    my $crc = 0;
    for my $c (unpack 'C*', $_[0]) {
        $crc ^= $c << 8;
        for (1 .. 8) {
            $crc = $crc & 0x8000 ? (($crc << 1) ^ 0x1021) & 0xffff
                                 : ($crc << 1) & 0xffff;
        }
    }
    return $crc;
}

sub key_slot {
    my ($k) = @_;
    my $s = index $k, '{';
    if ($s >= 0) {
        my $e = index $k, '}', $s + 1;
        $k = substr $k, $s + 1, $e - $s - 1 if $e > $s + 1;
    }
    return crc16($k) % 16384;
}

sub channels { map { "agent:events:u$_" } 0 .. $USERS - 1 }

# CLUSTER SLOTS from the first node answering it:
# [ [from, to, master port, replica ports...], ... ], or undef
sub cluster_slots {
    for my $p (@_ ? @_ : @data_ports) {
        my $r = port_cmd($p, 'CLUSTER', 'SLOTS');
        next unless ref $r eq 'ARRAY' && @$r;
        return [ map { [ $_->[0], $_->[1], map { $_->[1] } @$_[2 .. $#$_] ] }
                 @$r ];
    }
    return undef;
}

sub slot_owner {
    my ($map, $slot) = @_;
    for (@{ $map || [] }) { return $_ if $slot >= $_->[0] && $slot <= $_->[1] }
    return undef;
}

# '' when every node says the cluster is ok, knows 6 nodes, and the map
# has 3 masters each with an in-sync replica
sub cluster_not_ready {
    for my $p (@data_ports) {
        my $r = port_cmd($p, 'CLUSTER', 'INFO');
        return "node $p: " . WsAgent::Redis::reply_text($r)
            if ref $r || !defined $r;
        return "node $p: not cluster_state:ok"
            unless $r =~ /^cluster_state:ok\r?$/m;
        return "node $p: knows fewer than 6 nodes"
            unless $r =~ /^cluster_known_nodes:6\r?$/m;
    }
    my $map = cluster_slots() or return 'no CLUSTER SLOTS';
    my %m = map { $_->[2] => 1 } @$map;
    return keys(%m) . ' masters' unless keys %m == 3;
    for (@$map) {
        return "slots $_->[0]-$_->[1] have no replica" unless @$_ > 3;
        return "replica $_->[3] not in sync"
            unless (info_field($_->[3], 'replication', 'master_link_status')
                    // '') eq 'up';
    }
    return '';
}

sub cluster_topology {
    @data_ports = map { low_port(1) } 1 .. 6;
    for my $i (1 .. 6) {
        node_conf($i, $data_ports[$i - 1], 'cluster-enabled yes',
                  "cluster-config-file $DIR/node$i/nodes.conf",
                  'cluster-node-timeout 1500');
        node_start($i);
    }
    wait_for(10, 'the cluster nodes answering', sub { !grep { !pong($_) } @data_ports });
    my $log = "$DIR/logs/cluster-create.log";
    my $p = spawn(cluster_create => sub {
        open STDOUT, '>', $log; open STDERR, '>&', \*STDOUT;
        exec 'redis-cli', '--cluster', 'create',
             (map { "127.0.0.1:$_" } @data_ports), '--cluster-replicas', 1,
             '--cluster-yes';
    });
    my $end = time + 30;
    while (time < $end && waitpid($p, WNOHANG) != $p) { sleep 0.1 }
    if (time >= $end) { stop('cluster_create', 'KILL'); die "redis-cli --cluster create: not within 30 s (see $log)\n" }
    delete $pid{cluster_create};
    die "redis-cli --cluster create failed ($?): see $log\n" if $?;
    my $why = '';
    eval { wait_for(20, 'the cluster ready', sub {
        ($why = cluster_not_ready()) eq '' }) }
        or die "the cluster not ready after 20 s: $why\n";
    # the slot function against Redis's own
    for my $ch (channels(), 'a{u1}b', 'x{}y') {
        my $r = port_cmd($data_ports[0], 'CLUSTER', 'KEYSLOT', $ch);
        die "CRC16 slot of $ch: " . key_slot($ch) . ", Redis says "
            . WsAgent::Redis::reply_text($r) . "\n" if $r ne key_slot($ch);
    }
    my $map = cluster_slots();
    note 'cluster topology: ' . join ', ', map {
        "slots $_->[0]-$_->[1] master 127.0.0.1:$_->[2] replica "
        . join(' ', map { "127.0.0.1:$_" } @$_[3 .. $#$_]) } @$map;
}

# the master whose slots hold most of the users' channels
sub cluster_victim {
    my $map = cluster_slots() or return undef;
    my %n;
    $n{ slot_owner($map, key_slot($_))->[2] }++ for channels();
    my ($v) = sort { $n{$b} <=> $n{$a} || $a <=> $b } keys %n;
    return ($v, $n{$v});
}

sub node_index { my ($port) = @_; (grep { $data_ports[$_ - 1] == $port } 1 .. @data_ports)[0] }

sub nginx_conf {
    my $redis = $MODE eq 'sentinel'
        ? "ws_agent_redis sentinel:$SENTINEL_NAME;\n    ws_agent_redis_sentinels "
          . join(' ', map { "127.0.0.1:$_" } @sentinel_ports) . ';'
        : $MODE eq 'cluster'
        ? "ws_agent_redis cluster;\n    ws_agent_redis_cluster "
          . join(' ', map { "127.0.0.1:$_" } @data_ports) . ';'
        : "ws_agent_redis 127.0.0.1:$port{redis};";
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
    $redis
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
        # the workers first: a worker forked after the map was read would
        # have its channel (made before the fork) counted as a connection
        my @w = workers();
        my $own = not_conn_sockets();
        for my $w (@w) {
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

# SOAK_REDIS=sentinel/cluster: one process, a connection per data node.
# Sentinel: PSUBSCRIBE agent:events:* on every data node (a replica
# delivers what it replicates: the events reach the subscriber from both
# nodes, the checks count each (connection, seq) once; after a failover the
# new master's stream goes on).  Cluster: SSUBSCRIBE each user's channel
# on every node serving its slot (master and replica, CLUSTER SLOTS: the
# slot by CRC16), the map read again every 0.5 s and at once when a
# connection closes or Redis unsubscribes a channel (its slot moved):
# after the failover the promoted node carries on.  Lines: "M ID SEQ N
# PORT" per message, "S subscribed PORT TIME" when a connection's
# subscriptions are all confirmed, "S lost PORT TIME", "S unsubscribed PORT
# CHANNEL TIME", and "S ready TIME" the first time every node carries what
# it should.
sub subscriber_nodes {
    open my $log, '>>', "$DIR/logs/sub.log" or die;
    $log->autoflush(1);
    my $cluster = $MODE eq 'cluster';
    my ($cmd, $ack, $msg) = $cluster ? qw(SSUBSCRIBE ssubscribe smessage)
                                     : qw(PSUBSCRIBE psubscribe pmessage);
    my %slot = map { $_ => key_slot($_) } channels();
    my (%c, %want, %retry, $ready);
    my $next_map = 0;
    my $ts = sub { sprintf '%.3f', time };
    while (1) {
        if (time >= $next_map) {
            if ($cluster) {
                # the connected nodes first: a killed one would answer last
                my @order = ((sort keys %c),
                             grep { !$c{$_} } @data_ports);
                if (my $map = cluster_slots(@order)) {
                    %want = ();
                    for my $ch (channels()) {
                        my $o = slot_owner($map, $slot{$ch}) or next;
                        $want{$_}{$ch} = 1 for @$o[2 .. $#$o];
                    }
                }
            } else {
                %want = map { $_ => { 'agent:events:*' => 1 } } @data_ports;
            }
            $next_map = time + 0.5;
        }
        # connect where wanted, subscribe what is missing
        for my $p (sort keys %want) {
            my $x = $c{$p};
            if (!$x) {
                next if ($retry{$p} // 0) > time;
                my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => $p, Timeout => 0.3);
                if (!$s) { $retry{$p} = time + 0.05; next }
                $x = $c{$p} = { s => $s, buf => '', sub => {}, pending => [],
                                told => 0 };
            }
            my @new = grep { !$x->{sub}{$_} } sort keys %{ $want{$p} };
            my %pend = map { $_ => 1 } @{ $x->{pending} };
            @new = grep { !$pend{$_} } @new;
            next unless @new;
            syswrite $x->{s}, join '', map { WsAgent::Redis::encode($cmd, $_) } @new;
            push @{ $x->{pending} }, @new;
            $x->{told} = 0;
        }
        my %by = map { fileno($c{$_}{s}) => $_ } keys %c;
        my @r = IO::Select->new(map { $_->{s} } values %c)->can_read(0.05);
        for my $fh (@r) {
            my $p = $by{fileno $fh} // next;
            my $x = $c{$p};
            my $n = sysread $fh, $x->{buf}, 65536, length $x->{buf};
            if (!$n) {
                next if !defined $n && $!{EAGAIN};
                close $fh;
                delete $c{$p};
                print $log "S lost $p ", $ts->(), "\n";
                $retry{$p} = time + 0.02;
                $next_map = 0;
                next;
            }
            while (my @v = eval { WsAgent::Redis::parse_reply(\$x->{buf}) }) {
                my $r = $v[0];
                if (ref $r eq 'HASH') {        # a refused subscription
                    my $ch = shift @{ $x->{pending} } // '-';
                    print $log "S refused $p $ch $r->{error} ", $ts->(), "\n";
                    $next_map = time + 0.1 if $next_map > time + 0.1;
                    next;
                }
                next unless ref $r eq 'ARRAY';
                my $kind = $r->[0] // '';
                if ($kind eq $ack) {
                    @{ $x->{pending} } = grep { $_ ne $r->[1] } @{ $x->{pending} };
                    $x->{sub}{$r->[1]} = 1;
                } elsif ($kind eq 'sunsubscribe') {
                    delete $x->{sub}{$r->[1]};
                    print $log "S unsubscribed $p $r->[1] ", $ts->(), "\n";
                    $next_map = 0;
                } elsif ($kind eq $msg) {
                    my $m = $r->[-1];
                    my ($id) = $m =~ /"connection_id":"([^"]+)"/;
                    my ($seq) = $m =~ /"seq":(\d+)/;
                    my ($ev) = $m =~ /"event":\{[^{}]*"n":(\d+)/;
                    print $log "M ", $id // '-', ' ', $seq // '-', ' ',
                               $ev // '-', " $p\n";
                }
            }
            if (!@{ $x->{pending} } && !$x->{told} && %{ $x->{sub} }) {
                print $log "S subscribed $p ", $ts->(), "\n";
                $x->{told} = 1;
            }
        }
        if (!$ready && %want && !grep { my $p = $_; !$c{$p}
                || grep { !$c{$p}{sub}{$_} } keys %{ $want{$p} } } keys %want) {
            print $log "S ready ", $ts->(), "\n";
            $ready = 1;
        }
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
                . "X-User-Id: u" . ($seq % $USERS) . "\r\nX-Soak-Id: $sid\r\n\r\n";
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
    . "$QUEUE, Redis $MODE, dir $DIR\n";
if ($MODE eq 'sentinel') { sentinel_topology() }
elsif ($MODE eq 'cluster') { cluster_topology() }
else { redis_start() }
# the run's times from here (the plan below), the topology set up
$t0 = time if $MODE ne 'single';
nginx_conf();
spawn(nginx => sub {
    exec $NGINX, '-p', $DIR, '-c', "$DIR/nginx.conf", '-e',
         "$DIR/logs/error.log";
});
sleep 1;
my @w0 = workers();
die "nginx did not start\n" unless @w0 == 2;
spawn(backend => \&backend);
spawn(subscriber => $MODE eq 'single' ? \&subscriber : \&subscriber_nodes);
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
# A worker connected to Redis: single, its connection; sentinel, to the
# master the sentinels name now ($master_at); cluster, to the master of the
# slots the faults hit ($master_at: the victim, then the promoted replica;
# a worker opens a master's connection as its events need it)
sub worker_up {
    my ($w) = @_;
    return $w->{connected} if $MODE eq 'single';
    return $w->{connected} && ($w->{address} // '') eq $master_at
        if $MODE eq 'sentinel';
    return !!grep { ($_->{address} // '') eq $master_at && $_->{connected} }
           @{ $w->{nodes} || [] };
}

sub watch_back {
    my ($name) = @_;
    my $b = $back{$name} = {};
    for (1 .. 200) {
        my @w = @{ status()->{redis_workers} || [] };
        my $now = time;
        for my $w (@w) {
            my $h = held($name, $w);
            next unless worker_up($w);
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
# Sentinel, cluster: the master SIGKILLed instead (its replica promoted),
# and the pause on the new master.
my @plan = ([0.04, 'reload'], [0.07, 'worker_kill'],
            ($MODE eq 'single' ? ([0.12, 'redis_kill'], [0.22, 'redis_start'])
                               : ([0.12, 'master_kill'])),
            [0.30, 'redis_pause'], [0.75, 'backend_kill']);
my (%win, %before_reload);
# The Redis fault of SOAK_REDIS=sentinel/cluster: the master SIGKILLed by
# PID (the cluster's: the one owning most users' channels); then, every
# 50 ms (bounded, 20 s), the status page (what each worker holds: the
# queue's bound) and, until it happened, the topology: the sentinels name
# another master / CLUSTER SLOTS gives the victim's slots another master;
# until every worker is connected to the new master and holds fewer than
# ws_agent_redis_queue events ($back{failover}: per pid, the first time of
# each).  $win{redis}: [the kill, the switch]; $win{failover}: old, new,
# switch, the victim's slot ranges (cluster).
sub master_kill {
    my ($old, $what);
    if ($MODE eq 'sentinel') {
        $old = sentinel_master() or die "the sentinels name no master\n";
        $what = "the master";
    } else {
        ($old, my $n) = cluster_victim() or die "no cluster map\n";
        $what = "the master of $n of the $USERS users' channels";
        $win{failover}{ranges} = [ map { [ @$_[0, 1] ] }
                                   grep { $_->[2] == $old } @{ cluster_slots() } ];
    }
    $master_at = "127.0.0.1:$old";
    my $i = node_index($old);
    my $p = $pid{"node$i"};
    $win{redis}[0] = time;
    stop("node$i", 'KILL');
    $win{failover}{old} = $old;
    note "fault: $what 127.0.0.1:$old (pid $p) SIGKILLed";
    my $b = $back{failover} = {};
    my ($new, $next_topo) = (undef, 0);
    my $end = time + 20;
    while (time < $end) {
        my @w = @{ status()->{redis_workers} || [] };
        my $now = time;
        $held_samples++;
        for my $w (@w) {
            my $h = held('failover', $w);
            next unless $new && worker_up($w);
            $b->{$w->{pid}}{connected} //= $now;
            $b->{$w->{pid}}{below} //= $now if $h < $QUEUE;
        }
        last if $new && @w && !grep { !defined $b->{$_->{pid}}{below} } @w;
        if (!$new && $now >= $next_topo) {
            my $m;
            if ($MODE eq 'sentinel') {
                $m = sentinel_master();
            } else {
                my $o = slot_owner(cluster_slots(grep { $_ != $old } @data_ports),
                                   $win{failover}{ranges}[0][0]);
                $m = $o && $o->[2];
            }
            if ($m && $m != $old) {
                $new = $m;
                $win{redis}[1] = $win{failover}{switch} = time;
                $win{failover}{new} = $new;
                $master_at = "127.0.0.1:$new";
                note sprintf "fault: %s names 127.0.0.1:%d the master, "
                     . "%.2f s after the kill", $MODE eq 'sentinel'
                     ? 'a sentinel' : 'CLUSTER SLOTS', $new,
                     time - $win{redis}[0];
            }
            $next_topo = $now + 0.1;
        }
        sleep 0.05;
    }
    $win{redis}[1] //= time;
    note 'fault: workers connected to the new master, holding fewer than '
         . "$QUEUE events, after the kill: " . (join(', ',
         map { sprintf '%d %.2f s, %.2f s', $_,
               ($b->{$_}{connected} // 9e9) - $win{redis}[0],
               ($b->{$_}{below} // 9e9) - $win{redis}[0] }
         sort keys %$b) || 'none');
}

for my $step (@plan) {
    my ($at, $what) = @$step;
    my $wait = $t0 + 5.5 + $at * $SECONDS - time;
    if ($win{redis} && !$win{redis}[1]) {
        watch_queue($wait, 'down') if $wait > 0;    # Redis is down
    } else {
        sleep $wait if $wait > 0;
    }
    if ($what eq 'master_kill') {
        master_kill();
    } elsif ($what eq 'redis_kill') {
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
                     values %{ $back{$MODE eq 'single' ? 'down' : 'failover'}
                               || {} };
        sleep $last + 1.5 - time if $last && $last + 1.5 > time;
        $win{pause}[0] = time;
        my $r = $MODE eq 'single'
            ? redis_cmd('CLIENT', 'PAUSE', $PAUSE_MS, 'WRITE')
            : WsAgent::Redis::reply_text(port_cmd(
                  ($master_at =~ /:(\d+)$/)[0], 'CLIENT', 'PAUSE',
                  $PAUSE_MS, 'WRITE')) . " on $master_at";
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
# for the backend), at most its Redis connections are left: single, one;
# sentinel, the master's and the sentinel's; cluster, the seed's and one
# per master connected (the status page's nodes); bounded wait.
my %redis_conns;
sub redis_conns_now {
    %redis_conns = ();
    for my $w (@{ status()->{redis_workers} || [] }) {
        $redis_conns{$w->{pid}} = $MODE eq 'single' ? 1
            : $MODE eq 'sentinel' ? 2
            : 1 + grep { $_->{connected} } @{ $w->{nodes} || [] };
    }
}
stop('sampler');
my $end;
for (1 .. 40) {
    my $own = not_conn_sockets();
    redis_conns_now();
    $end = { map { my $i = worker_fds($_, $own); $i ? ($_ => $i) : () }
             workers() };
    last unless grep { $end->{$_}{conns} > ($redis_conns{$_} // 1) }
                keys %$end;
    sleep 0.25;
}
if (open my $wl, '>>', "$DIR/logs/workers.log") {
    printf $wl "W %.3f %d %d %d %d %d\n", time, $_, @{ $end->{$_} }{qw(rss
           anon fds conns)} for sort keys %$end;
}

stop($_) for qw(subscriber backend);
stop('nginx', 'QUIT');
stop('redis');
# sentinels first: no failover of the nodes stopping
stop($_) for sort grep { /^sentinel\d+$/ } keys %pid;
stop($_) for sort grep { /^node\d+$/ } keys %pid;

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
# per (connection, event): how often it arrived, from the node that
# delivered it most often (sentinel, cluster: each node subscribed delivers
# it, a replica too: a copy from another node is not a resend); seqs per
# connection and node, in the order they arrived
my (%seqs, %per_node, @sub_lost);
for (lines("$DIR/logs/sub.log")) {
    if (/^M (\S+) (\d+) (\d+)(?: (\d+))?/) {
        $per_node{"$1 $3"}{$4 // '-'}++;
        push @{ $seqs{"$1 " . ($4 // '-')} }, $2;
    }
    push @sub_lost, [$1, $2] if /^S lost (\d+) (\S+)/;
}
my $copies = 0;
for my $k (keys %per_node) {
    my @n = sort { $b <=> $a } values %{ $per_node{$k} };
    $got{$k} = $n[0];
    $copies += $_ for @n[1 .. $#n];
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
# (sentinel, cluster: the master killed, until each worker is connected
# to the new one)
my @away;
for my $name ($MODE eq 'single' ? 'down' : 'failover', 'paused') {
    my ($from, $to) = $name ne 'paused' ? @{ $win{redis} || [] }[0, 1]
                                        : @{ $win{pause} || [] }[0, 1];
    next unless defined $to && $back{$name};
    my %w;
    for my $pid (keys %{ $back{$name} }) {
        my $b = $back{$name}{$pid};
        $w{$pid} = [$from - 0.2, ($b->{below} // 9e9) + 0.2, $from + 0.2,
                    ($name ne 'paused' ? $b->{connected} // $to : $to) - 0.2];
    }
    push @away, ["Redis $name", \%w, $from, $to, $name];
}
# cluster: only the events to the slots the faults hit (the killed master's,
# then its replica's, paused) are held for sure while it is away; the
# others go to the other masters (unless they answer CLUSTERDOWN)
my %hit_conn;
if ($MODE eq 'cluster') {
    for my $sid (keys %wsid) {
        my ($seq) = $sid =~ /-(\d+)$/ or next;
        my $slot = key_slot('agent:events:u' . ($seq % $USERS));
        $hit_conn{ $wsid{$sid} } = 1
            if grep { $slot >= $_->[0] && $slot <= $_->[1] }
               @{ $win{failover}{ranges} || [] };
    }
}
# The documented window (sentinel, cluster): events published to the old
# master in its last moments reached only what it delivered before it died;
# those in flight when it died are sent again.  Events handed (backend
# time) from 1 s before the kill to 0.3 s after it (the backend -> nginx ->
# Redis delay on a busy machine) may be lost without a counter.
my @window = $MODE ne 'single' && $win{redis}
           ? ($win{redis}[0] - 1, $win{redis}[0] + 0.3) : ();
my $away = sub {
    my ($t, $pid) = @_;
    grep { my $r = $_->[1]{$pid}; $r && $t >= $r->[0] && $t <= $r->[1] } @away;
};

my ($ev_total, $ev_handed, $ev_got_handed, $lost_surv, $lost_up) = (0) x 5;
my ($lost_killed, $not_handed, %took, %took_in, %lost_in) = (0, 0);
my ($ev_window, $lost_window, $ev_failover_held, $lost_failover) = (0) x 4;
my (@window_lost, %win_lost_in);
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
    my $in_window = @window && $t >= $window[0] && $t <= $window[1];
    $ev_window++ if $in_window;
    for my $a (@in) {
        my $r = $a->[1]{$pid};
        $took{$a->[0]}{$pid}++;
        if ($t >= $r->[2] && $t <= $r->[3]
            && ($MODE ne 'cluster' || $hit_conn{$id})) {
            $took_in{$a->[0]}{$pid}++;
            $ev_failover_held++ if $a->[4] eq 'failover';
            $lost_failover++ if $a->[4] eq 'failover' && !$got{$key};
        }
        next if $got{$key};
        $lost_in{$a->[0]}{$pid}++;
        $win_lost_in{$a->[0]}{$pid}++ if $in_window;
    }
    if ($got{$key}) { $ev_got_handed++; next }
    $lost_surv++;
    if ($in_window) {
        $lost_window++;
        push @window_lost, "event $key (handed at "
            . sprintf('%.2f', $t - $t0) . ' s, ' . sprintf('%+.3f', $t -
            $win{redis}[0]) . " s from the kill)" if @window_lost < 20;
        next;
    }
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
        my ($e, $ein, $lost, $wl) = map { $_->{$a->[0]}{$w} // 0 }
                               \%took, \%took_in, \%lost_in, \%win_lost_in;
        my $hi = $e > $QUEUE ? $e - $QUEUE : 0;
        my $lo = $ein > $QUEUE ? $ein - $QUEUE : 0;
        # it had to drop: then it held exactly QUEUE (it lost no more)
        my $most = $held_win{$a->[4]}{$w} // 0;
        # (sentinel, cluster) beyond that, at most what it lost in the
        # failover's window: the old master's last moments, or drops
        my $kept = $lost >= $lo && $lost <= $hi + $wl
                   && ($lo == 0 || $most == $QUEUE);
        $promise_bad++ unless $kept;
        push @per, "worker $w took in $e ($ein held for sure), held at most "
                   . "$most, lost $lost" . ($wl ? " ($wl handed in the "
                   . "failover's window)" : '') . ", promised $lo to $hi"
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
    my $rc = $redis_conns{$long} // 1;
    push @mem_fail, "worker $long: $e->[4] connections left at its end "
                    . ($rc == 1 ? "(1 is its Redis connection)"
                       : "($rc are its Redis connections)") if $e->[4] > $rc;
}

my $sum = sub { my $t = 0; $t += $_->[$_[0]] for @{ $_[1] }; $t };
print "\n==== soak results ($SECONDS s, dir $DIR)\n";
print "connections: $conns (", sprintf('%.0f', $conns / $SECONDS), "/s); ",
      join(', ', map { "$how{$_} $_" } sort keys %how), "\n";
print "client messages: $msgs sent; lost $lost_msgs; connections out of ",
      "order $reordered; connections exempt (hit by a fault) $exempt\n";
my $pct = sub { $_[1] ? sprintf('%.2f %%', 100 * $_[0] / $_[1]) : '0 %' };
# lost = counted + (at most) what the documented window lost (sentinel,
# cluster; none with a single Redis)
my $unexplained = $lost_surv - $n_counted;
my $accounted = $unexplained >= 0 && $unexplained <= $lost_window;
my $events_ok = !$lost_up && $accounted && !$n_exit
                && !$n_refused && !$promise_bad && !$held_over
                && !$seq_disorder && (!@away || $held_samples);
print "events: $ev_total sent by the backend, $ev_handed of them handed to ",
      "the publisher by the surviving workers ($not_handed not: their ",
      "connections ended first); events_queued_total $n_queued, ",
      "events_published_total $n_published; the subscriber received ",
      "$ev_got ($ev_unique distinct, $seq_dups sent again after a ",
      "reconnect, $seq_disorder out of order", $MODE eq 'single' ? ''
      : "; $copies more copies from a second node subscribed", ")\n";
print "events lost: $lost_surv of $ev_handed handed (",
      $pct->($lost_surv, $ev_handed), "); the module's counters: ",
      "queue_overflow $n_overflow + lost_at_exit $n_exit + redis_error ",
      "$n_refused = $n_counted", $lost_window ? " (+ at most $lost_window "
      . "lost in the failover's window)" : '', ': ',
      $accounted ? ($lost_surv == $n_counted ? 'equal'
                    : "accounted for ($unexplained in the window)")
      : $unexplained > 0 ? 'FEWER (losses nobody counted)'
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
if ($MODE ne 'single') {
    my $f = $win{failover} || {};
    my $bk = $back{failover} || {};
    my ($last_up) = sort { $b <=> $a } map { $_->{connected} // 9e9 }
                    values %$bk;
    printf "Redis failover (%s): master 127.0.0.1:%s SIGKILLed at %.2f s; "
         . "%s 127.0.0.1:%s %.2f s after it; every worker connected to it "
         . "%.2f s after it (%s); events handed in the window (%.1f s to "
         . "%+.1f s around the kill) %d, lost there %d (lost beyond the "
         . "counters: %d); handed while a "
         . "worker was away%s %d, lost %d; the subscriber re-connected %d "
         . "time(s) (%s)\n",
         $MODE, $f->{old} // '?', ($win{redis}[0] // $t0) - $t0,
         $MODE eq 'sentinel' ? 'the sentinels named' : 'CLUSTER SLOTS named',
         $f->{new} // 'NONE', ($f->{switch} // 9e9) - ($win{redis}[0] // 0),
         ($last_up // 9e9) - ($win{redis}[0] // 0),
         join(', ', map { sprintf '%d %.2f s', $_,
                          ($bk->{$_}{connected} // 9e9) - $win{redis}[0] }
                    sort keys %$bk) || 'none',
         @window ? ($window[0] - $win{redis}[0], $window[1] - $win{redis}[0])
                 : (0, 0),
         $ev_window, $lost_window, $unexplained,
         $MODE eq 'cluster' ? " (its slots' events)" : '',
         $ev_failover_held, $lost_failover, scalar @sub_lost,
         join(', ', map { sprintf '%d at %.2f s', $_->[0], $_->[1] - $t0 }
                    @sub_lost) || 'none';
    print "  lost in the window: $_\n" for @window_lost;
    my @sw = grep { /switched master|cluster map|slot \d+ moved|CLUSTERDOWN|TRYAGAIN|not a master|unavailable|connected again/ }
             lines("$DIR/logs/error.log");
    print "  error.log: " . @sw . " Redis lines, e.g.:\n";
    my %seen;
    for (@sw) {
        (my $k = $_) =~ s/^\S+ \S+ \[(\w+)\] \d+#\d+: //;
        $k =~ s/\d+/N/g;
        next if $seen{$k}++;
        print "    $_";
        last if keys %seen >= 12;
    }
}
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
            . ($lost_window ? " (and the failover's window at most "
                              . "$lost_window)" : '')
    if !$accounted;
push @fail, "Redis failover: no new master within 20 s"
    if $MODE ne 'single' && !$win{failover}{new};
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
         && !@mem_fail && ($MODE eq 'single' || $win{failover}{new});
printf "soak: %s (%sclient messages lost %d; events lost %d of %d handed "
     . "(%s), counted %d, %s%s)\n", $ok ? 'PASS' : 'FAIL',
     $MODE eq 'single' ? '' : "Redis $MODE; ", $lost_msgs,
     $lost_surv, $ev_handed, $pct->($lost_surv, $ev_handed), $n_counted,
     $MODE eq 'single' ? '' : "lost beyond the counters $unexplained (in "
     . "the failover's window, where $lost_window were lost), ",
     $promise_bad ? "not what ws_agent_redis_queue $QUEUE promises"
                  : "what ws_agent_redis_queue $QUEUE promises";
exit($ok ? 0 : 1);
