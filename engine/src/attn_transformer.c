/* attn_transformer.c - transformer encoder/decoder layers and stacks as torch.nn computes them. */
#include "attn_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ activation */

const char *attn_activation_name(attn_activation a)
{
    switch (a) {
    case ATTN_ACTIVATION_RELU:
        return "relu";
    case ATTN_ACTIVATION_GELU:
        return "gelu";
    case ATTN_ACTIVATION_GELU_TANH:
        return "gelu_tanh";
    }
    return NULL;
}

attn_status attn_activation_parse(const char *name, attn_activation *out)
{
    if (!name || !out)
        return ATTN_ERR_INVALID;
    if (strcmp(name, "relu") == 0)
        *out = ATTN_ACTIVATION_RELU;
    else if (strcmp(name, "gelu") == 0)
        *out = ATTN_ACTIVATION_GELU;
    else if (strcmp(name, "gelu_tanh") == 0)
        *out = ATTN_ACTIVATION_GELU_TANH;
    else
        return ATTN_ERR_INVALID;
    return ATTN_OK;
}

static bool activation_known(attn_activation a)
{
    return a == ATTN_ACTIVATION_RELU || a == ATTN_ACTIVATION_GELU ||
           a == ATTN_ACTIVATION_GELU_TANH;
}

static void activation_apply(attn_activation a, float *x, size_t count)
{
    if (a == ATTN_ACTIVATION_RELU) {
        for (size_t i = 0; i < count; i++)
            x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    } else if (a == ATTN_ACTIVATION_GELU_TANH) {
        /* as torch's gelu(approximate='tanh') and HF's NewGELUActivation */
        const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
        for (size_t i = 0; i < count; i++) {
            const float v = x[i];
            x[i] = 0.5f * v * (1.0f + tanhf(c * (v + 0.044715f * v * v * v)));
        }
    } else {
        /* torch's exact gelu: x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)). */
        for (size_t i = 0; i < count; i++)
            x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
    }
}

/* ------------------------------------------------------------ layer norm */

/* Rows of y = layer_norm(x); arguments already checked. Sums in double: the
 * variance of near-constant rows would otherwise lose most of its digits. */
static void layer_norm_rows(size_t n, size_t d, float eps, const float *x, const float *weight,
                            const float *bias, float *y)
{
    for (size_t i = 0; i < n; i++) {
        const float *xr = x + i * d;
        float *yr = y + i * d;
        double sum = 0.0;
        for (size_t j = 0; j < d; j++)
            sum += xr[j];
        const double mean = sum / (double)d;
        double ss = 0.0;
        for (size_t j = 0; j < d; j++) {
            const double c = (double)xr[j] - mean;
            ss += c * c;
        }
        const double inv = 1.0 / sqrt(ss / (double)d + (double)eps);
        for (size_t j = 0; j < d; j++) {
            double v = ((double)xr[j] - mean) * inv;
            if (weight)
                v *= weight[j];
            if (bias)
                v += bias[j];
            yr[j] = (float)v;
        }
    }
}

static bool eps_ok(float eps)
{
    return eps > 0.0f && !isinf(eps); /* NaN fails the comparison */
}

attn_status attn_layer_norm(size_t n, size_t d, float eps, const float *x, const float *weight,
                            const float *bias, float *y)
{
    size_t t;
    if (!eps_ok(eps) || d == 0 || (n > 0 && (!x || !y)))
        return ATTN_ERR_INVALID;
    if (!attn__size_mul(n, d, &t) || !attn__size_mul(t, sizeof(float), &t))
        return ATTN_ERR_OVERFLOW;
    layer_norm_rows(n, d, eps, x, weight, bias, y);
    return ATTN_OK;
}

/* ------------------------------------------------------------ feed-forward */

/* y [rows][n_out] = x [rows][n_in] * wt^T + b, wt [n_out][n_in] (Linear layout). */
static void linear(const float *x, size_t rows, size_t n_in, const float *wt, const float *b,
                   size_t n_out, float *y)
{
    if (b)
        for (size_t r = 0; r < rows; r++)
            memcpy(y + r * n_out, b, n_out * sizeof(float));
    attn__sgemm(false, true, rows, n_out, n_in, 1.0f, x, n_in, wt, n_in, b ? 1.0f : 0.0f, y, n_out);
}

