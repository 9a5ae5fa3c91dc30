# The frame parser's C unit tests (t/unit), run under ASan and UBSan; their
# TAP lines are passed through one by one.

use strict;
use warnings;

use FindBin;
use Test::More;

my $dir = "$FindBin::Bin/unit";
my $out = `make -s -C '$dir' test 2>&1`;
my $rc = $?;
my ($plan, $seen) = (undef, 0);

for my $line (split /\n/, $out) {
    if ($line =~ /^(not )?ok \d+ - (.*)$/) {
        ok(!defined $1, $2);
        $seen++;

    } elsif ($line =~ /^1\.\.(\d+)$/) {
        $plan = $1;

    } else {
        diag($line);
    }
}

ok(defined $plan && $plan == $seen, "unit tests ran to the end ($seen)");
is($rc, 0, "make -C t/unit test exits with 0");

done_testing();
