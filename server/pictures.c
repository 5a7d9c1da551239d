/* pictures.c - answers as pictures: format negotiation, JSON answers turned into text, SVG or HTML. */
#include "pictures.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "render.h"

/* Cells one SVG (or the SVGs of one HTML page) may draw: a cell is ~150 bytes. */
#define SVG_MAX_CELLS ((size_t)1 << 18)
/* Text: rows and columns shown before eliding the middle, and the line width. */
#define TEXT_MAX_ROWS 64
#define TEXT_MAX_COLS 48
#define TEXT_WIDTH 160

static const char *const format_names[] = {"json", "text", "svg", "html"};
static const char *const format_mimes[] = {"application/json", "text/plain; charset=utf-8",
                                           "image/svg+xml", "text/html; charset=utf-8"};

const char *srv_format_mime(srv_format f)
{
    return format_mimes[f];
}

/* The format a media range names, or -1 for another or a wildcard. */
static int accept_type(const char *s, size_t len)
{
    static const char *const types[] = {"application/json", "text/plain", "image/svg+xml",
                                        "text/html"};
    for (int i = 0; i < 4; i++)
        if (strlen(types[i]) == len && strncasecmp(s, types[i], len) == 0)
            return i;
    return -1;
}

bool srv_format_negotiate(const srv_request *req, srv_format def, srv_format *out, srv_err *e)
{
    const char *q = srv_req_query(req, "format");
    *out = def;
    if (q) {
        for (int i = 0; i < 4; i++)
            if (strcmp(q, format_names[i]) == 0) {
                *out = (srv_format)i;
                return true;
            }
        return srv_err_set(e, 400, SRV_CODE_INVALID, "",
                           "format: unknown \"%.40s\"; accepted: json, text, svg, html", q);
    }
    const char *accept = srv_req_header(req, "Accept");
    if (!accept)
        return true;
    double best_q = -1;
    for (const char *p = accept; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *type = p;
        while (*p && *p != ';' && *p != ',' && *p != ' ')
            p++;
        const size_t tlen = (size_t)(p - type);
        double qv = 1;
        while (*p && *p != ',') { /* parameters: only q matters */
            if ((*p == ';' || *p == ' ') && (p[1] == 'q' || p[1] == 'Q') && p[2] == '=')
                qv = strtod(p + 3, NULL);
            p++;
        }
        const int f = accept_type(type, tlen);
        if (f >= 0 && qv > best_q && qv > 0) {
            best_q = qv;
            *out = (srv_format)f;
        }
        if (tlen == 0 && !*p)
            break;
    }
    return true;
}

/* ------------------------------------------------------------- reading stacks */

typedef struct stack {
    float *data;
    size_t shape[6];
    size_t rank;
    size_t size;
} stack;

static void stack_free(stack *s)
{
    free(s->data);
    memset(s, 0, sizeof *s);
}

