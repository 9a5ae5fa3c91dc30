package WsAgent::Cluster;

# A private Redis Cluster for one test file: 3 masters and 3 replicas
# (redis-server 7, cluster-enabled, one directory and nodes.conf each, in
# the plug-in's directory), made with `redis-cli --cluster create
# --cluster-replicas 1` and waited on until every node says
# cluster_state:ok, agrees on the slots and every replica's link is up.
# Ports (and the cluster bus ports, cluster-port) are below 32768, away
# from the kernel's ephemeral range.  Every node is started and stopped by
# its PID (WsAgent::Redis does that), also when a block fails.
#
# What the tests need around it:
#   key_slot(CHANNEL)      CRC16 (XMODEM) mod 16384 of the key, honouring
#                          {hash tags}, as Redis's keyHashSlot
#   map / owner / shard    CLUSTER SLOTS and CLUSTER NODES from a live node
#   move_slot              one slot to another master: SETSLOT IMPORTING /
#                          MIGRATING, MIGRATE of its keys, SETSLOT NODE
#   reshard_cli            N slots with `redis-cli --cluster reshard`
#   failover / kill_node   CLUSTER FAILOVER on a replica; SIGKILL of a master
#   stop_node / start_node TERM then KILL, by PID; the same config again
#   restore                every node up again and the cluster ok (after a block)
# and WsAgent::Cluster::Subscriber (below): SSUBSCRIBE on the owner's shard,
# following the slots as they move.

use strict;
use warnings;

use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Redis;
use WsAgent::Util qw(free_port wait_until kill_pid slurp spit);

my $CLI = $ENV{TEST_NGINX_REDIS_CLI} || 'redis-cli';
my $SLOTS = 16384;

# --- CRC16 (XMODEM: poly 0x1021, init 0), as Redis's crc16.c ----------------

my @CRC_TABLE = map {
    my $crc = $_ << 8;
    for (1 .. 8) {
        $crc = $crc & 0x8000 ? (($crc << 1) ^ 0x1021) & 0xffff
                             : ($crc << 1) & 0xffff;
    }
    $crc;
} 0 .. 255;

sub crc16 {
    my ($bytes) = @_;
    my $crc = 0;
    for my $b (unpack 'C*', $bytes) {
        $crc = (($crc << 8) & 0xffff) ^ $CRC_TABLE[(($crc >> 8) ^ $b) & 0xff];
    }
    return $crc;
}

# keyHashSlot: the part between the first "{" and the next "}" when that
# is not empty, else the whole key.
sub key_slot {
    my ($key) = @_;
    my $open = index $key, '{';
    if ($open >= 0) {
        my $close = index $key, '}', $open + 1;
        $key = substr $key, $open + 1, $close - $open - 1
            if $close > $open + 1;
    }
    return crc16($key) & ($SLOTS - 1);
}

# --- the nodes ---------------------------------------------------------------

sub new {
    my ($class, %opt) = @_;
    mkdir $opt{dir};
    my $self = bless { masters => 3, replicas => 1, node_timeout => 1000,
                       config => '', %opt }, $class;
    my $n = $self->{masters} * (1 + $self->{replicas});
    for my $i (1 .. $n) {
        my ($port, $bus) = (free_port(below => 32768), free_port(below => 32768));
        push @{ $self->{nodes} }, WsAgent::Redis->new(port => $port,
            dir => "$self->{dir}/node$i", config => '', bus_port => $bus,
            index => $i);
    }
    return $self;
}

