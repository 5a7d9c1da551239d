/* test_engine_pattern.c - sparse/local/global attention patterns: golden cases, a naive reference,
 * errors, memory.
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


/* ------------------------------------------------------------ golden cases */

static const cJSON *case_at(int index)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g_root, "cases"), index);
}

static int n_cases(void)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g_root, "cases"));
}

/* Parses a golden "pattern" object; globals go to gbuf (at most 16). */
static attn_pattern pattern_from_json(const cJSON *o, size_t *gbuf)
{
    attn_pattern p = {0};
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "window");
    if (w) {
        p.has_window = true;
        if (cJSON_IsArray(w)) {
            p.window_left = (int64_t)cJSON_GetArrayItem(w, 0)->valuedouble;
            p.window_right = (int64_t)cJSON_GetArrayItem(w, 1)->valuedouble;
        } else {
            p.window_left = p.window_right = (int64_t)w->valuedouble;
        }
    }
    const cJSON *x;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "dilation")))
        p.dilation = (int64_t)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "stride")))
        p.stride = (int64_t)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "block_size")))
        p.block_size = (int64_t)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "random")))
        p.random = (int64_t)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "seed")))
        p.seed = (uint64_t)x->valuedouble;
    if ((x = cJSON_GetObjectItemCaseSensitive(o, "global_tokens"))) {
        const cJSON *e;
        cJSON_ArrayForEach(e, x)
        {
            ck_assert(p.n_global < 16);
            gbuf[p.n_global++] = (size_t)e->valuedouble;
        }
        p.global_tokens = gbuf;
    }
    return p;
}

START_TEST(golden_pattern_cases_match_allowed_weights_output)
{
    const cJSON *c = case_at(_i);
    size_t gbuf[16];
    attn_pattern pat = pattern_from_json(cJSON_GetObjectItemCaseSensitive(c, "pattern"), gbuf);
    const bool causal = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "causal"));
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(c, "expected");
    size_t n, dk, m, dv;
    json_dims2(c, "query", &n, &dk);
    json_dims2(c, "value", &m, &dv);
    tensor tq = tensor_get(c, "query"), tk = tensor_get(c, "key"), tv = tensor_get(c, "value");
    tensor ta = tensor_get(ex, "allowed"), tw = tensor_get(ex, "weights"),
           to = tensor_get(ex, "output");
    ck_assert_uint_eq(ta.count, n * m);
    float *q = to_f32(&tq), *k = to_f32(&tk), *v = to_f32(&tv);
    uint8_t *want = to_u8(&ta);
    uint8_t *allowed = malloc(n * m);
    const attn_causal cm = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;

    ck_assert_int_eq(attn_pattern_allowed(&pat, cm, n, m, allowed), ATTN_OK);
    for (size_t x = 0; x < n * m; x++)
        ck_assert_msg(allowed[x] == want[x], "%s: allowed[%zu][%zu] = %d, expected %d",
                      cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring, x / m, x % m,
                      allowed[x], want[x]);

    attn_ws *ws = attn_ws_create(NULL);
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
    p.masks.causal = cm;
    p.masks.pattern = &pat;
    float *out = malloc(n * dv * sizeof(float)), *w = malloc(n * m * sizeof(float));
    float *out2 = malloc(n * dv * sizeof(float));
    attn_outputs o = {.output = out, .weights = w};
    attn_result res;
    ck_assert_int_eq(attn_forward(ws, &p, n, m, dk, dk, dv, q, k, v, &o, &res), ATTN_OK);
    size_t n_allowed = 0;
    for (size_t x = 0; x < n * m; x++)
        n_allowed += want[x];
    ck_assert_uint_eq(res.n_allowed_pairs, n_allowed);
    for (size_t x = 0; x < n * m; x++)
        ck_assert_msg(fabs(w[x] - tw.x[x]) < GOLDEN_TOL, "weights[%zu]: %g vs %g", x, w[x],
                      tw.x[x]);
    for (size_t x = 0; x < n * dv; x++)
        ck_assert_msg(fabs(out[x] - to.x[x]) < GOLDEN_TOL, "output[%zu]", x);
    /* Output only (the sparse path where it applies) agrees too. */
    attn_outputs o2 = {.output = out2};
    ck_assert_int_eq(attn_forward(ws, &p, n, m, dk, dk, dv, q, k, v, &o2, &res), ATTN_OK);
    ck_assert_uint_eq(res.n_allowed_pairs, n_allowed);
    for (size_t x = 0; x < n * dv; x++)
        ck_assert_msg(fabs(out2[x] - to.x[x]) < GOLDEN_TOL, "sparse output[%zu]", x);

    attn_ws_free(ws);
    free(out);
    free(out2);
    free(w);
    free(allowed);
    free(want);
    free(q);
    free(k);
    free(v);
    free(tq.x);
    free(tk.x);
    free(tv.x);
    free(ta.x);
    free(tw.x);
    free(to.x);
}
END_TEST

