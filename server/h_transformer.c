/* h_transformer.c - POST /v1/transformer/encoder and /decoder: parse, validate, compute, render. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h_common.h"
#include "positional.h"

/* Defaults of torch.nn.TransformerEncoderLayer / TransformerDecoderLayer. */
#define TF_DEFAULT_FF 2048
#define TF_DEFAULT_EPS 1e-5
#define TF_MAX_LAYERS 256
#define TF_MAX_HEADS 4096
#define TF_MAX_FF ((long long)1 << 24)

/* ------------------------------------------------------------ state_dict */

/* One layer's state_dict keys (after "layers.{i}." in a stack), in attn_tf_layer order. */
enum {
    K_SA_IN_W,
    K_SA_IN_B,
    K_SA_OUT_W,
    K_SA_OUT_B,
    K_CA_IN_W,
    K_CA_IN_B,
    K_CA_OUT_W,
    K_CA_OUT_B,
    K_L1_W,
    K_L1_B,
    K_L2_W,
    K_L2_B,
    K_N1_W,
    K_N1_B,
    K_N2_W,
    K_N2_B,
    K_N3_W,
    K_N3_B,
    N_LAYER_KEYS
};

static const char *const layer_keys[N_LAYER_KEYS] = {"self_attn.in_proj_weight",
                                                     "self_attn.in_proj_bias",
                                                     "self_attn.out_proj.weight",
                                                     "self_attn.out_proj.bias",
                                                     "multihead_attn.in_proj_weight",
                                                     "multihead_attn.in_proj_bias",
                                                     "multihead_attn.out_proj.weight",
                                                     "multihead_attn.out_proj.bias",
                                                     "linear1.weight",
                                                     "linear1.bias",
                                                     "linear2.weight",
                                                     "linear2.bias",
                                                     "norm1.weight",
                                                     "norm1.bias",
                                                     "norm2.weight",
                                                     "norm2.bias",
                                                     "norm3.weight",
                                                     "norm3.bias"};

static bool key_is_bias(int k)
{
    return k % 2 == 1; /* every weight is followed by its bias */
}

static bool key_is_decoder_only(int k)
{
    return (k >= K_CA_IN_W && k <= K_CA_OUT_B) || k == K_N3_W || k == K_N3_B;
}

/* Expected shape of key k: [d0] or [d0][d1]. */
static size_t key_shape(int k, size_t E, size_t F, size_t *d0, size_t *d1)
{
    *d1 = 0;
    switch (k) {
    case K_SA_IN_W:
    case K_CA_IN_W:
        *d0 = 3 * E;
        *d1 = E;
        return 2;
    case K_SA_IN_B:
    case K_CA_IN_B:
        *d0 = 3 * E;
        return 1;
    case K_SA_OUT_W:
    case K_CA_OUT_W:
        *d0 = E;
        *d1 = E;
        return 2;
    case K_L1_W:
        *d0 = F;
        *d1 = E;
        return 2;
    case K_L1_B:
        *d0 = F;
        return 1;
    case K_L2_W:
        *d0 = E;
        *d1 = F;
        return 2;
    default: /* out_proj.bias, linear2.bias, norms */
        *d0 = E;
        return 1;
    }
}

typedef struct tf_weights {
    srv_tensor *t;      /* [L][N_LAYER_KEYS] */
    srv_tensor norm[2]; /* final norm.weight, norm.bias */
    attn_tf_layer *layers;
    void *seed_store;
    size_t L;
} tf_weights;

static void tf_weights_free(tf_weights *w)
{
    if (w->t)
        for (size_t i = 0; i < w->L * N_LAYER_KEYS; i++)
            srv_tensor_free(&w->t[i]);
    free(w->t);
    srv_tensor_free(&w->norm[0]);
    srv_tensor_free(&w->norm[1]);
    free(w->layers);
    attn_free_buffer(w->seed_store);
    memset(w, 0, sizeof *w);
}

/* Index of a layer key name, or -1. */
static int layer_key_index(const char *name)
{
    for (int k = 0; k < N_LAYER_KEYS; k++)
        if (strcmp(name, layer_keys[k]) == 0)
            return k;
    return -1;
}

