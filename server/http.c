/* http.c - the HTTP transport on libmicrohttpd: listening, body limits, dispatch, sending. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cors.h"
#include "ops.h"
#include "srv.h"

/* Bytes past --max-body-bytes that are read and thrown away so the 413 can
 * be delivered: closing a socket with unread data makes the kernel send a
 * reset, and most clients then report the reset instead of our answer.
 * Past this bound the client is not worth the bandwidth. */
#define HTTP_DRAIN_SLACK ((size_t)16 << 20)
/* First body allocation when the length is not declared (chunked). */
#define HTTP_BODY_FIRST ((size_t)16 << 10)

struct srv_http {
    srv_app *app;
    struct MHD_Daemon *daemon;
    atomic_uint in_flight;
    /* MHD_quiesce_daemon hands the listening socket back to us; it may only
     * be closed after MHD_stop_daemon. */
    MHD_socket listen_fd;
    bool quiesced;
    /* While MHD_start_daemon runs, its log lines land here so the start
     * error can name the cause ("Address already in use"). */
    atomic_bool starting;
    char start_log[256];
};

/* Per-request state, from the first access-handler call to MHD's
 * request-completed notification. */
typedef struct http_conn {
    struct http_req *cur; /* the request under way on this connection, or NULL */
} http_conn;

typedef struct http_req {
    double t0;  /* srv_now_ms() at the first callback */
    char *body; /* accumulated upload */
    size_t len, cap;
    size_t received;             /* every upload byte seen, kept or not */
    unsigned long long declared; /* Content-Length, when has_declared */
    bool has_declared;
    bool too_large; /* over --max-body-bytes: discard the rest, answer 413 */
    bool oom;       /* body could not be stored: discard the rest, answer 500 */
    bool responded; /* a response was queued early */
    bool counted;   /* included in in_flight */
    http_conn *conn;
    const char *url, *method; /* MHD's, valid until the request completes */
    srv_kv *query;
    size_t n_query;
    srv_kv *headers;
    size_t n_headers;
} http_req;

/* Stands for a request whose state could not be allocated. */
static http_req http_req_failed;

/* ---------------------------------------------------------------- logging */

