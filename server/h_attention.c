/* h_attention.c - POST /v1/attention and /v1/multihead_attention: parse, validate, compute, render. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "srv.h"

/* ------------------------------------------------------------------ parts
 * What both endpoints share: tensors with an optional batch dimension, masks,
 * output options. Each reader fills its part or sets e and returns false. */

enum { RET_OUTPUT = 1u << 0, RET_WEIGHTS = 1u << 1, RET_SCORES = 1u << 2,
       RET_WEIGHTS_AVG = 1u << 3, RET_HEAD_OUTPUTS = 1u << 4, RET_Q = 1u << 5,
       RET_K = 1u << 6, RET_V = 1u << 7, RET_PATTERN = 1u << 8 };

static const char *const ret_names[] = {"output", "weights", "scores", "weights_avg",
                                        "head_outputs", "q", "k", "v", "pattern", NULL};

typedef struct req_common {
    srv_tensor query, key, value;
    srv_btensor mask, kpm;
    srv_tensor bias;
    size_t batch;  /* B; 1 when unbatched */
    bool batched;  /* inputs carried a leading batch dimension */
    size_t n, m;   /* query rows, key rows */
    attn_causal causal;
    double scale;   /* 0: default */
    double softcap; /* 0: off */
    unsigned ret;
    int precision;
    bool base64;
    const cJSON *tokens, *key_tokens;
    char masks_given[4][20];
    size_t n_masks_given;
    attn_pattern pat; /* when has_pattern */
    bool has_pattern;
    size_t *globals;  /* pat.global_tokens storage */
    const cJSON *pattern_json;
} req_common;

static void common_free(req_common *c)
{
    srv_tensor_free(&c->query);
    srv_tensor_free(&c->key);
    srv_tensor_free(&c->value);
    srv_btensor_free(&c->mask);
    srv_btensor_free(&c->kpm);
    srv_tensor_free(&c->bias);
    free(c->globals);
}

static bool member(const cJSON *root, const char *key, const cJSON **out)
{
    *out = cJSON_GetObjectItemCaseSensitive(root, key);
    return *out != NULL;
}

static void ptr_of(srv_ptr *p, const char *key)
{
    srv_ptr root;
    srv_ptr_root(&root);
    srv_ptr_key(p, &root, key);
}

/* Members the next feature set will bring: named, so users get a clear answer. */
static bool reject_reserved(const cJSON *root, bool linear_ok, srv_err *e)
{
    static const char *const reserved[] = {"positional", NULL};
    const cJSON *it;
    srv_ptr p;
    for (size_t i = 0; reserved[i]; i++) {
        if (member(root, reserved[i], &it)) {
            ptr_of(&p, reserved[i]);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "%s is not supported yet by this server", reserved[i]);
        }
    }
    if (!linear_ok && member(root, "kernel", &it) &&
        !(cJSON_IsString(it) && strcmp(it->valuestring, "softmax") == 0)) {
        ptr_of(&p, "kernel");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "kernel: linear kernels are not supported yet on this route "
                           "(only \"softmax\"; /v1/attention has them)");
    }
    if (member(root, "attn_mask", &it)) {
        ptr_of(&p, "attn_mask");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "attn_mask is ambiguous: send mask (bool, true = may attend) "
                           "or attn_bias (float, added to scores)");
    }
    return true;
}

static bool read_output_options(const cJSON *root, req_common *c, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    if (member(root, "encoding", &it)) {
        ptr_of(&p, "encoding");
        if (!cJSON_IsString(it) ||
            (strcmp(it->valuestring, "json") != 0 && strcmp(it->valuestring, "base64") != 0))
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "encoding: expected \"json\" or \"base64\"");
        c->base64 = strcmp(it->valuestring, "base64") == 0;
    }
    long long prec = 0;
    srv_ptr_root(&p);
    if (!srv_json_opt_int(root, &p, "precision", 1, 9, &prec, e))
        return false;
    c->precision = (int)prec;
    return true;
}

static bool read_causal(const cJSON *root, req_common *c, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    c->causal = ATTN_CAUSAL_NONE;
    if (!member(root, "causal", &it))
        return true;
    ptr_of(&p, "causal");
    if (cJSON_IsBool(it)) {
        c->causal = cJSON_IsTrue(it) ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
    } else if (cJSON_IsString(it) && strcmp(it->valuestring, "none") == 0) {
        c->causal = ATTN_CAUSAL_NONE;
    } else if (cJSON_IsString(it) && strcmp(it->valuestring, "top_left") == 0) {
        c->causal = ATTN_CAUSAL_TOP_LEFT;
    } else if (cJSON_IsString(it) && strcmp(it->valuestring, "bottom_right") == 0) {
        c->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    } else {
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "causal: expected true, false, \"none\", \"top_left\" or \"bottom_right\"");
    }
    return true;
}

/* return: a list of names from allowed_mask; sets c->ret (def when absent). */
static bool read_return(const cJSON *root, unsigned allowed_mask, unsigned def, req_common *c,
                        srv_err *e)
{
    const cJSON *it;
    srv_ptr p, pi;
    c->ret = def;
    if (!member(root, "return", &it))
        return true;
    ptr_of(&p, "return");
    if (!cJSON_IsArray(it))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "return: expected a list of names");
    c->ret = 0;
    size_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        srv_ptr_index(&pi, &p, i);
        unsigned bit = 0;
        if (cJSON_IsString(x))
            for (size_t k = 0; ret_names[k]; k++)
                if (strcmp(x->valuestring, ret_names[k]) == 0 && (allowed_mask & (1u << k)))
                    bit = 1u << k;
        if (!bit) {
            char list[160] = "";
            for (size_t k = 0; ret_names[k]; k++)
                if (allowed_mask & (1u << k)) {
                    if (list[0])
                        strcat(list, ", ");
                    strcat(list, ret_names[k]);
                }
            return srv_err_set(e, 400, SRV_CODE_INVALID, pi.s,
                               "return: unknown item; accepted: %s", list);
        }
        c->ret |= bit;
    }
    return true;
}

static bool read_tokens(const cJSON *root, const char *key, size_t want, const cJSON **out,
                        srv_err *e)
{
    const cJSON *it;
    srv_ptr p, pi;
    *out = NULL;
    if (!member(root, key, &it))
        return true;
    ptr_of(&p, key);
    if (!cJSON_IsArray(it))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: expected a list of strings", key);
    size_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        if (!cJSON_IsString(x)) {
            srv_ptr_index(&pi, &p, i);
            return srv_err_set(e, 400, SRV_CODE_INVALID, pi.s, "%s: expected a string", key);
        }
    }
    if (i != want)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: has %zu labels, expected %zu",
                           key, i, want);
    *out = it;
    return true;
}

