/* json.c - JSON in (tensors, options; JSON-Pointer errors), base64, and the streaming writer. */
#include <float.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ================================================================ pointers */

void srv_ptr_root(srv_ptr *p)
{
    p->s[0] = '\0';
    p->len = 0;
}

/* Appends one reference token ("/" + escaped token); stops quietly at the
 * end of the buffer because a pointer is only ever a label in a message. */
static void ptr_append_token(srv_ptr *p, const char *tok, size_t n)
{
    const size_t max = sizeof p->s - 1;
    if (p->len < max) {
        p->s[p->len++] = '/';
    }
    for (size_t i = 0; i < n && p->len < max; i++) {
        char c = tok[i];
        if (c == '~' || c == '/') {
            if (p->len + 2 > max) {
                break; /* never leave half an escape behind */
            }
            p->s[p->len++] = '~';
            p->s[p->len++] = c == '~' ? '0' : '1';
        } else {
            p->s[p->len++] = c;
        }
    }
    p->s[p->len] = '\0';
}

/* Only the used part of the parent: pointers are built for every member read. */
static void ptr_copy(srv_ptr *dst, const srv_ptr *parent)
{
    if (dst != parent) {
        dst->len = parent->len;
        memcpy(dst->s, parent->s, parent->len + 1);
    }
}

void srv_ptr_key(srv_ptr *dst, const srv_ptr *parent, const char *key)
{
    ptr_copy(dst, parent);
    ptr_append_token(dst, key != NULL ? key : "", key != NULL ? strlen(key) : 0);
}

/* "00".."99" */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* The n decimal digits of v (v < 10^n) at dst, two per division; the
 * integer and float writers share it. */
static void put_digits(char *dst, unsigned long long v, int n)
{
    while (n >= 2) {
        unsigned long long q = v / 100;
        memcpy(dst + n - 2, digit_pairs + 2 * (v - q * 100), 2);
        v = q;
        n -= 2;
    }
    if (n == 1) {
        dst[0] = (char)('0' + v);
    }
}

size_t srv_format_uint(unsigned long long v, char *out)
{
    size_t n = 1;
    for (unsigned long long t = v; t >= 10; t /= 10) {
        n++;
    }
    put_digits(out, v, (int)n);
    out[n] = '\0';
    return n;
}

size_t srv_format_fixed(double v, int decimals, bool trim, char *out)
{
    static const double scale[7] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    if (!isfinite(v) || fabs(v) >= 1e12 || decimals < 0 || decimals > 6) {
        int n = snprintf(out, 32, "%.*f", decimals < 0 ? 0 : decimals > 6 ? 6 : decimals, v);
        return n > 0 ? (size_t)n : 0;
    }
    char *o = out;
    if (v < 0) {
        *o++ = '-';
        v = -v;
    }
    const unsigned long long unit = (unsigned long long)scale[decimals];
    const unsigned long long r = (unsigned long long)(v * scale[decimals] + 0.5);
    unsigned long long frac = r % unit;
    o += srv_format_uint(r / unit, o);
    int nd = decimals;
    if (trim) {
        while (nd > 0 && frac % 10 == 0) {
            frac /= 10;
            nd--;
        }
    }
    if (nd > 0) {
        *o++ = '.';
        for (int i = nd - 1; i >= 0; i--) {
            o[i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        o += nd;
    }
    *o = '\0';
    return (size_t)(o - out);
}

void srv_ptr_index(srv_ptr *dst, const srv_ptr *parent, size_t i)
{
    char tmp[24];
    size_t n = srv_format_uint(i, tmp);
    ptr_copy(dst, parent);
    ptr_append_token(dst, tmp, n);
}

/* ============================================================ small helpers */

/* Type names as they appear in messages ("expected a number, got string"). */
static const char *type_name(const cJSON *it)
{
    if (it == NULL) {
        return "nothing";
    }
    if (cJSON_IsNumber(it)) {
        return "number";
    }
    if (cJSON_IsString(it)) {
        return "string";
    }
    if (cJSON_IsBool(it)) {
        return "boolean";
    }
    if (cJSON_IsNull(it)) {
        return "null";
    }
    if (cJSON_IsArray(it)) {
        return "array";
    }
    if (cJSON_IsObject(it)) {
        return "object";
    }
    return "unknown value";
}

/* Shortest decimal that strtod reads back to v ("0.1", not 0.10000000000000001). */
static size_t fmt_double(double v, char out[32])
{
    int n = 0;
    if (!isfinite(v)) {
        memcpy(out, "null", 5);
        return 4;
    }
    /* A double whose shortest form has <= 15 digits prints exactly that form
     * at %.15g (two 15-digit decimals never share a double's interval). */
    for (int p = 15; p <= 17; p++) {
        n = snprintf(out, 32, "%.*g", p, v);
        if (p == 17 || strtod(out, NULL) == v) {
            break;
        }
    }
    return (size_t)n;
}

static bool err_oom(srv_err *e, const char *name)
{
    return srv_err_set(e, 500, SRV_CODE_INTERNAL, "", "out of memory while reading %s",
                       name != NULL ? name : "the request");
}

/* "[2,3]" for messages; saturated dimensions print as "huge". */
static void fmt_shape(char *out, size_t out_len, const size_t *shape, size_t rank)
{
    size_t o = 0;
    int n = snprintf(out, out_len, "[");
    o = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < rank && o < out_len; i++) {
        if (shape[i] == SIZE_MAX) {
            n = snprintf(out + o, out_len - o, "%shuge", i ? "," : "");
        } else {
            n = snprintf(out + o, out_len - o, "%s%zu", i ? "," : "", shape[i]);
        }
        o += n > 0 ? (size_t)n : 0;
    }
    if (o < out_len) {
        snprintf(out + o, out_len - o, "]");
    }
}

/* "[1][2]" for a flat index into shape (row-major). */
static void fmt_multi_index(char *out, size_t out_len, const size_t *shape, size_t rank,
                            size_t flat)
{
    size_t idx[SRV_TENSOR_MAX_RANK];
    for (size_t i = rank; i-- > 0;) {
        idx[i] = shape[i] ? flat % shape[i] : 0;
        flat = shape[i] ? flat / shape[i] : 0;
    }
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < rank && o < out_len; i++) {
        int n = snprintf(out + o, out_len - o, "[%zu]", idx[i]);
        o += n > 0 ? (size_t)n : 0;
    }
}

/* Product of shape; false when it does not fit in size_t. A zero dimension
 * makes the product 0 whatever the others are. */
static bool shape_product(const size_t *shape, size_t rank, size_t *out)
{
    size_t p = 1;
    bool overflow = false;
    for (size_t i = 0; i < rank; i++) {
        if (shape[i] == 0) {
            *out = 0;
            return true;
        }
        if (p > SIZE_MAX / shape[i]) {
            overflow = true;
        } else {
            p *= shape[i];
        }
    }
    *out = p;
    return !overflow;
}

/* What a caller asked for, as a phrase: "a 2-D array (a list of rows)". */
static void fmt_rank_wanted(char *out, size_t out_len, size_t lo, size_t hi)
{
    if (hi == 0) {
        snprintf(out, out_len, "a number");
    } else if (lo == 0) {
        snprintf(out, out_len, "a number or an array of up to %zu dimensions", hi);
    } else if (lo == hi && lo == 1) {
        snprintf(out, out_len, "a 1-D array (a list of numbers)");
    } else if (lo == hi && lo == 2) {
        snprintf(out, out_len, "a 2-D array (a list of rows, e.g. [[1, 2], [3, 4]])");
    } else if (lo == hi) {
        snprintf(out, out_len, "a %zu-D array (a list of %zu-D arrays)", lo, lo - 1);
    } else if (hi == lo + 1) {
        snprintf(out, out_len, "a %zu-D or %zu-D array", lo, hi);
    } else {
        snprintf(out, out_len, "a %zu-D to %zu-D array", lo, hi);
    }
}

static bool err_rank(srv_err *e, const char *field, const char *name, size_t lo, size_t hi,
                     const char *got)
{
    char want[96];
    fmt_rank_wanted(want, sizeof want, lo, hi);
    return srv_err_set(e, 400, SRV_CODE_INVALID, field, "%s: expected %s, got %s", name, want, got);
}

static bool err_too_many(srv_err *e, const char *field, const char *name, const size_t *shape,
                         size_t rank, size_t size, bool overflow, size_t max_elements)
{
    char sh[128];
    fmt_shape(sh, sizeof sh, shape, rank);
    if (overflow) {
        return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, field,
                           "%s: shape %s has more elements than the limit of %zu", name, sh,
                           max_elements);
    }
    return srv_err_set(e, 413, SRV_CODE_TOO_LARGE, field,
                       "%s: shape %s has %zu elements, over the limit of %zu", name, sh, size,
                       max_elements);
}

/* The largest double that still rounds to a finite float (FLT_MAX plus just
 * under half an ulp); JSON text such as 3.4028235e38 must read as FLT_MAX. */
#define FLOAT_ROUNDS_FINITE_BELOW 3.4028235677973366e38

