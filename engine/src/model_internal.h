/* model_internal.h - interfaces shared by libattn_model's sources (not part of the public API). */
#ifndef MODEL_INTERNAL_H
#define MODEL_INTERNAL_H

#include "attn_internal.h"
#include "attn_model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#if defined(__GNUC__)
#define ATTN__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ATTN__PRINTF(f, a)
#endif

/* ------------------------------------------------------------ memory, messages, files
 * (model_util.c) */

/* Copies alloc (NULL: malloc/free) into *al; false for a half allocator. */
bool attn__mem_init(const attn_allocator *alloc, attn_allocator *al);
/* NULL on failure or when n is 0. */
void *attn__mem_alloc(const attn_allocator *al, size_t n);
/* n * size bytes; NULL on failure or overflow. */
void *attn__mem_array(const attn_allocator *al, size_t n, size_t size);
void attn__mem_free(const attn_allocator *al, void *p);

/* Writes the formatted message into err [err_size] (no-op for NULL or 0). */
void attn__err(char *err, size_t err_size, const char *fmt, ...) ATTN__PRINTF(3, 4);

/*
 * Reads a whole file into one allocation with a NUL after the last byte
 * (*len excludes it). Files above max_bytes are ATTN_ERR_FORMAT. Errors are
 * ATTN_ERR_IO, ATTN_ERR_FORMAT or ATTN_ERR_NOMEM, with err naming path.
 */
attn_status attn__file_read(const attn_allocator *al, const char *path, size_t max_bytes,
                            char **data, size_t *len, char *err, size_t err_size);

/*
 * Parses text [len] (which need not end in NUL) as one JSON value followed
 * only by whitespace. ATTN_ERR_FORMAT when it is not JSON, ATTN_ERR_NOMEM when
 * cJSON ran out of memory on valid JSON (told apart by a syntax check that
 * allocates nothing), ATTN_ERR_INVALID for a text cJSON cannot take (len
 * >= SIZE_MAX). Free *out with cJSON_Delete.
 */
attn_status attn__json_parse(const char *text, size_t len, cJSON **out);

/* True when text [len] is one JSON value (RFC 8259, nesting depth at most
 * cJSON's 1000) followed only by whitespace; allocates nothing. */
bool attn__json_valid(const char *text, size_t len);

/* ------------------------------------------------------------ UTF-8 and Unicode (model_unicode.c)
 */

/*
 * Decodes the code point at s [len] (len >= 1) into *cp and returns its byte
 * length, or 0 for an invalid sequence (overlong, surrogate, above U+10FFFF,
 * truncated, stray continuation byte).
 */
size_t attn__utf8_decode(const unsigned char *s, size_t len, uint32_t *cp);

/* Writes cp (<= U+10FFFF) as UTF-8 into out [4]; returns the byte count. */
size_t attn__utf8_encode(uint32_t cp, char *out);

/* Reduced general categories (model_unicode_tables.c holds the runs). */
typedef enum attn__uc_cat {
    ATTN__UC_CN = 0, /* unassigned */
    ATTN__UC_L,      /* letters: Lu Ll Lt Lm Lo */
    ATTN__UC_N,      /* numbers: Nd Nl No */
    ATTN__UC_MN,     /* nonspacing marks */
    ATTN__UC_M,      /* other marks: Mc Me */
    ATTN__UC_P,      /* punctuation: Pc Pd Ps Pe Pi Pf Po */
    ATTN__UC_S,      /* symbols */
    ATTN__UC_ZS,     /* space separators */
    ATTN__UC_ZLP,    /* line and paragraph separators */
    ATTN__UC_CC,     /* controls */
    ATTN__UC_CF,     /* format */
    ATTN__UC_CO,     /* private use */
    ATTN__UC_CS,     /* surrogates */
} attn__uc_cat;

attn__uc_cat attn__uc_category(uint32_t cp);
/* The White_Space property (regex \s). */
bool attn__uc_is_space(uint32_t cp);
/* Simple lower case (one-to-one; U+0130 gives 'i', its U+0307 is the caller's). */
uint32_t attn__uc_lower(uint32_t cp);
/* Canonical decomposition of cp without nonspacing marks into out [3]:
 * returns the count (0 when cp is itself a nonspacing mark; Hangul syllables
 * give their 2 or 3 jamo). */