/* y = linear2(act(linear1(x))) with hid [n][F] scratch; arguments already checked. */
static void ffn_run(attn_activation act, size_t n, size_t E, size_t F, const float *x,
                    const attn_tf_affine *l1, const attn_tf_affine *l2, float *hid, float *y)
{
    linear(x, n, E, l1->weight, l1->bias, F, hid);
    activation_apply(act, hid, n * F);
    linear(hid, n, F, l2->weight, l2->bias, E, y);
}

/* n rows of widths E and F: element counts addressable, dimensions within the BLAS integer. */
static attn_status ffn_sizes_check(size_t n, size_t E, size_t F)
{
    size_t t;
    if (!attn__blas_fits(n) || !attn__blas_fits(E) || !attn__blas_fits(F))
        return ATTN_ERR_OVERFLOW;
    if (!attn__size_mul(n, E, &t) || !attn__size_mul(t, sizeof(float), &t) ||
        !attn__size_mul(n, F, &t) || !attn__size_mul(t, sizeof(float), &t) ||
        !attn__size_mul(E, F, &t) || !attn__size_mul(t, sizeof(float), &t))
        return ATTN_ERR_OVERFLOW;
    return ATTN_OK;
}

attn_status attn_ffn_forward(attn_ws *ws, attn_activation act, size_t n, size_t E, size_t F,
                             const float *x, const attn_tf_affine *linear1,
                             const attn_tf_affine *linear2, float *y)
{
    attn_status st;
    if (!ws || !linear1 || !linear2 || !linear1->weight || !linear2->weight ||
        !activation_known(act) || E == 0 || F == 0 || (n > 0 && (!x || !y)))
        return ATTN_ERR_INVALID;
    if ((st = ffn_sizes_check(n, E, F)) != ATTN_OK)
        return st;
    attn__ws_reset(ws);
    float *hid = attn__ws_floats(ws, n * F);
    if (!hid)
        return ATTN_ERR_NOMEM;
    ffn_run(act, n, E, F, x, linear1, linear2, hid, y);
    return ATTN_OK;
}

/* ------------------------------------------------------------ checks */

static attn_status config_check(const attn_tf_config *c)
{
    const size_t E = c->d_model, H = c->nhead;
    if (E == 0 || H == 0 || E % H != 0 || c->dim_feedforward == 0 || c->num_layers == 0)
        return ATTN_ERR_INVALID;
    if (!activation_known(c->activation) || !eps_ok(c->layer_norm_eps))
        return ATTN_ERR_INVALID;
    if (c->self_attn.score != ATTN_SCORE_SCALED_DOT && c->self_attn.score != ATTN_SCORE_DOT)
        return ATTN_ERR_INVALID;
    return attn__params_check(&c->self_attn);
}

static bool attention_set(const attn_tf_attention *a)
{
    return a->in_proj_weight && a->out_proj_weight;
}

/* Every weight a layer needs is there (biases may be NULL). */
static attn_status weights_check(const attn_tf_config *c, const attn_tf_weights *w, bool decoder)
{
    if (!w->layers)
        return ATTN_ERR_INVALID;
    if (w->norm.bias && !w->norm.weight)
        return ATTN_ERR_INVALID;
    for (size_t l = 0; l < c->num_layers; l++) {
        const attn_tf_layer *ly = &w->layers[l];
        if (!attention_set(&ly->self_attn) || !ly->linear1.weight || !ly->linear2.weight ||
            !ly->norm1.weight || !ly->norm2.weight)
            return ATTN_ERR_INVALID;
        if (decoder && (!attention_set(&ly->multihead_attn) || !ly->norm3.weight))
            return ATTN_ERR_INVALID;
    }
    return ATTN_OK;
}

/* Masks cover [n][m]: m_masked is 0 (all) or m, as attn_mha_forward wants. */
static attn_status masks_cover(const attn_masks *mk, size_t n, size_t m)
{
    if (mk->m_masked != 0 && mk->m_masked != m)
        return ATTN_ERR_SHAPE;
    return attn__masks_check(mk, n, m);
}

