/* model_util.c - libattn_model plumbing: allocator, messages, whole-file reads, JSON parsing. */
#include "model_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ memory */

bool attn__mem_init(const attn_allocator *alloc, attn_allocator *al)
{
    memset(al, 0, sizeof(*al));
    if (!alloc)
        return true;
    /* A custom alloc needs its matching free, or memory could not be given back. */
    if ((alloc->alloc == NULL) != (alloc->free == NULL))
        return false;
    *al = *alloc;
    return true;
}

void *attn__mem_alloc(const attn_allocator *al, size_t n)
{
    if (n == 0)
        return NULL;
    return al->alloc ? al->alloc(n, al->user) : malloc(n);
}

void *attn__mem_array(const attn_allocator *al, size_t n, size_t size)
{
    size_t bytes;
    if (!attn__size_mul(n, size, &bytes))
        return NULL;
    return attn__mem_alloc(al, bytes);
}

void attn__mem_free(const attn_allocator *al, void *p)
{
    if (!p)
        return;
    if (al->alloc)
        al->free(p, al->user);
    else
        free(p);
}

/* ------------------------------------------------------------ messages */

void attn__err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ files */

attn_status attn__file_read(const attn_allocator *al, const char *path, size_t max_bytes,
                            char **data, size_t *len, char *err, size_t err_size)
{
    *data = NULL;
    *len = 0;
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
    if (sb.st_size < 0 || (uint64_t)sb.st_size > (uint64_t)max_bytes) {
        attn__err(err, err_size, "%s: %lld bytes, more than the %zu allowed", path,
                  (long long)sb.st_size, max_bytes);
        close(fd);
        return ATTN_ERR_FORMAT;
    }
    const size_t size = (size_t)sb.st_size;
    char *buf = attn__mem_alloc(al, size + 1);
    if (!buf) {
        attn__err(err, err_size, "%s: out of memory reading %zu bytes", path, size);
        close(fd);
        return ATTN_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            attn__err(err, err_size, "%s: read failed after %zu of %zu bytes%s%s", path, got, size,
                      r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
            attn__mem_free(al, buf);
            close(fd);
            return ATTN_ERR_IO;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *data = buf;
    *len = size;
    return ATTN_OK;
}

/* ------------------------------------------------------------ JSON */

/*
 * A syntax check that allocates nothing, used only to tell "not JSON" from
 * "cJSON ran out of memory". It must accept nothing cJSON 1.7.15 refuses:
 * strict RFC 8259 plus cJSON's own limits (nesting 1000, numbers of at most
 * 63 characters, no lone UTF-16 surrogates in \u escapes).
 */
typedef struct jv {
    const unsigned char *s;
    size_t n, i;
} jv;

#define JV_MAX_DEPTH 1000

static void jv_ws(jv *v)
{
    while (v->i < v->n &&
           (v->s[v->i] == ' ' || v->s[v->i] == '\t' || v->s[v->i] == '\n' || v->s[v->i] == '\r'))
        v->i++;
}

static bool jv_lit(jv *v, const char *lit)
{
    size_t k = strlen(lit);
    if (v->n - v->i < k || memcmp(v->s + v->i, lit, k) != 0)
        return false;
    v->i += k;
    return true;
}

static bool jv_digits(jv *v)
{
    size_t start = v->i;
    while (v->i < v->n && v->s[v->i] >= '0' && v->s[v->i] <= '9')
        v->i++;
    return v->i > start;
}

static bool jv_number(jv *v)
{
    size_t start = v->i;
    if (v->i < v->n && v->s[v->i] == '-')
        v->i++;
    if (v->i < v->n && v->s[v->i] == '0')
        v->i++;
    else if (!jv_digits(v))
        return false;
    if (v->i < v->n && v->s[v->i] == '.') {
        v->i++;
        if (!jv_digits(v))
            return false;
    }
    if (v->i < v->n && (v->s[v->i] == 'e' || v->s[v->i] == 'E')) {
        v->i++;
        if (v->i < v->n && (v->s[v->i] == '+' || v->s[v->i] == '-'))
            v->i++;
        if (!jv_digits(v))
            return false;
    }
    return v->i - start <= 63;
}

static bool jv_hex4(jv *v, unsigned *out)
{
    if (v->n - v->i < 4)
        return false;
    unsigned x = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = v->s[v->i + (size_t)k];
        x <<= 4;
        if (c >= '0' && c <= '9')
            x |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            x |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            x |= (unsigned)(c - 'A' + 10);
        else
            return false;
    }
    v->i += 4;
    *out = x;
    return true;
}

static bool jv_string(jv *v)
{
    if (v->i >= v->n || v->s[v->i] != '"')
        return false;
    v->i++;
    while (v->i < v->n) {
        unsigned char c = v->s[v->i++];
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c != '\\')
            continue;
        if (v->i >= v->n)
            return false;
        c = v->s[v->i++];
        if (strchr("\"\\/bfnrt", c) && c != '\0')
            continue;
        if (c != 'u')
            return false;
        unsigned u;
        if (!jv_hex4(v, &u) || (u >= 0xDC00 && u <= 0xDFFF))
            return false;
        if (u >= 0xD800 && u <= 0xDBFF) {
            unsigned lo;
            if (!jv_lit(v, "\\u") || !jv_hex4(v, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return false;
        }
    }
    return false;
}

static bool jv_value(jv *v, int depth)
{
    jv_ws(v);
    if (v->i >= v->n)
        return false;
    unsigned char c = v->s[v->i];
    if (c == '"')
        return jv_string(v);
    if (c == '-' || (c >= '0' && c <= '9'))
        return jv_number(v);
    if (c == 't')
        return jv_lit(v, "true");
    if (c == 'f')
        return jv_lit(v, "false");
    if (c == 'n')
        return jv_lit(v, "null");
    if (c != '[' && c != '{')
        return false;
    if (depth >= JV_MAX_DEPTH)
        return false;
    const unsigned char close = c == '[' ? ']' : '}';
    v->i++;
    jv_ws(v);
    if (v->i < v->n && v->s[v->i] == close) {
        v->i++;
        return true;
    }
    for (;;) {
        if (close == '}') {
            jv_ws(v);
            if (!jv_string(v))
                return false;
            jv_ws(v);
            if (v->i >= v->n || v->s[v->i] != ':')
                return false;
            v->i++;
        }
        if (!jv_value(v, depth + 1))
            return false;
        jv_ws(v);
        if (v->i >= v->n)
            return false;
        if (v->s[v->i] == ',') {
            v->i++;
            continue;
        }
        if (v->s[v->i] != close)
            return false;
        v->i++;
        return true;
    }
}

bool attn__json_valid(const char *text, size_t len)
{
    jv v = {(const unsigned char *)text, len, 0};
    if (!text || !jv_value(&v, 0))
        return false;
    jv_ws(&v);
    return v.i == v.n;
}

attn_status attn__json_parse(const char *text, size_t len, cJSON **out)
{
    *out = NULL;
    if (!text || len == 0)
        return ATTN_ERR_FORMAT;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root)
        return attn__json_valid(text, len) ? ATTN_ERR_NOMEM : ATTN_ERR_FORMAT;
    /* cJSON stops after the value; anything but whitespace after it is an error. */
    for (const char *p = end; p && p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return ATTN_ERR_FORMAT;
        }
    }
    *out = root;
    return ATTN_OK;
}
