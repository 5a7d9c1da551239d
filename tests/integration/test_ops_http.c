/* test_ops_http.c - operations over HTTP: API key, metrics, size limits, the computation limiter, access log. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "util_harness.h"

static const char *SMALL = "{\"query\": [[1, 0]], \"key\": [[1, 0]], \"value\": [[1]]}";

static long post_status(const it_server *s, const char *path, const char *body,
                        const char *const *headers, it_resp *r)
{
    it_req rq = {.method = "POST", .path = path, .body = body, .body_len = strlen(body),
                 .send_body = true, .headers = headers};
    ck_assert(it_http(s, &rq, r));
    return r->status;
}

START_TEST(api_key_guards_v1_and_leaves_health_and_metrics_open)
{
    it_server *s = it_start_ok("--api-key", "k3y-123", NULL);
    it_resp r;
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, NULL, &r), 401);
    it_expect_error_ok(&r, 401, "unauthenticated", "", "no key");
    ck_assert_msg(strstr(r.raw_headers, "WWW-Authenticate: Bearer") != NULL, "%s", r.raw_headers);
    it_resp_free(&r);
    static const char *const wrong[] = {"Authorization: Bearer k3y-12", NULL};
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, wrong, &r), 401);
    it_resp_free(&r);
    static const char *const longer[] = {"Authorization: Bearer k3y-1234", NULL};
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, longer, &r), 401);
    it_resp_free(&r);
    static const char *const basic[] = {"Authorization: Basic k3y-123", NULL};
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, basic, &r), 401);
    it_resp_free(&r);
    static const char *const right[] = {"Authorization: Bearer k3y-123", NULL};
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, right, &r), 200);
    it_resp_free(&r);
    static const char *const open_paths[] = {"/healthz", "/readyz", "/metrics", "/openapi.yaml"};
    for (size_t i = 0; i < 4; i++) {
        it_get_ok(s, open_paths[i], &r);
        ck_assert_msg(r.status == 200, "%s: %ld", open_paths[i], r.status);
        it_resp_free(&r);
    }
    it_get_ok(s, "/v1/info", &r);
    ck_assert_int_eq(r.status, 401);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(api_key_from_a_file_and_a_missing_file_stops_the_start)
{
    char path[] = "/tmp/attn-key-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    ck_assert_int_eq(write(fd, "  from-file\n", 12), 12);
    close(fd);
    it_server *s = it_start_ok("--api-key-file", path, NULL);
    it_resp r;
    static const char *const right[] = {"Authorization: Bearer from-file", NULL};
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, right, &r), 200);
    it_resp_free(&r);
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, NULL, &r), 401);
    it_resp_free(&r);
    it_stop_ok(s);
    unlink(path);
    char out[1024];
    const char *const args[] = {"--api-key-file", "/nonexistent/key", NULL};
    int st = it_run_binary(args, out, sizeof out, it_wait_s());
    ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2, "status %d: %s", st, out);
    ck_assert_msg(strstr(out, "--api-key-file") != NULL, "%s", out);
}
END_TEST

/* The value of the sample line that starts with prefix (-1 when absent). */
static double sample(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0 && p[strlen(prefix)] == ' ')
            return strtod(p + strlen(prefix) + 1, NULL);
    return -1;
}