/* ------------------------------------------------------------ naive reference */

/* The pattern by its definitions, written independently of the engine. */
static bool ref_pattern(const attn_pattern *p, size_t n, size_t m, size_t i, size_t j)
{
    (void)n;
    for (size_t g = 0; g < p->n_global; g++)
        if (p->global_tokens[g] == i || p->global_tokens[g] == j)
            return true;
    const long long di = (long long)i - (long long)j; /* i - j */
    if (p->has_window) {
        const long long d = p->dilation > 1 ? p->dilation : 1;
        const bool lok = p->window_left < 0 || di <= p->window_left * d;
        const bool rok = p->window_right < 0 || -di <= p->window_right * d;
        if (lok && rok && ((di % d) + d) % d == 0)
            return true;
    }
    if (p->stride > 0 && ((di % p->stride) + p->stride) % p->stride == 0)
        return true;
    if (p->block_size > 0 && (long long)i / p->block_size == (long long)j / p->block_size)
        return true;
    if (p->random > 0) {
        uint64_t st = p->seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
        for (int64_t r = 0; r < p->random; r++)
            if (attn_rng_next(&st) % m == j)
                return true;
    }
    return false;
}

static bool ref_causal(attn_causal c, size_t n, size_t m, size_t i, size_t j)
{
    if (c == ATTN_CAUSAL_TOP_LEFT)
        return j <= i;
    if (c == ATTN_CAUSAL_BOTTOM_RIGHT)
        return (long long)j <= (long long)i + (long long)m - (long long)n;
    return true;
}

static float frand(uint64_t *st)
{
    return attn_rng_uniform(st) * 2.0f - 1.0f;
}

/* Runs one random configuration against the reference (weights and output,
 * with and without weights requested). */
