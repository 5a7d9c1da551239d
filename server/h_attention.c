/* h_attention.c - POST /v1/attention and /v1/multihead_attention: parse, validate, compute, render.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h_common.h"

/* sparsify: weights as COO triplets, keeping each row's k largest or those >= t. */
typedef struct sparsify {
    bool on;
    size_t topk; /* 0: threshold */
    double threshold;
    const cJSON *json;
} sparsify;

static bool read_sparsify(const cJSON *root, sparsify *sp, srv_err *e)
{
    static const char *const keys[] = {"topk", "threshold", NULL};
    const cJSON *sj = srv_json_member(root, "sparsify");
    srv_ptr p;
    memset(sp, 0, sizeof *sp);
    if (sj == NULL || cJSON_IsNull(sj))
        return true;
    hc_ptr_of(&p, "sparsify");
    if (!cJSON_IsObject(sj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "sparsify: expected {\"topk\": k} or {\"threshold\": t}");
    if (!srv_json_check_keys(sj, &p, keys, e))
        return false;
    bool has_k = srv_json_member(sj, "topk") != NULL;
    bool has_t = srv_json_member(sj, "threshold") != NULL;
    if (has_k == has_t)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "sparsify: give exactly one of topk and threshold");
    long long k = 0;
    if (!srv_json_opt_int(sj, &p, "topk", 1, (long long)1 << 40, &k, e) ||
        !srv_json_opt_float(sj, &p, "threshold", 0, 1, &sp->threshold, e))
        return false;
    sp->topk = (size_t)k;
    sp->on = true;
    sp->json = sj;
    return true;
}

/* Numbers a sparsified [B][n][m] answer may hold, at most. */
static size_t sparsify_elements(const sparsify *sp, size_t B, size_t n, size_t m)
{
    size_t per_row = sp->topk && sp->topk < m ? sp->topk : m;
    return hc_mul3(3 * B, n, per_row);
}

static int float_desc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

/* Keeps row entries > 0 that are among the k largest (ties: lower column
 * first) or >= threshold; writes their columns to idx in column order and
 * returns how many. tmp holds m floats (scratch). O(m log m) per row. */
static size_t sparsify_row(const sparsify *sp, const float *row, size_t m, size_t *idx, float *tmp)
{
    size_t cnt = 0;
    if (!sp->topk) {
        for (size_t j = 0; j < m; j++)
            if (row[j] > 0 && row[j] >= sp->threshold)
                idx[cnt++] = j;
        return cnt;
    }
    if (sp->topk >= m) {
        for (size_t j = 0; j < m; j++)
            if (row[j] > 0)
                idx[cnt++] = j;
        return cnt;
    }
    memcpy(tmp, row, m * sizeof *tmp);
    qsort(tmp, m, sizeof *tmp, float_desc);
    float cut = tmp[sp->topk - 1];
    size_t above = 0;
    for (size_t j = 0; j < m; j++)
        above += row[j] > cut;
    size_t ties = sp->topk - above; /* entries equal to cut that still fit */
    for (size_t j = 0; j < m; j++) {
        if (!(row[j] > 0))
            continue;
        if (row[j] > cut || (row[j] == cut && ties > 0 && ties--))
            idx[cnt++] = j;
    }
    return cnt;
}

/* {"rows", "cols", "values", "shape"} for one [n][m] weight matrix. Each row is
 * selected once; the kept entries are collected, then written list by list. */
static bool write_coo(srv_jw *w, const sparsify *sp, const float *wts, size_t n, size_t m,
                      size_t *nnz_total)
{
    size_t *idx = malloc((m ? m : 1) * sizeof *idx);
    float *tmp = malloc((m ? m : 1) * sizeof *tmp);
    size_t cap = 64, nnz = 0;
    size_t *rows = malloc(cap * sizeof *rows), *cols = malloc(cap * sizeof *cols);
    float *vals = malloc(cap * sizeof *vals);
    bool ok = idx && tmp && rows && cols && vals;
    for (size_t i = 0; ok && i < n; i++) {
        size_t c = sparsify_row(sp, wts + i * m, m, idx, tmp);
        if (nnz + c > cap) {
            size_t ncap = cap;
            while (ncap < nnz + c)
                ncap *= 2;
            size_t *nr = realloc(rows, ncap * sizeof *nr);
            rows = nr ? nr : rows;
            size_t *nc = nr ? realloc(cols, ncap * sizeof *nc) : NULL;
            cols = nc ? nc : cols;
            float *nv = nc ? realloc(vals, ncap * sizeof *nv) : NULL;
            vals = nv ? nv : vals;
            ok = nv != NULL;
            cap = ok ? ncap : cap;
        }
        for (size_t t = 0; ok && t < c; t++, nnz++) {
            rows[nnz] = i;
            cols[nnz] = idx[t];
            vals[nnz] = wts[i * m + idx[t]];
        }
    }
    if (ok) {
        srv_jw_obj_begin(w);
        srv_jw_key(w, "rows");
        srv_jw_arr_begin(w);
        for (size_t t = 0; t < nnz; t++)
            srv_jw_uint(w, rows[t]);
        srv_jw_arr_end(w);
        srv_jw_key(w, "cols");
        srv_jw_arr_begin(w);
        for (size_t t = 0; t < nnz; t++)
            srv_jw_uint(w, cols[t]);
        srv_jw_arr_end(w);
        srv_jw_key(w, "values");
        srv_jw_tensor(w, vals, 1, &nnz);
        srv_jw_key(w, "shape");
        srv_jw_arr_begin(w);
        srv_jw_uint(w, n);
        srv_jw_uint(w, m);
        srv_jw_arr_end(w);
        srv_jw_obj_end(w);
        *nnz_total += nnz;
    }
    free(rows);
    free(cols);
    free(vals);
    free(tmp);
    free(idx);
    return ok;
}

/* FAVOR+ defaults: r = 256 features (about d log d for the usual head widths), seed 0. */
#define FAVOR_DEFAULT_FEATURES 256

/*
 * "key": COO triplets for weights [B][H][n][m] (heads 0: [B][n][m]; B only when
 * batched): the batch and head dimensions stay nested lists, of COO objects.
 */