static void http_log(void *cls, const char *fmt, va_list ap)
{
    srv_http *h = cls;
    char line[512];
    size_t n;

    vsnprintf(line, sizeof line, fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (atomic_load(&h->starting)) {
        snprintf(h->start_log, sizeof h->start_log, "%.255s", line);
        return;
    }
    fprintf(stderr, "attention-server: %s\n", line);
}

/* ------------------------------------------------------------- responses */

/* A 500 envelope that needs no allocation of ours: the last resort. */
static const char http_oom_body[] = "{\"error\":{\"status\":500,\"code\":\"internal\",\"message\":"
                                    "\"out of memory\",\"field\":\"\"}}";

/* The contract's code for a status, for envelopes built here. */
static const char *http_status_code(int status)
{
    switch (status) {
    case 400:
        return SRV_CODE_INVALID;
    case 401:
        return SRV_CODE_UNAUTHENTICATED;
    case 404:
        return SRV_CODE_NOT_FOUND;
    case 405:
        return SRV_CODE_METHOD;
    case 413:
        return SRV_CODE_TOO_LARGE;
    case 415:
        return SRV_CODE_MEDIA_TYPE;
    case 429:
        return SRV_CODE_TOO_MANY;
    case 503:
        return SRV_CODE_UNAVAILABLE;
    default:
        return SRV_CODE_INTERNAL;
    }
}

/* Answers made here (413, out of memory) never pass the router: they get
 * the CORS headers too, so a page of an allowed origin can read why. For
 * the router's answers this repeats what it added (idempotent). */
static void http_cors(srv_http *h, struct MHD_Connection *conn, const http_req *r,
                      srv_response *res)
{
    srv_kv hdr[2];
    srv_request req;
    size_t n = 0;
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *acrm =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Access-Control-Request-Method");

    if (origin != NULL)
        hdr[n++] = (srv_kv){"Origin", origin};
    if (acrm != NULL)
        hdr[n++] = (srv_kv){"Access-Control-Request-Method", acrm};
    memset(&req, 0, sizeof req);
    req.method = r ? r->method : NULL;
    req.headers = hdr;
    req.n_headers = n;
    srv_cors_apply(&h->app->config, &req, res);
}

/*
 * Sends res (taking its body). close forces "Connection: close", used after
 * a discarded body and while draining so clients move to another server.
 * Returns MHD_NO, which closes the connection, only when not even the
 * fallback response can be built.
 */
static enum MHD_Result http_send(srv_http *h, struct MHD_Connection *conn, http_req *r,
                                 srv_response *res, bool close)
{
    struct MHD_Response *mr = NULL;
    unsigned status = (unsigned)res->status;
    enum MHD_Result ret;
    char num[32];
    const size_t bytes_out = res->body_len;

    if (res->body != NULL) {
        mr = MHD_create_response_from_buffer_with_free_callback(res->body_len, res->body, free);
        if (mr == NULL)
            free(res->body);
        res->body = NULL; /* MHD owns it now, or it is gone */
        res->body_len = 0;
    } else if (res->status >= 400) {
        /* A handler ran out of memory writing its error: say at least
         * which status and code it meant. */
        char tmp[160];
        int n =
            snprintf(tmp, sizeof tmp,
                     "{\"error\":{\"status\":%d,\"code\":\"%s\",\"message\":\"\",\"field\":\"\"}}",
                     res->status, http_status_code(res->status));
        if (n > 0 && (size_t)n < sizeof tmp)
            mr = MHD_create_response_from_buffer((size_t)n, tmp, MHD_RESPMEM_MUST_COPY);
        if (res->content_type[0] == '\0')
            snprintf(res->content_type, sizeof res->content_type, "application/json");
    } else {
        mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (mr == NULL) {
        mr = MHD_create_response_from_buffer(sizeof http_oom_body - 1, (void *)http_oom_body,
                                             MHD_RESPMEM_PERSISTENT);
        if (mr == NULL)
            return MHD_NO;
        status = 500;
        res->n_headers = 0;
        res->inference_ms = 0;
        snprintf(res->content_type, sizeof res->content_type, "application/json");
    }

    if (h->app->config.cors_origins[0] != '\0')
        http_cors(h, conn, r, res);
    if (res->content_type[0] != '\0')
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, res->content_type);
    for (size_t i = 0; i < res->n_headers && i < SRV_MAX_HEADERS; i++)
        MHD_add_response_header(mr, res->header_names[i], res->header_values[i]);
    if (res->inference_ms > 0) {
        srv_format_fixed(res->inference_ms, 3, false, num);
        MHD_add_response_header(mr, "X-Inference-Time", num);
    }
    const double total_ms = r ? srv_now_ms() - r->t0 : 0;
    srv_format_fixed(total_ms, 3, false, num);
    MHD_add_response_header(mr, "X-Total-Time", num);
    if (r != NULL) {
        const int route = res->route >= 0 ? res->route
                          : r->url      ? srv_route_index(r->method, r->url)
                                        : -1;
        srv_metrics_observe(h->app->metrics, route, (int)status, total_ms, r->received,
                            bytes_out, res->error_code);
        if (h->app->config.access_log) {
            srv_request lr;
            memset(&lr, 0, sizeof lr);
            lr.method = r->method;
            lr.path = r->url;
            lr.headers = r->headers;
            lr.n_headers = r->n_headers;
            srv_access_log(&lr, (int)status, total_ms, r->received, bytes_out);
        }
    }
    if (close || h->app->draining)
        MHD_add_response_header(mr, MHD_HTTP_HEADER_CONNECTION, "close");

    ret = MHD_queue_response(conn, status, mr);
    MHD_destroy_response(mr);
    return ret;
}

static enum MHD_Result http_send_error(srv_http *h, struct MHD_Connection *conn, http_req *r,
                                       int status, const char *code, bool close, const char *msg)
{
    srv_response res;
    srv_err e;

    srv_response_init(&res);
    srv_err_set(&e, status, code, "", "%s", msg);
    srv_respond_error(&res, &e);
    return http_send(h, conn, r, &res, close);
}

static enum MHD_Result http_send_too_large(srv_http *h, struct MHD_Connection *conn, http_req *r)
{
    char msg[200];
    size_t max = h->app->config.max_body_bytes;

    if (r->has_declared)
        snprintf(msg, sizeof msg,
                 "request body of %llu bytes exceeds the limit of %zu bytes (--max-body-bytes)",
                 r->declared, max);
    else
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes (--max-body-bytes)",
                 max);
    return http_send_error(h, conn, r, 413, SRV_CODE_TOO_LARGE, true, msg);
}

