package WsAgent::Sentinel;

# A private Redis Sentinel topology for one test file: two data nodes (a
# master and its replica, --replicaof) and three sentinels monitoring the
# master as "mymaster" (quorum 2, down-after-milliseconds 1000,
# failover-timeout 6000, resolve-hostnames no), each a WsAgent::Redis on a
# free loopback port with its own config file and log in DIR/node1, node2,
# sentinel1..3 (a sentinel rewrites its config file).  Started once per
# file, checked before every block: what a block killed is started again,
# and the sentinels must agree on the master before the block runs.
#
#   master_port / replica_port     the data nodes as the sentinels see them now
#   kill_master                    SIGKILL the master by PID (mid-stream)
#   failover                       SENTINEL FAILOVER on sentinel 1
#   wait_switch(SECS)              until every sentinel announced +switch-master
#   restart_old_master             the killed one, as a replica of the new master
#   history                        [{ what, time, ... }] of the above
#
# WsAgent::Sentinel::Subscriber, below, SUBSCRIBEs and MONITORs on every
# data node from a child process and records, with the time, which node
# delivered each message and which PUBLISHes each node executed (from a
# client, or replicated from its master); tally() counts a stream's events
# per channel and seq against what the backend sent.

use strict;
use warnings;

use IO::Select;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);
use WsAgent::Redis;
use WsAgent::Util qw(free_port wait_until kill_pid spit slurp);

our $NAME = 'mymaster';
my $DOWN_AFTER = 1000;
my $FAILOVER_TIMEOUT = 6000;

sub new {
    my ($class, %opt) = @_;
    mkdir $opt{dir};
    my $self = bless { dir => $opt{dir}, name => $opt{name} // $NAME,
                       history => [] }, $class;
    $self->{nodes} = [map { WsAgent::Redis->new(port => free_port(),
                                                 dir => "$opt{dir}/node$_") }
                      1 .. 2];
    $self->{sentinels} = [map {
        WsAgent::Redis->new(port => free_port(), dir => "$opt{dir}/sentinel$_",
                            sentinel => 1) } 1 .. 3];
    return $self;
}

sub name { $_[0]{name} }
sub node_ports { map { $_->port } @{ $_[0]{nodes} } }
sub sentinel_ports { map { $_->port } @{ $_[0]{sentinels} } }
sub history { $_[0]{history} }
# the block's WsAgent::Sentinel::Subscriber and WsAgent::Backend (its
# sentinel_check sees them here)
sub subscriber { $_[0]{subscriber} }
sub backend { $_[0]{backend} }
sub node { my ($self, $port) = @_; (grep { $_->port == $port } @{ $self->{nodes} })[0] }
sub is_node_port { my ($self, $port) = @_; !!grep { $_ == $port } $self->node_ports }

# The environment of a block: $TEST_NGINX_SENTINEL_*.
sub env {
    my ($self) = @_;
    my @s = $self->sentinel_ports;
    my %env = (
        TEST_NGINX_SENTINEL_NAME => $self->{name},
        TEST_NGINX_SENTINEL_PORTS => join(' ', map { "127.0.0.1:$_" } @s),
        TEST_NGINX_SENTINEL_MASTER_PORT => $self->master_port // '',
        TEST_NGINX_SENTINEL_REPLICA_PORT => $self->replica_port // '',
    );
    $env{"TEST_NGINX_SENTINEL_PORT_" . ($_ + 1)} = $s[$_] for 0 .. $#s;
    my @n = $self->node_ports;
    $env{"TEST_NGINX_SENTINEL_NODE_PORT_" . ($_ + 1)} = $n[$_] for 0 .. $#n;
    return %env;
}

# --- start, check, stop ------------------------------------------------------

# INT, TERM or HUP to the test file still stops what it started (END runs
# on exit); a forked child (backend, client) dies of it as before.
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

