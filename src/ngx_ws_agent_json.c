/*
 * JSON with yajl (see ngx_ws_agent_json.h).  The typer looks only at the
 * top level of the message and can stop as soon as the type says the rest
 * does not matter; when it goes on, the whole text is validated.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_parse.h>

#include "ngx_ws_agent_json.h"


static int ws_json_value(ws_json_typer_t *t);
static int ws_json_done(ws_json_typer_t *t);
static int ws_json_blank(const unsigned char *p, size_t len);
static int ws_json_null(void *ctx);
static int ws_json_boolean(void *ctx, int v);
static int ws_json_number(void *ctx, const char *v, size_t len);
static int ws_json_string(void *ctx, const unsigned char *v, size_t len);
static int ws_json_start_map(void *ctx);
static int ws_json_map_key(void *ctx, const unsigned char *v, size_t len);
static int ws_json_end(void *ctx);
static int ws_json_start_array(void *ctx);
static size_t ws_json_generate(unsigned char *out, size_t cap,
    const unsigned char *id, size_t id_len, const unsigned char *user,
    size_t user_len, int head, unsigned long long seq,
    unsigned long long ts_ms, const unsigned char *type, size_t type_len);


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


int
ws_json_typer_init(ws_json_typer_t *t, const unsigned char *key,
    size_t key_len, unsigned char *type, size_t type_cap,
    ws_json_type_pt found, void *data)
{
    memset(t, 0, sizeof(ws_json_typer_t));

    t->key = key;
    t->key_len = key_len;
    t->type = type;
    t->type_cap = type_cap;
    t->found = found;
    t->data = data;

    t->handle = yajl_alloc(&ws_json_callbacks, NULL, t);

    return t->handle ? 0 : -1;
}


ws_json_result_e
ws_json_typer_feed(ws_json_typer_t *t, const unsigned char *data, size_t len)
{
    /* after the value only JSON's own white space may follow */
    if (t->complete) {
        return ws_json_blank(data, len) ? WS_JSON_MORE : WS_JSON_INVALID;
    }

    /* yajl takes \v and \f for white space; JSON does not */
    if (memchr(data, '\v', len) != NULL || memchr(data, '\f', len) != NULL) {
        return WS_JSON_INVALID;
    }

    switch (yajl_parse(t->handle, data, len)) {

    case yajl_status_ok:
        /*
         * yajl says ok for a value followed by the start of another one
         * cut at the end of the input ({...} "x): the rest is checked here
         */
        if (t->complete
            && !ws_json_blank(data + t->complete_at, len - t->complete_at))
        {
            return WS_JSON_INVALID;
        }

        return WS_JSON_MORE;

    case yajl_status_client_canceled:
        /* a callback stopped: the caller's lack of interest, or not an
           object at the top */
        return t->dropped ? WS_JSON_DROPPED : WS_JSON_NOT_OBJECT;

    default:
        return WS_JSON_INVALID;
    }
}


ws_json_result_e
ws_json_typer_finish(ws_json_typer_t *t, size_t *type_len)
{
    if (yajl_complete_parse(t->handle) != yajl_status_ok || !t->started) {
        return WS_JSON_INVALID;
    }

    if (!t->object) {
        return WS_JSON_NOT_OBJECT;
    }

    if (!t->typed || t->too_long) {
        return WS_JSON_UNTYPED;
    }

    *type_len = t->type_len;

    return WS_JSON_TYPED;
}


void
ws_json_typer_free(ws_json_typer_t *t)
{
    if (t->handle) {
        yajl_free(t->handle);
        t->handle = NULL;
    }
}


ws_json_result_e
ws_json_type(const unsigned char *data, size_t len, const unsigned char *key,
    size_t key_len, unsigned char *type, size_t *type_len)
{
    ws_json_typer_t   t;
    ws_json_result_e  rc;

    if (ws_json_typer_init(&t, key, key_len, type, *type_len, NULL, NULL)
        != 0)
    {
        return WS_JSON_INVALID;
    }

    rc = ws_json_typer_feed(&t, data, len);

    if (rc == WS_JSON_MORE) {
        rc = ws_json_typer_finish(&t, type_len);
    }

    ws_json_typer_free(&t);

    return rc;
}


size_t
ws_json_envelope_prefix(unsigned char *out, size_t cap,
    const unsigned char *id, size_t id_len, const unsigned char *user,
    size_t user_len)
{
    return ws_json_generate(out, cap, id, id_len, user, user_len, 0, 0, 0,
                            NULL, 0);
}