static bool read_tensor_member(const cJSON *root, const char *key, size_t rmin, size_t rmax,
                               bool required, size_t max_el, srv_tensor *t, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    ptr_of(&p, key);
    if (!member(root, key, &it)) {
        if (required)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s is required", key);
        return true;
    }
    return srv_json_read_tensor(it, &p, key, rmin, rmax, false, max_el, t, e);
}

static const char *dims_str(const size_t *shape, size_t rank, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < rank && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "[%zu]", shape[i]);
    return buf;
}

/* Checks t (already read) has exactly the given shape. */
static bool expect_shape(const srv_tensor *t, const char *key, size_t rank, const size_t *shape,
                         srv_err *e)
{
    bool ok = t->rank == rank;
    for (size_t i = 0; ok && i < rank; i++)
        ok = t->shape[i] == shape[i];
    if (ok)
        return true;
    char want[96], got[96];
    srv_ptr p;
    ptr_of(&p, key);
    return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: shape %s, expected %s", key,
                       dims_str(t->shape, t->rank, got, sizeof got),
                       dims_str(shape, rank, want, sizeof want));
}

/*
 * query/key/value with the batch rule: all rank 2, or all rank 3 with one B.
 * key/value may be absent when self_ok (self-attention: they alias query).
 */
static bool read_qkv(const cJSON *root, req_common *c, bool self_ok, size_t max_el, srv_err *e)
{
    srv_ptr p;
    if (!read_tensor_member(root, "query", 2, 3, true, max_el, &c->query, e))
        return false;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "key");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "value");
    if (self_ok && !k && !v) {
        /* self-attention: key and value are the query */
    } else {
        if (self_ok && (!k || !v)) {
            ptr_of(&p, k ? "value" : "key");
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "%s is required when %s is given (omit both for self-attention)",
                               k ? "value" : "key", k ? "key" : "value");
        }
        if (!read_tensor_member(root, "key", 2, 3, true, max_el, &c->key, e) ||
            !read_tensor_member(root, "value", 2, 3, true, max_el, &c->value, e))
            return false;
    }
    c->batched = c->query.rank == 3;
    c->batch = c->batched ? c->query.shape[0] : 1;
    size_t qo = c->batched ? 1 : 0;
    c->n = c->query.shape[qo];
    c->m = c->key.data ? c->key.shape[qo] : c->n;
    const srv_tensor *kv[2] = {&c->key, &c->value};
    const char *kvn[2] = {"key", "value"};
    for (int i = 0; i < 2; i++) {
        if (!kv[i]->data)
            continue;
        ptr_of(&p, kvn[i]);
        if (kv[i]->rank != c->query.rank)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "%s: %zu-D but query is %zu-D (a batch dimension must be on all "
                               "of query, key and value)",
                               kvn[i], kv[i]->rank, c->query.rank);
        if (c->batched && kv[i]->shape[0] != c->batch)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "%s: batch of %zu, query has a batch of %zu", kvn[i],
                               kv[i]->shape[0], c->batch);
    }
    if (c->value.data && c->value.shape[qo] != c->m) {
        ptr_of(&p, "value");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "value: %zu rows, key has %zu",
                           c->value.shape[qo], c->m);
    }
    return true;
}

/* mask [n][m] / [B][n][m], key_padding_mask [m] / [B][m], attn_bias [n][m] / [B][n][m]
 * (bias_heads > 0: also [H][n][m] and [B][H][n][m]). */
static bool read_masks(const cJSON *root, req_common *c, size_t bias_heads, size_t max_el,
                       srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    size_t B = c->batch, n = c->n, m = c->m;
    if (member(root, "mask", &it)) {
        ptr_of(&p, "mask");
        if (!srv_json_read_btensor(it, &p, "mask", 2, 3, max_el, &c->mask, e))
            return false;
        bool ok = (c->mask.rank == 2 && c->mask.shape[0] == n && c->mask.shape[1] == m) ||
                  (c->mask.rank == 3 && c->batched && c->mask.shape[0] == B &&
                   c->mask.shape[1] == n && c->mask.shape[2] == m);
        if (!ok) {
            char got[96];
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "mask: shape %s, expected [%zu][%zu]%s", 
                               dims_str(c->mask.shape, c->mask.rank, got, sizeof got), n, m,
                               c->batched ? " or [batch][n][m]" : "");
        }
        strcpy(c->masks_given[c->n_masks_given++], "mask");
    }
    if (member(root, "key_padding_mask", &it)) {
        ptr_of(&p, "key_padding_mask");
        if (!srv_json_read_btensor(it, &p, "key_padding_mask", 1, 2, max_el, &c->kpm, e))
            return false;
        bool ok = (c->kpm.rank == 1 && c->kpm.shape[0] == m) ||
                  (c->kpm.rank == 2 && c->batched && c->kpm.shape[0] == B &&
                   c->kpm.shape[1] == m);
        if (!ok) {
            char got[96];
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "key_padding_mask: shape %s, expected [%zu] (one per key)%s",
                               dims_str(c->kpm.shape, c->kpm.rank, got, sizeof got), m,
                               c->batched ? " or [batch][m]" : "");
        }
        strcpy(c->masks_given[c->n_masks_given++], "key_padding_mask");
    }
    if (member(root, "attn_bias", &it)) {
        ptr_of(&p, "attn_bias");
        if (!srv_json_read_tensor(it, &p, "attn_bias", 2, 4, false, max_el, &c->bias, e))
            return false;
        const srv_tensor *t = &c->bias;
        size_t r = t->rank;
        bool tail = r >= 2 && t->shape[r - 2] == n && t->shape[r - 1] == m;
        bool ok = false;
        if (tail) {
            if (r == 2)
                ok = true;
            else if (r == 3 && c->batched)
                ok = t->shape[0] == B;
            else if (r == 3 && !c->batched)
                ok = bias_heads > 0 && t->shape[0] == bias_heads;
            else if (r == 4)
                ok = c->batched && bias_heads > 0 && t->shape[0] == B &&
                     t->shape[1] == bias_heads;
        }
        if (!ok) {
            char got[96];
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "attn_bias: shape %s, expected [%zu][%zu]%s%s",
                               dims_str(t->shape, t->rank, got, sizeof got), n, m,
                               bias_heads ? " or [num_heads][n][m]" : "",
                               c->batched ? " (optionally after the batch dimension)" : "");
        }
        strcpy(c->masks_given[c->n_masks_given++], "attn_bias");
    }
    return true;
}

static bool read_scale_softcap(const cJSON *root, req_common *c, srv_err *e)
{
    srv_ptr p;
    srv_ptr_root(&p);
    c->scale = 0;
    c->softcap = 0;
    if (cJSON_GetObjectItemCaseSensitive(root, "scale")) {
        double s = -1;
        if (!srv_json_opt_float(root, &p, "scale", 0, INFINITY, &s, e))
            return false;
        if (!(s > 0)) {
            ptr_of(&p, "scale");
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "scale: must be > 0");
        }
        c->scale = s;
    }
    if (!srv_json_opt_float(root, &p, "softcap", 0, INFINITY, &c->softcap, e))
        return false;
    return true;
}

