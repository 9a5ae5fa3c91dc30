package WsAgent::Debian;

# The Debian package of t/097-debian-package.t: what it needs, a copy of
# the checkout to build it in, the parts of the system it touches (so a run
# can show it left them as they were), and bounded commands: each runs in
# its own process group with a deadline, its output in a log file, and on
# timeout that group, and only it, is killed.

use strict;
use warnings;

use Cwd ();
use Digest::SHA ();
use Fcntl qw(:flock :mode);
use File::Basename qw(dirname);
use File::Copy ();
use File::Find ();
use File::Path qw(make_path);
use File::Temp ();
use POSIX ();
use WsAgent::Util qw(wait_until kill_pid slurp trim);

our $Package   = 'libnginx-mod-http-ws-agent';
our $So        = '/usr/lib/nginx/modules/ngx_ws_agent_module.so';
our $Available = '/usr/share/nginx/modules-available/mod-http-ws-agent.conf';
our $Enabled   = '/etc/nginx/modules-enabled/50-mod-http-ws-agent.conf';
our $Nginx     = '/usr/sbin/nginx';
our $LoadLine  = "load_module modules/ngx_ws_agent_module.so;\n";

# the directories the package puts files in or links from
my @Dirs = (dirname($So), dirname($Available), dirname($Enabled));

# program => the package that has it (scripts/bootstrap.sh debian)
my @Tools = (['dpkg-buildpackage', 'dpkg-dev'], ['dh', 'debhelper'],
             ['dh_nginx', 'nginx-dev'], ['lintian', 'lintian'],
             ['apt-get', 'apt'], ['dpkg-query', 'dpkg']);

sub in_path {
    my ($prog) = @_;
    for my $d (split /:/, $ENV{PATH} // '') {
        return "$d/$prog" if -x "$d/$prog";
    }
    return undef;
}

# Why the package test cannot run here, or undef.
sub missing {
    return 'not root (installing a package needs root)' if $> != 0;
    return "no $Nginx (package nginx)" unless -x $Nginx;
    for my $t (@Tools) {
        return "no $t->[0] (package $t->[1])" unless in_path($t->[0]);
    }
    return undef;
}

# CI and scripts/test.sh install the debian extra: there a missing tool is
# a failure, not a skip.
sub required {
    return ($ENV{CI} // '') eq 'true' || $ENV{WS_AGENT_DEBIAN_REQUIRED};
}

# One run of this test at a time on a machine (another checkout's run would
# install and purge the same package under it).  Returns the held handle,
# or undef if the lock did not come within $timeout seconds.
sub lock_machine {
    my ($timeout) = @_;
    my $path = '/run/lock/ngx-ws-agent-debian-test.lock';
    $path = '/tmp/ngx-ws-agent-debian-test.lock' unless -d dirname($path);
    open my $fh, '>>', $path or die "cannot open $path: $!\n";
    return wait_until($timeout, sub { flock $fh, LOCK_EX | LOCK_NB })
        ? $fh : undef;
}

# run(cmd => [...], log => FILE, timeout => SECONDS, dir => DIR,
#     env => {...}) -> exit status, or -1 if it was killed at the deadline
sub run {
    my (%o) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp 0, 0;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $o{log} or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        chdir $o{dir} or POSIX::_exit(126) if $o{dir};
        $ENV{$_} = $o{env}{$_} for keys %{ $o{env} || {} };
        exec @{ $o{cmd} } or POSIX::_exit(127);
    }
    my $status;
    wait_until($o{timeout}, sub { waitpid($pid, POSIX::WNOHANG()) == $pid
                                  and defined($status = $?) });
    # the group goes whether its leader finished or not (the second call:
    # after the leader itself was reaped)
    kill_pid(-$pid, grace => 2) for 1 .. 2;
    return defined $status ? $status >> 8 : -1;
}

# output([{dir => DIR},] cmd...) -> (exit status, stdout + stderr), for
# quick commands
sub output {
    my $opt = ref $_[0] ? shift : {};
    my ($fh, $log) = File::Temp::tempfile('ws-agent-deb-XXXXXX', TMPDIR => 1);
    close $fh;
    my $status = run(cmd => [@_], log => $log, timeout => 60, %$opt);
    my $text = slurp($log) // '';
    unlink $log;
    return ($status, $text);
}

