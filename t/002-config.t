# Configuration: every directive parses in its contexts, and every wrong
# value, context or combination stops nginx with a message naming the
# directive.  Only standard Test::Nginx sections.

use Test::Nginx::Socket::WsAgent 'no_plan';

repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: every directive parses in http, server and location; values merge down
--- http_config
    ws_agent off;
    ws_agent_ready_type connection_ready;
    ws_agent_type_key type;
    ws_agent_ready_timeout 10s;
    ws_agent_ready_forward on;
    ws_agent_gate_buffer 64k;
    ws_agent_max_frame_size 1m;
    ws_agent_redis 127.0.0.1:1 password=secret db=2;
    ws_agent_redis_queue 10000;
    ws_agent_publish off;
    ws_agent_events agent_started agent_completed;
    ws_agent_event_max_size 64k;
    ws_agent_user $http_x_user_id;
    ws_agent_lifecycle off;
--- config
    ws_agent on;
    ws_agent_ready_type ready;
    ws_agent_type_key kind;
    ws_agent_ready_timeout 500ms;
    ws_agent_ready_forward off;
    ws_agent_gate_buffer 8k;
    ws_agent_max_frame_size 0;
    ws_agent_publish agent:events:$ws_agent_user;
    ws_agent_events agent_started;
    ws_agent_event_max_size 1k;
    ws_agent_user $arg_user;
    ws_agent_lifecycle on;
    location /ws {
        ws_agent_publish off;
        ws_agent_ready_timeout 1s;
        ws_agent_user fixed;
        ws_agent_events tool_executing tool_completed;
    }
    location = /status { ws_agent_status prometheus; }
    location = /status.json { ws_agent_status; }
    location = /ok { return 200 "ok\n"; }
--- request
GET /ok
--- response_body
ok
--- no_error_log
[emerg]



=== TEST 2: a unix socket address for Redis
--- http_config
    ws_agent_redis unix:/tmp/redis.sock db=0;
    ws_agent_publish chan;
--- config
    location = /ok { return 200 "ok\n"; }
--- request
GET /ok
--- response_body
ok
--- no_error_log
[emerg]



=== TEST 3: a host name for Redis is resolved when the configuration is read
--- http_config
    ws_agent_redis localhost:6379;
--- config
    location = /ok { return 200 "ok\n"; }
--- request
GET /ok
--- response_body
ok
--- no_error_log
[emerg]



=== TEST 4: ws_agent takes on or off
--- http_config

--- config
    ws_agent maybe;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid value "maybe" in "ws_agent" directive, it must be "on" or "off"



=== TEST 5: ws_agent_ready_type empty
--- http_config

--- config
    ws_agent_ready_type "";
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_ready_type" directive takes a non-empty string



=== TEST 6: ws_agent_type_key empty
--- http_config

--- config
    ws_agent_type_key "";
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_type_key" directive takes a non-empty string



=== TEST 7: ws_agent_ready_timeout is a time
--- http_config

--- config
    ws_agent_ready_timeout soon;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_ready_timeout" directive invalid value



=== TEST 8: ws_agent_ready_timeout must be positive
--- http_config

--- config
    ws_agent_ready_timeout 0;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_ready_timeout" directive must be greater than zero



=== TEST 9: ws_agent_ready_forward takes on or off
--- http_config

--- config
    ws_agent_ready_forward yes;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
it must be "on" or "off"



=== TEST 10: ws_agent_gate_buffer is a size
--- http_config

--- config
    ws_agent_gate_buffer lots;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_gate_buffer" directive invalid value



=== TEST 11: ws_agent_gate_buffer must be positive
--- http_config

--- config
    ws_agent_gate_buffer 0;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_gate_buffer" directive must be greater than zero



=== TEST 12: ws_agent_max_frame_size is a size
--- http_config

--- config
    ws_agent_max_frame_size -1;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_max_frame_size" directive invalid value



=== TEST 13: ws_agent_redis only in http
--- http_config

--- config
    ws_agent_redis 127.0.0.1:6379;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" directive is not allowed here