static attn_masks masks_for(const req_common *c, size_t b, size_t bias_heads);

/* A non-negative integer member of the pattern object (absent: *out unchanged). */
static bool pattern_int(const cJSON *obj, const srv_ptr *where, const char *key, long long lo,
                        long long *out, srv_err *e)
{
    return srv_json_opt_int(obj, where, key, lo, (long long)1 << 40, out, e);
}

/*
 * pattern: {"window": w | [l, r], "dilation": d, "stride": s, "global_tokens": [..],
 * "block_size": b, "random": r, "seed": s}: the union of the parts given.
 */
static bool read_pattern(const cJSON *root, req_common *c, srv_err *e)
{
    static const char *const keys[] = {"window", "dilation", "stride", "global_tokens",
                                       "block_size", "random", "seed", NULL};
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(root, "pattern");
    srv_ptr p, pk, pi;
    if (pj == NULL || cJSON_IsNull(pj))
        return true;
    ptr_of(&p, "pattern");
    if (!cJSON_IsObject(pj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "pattern: expected an object such as {\"window\": 2}");
    if (!srv_json_check_keys(pj, &p, keys, e))
        return false;
    attn_pattern *pt = &c->pat;
    memset(pt, 0, sizeof *pt);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(pj, "window");
    srv_ptr_key(&pk, &p, "window");
    if (w != NULL) {
        pt->has_window = true;
        if (cJSON_IsNumber(w)) {
            long long v = 0;
            if (!pattern_int(pj, &p, "window", 0, &v, e))
                return false;
            pt->window_left = pt->window_right = v;
        } else if (cJSON_IsArray(w) && cJSON_GetArraySize(w) == 2) {
            for (int i = 0; i < 2; i++) {
                const cJSON *x = cJSON_GetArrayItem(w, i);
                srv_ptr_index(&pi, &pk, (size_t)i);
                double d = cJSON_IsNumber(x) ? x->valuedouble : -2;
                if (!cJSON_IsNumber(x) || d != floor(d) || d < -1 || d > 1e12)
                    return srv_err_set(e, 400, SRV_CODE_INVALID, pi.s,
                                       "pattern.window: [left, right] are integers >= 0 "
                                       "(-1 = unbounded)");
                if (i == 0)
                    pt->window_left = (int64_t)d;
                else
                    pt->window_right = (int64_t)d;
            }
        } else {
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "pattern.window: expected w >= 0 (|i-j| <= w) or [left, right] "
                               "(i-left <= j <= i+right)");
        }
    }
    long long v = 0;
    if (cJSON_GetObjectItemCaseSensitive(pj, "dilation")) {
        if (!w) {
            srv_ptr_key(&pk, &p, "dilation");
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "pattern.dilation applies to a window: give window too");
        }
        v = 1;
        if (!pattern_int(pj, &p, "dilation", 1, &v, e))
            return false;
        pt->dilation = v;
    }
    v = 0;
    if (!pattern_int(pj, &p, "stride", 1, &v, e))
        return false;
    pt->stride = v;
    v = 0;
    if (!pattern_int(pj, &p, "block_size", 1, &v, e))
        return false;
    pt->block_size = v;
    v = 0;
    if (!pattern_int(pj, &p, "random", 1, &v, e))
        return false;
    pt->random = v;
    v = 0;
    if (cJSON_GetObjectItemCaseSensitive(pj, "seed") && !pt->random) {
        srv_ptr_key(&pk, &p, "seed");
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "pattern.seed applies to random: give random too");
    }
    if (!srv_json_opt_int(pj, &p, "seed", 0, (long long)9007199254740991LL, &v, e))
        return false;
    pt->seed = (uint64_t)v;
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(pj, "global_tokens");
    if (g != NULL) {
        srv_ptr_key(&pk, &p, "global_tokens");
        if (!cJSON_IsArray(g))
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "pattern.global_tokens: expected a list of token indices");
        size_t ng = (size_t)cJSON_GetArraySize(g), lim = c->n > c->m ? c->n : c->m;
        c->globals = malloc((ng ? ng : 1) * sizeof *c->globals);
        if (!c->globals)
            return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
        size_t i = 0;
        for (const cJSON *x = g->child; x; x = x->next, i++) {
            srv_ptr_index(&pi, &pk, i);
            double d = cJSON_IsNumber(x) ? x->valuedouble : -1;
            if (!cJSON_IsNumber(x) || d != floor(d) || d < 0 || d >= (double)lim)
                return srv_err_set(e, 400, SRV_CODE_INVALID, pi.s,
                                   "pattern.global_tokens: index out of range: tokens are "
                                   "0..%zu", lim - 1);
            c->globals[i] = (size_t)d;
        }
        pt->global_tokens = c->globals;
        pt->n_global = ng;
    }
    if (!pt->has_window && !pt->stride && !pt->block_size && !pt->random && !pt->n_global)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "pattern: give at least one of window, stride, global_tokens, "
                           "block_size, random");
    if (attn_pattern_check(pt, c->n, c->m) != ATTN_OK)
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "pattern: invalid for %zu x %zu",
                           c->n, c->m);
    c->has_pattern = true;
    c->pattern_json = pj;
    return true;
}

/* The allowed matrix actually applied to batch element b, masks included:
 * allowed [n][m]. */
static attn_status allowed_for(const req_common *c, size_t b, uint8_t *allowed)
{
    attn_pattern all;
    memset(&all, 0, sizeof all);
    all.has_window = true;
    all.window_left = all.window_right = -1;
    size_t n = c->n, m = c->m;
    attn_status st =
        attn_pattern_allowed(c->has_pattern ? &c->pat : &all, c->causal, n, m, allowed);
    if (st != ATTN_OK)
        return st;
    attn_masks mk = masks_for(c, b, 0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < m; j++) {
            size_t ij = i * m + j;
            if ((mk.mask && !mk.mask[ij]) || (mk.key_padding && mk.key_padding[j]))
                allowed[ij] = 0;
        }
    return ATTN_OK;
}

/* Masks of batch element b for the engine. */
static attn_masks masks_for(const req_common *c, size_t b, size_t bias_heads)
{
    attn_masks mk;
    memset(&mk, 0, sizeof mk);
    size_t nm = c->n * c->m;
    mk.causal = c->causal;
    mk.m_masked = c->m;
    if (c->mask.data)
        mk.mask = c->mask.data + (c->mask.rank == 3 ? b * nm : 0);
    if (c->kpm.data)
        mk.key_padding = c->kpm.data + (c->kpm.rank == 2 ? b * c->m : 0);
    mk.pattern = c->has_pattern ? &c->pat : NULL;
    if (c->bias.data) {
        size_t r = c->bias.rank;
        bool per_head = (r == 4) || (r == 3 && !c->batched);
        bool per_batch = c->batched && r >= 3;
        size_t heads = per_head ? bias_heads : 1;
        mk.bias = c->bias.data + (per_batch ? b * heads * nm : 0);
        mk.bias_head_stride = per_head ? nm : 0;
    }
    return mk;
}

