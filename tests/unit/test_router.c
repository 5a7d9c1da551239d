/* test_router.c - dispatch on the real route table, the operations handlers, and {name} capture. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "srv.h"

/*
 * The real table has no {name} route yet, so capture is tested on a second
 * copy of the router compiled here against a table of our own: the same
 * code, renamed so it does not clash with the library's.
 */
extern const srv_route test_routes[];
extern const size_t test_n_routes;
void test_dispatch(srv_app *app, srv_request *req, srv_response *res);
int test_route_index(const char *method, const char *path);

#define srv_routes test_routes
#define srv_n_routes test_n_routes
#define srv_dispatch test_dispatch
#define srv_route_index test_route_index
#include "router.c"
#undef srv_routes
#undef srv_n_routes
#undef srv_dispatch
#undef srv_route_index

static srv_app app;

static void setup(void)
{
    memset(&app, 0, sizeof app);
    srv_config_defaults(&app.config);
    app.ready = 1;
}

typedef struct call_result {
    srv_response res;
    cJSON *json; /* parsed body when it is JSON, else NULL */
} call_result;

static void call_free(call_result *c)
{
    cJSON_Delete(c->json);
    srv_response_clear(&c->res);
}

static const char *header_of(const srv_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcmp(r->header_names[i], name) == 0)
            return r->header_values[i];
    return NULL;
}

/* Dispatches one synthetic request; content_type NULL = no header. */
static call_result call_with(void (*dispatch)(srv_app *, srv_request *, srv_response *),
                             const char *method, const char *path, const char *content_type,
                             const char *body)
{
    call_result c;
    srv_request req;
    srv_kv headers[2];

    memset(&req, 0, sizeof req);
    req.method = method;
    req.path = path;
    headers[0].key = "Host";
    headers[0].value = "localhost";
    headers[1].key = "content-type"; /* lower case: the lookup must not care */
    headers[1].value = content_type;
    req.headers = headers;
    req.n_headers = content_type ? 2 : 1;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    srv_response_init(&c.res);
    dispatch(&app, &req, &c.res);
    c.json = c.res.body ? cJSON_ParseWithLength(c.res.body, c.res.body_len) : NULL;
    return c;
}

static call_result call(const char *method, const char *path, const char *content_type,
                        const char *body)
{
    return call_with(srv_dispatch, method, path, content_type, body);
}

static void assert_envelope(const call_result *c, int status, const char *code)
{
    const cJSON *err;

    ck_assert_int_eq(c->res.status, status);
    ck_assert_str_eq(c->res.content_type, "application/json");
    ck_assert_msg(c->json != NULL, "body is not JSON: %.*s", (int)c->res.body_len, c->res.body);
    err = cJSON_GetObjectItem(c->json, "error");
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(cJSON_GetObjectItem(err, "status")->valueint, status);
    ck_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, code);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(err, "message")));
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(err, "field")));
}

static const char *message_of(const call_result *c)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(c->json, "error"), "message")->valuestring;
}

/* ------------------------------------------------------------ routing */

START_TEST(unknown_path_is_404_naming_it)
{
    call_result c = call("GET", "/v1/nothing-here", NULL, NULL);

    assert_envelope(&c, 404, "not_found");
    ck_assert_ptr_nonnull(strstr(message_of(&c), "/v1/nothing-here"));
    call_free(&c);
}
END_TEST

START_TEST(trailing_slash_is_another_path)
{
    call_result c = call("GET", "/healthz/", NULL, NULL);

    assert_envelope(&c, 404, "not_found");
    call_free(&c);
    c = call("GET", "/assets", NULL, NULL); /* "/assets/{name}" needs a name */
    assert_envelope(&c, 404, "not_found");
    call_free(&c);
    c = call("GET", "", NULL, NULL);
    assert_envelope(&c, 404, "not_found");
    call_free(&c);
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    call_result c = call("POST", "/healthz", "application/json", "{}");

    assert_envelope(&c, 405, "method_not_allowed");
    ck_assert_str_eq(header_of(&c.res, "Allow"), "GET");
    call_free(&c);

    c = call("GET", "/v1/attention", NULL, NULL);
    assert_envelope(&c, 405, "method_not_allowed");
    ck_assert_str_eq(header_of(&c.res, "Allow"), "POST");
    call_free(&c);

    c = call("DELETE", "/v1/multihead_attention", NULL, NULL);
    assert_envelope(&c, 405, "method_not_allowed");
    ck_assert_str_eq(header_of(&c.res, "Allow"), "POST");
    call_free(&c);

    c = call("HEAD", "/v1/attention", NULL, NULL);
    assert_envelope(&c, 405, "method_not_allowed");
    call_free(&c);
}
END_TEST

