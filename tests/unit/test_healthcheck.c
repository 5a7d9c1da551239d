/* test_healthcheck.c - the --healthcheck probe: URLs, default URL, answers of a fake peer. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "healthcheck.h"

/* ------------------------------------------------------------ a fake peer */

/* One connection on 127.0.0.1: reads the request, then answers `reply`
 * (NULL: says nothing and holds the connection until the client goes). */
typedef struct peer {
    int listen_fd;
    unsigned port;
    const char *reply;
    char request[1024];
    pthread_t thread;
} peer;

static void *peer_run(void *arg)
{
    peer *p = arg;
    int fd = accept(p->listen_fd, NULL, NULL);
    size_t len = 0;

    if (fd < 0)
        return NULL;
    while (len < sizeof p->request - 1 && strstr(p->request, "\r\n\r\n") == NULL) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0)
            break;
        ssize_t n = recv(fd, p->request + len, sizeof p->request - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        p->request[len] = '\0';
    }
    if (p->reply != NULL) {
        ssize_t n = send(fd, p->reply, strlen(p->reply), MSG_NOSIGNAL);
        (void)n;
    } else {
        char sink[64];
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        /* hold until the client closes (or 10 s) */
        while (poll(&pfd, 1, 10000) > 0 && recv(fd, sink, sizeof sink, 0) > 0)
            ;
    }
    close(fd);
    return NULL;
}

static void peer_start(peer *p, const char *reply)
{
    struct sockaddr_in a;
    socklen_t a_len = sizeof a;

    memset(p, 0, sizeof *p);
    p->reply = reply;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(p->listen_fd, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(p->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(p->listen_fd, 4), 0);
    ck_assert_int_eq(getsockname(p->listen_fd, (struct sockaddr *)&a, &a_len), 0);
    p->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&p->thread, NULL, peer_run, p), 0);
}

