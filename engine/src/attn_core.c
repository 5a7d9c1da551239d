/* attn_core.c - one attention head: scores, softcap, masks, softmax and P*V in row blocks. */
#include "attn_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Queries per block: the score block is BLOCK_ROWS x m floats, so memory stays
 * O(m) per call while each sgemm is still large enough to run at full speed. */
#define BLOCK_ROWS 64

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

attn_status attn__head_scratch_floats(const attn__head *h, size_t *n_floats)
{
    const attn_score s = h->p->score;
    const size_t rows = h->n < BLOCK_ROWS ? h->n : BLOCK_ROWS;
    size_t total = 0, t;

    if (h->n == 0 || h->m == 0) {
        *n_floats = 0;
        return ATTN_OK;
    }
    if (!h->weights) { /* otherwise scores are built in the caller's weights rows */
        if (!attn__size_mul(rows, h->m, &total))
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
    if (!attn__size_add(total, 3 * 16, &total))
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
    float mx = -INFINITY;
    for (size_t j = 0; j < m; j++)
        if (row[j] > mx)
            mx = row[j];
    if (mx == -INFINITY) {
        memset(row, 0, m * sizeof(float));
        return false;
    }
    double sum = 0.0;
    for (size_t j = 0; j < m; j++) {
        float e = expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < m; j++)
        row[j] *= inv;
    return true;
}

void attn__head_forward(const attn__head *h, float *scratch, size_t *n_empty, size_t *n_allowed)
{
    const attn_params *p = h->p;
    const size_t n = h->n, m = h->m;
    const size_t bmax = n < BLOCK_ROWS ? n : BLOCK_ROWS;
    const bool masked = !attn__masks_empty(&p->masks);
    float *sbuf = NULL, *tmp = NULL, *keys_proj = NULL;

    if (n == 0)
        return;
    if (m == 0) { /* no keys at all: every row is empty */
        if (h->out)
            for (size_t i = 0; i < n; i++)
                memset(h->out + i * h->ldo, 0, h->dv * sizeof(float));
        *n_empty += n;
        return;
    }

    float *cur = align16(scratch);
    if (!h->weights) {
        sbuf = cur;
        cur = align16(cur + bmax * m);
    }
    if (p->score == ATTN_SCORE_GENERAL) {
        tmp = cur;
    } else if (score_is_additive(p->score)) {
        tmp = cur;
        keys_proj = align16(cur + bmax * p->da);
        /* K W2^T [m][da] once per head; concat reads W2 = W[:, dq:] in place. */
        const float *w2 = p->score == ATTN_SCORE_ADDITIVE ? p->w2 : p->w + h->dq;
        const size_t ldw2 = p->score == ATTN_SCORE_ADDITIVE ? h->dk : h->dq + h->dk;
        attn__sgemm(false, true, m, p->da, h->dk, 1.0f, h->k, h->ldk, w2, ldw2, 0.0f, keys_proj,
                    p->da);
    }

    for (size_t i0 = 0; i0 < n; i0 += BLOCK_ROWS) {
        const size_t rows = n - i0 < BLOCK_ROWS ? n - i0 : BLOCK_ROWS;
        /* Weights requested: build the block where the caller wants P, no copy. */
        float *s = h->weights ? h->weights + i0 * m : sbuf;
        bool empty[BLOCK_ROWS];

        block_scores(h, i0, rows, s, tmp, keys_proj);
        if (p->softcap > 0.0f) {
            const float c = p->softcap, inv_c = 1.0f / p->softcap;
            for (size_t x = 0; x < rows * m; x++)
                s[x] = c * tanhf(s[x] * inv_c);
        }
        if (masked)
            *n_allowed += attn__masks_apply(&p->masks, h->head, n, m, i0, rows, s, m);
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
            /* Exactly 0, even if v holds values that 0 * v would not zero. */
            for (size_t r = 0; r < rows; r++)
                if (empty[r])
                    memset(o + r * h->ldo, 0, h->dv * sizeof(float));
        }
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
    if ((st = attn__masks_check(&p->masks, m)) != ATTN_OK)
        return st;
    if (dq == 0 || dk == 0 || (score_is_dot(p->score) && dq != dk))
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

    size_t n_empty = 0, n_allowed = 0;
    attn__head_forward(&h, scratch, &n_empty, &n_allowed);
    if (res) {
        res->scale = h.scale;
        res->n_empty_rows = n_empty;
        res->n_allowed_pairs = n_allowed;
    }
    return ATTN_OK;
}