/* Sizes of a call: activations [n][E], [n][F], weights [L][H][n][m] (m = n for self). */
static attn_status sizes_check(const attn_tf_config *c, size_t n, size_t m)
{
    attn_status st;
    size_t t, E3;
    if ((st = ffn_sizes_check(n, c->d_model, c->dim_feedforward)) != ATTN_OK)
        return st;
    if (!attn__blas_fits(m) || !attn__size_mul(3, c->d_model, &E3) || !attn__blas_fits(E3) ||
        !attn__size_mul(m, c->d_model, &t) || !attn__size_mul(t, sizeof(float), &t))
        return ATTN_ERR_OVERFLOW;
    const size_t keys[2] = {n, m};
    for (int i = 0; i < 2; i++)
        if (!attn__size_mul(c->num_layers, c->nhead, &t) || !attn__size_mul(t, n, &t) ||
            !attn__size_mul(t, keys[i], &t) || !attn__size_mul(t, sizeof(float), &t))
            return ATTN_ERR_OVERFLOW;
    /* 3 n E + n F floats of scratch */
    if (!attn__size_mul(n, c->d_model, &t) || !attn__size_mul(t, 3, &t) ||
        !attn__size_add(t, n * c->dim_feedforward, &t) || !attn__size_mul(t, sizeof(float), &t))
        return ATTN_ERR_OVERFLOW;
    return ATTN_OK;
}

/* ------------------------------------------------------------ layers */

/* One call's state: the residual stream and the scratch the blocks write into. */
typedef struct tf_run {
    const attn_tf_config *c;
    attn_ws *child; /* for attn_mha_forward, which resets its workspace */
    size_t n, m, E, H, F;
    float *x;   /* [n][E] residual stream */
    float *h;   /* [n][E] normalised input of a pre-norm block */
    float *a;   /* [n][E] a block's output */
    float *hid; /* [n][F] feed-forward hidden layer */
    attn_mha_config self_cfg;
    attn_mha_config cross_cfg;
    attn_result res;
} tf_run;

static attn_mha_weights mha_weights_of(const attn_tf_attention *a, size_t E)
{
    attn_mha_weights w;
    memset(&w, 0, sizeof(w));
    w.q_proj = a->in_proj_weight;
    w.k_proj = a->in_proj_weight + E * E;
    w.v_proj = a->in_proj_weight + 2 * E * E;
    if (a->in_proj_bias) {
        w.q_bias = a->in_proj_bias;
        w.k_bias = a->in_proj_bias + E;
        w.v_bias = a->in_proj_bias + 2 * E;
    }
    w.out_proj = a->out_proj_weight;
    w.out_bias = a->out_proj_bias;
    return w;
}

/* r->a = attention(q_in over kv_in [m_kv][E]); weights [H][n][m_kv] or NULL. */
static attn_status run_attention(tf_run *r, const attn_mha_config *cfg, const attn_tf_attention *aw,
                                 const float *q_in, size_t m_kv, const float *kv_in, float *weights,
                                 float *const qkv[3])
{
    const attn_mha_weights mw = mha_weights_of(aw, r->E);
    attn_mha_outputs o = {.output = r->a, .weights = weights};
    if (qkv) {
        o.q = qkv[0];
        o.k = qkv[1];
        o.v = qkv[2];
    }
    attn_result res;
    attn_status st = attn_mha_forward(r->child, cfg, &mw, r->n, m_kv, q_in, kv_in, kv_in, &o, &res);
    if (st != ATTN_OK)
        return st;
    if (cfg == &r->self_cfg)
        r->res.scale = res.scale;
    if (res.n_empty_rows > r->res.n_empty_rows)
        r->res.n_empty_rows = res.n_empty_rows;
    if (res.n_allowed_pairs > r->res.n_allowed_pairs)
        r->res.n_allowed_pairs = res.n_allowed_pairs;
    return ATTN_OK;
}

static void add_into(float *x, const float *a, size_t count)
{
    for (size_t i = 0; i < count; i++)
        x[i] += a[i];
}

