/* test_linear_http.c - linear attention (elu + 1, FAVOR+) and multi-head sparsify through HTTP. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

#define CASES_PATH ATTN_TEST_DATA "/tensor_cases.json"

static cJSON *golden;
static const cJSON *linear_case;

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static void case_load(void)
{
    size_t len = 0;
    char *text = it_read_file(CASES_PATH, &len);
    golden = text != NULL ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *cs = member(golden, "cases");
    for (const cJSON *c = cs != NULL ? cs->child : NULL; c != NULL; c = c->next) {
        const cJSON *k = member(c, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, "linear") == 0)
            linear_case = c;
    }
}

START_TEST(linear_golden_case_matches_through_http)
{
    ck_assert_msg(linear_case != NULL, "%s has no linear case", CASES_PATH);
    const cJSON *exp = member(linear_case, "expected");
    it_server *s = it_start_ok(NULL);
    for (int causal = 0; causal < 2; causal++) {
        for (int b64 = 0; b64 < 2; b64++) {
            cJSON *req = cJSON_CreateObject();
            static const char *const qkv[] = {"query", "key", "value"};
            for (int i = 0; i < 3; i++) {
                const cJSON *src = member(linear_case, qkv[i]);
                cJSON_AddItemToObject(
                    req, qkv[i], b64 ? it_tensor_object_from_list(src) : cJSON_Duplicate(src, 1));
            }
            cJSON *kernel = cJSON_AddObjectToObject(req, "kernel");
            cJSON_AddStringToObject(kernel, "type", "linear");
            cJSON_AddStringToObject(kernel, "feature_map", "elu");
            cJSON_AddBoolToObject(req, "causal", causal);
            it_resp r;
            it_post_json_ok(s, "/v1/attention", req, &r);
            ck_assert_msg(r.status == 200, "causal %d: %s", causal, it_resp_describe(&r));
            cJSON *a = it_resp_json_ok(&r);
            char why[512];
            ck_assert_msg(it_json_match(member(a, "output"),
                                        member(exp, causal ? "output_causal" : "output"), 1e-4, 0,
                                        why, sizeof why),
                          "causal %d output: %s", causal, why);
            ck_assert_msg(it_json_match(member(a, "weights"),
                                        member(exp, causal ? "weights_causal" : "weights"), 1e-4, 0,
                                        why, sizeof why),
                          "causal %d weights: %s", causal, why);
            cJSON_Delete(a);
            it_resp_free(&r);
            cJSON_Delete(req);
        }
    }
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ helpers */

/* A [rows][cols] list of deterministic values in [-1, 1). */
static cJSON *matrix(size_t rows, size_t cols, unsigned salt)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < rows; i++) {
        cJSON *r = cJSON_CreateArray();
        for (size_t j = 0; j < cols; j++) {
            unsigned x = (unsigned)(i * 131 + j * 31 + salt * 17) * 2654435761u;
            cJSON_AddItemToArray(r, cJSON_CreateNumber((double)(x >> 8) / 8388608.0 - 1.0));
        }
        cJSON_AddItemToArray(a, r);
    }
    return a;
}

static cJSON *favor_kernel(long r, long seed)
{
    cJSON *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "type", "linear");
    cJSON_AddStringToObject(k, "feature_map", "favor");
    if (r > 0)
        cJSON_AddNumberToObject(k, "num_features", (double)r);
    if (seed >= 0)
        cJSON_AddNumberToObject(k, "seed", (double)seed);
    return k;
}

static cJSON *elu_kernel(void)
{
    cJSON *k = cJSON_CreateObject();
    cJSON_AddStringToObject(k, "type", "linear");
    cJSON_AddStringToObject(k, "feature_map", "elu");
    return k;
}

/* Posts req, asserts 200 and returns the parsed body. */
static cJSON *post_200(it_server *s, const char *path, const cJSON *req)
{
    it_resp r;
    it_post_json_ok(s, path, req, &r);
    ck_assert_msg(r.status == 200, "%s: %s", path, it_resp_describe(&r));
    cJSON *a = it_resp_json_ok(&r);
    it_resp_free(&r);
    return a;
}

