/*
 * libFuzzer harness for the event extractor and the envelope builder
 * (src/ngx_ws_agent_json.c).  Input: a config byte (bits 0-2: the type
 * capacity, bits 3-4: the type key), the message text, and optionally a
 * 0x01 byte followed by the user string (0x01 never occurs in valid JSON
 * text, so seeds stay readable).  Checked:
 *
 *   ws_json_type: writes at most cap bytes (exact-size heap buffer under
 *   ASan, plus a canary), *type_len is untouched unless TYPED, INVALID
 *   exactly when a strict yajl parse fails or the text is not UTF-8 as RFC
 *   3629 has it (yajl lets overlong forms and surrogates through) or nests
 *   deeper than WS_JSON_MAX_DEPTH, NOT_OBJECT exactly when the text does
 *   not start with '{', and the type is the first string-valued top-level
 *   member named key (cross-checked with yajl_tree; not where a \u escape
 *   of a surrogate is in the text: the module takes such a key or type for
 *   none).  The incremental typer, fed the same text in pieces cut where
 *   the input says, gives the same answer and type.
 *
 *   ws_json_envelope_head: never 0 for a type ws_json_type returned; the
 *   length does not depend on cap; nothing is written when it does not fit,
 *   exactly len bytes when it does; head + the event + "}" is valid JSON
 *   whose members are, in order, connection_id, user, seq, ts_ms, type and
 *   event, with the values given (user: as given, or its ASCII with '?').
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>
#include <yajl/yajl_tree.h>

#include "ngx_ws_agent_json.h"


#define FZ_CANARY  0xa5

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void fz_type(const unsigned char *ev, size_t ev_len,
    const unsigned char *key, size_t key_len, size_t cap,
    ws_json_result_e *res, unsigned char *type, size_t *type_len);
static void fz_envelope(const unsigned char *ev, size_t ev_len,
    const unsigned char *user, size_t user_len, const unsigned char *type,
    size_t type_len, unsigned long long seq, unsigned long long ts);
static int fz_yajl_valid(const unsigned char *p, size_t len, size_t *end);
static int fz_strict_valid(const unsigned char *p, size_t len);
static int fz_utf8(const unsigned char *p, size_t len);
static int fz_found(void *data, const unsigned char *type, size_t len);

static int  fz_found_calls;
static size_t fz_depth(const unsigned char *p, size_t len);
static int fz_surrogate_escape(const unsigned char *p, size_t len);
static void fz_pieces(const unsigned char *ev, size_t ev_len,
    const unsigned char *key, size_t key_len, size_t cap,
    ws_json_result_e res, const unsigned char *type, size_t type_len);
static yajl_val fz_tree(const unsigned char *p, size_t len);
static int fz_tree_safe(const unsigned char *p, size_t len);
static int fz_str_eq(yajl_val v, const unsigned char *p, size_t len);
static void fz_fail(const char *what);


static const size_t  fz_caps[8] = { 0, 1, 5, 15, 16, 32, 64, 255 };

static const struct {
    const char  *key;
    size_t       len;
} fz_keys[4] = {
    { "type", 4 }, { "kind", 4 }, { "", 0 }, { "t\xc3\xa9", 3 }
};


int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t                cap, ev_len, user_len, type_len, i;
    unsigned char         type[256];
    unsigned long long    seq, ts;
    ws_json_result_e      res;
    const unsigned char  *ev, *user, *sep, *key;

    if (size == 0) {
        return 0;
    }

    cap = fz_caps[data[0] & 7];
    key = (const unsigned char *) fz_keys[(data[0] >> 3) & 3].key;

    ev = data + 1;
    ev_len = size - 1;
    sep = memchr(ev, 0x01, ev_len);

    if (sep) {
        user = sep + 1;
        user_len = ev + ev_len - user;
        ev_len = sep - ev;

    } else {
        user = (const unsigned char *) "42";
        user_len = 2;
    }

    fz_type(ev, ev_len, key, fz_keys[(data[0] >> 3) & 3].len, cap, &res,
            type, &type_len);

    if (res != WS_JSON_TYPED) {
        memcpy(type, "agent_started", 13);
        type_len = 13;
    }

    /* seq and ts from the event's bytes, so the fuzzer can steer them */
    seq = 1;
    ts = 1757373217123ULL;

    for (i = 0; i < ev_len && i < 8; i++) {
        seq = seq * 131 + ev[i];
        ts ^= (unsigned long long) ev[ev_len - 1 - i] << (8 * i);
    }

    if (data[0] & 0x20) {
        seq = ~0ULL;
    }

    fz_envelope(ev, ev_len, user, user_len, type, type_len, seq, ts);

    return 0;
}


