/* test_engine_golden.c - libattn against the PyTorch golden cases in tests/data/tensor_cases.json.
 */
#include "attn.h"

#include <check.h>
#include <cjson/cJSON.h>

#include "util_golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_TOL 1e-4

/* The parsed golden file, loaded once before the suite runs (read-only afterwards). */
static cJSON *g_root;


/* The index-th case of a kind, or NULL. */
static const cJSON *case_of_kind(const char *kind, int index)
{
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(g_root, "cases");
    const cJSON *c;
    int i = 0;
    cJSON_ArrayForEach(c, cases)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(c, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, kind) == 0 && i++ == index)
            return c;
    }
    return NULL;
}

static int count_of_kind(const char *kind)
{
    int n = 0;
    while (case_of_kind(kind, n))
        n++;
    return n;
}

static const char *case_name(const cJSON *c)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "name");
    return cJSON_IsString(n) ? n->valuestring : "?";
}

/*
 * Compares got against expected: every element within GOLDEN_TOL, and prints
 * the relative norm error ||got - exp|| / ||exp||. Expected NaN (torch's
 * undefined weights of a row with no key left) must be 0 here.
 */
static void expect_close(const char *cname, const char *what, const float *got, const tensor *exp)
{
    double num = 0.0, den = 0.0, max_abs = 0.0;
    for (size_t i = 0; i < exp->count; i++) {
        double e = isnan(exp->x[i]) ? 0.0 : exp->x[i];
        double d = fabs((double)got[i] - e);
        ck_assert_msg(isfinite(got[i]), "%s %s[%zu] is not finite", cname, what, i);
        ck_assert_msg(d <= GOLDEN_TOL, "%s %s[%zu]: got %.8g, expected %.8g", cname, what, i,
                      (double)got[i], e);
        num += d * d;
        den += e * e;
        if (d > max_abs)
            max_abs = d;
    }
    double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    printf("golden %-30s %-12s max_abs %.3g rel_norm %.3g\n", cname, what, max_abs, rel);
    ck_assert_msg(rel <= 1e-5, "%s %s: relative norm error %.3g", cname, what, rel);
}

/* -inf expected where we mask; elsewhere close. */
static void expect_scores_close(const char *cname, const float *got, const tensor *exp)
{
    tensor finite = {.x = malloc(exp->count * sizeof(double)), .count = exp->count};
    float *g = malloc(exp->count * sizeof(float));
    ck_assert(finite.x && g);
    for (size_t i = 0; i < exp->count; i++) {
        bool masked = isinf(exp->x[i]) && exp->x[i] < 0;
        ck_assert_msg(!masked || (isinf(got[i]) && got[i] < 0), "%s scores[%zu] should be -inf",
                      cname, i);
        finite.x[i] = masked ? 0.0 : exp->x[i];
        g[i] = masked ? 0.0f : got[i];
    }
    expect_close(cname, "scores", g, &finite);
    free(finite.x);
    free(g);
}

/* ------------------------------------------------------------ single head */

/* Runs one sdpa case: output and weights against torch, empty rows against its NaN rows. */
static void run_sdpa_case(const cJSON *c)
{
    const char *name = case_name(c);
    size_t n, dk, m, dk2, m2, dv;
    json_dims2(c, "query", &n, &dk);
    json_dims2(c, "key", &m, &dk2);
    json_dims2(c, "value", &m2, &dv);
    ck_assert(dk == dk2 && m == m2);

    tensor tq = tensor_get(c, "query"), tk = tensor_get(c, "key"), tv = tensor_get(c, "value");
    float *q = to_f32(&tq), *k = to_f32(&tk), *v = to_f32(&tv);
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
    const cJSON *scale = cJSON_GetObjectItemCaseSensitive(c, "scale");
    if (cJSON_IsNumber(scale))
        p.scale = (float)scale->valuedouble;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "causal")))
        p.masks.causal = ATTN_CAUSAL_TOP_LEFT;
    uint8_t *mask = NULL;
    float *bias = NULL;
    tensor tm = {0}, tb = {0};
    if (cJSON_GetObjectItemCaseSensitive(c, "mask")) {
        tm = tensor_get(c, "mask");
        mask = to_u8(&tm);
        p.masks.mask = mask;
    }
    if (cJSON_GetObjectItemCaseSensitive(c, "attn_bias")) {
        tb = tensor_get(c, "attn_bias");
        bias = to_f32(&tb);
        p.masks.bias = bias;
    }

    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    tensor eo = tensor_get(exp, "output_torch_sdpa"), ew = tensor_get(exp, "weights_softmax");
    float *out = calloc(n * dv, sizeof(float)), *w = calloc(n * m, sizeof(float));
    ck_assert(out && w);

    attn_ws *ws = attn_ws_create(NULL);
    ck_assert(ws != NULL);
    attn_outputs o = {.output = out, .weights = w};
    attn_result res;
    ck_assert_int_eq(attn_forward(ws, &p, n, m, dk, dk, dv, q, k, v, &o, &res), ATTN_OK);

    expect_close(name, "output", out, &eo);
    expect_close(name, "weights", w, &ew);

    /* Rows torch leaves undefined (NaN weights) are exactly the engine's empty rows. */
    size_t nan_rows = 0;
    for (size_t i = 0; i < n; i++)
        nan_rows += isnan(ew.x[i * m]) ? 1 : 0;
    ck_assert_uint_eq(res.n_empty_rows, nan_rows);
    float want_scale =
        cJSON_IsNumber(scale) ? (float)scale->valuedouble : (float)(1.0 / sqrt((double)dk));
    ck_assert_float_eq_tol(res.scale, want_scale, 1e-7f);

    attn_ws_free(ws);
    free(out);
    free(w);
    free(q);
    free(k);
    free(v);
    free(mask);
    free(bias);
    free(tq.x);
    free(tk.x);
    free(tv.x);
    free(tm.x);
    free(tb.x);
    free(eo.x);
    free(ew.x);
}