/* "layers.{i}.{rest}": sets *layer and *rest; false when key is not of that form. */
static bool split_layer_key(const char *key, size_t *layer, const char **rest)
{
    if (strncmp(key, "layers.", 7) != 0)
        return false;
    const char *s = key + 7;
    size_t i = 0, digits = 0;
    while (*s >= '0' && *s <= '9' && digits < 9) {
        i = i * 10 + (size_t)(*s - '0');
        s++;
        digits++;
    }
    if (digits == 0 || *s != '.' || (digits > 1 && key[7] == '0'))
        return false;
    *layer = i;
    *rest = s + 1;
    return true;
}

/* Every key of sd belongs to the module: a clear 400 at the first that does not. */
static bool sd_check_keys(const cJSON *sd, const srv_ptr *sdp, bool stacked, bool decoder, size_t L,
                          srv_err *e)
{
    const char *module = decoder
                             ? (stacked ? "nn.TransformerDecoder" : "nn.TransformerDecoderLayer")
                             : (stacked ? "nn.TransformerEncoder" : "nn.TransformerEncoderLayer");
    for (const cJSON *it = sd->child; it; it = it->next) {
        const char *key = it->string;
        srv_ptr p;
        srv_ptr_key(&p, sdp, key);
        const char *name = key;
        size_t layer = 0;
        if (stacked) {
            if (strcmp(key, "norm.weight") == 0 || strcmp(key, "norm.bias") == 0)
                continue;
            if (!split_layer_key(key, &layer, &name))
                return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                                   "weights: unknown key \"%s\" (an %s state_dict has "
                                   "layers.{i}.* and norm.*)",
                                   key, module);
            if (layer >= L)
                return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                                   "weights: \"%s\" is for layer %zu but num_layers is %zu", key,
                                   layer, L);
        }
        int k = layer_key_index(name);
        if (k < 0 || (!decoder && key_is_decoder_only(k)))
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights: unknown key \"%s\" for an %s%s", key, module,
                               k >= 0 ? " (multihead_attn.* and norm3.* are decoder keys)" : "");
    }
    return true;
}

/*
 * weights: a state_dict. Stacked keys "layers.{i}.*" (+ "norm.*"); for one
 * layer the unprefixed keys of the layer module are accepted too.
 * bias_flag / final_flag: -1 when the request left them out (then the
 * state_dict decides), 0/1 when given.
 */
