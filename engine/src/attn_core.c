/* attn_core.c - one attention head: scores, softcap, masks, softmax and P*V in row blocks. */
#include "attn_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Queries per block of the sparse path (its tile is BLOCK_ROWS x width). */
#define BLOCK_ROWS 64

/* Dense path (weights, scores or Shaw terms asked for): blocks of rows whose
 * score block is about DENSE_BLOCK_FLOATS floats (512 KiB, so it stays in L2
 * between the sgemm that writes it, the softmax and the sgemm that reads it),
 * at least DENSE_MIN_ROWS rows so each sgemm stays large, at most
 * DENSE_MAX_ROWS. */
#define DENSE_BLOCK_FLOATS 131072
#define DENSE_MIN_ROWS 64
#define DENSE_MAX_ROWS 1024

/* Flash path (output only): key tiles of FLASH_COLS columns and row blocks of
 * FLASH_MIN_ROWS..FLASH_MAX_ROWS rows, so the scratch is one tile, O(1) in n
 * and m, whatever the sequence length. */
#define FLASH_COLS 512
#define FLASH_MIN_ROWS 64
#define FLASH_MAX_ROWS 256

/* ------------------------------------------------------------ vector kernels */

/*
 * The softmax's elementwise work (max, exp, sum, scale) is written as plain
 * loops the compiler vectorises; on x86-64 with GCC each is also built for
 * AVX2/FMA and AVX-512 and picked at load time (target_clones), since the
 * build itself targets the x86-64 baseline (SSE2).
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ATTN_VEC __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ATTN_VEC
#endif

/* Lanes of the reductions: wide enough for the compiler to keep them in vector registers. */
#define VEC_LANES 16

/*
 * exp(x) for x <= 0 (softmax arguments after subtracting the maximum):
 * Cody-Waite reduction x = n ln2 + r and Cephes' degree-5 polynomial for
 * exp(r), within 1e-7 relative; exactly 0 below -87 (including -inf, the
 * masked pairs). Branch-free (bit selects), so loops over it vectorise.
 */
static inline float vexp_neg(float x)
{
    const float lo = -87.0f;
    uint32_t xb, lb, keep = 0u - (uint32_t)(x >= lo);
    memcpy(&xb, &x, sizeof xb);
    memcpy(&lb, &lo, sizeof lb);
    xb = (xb & keep) | (lb & ~keep);
    float xc;
    memcpy(&xc, &xb, sizeof xc);
    /* n = round(x / ln2) by the 1.5 * 2^23 trick: its low bits hold n + 2^22 */
    const float t = xc * 1.44269504088896341f + 12582912.0f;
    uint32_t tb;
    memcpy(&tb, &t, sizeof tb);
    const float nf = t - 12582912.0f;
    float r = xc - nf * 0.693359375f;
    r = r - nf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    const uint32_t eb = (tb - 0x4B400000u + 127u) << 23; /* 2^n */
    float sc;
    memcpy(&sc, &eb, sizeof sc);
    y *= sc;
    uint32_t yb;
    memcpy(&yb, &y, sizeof yb);
    yb &= keep;
    memcpy(&y, &yb, sizeof y);
    return y;
}

/* Largest of x [n] (-INFINITY for n == 0). */
ATTN_VEC static float vec_max(const float *restrict x, size_t n)
{
    float lane[VEC_LANES];
    for (int l = 0; l < VEC_LANES; l++)
        lane[l] = -INFINITY;
    size_t i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++)
            lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    float mx = -INFINITY;
    for (; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    for (int l = 0; l < VEC_LANES; l++)
        mx = lane[l] > mx ? lane[l] : mx;
    return mx;
}

/* x[j] = exp(x[j] - mx) in place (mx finite, every x[j] <= mx); returns the
 * sum, accumulated in double lanes. */
ATTN_VEC static double vec_exp_sum(float *restrict x, size_t n, float mx)
{
    for (size_t i = 0; i < n; i++)
        x[i] = vexp_neg(x[i] - mx);
    double lane[VEC_LANES] = {0};
    size_t i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++)
            lane[l] += x[i + l];
    double sum = 0.0;
    for (; i < n; i++)
        sum += x[i];
    for (int l = 0; l < VEC_LANES; l++)
        sum += lane[l];
    return sum;
}

/* x [n] *= a. */
ATTN_VEC static void vec_scale(float *restrict x, size_t n, float a)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= a;
}

static const char *const score_names[] = {
    [ATTN_SCORE_SCALED_DOT] = "scaled_dot", [ATTN_SCORE_DOT] = "dot",
    [ATTN_SCORE_GENERAL] = "general",       [ATTN_SCORE_ADDITIVE] = "additive",
    [ATTN_SCORE_CONCAT] = "concat",
};

#define N_SCORES (sizeof(score_names) / sizeof(score_names[0]))

const char *attn_score_name(attn_score s)
{
    if ((unsigned)s >= N_SCORES)
        return NULL;
    return score_names[s];
}

attn_status attn_score_parse(const char *name, attn_score *out)
{
    if (!name || !out)
        return ATTN_ERR_INVALID;
    for (size_t i = 0; i < N_SCORES; i++) {
        if (strcmp(name, score_names[i]) == 0) {
            *out = (attn_score)i;
            return ATTN_OK;
        }
    }
    return ATTN_ERR_INVALID;
}

static bool score_is_dot(attn_score s)
{
    return s == ATTN_SCORE_SCALED_DOT || s == ATTN_SCORE_DOT;
}

static bool score_is_additive(attn_score s)
{
    return s == ATTN_SCORE_ADDITIVE || s == ATTN_SCORE_CONCAT;
}

