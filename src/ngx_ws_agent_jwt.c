/*
 * Verified identity (see ngx_ws_agent_jwt.h).
 *
 * A token is looked for in ws_agent_jwt_token if set, else in
 * "Authorization: Bearer", then "?token=", then a Sec-WebSocket-Protocol
 * entry starting with ws_agent_jwt_protocol_prefix (that entry is then not
 * forwarded upstream, and answers the 101 if the backend selects no
 * subprotocol).  The header and claims are parsed with yajl's tree parser;
 * the signature is checked with OpenSSL's EVP interface.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <yajl/yajl_tree.h>

#include "ngx_ws_agent_headers.h"
#include "ngx_ws_agent_jwt.h"


#define NGX_WS_AGENT_JWT_HMAC   1
#define NGX_WS_AGENT_JWT_RSA    2
#define NGX_WS_AGENT_JWT_EC256  3
#define NGX_WS_AGENT_JWT_EC384  4

#define NGX_WS_AGENT_JWT_MAX    8192


typedef struct {
    ngx_uint_t          kind;
    ngx_str_t           kid;        /* empty: any */
    ngx_str_t           secret;     /* HMAC */
    EVP_PKEY           *pkey;       /* RSA, EC */
} ngx_ws_agent_jwt_key_t;


typedef struct {
    ngx_str_t           name;
    ngx_str_t           value;
} ngx_ws_agent_jwt_claim_t;


typedef struct {
    const char         *name;
    ngx_uint_t          kind;
    const char         *md;
    ngx_uint_t          pss;
} ngx_ws_agent_jwt_alg_t;


static ngx_ws_agent_jwt_alg_t  ngx_ws_agent_jwt_algs[] = {
    { "HS256", NGX_WS_AGENT_JWT_HMAC, "SHA256", 0 },
    { "HS384", NGX_WS_AGENT_JWT_HMAC, "SHA384", 0 },
    { "HS512", NGX_WS_AGENT_JWT_HMAC, "SHA512", 0 },
    { "RS256", NGX_WS_AGENT_JWT_RSA, "SHA256", 0 },
    { "RS384", NGX_WS_AGENT_JWT_RSA, "SHA384", 0 },
    { "RS512", NGX_WS_AGENT_JWT_RSA, "SHA512", 0 },
    { "PS256", NGX_WS_AGENT_JWT_RSA, "SHA256", 1 },
    { "ES256", NGX_WS_AGENT_JWT_EC256, "SHA256", 0 },
    { "ES384", NGX_WS_AGENT_JWT_EC384, "SHA384", 0 },
    { NULL, 0, NULL, 0 }
};


static ngx_int_t ngx_ws_agent_jwt_find(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx, ngx_ws_agent_loc_conf_t *wlcf,
    ngx_str_t *token);
static void ngx_ws_agent_jwt_strip_protocol(ngx_http_request_t *r,
    ngx_table_elt_t *h, u_char *start, u_char *end);
static const char *ngx_ws_agent_jwt_verify(ngx_http_request_t *r,
    ngx_ws_agent_loc_conf_t *wlcf, ngx_str_t *token, yajl_val *claims);
static ngx_int_t ngx_ws_agent_jwt_signature(ngx_ws_agent_jwt_key_t *key,
    ngx_ws_agent_jwt_alg_t *alg, u_char *data, size_t len, u_char *sig,
    size_t siglen);
static const char *ngx_ws_agent_jwt_claims(ngx_ws_agent_loc_conf_t *wlcf,
    yajl_val claims);
static ngx_int_t ngx_ws_agent_jwt_value(ngx_pool_t *pool, yajl_val v,
    ngx_str_t *out);
static yajl_val ngx_ws_agent_jwt_parse(ngx_pool_t *pool, ngx_str_t *b64);
static ngx_int_t ngx_ws_agent_jwt_unauthorized(ngx_http_request_t *r);
static void ngx_ws_agent_jwt_free_claims(void *data);

static char *ngx_ws_agent_jwt_load_pem(ngx_conf_t *cf,
    ngx_ws_agent_jwt_key_t *key, ngx_str_t *text, ngx_str_t *file);
static char *ngx_ws_agent_jwt_load_jwks(ngx_conf_t *cf, ngx_array_t *keys,
    ngx_str_t *text, ngx_str_t *file);
static EVP_PKEY *ngx_ws_agent_jwt_jwk_pkey(ngx_conf_t *cf, yajl_val jwk,
    ngx_uint_t *kind, const char **err);