static void check_random_case(uint64_t seed, size_t n, size_t m, size_t d, const attn_pattern *pat,
                              attn_causal causal, bool use_mask, bool use_pad)
{
    uint64_t st = seed;
    float *q = malloc(n * d * sizeof(float)), *k = malloc(m * d * sizeof(float)),
          *v = malloc(m * d * sizeof(float));
    uint8_t *mask = malloc(n * m), *pad = malloc(m);
    for (size_t x = 0; x < n * d; x++)
        q[x] = frand(&st);
    for (size_t x = 0; x < m * d; x++) {
        k[x] = frand(&st);
        v[x] = frand(&st);
    }
    for (size_t x = 0; x < n * m; x++)
        mask[x] = attn_rng_uniform(&st) < 0.8f;
    for (size_t x = 0; x < m; x++)
        pad[x] = attn_rng_uniform(&st) < 0.15f;

    double *rw = calloc(n * m, sizeof(double)), *ro = calloc(n * d, sizeof(double));
    size_t ref_allowed = 0;
    const double scale = 1.0 / sqrt((double)d);
    for (size_t i = 0; i < n; i++) {
        double mx = -INFINITY;
        for (size_t j = 0; j < m; j++) {
            bool ok = ref_pattern(pat, n, m, i, j) && ref_causal(causal, n, m, i, j) &&
                      (!use_mask || mask[i * m + j]) && (!use_pad || !pad[j]);
            if (!ok) {
                rw[i * m + j] = -INFINITY;
                continue;
            }
            ref_allowed++;
            double s = 0;
            for (size_t x = 0; x < d; x++)
                s += (double)q[i * d + x] * k[j * d + x];
            rw[i * m + j] = s * scale;
            if (rw[i * m + j] > mx)
                mx = rw[i * m + j];
        }
        double sum = 0;
        for (size_t j = 0; j < m; j++) {
            rw[i * m + j] = mx == -INFINITY ? 0.0 : exp(rw[i * m + j] - mx);
            sum += rw[i * m + j];
        }
        for (size_t j = 0; j < m; j++) {
            if (sum > 0)
                rw[i * m + j] /= sum;
            for (size_t x = 0; x < d; x++)
                ro[i * d + x] += rw[i * m + j] * v[j * d + x];
        }
    }

    attn_ws *ws = attn_ws_create(NULL);
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
    p.masks.causal = causal;
    p.masks.pattern = pat;
    p.masks.mask = use_mask ? mask : NULL;
    p.masks.key_padding = use_pad ? pad : NULL;
    float *out = malloc(n * d * sizeof(float)), *w = malloc(n * m * sizeof(float)),
          *sc = malloc(n * m * sizeof(float));
    attn_result res;
    for (int with_w = 0; with_w < 2; with_w++) {
        attn_outputs o = {.output = out, .weights = with_w ? w : NULL, .scores = sc};
        ck_assert_int_eq(attn_forward(ws, &p, n, m, d, d, d, q, k, v, &o, &res), ATTN_OK);
        ck_assert_uint_eq(res.n_allowed_pairs, ref_allowed);
        for (size_t x = 0; x < n * d; x++)
            ck_assert_msg(fabs(out[x] - ro[x]) < GOLDEN_TOL,
                          "seed %llu n %zu m %zu with_w %d: output[%zu] %g vs %g",
                          (unsigned long long)seed, n, m, with_w, x, out[x], ro[x]);
        for (size_t x = 0; x < n * m; x++) {
            if (with_w)
                ck_assert_msg(fabs(w[x] - rw[x]) < GOLDEN_TOL, "weights[%zu]", x);
            /* scores: -inf exactly where the reference removes the pair */
            const bool ref_ok = ref_pattern(pat, n, m, x / m, x % m) &&
                                ref_causal(causal, n, m, x / m, x % m) && (!use_mask || mask[x]) &&
                                (!use_pad || !pad[x % m]);
            ck_assert_msg(ref_ok == (sc[x] != -INFINITY), "scores[%zu] seed %llu", x,
                          (unsigned long long)seed);
        }
    }
    /* attn_pattern_allowed: pattern + causal only. */
    uint8_t *al = malloc(n * m);
    ck_assert_int_eq(attn_pattern_allowed(pat, causal, n, m, al), ATTN_OK);
    for (size_t x = 0; x < n * m; x++)
        ck_assert_int_eq(al[x], ref_pattern(pat, n, m, x / m, x % m) &&
                                    ref_causal(causal, n, m, x / m, x % m));
    free(al);
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
    free(mask);
    free(pad);
    free(rw);
    free(ro);
    free(out);
    free(w);
    free(sc);
}

START_TEST(random_shapes_match_naive_reference)
{
    uint64_t st = 777 + (uint64_t)_i;
    static const size_t sizes[] = {1, 5, 17, 64, 65, 130, 200};
    size_t gbuf[4];
    for (int rep = 0; rep < 6; rep++) {
        const size_t n = sizes[attn_rng_next(&st) % 7], m = sizes[attn_rng_next(&st) % 7];
        const size_t d = 1 + attn_rng_next(&st) % 9;
        attn_pattern pat = {0};
        const int form = (int)(attn_rng_next(&st) % 8);
        switch (form) {
        case 0: /* symmetric window */
            pat.has_window = true;
            pat.window_left = pat.window_right = (int64_t)(attn_rng_next(&st) % 10);
            break;
        case 1: /* [l, r], possibly one side unbounded */
            pat.has_window = true;
            pat.window_left = (int64_t)(attn_rng_next(&st) % 12) - 1;
            pat.window_right = (int64_t)(attn_rng_next(&st) % 6);
            break;
        case 2:
            pat.has_window = true;
            pat.window_left = pat.window_right = (int64_t)(attn_rng_next(&st) % 5);
            pat.dilation = 1 + (int64_t)(attn_rng_next(&st) % 4);
            break;
        case 3:
            pat.stride = 1 + (int64_t)(attn_rng_next(&st) % 7);
            break;
        case 4:
            pat.block_size = 1 + (int64_t)(attn_rng_next(&st) % 20);
            break;
        case 5:
            pat.random = 1 + (int64_t)(attn_rng_next(&st) % 4);
            pat.seed = attn_rng_next(&st);
            break;
        default: /* a combination with global tokens */
            pat.has_window = true;
            pat.window_left = pat.window_right = (int64_t)(attn_rng_next(&st) % 4);
            pat.block_size = form == 7 ? 8 : 0;
            pat.random = form == 7 ? 2 : 0;
            pat.seed = 42;
            pat.n_global = 2;
            gbuf[0] = 0;
            gbuf[1] = attn_rng_next(&st) % (n > m ? n : m);
            pat.global_tokens = gbuf;
            break;
        }
        const attn_causal causal = (attn_causal)(attn_rng_next(&st) % 3);
        const bool use_mask = attn_rng_next(&st) % 2, use_pad = attn_rng_next(&st) % 2;
        check_random_case(attn_rng_next(&st), n, m, d, &pat, causal, use_mask, use_pad);
    }
}
END_TEST