static bool read_state_dict(const cJSON *sd, bool decoder, size_t L, size_t E, size_t F,
                            int bias_flag, int final_flag, size_t max_el, tf_weights *w,
                            bool *has_bias, bool *final_norm, srv_err *e)
{
    srv_ptr sdp;
    hc_ptr_of(&sdp, "weights");
    if (!cJSON_IsObject(sd))
        return srv_err_set(e, 400, SRV_CODE_INVALID, sdp.s,
                           "weights: expected an %s state_dict object",
                           decoder ? "nn.TransformerDecoder" : "nn.TransformerEncoder");
    bool stacked = true;
    if (L == 1) {
        stacked = false;
        for (const cJSON *it = sd->child; it; it = it->next)
            if (strncmp(it->string, "layers.", 7) == 0 || strncmp(it->string, "norm.", 5) == 0)
                stacked = true;
    }
    if (!sd_check_keys(sd, &sdp, stacked, decoder, L, e))
        return false;

    char key[96];
    const char *prefix0 = stacked ? "layers.0." : "";
    snprintf(key, sizeof key, "%sself_attn.in_proj_bias", prefix0);
    *has_bias = bias_flag >= 0 ? bias_flag == 1 : cJSON_GetObjectItemCaseSensitive(sd, key) != NULL;
    *final_norm = final_flag >= 0 ? final_flag == 1
                                  : cJSON_GetObjectItemCaseSensitive(sd, "norm.weight") != NULL;

    w->L = L;
    w->t = calloc(L * N_LAYER_KEYS, sizeof *w->t);
    w->layers = calloc(L, sizeof *w->layers);
    if (!w->t || !w->layers)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory for this request");
    for (size_t l = 0; l < L; l++) {
        for (int k = 0; k < N_LAYER_KEYS; k++) {
            if (!decoder && key_is_decoder_only(k))
                continue;
            if (stacked)
                snprintf(key, sizeof key, "layers.%zu.%s", l, layer_keys[k]);
            else
                snprintf(key, sizeof key, "%s", layer_keys[k]);
            const bool bias = key_is_bias(k);
            const bool present = cJSON_GetObjectItemCaseSensitive(sd, key) != NULL;
            srv_ptr p;
            srv_ptr_key(&p, &sdp, key);
            if (!present && (!bias || *has_bias))
                return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.%s is required%s", key,
                                   bias ? " (bias is true)" : "");
            if (present && bias && !*has_bias)
                return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                                   "weights.%s is given but bias is false", key);
            size_t d0, d1;
            size_t rank = key_shape(k, E, F, &d0, &d1);
            srv_tensor *t = &w->t[l * N_LAYER_KEYS + (size_t)k];
            if (present && !hc_sd_read(sd, &sdp, key, rank, d0, d1, false, max_el, t, e))
                return false;
        }
        const srv_tensor *t = &w->t[l * N_LAYER_KEYS];
        attn_tf_layer *ly = &w->layers[l];
        ly->self_attn = (attn_tf_attention){t[K_SA_IN_W].data, t[K_SA_IN_B].data,
                                            t[K_SA_OUT_W].data, t[K_SA_OUT_B].data};
        ly->multihead_attn = (attn_tf_attention){t[K_CA_IN_W].data, t[K_CA_IN_B].data,
                                                 t[K_CA_OUT_W].data, t[K_CA_OUT_B].data};
        ly->linear1 = (attn_tf_affine){t[K_L1_W].data, t[K_L1_B].data};
        ly->linear2 = (attn_tf_affine){t[K_L2_W].data, t[K_L2_B].data};
        ly->norm1 = (attn_tf_affine){t[K_N1_W].data, t[K_N1_B].data};
        ly->norm2 = (attn_tf_affine){t[K_N2_W].data, t[K_N2_B].data};
        ly->norm3 = (attn_tf_affine){t[K_N3_W].data, t[K_N3_B].data};
    }
    static const char *const norm_keys[2] = {"norm.weight", "norm.bias"};
    for (int k = 0; k < 2; k++) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, norm_keys[k]);
        const bool present = cJSON_GetObjectItemCaseSensitive(sd, norm_keys[k]) != NULL;
        const bool want = *final_norm && (k == 0 || *has_bias);
        if (!present && want)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.%s is required%s",
                               norm_keys[k],
                               final_flag == 1 ? " (final_norm is true)" : " (bias is true)");
        if (present && !*final_norm)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights.%s is given but final_norm is false", norm_keys[k]);
        if (present && !want)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights.%s is given but bias is false", norm_keys[k]);
        if (present && !hc_sd_read(sd, &sdp, norm_keys[k], 1, E, 0, false, max_el, &w->norm[k], e))
            return false;
    }
    return true;
}

/* dim_feedforward of a state_dict: rows of linear1.weight of the first layer (0 if absent). */
static bool sd_feedforward(const cJSON *sd, size_t L, size_t max_el, size_t *F, srv_err *e)
{
    *F = 0;
    if (!cJSON_IsObject(sd))
        return true;
    const char *keys[2] = {"layers.0.linear1.weight", L == 1 ? "linear1.weight" : NULL};
    for (int i = 0; i < 2; i++) {
        const cJSON *it = keys[i] ? cJSON_GetObjectItemCaseSensitive(sd, keys[i]) : NULL;
        if (!it)
            continue;
        srv_ptr sdp, p;
        hc_ptr_of(&sdp, "weights");
        srv_ptr_key(&p, &sdp, keys[i]);
        srv_tensor t;
        memset(&t, 0, sizeof t);
        if (!srv_json_read_tensor(it, &p, keys[i], 2, 2, false, max_el, &t, e))
            return false;
        *F = t.shape[0];
        srv_tensor_free(&t);
        return true;
    }
    return true;
}

/* ------------------------------------------------------------ request */

