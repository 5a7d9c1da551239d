/* test_engine_favor.c - FAVOR+ and chunked linear attention against naive double references. */
#include "attn.h"

#include <check.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ test-local helpers */

/* The tests draw their own inputs, so they do not depend on the code under test. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static float *rand_floats(uint64_t *s, size_t count, double lo, double hi)
{
    float *x = malloc((count ? count : 1) * sizeof(float));
    ck_assert(x != NULL);
    for (size_t i = 0; i < count; i++)
        x[i] = (float)(lo + (hi - lo) * (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0));
    return x;
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);
    ck_assert(p != NULL);
    return p;
}

/* Last key + 1 query i sees (the contract's causal alignments, over m keys). */
static size_t ref_limit(attn_causal cz, size_t i, size_t n, size_t m)
{
    long long lim = (long long)m;
    if (cz == ATTN_CAUSAL_TOP_LEFT)
        lim = (long long)i + 1;
    else if (cz == ATTN_CAUSAL_BOTTOM_RIGHT)
        lim = (long long)i + 1 + (long long)m - (long long)n;
    if (lim < 0)
        lim = 0;
    return lim > (long long)m ? m : (size_t)lim;
}

/* elu + 1 features in double: f [rows][d]. */
static double *ref_elu(const float *x, size_t rows, size_t ldx, size_t d)
{
    double *f = xcalloc(rows * d, sizeof *f);
    for (size_t i = 0; i < rows; i++)
        for (size_t c = 0; c < d; c++) {
            double v = x[i * ldx + c];
            f[i * d + c] = v > 0 ? v + 1 : exp(v);
        }
    return f;
}

/*
 * FAVOR+ features in double, written from the formula in attn.h: exponents
 * e_f = w_f . x / d^(1/4) - |x|^2 / (2 sqrt d); queries subtract their row's
 * largest exponent, keys the largest over all keys not padded (pad [rows] or
 * NULL; rows at or past n_pad are never padding); then exp(.) / sqrt(r).
 */
static double *ref_favor(const float *x, size_t rows, size_t ldx, size_t d, const float *w,
                         size_t r, int is_query, const uint8_t *pad, size_t n_pad)
{
    double *f = xcalloc(rows * r, sizeof *f);
    const double a = pow((double)d, -0.25);
    double kmax = -INFINITY;
    for (size_t i = 0; i < rows; i++) {
        double sq = 0, rmax = -INFINITY;
        for (size_t c = 0; c < d; c++)
            sq += (double)x[i * ldx + c] * x[i * ldx + c];
        for (size_t t = 0; t < r; t++) {
            double dot = 0;
            for (size_t c = 0; c < d; c++)
                dot += (double)w[t * d + c] * x[i * ldx + c];
            f[i * r + t] = a * dot - 0.5 * a * a * sq;
            rmax = fmax(rmax, f[i * r + t]);
        }
        const int padded = pad && i < n_pad && pad[i];
        if (is_query)
            for (size_t t = 0; t < r; t++)
                f[i * r + t] -= rmax;
        else if (!padded)
            kmax = fmax(kmax, rmax);
    }
    for (size_t i = 0; i < rows; i++) {
        const int padded = !is_query && pad && i < n_pad && pad[i];
        for (size_t t = 0; t < r; t++) {
            double e = is_query ? f[i * r + t] : f[i * r + t] - kmax;
            f[i * r + t] = padded ? 0.0 : exp(e) / sqrt((double)r);
        }
    }
    return f;
}

/*
 * Naive O(n m F) linear attention from feature matrices fq [n][F], fk [m][F]:
 * w_ij = fq_i . fk_j / (sum over visible j + 1e-6), out = w v. Keys at or past
 * mm are always visible (appended rows); causal acts on the first mm.
 */
static void ref_linear(const double *fq, const double *fk, size_t n, size_t m, size_t mm, size_t F,
                       const float *v, size_t ldv, size_t dv, attn_causal cz, double *out,
                       double *wts)
{
    for (size_t i = 0; i < n; i++) {
        const size_t lim = ref_limit(cz, i, n, mm);
        double den = 1e-6;
        for (size_t j = 0; j < m; j++) {
            double dot = 0;
            if (j < lim || j >= mm)
                for (size_t f = 0; f < F; f++)
                    dot += fq[i * F + f] * fk[j * F + f];
            wts[i * m + j] = dot;
            den += dot;
        }
        int empty = 1;
        for (size_t j = 0; j < m; j++)
            empty &= wts[i * m + j] == 0;
        for (size_t j = 0; j < m; j++)
            wts[i * m + j] = empty ? 0 : wts[i * m + j] / den;
        for (size_t e = 0; e < dv; e++) {
            double acc = 0;
            for (size_t j = 0; j < m; j++)
                acc += wts[i * m + j] * v[j * ldv + e];
            out[i * dv + e] = acc;
        }
    }
}