START_TEST(options_is_204_with_allow)
{
    call_result c = call("OPTIONS", "/v1/attention", NULL, NULL);

    ck_assert_int_eq(c.res.status, 204);
    ck_assert_str_eq(header_of(&c.res, "Allow"), "POST");
    ck_assert_uint_eq(c.res.body_len, 0);
    call_free(&c);

    c = call("OPTIONS", "/readyz", NULL, NULL);
    ck_assert_int_eq(c.res.status, 204);
    ck_assert_str_eq(header_of(&c.res, "Allow"), "GET");
    call_free(&c);

    c = call("OPTIONS", "/nowhere", NULL, NULL);
    assert_envelope(&c, 404, "not_found");
    call_free(&c);
}
END_TEST

START_TEST(head_is_served_by_get)
{
    call_result c = call("HEAD", "/healthz", NULL, NULL);

    ck_assert_int_eq(c.res.status, 200);
    call_free(&c);
}
END_TEST

START_TEST(non_json_content_type_is_415)
{
    static const char *const bad[] = {"text/plain",
                                      "application/x-www-form-urlencoded",
                                      "application/jsonx",
                                      "application/json-seq",
                                      "json",
                                      ""};
    static const char *const paths[] = {"/v1/attention", "/v1/multihead_attention"};

    for (size_t p = 0; p < 2; p++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            call_result c = call("POST", paths[p], bad[i], "{}");

            assert_envelope(&c, 415, "unsupported_media_type");
            ck_assert_str_eq(message_of(&c), "send Content-Type: application/json");
            call_free(&c);
        }
    }
}
END_TEST

START_TEST(json_content_type_variants_reach_the_handler)
{
    static const char *const good[] = {"application/json",   "application/json; charset=utf-8",
                                       "Application/JSON",   "application/json;charset=UTF-8",
                                       " application/json ", NULL};
    static const char *const paths[] = {"/v1/attention", "/v1/multihead_attention"};

    for (size_t p = 0; p < 2; p++) {
        /* the last entry: no Content-Type header at all */
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
            call_result c = call("POST", paths[p], good[i], "{}");

            ck_assert_msg(c.res.status != 415 && c.res.status != 404 && c.res.status != 405,
                          "%s with '%s' got %d", paths[p], good[i] ? good[i] : "(none)",
                          c.res.status);
            call_free(&c);
        }
    }
}
END_TEST

/* --------------------------------------------------------- operations */

START_TEST(healthz_ok_even_while_draining)
{
    call_result c = call("GET", "/healthz", NULL, NULL);

    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(c.res.content_type, "application/json");
    ck_assert_str_eq(cJSON_GetObjectItem(c.json, "status")->valuestring, "ok");
    call_free(&c);

    app.ready = 0;
    app.draining = 1;
    c = call("GET", "/healthz", NULL, NULL);
    ck_assert_int_eq(c.res.status, 200);
    call_free(&c);
}
END_TEST

START_TEST(readyz_ready_then_draining)
{
    call_result c = call("GET", "/readyz", NULL, NULL);

    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(cJSON_GetObjectItem(c.json, "status")->valuestring, "ready");
    call_free(&c);

    app.draining = 1;
    c = call("GET", "/readyz", NULL, NULL);
    assert_envelope(&c, 503, "unavailable");
    ck_assert_str_eq(message_of(&c), "draining");
    call_free(&c);
}
END_TEST

START_TEST(readyz_not_ready_before_start)
{
    call_result c;

    app.ready = 0;
    c = call("GET", "/readyz", NULL, NULL);
    assert_envelope(&c, 503, "unavailable");
    ck_assert_str_eq(message_of(&c), "not ready");
    call_free(&c);
}
END_TEST