/* ------------------------------------------------------------- rendering */

static void shape_json(srv_jw *w, const char *key, const size_t *shape, size_t rank)
{
    srv_jw_key(w, key);
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < rank; i++)
        srv_jw_uint(w, shape[i]);
    srv_jw_arr_end(w);
}

/* Shape of a per-request result: [B] prepended when batched. */
typedef struct out_shape {
    size_t d[SRV_TENSOR_MAX_RANK];
    size_t rank;
} out_shape;

static out_shape oshape(const req_common *c, size_t a, size_t b, size_t d3)
{
    out_shape s;
    memset(&s, 0, sizeof s);
    if (c->batched)
        s.d[s.rank++] = c->batch;
    if (a)
        s.d[s.rank++] = a;
    s.d[s.rank++] = b;
    if (d3)
        s.d[s.rank++] = d3;
    return s;
}

static void write_tensor(srv_jw *w, const char *key, const float *data, out_shape s)
{
    srv_jw_key(w, key);
    srv_jw_tensor(w, data, s.rank, s.d);
}

/* A float32 meta value at full precision, whatever precision the arrays use. */
static void meta_float(srv_jw *w, float v)
{
    int keep = w->precision;
    w->precision = 0;
    srv_jw_float(w, v);
    w->precision = keep;
}

static void write_common_meta(srv_jw *w, const req_common *c)
{
    static const char *const causal_names[] = {"none", "top_left", "bottom_right"};
    srv_jw_key(w, "causal");
    srv_jw_str(w, causal_names[c->causal]);
    srv_jw_key(w, "masks");
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < c->n_masks_given; i++)
        srv_jw_str(w, c->masks_given[i]);
    srv_jw_arr_end(w);
    srv_jw_key(w, "softcap");
    if (c->softcap > 0)
        srv_jw_double(w, c->softcap);
    else
        srv_jw_null(w);
    if (c->has_pattern) {
        srv_jw_key(w, "pattern");
        srv_jw_cjson(w, c->pattern_json);
        if (c->pat.has_window) {
            /* both conventions: window definitions differ between libraries */
            srv_jw_key(w, "window_left_right");
            srv_jw_arr_begin(w);
            srv_jw_int(w, c->pat.window_left);
            srv_jw_int(w, c->pat.window_right);
            srv_jw_arr_end(w);
            srv_jw_key(w, "window_symmetric");
            if (c->pat.window_left == c->pat.window_right)
                srv_jw_int(w, c->pat.window_left);
            else
                srv_jw_null(w);
        }
    }
    srv_jw_key(w, "batch");
    if (c->batched)
        srv_jw_uint(w, c->batch);
    else
        srv_jw_null(w);
    srv_jw_key(w, "return");
    srv_jw_arr_begin(w);
    for (size_t k = 0; ret_names[k]; k++)
        if (c->ret & (1u << k))
            srv_jw_str(w, ret_names[k]);
    srv_jw_arr_end(w);
    srv_jw_key(w, "encoding");
    srv_jw_str(w, c->base64 ? "base64" : "json");
    srv_jw_key(w, "precision");
    if (c->precision)
        srv_jw_int(w, c->precision);
    else
        srv_jw_null(w);
}

static void write_tokens(srv_jw *w, const req_common *c)
{
    if (c->tokens) {
        srv_jw_key(w, "tokens");
        srv_jw_cjson(w, c->tokens);
    }
    if (c->key_tokens) {
        srv_jw_key(w, "key_tokens");
        srv_jw_cjson(w, c->key_tokens);
    }
}

/* Closes meta (empty_rows, elapsed_ms) and the body, and hands the buffer to
 * the response (500 when it ran out of memory). */
static void finish_json(srv_response *res, srv_jw *w, size_t empty_rows, double engine_ms)
{
    srv_jw_key(w, "empty_rows");
    srv_jw_uint(w, empty_rows);
    srv_jw_key(w, "elapsed_ms");
    srv_jw_double(w, engine_ms);
    srv_jw_obj_end(w);
    srv_jw_obj_end(w);
    size_t len = 0;
    char *body = srv_buf_detach(w->b, &len);
    if (!body) {
        srv_err e;
        srv_err_set(&e, 500, SRV_CODE_INTERNAL, "", "out of memory while writing the response");
        srv_respond_error(res, &e);
        return;
    }
    srv_response_set(res, 200, "application/json", body, len);
    res->inference_ms = engine_ms > 0 ? engine_ms : 1e-6;
}

static bool engine_error(attn_status st, srv_err *e)
{
    if (st == ATTN_ERR_NOMEM)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "",
                           "out of memory for this request; try a smaller one");
    if (st == ATTN_ERR_INVALID || st == ATTN_ERR_SHAPE || st == ATTN_ERR_OVERFLOW)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "", "%s", attn_status_str(st));
    return srv_err_set(e, 500, SRV_CODE_INTERNAL, "", "engine: %s", attn_status_str(st));
}

/* Output-element limit: refuse before allocating what the answer would hold. */
static bool check_elements(size_t total, size_t limit, const char *hint, srv_err *e)
{
    if (total <= limit)
        return true;
    return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, "",
                       "the response would hold %zu numbers, over the limit of %zu "
                       "(--max-elements); %s",
                       total, limit, hint);
}

static size_t mul3(size_t a, size_t b, size_t c)
{
    if (a && b > SIZE_MAX / a)
        return SIZE_MAX;
    size_t ab = a * b;
    if (ab && c > SIZE_MAX / ab)
        return SIZE_MAX;
    return ab * c;
}

static size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static float *alloc_floats(size_t count, bool want, bool *oom)
{
    if (!want || count == 0)
        return NULL;
    float *p = malloc(count * sizeof(float));
    if (!p)
        *oom = true;
    return p;
}

/* sparsify: weights as COO triplets, keeping each row's k largest or those >= t. */
typedef struct sparsify {
    bool on;
    size_t topk;      /* 0: threshold */
    double threshold;
    const cJSON *json;
} sparsify;