/*
 * One residual block. Post-norm: x = norm(x + f(x)); norm_first:
 * x = x + f(norm(x)). which: 0 self-attention, 1 cross-attention, 2 feed-forward.
 */
static attn_status run_block(tf_run *r, const attn_tf_layer *ly, int which,
                             const attn_tf_affine *norm, const float *memory, float *weights,
                             float *const qkv[3])
{
    const size_t count = r->n * r->E;
    const float eps = r->c->layer_norm_eps;
    const float *in = r->x;
    attn_status st = ATTN_OK;
    if (r->c->norm_first) {
        layer_norm_rows(r->n, r->E, eps, r->x, norm->weight, norm->bias, r->h);
        in = r->h;
    }
    switch (which) {
    case 0:
        st = run_attention(r, &r->self_cfg, &ly->self_attn, in, r->n, in, weights, qkv);
        break;
    case 1:
        st = run_attention(r, &r->cross_cfg, &ly->multihead_attn, in, r->m, memory, weights,
                           NULL);
        break;
    default:
        ffn_run(r->c->activation, r->n, r->E, r->F, in, &ly->linear1, &ly->linear2, r->hid, r->a);
        break;
    }
    if (st != ATTN_OK)
        return st;
    add_into(r->x, r->a, count);
    if (!r->c->norm_first)
        layer_norm_rows(r->n, r->E, eps, r->x, norm->weight, norm->bias, r->x);
    return ATTN_OK;
}

/* The encoder (memory NULL, m 0) or decoder stack, after the arguments were checked. */
static attn_status run_stack(attn_ws *ws, const attn_tf_config *c, const attn_tf_weights *w,
                             bool decoder, size_t n, size_t m, const float *src,
                             const float *memory, attn_tf_outputs *out, attn_result *res)
{
    tf_run r;
    memset(&r, 0, sizeof(r));
    r.c = c;
    r.n = n;
    r.m = m;
    r.E = c->d_model;
    r.H = c->nhead;
    r.F = c->dim_feedforward;
    r.self_cfg.embed_dim = r.E;
    r.self_cfg.num_heads = r.H;
    r.self_cfg.attn = c->self_attn;
    r.cross_cfg.embed_dim = r.E;
    r.cross_cfg.num_heads = r.H;
    r.cross_cfg.attn.score = ATTN_SCORE_SCALED_DOT;
    r.cross_cfg.attn.masks = c->cross_masks;

    r.child = attn__ws_child(ws);
    if (!r.child)
        return ATTN_ERR_NOMEM;
    attn__ws_reset(ws);
    const size_t count = n * r.E;
    r.x = attn__ws_floats(ws, count);
    r.h = attn__ws_floats(ws, count);
    r.a = attn__ws_floats(ws, count);
    r.hid = attn__ws_floats(ws, n * r.F);
    if (!r.x || !r.h || !r.a || !r.hid)
        return ATTN_ERR_NOMEM;
    if (count)
        memcpy(r.x, src, count * sizeof(float));

    const size_t self_per_layer = r.H * n * n, cross_per_layer = r.H * n * m;
    if (out->hidden_states && count)
        memcpy(out->hidden_states, r.x, count * sizeof(float));
    for (size_t l = 0; l < c->num_layers; l++) {
        const attn_tf_layer *ly = &w->layers[l];
        float *sw = out->self_weights ? out->self_weights + l * self_per_layer : NULL;
        float *const qkv[3] = {out->q ? out->q + l * count : NULL,
                               out->k ? out->k + l * count : NULL,
                               out->v ? out->v + l * count : NULL};
        attn_status st = run_block(&r, ly, 0, &ly->norm1, NULL, sw, qkv);
        if (st == ATTN_OK && decoder) {
            float *cw = out->cross_weights ? out->cross_weights + l * cross_per_layer : NULL;
            st = run_block(&r, ly, 1, &ly->norm2, memory, cw, NULL);
        }
        if (st == ATTN_OK)
            st = run_block(&r, ly, 2, decoder ? &ly->norm3 : &ly->norm2, NULL, NULL, NULL);
        if (st != ATTN_OK)
            return st;
        if (out->hidden_states && count)
            memcpy(out->hidden_states + (l + 1) * count, r.x, count * sizeof(float));
    }

    if (out->output) {
        if (w->norm.weight)
            layer_norm_rows(n, r.E, c->layer_norm_eps, r.x, w->norm.weight, w->norm.bias,
                            out->output);
        else if (count)
            memcpy(out->output, r.x, count * sizeof(float));
    }
    if (res)
        *res = r.res;
    return ATTN_OK;
}

