/* ops.c - operations: request metrics (Prometheus text), the computation limiter, the access log. */
#include "ops.h"

#include <ctype.h>
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------- metrics */

/* Statuses counted one by one; anything else falls in "other". */
static const int status_list[] = {200, 204, 400, 401, 404, 405, 413, 415, 429, 500, 503};
#define N_STATUS (sizeof status_list / sizeof status_list[0] + 1)

/* Latency buckets in milliseconds (Prometheus le, cumulative when rendered). */
static const double lat_buckets[] = {0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000};
#define N_LAT (sizeof lat_buckets / sizeof lat_buckets[0] + 1)

/* Error codes counted as refusal reasons. */
static const char *const reasons[] = {"invalid_argument",  "malformed_json", "unauthenticated",
                                      "not_found",         "method_not_allowed",
                                      "payload_too_large", "unsupported_media_type",
                                      "too_many_requests", "unavailable",    "internal"};
#define N_REASONS (sizeof reasons / sizeof reasons[0] + 1)

typedef struct route_stats {
    atomic_ullong by_status[N_STATUS];
    atomic_ullong lat[N_LAT];
    atomic_ullong lat_sum_us;
    atomic_ullong bytes_in, bytes_out;
} route_stats;

struct srv_metrics {
    size_t n_routes;      /* + 1 for "unmatched" */
    route_stats *routes;  /* [n_routes + 1] */
    atomic_ullong rejected[N_REASONS];
    atomic_ullong queue[N_LAT];
    atomic_ullong queue_sum_us;
    unsigned (*in_flight)(void *);
    void *in_flight_ctx;
};

srv_metrics *srv_metrics_create(size_t n_routes)
{
    srv_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->n_routes = n_routes;
    m->routes = calloc(n_routes + 1, sizeof *m->routes);
    if (!m->routes) {
        free(m);
        return NULL;
    }
    return m;
}

void srv_metrics_free(srv_metrics *m)
{
    if (!m)
        return;
    free(m->routes);
    free(m);
}

void srv_metrics_set_in_flight_source(srv_metrics *m, unsigned (*fn)(void *), void *ctx)
{
    if (!m)
        return;
    m->in_flight = fn;
    m->in_flight_ctx = ctx;
}

static size_t lat_bucket(double ms)
{
    size_t b = 0;
    while (b < N_LAT - 1 && ms > lat_buckets[b])
        b++;
    return b;
}

void srv_metrics_observe(srv_metrics *m, int route, int status, double total_ms,
                         size_t bytes_in, size_t bytes_out, const char *error_code)
{
    if (!m)
        return;
    route_stats *r = &m->routes[route >= 0 && (size_t)route < m->n_routes ? (size_t)route
                                                                            : m->n_routes];
    size_t s = N_STATUS - 1;
    for (size_t i = 0; i + 1 < N_STATUS; i++)
        if (status_list[i] == status)
            s = i;
    atomic_fetch_add(&r->by_status[s], 1);
    atomic_fetch_add(&r->lat[lat_bucket(total_ms)], 1);
    atomic_fetch_add(&r->lat_sum_us, (unsigned long long)(total_ms > 0 ? total_ms * 1000 : 0));
    atomic_fetch_add(&r->bytes_in, bytes_in);
    atomic_fetch_add(&r->bytes_out, bytes_out);
    if (error_code) {
        size_t k = N_REASONS - 1;
        for (size_t i = 0; i + 1 < N_REASONS; i++)
            if (strcmp(reasons[i], error_code) == 0)
                k = i;
        atomic_fetch_add(&m->rejected[k], 1);
    }
}

void srv_metrics_queue_wait(srv_metrics *m, double wait_ms)
{
    if (!m)
        return;
    atomic_fetch_add(&m->queue[lat_bucket(wait_ms)], 1);
    atomic_fetch_add(&m->queue_sum_us, (unsigned long long)(wait_ms > 0 ? wait_ms * 1000 : 0));
}

static const char *route_label(const srv_metrics *m, size_t i, char *buf, size_t len)
{
    if (i >= m->n_routes)
        return "unmatched";
    snprintf(buf, len, "%s %s", srv_routes[i].method, srv_routes[i].pattern);
    return buf;
}

/* A histogram in Prometheus form from non-cumulative bucket counts. */
static void histogram(srv_buf *out, const char *name, const char *labels,
                      const atomic_ullong *buckets, unsigned long long sum_us)
{
    unsigned long long cum = 0;
    for (size_t b = 0; b < N_LAT; b++) {
        cum += atomic_load(&buckets[b]);
        if (b + 1 < N_LAT)
            srv_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
                           labels[0] ? "," : "", lat_buckets[b] / 1000.0, cum);
        else
            srv_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
                           labels[0] ? "," : "", cum);
    }
    srv_buf_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum_us / 1e6, name,
                   labels, cum);
}

