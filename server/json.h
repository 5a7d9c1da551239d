/* json.h - JSON in (tensors from cJSON with JSON-Pointer errors) and out (a streaming writer). */
#ifndef SRV_JSON_H
#define SRV_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "srv.h"

/* ----------------------------------------------------------- pointers */

/* RFC 6901 JSON Pointer building: "/query/3/1". Escapes '~' and '/'.
 * Truncates silently past the buffer (it is only a label). */
typedef struct srv_ptr {
    char s[256];
    size_t len;
} srv_ptr;

void srv_ptr_root(srv_ptr *p);                 /* "" */
void srv_ptr_key(srv_ptr *dst, const srv_ptr *parent, const char *key);
void srv_ptr_index(srv_ptr *dst, const srv_ptr *parent, size_t i);

/* ------------------------------------------------------------- parsing */

/*
 * Parses body as one JSON value (trailing garbage is an error). On failure
 * returns NULL and sets e: 400 malformed_json with the byte offset in the
 * message; 400 invalid_argument when the top level is not an object.
 */
cJSON *srv_json_parse_object(const char *body, size_t len, srv_err *e);

/*
 * The request pool (jpool.c). srv_json_pool_install() points cJSON's
 * allocation hooks at it; call it once before threads start (without it
 * every node is malloc'd as before). Between srv_json_pool_begin() and
 * srv_json_pool_end() on a thread (srv_dispatch brackets each request),
 * the trees srv_json_parse_object returns take their nodes from a pool that
 * the end releases at once: cJSON_Delete of them costs nothing, and no such
 * tree may be used after the end. Everything else cJSON allocates
 * (cJSON_Print, trees built with cJSON_Create*) is malloc'd as before.
 */
void srv_json_pool_install(void);
void srv_json_pool_begin(void);
void srv_json_pool_end(void);
/* Used by srv_json_parse_object: true when this parse takes its nodes from
 * the pool; pass that to _parse_end. */
bool srv_json_pool_parse_begin(void);
void srv_json_pool_parse_end(bool began);
/* cJSON_GetObjectItemCaseSensitive with the first byte compared before
 * strcmp: handlers look up dozens of options among a few members. */
cJSON *srv_json_member(const cJSON *obj, const char *key);
/* cJSON_CreateNumber, from the pool while a pooled parse runs. */
cJSON *srv_json_pool_number(double v);
/* cJSON_Delete for request trees: nothing to do for one parsed into the
 * pool (the request's end releases it), cJSON_Delete for any other. */
void srv_json_delete(cJSON *root);
/* Bytes this thread's pool has handed out in the current request (0 outside one). */
size_t srv_json_pool_used(void);

/* Decoded numeric tensor; data is malloc'd (srv_tensor_free). */
#define SRV_TENSOR_MAX_RANK 5
typedef struct srv_tensor {
    float *data;
    size_t rank;
    size_t shape[SRV_TENSOR_MAX_RANK];
    size_t size; /* product of shape */
} srv_tensor;

void srv_tensor_free(srv_tensor *t); /* NULL-safe; resets t */

/*
 * Reads a numeric tensor of rank rank_min..rank_max from item, which is either
 * a nested list (rectangular; a scalar is rank 0) or a tensor object
 * {"dtype": "float32", "shape": [...], "data": "<base64 little-endian>"}.
 * Rejects (400 invalid_argument, field = pointer to the first bad value):
 * non-numbers, ragged rows ("key: row 3 has 7 values, expected 8"), NaN/Inf,
 * rank out of range, an empty dimension when allow_empty is false, more than
 * max_elements elements (413 payload_too_large), shape/data size mismatch,
 * bad base64, unknown dtype. name is used in messages ("key").
 * Returns true on success.
 */
bool srv_json_read_tensor(const cJSON *item, const srv_ptr *where,
                          const char *name, size_t rank_min, size_t rank_max,
                          bool allow_empty, size_t max_elements,
                          srv_tensor *out, srv_err *e);

/* Boolean tensor (true/false, or 0/1 numbers), same rules; data is uint8 0/1. */
typedef struct srv_btensor {
    uint8_t *data;
    size_t rank;
    size_t shape[SRV_TENSOR_MAX_RANK];
    size_t size;
} srv_btensor;

void srv_btensor_free(srv_btensor *t);