static void
fz_type(const unsigned char *ev, size_t ev_len, const unsigned char *key,
    size_t key_len, size_t cap, ws_json_result_e *res, unsigned char *type,
    size_t *type_len)
{
    int             valid;
    size_t          len, i, vlen;
    yajl_val        tree, v, found;
    unsigned char  *exact, big[300];

    /* an exact-size buffer: ASan sees any write past cap */
    exact = malloc(cap ? cap : 1);
    if (exact == NULL) {
        abort();
    }

    len = cap;
    *res = ws_json_type(ev, ev_len, key, key_len, exact, &len);

    if (*res > WS_JSON_INVALID) {
        fz_fail("ws_json_type: result out of range");
    }

    if (*res == WS_JSON_TYPED) {
        if (len > cap) {
            fz_fail("ws_json_type: type longer than the capacity");
        }

        memcpy(type, exact, len);
        *type_len = len;

    } else if (len != cap) {
        fz_fail("ws_json_type: *type_len changed without a type");
    }

    free(exact);

    /* the same call with a canary after cap */
    memset(big, FZ_CANARY, sizeof(big));
    len = cap;

    if (ws_json_type(ev, ev_len, key, key_len, big, &len) != *res
        || (*res == WS_JSON_TYPED
            && (len != *type_len || memcmp(big, type, len) != 0)))
    {
        fz_fail("ws_json_type: not deterministic");
    }

    for (i = cap; i < sizeof(big); i++) {
        if (big[i] != FZ_CANARY) {
            fz_fail("ws_json_type: wrote past the capacity");
        }
    }

    fz_pieces(ev, ev_len, key, key_len, cap, *res, type, *type_len);

    valid = fz_strict_valid(ev, ev_len);


    if (valid != (*res != WS_JSON_INVALID)) {
        fz_fail("ws_json_type: not INVALID for text that is not JSON");
    }

    if (!valid) {
        return;
    }

    /* yajl's whitespace includes \v and \f (strict JSON's does not) */
    for (i = 0; i < ev_len && strchr(" \t\n\v\f\r", ev[i]) && ev[i]; i++) {
        /* void */
    }

    if ((*res == WS_JSON_NOT_OBJECT) != (i == ev_len || ev[i] != '{')) {
        fz_fail("ws_json_type: NOT_OBJECT disagrees with the first byte");
    }

    if (*res == WS_JSON_NOT_OBJECT || !fz_tree_safe(ev, ev_len)
        || fz_surrogate_escape(ev, ev_len) || memchr(key, '\0', key_len))
    {
        return;
    }

    tree = fz_tree(ev, ev_len);
    if (tree == NULL || !YAJL_IS_OBJECT(tree)) {
        fz_fail("yajl_tree disagrees with the strict parse");
    }

    /* the first string-valued member named key */
    found = NULL;

    for (i = 0; i < tree->u.object.len; i++) {
        v = tree->u.object.values[i];

        if (strlen(tree->u.object.keys[i]) == key_len
            && memcmp(tree->u.object.keys[i], key, key_len) == 0
            && YAJL_IS_STRING(v))
        {
            found = v;
            break;
        }
    }

    if (found == NULL) {
        if (*res != WS_JSON_UNTYPED) {
            fz_fail("ws_json_type: TYPED without a member named key");
        }

    } else {
        vlen = strlen(found->u.string);

        if (vlen > cap) {
            if (*res != WS_JSON_UNTYPED) {
                fz_fail("ws_json_type: a type over cap is not UNTYPED");
            }

        } else if (*res != WS_JSON_TYPED || !fz_str_eq(found, type, *type_len))
        {
            fz_fail("ws_json_type: type differs from yajl_tree's");
        }
    }

    yajl_tree_free(tree);
}