static it_tensor tensor_of(const cJSON *body, const char *key)
{
    it_tensor t;
    char why[256];
    ck_assert_msg(it_tensor_read(member(body, key), &t, why, sizeof why), "%s: %s", key, why);
    return t;
}

static double number_at(const cJSON *obj, const char *key)
{
    const cJSON *x = member(obj, key);
    ck_assert_msg(cJSON_IsNumber(x), "%s is not a number", key);
    return x->valuedouble;
}

/* ------------------------------------------------------------ FAVOR+ */

START_TEST(favor_same_seed_same_answer_large_r_near_softmax)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 6, m = 8, d = 4;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", matrix(n, d, 1));
    cJSON_AddItemToObject(req, "key", matrix(m, d, 2));
    cJSON_AddItemToObject(req, "value", matrix(m, 2, 3));
    cJSON *soft = post_200(s, "/v1/attention", req);
    cJSON_AddItemToObject(req, "kernel", favor_kernel(4096, 1));
    cJSON *a = post_200(s, "/v1/attention", req);
    cJSON *b = post_200(s, "/v1/attention", req);
    cJSON_ReplaceItemInObject(req, "kernel", favor_kernel(4096, 2));
    cJSON *c = post_200(s, "/v1/attention", req);

    char *pa = cJSON_PrintUnformatted(member(a, "output"));
    char *pb = cJSON_PrintUnformatted(member(b, "output"));
    char *pc = cJSON_PrintUnformatted(member(c, "output"));
    ck_assert_str_eq(pa, pb);
    ck_assert_str_ne(pa, pc);
    cJSON_free(pa);
    cJSON_free(pb);
    cJSON_free(pc);

    /* 4096 orthogonal random features: within a few percent of exp(q.k / sqrt(d)) attention */
    it_tensor ts = tensor_of(soft, "output"), tf = tensor_of(a, "output");
    it_tensor tw = tensor_of(a, "weights");
    ck_assert_uint_eq(ts.size, tf.size);
    for (size_t x = 0; x < ts.size; x++)
        ck_assert_msg(fabs(ts.data[x] - tf.data[x]) < 0.05, "output[%zu]: favor %g, softmax %g", x,
                      (double)tf.data[x], (double)ts.data[x]);
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        for (size_t j = 0; j < m; j++) {
            ck_assert(tw.data[i * m + j] > 0);
            sum += tw.data[i * m + j];
        }
        ck_assert_msg(fabs(sum - 1) < 1e-4, "weights row %zu sums to %g", i, sum);
    }
    const cJSON *meta = member(a, "meta"), *k = member(meta, "kernel");
    ck_assert_str_eq(member(k, "feature_map")->valuestring, "favor");
    ck_assert_int_eq((int)number_at(k, "num_features"), 4096);
    ck_assert_int_eq((int)number_at(k, "seed"), 1);
    ck_assert_str_eq(member(meta, "score")->valuestring, "scaled_dot");
    ck_assert(fabs(number_at(meta, "scale") - 0.5) < 1e-7);
    it_tensor_free(&ts);
    it_tensor_free(&tf);
    it_tensor_free(&tw);

    /* defaults are resolved in meta: 256 features, seed 0 */
    cJSON_ReplaceItemInObject(req, "kernel", favor_kernel(0, -1));
    cJSON *dflt = post_200(s, "/v1/attention", req);
    k = member(member(dflt, "meta"), "kernel");
    ck_assert_int_eq((int)number_at(k, "num_features"), 256);
    ck_assert_int_eq((int)number_at(k, "seed"), 0);

    cJSON_Delete(dflt);
    cJSON_Delete(soft);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

