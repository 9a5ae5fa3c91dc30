package WsAgent::Nginx;

# The nginx under test: servroot layout, nginx.conf, start/stop by PID,
# the error.log slice of one block, valgrind reports.
#
# nginx always runs in the foreground ("daemon off") as our child, so its
# PID is known without trusting a pid file, its stderr is ours to read, and
# a config error shows up as an early exit.

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use File::Spec;
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Util qw(wait_until kill_pid spit slurp);

sub new {
    my ($class, %opt) = @_;
    my $self = bless { workers => 1, log_level => 'debug', master => 1,
                       worker_connections => 1024, env => [],
                       load_modules => [], %opt }, $class;
    $self->{servroot} = File::Spec->rel2abs($self->{servroot});
    return $self;
}

sub servroot { $_[0]{servroot} }
sub html_dir { "$_[0]{servroot}/html" }
sub error_log { "$_[0]{servroot}/logs/error.log" }

# A fresh servroot, refusing to wipe a directory that is not one of ours.
sub prepare_servroot {
    my ($self) = @_;
    my $root = $self->{servroot};
    if (-d $root) {
        opendir my $dh, $root or die "$root: $!";
        my @entries = grep { !/^\.\.?$/ } readdir $dh;
        die "refusing to wipe $root: it does not look like a servroot\n"
            if @entries && !-e "$root/conf/nginx.conf" && !-d "$root/logs";
        remove_tree($root);
    }
    make_path(map { "$root/$_" } qw(conf logs html));
}

sub config_text {
    my ($self, %s) = @_;
    my $valgrind = $self->{valgrind};
    my $indent = sub { join "\n", map { "    $_" } split /\n/, $_[0] // '' };
    my $conf = join '', map { "load_module $_;\n" } @{ $self->{load_modules} };
    $conf .= $self->user_line
           . "daemon off;\n"
           . 'master_process ' . ($self->{master} && !$valgrind ? 'on' : 'off')
           . ";\nworker_processes $self->{workers};\n"
           . "error_log logs/error.log $self->{log_level};\n"
           . "pid logs/nginx.pid;\n"
           . join('', map { "env $_;\n" } @{ $self->{env} })
           . "\n" . ($s{main_config} // '') . "\n"
           . "events {\n"
           . "    worker_connections $self->{worker_connections};\n}\n\n"
           . "http {\n"
           . "    access_log logs/access.log;\n"
           . "    default_type text/plain;\n"
           . "    keepalive_timeout 68;\n";
    # named and placed as CPAN's runner does, which removes them
    $conf .= "    ${_}_temp_path ${_}_temp;\n"
        for qw(client_body proxy fastcgi uwsgi scgi);
    $conf .= "\n" . $indent->($s{http_config}) . "\n\n"
           . "    server {\n"
           . "        listen 127.0.0.1:$self->{port};\n"
           . "        server_name localhost;\n"
           . "        client_max_body_size 30M;\n\n"
           . join("\n", map { "    $_" } split /\n/, $indent->($s{config}))
           . "\n    }\n}\n";
    return $conf;
}

# As root, nginx's workers would run as "nobody", who cannot enter a
# checkout under /root (mode 0700): user_files answered 403 and unix
# sockets there failed.  Like CPAN's Test::Nginx, a root runner keeps them
# root, unless TEST_NGINX_WORKER_USER names the user.
sub user_line {
    my $user = $ENV{TEST_NGINX_WORKER_USER};
    return "user $user;\n" if defined $user && length $user;
    return $> == 0 ? "user root;\n" : '';
}

sub write_config {
    my ($self, %s) = @_;
    spit("$self->{servroot}/conf/nginx.conf", $self->config_text(%s));
}

sub command {
    my ($self, @extra) = @_;
    my @cmd = ($self->{binary}, '-p', "$self->{servroot}/",
               '-c', 'conf/nginx.conf', '-e', 'logs/error.log', @extra);
    if ($self->{valgrind}) {
        my $supp = File::Spec->rel2abs('t/valgrind.suppress');
        unshift @cmd, 'valgrind', '-q', '--error-exitcode=42',
            '--leak-check=full', '--num-callers=30',
            '--keep-debuginfo=yes',    # nginx dlclose()s modules before the leak check
            (-f $supp ? "--suppressions=$supp" : ()),
            "--log-file=$self->{servroot}/logs/valgrind.%p";
    }
    return @cmd;
}

sub error_log_size { -s $_[0]->error_log || 0 }

sub error_log_since {
    my ($self, $offset) = @_;
    my $all = slurp($self->error_log) // '';
    return substr $all, $offset // 0;
}

# Starts nginx; returns 1, or (0, why) if it exited instead.
sub start {
    my ($self) = @_;
    my $root = $self->{servroot};
    unlink "$root/logs/nginx.pid";
    my $stderr = "$root/logs/nginx.stderr";
    spit($stderr, '');
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', $stderr;
        open STDERR, '>&', \*STDOUT;
        exec $self->command or POSIX::_exit(127);
    }
    my $exited;
    my $up = wait_until($self->{valgrind} ? 30 : 5, sub {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $exited = $?;
            return 1;
        }
        return -s "$root/logs/nginx.pid";
    });
    if (defined $exited || !$up) {
        kill_pid($pid, grace => 1) unless defined $exited;
        return (0, 'nginx ' . (defined $exited ? 'exited with status '
                 . ($exited >> 8) : 'did not write its pid file in time')
                 . ":\n" . slurp($stderr));
    }
    $self->{pid} = $pid;
    sleep $ENV{TEST_NGINX_SLEEP} if $ENV{TEST_NGINX_SLEEP};
    return 1;
}

