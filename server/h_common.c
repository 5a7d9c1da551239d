/* h_common.c - request parts the compute endpoints share: inputs, masks, options, rendering. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h_common.h"

const char *const hc_ret_names[] = {
    "output", "weights", "scores",     "weights_avg",     "head_outputs",     "q", "k",
    "v",      "pattern", "attentions", "self_attentions", "cross_attentions", NULL};

void hc_req_free(hc_req *c)
{
    srv_tensor_free(&c->query);
    srv_tensor_free(&c->key);
    srv_tensor_free(&c->value);
    srv_btensor_free(&c->mask);
    srv_btensor_free(&c->kpm);
    srv_tensor_free(&c->bias);
    free(c->globals);
    srv_pos_free(&c->pos);
}

bool hc_member(const cJSON *root, const char *key, const cJSON **out)
{
    *out = srv_json_member(root, key);
    return *out != NULL;
}

void hc_ptr_of(srv_ptr *p, const char *key)
{
    srv_ptr root;
    srv_ptr_root(&root);
    srv_ptr_key(p, &root, key);
}

bool hc_read_output_options(const cJSON *root, hc_req *c, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    if (hc_member(root, "encoding", &it)) {
        hc_ptr_of(&p, "encoding");
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

bool hc_read_causal(const cJSON *root, hc_req *c, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    c->causal = ATTN_CAUSAL_NONE;
    if (!hc_member(root, "causal", &it))
        return true;
    hc_ptr_of(&p, "causal");
    if (cJSON_IsBool(it)) {
        c->causal = cJSON_IsTrue(it) ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
    } else if (cJSON_IsString(it) && strcmp(it->valuestring, "none") == 0) {
        c->causal = ATTN_CAUSAL_NONE;
    } else if (cJSON_IsString(it) && strcmp(it->valuestring, "top_left") == 0) {
        c->causal = ATTN_CAUSAL_TOP_LEFT;
    } else if (cJSON_IsString(it) && strcmp(it->valuestring, "bottom_right") == 0) {
        c->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    } else {
        return srv_err_set(
            e, 400, SRV_CODE_INVALID, p.s,
            "causal: expected true, false, \"none\", \"top_left\" or \"bottom_right\"");
    }
    return true;
}

/* return: a list of names from allowed_mask; sets c->ret (def when absent). */
bool hc_read_return(const cJSON *root, unsigned allowed_mask, unsigned def, hc_req *c, srv_err *e)
{
    const cJSON *it;
    srv_ptr p, pi;
    c->ret = def;
    if (!hc_member(root, "return", &it))
        return true;
    hc_ptr_of(&p, "return");
    if (!cJSON_IsArray(it))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "return: expected a list of names");
    c->ret = 0;
    size_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        srv_ptr_index(&pi, &p, i);
        unsigned bit = 0;
        if (cJSON_IsString(x))
            for (size_t k = 0; hc_ret_names[k]; k++)
                if (strcmp(x->valuestring, hc_ret_names[k]) == 0 && (allowed_mask & (1u << k)))
                    bit = 1u << k;
        if (!bit) {
            char list[160] = "";
            for (size_t k = 0; hc_ret_names[k]; k++)
                if (allowed_mask & (1u << k)) {
                    if (list[0])
                        strcat(list, ", ");
                    strcat(list, hc_ret_names[k]);
                }
            return srv_err_set(e, 400, SRV_CODE_INVALID, pi.s, "return: unknown item; accepted: %s",
                               list);
        }
        c->ret |= bit;
    }
    return true;
}

bool hc_read_tokens(const cJSON *root, const char *key, size_t want, const cJSON **out, srv_err *e)
{
    const cJSON *it;
    srv_ptr p, pi;
    *out = NULL;
    if (!hc_member(root, key, &it))
        return true;
    hc_ptr_of(&p, key);
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
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: has %zu labels, expected %zu", key,
                           i, want);
    *out = it;
    return true;
}

bool hc_read_tensor(const cJSON *root, const char *key, size_t rmin, size_t rmax, bool required,
                    size_t max_el, srv_tensor *t, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    hc_ptr_of(&p, key);
    if (!hc_member(root, key, &it)) {
        if (required)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s is required", key);
        return true;
    }
    return srv_json_read_tensor(it, &p, key, rmin, rmax, false, max_el, t, e);
}

const char *hc_dims_str(const size_t *shape, size_t rank, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < rank && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "[%zu]", shape[i]);
    return buf;
}