START_TEST(info_reports_limits_and_endpoints)
{
    call_result c;
    const cJSON *limits, *server, *blas, *endpoints, *models, *build;

    app.config.max_body_bytes = 12345;
    app.config.max_elements = 678;
    app.config.timeout_s = 9;
    app.config.drain_s = 4;
    app.bound_port = 43210;
    c = call("GET", "/v1/info", NULL, NULL);
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_ptr_nonnull(c.json);
    ck_assert_str_eq(cJSON_GetObjectItem(c.json, "name")->valuestring, "explore-attention");
    ck_assert_str_eq(cJSON_GetObjectItem(c.json, "version")->valuestring, SRV_VERSION);

    build = cJSON_GetObjectItem(c.json, "build");
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(build, "compiler")));
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(build, "type")));

    limits = cJSON_GetObjectItem(c.json, "limits");
    ck_assert_int_eq(cJSON_GetObjectItem(limits, "max_body_bytes")->valueint, 12345);
    ck_assert_int_eq(cJSON_GetObjectItem(limits, "max_elements")->valueint, 678);
    ck_assert_int_eq(cJSON_GetObjectItem(limits, "timeout_s")->valueint, 9);
    ck_assert_int_eq(cJSON_GetObjectItem(limits, "drain_timeout_s")->valueint, 4);

    server = cJSON_GetObjectItem(c.json, "server");
    ck_assert_int_eq(cJSON_GetObjectItem(server, "port")->valueint, 43210);
    ck_assert_str_eq(cJSON_GetObjectItem(server, "host")->valuestring, "127.0.0.1");
    ck_assert_int_eq(cJSON_GetObjectItem(server, "threads")->valueint, (int)app.config.threads);

    blas = cJSON_GetObjectItem(c.json, "blas");
    ck_assert_str_eq(cJSON_GetObjectItem(blas, "info")->valuestring, attn_blas_info());
    ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(blas, "threads")));

    endpoints = cJSON_GetObjectItem(c.json, "endpoints");
    ck_assert_int_eq(cJSON_GetArraySize(endpoints), (int)srv_n_routes);
    for (size_t i = 0; i < srv_n_routes; i++) {
        const cJSON *ep = cJSON_GetArrayItem(endpoints, (int)i);
        ck_assert_str_eq(cJSON_GetObjectItem(ep, "method")->valuestring, srv_routes[i].method);
        ck_assert_str_eq(cJSON_GetObjectItem(ep, "path")->valuestring, srv_routes[i].pattern);
    }
    models = cJSON_GetObjectItem(c.json, "models");
    ck_assert(cJSON_IsArray(models));
    ck_assert_int_eq(cJSON_GetArraySize(models), 0);
    call_free(&c);
}
END_TEST

START_TEST(openapi_served_as_yaml)
{
    call_result c = call("GET", "/openapi.yaml", NULL, NULL);

    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(c.res.content_type, "application/yaml");
    ck_assert_uint_eq(c.res.body_len, srv_openapi_yaml_len);
    ck_assert_int_eq(memcmp(c.res.body, srv_openapi_yaml, srv_openapi_yaml_len), 0);
    ck_assert_int_eq(strncmp(c.res.body, "openapi:", 8), 0);
    call_free(&c);
}
END_TEST

START_TEST(route_table_is_complete)
{
    static const char *const want[][2] = {
        {"GET", "/healthz"},      {"GET", "/readyz"},        {"GET", "/v1/info"},
        {"GET", "/openapi.yaml"}, {"POST", "/v1/attention"}, {"POST", "/v1/multihead_attention"},
        {"POST", "/v1/positional_encoding"}, {"POST", "/v1/transformer/encoder"},
        {"POST", "/v1/transformer/decoder"}, {"POST", "/v1/render"}, {"GET", "/metrics"},
        {"GET", "/"}, {"GET", "/assets/{name}"},
        {"GET", "/v1/models"}, {"GET", "/v1/models/{name}"},
        {"POST", "/v1/models/{name}/attention"}, {"GET", "/v2"}, {"GET", "/v2/health/live"},
        {"GET", "/v2/health/ready"}, {"GET", "/v2/models/{name}"},
        {"GET", "/v2/models/{name}/ready"}, {"POST", "/v2/models/{name}/infer"},
        {"GET", "/v2/models/{name}/versions/{version}"},
        {"GET", "/v2/models/{name}/versions/{version}/ready"},
        {"POST", "/v2/models/{name}/versions/{version}/infer"},
    };
    const size_t n_want = sizeof want / sizeof want[0];

    ck_assert_uint_eq(srv_n_routes, n_want);
    for (size_t i = 0; i < n_want; i++) {
        bool found = false;
        for (size_t j = 0; j < srv_n_routes; j++)
            found = found || (strcmp(srv_routes[j].method, want[i][0]) == 0 &&
                              strcmp(srv_routes[j].pattern, want[i][1]) == 0);
        ck_assert_msg(found, "no route %s %s", want[i][0], want[i][1]);
    }
}
END_TEST

