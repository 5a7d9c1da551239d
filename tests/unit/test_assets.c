/* test_assets.c - the embedded explorer: its table, GET / and /assets/{name}, ETags, references. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "assets.h"
#include "srv.h"

static srv_app app;

static void setup(void)
{
    memset(&app, 0, sizeof app);
    srv_config_defaults(&app.config);
    app.ready = 1;
}

static const char *header_of(const srv_response *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->header_names[i], name) == 0)
            return r->header_values[i];
    return NULL;
}

static void get(const char *method, const char *path, const char *if_none_match, srv_response *res)
{
    srv_request req;
    srv_kv h[1] = {{"If-None-Match", if_none_match}};

    memset(&req, 0, sizeof req);
    req.method = method;
    req.path = path;
    req.headers = h;
    req.n_headers = if_none_match ? 1 : 0;
    srv_response_init(res);
    srv_dispatch(&app, &req, res);
}

/* ------------------------------------------------------------------ the table */

START_TEST(table_holds_the_page_and_its_files)
{
    static const char *const want[][2] = {
        {"index.html", "text/html; charset=utf-8"},
        {"app.js", "text/javascript; charset=utf-8"},
        {"style.css", "text/css; charset=utf-8"},
        {"draw.js", "text/javascript; charset=utf-8"},
        {"embed.js", "text/javascript; charset=utf-8"},
        {"api.js", "text/javascript; charset=utf-8"},
        {"icon.svg", "image/svg+xml"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const srv_asset *a = srv_asset_find(want[i][0]);
        ck_assert_msg(a != NULL, "no asset %s", want[i][0]);
        ck_assert_str_eq(a->content_type, want[i][1]);
        ck_assert_uint_gt(a->len, 100);
    }
    ck_assert_ptr_null(srv_asset_find("missing.js"));
    ck_assert_ptr_null(srv_asset_find(""));
    ck_assert_ptr_null(srv_asset_find(NULL));
}
END_TEST

START_TEST(etags_are_quoted_hashes_and_differ)
{
    for (size_t i = 0; i < srv_n_assets; i++) {
        const char *e = srv_assets[i].etag;
        ck_assert_uint_eq(strlen(e), 22);
        ck_assert(e[0] == '"' && e[21] == '"');
        for (int k = 1; k < 21; k++)
            ck_assert(isxdigit((unsigned char)e[k]));
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(srv_assets[j].etag, e);
        /* the table is sorted, names unique */
        if (i > 0)
            ck_assert_int_lt(strcmp(srv_assets[i - 1].name, srv_assets[i].name), 0);
    }
}
END_TEST

/* Every "assets/NAME" in the page and every "./NAME.js" import in a script is embedded:
 * the page never asks for a file the server does not have. */
START_TEST(every_reference_of_the_page_is_embedded)
{
    size_t refs = 0;
    for (size_t i = 0; i < srv_n_assets; i++) {
        const srv_asset *a = &srv_assets[i];
        const char *text = (const char *)a->data;
        const char *needle = strcmp(a->name, "index.html") == 0 ? "assets/" : "from './";
        if (strncmp(a->content_type, "text/", 5) != 0)
            continue;
        for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
            char name[64];
            size_t n = 0;
            p += strlen(needle);
            while (n < sizeof name - 1 &&
                   (isalnum((unsigned char)p[n]) || p[n] == '.' || p[n] == '-' || p[n] == '_'))
                n++;
            memcpy(name, p, n);
            name[n] = '\0';
            ck_assert_msg(srv_asset_find(name) != NULL, "%s refers to %s, which is not embedded",
                          a->name, name);
            refs++;
        }
    }
    ck_assert_uint_ge(refs, 8);
}
END_TEST

START_TEST(page_uses_no_other_origin)
{
    for (size_t i = 0; i < srv_n_assets; i++) {
        const char *text = (const char *)srv_assets[i].data;
        if (strncmp(srv_assets[i].content_type, "text/", 5) != 0)
            continue;
        /* the only absolute URL allowed is the SVG namespace */
        for (const char *p = strstr(text, "http"); p; p = strstr(p + 1, "http")) {
            if (strncmp(p, "https://", 8) != 0 && strncmp(p, "http://", 7) != 0)
                continue;
            ck_assert_msg(strncmp(p, "http://www.w3.org/2000/svg", 26) == 0,
                          "%s names another origin: %.40s", srv_assets[i].name, p);
        }
    }
}
END_TEST

/* ------------------------------------------------------------------ routes */