void srv_metrics_render(const srv_metrics *m, const srv_app *app, srv_buf *out)
{
    char rl[160], labels[200];
    srv_buf_printf(out, "# HELP attention_build_info Version and BLAS of this server.\n"
                        "# TYPE attention_build_info gauge\n"
                        "attention_build_info{version=\"%s\",blas=\"%s\"} 1\n",
                   SRV_VERSION, attn_blas_info());
    srv_buf_printf(out,
                   "# HELP attention_up_seconds Seconds since the server started.\n"
                   "# TYPE attention_up_seconds gauge\nattention_up_seconds %.3f\n",
                   (srv_now_ms() - app->start_time) / 1000.0);
    srv_buf_printf(out, "# HELP attention_ready 1 when ready (models loaded, not draining).\n"
                        "# TYPE attention_ready gauge\nattention_ready %d\n",
                   app->ready && !app->draining ? 1 : 0);
    if (!m)
        return;
    srv_buf_printf(out, "# HELP attention_in_flight Requests being handled now.\n"
                        "# TYPE attention_in_flight gauge\nattention_in_flight %u\n",
                   m->in_flight ? m->in_flight(m->in_flight_ctx) : 0);

    srv_buf_puts(out, "# HELP attention_requests_total Answered requests by route and status.\n"
                      "# TYPE attention_requests_total counter\n");
    for (size_t i = 0; i <= m->n_routes; i++)
        for (size_t s = 0; s < N_STATUS; s++) {
            unsigned long long v = atomic_load(&m->routes[i].by_status[s]);
            if (v == 0)
                continue;
            char st[8];
            if (s + 1 < N_STATUS)
                snprintf(st, sizeof st, "%d", status_list[s]);
            else
                snprintf(st, sizeof st, "other");
            srv_buf_printf(out, "attention_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                           route_label(m, i, rl, sizeof rl), st, v);
        }
    srv_buf_puts(out, "# HELP attention_request_duration_seconds Time from the first byte of a "
                      "request to its answer, by route.\n"
                      "# TYPE attention_request_duration_seconds histogram\n");
    for (size_t i = 0; i <= m->n_routes; i++) {
        unsigned long long n = 0;
        for (size_t b = 0; b < N_LAT; b++)
            n += atomic_load(&m->routes[i].lat[b]);
        if (n == 0)
            continue;
        snprintf(labels, sizeof labels, "route=\"%s\"", route_label(m, i, rl, sizeof rl));
        histogram(out, "attention_request_duration_seconds", labels, m->routes[i].lat,
                  atomic_load(&m->routes[i].lat_sum_us));
    }
    srv_buf_puts(out, "# HELP attention_request_bytes_total Request body bytes by route.\n"
                      "# TYPE attention_request_bytes_total counter\n");
    for (size_t i = 0; i <= m->n_routes; i++)
        if (atomic_load(&m->routes[i].bytes_in) || i < m->n_routes)
            srv_buf_printf(out, "attention_request_bytes_total{route=\"%s\"} %llu\n",
                           route_label(m, i, rl, sizeof rl), atomic_load(&m->routes[i].bytes_in));
    srv_buf_puts(out, "# HELP attention_response_bytes_total Answer body bytes by route.\n"
                      "# TYPE attention_response_bytes_total counter\n");
    for (size_t i = 0; i <= m->n_routes; i++)
        if (atomic_load(&m->routes[i].bytes_out) || i < m->n_routes)
            srv_buf_printf(out, "attention_response_bytes_total{route=\"%s\"} %llu\n",
                           route_label(m, i, rl, sizeof rl), atomic_load(&m->routes[i].bytes_out));
    srv_buf_puts(out, "# HELP attention_rejected_total Refused requests by reason (error code).\n"
                      "# TYPE attention_rejected_total counter\n");
    for (size_t k = 0; k < N_REASONS; k++)
        srv_buf_printf(out, "attention_rejected_total{reason=\"%s\"} %llu\n",
                       k + 1 < N_REASONS ? reasons[k] : "other", atomic_load(&m->rejected[k]));
    srv_buf_puts(out, "# HELP attention_queue_wait_seconds Time computations waited for a slot "
                      "(--max-concurrent).\n"
                      "# TYPE attention_queue_wait_seconds histogram\n");
    histogram(out, "attention_queue_wait_seconds", "", m->queue, atomic_load(&m->queue_sum_us));
}

/* ------------------------------------------------------------- limiter */

struct srv_limiter {
    sem_t slots;
};

srv_limiter *srv_limiter_create(unsigned slots)
{
    srv_limiter *l = calloc(1, sizeof *l);
    if (!l || sem_init(&l->slots, 0, slots ? slots : 1) != 0) {
        free(l);
        return NULL;
    }
    return l;
}

void srv_limiter_free(srv_limiter *l)
{
    if (!l)
        return;
    sem_destroy(&l->slots);
    free(l);
}

bool srv_limiter_acquire(srv_limiter *l, unsigned timeout_ms, double *waited_ms)
{
    *waited_ms = 0;
    if (!l)
        return true;
    if (sem_trywait(&l->slots) == 0)
        return true;
    const double t0 = srv_now_ms();
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc;
    while ((rc = sem_timedwait(&l->slots, &until)) != 0 && errno == EINTR)
        ;
    *waited_ms = srv_now_ms() - t0;
    return rc == 0;
}

void srv_limiter_release(srv_limiter *l)
{
    if (l)
        sem_post(&l->slots);
}

/* ------------------------------------------------------------- access log */

static void json_str(srv_buf *b, const char *s)
{
    srv_buf_puts(b, "\"");
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            srv_buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            srv_buf_printf(b, "\\u%04x", c);
        else
            srv_buf_append(b, s, 1);
    }
    srv_buf_puts(b, "\"");
}

