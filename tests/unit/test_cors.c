/* test_cors.c - --cors-origin parsing, origin checks, the CORS headers of dispatch (no sockets). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cors.h"
#include "srv.h"

/* ------------------------------------------------------------------ config */

static const char *fake_env_name;
static const char *fake_env_value;

static const char *fake_getenv(const char *name)
{
    return fake_env_name && strcmp(name, fake_env_name) == 0 ? fake_env_value : NULL;
}

static srv_config cfg;
static char out[8192];
static char err[512];

static void setup(void)
{
    fake_env_name = fake_env_value = NULL;
    srv_config_defaults(&cfg);
    out[0] = err[0] = '\0';
}

static srv_cli_action parse_v(const char *const *flags)
{
    char *argv[16];
    int argc = 0;

    argv[argc++] = (char *)"attention-server";
    for (size_t i = 0; flags[i] != NULL; i++)
        argv[argc++] = (char *)flags[i];
    argv[argc] = NULL;
    return srv_config_parse(&cfg, argc, argv, fake_getenv, out, sizeof out, err, sizeof err);
}

#define PARSE(...) parse_v((const char *const[]){__VA_ARGS__, NULL})

START_TEST(cors_origin_off_by_default)
{
    ck_assert_str_eq(cfg.cors_origins, "");
    ck_assert(!srv_cors_allowed(&cfg, "http://127.0.0.1:8080"));
}
END_TEST

START_TEST(cors_origin_repeatable_and_comma_separated)
{
    ck_assert_int_eq(PARSE("--cors-origin", "http://a.example",
                           "--cors-origin=https://b.example:8443, "
                           "http://c.example"),
                     SRV_CLI_RUN);
    ck_assert_str_eq(cfg.cors_origins, "http://a.example,https://b.example:8443,http://c.example");
    ck_assert(srv_cors_allowed(&cfg, "http://a.example"));
    ck_assert(srv_cors_allowed(&cfg, "HTTPS://B.example:8443"));
    ck_assert(srv_cors_allowed(&cfg, "http://c.example"));
    ck_assert(!srv_cors_allowed(&cfg, "http://b.example:8443"));
    ck_assert(!srv_cors_allowed(&cfg, "http://a.example.evil"));
    ck_assert(!srv_cors_allowed(&cfg, "http://a.exampl"));
    ck_assert(!srv_cors_allowed(&cfg, ""));
    ck_assert(!srv_cors_allowed(&cfg, NULL));
}
END_TEST

START_TEST(cors_origin_duplicates_kept_once)
{
    ck_assert_int_eq(PARSE("--cors-origin", "http://a.example,http://a.example", "--cors-origin",
                           "HTTP://A.EXAMPLE"),
                     SRV_CLI_RUN);
    ck_assert_str_eq(cfg.cors_origins, "http://a.example");
}
END_TEST

START_TEST(cors_origin_from_env_and_flags_replace_it)
{
    fake_env_name = "ATTN_CORS_ORIGIN";
    fake_env_value = "http://env.example, *";
    ck_assert_int_eq(PARSE("--quiet"), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.cors_origins, "http://env.example,*");
    ck_assert(srv_cors_allowed(&cfg, "http://anything.example"));

    setup();
    fake_env_name = "ATTN_CORS_ORIGIN";
    fake_env_value = "http://env.example";
    ck_assert_int_eq(
        PARSE("--cors-origin", "http://flag.example", "--cors-origin", "http://two.example"),
        SRV_CLI_RUN);
    ck_assert_str_eq(cfg.cors_origins, "http://flag.example,http://two.example");

    setup();
    fake_env_name = "ATTN_CORS_ORIGIN";
    fake_env_value = "http://bad.example/";
    ck_assert_int_eq(PARSE("--quiet"), SRV_CLI_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "ATTN_CORS_ORIGIN"));
}
END_TEST

START_TEST(cors_origin_bad_values_rejected_with_reason)
{
    static const char *const bad[][2] = {
        {"http://a.example/", "path"},
        {"http://a.example/app", "path"},
        {"a.example", "not an origin"},
        {"http://", "no host"},
        {"://a.example", "not an origin"},
        {"http://a b", "not allowed"},
        {"http://u@a.example", "not allowed"},
        {"", "empty"},
        {"http://a.example,,http://b.example", "empty"},
        {"1http://a", "not an origin"},
        {"**", "not an origin"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setup();
        ck_assert_int_eq(PARSE("--cors-origin", bad[i][0]), SRV_CLI_ERROR);
        ck_assert_msg(strstr(err, "--cors-origin") != NULL, "'%s': %s", bad[i][0], err);
        ck_assert_msg(strstr(err, bad[i][1]) != NULL, "'%s': '%s' lacks '%s'", bad[i][0], err,
                      bad[i][1]);
        ck_assert(strchr(err, '\n') == NULL);
    }
    setup();
    char longer[200];
    memset(longer, 'a', sizeof longer - 1);
    memcpy(longer, "http://", 7);
    longer[sizeof longer - 1] = '\0';
    ck_assert_int_eq(PARSE("--cors-origin", longer), SRV_CLI_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "longer than"));
}
END_TEST

