/* h_models.c - GET /v1/models, GET /v1/models/{name}, POST /v1/models/{name}/attention. */
#include "h_models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h_common.h"

const char *const hm_out_names[HM_N_OUT] = {"attentions",
                                            "last_hidden_state",
                                            "hidden_states",
                                            "q",
                                            "k",
                                            "v",
                                            "pooler_output",
                                            "encoder_attentions",
                                            "decoder_attentions",
                                            "cross_attentions",
                                            "encoder_last_hidden_state",
                                            "encoder_hidden_states",
                                            "decoder_hidden_states"};

#define BIT(x) (1u << (x))

/* ------------------------------------------------------------ requests */

static void free_labels(char **labels, size_t n)
{
    for (size_t i = 0; labels && i < n; i++)
        free(labels[i]);
    free(labels);
}

void hm_req_free(hm_req *r)
{
    free(r->ids);
    free(r->types);
    free(r->mask);
    free(r->dec_ids);
    free(r->pixels);
    free_labels(r->tokens, r->n);
    free_labels(r->dec_tokens, r->n_dec);
    free(r->masked);
    free(r->layers);
    free(r->heads);
    memset(r, 0, sizeof *r);
}

void hm_res_free(hm_res *o)
{
    for (int i = 0; i < HM_N_OUT; i++)
        free(o->buf[i]);
    memset(o, 0, sizeof *o);
}

bool hm_lookup(srv_app *app, const char *name, hm_req *r, srv_err *e)
{
    bool loading = false;
    const attn_pretrained *m = srv_models_get(app->models, name, &loading);
    if (!m) {
        if (loading)
            return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "",
                               "model '%.100s' is still loading; /readyz says when it is ready",
                               name);
        char names[400];
        srv_models_names(app->models, names, sizeof names);
        return srv_err_set(e, 404, SRV_CODE_NOT_FOUND, "", "no model named '%.100s'; models: %s",
                           name, names);
    }
    r->name = name;
    r->m = m;
    r->info = attn_pretrained_get_info(m);
    return true;
}

unsigned hm_allowed(const attn_pretrained_info *info)
{
    if (info->arch == ATTN_ARCH_BART)
        return BIT(HM_LAST_HIDDEN) | BIT(HM_Q) | BIT(HM_K) | BIT(HM_V) | BIT(HM_ENC_ATTENTIONS) |
               BIT(HM_DEC_ATTENTIONS) | BIT(HM_CROSS_ATTENTIONS) | BIT(HM_ENC_LAST_HIDDEN) |
               BIT(HM_ENC_HIDDEN) | BIT(HM_DEC_HIDDEN);
    return BIT(HM_ATTENTIONS) | BIT(HM_LAST_HIDDEN) | BIT(HM_HIDDEN) | BIT(HM_Q) | BIT(HM_K) |
           BIT(HM_V) | (info->has_pooler ? BIT(HM_POOLER) : 0);
}

unsigned hm_default(const attn_pretrained_info *info)
{
    if (info->arch == ATTN_ARCH_BART)
        return BIT(HM_ENC_ATTENTIONS) | BIT(HM_DEC_ATTENTIONS) | BIT(HM_CROSS_ATTENTIONS);
    return BIT(HM_ATTENTIONS);
}

int32_t hm_mask_id(const attn_pretrained *m)
{
    const attn_tokenizer *tok = attn_pretrained_tokenizer(m);
    if (!tok)
        return -1;
    if (attn_tokenizer_get_kind(tok) == ATTN_TOKENIZER_WORDPIECE)
        return attn_tokenizer_special_id(tok, ATTN_SPECIAL_MASK);
    return attn_tokenizer_token_to_id(tok, "<mask>");
}

size_t hm_inputs(const attn_pretrained *m, const char *out[HM_MAX_INPUTS])
{
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    const bool tok = attn_pretrained_tokenizer(m) != NULL;
    size_t k = 0;
    if (info->arch == ATTN_ARCH_VIT) {
        out[k++] = "pixel_values";
        return k;
    }
    if (tok)
        out[k++] = "text";
    if (tok && info->arch == ATTN_ARCH_BERT)
        out[k++] = "text_pair";
    out[k++] = "input_ids";
    if (info->arch == ATTN_ARCH_BERT) {
        out[k++] = "token_type_ids";
        out[k++] = "segment_b_start";
    }
    if (info->arch == ATTN_ARCH_BART)
        out[k++] = "decoder_input_ids";
    out[k++] = "attention_mask";
    if (hm_mask_id(m) >= 0)
        out[k++] = "mask_tokens";
    return k;
}

static char *dup_str(const char *s)
{
    size_t len = strlen(s);
    char *d = malloc(len + 1);
    if (d)
        memcpy(d, s, len + 1);
    return d;
}

static bool oom(srv_err *e)
{
    return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "",
                       "out of memory for this request; try a smaller one");
}

