/* positional.c - positional encodings: the "positional" member and POST /v1/positional_encoding. */
#include "positional.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h_common.h"

static const char *const type_names[] = {
    [SRV_POS_NONE] = NULL,          [SRV_POS_SINUSOIDAL] = "sinusoidal",
    [SRV_POS_LEARNED] = "learned",  [SRV_POS_ROPE] = "rope",
    [SRV_POS_ALIBI] = "alibi",      [SRV_POS_RELATIVE] = "relative",
    [SRV_POS_T5] = "t5",
};

#define N_TYPES (sizeof type_names / sizeof type_names[0])

const char *srv_pos_type_name(srv_pos_type t)
{
    return (unsigned)t < N_TYPES ? type_names[t] : NULL;
}

/* Widest table a request may ask for: positions and buckets are counts, not floats. */
#define MAX_COUNT ((long long)1 << 24)

void srv_pos_free(srv_pos *p)
{
    srv_tensor_free(&p->table);
    srv_tensor_free(&p->key_table);
    srv_tensor_free(&p->value_table);
    free(p->slopes);
    free(p->rel_bias);
    p->slopes = NULL;
    p->rel_bias = NULL;
}

bool srv_pos_adds_to(const srv_pos *p, size_t input)
{
    return (p->type == SRV_POS_SINUSOIDAL || p->type == SRV_POS_LEARNED) &&
           (p->inputs & (1u << input));
}

/* rope_style: "half" (default) or "interleaved". */
static bool read_rope_style(const cJSON *obj, const srv_ptr *where, attn_rope_style *out,
                            srv_err *e)
{
    char style[16] = "half";
    srv_ptr p;
    if (!srv_json_opt_string(obj, where, "rope_style", style, sizeof style, e))
        return false;
    if (strcmp(style, "half") == 0) {
        *out = ATTN_ROPE_HALF;
    } else if (strcmp(style, "interleaved") == 0) {
        *out = ATTN_ROPE_INTERLEAVED;
    } else {
        srv_ptr_key(&p, where, "rope_style");
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "rope_style: expected \"half\" (HuggingFace rotate_half) or "
                           "\"interleaved\" (GPT-J pairs)");
    }
    return true;
}

/* A table member with an exact shape [d0][d1] (required or not). */
static bool read_table(const cJSON *obj, const srv_ptr *where, const char *key, bool required,
                       size_t d0, size_t d1, const char *what, size_t max_el, srv_tensor *t,
                       srv_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    srv_ptr p;
    srv_ptr_key(&p, where, key);
    if (!it) {
        if (required)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "positional.%s is required (%s)",
                               key, what);
        return true;
    }
    if (!srv_json_read_tensor(it, &p, key, 2, 2, false, max_el, t, e))
        return false;
    if ((d0 && t->shape[0] != d0) || t->shape[1] != d1) {
        char got[64];
        if (d0)
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "positional.%s: shape %s, expected [%zu][%zu] (%s)", key,
                               hc_dims_str(t->shape, t->rank, got, sizeof got), d0, d1, what);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "positional.%s: shape %s, expected [max_len][%zu] (%s)", key,
                           hc_dims_str(t->shape, t->rank, got, sizeof got), d1, what);
    }
    return true;
}

/* "inputs": which named inputs an additive table goes to; also checks their widths. */
static bool read_inputs(const cJSON *obj, const srv_ptr *where, const srv_pos_dims *d,
                        srv_pos *p, srv_err *e)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(obj, "inputs");
    srv_ptr pp, pi;
    srv_ptr_key(&pp, where, "inputs");
    p->inputs = 0;
    if (!in) {
        for (size_t i = 0; d->input_names[i]; i++)
            if (d->input_widths[i])
                p->inputs |= 1u << i;
        return true;
    }
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) == 0)
        return srv_err_set(e, 400, SRV_CODE_INVALID, pp.s,
                           "positional.inputs: expected a non-empty list of input names");
    size_t k = 0;
    for (const cJSON *x = in->child; x; x = x->next, k++) {
        srv_ptr_index(&pi, &pp, k);
        size_t found = SIZE_MAX;
        for (size_t i = 0; cJSON_IsString(x) && d->input_names[i]; i++)
            if (strcmp(x->valuestring, d->input_names[i]) == 0 && d->input_widths[i])
                found = i;
        if (found == SIZE_MAX) {
            char list[96] = "";
            for (size_t i = 0; d->input_names[i]; i++)
                if (d->input_widths[i]) {
                    if (list[0])
                        strcat(list, ", ");
                    strcat(list, d->input_names[i]);
                }
            return srv_err_set(e, 400, SRV_CODE_INVALID, pi.s,
                               "positional.inputs: unknown input; this request has: %s", list);
        }
        p->inputs |= 1u << found;
    }
    return true;
}