typedef struct tf_req {
    bool decoder;
    hc_req c; /* input/target in c.query, memory in c.key; c.m = n for the self masks */
    srv_btensor mem_mask, mem_kpm;
    size_t m; /* memory rows */
    size_t E, H, F, L;
    attn_activation act;
    bool norm_first, final_norm, has_bias, seeded;
    double eps;
    long long seed;
    srv_pos pos;
    tf_weights w;
} tf_req;

static void tf_req_free(tf_req *t)
{
    hc_req_free(&t->c);
    srv_btensor_free(&t->mem_mask);
    srv_btensor_free(&t->mem_kpm);
    srv_pos_free(&t->pos);
    tf_weights_free(&t->w);
}

static const char *const encoder_keys[] = {"input",
                                           "nhead",
                                           "num_layers",
                                           "dim_feedforward",
                                           "activation",
                                           "norm_first",
                                           "layer_norm_eps",
                                           "final_norm",
                                           "bias",
                                           "weights",
                                           "seed",
                                           "causal",
                                           "mask",
                                           "key_padding_mask",
                                           "attn_bias",
                                           "scale",
                                           "softcap",
                                           "pattern",
                                           "positional",
                                           "return",
                                           "tokens",
                                           "encoding",
                                           "precision",
                                           "attn_mask",
                                           NULL};

static const char *const decoder_keys[] = {"target",
                                           "memory",
                                           "nhead",
                                           "num_layers",
                                           "dim_feedforward",
                                           "activation",
                                           "norm_first",
                                           "layer_norm_eps",
                                           "final_norm",
                                           "bias",
                                           "weights",
                                           "seed",
                                           "causal",
                                           "mask",
                                           "key_padding_mask",
                                           "attn_bias",
                                           "memory_mask",
                                           "memory_key_padding_mask",
                                           "scale",
                                           "softcap",
                                           "pattern",
                                           "positional",
                                           "return",
                                           "tokens",
                                           "encoding",
                                           "precision",
                                           "attn_mask",
                                           NULL};

/* input [n][E] | [B][n][E] (encoder); target and memory, both batched or neither (decoder). */
static bool read_inputs(const cJSON *root, tf_req *t, size_t max_el, srv_err *e)
{
    hc_req *c = &t->c;
    const char *in = t->decoder ? "target" : "input";
    if (!hc_read_tensor(root, in, 2, 3, true, max_el, &c->query, e))
        return false;
    c->batched = c->query.rank == 3;
    c->batch = c->batched ? c->query.shape[0] : 1;
    const size_t o = c->batched ? 1 : 0;
    c->n = c->query.shape[o];
    c->m = c->n;
    t->E = c->query.shape[o + 1];
    if (!t->decoder)
        return true;
    if (!hc_read_tensor(root, "memory", 2, 3, true, max_el, &c->key, e))
        return false;
    srv_ptr p;
    hc_ptr_of(&p, "memory");
    if (c->key.rank != c->query.rank)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "memory: %zu-D but target is %zu-D (a batch dimension must be on both)",
                           c->key.rank, c->query.rank);
    if (c->batched && c->key.shape[0] != c->batch)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "memory: batch of %zu, target has a batch of %zu", c->key.shape[0],
                           c->batch);
    if (c->key.shape[o + 1] != t->E)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "memory: width %zu, expected d_model = %zu (the target's width)",
                           c->key.shape[o + 1], t->E);
    t->m = c->key.shape[o];
    return true;
}

