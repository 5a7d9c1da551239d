/* h_common.h - request parts the compute endpoints share (attention, multi-head, transformer). */
#ifndef H_COMMON_H
#define H_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "attn.h"
#include "json.h"
#include "positional.h"
#include "srv.h"

/*
 * What the compute endpoints share: tensors with an optional batch dimension, masks,
 * output options. Each reader fills its part or sets e and returns false. */

enum {
    HC_RET_OUTPUT = 1u << 0,
    HC_RET_WEIGHTS = 1u << 1,
    HC_RET_SCORES = 1u << 2,
    HC_RET_WEIGHTS_AVG = 1u << 3,
    HC_RET_HEAD_OUTPUTS = 1u << 4,
    HC_RET_Q = 1u << 5,
    HC_RET_K = 1u << 6,
    HC_RET_V = 1u << 7,
    HC_RET_PATTERN = 1u << 8,
    HC_RET_ATTENTIONS = 1u << 9,
    HC_RET_SELF_ATTENTIONS = 1u << 10,
    HC_RET_CROSS_ATTENTIONS = 1u << 11
};

/* Names of the bits above, in bit order, NULL-terminated. */
extern const char *const hc_ret_names[];

typedef struct hc_req {
    srv_tensor query, key, value;
    srv_btensor mask, kpm;
    srv_tensor bias;
    size_t batch; /* B; 1 when unbatched */
    bool batched; /* inputs carried a leading batch dimension */
    size_t n, m;  /* query rows, key rows */
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
    size_t *globals; /* pat.global_tokens storage */
    const cJSON *pattern_json;
    srv_pos pos; /* positional (srv_pos_read) */
} hc_req;

/* Shape of a per-request result: [B] prepended when batched. */
typedef struct hc_shape {
    size_t d[SRV_TENSOR_MAX_RANK];
    size_t rank;
} hc_shape;

/* Frees what the readers stored in c (c itself is the caller's). */
void hc_req_free(hc_req *c);

/* True (and *out set) when root has member key. */
bool hc_member(const cJSON *root, const char *key, const cJSON **out);

/* *p = the JSON Pointer "/key" of a top-level member. */
void hc_ptr_of(srv_ptr *p, const char *key);

/* encoding ("json" | "base64") and precision (1..9). */
bool hc_read_output_options(const cJSON *root, hc_req *c, srv_err *e);

/* causal: true | false | "none" | "top_left" | "bottom_right". */
bool hc_read_causal(const cJSON *root, hc_req *c, srv_err *e);

/* return: a list of names from allowed_mask; sets c->ret (def when absent). */
bool hc_read_return(const cJSON *root, unsigned allowed_mask, unsigned def, hc_req *c, srv_err *e);

/* Optional list of want strings (labels), kept as a cJSON pointer. */
bool hc_read_tokens(const cJSON *root, const char *key, size_t want, const cJSON **out, srv_err *e);

/* A float tensor member of rank rmin..rmax (400 naming it if required and absent). */
bool hc_read_tensor(const cJSON *root, const char *key, size_t rmin, size_t rmax, bool required,
                    size_t max_el, srv_tensor *t, srv_err *e);

/* "[a][b]..." into buf; returns buf. */
const char *hc_dims_str(const size_t *shape, size_t rank, char *buf, size_t len);

/* Checks t (already read) has exactly the given shape. */
bool hc_expect_shape(const srv_tensor *t, const char *key, size_t rank, const size_t *shape,
                     srv_err *e);

/*
 * query/key/value with the batch rule: all rank 2, or all rank 3 with one B.
 * key/value may be absent when self_ok (self-attention: they alias query).
 */
bool hc_read_qkv(const cJSON *root, hc_req *c, bool self_ok, size_t max_el, srv_err *e);

/* mask [n][m] / [B][n][m], key_padding_mask [m] / [B][m], attn_bias [n][m] / [B][n][m]
 * (bias_heads > 0: also [H][n][m] and [B][H][n][m]). */
