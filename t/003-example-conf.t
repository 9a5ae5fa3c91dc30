# nginx.conf.example is a whole nginx.conf, so it cannot be a Test::Nginx
# block (the runner writes its own main and http contexts).  This file takes
# a copy, points its paths, ports and load_module at a private directory and
# the built module, and checks that nginx -t accepts it as shipped and with
# every commented default switched on, that it shows every directive the
# module has, and that its status locations answer.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep);
use WsAgent::Util qw(free_port kill_pid slurp spit wait_until);

my $repo = "$FindBin::Bin/..";
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my ($so) = grep { m{ngx_ws_agent_module\.so$} }
           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the built module'
    unless $so;

my $example = slurp("$repo/nginx.conf.example")
    // die "cannot read nginx.conf.example\n";
my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/$_" for qw(logs tmp);
chmod 0755, $dir;     # workers run as www-data when we are root

my $port = free_port();

# the example includes Debian's /etc/nginx/mime.types; another nginx (the
# 1.26.3 build of scripts/nginx-build.sh) has its own beside its nginx.conf
my ($confdir) = `$nginx -V 2>&1` =~ m{--conf-path=(\S+)/[^/\s]+};
($confdir) = map { "$_/conf" } `$nginx -V 2>&1` =~ m{--prefix=(\S+)}
    unless $confdir;
$confdir //= '/etc/nginx';
ok -f "$confdir/mime.types", "the nginx under test has $confdir/mime.types";

sub localize {
    my ($conf) = @_;
    my $n;
    $n = $conf =~ s{^load_module modules/ngx_ws_agent_module\.so;}
                   {load_module $so;}m;
    is $n, 1, 'the example loads the module from modules/';
    $conf =~ s{/var/log/nginx/}{$dir/logs/}g;
    $conf =~ s{^(\s*include) /etc/nginx/mime\.types;}{$1 $confdir/mime.types;}m;
    $conf =~ s{^pid /run/nginx\.pid;}{pid $dir/nginx.pid;}m;
    $conf =~ s{/etc/nginx/jwt/issuer\.pub}{$dir/issuer.pub}g;
    $conf =~ s{^user \S+;}{}m unless $> == 0 && getpwnam('www-data');
    $conf =~ s{listen 80;}{listen 127.0.0.1:$port;};
    # nothing of the system's Redis or backend: closed loopback ports
    my $closed = free_port();
    $conf =~ s{(\n\s*ws_agent_redis) 127\.0\.0\.1:6379;}{$1 127.0.0.1:$closed;};
    $conf =~ s{server 127\.0\.0\.1:8000;}{server 127.0.0.1:$closed;};
    my $temp = join '', map { "    ${_}_temp_path $dir/tmp/$_;\n" }
                        qw(client_body proxy fastcgi uwsgi scgi);
    $conf =~ s/^(http \{\n)/$1$temp/m;
    return $conf;
}

sub nginx_t {
    my ($conf, $name) = @_;
    spit("$dir/nginx.conf", $conf);
    my $out = `$nginx -t -p $dir/ -c $dir/nginx.conf -e $dir/logs/error.log 2>&1`;
    my $rc = $? >> 8;
    is $rc, 0, "$name: nginx -t exits 0" or diag $out;
    like $out, qr/test is successful/, "$name: nginx -t says the test is successful";
    unlike $out, qr/\[(emerg|alert|crit|error)\]/, "$name: nothing worse than a warning";
}


# the JWT key path wants a real public key

system("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"
       . " 2>/dev/null | openssl pkey -pubout -out $dir/issuer.pub"
       . " 2>/dev/null") == 0 or die "openssl failed\n";


# as shipped

my $conf = localize($example);
nginx_t($conf, 'as shipped');


# every directive of the command table is shown

my $module_c = slurp("$repo/ngx_ws_agent_module.c");
my @directives = $module_c =~ /\{ ngx_string\("(ws_agent\w*)"\),\n\s+NGX_/g;
cmp_ok scalar @directives, '>=', 15, 'directives found in the command table';
for my $d (@directives) {
    ok $example =~ /^\s*#?\s*\Q$d\E[ ;]/m, "the example shows $d";
}


# the commented defaults are valid too: switch on each one not set already

my %active = map { $_ => 1 } $conf =~ /^\s*(ws_agent\w*)[ ;]/mg;
my (@out, $cont);
for my $line (split /\n/, $conf) {
    if ($cont || ($line =~ /^\s*# (ws_agent\w*)[ ;]/ && !$active{$1})) {
        $line =~ s/^(\s*)# /$1/;
        $cont = $line !~ /;/;
    }
    push @out, $line;
}
my $defaults = join("\n", @out) . "\n";

isnt $defaults, $conf, 'some commented defaults were switched on';
like $defaults, qr/^\s*ws_agent_ready_timeout 10s;/m,
    'ws_agent_ready_timeout 10s switched on';
nginx_t($defaults, 'defaults switched on');


# it runs, and its status locations answer from localhost

spit("$dir/nginx.conf", $conf);
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open STDOUT, '>>', "$dir/logs/stderr.log";
    open STDERR, '>&', \*STDOUT;
    exec $nginx, '-p', "$dir/", '-c', "$dir/nginx.conf",
         '-e', "$dir/logs/error.log", '-g', 'daemon off;'
        or POSIX::_exit(127);
}

my $up = wait_until(5, sub {
    IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 1) ? 1 : 0
});
ok $up, 'nginx starts with the example' or diag slurp("$dir/logs/error.log");

sub get {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 3)
        or return '';
    print $s "GET $path HTTP/1.1\r\nHost: chat.example.com\r\n"
             . "Connection: close\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    return $r;
}

SKIP: {
    skip 'nginx did not start', 6 unless $up;
    my $json = get('/ws-agent/status');
    like $json, qr{^HTTP/1\.1 200 }, 'status: 200';
    like $json, qr{"connections_total":0}, 'status: JSON counters';
    my $prom = get('/ws-agent/metrics');
    like $prom, qr{^HTTP/1\.1 200 }, 'metrics: 200';
    like $prom, qr{^ngx_ws_agent_connections_total 0$}m,
        'metrics: Prometheus text';
    my $ws = get('/ws');
    like $ws, qr{^HTTP/1\.1 401 }, '/ws without a token: 401';
    like $ws, qr{^WWW-Authenticate: Bearer error="invalid_token"\r$}m,
        '/ws without a token: WWW-Authenticate';
}

ok kill_pid($pid, signals => [qw(QUIT TERM KILL)], grace => 3),
    'nginx stopped';

my @bad = grep { /\[(alert|crit)\]/ } split /\n/,
           slurp("$dir/logs/error.log") // '';
is "@bad", '', 'no [alert] or [crit] in error.log';

done_testing;