static const cJSON *member(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Shape of a nested list by its first elements; false when too deep or empty. */
static bool nested_shape(const cJSON *it, stack *s)
{
    s->rank = 0;
    s->size = 1;
    while (cJSON_IsArray(it)) {
        size_t n = (size_t)cJSON_GetArraySize(it);
        if (s->rank == 6 || n == 0 || s->size > SIZE_MAX / n)
            return false;
        s->shape[s->rank++] = n;
        s->size *= n;
        it = it->child;
    }
    return s->rank > 0;
}

/* Flattens a rectangular nested list; null reads as -inf (a removed pair),
 * booleans as 1 / 0. */
static bool nested_fill(const cJSON *it, const stack *s, size_t depth, float **at)
{
    if (depth == s->rank) {
        if (cJSON_IsNumber(it))
            *(*at)++ = (float)it->valuedouble;
        else if (cJSON_IsBool(it))
            *(*at)++ = cJSON_IsTrue(it) ? 1.0f : 0.0f;
        else if (cJSON_IsNull(it))
            *(*at)++ = -INFINITY;
        else
            return false;
        return true;
    }
    if (!cJSON_IsArray(it) || (size_t)cJSON_GetArraySize(it) != s->shape[depth])
        return false;
    for (const cJSON *x = it->child; x; x = x->next)
        if (!nested_fill(x, s, depth + 1, at))
            return false;
    return true;
}

static bool read_any(const cJSON *it, stack *s);

/* {"dtype": "float32", "shape": [...], "data": base64} */
static bool read_tensor_object(const cJSON *it, stack *s)
{
    const cJSON *shape = member(it, "shape"), *data = member(it, "data");
    if (!cJSON_IsArray(shape) || !cJSON_IsString(data))
        return false;
    s->rank = 0;
    s->size = 1;
    for (const cJSON *d = shape->child; d; d = d->next) {
        if (!cJSON_IsNumber(d) || d->valuedouble < 1 || s->rank == 6)
            return false;
        size_t n = (size_t)d->valuedouble;
        if (s->size > SIZE_MAX / n / sizeof(float))
            return false;
        s->shape[s->rank++] = n;
        s->size *= n;
    }
    size_t len = strlen(data->valuestring), got = 0, bad = 0;
    unsigned char *raw = malloc(srv_base64_decoded_max(len) + 1);
    if (!raw || !srv_base64_decode(data->valuestring, len, raw, &got, &bad) ||
        got != s->size * sizeof(float) || !(s->data = malloc(got))) {
        free(raw);
        return false;
    }
    memcpy(s->data, raw, got); /* little-endian float32, as the service writes it */
    free(raw);
    return true;
}

/* {"rows", "cols", "values", "shape": [n, m]}: sparsify's triplets, densified. */
static bool read_coo(const cJSON *it, stack *s)
{
    const cJSON *rows = member(it, "rows"), *cols = member(it, "cols"), *shape = member(it, "shape");
    stack vals = {0};
    if (!cJSON_IsArray(rows) || !cJSON_IsArray(cols) || cJSON_GetArraySize(shape) != 2 ||
        !read_any(member(it, "values"), &vals))
        goto bad;
    size_t n = (size_t)cJSON_GetArrayItem(shape, 0)->valuedouble,
           m = (size_t)cJSON_GetArrayItem(shape, 1)->valuedouble;
    size_t nnz = (size_t)cJSON_GetArraySize(rows);
    if (n == 0 || m == 0 || (m && n > SIZE_MAX / m / sizeof(float)) || vals.size != nnz ||
        (size_t)cJSON_GetArraySize(cols) != nnz)
        goto bad;
    if (!(s->data = calloc(n * m, sizeof(float))))
        goto bad;
    s->rank = 2;
    s->shape[0] = n;
    s->shape[1] = m;
    s->size = n * m;
    size_t t = 0;
    for (const cJSON *r = rows->child, *c = cols->child; r && c; r = r->next, c = c->next, t++) {
        size_t i = (size_t)r->valuedouble, j = (size_t)c->valuedouble;
        if (i >= n || j >= m)
            goto bad;
        s->data[i * m + j] = vals.data[t];
    }
    stack_free(&vals);
    return true;
bad:
    stack_free(&vals);
    stack_free(s);
    return false;
}

/* A nested list, a tensor object, sparsify triplets, or a list of those (stacked). */
static bool read_any(const cJSON *it, stack *s)
{
    memset(s, 0, sizeof *s);
    if (cJSON_IsObject(it))
        return member(it, "rows") ? read_coo(it, s) : read_tensor_object(it, s);
    if (!cJSON_IsArray(it) || !it->child)
        return false;
    if (cJSON_IsObject(it->child)) { /* per head / per batch element objects */
        size_t count = (size_t)cJSON_GetArraySize(it), k = 0;
        for (const cJSON *x = it->child; x; x = x->next, k++) {
            stack one;
            if (!read_any(x, &one))
                goto bad;
            if (k == 0) {
                if (one.rank == 6 || one.size > SIZE_MAX / count / sizeof(float) ||
                    !(s->data = malloc(count * one.size * sizeof(float)))) {
                    stack_free(&one);
                    goto bad;
                }
                s->rank = one.rank + 1;
                s->shape[0] = count;
                memcpy(s->shape + 1, one.shape, one.rank * sizeof(size_t));
                s->size = count * one.size;
            } else if (one.size * count != s->size) {
                stack_free(&one);
                goto bad;
            }
            memcpy(s->data + k * one.size, one.data, one.size * sizeof(float));
            stack_free(&one);
        }
        return true;
    }
    if (!nested_shape(it, s) || s->size > SIZE_MAX / sizeof(float) ||
        !(s->data = malloc(s->size * sizeof(float))))
        goto bad;
    float *at = s->data;
    if (!nested_fill(it, s, 0, &at))
        goto bad;
    return true;
bad:
    stack_free(s);
    return false;
}

/* ------------------------------------------------------------- sections */

/* Members that hold attention, in the order they are drawn. */
static const char *const section_keys[] = {
    "attentions", "self_attentions", "cross_attentions", "encoder_attentions",
    "decoder_attentions", "weights", "weights_avg", "scores", "pattern", NULL};

static bool is_layered(const char *key)
{
    return strstr(key, "attentions") != NULL;
}

/* Labels of an answer's "tokens"-like member when it has want entries. */
static const char **labels_of(const cJSON *root, const char *key, size_t want)
{
    const cJSON *t = member(root, key);
    if (!cJSON_IsArray(t) || (size_t)cJSON_GetArraySize(t) != want)
        return NULL;
    const char **out = calloc(want ? want : 1, sizeof *out);
    size_t i = 0;
    for (const cJSON *x = t->child; out && x; x = x->next, i++)
        out[i] = cJSON_IsString(x) ? x->valuestring : NULL;
    return out;
}

/* A view of stack s of member key; false when its rank makes no sense. */
static bool view_of(const char *key, const stack *s, bool batched, srv_view *v)
{
    memset(v, 0, sizeof *v);
    if (s->rank < 2 || s->rank > 5)
        return false;
    v->data = s->data;
    v->n = s->shape[s->rank - 2];
    v->m = s->shape[s->rank - 1];
    v->layers = v->heads = 1;
    if (is_layered(key)) {
        if (s->rank == 3) {
            v->heads = s->shape[0];
        } else if (s->rank >= 4) {
            v->heads = s->shape[s->rank - 3];
            v->layers = s->size / (v->heads * v->n * v->m); /* batch x layers, batch-major */
            v->show_layer = true;
        }
    } else {
        if (s->rank == 3 && batched) {
            v->layers = s->shape[0];
            v->outer_name = "batch";
            v->show_layer = true;
        } else if (s->rank == 3) {
            v->heads = s->shape[0];
        } else if (s->rank == 4) {
            v->layers = s->shape[0];
            v->heads = s->shape[1];
            v->outer_name = "batch";
            v->show_layer = true;
        } else if (s->rank != 2) {
            return false;
        }
    }
    v->title = key;
    return true;
}

typedef struct section {
    const char *key;
    stack s;
    srv_view v;
    const char **rows, **cols;
    size_t *layer_ids, *head_ids;
} section;

static void sections_free(section *sec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        stack_free(&sec[i].s);
        free(sec[i].rows);
        free(sec[i].cols);
        free(sec[i].layer_ids);
        free(sec[i].head_ids);
    }
}

