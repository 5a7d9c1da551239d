/* model_bpe.c - GPT-2 byte-level BPE (vocab.json + merges.txt), as HuggingFace's GPT2Tokenizer. */
#include "model_internal.h"

#include <string.h>

#define BPE_MAX_FILE (256u << 20) /* bytes of vocab.json or merges.txt */

/* A merge: the pair (left id, right id) -> its rank and the merged id. */
typedef struct bpe_pair {
    uint64_t key;
    int32_t rank; /* -1: empty slot */
    int32_t result;
} bpe_pair;

struct attn__bpe {
    bool add_prefix_space;
    int32_t byte_id[256]; /* id of each byte's symbol */
    bpe_pair *pairs;      /* [cap] */
    size_t cap;
};

/* ------------------------------------------------------------ merges table */

static size_t pair_slot(const struct attn__bpe *b, uint64_t key)
{
    uint64_t h = key * 0x9E3779B97F4A7C15u;
    size_t i = (size_t)(h ^ (h >> 31)) & (b->cap - 1);
    while (b->pairs[i].rank >= 0 && b->pairs[i].key != key)
        i = (i + 1) & (b->cap - 1);
    return i;
}

static uint64_t pair_key(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

/* The merge of (left, right), or NULL. */
static const bpe_pair *pair_find(const struct attn__bpe *b, int32_t left, int32_t right)
{
    size_t i = pair_slot(b, pair_key(left, right));
    return b->pairs[i].rank >= 0 ? &b->pairs[i] : NULL;
}

void attn__bpe_free(attn_tokenizer *t)
{
    if (!t->bpe)
        return;
    attn__mem_free(&t->al, t->bpe->pairs);
    attn__mem_free(&t->al, t->bpe);
    t->bpe = NULL;
}

/* ------------------------------------------------------------ creation */

/*
 * GPT-2's bytes_to_unicode: the printable bytes '!'..'~', 0xA1..0xAC and
 * 0xAE..0xFF stand for themselves; the other 68 take U+0100 onwards in byte order.
 */
static void bytes_to_unicode(uint32_t cp[256])
{
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        cp[b] = printable ? b : next++;
    }
}

/* Reads vocab.json into t's vocabulary map and blob. */
static attn_status load_vocab(attn_tokenizer *t, const char *name, const char *json, size_t len,
                              char *err, size_t err_size)
{
    cJSON *root = NULL;
    attn_status rc = attn__json_parse(json, len, &root);
    if (rc == ATTN_ERR_NOMEM) {
        attn__err(err, err_size, "%s: out of memory parsing JSON", name);
        return rc;
    }
    if (rc != ATTN_OK || !cJSON_IsObject(root)) {
        attn__err(err, err_size, "%s: not a JSON object of token -> id", name);
        cJSON_Delete(root);
        return ATTN_ERR_FORMAT;
    }
    size_t n = 0, bytes = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        const double v = cJSON_IsNumber(e) ? e->valuedouble : -1.0;
        if (!(v >= 0.0 && v <= (double)INT32_MAX && v == (double)(int32_t)v)) {
            attn__err(err, err_size, "%s: token '%s': id is not an integer in [0, 2^31)", name,
                      e->string);
            cJSON_Delete(root);
            return ATTN_ERR_FORMAT;
        }
        n++;
        bytes += strlen(e->string) + 1;
    }
    t->blob = attn__mem_alloc(&t->al, bytes ? bytes : 1);
    rc = t->blob ? attn__strmap_init(&t->vocab, &t->al, n) : ATTN_ERR_NOMEM;
    if (rc != ATTN_OK) {
        attn__err(err, err_size, "%s: out of memory for %zu tokens", name, n);
        cJSON_Delete(root);
        return rc;
    }
    char *s = t->blob;
    for (const cJSON *e = root->child; e; e = e->next) {
        const size_t k = strlen(e->string);
        memcpy(s, e->string, k + 1);
        attn__strmap_put(&t->vocab, s, k, (int32_t)e->valuedouble);
        s += k + 1;
    }
    cJSON_Delete(root);
    return attn__tokenizer_index(t, name, err, err_size);
}

