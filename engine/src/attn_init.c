/* attn_init.c - deterministic seeded initial weights for a multi-head block (torch's init scheme).
 */
#include "attn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Uniform in [-bound, bound): xavier_uniform with gain 1. */
static void fill_uniform(float *x, size_t count, float bound, uint64_t *rng)
{
    for (size_t i = 0; i < count; i++)
        x[i] = bound * (2.0f * attn_rng_uniform(rng) - 1.0f);
}

/* Normal(0, std) by Box-Muller, one draw per pair of uniforms (the cosine branch). */
static void fill_normal(float *x, size_t count, double std, uint64_t *rng)
{
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < count; i++) {
        double u1 = 1.0 - (double)attn_rng_uniform(rng); /* (0, 1]: log stays finite */
        double u2 = (double)attn_rng_uniform(rng);
        x[i] = (float)(std * sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
    }
}

static float xavier_bound(size_t fan_in, size_t fan_out)
{
    return (float)sqrt(6.0 / ((double)fan_in + (double)fan_out));
}

/* Adds a * b floats to *total; false on overflow. */
static bool add_floats(size_t *total, size_t a, size_t b)
{
    size_t t;
    return attn__size_mul(a, b, &t) && attn__size_add(*total, t, total);
}

attn_status attn_mha_init_seeded(const attn_mha_config *c, uint64_t seed, bool bias,
                                 bool add_bias_kv, attn_mha_weights *w, float **out_store)
{
    if (!c || !w || !out_store)
        return ATTN_ERR_INVALID;
    const size_t E = c->embed_dim, H = c->num_heads;
    const size_t Hkv = c->num_kv_heads ? c->num_kv_heads : H;
    const size_t kdim = c->kdim ? c->kdim : E, vdim = c->vdim ? c->vdim : E;
    if (E == 0 || H == 0 || E % H != 0 || Hkv > H || H % Hkv != 0)
        return ATTN_ERR_INVALID;
    const size_t Ekv = Hkv * (E / H);

    /* Layout: q_proj, k_proj, v_proj back to back (the stacked in_proj_weight
     * when kdim = vdim = E), then q/k/v biases (in_proj_bias), out_proj,
     * out_bias, bias_k, bias_v. */
    size_t total = 0;
    bool ok = add_floats(&total, E, E) && add_floats(&total, Ekv, kdim) &&
              add_floats(&total, Ekv, vdim) && add_floats(&total, E, E);
    if (ok && bias)
        ok = add_floats(&total, 1, E) && add_floats(&total, 2, Ekv) && add_floats(&total, 1, E);
    if (ok && add_bias_kv)
        ok = add_floats(&total, 2, Ekv);
    size_t bytes;
    if (!ok || !attn__size_mul(total, sizeof(float), &bytes))
        return ATTN_ERR_OVERFLOW;

    float *store = malloc(bytes);
    if (!store)
        return ATTN_ERR_NOMEM;

    attn_mha_weights r;
    memset(&r, 0, sizeof(r));
    float *cur = store;
    float *q_proj = cur;
    cur += E * E;
    float *k_proj = cur;
    cur += Ekv * kdim;
    float *v_proj = cur;
    cur += Ekv * vdim;
    float *q_bias = NULL, *k_bias = NULL, *v_bias = NULL, *out_bias = NULL;
    if (bias) {
        q_bias = cur;
        k_bias = q_bias + E;
        v_bias = k_bias + Ekv;
        cur = v_bias + Ekv;
    }
    float *out_proj = cur;
    cur += E * E;
    if (bias) {
        out_bias = cur;
        cur += E;
    }
    float *bias_k = NULL, *bias_v = NULL;
    if (add_bias_kv) {
        bias_k = cur;
        bias_v = cur + Ekv;
    }

    uint64_t rng = seed;
    if (kdim == E && vdim == E) {
        /* One [E + 2 Ekv][E] matrix: fan_in = E, fan_out = E + 2 Ekv. */
        fill_uniform(q_proj, (E + 2 * Ekv) * E, xavier_bound(E, E + 2 * Ekv), &rng);
    } else {
        fill_uniform(q_proj, E * E, xavier_bound(E, E), &rng);
        fill_uniform(k_proj, Ekv * kdim, xavier_bound(kdim, Ekv), &rng);
        fill_uniform(v_proj, Ekv * vdim, xavier_bound(vdim, Ekv), &rng);
    }
    fill_uniform(out_proj, E * E, xavier_bound(E, E), &rng);
    if (bias) {
        memset(q_bias, 0, (E + 2 * Ekv) * sizeof(float));
        memset(out_bias, 0, E * sizeof(float));
    }
    if (add_bias_kv) {
        /* torch's bias_k is [1][1][Ekv]: fan_in = fan_out = Ekv (receptive field Ekv),
         * so std = sqrt(2 / (Ekv + Ekv)). */
        const double std = sqrt(2.0 / (2.0 * (double)Ekv));
        fill_normal(bias_k, Ekv, std, &rng);
        fill_normal(bias_v, Ekv, std, &rng);
    }

    r.q_proj = q_proj;
    r.k_proj = k_proj;
    r.v_proj = v_proj;
    r.q_bias = q_bias;
    r.k_bias = k_bias;
    r.v_bias = v_bias;
    r.out_proj = out_proj;
    r.out_bias = out_bias;
    r.bias_k = bias_k;
    r.bias_v = bias_v;
    *w = r;
    *out_store = store;
    return ATTN_OK;
}
