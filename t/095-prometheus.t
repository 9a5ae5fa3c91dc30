# A real Prometheus (Debian's prometheus 2.42, private: its own config and
# storage in servroot, a loopback port, started and stopped by PID) scrapes
# ws_agent_status prometheus of nginx with two workers every 200ms, with
# contrib/prometheus/ws_agent.rules.yml loaded.  Through Prometheus's own
# HTTP API: the target is up, every series the module exports arrives with
# its labels and value, the values are those of the block's traffic, the
# rules load and raise the alerts that traffic calls for, and every query
# of contrib/grafana/ws_agent.json runs and names only exported metrics.
#
# Without prometheus/promtool (scripts/bootstrap.sh prometheus installs
# them) the file is skipped when run by hand, and fails under CI=true or
# scripts/test.sh (WS_AGENT_PROMETHEUS_REQUIRED=1).

use Test::Nginx::Socket::WsAgent;
use JSON::PP ();
use WsAgent::Conf qw(ws_location);
use WsAgent::Http;
use WsAgent::Prometheus;
use WsAgent::Util qw(slurp wait_until);

if (my $why = WsAgent::Prometheus::missing()) {
    my $how = 'scripts/bootstrap.sh prometheus installs it';
    plan skip_all => "no Prometheus test: $why ($how)"
        unless WsAgent::Prometheus::required();
    plan tests => 1;
    fail("the Prometheus test can run: $why ($how; CI and scripts/test.sh "
         . "need it)");
    exit;
}
# under valgrind nginx is one process: no two workers to scrape
plan skip_all => 'the Prometheus test needs two workers; under valgrind '
                 . 'nginx is one process' if $ENV{TEST_NGINX_USE_VALGRIND};
plan 'no_plan';

repeat_each(1);
workers(2);

our $RULES = 'contrib/prometheus/ws_agent.rules.yml';
our $DASHBOARD = 'contrib/grafana/ws_agent.json';

# /ws acks (the backend's connection_ready); /ws-late waits for an ack the
# backend never sends, so its connections time out with 1013
my $ws = ws_location(
    'ws_agent on;',
    'ws_agent_ready_timeout 1s;',
    'ws_agent_user $http_x_user_id;',
    'ws_agent_publish agent:events:$ws_agent_user;');
my $late = ws_location(
    'ws_agent on;',
    'ws_agent_ready_type never_sent;',
    'ws_agent_ready_timeout 1s;') =~ s{location /ws }{location /ws-late }r;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $ws . $late
                      . "    location = /metrics { ws_agent_status prometheus; }\n")
        unless defined $block->config;
    $block->set_value(http_config => <<'_EOC_' . ($block->http_config // ''))
    ws_agent_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
_EOC_
        ;
    $block->set_value(redis_config => '') unless defined $block->redis_config;
    $block->set_value(prometheus => '/metrics')
        unless defined $block->prometheus;
    $block->set_value(prometheus_rules => $RULES)
        unless defined $block->prometheus_rules;
    $block->set_value(no_error_log => "[alert]\n[crit]\n")
        unless defined $block->no_error_log;
});

run_tests();


# --- helpers of the checks ---------------------------------------------