/* --------------------------------------------------------------- request */

typedef struct kv_fill {
    srv_kv *kv;
    size_t n, cap;
} kv_fill;

static enum MHD_Result kv_collect(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    kv_fill *f = cls;

    (void)kind;
    if (f->n == f->cap || key == NULL)
        return f->n == f->cap ? MHD_NO : MHD_YES;
    f->kv[f->n].key = key;
    f->kv[f->n].value = value ? value : ""; /* "?flag" has no value */
    f->n++;
    return MHD_YES;
}

/* Points *out at MHD's strings (valid until the request completes).
 * false on out-of-memory. */
static bool kv_list(struct MHD_Connection *conn, enum MHD_ValueKind kind, srv_kv **out, size_t *n)
{
    int count = MHD_get_connection_values(conn, kind, NULL, NULL);
    kv_fill f;

    *out = NULL;
    *n = 0;
    if (count <= 0)
        return true;
    f.kv = calloc((size_t)count, sizeof *f.kv);
    if (f.kv == NULL)
        return false;
    f.n = 0;
    f.cap = (size_t)count;
    MHD_get_connection_values(conn, kind, kv_collect, &f);
    *out = f.kv;
    *n = f.n;
    return true;
}

/* Keeps up to the limit; past it, or when memory runs out, the rest is
 * counted and dropped. false: the client sent far more than the limit and
 * the connection should be closed without an answer. */
static bool http_body_take(srv_http *h, http_req *r, const char *data, size_t n)
{
    size_t max = h->app->config.max_body_bytes;

    r->received += n;
    if (r->too_large || r->oom)
        return r->received <= max || r->received - max <= HTTP_DRAIN_SLACK;
    if (n > max - r->len) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return true;
    }
    if (r->len + n > r->cap) {
        /* The declared length is the right size at once; otherwise double,
         * never past the limit (r->len + n <= max holds here). */
        size_t cap = r->cap ? r->cap : (r->has_declared ? (size_t)r->declared : HTTP_BODY_FIRST);
        char *grown;

        if (cap == 0)
            cap = HTTP_BODY_FIRST;
        if (cap > max)
            cap = max;
        while (cap < r->len + n)
            cap = cap > max / 2 ? max : cap * 2;
        grown = realloc(r->body, cap);
        if (grown == NULL) {
            r->oom = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return true;
        }
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return true;
}

static bool http_expects_continue(struct MHD_Connection *conn, const char *version)
{
    const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);

    return expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
           strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
}

/* First call for a request: headers are in, no body yet. */
static enum MHD_Result http_begin(srv_http *h, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, void **req_cls)
{
    size_t max = h->app->config.max_body_bytes;
    http_req *r = calloc(1, sizeof *r);
    const char *cl, *te;

