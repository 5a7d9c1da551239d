/* attn_linear.c - linear attention (elu + 1 and FAVOR+ feature maps), non-causal and causal. */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

#define LINEAR_EPS 1e-6f

/* Rows per feature block (queries, and keys when their features are not kept
 * whole): large enough that each sgemm amortises BLAS's threading, small enough
 * that the scratch does not grow with n. */
#define ROW_BLOCK 512
/* Causal query chunk: the in-chunk matrix is CHUNK x CHUNK, its cost per row
 * CHUNK (F + dv) against F dv for the prefix state. */
#define CHUNK 64

/* Mixed into the FAVOR+ seed so that seed s here and seed s of the seeded
 * multi-head weights give unrelated numbers (the fractional part of sqrt 2). */
#define FAVOR_SEED_MIX 0x6A09E667F3BCC909ull

static float elu1(float x)
{
    return x > 0 ? x + 1.0f : expf(x);
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* Last key index + 1 that query i sees among the mm masked keys. */
static size_t key_limit(attn_causal causal, size_t i, size_t n, size_t mm)
{
    if (causal == ATTN_CAUSAL_NONE)
        return mm;
    size_t lim = i + 1;
    if (causal == ATTN_CAUSAL_BOTTOM_RIGHT) {
        if (mm >= n)
            lim += mm - n;
        else
            lim = (i + 1 > n - mm) ? i + 1 - (n - mm) : 0;
    }
    return lim < mm ? lim : mm;
}

static size_t feature_width(const attn_linear_kernel *kern, size_t d)
{
    return kern->feature_map == ATTN_FEATURE_MAP_FAVOR ? kern->num_features : d;
}

static float *align16(float *p)
{
    size_t off = (size_t)((uintptr_t)p / sizeof(float) % 16);
    return off ? p + (16 - off) : p;
}

/* ------------------------------------------------------ FAVOR+ projection */

/* One standard normal by Box-Muller (the cosine branch), as attn_init.c draws them. */
static double rng_normal(uint64_t *st)
{
    const double two_pi = 6.283185307179586;
    double u1 = 1.0 - (double)attn_rng_uniform(st); /* (0, 1]: log stays finite */
    double u2 = (double)attn_rng_uniform(st);
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}

/* Draws row i of blk [..][d] and orthonormalises it against rows 0..i-1 (modified
 * Gram-Schmidt, twice); redraws while it keeps under 1e-6 of its length. */
static void orth_row(double *blk, size_t i, size_t d, uint64_t *st)
{
    double *g = blk + i * d;
    for (;;) {
        double before = 0, after = 0;
        for (size_t c = 0; c < d; c++) {
            g[c] = rng_normal(st);
            before += g[c] * g[c];
        }
        for (int pass = 0; pass < 2; pass++) {
            for (size_t j = 0; j < i; j++) {
                const double *b = blk + j * d;
                double dot = 0;
                for (size_t c = 0; c < d; c++)
                    dot += g[c] * b[c];
                for (size_t c = 0; c < d; c++)
                    g[c] -= dot * b[c];
            }
        }
        for (size_t c = 0; c < d; c++)
            after += g[c] * g[c];
        if (after > 1e-12 * before && after > 0) {
            const double inv = 1.0 / sqrt(after);
            for (size_t c = 0; c < d; c++)
                g[c] *= inv;
            return;
        }
    }
}

/* The projection of attn.h's FAVOR+ comment into w [r][d]; blk holds d * d doubles. */
static void favor_draw(size_t r, size_t d, uint64_t seed, float *w, double *blk)
{
    uint64_t st = seed ^ FAVOR_SEED_MIX;
    for (size_t r0 = 0; r0 < r; r0 += d) {
        const size_t rows = min_size(d, r - r0);
        for (size_t i = 0; i < rows; i++)
            orth_row(blk, i, d, &st);
        for (size_t x = 0; x < rows * d; x++)
            w[r0 * d + x] = (float)blk[x];
    }
    for (size_t f = 0; f < r; f++) {
        double sq = 0;
        for (size_t c = 0; c < d; c++) {
            const double g = rng_normal(&st);
            sq += g * g;
        }
        const float len = (float)sqrt(sq);
        for (size_t c = 0; c < d; c++)
            w[f * d + c] *= len;
    }
}

attn_status attn__lin_kernel_check(const attn_linear_kernel *kern)
{
    if (!kern)
        return ATTN_ERR_INVALID;
    if (kern->feature_map == ATTN_FEATURE_MAP_ELU)
        return ATTN_OK;
    if (kern->feature_map != ATTN_FEATURE_MAP_FAVOR || kern->num_features < 1 ||
        kern->num_features > ATTN_FAVOR_MAX_FEATURES)
        return ATTN_ERR_INVALID;
    return ATTN_OK;
}

attn_status attn__lin_proj_floats(const attn_linear_kernel *kern, size_t d, size_t *n_floats)
{
    size_t a, b;
    *n_floats = 0;
    if (kern->feature_map != ATTN_FEATURE_MAP_FAVOR)
        return ATTN_OK;
    /* w [r][d], then d * d doubles for one Gram-Schmidt block, each on its own lines */
    if (!attn__size_mul(kern->num_features, d, &a) || !attn__size_mul(d, d, &b) ||
        !attn__size_mul(b, 2, &b) || !attn__size_add(a, b, &a) || !attn__size_add(a, 48, &a))
        return ATTN_ERR_OVERFLOW;
    *n_floats = a;
    return ATTN_OK;
}

const float *attn__lin_proj_draw(const attn_linear_kernel *kern, size_t d, float *scratch)
{
    if (kern->feature_map != ATTN_FEATURE_MAP_FAVOR)
        return NULL;
    float *w = align16(scratch);
    double *blk = (double *)(void *)align16(w + kern->num_features * d);
    favor_draw(kern->num_features, d, kern->seed, w, blk);
    return w;
}

attn_status attn_favor_projection(attn_ws *ws, size_t r, size_t d, uint64_t seed, float *proj)
{
    attn_linear_kernel kern = {ATTN_FEATURE_MAP_FAVOR, r, seed};
    size_t nf;
    attn_status st;
    if (!ws || !proj || d == 0 || attn__lin_kernel_check(&kern) != ATTN_OK)
        return ATTN_ERR_INVALID;
    if ((st = attn__lin_proj_floats(&kern, d, &nf)) != ATTN_OK)
        return st;
    attn__ws_reset(ws);
    float *scratch = attn__ws_floats(ws, nf);
    if (!scratch)
        return ATTN_ERR_NOMEM;
    const float *w = attn__lin_proj_draw(&kern, d, scratch);
    memcpy(proj, w, r * d * sizeof *proj);
    return ATTN_OK;
}

/* ------------------------------------------------------ feature maps */

typedef struct lin_ctx {
    const attn__lin_head *h;
    bool favor;
    size_t F;        /* feature width: d (elu) or r (favor) */
    size_t mm;       /* masked keys */
    float alpha;     /* favor: d^(-1/4), x' = alpha x */
    float ratio;     /* favor: 1 / sqrt(r) */
    float key_shift; /* favor: largest key exponent */
} lin_ctx;

static bool key_padded(const lin_ctx *c, size_t j)
{
    return c->h->key_padding && j < c->mm && c->h->key_padding[j];
}

/* FAVOR+ exponents w_f . x' - |x'|^2 / 2 of rows x [rows] (stride ldx) into e [rows][r]. */
static void favor_exponents(const lin_ctx *c, const float *x, size_t rows, size_t ldx, float *e)
{
    const size_t d = c->h->d, F = c->F;
    const double a2 = (double)c->alpha * (double)c->alpha;
    attn__sgemm(false, true, rows, F, d, c->alpha, x, ldx, c->h->proj, d, 0.0f, e, F);
    for (size_t i = 0; i < rows; i++) {
        const float *xi = x + i * ldx;
        double sq = 0;
        for (size_t t = 0; t < d; t++)
            sq += (double)xi[t] * xi[t];
        const float half = (float)(0.5 * a2 * sq);
        float *ei = e + i * F;
        for (size_t f = 0; f < F; f++)
            ei[f] -= half;
    }
}

/* phi of query rows q[i0 .. i0 + rows) into dst [rows][F]; favor rows shift by their own max. */
static void query_features(const lin_ctx *c, size_t i0, size_t rows, float *dst)
{
    const attn__lin_head *h = c->h;
    const size_t F = c->F;
    const float *x = h->q + i0 * h->ldq;
    if (!c->favor) {
        for (size_t i = 0; i < rows; i++)
            for (size_t f = 0; f < F; f++)
                dst[i * F + f] = elu1(x[i * h->ldq + f]);
        return;
    }
    favor_exponents(c, x, rows, h->ldq, dst);
    for (size_t i = 0; i < rows; i++) {
        float *row = dst + i * F, mx = row[0];
        for (size_t f = 1; f < F; f++)
            mx = row[f] > mx ? row[f] : mx;
        for (size_t f = 0; f < F; f++)
            row[f] = expf(row[f] - mx) * c->ratio;
    }
}

/* phi of keys [j0, j0 + rows) into dst [rows][F]; padding keys get 0. */
static void key_features(const lin_ctx *c, size_t j0, size_t rows, float *dst)
{
    const attn__lin_head *h = c->h;
    const size_t F = c->F;
    const float *x = h->k + j0 * h->ldk;
    if (!c->favor) {
        for (size_t i = 0; i < rows; i++)
            for (size_t f = 0; f < F; f++)
                dst[i * F + f] = elu1(x[i * h->ldk + f]);
    } else {
        favor_exponents(c, x, rows, h->ldk, dst);
        for (size_t x2 = 0; x2 < rows * F; x2++)
            dst[x2] = expf(dst[x2] - c->key_shift) * c->ratio;
    }
    for (size_t i = 0; i < rows; i++)
        if (key_padded(c, j0 + i))
            memset(dst + i * F, 0, F * sizeof *dst);
}

/* Largest exponent over the keys that are not padding (0 when there are none). */
static float favor_key_shift(const lin_ctx *c, float *buf)
{
    const attn__lin_head *h = c->h;
    float mx = -INFINITY;
    for (size_t j0 = 0; j0 < h->m; j0 += ROW_BLOCK) {
        const size_t rows = min_size(ROW_BLOCK, h->m - j0);
        favor_exponents(c, h->k + j0 * h->ldk, rows, h->ldk, buf);
        for (size_t i = 0; i < rows; i++) {
            if (key_padded(c, j0 + i))
                continue;
            for (size_t f = 0; f < c->F; f++)
                mx = buf[i * c->F + f] > mx ? buf[i * c->F + f] : mx;
        }
    }
    return mx == -INFINITY ? 0.0f : mx;
}

/* ------------------------------------------------------ attention */

/* Scratch of attn__lin_forward, carved from the caller's block. */
typedef struct lin_bufs {
    float *fq;  /* [ROW_BLOCK][F] query features of a block or chunk */
    float *fk;  /* [ROW_BLOCK][F] key features of a block, or [m][F] all keys (weights) */
    float *loc; /* [CHUNK][CHUNK] causal in-chunk matrix */
    float *den; /* [ROW_BLOCK] normalisers */
    float *s;   /* [F][dv] sum of phi(k)^T v (when out is wanted) */
    float *z;   /* [F] sum of phi(k) */
} lin_bufs;

attn_status attn__lin_scratch_floats(const attn__lin_head *h, size_t *n_floats)
{
    const size_t F = feature_width(h->kern, h->d);
    const size_t krows = h->weights ? (h->m > ROW_BLOCK ? h->m : ROW_BLOCK) : ROW_BLOCK;
    size_t total = 0, t;
    if (h->n == 0) {
        *n_floats = 0;
        return ATTN_OK;
    }
    if (!attn__size_mul(ROW_BLOCK, F, &t) || !attn__size_add(total, t, &total) ||
        !attn__size_mul(krows, F, &t) || !attn__size_add(total, t, &total) ||
        !attn__size_add(total, CHUNK * CHUNK + ROW_BLOCK, &total) ||
        !attn__size_mul(F, h->dv + 1, &t) || !attn__size_add(total, t, &total) ||
        !attn__size_add(total, 8 * 16, &total))
        return ATTN_ERR_OVERFLOW;
    *n_floats = total;
    return ATTN_OK;
}

/* S += phi(K)^T V and z += the column sums of phi(K) over keys [j0, j1). kf_all: all
 * key features when kept (weights), else computed block by block into buf. */
static void state_add(const lin_ctx *c, const lin_bufs *b, const float *kf_all, size_t j0,
                      size_t j1)
{
    const attn__lin_head *h = c->h;
    const size_t F = c->F;
    for (size_t a = j0; a < j1; a += ROW_BLOCK) {
        const size_t rows = min_size(ROW_BLOCK, j1 - a);
        const float *kf = kf_all ? kf_all + a * F : b->fk;
        if (!kf_all)
            key_features(c, a, rows, b->fk);
        if (b->s)
            attn__sgemm(true, false, F, h->dv, rows, 1.0f, kf, F, h->v + a * h->ldv, h->ldv, 1.0f,
                        b->s, h->dv);
        for (size_t r = 0; r < rows; r++)
            for (size_t f = 0; f < F; f++)
                b->z[f] += kf[r * F + f];
    }
}

/* Normalisers den[r] = phi(q_r) . z + eps of one chunk (before in-chunk terms). */
static void chunk_den(const lin_ctx *c, const lin_bufs *b, size_t rows)
{
    for (size_t r = 0; r < rows; r++) {
        double acc = 0;
        for (size_t f = 0; f < c->F; f++)
            acc += (double)b->fq[r * c->F + f] * b->z[f];
        b->den[r] = (float)acc + LINEAR_EPS;
    }
}

/* Divides row i0 + r of out and weights by den[r]; rows with no key left
 * (empty[r]) become exactly 0. Adds the weights to weights_acc. */
static void chunk_finish(const attn__lin_head *h, const lin_bufs *b, size_t i0, size_t rows,
                         const bool *empty)
{
    for (size_t r = 0; r < rows; r++) {
        const size_t i = i0 + r;
        const float inv = empty[r] ? 0.0f : 1.0f / b->den[r];
        if (h->out) {
            float *o = h->out + i * h->ldo;
            for (size_t e = 0; e < h->dv; e++)
                o[e] = empty[r] ? 0.0f : o[e] * inv;
        }
        if (h->weights) {
            float *w = h->weights + i * h->m;
            for (size_t j = 0; j < h->m; j++)
                w[j] = empty[r] ? 0.0f : w[j] * inv;
            if (h->weights_acc)
                for (size_t j = 0; j < h->m; j++)
                    h->weights_acc[i * h->m + j] += h->acc_scale * w[j];
        }
    }
}

void attn__lin_forward(const attn__lin_head *h, float *scratch, size_t *n_empty, size_t *n_allowed)
{
    const size_t n = h->n, m = h->m, mm = h->m_masked, dv = h->dv;
    const bool favor = h->kern->feature_map == ATTN_FEATURE_MAP_FAVOR;
    lin_ctx c = {
        .h = h,
        .favor = favor,
        .F = feature_width(h->kern, h->d),
        .mm = mm,
        .alpha = favor ? (float)pow((double)h->d, -0.25) : 1.0f,
        .ratio = favor ? (float)(1.0 / sqrt((double)h->kern->num_features)) : 1.0f,
    };
    const size_t F = c.F;
    lin_bufs b = {0};
    bool empty[ROW_BLOCK];

    if (n == 0)
        return;
    float *cur = align16(scratch);
    b.fq = cur;
    cur = align16(cur + ROW_BLOCK * F);
    b.fk = cur;
    cur = align16(cur + (h->weights ? (m > ROW_BLOCK ? m : ROW_BLOCK) : ROW_BLOCK) * F);
    b.loc = cur;
    cur = align16(cur + CHUNK * CHUNK);
    b.den = cur;
    cur = align16(cur + ROW_BLOCK);
    b.z = cur;
    cur = align16(cur + F);
    if (h->out)
        b.s = cur;

    if (favor)
        c.key_shift = favor_key_shift(&c, b.fk);
    const float *kf_all = NULL;
    if (h->weights) {
        for (size_t j0 = 0; j0 < m; j0 += ROW_BLOCK)
            key_features(&c, j0, min_size(ROW_BLOCK, m - j0), b.fk + j0 * F);
        kf_all = b.fk;
    }
    if (b.s)
        memset(b.s, 0, F * dv * sizeof *b.s);
    memset(b.z, 0, F * sizeof *b.z);

    /* Keys a query may see: the unpadded ones below its limit, plus the appended ones. */
    const size_t extra = m - mm;
    size_t n_unpadded = 0; /* among keys [0, counted) */
    size_t counted = 0;

    if (h->causal == ATTN_CAUSAL_NONE) {
        state_add(&c, &b, kf_all, 0, m);
        for (; counted < mm; counted++)
            n_unpadded += !key_padded(&c, counted);
        const size_t seen = n_unpadded + extra;
        for (size_t i0 = 0; i0 < n; i0 += ROW_BLOCK) {
            const size_t rows = min_size(ROW_BLOCK, n - i0);
            query_features(&c, i0, rows, b.fq);
            chunk_den(&c, &b, rows);
            if (h->out)
                attn__sgemm(false, false, rows, dv, F, 1.0f, b.fq, F, b.s, dv, 0.0f,
                            h->out + i0 * h->ldo, h->ldo);
            if (h->weights)
                attn__sgemm(false, true, rows, m, F, 1.0f, b.fq, F, kf_all, F, 0.0f,
                            h->weights + i0 * m, m);
            for (size_t r = 0; r < rows; r++)
                empty[r] = seen == 0;
            chunk_finish(h, &b, i0, rows, empty);
        }
        *n_allowed += n * seen;
        *n_empty += seen == 0 ? n : 0;
        return;
    }

    /*
     * Causal, in chunks of queries [i0, i1): the state holds the keys every
     * query of the chunk sees, [0, a) with a = limit(i0) (plus the appended
     * keys); the keys [a, b) that only some of them see (b = limit(i1 - 1),
     * b - a < CHUNK) go through a small masked matrix, then join the
     * state. Everything is sgemm but that matrix's mask.
     */
    state_add(&c, &b, kf_all, mm, m);
    size_t seen = 0;
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        const size_t rows = min_size(CHUNK, n - i0);
        const size_t a = key_limit(h->causal, i0, n, mm);
        const size_t bl = key_limit(h->causal, i0 + rows - 1, n, mm);
        state_add(&c, &b, kf_all, seen, a);
        seen = a > seen ? a : seen;
        query_features(&c, i0, rows, b.fq);
        chunk_den(&c, &b, rows);
        float *o = h->out ? h->out + i0 * h->ldo : NULL;
        if (o)
            attn__sgemm(false, false, rows, dv, F, 1.0f, b.fq, F, b.s, dv, 0.0f, o, h->ldo);
        if (bl > a) {
            const size_t w = bl - a;
            const float *kl = kf_all ? kf_all + a * F : b.fk;
            if (!kf_all)
                key_features(&c, a, w, b.fk);
            attn__sgemm(false, true, rows, w, F, 1.0f, b.fq, F, kl, F, 0.0f, b.loc, w);
            for (size_t r = 0; r < rows; r++) {
                const size_t lim = key_limit(h->causal, i0 + r, n, mm);
                double acc = 0;
                for (size_t j = 0; j < w; j++) {
                    if (a + j >= lim)
                        b.loc[r * w + j] = 0.0f;
                    acc += b.loc[r * w + j];
                }
                b.den[r] += (float)acc;
            }
            if (o)
                attn__sgemm(false, false, rows, dv, w, 1.0f, b.loc, w, h->v + a * h->ldv, h->ldv,
                            1.0f, o, h->ldo);
            /* the chunk's own keys join the state (kl is still in b.fk) */
            if (b.s)
                attn__sgemm(true, false, F, dv, w, 1.0f, kl, F, h->v + a * h->ldv, h->ldv, 1.0f,
                            b.s, dv);
            for (size_t r = 0; r < w; r++)
                for (size_t f = 0; f < F; f++)
                    b.z[f] += kl[r * F + f];
            seen = bl;
        }
        if (h->weights) {
            float *wr = h->weights + i0 * m;
            attn__sgemm(false, true, rows, m, F, 1.0f, b.fq, F, kf_all, F, 0.0f, wr, m);
            for (size_t r = 0; r < rows; r++) {
                const size_t lim = key_limit(h->causal, i0 + r, n, mm);
                for (size_t j = lim; j < mm; j++)
                    wr[r * m + j] = 0.0f;
            }
        }
        for (size_t r = 0; r < rows; r++) {
            const size_t lim = key_limit(h->causal, i0 + r, n, mm);
            for (; counted < lim; counted++)
                n_unpadded += !key_padded(&c, counted);
            const size_t row_seen = n_unpadded + extra;
            empty[r] = row_seen == 0;
            *n_empty += empty[r];
            *n_allowed += row_seen;
        }
        chunk_finish(h, &b, i0, rows, empty);
    }
}