static bool write_coo_stack(srv_jw *w, const char *key, const sparsify *sp, const float *wts,
                            size_t B, bool batched, size_t heads, size_t n, size_t m,
                            size_t *nnz_total)
{
    const size_t hs = heads ? heads : 1;
    bool ok = true;
    srv_jw_key(w, key);
    if (batched)
        srv_jw_arr_begin(w);
    for (size_t b = 0; b < B && ok; b++) {
        if (heads)
            srv_jw_arr_begin(w);
        for (size_t h = 0; h < hs && ok; h++)
            ok = write_coo(w, sp, wts + (b * hs + h) * n * m, n, m, nnz_total);
        if (heads)
            srv_jw_arr_end(w);
    }
    if (batched)
        srv_jw_arr_end(w);
    return ok;
}

/*
 * kernel: "softmax" (default), {"type": "linear", "feature_map": "elu"} or
 * {"type": "linear", "feature_map": "favor", "num_features": r, "seed": s}.
 * Sets *linear and *kern (feature_map NONE for softmax). Linear attention has
 * no scores, scale, softcap, bool mask, bias or pattern: those are refused by
 * name rather than ignored. FAVOR+ estimates the scaled_dot softmax, so it
 * takes score "scaled_dot" (and no other score).
 */
static bool read_kernel(const cJSON *root, bool *linear, attn_linear_kernel *kern, srv_err *e)
{
    static const char *const keys[] = {"type", "feature_map", "num_features", "seed", NULL};
    static const char *const incompatible[] = {"score",     "scale",   "softcap", "mask",
                                               "attn_bias", "pattern", NULL};
    const cJSON *kj = srv_json_member(root, "kernel");
    srv_ptr p, pk;
    *linear = false;
    memset(kern, 0, sizeof *kern);
    if (kj == NULL || cJSON_IsNull(kj) ||
        (cJSON_IsString(kj) && strcmp(kj->valuestring, "softmax") == 0))
        return true;
    hc_ptr_of(&p, "kernel");
    if (!cJSON_IsObject(kj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "kernel: expected \"softmax\" or {\"type\": \"linear\", "
                           "\"feature_map\": \"elu\" | \"favor\"}");
    if (!srv_json_check_keys(kj, &p, keys, e))
        return false;
    const cJSON *t = srv_json_member(kj, "type");
    srv_ptr_key(&pk, &p, "type");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, "linear") != 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s, "kernel.type: expected \"linear\"");
    const cJSON *fm = srv_json_member(kj, "feature_map");
    srv_ptr_key(&pk, &p, "feature_map");
    const bool favor = cJSON_IsString(fm) && strcmp(fm->valuestring, "favor") == 0;
    if (fm != NULL && !favor && !(cJSON_IsString(fm) && strcmp(fm->valuestring, "elu") == 0))
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "kernel.feature_map: expected \"elu\" (phi(x) = elu(x) + 1) or "
                           "\"favor\" (FAVOR+ random features, Performer)");
    if (favor) {
        long long r = FAVOR_DEFAULT_FEATURES, seed = 0;
        if (!srv_json_opt_int(kj, &p, "num_features", 1, ATTN_FAVOR_MAX_FEATURES, &r, e) ||
            !srv_json_opt_int(kj, &p, "seed", 0, (long long)9007199254740991LL, &seed, e))
            return false;
        kern->feature_map = ATTN_FEATURE_MAP_FAVOR;
        kern->num_features = (size_t)r;
        kern->seed = (uint64_t)seed;
    } else {
        for (const char *const *k = keys + 2; *k; k++)
            if (srv_json_member(kj, *k)) {
                srv_ptr_key(&pk, &p, *k);
                return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                                   "kernel.%s applies to the favor feature map only", *k);
            }
        kern->feature_map = ATTN_FEATURE_MAP_ELU;
    }
    for (const char *const *k = incompatible; *k; k++) {
        const cJSON *it = srv_json_member(root, *k);
        if (!it)
            continue;
        hc_ptr_of(&pk, *k);
        if (favor && strcmp(*k, "score") == 0) {
            if (cJSON_IsString(it) && strcmp(it->valuestring, "scaled_dot") == 0)
                continue;
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "score: the favor kernel estimates the \"scaled_dot\" softmax "
                               "exp(q.k / sqrt(d)); other scores have no random-feature form");
        }
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "%s does not apply to a linear kernel (it has no softmax "
                           "scores; causal and key_padding_mask do apply)",
                           *k);
    }
    *linear = true;
    return true;
}

/* The scratch a favor kernel of widths d, dv takes (the projection and its draw,
 * feature blocks, the state, and with weights all key features [m][r]) against
 * the element limit: 413 naming kernel.num_features when over. */
static bool check_favor_scratch(const attn_linear_kernel *kern, size_t d, size_t dv, size_t m,
                                bool weights, size_t max_el, srv_err *e)
{
    if (kern->feature_map != ATTN_FEATURE_MAP_FAVOR)
        return true;
    const size_t r = kern->num_features;
    size_t t = hc_add_sat(hc_mul3(r, hc_add_sat(hc_add_sat(d, dv), 1025), 1), hc_mul3(2, d, d));
    if (weights)
        t = hc_add_sat(t, hc_mul3(m, r, 1));
    if (t <= max_el)
        return true;
    srv_ptr pk, p;
    hc_ptr_of(&pk, "kernel");
    srv_ptr_key(&p, &pk, "num_features");
    return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, p.s,
                       "kernel.num_features: %zu random features need %zu numbers of scratch "
                       "here, over the limit of %zu (--max-elements); use fewer features%s",
                       r, t, max_el, weights ? " or drop \"weights\" from return" : "");
}

/* sparsify shrinks the answer, but the dense weights (count numbers) are computed
 * first: 413 naming sparsify when they exceed the element limit. */
static bool check_dense_weights(const sparsify *sp, size_t count, size_t max_el, srv_err *e)
{
    if (!sp->on || count <= max_el)
        return true;
    srv_ptr p;
    hc_ptr_of(&p, "sparsify");
    return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, p.s,
                       "sparsify: the dense weights (%zu numbers) are computed before they are "
                       "sparsified, over the limit of %zu (--max-elements); send fewer queries "
                       "or keys",
                       count, max_el);
}