/* |got - want| <= tol * (1 + |want|) everywhere. */
static void expect_close(const float *got, size_t ldg, const double *want, size_t rows, size_t cols,
                         double tol, const char *what)
{
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            double g = got[i * ldg + j], x = want[i * cols + j];
            ck_assert_msg(fabs(g - x) <= tol * (1 + fabs(x)), "%s[%zu][%zu]: %.9g, expected %.9g",
                          what, i, j, g, x);
        }
}

/* ------------------------------------------------------------ projection */

START_TEST(favor_projection_same_seed_same_matrix_other_seed_differs)
{
    attn_ws *ws = attn_ws_create(NULL);
    const size_t r = 70, d = 16;
    float *a = xcalloc(r * d, sizeof *a), *b = xcalloc(r * d, sizeof *b);
    float *c = xcalloc(r * d, sizeof *c);
    ck_assert_int_eq(attn_favor_projection(ws, r, d, 7, a), ATTN_OK);
    ck_assert_int_eq(attn_favor_projection(ws, r, d, 7, b), ATTN_OK);
    ck_assert_int_eq(attn_favor_projection(ws, r, d, 8, c), ATTN_OK);
    ck_assert(memcmp(a, b, r * d * sizeof *a) == 0);
    size_t same = 0;
    for (size_t x = 0; x < r * d; x++) {
        ck_assert(isfinite(a[x]));
        same += a[x] == c[x];
    }
    ck_assert_uint_lt(same, 3);
    free(a);
    free(b);
    free(c);
    attn_ws_free(ws);
}
END_TEST

START_TEST(favor_projection_rows_orthogonal_within_blocks_with_chi_lengths)
{
    attn_ws *ws = attn_ws_create(NULL);
    /* r = 2.5 blocks of d: two full blocks and one of 8 rows */
    const size_t d = 16, r = 40;
    float *w = xcalloc(r * d, sizeof *w);
    ck_assert_int_eq(attn_favor_projection(ws, r, d, 123, w), ATTN_OK);
    double max_cos_in = 0, max_cos_across = 0;
    for (size_t i = 0; i < r; i++)
        for (size_t j = 0; j < i; j++) {
            double dot = 0, ni = 0, nj = 0;
            for (size_t c = 0; c < d; c++) {
                dot += (double)w[i * d + c] * w[j * d + c];
                ni += (double)w[i * d + c] * w[i * d + c];
                nj += (double)w[j * d + c] * w[j * d + c];
            }
            double cs = fabs(dot) / sqrt(ni * nj);
            if (i / d == j / d)
                max_cos_in = fmax(max_cos_in, cs);
            else
                max_cos_across = fmax(max_cos_across, cs);
        }
    ck_assert_msg(max_cos_in < 1e-5, "rows of one block: |cos| up to %g", max_cos_in);
    ck_assert_msg(max_cos_across > 1e-2, "independent blocks should not be orthogonal (%g)",
                  max_cos_across);
    free(w);

    /* Lengths: |w_f|^2 is chi-square with d degrees of freedom, mean d, variance 2d. */
    const size_t big = 4096;
    w = xcalloc(big * d, sizeof *w);
    ck_assert_int_eq(attn_favor_projection(ws, big, d, 5, w), ATTN_OK);
    double mean = 0, m2 = 0;
    for (size_t f = 0; f < big; f++) {
        double sq = 0;
        for (size_t c = 0; c < d; c++)
            sq += (double)w[f * d + c] * w[f * d + c];
        mean += sq;
        m2 += sq * sq;
    }
    mean /= (double)big;
    double var = m2 / (double)big - mean * mean;
    /* standard error of the mean: sqrt(2d / 4096) = 0.09 */
    ck_assert_msg(fabs(mean - (double)d) < 0.5, "mean |w|^2 = %g, expected %zu", mean, d);
    ck_assert_msg(fabs(var - 2.0 * (double)d) < 6, "var |w|^2 = %g, expected %g", var,
                  2.0 * (double)d);
    free(w);
    attn_ws_free(ws);
}
END_TEST