static bool read_sparsify(const cJSON *root, sparsify *sp, srv_err *e)
{
    static const char *const keys[] = {"topk", "threshold", NULL};
    const cJSON *sj = cJSON_GetObjectItemCaseSensitive(root, "sparsify");
    srv_ptr p;
    memset(sp, 0, sizeof *sp);
    if (sj == NULL || cJSON_IsNull(sj))
        return true;
    ptr_of(&p, "sparsify");
    if (!cJSON_IsObject(sj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "sparsify: expected {\"topk\": k} or {\"threshold\": t}");
    if (!srv_json_check_keys(sj, &p, keys, e))
        return false;
    bool has_k = cJSON_GetObjectItemCaseSensitive(sj, "topk") != NULL;
    bool has_t = cJSON_GetObjectItemCaseSensitive(sj, "threshold") != NULL;
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
    return mul3(3 * B, n, per_row);
}

static int float_desc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

/* Keeps row entries > 0 that are among the k largest (ties: lower column
 * first) or >= threshold; writes their columns to idx in column order and
 * returns how many. tmp holds m floats (scratch). O(m log m) per row. */
static size_t sparsify_row(const sparsify *sp, const float *row, size_t m, size_t *idx,
                           float *tmp)
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

/*
 * kernel: "softmax" (default) or {"type": "linear", "feature_map": "elu"}.
 * Sets *linear. Linear attention has no scores, scale, softcap, bool mask,
 * bias or pattern: those are refused by name rather than ignored.
 */
static bool read_kernel(const cJSON *root, bool *linear, srv_err *e)
{
    static const char *const keys[] = {"type", "feature_map", "num_features", "seed", NULL};
    static const char *const incompatible[] = {"score",   "scale",   "softcap", "mask",
                                               "attn_bias", "pattern", NULL};
    const cJSON *kj = cJSON_GetObjectItemCaseSensitive(root, "kernel");
    srv_ptr p, pk;
    *linear = false;
    if (kj == NULL || cJSON_IsNull(kj) ||
        (cJSON_IsString(kj) && strcmp(kj->valuestring, "softmax") == 0))
        return true;
    ptr_of(&p, "kernel");
    if (!cJSON_IsObject(kj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "kernel: expected \"softmax\" or {\"type\": \"linear\", "
                           "\"feature_map\": \"elu\"}");
    if (!srv_json_check_keys(kj, &p, keys, e))
        return false;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(kj, "type");
    srv_ptr_key(&pk, &p, "type");
    if (!cJSON_IsString(t) || strcmp(t->valuestring, "linear") != 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s, "kernel.type: expected \"linear\"");
    const cJSON *fm = cJSON_GetObjectItemCaseSensitive(kj, "feature_map");
    srv_ptr_key(&pk, &p, "feature_map");
    if (fm != NULL && cJSON_IsString(fm) && strcmp(fm->valuestring, "favor") == 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "kernel.feature_map: \"favor\" (Performer) is not supported yet by "
                           "this server; \"elu\" is");
    if (fm != NULL && !(cJSON_IsString(fm) && strcmp(fm->valuestring, "elu") == 0))
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "kernel.feature_map: expected \"elu\" (phi(x) = elu(x) + 1)");
    for (const char *const *k = keys + 2; *k; k++)
        if (cJSON_GetObjectItemCaseSensitive(kj, *k)) {
            srv_ptr_key(&pk, &p, *k);
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "kernel.%s applies to the favor feature map only", *k);
        }
    for (const char *const *k = incompatible; *k; k++)
        if (cJSON_GetObjectItemCaseSensitive(root, *k)) {
            ptr_of(&pk, *k);
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "%s does not apply to a linear kernel (it has no softmax "
                               "scores; causal and key_padding_mask do apply)",
                               *k);
        }
    *linear = true;
    return true;
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
    case ATTN_SCORE_GENERAL: need[0] = "w"; break;
    case ATTN_SCORE_ADDITIVE: need[0] = "w1"; need[1] = "w2"; need[2] = "v"; break;
    case ATTN_SCORE_CONCAT: need[0] = "w"; need[1] = "v"; break;
    default: break;
    }
    static const char *const all[] = {"w", "w1", "w2", "v", NULL};
    for (size_t i = 0; all[i]; i++) {
        bool needed = false;
        for (size_t j = 0; need[j]; j++)
            needed |= strcmp(need[j], all[i]) == 0;
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, all[i]);
        srv_ptr pp;
        ptr_of(&pp, all[i]);
        if (!needed && it)
            return srv_err_set(e, 400, SRV_CODE_INVALID, pp.s,
                               "%s is not used by score \"%s\"", all[i],
                               attn_score_name(score));
        if (needed && !it)
            return srv_err_set(e, 400, SRV_CODE_INVALID, pp.s,
                               "%s is required by score \"%s\"", all[i],
                               attn_score_name(score));
    }
    if (score == ATTN_SCORE_GENERAL) {
        size_t want[2] = {dq, dk};
        if (!read_tensor_member(root, "w", 2, 2, true, max_el, &s->w, e) ||
            !expect_shape(&s->w, "w", 2, want, e))
            return false;
        p->w = s->w.data;
    } else if (score == ATTN_SCORE_ADDITIVE) {
        if (!read_tensor_member(root, "w1", 2, 2, true, max_el, &s->w1, e))
            return false;
        size_t da = s->w1.shape[0];
        size_t w1s[2] = {da, dq}, w2s[2] = {da, dk}, vs[1] = {da};
        if (!expect_shape(&s->w1, "w1", 2, w1s, e) ||
            !read_tensor_member(root, "w2", 2, 2, true, max_el, &s->w2, e) ||
            !expect_shape(&s->w2, "w2", 2, w2s, e) ||
            !read_tensor_member(root, "v", 1, 1, true, max_el, &s->v, e) ||
            !expect_shape(&s->v, "v", 1, vs, e))
            return false;
        p->w1 = s->w1.data;
        p->w2 = s->w2.data;
        p->v = s->v.data;
        p->da = da;
    } else if (score == ATTN_SCORE_CONCAT) {
        if (!read_tensor_member(root, "w", 2, 2, true, max_el, &s->w, e))
            return false;
        size_t da = s->w.shape[0];
        size_t ws[2] = {da, dq + dk}, vs[1] = {da};
        if (!expect_shape(&s->w, "w", 2, ws, e) ||
            !read_tensor_member(root, "v", 1, 1, true, max_el, &s->v, e) ||
            !expect_shape(&s->v, "v", 1, vs, e))
            return false;
        p->w = s->w.data;
        p->v = s->v.data;
        p->da = da;
    }
    return true;
}

static const char *const attention_keys[] = {
    "query", "key", "value", "score", "scale", "softcap", "w", "w1", "w2", "v", "causal",
    "mask", "key_padding_mask", "attn_bias", "return", "tokens", "key_tokens", "encoding",
    "precision", "kernel", "pattern", "positional", "sparsify", "attn_mask", NULL};