float attn__scale_resolve(const attn_params *p, size_t dk)
{
    if (p->score != ATTN_SCORE_SCALED_DOT)
        return 1.0f;
    if (p->scale > 0.0f) /* false for NaN too */
        return p->scale;
    return (float)(1.0 / sqrt((double)dk));
}

attn_status attn__params_check(const attn_params *p)
{
    if ((unsigned)p->score >= N_SCORES)
        return ATTN_ERR_INVALID;
    /* NaN fails the comparison; an infinite cap would turn every score into NaN. */
    if (!(p->softcap >= 0.0f) || isinf(p->softcap))
        return ATTN_ERR_INVALID;
    if (p->score == ATTN_SCORE_SCALED_DOT && isinf(p->scale) && p->scale > 0.0f)
        return ATTN_ERR_INVALID;
    if ((p->pos.shaw_k || p->pos.shaw_v) && !score_is_dot(p->score))
        return ATTN_ERR_UNSUPPORTED;
    if (p->pos.rope && ((unsigned)p->pos.rope_style > ATTN_ROPE_INTERLEAVED ||
                        isnan(p->pos.rope_base) || isinf(p->pos.rope_base) ||
                        (p->pos.rope_base > 0.0f && p->pos.rope_base <= 1.0f)))
        return ATTN_ERR_INVALID;
    switch (p->score) {
    case ATTN_SCORE_GENERAL:
        if (!p->w)
            return ATTN_ERR_INVALID;
        break;
    case ATTN_SCORE_ADDITIVE:
        if (!p->w1 || !p->w2 || !p->v || p->da == 0)
            return ATTN_ERR_INVALID;
        break;
    case ATTN_SCORE_CONCAT:
        if (!p->w || !p->v || p->da == 0)
            return ATTN_ERR_INVALID;
        break;
    default:
        break;
    }
    return ATTN_OK;
}

static bool has_shaw(const attn_params *p)
{
    return p->pos.shaw_k || p->pos.shaw_v;
}

/* Saturating a + b and a * b for the pattern bounds. */
static size_t sat_add(size_t a, size_t b)
{
    size_t t;
    return attn__size_add(a, b, &t) ? t : SIZE_MAX;
}

static size_t sat_mul(size_t a, size_t b)
{
    size_t t;
    return attn__size_mul(a, b, &t) ? t : SIZE_MAX;
}

/*
 * Widest key column set one sparse block (BLOCK_ROWS queries) can need, or 0
 * when the sparse path does not apply: no pattern, weights requested (they are
 * a full matrix anyway), a stride or an unbounded window (the union of a row
 * block's keys is then spread over all m), or a bound that is not below m.
 */
static size_t sparse_width(const attn__head *h)
{
    const attn_pattern *pt = h->p->masks.pattern;
    const size_t m = h->m, mm = h->p->masks.m_masked ? h->p->masks.m_masked : m;
    const size_t rows = h->n < BLOCK_ROWS ? h->n : BLOCK_ROWS;
    size_t left = 0, right = 0;

    if (!pt || h->weights || pt->stride > 0 || m == 0 || has_shaw(h->p))
        return 0;
    if (pt->has_window) {
        if (pt->window_left < 0 || pt->window_right < 0)
            return 0;
        const size_t d = pt->dilation > 1 ? (size_t)pt->dilation : 1;
        left = sat_mul((size_t)pt->window_left, d);
        right = sat_mul((size_t)pt->window_right, d);
    }
    if (pt->block_size > 0) {
        const size_t b1 = (size_t)pt->block_size - 1;
        left = left > b1 ? left : b1;
        right = right > b1 ? right : b1;
    }
    size_t w = sat_add(sat_add(rows, left), right);
    w = sat_add(w, pt->n_global);
    w = sat_add(w, sat_mul(rows, (size_t)pt->random));
    w = sat_add(w, m - mm);
    return w < m ? w : 0;
}

/*
 * How a head runs: the sparse path (a bounded pattern, output only: gathered
 * key columns), the flash path (output only: key tiles with a running max and
 * sum, so no row of n or m floats is ever held), or the dense path (weights,
 * scores, head averages or Shaw terms asked for: blocks of whole score rows).
 */
typedef struct head_plan {
    size_t width; /* sparse: gathered columns per block (0: not sparse) */
    bool flash;
    size_t rows; /* queries per block */
    size_t cols; /* flash: keys per tile; dense: m */
} head_plan;

static size_t clamp_size(size_t x, size_t lo, size_t hi)
{
    return x < lo ? lo : x > hi ? hi : x;
}

static head_plan head_plan_make(const attn__head *h)
{
    head_plan pl = {0};
    pl.width = sparse_width(h);
    if (pl.width) {
        pl.rows = h->n < BLOCK_ROWS ? h->n : BLOCK_ROWS;
        return pl;
    }
    pl.flash = !h->weights && !h->scores && !h->weights_acc && !has_shaw(h->p) && h->m > 0;
    if (pl.flash) {
        pl.cols = h->m < FLASH_COLS ? h->m : FLASH_COLS;
        pl.rows = clamp_size(DENSE_BLOCK_FLOATS / pl.cols, FLASH_MIN_ROWS, FLASH_MAX_ROWS);
    } else {
        pl.cols = h->m;
        pl.rows = clamp_size(DENSE_BLOCK_FLOATS / (h->m ? h->m : 1), DENSE_MIN_ROWS, DENSE_MAX_ROWS);
    }
    pl.rows = h->n < pl.rows ? h->n : pl.rows;
    return pl;
}

