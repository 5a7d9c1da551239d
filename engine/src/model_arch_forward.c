/* model_arch_forward.c - pretrained models' forward passes: embeddings, then attn_tf layers one by
 * one. */
#include "model_arch.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The selection of one call, resolved: layer_pos[l] is layer l's place in
 * the output (-1: not returned), heads [n_heads] the heads in output order. */
typedef struct fw_sel {
    long *layer_pos; /* [max(L, Ld)] */
    size_t n_layers;
    const size_t *heads;
    size_t n_heads;
    size_t *all_heads; /* storage when every head is returned */
} fw_sel;

/* Where one stack's results go (any may be NULL). */
typedef struct fw_out {
    float *attn;      /* [Ls][Hs][n][n] */
    float *cross;     /* [Ls][Hs][n][m] */
    float *hidden;    /* [L + 1][n][E] */
    float *q, *k, *v; /* [Ls][Hs][n][hd] */
} fw_out;

/* Scratch of one stack: per-layer weights and projections of every head. */
typedef struct fw_scratch {
    float *wb;  /* [H][n][n] */
    float *cb;  /* [H][n][m] */
    float *qkv; /* [3][n][E] */
} fw_scratch;

static attn_status fail(char *err, size_t err_size, attn_status rc, const char *fmt, ...)
    ATTN__PRINTF(4, 5);