/* memory_mask [n][m] | [B][n][m] (true = may attend), memory_key_padding_mask [m] | [B][m]. */
static bool read_memory_masks(const cJSON *root, tf_req *t, size_t max_el, srv_err *e)
{
    const hc_req *c = &t->c;
    const cJSON *it;
    srv_ptr p;
    char got[96];
    const size_t B = c->batch, n = c->n, m = t->m;
    if (hc_member(root, "memory_mask", &it)) {
        hc_ptr_of(&p, "memory_mask");
        srv_btensor *mm = &t->mem_mask;
        if (!srv_json_read_btensor(it, &p, "memory_mask", 2, 3, max_el, mm, e))
            return false;
        bool ok = (mm->rank == 2 && mm->shape[0] == n && mm->shape[1] == m) ||
                  (mm->rank == 3 && c->batched && mm->shape[0] == B && mm->shape[1] == n &&
                   mm->shape[2] == m);
        if (!ok)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "memory_mask: shape %s, expected [%zu][%zu] (target rows x "
                               "memory rows)%s",
                               hc_dims_str(mm->shape, mm->rank, got, sizeof got), n, m,
                               c->batched ? " or [batch][n][m]" : "");
    }
    if (hc_member(root, "memory_key_padding_mask", &it)) {
        hc_ptr_of(&p, "memory_key_padding_mask");
        srv_btensor *kp = &t->mem_kpm;
        if (!srv_json_read_btensor(it, &p, "memory_key_padding_mask", 1, 2, max_el, kp, e))
            return false;
        bool ok = (kp->rank == 1 && kp->shape[0] == m) ||
                  (kp->rank == 2 && c->batched && kp->shape[0] == B && kp->shape[1] == m);
        if (!ok)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "memory_key_padding_mask: shape %s, expected [%zu] (one per "
                               "memory row)%s",
                               hc_dims_str(kp->shape, kp->rank, got, sizeof got), m,
                               c->batched ? " or [batch][m]" : "");
    }
    return true;
}

/* nhead, num_layers, dim_feedforward, activation, norm_first, layer_norm_eps, bias, final_norm,
 * then the weights (state_dict or seed). */
static bool read_module(const cJSON *root, tf_req *t, size_t max_el, srv_err *e)
{
    srv_ptr rp, p;
    srv_ptr_root(&rp);
    long long H = 0, L = 1, F = 0;
    hc_ptr_of(&p, "nhead");
    if (!cJSON_GetObjectItemCaseSensitive(root, "nhead"))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "nhead is required");
    if (!srv_json_opt_int(root, &rp, "nhead", 1, TF_MAX_HEADS, &H, e))
        return false;
    if (t->E % (size_t)H != 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "nhead: %lld does not divide d_model = %zu (the %s width)", H, t->E,
                           t->decoder ? "target's" : "input's");
    if (!srv_json_opt_int(root, &rp, "num_layers", 1, TF_MAX_LAYERS, &L, e) ||
        !srv_json_opt_int(root, &rp, "dim_feedforward", 1, TF_MAX_FF, &F, e))
        return false;
    t->H = (size_t)H;
    t->L = (size_t)L;

    char act[16] = "relu";
    if (!srv_json_opt_string(root, &rp, "activation", act, sizeof act, e))
        return false;
    if (attn_activation_parse(act, &t->act) != ATTN_OK) {
        hc_ptr_of(&p, "activation");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "activation: expected \"relu\", \"gelu\" (exact, erf) or \"gelu_tanh\"");
    }
    t->eps = TF_DEFAULT_EPS;
    if (!srv_json_opt_bool(root, &rp, "norm_first", &t->norm_first, e) ||
        !srv_json_opt_float(root, &rp, "layer_norm_eps", 0, 1, &t->eps, e))
        return false;
    if (!(t->eps > 0) || !((float)t->eps > 0.0f)) {
        hc_ptr_of(&p, "layer_norm_eps");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "layer_norm_eps: must be > 0 (torch's default is 1e-5)");
    }
    int bias_flag = -1, final_flag = -1;
    bool flag;
    if (cJSON_GetObjectItemCaseSensitive(root, "bias")) {
        if (!srv_json_opt_bool(root, &rp, "bias", &flag, e))
            return false;
        bias_flag = flag;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "final_norm")) {
        if (!srv_json_opt_bool(root, &rp, "final_norm", &flag, e))
            return false;
        final_flag = flag;
    }

    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "weights");
    t->seeded = sd == NULL;
    if (sd) {
        if (cJSON_GetObjectItemCaseSensitive(root, "seed")) {
            hc_ptr_of(&p, "seed");
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "seed: send either weights or seed, not both");
        }
        size_t sd_F = 0;
        if (!sd_feedforward(sd, t->L, max_el, &sd_F, e))
            return false;
        t->F = F ? (size_t)F : sd_F ? sd_F : TF_DEFAULT_FF;
        return read_state_dict(sd, t->decoder, t->L, t->E, t->F, bias_flag, final_flag, max_el,
                               &t->w, &t->has_bias, &t->final_norm, e);
    }
    t->F = F ? (size_t)F : TF_DEFAULT_FF;
    t->has_bias = bias_flag != 0;
    t->final_norm = final_flag == 1;
    if (!srv_json_opt_int(root, &rp, "seed", 0, (long long)9007199254740991LL, &t->seed, e))
        return false;
    /* The seeded weights are generated data, held to the element limit like outputs:
     * per layer (1 or 2) x 4 E^2 attention + 2 E F feed-forward. */
    const size_t E = t->E;
    size_t per = hc_add_sat(hc_mul3(t->decoder ? 8 : 4, E, E), hc_mul3(2, E, t->F));
    size_t total = hc_mul3(per, t->L, 1);
    if (total > max_el)
        return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, "",
                           "seeded weights would hold %zu numbers, over the limit of %zu "
                           "(--max-elements); use fewer layers, a smaller dim_feedforward or "
                           "d_model",
                           total, max_el);
    return true;
}

