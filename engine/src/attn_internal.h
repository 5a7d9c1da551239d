/* attn_internal.h - interfaces shared by the engine's source files (not part of the public API). */
#ifndef ATTN_INTERNAL_H
#define ATTN_INTERNAL_H

#include "attn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ sizes */

/* Stores a * b in *out; returns false (and leaves *out alone) if it overflows size_t. */
bool attn__size_mul(size_t a, size_t b, size_t *out);

/* Stores a + b in *out; returns false (and leaves *out alone) if it overflows size_t. */
bool attn__size_add(size_t a, size_t b, size_t *out);

/* ------------------------------------------------------------- BLAS (attn_blas.c) */

/* True when x fits the BLAS integer type (dimensions and leading dimensions). */
bool attn__blas_fits(size_t x);

/*
 * Row-major C = alpha * op(A) * op(B) + beta * C, with op(A) [m][k], op(B) [k][n],
 * C [m][n] and leading dimensions lda, ldb, ldc (row strides, in floats).
 * trans_a means A is stored [k][m] (op(A) = A^T), likewise trans_b for B [n][k].
 * Zero-sized products are handled here (BLAS rejects some of them): k == 0
 * gives C = beta * C. Every dimension must satisfy attn__blas_fits (checked by
 * the callers up front, asserted here).
 */
void attn__sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                 size_t ldc);

/* ------------------------------------------------------------ workspace (attn_ws.c) */

/*
 * Scratch for the current call. The public entry points call attn__ws_reset
 * first; everything handed out since then stays valid until the next reset.
 * Returns 64-byte aligned memory, or NULL when the allocator fails or the size
 * overflows (callers report ATTN_ERR_NOMEM; overflow is checked before asking).
 */
void *attn__ws_alloc(attn_ws *ws, size_t n_bytes);

/* Same for n floats; NULL on failure (including n * sizeof(float) overflowing). */
float *attn__ws_floats(attn_ws *ws, size_t n);

/* Starts a call: all scratch handed out before becomes free again. */
void attn__ws_reset(attn_ws *ws);

/*
 * A second workspace owned by ws (same allocator), created on first use and
 * freed, trimmed and counted with ws. A composite call (transformer layers)
 * keeps its own scratch in ws and hands the child to the public blocks it
 * runs, which reset their workspace on entry. NULL if it cannot be created.
 */
attn_ws *attn__ws_child(attn_ws *ws);

/* ------------------------------------------------------------ masks (attn_mask.c) */

/* Checks masks against an [n][m] score matrix: ATTN_ERR_SHAPE if m_masked > m,
 * ATTN_ERR_INVALID for an unknown causal mode or a pattern attn_pattern_check
 * rejects (over n queries and the masked keys). */
attn_status attn__masks_check(const attn_masks *mk, size_t n, size_t m);

/* Pattern pieces: global token test, the window/stride/block parts for (i, j),
 * the random keys of query i among mm keys (p->random entries written to out,
 * count returned), and the whole pattern row of query i into row [mm]. */
bool attn__pattern_is_global(const attn_pattern *p, size_t x);
size_t attn__pattern_random(const attn_pattern *p, size_t i, size_t mm, size_t *out);
void attn__pattern_row(const attn_pattern *p, size_t i, size_t mm, uint8_t *row);

/* Inline: it runs once per candidate pair. */
static inline bool attn__pattern_local(const attn_pattern *p, size_t i, size_t j)
{
    if (p->has_window) {
        const uint64_t d = p->dilation > 1 ? (uint64_t)p->dilation : 1;
        const uint64_t diff = j <= i ? (uint64_t)(i - j) : (uint64_t)(j - i);
        const int64_t side = j <= i ? p->window_left : p->window_right;
        if ((side < 0 || diff <= (uint64_t)side * d) && (d == 1 || diff % d == 0))
            return true;
    }
    if (p->stride > 0) {
        const uint64_t diff = i >= j ? (uint64_t)(i - j) : (uint64_t)(j - i);
        if (diff % (uint64_t)p->stride == 0)
            return true;
    }
    if (p->block_size > 0 && i / (uint64_t)p->block_size == j / (uint64_t)p->block_size)
        return true;
    return false;
}

/* True if the masks remove or bias nothing (the kernel then skips them). */
bool attn__masks_empty(const attn_masks *mk);

/*
 * Applies masks and bias to rows [i0, i0 + rows) of an [n][m] score matrix,
 * stored as s [rows][lds]: removed pairs become -INFINITY, the bias of head
 * `head` is added to the others. Columns at or past m_masked are untouched.
 * pat_row: scratch of m_masked bytes, needed when mk->pattern is set.
 * Returns the number of (query, key) pairs left, counting those columns.
 */