START_TEST(favor_same_seed_same_output_other_seed_differs)
{
    uint64_t st = 11;
    const size_t n = 20, m = 30, d = 8;
    float *q = rand_floats(&st, n * d, -1, 1), *k = rand_floats(&st, m * d, -1, 1);
    float *v = rand_floats(&st, m * d, -1, 1);
    float *o1 = xcalloc(n * d, 4), *o2 = xcalloc(n * d, 4), *o3 = xcalloc(n * d, 4);
    attn_ws *ws = attn_ws_create(NULL);
    attn_linear_kernel kern = {ATTN_FEATURE_MAP_FAVOR, 32, 99};
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, ATTN_CAUSAL_NONE, n, m, d, d, q, k, v,
                                                NULL, o1, NULL, NULL),
                     ATTN_OK);
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, ATTN_CAUSAL_NONE, n, m, d, d, q, k, v,
                                                NULL, o2, NULL, NULL),
                     ATTN_OK);
    kern.seed = 100;
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, ATTN_CAUSAL_NONE, n, m, d, d, q, k, v,
                                                NULL, o3, NULL, NULL),
                     ATTN_OK);
    ck_assert(memcmp(o1, o2, n * d * 4) == 0);
    ck_assert(memcmp(o1, o3, n * d * 4) != 0);
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
    free(o1);
    free(o2);
    free(o3);
}
END_TEST

/* ------------------------------------------------------------ against the naive reference */

/* One single-head case: both feature maps, every causal mode, with and without padding. */
static void check_single(attn_ws *ws, size_t n, size_t m, size_t d, size_t dv, size_t r,
                         uint64_t seed)
{
    uint64_t st = seed * 7 + 1;
    float *q = rand_floats(&st, n * d, -1.5, 1.5), *k = rand_floats(&st, m * d, -1.5, 1.5);
    float *v = rand_floats(&st, m * dv, -2, 2);
    float *w = xcalloc(r * d, sizeof *w);
    float *out = xcalloc(n * dv, 4), *out2 = xcalloc(n * dv, 4), *wts = xcalloc(n * m, 4);
    double *rout = xcalloc(n * dv, 8), *rw = xcalloc(n * m, 8);
    uint8_t *pad = xcalloc(m, 1);
    for (size_t j = 0; j < m; j++)
        pad[j] = m > 1 && j % 5 == 2;
    ck_assert_int_eq(attn_favor_projection(ws, r, d, seed, w), ATTN_OK);

    for (int fm = 0; fm < 2; fm++) {
        attn_linear_kernel kern = {fm ? ATTN_FEATURE_MAP_FAVOR : ATTN_FEATURE_MAP_ELU, r, seed};
        const size_t F = fm ? r : d;
        for (int use_pad = 0; use_pad < 2; use_pad++) {
            const uint8_t *kp = use_pad ? pad : NULL;
            double *fq = fm ? ref_favor(q, n, d, d, w, r, 1, NULL, 0) : ref_elu(q, n, d, d);
            double *fk = fm ? ref_favor(k, m, d, d, w, r, 0, kp, m) : ref_elu(k, m, d, d);
            if (!fm && kp)
                for (size_t j = 0; j < m; j++)
                    if (kp[j])
                        memset(fk + j * F, 0, F * sizeof *fk);
            for (int mode = 0; mode < 3; mode++) {
                attn_causal cz = (attn_causal)mode;
                attn_result res;
                ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, cz, n, m, d, dv, q, k, v, kp,
                                                            out, wts, &res),
                                 ATTN_OK);
                ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, cz, n, m, d, dv, q, k, v, kp,
                                                            out2, NULL, NULL),
                                 ATTN_OK);
                ref_linear(fq, fk, n, m, m, F, v, dv, dv, cz, rout, rw);
                char what[96];
                snprintf(what, sizeof what, "%s n%zu m%zu d%zu r%zu mode %d pad %d out",
                         fm ? "favor" : "elu", n, m, d, r, mode, use_pad);
                expect_close(out, dv, rout, n, dv, 2e-4, what);
                expect_close(out2, dv, rout, n, dv, 2e-4, what);
                strcat(what, " weights");
                expect_close(wts, m, rw, n, m, 2e-4, what);
                size_t empty = 0, allowed = 0;
                for (size_t i = 0; i < n; i++) {
                    size_t vis = 0, lim = ref_limit(cz, i, n, m);
                    for (size_t j = 0; j < lim; j++)
                        vis += !(kp && kp[j]);
                    empty += vis == 0;
                    allowed += vis;
                }
                ck_assert_uint_eq(res.n_empty_rows, empty);
                ck_assert_uint_eq(res.n_allowed_pairs, allowed);
                ck_assert(fabsf(res.scale - (fm ? 1.0f / sqrtf((float)d) : 1.0f)) < 1e-6f);
            }
            free(fq);
            free(fk);
        }
    }
    free(q);
    free(k);
    free(v);
    free(w);
    free(out);
    free(out2);
    free(wts);
    free(rout);
    free(rw);
    free(pad);
}