/* Reads merges.txt into the pairs table. */
static attn_status load_merges(attn_tokenizer *t, const char *name, const char *merges, size_t len,
                               char *err, size_t err_size)
{
    struct attn__bpe *b = t->bpe;
    size_t n_lines = 1, longest = 0, cur = 0;
    for (size_t i = 0; i < len; i++) {
        if (merges[i] == '\n') {
            n_lines++;
            cur = 0;
        } else if (++cur > longest) {
            longest = cur;
        }
    }
    size_t cap = 16;
    while (cap < 2 * n_lines)
        cap *= 2;
    b->pairs = attn__mem_array(&t->al, cap, sizeof(bpe_pair));
    char *joined = attn__mem_alloc(&t->al, longest + 1);
    if (!b->pairs || !joined) {
        attn__mem_free(&t->al, joined);
        attn__err(err, err_size, "%s: out of memory", name);
        return ATTN_ERR_NOMEM;
    }
    b->cap = cap;
    for (size_t i = 0; i < cap; i++)
        b->pairs[i].rank = -1;
    attn_status rc = ATTN_OK;
    int32_t rank = 0;
    size_t line = 0;
    for (size_t i = 0; i < len && rc == ATTN_OK;) {
        const char *s = merges + i;
        size_t k = 0;
        while (i + k < len && s[k] != '\n')
            k++;
        i += k + 1;
        line++;
        if (k > 0 && s[k - 1] == '\r')
            k--;
        if (k == 0 || (line == 1 && k >= 8 && memcmp(s, "#version", 8) == 0))
            continue;
        const char *sp = memchr(s, ' ', k);
        if (!sp || sp == s || sp == s + k - 1 || memchr(sp + 1, ' ', (size_t)(s + k - sp - 1))) {
            attn__err(err, err_size, "%s:%zu: expected two symbols separated by one space", name,
                      line);
            rc = ATTN_ERR_FORMAT;
            break;
        }
        const size_t la = (size_t)(sp - s), lb = k - la - 1;
        const int32_t ia = attn__strmap_get(&t->vocab, s, la, NULL);
        const int32_t ib = attn__strmap_get(&t->vocab, sp + 1, lb, NULL);
        memcpy(joined, s, la);
        memcpy(joined + la, sp + 1, lb);
        const int32_t ir = attn__strmap_get(&t->vocab, joined, la + lb, NULL);
        if (ia < 0 || ib < 0 || ir < 0) {
            const int which = ia < 0 ? 0 : ib < 0 ? 1 : 2;
            const char *what[3] = {s, sp + 1, joined};
            const int wlen[3] = {(int)la, (int)lb, (int)(la + lb)};
            attn__err(err, err_size, "%s:%zu: '%.*s' is not in the vocabulary", name, line,
                      wlen[which], what[which]);
            rc = ATTN_ERR_FORMAT;
            break;
        }
        if (rank == INT32_MAX) {
            attn__err(err, err_size, "%s: more merges than int32 ranks", name);
            rc = ATTN_ERR_FORMAT;
            break;
        }
        bpe_pair *p = &b->pairs[pair_slot(b, pair_key(ia, ib))];
        p->key = pair_key(ia, ib);
        p->rank = rank++; /* a repeated merge keeps its last rank */
        p->result = ir;
    }
    attn__mem_free(&t->al, joined);
    return rc;
}

