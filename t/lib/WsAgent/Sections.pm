package WsAgent::Sections;

# The sections of ngx_ws_agent's tests, for Test::Nginx::Socket::WsAgent,
# which calls these on the runner's hooks (CPAN's or the bundled one):
#
#   preprocess      block preprocessor, before nginx starts: fresh ports,
#                   the private Redis and its subscriber, $TEST_NGINX_*
#                   expanded in every section, the scripted backend; a
#                   ws_client/browser block gets a probe request (CPAN's
#                   runner reaches the checks only through a request)
#   run_and_check   response-body check, while nginx runs: the SSE clients
#                   started (and live), the client steps (or the browser),
#                   the Redis messages, the backend's end, the SSE clients
#                   settled and stopped; then the checks of these sections;
#                   under CPAN's runner
#                   nginx is stopped then, as the bundled runner stops it
#                   before the error_log checks
#   after_block     test cleanup handler: Prometheus, the SSE clients and
#                   the backend stopped, subscribers closed, Redis back up
#   after_file      cleanup handler: Prometheus, the SSE clients, Redis, the
#                   Sentinel topology and the backend stopped
#
# The runner's own checks (status, headers, body, error_log) stay the
# runner's.

use strict;
use warnings;

use Cwd ();
use File::Path qw(make_path remove_tree);
use POSIX ();
use Scalar::Util qw(refaddr);
use Storable ();
use Time::HiRes qw(time sleep);

use WsAgent::Util qw(free_port wait_until kill_pid slurp trim
                     parse_header_list expected_lines worker_pids
                     parse_duration);
use WsAgent::Frame;
use WsAgent::Http;
use WsAgent::Backend;
use WsAgent::WsClient;
use WsAgent::Redis;
use WsAgent::Dns;
use WsAgent::Sentinel;
use WsAgent::Cluster;
use WsAgent::RedisStream;
use WsAgent::Tls;
use WsAgent::Browser;
use WsAgent::Prometheus;
use WsAgent::Sse;

# set by Test::Nginx::Socket::WsAgent: "cpan" or "bundled"; use_redis(),
# use_dns(), use_sentinel(), use_cluster()
our ($Runner, $UseRedis, $UseDns, $UseSentinel, $UseCluster) = ('bundled');

# The sections of this plug-in; a block with any of them is ours.
my @OURS = qw(ws_backend ws_client browser redis_config redis_unix
              redis_tls redis_acl redis_stopped redis_subscribe redis_messages
              redis_messages_like ws_backend_transcript
              ws_backend_transcript_like ws_backend_transcripts
              ws_backend_connections ws_backend_request_headers
              browser_check browser_timeout prometheus prometheus_interval
              prometheus_rules prometheus_check dns_records redis_b
              redis_b_subscribe redis_b_messages redis_b_messages_like
              redis_delivered meanwhile sentinel_subscribe sentinel_check
              cluster_config cluster_subscribe cluster_classic_subscribe
              cluster_delivered cluster_loss sse_subscribe sse_settle
              sse_check sse_live_timeout redis_stream);

# Where an unknown $TEST_NGINX_* is an error (in nginx's configuration
# sections the runner says so itself).
my %STRICT = (redis_config => 1, redis_b => 1, redis_acl => 1,
              cluster_config => 1);

my $PROBE = '/.ws-agent-probe';

my $MainPid = $$;
my ($State, $Redis, $RedisB, $Dns, $Tls, $Sentinel, $Backend, $Prometheus,
    $Cur, $Cluster, $Sse);

# the file's private Redis (A), for a check that asks it something
sub redis { $Redis }

# --- per file ---------------------------------------------------------------

