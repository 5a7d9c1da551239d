/* util_harness.h - integration test harness: run the real server, talk HTTP to it, read JSON. */
#ifndef UTIL_HARNESS_H
#define UTIL_HARNESS_H

/*
 * Every integration test starts its own attention-server on port 0 (the
 * binary CMake built, ATTN_SERVER_BIN), reads the port from the start-up line,
 * talks real HTTP to it with libcurl (or a raw socket for what libcurl cannot
 * express), and stops it with SIGTERM, asserting exit status 0: under
 * AddressSanitizer a leak makes the server exit non-zero, which fails the test.
 *
 * Helpers whose name ends in _ok assert with Check (ck_assert) and so may only
 * be called from inside a test; the others return a status and never assert.
 * A server left running by a failed test is killed at process exit and its
 * stderr is printed, so the reason for a failure is in the test log.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>

/* Seconds to wait for the start-up line and for exit after SIGTERM: builds
 * with sanitizers start and stop slower. ATTN_IT_WAIT_S overrides both. */
#define IT_DEFAULT_WAIT_S 30.0

/* ---------------------------------------------------------------- server */

typedef struct it_server {
    pid_t pid;
    unsigned port;
    char base_url[64];     /* "http://127.0.0.1:PORT" */
    char stdout_path[128]; /* temp file with the server's stdout */
    char stderr_path[128]; /* temp file with the server's stderr */
    bool running;          /* started and not yet reaped */
    int wait_status;       /* waitpid status once reaped */
} it_server;

/*
 * Starts ATTN_SERVER_BIN with --host 127.0.0.1 --port 0, then the NULL-
 * terminated args (may be NULL), with the environment of this process minus
 * every ATTN_* variable plus the NULL-terminated "NAME=VALUE" entries of env
 * (may be NULL). Waits for the start-up line. Returns NULL (after printing the
 * reason and the server's stderr) if the server does not start; the caller
 * frees with it_server_stop() or it_server_kill().
 */
it_server *it_server_start(const char *const *args, const char *const *env);

/* As it_server_start with a NULL-terminated list of extra flags; asserts. */
it_server *it_start_ok(const char *arg, ...);

/* Sends SIGTERM (unless the server has already been reaped) and waits up to wait_s s.
 * Returns the waitpid status, or -1 on timeout (the server is then killed).
 * Frees s. */
int it_server_stop(it_server *s, double wait_s);

/* Asserts that the server exits with status 0 within the default wait after
 * SIGTERM; prints the server's stderr when it does not. Frees s. */
void it_stop_ok(it_server *s);

/* Sends a signal to the server without waiting. */
void it_server_signal(const it_server *s, int sig);

/* Waits up to wait_s for a server that was already signalled; returns the
 * waitpid status or -1 on timeout (the server keeps running). */
int it_server_wait(it_server *s, double wait_s);

/* SIGKILL, reap, free. NULL is a no-op. */
void it_server_kill(it_server *s);

/* Prints the server's stderr (up to max_bytes from the end) to our stderr. */
void it_server_dump_stderr(const it_server *s, size_t max_bytes);

/* ATTN_IT_VERBOSE set (not "0"): log server start/stop times and stderr. */
bool it_verbose(void);

/* Seconds to wait for start and stop (IT_DEFAULT_WAIT_S or ATTN_IT_WAIT_S). */
double it_wait_s(void);

/* Runs ATTN_SERVER_BIN with args (no server start expected, e.g. --version),
 * capturing stdout+stderr into out (NUL-terminated, truncated). Returns the
 * waitpid status, or -1 if it could not be run or did not end in wait_s. */
int it_run_binary(const char *const *args, char *out, size_t out_len, double wait_s);

/* ------------------------------------------------------------------ HTTP */

/* Sentinel content type: send no Content-Type header at all. */
#define IT_NO_CONTENT_TYPE ""

typedef struct it_req {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* "/v1/attention" (may carry a query string) */
    const char *content_type; /* NULL: application/json when a body is sent;
                                 IT_NO_CONTENT_TYPE: no header */
    const void *body;         /* may be NULL */
    size_t body_len;
    bool send_body;                  /* true: send body (even an empty one) */
    bool chunked;                    /* Transfer-Encoding: chunked, no Content-Length */
    bool expect_continue;            /* keep curl's Expect: 100-continue (off by default) */
    const char *const *headers;      /* extra "Name: value" lines, NULL-terminated; may be NULL */
    CURL *handle;                    /* reuse this easy handle (keep-alive); NULL = a fresh one */
    long timeout_ms;                 /* 0 = 60 s */
    curl_xferinfo_callback progress; /* optional transfer progress hook */
    void *progress_data;
} it_req;

typedef struct it_resp {
    CURLcode curl_code;
    char curl_error[CURL_ERROR_SIZE];
    long status; /* 0 when no response was received */
    char *body;  /* NUL-terminated; malloc'd (it_resp_free) */
    size_t body_len;
    char *raw_headers; /* the last header block as received */
    char content_type[128];
    char allow[128];
    char connection[64];
    char inference_time[64]; /* X-Inference-Time, "" when absent */
    char total_time[64];     /* X-Total-Time, "" when absent */
    long num_connects;       /* CURLINFO_NUM_CONNECTS: 0 when a connection was reused */
    double elapsed_s;
} it_resp;

