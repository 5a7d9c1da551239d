/* srv.h - the service's internal interface: config, requests, responses, routes. */
#ifndef SRV_H
#define SRV_H

/*
 * The transport (http.c, the only file that sees libmicrohttpd) turns each
 * HTTP exchange into an srv_request, calls srv_dispatch(), and sends the
 * srv_response back. Handlers never see transport types, so every endpoint is
 * unit-testable without sockets: build an srv_request, call the handler,
 * inspect the srv_response.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"

#define SRV_VERSION "0.1.0"

/* ---------------------------------------------------------------- config */

typedef struct srv_config {
    char host[256];        /* --host / ATTN_HOST, default 127.0.0.1 */
    unsigned port;         /* --port / ATTN_PORT, default 8080; 0 = any free port */
    unsigned threads;      /* --threads / ATTN_THREADS: request workers, default = cores */
    int blas_threads;      /* --blas-threads / ATTN_BLAS_THREADS, default 1 (see README) */
    size_t max_body_bytes; /* --max-body-bytes / ATTN_MAX_BODY_BYTES, default 64 MiB */
    size_t max_elements;   /* --max-elements / ATTN_MAX_ELEMENTS: floats one response may hold */
    unsigned timeout_s;    /* --timeout / ATTN_TIMEOUT: idle connection timeout, seconds */
    unsigned drain_s;      /* --drain-timeout / ATTN_DRAIN_TIMEOUT: seconds to finish in-flight work */
    bool quiet;            /* --quiet / ATTN_QUIET: no start-up banner */
    /* limits and operations (see README "Operations") */
    unsigned max_seq_len;      /* --max-seq-len: query or key rows one request may have */
    unsigned max_heads;        /* --max-heads: attention heads per block */
    unsigned max_layers;       /* --max-layers: layers per transformer stack */
    unsigned max_connections;  /* --max-connections: open connections at once */
    unsigned max_concurrent;   /* --max-concurrent: computations at once (0 = threads) */
    unsigned queue_timeout_ms; /* --queue-timeout-ms: wait for a slot before 429 */
    char api_key[256];         /* --api-key / ATTN_API_KEY: Bearer token for /v1 and /v2 */
    char api_key_file[512];    /* --api-key-file / ATTN_API_KEY_FILE: the key, from a file */
    bool access_log;           /* --access-log / ATTN_ACCESS_LOG: JSON lines on stderr */
    /* --cors-origin / ATTN_CORS_ORIGIN: origins whose pages may call the API, comma-separated
     * ("*" = any); "" = no CORS headers (see cors.h) */
    char cors_origins[1024];
    /* --model NAME=DIR / ATTN_MODELS: pretrained models, one "NAME=DIR" per line (models.h) */
    char models[4096];
} srv_config;

/* Fills c with the documented defaults. */
void srv_config_defaults(srv_config *c);

typedef enum srv_cli_action {
    SRV_CLI_RUN = 0,  /* start the server */
    SRV_CLI_EXIT = 1, /* --help / --version printed; exit 0 */
    SRV_CLI_ERROR = 2 /* bad flag or value; message in err; exit 2 */
} srv_cli_action;

/*
 * Applies ATTN_* environment variables (via getenv_fn, so tests can supply
 * their own; NULL = getenv), then command-line flags (flags win). --help and
 * --version write to out. On a bad flag or value, writes one line naming it
 * into err (size err_len) and returns SRV_CLI_ERROR.
 */
srv_cli_action srv_config_parse(srv_config *c, int argc, char **argv,
                                const char *(*getenv_fn)(const char *),
                                char *out, size_t out_len, char *err,
                                size_t err_len);

/* ------------------------------------------------------------ buffers */

/* A growable byte buffer. On allocation failure it sets oom and ignores
 * further writes; callers check oom once at the end. */
typedef struct srv_buf {
    char *data;
    size_t len;
    size_t cap;
    bool oom;
} srv_buf;

void srv_buf_init(srv_buf *b);
void srv_buf_free(srv_buf *b);
void srv_buf_reserve(srv_buf *b, size_t extra);
void srv_buf_append(srv_buf *b, const void *p, size_t n);
void srv_buf_puts(srv_buf *b, const char *s);
void srv_buf_printf(srv_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (NUL-terminated) and resets b. NULL if oom. */
char *srv_buf_detach(srv_buf *b, size_t *len);

/* ------------------------------------------------------------- request */

typedef struct srv_kv {
    const char *key;
    const char *value;
} srv_kv;

#define SRV_MAX_PARAMS 4

typedef struct srv_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path without the query string */
    const srv_kv *query;   /* query-string arguments */
    size_t n_query;
    const srv_kv *headers; /* request headers as received */
    size_t n_headers;
    const char *body; /* not NUL-terminated; may be NULL when body_len is 0 */
    size_t body_len;
    /* Filled by the router for patterns such as /v1/models/{name}. */
    char params[SRV_MAX_PARAMS][128];
    size_t n_params;
} srv_request;

/* Case-insensitive header lookup; NULL when absent. */
const char *srv_req_header(const srv_request *r, const char *name);
/* Query-string argument; NULL when absent. */
const char *srv_req_query(const srv_request *r, const char *key);

/* ------------------------------------------------------------ response */

#define SRV_MAX_HEADERS 8

typedef struct srv_response {
    int status;
    char content_type[64];
    char *body; /* malloc'd; the transport frees it */
    size_t body_len;
    char header_names[SRV_MAX_HEADERS][32];
    char header_values[SRV_MAX_HEADERS][128];
    size_t n_headers;
    double inference_ms; /* compute time, sent as X-Inference-Time when > 0 */
    int route;              /* index into srv_routes of the route that answered, -1: none */
    const char *error_code; /* the error's code when srv_respond_error wrote it, else NULL */
} srv_response;

