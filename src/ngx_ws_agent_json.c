/*
 * JSON (see ngx_ws_agent_json.h).  The typer looks only at the top level of
 * the message and can stop as soon as the type says the rest does not
 * matter; when it goes on, the whole text is validated, byte by byte, in
 * one pass.  The envelope is generated with yajl.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>

#include "ngx_ws_agent_json.h"


static inline size_t ws_json_run(const unsigned char *p,
    const unsigned char *last);
static ws_json_result_e ws_json_begin(ws_json_typer_t *t, unsigned char c);
static ws_json_result_e ws_json_end_value(ws_json_typer_t *t);
static ws_json_result_e ws_json_end_string(ws_json_typer_t *t);
static unsigned ws_json_utf8_range(unsigned char c, unsigned char *lo,
    unsigned char *hi);
static ws_json_result_e ws_json_utf8_lead(ws_json_typer_t *t,
    unsigned char c);
static int ws_json_utf8(const unsigned char *p, size_t len);
static int ws_json_ascii(unsigned char **safe, const unsigned char *user,
    size_t user_len);
static void ws_json_emit(ws_json_typer_t *t, const unsigned char *p,
    size_t n);
static void ws_json_emit_byte(ws_json_typer_t *t, unsigned char c);
static void ws_json_emit_codepoint(ws_json_typer_t *t);
static int ws_json_push(ws_json_typer_t *t, int object);
static size_t ws_json_generate(unsigned char *out, size_t cap,
    const unsigned char *id, size_t id_len, const unsigned char *user,
    size_t user_len, int head, unsigned long long seq,
    unsigned long long ts_ms, const unsigned char *type, size_t type_len);


/* where the scanner is */
enum {
    WS_J_VALUE = 0,     /* a value must come */
    WS_J_OBJECT,        /* after '{': a key or '}' */
    WS_J_KEY,           /* after ',' in an object: a key */
    WS_J_COLON,
    WS_J_ARRAY,         /* after '[': a value or ']' */
    WS_J_AFTER,         /* after a value inside a container: ',' or close */
    WS_J_END,           /* after the top-level value: white space only */
    WS_J_STRING,
    WS_J_ESCAPE,        /* after '\' */
    WS_J_HEX,           /* in \uXXXX */
    WS_J_UTF8,          /* in a multi-byte character */
    WS_J_MINUS,         /* number: after '-' */
    WS_J_ZERO,          /* a leading 0 */
    WS_J_INT,
    WS_J_DOT,
    WS_J_FRAC,
    WS_J_EXP_MARK,      /* after 'e' */
    WS_J_EXP_SIGN,
    WS_J_EXP,
    WS_J_LITERAL,
    WS_J_INVALID,
    WS_J_DROPPED,
    WS_J_NOT_OBJECT
};


static const char  *ws_json_literals[3] = { "true", "false", "null" };


/* 1: a byte that stands for itself inside a string (ASCII, not " \ or a
   control character); 2: JSON white space; 4: a digit */
static const unsigned char  ws_json_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 2, 0, 0,           /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,           /* 0x10 */
    3, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x20 */
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 1, 1, 1,           /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,           /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1            /* 0x70 */
};

#define WS_J_PLAIN   1
#define WS_J_SPACE   2
#define WS_J_DIGIT   4


#define ws_json_space(c)  (ws_json_class[c] & WS_J_SPACE)
#define ws_json_digit(c)  (ws_json_class[c] & WS_J_DIGIT)

#define ws_json_fail(t)   ((t)->state = WS_J_INVALID, WS_JSON_INVALID)

#define ws_json_in_object(t)                                                  \
    (((t)->stack[((t)->depth - 1) >> 6] >> (((t)->depth - 1) & 63)) & 1)


size_t
ws_json_plain(const unsigned char *p, const unsigned char *last)
{
    return ws_json_run(p, last);
}


static inline size_t
ws_json_run(const unsigned char *p, const unsigned char *last)
{
    const unsigned char  *q;

    for (q = p; q < last && (ws_json_class[*q] & WS_J_PLAIN); q++) {
        /* void */
    }

    return q - p;
}


void
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
    t->state = WS_J_VALUE;
}