size_t attn__uc_strip(uint32_t cp, uint32_t out[3]);

extern const uint32_t attn__uc_cat_runs[];
extern const size_t attn__uc_n_cat_runs;
extern const uint32_t attn__uc_lower_table[][2];
extern const size_t attn__uc_n_lower;
extern const uint32_t attn__uc_strip_table[][4];
extern const size_t attn__uc_n_strip;

/* ------------------------------------------------------------ string -> id maps
 * (model_tokenizer.c) */

/*
 * Open-addressing map from byte strings to int32 ids, built once and then
 * read-only. Keys live in the owner's storage (the map keeps pointers).
 */
typedef struct attn__strmap {
    const char **keys; /* [cap] NULL = empty slot */
    uint32_t *lens;    /* [cap] */
    int32_t *values;   /* [cap] */
    size_t cap;        /* power of two, at least twice the count */
    size_t count;
} attn__strmap;

/* Room for n keys. ATTN_ERR_NOMEM or ATTN_ERR_OVERFLOW on failure. */
attn_status attn__strmap_init(attn__strmap *m, const attn_allocator *al, size_t n);
void attn__strmap_free(attn__strmap *m, const attn_allocator *al);
/* Inserts or replaces (the last value wins); room was reserved by init. */
void attn__strmap_put(attn__strmap *m, const char *key, size_t len, int32_t value);
/* The value, or -1 when absent; *stored (if not NULL) gets the stored key. */
int32_t attn__strmap_get(const attn__strmap *m, const char *key, size_t len, const char **stored);

/* ------------------------------------------------------------ tokenizers */

/* One token on its way into an attn_encoding. */
typedef struct attn__tok {
    int32_t id;
    uint32_t begin, end; /* byte offsets in the segment's text */
    uint8_t type, special;
} attn__tok;

/* A growable list of tokens in the tokenizer's allocator; type is the
 * segment the pushed tokens belong to. */
typedef struct attn__toklist {
    attn__tok *v;
    size_t n, cap;
    const attn_allocator *al;
    uint8_t type;
} attn__toklist;

/* Appends; ATTN_ERR_NOMEM on failure (the list is unchanged). */
attn_status attn__toklist_push(attn__toklist *l, int32_t id, size_t begin, size_t end,
                               uint8_t special);

/* The part every tokenizer shares. */
struct attn_tokenizer {
    attn_tokenizer_kind kind;
    attn_allocator al;
    char *blob;               /* every vocabulary string, NUL-terminated */
    attn__strmap vocab;       /* string -> id */
    const char **id_to_token; /* [n_ids] */
    size_t n_ids;             /* largest id + 1 */
    int32_t special[7];       /* attn_special -> id or -1 */
    struct attn__added {
        const char *s; /* the vocabulary's copy */
        size_t len;
        int32_t id;
    } * added; /* [n_added] tokens matched literally in text */
    size_t n_added;
    /* kind-specific */
    attn_wordpiece_config wp;
    struct attn__bpe *bpe;
};

/* Allocates the shared part (zeroed, specials -1); NULL on failure. */
attn_tokenizer *attn__tokenizer_alloc(const attn_allocator *al, attn_tokenizer_kind kind);

/* Builds id_to_token from the vocab map: ATTN_ERR_FORMAT when ids are
 * negative or too sparse (>= 2 * count + 256), err naming name. */
attn_status attn__tokenizer_index(attn_tokenizer *t, const char *name, char *err, size_t err_size);

/* Records the ids of the strings to match literally in text (those in the
 * vocabulary). ATTN_ERR_NOMEM on failure. */
attn_status attn__tokenizer_set_added(attn_tokenizer *t, const char *const *tokens, size_t n);

/* Kind-specific encoders of one segment text [len] (valid UTF-8, no added
 * tokens inside) appended to l, offsets shifted by base. */
attn_status attn__wordpiece_segment(const attn_tokenizer *t, const char *text, size_t len,
                                    size_t base, attn__toklist *l);
attn_status attn__bpe_segment(const attn_tokenizer *t, const char *text, size_t len, size_t base,
                              attn__toklist *l);
void attn__bpe_free(attn_tokenizer *t);

#endif
