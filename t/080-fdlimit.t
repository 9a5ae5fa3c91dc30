# The worker at its descriptor limit (issue 6, "fd limit reached").
#
# worker_rlimit_nofile is set per block so that, besides the worker's own
# descriptors (measured once, below) and its Redis connection, exactly
# "--- fd_free" descriptor numbers are free.  Each gated WebSocket takes 2
# (client + upstream), so the blocks know how many connections fit and
# what the next one meets:
#
#   1 fd left  nginx accepts, socket() for the upstream fails: its own
#              [alert] "socket() failed (24: Too many open files) while
#              connecting to upstream", and the client gets 500
#   0 fd left  accept4() fails: nginx's own [crit], accept is paused
#              (500 ms, then retried); the client waits in the listen
#              queue and is served once descriptors are free again
#
# Connections already through the gate keep their held frames and deliver
# them after the ack; the module's Redis reconnect fails cleanly while no
# descriptor is free and succeeds once one is; the events queued meanwhile
# reach the subscriber.  No [alert] or [crit] but those two of nginx's, no
# crash, no worker exit.

use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);

use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(sleep);
use WsAgent::Http;
use WsAgent::Nginx;
use WsAgent::Util qw(wait_until slurp);

repeat_each(1);
no_shuffle();
use_redis();

my $Valgrind = $ENV{TEST_NGINX_USE_VALGRIND};

my $ws_location = ws_location(
    'ws_agent on;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');
$ws_location .= <<'_EOC_';
    # a keep-alive answer: the connection stays open, holding one fd
    location = /plain { return 200 "plain\n"; }
    location = /ws-agent/status { ws_agent_status; }
_EOC_

# nginx's own lines at the limit are allowed; nothing else at [alert]/[crit]
my @clean = (
    qr/\[alert\](?!.*socket\(\) failed \(24: Too many open files\) while connecting to (?:upstream|Redis))/,
    qr/\[crit\](?!.*accept4\(\) failed \(24: Too many open files\))/,
    qr/\[emerg\]/,
    qr/exited on signal/,
    qr/exited with code [1-9]/,     # e.g. a sanitizer's exit
    qr/ws_agent.*(?:alert|crit)/i,
);

# The descriptors nginx holds with no client and no Redis connection: what
# it inherits (whatever the runner leaves open without close-on-exec), the
# error and access logs, the listening socket, the channel, epoll, eventfd.
# Measured rather than assumed, in an nginx started like the blocks' (a
# worker; under valgrind the single process).  RLIMIT_NOFILE bounds
# descriptor *numbers*, not their count: an inherited descriptor numbered
# above the limit (a shell's fd 255, valgrind's own) takes no place below
# it.  So the numbers are kept, and limit_for() finds the limit that leaves
# exactly N numbers free.
my @Base = fd_baseline();