START_TEST(cors_origin_list_has_a_limit)
{
    char list[2048] = "";
    for (int i = 0; i < 60; i++) {
        char one[64];
        snprintf(one, sizeof one, "%shttp://host%03d.example:8080", i ? "," : "", i);
        strcat(list, one);
    }
    ck_assert_int_eq(PARSE("--cors-origin", list), SRV_CLI_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "more than 1023"));
    ck_assert_uint_lt(strlen(cfg.cors_origins), sizeof cfg.cors_origins);
}
END_TEST

START_TEST(help_names_the_cors_flag)
{
    ck_assert_int_eq(PARSE("--help"), SRV_CLI_EXIT);
    ck_assert_ptr_nonnull(strstr(out, "--cors-origin ORIGIN"));
    ck_assert_ptr_nonnull(strstr(out, "ATTN_CORS_ORIGIN"));
}
END_TEST

/* ------------------------------------------------------------------ dispatch */

static srv_app app;

static void app_setup(void)
{
    setup();
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

/* Dispatches a request with up to three extra headers (NULL-terminated name/value pairs). */
static void dispatch(const char *method, const char *path, const char *body, srv_response *res,
                     const char *h1, const char *v1, const char *h2, const char *v2)
{
    srv_request req;
    srv_kv headers[3];
    size_t n = 0;

    headers[n++] = (srv_kv){"Content-Type", "application/json"};
    if (h1)
        headers[n++] = (srv_kv){h1, v1};
    if (h2)
        headers[n++] = (srv_kv){h2, v2};
    memset(&req, 0, sizeof req);
    req.method = method;
    req.path = path;
    req.headers = headers;
    req.n_headers = n;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    srv_response_init(res);
    srv_dispatch(&app, &req, res);
}

static void assert_no_cors(const srv_response *r)
{
    for (size_t i = 0; i < r->n_headers; i++)
        ck_assert_msg(strncasecmp(r->header_names[i], "Access-Control-", 15) != 0, "%s: %s",
                      r->header_names[i], r->header_values[i]);
}

static void allow_origins(const char *list)
{
    snprintf(app.config.cors_origins, sizeof app.config.cors_origins, "%s", list);
}

static const char *SMALL = "{\"query\": [[1, 0]], \"key\": [[1, 0]], \"value\": [[1]]}";

START_TEST(preflight_from_an_allowed_origin_gets_204_and_the_access_control_headers)
{
    srv_response r;
    allow_origins("http://a.example,http://b.example");
    dispatch("OPTIONS", "/v1/attention", NULL, &r, "Origin", "http://b.example",
             "Access-Control-Request-Method", "POST");
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(header_of(&r, "Allow"), "POST");
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "http://b.example");
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Methods"), "POST");
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Headers"),
                     "Content-Type, Authorization, Accept");
    ck_assert_str_eq(header_of(&r, "Access-Control-Max-Age"), "600");
    ck_assert_str_eq(header_of(&r, "Vary"), "Origin");
    ck_assert_ptr_null(header_of(&r, "Access-Control-Expose-Headers"));
    ck_assert_uint_eq(r.body_len, 0);
    srv_response_clear(&r);
}
END_TEST

START_TEST(preflight_from_another_origin_gets_no_access_control_headers)
{
    srv_response r;
    allow_origins("http://a.example");
    dispatch("OPTIONS", "/v1/attention", NULL, &r, "Origin", "http://evil.example",
             "Access-Control-Request-Method", "POST");
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(header_of(&r, "Allow"), "POST");
    assert_no_cors(&r);
    ck_assert_str_eq(header_of(&r, "Vary"), "Origin");
    srv_response_clear(&r);
}
END_TEST

