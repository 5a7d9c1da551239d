/* model_safetensors.c - .safetensors files: mmap, strict header validation, float32 conversion. */
#include "model_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000u        /* bytes; the reference implementation's own limit */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53: integers a double holds exactly */

struct attn_st {
    attn_allocator al;
    const char *path;         /* in strings */
    const unsigned char *map; /* the whole file */
    size_t map_size;
    attn_st_tensor *tensors;        /* [n] header order */
    const attn_st_tensor **by_name; /* [n] sorted by name */
    size_t n;
    const char **meta; /* [2 * n_meta] key, value */
    size_t n_meta;
    char *strings; /* path, names, metadata */
};

/* ------------------------------------------------------------ dtypes and conversions */

const char *attn_dtype_name(attn_dtype dtype)
{
    switch (dtype) {
    case ATTN_DTYPE_F32:
        return "F32";
    case ATTN_DTYPE_F16:
        return "F16";
    case ATTN_DTYPE_BF16:
        return "BF16";
    case ATTN_DTYPE_I64:
        return "I64";
    }
    return NULL;
}

size_t attn_dtype_size(attn_dtype dtype)
{
    switch (dtype) {
    case ATTN_DTYPE_F32:
        return 4;
    case ATTN_DTYPE_F16:
    case ATTN_DTYPE_BF16:
        return 2;
    case ATTN_DTYPE_I64:
        return 8;
    }
    return 0;
}