/* ================================================================== parsing */

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* After a failed parse: did the text open more than cJSON's nesting limit of
 * arrays/objects before stopping? Scans only up to where parsing stopped. */
static bool nesting_exceeded(const char *s, size_t end)
{
    size_t depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < end; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth >= CJSON_NESTING_LIMIT) {
                return true;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

/*
 * A fast path in front of cJSON's parser. cJSON reads every number with
 * strtod (and localeconv), which was most of the time of a request with a
 * few thousand numbers; this reader builds the same cJSON tree (the same
 * public constructors, so cJSON_Delete and every reader work unchanged) for
 * plain RFC 8259 text: numbers by Clinger's exact fast path (a mantissa below
 * 2^53 times or divided by an exact power of ten up to 10^22 is correctly
 * rounded, as strtod is), strtod only beyond that. Anything else (escapes or
 * control characters in strings, numbers outside the grammar, nesting at
 * cJSON's limit, any error at all) makes it give up, and cJSON parses the
 * text as before, so what is accepted and every error message stay cJSON's.
 */
typedef struct fast_parse {
    char *s;         /* the NUL-terminated copy of the body; strings are cut in place */
    const char *end; /* s + len */
    int depth;
} fast_parse;

static const double fp_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static void fp_ws(fast_parse *p)
{
    /* the copy ends in NUL, which is not whitespace */
    while (is_json_ws(*p->s)) {
        p->s++;
    }
}

static bool fp_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The copy of the body is followed by FP_PAD zero bytes, so the number
 * reader may load 8 bytes anywhere inside it. */
#define FP_PAD 8

static uint64_t fp_load8(const char *s)
{
    uint64_t v;
    memcpy(&v, s, sizeof v);
    return v;
}

/* Digits at the start of s, up to 8 (bytes read as one little-endian word:
 * a byte is a digit when its high nibble is 3 and its low nibble, plus 6,
 * stays below 16). */
static inline __attribute__((always_inline)) size_t fp_digit_run8(const char *s)
{
    const uint64_t v = fp_load8(s);
    const uint64_t hi = (v & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull;
    const uint64_t lo =
        ((v + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull;
    const uint64_t bad = hi | lo; /* nonzero bytes: not digits (carries only reach later bytes) */
    return bad == 0 ? 8 : (size_t)__builtin_ctzll(bad) / 8;
}

/* Length of the digit run at s. */
static size_t fp_digit_run(const char *s)
{
    size_t n = 0, k;
    while ((k = fp_digit_run8(s + n)) == 8) {
        n += 8;
    }
    return n + k;
}

/* The value of the n <= 8 digits at s: three multiplications for all of
 * them instead of one per digit (the first digit is the lowest byte; the
 * bytes past n are shifted out, and their borrows only reach upwards). */
static inline __attribute__((always_inline)) uint64_t fp_value8(const char *s, size_t n)
{
    if (n == 0) {
        return 0;
    }
    uint64_t v = (fp_load8(s) - 0x3030303030303030ull) << (8 * (8 - n));
    v = (v * 10) + (v >> 8);
    v = (((v & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
         (((v >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >>
        32;
    return v;
}

static const uint64_t fp_p10_u64[20] = {1u,
                                        10u,
                                        100u,
                                        1000u,
                                        10000u,
                                        100000u,
                                        1000000u,
                                        10000000u,
                                        100000000u,
                                        1000000000u,
                                        10000000000u,
                                        100000000000u,
                                        1000000000000u,
                                        10000000000000u,
                                        100000000000000u,
                                        1000000000000000u,
                                        10000000000000000u,
                                        100000000000000000u,
                                        1000000000000000000u,
                                        10000000000000000000u};

/* The value of n <= 19 digits at s. */
static uint64_t fp_value_digits_long(const char *s, size_t n)
{
    uint64_t v = 0;
    while (n > 8) {
        v = v * 100000000u + fp_value8(s, 8);
        s += 8;
        n -= 8;
    }
    return v * fp_p10_u64[n] + fp_value8(s, n);
}

static inline __attribute__((always_inline)) uint64_t fp_value_digits(const char *s, size_t n)
{
    if (n <= 1) { /* the "0" of "0.123", or no digits at all */
        return n == 1 ? (uint64_t)(s[0] - '0') : 0;
    }
    return n <= 8 ? fp_value8(s, n) : fp_value_digits_long(s, n);
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * The integer and fraction digits are found and read eight at a time; the
 * usual tensor entry ("-0.0687", "0.84842134") has well under the 19 that
 * fit the exact path. */
static cJSON *fp_number(fast_parse *p)
{
    char *start = p->s, *c = p->s;
    const bool neg = *c == '-';
    if (neg) {
        c++;
    }
    if (!fp_digit(*c)) {
        return NULL;
    }
    const char *int_start = c;
    if (*c == '0') {
        c++;
    } else {
        c += fp_digit_run(c);
    }
    const char *int_end = c, *frac_start = c, *frac_end = c;
    if (*c == '.') {
        c++;
        if (!fp_digit(*c)) {
            return NULL;
        }
        frac_start = c;
        c += fp_digit_run(c);
        frac_end = c;
    }
    int exp10 = 0;
    if (*c == 'e' || *c == 'E') {
        c++;
        bool eneg = false;
        int e = 0;
        if (*c == '+' || *c == '-') {
            eneg = *c == '-';
            c++;
        }
        if (!fp_digit(*c)) {
            return NULL;
        }
        for (; fp_digit(*c); c++) {
            if (e < 100000) {
                e = e * 10 + (*c - '0');
            }
        }
        exp10 = eneg ? -e : e;
    }
    const size_t n_int = (size_t)(int_end - int_start), n_frac = (size_t)(frac_end - frac_start);
    double v;
    bool done = false;
    if (n_int + n_frac <= 19) {
        /* below 10^19: fits */
        const uint64_t mant = fp_value_digits(int_start, n_int) * fp_p10_u64[n_frac] +
                              fp_value_digits(frac_start, n_frac);
        const int e = exp10 - (int)n_frac;
        if (mant <= ((uint64_t)1 << 53) && e >= -22 && e <= 22) {
            v = (double)(int64_t)mant;
            v = e < 0 ? v / fp_pow10[-e] : v * fp_pow10[e];
            v = neg ? -v : v;
            done = true;
        }
    }
    if (!done) {
        /* strtod on the token alone: cut the text after it for the call */
        const char saved = *c;
        *c = '\0';
        v = strtod(start, NULL);
        *c = saved;
    }
    p->s = c;
    return srv_json_pool_number(v);
}

/* The string starting at the quote p->s: cut in place, handed to make (cJSON
 * copies it), restored. NULL for escapes and control characters. */
static bool fp_string_span(fast_parse *p, char **start, char **close)
{
    char *c = p->s + 1;
    while (c < p->end && *c != '"') {
        if (*c == '\\' || (unsigned char)*c < 0x20) {
            return false;
        }
        c++;
    }
    if (c >= p->end) {
        return false;
    }
    *start = p->s + 1;
    *close = c;
    p->s = c + 1;
    return true;
}

static cJSON *fp_value(fast_parse *p);

static cJSON *fp_array(fast_parse *p)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL) {
        return NULL;
    }
    p->s++;
    fp_ws(p);
    if (p->s < p->end && *p->s == ']') {
        p->s++;
        return arr;
    }
    cJSON *last = NULL;
    for (;;) {
        /* numbers, the bulk of any request, straight to their reader */
        const char c = *p->s;
        cJSON *it = (c == '-' || fp_digit(c)) ? fp_number(p) : fp_value(p);
        if (it == NULL) {
            cJSON_Delete(arr);
            return NULL;
        }
        /* cJSON_AddItemToArray's list, kept by hand to skip its checks:
         * next links forward, prev back, and the first item's prev is the
         * last item (how cJSON appends in O(1); set once the array ends). */
        if (last == NULL) {
            arr->child = it;
        } else {
            last->next = it;
            it->prev = last;
        }
        last = it;
        fp_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            fp_ws(p);
            continue;
        }
        if (p->s < p->end && *p->s == ']') {
            p->s++;
            arr->child->prev = last;
            return arr;
        }
        cJSON_Delete(arr);
        return NULL;
    }
}

static cJSON *fp_object(fast_parse *p)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL) {
        return NULL;
    }
    p->s++;
    fp_ws(p);
    if (p->s < p->end && *p->s == '}') {
        p->s++;
        return obj;
    }
    for (;;) {
        char *key, *close;
        if (p->s >= p->end || *p->s != '"' || !fp_string_span(p, &key, &close)) {
            break;
        }
        fp_ws(p);
        if (p->s >= p->end || *p->s != ':') {
            break;
        }
        p->s++;
        fp_ws(p);
        cJSON *it = fp_value(p);
        if (it == NULL) {
            break;
        }
        /* the key is cut in place only now: the value's text lies after it */
        *close = '\0';
        const bool added = cJSON_AddItemToObject(obj, key, it);
        *close = '"';
        if (!added) {
            cJSON_Delete(it);
            break;
        }
        fp_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            fp_ws(p);
            continue;
        }
        if (p->s < p->end && *p->s == '}') {
            p->s++;
            return obj;
        }
        break;
    }
    cJSON_Delete(obj);
    return NULL;
}

static cJSON *fp_value(fast_parse *p)
{
    if (p->s >= p->end) {
        return NULL;
    }
    switch (*p->s) {
    case '{':
    case '[': {
        if (++p->depth >= CJSON_NESTING_LIMIT) {
            return NULL;
        }
        cJSON *it = *p->s == '{' ? fp_object(p) : fp_array(p);
        p->depth--;
        return it;
    }
    case '"': {
        char *start, *close;
        if (!fp_string_span(p, &start, &close)) {
            return NULL;
        }
        *close = '\0';
        cJSON *it = cJSON_CreateString(start);
        *close = '"';
        return it;
    }
    case 't':
        if (p->end - p->s >= 4 && memcmp(p->s, "true", 4) == 0) {
            p->s += 4;
            return cJSON_CreateTrue();
        }
        return NULL;
    case 'f':
        if (p->end - p->s >= 5 && memcmp(p->s, "false", 5) == 0) {
            p->s += 5;
            return cJSON_CreateFalse();
        }
        return NULL;
    case 'n':
        if (p->end - p->s >= 4 && memcmp(p->s, "null", 4) == 0) {
            p->s += 4;
            return cJSON_CreateNull();
        }
        return NULL;
    default:
        return fp_number(p);
    }
}

/* The whole text (copy [len], NUL-terminated) as one value and nothing else
 * but whitespace, or NULL: then cJSON decides. */
static cJSON *fast_parse_text(char *copy, size_t len)
{
    const struct lconv *lc = localeconv();
    if (lc == NULL || lc->decimal_point == NULL || strcmp(lc->decimal_point, ".") != 0) {
        return NULL; /* strtod would not read '.' */
    }
    fast_parse p = {copy, copy + len, 0};
    fp_ws(&p);
    cJSON *root = fp_value(&p);
    fp_ws(&p);
    if (root != NULL && p.s != p.end) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *srv_json_parse_object(const char *body, size_t len, srv_err *e)
{
    size_t start = 0;
    if (body == NULL) {
        len = 0;
    }
    while (start < len && is_json_ws(body[start])) {
        start++;
    }
    if (start == len) {
        srv_err_set(e, 400, SRV_CODE_MALFORMED, "", "malformed JSON at byte %zu (empty body)",
                    start);
        return NULL;
    }
    /* Bodies arrive without a terminating NUL; cJSON is safest given one,
     * and the number reader wants FP_PAD readable bytes past it. One copy of
     * the body is cheap next to building the tree. */
    if (len > SIZE_MAX - 1 - FP_PAD) {
        srv_err_set(e, 413, SRV_CODE_TOO_LARGE, "", "body too large");
        return NULL;
    }
    char *copy = malloc(len + 1 + FP_PAD);
    if (copy == NULL) {
        err_oom(e, "the request body");
        return NULL;
    }
    memcpy(copy, body, len);
    memset(copy + len, 0, 1 + FP_PAD);

    const char *end = NULL;
    const bool pooled = srv_json_pool_parse_begin();
    cJSON *root = fast_parse_text(copy, len);
    const bool fast = root != NULL;
    if (!fast) {
        root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, false);
    }
    srv_json_pool_parse_end(pooled);
    if (fast) {
        free(copy);
        if (!cJSON_IsObject(root)) {
            srv_err_set(e, 400, SRV_CODE_INVALID, "",
                        "the request body must be a JSON object, got %s", type_name(root));
            cJSON_Delete(root);
            return NULL;
        }
        return root;
    }
    size_t at = end != NULL && end >= copy ? (size_t)(end - copy) : 0;
    if (at > len) {
        at = len;
    }
    if (root == NULL) {
        if (nesting_exceeded(copy, at < len ? at + 1 : len)) {
            srv_err_set(e, 400, SRV_CODE_MALFORMED, "",
                        "malformed JSON at byte %zu (nested deeper than %d levels)", at,
                        CJSON_NESTING_LIMIT);
        } else {
            srv_err_set(e, 400, SRV_CODE_MALFORMED, "", "malformed JSON at byte %zu", at);
        }
        free(copy);
        return NULL;
    }
    /* With the NUL counted in the length, cJSON stops at the first byte after
     * the value; only whitespace may follow. An embedded NUL also stops here. */
    size_t i = at;
    while (i < len && is_json_ws(copy[i])) {
        i++;
    }
    free(copy);
    if (i < len) {
        cJSON_Delete(root);
        srv_err_set(e, 400, SRV_CODE_MALFORMED, "",
                    "malformed JSON at byte %zu (unexpected data after the JSON value)", i);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        srv_err_set(e, 400, SRV_CODE_INVALID, "", "the request body must be a JSON object, got %s",
                    type_name(root));
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ================================================================== tensors */

void srv_tensor_free(srv_tensor *t)
{
    if (t == NULL) {
        return;
    }
    free(t->data);
    memset(t, 0, sizeof *t);
}

void srv_btensor_free(srv_btensor *t)
{
    if (t == NULL) {
        return;
    }
    free(t->data);
    memset(t, 0, sizeof *t);
}

/* Where a tensor goes while it is read; float or bool elements. */
typedef struct tensor_read {
    const srv_ptr *where;
    const char *name;
    bool boolean;
    size_t rank;
    size_t shape[SRV_TENSOR_MAX_RANK];
    size_t size;
    void *data;                      /* float * or uint8_t * */
    size_t pos;                      /* next element to fill */
    size_t idx[SRV_TENSOR_MAX_RANK]; /* position of the walk, for pointers */
    srv_err *e;
} tensor_read;

/* Pointer to the walk's position idx[0..depth-1]. */
static void tr_ptr(const tensor_read *t, size_t depth, srv_ptr *p)
{
    *p = *t->where;
    for (size_t i = 0; i < depth; i++) {
        srv_ptr_index(p, p, t->idx[i]);
    }
}

static bool tr_err(const tensor_read *t, size_t depth, int status, const char *code,
                   const char *fmt, const char *a, const char *b)
{
    srv_ptr p;
    tr_ptr(t, depth, &p);
    char msg[400];
    snprintf(msg, sizeof msg, fmt, a, b);
    return srv_err_set(t->e, status, code, p.s, "%s: %s", t->name, msg);
}

/* One element at the walk's position idx[0..rank-1]. */
static bool tr_leaf(tensor_read *t, const cJSON *it)
{
    size_t d = t->rank;
    if (t->boolean) {
        uint8_t v;
        if (cJSON_IsBool(it)) {
            v = cJSON_IsTrue(it) ? 1 : 0;
        } else if (cJSON_IsNumber(it) && (it->valuedouble == 0.0 || it->valuedouble == 1.0)) {
            v = it->valuedouble == 1.0 ? 1 : 0;
        } else if (cJSON_IsNumber(it)) {
            char num[32];
            fmt_double(it->valuedouble, num);
            return tr_err(t, d, 400, SRV_CODE_INVALID, "expected true or false (or 0/1), got %s",
                          num, NULL);
        } else {
            return tr_err(t, d, 400, SRV_CODE_INVALID, "expected true or false, got %s",
                          type_name(it), NULL);
        }
        ((uint8_t *)t->data)[t->pos++] = v;
        return true;
    }
    if ((it->type & 0xFF) != cJSON_Number) { /* cJSON_IsNumber, without the call */
        return tr_err(t, d, 400, SRV_CODE_INVALID, "expected a number, got %s", type_name(it),
                      NULL);
    }
    double v = it->valuedouble;
    if (!isfinite(v)) {
        return tr_err(t, d, 400, SRV_CODE_INVALID, "value is not finite", NULL, NULL);
    }
    if (fabs(v) >= FLOAT_ROUNDS_FINITE_BELOW) {
        char num[32];
        fmt_double(v, num);
        return tr_err(t, d, 400, SRV_CODE_INVALID, "value %s is outside the float32 range", num,
                      NULL);
    }
    ((float *)t->data)[t->pos++] = (float)v;
    return true;
}

/* "3" for a row of a matrix, "[0][3]" deeper down. */
static void tr_label(const tensor_read *t, size_t depth, char *out, size_t out_len)
{
    if (depth == 1) {
        snprintf(out, out_len, "%zu", t->idx[0]);
        return;
    }
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < depth && o < out_len; i++) {
        int n = snprintf(out + o, out_len - o, "[%zu]", t->idx[i]);
        o += n > 0 ? (size_t)n : 0;
    }
}

static bool tr_ragged(const tensor_read *t, const cJSON *arr, size_t level)
{
    char label[96], msg[200];
    tr_label(t, level, label, sizeof label);
    size_t have = (size_t)cJSON_GetArraySize(arr);
    size_t want = t->shape[level];
    if (level + 1 == t->rank) {
        snprintf(msg, sizeof msg, "row %s has %zu values, expected %zu", label, have, want);
    } else if (level + 2 == t->rank) {
        snprintf(msg, sizeof msg, "entry %s has %zu rows, expected %zu", label, have, want);
    } else {
        snprintf(msg, sizeof msg, "entry %s has %zu entries, expected %zu", label, have, want);
    }
    return tr_err(t, level, 400, SRV_CODE_INVALID, "%s", msg, NULL);
}

/* Fills elements from arr, the array at depth level, checking every length
 * against the shape taken from the first elements. */
static bool tr_walk(tensor_read *t, const cJSON *arr, size_t level)
{
    if (level >= t->rank || level >= SRV_TENSOR_MAX_RANK) {
        return false; /* cannot happen: rank <= SRV_TENSOR_MAX_RANK; tells the compiler so */
    }
    size_t want = t->shape[level];
    size_t i = 0;
    for (const cJSON *it = arr->child; it != NULL; it = it->next, i++) {
        if (i == want) {
            return tr_ragged(t, arr, level);
        }
        t->idx[level] = i;
        if (level + 1 < t->rank) {
            if (!cJSON_IsArray(it)) {
                return tr_err(t, level + 1, 400, SRV_CODE_INVALID, "expected an array, got %s",
                              type_name(it), NULL);
            }
            if (!tr_walk(t, it, level + 1)) {
                return false;
            }
        } else if (!tr_leaf(t, it)) {
            return false;
        }
    }
    if (i != want) {
        return tr_ragged(t, arr, level);
    }
    return true;
}

static bool tr_alloc(tensor_read *t)
{
    size_t elem = t->boolean ? 1 : sizeof(float);
    size_t n = t->size ? t->size : 1; /* data is never NULL on success */
    if (n > SIZE_MAX / elem) {
        return err_oom(t->e, t->name);
    }
    t->data = malloc(n * elem);
    if (t->data == NULL) {
        return err_oom(t->e, t->name);
    }
    return true;
}

/* Nested lists (or a bare number for rank 0). */
static bool tr_read_nested(tensor_read *t, const cJSON *item, size_t lo, size_t hi,
                           bool allow_empty, size_t max_elements)
{
    /* Rank and shape come from the chain of first elements; every other
     * list is then checked against them. */
    size_t rank = 0;
    bool empty = false;
    const cJSON *cur = item;
    while (cJSON_IsArray(cur)) {
        if (rank == SRV_TENSOR_MAX_RANK) {
            char got[64];
            snprintf(got, sizeof got, "an array nested more than %d levels deep",
                     SRV_TENSOR_MAX_RANK);
            return err_rank(t->e, t->where->s, t->name, lo, hi, got);
        }
        size_t n = (size_t)cJSON_GetArraySize(cur);
        t->shape[rank++] = n;
        if (n == 0) {
            empty = true;
            break;
        }
        cur = cur->child;
    }
    if (empty) {
        if (!allow_empty) {
            t->rank = rank;
            for (size_t i = 0; i + 1 < rank; i++) {
                t->idx[i] = 0;
            }
            return tr_err(t, rank - 1, 400, SRV_CODE_INVALID,
                          "empty array; every dimension must have at least one entry", NULL, NULL);
        }
        /* An empty list cannot show its inner dimensions: [] read as a
         * matrix is [0][0]. The caller's shape checks say what is missing. */
        while (rank < lo) {
            t->shape[rank++] = 0;
        }
    }
    if (rank < lo || rank > hi) {
        char got[200];
        if (rank == 0) {
            snprintf(got, sizeof got, "%s%s", cJSON_IsNull(item) ? "" : "a ", type_name(item));
        } else {
            char sh[128];
            fmt_shape(sh, sizeof sh, t->shape, rank);
            snprintf(got, sizeof got, "a %zu-D array of shape %s", rank, sh);
        }
        return err_rank(t->e, t->where->s, t->name, lo, hi, got);
    }
    t->rank = rank;
    size_t size;
    bool fits = shape_product(t->shape, rank, &size);
    if (!fits || size > max_elements) {
        return err_too_many(t->e, t->where->s, t->name, t->shape, rank, size, !fits, max_elements);
    }
    t->size = size;
    if (!tr_alloc(t)) {
        return false;
    }
    t->pos = 0;
    bool ok = rank == 0 ? tr_leaf(t, item) : tr_walk(t, item, 0);
    if (!ok) {
        free(t->data);
        t->data = NULL;
    }
    return ok;
}

/* The standard base64 alphabet (RFC 4648 section 4), shared by the tensor
 * reader and the codec further down. */
static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0xFF for everything else. */
/* clang-format off */
static const unsigned char b64_value[256] = {
#define X 0xFF
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  62, X,  X,  X,  63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, X,  X,  X,  X,  X,  X,
    X,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, X,  X,  X,  X,  X,
    X,  26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
    X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,  X,
#undef X
};
/* clang-format on */

/* Bytes that a base64 text of this length decodes to; SIZE_MAX when the
 * length or padding is impossible (decoding then says where). */
static size_t b64_bytes_held(const char *s, size_t len)
{
    size_t pads = 0;
    while (len > 0 && s[len - 1] == '=') {
        len--;
        pads++;
    }
    size_t rem = len % 4;
    if (rem == 1 || pads > (rem == 0 ? 0 : 4 - rem)) {
        return SIZE_MAX;
    }
    return len / 4 * 3 + (rem == 2 ? 1 : rem == 3 ? 2 : 0);
}

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool check_keys_named(const cJSON *obj, const srv_ptr *where, const char *name,
                             const char *const *allowed, srv_err *e);

/* {"dtype": ..., "shape": [...], "data": "<base64>"} */
static bool tr_read_object(tensor_read *t, const cJSON *obj, size_t lo, size_t hi, bool allow_empty,
                           size_t max_elements)
{
    static const char *const keys[] = {"dtype", "shape", "data", NULL};
    srv_ptr p_dtype, p_shape, p_data, p;
    srv_ptr_key(&p_dtype, t->where, "dtype");
    srv_ptr_key(&p_shape, t->where, "shape");
    srv_ptr_key(&p_data, t->where, "data");
    if (!check_keys_named(obj, t->where, t->name, keys, t->e)) {
        return false;
    }

    const char *want_dtype = t->boolean ? "bool" : "float32";
    const cJSON *dtype = srv_json_member(obj, "dtype");
    if (dtype != NULL) {
        if (!cJSON_IsString(dtype)) {
            return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_dtype.s,
                               "%s: dtype must be a string ('%s'), got %s", t->name, want_dtype,
                               type_name(dtype));
        }
        const char *d = dtype->valuestring;
        bool ok = t->boolean ? strcmp(d, "bool") == 0 || strcmp(d, "uint8") == 0
                             : strcmp(d, "float32") == 0;
        if (!ok) {
            return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_dtype.s,
                               "%s: dtype '%.64s' is not supported; use '%s'", t->name, d,
                               t->boolean ? "bool' (or 'uint8" : "float32");
        }
    }

    const cJSON *shape = srv_json_member(obj, "shape");
    const cJSON *data = srv_json_member(obj, "data");
    if (shape == NULL || data == NULL) {
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, shape == NULL ? p_shape.s : p_data.s,
                           "%s: a tensor object needs 'shape' and 'data' (and 'dtype': '%s'); "
                           "'%s' is missing",
                           t->name, want_dtype, shape == NULL ? "shape" : "data");
    }
    if (!cJSON_IsArray(shape)) {
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_shape.s,
                           "%s: shape must be an array of non-negative integers, got %s", t->name,
                           type_name(shape));
    }
    size_t rank = (size_t)cJSON_GetArraySize(shape);
    if (rank > SRV_TENSOR_MAX_RANK || rank < lo || rank > hi) {
        char got[64];
        snprintf(got, sizeof got, "shape with %zu dimensions", rank);
        return err_rank(t->e, p_shape.s, t->name, lo, hi, got);
    }
    size_t i = 0;
    for (const cJSON *it = shape->child; it != NULL; it = it->next, i++) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (!cJSON_IsNumber(it) || !(d >= 0.0) || d != floor(d)) {
            srv_ptr_index(&p, &p_shape, i);
            char got[32];
            if (cJSON_IsNumber(it)) {
                fmt_double(it->valuedouble, got);
            } else {
                snprintf(got, sizeof got, "%s", type_name(it));
            }
            return srv_err_set(t->e, 400, SRV_CODE_INVALID, p.s,
                               "%s: shape[%zu] must be a non-negative integer, got %s", t->name, i,
                               got);
        }
        /* Saturate: a declared [1e30, 1e30] is refused by size, never allocated. */
        t->shape[i] = d >= (double)SIZE_MAX ? SIZE_MAX : (size_t)d;
        if (t->shape[i] == 0 && !allow_empty) {
            srv_ptr_index(&p, &p_shape, i);
            return srv_err_set(t->e, 400, SRV_CODE_INVALID, p.s,
                               "%s: shape[%zu] is 0; every dimension must be at least 1", t->name,
                               i);
        }
    }
    t->rank = rank;
    size_t size;
    bool fits = shape_product(t->shape, rank, &size);
    if (!fits || size > max_elements) {
        return err_too_many(t->e, p_shape.s, t->name, t->shape, rank, size, !fits, max_elements);
    }
    t->size = size;

    if (!cJSON_IsString(data)) {
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_data.s,
                           "%s: data must be a base64 string, got %s", t->name, type_name(data));
    }
    const char *s = data->valuestring;
    size_t len = strlen(s);
    size_t elem = t->boolean ? 1 : 4;
    size_t need = size * elem; /* size <= max_elements; checked below for overflow */
    if (size > SIZE_MAX / elem) {
        return err_oom(t->e, t->name);
    }
    size_t held = b64_bytes_held(s, len);
    if (held != SIZE_MAX && held != need) {
        char sh[128];
        fmt_shape(sh, sizeof sh, t->shape, rank);
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_data.s,
                           "%s: data holds %zu bytes, shape %s needs %zu", t->name, held, sh, need);
    }
    /* held == need here (or the text is invalid and decoding says where), so
     * the buffer is bounded by max_elements. */
    size_t cap = srv_base64_decoded_max(len);
    if (cap < need) {
        cap = need;
    }
    cap = (cap + 3) / 4 * 4;
    unsigned char *raw = malloc(cap ? cap : 4);
    if (raw == NULL) {
        return err_oom(t->e, t->name);
    }
    size_t got_len = 0, bad_at = 0;
    if (!srv_base64_decode(s, len, raw, &got_len, &bad_at)) {
        free(raw);
        unsigned char c = bad_at < len ? (unsigned char)s[bad_at] : 0;
        const char *why = c == '=' ? "misplaced padding '='"
                          : c != 0 && b64_value[c] == 0xFF
                              ? "a character outside the base64 alphabet"
                              : "a length that is not valid base64";
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_data.s,
                           "%s: data is not valid base64: %s at offset %zu", t->name, why, bad_at);
    }
    if (got_len != need) { /* cannot happen after the length check; kept as a guard */
        free(raw);
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_data.s,
                           "%s: data holds %zu bytes, needs %zu", t->name, got_len, need);
    }
    if (t->boolean) {
        for (size_t k = 0; k < size; k++) {
            if (raw[k] > 1) {
                char mi[96];
                unsigned v = raw[k];
                fmt_multi_index(mi, sizeof mi, t->shape, rank, k);
                free(raw);
                return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_data.s,
                                   "%s: data element %zu (index %s) is %u, expected 0 or 1",
                                   t->name, k, mi, v);
            }
        }
    } else {
        /* In place: element k's four bytes become element k's float. The
         * explicit little-endian load keeps this right on any host. */
        float *f = (float *)(void *)raw;
        for (size_t k = 0; k < size; k++) {
            uint32_t u = load_le32(raw + 4 * k);
            float v;
            memcpy(&v, &u, sizeof v);
            if (!isfinite(v)) {
                char mi[96];
                fmt_multi_index(mi, sizeof mi, t->shape, rank, k);
                free(raw);
                return srv_err_set(t->e, 400, SRV_CODE_INVALID, p_data.s,
                                   "%s: data element %zu (index %s) is not finite", t->name, k, mi);
            }
            f[k] = v;
        }
    }
    t->data = raw;
    return true;
}