START_TEST(dilated_window_with_every_mask_and_causal_alignment)
{
    size_t g[] = {3};
    attn_pattern pat = {.has_window = true,
                        .window_left = 3,
                        .window_right = 2,
                        .dilation = 2,
                        .global_tokens = g,
                        .n_global = 1};
    for (int c = 0; c < 3; c++) {
        check_random_case(11 + c, 150, 90, 8, &pat, (attn_causal)c, true, true);
        check_random_case(21 + c, 90, 150, 8, &pat, (attn_causal)c, true, true);
    }
}
END_TEST

/* ------------------------------------------------------------ sparse vs dense path */

/* Output only runs the sparse path; asking for weights runs the dense one: every
 * score kind (and softcap, bias) must agree between the two. */
START_TEST(sparse_path_matches_dense_path_for_every_score_kind)
{
    const size_t n = 300, m = 400, d = 6, da = 5; /* width 64 + 10 + 2 + 64 < m: sparse */
    uint64_t st = 99 + (uint64_t)_i;
    float *q = malloc(n * d * sizeof(float)), *k = malloc(m * d * sizeof(float)),
          *v = malloc(m * d * sizeof(float)), *w = malloc(2 * d * d * sizeof(float)),
          *w1 = malloc(da * d * sizeof(float)), *w2 = malloc(da * d * sizeof(float)),
          *va = malloc(da * sizeof(float)), *bias = malloc(n * m * sizeof(float));
    for (size_t x = 0; x < n * d; x++)
        q[x] = frand(&st);
    for (size_t x = 0; x < m * d; x++) {
        k[x] = frand(&st);
        v[x] = frand(&st);
    }
    for (size_t x = 0; x < 2 * d * d; x++)
        w[x] = frand(&st);
    for (size_t x = 0; x < da * d; x++) {
        w1[x] = frand(&st);
        w2[x] = frand(&st);
    }
    for (size_t x = 0; x < da; x++)
        va[x] = frand(&st);
    for (size_t x = 0; x < n * m; x++)
        bias[x] = frand(&st);
    size_t g[] = {7, 150};
    attn_pattern pat = {.has_window = true,
                        .window_left = 5,
                        .window_right = 2,
                        .block_size = 6,
                        .random = 1,
                        .seed = 3,
                        .global_tokens = g,
                        .n_global = 2};
    attn_params p = {.score = (attn_score)_i,
                     .softcap = _i == 0 ? 2.0f : 0.0f,
                     .w = w,
                     .w1 = w1,
                     .w2 = w2,
                     .v = va,
                     .da = da};
    if (_i == ATTN_SCORE_CONCAT)
        p.w = w; /* [da][2d] uses the first da * 2d floats */
    p.masks.pattern = &pat;
    p.masks.bias = bias;
    p.masks.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    float *o1 = malloc(n * d * sizeof(float)), *o2 = malloc(n * d * sizeof(float)),
          *wt = malloc(n * m * sizeof(float)), *s1 = malloc(n * m * sizeof(float)),
          *s2 = malloc(n * m * sizeof(float));
    attn_ws *ws = attn_ws_create(NULL);
    attn_result r1, r2;
    attn_outputs a = {.output = o1, .weights = wt, .scores = s1}, b = {.output = o2, .scores = s2};
    ck_assert_int_eq(attn_forward(ws, &p, n, m, d, d, d, q, k, v, &a, &r1), ATTN_OK);
    ck_assert_int_eq(attn_forward(ws, &p, n, m, d, d, d, q, k, v, &b, &r2), ATTN_OK);
    ck_assert_uint_eq(r1.n_allowed_pairs, r2.n_allowed_pairs);
    ck_assert_uint_eq(r1.n_empty_rows, r2.n_empty_rows);
    for (size_t x = 0; x < n * d; x++)
        ck_assert_msg(fabs(o1[x] - o2[x]) < 1e-5, "score %d output[%zu] %g vs %g", _i, x, o1[x],
                      o2[x]);
    for (size_t x = 0; x < n * m; x++)
        ck_assert_msg(s1[x] == s2[x] || fabs(s1[x] - s2[x]) < 1e-5, "score %d scores[%zu]", _i, x);
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
    free(w);
    free(w1);
    free(w2);
    free(va);
    free(bias);
    free(o1);
    free(o2);
    free(wt);
    free(s1);
    free(s2);
}
END_TEST

