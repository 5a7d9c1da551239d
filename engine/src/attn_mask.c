/* attn_mask.c - which (query, key) pairs take part: causal masks, bool masks, key padding, bias. */
#include "attn_internal.h"

#include <math.h>

attn_status attn__masks_check(const attn_masks *mk, size_t m)
{
    if (mk->causal != ATTN_CAUSAL_NONE && mk->causal != ATTN_CAUSAL_TOP_LEFT &&
        mk->causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return ATTN_ERR_INVALID;
    if (mk->m_masked > m)
        return ATTN_ERR_SHAPE;
    /* Sparse/local/global patterns arrive with the next issue (see attn__masks_apply). */
    if (mk->pattern)
        return ATTN_ERR_UNSUPPORTED;
    return ATTN_OK;
}

bool attn__masks_empty(const attn_masks *mk)
{
    return mk->causal == ATTN_CAUSAL_NONE && !mk->mask && !mk->key_padding && !mk->bias &&
           !mk->pattern;
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
                         size_t rows, float *s, size_t lds)
{
    const size_t mm = mk->m_masked ? mk->m_masked : m;
    const float *bias = mk->bias ? mk->bias + head * mk->bias_head_stride : NULL;
    size_t n_allowed = rows * (m - mm); /* appended key columns are always allowed */

    for (size_t r = 0; r < rows; r++) {
        const size_t i = i0 + r;
        float *row = s + r * lds;
        const uint8_t *mrow = mk->mask ? mk->mask + i * mm : NULL;
        const float *brow = bias ? bias + i * mm : NULL;
        /* Causality bounds the keys a row may see; a pattern (next issue) will
         * narrow [0, end) further into the ranges it keeps, so that the kernel
         * can skip the pairs it excludes instead of computing then dropping them. */
        const size_t end = causal_end(mk->causal, n, mm, i);

        for (size_t j = 0; j < end; j++) {
            bool ok = (!mrow || mrow[j]) && (!mk->key_padding || !mk->key_padding[j]);
            if (!ok) {
                row[j] = -INFINITY;
                continue;
            }
            if (brow)
                row[j] += brow[j];
            n_allowed++;
        }
        for (size_t j = end; j < mm; j++)
            row[j] = -INFINITY;
    }
    return n_allowed;
}