bool srv_pos_read(const cJSON *root, const srv_pos_dims *d, size_t max_el, srv_pos *p,
                  srv_err *e)
{
    static const char *const keys[] = {"type",        "base",        "rope_style",  "table",
                                       "inputs",      "slopes",      "clip",        "key_table",
                                       "value_table", "num_buckets", "max_distance",
                                       "bidirectional", NULL};
    /* the members each type takes besides "type" */
    static const char *const allowed[][6] = {
        [SRV_POS_SINUSOIDAL] = {"base", "inputs", NULL},
        [SRV_POS_LEARNED] = {"table", "inputs", NULL},
        [SRV_POS_ROPE] = {"base", "rope_style", NULL},
        [SRV_POS_ALIBI] = {"slopes", NULL},
        [SRV_POS_RELATIVE] = {"clip", "key_table", "value_table", NULL},
        [SRV_POS_T5] = {"table", "num_buckets", "max_distance", "bidirectional", NULL},
    };
    const cJSON *pj = cJSON_GetObjectItemCaseSensitive(root, "positional");
    srv_ptr where, pk;
    memset(p, 0, sizeof *p);
    p->heads = d->heads;
    p->input_names = d->input_names;
    if (!pj || cJSON_IsNull(pj))
        return true;
    hc_ptr_of(&where, "positional");
    if (!cJSON_IsObject(pj))
        return srv_err_set(e, 400, SRV_CODE_INVALID, where.s,
                           "positional: expected an object such as {\"type\": \"rope\"}");
    if (!srv_json_check_keys(pj, &where, keys, e))
        return false;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(pj, "type");
    srv_ptr_key(&pk, &where, "type");
    for (size_t i = 1; i < N_TYPES && cJSON_IsString(t); i++)
        if (strcmp(t->valuestring, type_names[i]) == 0)
            p->type = (srv_pos_type)i;
    if (p->type == SRV_POS_NONE)
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "positional.type: expected one of sinusoidal, learned, rope, alibi, "
                           "relative, t5");
    for (const cJSON *m = pj->child; m; m = m->next) {
        bool ok = strcmp(m->string, "type") == 0;
        for (size_t i = 0; !ok && allowed[p->type][i]; i++)
            ok = strcmp(m->string, allowed[p->type][i]) == 0;
        if (!ok) {
            srv_ptr_key(&pk, &where, m->string);
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "positional.%s does not apply to type \"%s\"", m->string,
                               type_names[p->type]);
        }
    }
    p->json = pj;
    bool additive = p->type == SRV_POS_SINUSOIDAL || p->type == SRV_POS_LEARNED;
    if (!additive && !d->softmax) {
        srv_ptr_key(&pk, &where, "type");
        return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                           "positional.type \"%s\" needs softmax attention; a linear kernel "
                           "takes sinusoidal or learned tables (added to the inputs)",
                           type_names[p->type]);
    }

    switch (p->type) {
    case SRV_POS_SINUSOIDAL:
        p->base = 10000;
        if (!srv_json_opt_float(pj, &where, "base", 1.0 + 1e-9, 1e12, &p->base, e))
            return false;
        return read_inputs(pj, &where, d, p, e);
    case SRV_POS_LEARNED: {
        if (!read_inputs(pj, &where, d, p, e))
            return false;
        size_t width = 0;
        for (size_t i = 0; d->input_names[i]; i++) {
            if (!(p->inputs & (1u << i)))
                continue;
            if (width && d->input_widths[i] != width) {
                srv_ptr_key(&pk, &where, "inputs");
                return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                                   "positional: a learned table has one width, but the inputs "
                                   "it goes to have %zu and %zu; choose inputs of one width",
                                   width, d->input_widths[i]);
            }
            width = d->input_widths[i];
        }
        return read_table(pj, &where, "table", true, 0, width, "one row per position",
                          max_el, &p->table, e);
    }
    case SRV_POS_ROPE:
        p->base = 10000;
        if (!srv_json_opt_float(pj, &where, "base", 1.0 + 1e-9, 1e12, &p->base, e) ||
            !read_rope_style(pj, &where, &p->rope_style, e))
            return false;
        if (d->head_dim % 2 != 0) {
            srv_ptr_key(&pk, &where, "type");
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "positional: rope turns pairs of dimensions, but the head "
                               "dimension is %zu (odd)",
                               d->head_dim);
        }
        return true;
    case SRV_POS_ALIBI: {
        p->slopes = malloc(d->heads * sizeof *p->slopes);
        if (!p->slopes)
            return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
        const cJSON *sj = cJSON_GetObjectItemCaseSensitive(pj, "slopes");
        if (!sj) {
            attn_alibi_slopes(d->heads, p->slopes);
            return true;
        }
        srv_tensor s = {0};
        srv_ptr_key(&pk, &where, "slopes");
        if (!srv_json_read_tensor(sj, &pk, "slopes", 1, 1, false, max_el, &s, e))
            return false;
        bool ok = s.shape[0] == d->heads;
        if (ok)
            memcpy(p->slopes, s.data, d->heads * sizeof *p->slopes);
        srv_tensor_free(&s);
        if (!ok)
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "positional.slopes: %zu values, expected one per head (%zu)",
                               s.shape[0], d->heads);
        return true;
    }
    case SRV_POS_RELATIVE: {
        long long k = -1;
        srv_ptr_key(&pk, &where, "clip");
        if (!cJSON_GetObjectItemCaseSensitive(pj, "clip"))
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "positional.clip is required: the clipping distance k (tables "
                               "have 2k + 1 rows)");
        if (!srv_json_opt_int(pj, &where, "clip", 0, MAX_COUNT, &k, e))
            return false;
        p->clip = (size_t)k;
        if (!cJSON_GetObjectItemCaseSensitive(pj, "key_table") &&
            !cJSON_GetObjectItemCaseSensitive(pj, "value_table")) {
            srv_ptr_key(&pk, &where, "key_table");
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "positional: relative needs key_table [2k + 1][%zu] and/or "
                               "value_table [2k + 1][%zu]",
                               d->head_dim, d->head_dim_v);
        }
        return read_table(pj, &where, "key_table", false, 2 * p->clip + 1, d->head_dim,
                          "one row per clipped distance -k..k, head width", max_el,
                          &p->key_table, e) &&
               read_table(pj, &where, "value_table", false, 2 * p->clip + 1, d->head_dim_v,
                          "one row per clipped distance -k..k, head width", max_el,
                          &p->value_table, e);
    }
    case SRV_POS_T5: {
        long long nb = 32, md = 128;
        p->bidirectional = true;
        if (!srv_json_opt_int(pj, &where, "num_buckets", 2, MAX_COUNT, &nb, e) ||
            !srv_json_opt_int(pj, &where, "max_distance", 1, MAX_COUNT, &md, e) ||
            !srv_json_opt_bool(pj, &where, "bidirectional", &p->bidirectional, e))
            return false;
        p->num_buckets = nb;
        p->max_distance = md;
        if (attn_t5_bucket(0, p->bidirectional, nb, md) < 0) {
            srv_ptr_key(&pk, &where, "max_distance");
            return srv_err_set(e, 400, SRV_CODE_INVALID, pk.s,
                               "positional: max_distance must exceed the exact range "
                               "(num_buckets / %d) and num_buckets be at least %d",
                               p->bidirectional ? 4 : 2, p->bidirectional ? 4 : 2);
        }
        return read_table(pj, &where, "table", true, (size_t)nb, d->heads,
                          "one row per bucket, one column per head", max_el, &p->table, e);
    }
    default:
        return true;
    }
}

