/* test_engine_transformer.c - transformer layers and stacks against torch.nn
 * (tests/data/layer_cases.json). */
#include "attn.h"

#include <check.h>
#include <cjson/cJSON.h>

#include "util_golden.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_TOL 1e-4

/* The parsed golden file, loaded once before the suite runs (read-only afterwards). */
static cJSON *g_root;

static const cJSON *golden_case(int index)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g_root, "cases"), index);
}

static const char *str_of(const cJSON *c, const char *key, const char *fallback)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsString(s) ? s->valuestring : fallback;
}

static double num_of(const cJSON *c, const char *key, double fallback)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(x) ? x->valuedouble : fallback;
}

static bool bool_of(const cJSON *c, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, key));
}

/* Every element within GOLDEN_TOL of expected, and a small relative norm error. */
static void expect_close(const char *cname, const char *what, const float *got, const tensor *exp)
{
    double num = 0.0, den = 0.0, max_abs = 0.0;
    for (size_t i = 0; i < exp->count; i++) {
        const double e = isnan(exp->x[i]) ? 0.0 : exp->x[i];
        const double d = fabs((double)got[i] - e);
        ck_assert_msg(isfinite(got[i]), "%s %s[%zu] is not finite", cname, what, i);
        ck_assert_msg(d <= GOLDEN_TOL, "%s %s[%zu]: got %.8g, expected %.8g", cname, what, i,
                      (double)got[i], e);
        num += d * d;
        den += e * e;
        if (d > max_abs)
            max_abs = d;
    }
    const double rel = den > 0.0 ? sqrt(num / den) : sqrt(num);
    printf("golden %-24s %-18s max_abs %.3g rel_norm %.3g\n", cname, what, max_abs, rel);
    ck_assert_msg(rel <= 1e-5, "%s %s: relative norm error %.3g", cname, what, rel);
}

/* ------------------------------------------------------------ state_dict -> weights */

#define MAX_LAYERS 4
#define MAX_BUFS 128

typedef struct sd_weights {
    attn_tf_layer layers[MAX_LAYERS];
    attn_tf_weights w;
    float *bufs[MAX_BUFS];
    size_t n_bufs;
} sd_weights;

/* state_dict[prefix + name] as floats (kept for sd_free), or NULL if absent. */
static const float *sd_get(sd_weights *sw, const cJSON *sd, const char *prefix, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    if (!cJSON_GetObjectItemCaseSensitive(sd, key))
        return NULL;
    tensor t = tensor_get(sd, key);
    ck_assert_uint_lt(sw->n_bufs, MAX_BUFS);
    float *f = to_f32(&t);
    free(t.x);
    sw->bufs[sw->n_bufs++] = f;
    return f;
}

static void sd_attention(sd_weights *sw, const cJSON *sd, const char *prefix, const char *block,
                         attn_tf_attention *a)
{
    char p[96];
    snprintf(p, sizeof p, "%s%s.", prefix, block);
    a->in_proj_weight = sd_get(sw, sd, p, "in_proj_weight");
    a->in_proj_bias = sd_get(sw, sd, p, "in_proj_bias");
    a->out_proj_weight = sd_get(sw, sd, p, "out_proj.weight");
    a->out_proj_bias = sd_get(sw, sd, p, "out_proj.bias");
}

static void sd_affine(sd_weights *sw, const cJSON *sd, const char *prefix, const char *block,
                      attn_tf_affine *a)
{
    char p[96];
    snprintf(p, sizeof p, "%s%s.", prefix, block);
    a->weight = sd_get(sw, sd, p, "weight");
    a->bias = sd_get(sw, sd, p, "bias");
}

/* Maps a TransformerEncoder(Layer)/TransformerDecoder(Layer) state_dict onto attn_tf_weights by
 * name. */
static void sd_load(sd_weights *sw, const cJSON *sd, size_t n_layers, bool stacked)
{
    memset(sw, 0, sizeof(*sw));
    ck_assert_uint_le(n_layers, MAX_LAYERS);
    for (size_t l = 0; l < n_layers; l++) {
        char prefix[32] = "";
        if (stacked)
            snprintf(prefix, sizeof prefix, "layers.%zu.", l);
        attn_tf_layer *ly = &sw->layers[l];
        sd_attention(sw, sd, prefix, "self_attn", &ly->self_attn);
        sd_attention(sw, sd, prefix, "multihead_attn", &ly->multihead_attn);
        sd_affine(sw, sd, prefix, "linear1", &ly->linear1);
        sd_affine(sw, sd, prefix, "linear2", &ly->linear2);
        sd_affine(sw, sd, prefix, "norm1", &ly->norm1);
        sd_affine(sw, sd, prefix, "norm2", &ly->norm2);
        sd_affine(sw, sd, prefix, "norm3", &ly->norm3);
    }
    sw->w.layers = sw->layers;
    if (stacked)
        sd_affine(sw, sd, "", "norm", &sw->w.norm);
}

static void sd_free(sd_weights *sw)
{
    for (size_t i = 0; i < sw->n_bufs; i++)
        free(sw->bufs[i]);
    sw->n_bufs = 0;
}

/* A golden bool mask (nn.Transformer's convention, true = NOT allowed) as 1 = may attend. */
static uint8_t *golden_mask(const cJSON *c, const char *key)
{
    if (!cJSON_GetObjectItemCaseSensitive(c, key))
        return NULL;
    tensor t = tensor_get(c, key);
    uint8_t *m = to_u8(&t);
    for (size_t i = 0; i < t.count; i++)
        m[i] = !m[i];
    free(t.x);
    return m;
}

/* A golden key padding mask (true = padding, the service's convention too). */
static uint8_t *golden_padding(const cJSON *c, const char *key)
{
    if (!cJSON_GetObjectItemCaseSensitive(c, key))
        return NULL;
    tensor t = tensor_get(c, key);
    uint8_t *m = to_u8(&t);
    free(t.x);
    return m;
}