static bool tr_read(tensor_read *t, const cJSON *item, size_t lo, size_t hi, bool allow_empty,
                    size_t max_elements)
{
    if (hi > SRV_TENSOR_MAX_RANK) {
        hi = SRV_TENSOR_MAX_RANK;
    }
    if (item == NULL) {
        return srv_err_set(t->e, 400, SRV_CODE_INVALID, t->where->s, "%s is required", t->name);
    }
    if (cJSON_IsObject(item)) {
        return tr_read_object(t, item, lo, hi, allow_empty, max_elements);
    }
    return tr_read_nested(t, item, lo, hi, allow_empty, max_elements);
}

/* Shared by the float and bool readers: the walk is the same, only the
 * element type differs. On success the caller takes t->data. */
static bool tr_run(tensor_read *t, const cJSON *item, const srv_ptr *where, const char *name,
                   bool boolean, size_t rank_min, size_t rank_max, bool allow_empty,
                   size_t max_elements, srv_err *e)
{
    srv_ptr root;
    if (where == NULL) {
        srv_ptr_root(&root);
        where = &root;
    }
    memset(t, 0, sizeof *t);
    t->where = where;
    t->name = name != NULL ? name : "value";
    t->boolean = boolean;
    t->e = e;
    return tr_read(t, item, rank_min, rank_max, allow_empty, max_elements);
}

