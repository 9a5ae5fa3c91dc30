# The short versions of the hardening runs (RELIABILITY.md has the long
# ones): a 30-second soak with every fault through the gate, and each fuzzer
# for a few seconds over its corpus.  Plain Test::More: these drive whole
# scripts, not nginx blocks.

use strict;
use warnings;

use File::Path qw(remove_tree);
use File::Temp qw(tempdir);
use FindBin;
use Test::More;

my $repo = "$FindBin::Bin/..";
my ($so) = grep { m{ngx_ws_agent_module\.so$} }
           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the built module'
    unless $so;

# the soak: messages in order, every event lost counted and promised, no
# [alert]; it says PASS.  A 3 s outage at 240 connections/s overflows a
# queue of 1000 (about 1,100 events per worker), so the drops and their
# accounting are exercised, not only the happy path.
my $secs = $ENV{SOAK_SECONDS} || 30;
# its directory (logs, nginx's): kept only when something below fails
my $dir = tempdir('ws_agent_soak.XXXXXX', TMPDIR => 1);
my $out = `SOAK_DIR=$dir SOAK_QUEUE=1000 SOAK_MODULE=$so timeout 300 $repo/scripts/soak.sh $secs 2>&1`;
my $rc = $? >> 8;

is $rc, 0, "soak of $secs s exits 0" or diag $out;
like $out, qr/^soak: PASS \(/m, 'soak: PASS';
like $out, qr/client messages: (\d+) sent; lost 0;/, 'no client message lost';
like $out, qr/^events lost: \d+ of \d+ handed \([\d.]+ %\); the module's counters: .* = \d+: equal; lost while Redis was up 0;/m,
    'every event lost is counted, none while Redis was up';
like $out, qr/^queue_overflow promised by .* => kept$/m,
    'each worker lost what ws_agent_redis_queue promises';
like $out, qr/^queue bound: most held .* \(bound 1000\): kept$/m,
    'no worker held more than ws_agent_redis_queue';
like $out, qr/fault: redis-server SIGKILLed/, 'Redis was killed and came back';
like $out, qr/fault: Redis paused/, 'Redis was paused';
like $out, qr/fault: worker \d+ SIGKILLed/, 'a worker was killed';
note join "\n", grep { /^(client messages|events|queue|soak)/ } split /\n/, $out;
if (Test::More->builder->is_passing) {
    remove_tree($dir);
} else {
    diag "the soak's logs are kept in $dir";
}

# the fuzzers, bounded; they need clang's libFuzzer runtime
SKIP: {
    my $start = time;
    my $probe = `make -s -C $repo/fuzz fuzz_frame fuzz_json 2>&1`;
    skip "no libFuzzer here (scripts/bootstrap.sh fuzz): $probe", 4 if $?;

    for my $t (['check', 'corpora replay'],
               ['run FUZZ_SECONDS=10', 'frame parser, 10 s'],
               ['run-json FUZZ_SECONDS=10', 'JSON typer and envelope, 10 s'])
    {
        my $o = `make -s -C $repo/fuzz $t->[0] 2>&1`;
        is $? >> 8, 0, "fuzz: $t->[1]" or diag substr($o, -3000);
    }

    # only this run's findings: an old crash file may be a fixed bug's
    my @crashes = grep { (stat $_)[9] >= $start }
                  glob "$repo/fuzz/work/*crash-* $repo/fuzz/crash-*";
    is "@crashes", '', 'fuzz: no crash file from this run';
}

done_testing;