/* ------------------------------------------------------------ golden cases */

START_TEST(golden_case_matches_torch_output_and_per_head_weights)
{
    const cJSON *c = golden_case(_i);
    ck_assert_ptr_nonnull(c);
    const char *kind = str_of(c, "kind", "?"), *name = str_of(c, "name", "?");
    const bool decoder = strcmp(kind, "decoder_layer") == 0;
    const bool stacked = strcmp(kind, "encoder_stack") == 0;
    ck_assert_msg(decoder || stacked || strcmp(kind, "encoder_layer") == 0, "unknown kind %s",
                  kind);

    attn_tf_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.d_model = (size_t)num_of(c, "d_model", 0);
    cfg.nhead = (size_t)num_of(c, "nhead", 0);
    cfg.dim_feedforward = (size_t)num_of(c, "dim_feedforward", 0);
    cfg.num_layers = (size_t)num_of(c, "num_layers", 1);
    cfg.norm_first = bool_of(c, "norm_first");
    cfg.layer_norm_eps = (float)num_of(c, "layer_norm_eps", 1e-5);
    ck_assert_int_eq(attn_activation_parse(str_of(c, "activation", "relu"), &cfg.activation),
                     ATTN_OK);
    cfg.self_attn.score = ATTN_SCORE_SCALED_DOT;
    if (bool_of(c, "causal"))
        cfg.self_attn.masks.causal = ATTN_CAUSAL_TOP_LEFT;
    uint8_t *self_mask = golden_mask(c, decoder ? "tgt_mask" : "src_mask");
    uint8_t *self_pad =
        golden_padding(c, decoder ? "tgt_key_padding_mask" : "src_key_padding_mask");
    uint8_t *mem_mask = golden_mask(c, "memory_mask");
    uint8_t *mem_pad = golden_padding(c, "memory_key_padding_mask");
    cfg.self_attn.masks.mask = self_mask;
    cfg.self_attn.masks.key_padding = self_pad;
    cfg.cross_masks.mask = mem_mask;
    cfg.cross_masks.key_padding = mem_pad;

    sd_weights sw;
    sd_load(&sw, cJSON_GetObjectItemCaseSensitive(c, "state_dict"), cfg.num_layers, stacked);
    ck_assert_msg(!stacked || !bool_of(c, "final_norm") || sw.w.norm.weight,
                  "%s: final norm missing", name);

    size_t n, E, m = 0, mE;
    json_dims2(c, decoder ? "target" : "input", &n, &E);
    ck_assert_uint_eq(E, cfg.d_model);
    tensor src = tensor_get(c, decoder ? "target" : "input");
    float *x = to_f32(&src);
    float *mem = NULL;
    tensor memt = {0};
    if (decoder) {
        json_dims2(c, "memory", &m, &mE);
        ck_assert_uint_eq(mE, E);
        memt = tensor_get(c, "memory");
        mem = to_f32(&memt);
    }

    const size_t L = cfg.num_layers, H = cfg.nhead;
    float *out = calloc(n * E, sizeof(float));
    float *sw_out = calloc(L * H * n * n, sizeof(float));
    float *cw_out = calloc(L * H * n * (m ? m : 1), sizeof(float));
    ck_assert(out && sw_out && cw_out);
    attn_tf_outputs o = {.output = out, .self_weights = sw_out, .cross_weights = cw_out};
    attn_ws *ws = attn_ws_create(NULL);
    attn_result res;
    attn_status st = decoder ? attn_tf_decoder_forward(ws, &cfg, &sw.w, n, m, x, mem, &o, &res)
                             : attn_tf_encoder_forward(ws, &cfg, &sw.w, n, x, &o, &res);
    ck_assert_msg(st == ATTN_OK, "%s: %s", name, attn_status_str(st));
    ck_assert_float_eq_tol(res.scale, 1.0f / sqrtf((float)(E / H)), 1e-7f);

    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "expected");
    tensor eo = tensor_get(exp, "output");
    ck_assert_uint_eq(eo.count, n * E);
    expect_close(name, "output", out, &eo);
    tensor esw = tensor_get(exp, "self_attn_weights");
    ck_assert_uint_eq(esw.count, L * H * n * n);
    expect_close(name, "self_attn_weights", sw_out, &esw);
    if (decoder) {
        tensor ecw = tensor_get(exp, "cross_attn_weights");
        ck_assert_uint_eq(ecw.count, L * H * n * m);
        expect_close(name, "cross_attn_weights", cw_out, &ecw);
        free(ecw.x);
    }

    /* The same call without weight outputs gives the same output, up to
     * rounding: without weights the engine takes its flash path (online
     * softmax over key tiles), which sums in another order. */
    float *out2 = calloc(n * E, sizeof(float));
    ck_assert_ptr_nonnull(out2);
    attn_tf_outputs o2 = {.output = out2};
    st = decoder ? attn_tf_decoder_forward(ws, &cfg, &sw.w, n, m, x, mem, &o2, NULL)
                 : attn_tf_encoder_forward(ws, &cfg, &sw.w, n, x, &o2, NULL);
    ck_assert_int_eq(st, ATTN_OK);
    for (size_t i = 0; i < n * E; i++)
        ck_assert_msg(fabsf(out[i] - out2[i]) <= 1e-5f * (1.0f + fabsf(out[i])),
                      "%s: output[%zu] = %.9g with weights, %.9g without", name, i,
                      (double)out[i], (double)out2[i]);

    attn_ws_free(ws);
    free(out);
    free(out2);
    free(sw_out);
    free(cw_out);
    free(x);
    free(mem);
    free(src.x);
    free(memt.x);
    free(eo.x);
    free(esw.x);
    free(self_mask);
    free(self_pad);
    free(mem_mask);
    free(mem_pad);
    sd_free(&sw);
}
END_TEST

