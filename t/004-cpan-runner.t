# The plug-in (Test::Nginx::Socket::WsAgent) on CPAN's Test::Nginx: what it
# adds to CPAN's runner so that the project's files run there as on the
# bundled one.  Runs only when the files run on a CPAN Test::Nginx::Socket:
#
#     prove -I t/lib -I /path/to/test-nginx/lib t/
#     TEST_NGINX_CPAN=/path/to/test-nginx/lib prove -I t/lib t/
#
# and is skipped on the bundled runner (this machine's CI has no CPAN).
# Stock nginx is enough: no block needs the module.

use Test::Nginx::Socket::WsAgent;
use WsAgent::Util qw(slurp);

if ($Test::Nginx::Socket::WsAgent::Runner ne 'cpan') {
    plan skip_all => 'the runner is the bundled one: no CPAN Test::Nginx '
        . 'on @INC (prove -I t/lib -I /path/to/test-nginx/lib t/ runs this '
        . 'file, and every other, on CPAN\'s)';
}
plan 'no_plan';

unlike($INC{'Test/Nginx/Socket.pm'}, qr{/t/lib/bundled/},
       "Test::Nginx::Socket is CPAN's: $INC{'Test/Nginx/Socket.pm'} "
       . "(version $Test::Nginx::Socket::VERSION)");

our $Proxy = <<'_EOC_';
    location /ws {
        proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection upgrade;
    }
_EOC_

no_shuffle();
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value(config => $Proxy) unless defined $block->config;
});

run_tests();

# the last block's nginx.conf, as CPAN's runner wrote it and the plug-in
# changed it
my $conf = slurp(server_root() . '/conf/nginx.conf') // '';
my $port = server_port();
like($conf, qr/^\s*listen\s+127\.0\.0\.1:$port\b/m,
     'nginx listens on 127.0.0.1 only');
unlike($conf, qr/^\s*listen\s+$port\b/m, 'not on every address');
like($conf, qr/^\s*master_process on;/m, 'with a master process');
like($conf, qr/^\s*worker_connections\s+1024;/m, 'and 1024 connections');
ok(!-e server_root() . '/logs/nginx.pid',
   'nginx was stopped at the end of the last block');

__DATA__

=== TEST 1: a ws_client block: the probe request, the steps, the backend's transcript; error_log sees the lines nginx writes when it stops
--- ws_backend
send text ready
echo
--- ws_client
handshake /ws
recv text ready
send text hello
recv text hello
send close 1000
recv close 1000
--- ws_backend_transcript
sent text ready
recv text hello
sent text hello
recv close 1000
sent close 1000
--- error_log eval
[qr/\[notice\] .*signal 3 \(SIGQUIT\) received/]



=== TEST 2: $TEST_NGINX_* in more_headers (CPAN's runner expands it only in the configuration)
--- config
    location = /t {
        return 200 "backend $http_x_backend\n";
    }
--- request
GET /t
--- more_headers
X-Backend: $TEST_NGINX_BACKEND_PORT
--- response_body
backend $TEST_NGINX_BACKEND_PORT



=== TEST 3: TEST_NGINX_RAND_PORT_1: the client goes to the port nginx listens on
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /ws {
            proxy_pass http://127.0.0.1:$TEST_NGINX_BACKEND_PORT;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection upgrade;
        }
    }
--- ws_backend
echo
--- ws_client
port $TEST_NGINX_RAND_PORT_1
handshake /ws
send text on the other port
recv text on the other port
--- ws_backend_connections: 1



=== TEST 4: nginx_t_fail becomes must_die
--- config
    bogus_directive on;
--- nginx_t_fail
--- error_log
unknown directive "bogus_directive"



=== TEST 5: a block with a wait and no request of its own
--- ws_client
sleep 10ms
--- wait: 0.2
--- error_log
GET /.ws-agent-probe HTTP/1.1