bool hm_check_ids(const hm_req *r, const int32_t *ids, size_t n, const char *field, srv_err *e)
{
    char p[64];
    snprintf(p, sizeof p, "/%s", field);
    if (n == 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: empty; send at least one token",
                           field);
    if (n > r->info->max_positions)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                           "%s: %zu tokens, longer than max_position_embeddings (%zu) of model "
                           "'%s'",
                           field, n, r->info->max_positions, r->name);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= r->info->vocab_size) {
            snprintf(p, sizeof p, "/%s/%zu", field, i);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                               "%s[%zu]: %ld is not a token id of model '%s' (0 to %zu)", field, i,
                               (long)ids[i], r->name, r->info->vocab_size - 1);
        }
    return true;
}

bool hm_encode_text(hm_req *r, const char *text, size_t len, const char *pair, size_t pair_len,
                    const char *field, srv_err *e)
{
    char p[64];
    snprintf(p, sizeof p, "/%s", field);
    const attn_tokenizer *tok = attn_pretrained_tokenizer(r->m);
    if (!tok)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                           "%s: model '%s' has no tokenizer (no vocab.txt, or vocab.json and "
                           "merges.txt, in its folder); send input_ids",
                           field, r->name);
    if (pair && r->info->arch != ATTN_ARCH_BERT)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "/text_pair",
                           "text_pair: only BERT models take a sentence pair");
    attn_encoding *enc = NULL;
    char err[ATTN_MODEL_ERR_SIZE];
    attn_status rc =
        attn_tokenizer_encode(tok, text, len, pair, pair_len, true, &enc, err, sizeof err);
    if (rc == ATTN_ERR_NOMEM)
        return oom(e);
    if (rc != ATTN_OK)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: %s", field, err);
    /* BART's tokenizer (RoBERTa's template) frames the text as <s> ... </s> */
    int32_t bos = -1, eos = -1;
    if (r->info->arch == ATTN_ARCH_BART) {
        bos = attn_tokenizer_token_to_id(tok, "<s>");
        eos = attn_tokenizer_token_to_id(tok, "</s>");
        if (bos < 0 || eos < 0)
            bos = eos = -1;
    }
    const size_t extra = bos >= 0 ? 2 : 0, n = enc->n_tokens + extra;
    bool ok = true;
    if (n == 0)
        ok = srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: gives no tokens", field);
    else if (n > r->info->max_positions)
        ok = srv_err_set(e, 400, SRV_CODE_INVALID, p,
                         "%s: %zu tokens, longer than max_position_embeddings (%zu) of model '%s'",
                         field, n, r->info->max_positions, r->name);
    if (ok) {
        r->ids = malloc(n * sizeof *r->ids);
        r->tokens = calloc(n, sizeof *r->tokens);
        r->n = r->tokens ? n : 0;
        if (pair)
            r->types = malloc(n * sizeof *r->types);
        ok = r->ids && r->tokens && (!pair || r->types);
        for (size_t i = 0; ok && i < n; i++) {
            const bool framed = extra && (i == 0 || i == n - 1);
            const size_t s = i - (extra ? 1 : 0);
            r->ids[i] = framed ? (i == 0 ? bos : eos) : enc->ids[s];
            r->tokens[i] = dup_str(framed ? (i == 0 ? "<s>" : "</s>") : enc->tokens[s]);
            ok = r->tokens[i] != NULL;
            if (pair)
                r->types[i] = enc->type_ids[s];
        }
        if (!ok)
            oom(e);
    }
    attn_encoding_free(enc);
    if (ok)
        ok = hm_check_ids(r, r->ids, r->n, field, e);
    return ok;
}

/* Labels of ids: the tokenizer's strings, else the ids themselves. */
static char **labels_of_ids(const attn_pretrained *m, const int32_t *ids, size_t n)
{
    const attn_tokenizer *tok = attn_pretrained_tokenizer(m);
    char **out = calloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++) {
        const char *s = tok ? attn_tokenizer_id_to_token(tok, ids[i]) : NULL;
        char num[24];
        if (!s) {
            snprintf(num, sizeof num, "%ld", (long)ids[i]);
            s = num;
        }
        if (!(out[i] = dup_str(s))) {
            free_labels(out, n);
            return NULL;
        }
    }
    return out;
}

bool hm_label_ids(hm_req *r, srv_err *e)
{
    if (!r->tokens && r->info->arch == ATTN_ARCH_VIT) {
        /* [CLS], then the patches row by row, labelled (row,column) */
        const size_t side = r->info->image_size / r->info->patch_size;
        r->tokens = calloc(r->n, sizeof *r->tokens);
        for (size_t i = 0; r->tokens && i < r->n; i++) {
            char s[48];
            if (i == 0)
                snprintf(s, sizeof s, "[CLS]");
            else
                snprintf(s, sizeof s, "(%zu,%zu)", (i - 1) / side, (i - 1) % side);
            if (!(r->tokens[i] = dup_str(s)))
                return oom(e);
        }
        if (!r->tokens)
            return oom(e);
    }
    if (!r->tokens && r->ids && !(r->tokens = labels_of_ids(r->m, r->ids, r->n)))
        return oom(e);
    if (!r->dec_tokens && r->dec_ids &&
        !(r->dec_tokens = labels_of_ids(r->m, r->dec_ids, r->n_dec)))
        return oom(e);
    return true;
}