ws_json_result_e
ws_json_typer_feed(ws_json_typer_t *t, const unsigned char *p, size_t len)
{
    unsigned char         c;
    ws_json_result_e      rc;
    const unsigned char  *q, *last;

    last = p + len;

    while (p < last) {
        c = *p;

        if (t->state <= WS_J_END) {
            /* between tokens: white space goes by */
            while (ws_json_space(c)) {
                if (++p == last) {
                    return WS_JSON_MORE;
                }

                c = *p;
            }
        }

        switch (t->state) {

        case WS_J_STRING:
            /* a run of bytes that stand for themselves */
            q = p + ws_json_run(p, last);

            if (t->decode && q > p) {
                ws_json_emit(t, p, q - p);
            }

            if (q == last) {
                return WS_JSON_MORE;
            }

            p = q;
            c = *p;

            if (c == '"') {
                rc = ws_json_end_string(t);

            } else if (c == '\\') {
                t->state = WS_J_ESCAPE;
                rc = WS_JSON_MORE;

            } else if (c < 0x20) {
                rc = ws_json_fail(t);

            } else {
                rc = ws_json_utf8_lead(t, c);
            }

            break;

        case WS_J_UTF8:
            if (c < t->utf8_lo || c > t->utf8_hi) {
                return ws_json_fail(t);
            }

            ws_json_emit(t, p, 1);
            t->utf8_lo = 0x80;
            t->utf8_hi = 0xbf;

            if (--t->utf8_need == 0) {
                t->state = WS_J_STRING;
            }

            rc = WS_JSON_MORE;
            break;

        case WS_J_ESCAPE:
            t->state = WS_J_STRING;
            rc = WS_JSON_MORE;

            switch (c) {
            case '"':  ws_json_emit_byte(t, '"'); break;
            case '\\': ws_json_emit_byte(t, '\\'); break;
            case '/':  ws_json_emit_byte(t, '/'); break;
            case 'b':  ws_json_emit_byte(t, '\b'); break;
            case 'f':  ws_json_emit_byte(t, '\f'); break;
            case 'n':  ws_json_emit_byte(t, '\n'); break;
            case 'r':  ws_json_emit_byte(t, '\r'); break;
            case 't':  ws_json_emit_byte(t, '\t'); break;
            case 'u':
                t->state = WS_J_HEX;
                t->count = 0;
                t->codepoint = 0;
                break;
            default:
                rc = ws_json_fail(t);
            }

            break;

        case WS_J_HEX:
            if (ws_json_digit(c)) {
                t->codepoint = t->codepoint * 16 + (c - '0');

            } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                t->codepoint = t->codepoint * 16 + ((c | 0x20) - 'a' + 10);

            } else {
                return ws_json_fail(t);
            }

            if (++t->count == 4) {
                ws_json_emit_codepoint(t);
                t->state = WS_J_STRING;
            }

            rc = WS_JSON_MORE;
            break;

        case WS_J_VALUE:
        case WS_J_ARRAY:
            if (ws_json_space(c)) {
                rc = WS_JSON_MORE;

            } else if (c == ']' && t->state == WS_J_ARRAY) {
                t->depth--;
                rc = ws_json_end_value(t);

            } else {
                rc = ws_json_begin(t, c);
            }

            break;

        case WS_J_OBJECT:
        case WS_J_KEY:
            if (ws_json_space(c)) {
                rc = WS_JSON_MORE;

            } else if (c == '"') {
                t->state = WS_J_STRING;
                t->in_key = 1;
                t->key_cmp = (t->depth == 1);
                t->decode = t->key_cmp;
                t->key_pos = 0;
                rc = WS_JSON_MORE;

            } else if (c == '}' && t->state == WS_J_OBJECT) {
                t->depth--;
                rc = ws_json_end_value(t);

            } else {
                rc = ws_json_fail(t);
            }

            break;

        case WS_J_COLON:
            if (ws_json_space(c)) {
                rc = WS_JSON_MORE;

            } else if (c == ':') {
                t->state = WS_J_VALUE;
                rc = WS_JSON_MORE;

            } else {
                rc = ws_json_fail(t);
            }

            break;

        case WS_J_AFTER:
            if (ws_json_space(c)) {
                rc = WS_JSON_MORE;

            } else if (c == ',') {
                t->state = ws_json_in_object(t) ? WS_J_KEY : WS_J_VALUE;
                rc = WS_JSON_MORE;

            } else if (c == (ws_json_in_object(t) ? '}' : ']')) {
                t->depth--;
                rc = ws_json_end_value(t);

            } else {
                rc = ws_json_fail(t);
            }

            break;

        case WS_J_END:
            rc = ws_json_space(c) ? WS_JSON_MORE : ws_json_fail(t);
            break;

        case WS_J_MINUS:
            if (c == '0') {
                t->state = WS_J_ZERO;

            } else if (ws_json_digit(c)) {
                t->state = WS_J_INT;

            } else {
                return ws_json_fail(t);
            }

            rc = WS_JSON_MORE;
            break;

        case WS_J_DOT:
        case WS_J_EXP_SIGN:
            if (!ws_json_digit(c)) {
                return ws_json_fail(t);
            }

            t->state = (t->state == WS_J_DOT) ? WS_J_FRAC : WS_J_EXP;
            rc = WS_JSON_MORE;
            break;

        case WS_J_EXP_MARK:
            if (ws_json_digit(c)) {
                t->state = WS_J_EXP;

            } else if (c == '+' || c == '-') {
                t->state = WS_J_EXP_SIGN;

            } else {
                return ws_json_fail(t);
            }

            rc = WS_JSON_MORE;
            break;

        case WS_J_ZERO:
        case WS_J_INT:
        case WS_J_FRAC:
        case WS_J_EXP:
            if (ws_json_digit(c) && t->state != WS_J_ZERO) {
                while (++p < last && ws_json_digit(*p)) {
                    /* void */
                }

                continue;

            } else if (c == '.'
                       && (t->state == WS_J_ZERO || t->state == WS_J_INT))
            {
                t->state = WS_J_DOT;
                rc = WS_JSON_MORE;

            } else if ((c == 'e' || c == 'E') && t->state != WS_J_EXP) {
                t->state = WS_J_EXP_MARK;
                rc = WS_JSON_MORE;

            } else {
                /* the number ended just before c: c is looked at again */
                rc = ws_json_end_value(t);

                if (rc != WS_JSON_MORE) {
                    return rc;
                }

                continue;
            }

            break;

        case WS_J_LITERAL:
            if (c != (unsigned char) ws_json_literals[t->literal][t->count]) {
                return ws_json_fail(t);
            }

            if (ws_json_literals[t->literal][++t->count] == '\0') {
                rc = ws_json_end_value(t);

            } else {
                rc = WS_JSON_MORE;
            }

            break;

        case WS_J_DROPPED:
            return WS_JSON_DROPPED;

        case WS_J_NOT_OBJECT:
            return WS_JSON_NOT_OBJECT;

        default: /* WS_J_INVALID */
            return WS_JSON_INVALID;
        }

        if (rc != WS_JSON_MORE) {
            return rc;
        }

        p++;
    }

    return WS_JSON_MORE;
}