START_TEST(favor_and_elu_match_naive_reference_of_same_features)
{
    /* n, m, d, dv, r: single rows, r < d, r not a multiple of d, several causal
     * chunks (64), row blocks (512) of keys and of queries, n > m and n < m. */
    static const size_t shapes[][5] = {
        {1, 1, 1, 1, 1},    {7, 5, 3, 2, 4},        {130, 97, 8, 5, 20}, {70, 300, 4, 3, 9},
        {200, 60, 6, 4, 7}, {129, 520, 16, 16, 64}, {600, 70, 4, 3, 5}};
    attn_ws *ws = attn_ws_create(NULL);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_single(ws, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4],
                     s + 1);
    attn_ws_free(ws);
}
END_TEST

/* Exact softmax attention exp(q.k / sqrt d) in double, optionally causal. */
static void ref_softmax(const float *q, const float *k, const float *v, size_t n, size_t m,
                        size_t d, size_t dv, attn_causal cz, double *out)
{
    for (size_t i = 0; i < n; i++) {
        const size_t lim = ref_limit(cz, i, n, m);
        double den = 0;
        memset(out + i * dv, 0, dv * sizeof *out);
        for (size_t j = 0; j < lim; j++) {
            double dot = 0;
            for (size_t c = 0; c < d; c++)
                dot += (double)q[i * d + c] * k[j * d + c];
            double e = exp(dot / sqrt((double)d));
            den += e;
            for (size_t x = 0; x < dv; x++)
                out[i * dv + x] += e * v[j * dv + x];
        }
        for (size_t x = 0; x < dv; x++)
            out[i * dv + x] = den > 0 ? out[i * dv + x] / den : 0;
    }
}

START_TEST(favor_converges_to_softmax_as_features_grow)
{
    /* A positive random feature estimate has relative standard deviation about
     * sqrt((exp(|q' + k'|^2) - 1) / r): near 0.04 at r = 4096 for these inputs, so
     * the bound is loose and the falling trend is the test. */
    const size_t n = 16, m = 16, d = 8, dv = 4, n_seeds = 6;
    static const size_t rs[] = {16, 256, 4096};
    uint64_t st = 2024;
    float *q = rand_floats(&st, n * d, -1, 1), *k = rand_floats(&st, m * d, -1, 1);
    float *v = rand_floats(&st, m * dv, -1, 1);
    float *out = xcalloc(n * dv, 4);
    double *ref = xcalloc(n * dv, 8);
    attn_ws *ws = attn_ws_create(NULL);
    for (int mode = 0; mode < 2; mode++) {
        attn_causal cz = mode ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
        ref_softmax(q, k, v, n, m, d, dv, cz, ref);
        double err[3], norm = 0;
        for (size_t x = 0; x < n * dv; x++)
            norm += ref[x] * ref[x];
        for (size_t ri = 0; ri < 3; ri++) {
            err[ri] = 0;
            for (uint64_t seed = 1; seed <= n_seeds; seed++) {
                attn_linear_kernel kern = {ATTN_FEATURE_MAP_FAVOR, rs[ri], seed};
                ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, cz, n, m, d, dv, q, k, v,
                                                            NULL, out, NULL, NULL),
                                 ATTN_OK);
                double e2 = 0;
                for (size_t x = 0; x < n * dv; x++)
                    e2 += (out[x] - ref[x]) * (out[x] - ref[x]);
                err[ri] += sqrt(e2 / norm) / (double)n_seeds;
            }
        }
        printf("favor vs softmax (%s): relative error r=16 %.4f, r=256 %.4f, r=4096 %.4f\n",
               mode ? "causal" : "non-causal", err[0], err[1], err[2]);
        ck_assert_msg(err[1] < 0.6 * err[0] && err[2] < 0.6 * err[1],
                      "error does not fall with r: %g %g %g", err[0], err[1], err[2]);
        ck_assert_msg(err[2] < 0.08, "r = 4096 still %g from softmax", err[2]);
    }
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
    free(out);
    free(ref);
}
END_TEST

