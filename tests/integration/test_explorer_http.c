/* test_explorer_http.c - the explorer's files and CORS over real HTTP: assets, ETags, preflight. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <check.h>

#include "util_harness.h"

static const char *SMALL =
    "{\"query\": [[1, 0]], \"key\": [[1, 0], [0, 1]], \"value\": [[1], [2]]}";

static void request(const it_server *s, const char *method, const char *path, const char *body,
                    const char *const *headers, it_resp *r)
{
    it_req rq = {.method = method, .path = path, .headers = headers};
    if (body) {
        rq.body = body;
        rq.body_len = strlen(body);
        rq.send_body = true;
    }
    ck_assert_msg(it_http(s, &rq, r), "%s %s: %s", method, path, r->curl_error);
}

static bool has_header(const it_resp *r, const char *name, const char *value)
{
    char got[256];
    return it_resp_header(r, name, got, sizeof got) && (value == NULL || strcmp(got, value) == 0);
}

static void expect_header(const it_resp *r, const char *name, const char *value)
{
    char got[256] = "";
    ck_assert_msg(it_resp_header(r, name, got, sizeof got), "no %s in:\n%s", name, r->raw_headers);
    ck_assert_msg(strcmp(got, value) == 0, "%s: '%s', expected '%s'", name, got, value);
}

static void expect_no_cors(const it_resp *r)
{
    ck_assert_msg(strstr(r->raw_headers, "Access-Control-") == NULL, "CORS headers in:\n%s",
                  r->raw_headers);
}

/* ------------------------------------------------------------------ the page */

