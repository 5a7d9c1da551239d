/* test_engine_positional.c - positional information: golden tables, RoPE, ALiBi/T5 bias, Shaw. */
#include "attn.h"

#include <check.h>
#include <cjson/cJSON.h>

#include "util_golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *g_root;

/* The i-th golden case of a kind (NULL when there are fewer). */
static const cJSON *golden(const char *kind, int nth)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(g_root, "cases"))
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(c, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, kind) == 0 && nth-- == 0)
            return c;
    }
    return NULL;
}

static int json_int(const cJSON *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    ck_assert_msg(cJSON_IsNumber(v), "%s missing", key);
    return v->valueint;
}

static void expect_close(const float *got, const double *want, size_t count, double tol,
                         const char *what)
{
    for (size_t i = 0; i < count; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol, "%s[%zu]: %.8g, expected %.8g", what, i,
                      (double)got[i], want[i]);
}

/* Deterministic values in [-1, 1). */
static void fill(float *x, size_t count, uint64_t seed)
{
    uint64_t st = seed;
    for (size_t i = 0; i < count; i++)
        x[i] = 2.0f * attn_rng_uniform(&st) - 1.0f;
}

/* ------------------------------------------------------------- golden tables */

START_TEST(sinusoidal_golden_table_matches)
{
    const cJSON *c = golden("sinusoidal", 0);
    ck_assert(c != NULL);
    size_t len = (size_t)json_int(c, "length"), dim = (size_t)json_int(c, "dim");
    tensor want = tensor_get(cJSON_GetObjectItemCaseSensitive(c, "expected"), "pe");
    ck_assert_uint_eq(want.count, len * dim);
    float *pe = malloc(len * dim * sizeof *pe);
    ck_assert_int_eq(attn_pos_sinusoidal(len, dim, 0, 10000.0, pe), ATTN_OK);
    expect_close(pe, want.x, want.count, 1e-6, "pe");
    /* an offset table is the tail of a longer one */
    float *tail = malloc(10 * dim * sizeof *tail);
    ck_assert_int_eq(attn_pos_sinusoidal(10, dim, len - 10, 10000.0, tail), ATTN_OK);
    expect_close(tail, want.x + (len - 10) * dim, 10 * dim, 1e-6, "pe offset");
    free(tail);
    free(pe);
    free(want.x);
}
END_TEST

START_TEST(alibi_golden_slopes_match_for_every_head_count)
{
    int n_cases = 0;
    for (const cJSON *c; (c = golden("alibi", n_cases)) != NULL; n_cases++) {
        size_t H = (size_t)json_int(c, "num_heads");
        tensor want = tensor_get(cJSON_GetObjectItemCaseSensitive(c, "expected"), "slopes");
        ck_assert_uint_eq(want.count, H);
        float slopes[64];
        ck_assert_int_eq(attn_alibi_slopes(H, slopes), ATTN_OK);
        expect_close(slopes, want.x, H, 1e-7, "slopes");
        free(want.x);
    }
    ck_assert_int_ge(n_cases, 3);
}
END_TEST

START_TEST(t5_golden_buckets_match_both_directions)
{
    int n_cases = 0;
    for (const cJSON *c; (c = golden("t5_bucket", n_cases)) != NULL; n_cases++) {
        bool bi = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "bidirectional"));
        int nb = json_int(c, "num_buckets"), md = json_int(c, "max_distance");
        tensor rel = tensor_get(c, "relative_positions");
        tensor want = tensor_get(cJSON_GetObjectItemCaseSensitive(c, "expected"), "buckets");
        ck_assert_uint_eq(rel.count, want.count);
        for (size_t i = 0; i < rel.count; i++) {
            int64_t b = attn_t5_bucket((int64_t)rel.x[i], bi, nb, md);
            ck_assert_msg(b == (int64_t)want.x[i], "rel %g (bidirectional %d): bucket %lld, "
                          "expected %g", rel.x[i], bi, (long long)b, want.x[i]);
        }
        free(rel.x);
        free(want.x);
    }
    ck_assert_int_ge(n_cases, 2);
}
END_TEST