static attn_status fail(char *err, size_t err_size, attn_status rc, const char *fmt, ...)
{
    if (err && err_size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return rc;
}

attn_status attn_pretrained_lengths(const attn_pretrained *m, const attn_pretrained_inputs *in,
                                    size_t *n, size_t *n_dec)
{
    if (!m || !in || !n || !n_dec)
        return ATTN_ERR_INVALID;
    *n_dec = 0;
    if (m->info.arch == ATTN_ARCH_VIT) {
        *n = m->info.max_positions;
        return ATTN_OK;
    }
    *n = in->n;
    if (m->info.arch == ATTN_ARCH_BART)
        *n_dec = in->decoder_input_ids ? in->n_dec : in->n;
    return ATTN_OK;
}

/* ------------------------------------------------------------ checks */

static attn_status check_ids(const int32_t *ids, size_t n, const char *what, size_t max_n,
                             size_t vocab, char *err, size_t err_size)
{
    if (!ids)
        return fail(err, err_size, ATTN_ERR_INVALID, "%s: missing", what);
    if (n == 0 || n > max_n)
        return fail(err, err_size, ATTN_ERR_INVALID,
                    "%s: %zu tokens, expected 1 to %zu (max_position_embeddings)", what, n, max_n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= vocab)
            return fail(err, err_size, ATTN_ERR_INVALID,
                        "%s[%zu]: id %ld is outside the vocabulary (0 to %zu)", what, i,
                        (long)ids[i], vocab - 1);
    return ATTN_OK;
}

static attn_status check_inputs(const attn_pretrained *m, const attn_pretrained_inputs *in,
                                const attn_pretrained_outputs *out, char *err, size_t err_size)
{
    const attn_pretrained_info *info = &m->info;
    const bool bart = info->arch == ATTN_ARCH_BART;
    attn_status rc;
    if (info->arch == ATTN_ARCH_VIT) {
        if (in->input_ids)
            return fail(err, err_size, ATTN_ERR_INVALID, "input_ids: ViT takes pixel_values");
        if (!in->pixel_values)
            return fail(err, err_size, ATTN_ERR_INVALID, "pixel_values: missing");
        if (in->height != info->image_size || in->width != info->image_size)
            return fail(err, err_size, ATTN_ERR_INVALID,
                        "pixel_values: image %zu x %zu, expected %zu x %zu (config image_size)",
                        in->height, in->width, info->image_size, info->image_size);
    } else {
        if (in->pixel_values)
            return fail(err, err_size, ATTN_ERR_INVALID, "pixel_values: only ViT takes images");
        rc = check_ids(in->input_ids, in->n, "input_ids", info->max_positions, info->vocab_size,
                       err, err_size);
        if (rc != ATTN_OK)
            return rc;
    }
    if (in->token_type_ids) {
        if (info->arch != ATTN_ARCH_BERT)
            return fail(err, err_size, ATTN_ERR_INVALID, "token_type_ids: only BERT takes them");
        for (size_t i = 0; i < in->n; i++)
            if (in->token_type_ids[i] < 0 || (size_t)in->token_type_ids[i] >= info->type_vocab_size)
                return fail(err, err_size, ATTN_ERR_INVALID,
                            "token_type_ids[%zu]: %ld, expected 0 to %zu (type_vocab_size)", i,
                            (long)in->token_type_ids[i], info->type_vocab_size - 1);
    }
    if (in->attention_mask && info->arch == ATTN_ARCH_VIT)
        return fail(err, err_size, ATTN_ERR_INVALID, "attention_mask: ViT takes none");
    if (in->decoder_input_ids) {
        if (!bart)
            return fail(err, err_size, ATTN_ERR_INVALID,
                        "decoder_input_ids: only encoder-decoder models (BART) take them");
        rc = check_ids(in->decoder_input_ids, in->n_dec, "decoder_input_ids", info->max_positions,
                       info->vocab_size, err, err_size);
        if (rc != ATTN_OK)
            return rc;
    }
    if (!bart && (out->decoder_attentions || out->cross_attentions ||
                  out->encoder_last_hidden_state || out->decoder_hidden_states))
        return fail(err, err_size, ATTN_ERR_INVALID,
                    "decoder and cross outputs: only encoder-decoder models (BART) have them");
    if (out->pooler_output && !info->has_pooler)
        return fail(err, err_size, ATTN_ERR_INVALID, "pooler_output: this model has no pooler");
    return ATTN_OK;
}

/*
 * Resolves the selection for a stack of L layers and H heads into sel
 * (layer_pos and all_heads from ws). Explicit indices are checked against
 * Lmin and Hmin, the smallest stack's counts (BART: one selection for both).
 */
static attn_status resolve_select(attn_ws *ws, const attn_pretrained_select *s, size_t L, size_t H,
                                  size_t Lmin, size_t Hmin, fw_sel *sel, char *err, size_t err_size)
{
    memset(sel, 0, sizeof *sel);
    sel->layer_pos = attn__ws_alloc(ws, L * sizeof(long));
    if (!sel->layer_pos)
        return fail(err, err_size, ATTN_ERR_NOMEM, "out of memory");
    const bool all_layers = !s || !s->layers, all_heads = !s || !s->heads;
    for (size_t l = 0; l < L; l++)
        sel->layer_pos[l] = all_layers ? (long)l : -1;
    sel->n_layers = all_layers ? L : s->n_layers;
    if (!all_layers) {
        if (s->n_layers == 0)
            return fail(err, err_size, ATTN_ERR_INVALID, "layers: empty selection");
        for (size_t i = 0; i < s->n_layers; i++) {
            const size_t l = s->layers[i];
            if (l >= Lmin)
                return fail(err, err_size, ATTN_ERR_INVALID, "layers[%zu]: %zu, expected 0 to %zu",
                            i, l, Lmin - 1);
            if (sel->layer_pos[l] >= 0)
                return fail(err, err_size, ATTN_ERR_INVALID, "layers[%zu]: %zu is repeated", i, l);
            sel->layer_pos[l] = (long)i;
        }
    }
    if (all_heads) {
        sel->all_heads = attn__ws_alloc(ws, H * sizeof(size_t));
        if (!sel->all_heads)
            return fail(err, err_size, ATTN_ERR_NOMEM, "out of memory");
        for (size_t h = 0; h < H; h++)
            sel->all_heads[h] = h;
        sel->heads = sel->all_heads;
        sel->n_heads = H;
        return ATTN_OK;
    }
    if (s->n_heads == 0)
        return fail(err, err_size, ATTN_ERR_INVALID, "heads: empty selection");
    for (size_t i = 0; i < s->n_heads; i++) {
        if (s->heads[i] >= Hmin)
            return fail(err, err_size, ATTN_ERR_INVALID, "heads[%zu]: %zu, expected 0 to %zu", i,
                        s->heads[i], Hmin - 1);
        for (size_t j = 0; j < i; j++)
            if (s->heads[j] == s->heads[i])
                return fail(err, err_size, ATTN_ERR_INVALID, "heads[%zu]: %zu is repeated", i,
                            s->heads[i]);
    }
    sel->heads = s->heads;
    sel->n_heads = s->n_heads;
    return ATTN_OK;
}

/* ------------------------------------------------------------ embeddings */

/* x [n][E] = tok[ids] * scale (+ type[type_ids]) + pos[i + offset], as HuggingFace sums them. */
static void embed_tokens(const attn_pretrained *m, const int32_t *ids, size_t n, const float *pos,
                         const int32_t *type_ids, float *x)
{
    const size_t E = m->info.hidden_size;
    for (size_t i = 0; i < n; i++) {
        const float *w = m->tok_emb + (size_t)ids[i] * E;
        const float *p = pos + (i + m->pos_offset) * E;
        const float *t =
            m->type_emb ? m->type_emb + (size_t)(type_ids ? type_ids[i] : 0) * E : NULL;
        float *xr = x + i * E;
        for (size_t j = 0; j < E; j++) {
            float a = w[j] * m->embed_scale;
            if (t)
                a += t[j];
            xr[j] = a + p[j];
        }
    }
}

/* ViT: x [1 + patches][E] = [cls; patches * W^T + b] + position embeddings.
 * patches [Np][C * P * P] is scratch. */
static void embed_patches(const attn_pretrained *m, const float *pixels, float *patches, float *x)
{
    const attn_pretrained_info *in = &m->info;
    const size_t E = in->hidden_size, P = in->patch_size, C = in->num_channels;
    const size_t S = in->image_size, G = S / P, Np = G * G, K = C * P * P;
    /* Conv2d(kernel = stride = P) is one product over the unfolded patches,
     * each flattened as the weight is: channel, row, column */
    for (size_t gr = 0; gr < G; gr++)
        for (size_t gc = 0; gc < G; gc++) {
            float *row = patches + (gr * G + gc) * K;
            for (size_t c = 0; c < C; c++)
                for (size_t py = 0; py < P; py++)
                    memcpy(row + (c * P + py) * P, pixels + (c * S + gr * P + py) * S + gc * P,
                           P * sizeof(float));
        }
    memcpy(x, m->cls_token, E * sizeof(float));
    for (size_t p = 0; p < Np; p++)
        memcpy(x + (1 + p) * E, m->patch_b, E * sizeof(float));
    attn__sgemm(false, true, Np, E, K, 1.0f, patches, K, m->patch_w, K, 1.0f, x + E, E);
    for (size_t i = 0; i < Np + 1; i++)
        for (size_t j = 0; j < E; j++)
            x[i * E + j] += m->pos_emb[i * E + j];
}

/* ------------------------------------------------------------ layers */

/* Copies the selected heads of hw [H][n][m] into dst [Hs][n][m] (layer slot li). */
static void copy_heads(const fw_sel *sel, size_t li, const float *hw, size_t n, size_t m,
                       float *dst)
{
    const size_t per = n * m;
    for (size_t hi = 0; hi < sel->n_heads; hi++)
        memcpy(dst + (li * sel->n_heads + hi) * per, hw + sel->heads[hi] * per,
               per * sizeof(float));
}

/* The selected heads' columns of proj [n][E] into dst [Hs][n][hd] (layer slot li). */
static void copy_head_cols(const fw_sel *sel, size_t li, const float *proj, size_t n, size_t E,
                           size_t hd, float *dst)
{
    for (size_t hi = 0; hi < sel->n_heads; hi++) {
        float *d = dst + (li * sel->n_heads + hi) * n * hd;
        for (size_t i = 0; i < n; i++)
            memcpy(d + i * hd, proj + i * E + sel->heads[hi] * hd, hd * sizeof(float));
    }
}

/*
 * Runs every layer of stack s over *x [n][E] (result in *x; *y is the other
 * buffer), one attn_tf call per layer. Decoder layers cross-attend memory
 * [m][E] with memory_padding [m] (1 = ignored) or NULL.
 */
static attn_status run_layers(const attn_pretrained *mdl, attn_ws *child, const attn__arch_stack *s,
                              bool decoder, bool causal, size_t n, size_t m, float **x, float **y,
                              const float *memory, const uint8_t *self_padding,
                              const uint8_t *memory_padding, const fw_sel *sel,
                              const fw_scratch *sc, const fw_out *o)
{
    const size_t E = s->cfg.d_model, H = s->cfg.nhead, hd = E / H;
    const bool want_qkv = o->q || o->k || o->v;
    for (size_t l = 0; l < s->n_layers; l++) {
        attn_tf_config cfg = s->cfg;
        cfg.self_attn.masks.causal = causal ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
        cfg.self_attn.masks.key_padding = self_padding;
        cfg.cross_masks.key_padding = memory_padding;
        if (mdl->info.arch == ATTN_ARCH_GPT2) {
            /* GPT2Attention: / sqrt(head_dim) when scale_attn_weights, / (layer + 1) too
             * when scale_attn_by_inverse_layer_idx */
            float scale = mdl->scale_attn_weights ? 1.0f / sqrtf((float)hd) : 1.0f;
            if (mdl->scale_by_layer)
                scale /= (float)(l + 1);
            cfg.self_attn.scale = scale;
        }
        const long li = sel->layer_pos[l];
        attn_tf_outputs to;
        memset(&to, 0, sizeof to);
        to.output = *y;
        if (li >= 0 && o->attn)
            to.self_weights = sc->wb;
        if (li >= 0 && o->cross)
            to.cross_weights = sc->cb;
        if (li >= 0 && want_qkv) {
            to.q = sc->qkv;
            to.k = sc->qkv + n * E;
            to.v = sc->qkv + 2 * n * E;
        }
        attn_tf_weights w = {.layers = &s->layers[l], .norm = {NULL, NULL}};
        attn_status st = decoder
                             ? attn_tf_decoder_forward(child, &cfg, &w, n, m, *x, memory, &to, NULL)
                             : attn_tf_encoder_forward(child, &cfg, &w, n, *x, &to, NULL);
        if (st != ATTN_OK)
            return st;
        if (li >= 0) {
            if (o->attn)
                copy_heads(sel, (size_t)li, sc->wb, n, n, o->attn);
            if (o->cross)
                copy_heads(sel, (size_t)li, sc->cb, n, m, o->cross);
            float *const dst[3] = {o->q, o->k, o->v};
            for (int i = 0; i < 3; i++)
                if (dst[i])
                    copy_head_cols(sel, (size_t)li, sc->qkv + (size_t)i * n * E, n, E, hd, dst[i]);
        }
        float *t = *x;
        *x = *y;
        *y = t;
        if (o->hidden)
            memcpy(o->hidden + (l + 1) * n * E, *x, n * E * sizeof(float));
    }
    return ATTN_OK;
}

/* ------------------------------------------------------------ sizes */

/* a * b * c into *out; false on overflow. */
static bool mul3(size_t a, size_t b, size_t c, size_t *out)
{
    size_t t;
    return attn__size_mul(a, b, &t) && attn__size_mul(t, c, out);
}

/* Floats of scratch a call takes, and the BLAS-sized dimensions. */
static attn_status scratch_floats(const attn_pretrained *m, size_t n, size_t nd,
                                  const attn_pretrained_outputs *out, size_t *total)
{
    const attn_pretrained_info *in = &m->info;
    const size_t E = in->hidden_size;
    const size_t Hmax = in->decoder_heads > in->num_heads ? in->decoder_heads : in->num_heads;
    const size_t rows = n > nd ? n : nd;
    size_t t = 0, a;
    /* two residual streams per stack (BART: encoder and decoder) */
    if (!mul3(4, rows, E, &a) || !attn__size_add(t, a, &t))
        return ATTN_ERR_OVERFLOW;
    if (!mul3(Hmax, rows, rows, &a) || !attn__size_add(t, a, &t) || !attn__size_add(t, a, &t))
        return ATTN_ERR_OVERFLOW;
    if ((out->q || out->k || out->v) && (!mul3(3, n, E, &a) || !attn__size_add(t, a, &t)))
        return ATTN_ERR_OVERFLOW;
    if (in->arch == ATTN_ARCH_VIT) {
        const size_t K = in->num_channels * in->patch_size * in->patch_size;
        if (!attn__blas_fits(K) || !attn__blas_fits(n) || !attn__blas_fits(E) ||
            !mul3(n, K, 1, &a) || !attn__size_add(t, a, &t))
            return ATTN_ERR_OVERFLOW;
    }
    if (!attn__size_mul(t, sizeof(float), &a))
        return ATTN_ERR_OVERFLOW;
    *total = t;
    return ATTN_OK;
}

/* ------------------------------------------------------------ forward */

static void pooler(const attn_pretrained *m, const float *cls, float *out)
{
    const size_t E = m->info.hidden_size;
    for (size_t o = 0; o < E; o++) {
        double acc = m->pooler.bias ? m->pooler.bias[o] : 0.0;
        const float *w = m->pooler.weight + o * E;
        for (size_t i = 0; i < E; i++)
            acc += (double)w[i] * cls[i];
        out[o] = tanhf((float)acc);
    }
}

/* attention_mask [n] (1 = token) as key padding (1 = ignored) into pad, or NULL when none pads. */
static const uint8_t *padding_of(const uint8_t *mask, size_t n, uint8_t *pad)
{
    bool any = false;
    if (!mask)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        pad[i] = mask[i] == 0;
        any = any || pad[i];
    }
    return any ? pad : NULL;
}