/* ------------------------------------------------------------ small problems */

static float *seq(size_t count, float a, float b)
{
    float *x = malloc((count ? count : 1) * sizeof(float));
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < count; i++)
        x[i] = sinf(a * (float)i + b);
    return x;
}

static attn_tf_config small_config(size_t L, bool norm_first, attn_activation act)
{
    attn_tf_config c;
    memset(&c, 0, sizeof(c));
    c.d_model = 8;
    c.nhead = 2;
    c.dim_feedforward = 12;
    c.num_layers = L;
    c.activation = act;
    c.norm_first = norm_first;
    c.layer_norm_eps = 1e-5f;
    return c;
}

START_TEST(layer_norm_hand_case_with_affine_and_in_place)
{
    const float x[8] = {1, 2, 3, 4, 5, 5, 5, 5};
    const float w[4] = {1, 2, 1, 1}, b[4] = {0, 0, 1, 0};
    float y[8];
    ck_assert_int_eq(attn_layer_norm(2, 4, 1e-5f, x, w, b, y), ATTN_OK);
    /* mean 2.5, biased variance 1.25 */
    const double s = 1.0 / sqrt(1.25 + 1e-5);
    const double want[8] = {-1.5 * s, -0.5 * s * 2, 0.5 * s + 1, 1.5 * s, 0, 0, 1, 0};
    for (int i = 0; i < 8; i++)
        ck_assert_double_eq_tol(y[i], want[i], 1e-6);
    /* no affine, in place */
    float z[8];
    memcpy(z, x, sizeof z);
    ck_assert_int_eq(attn_layer_norm(2, 4, 1e-5f, z, NULL, NULL, z), ATTN_OK);
    ck_assert_double_eq_tol(z[0], -1.5 * s, 1e-6);
    ck_assert_double_eq_tol(z[3], 1.5 * s, 1e-6);
    ck_assert_float_eq(z[5], 0.0f);
    /* a large offset loses nothing (sums in double) */
    const float big[2] = {10000.0f, 10000.5f};
    float yb[2];
    ck_assert_int_eq(attn_layer_norm(1, 2, 1e-5f, big, NULL, NULL, yb), ATTN_OK);
    ck_assert_double_eq_tol(yb[0], -0.25 / sqrt(0.0625 + 1e-5), 1e-5);
    /* bad arguments */
    ck_assert_int_eq(attn_layer_norm(2, 4, 0.0f, x, w, b, y), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_layer_norm(2, 4, NAN, x, w, b, y), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_layer_norm(2, 4, INFINITY, x, w, b, y), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_layer_norm(2, 0, 1e-5f, x, w, b, y), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_layer_norm(2, 4, 1e-5f, NULL, w, b, y), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_layer_norm(2, 4, 1e-5f, x, w, b, NULL), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_layer_norm(0, 4, 1e-5f, NULL, NULL, NULL, NULL), ATTN_OK);
    ck_assert_int_eq(attn_layer_norm(SIZE_MAX / 2, 4, 1e-5f, x, w, b, y), ATTN_ERR_OVERFLOW);
}
END_TEST

START_TEST(feed_forward_relu_and_exact_gelu_match_hand_values)
{
    /* E = 2, F = 2; linear1 = identity with bias [0, -2], linear2 = [[1, 1], [1, -1]], b2 = [0.5,
     * 0]. */
    const float w1[4] = {1, 0, 0, 1}, b1[2] = {0, -2}, w2[4] = {1, 1, 1, -1}, b2[2] = {0.5f, 0};
    const float x[4] = {1, 1, -1, 3};
    attn_tf_affine l1 = {w1, b1}, l2 = {w2, b2};
    float y[4];
    attn_ws *ws = attn_ws_create(NULL);
    /* hidden before act: row0 [1, -1], row1 [-1, 1] */
    ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_RELU, 2, 2, 2, x, &l1, &l2, y), ATTN_OK);
    const float relu_want[4] = {1.5f, 1.0f, 1.5f, -1.0f};
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq_tol(y[i], relu_want[i], 1e-6f);
    ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_GELU, 2, 2, 2, x, &l1, &l2, y), ATTN_OK);
    const double g1 = 0.8413447460685429, gm1 = -0.15865525393145707; /* gelu(1), gelu(-1) */
    const double gelu_want[4] = {g1 + gm1 + 0.5, g1 - gm1, gm1 + g1 + 0.5, gm1 - g1};
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(y[i], gelu_want[i], 1e-6);
    /* biases are optional */
    attn_tf_affine nb1 = {w1, NULL}, nb2 = {w2, NULL};
    ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_RELU, 2, 2, 2, x, &nb1, &nb2, y),
                     ATTN_OK);
    ck_assert_float_eq(y[0], 2.0f);
    ck_assert_float_eq(y[1], 0.0f);
    /* bad arguments */
    attn_tf_affine missing = {NULL, b1};
    ck_assert_int_eq(attn_ffn_forward(NULL, ATTN_ACTIVATION_RELU, 2, 2, 2, x, &l1, &l2, y),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_ffn_forward(ws, (attn_activation)9, 2, 2, 2, x, &l1, &l2, y),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_RELU, 2, 2, 2, x, &missing, &l2, y),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_RELU, 2, 0, 2, x, &l1, &l2, y),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_RELU, 2, 2, 2, NULL, &l1, &l2, y),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(
        attn_ffn_forward(ws, ATTN_ACTIVATION_RELU, (size_t)1 << 40, 2, 2, x, &l1, &l2, y),
        ATTN_ERR_OVERFLOW);
    /* names */
    attn_activation a = ATTN_ACTIVATION_GELU;
    ck_assert_str_eq(attn_activation_name(ATTN_ACTIVATION_RELU), "relu");
    ck_assert_str_eq(attn_activation_name(ATTN_ACTIVATION_GELU), "gelu");
    ck_assert_ptr_null(attn_activation_name((attn_activation)3));
    ck_assert_int_eq(attn_activation_parse("tanh", &a), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_activation_parse(NULL, &a), ATTN_ERR_INVALID);
    ck_assert_int_eq(a, ATTN_ACTIVATION_GELU);
    attn_ws_free(ws);
}
END_TEST

