/* healthcheck.c - the --healthcheck probe: one HTTP GET over a plain socket, with a deadline. */
#include "healthcheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HC_DEFAULT_PORT 8080u

static double hc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Milliseconds left before deadline, at least 0, for poll(). */
static int hc_left_ms(double deadline)
{
    double left = deadline - hc_now_ms();

    return left <= 0 ? 0 : (int)(left + 0.5);
}

bool srv_healthcheck_is_flag(const char *arg)
{
    static const char flag[] = "--healthcheck";

    return arg != NULL && strncmp(arg, flag, sizeof flag - 1) == 0 &&
           (arg[sizeof flag - 1] == '\0' || arg[sizeof flag - 1] == '=');
}

/* Strict decimal port 1..65535 from s[0..n). */
static bool hc_parse_port(const char *s, size_t n, unsigned *port)
{
    unsigned long v = 0;

    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *port = (unsigned)v;
    return true;
}

bool srv_healthcheck_parse_url(const char *url, char *host, size_t host_len, unsigned *port,
                               char *path, size_t path_len, char *err, size_t err_len)
{
    static const char scheme[] = "http://";
    unsigned char addr[16];
    const char *p, *h, *h_end, *slash;
    char tmp[64];
    size_t n;
    bool root;

    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, err_len, "'%.80s' is not an http:// URL", url);
        return false;
    }
    p = url + sizeof scheme - 1;
    slash = p + strcspn(p, "/?#");
    if (*p == '[') {
        h = p + 1;
        h_end = memchr(h, ']', (size_t)(slash - h));
        if (h_end == NULL) {
            snprintf(err, err_len, "'%.80s': unclosed '[' in the host", url);
            return false;
        }
        p = h_end + 1;
    } else {
        h = p;
        h_end = p + strcspn(p, ":/?#");
        p = h_end;
    }
    *port = 80;
    if (*p == ':') {
        if (!hc_parse_port(p + 1, (size_t)(slash - p - 1), port)) {
            snprintf(err, err_len, "'%.80s': the port is not a number 1..65535", url);
            return false;
        }
    } else if (p != slash) {
        snprintf(err, err_len, "'%.80s': unexpected text after the host", url);
        return false;
    }
    if ((size_t)(h_end - h) >= sizeof tmp || h_end == h) {
        snprintf(err, err_len, "'%.80s': no usable host", url);
        return false;
    }
    memcpy(tmp, h, (size_t)(h_end - h));
    tmp[h_end - h] = '\0';
    if (strcmp(tmp, "localhost") == 0)
        snprintf(tmp, sizeof tmp, "127.0.0.1");
    if (inet_pton(AF_INET, tmp, addr) != 1 && inet_pton(AF_INET6, tmp, addr) != 1) {
        snprintf(err, err_len, "'%.80s': the host must be an IP address or localhost", url);
        return false;
    }
    if (strlen(tmp) >= host_len) {
        snprintf(err, err_len, "'%.80s': the host is too long", url);
        return false;
    }
    snprintf(host, host_len, "%s", tmp);
    /* the path and query as sent; a fragment never goes on the wire, and
     * "http://h:1?x" asks for "/?x" */
    n = strcspn(slash, "#");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)slash[i] <= ' ' || slash[i] == 0x7f) {
            snprintf(err, err_len, "'%.80s': spaces or control characters in the path", url);
            return false;
        }
    root = *slash != '/';
    if (n + root >= path_len) {
        snprintf(err, err_len, "'%.80s': the path is too long", url);
        return false;
    }
    snprintf(path, path_len, "%s%.*s", root ? "/" : "", (int)n, slash);
    return true;
}

bool srv_healthcheck_default_url(const char *(*getenv_fn)(const char *), char *out, size_t out_len,
                                 char *err, size_t err_len)
{
    const char *port_s = getenv_fn != NULL ? getenv_fn("ATTN_PORT") : getenv("ATTN_PORT");
    const char *host = getenv_fn != NULL ? getenv_fn("ATTN_HOST") : getenv("ATTN_HOST");
    unsigned port = HC_DEFAULT_PORT;
    unsigned char addr[16];
    char h[64];
    size_t n;

    if (port_s != NULL && port_s[0] != '\0' && !hc_parse_port(port_s, strlen(port_s), &port)) {
        snprintf(err, err_len, "ATTN_PORT: '%.32s' is not a port 1..65535 to probe", port_s);
        return false;
    }
    if (host == NULL || host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
        strcmp(host, "localhost") == 0) {
        snprintf(h, sizeof h, "127.0.0.1");
    } else {
        /* the server accepts "[::1]" as well as "::1" */
        n = strlen(host);
        if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
            host++;
            n -= 2;
        }
        if (n >= sizeof h)
            n = sizeof h - 1;
        memcpy(h, host, n);
        h[n] = '\0';
        if (strcmp(h, "::") == 0)
            snprintf(h, sizeof h, "::1");
        else if (inet_pton(AF_INET, h, addr) != 1 && inet_pton(AF_INET6, h, addr) != 1)
            snprintf(h, sizeof h, "127.0.0.1");
    }
    if (strchr(h, ':') != NULL)
        snprintf(out, out_len, "http://[%s]:%u/readyz", h, port);
    else
        snprintf(out, out_len, "http://%s:%u/readyz", h, port);
    return true;
}