void srv_h_attention(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    req_common c;
    score_weights sw;
    attn_params p;
    sparsify spz;
    bool linear = false;
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
    if (!srv_json_check_keys(root, &root_ptr, attention_keys, &e) ||
        !reject_reserved(root, true, &e))
        goto fail;

    /* score first: it decides which widths must agree */
    char score_name[32] = "scaled_dot";
    if (!srv_json_opt_string(root, &root_ptr, "score", score_name, sizeof score_name, &e))
        goto fail;
    if (attn_score_parse(score_name, &p.score) != ATTN_OK) {
        srv_ptr sp;
        ptr_of(&sp, "score");
        srv_err_set(&e, 400, SRV_CODE_INVALID, sp.s,
                    "score: unknown \"%s\"; accepted: scaled_dot, dot, general, additive, "
                    "concat", score_name);
        goto fail;
    }
    c.ret = RET_OUTPUT | RET_WEIGHTS;
    if (!read_output_options(root, &c, &e) || !read_causal(root, &c, &e) ||
        !read_scale_softcap(root, &c, &e) ||
        !read_return(root, RET_OUTPUT | RET_WEIGHTS | RET_SCORES | RET_PATTERN,
                     RET_OUTPUT | RET_WEIGHTS, &c, &e) ||
        !read_kernel(root, &linear, &e) || !read_qkv(root, &c, false, max_el, &e))
        goto fail;
    if (linear && (c.ret & RET_SCORES)) {
        srv_ptr rp2;
        ptr_of(&rp2, "return");
        srv_err_set(&e, 400, SRV_CODE_INVALID, rp2.s,
                    "return: a linear kernel has no softmax scores; ask for output and weights");
        goto fail;
    }
    size_t qo = c.batched ? 1 : 0;
    size_t dq = c.query.shape[qo + 1], dk = c.key.shape[qo + 1], dv = c.value.shape[qo + 1];
    if (cJSON_GetObjectItemCaseSensitive(root, "scale") && p.score != ATTN_SCORE_SCALED_DOT) {
        srv_ptr sp;
        ptr_of(&sp, "scale");
        srv_err_set(&e, 400, SRV_CODE_INVALID, sp.s,
                    "scale applies to score \"scaled_dot\" only");
        goto fail;
    }
    if ((p.score == ATTN_SCORE_SCALED_DOT || p.score == ATTN_SCORE_DOT) && dq != dk) {
        srv_ptr sp;
        ptr_of(&sp, "key");
        srv_err_set(&e, 400, SRV_CODE_INVALID, sp.s,
                    "key: rows have %zu values, query rows have %zu; score \"%s\" needs equal "
                    "widths (use \"general\", \"additive\" or \"concat\" for different ones)",
                    dk, dq, score_name);
        goto fail;
    }
    if (!read_score_weights(root, p.score, dq, dk, max_el, &sw, &p, &e) ||
        !read_masks(root, &c, 0, max_el, &e) || !read_pattern(root, &c, &e) ||
        !read_sparsify(root, &spz, &e) ||
        !read_tokens(root, "tokens", c.n, &c.tokens, &e) ||
        !read_tokens(root, "key_tokens", c.m, &c.key_tokens, &e))
        goto fail;

    size_t B = c.batch, n = c.n, m = c.m;
    /* sparsify implies weights, returned as COO triplets */
    if (spz.on)
        c.ret |= RET_WEIGHTS;
    bool want_o = c.ret & RET_OUTPUT, want_w = c.ret & RET_WEIGHTS, want_s = c.ret & RET_SCORES;
    size_t total = 0;
    if (want_o)
        total = add_sat(total, mul3(B, n, dv));
    if (want_w)
        total = add_sat(total, spz.on ? sparsify_elements(&spz, B, n, m) : mul3(B, n, m));
    if (want_s)
        total = add_sat(total, mul3(B, n, m));
    bool want_p = c.ret & RET_PATTERN;
    if (want_p)
        total = add_sat(total, mul3(B, n, m));
    if (!check_elements(total, max_el,
                        "drop \"weights\"/\"scores\" from return, or send fewer queries or keys",
                        &e))
        goto fail;

    bool oom = false;
    out = alloc_floats(B * n * dv, want_o, &oom);
    wts = alloc_floats(B * n * m, want_w, &oom);
    scores = alloc_floats(B * n * m, want_s, &oom);
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
    double te = srv_now_ms();
    for (size_t b = 0; b < B; b++) {
        attn_outputs o = {
            want_o ? out + b * n * dv : NULL,
            want_w ? wts + b * n * m : NULL,
            want_s ? scores + b * n * m : NULL,
        };
        attn_result r;
        attn_status st;
        p.masks = masks_for(&c, b, 0);
        if (linear) {
            st = attn_linear_forward(ws, c.causal, n, m, dq, dv, c.query.data + b * n * dq,
                                     c.key.data + b * m * dk, c.value.data + b * m * dv,
                                     p.masks.key_padding, o.output, o.weights);
            r.n_empty_rows = 0;
            r.scale = 1;
        } else {
            st = attn_forward(ws, &p, n, m, dq, dk, dv, c.query.data + b * n * dq,
                              c.key.data + b * m * dk, c.value.data + b * m * dv, &o, &r);
        }
        if (st != ATTN_OK) {
            engine_error(st, &e);
            goto fail;
        }
        empty_rows += r.n_empty_rows;
        scale_used = r.scale;
        if (want_p && (st = allowed_for(&c, b, allowed + b * n * m)) != ATTN_OK) {
            engine_error(st, &e);
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
        write_tensor(&w, "output", out, oshape(&c, 0, n, dv));
    size_t nnz = 0;
    if (want_w && spz.on) {
        srv_jw_key(&w, "weights");
        bool ok = true;
        if (c.batched)
            srv_jw_arr_begin(&w);
        for (size_t bi = 0; bi < B && ok; bi++)
            ok = write_coo(&w, &spz, wts + bi * n * m, n, m, &nnz);
        if (c.batched)
            srv_jw_arr_end(&w);
        if (!ok) {
            srv_buf_free(&b);
            srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "",
                        "out of memory for this request; try a smaller one");
            goto fail;
        }
    } else if (want_w) {
        write_tensor(&w, "weights", wts, oshape(&c, 0, n, m));
    }
    if (want_s)
        write_tensor(&w, "scores", scores, oshape(&c, 0, n, m));
    if (want_p) {
        out_shape sp = oshape(&c, 0, n, m);
        srv_jw_key(&w, "pattern");
        srv_jw_btensor(&w, allowed, sp.rank, sp.d);
    }
    write_tokens(&w, &c);
    srv_jw_key(&w, "meta");
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "kernel");
    if (linear)
        srv_jw_cjson(&w, cJSON_GetObjectItemCaseSensitive(root, "kernel"));
    else
        srv_jw_str(&w, "softmax");
    srv_jw_key(&w, "score");
    if (linear)
        srv_jw_null(&w);
    else
        srv_jw_str(&w, attn_score_name(p.score));
    srv_jw_key(&w, "scale");
    meta_float(&w, scale_used);
    write_common_meta(&w, &c);
    if (spz.on) {
        srv_jw_key(&w, "sparsify");
        srv_jw_cjson(&w, spz.json);
        srv_jw_key(&w, "nnz");
        srv_jw_uint(&w, nnz);
    }
    srv_jw_key(&w, "shapes");
    srv_jw_obj_begin(&w);
    shape_json(&w, "query", c.query.shape, c.query.rank);
    shape_json(&w, "key", c.key.shape, c.key.rank);
    shape_json(&w, "value", c.value.shape, c.value.rank);
    out_shape so = oshape(&c, 0, n, dv), sm = oshape(&c, 0, n, m);
    shape_json(&w, "output", so.d, so.rank);
    shape_json(&w, "weights", sm.d, sm.rank);
    srv_jw_obj_end(&w);
    finish_json(res, &w, empty_rows, engine_ms);
    goto done;

fail:
    srv_respond_error(res, &e);
done:
    free(allowed);
    free(out);
    free(wts);
    free(scores);
    score_weights_free(&sw);
    common_free(&c);
    cJSON_Delete(root);
}