/* meta.kernel: "softmax" or the kernel with its defaults resolved. */
static void write_kernel_meta(srv_jw *w, const attn_linear_kernel *kern)
{
    srv_jw_key(w, "kernel");
    if (kern->feature_map == ATTN_FEATURE_MAP_NONE) {
        srv_jw_str(w, "softmax");
        return;
    }
    srv_jw_obj_begin(w);
    srv_jw_key(w, "type");
    srv_jw_str(w, "linear");
    srv_jw_key(w, "feature_map");
    srv_jw_str(w, kern->feature_map == ATTN_FEATURE_MAP_FAVOR ? "favor" : "elu");
    if (kern->feature_map == ATTN_FEATURE_MAP_FAVOR) {
        srv_jw_key(w, "num_features");
        srv_jw_uint(w, kern->num_features);
        srv_jw_key(w, "seed");
        srv_jw_int(w, (long long)kern->seed);
    }
    srv_jw_obj_end(w);
}

/* --------------------------------------------------------- /v1/attention */

typedef struct score_weights {
    srv_tensor w, w1, w2, v;
} score_weights;

static void score_weights_free(score_weights *s)
{
    srv_tensor_free(&s->w);
    srv_tensor_free(&s->w1);
    srv_tensor_free(&s->w2);
    srv_tensor_free(&s->v);
}

/* Reads the weights the score needs and refuses the ones it does not use. */
static bool read_score_weights(const cJSON *root, attn_score score, size_t dq, size_t dk,
                               size_t max_el, score_weights *s, attn_params *p, srv_err *e)
{
    const char *need[4] = {NULL, NULL, NULL, NULL};
    switch (score) {
    case ATTN_SCORE_GENERAL:
        need[0] = "w";
        break;
    case ATTN_SCORE_ADDITIVE:
        need[0] = "w1";
        need[1] = "w2";
        need[2] = "v";
        break;
    case ATTN_SCORE_CONCAT:
        need[0] = "w";
        need[1] = "v";
        break;
    default:
        break;
    }
    static const char *const all[] = {"w", "w1", "w2", "v", NULL};
    for (size_t i = 0; all[i]; i++) {
        bool needed = false;
        for (size_t j = 0; need[j]; j++)
            needed |= strcmp(need[j], all[i]) == 0;
        const cJSON *it = srv_json_member(root, all[i]);
        srv_ptr pp;
        hc_ptr_of(&pp, all[i]);
        if (!needed && it)
            return srv_err_set(e, 400, SRV_CODE_INVALID, pp.s, "%s is not used by score \"%s\"",
                               all[i], attn_score_name(score));
        if (needed && !it)
            return srv_err_set(e, 400, SRV_CODE_INVALID, pp.s, "%s is required by score \"%s\"",
                               all[i], attn_score_name(score));
    }
    if (score == ATTN_SCORE_GENERAL) {
        size_t want[2] = {dq, dk};
        if (!hc_read_tensor(root, "w", 2, 2, true, max_el, &s->w, e) ||
            !hc_expect_shape(&s->w, "w", 2, want, e))
            return false;
        p->w = s->w.data;
    } else if (score == ATTN_SCORE_ADDITIVE) {
        if (!hc_read_tensor(root, "w1", 2, 2, true, max_el, &s->w1, e))
            return false;
        size_t da = s->w1.shape[0];
        size_t w1s[2] = {da, dq}, w2s[2] = {da, dk}, vs[1] = {da};
        if (!hc_expect_shape(&s->w1, "w1", 2, w1s, e) ||
            !hc_read_tensor(root, "w2", 2, 2, true, max_el, &s->w2, e) ||
            !hc_expect_shape(&s->w2, "w2", 2, w2s, e) ||
            !hc_read_tensor(root, "v", 1, 1, true, max_el, &s->v, e) ||
            !hc_expect_shape(&s->v, "v", 1, vs, e))
            return false;
        p->w1 = s->w1.data;
        p->w2 = s->w2.data;
        p->v = s->v.data;
        p->da = da;
    } else if (score == ATTN_SCORE_CONCAT) {
        if (!hc_read_tensor(root, "w", 2, 2, true, max_el, &s->w, e))
            return false;
        size_t da = s->w.shape[0];
        size_t ws[2] = {da, dq + dk}, vs[1] = {da};
        if (!hc_expect_shape(&s->w, "w", 2, ws, e) ||
            !hc_read_tensor(root, "v", 1, 1, true, max_el, &s->v, e) ||
            !hc_expect_shape(&s->v, "v", 1, vs, e))
            return false;
        p->w = s->w.data;
        p->v = s->v.data;
        p->da = da;
    }
    return true;
}

/*
 * positional for a block of `heads` heads with per-head widths dq, dk, dv:
 * reads it, checks what the score and kernel allow, and adds sinusoidal or
 * learned tables to the inputs (query, key, value as given; in self-attention
 * key and value are the query, so it gets the table once).
 */
static bool read_positional(const cJSON *root, hc_req *c, attn_score score, size_t heads,
                            size_t dq, size_t dk, size_t dv, bool linear, size_t max_el,
                            srv_err *e)
{
    static const char *const names[] = {"query", "key", "value", NULL};
    const size_t qo = c->batched ? 1 : 0;
    const size_t widths[3] = {c->query.shape[qo + 1], c->key.data ? c->key.shape[qo + 1] : 0,
                              c->value.data ? c->value.shape[qo + 1] : 0};
    srv_pos_dims d = {.heads = heads, .head_dim = dq, .head_dim_v = dv, .input_names = names,
                      .input_widths = widths, .softmax = !linear};
    srv_ptr p;
    if (!srv_pos_read(root, &d, max_el, &c->pos, e))
        return false;
    hc_ptr_of(&p, "positional");
    if (c->pos.type == SRV_POS_ROPE && dk % 2 != 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "positional: rope turns pairs of dimensions, but key rows have %zu "
                           "values (odd)",
                           dk);
    if (c->pos.type == SRV_POS_RELATIVE && score != ATTN_SCORE_SCALED_DOT &&
        score != ATTN_SCORE_DOT)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "positional: relative (Shaw) tables need score \"scaled_dot\" or "
                           "\"dot\"");
    srv_tensor *in[3] = {&c->query, &c->key, &c->value};
    const size_t rows[3] = {c->n, c->m, c->m};
    for (size_t i = 0; i < 3; i++)
        if (in[i]->data && srv_pos_adds_to(&c->pos, i) &&
            !srv_pos_add(&c->pos, in[i]->data, c->batch, rows[i], widths[i], names[i], e))
            return false;
    return true;
}