bool hm_apply_mask(hm_req *r, const long long *pos, size_t count, const char *field, srv_err *e)
{
    char p[64];
    snprintf(p, sizeof p, "/%s", field);
    const int32_t mid = hm_mask_id(r->m);
    if (mid < 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                           "%s: model '%s' has no mask token (WordPiece [MASK] or <mask>)", field,
                           r->name);
    if (!r->ids)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: needs text or input_ids", field);
    const char *label = attn_tokenizer_id_to_token(attn_pretrained_tokenizer(r->m), mid);
    r->masked = malloc((count ? count : 1) * sizeof *r->masked);
    if (!r->masked)
        return oom(e);
    for (size_t i = 0; i < count; i++) {
        if (pos[i] < 0 || (size_t)pos[i] >= r->n) {
            snprintf(p, sizeof p, "/%s/%zu", field, i);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                               "%s[%zu]: position %lld is outside the %zu tokens", field, i, pos[i],
                               r->n);
        }
        const size_t at = (size_t)pos[i];
        r->ids[at] = mid;
        if (r->tokens) {
            char *s = dup_str(label ? label : "[MASK]");
            if (!s)
                return oom(e);
            free(r->tokens[at]);
            r->tokens[at] = s;
        }
        r->masked[r->n_masked++] = at;
    }
    return true;
}

bool hm_segment_b(hm_req *r, long long k, const char *field, srv_err *e)
{
    char p[64];
    snprintf(p, sizeof p, "/%s", field);
    if (r->info->arch != ATTN_ARCH_BERT)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                           "%s: only BERT models have segments (token_type_ids)", field);
    if (r->info->type_vocab_size < 2)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                           "%s: model '%s' has a single segment (type_vocab_size 1)", field,
                           r->name);
    if (k < 1 || (size_t)k >= r->n)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                           "%s: %lld, expected 1 to %zu (the first token of the second segment)",
                           field, k, r->n - 1);
    free(r->types);
    r->types = malloc(r->n * sizeof *r->types);
    if (!r->types)
        return oom(e);
    for (size_t i = 0; i < r->n; i++)
        r->types[i] = i >= (size_t)k;
    return true;
}

/* ------------------------------------------------------------ running */

/* Checks a selection list against count (what every stack has). */
static bool check_select(const size_t *v, size_t n, size_t count, const char *field, srv_err *e)
{
    char p[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "/%s/%zu", field, i);
        if (v[i] >= count)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s[%zu]: %zu, expected 0 to %zu",
                               field, i, v[i], count - 1);
        for (size_t j = 0; j < i; j++)
            if (v[j] == v[i])
                return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s[%zu]: %zu is repeated", field,
                                   i, v[i]);
    }
    return true;
}

static void set_shape(hm_res *o, int k, size_t a, size_t b, size_t c, size_t d)
{
    const size_t dims[4] = {a, b, c, d};
    o->rank[k] = 0;
    o->count[k] = 1;
    for (int i = 0; i < 4; i++)
        if (dims[i]) {
            o->shape[k][o->rank[k]++] = dims[i];
            o->count[k] = hc_mul3(o->count[k], dims[i], 1);
        }
}

