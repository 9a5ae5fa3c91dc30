package WsAgent::Sse;

# The Server-Sent Events clients of a "--- sse_subscribe" block: real
# clients of nginx's text/event-stream locations over raw sockets (HTTP/1.1,
# chunked or by length; HTTP/1.0 until close; HTTP/2 with option h2=CONN,
# the streams of the clients that name one CONN on one connection, carried
# by t/lib/h2-transport.py), reading the stream as the WHATWG spec's
# EventSource does.  start() forks children, each running up
# to $PER_CHILD clients on one select() loop and appending a line per
# thing received to DIR/<client name>, flushed after every loop; the runner
# reads those files while the children run (wait_live, wait_events, settle)
# and once they are stopped (clients: what sse_check gets).
#
#   WsAgent::Sse            the clients' lines parsed, the children started,
#                           waited on, stopped; their records read
#   WsAgent::Sse::Stream    the event-stream parser (bytes in, items out)
#   WsAgent::Sse::Client    one client in a child: its connections in turn
#   WsAgent::Sse::Origin    a scripted SSE server for the harness's own tests

use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use JSON::PP ();
use POSIX ();
use Time::HiRes qw(time sleep);
use WsAgent::Util qw(parse_duration parse_header_list kill_pid trim);

our $PER_CHILD = 200;     # sockets on one child's select() loop
our $MAX_LIFE = 600;      # no client child outlives this, or the runner

my %ESC = ("\\" => "\\\\", "\t" => "\\t", "\n" => "\\n", "\r" => "\\r");
my %UNESC = ("\\" => "\\", t => "\t", n => "\n", r => "\r");