START_TEST(favor_large_inputs_stay_finite)
{
    /* |x'|^2 / 2 far beyond expf's range: the stabiliser keeps every row finite. */
    const size_t n = 9, m = 12, d = 4;
    uint64_t st = 3;
    float *q = rand_floats(&st, n * d, -40, 40), *k = rand_floats(&st, m * d, -40, 40);
    float *v = rand_floats(&st, m * d, -1, 1);
    float *out = xcalloc(n * d, 4), *w = xcalloc(n * m, 4);
    attn_ws *ws = attn_ws_create(NULL);
    attn_linear_kernel kern = {ATTN_FEATURE_MAP_FAVOR, 64, 1};
    for (int mode = 0; mode < 3; mode++) {
        ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, (attn_causal)mode, n, m, d, d, q, k,
                                                    v, NULL, out, w, NULL),
                         ATTN_OK);
        for (size_t x = 0; x < n * d; x++)
            ck_assert(isfinite(out[x]));
        for (size_t i = 0; i < n; i++) {
            double sum = 0;
            for (size_t j = 0; j < m; j++) {
                ck_assert(isfinite(w[i * m + j]) && w[i * m + j] >= 0);
                sum += w[i * m + j];
            }
            ck_assert(sum <= 1 + 1e-4);
        }
    }
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
    free(out);
    free(w);
}
END_TEST

START_TEST(favor_all_keys_padded_rows_are_zero)
{
    const size_t n = 5, m = 4, d = 3;
    uint64_t st = 8;
    float *q = rand_floats(&st, n * d, -1, 1), *k = rand_floats(&st, m * d, -1, 1);
    float *v = rand_floats(&st, m * d, -1, 1);
    float out[15], w[20];
    uint8_t pad[4] = {1, 1, 1, 1};
    attn_ws *ws = attn_ws_create(NULL);
    attn_linear_kernel kern = {ATTN_FEATURE_MAP_FAVOR, 8, 1};
    attn_result res;
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, ATTN_CAUSAL_NONE, n, m, d, d, q, k, v,
                                                pad, out, w, &res),
                     ATTN_OK);
    for (size_t x = 0; x < n * d; x++)
        ck_assert(out[x] == 0.0f);
    for (size_t x = 0; x < n * m; x++)
        ck_assert(w[x] == 0.0f);
    ck_assert_uint_eq(res.n_empty_rows, n);
    /* no keys at all */
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &kern, ATTN_CAUSAL_NONE, n, 0, d, d, q, NULL,
                                                NULL, NULL, out, NULL, &res),
                     ATTN_OK);
    for (size_t x = 0; x < n * d; x++)
        ck_assert(out[x] == 0.0f);
    ck_assert_uint_eq(res.n_empty_rows, n);
    attn_ws_free(ws);
    free(q);
    free(k);
    free(v);
}
END_TEST

START_TEST(linear_kernel_bad_arguments_return_documented_errors)
{
    attn_ws *ws = attn_ws_create(NULL);
    float x[16] = {0}, o[16];
    attn_linear_kernel fav = {ATTN_FEATURE_MAP_FAVOR, 4, 0};
    attn_linear_kernel none = {ATTN_FEATURE_MAP_NONE, 0, 0};
    attn_linear_kernel unknown = {(attn_feature_map)9, 4, 0};
    attn_linear_kernel r0 = {ATTN_FEATURE_MAP_FAVOR, 0, 0};
    attn_linear_kernel rbig = {ATTN_FEATURE_MAP_FAVOR, ATTN_FAVOR_MAX_FEATURES + 1, 0};
    const attn_causal nc = ATTN_CAUSAL_NONE;
    ck_assert_int_eq(
        attn_linear_kernel_forward(NULL, &fav, nc, 1, 1, 1, 1, x, x, x, NULL, o, NULL, NULL),
        ATTN_ERR_INVALID);
    ck_assert_int_eq(
        attn_linear_kernel_forward(ws, NULL, nc, 1, 1, 1, 1, x, x, x, NULL, o, NULL, NULL),
        ATTN_ERR_INVALID);
    const attn_linear_kernel *bad[] = {&none, &unknown, &r0, &rbig};
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(
            attn_linear_kernel_forward(ws, bad[i], nc, 1, 1, 1, 1, x, x, x, NULL, o, NULL, NULL),
            ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &fav, (attn_causal)5, 1, 1, 1, 1, x, x, x, NULL,
                                                o, NULL, NULL),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(
        attn_linear_kernel_forward(ws, &fav, nc, 1, 1, 0, 1, x, x, x, NULL, o, NULL, NULL),
        ATTN_ERR_SHAPE);
    ck_assert_int_eq(
        attn_linear_kernel_forward(ws, &fav, nc, 1, 1, 1, 0, x, x, x, NULL, o, NULL, NULL),
        ATTN_ERR_SHAPE);
    ck_assert_int_eq(
        attn_linear_kernel_forward(ws, &fav, nc, 1, 1, 1, 1, x, NULL, x, NULL, o, NULL, NULL),
        ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_linear_kernel_forward(ws, &fav, nc, (size_t)1 << 62, (size_t)1 << 62, 4,
                                                1, x, x, x, NULL, o, NULL, NULL),
                     ATTN_ERR_OVERFLOW);
    ck_assert_int_eq(attn_favor_projection(NULL, 4, 4, 0, o), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_favor_projection(ws, 0, 4, 0, o), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_favor_projection(ws, ATTN_FAVOR_MAX_FEATURES + 1, 4, 0, o),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_favor_projection(ws, 4, 0, 0, o), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_favor_projection(ws, 4, 4, 0, NULL), ATTN_ERR_INVALID);
    attn_ws_free(ws);
}
END_TEST