bool hm_run(srv_app *app, hm_req *r, hm_res *o, srv_err *e)
{
    const attn_pretrained_info *info = r->info;
    const bool bart = info->arch == ATTN_ARCH_BART;
    memset(o, 0, sizeof *o);
    if (bart && !r->dec_ids) {
        /* BartModel's default decoder input: the input shifted right behind the start token */
        r->dec_ids = malloc(r->n * sizeof *r->dec_ids);
        if (!r->dec_ids)
            return oom(e);
        r->n_dec = r->n;
        r->dec_ids[0] = info->decoder_start_token_id;
        for (size_t i = 1; i < r->n; i++)
            r->dec_ids[i] = r->ids[i - 1];
    }
    if (!hm_label_ids(r, e))
        return false;
    const size_t L = info->num_layers, H = info->num_heads;
    const size_t Ld = bart ? info->decoder_layers : L, Hd = bart ? info->decoder_heads : H;
    if (!check_select(r->layers, r->n_layers, L < Ld ? L : Ld, "layers", e) ||
        !check_select(r->heads, r->n_heads, H < Hd ? H : Hd, "heads", e))
        return false;
    o->n_layers = r->layers ? r->n_layers : L;
    o->n_heads = r->heads ? r->n_heads : H;
    o->dec_layers = r->layers ? r->n_layers : Ld;
    o->dec_heads = r->heads ? r->n_heads : Hd;
    const size_t n = r->n, nd = r->n_dec, E = info->hidden_size, hd = E / H;
    if (!hc_check_limits(app, n, info->arch == ATTN_ARCH_VIT ? "pixel_values" : "input_ids",
                         bart ? nd : n, bart ? "decoder_input_ids" : "input_ids",
                         o->n_heads > o->dec_heads ? o->n_heads : o->dec_heads, "heads",
                         o->n_layers > o->dec_layers ? o->n_layers : o->dec_layers, "layers", e))
        return false;
    const size_t Ls = o->n_layers, Hs = o->n_heads, Lds = o->dec_layers, Hds = o->dec_heads;
    set_shape(o, HM_ATTENTIONS, Ls, Hs, n, n);
    set_shape(o, HM_LAST_HIDDEN, bart ? nd : n, E, 0, 0);
    set_shape(o, HM_HIDDEN, L + 1, n, E, 0);
    set_shape(o, HM_Q, Ls, Hs, n, hd);
    set_shape(o, HM_K, Ls, Hs, n, hd);
    set_shape(o, HM_V, Ls, Hs, n, hd);
    set_shape(o, HM_POOLER, E, 0, 0, 0);
    set_shape(o, HM_ENC_ATTENTIONS, Ls, Hs, n, n);
    set_shape(o, HM_DEC_ATTENTIONS, Lds, Hds, nd, nd);
    set_shape(o, HM_CROSS_ATTENTIONS, Lds, Hds, nd, n);
    set_shape(o, HM_ENC_LAST_HIDDEN, n, E, 0, 0);
    set_shape(o, HM_ENC_HIDDEN, L + 1, n, E, 0);
    set_shape(o, HM_DEC_HIDDEN, Ld + 1, nd, E, 0);
    size_t total = 0;
    for (int k = 0; k < HM_N_OUT; k++)
        if (r->want & BIT(k))
            total = hc_add_sat(total, o->count[k]);
    if (!hc_check_elements(total, app->config.max_elements,
                           "select fewer layers or heads, return less, or send fewer tokens", e))
        return false;
    for (int k = 0; k < HM_N_OUT; k++)
        if ((r->want & BIT(k)) && !(o->buf[k] = malloc(o->count[k] * sizeof(float))))
            return oom(e);
    attn_ws *ws = srv_thread_ws();
    if (!ws)
        return oom(e);

    attn_pretrained_inputs in = {.input_ids = r->ids,
                                 .n = r->n,
                                 .token_type_ids = r->types,
                                 .attention_mask = r->mask,
                                 .decoder_input_ids = r->dec_ids,
                                 .n_dec = r->n_dec,
                                 .pixel_values = r->pixels,
                                 .height = r->pixels ? info->image_size : 0,
                                 .width = r->pixels ? info->image_size : 0};
    attn_pretrained_select sel = {r->layers, r->n_layers, r->heads, r->n_heads};
    attn_pretrained_outputs out = {
        .attentions = bart ? o->buf[HM_ENC_ATTENTIONS] : o->buf[HM_ATTENTIONS],
        .decoder_attentions = o->buf[HM_DEC_ATTENTIONS],
        .cross_attentions = o->buf[HM_CROSS_ATTENTIONS],
        .last_hidden_state = o->buf[HM_LAST_HIDDEN],
        .encoder_last_hidden_state = o->buf[HM_ENC_LAST_HIDDEN],
        .hidden_states = bart ? o->buf[HM_ENC_HIDDEN] : o->buf[HM_HIDDEN],
        .decoder_hidden_states = o->buf[HM_DEC_HIDDEN],
        .pooler_output = o->buf[HM_POOLER],
        .q = o->buf[HM_Q],
        .k = o->buf[HM_K],
        .v = o->buf[HM_V]};
    char err[ATTN_MODEL_ERR_SIZE];
    const double t0 = srv_now_ms();
    attn_status rc = attn_pretrained_forward(r->m, ws, &in, &sel, &out, err, sizeof err);
    o->engine_ms = srv_now_ms() - t0;
    if (rc == ATTN_ERR_INVALID)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "", "%s", err);
    if (rc != ATTN_OK)
        return hc_engine_error(rc, e);
    return true;
}

/* ------------------------------------------------------------ description */