sub start {
    my ($self) = @_;
    exit_on_signals();
    my ($m, $r) = @{ $self->{nodes} };
    # no 5 s wait for more replicas before a full sync
    $_->{config} = "repl-diskless-sync-delay 0" for $m, $r;
    $r->{config} .= "\nreplicaof 127.0.0.1 " . $m->port;
    $m->start;
    $r->start;
    wait_until(10, sub { sleep 0.04; $self->replica_online($m, $r) })
        or die "replica " . $r->port . " did not sync with " . $m->port . "\n";
    for my $s (@{ $self->{sentinels} }) {
        $s->{config} = join "\n",
            'sentinel resolve-hostnames no',
            "sentinel monitor $self->{name} 127.0.0.1 " . $m->port . ' 2',
            "sentinel down-after-milliseconds $self->{name} $DOWN_AFTER",
            "sentinel failover-timeout $self->{name} $FAILOVER_TIMEOUT",
            "sentinel parallel-syncs $self->{name} 1";
        $s->start;
    }
    $self->{started} = 1;
    $self->wait_ready(replica => 1, timeout => 15);
}

sub stop {
    my ($self) = @_;
    $self->close_switch_watch;
    $self->drop_conn($_) for keys %{ $self->{conn} || {} };
    $_->stop for @{ $self->{sentinels} }, @{ $self->{nodes} };
    $self->{started} = 0;
}

# Before a block: started, every data node running (a node a block killed
# comes back as a replica of the sentinels' master), the sentinels agreeing
# on a master that says it is one; with replica => 1 also a replica online
# that every sentinel would promote (a block that fails over needs one).
sub ensure {
    my ($self, %opt) = @_;
    return $self->start unless $self->{started};
    $self->close_switch_watch;
    for my $n (grep { !$_->running } @{ $self->{nodes} }) {
        $self->restart_node($n);
    }
    $self->wait_ready(%opt, timeout => 20);
}

sub restart_node {
    my ($self, $n) = @_;
    my $mp = $self->master_port;
    $n->{config} = "repl-diskless-sync-delay 0";
    $n->{config} .= "\nreplicaof 127.0.0.1 $mp" if $mp && $mp != $n->port;
    $n->start;
}

sub sentinel_cmd {
    my ($self, $i, @cmd) = @_;
    return $self->ask($self->{sentinels}[$i], @cmd);
}

