/* h_assets.c - the explorer: GET / and GET /assets/{name} from the files embedded at build time. */
#include <stdlib.h>
#include <string.h>

#include "assets.h"
#include "srv.h"

/* The page may load what this origin serves and call this origin's API, nothing else. Images
 * from data: and blob: URLs are the page's own (an uploaded picture, a PNG being exported). */
#define ASSETS_CSP                                                                                 \
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "         \
    "frame-ancestors 'none'"

const srv_asset *srv_asset_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < srv_n_assets; i++)
        if (strcmp(srv_assets[i].name, name) == 0)
            return &srv_assets[i];
    return NULL;
}

/* True when an If-None-Match list names etag (or is "*"); weak forms match too (RFC 9110
 * compares If-None-Match weakly). */
static bool assets_not_modified(const char *inm, const char *etag)
{
    size_t n = strlen(etag);

    if (inm == NULL)
        return false;
    for (const char *p = inm; *p != '\0';) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        if (strncmp(p, etag, n) == 0 && (p[n] == '\0' || p[n] == ',' || p[n] == ' '))
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

static void assets_send(const srv_asset *a, const srv_request *req, srv_response *res)
{
    srv_response_header(res, "ETag", "%s", a->etag);
    srv_response_header(res, "Cache-Control", "no-cache");
    srv_response_header(res, "X-Content-Type-Options", "nosniff");
    if (strncmp(a->content_type, "text/html", 9) == 0)
        srv_response_header(res, "Content-Security-Policy", "%s", ASSETS_CSP);
    if (assets_not_modified(srv_req_header(req, "If-None-Match"), a->etag)) {
        srv_response_set(res, 304, "", NULL, 0);
        return;
    }
    char *copy = malloc(a->len + 1);
    if (copy == NULL) {
        srv_err e;
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory while sending %s", a->name);
        srv_respond_error(res, &e);
        return;
    }
    memcpy(copy, a->data, a->len);
    copy[a->len] = '\0';
    srv_response_set(res, 200, a->content_type, copy, a->len);
}

void srv_h_explorer(srv_app *app, const srv_request *req, srv_response *res)
{
    const srv_asset *a = srv_asset_find("index.html");
    srv_err e;

    (void)app;
    if (a == NULL) {
        srv_err_set(&e, 404, SRV_CODE_NOT_FOUND, "", "this build has no explorer page");
        srv_respond_error(res, &e);
        return;
    }
    assets_send(a, req, res);
}

void srv_h_asset(srv_app *app, const srv_request *req, srv_response *res)
{
    const srv_asset *a = req->n_params > 0 ? srv_asset_find(req->params[0]) : NULL;
    srv_err e;

    (void)app;
    if (a == NULL) {
        srv_err_set(&e, 404, SRV_CODE_NOT_FOUND, "", "no such asset: %.100s",
                    req->n_params > 0 ? req->params[0] : "");
        srv_respond_error(res, &e);
        return;
    }
    assets_send(a, req, res);
}