attn_status attn_pretrained_forward(const attn_pretrained *m, attn_ws *ws,
                                    const attn_pretrained_inputs *in,
                                    const attn_pretrained_select *sel_in,
                                    attn_pretrained_outputs *out, char *err, size_t err_size)
{
    if (err && err_size)
        err[0] = '\0';
    if (!m || !ws || !in || !out)
        return fail(err, err_size, ATTN_ERR_INVALID, "attn_pretrained_forward: NULL argument");
    const attn_pretrained_info *info = &m->info;
    const bool bart = info->arch == ATTN_ARCH_BART;
    attn_status rc = check_inputs(m, in, out, err, err_size);
    if (rc != ATTN_OK)
        return rc;
    size_t n, nd;
    attn_pretrained_lengths(m, in, &n, &nd);
    size_t total;
    if ((rc = scratch_floats(m, n, nd, out, &total)) != ATTN_OK)
        return fail(err, err_size, rc, "the sequence is too long to compute");

    attn__ws_reset(ws);
    const size_t L = info->num_layers, H = info->num_heads;
    const size_t Ld = bart ? info->decoder_layers : L, Hd = bart ? info->decoder_heads : H;
    const size_t Lmin = L < Ld ? L : Ld, Hmin = H < Hd ? H : Hd;
    fw_sel sel, dsel;
    if ((rc = resolve_select(ws, sel_in, L, H, Lmin, Hmin, &sel, err, err_size)) != ATTN_OK ||
        (bart &&
         (rc = resolve_select(ws, sel_in, Ld, Hd, Lmin, Hmin, &dsel, err, err_size)) != ATTN_OK))
        return rc;
    attn_ws *child = attn__ws_child(ws);
    const size_t E = info->hidden_size, rows = n > nd ? n : nd;
    const size_t Hmax =
        info->decoder_heads > info->num_heads ? info->decoder_heads : info->num_heads;
    float *x = attn__ws_floats(ws, rows * E), *y = attn__ws_floats(ws, rows * E);
    fw_scratch sc = {.wb = attn__ws_floats(ws, Hmax * rows * rows), .cb = NULL, .qkv = NULL};
    if (bart)
        sc.cb = attn__ws_floats(ws, Hmax * rows * rows);
    if (out->q || out->k || out->v)
        sc.qkv = attn__ws_floats(ws, 3 * n * E);
    uint8_t *pad = attn__ws_alloc(ws, rows);
    float *patches = NULL;
    if (info->arch == ATTN_ARCH_VIT)
        patches =
            attn__ws_floats(ws, (n - 1) * info->num_channels * info->patch_size * info->patch_size);
    if (!child || !x || !y || !sc.wb || (bart && !sc.cb) ||
        ((out->q || out->k || out->v) && !sc.qkv) || !pad ||
        (info->arch == ATTN_ARCH_VIT && !patches))
        return fail(err, err_size, ATTN_ERR_NOMEM, "out of memory");

    /* embeddings */
    if (info->arch == ATTN_ARCH_VIT) {
        embed_patches(m, in->pixel_values, patches, x);
    } else {
        embed_tokens(m, in->input_ids, n, m->pos_emb, in->token_type_ids, x);
        if (m->emb_norm.weight)
            attn_layer_norm(n, E, info->layer_norm_eps, x, m->emb_norm.weight, m->emb_norm.bias, x);
    }
    if (out->hidden_states)
        memcpy(out->hidden_states, x, n * E * sizeof(float));

    const uint8_t *self_padding = padding_of(in->attention_mask, n, pad);
    fw_out o = {.attn = out->attentions,
                .cross = NULL,
                .hidden = out->hidden_states,
                .q = out->q,
                .k = out->k,
                .v = out->v};
    rc = run_layers(m, child, &m->enc, false, info->causal, n, 0, &x, &y, NULL, self_padding, NULL,
                    &sel, &sc, &o);
    if (rc != ATTN_OK)
        return fail(err, err_size, rc, "engine: %s", attn_status_str(rc));

    if (info->arch == ATTN_ARCH_BART) {
        /* the decoder: its input is x's stream, the encoder's output stays in x */
        if (out->encoder_last_hidden_state)
            memcpy(out->encoder_last_hidden_state, x, n * E * sizeof(float));
        float *dx = y, *dy = attn__ws_floats(ws, nd * E);
        float *enc = x;
        if (!dy)
            return fail(err, err_size, ATTN_ERR_NOMEM, "out of memory");
        const int32_t *dec_ids = in->decoder_input_ids;
        int32_t *shifted = NULL;
        if (!dec_ids) {
            /* BartModel's shift_tokens_right: start token, then the input without its last */
            shifted = attn__ws_alloc(ws, n * sizeof(int32_t));
            if (!shifted)
                return fail(err, err_size, ATTN_ERR_NOMEM, "out of memory");
            shifted[0] = info->decoder_start_token_id;
            for (size_t i = 1; i < n; i++)
                shifted[i] = in->input_ids[i - 1];
            dec_ids = shifted;
        }
        embed_tokens(m, dec_ids, nd, m->dec_pos_emb, NULL, dx);
        attn_layer_norm(nd, E, info->layer_norm_eps, dx, m->dec_emb_norm.weight,
                        m->dec_emb_norm.bias, dx);
        if (out->decoder_hidden_states)
            memcpy(out->decoder_hidden_states, dx, nd * E * sizeof(float));
        fw_out od = {.attn = out->decoder_attentions,
                     .cross = out->cross_attentions,
                     .hidden = out->decoder_hidden_states};
        /* the decoder's self-attention is causal only; the encoder's padding
         * applies to the keys of its cross-attention */
        rc = run_layers(m, child, &m->dec, true, true, nd, n, &dx, &dy, enc, NULL, self_padding,
                        &dsel, &sc, &od);
        if (rc != ATTN_OK)
            return fail(err, err_size, rc, "engine: %s", attn_status_str(rc));
        if (out->last_hidden_state)
            memcpy(out->last_hidden_state, dx, nd * E * sizeof(float));
        return ATTN_OK;
    }

    if (m->final_norm.weight) {
        /* GPT-2's ln_f and ViT's layernorm; GPT-2's last hidden state is after it */
        attn_layer_norm(n, E, info->layer_norm_eps, x, m->final_norm.weight, m->final_norm.bias, y);
        if (out->hidden_states && info->arch == ATTN_ARCH_GPT2)
            memcpy(out->hidden_states + info->num_layers * n * E, y, n * E * sizeof(float));
        if (out->last_hidden_state)
            memcpy(out->last_hidden_state, y, n * E * sizeof(float));
    } else if (out->last_hidden_state) {
        memcpy(out->last_hidden_state, x, n * E * sizeof(float));
    }
    if (out->pooler_output)
        pooler(m, x, out->pooler_output);
    return ATTN_OK;
}
