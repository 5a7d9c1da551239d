/* attn_mask.c - which (query, key) pairs take part: causal masks, bool masks, key padding, bias. */
#include "attn_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ patterns */

attn_status attn_pattern_check(const attn_pattern *p, size_t n, size_t m)
{
    if (!p)
        return ATTN_ERR_INVALID;
    bool any = false;
    if (p->has_window) {
        if (p->window_left < -1 || p->window_right < -1 || p->dilation < 0)
            return ATTN_ERR_INVALID;
        any = true;
    } else if (p->dilation != 0 && p->dilation != 1) {
        return ATTN_ERR_INVALID; /* a dilation without a window */
    }
    if (p->stride < 0 || p->block_size < 0 || p->random < 0)
        return ATTN_ERR_INVALID;
    if (p->n_global > 0 && !p->global_tokens)
        return ATTN_ERR_INVALID;
    const size_t lim = n > m ? n : m;
    for (size_t g = 0; g < p->n_global; g++)
        if (p->global_tokens[g] >= lim)
            return ATTN_ERR_INVALID;
    any = any || p->stride > 0 || p->block_size > 0 || p->random > 0 || p->n_global > 0;
    return any ? ATTN_OK : ATTN_ERR_INVALID;
}

bool attn__pattern_is_global(const attn_pattern *p, size_t x)
{
    for (size_t g = 0; g < p->n_global; g++)
        if (p->global_tokens[g] == x)
            return true;
    return false;
}

size_t attn__pattern_random(const attn_pattern *p, size_t i, size_t mm, size_t *out)
{
    if (p->random <= 0 || mm == 0)
        return 0;
    uint64_t st = p->seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
    for (int64_t t = 0; t < p->random; t++)
        out[t] = (size_t)(attn_rng_next(&st) % (uint64_t)mm);
    return (size_t)p->random;
}

void attn__pattern_row(const attn_pattern *p, size_t i, size_t mm, uint8_t *row)
{
    if (attn__pattern_is_global(p, i)) {
        memset(row, 1, mm);
        return;
    }
    for (size_t j = 0; j < mm; j++)
        row[j] = attn__pattern_local(p, i, j);
    for (size_t g = 0; g < p->n_global; g++)
        if (p->global_tokens[g] < mm)
            row[p->global_tokens[g]] = 1;
    if (p->random > 0 && mm > 0) {
        uint64_t st = p->seed ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
        for (int64_t t = 0; t < p->random; t++)
            row[attn_rng_next(&st) % (uint64_t)mm] = 1;
    }
}

static size_t causal_end(attn_causal causal, size_t n, size_t mm, size_t i);

attn_status attn_pattern_allowed(const attn_pattern *p, attn_causal causal, size_t n, size_t m,
                                 uint8_t *allowed)
{
    attn_status st;
    size_t t;
    if ((st = attn_pattern_check(p, n, m)) != ATTN_OK)
        return st;
    if (causal != ATTN_CAUSAL_NONE && causal != ATTN_CAUSAL_TOP_LEFT &&
        causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return ATTN_ERR_INVALID;
    if (!attn__size_mul(n, m, &t))
        return ATTN_ERR_OVERFLOW;
    if (t == 0)
        return ATTN_OK;
    if (!allowed)
        return ATTN_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        uint8_t *row = allowed + i * m;
        attn__pattern_row(p, i, m, row);
        const size_t end = causal_end(causal, n, m, i);
        memset(row + end, 0, m - end);
    }
    return ATTN_OK;
}

/* ------------------------------------------------------------ masks */