/* A list of want numbers >= 0 (meta "layers" / "heads"), or NULL. */
static size_t *ids_of(const cJSON *list, size_t want)
{
    if (!cJSON_IsArray(list) || (size_t)cJSON_GetArraySize(list) != want || want == 0)
        return NULL;
    size_t *out = malloc(want * sizeof *out), i = 0;
    for (const cJSON *x = list->child; out && x; x = x->next, i++) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0) {
            free(out);
            return NULL;
        }
        out[i] = (size_t)x->valuedouble;
    }
    return out;
}

/* Reads every stack of the answer into sec (up to 9); returns how many. */
static size_t sections_read(const cJSON *root, section *sec)
{
    const cJSON *meta = member(root, "meta");
    const bool batched = cJSON_IsNumber(member(meta, "batch"));
    size_t k = 0;
    for (size_t i = 0; section_keys[i]; i++) {
        const cJSON *it = member(root, section_keys[i]);
        if (!it)
            continue;
        section *x = &sec[k];
        memset(x, 0, sizeof *x);
        x->key = section_keys[i];
        if (!read_any(it, &x->s) || !view_of(x->key, &x->s, batched, &x->v)) {
            stack_free(&x->s);
            continue;
        }
        /* an encoder-decoder answer (/v1/models) labels decoder rows with decoder_tokens
         * and the encoder's keys with tokens */
        const bool dec_rows = member(root, "decoder_tokens") &&
                              (strcmp(x->key, "decoder_attentions") == 0 ||
                               strcmp(x->key, "cross_attentions") == 0);
        x->rows = labels_of(root, dec_rows ? "decoder_tokens" : "tokens", x->v.n);
        x->cols = labels_of(root, "key_tokens", x->v.m);
        if (!x->cols && strcmp(x->key, "cross_attentions") == 0)
            x->cols = labels_of(root, dec_rows ? "tokens" : "memory_tokens", x->v.m);
        if (!x->cols && dec_rows && strcmp(x->key, "decoder_attentions") == 0)
            x->cols = labels_of(root, "decoder_tokens", x->v.m);
        if (!x->cols && !member(root, "key_tokens") && strcmp(x->key, "cross_attentions") != 0)
            x->cols = labels_of(root, "tokens", x->v.m);
        x->v.row_labels = x->rows;
        x->v.col_labels = x->cols;
        /* a model's answer names the layers and heads it selected */
        x->layer_ids = ids_of(member(meta, "layers"), x->v.layers);
        x->head_ids = ids_of(member(meta, "heads"), x->v.heads);
        x->v.layer_ids = x->layer_ids;
        x->v.head_ids = x->head_ids;
        k++;
    }
    return k;
}