START_TEST(seeded_init_is_deterministic_and_follows_torch_distributions)
{
    attn_tf_config c = small_config(2, false, ATTN_ACTIVATION_RELU);
    const size_t E = c.d_model, F = c.dim_feedforward;
    attn_tf_weights a, b, d;
    void *sa = NULL, *sb = NULL, *sd = NULL;
    ck_assert_int_eq(attn_tf_init_seeded(&c, true, true, true, 42, &a, &sa), ATTN_OK);
    ck_assert_int_eq(attn_tf_init_seeded(&c, true, true, true, 42, &b, &sb), ATTN_OK);
    ck_assert_int_eq(attn_tf_init_seeded(&c, true, true, true, 43, &d, &sd), ATTN_OK);
    const double xavier = sqrt(6.0 / (double)(4 * E));
    for (size_t l = 0; l < c.num_layers; l++) {
        const attn_tf_layer *la = &a.layers[l], *lb = &b.layers[l], *ld = &d.layers[l];
        ck_assert_mem_eq(la->self_attn.in_proj_weight, lb->self_attn.in_proj_weight,
                         3 * E * E * sizeof(float));
        ck_assert_mem_eq(la->linear2.bias, lb->linear2.bias, E * sizeof(float));
        ck_assert(memcmp(la->self_attn.in_proj_weight, ld->self_attn.in_proj_weight,
                         3 * E * E * sizeof(float)) != 0);
        double max_in = 0.0;
        for (size_t i = 0; i < 3 * E * E; i++) {
            const double v = fabs(la->self_attn.in_proj_weight[i]);
            ck_assert_double_le(v, xavier);
            max_in = v > max_in ? v : max_in;
            ck_assert_double_le(fabs(la->multihead_attn.in_proj_weight[i]), xavier);
        }
        ck_assert_double_gt(max_in, 0.5 * xavier); /* spread over the range */
        for (size_t i = 0; i < E * E; i++)
            ck_assert_double_le(fabs(la->self_attn.out_proj_weight[i]), 1.0 / sqrt((double)E));
        for (size_t i = 0; i < F * E; i++) {
            ck_assert_double_le(fabs(la->linear1.weight[i]), 1.0 / sqrt((double)E));
            ck_assert_double_le(fabs(la->linear2.weight[i]), 1.0 / sqrt((double)F));
        }
        for (size_t i = 0; i < F; i++)
            ck_assert_double_le(fabs(la->linear1.bias[i]), 1.0 / sqrt((double)E));
        for (size_t i = 0; i < 3 * E; i++)
            ck_assert_float_eq(la->self_attn.in_proj_bias[i], 0.0f);
        for (size_t i = 0; i < E; i++) {
            ck_assert_float_eq(la->self_attn.out_proj_bias[i], 0.0f);
            ck_assert_float_eq(la->multihead_attn.out_proj_bias[i], 0.0f);
            ck_assert_double_le(fabs(la->linear2.bias[i]), 1.0 / sqrt((double)F));
            ck_assert_float_eq(la->norm1.weight[i], 1.0f);
            ck_assert_float_eq(la->norm3.weight[i], 1.0f);
            ck_assert_float_eq(la->norm2.bias[i], 0.0f);
        }
    }
    ck_assert_ptr_nonnull(a.norm.weight);
    ck_assert_float_eq(a.norm.weight[0], 1.0f);
    ck_assert_float_eq(a.norm.bias[E - 1], 0.0f);

    /* A post-norm stack's rows come out normalised (norm weight 1, bias 0). */
    const size_t n = 5, m = 3;
    float *x = seq(n * E, 0.37f, 0.1f), *mem = seq(m * E, 0.21f, 1.0f);
    float *out = calloc(n * E, sizeof(float));
    ck_assert_ptr_nonnull(out);
    attn_ws *ws = attn_ws_create(NULL);
    attn_tf_outputs o = {.output = out};
    ck_assert_int_eq(attn_tf_decoder_forward(ws, &c, &a, n, m, x, mem, &o, NULL), ATTN_OK);
    for (size_t i = 0; i < n; i++) {
        double s = 0.0, ss = 0.0;
        for (size_t j = 0; j < E; j++) {
            ck_assert(isfinite(out[i * E + j]));
            s += out[i * E + j];
            ss += (double)out[i * E + j] * out[i * E + j];
        }
        ck_assert_double_eq_tol(s / (double)E, 0.0, 1e-5);
        ck_assert_double_eq_tol(ss / (double)E, 1.0, 1e-3);
    }

    /* Without biases or final norm: those pointers stay NULL, the stack still runs. */
    attn_tf_weights nb;
    void *snb = NULL;
    ck_assert_int_eq(attn_tf_init_seeded(&c, false, false, false, 42, &nb, &snb), ATTN_OK);
    ck_assert_ptr_null(nb.layers[0].self_attn.in_proj_bias);
    ck_assert_ptr_null(nb.layers[1].linear1.bias);
    ck_assert_ptr_null(nb.layers[0].norm1.bias);
    ck_assert_ptr_null(nb.layers[0].multihead_attn.in_proj_weight);
    ck_assert_ptr_null(nb.norm.weight);
    ck_assert_int_eq(attn_tf_encoder_forward(ws, &c, &nb, n, x, &o, NULL), ATTN_OK);

    /* Errors allocate nothing and leave the outputs alone. */
    attn_tf_config bad = c;
    bad.nhead = 3;
    void *untouched = &bad;
    ck_assert_int_eq(attn_tf_init_seeded(&bad, false, true, false, 1, &nb, &untouched),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_eq(untouched, &bad);
    ck_assert_int_eq(attn_tf_init_seeded(NULL, false, true, false, 1, &nb, &untouched),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_tf_init_seeded(&c, false, true, false, 1, NULL, &untouched),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_tf_init_seeded(&c, false, true, false, 1, &nb, NULL), ATTN_ERR_INVALID);
    bad = c;
    bad.d_model = SIZE_MAX / 2;
    bad.nhead = 1;
    ck_assert_int_eq(attn_tf_init_seeded(&bad, false, true, false, 1, &nb, &untouched),
                     ATTN_ERR_OVERFLOW);
    ck_assert_ptr_eq(untouched, &bad);

    attn_ws_free(ws);
    free(x);
    free(mem);
    free(out);
    attn_free_buffer(sa);
    attn_free_buffer(sb);
    attn_free_buffer(sd);
    attn_free_buffer(snb);
}
END_TEST

/*
 * Masks against plain references: rows, FF and norms act per token, so
 * (a) with causal attention the first k outputs are those of the first k
 * tokens alone; (b) an explicit lower-triangular mask is the causal flag;
 * (c) padding the last source token (or memory row) leaves the other rows as
 * if it were not there; (d) a padded key gets weight 0.
 */
START_TEST(masks_behave_as_removing_the_keys)
{
    for (int pre = 0; pre < 2; pre++) {
        attn_tf_config c = small_config(2, pre, ATTN_ACTIVATION_GELU);
        const size_t E = c.d_model, H = c.nhead, L = c.num_layers, n = 6, m = 4, k = 4;
        attn_tf_weights w;
        void *store = NULL;
        ck_assert_int_eq(attn_tf_init_seeded(&c, true, true, true, 7, &w, &store), ATTN_OK);
        float *x = seq(n * E, 0.53f, 0.3f), *mem = seq(m * E, 0.29f, 2.0f);
        float *full = calloc(n * E, sizeof(float)), *part = calloc(n * E, sizeof(float));
        float *wts = calloc(L * H * n * n, sizeof(float)),
              *cw = calloc(L * H * n * m, sizeof(float));
        ck_assert(full && part && wts && cw);
        attn_ws *ws = attn_ws_create(NULL);

        /* (a) causal prefix */
        c.self_attn.masks.causal = ATTN_CAUSAL_TOP_LEFT;
        attn_tf_outputs o = {.output = full, .self_weights = wts};
        ck_assert_int_eq(attn_tf_decoder_forward(ws, &c, &w, n, m, x, mem, &o, NULL), ATTN_OK);
        attn_tf_outputs op = {.output = part};
        ck_assert_int_eq(attn_tf_decoder_forward(ws, &c, &w, k, m, x, mem, &op, NULL), ATTN_OK);
        for (size_t i = 0; i < k * E; i++)
            ck_assert_float_eq_tol(full[i], part[i], 1e-5f);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                ck_assert_float_eq(wts[(1 * H + 1) * n * n + i * n + j], 0.0f);

        /* (b) explicit mask == causal */
        uint8_t tri[6 * 6];
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                tri[i * n + j] = j <= i;
        c.self_attn.masks.causal = ATTN_CAUSAL_NONE;
        c.self_attn.masks.mask = tri;
        ck_assert_int_eq(attn_tf_decoder_forward(ws, &c, &w, n, m, x, mem, &op, NULL), ATTN_OK);
        for (size_t i = 0; i < n * E; i++)
            ck_assert_float_eq_tol(full[i], part[i], 1e-6f);
        c.self_attn.masks.mask = NULL;

        /* (c) self key padding on the last token; memory key padding on the last row */
        uint8_t pad[6] = {0, 0, 0, 0, 0, 1}, mpad[4] = {0, 0, 0, 1};
        c.self_attn.masks.key_padding = pad;
        c.cross_masks.key_padding = mpad;
        attn_tf_outputs oc = {.output = full, .self_weights = wts, .cross_weights = cw};
        ck_assert_int_eq(attn_tf_decoder_forward(ws, &c, &w, n, m, x, mem, &oc, NULL), ATTN_OK);
        c.self_attn.masks.key_padding = NULL;
        c.cross_masks.key_padding = NULL;
        ck_assert_int_eq(attn_tf_decoder_forward(ws, &c, &w, n - 1, m - 1, x, mem, &op, NULL),
                         ATTN_OK);
        for (size_t i = 0; i < (n - 1) * E; i++)
            ck_assert_float_eq_tol(full[i], part[i], 1e-5f);
        /* (d) */
        for (size_t lh = 0; lh < L * H; lh++)
            for (size_t i = 0; i < n; i++) {
                ck_assert_float_eq(wts[lh * n * n + i * n + n - 1], 0.0f);
                ck_assert_float_eq(cw[lh * n * m + i * m + m - 1], 0.0f);
            }

        /* the same for an encoder with a padded token */
        c.self_attn.masks.key_padding = pad;
        attn_tf_outputs oe = {.output = full};
        ck_assert_int_eq(attn_tf_encoder_forward(ws, &c, &w, n, x, &oe, NULL), ATTN_OK);
        c.self_attn.masks.key_padding = NULL;
        ck_assert_int_eq(attn_tf_encoder_forward(ws, &c, &w, n - 1, x, &op, NULL), ATTN_OK);
        for (size_t i = 0; i < (n - 1) * E; i++)
            ck_assert_float_eq_tol(full[i], part[i], 1e-5f);

        attn_ws_free(ws);
        free(x);
        free(mem);
        free(full);
        free(part);
        free(wts);
        free(cw);
        attn_free_buffer(store);
    }
}
END_TEST

/* ------------------------------------------------------------ bad arguments */

typedef struct bad_case {
    const char *name;
    attn_status want;
} bad_case;

static const bad_case BAD[] = {
    {"null workspace", ATTN_ERR_INVALID},
    {"null config", ATTN_ERR_INVALID},
    {"null weights", ATTN_ERR_INVALID},
    {"null outputs", ATTN_ERR_INVALID},
    {"d_model 0", ATTN_ERR_INVALID},
    {"nhead 0", ATTN_ERR_INVALID},
    {"nhead does not divide d_model", ATTN_ERR_INVALID},
    {"dim_feedforward 0", ATTN_ERR_INVALID},
    {"num_layers 0", ATTN_ERR_INVALID},
    {"unknown activation", ATTN_ERR_INVALID},
    {"layer_norm_eps 0", ATTN_ERR_INVALID},
    {"layer_norm_eps NaN", ATTN_ERR_INVALID},
    {"additive score", ATTN_ERR_INVALID},
    {"negative softcap", ATTN_ERR_INVALID},
    {"unknown causal mode", ATTN_ERR_INVALID},
    {"self m_masked not n", ATTN_ERR_SHAPE},
    {"cross m_masked not m", ATTN_ERR_SHAPE},
    {"cross unknown causal mode", ATTN_ERR_INVALID},
    {"null layers", ATTN_ERR_INVALID},
    {"missing in_proj_weight of layer 1", ATTN_ERR_INVALID},
    {"missing linear2.weight", ATTN_ERR_INVALID},
    {"missing norm2.weight", ATTN_ERR_INVALID},
    {"missing decoder norm3.weight", ATTN_ERR_INVALID},
    {"missing multihead_attn.out_proj.weight", ATTN_ERR_INVALID},
    {"final norm bias without weight", ATTN_ERR_INVALID},
    {"null target", ATTN_ERR_INVALID},
    {"null memory", ATTN_ERR_INVALID},
    {"n beyond the BLAS integer", ATTN_ERR_OVERFLOW},
    {"L * H * n * n overflows", ATTN_ERR_OVERFLOW},
};
#define N_BAD ((int)(sizeof(BAD) / sizeof(BAD[0])))

START_TEST(decoder_bad_argument_returns_documented_error_and_writes_nothing)
{
    attn_tf_config c = small_config(2, false, ATTN_ACTIVATION_RELU);
    attn_tf_weights w;
    void *store = NULL;
    ck_assert_int_eq(attn_tf_init_seeded(&c, true, true, true, 3, &w, &store), ATTN_OK);
    attn_tf_layer layers[2];
    memcpy(layers, w.layers, sizeof layers);
    w.layers = layers;
    const size_t E = c.d_model;
    float *x = seq(3 * E, 0.4f, 0.0f), *mem = seq(2 * E, 0.2f, 0.0f);
    float out[3 * 8];
    for (size_t i = 0; i < 3 * E; i++)
        out[i] = -7.0f;
    attn_ws *ws = attn_ws_create(NULL);
    attn_tf_outputs o = {.output = out};
    attn_ws *use_ws = ws;
    const attn_tf_config *use_c = &c;
    const attn_tf_weights *use_w = &w;
    attn_tf_outputs *use_o = &o;
    const float *tgt = x, *memory = mem;
    size_t n = 3, m = 2;
    switch (_i) {
    case 0:
        use_ws = NULL;
        break;
    case 1:
        use_c = NULL;
        break;
    case 2:
        use_w = NULL;
        break;
    case 3:
        use_o = NULL;
        break;
    case 4:
        c.d_model = 0;
        break;
    case 5:
        c.nhead = 0;
        break;
    case 6:
        c.nhead = 3;
        break;
    case 7:
        c.dim_feedforward = 0;
        break;
    case 8:
        c.num_layers = 0;
        break;
    case 9:
        c.activation = (attn_activation)5;
        break;
    case 10:
        c.layer_norm_eps = 0.0f;
        break;
    case 11:
        c.layer_norm_eps = NAN;
        break;
    case 12:
        c.self_attn.score = ATTN_SCORE_ADDITIVE;
        break;
    case 13:
        c.self_attn.softcap = -1.0f;
        break;
    case 14:
        c.self_attn.masks.causal = (attn_causal)9;
        break;
    case 15:
        c.self_attn.masks.m_masked = 2;
        break;
    case 16:
        c.cross_masks.m_masked = 3;
        break;
    case 17:
        c.cross_masks.causal = (attn_causal)9;
        break;
    case 18:
        w.layers = NULL;
        break;
    case 19:
        layers[1].self_attn.in_proj_weight = NULL;
        break;
    case 20:
        layers[0].linear2.weight = NULL;
        break;
    case 21:
        layers[1].norm2.weight = NULL;
        break;
    case 22:
        layers[0].norm3.weight = NULL;
        break;
    case 23:
        layers[1].multihead_attn.out_proj_weight = NULL;
        break;
    case 24:
        w.norm.weight = NULL;
        break;
    case 25:
        tgt = NULL;
        break;
    case 26:
        memory = NULL;
        break;
    case 27:
        n = (size_t)1 << 40;
        break;
    case 28:
        n = (size_t)1 << 30;
        break; /* 2 * 2 * 2^60 floats */
    default:
        ck_abort_msg("no case %d", _i);
    }
    attn_status st = attn_tf_decoder_forward(use_ws, use_c, use_w, n, m, tgt, memory, use_o, NULL);
    ck_assert_msg(st == BAD[_i].want, "%s: got %d (%s), expected %d", BAD[_i].name, (int)st,
                  attn_status_str(st), (int)BAD[_i].want);
    for (size_t i = 0; i < 3 * E; i++)
        ck_assert_float_eq(out[i], -7.0f);
    /* The encoder checks the same things (those that apply to it). */
    if (_i <= 15 || (_i >= 18 && _i <= 21) || _i == 24 || _i == 25 || _i >= 27) {
        st = attn_tf_encoder_forward(use_ws, use_c, use_w, n, tgt, use_o, NULL);
        ck_assert_msg(st == BAD[_i].want, "encoder %s: got %d (%s)", BAD[_i].name, (int)st,
                      attn_status_str(st));
    }
    attn_ws_free(ws);
    free(x);
    free(mem);
    attn_free_buffer(store);
}
END_TEST

/* ------------------------------------------------------------ allocation failures */

typedef struct counter {
    size_t n_calls, n_ok, n_free, fail_at; /* fail_at: the request (1-based) that fails; 0 none */
} counter;

static void *counting_alloc(size_t n_bytes, void *user)
{
    counter *c = user;
    c->n_calls++;
    if (c->fail_at && c->n_calls == c->fail_at)
        return NULL;
    void *p = malloc(n_bytes);
    if (p)
        c->n_ok++;
    return p;
}

static void counting_free(void *ptr, void *user)
{
    counter *c = user;
    if (ptr) {
        c->n_free++;
        free(ptr);
    }
}

typedef struct alloc_problem {
    attn_tf_config c;
    attn_tf_weights w;
    void *store;
    size_t n, m;
    float *x, *mem, *weights, *cross;
} alloc_problem;

static attn_status alloc_run(attn_ws *ws, alloc_problem *p, float *out)
{
    attn_tf_outputs o = {.output = out, .self_weights = p->weights, .cross_weights = p->cross};
    return attn_tf_decoder_forward(ws, &p->c, &p->w, p->n, p->m, p->x, p->mem, &o, NULL);
}

START_TEST(decoder_each_failed_allocation_returns_nomem_then_recovers_no_leak)
{
    alloc_problem p = {.n = 40, .m = 33};
    p.c = small_config(2, true, ATTN_ACTIVATION_GELU);
    p.c.d_model = 32;
    p.c.nhead = 4;
    p.c.dim_feedforward = 96;
    p.c.self_attn.masks.causal = ATTN_CAUSAL_TOP_LEFT;
    ck_assert_int_eq(attn_tf_init_seeded(&p.c, true, true, true, 9, &p.w, &p.store), ATTN_OK);
    const size_t E = p.c.d_model, H = p.c.nhead, L = p.c.num_layers, count = p.n * E;
    p.x = seq(count, 0.11f, 0.5f);
    p.mem = seq(p.m * E, 0.07f, 1.5f);
    p.weights = calloc(L * H * p.n * p.n, sizeof(float));
    p.cross = calloc(L * H * p.n * p.m, sizeof(float));
    float *want = calloc(count, sizeof(float)), *got = calloc(count, sizeof(float));
    ck_assert(p.weights && p.cross && want && got);

    counter c = {0};
    attn_allocator al = {counting_alloc, counting_free, &c};
    attn_ws *ws = attn_ws_create(&al);
    ck_assert_ptr_nonnull(ws);
    ck_assert_int_eq(alloc_run(ws, &p, want), ATTN_OK);
    const size_t total = c.n_calls;
    /* The workspace and its child may each merge their blocks once, then nothing. */
    ck_assert_int_eq(alloc_run(ws, &p, got), ATTN_OK);
    ck_assert_uint_le(c.n_calls, total + 2);
    const size_t settled = c.n_calls;
    for (int again = 0; again < 3; again++) {
        ck_assert_int_eq(alloc_run(ws, &p, got), ATTN_OK);
        ck_assert_uint_eq(c.n_calls, settled);
        ck_assert_mem_eq(want, got, count * sizeof(float));
    }
    attn_ws_trim(ws, 0);
    ck_assert_uint_eq(attn_ws_reserved(ws), 0);
    attn_ws_free(ws);
    ck_assert_uint_eq(c.n_ok, c.n_free);
    printf("decoder stack: a first call makes %zu allocations (workspace included)\n", total);
    ck_assert_uint_ge(total, 3);

    for (size_t fail = 1; fail <= total; fail++) {
        counter f = {.fail_at = fail};
        attn_allocator fal = {counting_alloc, counting_free, &f};
        attn_ws *fws = attn_ws_create(&fal);
        if (!fws) {
            ck_assert_uint_eq(fail, 1);
            continue;
        }
        ck_assert_msg(alloc_run(fws, &p, got) == ATTN_ERR_NOMEM,
                      "failing allocation %zu of %zu did not give ATTN_ERR_NOMEM", fail, total);
        f.fail_at = 0;
        memset(got, 0, count * sizeof(float));
        ck_assert_int_eq(alloc_run(fws, &p, got), ATTN_OK);
        ck_assert_msg(memcmp(want, got, count * sizeof(float)) == 0,
                      "result after recovering from failure %zu differs", fail);
        attn_ws_free(fws);
        ck_assert_msg(f.n_ok == f.n_free, "failure %zu: %zu allocations, %zu frees", fail, f.n_ok,
                      f.n_free);
    }
    free(want);
    free(got);
    free(p.x);
    free(p.mem);
    free(p.weights);
    free(p.cross);
    attn_free_buffer(p.store);
}
END_TEST

START_TEST(feed_forward_tanh_gelu_matches_the_formula)
{
    /* E = F = 1, identity linears: y = gelu_tanh(x) */
    const float one = 1, zero = 0;
    attn_tf_affine l1 = {.weight = &one, .bias = &zero}, l2 = {.weight = &one, .bias = &zero};
    attn_ws *ws = attn_ws_create(NULL);
    const float xs[5] = {-3, -0.5f, 0, 0.7f, 2.5f};
    for (int i = 0; i < 5; i++) {
        float y;
        ck_assert_int_eq(attn_ffn_forward(ws, ATTN_ACTIVATION_GELU_TANH, 1, 1, 1, &xs[i], &l1, &l2,
                                          &y),
                         ATTN_OK);
        const double x = xs[i];
        const double want = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        ck_assert_msg(fabs(y - want) < 1e-6, "gelu_tanh(%g) = %g, expected %g", x, (double)y, want);
    }
    attn_activation a;
    ck_assert_int_eq(attn_activation_parse("gelu_tanh", &a), ATTN_OK);
    ck_assert_int_eq(a, ATTN_ACTIVATION_GELU_TANH);
    ck_assert_str_eq(attn_activation_name(ATTN_ACTIVATION_GELU_TANH), "gelu_tanh");
    attn_ws_free(ws);
}
END_TEST

START_TEST(hidden_states_and_qkv_are_each_layers_own)
{
    enum { N = 5, E = 8, L = 3 };
    attn_tf_config c = small_config(L, true, ATTN_ACTIVATION_GELU_TANH);
    attn_tf_weights w;
    void *store = NULL;
    ck_assert_int_eq(attn_tf_init_seeded(&c, false, true, true, 11, &w, &store), ATTN_OK);
    float *x = seq(N * E, 0.37f, 0.1f);
    float out[N * E], hs[(L + 1) * N * E], q[L * N * E], k[L * N * E], v[L * N * E];
    attn_tf_outputs o = {.output = out, .hidden_states = hs, .q = q, .k = k, .v = v};
    attn_ws *ws = attn_ws_create(NULL);
    ck_assert_int_eq(attn_tf_encoder_forward(ws, &c, &w, N, x, &o, NULL), ATTN_OK);
    ck_assert_msg(memcmp(hs, x, sizeof(float) * N * E) == 0, "hidden_states[0] is the input");
    /* the stack cut after layer l gives hidden_states[l + 1] (no final norm) */
    for (size_t l = 0; l < L; l++) {
        attn_tf_config cl = c;
        cl.num_layers = l + 1;
        attn_tf_weights wl = {.layers = w.layers};
        float ol[N * E];
        attn_tf_outputs oo = {.output = ol};
        ck_assert_int_eq(attn_tf_encoder_forward(ws, &cl, &wl, N, x, &oo, NULL), ATTN_OK);
        for (size_t i = 0; i < N * E; i++)
            ck_assert_msg(fabsf(hs[(l + 1) * N * E + i] - ol[i]) < 1e-5f, "layer %zu [%zu]", l, i);
    }
    /* layer 0's queries: norm1(x) Wq^T + bq (norm_first); norm1 is 1 / 0 when seeded */
    float h[N * E];
    ck_assert_int_eq(attn_layer_norm(N, E, c.layer_norm_eps, x, NULL, NULL, h), ATTN_OK);
    const attn_tf_attention *a = &w.layers[0].self_attn;
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < E; j++) {
            double sq = a->in_proj_bias[j], sk = a->in_proj_bias[E + j];
            double sv = a->in_proj_bias[2 * E + j];
            for (size_t t = 0; t < E; t++) {
                sq += (double)h[i * E + t] * a->in_proj_weight[j * E + t];
                sk += (double)h[i * E + t] * a->in_proj_weight[(E + j) * E + t];
                sv += (double)h[i * E + t] * a->in_proj_weight[(2 * E + j) * E + t];
            }
            ck_assert(fabs(q[i * E + j] - sq) < 1e-5);
            ck_assert(fabs(k[i * E + j] - sk) < 1e-5);
            ck_assert(fabs(v[i * E + j] - sv) < 1e-5);
        }
    attn_ws_free(ws);
    attn_free_buffer(store);
    free(x);
}
END_TEST

