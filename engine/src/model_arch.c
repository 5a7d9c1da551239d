/* model_arch.c - pretrained models: config.json, weights to float32 in attn_tf layout, tokenizers.
 */
#include "model_arch.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define ARCH_MAX_DIM ((size_t)1 << 24) /* largest width, vocabulary or position count */
#define ARCH_MAX_LAYERS ((size_t)4096)
#define ARCH_MAX_JSON_BYTES ((size_t)64 << 20) /* config and tokenizer JSON files */
#define ARCH_PATH_MAX 4096
#define ARCH_NAME_MAX 256

const char *attn_arch_name(attn_arch arch)
{
    switch (arch) {
    case ATTN_ARCH_BERT:
        return "bert";
    case ATTN_ARCH_GPT2:
        return "gpt2";
    case ATTN_ARCH_VIT:
        return "vit";
    case ATTN_ARCH_BART:
        return "bart";
    }
    return NULL;
}

/* dir + "/" + file into out [ARCH_PATH_MAX]; false when it does not fit. */
static bool path_join(char *out, const char *dir, const char *file)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    int w = snprintf(out, ARCH_PATH_MAX, "%.*s/%s", (int)len, dir, file);
    return w > 0 && (size_t)w < ARCH_PATH_MAX;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Reads and parses a JSON file. */
static attn_status json_file(const attn_allocator *al, const char *path, cJSON **out, char *err,
                             size_t err_size)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    attn_status rc = attn__file_read(al, path, ARCH_MAX_JSON_BYTES, &text, &len, err, err_size);
    if (rc != ATTN_OK)
        return rc;
    rc = attn__json_parse(text, len, out);
    attn__mem_free(al, text);
    if (rc == ATTN_ERR_NOMEM)
        attn__err(err, err_size, "%s: out of memory while parsing", path);
    else if (rc != ATTN_OK)
        attn__err(err, err_size, "%s: not valid JSON", path);
    else if (!cJSON_IsObject(*out)) {
        attn__err(err, err_size, "%s: expected a JSON object", path);
        cJSON_Delete(*out);
        *out = NULL;
        rc = ATTN_ERR_FORMAT;
    }
    return rc;
}

/* ------------------------------------------------------------ config.json */

/* Reading config values with a sticky error: after the first failure every
 * reader returns its default and the first message stays. */
typedef struct cfg {
    const cJSON *root;
    const char *path;
    char *err;
    size_t err_size;
    attn_status rc;
} cfg;

static void cfg_fail(cfg *c, attn_status rc, const char *fmt, ...) ATTN__PRINTF(3, 4);

static void cfg_fail(cfg *c, attn_status rc, const char *fmt, ...)
{
    if (c->rc != ATTN_OK)
        return;
    char msg[ATTN_MODEL_ERR_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    attn__err(c->err, c->err_size, "%s: %s", c->path, msg);
    c->rc = rc;
}

/* The member, NULL when absent or null (HuggingFace writes null for "default"). */
static const cJSON *cfg_item(const cfg *c, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c->root, key);
    return cJSON_IsNull(it) ? NULL : it;
}

static size_t cfg_size_of(cfg *c, const char *key, const cJSON *it, size_t hi)
{
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 1 ||
        it->valuedouble > (double)hi) {
        cfg_fail(c, ATTN_ERR_FORMAT, "'%s' must be an integer from 1 to %zu", key, hi);
        return 0;
    }
    return (size_t)it->valuedouble;
}

/* A required size in [1, hi]. */
static size_t cfg_size(cfg *c, const char *key, size_t hi)
{
    if (c->rc != ATTN_OK)
        return 0;
    const cJSON *it = cfg_item(c, key);
    if (!it) {
        cfg_fail(c, ATTN_ERR_FORMAT, "key '%s' is missing", key);
        return 0;
    }
    return cfg_size_of(c, key, it, hi);
}

/* An optional size (absent or null: def). */
static size_t cfg_size_opt(cfg *c, const char *key, size_t hi, size_t def)
{
    const cJSON *it = cfg_item(c, key);
    if (c->rc != ATTN_OK || !it)
        return def;
    return cfg_size_of(c, key, it, hi);
}

static double cfg_num_opt(cfg *c, const char *key, double lo, double hi, double def)
{
    const cJSON *it = cfg_item(c, key);
    if (c->rc != ATTN_OK || !it)
        return def;
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi)) {
        cfg_fail(c, ATTN_ERR_FORMAT, "'%s' must be a number from %g to %g", key, lo, hi);
        return def;
    }
    return it->valuedouble;
}

static bool cfg_bool_opt(cfg *c, const char *key, bool def)
{
    const cJSON *it = cfg_item(c, key);
    if (c->rc != ATTN_OK || !it)
        return def;
    if (!cJSON_IsBool(it)) {
        cfg_fail(c, ATTN_ERR_FORMAT, "'%s' must be true or false", key);
        return def;
    }
    return cJSON_IsTrue(it);
}

/* A token id: absent or null gives def (-1 = none). */
static int32_t cfg_id_opt(cfg *c, const char *key, int32_t def)
{
    const cJSON *it = cfg_item(c, key);
    if (c->rc != ATTN_OK || !it)
        return def;
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
        it->valuedouble > (double)INT32_MAX) {
        cfg_fail(c, ATTN_ERR_FORMAT, "'%s' must be a token id (an integer >= 0) or null", key);
        return def;
    }
    return (int32_t)it->valuedouble;
}

