package WsAgent::Prometheus;

# A private Prometheus server (Debian's prometheus, never the system one)
# scraping one target on loopback: its own config and storage directory,
# a port from the kernel, started and stopped by PID; and the reads of its
# HTTP API a check needs (/api/v1/query, /api/v1/targets, /api/v1/rules).
# Also where promtool is, and whether the Prometheus tests must run.

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use URI::Escape qw(uri_escape);
use WsAgent::Http;
use WsAgent::Util qw(free_port wait_until kill_pid spit slurp);

our $Binary = $ENV{TEST_NGINX_PROMETHEUS} || '/usr/bin/prometheus';
our $Promtool = $ENV{TEST_NGINX_PROMTOOL} || '/usr/bin/promtool';

# Prometheus 2.42 applies its first targets about 5 s after it starts (its
# scrape manager reloads on a fixed 5 s tick): the first "up" takes that
my $FIRST_SCRAPE = 20;

# Why the Prometheus tests cannot run here, or undef.
sub missing {
    return "no prometheus at $Binary" unless -x $Binary;
    return "no promtool at $Promtool" unless -x $Promtool;
    return undef;
}

# CI and scripts/test.sh install the prometheus extra: there a missing
# prometheus is a failure, not a skip.
sub required {
    return ($ENV{CI} // '') eq 'true' || $ENV{WS_AGENT_PROMETHEUS_REQUIRED};
}

# new(dir => DIR, target => 'HOST:PORT', path => '/metrics',
#     interval => '200ms', rules => [FILE, ...], job => 'ws_agent')
sub new {
    my ($class, %opt) = @_;
    return bless { job => 'ws_agent', interval => '200ms', rules => [],
                   path => '/metrics', %opt }, $class;
}

sub port { $_[0]{port} }
sub job { $_[0]{job} }
sub target { $_[0]{target} }
sub log_text { slurp("$_[0]{dir}/prometheus.log") // '' }

# The config is the one file this server reads: one job, one target, the
# rule files evaluated as often as the target is scraped.
sub config_text {
    my ($self) = @_;
    my $i = $self->{interval};
    return "global:\n"
         . "  scrape_interval: $i\n"
         . "  scrape_timeout: $i\n"
         . "  evaluation_interval: $i\n"
         . (@{ $self->{rules} }
            ? "rule_files:\n" . join('', map { "  - \"$_\"\n" }
                                         @{ $self->{rules} })
            : '')
         . "scrape_configs:\n"
         . "  - job_name: \"$self->{job}\"\n"
         . "    metrics_path: \"$self->{path}\"\n"
         . "    static_configs:\n"
         . "      - targets: [\"$self->{target}\"]\n";
}

# Starts the server and waits (bounded) until its API answers; dies with
# its log if it does not.
sub start {
    my ($self) = @_;
    my $dir = $self->{dir};
    remove_tree($dir);
    make_path("$dir/data");
    spit("$dir/prometheus.yml", $self->config_text);
    $self->{port} = free_port();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/prometheus.log";
        open STDERR, '>&', \*STDOUT;
        exec $Binary, "--config.file=$dir/prometheus.yml",
             "--storage.tsdb.path=$dir/data",
             "--web.listen-address=127.0.0.1:$self->{port}",
             '--web.console.templates=/nonexistent',
             '--web.console.libraries=/nonexistent',
             '--log.level=warn'
            or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    my $ready = wait_until(15, sub {
        return 0 if waitpid($pid, POSIX::WNOHANG()) == $pid;
        my $r = WsAgent::Http::send_request($self->{port},
            WsAgent::Http::build_request('GET /-/ready'), 1);
        ($r->{status} // 0) == 200;
    });
    unless ($ready) {
        $self->stop;
        die "prometheus did not get ready on port $self->{port}:\n"
            . $self->log_text;
    }
    return 1;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill_pid(delete $self->{pid}, signals => [qw(TERM KILL)], grace => 5);
}

# GET an API path with query parameters -> the decoded "data", or dies with
# what Prometheus said.
sub api {
    my ($self, $path, @params) = @_;
    my @q;
    while (my ($k, $v) = splice @params, 0, 2) {
        push @q, uri_escape($k) . '=' . uri_escape($v);
    }
    $path .= '?' . join '&', @q if @q;
    my $r = WsAgent::Http::send_request($self->{port},
        WsAgent::Http::build_request("GET $path"), 5);
    die "prometheus GET $path: $r->{error}\n" if $r->{error};
    my $doc = eval { JSON::PP::decode_json($r->{body} // '') }
        or die "prometheus GET $path: $r->{status}, not JSON: "
               . ($r->{body} // '') . "\n";
    die "prometheus GET $path: $doc->{errorType}: $doc->{error}\n"
        unless ($doc->{status} // '') eq 'success';
    return $doc->{data};
}

# An instant query -> its result: [{ metric => {...}, value => [t, "v"] }]
sub query {
    my ($self, $expr) = @_;
    my $data = $self->api('/api/v1/query', query => $expr);
    die "prometheus: $expr is a $data->{resultType}, not a vector\n"
        unless $data->{resultType} eq 'vector';
    return $data->{result};
}

# The one sample of an instant query as a number, undef if there is none;
# dies if there are several.
sub value {
    my ($self, $expr) = @_;
    my $res = $self->query($expr);
    return undef unless @$res;
    die "prometheus: $expr has " . @$res . " series, not one\n" if @$res > 1;
    return $res->[0]{value}[1] + 0;
}

# Polls $expr until its value is $want (a number, or a sub given the value)
# or $timeout seconds passed; returns the last value seen.
sub wait_value {
    my ($self, $expr, $want, $timeout) = @_;
    my $last;
    my $ok = ref $want ? $want : sub { defined $_[0] && $_[0] == $want };
    wait_until($timeout // 10, sub {
        $last = $self->value($expr);
        $ok->($last);
    });
    return $last;
}

# The target of the job, as /api/v1/targets shows it.
sub target_state {
    my ($self) = @_;
    my ($t) = grep { $_->{labels}{job} eq $self->{job} }
              @{ $self->api('/api/v1/targets')->{activeTargets} };
    return $t;
}

# Waits until the target was scraped successfully after time $since (epoch
# seconds, the same clock), so what a query reads is of the nginx running
# now and not of an earlier one on the same port.
sub wait_scraped {
    my ($self, $since, $timeout) = @_;
    $timeout //= $FIRST_SCRAPE;
    my $up = qq(up{job="$self->{job}"});
    my $ok = wait_until($timeout, sub {
        my $at = $self->value("timestamp($up)");
        defined $at && $at > $since && ($self->value($up) // 0) == 1;
    });
    return 1 if $ok;
    my $t = $self->target_state;
    die "prometheus did not scrape $self->{target}$self->{path} "
        . "successfully within ${timeout}s: "
        . ($t ? "health $t->{health}, lastError \"$t->{lastError}\""
              : 'no such target') . "\n";
}


# The rules the server loaded: { NAME => { health, lastError, state, ... } }
sub rules {
    my ($self) = @_;
    my %r;
    for my $g (@{ $self->api('/api/v1/rules')->{groups} }) {
        $r{ $_->{name} } = $_ for @{ $g->{rules} };
    }
    return \%r;
}

# The samples of a text exposition (what a /metrics answers) ->
# { 'name{label="v",...}' => value }, labels sorted; HELP/TYPE skipped.
sub parse_exposition {
    my ($text) = @_;
    my %s;
    for my $line (split /\n/, $text // '') {
        next if $line =~ /^\s*(#|$)/;
        my ($name, $labels, $v) =
            $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/
            or die "not an exposition line: $line\n";
        my %l;
        $l{$1} = $2 while ($labels // '') =~ /\G\s*([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)",?/gc;
        $s{ series_key($name, \%l) } = $v + 0;
    }
    return \%s;
}

# 'name{a="1",b="2"}' of a metric name and its labels (without the ones
# Prometheus adds: job, instance), as parse_exposition() writes it.
sub series_key {
    my ($name, $labels) = @_;
    my @l = map { qq($_="$labels->{$_}") }
            grep { $_ ne '__name__' && $_ ne 'job' && $_ ne 'instance' }
            sort keys %$labels;
    return @l ? "$name\{" . join(',', @l) . '}' : $name;
}

# What Prometheus holds now for the job's series named like $re:
# { key => value } as parse_exposition() gives them.
sub series_now {
    my ($self, $re) = @_;
    my %s;
    for my $r (@{ $self->query(qq({job="$self->{job}",__name__=~"$re"})) }) {
        $s{ series_key($r->{metric}{__name__}, $r->{metric}) }
            = $r->{value}[1] + 0;
    }
    return \%s;
}


# promtool ARGS -> (exit code, output); with { stdin => TEXT } first, TEXT
# is its standard input (promtool check metrics reads an exposition there).
sub promtool {
    my $opt = ref $_[0] eq 'HASH' ? shift : {};
    my @args = @_;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        if (defined $opt->{stdin}) {
            # an in-memory handle has no descriptor: a pipe gives one
            pipe my $r, my $w or POSIX::_exit(127);
            if (fork == 0) {
                close $r;
                print $w $opt->{stdin};
                close $w;
                POSIX::_exit(0);
            }
            close $w;
            POSIX::dup2(fileno $r, 0) // POSIX::_exit(127);
        }
        exec $Promtool, @args or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

1;