bool srv_json_read_tensor(const cJSON *item, const srv_ptr *where, const char *name,
                          size_t rank_min, size_t rank_max, bool allow_empty, size_t max_elements,
                          srv_tensor *out, srv_err *e)
{
    tensor_read t;
    memset(out, 0, sizeof *out);
    if (!tr_run(&t, item, where, name, false, rank_min, rank_max, allow_empty, max_elements, e))
        return false;
    out->data = t.data;
    out->rank = t.rank;
    memcpy(out->shape, t.shape, sizeof out->shape);
    out->size = t.size;
    return true;
}

bool srv_json_read_btensor(const cJSON *item, const srv_ptr *where, const char *name,
                           size_t rank_min, size_t rank_max, size_t max_elements, srv_btensor *out,
                           srv_err *e)
{
    tensor_read t;
    memset(out, 0, sizeof *out);
    /* Masks may be empty: their shape is checked against the other inputs. */
    if (!tr_run(&t, item, where, name, true, rank_min, rank_max, true, max_elements, e))
        return false;
    out->data = t.data;
    out->rank = t.rank;
    memcpy(out->shape, t.shape, sizeof out->shape);
    out->size = t.size;
    return true;
}

/* ======================================================== optional members */

/* The member, or NULL when it is absent or JSON null: clients sending
 * "scale": null (Python's None) mean "use the default", and the response's
 * own meta writes defaults as null. */