/* The sliding-window fast path (a window and nothing else, contiguous key
 * band) against the dense path: asymmetric windows, every causal mode, key
 * padding, an [n][m] bias and a relative bias, n < m and n > m. */
START_TEST(window_band_fast_path_matches_dense_path)
{
    static const int64_t win[4][2] = {{0, 0}, {3, 1}, {1, 4}, {10, 10}};
    const size_t shapes[2][2] = {{200, 300}, {300, 200}};
    const size_t n = shapes[_i % 2][0], m = shapes[_i % 2][1], d = 8;
    const attn_causal causal = (attn_causal)((_i / 2) % 3);
    uint64_t st = 7 + (uint64_t)_i;
    float *q = malloc(n * d * sizeof(float)), *k = malloc(m * d * sizeof(float)),
          *v = malloc(m * d * sizeof(float)), *bias = malloc(n * m * sizeof(float)),
          *rel = malloc((n + m - 1) * sizeof(float));
    uint8_t *kpm = calloc(m, 1);
    for (size_t x = 0; x < n * d; x++)
        q[x] = frand(&st);
    for (size_t x = 0; x < m * d; x++) {
        k[x] = frand(&st);
        v[x] = frand(&st);
    }
    for (size_t x = 0; x < n * m; x++)
        bias[x] = frand(&st);
    for (size_t x = 0; x < n + m - 1; x++)
        rel[x] = frand(&st);
    for (size_t j = 0; j < m; j += 7)
        kpm[j] = 1;
    float *o1 = malloc(n * d * sizeof(float)), *o2 = malloc(n * d * sizeof(float)),
          *wt = malloc(n * m * sizeof(float));
    attn_ws *ws = attn_ws_create(NULL);
    for (int w = 0; w < 4; w++) {
        attn_pattern pat = {.has_window = true, .window_left = win[w][0],
                            .window_right = win[w][1]};
        attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
        p.masks.pattern = &pat;
        p.masks.causal = causal;
        p.masks.key_padding = kpm;
        p.masks.bias = (w & 1) ? bias : NULL;
        p.masks.rel_bias = (w & 2) ? rel : NULL;
        attn_result r1, r2;
        attn_outputs a = {.output = o1, .weights = wt}, b = {.output = o2};
        ck_assert_int_eq(attn_forward(ws, &p, n, m, d, d, d, q, k, v, &a, &r1), ATTN_OK);
        ck_assert_int_eq(attn_forward(ws, &p, n, m, d, d, d, q, k, v, &b, &r2), ATTN_OK);
        ck_assert_uint_eq(r1.n_allowed_pairs, r2.n_allowed_pairs);
        ck_assert_uint_eq(r1.n_empty_rows, r2.n_empty_rows);
        for (size_t x = 0; x < n * d; x++)
            ck_assert_msg(fabs(o1[x] - o2[x]) < 1e-5, "case %d window %d output[%zu] %g vs %g",
                          _i, w, x, o1[x], o2[x]);
    }
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
    free(bias);
    free(rel);
    free(kpm);
    free(o1);
    free(o2);
    free(wt);
}
END_TEST

