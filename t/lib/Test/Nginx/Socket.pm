package Test::Nginx::Socket;

# A compatible subset of CPAN's Test::Nginx::Socket, plus the WebSocket,
# scripted-backend and Redis sections of ngx_ws_agent (see t/README.md).
#
# This package is the block runner only: for each block it sets up the
# fixtures (WsAgent::Redis, WsAgent::Backend, WsAgent::Nginx), drives the
# client (WsAgent::Http or WsAgent::WsClient), stops everything, then checks.

use strict;
use warnings;

use Test::Base ();
our @ISA = ('Test::Base');

use Cwd ();
use POSIX ();
use Storable ();
use File::Path qw(make_path);
use File::Basename qw(dirname);
use Time::HiRes qw(time sleep);
use WsAgent::Util qw(free_port port_is_free wait_until kill_pid spit slurp
                     trim parse_header_list);
use WsAgent::Frame;
use WsAgent::Nginx;
use WsAgent::Http;
use WsAgent::Backend;
use WsAgent::WsClient;
use WsAgent::Redis;
use WsAgent::Browser;
use WsAgent::Prometheus;

our @EXPORT = qw(run_tests run_test repeat_each no_shuffle workers master_on
                 master_off log_level no_long_string no_root_location
                 add_block_preprocessor env_to_nginx server_port html_dir
                 server_root use_redis $ServerPort $ServerAddr);

our $ServerAddr = '127.0.0.1';
our $ServerPort = $ENV{TEST_NGINX_PORT} || 1984;
$ServerPort = free_port() unless port_is_free($ServerPort);
$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;