    if (r == NULL) {
        /* Nothing to hang the request on: answer now and close; the
         * sentinel makes later calls for this request do nothing. */
        srv_response res;
        srv_response_init(&res);
        res.status = 500;
        *req_cls = &http_req_failed;
        return http_send(h, conn, NULL, &res, true);
    }
    r->t0 = srv_now_ms();
    r->url = url;
    r->method = method;
    r->counted = true;
    atomic_fetch_add(&h->in_flight, 1);
    *req_cls = r;
    {
        /* Remember the request on its connection: a client that hangs up
         * right after its headers gets no completion callback from MHD
         * 0.9.75, only the connection's close notification. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        http_conn *hc = ci ? ci->socket_context : NULL;
        if (hc != NULL) {
            hc->cur = r;
            r->conn = hc;
        }
    }

    te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && te == NULL) {
        char *end;
        r->declared = strtoull(cl, &end, 10);
        r->has_declared = true;
        /* MHD already refused malformed lengths; ERANGE saturates, which
         * lands in the "far too large" branch below. */
    }
    if (r->has_declared && r->declared > max) {
        r->too_large = true;
        /* Answer before the body when the client waits for "100 Continue"
         * (it will then not send it) or when draining it is not worth it. */
        if (http_expects_continue(conn, version) || r->declared - max > HTTP_DRAIN_SLACK) {
            r->responded = true;
            return http_send_too_large(h, conn, r);
        }
    }
    return MHD_YES;
}

/* Last call: the whole body is in. */
static enum MHD_Result http_finish(srv_http *h, struct MHD_Connection *conn, const char *url,
                                   const char *method, http_req *r)
{
    srv_request req;
    srv_response res;

    if (r->too_large)
        return http_send_too_large(h, conn, r);
    if (r->oom)
        return http_send_error(h, conn, r, 500, SRV_CODE_INTERNAL, true,
                               "out of memory while reading the request body");
    if (!kv_list(conn, MHD_GET_ARGUMENT_KIND, &r->query, &r->n_query) ||
        !kv_list(conn, MHD_HEADER_KIND, &r->headers, &r->n_headers))
        return http_send_error(h, conn, r, 500, SRV_CODE_INTERNAL, false,
                               "out of memory while reading the request");

    memset(&req, 0, sizeof req);
    req.method = method;
    req.path = url;
    req.query = r->query;
    req.n_query = r->n_query;
    req.headers = r->headers;
    req.n_headers = r->n_headers;
    req.body = r->body;
    req.body_len = r->len;

    srv_response_init(&res);
    srv_dispatch(h->app, &req, &res);
    return http_send(h, conn, r, &res, false);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls)
{
    srv_http *h = cls;
    http_req *r = *req_cls;

    if (r == NULL)
        return http_begin(h, conn, url, method, version, req_cls);
    if (r == &http_req_failed) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        bool keep = http_body_take(h, r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return keep ? MHD_YES : MHD_NO;
    }
    if (r->responded)
        return MHD_YES;
    r->responded = true;
    return http_finish(h, conn, url, method, r);
}

static void http_req_release(srv_http *h, http_req *r)
{
    if (r->conn != NULL)
        r->conn->cur = NULL;
    free(r->body);
    free(r->query);
    free(r->headers);
    if (r->counted)
        atomic_fetch_sub(&h->in_flight, 1);
    free(r);
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                           enum MHD_RequestTerminationCode toe)
{
    http_req *r = *req_cls;

    (void)conn;
    (void)toe;
    if (r == NULL || r == &http_req_failed)
        return;
    http_req_release(cls, r);
    *req_cls = NULL;
}

/* Per-connection state: created when MHD accepts, freed when it closes;
 * a request still attached then was abandoned by its client. */
static void http_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                            enum MHD_ConnectionNotificationCode toe)
{
    (void)conn;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(http_conn));
        return;
    }
    http_conn *hc = *socket_context;
    if (hc == NULL)
        return;
    if (hc->cur != NULL)
        http_req_release(cls, hc->cur);
    free(hc);
    *socket_context = NULL;
}

/* ---------------------------------------------------------------- daemon */

typedef union http_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
} http_addr;

/* Literal IPv4/IPv6 (config.c already refused anything else) or
 * localhost, which means 127.0.0.1 so the result never depends on
 * /etc/hosts. false if host is none of these. */