/* Multi-head with a pattern, bias_k/zero-attention columns and a head average
 * built by the sparse path agrees with the dense path. */
START_TEST(mha_pattern_sparse_matches_dense)
{
    const size_t E = 16, n = 150, m = 150;
    attn_mha_config c = {.embed_dim = E, .num_heads = 4, .num_kv_heads = 2, .add_zero_attn = true};
    c.attn.score = ATTN_SCORE_SCALED_DOT;
    attn_pattern pat = {.has_window = true, .window_left = 3, .window_right = 3, .dilation = 2};
    c.attn.masks.pattern = &pat;
    c.attn.masks.causal = ATTN_CAUSAL_TOP_LEFT;
    attn_mha_weights w;
    float *store = NULL;
    ck_assert_int_eq(attn_mha_init_seeded(&c, 5, true, true, &w, &store), ATTN_OK);
    const size_t mk = attn_mha_keys(&c, &w, m);
    ck_assert_uint_eq(mk, m + 2);
    uint64_t st = 8;
    float *x = malloc(n * E * sizeof(float));
    for (size_t i = 0; i < n * E; i++)
        x[i] = frand(&st);
    float *o1 = malloc(n * E * sizeof(float)), *o2 = malloc(n * E * sizeof(float)),
          *wt = malloc(4 * n * mk * sizeof(float)), *a1 = malloc(n * mk * sizeof(float)),
          *a2 = malloc(n * mk * sizeof(float));
    attn_ws *ws = attn_ws_create(NULL);
    attn_mha_outputs oa = {.output = o1, .weights = wt, .weights_avg = a1};
    attn_mha_outputs ob = {.output = o2, .weights_avg = a2};
    ck_assert_int_eq(attn_mha_forward(ws, &c, &w, n, m, x, x, x, &oa, NULL), ATTN_OK);
    ck_assert_int_eq(attn_mha_forward(ws, &c, &w, n, m, x, x, x, &ob, NULL), ATTN_OK);
    for (size_t i = 0; i < n * E; i++)
        ck_assert_msg(fabs(o1[i] - o2[i]) < 1e-5, "output[%zu]", i);
    for (size_t i = 0; i < n * mk; i++)
        ck_assert_msg(fabs(a1[i] - a2[i]) < 1e-5, "weights_avg[%zu]", i);
    /* The appended columns stay allowed; the pattern removes the rest. */
    ck_assert(a1[5 * mk + m] > 0.0f && a1[5 * mk + m + 1] > 0.0f);
    ck_assert(a1[5 * mk + 4] == 0.0f && a1[20 * mk + 3] == 0.0f);
    attn_ws_free(ws);
    attn_free_buffer(store);
    free(x);
    free(o1);
    free(o2);
    free(wt);
    free(a1);
    free(a2);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(invalid_patterns_are_rejected)
{
    size_t g[] = {0, 9};
    attn_pattern ok = {.has_window = true, .window_left = 1, .window_right = 1};
    ck_assert_int_eq(attn_pattern_check(&ok, 8, 8), ATTN_OK);
    ck_assert_int_eq(attn_pattern_check(NULL, 8, 8), ATTN_ERR_INVALID);
    attn_pattern none = {0};
    ck_assert_int_eq(attn_pattern_check(&none, 8, 8), ATTN_ERR_INVALID);
    attn_pattern p = ok;
    p.window_left = -2;
    ck_assert_int_eq(attn_pattern_check(&p, 8, 8), ATTN_ERR_INVALID);
    p = ok;
    p.window_right = -5;
    ck_assert_int_eq(attn_pattern_check(&p, 8, 8), ATTN_ERR_INVALID);
    p = ok;
    p.dilation = -1;
    ck_assert_int_eq(attn_pattern_check(&p, 8, 8), ATTN_ERR_INVALID);
    attn_pattern dil_only = {.dilation = 2, .stride = 2};
    ck_assert_int_eq(attn_pattern_check(&dil_only, 8, 8), ATTN_ERR_INVALID);
    attn_pattern s = {.stride = -1};
    ck_assert_int_eq(attn_pattern_check(&s, 8, 8), ATTN_ERR_INVALID);
    attn_pattern b = {.block_size = -3};
    ck_assert_int_eq(attn_pattern_check(&b, 8, 8), ATTN_ERR_INVALID);
    attn_pattern r = {.random = -1};
    ck_assert_int_eq(attn_pattern_check(&r, 8, 8), ATTN_ERR_INVALID);
    attn_pattern gl = {.global_tokens = g, .n_global = 2};
    ck_assert_int_eq(attn_pattern_check(&gl, 8, 8), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pattern_check(&gl, 10, 8), ATTN_OK);
    attn_pattern gnull = {.n_global = 1};
    ck_assert_int_eq(attn_pattern_check(&gnull, 8, 8), ATTN_ERR_INVALID);

    /* The engine reports the same errors. */
    float x[64] = {0};
    attn_ws *ws = attn_ws_create(NULL);
    attn_params prm = {.score = ATTN_SCORE_SCALED_DOT};
    prm.masks.pattern = &s;
    attn_outputs o = {.output = x};
    ck_assert_int_eq(attn_forward(ws, &prm, 8, 8, 1, 1, 1, x, x, x, &o, NULL), ATTN_ERR_INVALID);
    prm.masks.pattern = &gl;
    ck_assert_int_eq(attn_forward(ws, &prm, 8, 8, 1, 1, 1, x, x, x, &o, NULL), ATTN_ERR_INVALID);
    uint8_t al[64];
    ck_assert_int_eq(attn_pattern_allowed(&ok, (attn_causal)7, 8, 8, al), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pattern_allowed(&ok, ATTN_CAUSAL_NONE, 8, 8, NULL), ATTN_ERR_INVALID);
    attn_ws_free(ws);
}
END_TEST

/* ------------------------------------------------------------ memory */

START_TEST(window_without_weights_reserves_block_times_band)
{
    const size_t n = 4096, d = 16;
    float *q = malloc(n * d * sizeof(float)), *out = malloc(n * d * sizeof(float));
    uint64_t st = 5;
    for (size_t x = 0; x < n * d; x++)
        q[x] = frand(&st);
    attn_pattern pat = {.has_window = true, .window_left = 16, .window_right = 16};
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
    p.masks.pattern = &pat;
    attn_ws *ws = attn_ws_create(NULL);
    attn_outputs o = {.output = out};
    attn_result res;
    ck_assert_int_eq(attn_forward(ws, &p, n, n, d, d, d, q, q, q, &o, &res), ATTN_OK);
    /* 64 rows x (64 + 32) band plus gathered keys/values: tens of KB, not n * n floats (64 MB). */
    ck_assert_msg(attn_ws_reserved(ws) < 256 * 1024, "reserved %zu bytes", attn_ws_reserved(ws));
    ck_assert_uint_eq(res.n_allowed_pairs, n * 33 - 2 * (16 * 17 / 2));
    attn_ws_free(ws);
    free(q);
    free(out);
}
END_TEST

static Suite *pattern_suite(void)
{
    Suite *s = suite_create("engine_pattern");
    TCase *tc = tcase_create("pattern");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, golden_pattern_cases_match_allowed_weights_output, 0, n_cases());
    tcase_add_loop_test(tc, random_shapes_match_naive_reference, 0, 12);
    tcase_add_test(tc, dilated_window_with_every_mask_and_causal_alignment);
    tcase_add_loop_test(tc, sparse_path_matches_dense_path_for_every_score_kind, 0, 5);
    tcase_add_loop_test(tc, window_band_fast_path_matches_dense_path, 0, 6);
    tcase_add_test(tc, mha_pattern_sparse_matches_dense);
    tcase_add_test(tc, invalid_patterns_are_rejected);
    tcase_add_test(tc, window_without_weights_reserves_block_times_band);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    g_root = load_json(ATTN_TEST_DATA "/pattern_cases.json");
    if (!g_root) {
        fprintf(stderr, "cannot read %s\n", ATTN_TEST_DATA "/pattern_cases.json");
        return EXIT_FAILURE;
    }
    if (n_cases() < 8) {
        fprintf(stderr, "golden file has fewer cases than expected\n");
        cJSON_Delete(g_root);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(pattern_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cJSON_Delete(g_root);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
