package WsAgent::RedisStream;

# The Redis Streams of ws_agent_stream, read back: the check of "---
# redis_stream" (after the client, while nginx and the block's Redis run)
# and the functions a file's own check may call (a sentinel_check sub
# reading the new master's copy).  A stream is read from the block's
# Redis; its channel's messages are those the block's redis_subscribe
# subscriber got.

use strict;
use warnings;

use Time::HiRes qw(time sleep);
use WsAgent::Util qw(expected_lines);
use WsAgent::Redis;

# An envelope as the stream keeps it (field e): no "id", these members in
# this order; $1 is the type.
our $Envelope = qr/^\{"connection_id":"[^"]+","user":"(?:[^"\\]|\\.)*","seq":\d+,"ts_ms":\d{13},"type":"((?:[^"\\]|\\.)*)","event":.*\}$/s;

# --- reading a stream --------------------------------------------------------

# The entries of $key (XRANGE - +), $cmd running one command:
# [{ id, ms, n (the id's sequence part), fields, t, e, conn, seq }]
sub entries {
    my ($cmd, $key) = @_;
    my $r = $cmd->('XRANGE', $key, '-', '+');
    die "XRANGE $key: " . WsAgent::Redis::reply_text($r) . "\n"
        unless ref $r eq 'ARRAY';
    my @out;
    for my $x (@$r) {
        my ($id, $f) = @$x;
        my %h = @{ $f || [] };
        my ($ms, $n) = $id =~ /^(\d+)-(\d+)$/;
        my ($conn) = ($h{e} // '') =~ /^\{"connection_id":"([^"]+)"/;
        my ($seq) = ($h{e} // '') =~ /"seq":(\d+),/;
        push @out, { id => $id, ms => $ms, n => $n, fields => $f,
                     t => $h{t}, e => $h{e}, conn => $conn, seq => $seq };
    }
    return \@out;
}

# What the script PUBLISHes for an entry: its id in front of the envelope.
sub published { my ($x) = @_; '{"id":"' . $x->{id} . '",' . substr($x->{e}, 1) }

sub id_lt {
    my ($a, $b) = @_;
    my ($am, $an) = $a =~ /^(\d+)-(\d+)$/ or return 0;
    my ($bm, $bn) = $b =~ /^(\d+)-(\d+)$/ or return 0;
    return $am < $bm || ($am == $bm && $an < $bn);
}

# Problems with every stream's entries: exactly the fields t and e (in
# that order), e an envelope without "id" whose type is t, ids rising, and
# per connection each seq once, rising by one.  Returns (problems,
# { connection id => [seqs] }).
sub entry_problems {
    my ($key, $entries) = @_;
    my (@bad, %seqs, $prev);
    for my $x (@$entries) {
        my @names = map { $x->{fields}[$_] } grep { $_ % 2 == 0 } 0 .. $#{ $x->{fields} };
        push @bad, "$key $x->{id}: fields @names, want t e" if "@names" ne 't e';
        if (($x->{e} // '') !~ $Envelope) {
            push @bad, "$key $x->{id}: e is not an envelope without \"id\": "
                       . ($x->{e} // '(none)');
        } elsif ($1 ne ($x->{t} // '')) {
            push @bad, "$key $x->{id}: t is " . ($x->{t} // '(none)')
                       . ", the envelope's type $1";
        }
        push @bad, "$key: id $x->{id} after $prev" if $prev && !id_lt($prev, $x->{id});
        $prev = $x->{id};
        push @{ $seqs{$x->{conn} // '?'} }, $x->{seq} // -1;
    }
    for my $c (sort keys %seqs) {
        my @s = @{ $seqs{$c} };
        my @jumps = grep { $s[$_] != $s[$_ - 1] + 1 } 1 .. $#s;
        push @bad, "$key: connection $c has seq " . seq_text(@s)
                   . " (each once, rising by one)" if @jumps;
    }
    return (\@bad, \%seqs);
}

# 1 2 3 7 8 -> "1..3 7..8"
sub seq_text {
    my @s = @_;
    my @r;
    for my $s (@s) {
        if (@r && $r[-1][1] + 1 == $s) { $r[-1][1] = $s } else { push @r, [$s, $s] }
    }
    return join ' ', map { $_->[0] == $_->[1] ? $_->[0] : "$_->[0]..$_->[1]" } @r;
}

# --- the section -------------------------------------------------------------

# "--- redis_stream": one line per stream,
#   STREAM COUNT [seq FROM..TO] [conns K] [channel CH | channel_tail CH]
#                [seen] [pttl<=MS]
# COUNT: the entries (N, or A..B); seq: every connection's seqs, FROM a
# number, <=N or *; conns: how many connections appended; channel: the
# messages on CH are the entries as published (the entry's id in front),
# in order, nothing else; channel_tail: the last COUNT messages are, the
# ones before have lower ids (trimmed, or a Redis restarted empty); seen:
# STREAM:seen:CONNECTION has the connection's seqs' bits set, an expiry
# within an hour; pttl<=MS: the stream expires within MS.
sub parse_lines {
    my ($text) = @_;
    my @want;
    for my $line (expected_lines($text)) {
        my ($key, $count, @opt) = split ' ', $line;
        my %w = (key => $key, line => $line);
        ($w{min}, $w{max}) = $count =~ /^(\d+)(?:\.\.(\d+))?$/
            or die "redis_stream '$line': COUNT is N or A..B\n";
        $w{max} //= $w{min};
        while (@opt) {
            my $o = shift @opt;
            if ($o eq 'seq') {
                my $r = shift(@opt) // '';
                @w{qw(seq_from seq_to)} = $r =~ /^(\*|<=\d+|\d+)\.\.(\d+)$/
                    or die "redis_stream '$line': seq FROM..TO\n";
            } elsif ($o eq 'conns') {
                ($w{conns}) = (shift(@opt) // '') =~ /^(\d+)$/
                    or die "redis_stream '$line': conns K\n";
            } elsif ($o eq 'channel' || $o eq 'channel_tail') {
                $w{channel} = shift(@opt) // die "redis_stream '$line': $o CH\n";
                $w{tail} = $o eq 'channel_tail';
            } elsif ($o eq 'seen') {
                $w{seen} = 1;
            } elsif ($o =~ /^pttl<=(\d+)$/) {
                $w{pttl} = $1;
            } else {
                die "redis_stream '$line': unknown option '$o'\n";
            }
        }
        push @want, \%w;
    }
    return @want;
}

# The block's Redis, and its subscriber's messages on a channel.
sub node_of {
    my ($ctx) = @_;
    my $redis = $ctx->{redis} or die "no Redis for the stream checks\n";
    return { port => $redis->port, cmd => sub { $redis->command(@_) },
             messages => sub { my ($ch) = @_;
                 map { $_->[1] } grep { $_->[0] eq $ch }
                 $ctx->{subscriber} ? @{ $ctx->{subscriber}{messages} } : () } };
}

# Reads what may still be on its way (bounded): the subscriber's messages.
sub pump {
    my ($ctx, $secs) = @_;
    if ($ctx->{subscriber}) { $ctx->{subscriber}->collect(1e9, $secs, 0) }
    else { sleep $secs }
}

# The section's check.  $ctx: name, block, wait, redis and subscriber as
# the block has them.
sub check {
    my ($ctx) = @_;
    my ($name, $block) = @$ctx{qw(name block)};
    my @want = parse_lines(WsAgent::Sections::value($block, 'redis_stream'));
    my $node = node_of($ctx);
    $_->{node} = $node for @want;
    # until every stream has its entries and every channel its messages
    my %got;
    my $deadline = time + ($ctx->{wait} || 2);
    while (1) {
        my $short = 0;
        for my $w (@want) {
            $got{$w->{key}} = eval { entries($node->{cmd}, $w->{key}) } // [];
            my $e = $got{$w->{key}};
            my %last;
            $last{$_->{conn} // '?'} = $_->{seq} // 0 for @$e;
            $short++ if @$e < $w->{min};
            $short++ if defined $w->{conns} && keys %last < $w->{conns};
            $short++ if defined $w->{seq_to}
                        && (!%last || grep { $_ < $w->{seq_to} } values %last);
            if ($w->{channel}) {
                my @m = $node->{messages}->($w->{channel});
                my ($top) = @m ? $m[-1] =~ /"seq":(\d+),/ : ();
                $short++ if @m < @$e;
                $short++ if $w->{tail} && defined $w->{seq_to}
                            && ($top // 0) < $w->{seq_to};
            }
        }
        last if !$short || time >= $deadline;
        pump($ctx, 0.05);
    }
    pump($ctx, 0.1);

    for my $w (@want) {
        my $key = $w->{key};
        my $entries = $got{$key} = entries($w->{node}{cmd}, $key);
        my $n = @$entries;
        my ($bad, $seqs) = entry_problems($key, $entries);
        my @bad = @$bad;
        push @bad, "$key: $n entries, want "
                   . ($w->{min} == $w->{max} ? $w->{min} : "$w->{min}..$w->{max}")
            if $n < $w->{min} || $n > $w->{max};
        my @conns = sort keys %$seqs;
        push @bad, "$key: entries of " . @conns . " connection(s), want $w->{conns}"
            if defined $w->{conns} && @conns != $w->{conns};
        for my $c (@conns) {
            my @s = @{ $seqs->{$c} };
            my ($from, $to) = ($w->{seq_from} // 1, $w->{seq_to});
            my $ok = (!defined $to || $s[-1] == $to)
                && ($from eq '*' ? 1 : $from =~ /^<=(\d+)$/ ? $s[0] <= $1
                                                             : $s[0] == $from);
            push @bad, "$key: connection $c has seq " . seq_text(@s) . ", want "
                       . ($w->{seq_from} // 1) . ".." . ($to // 'N') unless $ok;
        }
        if (defined $w->{channel}) {
            my @m = $w->{node}{messages}->($w->{channel});
            my @pub = map { published($_) } @$entries;
            my @mine = $w->{tail} ? @m[($#m - $#pub > 0 ? $#m - $#pub : 0) .. $#m] : @m;
            if (@mine != @pub || grep { $mine[$_] ne $pub[$_] } 0 .. $#pub) {
                my ($k) = grep { ($mine[$_] // '') ne ($pub[$_] // '') }
                          0 .. ($#mine > $#pub ? $#mine : $#pub);
                push @bad, "$w->{channel}: " . @m . " message(s); "
                    . ($w->{tail} ? "its last " . @pub : "they")
                    . " are not the " . @pub . " entries of $key as published; "
                    . "first difference at #" . ($k + 1) . ":\n      entry:   "
                    . ($pub[$k] // '(none)') . "\n      message: " . ($mine[$k] // '(none)');
            }
            my @ids = map { /^\{"id":"(\d+-\d+)",/ ? $1 : undef } @m;
            my @noid = grep { !defined $ids[$_] } 0 .. $#ids;
            push @bad, "$w->{channel}: message #" . ($noid[0] + 1)
                       . " has no id first: $m[$noid[0]]" if @noid;
            my @down = grep { defined $ids[$_] && defined $ids[$_ - 1]
                              && !id_lt($ids[$_ - 1], $ids[$_]) } 1 .. $#ids;
            push @bad, "$w->{channel}: ids do not rise: $ids[$down[0] - 1] then "
                       . "$ids[$down[0]]" if @down;
        }
        if ($w->{seen}) {
            for my $c (@conns) {
                my $seen = "$key:seen:$c";
                my @s = @{ $seqs->{$c} };
                my $r = sub { my $v = $w->{node}{cmd}->(@_); ref $v ? -1 : $v };
                # every appended seq's bit (trimmed ones too, or only those
                # this Redis had after a restart), none above, never bit 0
                my ($bits, $b0, $b1, $bn) = map { $r->(@$_) } ['BITCOUNT', $seen],
                    ['GETBIT', $seen, 0], ['GETBIT', $seen, $s[0]],
                    ['GETBIT', $seen, $s[-1]];
                my $upto = $r->('BITCOUNT', $seen, 0, $s[-1], 'BIT');
                my $ttl = $r->('PTTL', $seen);
                push @bad, "$seen: BITCOUNT $bits, bits 0/$s[0]/$s[-1]: $b0$b1$bn, "
                           . "want " . @s . "..$s[-1], none above, and 011"
                    unless $bits >= @s && $bits <= $s[-1] && "$b0$b1$bn" eq '011'
                           && $upto == $bits;
                push @bad, "$seen: PTTL $ttl, want 1..3600000"
                    unless $ttl > 0 && $ttl <= 3600000;
            }
        }
        if (defined $w->{pttl}) {
            my $ttl = $w->{node}{cmd}->('PTTL', $key);
            push @bad, "$key: PTTL " . WsAgent::Redis::reply_text($ttl)
                       . ", want 1..$w->{pttl}"
                unless !ref $ttl && $ttl > 0 && $ttl <= $w->{pttl};
        }
        my $what = join ', ', map { "$_ seq " . seq_text(@{ $seqs->{$_} }) } @conns;
        Test::More::ok(!@bad, "$name - redis_stream $key: $n entries"
                              . (@conns > 1 ? ' of ' . @conns . ' connections' : ''))
            or Test::More::diag(@bad . " problem(s) (127.0.0.1:$w->{node}{port}; "
                . ($what || 'no entries') . "):\n  "
                . join("\n  ", @bad[0 .. ($#bad < 9 ? $#bad : 9)])
                . "\n  first entries:\n    " . join("\n    ", map {
                    "$_->{id} t=" . ($_->{t} // '') . " e=" . ($_->{e} // '') }
                    @$entries[0 .. ($#$entries < 4 ? $#$entries : 4)]));
    }
}

1;
