/*
 * ngx_ws_agent: a readiness gate and an agent-event publisher for WebSocket
 * connections proxied by nginx's own proxy_pass.
 *
 * This file wires the module: directives, configuration create/merge,
 * variables, the header filter that hands a 101 to the gate, and the
 * access-phase handler that keeps permessage-deflate off gated locations.
 * Frames are parsed in src/ngx_ws_agent_frame.c, the relay is joined in
 * src/ngx_ws_agent_gate.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "ngx_ws_agent.h"
#include "ngx_ws_agent_gate.h"
#include "ngx_ws_agent_headers.h"
#include "ngx_ws_agent_jwt.h"
#include "ngx_ws_agent_redis.h"
#include "ngx_ws_agent_redis_node.h"
#include "ngx_ws_agent_stats.h"
#include "ngx_ws_agent_status.h"
#include "ngx_ws_agent_feed.h"
#include "ngx_ws_agent_subscribe.h"


static ngx_int_t ngx_ws_agent_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_ws_agent_init_process(ngx_cycle_t *cycle);
static void ngx_ws_agent_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_ws_agent_init(ngx_conf_t *cf);
static void *ngx_ws_agent_create_main_conf(ngx_conf_t *cf);
static char *ngx_ws_agent_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_ws_agent_create_loc_conf(ngx_conf_t *cf);
static char *ngx_ws_agent_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static char *ngx_ws_agent_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_redis_list(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_publish(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_subscribe(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_channel_value(ngx_conf_t *cf, ngx_str_t *value,
    ngx_ws_agent_channel_t **channel);
static char *ngx_ws_agent_hash_tag(ngx_conf_t *cf, const char *sname,
    ngx_str_t *stream, const char *cname, ngx_str_t *channel);
static char *ngx_ws_agent_events(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_ws_agent_check_not_empty(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_ws_agent_check_positive_size(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_ws_agent_check_positive_msec(ngx_conf_t *cf, void *post,
    void *data);

static ngx_int_t ngx_ws_agent_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_ws_agent_access_handler(ngx_http_request_t *r);
static ngx_ws_agent_ctx_t *ngx_ws_agent_create_ctx(ngx_http_request_t *r);
static void ngx_ws_agent_free_ctx(void *data);

static ngx_int_t ngx_ws_agent_variable_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_ws_agent_variable_num(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_conf_post_handler_pt  ngx_ws_agent_not_empty_p =
    ngx_ws_agent_check_not_empty;
static ngx_conf_post_handler_pt  ngx_ws_agent_positive_size_p =
    ngx_ws_agent_check_positive_size;
static ngx_conf_post_handler_pt  ngx_ws_agent_positive_msec_p =
    ngx_ws_agent_check_positive_msec;


/* constant: the default of ws_agent_events, which the merged list points to */
static const ngx_str_t  ngx_ws_agent_default_events[] = {
    ngx_string("agent_started"),
    ngx_string("agent_thinking"),
    ngx_string("tool_executing"),
    ngx_string("tool_completed"),
    ngx_string("agent_completed")
};


#if (NGX_SSL)
static ngx_conf_bitmask_t  ngx_ws_agent_tls_protocols[] = {
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};
#endif