void hm_describe(srv_jw *w, const char *name, const attn_pretrained *m)
{
    srv_jw_obj_begin(w);
    srv_jw_key(w, "name");
    srv_jw_str(w, name);
    if (!m) {
        srv_jw_key(w, "status");
        srv_jw_str(w, "loading");
        srv_jw_obj_end(w);
        return;
    }
    const attn_pretrained_info *in = attn_pretrained_get_info(m);
    const attn_tokenizer *tok = attn_pretrained_tokenizer(m);
    const bool bart = in->arch == ATTN_ARCH_BART;
    srv_jw_key(w, "status");
    srv_jw_str(w, "ready");
    srv_jw_key(w, "architecture");
    srv_jw_str(w, attn_arch_name(in->arch));
    srv_jw_key(w, "num_layers");
    srv_jw_uint(w, in->num_layers);
    srv_jw_key(w, "num_heads");
    srv_jw_uint(w, in->num_heads);
    if (bart) {
        srv_jw_key(w, "decoder_layers");
        srv_jw_uint(w, in->decoder_layers);
        srv_jw_key(w, "decoder_heads");
        srv_jw_uint(w, in->decoder_heads);
    }
    srv_jw_key(w, "hidden_size");
    srv_jw_uint(w, in->hidden_size);
    srv_jw_key(w, "head_dim");
    srv_jw_uint(w, in->hidden_size / in->num_heads);
    srv_jw_key(w, "intermediate_size");
    srv_jw_uint(w, in->intermediate_size);
    srv_jw_key(w, "max_position_embeddings");
    srv_jw_uint(w, in->max_positions);
    srv_jw_key(w, "vocab_size");
    if (in->arch == ATTN_ARCH_VIT)
        srv_jw_null(w);
    else
        srv_jw_uint(w, in->vocab_size);
    if (in->arch == ATTN_ARCH_VIT) {
        srv_jw_key(w, "image_size");
        srv_jw_uint(w, in->image_size);
        srv_jw_key(w, "patch_size");
        srv_jw_uint(w, in->patch_size);
        srv_jw_key(w, "num_channels");
        srv_jw_uint(w, in->num_channels);
    }
    srv_jw_key(w, "activation");
    srv_jw_str(w, attn_activation_name(in->activation));
    srv_jw_key(w, "causal");
    srv_jw_bool(w, in->causal);
    srv_jw_key(w, "tokenizer");
    if (tok)
        srv_jw_str(w,
                   attn_tokenizer_get_kind(tok) == ATTN_TOKENIZER_WORDPIECE ? "wordpiece" : "bpe");
    else
        srv_jw_null(w);
    const char *inputs[HM_MAX_INPUTS];
    const size_t n_in = hm_inputs(m, inputs);
    srv_jw_key(w, "inputs");
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < n_in; i++)
        srv_jw_str(w, inputs[i]);
    srv_jw_arr_end(w);
    srv_jw_key(w, "outputs");
    srv_jw_arr_begin(w);
    const unsigned allowed = hm_allowed(in);
    for (int k = 0; k < HM_N_OUT; k++)
        if (allowed & BIT(k))
            srv_jw_str(w, hm_out_names[k]);
    srv_jw_arr_end(w);
    srv_jw_key(w, "default_outputs");
    srv_jw_arr_begin(w);
    for (int k = 0; k < HM_N_OUT; k++)
        if (hm_default(in) & BIT(k))
            srv_jw_str(w, hm_out_names[k]);
    srv_jw_arr_end(w);
    srv_jw_obj_end(w);
}

/* Hands a finished JSON document to the response. */
static void send_json(srv_response *res, srv_buf *b)
{
    size_t len = 0;
    char *body = srv_buf_detach(b, &len);
    if (!body) {
        srv_err e;
        srv_err_set(&e, 500, SRV_CODE_INTERNAL, "", "out of memory while writing the response");
        srv_respond_error(res, &e);
        return;
    }
    srv_response_set(res, 200, "application/json", body, len);
}

void srv_h_models_list(srv_app *app, const srv_request *req, srv_response *res)
{
    (void)req;
    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_jw_init(&w, &b, 0, false);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "models");
    srv_jw_arr_begin(&w);
    for (size_t i = 0; i < srv_models_count(app->models); i++) {
        const char *name = srv_models_name(app->models, i);
        hm_describe(&w, name, srv_models_get(app->models, name, NULL));
    }
    srv_jw_arr_end(&w);
    srv_jw_obj_end(&w);
    send_json(res, &b);
}

void srv_h_model_get(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    bool loading = false;
    const char *name = req->params[0];
    const attn_pretrained *m = srv_models_get(app->models, name, &loading);
    if (!m && !loading) {
        hm_req r;
        memset(&r, 0, sizeof r);
        hm_lookup(app, name, &r, &e);
        srv_respond_error(res, &e);
        return;
    }
    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_jw_init(&w, &b, 0, false);
    hm_describe(&w, name, m);
    send_json(res, &b);
}

/* ------------------------------------------------------------ POST attention */

/* A list of integers in [lo, hi] (or one integer when single_ok); *out malloc'd. */
static bool read_ints(const cJSON *root, const char *key, long long lo, long long hi,
                      long long **out, size_t *count, srv_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    char p[64];
    snprintf(p, sizeof p, "/%s", key);
    *out = NULL;
    *count = 0;
    if (!cJSON_IsArray(it))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: expected a list of integers", key);
    const size_t n = (size_t)cJSON_GetArraySize(it);
    long long *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return oom(e);
    size_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        const double d = cJSON_IsNumber(x) ? x->valuedouble : NAN;
        const bool is_bool = cJSON_IsBool(x);
        if (!(d == floor(d) && d >= (double)lo && d <= (double)hi) &&
            !(is_bool && lo <= 0 && hi >= 1)) {
            free(v);
            snprintf(p, sizeof p, "/%s/%zu", key, i);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                               "%s[%zu]: expected an integer from %lld to %lld", key, i, lo, hi);
        }
        v[i] = is_bool ? (long long)cJSON_IsTrue(x) : (long long)d;
    }
    *out = v;
    *count = n;
    return true;
}