/* Connects fd to addr before deadline; false with a reason in err. */
static bool hc_connect(int fd, const struct sockaddr *addr, socklen_t addr_len, double deadline,
                       char *err, size_t err_len)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int so_err = 0;
    socklen_t so_len = sizeof so_err;
    int rc;

    if (connect(fd, addr, addr_len) == 0)
        return true;
    if (errno != EINPROGRESS) {
        snprintf(err, err_len, "connect: %s", strerror(errno));
        return false;
    }
    do
        rc = poll(&pfd, 1, hc_left_ms(deadline));
    while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        snprintf(err, err_len, "connect: timed out");
        return false;
    }
    if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_err, &so_len) != 0) {
        snprintf(err, err_len, "connect: %s", strerror(errno));
        return false;
    }
    if (so_err != 0) {
        snprintf(err, err_len, "connect: %s", strerror(so_err));
        return false;
    }
    return true;
}

/* Sends all of buf before deadline. */
static bool hc_send_all(int fd, const char *buf, size_t len, double deadline, char *err,
                        size_t err_len)
{
    size_t sent = 0;

    while (sent < len) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        ssize_t n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);

        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, err_len, "send: %s", strerror(errno));
            return false;
        }
        if (poll(&pfd, 1, hc_left_ms(deadline)) == 0) {
            snprintf(err, err_len, "send: timed out");
            return false;
        }
    }
    return true;
}

/* Reads until the status line is complete; returns its status or 0. */
static int hc_read_status(int fd, double deadline, char *err, size_t err_len)
{
    char buf[256];
    size_t len = 0;
    int status;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        char *eol = memchr(buf, '\n', len);
        int rc;

        if (eol != NULL || len == sizeof buf - 1) {
            buf[len] = '\0';
            if ((strncmp(buf, "HTTP/1.0 ", 9) != 0 && strncmp(buf, "HTTP/1.1 ", 9) != 0) ||
                buf[9] < '1' || buf[9] > '5' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' ||
                buf[11] > '9' || (buf[12] != ' ' && buf[12] != '\r')) {
                snprintf(err, err_len, "the answer is not HTTP: '%.40s'", buf);
                return 0;
            }
            status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
            return status;
        }
        rc = poll(&pfd, 1, hc_left_ms(deadline));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            snprintf(err, err_len, "no answer in time");
            return 0;
        }
        ssize_t n = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n <= 0) {
            snprintf(err, err_len, "%s before a status line",
                     n == 0 ? "connection closed" : strerror(errno));
            return 0;
        }
        len += (size_t)n;
    }
}

int srv_healthcheck_get(const char *url, unsigned timeout_ms, char *err, size_t err_len)
{
    char host[64], path[512], req[768], why[200];
    unsigned port;
    struct sockaddr_storage ss;
    socklen_t ss_len;
    double deadline = hc_now_ms() + timeout_ms;
    bool v6;
    int fd, status = 0;

    if (!srv_healthcheck_parse_url(url, host, sizeof host, &port, path, sizeof path, err, err_len))
        return 0;
    memset(&ss, 0, sizeof ss);
    v6 = strchr(host, ':') != NULL;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)(void *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, host, &a->sin6_addr);
        ss_len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)(void *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, host, &a->sin_addr);
        ss_len = sizeof *a;
    }
    fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return 0;
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
        snprintf(err, err_len, "fcntl: %s", strerror(errno));
        close(fd);
        return 0;
    }
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: attention-server-healthcheck\r\n"
             "Connection: close\r\n\r\n",
             path, v6 ? "[" : "", host, v6 ? "]" : "", port);
    if (hc_connect(fd, (const struct sockaddr *)&ss, ss_len, deadline, why, sizeof why) &&
        hc_send_all(fd, req, strlen(req), deadline, why, sizeof why))
        status = hc_read_status(fd, deadline, why, sizeof why);
    close(fd);
    if (status == 0)
        snprintf(err, err_len, "%s: %s", url, why);
    return status;
}

int srv_healthcheck_main(int argc, char **argv, const char *(*getenv_fn)(const char *))
{
    const char *eq = strchr(argv[1], '=');
    char url[600], err[400], host[64], path[512];
    unsigned port;
    int status;

    if (argc > (eq != NULL ? 2 : 3)) {
        fprintf(stderr, "attention-server: --healthcheck takes one URL\n");
        return 2;
    }
    if (eq != NULL) {
        snprintf(url, sizeof url, "%s", eq + 1);
    } else if (argc == 3) {
        snprintf(url, sizeof url, "%s", argv[2]);
    } else if (!srv_healthcheck_default_url(getenv_fn, url, sizeof url, err, sizeof err)) {
        fprintf(stderr, "attention-server: --healthcheck: %s\n", err);
        return 2;
    }
    if (!srv_healthcheck_parse_url(url, host, sizeof host, &port, path, sizeof path, err,
                                   sizeof err)) {
        fprintf(stderr, "attention-server: --healthcheck: %s\n", err);
        return 2;
    }
    status = srv_healthcheck_get(url, SRV_HEALTHCHECK_TIMEOUT_MS, err, sizeof err);
    if (status == 200) {
        printf("healthy: %s answered 200\n", url);
        return 0;
    }
    if (status != 0)
        fprintf(stderr, "unhealthy: %s answered %d\n", url, status);
    else
        fprintf(stderr, "unhealthy: %s\n", err);
    return 1;
}