attn_status attn__head_scratch_floats(const attn__head *h, size_t *n_floats)
{
    const attn_score s = h->p->score;
    const attn_pattern *pt = h->p->masks.pattern;
    const size_t mm = h->p->masks.m_masked ? h->p->masks.m_masked : h->m;
    const head_plan pl = head_plan_make(h);
    const size_t rows = pl.rows, sw = pl.width;
    size_t total = 0, t;

    if (h->n == 0 || h->m == 0) {
        *n_floats = 0;
        return ATTN_OK;
    }
    if (sw) {
        /* tile [rows][W], gathered keys [W][max(dk, da)] and values [W][dv],
         * cols [W] and random keys [rows][r] (size_t, counted as 2 floats
         * each), and one dense row [m] + pattern row [mm] for global queries. */
        const size_t kw = score_is_additive(s) ? (h->p->da > h->dk ? h->p->da : h->dk) : h->dk;
        t = sat_mul(rows, sw);
        t = sat_add(t, sat_mul(sw, sat_add(kw, h->dv)));
        t = sat_add(t, sat_mul(2, sw));
        t = sat_add(t, sat_mul(2, sat_mul(rows, (size_t)pt->random)));
        if (pt->n_global > 0)
            t = sat_add(t, sat_add(h->m, mm / sizeof(float) + 1));
        if (t == SIZE_MAX)
            return ATTN_ERR_OVERFLOW;
        total = t;
    } else if (pl.flash) {
        /* tile [rows][cols], running max [rows] and sum [rows] (double: 2
         * floats), the tile's key indices [cols] and the rows' random keys
         * [rows][r] (size_t: 2 floats each) */
        const size_t nr = pt && pt->random > 0 ? (size_t)pt->random : 0;
        t = sat_mul(rows, pl.cols);
        t = sat_add(t, sat_mul(3, rows));
        t = sat_add(t, sat_mul(2, pl.cols));
        t = sat_add(t, sat_mul(2, sat_mul(rows, nr)));
        if (t == SIZE_MAX)
            return ATTN_ERR_OVERFLOW;
        total = t;
    } else {
        if (!h->weights) { /* otherwise scores are built in the caller's weights rows */
            if (!attn__size_mul(rows, h->m, &total))
                return ATTN_ERR_OVERFLOW;
        }
        if (pt) { /* one pattern row of mm bytes */
            if (!attn__size_add(total, mm / sizeof(float) + 1, &total))
                return ATTN_ERR_OVERFLOW;
        }
    }
    if (has_shaw(h->p)) { /* Shaw: Q_blk A_k^T and the bucketed weights, [rows][2k + 1] each */
        size_t nb;
        if (!attn__size_mul(2, h->p->pos.shaw_clip, &nb) || !attn__size_add(nb, 1, &nb) ||
            !attn__size_mul(2 * rows, nb, &t) || !attn__size_add(total, t, &total))
            return ATTN_ERR_OVERFLOW;
    }
    if (s == ATTN_SCORE_GENERAL) { /* Q_blk W [rows][dk] */
        if (!attn__size_mul(rows, h->dk, &t) || !attn__size_add(total, t, &total))
            return ATTN_ERR_OVERFLOW;
    } else if (score_is_additive(s)) { /* Q_blk W1^T [rows][da] and K W2^T [m][da] */
        size_t r;
        if (!attn__size_add(rows, h->m, &r) || !attn__size_mul(r, h->p->da, &t) ||
            !attn__size_add(total, t, &total))
            return ATTN_ERR_OVERFLOW;
    }
    /* Keep each piece on its own cache lines (16 floats). */
    if (!attn__size_add(total, 12 * 16, &total))
        return ATTN_ERR_OVERFLOW;
    *n_floats = total;
    return ATTN_OK;
}

static float *align16(float *p)
{
    size_t off = (size_t)((uintptr_t)p / sizeof(float) % 16);
    return off ? p + (16 - off) : p;
}

/* s_ij = sum_a v_a tanh(A_ia + B_ja) for one block: the Bahdanau/concat score. */
static void additive_scores(const float *a, const float *bk, const float *v, size_t rows, size_t m,
                            size_t da, float *s)
{
    for (size_t r = 0; r < rows; r++) {
        const float *ar = a + r * da;
        for (size_t j = 0; j < m; j++) {
            const float *bj = bk + j * da;
            float acc = 0.0f;
            for (size_t x = 0; x < da; x++)
                acc += v[x] * tanhf(ar[x] + bj[x]);
            s[r * m + j] = acc;
        }
    }
}

/* Raw scores (scaled, before softcap and masks) of queries [i0, i0 + rows) into s [rows][m]. */
static void block_scores(const attn__head *h, size_t i0, size_t rows, float *s, float *tmp,
                         const float *keys_proj)
{
    const attn_params *p = h->p;
    const float *q = h->q + i0 * h->ldq;

    switch (p->score) {
    case ATTN_SCORE_GENERAL:
        /* (Q W) K^T: project the block's queries into key space first. */
        attn__sgemm(false, false, rows, h->dk, h->dq, 1.0f, q, h->ldq, p->w, h->dk, 0.0f, tmp,
                    h->dk);
        attn__sgemm(false, true, rows, h->m, h->dk, 1.0f, tmp, h->dk, h->k, h->ldk, 0.0f, s, h->m);
        break;
    case ATTN_SCORE_ADDITIVE:
        attn__sgemm(false, true, rows, p->da, h->dq, 1.0f, q, h->ldq, p->w1, h->dq, 0.0f, tmp,
                    p->da);
        additive_scores(tmp, keys_proj, p->v, rows, h->m, p->da, s);
        break;
    case ATTN_SCORE_CONCAT:
        /* W [q; k] = W[:, :dq] q + W[:, dq:] k: the left block of W, read in place. */
        attn__sgemm(false, true, rows, p->da, h->dq, 1.0f, q, h->ldq, p->w, h->dq + h->dk, 0.0f,
                    tmp, p->da);
        additive_scores(tmp, keys_proj, p->v, rows, h->m, p->da, s);
        break;
    default: /* scaled_dot, dot: the scale rides on sgemm's alpha */
        attn__sgemm(false, true, rows, h->m, h->dk, h->scale, q, h->ldq, h->k, h->ldk, 0.0f, s,
                    h->m);
        break;
    }
}