static void
fz_envelope(const unsigned char *ev, size_t ev_len, const unsigned char *user,
    size_t user_len, const unsigned char *type, size_t type_len,
    unsigned long long seq, unsigned long long ts)
{
    int              ev_ok;
    char             num[24];
    size_t           len, n, i, id_len;
    yajl_val         tree, v;
    unsigned char    id[64], *exact, *big, *safe, *msg;
    static const char  *names[6] = {
        "connection_id", "user", "seq", "ts_ms", "type", "event"
    };

    /* the module's id: ws_<safe user prefix>_<time>_<hex> */
    id_len = (size_t) snprintf((char *) id, sizeof(id), "ws_%.8s_%llu_%08x",
                               user_len && user[0] >= 'a' && user[0] <= 'z'
                               ? "u" : "10146348",
                               ts / 1000, (unsigned) (seq & 0xffffffff));

    len = ws_json_envelope_head(NULL, 0, id, id_len, user, user_len, seq, ts,
                                type, type_len);

    if (len == 0) {
        fz_fail("envelope: 0 for an id, user and type the module can have");
    }

    /* one byte short: the same length, nothing written */
    big = malloc(len + 64);
    if (big == NULL) {
        abort();
    }

    memset(big, FZ_CANARY, len + 64);

    if (ws_json_envelope_head(big, len - 1, id, id_len, user, user_len, seq,
                              ts, type, type_len)
        != len)
    {
        fz_fail("envelope: length depends on cap");
    }

    for (i = 0; i < len + 64; i++) {
        if (big[i] != FZ_CANARY) {
            fz_fail("envelope: wrote although it did not fit");
        }
    }

    /* room to spare: exactly len bytes written */
    if (ws_json_envelope_head(big, len + 64, id, id_len, user, user_len, seq,
                              ts, type, type_len)
        != len)
    {
        fz_fail("envelope: length depends on cap");
    }

    for (i = len; i < len + 64; i++) {
        if (big[i] != FZ_CANARY) {
            fz_fail("envelope: wrote past its length");
        }
    }

    /* exact room, exact heap buffer */
    exact = malloc(len);
    if (exact == NULL) {
        abort();
    }

    if (ws_json_envelope_head(exact, len, id, id_len, user, user_len, seq, ts,
                              type, type_len)
        != len
        || memcmp(exact, big, len) != 0)
    {
        fz_fail("envelope: exact room gives another head");
    }

    free(big);

    ev_ok = fz_strict_valid(ev, ev_len);

    /* what the publisher sends: head, the event verbatim, "}" */
    n = len + (ev_ok ? ev_len : 2) + 1;
    msg = malloc(n);
    if (msg == NULL) {
        abort();
    }

    memcpy(msg, exact, len);
    memcpy(msg + len, ev_ok ? ev : (const unsigned char *) "{}",
           ev_ok ? ev_len : 2);
    msg[n - 1] = '}';
    free(exact);

    if (!fz_strict_valid(msg, n)) {
        fz_fail("envelope: head + event + \"}\" is not valid JSON");
    }

    if (!fz_tree_safe(msg, n)) {
        free(msg);
        return;
    }

    tree = fz_tree(msg, n);
    if (tree == NULL || !YAJL_IS_OBJECT(tree) || tree->u.object.len != 6) {
        fz_fail("envelope: not an object of 6 members");
    }

    for (i = 0; i < 6; i++) {
        if (strcmp(tree->u.object.keys[i], names[i]) != 0) {
            fz_fail("envelope: members out of order");
        }
    }

    v = tree->u.object.values[0];
    if (!fz_str_eq(v, id, id_len)) {
        fz_fail("envelope: connection_id differs");
    }

    v = tree->u.object.values[1];
    if (!fz_str_eq(v, user, user_len)) {
        safe = malloc(user_len ? user_len : 1);
        if (safe == NULL) {
            abort();
        }

        for (i = 0; i < user_len; i++) {
            safe[i] = user[i] < 0x80 ? user[i] : '?';
        }

        if (!fz_str_eq(v, safe, user_len)) {
            fz_fail("envelope: user is neither as given nor its ASCII");
        }

        free(safe);
    }

    snprintf(num, sizeof(num), "%llu", seq);
    v = tree->u.object.values[2];
    if (!YAJL_IS_NUMBER(v) || strcmp(v->u.number.r, num) != 0) {
        fz_fail("envelope: seq differs");
    }

    snprintf(num, sizeof(num), "%llu", ts);
    v = tree->u.object.values[3];
    if (!YAJL_IS_NUMBER(v) || strcmp(v->u.number.r, num) != 0) {
        fz_fail("envelope: ts_ms differs");
    }

    v = tree->u.object.values[4];
    if (!fz_str_eq(v, type, type_len)) {
        fz_fail("envelope: type does not round-trip");
    }

    yajl_tree_free(tree);
    free(msg);
}