static const char *cfg_str_opt(cfg *c, const char *key, const char *def)
{
    const cJSON *it = cfg_item(c, key);
    if (c->rc != ATTN_OK || !it)
        return def;
    if (!cJSON_IsString(it)) {
        cfg_fail(c, ATTN_ERR_FORMAT, "'%s' must be a string", key);
        return def;
    }
    return it->valuestring;
}

/* HuggingFace's ACT2FN names this library computes. */
static attn_activation cfg_activation(cfg *c, const char *key, const char *def)
{
    const char *name = cfg_str_opt(c, key, def);
    if (strcmp(name, "gelu") == 0)
        return ATTN_ACTIVATION_GELU;
    /* gelu_fast is the same tanh approximation written differently */
    if (strcmp(name, "gelu_new") == 0 || strcmp(name, "gelu_pytorch_tanh") == 0 ||
        strcmp(name, "gelu_fast") == 0)
        return ATTN_ACTIVATION_GELU_TANH;
    if (strcmp(name, "relu") == 0)
        return ATTN_ACTIVATION_RELU;
    cfg_fail(c, ATTN_ERR_UNSUPPORTED,
             "%s '%s' is not supported (gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu)", key,
             name);
    return ATTN_ACTIVATION_GELU;
}

/* Options HuggingFace has that this library does not compute: refused, not ignored. */
static void cfg_refuse_true(cfg *c, const char *key)
{
    if (cfg_bool_opt(c, key, false))
        cfg_fail(c, ATTN_ERR_UNSUPPORTED, "'%s': true is not supported", key);
}

static void cfg_heads_divide(cfg *c, size_t E, const char *e_key, size_t H, const char *h_key)
{
    if (c->rc == ATTN_OK && E % H != 0)
        cfg_fail(c, ATTN_ERR_INVALID, "'%s' = %zu does not divide '%s' = %zu", h_key, H, e_key, E);
}

static void stack_config(attn__arch_stack *s, size_t E, size_t H, size_t F, size_t L,
                         attn_activation act, bool norm_first, float eps)
{
    memset(&s->cfg, 0, sizeof s->cfg);
    s->n_layers = L;
    s->cfg.d_model = E;
    s->cfg.nhead = H;
    s->cfg.dim_feedforward = F;
    s->cfg.num_layers = 1;
    s->cfg.activation = act;
    s->cfg.norm_first = norm_first;
    s->cfg.layer_norm_eps = eps;
    s->cfg.self_attn.score = ATTN_SCORE_SCALED_DOT;
}

static void config_bert(cfg *c, attn_pretrained *m)
{
    attn_pretrained_info *in = &m->info;
    in->hidden_size = cfg_size(c, "hidden_size", ARCH_MAX_DIM);
    in->num_layers = cfg_size(c, "num_hidden_layers", ARCH_MAX_LAYERS);
    in->num_heads = cfg_size(c, "num_attention_heads", ARCH_MAX_DIM);
    in->intermediate_size = cfg_size(c, "intermediate_size", ARCH_MAX_DIM);
    in->max_positions = cfg_size(c, "max_position_embeddings", ARCH_MAX_DIM);
    in->vocab_size = cfg_size(c, "vocab_size", ARCH_MAX_DIM);
    in->type_vocab_size = cfg_size_opt(c, "type_vocab_size", ARCH_MAX_DIM, 2);
    in->layer_norm_eps = (float)cfg_num_opt(c, "layer_norm_eps", 1e-30, 1, 1e-12);
    in->activation = cfg_activation(c, "hidden_act", "gelu");
    in->pad_token_id = cfg_id_opt(c, "pad_token_id", 0);
    in->causal = cfg_bool_opt(c, "is_decoder", false);
    const char *pos = cfg_str_opt(c, "position_embedding_type", "absolute");
    if (c->rc == ATTN_OK && strcmp(pos, "absolute") != 0)
        cfg_fail(c, ATTN_ERR_UNSUPPORTED,
                 "position_embedding_type '%s' is not supported (absolute)", pos);
    cfg_refuse_true(c, "add_cross_attention");
    cfg_heads_divide(c, in->hidden_size, "hidden_size", in->num_heads, "num_attention_heads");
    stack_config(&m->enc, in->hidden_size, in->num_heads, in->intermediate_size, in->num_layers,
                 in->activation, false, in->layer_norm_eps);
}

static void config_gpt2(cfg *c, attn_pretrained *m)
{
    attn_pretrained_info *in = &m->info;
    in->hidden_size = cfg_size(c, "n_embd", ARCH_MAX_DIM);
    in->num_layers = cfg_size(c, "n_layer", ARCH_MAX_LAYERS);
    in->num_heads = cfg_size(c, "n_head", ARCH_MAX_DIM);
    in->max_positions = cfg_size(c, "n_positions", ARCH_MAX_DIM);
    in->vocab_size = cfg_size(c, "vocab_size", ARCH_MAX_DIM);
    /* GPT2MLP: inner_dim = n_inner or 4 * n_embd */
    in->intermediate_size = cfg_size_opt(c, "n_inner", ARCH_MAX_DIM, 4 * in->hidden_size);
    in->layer_norm_eps = (float)cfg_num_opt(c, "layer_norm_epsilon", 1e-30, 1, 1e-5);
    in->activation = cfg_activation(c, "activation_function", "gelu_new");
    in->pad_token_id = cfg_id_opt(c, "pad_token_id", -1);
    in->causal = true;
    m->scale_attn_weights = cfg_bool_opt(c, "scale_attn_weights", true);
    m->scale_by_layer = cfg_bool_opt(c, "scale_attn_by_inverse_layer_idx", false);
    cfg_refuse_true(c, "add_cross_attention");
    cfg_heads_divide(c, in->hidden_size, "n_embd", in->num_heads, "n_head");
    stack_config(&m->enc, in->hidden_size, in->num_heads, in->intermediate_size, in->num_layers,
                 in->activation, true, in->layer_norm_eps);
}