/* ------------------------------------------------------ pattern capture */

static void h_echo_params(srv_app *a, const srv_request *req, srv_response *res)
{
    char text[600];
    int n = 0;

    (void)a;
    for (size_t i = 0; i < req->n_params; i++)
        n += snprintf(text + n, sizeof text - (size_t)n, "%s%s", i ? "|" : "", req->params[i]);
    text[n] = '\0';
    srv_response_text(res, 200, "text/plain", text);
}

static void h_literal(srv_app *a, const srv_request *req, srv_response *res)
{
    (void)a;
    (void)req;
    srv_response_text(res, 200, "text/plain", "literal");
}

const srv_route test_routes[] = {
    {"GET", "/v1/models/default", h_literal, false, false},
    {"GET", "/v1/models/{name}", h_echo_params, false, false},
    {"POST", "/v1/models/{name}/attention", h_echo_params, true, false},
    {"GET", "/v2/models/{name}/versions/{version}", h_echo_params, false, false},
    {"DELETE", "/v2/models/{name}/versions/{version}", h_echo_params, false, false},
};
const size_t test_n_routes = sizeof test_routes / sizeof test_routes[0];

static call_result tcall(const char *method, const char *path)
{
    return call_with(test_dispatch, method, path, NULL, NULL);
}

static void assert_body(const call_result *c, int status, const char *body)
{
    ck_assert_int_eq(c->res.status, status);
    ck_assert_uint_eq(c->res.body_len, strlen(body));
    ck_assert_int_eq(memcmp(c->res.body, body, c->res.body_len), 0);
}

START_TEST(pattern_captures_one_segment)
{
    call_result c = tcall("GET", "/v1/models/bert-base");

    assert_body(&c, 200, "bert-base");
    call_free(&c);
    c = tcall("POST", "/v1/models/gpt2/attention");
    assert_body(&c, 200, "gpt2");
    call_free(&c);
    c = tcall("GET", "/v2/models/vit/versions/3");
    assert_body(&c, 200, "vit|3");
    call_free(&c);
}
END_TEST

START_TEST(literal_route_before_pattern_wins)
{
    call_result c = tcall("GET", "/v1/models/default");

    assert_body(&c, 200, "literal");
    call_free(&c);
}
END_TEST

START_TEST(pattern_needs_a_nonempty_segment)
{
    static const char *const paths[] = {"/v1/models/", "/v1/models", "/v1/models/a/b",
                                        "/v1/models//attention", "/v2/models/x/versions/"};

    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        call_result c = tcall("GET", paths[i]);
        ck_assert_msg(c.res.status == 404, "%s got %d", paths[i], c.res.status);
        call_free(&c);
    }
}
END_TEST

START_TEST(pattern_segment_too_long_is_404)
{
    char path[400];
    call_result c;

    memset(path, 'a', sizeof path);
    memcpy(path, "/v1/models/", 11);
    path[11 + 127] = '\0'; /* 127 chars fit a param slot */
    c = tcall("GET", path);
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_uint_eq(c.res.body_len, 127);
    call_free(&c);

    memset(path, 'a', sizeof path);
    memcpy(path, "/v1/models/", 11);
    path[11 + 128] = '\0';
    c = tcall("GET", path);
    ck_assert_int_eq(c.res.status, 404);
    call_free(&c);
}
END_TEST

START_TEST(pattern_allow_lists_every_method)
{
    call_result c = tcall("PUT", "/v2/models/vit/versions/3");

    ck_assert_int_eq(c.res.status, 405);
    ck_assert_str_eq(header_of(&c.res, "Allow"), "GET, DELETE");
    call_free(&c);
    c = tcall("OPTIONS", "/v2/models/vit/versions/3");
    ck_assert_int_eq(c.res.status, 204);
    ck_assert_str_eq(header_of(&c.res, "Allow"), "GET, DELETE");
    call_free(&c);
}
END_TEST

START_TEST(pattern_json_route_checks_content_type)
{
    call_result c = call_with(test_dispatch, "POST", "/v1/models/gpt2/attention", "text/csv", "a");

    ck_assert_int_eq(c.res.status, 415);
    call_free(&c);
}
END_TEST

/* --------------------------------------------------- response helpers */