/* ------------------------------------------------- /v1/multihead_attention */

typedef struct mha_state {
    srv_tensor in_proj, qw, kw, vw, in_bias, out_w, out_b, bias_k, bias_v;
    float *seed_store;
} mha_state;

static void mha_state_free(mha_state *s)
{
    srv_tensor *all[] = {&s->in_proj, &s->qw, &s->kw, &s->vw, &s->in_bias,
                         &s->out_w, &s->out_b, &s->bias_k, &s->bias_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        srv_tensor_free(all[i]);
    attn_free_buffer(s->seed_store);
    s->seed_store = NULL;
}

/* One state_dict entry with its expected shape (bias_k/bias_v: any of [1][1][n], [1][n], [n]). */
static bool sd_read(const cJSON *sd, const srv_ptr *sdp, const char *key, size_t rank,
                    size_t d0, size_t d1, bool flat_ok, size_t max_el, srv_tensor *t,
                    srv_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(sd, key);
    srv_ptr p;
    srv_ptr_key(&p, sdp, key);
    if (!it)
        return true;
    if (!srv_json_read_tensor(it, &p, key, 1, 3, false, max_el, t, e))
        return false;
    bool ok;
    if (flat_ok) {
        ok = t->size == d0;
        for (size_t i = 0; ok && i + 1 < t->rank; i++)
            ok = t->shape[i] == 1;
    } else {
        ok = t->rank == rank && t->shape[0] == d0 && (rank == 1 || t->shape[1] == d1);
    }
    if (!ok) {
        char got[96];
        if (flat_ok)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights.%s: shape %s, expected [1][1][%zu]", key,
                               dims_str(t->shape, t->rank, got, sizeof got), d0);
        if (rank == 1)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights.%s: shape %s, expected [%zu]", key,
                               dims_str(t->shape, t->rank, got, sizeof got), d0);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "weights.%s: shape %s, expected [%zu][%zu]", key,
                           dims_str(t->shape, t->rank, got, sizeof got), d0, d1);
    }
    return true;
}

static const char *const sd_keys[] = {"in_proj_weight", "q_proj_weight", "k_proj_weight",
                                      "v_proj_weight", "in_proj_bias", "out_proj.weight",
                                      "out_proj.bias", "bias_k", "bias_v", NULL};

