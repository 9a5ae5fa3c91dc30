# The Debian way to install: the package built from this checkout as
# Debian builds its own libnginx-mod-* packages, installed into this
# machine's nginx with apt-get, one gated WebSocket through the system's
# /usr/sbin/nginx loading the installed module through
# /etc/nginx/modules-enabled, then purged: the system is left as it was.
#
# It changes the machine while it runs: it installs and purges
# libnginx-mod-http-ws-agent (as root; runs in several checkouts take
# turns through a lock), and restores it if a run fails half-way.  The
# build happens in a copy of the checkout in a temporary directory.  It
# never starts or reloads the nginx service: the package's nginx-reload
# trigger reloads nginx only when "invoke-rc.d nginx status" says it runs,
# so the file refuses to run when it does.  Without root or the build tools
# (scripts/bootstrap.sh debian) it is skipped when run by hand, and fails
# under CI=true or scripts/test.sh.

use strict;
use warnings;

use Cwd ();
use File::Find ();
use File::Temp qw(tempdir);
use FindBin;
use Time::HiRes qw(time);

my ($Tmp, $Started);
BEGIN {
    $Started = time;
    $Tmp = tempdir('ws-agent-deb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0755, $Tmp;                # apt's _apt user reads the .deb here
    # the block runs the system's nginx, with no module but the package's
    $ENV{TEST_NGINX_SERVROOT} = "$Tmp/servroot";
    $ENV{TEST_NGINX_BINARY} = '/usr/sbin/nginx';
    $ENV{TEST_NGINX_LOAD_MODULES} = '';
}

use Test::Nginx::Socket::WsAgent;
use WsAgent::Conf qw(ws_location);
use WsAgent::Debian;
use WsAgent::Util qw(slurp);

my $Pkg  = $WsAgent::Debian::Package;
my $Repo = Cwd::abs_path("$FindBin::Bin/..");
my $Main = $$;

sub cannot_run {
    my ($why) = @_;
    my $how = 'scripts/bootstrap.sh debian installs the tools; run as root';
    plan skip_all => "no Debian package test: $why ($how)"
        unless WsAgent::Debian::required();
    plan tests => 1;
    fail("the Debian package test can run: $why ($how; CI and "
         . "scripts/test.sh need it)");
    exit;
}

if (my $why = WsAgent::Debian::missing()) {
    cannot_run($why);
}
my $Lock = WsAgent::Debian::lock_machine(600);
if (!$Lock) {
    plan tests => 1;
    fail('no other run of this test holds the machine (waited 600 s for '
         . 'its lock)');
    exit;
}
if ((my $st = WsAgent::Debian::package_status()) ne 'not installed') {
    plan tests => 1;
    fail("$Pkg is not installed before the test (dpkg: \"$st\"; "
         . "apt-get purge $Pkg if a killed run left it)");
    exit;
}
if (WsAgent::Debian::service_running()) {
    cannot_run('the nginx service runs here, and the package\'s '
               . 'nginx-reload trigger would reload it');
}

plan 'no_plan';

my $Before = WsAgent::Debian::system_state();
my $Installed;           # apt-get install ran and no purge succeeded yet

sub tail_of {
    my ($file, $n) = @_;
    my @l = split /\n/, slurp($file) // '';
    splice @l, 0, @l - $n if @l > $n;
    return "--- $file (last $n lines):\n" . join "\n", @l;
}

sub log_of { "$Tmp/$_[0].log" }

sub purge {
    my $rc = WsAgent::Debian::apt_get(log_of('purge'), 'purge', $Pkg);
    undef $Installed
        if WsAgent::Debian::package_status() eq 'not installed';
    return $rc;
}

# a run that died between install and purge leaves the machine as it was
END {
    if ($$ == $Main && $Installed) {
        my $rc = purge();
        WsAgent::Debian::output('dpkg', '--purge', $Pkg) if $Installed;
        print STDERR "# t/097: restored: $Pkg purged after a failed run "
                     . "(apt-get exited $rc)\n";
    }
}

sub nginx_t_ok {
    my ($name) = @_;
    my ($rc, $out) = WsAgent::Debian::output($WsAgent::Debian::Nginx, '-t');
    ok($rc == 0 && $out =~ /test is successful/, $name) or diag($out);
}

# --- build -------------------------------------------------------------

my $src = "$Tmp/src";
my $files = WsAgent::Debian::copy_checkout($Repo, $src);
my $copied = WsAgent::Debian::manifest($src);

my $t0 = time;
my $rc = WsAgent::Debian::run(cmd => [qw(dpkg-buildpackage -us -uc -b)],
                              dir => $src, log => log_of('build'),
                              timeout => 900);
my $build_s = time - $t0;
ok($rc == 0, sprintf 'dpkg-buildpackage -us -uc -b builds the package in a '
               . 'copy of the checkout (%d files, %.0f s)', $files, $build_s)
    or do { diag(tail_of(log_of('build'), 60)); exit };

# scripts/build.sh: conf_flags' words, then dpkg-buildflags' CFLAGS and
# CPPFLAGS and -Werror in --with-cc-opt
{
    my $auto;        # in the build tree, wherever debian/rules put it
    File::Find::find(sub { $auto //= $File::Find::name
                               if $_ eq 'ngx_auto_config.h' }, $src);
    my ($configure) = (slurp($auto // '/nonexistent') // '')
                      =~ /^#define NGX_CONFIGURE "(.*)"$/m;
    my ($flags) = (slurp('/usr/share/nginx/src/conf_flags') // '')
                  =~ /^NGX_CONF_FLAGS=\( *(.*?) *\)$/m;
    my (undef, $cflags) = WsAgent::Debian::output({ dir => $src },
        'dpkg-buildflags', '--get', 'CFLAGS');
    my (undef, $cppflags) = WsAgent::Debian::output({ dir => $src },
        'dpkg-buildflags', '--get', 'CPPFLAGS');
    my %had = map { $_ => 1 } split ' ', ($configure // '')
                                         =~ s/'|--with-(?:cc|ld)-opt=//gr;
    my @want = (split(' ', $flags // 'no-conf_flags'), split(' ', $cflags),
                split(' ', $cppflags), '-Werror');
    is(join(' ', grep { !$had{$_} } @want), '',
       "the package's configure had Debian's conf_flags, dpkg-buildflags' "
       . 'CFLAGS and CPPFLAGS and -Werror, as scripts/build.sh does')
        or diag("NGX_CONFIGURE: " . ($configure // 'not found'));
}

{
    my $built = WsAgent::Debian::manifest($src);
    my %all = (%$copied, %$built);
    my @changed = grep { !m{^debian/} && ($copied->{$_} // 'none')
                                         ne ($built->{$_} // 'none') }
                  sort keys %all;
    is("@changed", '', 'the build wrote nothing outside debian/');
    is(WsAgent::Debian::run(cmd => ['debian/rules', 'clean'], dir => $src,
                            log => log_of('clean'), timeout => 120),
       0, 'debian/rules clean succeeds')
        or diag(tail_of(log_of('clean'), 30));
    is_deeply(WsAgent::Debian::manifest($src), $copied,
              'debian/rules clean leaves the tree exactly as it was copied');
}

# --- the package -------------------------------------------------------

my ($deb) = glob "$Tmp/${Pkg}_*_*.deb";
my ($changes) = glob "$Tmp/${Pkg}_*_*.changes";
ok($deb && $changes, "the build made ${Pkg}_VERSION_ARCH.deb and .changes")
    or exit;

{
    my $abi = WsAgent::Debian::nginx_abi();
    ok($abi, "the system's nginx provides an ABI (" . ($abi // 'none') . ')');
    my (undef, $depends) = WsAgent::Debian::output('dpkg-deb', '-f', $deb,
                                                   'Depends');
    $depends =~ s/\s+$//;
    Test::More::note("Depends: $depends");
    my $want = $abi // 'nginx-abi-?';
    like($depends, qr/(?:^|, )\Q$want\E(?:,|\z)/,
         "Depends on the ABI of the nginx it was built against");
    like($depends, qr/\blibyajl2\b/, 'Depends on libyajl2 (shlibs)');
    like($depends, qr/\blibhiredis[\d.]+\b/, 'Depends on libhiredis (shlibs)');
    like($depends, qr/\blibssl3\b/, 'Depends on libssl3 (shlibs)');

    my (undef, $list) = WsAgent::Debian::output('dpkg-deb', '-c', $deb);
    for my $f ($WsAgent::Debian::So, $WsAgent::Debian::Available) {
        like($list, qr{ \.\Q$f\E$}m, "the package ships $f");
    }
}

{
    my $lrc = WsAgent::Debian::run(cmd => ['lintian', '--pedantic',
                                           '--fail-on', 'none', $changes],
                                   log => log_of('lintian'), timeout => 300);
    my @tags = grep { /^[A-Z]: / } split /\n/, slurp(log_of('lintian')) // '';
    is($lrc, 0, 'lintian ran')
        or diag(tail_of(log_of('lintian'), 30));
    Test::More::note(join "\n", 'lintian --pedantic:',
                     @tags ? @tags : '(no tags)');
    my %explained =
        WsAgent::Debian::explained_tags("$Repo/debian/README.source");
    my @new = grep { my ($tag) = /^[A-Z]: [^:]+: (\S+)/;
                     !$explained{$tag // ''} } @tags;
    is(join("\n", @new), '',
       'lintian reports no tag that debian/README.source does not explain');
}

# --- install into the system's nginx ---------------------------------------

$Installed = 1;
is(WsAgent::Debian::apt_get(log_of('install'), 'install', $deb), 0,
   "apt-get install -y ./${Pkg}_*.deb")
    or do { diag(tail_of(log_of('install'), 40)); exit };
is(WsAgent::Debian::package_status(), 'ii', 'dpkg: installed and configured');
ok(-f $WsAgent::Debian::So, "$WsAgent::Debian::So is installed");
ok(-f "/usr/share/doc/$Pkg/examples/prometheus/ws_agent.rules.yml"
   && -f "/usr/share/doc/$Pkg/examples/grafana/ws_agent.json",
   'the alerting rules and the dashboard are installed as examples');
is(slurp($WsAgent::Debian::Available), $WsAgent::Debian::LoadLine,
   "$WsAgent::Debian::Available loads the module");
is(readlink($WsAgent::Debian::Enabled), $WsAgent::Debian::Available,
   "$WsAgent::Debian::Enabled links to it");
nginx_t_ok("the system's nginx -t passes with the module enabled");
{
    my (undef, $dump) = WsAgent::Debian::output($WsAgent::Debian::Nginx, '-T');
    ok(index($dump, "# configuration file $WsAgent::Debian::Enabled:\n"
                    . $WsAgent::Debian::LoadLine) >= 0,
       "nginx -T: /etc/nginx/nginx.conf loads it through modules-enabled");
    my $log = slurp(log_of('install')) // '';
    like($log, qr/Processing triggers for nginx /,
         "the package's nginx-reload trigger ran");
    unlike($log, qr/Triggering nginx reload/,
           'and did not reload the nginx service (it does not run)');
    is(slurp('/run/nginx.pid') // 'absent', $Before->{'/run/nginx.pid'},
       'the nginx service is not started');
}

# --- one gated WebSocket through the system's nginx -----------------------

# load_module's modules/ is the prefix's: the servroot's resolves as
# Debian's prefix (/usr/share/nginx) does, to /usr/lib/nginx/modules.  The
# link is made once the runner has set up the servroot, and goes after the
# block (CPAN's runner removes no servroot with more in it than its own).
our $Modules = server_root() . '/modules';
my $link = 'symlink "/usr/share/nginx/modules", $main::Modules'
         . ' or die "$main::Modules: $!\n" unless -l $main::Modules;';
add_test_cleanup_handler(sub { unlink $Modules });

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(post_setup_server_root => $link);
    $block->set_value(config => ws_location('ws_agent on;',
                                            'ws_agent_ready_timeout 3s;'))
        unless defined $block->config;
    $block->set_value(no_error_log => "[alert]\n[crit]\n[emerg]\n")
        unless defined $block->no_error_log;
});

run_tests();

unlike(slurp(server_root() . '/conf/nginx.conf') // 'no nginx.conf',
       qr/^\s*load_module/m, 'the block\'s nginx.conf loads no module itself, '
       . 'only through /etc/nginx/modules-enabled');

# --- remove, then purge ----------------------------------------------------

is(WsAgent::Debian::apt_get(log_of('remove'), 'remove', $Pkg), 0,
   "apt-get remove -y $Pkg")
    or diag(tail_of(log_of('remove'), 40));
is(WsAgent::Debian::package_status(), 'rc',
   'dpkg: removed, its configuration kept');
ok(!-e $WsAgent::Debian::So && !-e $WsAgent::Debian::Available,
   'the .so and the load file are gone');
{
    my $removed = "$WsAgent::Debian::Enabled.removed";
    ok(!-l $WsAgent::Debian::Enabled
       && (readlink($removed) // '') eq $WsAgent::Debian::Available,
       "the modules-enabled link is disabled as $removed");
}
nginx_t_ok("the system's nginx -t passes with the package removed");

is(purge(), 0, "apt-get purge -y $Pkg")
    or diag(tail_of(log_of('purge'), 40));
is_deeply(WsAgent::Debian::system_state(), $Before,
          'after the purge the system is as it was: no .so, no load file, '
          . 'no modules-enabled link, dpkg knows nothing of the package, '
          . 'dpkg --audit as before, no nginx service');
nginx_t_ok("the system's nginx -t still passes");

Test::More::note(sprintf 'package build %.0f s, whole file %.0f s',
                         $build_s, time - $Started);

__DATA__

=== TEST 1: the system's nginx with the installed package: a message sent right after the 101 reaches the backend after its ack
--- main_config
include /etc/nginx/modules-enabled/*.conf;
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text early
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
--- ws_backend_transcript
sent text {"type":"connection_ready"}
recv text early
recv close 1000
sent close 1000
--- error_log eval
[qr/ws_agent ws_anon_\d+_[0-9a-f]{8}: backend ready after \d+ ms, 1 frames held/]