=== TEST 14: ws_agent_redis twice
--- http_config
    ws_agent_redis 127.0.0.1:6379;
    ws_agent_redis 127.0.0.1:6380;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" directive is duplicate



=== TEST 15: ws_agent_redis unknown parameter
--- http_config
    ws_agent_redis 127.0.0.1:6379 pass=x;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an unknown parameter "pass=x" (expected tls, user=, password= or db=)



=== TEST 16: ws_agent_redis empty password
--- http_config
    ws_agent_redis 127.0.0.1:6379 password=;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an empty password=



=== TEST 17: ws_agent_redis bad db
--- http_config
    ws_agent_redis 127.0.0.1:6379 db=two;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an invalid "db=two": db= takes a database number



=== TEST 18: ws_agent_redis bad port
--- http_config
    ws_agent_redis 127.0.0.1:99999;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an invalid address "127.0.0.1:99999": invalid port



=== TEST 19: ws_agent_redis empty unix path
--- http_config
    ws_agent_redis unix:;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an empty unix socket path



=== TEST 20: ws_agent_redis name that does not resolve
--- http_config
    ws_agent_redis no-such-host.invalid:6379;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an invalid address "no-such-host.invalid:6379": host not found



=== TEST 21: ws_agent_redis_queue is a number
--- http_config
    ws_agent_redis_queue many;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_queue" directive invalid number



=== TEST 22: ws_agent_redis_queue must be at least 1
--- http_config
    ws_agent_redis_queue 0;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_queue" must be at least 1



=== TEST 23: ws_agent_redis_queue only in http
--- http_config

--- config
    ws_agent_redis_queue 5;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_queue" directive is not allowed here



=== TEST 24: ws_agent_publish without ws_agent_redis
--- http_config

--- config
    ws_agent_publish agent:events:$ws_agent_user;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_publish" is set but no "ws_agent_redis" is configured in the http block



=== TEST 25: ws_agent_publish empty
--- http_config
    ws_agent_redis 127.0.0.1:6379;
--- config
    ws_agent_publish "";
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_publish" directive takes a channel name, not an empty string



=== TEST 26: ws_agent_publish twice
--- http_config
    ws_agent_redis 127.0.0.1:6379;
--- config
    ws_agent_publish a;
    ws_agent_publish b;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_publish" directive is duplicate



=== TEST 27: ws_agent_publish with an unknown variable
--- http_config
    ws_agent_redis 127.0.0.1:6379;
--- config
    ws_agent_publish chan:$no_such_var;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
unknown "no_such_var" variable



=== TEST 28: ws_agent_events needs a type
--- http_config

--- config
    ws_agent_events;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid number of arguments in "ws_agent_events" directive



=== TEST 29: ws_agent_events lists a type twice
--- http_config

--- config
    ws_agent_events a b a;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_events" lists "a" twice



=== TEST 30: ws_agent_events empty type
--- http_config

--- config
    ws_agent_events "";
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_events" directive takes event types, not an empty string



=== TEST 31: ws_agent_event_max_size is a size
--- http_config

--- config
    ws_agent_event_max_size big;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_event_max_size" directive invalid value



=== TEST 32: ws_agent_event_max_size must be positive
--- http_config

--- config
    ws_agent_event_max_size 0;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_event_max_size" directive must be greater than zero



=== TEST 33: ws_agent_user takes one value
--- http_config

--- config
    ws_agent_user a b;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid number of arguments in "ws_agent_user" directive



=== TEST 34: ws_agent_user with an unknown variable
--- http_config

--- config
    ws_agent_user $no_such_user_var;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
unknown "no_such_user_var" variable



=== TEST 35: ws_agent_lifecycle takes on or off
--- http_config

--- config
    ws_agent_lifecycle 1;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid value "1" in "ws_agent_lifecycle" directive



=== TEST 36: ws_agent_status only in a location
--- http_config

--- config
    ws_agent_status;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_status" directive is not allowed here



=== TEST 37: ws_agent_status unknown format
--- http_config

--- config
    location = /s { ws_agent_status xml; }
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_status" has an unknown format "xml" (expected json or prometheus)



=== TEST 38: ws_agent_status twice
--- http_config