attn_status attn_tokenizer_bpe_create_from_buffers(const char *vocab_name, const char *vocab_json,
                                                   size_t vocab_len, const char *merges_name,
                                                   const char *merges, size_t merges_len,
                                                   const attn_bpe_config *cfg,
                                                   const attn_allocator *alloc,
                                                   attn_tokenizer **out, char *err, size_t err_size)
{
    if (out)
        *out = NULL;
    if (!vocab_name)
        vocab_name = "vocab.json";
    if (!merges_name)
        merges_name = "merges.txt";
    attn_allocator al;
    if (!out || (!vocab_json && vocab_len > 0) || (!merges && merges_len > 0) ||
        !attn__mem_init(alloc, &al) || (cfg && cfg->n_special_tokens > 0 && !cfg->special_tokens)) {
        attn__err(err, err_size, "%s: invalid arguments", vocab_name);
        return ATTN_ERR_INVALID;
    }
    attn_tokenizer *t = attn__tokenizer_alloc(&al, ATTN_TOKENIZER_BPE);
    if (t) {
        t->bpe = attn__mem_alloc(&al, sizeof(*t->bpe));
        if (t->bpe)
            memset(t->bpe, 0, sizeof(*t->bpe));
    }
    if (!t || !t->bpe) {
        attn__err(err, err_size, "%s: out of memory", vocab_name);
        attn_tokenizer_free(t);
        return ATTN_ERR_NOMEM;
    }
    t->bpe->add_prefix_space = cfg && cfg->add_prefix_space;
    attn_status rc = load_vocab(t, vocab_name, vocab_json, vocab_len, err, err_size);
    if (rc == ATTN_OK) {
        uint32_t cps[256];
        bytes_to_unicode(cps);
        for (int i = 0; i < 256 && rc == ATTN_OK; i++) {
            char sym[4];
            size_t k = attn__utf8_encode(cps[i], sym);
            t->bpe->byte_id[i] = attn__strmap_get(&t->vocab, sym, k, NULL);
            if (t->bpe->byte_id[i] < 0) {
                attn__err(err, err_size, "%s: the symbol '%.*s' of byte 0x%02x is missing",
                          vocab_name, (int)k, sym, (unsigned)i);
                rc = ATTN_ERR_FORMAT;
            }
        }
    }
    if (rc == ATTN_OK)
        rc = load_merges(t, merges_name, merges ? merges : "", merges_len, err, err_size);
    if (rc == ATTN_OK) {
        static const char *const gpt2_special[] = {"<|endoftext|>"};
        const char *const *sp = gpt2_special;
        size_t n_sp = 1;
        if (cfg && cfg->special_tokens) {
            sp = cfg->special_tokens;
            n_sp = cfg->n_special_tokens;
        }
        if (attn__tokenizer_set_added(t, sp, n_sp) != ATTN_OK) {
            attn__err(err, err_size, "%s: out of memory", vocab_name);
            rc = ATTN_ERR_NOMEM;
        }
        const int32_t eot = attn__strmap_get(&t->vocab, "<|endoftext|>", 13, NULL);
        t->special[ATTN_SPECIAL_UNK] = t->special[ATTN_SPECIAL_BOS] = t->special[ATTN_SPECIAL_EOS] =
            eot;
    }
    if (rc != ATTN_OK) {
        attn_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return ATTN_OK;
}

attn_status attn_tokenizer_bpe_create(const char *vocab_json_path, const char *merges_path,
                                      const attn_bpe_config *cfg, const attn_allocator *alloc,
                                      attn_tokenizer **out, char *err, size_t err_size)
{
    if (out)
        *out = NULL;
    attn_allocator al;
    if (!vocab_json_path || !merges_path || !out || !attn__mem_init(alloc, &al)) {
        attn__err(err, err_size, "%s: invalid arguments",
                  vocab_json_path ? vocab_json_path : "(null)");
        return ATTN_ERR_INVALID;
    }
    char *vocab = NULL, *merges = NULL;
    size_t vlen = 0, mlen = 0;
    attn_status rc =
        attn__file_read(&al, vocab_json_path, BPE_MAX_FILE, &vocab, &vlen, err, err_size);
    if (rc == ATTN_OK)
        rc = attn__file_read(&al, merges_path, BPE_MAX_FILE, &merges, &mlen, err, err_size);
    if (rc == ATTN_OK)
        rc = attn_tokenizer_bpe_create_from_buffers(vocab_json_path, vocab, vlen, merges_path,
                                                    merges, mlen, cfg, alloc, out, err, err_size);
    attn__mem_free(&al, vocab);
    attn__mem_free(&al, merges);
    return rc;
}

/* ------------------------------------------------------------ pre-tokenisation */

enum { CL_SPACE, CL_LETTER, CL_NUMBER, CL_OTHER };

/* Class of the character at w[i]; *k gets its byte length. */
static int char_class(const unsigned char *w, size_t n, size_t i, size_t *k)
{
    uint32_t cp;
    *k = attn__utf8_decode(w + i, n - i, &cp);
    if (*k == 0) { /* cannot happen: the text was validated */
        *k = 1;
        return CL_OTHER;
    }
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
            return CL_LETTER;
        if (cp >= '0' && cp <= '9')
            return CL_NUMBER;
        return attn__uc_is_space(cp) ? CL_SPACE : CL_OTHER;
    }
    if (attn__uc_is_space(cp))
        return CL_SPACE;
    switch (attn__uc_category(cp)) {
    case ATTN__UC_L:
        return CL_LETTER;
    case ATTN__UC_N:
        return CL_NUMBER;
    default:
        return CL_OTHER;
    }
}