/* ------------------------------------------------------------ handler */

/* [B]? [L][H][n][k] */
static hc_shape attn_shape(const tf_req *t, size_t k)
{
    hc_shape s;
    memset(&s, 0, sizeof s);
    if (t->c.batched)
        s.d[s.rank++] = t->c.batch;
    s.d[s.rank++] = t->L;
    s.d[s.rank++] = t->H;
    s.d[s.rank++] = t->c.n;
    s.d[s.rank++] = k;
    return s;
}

static void write_meta(srv_jw *jw, const tf_req *t, float scale_used, const hc_shape *shapes)
{
    const hc_req *c = &t->c;
    srv_jw_key(jw, "meta");
    srv_jw_obj_begin(jw);
    srv_jw_key(jw, "d_model");
    srv_jw_uint(jw, t->E);
    srv_jw_key(jw, "nhead");
    srv_jw_uint(jw, t->H);
    srv_jw_key(jw, "head_dim");
    srv_jw_uint(jw, t->E / t->H);
    srv_jw_key(jw, "num_layers");
    srv_jw_uint(jw, t->L);
    srv_jw_key(jw, "dim_feedforward");
    srv_jw_uint(jw, t->F);
    srv_jw_key(jw, "activation");
    srv_jw_str(jw, attn_activation_name(t->act));
    srv_jw_key(jw, "norm_first");
    srv_jw_bool(jw, t->norm_first);
    srv_jw_key(jw, "layer_norm_eps");
    hc_meta_float(jw, (float)t->eps);
    srv_jw_key(jw, "final_norm");
    srv_jw_bool(jw, t->final_norm);
    srv_jw_key(jw, "bias");
    srv_jw_bool(jw, t->has_bias);
    srv_jw_key(jw, "scale");
    hc_meta_float(jw, scale_used);
    srv_jw_key(jw, "weights_source");
    srv_jw_str(jw, t->seeded ? "seed" : "state_dict");
    srv_jw_key(jw, "seed");
    if (t->seeded)
        srv_jw_int(jw, t->seed);
    else
        srv_jw_null(jw);
    if (t->decoder) {
        srv_jw_key(jw, "memory_length");
        srv_jw_uint(jw, t->m);
        srv_jw_key(jw, "memory_masks");
        srv_jw_arr_begin(jw);
        if (t->mem_mask.data)
            srv_jw_str(jw, "memory_mask");
        if (t->mem_kpm.data)
            srv_jw_str(jw, "memory_key_padding_mask");
        srv_jw_arr_end(jw);
    }
    srv_pos_meta(jw, &t->pos);
    hc_write_common_meta(jw, c);
    srv_jw_key(jw, "shapes");
    srv_jw_obj_begin(jw);
    hc_shape_json(jw, t->decoder ? "target" : "input", c->query.shape, c->query.rank);
    if (t->decoder)
        hc_shape_json(jw, "memory", c->key.shape, c->key.rank);
    hc_shape_json(jw, "output", shapes[0].d, shapes[0].rank);
    hc_shape_json(jw, t->decoder ? "self_attentions" : "attentions", shapes[1].d, shapes[1].rank);
    if (t->decoder)
        hc_shape_json(jw, "cross_attentions", shapes[2].d, shapes[2].rank);
    srv_jw_obj_end(jw);
}