START_TEST(favor_causal_with_padding_weights_lower_triangular_rows_sum_to_one)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 70, d = 8; /* more than one 64-query chunk */
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", matrix(n, d, 4));
    cJSON_AddItemToObject(req, "key", matrix(n, d, 5));
    cJSON_AddItemToObject(req, "value", matrix(n, 3, 6));
    cJSON_AddItemToObject(req, "kernel", favor_kernel(64, 9));
    cJSON_AddBoolToObject(req, "causal", true);
    cJSON *pad = cJSON_AddArrayToObject(req, "key_padding_mask");
    for (size_t j = 0; j < n; j++)
        cJSON_AddItemToArray(pad, cJSON_CreateBool(j % 7 == 3));
    cJSON_AddStringToObject(req, "encoding", "base64");
    cJSON *a = post_200(s, "/v1/attention", req);
    it_tensor w = tensor_of(a, "weights");
    ck_assert_uint_eq(w.size, n * n);
    for (size_t i = 0; i < n; i++) {
        double sum = 0;
        for (size_t j = 0; j < n; j++) {
            const float x = w.data[i * n + j];
            if (j > i || j % 7 == 3)
                ck_assert_msg(x == 0.0f, "weights[%zu][%zu] = %g, expected 0", i, j, (double)x);
            sum += x;
        }
        ck_assert_msg(fabs(sum - 1) < 1e-3, "row %zu sums to %g", i, sum);
    }
    it_tensor_free(&w);
    cJSON_Delete(a);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ multi-head */

/*
 * Multi-head elu linear attention against a reference computed here from the
 * projections the server returns (q, k, v): per head, phi = elu + 1,
 * w_ij = phi(q_i).phi(k_j) / (sum over j <= i + 1e-6). GQA: head h reads
 * key/value head h * Hkv / H.
 */
START_TEST(mha_elu_heads_match_reference_from_returned_projections)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 7, E = 8, H = 4, Hkv = 2, hd = E / H, Ekv = Hkv * hd;
    for (int causal = 0; causal < 2; causal++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddItemToObject(req, "query", matrix(n, E, 7));
        cJSON_AddNumberToObject(req, "num_heads", (double)H);
        cJSON_AddNumberToObject(req, "num_kv_heads", (double)Hkv);
        cJSON_AddNumberToObject(req, "seed", 3);
        cJSON_AddItemToObject(req, "kernel", elu_kernel());
        cJSON_AddBoolToObject(req, "causal", causal);
        cJSON *ret = cJSON_AddArrayToObject(req, "return");
        static const char *const names[] = {"output", "weights", "head_outputs", "q", "k", "v"};
        for (size_t i = 0; i < 6; i++)
            cJSON_AddItemToArray(ret, cJSON_CreateString(names[i]));
        cJSON *a = post_200(s, "/v1/multihead_attention", req);
        it_tensor q = tensor_of(a, "q"), k = tensor_of(a, "k"), v = tensor_of(a, "v");
        it_tensor w = tensor_of(a, "weights"), ho = tensor_of(a, "head_outputs");
        ck_assert_uint_eq(w.size, H * n * n);
        for (size_t h = 0; h < H; h++) {
            const size_t g = h * Hkv / H;
            for (size_t i = 0; i < n; i++) {
                double raw[16], den = 1e-6;
                for (size_t j = 0; j < n; j++) {
                    double dot = 0;
                    for (size_t c = 0; c < hd && (!causal || j <= i); c++) {
                        double x = q.data[i * E + h * hd + c], y = k.data[j * Ekv + g * hd + c];
                        dot += (x > 0 ? x + 1 : exp(x)) * (y > 0 ? y + 1 : exp(y));
                    }
                    raw[j] = dot;
                    den += dot;
                }
                for (size_t j = 0; j < n; j++) {
                    double want = raw[j] / den, got = w.data[(h * n + i) * n + j];
                    ck_assert_msg(fabs(got - want) < 1e-5, "head %zu w[%zu][%zu]: %g vs %g", h, i,
                                  j, got, want);
                }
                for (size_t c = 0; c < hd; c++) {
                    double want = 0;
                    for (size_t j = 0; j < n; j++)
                        want += raw[j] / den * v.data[j * Ekv + g * hd + c];
                    double got = ho.data[(h * n + i) * hd + c];
                    ck_assert_msg(fabs(got - want) < 1e-5, "head %zu out[%zu][%zu]: %g vs %g", h, i,
                                  c, got, want);
                }
            }
        }
        const cJSON *kern = member(member(a, "meta"), "kernel");
        ck_assert_str_eq(member(kern, "feature_map")->valuestring, "elu");
        it_tensor_free(&q);
        it_tensor_free(&k);
        it_tensor_free(&v);
        it_tensor_free(&w);
        it_tensor_free(&ho);
        cJSON_Delete(a);
        cJSON_Delete(req);
    }
    it_stop_ok(s);
}
END_TEST