/* Everything both stacks check before computing. */
static attn_status stack_check(attn_ws *ws, const attn_tf_config *c, const attn_tf_weights *w,
                               bool decoder, size_t n, size_t m, const float *src,
                               const float *memory, const attn_tf_outputs *out)
{
    attn_status st;
    if (!ws || !c || !w || !out)
        return ATTN_ERR_INVALID;
    if ((st = config_check(c)) != ATTN_OK || (st = weights_check(c, w, decoder)) != ATTN_OK)
        return st;
    if ((st = masks_cover(&c->self_attn.masks, n, n)) != ATTN_OK)
        return st;
    if (decoder && (st = masks_cover(&c->cross_masks, n, m)) != ATTN_OK)
        return st;
    if ((n > 0 && !src) || (m > 0 && !memory))
        return ATTN_ERR_INVALID;
    return sizes_check(c, n, m);
}

attn_status attn_tf_encoder_forward(attn_ws *ws, const attn_tf_config *c, const attn_tf_weights *w,
                                    size_t n, const float *src, attn_tf_outputs *out,
                                    attn_result *res)
{
    attn_status st = stack_check(ws, c, w, false, n, 0, src, NULL, out);
    if (st != ATTN_OK)
        return st;
    return run_stack(ws, c, w, false, n, 0, src, NULL, out, res);
}

attn_status attn_tf_decoder_forward(attn_ws *ws, const attn_tf_config *c, const attn_tf_weights *w,
                                    size_t n, size_t m, const float *tgt, const float *memory,
                                    attn_tf_outputs *out, attn_result *res)
{
    attn_status st = stack_check(ws, c, w, true, n, m, tgt, memory, out);
    if (st != ATTN_OK)
        return st;
    return run_stack(ws, c, w, true, n, m, tgt, memory, out, res);
}

/* ------------------------------------------------------------ seeded init */

/* Uniform in [-bound, bound). */
static void fill_uniform(float *x, size_t count, float bound, uint64_t *rng)
{
    for (size_t i = 0; i < count; i++)
        x[i] = bound * (2.0f * attn_rng_uniform(rng) - 1.0f);
}

static void fill_value(float *x, size_t count, float v)
{
    for (size_t i = 0; i < count; i++)
        x[i] = v;
}

/* Hands out consecutive floats of the store. */
static float *take(float **cur, size_t count)
{
    float *p = *cur;
    *cur += count;
    return p;
}

/* Floats one layer holds. false on overflow. */
static bool layer_floats(size_t E, size_t F, bool decoder, bool bias, size_t *out)
{
    size_t ee, ef, t, total = 0;
    if (!attn__size_mul(E, E, &ee) || !attn__size_mul(E, F, &ef))
        return false;
    /* one attention: in_proj [3E][E] + out_proj [E][E] (+ biases 3E + E) */
    size_t attn_f;
    if (!attn__size_mul(ee, 4, &attn_f) || (bias && !attn__size_add(attn_f, 4 * E, &attn_f)))
        return false;
    const size_t n_attn = decoder ? 2 : 1, n_norm = decoder ? 3 : 2;
    if (!attn__size_mul(attn_f, n_attn, &t) || !attn__size_add(total, t, &total) ||
        !attn__size_mul(ef, 2, &t) || !attn__size_add(total, t, &total) ||
        (bias && (!attn__size_add(total, F, &total) || !attn__size_add(total, E, &total))) ||
        !attn__size_mul(E, bias ? 2 * n_norm : n_norm, &t) || !attn__size_add(total, t, &total))
        return false;
    *out = total;
    return true;
}