static void transformer(srv_app *app, const srv_request *req, srv_response *res, bool decoder)
{
    srv_err e;
    tf_req t;
    memset(&t, 0, sizeof t);
    t.decoder = decoder;
    hc_req *c = &t.c;
    const size_t max_el = app->config.max_elements;
    float *bufs[3] = {NULL, NULL, NULL};
    srv_ptr rp;
    srv_ptr_root(&rp);

    cJSON *root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root)
        goto fail;
    if (!srv_json_check_keys(root, &rp, decoder ? decoder_keys : encoder_keys, &e) ||
        !hc_reject_attn_mask(root, &e))
        goto fail;
    const unsigned allowed = decoder
                                 ? HC_RET_OUTPUT | HC_RET_SELF_ATTENTIONS | HC_RET_CROSS_ATTENTIONS
                                 : HC_RET_OUTPUT | HC_RET_ATTENTIONS;
    if (!hc_read_output_options(root, c, &e) || !hc_read_causal(root, c, &e) ||
        !hc_read_scale_softcap(root, c, &e) || !hc_read_return(root, allowed, allowed, c, &e) ||
        !read_inputs(root, &t, max_el, &e) || !read_module(root, &t, max_el, &e) ||
        !hc_check_limits(app, c->n, decoder ? "target" : "input", decoder ? t.m : c->n,
                         decoder ? "memory" : "input", t.H, "nhead", t.L, "num_layers", &e) ||
        !hc_read_masks(root, c, t.H, max_el, &e) || !hc_read_pattern(root, c, &e) ||
        !hc_read_tokens(root, "tokens", c->n, &c->tokens, &e) ||
        (decoder && !read_memory_masks(root, &t, max_el, &e)))
        goto fail;

    /* positional: additive tables go into the input (target); the others into every
     * layer's self-attention. */
    const char *const in_names[] = {decoder ? "target" : "input", NULL};
    const size_t in_widths[] = {t.E};
    const srv_pos_dims pd = {.heads = t.H,
                             .head_dim = t.E / t.H,
                             .head_dim_v = t.E / t.H,
                             .input_names = in_names,
                             .input_widths = in_widths,
                             .softmax = true};
    if (!srv_pos_read(root, &pd, max_el, &t.pos, &e))
        goto fail;

    const size_t B = c->batch, n = c->n, m = t.m, E = t.E, H = t.H, L = t.L;
    const size_t per[3] = {hc_mul3(n, E, 1), hc_mul3(L, H, hc_mul3(n, n, 1)),
                           hc_mul3(L, H, hc_mul3(n, m, 1))};
    const unsigned bits[3] = {HC_RET_OUTPUT, decoder ? HC_RET_SELF_ATTENTIONS : HC_RET_ATTENTIONS,
                              HC_RET_CROSS_ATTENTIONS};
    size_t total = 0;
    for (int i = 0; i < 3; i++)
        if (c->ret & bits[i])
            total = hc_add_sat(total, hc_mul3(B, per[i], 1));
    if (!hc_check_elements(total, max_el,
                           "drop the attentions from return, use fewer layers or heads, or send "
                           "fewer tokens",
                           &e))
        goto fail;

    attn_tf_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.d_model = E;
    cfg.nhead = H;
    cfg.dim_feedforward = t.F;
    cfg.num_layers = L;
    cfg.activation = t.act;
    cfg.norm_first = t.norm_first;
    cfg.layer_norm_eps = (float)t.eps;
    cfg.self_attn.score = ATTN_SCORE_SCALED_DOT;
    cfg.self_attn.scale = (float)c->scale;
    cfg.self_attn.softcap = (float)c->softcap;

    attn_tf_weights w;
    memset(&w, 0, sizeof w);
    if (t.seeded) {
        attn_status st = attn_tf_init_seeded(&cfg, decoder, t.has_bias, t.final_norm,
                                             (uint64_t)t.seed, &w, &t.w.seed_store);
        if (st != ATTN_OK) {
            hc_engine_error(st, &e);
            goto fail;
        }
    } else {
        w.layers = t.w.layers;
        w.norm = (attn_tf_affine){t.w.norm[0].data, t.w.norm[1].data};
    }

    bool oom = false;
    for (int i = 0; i < 3; i++)
        bufs[i] = hc_alloc_floats(B * per[i], (c->ret & bits[i]) && (i < 2 || decoder), &oom);
    attn_ws *ws = srv_thread_ws();
    if (oom || !ws) {
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "",
                    "out of memory for this request; try a smaller one");
        goto fail;
    }
    if (srv_pos_adds_to(&t.pos, 0) && !srv_pos_add(&t.pos, c->query.data, B, n, E, in_names[0], &e))
        goto fail;
    /* rope / Shaw tables and the ALiBi / T5 bias vector, shared by every batch element. */
    attn_params pos_params = cfg.self_attn;
    pos_params.masks = hc_masks_for(c, 0, H);
    if (!srv_pos_apply(&t.pos, n, n, &pos_params, &e))
        goto fail;
    cfg.self_attn.pos = pos_params.pos;

    size_t empty_rows = 0;
    float scale_used = 0;
    double te = srv_now_ms();
    for (size_t b = 0; b < B; b++) {
        cfg.self_attn.masks = hc_masks_for(c, b, H);
        cfg.self_attn.masks.rel_bias = pos_params.masks.rel_bias;
        cfg.self_attn.masks.rel_bias_head_stride = pos_params.masks.rel_bias_head_stride;
        attn_tf_outputs o = {
            .output = bufs[0] ? bufs[0] + b * per[0] : NULL,
            .self_weights = bufs[1] ? bufs[1] + b * per[1] : NULL,
            .cross_weights = bufs[2] ? bufs[2] + b * per[2] : NULL,
        };
        attn_result r;
        attn_status st;
        const float *x = c->query.data + b * n * E;
        if (decoder) {
            memset(&cfg.cross_masks, 0, sizeof cfg.cross_masks);
            cfg.cross_masks.m_masked = m;
            if (t.mem_mask.data)
                cfg.cross_masks.mask = t.mem_mask.data + (t.mem_mask.rank == 3 ? b * n * m : 0);
            if (t.mem_kpm.data)
                cfg.cross_masks.key_padding = t.mem_kpm.data + (t.mem_kpm.rank == 2 ? b * m : 0);
            st = attn_tf_decoder_forward(ws, &cfg, &w, n, m, x, c->key.data + b * m * E, &o, &r);
        } else {
            st = attn_tf_encoder_forward(ws, &cfg, &w, n, x, &o, &r);
        }
        if (st != ATTN_OK) {
            hc_engine_error(st, &e);
            goto fail;
        }
        empty_rows += r.n_empty_rows;
        scale_used = r.scale;
    }
    double engine_ms = srv_now_ms() - te;

    srv_buf bb;
    srv_jw jw;
    srv_buf_init(&bb);
    srv_buf_reserve(&bb, 1024 + total * 12);
    srv_jw_init(&jw, &bb, c->precision, c->base64);
    srv_jw_obj_begin(&jw);
    const hc_shape shapes[3] = {hc_oshape(c, 0, n, E), attn_shape(&t, n), attn_shape(&t, m)};
    const char *names[3] = {"output", decoder ? "self_attentions" : "attentions",
                            "cross_attentions"};
    for (int i = 0; i < 3; i++)
        if (bufs[i])
            hc_write_tensor(&jw, names[i], bufs[i], shapes[i]);
    hc_write_tokens(&jw, c);
    write_meta(&jw, &t, scale_used, shapes);
    hc_finish_json(res, &jw, empty_rows, engine_ms);
    goto done;

fail:
    srv_respond_error(res, &e);
done:
    for (int i = 0; i < 3; i++)
        free(bufs[i]);
    tf_req_free(&t);
    srv_json_delete(root);
}

void srv_h_transformer_encoder(srv_app *app, const srv_request *req, srv_response *res)
{
    transformer(app, req, res, false);
}

void srv_h_transformer_decoder(srv_app *app, const srv_request *req, srv_response *res)
{
    transformer(app, req, res, true);
}
