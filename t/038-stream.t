use Test::Nginx::Socket::WsAgent 'no_plan';
use WsAgent::Conf qw(ws_location);
repeat_each(1);
no_shuffle();
use_redis();
add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value("http_config",
                      "    ws_agent_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT;\n")
        unless defined $block->http_config;
});
run_tests();
__DATA__

=== TEST 1: smoke
--- config eval
WsAgent::Conf::ws_location('ws_agent on;', 'ws_agent_user $http_x_user_id;',
  'ws_agent_publish agent:events:$ws_agent_user;', 'ws_agent_stream agent:stream:$ws_agent_user maxlen=100;')
--- ws_backend
send text {"type":"connection_ready"}
send text {"type":"agent_started"}
send text {"type":"agent_thinking"}
record
--- ws_client
handshake /ws X-User-Id: 1
recv text {"type":"connection_ready"}
recv text {"type":"agent_started"}
recv text {"type":"agent_thinking"}
sleep 300ms
redis_cmd XLEN agent:stream:1 => 2
redis_cmd XRANGE agent:stream:1 - +
send close 1000
recv close 1000
--- redis_subscribe: agent:events:1
--- redis_messages_like
agent:events:1 ^\{"id":"\d+-\d+","connection_id":.*"seq":1,.*"type":"agent_started"
agent:events:1 ^\{"id":"\d+-\d+","connection_id":.*"seq":2,.*"type":"agent_thinking"
--- no_error_log
[error]