START_TEST(sdpa_cases_match_torch_within_1e4)
{
    const cJSON *c = case_of_kind("sdpa", _i);
    ck_assert(c != NULL);
    run_sdpa_case(c);
}
END_TEST

START_TEST(sdpa_fully_masked_row_gives_zero_output_and_zero_weights)
{
    const cJSON *c = NULL;
    for (int i = 0; (c = case_of_kind("sdpa", i)) != NULL; i++)
        if (strcmp(case_name(c), "sdpa_7_bool_fully_masked_row") == 0)
            break;
    ck_assert_msg(c != NULL, "golden file lacks sdpa_7_bool_fully_masked_row");

    size_t n, dk, m, dv;
    json_dims2(c, "query", &n, &dk);
    json_dims2(c, "value", &m, &dv);
    tensor tq = tensor_get(c, "query"), tk = tensor_get(c, "key"), tv = tensor_get(c, "value");
    tensor tm = tensor_get(c, "mask");
    float *q = to_f32(&tq), *k = to_f32(&tk), *v = to_f32(&tv);
    uint8_t *mask = to_u8(&tm);
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT, .masks = {.mask = mask}};
    float *out = malloc(n * dv * sizeof(float)), *w = malloc(n * m * sizeof(float));
    float *s = malloc(n * m * sizeof(float));
    ck_assert(out && w && s);
    /* Poison the buffers: every element must be written. */
    for (size_t i = 0; i < n * dv; i++)
        out[i] = NAN;
    for (size_t i = 0; i < n * m; i++)
        w[i] = NAN;
    attn_ws *ws = attn_ws_create(NULL);
    attn_outputs o = {.output = out, .weights = w, .scores = s};
    attn_result res;
    ck_assert_int_eq(attn_forward(ws, &p, n, m, dk, dk, dv, q, k, v, &o, &res), ATTN_OK);

    size_t empty_row = n;
    for (size_t i = 0; i < n; i++) {
        bool any = false;
        for (size_t j = 0; j < m; j++)
            any = any || mask[i * m + j];
        if (!any)
            empty_row = i;
    }
    ck_assert_uint_lt(empty_row, n);
    for (size_t j = 0; j < dv; j++)
        ck_assert_float_eq(out[empty_row * dv + j], 0.0f);
    for (size_t j = 0; j < m; j++) {
        ck_assert_float_eq(w[empty_row * m + j], 0.0f);
        ck_assert(isinf(s[empty_row * m + j]) && s[empty_row * m + j] < 0);
    }
    ck_assert_uint_eq(res.n_empty_rows, 1);
    size_t allowed = 0;
    for (size_t i = 0; i < n * m; i++)
        allowed += mask[i];
    ck_assert_uint_eq(res.n_allowed_pairs, allowed);

    attn_ws_free(ws);
    free(out);
    free(w);
    free(s);
    free(q);
    free(k);
    free(v);
    free(mask);
    free(tq.x);
    free(tk.x);
    free(tv.x);
    free(tm.x);
}
END_TEST