static ngx_int_t ngx_ws_agent_jwt_b64(ngx_pool_t *pool, const char *in,
    ngx_str_t *out);
static void ngx_ws_agent_jwt_free_pkey(void *data);


/* a yajl string, never NULL */
static ngx_inline const char *
ngx_ws_agent_jwt_s(yajl_val v)
{
    const char  *s = YAJL_GET_STRING(v);

    return s ? s : "";
}


/* configuration: ws_agent_jwt_key hmac|pem|jwks FILE */

char *
ngx_ws_agent_jwt_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    char                    *rv;
    ssize_t                  n;
    ngx_str_t               *value, file, text;
    ngx_file_t               f;
    ngx_file_info_t          fi;
    ngx_ws_agent_jwt_key_t  *key;

    value = cf->args->elts;
    file = value[2];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (wlcf->jwt_keys == NGX_CONF_UNSET_PTR) {
        wlcf->jwt_keys = ngx_array_create(cf->pool, 2,
                                          sizeof(ngx_ws_agent_jwt_key_t));
        if (wlcf->jwt_keys == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ngx_memzero(&f, sizeof(ngx_file_t));
    f.name = file;
    f.log = cf->log;
    f.fd = ngx_open_file(file.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (f.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"ws_agent_jwt_key\" cannot open \"%V\"", &file);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(f.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 1024 * 1024)
    {
        ngx_close_file(f.fd);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt_key\" file \"%V\" is not a "
                           "readable file under 1 MB", &file);
        return NGX_CONF_ERROR;
    }

    text.len = (size_t) ngx_file_size(&fi);
    text.data = ngx_pnalloc(cf->pool, text.len + 1);
    if (text.data == NULL) {
        ngx_close_file(f.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&f, text.data, text.len, 0);
    ngx_close_file(f.fd);

    if (n != (ssize_t) text.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"ws_agent_jwt_key\" cannot read \"%V\"", &file);
        return NGX_CONF_ERROR;
    }

    text.data[text.len] = '\0';

    if (ngx_strcmp(value[1].data, "jwks") == 0) {
        return ngx_ws_agent_jwt_load_jwks(cf, wlcf->jwt_keys, &text, &file);
    }

    key = ngx_array_push(wlcf->jwt_keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(key, sizeof(ngx_ws_agent_jwt_key_t));

    if (ngx_strcmp(value[1].data, "hmac") == 0) {

        /* a secret file usually ends with a newline that is not secret */
        while (text.len
               && (text.data[text.len - 1] == '\n'
                   || text.data[text.len - 1] == '\r'))
        {
            text.len--;
        }

        if (text.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_jwt_key\" secret file \"%V\" is "
                               "empty", &file);
            return NGX_CONF_ERROR;
        }

        if (text.len < 32) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "\"ws_agent_jwt_key\" secret in \"%V\" is "
                               "shorter than 32 bytes", &file);
        }

        key->kind = NGX_WS_AGENT_JWT_HMAC;
        key->secret = text;

        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "pem") == 0) {
        rv = ngx_ws_agent_jwt_load_pem(cf, key, &text, &file);
        return rv;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"ws_agent_jwt_key\" has an unknown key type \"%V\" "
                       "(expected hmac, pem or jwks)", &value[1]);
    return NGX_CONF_ERROR;
}


static char *
ngx_ws_agent_jwt_load_pem(ngx_conf_t *cf, ngx_ws_agent_jwt_key_t *key,
    ngx_str_t *text, ngx_str_t *file)
{
    BIO                 *bio;
    EVP_PKEY            *pkey;
    ngx_pool_cleanup_t  *cln;

    bio = BIO_new_mem_buf(text->data, (int) text->len);
    if (bio == NULL) {
        return NGX_CONF_ERROR;
    }

    pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);

    if (pkey == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt_key\" file \"%V\" is not a PEM "
                           "public key", file);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        EVP_PKEY_free(pkey);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ws_agent_jwt_free_pkey;
    cln->data = pkey;

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) < 2048) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_agent_jwt_key\" RSA key in \"%V\" is "
                               "shorter than 2048 bits", file);
            return NGX_CONF_ERROR;
        }

        key->kind = NGX_WS_AGENT_JWT_RSA;

    } else if (EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_bits(pkey) == 256) {
        key->kind = NGX_WS_AGENT_JWT_EC256;

    } else if (EVP_PKEY_is_a(pkey, "EC") && EVP_PKEY_get_bits(pkey) == 384) {
        key->kind = NGX_WS_AGENT_JWT_EC384;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt_key\" file \"%V\" holds a key "
                           "that is neither RSA nor EC P-256/P-384", file);
        return NGX_CONF_ERROR;
    }

    key->pkey = pkey;

    return NGX_CONF_OK;
}