cJSON *srv_json_member(const cJSON *obj, const char *key)
{
    if (obj == NULL || key == NULL) {
        return NULL;
    }
    for (cJSON *it = obj->child; it != NULL; it = it->next) {
        if (it->string != NULL && it->string[0] == key[0] && strcmp(it->string, key) == 0) {
            return it;
        }
    }
    return NULL;
}

static const cJSON *opt_member(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj)) {
        return NULL;
    }
    const cJSON *it = srv_json_member(obj, key);
    if (it == NULL || cJSON_IsNull(it)) {
        return NULL;
    }
    return it;
}

static void member_ptr(srv_ptr *p, const srv_ptr *where, const char *key)
{
    srv_ptr root;
    if (where == NULL) {
        srv_ptr_root(&root);
        where = &root;
    }
    srv_ptr_key(p, where, key);
}

bool srv_json_opt_bool(const cJSON *obj, const srv_ptr *where, const char *key, bool *out,
                       srv_err *e)
{
    const cJSON *it = opt_member(obj, key);
    if (it == NULL) {
        return true;
    }
    if (!cJSON_IsBool(it)) {
        srv_ptr p;
        member_ptr(&p, where, key);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: expected true or false, got %s", key,
                           type_name(it));
    }
    *out = cJSON_IsTrue(it);
    return true;
}

bool srv_json_opt_int(const cJSON *obj, const srv_ptr *where, const char *key, long long lo,
                      long long hi, long long *out, srv_err *e)
{
    const cJSON *it = opt_member(obj, key);
    if (it == NULL) {
        return true;
    }
    srv_ptr p;
    member_ptr(&p, where, key);
    if (!cJSON_IsNumber(it)) {
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: expected an integer, got %s", key,
                           type_name(it));
    }
    double d = it->valuedouble;
    char got[32];
    fmt_double(d, got);
    if (!isfinite(d)) {
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "%s: expected an integer, got a non-finite number", key);
    }
    if (d != floor(d)) {
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: expected an integer, got %s", key,
                           got);
    }
    /* 2^63 is exact as a double; anything at or past it cannot be a long long. */
    bool in_ll = d < 9223372036854775808.0 && d >= -9223372036854775808.0;
    long long v = in_ll ? (long long)d : 0;
    if (!in_ll || v < lo || v > hi) {
        if (lo == LLONG_MIN && hi == LLONG_MAX) {
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: %s is out of range", key, got);
        }
        if (hi == LLONG_MAX) {
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: must be >= %lld, got %s", key,
                               lo, got);
        }
        if (lo == LLONG_MIN) {
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: must be <= %lld, got %s", key,
                               hi, got);
        }
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                           "%s: must be an integer from %lld to %lld, got %s", key, lo, hi, got);
    }
    *out = v;
    return true;
}