/* additive / general / concat / dot: scores, weights and output. */
static void run_luong_case(const char *kind, attn_score score)
{
    const cJSON *c = case_of_kind(kind, 0);
    ck_assert_msg(c != NULL, "golden file lacks a %s case", kind);
    const char *name = case_name(c);
    size_t n, dq, m, dk, m2, dv;
    json_dims2(c, "query", &n, &dq);
    json_dims2(c, "key", &m, &dk);
    json_dims2(c, "value", &m2, &dv);
    ck_assert(m == m2);

    tensor tq = tensor_get(c, "query"), tk = tensor_get(c, "key"), tv = tensor_get(c, "value");
    float *q = to_f32(&tq), *k = to_f32(&tk), *v = to_f32(&tv);
    tensor tw = {0}, tw1 = {0}, tw2 = {0}, tvv = {0};
    float *w = NULL, *w1 = NULL, *w2 = NULL, *vv = NULL;
    attn_params p = {.score = score};
    size_t rows, cols;
    switch (score) {
    case ATTN_SCORE_GENERAL:
        tw = tensor_get(c, "w");
        p.w = w = to_f32(&tw);
        break;
    case ATTN_SCORE_ADDITIVE:
        tw1 = tensor_get(c, "w1");
        tw2 = tensor_get(c, "w2");
        tvv = tensor_get(c, "v");
        p.w1 = w1 = to_f32(&tw1);
        p.w2 = w2 = to_f32(&tw2);
        p.v = vv = to_f32(&tvv);
        json_dims2(c, "w1", &rows, &cols);
        p.da = rows;
        break;
    case ATTN_SCORE_CONCAT:
        tw = tensor_get(c, "w");
        tvv = tensor_get(c, "v");
        p.w = w = to_f32(&tw);
        p.v = vv = to_f32(&tvv);
        json_dims2(c, "w", &rows, &cols);
        ck_assert_uint_eq(cols, dq + dk);
        p.da = rows;
        break;
    default:
        break;
    }

    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    tensor es = tensor_get(exp, "scores"), ew = tensor_get(exp, "weights"),
           eo = tensor_get(exp, "output");
    float *out = calloc(n * dv, sizeof(float)), *wt = calloc(n * m, sizeof(float)),
          *sc = calloc(n * m, sizeof(float));
    ck_assert(out && wt && sc);
    attn_ws *ws = attn_ws_create(NULL);
    attn_outputs o = {.output = out, .weights = wt, .scores = sc};
    attn_result res;
    ck_assert_int_eq(attn_forward(ws, &p, n, m, dq, dk, dv, q, k, v, &o, &res), ATTN_OK);
    expect_scores_close(name, sc, &es);
    expect_close(name, "weights", wt, &ew);
    expect_close(name, "output", out, &eo);
    ck_assert_float_eq(res.scale, 1.0f);
    ck_assert_uint_eq(res.n_empty_rows, 0);
    ck_assert_uint_eq(res.n_allowed_pairs, n * m);

    attn_ws_free(ws);
    free(out);
    free(wt);
    free(sc);
    free(q);
    free(k);
    free(v);
    free(w);
    free(w1);
    free(w2);
    free(vv);
    free(tq.x);
    free(tk.x);
    free(tv.x);
    free(tw.x);
    free(tw1.x);
    free(tw2.x);
    free(tvv.x);
    free(es.x);
    free(ew.x);
    free(eo.x);
}

START_TEST(additive_bahdanau_matches_torch_scores_weights_output)
{
    run_luong_case("additive", ATTN_SCORE_ADDITIVE);
}
END_TEST

START_TEST(general_luong_matches_torch_scores_weights_output)
{
    run_luong_case("general", ATTN_SCORE_GENERAL);
}
END_TEST

START_TEST(concat_luong_matches_torch_scores_weights_output)
{
    run_luong_case("concat", ATTN_SCORE_CONCAT);
}
END_TEST

START_TEST(dot_luong_unscaled_matches_torch_scores_weights_output)
{
    run_luong_case("dot", ATTN_SCORE_DOT);
}
END_TEST

/* ------------------------------------------------------------ multi-head */

static size_t json_size(const cJSON *c, const char *key, size_t dflt)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(x) ? (size_t)x->valuedouble : dflt;
}