/* ------------------------------------------------------------- output */

static bool svg_fits(const section *sec, size_t n, srv_err *e)
{
    size_t cells = 0;
    for (size_t i = 0; i < n; i++) {
        size_t c = srv_view_cells(&sec[i].v);
        cells = c > SIZE_MAX - cells ? SIZE_MAX : cells + c;
    }
    if (cells <= SVG_MAX_CELLS)
        return true;
    return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, "",
                       "%zu cells are too many to draw (the limit is %zu): ask for fewer "
                       "heads, layers or tokens, for text/plain (which elides), or for JSON",
                       cells, SVG_MAX_CELLS);
}

/* Appends the SVG of a view without its XML declaration (for inline HTML). */
static void svg_inline(const srv_view *v, srv_buf *out)
{
    srv_buf tmp;
    srv_buf_init(&tmp);
    srv_render_svg(v, &tmp);
    const char *start = tmp.data ? strstr(tmp.data, "<svg") : NULL;
    if (start)
        srv_buf_append(out, start, tmp.len - (size_t)(start - tmp.data));
    else
        out->oom = true;
    srv_buf_free(&tmp);
}

static void html_page(const srv_request *req, const cJSON *root, section *sec, size_t n,
                      srv_buf *out)
{
    srv_buf_puts(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                      "<title>explore-attention: ");
    srv_xml_escape(out, req->path ? req->path : "");
    srv_buf_puts(out,
                 "</title>\n<style>\nbody{font-family:DejaVu Sans,Verdana,sans-serif;margin:1.5em;"
                 "color:#222}\nh1{font-size:1.3em}\nh2{font-size:1.1em;margin-top:1.6em}\n"
                 "pre{font-size:12px;background:#f4f4f4;padding:.6em;overflow:auto}\n"
                 ".pic{overflow:auto}\n</style>\n</head>\n<body>\n<h1>");
    srv_buf_puts(out, req->method ? req->method : "POST");
    srv_buf_puts(out, " ");
    srv_xml_escape(out, req->path ? req->path : "");
    srv_buf_puts(out, "</h1>\n<p>Computed by explore-attention " SRV_VERSION
                      ". Hover a cell for its value. This page is self-contained: save it and "
                      "open it offline.</p>\n");
    for (size_t i = 0; i < n; i++) {
        srv_buf_printf(out, "<h2 id=\"%s\">%s</h2>\n<div class=\"pic\">\n", sec[i].key,
                       sec[i].key);
        svg_inline(&sec[i].v, out);
        srv_buf_puts(out, "</div>\n<details><summary>as text</summary>\n<pre>");
        srv_buf tb;
        srv_buf_init(&tb);
        srv_render_text(&sec[i].v, TEXT_WIDTH, TEXT_MAX_ROWS, TEXT_MAX_COLS, &tb);
        srv_buf_append(&tb, "", 1);
        srv_xml_escape(out, tb.data ? tb.data : "");
        srv_buf_free(&tb);
        srv_buf_puts(out, "</pre>\n</details>\n");
    }
    char *meta = cJSON_Print(member(root, "meta"));
    srv_buf_puts(out, "<h2>meta</h2>\n<pre>");
    srv_xml_escape(out, meta ? meta : "{}");
    free(meta);
    srv_buf_puts(out, "</pre>\n<details><summary>request</summary>\n<pre>");
    if (req->body && req->body_len) {
        srv_buf tmp;
        srv_buf_init(&tmp);
        srv_buf_append(&tmp, req->body, req->body_len < 65536 ? req->body_len : 65536);
        srv_buf_append(&tmp, "", 1);
        srv_xml_escape(out, tmp.data ? tmp.data : "");
        srv_buf_free(&tmp);
    }
    srv_buf_puts(out, "</pre>\n</details>\n</body>\n</html>\n");
}