sub stderr_text { slurp("$_[0]{servroot}/logs/nginx.stderr") // '' }

# "nginx -t": returns (exit status, output).
sub test_config {
    my ($self) = @_;
    my $out = "$self->{servroot}/logs/nginx-t.out";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec $self->command('-t') or POSIX::_exit(127);
    }
    my $status;
    wait_until(30, sub { waitpid($pid, POSIX::WNOHANG()) == $pid
                         and defined($status = $?) });
    kill_pid($pid) unless defined $status;
    return (($status // -1) >> 8, slurp($out) // '');
}

sub running { !!$_[0]{pid} }

# Graceful first (QUIT), then TERM, then KILL.  Under valgrind nginx is
# one process, which exits on QUIT without closing its connections: their
# memory would be reported as leaked, so it gets up to 5 s to finish the
# block's connections first (valgrind's pace).
sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    my $grace = $self->{valgrind} ? 15 : 2;
    wait_until(5, sub { $self->client_connections == 0 }) if $self->{valgrind};
    kill_pid($pid, signals => [qw(QUIT TERM KILL)], grace => $grace);
}

# TCP connections nginx still holds on its port
sub client_connections { WsAgent::Util::tcp_connections($_[0]{port}) }

# Valgrind records that matter: memory errors always, leaks only when a
# frame is in this module (nginx itself exits with pools still allocated).
sub valgrind_errors {
    my ($self) = @_;
    my @errors;
    for my $file (glob "$self->{servroot}/logs/valgrind.*") {
        my $text = slurp($file) // next;
        unlink $file;
        my @records = split /\n==\d+==\s*\n/, $text;
        for my $r (@records) {
            next unless $r =~ /\S/;
            if ($r =~ /definitely lost|possibly lost/) {
                push @errors, $r if $r =~ /ngx_ws_agent/;
            } elsif ($r =~ /Invalid (read|write|free)|uninitialised|Conditional jump|Syscall param|Mismatched free|Source and destination overlap/) {
                push @errors, $r;
            }
        }
    }
    return @errors;
}

1;
