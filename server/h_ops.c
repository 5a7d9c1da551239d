/* h_ops.c - operations routes: /healthz, /readyz, /v1/info, /openapi.yaml. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "models.h"
#include "ops.h"
#include "srv.h"

#if defined(__clang__)
#define OPS_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define OPS_COMPILER "gcc " __VERSION__
#else
#define OPS_COMPILER "unknown"
#endif

#ifdef NDEBUG
#define OPS_BUILD_TYPE "release"
#else
#define OPS_BUILD_TYPE "debug"
#endif

static void respond_oom(srv_response *res, const char *what)
{
    srv_err e;

    srv_err_set(&e, 500, SRV_CODE_INTERNAL, "", "out of memory while writing %s", what);
    srv_respond_error(res, &e);
}

/* Liveness: answers from the calling thread with no lock and no wait, even
 * while draining, so an orchestrator never restarts a busy server. */
void srv_h_healthz(srv_app *app, const srv_request *req, srv_response *res)
{
    (void)app;
    (void)req;
    srv_response_text(res, 200, "application/json", "{\"status\":\"ok\"}");
}

/* Readiness: 503 while starting or draining so load balancers stop sending
 * new work before the listener closes. */
void srv_h_readyz(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;

    (void)req;
    if (app->ready && !app->draining) {
        srv_response_text(res, 200, "application/json", "{\"status\":\"ready\"}");
        return;
    }
    char loading[SRV_MODEL_NAME_MAX] = "";
    if (!app->draining)
        srv_models_loading(app->models, loading, sizeof loading);
    if (loading[0])
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "", "not ready: loading model '%s'", loading);
    else
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "", "%s",
                    app->draining ? "draining" : "not ready");
    srv_respond_error(res, &e);
}

/* Adds {"method", "path"} for every route; false on out-of-memory. */
static bool info_add_endpoints(cJSON *root)
{
    cJSON *list = cJSON_AddArrayToObject(root, "endpoints");

    if (list == NULL)
        return false;
    for (size_t i = 0; i < srv_n_routes; i++) {
        cJSON *ep = cJSON_CreateObject();

        if (ep == NULL)
            return false;
        cJSON_AddItemToArray(list, ep);
        if (cJSON_AddStringToObject(ep, "method", srv_routes[i].method) == NULL ||
            cJSON_AddStringToObject(ep, "path", srv_routes[i].pattern) == NULL)
            return false;
    }
    return true;
}

/* "cors_origins": the --cors-origin list ("a,b") as an array; false on out-of-memory. */
static bool info_add_origins(cJSON *server, const char *list)
{
    cJSON *arr = cJSON_AddArrayToObject(server, "cors_origins");

    for (const char *p = list; arr != NULL && *p != '\0';) {
        size_t n = strcspn(p, ",");
        char one[256];
        cJSON *item;

        snprintf(one, sizeof one, "%.*s", (int)n, p);
        item = cJSON_CreateString(one);
        if (item == NULL)
            return false;
        cJSON_AddItemToArray(arr, item);
        p += n;
        p += *p == ',';
    }
    return arr != NULL;
}

/* Seconds since start, to the millisecond (whole ms print short). */
static double info_uptime_s(const srv_app *app)
{
    if (app->start_time <= 0)
        return 0;
    return (double)(long long)(srv_now_ms() - app->start_time) / 1e3;
}

/* Builds the /v1/info document; NULL on out-of-memory. */
static cJSON *info_build(const srv_app *app)
{
    const srv_config *c = &app->config;
    cJSON *root = cJSON_CreateObject();
    cJSON *build, *blas, *server, *limits;
    bool ok;

    if (root == NULL)
        return NULL;
    /* cJSON_Add* returns NULL for a NULL parent, so one check per member
     * also covers a parent that failed; && keeps the documented order. */
    ok = cJSON_AddStringToObject(root, "name", "explore-attention") != NULL &&
         cJSON_AddStringToObject(root, "version", SRV_VERSION) != NULL;
    build = ok ? cJSON_AddObjectToObject(root, "build") : NULL;
    ok = ok && cJSON_AddStringToObject(build, "compiler", OPS_COMPILER) != NULL &&
         cJSON_AddStringToObject(build, "type", OPS_BUILD_TYPE) != NULL;
    blas = ok ? cJSON_AddObjectToObject(root, "blas") : NULL;
    ok = ok && cJSON_AddStringToObject(blas, "info", attn_blas_info()) != NULL &&
         cJSON_AddNumberToObject(blas, "threads", attn_blas_threads()) != NULL;
    server = ok ? cJSON_AddObjectToObject(root, "server") : NULL;
    ok = ok && cJSON_AddNumberToObject(server, "threads", c->threads) != NULL &&
         cJSON_AddStringToObject(server, "host", c->host) != NULL &&
         cJSON_AddNumberToObject(server, "port", app->bound_port ? app->bound_port : c->port) !=
             NULL &&
         cJSON_AddNumberToObject(server, "uptime_s", info_uptime_s(app)) != NULL &&
         info_add_origins(server, c->cors_origins);
    limits = ok ? cJSON_AddObjectToObject(root, "limits") : NULL;
    ok = ok &&
         cJSON_AddNumberToObject(limits, "max_body_bytes", (double)c->max_body_bytes) != NULL &&
         cJSON_AddNumberToObject(limits, "max_elements", (double)c->max_elements) != NULL &&
         cJSON_AddNumberToObject(limits, "timeout_s", c->timeout_s) != NULL &&
         cJSON_AddNumberToObject(limits, "drain_timeout_s", c->drain_s) != NULL;
    ok = ok && info_add_endpoints(root) && srv_models_info_add(app->models, root);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

void srv_h_info(srv_app *app, const srv_request *req, srv_response *res)
{
    cJSON *root = info_build(app);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;

    (void)req;
    cJSON_Delete(root);
    if (text == NULL) {
        respond_oom(res, "/v1/info");
        return;
    }
    srv_response_set(res, 200, "application/json", text, strlen(text));
}

void srv_h_openapi(srv_app *app, const srv_request *req, srv_response *res)
{
    char *copy = malloc(srv_openapi_yaml_len + 1);

    (void)app;
    (void)req;
    if (copy == NULL) {
        respond_oom(res, "/openapi.yaml");
        return;
    }
    memcpy(copy, srv_openapi_yaml, srv_openapi_yaml_len);
    copy[srv_openapi_yaml_len] = '\0';
    srv_response_set(res, 200, "application/yaml", copy, srv_openapi_yaml_len);
}

void srv_h_metrics(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_buf b;
    size_t len = 0;

    (void)req;
    srv_buf_init(&b);
    srv_metrics_render(app->metrics, app, &b);
    char *body = srv_buf_detach(&b, &len);
    if (body == NULL) {
        respond_oom(res, "/metrics");
        return;
    }
    srv_response_set(res, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
}