/* Checks t (already read) has exactly the given shape. */
bool hc_expect_shape(const srv_tensor *t, const char *key, size_t rank, const size_t *shape,
                     srv_err *e)
{
    bool ok = t->rank == rank;
    for (size_t i = 0; ok && i < rank; i++)
        ok = t->shape[i] == shape[i];
    if (ok)
        return true;
    char want[96], got[96];
    srv_ptr p;
    hc_ptr_of(&p, key);
    return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: shape %s, expected %s", key,
                       hc_dims_str(t->shape, t->rank, got, sizeof got),
                       hc_dims_str(shape, rank, want, sizeof want));
}

/*
 * query/key/value with the batch rule: all rank 2, or all rank 3 with one B.
 * key/value may be absent when self_ok (self-attention: they alias query).
 */
bool hc_read_qkv(const cJSON *root, hc_req *c, bool self_ok, size_t max_el, srv_err *e)
{
    srv_ptr p;
    if (!hc_read_tensor(root, "query", 2, 3, true, max_el, &c->query, e))
        return false;
    const cJSON *k = srv_json_member(root, "key");
    const cJSON *v = srv_json_member(root, "value");
    if (self_ok && !k && !v) {
        /* self-attention: key and value are the query */
    } else {
        if (self_ok && (!k || !v)) {
            hc_ptr_of(&p, k ? "value" : "key");
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "%s is required when %s is given (omit both for self-attention)",
                               k ? "value" : "key", k ? "key" : "value");
        }
        if (!hc_read_tensor(root, "key", 2, 3, true, max_el, &c->key, e) ||
            !hc_read_tensor(root, "value", 2, 3, true, max_el, &c->value, e))
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
        hc_ptr_of(&p, kvn[i]);
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
        hc_ptr_of(&p, "value");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "value: %zu rows, key has %zu",
                           c->value.shape[qo], c->m);
    }
    return true;
}

/* mask [n][m] / [B][n][m], key_padding_mask [m] / [B][m], attn_bias [n][m] / [B][n][m]
 * (bias_heads > 0: also [H][n][m] and [B][H][n][m]). */
bool hc_read_masks(const cJSON *root, hc_req *c, size_t bias_heads, size_t max_el, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    size_t B = c->batch, n = c->n, m = c->m;
    if (hc_member(root, "mask", &it)) {
        hc_ptr_of(&p, "mask");
        if (!srv_json_read_btensor(it, &p, "mask", 2, 3, max_el, &c->mask, e))
            return false;
        bool ok = (c->mask.rank == 2 && c->mask.shape[0] == n && c->mask.shape[1] == m) ||
                  (c->mask.rank == 3 && c->batched && c->mask.shape[0] == B &&
                   c->mask.shape[1] == n && c->mask.shape[2] == m);
        if (!ok) {
            char got[96];
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "mask: shape %s, expected [%zu][%zu]%s",
                               hc_dims_str(c->mask.shape, c->mask.rank, got, sizeof got), n, m,
                               c->batched ? " or [batch][n][m]" : "");
        }
        strcpy(c->masks_given[c->n_masks_given++], "mask");
    }
    if (hc_member(root, "key_padding_mask", &it)) {
        hc_ptr_of(&p, "key_padding_mask");
        if (!srv_json_read_btensor(it, &p, "key_padding_mask", 1, 2, max_el, &c->kpm, e))
            return false;
        bool ok = (c->kpm.rank == 1 && c->kpm.shape[0] == m) ||
                  (c->kpm.rank == 2 && c->batched && c->kpm.shape[0] == B && c->kpm.shape[1] == m);
        if (!ok) {
            char got[96];
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "key_padding_mask: shape %s, expected [%zu] (one per key)%s",
                               hc_dims_str(c->kpm.shape, c->kpm.rank, got, sizeof got), m,
                               c->batched ? " or [batch][m]" : "");
        }
        strcpy(c->masks_given[c->n_masks_given++], "key_padding_mask");
    }
    if (hc_member(root, "attn_bias", &it)) {
        hc_ptr_of(&p, "attn_bias");
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
                ok = c->batched && bias_heads > 0 && t->shape[0] == B && t->shape[1] == bias_heads;
        }
        if (!ok) {
            char got[96];
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "attn_bias: shape %s, expected [%zu][%zu]%s%s",
                               hc_dims_str(t->shape, t->rank, got, sizeof got), n, m,
                               bias_heads ? " or [num_heads][n][m]" : "",
                               c->batched ? " (optionally after the batch dimension)" : "");
        }
        strcpy(c->masks_given[c->n_masks_given++], "attn_bias");
    }
    return true;
}