static const char *const attention_keys[] = {"query",
                                             "key",
                                             "value",
                                             "score",
                                             "scale",
                                             "softcap",
                                             "w",
                                             "w1",
                                             "w2",
                                             "v",
                                             "causal",
                                             "mask",
                                             "key_padding_mask",
                                             "attn_bias",
                                             "return",
                                             "tokens",
                                             "key_tokens",
                                             "encoding",
                                             "precision",
                                             "kernel",
                                             "pattern",
                                             "positional",
                                             "sparsify",
                                             "attn_mask",
                                             NULL};

void srv_h_attention(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    hc_req c;
    score_weights sw;
    attn_params p;
    sparsify spz;
    bool linear = false;
    attn_linear_kernel kern;
    float *out = NULL, *wts = NULL, *scores = NULL;
    uint8_t *allowed = NULL;
    size_t max_el = app->config.max_elements;
    size_t empty_rows = 0;
    float scale_used = 1;
    double engine_ms = 0;
    memset(&c, 0, sizeof c);
    memset(&sw, 0, sizeof sw);
    memset(&spz, 0, sizeof spz);
    memset(&p, 0, sizeof p);
    srv_ptr root_ptr;
    srv_ptr_root(&root_ptr);

    cJSON *root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root)
        goto fail;
    if (!srv_json_check_keys(root, &root_ptr, attention_keys, &e) || !hc_reject_attn_mask(root, &e))
        goto fail;

    /* score first: it decides which widths must agree */
    char score_name[32] = "scaled_dot";
    if (!srv_json_opt_string(root, &root_ptr, "score", score_name, sizeof score_name, &e))
        goto fail;
    if (attn_score_parse(score_name, &p.score) != ATTN_OK) {
        srv_ptr sp;
        hc_ptr_of(&sp, "score");
        srv_err_set(&e, 400, SRV_CODE_INVALID, sp.s,
                    "score: unknown \"%s\"; accepted: scaled_dot, dot, general, additive, "
                    "concat",
                    score_name);
        goto fail;
    }
    c.ret = HC_RET_OUTPUT | HC_RET_WEIGHTS;
    if (!hc_read_output_options(root, &c, &e) || !hc_read_causal(root, &c, &e) ||
        !hc_read_scale_softcap(root, &c, &e) ||
        !hc_read_return(root, HC_RET_OUTPUT | HC_RET_WEIGHTS | HC_RET_SCORES | HC_RET_PATTERN,
                        HC_RET_OUTPUT | HC_RET_WEIGHTS, &c, &e) ||
        !read_kernel(root, &linear, &kern, &e) || !hc_read_qkv(root, &c, false, max_el, &e) ||
        !hc_check_limits(app, c.n, "query", c.m, "key", 1, "", 1, "", &e))
        goto fail;
    if (linear && (c.ret & HC_RET_SCORES)) {
        srv_ptr rp2;
        hc_ptr_of(&rp2, "return");
        srv_err_set(&e, 400, SRV_CODE_INVALID, rp2.s,
                    "return: a linear kernel has no softmax scores; ask for output and weights");
        goto fail;
    }
    size_t qo = c.batched ? 1 : 0;
    size_t dq = c.query.shape[qo + 1], dk = c.key.shape[qo + 1], dv = c.value.shape[qo + 1];
    if (srv_json_member(root, "scale") && p.score != ATTN_SCORE_SCALED_DOT) {
        srv_ptr sp;
        hc_ptr_of(&sp, "scale");
        srv_err_set(&e, 400, SRV_CODE_INVALID, sp.s, "scale applies to score \"scaled_dot\" only");
        goto fail;
    }
    if ((p.score == ATTN_SCORE_SCALED_DOT || p.score == ATTN_SCORE_DOT) && dq != dk) {
        srv_ptr sp;
        hc_ptr_of(&sp, "key");
        srv_err_set(&e, 400, SRV_CODE_INVALID, sp.s,
                    "key: rows have %zu values, query rows have %zu; score \"%s\" needs equal "
                    "widths (use \"general\", \"additive\" or \"concat\" for different ones)",
                    dk, dq, score_name);
        goto fail;
    }
    if (!read_score_weights(root, p.score, dq, dk, max_el, &sw, &p, &e) ||
        !hc_read_masks(root, &c, 0, max_el, &e) || !hc_read_pattern(root, &c, &e) ||
        !read_sparsify(root, &spz, &e) || !hc_read_tokens(root, "tokens", c.n, &c.tokens, &e) ||
        !hc_read_tokens(root, "key_tokens", c.m, &c.key_tokens, &e))
        goto fail;
    if (!read_positional(root, &c, p.score, 1, dq, dk, dv, linear, max_el, &e))
        goto fail;

    size_t B = c.batch, n = c.n, m = c.m;
    /* sparsify implies weights, returned as COO triplets */
    if (spz.on)
        c.ret |= HC_RET_WEIGHTS;
    bool want_o = c.ret & HC_RET_OUTPUT, want_w = c.ret & HC_RET_WEIGHTS,
         want_s = c.ret & HC_RET_SCORES;
    size_t total = 0;
    if (want_o)
        total = hc_add_sat(total, hc_mul3(B, n, dv));
    if (want_w)
        total = hc_add_sat(total, spz.on ? sparsify_elements(&spz, B, n, m) : hc_mul3(B, n, m));
    if (want_s)
        total = hc_add_sat(total, hc_mul3(B, n, m));
    bool want_p = c.ret & HC_RET_PATTERN;
    if (want_p)
        total = hc_add_sat(total, hc_mul3(B, n, m));
    if (!hc_check_elements(total, max_el,
                           "drop \"weights\"/\"scores\" from return, or send fewer queries or keys",
                           &e) ||
        !check_favor_scratch(&kern, dq, dv, m, want_w, max_el, &e) ||
        !check_dense_weights(&spz, hc_mul3(B, n, m), max_el, &e))
        goto fail;

    bool oom = false;
    out = hc_alloc_floats(B * n * dv, want_o, &oom);
    wts = hc_alloc_floats(B * n * m, want_w, &oom);
    scores = hc_alloc_floats(B * n * m, want_s, &oom);
    if (want_p && B * n * m > 0 && !(allowed = malloc(B * n * m)))
        oom = true;
    attn_ws *ws = srv_thread_ws();
    if (oom || !ws) {
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "",
                    "out of memory for this request; try a smaller one");
        goto fail;
    }
    p.scale = (float)c.scale;
    p.softcap = (float)c.softcap;
    if (!srv_pos_apply(&c.pos, n, m, &p, &e))
        goto fail;
    double te = srv_now_ms();
    for (size_t b = 0; b < B; b++) {
        attn_outputs o = {
            want_o ? out + b * n * dv : NULL,
            want_w ? wts + b * n * m : NULL,
            want_s ? scores + b * n * m : NULL,
        };
        attn_result r;
        attn_status st;
        p.masks = hc_masks_for(&c, b, 0);
        if (linear) {
            st = attn_linear_kernel_forward(ws, &kern, c.causal, n, m, dq, dv,
                                            c.query.data + b * n * dq, c.key.data + b * m * dk,
                                            c.value.data + b * m * dv, p.masks.key_padding,
                                            o.output, o.weights, &r);
        } else {
            st = attn_forward(ws, &p, n, m, dq, dk, dv, c.query.data + b * n * dq,
                              c.key.data + b * m * dk, c.value.data + b * m * dv, &o, &r);
        }
        if (st != ATTN_OK) {
            hc_engine_error(st, &e);
            goto fail;
        }
        empty_rows += r.n_empty_rows;
        scale_used = r.scale;
        if (want_p && (st = hc_allowed_for(&c, b, allowed + b * n * m)) != ATTN_OK) {
            hc_engine_error(st, &e);
            goto fail;
        }
    }
    engine_ms = srv_now_ms() - te;

    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_buf_reserve(&b, 256 + total * 12);
    srv_jw_init(&w, &b, c.precision, c.base64);
    srv_jw_obj_begin(&w);
    if (want_o)
        hc_write_tensor(&w, "output", out, hc_oshape(&c, 0, n, dv));
    size_t nnz = 0;
    if (want_w && spz.on) {
        if (!write_coo_stack(&w, "weights", &spz, wts, B, c.batched, 0, n, m, &nnz)) {
            srv_buf_free(&b);
            srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "",
                        "out of memory for this request; try a smaller one");
            goto fail;
        }
    } else if (want_w) {
        hc_write_tensor(&w, "weights", wts, hc_oshape(&c, 0, n, m));
    }
    if (want_s)
        hc_write_tensor(&w, "scores", scores, hc_oshape(&c, 0, n, m));
    if (want_p) {
        hc_shape sp = hc_oshape(&c, 0, n, m);
        srv_jw_key(&w, "pattern");
        srv_jw_btensor(&w, allowed, sp.rank, sp.d);
    }
    hc_write_tokens(&w, &c);
    srv_jw_key(&w, "meta");
    srv_jw_obj_begin(&w);
    write_kernel_meta(&w, &kern);
    srv_jw_key(&w, "score"); /* favor estimates the scaled_dot softmax; elu has no score */
    if (kern.feature_map == ATTN_FEATURE_MAP_ELU)
        srv_jw_null(&w);
    else
        srv_jw_str(&w, attn_score_name(p.score));
    srv_jw_key(&w, "scale");
    hc_meta_float(&w, scale_used);
    hc_write_common_meta(&w, &c);
    if (spz.on) {
        srv_jw_key(&w, "sparsify");
        srv_jw_cjson(&w, spz.json);
        srv_jw_key(&w, "nnz");
        srv_jw_uint(&w, nnz);
    }
    srv_jw_key(&w, "shapes");
    srv_jw_obj_begin(&w);
    hc_shape_json(&w, "query", c.query.shape, c.query.rank);
    hc_shape_json(&w, "key", c.key.shape, c.key.rank);
    hc_shape_json(&w, "value", c.value.shape, c.value.rank);
    hc_shape so = hc_oshape(&c, 0, n, dv), sm = hc_oshape(&c, 0, n, m);
    hc_shape_json(&w, "output", so.d, so.rank);
    hc_shape_json(&w, "weights", sm.d, sm.rank);
    srv_jw_obj_end(&w);
    hc_finish_json(res, &w, empty_rows, engine_ms);
    goto done;

