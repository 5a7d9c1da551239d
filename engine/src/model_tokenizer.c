/* model_tokenizer.c - what the tokenizers share: vocabularies, special tokens, encode, results. */
#include "model_internal.h"

#include <stdalign.h>
#include <string.h>

#define TOK_MAX_TEXT 0x7FFFFFFFu /* offsets are kept in 32 bits while encoding */

/* ------------------------------------------------------------ string -> id map */

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3u;
    }
    return h ^ (h >> 29);
}

attn_status attn__strmap_init(attn__strmap *m, const attn_allocator *al, size_t n)
{
    memset(m, 0, sizeof(*m));
    size_t cap = 16;
    while (cap < n * 2) {
        if (cap > SIZE_MAX / 4)
            return ATTN_ERR_OVERFLOW;
        cap *= 2;
    }
    m->keys = attn__mem_array(al, cap, sizeof(char *));
    m->lens = attn__mem_array(al, cap, sizeof(uint32_t));
    m->values = attn__mem_array(al, cap, sizeof(int32_t));
    if (!m->keys || !m->lens || !m->values) {
        attn__strmap_free(m, al);
        return ATTN_ERR_NOMEM;
    }
    memset((void *)m->keys, 0, cap * sizeof(char *));
    m->cap = cap;
    return ATTN_OK;
}

void attn__strmap_free(attn__strmap *m, const attn_allocator *al)
{
    attn__mem_free(al, (void *)m->keys);
    attn__mem_free(al, m->lens);
    attn__mem_free(al, m->values);
    memset(m, 0, sizeof(*m));
}

/* The slot holding key, or the empty slot where it would go. */
static size_t strmap_slot(const attn__strmap *m, const char *key, size_t len)
{
    size_t i = (size_t)hash_bytes(key, len) & (m->cap - 1);
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0))
        i = (i + 1) & (m->cap - 1);
    return i;
}

void attn__strmap_put(attn__strmap *m, const char *key, size_t len, int32_t value)
{
    size_t i = strmap_slot(m, key, len);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->lens[i] = (uint32_t)len;
        m->count++;
    }
    m->values[i] = value;
}

int32_t attn__strmap_get(const attn__strmap *m, const char *key, size_t len, const char **stored)
{
    if (m->cap == 0 || len > UINT32_MAX)
        return -1;
    size_t i = strmap_slot(m, key, len);
    if (!m->keys[i])
        return -1;
    if (stored)
        *stored = m->keys[i];
    return m->values[i];
}

/* ------------------------------------------------------------ token lists */

attn_status attn__toklist_push(attn__toklist *l, int32_t id, size_t begin, size_t end,
                               uint8_t special)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        attn__tok *v = attn__mem_array(l->al, cap, sizeof(attn__tok));
        if (!v)
            return ATTN_ERR_NOMEM;
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(attn__tok));
        attn__mem_free(l->al, l->v);
        l->v = v;
        l->cap = cap;
    }
    attn__tok *t = &l->v[l->n++];
    t->id = id;
    t->begin = (uint32_t)begin;
    t->end = (uint32_t)end;
    t->type = l->type;
    t->special = special;
    return ATTN_OK;
}

/* ------------------------------------------------------------ the shared part */

attn_tokenizer *attn__tokenizer_alloc(const attn_allocator *al, attn_tokenizer_kind kind)
{
    attn_tokenizer *t = attn__mem_alloc(al, sizeof(*t));
    if (!t)
        return NULL;
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->al = *al;
    for (size_t i = 0; i < sizeof t->special / sizeof t->special[0]; i++)
        t->special[i] = -1;
    return t;
}

attn_status attn__tokenizer_index(attn_tokenizer *t, const char *name, char *err, size_t err_size)
{
    const attn__strmap *m = &t->vocab;
    int32_t max_id = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        if (m->values[i] < 0) {
            attn__err(err, err_size, "%s: token '%s' has a negative id %d", name, m->keys[i],
                      (int)m->values[i]);
            return ATTN_ERR_FORMAT;
        }
        if (m->values[i] > max_id)
            max_id = m->values[i];
    }
    const size_t n_ids = (size_t)max_id + 1;
    if (n_ids >= 2 * m->count + 256) {
        attn__err(err, err_size, "%s: ids up to %d for %zu tokens are too sparse", name,
                  (int)max_id, m->count);
        return ATTN_ERR_FORMAT;
    }
    t->id_to_token = attn__mem_array(&t->al, n_ids ? n_ids : 1, sizeof(char *));
    if (!t->id_to_token) {
        attn__err(err, err_size, "%s: out of memory", name);
        return ATTN_ERR_NOMEM;
    }
    memset((void *)t->id_to_token, 0, (n_ids ? n_ids : 1) * sizeof(char *));
    t->n_ids = n_ids;
    /* Keys were stored in file order; the one stored last for an id wins. */
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        const char **slot = &t->id_to_token[m->values[i]];
        if (!*slot || m->keys[i] > *slot)
            *slot = m->keys[i];
    }
    return ATTN_OK;
}