sub fd_baseline {
    my $dir = tempdir('ws_agent_fdcalib.XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $port = WsAgent::Util::free_port();
    my $n = WsAgent::Nginx->new(
        servroot => $dir, port => $port,
        binary => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        valgrind => $Valgrind,
        load_modules => [split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // ''],
        workers => 1, master => 1, log_level => 'info');
    $n->prepare_servroot;
    (my $config = $ws_location) =~ s/\$TEST_NGINX_BACKEND_PORT/1/;
    # a Redis that is not there: no Redis descriptor stays open (retries
    # hold one for an instant: the smallest of several samples is kept)
    $n->write_config(config => $config, http_config =>
                     "ws_agent_redis unix:$dir/no-redis.sock;");
    my ($ok, $why) = $n->start;
    die "fd calibration: nginx did not start: $why\n" unless $ok;
    # one request served: the event loop (epoll, eventfd) is set up
    my $res = WsAgent::Http::send_request($port,
        WsAgent::Http::build_request('GET /plain'), $Valgrind ? 20 : 5);
    my $p = $Valgrind ? $n->{pid} : undef;
    wait_until(5, sub { ($p) = WsAgent::Util::worker_pids($n->{pid}) })
        unless $p;
    my @fds;
    for (1 .. 10) {
        last unless $p;
        opendir my $d, "/proc/$p/fd" or last;
        my @f = sort { $a <=> $b } grep { /^\d+$/ } readdir $d;
        @fds = @f if !@fds || @f < @fds;
        sleep 0.05;
    }
    $n->stop;
    die "fd calibration: GET /plain: " . ($res->{error} // $res->{status})
        . "\n" unless ($res->{status} // 0) == 200;
    die "fd calibration: no nginx process found\n" unless @fds;
    return @fds;
}

# the smallest limit leaving $free descriptor numbers below it unused
sub limit_for {
    my ($free) = @_;
    for (my $limit = 1; ; $limit++) {
        my $used = grep { $_ < $limit } @Base;
        return $limit if $limit - $used == $free;
    }
}

# Under valgrind nginx runs with master_process off, and a single process
# never applies worker_rlimit_nofile (only ngx_worker_process_init does).
# Nor can it inherit a low limit: valgrind would then emulate the limit
# itself, and its accept4() past the limit takes the connection from the
# queue, closes it and returns EMFILE (clients see a reset where the
# kernel would keep them queued).  So under valgrind a helper process sets
# the limit on the running nginx (prlimit --pid, soft limit only): the
# kernel enforces it, valgrind keeps its own descriptors above it, and the
# blocks see what a worker sees.  TEST_NGINX_SLEEP gives the helper its
# time before the client starts.
my ($Helper, $Sleep) = (0, $ENV{TEST_NGINX_SLEEP});

plan(skip_all => 'under valgrind the limit is set with prlimit(1) (util-linux), not found')
    if $Valgrind && system('prlimit --version >/dev/null 2>&1') != 0;

sub limit_nginx_when_up {
    my ($limit) = @_;
    my $pidfile = server_root() . '/logs/nginx.pid';
    unlink $pidfile;       # the runner unlinks it too, before it starts nginx
    $Helper = fork // die "fork: $!";
    return if $Helper;
    my $pid;
    wait_until(60, sub { ($pid) = (slurp($pidfile) // '') =~ /^(\d+)/ });
    exec 'prlimit', '--pid', $pid, "--nofile=$limit:" if $pid;
    POSIX::_exit(1);
}

sub reap_helper { waitpid $Helper, 0 if $Helper; $Helper = 0 }

END { reap_helper() }

add_block_preprocessor(sub {
    my $block = shift;

    reap_helper();
    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
    $block->set_value("config", $ws_location) unless defined $block->config;
    $block->set_value("no_error_log", [@clean])
        unless defined $block->no_error_log;

    if (defined(my $free = $block->fd_free)) {
        $free =~ s/\s+//g;
        my $limit = limit_for($free + 1);    # + 1: the Redis connection
        $block->set_value("main_config", "worker_rlimit_nofile $limit;\n");
        if ($Valgrind) {
            limit_nginx_when_up($limit);
            $ENV{TEST_NGINX_SLEEP} = 1;
        }
    } elsif ($Valgrind) {
        if (defined $Sleep) { $ENV{TEST_NGINX_SLEEP} = $Sleep }
        else { delete $ENV{TEST_NGINX_SLEEP} }
    }
});

Test::More::note("nginx's descriptors at rest (no client, no Redis): @Base"
                 . ($Valgrind ? ' (valgrind: one process)' : ''));

run_tests();

# The module's own account of a reconnect that fails for want of a
# descriptor, at the log levels an operator runs with: the first failure
# after a disconnect is logged at [error] ("unavailable (Server closed the
# connection)"), each new reason after it at [warn] ("still unavailable
# (cannot open a socket (24: Too many open files)), N event(s) waiting"), the
# same reason again once a minute.  (Until session 2 every later failure
# was at debug level only: bug 5 in RELIABILITY.md.)
{
    my @lines = grep { /ws_agent: Redis.*Too many open files/ }
                split /\n/, slurp(server_root() . '/logs/error.log') // '';
    Test::More::ok(
        scalar(grep { /\[(?:warn|error|crit|alert)\]/ } @lines),
        'the failing Redis reconnect at the fd limit is named above debug level')
        or Test::More::diag("the module's lines about it:\n"
            . join "\n", @lines[0 .. ($#lines < 2 ? $#lines : 2)]);
}

__DATA__

=== TEST 1: one fd left: the next upgrade gets nginx's 500 (socket() for the upstream fails); the 6 gated connections keep their held frames
--- fd_free: 13
--- ws_backend
wait 1500ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws X-User-Id: f1
send text held-1
handshake /ws X-User-Id: f1
send text held-2
handshake /ws X-User-Id: f1
send text held-3
handshake /ws X-User-Id: f1
send text held-4
handshake /ws X-User-Id: f1
send text held-5
handshake /ws X-User-Id: f1
send text held-6
handshake_expect 500 /ws X-User-Id: f1
handshake_expect 500 /ws X-User-Id: f1
sleep 2s
--- ws_backend_connections: 6
--- ws_backend_transcripts eval
[map { qq(sent text {"type":"connection_ready"}\nrecv text held-$_\nrecv eof) } 1 .. 6]
--- error_log eval
[qr/\[alert\].*socket\(\) failed \(24: Too many open files\) while connecting to upstream, client: 127\.0\.0\.1, server: localhost, request: "GET \/ws HTTP\/1\.1"/]



=== TEST 2: no fd left: the next client waits in the listen queue (nginx's accept4() [crit]); held frames are delivered after the ack; when the gated connections end, the waiting client goes through the gate
--- fd_free: 12
--- ws_backend
wait 1500ms
send text {"type":"connection_ready"}
wait 1s
drop
--- ws_client
handshake /ws X-User-Id: f2
send text held-1
handshake /ws X-User-Id: f2
send text held-2
handshake /ws X-User-Id: f2
send text held-3
handshake /ws X-User-Id: f2
send text held-4
handshake /ws X-User-Id: f2
send text held-5
handshake /ws X-User-Id: f2
send text held-6
handshake /ws X-User-Id: f2
send text late
recv text {"type":"connection_ready"} within 4s
recv eof within 3s
--- timeout: 6
--- ws_backend_connections: 7
--- ws_backend_transcripts eval
[map { qq(sent text {"type":"connection_ready"}\nrecv text $_) } (map { "held-$_" } 1 .. 6), 'late']
--- error_log eval
[qr/\[crit\].*accept4\(\) failed \(24: Too many open files\)/]



=== TEST 3: Redis restarted while no fd is free: the reconnect fails cleanly, then succeeds once fds are free; the events queued meanwhile are published
--- fd_free: 12
--- ws_backend
wait 2s
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
wait 1500ms
drop
--- ws_client
handshake /ws X-User-Id: f3
send text held-1
handshake /ws X-User-Id: f3
send text held-2
handshake /ws X-User-Id: f3
send text held-3
handshake /ws X-User-Id: f3
send text held-4
handshake /ws X-User-Id: f3
send text held-5
handshake /ws X-User-Id: f3
send text held-6
redis_stop
handshake_expect 200 /plain
redis_start
sleep 1s
handshake /ws X-User-Id: f3
send text late
recv text {"type":"connection_ready"} within 4s
recv text {"type":"agent_started"}
recv eof within 3s
http_get /ws-agent/status => "last_error":"cannot open a socket \(24: Too many open files\)"
--- timeout: 6
--- wait: 10
--- redis_subscribe: agent:events:f3
--- redis_messages_like
agent:events:f3 "seq":1,.*"type":"agent_started"
agent:events:f3 "seq":1,.*"type":"agent_started"
agent:events:f3 "seq":1,.*"type":"agent_started"
agent:events:f3 "seq":1,.*"type":"agent_started"
agent:events:f3 "seq":1,.*"type":"agent_started"
agent:events:f3 "seq":1,.*"type":"agent_started"
agent:events:f3 "seq":1,.*"type":"agent_started"
--- ws_backend_connections: 7
--- ws_backend_transcripts eval
[map { qq(sent text {"type":"connection_ready"}\nsent text {"type":"agent_started"}\nrecv text $_) } (map { "held-$_" } 1 .. 6), 'late']
--- error_log eval
[qr/\[error\].*ws_agent: Redis 127\.0\.0\.1:\d+ unavailable \(.*\); events wait in a queue of 10000, reconnecting with back-off/,
 qr/ws_agent: Redis still unavailable: cannot open a socket \(24: Too many open files\)/,
 qr/\[notice\].*ws_agent: Redis 127\.0\.0\.1:\d+ connected again, \d+ event\(s\) waiting/,
 qr/\[crit\].*accept4\(\) failed \(24: Too many open files\)/]
