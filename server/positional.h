/* positional.h - the "positional" member of attention, multi-head and transformer requests. */
#ifndef POSITIONAL_H
#define POSITIONAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn.h"
#include "json.h"
#include "srv.h"

/*
 * How positions enter a block:
 *   sinusoidal {"base"?}        table added to the inputs (attn_pos_sinusoidal)
 *   learned    {"table"}        table [max_len][width] added to the inputs
 *   rope       {"base"?, "rope_style"?}  queries and keys rotated per head
 *   alibi      {"slopes"?}      bias -slope_h |i - j| (BLOOM's slopes by default)
 *   relative   {"clip", "key_table"?, "value_table"?}  Shaw et al. 2018
 *   t5         {"table", "num_buckets"?, "max_distance"?, "bidirectional"?}
 *              bias table[bucket(j - i)][h]
 * Additive kinds take "inputs": the members they are added to (default: every
 * input the endpoint names, e.g. query, key, value).
 */
typedef enum srv_pos_type {
    SRV_POS_NONE = 0,
    SRV_POS_SINUSOIDAL,
    SRV_POS_LEARNED,
    SRV_POS_ROPE,
    SRV_POS_ALIBI,
    SRV_POS_RELATIVE,
    SRV_POS_T5,
} srv_pos_type;

typedef struct srv_pos {
    srv_pos_type type;
    const cJSON *json; /* the request's object, echoed in meta */
    double base;       /* sinusoidal, rope */
    attn_rope_style rope_style;
    srv_tensor table;       /* learned [max_len][width]; t5 [num_buckets][H] */
    srv_tensor key_table;   /* relative [2k + 1][head_dim] */
    srv_tensor value_table; /* relative [2k + 1][head_dim_v] */
    size_t clip;            /* relative k */
    int64_t num_buckets, max_distance;
    bool bidirectional;
    float *slopes; /* alibi [H] (given or BLOOM's) */
    size_t heads;
    unsigned inputs; /* bit i: additive table goes to input_names[i] */
    const char *const *input_names;
    float *rel_bias;  /* alibi / t5: [H][n + m - 1], built by srv_pos_apply */
} srv_pos;

/* What the block looks like, for checking table shapes. */
typedef struct srv_pos_dims {
    size_t heads;      /* H (1 for one head) */
    size_t head_dim;   /* query/key width per head (rope, relative key table) */
    size_t head_dim_v; /* value width per head (relative value table) */
    const char *const *input_names; /* NULL-terminated, e.g. {"query", "key", "value"} */
    const size_t *input_widths;     /* width of each named input (0: not present) */
    bool softmax;                   /* false for linear kernels: only additive kinds apply */
} srv_pos_dims;

/*
 * Reads root["positional"] (absent or null: SRV_POS_NONE). Checks every table
 * against dims and max_el. On error, sets e (400 with a JSON Pointer to the
 * bad member) and returns false; srv_pos_free is still needed.
 */
bool srv_pos_read(const cJSON *root, const srv_pos_dims *dims, size_t max_el, srv_pos *p,
                  srv_err *e);

/* True when input number `input` (index into dims.input_names) gets an additive table. */
bool srv_pos_adds_to(const srv_pos *p, size_t input);

/*
 * Adds the table (sinusoidal or learned) to x [batch][rows][width] at positions
 * 0 .. rows - 1 of each batch element. field names the input for errors: a
 * learned table shorter than rows is a 400 there. No-op for other kinds.
 */
bool srv_pos_add(const srv_pos *p, float *x, size_t batch, size_t rows, size_t width,
                 const char *field, srv_err *e);

/*
 * Sets ap->pos (rope, Shaw tables) and ap->masks.rel_bias (ALiBi, T5, built
 * for an [n][m] score matrix over p->heads heads) for the engine. Call after
 * the masks are in place; the bias stays owned by p. Returns false with e set
 * (503) when memory runs out.
 */
bool srv_pos_apply(srv_pos *p, size_t n, size_t m, attn_params *ap, srv_err *e);

/* The "positional" meta member: type and resolved values (slopes, base, style). */
void srv_pos_meta(srv_jw *w, const srv_pos *p);

/* Name of a type ("sinusoidal", ...), NULL for SRV_POS_NONE. */
const char *srv_pos_type_name(srv_pos_type t);

/* Frees what srv_pos_read and srv_pos_apply stored. */
void srv_pos_free(srv_pos *p);

/* POST /v1/positional_encoding: tables, slopes, buckets and rotations on their own. */
void srv_h_positional(srv_app *app, const srv_request *req, srv_response *res);

#endif /* POSITIONAL_H */