bool srv_pos_add(const srv_pos *p, float *x, size_t batch, size_t rows, size_t width,
                 const char *field, srv_err *e)
{
    srv_ptr pp;
    if (p->type == SRV_POS_LEARNED) {
        if (rows > p->table.shape[0]) {
            hc_ptr_of(&pp, field);
            return srv_err_set(e, 400, SRV_CODE_INVALID, pp.s,
                               "%s: %zu positions, but the learned table has %zu rows", field,
                               rows, p->table.shape[0]);
        }
        for (size_t b = 0; b < batch; b++)
            for (size_t i = 0; i < rows * width; i++)
                x[b * rows * width + i] += p->table.data[i];
        return true;
    }
    if (p->type != SRV_POS_SINUSOIDAL)
        return true;
    float *pe = malloc((rows * width > 0 ? rows * width : 1) * sizeof *pe);
    if (!pe)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
    attn_pos_sinusoidal(rows, width, 0, p->base, pe);
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < rows * width; i++)
            x[b * rows * width + i] += pe[i];
    free(pe);
    return true;
}

bool srv_pos_apply(srv_pos *p, size_t n, size_t m, attn_params *ap, srv_err *e)
{
    switch (p->type) {
    case SRV_POS_ROPE:
        ap->pos.rope = true;
        ap->pos.rope_style = p->rope_style;
        ap->pos.rope_base = (float)p->base;
        return true;
    case SRV_POS_RELATIVE:
        ap->pos.shaw_clip = p->clip;
        ap->pos.shaw_k = p->key_table.data;
        ap->pos.shaw_v = p->value_table.data;
        return true;
    case SRV_POS_ALIBI:
    case SRV_POS_T5:
        break;
    default:
        return true;
    }
    if (n == 0 || m == 0)
        return true;
    /* one bias per distance j - i = -(n - 1) .. m - 1, per head */
    const size_t len = n + m - 1;
    free(p->rel_bias);
    p->rel_bias = malloc(p->heads * len * sizeof *p->rel_bias);
    if (!p->rel_bias)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "",
                           "out of memory for this request; try a smaller one");
    for (size_t h = 0; h < p->heads; h++)
        for (size_t t = 0; t < len; t++) {
            const int64_t rel = (int64_t)t - (int64_t)(n - 1);
            float v;
            if (p->type == SRV_POS_ALIBI) {
                v = rel == 0 ? 0.0f : -p->slopes[h] * (float)(rel < 0 ? -rel : rel);
            } else {
                int64_t bucket =
                    attn_t5_bucket(rel, p->bidirectional, p->num_buckets, p->max_distance);
                v = p->table.data[(size_t)bucket * p->heads + h];
            }
            p->rel_bias[h * len + t] = v;
        }
    ap->masks.rel_bias = p->rel_bias;
    ap->masks.rel_bias_head_stride = len;
    return true;
}