attn_status attn__tokenizer_set_added(attn_tokenizer *t, const char *const *tokens, size_t n)
{
    t->added = attn__mem_array(&t->al, n ? n : 1, sizeof(*t->added));
    if (!t->added)
        return ATTN_ERR_NOMEM;
    t->n_added = 0;
    for (size_t i = 0; i < n; i++) {
        if (!tokens[i] || !tokens[i][0])
            continue;
        const char *stored = NULL;
        int32_t id = attn__strmap_get(&t->vocab, tokens[i], strlen(tokens[i]), &stored);
        if (id < 0)
            continue;
        t->added[t->n_added].s = stored;
        t->added[t->n_added].len = strlen(tokens[i]);
        t->added[t->n_added].id = id;
        t->n_added++;
    }
    return ATTN_OK;
}

void attn_tokenizer_free(attn_tokenizer *tok)
{
    if (!tok)
        return;
    attn_allocator al = tok->al;
    if (tok->kind == ATTN_TOKENIZER_BPE)
        attn__bpe_free(tok);
    attn__strmap_free(&tok->vocab, &al);
    attn__mem_free(&al, (void *)tok->id_to_token);
    attn__mem_free(&al, tok->added);
    attn__mem_free(&al, tok->blob);
    attn__mem_free(&al, tok);
}

attn_tokenizer_kind attn_tokenizer_get_kind(const attn_tokenizer *tok)
{
    return tok ? tok->kind : ATTN_TOKENIZER_WORDPIECE;
}

size_t attn_tokenizer_vocab_size(const attn_tokenizer *tok)
{
    return tok ? tok->n_ids : 0;
}

const char *attn_tokenizer_id_to_token(const attn_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || (size_t)id >= tok->n_ids)
        return NULL;
    return tok->id_to_token[id];
}

int32_t attn_tokenizer_token_to_id(const attn_tokenizer *tok, const char *token)
{
    if (!tok || !token)
        return -1;
    return attn__strmap_get(&tok->vocab, token, strlen(token), NULL);
}

int32_t attn_tokenizer_special_id(const attn_tokenizer *tok, attn_special which)
{
    if (!tok || (int)which < 0 || (size_t)which >= sizeof tok->special / sizeof tok->special[0])
        return -1;
    return tok->special[which];
}

/* ------------------------------------------------------------ encodings */

/* One allocation: this header, then the arrays, then the strings. */
typedef struct enc_block {
    attn_allocator al;
    attn_encoding pub;
} enc_block;

static size_t align_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* Copies the list into a new encoding; NULL when out of memory. */
static attn_encoding *encoding_make(const attn_tokenizer *t, const attn__toklist *l)
{
    const size_t n = l->n;
    size_t str_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = t->id_to_token[l->v[i].id];
        str_bytes += strlen(s) + 1;
    }
    /* Sizes are bounded by the text (< 2^31 bytes), so no sum below overflows. */
    size_t at = align_up(sizeof(enc_block), alignof(max_align_t));
    const size_t off_tokens = at;
    at += n * sizeof(char *);
    const size_t off_offsets = at = align_up(at, alignof(size_t));
    at += 2 * n * sizeof(size_t);
    const size_t off_ids = at = align_up(at, alignof(int32_t));
    at += n * sizeof(int32_t);
    const size_t off_types = at;
    at += n * sizeof(int32_t);
    const size_t off_special = at;
    at += n;
    const size_t off_strings = at;
    at += str_bytes;
    unsigned char *mem = attn__mem_alloc(&t->al, at);
    if (!mem)
        return NULL;
    enc_block *b = (enc_block *)(void *)mem;
    b->al = t->al;
    attn_encoding *e = &b->pub;
    e->n_tokens = n;
    e->tokens = (const char **)(void *)(mem + off_tokens);
    e->offsets = (size_t *)(void *)(mem + off_offsets);
    e->ids = (int32_t *)(void *)(mem + off_ids);
    e->type_ids = (int32_t *)(void *)(mem + off_types);
    e->special = mem + off_special;
    char *s = (char *)mem + off_strings;
    for (size_t i = 0; i < n; i++) {
        const attn__tok *k = &l->v[i];
        const char *src = t->id_to_token[k->id];
        const size_t len = strlen(src) + 1;
        memcpy(s, src, len);
        e->tokens[i] = s;
        s += len;
        e->ids[i] = k->id;
        e->type_ids[i] = k->type;
        e->offsets[2 * i] = k->begin;
        e->offsets[2 * i + 1] = k->end;
        e->special[i] = k->special;
    }
    return e;
}