static void config_vit(cfg *c, attn_pretrained *m)
{
    attn_pretrained_info *in = &m->info;
    in->hidden_size = cfg_size(c, "hidden_size", ARCH_MAX_DIM);
    in->num_layers = cfg_size(c, "num_hidden_layers", ARCH_MAX_LAYERS);
    in->num_heads = cfg_size(c, "num_attention_heads", ARCH_MAX_DIM);
    in->intermediate_size = cfg_size(c, "intermediate_size", ARCH_MAX_DIM);
    in->image_size = cfg_size(c, "image_size", 65536);
    in->patch_size = cfg_size(c, "patch_size", 65536);
    in->num_channels = cfg_size_opt(c, "num_channels", 64, 3);
    in->layer_norm_eps = (float)cfg_num_opt(c, "layer_norm_eps", 1e-30, 1, 1e-12);
    in->activation = cfg_activation(c, "hidden_act", "gelu");
    in->pad_token_id = -1;
    m->qkv_bias = cfg_bool_opt(c, "qkv_bias", true);
    if (c->rc == ATTN_OK && in->image_size % in->patch_size != 0)
        cfg_fail(c, ATTN_ERR_INVALID, "'patch_size' = %zu does not divide 'image_size' = %zu",
                 in->patch_size, in->image_size);
    if (c->rc == ATTN_OK) {
        const size_t side = in->image_size / in->patch_size;
        if (side > ARCH_MAX_DIM / side)
            cfg_fail(c, ATTN_ERR_INVALID, "image_size / patch_size = %zu: too many patches", side);
        else
            in->max_positions = side * side + 1;
    }
    cfg_heads_divide(c, in->hidden_size, "hidden_size", in->num_heads, "num_attention_heads");
    stack_config(&m->enc, in->hidden_size, in->num_heads, in->intermediate_size, in->num_layers,
                 in->activation, true, in->layer_norm_eps);
}

static void config_bart(cfg *c, attn_pretrained *m)
{
    attn_pretrained_info *in = &m->info;
    in->hidden_size = cfg_size(c, "d_model", ARCH_MAX_DIM);
    in->num_layers = cfg_size(c, "encoder_layers", ARCH_MAX_LAYERS);
    in->decoder_layers = cfg_size(c, "decoder_layers", ARCH_MAX_LAYERS);
    in->num_heads = cfg_size(c, "encoder_attention_heads", ARCH_MAX_DIM);
    in->decoder_heads = cfg_size(c, "decoder_attention_heads", ARCH_MAX_DIM);
    in->intermediate_size = cfg_size(c, "encoder_ffn_dim", ARCH_MAX_DIM);
    in->decoder_intermediate_size = cfg_size(c, "decoder_ffn_dim", ARCH_MAX_DIM);
    in->max_positions = cfg_size(c, "max_position_embeddings", ARCH_MAX_DIM);
    in->vocab_size = cfg_size(c, "vocab_size", ARCH_MAX_DIM);
    in->activation = cfg_activation(c, "activation_function", "gelu");
    in->layer_norm_eps = 1e-5f; /* nn.LayerNorm's default: BART sets no eps */
    in->pad_token_id = cfg_id_opt(c, "pad_token_id", 1);
    in->decoder_start_token_id = cfg_id_opt(c, "decoder_start_token_id", 2);
    m->embed_scale =
        cfg_bool_opt(c, "scale_embedding", false) ? sqrtf((float)in->hidden_size) : 1.0f;
    m->pos_offset = 2;
    cfg_refuse_true(c, "normalize_before");
    cfg_refuse_true(c, "add_final_layer_norm");
    if (c->rc == ATTN_OK && in->decoder_start_token_id < 0)
        cfg_fail(c, ATTN_ERR_FORMAT, "'decoder_start_token_id' is needed (null given)");
    cfg_heads_divide(c, in->hidden_size, "d_model", in->num_heads, "encoder_attention_heads");
    cfg_heads_divide(c, in->hidden_size, "d_model", in->decoder_heads, "decoder_attention_heads");
    stack_config(&m->enc, in->hidden_size, in->num_heads, in->intermediate_size, in->num_layers,
                 in->activation, false, in->layer_norm_eps);
    stack_config(&m->dec, in->hidden_size, in->decoder_heads, in->decoder_intermediate_size,
                 in->decoder_layers, in->activation, false, in->layer_norm_eps);
}

static attn_status read_config(attn_pretrained *m, const cJSON *root, const char *path, char *err,
                               size_t err_size)
{
    cfg c = {root, path, err, err_size, ATTN_OK};
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        cfg_fail(&c, ATTN_ERR_FORMAT, "key 'model_type' is missing (bert, gpt2, vit or bart)");
        return c.rc;
    }
    m->info.decoder_start_token_id = -1;
    m->embed_scale = 1.0f;
    if (strcmp(mt->valuestring, "bert") == 0) {
        m->info.arch = ATTN_ARCH_BERT;
        config_bert(&c, m);
    } else if (strcmp(mt->valuestring, "gpt2") == 0) {
        m->info.arch = ATTN_ARCH_GPT2;
        config_gpt2(&c, m);
    } else if (strcmp(mt->valuestring, "vit") == 0) {
        m->info.arch = ATTN_ARCH_VIT;
        config_vit(&c, m);
    } else if (strcmp(mt->valuestring, "bart") == 0) {
        m->info.arch = ATTN_ARCH_BART;
        config_bart(&c, m);
    } else {
        cfg_fail(&c, ATTN_ERR_UNSUPPORTED,
                 "model_type '%.64s' is not supported (bert, gpt2, vit or bart)", mt->valuestring);
    }
    return c.rc;
}