void srv_pos_meta(srv_jw *w, const srv_pos *p)
{
    if (p->type == SRV_POS_NONE)
        return;
    srv_jw_key(w, "positional");
    srv_jw_obj_begin(w);
    srv_jw_key(w, "type");
    srv_jw_str(w, type_names[p->type]);
    switch (p->type) {
    case SRV_POS_SINUSOIDAL:
    case SRV_POS_LEARNED:
        srv_jw_key(w, "inputs");
        srv_jw_arr_begin(w);
        for (size_t i = 0; p->input_names && p->input_names[i]; i++)
            if (p->inputs & (1u << i))
                srv_jw_str(w, p->input_names[i]);
        srv_jw_arr_end(w);
        if (p->type == SRV_POS_SINUSOIDAL) {
            srv_jw_key(w, "base");
            srv_jw_double(w, p->base);
        }
        break;
    case SRV_POS_ROPE:
        srv_jw_key(w, "base");
        srv_jw_double(w, p->base);
        srv_jw_key(w, "rope_style");
        srv_jw_str(w, p->rope_style == ATTN_ROPE_HALF ? "half" : "interleaved");
        break;
    case SRV_POS_ALIBI:
        srv_jw_key(w, "slopes");
        srv_jw_arr_begin(w);
        for (size_t h = 0; h < p->heads; h++)
            hc_meta_float(w, p->slopes[h]);
        srv_jw_arr_end(w);
        break;
    case SRV_POS_RELATIVE:
        srv_jw_key(w, "clip");
        srv_jw_uint(w, p->clip);
        srv_jw_key(w, "tables");
        srv_jw_arr_begin(w);
        if (p->key_table.data)
            srv_jw_str(w, "key_table");
        if (p->value_table.data)
            srv_jw_str(w, "value_table");
        srv_jw_arr_end(w);
        break;
    case SRV_POS_T5:
        srv_jw_key(w, "num_buckets");
        srv_jw_int(w, p->num_buckets);
        srv_jw_key(w, "max_distance");
        srv_jw_int(w, p->max_distance);
        srv_jw_key(w, "bidirectional");
        srv_jw_bool(w, p->bidirectional);
        break;
    default:
        break;
    }
    srv_jw_obj_end(w);
}