/*
 * Valid JSON text, strictly: yajl's defaults (no comments) and nothing but
 * whitespace after the top-level value.  yajl alone accepts an unterminated
 * string after it ('{"a":1} "x'): its end-of-input flush leaves the lexer
 * waiting for the closing quote and reports success.
 */

typedef struct {
    yajl_handle  h;
    unsigned     depth;
    unsigned     flush;
    size_t       end;
} fz_end_t;


static int
fz_tok(void *ctx)
{
    fz_end_t  *e = ctx;

    if (e->depth == 0) {
        /* in the end-of-input flush the offset is into yajl's own " " */
        e->end = e->flush ? (size_t) -1 : yajl_get_bytes_consumed(e->h);
    }

    return 1;
}

static int fz_null(void *c) { return fz_tok(c); }
static int fz_bool(void *c, int v) { (void) v; return fz_tok(c); }
static int fz_num(void *c, const char *v, size_t l)
    { (void) v; (void) l; return fz_tok(c); }
static int fz_str(void *c, const unsigned char *v, size_t l)
    { (void) v; (void) l; return fz_tok(c); }
static int fz_key(void *c, const unsigned char *v, size_t l)
    { (void) c; (void) v; (void) l; return 1; }
static int fz_open(void *c) { ((fz_end_t *) c)->depth++; return 1; }
static int fz_close(void *c) { ((fz_end_t *) c)->depth--; return fz_tok(c); }

static const yajl_callbacks  fz_end_callbacks = {
    fz_null, fz_bool, NULL, NULL, fz_num, fz_str, fz_open, fz_key, fz_close,
    fz_open, fz_close
};


static int
fz_yajl_valid(const unsigned char *p, size_t len, size_t *end)
{
    int          ok;
    fz_end_t     e;
    yajl_handle  h;

    memset(&e, 0, sizeof(fz_end_t));

    h = yajl_alloc(&fz_end_callbacks, NULL, &e);
    if (h == NULL) {
        abort();
    }

    e.h = h;
    ok = yajl_parse(h, p, len) == yajl_status_ok;
    e.flush = 1;
    ok = ok && yajl_complete_parse(h) == yajl_status_ok;

    yajl_free(h);

    /* a top-level number ends in the flush: it took the whole input */
    *end = e.end > len ? len : e.end;

    return ok;
}


static int
fz_strict_valid(const unsigned char *p, size_t len)
{
    size_t  end;

    /* JSON's white space is space, tab, LF, CR; yajl also takes \v, \f */
    if (memchr(p, '\v', len) != NULL || memchr(p, '\f', len) != NULL) {
        return 0;
    }

    if (!fz_utf8(p, len) || fz_depth(p, len) > WS_JSON_MAX_DEPTH
        || !fz_yajl_valid(p, len, &end))
    {
        return 0;
    }

    for ( /* void */ ; end < len; end++) {
        if (!strchr(" \t\n\r", p[end]) || p[end] == '\0') {
            return 0;
        }
    }

    return 1;
}


static yajl_val
fz_tree(const unsigned char *p, size_t len)
{
    char      *s, err[128];
    yajl_val   v;

    s = malloc(len + 1);
    if (s == NULL) {
        abort();
    }

    memcpy(s, p, len);
    s[len] = '\0';
    v = yajl_tree_parse(s, err, sizeof(err));
    free(s);

    return v;
}


/*
 * yajl_tree wants a C string, keeps strings NUL-terminated and allows
 * comments: compare with it only where that cannot matter.
 */

static int
fz_tree_safe(const unsigned char *p, size_t len)
{
    size_t  i;

    if (memchr(p, '\0', len) || memchr(p, '/', len)) {
        return 0;
    }

    for (i = 0; i + 5 < len; i++) {
        if (p[i] == '\\' && p[i + 1] == 'u' && memcmp(p + i + 2, "0000", 4)
                                                == 0)
        {
            return 0;
        }
    }

    return 1;
}


/* the typer fed in pieces: the same answer as in one piece */