attn_status attn_linear_kernel_forward(attn_ws *ws, const attn_linear_kernel *kern,
                                       attn_causal causal, size_t n, size_t m, size_t d, size_t dv,
                                       const float *q, const float *k, const float *v,
                                       const uint8_t *key_padding, float *out, float *weights,
                                       attn_result *res)
{
    attn_status st;
    size_t t;
    if (ws == NULL || (causal != ATTN_CAUSAL_NONE && causal != ATTN_CAUSAL_TOP_LEFT &&
                       causal != ATTN_CAUSAL_BOTTOM_RIGHT))
        return ATTN_ERR_INVALID;
    if ((st = attn__lin_kernel_check(kern)) != ATTN_OK)
        return st;
    if (d == 0 || dv == 0)
        return ATTN_ERR_SHAPE;
    if (n > 0 && m > 0 && (q == NULL || k == NULL || v == NULL))
        return ATTN_ERR_INVALID;
    const size_t F = feature_width(kern, d);
    if (!attn__size_mul(n, d, &t) || !attn__size_mul(m, d, &t) || !attn__size_mul(m, dv, &t) ||
        !attn__size_mul(n, dv, &t) || !attn__size_mul(n, m, &t) ||
        !attn__size_mul(t, sizeof(float), &t) || !attn__blas_fits(n) || !attn__blas_fits(m) ||
        !attn__blas_fits(d) || !attn__blas_fits(dv) || !attn__blas_fits(F))
        return ATTN_ERR_OVERFLOW;

    attn__lin_head h = {
        .kern = kern,
        .causal = causal,
        .n = n,
        .m = m,
        .m_masked = m,
        .d = d,
        .dv = dv,
        .q = q,
        .ldq = d,
        .k = k,
        .ldk = d,
        .v = v,
        .ldv = dv,
        .key_padding = key_padding,
        .out = out,
        .ldo = dv,
        .weights = weights,
    };
    size_t head_floats, proj_floats;
    if ((st = attn__lin_scratch_floats(&h, &head_floats)) != ATTN_OK ||
        (st = attn__lin_proj_floats(kern, d, &proj_floats)) != ATTN_OK)
        return st;
    attn__ws_reset(ws);
    size_t n_empty = 0, n_allowed = 0;
    if (n > 0) {
        float *ps = proj_floats ? attn__ws_floats(ws, proj_floats) : NULL;
        float *hs = attn__ws_floats(ws, head_floats);
        if ((proj_floats && !ps) || !hs)
            return ATTN_ERR_NOMEM;
        h.proj = attn__lin_proj_draw(kern, d, ps);
        attn__lin_forward(&h, hs, &n_empty, &n_allowed);
    }
    if (res) {
        res->scale =
            kern->feature_map == ATTN_FEATURE_MAP_FAVOR ? (float)(1.0 / sqrt((double)d)) : 1.0f;
        res->n_empty_rows = n_empty;
        res->n_allowed_pairs = n_allowed;
    }
    return ATTN_OK;
}

attn_status attn_linear_forward(attn_ws *ws, attn_causal causal, size_t n, size_t m, size_t d,
                                size_t dv, const float *q, const float *k, const float *v,
                                const uint8_t *key_padding, float *out, float *weights)
{
    const attn_linear_kernel elu = {ATTN_FEATURE_MAP_ELU, 0, 0};
    return attn_linear_kernel_forward(ws, &elu, causal, n, m, d, dv, q, k, v, key_padding, out,
                                      weights, NULL);
}