/* ------------------------------------------------ POST /v1/positional_encoding */

static const char *const endpoint_keys[] = {
    "type",      "length",       "dim",         "base",          "offset",
    "num_heads", "slopes",       "num_buckets", "max_distance",  "bidirectional",
    "key_length", "relative_positions", "query", "key",          "rope_style",
    "encoding",  "precision",    NULL};

/* The members each type takes (besides type, encoding, precision). */
static bool check_members(const cJSON *root, const char *type, const char *const *ok,
                          srv_err *e)
{
    static const char *const always[] = {"type", "encoding", "precision", NULL};
    for (const cJSON *m = root->child; m; m = m->next) {
        bool fine = false;
        for (size_t i = 0; !fine && always[i]; i++)
            fine = strcmp(m->string, always[i]) == 0;
        for (size_t i = 0; !fine && ok[i]; i++)
            fine = strcmp(m->string, ok[i]) == 0;
        if (!fine) {
            srv_ptr p;
            hc_ptr_of(&p, m->string);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s does not apply to type \"%s\"",
                               m->string, type);
        }
    }
    return true;
}

static bool require(const cJSON *root, const char *key, const char *what, srv_err *e)
{
    if (cJSON_GetObjectItemCaseSensitive(root, key))
        return true;
    srv_ptr p;
    hc_ptr_of(&p, key);
    return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s is required (%s)", key, what);
}

/* query/key for rope: [n][d], [H][n][d] or [B][H][n][d]; rotated along n. */
static bool rope_one(const cJSON *root, const char *key, attn_rope_style style, double base,
                     size_t offset, size_t max_el, srv_tensor *t, srv_err *e)
{
    if (!hc_read_tensor(root, key, 2, 4, false, max_el, t, e))
        return false;
    if (!t->data)
        return true;
    size_t d = t->shape[t->rank - 1], n = t->shape[t->rank - 2];
    if (d % 2 != 0) {
        srv_ptr p;
        hc_ptr_of(&p, key);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "%s: rope turns pairs of dimensions, but rows have %zu values (odd)",
                           key, d);
    }
    size_t stacks = t->size / (n * d);
    for (size_t s = 0; s < stacks; s++)
        attn_rope_apply(style, base, n, d, offset, t->data + s * n * d, d);
    return true;
}