START_TEST(mha_favor_deterministic_causal_rows_sum_to_one)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 9, m = 11, E = 8, H = 2;
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", matrix(n, E, 8));
    cJSON_AddItemToObject(req, "key", matrix(m, E, 9));
    cJSON_AddItemToObject(req, "value", matrix(m, E, 10));
    cJSON_AddNumberToObject(req, "num_heads", (double)H);
    cJSON_AddNumberToObject(req, "seed", 4);
    cJSON_AddBoolToObject(req, "add_zero_attn", true);
    cJSON_AddStringToObject(req, "causal", "bottom_right");
    cJSON_AddItemToObject(req, "kernel", favor_kernel(32, 5));
    cJSON *a = post_200(s, "/v1/multihead_attention", req);
    cJSON *b = post_200(s, "/v1/multihead_attention", req);
    char *pa = cJSON_PrintUnformatted(member(a, "weights"));
    char *pb = cJSON_PrintUnformatted(member(b, "weights"));
    ck_assert_str_eq(pa, pb);
    cJSON_free(pa);
    cJSON_free(pb);
    /* keys: m real ones under causal, then the zero row that every query sees */
    const size_t mp = m + 1;
    it_tensor w = tensor_of(a, "weights");
    ck_assert_uint_eq(w.size, H * n * mp);
    for (size_t h = 0; h < H; h++)
        for (size_t i = 0; i < n; i++) {
            double sum = 0;
            for (size_t j = 0; j < mp; j++) {
                const float x = w.data[(h * n + i) * mp + j];
                if (j < m && j > i + (m - n))
                    ck_assert_msg(x == 0.0f, "head %zu w[%zu][%zu] = %g", h, i, j, (double)x);
                else
                    ck_assert(x > 0);
                sum += x;
            }
            ck_assert_msg(fabs(sum - 1) < 1e-4, "head %zu row %zu sums to %g", h, i, sum);
        }
    ck_assert_int_eq((int)number_at(member(member(a, "meta"), "kernel"), "num_features"), 32);
    it_tensor_free(&w);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

/* COO triplets of one [n][m] matrix: exactly the top-k entries > 0 of each dense row. */
static void expect_coo_topk(const cJSON *coo, const float *dense, size_t n, size_t m, size_t topk,
                            size_t *nnz)
{
    const cJSON *rows = member(coo, "rows"), *cols = member(coo, "cols");
    it_tensor vals = tensor_of(coo, "values");
    const cJSON *shape = member(coo, "shape");
    ck_assert_int_eq((int)cJSON_GetArrayItem(shape, 0)->valuedouble, (int)n);
    ck_assert_int_eq((int)cJSON_GetArrayItem(shape, 1)->valuedouble, (int)m);
    const int cnt = cJSON_GetArraySize(rows);
    ck_assert_int_eq(cJSON_GetArraySize(cols), cnt);
    ck_assert_uint_eq(vals.size, (size_t)cnt);
    ck_assert_uint_eq((size_t)cnt, n * (topk < m ? topk : m));
    for (int t = 0; t < cnt; t++) {
        size_t i = (size_t)cJSON_GetArrayItem(rows, t)->valuedouble;
        size_t j = (size_t)cJSON_GetArrayItem(cols, t)->valuedouble;
        ck_assert(i < n && j < m);
        ck_assert(vals.data[t] == dense[i * m + j]);
        size_t larger = 0;
        for (size_t x = 0; x < m; x++)
            larger += dense[i * m + x] > dense[i * m + j];
        ck_assert_msg(larger < topk, "row %zu col %zu is not among the %zu largest", i, j, topk);
    }
    *nnz += (size_t)cnt;
    it_tensor_free(&vals);
}