fail:
    srv_respond_error(res, &e);
done:
    free(allowed);
    free(out);
    free(wts);
    free(scores);
    score_weights_free(&sw);
    hc_req_free(&c);
    srv_json_delete(root);
}

/* ------------------------------------------------- /v1/multihead_attention */

typedef struct mha_state {
    srv_tensor in_proj, qw, kw, vw, in_bias, out_w, out_b, bias_k, bias_v;
    float *seed_store;
} mha_state;

static void mha_state_free(mha_state *s)
{
    srv_tensor *all[] = {&s->in_proj, &s->qw,    &s->kw,     &s->vw,    &s->in_bias,
                         &s->out_w,   &s->out_b, &s->bias_k, &s->bias_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        srv_tensor_free(all[i]);
    attn_free_buffer(s->seed_store);
    s->seed_store = NULL;
}

static const char *const sd_keys[] = {
    "in_proj_weight",  "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
    "out_proj.weight", "out_proj.bias", "bias_k",        "bias_v",        NULL};

/* weights: an nn.MultiheadAttention state_dict. bias_flag: -1 unspecified, 0/1 given. */
static bool read_state_dict(const cJSON *sd, size_t E, size_t Ekv, size_t kdim, size_t vdim,
                            int bias_flag, size_t max_el, mha_state *s, attn_mha_weights *w,
                            bool *has_bias, bool *has_bias_kv, srv_err *e)
{
    srv_ptr sdp;
    hc_ptr_of(&sdp, "weights");
    if (!cJSON_IsObject(sd))
        return srv_err_set(e, 400, SRV_CODE_INVALID, sdp.s,
                           "weights: expected an nn.MultiheadAttention state_dict object");
    if (!srv_json_check_keys(sd, &sdp, sd_keys, e))
        return false;
    bool same = kdim == E && vdim == E;
    const cJSON *inp = srv_json_member(sd, "in_proj_weight");
    if (inp) {
        if (!same) {
            srv_ptr p;
            srv_ptr_key(&p, &sdp, "in_proj_weight");
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights.in_proj_weight needs kdim = vdim = embed_dim (%zu); "
                               "key/value widths are %zu/%zu: send q_proj_weight, "
                               "k_proj_weight and v_proj_weight",
                               E, kdim, vdim);
        }
        if (!hc_sd_read(sd, &sdp, "in_proj_weight", 2, E + 2 * Ekv, E, false, max_el, &s->in_proj,
                        e))
            return false;
        for (const char *const *k = sd_keys + 1; k < sd_keys + 4; k++)
            if (srv_json_member(sd, *k)) {
                srv_ptr p;
                srv_ptr_key(&p, &sdp, *k);
                return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                                   "weights: send either in_proj_weight or "
                                   "q/k/v_proj_weight, not both");
            }
        w->q_proj = s->in_proj.data;
        w->k_proj = s->in_proj.data + E * E;
        w->v_proj = s->in_proj.data + (E + Ekv) * E;
    } else {
        const char *missing =
            !srv_json_member(sd, "q_proj_weight")   ? "q_proj_weight"
            : !srv_json_member(sd, "k_proj_weight") ? "k_proj_weight"
            : !srv_json_member(sd, "v_proj_weight") ? "v_proj_weight"
                                                                     : NULL;
        if (missing) {
            srv_ptr p;
            srv_ptr_key(&p, &sdp, same ? "in_proj_weight" : missing);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.%s is required",
                               same ? "in_proj_weight" : missing);
        }
        if (!hc_sd_read(sd, &sdp, "q_proj_weight", 2, E, E, false, max_el, &s->qw, e) ||
            !hc_sd_read(sd, &sdp, "k_proj_weight", 2, Ekv, kdim, false, max_el, &s->kw, e) ||
            !hc_sd_read(sd, &sdp, "v_proj_weight", 2, Ekv, vdim, false, max_el, &s->vw, e))
            return false;
        w->q_proj = s->qw.data;
        w->k_proj = s->kw.data;
        w->v_proj = s->vw.data;
    }
    if (!srv_json_member(sd, "out_proj.weight")) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, "out_proj.weight");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.out_proj.weight is required");
    }
    if (!hc_sd_read(sd, &sdp, "out_proj.weight", 2, E, E, false, max_el, &s->out_w, e) ||
        !hc_sd_read(sd, &sdp, "in_proj_bias", 1, E + 2 * Ekv, 0, false, max_el, &s->in_bias, e) ||
        !hc_sd_read(sd, &sdp, "out_proj.bias", 1, E, 0, false, max_el, &s->out_b, e) ||
        !hc_sd_read(sd, &sdp, "bias_k", 0, Ekv, 0, true, max_el, &s->bias_k, e) ||
        !hc_sd_read(sd, &sdp, "bias_v", 0, Ekv, 0, true, max_el, &s->bias_v, e))
        return false;
    w->out_proj = s->out_w.data;
    bool ib = s->in_bias.data != NULL, ob = s->out_b.data != NULL;
    if (bias_flag == 1 && (!ib || !ob)) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, ib ? "out_proj.bias" : "in_proj_bias");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.%s is missing but bias is true",
                           ib ? "out_proj.bias" : "in_proj_bias");
    }
    if (bias_flag == 0 && (ib || ob)) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, ib ? "in_proj_bias" : "out_proj.bias");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.%s is given but bias is false",
                           ib ? "in_proj_bias" : "out_proj.bias");
    }
    if (ib) {
        w->q_bias = s->in_bias.data;
        w->k_bias = s->in_bias.data + E;
        w->v_bias = s->in_bias.data + E + Ekv;
    }
    w->out_bias = s->out_b.data;
    if ((s->bias_k.data != NULL) != (s->bias_v.data != NULL)) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, s->bias_k.data ? "bias_v" : "bias_k");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "weights: bias_k and bias_v come together");
    }
    w->bias_k = s->bias_k.data;
    w->bias_v = s->bias_v.data;
    *has_bias = ib || ob;
    *has_bias_kv = s->bias_k.data != NULL;
    return true;
}