void srv_h_positional(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    hc_req c; /* output options only */
    srv_tensor q = {0}, k = {0}, slopes_in = {0};
    float *table = NULL, *slopes = NULL, *bias = NULL;
    size_t max_el = app->config.max_elements;
    srv_ptr root_ptr, p;
    memset(&c, 0, sizeof c);
    srv_ptr_root(&root_ptr);

    cJSON *root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root)
        goto fail;
    if (!srv_json_check_keys(root, &root_ptr, endpoint_keys, &e) ||
        !hc_read_output_options(root, &c, &e) || !require(root, "type", "sinusoidal, alibi, t5 or rope", &e))
        goto fail;
    char type[16] = "";
    if (!srv_json_opt_string(root, &root_ptr, "type", type, sizeof type, &e))
        goto fail;

    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_jw_init(&w, &b, c.precision, c.base64);
    double t0 = srv_now_ms(), elapsed = 0;
    long long length = 0, dim = 0, offset = 0, heads = 0, key_length = 0;

    if (strcmp(type, "sinusoidal") == 0) {
        static const char *const ok[] = {"length", "dim", "base", "offset", NULL};
        double base = 10000;
        if (!check_members(root, type, ok, &e) || !require(root, "length", "positions", &e) ||
            !require(root, "dim", "table width", &e) ||
            !srv_json_opt_int(root, &root_ptr, "length", 1, MAX_COUNT, &length, &e) ||
            !srv_json_opt_int(root, &root_ptr, "dim", 1, MAX_COUNT, &dim, &e) ||
            !srv_json_opt_int(root, &root_ptr, "offset", 0, MAX_COUNT, &offset, &e) ||
            !srv_json_opt_float(root, &root_ptr, "base", 1.0 + 1e-9, 1e12, &base, &e) ||
            !hc_check_elements(hc_mul3(1, (size_t)length, (size_t)dim), max_el,
                               "ask for a shorter or narrower table", &e))
            goto fail_buf;
        if (!(table = malloc((size_t)length * (size_t)dim * sizeof *table)))
            goto oom;
        attn_pos_sinusoidal((size_t)length, (size_t)dim, (size_t)offset, base, table);
        elapsed = srv_now_ms() - t0;
        size_t shape[2] = {(size_t)length, (size_t)dim};
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "pe");
        srv_jw_tensor(&w, table, 2, shape);
        srv_jw_key(&w, "meta");
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "type");
        srv_jw_str(&w, type);
        srv_jw_key(&w, "base");
        srv_jw_double(&w, base);
        srv_jw_key(&w, "offset");
        srv_jw_int(&w, offset);
        hc_shape_json(&w, "shape", shape, 2);
    } else if (strcmp(type, "alibi") == 0) {
        static const char *const ok[] = {"num_heads", "length", "key_length", "slopes", NULL};
        if (!check_members(root, type, ok, &e) ||
            !require(root, "num_heads", "one slope per head", &e) ||
            !srv_json_opt_int(root, &root_ptr, "num_heads", 1, 4096, &heads, &e) ||
            !srv_json_opt_int(root, &root_ptr, "length", 1, MAX_COUNT, &length, &e) ||
            !srv_json_opt_int(root, &root_ptr, "key_length", 1, MAX_COUNT, &key_length, &e))
            goto fail_buf;
        size_t H = (size_t)heads, n = (size_t)length, m = key_length ? (size_t)key_length : n;
        if (key_length && !length) {
            hc_ptr_of(&p, "key_length");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s, "key_length needs length");
            goto fail_buf;
        }
        if (!hc_check_elements(hc_add_sat(H, hc_mul3(H, n, m)), max_el,
                               "leave out length for the slopes alone, or ask for fewer "
                               "positions",
                               &e))
            goto fail_buf;
        if (!(slopes = malloc(H * sizeof *slopes)))
            goto oom;
        if (cJSON_GetObjectItemCaseSensitive(root, "slopes")) {
            if (!hc_read_tensor(root, "slopes", 1, 1, false, max_el, &slopes_in, &e))
                goto fail_buf;
            if (slopes_in.shape[0] != H) {
                hc_ptr_of(&p, "slopes");
                srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                            "slopes: %zu values, expected num_heads (%zu)", slopes_in.shape[0],
                            H);
                goto fail_buf;
            }
            memcpy(slopes, slopes_in.data, H * sizeof *slopes);
        } else {
            attn_alibi_slopes(H, slopes);
        }
        if (n && !(bias = malloc(H * n * m * sizeof *bias)))
            goto oom;
        for (size_t h = 0; n && h < H; h++)
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < m; j++)
                    bias[(h * n + i) * m + j] =
                        i == j ? 0.0f : -slopes[h] * (float)(i > j ? i - j : j - i);
        elapsed = srv_now_ms() - t0;
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "slopes");
        srv_jw_tensor(&w, slopes, 1, &H);
        size_t shape[3] = {H, n, m};
        if (n) {
            srv_jw_key(&w, "bias");
            srv_jw_tensor(&w, bias, 3, shape);
        }
        srv_jw_key(&w, "meta");
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "type");
        srv_jw_str(&w, type);
        srv_jw_key(&w, "bias");
        srv_jw_str(&w, "-slope_h * |i - j| (for j <= i: Press et al.'s -m (i - j))");
        if (n)
            hc_shape_json(&w, "shape", shape, 3);
    } else if (strcmp(type, "t5") == 0) {
        static const char *const ok[] = {"num_buckets", "max_distance", "bidirectional",
                                         "length", "key_length", "relative_positions", NULL};
        long long nb = 32, md = 128;
        bool bi = true;
        if (!check_members(root, type, ok, &e) ||
            !srv_json_opt_int(root, &root_ptr, "num_buckets", 2, MAX_COUNT, &nb, &e) ||
            !srv_json_opt_int(root, &root_ptr, "max_distance", 1, MAX_COUNT, &md, &e) ||
            !srv_json_opt_bool(root, &root_ptr, "bidirectional", &bi, &e) ||
            !srv_json_opt_int(root, &root_ptr, "length", 1, MAX_COUNT, &length, &e) ||
            !srv_json_opt_int(root, &root_ptr, "key_length", 1, MAX_COUNT, &key_length, &e))
            goto fail_buf;
        if (attn_t5_bucket(0, bi, nb, md) < 0) {
            hc_ptr_of(&p, "max_distance");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                        "max_distance must exceed the exact range (num_buckets / %d) and "
                        "num_buckets be at least %d",
                        bi ? 4 : 2, bi ? 4 : 2);
            goto fail_buf;
        }
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "relative_positions");
        if (!length == !rp) {
            hc_ptr_of(&p, rp ? "relative_positions" : "length");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                        "give length (buckets [n][m] of key_pos - query_pos) or "
                        "relative_positions (a list), not both");
            goto fail_buf;
        }
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "buckets");
        size_t shape[2];
        size_t rank;
        if (rp) {
            srv_tensor rel = {0};
            hc_ptr_of(&p, "relative_positions");
            if (!srv_json_read_tensor(rp, &p, "relative_positions", 1, 1, false, max_el, &rel,
                                      &e)) {
                srv_tensor_free(&rel);
                goto fail_buf;
            }
            for (size_t i = 0; i < rel.size; i++)
                if (rel.data[i] != floorf(rel.data[i]) || fabsf(rel.data[i]) > 16777216.0f) {
                    srv_ptr pi;
                    srv_ptr_index(&pi, &p, i);
                    srv_tensor_free(&rel);
                    srv_err_set(&e, 400, SRV_CODE_INVALID, pi.s,
                                "relative_positions: expected integers (key_pos - query_pos)");
                    goto fail_buf;
                }
            rank = 1;
            shape[0] = rel.size;
            srv_jw_arr_begin(&w);
            for (size_t i = 0; i < rel.size; i++)
                srv_jw_int(&w, attn_t5_bucket((int64_t)rel.data[i], bi, nb, md));
            srv_jw_arr_end(&w);
            srv_tensor_free(&rel);
        } else {
            size_t n = (size_t)length, m = key_length ? (size_t)key_length : n;
            if (!hc_check_elements(hc_mul3(1, n, m), max_el, "ask for fewer positions", &e))
                goto fail_buf;
            rank = 2;
            shape[0] = n;
            shape[1] = m;
            srv_jw_arr_begin(&w);
            for (size_t i = 0; i < n; i++) {
                srv_jw_arr_begin(&w);
                for (size_t j = 0; j < m; j++)
                    srv_jw_int(&w, attn_t5_bucket((int64_t)j - (int64_t)i, bi, nb, md));
                srv_jw_arr_end(&w);
            }
            srv_jw_arr_end(&w);
        }
        elapsed = srv_now_ms() - t0;
        srv_jw_key(&w, "meta");
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "type");
        srv_jw_str(&w, type);
        srv_jw_key(&w, "num_buckets");
        srv_jw_int(&w, nb);
        srv_jw_key(&w, "max_distance");
        srv_jw_int(&w, md);
        srv_jw_key(&w, "bidirectional");
        srv_jw_bool(&w, bi);
        srv_jw_key(&w, "relative_position");
        srv_jw_str(&w, "key_pos - query_pos");
        hc_shape_json(&w, "shape", shape, rank);
    } else if (strcmp(type, "rope") == 0) {
        static const char *const ok[] = {"base", "query", "key", "rope_style", "offset", NULL};
        double base = 10000;
        attn_rope_style style = ATTN_ROPE_HALF;
        if (!check_members(root, type, ok, &e) ||
            !srv_json_opt_float(root, &root_ptr, "base", 1.0 + 1e-9, 1e12, &base, &e) ||
            !srv_json_opt_int(root, &root_ptr, "offset", 0, MAX_COUNT, &offset, &e) ||
            !read_rope_style(root, &root_ptr, &style, &e))
            goto fail_buf;
        if (!cJSON_GetObjectItemCaseSensitive(root, "query") &&
            !cJSON_GetObjectItemCaseSensitive(root, "key")) {
            hc_ptr_of(&p, "query");
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                        "rope needs query and/or key ([n][d], [H][n][d] or [B][H][n][d])");
            goto fail_buf;
        }
        if (!rope_one(root, "query", style, base, (size_t)offset, max_el, &q, &e) ||
            !rope_one(root, "key", style, base, (size_t)offset, max_el, &k, &e))
            goto fail_buf;
        elapsed = srv_now_ms() - t0;
        srv_jw_obj_begin(&w);
        if (q.data) {
            srv_jw_key(&w, "query");
            srv_jw_tensor(&w, q.data, q.rank, q.shape);
        }
        if (k.data) {
            srv_jw_key(&w, "key");
            srv_jw_tensor(&w, k.data, k.rank, k.shape);
        }
        srv_jw_key(&w, "meta");
        srv_jw_obj_begin(&w);
        srv_jw_key(&w, "type");
        srv_jw_str(&w, type);
        srv_jw_key(&w, "base");
        srv_jw_double(&w, base);
        srv_jw_key(&w, "rope_style");
        srv_jw_str(&w, style == ATTN_ROPE_HALF ? "half" : "interleaved");
        srv_jw_key(&w, "offset");
        srv_jw_int(&w, offset);
    } else {
        hc_ptr_of(&p, "type");
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "type: expected \"sinusoidal\", \"alibi\", \"t5\" or \"rope\" (learned and "
                    "relative tables are given in attention requests)");
        goto fail_buf;
    }
    srv_jw_key(&w, "encoding");
    srv_jw_str(&w, c.base64 ? "base64" : "json");
    srv_jw_key(&w, "elapsed_ms");
    srv_jw_fixed(&w, elapsed, 6);
    srv_jw_obj_end(&w);
    srv_jw_obj_end(&w);
    size_t len = 0;
    char *body = srv_buf_detach(&b, &len);
    if (!body)
        goto oom;
    srv_response_set(res, 200, "application/json", body, len);
    res->inference_ms = elapsed > 0 ? elapsed : 1e-6;
    goto done;

oom:
    srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory for this request");
fail_buf:
    srv_buf_free(&b);
fail:
    srv_respond_error(res, &e);
done:
    srv_tensor_free(&q);
    srv_tensor_free(&k);
    srv_tensor_free(&slopes_in);
    free(table);
    free(slopes);
    free(bias);
    srv_json_delete(root);
}