size_t attn__masks_apply(const attn_masks *mk, size_t head, size_t n, size_t m, size_t i0,
                         size_t rows, float *s, size_t lds, uint8_t *pat_row);

/*
 * Same over a column subset: s [rows][lds] holds key columns cols [ncols]
 * (any order, each < m). rnd [rows][n_rnd]: the random keys of each row
 * (attn__pattern_random), or NULL when the pattern has none.
 */
size_t attn__masks_apply_cols(const attn_masks *mk, size_t head, size_t n, size_t m, size_t i0,
                              size_t rows, const size_t *cols, size_t ncols, const size_t *rnd,
                              size_t n_rnd, float *s, size_t lds);

/* ------------------------------------------------------------ one head (attn_core.c) */

/*
 * One attention head over strided operands, so that multi-head attention can
 * run on column slices of the projected Q/K/V without copying them.
 * q [n][dq] row stride ldq, k [m][dk] stride ldk, v [m][dv] stride ldv,
 * out [n][dv] stride ldo. weights and scores are contiguous [n][m].
 * weights_acc, if set, receives += acc_scale * weights (head averages).
 */
typedef struct attn__head {
    const attn_params *p; /* score kind and its weights, softcap, masks */
    float scale;          /* resolved by attn__scale_resolve */
    size_t head;          /* selects the bias slice: masks.bias + head * bias_head_stride */
    size_t n, m, dq, dk, dv;
    const float *q;
    size_t ldq;
    const float *k;
    size_t ldk;
    const float *v;
    size_t ldv;
    float *out;
    size_t ldo;
    float *weights;
    float *scores;
    float *weights_acc;
    float acc_scale;
} attn__head;

/* The scale a scaled-dot score uses for key width dk (1 for other scores). */
float attn__scale_resolve(const attn_params *p, size_t dk);

/* Checks score kind, score weights, softcap and scale: ATTN_ERR_INVALID on a bad value. */
attn_status attn__params_check(const attn_params *p);

/* Floats of scratch attn__head_forward needs for h; ATTN_ERR_OVERFLOW if that overflows. */
attn_status attn__head_scratch_floats(const attn__head *h, size_t *n_floats);

/*
 * Runs one head with caller-provided scratch (attn__head_scratch_floats
 * floats). Adds the rows that had no key left and the pairs that took part to
 * *n_empty and *n_allowed. Arguments must have been validated.
 */
void attn__head_forward(const attn__head *h, float *scratch, size_t *n_empty, size_t *n_allowed);

/* ------------------------------------------------------------ linear kernels (attn_linear.c) */

/*
 * One linear-attention head over strided operands (as attn__head):
 * q [n][d] stride ldq, k [m][d] stride ldk, v [m][dv] stride ldv,
 * out [n][dv] stride ldo or NULL; weights [n][m] contiguous or NULL;
 * weights_acc, if set, receives += acc_scale * weights.
 * causal and key_padding [m_masked] cover the first m_masked keys (0: all m);
 * keys past m_masked (appended bias_k / zero rows) are always seen.
 * proj: the FAVOR+ projection [r][d] (attn__lin_proj_draw), NULL for elu.
 */
typedef struct attn__lin_head {
    const attn_linear_kernel *kern;
    const float *proj;
    attn_causal causal;
    size_t n, m, m_masked, d, dv;
    const float *q;
    size_t ldq;
    const float *k;
    size_t ldk;
    const float *v;
    size_t ldv;
    const uint8_t *key_padding;
    float *out;
    size_t ldo;
    float *weights;
    float *weights_acc;
    float acc_scale;
} attn__lin_head;

/* ATTN_ERR_INVALID for a feature map that is not ELU/FAVOR or num_features out of range. */
attn_status attn__lin_kernel_check(const attn_linear_kernel *kern);

/* Floats of scratch for drawing the projection of width d (0 for elu). */
attn_status attn__lin_proj_floats(const attn_linear_kernel *kern, size_t d, size_t *n_floats);

/* Draws the FAVOR+ projection into scratch (attn__lin_proj_floats floats) and
 * returns it ([r][d] at the start of scratch); NULL for elu. */
const float *attn__lin_proj_draw(const attn_linear_kernel *kern, size_t d, float *scratch);

/* Floats of scratch attn__lin_forward needs for h; ATTN_ERR_OVERFLOW if that overflows. */
attn_status attn__lin_scratch_floats(const attn__lin_head *h, size_t *n_floats);

/* Runs one linear head with caller-provided scratch; adds its empty rows and
 * the pairs that took part to *n_empty and *n_allowed. Arguments validated. */
void attn__lin_forward(const attn__lin_head *h, float *scratch, size_t *n_empty, size_t *n_allowed);

#endif /* ATTN_INTERNAL_H */