size_t
ws_json_envelope_head(unsigned char *out, size_t cap, const unsigned char *id,
    size_t id_len, const unsigned char *user, size_t user_len,
    unsigned long long seq, unsigned long long ts_ms,
    const unsigned char *type, size_t type_len)
{
    return ws_json_generate(out, cap, id, id_len, user, user_len, 1, seq,
                            ts_ms, type, type_len);
}


/*
 * The generator behind both: the object is closed by yajl, then its "}"
 * becomes "," (prefix) or ',"event":' (head) for the caller to go on.
 */

static size_t
ws_json_generate(unsigned char *out, size_t cap, const unsigned char *id,
    size_t id_len, const unsigned char *user, size_t user_len, int head,
    unsigned long long seq, unsigned long long ts_ms,
    const unsigned char *type, size_t type_len)
{
    size_t                i, len, tail_len;
    char                  num[24];
    yajl_gen              g;
    const char           *tail;
    const unsigned char  *buf;
    unsigned char        *safe;
    int                   ok, pass;

    safe = NULL;
    len = 0;
    tail = head ? ",\"event\":" : ",";
    tail_len = strlen(tail);

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

        if (head) {
            ws_json_key_num("seq", seq);
            ws_json_key_num("ts_ms", ts_ms);
            ws_json_key_str("type", type, type_len);
        }

#undef ws_json_key_str
#undef ws_json_key_num

        ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok
             && yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok;

        if (ok) {
            len = len - 1 + tail_len;

            if (len <= cap) {
                memcpy(out, buf, len - tail_len);
                memcpy(out + len - tail_len, tail, tail_len);
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


/* the top-level value ends here: remember where, for what follows */

static int
ws_json_done(ws_json_typer_t *t)
{
    if (t->depth == 0) {
        t->complete = 1;
        t->complete_at = yajl_get_bytes_consumed(t->handle);
    }

    return 1;
}


static int
ws_json_blank(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') {
            return 0;
        }
    }

    return 1;
}


/* any value: the first one decides object or not; ends a key at depth 1 */

static int
ws_json_value(ws_json_typer_t *t)
{
    if (!t->started) {
        t->started = 1;

        /* a top level that is not an object is all we need to know */
        if (!t->object && t->found) {
            return 0;
        }
    }

    t->key_match = 0;

    return 1;
}


static int
ws_json_null(void *ctx)
{
    return ws_json_value(ctx) && ws_json_done(ctx);
}


static int
ws_json_boolean(void *ctx, int v)
{
    (void) v;
    return ws_json_value(ctx) && ws_json_done(ctx);
}


static int
ws_json_number(void *ctx, const char *v, size_t len)
{
    (void) v;
    (void) len;
    return ws_json_value(ctx) && ws_json_done(ctx);
}


static int
ws_json_string(void *ctx, const unsigned char *v, size_t len)
{
    ws_json_typer_t  *t = ctx;

    if (t->depth == 1 && t->key_match && !t->typed) {
        t->typed = 1;

        if (len > t->type_cap) {
            t->too_long = 1;

        } else {
            memcpy(t->type, v, len);
            t->type_len = len;

            if (t->found && !t->found(t->data, v, len)) {
                t->dropped = 1;
                return 0;
            }
        }
    }

    return ws_json_value(t) && ws_json_done(t);
}


static int
ws_json_start_map(void *ctx)
{
    ws_json_typer_t  *t = ctx;

    if (!t->started) {
        t->object = 1;
    }

    if (!ws_json_value(t)) {
        return 0;
    }

    t->depth++;

    return 1;
}


static int
ws_json_start_array(void *ctx)
{
    ws_json_typer_t  *t = ctx;

    if (!ws_json_value(t)) {
        return 0;
    }

    t->depth++;

    return 1;
}


static int
ws_json_map_key(void *ctx, const unsigned char *v, size_t len)
{
    ws_json_typer_t  *t = ctx;

    t->key_match = (t->depth == 1 && len == t->key_len
                    && memcmp(v, t->key, len) == 0);

    return 1;
}


static int
ws_json_end(void *ctx)
{
    ws_json_typer_t  *t = ctx;

    t->depth--;
    t->key_match = 0;

    return ws_json_done(t);
}