# The block's /metrics, straight from nginx: (samples, families, text),
# where samples are { 'name{labels}' => value } and families the names of
# the "# TYPE" lines with their type.
sub scrape {
    my $r = WsAgent::Http::send_request($ENV{TEST_NGINX_SERVER_PORT},
        WsAgent::Http::build_request('GET /metrics'), 3);
    die "GET /metrics: " . ($r->{error} // $r->{status}) . "\n"
        unless ($r->{status} // 0) == 200;
    my %family = $r->{body} =~ /^# TYPE (\S+) (\S+)$/mg;
    return (WsAgent::Prometheus::parse_exposition($r->{body}), \%family,
            $r->{body});
}

# The metric names a sample key or a PromQL text refers to.
sub metric_names {
    my %n = map { $_ => 1 } $_[0] =~ /\b(ngx_ws_agent_[a-z_]+)\b/g;
    return sort keys %n;
}

# A histogram's series are its family's: name_bucket, name_sum, name_count.
sub family_of {
    my ($name, $family) = @_;
    return $name if $family->{$name};
    my ($base) = $name =~ /^(.*)_(?:bucket|sum|count)$/;
    return $base if $base && ($family->{$base} // '') eq 'histogram';
    return undef;
}

# Every PromQL text of the dashboard: [where, expr, legend], panel targets
# (also inside rows) and the templating queries' label_values() selectors.
sub dashboard_queries {
    my $d = JSON::PP::decode_json(slurp($DASHBOARD) // die "no $DASHBOARD\n");
    my @q;
    for my $p (map { ($_, @{ $_->{panels} || [] }) } @{ $d->{panels} }) {
        push @q, map { ["panel \"$p->{title}\" $_->{refId}", $_->{expr},
                        $_->{legendFormat} // ''] }
                 @{ $p->{targets} || [] };
    }
    for my $v (@{ $d->{templating}{list} }) {
        next unless $v->{type} eq 'query';
        my $text = ref $v->{query} ? $v->{query}{query} : $v->{query};
        my ($sel) = $text =~ /^label_values\((.+),\s*\w+\)$/
            or die "variable $v->{name}: not label_values(SELECTOR, LABEL)\n";
        push @q, ["variable \$$v->{name}", $sel, ''];
    }
    return @q;
}

# Grafana's variables as the dashboard would fill them for this target.
sub grafana_expand {
    my ($expr) = @_;
    $expr =~ s/\$__rate_interval\b/1m/g;
    $expr =~ s/\$job\b/ws_agent/g;
    $expr =~ s/\$instance\b/.+/g;
    return $expr;
}

sub alert_names {
    return slurp($RULES) =~ /^\s*- alert:\s*(\S+)/mg;
}

# ALERTS of one alert now: { 'state label=value,...' => 1 }
sub alerts {
    my ($prom, $alert, @labels) = @_;
    my %a;
    for my $r (@{ $prom->query(qq(ALERTS{alertname="$alert"})) }) {
        $a{ join ' ', $r->{metric}{alertstate},
                      map { "$_=$r->{metric}{$_}" } @labels } = 1;
    }
    return \%a;
}

sub wait_alerts {
    my ($prom, $want, $alert, @labels) = @_;
    my $got;
    wait_until(10, sub {
        $got = alerts($prom, $alert, @labels);
        join("\n", sort keys %$got) eq join("\n", sort @$want);
    });
    return [sort keys %$got];
}

__DATA__

=== TEST 1: Prometheus scrapes both workers: the target is up, every series arrives with its labels and value, the counters are the traffic's, the rules load and a 1013 makes WsAgentReadyTimeouts pending, every dashboard query runs
--- ws_backend
wait 300ms
send text {"type":"connection_ready"}
record
--- ws_client
handshake /ws
send text a
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
handshake /ws
send text a
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
handshake /ws
send text a
recv text {"type":"connection_ready"}
send close 1000
recv close 1000
handshake /ws
recv text {"type":"connection_ready"}
send raw 81026869
recv close 1002
handshake /ws-late
send text lost
recv text {"type":"connection_ready"}
recv close 1013 within 3s
--- timeout: 5
--- prometheus_check eval
sub {
    package main;
    my ($prom, $name) = @_;

    my $t = $prom->target_state;
    is($t->{health}, 'up', "$name - /api/v1/targets: the target is up");
    is($t->{scrapeUrl},
       "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/metrics",
       "$name - /api/v1/targets: it scrapes the block's /metrics");
    is($t->{lastError}, '', "$name - /api/v1/targets: no scrape error");
    is($prom->value('up{job="ws_agent"}'), 1, "$name - up is 1");

    # what nginx answers now is what Prometheus holds after its next scrape
    my ($scraped, $family, $text) = scrape();
    my ($rc, $lint) = WsAgent::Prometheus::promtool({ stdin => $text },
                                                    'check', 'metrics');
    is("$rc $lint", '0 ', "$name - promtool check metrics: /metrics is "
       . "valid and lint-clean");
    my $got;
    wait_until(5, sub {
        $got = $prom->series_now('ngx_ws_agent_.*');
        join(',', map { "$_=$got->{$_}" } sort keys %$got)
            eq join(',', map { "$_=$scraped->{$_}" } sort keys %$scraped);
    });
    is_deeply($got, $scraped, "$name - every series of /metrics is in "
              . "Prometheus, with its labels and value");
    my %seen = map { family_of($_, $family) // "?$_" => 1 }
               map { metric_names($_) } keys %$got;
    is_deeply([sort keys %seen], [sort keys %$family],
              "$name - every metric family /metrics declares has series");
    Test::More::note("$name - " . scalar(keys %$got) . " series of "
                     . scalar(keys %$family) . " families");

    # the traffic: 4 acked (3 with a frame held), 1 closed with 1002 after
    # its ack, 1 timed out with its held frame dropped
    my %want = (
        'ngx_ws_agent_connections_total' => 5,
        'ngx_ws_agent_acks_total' => 4,
        'ngx_ws_agent_connections_active' => 0,
        'ngx_ws_agent_connections_gated' => 0,
        'ngx_ws_agent_ready_timeouts_total' => 1,
        'ngx_ws_agent_frames_held_total' => 4,
        'ngx_ws_agent_frames_dropped_total' => 1,
        'ngx_ws_agent_closes_sent_total{code="1013"}' => 1,
        'ngx_ws_agent_closes_sent_total{code="1002"}' => 1,
        'ngx_ws_agent_closes_sent_total{code="1014"}' => 0,
        'ngx_ws_agent_protocol_errors_total{side="client"}' => 1,
        'ngx_ws_agent_protocol_errors_total{side="backend"}' => 0,
        'ngx_ws_agent_ready_seconds_count' => 4,
        'ngx_ws_agent_ready_seconds_bucket{le="0.1"}' => 0,
        'ngx_ws_agent_ready_seconds_bucket{le="+Inf"}' => 4,
        'ngx_ws_agent_events_dropped_total{reason="queue_overflow"}' => 0,
        'sum(ngx_ws_agent_redis_queue_depth)' => 0,
    );
    for my $q (sort keys %want) {
        is($prom->value($q), $want{$q}, "$name - $q is $want{$q}");
    }
    my $p50 = $prom->value('histogram_quantile(0.5, '
                           . 'ngx_ws_agent_ready_seconds_bucket)');
    ok($p50 > 0.1 && $p50 <= 1, "$name - histogram_quantile(0.5) of "
       . "ready_seconds is near the backend's 300ms set-up ($p50)");

    # per worker: the pid label names each of the two live workers
    my @w = @{ $prom->query('ngx_ws_agent_redis_connected') };
    is(scalar @w, 2, "$name - redis_connected has one series per worker");
    for my $s (@w) {
        my $pid = $s->{metric}{pid};
        my $cmd = slurp("/proc/$pid/cmdline") // '';
        like($cmd, qr/^nginx: worker process/,
             "$name - redis_connected{pid=\"$pid\"} is an nginx worker's");
        is($s->{value}[1], '1', "$name - worker $pid is connected to Redis");
    }

    # the rules: all loaded, evaluating, on exported names only
    my $rules = $prom->rules;
    is_deeply([sort keys %$rules], [sort(alert_names())],
              "$name - /api/v1/rules has every alert of $main::RULES");
    for my $r (sort keys %$rules) {
        is($rules->{$r}{health}, 'ok', "$name - rule $r evaluates")
            or diag("$r: $rules->{$r}{lastError}");
    }
    my @unknown = grep { !family_of($_, $family) }
                  metric_names(slurp($main::RULES));
    is("@unknown", '', "$name - $main::RULES names only exported metrics");
    # 1 connection of 5 closed with 1013 (over 5%), yet acks flow
    is_deeply(wait_alerts($prom, ['pending'], 'WsAgentReadyTimeouts'),
              ['pending'], "$name - WsAgentReadyTimeouts is pending");
    is_deeply(alerts($prom, 'WsAgentBackendNeverReady'), {},
              "$name - WsAgentBackendNeverReady is not (acks flow)");
    is_deeply(alerts($prom, 'WsAgentBackendProtocolErrors'), {},
              "$name - WsAgentBackendProtocolErrors is not (a client's error)");
    is_deeply(alerts($prom, 'WsAgentRedisDisconnected'), {},
              "$name - WsAgentRedisDisconnected is not");

    # the dashboard: its names are exported ones, it shows every family,
    # and each of its queries runs here and finds series
    my @queries = dashboard_queries();
    my %used = map { $_ => 1 } map { metric_names($_->[1]) } @queries;
    @unknown = grep { !family_of($_, $family) } sort keys %used;
    is("@unknown", '', "$name - $main::DASHBOARD names only exported metrics");
    my %shown = map { family_of($_, $family) // '' => 1 } keys %used;
    my @unshown = grep { !$shown{$_} } sort keys %$family;
    is("@unshown", '', "$name - $main::DASHBOARD shows every exported family");
    for my $q (@queries) {
        my ($where, $expr, $legend) = @$q;
        my $res = eval { $prom->query(grafana_expand($expr)) };
        # and its series have the labels its legend shows ({{code}} ...)
        my @missing;
        for my $l ($legend =~ /\{\{\s*(\w+)\s*\}\}/g) {
            push @missing, $l
                if grep { !defined $_->{metric}{$l} } @{ $res || [] };
        }
        ok($res && @$res && !@missing,
           "$name - $main::DASHBOARD $where runs and finds series")
            or diag($@ ? "$expr: $@" : !@{ $res || [] } ? "$expr: no series"
                    : "$expr: no label @missing for the legend '$legend'");
    }
}
--- ws_backend_connections: 5



=== TEST 2: Redis goes away: each worker's redis_connected is 0 and WsAgentRedisDisconnected is pending for both pids; 3 events into a queue of 2 drop one, WsAgentEventsDropped fires for reason queue_overflow
--- http_config
    ws_agent_redis_queue 2;
--- ws_backend
send text {"type":"connection_ready"}
echo
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
send text {"type":"agent_started"}
recv text {"type":"agent_started"}
send text {"type":"agent_completed"}
recv text {"type":"agent_completed"}
send close 1000
recv close 1000
sleep 300ms
http_get /metrics => (?m)^ngx_ws_agent_events_published_total 2$
redis_stop
sleep 300ms
handshake /ws X-User-Id: 2
recv text {"type":"connection_ready"}
send text {"type":"agent_started"}
recv text {"type":"agent_started"}
send text {"type":"agent_thinking"}
recv text {"type":"agent_thinking"}
send text {"type":"agent_completed"}
recv text {"type":"agent_completed"}
send close 1000
recv close 1000
--- prometheus_check eval
sub {
    package main;
    my ($prom, $name) = @_;

    is($prom->wait_value('count(ngx_ws_agent_redis_connected == 0)', 2), 2,
       "$name - both workers' redis_connected are 0");
    my @pids = sort map { $_->{metric}{pid} }
               @{ $prom->query('ngx_ws_agent_redis_connected') };
    is_deeply(wait_alerts($prom, [map { "pending pid=$_" } @pids],
                          'WsAgentRedisDisconnected', 'pid'),
              [map { "pending pid=$_" } @pids],
              "$name - WsAgentRedisDisconnected is pending for each worker "
              . "(@pids)");

    is($prom->value('ngx_ws_agent_events_published_total'), 2,
       "$name - the first connection's 2 events were published");
    is($prom->wait_value('ngx_ws_agent_events_queued_total', 5), 5,
       "$name - both connections' 5 events were queued");
    is($prom->wait_value(
           'ngx_ws_agent_events_dropped_total{reason="queue_overflow"}', 1),
       1, "$name - the second's 3 events overflowed its queue of 2 once");
    is($prom->wait_value('max(ngx_ws_agent_redis_queue_depth)', 2), 2,
       "$name - its worker holds 2 events for Redis");
    is_deeply(wait_alerts($prom, ['firing reason=queue_overflow'],
                          'WsAgentEventsDropped', 'reason'),
              ['firing reason=queue_overflow'],
              "$name - WsAgentEventsDropped fires for queue_overflow");
    is_deeply(alerts($prom, 'WsAgentPublishBacklog'), {},
              "$name - WsAgentPublishBacklog is not (2 is no backlog)");
}
--- error_log
Redis queue full (2 events), dropped 1 oldest unsent event(s)