START_TEST(metrics_count_requests_by_route_status_and_reason)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, NULL, &r), 200);
        it_resp_free(&r);
    }
    ck_assert_int_eq(post_status(s, "/v1/attention", "{\"query\": 1}", NULL, &r), 400);
    it_resp_free(&r);
    it_get_ok(s, "/nowhere", &r);
    it_resp_free(&r);
    it_get_ok(s, "/metrics", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(strstr(r.content_type, "text/plain") != NULL, "%s", r.content_type);
    const char *m = r.body;
    ck_assert_double_eq(
        sample(m, "attention_requests_total{route=\"POST /v1/attention\",status=\"200\"}"), 3);
    ck_assert_double_eq(
        sample(m, "attention_requests_total{route=\"POST /v1/attention\",status=\"400\"}"), 1);
    ck_assert_double_eq(sample(m, "attention_requests_total{route=\"unmatched\",status=\"404\"}"),
                        1);
    ck_assert_double_eq(sample(m, "attention_rejected_total{reason=\"invalid_argument\"}"), 1);
    ck_assert_double_eq(sample(m, "attention_rejected_total{reason=\"not_found\"}"), 1);
    ck_assert_double_eq(
        sample(m, "attention_request_duration_seconds_count{route=\"POST /v1/attention\"}"), 4);
    ck_assert(sample(m, "attention_request_bytes_total{route=\"POST /v1/attention\"}") >=
              3.0 * (double)strlen(SMALL));
    ck_assert_double_eq(sample(m, "attention_ready"), 1);
    ck_assert(sample(m, "attention_in_flight") >= 1); /* this request */
    ck_assert_msg(strstr(m, "attention_build_info{version=\"0.1.0\"") != NULL, "%s", m);
    ck_assert(sample(m, "attention_queue_wait_seconds_count{}") >= 4);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(size_limits_answer_413_naming_the_limit_and_the_field)
{
    it_server *s = it_start_ok("--max-seq-len", "4", "--max-heads", "2", "--max-layers", "1",
                               NULL);
    it_resp r;
    static const struct {
        const char *path, *body, *field, *flag;
    } rows[] = {
        {"/v1/attention",
         "{\"query\": [[1],[2],[3],[4],[5]], \"key\": [[1]], \"value\": [[1]]}", "/query",
         "--max-seq-len"},
        {"/v1/attention",
         "{\"query\": [[1]], \"key\": [[1],[2],[3],[4],[5]], \"value\": [[1],[2],[3],[4],[5]]}",
         "/key", "--max-seq-len"},
        {"/v1/multihead_attention", "{\"query\": [[1, 2, 3, 4]], \"num_heads\": 4, \"seed\": 1}",
         "/num_heads", "--max-heads"},
        {"/v1/transformer/encoder",
         "{\"input\": [[1, 2]], \"nhead\": 1, \"num_layers\": 2, \"seed\": 1}", "/num_layers",
         "--max-layers"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        post_status(s, rows[i].path, rows[i].body, NULL, &r);
        it_expect_error_ok(&r, 413, "payload_too_large", rows[i].field, rows[i].body);
        ck_assert_msg(strstr(r.body, rows[i].flag) != NULL, "%s", r.body);
        it_resp_free(&r);
    }
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, NULL, &r), 200);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

typedef struct slow_call {
    const it_server *s;
    long status;
} slow_call;

/* A computation that keeps the only slot busy for a while. */
static void *slow_request(void *arg)
{
    slow_call *c = arg;
    cJSON *req = cJSON_CreateObject();
    cJSON *x = cJSON_AddArrayToObject(req, "input");
    for (int i = 0; i < 400; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int j = 0; j < 64; j++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((i * 7 + j) % 5 - 2));
        cJSON_AddItemToArray(x, row);
    }
    cJSON_AddNumberToObject(req, "nhead", 4);
    cJSON_AddNumberToObject(req, "num_layers", 64);
    cJSON_AddNumberToObject(req, "dim_feedforward", 2048); /* about a second of work */
    cJSON_AddNumberToObject(req, "seed", 1);
    cJSON *ret = cJSON_AddArrayToObject(req, "return");
    cJSON_AddItemToArray(ret, cJSON_CreateString("output"));
    it_resp r;
    it_post_json_ok(c->s, "/v1/transformer/encoder", req, &r);
    c->status = r.status;
    it_resp_free(&r);
    cJSON_Delete(req);
    return NULL;
}

START_TEST(a_busy_slot_answers_429_with_retry_after_and_health_never_waits)
{
    it_server *s = it_start_ok("--max-concurrent", "1", "--queue-timeout-ms", "50", NULL);
    slow_call c = {.s = s};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, slow_request, &c), 0);
    it_sleep_ms(100); /* the slow one has the slot */
    it_resp r;
    post_status(s, "/v1/attention", SMALL, NULL, &r);
    it_expect_error_ok(&r, 429, "too_many_requests", "", "second computation");
    ck_assert_msg(strstr(r.raw_headers, "Retry-After: 1") != NULL, "%s", r.raw_headers);
    it_resp_free(&r);
    it_get_ok(s, "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.elapsed_s < 0.05, "health waited %g s", r.elapsed_s);
    it_resp_free(&r);
    pthread_join(t, NULL);
    ck_assert_int_eq(c.status, 200);
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, NULL, &r), 200);
    it_resp_free(&r);
    it_get_ok(s, "/metrics", &r);
    ck_assert(sample(r.body, "attention_rejected_total{reason=\"too_many_requests\"}") >= 1);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(access_log_writes_one_json_line_per_request)
{
    it_server *s = it_start_ok("--access-log", NULL);
    it_resp r;
    ck_assert_int_eq(post_status(s, "/v1/attention", SMALL, NULL, &r), 200);
    it_resp_free(&r);
    it_get_ok(s, "/healthz", &r);
    it_resp_free(&r);
    it_sleep_ms(50); /* the line is written as the answer goes out */
    size_t len = 0;
    char *text = it_read_file(s->stderr_path, &len);
    ck_assert(text != NULL);
    it_stop_ok(s);
    int lines = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        if (line[0] != '{')
            continue;
        cJSON *j = cJSON_Parse(line);
        ck_assert_msg(j != NULL, "not JSON: %s", line);
        ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "time")));
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "status")));
        ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(j, "ms")));
        lines++;
        cJSON_Delete(j);
    }
    ck_assert_int_eq(lines, 2);
    free(text);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops_http");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, api_key_guards_v1_and_leaves_health_and_metrics_open);
    tcase_add_test(tc, api_key_from_a_file_and_a_missing_file_stops_the_start);
    tcase_add_test(tc, metrics_count_requests_by_route_status_and_reason);
    tcase_add_test(tc, size_limits_answer_413_naming_the_limit_and_the_field);
    tcase_add_test(tc, a_busy_slot_answers_429_with_retry_after_and_health_never_waits);
    tcase_add_test(tc, access_log_writes_one_json_line_per_request);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(ops_suite());
}