# apt_get(LOG, ARGS...) -> exit status: apt-get -y, waiting up to 2 min
# for a dpkg lock another process holds (other checkouts' bootstraps)
sub apt_get {
    my ($log, @args) = @_;
    return run(cmd => ['apt-get', '-y', '-q', '-o', 'DPkg::Lock::Timeout=120',
                       @args],
               env => { DEBIAN_FRONTEND => 'noninteractive' },
               log => $log, timeout => 300);
}

# The checkout's files as git sees them (tracked and untracked, not
# ignored: no build/, no t/servroot, no debian/ build outputs), copied to
# $dest with their modes.  Returns how many.
sub copy_checkout {
    my ($repo, $dest) = @_;
    my ($status, $list) = output('git', '-C', $repo, 'ls-files', '-z',
                                 '--cached', '--others', '--exclude-standard');
    die "git ls-files failed in $repo:\n$list" if $status != 0;
    my $n = 0;
    for my $rel (split /\0/, $list) {
        my $from = "$repo/$rel";
        next unless -e $from || -l $from;    # deleted, not yet committed
        my $to = "$dest/$rel";
        make_path(dirname($to));
        if (-l $from) {
            symlink readlink($from), $to or die "symlink $to: $!";
        } else {
            File::Copy::copy($from, $to) or die "copy $from: $!";
            chmod((stat $from)[2] & 07777, $to);
        }
        $n++;
    }
    return $n;
}

# { relative path => what it is } for every entry under $dir: a regular
# file by mode and content, a link by target, a directory by mode.
sub manifest {
    my ($dir) = @_;
    my %m;
    File::Find::find({ no_chdir => 1, wanted => sub {
        my $rel = substr $File::Find::name, length $dir;
        $rel =~ s{^/}{};
        return if $rel eq '';
        my @st = lstat $File::Find::name;
        if (S_ISLNK($st[2])) {
            $m{$rel} = 'link ' . readlink $File::Find::name;
        } elsif (S_ISDIR($st[2])) {
            $m{$rel} = sprintf 'dir %o', $st[2] & 07777;
        } else {
            $m{$rel} = sprintf 'file %o %s', $st[2] & 07777,
                Digest::SHA->new(1)->addfile($File::Find::name)->hexdigest;
        }
    } }, $dir);
    return \%m;
}

# The parts of the system the package touches, to compare before and after:
# the three directories' entries (a link with its target), the package's
# dpkg status, dpkg's audit of half-installed packages, and the nginx
# service's pid file.
sub system_state {
    my %s;
    for my $d (@Dirs) {
        if (!-d $d) {
            $s{$d} = 'absent';
            next;
        }
        opendir my $dh, $d or die "$d: $!";
        $s{$d} = join "\n", map { -l "$d/$_" ? "$_ -> " . readlink "$d/$_"
                                              : $_ }
                            sort grep { !/^\.\.?$/ } readdir $dh;
    }
    $s{"dpkg $Package"} = package_status();
    (undef, $s{'dpkg --audit'}) = output('dpkg', '--audit');
    $s{'/run/nginx.pid'} = slurp('/run/nginx.pid') // 'absent';
    return \%s;
}

# "ii ", "rc "... or "not installed" (dpkg knows nothing of it)
sub package_status {
    my ($status, $out) = output('dpkg-query', '-W', '-f',
                                '${db:Status-Abbrev}', $Package);
    return 'not installed' if $status != 0 || $out =~ /^un/;
    return trim($out);
}

# The ABI the system's nginx provides, e.g. nginx-abi-1.22.1-7.
sub nginx_abi {
    my ($status, $out) = output('dpkg-query', '-W', '-f', '${Provides}',
                                'nginx');
    return $status == 0 && $out =~ /\b(nginx-abi-[\w.+~-]+)/ ? $1 : undef;
}

# Is the nginx service running, so the package's nginx-reload trigger would
# reload it?  nginx's postinst asks the same question before it reloads.
sub service_running {
    my ($status) = output('invoke-rc.d', '--quiet', 'nginx', 'status');
    return $status == 0;
}

# The tags lintian may still report: "  - TAG (level): why" lines of
# debian/README.source.
sub explained_tags {
    my ($readme) = @_;
    my $text = slurp($readme) // die "cannot read $readme\n";
    return map { $_ => 1 } $text =~ /^  - ([a-z0-9][a-z0-9+.-]+) \(\w+\):/mg;
}

1;