static void init_attention(attn_tf_attention *a, size_t E, bool bias, float **cur, uint64_t *rng)
{
    float *ipw = take(cur, 3 * E * E);
    float *opw = take(cur, E * E);
    fill_uniform(ipw, 3 * E * E, (float)sqrt(6.0 / (double)(E + 3 * E)), rng);
    fill_uniform(opw, E * E, (float)(1.0 / sqrt((double)E)), rng);
    a->in_proj_weight = ipw;
    a->out_proj_weight = opw;
    if (bias) {
        float *ipb = take(cur, 3 * E), *opb = take(cur, E);
        fill_value(ipb, 3 * E, 0.0f);
        fill_value(opb, E, 0.0f);
        a->in_proj_bias = ipb;
        a->out_proj_bias = opb;
    }
}

static void init_linear(attn_tf_affine *lin, size_t n_out, size_t n_in, bool bias, float **cur,
                        uint64_t *rng)
{
    const float bound = (float)(1.0 / sqrt((double)n_in));
    float *wt = take(cur, n_out * n_in);
    fill_uniform(wt, n_out * n_in, bound, rng);
    lin->weight = wt;
    if (bias) {
        float *b = take(cur, n_out);
        fill_uniform(b, n_out, bound, rng);
        lin->bias = b;
    }
}

static void init_norm(attn_tf_affine *norm, size_t E, bool bias, float **cur)
{
    float *wt = take(cur, E);
    fill_value(wt, E, 1.0f);
    norm->weight = wt;
    if (bias) {
        float *b = take(cur, E);
        fill_value(b, E, 0.0f);
        norm->bias = b;
    }
}

attn_status attn_tf_init_seeded(const attn_tf_config *c, bool decoder, bool bias, bool final_norm,
                                uint64_t seed, attn_tf_weights *w, void **out_store)
{
    attn_status st;
    if (!c || !w || !out_store)
        return ATTN_ERR_INVALID;
    if ((st = config_check(c)) != ATTN_OK)
        return st;
    const size_t E = c->d_model, F = c->dim_feedforward, L = c->num_layers;

    /* Layout: the layer structs [L], then every layer's floats, then the final norm's. */
    size_t per_layer, floats, head_bytes, bytes, t;
    if (!layer_floats(E, F, decoder, bias, &per_layer) || !attn__size_mul(per_layer, L, &floats) ||
        (final_norm && !attn__size_add(floats, bias ? 2 * E : E, &floats)) ||
        !attn__size_mul(L, sizeof(attn_tf_layer), &head_bytes) ||
        !attn__size_mul(floats, sizeof(float), &t) || !attn__size_add(head_bytes, t, &bytes) ||
        !attn__size_mul(E, E, &t) || !attn__size_mul(t, 3, &t))
        return ATTN_ERR_OVERFLOW;

    /* The structs hold only pointers, so the floats after them stay aligned. */
    unsigned char *store = malloc(bytes);
    if (!store)
        return ATTN_ERR_NOMEM;
    attn_tf_layer *layers = (attn_tf_layer *)(void *)store;
    memset(layers, 0, head_bytes);
    float *cur = (float *)(void *)(store + head_bytes);

    uint64_t rng = seed;
    for (size_t l = 0; l < L; l++) {
        attn_tf_layer *ly = &layers[l];
        init_attention(&ly->self_attn, E, bias, &cur, &rng);
        if (decoder)
            init_attention(&ly->multihead_attn, E, bias, &cur, &rng);
        init_linear(&ly->linear1, F, E, bias, &cur, &rng);
        init_linear(&ly->linear2, E, F, bias, &cur, &rng);
        init_norm(&ly->norm1, E, bias, &cur);
        init_norm(&ly->norm2, E, bias, &cur);
        if (decoder)
            init_norm(&ly->norm3, E, bias, &cur);
    }
    attn_tf_weights r;
    memset(&r, 0, sizeof(r));
    r.layers = layers;
    if (final_norm)
        init_norm(&r.norm, E, bias, &cur);
    *w = r;
    *out_store = store;
    return ATTN_OK;
}