static char *
ngx_ws_agent_jwt_load_jwks(ngx_conf_t *cf, ngx_array_t *keys,
    ngx_str_t *text, ngx_str_t *file)
{
    char                    errbuf[128];
    size_t                  i;
    yajl_val                doc, list, jwk, v;
    ngx_uint_t              kind, loaded;
    const char             *err, *path[] = { "keys", NULL };
    const char             *kidp[] = { "kid", NULL };
    const char             *ktyp[] = { "kty", NULL };
    const char             *kp[] = { "k", NULL };
    ngx_pool_cleanup_t     *cln;
    ngx_ws_agent_jwt_key_t *key;

    doc = yajl_tree_parse((const char *) text->data, errbuf, sizeof(errbuf));

    if (doc == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt_key\" JWKS file \"%V\" is not "
                           "JSON", file);
        return NGX_CONF_ERROR;
    }

    list = yajl_tree_get(doc, path, yajl_t_array);

    if (list == NULL) {
        yajl_tree_free(doc);
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt_key\" JWKS file \"%V\" has no "
                           "\"keys\" array", file);
        return NGX_CONF_ERROR;
    }

    loaded = 0;
    kind = 0;

    for (i = 0; i < YAJL_GET_ARRAY(list)->len; i++) {
        jwk = YAJL_GET_ARRAY(list)->values[i];

        key = ngx_array_push(keys);
        if (key == NULL) {
            yajl_tree_free(doc);
            return NGX_CONF_ERROR;
        }

        ngx_memzero(key, sizeof(ngx_ws_agent_jwt_key_t));

        v = yajl_tree_get(jwk, kidp, yajl_t_string);

        if (v) {
            key->kid.len = ngx_strlen(ngx_ws_agent_jwt_s(v));
            key->kid.data = ngx_pstrdup(cf->pool, &(ngx_str_t) {
                                          key->kid.len,
                                          (u_char *) ngx_ws_agent_jwt_s(v) });
            if (key->kid.data == NULL) {
                yajl_tree_free(doc);
                return NGX_CONF_ERROR;
            }
        }

        v = yajl_tree_get(jwk, ktyp, yajl_t_string);

        if (v && ngx_strcmp(ngx_ws_agent_jwt_s(v), "oct") == 0) {
            v = yajl_tree_get(jwk, kp, yajl_t_string);

            if (v == NULL
                || ngx_ws_agent_jwt_b64(cf->pool, YAJL_GET_STRING(v),
                                        &key->secret)
                   != NGX_OK
                || key->secret.len == 0)
            {
                err = "an \"oct\" key without a valid \"k\"";
                goto failed;
            }

            key->kind = NGX_WS_AGENT_JWT_HMAC;
            loaded++;
            continue;
        }

        err = NULL;
        key->pkey = ngx_ws_agent_jwt_jwk_pkey(cf, jwk, &kind, &err);

        if (key->pkey == NULL) {
            goto failed;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            EVP_PKEY_free(key->pkey);
            yajl_tree_free(doc);
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_ws_agent_jwt_free_pkey;
        cln->data = key->pkey;
        key->kind = kind;
        loaded++;
    }

    yajl_tree_free(doc);

    if (loaded == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_agent_jwt_key\" JWKS file \"%V\" holds no "
                           "key", file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

failed:

    yajl_tree_free(doc);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"ws_agent_jwt_key\" JWKS file \"%V\", key %uz: %s",
                       file, i, err ? err : "unusable key");

    return NGX_CONF_ERROR;
}


/* an RSA or EC public key from its JWK members, via OpenSSL 3's params */