/* Performs one request. Returns false on a transport failure (curl_code set);
 * an HTTP error status is not a failure. Always initialises out. */
bool it_http(const it_server *s, const it_req *rq, it_resp *out);

void it_resp_free(it_resp *r);

/* Header value of the last response (case-insensitive name), copied into
 * out; false when absent. */
bool it_resp_header(const it_resp *r, const char *name, char *out, size_t out_len);

/* Shortcuts; assert that a response arrived. */
void it_get_ok(const it_server *s, const char *path, it_resp *out);
void it_post_ok(const it_server *s, const char *path, const char *json, it_resp *out);
/* Serialises j (unformatted) and posts it. */
void it_post_json_ok(const it_server *s, const char *path, const cJSON *j, it_resp *out);

/* "status 400, body {...}" for assertion messages: a static per-thread buffer. */
const char *it_resp_describe(const it_resp *r);

/* Parses the body as JSON; asserts it is JSON. Caller deletes. */
cJSON *it_resp_json_ok(const it_resp *r);

/* Asserts the error envelope: status, code, field (NULL = not checked),
 * non-empty message, error.status == status, Content-Type application/json. */
void it_expect_error_ok(const it_resp *r, long status, const char *code, const char *field,
                        const char *context);

/* Checks a timing header value: a finite number >= 0 with nothing after it. */
bool it_is_ms_value(const char *s);

/* -------------------------------------------------------------- raw sockets */

/* Connects to the server; -1 on failure. */
int it_raw_connect(const it_server *s);
/* Sends everything; false on error. */
bool it_raw_send(int fd, const void *p, size_t n);
bool it_raw_send_str(int fd, const char *s);

typedef struct it_raw_resp {
    char *data; /* everything received, NUL-terminated; malloc'd */
    size_t len;
    int status; /* from the status line; 0 if none */
    bool eof;   /* the peer closed the connection */
    bool timed_out;
} it_raw_resp;

/*
 * Reads one response: stops once the headers and Content-Length bytes of body
 * have arrived, at EOF, or after timeout_s. Free data with free().
 */
void it_raw_read_response(int fd, double timeout_s, it_raw_resp *out);

/* Waits until the peer closes (recv returns 0 or an error) or timeout_s
 * passes; returns seconds waited, or -1 on timeout. Discards data. */
double it_raw_wait_closed(int fd, double timeout_s);

/* ------------------------------------------------------------------ JSON */

/* Reads a whole file (NUL-terminated); NULL on failure. */
char *it_read_file(const char *path, size_t *len);

/* Parses a JSON file; asserts. */
cJSON *it_json_file_ok(const char *path);

/* Serialises unformatted; asserts. Caller frees with cJSON_free. */
char *it_json_print_ok(const cJSON *j);

/* Monotonic seconds. */
double it_now_s(void);
void it_sleep_ms(long ms);

/*
 * Structural comparison of actual against expected: same object key sets,
 * same array lengths, equal strings/bools/nulls, numbers within
 * atol + rtol * |expected|. A member named "elapsed_ms" only has to be a
 * number >= 0 in actual. On a difference returns false and describes it in
 * why (with the JSON Pointer of the first difference).
 */
bool it_json_match(const cJSON *actual, const cJSON *expected, double atol, double rtol, char *why,
                   size_t why_len);

/* -------------------------------------------------------------- tensors */

#define IT_MAX_RANK 8

typedef struct it_tensor {
    float *data; /* null in a JSON list reads as NaN */
    size_t rank;
    size_t shape[IT_MAX_RANK];
    size_t size;
} it_tensor;

/* Reads a nested numeric list (rectangular) or a tensor object
 * {"dtype": "float32", "shape": [...], "data": base64}. Returns false with a
 * reason in why. */
bool it_tensor_read(const cJSON *item, it_tensor *t, char *why, size_t why_len);
void it_tensor_free(it_tensor *t);

/* Builds a tensor object (base64 little-endian float32) from a nested numeric
 * list; NULL if item is not one. */
cJSON *it_tensor_object_from_list(const cJSON *item);

/* Builds a nested list cJSON of the given shape from floats. */
cJSON *it_list_from_floats(const float *data, size_t rank, const size_t *shape);

/*
 * Compares a tensor with an expected nested list: same shape, every element
 * within atol. Expected null (NaN) means 0 when null_is_zero, otherwise the
 * actual value must be NaN too. Returns false and describes the first
 * difference in why.
 */
bool it_tensor_close(const it_tensor *actual, const cJSON *expected, double atol, bool null_is_zero,
                     char *why, size_t why_len);

/* Base64 (standard alphabet, padded). Encode returns a malloc'd string;
 * decode returns malloc'd bytes or NULL on bad input. */
char *it_base64_encode(const void *p, size_t n);
unsigned char *it_base64_decode(const char *s, size_t *n);

/* Size of a nested list's shape (rank, dims); false if not rectangular. */
bool it_list_shape(const cJSON *item, size_t *rank, size_t *shape);

/* Runs a Check suite with the usual runner set-up; returns the process exit
 * code (0 when every test passed). Initialises libcurl once. */
int it_run_suite(Suite *suite);

#endif /* UTIL_HARNESS_H */
