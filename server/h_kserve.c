/* h_kserve.c - the Open Inference Protocol (KServe v2) over the pretrained models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h_common.h"
#include "h_models.h"

/*
 * https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
 * Tensors travel as {"name", "datatype", "shape", "data"} with data flattened
 * row-major (nested lists are flattened too). Errors are {"error": "..."}.
 * One model version exists: "1". Request "parameters" may carry "layers" and
 * "heads" (the selection of /v1/models); other parameters are ignored, as
 * the protocol lets servers do.
 */

#define V2_VERSION "1"
#define V2_MAX_DIMS 4

/* {"error": message} with e's status (the protocol's error shape). */
static void v2_error(srv_response *res, const srv_err *e)
{
    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_jw_init(&w, &b, 0, false);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "error");
    srv_jw_str(&w, e->message);
    srv_jw_obj_end(&w);
    size_t len = 0;
    char *body = srv_buf_detach(&b, &len);
    if (!body) {
        srv_response_text(res, 500, "application/json", "{\"error\":\"out of memory\"}");
        return;
    }
    srv_response_set(res, e->status, "application/json", body, len);
    res->error_code = e->code;
}

static void send_doc(srv_response *res, int status, srv_buf *b)
{
    size_t len = 0;
    char *body = srv_buf_detach(b, &len);
    if (!body) {
        srv_response_text(res, 500, "application/json", "{\"error\":\"out of memory\"}");
        return;
    }
    srv_response_set(res, status, "application/json", body, len);
}

/* The route's {version} (when the path has one) must be "1". */
static bool version_ok(const srv_request *req, srv_err *e)
{
    if (req->n_params < 2 || strcmp(req->params[1], V2_VERSION) == 0)
        return true;
    return srv_err_set(e, 404, SRV_CODE_NOT_FOUND, "",
                       "model '%.100s' has no version '%.20s' (only \"" V2_VERSION "\")",
                       req->params[0], req->params[1]);
}

void srv_h_v2_server(srv_app *app, const srv_request *req, srv_response *res)
{
    (void)app;
    (void)req;
    srv_response_text(res, 200, "application/json",
                      "{\"name\":\"explore-attention\",\"version\":\"" SRV_VERSION
                      "\",\"extensions\":[]}");
}

void srv_h_v2_live(srv_app *app, const srv_request *req, srv_response *res)
{
    (void)app;
    (void)req;
    srv_response_text(res, 200, "application/json", "{\"live\":true}");
}

void srv_h_v2_ready(srv_app *app, const srv_request *req, srv_response *res)
{
    (void)req;
    const bool ready = app->ready && !app->draining;
    srv_response_text(res, ready ? 200 : 503, "application/json",
                      ready ? "{\"ready\":true}" : "{\"ready\":false}");
}

void srv_h_v2_model_ready(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    bool loading = false;
    const char *name = req->params[0];
    if (!version_ok(req, &e)) {
        v2_error(res, &e);
        return;
    }
    const attn_pretrained *m = srv_models_get(app->models, name, &loading);
    if (!m && !loading) {
        hm_req r;
        memset(&r, 0, sizeof r);
        hm_lookup(app, name, &r, &e);
        v2_error(res, &e);
        return;
    }
    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_jw_init(&w, &b, 0, false);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "name");
    srv_jw_str(&w, name);
    srv_jw_key(&w, "ready");
    srv_jw_bool(&w, m != NULL);
    srv_jw_obj_end(&w);
    send_doc(res, m ? 200 : 503, &b);
}

/* {"name", "datatype", "shape": [dims, -1 for any]} */
static void tensor_meta(srv_jw *w, const char *name, const char *datatype, const long long *shape,
                        size_t rank)
{
    srv_jw_obj_begin(w);
    srv_jw_key(w, "name");
    srv_jw_str(w, name);
    srv_jw_key(w, "datatype");
    srv_jw_str(w, datatype);
    srv_jw_key(w, "shape");
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < rank; i++)
        srv_jw_int(w, shape[i]);
    srv_jw_arr_end(w);
    srv_jw_obj_end(w);
}

