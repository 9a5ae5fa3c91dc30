package Test::Nginx::Socket;

# The bundled runner: a compatible subset of CPAN's Test::Nginx::Socket for
# machines without CPAN (t/README.md says what it supports and what it does
# differently).  Only the standard sections and CPAN's public hooks live
# here; ngx_ws_agent's own sections are a plug-in on those hooks
# (Test::Nginx::Socket::WsAgent, which the .t files use and which loads
# this file only when no CPAN Test::Nginx is found).
#
# One block: preprocessors, nginx.conf, nginx started (WsAgent::Nginx), the
# request and its checks, the plug-ins' response-body checks, nginx
# stopped, the error.log checks on the complete log, the test cleanup
# handlers.

use strict;
use warnings;

use Test::Base ();
our @ISA = ('Test::Base');

# how the plug-in tells this runner from CPAN's
our $Bundled = 1;

use Cwd ();
use File::Path qw(make_path);
use File::Basename qw(dirname);
use Time::HiRes qw(sleep);
use WsAgent::Util qw(free_port port_is_free spit trim parse_header_list
                     expected_lines);
use WsAgent::Nginx;
use WsAgent::Http;

our @EXPORT = qw(run_tests run_test repeat_each no_shuffle workers master_on
                 master_off log_level no_long_string no_root_location
                 worker_connections add_block_preprocessor
                 add_response_body_check add_cleanup_handler
                 add_test_cleanup_handler env_to_nginx server_port html_dir
                 server_root bail_out $ServerPort $ServerAddr);

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

my %Opt = (repeat_each => 1, workers => 1, master => 1, log_level => 'debug',
           worker_connections => 1024);
my (@Preprocessors, @BodyChecks, @TestCleanups, @Cleanups);
my @EnvToNginx;
my $Nginx;
my $MainPid = $$;

# Sections holding nginx configuration: an unknown $TEST_NGINX_* in them is
# an error, not text.
my %CONFIG_SECTION = map { $_ => 1 } qw(main_config http_config config);

sub repeat_each   { $Opt{repeat_each} = shift if @_; $Opt{repeat_each} }
sub workers       { $Opt{workers} = shift if @_; $Opt{workers} }
sub worker_connections {
    $Opt{worker_connections} = shift if @_;
    $Opt{worker_connections};
}
sub master_on     { $Opt{master} = 1 }
sub master_off    { $Opt{master} = 0 }
sub log_level     { $Opt{log_level} = shift if @_; $Opt{log_level} }
sub no_shuffle    { }     # blocks always run in file order
sub no_long_string { }    # long strings are always diffed
sub no_root_location { }  # there is no root location to leave out
sub env_to_nginx  { push @EnvToNginx, @_ }
sub server_port   { $ServerPort }
sub server_root   { $Servroot }
sub html_dir      { "$Servroot/html" }

# CPAN's hooks, in CPAN's order: the preprocessor and the cleanup handlers
# added last run first, the response-body checks in the order added.
sub add_block_preprocessor   { unshift @Preprocessors, @_ }
sub add_response_body_check  { push @BodyChecks, @_ }
sub add_test_cleanup_handler { unshift @TestCleanups, @_ }
sub add_cleanup_handler      { unshift @Cleanups, @_ }

sub cleanup {
    return unless $$ == $MainPid;
    $_->() for @Cleanups;
}

sub bail_out { cleanup(); Test::More::BAIL_OUT(join '', @_) }

END {
    if ($$ == $MainPid) {
        cleanup();
        $Nginx->stop if $Nginx && !$ENV{TEST_NGINX_NO_CLEAN};
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
    cleanup();
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
    $ENV{"TEST_NGINX_RAND_PORT_$_"} = free_port() for 1 .. 3;
    my $name = $block->name;
    $name .= " (repeat $rep)" if $Opt{repeat_each} > 1;
    my $t = { block => $block, name => $name, rep => $rep,
              failures_before => failures(),
              log_offset => $Nginx->error_log_size };
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    eval {
        $block->run_filters unless $block->is_filtered;
        $_->($block) for @Preprocessors;
        # a preprocessor may SKIP a block (e.g. under valgrind)
        if (defined $block->SKIP) {
            $t->{skipped} = $t->{done} = 1;
        } else {
            setup_and_run($t, $last);
        }
        1;
    } or Test::More::fail("$name - block ran: $@");
    if ($t->{skipped}) {
        Test::More->builder->skip("$name - skipped by a preprocessor");
    } else {
        $Nginx->stop unless $last && $ENV{TEST_NGINX_NO_CLEAN};
        unless ($t->{done}) {
            check_error_log($t);
            check_valgrind($t) if $ENV{TEST_NGINX_USE_VALGRIND};
        }
        print_error_log($t) if failures() > $t->{failures_before};
    }
    $_->($block) for @TestCleanups;
}

# The block's part of error.log (without debug lines if long).
sub print_error_log {
    my ($t) = @_;
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
    Test::More::diag("--- error.log of $t->{name}$note:\n" . join "\n", @lines);
}

# A section's value with $TEST_NGINX_* expanded (refs are left alone);
# undef when the section is absent or was set to undef by a preprocessor.
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

sub has { defined section($_[0], $_[1]) }

sub setup_and_run {
    my ($t, $last) = @_;
    my $name = $t->{name};

    # Perl run once the servroot is there, before nginx.conf is written
    if (defined(my $code = section($t, 'post_setup_server_root'))) {
        eval "package main; $code; 1"
            or die "post_setup_server_root failed: $@";
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

    my ($ok, $why) = $Nginx->start;
    if (has($t, 'must_die')) {
        Test::More::ok(!$ok, "$name - nginx must fail to start");
        $t->{log_text} = $Nginx->stderr_text
                       . $Nginx->error_log_since($t->{log_offset});
        check_error_log($t);
        return $t->{done} = 1;
    }
    die "nginx did not start: $why\n" unless $ok;

    if (has($t, 'request') || has($t, 'raw_request')) {
        my $bytes = has($t, 'raw_request') ? section($t, 'raw_request')
            : WsAgent::Http::build_request(section($t, 'request'),
                                           section($t, 'more_headers'));
        my $r = WsAgent::Http::send_request($ServerPort, $bytes,
                                            section($t, 'timeout') || 3);
        check_response($t, $r);
        # as CPAN's runner: (block, body, request index, repetition index)
        $_->($t->{block}, $r->{body}, 0, $t->{rep} - 1, undef)
            for @BodyChecks;
    }
    sleep section($t, 'wait') if section($t, 'wait');
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

# --- checks ---------------------------------------------------------------

sub check_response {
    my ($t, $r) = @_;
    my $name = $t->{name};
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