/* Max-subtracted softmax in place; returns false (row zeroed) when no key is left. */
static bool softmax_row(float *row, size_t m)
{
    const float mx = vec_max(row, m);
    if (mx == -INFINITY) {
        memset(row, 0, m * sizeof(float));
        return false;
    }
    const double sum = vec_exp_sum(row, m, mx);
    vec_scale(row, m, (float)(1.0 / sum));
    return true;
}

/* Scratch of attn__head_forward, carved from the caller's block. */
typedef struct head_bufs {
    float *sbuf;      /* dense: [rows][m] scores when weights are not requested */
    float *tmp;       /* projected queries of a block (general, additive, concat) */
    float *keys_proj; /* additive/concat: K W2^T [m][da] */
    uint8_t *pat_row; /* [mm] one pattern row */
    /* sparse path */
    size_t width; /* 0: dense path */
    float *tile;  /* [rows][width] */
    float *gk;    /* [width][max(dk, da)] gathered keys (or projected keys) */
    float *gv;    /* [width][dv] gathered values */
    size_t *cols; /* [width] key columns of the tile */
    size_t *rnd;  /* [rows][r] random keys per row */
    float *srow;  /* [m] dense row for global queries */
    /* Shaw relative positions */
    float *rel_s; /* [rows][2k + 1] q . shaw_k per clipped distance */
    float *rel_w; /* [rows][2k + 1] weights summed per clipped distance */
    /* flash path */
    head_plan plan;
    float *run_max;  /* [rows] running maximum of each row's scores */
    double *run_sum; /* [rows] running sum of exp(score - run_max) */
    size_t *tcols;   /* [cols] the key indices of one tile */
} head_bufs;

/* Bucket of pair (i, j) for Shaw tables with clip k: clip(j - i, -k, k) + k. */
static size_t shaw_bucket(size_t i, size_t j, size_t k)
{
    if (j >= i)
        return j - i >= k ? 2 * k : k + (j - i);
    return i - j >= k ? 0 : k - (i - j);
}

/* Shaw keys: s[r][j] += scale * q_{i0+r} . shaw_k[bucket(i, j)] for the masked columns. */
static void shaw_scores(const attn__head *h, const head_bufs *b, size_t i0, size_t rows, float *s)
{
    const attn_positional *ps = &h->p->pos;
    const size_t k = ps->shaw_clip, nb = 2 * k + 1, m = h->m;
    const size_t mm = h->p->masks.m_masked ? h->p->masks.m_masked : m;
    if (!ps->shaw_k)
        return;
    attn__sgemm(false, true, rows, nb, h->dk, h->scale, h->q + i0 * h->ldq, h->ldq, ps->shaw_k,
                h->dk, 0.0f, b->rel_s, nb);
    for (size_t r = 0; r < rows; r++) {
        const float *rs = b->rel_s + r * nb;
        for (size_t j = 0; j < mm; j++)
            s[r * m + j] += rs[shaw_bucket(i0 + r, j, k)];
    }
}

/* Shaw values: out_{i0+r} += sum_j p[r][j] shaw_v[bucket(i, j)]. */
static void shaw_values(const attn__head *h, const head_bufs *b, size_t i0, size_t rows,
                        const float *pw, float *o)
{
    const attn_positional *ps = &h->p->pos;
    const size_t k = ps->shaw_clip, nb = 2 * k + 1, m = h->m;
    const size_t mm = h->p->masks.m_masked ? h->p->masks.m_masked : m;
    if (!ps->shaw_v)
        return;
    for (size_t r = 0; r < rows; r++) {
        float *rw = b->rel_w + r * nb;
        for (size_t c = 0; c < nb; c++)
            rw[c] = 0.0f;
        for (size_t j = 0; j < mm; j++)
            rw[shaw_bucket(i0 + r, j, k)] += pw[r * m + j];
    }
    attn__sgemm(false, false, rows, h->dv, nb, 1.0f, b->rel_w, nb, ps->shaw_v, h->dv, 1.0f, o,
                h->ldo);
}

/* Rows [i0, i0 + rows) over all m keys, in s [rows][m] (the dense path). */
static void dense_block(const attn__head *h, const head_bufs *b, size_t i0, size_t rows, float *s,
                        size_t *n_empty, size_t *n_allowed)
{
    const attn_params *p = h->p;
    const size_t n = h->n, m = h->m;
    bool empty[DENSE_MAX_ROWS];

    block_scores(h, i0, rows, s, b->tmp, b->keys_proj);
    if (b->rel_s)
        shaw_scores(h, b, i0, rows, s);
    if (p->softcap > 0.0f) {
        const float c = p->softcap, inv_c = 1.0f / p->softcap;
        for (size_t x = 0; x < rows * m; x++)
            s[x] = c * tanhf(s[x] * inv_c);
    }
    if (!attn__masks_empty(&p->masks))
        *n_allowed += attn__masks_apply(&p->masks, h->head, n, m, i0, rows, s, m, b->pat_row);
    else
        *n_allowed += rows * m;
    if (h->scores)
        memcpy(h->scores + i0 * m, s, rows * m * sizeof(float));

    for (size_t r = 0; r < rows; r++) {
        empty[r] = !softmax_row(s + r * m, m);
        if (empty[r])
            (*n_empty)++;
    }
    if (h->weights_acc) {
        float *acc = h->weights_acc + i0 * m;
        for (size_t x = 0; x < rows * m; x++)
            acc[x] += h->acc_scale * s[x];
    }
    if (h->out) {
        float *o = h->out + i0 * h->ldo;
        attn__sgemm(false, false, rows, h->dv, m, 1.0f, s, m, h->v, h->ldv, 0.0f, o, h->ldo);
        if (b->rel_w)
            shaw_values(h, b, i0, rows, s, o);
        /* Exactly 0, even if v holds values that 0 * v would not zero. */
        for (size_t r = 0; r < rows; r++)
            if (empty[r])
                memset(o + r * h->ldo, 0, h->dv * sizeof(float));
    }
}

