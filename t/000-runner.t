# Self-test of the harness: standard Test::Nginx sections against stock nginx.

use Test::Nginx::Socket::WsAgent 'no_plan';

# scripts/test.sh names the version each pass means to run
# (WS_AGENT_NGINX_VERSION); by hand it is what the binary says it is
my $binary = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
($ENV{WS_AGENT_NGINX_VERSION}) = `$binary -v 2>&1` =~ m{nginx/(\S+)}
    unless $ENV{WS_AGENT_NGINX_VERSION};

repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: return a body
--- config
    location = /t {
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- no_error_log
[error]



=== TEST 2: response headers, present and absent
--- config
    location = /t {
        add_header X-Test yes;
        return 200 "ok";
    }
--- request
GET /t
--- response_headers
X-Test: yes
Content-Type: text/plain
!X-Missing
--- response_body chomp
ok



=== TEST 3: error_code and an error_log line
--- config
    location = /t {
        return 404;
    }
--- request
GET /t
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
GET /t HTTP/1.1



=== TEST 4: raw_request
--- config
    location = /raw {
        return 200 "raw $request_method\n";
    }
--- raw_request eval
"HEAD /raw HTTP/1.0\r\n\r\n"
--- response_headers
Content-Length: 9
--- response_body:



=== TEST 5: more_headers reach nginx
--- config
    location = /t {
        return 200 "[$http_x_foo] [$http_host]\n";
    }
--- request
GET /t
--- more_headers
X-Foo: bar
Host: example.test
--- response_body
[bar] [example.test]



=== TEST 6: a request body and env expansion in the config
--- config
    location = /t {
        return 200 "port $server_port\n";
    }
--- request
POST /t
some body
--- response_body eval
"port $ENV{TEST_NGINX_SERVER_PORT}\n"



=== TEST 7: error_log with regexes from eval
--- config
    location = /t {
        return 200 "x";
    }
--- request
GET /t
--- error_log eval
[qr/\[debug\] \d+#\d+: \*\d+ http request line: "GET \/t HTTP\/1.1"/, "http finalize request"]
--- no_error_log eval
[qr/\[(error|alert|crit|emerg)\]/]



=== TEST 8: a config error makes nginx fail to start
--- config
    bogus_directive;
--- must_die
--- error_log
unknown directive "bogus_directive"



=== TEST 9: the same error found by nginx -t
--- config
    location = /t { return 200 "never"; }
    bogus_directive on;
--- nginx_t_fail
--- error_log
[emerg]
unknown directive "bogus_directive"



=== TEST 10: user_files are served from html_dir
--- config
    location /static/ {
        root html;
    }
--- user_files
>>> static/a.txt
file a
--- request
GET /static/a.txt
--- response_body
file a



=== TEST 11: SKIP is honoured
--- config
    bogus;
--- request
GET /t
--- SKIP



=== TEST 12: the nginx answering is the version the run names
--- config
    location = /t {
        return 200 "$nginx_version\n";
    }
--- request
GET /t
--- response_body eval
"$ENV{WS_AGENT_NGINX_VERSION}\n"