START_TEST(rope_golden_rotate_half_matches_per_head)
{
    const cJSON *c = golden("rope", 0);
    ck_assert(c != NULL);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(c, "query");
    size_t H = (size_t)cJSON_GetArraySize(q), n = (size_t)cJSON_GetArraySize(q->child),
           dh = (size_t)cJSON_GetArraySize(q->child->child);
    double base = cJSON_GetObjectItemCaseSensitive(c, "base")->valuedouble;
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    static const char *const in[2] = {"query", "key"}, *const out[2] = {"query_rotated",
                                                                          "key_rotated"};
    for (int t = 0; t < 2; t++) {
        tensor x = tensor_get(c, in[t]), want = tensor_get(exp, out[t]);
        float *xf = to_f32(&x);
        for (size_t h = 0; h < H; h++)
            ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, base, n, dh, 0, xf + h * n * dh, dh),
                             ATTN_OK);
        expect_close(xf, want.x, want.count, 1e-5, out[t]);
        free(xf);
        free(x.x);
        free(want.x);
    }
}
END_TEST

/* ------------------------------------------------------------- RoPE properties */

START_TEST(rope_interleaved_is_half_on_permuted_columns)
{
    enum { N = 5, D = 8 };
    float a[N * D], b[N * D];
    fill(a, N * D, 3);
    /* b holds a's columns reordered so interleaved pair (2k, 2k+1) = half pair (k, k + D/2) */
    for (size_t r = 0; r < N; r++)
        for (size_t k = 0; k < D / 2; k++) {
            b[r * D + 2 * k] = a[r * D + k];
            b[r * D + 2 * k + 1] = a[r * D + k + D / 2];
        }
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, 10000.0, N, D, 0, a, D), ATTN_OK);
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_INTERLEAVED, 10000.0, N, D, 0, b, D), ATTN_OK);
    for (size_t r = 0; r < N; r++)
        for (size_t k = 0; k < D / 2; k++) {
            ck_assert_float_eq_tol(b[r * D + 2 * k], a[r * D + k], 1e-6);
            ck_assert_float_eq_tol(b[r * D + 2 * k + 1], a[r * D + k + D / 2], 1e-6);
        }
}
END_TEST

START_TEST(rope_scores_depend_on_relative_position_only)
{
    /* q at position p and k at position p + 3 give the same dot product for every p. */
    enum { D = 16 };
    float q0[D], k0[D];
    fill(q0, D, 5);
    fill(k0, D, 6);
    double first = 0;
    for (size_t p = 0; p < 20; p += 7) {
        float q[D], k[D];
        memcpy(q, q0, sizeof q);
        memcpy(k, k0, sizeof k);
        ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, 10000.0, 1, D, p, q, D), ATTN_OK);
        ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, 10000.0, 1, D, p + 3, k, D), ATTN_OK);
        double dot = 0;
        for (size_t x = 0; x < D; x++)
            dot += (double)q[x] * k[x];
        if (p == 0)
            first = dot;
        ck_assert_msg(fabs(dot - first) < 1e-5, "position %zu: %g vs %g", p, dot, first);
    }
}
END_TEST

START_TEST(rope_in_attention_equals_rotating_inputs_first)
{
    enum { N = 6, M = 9, D = 8, DV = 3 };
    float q[N * D], k[M * D], v[M * DV], qr[N * D], kr[M * D];
    fill(q, N * D, 11);
    fill(k, M * D, 12);
    fill(v, M * DV, 13);
    memcpy(qr, q, sizeof q);
    memcpy(kr, k, sizeof k);
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_INTERLEAVED, 500.0, N, D, 0, qr, D), ATTN_OK);
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_INTERLEAVED, 500.0, M, D, 0, kr, D), ATTN_OK);
    attn_ws *ws = attn_ws_create(NULL);
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
    p.masks.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    float o_ref[N * DV], w_ref[N * M], o[N * DV], w[N * M], q_before[N * D];
    attn_outputs ref = {.output = o_ref, .weights = w_ref}, got = {.output = o, .weights = w};
    ck_assert_int_eq(attn_forward(ws, &p, N, M, D, D, DV, qr, kr, v, &ref, NULL), ATTN_OK);
    p.pos.rope = true;
    p.pos.rope_style = ATTN_ROPE_INTERLEAVED;
    p.pos.rope_base = 500.0f;
    memcpy(q_before, q, sizeof q);
    ck_assert_int_eq(attn_forward(ws, &p, N, M, D, D, DV, q, k, v, &got, NULL), ATTN_OK);
    ck_assert_msg(memcmp(q, q_before, sizeof q) == 0, "the caller's query was modified");
    for (size_t i = 0; i < N * DV; i++)
        ck_assert_float_eq_tol(o[i], o_ref[i], 1e-6);
    for (size_t i = 0; i < N * M; i++)
        ck_assert_float_eq_tol(w[i], w_ref[i], 1e-6);
    /* odd widths are refused */
    ck_assert_int_eq(attn_forward(ws, &p, N, M, D - 1, D - 1, DV, q, k, v, &got, NULL),
                     ATTN_ERR_SHAPE);
    attn_ws_free(ws);
}
END_TEST