static float bits_to_f32(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float attn_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) /* infinity or NaN, payload kept */
        return bits_to_f32(sign | 0x7F800000u | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_to_f32(sign);
        /* subnormal: mant * 2^-24, normalised for float32 (always representable) */
        int e = -14;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e--;
        }
        return bits_to_f32(sign | ((uint32_t)(e + 127) << 23) | ((mant & 0x3FFu) << 13));
    }
    return bits_to_f32(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

float attn_bf16_to_f32(uint16_t b)
{
    return bits_to_f32((uint32_t)b << 16);
}

attn_status attn_st_to_f32(const attn_st_tensor *t, float *out, size_t n_out)
{
    if (!t || (!out && t->n_elements > 0))
        return ATTN_ERR_INVALID;
    if (n_out < t->n_elements)
        return ATTN_ERR_SHAPE;
    const unsigned char *p = t->data;
    const size_t n = t->n_elements;
    switch (t->dtype) {
    case ATTN_DTYPE_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (n > 0)
            memcpy(out, p, n * 4);
#else
        for (size_t i = 0; i < n; i++, p += 4)
            out[i] = bits_to_f32((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                                 (uint32_t)p[3] << 24);
#endif
        return ATTN_OK;
    case ATTN_DTYPE_F16:
        for (size_t i = 0; i < n; i++, p += 2)
            out[i] = attn_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        return ATTN_OK;
    case ATTN_DTYPE_BF16:
        for (size_t i = 0; i < n; i++, p += 2)
            out[i] = attn_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        return ATTN_OK;
    case ATTN_DTYPE_I64:
        return ATTN_ERR_UNSUPPORTED;
    }
    return ATTN_ERR_INVALID;
}

/* ------------------------------------------------------------ header validation */

/* Context for the messages of one open call. */
typedef struct st_ctx {
    const char *path;
    char *err;
    size_t err_size;
} st_ctx;

/* "[2, 3]" into buf (truncated to fit). */
static const char *shape_str(char *buf, size_t size, const size_t *dims, size_t n_dims)
{
    size_t at = 0;
    int w = snprintf(buf, size, "[");
    at = w > 0 ? (size_t)w : 0;
    for (size_t i = 0; i < n_dims && at < size; i++) {
        w = snprintf(buf + at, size - at, "%s%zu", i ? ", " : "", dims[i]);
        at += w > 0 ? (size_t)w : 0;
    }
    if (at < size)
        snprintf(buf + at, size - at, "]");
    return buf;
}

/* The dtype of s: ATTN_OK, ATTN_ERR_UNSUPPORTED (a dtype of the format this
 * library does not take) or ATTN_ERR_FORMAT (not a dtype of the format). */
static attn_status parse_dtype(const char *s, attn_dtype *out)
{
    static const struct {
        const char *name;
        attn_dtype dtype;
    } ok[] = {{"F32", ATTN_DTYPE_F32},
              {"F16", ATTN_DTYPE_F16},
              {"BF16", ATTN_DTYPE_BF16},
              {"I64", ATTN_DTYPE_I64}};
    static const char *const other[] = {
        "F64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",   "I32",
        "I16", "I8",      "U64",     "U32",     "U16",     "U8",      "BOOL", "C64"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        if (strcmp(s, ok[i].name) == 0) {
            *out = ok[i].dtype;
            return ATTN_OK;
        }
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (strcmp(s, other[i]) == 0)
            return ATTN_ERR_UNSUPPORTED;
    return ATTN_ERR_FORMAT;
}

/* A JSON number that is an integer in [0, 2^53]: ATTN_OK, ATTN_ERR_OVERFLOW
 * (an integer too large to be exact) or ATTN_ERR_FORMAT. */
static attn_status json_uint(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return ATTN_ERR_FORMAT;
    const double v = item->valuedouble;
    if (!(v >= 0.0) || v != floor(v))
        return ATTN_ERR_FORMAT;
    if (v > ST_MAX_EXACT)
        return ATTN_ERR_OVERFLOW;
    *out = (uint64_t)v;
    return ATTN_OK;
}

/*
 * Validates one tensor entry and fills t (data pointer included) from it.
 * data_size is the byte count after the header; data its first byte.
 */
static attn_status parse_tensor(const st_ctx *c, const cJSON *entry, const unsigned char *data,
                                size_t data_size, attn_st_tensor *t)
{
    const char *name = entry->string;
    char sbuf[160];
    if (!cJSON_IsObject(entry)) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': entry is not a JSON object", c->path,
                  name);
        return ATTN_ERR_FORMAT;
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype)) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': \"dtype\" is missing or not a string",
                  c->path, name);
        return ATTN_ERR_FORMAT;
    }
    attn_status st = parse_dtype(dtype->valuestring, &t->dtype);
    if (st == ATTN_ERR_UNSUPPORTED) {
        attn__err(c->err, c->err_size,
                  "%s: tensor '%s': dtype %s is not supported (F32, F16, BF16; I64 kept "
                  "unconverted)",
                  c->path, name, dtype->valuestring);
        return st;
    }
    if (st != ATTN_OK) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': unknown dtype '%s'", c->path, name,
                  dtype->valuestring);
        return st;
    }
    if (!cJSON_IsArray(shape)) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': \"shape\" is missing or not an array",
                  c->path, name);
        return ATTN_ERR_FORMAT;
    }
    const int rank = cJSON_GetArraySize(shape);
    if (rank > ATTN_ST_MAX_DIMS) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': %d dimensions, more than the %d supported",
                  c->path, name, rank, ATTN_ST_MAX_DIMS);
        return ATTN_ERR_UNSUPPORTED;
    }
    t->n_dims = (size_t)rank;
    size_t count = 1;
    bool overflow = false;
    int k = 0;
    for (const cJSON *d = shape->child; d; d = d->next, k++) {
        uint64_t v = 0;
        st = json_uint(d, &v);
        if (st == ATTN_OK && v > SIZE_MAX)
            st = ATTN_ERR_OVERFLOW;
        if (st != ATTN_OK) {
            attn__err(c->err, c->err_size, "%s: tensor '%s': shape[%d] %s", c->path, name, k,
                      st == ATTN_ERR_OVERFLOW ? "is too large" : "is not a non-negative integer");
            return st;
        }
        t->shape[k] = (size_t)v;
        if (!attn__size_mul(count, (size_t)v, &count))
            overflow = true;
    }
    size_t dsize = attn_dtype_size(t->dtype);
    if (overflow || !attn__size_mul(count, dsize, &t->n_bytes)) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': shape %s has more bytes than size_t holds",
                  c->path, name, shape_str(sbuf, sizeof sbuf, t->shape, t->n_dims));
        return ATTN_ERR_OVERFLOW;
    }
    /* A zero dimension after an overflowing one makes the product 0; refused above all the same. */
    t->n_elements = count;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
        attn__err(c->err, c->err_size,
                  "%s: tensor '%s': \"data_offsets\" is missing or not an array of two", c->path,
                  name);
        return ATTN_ERR_FORMAT;
    }
    uint64_t begin = 0, end = 0;
    if (json_uint(offs->child, &begin) != ATTN_OK ||
        json_uint(offs->child->next, &end) != ATTN_OK) {
        attn__err(c->err, c->err_size,
                  "%s: tensor '%s': data_offsets are not two non-negative integers below 2^53",
                  c->path, name);
        return ATTN_ERR_FORMAT;
    }
    if (begin > end) {
        attn__err(c->err, c->err_size, "%s: tensor '%s': data_offsets [%llu, %llu] are reversed",
                  c->path, name, (unsigned long long)begin, (unsigned long long)end);
        return ATTN_ERR_FORMAT;
    }
    if (end > data_size) {
        attn__err(c->err, c->err_size,
                  "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                  "(%zu bytes after the header)",
                  c->path, name, (unsigned long long)begin, (unsigned long long)end, data_size);
        return ATTN_ERR_FORMAT;
    }
    if (end - begin != t->n_bytes) {
        attn__err(c->err, c->err_size,
                  "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s "
                  "shape %s needs %zu",
                  c->path, name, (unsigned long long)begin, (unsigned long long)end,
                  (unsigned long long)(end - begin), attn_dtype_name(t->dtype),
                  shape_str(sbuf, sizeof sbuf, t->shape, t->n_dims), t->n_bytes);
        return ATTN_ERR_FORMAT;
    }
    t->data = data + begin;
    return ATTN_OK;
}