void srv_h_v2_model(srv_app *app, const srv_request *req, srv_response *res)
{
    srv_err e;
    hm_req r;
    memset(&r, 0, sizeof r);
    if (!version_ok(req, &e) || !hm_lookup(app, req->params[0], &r, &e)) {
        v2_error(res, &e);
        return;
    }
    const attn_pretrained_info *in = r.info;
    const bool bart = in->arch == ATTN_ARCH_BART;
    const long long L = (long long)in->num_layers, H = (long long)in->num_heads;
    const long long Ld = (long long)in->decoder_layers, Hd = (long long)in->decoder_heads;
    const long long E = (long long)in->hidden_size, hd = E / H;
    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    srv_jw_init(&w, &b, 0, false);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "name");
    srv_jw_str(&w, r.name);
    srv_jw_key(&w, "versions");
    srv_jw_arr_begin(&w);
    srv_jw_str(&w, V2_VERSION);
    srv_jw_arr_end(&w);
    srv_jw_key(&w, "platform");
    srv_jw_str(&w, "explore-attention");
    srv_jw_key(&w, "inputs");
    srv_jw_arr_begin(&w);
    if (in->arch == ATTN_ARCH_VIT) {
        const long long S = (long long)in->image_size;
        tensor_meta(&w, "pixel_values", "FP32",
                    (const long long[]){1, (long long)in->num_channels, S, S}, 4);
    } else {
        if (attn_pretrained_tokenizer(r.m))
            tensor_meta(&w, "text", "BYTES", (const long long[]){1}, 1);
        tensor_meta(&w, "input_ids", "INT64", (const long long[]){1, -1}, 2);
        tensor_meta(&w, "attention_mask", "INT64", (const long long[]){1, -1}, 2);
        if (in->arch == ATTN_ARCH_BERT)
            tensor_meta(&w, "token_type_ids", "INT64", (const long long[]){1, -1}, 2);
        if (bart)
            tensor_meta(&w, "decoder_input_ids", "INT64", (const long long[]){1, -1}, 2);
    }
    srv_jw_arr_end(&w);
    srv_jw_key(&w, "outputs");
    srv_jw_arr_begin(&w);
    const unsigned allowed = hm_allowed(in);
    for (int k = 0; k < HM_N_OUT; k++) {
        if (!(allowed & (1u << k)))
            continue;
        long long s[4];
        size_t rank = 4;
        switch ((hm_out)k) {
        case HM_ATTENTIONS:
        case HM_ENC_ATTENTIONS:
            memcpy(s, (const long long[]){L, H, -1, -1}, sizeof s);
            break;
        case HM_DEC_ATTENTIONS:
        case HM_CROSS_ATTENTIONS:
            memcpy(s, (const long long[]){Ld, Hd, -1, -1}, sizeof s);
            break;
        case HM_Q:
        case HM_K:
        case HM_V:
            memcpy(s, (const long long[]){L, H, -1, hd}, sizeof s);
            break;
        case HM_HIDDEN:
        case HM_ENC_HIDDEN:
            memcpy(s, (const long long[]){L + 1, -1, E, 0}, sizeof s);
            rank = 3;
            break;
        case HM_DEC_HIDDEN:
            memcpy(s, (const long long[]){Ld + 1, -1, E, 0}, sizeof s);
            rank = 3;
            break;
        case HM_POOLER:
            s[0] = E;
            rank = 1;
            break;
        default: /* last hidden states */
            s[0] = -1;
            s[1] = E;
            rank = 2;
            break;
        }
        tensor_meta(&w, hm_out_names[k], "FP32", s, rank);
    }
    if (in->arch != ATTN_ARCH_VIT) {
        tensor_meta(&w, "tokens", "BYTES", (const long long[]){-1}, 1);
        tensor_meta(&w, "input_ids", "INT64", (const long long[]){1, -1}, 2);
    }
    srv_jw_arr_end(&w);
    srv_jw_obj_end(&w);
    send_doc(res, 200, &b);
}

/* ------------------------------------------------------------ infer */

