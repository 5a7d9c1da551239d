/* attn_ws.c - workspace arena, status strings, version, random numbers and size arithmetic. */
#include "attn_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WS_ALIGN 64u
#define WS_MIN_BLOCK 4096u

/*
 * The arena is a chain of blocks, newest first. A call bumps through the
 * newest block and chains a new one when it is full. When a call needed more
 * than one block, the next call starts by replacing them all with a single
 * block as large as that call's total, so a steady stream of similar requests
 * settles on one block and stops allocating.
 */
typedef struct ws_block {
    struct ws_block *next;
    unsigned char *data; /* WS_ALIGN-aligned start of the usable bytes */
    size_t cap;
    size_t used;
} ws_block;

struct attn_ws {
    attn_allocator al;
    ws_block *blocks;
    size_t call_bytes; /* handed out since the last reset */
    size_t want;       /* size of the single block the next call should start with */
    attn_ws *child;    /* scratch of the blocks a composite call runs (attn__ws_child) */
};

static void *ws_raw_alloc(const attn_allocator *al, size_t n)
{
    return al->alloc ? al->alloc(n, al->user) : malloc(n);
}

static void ws_raw_free(const attn_allocator *al, void *p)
{
    if (al->alloc)
        al->free(p, al->user);
    else
        free(p);
}

bool attn__size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

bool attn__size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return false;
    *out = a + b;
    return true;
}

attn_ws *attn_ws_create(const attn_allocator *alloc)
{
    attn_allocator al = {0};
    if (alloc) {
        /* A custom alloc needs its matching free, or blocks could not be given back. */
        if ((alloc->alloc == NULL) != (alloc->free == NULL))
            return NULL;
        al = *alloc;
    }
    attn_ws *ws = ws_raw_alloc(&al, sizeof(*ws));
    if (!ws)
        return NULL;
    memset(ws, 0, sizeof(*ws));
    ws->al = al;
    return ws;
}

static void ws_blocks_free(attn_ws *ws)
{
    ws_block *b = ws->blocks;
    while (b) {
        ws_block *next = b->next;
        ws_raw_free(&ws->al, b);
        b = next;
    }
    ws->blocks = NULL;
}

void attn_ws_free(attn_ws *ws)
{
    if (!ws)
        return;
    attn_ws_free(ws->child);
    ws_blocks_free(ws);
    attn_allocator al = ws->al;
    ws_raw_free(&al, ws);
}

size_t attn_ws_reserved(const attn_ws *ws)
{
    size_t total = 0;
    if (!ws)
        return 0;
    for (const ws_block *b = ws->blocks; b; b = b->next)
        total += b->cap;
    return total + attn_ws_reserved(ws->child);
}

void attn_ws_trim(attn_ws *ws, size_t keep_bytes)
{
    if (!ws)
        return;
    attn_ws_trim(ws->child, keep_bytes);
    if (attn_ws_reserved(ws) > keep_bytes) {
        ws_blocks_free(ws);
        ws->call_bytes = 0;
    }
    if (ws->want > keep_bytes)
        ws->want = keep_bytes;
}

void attn__ws_reset(attn_ws *ws)
{
    if (ws->blocks && ws->blocks->next) {
        /* The last call outgrew one block: next time take one block that holds it all. */
        if (ws->call_bytes > ws->want)
            ws->want = ws->call_bytes;
        ws_blocks_free(ws);
    } else if (ws->blocks) {
        ws->blocks->used = 0;
    }
    ws->call_bytes = 0;
}

attn_ws *attn__ws_child(attn_ws *ws)
{
    if (!ws->child)
        ws->child = attn_ws_create(ws->al.alloc ? &ws->al : NULL);
    return ws->child;
}

static ws_block *ws_block_new(attn_ws *ws, size_t cap)
{
    size_t total;
    if (!attn__size_add(cap, sizeof(ws_block) + WS_ALIGN, &total))
        return NULL;
    unsigned char *raw = ws_raw_alloc(&ws->al, total);
    if (!raw)
        return NULL;
    ws_block *b = (ws_block *)raw;
    uintptr_t start = (uintptr_t)(raw + sizeof(ws_block));
    start = (start + WS_ALIGN - 1) & ~(uintptr_t)(WS_ALIGN - 1);
    b->data = (unsigned char *)start;
    b->cap = cap;
    b->used = 0;
    b->next = ws->blocks;
    ws->blocks = b;
    return b;
}

void *attn__ws_alloc(attn_ws *ws, size_t n_bytes)
{
    size_t size;
    if (!attn__size_add(n_bytes, WS_ALIGN - 1, &size))
        return NULL;
    size &= ~(size_t)(WS_ALIGN - 1);
    if (size == 0)
        size = WS_ALIGN; /* distinct, non-NULL pointers even for empty tensors */
    ws_block *b = ws->blocks;
    if (!b || b->cap - b->used < size) {
        size_t cap = size;
        if (!b && ws->want > cap)
            cap = ws->want;
        if (cap < WS_MIN_BLOCK)
            cap = WS_MIN_BLOCK;
        b = ws_block_new(ws, cap);
        if (!b)
            return NULL;
    }
    void *p = b->data + b->used;
    b->used += size;
    if (!attn__size_add(ws->call_bytes, size, &ws->call_bytes))
        ws->call_bytes = SIZE_MAX;
    return p;
}

float *attn__ws_floats(attn_ws *ws, size_t n)
{
    size_t bytes;
    if (!attn__size_mul(n, sizeof(float), &bytes))
        return NULL;
    return attn__ws_alloc(ws, bytes);
}

const char *attn_status_str(attn_status s)
{
    switch (s) {
    case ATTN_OK:
        return "ok";
    case ATTN_ERR_NOMEM:
        return "out of memory";
    case ATTN_ERR_INVALID:
        return "invalid argument";
    case ATTN_ERR_SHAPE:
        return "tensor dimensions do not agree";
    case ATTN_ERR_UNSUPPORTED:
        return "not supported";
    case ATTN_ERR_OVERFLOW:
        return "size overflows";
    case ATTN_ERR_IO:
        return "file could not be read";
    case ATTN_ERR_FORMAT:
        return "malformed file";
    }
    return "unknown status";
}

const char *attn_version(void)
{
    return ATTN_VERSION_STRING;
}

void attn_free_buffer(void *p)
{
    free(p);
}

uint64_t attn_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

float attn_rng_uniform(uint64_t *state)
{
    return (float)(attn_rng_next(state) >> 40) * (1.0f / 16777216.0f);
}