/* weights: an nn.MultiheadAttention state_dict. bias_flag: -1 unspecified, 0/1 given. */
static bool read_state_dict(const cJSON *sd, size_t E, size_t Ekv, size_t kdim, size_t vdim,
                            int bias_flag, size_t max_el, mha_state *s, attn_mha_weights *w,
                            bool *has_bias, bool *has_bias_kv, srv_err *e)
{
    srv_ptr sdp;
    ptr_of(&sdp, "weights");
    if (!cJSON_IsObject(sd))
        return srv_err_set(e, 400, SRV_CODE_INVALID, sdp.s,
                           "weights: expected an nn.MultiheadAttention state_dict object");
    if (!srv_json_check_keys(sd, &sdp, sd_keys, e))
        return false;
    bool same = kdim == E && vdim == E;
    const cJSON *inp = cJSON_GetObjectItemCaseSensitive(sd, "in_proj_weight");
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
        if (!sd_read(sd, &sdp, "in_proj_weight", 2, E + 2 * Ekv, E, false, max_el, &s->in_proj,
                     e))
            return false;
        for (const char *const *k = sd_keys + 1; k < sd_keys + 4; k++)
            if (cJSON_GetObjectItemCaseSensitive(sd, *k)) {
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
        const char *missing = !cJSON_GetObjectItemCaseSensitive(sd, "q_proj_weight")
                                  ? "q_proj_weight"
                              : !cJSON_GetObjectItemCaseSensitive(sd, "k_proj_weight")
                                  ? "k_proj_weight"
                              : !cJSON_GetObjectItemCaseSensitive(sd, "v_proj_weight")
                                  ? "v_proj_weight"
                                  : NULL;
        if (missing) {
            srv_ptr p;
            srv_ptr_key(&p, &sdp, same ? "in_proj_weight" : missing);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.%s is required",
                               same ? "in_proj_weight" : missing);
        }
        if (!sd_read(sd, &sdp, "q_proj_weight", 2, E, E, false, max_el, &s->qw, e) ||
            !sd_read(sd, &sdp, "k_proj_weight", 2, Ekv, kdim, false, max_el, &s->kw, e) ||
            !sd_read(sd, &sdp, "v_proj_weight", 2, Ekv, vdim, false, max_el, &s->vw, e))
            return false;
        w->q_proj = s->qw.data;
        w->k_proj = s->kw.data;
        w->v_proj = s->vw.data;
    }
    if (!cJSON_GetObjectItemCaseSensitive(sd, "out_proj.weight")) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, "out_proj.weight");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "weights.out_proj.weight is required");
    }
    if (!sd_read(sd, &sdp, "out_proj.weight", 2, E, E, false, max_el, &s->out_w, e) ||
        !sd_read(sd, &sdp, "in_proj_bias", 1, E + 2 * Ekv, 0, false, max_el, &s->in_bias, e) ||
        !sd_read(sd, &sdp, "out_proj.bias", 1, E, 0, false, max_el, &s->out_b, e) ||
        !sd_read(sd, &sdp, "bias_k", 0, Ekv, 0, true, max_el, &s->bias_k, e) ||
        !sd_read(sd, &sdp, "bias_v", 0, Ekv, 0, true, max_el, &s->bias_v, e))
        return false;
    w->out_proj = s->out_w.data;
    bool ib = s->in_bias.data != NULL, ob = s->out_b.data != NULL;
    if (bias_flag == 1 && (!ib || !ob)) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, ib ? "out_proj.bias" : "in_proj_bias");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "weights.%s is missing but bias is true",
                           ib ? "out_proj.bias" : "in_proj_bias");
    }
    if (bias_flag == 0 && (ib || ob)) {
        srv_ptr p;
        srv_ptr_key(&p, &sdp, ib ? "in_proj_bias" : "out_proj.bias");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "weights.%s is given but bias is false",
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

static const char *const mha_keys[] = {
    "query", "key", "value", "num_heads", "num_kv_heads", "weights", "seed", "bias",
    "add_bias_kv", "add_zero_attn", "scale", "softcap", "causal", "mask", "key_padding_mask",
    "attn_bias", "average_weights", "return", "tokens", "key_tokens", "encoding", "precision",
    "kernel", "pattern", "positional", "sparsify", "attn_mask", NULL};

void srv_h_mha(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    req_common c;
    mha_state s;
    attn_mha_weights w;
    attn_mha_config cfg;
    size_t max_el = app->config.max_elements;
    float *bufs[8] = {NULL};
    double engine_ms = 0;
    float scale_used = 0;
    memset(&c, 0, sizeof c);
    memset(&s, 0, sizeof s);
    memset(&w, 0, sizeof w);
    memset(&cfg, 0, sizeof cfg);
    srv_ptr rp;
    srv_ptr_root(&rp);

    cJSON *root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root)
        goto fail;
    if (!srv_json_check_keys(root, &rp, mha_keys, &e) || !reject_reserved(root, false, &e))
        goto fail;
    if (cJSON_GetObjectItemCaseSensitive(root, "sparsify")) {
        srv_ptr p;
        ptr_of(&p, "sparsify");
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "sparsify is not supported yet on /v1/multihead_attention "
                    "(it is on /v1/attention)");
        goto fail;
    }
    bool avg = false;
    if (!srv_json_opt_bool(root, &rp, "average_weights", &avg, &e))
        goto fail;
    if (!read_output_options(root, &c, &e) || !read_causal(root, &c, &e) ||
        !read_scale_softcap(root, &c, &e) ||
        !read_return(root, 0xffu, RET_OUTPUT | RET_WEIGHTS | (avg ? RET_WEIGHTS_AVG : 0), &c,
                     &e) ||
        !read_qkv(root, &c, true, max_el, &e))
        goto fail;
    if (avg)
        c.ret |= RET_WEIGHTS_AVG;
    size_t qo = c.batched ? 1 : 0;
    size_t E = c.query.shape[qo + 1];
    size_t kdim = c.key.data ? c.key.shape[qo + 1] : E;
    size_t vdim = c.value.data ? c.value.shape[qo + 1] : E;

    srv_ptr hp;
    ptr_of(&hp, "num_heads");
    if (!cJSON_GetObjectItemCaseSensitive(root, "num_heads")) {
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
        ptr_of(&p, "num_kv_heads");
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "num_kv_heads: %lld does not divide num_heads %lld", Hkv, H);
        goto fail;
    }
    size_t hd = E / (size_t)H, Ekv = (size_t)Hkv * hd;

    int bias_flag = -1;
    if (cJSON_GetObjectItemCaseSensitive(root, "bias")) {
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

    const cJSON *sd = cJSON_GetObjectItemCaseSensitive(root, "weights");
    bool seeded = sd == NULL;
    if (sd) {
        srv_ptr p;
        if (cJSON_GetObjectItemCaseSensitive(root, "seed")) {
            ptr_of(&p, "seed");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                        "seed: send either weights or seed, not both");
            goto fail;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, "add_bias_kv")) {
            ptr_of(&p, "add_bias_kv");
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
        attn_status st = attn_mha_init_seeded(&cfg, (uint64_t)seed, has_bias, has_bias_kv, &w,
                                              &s.seed_store);
        if (st != ATTN_OK) {
            engine_error(st, &e);
            goto fail;
        }
    }
    if (!read_masks(root, &c, (size_t)H, max_el, &e) || !read_pattern(root, &c, &e) ||
        !read_tokens(root, "tokens", c.n, &c.tokens, &e) ||
        !read_tokens(root, "key_tokens", c.m, &c.key_tokens, &e))
        goto fail;

    size_t B = c.batch, n = c.n, m = c.m;
    size_t mp = attn_mha_keys(&cfg, &w, m);
    /* sizes of the eight results, in ret_names order */
    size_t Hs = (size_t)H;
    size_t per[8] = {mul3(n, E, 1),   mul3(Hs, n, mp), mul3(Hs, n, mp), mul3(n, mp, 1),
                     mul3(Hs, n, hd), mul3(n, E, 1),   mul3(m, Ekv, 1), mul3(m, Ekv, 1)};
    size_t total = 0;
    for (int i = 0; i < 8; i++)
        if (c.ret & (1u << i))
            total = add_sat(total, mul3(B, per[i], 1));
    if (!check_elements(total, max_el,
                        "drop \"weights\" (or other per-head results) from return, use fewer "
                        "heads, or send fewer tokens",
                        &e))
        goto fail;
    bool oom = false;
    for (int i = 0; i < 8; i++)
        bufs[i] = alloc_floats(B * per[i], c.ret & (1u << i), &oom);
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
        cfg.attn.masks = masks_for(&c, b, (size_t)H);
        const float *q = c.query.data + b * n * E;
        const float *k = c.key.data ? c.key.data + b * m * kdim : q;
        const float *v = c.value.data ? c.value.data + b * m * vdim : q;
        attn_result r;
        attn_status st = attn_mha_forward(ws, &cfg, &w, n, m, q, k, v, &o, &r);
        if (st != ATTN_OK) {
            engine_error(st, &e);
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
    out_shape shapes[8] = {
        oshape(&c, 0, n, E),       oshape(&c, (size_t)H, n, mp), oshape(&c, (size_t)H, n, mp),
        oshape(&c, 0, n, mp),      oshape(&c, (size_t)H, n, hd), oshape(&c, 0, n, E),
        oshape(&c, 0, m, Ekv),     oshape(&c, 0, m, Ekv)};
    /* output order: the contract's, not the bit order */
    static const int order[8] = {0, 1, 3, 4, 2, 5, 6, 7};
    for (int oi = 0; oi < 8; oi++) {
        int i = order[oi];
        if (bufs[i])
            write_tensor(&jw, ret_names[i], bufs[i], shapes[i]);
    }
    write_tokens(&jw, &c);
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
    meta_float(&jw, scale_used);
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
    write_common_meta(&jw, &c);
    srv_jw_key(&jw, "shapes");
    srv_jw_obj_begin(&jw);
    shape_json(&jw, "query", c.query.shape, c.query.rank);
    if (c.key.data) {
        shape_json(&jw, "key", c.key.shape, c.key.rank);
        shape_json(&jw, "value", c.value.shape, c.value.rank);
    } else {
        shape_json(&jw, "key", c.query.shape, c.query.rank);
        shape_json(&jw, "value", c.query.shape, c.query.rank);
    }
    shape_json(&jw, "output", shapes[0].d, shapes[0].rank);
    shape_json(&jw, "weights", shapes[1].d, shapes[1].rank);
    srv_jw_obj_end(&jw);
    finish_json(res, &jw, empty_rows, engine_ms);
    goto done;

fail:
    srv_respond_error(res, &e);
done:
    for (int i = 0; i < 8; i++)
        free(bufs[i]);
    mha_state_free(&s);
    common_free(&c);
    cJSON_Delete(root);
}