/* input_ids / decoder_input_ids into int32 (range checked by hm_check_ids). */
static bool read_ids(const cJSON *root, const char *key, int32_t **out, size_t *n, srv_err *e)
{
    long long *v = NULL;
    if (!read_ints(root, key, -2147483648LL, 2147483647LL, &v, n, e))
        return false;
    *out = malloc((*n ? *n : 1) * sizeof **out);
    if (!*out) {
        free(v);
        return oom(e);
    }
    for (size_t i = 0; i < *n; i++)
        (*out)[i] = (int32_t)v[i];
    free(v);
    return true;
}

/* A per-token list (token_type_ids, attention_mask) of exactly r->n integers in [0, hi]. */
static bool read_per_token(const cJSON *root, const hm_req *r, const char *key, long long hi,
                           long long **out, srv_err *e)
{
    size_t n;
    if (!read_ints(root, key, 0, hi, out, &n, e))
        return false;
    if (n != r->n) {
        free(*out);
        *out = NULL;
        char p[64];
        snprintf(p, sizeof p, "/%s", key);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: %zu values for %zu tokens", key, n,
                           r->n);
    }
    return true;
}

static bool read_select(const cJSON *root, const char *key, size_t **out, size_t *count, srv_err *e)
{
    if (!cJSON_GetObjectItemCaseSensitive(root, key))
        return true;
    long long *v = NULL;
    if (!read_ints(root, key, 0, 1 << 20, &v, count, e))
        return false;
    char p[64];
    snprintf(p, sizeof p, "/%s", key);
    if (*count == 0) {
        free(v);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: empty; leave it out to get every one",
                           key);
    }
    *out = malloc(*count * sizeof **out);
    if (!*out) {
        free(v);
        return oom(e);
    }
    for (size_t i = 0; i < *count; i++)
        (*out)[i] = (size_t)v[i];
    free(v);
    return true;
}

/* return: names from hm_out_names this model has. */
static bool read_return(const cJSON *root, hm_req *r, srv_err *e)
{
    const unsigned allowed = hm_allowed(r->info);
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "return");
    r->want = hm_default(r->info);
    if (!it)
        return true;
    if (!cJSON_IsArray(it) || !it->child)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "/return",
                           "return: expected a non-empty list of names");
    r->want = 0;
    size_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        int k = -1;
        for (int j = 0; cJSON_IsString(x) && j < HM_N_OUT; j++)
            if (strcmp(x->valuestring, hm_out_names[j]) == 0 && (allowed & BIT(j)))
                k = j;
        if (k < 0) {
            char list[400] = "", p[32];
            for (int j = 0; j < HM_N_OUT; j++)
                if (allowed & BIT(j))
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                             list[0] ? ", " : "", hm_out_names[j]);
            snprintf(p, sizeof p, "/return/%zu", i);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p,
                               "return: model '%s' (%s) does not return that; it returns: %s",
                               r->name, attn_arch_name(r->info->arch), list);
        }
        r->want |= BIT(k);
    }
    return true;
}

/* Refuses a member this architecture does not take. */
static bool refuse(const cJSON *root, const char *key, const hm_req *r, const char *takes,
                   srv_err *e)
{
    if (!cJSON_GetObjectItemCaseSensitive(root, key))
        return true;
    char p[64];
    snprintf(p, sizeof p, "/%s", key);
    return srv_err_set(e, 400, SRV_CODE_INVALID, p, "%s: model '%s' (%s) takes %s", key, r->name,
                       attn_arch_name(r->info->arch), takes);
}