bool hc_read_scale_softcap(const cJSON *root, hc_req *c, srv_err *e)
{
    srv_ptr p;
    srv_ptr_root(&p);
    c->scale = 0;
    c->softcap = 0;
    if (srv_json_member(root, "scale")) {
        double s = -1;
        if (!srv_json_opt_float(root, &p, "scale", 0, INFINITY, &s, e))
            return false;
        if (!(s > 0)) {
            hc_ptr_of(&p, "scale");
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "scale: must be > 0");
        }
        c->scale = s;
    }
    if (!srv_json_opt_float(root, &p, "softcap", 0, INFINITY, &c->softcap, e))
        return false;
    return true;
}

/* A non-negative integer hc_member of the pattern object (absent: *out unchanged). */
static bool pattern_int(const cJSON *obj, const srv_ptr *where, const char *key, long long lo,
                        long long *out, srv_err *e)
{
    return srv_json_opt_int(obj, where, key, lo, (long long)1 << 40, out, e);
}

/*
 * pattern: {"window": w | [l, r], "dilation": d, "stride": s, "global_tokens": [..],
 * "block_size": b, "random": r, "seed": s}: the union of the parts given.
 */
bool hc_read_pattern(const cJSON *root, hc_req *c, srv_err *e)
{
    static const char *const keys[] = {"window",     "dilation", "stride", "global_tokens",
                                       "block_size", "random",   "seed",   NULL};
    const cJSON *pj = srv_json_member(root, "pattern");
    srv_ptr p, pk, pi;
    if (pj == NULL || cJSON_IsNull(pj))
        return true;
    hc_ptr_of(&p, "pattern");
    if (!cJSON_IsObject(pj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "pattern: expected an object such as {\"window\": 2}");
    if (!srv_json_check_keys(pj, &p, keys, e))
        return false;
    attn_pattern *pt = &c->pat;
    memset(pt, 0, sizeof *pt);
    const cJSON *w = srv_json_member(pj, "window");
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
    if (srv_json_member(pj, "dilation")) {
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
    if (srv_json_member(pj, "seed") && !pt->random) {
        srv_ptr_key(&pk, &p, "seed");
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "pattern.seed applies to random: give random too");
    }
    if (!srv_json_opt_int(pj, &p, "seed", 0, (long long)9007199254740991LL, &v, e))
        return false;
    pt->seed = (uint64_t)v;
    const cJSON *g = srv_json_member(pj, "global_tokens");
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
                                   "0..%zu",
                                   lim - 1);
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
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "pattern: invalid for %zu x %zu", c->n,
                           c->m);
    c->has_pattern = true;
    c->pattern_json = pj;
    return true;
}

/* The allowed matrix actually applied to batch element b, masks included:
 * allowed [n][m]. */
attn_status hc_allowed_for(const hc_req *c, size_t b, uint8_t *allowed)
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
    attn_masks mk = hc_masks_for(c, b, 0);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < m; j++) {
            size_t ij = i * m + j;
            if ((mk.mask && !mk.mask[ij]) || (mk.key_padding && mk.key_padding[j]))
                allowed[ij] = 0;
        }
    return ATTN_OK;
}

/* Masks of batch element b for the engine. */
attn_masks hc_masks_for(const hc_req *c, size_t b, size_t bias_heads)
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
    if (c->pos.rel_bias) { /* ALiBi / T5: the same for every batch element */
        mk.rel_bias = c->pos.rel_bias;
        mk.rel_bias_head_stride = c->n + c->m - 1;
    }
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

void hc_shape_json(srv_jw *w, const char *key, const size_t *shape, size_t rank)
{
    srv_jw_key(w, key);
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < rank; i++)
        srv_jw_uint(w, shape[i]);
    srv_jw_arr_end(w);
}

hc_shape hc_oshape(const hc_req *c, size_t a, size_t b, size_t d3)
{
    hc_shape s;
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

void hc_write_tensor(srv_jw *w, const char *key, const float *data, hc_shape s)
{
    srv_jw_key(w, key);
    srv_jw_tensor(w, data, s.rank, s.d);
}

/* A float32 meta value at full precision, whatever precision the arrays use. */
void hc_meta_float(srv_jw *w, float v)
{
    int keep = w->precision;
    w->precision = 0;
    srv_jw_float(w, v);
    w->precision = keep;
}

void hc_write_common_meta(srv_jw *w, const hc_req *c)
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
    srv_pos_meta(w, &c->pos);
    srv_jw_key(w, "batch");
    if (c->batched)
        srv_jw_uint(w, c->batch);
    else
        srv_jw_null(w);
    srv_jw_key(w, "return");
    srv_jw_arr_begin(w);
    for (size_t k = 0; hc_ret_names[k]; k++)
        if (c->ret & (1u << k))
            srv_jw_str(w, hc_ret_names[k]);
    srv_jw_arr_end(w);
    srv_jw_key(w, "encoding");
    srv_jw_str(w, c->base64 ? "base64" : "json");
    srv_jw_key(w, "precision");
    if (c->precision)
        srv_jw_int(w, c->precision);
    else
        srv_jw_null(w);
}

