/* attn_mha.c - multi-head attention as torch.nn.MultiheadAttention computes it (plus GQA/MQA). */
#include "attn_internal.h"

#include <string.h>

size_t attn_mha_keys(const attn_mha_config *c, const attn_mha_weights *w, size_t m)
{
    size_t keys = m;
    if (w && w->bias_k)
        keys++;
    if (c && c->add_zero_attn)
        keys++;
    return keys;
}

/* y [rows][n_out] (row stride ldy) = x [rows][n_in] * wt^T + b, wt [n_out][n_in] (Linear layout).
 */
static void linear(const float *x, size_t rows, size_t n_in, const float *wt, const float *b,
                   size_t n_out, float *y, size_t ldy)
{
    if (b)
        for (size_t r = 0; r < rows; r++)
            memcpy(y + r * ldy, b, n_out * sizeof(float));
    attn__sgemm(false, true, rows, n_out, n_in, 1.0f, x, n_in, wt, n_in, b ? 1.0f : 0.0f, y, ldy);
}

/* Dimensions of one call, resolved from the config. */
typedef struct mha_dims {
    size_t E, H, Hkv, hd, Ekv, kdim, vdim, keys;
} mha_dims;

/* A linear kernel (attn_mha_config.kernel) takes causal and key_padding only. */
static attn_status mha_linear_check(const attn_mha_config *c)
{
    const attn_params *p = &c->attn;
    attn_status st = attn__lin_kernel_check(&c->kernel);
    if (st != ATTN_OK)
        return st;
    if (p->score != ATTN_SCORE_SCALED_DOT || p->scale > 0.0f || p->softcap != 0.0f ||
        p->masks.mask || p->masks.bias || p->masks.pattern || p->masks.rel_bias || p->pos.shaw_k ||
        p->pos.shaw_v)
        return ATTN_ERR_UNSUPPORTED;
    return ATTN_OK;
}

static attn_status mha_check(const attn_mha_config *c, const attn_mha_weights *w, size_t n,
                             size_t m, const float *query, const float *key, const float *value,
                             mha_dims *d)
{
    attn_status st;
    size_t t;

    d->E = c->embed_dim;
    d->H = c->num_heads;
    d->Hkv = c->num_kv_heads ? c->num_kv_heads : c->num_heads;
    d->kdim = c->kdim ? c->kdim : c->embed_dim;
    d->vdim = c->vdim ? c->vdim : c->embed_dim;
    if (d->E == 0 || d->H == 0 || d->E % d->H != 0 || d->Hkv > d->H || d->H % d->Hkv != 0)
        return ATTN_ERR_INVALID;
    d->hd = d->E / d->H;
    d->Ekv = d->Hkv * d->hd;
    d->keys = attn_mha_keys(c, w, m);

    if (c->attn.score != ATTN_SCORE_SCALED_DOT && c->attn.score != ATTN_SCORE_DOT)
        return ATTN_ERR_INVALID;
    if (c->kernel.feature_map != ATTN_FEATURE_MAP_NONE && (st = mha_linear_check(c)) != ATTN_OK)
        return st;
    if (c->attn.pos.rope && d->hd % 2 != 0)
        return ATTN_ERR_SHAPE;
    if ((st = attn__params_check(&c->attn)) != ATTN_OK)
        return st;
    if (!w->q_proj || !w->k_proj || !w->v_proj || !w->out_proj)
        return ATTN_ERR_INVALID;
    if ((w->bias_k == NULL) != (w->bias_v == NULL)) /* torch adds both or neither */
        return ATTN_ERR_INVALID;
    if (c->attn.masks.m_masked != 0 && c->attn.masks.m_masked != m)
        return ATTN_ERR_SHAPE;
    if ((st = attn__masks_check(&c->attn.masks, n, m)) != ATTN_OK)
        return st;
    if ((n > 0 && !query) || (m > 0 && (!key || !value)))
        return ATTN_ERR_INVALID;

    if (!attn__blas_fits(n) || !attn__blas_fits(d->keys) || !attn__blas_fits(d->E) ||
        !attn__blas_fits(d->kdim) || !attn__blas_fits(d->vdim))
        return ATTN_ERR_OVERFLOW;
    /* Largest tensors: [H][n][m'] weights and scores, [n][E], [m'][Ekv]. */
    if (!attn__size_mul(d->H, n, &t) || !attn__size_mul(t, d->keys, &t) ||
        !attn__size_mul(t, sizeof(float), &t) || !attn__size_mul(n, d->E, &t) ||
        !attn__size_mul(t, sizeof(float), &t) || !attn__size_mul(d->keys, d->Ekv, &t) ||
        !attn__size_mul(t, sizeof(float), &t) || !attn__size_mul(m, d->kdim, &t) ||
        !attn__size_mul(m, d->vdim, &t))
        return ATTN_ERR_OVERFLOW;
    return ATTN_OK;
}