START_TEST(response_header_replaces_same_name)
{
    srv_response r;

    srv_response_init(&r);
    srv_response_header(&r, "Allow", "GET");
    srv_response_header(&r, "allow", "POST");
    ck_assert_uint_eq(r.n_headers, 1);
    ck_assert_str_eq(r.header_values[0], "POST");
    for (int i = 0; i < 20; i++)
        srv_response_header(&r, i % 2 ? "X-A" : "X-B", "%d", i);
    ck_assert_uint_eq(r.n_headers, 3);
    srv_response_clear(&r);
    ck_assert_uint_eq(r.n_headers, 0);
    ck_assert_int_eq(r.status, 200);
}
END_TEST

START_TEST(error_envelope_escapes_message)
{
    srv_response r;
    srv_err e;
    cJSON *j;
    const cJSON *err;

    srv_response_init(&r);
    srv_response_header(&r, "X-Stale", "1");
    srv_err_set(&e, 400, SRV_CODE_INVALID, "/key/3", "bad \"quote\" and \\ and \n");
    srv_respond_error(&r, &e);
    ck_assert_int_eq(r.status, 400);
    ck_assert_uint_eq(r.n_headers, 0);
    j = cJSON_ParseWithLength(r.body, r.body_len);
    ck_assert_ptr_nonnull(j);
    err = cJSON_GetObjectItem(j, "error");
    ck_assert_str_eq(cJSON_GetObjectItem(err, "message")->valuestring,
                     "bad \"quote\" and \\ and \n");
    ck_assert_str_eq(cJSON_GetObjectItem(err, "field")->valuestring, "/key/3");
    cJSON_Delete(j);
    srv_response_clear(&r);
}
END_TEST

START_TEST(request_lookups)
{
    srv_kv headers[] = {{"Content-Type", "application/json"}, {"X-Empty", NULL}};
    srv_kv query[] = {{"format", "svg"}, {"flag", NULL}};
    srv_request req;

    memset(&req, 0, sizeof req);
    req.headers = headers;
    req.n_headers = 2;
    req.query = query;
    req.n_query = 2;
    ck_assert_str_eq(srv_req_header(&req, "content-TYPE"), "application/json");
    ck_assert_str_eq(srv_req_header(&req, "x-empty"), "");
    ck_assert_ptr_null(srv_req_header(&req, "Accept"));
    ck_assert_str_eq(srv_req_query(&req, "format"), "svg");
    ck_assert_str_eq(srv_req_query(&req, "flag"), "");
    ck_assert_ptr_null(srv_req_query(&req, "FORMAT"));
}
END_TEST

START_TEST(thread_ws_is_reused)
{
    attn_ws *a = srv_thread_ws();

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(srv_thread_ws(), a);
}
END_TEST

START_TEST(clock_is_monotonic)
{
    double a = srv_now_ms();
    double b = srv_now_ms();

    ck_assert(a > 0);
    ck_assert(b >= a);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *tc = tcase_create("dispatch");
    TCase *tp = tcase_create("patterns");
    TCase *th = tcase_create("helpers");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, unknown_path_is_404_naming_it);
    tcase_add_test(tc, trailing_slash_is_another_path);
    tcase_add_test(tc, wrong_method_is_405_with_allow);
    tcase_add_test(tc, options_is_204_with_allow);
    tcase_add_test(tc, head_is_served_by_get);
    tcase_add_test(tc, non_json_content_type_is_415);
    tcase_add_test(tc, json_content_type_variants_reach_the_handler);
    tcase_add_test(tc, healthz_ok_even_while_draining);
    tcase_add_test(tc, readyz_ready_then_draining);
    tcase_add_test(tc, readyz_not_ready_before_start);
    tcase_add_test(tc, info_reports_limits_and_endpoints);
    tcase_add_test(tc, openapi_served_as_yaml);
    tcase_add_test(tc, route_table_is_complete);
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(tp, setup, NULL);
    tcase_add_test(tp, pattern_captures_one_segment);
    tcase_add_test(tp, literal_route_before_pattern_wins);
    tcase_add_test(tp, pattern_needs_a_nonempty_segment);
    tcase_add_test(tp, pattern_segment_too_long_is_404);
    tcase_add_test(tp, pattern_allow_lists_every_method);
    tcase_add_test(tp, pattern_json_route_checks_content_type);
    suite_add_tcase(s, tp);

    tcase_add_test(th, response_header_replaces_same_name);
    tcase_add_test(th, error_envelope_escapes_message);
    tcase_add_test(th, request_lookups);
    tcase_add_test(th, thread_ws_is_reused);
    tcase_add_test(th, clock_is_monotonic);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(router_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
