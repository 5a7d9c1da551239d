/* cors.c - cross-origin requests: origin checks, preflight answers, the Access-Control headers. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cors.h"

bool srv_cors_origin_valid(const char *origin, size_t len, char *why, size_t why_len)
{
    size_t i = 0;

    if (len == 1 && origin[0] == '*')
        return true;
    if (len > SRV_CORS_MAX_ORIGIN) {
        snprintf(why, why_len, "'%.40s...' is longer than %d characters", origin,
                 SRV_CORS_MAX_ORIGIN);
        return false;
    }
    while (i < len && (isalnum((unsigned char)origin[i]) || origin[i] == '+' || origin[i] == '-' ||
                       origin[i] == '.'))
        i++;
    if (i == 0 || !isalpha((unsigned char)origin[0]) || len - i < 3 ||
        memcmp(origin + i, "://", 3) != 0) {
        snprintf(why, why_len, "'%.*s' is not an origin (expected scheme://host[:port] or *)",
                 (int)(len > 200 ? 200 : len), origin);
        return false;
    }
    i += 3;
    if (i == len) {
        snprintf(why, why_len, "'%.*s' has no host (expected scheme://host[:port])",
                 (int)(len > 200 ? 200 : len), origin);
        return false;
    }
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)origin[i];
        if (ch == '/' || ch == '?' || ch == '#') {
            snprintf(why, why_len,
                     "'%.*s' has a path; an origin is scheme://host[:port], without a trailing /",
                     (int)(len > 200 ? 200 : len), origin);
            return false;
        }
        if (ch <= ' ' || ch == 0x7f || ch == '@' || ch == ',' || ch == '\\') {
            snprintf(why, why_len, "'%.*s' is not an origin: character %u is not allowed in a host",
                     (int)(len > 200 ? 200 : len), origin, (unsigned)ch);
            return false;
        }
    }
    return true;
}

/* Calls each configured origin until fn returns true; returns that. */
static bool cors_any(const char *list, bool (*fn)(const char *o, size_t n, const void *ctx),
                     const void *ctx)
{
    const char *p = list;

    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        if (n > 0 && fn(p, n, ctx))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static bool cors_is_star(const char *o, size_t n, const void *ctx)
{
    (void)ctx;
    return n == 1 && o[0] == '*';
}

static bool cors_is_origin(const char *o, size_t n, const void *ctx)
{
    const char *want = ctx;
    return (n == 1 && o[0] == '*') || (strlen(want) == n && strncasecmp(o, want, n) == 0);
}

bool srv_cors_allowed(const srv_config *c, const char *origin)
{
    if (c->cors_origins[0] == '\0' || origin == NULL || origin[0] == '\0')
        return false;
    return cors_any(c->cors_origins, cors_is_origin, origin);
}

static const char *cors_header(const srv_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->header_names[i], name) == 0)
            return r->header_values[i];
    return NULL;
}

/* Adds token to the response's Vary list unless it is there already. */
static void cors_vary(srv_response *res, const char *token)
{
    const char *vary = cors_header(res, "Vary");
    char list[128];
    size_t n = strlen(token);

    if (vary == NULL) {
        srv_response_header(res, "Vary", "%s", token);
        return;
    }
    for (const char *p = vary; *p != '\0';) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if ((len == n && strncasecmp(p, token, n) == 0) || (len == 1 && *p == '*'))
            return;
        p += len;
    }
    snprintf(list, sizeof list, "%s", vary); /* the header slot is overwritten below */
    srv_response_header(res, "Vary", "%s, %s", list, token);
}

void srv_cors_apply(const srv_config *c, const srv_request *req, srv_response *res)
{
    if (c->cors_origins[0] == '\0')
        return;
    const bool star = cors_any(c->cors_origins, cors_is_star, NULL);
    if (!star)
        cors_vary(res, "Origin");

    const char *origin = srv_req_header(req, "Origin");
    if (!srv_cors_allowed(c, origin))
        return;
    srv_response_header(res, "Access-Control-Allow-Origin", "%s", star ? "*" : origin);

    const char *allow = cors_header(res, "Allow");
    const bool preflight = req->method != NULL && strcmp(req->method, "OPTIONS") == 0 &&
                           srv_req_header(req, "Access-Control-Request-Method") != NULL &&
                           res->status == 204 && allow != NULL;
    if (preflight) {
        char methods[128];
        snprintf(methods, sizeof methods, "%s", allow);
        srv_response_header(res, "Access-Control-Allow-Methods", "%s", methods);
        srv_response_header(res, "Access-Control-Allow-Headers", "%s", SRV_CORS_ALLOW_HEADERS);
        srv_response_header(res, "Access-Control-Max-Age", "%s", SRV_CORS_MAX_AGE);
    } else {
        srv_response_header(res, "Access-Control-Expose-Headers", "%s", SRV_CORS_EXPOSE_HEADERS);
    }
}
