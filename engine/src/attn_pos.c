/* attn_pos.c - positional information: sinusoidal tables, ALiBi slopes, T5 buckets, RoPE. */
#include "attn_internal.h"

#include <math.h>
#include <stdint.h>

attn_status attn_pos_sinusoidal(size_t length, size_t dim, size_t offset, double base, float *pe)
{
    if (dim == 0 || !(base > 1.0) || isinf(base) || (length > 0 && !pe))
        return ATTN_ERR_INVALID;
    const double log_base = log(base);
    for (size_t k = 0; k < dim; k += 2) {
        /* 1 / base^(2i / dim) for the pair starting at column k = 2i */
        const double inv_freq = exp(-log_base * (double)k / (double)dim);
        for (size_t p = 0; p < length; p++) {
            const double angle = (double)(offset + p) * inv_freq;
            pe[p * dim + k] = (float)sin(angle);
            if (k + 1 < dim)
                pe[p * dim + k + 1] = (float)cos(angle);
        }
    }
    return ATTN_OK;
}

attn_status attn_alibi_slopes(size_t num_heads, float *slopes)
{
    if (num_heads == 0 || !slopes)
        return ATTN_ERR_INVALID;
    size_t p2 = 1;
    while (p2 * 2 <= num_heads)
        p2 *= 2;
    for (size_t h = 0; h < p2; h++)
        slopes[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)p2);
    /* Heads past the power of two: every other slope of 2 * p2 heads. */
    for (size_t h = p2, t = 0; h < num_heads; h++, t++)
        slopes[h] = (float)exp2(-4.0 * (double)(2 * t + 1) / (double)p2);
    return ATTN_OK;
}

int64_t attn_t5_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                       int64_t max_distance)
{
    int64_t bucket = 0;
    if (bidirectional) {
        if (num_buckets < 4)
            return -1;
        num_buckets /= 2;
        if (rel > 0)
            bucket += num_buckets;
        rel = rel < 0 ? -rel : rel;
    } else {
        if (num_buckets < 2)
            return -1;
        rel = rel < 0 ? -rel : 0;
    }
    const int64_t max_exact = num_buckets / 2;
    if (max_exact < 1 || max_distance <= max_exact)
        return -1;
    if (rel < max_exact)
        return bucket + rel;
    /* As T5 computes it: log in float32, truncated toward zero. */
    const float ratio = logf((float)rel / (float)max_exact) /
                        (float)log((double)max_distance / (double)max_exact);
    int64_t large = max_exact + (int64_t)(ratio * (float)(num_buckets - max_exact));
    if (large > num_buckets - 1)
        large = num_buckets - 1;
    return bucket + large;
}

attn_status attn_rope_apply(attn_rope_style style, double base, size_t n, size_t d, size_t pos0,
                            float *x, size_t ldx)
{
    if (d == 0 || d % 2 != 0 || ldx < d || !(base > 1.0) || isinf(base) ||
        (style != ATTN_ROPE_HALF && style != ATTN_ROPE_INTERLEAVED) || (n > 0 && !x))
        return ATTN_ERR_INVALID;
    const size_t half = d / 2;
    const double log_base = log(base);
    for (size_t k = 0; k < half; k++) {
        const double inv_freq = exp(-log_base * (double)(2 * k) / (double)d);
        /* the pair this frequency turns */
        const size_t ia = style == ATTN_ROPE_HALF ? k : 2 * k;
        const size_t ib = style == ATTN_ROPE_HALF ? k + half : 2 * k + 1;
        for (size_t r = 0; r < n; r++) {
            const double angle = (double)(pos0 + r) * inv_freq;
            const double c = cos(angle), s = sin(angle);
            float *row = x + r * ldx;
            const double a = row[ia], b = row[ib];
            row[ia] = (float)(a * c - b * s);
            row[ib] = (float)(b * c + a * s);
        }
    }
    return ATTN_OK;
}