my $Servroot = Cwd::abs_path('.') . '/'
             . ($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
$Servroot = $ENV{TEST_NGINX_SERVROOT}
    if ($ENV{TEST_NGINX_SERVROOT} // '') =~ m{^/};
$ENV{TEST_NGINX_SERVROOT} = $Servroot;
$ENV{TEST_NGINX_HTML_DIR} = "$Servroot/html";

my %Opt = (repeat_each => 1, workers => 1, master => 1, log_level => 'debug');
my @Preprocessors;
my @EnvToNginx;
my $UseRedis;
my ($Nginx, $Backend, $Redis, $Prometheus);
my $MainPid = $$;

# Sections holding nginx/redis configuration: an unknown $TEST_NGINX_* in
# them is an error, not text.
my %CONFIG_SECTION = map { $_ => 1 } qw(main_config http_config config
                                        redis_config);

sub repeat_each   { $Opt{repeat_each} = shift if @_; $Opt{repeat_each} }
sub workers       { $Opt{workers} = shift if @_; $Opt{workers} }
sub master_on     { $Opt{master} = 1 }
sub master_off    { $Opt{master} = 0 }
sub log_level     { $Opt{log_level} = shift if @_; $Opt{log_level} }
sub no_shuffle    { }     # blocks always run in file order
sub no_long_string { }    # long strings are always diffed
sub no_root_location { }
sub add_block_preprocessor { push @Preprocessors, @_ }
sub env_to_nginx  { push @EnvToNginx, @_ }
sub server_port   { $ServerPort }
sub server_root   { $Servroot }
sub html_dir      { "$Servroot/html" }
sub use_redis     { $UseRedis = 1 }

END {
    if ($$ == $MainPid) {
        my $keep = $ENV{TEST_NGINX_NO_CLEAN};
        $Prometheus->stop if $Prometheus;
        $Nginx->stop if $Nginx && !$keep;
        $Backend->stop if $Backend;
        $Redis->stop if $Redis;
    }
}
$SIG{INT} = $SIG{TERM} = sub { exit 1 };

sub run_test { my ($block) = @_; init_nginx(); run_block($block, 1) }

sub run_tests {
    init_nginx();
    my @blocks = @{ Test::Base::default_object()->block_list };
    for my $i (0 .. $#blocks) {
        for my $rep (1 .. $Opt{repeat_each}) {
            my $last = $i == $#blocks && $rep == $Opt{repeat_each};
            run_block($blocks[$i], $rep, $last);
        }
    }
}

# Once per file: the nginx object and a fresh servroot.
sub init_nginx {
    return if $Nginx;
    $Nginx = WsAgent::Nginx->new(
        servroot => $Servroot, port => $ServerPort,
        binary => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
        valgrind => $ENV{TEST_NGINX_USE_VALGRIND},
        load_modules => [split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // ''],
        env => \@EnvToNginx, %Opt);
    $Nginx->prepare_servroot;
}

sub failures { scalar grep { !$_ } Test::More->builder->summary }

sub run_block {
    my ($block, $rep, $last) = @_;
    # fresh ports per block, set before the filters so "eval" sections see them
    $ENV{TEST_NGINX_BACKEND_PORT} = free_port();
    $ENV{"TEST_NGINX_RAND_PORT_$_"} = free_port() for 1 .. 3;
    my $name = $block->name;
    $name .= " (repeat $rep)" if $Opt{repeat_each} > 1;
    my $t = { block => $block, name => $name,
              failures_before => failures(),
              log_offset => $Nginx->error_log_size };
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    eval {
        $block->run_filters unless $block->is_filtered;
        $_->($block) for @Preprocessors;
        # a preprocessor may SKIP a block (e.g. under valgrind)
        if (exists $block->{SKIP}) {
            $t->{skipped} = $t->{done} = 1;
        } else {
            setup_and_run($t, $last);
        }
        1;
    } or Test::More::fail("$name - block ran: $@");
    if ($t->{skipped}) {
        Test::More->builder->skip("$name - skipped by a preprocessor");
        return;
    }
    teardown($t, $last);
    check_all($t) unless $t->{done};
    if (failures() > $t->{failures_before}) {
        my $log = $t->{log_text} // $Nginx->error_log_since($t->{log_offset});
        my @lines = split /\n/, $log;
        my $note = '';
        if (@lines > 100) {
            # keep timestamped entries above debug; this drops debug dumps'
            # continuation lines too
            @lines = grep { m{^\d{4}/\d\d/\d\d [\d:]+ \[(?!debug)} } @lines;
            $note = " (debug lines left out: see $Servroot/logs/error.log)";
        }
        splice @lines, 0, @lines - 100 if @lines > 100;
        Test::More::diag("--- error.log of $name$note:\n" . join "\n", @lines);
    }
}

# A section's value with $TEST_NGINX_* expanded (refs are left alone).
sub section {
    my ($t, $name) = @_;
    my $block = $t->{block};
    return undef unless exists $block->{$name};
    my $v = $block->{$name}[0];
    return $v if ref $v || !defined $v;
    $v =~ s{\$(TEST_NGINX_[A-Z0-9_]+)}{
        defined $ENV{$1} ? $ENV{$1}
        : $CONFIG_SECTION{$name} ? die "no environment variable $1 for --- $name\n"
        : "\$$1"
    }ge;
    return $v;
}

sub has { exists $_[0]{block}{$_[1]} }

sub setup_and_run {
    my ($t, $last) = @_;
    my $name = $t->{name};
    # Redis first: its port may appear in the configuration
    my $need_redis = $UseRedis || grep { /^redis_/ } keys %{ $t->{block} };
    if ($need_redis) {
        $Redis ||= WsAgent::Redis->new(port => free_port(),
                                       dir => "$Servroot/redis");
        $Redis->ensure(config => section($t, 'redis_config'),
                       unix => has($t, 'redis_unix'));
        $ENV{TEST_NGINX_REDIS_PORT} = $Redis->port;
        $ENV{TEST_NGINX_REDIS_SOCK} = $Redis->sock_path;
        $Redis->stop if has($t, 'redis_stopped');
        if (defined(my $ch = section($t, 'redis_subscribe'))) {
            $t->{subscriber} = WsAgent::Redis::Subscriber->new($Redis,
                                                               split ' ', $ch);
        }
    }

    $Nginx->write_config(map { $_ => section($t, $_) }
                         qw(main_config http_config config));
    write_user_files(section($t, 'user_files')) if has($t, 'user_files');

    if (has($t, 'nginx_t_fail')) {
        my ($status, $out) = $Nginx->test_config;
        Test::More::ok($status != 0, "$name - nginx -t fails")
            or Test::More::diag($out);
        $t->{log_text} = $out . $Nginx->error_log_since($t->{log_offset});
        check_error_log($t);
        return $t->{done} = 1;
    }

    if (has($t, 'ws_backend')) {
        my $steps = WsAgent::Backend::parse_steps(section($t, 'ws_backend'));
        $Backend = WsAgent::Backend->start(port => $ENV{TEST_NGINX_BACKEND_PORT},
                                           steps => $steps,
                                           dir => "$Servroot/backend");
        $t->{backend} = $Backend;
    }

    my ($ok, $why) = $Nginx->start;
    if (has($t, 'must_die')) {
        Test::More::ok(!$ok, "$name - nginx must fail to start");
        $t->{log_text} = $Nginx->stderr_text
                       . $Nginx->error_log_since($t->{log_offset});
        check_error_log($t);
        return $t->{done} = 1;
    }
    die "nginx did not start: $why\n" unless $ok;
    start_prometheus($t) if has($t, 'prometheus');

    if (has($t, 'ws_client')) {
        $t->{ws_results} = run_ws_client($t);
    } elsif (has($t, 'browser')) {
        $t->{browser} = WsAgent::Browser::run(
            url => "http://$ServerAddr:$ServerPort" . trim(section($t, 'browser')),
            profile => "$Servroot/browser",
            timeout => section($t, 'browser_timeout') || 30);
    } elsif (has($t, 'request') || has($t, 'raw_request')) {
        my $bytes = has($t, 'raw_request') ? section($t, 'raw_request')
            : WsAgent::Http::build_request(section($t, 'request'),
                                           section($t, 'more_headers'));
        $t->{response} = WsAgent::Http::send_request($ServerPort, $bytes,
                                                     section($t, 'timeout') || 3);
    }

    if ($t->{subscriber}) {
        my @want = expected_lines(section($t, 'redis_messages')
                                  // section($t, 'redis_messages_like'));
        $t->{redis_messages} = [$t->{subscriber}->collect(scalar @want,
                                    section($t, 'wait') || 2, 0.1)];
    }
    if ($t->{backend}) {
        my @open = $t->{backend}->wait_done(section($t, 'timeout') || 3);
        $t->{backend_open} = \@open;
    }
    sleep section($t, 'wait') if section($t, 'wait') && !$t->{subscriber};
    check_prometheus($t) if $t->{prometheus};
}

# "--- prometheus: /metrics": a private Prometheus scrapes that path of the
# block's server (job ws_agent) every "prometheus_interval" (default
# 200ms), evaluating the "prometheus_rules" files (paths from the
# repository); the client starts once the target was scraped.
sub start_prometheus {
    my ($t) = @_;
    if (my $why = WsAgent::Prometheus::missing()) {
        die "--- prometheus: $why (scripts/bootstrap.sh prometheus)\n";
    }
    my $since = time;
    $Prometheus = WsAgent::Prometheus->new(
        dir => "$Servroot/prometheus",
        target => "$ServerAddr:$ServerPort",
        path => trim(section($t, 'prometheus')),
        interval => trim(section($t, 'prometheus_interval') // '200ms'),
        rules => [map { Cwd::abs_path($_) // die "no rule file $_\n" }
                  split ' ', section($t, 'prometheus_rules') // '']);
    $Prometheus->start;
    $Prometheus->wait_scraped($since);
    $t->{prometheus} = $Prometheus;
}

# The block's "--- prometheus_check eval" sub, while nginx and Prometheus
# still run (after the client and the backend are done): it queries
# Prometheus and checks with Test::More, sub { my ($prom, $name) = @_ }.
sub check_prometheus {
    my ($t) = @_;
    my $name = $t->{name};
    my $check = section($t, 'prometheus_check');
    if (ref $check eq 'CODE') {
        eval { $check->($t->{prometheus}, $name); 1 }
            or Test::More::fail("$name - prometheus_check ran: $@");
    } elsif (has($t, 'prometheus_check')) {
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

sub teardown {
    my ($t, $last) = @_;
    if ($Prometheus) { $Prometheus->stop; undef $Prometheus }
    unless ($last && $ENV{TEST_NGINX_NO_CLEAN}) {
        $Nginx->stop;
    }
    if ($Backend) { $Backend->stop; undef $Backend }
    $t->{subscriber}->close if $t->{subscriber};
    $Redis->start if $Redis && !$Redis->running;    # after redis_stop
}

sub write_user_files {
    my ($text) = @_;
    for my $file (split /^>>> /m, $text) {
        next unless $file =~ /\S/;
        my ($path, $content) = split /\n/, $file, 2;
        $path = html_dir() . '/' . trim($path);
        make_path(dirname($path));
        spit($path, $content // '');
    }
}

sub expected_lines {
    my ($text) = @_;
    return () unless defined $text;
    return @$text if ref $text eq 'ARRAY';
    return grep { $_ ne '' && !/^#/ } map { trim($_) } split /\n/, $text;
}

# --- the WebSocket client -------------------------------------------------

sub worker_pids {
    my ($master) = @_;
    my @w;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        # pid (comm) state ppid ...: comm may hold spaces
        push @w, $1 if $line =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $master;
    }
    return @w;
}

sub ws_hooks {
    my ($t) = @_;
    my $sub = $t->{subscriber};
    return {
        # what Redis sent the subscriber before it died is read to EOF:
        # events published right before the stop are not lost here
        redis_stop  => sub {
            $sub->drain(0.3) if $sub;
            $Redis->stop;
            $sub->drain(0.3) if $sub;
            1;
        },
        nginx_reload => sub { kill 'HUP', $Nginx->{pid}; 1 },
        # SIGKILL every worker of this block's master (it spawns new ones)
        nginx_kill_workers => sub {
            my @w = worker_pids($Nginx->{pid});
            return (0, 'nginx_kill_workers: no worker found') unless @w;
            kill 'KILL', @w;
            1;
        },
        # a plain GET in the middle of the steps; the body must match
        http_get => sub {
            my ($s) = @_;
            my $res = WsAgent::Http::send_request($ServerPort,
                WsAgent::Http::build_request("GET $s->{path}"), 3);
            return (0, "GET $s->{path}: $res->{error}") if $res->{error};
            my $body = $res->{body} // '';
            return (1, "GET $s->{path}: $res->{status}")
                if !defined $s->{want} || $body =~ /$s->{want}/s;
            return (0, "GET $s->{path}: $res->{status}, body does not match "
                       . "/$s->{want}/:\n$body");
        },
        redis_start => sub {
            return $Redis->start unless $sub;
            # the subscriber is back before nginx can reach Redis again
            $Redis->start(closed => 1);
            $sub->subscribe(via_unix => 1);
            $Redis->open_port;
            1;
        },
        redis_cmd   => sub {
            my ($s) = @_;
            my $r = WsAgent::Redis::reply_text($Redis->command(@{ $s->{args} }));
            return (0, "redis replied $r") if $r =~ /^\(error\)/
                                              && !defined $s->{want};
            return (0, "redis replied '$r', want '$s->{want}'")
                if defined $s->{want} && $r ne $s->{want};
            return (1, "redis replied $r");
        },
        $Redis ? () : (redis_stop => undef, redis_start => undef,
                       redis_cmd => undef),
    };
}

sub run_ws_client {
    my ($t) = @_;
    my $text = section($t, 'ws_client');
    my $steps = WsAgent::WsClient::parse_steps($text);
    my %run = (port => $ServerPort, hooks => ws_hooks($t));
    unless (@$steps && $steps->[0]{op} eq 'parallel') {
        $steps = WsAgent::WsClient::parse_steps($text =~ s/\$i\b/1/gr);
        return { steps => $steps,
                 results => WsAgent::WsClient->run(%run, steps => $steps) };
    }

    # "parallel N": N copies of the remaining steps, each in its own process
    my $n = shift(@$steps)->{n};
    my $dir = "$Servroot/clients";
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
    return { steps => $steps, results => \@results, parallel => $n };
}

# --- checks ---------------------------------------------------------------

sub check_all {
    my ($t) = @_;
    check_response($t) if $t->{response};
    check_ws_steps($t) if $t->{ws_results};
    check_browser($t) if $t->{browser};
    check_backend($t) if $t->{backend};
    check_redis($t) if $t->{redis_messages};
    check_error_log($t);
    check_valgrind($t) if $ENV{TEST_NGINX_USE_VALGRIND};
}

sub check_response {
    my ($t) = @_;
    my ($name, $r) = ($t->{name}, $t->{response});
    Test::More::diag("$name - $r->{error}") if $r->{error};
    my $code = section($t, 'error_code') // 200;
    Test::More::is($r->{status} // '', trim($code), "$name - status code ok");
    for my $h (parse_header_list(section($t, 'response_headers'), 'lines')) {
        my ($hname, $want) = @$h;
        my ($got) = map { $_->[1] } grep { lc $_->[0] eq lc $hname }
                    @{ $r->{headers} || [] };
        if (defined $want) {
            Test::More::is($got, $want, "$name - header $hname ok");
        } else {
            Test::More::ok(!defined $got, "$name - header $hname absent")
                or Test::More::diag("got '$hname: $got'");
        }
    }
    if (has($t, 'response_body')) {
        Test::Base::is($r->{body} // '', section($t, 'response_body'),
                       "$name - response_body - response is expected");
    }
    if (has($t, 'response_body_like')) {
        my $re = section($t, 'response_body_like');
        $re = qr/$re/s unless ref $re;
        Test::More::like($r->{body} // '', $re,
                         "$name - response_body_like - response is expected");
    }
}

sub short { my $s = shift; length $s > 70 ? substr($s, 0, 67) . '...' : $s }

sub check_ws_steps {
    my ($t) = @_;
    my ($steps, $results) = @{ $t->{ws_results} }{qw(steps results)};
    my $tag = $t->{ws_results}{parallel} ? " (x$t->{ws_results}{parallel})" : '';
    for my $k (0 .. $#$steps) {
        my $r = $results->[$k];
        my $label = "$t->{name} - ws step " . ($k + 1) . "$tag: "
                  . short($steps->[$k]{text});
        if ($r->{skip}) {
            Test::More->builder->skip("$label ($r->{msg})");
            next;
        }
        Test::More::ok($r->{ok}, $label)
            or Test::More::diag("step '$steps->[$k]{text}':\n  $r->{msg}");
    }
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
    my $check = section($t, 'browser_check');
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
    my ($name, $b) = ($t->{name}, $t->{backend});
    Test::More::diag("$name - backend connection(s) @{ $t->{backend_open} } "
                     . "still open when checked")
        if @{ $t->{backend_open} || [] };
    if (defined(my $n = section($t, 'ws_backend_connections'))) {
        Test::More::is($b->connections, trim($n),
                       "$name - ws_backend_connections");
    }
    my $first = $b->transcript(1);
    if (has($t, 'ws_backend_transcript')) {
        my $want = join '', map { "$_\n" }
                   expected_lines(section($t, 'ws_backend_transcript'));
        my $got = defined $first ? join('', map { "$_\n" } @$first)
                                 : "(no backend connection)\n";
        Test::Base::is($got, $want, "$name - ws_backend_transcript");
    }
    if (has($t, 'ws_backend_transcript_like')) {
        my @re = expected_lines(section($t, 'ws_backend_transcript_like'));
        my @got = @{ $first || [] };
        my @bad = grep { ($got[$_] // '') !~ /$re[$_]/ } 0 .. $#re;
        Test::More::ok(!@bad && @got == @re, "$name - ws_backend_transcript_like")
            or Test::More::diag("transcript:\n  " . join("\n  ", @got)
                . "\nexpected lines matching:\n  " . join "\n  ", @re);
    }
    if (has($t, 'ws_backend_transcripts')) {
        # several connections: compared as a multiset (accept order is racy)
        my $want = section($t, 'ws_backend_transcripts');
        my @want = sort map { join '', map { "$_\n" } expected_lines($_) }
                   ref $want ? @$want : split /\n\s*\n/, $want;
        my @got = sort map { join '', map { "$_\n" } @{ $b->transcript($_) } }
                  1 .. $b->connections;
        Test::Base::is(join("----\n", @got), join("----\n", @want),
                       "$name - ws_backend_transcripts (any order)")
            or Test::More::diag(transcripts_summary(\@got, \@want));
    }
    if (has($t, 'ws_backend_request_headers')) {
        my $req = $b->request(1);
        my @bad;
        for my $h (parse_header_list(section($t, 'ws_backend_request_headers'),
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

sub check_redis {
    my ($t) = @_;
    my $name = $t->{name};
    my @wantch = map { (split ' ', $_, 2)[0] }
                 expected_lines(section($t, 'redis_messages')
                                // section($t, 'redis_messages_like'));
    $t->{redis_messages} = [by_channel(\@wantch, @{ $t->{redis_messages} })];
    my @got = map { "$_->[0] $_->[1]" } @{ $t->{redis_messages} };
    if (has($t, 'redis_messages')) {
        Test::Base::is(join('', map { "$_\n" } @got),
            join('', map { "$_\n" } expected_lines(section($t, 'redis_messages'))),
            "$name - redis_messages");
    }
    if (has($t, 'redis_messages_like')) {
        my @want = expected_lines(section($t, 'redis_messages_like'));
        my @bad = grep {
            my ($ch, $re) = split ' ', $want[$_], 2;
            my ($gch, $gmsg) = @{ $t->{redis_messages}[$_] || [] };
            !defined $gch || $gch ne $ch || $gmsg !~ /$re/;
        } 0 .. $#want;
        Test::More::ok(!@bad && @got == @want, "$name - redis_messages_like")
            or Test::More::diag(@got + @want <= 60
                ? "got:\n  " . join("\n  ", @got)
                  . "\nwant:\n  " . join "\n  ", @want
                : redis_like_summary(\@want, $t->{redis_messages}));
    }
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

sub patterns {
    my ($v) = @_;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return expected_lines($v);
}

sub check_error_log {
    my ($t) = @_;
    my $name = $t->{name};
    my $log = $t->{log_text} //= $Nginx->error_log_since($t->{log_offset});
    my @lines = split /\n/, $log;
    for my $p (patterns(section($t, 'error_log'))) {
        my $hit = ref $p ? grep { $_ =~ $p } @lines
                         : grep { index($_, $p) >= 0 } @lines;
        Test::More::ok($hit, "$name - pattern \"$p\" should match a line in error.log");
    }
    for my $p (patterns(section($t, 'no_error_log'))) {
        my @hits = ref $p ? grep { $_ =~ $p } @lines
                          : grep { index($_, $p) >= 0 } @lines;
        Test::More::ok(!@hits,
                       "$name - pattern \"$p\" should not match any line in error.log")
            or Test::More::diag("matched: $hits[0]");
    }
}

sub check_valgrind {
    my ($t) = @_;
    my @errors = $Nginx->valgrind_errors;
    return unless @errors;     # adds a test only when it fails
    Test::More::fail("$t->{name} - valgrind found no memory errors");
    Test::More::diag(join "\n\n", @errors);
}

1;