bool hc_read_masks(const cJSON *root, hc_req *c, size_t bias_heads, size_t max_el, srv_err *e);

/* scale (> 0; absent: the default) and softcap (>= 0; 0 = off). */
bool hc_read_scale_softcap(const cJSON *root, hc_req *c, srv_err *e);

/*
 * pattern: {"window": w | [l, r], "dilation": d, "stride": s, "global_tokens": [..],
 * "block_size": b, "random": r, "seed": s}: the union of the parts given.
 */
bool hc_read_pattern(const cJSON *root, hc_req *c, srv_err *e);

/* The allowed matrix actually applied to batch element b, masks included:
 * allowed [n][m]. */
attn_status hc_allowed_for(const hc_req *c, size_t b, uint8_t *allowed);

/* Masks of batch element b for the engine. */
attn_masks hc_masks_for(const hc_req *c, size_t b, size_t bias_heads);

/* ------------------------------------------------------------- rendering */
/* "key": [d0, d1, ...] */
void hc_shape_json(srv_jw *w, const char *key, const size_t *shape, size_t rank);

/* [B]? [a]? [b] [d3]? (a and d3 left out when 0). */
hc_shape hc_oshape(const hc_req *c, size_t a, size_t b, size_t d3);

/* "key": a tensor in the writer's encoding (nested lists or base64). */
void hc_write_tensor(srv_jw *w, const char *key, const float *data, hc_shape s);

/* A float32 meta value at full precision, whatever precision the arrays use. */
void hc_meta_float(srv_jw *w, float v);

/* The meta members every compute endpoint reports (causal, masks, pattern, ...). */
void hc_write_common_meta(srv_jw *w, const hc_req *c);

/* Echoes tokens and key_tokens when given. */
void hc_write_tokens(srv_jw *w, const hc_req *c);

/* Closes meta (empty_rows, elapsed_ms) and the body, and hands the buffer to
 * the response (500 when it ran out of memory). */
void hc_finish_json(srv_response *res, srv_jw *w, size_t empty_rows, double engine_ms);

/* Maps an engine status to an error (503 out of memory, 400 bad argument, 500 else);
 * returns false, like every reader. */
bool hc_engine_error(attn_status st, srv_err *e);

/* Output-element limit: refuse before allocating what the answer would hold. */
bool hc_check_elements(size_t total, size_t limit, const char *hint, srv_err *e);

/* a * b * c and a + b, saturating at SIZE_MAX. */
size_t hc_mul3(size_t a, size_t b, size_t c);

size_t hc_add_sat(size_t a, size_t b);

/* count floats when want (NULL otherwise); sets *oom when malloc fails. */
float *hc_alloc_floats(size_t count, bool want, bool *oom);

/* One state_dict entry sd[key] with its expected shape [d0] (rank 1) or [d0][d1]
 * (flat_ok: any of [1][1][d0], [1][d0], [d0], for bias_k/bias_v). An absent key
 * is not an error here (t stays empty): callers decide what is required. */
bool hc_sd_read(const cJSON *sd, const srv_ptr *sdp, const char *key, size_t rank, size_t d0,
                size_t d1, bool flat_ok, size_t max_el, srv_tensor *t, srv_err *e);

/* attn_mask is refused with a pointer to the two unambiguous spellings
 * (mask: bool, true = may attend; attn_bias: float added to the scores). */
bool hc_reject_attn_mask(const cJSON *root, srv_err *e);

/*
 * The size limits every compute request meets (--max-seq-len, --max-heads,
 * --max-layers): n query rows and m key rows (fields named for the
 * pointer), heads and layers. 413 naming the limit and how to stay under it.
 */
bool hc_check_limits(const srv_app *app, size_t n, const char *n_field, size_t m,
                     const char *m_field, size_t heads, const char *heads_field, size_t layers,
                     const char *layers_field, srv_err *e);

#endif /* H_COMMON_H */