static EVP_PKEY *
ngx_ws_agent_jwt_jwk_pkey(ngx_conf_t *cf, yajl_val jwk, ngx_uint_t *kind,
    const char **err)
{
    u_char          *pub;
    BIGNUM          *n, *e;
    yajl_val         v, x, y;
    EVP_PKEY        *pkey;
    ngx_str_t        bn, be, bx, by;
    OSSL_PARAM      *params;
    EVP_PKEY_CTX    *pctx;
    OSSL_PARAM_BLD  *bld;
    const char      *group, *type;
    const char      *ktyp[] = { "kty", NULL }, *np[] = { "n", NULL };
    const char      *ep[] = { "e", NULL }, *crvp[] = { "crv", NULL };
    const char      *xp[] = { "x", NULL }, *yp[] = { "y", NULL };

    pkey = NULL;
    params = NULL;
    pctx = NULL;
    n = NULL;
    e = NULL;

    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL) {
        return NULL;
    }

    v = yajl_tree_get(jwk, ktyp, yajl_t_string);

    if (v && ngx_strcmp(ngx_ws_agent_jwt_s(v), "RSA") == 0) {
        type = "RSA";

        v = yajl_tree_get(jwk, np, yajl_t_string);
        x = yajl_tree_get(jwk, ep, yajl_t_string);

        if (v == NULL || x == NULL
            || ngx_ws_agent_jwt_b64(cf->pool, YAJL_GET_STRING(v), &bn)
               != NGX_OK
            || ngx_ws_agent_jwt_b64(cf->pool, YAJL_GET_STRING(x), &be)
               != NGX_OK)
        {
            *err = "an \"RSA\" key without valid \"n\" and \"e\"";
            goto done;
        }

        if (bn.len < 256) {
            *err = "an RSA key shorter than 2048 bits";
            goto done;
        }

        n = BN_bin2bn(bn.data, (int) bn.len, NULL);
        e = BN_bin2bn(be.data, (int) be.len, NULL);

        if (n == NULL || e == NULL
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n)
            || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        {
            goto done;
        }

        *kind = NGX_WS_AGENT_JWT_RSA;

    } else if (v && ngx_strcmp(ngx_ws_agent_jwt_s(v), "EC") == 0) {
        type = "EC";

        v = yajl_tree_get(jwk, crvp, yajl_t_string);
        x = yajl_tree_get(jwk, xp, yajl_t_string);
        y = yajl_tree_get(jwk, yp, yajl_t_string);

        if (v && ngx_strcmp(ngx_ws_agent_jwt_s(v), "P-256") == 0) {
            group = "prime256v1";
            *kind = NGX_WS_AGENT_JWT_EC256;

        } else if (v && ngx_strcmp(ngx_ws_agent_jwt_s(v), "P-384") == 0) {
            group = "secp384r1";
            *kind = NGX_WS_AGENT_JWT_EC384;

        } else {
            *err = "an \"EC\" key whose \"crv\" is not P-256 or P-384";
            goto done;
        }

        if (x == NULL || y == NULL
            || ngx_ws_agent_jwt_b64(cf->pool, YAJL_GET_STRING(x), &bx)
               != NGX_OK
            || ngx_ws_agent_jwt_b64(cf->pool, YAJL_GET_STRING(y), &by)
               != NGX_OK
            || bx.len != by.len || bx.len == 0)
        {
            *err = "an \"EC\" key without valid \"x\" and \"y\"";
            goto done;
        }

        /* the uncompressed point: 0x04 || x || y */
        pub = ngx_pnalloc(cf->pool, 1 + bx.len + by.len);
        if (pub == NULL) {
            goto done;
        }

        pub[0] = 0x04;
        ngx_memcpy(pub + 1, bx.data, bx.len);
        ngx_memcpy(pub + 1 + bx.len, by.data, by.len);

        if (!OSSL_PARAM_BLD_push_utf8_string(bld,
                                             OSSL_PKEY_PARAM_GROUP_NAME,
                                             group, 0)
            || !OSSL_PARAM_BLD_push_octet_string(bld,
                                                 OSSL_PKEY_PARAM_PUB_KEY,
                                                 pub, 1 + bx.len + by.len))
        {
            goto done;
        }

    } else {
        *err = "a key whose \"kty\" is not RSA, EC or oct";
        goto done;
    }

    params = OSSL_PARAM_BLD_to_param(bld);
    pctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || pctx == NULL
        || EVP_PKEY_fromdata_init(pctx) <= 0
        || EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
    {
        *err = "a key OpenSSL does not accept";
        pkey = NULL;
    }

done:

    EVP_PKEY_CTX_free(pctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    return pkey;
}


/* ws_agent_jwt_claim NAME VALUE */