static void peer_join(peer *p)
{
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* A port nothing listens on: bound, then closed. */
static unsigned closed_port(void)
{
    struct sockaddr_in a;
    socklen_t a_len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &a_len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------------ URLs */

static char host[64], path[512], err[512];
static unsigned port;

static bool parse(const char *url)
{
    host[0] = path[0] = err[0] = '\0';
    port = 0;
    return srv_healthcheck_parse_url(url, host, sizeof host, &port, path, sizeof path, err,
                                     sizeof err);
}

START_TEST(url_ipv4_port_path_split)
{
    ck_assert(parse("http://127.0.0.1:8080/readyz"));
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 8080);
    ck_assert_str_eq(path, "/readyz");
}
END_TEST

START_TEST(url_defaults_port_80_and_root_path)
{
    ck_assert(parse("http://10.1.2.3"));
    ck_assert_str_eq(host, "10.1.2.3");
    ck_assert_uint_eq(port, 80);
    ck_assert_str_eq(path, "/");
    ck_assert(parse("http://127.0.0.1:9?x=1#frag"));
    ck_assert_str_eq(path, "/?x=1");
    ck_assert(parse("http://127.0.0.1/healthz#top"));
    ck_assert_str_eq(path, "/healthz");
}
END_TEST

START_TEST(url_ipv6_brackets_and_localhost)
{
    ck_assert(parse("http://[::1]:8080/healthz"));
    ck_assert_str_eq(host, "::1");
    ck_assert_uint_eq(port, 8080);
    ck_assert_str_eq(path, "/healthz");
    ck_assert(parse("http://localhost:81/"));
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_uint_eq(port, 81);
}
END_TEST

START_TEST(url_refused_each_with_a_reason)
{
    static const char *const bad[] = {
        "https://127.0.0.1/",        /* no TLS in a local probe */
        "127.0.0.1:8080/readyz",     /* no scheme */
        "http://example.com/",       /* names are not resolved */
        "http://127.0.0.1:0/",       /* port out of range */
        "http://127.0.0.1:65536/",   /* port out of range */
        "http://127.0.0.1:80x/",     /* port not a number */
        "http://127.0.0.1:/",        /* empty port */
        "http:///readyz",            /* no host */
        "http://[::1/readyz",        /* unclosed bracket */
        "http://[::1]x/",            /* text after the host */
        "http://127.0.0.1/a b",      /* a space would split the request line */
        "http://127.0.0.1/a\r\nX: y" /* nor may a header be smuggled in */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(!parse(bad[i]), "accepted '%s'", bad[i]);
        ck_assert_msg(err[0] != '\0', "no reason for '%s'", bad[i]);
    }
}
END_TEST

/* -------------------------------------------------------- the default URL */

static const char *fake_host, *fake_port;

static const char *fake_getenv(const char *name)
{
    if (strcmp(name, "ATTN_HOST") == 0)
        return fake_host;
    if (strcmp(name, "ATTN_PORT") == 0)
        return fake_port;
    return NULL;
}

static const char *default_url(const char *h, const char *p)
{
    static char out[128];

    fake_host = h;
    fake_port = p;
    err[0] = '\0';
    if (!srv_healthcheck_default_url(fake_getenv, out, sizeof out, err, sizeof err))
        return NULL;
    return out;
}

START_TEST(default_url_follows_attn_host_and_port)
{
    ck_assert_str_eq(default_url(NULL, NULL), "http://127.0.0.1:8080/readyz");
    ck_assert_str_eq(default_url("", ""), "http://127.0.0.1:8080/readyz");
    ck_assert_str_eq(default_url("0.0.0.0", "9000"), "http://127.0.0.1:9000/readyz");
    ck_assert_str_eq(default_url("localhost", NULL), "http://127.0.0.1:8080/readyz");
    ck_assert_str_eq(default_url("::", "8081"), "http://[::1]:8081/readyz");
    ck_assert_str_eq(default_url("[::1]", NULL), "http://[::1]:8080/readyz");
    ck_assert_str_eq(default_url("10.0.0.7", "80"), "http://10.0.0.7:80/readyz");
}
END_TEST

START_TEST(default_url_refuses_port_zero_or_garbage)
{
    ck_assert_ptr_null(default_url(NULL, "0"));
    ck_assert_ptr_nonnull(strstr(err, "ATTN_PORT"));
    ck_assert_ptr_null(default_url(NULL, "http"));
    ck_assert_ptr_null(default_url(NULL, "70000"));
}
END_TEST

/* ----------------------------------------------------------------- answers */

static int get_from(peer *p, const char *path_part, unsigned timeout_ms)
{
    char url[128];

    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", p->port, path_part);
    err[0] = '\0';
    return srv_healthcheck_get(url, timeout_ms, err, sizeof err);
}

START_TEST(get_200_sends_one_http_get_with_host)
{
    peer p;
    char want[64];

    peer_start(&p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    ck_assert_int_eq(get_from(&p, "/readyz", 2000), 200);
    peer_join(&p);
    ck_assert_msg(strncmp(p.request, "GET /readyz HTTP/1.1\r\n", 22) == 0, "request: %s",
                  p.request);
    snprintf(want, sizeof want, "\r\nHost: 127.0.0.1:%u\r\n", p.port);
    ck_assert_msg(strstr(p.request, want) != NULL, "request: %s", p.request);
    ck_assert_ptr_nonnull(strstr(p.request, "\r\nConnection: close\r\n"));
}
END_TEST

START_TEST(get_reports_503_and_http10_statuses)
{
    peer p;

    peer_start(&p, "HTTP/1.1 503 Service Unavailable\r\n\r\n");
    ck_assert_int_eq(get_from(&p, "/readyz", 2000), 503);
    peer_join(&p);
    peer_start(&p, "HTTP/1.0 404\r\n\r\n");
    ck_assert_int_eq(get_from(&p, "/nope", 2000), 404);
    peer_join(&p);
}
END_TEST

START_TEST(get_not_http_or_closed_early_is_zero_with_reason)
{
    peer p;

    peer_start(&p, "SSH-2.0-OpenSSH_9.2\r\n");
    ck_assert_int_eq(get_from(&p, "/", 2000), 0);
    ck_assert_ptr_nonnull(strstr(err, "not HTTP"));
    peer_join(&p);
    peer_start(&p, "HTTP/1.1 2");
    ck_assert_int_eq(get_from(&p, "/", 2000), 0);
    ck_assert_ptr_nonnull(strstr(err, "closed"));
    peer_join(&p);
}
END_TEST

START_TEST(get_silent_peer_times_out_on_time)
{
    peer p;
    double t0;

    peer_start(&p, NULL);
    t0 = now_ms();
    ck_assert_int_eq(get_from(&p, "/readyz", 300), 0);
    ck_assert_msg(now_ms() - t0 < 2000, "took %.0f ms for a 300 ms timeout", now_ms() - t0);
    ck_assert_ptr_nonnull(strstr(err, "in time"));
    peer_join(&p);
}
END_TEST

START_TEST(get_refused_port_is_zero_with_reason)
{
    char url[64];

    snprintf(url, sizeof url, "http://127.0.0.1:%u/readyz", closed_port());
    ck_assert_int_eq(srv_healthcheck_get(url, 2000, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "connect"));
}
END_TEST

/* ------------------------------------------------------------ the mode */

START_TEST(flag_recognised_only_as_itself)
{
    ck_assert(srv_healthcheck_is_flag("--healthcheck"));
    ck_assert(srv_healthcheck_is_flag("--healthcheck=http://127.0.0.1/"));
    ck_assert(!srv_healthcheck_is_flag("--healthchecks"));
    ck_assert(!srv_healthcheck_is_flag("--health"));
    ck_assert(!srv_healthcheck_is_flag("healthcheck"));
    ck_assert(!srv_healthcheck_is_flag(NULL));
}
END_TEST

START_TEST(main_exit_codes_0_healthy_1_unhealthy_2_usage)
{
    peer p;
    char url[64], flag[96];
    char *argv[4];

    argv[0] = (char *)"attention-server";
    argv[1] = (char *)"--healthcheck";

    peer_start(&p, "HTTP/1.1 200 OK\r\n\r\n");
    snprintf(url, sizeof url, "http://127.0.0.1:%u/healthz", p.port);
    argv[2] = url;
    ck_assert_int_eq(srv_healthcheck_main(3, argv, fake_getenv), 0);
    peer_join(&p);

    peer_start(&p, "HTTP/1.1 503 Service Unavailable\r\n\r\n");
    snprintf(flag, sizeof flag, "--healthcheck=http://127.0.0.1:%u/readyz", p.port);
    argv[1] = flag;
    ck_assert_int_eq(srv_healthcheck_main(2, argv, fake_getenv), 1);
    peer_join(&p);

    /* no URL: ATTN_PORT says where */
    peer_start(&p, "HTTP/1.1 200 OK\r\n\r\n");
    snprintf(flag, sizeof flag, "%u", p.port);
    fake_host = "0.0.0.0";
    fake_port = flag;
    argv[1] = (char *)"--healthcheck";
    ck_assert_int_eq(srv_healthcheck_main(2, argv, fake_getenv), 0);
    peer_join(&p);
    ck_assert_msg(strncmp(p.request, "GET /readyz ", 12) == 0, "request: %s", p.request);

    argv[2] = (char *)"ftp://127.0.0.1/";
    ck_assert_int_eq(srv_healthcheck_main(3, argv, fake_getenv), 2);
    argv[2] = (char *)"http://127.0.0.1/";
    argv[3] = (char *)"extra";
    ck_assert_int_eq(srv_healthcheck_main(4, argv, fake_getenv), 2);
    fake_port = "0";
    ck_assert_int_eq(srv_healthcheck_main(2, argv, fake_getenv), 2);
}
END_TEST

static Suite *healthcheck_suite(void)
{
    Suite *s = suite_create("healthcheck");
    TCase *url = tcase_create("url");
    TCase *get = tcase_create("get");

    tcase_add_test(url, url_ipv4_port_path_split);
    tcase_add_test(url, url_defaults_port_80_and_root_path);
    tcase_add_test(url, url_ipv6_brackets_and_localhost);
    tcase_add_test(url, url_refused_each_with_a_reason);
    tcase_add_test(url, default_url_follows_attn_host_and_port);
    tcase_add_test(url, default_url_refuses_port_zero_or_garbage);
    tcase_add_test(url, flag_recognised_only_as_itself);
    suite_add_tcase(s, url);

    tcase_add_test(get, get_200_sends_one_http_get_with_host);
    tcase_add_test(get, get_reports_503_and_http10_statuses);
    tcase_add_test(get, get_not_http_or_closed_early_is_zero_with_reason);
    tcase_add_test(get, get_silent_peer_times_out_on_time);
    tcase_add_test(get, get_refused_port_is_zero_with_reason);
    tcase_add_test(get, main_exit_codes_0_healthy_1_unhealthy_2_usage);
    suite_add_tcase(s, get);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(healthcheck_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