bool srv_json_read_btensor(const cJSON *item, const srv_ptr *where,
                           const char *name, size_t rank_min, size_t rank_max,
                           size_t max_elements, srv_btensor *out, srv_err *e);

/* Typed scalar readers for an optional member of obj. When the member is
 * absent, *out keeps its (default) value and true is returned. Wrong type or
 * out of range -> false with e set (field = pointer to the member). */
bool srv_json_opt_bool(const cJSON *obj, const srv_ptr *where, const char *key,
                       bool *out, srv_err *e);
bool srv_json_opt_int(const cJSON *obj, const srv_ptr *where, const char *key,
                      long long lo, long long hi, long long *out, srv_err *e);
bool srv_json_opt_float(const cJSON *obj, const srv_ptr *where, const char *key,
                        double lo, double hi, double *out, srv_err *e);
/* Copies a string member (truncated to out_len-1); absent keeps *out. */
bool srv_json_opt_string(const cJSON *obj, const srv_ptr *where,
                         const char *key, char *out, size_t out_len,
                         srv_err *e);

/* Rejects members of obj not in the NULL-terminated list allowed
 * (400, field = the unknown member, message lists what is accepted). */
bool srv_json_check_keys(const cJSON *obj, const srv_ptr *where,
                         const char *const *allowed, srv_err *e);

/* -------------------------------------------------------------- base64 */

/* Standard alphabet with padding. Returns the encoded length written to out
 * (out must hold srv_base64_encoded_len(n) + 1 bytes, NUL-terminated). */
size_t srv_base64_encoded_len(size_t n);
size_t srv_base64_encode(const void *in, size_t n, char *out);
/* Decodes; accepts missing padding; rejects other characters. Returns false
 * on bad input (bad_at = offset of the first bad character). out must hold
 * srv_base64_decoded_max(len) bytes; *out_len gets the decoded size. */
size_t srv_base64_decoded_max(size_t len);
bool srv_base64_decode(const char *in, size_t len, void *out, size_t *out_len,
                       size_t *bad_at);

/* ------------------------------------------------------------- writing */

/*
 * A streaming JSON writer into an srv_buf: no cJSON tree for large outputs.
 * Commas are placed automatically. Floats: shortest text that round-trips the
 * float32 (precision 0) or `precision` significant digits (1..9); non-finite
 * values are written as null (JSON has no NaN/Infinity). With base64 set,
 * srv_jw_tensor writes tensor objects instead of nested lists.
 */
#define SRV_JW_MAX_DEPTH 32
typedef struct srv_jw {
    srv_buf *b;
    int precision; /* 0 = shortest round-trip */
    bool base64;
    int depth;
    bool first[SRV_JW_MAX_DEPTH]; /* no element written yet at this depth */
    bool after_key;
} srv_jw;

void srv_jw_init(srv_jw *w, srv_buf *b, int precision, bool base64);
void srv_jw_obj_begin(srv_jw *w);
void srv_jw_obj_end(srv_jw *w);
void srv_jw_arr_begin(srv_jw *w);
void srv_jw_arr_end(srv_jw *w);
void srv_jw_key(srv_jw *w, const char *key);
void srv_jw_str(srv_jw *w, const char *s); /* escaped */
void srv_jw_int(srv_jw *w, long long v);
void srv_jw_uint(srv_jw *w, unsigned long long v);
void srv_jw_double(srv_jw *w, double v);   /* %.17g-shortest for doubles (meta values) */
/* v rounded to decimals (0..6) places, trailing zeros dropped: timings. */
void srv_jw_fixed(srv_jw *w, double v, int decimals);
void srv_jw_float(srv_jw *w, float v);     /* per precision */
void srv_jw_bool(srv_jw *w, bool v);
void srv_jw_null(srv_jw *w);
void srv_jw_cjson(srv_jw *w, const cJSON *item); /* echo a parsed value */
/* A float tensor of the given shape: nested lists or a base64 tensor object. */
void srv_jw_tensor(srv_jw *w, const float *data, size_t rank,
                   const size_t *shape);
/* A uint8 0/1 tensor as nested true/false lists (bool tensors are never base64). */
void srv_jw_btensor(srv_jw *w, const uint8_t *data, size_t rank,
                    const size_t *shape);

/* Formats f as the shortest decimal that strtof() reads back to f (finite f).
 * out must hold 32 bytes. Returns the length. */
size_t srv_format_float(float f, int precision, char *out);

#endif /* SRV_JSON_H */