/* End of the run of class cl starting at i; *last gets the start of its last character. */
static size_t class_run(const unsigned char *w, size_t n, size_t i, int cl, size_t *last)
{
    size_t k;
    *last = i;
    while (i < n && char_class(w, n, i, &k) == cl) {
        *last = i;
        i += k;
    }
    return i;
}

/*
 * End of the match of GPT-2's pattern at i (i < n):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The alternatives are tried in order, as the regex engine does.
 */
static size_t pretoken_end(const unsigned char *w, size_t n, size_t i)
{
    size_t k, last;
    if (w[i] == '\'' && i + 1 < n) {
        const unsigned char c = w[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd')
            return i + 2;
        if (i + 2 < n && ((c == 'r' && w[i + 2] == 'e') || (c == 'v' && w[i + 2] == 'e') ||
                          (c == 'l' && w[i + 2] == 'l')))
            return i + 3;
    }
    /* " ?X+": with the optional space when it is there and X follows it. */
    const size_t j = (w[i] == ' ' && i + 1 < n) ? i + 1 : i;
    const int cl = char_class(w, n, j, &k);
    if (cl != CL_SPACE)
        return class_run(w, n, j, cl, &last);
    /* Whitespace (w[i] is whitespace here). \s+(?!\S) gives the run but its
     * last character when a non-space follows and the run has more than one. */
    const size_t end = class_run(w, n, i, CL_SPACE, &last);
    if (end < n && last > i)
        return last;
    return end;
}

/* ------------------------------------------------------------ BPE */

typedef struct bpe_cand {
    int32_t rank;
    uint32_t pos;   /* left symbol */
    uint32_t right; /* right symbol */
    int32_t lid, rid;
} bpe_cand;

typedef struct bpe_scratch {
    int32_t *id;    /* [n] symbol id (index = the byte its symbol starts at) */
    uint32_t *len;  /* [n] bytes */
    int32_t *prev;  /* [n] */
    int32_t *next;  /* [n] -1: end */
    bpe_cand *heap; /* [3 n] */
    size_t n_heap;
} bpe_scratch;

static bool cand_less(const bpe_cand *a, const bpe_cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(bpe_scratch *s, bpe_cand c)
{
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_less(&c, &s->heap[up]))
            break;
        s->heap[i] = s->heap[up];
        i = up;
    }
    s->heap[i] = c;
}

