/*
 * JSON as the module sees it: the type of a message (the readiness ack, the
 * agent events).  Pure C over yajl, no nginx types, so the fuzzers link it
 * alone.
 */

#ifndef _NGX_WS_AGENT_JSON_H_INCLUDED_
#define _NGX_WS_AGENT_JSON_H_INCLUDED_


#include <stddef.h>


typedef enum {
    WS_JSON_TYPED = 0,      /* an object with a string member named key */
    WS_JSON_UNTYPED,        /* an object without one */
    WS_JSON_NOT_OBJECT,     /* valid JSON, not an object */
    WS_JSON_INVALID         /* not JSON */
} ws_json_result_e;


/*
 * Reads the top-level member key of the JSON text data; on WS_JSON_TYPED
 * its string value is copied to type (*type_len in: capacity, out: length;
 * a longer value is reported as WS_JSON_UNTYPED).
 */
ws_json_result_e ws_json_type(const unsigned char *data, size_t len,
    const unsigned char *key, size_t key_len, unsigned char *type,
    size_t *type_len);


/*
 * The head of a published envelope, generated with yajl:
 *   {"connection_id":ID,"user":USER,"seq":SEQ,"ts_ms":TS,"type":TYPE,"event":
 * the caller appends the event's own JSON text and "}".  Bytes of user that
 * are not UTF-8 become '?', so the envelope is valid JSON whatever the
 * user string holds.  Returns the head's length, written to out when it
 * fits in cap (call again with more room otherwise); 0 on failure.
 */
size_t ws_json_envelope_head(unsigned char *out, size_t cap,
    const unsigned char *id, size_t id_len, const unsigned char *user,
    size_t user_len, unsigned long long seq, unsigned long long ts_ms,
    const unsigned char *type, size_t type_len);


#endif /* _NGX_WS_AGENT_JSON_H_INCLUDED_ */