START_TEST(without_cors_origin_nothing_changes)
{
    srv_response r;
    dispatch("OPTIONS", "/v1/attention", NULL, &r, "Origin", "http://a.example",
             "Access-Control-Request-Method", "POST");
    ck_assert_int_eq(r.status, 204);
    assert_no_cors(&r);
    ck_assert_ptr_null(header_of(&r, "Vary"));
    srv_response_clear(&r);
    dispatch("GET", "/healthz", NULL, &r, "Origin", "http://a.example", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    assert_no_cors(&r);
    ck_assert_ptr_null(header_of(&r, "Vary"));
    srv_response_clear(&r);
}
END_TEST

START_TEST(answers_to_an_allowed_origin_carry_allow_origin_vary_and_exposed_headers)
{
    srv_response r;
    allow_origins("http://a.example");
    dispatch("POST", "/v1/attention", SMALL, &r, "Origin", "http://a.example", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "http://a.example");
    ck_assert_str_eq(header_of(&r, "Vary"), "Accept, Origin"); /* the pictures' Vary kept */
    ck_assert_ptr_nonnull(
        strstr(header_of(&r, "Access-Control-Expose-Headers"), "X-Inference-Time"));
    ck_assert_ptr_null(header_of(&r, "Access-Control-Allow-Methods"));
    srv_response_clear(&r);

    /* errors too, so the page can read the message */
    dispatch("GET", "/nowhere", NULL, &r, "Origin", "http://a.example", NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "http://a.example");
    srv_response_clear(&r);

    /* a request without Origin gets only Vary (caches must not mix the two) */
    dispatch("GET", "/healthz", NULL, &r, NULL, NULL, NULL, NULL);
    assert_no_cors(&r);
    ck_assert_str_eq(header_of(&r, "Vary"), "Origin");
    srv_response_clear(&r);
}
END_TEST

START_TEST(unauthenticated_answers_are_readable_by_allowed_origins)
{
    srv_response r;
    allow_origins("http://a.example");
    snprintf(app.config.api_key, sizeof app.config.api_key, "%s", "secret");
    dispatch("POST", "/v1/attention", SMALL, &r, "Origin", "http://a.example", NULL, NULL);
    ck_assert_int_eq(r.status, 401);
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "http://a.example");
    srv_response_clear(&r);
    /* the preflight itself needs no key: browsers never send Authorization with it */
    dispatch("OPTIONS", "/v1/attention", NULL, &r, "Origin", "http://a.example",
             "Access-Control-Request-Method", "POST");
    ck_assert_int_eq(r.status, 204);
    ck_assert_ptr_nonnull(strstr(header_of(&r, "Access-Control-Allow-Headers"), "Authorization"));
    srv_response_clear(&r);
}
END_TEST

START_TEST(star_allows_every_origin_without_vary)
{
    srv_response r;
    allow_origins("*");
    dispatch("GET", "/v1/info", NULL, &r, "Origin", "https://any.example:1234", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "*");
    ck_assert_ptr_null(header_of(&r, "Vary"));
    srv_response_clear(&r);
    dispatch("OPTIONS", "/healthz", NULL, &r, "Origin", "null", "Access-Control-Request-Method",
             "GET");
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "*");
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Methods"), "GET");
    srv_response_clear(&r);
}
END_TEST

START_TEST(plain_options_without_request_method_is_not_a_preflight)
{
    srv_response r;
    allow_origins("http://a.example");
    dispatch("OPTIONS", "/v1/attention", NULL, &r, "Origin", "http://a.example", NULL, NULL);
    ck_assert_int_eq(r.status, 204);
    ck_assert_str_eq(header_of(&r, "Access-Control-Allow-Origin"), "http://a.example");
    ck_assert_ptr_null(header_of(&r, "Access-Control-Allow-Methods"));
    srv_response_clear(&r);
}
END_TEST

START_TEST(apply_is_idempotent)
{
    srv_response r;
    srv_request req;
    srv_kv h[1] = {{"Origin", "http://a.example"}};
    allow_origins("http://a.example");
    memset(&req, 0, sizeof req);
    req.method = "GET";
    req.headers = h;
    req.n_headers = 1;
    srv_response_init(&r);
    srv_response_header(&r, "Vary", "Accept");
    srv_cors_apply(&app.config, &req, &r);
    size_t n = r.n_headers;
    srv_cors_apply(&app.config, &req, &r);
    ck_assert_uint_eq(r.n_headers, n);
    ck_assert_str_eq(header_of(&r, "Vary"), "Accept, Origin");
    srv_response_clear(&r);
}
END_TEST

static Suite *cors_suite(void)
{
    Suite *s = suite_create("cors");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, cors_origin_off_by_default);
    tcase_add_test(tc, cors_origin_repeatable_and_comma_separated);
    tcase_add_test(tc, cors_origin_duplicates_kept_once);
    tcase_add_test(tc, cors_origin_from_env_and_flags_replace_it);
    tcase_add_test(tc, cors_origin_bad_values_rejected_with_reason);
    tcase_add_test(tc, cors_origin_list_has_a_limit);
    tcase_add_test(tc, help_names_the_cors_flag);
    suite_add_tcase(s, tc);

    tc = tcase_create("dispatch");
    tcase_add_checked_fixture(tc, app_setup, NULL);
    tcase_add_test(tc, preflight_from_an_allowed_origin_gets_204_and_the_access_control_headers);
    tcase_add_test(tc, preflight_from_another_origin_gets_no_access_control_headers);
    tcase_add_test(tc, without_cors_origin_nothing_changes);
    tcase_add_test(tc, answers_to_an_allowed_origin_carry_allow_origin_vary_and_exposed_headers);
    tcase_add_test(tc, unauthenticated_answers_are_readable_by_allowed_origins);
    tcase_add_test(tc, star_allows_every_origin_without_vary);
    tcase_add_test(tc, plain_options_without_request_method_is_not_a_preflight);
    tcase_add_test(tc, apply_is_idempotent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cors_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