START_TEST(root_serves_the_explorer_page)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    it_get_ok(s, "/", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ck_assert_str_eq(r.content_type, "text/html; charset=utf-8");
    ck_assert_ptr_nonnull(
        strstr(r.body, "<script type=\"module\" src=\"assets/app.js\"></script>"));
    ck_assert(has_header(&r, "ETag", NULL));
    expect_header(&r, "Cache-Control", "no-cache");
    ck_assert(has_header(&r, "Content-Security-Policy", NULL));
    it_resp_free(&r);

    /* HEAD: the headers without the body */
    request(s, "HEAD", "/", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(assets_are_served_with_types_and_revalidated_by_etag)
{
    static const char *const files[][2] = {
        {"/assets/app.js", "text/javascript; charset=utf-8"},
        {"/assets/style.css", "text/css; charset=utf-8"},
        {"/assets/icon.svg", "image/svg+xml"},
    };
    it_server *s = it_start_ok(NULL);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        it_resp r;
        char etag[64], inm[96];
        it_get_ok(s, files[i][0], &r);
        ck_assert_msg(r.status == 200, "%s: %s", files[i][0], it_resp_describe(&r));
        ck_assert_str_eq(r.content_type, files[i][1]);
        ck_assert_uint_gt(r.body_len, 100);
        ck_assert(it_resp_header(&r, "ETag", etag, sizeof etag));
        it_resp_free(&r);

        snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
        const char *const h[] = {inm, NULL};
        request(s, "GET", files[i][0], NULL, h, &r);
        ck_assert_msg(r.status == 304, "%s with its ETag: %s", files[i][0], it_resp_describe(&r));
        ck_assert_uint_eq(r.body_len, 0);
        it_resp_free(&r);
    }
    it_resp r;
    it_get_ok(s, "/assets/missing.js", &r);
    it_expect_error_ok(&r, 404, "not_found", "", "unknown asset");
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------------ CORS */

START_TEST(cors_preflight_and_answers_for_configured_origins_only)
{
    it_server *s =
        it_start_ok("--cors-origin", "http://page.example:8000,http://other.example", NULL);
    it_resp r;

    const char *const pre[] = {"Origin: http://page.example:8000",
                               "Access-Control-Request-Method: POST",
                               "Access-Control-Request-Headers: content-type", NULL};
    request(s, "OPTIONS", "/v1/attention", NULL, pre, &r);
    ck_assert_msg(r.status == 204, "%s", it_resp_describe(&r));
    expect_header(&r, "Access-Control-Allow-Origin", "http://page.example:8000");
    expect_header(&r, "Access-Control-Allow-Methods", "POST");
    expect_header(&r, "Access-Control-Allow-Headers", "Content-Type, Authorization, Accept");
    expect_header(&r, "Access-Control-Max-Age", "600");
    expect_header(&r, "Vary", "Origin");
    expect_header(&r, "Allow", "POST");
    it_resp_free(&r);

    const char *const post[] = {"Origin: http://other.example", NULL};
    request(s, "POST", "/v1/attention", SMALL, post, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    expect_header(&r, "Access-Control-Allow-Origin", "http://other.example");
    expect_header(&r, "Vary", "Accept, Origin");
    ck_assert(has_header(&r, "Access-Control-Expose-Headers", NULL));
    it_resp_free(&r);

    const char *const foreign[] = {"Origin: http://evil.example",
                                   "Access-Control-Request-Method: POST", NULL};
    request(s, "OPTIONS", "/v1/attention", NULL, foreign, &r);
    ck_assert_int_eq(r.status, 204);
    expect_no_cors(&r);
    it_resp_free(&r);
    request(s, "POST", "/v1/attention", SMALL, foreign, &r);
    ck_assert_int_eq(r.status, 200);
    expect_no_cors(&r);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(cors_on_answers_the_transport_makes)
{
    /* a 413 decided from Content-Length never reaches the router: it is still readable */
    it_server *s =
        it_start_ok("--cors-origin", "http://page.example", "--max-body-bytes", "64", NULL);
    it_resp r;
    const char *const h[] = {"Origin: http://page.example", NULL};
    char big[256];
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    request(s, "POST", "/v1/attention", big, h, &r);
    ck_assert_msg(r.status == 413, "%s", it_resp_describe(&r));
    expect_header(&r, "Access-Control-Allow-Origin", "http://page.example");
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(cors_star_from_the_environment)
{
    const char *env[] = {"ATTN_CORS_ORIGIN=*", NULL};
    it_server *s = it_server_start(NULL, env);
    ck_assert_ptr_nonnull(s);
    it_resp r;
    const char *const h[] = {"Origin: https://anywhere.example", NULL};
    request(s, "GET", "/v1/info", NULL, h, &r);
    ck_assert_int_eq(r.status, 200);
    expect_header(&r, "Access-Control-Allow-Origin", "*");
    ck_assert(!has_header(&r, "Vary", NULL));
    cJSON *info = it_resp_json_ok(&r);
    const cJSON *origins = cJSON_GetObjectItem(cJSON_GetObjectItem(info, "server"), "cors_origins");
    ck_assert_msg(cJSON_IsArray(origins) && cJSON_GetArraySize(origins) == 1 &&
                      strcmp(cJSON_GetArrayItem(origins, 0)->valuestring, "*") == 0,
                  "%s", r.body);
    cJSON_Delete(info);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(no_cors_without_the_flag)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    const char *const h[] = {"Origin: http://page.example", "Access-Control-Request-Method: POST",
                             NULL};
    request(s, "OPTIONS", "/v1/attention", NULL, h, &r);
    ck_assert_int_eq(r.status, 204);
    expect_no_cors(&r);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(a_bad_cors_origin_stops_the_start)
{
    char out[2048];
    const char *args[] = {"--cors-origin", "http://page.example/", NULL};
    int st = it_run_binary(args, out, sizeof out, it_wait_s());
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d: %s", st, out);
    ck_assert_msg(strstr(out, "--cors-origin") != NULL && strstr(out, "path") != NULL, "%s", out);
}
END_TEST

static Suite *explorer_suite(void)
{
    Suite *s = suite_create("explorer_http");
    TCase *tc = tcase_create("explorer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, root_serves_the_explorer_page);
    tcase_add_test(tc, assets_are_served_with_types_and_revalidated_by_etag);
    tcase_add_test(tc, cors_preflight_and_answers_for_configured_origins_only);
    tcase_add_test(tc, cors_on_answers_the_transport_makes);
    tcase_add_test(tc, cors_star_from_the_environment);
    tcase_add_test(tc, no_cors_without_the_flag);
    tcase_add_test(tc, a_bad_cors_origin_stops_the_start);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(explorer_suite());
}