void attn_encoding_free(attn_encoding *enc)
{
    if (!enc)
        return;
    enc_block *b = (enc_block *)(void *)((unsigned char *)enc - offsetof(enc_block, pub));
    attn_allocator al = b->al;
    attn__mem_free(&al, b);
}

/* ------------------------------------------------------------ encode */

/* Byte offset of the first invalid UTF-8 sequence in s [len], or len. */
static size_t utf8_invalid_at(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = attn__utf8_decode(u + i, len - i, &cp);
        if (k == 0)
            return i;
        i += k;
    }
    return len;
}

/* Splits text around the added tokens (leftmost, then longest) and encodes
 * the pieces between them with the tokenizer's segment encoder. */
static attn_status encode_text(const attn_tokenizer *t, const char *text, size_t len,
                               attn__toklist *l)
{
    size_t seg = 0, i = 0;
    while (i < len) {
        size_t best = 0;
        int32_t best_id = -1;
        for (size_t a = 0; a < t->n_added; a++) {
            const struct attn__added *ad = &t->added[a];
            if (ad->len > best && ad->len <= len - i && memcmp(text + i, ad->s, ad->len) == 0) {
                best = ad->len;
                best_id = ad->id;
            }
        }
        if (best == 0) {
            i++;
            continue;
        }
        attn_status rc = ATTN_OK;
        if (i > seg)
            rc = t->kind == ATTN_TOKENIZER_WORDPIECE
                     ? attn__wordpiece_segment(t, text + seg, i - seg, seg, l)
                     : attn__bpe_segment(t, text + seg, i - seg, seg, l);
        if (rc == ATTN_OK)
            rc = attn__toklist_push(l, best_id, i, i + best, 0);
        if (rc != ATTN_OK)
            return rc;
        i += best;
        seg = i;
    }
    if (len > seg)
        return t->kind == ATTN_TOKENIZER_WORDPIECE
                   ? attn__wordpiece_segment(t, text + seg, len - seg, seg, l)
                   : attn__bpe_segment(t, text + seg, len - seg, seg, l);
    return ATTN_OK;
}

attn_status attn_tokenizer_encode(const attn_tokenizer *tok, const char *text, size_t len,
                                  const char *text_b, size_t len_b, bool add_special_tokens,
                                  attn_encoding **out, char *err, size_t err_size)
{
    if (out)
        *out = NULL;
    if (!tok || !out || (!text && len > 0) || (!text_b && len_b > 0)) {
        attn__err(err, err_size, "encode: invalid arguments");
        return ATTN_ERR_INVALID;
    }
    const char *names[2] = {"text", "text_b"};
    const char *texts[2] = {text ? text : "", text_b};
    const size_t lens[2] = {len, len_b};
    const int n_seg = text_b ? 2 : 1;
    for (int s = 0; s < n_seg; s++) {
        if (lens[s] >= TOK_MAX_TEXT) {
            attn__err(err, err_size, "%s: %zu bytes, more than the %u allowed", names[s], lens[s],
                      TOK_MAX_TEXT - 1);
            return ATTN_ERR_INVALID;
        }
        size_t bad = utf8_invalid_at(texts[s], lens[s]);
        if (bad < lens[s]) {
            attn__err(err, err_size, "%s: invalid UTF-8 at byte %zu", names[s], bad);
            return ATTN_ERR_INVALID;
        }
    }
    const bool bert = tok->kind == ATTN_TOKENIZER_WORDPIECE && add_special_tokens;
    attn__toklist l = {.al = &tok->al};
    attn_status rc = ATTN_OK;
    if (bert)
        rc = attn__toklist_push(&l, tok->special[ATTN_SPECIAL_CLS], 0, 0, 1);
    for (int s = 0; s < n_seg && rc == ATTN_OK; s++) {
        l.type = (uint8_t)s;
        rc = encode_text(tok, texts[s], lens[s], &l);
        if (rc == ATTN_OK && bert)
            rc = attn__toklist_push(&l, tok->special[ATTN_SPECIAL_SEP], 0, 0, 1);
    }
    if (rc == ATTN_OK) {
        *out = encoding_make(tok, &l);
        if (!*out)
            rc = ATTN_ERR_NOMEM;
    }
    if (rc == ATTN_ERR_NOMEM)
        attn__err(err, err_size, "encode: out of memory");
    else if (rc != ATTN_OK)
        attn__err(err, err_size, "encode: %s", attn_status_str(rc));
    attn__mem_free(&tok->al, l.v);
    return rc;
}