# A command to a node or sentinel on a connection kept for the next one:
# the ready checks poll, and a fresh connection per command would leave
# thousands of TIME_WAIT ports in the ephemeral range, where a caller's
# random TEST_NGINX_PORT then cannot be bound.  Closed with RST (SO_LINGER
# 0) for the same reason.  A kept connection found closed (a sentinel's
# CLIENT KILL, a restart) is opened again once.
sub ask {
    my ($self, $x, @cmd) = @_;
    local $SIG{PIPE} = 'IGNORE';
    for my $try (1, 2) {
        my $c = $self->{conn}{$x->port};
        my $kept = !!$c;
        $c ||= eval {
            my $sock = $x->connect;
            setsockopt($sock, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            $self->{conn}{$x->port} = { sock => $sock, buf => '' };
        } or return { error => "connection: $@" };
        my $r = (print { $c->{sock} } WsAgent::Redis::encode(@cmd))
            ? WsAgent::Redis::read_reply($c->{sock}, \$c->{buf}, time + 2)
            : { error => 'connection closed' };
        if (ref $r eq 'HASH' && $r->{error} =~ /^(timeout|connection closed)/) {
            $self->drop_conn($x->port);
            next if $kept && $try == 1 && $r->{error} ne 'timeout';
        }
        return $r;
    }
}

sub drop_conn {
    my ($self, $port) = @_;
    my $c = delete $self->{conn}{$port} or return;
    close $c->{sock};
}

# [k, v, k, v] -> { k => v }
sub pairs { my ($r) = @_; ref $r eq 'ARRAY' ? {@$r} : {} }

# The master's port as the (first answering) sentinel says, or undef.
sub master_port {
    my ($self) = @_;
    for my $i (0 .. 2) {
        my $r = $self->sentinel_cmd($i, 'SENTINEL', 'get-master-addr-by-name',
                                    $self->{name});
        return $r->[1] if ref $r eq 'ARRAY' && defined $r->[1];
    }
    return undef;
}

# The other data node (the one a failover promotes).
sub replica_port {
    my ($self) = @_;
    my $m = $self->master_port // return undef;
    my ($r) = grep { $_ != $m } $self->node_ports;
    return $r;
}

sub role {
    my ($self, $n) = @_;
    my $r = $self->ask($n, 'ROLE');
    return ref $r eq 'ARRAY' ? $r->[0] : '';
}

# $r replicates $m, link up, and $m lists it online.
sub replica_online {
    my ($self, $m, $r) = @_;
    my $info = $self->ask($r, 'INFO', 'replication') // '';
    return 0 if ref $info;
    return 0 unless $info =~ /^role:slave\r?$/m
        && $info =~ /^master_port:(\d+)\r?$/m && $1 == $m->port
        && $info =~ /^master_link_status:up\r?$/m;
    my $minfo = $self->ask($m, 'INFO', 'replication') // '';
    return !ref $minfo && $minfo =~ /^slave\d+:ip=[^,]+,port=(\d+),state=online/m
        && $1 == $r->port;
}

# What is not ready yet, or '' (see ensure).
sub not_ready {
    my ($self, %opt) = @_;
    my %seen;
    for my $i (0 .. 2) {
        my $a = $self->sentinel_cmd($i, 'SENTINEL', 'get-master-addr-by-name',
                                    $self->{name});
        return "sentinel " . ($i + 1) . ": no master ("
               . WsAgent::Redis::reply_text($a) . ")"
            unless ref $a eq 'ARRAY' && defined $a->[1];
        $seen{$a->[1]}++;
        my $mi = pairs($self->sentinel_cmd($i, 'SENTINEL', 'master',
                                           $self->{name}));
        return "sentinel " . ($i + 1) . ": master flags '"
               . ($mi->{flags} // '?') . "'" unless ($mi->{flags} // '') eq 'master';
        return "sentinel " . ($i + 1) . ": sees "
               . ($mi->{'num-other-sentinels'} // '?') . " other sentinels"
            unless ($mi->{'num-other-sentinels'} // 0) == 2;
    }
    return "the sentinels disagree on the master: " . join(', ', sort keys %seen)
        if keys %seen != 1;
    my ($mp) = keys %seen;
    my $m = $self->node($mp) or return "master $mp is none of our nodes";
    return "master $mp: ROLE says '" . $self->role($m) . "'"
        unless $self->role($m) eq 'master';
    return '' unless $opt{replica};
    my ($r) = grep { $_->port != $mp } @{ $self->{nodes} };
    return "replica " . $r->port . " is not online with $mp"
        unless $self->replica_online($m, $r);
    for my $i (0 .. 2) {
        my $list = $self->sentinel_cmd($i, 'SENTINEL', 'replicas', $self->{name});
        my ($ri) = grep { ($_->{port} // 0) == $r->port }
                   map { pairs($_) } ref $list eq 'ARRAY' ? @$list : ();
        return "sentinel " . ($i + 1) . ": replica " . $r->port . " is "
               . ($ri ? "'$ri->{flags}', link $ri->{'master-link-status'}"
                  : 'unknown')
            unless $ri && $ri->{flags} eq 'slave'
                   && $ri->{'master-link-status'} eq 'ok';
    }
    return '';
}

sub wait_ready {
    my ($self, %opt) = @_;
    my $why = '';
    my $deadline = time + ($opt{timeout} // 15);
    while (($why = $self->not_ready(%opt)) ne '') {
        last if time >= $deadline;
        sleep 0.05;
    }
    return 1 if $why eq '';
    die "sentinel topology not ready after " . ($opt{timeout} // 15)
        . " s: $why\n" . $self->logs_tail;
}

sub logs_tail {
    my ($self) = @_;
    my $out = '';
    for my $x (@{ $self->{nodes} }, @{ $self->{sentinels} }) {
        my @l = split /\n/, slurp("$x->{dir}/redis.log") // '';
        splice @l, 0, @l - 8 if @l > 8;
        $out .= "--- $x->{dir}/redis.log:\n  " . join("\n  ", @l) . "\n";
    }
    return $out;
}

# --- what a block does ----------------------------------------------------------

# +switch-master on every sentinel, subscribed before the kill or the
# failover: wait_switch reads them (right after, so its times are the
# announcements').
sub watch_switch {
    my ($self) = @_;
    $self->close_switch_watch;
    for my $s (@{ $self->{sentinels} }) {
        my $sock = eval { $s->connect } or next;
        print $sock WsAgent::Redis::encode('SUBSCRIBE', '+switch-master');
        my $buf = '';
        my $r = WsAgent::Redis::read_reply($sock, \$buf, time + 2);
        push @{ $self->{watch} }, { sock => $sock, buf => $buf,
                                    port => $s->port }
            if ref $r eq 'ARRAY' && $r->[0] eq 'subscribe';
    }
}

sub close_switch_watch {
    my ($self) = @_;
    close $_->{sock} for @{ delete $self->{watch} || [] };
}

sub record {
    my ($self, %what) = @_;
    push @{ $self->{history} }, { time => time, %what };
    return $self->{history}[-1];
}

sub last_action {
    my ($self) = @_;
    return (grep { $_->{what} =~ /^(kill|failover)$/ }
            @{ $self->{history} })[-1];
}

sub kill_master {
    my ($self) = @_;
    my $mp = $self->master_port // return (0, 'no master known to the sentinels');
    my $m = $self->node($mp) or return (0, "master $mp is none of ours");
    $self->watch_switch;
    my $pid = $m->pid;
    $m->crash;
    my $h = $self->record(what => 'kill', old => $mp, pid => $pid);
    return (1, "SIGKILL to master 127.0.0.1:$mp (pid $pid)");
}

sub failover {
    my ($self) = @_;
    my $mp = $self->master_port // return (0, 'no master known to the sentinels');
    $self->watch_switch;
    my $t = time;
    my $r = $self->sentinel_cmd(0, 'SENTINEL', 'FAILOVER', $self->{name});
    my $txt = WsAgent::Redis::reply_text($r);
    return (0, "SENTINEL FAILOVER: $txt") unless $txt eq 'OK';
    $self->record(what => 'failover', old => $mp, time => $t);
    return (1, "SENTINEL FAILOVER $self->{name} (master 127.0.0.1:$mp): OK");
}

# Until every sentinel announced +switch-master away from the last kill's
# or failover's master (bounded); records the first and the last time.
sub wait_switch {
    my ($self, $secs) = @_;
    my $act = $self->last_action or return (0, 'no kill or failover before');
    my @w = @{ $self->{watch} || [] } or return (0, 'no sentinel to watch');
    my $deadline = time + ($secs // 15);
    my %got;
    while (keys %got < @w && time < $deadline) {
        my @r = IO::Select->new(map { $_->{sock} } grep { !$got{$_->{port}} } @w)
                ->can_read($deadline - time);
        for my $fh (@r) {
            my ($x) = grep { $_->{sock} == $fh } @w;
            my $r = WsAgent::Redis::read_reply($fh, \$x->{buf}, time + 0.2);
            next unless ref $r eq 'ARRAY' && $r->[0] eq 'message';
            my @f = split ' ', $r->[2];     # name oldip oldport newip newport
            next unless $f[0] eq $self->{name} && $f[2] == $act->{old};
            $got{$x->{port}} = { time => time, to => $f[4] };
        }
    }
    $self->close_switch_watch;
    return (0, "+switch-master from " . keys(%got) . " of " . @w
               . " sentinels within " . ($secs // 15) . " s") if keys %got < @w;
    my @t = sort { $a <=> $b } map { $_->{time} } values %got;
    my %to = map { $_->{to} => 1 } values %got;
    return (0, "the sentinels switched to different masters: @{[ keys %to ]}")
        if keys %to > 1;
    my ($to) = keys %to;
    $self->record(what => 'switch', old => $act->{old}, new => $to,
                  first => $t[0], last => $t[-1], time => $t[-1]);
    return (1, sprintf "+switch-master %s 127.0.0.1:%d -> 127.0.0.1:%d, "
            . "%.2f s after the %s (%d sentinels)", $self->{name}, $act->{old},
            $to, $t[-1] - $act->{time}, $act->{what}, scalar @w);
}

sub last_switch {
    my ($self) = @_;
    return (grep { $_->{what} eq 'switch' } @{ $self->{history} })[-1];
}

# The node the last kill stopped, started again as a replica of the
# master the sentinels name now (not as a master with its old config: a
# sentinel converts one of those only ~10 s later, time a worker could
# spend publishing to it).
sub restart_old_master {
    my ($self) = @_;
    my ($kill) = grep { $_->{what} eq 'kill' } reverse @{ $self->{history} };
    return (0, 'no master was killed') unless $kill;
    my $n = $self->node($kill->{old});
    return (0, "127.0.0.1:$kill->{old} runs already") if $n->running;
    my $mp = $self->master_port;
    return (0, "the sentinels still name 127.0.0.1:$kill->{old}")
        if !$mp || $mp == $kill->{old};
    $self->restart_node($n);
    my $ok = wait_until(10, sub { sleep 0.04;
                                  $self->replica_online($self->node($mp), $n) });
    $self->record(what => 'restart', port => $kill->{old}, master => $mp);
    return $ok ? (1, "127.0.0.1:$kill->{old} back, a replica of 127.0.0.1:$mp")
               : (0, "127.0.0.1:$kill->{old} did not sync with 127.0.0.1:$mp");
}

# --- counting a stream ------------------------------------------------------------

# Per channel, how many events (type $re) the backend sent: connection i's
# channel is $prefix . its X-User-Id.
sub sent_by_channel {
    my ($backend, $prefix, $re) = @_;
    my %sent;
    for my $i (1 .. $backend->connections) {
        my $req = $backend->request($i) or next;
        my ($user) = map { $_->[1] } grep { lc $_->[0] eq 'x-user-id' }
                     @{ $req->{headers} };
        next unless defined $user;
        $sent{"$prefix$user"} += grep { /^sent text .*$re/ }
                                 @{ $backend->transcript($i) || [] };
    }
    return \%sent;
}

# tally(sub => SUBSCRIBER, sent => { channel => N }, to => PORT, old => PORT,
#       window => [T0, T1], timeout => SECS)
# Waits (bounded) until node `to` delivered seq 1..N of every channel, then
# counts per channel: delivered (distinct seqs), duplicates, missing; a
# missing event the old master delivered within the window is the spec's
# ("window"), any other is lost.
sub tally {
    my (%o) = @_;
    my $sub = $o{sub};
    my $complete = sub {
        my %have;
        $have{$_->{channel}}{$_->{seq}} = 1
            for grep { defined $_->{seq} } $sub->messages($o{to});
        !grep { keys(%{ $have{$_} || {} }) < $o{sent}{$_} } keys %{ $o{sent} };
    };
    wait_until($o{timeout} // 5, $complete);
    sleep 0.3;       # duplicates after the last
    my @to = $sub->messages($o{to});
    my @old = defined $o{old} ? $sub->messages($o{old}) : ();
    my ($t0, $t1) = @{ $o{window} || [0, 0] };
    my (%r, %tot);
    for my $ch (sort keys %{ $o{sent} }) {
        my $n = $o{sent}{$ch};
        my %seen;
        $seen{$_->{seq}}++ for grep { $_->{channel} eq $ch && defined $_->{seq} } @to;
        my %old_at;
        for (grep { $_->{channel} eq $ch && defined $_->{seq} } @old) {
            $old_at{$_->{seq}} //= $_->{time};
        }
        my @missing = grep { !$seen{$_} } 1 .. $n;
        my @window = grep { defined $old_at{$_} && $old_at{$_} >= $t0
                            && $old_at{$_} <= $t1 } @missing;
        my %w = map { $_ => 1 } @window;
        my $x = $r{$ch} = {
            sent => $n,
            delivered => scalar(grep { $_ >= 1 && $_ <= $n } keys %seen),
            duplicates => 0,
            missing => \@missing,
            window => \@window,
            lost => [grep { !$w{$_} } @missing],
            extra => [grep { $_ < 1 || $_ > $n } sort { $a <=> $b } keys %seen],
        };
        $x->{duplicates} += $_ - 1 for values %seen;
        $tot{$_} += ref $x->{$_} ? @{ $x->{$_} } : $x->{$_}
            for qw(sent delivered duplicates missing window lost extra);
    }
    return { channels => \%r, total => \%tot };
}

sub seq_ranges {
    my @s = sort { $a <=> $b } @_;
    my @out;
    while (@s) {
        my ($a, $b) = (shift @s) x 2;
        $b = shift @s while @s && $s[0] == $b + 1;
        push @out, $a == $b ? $a : "$a-$b";
    }
    return @out ? join(',', @out) : 'none';
}

sub tally_text {
    my ($t) = @_;
    my @l;
    for my $ch (sort keys %{ $t->{channels} }) {
        my $x = $t->{channels}{$ch};
        push @l, sprintf "%s: sent %d, delivered %d, duplicates %d, missing %d "
            . "(in the window: %s; lost: %s)%s", $ch, $x->{sent}, $x->{delivered},
            $x->{duplicates}, scalar @{ $x->{missing} },
            seq_ranges(@{ $x->{window} }), seq_ranges(@{ $x->{lost} }),
            @{ $x->{extra} } ? "; seqs never sent: @{ $x->{extra} }" : '';
    }
    my $T = $t->{total};
    push @l, sprintf "total: sent %d, delivered %d, duplicates %d, missing %d "
        . "(in the window %d, lost %d)", @$T{qw(sent delivered duplicates missing
                                                window lost)};
    return join "\n", @l;
}


package WsAgent::Sentinel::Subscriber;

# From a child process: on every data node one connection SUBSCRIBEd to the
# channels and one in MONITOR, connected again when a node comes back.  A
# line per message delivered and per PUBLISH executed on one of the
# channels, with the time, in DIR/subscriber.log:
#
#   TIME  NODEPORT  message  CHANNEL  PAYLOAD          (time it arrived)
#   TIME  NODEPORT  publish  CLIENT   CHANNEL PAYLOAD  (MONITOR's time; CLIENT
#                                                      ip:port, a data node's
#                                                      port = replicated)
#   TIME  NODEPORT  ready | down  sub | mon   (a connection opened, closed)

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Util qw(wait_until kill_pid slurp);

sub start {
    my ($class, $topo, @channels) = @_;
    my $file = "$topo->{dir}/subscriber.log";
    unlink $file;
    my @ports = $topo->node_ports;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        eval { child($file, \@ports, \@channels) };
        print STDERR "sentinel subscriber: $@" if $@;
        POSIX::_exit(0);
    }
    my $self = bless { pid => $pid, file => $file, topo => $topo,
                       channels => \@channels }, $class;
    my @up = map { $_->port } grep { $_->running } @{ $topo->{nodes} };
    wait_until(5, sub {
        my %ready;
        $ready{$_->{node}}{$_->{conn}} = 1
            for grep { $_->{kind} eq 'ready' } $self->records;
        !grep { !$ready{$_}{sub} || !$ready{$_}{mon} } @up;
    }) or do { $self->stop; die "sentinel subscriber not subscribed on @up\n" };
    return $self;
}

sub stop {
    my ($self) = @_;
    kill_pid(delete $self->{pid}, signals => [qw(TERM KILL)], grace => 2)
        if $self->{pid};
}

sub child {
    my ($file, $ports, $channels) = @_;
    $SIG{TERM} = sub { POSIX::_exit(0) };
    open my $out, '>>', $file or die "cannot write $file: $!";
    $out->autoflush(1);
    my %ch = map { $_ => 1 } @$channels;
    my %c;          # "port kind" => { sock, buf, port, kind }
    my $line = sub { print $out join("\t", sprintf('%.6f', time), @_), "\n" };
    my $retry = 0;
    while (1) {
        if (time >= $retry) {
            # at once after a connection closed (a sentinel's CLIENT KILL
            # at a promotion), every 50 ms while a node is down
            for my $p (@$ports) {
                for my $kind (qw(sub mon)) {
                    next if $c{"$p $kind"};
                    my $x = open_conn($p, $kind, $channels) or next;
                    $c{"$p $kind"} = $x;
                    $line->($p, 'ready', $kind);
                }
            }
            $retry = time + 0.05;
        }
        my %by = map { $c{$_}{sock} => $_ } keys %c;
        my @r = IO::Select->new(map { $_->{sock} } values %c)->can_read(0.05);
        for my $fh (@r) {
            my $key = $by{$fh} // next;
            my $x = $c{$key};
            my ($p, $kind) = @$x{qw(port kind)};
            my $n = sysread $fh, $x->{buf}, 65536, length $x->{buf};
            if (!$n) {
                close $fh;
                delete $c{$key};
                $line->($p, 'down', $kind);
                $retry = 0;
                next;
            }
            my $now = time;
            while (my @v = WsAgent::Redis::parse_reply(\$x->{buf})) {
                my $r = $v[0];
                if ($kind eq 'sub') {
                    print $out join("\t", sprintf('%.6f', $now), $p, 'message',
                                    $r->[1], $r->[2]), "\n"
                        if ref $r eq 'ARRAY' && $r->[0] eq 'message';
                } elsif (!ref $r && defined $r
                         && $r =~ /^(\d+\.\d+) \[\d+ (\S+)\] "publish" "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"/i) {
                    my ($t, $client, $c, $m) = ($1, $2, unrepr($3), unrepr($4));
                    print $out join("\t", $t, $p, 'publish', $client, $c, $m), "\n"
                        if $ch{$c};
                }
            }
        }
    }
}

sub open_conn {
    my ($port, $kind, $channels) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $port, Proto => 'tcp', Timeout => 0.3) or return undef;
    my $x = { sock => $sock, buf => '', port => $port, kind => $kind };
    if ($kind eq 'sub') {
        print $sock WsAgent::Redis::encode('SUBSCRIBE', @$channels);
        for (@$channels) {
            my $r = WsAgent::Redis::read_reply($sock, \$x->{buf}, time + 1);
            return undef unless ref $r eq 'ARRAY' && $r->[0] eq 'subscribe';
        }
    } else {
        print $sock WsAgent::Redis::encode('MONITOR');
        my $r = WsAgent::Redis::read_reply($sock, \$x->{buf}, time + 1);
        return undef unless defined $r && !ref $r && $r eq 'OK';
    }
    return $x;
}

# MONITOR's quoting (sdscatrepr) undone.
sub unrepr {
    my ($s) = @_;
    my %e = (n => "\n", r => "\r", t => "\t", a => "\a", b => "\b",
             '\\' => '\\', '"' => '"');
    $s =~ s/\\(x([0-9a-fA-F]{2})|.)/defined $2 ? chr hex $2 : $e{$1} \/\/ $1/ge;
    return $s;
}

# Every line of the file as { time, node, kind, ... }; messages and
# publishes carry channel, payload, seq, user (from the envelope).
sub records {
    my ($self) = @_;
    my @out;
    for (split /\n/, slurp($self->{file}) // '') {
        my ($t, $node, $kind, @f) = split /\t/, $_, -1;
        my %r = (time => $t, node => $node, kind => $kind);
        if ($kind eq 'message') { @r{qw(channel payload)} = @f }
        elsif ($kind eq 'publish') { @r{qw(client channel payload)} = @f }
        else { $r{conn} = $f[0] }           # ready / down: sub or mon
        if (defined $r{payload}) {
            ($r{seq}) = $r{payload} =~ /"seq":(\d+)/;
            ($r{n}) = $r{payload} =~ /"n":(\d+)/;
        }
        push @out, \%r;
    }
    return @out;
}

# When the subscriber had no SUBSCRIBEd connection to a node that was up
# (a sentinel's CLIENT KILL at a promotion kills pubsub clients too):
# [port, from, to] per gap that ended in a reconnect.
sub gaps {
    my ($self) = @_;
    my (%down, @gaps);
    for my $r (grep { ($_->{conn} // '') eq 'sub' } $self->records) {
        if ($r->{kind} eq 'down') { $down{$r->{node}} = $r->{time} }
        elsif (defined(my $d = delete $down{$r->{node}})) {
            push @gaps, [$r->{node}, $d, $r->{time}];
        }
    }
    return @gaps;
}

# Messages node $port delivered to the subscriber.
sub messages {
    my ($self, $port) = @_;
    return grep { $_->{kind} eq 'message' && $_->{node} == $port } $self->records;
}

# PUBLISHes node $port executed from a client (not replicated from its
# master: MONITOR names the master link's peer, a data node's port), at or
# after $since.
sub direct_publishes {
    my ($self, $port, $since) = @_;
    my $topo = $self->{topo};
    return grep {
        $_->{kind} eq 'publish' && $_->{node} == $port
        && $_->{time} >= ($since // 0)
        && !($_->{client} =~ /:(\d+)$/ && $topo->is_node_port($1))
    } $self->records;
}

1;