/* ------------------------------------------------------------ weights */

/*
 * The weights are read twice: a first pass checks that every tensor is there
 * with its shape and a convertible dtype, and counts floats; then one store
 * is allocated and the second pass converts into it. A model that does not
 * fit its config is refused before anything large is allocated.
 */
typedef struct ld {
    const attn_st *st;
    bool fill;      /* false: check and count; true: convert */
    float *store;   /* fill pass: the model's store */
    size_t used;    /* floats reserved so far */
    float *scratch; /* fill pass: [scratch_need] for transposes */
    size_t scratch_need;
    char name[ARCH_NAME_MAX];
    char *err;
    size_t err_size;
    attn_status rc;
} ld;

static void ld_name(ld *L, const char *prefix, const char *suffix)
{
    int w = snprintf(L->name, sizeof L->name, "%s%s", prefix, suffix);
    if ((w < 0 || (size_t)w >= sizeof L->name) && L->rc == ATTN_OK) {
        attn__err(L->err, L->err_size, "%s: tensor name '%s%s' is too long", attn_st_path(L->st),
                  prefix, suffix);
        L->rc = ATTN_ERR_INVALID;
    }
}

/* out [size] = a + b, cut to fit (a may be out itself); names are short, and a
 * cut one is simply not found. */
static void name_cat(char *out, size_t size, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= size)
        la = size - 1;
    if (lb >= size - la)
        lb = size - la - 1;
    memmove(out, a, la);
    memcpy(out + la, b, lb);
    out[la + lb] = '\0';
}

static size_t shape_count(size_t nd, const size_t *shape)
{
    size_t count = 1;
    for (size_t i = 0; i < nd; i++)
        count *= shape[i]; /* config sizes are capped: no overflow */
    return count;
}

/* Reserves count floats of the store: the fill pass's pointer, NULL in the first. */
static float *ld_reserve(ld *L, size_t count)
{
    float *p = L->fill ? L->store + L->used : NULL;
    if (!attn__size_add(L->used, count, &L->used) && L->rc == ATTN_OK) {
        attn__err(L->err, L->err_size, "%s: the weights do not fit in memory", attn_st_path(L->st));
        L->rc = ATTN_ERR_OVERFLOW;
    }
    return p;
}

static const char *shape_text(char *buf, size_t len, size_t nd, const size_t *shape)
{
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < nd && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "[%zu]", shape[i]);
    if (nd == 0)
        snprintf(buf, len, "(scalar)");
    return buf;
}

/* Checks (first pass) or converts into dst (fill pass) the tensor L->name. */
static void ld_read_into(ld *L, float *dst, size_t nd, const size_t *shape)
{
    if (L->rc != ATTN_OK)
        return;
    if (L->fill) {
        L->rc = attn_st_read_f32(L->st, L->name, nd, shape, dst, L->err, L->err_size);
        return;
    }
    const attn_st_tensor *t = attn_st_find_any_prefix(L->st, L->name);
    if (!t) {
        attn__err(L->err, L->err_size, "%s: tensor '%s' is missing", attn_st_path(L->st), L->name);
        L->rc = ATTN_ERR_FORMAT;
        return;
    }
    bool same = t->n_dims == nd;
    for (size_t i = 0; same && i < nd; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char have[128], want[128];
        attn__err(L->err, L->err_size, "%s: tensor '%s': shape %s, expected %s from config.json",
                  attn_st_path(L->st), t->name, shape_text(have, sizeof have, t->n_dims, t->shape),
                  shape_text(want, sizeof want, nd, shape));
        L->rc = ATTN_ERR_SHAPE;
        return;
    }
    if (t->dtype != ATTN_DTYPE_F32 && t->dtype != ATTN_DTYPE_F16 && t->dtype != ATTN_DTYPE_BF16) {
        attn__err(L->err, L->err_size, "%s: tensor '%s': dtype %s does not convert to float32",
                  attn_st_path(L->st), t->name, attn_dtype_name(t->dtype));
        L->rc = ATTN_ERR_UNSUPPORTED;
    }
}

/* prefix + suffix, shape [nd]: a fresh slice of the store. */
static const float *ld_tensor(ld *L, const char *prefix, const char *suffix, size_t nd,
                              const size_t *shape)
{
    ld_name(L, prefix, suffix);
    float *p = ld_reserve(L, shape_count(nd, shape));
    ld_read_into(L, p, nd, shape);
    return p;
}

static bool ld_exists(const ld *L, const char *prefix, const char *suffix)
{
    char name[ARCH_NAME_MAX];
    name_cat(name, sizeof name, prefix, suffix);
    return attn_st_find_any_prefix(L->st, name) != NULL;
}

/* A GPT-2 Conv1D weight, stored [n_in][n_out] (y = x W + b): returned [n_out][n_in]. */
static const float *ld_conv1d(ld *L, const char *prefix, const char *suffix, size_t n_in,
                              size_t n_out)
{
    const size_t shape[2] = {n_in, n_out}, count = n_in * n_out;
    ld_name(L, prefix, suffix);
    float *p = ld_reserve(L, count);
    if (!L->fill) {
        if (count > L->scratch_need)
            L->scratch_need = count;
        ld_read_into(L, NULL, 2, shape);
        return NULL;
    }
    ld_read_into(L, L->scratch, 2, shape);
    if (L->rc != ATTN_OK)
        return p;
    for (size_t i = 0; i < n_in; i++)
        for (size_t o = 0; o < n_out; o++)
            p[o * n_in + i] = L->scratch[i * n_out + o];
    return p;
}