START_TEST(mha_cases_match_torch_output_weights_and_average_within_1e4)
{
    const cJSON *c = case_of_kind("mha", _i);
    ck_assert(c != NULL);
    const char *name = case_name(c);
    const size_t E = json_size(c, "embed_dim", 0), H = json_size(c, "num_heads", 0);
    const size_t kdim = json_size(c, "kdim", E), vdim = json_size(c, "vdim", E);
    size_t n, m, cols;
    json_dims2(c, "query_in", &n, &cols);
    ck_assert_uint_eq(cols, E);
    json_dims2(c, "key_in", &m, &cols);
    ck_assert_uint_eq(cols, kdim);

    tensor tq = tensor_get(c, "query_in"), tk = tensor_get(c, "key_in"),
           tv = tensor_get(c, "value_in");
    float *query = to_f32(&tq), *key = to_f32(&tk), *value = to_f32(&tv);
    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(c, "state_dict");
    tensor tw[6] = {{0}};
    float *fw[6] = {0};
    const char *keys[6] = {"in_proj_weight", "q_proj_weight", "k_proj_weight",
                           "v_proj_weight",  "in_proj_bias",  "out_proj.bias"};
    for (int i = 0; i < 6; i++) {
        if (cJSON_GetObjectItemCaseSensitive(sd, keys[i])) {
            tw[i] = tensor_get(sd, keys[i]);
            fw[i] = to_f32(&tw[i]);
        }
    }
    tensor two = tensor_get(sd, "out_proj.weight");
    float *out_proj = to_f32(&two);

    attn_mha_weights w = {.out_proj = out_proj, .out_bias = fw[5]};
    if (fw[0]) {
        w.q_proj = fw[0];
        w.k_proj = fw[0] + E * E;
        w.v_proj = fw[0] + 2 * E * E;
    } else {
        w.q_proj = fw[1];
        w.k_proj = fw[2];
        w.v_proj = fw[3];
    }
    if (fw[4]) {
        w.q_bias = fw[4];
        w.k_bias = fw[4] + E;
        w.v_bias = fw[4] + 2 * E;
    }
    ck_assert_msg(w.q_proj && w.k_proj && w.v_proj, "%s: projection weights missing", name);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(c, "bias")) == (fw[4] == NULL));

    attn_mha_config cfg = {.embed_dim = E, .num_heads = H, .kdim = kdim, .vdim = vdim};
    cfg.attn.score = ATTN_SCORE_SCALED_DOT;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "causal")))
        cfg.attn.masks.causal = ATTN_CAUSAL_TOP_LEFT;
    tensor tkp = {0};
    uint8_t *kpm = NULL;
    if (cJSON_GetObjectItemCaseSensitive(c, "key_padding_mask")) {
        tkp = tensor_get(c, "key_padding_mask");
        kpm = to_u8(&tkp);
        cfg.attn.masks.key_padding = kpm;
    }
    ck_assert_uint_eq(attn_mha_keys(&cfg, &w, m), m);

    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    tensor eo = tensor_get(exp, "output"), ew = tensor_get(exp, "weights"),
           ea = tensor_get(exp, "weights_avg");
    ck_assert_uint_eq(ew.count, H * n * m);
    float *out = calloc(n * E, sizeof(float)), *wt = calloc(H * n * m, sizeof(float)),
          *avg = calloc(n * m, sizeof(float));
    ck_assert(out && wt && avg);
    attn_ws *ws = attn_ws_create(NULL);
    attn_mha_outputs o = {.output = out, .weights = wt, .weights_avg = avg};
    attn_result res;
    ck_assert_int_eq(attn_mha_forward(ws, &cfg, &w, n, m, query, key, value, &o, &res), ATTN_OK);
    expect_close(name, "output", out, &eo);
    expect_close(name, "weights", wt, &ew);
    expect_close(name, "weights_avg", avg, &ea);
    ck_assert_float_eq_tol(res.scale, (float)(1.0 / sqrt((double)(E / H))), 1e-7f);
    ck_assert_uint_eq(res.n_empty_rows, 0);

    attn_ws_free(ws);
    free(out);
    free(wt);
    free(avg);
    free(query);
    free(key);
    free(value);
    free(out_proj);
    free(kpm);
    free(tkp.x);
    for (int i = 0; i < 6; i++) {
        free(fw[i]);
        free(tw[i].x);
    }
    free(two.x);
    free(tq.x);
    free(tk.x);
    free(tv.x);
    free(eo.x);
    free(ew.x);
    free(ea.x);
}
END_TEST

static Suite *golden_suite(void)
{
    Suite *s = suite_create("engine_golden");
    TCase *tc = tcase_create("torch");
    tcase_add_loop_test(tc, sdpa_cases_match_torch_within_1e4, 0, count_of_kind("sdpa"));
    tcase_add_test(tc, sdpa_fully_masked_row_gives_zero_output_and_zero_weights);
    tcase_add_test(tc, additive_bahdanau_matches_torch_scores_weights_output);
    tcase_add_test(tc, general_luong_matches_torch_scores_weights_output);
    tcase_add_test(tc, concat_luong_matches_torch_scores_weights_output);
    tcase_add_test(tc, dot_luong_unscaled_matches_torch_scores_weights_output);
    tcase_add_loop_test(tc, mha_cases_match_torch_output_weights_and_average_within_1e4, 0,
                        count_of_kind("mha"));
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    g_root = load_json(ATTN_TEST_DATA "/tensor_cases.json");
    if (!g_root) {
        fprintf(stderr, "cannot read %s\n", ATTN_TEST_DATA "/tensor_cases.json");
        return EXIT_FAILURE;
    }
    if (count_of_kind("sdpa") < 9 || count_of_kind("mha") < 7) {
        fprintf(stderr, "golden file has fewer cases than expected\n");
        cJSON_Delete(g_root);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(golden_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cJSON_Delete(g_root);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