/* One input tensor of the request, its data flattened. */
typedef struct v2_input {
    const char *name;
    const char *datatype;
    size_t shape[V2_MAX_DIMS];
    size_t rank;
    size_t count;
    double *num;       /* numeric data [count] */
    const char **strs; /* BYTES data [count] (pointers into the request) */
} v2_input;

static void inputs_free(v2_input *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(in[i].num);
        free(in[i].strs);
    }
    free(in);
}

/* Flattens data (nested lists allowed) into t; false at the first bad element. */
static bool flatten(const cJSON *it, v2_input *t, bool bytes, size_t *at, const char *where,
                    srv_err *e)
{
    if (cJSON_IsArray(it)) {
        for (const cJSON *x = it->child; x; x = x->next)
            if (!flatten(x, t, bytes, at, where, e))
                return false;
        return true;
    }
    if (*at >= t->count)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "%s: more data than the shape's %zu elements", where, t->count);
    if (bytes) {
        if (!cJSON_IsString(it))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "%s: element %zu: BYTES data must be strings", where, *at);
        t->strs[(*at)++] = it->valuestring;
        return true;
    }
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "%s: element %zu: expected a finite number", where, *at);
    t->num[(*at)++] = it->valuedouble;
    return true;
}

static bool read_input(const cJSON *obj, size_t i, size_t max_el, v2_input *t, srv_err *e)
{
    char where[96];
    snprintf(where, sizeof where, "inputs[%zu]", i);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(obj, "datatype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(obj, "data");
    if (!cJSON_IsObject(obj) || !cJSON_IsString(name) || !cJSON_IsString(dt) ||
        !cJSON_IsArray(shape) || !data)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "%s: expected {\"name\", \"datatype\", \"shape\", \"data\"}", where);
    snprintf(where, sizeof where, "inputs[%zu] (%.40s)", i, name->valuestring);
    t->name = name->valuestring;
    t->datatype = dt->valuestring;
    static const char *const types[] = {"INT64",  "INT32",  "INT16", "INT8", "UINT64",
                                        "UINT32", "UINT16", "UINT8", "FP32", "FP64",
                                        "FP16",   "BYTES",  "BOOL",  NULL};
    bool known = false;
    for (size_t k = 0; types[k]; k++)
        known = known || strcmp(types[k], t->datatype) == 0;
    if (!known)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "", "%s: unknown datatype \"%.20s\"", where,
                           t->datatype);
    t->count = 1;
    for (const cJSON *d = shape->child; d; d = d->next) {
        if (t->rank == V2_MAX_DIMS || !cJSON_IsNumber(d) || d->valuedouble < 0 ||
            d->valuedouble != floor(d->valuedouble) || d->valuedouble > (double)max_el)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "%s: shape must be at most %d sizes >= 0", where, V2_MAX_DIMS);
        t->shape[t->rank++] = (size_t)d->valuedouble;
        t->count = hc_mul3(t->count, (size_t)d->valuedouble, 1);
    }
    if (t->count > max_el)
        return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, "",
                           "%s: %zu elements, over the limit of %zu (--max-elements)", where,
                           t->count, max_el);
    const bool bytes = strcmp(t->datatype, "BYTES") == 0;
    if (bytes)
        t->strs = calloc(t->count ? t->count : 1, sizeof *t->strs);
    else
        t->num = calloc(t->count ? t->count : 1, sizeof *t->num);
    if (!t->strs && !t->num)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
    size_t at = 0;
    if (!flatten(data, t, bytes, &at, where, e))
        return false;
    if (at != t->count)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "", "%s: %zu data elements for a shape of %zu",
                           where, at, t->count);
    return true;
}

