/* test_routes.c - every route and error status over HTTP, keep-alive, concurrency, drain. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "util_harness.h"

/* ------------------------------------------------------------- helpers */

/* Deterministic values in [-1, 1), exactly representable as float. */
static void fill(float *x, size_t n, unsigned seed)
{
    unsigned s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((int)((s >> 8) & 0xffff) - 32768) / 32768.0f;
    }
}

static cJSON *matrix(const float *x, size_t rows, size_t cols)
{
    size_t shape[2] = {rows, cols};
    return it_list_from_floats(x, 2, shape);
}

/* {"query": [n][d], "key": [m][d], "value": [m][dv]} from a seed. */
static cJSON *attention_request(size_t n, size_t m, size_t d, size_t dv, unsigned seed)
{
    float *q = malloc(n * d * sizeof *q), *k = malloc(m * d * sizeof *k),
          *v = malloc(m * dv * sizeof *v);
    ck_assert(q != NULL && k != NULL && v != NULL);
    fill(q, n * d, seed);
    fill(k, m * d, seed + 1);
    fill(v, m * dv, seed + 2);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "query", matrix(q, n, d));
    cJSON_AddItemToObject(r, "key", matrix(k, m, d));
    cJSON_AddItemToObject(r, "value", matrix(v, m, dv));
    free(q);
    free(k);
    free(v);
    return r;
}

/* Reads member name of obj as a tensor; asserts. */
static void member_tensor_ok(const cJSON *obj, const char *name, it_tensor *t)
{
    char why[256];
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    ck_assert_msg(item != NULL, "response has no \"%s\"", name);
    ck_assert_msg(it_tensor_read(item, t, why, sizeof why), "\"%s\": %s", name, why);
}

static void expect_shape(const it_tensor *t, const char *name, size_t rank, const size_t *shape)
{
    bool same = t->rank == rank;
    for (size_t i = 0; same && i < rank; i++)
        same = t->shape[i] == shape[i];
    ck_assert_msg(same, "\"%s\" has rank %zu, shape[0] %zu: expected rank %zu, shape[0] %zu", name,
                  t->rank, t->rank ? t->shape[0] : 0, rank, rank ? shape[0] : 0);
}

/* Asserts j (a JSON array) equals the integers given. */
static void expect_int_list(const cJSON *j, const char *what, size_t n, const size_t *want)
{
    ck_assert_msg(cJSON_IsArray(j) && (size_t)cJSON_GetArraySize(j) == n,
                  "%s must be a list of %zu integers", what, n);
    size_t i = 0;
    for (const cJSON *c = j->child; c != NULL; c = c->next, i++)
        ck_assert_msg(cJSON_IsNumber(c) && c->valuedouble == (double)want[i],
                      "%s[%zu]: expected %zu", what, i, want[i]);
}

static const cJSON *get(const cJSON *obj, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    ck_assert_msg(j != NULL, "member \"%s\" missing", key);
    return j;
}

static void expect_string(const cJSON *obj, const char *key, const char *want)
{
    const cJSON *j = get(obj, key);
    ck_assert_msg(cJSON_IsString(j) && strcmp(j->valuestring, want) == 0, "\"%s\" must be \"%s\"",
                  key, want);
}

static void expect_number(const cJSON *obj, const char *key, double want, double tol)
{
    const cJSON *j = get(obj, key);
    ck_assert_msg(cJSON_IsNumber(j) && fabs(j->valuedouble - want) <= tol,
                  "\"%s\" must be %g, got %g", key, want, cJSON_IsNumber(j) ? j->valuedouble : NAN);
}

static void expect_compute_headers(const it_resp *r)
{
    ck_assert_msg(it_is_ms_value(r->inference_time),
                  "X-Inference-Time must be a number of ms >= 0, got \"%s\"", r->inference_time);
    ck_assert_msg(it_is_ms_value(r->total_time),
                  "X-Total-Time must be a number of ms >= 0, got \"%s\"", r->total_time);
    ck_assert_msg(strncmp(r->content_type, "application/json", 16) == 0,
                  "Content-Type must be application/json, got \"%s\"", r->content_type);
}

/* Naive single-head scaled-dot attention in double (the reference). */
static void ref_attention(const float *q, const float *k, const float *v, size_t n, size_t m,
                          size_t d, size_t dv, double scale, double *out, double *w)
{
    for (size_t i = 0; i < n; i++) {
        double mx = -INFINITY;
        for (size_t j = 0; j < m; j++) {
            double s = 0;
            for (size_t c = 0; c < d; c++)
                s += (double)q[i * d + c] * k[j * d + c];
            w[i * m + j] = s * scale;
            if (w[i * m + j] > mx)
                mx = w[i * m + j];
        }
        double sum = 0;
        for (size_t j = 0; j < m; j++) {
            w[i * m + j] = exp(w[i * m + j] - mx);
            sum += w[i * m + j];
        }
        for (size_t j = 0; j < m; j++)
            w[i * m + j] /= sum;
        for (size_t c = 0; c < dv; c++) {
            double o = 0;
            for (size_t j = 0; j < m; j++)
                o += w[i * m + j] * v[j * dv + c];
            out[i * dv + c] = o;
        }
    }
}