static int cmp_size(const void *a, const void *b)
{
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Rows [i0, i0 + rows) (none a global query) over only the keys the pattern
 * can let them see: the band the window / blocks of these rows span, plus the
 * global keys, the rows' random keys and the appended columns, gathered.
 */
static void sparse_block(const attn__head *h, const head_bufs *b, size_t i0, size_t rows,
                         size_t *n_empty, size_t *n_allowed)
{
    const attn_params *p = h->p;
    const attn_pattern *pt = p->masks.pattern;
    const size_t n = h->n, m = h->m, mm = p->masks.m_masked ? p->masks.m_masked : m;
    const size_t ilast = i0 + rows - 1;
    size_t lo = SIZE_MAX, hi = 0, nc = 0;
    bool empty[BLOCK_ROWS];

    if (pt->has_window) { /* bounded here: sparse_width checked it */
        const size_t d = pt->dilation > 1 ? (size_t)pt->dilation : 1;
        const size_t l = (size_t)pt->window_left * d, r = (size_t)pt->window_right * d;
        const size_t wl = i0 > l ? i0 - l : 0, wh = sat_add(ilast, sat_add(r, 1));
        lo = wl < lo ? wl : lo;
        hi = wh > hi ? wh : hi;
    }
    if (pt->block_size > 0) {
        const size_t bs = (size_t)pt->block_size;
        const size_t bl = i0 / bs * bs, bh = sat_mul(ilast / bs + 1, bs);
        lo = bl < lo ? bl : lo;
        hi = bh > hi ? bh : hi;
    }
    if (hi > mm)
        hi = mm;
    if (p->masks.causal == ATTN_CAUSAL_TOP_LEFT || p->masks.causal == ATTN_CAUSAL_BOTTOM_RIGHT) {
        /* No row of the block sees past the last row's diagonal (attn_mask.c's
         * causal_end): the band stops there, which halves a symmetric window. */
        const size_t end = p->masks.causal == ATTN_CAUSAL_TOP_LEFT ? ilast + 1
                           : ilast + mm + 1 <= n                   ? 0
                                                                   : ilast + mm + 1 - n;
        hi = hi < end ? hi : end;
    }
    if (lo >= hi)
        lo = hi = 0;
    for (size_t j = lo; j < hi; j++)
        b->cols[nc++] = j;
    const size_t band = nc;
    for (size_t g = 0; g < pt->n_global; g++) {
        const size_t j = pt->global_tokens[g];
        if (j < mm && (j < lo || j >= hi))
            b->cols[nc++] = j;
    }
    const size_t nr = pt->random > 0 ? (size_t)pt->random : 0;
    for (size_t r = 0; r < rows && nr; r++) {
        attn__pattern_random(pt, i0 + r, mm, b->rnd + r * nr);
        for (size_t t = 0; t < nr; t++) {
            const size_t j = b->rnd[r * nr + t];
            if (j < lo || j >= hi)
                b->cols[nc++] = j;
        }
    }
    if (nc > band + 1) { /* extras: sorted, each once */
        qsort(b->cols + band, nc - band, sizeof(size_t), cmp_size);
        size_t u = band + 1;
        for (size_t x = band + 1; x < nc; x++)
            if (b->cols[x] != b->cols[u - 1])
                b->cols[u++] = b->cols[x];
        nc = u;
    }
    for (size_t j = mm; j < m; j++)
        b->cols[nc++] = j;
    const size_t w = nc;

    /* Gather the keys (or projected keys) and values of the tile's columns. */
    const bool additive = score_is_additive(p->score);
    const size_t kw = additive ? p->da : h->dk;
    for (size_t c = 0; c < w; c++) {
        const float *src =
            additive ? b->keys_proj + b->cols[c] * p->da : h->k + b->cols[c] * h->ldk;
        memcpy(b->gk + c * kw, src, kw * sizeof(float));
        if (h->out)
            memcpy(b->gv + c * h->dv, h->v + b->cols[c] * h->ldv, h->dv * sizeof(float));
    }

    float *s = b->tile;
    const float *q = h->q + i0 * h->ldq;
    switch (p->score) {
    case ATTN_SCORE_GENERAL:
        attn__sgemm(false, false, rows, h->dk, h->dq, 1.0f, q, h->ldq, p->w, h->dk, 0.0f, b->tmp,
                    h->dk);
        attn__sgemm(false, true, rows, w, h->dk, 1.0f, b->tmp, h->dk, b->gk, h->dk, 0.0f, s, w);
        break;
    case ATTN_SCORE_ADDITIVE:
        attn__sgemm(false, true, rows, p->da, h->dq, 1.0f, q, h->ldq, p->w1, h->dq, 0.0f, b->tmp,
                    p->da);
        additive_scores(b->tmp, b->gk, p->v, rows, w, p->da, s);
        break;
    case ATTN_SCORE_CONCAT:
        attn__sgemm(false, true, rows, p->da, h->dq, 1.0f, q, h->ldq, p->w, h->dq + h->dk, 0.0f,
                    b->tmp, p->da);
        additive_scores(b->tmp, b->gk, p->v, rows, w, p->da, s);
        break;
    default:
        attn__sgemm(false, true, rows, w, h->dk, h->scale, q, h->ldq, b->gk, h->dk, 0.0f, s, w);
        break;
    }
    if (p->softcap > 0.0f) {
        const float c = p->softcap, inv_c = 1.0f / p->softcap;
        for (size_t x = 0; x < rows * w; x++)
            s[x] = c * tanhf(s[x] * inv_c);
    }
    *n_allowed += attn__masks_apply_cols(&p->masks, h->head, n, m, i0, rows, b->cols, w,
                                         nr ? b->rnd : NULL, nr, s, w);
    if (h->scores) {
        for (size_t r = 0; r < rows; r++) {
            float *dst = h->scores + (i0 + r) * m;
            for (size_t j = 0; j < m; j++)
                dst[j] = -INFINITY;
            for (size_t c = 0; c < w; c++)
                dst[b->cols[c]] = s[r * w + c];
        }
    }
    for (size_t r = 0; r < rows; r++) {
        empty[r] = !softmax_row(s + r * w, w);
        if (empty[r])
            (*n_empty)++;
    }
    if (h->weights_acc) {
        for (size_t r = 0; r < rows; r++) {
            float *acc = h->weights_acc + (i0 + r) * m;
            for (size_t c = 0; c < w; c++)
                acc[b->cols[c]] += h->acc_scale * s[r * w + c];
        }
    }
    if (h->out) {
        float *o = h->out + i0 * h->ldo;
        attn__sgemm(false, false, rows, h->dv, w, 1.0f, s, w, b->gv, h->dv, 0.0f, o, h->ldo);
        for (size_t r = 0; r < rows; r++)
            if (empty[r])
                memset(o + r * h->ldo, 0, h->dv * sizeof(float));
    }
}

/* Keys [0, end) of the mm masked ones that causality leaves to query i of n
 * (the same bound as attn_mask.c's). */
static size_t causal_end(attn_causal causal, size_t n, size_t mm, size_t i)
{
    size_t end = mm;
    if (causal == ATTN_CAUSAL_TOP_LEFT)
        end = i + 1;
    else if (causal == ATTN_CAUSAL_BOTTOM_RIGHT)
        end = i + mm + 1 <= n ? 0 : i + mm + 1 - n;
    return end < mm ? end : mm;
}

/* Only causality removes pairs: no mask, padding, bias or pattern. */
static bool masks_causal_only(const attn_masks *mk)
{
    return !mk->mask && !mk->key_padding && !mk->bias && !mk->rel_bias && !mk->pattern;
}

/* Scores (scaled and capped, before masks) of queries [i0, i0 + rows) against
 * keys [j0, j0 + cols) into s [rows][cols]. tmp holds the block's projected
 * queries for general / additive / concat scores (flash_block computes them). */
static void tile_scores(const attn__head *h, const head_bufs *b, size_t i0, size_t rows,
                        size_t j0, size_t cols, float *s)
{
    const attn_params *p = h->p;
    switch (p->score) {
    case ATTN_SCORE_GENERAL:
        attn__sgemm(false, true, rows, cols, h->dk, 1.0f, b->tmp, h->dk, h->k + j0 * h->ldk,
                    h->ldk, 0.0f, s, cols);
        break;
    case ATTN_SCORE_ADDITIVE:
    case ATTN_SCORE_CONCAT:
        additive_scores(b->tmp, b->keys_proj + j0 * p->da, p->v, rows, cols, p->da, s);
        break;
    default:
        attn__sgemm(false, true, rows, cols, h->dk, h->scale, h->q + i0 * h->ldq, h->ldq,
                    h->k + j0 * h->ldk, h->ldk, 0.0f, s, cols);
        break;
    }
    if (p->softcap > 0.0f) {
        const float c = p->softcap, inv_c = 1.0f / p->softcap;
        for (size_t x = 0; x < rows * cols; x++)
            s[x] = c * tanhf(s[x] * inv_c);
    }
}

/*
 * Rows [i0, i0 + rows) by the flash path (FlashAttention's online softmax on
 * the CPU): for each tile of keys, scores, masks, then per row the new maximum
 * M' = max(M, max of the tile), the earlier sum and output rescaled by
 * exp(M - M'), the tile's exp(s - M') added to the sum and P V_tile to the
 * output, which accumulates in place in the caller's rows; at the end each
 * output row is divided by its sum. Tiles that causality removes entirely are
 * skipped. Without an output (h->out NULL) only the sums are kept, for the
 * counts of empty rows and allowed pairs.
 */
static void flash_block(const attn__head *h, const head_bufs *b, size_t i0, size_t rows,
                        size_t *n_empty, size_t *n_allowed)
{
    const attn_params *p = h->p;
    const attn_masks *mk = &p->masks;
    const size_t n = h->n, m = h->m, mm = mk->m_masked ? mk->m_masked : m;
    const size_t bc = b->plan.cols, ldo = h->ldo, dv = h->dv;
    const bool no_masks = attn__masks_empty(mk), causal_only = masks_causal_only(mk);
    const size_t nr = mk->pattern && mk->pattern->random > 0 ? (size_t)mk->pattern->random : 0;
    float *o = h->out ? h->out + i0 * ldo : NULL;
    float *s = b->tile;

    for (size_t r = 0; r < rows; r++) {
        b->run_max[r] = -INFINITY;
        b->run_sum[r] = 0.0;
        if (o)
            memset(o + r * ldo, 0, dv * sizeof(float));
    }
    /* the block's queries in key (general) or attention (additive) space */
    const float *q = h->q + i0 * h->ldq;
    if (p->score == ATTN_SCORE_GENERAL)
        attn__sgemm(false, false, rows, h->dk, h->dq, 1.0f, q, h->ldq, p->w, h->dk, 0.0f, b->tmp,
                    h->dk);
    else if (p->score == ATTN_SCORE_ADDITIVE)
        attn__sgemm(false, true, rows, p->da, h->dq, 1.0f, q, h->ldq, p->w1, h->dq, 0.0f, b->tmp,
                    p->da);
    else if (p->score == ATTN_SCORE_CONCAT)
        attn__sgemm(false, true, rows, p->da, h->dq, 1.0f, q, h->ldq, p->w, h->dq + h->dk, 0.0f,
                    b->tmp, p->da);
    for (size_t r = 0; nr && r < rows; r++)
        attn__pattern_random(mk->pattern, i0 + r, mm, b->rnd + r * nr);
    /* no row of the block sees a masked key at or past the last row's causal end */
    const size_t end_last = causal_end(mk->causal, n, mm, i0 + rows - 1);

    for (size_t j0 = 0; j0 < m; j0 += bc) {
        const size_t cols = m - j0 < bc ? m - j0 : bc;
        if (j0 >= end_last && j0 + cols <= mm)
            continue;
        tile_scores(h, b, i0, rows, j0, cols, s);
        if (no_masks) {
            *n_allowed += rows * cols;
        } else if (causal_only) {
            for (size_t r = 0; r < rows; r++) {
                const size_t end = causal_end(mk->causal, n, mm, i0 + r);
                /* masked columns [max(end, j0), min(mm, j0 + cols)) of this tile */
                const size_t c0 = end > j0 ? (end - j0 < cols ? end - j0 : cols) : 0;
                const size_t c1 = mm > j0 ? (mm - j0 < cols ? mm - j0 : cols) : 0;
                for (size_t c = c0; c < c1; c++)
                    s[r * cols + c] = -INFINITY;
                *n_allowed += cols - (c1 > c0 ? c1 - c0 : 0);
            }
        } else {
            for (size_t c = 0; c < cols; c++)
                b->tcols[c] = j0 + c;
            *n_allowed += attn__masks_apply_cols(mk, h->head, n, m, i0, rows, b->tcols, cols,
                                                 nr ? b->rnd : NULL, nr, s, cols);
        }
        for (size_t r = 0; r < rows; r++) {
            float *row = s + r * cols;
            const float tmax = vec_max(row, cols);
            if (tmax == -INFINITY) { /* nothing seen here: no weight, no change */
                memset(row, 0, cols * sizeof(float));
                continue;
            }
            const float mold = b->run_max[r], mnew = tmax > mold ? tmax : mold;
            const double tsum = vec_exp_sum(row, cols, mnew);
            if (mnew != mold) {
                const float alpha = mold == -INFINITY ? 0.0f : expf(mold - mnew);
                b->run_sum[r] *= alpha;
                if (o)
                    vec_scale(o + r * ldo, dv, alpha);
                b->run_max[r] = mnew;
            }
            b->run_sum[r] += tsum;
        }
        if (o)
            attn__sgemm(false, false, rows, dv, cols, 1.0f, s, cols, h->v + j0 * h->ldv, h->ldv,
                        1.0f, o, ldo);
    }
    for (size_t r = 0; r < rows; r++) {
        if (b->run_sum[r] > 0.0) {
            if (o)
                vec_scale(o + r * ldo, dv, (float)(1.0 / b->run_sum[r]));
        } else {
            (*n_empty)++;
            if (o) /* exactly 0, whatever the values */
                memset(o + r * ldo, 0, dv * sizeof(float));
        }
    }
}

void attn__head_forward(const attn__head *h, float *scratch, size_t *n_empty, size_t *n_allowed)
{
    const attn_params *p = h->p;
    const attn_pattern *pt = p->masks.pattern;
    const size_t n = h->n, m = h->m, mm = p->masks.m_masked ? p->masks.m_masked : m;
    head_bufs b = {0};

    if (n == 0)
        return;
    if (m == 0) { /* no keys at all: every row is empty */
        if (h->out)
            for (size_t i = 0; i < n; i++)
                memset(h->out + i * h->ldo, 0, h->dv * sizeof(float));
        *n_empty += n;
        return;
    }

    b.plan = head_plan_make(h);
    b.width = b.plan.width;
    const size_t bmax = b.plan.rows;
    float *cur = align16(scratch);
    if (b.width) {
        const size_t kw = score_is_additive(p->score) ? (p->da > h->dk ? p->da : h->dk) : h->dk;
        b.tile = cur;
        cur = align16(cur + bmax * b.width);
        b.gk = cur;
        cur = align16(cur + b.width * kw);
        b.gv = cur;
        cur = align16(cur + b.width * h->dv);
        b.cols = (size_t *)(void *)cur;
        cur = align16(cur + 2 * b.width);
        b.rnd = (size_t *)(void *)cur;
        cur = align16(cur + 2 * bmax * (size_t)pt->random);
        if (pt->n_global > 0) {
            b.srow = cur;
            cur = align16(cur + m);
            b.pat_row = (uint8_t *)cur;
            cur = align16(cur + mm / sizeof(float) + 1);
        }
    } else if (b.plan.flash) {
        const size_t nr = pt && pt->random > 0 ? (size_t)pt->random : 0;
        b.tile = cur;
        cur = align16(cur + bmax * b.plan.cols);
        b.run_max = cur;
        cur = align16(cur + bmax);
        b.run_sum = (double *)(void *)cur;
        cur = align16(cur + 2 * bmax);
        b.tcols = (size_t *)(void *)cur;
        cur = align16(cur + 2 * b.plan.cols);
        b.rnd = (size_t *)(void *)cur;
        cur = align16(cur + 2 * bmax * nr);
    } else {
        if (!h->weights) {
            b.sbuf = cur;
            cur = align16(cur + bmax * m);
        }
        if (pt) {
            b.pat_row = (uint8_t *)cur;
            cur = align16(cur + mm / sizeof(float) + 1);
        }
    }
    if (has_shaw(p)) {
        const size_t nb = 2 * p->pos.shaw_clip + 1;
        b.rel_s = cur;
        cur = align16(cur + bmax * nb);
        b.rel_w = cur;
        cur = align16(cur + bmax * nb);
    }
    if (p->score == ATTN_SCORE_GENERAL) {
        b.tmp = cur;
    } else if (score_is_additive(p->score)) {
        b.tmp = cur;
        b.keys_proj = align16(cur + bmax * p->da);
        /* K W2^T [m][da] once per head; concat reads W2 = W[:, dq:] in place. */
        const float *w2 = p->score == ATTN_SCORE_ADDITIVE ? p->w2 : p->w + h->dq;
        const size_t ldw2 = p->score == ATTN_SCORE_ADDITIVE ? h->dk : h->dq + h->dk;
        attn__sgemm(false, true, m, p->da, h->dk, 1.0f, h->k, h->ldk, w2, ldw2, 0.0f, b.keys_proj,
                    p->da);
    }

    if (b.plan.flash) {
        for (size_t i0 = 0; i0 < n; i0 += bmax) {
            const size_t rows = n - i0 < bmax ? n - i0 : bmax;
            flash_block(h, &b, i0, rows, n_empty, n_allowed);
        }
        return;
    }
    if (!b.width) {
        for (size_t i0 = 0; i0 < n; i0 += bmax) {
            const size_t rows = n - i0 < bmax ? n - i0 : bmax;
            /* Weights requested: build the block where the caller wants P, no copy. */
            float *s = h->weights ? h->weights + i0 * m : b.sbuf;
            dense_block(h, &b, i0, rows, s, n_empty, n_allowed);
        }
        return;
    }
    /* Sparse: runs of non-global queries in blocks; a global query sees every
     * key, so it runs alone over the dense row. */
    for (size_t i0 = 0; i0 < n;) {
        if (pt->n_global > 0 && attn__pattern_is_global(pt, i0)) {
            dense_block(h, &b, i0, 1, b.srow, n_empty, n_allowed);
            i0++;
            continue;
        }
        size_t rows = 1;
        while (rows < BLOCK_ROWS && i0 + rows < n &&
               !(pt->n_global > 0 && attn__pattern_is_global(pt, i0 + rows)))
            rows++;
        sparse_block(h, &b, i0, rows, n_empty, n_allowed);
        i0 += rows;
    }
}

attn_status attn_forward(attn_ws *ws, const attn_params *p, size_t n, size_t m, size_t dq,
                         size_t dk, size_t dv, const float *q, const float *k, const float *v,
                         attn_outputs *out, attn_result *res)
{
    attn_status st;
    size_t t;

    if (!ws || !p || !out)
        return ATTN_ERR_INVALID;
    if ((st = attn__params_check(p)) != ATTN_OK)
        return st;
    if ((st = attn__masks_check(&p->masks, n, m)) != ATTN_OK)
        return st;
    if (dq == 0 || dk == 0 || (score_is_dot(p->score) && dq != dk))
        return ATTN_ERR_SHAPE;
    if (p->pos.rope && (dq % 2 != 0 || dk % 2 != 0))
        return ATTN_ERR_SHAPE;
    if (n > 0 && m > 0 && (!q || !k || !v))
        return ATTN_ERR_INVALID;
    /* Every dimension and leading dimension handed to sgemm must fit its int. */
    const size_t da = score_is_additive(p->score) ? p->da : 0;
    if (!attn__size_add(dq, dk, &t) || !attn__blas_fits(t) || !attn__blas_fits(n) ||
        !attn__blas_fits(m) || !attn__blas_fits(dv) || !attn__blas_fits(da))
        return ATTN_ERR_OVERFLOW;
    /* Element counts of the caller's tensors must be addressable. */
    if (!attn__size_mul(n, m, &t) || !attn__size_mul(t, sizeof(float), &t) ||
        !attn__size_mul(n, dv, &t) || !attn__size_mul(t, sizeof(float), &t))
        return ATTN_ERR_OVERFLOW;

    attn__head h = {
        .p = p,
        .scale = attn__scale_resolve(p, dk),
        .n = n,
        .m = m,
        .dq = dq,
        .dk = dk,
        .dv = dv,
        .q = q,
        .ldq = dq,
        .k = k,
        .ldk = dk,
        .v = v,
        .ldv = dv,
        .out = out->output,
        .ldo = dv,
        .weights = out->weights,
        .scores = out->scores,
    };
    size_t n_floats;
    if ((st = attn__head_scratch_floats(&h, &n_floats)) != ATTN_OK)
        return st;

    attn__ws_reset(ws);
    float *scratch = NULL;
    if (n_floats > 0 && !(scratch = attn__ws_floats(ws, n_floats)))
        return ATTN_ERR_NOMEM;
    if (p->pos.rope && n > 0 && m > 0) {
        /* Rotated copies: the caller's q and k stay as they are. */
        float *qr = attn__ws_floats(ws, n * dq), *kr = attn__ws_floats(ws, m * dk);
        if (!qr || !kr)
            return ATTN_ERR_NOMEM;
        memcpy(qr, q, n * dq * sizeof(float));
        memcpy(kr, k, m * dk * sizeof(float));
        const double base = p->pos.rope_base > 0.0f ? p->pos.rope_base : 10000.0;
        if ((st = attn_rope_apply(p->pos.rope_style, base, n, dq, 0, qr, dq)) != ATTN_OK ||
            (st = attn_rope_apply(p->pos.rope_style, base, m, dk, 0, kr, dk)) != ATTN_OK)
            return st;
        h.q = qr;
        h.k = kr;
    }

    size_t n_empty = 0, n_allowed = 0;
    attn__head_forward(&h, scratch, &n_empty, &n_allowed);
    if (res) {
        res->scale = h.scale;
        res->n_empty_rows = n_empty;
        res->n_allowed_pairs = n_allowed;
    }
    return ATTN_OK;
}