attn_status attn__masks_check(const attn_masks *mk, size_t n, size_t m)
{
    if (mk->causal != ATTN_CAUSAL_NONE && mk->causal != ATTN_CAUSAL_TOP_LEFT &&
        mk->causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return ATTN_ERR_INVALID;
    if (mk->m_masked > m)
        return ATTN_ERR_SHAPE;
    if (mk->pattern)
        return attn_pattern_check(mk->pattern, n, mk->m_masked ? mk->m_masked : m);
    return ATTN_OK;
}

bool attn__masks_empty(const attn_masks *mk)
{
    return mk->causal == ATTN_CAUSAL_NONE && !mk->mask && !mk->key_padding && !mk->bias &&
           !mk->rel_bias && !mk->pattern;
}

/*
 * Keys [0, end) of the masked columns that causality leaves to query i of n,
 * with mm masked keys. Bottom-right alignment keeps j <= i + mm - n, so when
 * n > mm the first n - mm queries see no key at all.
 */
static size_t causal_end(attn_causal causal, size_t n, size_t mm, size_t i)
{
    size_t end;
    switch (causal) {
    case ATTN_CAUSAL_TOP_LEFT:
        end = i + 1;
        break;
    case ATTN_CAUSAL_BOTTOM_RIGHT:
        if (i + mm + 1 <= n)
            return 0;
        end = i + mm + 1 - n;
        break;
    default:
        end = mm;
        break;
    }
    return end < mm ? end : mm;
}

size_t attn__masks_apply(const attn_masks *mk, size_t head, size_t n, size_t m, size_t i0,
                         size_t rows, float *s, size_t lds, uint8_t *pat_row)
{
    const size_t mm = mk->m_masked ? mk->m_masked : m;
    const float *bias = mk->bias ? mk->bias + head * mk->bias_head_stride : NULL;
    /* relative bias: entry (j - i) + (n - 1) of this head's [n + mm - 1] vector */
    const float *rel = mk->rel_bias ? mk->rel_bias + head * mk->rel_bias_head_stride : NULL;
    size_t n_allowed = rows * (m - mm); /* appended key columns are always allowed */

    for (size_t r = 0; r < rows; r++) {
        const size_t i = i0 + r;
        float *row = s + r * lds;
        const uint8_t *mrow = mk->mask ? mk->mask + i * mm : NULL;
        const float *brow = bias ? bias + i * mm : NULL;
        /* Causality bounds the keys a row may see. This dense form is used
         * when weights are materialised (or the pattern is too wide to gain);
         * otherwise the kernel skips excluded pairs (attn__masks_apply_cols). */
        const size_t end = causal_end(mk->causal, n, mm, i);
        if (mk->pattern)
            attn__pattern_row(mk->pattern, i, mm, pat_row);

        for (size_t j = 0; j < end; j++) {
            bool ok = (!mrow || mrow[j]) && (!mk->key_padding || !mk->key_padding[j]) &&
                      (!mk->pattern || pat_row[j]);
            if (!ok) {
                row[j] = -INFINITY;
                continue;
            }
            if (brow)
                row[j] += brow[j];
            if (rel)
                row[j] += rel[j + (n - 1 - i)];
            n_allowed++;
        }
        for (size_t j = end; j < mm; j++)
            row[j] = -INFINITY;
    }
    return n_allowed;
}

/* A pattern that is a bounded, contiguous window and nothing else. */
static bool window_only(const attn_pattern *p)
{
    return p && p->has_window && p->window_left >= 0 && p->window_right >= 0 &&
           p->dilation <= 1 && p->stride == 0 && p->block_size == 0 && p->n_global == 0 &&
           p->random == 0;
}

/*
 * attn__masks_apply_cols for the common sliding window: the columns are the
 * contiguous keys j0 .. j0 + ncols - 1, and row i may see the keys in
 * [i - left, i + right] below its causal end, less the padding: two ranges
 * to clear and one to bias, instead of a test per pair.
 */
static size_t apply_window_band(const attn_masks *mk, const float *bias, const float *rel,
                                size_t n, size_t mm, size_t i0, size_t rows, size_t j0,
                                size_t ncols, float *s, size_t lds)
{
    const attn_pattern *p = mk->pattern;
    const size_t L = (size_t)p->window_left, R = (size_t)p->window_right;
    const size_t in_mm = j0 >= mm ? 0 : (j0 + ncols <= mm ? ncols : mm - j0);
    size_t n_allowed = rows * (ncols - in_mm); /* appended columns */

    for (size_t r = 0; r < rows; r++) {
        const size_t i = i0 + r;
        float *row = s + r * lds;
        size_t a = i > L ? i - L : 0, b = i + R + 1;
        const size_t end = causal_end(mk->causal, n, mm, i);
        b = b < end ? b : end;
        /* as column offsets within [0, in_mm) */
        const size_t ca = a > j0 ? (a - j0 < in_mm ? a - j0 : in_mm) : 0;
        const size_t cb = b > j0 ? (b - j0 < in_mm ? b - j0 : in_mm) : 0;
        for (size_t c = 0; c < ca; c++)
            row[c] = -INFINITY;
        const float *brow = bias ? bias + i * mm + j0 : NULL;
        const float *rrow = rel ? rel + (n - 1 - i) + j0 : NULL;
        for (size_t c = ca; c < cb; c++) {
            if (mk->key_padding && mk->key_padding[j0 + c]) {
                row[c] = -INFINITY;
                continue;
            }
            if (brow)
                row[c] += brow[c];
            if (rrow)
                row[c] += rrow[c];
            n_allowed++;
        }
        for (size_t c = cb > ca ? cb : ca; c < in_mm; c++)
            row[c] = -INFINITY;
    }
    return n_allowed;
}

size_t attn__masks_apply_cols(const attn_masks *mk, size_t head, size_t n, size_t m, size_t i0,
                              size_t rows, const size_t *cols, size_t ncols, const size_t *rnd,
                              size_t n_rnd, float *s, size_t lds)
{
    const size_t mm = mk->m_masked ? mk->m_masked : m;
    const float *bias = mk->bias ? mk->bias + head * mk->bias_head_stride : NULL;
    /* relative bias: entry (j - i) + (n - 1) of this head's [n + mm - 1] vector */
    const float *rel = mk->rel_bias ? mk->rel_bias + head * mk->rel_bias_head_stride : NULL;
    const attn_pattern *p = mk->pattern;
    size_t n_allowed = 0;

    if (window_only(p) && !mk->mask && ncols > 0 && cols[ncols - 1] - cols[0] == ncols - 1)
        return apply_window_band(mk, bias, rel, n, mm, i0, rows, cols[0], ncols, s, lds);

    for (size_t r = 0; r < rows; r++) {
        const size_t i = i0 + r;
        float *row = s + r * lds;
        const uint8_t *mrow = mk->mask ? mk->mask + i * mm : NULL;
        const float *brow = bias ? bias + i * mm : NULL;
        const size_t end = causal_end(mk->causal, n, mm, i);
        const bool row_global = p && attn__pattern_is_global(p, i);
        const size_t *rr = rnd ? rnd + r * n_rnd : NULL;

        for (size_t c = 0; c < ncols; c++) {
            const size_t j = cols[c];
            if (j >= mm) {
                n_allowed++;
                continue;
            }
            bool ok = j < end && (!mrow || mrow[j]) && (!mk->key_padding || !mk->key_padding[j]);
            if (ok && p && !row_global && !attn__pattern_local(p, i, j) &&
                !attn__pattern_is_global(p, j)) {
                ok = false;
                for (size_t t = 0; rr && t < n_rnd; t++)
                    if (rr[t] == j) {
                        ok = true;
                        break;
                    }
            }
            if (!ok) {
                row[c] = -INFINITY;
                continue;
            }
            if (brow)
                row[c] += brow[j];
            if (rel)
                row[c] += rel[j + (n - 1 - i)];
            n_allowed++;
        }
    }
    return n_allowed;
}
