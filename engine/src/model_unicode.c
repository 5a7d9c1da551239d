/* model_unicode.c - UTF-8 decoding and the Unicode look-ups the tokenizers need. */
#include "model_internal.h"

size_t attn__utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
    const unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1Fu;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0Fu;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07u;
        min = 0x10000;
    } else {
        return 0; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (len < n)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0u) != 0x80u)
            return 0;
        v = (v << 6) | (s[k] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

size_t attn__utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

attn__uc_cat attn__uc_category(uint32_t cp)
{
    if (cp > 0x10FFFF)
        return ATTN__UC_CN;
    /* The last run starting at or before cp. */
    size_t lo = 0, hi = attn__uc_n_cat_runs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((attn__uc_cat_runs[mid] >> 5) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (attn__uc_cat)(attn__uc_cat_runs[lo] & 31u);
}

bool attn__uc_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Index of cp in a table of rows whose first column ascends, or -1. */
static long table_find(const uint32_t *rows, size_t n_rows, size_t width, uint32_t cp)
{
    size_t lo = 0, hi = n_rows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t key = rows[mid * width];
        if (key == cp)
            return (long)mid;
        if (key < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

uint32_t attn__uc_lower(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    long k = table_find(&attn__uc_lower_table[0][0], attn__uc_n_lower, 2, cp);
    if (k >= 0)
        return attn__uc_lower_table[k][1];
    return cp == 0x130 ? 'i' : cp;
}

size_t attn__uc_strip(uint32_t cp, uint32_t out[3])
{
    if (cp < 0xC0) {
        out[0] = cp;
        return 1;
    }
    /* Hangul syllables: L V (T) jamo, computed (Unicode 3.12). */
    if (cp >= 0xAC00 && cp <= 0xD7A3) {
        const uint32_t s = cp - 0xAC00;
        out[0] = 0x1100 + s / (21 * 28);
        out[1] = 0x1161 + (s % (21 * 28)) / 28;
        if (s % 28 == 0)
            return 2;
        out[2] = 0x11A7 + s % 28;
        return 3;
    }
    if (attn__uc_category(cp) == ATTN__UC_MN)
        return 0;
    long k = table_find(&attn__uc_strip_table[0][0], attn__uc_n_strip, 4, cp);
    if (k < 0) {
        out[0] = cp;
        return 1;
    }
    size_t n = 0;
    for (size_t j = 1; j < 4 && attn__uc_strip_table[k][j] != 0; j++)
        out[n++] = attn__uc_strip_table[k][j];
    return n;
}