/* Renders sections in format f into res (200), or an error. */
static void render_sections(const srv_request *req, const cJSON *root, section *sec, size_t n,
                            srv_format f, srv_response *res)
{
    srv_err e;
    srv_buf b;
    srv_buf_init(&b);
    if (f == SRV_FORMAT_SVG) {
        const char *view = srv_req_query(req, "view");
        size_t pick = 0;
        if (view) {
            pick = n;
            for (size_t i = 0; i < n; i++)
                if (strcmp(sec[i].key, view) == 0)
                    pick = i;
            if (pick == n) {
                char have[200] = "";
                for (size_t i = 0; i < n; i++)
                    snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s",
                             i ? ", " : "", sec[i].key);
                srv_err_set(&e, 400, SRV_CODE_INVALID, "",
                            "view: this answer has no \"%.40s\"; it has: %s", view, have);
                srv_respond_error(res, &e);
                return;
            }
        }
        if (!svg_fits(&sec[pick], 1, &e)) {
            srv_respond_error(res, &e);
            return;
        }
        srv_render_svg(&sec[pick].v, &b);
    } else if (f == SRV_FORMAT_TEXT) {
        for (size_t i = 0; i < n; i++) {
            if (i)
                srv_buf_puts(&b, "\n");
            srv_render_text(&sec[i].v, TEXT_WIDTH, TEXT_MAX_ROWS, TEXT_MAX_COLS, &b);
        }
    } else {
        if (!svg_fits(sec, n, &e)) {
            srv_respond_error(res, &e);
            return;
        }
        html_page(req, root, sec, n, &b);
    }
    size_t len = 0;
    char *body = srv_buf_detach(&b, &len);
    if (!body) {
        srv_err_set(&e, 503, SRV_CODE_UNAVAILABLE, "", "out of memory while drawing the answer");
        srv_respond_error(res, &e);
        return;
    }
    const double inference = res->inference_ms;
    srv_response_clear(res);
    srv_response_set(res, 200, srv_format_mime(f), body, len);
    res->inference_ms = inference;
}

void srv_pictures_convert(const srv_request *req, srv_format f, srv_response *res)
{
    if (f == SRV_FORMAT_JSON || res->status != 200 || !res->body)
        return;
    srv_err e;
    cJSON *root = cJSON_ParseWithLength(res->body, res->body_len);
    section sec[9];
    size_t n = root ? sections_read(root, sec) : 0;
    if (n == 0) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, "",
                    "this answer holds no attention to draw: ask for weights (or scores, "
                    "pattern, attentions) in \"return\", or for JSON");
        srv_respond_error(res, &e);
    } else {
        render_sections(req, root, sec, n, f, res);
    }
    sections_free(sec, n);
    cJSON_Delete(root);
}

