/*
 * Request header helpers (see ngx_ws_agent_headers.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_ws_agent_headers.h"


ngx_table_elt_t *
ngx_ws_agent_find_header(ngx_list_t *headers, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &headers->part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0 && h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * proxy_pass sends every header of the list, so taking one out means a
 * new list without it; the old elements stay valid for r->headers_in.
 */

ngx_int_t
ngx_ws_agent_remove_header(ngx_http_request_t *r, ngx_table_elt_t *victim)
{
    ngx_uint_t        i;
    ngx_list_t        headers;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    if (ngx_list_init(&headers, r->pool, 20, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (&h[i] == victim) {
            continue;
        }

        nh = ngx_list_push(&headers);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
    }

    r->headers_in.headers = headers;

    return NGX_OK;
}


/*
 * Only a WebSocket is gated: another protocol upgraded through the same
 * location (Upgrade: foo) is relayed by nginx untouched.  The header is a
 * list of protocols; "websocket" must be one of them.
 */

ngx_uint_t
ngx_ws_agent_upgrade_is_websocket(ngx_http_request_t *r)
{
    u_char           *p, *last, *start;
    ngx_table_elt_t  *h;

    h = r->main->headers_in.upgrade;

    if (h == NULL) {
        return 0;
    }

    p = h->value.data;
    last = p + h->value.len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if (p - start == sizeof("websocket") - 1
            && ngx_strncasecmp(start, (u_char *) "websocket",
                               sizeof("websocket") - 1) == 0)
        {
            return 1;
        }

        /* a version ("websocket/13") or anything else: not this token */
        while (p < last && *p != ',') {
            p++;
        }
    }

    return 0;
}