/* A sequence input: shape [n] or [1, n], integer data. *n_out = n. */
static bool sequence_of(const v2_input *t, int32_t **out, size_t *n_out, long long lo, long long hi,
                        srv_err *e)
{
    if (!(t->rank == 1 || (t->rank == 2 && t->shape[0] == 1)))
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "%s: shape must be [1, n] or [n] (one sequence per request)", t->name);
    if (t->num == NULL)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "", "%s: expected an INT64 tensor", t->name);
    *out = malloc((t->count ? t->count : 1) * sizeof **out);
    if (!*out)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
    for (size_t i = 0; i < t->count; i++) {
        const double d = t->num[i];
        if (d != floor(d) || d < (double)lo || d > (double)hi)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "%s[%zu]: expected an integer from %lld to %lld", t->name, i, lo,
                               hi);
        (*out)[i] = (int32_t)d;
    }
    *n_out = t->count;
    return true;
}

static const v2_input *find_input(const v2_input *in, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(in[i].name, name) == 0)
            return &in[i];
    return NULL;
}

/* The request's inputs into r. */
static bool fill_request(srv_app *app, const v2_input *in, size_t n_in, hm_req *r, srv_err *e)
{
    static const char *const known[] = {
        "input_ids",         "text",         "text_pair", "token_type_ids", "attention_mask",
        "decoder_input_ids", "pixel_values", NULL};
    (void)app;
    for (size_t i = 0; i < n_in; i++) {
        bool ok = false;
        for (size_t k = 0; known[k]; k++)
            ok = ok || strcmp(in[i].name, known[k]) == 0;
        if (!ok)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "inputs[%zu]: unknown input \"%.40s\" (GET /v2/models/%s lists "
                               "the inputs)",
                               i, in[i].name, r->name);
        if (find_input(in, i, in[i].name))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "", "inputs[%zu]: \"%s\" given twice", i,
                               in[i].name);
    }
    const attn_pretrained_info *info = r->info;
    if (info->arch == ATTN_ARCH_VIT) {
        const v2_input *px = find_input(in, n_in, "pixel_values");
        if (!px || n_in != 1)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "model '%s' (vit) takes one input, pixel_values (FP32 [1, %zu, "
                               "%zu, %zu])",
                               r->name, info->num_channels, info->image_size, info->image_size);
        const size_t C = info->num_channels, S = info->image_size;
        const size_t off = px->rank == 4 ? 1 : 0;
        if (!px->num || !(px->rank == 3 || (px->rank == 4 && px->shape[0] == 1)) ||
            px->shape[off] != C || px->shape[off + 1] != S || px->shape[off + 2] != S)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "pixel_values: expected FP32 of shape [1, %zu, %zu, %zu] (already "
                               "normalised)",
                               C, S, S);
        r->pixels = malloc(px->count * sizeof(float));
        if (!r->pixels)
            return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
        for (size_t i = 0; i < px->count; i++)
            r->pixels[i] = (float)px->num[i];
        r->n = info->max_positions;
        return true;
    }
    const v2_input *text = find_input(in, n_in, "text"), *ids = find_input(in, n_in, "input_ids");
    const v2_input *pair = find_input(in, n_in, "text_pair");
    if ((text != NULL) == (ids != NULL))
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "send either a text (BYTES) or an input_ids (INT64) input%s",
                           text ? ", not both" : "");
    if (find_input(in, n_in, "pixel_values"))
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "pixel_values: model '%s' takes text or input_ids", r->name);
    if (text) {
        if (!text->strs || text->count != 1 || (pair && (!pair->strs || pair->count != 1)))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "text: expected one BYTES element (shape [1])");
        if (!hm_encode_text(r, text->strs[0], strlen(text->strs[0]), pair ? pair->strs[0] : NULL,
                            pair ? strlen(pair->strs[0]) : 0, "text", e))
            return false;
    } else {
        if (pair)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "", "text_pair: goes with text");
        if (!sequence_of(ids, &r->ids, &r->n, -2147483648LL, 2147483647LL, e) ||
            !hm_check_ids(r, r->ids, r->n, "input_ids", e))
            return false;
    }
    const v2_input *types = find_input(in, n_in, "token_type_ids");
    const v2_input *mask = find_input(in, n_in, "attention_mask");
    const v2_input *dec = find_input(in, n_in, "decoder_input_ids");
    size_t count = 0;
    if (types) {
        if (info->arch != ATTN_ARCH_BERT || pair)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "", "token_type_ids: %s",
                               pair ? "text_pair already sets them" : "only BERT takes them");
        if (!sequence_of(types, &r->types, &count, 0, (long long)info->type_vocab_size - 1, e))
            return false;
        if (count != r->n)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "token_type_ids: %zu values for %zu tokens", count, r->n);
    }
    if (mask) {
        int32_t *m32 = NULL;
        if (!sequence_of(mask, &m32, &count, 0, 1, e)) {
            free(m32);
            return false;
        }
        r->mask = malloc(count ? count : 1);
        for (size_t i = 0; r->mask && i < count; i++)
            r->mask[i] = (uint8_t)m32[i];
        free(m32);
        if (!r->mask)
            return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
        if (count != r->n)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "attention_mask: %zu values for %zu tokens", count, r->n);
    }
    if (dec) {
        if (info->arch != ATTN_ARCH_BART)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "decoder_input_ids: only BART takes them");
        if (!sequence_of(dec, &r->dec_ids, &r->n_dec, -2147483648LL, 2147483647LL, e) ||
            !hm_check_ids(r, r->dec_ids, r->n_dec, "decoder_input_ids", e))
            return false;
    }
    return true;
}