static ngx_command_t  ngx_ws_agent_commands[] = {

    { ngx_string("ws_agent"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, enable),
      NULL },

    { ngx_string("ws_agent_ready_type"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, ready_type),
      &ngx_ws_agent_not_empty_p },

    { ngx_string("ws_agent_type_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, type_key),
      &ngx_ws_agent_not_empty_p },

    { ngx_string("ws_agent_ready_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, ready_timeout),
      &ngx_ws_agent_positive_msec_p },

    { ngx_string("ws_agent_ready_forward"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, ready_forward),
      NULL },

    { ngx_string("ws_agent_gate_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, gate_buffer),
      &ngx_ws_agent_positive_size_p },

    { ngx_string("ws_agent_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, max_frame_size),
      NULL },

    { ngx_string("ws_agent_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ws_agent_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_redis_sentinels"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ws_agent_redis_list,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, sentinels),
      NULL },

    { ngx_string("ws_agent_redis_cluster"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_ws_agent_redis_list,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, seeds),
      NULL },

    { ngx_string("ws_agent_redis_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, queue),
      NULL },

    { ngx_string("ws_agent_redis_tls_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_verify),
      NULL },

    { ngx_string("ws_agent_redis_tls_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_trusted_certificate),
      NULL },

    { ngx_string("ws_agent_redis_tls_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_name),
      NULL },

    { ngx_string("ws_agent_redis_tls_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_certificate),
      NULL },

    { ngx_string("ws_agent_redis_tls_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_certificate_key),
      NULL },

    { ngx_string("ws_agent_redis_tls_ciphers"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_ciphers),
      NULL },

#if (NGX_SSL)
    { ngx_string("ws_agent_redis_tls_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_ws_agent_main_conf_t, redis.tls_protocols),
      &ngx_ws_agent_tls_protocols },
#endif

    { ngx_string("ws_agent_publish"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_ws_agent_publish,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_stream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_ws_agent_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_events"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_ws_agent_events,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_event_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, event_max_size),
      &ngx_ws_agent_positive_size_p },

    { ngx_string("ws_agent_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, user),
      NULL },

    { ngx_string("ws_agent_lifecycle"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, lifecycle),
      NULL },

    { ngx_string("ws_agent_jwt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, jwt),
      NULL },

    { ngx_string("ws_agent_jwt_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_ws_agent_jwt_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_jwt_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, jwt_token),
      NULL },

    { ngx_string("ws_agent_jwt_protocol_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, jwt_protocol_prefix),
      NULL },

    { ngx_string("ws_agent_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, jwt_leeway),
      NULL },

    { ngx_string("ws_agent_jwt_claim"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_ws_agent_jwt_claim,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_subscribe"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_ws_agent_subscribe,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_agent_subscribe_stream"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, subscribe_stream),
      NULL },

    { ngx_string("ws_agent_subscribe_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, subscribe_heartbeat),
      &ngx_ws_agent_positive_msec_p },

    { ngx_string("ws_agent_subscribe_retry"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, subscribe_retry),
      &ngx_ws_agent_positive_msec_p },

    { ngx_string("ws_agent_subscribe_buffer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_ws_agent_loc_conf_t, subscribe_buffer),
      &ngx_ws_agent_positive_size_p },

    { ngx_string("ws_agent_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_ws_agent_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_ws_agent_module_ctx = {
    ngx_ws_agent_add_variables,            /* preconfiguration */
    ngx_ws_agent_init,                     /* postconfiguration */

    ngx_ws_agent_create_main_conf,         /* create main configuration */
    ngx_ws_agent_init_main_conf,           /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_ws_agent_create_loc_conf,          /* create location configuration */
    ngx_ws_agent_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_ws_agent_module = {
    NGX_MODULE_V1,
    &ngx_ws_agent_module_ctx,              /* module context */
    ngx_ws_agent_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_ws_agent_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_ws_agent_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


enum {
    NGX_WS_AGENT_VAR_USER = 0,
    NGX_WS_AGENT_VAR_ID,
    NGX_WS_AGENT_VAR_READY_MS,
    NGX_WS_AGENT_VAR_FRAMES_HELD,
    NGX_WS_AGENT_VAR_EVENTS_PUBLISHED,
    NGX_WS_AGENT_VAR_CLOSE_CODE
};


static ngx_http_variable_t  ngx_ws_agent_vars[] = {

    { ngx_string("ws_agent_user"), NULL, ngx_ws_agent_variable_str,
      NGX_WS_AGENT_VAR_USER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_agent_connection_id"), NULL, ngx_ws_agent_variable_str,
      NGX_WS_AGENT_VAR_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_agent_ready_ms"), NULL, ngx_ws_agent_variable_num,
      NGX_WS_AGENT_VAR_READY_MS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_agent_frames_held"), NULL, ngx_ws_agent_variable_num,
      NGX_WS_AGENT_VAR_FRAMES_HELD, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_agent_events_published"), NULL,
      ngx_ws_agent_variable_num,
      NGX_WS_AGENT_VAR_EVENTS_PUBLISHED, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_agent_close_code"), NULL, ngx_ws_agent_variable_num,
      NGX_WS_AGENT_VAR_CLOSE_CODE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_agent_jwt_sub"), NULL, ngx_ws_agent_jwt_variable,
      0, 0, 0 },

    { ngx_string("ws_agent_jwt_claim_"), NULL, ngx_ws_agent_jwt_variable,
      0, NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


/* configuration */

static void *
ngx_ws_agent_create_main_conf(ngx_conf_t *cf)
{
    ngx_ws_agent_main_conf_t  *wmcf;

    wmcf = ngx_pcalloc(cf->pool, sizeof(ngx_ws_agent_main_conf_t));
    if (wmcf == NULL) {
        return NULL;
    }

    wmcf->redis.db = NGX_CONF_UNSET;
    wmcf->redis.tls_verify = NGX_CONF_UNSET;
    wmcf->queue = NGX_CONF_UNSET_UINT;

    return wmcf;
}


static char *
ngx_ws_agent_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_ws_agent_main_conf_t  *wmcf = conf;

    ngx_conf_init_value(wmcf->redis.db, 0);
    ngx_conf_init_uint_value(wmcf->queue, 10000);

    if (wmcf->queue == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis_queue\" must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (wmcf->redis.master.len && !wmcf->sentinels_configured) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" names a sentinel master but "
                           "no \"ws_agent_redis_sentinels\" is set");
        return NGX_CONF_ERROR;
    }

    if (wmcf->sentinels_configured && wmcf->redis.master.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis_sentinels\" is set but "
                           "\"ws_agent_redis\" does not name a sentinel "
                           "master (sentinel:NAME)");
        return NGX_CONF_ERROR;
    }

    if (wmcf->redis.cluster && !wmcf->seeds_configured) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" is cluster but no "
                           "\"ws_agent_redis_cluster\" is set");
        return NGX_CONF_ERROR;
    }

    if (wmcf->seeds_configured && !wmcf->redis.cluster) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis_cluster\" is set but "
                           "\"ws_agent_redis\" is not cluster");
        return NGX_CONF_ERROR;
    }

    if (wmcf->configured
        && ngx_ws_agent_redis_server_init(cf, &wmcf->redis,
                                          wmcf->redis.cluster
                                          ? &wmcf->seeds : &wmcf->sentinels)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_ws_agent_create_loc_conf(ngx_conf_t *cf)
{
    ngx_ws_agent_loc_conf_t  *wlcf;

    wlcf = ngx_pcalloc(cf->pool, sizeof(ngx_ws_agent_loc_conf_t));
    if (wlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     wlcf->ready_type = { 0, NULL };
     *     wlcf->type_key = { 0, NULL };
     *     wlcf->status = 0;
     */

    wlcf->enable = NGX_CONF_UNSET;
    wlcf->ready_timeout = NGX_CONF_UNSET_MSEC;
    wlcf->ready_forward = NGX_CONF_UNSET;
    wlcf->gate_buffer = NGX_CONF_UNSET_SIZE;
    wlcf->max_frame_size = NGX_CONF_UNSET_SIZE;
    wlcf->publish = NGX_CONF_UNSET_PTR;
    wlcf->stream = NGX_CONF_UNSET_PTR;
    wlcf->subscribe_stream = NGX_CONF_UNSET_PTR;
    wlcf->subscribe_heartbeat = NGX_CONF_UNSET_MSEC;
    wlcf->subscribe_retry = NGX_CONF_UNSET_MSEC;
    wlcf->subscribe_buffer = NGX_CONF_UNSET_SIZE;
    wlcf->events = NGX_CONF_UNSET_PTR;
    wlcf->event_max_size = NGX_CONF_UNSET_SIZE;
    wlcf->user = NGX_CONF_UNSET_PTR;
    wlcf->lifecycle = NGX_CONF_UNSET;
    wlcf->jwt = NGX_CONF_UNSET;
    wlcf->jwt_keys = NGX_CONF_UNSET_PTR;
    wlcf->jwt_claims = NGX_CONF_UNSET_PTR;
    wlcf->jwt_token = NGX_CONF_UNSET_PTR;
    wlcf->jwt_leeway = NGX_CONF_UNSET;

    return wlcf;
}


static char *
ngx_ws_agent_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_ws_agent_loc_conf_t *prev = parent;
    ngx_ws_agent_loc_conf_t *conf = child;

    ngx_uint_t                 i;
    ngx_str_t                 *ev;
    ngx_ws_agent_main_conf_t  *wmcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_str_value(conf->ready_type, prev->ready_type,
                             "connection_ready");
    ngx_conf_merge_str_value(conf->type_key, prev->type_key, "type");
    ngx_conf_merge_msec_value(conf->ready_timeout, prev->ready_timeout,
                              10000);
    ngx_conf_merge_value(conf->ready_forward, prev->ready_forward, 1);
    ngx_conf_merge_size_value(conf->gate_buffer, prev->gate_buffer,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->max_frame_size, prev->max_frame_size,
                              1024 * 1024);
    ngx_conf_merge_ptr_value(conf->publish, prev->publish, NULL);
    ngx_conf_merge_ptr_value(conf->stream, prev->stream, NULL);
    ngx_conf_merge_ptr_value(conf->subscribe_stream, prev->subscribe_stream,
                             NULL);
    ngx_conf_merge_msec_value(conf->subscribe_heartbeat,
                              prev->subscribe_heartbeat, 15000);
    ngx_conf_merge_msec_value(conf->subscribe_retry, prev->subscribe_retry,
                              3000);
    ngx_conf_merge_size_value(conf->subscribe_buffer, prev->subscribe_buffer,
                              256 * 1024);
    ngx_conf_merge_size_value(conf->event_max_size, prev->event_max_size,
                              64 * 1024);
    ngx_conf_merge_ptr_value(conf->user, prev->user, NULL);
    ngx_conf_merge_value(conf->lifecycle, prev->lifecycle, 0);

    ngx_conf_merge_value(conf->jwt, prev->jwt, 0);
    ngx_conf_merge_ptr_value(conf->jwt_keys, prev->jwt_keys, NULL);
    ngx_conf_merge_ptr_value(conf->jwt_claims, prev->jwt_claims, NULL);
    ngx_conf_merge_ptr_value(conf->jwt_token, prev->jwt_token, NULL);
    ngx_conf_merge_str_value(conf->jwt_protocol_prefix,
                             prev->jwt_protocol_prefix, "bearer.");
    ngx_conf_merge_sec_value(conf->jwt_leeway, prev->jwt_leeway, 30);

    if (conf->jwt && conf->jwt_keys == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt\" is on but no "
                           "\"ws_agent_jwt_key\" is set");
        return NGX_CONF_ERROR;
    }

    if (conf->events == NGX_CONF_UNSET_PTR) {

        if (prev->events == NGX_CONF_UNSET_PTR) {
            prev->events = ngx_array_create(cf->pool, 5, sizeof(ngx_str_t));
            if (prev->events == NULL) {
                return NGX_CONF_ERROR;
            }

            for (i = 0; i < 5; i++) {
                ev = ngx_array_push(prev->events);
                if (ev == NULL) {
                    return NGX_CONF_ERROR;
                }

                *ev = ngx_ws_agent_default_events[i];
            }
        }

        conf->events = prev->events;
    }

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_ws_agent_module);

    if (conf->publish) {
        if (!wmcf->configured) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_publish\" is set but no "
                               "\"ws_agent_redis\" is configured in the "
                               "http block");
            return NGX_CONF_ERROR;
        }
    }

    /*
     * A stream set in a location needs that location's events; one set
     * above (http, server) is the default of the locations that publish,
     * and a location that does not (/status, a plain proxy) ignores it.
     */

    if (conf->stream && conf->stream->in_location && conf->publish == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_stream\" is set but "
                           "\"ws_agent_publish\" is off: the stream takes "
                           "the events published on a channel");
        return NGX_CONF_ERROR;
    }

    if (conf->stream && conf->publish) {
        wmcf->streams = 1;
    }

    if (conf->subscribe) {
        if (!wmcf->configured) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_subscribe\" is set but no "
                               "\"ws_agent_redis\" is configured in the "
                               "http block");
            return NGX_CONF_ERROR;
        }

        if (conf->subscribe_buffer < 8192) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_subscribe_buffer\" must be at "
                               "least 8k (it holds the largest event twice)");
            return NGX_CONF_ERROR;
        }

        wmcf->subscribers = 1;
    }

    if (conf->stream && conf->publish && wmcf->redis.cluster
        && ngx_ws_agent_hash_tag(cf, "ws_agent_stream",
                                 &conf->stream->value.value,
                                 "ws_agent_publish",
                                 &conf->publish->value.value)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->subscribe && conf->subscribe_stream && wmcf->redis.cluster
        && ngx_ws_agent_hash_tag(cf, "ws_agent_subscribe_stream",
                                 &conf->subscribe_stream->value,
                                 "ws_agent_subscribe",
                                 &conf->subscribe->value.value)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* ws_agent_redis ADDR [tls] [user=U] [password=P] [db=N] */

static char *
ngx_ws_agent_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_main_conf_t *wmcf = conf;

    ngx_str_t                    *value;
    ngx_url_t                     u;
    ngx_uint_t                    i;
    ngx_ws_agent_redis_server_t  *rd = &wmcf->redis;

    if (wmcf->configured) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rd->addr = value[1];

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "tls") == 0) {
            rd->tls = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            rd->user.data = value[i].data + 5;
            rd->user.len = value[i].len - 5;

            if (rd->user.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ws_agent_redis\" has an empty user=");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rd->password.data = value[i].data + 9;
            rd->password.len = value[i].len - 9;

            if (rd->password.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ws_agent_redis\" has an empty "
                                   "password=");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            rd->db = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (rd->db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ws_agent_redis\" has an invalid "
                                   "\"%V\": db= takes a database number",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has an unknown parameter "
                           "\"%V\" (expected tls, user=, password= or db=)",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rd->user.len && rd->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has user= without "
                           "password=");
        return NGX_CONF_ERROR;
    }

    wmcf->configured = 1;

    if (ngx_strcmp(value[1].data, "cluster") == 0) {
        /* the masters are those ws_agent_redis_cluster's seeds name */
        rd->cluster = 1;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "sentinel:", 9) == 0) {
        rd->master.data = value[1].data + 9;
        rd->master.len = value[1].len - 9;

        if (rd->master.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_redis\" has an empty master "
                               "name in sentinel:");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "unix:", 5) != 0) {
        /* host:port: ngx_ws_agent_redis_server_init() resolves it or not */
        return NGX_CONF_OK;
    }

    if (value[1].len == 5) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has an empty unix "
                           "socket path");
        return NGX_CONF_ERROR;
    }

    if (rd->tls) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has tls with a unix socket");
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_redis\" has an invalid address "
                           "\"%V\": %s", &value[1],
                           u.err ? u.err : "cannot parse");
        return NGX_CONF_ERROR;
    }

    rd->addrs = u.addrs;
    rd->naddrs = u.naddrs;
    rd->unix_socket = 1;

    return NGX_CONF_OK;
}


/*
 * ws_agent_redis_sentinels ADDR [ADDR ...] [tls] [user=U] [password=P]
 * ws_agent_redis_cluster ADDR [ADDR ...]
 */

static char *
ngx_ws_agent_redis_list(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_main_conf_t *wmcf = conf;

    ngx_str_t                    *value;
    ngx_url_t                     u;
    ngx_uint_t                    i, j, sentinels;
    ngx_addr_t                   *addr;
    ngx_array_t                  *addrs;
    ngx_ws_agent_redis_server_t  *sn;

    sentinels = (cmd->offset == offsetof(ngx_ws_agent_main_conf_t,
                                         sentinels));
    sn = sentinels ? &wmcf->sentinels : &wmcf->seeds;

    if (sentinels ? wmcf->sentinels_configured : wmcf->seeds_configured) {
        return "is duplicate";
    }

    value = cf->args->elts;

    addrs = ngx_array_create(cf->pool, cf->args->nelts, sizeof(ngx_addr_t));
    if (addrs == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (sentinels && ngx_strcmp(value[i].data, "tls") == 0) {
            sn->tls = 1;
            continue;
        }

        if (sentinels && ngx_strncmp(value[i].data, "user=", 5) == 0) {
            sn->user.data = value[i].data + 5;
            sn->user.len = value[i].len - 5;
            continue;
        }

        if (sentinels && ngx_strncmp(value[i].data, "password=", 9) == 0) {
            sn->password.data = value[i].data + 9;
            sn->password.len = value[i].len - 9;
            continue;
        }

        /* an address: resolved here, once */
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url = value[i];
        u.default_port = sentinels ? 26379 : 6379;

        if (ngx_strncmp(value[i].data, "unix:", 5) == 0
            || ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" has an invalid address \"%V\": %s",
                               &cmd->name, &value[i],
                               u.err ? u.err : "expected host:port");
            return NGX_CONF_ERROR;
        }

        for (j = 0; j < u.naddrs; j++) {
            addr = ngx_array_push(addrs);
            if (addr == NULL) {
                return NGX_CONF_ERROR;
            }

            *addr = u.addrs[j];
        }
    }

    if (addrs->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" has no address", &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (sn->user.len && sn->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" has user= without password=",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (sentinels) {
        ngx_str_set(&sn->addr, "sentinel");
        wmcf->sentinels_configured = 1;

    } else {
        ngx_str_set(&sn->addr, "cluster seed");
        wmcf->seeds_configured = 1;
    }

    sn->addrs = addrs->elts;
    sn->naddrs = addrs->nelts;
    sn->db = 0;
    sn->tls_verify = NGX_CONF_UNSET;

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_publish(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    ngx_str_t  *value;

    if (wlcf->publish != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        wlcf->publish = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes a channel name, not an empty string";
    }

    return ngx_ws_agent_channel_value(cf, &value[1], &wlcf->publish);
}


static char *
ngx_ws_agent_subscribe(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (wlcf->subscribe) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a channel name, not an empty string";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_ws_agent_subscribe_handler;

    return ngx_ws_agent_channel_value(cf, &value[1], &wlcf->subscribe);
}


/* a channel name with variables, for ws_agent_publish and _subscribe */

static char *
ngx_ws_agent_channel_value(ngx_conf_t *cf, ngx_str_t *value,
    ngx_ws_agent_channel_t **channel)
{
    ngx_ws_agent_channel_t            *ch;
    ngx_http_compile_complex_value_t   ccv;

    ch = ngx_palloc(cf->pool, sizeof(ngx_ws_agent_channel_t));
    if (ch == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = &ch->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* a channel that names its user must not be used without one */
    ch->names_user = ngx_strlcasestrn(value->data, value->data + value->len,
                                      (u_char *) "ws_agent_user",
                                      sizeof("ws_agent_user") - 2)
                     != NULL;

    *channel = ch;

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    ngx_str_t                         *value, v;
    ngx_int_t                          n;
    ngx_uint_t                         i;
    ngx_ws_agent_stream_t             *st;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->stream != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no parameters after \"off\"";
        }

        wlcf->stream = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes a stream name, not an empty string";
    }

    st = ngx_pcalloc(cf->pool, sizeof(ngx_ws_agent_stream_t));
    if (st == NULL) {
        return NGX_CONF_ERROR;
    }

    st->in_location = (cf->cmd_type & NGX_HTTP_LOC_CONF) ? 1 : 0;

    st->maxlen = NGX_CONF_UNSET_UINT;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "maxlen=", 7) == 0) {
            n = ngx_atoi(value[i].data + 7, value[i].len - 7);
            if (n == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ws_agent_stream\" has an invalid "
                                   "\"%V\" (a number of entries)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            st->maxlen = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "age=", 4) == 0) {
            v.data = value[i].data + 4;
            v.len = value[i].len - 4;

            n = ngx_parse_time(&v, 0);
            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ws_agent_stream\" has an invalid "
                                   "\"%V\" (a time, such as age=1h)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            st->age = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_stream\" has an unknown parameter "
                           "\"%V\" (expected maxlen= or age=)", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (st->maxlen == NGX_CONF_UNSET_UINT) {
        st->maxlen = st->age ? 0 : 1000;
    }

    if (st->maxlen == 0 && st->age == 0) {
        return "needs a bound: maxlen=N (more than 0) or age=TIME";
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &st->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    st->names_user = ngx_strlcasestrn(value[1].data,
                                      value[1].data + value[1].len,
                                      (u_char *) "ws_agent_user",
                                      sizeof("ws_agent_user") - 2)
                     != NULL;

    wlcf->stream = st;

    return NGX_CONF_OK;
}


/*
 * In a cluster the append, its de-duplication key and the PUBLISH are one
 * script on one node, and a subscriber's channel is the one that script
 * SPUBLISHes on: a stream's name and its channel's must carry the same
 * {hash tag}, so they are on one slot whatever the variables say.
 */

static char *
ngx_ws_agent_hash_tag(ngx_conf_t *cf, const char *sname, ngx_str_t *stream,
    const char *cname, ngx_str_t *channel)
{
    u_char     *s, *c, *se, *ce;
    ngx_str_t   tag;

    s = ngx_strlchr(stream->data, stream->data + stream->len, '{');
    se = s ? ngx_strlchr(s, stream->data + stream->len, '}') : NULL;

    if (se == NULL || se == s + 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" \"%V\" has no {hash tag}: "
                           "in a Redis Cluster the stream and the channel "
                           "must share one, e.g. \"agent:stream:{$ws_agent_user}\" "
                           "and \"agent:events:{$ws_agent_user}\" (quoted)",
                           sname, stream);
        return NGX_CONF_ERROR;
    }

    c = ngx_strlchr(channel->data, channel->data + channel->len, '{');
    ce = c ? ngx_strlchr(c, channel->data + channel->len, '}') : NULL;

    if (ce == NULL || ce - c != se - s || ngx_strncmp(c, s, se - s) != 0) {
        tag.data = s;
        tag.len = se - s + 1;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" \"%V\" does not carry "
                           "the stream's hash tag \"%V\": in a Redis "
                           "Cluster both must be on one slot", cname,
                           channel, &tag);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_events(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    ngx_str_t   *value, *ev;
    ngx_uint_t   i, j;

    if (wlcf->events != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    wlcf->events = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(ngx_str_t));
    if (wlcf->events == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 0) {
            return "takes event types, not an empty string";
        }

        for (j = 1; j < i; j++) {
            if (value[j].len == value[i].len
                && ngx_strncmp(value[j].data, value[i].data, value[i].len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ws_agent_events\" lists \"%V\" twice",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        ev = ngx_array_push(wlcf->events);
        if (ev == NULL) {
            return NGX_CONF_ERROR;
        }

        *ev = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (wlcf->status) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 1 || ngx_strcmp(value[1].data, "json") == 0) {
        wlcf->status = NGX_WS_AGENT_STATUS_JSON;

    } else if (ngx_strcmp(value[1].data, "prometheus") == 0) {
        wlcf->status = NGX_WS_AGENT_STATUS_PROMETHEUS;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_status\" has an unknown format "
                           "\"%V\" (expected json or prometheus)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_ws_agent_status_handler;

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_check_not_empty(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *s = data;

    if (s->len == 0) {
        return "takes a non-empty string";
    }

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_check_positive_size(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp == 0) {
        return "must be greater than zero";
    }

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_check_positive_msec(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *mp = data;

    if (*mp == 0) {
        return "must be greater than zero";
    }

    return NGX_CONF_OK;
}


/* wiring */

static ngx_int_t
ngx_ws_agent_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_ws_agent_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ws_agent_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_ws_agent_access_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_ws_agent_header_filter;

    return ngx_ws_agent_stats_init_conf(cf);
}


static ngx_int_t
ngx_ws_agent_init_process(ngx_cycle_t *cycle)
{
    ngx_ws_agent_main_conf_t  *wmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    wmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_ws_agent_module);

    if (ngx_ws_agent_stats_init_process() != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_ws_agent_redis_init_process(cycle, wmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_ws_agent_feed_init_process(cycle, wmcf);
}


static void
ngx_ws_agent_exit_process(ngx_cycle_t *cycle)
{
    ngx_ws_agent_feed_exit_process(cycle);
    ngx_ws_agent_redis_exit_process(cycle);
    ngx_ws_agent_stats_exit_process();
}


ngx_ws_agent_ctx_t *
ngx_ws_agent_get_ctx(ngx_http_request_t *r)
{
    ngx_ws_agent_ctx_t       *ctx;
    ngx_ws_agent_loc_conf_t  *wlcf;

    ctx = ngx_http_get_module_ctx(r->main, ngx_ws_agent_module);
    if (ctx) {
        return ctx;
    }

    wlcf = ngx_http_get_module_loc_conf(r->main, ngx_ws_agent_module);

    if (!wlcf->enable || r->main->headers_in.upgrade == NULL) {
        return NULL;
    }

    return ngx_ws_agent_create_ctx(r->main);
}


/*
 * The context lives on the heap, not in the request pool: by the time of
 * the upgrade the pool's first block is full, and a 600-byte context would
 * cost every idle connection a whole new 4k block.
 */

static ngx_ws_agent_ctx_t *
ngx_ws_agent_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_ws_agent_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx = ngx_calloc(sizeof(ngx_ws_agent_ctx_t), r->connection->log);
    if (ctx == NULL) {
        return NULL;
    }

    cln->handler = ngx_ws_agent_free_ctx;
    cln->data = ctx;

    ctx->request = r;
    ctx->conf = ngx_http_get_module_loc_conf(r, ngx_ws_agent_module);

    ngx_http_set_ctx(r, ctx, ngx_ws_agent_module);

    return ctx;
}


static void
ngx_ws_agent_free_ctx(void *data)
{
    ngx_ws_agent_ctx_t  *ctx = data;

    ngx_ws_agent_gate_detach(ctx);

    ngx_free(ctx);
}


/*
 * The connection id is made when first asked for, usually by
 * proxy_set_header before the request goes upstream, so the backend and
 * the module's logs and envelopes name the connection alike.  By then the
 * access phase has verified the JWT, so ws_agent_user may use its claims.
 */

ngx_int_t
ngx_ws_agent_identify(ngx_http_request_t *r, ngx_ws_agent_ctx_t *ctx)
{
    u_char         *p;
    ngx_str_t       user;
    ngx_uint_t      i, n;
    unsigned char   rnd[4];

    if (ctx->id.len) {
        return NGX_OK;
    }

    r = r->main;

    ngx_str_null(&user);

    if (ctx->conf->user) {
        if (ngx_http_complex_value(r, ctx->conf->user, &user) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    ctx->user = user;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ws_agent: RAND_bytes() failed");
        return NGX_ERROR;
    }

    p = ngx_cpymem(ctx->id_buf, "ws_", 3);

    /* the prefix keeps only characters safe in logs and channel names */
    for (i = 0, n = 0; i < user.len && n < NGX_WS_AGENT_USER_PREFIX; i++) {
        if (isalnum(user.data[i]) || user.data[i] == '-') {
            *p++ = user.data[i];
            n++;
        }
    }

    if (n == 0) {
        p = ngx_cpymem(p, "anon", 4);
    }

    p = ngx_sprintf(p, "_%T_%02xd%02xd%02xd%02xd", ngx_time(),
                    rnd[0], rnd[1], rnd[2], rnd[3]);

    ctx->id.data = ctx->id_buf;
    ctx->id.len = p - ctx->id_buf;

    return NGX_OK;
}


/*
 * A compressed frame would hide the ack and the events, so a gated
 * location never lets permessage-deflate be negotiated: the offer is
 * dropped before the request goes upstream.
 */

static ngx_int_t
ngx_ws_agent_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 ext = ngx_string("Sec-WebSocket-Extensions");
    ngx_table_elt_t          *h;
    ngx_ws_agent_ctx_t       *ctx;
    ngx_ws_agent_loc_conf_t  *wlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_ws_agent_module);

    if (wlcf->jwt) {
        ctx = ngx_http_get_module_ctx(r, ngx_ws_agent_module);

        if (ctx == NULL) {
            ctx = ngx_ws_agent_create_ctx(r);
            if (ctx == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        if (!ctx->jwt_verified) {
            rc = ngx_ws_agent_jwt_check(r, ctx);
            if (rc != NGX_DECLINED) {
                return rc;
            }
        }
    }

    if (!wlcf->enable || !ngx_ws_agent_upgrade_is_websocket(r)) {
        return NGX_DECLINED;
    }

    /*
     * A compressed frame would hide the ack and the events, so a gated
     * location never lets permessage-deflate be negotiated: the offer is
     * dropped before the request goes upstream.
     */

    while ((h = ngx_ws_agent_find_header(&r->headers_in.headers, &ext)) != NULL) {
        if (ngx_ws_agent_remove_header(r, h) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_ws_agent_header_filter(ngx_http_request_t *r)
{
    ngx_ws_agent_ctx_t  *ctx;

    if (r != r->main
        || r->headers_out.status != NGX_HTTP_SWITCHING_PROTOCOLS
        || r->upstream == NULL
        || !r->upstream->upgrade
        || r->upstream->peer.connection == NULL)
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_ws_agent_get_ctx(r);

    if (ctx && ngx_ws_agent_jwt_select_protocol(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx && ctx->conf->enable && !ngx_ws_agent_gate_attached(&ctx->relay)
        && ngx_ws_agent_upgrade_is_websocket(r))
    {
        if (ngx_ws_agent_identify(r, ctx) != NGX_OK
            || ngx_ws_agent_gate_attach(r, ctx) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/* variables */

static ngx_int_t
ngx_ws_agent_variable_str(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t           *s;
    ngx_ws_agent_ctx_t  *ctx;

    ctx = ngx_ws_agent_get_ctx(r);
    if (ctx == NULL || !ctx->conf->enable
        || r->main->headers_in.upgrade == NULL)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ngx_ws_agent_identify(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    s = (data == NGX_WS_AGENT_VAR_ID) ? &ctx->id : &ctx->user;

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_ws_agent_variable_num(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char              *p;
    ngx_uint_t           n;
    ngx_ws_agent_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_ws_agent_module);

    if (ctx == NULL || !ngx_ws_agent_gate_attached(&ctx->relay)
        || (data == NGX_WS_AGENT_VAR_READY_MS
            && !ngx_ws_agent_gate_opened(&ctx->relay))
        || (data == NGX_WS_AGENT_VAR_CLOSE_CODE
            && ctx->relay.close_code == 0))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_WS_AGENT_VAR_READY_MS:
        n = ctx->relay.ready_ms;
        break;

    case NGX_WS_AGENT_VAR_FRAMES_HELD:
        n = ctx->relay.frames_held;
        break;

    case NGX_WS_AGENT_VAR_EVENTS_PUBLISHED:
        n = ctx->events.seq;
        break;

    default: /* NGX_WS_AGENT_VAR_CLOSE_CODE */
        n = ctx->relay.close_code;
        break;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_sprintf(p, "%ui", n) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