ws_json_result_e
ws_json_typer_finish(ws_json_typer_t *t, size_t *type_len)
{
    switch (t->state) {

    case WS_J_END:
        break;

    case WS_J_ZERO:
    case WS_J_INT:
    case WS_J_FRAC:
    case WS_J_EXP:
        /* a top-level number ends with the text */
        if (t->depth == 0) {
            break;
        }

        /* fall through */

    default:
        return (t->state == WS_J_NOT_OBJECT) ? WS_JSON_NOT_OBJECT
                                             : WS_JSON_INVALID;
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


ws_json_result_e
ws_json_type(const unsigned char *data, size_t len, const unsigned char *key,
    size_t key_len, unsigned char *type, size_t *type_len)
{
    ws_json_typer_t   t;
    ws_json_result_e  rc;

    ws_json_typer_init(&t, key, key_len, type, *type_len, NULL, NULL);

    rc = ws_json_typer_feed(&t, data, len);

    if (rc == WS_JSON_MORE) {
        rc = ws_json_typer_finish(&t, type_len);
    }

    return rc;
}


/* c starts a value (white space is behind) */

static ws_json_result_e
ws_json_begin(ws_json_typer_t *t, unsigned char c)
{
    if (!t->started) {
        t->started = 1;
        t->object = (c == '{');

        /*
         * a top level that is not an object is all a caller needs: an
         * array is known at once, a scalar once it is valid to its end
         */
        if (c == '[' && t->found) {
            t->state = WS_J_NOT_OBJECT;
            return WS_JSON_NOT_OBJECT;
        }
    }

    switch (c) {

    case '{':
    case '[':
        if (!ws_json_push(t, c == '{')) {
            return ws_json_fail(t);
        }

        t->state = (c == '{') ? WS_J_OBJECT : WS_J_ARRAY;
        return WS_JSON_MORE;

    case '"':
        t->state = WS_J_STRING;
        t->in_key = 0;

        /* the first string value of a top-level member named key */
        t->capture = (t->depth == 1 && t->key_match && !t->typed);
        t->decode = t->capture;
        return WS_JSON_MORE;

    case '-':
        t->state = WS_J_MINUS;
        return WS_JSON_MORE;

    case '0':
        t->state = WS_J_ZERO;
        return WS_JSON_MORE;

    case 't':
    case 'f':
    case 'n':
        t->state = WS_J_LITERAL;
        t->literal = (c == 't') ? 0 : (c == 'f') ? 1 : 2;
        t->count = 1;
        return WS_JSON_MORE;

    default:
        if (c >= '1' && c <= '9') {
            t->state = WS_J_INT;
            return WS_JSON_MORE;
        }

        return ws_json_fail(t);
    }
}


static int
ws_json_push(ws_json_typer_t *t, int object)
{
    unsigned  d = t->depth;

    if (d == WS_JSON_MAX_DEPTH) {
        return 0;
    }

    if (object) {
        t->stack[d >> 6] |= 1ULL << (d & 63);

    } else {
        t->stack[d >> 6] &= ~(1ULL << (d & 63));
    }

    t->depth = d + 1;

    return 1;
}


/* a value (scalar or container) just ended */

static ws_json_result_e
ws_json_end_value(ws_json_typer_t *t)
{
    if (t->depth) {
        t->state = WS_J_AFTER;
        return WS_JSON_MORE;
    }

    if (!t->object && t->found) {
        t->state = WS_J_NOT_OBJECT;
        return WS_JSON_NOT_OBJECT;
    }

    t->state = WS_J_END;

    return WS_JSON_MORE;
}


static ws_json_result_e
ws_json_end_string(ws_json_typer_t *t)
{
    if (t->in_key) {
        t->key_match = t->key_cmp && t->key_pos == t->key_len;
        t->in_key = 0;
        t->state = WS_J_COLON;
        return WS_JSON_MORE;
    }

    if (t->capture) {
        t->capture = 0;
        t->typed = 1;

        if (!t->too_long && t->found
            && !t->found(t->data, t->type, t->type_len))
        {
            t->state = WS_J_DROPPED;
            return WS_JSON_DROPPED;
        }
    }

    return ws_json_end_value(t);
}


/* RFC 3629: the lead byte says how many follow and the next one's range */

static unsigned
ws_json_utf8_range(unsigned char c, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80;
    *hi = 0xbf;

    if (c >= 0xc2 && c <= 0xdf) {
        return 1;
    }

    if (c >= 0xe0 && c <= 0xef) {
        if (c == 0xe0) {
            *lo = 0xa0;                 /* no overlong forms */

        } else if (c == 0xed) {
            *hi = 0x9f;                 /* no surrogates */
        }

        return 2;
    }

    if (c >= 0xf0 && c <= 0xf4) {
        if (c == 0xf0) {
            *lo = 0x90;

        } else if (c == 0xf4) {
            *hi = 0x8f;                 /* up to U+10FFFF */
        }

        return 3;
    }

    return 0;
}


static ws_json_result_e
ws_json_utf8_lead(ws_json_typer_t *t, unsigned char c)
{
    unsigned char  lo, hi;

    t->utf8_need = ws_json_utf8_range(c, &lo, &hi);

    if (t->utf8_need == 0) {
        return ws_json_fail(t);
    }

    t->utf8_lo = lo;
    t->utf8_hi = hi;

    ws_json_emit(t, &c, 1);
    t->state = WS_J_UTF8;

    return WS_JSON_MORE;
}


static int
ws_json_utf8(const unsigned char *p, size_t len)
{
    size_t         i, k, need;
    unsigned char  lo, hi;

    for (i = 0; i < len; i++) {
        if (p[i] < 0x80) {
            continue;
        }

        need = ws_json_utf8_range(p[i], &lo, &hi);

        if (need == 0 || need >= len - i) {
            return 0;
        }

        for (k = 1; k <= need; k++) {
            if (p[i + k] < lo || p[i + k] > hi) {
                return 0;
            }

            lo = 0x80;
            hi = 0xbf;
        }

        i += need;
    }

    return 1;
}


/* decoded bytes of a string: compared with key, or kept as the type */

static void
ws_json_emit(ws_json_typer_t *t, const unsigned char *p, size_t n)
{
    if (t->in_key) {
        if (t->key_cmp) {
            if (n <= t->key_len - t->key_pos
                && memcmp(t->key + t->key_pos, p, n) == 0)
            {
                t->key_pos += n;

            } else {
                t->key_cmp = 0;
                t->decode = 0;
            }
        }

        return;
    }

    if (t->capture && !t->too_long) {
        if (n <= t->type_cap - t->type_len) {
            memcpy(t->type + t->type_len, p, n);
            t->type_len += n;

        } else {
            t->too_long = 1;
        }
    }
}


static void
ws_json_emit_byte(ws_json_typer_t *t, unsigned char c)
{
    ws_json_emit(t, &c, 1);
}


/*
 * A \uXXXX escape, in UTF-8.  A surrogate (half of a pair, or alone) is
 * not decoded: such a key matches no key, such a type is no type.
 */

static void
ws_json_emit_codepoint(ws_json_typer_t *t)
{
    unsigned  cp = t->codepoint;

    if (!(t->in_key ? t->key_cmp : t->capture)) {
        return;
    }

    if (cp >= 0xd800 && cp <= 0xdfff) {
        if (t->in_key) {
            t->key_cmp = 0;
            t->decode = 0;

        } else {
            t->too_long = 1;
        }

        return;
    }

    if (cp < 0x80) {
        ws_json_emit_byte(t, (unsigned char) cp);

    } else if (cp < 0x800) {
        ws_json_emit_byte(t, (unsigned char) (0xc0 | (cp >> 6)));
        ws_json_emit_byte(t, (unsigned char) (0x80 | (cp & 0x3f)));

    } else {
        ws_json_emit_byte(t, (unsigned char) (0xe0 | (cp >> 12)));
        ws_json_emit_byte(t, (unsigned char) (0x80 | ((cp >> 6) & 0x3f)));
        ws_json_emit_byte(t, (unsigned char) (0x80 | (cp & 0x3f)));
    }
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
 * Strings are checked as UTF-8 here (RFC 3629: yajl's own check lets
 * overlong forms and surrogates through), so yajl need not check them.
 */

static size_t
ws_json_generate(unsigned char *out, size_t cap, const unsigned char *id,
    size_t id_len, const unsigned char *user, size_t user_len, int head,
    unsigned long long seq, unsigned long long ts_ms,
    const unsigned char *type, size_t type_len)
{
    int                   ok;
    size_t                len, gen_len, tail_len;
    char                  num[24];
    yajl_gen              g;
    const char           *tail;
    const unsigned char  *buf;
    unsigned char        *safe;

    if (!ws_json_utf8(id, id_len)
        || (head && !ws_json_utf8(type, type_len)))
    {
        return 0;
    }

    /* a user that is not UTF-8 is given as its ASCII, '?' for the rest */
    safe = NULL;

    if (!ws_json_utf8(user, user_len)
        && ws_json_ascii(&safe, user, user_len) != 0)
    {
        return 0;
    }

    g = yajl_gen_alloc(NULL);
    if (g == NULL) {
        free(safe);
        return 0;
    }

    ok = yajl_gen_map_open(g) == yajl_gen_status_ok;

#define ws_json_key_str(k, v, n)                                              \
    ok = ok                                                                   \
         && yajl_gen_string(g, (const unsigned char *) k, sizeof(k) - 1)      \
            == yajl_gen_status_ok                                             \
         && yajl_gen_string(g, v, n) == yajl_gen_status_ok

#define ws_json_key_num(k, v)                                                 \
    ok = ok                                                                   \
         && yajl_gen_string(g, (const unsigned char *) k, sizeof(k) - 1)      \
            == yajl_gen_status_ok                                             \
         && yajl_gen_number(g, num,                                           \
                            (size_t) snprintf(num, sizeof(num), "%llu", v))   \
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
         && yajl_gen_get_buf(g, &buf, &gen_len) == yajl_gen_status_ok;

    len = 0;

    if (ok) {
        tail = head ? ",\"event\":" : ",";
        tail_len = strlen(tail);
        len = gen_len - 1 + tail_len;

        if (len <= cap) {
            memcpy(out, buf, gen_len - 1);
            memcpy(out + gen_len - 1, tail, tail_len);
        }
    }

    free(safe);
    yajl_gen_free(g);

    return len;
}


/* not UTF-8 (the id and type are): the ASCII of user, '?' for the rest */

static int
ws_json_ascii(unsigned char **safe, const unsigned char *user,
    size_t user_len)
{
    size_t  i;

    *safe = malloc(user_len ? user_len : 1);
    if (*safe == NULL) {
        return -1;
    }

    for (i = 0; i < user_len; i++) {
        (*safe)[i] = user[i] < 0x80 ? user[i] : '?';
    }

    return 0;
}