/*
 * Projects m input rows into a [m'][Ekv] key or value matrix and appends the
 * bias_k/bias_v row and the zero row, as nn.MultiheadAttention does after its
 * in-projection.
 */
static void mha_project_kv(const float *x, size_t m, size_t n_in, const float *wt, const float *b,
                           const float *extra, bool zero_row, size_t Ekv, float *y)
{
    linear(x, m, n_in, wt, b, Ekv, y, Ekv);
    size_t row = m;
    if (extra)
        memcpy(y + row++ * Ekv, extra, Ekv * sizeof(float));
    if (zero_row)
        memset(y + row * Ekv, 0, Ekv * sizeof(float));
}

attn_status attn_mha_forward(attn_ws *ws, const attn_mha_config *c, const attn_mha_weights *w,
                             size_t n, size_t m, const float *query, const float *key,
                             const float *value, attn_mha_outputs *out, attn_result *res)
{
    attn_status st;
    mha_dims d;

    if (!ws || !c || !w || !out)
        return ATTN_ERR_INVALID;
    if ((st = mha_check(c, w, n, m, query, key, value, &d)) != ATTN_OK)
        return st;

    /* Per-head parameters: masks describe the m real keys; the appended rows
     * lie past m_masked and so are always allowed, as torch pads its masks.
     * With no real key the masks describe nothing at all. */
    attn_params hp = c->attn;
    hp.masks.m_masked = m;
    if (m == 0)
        memset(&hp.masks, 0, sizeof(hp.masks));

    const size_t mk = d.keys;
    const bool need_heads = out->output || out->head_outputs;
    attn__head h = {
        .p = &hp,
        .scale = attn__scale_resolve(&hp, d.hd),
        .n = n,
        .m = mk,
        .dq = d.hd,
        .dk = d.hd,
        .dv = d.hd,
        .ldq = d.E,
        .ldk = d.Ekv,
        .ldv = d.Ekv,
        .ldo = d.E,
        .weights = out->weights, /* only its nullness matters for the scratch size */
        .weights_acc = out->weights_avg,
        .acc_scale = 1.0f / (float)d.H,
    };
    size_t head_floats;
    if ((st = attn__head_scratch_floats(&h, &head_floats)) != ATTN_OK)
        return st;
    /* Linear kernels: the same head slices through a linear head instead. */
    const bool lin = c->kernel.feature_map != ATTN_FEATURE_MAP_NONE;
    attn__lin_head lh = {
        .kern = &c->kernel,
        .causal = hp.masks.causal,
        .n = n,
        .m = mk,
        .m_masked = m,
        .d = d.hd,
        .dv = d.hd,
        .ldq = d.E,
        .ldk = d.Ekv,
        .ldv = d.Ekv,
        .key_padding = hp.masks.key_padding,
        .ldo = d.E,
        .weights = out->weights,
        .acc_scale = 1.0f / (float)d.H,
    };
    size_t proj_floats = 0;
    if (lin) {
        if (out->scores)
            return ATTN_ERR_UNSUPPORTED;
        if ((st = attn__lin_scratch_floats(&lh, &head_floats)) != ATTN_OK ||
            (st = attn__lin_proj_floats(&c->kernel, d.hd, &proj_floats)) != ATTN_OK)
            return st;
        /* favor estimates exp(q.k / sqrt(hd)): h.scale already is 1/sqrt(hd) */
        h.scale = c->kernel.feature_map == ATTN_FEATURE_MAP_FAVOR ? h.scale : 1.0f;
    }

    /* Self-attention with a stacked in_proj (q, k, v weights and biases one
     * after the other, as torch's in_proj_weight): one GEMM [n][E + 2 Ekv]
     * instead of three, and the heads read q, k, v as column slices of it. */
    const size_t W = d.E + 2 * d.Ekv;
    const bool fused =
        n > 0 && m == n && query == key && key == value && d.kdim == d.E && d.vdim == d.E &&
        w->k_proj == w->q_proj + d.E * d.E && w->v_proj == w->k_proj + d.Ekv * d.E &&
        ((!w->q_bias && !w->k_bias && !w->v_bias) ||
         (w->q_bias && w->k_bias == w->q_bias + d.E && w->v_bias == w->k_bias + d.Ekv));
    const size_t ldq = fused ? W : d.E, ldkv = fused ? W : d.Ekv;
    h.ldq = lh.ldq = ldq;
    h.ldk = h.ldv = lh.ldk = lh.ldv = ldkv;

    attn__ws_reset(ws);
    float *qp = fused ? NULL : out->q, *kp = NULL, *vp = NULL;
    if (fused) {
        qp = attn__ws_floats(ws, (mk > n ? mk : n) * W);
        kp = qp ? qp + d.E : NULL;
        vp = qp ? qp + d.E + d.Ekv : NULL;
    } else {
        kp = attn__ws_floats(ws, mk * d.Ekv);
        vp = attn__ws_floats(ws, mk * d.Ekv);
    }
    float *heads = need_heads ? attn__ws_floats(ws, n * d.E) : NULL;
    float *scratch = head_floats ? attn__ws_floats(ws, head_floats) : NULL;
    if (!qp)
        qp = attn__ws_floats(ws, n * d.E);
    float *proj_scratch = proj_floats ? attn__ws_floats(ws, proj_floats) : NULL;
    if (!qp || !kp || !vp || (need_heads && !heads) || (head_floats && !scratch) ||
        (proj_floats && !proj_scratch))
        return ATTN_ERR_NOMEM;
    if (lin && n > 0)
        lh.proj = attn__lin_proj_draw(&c->kernel, d.hd, proj_scratch);

    if (fused) {
        linear(query, n, d.E, w->q_proj, w->q_bias, W, qp, W);
        size_t row = m; /* the appended bias_k / bias_v and zero rows, in the k and v slices */
        if (w->bias_k) {
            memcpy(kp + row * W, w->bias_k, d.Ekv * sizeof(float));
            memcpy(vp + row * W, w->bias_v, d.Ekv * sizeof(float));
            row++;
        }
        if (c->add_zero_attn) {
            memset(kp + row * W, 0, d.Ekv * sizeof(float));
            memset(vp + row * W, 0, d.Ekv * sizeof(float));
        }
    } else {
        linear(query, n, d.E, w->q_proj, w->q_bias, d.E, qp, d.E);
        mha_project_kv(key, m, d.kdim, w->k_proj, w->k_bias, w->bias_k, c->add_zero_attn, d.Ekv,
                       kp);
        mha_project_kv(value, m, d.vdim, w->v_proj, w->v_bias, w->bias_v, c->add_zero_attn,
                       d.Ekv, vp);
    }
    if (c->attn.pos.rope) {
        /* Each head's slice turns on its own: positions 0..n-1 and 0..m-1; the
         * appended bias_k / zero rows carry no position. */
        const double base = c->attn.pos.rope_base > 0.0f ? c->attn.pos.rope_base : 10000.0;
        for (size_t hi = 0; hi < d.H && st == ATTN_OK; hi++)
            st = attn_rope_apply(c->attn.pos.rope_style, base, n, d.hd, 0, qp + hi * d.hd, ldq);
        for (size_t hi = 0; hi < d.Hkv && st == ATTN_OK; hi++)
            st = attn_rope_apply(c->attn.pos.rope_style, base, m, d.hd, 0, kp + hi * d.hd, ldkv);
        if (st != ATTN_OK)
            return st;
    }
    for (size_t i = 0; fused && out->q && i < n; i++)
        memcpy(out->q + i * d.E, qp + i * W, d.E * sizeof(float));
    for (size_t j = 0; (out->k || out->v) && j < m; j++) {
        if (out->k)
            memcpy(out->k + j * d.Ekv, kp + j * ldkv, d.Ekv * sizeof(float));
        if (out->v)
            memcpy(out->v + j * d.Ekv, vp + j * ldkv, d.Ekv * sizeof(float));
    }
    if (out->weights_avg)
        memset(out->weights_avg, 0, n * mk * sizeof(float));

    /* Masks are shared by the heads, so each head sees the same empty rows and
     * pairs (a per-head -inf bias aside): report one head's worth, the largest. */
    size_t max_empty = 0, max_allowed = 0;
    for (size_t hi = 0; hi < d.H; hi++) {
        const size_t kv = hi * d.Hkv / d.H; /* GQA: SDPA enable_gqa grouping */
        h.head = hi;
        h.q = qp + hi * d.hd;
        h.k = kp + kv * d.hd;
        h.v = vp + kv * d.hd;
        h.out = need_heads ? heads + hi * d.hd : NULL;
        h.weights = out->weights ? out->weights + hi * n * mk : NULL;
        h.scores = out->scores ? out->scores + hi * n * mk : NULL;
        h.weights_acc = out->weights_avg;
        size_t n_empty = 0, n_allowed = 0;
        if (lin) {
            lh.q = h.q;
            lh.k = h.k;
            lh.v = h.v;
            lh.out = h.out;
            lh.weights = h.weights;
            lh.weights_acc = h.weights_acc;
            attn__lin_forward(&lh, scratch, &n_empty, &n_allowed);
        } else {
            attn__head_forward(&h, scratch, &n_empty, &n_allowed);
        }
        if (n_empty > max_empty)
            max_empty = n_empty;
        if (n_allowed > max_allowed)
            max_allowed = n_allowed;
    }

    if (out->head_outputs)
        for (size_t hi = 0; hi < d.H; hi++)
            for (size_t i = 0; i < n; i++)
                memcpy(out->head_outputs + (hi * n + i) * d.hd, heads + i * d.E + hi * d.hd,
                       d.hd * sizeof(float));
    if (out->output)
        linear(heads, n, d.E, w->out_proj, w->out_bias, d.E, out->output, d.E);

    if (res) {
        res->scale = h.scale;
        res->n_empty_rows = max_empty;
        res->n_allowed_pairs = max_allowed;
    }
    return ATTN_OK;
}