char *
ngx_ws_agent_jwt_claim(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_ws_agent_loc_conf_t *wlcf = conf;

    ngx_str_t                 *value;
    ngx_ws_agent_jwt_claim_t  *claim;

    if (wlcf->jwt_claims == NGX_CONF_UNSET_PTR) {
        wlcf->jwt_claims = ngx_array_create(cf->pool, 2,
                                            sizeof(ngx_ws_agent_jwt_claim_t));
        if (wlcf->jwt_claims == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a claim name, not an empty string";
    }

    claim = ngx_array_push(wlcf->jwt_claims);
    if (claim == NULL) {
        return NGX_CONF_ERROR;
    }

    claim->name = value[1];
    claim->value = value[2];

    return NGX_CONF_OK;
}


/* the access phase */

ngx_int_t
ngx_ws_agent_jwt_check(ngx_http_request_t *r, ngx_ws_agent_ctx_t *ctx)
{
    yajl_val                  claims, sub;
    ngx_str_t                 token;
    const char               *why;
    const char               *subp[] = { "sub", NULL };
    ngx_pool_cleanup_t       *cln;
    ngx_ws_agent_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_ws_agent_module);

    if (ngx_ws_agent_jwt_find(r, ctx, wlcf, &token) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ws_agent: JWT rejected: no token in the request");
        return ngx_ws_agent_jwt_unauthorized(r);
    }

    claims = NULL;
    why = ngx_ws_agent_jwt_verify(r, wlcf, &token, &claims);

    if (why == NULL) {
        why = ngx_ws_agent_jwt_claims(wlcf, claims);
    }

    if (claims) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            yajl_tree_free(claims);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_ws_agent_jwt_free_claims;
        cln->data = claims;
    }

    if (why) {
        /* which check failed, never the token itself */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ws_agent: JWT rejected: %s", why);
        return ngx_ws_agent_jwt_unauthorized(r);
    }

    ctx->jwt_claims = claims;

    sub = yajl_tree_get(claims, subp, yajl_t_any);

    if (sub && ngx_ws_agent_jwt_value(r->pool, sub, &ctx->jwt_sub) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->jwt_verified = 1;

    return NGX_DECLINED;
}