START_TEST(mha_sparsify_gives_coo_per_head_matching_dense_weights)
{
    it_server *s = it_start_ok(NULL);
    const size_t B = 2, n = 5, E = 6, H = 3, topk = 2;
    for (int lin = 0; lin < 2; lin++) {
        cJSON *req = cJSON_CreateObject();
        cJSON *batch = cJSON_AddArrayToObject(req, "query");
        for (size_t b = 0; b < B; b++)
            cJSON_AddItemToArray(batch, matrix(n, E, 11 + (unsigned)b));
        cJSON_AddNumberToObject(req, "num_heads", (double)H);
        cJSON_AddNumberToObject(req, "seed", 2);
        cJSON_AddBoolToObject(req, "average_weights", true);
        if (lin)
            cJSON_AddItemToObject(req, "kernel", elu_kernel());
        cJSON *dense = post_200(s, "/v1/multihead_attention", req);
        cJSON *sp = cJSON_AddObjectToObject(req, "sparsify");
        cJSON_AddNumberToObject(sp, "topk", (double)topk);
        cJSON *a = post_200(s, "/v1/multihead_attention", req);

        it_tensor w = tensor_of(dense, "weights"), avg = tensor_of(dense, "weights_avg");
        ck_assert_uint_eq(w.size, B * H * n * n);
        const cJSON *cw = member(a, "weights"), *ca = member(a, "weights_avg");
        ck_assert_int_eq(cJSON_GetArraySize(cw), (int)B);
        ck_assert_int_eq(cJSON_GetArraySize(ca), (int)B);
        size_t nnz = 0;
        for (size_t b = 0; b < B; b++) {
            const cJSON *heads = cJSON_GetArrayItem(cw, (int)b);
            ck_assert_int_eq(cJSON_GetArraySize(heads), (int)H);
            for (size_t h = 0; h < H; h++)
                expect_coo_topk(cJSON_GetArrayItem(heads, (int)h), w.data + (b * H + h) * n * n, n,
                                n, topk, &nnz);
            expect_coo_topk(cJSON_GetArrayItem(ca, (int)b), avg.data + b * n * n, n, n, topk, &nnz);
        }
        const cJSON *meta = member(a, "meta");
        ck_assert_int_eq((int)number_at(meta, "nnz"), (int)nnz);
        ck_assert_int_eq((int)number_at(member(meta, "sparsify"), "topk"), (int)topk);
        /* the rest of the answer is the dense request's */
        char why[512];
        ck_assert_msg(
            it_json_match(member(a, "output"), member(dense, "output"), 0, 0, why, sizeof why),
            "output: %s", why);
        it_tensor_free(&w);
        it_tensor_free(&avg);
        cJSON_Delete(dense);
        cJSON_Delete(a);
        cJSON_Delete(req);
    }
    it_stop_ok(s);
}
END_TEST

int main(void)
{
    case_load();
    Suite *s = suite_create("linear_http");
    TCase *tc = tcase_create("linear");
    tcase_add_test(tc, linear_golden_case_matches_through_http);
    tcase_add_test(tc, favor_same_seed_same_answer_large_r_near_softmax);
    tcase_add_test(tc, favor_causal_with_padding_weights_lower_triangular_rows_sum_to_one);
    tcase_add_test(tc, mha_elu_heads_match_reference_from_returned_projections);
    tcase_add_test(tc, mha_favor_deterministic_causal_rows_sum_to_one);
    tcase_add_test(tc, mha_sparsify_gives_coo_per_head_matching_dense_weights);
    suite_add_tcase(s, tc);
    int rc = it_run_suite(s);
    cJSON_Delete(golden);
    return rc;
}
