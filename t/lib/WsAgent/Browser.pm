package WsAgent::Browser;

# The real browser of a "--- browser" block: Debian's chromium, headless,
# driven by t/browser/drive.js (npm's playwright-core, installed by
# "scripts/bootstrap.sh browser" into t/browser/node_modules; a browser is
# never downloaded).  run() loads one page and returns what the driver
# reported: the page's own result, the handshake Chromium made, its console.

use strict;
use warnings;

use Cwd ();
use File::Path qw(make_path remove_tree);
use JSON::PP ();
use POSIX ();
use WsAgent::Util qw(wait_until kill_pid slurp);

our $Chromium = $ENV{TEST_NGINX_CHROMIUM} || '/usr/bin/chromium';
my $Dir = Cwd::abs_path('t/browser') // 't/browser';

# Why the browser test cannot run here, or undef.
sub missing {
    return "no chromium at $Chromium" unless -x $Chromium;
    my $node = node() or return 'no node in PATH';
    return "no $Dir/node_modules/playwright-core"
        unless -f "$Dir/node_modules/playwright-core/package.json";
    return undef;
}

# CI and scripts/test.sh install the browser extra: there a missing browser
# is a failure, not a skip.
sub required {
    return ($ENV{CI} // '') eq 'true' || $ENV{WS_AGENT_BROWSER_REQUIRED};
}

sub node {
    for my $d (split /:/, $ENV{PATH} // '') {
        return "$d/node" if -x "$d/node";
    }
    return undef;
}

# run(url => ..., profile => DIR, timeout => seconds)
#   -> { page => {...}, handshake => {...}, console => [...], ... }
#   or { error => why }
sub run {
    my (%o) = @_;
    my $timeout = $o{timeout} || 30;
    remove_tree($o{profile});
    make_path($o{profile});
    my $out = "$o{profile}.json";
    my $err = "$o{profile}.stderr";
    unlink $out;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        # its own process group: chromium's processes go with it
        setpgrp 0, 0;
        open STDOUT, '>', $out;
        open STDERR, '>', $err;
        $ENV{PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD} = 1;
        # chromium's crash database and dconf stay in the profile, not ~
        $ENV{$_} = "$o{profile}/home" for qw(HOME XDG_CONFIG_HOME XDG_CACHE_HOME);
        exec node(), "$Dir/drive.js", $o{url}, $o{profile}, $Chromium,
             int($timeout * 1000 * 0.8)
            or POSIX::_exit(127);
    }
    my $status;
    wait_until($timeout, sub { waitpid($pid, POSIX::WNOHANG()) == $pid
                               and defined($status = $?) });
    # the driver closes chromium; whatever of its group is left goes now
    # (the second call: after the driver itself was reaped)
    kill_pid(-$pid, grace => 1) for 1 .. 2;
    remove_tree($o{profile});
    my $text = slurp($out) // '';
    my $stderr = slurp($err) // '';
    return { error => "the driver did not finish in ${timeout}s\n$stderr" }
        unless defined $status;
    my $r = eval { JSON::PP::decode_json($text) };
    return { error => "the driver exited with " . ($status >> 8)
                      . " and no JSON ($@):\n$text$stderr" } unless $r;
    $r->{stderr} = $stderr;
    return $r;
}

1;
