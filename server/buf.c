/* buf.c - the growable output buffer (srv_buf) and error filling (srv_err_set). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

void srv_buf_init(srv_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = false;
}

void srv_buf_free(srv_buf *b)
{
    free(b->data);
    srv_buf_init(b);
}

/* Makes room for extra more bytes plus the NUL that detach adds, so writers
 * may fill data + len directly after a successful reserve. Sets oom (and
 * leaves b as it was) when the memory cannot be had. */
void srv_buf_reserve(srv_buf *b, size_t extra)
{
    if (b->oom) {
        return;
    }
    if (extra > SIZE_MAX - 1 - b->len) {
        b->oom = true;
        return;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap) {
        return;
    }
    /* Doubling keeps appends amortised O(1) for multi-megabyte responses. */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->oom = true;
        return;
    }
    b->data = p;
    b->cap = cap;
}

void srv_buf_append(srv_buf *b, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    srv_buf_reserve(b, n);
    if (b->oom) {
        return;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void srv_buf_puts(srv_buf *b, const char *s)
{
    srv_buf_append(b, s, strlen(s));
}

void srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
    if (b->oom) {
        return;
    }
    /* First try in the space already there; most calls are short. */
    srv_buf_reserve(b, 64);
    if (b->oom) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true; /* an encoding error: nothing sensible to write */
        return;
    }
    if ((size_t)n >= room) {
        srv_buf_reserve(b, (size_t)n);
        if (b->oom) {
            return;
        }
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

/* NULL (and b freed) if any write failed; otherwise the caller owns the
 * NUL-terminated data, also for an empty buffer. */
char *srv_buf_detach(srv_buf *b, size_t *len)
{
    if (!b->oom) {
        srv_buf_reserve(b, 0);
    }
    if (b->oom) {
        srv_buf_free(b);
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    char *data = b->data;
    data[b->len] = '\0';
    if (len != NULL) {
        *len = b->len;
    }
    srv_buf_init(b);
    return data;
}

bool srv_err_set(srv_err *e, int status, const char *code, const char *field, const char *fmt, ...)
{
    if (e == NULL) {
        return false;
    }
    e->status = status;
    e->code = code != NULL ? code : SRV_CODE_INTERNAL;
    snprintf(e->field, sizeof e->field, "%s", field != NULL ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}
