/* jpool.c - a per-thread pool for the cJSON nodes of a request, released at once. */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cjson/cJSON.h>

#include "json.h"

#if defined(__SANITIZE_ADDRESS__)
#define JPOOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JPOOL_ASAN 1
#endif
#endif
#ifdef JPOOL_ASAN
#include <sanitizer/asan_interface.h>
/* Released pool memory is poisoned, so a node used after its request ended
 * is reported like a use after free. */
#define JPOOL_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define JPOOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define JPOOL_POISON(p, n) ((void)(p), (void)(n))
#define JPOOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/*
 * A request of a few hundred numbers parses into as many cJSON nodes, and a
 * malloc and a free for each was a quarter of a small request's time. While
 * srv_json_parse_object runs inside a request (srv_json_pool_begin/end), the
 * nodes come from chunks that only ever grow by bumping a pointer; freeing one
 * does nothing, and the end of the request gives the chunks back at once (the
 * first, of 64 KiB, is kept for the next request). Chunks double from there
 * (the pages of a large one are only touched as it fills), so even the
 * largest request has a few dozen, and telling a pool pointer from a
 * malloc'd one (cJSON_Delete calls the same hook for both) is a short scan.
 */
#define JPOOL_FIRST ((size_t)64 << 10)
#define JPOOL_MAX_CHUNKS 48
#define JPOOL_ALIGN 16

typedef struct jpool {
    char *chunk[JPOOL_MAX_CHUNKS];
    size_t size[JPOOL_MAX_CHUNKS];
    size_t n_chunks;
    char *cur, *lim; /* free space in the newest chunk */
    size_t used;     /* bytes handed out since the request began */
    bool in_request; /* between srv_json_pool_begin and _end */
    bool parsing;    /* inside srv_json_parse_object: allocations come from here */
    bool registered; /* the thread-exit destructor knows this pool */
} jpool;

static __thread jpool tl_pool;
static bool jpool_installed;
static pthread_key_t jpool_key;
static bool jpool_key_ok;

/* The first chunk comes from malloc and is kept; larger ones are mapped
 * and unmapped, so a large request's nodes go back to the system when it
 * ends instead of staying in malloc's heap (and in the resident set). */
static char *chunk_alloc(size_t size)
{
    if (size <= JPOOL_FIRST) {
        return malloc(size);
    }
    void *c = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return c == MAP_FAILED ? NULL : c;
}

static void chunk_free(char *c, size_t size)
{
    if (size <= JPOOL_FIRST) {
        free(c);
    } else {
        munmap(c, size);
    }
}

static void jpool_release(jpool *p, bool keep_first)
{
    size_t keep = keep_first && p->n_chunks > 0 && p->size[0] == JPOOL_FIRST ? 1 : 0;

    for (size_t i = keep; i < p->n_chunks; i++) {
        JPOOL_UNPOISON(p->chunk[i], p->size[i]);
        chunk_free(p->chunk[i], p->size[i]);
        p->chunk[i] = NULL;
    }
    p->n_chunks = keep;
    p->used = 0;
    if (keep) {
        p->cur = p->chunk[0];
        p->lim = p->chunk[0] + p->size[0];
        JPOOL_POISON(p->chunk[0], p->size[0]);
    } else {
        p->cur = p->lim = NULL;
    }
}

static void jpool_thread_exit(void *arg)
{
    jpool *p = arg;
    if (p != NULL) {
        jpool_release(p, false);
    }
}

static void *jpool_malloc(size_t n)
{
    jpool *p = &tl_pool;

    if (!p->parsing) {
        return malloc(n);
    }
    size_t need = (n + JPOOL_ALIGN - 1) & ~(size_t)(JPOOL_ALIGN - 1);
    if ((size_t)(p->lim - p->cur) < need) {
        if (p->n_chunks == JPOOL_MAX_CHUNKS || need < n) {
            return NULL; /* 2^48 times the first chunk, or n near SIZE_MAX: out of memory */
        }
        size_t size = p->n_chunks == 0 ? JPOOL_FIRST : p->size[p->n_chunks - 1] * 2;
        if (size < need) {
            size = need;
        }
        char *c = chunk_alloc(size);
        if (c == NULL) {
            return NULL;
        }
        JPOOL_POISON(c, size);
        p->chunk[p->n_chunks] = c;
        p->size[p->n_chunks] = size;
        p->n_chunks++;
        p->cur = c;
        p->lim = c + size;
        if (!p->registered && jpool_key_ok) {
            p->registered = pthread_setspecific(jpool_key, p) == 0;
        }
    }
    void *out = p->cur;
    p->cur += need;
    p->used += need;
    JPOOL_UNPOISON(out, n);
    return out;
}

static bool jpool_owns(const jpool *p, const void *ptr)
{
    const char *c = ptr;

    for (size_t i = p->n_chunks; i-- > 0;) {
        if (c >= p->chunk[i] && c < p->chunk[i] + p->size[i]) {
            return true;
        }
    }
    return false;
}

static void jpool_free(void *ptr)
{
    if (ptr != NULL && !jpool_owns(&tl_pool, ptr)) {
        free(ptr); /* pool memory waits for the request's end */
    }
}

void srv_json_delete(cJSON *root)
{
    /* A tree parsed into the pool lies wholly in it (a parse allocation the
     * pool cannot serve fails the parse); any other tree is walked as usual. */
    if (root == NULL || jpool_owns(&tl_pool, root)) {
        return;
    }
    cJSON_Delete(root);
}

void srv_json_pool_install(void)
{
    cJSON_Hooks hooks = {jpool_malloc, jpool_free};

    if (jpool_installed) {
        return;
    }
    jpool_key_ok = pthread_key_create(&jpool_key, jpool_thread_exit) == 0;
    cJSON_InitHooks(&hooks);
    jpool_installed = true;
}

void srv_json_pool_begin(void)
{
    tl_pool.in_request = jpool_installed;
}

void srv_json_pool_end(void)
{
    jpool *p = &tl_pool;

    if (!p->in_request) {
        return;
    }
    p->in_request = false;
    p->parsing = false;
    jpool_release(p, true);
}

bool srv_json_pool_parse_begin(void)
{
    if (!tl_pool.in_request || tl_pool.parsing) {
        return false;
    }
    tl_pool.parsing = true;
    return true;
}

void srv_json_pool_parse_end(bool began)
{
    if (began) {
        tl_pool.parsing = false;
    }
}

size_t srv_json_pool_used(void)
{
    return tl_pool.used;
}

cJSON *srv_json_pool_number(double v)
{
    if (!tl_pool.parsing) {
        return cJSON_CreateNumber(v);
    }
    cJSON *it = jpool_malloc(sizeof *it);
    if (it == NULL) {
        return NULL;
    }
    /* what cJSON_CreateNumber makes, without its calls through the hooks */
    memset(it, 0, sizeof *it);
    it->type = cJSON_Number;
    it->valuedouble = v;
    it->valueint = v >= INT_MAX ? INT_MAX : v <= (double)INT_MIN ? INT_MIN : (int)v;
    return it;
}