void srv_response_init(srv_response *r);
void srv_response_clear(srv_response *r); /* frees body, back to init state */
void srv_response_header(srv_response *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of body (malloc'd). */
void srv_response_set(srv_response *r, int status, const char *content_type,
                      char *body, size_t len);
/* Copies text. */
void srv_response_text(srv_response *r, int status, const char *content_type,
                       const char *text);

/* ---------------------------------------------------------------- errors */

/* One error, the contract's envelope:
 * {"error": {"status", "code", "message", "field"}}; field is a JSON Pointer
 * ("" when the error is not about one value). */
typedef struct srv_err {
    int status;
    const char *code; /* static: "invalid_argument", "not_found", ... */
    char field[256];
    char message[512];
} srv_err;

/* Sets every member; returns false so callers can `return srv_err_set(...)`. */
bool srv_err_set(srv_err *e, int status, const char *code, const char *field,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Codes used with each status. */
#define SRV_CODE_INVALID "invalid_argument"     /* 400 */
#define SRV_CODE_MALFORMED "malformed_json"     /* 400 */
#define SRV_CODE_UNAUTHENTICATED "unauthenticated" /* 401 */
#define SRV_CODE_NOT_FOUND "not_found"          /* 404 */
#define SRV_CODE_METHOD "method_not_allowed"    /* 405 */
#define SRV_CODE_TOO_LARGE "payload_too_large"  /* 413 */
#define SRV_CODE_MEDIA_TYPE "unsupported_media_type" /* 415 */
#define SRV_CODE_TOO_MANY "too_many_requests"   /* 429 */
#define SRV_CODE_UNAVAILABLE "unavailable"      /* 503 */
#define SRV_CODE_INTERNAL "internal"            /* 500 */

/* Writes the error envelope into r (replacing what r had). */
void srv_respond_error(srv_response *r, const srv_err *e);

/* --------------------------------------------------------------- the app */

typedef struct srv_app srv_app;
typedef struct srv_metrics srv_metrics;
typedef struct srv_limiter srv_limiter;
typedef struct srv_models srv_models;

/* Process-wide state shared by all handlers (read-mostly). */
struct srv_app {
    srv_config config;
    volatile int ready;    /* 1 once started and not draining */
    volatile int draining; /* 1 after SIGTERM/SIGINT */
    double start_time;     /* srv_now_ms() at start */
    unsigned bound_port;   /* the port actually bound */
    srv_metrics *metrics;  /* request counters (NULL: not kept) */
    srv_limiter *limiter;  /* slots for computations (NULL: no limit) */
    srv_models *models;    /* pretrained models (models.h; NULL: none) */
};

/* Monotonic milliseconds. */
double srv_now_ms(void);

/* Decimal text of v into out (at least 21 bytes), NUL-terminated; returns
 * its length. No printf: these run several times per request. */
size_t srv_format_uint(unsigned long long v, char *out);
/* v rounded to decimals places (0..6), as printf's "%.*f" writes it; with
 * trim, trailing fractional zeros (and a bare '.') are dropped. out holds at
 * least 32 bytes. Values of 1e12 or more, and non-finite ones, go through
 * printf. */
size_t srv_format_fixed(double v, int decimals, bool trim, char *out);

/* This thread's engine workspace (created on first use, freed at thread
 * exit). NULL if it cannot be allocated. */
attn_ws *srv_thread_ws(void);

/* ---------------------------------------------------------------- routes */

typedef void (*srv_handler)(srv_app *app, const srv_request *req,
                            srv_response *res);

typedef struct srv_route {
    const char *method;  /* "GET" or "POST" */
    const char *pattern; /* "/v1/attention", "/v1/models/{name}" */
    srv_handler handler;
    bool needs_json;     /* POST with a JSON body: 415 for another content type */
    bool pictures;       /* answers can be drawn: ?format= / Accept text, svg, html */
} srv_route;

/*
 * Finds the route for req and runs it: 404 for an unknown path, 405 with
 * Allow for a known path with another method (OPTIONS answers 204 with
 * Allow), 415 for a non-JSON body on a JSON route. Fills res.
 */
void srv_dispatch(srv_app *app, srv_request *req, srv_response *res);

/* Index of the route for method and path (another method's route on that
 * path when none has the method), -1 when no route has the path. */
int srv_route_index(const char *method, const char *path);

/* The route table (routes.c) and its size. */
extern const srv_route srv_routes[];
extern const size_t srv_n_routes;

/* Handlers, one family per file. */
void srv_h_healthz(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_readyz(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_info(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_openapi(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_metrics(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_attention(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_mha(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_transformer_encoder(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_transformer_decoder(srv_app *app, const srv_request *req, srv_response *res);

/* The embedded api/openapi.yaml (generated at build time). */
extern const char *const srv_openapi_yaml;
extern const size_t srv_openapi_yaml_len;

/* ------------------------------------------------------------ transport */

typedef struct srv_http srv_http;

/* Starts listening with app->config; sets app->bound_port. On error returns
 * NULL and writes a one-line reason into err. */
srv_http *srv_http_start(srv_app *app, char *err, size_t err_len);
/* Stops accepting new connections (drain); in-flight requests go on. */
void srv_http_quiesce(srv_http *h);
/* Requests currently being handled. */
unsigned srv_http_in_flight(const srv_http *h);
/* Stops and frees. NULL is a no-op. */
void srv_http_stop(srv_http *h);

#endif /* SRV_H */