static const char *const mha_keys[] = {"query",
                                       "key",
                                       "value",
                                       "num_heads",
                                       "num_kv_heads",
                                       "weights",
                                       "seed",
                                       "bias",
                                       "add_bias_kv",
                                       "add_zero_attn",
                                       "scale",
                                       "softcap",
                                       "causal",
                                       "mask",
                                       "key_padding_mask",
                                       "attn_bias",
                                       "average_weights",
                                       "return",
                                       "tokens",
                                       "key_tokens",
                                       "encoding",
                                       "precision",
                                       "kernel",
                                       "pattern",
                                       "positional",
                                       "sparsify",
                                       "attn_mask",
                                       NULL};

void srv_h_mha(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    hc_req c;
    mha_state s;
    attn_mha_weights w;
    attn_mha_config cfg;
    size_t max_el = app->config.max_elements;
    float *bufs[8] = {NULL};
    double engine_ms = 0;
    float scale_used = 0;
    bool linear = false;
    attn_linear_kernel kern;
    sparsify spz;
    memset(&spz, 0, sizeof spz);
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    memset(&w, 0, sizeof w);
    memset(&cfg, 0, sizeof cfg);
    srv_ptr rp;
    srv_ptr_root(&rp);

    cJSON *root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root)
        goto fail;
    if (!srv_json_check_keys(root, &rp, mha_keys, &e) || !hc_reject_attn_mask(root, &e))
        goto fail;
    bool avg = false;
    if (!srv_json_opt_bool(root, &rp, "average_weights", &avg, &e))
        goto fail;
    if (!hc_read_output_options(root, &c, &e) || !hc_read_causal(root, &c, &e) ||
        !hc_read_scale_softcap(root, &c, &e) ||
        !hc_read_return(root, 0xffu,
                        HC_RET_OUTPUT | HC_RET_WEIGHTS | (avg ? HC_RET_WEIGHTS_AVG : 0), &c, &e) ||
        !read_kernel(root, &linear, &kern, &e) || !read_sparsify(root, &spz, &e) ||
        !hc_read_qkv(root, &c, true, max_el, &e))
        goto fail;
    if (linear && (c.ret & HC_RET_SCORES)) {
        srv_ptr p;
        hc_ptr_of(&p, "return");
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "return: a linear kernel has no softmax scores; ask for output and weights");
        goto fail;
    }
    /* sparsify implies weights, returned as COO triplets per head */
    if (spz.on)
        c.ret |= HC_RET_WEIGHTS;
    if (avg)
        c.ret |= HC_RET_WEIGHTS_AVG;
    size_t qo = c.batched ? 1 : 0;
    size_t E = c.query.shape[qo + 1];
    size_t kdim = c.key.data ? c.key.shape[qo + 1] : E;
    size_t vdim = c.value.data ? c.value.shape[qo + 1] : E;

    srv_ptr hp;
    hc_ptr_of(&hp, "num_heads");
    if (!srv_json_member(root, "num_heads")) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, hp.s, "num_heads is required");
        goto fail;
    }
    long long H = 0, Hkv = 0, seed = 0;
    if (!srv_json_opt_int(root, &rp, "num_heads", 1, 4096, &H, &e))
        goto fail;
    if (E % (size_t)H != 0) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, hp.s,
                    "num_heads: %lld does not divide the embedding width %zu", H, E);
        goto fail;
    }
    Hkv = H;
    if (!srv_json_opt_int(root, &rp, "num_kv_heads", 1, 4096, &Hkv, &e))
        goto fail;
    if (H % Hkv != 0) {
        srv_ptr p;
        hc_ptr_of(&p, "num_kv_heads");
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "num_kv_heads: %lld does not divide num_heads %lld", Hkv, H);
        goto fail;
    }
    size_t hd = E / (size_t)H, Ekv = (size_t)Hkv * hd;
    if (!hc_check_limits(app, c.n, "query", c.m, c.key.data ? "key" : "query", (size_t)H,
                         "num_heads", 1, "", &e))
        goto fail;

    int bias_flag = -1;
    if (srv_json_member(root, "bias")) {
        bool bf = true;
        if (!srv_json_opt_bool(root, &rp, "bias", &bf, &e))
            goto fail;
        bias_flag = bf;
    }
    bool add_bias_kv = false, zero_attn = false, has_bias = false, has_bias_kv = false;
    if (!srv_json_opt_bool(root, &rp, "add_bias_kv", &add_bias_kv, &e) ||
        !srv_json_opt_bool(root, &rp, "add_zero_attn", &zero_attn, &e))
        goto fail;

    cfg.embed_dim = E;
    cfg.num_heads = (size_t)H;
    cfg.num_kv_heads = (size_t)Hkv;
    cfg.kdim = kdim;
    cfg.vdim = vdim;
    cfg.add_zero_attn = zero_attn;
    cfg.attn.score = ATTN_SCORE_SCALED_DOT;
    cfg.attn.scale = (float)c.scale;
    cfg.attn.softcap = (float)c.softcap;
    cfg.kernel = kern;

    const cJSON *sd = srv_json_member(root, "weights");
    bool seeded = sd == NULL;
    if (sd) {
        srv_ptr p;
        if (srv_json_member(root, "seed")) {
            hc_ptr_of(&p, "seed");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                        "seed: send either weights or seed, not both");
            goto fail;
        }
        if (srv_json_member(root, "add_bias_kv")) {
            hc_ptr_of(&p, "add_bias_kv");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                        "add_bias_kv applies to seeded weights; with a state_dict, "
                        "bias_k and bias_v decide");
            goto fail;
        }
        if (!read_state_dict(sd, E, Ekv, kdim, vdim, bias_flag, max_el, &s, &w, &has_bias,
                             &has_bias_kv, &e))
            goto fail;
    } else {
        if (!srv_json_opt_int(root, &rp, "seed", 0, (long long)9007199254740991LL, &seed, &e))
            goto fail;
        has_bias = bias_flag != 0;
        has_bias_kv = add_bias_kv;
        attn_status st =
            attn_mha_init_seeded(&cfg, (uint64_t)seed, has_bias, has_bias_kv, &w, &s.seed_store);
        if (st != ATTN_OK) {
            hc_engine_error(st, &e);
            goto fail;
        }
    }
    if (!hc_read_masks(root, &c, (size_t)H, max_el, &e) || !hc_read_pattern(root, &c, &e) ||
        !hc_read_tokens(root, "tokens", c.n, &c.tokens, &e) ||
        !hc_read_tokens(root, "key_tokens", c.m, &c.key_tokens, &e) ||
        !read_positional(root, &c, ATTN_SCORE_SCALED_DOT, (size_t)H, hd, hd, hd, linear, max_el,
                         &e) ||
        !srv_pos_apply(&c.pos, c.n, c.m, &cfg.attn, &e))
        goto fail;

    size_t B = c.batch, n = c.n, m = c.m;
    size_t mp = attn_mha_keys(&cfg, &w, m);
    /* sizes of the eight results, in hc_ret_names order */
    size_t Hs = (size_t)H;
    size_t per[8] = {hc_mul3(n, E, 1),   hc_mul3(Hs, n, mp), hc_mul3(Hs, n, mp),
                     hc_mul3(n, mp, 1),  hc_mul3(Hs, n, hd), hc_mul3(n, E, 1),
                     hc_mul3(m, Ekv, 1), hc_mul3(m, Ekv, 1)};
    size_t total = 0;
    for (int i = 0; i < 8; i++) {
        if (!(c.ret & (1u << i)))
            continue;
        size_t el = hc_mul3(B, per[i], 1);
        if (spz.on && i == 1) /* weights and weights_avg go out as COO */
            el = sparsify_elements(&spz, hc_mul3(B, Hs, 1), n, mp);
        else if (spz.on && i == 3)
            el = sparsify_elements(&spz, B, n, mp);
        total = hc_add_sat(total, el);
    }
    if (!hc_check_elements(total, max_el,
                           "drop \"weights\" (or other per-head results) from return, use fewer "
                           "heads, or send fewer tokens",
                           &e) ||
        !check_favor_scratch(&kern, hd, hd, mp, c.ret & HC_RET_WEIGHTS, max_el, &e) ||
        !check_dense_weights(&spz, hc_mul3(B, per[1], 1), max_el, &e))
        goto fail;
    bool oom = false;
    for (int i = 0; i < 8; i++)
        bufs[i] = hc_alloc_floats(B * per[i], c.ret & (1u << i), &oom);
    attn_ws *ws = srv_thread_ws();
    if (oom || !ws) {
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "",
                    "out of memory for this request; try a smaller one");
        goto fail;
    }
    size_t empty_rows = 0;
    double te = srv_now_ms();
    for (size_t b = 0; b < B; b++) {
        attn_mha_outputs o;
        float *slot[8];
        for (int i = 0; i < 8; i++)
            slot[i] = bufs[i] ? bufs[i] + b * per[i] : NULL;
        o.output = slot[0];
        o.weights = slot[1];
        o.scores = slot[2];
        o.weights_avg = slot[3];
        o.head_outputs = slot[4];
        o.q = slot[5];
        o.k = slot[6];
        o.v = slot[7];
        cfg.attn.masks = hc_masks_for(&c, b, (size_t)H);
        const float *q = c.query.data + b * n * E;
        const float *k = c.key.data ? c.key.data + b * m * kdim : q;
        const float *v = c.value.data ? c.value.data + b * m * vdim : q;
        attn_result r;
        attn_status st = attn_mha_forward(ws, &cfg, &w, n, m, q, k, v, &o, &r);
        if (st != ATTN_OK) {
            hc_engine_error(st, &e);
            goto fail;
        }
        empty_rows += r.n_empty_rows;
        scale_used = r.scale;
    }
    engine_ms = srv_now_ms() - te;

    srv_buf bb;
    srv_jw jw;
    srv_buf_init(&bb);
    srv_buf_reserve(&bb, 512 + total * 12);
    srv_jw_init(&jw, &bb, c.precision, c.base64);
    srv_jw_obj_begin(&jw);
    hc_shape shapes[8] = {hc_oshape(&c, 0, n, E),          hc_oshape(&c, (size_t)H, n, mp),
                          hc_oshape(&c, (size_t)H, n, mp), hc_oshape(&c, 0, n, mp),
                          hc_oshape(&c, (size_t)H, n, hd), hc_oshape(&c, 0, n, E),
                          hc_oshape(&c, 0, m, Ekv),        hc_oshape(&c, 0, m, Ekv)};
    /* output order: the contract's, not the bit order */
    static const int order[8] = {0, 1, 3, 4, 2, 5, 6, 7};
    size_t nnz = 0;
    for (int oi = 0; oi < 8; oi++) {
        int i = order[oi];
        if (!bufs[i])
            continue;
        if (spz.on && (i == 1 || i == 3)) {
            if (!write_coo_stack(&jw, hc_ret_names[i], &spz, bufs[i], B, c.batched, i == 1 ? Hs : 0,
                                 n, mp, &nnz)) {
                srv_buf_free(&bb);
                srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "",
                            "out of memory for this request; try a smaller one");
                goto fail;
            }
        } else {
            hc_write_tensor(&jw, hc_ret_names[i], bufs[i], shapes[i]);
        }
    }
    hc_write_tokens(&jw, &c);
    srv_jw_key(&jw, "meta");
    srv_jw_obj_begin(&jw);
    srv_jw_key(&jw, "embed_dim");
    srv_jw_uint(&jw, E);
    srv_jw_key(&jw, "num_heads");
    srv_jw_uint(&jw, (size_t)H);
    srv_jw_key(&jw, "num_kv_heads");
    srv_jw_uint(&jw, (size_t)Hkv);
    srv_jw_key(&jw, "head_dim");
    srv_jw_uint(&jw, hd);
    srv_jw_key(&jw, "kdim");
    srv_jw_uint(&jw, kdim);
    srv_jw_key(&jw, "vdim");
    srv_jw_uint(&jw, vdim);
    srv_jw_key(&jw, "self_attention");
    srv_jw_bool(&jw, c.key.data == NULL);
    srv_jw_key(&jw, "key_length");
    srv_jw_uint(&jw, mp);
    srv_jw_key(&jw, "scale");
    hc_meta_float(&jw, scale_used);
    write_kernel_meta(&jw, &kern);
    srv_jw_key(&jw, "bias");
    srv_jw_bool(&jw, has_bias);
    srv_jw_key(&jw, "add_bias_kv");
    srv_jw_bool(&jw, has_bias_kv);
    srv_jw_key(&jw, "add_zero_attn");
    srv_jw_bool(&jw, zero_attn);
    srv_jw_key(&jw, "weights_source");
    srv_jw_str(&jw, seeded ? "seed" : "state_dict");
    srv_jw_key(&jw, "seed");
    if (seeded)
        srv_jw_int(&jw, seed);
    else
        srv_jw_null(&jw);
    hc_write_common_meta(&jw, &c);
    if (spz.on) {
        srv_jw_key(&jw, "sparsify");
        srv_jw_cjson(&jw, spz.json);
        srv_jw_key(&jw, "nnz");
        srv_jw_uint(&jw, nnz);
    }
    srv_jw_key(&jw, "shapes");
    srv_jw_obj_begin(&jw);
    hc_shape_json(&jw, "query", c.query.shape, c.query.rank);
    if (c.key.data) {
        hc_shape_json(&jw, "key", c.key.shape, c.key.rank);
        hc_shape_json(&jw, "value", c.value.shape, c.value.rank);
    } else {
        hc_shape_json(&jw, "key", c.query.shape, c.query.rank);
        hc_shape_json(&jw, "value", c.query.shape, c.query.rank);
    }
    hc_shape_json(&jw, "output", shapes[0].d, shapes[0].rank);
    hc_shape_json(&jw, "weights", shapes[1].d, shapes[1].rank);
    srv_jw_obj_end(&jw);
    hc_finish_json(res, &jw, empty_rows, engine_ms);
    goto done;

fail:
    srv_respond_error(res, &e);
done:
    for (int i = 0; i < 8; i++)
        free(bufs[i]);
    mha_state_free(&s);
    hc_req_free(&c);
    srv_json_delete(root);
}
