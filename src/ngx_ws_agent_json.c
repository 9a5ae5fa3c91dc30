/*
 * Message typing with yajl's event parser: only the top level of the object
 * is looked at, the whole text is validated.
 */

#include <string.h>

#include <stdio.h>
#include <stdlib.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "ngx_ws_agent_json.h"


typedef struct {
    const unsigned char  *key;
    size_t                key_len;
    unsigned char        *type;
    size_t                type_cap;
    size_t                type_len;
    unsigned              depth;
    unsigned              started:1;
    unsigned              object:1;
    unsigned              key_match:1;
    unsigned              found:1;
    unsigned              too_long:1;
} ws_json_scan_t;


static int ws_json_value(ws_json_scan_t *s);
static int ws_json_null(void *ctx);
static int ws_json_boolean(void *ctx, int v);
static int ws_json_number(void *ctx, const char *v, size_t len);
static int ws_json_string(void *ctx, const unsigned char *v, size_t len);
static int ws_json_start_map(void *ctx);
static int ws_json_map_key(void *ctx, const unsigned char *v, size_t len);
static int ws_json_end(void *ctx);
static int ws_json_start_array(void *ctx);


static const yajl_callbacks  ws_json_callbacks = {
    ws_json_null,
    ws_json_boolean,
    NULL,
    NULL,
    ws_json_number,
    ws_json_string,
    ws_json_start_map,
    ws_json_map_key,
    ws_json_end,
    ws_json_start_array,
    ws_json_end
};


ws_json_result_e
ws_json_type(const unsigned char *data, size_t len, const unsigned char *key,
    size_t key_len, unsigned char *type, size_t *type_len)
{
    yajl_handle      h;
    yajl_status      st;
    ws_json_scan_t   s;

    memset(&s, 0, sizeof(ws_json_scan_t));
    s.key = key;
    s.key_len = key_len;
    s.type = type;
    s.type_cap = *type_len;

    h = yajl_alloc(&ws_json_callbacks, NULL, &s);
    if (h == NULL) {
        return WS_JSON_INVALID;
    }

    st = yajl_parse(h, data, len);

    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok || !s.started) {
        return WS_JSON_INVALID;
    }

    if (!s.object) {
        return WS_JSON_NOT_OBJECT;
    }

    if (!s.found || s.too_long) {
        return WS_JSON_UNTYPED;
    }

    *type_len = s.type_len;

    return WS_JSON_TYPED;
}


size_t
ws_json_envelope_head(unsigned char *out, size_t cap, const unsigned char *id,
    size_t id_len, const unsigned char *user, size_t user_len,
    unsigned long long seq, unsigned long long ts_ms,
    const unsigned char *type, size_t type_len)
{
    size_t                i, len;
    char                  num[24];
    yajl_gen              g;
    const unsigned char  *buf;
    unsigned char        *safe;
    int                   ok, pass;

    safe = NULL;
    len = 0;

    for (pass = 0; pass < 2; pass++) {

        g = yajl_gen_alloc(NULL);
        if (g == NULL) {
            break;
        }

        yajl_gen_config(g, yajl_gen_validate_utf8, 1);

        ok = yajl_gen_map_open(g) == yajl_gen_status_ok;

#define ws_json_key_str(k, v, n)                                              \
        ok = ok                                                               \
             && yajl_gen_string(g, (const unsigned char *) k, sizeof(k) - 1)  \
                == yajl_gen_status_ok                                         \
             && yajl_gen_string(g, v, n) == yajl_gen_status_ok

#define ws_json_key_num(k, v)                                                 \
        ok = ok                                                               \
             && yajl_gen_string(g, (const unsigned char *) k, sizeof(k) - 1)  \
                == yajl_gen_status_ok                                         \
             && yajl_gen_number(g, num,                                       \
                                (size_t) snprintf(num, sizeof(num), "%llu",   \
                                                  v))                         \
                == yajl_gen_status_ok

        ws_json_key_str("connection_id", id, id_len);
        ws_json_key_str("user", safe ? safe : user, user_len);
        ws_json_key_num("seq", seq);
        ws_json_key_num("ts_ms", ts_ms);
        ws_json_key_str("type", type, type_len);

#undef ws_json_key_str
#undef ws_json_key_num

        ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok
             && yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok;

        if (ok) {
            /* "{...}" becomes "{...,"event":" */
            len = len - 1 + sizeof(",\"event\":") - 1;

            if (len <= cap) {
                memcpy(out, buf, len - (sizeof(",\"event\":") - 1));
                memcpy(out + len - (sizeof(",\"event\":") - 1),
                       ",\"event\":", sizeof(",\"event\":") - 1);
            }

            yajl_gen_free(g);
            break;
        }

        yajl_gen_free(g);
        len = 0;

        if (pass == 1 || user_len == 0) {
            break;
        }

        /* not UTF-8 (the id and type are): keep the ASCII of user */
        safe = malloc(user_len);
        if (safe == NULL) {
            break;
        }

        for (i = 0; i < user_len; i++) {
            safe[i] = user[i] < 0x80 ? user[i] : '?';
        }
    }

    free(safe);

    return len;
}


/* any value: the first one decides object or not; ends a key at depth 1 */

static int
ws_json_value(ws_json_scan_t *s)
{
    s->started = 1;
    s->key_match = 0;

    return 1;
}


static int
ws_json_null(void *ctx)
{
    return ws_json_value(ctx);
}


static int
ws_json_boolean(void *ctx, int v)
{
    (void) v;
    return ws_json_value(ctx);
}


static int
ws_json_number(void *ctx, const char *v, size_t len)
{
    (void) v;
    (void) len;
    return ws_json_value(ctx);
}


static int
ws_json_string(void *ctx, const unsigned char *v, size_t len)
{
    ws_json_scan_t  *s = ctx;

    if (s->depth == 1 && s->key_match && !s->found) {
        s->found = 1;

        if (len > s->type_cap) {
            s->too_long = 1;

        } else {
            memcpy(s->type, v, len);
            s->type_len = len;
        }
    }

    return ws_json_value(s);
}


static int
ws_json_start_map(void *ctx)
{
    ws_json_scan_t  *s = ctx;

    if (!s->started) {
        s->object = 1;
    }

    ws_json_value(s);
    s->depth++;

    return 1;
}


static int
ws_json_start_array(void *ctx)
{
    ws_json_scan_t  *s = ctx;

    ws_json_value(s);
    s->depth++;

    return 1;
}


static int
ws_json_map_key(void *ctx, const unsigned char *v, size_t len)
{
    ws_json_scan_t  *s = ctx;

    s->key_match = (s->depth == 1 && len == s->key_len
                    && memcmp(v, s->key, len) == 0);

    return 1;
}


static int
ws_json_end(void *ctx)
{
    ws_json_scan_t  *s = ctx;

    s->depth--;
    s->key_match = 0;

    return 1;
}