sub server_port { Test::Nginx::Socket::server_port() }
sub server_root { Cwd::abs_path(Test::Nginx::Socket::server_root())
                  // Test::Nginx::Socket::server_root() }

# The plug-in's files (Redis, backend transcripts, parallel clients'
# results, the browser profile) live beside the servroot, not in it: CPAN's
# runner removes the servroot before every nginx start, and refuses to if
# it holds anything it did not make.
sub init_once {
    return if $State;
    ($State = server_root()) =~ s{/+$}{};
    $State .= '_ws_agent';
    remove_tree($State);
    make_path($State);
    $ENV{TEST_NGINX_SERVROOT} //= server_root();
    $ENV{TEST_NGINX_HTML_DIR} //= Test::Nginx::Socket::html_dir();
    $ENV{TEST_NGINX_SERVER_PORT} //= server_port();
}

# CPAN's runner writes "listen PORT" (every address); this rewrites that one
# line of its nginx.conf to 127.0.0.1, after CPAN wrote the file.
sub listen_on_loopback {
    no warnings qw(redefine once);
    my $write = \&Test::Nginx::Util::write_config_file;
    *Test::Nginx::Util::write_config_file = sub ($$$) {
        my @r = $write->(@_);
        my $file = $Test::Nginx::Util::ConfFile;
        my $conf = slurp($file) // return @r;
        my $port = server_port();
        if ($conf =~ s/^(\s*listen\s+)\Q$port\E\b/${1}127.0.0.1:$port/m) {
            WsAgent::Util::spit($file, $conf);
        } else {
            warn "ws_agent plug-in: no 'listen $port' in $file to put on "
                 . "127.0.0.1\n";
        }
        return @r;
    };
}

sub after_file {
    return unless $$ == $MainPid;
    if ($Prometheus) { $Prometheus->stop; undef $Prometheus }
    if ($Sse) { $Sse->stop; undef $Sse }
    if ($Backend) { $Backend->stop; undef $Backend }
    if ($RedisB) { $RedisB->stop; undef $RedisB }
    if ($Redis) { $Redis->stop; undef $Redis }
    if ($Dns) { $Dns->stop; undef $Dns }
    stop_sentinel_subscriber();
    if ($Sentinel) { $Sentinel->stop; undef $Sentinel }
    if ($Cluster) { $Cluster->stop_all; undef $Cluster }
}

sub stop_sentinel_subscriber {
    return unless $Sentinel;
    my $sub = delete $Sentinel->{subscriber};
    $sub->stop if $sub;
    delete $Sentinel->{backend};
}

# (the exit status is the test's: reaping a child here must not change it)
END { local $?; after_file() }

sub failures { scalar grep { !$_ } Test::More->builder->summary }

# --- before nginx starts ----------------------------------------------------

sub value {
    my ($block, $name) = @_;
    return undef unless ref $block->{$name} eq 'ARRAY';
    return $block->{$name}[0];
}

sub has { defined value(@_) }

# Sets a section, keeping what it was: the bundled runner repeats a block
# (repeat_each) by preprocessing the same block again, which must start from
# the block as the file's preprocessors left it, not with our changes.
sub change {
    my ($block, $name, @value) = @_;
    my $orig = $block->{_ws_agent_orig} ||= {};
    $orig->{$name} = $block->{$name} unless exists $orig->{$name};
    $block->set_value($name, @value);
}

sub undo_changes {
    my ($block) = @_;
    my $orig = delete $block->{_ws_agent_orig} or return;
    for my $name (keys %$orig) {
        if (defined $orig->{$name}) { $block->{$name} = $orig->{$name} }
        else { delete $block->{$name} }
    }
}

sub preprocess {
    my ($block) = @_;
    init_once();
    undo_changes($block);
    return if defined $block->SKIP;
    $Cur = my $t = { block => $block, failures_before => failures() };
    $t->{ours} = $UseRedis || $UseDns || $UseSentinel || $UseCluster
                 || grep { has($block, $_) } @OURS;
    # where this block's part of error.log starts (CPAN's runner makes a
    # new one at every nginx start)
    $t->{log_offset} = $Runner eq 'cpan' ? 0
                     : -s server_root() . '/logs/error.log' || 0;

    # fresh ports per block: the backend's, and TEST_NGINX_RAND_PORT_N
    # (chosen here, so the client steps know the ports nginx listens on)
    $ENV{TEST_NGINX_BACKEND_PORT} = free_port();
    my %rand;
    for my $name (sections($block)) {
        my $v = value($block, $name);
        next if ref $v || !defined $v;
        $rand{$_} //= free_port() for $v =~ /\$TEST_NGINX_RAND_PORT_(\d+)/g;
    }
    $ENV{"TEST_NGINX_RAND_PORT_$_"} = $rand{$_} for keys %rand;

    # the file's throw-away CA and certificates, made when a block first
    # asks for them: a TLS Redis, or $TEST_NGINX_TLS_DIR in any section
    if (!$Tls && (has($block, 'redis_tls') || grep {
            my $v = value($block, $_);
            defined $v && !ref $v && $v =~ /\$TEST_NGINX_TLS_DIR\b/
        } sections($block))) {
        $Tls = WsAgent::Tls->new(dir => "$State/tls");
        $ENV{TEST_NGINX_TLS_DIR} = $Tls->dir;
    }

    # Redis first: its port may appear in the configuration
    if ($UseRedis || grep { /^redis_/ && has($block, $_) } sections($block)) {
        $Redis ||= WsAgent::Redis->new(port => free_port(),
                                       tls_port => free_port(),
                                       dir => "$State/redis");
        $Redis->{pki} = $Tls;
        $Redis->ensure(config => expand($block, 'redis_config'),
                       unix => has($block, 'redis_unix'),
                       tls => has($block, 'redis_tls')
                              ? trim(value($block, 'redis_tls')) || 'server'
                              : '',
                       acl => expand($block, 'redis_acl'));
        $ENV{TEST_NGINX_REDIS_PORT} = $Redis->port;
        $ENV{TEST_NGINX_REDIS_TLS_PORT} = $Redis->tls_port;
        $ENV{TEST_NGINX_REDIS_SOCK} = $Redis->sock_path;
    }
    # "redis B": a second private Redis on 127.0.0.2, the same port as A,
    # for this block only (a name that moves from A to B)
    if (grep { /^redis_b/ && has($block, $_) } sections($block)) {
        $RedisB ||= WsAgent::Redis->new(port => $Redis->port,
            host => '127.0.0.2', dir => "$State/redis_b");
        $RedisB->ensure(config => expand($block, 'redis_b'));
    }
    # the DNS responder: one per file, its records set by each block
    if ($UseDns || has($block, 'dns_records')) {
        $Dns ||= WsAgent::Dns->new(dir => "$State/dns");
        $Dns->set_records(expand($block, 'dns_records'));
        $Dns->start;
        $ENV{TEST_NGINX_DNS_PORT} = $Dns->port;
    }
    # the Sentinel topology, one per file: its ports; a block that fails
    # over (a sentinel_kill_master or sentinel_failover step) needs a
    # replica ready
    if ($UseSentinel || grep { /^sentinel_/ && has($block, $_) } sections($block)) {
        $Sentinel ||= WsAgent::Sentinel->new(dir => "$State/sentinel");
        $Sentinel->ensure(replica => (value($block, 'ws_client') // '')
                          =~ /^\s*sentinel_(kill_master|failover)/m ? 1 : 0);
        my %env = $Sentinel->env;
        @ENV{keys %env} = values %env;
    }
    # the Redis Cluster: one per file (3 masters, 3 replicas), made at the
    # first block that wants it, every node up and the cluster ok again
    # at the start of every later block
    if ($UseCluster || grep { /^cluster_/ && has($block, $_) } sections($block)) {
        $Cluster ||= WsAgent::Cluster->new(dir => "$State/cluster",
            config => expand($block, 'cluster_config') // '');
        $Cluster->start;
        my @p = $Cluster->ports;
        $ENV{"TEST_NGINX_CLUSTER_PORT_" . ($_ + 1)} = $p[$_] for 0 .. $#p;
        $ENV{TEST_NGINX_CLUSTER_PORTS} = "@p";
        # the masters when the block starts (a failover changes them)
        my @m = $Cluster->masters;
        $ENV{"TEST_NGINX_CLUSTER_MASTER_" . ($_ + 1)} = $m[$_] for 0 .. $#m;
        $ENV{TEST_NGINX_CLUSTER_MASTERS} = "@m";
        # command statistics from here: SPUBLISH served per node
        $Cluster->cmd($_, 'CONFIG', 'RESETSTAT') for $Cluster->live_ports;
    }

    # $TEST_NGINX_* in every section, as the bundled runner does (CPAN's
    # expands only the configuration and a few more)
    for my $name (sections($block)) {
        my $v = expand($block, $name);
        change($block, $name, $v) if defined $v && !ref $v;
    }
    # error_log lines as the bundled runner reads them: trimmed, no blank
    # lines or "#" comments
    for my $name (qw(error_log no_error_log)) {
        my $v = value($block, $name);
        change($block, $name, [expected_lines($v)]) if defined $v && !ref $v;
    }

    # nginx_t_fail is the bundled runner's; under CPAN's, nginx must refuse
    # to start instead
    change($block, 'must_die', '')
        if has($block, 'nginx_t_fail') && $Runner eq 'cpan';

    # "wait" bounds the Redis collection, or is slept before our checks
    # (and before nginx stops under CPAN's runner): the runner would sleep
    # it once more
    $t->{wait} = value($block, 'wait');
    change($block, 'wait', undef) if defined $t->{wait};

    # the rest is for blocks with our sections only
    return unless $t->{ours};

    if ($Redis) {
        $Redis->stop if has($block, 'redis_stopped');
        if (defined(my $ch = value($block, 'redis_subscribe'))) {
            $t->{subscriber} = WsAgent::Redis::Subscriber->new($Redis,
                                                               split ' ', $ch);
        }
    }
    if ($Cluster && grep { has($block, $_) }
                         qw(cluster_subscribe cluster_classic_subscribe)) {
        $t->{cluster_sub} = WsAgent::Cluster::Subscriber->new($Cluster,
            channels => [split ' ', value($block, 'cluster_subscribe') // ''],
            classic => [split ' ', value($block, 'cluster_classic_subscribe')
                                   // '']);
    }
    if ($RedisB && defined(my $ch = value($block, 'redis_b_subscribe'))) {
        $t->{subscriber_b} = WsAgent::Redis::Subscriber->new($RedisB,
                                                             split ' ', $ch);
    }
    if ($Sentinel && defined(my $ch = value($block, 'sentinel_subscribe'))) {
        $Sentinel->{subscriber} =
            WsAgent::Sentinel::Subscriber->start($Sentinel, split ' ', $ch);
    }
    if (has($block, 'ws_backend')) {
        my $steps = WsAgent::Backend::parse_steps(value($block, 'ws_backend'));
        $Backend = WsAgent::Backend->start(
            port => $ENV{TEST_NGINX_BACKEND_PORT}, steps => $steps,
            dir => "$State/backend");
        $t->{backend} = $Backend;
        $Sentinel->{backend} = $Backend if $Sentinel;
    }

    # CPAN's runner reaches the checks only through a request: a block
    # with none gets one, to a location of its own
    my $needs_probe = !grep { has($block, $_) } qw(request raw_request
                          pipelined_requests must_die nginx_t_fail);
    if ($needs_probe) {
        change($block, 'config', (value($block, 'config') // '')
                          . "\n    location = $PROBE { return 204; }\n");
        change($block, 'request', "GET $PROBE");
        change($block, 'error_code', 204);
        $t->{probe} = 1;
    }
}

sub sections {
    my ($block) = @_;
    return grep { !/^_/ && $_ ne 'name' && $_ ne 'description'
                  && ref $block->{$_} eq 'ARRAY' } keys %$block;
}

# A section's value with the $TEST_NGINX_* that are set expanded (refs are
# left alone); an unset one is left as text, or is an error in a
# configuration section.
sub expand {
    my ($block, $name) = @_;
    my $v = value($block, $name);
    return $v if ref $v || !defined $v;
    $v =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        defined $ENV{$1} ? $ENV{$1}
        : $STRICT{$name} ? die "no environment variable $1 for --- $name\n"
        : "\$$1"
    }ge;
    return $v;
}

# --- while nginx runs: the response-body check ------------------------------

sub run_and_check {
    my ($block, $body, $req_idx, $rep_idx, $dry_run) = @_;
    my $t = $Cur;
    return unless $t && refaddr($t->{block}) == refaddr($block) && !$dry_run;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $repeat = Test::Nginx::Socket::repeat_each();
    # the bundled runner repeats the whole block, CPAN's only the request
    # (same nginx, same fixtures): our sections run at its first repetition
    unless ($t->{ran}++) {
        $t->{name} = $block->name
                   . ($repeat > 1 ? " (repeat " . ($rep_idx + 1) . ")" : '');
        start_prometheus($t) if has($block, 'prometheus');
        run_peers($t) if $t->{ours};
        sleep $t->{wait} if $t->{wait} && !$t->{subscriber}
                            && !$t->{subscriber_b} && !$t->{cluster_sub}
                            && !$t->{sse};
        # while nginx and Prometheus still run
        check_prometheus($t) if $t->{prometheus};
        if ($t->{ours}) {
            check_ws_steps($t) if $t->{ws_results};
            check_browser($t) if $t->{browser};
            check_backend($t) if $t->{backend};
            check_redis($t) if $t->{redis_messages};
            check_redis($t, '_b') if $t->{redis_b_messages};
            check_delivered($t) if $t->{delivered};
            check_cluster($t) if $t->{cluster_sub};
            check_sentinel($t) if has($block, 'sentinel_check');
            check_sse($t) if $t->{sse} || has($block, 'sse_check');
            # ws_agent_stream's streams on the block's Redis
            WsAgent::RedisStream::check({ %$t, redis => $Redis })
                if has($block, 'redis_stream');
        }
    }
    # Prometheus goes before nginx (it would log failed scrapes)
    if ($Prometheus) { $Prometheus->stop; undef $Prometheus }
    # the error_log checks come next: under CPAN's runner, which reads
    # error.log with nginx still running, nginx stops first, as the bundled
    # runner stops it, so they see what nginx logs until it exits (at
    # worker exit, say); CPAN's runner starts a new one for the next block
    stop_nginx() if $Runner eq 'cpan' && $rep_idx + 1 >= $repeat;
}

sub run_peers {
    my ($t) = @_;
    my $block = $t->{block};
    start_sse($t) if has($block, 'sse_subscribe');
    if (has($block, 'ws_client')) {
        $t->{ws_results} = run_ws_client($t);
    } elsif (has($block, 'browser')) {
        $t->{browser} = WsAgent::Browser::run(
            url => "http://127.0.0.1:" . server_port()
                   . trim(value($block, 'browser')),
            profile => "$State/browser",
            timeout => value($block, 'browser_timeout') || 30);
    }
    if (my $sub = $t->{cluster_sub}) {
        my $want = cluster_want($block);
        $sub->collect({ map { $_ => $want->{ch}{$_}{n} } keys %{ $want->{ch} } },
                      $t->{wait} || 2, 0.2);
    }
    if (has($block, 'redis_delivered')) {
        $t->{delivered} = collect_delivered($t);
    } else {
        for my $b ('', '_b') {
            my $sub = $t->{"subscriber$b"} or next;
            my @want = expected_lines(value($block, "redis${b}_messages")
                                      // value($block, "redis${b}_messages_like"));
            $t->{"redis${b}_messages"} = [$sub->collect(scalar @want,
                                             $t->{wait} || 2, 0.1)];
        }
    }
    if ($t->{backend}) {
        my @open = $t->{backend}->wait_done(value($block, 'timeout') || 3);
        $t->{backend_open} = \@open;
    }
    settle_sse($t) if $t->{sse};
}

# "--- sse_subscribe": the clients (WsAgent::Sse) started once nginx is up,
# before the client steps or the browser; every one but the "nowait" ones
# live (": live", an answer that is not 200, or closed) before they start,
# bounded by "sse_live_timeout" (default 10 s): one test says so.
sub start_sse {
    my ($t) = @_;
    my ($block, $name) = ($t->{block}, $t->{name});
    my $specs = WsAgent::Sse::parse_clients(value($block, 'sse_subscribe'));
    $Sse = $t->{sse} = WsAgent::Sse->start(port => server_port(),
        dir => "$State/sse", clients => $specs);
    my $bound = WsAgent::Util::parse_duration(
        value($block, 'sse_live_timeout') // '10s');
    my $t0 = time;
    my @late = $Sse->wait_live($bound);
    my $n = grep { !$_->{nowait} } @$specs;
    Test::More::ok(!@late, "$name - sse_subscribe: $n client(s) live or answered")
        or Test::More::diag(scalar(@late) . " of $n not live after "
            . sprintf('%.1f s', time - $t0)
            . ($Sse->children_alive ? '' : ' (a client process is gone)') . ":\n  "
            . join "\n  ", map { $Sse->state_text($_) }
                           @late[0 .. ($#late < 9 ? $#late : 9)]);
}

# After the client steps and the backend: until no client received
# anything but comments for "sse_settle" (default 500ms), at most
# max(wait, 5 s); then the children are stopped and their records read.
sub settle_sse {
    my ($t) = @_;
    my $block = $t->{block};
    my $quiet = WsAgent::Util::parse_duration(value($block, 'sse_settle') // '500ms');
    my $bound = ($t->{wait} // 0) > 5 ? $t->{wait} : 5;
    my ($settled, $secs) = $t->{sse}->settle($quiet, $bound);
    Test::More::note("$t->{name} - sse: still receiving after "
                     . sprintf('%.1f s', $secs)) unless $settled;
    $t->{sse}->stop;
    $t->{sse_clients} = $t->{sse}->clients;
}

# QUIT, then TERM, then KILL, 2 s each, as the bundled runner stops nginx.
# The master is not our child (CPAN's nginx is a daemon): a zombie waiting
# for init to reap it counts as gone.
sub stop_nginx {
    my $pid = master_pid() or return;
    my $gone = sub {
        my $stat = slurp("/proc/$pid/stat") // return 1;
        return $stat =~ /^\d+ \(.*\) Z /;
    };
    for my $sig (qw(QUIT TERM KILL)) {
        return if $gone->();
        kill $sig, $pid;
        return if wait_until(2, $gone);
    }
}

# "--- prometheus: /metrics": a private Prometheus scrapes that path of the
# block's server (job ws_agent) every "prometheus_interval" (default
# 200ms), evaluating the "prometheus_rules" files (paths from the
# repository); the client starts once the target was scraped.
sub start_prometheus {
    my ($t) = @_;
    my $block = $t->{block};
    if (my $why = WsAgent::Prometheus::missing()) {
        die "--- prometheus: $why (scripts/bootstrap.sh prometheus)\n";
    }
    my $since = time;
    $Prometheus = WsAgent::Prometheus->new(
        dir => "$State/prometheus",
        target => '127.0.0.1:' . server_port(),
        path => trim(value($block, 'prometheus')),
        interval => trim(value($block, 'prometheus_interval') // '200ms'),
        rules => [map { Cwd::abs_path($_) // die "no rule file $_\n" }
                  split ' ', value($block, 'prometheus_rules') // '']);
    $Prometheus->start;
    $Prometheus->wait_scraped($since);
    $t->{prometheus} = $Prometheus;
}

# The block's "--- prometheus_check eval" sub, after the client and the
# backend are done: it queries Prometheus and checks with Test::More,
# sub { my ($prom, $name) = @_ }.
sub check_prometheus {
    my ($t) = @_;
    my $name = $t->{name};
    my $check = value($t->{block}, 'prometheus_check');
    if (ref $check eq 'CODE') {
        eval { $check->($t->{prometheus}, $name); 1 }
            or Test::More::fail("$name - prometheus_check ran: $@");
    } elsif (has($t->{block}, 'prometheus_check')) {
        # an "eval" that did not compile leaves no sub: that is a failure
        Test::More::fail("$name - prometheus_check is a sub (--- "
                         . "prometheus_check eval: sub { ... })");
    }
    if (failures() > $t->{failures_before}) {
        my @log = split /\n/, $t->{prometheus}->log_text;
        splice @log, 0, @log - 30 if @log > 30;
        Test::More::diag("prometheus log:\n  " . join "\n  ", @log) if @log;
    }
}

# --- after the block ---------------------------------------------------------

sub after_block {
    my ($block) = @_;
    my $t = $Cur or return;
    undef $Cur;
    if ($Prometheus) { $Prometheus->stop; undef $Prometheus }
    if ($Sse) { $Sse->stop; undef $Sse }
    if ($Backend) { $Backend->stop; undef $Backend }
    $t->{subscriber}->close if $t->{subscriber};
    $t->{subscriber_b}->close if $t->{subscriber_b};
    $t->{cluster_sub}->close if $t->{cluster_sub};
    $Redis->start if $Redis && !$Redis->running;    # after redis_stop(ped)
    # nodes a block killed or stopped are started again (a killed master
    # comes back as a replica of its successor), the cluster ok again
    if ($Cluster && !eval { $Cluster->restore }) {
        Test::More::diag("the cluster did not recover after the block: $@");
        $Cluster->stop_all;
        undef $Cluster;
    }
    # B is the block's own: a later block's 127.0.0.2 finds nothing
    if ($RedisB) { $RedisB->stop; undef $RedisB }
    # (a data node a block killed is started again before the next block)
    if ($Sentinel) {
        print_sentinel_state($t) if failures() > $t->{failures_before};
        stop_sentinel_subscriber();
        $Sentinel->close_switch_watch;
    }
    # the bundled runner prints the block's error.log itself
    print_error_log($t) if $Runner eq 'cpan'
                           && failures() > $t->{failures_before};
}

sub print_error_log {
    my ($t) = @_;
    my $file = server_root() . '/logs/error.log';
    my @lines = split /\n/, slurp($file) // '';
    my $note = '';
    if (@lines > 100) {
        @lines = grep { m{^\d{4}/\d\d/\d\d [\d:]+ \[(?!debug)} } @lines;
        $note = " (debug lines left out: see $file)";
    }
    splice @lines, 0, @lines - 100 if @lines > 100;
    Test::More::diag("--- error.log of " . ($t->{name} // $t->{block}->name)
                     . "$note:\n" . join "\n", @lines);
}

# --- the WebSocket client ----------------------------------------------------

sub master_pid {
    my ($pid) = (slurp(server_root() . '/logs/nginx.pid') // '') =~ /(\d+)/;
    return $pid;
}

# The hooks of one Redis (A: redis_*, B: redis_b_*): stop, start, cmd.
sub redis_hooks {
    my ($prefix, $redis, $sub) = @_;
    return ("${prefix}_stop" => undef, "${prefix}_start" => undef,
            "${prefix}_cmd" => undef) unless $redis;
    return (
        # what Redis sent the subscriber before it died is read to EOF:
        # events published right before the stop are not lost here
        "${prefix}_stop" => sub {
            $sub->drain(0.3) if $sub;
            $redis->stop;
            $sub->drain(0.3) if $sub;
            1;
        },
        # "redis_start tls CERT [auth-clients]": the TLS port with another
        # server certificate from now on (the next block's redis_tls
        # restarts it as that block asks)
        "${prefix}_start" => sub {
            my ($s) = @_;
            $redis->{tls} = $s->{tls} if $s && defined $s->{tls};
            return $redis->start unless $sub;
            # the subscriber is back before nginx can reach Redis again
            $redis->start(closed => 1);
            $sub->subscribe(via_unix => 1);
            $redis->open_port;
            1;
        },
        "${prefix}_cmd" => sub {
            my ($s) = @_;
            my $r = WsAgent::Redis::reply_text($redis->command(@{ $s->{args} }));
            return (0, "redis replied $r") if $r =~ /^\(error\)/
                                              && !defined $s->{want};
            # => /RE/ matches the reply, => !/RE/ must not; else exact
            if (defined $s->{want} && $s->{want} =~ m{^(!?)/(.*)/$}s) {
                my ($neg, $re) = ($1, $2);
                return (1, "redis replied $r") if ($r =~ /$re/s xor $neg);
                return (0, "redis replied '$r', want $s->{want}");
            }
            return (0, "redis replied '$r', want '$s->{want}'")
                if defined $s->{want} && $r ne $s->{want};
            return (1, "redis replied $r");
        },
    );
}

# dns_set NAME ADDR... | dns_remove NAME | dns_queried NAME [TYPE] [>= N]
# | dns_query NAME TYPE => RCODE [ADDR...] (a query of the test's own)
sub dns_hooks {
    return map { ("dns_$_" => undef) } qw(set remove queried query)
        unless $Dns;
    return (
        dns_set => sub {
            my ($s) = @_;
            $Dns->set($s->{name}, @{ $s->{values} });
            (1, "$s->{name} is @{ $s->{values} }");
        },
        dns_remove => sub {
            my ($s) = @_;
            $Dns->remove($s->{name});
            (1, "$s->{name} is gone (NXDOMAIN)");
        },
        dns_queried => sub {
            my ($s) = @_;
            my @q = $Dns->queries;
            my $n = grep { $_->[1] eq $s->{type} && lc $_->[2] eq lc $s->{name} }
                    @q;
            my $ok = $s->{cmp} eq '==' ? $n == $s->{n} : $n >= $s->{n};
            return (1, "$n $s->{type} queries for $s->{name}") if $ok;
            return (0, "$n $s->{type} queries for $s->{name}, want "
                       . "$s->{cmp} $s->{n}; the responder's log:\n    "
                       . join "\n    ", map { "@$_" } @q);
        },
        dns_query => sub {
            my ($s) = @_;
            my $r = WsAgent::Dns::query($Dns->port, $s->{name}, $s->{type}, 1);
            my $got = $r->{error} // join ' ', $r->{rcode}, @{ $r->{answers} };
            $got .= ' (not authoritative)' if !$r->{error} && !$r->{aa};
            $got .= " (ttl @{ $r->{ttl} })"
                if !$r->{error} && grep { $_ != 1 } @{ $r->{ttl} };
            return $got eq $s->{want} ? (1, "got $got")
                                      : (0, "got '$got', want '$s->{want}'");
        },
    );
}

sub ws_hooks {
    my ($t) = @_;
    return {
        nginx_reload => sub {
            my $pid = master_pid() or return (0, 'nginx_reload: no nginx.pid');
            kill 'HUP', $pid;
            1;
        },
        # SIGKILL every worker of this block's master (it spawns new ones)
        nginx_kill_workers => sub {
            my @w = worker_pids(master_pid() // 0);
            return (0, 'nginx_kill_workers: no worker found') unless @w;
            kill 'KILL', @w;
            1;
        },
        # a plain GET in the middle of the steps; the body must match
        # ("within T": asked again every 50 ms until it does, T at most)
        http_get => sub {
            my ($s) = @_;
            my $deadline = time + (defined $s->{within}
                                   ? parse_duration($s->{within}) : 0);
            while (1) {
                my $res = WsAgent::Http::send_request(server_port(),
                    WsAgent::Http::build_request("GET $s->{path}"), 3);
                my $body = $res->{body} // '';
                return (1, "GET $s->{path}: $res->{status}")
                    if !$res->{error}
                       && (!defined $s->{want} || $body =~ /$s->{want}/s);
                if (time >= $deadline) {
                    return (0, "GET $s->{path}: $res->{error}") if $res->{error};
                    return (0, "GET $s->{path}: $res->{status}, body does not "
                               . "match /$s->{want}/"
                               . (defined $s->{within} ? " within $s->{within}" : '')
                               . ":\n$body");
                }
                sleep 0.05;
            }
        },
        redis_hooks('redis', $Redis, $t->{subscriber}),
        redis_hooks('redis_b', $RedisB, $t->{subscriber_b}),
        dns_hooks(),
        sentinel_hooks(),
        cluster_hooks($t),
        sse_wait => $t->{sse} && sub {
            my ($s) = @_;
            $t->{sse}->wait_events($s->{name}, $s->{n}, $s->{within});
        },
    };
}

# The Sentinel topology's steps (not in a parallel copy: the topology's
# state is the runner's).
sub sentinel_hooks {
    return () unless $Sentinel;
    return map { my $m = $_; ("sentinel_$m" => sub {
        return (0, "sentinel_$m: not in a parallel client")
            unless $$ == $MainPid;
        return $Sentinel->$m($_[0]{secs});
    }) } qw(kill_master failover wait_switch restart_old_master);
}

sub run_ws_client {
    my ($t) = @_;
    my $text = value($t->{block}, 'ws_client');
    my $steps = WsAgent::WsClient::parse_steps($text);
    my %run = (port => server_port(), hooks => ws_hooks($t));
    my $meanwhile = has($t->{block}, 'meanwhile')
        ? WsAgent::WsClient::parse_steps(value($t->{block}, 'meanwhile'))
        : undef;
    unless (@$steps && $steps->[0]{op} eq 'parallel') {
        die "--- meanwhile runs beside a 'parallel N' client: the first "
            . "ws_client step must be one\n" if $meanwhile;
        $steps = WsAgent::WsClient::parse_steps($text =~ s/\$i\b/1/gr);
        return { steps => $steps,
                 results => WsAgent::WsClient->run(%run, steps => $steps) };
    }

    # "parallel N": N copies of the remaining steps, each in its own process
    my $n = shift(@$steps)->{n};
    my $dir = "$State/clients";
    make_path($dir);
    my %kids;
    for my $i (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            # the child reports through a file and never returns to the runner
            srand;
            eval {
                my $r = eval {
                    my $mine = WsAgent::WsClient::parse_steps(
                        ($text =~ s/\$i\b/$i/gr) =~ s/^\s*parallel\s+\d+\s*$//mr);
                    WsAgent::WsClient->run(%run, steps => $mine);
                } || [{ ok => 0, msg => "client died: $@" }];
                Storable::nstore($r, "$dir/client-$i");
            };
            print STDERR "parallel client $i: $@" if $@;
            POSIX::_exit(0);
        }
        $kids{$pid} = $i;
    }
    # "--- meanwhile": steps of the test's own (sleep, dns_*, redis_*,
    # http_get ...), here, while the copies run
    my $mw = $meanwhile && WsAgent::WsClient->run(%run, steps => $meanwhile);
    wait_until(60, sub {
        delete $kids{$_} for grep { waitpid($_, POSIX::WNOHANG()) } keys %kids;
        !%kids;
    });
    kill_pid($_) for keys %kids;
    my @all = map { -e "$dir/client-$_" ? Storable::retrieve("$dir/client-$_")
                    : [{ ok => 0, msg => 'client did not finish' }] } 1 .. $n;
    unlink glob "$dir/client-*";
    my @results;
    for my $k (0 .. $#$steps) {
        my @bad = grep { !($all[$_][$k] // {})->{ok}
                         && !($all[$_][$k] // {})->{skip} } 0 .. $n - 1;
        my @skipped = grep { ($all[$_][$k] // {})->{skip} } 0 .. $n - 1;
        push @results, @skipped == $n ? { skip => 1, msg => 'earlier steps failed' }
            : { ok => !@bad, msg => @bad . " of $n copies failed:\n"
                . join "\n", map { "  copy " . ($_ + 1) . ": "
                                   . ($all[$_][$k] // {})->{msg} // 'no result' }
                             @bad[0 .. ($#bad < 4 ? $#bad : 4)] };
    }
    return { steps => $steps, results => \@results, parallel => $n,
             $mw ? (meanwhile => [$meanwhile, $mw]) : () };
}

# --- checks -----------------------------------------------------------------

sub short { my $s = shift; length $s > 70 ? substr($s, 0, 67) . '...' : $s }

sub check_ws_steps {
    my ($t) = @_;
    my ($steps, $results) = @{ $t->{ws_results} }{qw(steps results)};
    my $tag = $t->{ws_results}{parallel} ? " (x$t->{ws_results}{parallel})" : '';
    my @all = map { [$steps->[$_], $results->[$_],
                     "ws step " . ($_ + 1) . $tag] } 0 .. $#$steps;
    if (my $mw = $t->{ws_results}{meanwhile}) {
        push @all, map { [$mw->[0][$_], $mw->[1][$_],
                          "meanwhile step " . ($_ + 1)] } 0 .. $#{ $mw->[0] };
    }
    for my $one (@all) {
        my ($step, $r, $what) = @$one;
        my $label = "$t->{name} - $what: " . short($step->{text});
        if ($r->{skip}) {
            Test::More->builder->skip("$label ($r->{msg})");
            next;
        }
        Test::More::ok($r->{ok}, $label)
            or Test::More::diag("step '$step->{text}':\n  $r->{msg}");
    }
}

# The block's "--- sentinel_check eval" sub, after the client and the
# backend are done, while nginx runs: sub { my ($sentinel, $name) = @_ },
# $sentinel a WsAgent::Sentinel (->subscriber, ->backend, ->history,
# tally()), checks with Test::More.
sub check_sentinel {
    my ($t) = @_;
    my $name = $t->{name};
    my $check = value($t->{block}, 'sentinel_check');
    if (ref $check eq 'CODE') {
        eval { $check->($Sentinel, $name); 1 }
            or Test::More::fail("$name - sentinel_check ran: $@");
    } else {
        Test::More::fail("$name - sentinel_check is a sub (--- "
                         . "sentinel_check eval: sub { ... })");
    }
}

sub print_sentinel_state {
    my ($t) = @_;
    my $h = join "\n  ", map { my $x = $_; join ' ', map { "$_=$x->{$_}" }
                                sort keys %$x } @{ $Sentinel->history };
    Test::More::diag("sentinel topology (nodes " . join(' ', $Sentinel->node_ports)
        . ", sentinels " . join(' ', $Sentinel->sentinel_ports) . "), history:\n  "
        . $h . "\n" . $Sentinel->logs_tail);
}

# The SSE clients' records go to the block's "--- sse_check eval" sub,
# which checks them with Test::More: sub { my ($clients, $name) = @_ },
# $clients->{NAME}{connections, events, ids}.
sub check_sse {
    my ($t) = @_;
    my $name = $t->{name};
    my $check = value($t->{block}, 'sse_check');
    return Test::More::fail("$name - sse_check has no --- sse_subscribe")
        unless $t->{sse};
    if (ref $check eq 'CODE') {
        eval { $check->($t->{sse_clients}, $name); 1 }
            or Test::More::fail("$name - sse_check ran: $@");
    } elsif (has($t->{block}, 'sse_check')) {
        Test::More::fail("$name - sse_check is a sub (--- sse_check eval: "
                         . "sub { ... })");
    }
    Test::More::diag("sse clients:\n  " . join "\n  ", $t->{sse}->summary(20))
        if failures() > $t->{failures_before};
}

# The page's result goes to the block's "--- browser_check eval" sub, which
# checks it with Test::More: sub { my ($result, $name) = @_; ... }
sub check_browser {
    my ($t) = @_;
    my ($name, $r) = ($t->{name}, $t->{browser});
    Test::More::note("$name - browser: " . ($r->{chromium} // 'unknown')
                     . ', ' . ($r->{ms} // '?') . ' ms');
    Test::More::ok(!$r->{error} && $r->{page},
                   "$name - browser: the page ran to its result")
        or Test::More::diag("browser error: " . ($r->{error} // 'no result'));
    my $check = value($t->{block}, 'browser_check');
    if (ref $check eq 'CODE' && $r->{page}) {
        eval { $check->($r, $name); 1 }
            or Test::More::fail("$name - browser_check ran: $@");
    }
    Test::More::diag("browser console:\n  " . join("\n  ", @{ $r->{console} || [] })
                     . ($r->{stderr} ? "\ndriver stderr:\n$r->{stderr}" : ''))
        if failures() > $t->{failures_before};
}

sub check_backend {
    my ($t) = @_;
    my ($name, $b, $block) = ($t->{name}, $t->{backend}, $t->{block});
    Test::More::diag("$name - backend connection(s) @{ $t->{backend_open} } "
                     . "still open when checked")
        if @{ $t->{backend_open} || [] };
    if (defined(my $n = value($block, 'ws_backend_connections'))) {
        Test::More::is($b->connections, trim($n),
                       "$name - ws_backend_connections");
    }
    my $first = $b->transcript(1);
    if (has($block, 'ws_backend_transcript')) {
        my $want = join '', map { "$_\n" }
                   expected_lines(value($block, 'ws_backend_transcript'));
        my $got = defined $first ? join('', map { "$_\n" } @$first)
                                 : "(no backend connection)\n";
        Test::Base::is($got, $want, "$name - ws_backend_transcript");
    }
    if (has($block, 'ws_backend_transcript_like')) {
        my @re = expected_lines(value($block, 'ws_backend_transcript_like'));
        my @got = @{ $first || [] };
        my @bad = grep { ($got[$_] // '') !~ /$re[$_]/ } 0 .. $#re;
        Test::More::ok(!@bad && @got == @re, "$name - ws_backend_transcript_like")
            or Test::More::diag("transcript:\n  " . join("\n  ", @got)
                . "\nexpected lines matching:\n  " . join "\n  ", @re);
    }
    if (has($block, 'ws_backend_transcripts')) {
        # several connections: compared as a multiset (accept order is racy)
        my $want = value($block, 'ws_backend_transcripts');
        my @want = sort map { join '', map { "$_\n" } expected_lines($_) }
                   ref $want ? @$want : split /\n\s*\n/, $want;
        my @got = sort map { join '', map { "$_\n" } @{ $b->transcript($_) } }
                  1 .. $b->connections;
        Test::Base::is(join("----\n", @got), join("----\n", @want),
                       "$name - ws_backend_transcripts (any order)")
            or Test::More::diag(transcripts_summary(\@got, \@want));
    }
    if (has($block, 'ws_backend_request_headers')) {
        my $req = $b->request(1);
        my @bad;
        for my $h (parse_header_list(value($block, 'ws_backend_request_headers'),
                                     'lines')) {
            my ($hname, $want) = @$h;
            my @got = map { $_->[1] } grep { lc $_->[0] eq lc $hname }
                      @{ $req ? $req->{headers} : [] };
            push @bad, defined $want
                ? (grep({ $_ eq $want } @got) ? () : "$hname: $want (got: "
                   . (@got ? join(', ', @got) : 'none') . ")")
                : (@got ? "!$hname (got: @got)" : ());
        }
        Test::More::ok($req && !@bad, "$name - ws_backend_request_headers")
            or Test::More::diag($req ? "request:\n$req->{request_line}\n"
                . join('', map { "$_->[0]: $_->[1]\n" } @{ $req->{headers} })
                . "mismatch:\n  " . join("\n  ", @bad)
                : 'the backend got no request');
    }
}

# How many transcripts are not the expected ones (the diff says how).
sub transcripts_summary {
    my ($got, $want) = @_;
    my %left;
    $left{$_}++ for @$want;
    my $odd = grep { !($left{$_} && $left{$_}--) } @$got;
    return "$odd of " . @$got . " transcripts are not expected ones"
         . (@$got == @$want ? '' : " (want " . @$want . ")");
}

# Pub/sub orders messages within a channel, not across channels: both
# sides are compared channel by channel (stable, in the order first seen
# in the expectation).
sub by_channel {
    my ($first, @pairs) = @_;
    my %rank;
    my $n = 0;
    $rank{$_} //= $n++ for @$first, map { $_->[0] } @pairs;
    my $i = 0;
    return map { $_->[1] }
           sort { $rank{$a->[1][0]} <=> $rank{$b->[1][0]} || $a->[0] <=> $b->[0] }
           map { [$i++, $_] } @pairs;
}

# A's messages (redis_messages*), or B's ($b = '_b': redis_b_messages*)
sub check_redis {
    my ($t, $b) = @_;
    $b //= '';
    my ($name, $block) = ($t->{name}, $t->{block});
    my ($exact, $like) = ("redis${b}_messages", "redis${b}_messages_like");
    my @wantch = map { (split ' ', $_, 2)[0] }
                 expected_lines(value($block, $exact) // value($block, $like));
    my $msgs = $t->{$exact} = [by_channel(\@wantch, @{ $t->{$exact} })];
    my @got = map { "$_->[0] $_->[1]" } @$msgs;
    if (has($block, $exact)) {
        Test::Base::is(join('', map { "$_\n" } @got),
            join('', map { "$_\n" } expected_lines(value($block, $exact))),
            "$name - $exact");
    }
    if (has($block, $like)) {
        my @want = expected_lines(value($block, $like));
        my @bad = grep {
            my ($ch, $re) = split ' ', $want[$_], 2;
            my ($gch, $gmsg) = @{ $msgs->[$_] || [] };
            !defined $gch || $gch ne $ch || $gmsg !~ /$re/;
        } 0 .. $#want;
        Test::More::ok(!@bad && @got == @want, "$name - $like")
            or Test::More::diag(@got + @want <= 60
                ? "got:\n  " . join("\n  ", @got)
                  . "\nwant:\n  " . join "\n  ", @want
                : redis_like_summary(\@want, $msgs));
    }
}

# "--- redis_delivered": lines "CHANNEL N [a>=K] [b>=K]": the events of
# each channel (seq 1 .. N) were published once each, on A (the
# subscriber of redis_subscribe) or, after the name moved, on B
# (redis_b_subscribe).  Collected until every channel has N different
# messages (bounded by "wait", default 2 s), then 100 ms more.
sub delivered_want {
    my ($block) = @_;
    my %want;
    for (expected_lines(value($block, 'redis_delivered'))) {
        my ($ch, $n, @opt) = split ' ';
        die "redis_delivered '$_': want CHANNEL N [a>=K] [b>=K]\n"
            unless defined $n && $n =~ /^\d+$/
                   && !grep { !/^[ab]>=\d+$/ } @opt;
        $want{$ch} = { n => $n, map { /^([ab])>=(\d+)$/ ? ($1 => $2) : () } @opt };
    }
    return \%want;
}

sub collect_delivered {
    my ($t) = @_;
    my $want = delivered_want($t->{block});
    my @subs = grep { $_ } @$t{qw(subscriber subscriber_b)};
    my $enough = sub {
        my %seen;
        $seen{$_->[0]}{$_->[1]} = 1 for map { @{ $_->{messages} } } @subs;
        !grep { keys %{ $seen{$_} || {} } < $want->{$_}{n} } keys %$want;
    };
    my $deadline = time + ($t->{wait} || 2);
    while (time < $deadline && !$enough->()) {
        $_->collect(1e9, 0.05, 0) for @subs;
    }
    $_->collect(1e9, 0.1, 0) for @subs;
    return { want => $want,
             a => [$t->{subscriber} ? @{ $t->{subscriber}{messages} } : ()],
             b => [$t->{subscriber_b} ? @{ $t->{subscriber_b}{messages} } : ()] };
}

# The block's part of error.log so far (nginx still runs).
sub block_log {
    my ($t) = @_;
    my $all = slurp(server_root() . '/logs/error.log') // '';
    return length $all >= $t->{log_offset} ? substr $all, $t->{log_offset}
                                           : $all;
}

# Per channel: A's seqs rise, B's rise; A's then B's, less B's copies of
# messages A had, are 1 .. N.  A copy on B is an event sent again after the
# reconnect (it was in flight when A went away): there may be no more of
# them than the events the log says waited at the reconnect ("connected
# again, N event(s) waiting") or were "sent again".
sub check_delivered {
    my ($t) = @_;
    my ($name, $d) = ($t->{name}, $t->{delivered});
    my $want = $d->{want};
    my (%a, %b, @bad);
    push @{ $a{$_->[0]} }, $_->[1] for @{ $d->{a} };
    push @{ $b{$_->[0]} }, $_->[1] for @{ $d->{b} };
    my $seq = sub { $_[0] =~ /"seq":(\d+)/ ? $1 : -1 };
    my $dupes = 0;
    for my $ch (sort keys %$want) {
        my @a = @{ $a{$ch} || [] };
        my @b = @{ $b{$ch} || [] };
        my %on_a = map { $_ => 1 } @a;
        my @copies = grep { $on_a{$_} } @b;
        $dupes += @copies;
        my @sa = map { $seq->($_) } @a;
        my @sb = map { $seq->($_) } @b;
        my @order = (@sa, map { $seq->($_) } grep { !$on_a{$_} } @b);
        my $n = $want->{$ch}{n};
        my @why;
        push @why, "A's seqs do not rise: @sa"
            if grep { $sa[$_] <= $sa[$_ - 1] } 1 .. $#sa;
        push @why, "B's seqs do not rise: @sb"
            if grep { $sb[$_] <= $sb[$_ - 1] } 1 .. $#sb;
        push @why, "A then B (less copies) is seq @order, want 1..$n"
            if "@order" ne join ' ', 1 .. $n;
        push @why, "A has " . @a . ", want >= $want->{$ch}{a}"
            if defined $want->{$ch}{a} && @a < $want->{$ch}{a};
        push @why, "B has " . @b . ", want >= $want->{$ch}{b}"
            if defined $want->{$ch}{b} && @b < $want->{$ch}{b};
        push @bad, "$ch: " . join '; ', @why if @why;
    }
    my @other = grep { !$want->{$_} } sort keys %{ { %a, %b } };
    push @bad, "messages on channels not expected: @other" if @other;
    Test::More::note("$name - redis_delivered: " . @{ $d->{a} } . " on A, "
                     . @{ $d->{b} } . " on B, $dupes sent again");
    Test::More::ok(!@bad, "$name - redis_delivered (" . keys(%$want)
                          . " channels, A then B, in order, none lost)")
        or Test::More::diag(@bad . " channel(s) differ:\n  "
                            . join "\n  ", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
    my $log = block_log($t);
    my $again = 0;
    $again += $1 while $log =~ /connected again, (\d+) event\(s\) waiting/g;
    $again += $1 while $log =~ /(\d+) event\(s\) sent again/g;
    Test::More::ok($dupes <= $again, "$name - redis_delivered: the $dupes "
                   . "event(s) on both A and B are at most the $again the "
                   . "log says waited at the reconnect or were sent again");
}

# Too many messages to list: the counts, then per channel that differs
# its counts and its first difference.
sub redis_like_summary {
    my ($want, $got) = @_;
    my (%w, %g, @order);
    for (@$want) {
        my ($ch, $re) = split ' ', $_, 2;
        push @order, $ch unless $w{$ch};
        push @{ $w{$ch} }, $re;
    }
    push @{ $g{$_->[0]} }, $_->[1] for @$got;
    push @order, grep { !$w{$_} } sort keys %g;
    my @lines;
    for my $ch (@order) {
        my @re = @{ $w{$ch} || [] };
        my @m = @{ $g{$ch} || [] };
        my ($k) = grep { $_ > $#m || $_ > $#re || $m[$_] !~ /$re[$_]/ }
                  0 .. ($#m > $#re ? $#m : $#re);
        next unless defined $k;
        push @lines, "$ch: got " . @m . ", want " . @re
                     . "; first difference at #" . ($k + 1) . ":",
                     "    want: " . ($re[$k] // '(none)'),
                     "    got:  " . ($m[$k] // '(none)');
    }
    my $bad = @lines / 3;
    splice @lines, 30 if @lines > 30;
    return "got " . @$got . " messages, want " . @$want . "; $bad of "
         . @order . " channels differ\n  " . join "\n  ", @lines;
}

# --- the Redis Cluster: steps and checks --------------------------------------

# "CHANNEL" or "PORT" of a step: a port as it is, a channel's owner master.
sub cluster_node {
    my ($what) = @_;
    return $what if $what =~ /^\d+$/;
    # other:CHANNEL: a master that does not own the channel's slot
    return $Cluster->next_master(cluster_node($1)) if $what =~ /^other:(.+)$/;
    return $Cluster->owner($what) // die "no master owns the slot of $what\n";
}

# cluster_move CH... to next|PORT [hold DURATION]   each channel's slot to
#                                          another master; "hold": that long
#                                          between its keys' MIGRATE and
#                                          SETSLOT NODE (the owner answers ASK)
# cluster_reshard N from CH|PORT to next|PORT   redis-cli --cluster reshard
# cluster_failover CH|PORT                 CLUSTER FAILOVER on a replica of it
# cluster_kill CH|PORT                     SIGKILL of that master (by PID)
# cluster_wait_promoted [SECS]             its slots have a live master again
# cluster_stop PORT | cluster_start PORT   TERM (then KILL) / the same config
# cluster_wait_ok [SECS]                   cluster_state:ok everywhere, agreed
# cluster_cmd CH|other:CH|PORT ARGS [=> REPLY | =~ REGEX]   a command on
#                                          that node (other:CH: a master not
#                                          owning CH's slot)
# cluster_keyslot KEY [=> SLOT]            the harness's CRC16 against CLUSTER KEYSLOT
sub cluster_hooks {
    my ($t) = @_;
    my @ops = qw(move reshard failover kill wait_promoted stop start wait_ok
                 cmd keyslot status_nodes);
    return map { ("cluster_$_" => undef) } @ops unless $Cluster;
    my $sub = $t->{cluster_sub};
    my $follow = sub { if ($sub) { $sub->pump(0.01); $sub->follow } };
    my $dest = sub {
        my ($to, $from) = @_;
        return $to eq 'next' ? $Cluster->next_master($from) : cluster_node($to);
    };
    my %h = (
        move => sub {
            my ($arg) = @_;
            my ($chs, $to, $hold) = $arg =~ /^(.+?)\s+to\s+(\S+)(?:\s+hold\s+(\S+))?$/
                or return (0, "want: cluster_move CHANNEL... to next|PORT [hold DURATION]");
            my $secs = defined $hold ? WsAgent::Util::parse_duration($hold) : 0;
            my @done;
            for my $ch (split ' ', $chs) {
                my $slot = WsAgent::Cluster::key_slot($ch);
                my $from = $Cluster->owner_of_slot($slot);
                my $dst = $dest->($to, $from);
                $sub->pump(0.01) if $sub;
                $Cluster->move_slot($slot, $dst,
                    $sub ? sub { $sub->before_move($slot, $dst) } : undef,
                    $secs ? sub { $sub ? $sub->pump($secs) : sleep $secs } : undef);
                push @done, "$ch (slot $slot) $from -> $dst"
                            . ($secs ? " (held $hold)" : '');
            }
            $follow->();
            (1, join '; ', @done);
        },
        reshard => sub {
            my ($arg) = @_;
            my ($n, $from, $to) = $arg =~ /^(\d+)\s+from\s+(\S+)\s+to\s+(\S+)$/
                or return (0, "want: cluster_reshard N from CH|PORT to next|PORT");
            $from = cluster_node($from);
            $to = $dest->($to, $from);
            my %moving = map { $_ => 1 } $Cluster->first_slots($from, $n);
            my @hit = grep { $moving{WsAgent::Cluster::key_slot($_)} }
                      @{ $sub ? $sub->{channels} : [] };
            my $t0 = time;
            # the subscriber follows while redis-cli runs (it is told by the
            # sunsubscribe a node pushes when it gives a slot up)
            my ($rc, $out) = $Cluster->reshard_cli($n, $from, $to,
                $sub ? sub { $sub->pump(0.02) } : undef);
            $follow->();
            return (0, "redis-cli --cluster reshard: exit $rc:\n$out") if $rc;
            (1, sprintf "%d slots %d -> %d in %.1f s, %d subscribed channel(s) "
                . "among them", $n, $from, $to, time - $t0, scalar @hit);
        },
        failover => sub {
            my ($arg) = @_;
            my $m = cluster_node(trim($arg));
            my $new = $Cluster->failover($m);
            # what the demoted master served until now (a replica serves
            # SPUBLISH too: the check says how many it served after this)
            $t->{cluster_demoted}{$m} = $Cluster->spublish_calls($m);
            $follow->();
            (1, "master $m -> $new");
        },
        kill => sub {
            my ($arg) = @_;
            my $m = cluster_node(trim($arg));
            $sub->pump(0.01) if $sub;
            my $pid = $Cluster->kill_node($m);
            $t->{cluster_killed} = $m;
            (1, "SIGKILL to $m (pid $pid)");
        },
        wait_promoted => sub {
            my ($arg) = @_;
            my $secs = $arg =~ /(\d+(?:\.\d+)?)/ ? $1 : 15;
            my $m = $t->{cluster_killed} // return (0, 'no cluster_kill before');
            my $t0 = time;
            my $ok = $Cluster->wait_promoted($m, $secs);
            $follow->();
            return $ok ? (1, sprintf "slots of $m have a master again after %.1f s",
                          time - $t0)
                       : (0, "slots of $m have no master after $secs s");
        },
        stop => sub { $Cluster->stop_node(cluster_node(trim($_[0]))) },
        start => sub { $Cluster->start_node(trim($_[0])) },
        wait_ok => sub {
            my ($arg) = @_;
            my $secs = $arg =~ /(\d+(?:\.\d+)?)/ ? $1 : 15;
            my $ok = $Cluster->wait_ok($secs);
            $follow->();
            $ok ? 1 : (0, "not ok after $secs s:\n" . $Cluster->why_not_ok);
        },
        cmd => sub {
            my ($arg) = @_;
            my ($words, $op, $want) = $arg =~ /^(.*?)(?:\s+(=>|=~)\s+(.*))?$/;
            my ($node, @args) = WsAgent::WsClient::_words($words);
            my $r = WsAgent::Redis::reply_text($Cluster->cmd(cluster_node($node), @args));
            if (($op // '') eq '=~') {
                return $r =~ /$want/ ? (1, "node replied $r")
                                     : (0, "node replied '$r', want /$want/");
            }
            return (0, "node replied $r") if $r =~ /^\(error\)/ && !defined $want;
            return (0, "node replied '$r', want '$want'")
                if defined $want && $r ne trim($want);
            (1, "node replied $r");
        },
        # the status page's "nodes" of its first worker: every master of the
        # cluster now, connected, "role":"master"; no other node listed
        # as a connected master
        status_nodes => sub {
            my ($path) = @_;
            my $res = WsAgent::Http::send_request(server_port(),
                WsAgent::Http::build_request("GET $path"), 3);
            my $body = $res->{body} // '';
            my ($arr) = $body =~ /"nodes":\[(.*?)\]/s
                or return (0, "GET $path: no \"nodes\" in:\n$body");
            my @nodes;
            for my $o ($arr =~ /\{[^{}]*\}/g) {
                # one match at a time: $1 is not copied in a list
                my ($address) = $o =~ /"address":"([^"]*)"/;
                my ($role) = $o =~ /"role":"([^"]*)"/;
                push @nodes, { address => $address // '', role => $role // '',
                               connected => $o =~ /"connected":true/ ? 1 : 0 };
            }
            my %master = map { ("127.0.0.1:$_" => 1) } $Cluster->masters;
            my @bad;
            for my $a (sort keys %master) {
                push @bad, "master $a is not listed as a connected master"
                    unless grep { $_->{address} eq $a && $_->{connected}
                                  && $_->{role} eq 'master' } @nodes;
            }
            for my $n (grep { !$master{$_->{address}} && $_->{connected}
                              && $_->{role} eq 'master' } @nodes) {
                my ($port) = $n->{address} =~ /:(\d+)$/;
                my $role = $port ? $Cluster->cmd($port, 'ROLE') : undef;
                push @bad, "$n->{address} is listed as a connected master; "
                    . "its ROLE says " . (ref $role eq 'ARRAY' ? $role->[0]
                                          : WsAgent::Redis::reply_text($role));
            }
            my $list = join ' ', map { "$_->{address}($_->{role},"
                . ($_->{connected} ? 'connected' : 'not connected') . ")" } @nodes;
            return @bad ? (0, join("; ", @bad) . "\n  status nodes: $list\n  "
                              . "masters now: " . join(' ', sort keys %master))
                        : (1, "nodes: $list");
        },
        keyslot => sub {
            my ($arg) = @_;
            my ($key, $want) = $arg =~ /^(\S+)(?:\s+=>\s+(\d+))?$/;
            my $mine = WsAgent::Cluster::key_slot($key);
            my ($p) = $Cluster->live_ports;
            my $theirs = $Cluster->cmd($p, 'CLUSTER', 'KEYSLOT', $key);
            return (0, "CRC16 says $mine, CLUSTER KEYSLOT says "
                       . WsAgent::Redis::reply_text($theirs)) if "$theirs" ne "$mine";
            return (0, "slot $mine, want $want") if defined $want && $want != $mine;
            (1, "slot $mine");
        },
    );
    return map { my $f = $h{$_}; ("cluster_$_" => sub { $f->($_[0]{arg} // '') }) }
           keys %h;
}

# "--- cluster_delivered": lines "CHANNEL N [master] [last] [nodes>=K]",
# and "every master" (each master of the map delivered some message).
# master: every message came from the channel's master (the map when
# checked); last: seq N did (the slot's master at the end: after a move or
# a failover, the new one); nodes>=K: that many nodes delivered some.
sub cluster_want {
    my ($block) = @_;
    my %want = (ch => {});
    for (expected_lines(value($block, 'cluster_delivered'))) {
        if ($_ eq 'every master') { $want{every_master} = 1; next }
        my ($ch, $n, @opt) = split ' ';
        die "cluster_delivered '$_': want CHANNEL N [master] [last] "
            . "[nodes>=K], or 'every master'\n"
            unless defined $n && $n =~ /^\d+$/
                   && !grep { !/^(master|last|nodes>=\d+)$/ } @opt;
        $want{ch}{$ch} = { n => $n, map { /^nodes>=(\d+)$/ ? (nodes => $1)
                                          : ($_ => 1) } @opt };
    }
    return \%want;
}

# What the block's error.log says was lost: the queue's drops and refused
# PUBLISHes (each "N event(s) lost", "dropped N ...").
sub logged_losses {
    my ($log) = @_;
    my $n = 0;
    $n += $1 while $log =~ /\((\d+) event\(s\) lost\)/g;
    $n += $1 while $log =~ /dropped (\d+) (?:oldest unsent|new) event\(s\)/g;
    $n += $1 while $log =~ /(\d+) event\(s\) (?:lost|not sent to Redis)/g;
    return $n;
}

# Per channel, seq 1 .. N each delivered (on any node of the owner's shard,
# as the subscriber followed it), per node in rising order (copies of a
# message already delivered left out), nothing on channels not listed;
# "--- cluster_loss: accounted" lets messages be missing up to what the
# log counts as lost (default "none").  With "--- cluster_classic_subscribe",
# the classic (P)SUBSCRIBEs got nothing.
sub check_cluster {
    my ($t) = @_;
    my ($name, $block, $sub) = ($t->{name}, $t->{block}, $t->{cluster_sub});
    if (has($block, 'cluster_classic_subscribe')) {
        my @c = $sub->classic_messages;
        Test::More::ok(!@c, "$name - cluster: the classic SUBSCRIBE/PSUBSCRIBE "
                            . "on every node got nothing")
            or Test::More::diag(scalar(@c) . " classic message(s), first: "
                                . join ' ', @{ $c[0] }[0 .. 2]);
    }
    return unless has($block, 'cluster_delivered');
    my $want = cluster_want($block);
    my $seq = sub { $_[0] =~ /"seq":(\d+)/ ? $1 : -1 };
    my (%first, %by_node, %nodes_of, %per_node_seen, @bad, %masters_hit);
    my ($copies, $total) = (0, 0);
    my %map_owner = map { $_ => $Cluster->owner($_) } keys %{ $want->{ch} };
    for my $m ($sub->messages) {
        my ($port, $ch, $msg) = @$m;
        $total++;
        unless ($want->{ch}{$ch}) { push @bad, "a message on $ch, not listed"; next }
        my $s = $seq->($msg);
        # a copy on the same node: an event sent again
        if ($per_node_seen{$port}{"$ch $msg"}++) { $copies++; next }
        push @{ $by_node{$port}{$ch} }, $s;
        $nodes_of{$ch}{$port}++;
        $first{$ch}{$s} //= $port;
        $masters_hit{$port}++ if ($map_owner{$ch} // 0) == $port;
    }
    my ($missing, $got, $sent) = (0, 0, 0);
    my %miss_by_ch;
    for my $ch (sort keys %{ $want->{ch} }) {
        my $w = $want->{ch}{$ch};
        my @have = sort { $a <=> $b } keys %{ $first{$ch} || {} };
        my %have = map { $_ => 1 } @have;
        my @miss = grep { !$have{$_} } 1 .. $w->{n};
        my @extra = grep { $_ < 1 || $_ > $w->{n} } @have;
        $sent += $w->{n};
        $got += @have - @extra;
        $missing += @miss;
        $miss_by_ch{$ch} = \@miss if @miss;
        push @bad, "$ch: seq @extra not expected (1..$w->{n})" if @extra;
        for my $port (sort keys %by_node) {
            my @s = @{ $by_node{$port}{$ch} || [] };
            push @bad, "$ch on $port: seqs do not rise: @s"
                if grep { $s[$_] <= $s[$_ - 1] } 1 .. $#s;
        }
        if ($w->{master}) {
            my $o = $map_owner{$ch} // 'none';
            my @not = grep { !grep { $_ == $o } $Cluster->shard($o) }
                      keys %{ $nodes_of{$ch} || {} };
            push @bad, "$ch: delivered by @not, not by the shard of its owner $o" if @not;
            my %on_owner;
            for my $port (keys %by_node) {
                next unless $port == $o;
                $on_owner{$_} = 1 for @{ $by_node{$port}{$ch} || [] };
            }
            my @not_owner = grep { !$on_owner{$_} } @have;
            push @bad, "$ch: seq @not_owner not delivered by its master $o"
                if @not_owner;
        }
        if ($w->{last}) {
            my $o = $map_owner{$ch} // 'none';
            push @bad, "$ch: seq $w->{n} not delivered by its master $o at the end"
                unless grep { $_ == $w->{n} } @{ $by_node{$o}{$ch} || [] };
        }
        push @bad, "$ch: delivered by " . keys(%{ $nodes_of{$ch} || {} })
                   . " node(s), want >= $w->{nodes}"
            if $w->{nodes} && keys(%{ $nodes_of{$ch} || {} }) < $w->{nodes};
    }
    if ($want->{every_master}) {
        my @none = grep { !$masters_hit{$_} } $Cluster->masters;
        push @bad, "master(s) @none delivered nothing" if @none;
    }
    my ($loss, $status) = split ' ', trim(value($block, 'cluster_loss') // 'none');
    my $logged = logged_losses(block_log($t));
    # "accounted /status": the status page's events_dropped_total counts
    # too (queue_overflow + redis_error + lost_at_exit), if they say more
    if ($status) {
        my $res = WsAgent::Http::send_request(server_port(),
            WsAgent::Http::build_request("GET $status"), 3);
        my ($d) = ($res->{body} // '') =~ /"events_dropped_total":\{([^}]*)\}/;
        my $counted = 0;
        $counted += $1 while ($d // '') =~ /"(?:queue_overflow|redis_error|lost_at_exit)":(\d+)/g;
        $logged = $counted if $counted > $logged;
    }
    my %per_node;
    for my $port (keys %by_node) {
        $per_node{$port} += @{ $by_node{$port}{$_} } for keys %{ $by_node{$port} };
    }
    my $summary = "sent $sent, received $got distinct ($total deliveries on "
        . keys(%per_node) . " nodes: "
        . join(' ', map { "$_=$per_node{$_}" } sort keys %per_node)
        . "), $copies copies on the same node, missing $missing, the log"
        . ($status ? " and $status" : '') . " count $logged lost";
    $t->{cluster_summary} = $summary;
    Test::More::diag("$name - cluster: $summary");
    # who served the SPUBLISHes (counted from the block's start), and what
    # a master demoted by a cluster_failover step served after it
    my %masters_now = map { $_ => 1 } $Cluster->masters;
    Test::More::diag("$name - cluster: SPUBLISH served per node: " . join ' ',
        map { "$_(" . ($masters_now{$_} ? 'master' : 'replica') . ")="
              . ($Cluster->spublish_calls($_) // '-') } sort $Cluster->live_ports);
    for my $m (sort keys %{ $t->{cluster_demoted} || {} }) {
        my $now = $Cluster->spublish_calls($m) // 0;
        Test::More::diag("$name - cluster: the master demoted by the failover ($m) "
            . "served " . ($now - ($t->{cluster_demoted}{$m} // 0))
            . " SPUBLISH after it (a replica serves SPUBLISH for its master's "
            . "slots and passes it on: no MOVED)");
    }
    Test::More::diag("$name - cluster: missing " . join '; ',
        map { "$_: seq @{ $miss_by_ch{$_} }" } sort keys %miss_by_ch) if $missing;
    Test::More::ok(!@bad, "$name - cluster_delivered (" . keys(%{ $want->{ch} })
                          . " channels, per node in order, nothing elsewhere)")
        or Test::More::diag(@bad . " problem(s):\n  "
                            . join "\n  ", @bad[0 .. ($#bad < 14 ? $#bad : 14)]);
    if ($loss eq 'accounted') {
        Test::More::ok($missing <= $logged, "$name - cluster: the $missing "
                       . "missing event(s) are at most the $logged the log counts lost");
    } else {
        Test::More::is($missing, 0, "$name - cluster: no event missing");
    }
    if (failures() > $t->{failures_before}) {
        my @ev = $sub->events;
        splice @ev, 0, @ev - 40 if @ev > 40;
        Test::More::diag("subscriber's log:\n  " . join "\n  ", @ev);
    }
}

1;