static bool http_addr_make(const char *host, unsigned port, http_addr *a, bool *v6)
{
    memset(a, 0, sizeof *a);
    *v6 = false;
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a->v4.sin_addr) == 1) {
        a->v4.sin_family = AF_INET;
        a->v4.sin_port = htons((uint16_t)port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &a->v6.sin6_addr) == 1) {
        a->v6.sin6_family = AF_INET6;
        a->v6.sin6_port = htons((uint16_t)port);
        *v6 = true;
        return true;
    }
    return false;
}

/* The port actually bound (port 0 asks the kernel for one). 0 if unknown. */
static unsigned http_bound_port(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    http_addr a;
    socklen_t len = sizeof a;

    if (info != NULL && info->port != 0)
        return info->port;
    info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
    if (info == NULL || getsockname(info->listen_fd, &a.sa, &len) != 0)
        return 0;
    return ntohs(a.sa.sa_family == AF_INET6 ? a.v6.sin6_port : a.v4.sin_port);
}

srv_http *srv_http_start(srv_app *app, char *err, size_t err_len)
{
    const srv_config *c = &app->config;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    srv_http *h;
    http_addr addr;
    bool v6;

    if (!http_addr_make(c->host, c->port, &addr, &v6)) {
        snprintf(err, err_len, "--host: '%.64s' is not an IPv4 or IPv6 address (or localhost)",
                 c->host);
        return NULL;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    h->app = app;
    h->listen_fd = MHD_INVALID_SOCKET;
    atomic_init(&h->in_flight, 0);
    atomic_init(&h->starting, false);

    /* poll, not epoll: with MHD 0.9.75's edge-triggered epoll, a client
     * whose headers and FIN arrive together is never read again, so its
     * connection sits in CLOSE_WAIT until the timeout. poll scales past
     * FD_SETSIZE too, and the connection cap keeps the set small. */
    if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
        flags |= MHD_USE_POLL;
    else if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
        flags |= MHD_USE_EPOLL;
    if (v6)
        flags |= MHD_USE_IPv6;

    atomic_store(&h->starting, true);
    h->daemon = MHD_start_daemon(flags, (uint16_t)c->port, NULL, NULL, http_access, h,
                                 MHD_OPTION_EXTERNAL_LOGGER, http_log, h, MHD_OPTION_SOCK_ADDR,
                                 &addr.sa, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)c->threads,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)c->timeout_s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned int)c->max_connections,
                                 MHD_OPTION_NOTIFY_COMPLETED, http_completed, h,
                                 MHD_OPTION_NOTIFY_CONNECTION, http_connection, h, MHD_OPTION_END);
    atomic_store(&h->starting, false);
    if (h->daemon == NULL) {
        snprintf(err, err_len, "cannot listen on %s%s%s:%u: %s", v6 ? "[" : "", c->host,
                 v6 ? "]" : "", c->port,
                 h->start_log[0] ? h->start_log : "the HTTP library refused to start");
        free(h);
        return NULL;
    }
    app->bound_port = http_bound_port(h->daemon);
    if (app->bound_port == 0)
        app->bound_port = c->port;
    return h;
}

void srv_http_quiesce(srv_http *h)
{
    MHD_socket fd;

    if (h == NULL || h->quiesced)
        return;
    h->quiesced = true;
    fd = MHD_quiesce_daemon(h->daemon);
    if (fd == MHD_INVALID_SOCKET)
        return;
    h->listen_fd = fd;
    /* MHD only stops accepting; the kernel would still complete handshakes
     * into the backlog and leave those clients hanging until we exit.
     * Shutting the listening socket down makes it refuse them at once. */
    shutdown(fd, SHUT_RDWR);
}

unsigned srv_http_in_flight(const srv_http *h)
{
    return h ? atomic_load(&((srv_http *)h)->in_flight) : 0;
}

void srv_http_stop(srv_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    if (h->listen_fd != MHD_INVALID_SOCKET)
        close(h->listen_fd);
    free(h);
}