static void
fz_pieces(const unsigned char *ev, size_t ev_len, const unsigned char *key,
    size_t key_len, size_t cap, ws_json_result_e res,
    const unsigned char *type, size_t type_len)
{
    size_t            pos, n, len;
    unsigned          seed;
    unsigned char     got[256];
    ws_json_typer_t   t;
    ws_json_result_e  rc;

    seed = 2166136261u;

    for (pos = 0; pos < ev_len; pos++) {
        seed = (seed ^ ev[pos]) * 16777619u;
    }

    ws_json_typer_init(&t, key, key_len, got, cap, NULL, NULL);

    rc = WS_JSON_MORE;
    pos = 0;

    while (pos < ev_len && rc == WS_JSON_MORE) {
        seed = seed * 1103515245u + 12345u;
        n = 1 + (seed >> 16) % 7;
        n = n > ev_len - pos ? ev_len - pos : n;

        rc = ws_json_typer_feed(&t, ev + pos, n);
        pos += n;
    }

    len = cap;

    if (rc == WS_JSON_MORE) {
        rc = ws_json_typer_finish(&t, &len);
    }

    if (rc != res
        || (rc == WS_JSON_TYPED
            && (len != type_len || memcmp(got, type, len) != 0)))
    {
        fz_fail("typer in pieces: another answer than in one piece");
    }

    /* with a callback (as the module uses it), it may stop early */
    fz_found_calls = 0;
    ws_json_typer_init(&t, key, key_len, got, cap, fz_found, &fz_found_calls);

    rc = ws_json_typer_feed(&t, ev, ev_len);

    if (rc == WS_JSON_MORE) {
        len = cap;
        rc = ws_json_typer_finish(&t, &len);
    }

    if (!(rc == res
          || (res == WS_JSON_INVALID && rc == WS_JSON_NOT_OBJECT))
        || fz_found_calls > 1
        || (res == WS_JSON_TYPED && fz_found_calls != 1)
        || (res == WS_JSON_UNTYPED && fz_found_calls != 0))
    {
        /* (invalid text may have shown a type before its error) */
        fz_fail("typer with a callback: another answer, or not called "
                "exactly once for a type");
    }
}


static int
fz_found(void *data, const unsigned char *type, size_t len)
{
    (void) type;
    (void) len;

    (*(int *) data)++;

    return 1;
}


/* RFC 3629 */

static int
fz_utf8(const unsigned char *p, size_t len)
{
    size_t         i, k, need;
    unsigned char  lo, hi;

    for (i = 0; i < len; i++) {
        if (p[i] < 0x80) {
            continue;
        }

        lo = 0x80;
        hi = 0xbf;

        if (p[i] >= 0xc2 && p[i] <= 0xdf) {
            need = 1;

        } else if (p[i] >= 0xe0 && p[i] <= 0xef) {
            need = 2;
            lo = p[i] == 0xe0 ? 0xa0 : 0x80;
            hi = p[i] == 0xed ? 0x9f : 0xbf;

        } else if (p[i] >= 0xf0 && p[i] <= 0xf4) {
            need = 3;
            lo = p[i] == 0xf0 ? 0x90 : 0x80;
            hi = p[i] == 0xf4 ? 0x8f : 0xbf;

        } else {
            return 0;
        }

        for (k = 1; k <= need; k++) {
            if (i + k >= len || p[i + k] < lo || p[i + k] > hi) {
                return 0;
            }

            lo = 0x80;
            hi = 0xbf;
        }

        i += need;
    }

    return 1;
}


/* the deepest nesting outside strings */

static size_t
fz_depth(const unsigned char *p, size_t len)
{
    int     in_str, esc;
    size_t  i, d, max;

    in_str = 0;
    esc = 0;
    d = 0;
    max = 0;

    for (i = 0; i < len; i++) {
        if (in_str) {
            if (esc) {
                esc = 0;

            } else if (p[i] == '\\') {
                esc = 1;

            } else if (p[i] == '"') {
                in_str = 0;
            }

        } else if (p[i] == '"') {
            in_str = 1;

        } else if (p[i] == '{' || p[i] == '[') {
            if (++d > max) {
                max = d;
            }

        } else if ((p[i] == '}' || p[i] == ']') && d > 0) {
            d--;
        }
    }

    return max;
}


static int
fz_surrogate_escape(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 0; i + 3 < len; i++) {
        if (p[i] == '\\' && p[i + 1] == 'u' && (p[i + 2] | 0x20) == 'd'
            && strchr("89abcdefABCDEF", p[i + 3]) && p[i + 3])
        {
            return 1;
        }
    }

    return 0;
}


static int
fz_str_eq(yajl_val v, const unsigned char *p, size_t len)
{
    return YAJL_IS_STRING(v) && strlen(v->u.string) == len
           && memcmp(v->u.string, p, len) == 0;
}


static void
fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_json: %s\n", what);
    abort();
}