/* The inputs of a POST /v1/models/{name}/attention body into r. */
static bool read_inputs(srv_app *app, const cJSON *root, hm_req *r, srv_err *e)
{
    const attn_pretrained_info *info = r->info;
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
    const cJSON *pair = cJSON_GetObjectItemCaseSensitive(root, "text_pair");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "input_ids");
    if (info->arch == ATTN_ARCH_VIT) {
        static const char *const others[] = {"text",           "text_pair",         "input_ids",
                                             "token_type_ids", "segment_b_start",   "mask_tokens",
                                             "attention_mask", "decoder_input_ids", NULL};
        for (size_t i = 0; others[i]; i++)
            if (!refuse(root, others[i], r, "pixel_values [3][H][W] (an image)", e))
                return false;
        srv_tensor t;
        memset(&t, 0, sizeof t);
        if (!hc_read_tensor(root, "pixel_values", 3, 3, true, app->config.max_elements, &t, e))
            return false;
        const size_t C = info->num_channels, S = info->image_size;
        if (t.shape[0] != C || t.shape[1] != S || t.shape[2] != S) {
            char got[64];
            hc_dims_str(t.shape, t.rank, got, sizeof got);
            srv_tensor_free(&t);
            return srv_err_set(e, 400, SRV_CODE_INVALID, "/pixel_values",
                               "pixel_values: shape %s, expected [%zu][%zu][%zu] (num_channels x "
                               "image_size x image_size of model '%s', already normalised)",
                               got, C, S, S, r->name);
        }
        r->pixels = t.data; /* taken over */
        r->n = info->max_positions;
        return true;
    }
    if (!refuse(root, "pixel_values", r, "text or input_ids", e))
        return false;
    if (info->arch != ATTN_ARCH_BART &&
        !refuse(root, "decoder_input_ids", r, "no decoder input (only BART does)", e))
        return false;
    if (info->arch != ATTN_ARCH_BERT) {
        static const char *const bert_only[] = {"text_pair", "token_type_ids", "segment_b_start",
                                                NULL};
        for (size_t i = 0; bert_only[i]; i++)
            if (!refuse(root, bert_only[i], r, "no segments (only BERT does)", e))
                return false;
    }
    if ((text != NULL) == (ids != NULL))
        return srv_err_set(e, 400, SRV_CODE_INVALID, text ? "/input_ids" : "",
                           "send either text or input_ids (%s)",
                           text ? "not both" : "one is required");
    if (pair && !text)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "/text_pair",
                           "text_pair: goes with text (the first sentence)");
    if (text) {
        if (!cJSON_IsString(text))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "/text", "text: expected a string");
        if (pair && !cJSON_IsString(pair))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "/text_pair",
                               "text_pair: expected a string");
        if (!hm_encode_text(r, text->valuestring, strlen(text->valuestring),
                            pair ? pair->valuestring : NULL, pair ? strlen(pair->valuestring) : 0,
                            "text", e))
            return false;
    } else {
        if (!read_ids(root, "input_ids", &r->ids, &r->n, e) ||
            !hm_check_ids(r, r->ids, r->n, "input_ids", e))
            return false;
    }
    if (!hm_label_ids(r, e))
        return false;
    long long *v = NULL;
    if (cJSON_GetObjectItemCaseSensitive(root, "token_type_ids")) {
        if (pair || cJSON_GetObjectItemCaseSensitive(root, "segment_b_start"))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "/token_type_ids",
                               "token_type_ids: send one of text_pair, segment_b_start and "
                               "token_type_ids");
        if (!read_per_token(root, r, "token_type_ids", (long long)info->type_vocab_size - 1, &v, e))
            return false;
        r->types = malloc(r->n * sizeof *r->types);
        if (!r->types) {
            free(v);
            return oom(e);
        }
        for (size_t i = 0; i < r->n; i++)
            r->types[i] = (int32_t)v[i];
        free(v);
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "segment_b_start")) {
        long long k = 0;
        srv_ptr rp;
        srv_ptr_root(&rp);
        if (pair)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "/segment_b_start",
                               "segment_b_start: text_pair already marks the second segment");
        if (!srv_json_opt_int(root, &rp, "segment_b_start", -(1LL << 40), 1LL << 40, &k, e) ||
            !hm_segment_b(r, k, "segment_b_start", e))
            return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "attention_mask")) {
        if (!read_per_token(root, r, "attention_mask", 1, &v, e))
            return false;
        r->mask = malloc(r->n);
        if (!r->mask) {
            free(v);
            return oom(e);
        }
        for (size_t i = 0; i < r->n; i++)
            r->mask[i] = (uint8_t)v[i];
        free(v);
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "mask_tokens")) {
        size_t count = 0;
        if (!read_ints(root, "mask_tokens", -(1LL << 40), 1LL << 40, &v, &count, e))
            return false;
        const bool ok = hm_apply_mask(r, v, count, "mask_tokens", e);
        free(v);
        if (!ok)
            return false;
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "decoder_input_ids")) {
        if (!read_ids(root, "decoder_input_ids", &r->dec_ids, &r->n_dec, e) ||
            !hm_check_ids(r, r->dec_ids, r->n_dec, "decoder_input_ids", e))
            return false;
    }
    return true;
}

static void write_ids(srv_jw *w, const char *key, const int32_t *ids, size_t n)
{
    srv_jw_key(w, key);
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++)
        srv_jw_int(w, ids[i]);
    srv_jw_arr_end(w);
}

static void write_labels(srv_jw *w, const char *key, char **labels, size_t n)
{
    srv_jw_key(w, key);
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++)
        srv_jw_str(w, labels[i]);
    srv_jw_arr_end(w);
}

static void write_select(srv_jw *w, const char *key, const size_t *v, size_t n, size_t all)
{
    srv_jw_key(w, key);
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < (v ? n : all); i++)
        srv_jw_uint(w, v ? v[i] : i);
    srv_jw_arr_end(w);
}