bool srv_json_opt_float(const cJSON *obj, const srv_ptr *where, const char *key, double lo,
                        double hi, double *out, srv_err *e)
{
    const cJSON *it = opt_member(obj, key);
    if (it == NULL) {
        return true;
    }
    srv_ptr p;
    member_ptr(&p, where, key);
    if (!cJSON_IsNumber(it)) {
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: expected a number, got %s", key,
                           type_name(it));
    }
    double d = it->valuedouble;
    if (!isfinite(d)) {
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: value is not finite", key);
    }
    if (!(d >= lo && d <= hi)) {
        char got[32], a[32], b[32];
        fmt_double(d, got);
        fmt_double(lo, a);
        fmt_double(hi, b);
        if (isinf(hi) && isinf(lo)) {
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: %s is out of range", key, got);
        }
        if (isinf(hi)) {
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: must be >= %s, got %s", key, a,
                               got);
        }
        if (isinf(lo)) {
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: must be <= %s, got %s", key, b,
                               got);
        }
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: must be from %s to %s, got %s", key,
                           a, b, got);
    }
    *out = d;
    return true;
}

bool srv_json_opt_string(const cJSON *obj, const srv_ptr *where, const char *key, char *out,
                         size_t out_len, srv_err *e)
{
    const cJSON *it = opt_member(obj, key);
    if (it == NULL) {
        return true;
    }
    if (!cJSON_IsString(it)) {
        srv_ptr p;
        member_ptr(&p, where, key);
        return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s: expected a string, got %s", key,
                           type_name(it));
    }
    if (out_len > 0) {
        snprintf(out, out_len, "%s", it->valuestring);
    }
    return true;
}

/* check_keys with an optional name prefix for the message ("key: ..."). */
static bool check_keys_named(const cJSON *obj, const srv_ptr *where, const char *name,
                             const char *const *allowed, srv_err *e)
{
    srv_ptr root;
    if (where == NULL) {
        srv_ptr_root(&root);
        where = &root;
    }
    if (obj == NULL) {
        return true;
    }
    const char *prefix = name != NULL ? name : "";
    const char *sep = name != NULL ? ": " : "";
    if (!cJSON_IsObject(obj)) {
        return srv_err_set(e, 400, SRV_CODE_INVALID, where->s, "%s%sexpected an object, got %s",
                           prefix, sep, type_name(obj));
    }
    size_t n_allowed = 0;
    while (allowed != NULL && allowed[n_allowed] != NULL) {
        n_allowed++;
    }
    /* Duplicates are refused too: cJSON keeps both, and silently using the
     * first would hide a client bug. Tracking per allowed name keeps this
     * linear in the number of members. */
    enum { MAX_TRACKED = 128 };
    bool seen[MAX_TRACKED] = {false};
    for (const cJSON *it = obj->child; it != NULL; it = it->next) {
        const char *k = it->string != NULL ? it->string : "";
        size_t j = 0;
        while (j < n_allowed && (allowed[j][0] != k[0] || strcmp(allowed[j], k) != 0)) {
            j++;
        }
        srv_ptr p;
        if (j == n_allowed) {
            char list[400];
            size_t o = 0;
            list[0] = '\0';
            for (size_t a = 0; a < n_allowed; a++) {
                size_t l = strlen(allowed[a]);
                if (o + l + 2 + 5 >= sizeof list) {
                    snprintf(list + o, sizeof list - o, "%s...", a ? ", " : "");
                    break;
                }
                o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", a ? ", " : "", allowed[a]);
            }
            srv_ptr_key(&p, where, k);
            return srv_err_set(e, 400, SRV_CODE_INVALID, p.s,
                               "%s%sunknown member '%.64s'; accepted: %s", prefix, sep, k, list);
        }
        if (j < MAX_TRACKED) {
            if (seen[j]) {
                srv_ptr_key(&p, where, k);
                return srv_err_set(e, 400, SRV_CODE_INVALID, p.s, "%s%sduplicate member '%s'",
                                   prefix, sep, k);
            }
            seen[j] = true;
        }
    }
    return true;
}

bool srv_json_check_keys(const cJSON *obj, const srv_ptr *where, const char *const *allowed,
                         srv_err *e)
{
    return check_keys_named(obj, where, NULL, allowed, e);
}

/* =================================================================== base64 */

/* SIZE_MAX when the encoded form would not fit in a size_t. */
size_t srv_base64_encoded_len(size_t n)
{
    size_t groups = n / 3 + (n % 3 ? 1 : 0);
    if (groups > SIZE_MAX / 4) {
        return SIZE_MAX;
    }
    return groups * 4;
}

size_t srv_base64_encode(const void *in, size_t n, char *out)
{
    const unsigned char *s = in;
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        o[0] = b64_alphabet[v >> 18];
        o[1] = b64_alphabet[(v >> 12) & 63];
        o[2] = b64_alphabet[(v >> 6) & 63];
        o[3] = b64_alphabet[v & 63];
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        o[0] = b64_alphabet[v >> 18];
        o[1] = b64_alphabet[(v >> 12) & 63];
        o[2] = '=';
        o[3] = '=';
        o += 4;
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        o[0] = b64_alphabet[v >> 18];
        o[1] = b64_alphabet[(v >> 12) & 63];
        o[2] = b64_alphabet[(v >> 6) & 63];
        o[3] = '=';
        o += 4;
    }
    *o = '\0';
    return (size_t)(o - out);
}

size_t srv_base64_decoded_max(size_t len)
{
    return len / 4 * 3 + 3;
}

bool srv_base64_decode(const char *in, size_t len, void *out, size_t *out_len, size_t *bad_at)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned char *o = out;
    size_t core = len, pads = 0;
    while (core > 0 && s[core - 1] == '=') {
        core--;
        pads++;
    }
    size_t dummy_len, dummy_bad;
    if (out_len == NULL) {
        out_len = &dummy_len;
    }
    if (bad_at == NULL) {
        bad_at = &dummy_bad;
    }
    *out_len = 0;
    size_t i = 0;
    for (; i + 4 <= core; i += 4) {
        unsigned a = b64_value[s[i]], b = b64_value[s[i + 1]];
        unsigned c = b64_value[s[i + 2]], d = b64_value[s[i + 3]];
        if ((a | b | c | d) & 0x80) {
            size_t k = i;
            while (b64_value[s[k]] != 0xFF) {
                k++;
            }
            *bad_at = k;
            return false;
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | d;
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
    }
    size_t rem = core - i;
    for (size_t k = i; k < core; k++) {
        if (b64_value[s[k]] == 0xFF) {
            *bad_at = k;
            return false;
        }
    }
    if (rem == 1) {
        *bad_at = i; /* one character cannot make a byte */
        return false;
    }
    /* Padding is optional, but there may not be more than the length needs. */
    size_t pads_needed = rem == 0 ? 0 : 4 - rem;
    if (pads > pads_needed) {
        *bad_at = core + pads_needed;
        return false;
    }
    if (rem >= 2) {
        uint32_t v = (uint32_t)b64_value[s[i]] << 18 | (uint32_t)b64_value[s[i + 1]] << 12;
        if (rem == 3) {
            v |= (uint32_t)b64_value[s[i + 2]] << 6;
        }
        *o++ = (unsigned char)(v >> 16);
        if (rem == 3) {
            *o++ = (unsigned char)(v >> 8);
        }
    }
    *out_len = (size_t)(o - (unsigned char *)out);
    return true;
}

/* ================================================================ numbers */

#define P10_MIN (-46)
#define P10_MAX 46
/* Decimal literals convert to the nearest double; 1e0..1e22 are exact. */
static const double p10_table[P10_MAX - P10_MIN + 1] = {
    1e-46, 1e-45, 1e-44, 1e-43, 1e-42, 1e-41, 1e-40, 1e-39, 1e-38, 1e-37, 1e-36, 1e-35,
    1e-34, 1e-33, 1e-32, 1e-31, 1e-30, 1e-29, 1e-28, 1e-27, 1e-26, 1e-25, 1e-24, 1e-23,
    1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11,
    1e-10, 1e-9,  1e-8,  1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,
    1e2,   1e3,   1e4,   1e5,   1e6,   1e7,   1e8,   1e9,   1e10,  1e11,  1e12,  1e13,
    1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,  1e21,  1e22,  1e23,  1e24,  1e25,
    1e26,  1e27,  1e28,  1e29,  1e30,  1e31,  1e32,  1e33,  1e34,  1e35,  1e36,  1e37,
    1e38,  1e39,  1e40,  1e41,  1e42,  1e43,  1e44,  1e45,  1e46,
};

static double p10(int k)
{
    return p10_table[k - P10_MIN];
}

static const uint32_t p10_u32[10] = {1,      10,      100,      1000,      10000,
                                     100000, 1000000, 10000000, 100000000, 1000000000};

/* Writes what printf("%.*g", p, v) writes for v = digits * 10^(x - p + 1),
 * digits having exactly p digits. */
