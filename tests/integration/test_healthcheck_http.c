/* test_healthcheck_http.c - `attention-server --healthcheck URL` against the real server. */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "util_harness.h"

/* Runs the binary in probe mode; returns its exit code (-1: did not exit). */
static int probe(const char *url, char *out, size_t out_len)
{
    const char *args[] = {"--healthcheck", url, NULL};
    int st = it_run_binary(args, out, out_len, it_wait_s());

    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(healthcheck_exits_0_on_healthz_and_readyz)
{
    it_server *s = it_start_ok(NULL);
    char url[128], out[1024];

    snprintf(url, sizeof url, "%s/healthz", s->base_url);
    ck_assert_msg(probe(url, out, sizeof out) == 0, "healthz probe: %s", out);
    ck_assert_msg(strstr(out, "200") != NULL, "the probe names the status: %s", out);
    snprintf(url, sizeof url, "%s/readyz", s->base_url);
    ck_assert_msg(probe(url, out, sizeof out) == 0, "readyz probe: %s", out);
    it_stop_ok(s);
}
END_TEST

START_TEST(healthcheck_needs_no_api_key)
{
    it_server *s = it_start_ok("--api-key", "s3cret", NULL);
    char url[128], out[1024];

    snprintf(url, sizeof url, "%s/readyz", s->base_url);
    ck_assert_msg(probe(url, out, sizeof out) == 0, "readyz probe with --api-key: %s", out);
    /* a protected route answers 401, which is not healthy */
    snprintf(url, sizeof url, "%s/v1/info", s->base_url);
    ck_assert_msg(probe(url, out, sizeof out) == 1, "401 must be unhealthy: %s", out);
    ck_assert_msg(strstr(out, "401") != NULL, "the probe names the status: %s", out);
    it_stop_ok(s);
}
END_TEST

START_TEST(healthcheck_exits_1_on_404_and_on_a_stopped_server)
{
    it_server *s = it_start_ok(NULL);
    char url[128], out[1024];

    snprintf(url, sizeof url, "%s/no-such-path", s->base_url);
    ck_assert_msg(probe(url, out, sizeof out) == 1, "404 must be unhealthy: %s", out);
    snprintf(url, sizeof url, "%s/readyz", s->base_url);
    it_stop_ok(s);
    double t0 = it_now_s();
    ck_assert_msg(probe(url, out, sizeof out) == 1, "a stopped server must be unhealthy: %s", out);
    ck_assert_msg(it_now_s() - t0 < 10.0, "a refused probe must end at once");
}
END_TEST

START_TEST(healthcheck_exits_2_on_a_bad_url)
{
    char out[1024];

    ck_assert_msg(probe("https://127.0.0.1:1/", out, sizeof out) == 2, "https: %s", out);
    ck_assert_msg(probe("http://example.com/", out, sizeof out) == 2, "a name: %s", out);
    ck_assert_msg(out[0] != '\0', "a bad URL must be explained");
}
END_TEST

static Suite *healthcheck_suite(void)
{
    Suite *s = suite_create("healthcheck_http");
    TCase *tc = tcase_create("probe");

    tcase_add_test(tc, healthcheck_exits_0_on_healthz_and_readyz);
    tcase_add_test(tc, healthcheck_needs_no_api_key);
    tcase_add_test(tc, healthcheck_exits_1_on_404_and_on_a_stopped_server);
    tcase_add_test(tc, healthcheck_exits_2_on_a_bad_url);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(healthcheck_suite());
}