void srv_h_model_attention(srv_app *app, const srv_request *req, srv_response *res)
{
    static const char *const keys[] = {
        "text",           "text_pair",   "input_ids",         "token_type_ids", "segment_b_start",
        "attention_mask", "mask_tokens", "decoder_input_ids", "pixel_values",   "layers",
        "heads",          "return",      "encoding",          "precision",      NULL};
    srv_err e;
    hm_req r;
    hm_res o;
    hc_req c;
    memset(&r, 0, sizeof r);
    memset(&o, 0, sizeof o);
    memset(&c, 0, sizeof c);
    srv_ptr rp;
    srv_ptr_root(&rp);
    cJSON *root = NULL;
    if (!hm_lookup(app, req->params[0], &r, &e))
        goto fail;
    root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root || !srv_json_check_keys(root, &rp, keys, &e) ||
        !hc_read_output_options(root, &c, &e) || !read_return(root, &r, &e) ||
        !read_inputs(app, root, &r, &e) ||
        !read_select(root, "layers", &r.layers, &r.n_layers, &e) ||
        !read_select(root, "heads", &r.heads, &r.n_heads, &e) || !hm_run(app, &r, &o, &e))
        goto fail;

    const attn_pretrained_info *info = r.info;
    const bool bart = info->arch == ATTN_ARCH_BART;
    srv_buf bb;
    srv_jw jw;
    size_t total = 0;
    for (int k = 0; k < HM_N_OUT; k++)
        if (o.buf[k])
            total = hc_add_sat(total, o.count[k]);
    srv_buf_init(&bb);
    srv_buf_reserve(&bb, 4096 + (total < ((size_t)1 << 28) ? total * 12 : 0));
    srv_jw_init(&jw, &bb, c.precision, c.base64);
    srv_jw_obj_begin(&jw);
    srv_jw_key(&jw, "model");
    srv_jw_str(&jw, r.name);
    write_labels(&jw, "tokens", r.tokens, r.n);
    if (r.ids)
        write_ids(&jw, "input_ids", r.ids, r.n);
    if (r.types)
        write_ids(&jw, "token_type_ids", r.types, r.n);
    if (bart) {
        write_labels(&jw, "decoder_tokens", r.dec_tokens, r.n_dec);
        write_ids(&jw, "decoder_input_ids", r.dec_ids, r.n_dec);
    }
    for (int k = 0; k < HM_N_OUT; k++)
        if (o.buf[k]) {
            hc_shape s;
            memset(&s, 0, sizeof s);
            s.rank = o.rank[k];
            memcpy(s.d, o.shape[k], s.rank * sizeof(size_t));
            hc_write_tensor(&jw, hm_out_names[k], o.buf[k], s);
        }
    srv_jw_key(&jw, "meta");
    srv_jw_obj_begin(&jw);
    srv_jw_key(&jw, "model");
    srv_jw_str(&jw, r.name);
    srv_jw_key(&jw, "architecture");
    srv_jw_str(&jw, attn_arch_name(info->arch));
    srv_jw_key(&jw, "num_layers");
    srv_jw_uint(&jw, info->num_layers);
    srv_jw_key(&jw, "num_heads");
    srv_jw_uint(&jw, info->num_heads);
    srv_jw_key(&jw, "hidden_size");
    srv_jw_uint(&jw, info->hidden_size);
    srv_jw_key(&jw, "head_dim");
    srv_jw_uint(&jw, info->hidden_size / info->num_heads);
    srv_jw_key(&jw, "sequence_length");
    srv_jw_uint(&jw, r.n);
    if (bart) {
        srv_jw_key(&jw, "decoder_length");
        srv_jw_uint(&jw, r.n_dec);
    }
    write_select(&jw, "layers", r.layers, r.n_layers, o.n_layers);
    write_select(&jw, "heads", r.heads, r.n_heads, o.n_heads);
    srv_jw_key(&jw, "masked_positions");
    srv_jw_arr_begin(&jw);
    for (size_t i = 0; i < r.n_masked; i++)
        srv_jw_uint(&jw, r.masked[i]);
    srv_jw_arr_end(&jw);
    srv_jw_key(&jw, "return");
    srv_jw_arr_begin(&jw);
    for (int k = 0; k < HM_N_OUT; k++)
        if (o.buf[k])
            srv_jw_str(&jw, hm_out_names[k]);
    srv_jw_arr_end(&jw);
    srv_jw_key(&jw, "encoding");
    srv_jw_str(&jw, c.base64 ? "base64" : "json");
    srv_jw_key(&jw, "precision");
    if (c.precision)
        srv_jw_int(&jw, c.precision);
    else
        srv_jw_null(&jw);
    srv_jw_key(&jw, "shapes");
    srv_jw_obj_begin(&jw);
    for (int k = 0; k < HM_N_OUT; k++)
        if (o.buf[k])
            hc_shape_json(&jw, hm_out_names[k], o.shape[k], o.rank[k]);
    srv_jw_obj_end(&jw);
    hc_finish_json(res, &jw, 0, o.engine_ms);
    goto done;
fail:
    srv_respond_error(res, &e);
done:
    hm_res_free(&o);
    hm_req_free(&r);
    srv_json_delete(root);
}