static size_t fmt_g(char *out, bool neg, uint32_t digits, int p, int x)
{
    int nd = p; /* %g drops trailing zeros */
    while (nd > 1 && digits % 10 == 0) {
        digits /= 10;
        nd--;
    }
    char *o = out;
    if (neg) {
        *o++ = '-';
    }
    if (x < 0 && x >= -4) {
        /* 0.000ddd: the usual weight or activation, digits straight into place */
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -x - 1; k++) {
            *o++ = '0';
        }
        put_digits(o, digits, nd);
        o += nd;
        *o = '\0';
        return (size_t)(o - out);
    }
    char dig[10];
    put_digits(dig, digits, nd);
    if (x < -4 || x >= p) {
        *o++ = dig[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, dig + 1, (size_t)(nd - 1));
            o += nd - 1;
        }
        *o++ = 'e';
        *o++ = x < 0 ? '-' : '+';
        int ax = x < 0 ? -x : x;
        if (ax >= 100) {
            *o++ = (char)('0' + ax / 100);
            ax %= 100;
        }
        *o++ = (char)('0' + ax / 10);
        *o++ = (char)('0' + ax % 10);
    } else {
        for (int k = 0; k <= x; k++) {
            *o++ = k < nd ? dig[k] : '0';
        }
        if (nd > x + 1) {
            *o++ = '.';
            memcpy(o, dig + x + 1, (size_t)(nd - x - 1));
            o += nd - x - 1;
        }
    }
    *o = '\0';
    return (size_t)(o - out);
}

/*
 * printf and strtof cost about a microsecond per float, too slow for
 * responses of millions of values, so normal floats take this path: the same
 * digits printf would produce (p = 6..9 until the text reads back, or the
 * given precision), computed in double arithmetic. Its error is below 1e-15
 * relative, so every decision is exact except within that distance of a
 * rounding tie or of the edge of the float's rounding interval; there it
 * returns 0 and the caller uses printf/strtof.
 */
static size_t format_float_fast(float f, int precision, char *out)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    int be = (int)((bits >> 23) & 0xFF);
    uint32_t mant = bits & 0x7FFFFF;
    if (be == 0 || be == 0xFF) {
        return 0; /* zero/denormal/non-finite: the caller handles them */
    }
    bool neg = (bits >> 31) != 0;
    double x = fabs((double)f);
    /* x in [2^e2, 2^(e2+1)) with e2 = be - 127: the decimal exponent is
     * floor(e2 log10 2) or one more (78913 / 2^18 = log10 2 to 6 digits, exact
     * for |e2| < 1650; integer arithmetic, no libm call on the hot path). */
    const int e2 = be - 127;
    int e10 = e2 >= 0 ? (e2 * 78913) >> 18 : -((-e2 * 78913 + (1 << 18) - 1) >> 18);
    if (x >= p10(e10 + 1)) {
        e10++;
    }
    /* Half the gaps to the neighbouring floats, 2^(be - 151), built from its
     * bits; the lower gap halves at a power of two. */
    const uint64_t hb = (uint64_t)(be - 151 + 1023) << 52;
    double h_hi;
    memcpy(&h_hi, &hb, sizeof h_hi);
    double h_lo = (mant == 0 && be > 1) ? h_hi / 2 : h_hi;

    int p_lo = precision > 0 ? precision : 6;
    int p_hi = precision > 0 ? precision : 9;
    for (int p = p_lo; p <= p_hi; p++) {
        double s = x * p10(p - 1 - e10);
        /* floor: 0 < s < 2^31, and a signed conversion is one instruction */
        double fl = (double)(int64_t)s;
        double fr = s - fl;
        if (fabs(fr - 0.5) < 1e-6) {
            return 0;
        }
        int64_t d = (int64_t)fl + (fr > 0.5 ? 1 : 0);
        int xe = e10;
        if (d == (int64_t)p10_u32[p]) {
            d = (int64_t)p10_u32[p - 1]; /* rounded up to the next power of ten */
            xe++;
        } else if (d < (int64_t)p10_u32[p - 1] || d > (int64_t)p10_u32[p]) {
            return 0; /* the exponent estimate was off: leave it to printf */
        }
        if (precision == 0) {
            double c = (double)d * p10(xe - p + 1);
            double diff = c - x; /* exact: c and x are within a factor of two */
            double h = diff >= 0 ? h_hi : h_lo;
            double ad = fabs(diff);
            if (fabs(ad - h) <= x * 1e-14) {
                return 0;
            }
            if (ad > h) {
                continue;
            }
        }
        return fmt_g(out, neg, (uint32_t)d, p, xe);
    }
    return 0;
}

/*
 * The reference method: printf at rising precision until the text reads
 * back. "Reads back" means both directly (strtof) and through a double, the
 * way cJSON, Python and JavaScript read JSON numbers: for two floats
 * (+-7.038531e-26) the shortest strtof-exact text rounds twice through a
 * double to a neighbour, so they get one more digit. The fast path never
 * meets these (they sit at the edge of the interval, where it defers here).
 */
static size_t format_float_slow(float f, int precision, char *out)
{
    int n;
    if (precision > 0) {
        n = snprintf(out, 32, "%.*g", precision, (double)f);
        return (size_t)n;
    }
    /* Normal floats: a 6-digit form is unique in a float's interval, so
     * start at 6. Denormals have wider intervals; start at 1. */
    int p0 = fabsf(f) < FLT_MIN ? 1 : 6;
    n = 0;
    for (int p = p0; p <= 9; p++) {
        n = snprintf(out, 32, "%.*g", p, (double)f);
        if (p == 9 || (strtof(out, NULL) == f && (float)strtod(out, NULL) == f)) {
            break;
        }
    }
    return (size_t)n;
}

/* Non-finite f gives "null" (what the writer needs); precision outside
 * 0..9 is clamped. */
size_t srv_format_float(float f, int precision, char *out)
{
    if (!isfinite(f)) {
        memcpy(out, "null", 5);
        return 4;
    }
    if (precision < 0) {
        precision = 0;
    } else if (precision > 9) {
        precision = 9;
    }
    if (f == 0.0f) {
        if (signbit(f)) {
            memcpy(out, "-0", 3);
            return 2;
        }
        memcpy(out, "0", 2);
        return 1;
    }
    size_t n = format_float_fast(f, precision, out);
    if (n == 0) {
        n = format_float_slow(f, precision, out);
    }
    return n;
}

/* ================================================================== writer */

/* Longest float text (e.g. "-1.17549435e-38") plus a comma, with slack. */
#define JW_FLOAT_MAX 17

static void buf_putc(srv_buf *b, char c)
{
    if (!b->oom && b->len + 1 < b->cap) {
        b->data[b->len++] = c;
    } else {
        srv_buf_append(b, &c, 1);
    }
}

void srv_jw_init(srv_jw *w, srv_buf *b, int precision, bool base64)
{
    w->b = b;
    w->precision = precision < 0 ? 0 : precision > 9 ? 9 : precision;
    w->base64 = base64;
    w->depth = 0;
    for (int i = 0; i < SRV_JW_MAX_DEPTH; i++) {
        w->first[i] = true;
    }
    w->after_key = false;
}

/* The comma before a value, unless it follows a key or opens a container. */
static void jw_sep(srv_jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->depth > 0) {
        if (!w->first[w->depth]) {
            buf_putc(w->b, ',');
        }
        w->first[w->depth] = false;
    }
}

static void jw_open(srv_jw *w, char c)
{
    jw_sep(w);
    buf_putc(w->b, c);
    if (w->depth + 1 >= SRV_JW_MAX_DEPTH) {
        /* Misuse; reported through the buffer so the caller's one check
         * at the end turns it into a 500 instead of corrupt JSON. */
        w->b->oom = true;
        return;
    }
    w->depth++;
    w->first[w->depth] = true;
}

static void jw_close(srv_jw *w, char c)
{
    buf_putc(w->b, c);
    if (w->depth > 0) {
        w->depth--;
    }
    w->after_key = false;
}

void srv_jw_obj_begin(srv_jw *w)
{
    jw_open(w, '{');
}

void srv_jw_obj_end(srv_jw *w)
{
    jw_close(w, '}');
}

void srv_jw_arr_begin(srv_jw *w)
{
    jw_open(w, '[');
}

void srv_jw_arr_end(srv_jw *w)
{
    jw_close(w, ']');
}

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), or 0. s is NUL-terminated. */
static size_t utf8_valid_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c >= 0xC2 && c <= 0xDF) {
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* A JSON string literal. Invalid UTF-8 bytes become U+FFFD so the response
 * is always valid JSON, whatever bytes a client sent to be echoed. */
static void jw_string(srv_buf *b, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    buf_putc(b, '"');
    size_t run = 0; /* bytes at s that need no escaping, not yet copied */
    for (;;) {
        unsigned c = s[run];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_valid_len(s + run);
            if (n > 0) {
                run += n;
                continue;
            }
        }
        srv_buf_append(b, s, run);
        s += run;
        run = 0;
        if (c == 0) {
            break;
        }
        char esc[8];
        size_t n = 2;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        default:
            if (c >= 0x80) {
                memcpy(esc, "\\ufffd", 6);
            } else {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
            }
            n = 6;
            break;
        }
        srv_buf_append(b, esc, n);
        s++;
    }
    buf_putc(b, '"');
}

void srv_jw_key(srv_jw *w, const char *key)
{
    jw_sep(w);
    jw_string(w->b, key != NULL ? key : "");
    buf_putc(w->b, ':');
    w->after_key = true;
}

void srv_jw_str(srv_jw *w, const char *s)
{
    jw_sep(w);
    if (s == NULL) {
        srv_buf_puts(w->b, "null");
        return;
    }
    jw_string(w->b, s);
}