/* A Linear "<prefix>.weight" [n_out][n_in] and, with bias, "<prefix>.bias" [n_out]. */
static void ld_linear(ld *L, attn_tf_affine *a, const char *prefix, size_t n_out, size_t n_in,
                      bool bias)
{
    char p[ARCH_NAME_MAX];
    name_cat(p, sizeof p, prefix, ".");
    a->weight = ld_tensor(L, p, "weight", 2, (const size_t[]){n_out, n_in});
    a->bias = bias ? ld_tensor(L, p, "bias", 1, (const size_t[]){n_out}) : NULL;
}

/* LayerNorm weight and bias, [E] each. */
static void ld_layer_norm(ld *L, attn_tf_affine *a, const char *prefix, size_t E)
{
    char p[ARCH_NAME_MAX];
    name_cat(p, sizeof p, prefix, ".");
    /* checkpoints converted from TensorFlow (bert-base-uncased's) name them gamma and beta */
    const bool tf_names = !ld_exists(L, p, "weight") && ld_exists(L, p, "gamma");
    a->weight = ld_tensor(L, p, tf_names ? "gamma" : "weight", 1, (const size_t[]){E});
    a->bias = ld_tensor(L, p, tf_names ? "beta" : "bias", 1, (const size_t[]){E});
}

/*
 * Separate query/key/value Linears "<prefix><names[i]>.weight" [E][E] (and
 * biases [E]) stacked into in_proj_weight [3E][E] and in_proj_bias [3E], the
 * layout attn_tf_attention takes (rows q, then k, then v).
 */
static void ld_qkv(ld *L, attn_tf_attention *a, const char *prefix, const char *const names[3],
                   size_t E, bool bias)
{
    float *w = ld_reserve(L, 3 * E * E);
    float *b = bias ? ld_reserve(L, 3 * E) : NULL;
    for (int i = 0; i < 3; i++) {
        char p[ARCH_NAME_MAX];
        name_cat(p, sizeof p, prefix, names[i]);
        name_cat(p, sizeof p, p, ".");
        ld_name(L, p, "weight");
        ld_read_into(L, w ? w + (size_t)i * E * E : NULL, 2, (const size_t[]){E, E});
        if (bias) {
            ld_name(L, p, "bias");
            ld_read_into(L, b ? b + (size_t)i * E : NULL, 1, (const size_t[]){E});
        }
    }
    a->in_proj_weight = w;
    a->in_proj_bias = b;
}

static void weights_bert(ld *L, attn_pretrained *m)
{
    const attn_pretrained_info *in = &m->info;
    const size_t E = in->hidden_size, F = in->intermediate_size;
    static const char *const qkv[3] = {"query", "key", "value"};
    m->tok_emb = ld_tensor(L, "embeddings.", "word_embeddings.weight", 2,
                           (const size_t[]){in->vocab_size, E});
    m->pos_emb = ld_tensor(L, "embeddings.", "position_embeddings.weight", 2,
                           (const size_t[]){in->max_positions, E});
    m->type_emb = ld_tensor(L, "embeddings.", "token_type_embeddings.weight", 2,
                            (const size_t[]){in->type_vocab_size, E});
    ld_layer_norm(L, &m->emb_norm, "embeddings.LayerNorm", E);
    for (size_t l = 0; l < m->enc.n_layers; l++) {
        attn_tf_layer *ly = &m->enc.layers[l];
        char p[ARCH_NAME_MAX], q[ARCH_NAME_MAX];
        snprintf(p, sizeof p, "encoder.layer.%zu.", l);
        name_cat(q, sizeof q, p, "attention.self.");
        ld_qkv(L, &ly->self_attn, q, qkv, E, true);
        attn_tf_affine out;
        name_cat(q, sizeof q, p, "attention.output.dense");
        ld_linear(L, &out, q, E, E, true);
        ly->self_attn.out_proj_weight = out.weight;
        ly->self_attn.out_proj_bias = out.bias;
        name_cat(q, sizeof q, p, "attention.output.LayerNorm");
        ld_layer_norm(L, &ly->norm1, q, E);
        name_cat(q, sizeof q, p, "intermediate.dense");
        ld_linear(L, &ly->linear1, q, F, E, true);
        name_cat(q, sizeof q, p, "output.dense");
        ld_linear(L, &ly->linear2, q, E, F, true);
        name_cat(q, sizeof q, p, "output.LayerNorm");
        ld_layer_norm(L, &ly->norm2, q, E);
    }
    /* BertModel's pooler is optional (add_pooling_layer=False, or a checkpoint without it) */
    if (ld_exists(L, "pooler.dense.", "weight")) {
        ld_linear(L, &m->pooler, "pooler.dense", E, E, true);
        m->info.has_pooler = true;
    }
}