sub ports { map { $_->port } @{ $_[0]{nodes} } }
sub node { my ($self, $port) = @_;
           (grep { $_->port == $port } @{ $self->{nodes} })[0]
               // die "cluster: no node on port $port\n" }
sub running { !!$_[0]{created} }
sub live_ports { map { $_->port } grep { $_->running } @{ $_[0]{nodes} } }

sub node_config {
    my ($self, $node) = @_;
    return "cluster-enabled yes\ncluster-config-file nodes.conf\n"
         . "cluster-node-timeout $self->{node_timeout}\n"
         . "cluster-port $node->{bus_port}\n"
         . "cluster-replica-validity-factor 0\n$self->{config}\n";
}

# INT, TERM or HUP to the test file still stops the nodes (END runs on
# exit); a forked child (backend, client) dies of it as before.
sub exit_on_signals {
    my $main = $$;
    for my $sig (qw(INT TERM HUP)) {
        next if $SIG{$sig};
        $SIG{$sig} = sub {
            exit 128 + ($sig eq 'INT' ? 2 : $sig eq 'TERM' ? 15 : 1)
                if $$ == $main;
            $SIG{$sig} = 'DEFAULT';
            kill $sig, $$;
        };
    }
}

# Starts the nodes and makes the cluster once; later calls only restore.
sub start {
    my ($self) = @_;
    return $self->restore if $self->{created};
    exit_on_signals();
    for my $node (@{ $self->{nodes} }) {
        $node->{config} = $self->node_config($node);
        $node->start;
    }
    my @addr = map { "127.0.0.1:" . $_->port } @{ $self->{nodes} };
    my ($rc, $out) = run_cmd({}, 60, $CLI, '--cluster', 'create', @addr,
        '--cluster-replicas', $self->{replicas}, '--cluster-yes');
    spit("$self->{dir}/create.log", $out);
    die "redis-cli --cluster create failed ($rc):\n$out\n" if $rc;
    $self->{created} = 1;
    $self->wait_ok(30) or die "the cluster did not become ok within 30 s:\n"
                              . $self->why_not_ok . "\n";
    return 1;
}

sub stop_all {
    my ($self) = @_;
    $_->stop for @{ $self->{nodes} };
}

# Every node up again (after a block killed or stopped one), the cluster ok.
sub restore {
    my ($self) = @_;
    my $started = 0;
    for my $node (grep { !$_->running } @{ $self->{nodes} }) {
        $node->start;
        $started++;
    }
    return 1 if !$started && $self->is_ok;
    $self->wait_ok(30) or die "the cluster is not ok again within 30 s:\n"
                              . $self->why_not_ok . "\n";
    return 1;
}

# A command on the node at $port (a fresh connection, 2 s).
sub cmd {
    my ($self, $port, @args) = @_;
    my $node = $self->node($port);
    return { error => 'connection refused (not running)' } unless $node->running;
    my $r = eval { $node->command(@args) };
    return $r // { error => "connection: $@" };
}

sub text { WsAgent::Redis::reply_text($_[0]) }

# CLUSTER NODES of a live node: { port => {id, port, master (bool), fail,
# master_id, slots => [[from, to], ...]} }, myself first asked at $port.
sub nodes {
    my ($self, $port) = @_;
    for my $p (defined $port ? $port : (), $self->live_ports) {
        my $r = $self->cmd($p, 'CLUSTER', 'NODES');
        next if ref $r;
        my %n;
        for my $line (split /\n/, $r) {
            my ($id, $addr, $flags, $master, undef, undef, undef, $link, @slots)
                = split ' ', $line;
            my ($nport) = $addr =~ /:(\d+)/ or next;
            $n{$nport} = { id => $id, port => $nport,
                master => $flags =~ /\bmaster\b/ ? 1 : 0,
                fail => $flags =~ /\bfail\b/ ? 1 : 0,
                pfail => $flags =~ /\bfail\?/ ? 1 : 0,
                master_id => $master eq '-' ? undef : $master,
                slots => [map { /^(\d+)(?:-(\d+))?$/ ? [$1, $2 // $1] : () }
                          @slots] };
        }
        return \%n;
    }
    die "cluster: no node answers CLUSTER NODES\n";
}

sub id_of { my ($self, $port) = @_; $self->nodes->{$port}{id} }

# CLUSTER SLOTS of the node at $port (or of the first live one):
# [[from, to, master port, replica ports...], ...] sorted by slot.
sub slot_ranges {
    my ($self, $port) = @_;
    for my $p (defined $port ? $port : (), $self->live_ports) {
        my $r = $self->cmd($p, 'CLUSTER', 'SLOTS');
        next unless ref $r eq 'ARRAY';
        return [sort { $a->[0] <=> $b->[0] }
                map { [$_->[0], $_->[1], map { $_->[1] } @$_[2 .. $#$_]] } @$r];
        last if defined $port;
    }
    return [];
}

# The master port owning $slot (from the node at $port, or any live one).
sub owner_of_slot {
    my ($self, $slot, $port) = @_;
    for my $r (@{ $self->slot_ranges($port) }) {
        return $r->[2] if $slot >= $r->[0] && $slot <= $r->[1];
    }
    return undef;
}

sub owner { my ($self, $ch) = @_; $self->owner_of_slot(key_slot($ch)) }

# The masters that own slots, by port.
sub masters {
    my ($self) = @_;
    my %m = map { $_->[2] => 1 } @{ $self->slot_ranges };
    return sort { $a <=> $b } keys %m;
}

# A master and its live replicas (as CLUSTER NODES says): the nodes that
# deliver a sharded message published on that master.
sub shard {
    my ($self, $master) = @_;
    my $n = $self->nodes;
    my $id = $n->{$master}{id} // return ($master);
    my %live = map { $_ => 1 } $self->live_ports;
    return ($master, sort { $a <=> $b } grep { $live{$_} }
            map { $_->{port} } grep { ($_->{master_id} // '') eq $id }
            values %$n);
}

sub replicas_of {
    my ($self, $master) = @_;
    my @s = $self->shard($master);
    shift @s;
    return @s;
}

# The next master after $port's (by port, round), for "to next".
sub next_master {
    my ($self, $port) = @_;
    my @m = $self->masters;
    my ($i) = grep { $m[$_] == $port } 0 .. $#m;
    return $m[defined $i ? ($i + 1) % @m : 0];
}

# ok: every running node says cluster_state:ok, they agree on the slots
# (all 16384 covered by live masters) and every live replica's link is up.
sub why_not_ok {
    my ($self) = @_;
    my ($ref, @why);
    my %live = map { $_ => 1 } $self->live_ports;
    for my $p ($self->live_ports) {
        my $info = $self->cmd($p, 'CLUSTER', 'INFO');
        if (ref $info || $info !~ /cluster_state:ok/) {
            push @why, "$p: " . (ref $info ? text($info)
                                 : $info =~ /(cluster_state:\w+)/ ? $1 : '?');
            next;
        }
        my $ranges = join ',', map { "$_->[0]-$_->[1]\@$_->[2]" }
                               @{ $self->slot_ranges($p) };
        $ref //= $ranges;
        push @why, "$p: slots differ ($ranges vs $ref)" if $ranges ne $ref;
        my $n = 0;
        for (split /,/, $ranges) {
            my ($a, $b, $m) = /^(\d+)-(\d+)\@(\d+)$/;
            $n += $b - $a + 1;
            push @why, "$p: slot $a-$b on a master not running ($m)"
                unless $live{$m};
        }
        push @why, "$p: $n slots covered" if $n != $SLOTS;
        my $repl = $self->cmd($p, 'INFO', 'replication');
        push @why, "$p: replica link not up"
            if !ref $repl && $repl =~ /role:slave/
               && $repl !~ /master_link_status:up/;
    }
    return join "\n", @why;
}

sub is_ok { $_[0]->why_not_ok eq '' }

sub wait_ok {
    my ($self, $secs) = @_;
    return wait_until($secs // 10, sub { sleep 0.05; $self->is_ok });
}

# Moves $slot to the master at $to: IMPORTING on it, MIGRATING on the
# owner, the slot's keys MIGRATEd, SETSLOT NODE on $to, then $before->()
# (a subscriber subscribes at $to: Redis 7.0 answers MOVED to SSUBSCRIBE on
# an IMPORTING slot, even after ASKING), then SETSLOT NODE on the owner and
# every other master, as redis-cli does.  Returns the old owner's port.
# $hold->() runs once the keys have gone and before SETSLOT NODE: the
# window where the owner answers ASK for them (a reshard of many keys
# holds it open for long), its sharded channels still served there.
sub move_slot {
    my ($self, $slot, $to, $before, $hold) = @_;
    my $from = $self->owner_of_slot($slot) // die "slot $slot has no owner\n";
    return $from if $from == $to;
    my $n = $self->nodes;
    my ($fid, $tid) = ($n->{$from}{id}, $n->{$to}{id});
    die "slot $slot: $to is not a master\n" unless $n->{$to}{master};
    my $ok = sub {
        my ($port, @args) = @_;
        my $r = $self->cmd($port, @args);
        die "@args on $port: " . text($r) . "\n" unless text($r) eq 'OK';
    };
    $ok->($to, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $fid);
    $ok->($from, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $tid);
    while (1) {
        my $keys = $self->cmd($from, 'CLUSTER', 'GETKEYSINSLOT', $slot, 100);
        last unless ref $keys eq 'ARRAY' && @$keys;
        my $r = $self->cmd($from, 'MIGRATE', '127.0.0.1', $to, '', 0, 5000,
                           'KEYS', @$keys);
        die "MIGRATE on $from: " . text($r) . "\n" if ref $r;
    }
    $hold->() if $hold;
    # $to owns the slot from here; $from still serves SPUBLISH for it (a
    # MIGRATING slot's sharded channels stay on the source until it is
    # told) for the millisecond $before->() takes to subscribe at $to
    $ok->($to, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    $before->($from, $to) if $before;
    $ok->($from, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    for my $m (grep { $_ != $from && $_ != $to } $self->masters) {
        $self->cmd($m, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $tid);
    }
    return $from;
}

# `redis-cli --cluster reshard` of $count slots from the master at $from to
# the one at $to (60 s at most).  redis-cli takes the source's lowest slots.
sub reshard_cli {
    my ($self, $count, $from, $to, $tick) = @_;
    my $n = $self->nodes;
    my ($rc, $out) = run_cmd({ tick => $tick }, 60, $CLI, '--cluster', 'reshard', "127.0.0.1:$from",
        '--cluster-from', $n->{$from}{id}, '--cluster-to', $n->{$to}{id},
        '--cluster-slots', $count, '--cluster-yes');
    open my $log, '>>', "$self->{dir}/reshard.log";
    print $log $out;
    return ($rc, $out);
}

# The first $count slots of $from, the ones reshard_cli moves.
sub first_slots {
    my ($self, $from, $count) = @_;
    my @s;
    for my $r (grep { $_->[2] == $from } @{ $self->slot_ranges }) {
        push @s, $r->[0] .. $r->[1];
    }
    return @s[0 .. ($count > @s ? $#s : $count - 1)];
}

# CLUSTER FAILOVER on a replica of the master at $master; waits (bounded)
# until that replica is the master of the slots.  Returns the new master.
sub failover {
    my ($self, $master, $secs) = @_;
    my ($replica) = $self->replicas_of($master)
        or die "the master at $master has no live replica\n";
    my $r = $self->cmd($replica, 'CLUSTER', 'FAILOVER');
    die "CLUSTER FAILOVER on $replica: " . text($r) . "\n" unless text($r) eq 'OK';
    wait_until($secs // 10, sub {
        sleep 0.05;
        my $role = $self->cmd($replica, 'ROLE');
        ref $role eq 'ARRAY' && $role->[0] eq 'master'
            && !grep { $_->[2] == $master } @{ $self->slot_ranges($replica) };
    }) or die "CLUSTER FAILOVER: $replica is not the master after "
              . ($secs // 10) . " s\n" . $self->why_not_ok . "\n";
    return $replica;
}

# SPUBLISH calls the node at $port served (INFO commandstats, since its
# start or CONFIG RESETSTAT), undef if it does not answer.
sub spublish_calls {
    my ($self, $port) = @_;
    my $r = $self->cmd($port, 'INFO', 'commandstats');
    return undef if ref $r;
    return $r =~ /cmdstat_spublish:calls=(\d+)/ ? $1 : 0;
}

# SIGKILL of the node at $port (by its PID): no goodbye to anyone.
sub kill_node {
    my ($self, $port) = @_;
    my $node = $self->node($port);
    my $pid = delete $node->{pid} or die "node $port is not running\n";
    kill_pid($pid, signals => ['KILL'], grace => 3);
    return $pid;
}

sub stop_node { $_[0]->node($_[1])->stop; 1 }
sub start_node { $_[0]->node($_[1])->start }

# Waits until the slots of $dead have a live master (a replica promoted).
sub wait_promoted {
    my ($self, $dead, $secs) = @_;
    my %live;
    return wait_until($secs // 15, sub {
        sleep 0.05;
        %live = map { $_ => 1 } $self->live_ports;
        my $ranges = $self->slot_ranges;
        my $n = 0;
        $n += $_->[1] - $_->[0] + 1 for grep { $live{$_->[2]} } @$ranges;
        $n == $SLOTS;
    });
}

# Runs a command with a deadline (killed by PID after it): (exit code,
# output).  { tick => CODE }: called every 20 ms or so while it runs.
sub run_cmd {
    my ($opt, $secs, @cmd) = @_;
    pipe my $r, my $w or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $r;
        open STDOUT, '>&', $w;
        open STDERR, '>&', $w;
        open STDIN, '<', '/dev/null';
        exec @cmd or POSIX::_exit(127);
    }
    close $w;
    my ($out, $deadline) = ('', time + $secs);
    my $sel = IO::Select->new($r);
    while (time < $deadline) {
        my $wait = $deadline - time;
        $wait = 0.02 if $opt->{tick} && $wait > 0.02;
        if ($sel->can_read($wait)) {
            last unless sysread $r, $out, 65536, length $out;
        }
        $opt->{tick}->() if $opt->{tick};
    }
    # its output ended: it exits now (or has to be killed at the deadline)
    my $rc;
    my $done = wait_until($deadline - time > 5 ? 5 : $deadline - time, sub {
        return 0 unless waitpid($pid, POSIX::WNOHANG()) == $pid;
        $rc = $? >> 8;
        1;
    });
    unless ($done) {
        kill_pid($pid, signals => [qw(TERM KILL)], grace => 2);
        ($rc, $out) = (124, "$out\n(killed after $secs s)\n");
    }
    return ($rc, $out);
}


package WsAgent::Cluster::Subscriber;

# SSUBSCRIBE to each channel on every node of its owner's shard (the
# master and its replicas: a sharded message reaches them all), so a
# failover or the kill of a master loses nothing here.  follow() asks the
# cluster again and subscribes where the slots went (after a reshard, or a
# "sunsubscribe" a node pushes when it lost the slot); move_slot() through
# the subscriber subscribes at the new owner (ASKING, while the slot is
# IMPORTING) before the slot moves.  Every message is recorded with the
# node that delivered it: [port, channel, message, time].
#
# classic => [CHANNELS or PATTERNS]: a classic SUBSCRIBE (PSUBSCRIBE for
# one with "*") on every node of the cluster; what it gets is recorded
# with port too (in {classic}), to show nothing took the classic path.

use Time::HiRes qw(time sleep);
use IO::Select;

sub new {
    my ($class, $cluster, %opt) = @_;
    my $self = bless { cluster => $cluster, channels => $opt{channels} || [],
                       classic => $opt{classic} || [], conns => {},
                       messages => [], classic_messages => [],
                       events => [] }, $class;
    $self->subscribe_classic if @{ $self->{classic} };
    $self->follow;
    return $self;
}

sub messages { @{ $_[0]{messages} } }
sub classic_messages { @{ $_[0]{classic_messages} } }
sub events { @{ $_[0]{events} } }

sub note { my ($self, $what) = @_; push @{ $self->{events} }, sprintf '%.3f %s', time, $what }

sub conn {
    my ($self, $port, $kind) = @_;
    my $key = ($kind // 'shard') . ":$port";
    return $self->{conns}{$key} if $self->{conns}{$key};
    my $node = $self->{cluster}->node($port);
    return undef unless $node->running;
    my $sock = eval { $node->connect } or return undef;
    my $c = $self->{conns}{$key} = { port => $port, kind => $kind // 'shard',
                                     sock => $sock, buf => '', subs => {},
                                     key => $key };
    # a replica serves SSUBSCRIBE too (READONLY does no harm on a master)
    $self->request($c, 'READONLY') unless $c->{kind} eq 'classic';
    return $c;
}

sub drop_conn {
    my ($self, $c, $why) = @_;
    delete $self->{conns}{$c->{key}};
    close $c->{sock};
    $self->note("$c->{key} $why");
}

# Takes one pushed message in; returns it if it is not a message.
sub take {
    my ($self, $c, $r) = @_;
    if (ref $r eq 'ARRAY' && @$r >= 3 && $r->[0] eq 'smessage') {
        push @{ $self->{messages} }, [$c->{port}, $r->[1], $r->[2], time];
        return;
    }
    if (ref $r eq 'ARRAY' && @$r >= 3 && $r->[0] =~ /^p?message$/) {
        my ($ch, $msg) = $r->[0] eq 'pmessage' ? @$r[2, 3] : @$r[1, 2];
        push @{ $self->{classic_messages} }, [$c->{port}, $ch, $msg, time];
        return;
    }
    if (ref $r eq 'ARRAY' && @$r >= 2 && $r->[0] eq 'sunsubscribe'
        && !$c->{unsubscribing}{$r->[1]}) {
        # the node lost the slot (a reshard): follow() subscribes anew
        delete $c->{subs}{$r->[1]};
        $self->note("$c->{key} pushed sunsubscribe $r->[1]");
        $self->{dirty} = 1;
        return;
    }
    return $r;
}

# Sends a command and returns its reply (messages on the way are kept).
sub request {
    my ($self, $c, @args) = @_;
    my $sock = $c->{sock};
    print $sock WsAgent::Redis::encode(@args);
    my $deadline = time + 2;
    while (1) {
        my $r = WsAgent::Redis::read_reply($sock, \$c->{buf}, $deadline);
        if (ref $r eq 'HASH' && $r->{error} =~ /^(timeout|connection closed)$/) {
            $self->drop_conn($c, "$args[0]: $r->{error}");
            return $r;
        }
        my $left = $self->take($c, $r);
        return $left if defined $left || !ref $r;
    }
}

sub ssubscribe {
    my ($self, $port, $ch, $asking) = @_;
    my $c = $self->conn($port) or return 0;
    return 1 if $c->{subs}{$ch};
    $self->request($c, 'ASKING') if $asking;
    my $r = $self->request($c, 'SSUBSCRIBE', $ch);
    if (ref $r eq 'ARRAY' && $r->[0] eq 'ssubscribe') {
        $c->{subs}{$ch} = 1;
        $self->note("$c->{key} ssubscribe $ch" . ($asking ? ' (asking)' : ''));
        return 1;
    }
    $self->note("$c->{key} ssubscribe $ch: " . WsAgent::Redis::reply_text($r));
    return 0;
}

sub subscribe_classic {
    my ($self) = @_;
    for my $port ($self->{cluster}->live_ports) {
        my $c = $self->conn($port, 'classic') or next;
        for my $ch (@{ $self->{classic} }) {
            my $r = $self->request($c, $ch =~ /\*/ ? 'PSUBSCRIBE' : 'SUBSCRIBE', $ch);
            die "classic subscribe $ch on $port: " . WsAgent::Redis::reply_text($r) . "\n"
                unless ref $r eq 'ARRAY' && $r->[0] =~ /^p?subscribe$/;
        }
    }
}

# Every channel subscribed on every live node of its owner's shard.
sub follow {
    my ($self) = @_;
    my $cl = $self->{cluster};
    $self->{dirty} = 0;
    my $ranges = $cl->slot_ranges;
    my %shard;
    for my $ch (@{ $self->{channels} }) {
        my $slot = WsAgent::Cluster::key_slot($ch);
        my ($r) = grep { $slot >= $_->[0] && $slot <= $_->[1] } @$ranges;
        next unless $r;
        my $master = $r->[2];
        $shard{$master} ||= [eval { $cl->shard($master) }];
        $self->ssubscribe($_, $ch) for @{ $shard{$master} || [$master] };
    }
}

# move_slot's callback: $to owns the slot, the old owner does not know yet:
# subscribe at $to (its replicas follow later).
sub before_move {
    my ($self, $slot, $to) = @_;
    for my $ch (grep { WsAgent::Cluster::key_slot($_) == $slot }
                @{ $self->{channels} }) {
        $self->ssubscribe($to, $ch);
    }
}

# Reads what has arrived, for $secs; follows when a node pushed a
# sunsubscribe (or every $follow_every seconds when asked).
sub pump {
    my ($self, $secs) = @_;
    my $deadline = time + $secs;
    while (1) {
        my @c = values %{ $self->{conns} };
        my %by_fd = map { fileno($_->{sock}) => $_ } @c;
        my $sel = IO::Select->new(map { $_->{sock} } @c);
        my $left = $deadline - time;
        last if $left <= 0 || !@c;
        for my $sock ($sel->can_read($left)) {
            my $c = $by_fd{fileno $sock} or next;
            my $n = sysread $sock, $c->{buf}, 65536, length $c->{buf};
            unless ($n) {
                $self->drop_conn($c, 'closed');
                $self->{dirty} = 1;
                next;
            }
            while (my @v = WsAgent::Redis::parse_reply(\$c->{buf})) {
                $self->take($c, $v[0]);
            }
        }
        $self->follow if $self->{dirty};
    }
    $self->follow if $self->{dirty};
}

# Distinct messages per channel so far.
sub distinct {
    my ($self) = @_;
    my %d;
    $d{$_->[1]}{$_->[2]} = 1 for @{ $self->{messages} };
    return { map { $_ => scalar keys %{ $d{$_} } } keys %d };
}

# Until every channel of $want ({channel => n}) has n distinct messages or
# $timeout passed (following the slots every 200 ms), then $grace more.
sub collect {
    my ($self, $want, $timeout, $grace) = @_;
    my $deadline = time + $timeout;
    my $next_follow = time + 0.2;
    while (time < $deadline) {
        my $d = $self->distinct;
        last unless grep { ($d->{$_} // 0) < $want->{$_} } keys %$want;
        $self->pump(0.05);
        if (time >= $next_follow) {
            eval { $self->follow };
            $next_follow = time + 0.2;
        }
    }
    $self->pump($grace // 0.2);
    return $self->messages;
}

sub close {
    my ($self) = @_;
    close $_->{sock} for values %{ $self->{conns} };
    $self->{conns} = {};
}

1;