/* ------------------------------------------------------------- POST /v1/render */

void srv_h_render(srv_app *app, const srv_request *req, srv_response *res)
{
    static const char *const keys[] = {"weights", "tokens", "key_tokens", "title", NULL};
    srv_err e;
    srv_format f;
    srv_ptr root_ptr, p;
    section sec;
    (void)app;
    memset(&sec, 0, sizeof sec);
    srv_ptr_root(&root_ptr);
    cJSON *root = srv_json_parse_object(req->body, req->body_len, &e);
    if (!root || !srv_json_check_keys(root, &root_ptr, keys, &e) ||
        !srv_format_negotiate(req, SRV_FORMAT_SVG, &f, &e))
        goto fail;
    if (f == SRV_FORMAT_JSON) {
        /* JSON is what the caller already has: draw the default picture */
        f = srv_req_query(req, "format") ? SRV_FORMAT_JSON : SRV_FORMAT_SVG;
        if (f == SRV_FORMAT_JSON) {
            srv_err_set(&e, 400, SRV_CODE_INVALID, "",
                        "format: /v1/render answers text, svg or html");
            goto fail;
        }
    }
    const cJSON *w = member(root, "weights");
    srv_ptr_key(&p, &root_ptr, "weights");
    if (!w) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "weights is required: [n][m], [H][n][m] or [L][H][n][m]");
        goto fail;
    }
    if (!read_any(w, &sec.s) || sec.s.rank < 2 || sec.s.rank > 4) {
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s,
                    "weights: expected a rectangular [n][m], [H][n][m] or [L][H][n][m] list of "
                    "numbers (null = removed), or a tensor object");
        goto fail;
    }
    sec.key = "attentions"; /* [H][n][m] is heads, [L][H][n][m] layers and heads */
    view_of(sec.key, &sec.s, false, &sec.v);
    const cJSON *title = member(root, "title");
    if (title && !cJSON_IsString(title)) {
        srv_ptr_key(&p, &root_ptr, "title");
        srv_err_set(&e, 400, SRV_CODE_INVALID, p.s, "title: expected a string");
        goto fail;
    }
    sec.v.title = title ? title->valuestring : "weights";
    static const char *const lk[2] = {"tokens", "key_tokens"};
    const size_t want[2] = {sec.v.n, sec.v.m};
    for (int i = 0; i < 2; i++) {
        const cJSON *t = member(root, lk[i]);
        if (!t)
            continue;
        const char **l = labels_of(root, lk[i], want[i]);
        bool strings = l != NULL;
        for (size_t k = 0; strings && k < want[i]; k++)
            strings = l[k] != NULL;
        if (!strings) {
            free(l);
            srv_ptr_key(&p, &root_ptr, lk[i]);
            srv_err_set(&e, 400, SRV_CODE_INVALID, p.s, "%s: expected %zu strings", lk[i],
                        want[i]);
            goto fail;
        }
        if (i == 0)
            sec.rows = l;
        else
            sec.cols = l;
    }
    if (!sec.cols && !member(root, "key_tokens") && sec.v.n == sec.v.m && sec.rows) {
        sec.cols = calloc(sec.v.m, sizeof *sec.cols);
        if (sec.cols)
            memcpy(sec.cols, sec.rows, sec.v.m * sizeof *sec.cols);
    }
    sec.v.row_labels = sec.rows;
    sec.v.col_labels = sec.cols;
    const double t0 = srv_now_ms();
    render_sections(req, root, &sec, 1, f, res);
    if (res->status == 200)
        res->inference_ms = srv_now_ms() - t0 > 0 ? srv_now_ms() - t0 : 1e-6;
    goto done;
fail:
    srv_respond_error(res, &e);
done:
    sections_free(&sec, 1);
    srv_json_delete(root);
}
