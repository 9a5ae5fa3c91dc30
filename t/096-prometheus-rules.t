# The alerting rules and the Grafana dashboard, without a server:
# promtool check rules / check config, promtool test rules on the cases of
# contrib/prometheus/ws_agent.rules.test.yml, and each alert broken in turn
# (one that can never fire, one that always fires) must make those tests
# fail; the dashboard is valid JSON whose every query filters by its
# variables.  t/095-prometheus.t runs the same rules and queries on a real
# Prometheus against a live scrape.  Plain Test::More: no nginx here.
#
# Without promtool (scripts/bootstrap.sh prometheus) the promtool checks
# are skipped when run by hand, and fail under CI=true or scripts/test.sh.

use strict;
use warnings;

use File::Temp qw(tempdir);
use JSON::PP ();
use Test::More;
use WsAgent::Prometheus;
use WsAgent::Util qw(slurp spit);

my $dir = 'contrib/prometheus';
my $rules = "$dir/ws_agent.rules.yml";
my $cases = "$dir/ws_agent.rules.test.yml";
my $dashboard = 'contrib/grafana/ws_agent.json';
my $rules_text = slurp($rules) // BAIL_OUT("no $rules");
my @alerts = $rules_text =~ /^\s*- alert:\s*(\S+)/mg;

sub promtool { WsAgent::Prometheus::promtool(@_) }

# The rules text with alert $name's expr (and its continuation lines)
# passed through $edit.
sub with_expr {
    my ($name, $edit) = @_;
    my @lines = split /^/, $rules_text;
    my ($i) = grep { $lines[$_] =~ /^\s*- alert:\s*\Q$name\E\s*$/ } 0 .. $#lines;
    $i++ until $lines[$i] =~ /^(\s*)expr:/;
    my $indent = length $1;
    my $j = $i + 1;
    $j++ while $j < @lines && $lines[$j] =~ /^(\s*)\S/ && length $1 > $indent;
    my $expr = join '', @lines[$i .. $j - 1];
    splice @lines, $i, $j - $i, $edit->($expr);
    return join '', @lines;
}

# promtool test rules on the cases, with this rules text in place.
sub test_with {
    my ($text) = @_;
    my $tmp = tempdir(CLEANUP => 1);
    spit("$tmp/ws_agent.rules.yml", $text);
    spit("$tmp/ws_agent.rules.test.yml", slurp($cases));
    return promtool('test', 'rules', "$tmp/ws_agent.rules.test.yml");
}

SKIP: {
    # only promtool is needed here
    if (my $why = -x $WsAgent::Prometheus::Promtool ? undef
                  : "no promtool at $WsAgent::Prometheus::Promtool") {
        my $how = 'scripts/bootstrap.sh prometheus installs it';
        fail("promtool can run: $why ($how; CI and scripts/test.sh need it)")
            if WsAgent::Prometheus::required();
        skip "no promtool checks: $why ($how)", 1;
    }

    my ($rc, $out) = promtool('check', 'rules', $rules);
    is($rc, 0, "promtool check rules $rules") or diag($out);
    like($out, qr/SUCCESS: ${\ scalar @alerts} rules found/,
         "it finds the " . @alerts . " alerts (@alerts)");

    ($rc, $out) = promtool('check', 'config', "$dir/prometheus.yml");
    is($rc, 0, "promtool check config $dir/prometheus.yml (the example "
       . "job and its rule file)") or diag($out);

    ($rc, $out) = promtool('test', 'rules', $cases);
    is($rc, 0, "promtool test rules $cases") or diag($out);

    # every alert has a test case of its own
    my %tested = map { $_ => 1 } slurp($cases) =~ /alertname:\s*(\w+)/g;
    is(join(' ', grep { !$tested{$_} } @alerts), '',
       "every alert has cases in $cases");

    # a broken rule makes the checks fail
    my $bad = with_expr($alerts[0], sub { $_[0] =~ s/\(/((/r });
    my $tmp = tempdir(CLEANUP => 1);
    spit("$tmp/bad.rules.yml", $bad);
    ($rc, $out) = promtool('check', 'rules', "$tmp/bad.rules.yml");
    isnt($rc, 0, "promtool check rules fails on a PromQL syntax error "
         . "in $alerts[0]") or diag($out);

    for my $alert (@alerts) {
        # a metric renamed (as a typo would): the alert can never fire
        ($rc, $out) = test_with(with_expr($alert,
            sub { $_[0] =~ s/\bngx_ws_agent_/ngx_ws_agent_typo_/gr }));
        ok($rc != 0 && $out =~ /alertname: \Q$alert\E\b/,
           "the tests fail when $alert can never fire") or diag($out);

        # an alert that always fires
        ($rc, $out) = test_with(with_expr($alert, sub {
            my ($indent) = $_[0] =~ /^(\s*)/;
            "${indent}expr: vector(1)\n";
        }));
        ok($rc != 0 && $out =~ /alertname: \Q$alert\E\b/,
           "the tests fail when $alert always fires") or diag($out);
    }
}

# --- the dashboard: JSON that Grafana imports, its queries filtered -------

my $d = eval { JSON::PP::decode_json(slurp($dashboard) // '') };
ok($d, "$dashboard is JSON") or diag($@);
$d ||= {};
is($d->{uid}, 'ngx-ws-agent', 'it has a fixed uid (re-imports replace it)');
ok($d->{schemaVersion} && $d->{title}, 'it has a title and a schemaVersion');

my %var = map { $_->{name} => $_ } @{ $d->{templating}{list} || [] };
is(join(' ', sort keys %var), 'datasource instance job',
   'variables: datasource, job, instance');
is(($var{datasource} // {})->{query}, 'prometheus',
   '$datasource picks a Prometheus data source');

my @panels = map { ($_, @{ $_->{panels} || [] }) } @{ $d->{panels} || [] };
my %ids;
$ids{ $_->{id} // 'none' }++ for @panels;
is(join(' ', grep { $ids{$_} > 1 } sort keys %ids), '', 'panel ids are unique');
my @bad = grep { !$_->{gridPos} || !defined $_->{title} } @panels;
is(scalar @bad, 0, 'every panel has a title and a gridPos');

my @targets = map { my $p = $_; map { [$p, $_] } @{ $p->{targets} || [] } }
              grep { $_->{type} ne 'row' } @panels;
ok(@targets >= 20, scalar(@targets) . ' queries');
for my $pt (@targets) {
    my ($p, $t) = @$pt;
    my $where = "panel \"$p->{title}\" $t->{refId}";
    my $expr = $t->{expr} // '';
    is(($p->{datasource} // {})->{uid} . ' ' . ($t->{datasource} // {})->{uid},
       '${datasource} ${datasource}', "$where uses \$datasource");
    # every selector of a module metric is filtered by $job and $instance
    my @unfiltered = grep { !/\{job=~"\$job",instance=~"\$instance"\}$/ }
                     $expr =~ /(ngx_ws_agent_\w+(?:\{[^}]*\})?)/g;
    ok($expr =~ /ngx_ws_agent_/ && !@unfiltered,
       "$where selects by \$job and \$instance")
        or diag("$expr: @unfiltered");
    my @ranges = grep { $_ ne '$__rate_interval' && $_ ne '1h' }
                 $expr =~ /\[([^\]]+)\]/g;
    is("@ranges", '', "$where: its rates use \$__rate_interval");
}

done_testing();