START_TEST(rope_in_multihead_rotates_each_head_slice)
{
    enum { N = 5, E = 8, H = 2, HD = E / H };
    float x[N * E], w_in[3 * E * E], w_out[E * E];
    fill(x, N * E, 21);
    fill(w_in, 3 * E * E, 22);
    fill(w_out, E * E, 23);
    attn_mha_weights w = {.q_proj = w_in, .k_proj = w_in + E * E, .v_proj = w_in + 2 * E * E,
                          .out_proj = w_out};
    attn_mha_config c = {.embed_dim = E, .num_heads = H};
    c.attn.score = ATTN_SCORE_SCALED_DOT;
    c.attn.pos.rope = true;
    float q[N * E], k[N * E], wts[H * N * N];
    attn_mha_outputs out = {.q = q, .k = k, .weights = wts};
    attn_ws *ws = attn_ws_create(NULL);
    ck_assert_int_eq(attn_mha_forward(ws, &c, &w, N, N, x, x, x, &out, NULL), ATTN_OK);
    /* reference: project, rotate each head's slice, softmax(q k^T / sqrt(hd)) */
    float qp[N * E], kp[N * E];
    for (size_t i = 0; i < N; i++)
        for (size_t o = 0; o < E; o++) {
            double sq = 0, sk = 0;
            for (size_t t = 0; t < E; t++) {
                sq += (double)x[i * E + t] * w_in[o * E + t];
                sk += (double)x[i * E + t] * w_in[(E + o) * E + t];
            }
            qp[i * E + o] = (float)sq;
            kp[i * E + o] = (float)sk;
        }
    for (size_t h = 0; h < H; h++) {
        attn_rope_apply(ATTN_ROPE_HALF, 10000.0, N, HD, 0, qp + h * HD, E);
        attn_rope_apply(ATTN_ROPE_HALF, 10000.0, N, HD, 0, kp + h * HD, E);
    }
    for (size_t i = 0; i < N * E; i++) {
        ck_assert_float_eq_tol(q[i], qp[i], 1e-5);
        ck_assert_float_eq_tol(k[i], kp[i], 1e-5);
    }
    for (size_t h = 0; h < H; h++)
        for (size_t i = 0; i < N; i++) {
            double s[N], mx = -INFINITY, sum = 0;
            for (size_t j = 0; j < N; j++) {
                s[j] = 0;
                for (size_t t = 0; t < HD; t++)
                    s[j] += (double)qp[i * E + h * HD + t] * kp[j * E + h * HD + t];
                s[j] /= sqrt((double)HD);
                mx = s[j] > mx ? s[j] : mx;
            }
            for (size_t j = 0; j < N; j++)
                sum += exp(s[j] - mx);
            for (size_t j = 0; j < N; j++)
                ck_assert_float_eq_tol(wts[(h * N + i) * N + j], exp(s[j] - mx) / sum, 1e-5);
        }
    /* an odd head width is refused */
    attn_mha_config c3 = c;
    attn_mha_outputs none = {0};
    c3.num_heads = 4; /* hd = 2: fine */
    ck_assert_int_eq(attn_mha_forward(ws, &c3, &w, N, N, x, x, x, &none, NULL), ATTN_OK);
    c3.embed_dim = 6;
    c3.num_heads = 2; /* hd = 3 */
    ck_assert_int_eq(attn_mha_forward(ws, &c3, &w, 1, 1, x, x, x, &none, NULL), ATTN_ERR_SHAPE);
    attn_ws_free(ws);
}
END_TEST

/* ------------------------------------------------------------- relative bias and Shaw */

