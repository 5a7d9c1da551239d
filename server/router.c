/* router.c - request to route: 404, 405 with Allow, 204 for OPTIONS, 415, then the handler. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cors.h"
#include "json.h"
#include "ops.h"
#include "pictures.h"
#include "srv.h"

/*
 * Matches path against pattern segment by segment. A "{name}" segment
 * matches one non-empty path segment, captured into req->params when req is
 * not NULL (a segment too long for a param slot does not match, so handlers
 * never see a truncated name). Everything else compares literally, so
 * "/healthz/" is not "/healthz".
 */
static bool route_match(const char *pattern, const char *path, srv_request *req)
{
    const char *p = pattern;
    const char *s = path;
    size_t n_params = 0;

    while (*p != '\0') {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            size_t seg = strcspn(s, "/");

            if (close == NULL || seg == 0 || n_params == SRV_MAX_PARAMS ||
                seg >= sizeof req->params[0])
                return false;
            if (req != NULL) {
                memcpy(req->params[n_params], s, seg);
                req->params[n_params][seg] = '\0';
            }
            n_params++;
            p = close + 1;
            s += seg;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    if (*s != '\0')
        return false;
    if (req != NULL)
        req->n_params = n_params;
    return true;
}

/* Adds method to the comma-separated list unless it is there already. */
static void allow_add(char *allow, size_t allow_len, const char *method)
{
    size_t mlen = strlen(method);
    const char *at = allow;

    while ((at = strstr(at, method)) != NULL) {
        bool starts = at == allow || at[-1] == ' ';
        bool ends = at[mlen] == '\0' || at[mlen] == ',';
        if (starts && ends)
            return;
        at += mlen;
    }
    if (allow[0] != '\0')
        strncat(allow, ", ", allow_len - strlen(allow) - 1);
    strncat(allow, method, allow_len - strlen(allow) - 1);
}

/* application/json in any case, optionally with parameters ("; charset=utf-8").
 * An absent Content-Type is accepted: a client that sends no header at all
 * has nothing else to mean on these routes. (curl -d sends
 * application/x-www-form-urlencoded, which gets the 415 and its hint.) */
static bool content_type_is_json(const char *ct)
{
    static const char want[] = "application/json";
    size_t n = sizeof want - 1;

    if (ct == NULL)
        return true;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/*
 * OPTIONS on a known path: 204 with Allow. A CORS preflight gets its
 * Access-Control-* headers from srv_cors_apply, which reads this Allow.
 */
static void options_respond(srv_app *app, const srv_request *req, srv_response *res,
                            const char *allow)
{
    (void)app;
    (void)req;
    srv_response_set(res, 204, "", NULL, 0);
    srv_response_header(res, "Allow", "%s", allow);
}

int srv_route_index(const char *method, const char *path)
{
    int any = -1;
    for (size_t i = 0; method && path && i < srv_n_routes; i++) {
        if (!route_match(srv_routes[i].pattern, path, NULL))
            continue;
        if (strcmp(srv_routes[i].method, method) == 0)
            return (int)i;
        if (any < 0)
            any = (int)i;
    }
    return any;
}

/* Everything but CORS, which srv_dispatch adds to whatever this answered. */
static void dispatch_route(srv_app *app, srv_request *req, srv_response *res)
{
    const char *method = req->method ? req->method : "";
    const char *path = req->path ? req->path : "";
    /* HEAD is answered by the GET handler; the transport drops the body. */
    bool head = strcmp(method, "HEAD") == 0;
    const srv_route *hit = NULL;
    char allow[64] = "";
    bool known = false;
    srv_err e;

    req->n_params = 0;
    for (size_t i = 0; i < srv_n_routes; i++) {
        const srv_route *rt = &srv_routes[i];

        if (!route_match(rt->pattern, path, NULL))
            continue;
        known = true;
        allow_add(allow, sizeof allow, rt->method);
        if (hit == NULL &&
            (strcmp(rt->method, method) == 0 || (head && strcmp(rt->method, "GET") == 0)))
            hit = rt;
    }

    if (!known) {
        srv_err_set(&e, 404, SRV_CODE_NOT_FOUND, "", "no such path: %.400s", path);
        srv_respond_error(res, &e);
        return;
    }
    if (hit == NULL) {
        if (strcmp(method, "OPTIONS") == 0) {
            options_respond(app, req, res, allow);
            return;
        }
        srv_err_set(&e, 405, SRV_CODE_METHOD, "", "%.32s is not allowed on %.300s (allowed: %s)",
                    method, path, allow);
        srv_respond_error(res, &e);
        srv_response_header(res, "Allow", "%s", allow);
        return;
    }

    route_match(hit->pattern, path, req);
    const int route = (int)(hit - srv_routes);
    if (!srv_auth_ok(app, req, path)) {
        srv_err_set(&e, 401, SRV_CODE_UNAUTHENTICATED, "",
                    "send the API key as Authorization: Bearer <key>");
        srv_respond_error(res, &e);
        srv_response_header(res, "WWW-Authenticate", "Bearer realm=\"explore-attention\"");
        res->route = route;
        return;
    }
    if (hit->needs_json && !content_type_is_json(srv_req_header(req, "Content-Type"))) {
        srv_err_set(&e, 415, SRV_CODE_MEDIA_TYPE, "", "send Content-Type: application/json");
        srv_respond_error(res, &e);
        res->route = route;
        return;
    }
    srv_format format = SRV_FORMAT_JSON;
    if (hit->pictures && !srv_format_negotiate(req, SRV_FORMAT_JSON, &format, &e)) {
        srv_respond_error(res, &e);
        return;
    }
    /* Computations take a slot (--max-concurrent); the health and other GET
     * routes never wait. */
    double waited = 0;
    if (hit->needs_json) {
        if (!srv_limiter_acquire(app->limiter, app->config.queue_timeout_ms, &waited)) {
            srv_metrics_queue_wait(app->metrics, waited);
            srv_err_set(&e, 429, SRV_CODE_TOO_MANY, "",
                        "every computation slot stayed busy for %u ms (--max-concurrent %u); "
                        "retry after the Retry-After seconds",
                        app->config.queue_timeout_ms, app->config.max_concurrent);
            srv_respond_error(res, &e);
            srv_response_header(res, "Retry-After", "1");
            res->route = route;
            return;
        }
        srv_metrics_queue_wait(app->metrics, waited);
    }
    hit->handler(app, req, res);
    if (hit->needs_json)
        srv_limiter_release(app->limiter);
    if (format != SRV_FORMAT_JSON)
        srv_pictures_convert(req, format, res);
    res->route = route;
    if (hit->pictures) /* caches must key these answers on Accept too */
        srv_response_header(res, "Vary", "Accept");
}

void srv_dispatch(srv_app *app, srv_request *req, srv_response *res)
{
    srv_json_pool_begin();
    dispatch_route(app, req, res);
    srv_json_pool_end();
    srv_cors_apply(&app->config, req, res);
}