--- config
    location = /s { ws_agent_status; ws_agent_status json; }
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_status" directive is duplicate




=== TEST 39: ws_agent_jwt takes on or off
--- config
    ws_agent_jwt yes;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid value "yes" in "ws_agent_jwt" directive, it must be "on" or "off"


=== TEST 40: ws_agent_jwt_key takes a type and a file
--- config
    ws_agent_jwt_key /etc/secret;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid number of arguments in "ws_agent_jwt_key" directive


=== TEST 41: ws_agent_jwt_leeway is a time
--- config
    ws_agent_jwt_leeway soon;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_jwt_leeway" directive invalid value


=== TEST 42: ws_agent_jwt_claim takes a name and a value
--- config
    ws_agent_jwt_claim aud;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid number of arguments in "ws_agent_jwt_claim" directive


=== TEST 43: ws_agent_jwt_claim name empty
--- config
    ws_agent_jwt_claim "" x;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_jwt_claim" directive takes a claim name, not an empty string


=== TEST 44: ws_agent_jwt_token with an unknown variable
--- config
    ws_agent_jwt_token $no_such_token_var;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
unknown "no_such_token_var" variable


=== TEST 45: ws_agent_jwt_protocol_prefix takes one value
--- config
    ws_agent_jwt_protocol_prefix a b;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
invalid number of arguments in "ws_agent_jwt_protocol_prefix" directive



=== TEST 46: ws_agent_redis user= needs password=
--- http_config
    ws_agent_redis 127.0.0.1:6379 user=publisher;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has user= without password=



=== TEST 47: ws_agent_redis sentinel: needs a master name
--- http_config
    ws_agent_redis sentinel:;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" has an empty master name in sentinel:



=== TEST 48: ws_agent_redis_sentinels twice
--- http_config
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels 127.0.0.1:26379;
    ws_agent_redis_sentinels 127.0.0.1:26380;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_sentinels" directive is duplicate



=== TEST 49: ws_agent_redis_sentinels needs an address
--- http_config
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels password=secret;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_sentinels" has no address



=== TEST 50: ws_agent_redis_sentinels user= needs password=
--- http_config
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels 127.0.0.1:26379 user=s;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_sentinels" has user= without password=



=== TEST 51: ws_agent_redis_sentinels with a unix socket
--- http_config
    ws_agent_redis sentinel:mymaster;
    ws_agent_redis_sentinels unix:/tmp/s.sock;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_sentinels" has an invalid address "unix:/tmp/s.sock": expected host:port



=== TEST 52: ws_agent_redis_cluster twice
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:7000;
    ws_agent_redis_cluster 127.0.0.1:7001;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_cluster" directive is duplicate



=== TEST 53: ws_agent_redis_cluster with an address that does not parse
--- http_config
    ws_agent_redis cluster;
    ws_agent_redis_cluster 127.0.0.1:99999;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_cluster" has an invalid address "127.0.0.1:99999": invalid port



=== TEST 54: ws_agent_redis_cluster only in http
--- http_config

--- config
    ws_agent_redis_cluster 127.0.0.1:7000;
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis_cluster" directive is not allowed here



=== TEST 55: ws_agent_redis cluster with tls needs ws_agent_redis_tls_name when verifying
--- http_config
    ws_agent_redis cluster tls;
    ws_agent_redis_tls_trusted_certificate /nonexistent/ca.pem;
    ws_agent_redis_cluster 127.0.0.1:7000;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" is cluster with tls: set "ws_agent_redis_tls_name" to the name the nodes' certificates carry



=== TEST 56: ws_agent_redis sentinel: with tls needs ws_agent_redis_tls_name when verifying
--- http_config
    ws_agent_redis sentinel:mymaster tls;
    ws_agent_redis_tls_trusted_certificate /nonexistent/ca.pem;
    ws_agent_redis_sentinels 127.0.0.1:26379;
--- config
    location = /ok { return 200 "ok\n"; }
--- must_die
--- error_log
"ws_agent_redis" names a sentinel master with tls: set "ws_agent_redis_tls_name" to the name the servers' certificates carry