static bpe_cand heap_pop(bpe_scratch *s)
{
    bpe_cand top = s->heap[0];
    bpe_cand last = s->heap[--s->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap)
            break;
        if (c + 1 < s->n_heap && cand_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!cand_less(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    s->heap[i] = last;
    return top;
}

static void push_pair(const struct attn__bpe *b, bpe_scratch *s, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const bpe_pair *p = pair_find(b, s->id[left], s->id[right]);
    if (p) {
        bpe_cand c = {p->rank, (uint32_t)left, (uint32_t)right, s->id[left], s->id[right]};
        heap_push(s, c);
    }
}

/* Merges the bytes w [i, e) (one pre-token) lowest rank first (leftmost on
 * ties, as HuggingFace tokenizers) and appends the symbols to l. */
static attn_status bpe_word(const attn_tokenizer *t, bpe_scratch *s, const unsigned char *w,
                            size_t i, size_t e, size_t base, size_t prefix, attn__toklist *l)
{
    const struct attn__bpe *b = t->bpe;
    for (size_t p = i; p < e; p++) {
        s->id[p] = b->byte_id[w[p]];
        s->len[p] = 1;
        s->prev[p] = p > i ? (int32_t)(p - 1) : -1;
        s->next[p] = p + 1 < e ? (int32_t)(p + 1) : -1;
    }
    s->n_heap = 0;
    for (size_t p = i; p + 1 < e; p++)
        push_pair(b, s, (int32_t)p, (int32_t)(p + 1));
    while (s->n_heap > 0) {
        const bpe_cand c = heap_pop(s);
        const int32_t left = (int32_t)c.pos, right = (int32_t)c.right;
        /* Stale when either side was merged since the candidate was pushed. */
        if (s->next[left] != right || s->len[left] == 0 || s->id[left] != c.lid ||
            s->id[right] != c.rid)
            continue;
        const bpe_pair *p = pair_find(b, c.lid, c.rid);
        s->id[left] = p->result;
        s->len[left] += s->len[right];
        s->len[right] = 0;
        s->next[left] = s->next[right];
        if (s->next[right] >= 0)
            s->prev[s->next[right]] = left;
        push_pair(b, s, s->prev[left], left);
        push_pair(b, s, left, s->next[left]);
    }
    for (int32_t p = (int32_t)i; p >= 0; p = s->next[p]) {
        /* Offsets in the segment's text: the added prefix space has none. */
        size_t from = (size_t)p, to = (size_t)p + s->len[p];
        from = from >= prefix ? from - prefix : 0;
        to = to >= prefix ? to - prefix : 0;
        attn_status rc = attn__toklist_push(l, s->id[p], base + from, base + to, 0);
        if (rc != ATTN_OK)
            return rc;
    }
    return ATTN_OK;
}

attn_status attn__bpe_segment(const attn_tokenizer *t, const char *text, size_t len, size_t base,
                              attn__toklist *l)
{
    const attn_allocator *al = &t->al;
    if (len == 0)
        return ATTN_OK;
    const size_t prefix = (t->bpe->add_prefix_space && text[0] != ' ') ? 1 : 0;
    const size_t n = len + prefix;
    unsigned char *copy = NULL;
    const unsigned char *w = (const unsigned char *)text;
    if (prefix) {
        copy = attn__mem_alloc(al, n);
        if (!copy)
            return ATTN_ERR_NOMEM;
        copy[0] = ' ';
        memcpy(copy + 1, text, len);
        w = copy;
    }
    bpe_scratch s = {0};
    s.id = attn__mem_array(al, n, sizeof(int32_t));
    s.len = attn__mem_array(al, n, sizeof(uint32_t));
    s.prev = attn__mem_array(al, n, sizeof(int32_t));
    s.next = attn__mem_array(al, n, sizeof(int32_t));
    s.heap = attn__mem_array(al, n, 3 * sizeof(bpe_cand));
    attn_status rc = (s.id && s.len && s.prev && s.next && s.heap) ? ATTN_OK : ATTN_ERR_NOMEM;
    for (size_t i = 0; rc == ATTN_OK && i < n;) {
        const size_t e = pretoken_end(w, n, i);
        rc = bpe_word(t, &s, w, i, e, base, prefix, l);
        i = e;
    }
    attn__mem_free(al, s.id);
    attn__mem_free(al, s.len);
    attn__mem_free(al, s.prev);
    attn__mem_free(al, s.next);
    attn__mem_free(al, s.heap);
    attn__mem_free(al, copy);
    return rc;
}