static ngx_int_t
ngx_ws_agent_jwt_find(ngx_http_request_t *r, ngx_ws_agent_ctx_t *ctx,
    ngx_ws_agent_loc_conf_t *wlcf, ngx_str_t *token)
{
    u_char           *p, *start, *end, *last;
    ngx_str_t         name = ngx_string("Sec-WebSocket-Protocol");
    ngx_str_t         entry;
    ngx_table_elt_t  *h;

    if (wlcf->jwt_token) {
        if (ngx_http_complex_value(r, wlcf->jwt_token, token) != NGX_OK) {
            return NGX_ERROR;
        }

        return token->len ? NGX_OK : NGX_DECLINED;
    }

    h = r->headers_in.authorization;

    if (h && h->value.len > 7
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ", 7) == 0)
    {
        token->data = h->value.data + 7;
        token->len = h->value.len - 7;

        while (token->len && token->data[0] == ' ') {
            token->data++;
            token->len--;
        }

        if (token->len) {
            return NGX_OK;
        }
    }

    if (ngx_http_arg(r, (u_char *) "token", 5, token) == NGX_OK
        && token->len)
    {
        return NGX_OK;
    }

    if (wlcf->jwt_protocol_prefix.len == 0) {
        return NGX_DECLINED;
    }

    h = ngx_ws_agent_find_header(&r->headers_in.headers, &name);

    if (h == NULL) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    last = p + h->value.len;

    while (p < last) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;

        if (p < last) {
            p++;
        }

        while (start < end && *start == ' ') {
            start++;
        }

        while (end > start && end[-1] == ' ') {
            end--;
        }

        if ((size_t) (end - start) > wlcf->jwt_protocol_prefix.len
            && ngx_strncmp(start, wlcf->jwt_protocol_prefix.data,
                           wlcf->jwt_protocol_prefix.len) == 0)
        {
            /* the entry, kept for the 101 (the header's bytes move) */
            entry.data = start;
            entry.len = end - start;

            entry.data = ngx_pstrdup(r->pool, &entry);
            if (entry.data == NULL) {
                return NGX_ERROR;
            }

            ctx->jwt_protocol = entry;

            token->data = entry.data + wlcf->jwt_protocol_prefix.len;
            token->len = entry.len - wlcf->jwt_protocol_prefix.len;

            ngx_ws_agent_jwt_strip_protocol(r, h, start, end);

            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The token is not a subprotocol the backend should see: its entry is cut
 * out of the header (an empty header is taken out).
 */

static void
ngx_ws_agent_jwt_strip_protocol(ngx_http_request_t *r, ngx_table_elt_t *h,
    u_char *start, u_char *end)
{
    u_char  *p, *last;

    last = h->value.data + h->value.len;

    /* take the entry and one neighbouring comma */
    if (end < last && *end == ',') {
        end++;

    } else {
        while (start > h->value.data && (start[-1] == ' '
                                         || start[-1] == ','))
        {
            start--;
        }
    }

    p = ngx_movemem(start, end, last - end);
    h->value.len = p - h->value.data;

    while (h->value.len && h->value.data[0] == ' ') {
        h->value.data++;
        h->value.len--;
    }

    if (h->value.len == 0) {
        (void) ngx_ws_agent_remove_header(r, h);
    }
}


/*
 * A browser that offered subprotocols fails a 101 that selects none
 * (Chromium: "Sent non-empty 'Sec-WebSocket-Protocol' header but no
 * response was received"), and the backend never saw the token entry, so
 * it cannot select it.  When the client offered a token entry and the
 * backend's 101 selects no subprotocol, the 101 selects the token entry:
 * one of those offered, as RFC 6455 (4.2.2) lets a server answer.  A
 * subprotocol the backend selected is left as it is.
 */

ngx_int_t
ngx_ws_agent_jwt_select_protocol(ngx_http_request_t *r,
    ngx_ws_agent_ctx_t *ctx)
{
    ngx_str_t         name = ngx_string("Sec-WebSocket-Protocol");
    ngx_table_elt_t  *h;

    if (ctx->jwt_protocol.len == 0) {
        return NGX_OK;
    }

    while ((h = ngx_ws_agent_find_header(&r->headers_out.headers, &name))
           != NULL)
    {
        if (h->value.len) {
            return NGX_OK;              /* the backend's choice */
        }

        h->hash = 0;                    /* an empty one selects nothing */
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Sec-WebSocket-Protocol");
    h->value = ctx->jwt_protocol;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ws_agent: the 101 selects the token's subprotocol entry");

    return NGX_OK;
}


static const char *
ngx_ws_agent_jwt_verify(ngx_http_request_t *r, ngx_ws_agent_loc_conf_t *wlcf,
    ngx_str_t *token, yajl_val *claims)
{
    u_char                  *dot1, *dot2, *last;
    yajl_val                 header, v;
    ngx_str_t                part, sig, kid;
    ngx_uint_t               i, tried;
    const char              *algp[] = { "alg", NULL };
    const char              *kidp[] = { "kid", NULL };
    const char              *name;
    ngx_ws_agent_jwt_alg_t  *alg;
    ngx_ws_agent_jwt_key_t  *key;

    if (token->len > NGX_WS_AGENT_JWT_MAX) {
        return "token too long";
    }

    last = token->data + token->len;
    dot1 = ngx_strlchr(token->data, last, '.');
    dot2 = dot1 ? ngx_strlchr(dot1 + 1, last, '.') : NULL;

    if (dot2 == NULL || ngx_strlchr(dot2 + 1, last, '.') != NULL) {
        return "malformed token (not three parts)";
    }

    part.data = token->data;
    part.len = dot1 - token->data;

    header = ngx_ws_agent_jwt_parse(r->pool, &part);
    if (header == NULL || !YAJL_IS_OBJECT(header)) {
        yajl_tree_free(header);
        return "malformed token header";
    }

    v = yajl_tree_get(header, algp, yajl_t_string);
    name = v ? ngx_ws_agent_jwt_s(v) : NULL;

    for (alg = ngx_ws_agent_jwt_algs; name && alg->name; alg++) {
        if (ngx_strcmp(alg->name, name) == 0) {
            break;
        }
    }

    ngx_str_null(&kid);
    v = yajl_tree_get(header, kidp, yajl_t_string);

    if (v) {
        kid.data = (u_char *) ngx_ws_agent_jwt_s(v);
        kid.len = ngx_strlen(kid.data);
    }

    if (name == NULL || alg->name == NULL) {
        yajl_tree_free(header);
        return "algorithm missing or not supported (\"none\" never is)";
    }

    part.data = dot2 + 1;
    part.len = last - part.data;

    if (ngx_ws_agent_jwt_b64(r->pool, NULL, &part) != NGX_OK) {
        yajl_tree_free(header);
        return "malformed signature";
    }

    sig = part;

    /* the algorithm is pinned by the key: only keys of its kind are tried */
    tried = 0;
    key = wlcf->jwt_keys->elts;

    for (i = 0; i < wlcf->jwt_keys->nelts; i++) {

        if (key[i].kind != alg->kind
            || (kid.len && key[i].kid.len
                && (kid.len != key[i].kid.len
                    || ngx_strncmp(kid.data, key[i].kid.data, kid.len) != 0)))
        {
            continue;
        }

        tried++;

        if (ngx_ws_agent_jwt_signature(&key[i], alg, token->data,
                                       dot2 - token->data, sig.data, sig.len)
            == NGX_OK)
        {
            break;
        }
    }

    yajl_tree_free(header);

    if (tried == 0) {
        return "no configured key for the token's algorithm and kid";
    }

    if (i == wlcf->jwt_keys->nelts) {
        return "bad signature";
    }

    part.data = dot1 + 1;
    part.len = dot2 - part.data;

    *claims = ngx_ws_agent_jwt_parse(r->pool, &part);

    if (*claims == NULL || !YAJL_IS_OBJECT(*claims)) {
        return "malformed claims";
    }

    return NULL;
}


static ngx_int_t
ngx_ws_agent_jwt_signature(ngx_ws_agent_jwt_key_t *key,
    ngx_ws_agent_jwt_alg_t *alg, u_char *data, size_t len, u_char *sig,
    size_t siglen)
{
    int              ok;
    u_char          *der;
    size_t           half;
    BIGNUM          *br, *bs;
    ECDSA_SIG       *es;
    EVP_MD_CTX      *mctx;
    EVP_PKEY_CTX    *pctx;
    const EVP_MD    *md;
    unsigned int     maclen;
    unsigned char    mac[EVP_MAX_MD_SIZE];
    int              derlen;

    md = EVP_get_digestbyname(alg->md);
    if (md == NULL) {
        return NGX_ERROR;
    }

    if (key->kind == NGX_WS_AGENT_JWT_HMAC) {
        if (HMAC(md, key->secret.data, (int) key->secret.len, data, len,
                 mac, &maclen)
            == NULL)
        {
            return NGX_ERROR;
        }

        /* constant time: a timing oracle must not reveal the MAC */
        return (maclen == siglen && CRYPTO_memcmp(mac, sig, siglen) == 0)
               ? NGX_OK : NGX_DECLINED;
    }

    der = NULL;
    derlen = 0;

    if (key->kind != NGX_WS_AGENT_JWT_RSA) {
        /* JWS carries r || s; OpenSSL verifies DER */
        half = (key->kind == NGX_WS_AGENT_JWT_EC256) ? 32 : 48;

        if (siglen != 2 * half) {
            return NGX_DECLINED;
        }

        es = ECDSA_SIG_new();
        br = BN_bin2bn(sig, (int) half, NULL);
        bs = BN_bin2bn(sig + half, (int) half, NULL);

        if (es == NULL || br == NULL || bs == NULL
            || ECDSA_SIG_set0(es, br, bs) != 1)
        {
            ECDSA_SIG_free(es);
            BN_free(br);
            BN_free(bs);
            return NGX_ERROR;
        }

        derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);

        if (derlen <= 0) {
            return NGX_ERROR;
        }

        sig = der;
        siglen = (size_t) derlen;
    }

    mctx = EVP_MD_CTX_new();
    ok = 0;

    if (mctx && EVP_DigestVerifyInit(mctx, &pctx, md, NULL, key->pkey) == 1)
    {
        if (alg->pss) {
            ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0
                 && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                     RSA_PSS_SALTLEN_DIGEST)
                    > 0;
        } else {
            ok = 1;
        }

        ok = ok && EVP_DigestVerify(mctx, sig, siglen, data, len) == 1;
    }

    EVP_MD_CTX_free(mctx);
    OPENSSL_free(der);

    return ok ? NGX_OK : NGX_DECLINED;
}


static const char *
ngx_ws_agent_jwt_claims(ngx_ws_agent_loc_conf_t *wlcf, yajl_val claims)
{
    double                     now;
    size_t                     j;
    yajl_val                   v, e;
    ngx_uint_t                 i;
    const char                *path[2];
    ngx_ws_agent_jwt_claim_t  *c;

    now = (double) ngx_time();

    path[1] = NULL;

    path[0] = "exp";
    v = yajl_tree_get(claims, path, yajl_t_any);

    if (v) {
        if (!YAJL_IS_NUMBER(v)) {
            return "\"exp\" is not a number";
        }

        if (now > YAJL_GET_DOUBLE(v) + (double) wlcf->jwt_leeway) {
            return "expired (\"exp\" is in the past)";
        }
    }

    path[0] = "nbf";
    v = yajl_tree_get(claims, path, yajl_t_any);

    if (v) {
        if (!YAJL_IS_NUMBER(v)) {
            return "\"nbf\" is not a number";
        }

        if (now + (double) wlcf->jwt_leeway < YAJL_GET_DOUBLE(v)) {
            return "not yet valid (\"nbf\" is in the future)";
        }
    }

    if (wlcf->jwt_claims == NULL) {
        return NULL;
    }

    c = wlcf->jwt_claims->elts;

    for (i = 0; i < wlcf->jwt_claims->nelts; i++) {
        path[0] = (const char *) c[i].name.data;
        v = yajl_tree_get(claims, path, yajl_t_any);

        if (v && YAJL_IS_STRING(v)
            && ngx_strcmp(ngx_ws_agent_jwt_s(v), c[i].value.data) == 0)
        {
            continue;
        }

        /* "aud" may be a list: any entry matches */
        if (v && YAJL_IS_ARRAY(v)) {
            for (j = 0; j < YAJL_GET_ARRAY(v)->len; j++) {
                e = YAJL_GET_ARRAY(v)->values[j];

                if (YAJL_IS_STRING(e)
                    && ngx_strcmp(ngx_ws_agent_jwt_s(e), c[i].value.data) == 0)
                {
                    break;
                }
            }

            if (j < YAJL_GET_ARRAY(v)->len) {
                continue;
            }
        }

        return "a required claim (ws_agent_jwt_claim) does not match";
    }

    return NULL;
}


/* base64url JSON -> yajl tree; NULL when either step fails */

static yajl_val
ngx_ws_agent_jwt_parse(ngx_pool_t *pool, ngx_str_t *b64)
{
    char        err[64];
    ngx_str_t   json;

    json = *b64;

    if (ngx_ws_agent_jwt_b64(pool, NULL, &json) != NGX_OK) {
        return NULL;
    }

    return yajl_tree_parse((const char *) json.data, err, sizeof(err));
}


/*
 * base64url (no padding) decoding into a NUL-terminated pool copy: from
 * the C string in, or, when in is NULL, from *out itself.
 */

static ngx_int_t
ngx_ws_agent_jwt_b64(ngx_pool_t *pool, const char *in, ngx_str_t *out)
{
    ngx_str_t  src, dst;

    if (in) {
        src.data = (u_char *) in;
        src.len = ngx_strlen(in);

    } else {
        src = *out;
    }

    dst.data = ngx_pnalloc(pool, ngx_base64_decoded_length(src.len) + 1);
    if (dst.data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(&dst, &src) != NGX_OK) {
        return NGX_ERROR;
    }

    dst.data[dst.len] = '\0';
    *out = dst;

    return NGX_OK;
}


static ngx_int_t
ngx_ws_agent_jwt_value(ngx_pool_t *pool, yajl_val v, ngx_str_t *out)
{
    const char  *s;

    if (YAJL_IS_STRING(v)) {
        s = YAJL_GET_STRING(v);

    } else if (YAJL_IS_NUMBER(v)) {
        s = YAJL_GET_NUMBER(v);

    } else if (YAJL_IS_TRUE(v)) {
        s = "true";

    } else if (YAJL_IS_FALSE(v)) {
        s = "false";

    } else {
        ngx_str_null(out);
        return NGX_OK;
    }

    out->len = ngx_strlen(s);
    out->data = (u_char *) s;

    return NGX_OK;
}


static ngx_int_t
ngx_ws_agent_jwt_unauthorized(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    ngx_str_set(&h->value, "Bearer error=\"invalid_token\"");
    r->headers_out.www_authenticate = h;

    return NGX_HTTP_UNAUTHORIZED;
}


ngx_int_t
ngx_ws_agent_jwt_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    yajl_val             c;
    ngx_str_t           *name, value;
    const char          *path[2];
    ngx_ws_agent_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_ws_agent_module);

    if (ctx == NULL || !ctx->jwt_verified) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == 0) {
        value = ctx->jwt_sub;

    } else {
        name = (ngx_str_t *) data;

        /* "ws_agent_jwt_claim_" is 19 bytes */
        path[0] = ngx_pnalloc(r->pool, name->len - 19 + 1);
        if (path[0] == NULL) {
            return NGX_ERROR;
        }

        *ngx_cpymem((u_char *) path[0], name->data + 19, name->len - 19) = 0;
        path[1] = NULL;

        c = yajl_tree_get(ctx->jwt_claims, path, yajl_t_any);

        if (c == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        (void) ngx_ws_agent_jwt_value(r->pool, c, &value);
    }

    v->data = value.data;
    v->len = value.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static void
ngx_ws_agent_jwt_free_claims(void *data)
{
    yajl_tree_free(data);
}


static void
ngx_ws_agent_jwt_free_pkey(void *data)
{
    EVP_PKEY_free(data);
}