static Suite *transformer_suite(int n_cases)
{
    Suite *s = suite_create("engine_transformer");
    TCase *tg = tcase_create("golden");
    tcase_add_loop_test(tg, golden_case_matches_torch_output_and_per_head_weights, 0, n_cases);
    suite_add_tcase(s, tg);
    TCase *tb = tcase_create("blocks");
    tcase_add_test(tb, layer_norm_hand_case_with_affine_and_in_place);
    tcase_add_test(tb, feed_forward_relu_and_exact_gelu_match_hand_values);
    tcase_add_test(tb, seeded_init_is_deterministic_and_follows_torch_distributions);
    tcase_add_test(tb, masks_behave_as_removing_the_keys);
    tcase_add_test(tb, feed_forward_tanh_gelu_matches_the_formula);
    tcase_add_test(tb, hidden_states_and_qkv_are_each_layers_own);
    suite_add_tcase(s, tb);
    TCase *ta = tcase_create("arguments");
    tcase_add_loop_test(ta, decoder_bad_argument_returns_documented_error_and_writes_nothing, 0,
                        N_BAD);
    tcase_add_test(ta, decoder_each_failed_allocation_returns_nomem_then_recovers_no_leak);
    suite_add_tcase(s, ta);
    return s;
}

int main(void)
{
    g_root = load_json(ATTN_TEST_DATA "/layer_cases.json");
    if (!g_root) {
        fprintf(stderr, "cannot read %s\n", ATTN_TEST_DATA "/layer_cases.json");
        return EXIT_FAILURE;
    }
    const int n_cases = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(g_root, "cases"));
    if (n_cases < 9) {
        fprintf(stderr, "golden file has fewer cases than expected\n");
        cJSON_Delete(g_root);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(transformer_suite(n_cases));
    srunner_run_all(sr, CK_NORMAL);
    const int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    cJSON_Delete(g_root);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