void srv_access_log(const srv_request *req, int status, double total_ms, size_t bytes_in,
                    size_t bytes_out)
{
    struct timespec now;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    srv_buf b;
    srv_buf_init(&b);
    srv_buf_printf(&b, "{\"time\":\"%s.%03ldZ\",\"method\":", when, now.tv_nsec / 1000000L);
    json_str(&b, req->method);
    srv_buf_puts(&b, ",\"path\":");
    json_str(&b, req->path);
    srv_buf_printf(&b, ",\"status\":%d,\"ms\":%.3f,\"bytes_in\":%zu,\"bytes_out\":%zu", status,
                   total_ms, bytes_in, bytes_out);
    const char *ua = srv_req_header(req, "User-Agent");
    if (ua) {
        srv_buf_puts(&b, ",\"user_agent\":");
        json_str(&b, ua);
    }
    srv_buf_puts(&b, "}\n");
    if (!b.oom && b.data)
        fwrite(b.data, 1, b.len, stderr); /* one write: lines of threads do not interleave */
    srv_buf_free(&b);
}

/* ------------------------------------------------------------- API key */

static bool open_path(const char *path)
{
    static const char *const open_exact[] = {"/healthz", "/readyz", "/metrics", "/openapi.yaml",
                                             "/", NULL};
    for (size_t i = 0; open_exact[i]; i++)
        if (strcmp(path, open_exact[i]) == 0)
            return true;
    return strncmp(path, "/v2/health/", 11) == 0 || strncmp(path, "/assets/", 8) == 0 ||
           (strncmp(path, "/v1/", 4) != 0 && strncmp(path, "/v2/", 4) != 0);
}

bool srv_auth_ok(const srv_app *app, const srv_request *req, const char *path)
{
    const char *key = app->config.api_key;
    if (key[0] == '\0' || open_path(path))
        return true;
    const char *h = srv_req_header(req, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    const char *got = h + 7;
    while (*got == ' ')
        got++;
    /* constant time in the key's length: every byte is compared, whatever differs */
    const size_t klen = strlen(key), glen = strlen(got);
    unsigned char diff = (unsigned char)(klen != glen);
    for (size_t i = 0; i < klen; i++)
        diff |= (unsigned char)(key[i] ^ (i < glen ? got[i] : 0));
    return diff == 0;
}

bool srv_config_load_api_key(srv_config *c, char *err, size_t err_len)
{
    if (c->api_key_file[0] == '\0')
        return true;
    if (c->api_key[0] != '\0') {
        snprintf(err, err_len, "--api-key and --api-key-file: give one of them");
        return false;
    }
    FILE *f = fopen(c->api_key_file, "r");
    if (!f) {
        snprintf(err, err_len, "--api-key-file: cannot read %.300s: %s", c->api_key_file,
                 strerror(errno));
        return false;
    }
    char line[sizeof c->api_key + 2];
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t len = ok ? strlen(line) : 0;
    while (len > 0 && isspace((unsigned char)line[len - 1]))
        line[--len] = '\0';
    const char *start = line;
    while (*start && isspace((unsigned char)*start))
        start++;
    if (!ok || *start == '\0' || strlen(start) >= sizeof c->api_key) {
        snprintf(err, err_len, "--api-key-file: %.300s holds no key on its first line (1 to %zu "
                 "characters)", c->api_key_file, sizeof c->api_key - 1);
        return false;
    }
    memcpy(c->api_key, start, strlen(start) + 1); /* fits: checked above */
    return true;
}