void hc_write_tokens(srv_jw *w, const hc_req *c)
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
void hc_finish_json(srv_response *res, srv_jw *w, size_t empty_rows, double engine_ms)
{
    srv_jw_key(w, "empty_rows");
    srv_jw_uint(w, empty_rows);
    srv_jw_key(w, "elapsed_ms");
    srv_jw_fixed(w, engine_ms, 6); /* nanoseconds: printf's digits past them are noise */
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

bool hc_engine_error(attn_status st, srv_err *e)
{
    if (st == ATTN_ERR_NOMEM)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "",
                           "out of memory for this request; try a smaller one");
    if (st == ATTN_ERR_INVALID || st == ATTN_ERR_SHAPE || st == ATTN_ERR_OVERFLOW)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "", "%s", attn_status_str(st));
    return srv_err_set(e, 500, SRV_CODE_INTERNAL, "", "engine: %s", attn_status_str(st));
}

/* Output-element limit: refuse before allocating what the answer would hold. */
bool hc_check_elements(size_t total, size_t limit, const char *hint, srv_err *e)
{
    if (total <= limit)
        return true;
    return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, "",
                       "the response would hold %zu numbers, over the limit of %zu "
                       "(--max-elements); %s",
                       total, limit, hint);
}

size_t hc_mul3(size_t a, size_t b, size_t c)
{
    if (a && b > SIZE_MAX / a)
        return SIZE_MAX;
    size_t ab = a * b;
    if (ab && c > SIZE_MAX / ab)
        return SIZE_MAX;
    return ab * c;
}

size_t hc_add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

float *hc_alloc_floats(size_t count, bool want, bool *oom)
{
    if (!want || count == 0)
        return NULL;
    float *p = malloc(count * sizeof(float));
    if (!p)
        *oom = true;
    return p;
}

/* One state_dict entry with its expected shape (bias_k/bias_v: any of [1][1][n], [1][n], [n]). */
bool hc_sd_read(const cJSON *sd, const srv_ptr *sdp, const char *key, size_t rank, size_t d0,
                size_t d1, bool flat_ok, size_t max_el, srv_tensor *t, srv_err *e)
{
    const cJSON *it = srv_json_member(sd, key);
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
                               hc_dims_str(t->shape, t->rank, got, sizeof got), d0);
        if (rank == 1)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "weights.%s: shape %s, expected [%zu]", key,
                               hc_dims_str(t->shape, t->rank, got, sizeof got), d0);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "weights.%s: shape %s, expected [%zu][%zu]", key,
                           hc_dims_str(t->shape, t->rank, got, sizeof got), d0, d1);
    }
    return true;
}

bool hc_reject_attn_mask(const cJSON *root, srv_err *e)
{
    const cJSON *it;
    srv_ptr p;
    if (!hc_member(root, "attn_mask", &it))
        return true;
    hc_ptr_of(&p, "attn_mask");
    return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                       "attn_mask is ambiguous: send mask (bool, true = may attend) "
                       "or attn_bias (float, added to scores)");
}

bool hc_check_limits(const srv_app *app, size_t n, const char *n_field, size_t m,
                     const char *m_field, size_t heads, const char *heads_field, size_t layers,
                     const char *layers_field, srv_err *e)
{
    const srv_config *c = &app->config;
    srv_ptr p;
    const size_t rows[2] = {n, m};
    const char *const fields[2] = {n_field, m_field};
    for (int i = 0; i < 2; i++)
        if (c->max_seq_len && rows[i] > c->max_seq_len) {
            hc_ptr_of(&p, fields[i]);
            return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, p.s,
                               "%s: %zu rows, over the limit of %u (--max-seq-len); send a "
                               "shorter sequence or split it",
                               fields[i], rows[i], c->max_seq_len);
        }
    if (c->max_heads && heads > c->max_heads) {
        hc_ptr_of(&p, heads_field);
        return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, p.s,
                           "%s: %zu heads, over the limit of %u (--max-heads); use fewer heads",
                           heads_field, heads, c->max_heads);
    }
    if (c->max_layers && layers > c->max_layers) {
        hc_ptr_of(&p, layers_field);
        return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, p.s,
                           "%s: %zu layers, over the limit of %u (--max-layers); use fewer "
                           "layers",
                           layers_field, layers, c->max_layers);
    }
    return true;
}