static int cmp_by_name(const void *a, const void *b)
{
    const attn_st_tensor *x = *(const attn_st_tensor *const *)a;
    const attn_st_tensor *y = *(const attn_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int cmp_by_data(const void *a, const void *b)
{
    const attn_st_tensor *x = *(const attn_st_tensor *const *)a;
    const attn_st_tensor *y = *(const attn_st_tensor *const *)b;
    const char *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

/* Offsets as the file gives them, for messages. */
static void data_range(const attn_st *st, const attn_st_tensor *t, size_t data_start,
                       unsigned long long *b, unsigned long long *e)
{
    *b = (unsigned long long)((const unsigned char *)t->data - st->map - data_start);
    *e = *b + t->n_bytes;
}

/*
 * Validates the parsed header and builds the tables of st. The strings
 * (path, names, metadata) go into one allocation.
 */
static attn_status build(attn_st *st, const st_ctx *c, const cJSON *root, size_t data_start)
{
    const unsigned char *data = st->map + data_start;
    const size_t data_size = st->map_size - data_start;
    if (!cJSON_IsObject(root)) {
        attn__err(c->err, c->err_size, "%s: header is not a JSON object", c->path);
        return ATTN_ERR_FORMAT;
    }
    /* First pass: counts and string bytes. */
    size_t n = 0, n_meta = 0, bytes = strlen(c->path) + 1;
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta) {
                attn__err(c->err, c->err_size, "%s: \"__metadata__\" appears twice", c->path);
                return ATTN_ERR_FORMAT;
            }
            meta = e;
            if (!cJSON_IsObject(e)) {
                attn__err(c->err, c->err_size, "%s: \"__metadata__\" is not a JSON object",
                          c->path);
                return ATTN_ERR_FORMAT;
            }
            for (const cJSON *m = e->child; m; m = m->next) {
                if (!cJSON_IsString(m)) {
                    attn__err(c->err, c->err_size,
                              "%s: \"__metadata__\" entry '%s' is not a string", c->path,
                              m->string);
                    return ATTN_ERR_FORMAT;
                }
                n_meta++;
                bytes += strlen(m->string) + strlen(m->valuestring) + 2;
            }
            continue;
        }
        n++;
        bytes += strlen(e->string) + 1;
    }
    st->strings = attn__mem_alloc(&st->al, bytes);
    st->tensors = attn__mem_array(&st->al, n ? n : 1, sizeof(attn_st_tensor));
    st->by_name = attn__mem_array(&st->al, n ? n : 1, sizeof(attn_st_tensor *));
    st->meta = attn__mem_array(&st->al, n_meta ? 2 * n_meta : 1, sizeof(char *));
    if (!st->strings || !st->tensors || !st->by_name || !st->meta) {
        attn__err(c->err, c->err_size, "%s: out of memory for %zu tensors", c->path, n);
        return ATTN_ERR_NOMEM;
    }
    char *s = st->strings;
    size_t len = strlen(c->path) + 1;
    memcpy(s, c->path, len);
    st->path = s;
    s += len;
    /* Second pass: validate and copy. */
    for (const cJSON *e = root->child; e; e = e->next) {
        if (e == meta)
            continue;
        attn_st_tensor *t = &st->tensors[st->n];
        memset(t, 0, sizeof(*t));
        attn_status rc = parse_tensor(c, e, data, data_size, t);
        if (rc != ATTN_OK)
            return rc;
        len = strlen(e->string) + 1;
        memcpy(s, e->string, len);
        t->name = s;
        s += len;
        st->by_name[st->n++] = t;
    }
    for (const cJSON *m = meta ? meta->child : NULL; m; m = m->next) {
        const char *kv[2] = {m->string, m->valuestring};
        for (int j = 0; j < 2; j++) {
            len = strlen(kv[j]) + 1;
            memcpy(s, kv[j], len);
            st->meta[2 * st->n_meta + (size_t)j] = s;
            s += len;
        }
        st->n_meta++;
    }
    /* No two non-empty tensors share a byte. */
    if (n > 1)
        qsort(st->by_name, n, sizeof(st->by_name[0]), cmp_by_data);
    const attn_st_tensor *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        const attn_st_tensor *t = st->by_name[i];
        if (t->n_bytes == 0)
            continue;
        if (prev &&
            (const unsigned char *)t->data < (const unsigned char *)prev->data + prev->n_bytes) {
            unsigned long long b, e, pb, pe;
            data_range(st, t, data_start, &b, &e);
            data_range(st, prev, data_start, &pb, &pe);
            attn__err(c->err, c->err_size,
                      "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                      c->path, t->name, b, e, prev->name, pb, pe);
            return ATTN_ERR_FORMAT;
        }
        prev = t;
    }
    /* Unique names, and the index attn_st_find searches. */
    if (n > 1)
        qsort(st->by_name, n, sizeof(st->by_name[0]), cmp_by_name);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0) {
            attn__err(c->err, c->err_size, "%s: tensor '%s': the name appears twice", c->path,
                      st->by_name[i]->name);
            return ATTN_ERR_FORMAT;
        }
    }
    return ATTN_OK;
}