static void weights_gpt2(ld *L, attn_pretrained *m)
{
    const attn_pretrained_info *in = &m->info;
    const size_t E = in->hidden_size, F = in->intermediate_size;
    m->tok_emb = ld_tensor(L, "", "wte.weight", 2, (const size_t[]){in->vocab_size, E});
    m->pos_emb = ld_tensor(L, "", "wpe.weight", 2, (const size_t[]){in->max_positions, E});
    for (size_t l = 0; l < m->enc.n_layers; l++) {
        attn_tf_layer *ly = &m->enc.layers[l];
        char p[ARCH_NAME_MAX], q[ARCH_NAME_MAX];
        snprintf(p, sizeof p, "h.%zu.", l);
        name_cat(q, sizeof q, p, "ln_1");
        ld_layer_norm(L, &ly->norm1, q, E);
        /* c_attn [E][3E] transposed is exactly in_proj_weight [3E][E] (q, k, v rows) */
        ly->self_attn.in_proj_weight = ld_conv1d(L, p, "attn.c_attn.weight", E, 3 * E);
        ly->self_attn.in_proj_bias =
            ld_tensor(L, p, "attn.c_attn.bias", 1, (const size_t[]){3 * E});
        ly->self_attn.out_proj_weight = ld_conv1d(L, p, "attn.c_proj.weight", E, E);
        ly->self_attn.out_proj_bias = ld_tensor(L, p, "attn.c_proj.bias", 1, (const size_t[]){E});
        name_cat(q, sizeof q, p, "ln_2");
        ld_layer_norm(L, &ly->norm2, q, E);
        ly->linear1.weight = ld_conv1d(L, p, "mlp.c_fc.weight", E, F);
        ly->linear1.bias = ld_tensor(L, p, "mlp.c_fc.bias", 1, (const size_t[]){F});
        ly->linear2.weight = ld_conv1d(L, p, "mlp.c_proj.weight", F, E);
        ly->linear2.bias = ld_tensor(L, p, "mlp.c_proj.bias", 1, (const size_t[]){E});
    }
    ld_layer_norm(L, &m->final_norm, "ln_f", E);
}

static void weights_vit(ld *L, attn_pretrained *m)
{
    const attn_pretrained_info *in = &m->info;
    const size_t E = in->hidden_size, F = in->intermediate_size, P = in->patch_size;
    static const char *const qkv[3] = {"query", "key", "value"};
    m->cls_token = ld_tensor(L, "embeddings.", "cls_token", 3, (const size_t[]){1, 1, E});
    m->pos_emb = ld_tensor(L, "embeddings.", "position_embeddings", 3,
                           (const size_t[]){1, in->max_positions, E});
    /* Conv2d weight [E][C][P][P] is already the [E][C * P * P] matrix of the patch product */
    m->patch_w = ld_tensor(L, "embeddings.patch_embeddings.projection.", "weight", 4,
                           (const size_t[]){E, in->num_channels, P, P});
    m->patch_b =
        ld_tensor(L, "embeddings.patch_embeddings.projection.", "bias", 1, (const size_t[]){E});
    const bool qkv_bias = m->qkv_bias;
    for (size_t l = 0; l < m->enc.n_layers; l++) {
        attn_tf_layer *ly = &m->enc.layers[l];
        char p[ARCH_NAME_MAX], q[ARCH_NAME_MAX];
        snprintf(p, sizeof p, "encoder.layer.%zu.", l);
        name_cat(q, sizeof q, p, "attention.attention.");
        ld_qkv(L, &ly->self_attn, q, qkv, E, qkv_bias);
        attn_tf_affine out;
        name_cat(q, sizeof q, p, "attention.output.dense");
        ld_linear(L, &out, q, E, E, true);
        ly->self_attn.out_proj_weight = out.weight;
        ly->self_attn.out_proj_bias = out.bias;
        name_cat(q, sizeof q, p, "layernorm_before");
        ld_layer_norm(L, &ly->norm1, q, E);
        name_cat(q, sizeof q, p, "layernorm_after");
        ld_layer_norm(L, &ly->norm2, q, E);
        name_cat(q, sizeof q, p, "intermediate.dense");
        ld_linear(L, &ly->linear1, q, F, E, true);
        name_cat(q, sizeof q, p, "output.dense");
        ld_linear(L, &ly->linear2, q, E, F, true);
    }
    ld_layer_norm(L, &m->final_norm, "layernorm", E);
}

/* BartAttention "<p>{q,k,v,out}_proj" into an attn_tf_attention. */
static void ld_bart_attention(ld *L, attn_tf_attention *a, const char *p, size_t E)
{
    static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
    char q[ARCH_NAME_MAX];
    ld_qkv(L, a, p, qkv, E, true);
    attn_tf_affine out;
    name_cat(q, sizeof q, p, "out_proj");
    ld_linear(L, &out, q, E, E, true);
    a->out_proj_weight = out.weight;
    a->out_proj_bias = out.bias;
}

