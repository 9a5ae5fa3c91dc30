package Test::Nginx::Socket::WsAgent;

# ngx_ws_agent's sections (ws_backend, ws_client, browser, redis_*) as a
# plug-in on Test::Nginx::Socket's public hooks, the way
# Test::Nginx::Socket::Lua extends it.  The .t files use this module
# instead of Test::Nginx::Socket:
#
#     use Test::Nginx::Socket::WsAgent 'no_plan';
#
# It subclasses CPAN's Test::Nginx::Socket when one is on @INC (or named by
# TEST_NGINX_CPAN), else the compatible runner bundled in t/lib/bundled, and
# registers WsAgent::Sections on the hooks both have:
#
#   add_block_preprocessor     before nginx starts: ports, Redis, backend
#   add_response_body_check    while nginx runs: the client, then the checks
#   add_test_cleanup_handler   after each block
#   add_cleanup_handler        at the end of the file
#
# t/README.md lists what differs between the two runners.

use strict;
use warnings;

use Cwd ();
use File::Basename ();

our ($Runner, $RunnerLib);

# Which Test::Nginx::Socket: TEST_NGINX_CPAN=0 the bundled one, =1 CPAN's
# (an error if none is on @INC), =DIR CPAN's from DIR (its lib/); unset,
# CPAN's if one is on @INC, else the bundled one.
sub choose_runner {
    my ($bundled) = @_;
    my $want = $ENV{TEST_NGINX_CPAN} // '';
    my $found = sub {
        for my $dir (@INC) {
            next if ref $dir || !-f "$dir/Test/Nginx/Socket.pm";
            my $abs = Cwd::abs_path($dir) // $dir;
            return $abs unless $abs eq $bundled;
        }
        return undef;
    };
    if ($want eq '0') {
        unshift @INC, $bundled;
    } elsif ($want ne '' && $want ne '1') {
        my $dir = Cwd::abs_path($want) // $want;
        die "TEST_NGINX_CPAN=$want: no Test/Nginx/Socket.pm there\n"
            unless -f "$dir/Test/Nginx/Socket.pm";
        unshift @INC, $dir;
    } elsif (!$found->()) {
        die "TEST_NGINX_CPAN=1: no CPAN Test::Nginx on \@INC (prove -I "
            . "/path/to/test-nginx/lib)\n" if $want eq '1';
        push @INC, $bundled;
    }
}

BEGIN {
    my $bundled = Cwd::abs_path(File::Basename::dirname(__FILE__)
                                . '/../../..') . '/bundled';
    choose_runner($bundled);
    require Test::Nginx::Socket;
    # a subclass, as Test::Nginx::Socket::Lua is (-base: without Spiffy's
    # source filter): the .t files get the runner's exports and ours
    Test::Nginx::Socket->import('-base');
    $Runner = $Test::Nginx::Socket::Bundled ? 'bundled' : 'cpan';
    ($RunnerLib = $INC{'Test/Nginx/Socket.pm'}) =~ s{/Test/Nginx/Socket\.pm$}{};
}

use WsAgent::Sections;

our @EXPORT = qw(use_redis use_dns use_sentinel use_cluster);

# a private redis-server for every block of the file
sub use_redis { $WsAgent::Sections::UseRedis = 1 }

# the Redis Cluster (3 masters, 3 replicas: $TEST_NGINX_CLUSTER_PORT_1 ..
# _6) for every block of the file
sub use_cluster { $WsAgent::Sections::UseCluster = 1 }

# the DNS responder ($TEST_NGINX_DNS_PORT) for every block of the file
sub use_dns { $WsAgent::Sections::UseDns = 1 }

# the private Sentinel topology (WsAgent::Sentinel) for every block
sub use_sentinel { $WsAgent::Sections::UseSentinel = 1 }

$WsAgent::Sections::Runner = $Runner;

if ($Runner eq 'cpan') {
    # what the project's tests assume and the bundled runner does: a master
    # with workers (nginx_kill_workers, nginx_reload, workers(2)), room for
    # 40 parallel clients and their upstreams, nginx on loopback only
    Test::Nginx::Socket::master_on()
        unless defined $ENV{TEST_NGINX_MASTER_PROCESS};
    Test::Nginx::Socket::worker_connections(1024);
    WsAgent::Sections::listen_on_loopback();
}

# preprocessors added first run last: ours after the file's own
Test::Nginx::Socket::add_block_preprocessor(\&WsAgent::Sections::preprocess);
Test::Nginx::Socket::add_response_body_check(
    \&WsAgent::Sections::run_and_check);
Test::Nginx::Socket::add_test_cleanup_handler(
    \&WsAgent::Sections::after_block);
Test::Nginx::Socket::add_cleanup_handler(\&WsAgent::Sections::after_file);

1;