START_TEST(root_serves_the_page_with_its_headers)
{
    srv_response r;
    get("GET", "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/html; charset=utf-8");
    const srv_asset *a = srv_asset_find("index.html");
    ck_assert_uint_eq(r.body_len, a->len);
    ck_assert_int_eq(memcmp(r.body, a->data, a->len), 0);
    ck_assert_ptr_nonnull(strstr(r.body, "<!doctype html>"));
    ck_assert_str_eq(header_of(&r, "ETag"), a->etag);
    ck_assert_str_eq(header_of(&r, "Cache-Control"), "no-cache");
    ck_assert_str_eq(header_of(&r, "X-Content-Type-Options"), "nosniff");
    ck_assert_ptr_nonnull(strstr(header_of(&r, "Content-Security-Policy"), "default-src 'self'"));
    srv_response_clear(&r);
}
END_TEST

START_TEST(assets_by_name_and_unknown_names_404)
{
    srv_response r;
    get("GET", "/assets/app.js", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.content_type, "text/javascript; charset=utf-8");
    ck_assert_ptr_null(header_of(&r, "Content-Security-Policy"));
    ck_assert_str_eq(header_of(&r, "ETag"), srv_asset_find("app.js")->etag);
    srv_response_clear(&r);

    static const char *const missing[] = {"/assets/nope.js", "/assets/APP.JS", "/assets/app.js.map",
                                          "/assets/..%2fsrv.h"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        get("GET", missing[i], NULL, &r);
        ck_assert_int_eq(r.status, 404);
        ck_assert_str_eq(r.content_type, "application/json");
        cJSON *j = cJSON_ParseWithLength(r.body, r.body_len);
        ck_assert_ptr_nonnull(j);
        const cJSON *e = cJSON_GetObjectItem(j, "error");
        ck_assert_str_eq(cJSON_GetObjectItem(e, "code")->valuestring, "not_found");
        ck_assert_ptr_nonnull(
            strstr(cJSON_GetObjectItem(e, "message")->valuestring, "no such asset"));
        cJSON_Delete(j);
        srv_response_clear(&r);
    }
    get("GET", "/assets/sub/app.js", NULL, &r); /* one segment only */
    ck_assert_int_eq(r.status, 404);
    srv_response_clear(&r);
}
END_TEST

START_TEST(if_none_match_answers_304_without_a_body)
{
    srv_response r;
    const char *etag = srv_asset_find("style.css")->etag;
    char list[128];

    get("GET", "/assets/style.css", etag, &r);
    ck_assert_int_eq(r.status, 304);
    ck_assert_ptr_null(r.body);
    ck_assert_str_eq(header_of(&r, "ETag"), etag);
    srv_response_clear(&r);

    snprintf(list, sizeof list, "\"old\", W/%s", etag);
    get("GET", "/assets/style.css", list, &r);
    ck_assert_int_eq(r.status, 304);
    srv_response_clear(&r);

    get("GET", "/assets/style.css", "*", &r);
    ck_assert_int_eq(r.status, 304);
    srv_response_clear(&r);

    get("GET", "/assets/style.css", "\"0123\"", &r);
    ck_assert_int_eq(r.status, 200);
    srv_response_clear(&r);
    get("GET", "/", etag, &r); /* another file's tag */
    ck_assert_int_eq(r.status, 200);
    srv_response_clear(&r);
}
END_TEST

START_TEST(head_and_other_methods)
{
    srv_response r;
    get("HEAD", "/", NULL, &r);
    ck_assert_int_eq(r.status, 200); /* the transport drops the body */
    srv_response_clear(&r);
    get("POST", "/", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    ck_assert_str_eq(header_of(&r, "Allow"), "GET");
    srv_response_clear(&r);
    get("DELETE", "/assets/app.js", NULL, &r);
    ck_assert_int_eq(r.status, 405);
    srv_response_clear(&r);
}
END_TEST

START_TEST(the_page_stays_open_with_an_api_key)
{
    srv_response r;
    snprintf(app.config.api_key, sizeof app.config.api_key, "%s", "secret");
    get("GET", "/", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    srv_response_clear(&r);
    get("GET", "/assets/app.js", NULL, &r);
    ck_assert_int_eq(r.status, 200);
    srv_response_clear(&r);
    get("GET", "/v1/info", NULL, &r);
    ck_assert_int_eq(r.status, 401);
    srv_response_clear(&r);
}
END_TEST

static Suite *assets_suite(void)
{
    Suite *s = suite_create("assets");
    TCase *tc = tcase_create("assets");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, table_holds_the_page_and_its_files);
    tcase_add_test(tc, etags_are_quoted_hashes_and_differ);
    tcase_add_test(tc, every_reference_of_the_page_is_embedded);
    tcase_add_test(tc, page_uses_no_other_origin);
    tcase_add_test(tc, root_serves_the_page_with_its_headers);
    tcase_add_test(tc, assets_by_name_and_unknown_names_404);
    tcase_add_test(tc, if_none_match_answers_304_without_a_body);
    tcase_add_test(tc, head_and_other_methods);
    tcase_add_test(tc, the_page_stays_open_with_an_api_key);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(assets_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