static void weights_bart(ld *L, attn_pretrained *m)
{
    const attn_pretrained_info *in = &m->info;
    const size_t E = in->hidden_size, P2 = in->max_positions + 2;
    /* the shared table; checkpoints that only kept the encoder's tied copy still load */
    const bool shared =
        ld_exists(L, "shared.", "weight") || !ld_exists(L, "encoder.embed_tokens.", "weight");
    m->tok_emb = ld_tensor(L, shared ? "shared." : "encoder.embed_tokens.", "weight", 2,
                           (const size_t[]){in->vocab_size, E});
    m->pos_emb = ld_tensor(L, "encoder.embed_positions.", "weight", 2, (const size_t[]){P2, E});
    ld_layer_norm(L, &m->emb_norm, "encoder.layernorm_embedding", E);
    for (size_t l = 0; l < m->enc.n_layers; l++) {
        attn_tf_layer *ly = &m->enc.layers[l];
        char p[ARCH_NAME_MAX], q[ARCH_NAME_MAX];
        snprintf(p, sizeof p, "encoder.layers.%zu.", l);
        name_cat(q, sizeof q, p, "self_attn.");
        ld_bart_attention(L, &ly->self_attn, q, E);
        name_cat(q, sizeof q, p, "self_attn_layer_norm");
        ld_layer_norm(L, &ly->norm1, q, E);
        name_cat(q, sizeof q, p, "fc1");
        ld_linear(L, &ly->linear1, q, in->intermediate_size, E, true);
        name_cat(q, sizeof q, p, "fc2");
        ld_linear(L, &ly->linear2, q, E, in->intermediate_size, true);
        name_cat(q, sizeof q, p, "final_layer_norm");
        ld_layer_norm(L, &ly->norm2, q, E);
    }
    m->dec_pos_emb = ld_tensor(L, "decoder.embed_positions.", "weight", 2, (const size_t[]){P2, E});
    ld_layer_norm(L, &m->dec_emb_norm, "decoder.layernorm_embedding", E);
    for (size_t l = 0; l < m->dec.n_layers; l++) {
        attn_tf_layer *ly = &m->dec.layers[l];
        char p[ARCH_NAME_MAX], q[ARCH_NAME_MAX];
        snprintf(p, sizeof p, "decoder.layers.%zu.", l);
        name_cat(q, sizeof q, p, "self_attn.");
        ld_bart_attention(L, &ly->self_attn, q, E);
        name_cat(q, sizeof q, p, "self_attn_layer_norm");
        ld_layer_norm(L, &ly->norm1, q, E);
        name_cat(q, sizeof q, p, "encoder_attn.");
        ld_bart_attention(L, &ly->multihead_attn, q, E);
        name_cat(q, sizeof q, p, "encoder_attn_layer_norm");
        ld_layer_norm(L, &ly->norm2, q, E);
        name_cat(q, sizeof q, p, "fc1");
        ld_linear(L, &ly->linear1, q, in->decoder_intermediate_size, E, true);
        name_cat(q, sizeof q, p, "fc2");
        ld_linear(L, &ly->linear2, q, E, in->decoder_intermediate_size, true);
        name_cat(q, sizeof q, p, "final_layer_norm");
        ld_layer_norm(L, &ly->norm3, q, E);
    }
}

static void weights_pass(ld *L, attn_pretrained *m)
{
    switch (m->info.arch) {
    case ATTN_ARCH_BERT:
        weights_bert(L, m);
        break;
    case ATTN_ARCH_GPT2:
        weights_gpt2(L, m);
        break;
    case ATTN_ARCH_VIT:
        weights_vit(L, m);
        break;
    case ATTN_ARCH_BART:
        weights_bart(L, m);
        break;
    }
}

static attn_status load_weights(attn_pretrained *m, const attn_st *st, char *err, size_t err_size)
{
    const size_t n_layers = m->enc.n_layers + m->dec.n_layers;
    m->layer_store = attn__mem_array(&m->al, n_layers, sizeof(attn_tf_layer));
    if (!m->layer_store) {
        attn__err(err, err_size, "%s: out of memory", attn_st_path(st));
        return ATTN_ERR_NOMEM;
    }
    memset(m->layer_store, 0, n_layers * sizeof(attn_tf_layer));
    m->enc.layers = m->layer_store;
    m->dec.layers = m->dec.n_layers ? m->layer_store + m->enc.n_layers : NULL;

    ld L;
    memset(&L, 0, sizeof L);
    L.st = st;
    L.err = err;
    L.err_size = err_size;
    weights_pass(&L, m);
    if (L.rc != ATTN_OK)
        return L.rc;
    const size_t total = L.used;
    m->store = attn__mem_array(&m->al, total, sizeof(float));
    L.scratch = L.scratch_need ? attn__mem_array(&m->al, L.scratch_need, sizeof(float)) : NULL;
    if (!m->store || (L.scratch_need && !L.scratch)) {
        attn__mem_free(&m->al, L.scratch);
        attn__err(err, err_size, "%s: out of memory for %zu weights", attn_st_path(st), total);
        return ATTN_ERR_NOMEM;
    }
    L.fill = true;
    L.store = m->store;
    L.used = 0;
    weights_pass(&L, m);
    attn__mem_free(&m->al, L.scratch);
    return L.rc;
}

/* ------------------------------------------------------------ tokenizer files */

/* tokenizer_config.json, or tokenizer.json's BertNormalizer, for WordPiece options. */
static void wordpiece_options(const cJSON *tcfg, const cJSON *tjson, attn_wordpiece_config *wp)
{
    if (tcfg) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(tcfg, "do_lower_case");
        if (cJSON_IsBool(it))
            wp->lowercase = cJSON_IsTrue(it);
        it = cJSON_GetObjectItemCaseSensitive(tcfg, "strip_accents");
        if (cJSON_IsBool(it))
            wp->strip_accents = cJSON_IsTrue(it) ? 1 : 0;
        it = cJSON_GetObjectItemCaseSensitive(tcfg, "tokenize_chinese_chars");
        if (cJSON_IsBool(it))
            wp->tokenize_chinese_chars = cJSON_IsTrue(it);
        return;
    }
    if (!tjson)
        return;
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(tjson, "normalizer");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(norm, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BertNormalizer") == 0) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(norm, "lowercase");
        if (cJSON_IsBool(it))
            wp->lowercase = cJSON_IsTrue(it);
        it = cJSON_GetObjectItemCaseSensitive(norm, "strip_accents");
        if (cJSON_IsBool(it))
            wp->strip_accents = cJSON_IsTrue(it) ? 1 : 0;
        it = cJSON_GetObjectItemCaseSensitive(norm, "handle_chinese_chars");
        if (cJSON_IsBool(it))
            wp->tokenize_chinese_chars = cJSON_IsTrue(it);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(tjson, "model");
    const cJSON *mx = cJSON_GetObjectItemCaseSensitive(model, "max_input_chars_per_word");
    if (cJSON_IsNumber(mx) && mx->valuedouble >= 1 && mx->valuedouble <= 1e6)
        wp->max_input_chars_per_word = (size_t)mx->valuedouble;
}

