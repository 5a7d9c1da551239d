/* attn_linear.c - linear attention (elu + 1 feature map), non-causal and causal by prefix sums. */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

#define LINEAR_EPS 1e-6f

static float elu1(float x)
{
    return x > 0 ? x + 1.0f : expf(x);
}

/* phi(x) row by row into dst [rows][d]; rows flagged in pad become 0 (ignored keys). */
static void feature_map(const float *src, size_t rows, size_t d, const uint8_t *pad, float *dst)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < d; c++)
            dst[r * d + c] = (pad && pad[r]) ? 0.0f : elu1(src[r * d + c]);
}

/* Last key index + 1 that query i sees. */
static size_t key_limit(attn_causal causal, size_t i, size_t n, size_t m)
{
    if (causal == ATTN_CAUSAL_NONE)
        return m;
    size_t lim = i + 1;
    if (causal == ATTN_CAUSAL_BOTTOM_RIGHT) {
        if (m >= n)
            lim += m - n;
        else
            lim = (i + 1 > n - m) ? i + 1 - (n - m) : 0;
    }
    return lim < m ? lim : m;
}

attn_status attn_linear_forward(attn_ws *ws, attn_causal causal, size_t n, size_t m, size_t d,
                                size_t dv, const float *q, const float *k, const float *v,
                                const uint8_t *key_padding, float *out, float *weights)
{
    size_t nd, md, ddv, nm;
    if (ws == NULL || (causal != ATTN_CAUSAL_NONE && causal != ATTN_CAUSAL_TOP_LEFT &&
                       causal != ATTN_CAUSAL_BOTTOM_RIGHT))
        return ATTN_ERR_INVALID;
    if (d == 0 || dv == 0)
        return ATTN_ERR_SHAPE;
    if (n > 0 && m > 0 && (q == NULL || k == NULL || v == NULL))
        return ATTN_ERR_INVALID;
    if (!attn__size_mul(n, d, &nd) || !attn__size_mul(m, d, &md) ||
        !attn__size_mul(d, dv, &ddv) || !attn__size_mul(n, m, &nm) || !attn__blas_fits(n) ||
        !attn__blas_fits(m) || !attn__blas_fits(d) || !attn__blas_fits(dv))
        return ATTN_ERR_OVERFLOW;
    attn__ws_reset(ws);
    if (n == 0)
        return ATTN_OK;
    float *fq = attn__ws_floats(ws, nd);
    float *fk = attn__ws_floats(ws, md ? md : 1);
    float *s = attn__ws_floats(ws, ddv);
    float *z = attn__ws_floats(ws, d);
    if (!fq || !fk || !s || !z)
        return ATTN_ERR_NOMEM;
    feature_map(q, n, d, NULL, fq);
    feature_map(k, m, d, key_padding, fk);

    if (causal == ATTN_CAUSAL_NONE) {
        /* S = phi(K)^T V, z = column sums of phi(K) */
        attn__sgemm(true, false, d, dv, m, 1.0f, fk, d, v, dv, 0.0f, s, dv);
        memset(z, 0, d * sizeof *z);
        for (size_t j = 0; j < m; j++)
            for (size_t c = 0; c < d; c++)
                z[c] += fk[j * d + c];
        if (out)
            attn__sgemm(false, false, n, dv, d, 1.0f, fq, d, s, dv, 0.0f, out, dv);
        if (weights)
            attn__sgemm(false, true, n, m, d, 1.0f, fq, d, fk, d, 0.0f, weights, m);
        for (size_t i = 0; i < n; i++) {
            float den = LINEAR_EPS;
            for (size_t c = 0; c < d; c++)
                den += fq[i * d + c] * z[c];
            float inv = 1.0f / den;
            if (out)
                for (size_t c = 0; c < dv; c++)
                    out[i * dv + c] *= inv;
            if (weights)
                for (size_t j = 0; j < m; j++)
                    weights[i * m + j] *= inv;
        }
        return ATTN_OK;
    }

    /* causal: running S and z over the keys each query adds, in query order */
    memset(s, 0, ddv * sizeof *s);
    memset(z, 0, d * sizeof *z);
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        size_t lim = key_limit(causal, i, n, m);
        for (; seen < lim; seen++) {
            const float *kj = fk + seen * d, *vj = v + seen * dv;
            for (size_t c = 0; c < d; c++) {
                z[c] += kj[c];
                for (size_t e = 0; e < dv; e++)
                    s[c * dv + e] += kj[c] * vj[e];
            }
        }
        const float *qi = fq + i * d;
        float den = LINEAR_EPS;
        for (size_t c = 0; c < d; c++)
            den += qi[c] * z[c];
        float inv = 1.0f / den;
        if (out) {
            for (size_t e = 0; e < dv; e++) {
                float acc = 0;
                for (size_t c = 0; c < d; c++)
                    acc += qi[c] * s[c * dv + e];
                out[i * dv + e] = acc * inv;
            }
        }
        if (weights) {
            for (size_t j = 0; j < m; j++) {
                float acc = 0;
                if (j < lim)
                    for (size_t c = 0; c < d; c++)
                        acc += qi[c] * fk[j * d + c];
                weights[i * m + j] = acc * inv;
            }
        }
    }
    return ATTN_OK;
}