/* ------------------------------------------------------------ open / close */

attn_status attn_st_open(const char *path, const attn_allocator *alloc, attn_st **out, char *err,
                         size_t err_size)
{
    if (out)
        *out = NULL;
    attn_allocator al;
    if (!path || !out || !attn__mem_init(alloc, &al)) {
        attn__err(err, err_size, "%s: invalid arguments", path ? path : "(null)");
        return ATTN_ERR_INVALID;
    }
    const st_ctx c = {path, err, err_size};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        attn__err(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return ATTN_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        attn__err(err, err_size, "%s: not a regular file", path);
        close(fd);
        return ATTN_ERR_IO;
    }
    if (sb.st_size < 8) {
        attn__err(err, err_size,
                  "%s: %lld bytes, too short for the 8-byte header length of a safetensors file",
                  path, (long long)sb.st_size);
        close(fd);
        return ATTN_ERR_FORMAT;
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        attn__err(err, err_size, "%s: too large to map", path);
        close(fd);
        return ATTN_ERR_OVERFLOW;
    }
    const size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        attn__err(err, err_size, "%s: cannot map: %s", path, strerror(map_errno));
        return map_errno == ENOMEM ? ATTN_ERR_NOMEM : ATTN_ERR_IO;
    }
    const unsigned char *m = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | m[i];

    attn_status rc = ATTN_OK;
    char *header = NULL;
    cJSON *root = NULL;
    attn_st *st = NULL;
    if (hlen > size - 8) {
        attn__err(err, err_size, "%s: header length %llu runs past the end of the file (%zu bytes)",
                  path, (unsigned long long)hlen, size);
        rc = ATTN_ERR_FORMAT;
    } else if (hlen > ST_MAX_HEADER) {
        attn__err(err, err_size, "%s: header length %llu is above the %u-byte limit", path,
                  (unsigned long long)hlen, ST_MAX_HEADER);
        rc = ATTN_ERR_FORMAT;
    } else if (hlen < 2) {
        attn__err(err, err_size, "%s: header length %llu cannot hold a JSON object", path,
                  (unsigned long long)hlen);
        rc = ATTN_ERR_FORMAT;
    } else if (memchr(m + 8, '\0', (size_t)hlen)) {
        attn__err(err, err_size, "%s: header contains a NUL byte", path);
        rc = ATTN_ERR_FORMAT;
    }
    if (rc == ATTN_OK) {
        /* A NUL-terminated private copy for cJSON, which then never reads past it. */
        header = attn__mem_alloc(&al, (size_t)hlen + 1);
        if (!header) {
            attn__err(err, err_size, "%s: out of memory for a %llu-byte header", path,
                      (unsigned long long)hlen);
            rc = ATTN_ERR_NOMEM;
        }
    }
    if (rc == ATTN_OK) {
        memcpy(header, m + 8, (size_t)hlen);
        header[hlen] = '\0';
        rc = attn__json_parse(header, (size_t)hlen, &root);
        if (rc == ATTN_ERR_NOMEM)
            attn__err(err, err_size, "%s: out of memory parsing the header", path);
        else if (rc != ATTN_OK)
            attn__err(err, err_size, "%s: header is not valid JSON", path);
    }
    if (rc == ATTN_OK) {
        st = attn__mem_alloc(&al, sizeof(*st));
        if (!st) {
            attn__err(err, err_size, "%s: out of memory", path);
            rc = ATTN_ERR_NOMEM;
        }
    }
    if (rc == ATTN_OK) {
        memset(st, 0, sizeof(*st));
        st->al = al;
        st->map = m;
        st->map_size = size;
        rc = build(st, &c, root, 8 + (size_t)hlen);
    }
    cJSON_Delete(root);
    attn__mem_free(&al, header);
    if (rc != ATTN_OK) {
        if (st) {
            st->map = NULL; /* unmapped below */
            attn_st_close(st);
        }
        munmap(map, size);
        return rc;
    }
    *out = st;
    return ATTN_OK;
}