void srv_jw_int(srv_jw *w, long long v)
{
    char tmp[24];
    size_t n = 0;
    if (v < 0) {
        tmp[n++] = '-';
    }
    /* -(v + 1) + 1 avoids overflowing at LLONG_MIN */
    n += srv_format_uint(v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v,
                         tmp + n);
    jw_sep(w);
    srv_buf_append(w->b, tmp, n);
}

void srv_jw_uint(srv_jw *w, unsigned long long v)
{
    char tmp[24];
    size_t n = srv_format_uint(v, tmp);
    jw_sep(w);
    srv_buf_append(w->b, tmp, n);
}

void srv_jw_fixed(srv_jw *w, double v, int decimals)
{
    char tmp[48];
    size_t n = srv_format_fixed(v, decimals, true, tmp);
    jw_sep(w);
    srv_buf_append(w->b, tmp, n);
}

void srv_jw_double(srv_jw *w, double v)
{
    char tmp[32];
    size_t n = fmt_double(v, tmp);
    jw_sep(w);
    srv_buf_append(w->b, tmp, n);
}

void srv_jw_float(srv_jw *w, float v)
{
    char tmp[32];
    size_t n = srv_format_float(v, w->precision, tmp);
    jw_sep(w);
    srv_buf_append(w->b, tmp, n);
}

void srv_jw_bool(srv_jw *w, bool v)
{
    jw_sep(w);
    srv_buf_puts(w->b, v ? "true" : "false");
}

void srv_jw_null(srv_jw *w)
{
    jw_sep(w);
    srv_buf_puts(w->b, "null");
}

/* Any cJSON value, written without the depth stack so that echoed values
 * may nest as deep as cJSON allows. */
static void jw_cjson_value(srv_buf *b, const cJSON *it, int depth)
{
    char tmp[32];
    if (depth > 4 * CJSON_NESTING_LIMIT) {
        b->oom = true; /* not from the parser; refuse rather than recurse without end */
        return;
    }
    if (it == NULL || cJSON_IsNull(it) || cJSON_IsInvalid(it)) {
        srv_buf_puts(b, "null");
    } else if (cJSON_IsFalse(it)) {
        srv_buf_puts(b, "false");
    } else if (cJSON_IsTrue(it)) {
        srv_buf_puts(b, "true");
    } else if (cJSON_IsNumber(it)) {
        size_t n = fmt_double(it->valuedouble, tmp);
        srv_buf_append(b, tmp, n);
    } else if (cJSON_IsString(it)) {
        jw_string(b, it->valuestring != NULL ? it->valuestring : "");
    } else if (cJSON_IsRaw(it)) {
        srv_buf_puts(b, it->valuestring != NULL ? it->valuestring : "null");
    } else if (cJSON_IsArray(it) || cJSON_IsObject(it)) {
        bool obj = cJSON_IsObject(it);
        buf_putc(b, obj ? '{' : '[');
        for (const cJSON *c = it->child; c != NULL; c = c->next) {
            if (c != it->child) {
                buf_putc(b, ',');
            }
            if (obj) {
                jw_string(b, c->string != NULL ? c->string : "");
                buf_putc(b, ':');
            }
            jw_cjson_value(b, c, depth + 1);
        }
        buf_putc(b, obj ? '}' : ']');
    } else {
        srv_buf_puts(b, "null");
    }
}

void srv_jw_cjson(srv_jw *w, const cJSON *item)
{
    jw_sep(w);
    jw_cjson_value(w->b, item, 0);
}

/* One innermost row of floats, "[a,b,c]", formatted straight into the buffer. */
static void jw_float_row(srv_buf *b, const float *v, size_t n, int precision)
{
    if (n > (SIZE_MAX - 64) / JW_FLOAT_MAX) {
        b->oom = true;
        return;
    }
    srv_buf_reserve(b, n * JW_FLOAT_MAX + 32);
    if (b->oom) {
        return;
    }
    char *o = b->data + b->len;
    *o++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) {
            *o++ = ',';
        }
        o += srv_format_float(v[i], precision, o);
    }
    *o++ = ']';
    b->len = (size_t)(o - b->data);
}

static void jw_bool_row(srv_buf *b, const uint8_t *v, size_t n)
{
    if (n > (SIZE_MAX - 64) / 6) {
        b->oom = true;
        return;
    }
    srv_buf_reserve(b, n * 6 + 8);
    if (b->oom) {
        return;
    }
    char *o = b->data + b->len;
    *o++ = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) {
            *o++ = ',';
        }
        if (v[i]) {
            memcpy(o, "true", 4);
            o += 4;
        } else {
            memcpy(o, "false", 5);
            o += 5;
        }
    }
    *o++ = ']';
    b->len = (size_t)(o - b->data);
}

/* Nested lists for dimensions level..rank-1 of a block starting at data. */
static void jw_nested(srv_buf *b, const void *data, bool boolean, size_t rank, const size_t *shape,
                      size_t level, size_t inner, int precision)
{
    if (b->oom) {
        return;
    }
    if (level + 1 == rank) {
        if (boolean) {
            jw_bool_row(b, data, shape[level]);
        } else {
            jw_float_row(b, data, shape[level], precision);
        }
        return;
    }
    size_t step = inner / (shape[level] ? shape[level] : 1);
    buf_putc(b, '[');
    for (size_t i = 0; i < shape[level]; i++) {
        if (i) {
            buf_putc(b, ',');
        }
        const void *sub = boolean ? (const void *)((const uint8_t *)data + i * step)
                                  : (const void *)((const float *)data + i * step);
        jw_nested(b, sub, boolean, rank, shape, level + 1, step, precision);
    }
    buf_putc(b, ']');
}

static void jw_shape(srv_buf *b, size_t rank, const size_t *shape)
{
    buf_putc(b, '[');
    for (size_t i = 0; i < rank; i++) {
        char tmp[24];
        if (i) {
            buf_putc(b, ',');
        }
        srv_buf_append(b, tmp, srv_format_uint(shape[i], tmp));
    }
    buf_putc(b, ']');
}

/* {"dtype":"float32","shape":[..],"data":"<base64 of little-endian floats>"} */
static void jw_tensor_base64(srv_buf *b, const float *data, size_t rank, const size_t *shape,
                             size_t size)
{
    srv_buf_puts(b, "{\"dtype\":\"float32\",\"shape\":");
    jw_shape(b, rank, shape);
    srv_buf_puts(b, ",\"data\":\"");
    if (size > SIZE_MAX / 4 || srv_base64_encoded_len(size * 4) == SIZE_MAX) {
        b->oom = true;
        return;
    }
    srv_buf_reserve(b, srv_base64_encoded_len(size * 4) + 4);
    /* Chunks of whole base64 groups (3 bytes) and whole floats (4 bytes),
     * serialised little-endian explicitly so the bytes are right on any host. */
    enum { CHUNK_FLOATS = 768 };
    unsigned char bytes[CHUNK_FLOATS * 4];
    for (size_t k = 0; k < size && !b->oom; k += CHUNK_FLOATS) {
        size_t m = size - k < CHUNK_FLOATS ? size - k : CHUNK_FLOATS;
        for (size_t j = 0; j < m; j++) {
            uint32_t u;
            memcpy(&u, &data[k + j], sizeof u);
            bytes[4 * j] = (unsigned char)u;
            bytes[4 * j + 1] = (unsigned char)(u >> 8);
            bytes[4 * j + 2] = (unsigned char)(u >> 16);
            bytes[4 * j + 3] = (unsigned char)(u >> 24);
        }
        srv_buf_reserve(b, srv_base64_encoded_len(m * 4) + 1);
        if (b->oom) {
            return;
        }
        b->len += srv_base64_encode(bytes, m * 4, b->data + b->len);
    }
    srv_buf_puts(b, "\"}");
}

static size_t shape_size(size_t rank, const size_t *shape, bool *overflow)
{
    size_t size = 1;
    *overflow = !shape_product(shape, rank, &size);
    return size;
}

void srv_jw_tensor(srv_jw *w, const float *data, size_t rank, const size_t *shape)
{
    jw_sep(w);
    bool overflow;
    size_t size = shape_size(rank, shape, &overflow);
    if (overflow) {
        w->b->oom = true;
        return;
    }
    if (w->base64) {
        jw_tensor_base64(w->b, data, rank, shape, size);
        return;
    }
    if (rank == 0) {
        char tmp[32];
        size_t n = srv_format_float(data[0], w->precision, tmp);
        srv_buf_append(w->b, tmp, n);
        return;
    }
    jw_nested(w->b, data, false, rank, shape, 0, size, w->precision);
}

void srv_jw_btensor(srv_jw *w, const uint8_t *data, size_t rank, const size_t *shape)
{
    jw_sep(w);
    bool overflow;
    size_t size = shape_size(rank, shape, &overflow);
    if (overflow) {
        w->b->oom = true;
        return;
    }
    if (rank == 0) {
        srv_buf_puts(w->b, data[0] ? "true" : "false");
        return;
    }
    jw_nested(w->b, data, true, rank, shape, 0, size, 0);
}