# A record's fields: one line, tab separated.
sub esc { my ($s) = @_; $s //= ''; $s =~ s/([\\\t\n\r])/$ESC{$1}/g; $s }
sub unesc { my ($s) = @_; $s =~ s/\\([\\tnr])/$UNESC{$1}/g; $s }

my $JSON = JSON::PP->new->utf8->allow_nonref;

# --- the section's lines -----------------------------------------------------

# "NAME[ xN]: PATH [headers, ' | ' between] [ ; option ...]" per line ->
# client specs; "xN" makes NAME1 .. NAMEN, with $n = 1 .. N in the path,
# the headers and the options ($n is 1 for a single client).
sub parse_clients {
    my ($text) = @_;
    my (@specs, %names, %groups);
    for my $line (split /\n/, $text // '') {
        $line = trim($line);
        next if $line eq '' || $line =~ /^#/;
        $line =~ s/\s+#\s.*$//;
        my ($name, $count, $rest) = $line =~ /^([A-Za-z_]\w*)(?:\s+x(\d+))?\s*:\s*(\S.*)$/
            or die "sse_subscribe '$line': want NAME[ xN]: PATH [headers] "
                   . "[ ; option ...]\n";
        die "sse_subscribe '$line': x$count (want 1 or more)\n"
            if defined $count && $count < 1;
        $groups{$name} = 1 if defined $count;
        for my $n (defined $count ? 1 .. $count : 1) {
            my $client = defined $count ? "$name$n" : $name;
            die "sse_subscribe: two clients named $client\n" if $names{$client}++;
            my ($req, @opts) = split /\s+;\s+/, $rest =~ s/\$n\b/$n/gr;
            my $s = { name => $client, group => defined $count ? $name : undef,
                      n => $n, headers => [] };
            $req = trim($req);
            $s->{path} = $req =~ s/^(\/\S*)\s*// ? $1
                : die "sse_subscribe '$line': the path starts with /\n";
            $req =~ s/^\|\s*//;
            $s->{headers} = [parse_header_list($req)];
            for my $o (map { trim($_) } @opts) {
                if ($o =~ /^drop_after=(\d+)$/ && $1 > 0) { $s->{drop_after} = $1 }
                elsif ($o =~ /^resume_after=(.+)$/) { $s->{resume_after} = parse_duration($1) }
                elsif ($o =~ /^resume_by=(header|query)$/) { $s->{resume_by} = $1 }
                elsif ($o =~ /^resumes=(\d+)$/) { $s->{resumes} = $1 }
                elsif ($o =~ /^last_event_id=(.*)$/) { $s->{last_event_id} = $1 }
                elsif ($o eq 'slow') { $s->{slow} = -1 }
                elsif ($o =~ /^slow=(.+)$/) { $s->{slow} = parse_duration($1) }
                elsif ($o =~ /^(http10|nowait)$/) { $s->{$1} = 1 }
                elsif ($o =~ /^h2=(\w+)$/) { $s->{h2} = $1 }
                elsif ($o =~ /^port=(\d+)$/) { $s->{port} = $1 }
                else {
                    die "sse_subscribe '$line': unknown option '$o' (drop_after=N, "
                        . "resume_after=T, resume_by=query, resumes=K, "
                        . "last_event_id=ID, slow[=T], http10, nowait, port=N, "
                        . "h2=CONN)\n";
                }
            }
            die "sse_subscribe '$line': resume_after, resume_by and resumes "
                . "go with drop_after=N\n"
                if !$s->{drop_after}
                   && grep { defined $s->{$_} } qw(resume_after resume_by resumes);
            $s->{resumes} //= 1 if $s->{drop_after};
            die "sse_subscribe '$line': h2 and http10\n" if $s->{h2} && $s->{http10};
            push @specs, $s;
        }
    }
    for my $g (keys %groups) {
        die "sse_subscribe: $g is a group (x N) and a client\n" if $names{$g};
    }
    die "sse_subscribe: no clients\n" unless @specs;
    return \@specs;
}

# --- the runner's side -------------------------------------------------------

# start(port => N, dir => DIR, clients => [specs]): the children forked,
# the clients connecting.
sub start {
    my ($class, %o) = @_;
    remove_tree($o{dir});
    make_path($o{dir});
    my @specs = @{ $o{clients} };
    my $self = bless { dir => $o{dir}, port => $o{port}, specs => \@specs,
                       names => [map { $_->{name} } @specs], pids => [],
                       st => {} }, $class;
    for my $s (@specs) {
        $self->{st}{$s->{name}} = { spec => $s, file => "$o{dir}/$s->{name}",
                                    off => 0, part => '', conns => [],
                                    n_events => 0 };
        push @{ $self->{groups}{$s->{group}} }, $s->{name} if defined $s->{group};
    }
    # round robin: the children share the clients evenly (an HTTP/2
    # connection's streams all in the first)
    my @tcp = grep { !$_->{h2} } @specs;
    my $kids = int((@tcp + $PER_CHILD - 1) / $PER_CHILD) || 1;
    my @share;
    push @{ $share[$_ % $kids] }, $tcp[$_] for 0 .. $#tcp;
    push @{ $share[0] }, grep { $_->{h2} } @specs;
    for my $mine (@share) {
        my $pid = fork // do { my $e = $!; $self->stop; die "fork: $e\n" };
        if ($pid == 0) {
            eval { run_child($o{port}, $o{dir}, $mine) };
            print STDERR "sse clients: $@" if $@;
            POSIX::_exit(0);
        }
        push @{ $self->{pids} }, $pid;
    }
    return $self;
}

sub names { @{ $_[0]{names} } }

# A client's name, or a group's (every client of "b x50"): the names.
sub resolve {
    my ($self, $name) = @_;
    return $name if $self->{st}{$name};
    return @{ $self->{groups}{$name} || [] };
}

# Reads what the children appended since the last poll, for these clients
# (all by default). Returns the time of the latest record that is not a
# comment (a heartbeat does not keep the clients from settling), or 0.
sub poll {
    my ($self, @names) = @_;
    @names = $self->names unless @names;
    my $latest = 0;
    for my $name (@names) {
        my $c = $self->{st}{$name};
        my $size = -s $c->{file} or next;
        next if $size <= $c->{off};
        open my $fh, '<:raw', $c->{file} or next;
        seek $fh, $c->{off}, 0;
        my $n = read $fh, my $bytes, $size - $c->{off};
        close $fh;
        next unless $n;
        $c->{off} += $n;
        $c->{part} .= $bytes;
        my $nl = rindex $c->{part}, "\n";
        next if $nl < 0;
        for my $line (split /\n/, substr($c->{part}, 0, $nl + 1, '')) {
            my $t = $self->take($c, $line);
            $latest = $t if $t > $latest;
        }
    }
    return $latest;
}

# One record line of a client's file into its connections.
sub take {
    my ($self, $c, $line) = @_;
    my ($t, $kind, @f) = map { unesc($_) } split /\t/, $line, -1;
    my $conn = $c->{conns}[-1];
    if ($kind eq 'connect') {
        push @{ $c->{conns} }, { request => $f[1], status => undef,
            status_line => undef, headers => {}, events => [], comments => [],
            retry => undef, end => undef, complete => 0, t => $t };
        return $t;
    }
    return 0 unless $conn;
    if ($kind eq 'status') {
        @$conn{qw(status status_line)} = @f;
    } elsif ($kind eq 'header') {
        my $h = $conn->{headers};
        $h->{$f[0]} = defined $h->{$f[0]} ? "$h->{$f[0]}, $f[1]" : $f[1];
    } elsif ($kind eq 'event') {
        push @{ $conn->{events} }, { id => $f[0] eq '-' ? undef : substr($f[0], 1),
                                     event => $f[1], data => $f[2], t => $t };
        $c->{n_events}++;
    } elsif ($kind eq 'comment') {
        push @{ $conn->{comments} }, $f[0];
        $conn->{live} = 1 if $f[0] eq 'live';
        return 0;
    } elsif ($kind eq 'retry') {
        $conn->{retry} = $f[0];
    } elsif ($kind eq 'body') {
        $conn->{body} .= $f[0];
    } elsif ($kind eq 'end') {
        @$conn{qw(end complete)} = ($f[0], $f[1] // 0);
    }
    return $t;
}

# Live: its connection has had ": live", or an answer that is not 200, or
# is over.
sub is_live {
    my ($self, $name) = @_;
    my $conn = $self->{st}{$name}{conns}[-1] or return 0;
    return $conn->{live} || defined $conn->{end}
           || (defined $conn->{status} && $conn->{status} != 200);
}

# Until every client but the "nowait" ones is live (bounded): the names
# of those that are not.
sub wait_live {
    my ($self, $secs) = @_;
    my @want = map { $_->{name} } grep { !$_->{nowait} } @{ $self->{specs} };
    my $deadline = time + $secs;
    while (1) {
        $self->poll(@want);
        @want = grep { !$self->is_live($_) } @want;
        return () unless @want;
        return @want if time >= $deadline || !$self->children_alive;
        sleep 0.02;
    }
}

sub children_alive {
    my ($self) = @_;
    return !grep { waitpid($_, POSIX::WNOHANG()) == $_ } @{ $self->{pids} };
}

# Why a client is not live yet, in a few words.
sub state_text {
    my ($self, $name) = @_;
    my $c = $self->{st}{$name};
    my $conn = $c->{conns}[-1] or return "$name: no connection yet";
    return "$name: connection " . @{ $c->{conns} } . ": "
        . (defined $conn->{status} ? "$conn->{status}" : 'no response yet')
        . ', ' . @{ $conn->{events} } . ' event(s), comments: '
        . (join(' | ', map { "'$_'" } @{ $conn->{comments} }) || 'none')
        . (defined $conn->{end} ? ", end $conn->{end}" : '');
}

# The sse_wait step: until client NAME (every client of group NAME) has
# had N events in all, bounded.  -> (ok, message)
sub wait_events {
    my ($self, $name, $n, $secs) = @_;
    my @names = $self->resolve($name)
        or return (0, "no sse client or group '$name'");
    my $t0 = time;
    while (1) {
        $self->poll(@names);
        my @short = grep { $self->{st}{$_}{n_events} < $n } @names;
        return (1, sprintf "%s: %d event(s) or more after %.2f s",
                $name, $n, time - $t0) unless @short;
        if (time - $t0 >= $secs) {
            splice @short, 5 if @short > 5;
            return (0, "after $secs s: " . join '; ', map {
                "$_ has " . $self->{st}{$_}{n_events} . " event(s), want $n ("
                . $self->state_text($_) . ")" } @short);
        }
        sleep 0.02;
    }
}

# Until no client received anything but comments for $quiet seconds
# (counted from now at the earliest), at most $bound seconds.
#   -> (settled, seconds waited)
sub settle {
    my ($self, $quiet, $bound) = @_;
    my $t0 = time;
    my $last = $t0;
    while (1) {
        my $t = $self->poll;
        $last = $t if $t > $last;
        my $now = time;
        return (1, $now - $t0) if $now - $last >= $quiet;
        return (0, $now - $t0) if $now - $t0 >= $bound;
        sleep 0.05;
    }
}

# The children stopped by PID (TERM: each open connection records
# "stopped"; then KILL), their last records read.
sub stop {
    my ($self) = @_;
    my @pids = @{ $self->{pids} } or return;
    kill 'TERM', @pids;
    kill_pid($_, signals => [qw(TERM KILL)], grace => 2) for @pids;
    $self->{pids} = [];
    $self->poll;
    for my $c (values %{ $self->{st} }) {
        $_->{end} //= 'stopped' for @{ $c->{conns} };
    }
}

# What sse_check gets: { NAME => { connections => [...], events => [...],
# ids => [...], name, group, n } }; every event with its data decoded as
# JSON (undef when it is not JSON).
sub clients {
    my ($self) = @_;
    return $self->{clients} if $self->{clients};
    my %out;
    for my $name ($self->names) {
        my $c = $self->{st}{$name};
        for my $e (map { @{ $_->{events} } } @{ $c->{conns} }) {
            $e->{json} = eval { $JSON->decode($e->{data}) };
        }
        my @events = map { @{ $_->{events} } } @{ $c->{conns} };
        $out{$name} = { name => $name, group => $c->{spec}{group},
                        n => $c->{spec}{n}, connections => $c->{conns},
                        events => \@events,
                        ids => [map { $_->{id} } grep { defined $_->{id} } @events] };
    }
    return $self->{clients} = \%out;
}

# A line per client (the first $max; those whose last connection failed,
# or has no response, first), for a failed block.
sub summary {
    my ($self, $max) = @_;
    my $bad = sub {
        my $conn = $self->{st}{$_[0]}{conns}[-1] or return 1;
        return !defined $conn->{status} || ($conn->{end} // '') =~ /^error/ ? 1 : 0;
    };
    my @names = sort { $bad->($b) <=> $bad->($a) } $self->names;
    my @lines;
    for my $name (@names > $max ? @names[0 .. $max - 1] : @names) {
        my $k = 0;
        my @conns = map {
            my @ids = map { $_->{id} // '-' } @{ $_->{events} };
            splice @ids, 10, @ids - 10, '...' if @ids > 10;
            my $te = $_->{headers}{'transfer-encoding'};
            "connection " . ++$k . ": " . ($_->{status} // 'no response')
            . ($te ? " $te" : '') . ', ' . @{ $_->{events} } . ' event(s)'
            . (@ids ? " (ids @ids)" : '') . ', ' . @{ $_->{comments} }
            . ' comment(s), end ' . ($_->{end} // 'none')
        } @{ $self->{st}{$name}{conns} };
        push @lines, "$name: " . (join('; ', @conns) || 'no connection');
    }
    push @lines, '... and ' . (@names - $max) . ' more' if @names > $max;
    return @lines;
}

# --- a child: its clients on one select() loop ---------------------------------

sub run_child {
    my ($port, $dir, $specs) = @_;
    my ($stop, $parent, $born) = (0, getppid, time);
    $SIG{TERM} = sub { $stop = 1 };
    $SIG{PIPE} = 'IGNORE';
    open STDOUT, '>', '/dev/null';
    my %h2;
    my @clients = map {
        my $c = WsAgent::Sse::Client->new(%$_, port => $_->{port} // $port,
                                          file => "$dir/$_->{name}");
        if (my $conn = $_->{h2}) {
            $h2{$conn} //= WsAgent::Sse::H2->new($c->{port});
            $c->{h2} = $h2{$conn};
            $h2{$conn}{clients}{$c->{name}} = $c;
        }
        $c } @$specs;
    $_->open_conn for @clients;
    $_->flush for @clients;
    while (!$stop && getppid == $parent && time - $born < $MAX_LIFE) {
        my $now = time;
        $_->tick($now) for @clients;
        my ($rbits, $wbits, %by, %h2_by) = ('', '');
        for my $t (values %h2) {
            my $fh = $t->{from} or next;
            vec($rbits, fileno $fh, 1) = 1;
            $h2_by{fileno $fh} = $t;
        }
        for my $c (@clients) {
            my $fh = $c->{sock} or next;
            my $fd = fileno $fh;
            if ($c->wants_write) { vec($wbits, $fd, 1) = 1 }
            elsif ($c->wants_read($now)) { vec($rbits, $fd, 1) = 1 }
            else { next }
            $by{$fd} = $c;
        }
        unless (%by || %h2_by) { sleep 0.02; $_->flush for @clients; next }
        my ($rout, $wout) = ($rbits, $wbits);
        my $n = select($rout, $wout, undef, 0.05);
        if ($n > 0) {
            for my $fd (keys %h2_by) {
                $h2_by{$fd}->on_readable if vec($rout, $fd, 1);
            }
            for my $fd (sort { $a <=> $b } keys %by) {
                my $c = $by{$fd};
                next unless $c->{sock} && fileno $c->{sock} == $fd;
                if (vec($wout, $fd, 1)) { $c->on_writable }
                elsif (vec($rout, $fd, 1)) { $c->on_readable }
            }
        }
        $_->flush for @clients;
    }
    $_->stopped for @clients;
    $_->flush for @clients;
    $_->stop for values %h2;
}


# --- what sse_check blocks ask of the events ---------------------------------

# Stream ids compared as Redis orders them.
sub idcmp {
    my ($a, $b) = map { [split /-/] } @_;
    return $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1];
}

# One client's events, by connection id: ({ cid => [seq...] }, how many
# events had an SSE id that is not their envelope's, how many an id not
# above the one before).
sub by_connection {
    my ($client) = @_;
    my (%seqs, $bad_id, $disorder);
    my $prev = '0-0';
    for my $e (@{ $client->{events} }) {
        my $j = $e->{json} or next;
        next unless ref $j eq 'HASH' && $j->{connection_id};
        push @{ $seqs{ $j->{connection_id} } }, $j->{seq};
        $bad_id++ unless defined $e->{id} && $e->{id} eq ($j->{id} // '');
        $disorder++ unless defined $e->{id} && idcmp($e->{id}, $prev) > 0;
        $prev = $e->{id} // $prev;
    }
    return (\%seqs, $bad_id // 0, $disorder // 0);
}


package WsAgent::Sse::Stream;

# The event stream as the WHATWG spec reads it ("interpret an event
# stream"): lines end in CRLF, LF or CR; ":" starts a comment; a line is
# "field: value" (one space after the colon dropped) or a field alone;
# fields event, data (lines joined with LF), id (not with NUL), retry (digits
# only); a blank line dispatches; an event whose data is empty is not
# dispatched; a first BOM is dropped; what is left at the end is dropped.
# As Chromium does, a new connection's id buffer starts as the last event
# id (a dispatch without an id line keeps it).
#
# feed(BYTES) -> items: ['event', {id, event, data, last_event_id}] (id:
# this event's id line, undef without one; event: "message" unless named),
# ['comment', TEXT], ['retry', MS], ['last_id', ID] (when it changed).

sub new {
    my ($class, %o) = @_;
    my $id = $o{last_id} // '';
    return bless { buf => '', data => '', type => '', id => $id,
                   has_id => 0, last_id => $id, bom => 1 }, $class;
}

sub feed {
    my ($self, $bytes) = @_;
    my $buf = \$self->{buf};
    $$buf .= $bytes;
    if ($self->{bom}) {
        return () if length $$buf < 3
                     && substr("\xEF\xBB\xBF", 0, length $$buf) eq $$buf;
        $$buf =~ s/^\xEF\xBB\xBF//;
        $self->{bom} = 0;
    }
    my @out;
    my $at = 0;
    pos($$buf) = 0;
    # a CR at the end may be the first half of a CRLF: it waits
    while ($$buf =~ /\G([^\r\n]*)(?:\r\n|\n|\r(?=.))/gcs) {
        $at = pos $$buf;
        $self->line($1, \@out);
    }
    substr($$buf, 0, $at, '') if $at;
    return @out;
}

sub line {
    my ($self, $line, $out) = @_;
    return $self->dispatch($out) if $line eq '';
    if (substr($line, 0, 1) eq ':') {
        push @$out, ['comment', substr($line, 1) =~ s/^ //r];
        return;
    }
    my ($field, $value) = $line =~ /^([^:]*)(?::(.*))?$/s;
    $value //= '';
    $value =~ s/^ //;
    if ($field eq 'event') { $self->{type} = $value }
    elsif ($field eq 'data') { $self->{data} .= "$value\n" }
    elsif ($field eq 'id') {
        @$self{qw(id has_id)} = ($value, 1) unless $value =~ /\0/;
    } elsif ($field eq 'retry') {
        push @$out, ['retry', 0 + $value] if $value =~ /^[0-9]+$/;
    }
}

sub dispatch {
    my ($self, $out) = @_;
    if ($self->{last_id} ne $self->{id}) {
        $self->{last_id} = $self->{id};
        push @$out, ['last_id', $self->{id}];
    }
    my ($data, $type, $has_id) = @$self{qw(data type has_id)};
    @$self{qw(data type has_id)} = ('', '', 0);
    return if $data eq '';
    chop $data;
    push @$out, ['event', { id => $has_id ? $self->{id} : undef,
                            event => $type eq '' ? 'message' : $type,
                            data => $data, last_event_id => $self->{id} }];
}


package WsAgent::Sse::Client;

# One client in a child: a connection (non-blocking connect, the request,
# the response's head, its body by chunks, by length or until close, the
# event stream), then, after a drop, the next.  Every thing it receives
# is a line of its record file (WsAgent::Sse::take reads them):
#
#   TIME connect K REQUEST | status CODE LINE | header NAME VALUE
#   | event =ID|- TYPE DATA | comment TEXT | retry MS | body BYTES
#   | end eof|dropped|stopped|error: ... COMPLETE

use IO::Handle;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF SO_ERROR pack_sockaddr_in inet_aton);
use Time::HiRes qw(time);

my $CONNECT_TIMEOUT = 5;
my $BODY_MAX = 65536;     # recorded of an answer that is not 200
my $SLOW_RCVBUF = 4096;

sub new {
    my ($class, %o) = @_;
    open my $out, '>>:raw', $o{file} or die "cannot write $o{file}: $!\n";
    return bless { %o, out => $out, conn_n => 0, state => 'idle',
                   last_id => $o{last_event_id} // '', retry => undef,
                   dirty => 0 }, $class;
}

sub rec {
    my ($self, $kind, @f) = @_;
    print { $self->{out} } join("\t", sprintf('%.6f', time), $kind,
                                map { WsAgent::Sse::esc($_) } @f), "\n";
    $self->{dirty} = 1;
}

sub flush {
    my ($self) = @_;
    return unless $self->{dirty};
    $self->{out}->flush;
    $self->{dirty} = 0;
}

# The request's path and headers: [path, [NAME, VALUE]...].
sub request_parts {
    my ($self) = @_;
    my $path = $self->{path};
    my @h = (['Host', "localhost:$self->{port}"], ['Accept', 'text/event-stream'],
             ['Cache-Control', 'no-cache']);
    if ($self->{last_id} ne '') {
        if (($self->{resume_by} // 'header') eq 'query') {
            $path =~ s/([?&])last_event_id=[^&]*(&|$)/$2 ? $1 : ''/e;
            my $id = $self->{last_id} =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ger;
            $path .= ($path =~ /\?/ ? '&' : '?') . "last_event_id=$id";
        } else {
            push @h, ['Last-Event-ID', $self->{last_id}];
        }
    }
    for my $extra (@{ $self->{headers} }) {
        @h = grep { lc $_->[0] ne lc $extra->[0] } @h;
        push @h, $extra if defined $extra->[1];
    }
    return ($path, @h);
}

sub request {
    my ($self) = @_;
    my ($path, @h) = $self->request_parts;
    my $version = $self->{h2} ? '2' : $self->{http10} ? '1.0' : '1.1';
    return "GET $path HTTP/$version\r\n"
         . join('', map { "$_->[0]: $_->[1]\r\n" } @h) . "\r\n";
}

sub open_conn {
    my ($self) = @_;
    my $k = ++$self->{conn_n};
    my $req = $self->request;
    $self->rec('connect', $k, $req);
    %$self = (%$self, state => 'connect', wbuf => $req, head => '',
              status => undef, events_here => 0, framing => undef, cbuf => '',
              chunk_left => 0, chunk_crlf => 0, trailer => 0, left => 0,
              body_n => 0, live => 0, paused => 0, paused_once => 0,
              paused_until => undef,
              connect_by => time + $CONNECT_TIMEOUT,
              parser => WsAgent::Sse::Stream->new(last_id => $self->{last_id}));
    if (my $t = $self->{h2}) {
        # a stream on the connection (Host: as :authority, by the transport)
        my ($path, @h) = $self->request_parts;
        $t->send('open', $self->{name}, $path,
                 map { @$_ } grep { lc $_->[0] ne 'host' } @h);
        @$self{qw(state wbuf h2_open)} = ('head', '', 1);
        return;
    }
    my $sock = IO::Socket::INET->new(Proto => 'tcp')
        or return $self->fail("socket: $!");
    # before connect: the window it announces stays small
    setsockopt($sock, SOL_SOCKET, SO_RCVBUF, $SLOW_RCVBUF) if $self->{slow};
    $sock->blocking(0);
    $self->{sock} = $sock;
    connect($sock, pack_sockaddr_in($self->{port}, inet_aton('127.0.0.1')))
        or $!{EINPROGRESS} or return $self->fail("connect: $!");
}

sub wants_write {
    my ($self) = @_;
    return $self->{state} eq 'connect' || length $self->{wbuf};
}

sub wants_read {
    my ($self, $now) = @_;
    return 0 unless $self->{state} eq 'head' || $self->{state} eq 'body';
    return 1 unless $self->{paused};
    return 0 if !defined $self->{paused_until} || $now < $self->{paused_until};
    # slow=T: it reads again
    $self->{paused} = 0;
    return 1;
}

sub tick {
    my ($self, $now) = @_;
    if ($self->{h2} && $self->{paused} && defined $self->{paused_until}
        && $now >= $self->{paused_until}) {
        # slow=T over HTTP/2: the stream's window given back
        $self->{paused} = 0;
        $self->{h2}->send('slow', $self->{name}, 0);
    }
    if ($self->{state} eq 'connect' && $now > $self->{connect_by}) {
        $self->fail("connect: no connection after $CONNECT_TIMEOUT s");
    } elsif ($self->{state} eq 'resume' && $now >= $self->{resume_at}) {
        $self->open_conn;
    }
}

sub on_writable {
    my ($self) = @_;
    if ($self->{state} eq 'connect') {
        my $err = unpack 'i', getsockopt($self->{sock}, SOL_SOCKET, SO_ERROR)
                              // pack 'i', 0;
        if ($err) { local $! = $err; return $self->fail("connect: $!") }
        $self->{state} = 'head';
    }
    my $n = syswrite $self->{sock}, $self->{wbuf};
    return if !defined $n && ($!{EAGAIN} || $!{EINTR});
    return $self->fail("write: $!") unless defined $n;
    substr($self->{wbuf}, 0, $n, '');
}

sub on_readable {
    my ($self) = @_;
    my $n = sysread $self->{sock}, my $bytes, 65536;
    return if !defined $n && ($!{EAGAIN} || $!{EINTR});
    return $self->fail("read: $!") unless defined $n;
    return $self->at_eof unless $n;
    if ($self->{state} eq 'head') {
        $self->{head} .= $bytes;
        return $self->fail('a response head of more than 64k')
            if length $self->{head} > 65536 && $self->{head} !~ /\r?\n\r?\n/;
        return unless $self->{head} =~ s/^(.*?)\r?\n\r?\n//s;
        $self->response_head($1) or return;
        $bytes = $self->{head};
        $self->{head} = '';
    }
    $self->body($bytes) if length $bytes && $self->{sock};
    $self->maybe_pause if $self->{sock};
}

# slow: once live (or answered, or at once with nowait), it stops reading
# (over HTTP/2: its stream gets no window back); slow=T reads again T later
sub maybe_pause {
    my ($self) = @_;
    return unless $self->{slow} && !$self->{paused_once}
        && ($self->{live} || $self->{status} != 200 || $self->{nowait});
    @$self{qw(paused paused_once)} = (1, 1);
    $self->{paused_until} = time + $self->{slow} if $self->{slow} > 0;
    $self->{h2}->send('slow', $self->{name}, 1) if $self->{h2};
}

# A line of the HTTP/2 transport about this client's stream.
sub h2_line {
    my ($self, $kind, @f) = @_;
    return unless $self->{h2_open};
    if ($kind eq 'status') {
        $self->{status} = $f[0];
        $self->rec('status', $f[0], "HTTP/2 $f[0]");
        @$self{qw(state framing)} = ('body', 'h2');
    } elsif ($kind eq 'header') {
        $self->rec('header', lc $f[0], $f[1]);
    } elsif ($kind eq 'data') {
        return unless $self->{state} eq 'body';
        $self->body($f[0]);
        $self->maybe_pause if $self->{h2_open};
    } elsif ($kind eq 'end') {
        $self->{h2_open} = 0;
        return $self->fail("closed before a response ($f[0])")
            if $self->{state} ne 'body';
        return $self->finish(1) if $f[0] eq 'eof';
        $self->fail("stream $f[0]");
    }
}

sub response_head {
    my ($self, $head) = @_;
    my ($line, @lines) = split /\r?\n/, $head;
    my ($minor, $status) = ($line // '') =~ m{^HTTP/1\.(\d) (\d{3})(?: |$)}
        or return $self->fail("bad status line '" . ($line // '') . "'");
    $self->{status} = $status;
    $self->rec('status', $status, $line);
    my %h;
    for (@lines) {
        my ($name, $value) = /^([^:\s]+)\s*:\s*(.*?)\s*$/ or next;
        $self->rec('header', lc $name, $value);
        $h{lc $name} = defined $h{lc $name} ? "$h{lc $name}, $value" : $value;
    }
    $self->{state} = 'body';
    if ($status =~ /^(1|204|304)/) {
        $self->finish(1);
        return 0;
    }
    if ($minor && ($h{'transfer-encoding'} // '') =~ /\bchunked\b/i) {
        $self->{framing} = 'chunked';
    } elsif (defined $h{'content-length'} && $h{'content-length'} =~ /^(\d+)$/) {
        @$self{qw(framing left)} = ('length', $1);
        if ($1 == 0) { $self->finish(1); return 0 }
    } else {
        $self->{framing} = 'close';
    }
    return 1;
}

# The body's bytes, by its framing, to the event stream.
sub body {
    my ($self, $bytes) = @_;
    if ($self->{framing} eq 'length') {
        substr($bytes, $self->{left}) = '' if length $bytes > $self->{left};
        $self->{left} -= length $bytes;
        $self->payload($bytes);
        $self->finish(1) if $self->{sock} && $self->{left} == 0;
        return;
    }
    return $self->payload($bytes) unless $self->{framing} eq 'chunked';
    $self->{cbuf} .= $bytes;
    my $cbuf = \$self->{cbuf};
    while ($self->{sock} && length $$cbuf) {
        if ($self->{chunk_left}) {
            my $data = substr $$cbuf, 0, $self->{chunk_left}, '';
            $self->{chunk_left} -= length $data;
            $self->{chunk_crlf} = 1 unless $self->{chunk_left};
            $self->payload($data);
            next;
        }
        if ($self->{chunk_crlf}) {
            return if length $$cbuf < 2;
            return $self->fail('chunked: no CRLF after a chunk')
                unless substr($$cbuf, 0, 2, '') eq "\r\n";
            $self->{chunk_crlf} = 0;
            next;
        }
        my $i = index $$cbuf, "\r\n";
        if ($i < 0) {
            return $self->fail('chunked: a line of more than 4k')
                if length $$cbuf > 4096;
            return;
        }
        my $line = substr $$cbuf, 0, $i + 2, '';
        if ($self->{trailer}) {
            return $self->finish(1) if $line eq "\r\n";
            next;
        }
        my ($hex) = $line =~ /^([0-9a-fA-F]+)[ \t]*(?:;[^\r]*)?\r\n$/
            or return $self->fail("chunked: bad size line '"
                                  . ($line =~ s/\r\n$//r) . "'");
        my $size = hex $hex;
        if ($size) { $self->{chunk_left} = $size }
        else { $self->{trailer} = 1 }
    }
}

# The decoded body: an answer that is not 200 is kept as it is (the first
# 64k); a 200's is the event stream.
sub payload {
    my ($self, $bytes) = @_;
    return unless length $bytes;
    if ($self->{status} != 200) {
        my $room = $BODY_MAX - $self->{body_n};
        $bytes = substr $bytes, 0, $room if length $bytes > $room;
        $self->{body_n} += length $bytes;
        $self->rec('body', $bytes) if length $bytes;
        return;
    }
    for my $item ($self->{parser}->feed($bytes)) {
        my ($kind, $v) = @$item;
        if ($kind eq 'event') {
            $self->rec('event', defined $v->{id} ? "=$v->{id}" : '-',
                       $v->{event}, $v->{data});
            # the first "resumes" connections (one with resumes=0) close
            # after drop_after events; what else came in this read is not
            # looked at
            return $self->drop
                if $self->{drop_after} && ++$self->{events_here} >= $self->{drop_after}
                   && $self->{conn_n} <= ($self->{resumes} || 1);
        } elsif ($kind eq 'comment') {
            $self->rec('comment', $v);
            $self->{live} = 1 if $v eq 'live';
        } elsif ($kind eq 'retry') {
            $self->rec('retry', $v);
            $self->{retry} = $v;
        } elsif ($kind eq 'last_id') {
            $self->{last_id} = $v;
        }
    }
}

sub close_sock {
    my ($self) = @_;
    close delete $self->{sock} if $self->{sock};
    # HTTP/2: RST_STREAM, the connection stays
    $self->{h2}->send('reset', $self->{name}) if $self->{h2} && $self->{h2_open};
    $self->{h2_open} = 0;
}

# drop_after: TCP closed here; the next connection after resume_after
# (default: the retry the server sent, as EventSource waits; else at once)
sub drop {
    my ($self) = @_;
    $self->close_sock;
    $self->rec('end', 'dropped', 0);
    if ($self->{conn_n} <= ($self->{resumes} // 0)) {
        $self->{state} = 'resume';
        $self->{resume_at} = time + ($self->{resume_after}
                                     // ($self->{retry} // 0) / 1000);
    } else {
        $self->{state} = 'done';
    }
}

sub at_eof {
    my ($self) = @_;
    return $self->fail('closed before a response') if $self->{state} ne 'body';
    $self->finish($self->{framing} eq 'close' ? 1 : 0);
}

# The server ended it: complete 1 when the framing says the body ended
# there (the last chunk, the Content-Length, a close-delimited body's EOF).
sub finish {
    my ($self, $complete) = @_;
    $self->close_sock;
    $self->rec('end', 'eof', $complete);
    $self->{state} = 'done';
}

sub fail {
    my ($self, $why) = @_;
    $self->close_sock;
    $self->rec('end', "error: $why", 0);
    $self->{state} = 'done';
    return 0;
}

sub stopped {
    my ($self) = @_;
    return unless $self->{sock} || $self->{h2_open};
    $self->close_sock;
    $self->rec('end', 'stopped', 0);
}


package WsAgent::Sse::H2;

# One HTTP/2 connection of a child's clients: t/lib/h2-transport.py (with
# Debian's python3-h2) on two pipes; its lines go to the clients by name.

use File::Basename qw(dirname);
use File::Spec;
use IPC::Open2 ();

my $TRANSPORT = File::Spec->rel2abs(dirname(__FILE__) . "/../h2-transport.py");

sub new {
    my ($class, $port) = @_;
    my ($from, $to);
    my $pid = IPC::Open2::open2($from, $to, '/usr/bin/python3', $TRANSPORT, $port);
    $to->autoflush(1);
    return bless { pid => $pid, from => $from, to => $to, buf => '',
                   clients => {} }, $class;
}

sub send {
    my ($self, @f) = @_;
    return unless $self->{to};
    print { $self->{to} } join("\t", map { WsAgent::Sse::esc($_) } @f), "\n";
}

sub on_readable {
    my ($self) = @_;
    my $n = sysread $self->{from}, $self->{buf}, 65536, length $self->{buf};
    return if !defined $n && ($!{EAGAIN} || $!{EINTR});
    unless ($n) {
        # the transport is gone: every stream still open with it
        close delete $self->{from};
        $_->h2_line('end', 'error: the HTTP/2 transport exited')
            for values %{ $self->{clients} };
        return;
    }
    while ($self->{buf} =~ s/^([^\n]*)\n//) {
        my ($kind, $name, @f) = map { WsAgent::Sse::unesc($_) } split /\t/, $1, -1;
        if ($kind eq 'fail') {
            $_->h2_line('end', "error: $f[0]") for values %{ $self->{clients} };
            next;
        }
        my $c = $self->{clients}{$name} or next;
        $c->h2_line($kind, @f);
    }
}

sub stop {
    my ($self) = @_;
    close delete $self->{to} if $self->{to};
    close delete $self->{from} if $self->{from};
    WsAgent::Util::kill_pid($self->{pid}, signals => [qw(TERM KILL)], grace => 2)
        if $self->{pid};
    waitpid $self->{pid}, 0 if $self->{pid};
    delete $self->{pid};
}


package WsAgent::Sse::Origin;

# A scripted SSE server for the harness's own tests (t/001-peers.t) behind
# stock nginx (proxy_pass, proxy_buffering off): one forked child per
# connection; it answers HTTP/1.0 and closes, so nginx chunks the stream
# for an HTTP/1.1 client.  The query says what it sends:
#
#   n=3         events, ids FROM+1 .. FROM+n, FROM = Last-Event-ID or the
#               argument last_event_id (digits; else 0); "event: tick",
#               data {"n":ID,"user":X-User-Id,"last_event_id":what it was given}
#   every=MS    between events (default 0)
#   pieces=K    every write cut into K-byte writes, 2 ms apart (so chunks
#               end in the middle of lines)
#   crlf=1      CRLF line ends
#   retry=MS    the first block (default 1000); live=0: no ": live" before
#               the events
#   pad=B       B bytes of "x" in every event's data ("pad")
#   hold=1      open after the events until the peer closes (30 s at most)
#   status=N    answers N with a short text body instead

use IO::Select;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use WsAgent::Util qw(free_port kill_pid);

sub start {
    my ($class, %o) = @_;
    my $port = $o{port} // free_port();
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
        LocalPort => $port, Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "sse origin cannot listen on $port: $!\n";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        setpgrp 0, 0;
        $SIG{CHLD} = 'IGNORE';
        $SIG{PIPE} = 'IGNORE';
        my $parent = getppid;
        my $sel = IO::Select->new($listen);
        while (getppid == $parent) {
            next unless $sel->can_read(0.2);
            my $conn = $listen->accept or next;
            my $kid = fork;
            if (defined $kid && $kid == 0) {
                close $listen;
                eval { serve($conn) };
                POSIX::_exit(0);
            }
            close $conn;
        }
        POSIX::_exit(0);
    }
    close $listen;
    return bless { pid => $pid, port => $port, creator => $$ }, $class;
}

sub port { $_[0]{port} }

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $$ == $self->{creator};
    kill_pid(-$self->{pid}, grace => 1);
    kill_pid($self->{pid}, grace => 1);
    delete $self->{pid};
}

sub DESTROY { local $?; $_[0]->stop }

sub serve {
    my ($sock) = @_;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    my $head = '';
    my $deadline = time + 5;
    while ($head !~ /\r\n\r\n/) {
        return if time > $deadline;
        next unless IO::Select->new($sock)->can_read(0.2);
        sysread($sock, $head, 4096, length $head) or return;
    }
    my ($path) = $head =~ m{^GET (\S+)} or return;
    my %h = map { /^([^:]+):\s*(.*?)\s*$/ ? (lc $1, $2) : () } split /\r\n/, $head;
    my %q = map { my ($k, $v) = split /=/, $_, 2;
                  ($k, ($v // '') =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ger) }
            split /&/, ($path =~ /\?(.*)$/)[0] // '';
    my $write = sub {
        my ($bytes) = @_;
        my $k = $q{pieces} || length $bytes;
        for (my $i = 0; $i < length $bytes; $i += $k) {
            sleep 0.002 if $i;
            defined syswrite($sock, substr($bytes, $i, $k)) or return 0;
        }
        return 1;
    };
    if ($q{status}) {
        $write->("HTTP/1.0 $q{status} Scripted\r\nContent-Type: text/plain\r\n\r\n"
                 . "status $q{status}\n");
        return;
    }
    my $nl = $q{crlf} ? "\r\n" : "\n";
    my $given = $h{'last-event-id'} // $q{last_event_id};
    my $from = ($given // '') =~ /^(\d+)$/ ? $1 : 0;
    my $user = $h{'x-user-id'} // '';
    $write->("HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n"
             . "Cache-Control: no-cache\r\n\r\n") or return;
    $write->("retry: " . ($q{retry} // 1000) . "$nl$nl"
             . (($q{live} // 1) ? ": live$nl$nl" : '')) or return;
    my $pad = $q{pad} ? ',"pad":"' . ('x' x $q{pad}) . '"' : '';
    for my $id ($from + 1 .. $from + ($q{n} // 3)) {
        sleep $q{every} / 1000 if $q{every};
        $write->("id: $id${nl}event: tick${nl}data: {\"n\":$id,\"user\":\"$user\","
                 . "\"last_event_id\":\"" . ($given // '') . "\"$pad}$nl$nl")
            or return;
    }
    return unless $q{hold};
    my $end = time + 30;
    while (time < $end) {
        next unless IO::Select->new($sock)->can_read(0.2);
        sysread($sock, my $x, 4096) or return;
    }
}

1;
