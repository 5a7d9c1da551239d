/* test_robustness.c - misbehaving clients must not disturb valid ones. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <check.h>

#include "util_harness.h"

static const char valid_body[] =
    "{\"query\": [[1, 0], [0, 1], [1, 1]], \"key\": [[1, 0], [0, 1]], "
    "\"value\": [[1, 2], [3, 4]], \"return\": [\"output\", \"weights\"]}";

/* ------------------------------------------------ background traffic */

/* A client sending valid requests in a loop while a test misbehaves; every
 * answer must equal the first one. */
typedef struct traffic {
    const it_server *s;
    atomic_int stop;
    int n_ok, n_bad;
    char first_bad[1024];
    cJSON *expected;
    pthread_t thread;
} traffic;

static void *traffic_main(void *arg)
{
    traffic *t = arg;
    CURL *h = curl_easy_init();
    while (!atomic_load(&t->stop)) {
        it_req rq = {.method = "POST",
                     .path = "/v1/attention",
                     .body = valid_body,
                     .body_len = strlen(valid_body),
                     .handle = h,
                     .timeout_ms = 20000};
        it_resp r;
        it_http(t->s, &rq, &r);
        char why[512] = "";
        bool ok = r.status == 200;
        if (ok) {
            cJSON *j = cJSON_ParseWithLength(r.body, r.body_len);
            ok = j != NULL && it_json_match(j, t->expected, 1e-6, 1e-6, why, sizeof why);
            cJSON_Delete(j);
        }
        if (ok) {
            t->n_ok++;
        } else if (t->n_bad++ == 0) {
            snprintf(t->first_bad, sizeof t->first_bad, "%s; %s", why, it_resp_describe(&r));
        }
        it_resp_free(&r);
        it_sleep_ms(2);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static void traffic_start(traffic *t, const it_server *s)
{
    memset(t, 0, sizeof *t);
    t->s = s;
    atomic_init(&t->stop, 0);
    it_resp r;
    it_post_ok(s, "/v1/attention", valid_body, &r);
    ck_assert_msg(r.status == 200, "the valid request: %s", it_resp_describe(&r));
    t->expected = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert(pthread_create(&t->thread, NULL, traffic_main, t) == 0);
}

/* Stops the client and asserts every one of its requests was answered right. */
static void traffic_stop_ok(traffic *t, const char *during)
{
    atomic_store(&t->stop, 1);
    pthread_join(t->thread, NULL);
    cJSON_Delete(t->expected);
    ck_assert_msg(t->n_bad == 0, "during %s, %d of %d valid requests failed; first: %s", during,
                  t->n_bad, t->n_bad + t->n_ok, t->first_bad);
    ck_assert_msg(t->n_ok > 0, "during %s, no valid request completed", during);
}

static void expect_healthy(const it_server *s, const char *after)
{
    it_resp r;
    it_get_ok(s, "/healthz", &r);
    ck_assert_msg(r.status == 200, "after %s: /healthz %s", after, it_resp_describe(&r));
    it_resp_free(&r);
}

/* Once the misbehaving clients are gone nothing is in flight: SIGTERM must
 * end the server at once, not after --drain-timeout (started at 20 s here). */
#define DRAIN_ARGS "--drain-timeout", "20"
#define PROMPT_EXIT_S 5.0

static void stop_promptly_ok(it_server *s, const char *after)
{
    double t0 = it_now_s();
    it_server_signal(s, SIGTERM);
    int st = it_server_wait(s, it_wait_s());
    double took = it_now_s() - t0;
    if (took > PROMPT_EXIT_S)
        it_server_dump_stderr(s, 4096);
    it_stop_ok(s);
    ck_assert_msg(st == 0, "after %s: exit status %d", after, st);
    ck_assert_msg(took <= PROMPT_EXIT_S,
                  "after %s, with every client gone, SIGTERM took %.1f s (the server still counts "
                  "requests in flight; see its stderr above)",
                  after, took);
}

static const char post_head[] = "POST /v1/attention HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "Content-Type: application/json\r\n";

/* ------------------------------------------------------------- tests */

START_TEST(partial_body_then_close_does_not_disturb_others)
{
    it_server *s = it_start_ok(DRAIN_ARGS, NULL);
    traffic t;
    traffic_start(&t, s);
    for (int i = 0; i < 20; i++) {
        int fd = it_raw_connect(s);
        ck_assert(fd >= 0);
        char head[256];
        snprintf(head, sizeof head, "%sContent-Length: %d\r\n\r\n", post_head, 1000 + i * 1000);
        ck_assert(it_raw_send_str(fd, head));
        ck_assert(it_raw_send_str(fd, "{\"query\": [[1, 0], [0"));
        if (i % 2)
            it_sleep_ms(20); /* let the server start reading first */
        close(fd);
    }
    /* Also: a connection that ends in the middle of the headers. */
    int fd = it_raw_connect(s);
    ck_assert(fd >= 0);
    ck_assert(it_raw_send_str(fd, "POST /v1/attention HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"));
    close(fd);
    it_sleep_ms(200);
    traffic_stop_ok(&t, "truncated uploads");
    expect_healthy(s, "truncated uploads");
    stop_promptly_ok(s, "truncated uploads");
}
END_TEST

START_TEST(idle_connection_dropped_after_timeout_others_served)
{
    it_server *s = it_start_ok("--timeout", "2", DRAIN_ARGS, NULL);
    traffic t;
    traffic_start(&t, s);
    int idle = it_raw_connect(s);
    int half = it_raw_connect(s);
    ck_assert(idle >= 0 && half >= 0);
    ck_assert(it_raw_send_str(half, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
    double t_idle = it_raw_wait_closed(idle, 15);
    double t_half = it_raw_wait_closed(half, 15);
    close(idle);
    close(half);
    traffic_stop_ok(&t, "idle connections");
    ck_assert_msg(t_idle >= 1.0 && t_idle <= 10.0,
                  "a silent connection must be dropped after --timeout 2 (took %.2f s, -1 = never)",
                  t_idle);
    ck_assert_msg(t_half >= 0 && t_half <= 10.0,
                  "a connection stuck in its headers must be dropped after --timeout 2 (%.2f s)",
                  t_half);
    expect_healthy(s, "idle connections");
    stop_promptly_ok(s, "idle connections");
}
END_TEST

/* Sends bytes and expects a 4xx answer (505 for an unknown HTTP version) or
 * a closed connection, soon. */
static void expect_rejected(const it_server *s, const void *bytes, size_t len, const char *what)
{
    int fd = it_raw_connect(s);
    ck_assert(fd >= 0);
    it_raw_send(fd, bytes, len);
    it_raw_resp rr;
    it_raw_read_response(fd, 10, &rr);
    close(fd);
    bool ok =
        (rr.status >= 400 && rr.status < 500) || rr.status == 505 || (rr.status == 0 && rr.eof);
    ck_assert_msg(ok, "%s: expected a 4xx/505 answer or a closed connection, got %s%d: %.300s",
                  what, rr.timed_out ? "no answer in 10 s, status " : "status ", rr.status,
                  rr.data);
    free(rr.data);
}

START_TEST(garbage_request_line_rejected_others_served)
{
    it_server *s = it_start_ok(DRAIN_ARGS, NULL);
    traffic t;
    traffic_start(&t, s);
    const char *texts[] = {
        "HELLO\r\n\r\n",
        "GARBAGE GARBAGE GARBAGE GARBAGE\r\n\r\n",
        "GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n",
        "POST /v1/attention HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        "POST /v1/attention HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        "POST /v1/attention HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        expect_rejected(s, texts[i], strlen(texts[i]), texts[i]);
    unsigned char junk[512];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    junk[100] = 0;
    memcpy(junk + sizeof junk - 4, "\r\n\r\n", 4);
    expect_rejected(s, junk, sizeof junk, "binary junk");
    /* A 100 KB header line. */
    size_t big = 100 * 1024;
    char *line = malloc(big + 64);
    ck_assert(line != NULL);
    int n = sprintf(line, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(line + n, 'a', big);
    memcpy(line + n + big, "\r\n\r\n", 4);
    expect_rejected(s, line, (size_t)n + big + 4, "a 100 KB header");
    free(line);
    traffic_stop_ok(&t, "garbage requests");
    expect_healthy(s, "garbage requests");
    stop_promptly_ok(s, "garbage requests");
}
END_TEST

START_TEST(request_sent_byte_by_byte_is_answered)
{
    it_server *s = it_start_ok(NULL);
    char req[1024];
    snprintf(req, sizeof req, "%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s", post_head,
             strlen(valid_body), valid_body);
    int fd = it_raw_connect(s);
    ck_assert(fd >= 0);
    for (size_t i = 0; req[i] != '\0'; i++) {
        ck_assert(it_raw_send(fd, req + i, 1));
        if (i % 16 == 0)
            it_sleep_ms(1);
    }
    it_raw_resp rr;
    it_raw_read_response(fd, 10, &rr);
    close(fd);
    ck_assert_msg(rr.status == 200, "status %d: %.300s", rr.status, rr.data);
    ck_assert_msg(strstr(rr.data, "\"output\"") != NULL, "no output: %.300s", rr.data);
    free(rr.data);
    it_stop_ok(s);
}
END_TEST

START_TEST(pipelined_requests_answered_in_order)
{
    it_server *s = it_start_ok(NULL);
    int fd = it_raw_connect(s);
    ck_assert(fd >= 0);
    ck_assert(it_raw_send_str(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                  "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    /* Read until the server closes after the second answer. */
    char buf[8192];
    size_t len = 0;
    double deadline = it_now_s() + 10;
    while (len + 1 < sizeof buf && it_now_s() < deadline) {
        ssize_t r = recv(fd, buf + len, sizeof buf - len - 1, MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r > 0)
            len += (size_t)r;
        else
            it_sleep_ms(5);
    }
    buf[len] = '\0';
    close(fd);
    const char *first = strstr(buf, "HTTP/1.1 200");
    const char *second = first != NULL ? strstr(first + 1, "HTTP/1.1 200") : NULL;
    ck_assert_msg(first != NULL && second != NULL, "two 200 answers expected: %.600s", buf);
    const char *ok = strstr(buf, "\"ok\""), *ready = strstr(buf, "\"ready\"");
    ck_assert_msg(ok != NULL && ready != NULL && ok < second && ready > second,
                  "answers must come in request order: %.600s", buf);
    it_stop_ok(s);
}
END_TEST

START_TEST(many_idle_connections_do_not_block_service)
{
    it_server *s = it_start_ok(DRAIN_ARGS, NULL);
    enum { N_IDLE = 32 };
    int fds[N_IDLE];
    for (int i = 0; i < N_IDLE; i++) {
        fds[i] = it_raw_connect(s);
        ck_assert(fds[i] >= 0);
        if (i % 2)
            it_raw_send_str(fds[i], "POST /v1/attention HTTP/1.1\r\nHost: x\r\n");
    }
    for (int i = 0; i < 5; i++) {
        it_req rq = {.method = "POST",
                     .path = "/v1/attention",
                     .body = valid_body,
                     .body_len = strlen(valid_body),
                     .timeout_ms = 10000};
        it_resp r;
        it_http(s, &rq, &r);
        ck_assert_msg(r.status == 200, "with %d idle connections: %s", N_IDLE,
                      it_resp_describe(&r));
        it_resp_free(&r);
    }
    for (int i = 0; i < N_IDLE; i++)
        close(fds[i]);
    stop_promptly_ok(s, "idle connections closed by their clients");
}
END_TEST

START_TEST(client_gone_before_large_answer_server_survives)
{
    it_server *s = it_start_ok(DRAIN_ARGS, NULL);
    /* 400 x 400 weights: a few MB of answer nobody reads. */
    size_t n = 400, d = 8, cap = n * d * 8 + 64, k = 0;
    char *m = malloc(cap);
    ck_assert(m != NULL);
    for (size_t i = 0; i < n; i++) {
        k += (size_t)snprintf(m + k, cap - k, "%s[", i ? "," : "[");
        for (size_t j = 0; j < d; j++)
            k += (size_t)snprintf(m + k, cap - k, "%s%.1f", j ? "," : "",
                                  (double)((i * 7 + j * 3) % 11) / 10);
        k += (size_t)snprintf(m + k, cap - k, "]");
    }
    k += (size_t)snprintf(m + k, cap - k, "]");
    size_t full_cap = 3 * k + 64;
    char *full = malloc(full_cap);
    ck_assert(full != NULL);
    snprintf(full, full_cap, "{\"query\": %s, \"key\": %s, \"value\": %s}", m, m, m);
    free(m);
    for (int i = 0; i < 5; i++) {
        int fd = it_raw_connect(s);
        ck_assert(fd >= 0);
        char head[256];
        snprintf(head, sizeof head, "%sContent-Length: %zu\r\n\r\n", post_head, strlen(full));
        ck_assert(it_raw_send_str(fd, head));
        ck_assert(it_raw_send_str(fd, full));
        if (i % 2)
            it_sleep_ms(50); /* part of the answer is on its way */
        close(fd);
    }
    it_sleep_ms(300);
    expect_healthy(s, "clients that left before their answers");
    it_resp r;
    it_post_ok(s, "/v1/attention", valid_body, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    it_resp_free(&r);
    free(full);
    stop_promptly_ok(s, "clients that left before their answers");
}
END_TEST

static Suite *robustness_suite(void)
{
    Suite *s = suite_create("robustness");
    TCase *tc = tcase_create("clients");
    tcase_add_test(tc, partial_body_then_close_does_not_disturb_others);
    tcase_add_test(tc, idle_connection_dropped_after_timeout_others_served);
    tcase_add_test(tc, garbage_request_line_rejected_others_served);
    tcase_add_test(tc, request_sent_byte_by_byte_is_answered);
    tcase_add_test(tc, pipelined_requests_answered_in_order);
    tcase_add_test(tc, many_idle_connections_do_not_block_service);
    tcase_add_test(tc, client_gone_before_large_answer_server_survives);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(robustness_suite());
}