/* parameters.layers / parameters.heads: lists of integers. */
static bool read_param_list(const cJSON *params, const char *key, size_t **out, size_t *n,
                            srv_err *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!it)
        return true;
    if (!cJSON_IsArray(it) || !it->child)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "parameters.%s: expected a non-empty list of integers", key);
    *n = (size_t)cJSON_GetArraySize(it);
    *out = malloc(*n * sizeof **out);
    if (!*out)
        return srv_err_set(e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
    size_t i = 0;
    for (const cJSON *x = it->child; x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 1e6 ||
            x->valuedouble != floor(x->valuedouble))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "parameters.%s[%zu]: expected an integer >= 0", key, i);
        (*out)[i] = (size_t)x->valuedouble;
    }
    return true;
}

static bool read_outputs(const cJSON *root, hm_req *r, bool *extra, srv_err *e)
{
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
    const unsigned allowed = hm_allowed(r->info);
    extra[0] = extra[1] = false;
    if (!outs) {
        r->want = hm_default(r->info) | (1u << HM_LAST_HIDDEN);
        return true;
    }
    if (!cJSON_IsArray(outs) || !outs->child)
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "outputs: expected a non-empty list of {\"name\": ...}");
    r->want = 0;
    size_t i = 0;
    for (const cJSON *o = outs->child; o; o = o->next, i++) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
        if (!cJSON_IsString(name))
            return srv_err_set(e, 400, SRV_CODE_INVALID, "", "outputs[%zu]: expected a name", i);
        bool found = false;
        for (int k = 0; k < HM_N_OUT && !found; k++)
            if ((allowed & (1u << k)) && strcmp(name->valuestring, hm_out_names[k]) == 0) {
                r->want |= 1u << k;
                found = true;
            }
        if (!found && r->info->arch != ATTN_ARCH_VIT) {
            if (strcmp(name->valuestring, "tokens") == 0)
                found = extra[0] = true;
            else if (strcmp(name->valuestring, "input_ids") == 0)
                found = extra[1] = true;
        }
        if (!found)
            return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                               "outputs[%zu]: model '%s' has no output \"%.40s\" (GET "
                               "/v2/models/%s lists them)",
                               i, r->name, name->valuestring, r->name);
    }
    return true;
}

static void write_output_head(srv_jw *w, const char *name, const char *datatype,
                              const size_t *shape, size_t rank)
{
    srv_jw_obj_begin(w);
    srv_jw_key(w, "name");
    srv_jw_str(w, name);
    srv_jw_key(w, "datatype");
    srv_jw_str(w, datatype);
    srv_jw_key(w, "shape");
    srv_jw_arr_begin(w);
    for (size_t i = 0; i < rank; i++)
        srv_jw_uint(w, shape[i]);
    srv_jw_arr_end(w);
    srv_jw_key(w, "data");
    srv_jw_arr_begin(w);
}

