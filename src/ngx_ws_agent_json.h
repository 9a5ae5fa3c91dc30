/*
 * JSON as the module sees it: the type of a message (the readiness ack, the
 * agent events) and the published envelope.  Pure C, no nginx types, so the
 * fuzzers link it alone; the envelope is generated with yajl.
 */

#ifndef _NGX_WS_AGENT_JSON_H_INCLUDED_
#define _NGX_WS_AGENT_JSON_H_INCLUDED_


#include <stddef.h>


/*
 * Linked into a .so that nginx loads with RTLD_GLOBAL: these unprefixed
 * names stay inside the module.
 */
#if defined(__GNUC__)
#pragma GCC visibility push(hidden)
#endif


typedef enum {
    WS_JSON_TYPED = 0,      /* an object with a string member named key */
    WS_JSON_UNTYPED,        /* an object without one */
    WS_JSON_NOT_OBJECT,     /* valid JSON, not an object */
    WS_JSON_INVALID,        /* not JSON */
    WS_JSON_MORE,           /* (typer) nothing decided yet: feed on */
    WS_JSON_DROPPED         /* (typer) the caller lost interest */
} ws_json_result_e;


/*
 * Called once, as soon as the type is known (possibly long before the end
 * of the message); returning 0 stops the parse: the caller does not care
 * about the rest of this message.
 */
typedef int (*ws_json_type_pt)(void *data, const unsigned char *type,
    size_t len);


/*
 * An incremental typer for one message: feed it the text in pieces as they
 * arrive (fragments, TCP reads), nothing needs to be copied to learn the
 * type.  A scanner of its own (RFC 8259, UTF-8 as RFC 3629 has it: no
 * overlong forms, no surrogates), one pass, no allocation; nesting deeper
 * than WS_JSON_MAX_DEPTH is taken for not JSON.  The members are private.
 */

#define WS_JSON_MAX_DEPTH  128

typedef struct {
    const unsigned char  *key;
    size_t                key_len;
    unsigned char        *type;
    size_t                type_cap;
    size_t                type_len;
    ws_json_type_pt       found;
    void                 *data;
    unsigned long long    stack[WS_JSON_MAX_DEPTH / 64]; /* 1: an object */
    size_t                key_pos;      /* key bytes matched so far */
    unsigned              depth;        /* containers open */
    unsigned              codepoint;    /* of a \u escape */
    unsigned char         state;
    unsigned char         decode;       /* this string's bytes matter */
    unsigned char         in_key;
    unsigned char         count;        /* \u digits, literal bytes */
    unsigned char         literal;      /* true, false, null */
    unsigned char         utf8_need;    /* continuation bytes to come */
    unsigned char         utf8_lo;      /* the next one's range */
    unsigned char         utf8_hi;
    unsigned              key_cmp:1;    /* a top-level key still matching */
    unsigned              key_match:1;  /* the last top-level key was key */
    unsigned              capture:1;    /* this string is the type */
    unsigned              started:1;
    unsigned              object:1;
    unsigned              typed:1;
    unsigned              too_long:1;
} ws_json_typer_t;


/*
 * How many bytes from p on stand for themselves inside a JSON string
 * (printable ASCII but '"' and '\\'): a run to copy or skip without a look.
 */
size_t ws_json_plain(const unsigned char *p, const unsigned char *last);


/* found may be NULL; the typer holds no resources: nothing to free */
void ws_json_typer_init(ws_json_typer_t *t, const unsigned char *key,
    size_t key_len, unsigned char *type, size_t type_cap,
    ws_json_type_pt found, void *data);

/*
 * WS_JSON_MORE, or a final answer reached early: WS_JSON_DROPPED (the
 * callback said so), WS_JSON_NOT_OBJECT, WS_JSON_INVALID.
 */
ws_json_result_e ws_json_typer_feed(ws_json_typer_t *t,
    const unsigned char *data, size_t len);

/* the end of the message: TYPED (type, *type_len), UNTYPED, ... */
ws_json_result_e ws_json_typer_finish(ws_json_typer_t *t, size_t *type_len);


/*
 * One-shot typing of a whole message: the top-level member key; on
 * WS_JSON_TYPED its string value is copied to type (*type_len in: capacity,
 * out: length; a longer value is reported as WS_JSON_UNTYPED).
 */
ws_json_result_e ws_json_type(const unsigned char *data, size_t len,
    const unsigned char *key, size_t key_len, unsigned char *type,
    size_t *type_len);


/*
 * The part of an envelope that is the same for a whole connection,
 * generated with yajl:  {"connection_id":ID,"user":USER,
 * Bytes of user that are not UTF-8 become '?', so the envelope is valid
 * JSON whatever the user string holds.  Returns the length, written to out
 * when it fits in cap (call again with more room otherwise); 0 on failure.
 */
size_t ws_json_envelope_prefix(unsigned char *out, size_t cap,
    const unsigned char *id, size_t id_len, const unsigned char *user,
    size_t user_len);

/*
 * A whole envelope head, for tests and fuzzers:
 *   {"connection_id":ID,"user":USER,"seq":SEQ,"ts_ms":TS,"type":TYPE,"event":
 * the caller appends the event's own JSON text and "}".  Same return
 * convention as ws_json_envelope_prefix().
 */
size_t ws_json_envelope_head(unsigned char *out, size_t cap,
    const unsigned char *id, size_t id_len, const unsigned char *user,
    size_t user_len, unsigned long long seq, unsigned long long ts_ms,
    const unsigned char *type, size_t type_len);


#if defined(__GNUC__)
#pragma GCC visibility pop
#endif


#endif /* _NGX_WS_AGENT_JSON_H_INCLUDED_ */