static void expect_close(const it_tensor *t, const double *want, size_t n, double tol,
                         const char *what)
{
    ck_assert_msg(t->size == n, "%s: %zu values, expected %zu", what, t->size, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(fabs(t->data[i] - want[i]) <= tol, "%s[%zu]: got %.9g, expected %.9g", what,
                      i, t->data[i], want[i]);
}

/* ------------------------------------------------------- operations */

START_TEST(healthz_get_returns_200_ok)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    it_get_ok(s, "/healthz", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ck_assert_msg(strncmp(r.content_type, "application/json", 16) == 0, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    expect_string(j, "status", "ok");
    cJSON_Delete(j);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(readyz_get_returns_200_ready)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    it_get_ok(s, "/readyz", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    expect_string(j, "status", "ready");
    cJSON_Delete(j);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(info_get_reports_name_version_build_blas_server_limits)
{
    it_server *s = it_start_ok("--threads", "3", NULL);
    it_resp r;
    it_get_ok(s, "/v1/info", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ck_assert_msg(strncmp(r.content_type, "application/json", 16) == 0, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    expect_string(j, "name", "explore-attention");
    expect_string(j, "version", "0.1.0");
    const cJSON *build = get(j, "build");
    ck_assert_msg(cJSON_IsString(get(build, "compiler")), "build.compiler must be a string");
    ck_assert_msg(cJSON_IsString(get(build, "type")), "build.type must be a string");
    const cJSON *blas = get(j, "blas");
    ck_assert_msg(cJSON_IsString(get(blas, "info")) && get(blas, "info")->valuestring[0] != '\0',
                  "blas.info must be a non-empty string");
    expect_number(blas, "threads", 1, 0);
    const cJSON *server = get(j, "server");
    expect_number(server, "threads", 3, 0);
    expect_string(server, "host", "127.0.0.1");
    expect_number(server, "port", s->port, 0);
    const cJSON *limits = get(j, "limits");
    expect_number(limits, "max_body_bytes", 67108864.0, 0);
    expect_number(limits, "max_elements", 67108864.0, 0);
    expect_number(limits, "timeout_s", 30, 0);
    const cJSON *endpoints = get(j, "endpoints");
    ck_assert_msg(cJSON_IsArray(endpoints) && cJSON_GetArraySize(endpoints) >= 6,
                  "endpoints must list the 6 routes");
    char *etext = it_json_print_ok(endpoints);
    const char *paths[] = {"/healthz",      "/readyz",       "/v1/info",
                           "/openapi.yaml", "/v1/attention", "/v1/multihead_attention"};
    for (size_t i = 0; i < 6; i++)
        ck_assert_msg(strstr(etext, paths[i]) != NULL, "endpoints must mention %s: %s", paths[i],
                      etext);
    cJSON_free(etext);
    const cJSON *models = get(j, "models");
    ck_assert_msg(cJSON_IsArray(models) && cJSON_GetArraySize(models) == 0,
                  "models must be an empty list");
    cJSON_Delete(j);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(info_limits_follow_flags_and_env_flags_win)
{
    /* ATTN_MAX_BODY_BYTES from the environment, ATTN_MAX_ELEMENTS overridden
     * by the flag; sizes with a binary suffix, flags in --name=value form. */
    const char *args[] = {"--max-elements=1M", "--timeout", "7", "--blas-threads=2", NULL};
    const char *env[] = {"ATTN_MAX_BODY_BYTES=8K", "ATTN_MAX_ELEMENTS=5", "ATTN_THREADS=2", NULL};
    it_server *s = it_server_start(args, env);
    ck_assert_msg(s != NULL, "server did not start with %s", args[0]);
    it_resp r;
    it_get_ok(s, "/v1/info", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    const cJSON *limits = get(j, "limits");
    expect_number(limits, "max_body_bytes", 8192, 0);
    expect_number(limits, "max_elements", 1048576, 0);
    expect_number(limits, "timeout_s", 7, 0);
    expect_number(get(j, "server"), "threads", 2, 0);
    expect_number(get(j, "blas"), "threads", 2, 0);
    cJSON_Delete(j);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(openapi_get_returns_embedded_yaml)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    it_get_ok(s, "/openapi.yaml", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ck_assert_msg(strncmp(r.content_type, "application/yaml", 16) == 0,
                  "Content-Type must be application/yaml, got \"%s\"", r.content_type);
    ck_assert_msg(strncmp(r.body, "openapi: 3.1", 12) == 0, "body must start with openapi: 3.1");
    size_t len = 0;
    char *file = it_read_file(ATTN_API_DIR "/openapi.yaml", &len);
    ck_assert_msg(file != NULL, "cannot read api/openapi.yaml");
    ck_assert_msg(len == r.body_len && memcmp(file, r.body, len) == 0,
                  "GET /openapi.yaml must serve api/openapi.yaml as built (%zu bytes vs %zu)",
                  r.body_len, len);
    free(file);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(cli_version_and_help_exit_zero_bad_flag_exits_two)
{
    char out[8192];
    const char *version[] = {"--version", NULL};
    int st = it_run_binary(version, out, sizeof out, it_wait_s());
    ck_assert_msg(st == 0, "--version must exit 0 (status %d): %s", st, out);
    ck_assert_msg(strstr(out, "0.1.0") != NULL, "--version must print 0.1.0: %s", out);
    const char *help[] = {"--help", NULL};
    st = it_run_binary(help, out, sizeof out, it_wait_s());
    ck_assert_msg(st == 0, "--help must exit 0 (status %d): %s", st, out);
    ck_assert_msg(strstr(out, "--port") != NULL && strstr(out, "--max-body-bytes") != NULL,
                  "--help must list the flags: %s", out);
    const char *bad[][3] = {{"--no-such-flag", NULL, NULL},
                            {"--port", "not-a-number", NULL},
                            {"--max-body-bytes", "12Q", NULL},
                            {"--port", NULL, NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        st = it_run_binary(bad[i], out, sizeof out, it_wait_s());
        ck_assert_msg(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2,
                      "%s %s must exit 2 (status %d): %s", bad[i][0], bad[i][1] ? bad[i][1] : "",
                      st, out);
        ck_assert_msg(out[0] != '\0', "%s must say what is wrong", bad[i][0]);
    }
}
END_TEST

/* ---------------------------------------------------------- compute */

START_TEST(attention_small_request_matches_reference_with_meta)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 3, m = 5, d = 4, dv = 2;
    cJSON *req = attention_request(n, m, d, dv, 7);
    it_resp r;
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    expect_compute_headers(&r);
    cJSON *j = it_resp_json_ok(&r);

    it_tensor q, k, v, out, w;
    member_tensor_ok(req, "query", &q);
    member_tensor_ok(req, "key", &k);
    member_tensor_ok(req, "value", &v);
    member_tensor_ok(j, "output", &out);
    member_tensor_ok(j, "weights", &w);
    size_t so[2] = {n, dv}, sw[2] = {n, m};
    expect_shape(&out, "output", 2, so);
    expect_shape(&w, "weights", 2, sw);
    double ro[3 * 2], rw[3 * 5];
    ref_attention(q.data, k.data, v.data, n, m, d, dv, 0.5, ro, rw);
    expect_close(&out, ro, n * dv, 1e-5, "output");
    expect_close(&w, rw, n * m, 1e-5, "weights");
    ck_assert_msg(cJSON_GetObjectItemCaseSensitive(j, "scores") == NULL,
                  "scores must only be returned when asked for");

    const cJSON *meta = get(j, "meta");
    expect_string(meta, "score", "scaled_dot");
    expect_number(meta, "scale", 0.5, 1e-7);
    ck_assert_msg(cJSON_IsNull(get(meta, "softcap")), "meta.softcap must be null");
    expect_string(meta, "causal", "none");
    ck_assert_msg(cJSON_IsArray(get(meta, "masks")) && cJSON_GetArraySize(get(meta, "masks")) == 0,
                  "meta.masks must be []");
    ck_assert_msg(cJSON_IsNull(get(meta, "batch")), "meta.batch must be null");
    const cJSON *shapes = get(meta, "shapes");
    size_t sq[2] = {n, d}, sk[2] = {m, d}, sv[2] = {m, dv};
    expect_int_list(get(shapes, "query"), "meta.shapes.query", 2, sq);
    expect_int_list(get(shapes, "key"), "meta.shapes.key", 2, sk);
    expect_int_list(get(shapes, "value"), "meta.shapes.value", 2, sv);
    expect_int_list(get(shapes, "output"), "meta.shapes.output", 2, so);
    expect_int_list(get(shapes, "weights"), "meta.shapes.weights", 2, sw);
    expect_number(meta, "empty_rows", 0, 0);
    const cJSON *ret = get(meta, "return");
    ck_assert_msg(cJSON_IsArray(ret) && cJSON_GetArraySize(ret) == 2 &&
                      strcmp(cJSON_GetArrayItem(ret, 0)->valuestring, "output") == 0 &&
                      strcmp(cJSON_GetArrayItem(ret, 1)->valuestring, "weights") == 0,
                  "meta.return must be [\"output\", \"weights\"]");
    expect_string(meta, "encoding", "json");
    ck_assert_msg(cJSON_IsNull(get(meta, "precision")), "meta.precision must be null");
    ck_assert_msg(cJSON_IsNumber(get(meta, "elapsed_ms")) &&
                      get(meta, "elapsed_ms")->valuedouble >= 0,
                  "meta.elapsed_ms must be a number >= 0");

    it_tensor_free(&q);
    it_tensor_free(&k);
    it_tensor_free(&v);
    it_tensor_free(&out);
    it_tensor_free(&w);
    cJSON_Delete(j);
    cJSON_Delete(req);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(attention_options_scale_causal_scores_tokens_echoed)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 3, m = 3, d = 2, dv = 2;
    cJSON *req = attention_request(n, m, d, dv, 11);
    cJSON_AddNumberToObject(req, "scale", 0.25);
    cJSON_AddStringToObject(req, "causal", "bottom_right");
    const char *ret[] = {"output", "weights", "scores"};
    cJSON_AddItemToObject(req, "return", cJSON_CreateStringArray(ret, 3));
    const char *tokens[] = {"a", "b", "c"};
    cJSON_AddItemToObject(req, "tokens", cJSON_CreateStringArray(tokens, 3));
    cJSON_AddItemToObject(req, "key_tokens", cJSON_CreateStringArray(tokens, 3));
    it_resp r;
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    const cJSON *meta = get(j, "meta");
    expect_number(meta, "scale", 0.25, 0);
    expect_string(meta, "causal", "bottom_right");
    /* Masked scores are -inf: written as null in JSON lists. */
    const cJSON *scores = get(j, "scores");
    ck_assert_msg(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetArrayItem(scores, 0), 1)),
                  "a masked score must be null: %s", it_resp_describe(&r));
    const cJSON *w = get(j, "weights");
    ck_assert_msg(cJSON_GetArrayItem(cJSON_GetArrayItem(w, 0), 1)->valuedouble == 0,
                  "a masked weight must be 0");
    ck_assert_msg(cJSON_Compare(get(j, "tokens"), get(req, "tokens"), 1) &&
                      cJSON_Compare(get(j, "key_tokens"), get(req, "key_tokens"), 1),
                  "tokens and key_tokens must be echoed");
    cJSON_Delete(j);
    cJSON_Delete(req);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* Reference nn.MultiheadAttention forward (self-attention, biases, GQA). */
static void ref_mha(const float *x, size_t n, size_t E, size_t H, size_t Hkv, const float *in_w,
                    const float *in_b, const float *out_w, const float *out_b, double *out,
                    double *weights)
{
    size_t hd = E / H, Ekv = Hkv * hd;
    double *q = calloc(n * E, sizeof *q), *k = calloc(n * Ekv, sizeof *k),
           *v = calloc(n * Ekv, sizeof *v), *o = calloc(n * E, sizeof *o);
    ck_assert(q && k && v && o);
    for (size_t i = 0; i < n; i++) {
        for (size_t r = 0; r < E + 2 * Ekv; r++) {
            double acc = in_b[r];
            for (size_t c = 0; c < E; c++)
                acc += (double)in_w[r * E + c] * x[i * E + c];
            if (r < E)
                q[i * E + r] = acc;
            else if (r < E + Ekv)
                k[i * Ekv + r - E] = acc;
            else
                v[i * Ekv + r - E - Ekv] = acc;
        }
    }
    for (size_t h = 0; h < H; h++) {
        size_t g = h * Hkv / H;
        for (size_t i = 0; i < n; i++) {
            double *w = weights + (h * n + i) * n, mx = -INFINITY, sum = 0;
            for (size_t j = 0; j < n; j++) {
                double sc = 0;
                for (size_t c = 0; c < hd; c++)
                    sc += q[i * E + h * hd + c] * k[j * Ekv + g * hd + c];
                w[j] = sc / sqrt((double)hd);
                mx = w[j] > mx ? w[j] : mx;
            }
            for (size_t j = 0; j < n; j++)
                sum += (w[j] = exp(w[j] - mx));
            for (size_t j = 0; j < n; j++)
                w[j] /= sum;
            for (size_t c = 0; c < hd; c++) {
                double acc = 0;
                for (size_t j = 0; j < n; j++)
                    acc += w[j] * v[j * Ekv + g * hd + c];
                o[i * E + h * hd + c] = acc;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t r = 0; r < E; r++) {
            double acc = out_b[r];
            for (size_t c = 0; c < E; c++)
                acc += (double)out_w[r * E + c] * o[i * E + c];
            out[i * E + r] = acc;
        }
    free(q);
    free(k);
    free(v);
    free(o);
}

static void mha_explicit_case(const it_server *s, size_t H, size_t Hkv)
{
    const size_t n = 4, E = 8, Ekv = Hkv * (E / H), rows = E + 2 * Ekv;
    float x[4 * 8], in_w[24 * 8], in_b[24], out_w[8 * 8], out_b[8];
    fill(x, n * E, 21);
    fill(in_w, rows * E, 22);
    fill(in_b, rows, 23);
    fill(out_w, E * E, 24);
    fill(out_b, E, 25);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", matrix(x, n, E));
    cJSON_AddNumberToObject(req, "num_heads", (double)H);
    if (Hkv != H)
        cJSON_AddNumberToObject(req, "num_kv_heads", (double)Hkv);
    cJSON *w = cJSON_AddObjectToObject(req, "weights");
    cJSON_AddItemToObject(w, "in_proj_weight", matrix(in_w, rows, E));
    size_t sb[1] = {rows}, so[1] = {E};
    cJSON_AddItemToObject(w, "in_proj_bias", it_list_from_floats(in_b, 1, sb));
    cJSON_AddItemToObject(w, "out_proj.weight", matrix(out_w, E, E));
    cJSON_AddItemToObject(w, "out_proj.bias", it_list_from_floats(out_b, 1, so));
    it_resp r;
    it_post_json_ok(s, "/v1/multihead_attention", req, &r);
    ck_assert_msg(r.status == 200, "H=%zu Hkv=%zu: %s", H, Hkv, it_resp_describe(&r));
    expect_compute_headers(&r);
    cJSON *j = it_resp_json_ok(&r);
    double ro[4 * 8], rw[4 * 4 * 4];
    ref_mha(x, n, E, H, Hkv, in_w, in_b, out_w, out_b, ro, rw);
    it_tensor out, wt;
    member_tensor_ok(j, "output", &out);
    member_tensor_ok(j, "weights", &wt);
    size_t s_out[2] = {n, E}, s_w[3] = {H, n, n};
    expect_shape(&out, "output", 2, s_out);
    expect_shape(&wt, "weights", 3, s_w);
    expect_close(&out, ro, n * E, 1e-4, "output");
    expect_close(&wt, rw, H * n * n, 1e-4, "weights");
    const cJSON *meta = get(j, "meta");
    expect_number(meta, "embed_dim", (double)E, 0);
    expect_number(meta, "num_heads", (double)H, 0);
    expect_number(meta, "num_kv_heads", (double)Hkv, 0);
    expect_number(meta, "head_dim", (double)(E / H), 0);
    expect_number(meta, "kdim", (double)E, 0);
    expect_number(meta, "vdim", (double)E, 0);
    expect_number(meta, "key_length", (double)n, 0);
    expect_string(meta, "weights_source", "state_dict");
    ck_assert_msg(cJSON_IsNull(get(meta, "seed")), "meta.seed must be null with weights");
    ck_assert_msg(cJSON_IsTrue(get(meta, "bias")), "meta.bias must be true");
    it_tensor_free(&out);
    it_tensor_free(&wt);
    cJSON_Delete(j);
    cJSON_Delete(req);
    it_resp_free(&r);
}

START_TEST(mha_explicit_weights_match_reference_including_gqa)
{
    it_server *s = it_start_ok(NULL);
    mha_explicit_case(s, 2, 2);
    mha_explicit_case(s, 4, 2);
    mha_explicit_case(s, 4, 1);
    it_stop_ok(s);
}
END_TEST

START_TEST(mha_seed_is_deterministic_and_reported_in_meta)
{
    it_server *s = it_start_ok(NULL);
    float x[5 * 8];
    fill(x, 40, 31);
    char *bodies[3];
    for (int i = 0; i < 3; i++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddItemToObject(req, "query", matrix(x, 5, 8));
        cJSON_AddNumberToObject(req, "num_heads", 2);
        cJSON_AddNumberToObject(req, "seed", i == 2 ? 4 : 3);
        cJSON_AddBoolToObject(req, "average_weights", 1);
        it_resp r;
        it_post_json_ok(s, "/v1/multihead_attention", req, &r);
        ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
        cJSON *j = it_resp_json_ok(&r);
        it_tensor out, w, wa;
        member_tensor_ok(j, "output", &out);
        member_tensor_ok(j, "weights", &w);
        member_tensor_ok(j, "weights_avg", &wa);
        size_t so[2] = {5, 8}, sw[3] = {2, 5, 5}, sa[2] = {5, 5};
        expect_shape(&out, "output", 2, so);
        expect_shape(&w, "weights", 3, sw);
        expect_shape(&wa, "weights_avg", 2, sa);
        for (size_t e = 0; e < 25; e++)
            ck_assert_msg(fabs(wa.data[e] - 0.5 * (w.data[e] + w.data[25 + e])) <= 1e-6,
                          "weights_avg must be the mean of the heads (element %zu)", e);
        const cJSON *meta = get(j, "meta");
        expect_string(meta, "weights_source", "seed");
        expect_number(meta, "seed", i == 2 ? 4 : 3, 0);
        ck_assert_msg(cJSON_IsFalse(get(meta, "add_bias_kv")) &&
                          cJSON_IsFalse(get(meta, "add_zero_attn")),
                      "add_bias_kv and add_zero_attn default to false");
        bodies[i] = it_json_print_ok(get(j, "output"));
        it_tensor_free(&out);
        it_tensor_free(&w);
        it_tensor_free(&wa);
        cJSON_Delete(j);
        cJSON_Delete(req);
        it_resp_free(&r);
    }
    ck_assert_msg(strcmp(bodies[0], bodies[1]) == 0, "the same seed must give the same output");
    ck_assert_msg(strcmp(bodies[0], bodies[2]) != 0, "another seed must give another output");
    for (int i = 0; i < 3; i++)
        cJSON_free(bodies[i]);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(unknown_path_returns_404_not_found)
{
    it_server *s = it_start_ok(NULL);
    const char *paths[] = {"/nope", "/v1/attentions", "/v2/attention", "/v1/attention/x",
                           "/index.html", "/assets/nope.js"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        it_resp r;
        it_get_ok(s, paths[i], &r);
        it_expect_error_ok(&r, 404, "not_found", "", paths[i]);
        it_resp_free(&r);
    }
    it_resp r;
    it_post_ok(s, "/v1/nothing", "{}", &r);
    it_expect_error_ok(&r, 404, "not_found", "", "POST /v1/nothing");
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

static bool allow_has(const char *allow, const char *method)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", allow);
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t != NULL;
         t = strtok_r(NULL, ", ", &save))
        if (strcmp(t, method) == 0)
            return true;
    return false;
}

START_TEST(known_path_wrong_method_returns_405_with_allow)
{
    it_server *s = it_start_ok(NULL);
    struct {
        const char *method, *path, *allow, *not_allow;
        bool body;
    } cases[] = {
        {"GET", "/v1/attention", "POST", "GET", false},
        {"PUT", "/v1/multihead_attention", "POST", "PUT", true},
        {"POST", "/healthz", "GET", "POST", true},
        {"DELETE", "/v1/info", "GET", "DELETE", false},
        {"POST", "/openapi.yaml", "GET", "POST", true},
        {"PATCH", "/readyz", "GET", "PATCH", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        it_req rq = {.method = cases[i].method, .path = cases[i].path};
        if (cases[i].body) {
            rq.body = "{}";
            rq.body_len = 2;
        }
        it_resp r;
        it_http(s, &rq, &r);
        char ctx[128];
        snprintf(ctx, sizeof ctx, "%s %s", cases[i].method, cases[i].path);
        it_expect_error_ok(&r, 405, "method_not_allowed", "", ctx);
        ck_assert_msg(allow_has(r.allow, cases[i].allow) && !allow_has(r.allow, cases[i].not_allow),
                      "%s: Allow must name %s (and not %s), got \"%s\"", ctx, cases[i].allow,
                      cases[i].not_allow, r.allow);
        it_resp_free(&r);
    }
    it_stop_ok(s);
}
END_TEST

START_TEST(options_known_path_returns_204_with_allow)
{
    it_server *s = it_start_ok(NULL);
    const char *paths[] = {"/v1/attention", "/healthz"};
    const char *allow[] = {"POST", "GET"};
    for (size_t i = 0; i < 2; i++) {
        it_req rq = {.method = "OPTIONS", .path = paths[i]};
        it_resp r;
        ck_assert_msg(it_http(s, &rq, &r), "OPTIONS %s: %s", paths[i], it_resp_describe(&r));
        ck_assert_msg(r.status == 204, "OPTIONS %s: %s", paths[i], it_resp_describe(&r));
        ck_assert_msg(allow_has(r.allow, allow[i]), "OPTIONS %s: Allow must name %s, got \"%s\"",
                      paths[i], allow[i], r.allow);
        ck_assert_msg(r.body_len == 0, "204 has no body");
        it_resp_free(&r);
    }
    it_stop_ok(s);
}
END_TEST

START_TEST(malformed_json_returns_400_with_byte_offset)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    it_post_ok(s, "/v1/attention", "{\"query\": [[1, 2]], oops}", &r);
    it_expect_error_ok(&r, 400, "malformed_json", "", "malformed JSON");
    cJSON *j = it_resp_json_ok(&r);
    const char *msg = get(get(j, "error"), "message")->valuestring;
    ck_assert_msg(strstr(msg, "byte") != NULL, "message must give the byte offset: %s", msg);
    cJSON_Delete(j);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(invalid_argument_returns_400_with_json_pointer)
{
    it_server *s = it_start_ok(NULL);
    it_resp r;
    it_post_ok(s, "/v1/attention",
               "{\"query\": [[1, 2]], \"key\": [[1, 2], [3, 4], [5, 6], [7]], "
               "\"value\": [[1], [2], [3], [4]]}",
               &r);
    it_expect_error_ok(&r, 400, "invalid_argument", "/key/3", "ragged key");
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(content_type_non_json_returns_415_json_variants_accepted)
{
    it_server *s = it_start_ok(NULL);
    cJSON *req = attention_request(2, 2, 2, 2, 3);
    char *body = it_json_print_ok(req);
    const char *bad[] = {"text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                         "application/xml"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        it_req rq = {.method = "POST",
                     .path = "/v1/attention",
                     .content_type = bad[i],
                     .body = body,
                     .body_len = strlen(body)};
        it_resp r;
        it_http(s, &rq, &r);
        it_expect_error_ok(&r, 415, "unsupported_media_type", "", bad[i]);
        it_resp_free(&r);
    }
    const char *good[] = {"application/json; charset=utf-8", "application/json;charset=UTF-8",
                          "Application/JSON", IT_NO_CONTENT_TYPE};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        it_req rq = {.method = "POST",
                     .path = "/v1/attention",
                     .content_type = good[i],
                     .body = body,
                     .body_len = strlen(body)};
        it_resp r;
        it_http(s, &rq, &r);
        ck_assert_msg(r.status == 200, "Content-Type \"%s\" must be accepted: %s",
                      good[i][0] ? good[i] : "(absent)", it_resp_describe(&r));
        it_resp_free(&r);
    }
    cJSON_free(body);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

/* A valid request body of about size bytes (a big query). */
static char *big_body(size_t size)
{
    size_t n = size / 20 + 1;
    cJSON *req = attention_request(n, 2, 2, 2, 5);
    char *text = it_json_print_ok(req);
    cJSON_Delete(req);
    return text;
}

/* Pads a valid JSON request with trailing spaces to exactly len bytes. */
static char *padded_body(size_t len)
{
    cJSON *req = attention_request(2, 2, 2, 2, 9);
    char *text = it_json_print_ok(req);
    cJSON_Delete(req);
    size_t n = strlen(text);
    ck_assert(n <= len);
    char *out = malloc(len + 1);
    ck_assert(out != NULL);
    memcpy(out, text, n);
    memset(out + n, ' ', len - n);
    out[len] = '\0';
    cJSON_free(text);
    return out;
}

static void expect_still_serving(const it_server *s, const char *after)
{
    it_resp r;
    it_get_ok(s, "/healthz", &r);
    ck_assert_msg(r.status == 200, "after %s /healthz: %s", after, it_resp_describe(&r));
    it_resp_free(&r);
    cJSON *req = attention_request(2, 3, 2, 2, 1);
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "after %s a valid request: %s", after, it_resp_describe(&r));
    cJSON_Delete(req);
    it_resp_free(&r);
}

START_TEST(body_over_limit_with_content_length_returns_413)
{
    it_server *s = it_start_ok("--max-body-bytes", "4096", NULL);
    char *body = big_body(100 * 1024);
    it_req rq = {.method = "POST", .path = "/v1/attention", .body = body, .body_len = strlen(body)};
    it_resp r;
    it_http(s, &rq, &r);
    ck_assert_msg(r.curl_code == CURLE_OK, "the 413 must arrive cleanly (the body is drained): %s",
                  it_resp_describe(&r));
    it_expect_error_ok(&r, 413, "payload_too_large", "", "100 KB body, limit 4096");
    it_resp_free(&r);
    free(body);
    expect_still_serving(s, "a 413");
    it_stop_ok(s);
}
END_TEST

START_TEST(body_at_limit_accepted_one_byte_over_returns_413)
{
    it_server *s = it_start_ok("--max-body-bytes", "4096", NULL);
    char *at = padded_body(4096), *over = padded_body(4097);
    it_req rq = {.method = "POST", .path = "/v1/attention", .body = at, .body_len = 4096};
    it_resp r;
    it_http(s, &rq, &r);
    ck_assert_msg(r.status == 200, "a body of exactly --max-body-bytes must be accepted: %s",
                  it_resp_describe(&r));
    it_resp_free(&r);
    rq.body = over;
    rq.body_len = 4097;
    it_http(s, &rq, &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "limit + 1 bytes");
    it_resp_free(&r);
    free(at);
    free(over);
    it_stop_ok(s);
}
END_TEST

START_TEST(body_over_limit_chunked_returns_413)
{
    it_server *s = it_start_ok("--max-body-bytes", "4096", NULL);
    char *body = big_body(100 * 1024);
    it_req rq = {.method = "POST",
                 .path = "/v1/attention",
                 .body = body,
                 .body_len = strlen(body),
                 .chunked = true};
    it_resp r;
    it_http(s, &rq, &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "100 KB chunked body, limit 4096");
    it_resp_free(&r);
    /* A small chunked body is fine. */
    cJSON *req = attention_request(2, 2, 2, 2, 4);
    char *small = it_json_print_ok(req);
    rq.body = small;
    rq.body_len = strlen(small);
    it_http(s, &rq, &r);
    ck_assert_msg(r.status == 200, "a small chunked body must be accepted: %s",
                  it_resp_describe(&r));
    it_resp_free(&r);
    cJSON_free(small);
    cJSON_Delete(req);
    free(body);
    expect_still_serving(s, "a chunked 413");
    it_stop_ok(s);
}
END_TEST

START_TEST(body_over_limit_with_expect_continue_returns_413)
{
    it_server *s = it_start_ok("--max-body-bytes", "4096", NULL);
    char *body = big_body(2 * 1024 * 1024);
    it_req rq = {.method = "POST",
                 .path = "/v1/attention",
                 .body = body,
                 .body_len = strlen(body),
                 .expect_continue = true};
    const char *hdr[] = {"Expect: 100-continue", NULL};
    rq.headers = hdr;
    it_resp r;
    it_http(s, &rq, &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "2 MB body with Expect: 100-continue");
    it_resp_free(&r);
    free(body);
    expect_still_serving(s, "a 413 with Expect");
    it_stop_ok(s);
}
END_TEST

START_TEST(output_over_max_elements_returns_413_fits_without_weights)
{
    it_server *s = it_start_ok("--max-elements", "100", NULL);
    /* output 10x4 = 40 floats + weights 10x10 = 100 -> 140 > 100. */
    cJSON *req = attention_request(10, 10, 4, 4, 2);
    it_resp r;
    it_post_json_ok(s, "/v1/attention", req, &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "140 output floats, limit 100");
    cJSON *j = it_resp_json_ok(&r);
    const char *msg = get(get(j, "error"), "message")->valuestring;
    ck_assert_msg(strstr(msg, "100") != NULL, "the message must name the limit: %s", msg);
    cJSON_Delete(j);
    it_resp_free(&r);

    const char *only_output[] = {"output"};
    cJSON_AddItemToObject(req, "return", cJSON_CreateStringArray(only_output, 1));
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "40 output floats fit in 100: %s", it_resp_describe(&r));
    it_resp_free(&r);

    const char *only_weights[] = {"weights"};
    cJSON_ReplaceItemInObject(req, "return", cJSON_CreateStringArray(only_weights, 1));
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "exactly 100 floats is not over the limit: %s",
                  it_resp_describe(&r));
    it_resp_free(&r);
    cJSON_Delete(req);

    /* Multi-head: output 8x8 + weights 4x8x8 = 320 > 100. */
    float x[64];
    fill(x, 64, 8);
    cJSON *mha = cJSON_CreateObject();
    cJSON_AddItemToObject(mha, "query", matrix(x, 8, 8));
    cJSON_AddNumberToObject(mha, "num_heads", 4);
    it_post_json_ok(s, "/v1/multihead_attention", mha, &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "multi-head 320 floats, limit 100");
    it_resp_free(&r);
    cJSON_Delete(mha);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------- connections */

START_TEST(keep_alive_second_request_reuses_connection)
{
    it_server *s = it_start_ok(NULL);
    CURL *h = curl_easy_init();
    ck_assert(h != NULL);
    it_req rq = {.method = "GET", .path = "/healthz", .handle = h};
    it_resp r;
    it_http(s, &rq, &r);
    ck_assert_msg(r.status == 200 && r.num_connects == 1, "first request: %s (connects %ld)",
                  it_resp_describe(&r), r.num_connects);
    it_resp_free(&r);
    cJSON *req = attention_request(2, 3, 2, 2, 6);
    char *body = it_json_print_ok(req);
    it_req post = {.method = "POST",
                   .path = "/v1/attention",
                   .body = body,
                   .body_len = strlen(body),
                   .handle = h};
    for (int i = 0; i < 3; i++) {
        it_http(s, &post, &r);
        ck_assert_msg(r.status == 200, "request %d: %s", i + 2, it_resp_describe(&r));
        ck_assert_msg(r.num_connects == 0,
                      "request %d on the same handle must reuse the connection (new connects: "
                      "%ld, Connection: \"%s\")",
                      i + 2, r.num_connects, r.connection);
        it_resp_free(&r);
    }
    cJSON_free(body);
    cJSON_Delete(req);
    curl_easy_cleanup(h);
    it_stop_ok(s);
}
END_TEST

/* The mixed traffic of the concurrency test: expected answers come from a
 * single-threaded run first. */
typedef struct mixed_case {
    const char *method, *path, *content_type;
    char *body;
    long status;
    cJSON *expected;
} mixed_case;

#define N_MIXED 8

static void mixed_cases_build(mixed_case *c)
{
    memset(c, 0, sizeof(mixed_case) * N_MIXED);
    cJSON *r0 = attention_request(3, 5, 4, 2, 40);
    cJSON *r1 = attention_request(7, 7, 6, 3, 41);
    cJSON_AddBoolToObject(r1, "causal", 1);
    const char *all[] = {"output", "weights", "scores"};
    cJSON_AddItemToObject(r1, "return", cJSON_CreateStringArray(all, 3));
    float x[5 * 8];
    fill(x, 40, 42);
    cJSON *r2 = cJSON_CreateObject();
    cJSON_AddItemToObject(r2, "query", matrix(x, 5, 8));
    cJSON_AddNumberToObject(r2, "num_heads", 2);
    cJSON_AddNumberToObject(r2, "seed", 5);
    cJSON *r3 = attention_request(4, 6, 3, 5, 43);
    cJSON_AddStringToObject(r3, "encoding", "base64");
    cJSON *list[4] = {r0, r1, r2, r3};
    for (int i = 0; i < 4; i++) {
        c[i].method = "POST";
        c[i].path = i == 2 ? "/v1/multihead_attention" : "/v1/attention";
        c[i].body = it_json_print_ok(list[i]);
        cJSON_Delete(list[i]);
    }
    c[4] = (mixed_case){"POST",
                        "/v1/attention",
                        NULL,
                        strdup("{\"query\": [[1, 2]], \"key\": [[1, 2], [3]], "
                               "\"value\": [[1], [2]]}"),
                        0,
                        NULL};
    c[5] = (mixed_case){"POST", "/v1/attention", NULL, strdup("{\"query\": [[1, 2]"), 0, NULL};
    c[6] = (mixed_case){"GET", "/healthz", NULL, NULL, 0, NULL};
    c[7] = (mixed_case){"POST", "/v1/attention", "text/plain", strdup("{}"), 0, NULL};
}

static void mixed_cases_free(mixed_case *c)
{
    for (int i = 0; i < N_MIXED; i++) {
        free(c[i].body);
        cJSON_Delete(c[i].expected);
    }
}

static bool mixed_send(const it_server *s, const mixed_case *c, CURL *h, it_resp *r)
{
    it_req rq = {.method = c->method,
                 .path = c->path,
                 .content_type = c->content_type,
                 .body = c->body,
                 .body_len = c->body != NULL ? strlen(c->body) : 0,
                 .handle = h};
    return it_http(s, &rq, r);
}

typedef struct worker {
    const it_server *s;
    const mixed_case *cases;
    int id, n_requests, n_failed;
    char first_failure[1024];
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    CURL *h = (w->id % 2 == 0) ? curl_easy_init() : NULL; /* half keep-alive, half fresh */
    for (int i = 0; i < w->n_requests; i++) {
        int k = (w->id * 3 + i) % N_MIXED;
        const mixed_case *c = &w->cases[k];
        it_resp r;
        mixed_send(w->s, c, h, &r);
        char why[512] = "";
        bool ok = r.status == c->status;
        if (!ok) {
            snprintf(why, sizeof why, "status %ld, expected %ld", r.status, c->status);
        } else if (c->expected != NULL) {
            cJSON *j = cJSON_ParseWithLength(r.body, r.body_len);
            ok = j != NULL && it_json_match(j, c->expected, 1e-6, 1e-6, why, sizeof why);
            if (j == NULL)
                snprintf(why, sizeof why, "body is not JSON");
            cJSON_Delete(j);
        }
        if (!ok) {
            if (w->n_failed++ == 0)
                snprintf(w->first_failure, sizeof w->first_failure,
                         "thread %d request %d (case %d, %s %s): %s; %.300s", w->id, i, k,
                         c->method, c->path, why, r.body != NULL ? r.body : "");
        }
        it_resp_free(&r);
    }
    if (h != NULL)
        curl_easy_cleanup(h);
    return NULL;
}

START_TEST(concurrent_clients_get_their_own_answers)
{
    it_server *s = it_start_ok("--threads", "4", NULL);
    mixed_case cases[N_MIXED];
    mixed_cases_build(cases);
    for (int i = 0; i < N_MIXED; i++) {
        it_resp r;
        ck_assert_msg(mixed_send(s, &cases[i], NULL, &r), "case %d: %s", i, it_resp_describe(&r));
        cases[i].status = r.status;
        cases[i].expected = it_resp_json_ok(&r);
        long want = i < 4 ? 200 : i == 6 ? 200 : i == 7 ? 415 : 400;
        ck_assert_msg(r.status == want, "case %d alone: expected %ld: %s", i, want,
                      it_resp_describe(&r));
        it_resp_free(&r);
    }
    enum { N_THREADS = 8, N_PER_THREAD = 50 };
    worker w[N_THREADS];
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (worker){.s = s, .cases = cases, .id = i, .n_requests = N_PER_THREAD};
        ck_assert(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
    }
    int failed = 0;
    const char *first = NULL;
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].n_failed;
        if (w[i].n_failed > 0 && first == NULL)
            first = w[i].first_failure;
    }
    ck_assert_msg(failed == 0,
                  "%d of %d concurrent answers differ from the single-threaded ones; "
                  "first: %s",
                  failed, N_THREADS * N_PER_THREAD, first != NULL ? first : "");
    mixed_cases_free(cases);
    /* After all that, still healthy, and a clean exit. */
    it_resp r;
    it_get_ok(s, "/healthz", &r);
    ck_assert_msg(r.status == 200, "/healthz after the load: %s", it_resp_describe(&r));
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* ----------------------------------------------------- encodings */

/* Reads a float tensor that must be a base64 tensor object. */
static void b64_member_ok(const cJSON *obj, const char *name, it_tensor *t)
{
    const cJSON *item = get(obj, name);
    ck_assert_msg(cJSON_IsObject(item), "\"%s\" must be a tensor object with encoding base64",
                  name);
    ck_assert_msg(cJSON_IsString(get(item, "dtype")) && cJSON_IsArray(get(item, "shape")) &&
                      cJSON_IsString(get(item, "data")) && cJSON_GetArraySize(item) == 3,
                  "\"%s\" must be {dtype, shape, data}", name);
    member_tensor_ok(obj, name, t);
}

START_TEST(base64_in_and_out_matches_json_lists)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 4, m = 6, d = 3, dv = 5;
    cJSON *plain = attention_request(n, m, d, dv, 50);
    cJSON_AddBoolToObject(plain, "causal", 1);
    const char *all[] = {"output", "weights", "scores"};
    cJSON_AddItemToObject(plain, "return", cJSON_CreateStringArray(all, 3));
    cJSON *b64 = cJSON_Duplicate(plain, 1);
    const char *inputs[] = {"query", "key", "value"};
    for (int i = 0; i < 3; i++)
        cJSON_ReplaceItemInObject(b64, inputs[i],
                                  it_tensor_object_from_list(get(plain, inputs[i])));
    cJSON_AddStringToObject(b64, "encoding", "base64");

    it_resp rp, rb;
    it_post_json_ok(s, "/v1/attention", plain, &rp);
    ck_assert_msg(rp.status == 200, "json: %s", it_resp_describe(&rp));
    it_post_json_ok(s, "/v1/attention", b64, &rb);
    ck_assert_msg(rb.status == 200, "base64: %s", it_resp_describe(&rb));
    cJSON *jp = it_resp_json_ok(&rp), *jb = it_resp_json_ok(&rb);
    expect_string(get(jb, "meta"), "encoding", "base64");
    for (int i = 0; i < 3; i++) {
        it_tensor tp, tb;
        member_tensor_ok(jp, all[i], &tp);
        b64_member_ok(jb, all[i], &tb);
        ck_assert_msg(tp.rank == tb.rank && tp.size == tb.size && tb.rank == 2 &&
                          tb.shape[0] == n && tb.shape[1] == (i == 0 ? dv : m),
                      "%s: base64 shape differs from the list", all[i]);
        for (size_t e = 0; e < tp.size; e++) {
            /* The list holds the shortest round-trip text of the same float;
             * non-finite (masked scores, -inf) is null in lists. */
            bool same = isfinite(tb.data[e]) ? tp.data[e] == tb.data[e]
                                             : (isnan(tp.data[e]) && tb.data[e] < 0);
            ck_assert_msg(same, "%s[%zu]: list %.9g vs base64 %.9g", all[i], e, tp.data[e],
                          tb.data[e]);
        }
        it_tensor_free(&tp);
        it_tensor_free(&tb);
    }
    cJSON_Delete(jp);
    cJSON_Delete(jb);
    cJSON_Delete(plain);
    cJSON_Delete(b64);
    it_resp_free(&rp);
    it_resp_free(&rb);
    it_stop_ok(s);
}
END_TEST

/* True when every number of the list has at most k significant digits. */
static bool list_has_digits(const cJSON *j, int k, double *bad)
{
    if (cJSON_IsArray(j)) {
        for (const cJSON *c = j->child; c != NULL; c = c->next)
            if (!list_has_digits(c, k, bad))
                return false;
        return true;
    }
    if (!cJSON_IsNumber(j))
        return true;
    char buf[64];
    snprintf(buf, sizeof buf, "%.*g", k, j->valuedouble);
    if (strtod(buf, NULL) != j->valuedouble) {
        *bad = j->valuedouble;
        return false;
    }
    return true;
}

START_TEST(precision_k_limits_significant_digits)
{
    it_server *s = it_start_ok(NULL);
    cJSON *req = attention_request(4, 5, 3, 3, 60);
    it_resp r;
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *shortest = it_resp_json_ok(&r);
    it_resp_free(&r);
    double bad = 0;
    ck_assert_msg(!list_has_digits(get(shortest, "output"), 3, &bad),
                  "the default (shortest round-trip) should need more than 3 digits somewhere");
    int ks[] = {1, 3, 9};
    for (size_t i = 0; i < 3; i++) {
        cJSON_DeleteItemFromObject(req, "precision");
        cJSON_AddNumberToObject(req, "precision", ks[i]);
        it_post_json_ok(s, "/v1/attention", req, &r);
        ck_assert_msg(r.status == 200, "precision %d: %s", ks[i], it_resp_describe(&r));
        cJSON *j = it_resp_json_ok(&r);
        expect_number(get(j, "meta"), "precision", ks[i], 0);
        const char *names[] = {"output", "weights"};
        for (int m = 0; m < 2; m++) {
            ck_assert_msg(list_has_digits(get(j, names[m]), ks[i], &bad),
                          "precision %d: %s holds %.17g", ks[i], names[m], bad);
            it_tensor a, b;
            member_tensor_ok(j, names[m], &a);
            member_tensor_ok(shortest, names[m], &b);
            for (size_t e = 0; e < a.size; e++) {
                double tol = ks[i] == 9 ? 0 : 0.5 * pow(10, 1 - ks[i]) * fabs(b.data[e]) + 1e-30;
                ck_assert_msg(fabs(a.data[e] - b.data[e]) <= tol,
                              "precision %d: %s[%zu] = %.9g, shortest %.9g", ks[i], names[m], e,
                              a.data[e], b.data[e]);
            }
            it_tensor_free(&a);
            it_tensor_free(&b);
        }
        cJSON_Delete(j);
        it_resp_free(&r);
    }
    cJSON_Delete(shortest);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

START_TEST(batch_dimension_adds_leading_axis_to_outputs)
{
    it_server *s = it_start_ok(NULL);
    const size_t B = 2, n = 3, m = 5, d = 4, dv = 2;
    cJSON *parts[2];
    cJSON *batched = cJSON_CreateObject();
    const char *names[] = {"query", "key", "value"};
    cJSON *lists[3] = {cJSON_CreateArray(), cJSON_CreateArray(), cJSON_CreateArray()};
    for (size_t b = 0; b < B; b++) {
        parts[b] = attention_request(n, m, d, dv, 70 + (unsigned)b * 10);
        for (int i = 0; i < 3; i++)
            cJSON_AddItemToArray(lists[i], cJSON_Duplicate(get(parts[b], names[i]), 1));
    }
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToObject(batched, names[i], lists[i]);
    it_resp r;
    it_post_json_ok(s, "/v1/attention", batched, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    it_resp_free(&r);
    it_tensor out, w;
    member_tensor_ok(j, "output", &out);
    member_tensor_ok(j, "weights", &w);
    size_t so[3] = {B, n, dv}, sw[3] = {B, n, m};
    expect_shape(&out, "output", 3, so);
    expect_shape(&w, "weights", 3, sw);
    const cJSON *meta = get(j, "meta");
    expect_number(meta, "batch", (double)B, 0);
    expect_int_list(get(get(meta, "shapes"), "output"), "meta.shapes.output", 3, so);
    for (size_t b = 0; b < B; b++) {
        it_post_json_ok(s, "/v1/attention", parts[b], &r);
        ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
        cJSON *one = it_resp_json_ok(&r);
        it_tensor o1, w1;
        member_tensor_ok(one, "output", &o1);
        member_tensor_ok(one, "weights", &w1);
        for (size_t e = 0; e < n * dv; e++)
            ck_assert_msg(fabs(out.data[b * n * dv + e] - o1.data[e]) <= 1e-6,
                          "batch %zu output[%zu] differs from the unbatched answer", b, e);
        for (size_t e = 0; e < n * m; e++)
            ck_assert_msg(fabs(w.data[b * n * m + e] - w1.data[e]) <= 1e-6,
                          "batch %zu weights[%zu] differs from the unbatched answer", b, e);
        it_tensor_free(&o1);
        it_tensor_free(&w1);
        cJSON_Delete(one);
        it_resp_free(&r);
        cJSON_Delete(parts[b]);
    }
    it_tensor_free(&out);
    it_tensor_free(&w);
    cJSON_Delete(j);
    cJSON_Delete(batched);
    it_stop_ok(s);
}
END_TEST

/* Per-batch masks and bias: each batch element must equal the unbatched
 * request with that element's masks. */
START_TEST(batch_masks_and_bias_apply_per_element)
{
    it_server *s = it_start_ok(NULL);
    const size_t B = 2, n = 3, m = 5, d = 4, dv = 2;
    cJSON *batched = cJSON_CreateObject();
    const char *names[] = {"query", "key", "value", "mask", "key_padding_mask", "attn_bias"};
    cJSON *lists[6];
    for (int i = 0; i < 6; i++)
        lists[i] = cJSON_CreateArray();
    cJSON *parts[2];
    for (size_t b = 0; b < B; b++) {
        parts[b] = attention_request(n, m, d, dv, 100 + (unsigned)b * 10);
        cJSON *mask = cJSON_CreateArray();
        for (size_t i = 0; i < n; i++) {
            cJSON *row = cJSON_CreateArray();
            for (size_t j = 0; j < m; j++)
                cJSON_AddItemToArray(row, cJSON_CreateBool(j == 0 || (i + j + b) % 3 != 0));
            cJSON_AddItemToArray(mask, row);
        }
        cJSON_AddItemToObject(parts[b], "mask", mask);
        cJSON *kpm = cJSON_CreateArray();
        for (size_t j = 0; j < m; j++)
            cJSON_AddItemToArray(kpm, cJSON_CreateBool(j == 4 - b));
        cJSON_AddItemToObject(parts[b], "key_padding_mask", kpm);
        float bias[3 * 5];
        fill(bias, n * m, 120 + (unsigned)b);
        cJSON_AddItemToObject(parts[b], "attn_bias", matrix(bias, n, m));
        for (int i = 0; i < 6; i++)
            cJSON_AddItemToArray(lists[i], cJSON_Duplicate(get(parts[b], names[i]), 1));
    }
    for (int i = 0; i < 6; i++)
        cJSON_AddItemToObject(batched, names[i], lists[i]);
    it_resp r;
    it_post_json_ok(s, "/v1/attention", batched, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    it_resp_free(&r);
    it_tensor out, w;
    member_tensor_ok(j, "output", &out);
    member_tensor_ok(j, "weights", &w);
    for (size_t b = 0; b < B; b++) {
        it_post_json_ok(s, "/v1/attention", parts[b], &r);
        ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
        cJSON *one = it_resp_json_ok(&r);
        it_tensor o1, w1;
        member_tensor_ok(one, "output", &o1);
        member_tensor_ok(one, "weights", &w1);
        ck_assert(out.size == B * o1.size && w.size == B * w1.size);
        for (size_t e = 0; e < o1.size; e++)
            ck_assert_msg(fabs(out.data[b * o1.size + e] - o1.data[e]) <= 1e-6,
                          "batch %zu output[%zu] differs from the unbatched answer", b, e);
        for (size_t e = 0; e < w1.size; e++)
            ck_assert_msg(fabs(w.data[b * w1.size + e] - w1.data[e]) <= 1e-6,
                          "batch %zu weights[%zu] differs from the unbatched answer", b, e);
        /* The padded key gets no weight. */
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(w1.data[i * m + (4 - b)] == 0, "a padded key must get weight 0");
        it_tensor_free(&o1);
        it_tensor_free(&w1);
        cJSON_Delete(one);
        it_resp_free(&r);
        cJSON_Delete(parts[b]);
    }
    it_tensor_free(&out);
    it_tensor_free(&w);
    cJSON_Delete(j);
    cJSON_Delete(batched);
    it_stop_ok(s);
}
END_TEST

START_TEST(mha_batched_query_equals_unbatched_per_element)
{
    it_server *s = it_start_ok(NULL);
    float x[2][4 * 8];
    cJSON *batch = cJSON_CreateArray();
    for (int b = 0; b < 2; b++) {
        fill(x[b], 32, 130 + (unsigned)b);
        cJSON_AddItemToArray(batch, matrix(x[b], 4, 8));
    }
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", batch);
    cJSON_AddNumberToObject(req, "num_heads", 2);
    cJSON_AddNumberToObject(req, "seed", 9);
    it_resp r;
    it_post_json_ok(s, "/v1/multihead_attention", req, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    it_resp_free(&r);
    it_tensor out, w;
    member_tensor_ok(j, "output", &out);
    member_tensor_ok(j, "weights", &w);
    size_t so[3] = {2, 4, 8}, sw[4] = {2, 2, 4, 4};
    expect_shape(&out, "output", 3, so);
    expect_shape(&w, "weights", 4, sw);
    expect_number(get(j, "meta"), "batch", 2, 0);
    for (int b = 0; b < 2; b++) {
        cJSON_ReplaceItemInObject(req, "query", matrix(x[b], 4, 8));
        it_post_json_ok(s, "/v1/multihead_attention", req, &r);
        ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
        cJSON *one = it_resp_json_ok(&r);
        it_tensor o1, w1;
        member_tensor_ok(one, "output", &o1);
        member_tensor_ok(one, "weights", &w1);
        for (size_t e = 0; e < o1.size; e++)
            ck_assert_msg(fabs(out.data[(size_t)b * o1.size + e] - o1.data[e]) <= 1e-5,
                          "batch %d output[%zu] differs from the unbatched answer", b, e);
        for (size_t e = 0; e < w1.size; e++)
            ck_assert_msg(fabs(w.data[(size_t)b * w1.size + e] - w1.data[e]) <= 1e-6,
                          "batch %d weights[%zu] differs from the unbatched answer", b, e);
        it_tensor_free(&o1);
        it_tensor_free(&w1);
        cJSON_Delete(one);
        it_resp_free(&r);
    }
    it_tensor_free(&out);
    it_tensor_free(&w);
    cJSON_Delete(j);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

START_TEST(mha_every_return_item_has_its_documented_shape)
{
    it_server *s = it_start_ok(NULL);
    /* Cross-attention with kdim != vdim != E, GQA, bias_k/bias_v and a zero
     * row: m' = m + 2. */
    const size_t n = 3, m = 5, E = 8, H = 4, Hkv = 2, kdim = 6, vdim = 3, hd = E / H;
    const size_t Ekv = Hkv * hd, mp = m + 2;
    float q[3 * 8], k[5 * 6], v[5 * 3];
    fill(q, n * E, 140);
    fill(k, m * kdim, 141);
    fill(v, m * vdim, 142);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", matrix(q, n, E));
    cJSON_AddItemToObject(req, "key", matrix(k, m, kdim));
    cJSON_AddItemToObject(req, "value", matrix(v, m, vdim));
    cJSON_AddNumberToObject(req, "num_heads", (double)H);
    cJSON_AddNumberToObject(req, "num_kv_heads", (double)Hkv);
    cJSON_AddNumberToObject(req, "seed", 1);
    cJSON_AddBoolToObject(req, "add_bias_kv", 1);
    cJSON_AddBoolToObject(req, "add_zero_attn", 1);
    const char *all[] = {"output", "weights", "weights_avg", "head_outputs",
                         "q",      "k",       "v",           "scores"};
    cJSON_AddItemToObject(req, "return", cJSON_CreateStringArray(all, 8));
    it_resp r;
    it_post_json_ok(s, "/v1/multihead_attention", req, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    size_t shapes[8][3] = {{n, E}, {H, n, mp}, {n, mp},  {H, n, hd},
                           {n, E}, {m, Ekv},   {m, Ekv}, {H, n, mp}};
    size_t ranks[8] = {2, 3, 2, 3, 2, 2, 2, 3};
    it_tensor t[8];
    for (int i = 0; i < 8; i++) {
        member_tensor_ok(j, all[i], &t[i]);
        expect_shape(&t[i], all[i], ranks[i], shapes[i]);
        for (size_t e = 0; e < ranks[i]; e++)
            ck_assert_msg(t[i].shape[e] == shapes[i][e], "%s: dimension %zu is %zu, expected %zu",
                          all[i], e, t[i].shape[e], shapes[i][e]);
    }
    /* weights = softmax(scores) row by row. */
    for (size_t row = 0; row < H * n; row++) {
        const float *sc = t[7].data + row * mp, *wt = t[1].data + row * mp;
        double mx = -INFINITY, sum = 0;
        for (size_t c = 0; c < mp; c++)
            mx = sc[c] > mx ? sc[c] : mx;
        for (size_t c = 0; c < mp; c++)
            sum += exp(sc[c] - mx);
        for (size_t c = 0; c < mp; c++)
            ck_assert_msg(fabs(wt[c] - exp(sc[c] - mx) / sum) <= 1e-5,
                          "weights must be softmax(scores) (row %zu, column %zu)", row, c);
    }
    const cJSON *meta = get(j, "meta");
    expect_number(meta, "key_length", (double)mp, 0);
    expect_number(meta, "kdim", (double)kdim, 0);
    expect_number(meta, "vdim", (double)vdim, 0);
    expect_number(meta, "num_kv_heads", (double)Hkv, 0);
    ck_assert_msg(cJSON_IsTrue(get(meta, "add_bias_kv")) &&
                      cJSON_IsTrue(get(meta, "add_zero_attn")),
                  "meta must report add_bias_kv and add_zero_attn");
    for (int i = 0; i < 8; i++)
        it_tensor_free(&t[i]);
    cJSON_Delete(j);
    cJSON_Delete(req);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* -------------------------------------------------------------- drain */

/* Polls /readyz on new connections until it is no longer 200 (refused,
 * 503, or no answer); returns how it ended. */
static const char *wait_not_ready(const it_server *s, double timeout_s)
{
    double deadline = it_now_s() + timeout_s;
    while (it_now_s() < deadline) {
        it_req rq = {.method = "GET", .path = "/readyz", .timeout_ms = 1000};
        it_resp r;
        it_http(s, &rq, &r);
        long st = r.status;
        CURLcode cc = r.curl_code;
        bool env_ok = true;
        if (st == 503) {
            cJSON *j = cJSON_ParseWithLength(r.body, r.body_len);
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
            env_ok = cJSON_IsString(code) && strcmp(code->valuestring, "unavailable") == 0;
            cJSON_Delete(j);
        }
        it_resp_free(&r);
        if (st == 503)
            return env_ok ? "503 unavailable" : "503 without the unavailable envelope";
        if (st == 0 && cc == CURLE_COULDNT_CONNECT)
            return "connection refused";
        if (st == 0)
            return "no answer";
        it_sleep_ms(20);
    }
    return NULL;
}

START_TEST(drain_in_flight_upload_completes_after_sigterm)
{
    it_server *s = it_start_ok(NULL);
    cJSON *req = attention_request(3, 4, 2, 2, 80);
    char *body = it_json_print_ok(req);
    size_t len = strlen(body), half = len / 2;
    int fd = it_raw_connect(s);
    ck_assert(fd >= 0);
    char head[256];
    snprintf(head, sizeof head,
             "POST /v1/attention HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n",
             len);
    ck_assert(it_raw_send_str(fd, head));
    ck_assert(it_raw_send(fd, body, half));
    it_sleep_ms(300); /* the server has the headers: the request is in flight */
    it_server_signal(s, SIGTERM);
    const char *how = wait_not_ready(s, 5);
    if (it_verbose())
        fprintf(stderr, "drain: /readyz after SIGTERM: %s\n", how != NULL ? how : "still 200");
    ck_assert_msg(how != NULL, "/readyz still answers 200 5 s after SIGTERM");
    ck_assert_msg(strstr(how, "without") == NULL, "/readyz while draining: %s", how);
    ck_assert(it_raw_send(fd, body + half, len - half));
    it_raw_resp rr;
    it_raw_read_response(fd, 20, &rr);
    close(fd);
    ck_assert_msg(rr.status == 200,
                  "the in-flight request must complete with 200 after SIGTERM, got %d: %.500s",
                  rr.status, rr.data);
    const char *json = strstr(rr.data, "\r\n\r\n");
    cJSON *j = json != NULL ? cJSON_Parse(json + 4) : NULL;
    ck_assert_msg(j != NULL && cJSON_GetObjectItemCaseSensitive(j, "output") != NULL,
                  "the drained answer must be complete: %.500s", rr.data);
    cJSON_Delete(j);
    free(rr.data);
    cJSON_free(body);
    cJSON_Delete(req);
    int st = it_server_wait(s, it_wait_s());
    ck_assert_msg(st == 0, "the server must exit 0 after draining (status %d)", st);
    it_stop_ok(s);
}
END_TEST

typedef struct big_call {
    const it_server *s;
    char *body;
    it_resp r;
    atomic_int uploaded;
} big_call;

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    big_call *c = user;
    (void)dltotal;
    (void)dlnow;
    if (ultotal > 0 && ulnow == ultotal)
        atomic_store(&c->uploaded, 1);
    return 0;
}

static void *big_call_main(void *arg)
{
    big_call *c = arg;
    it_req rq = {.method = "POST",
                 .path = "/v1/attention",
                 .body = c->body,
                 .body_len = strlen(c->body),
                 .timeout_ms = 120000,
                 .progress = on_progress,
                 .progress_data = c};
    it_http(c->s, &rq, &c->r);
    atomic_store(&c->uploaded, 1);
    return NULL;
}

START_TEST(drain_large_request_completes_after_sigterm)
{
    it_server *s = it_start_ok(NULL);
    /* 1.5 MB of request, about 5 MB of answer: the server is still parsing,
     * computing or sending when the signal arrives. */
    cJSON *req = attention_request(600, 600, 64, 64, 90);
    big_call c = {.s = s, .body = it_json_print_ok(req)};
    atomic_init(&c.uploaded, 0);
    pthread_t t;
    ck_assert(pthread_create(&t, NULL, big_call_main, &c) == 0);
    while (!atomic_load(&c.uploaded))
        it_sleep_ms(1);
    double t_signal = it_now_s();
    it_server_signal(s, SIGTERM);
    pthread_join(t, NULL);
    if (it_verbose())
        fprintf(stderr, "drain: the large answer ended %.3f s after SIGTERM\n",
                it_now_s() - t_signal);
    ck_assert_msg(c.r.status == 200, "the in-flight request must complete with 200: %s",
                  it_resp_describe(&c.r));
    cJSON *j = it_resp_json_ok(&c.r);
    it_tensor out;
    member_tensor_ok(j, "output", &out);
    ck_assert_msg(out.size == 600 * 64, "the answer must be complete");
    it_tensor_free(&out);
    cJSON_Delete(j);
    it_resp_free(&c.r);
    cJSON_free(c.body);
    cJSON_Delete(req);
    int st = it_server_wait(s, it_wait_s());
    ck_assert_msg(st == 0, "the server must exit 0 after draining (status %d)", st);
    it_stop_ok(s);
}
END_TEST

START_TEST(drain_timeout_bounds_shutdown_with_stalled_client)
{
    it_server *s = it_start_ok("--drain-timeout", "1", NULL);
    int fd = it_raw_connect(s);
    ck_assert(fd >= 0);
    ck_assert(it_raw_send_str(fd, "POST /v1/attention HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                                  "{\"query\": [[1"));
    it_sleep_ms(300);
    double t0 = it_now_s();
    it_server_signal(s, SIGTERM);
    int st = it_server_wait(s, 1 + it_wait_s());
    double took = it_now_s() - t0;
    close(fd);
    ck_assert_msg(st == 0, "with a stalled upload the server must still exit 0 (status %d)", st);
    ck_assert_msg(took < 1 + 10, "exit took %.1f s with --drain-timeout 1", took);
    it_stop_ok(s);
}
END_TEST

START_TEST(sigterm_with_idle_keepalive_connection_exits_promptly)
{
    it_server *s = it_start_ok("--drain-timeout", "3", NULL);
    CURL *h = curl_easy_init();
    it_req rq = {.method = "GET", .path = "/healthz", .handle = h};
    it_resp r;
    it_http(s, &rq, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    it_resp_free(&r);
    /* The connection stays open and idle (not a request in flight). */
    double t0 = it_now_s();
    it_server_signal(s, SIGTERM);
    int st = it_server_wait(s, it_wait_s());
    double took = it_now_s() - t0;
    curl_easy_cleanup(h);
    ck_assert_msg(st == 0, "exit status %d", st);
    ck_assert_msg(took < 3 + 5, "exit took %.1f s with an idle connection", took);
    it_stop_ok(s);
}
END_TEST

START_TEST(sigint_also_exits_zero)
{
    it_server *s = it_start_ok(NULL);
    it_server_signal(s, SIGINT);
    int st = it_server_wait(s, it_wait_s());
    ck_assert_msg(st == 0, "SIGINT: exit status %d", st);
    it_stop_ok(s);
}
END_TEST

static Suite *routes_suite(void)
{
    Suite *s = suite_create("routes");
    TCase *ops = tcase_create("operations");
    tcase_add_test(ops, healthz_get_returns_200_ok);
    tcase_add_test(ops, readyz_get_returns_200_ready);
    tcase_add_test(ops, info_get_reports_name_version_build_blas_server_limits);
    tcase_add_test(ops, info_limits_follow_flags_and_env_flags_win);
    tcase_add_test(ops, openapi_get_returns_embedded_yaml);
    tcase_add_test(ops, cli_version_and_help_exit_zero_bad_flag_exits_two);
    suite_add_tcase(s, ops);

    TCase *compute = tcase_create("compute");
    tcase_add_test(compute, attention_small_request_matches_reference_with_meta);
    tcase_add_test(compute, attention_options_scale_causal_scores_tokens_echoed);
    tcase_add_test(compute, mha_explicit_weights_match_reference_including_gqa);
    tcase_add_test(compute, mha_seed_is_deterministic_and_reported_in_meta);
    tcase_add_test(compute, base64_in_and_out_matches_json_lists);
    tcase_add_test(compute, precision_k_limits_significant_digits);
    tcase_add_test(compute, batch_dimension_adds_leading_axis_to_outputs);
    tcase_add_test(compute, batch_masks_and_bias_apply_per_element);
    tcase_add_test(compute, mha_batched_query_equals_unbatched_per_element);
    tcase_add_test(compute, mha_every_return_item_has_its_documented_shape);
    suite_add_tcase(s, compute);

    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, unknown_path_returns_404_not_found);
    tcase_add_test(errors, known_path_wrong_method_returns_405_with_allow);
    tcase_add_test(errors, options_known_path_returns_204_with_allow);
    tcase_add_test(errors, malformed_json_returns_400_with_byte_offset);
    tcase_add_test(errors, invalid_argument_returns_400_with_json_pointer);
    tcase_add_test(errors, content_type_non_json_returns_415_json_variants_accepted);
    tcase_add_test(errors, body_over_limit_with_content_length_returns_413);
    tcase_add_test(errors, body_at_limit_accepted_one_byte_over_returns_413);
    tcase_add_test(errors, body_over_limit_chunked_returns_413);
    tcase_add_test(errors, body_over_limit_with_expect_continue_returns_413);
    tcase_add_test(errors, output_over_max_elements_returns_413_fits_without_weights);
    suite_add_tcase(s, errors);

    TCase *conn = tcase_create("connections");
    tcase_add_test(conn, keep_alive_second_request_reuses_connection);
    tcase_add_test(conn, concurrent_clients_get_their_own_answers);
    suite_add_tcase(s, conn);

    TCase *drain = tcase_create("shutdown");
    tcase_add_test(drain, drain_in_flight_upload_completes_after_sigterm);
    tcase_add_test(drain, drain_large_request_completes_after_sigterm);
    tcase_add_test(drain, drain_timeout_bounds_shutdown_with_stalled_client);
    tcase_add_test(drain, sigterm_with_idle_keepalive_connection_exits_promptly);
    tcase_add_test(drain, sigint_also_exits_zero);
    suite_add_tcase(s, drain);
    return s;
}

int main(void)
{
    return it_run_suite(routes_suite());
}