/* ------------------------------------------------------------ multi-head */

/*
 * attn_mha_forward with a linear kernel against the reference run head by
 * head on the projections the engine returns (q, k, v), with GQA grouping,
 * the appended bias_k / zero rows always visible, and the head average.
 */
static void check_mha(attn_feature_map fm, size_t H, size_t Hkv, size_t E, size_t n, size_t m,
                      attn_causal cz, bool bias_kv, bool zero_attn, bool use_pad)
{
    const size_t hd = E / H, Ekv = Hkv * hd, r = 24;
    attn_mha_config cfg = {
        .embed_dim = E, .num_heads = H, .num_kv_heads = Hkv, .add_zero_attn = zero_attn};
    cfg.kernel.feature_map = fm;
    cfg.kernel.num_features = r;
    cfg.kernel.seed = 5;
    attn_mha_weights w;
    float *store = NULL;
    ck_assert_int_eq(attn_mha_init_seeded(&cfg, 17, true, bias_kv, &w, &store), ATTN_OK);
    uint64_t st = n * 31 + m;
    float *x = rand_floats(&st, n * E, -1, 1), *y = rand_floats(&st, m * E, -1, 1);
    uint8_t *pad = xcalloc(m, 1);
    for (size_t j = 0; j < m; j++)
        pad[j] = use_pad && j % 4 == 3;
    cfg.attn.masks.causal = cz;
    cfg.attn.masks.key_padding = use_pad ? pad : NULL;
    const size_t mk = attn_mha_keys(&cfg, &w, m);
    float *q = xcalloc(n * E, 4), *k = xcalloc(m * Ekv, 4), *v = xcalloc(m * Ekv, 4);
    float *ho = xcalloc(H * n * hd, 4), *wts = xcalloc(H * n * mk, 4), *avg = xcalloc(n * mk, 4);
    float *out = xcalloc(n * E, 4);
    attn_mha_outputs o = {.output = out,
                          .weights = wts,
                          .weights_avg = avg,
                          .head_outputs = ho,
                          .q = q,
                          .k = k,
                          .v = v};
    attn_ws *ws = attn_ws_create(NULL);
    attn_result res;
    ck_assert_int_eq(attn_mha_forward(ws, &cfg, &w, n, m, x, y, y, &o, &res), ATTN_OK);

    float *proj = xcalloc(r * hd, 4);
    ck_assert_int_eq(attn_favor_projection(ws, r, hd, 5, proj), ATTN_OK);
    const size_t F = fm == ATTN_FEATURE_MAP_FAVOR ? r : hd;
    float *kh = xcalloc(mk * hd, 4), *vh = xcalloc(mk * hd, 4), *qh = xcalloc(n * hd, 4);
    double *rout = xcalloc(n * hd, 8), *rw = xcalloc(n * mk, 8), *ravg = xcalloc(n * mk, 8);
    for (size_t h = 0; h < H; h++) {
        const size_t g = h * Hkv / H;
        for (size_t i = 0; i < n; i++)
            memcpy(qh + i * hd, q + i * E + h * hd, hd * 4);
        for (size_t j = 0; j < m; j++) {
            memcpy(kh + j * hd, k + j * Ekv + g * hd, hd * 4);
            memcpy(vh + j * hd, v + j * Ekv + g * hd, hd * 4);
        }
        size_t row = m;
        if (bias_kv) {
            memcpy(kh + row * hd, w.bias_k + g * hd, hd * 4);
            memcpy(vh + row * hd, w.bias_v + g * hd, hd * 4);
            row++;
        }
        if (zero_attn) {
            memset(kh + row * hd, 0, hd * 4);
            memset(vh + row * hd, 0, hd * 4);
        }
        double *fq, *fk;
        if (fm == ATTN_FEATURE_MAP_FAVOR) {
            fq = ref_favor(qh, n, hd, hd, proj, r, 1, NULL, 0);
            fk = ref_favor(kh, mk, hd, hd, proj, r, 0, use_pad ? pad : NULL, m);
        } else {
            fq = ref_elu(qh, n, hd, hd);
            fk = ref_elu(kh, mk, hd, hd);
            for (size_t j = 0; j < m; j++)
                if (use_pad && pad[j])
                    memset(fk + j * F, 0, F * sizeof *fk);
        }
        ref_linear(fq, fk, n, mk, m, F, vh, hd, hd, cz, rout, rw);
        expect_close(ho + h * n * hd, hd, rout, n, hd, 2e-4, "mha head_outputs");
        expect_close(wts + h * n * mk, mk, rw, n, mk, 2e-4, "mha weights");
        for (size_t x2 = 0; x2 < n * mk; x2++)
            ravg[x2] += rw[x2] / (double)H;
        free(fq);
        free(fk);
    }
    expect_close(avg, mk, ravg, n, mk, 2e-4, "mha weights_avg");
    /* output = out_proj(head outputs) + bias */
    for (size_t i = 0; i < n; i++)
        for (size_t e = 0; e < E; e++) {
            double acc = w.out_bias ? w.out_bias[e] : 0;
            for (size_t h = 0; h < H; h++)
                for (size_t c = 0; c < hd; c++)
                    acc += (double)w.out_proj[e * E + h * hd + c] * ho[(h * n + i) * hd + c];
            ck_assert(fabs(out[i * E + e] - acc) <= 1e-4 * (1 + fabs(acc)));
        }
    if (fm == ATTN_FEATURE_MAP_FAVOR)
        ck_assert(fabsf(res.scale - 1.0f / sqrtf((float)hd)) < 1e-6f);
    else
        ck_assert(res.scale == 1.0f);

    attn_ws_free(ws);
    attn_free_buffer(store);
    free(x);
    free(y);
    free(pad);
    free(q);
    free(k);
    free(v);
    free(ho);
    free(wts);
    free(avg);
    free(out);
    free(proj);
    free(kh);
    free(vh);
    free(qh);
    free(rout);
    free(rw);
    free(ravg);
}