/* Naive single head in double: scale * q.k (+ Shaw) + bias[i][j], masks, softmax, P (V + Shaw). */
static void naive(size_t n, size_t m, size_t d, size_t dv, const float *q, const float *k,
                  const float *v, const double *bias, const uint8_t *allowed, size_t clip,
                  const float *sk, const float *sv, double *out, double *w)
{
    const double scale = 1.0 / sqrt((double)d);
    for (size_t i = 0; i < n; i++) {
        double s[64], mx = -INFINITY, sum = 0;
        for (size_t j = 0; j < m; j++) {
            long rel = (long)j - (long)i;
            rel = rel < -(long)clip ? -(long)clip : rel > (long)clip ? (long)clip : rel;
            const size_t c = (size_t)(rel + (long)clip);
            double dot = 0;
            for (size_t t = 0; t < d; t++)
                dot += (double)q[i * d + t] * (k[j * d + t] + (sk ? sk[c * d + t] : 0.0f));
            s[j] = allowed[i * m + j] ? dot * scale + (bias ? bias[i * m + j] : 0) : -INFINITY;
            mx = s[j] > mx ? s[j] : mx;
        }
        for (size_t j = 0; j < m; j++)
            sum += allowed[i * m + j] ? exp(s[j] - mx) : 0;
        for (size_t x = 0; x < dv; x++)
            out[i * dv + x] = 0;
        for (size_t j = 0; j < m; j++) {
            w[i * m + j] = allowed[i * m + j] ? exp(s[j] - mx) / sum : 0;
            long rel = (long)j - (long)i;
            rel = rel < -(long)clip ? -(long)clip : rel > (long)clip ? (long)clip : rel;
            const size_t c = (size_t)(rel + (long)clip);
            for (size_t x = 0; x < dv; x++)
                out[i * dv + x] += w[i * m + j] * (v[j * dv + x] + (sv ? sv[c * dv + x] : 0.0f));
        }
    }
}

START_TEST(rel_bias_equals_the_full_bias_matrix_dense_and_sparse)
{
    enum { N = 7, M = 20, D = 4, DV = 3 }; /* M > N + window: the sparse path runs */
    float q[N * D], k[M * D], v[M * DV], rel[N + M - 1], full[N * M];
    fill(q, N * D, 31);
    fill(k, M * D, 32);
    fill(v, M * DV, 33);
    float slope = 0.25f;
    for (long t = -(N - 1); t <= M - 1; t++)
        rel[t + N - 1] = -slope * (float)labs(t); /* ALiBi, symmetric */
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < M; j++)
            full[i * M + j] = rel[j - i + N - 1];
    attn_ws *ws = attn_ws_create(NULL);
    attn_pattern pat = {.has_window = true, .window_left = 2, .window_right = 1};
    for (int sparse = 0; sparse < 2; sparse++) {
        attn_params a = {.score = ATTN_SCORE_SCALED_DOT}, b = a;
        a.masks.bias = full;
        b.masks.rel_bias = rel;
        a.masks.causal = b.masks.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
        if (sparse)
            a.masks.pattern = b.masks.pattern = &pat;
        float oa[N * DV], ob[N * DV], wa[N * M];
        attn_outputs outa = {.output = oa, .weights = wa}, outb = {.output = ob};
        ck_assert_int_eq(attn_forward(ws, &a, N, M, D, D, DV, q, k, v, &outa, NULL), ATTN_OK);
        /* without weights (sparse path when the pattern allows) */
        ck_assert_int_eq(attn_forward(ws, &b, N, M, D, D, DV, q, k, v, &outb, NULL), ATTN_OK);
        for (size_t i = 0; i < N * DV; i++)
            ck_assert_float_eq_tol(ob[i], oa[i], 1e-6);
    }
    attn_ws_free(ws);
}
END_TEST

START_TEST(shaw_relative_matches_naive_with_masks_and_clip)
{
    enum { N = 9, M = 12, D = 4, DV = 5 };
    float q[N * D], k[M * D], v[M * DV];
    fill(q, N * D, 41);
    fill(k, M * D, 42);
    fill(v, M * DV, 43);
    attn_ws *ws = attn_ws_create(NULL);
    for (size_t clip = 0; clip <= 4; clip += 2) {
        for (int tables = 1; tables <= 3; tables++) { /* keys only, values only, both */
            const size_t nb = 2 * clip + 1;
            float *sk = malloc(nb * D * sizeof *sk), *sv = malloc(nb * DV * sizeof *sv);
            fill(sk, nb * D, 50 + clip);
            fill(sv, nb * DV, 60 + clip);
            uint8_t allowed[N * M];
            uint8_t kpm[M] = {0};
            kpm[3] = 1;
            for (size_t i = 0; i < N; i++)
                for (size_t j = 0; j < M; j++)
                    allowed[i * M + j] = j <= i + 1 && !kpm[j];
            attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
            p.masks.key_padding = kpm;
            uint8_t mask[N * M];
            for (size_t x = 0; x < N * M; x++)
                mask[x] = (x % M) <= (x / M) + 1;
            p.masks.mask = mask;
            p.pos.shaw_clip = clip;
            p.pos.shaw_k = tables & 1 ? sk : NULL;
            p.pos.shaw_v = tables & 2 ? sv : NULL;
            double ro[N * DV], rw[N * M];
            naive(N, M, D, DV, q, k, v, NULL, allowed, clip, p.pos.shaw_k, p.pos.shaw_v, ro, rw);
            float o[N * DV], w[N * M], o2[N * DV];
            attn_outputs out = {.output = o, .weights = w}, out2 = {.output = o2};
            ck_assert_int_eq(attn_forward(ws, &p, N, M, D, D, DV, q, k, v, &out, NULL), ATTN_OK);
            ck_assert_int_eq(attn_forward(ws, &p, N, M, D, D, DV, q, k, v, &out2, NULL),
                             ATTN_OK);
            expect_close(o, ro, N * DV, 1e-5, "shaw output");
            expect_close(o2, ro, N * DV, 1e-5, "shaw output without weights");
            expect_close(w, rw, N * M, 1e-5, "shaw weights");
            free(sk);
            free(sv);
        }
    }
    /* Shaw needs a dot-product score */
    float t[3 * D] = {0};
    attn_params g = {.score = ATTN_SCORE_GENERAL, .w = t};
    g.pos.shaw_clip = 1;
    g.pos.shaw_k = t;
    float o[N * DV];
    attn_outputs out = {.output = o};
    ck_assert_int_eq(attn_forward(ws, &g, N, M, D, D, DV, q, k, v, &out, NULL),
                     ATTN_ERR_UNSUPPORTED);
    attn_ws_free(ws);
}
END_TEST