static attn_status load_tokenizer(attn_pretrained *m, const char *dir, char *err, size_t err_size)
{
    static const char *const bpe_specials[] = {"<|endoftext|>", "<s>",   "</s>",
                                               "<pad>",         "<unk>", "<mask>"};
    char vocab_txt[ARCH_PATH_MAX], vocab_json[ARCH_PATH_MAX], merges[ARCH_PATH_MAX];
    char tcfg_path[ARCH_PATH_MAX], tjson_path[ARCH_PATH_MAX];
    if (!path_join(vocab_txt, dir, "vocab.txt") || !path_join(vocab_json, dir, "vocab.json") ||
        !path_join(merges, dir, "merges.txt") ||
        !path_join(tcfg_path, dir, "tokenizer_config.json") ||
        !path_join(tjson_path, dir, "tokenizer.json")) {
        attn__err(err, err_size, "%s: path too long", dir);
        return ATTN_ERR_INVALID;
    }
    const bool wordpiece = file_exists(vocab_txt);
    const bool bpe = !wordpiece && file_exists(vocab_json) && file_exists(merges);
    if (m->info.arch == ATTN_ARCH_VIT || (!wordpiece && !bpe))
        return ATTN_OK;

    cJSON *tcfg = NULL, *tjson = NULL;
    attn_status rc = ATTN_OK;
    if (file_exists(tcfg_path))
        rc = json_file(&m->al, tcfg_path, &tcfg, err, err_size);
    if (rc == ATTN_OK && wordpiece && !tcfg && file_exists(tjson_path))
        rc = json_file(&m->al, tjson_path, &tjson, err, err_size);
    if (rc == ATTN_OK && wordpiece) {
        attn_wordpiece_config wp = attn_wordpiece_config_default();
        wordpiece_options(tcfg, tjson, &wp);
        rc = attn_tokenizer_wordpiece_create(vocab_txt, &wp, &m->al, &m->tok, err, err_size);
    } else if (rc == ATTN_OK) {
        attn_bpe_config bc;
        memset(&bc, 0, sizeof bc);
        const cJSON *aps = cJSON_GetObjectItemCaseSensitive(tcfg, "add_prefix_space");
        bc.add_prefix_space = cJSON_IsTrue(aps);
        bc.special_tokens = bpe_specials;
        bc.n_special_tokens = sizeof bpe_specials / sizeof bpe_specials[0];
        rc = attn_tokenizer_bpe_create(vocab_json, merges, &bc, &m->al, &m->tok, err, err_size);
    }
    cJSON_Delete(tcfg);
    cJSON_Delete(tjson);
    if (rc != ATTN_OK)
        return rc;
    const size_t tv = attn_tokenizer_vocab_size(m->tok);
    if (tv > m->info.vocab_size) {
        attn__err(err, err_size,
                  "%s: the tokenizer's ids go up to %zu but config.json's vocab_size is %zu",
                  wordpiece ? vocab_txt : vocab_json, tv - 1, m->info.vocab_size);
        return ATTN_ERR_FORMAT;
    }
    return ATTN_OK;
}

/* ------------------------------------------------------------ the model */

attn_status attn_pretrained_load(const char *dir, const attn_allocator *alloc,
                                 attn_pretrained **out, char *err, size_t err_size)
{
    attn_allocator al;
    if (err && err_size)
        err[0] = '\0';
    if (!out) {
        attn__err(err, err_size, "attn_pretrained_load: out is NULL");
        return ATTN_ERR_INVALID;
    }
    *out = NULL;
    if (!dir || !attn__mem_init(alloc, &al)) {
        attn__err(err, err_size, "attn_pretrained_load: %s",
                  dir ? "an allocator needs both alloc and free" : "dir is NULL");
        return ATTN_ERR_INVALID;
    }
    char path[ARCH_PATH_MAX];
    if (!path_join(path, dir, "config.json")) {
        attn__err(err, err_size, "%.200s...: path too long", dir);
        return ATTN_ERR_INVALID;
    }
    attn_pretrained *m = attn__mem_alloc(&al, sizeof *m);
    if (!m) {
        attn__err(err, err_size, "%s: out of memory", dir);
        return ATTN_ERR_NOMEM;
    }
    memset(m, 0, sizeof *m);
    m->al = al;

    cJSON *root = NULL;
    attn_status rc = json_file(&al, path, &root, err, err_size);
    if (rc == ATTN_OK)
        rc = read_config(m, root, path, err, err_size);
    cJSON_Delete(root);

    attn_st *st = NULL;
    if (rc == ATTN_OK) {
        path_join(path, dir, "model.safetensors");
        rc = attn_st_open(path, &al, &st, err, err_size);
    }
    if (rc == ATTN_OK)
        rc = load_weights(m, st, err, err_size);
    attn_st_close(st);
    if (rc == ATTN_OK)
        rc = load_tokenizer(m, dir, err, err_size);
    if (rc != ATTN_OK) {
        attn_pretrained_free(m);
        return rc;
    }
    *out = m;
    return ATTN_OK;
}

void attn_pretrained_free(attn_pretrained *m)
{
    if (!m)
        return;
    attn_allocator al = m->al;
    attn_tokenizer_free(m->tok);
    attn__mem_free(&al, m->store);
    attn__mem_free(&al, m->layer_store);
    attn__mem_free(&al, m);
}

const attn_pretrained_info *attn_pretrained_get_info(const attn_pretrained *m)
{
    return m ? &m->info : NULL;
}

const attn_tokenizer *attn_pretrained_tokenizer(const attn_pretrained *m)
{
    return m ? m->tok : NULL;
}