START_TEST(mha_linear_kernels_match_per_head_reference)
{
    for (int fm = 1; fm <= 2; fm++) {
        attn_feature_map f = (attn_feature_map)fm;
        check_mha(f, 4, 4, 16, 9, 9, ATTN_CAUSAL_NONE, false, false, false);
        check_mha(f, 4, 2, 16, 70, 90, ATTN_CAUSAL_TOP_LEFT, false, false, true);
        check_mha(f, 4, 1, 32, 80, 50, ATTN_CAUSAL_BOTTOM_RIGHT, true, true, true);
        check_mha(f, 2, 2, 8, 12, 12, ATTN_CAUSAL_NONE, true, false, true);
    }
}
END_TEST

START_TEST(mha_linear_kernel_refuses_what_it_cannot_do)
{
    const size_t E = 8, n = 3;
    attn_mha_config cfg = {.embed_dim = E, .num_heads = 2};
    cfg.kernel.feature_map = ATTN_FEATURE_MAP_FAVOR;
    cfg.kernel.num_features = 8;
    attn_mha_weights w;
    float *store = NULL;
    ck_assert_int_eq(attn_mha_init_seeded(&cfg, 1, true, false, &w, &store), ATTN_OK);
    float x[24] = {0}, out[24], scores[18];
    uint8_t mask[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    attn_ws *ws = attn_ws_create(NULL);
    attn_mha_outputs o = {.output = out};
    ck_assert_int_eq(attn_mha_forward(ws, &cfg, &w, n, n, x, x, x, &o, NULL), ATTN_OK);

    attn_mha_config c2 = cfg;
    c2.attn.softcap = 5;
    ck_assert_int_eq(attn_mha_forward(ws, &c2, &w, n, n, x, x, x, &o, NULL), ATTN_ERR_UNSUPPORTED);
    c2 = cfg;
    c2.attn.scale = 0.5f;
    ck_assert_int_eq(attn_mha_forward(ws, &c2, &w, n, n, x, x, x, &o, NULL), ATTN_ERR_UNSUPPORTED);
    c2 = cfg;
    c2.attn.masks.mask = mask;
    ck_assert_int_eq(attn_mha_forward(ws, &c2, &w, n, n, x, x, x, &o, NULL), ATTN_ERR_UNSUPPORTED);
    c2 = cfg;
    c2.kernel.num_features = 0;
    ck_assert_int_eq(attn_mha_forward(ws, &c2, &w, n, n, x, x, x, &o, NULL), ATTN_ERR_INVALID);
    attn_mha_outputs os = {.output = out, .scores = scores};
    ck_assert_int_eq(attn_mha_forward(ws, &cfg, &w, n, n, x, x, x, &os, NULL),
                     ATTN_ERR_UNSUPPORTED);
    attn_ws_free(ws);
    attn_free_buffer(store);
}
END_TEST

/* ------------------------------------------------------------ out of memory */

typedef struct counter {
    size_t n_calls, n_ok, n_free, fail_at; /* fail_at: the request (1-based) that fails */
} counter;

static void *counting_alloc(size_t n_bytes, void *user)
{
    counter *c = user;
    if (++c->n_calls == c->fail_at)
        return NULL;
    void *p = malloc(n_bytes);
    c->n_ok += p != NULL;
    return p;
}

static void counting_free(void *ptr, void *user)
{
    counter *c = user;
    c->n_free += ptr != NULL;
    free(ptr);
}

/* Single-head favor with weights (kind 0) or multi-head favor (kind 1), output into out. */
static attn_status run_favor(attn_ws *ws, int kind, float *out)
{
    enum { N = 70, D = 8 };
    static float x[N * D];
    uint64_t st = 77;
    for (size_t i = 0; i < N * D; i++)
        x[i] = 2.0f * attn_rng_uniform(&st) - 1.0f;
    attn_linear_kernel kern = {ATTN_FEATURE_MAP_FAVOR, 24, 3};
    if (kind == 0) {
        static float w[N * N];
        return attn_linear_kernel_forward(ws, &kern, ATTN_CAUSAL_TOP_LEFT, N, N, D, D, x, x, x,
                                          NULL, out, w, NULL);
    }
    attn_mha_config cfg = {.embed_dim = D, .num_heads = 2, .kernel = kern};
    attn_mha_weights mw;
    float *store = NULL;
    ck_assert_int_eq(attn_mha_init_seeded(&cfg, 1, true, false, &mw, &store), ATTN_OK);
    attn_mha_outputs o = {.output = out};
    attn_status r = attn_mha_forward(ws, &cfg, &mw, N, N, x, x, x, &o, NULL);
    attn_free_buffer(store);
    return r;
}

START_TEST(favor_each_failed_allocation_returns_nomem_then_recovers)
{
    for (int kind = 0; kind < 2; kind++) {
        float want[70 * 8], got[70 * 8];
        counter c = {0};
        attn_allocator al = {counting_alloc, counting_free, &c};
        attn_ws *ws = attn_ws_create(&al);
        ck_assert_int_eq(run_favor(ws, kind, want), ATTN_OK);
        const size_t total = c.n_calls;
        attn_ws_free(ws);
        ck_assert_uint_eq(c.n_ok, c.n_free);
        for (size_t fail = 2; fail <= total; fail++) { /* 1 is the workspace itself */
            counter f = {.fail_at = fail};
            attn_allocator fal = {counting_alloc, counting_free, &f};
            attn_ws *fws = attn_ws_create(&fal);
            ck_assert(fws != NULL);
            ck_assert_msg(run_favor(fws, kind, got) == ATTN_ERR_NOMEM,
                          "kind %d: failure %zu of %zu", kind, fail, total);
            f.fail_at = 0;
            ck_assert_int_eq(run_favor(fws, kind, got), ATTN_OK);
            ck_assert(memcmp(want, got, sizeof want) == 0);
            attn_ws_free(fws);
            ck_assert_uint_eq(f.n_ok, f.n_free);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_favor");
    TCase *tc = tcase_create("favor");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, favor_projection_same_seed_same_matrix_other_seed_differs);
    tcase_add_test(tc, favor_projection_rows_orthogonal_within_blocks_with_chi_lengths);
    tcase_add_test(tc, favor_same_seed_same_output_other_seed_differs);
    tcase_add_test(tc, favor_and_elu_match_naive_reference_of_same_features);
    tcase_add_test(tc, favor_converges_to_softmax_as_features_grow);
    tcase_add_test(tc, favor_large_inputs_stay_finite);
    tcase_add_test(tc, favor_all_keys_padded_rows_are_zero);
    tcase_add_test(tc, linear_kernel_bad_arguments_return_documented_errors);
    tcase_add_test(tc, mha_linear_kernels_match_per_head_reference);
    tcase_add_test(tc, mha_linear_kernel_refuses_what_it_cannot_do);
    tcase_add_test(tc, favor_each_failed_allocation_returns_nomem_then_recovers);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