void srv_h_v2_infer(srv_app *app, const srv_request *req, srv_response *res)
{
    static const char *const keys[] = {"id", "inputs", "outputs", "parameters", NULL};
    srv_err e;
    hm_req r;
    hm_res o;
    memset(&r, 0, sizeof r);
    memset(&o, 0, sizeof o);
    v2_input *in = NULL;
    size_t n_in = 0;
    bool extra[2];
    srv_ptr rp;
    srv_ptr_root(&rp);
    cJSON *root = NULL;
    if (!version_ok(req, &e) || !hm_lookup(app, req->params[0], &r, &e))
        goto fail;
    root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root || !srv_json_check_keys(root, &rp, keys, &e))
        goto fail;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    if (id && !cJSON_IsString(id)) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, "", "id: expected a string");
        goto fail;
    }
    if (!cJSON_IsArray(inputs) || !inputs->child) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, "",
                    "inputs: expected a non-empty list of tensors {\"name\", \"datatype\", "
                    "\"shape\", \"data\"}");
        goto fail;
    }
    if (params && !cJSON_IsObject(params)) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, "", "parameters: expected an object");
        goto fail;
    }
    n_in = (size_t)cJSON_GetArraySize(inputs);
    in = calloc(n_in, sizeof *in);
    if (!in) {
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory");
        goto fail;
    }
    size_t i = 0;
    for (const cJSON *x = inputs->child; x; x = x->next, i++)
        if (!read_input(x, i, app->config.max_elements, &in[i], &e))
            goto fail;
    if (!fill_request(app, in, n_in, &r, &e) || !read_outputs(root, &r, extra, &e) ||
        !read_param_list(params, "layers", &r.layers, &r.n_layers, &e) ||
        !read_param_list(params, "heads", &r.heads, &r.n_heads, &e) || !hm_run(app, &r, &o, &e))
        goto fail;

    srv_buf b;
    srv_jw w;
    srv_buf_init(&b);
    size_t total = 0;
    for (int k = 0; k < HM_N_OUT; k++)
        if (o.buf[k])
            total = hc_add_sat(total, o.count[k]);
    srv_buf_reserve(&b, 1024 + (total < ((size_t)1 << 28) ? total * 12 : 0));
    srv_jw_init(&w, &b, 0, false);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "model_name");
    srv_jw_str(&w, r.name);
    srv_jw_key(&w, "model_version");
    srv_jw_str(&w, V2_VERSION);
    if (id) {
        srv_jw_key(&w, "id");
        srv_jw_str(&w, id->valuestring);
    }
    srv_jw_key(&w, "outputs");
    srv_jw_arr_begin(&w);
    for (int k = 0; k < HM_N_OUT; k++) {
        if (!o.buf[k])
            continue;
        write_output_head(&w, hm_out_names[k], "FP32", o.shape[k], o.rank[k]);
        for (size_t j = 0; j < o.count[k]; j++)
            srv_jw_float(&w, o.buf[k][j]);
        srv_jw_arr_end(&w);
        srv_jw_obj_end(&w);
    }
    if (extra[0]) {
        write_output_head(&w, "tokens", "BYTES", (const size_t[]){r.n}, 1);
        for (size_t j = 0; j < r.n; j++)
            srv_jw_str(&w, r.tokens[j]);
        srv_jw_arr_end(&w);
        srv_jw_obj_end(&w);
    }
    if (extra[1]) {
        write_output_head(&w, "input_ids", "INT64", (const size_t[]){1, r.n}, 2);
        for (size_t j = 0; j < r.n; j++)
            srv_jw_int(&w, r.ids[j]);
        srv_jw_arr_end(&w);
        srv_jw_obj_end(&w);
    }
    srv_jw_arr_end(&w);
    srv_jw_obj_end(&w);
    send_doc(res, 200, &b);
    res->inference_ms = o.engine_ms > 0 ? o.engine_ms : 1e-6;
    goto done;
fail:
    v2_error(res, &e);
done:
    inputs_free(in, n_in);
    hm_res_free(&o);
    hm_req_free(&r);
    srv_json_delete(root);
}