START_TEST(positional_functions_refuse_bad_arguments)
{
    float x[8];
    ck_assert_int_eq(attn_pos_sinusoidal(2, 0, 0, 10000.0, x), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pos_sinusoidal(2, 4, 0, 1.0, x), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pos_sinusoidal(2, 4, 0, NAN, x), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pos_sinusoidal(2, 4, 0, 10000.0, NULL), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pos_sinusoidal(0, 4, 0, 10000.0, NULL), ATTN_OK);
    ck_assert_int_eq(attn_alibi_slopes(0, x), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_alibi_slopes(3, NULL), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_t5_bucket(5, true, 2, 128), -1);
    ck_assert_int_eq(attn_t5_bucket(5, false, 1, 128), -1);
    ck_assert_int_eq(attn_t5_bucket(5, false, 32, 8), -1);
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, 10000.0, 1, 3, 0, x, 3), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, 10000.0, 1, 4, 0, x, 2), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_rope_apply((attn_rope_style)7, 10000.0, 1, 4, 0, x, 4),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_rope_apply(ATTN_ROPE_HALF, 0.5, 1, 4, 0, x, 4), ATTN_ERR_INVALID);
}
END_TEST

START_TEST(alibi_slopes_of_powers_of_two_are_geometric)
{
    float s[16];
    ck_assert_int_eq(attn_alibi_slopes(16, s), ATTN_OK);
    for (size_t h = 0; h < 16; h++)
        ck_assert_float_eq_tol(s[h], exp2(-0.5 * (double)(h + 1)), 1e-7);
}
END_TEST

static Suite *positional_suite(void)
{
    Suite *s = suite_create("engine_positional");
    TCase *g = tcase_create("golden");
    tcase_add_test(g, sinusoidal_golden_table_matches);
    tcase_add_test(g, alibi_golden_slopes_match_for_every_head_count);
    tcase_add_test(g, t5_golden_buckets_match_both_directions);
    tcase_add_test(g, rope_golden_rotate_half_matches_per_head);
    suite_add_tcase(s, g);
    TCase *p = tcase_create("properties");
    tcase_add_test(p, rope_interleaved_is_half_on_permuted_columns);
    tcase_add_test(p, rope_scores_depend_on_relative_position_only);
    tcase_add_test(p, rope_in_attention_equals_rotating_inputs_first);
    tcase_add_test(p, rope_in_multihead_rotates_each_head_slice);
    tcase_add_test(p, rel_bias_equals_the_full_bias_matrix_dense_and_sparse);
    tcase_add_test(p, shaw_relative_matches_naive_with_masks_and_clip);
    tcase_add_test(p, positional_functions_refuse_bad_arguments);
    tcase_add_test(p, alibi_slopes_of_powers_of_two_are_geometric);
    suite_add_tcase(s, p);
    return s;
}

int main(void)
{
    g_root = load_json(ATTN_TEST_DATA "/tensor_cases.json");
    if (!g_root) {
        fprintf(stderr, "cannot read %s\n", ATTN_TEST_DATA "/tensor_cases.json");
        return 1;
    }
    SRunner *sr = srunner_create(positional_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cJSON_Delete(g_root);
    return failed == 0 ? 0 : 1;
}
