/* test_engine_linear.c - linear attention (elu + 1) against the golden case and a naive reference. */
#include "attn.h"

#include <check.h>
#include <cjson/cJSON.h>

#include "util_golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *g_root;

static const cJSON *linear_case(void)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(g_root, "cases"))
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(c, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, "linear") == 0)
            return c;
    }
    return NULL;
}

static void expect_close(const float *got, const tensor *want, double tol, const char *what)
{
    for (size_t i = 0; i < want->count; i++)
        ck_assert_msg(fabs(got[i] - want->x[i]) <= tol, "%s[%zu]: %g, expected %g", what, i,
                      (double)got[i], want->x[i]);
}

START_TEST(linear_golden_case_matches_reference_noncausal_and_causal)
{
    const cJSON *c = linear_case();
    ck_assert_msg(c != NULL, "tensor_cases.json has no linear case");
    size_t n, d, m, dv, tmp;
    json_dims2(c, "query", &n, &d);
    json_dims2(c, "key", &m, &tmp);
    json_dims2(c, "value", &tmp, &dv);
    tensor tq = tensor_get(c, "query"), tk = tensor_get(c, "key"), tv = tensor_get(c, "value");
    float *q = to_f32(&tq), *k = to_f32(&tk), *v = to_f32(&tv);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    float *out = malloc(n * dv * sizeof *out), *w = malloc(n * m * sizeof *w);
    attn_ws *ws = attn_ws_create(NULL);
    static const char *const names[2][2] = {{"output", "weights"},
                                           {"output_causal", "weights_causal"}};
    for (int causal = 0; causal < 2; causal++) {
        ck_assert_int_eq(attn_linear_forward(ws, causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE,
                                             n, m, d, dv, q, k, v, NULL, out, w),
                         ATTN_OK);
        tensor eo = tensor_get(exp, names[causal][0]), ew = tensor_get(exp, names[causal][1]);
        expect_close(out, &eo, 1e-4, names[causal][0]);
        expect_close(w, &ew, 1e-4, names[causal][1]);
        free(eo.x);
        free(ew.x);
    }
    attn_ws_free(ws);
    free(out);
    free(w);
    free(q);
    free(k);
    free(v);
    free(tq.x);
    free(tk.x);
    free(tv.x);
}
END_TEST

static double phi(double x)
{
    return x > 0 ? x + 1 : exp(x);
}

static float frand(uint64_t *st)
{
    return 4.0f * attn_rng_uniform(st) - 2.0f;
}

/* Naive: w_ij = phi(q_i).phi(k_j) / (sum over visible j + 1e-6), out = w v. */
START_TEST(linear_random_shapes_match_naive_reference)
{
    static const size_t shapes[][4] = {{1, 1, 1, 1}, {7, 5, 3, 2}, {5, 9, 4, 6}, {33, 33, 8, 3},
                                       {64, 17, 16, 5}};
    uint64_t st = 42;
    attn_ws *ws = attn_ws_create(NULL);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], m = shapes[s][1], d = shapes[s][2], dv = shapes[s][3];
        float *q = malloc(n * d * 4), *k = malloc(m * d * 4), *v = malloc(m * dv * 4);
        float *out = malloc(n * dv * 4), *out2 = malloc(n * dv * 4), *w = malloc(n * m * 4);
        uint8_t *pad = malloc(m);
        for (size_t i = 0; i < n * d; i++)
            q[i] = frand(&st);
        for (size_t i = 0; i < m * d; i++)
            k[i] = frand(&st);
        for (size_t i = 0; i < m * dv; i++)
            v[i] = frand(&st);
        for (size_t j = 0; j < m; j++)
            pad[j] = m > 1 && j % 3 == 1;
        for (int mode = 0; mode < 3; mode++) {
            for (int use_pad = 0; use_pad < 2; use_pad++) {
                attn_causal cz = (attn_causal)mode;
                const uint8_t *kp = use_pad ? pad : NULL;
                ck_assert_int_eq(attn_linear_forward(ws, cz, n, m, d, dv, q, k, v, kp, out, w),
                                 ATTN_OK);
                ck_assert_int_eq(attn_linear_forward(ws, cz, n, m, d, dv, q, k, v, kp, out2, NULL),
                                 ATTN_OK);
                for (size_t i = 0; i < n; i++) {
                    size_t lim = m;
                    if (cz == ATTN_CAUSAL_TOP_LEFT)
                        lim = i + 1 < m ? i + 1 : m;
                    else if (cz == ATTN_CAUSAL_BOTTOM_RIGHT) {
                        long long l = (long long)i + 1 + (long long)m - (long long)n;
                        lim = l < 0 ? 0 : (size_t)l < m ? (size_t)l : m;
                    }
                    double num[8] = {0}, den = 1e-6, raw[64];
                    for (size_t j = 0; j < m; j++) {
                        double dot = 0;
                        if (j < lim && !(kp && kp[j]))
                            for (size_t c = 0; c < d; c++)
                                dot += phi(q[i * d + c]) * phi(k[j * d + c]);
                        raw[j] = dot;
                        den += dot;
                        for (size_t e = 0; e < dv; e++)
                            num[e] += dot * v[j * dv + e];
                    }
                    for (size_t j = 0; j < m; j++)
                        ck_assert_msg(fabs(w[i * m + j] - raw[j] / den) <= 1e-4 * (1 + fabs(raw[j] / den)),
                                      "shape %zu mode %d pad %d w[%zu][%zu]", s, mode, use_pad, i, j);
                    for (size_t e = 0; e < dv; e++) {
                        double want = num[e] / den;
                        ck_assert_msg(fabs(out[i * dv + e] - want) <= 1e-4 * (1 + fabs(want)),
                                      "shape %zu mode %d pad %d out[%zu][%zu]: %g vs %g", s, mode,
                                      use_pad, i, e, (double)out[i * dv + e], want);
                        ck_assert(fabs(out2[i * dv + e] - out[i * dv + e]) <= 1e-5 * (1 + fabs(want)));
                    }
                }
            }
        }
        free(q);
        free(k);
        free(v);
        free(out);
        free(out2);
        free(w);
        free(pad);
    }
    attn_ws_free(ws);
}
END_TEST

START_TEST(linear_bad_arguments_return_documented_errors)
{
    attn_ws *ws = attn_ws_create(NULL);
    float x[4] = {0}, o[4];
    ck_assert_int_eq(attn_linear_forward(NULL, ATTN_CAUSAL_NONE, 1, 1, 1, 1, x, x, x, NULL, o, NULL),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_linear_forward(ws, (attn_causal)7, 1, 1, 1, 1, x, x, x, NULL, o, NULL),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_linear_forward(ws, ATTN_CAUSAL_NONE, 1, 1, 0, 1, x, x, x, NULL, o, NULL),
                     ATTN_ERR_SHAPE);
    ck_assert_int_eq(attn_linear_forward(ws, ATTN_CAUSAL_NONE, 1, 1, 1, 1, NULL, x, x, NULL, o, NULL),
                     ATTN_ERR_INVALID);
    attn_ws_free(ws);
}
END_TEST

int main(void)
{
    g_root = load_json(ATTN_TEST_DATA "/tensor_cases.json");
    Suite *s = suite_create("engine_linear");
    TCase *tc = tcase_create("linear");
    tcase_add_test(tc, linear_golden_case_matches_reference_noncausal_and_causal);
    tcase_add_test(tc, linear_random_shapes_match_naive_reference);
    tcase_add_test(tc, linear_bad_arguments_return_documented_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cJSON_Delete(g_root);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