void attn_st_close(attn_st *st)
{
    if (!st)
        return;
    if (st->map)
        munmap((void *)st->map, st->map_size);
    attn_allocator al = st->al;
    attn__mem_free(&al, st->tensors);
    attn__mem_free(&al, (void *)st->by_name);
    attn__mem_free(&al, (void *)st->meta);
    attn__mem_free(&al, st->strings);
    attn__mem_free(&al, st);
}

/* ------------------------------------------------------------ look-ups */

const char *attn_st_path(const attn_st *st)
{
    return st ? st->path : "";
}

size_t attn_st_count(const attn_st *st)
{
    return st ? st->n : 0;
}

const attn_st_tensor *attn_st_at(const attn_st *st, size_t i)
{
    return st && i < st->n ? &st->tensors[i] : NULL;
}

/* strcmp(prefix + rest, s) without building the string. */
static int cmp_joined(const char *prefix, const char *rest, const char *s)
{
    for (; *prefix; prefix++, s++)
        if (*prefix != *s)
            return (unsigned char)*prefix < (unsigned char)*s ? -1 : 1;
    return strcmp(rest, s);
}

static const attn_st_tensor *find_joined(const attn_st *st, const char *prefix, const char *rest)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_joined(prefix, rest, st->by_name[mid]->name);
        if (c == 0)
            return st->by_name[mid];
        if (c > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const attn_st_tensor *attn_st_find(const attn_st *st, const char *name)
{
    return st && name ? find_joined(st, "", name) : NULL;
}

const attn_st_tensor *attn_st_find_any_prefix(const attn_st *st, const char *name)
{
    static const char *const prefixes[] = {"bert.", "transformer.", "model.", "vit."};
    const size_t n_prefixes = sizeof prefixes / sizeof prefixes[0];
    if (!st || !name)
        return NULL;
    const attn_st_tensor *t = find_joined(st, "", name);
    for (size_t i = 0; !t && i < n_prefixes; i++)
        t = find_joined(st, prefixes[i], name);
    for (size_t i = 0; !t && i < n_prefixes; i++) {
        size_t k = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], k) == 0)
            t = find_joined(st, "", name + k);
    }
    return t;
}

const char *attn_st_metadata(const attn_st *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0)
            return st->meta[2 * i + 1];
    return NULL;
}

attn_status attn_st_read_f32(const attn_st *st, const char *name, size_t n_dims,
                             const size_t *shape, float *out, char *err, size_t err_size)
{
    if (!st || !name || n_dims > ATTN_ST_MAX_DIMS || (n_dims > 0 && !shape)) {
        attn__err(err, err_size, "%s: tensor '%s': invalid arguments", attn_st_path(st),
                  name ? name : "(null)");
        return ATTN_ERR_INVALID;
    }
    const attn_st_tensor *t = attn_st_find_any_prefix(st, name);
    if (!t) {
        attn__err(err, err_size, "%s: tensor '%s' is missing", st->path, name);
        return ATTN_ERR_FORMAT;
    }
    bool same = t->n_dims == n_dims;
    for (size_t i = 0; same && i < n_dims; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char have[160], want[160];
        attn__err(err, err_size, "%s: tensor '%s': shape %s, expected %s", st->path, t->name,
                  shape_str(have, sizeof have, t->shape, t->n_dims),
                  shape_str(want, sizeof want, shape, n_dims));
        return ATTN_ERR_SHAPE;
    }
    attn_status rc = attn_st_to_f32(t, out, t->n_elements);
    if (rc == ATTN_ERR_UNSUPPORTED)
        attn__err(err, err_size, "%s: tensor '%s': dtype %s does not convert to float32", st->path,
                  t->name, attn_dtype_name(t->dtype));
    else if (rc != ATTN_OK)
        attn__err(err, err_size, "%s: tensor '%s': %s", st->path, t->name, attn_status_str(rc));
    return rc;
}
