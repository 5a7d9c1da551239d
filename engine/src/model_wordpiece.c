/* model_wordpiece.c - BERT's WordPiece tokenizer (vocab.txt), as HuggingFace's BertTokenizer. */
#include "model_internal.h"

#include <string.h>

#define WP_MAX_VOCAB (64u << 20) /* bytes of vocab.txt */
#define WP_MAX_CHARS_LIMIT 1000000u

attn_wordpiece_config attn_wordpiece_config_default(void)
{
    attn_wordpiece_config c;
    memset(&c, 0, sizeof c);
    c.lowercase = true;
    c.strip_accents = -1;
    c.tokenize_chinese_chars = true;
    c.max_input_chars_per_word = 100;
    return c;
}

/* ------------------------------------------------------------ creation */

attn_status attn_tokenizer_wordpiece_create_from_buffer(
    const char *name, const char *vocab, size_t len, const attn_wordpiece_config *cfg,
    const attn_allocator *alloc, attn_tokenizer **out, char *err, size_t err_size)
{
    if (out)
        *out = NULL;
    if (!name)
        name = "vocab.txt";
    attn_allocator al;
    attn_wordpiece_config c = cfg ? *cfg : attn_wordpiece_config_default();
    if (c.max_input_chars_per_word == 0)
        c.max_input_chars_per_word = 100;
    if (!out || (!vocab && len > 0) || !attn__mem_init(alloc, &al) ||
        c.max_input_chars_per_word > WP_MAX_CHARS_LIMIT || c.strip_accents < -1 ||
        c.strip_accents > 1) {
        attn__err(err, err_size, "%s: invalid arguments", name);
        return ATTN_ERR_INVALID;
    }
    static const char *const defaults[5] = {"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"};
    const char **given[5] = {&c.unk_token, &c.cls_token, &c.sep_token, &c.pad_token, &c.mask_token};
    for (int i = 0; i < 5; i++)
        if (!*given[i])
            *given[i] = defaults[i];

    /* Lines end at "\n", "\r\n" or "\r" (Python's universal newlines). */
    size_t n_lines = 0, line = 1;
    for (size_t i = 0; i < len;) {
        size_t start = i;
        while (i < len && vocab[i] != '\n' && vocab[i] != '\r')
            i++;
        for (size_t k = start; k < i;) {
            uint32_t cp;
            size_t step = attn__utf8_decode((const unsigned char *)vocab + k, i - k, &cp);
            if (step == 0) {
                attn__err(err, err_size, "%s:%zu: invalid UTF-8", name, line);
                return ATTN_ERR_FORMAT;
            }
            k += step;
        }
        if (i < len)
            i += (vocab[i] == '\r' && i + 1 < len && vocab[i + 1] == '\n') ? 2 : 1;
        n_lines++;
        line++;
    }
    if (n_lines > INT32_MAX) {
        attn__err(err, err_size, "%s: %zu lines, more ids than int32 holds", name, n_lines);
        return ATTN_ERR_FORMAT;
    }
    attn_tokenizer *t = attn__tokenizer_alloc(&al, ATTN_TOKENIZER_WORDPIECE);
    attn_status rc = t ? ATTN_OK : ATTN_ERR_NOMEM;
    if (rc == ATTN_OK) {
        t->wp = c;
        t->blob = attn__mem_alloc(&al, len + 1);
        rc = t->blob ? attn__strmap_init(&t->vocab, &al, n_lines) : ATTN_ERR_NOMEM;
    }
    if (rc != ATTN_OK) {
        attn__err(err, err_size, "%s: out of memory", name);
        attn_tokenizer_free(t);
        return rc;
    }
    /* The blob is the file with each line end turned into a NUL. */
    if (len)
        memcpy(t->blob, vocab, len);
    t->blob[len] = '\0';
    int32_t id = 0;
    for (size_t i = 0; i < len; id++) {
        size_t start = i;
        while (i < len && t->blob[i] != '\n' && t->blob[i] != '\r')
            i++;
        size_t end = i;
        if (i < len)
            i += (t->blob[i] == '\r' && i + 1 < len && t->blob[i + 1] == '\n') ? 2 : 1;
        t->blob[end] = '\0';
        attn__strmap_put(&t->vocab, t->blob + start, end - start, id);
    }
    rc = attn__tokenizer_index(t, name, err, err_size);
    if (rc != ATTN_OK) {
        attn_tokenizer_free(t);
        return rc;
    }
    static const attn_special which[5] = {ATTN_SPECIAL_UNK, ATTN_SPECIAL_CLS, ATTN_SPECIAL_SEP,
                                          ATTN_SPECIAL_PAD, ATTN_SPECIAL_MASK};
    const char *added[5];
    for (int i = 0; i < 5; i++) {
        const char *s = *given[i];
        t->special[which[i]] = attn__strmap_get(&t->vocab, s, strlen(s), NULL);
        if (i < 3 && t->special[which[i]] < 0) {
            attn__err(err, err_size, "%s: special token '%s' is not in the vocabulary", name, s);
            attn_tokenizer_free(t);
            return ATTN_ERR_FORMAT;
        }
        added[i] = s;
    }
    t->special[ATTN_SPECIAL_BOS] = t->special[ATTN_SPECIAL_CLS];
    t->special[ATTN_SPECIAL_EOS] = t->special[ATTN_SPECIAL_SEP];
    /* The config's strings are the caller's: keep only the vocabulary's copies. */
    t->wp.unk_token = t->wp.cls_token = t->wp.sep_token = t->wp.pad_token = t->wp.mask_token = NULL;
    if (attn__tokenizer_set_added(t, added, 5) != ATTN_OK) {
        attn__err(err, err_size, "%s: out of memory", name);
        attn_tokenizer_free(t);
        return ATTN_ERR_NOMEM;
    }
    *out = t;
    return ATTN_OK;
}

attn_status attn_tokenizer_wordpiece_create(const char *vocab_path,
                                            const attn_wordpiece_config *cfg,
                                            const attn_allocator *alloc, attn_tokenizer **out,
                                            char *err, size_t err_size)
{
    if (out)
        *out = NULL;
    attn_allocator al;
    if (!vocab_path || !out || !attn__mem_init(alloc, &al)) {
        attn__err(err, err_size, "%s: invalid arguments", vocab_path ? vocab_path : "(null)");
        return ATTN_ERR_INVALID;
    }
    char *data = NULL;
    size_t len = 0;
    attn_status rc = attn__file_read(&al, vocab_path, WP_MAX_VOCAB, &data, &len, err, err_size);
    if (rc != ATTN_OK)
        return rc;
    rc = attn_tokenizer_wordpiece_create_from_buffer(vocab_path, data, len, cfg, alloc, out, err,
                                                     err_size);
    attn__mem_free(&al, data);
    return rc;
}

/* ------------------------------------------------------------ encoding one segment */

/* A character with the bytes of the original text it came from. */
typedef struct wp_ch {
    uint32_t cp;
    uint32_t b, e;
} wp_ch;

static bool wp_is_control(uint32_t cp)
{
    if (cp == '\t' || cp == '\n' || cp == '\r')
        return false;
    if (cp >= 0x20 && cp < 0x7F)
        return false;
    switch (attn__uc_category(cp)) {
    case ATTN__UC_CC:
    case ATTN__UC_CF:
    case ATTN__UC_CO:
    case ATTN__UC_CS:
    case ATTN__UC_CN:
        return true;
    default:
        return false;
    }
}

static bool wp_is_punct(uint32_t cp)
{
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
        (cp >= 123 && cp <= 126))
        return true;
    return cp >= 0x80 && attn__uc_category(cp) == ATTN__UC_P;
}

/* The CJK Unified Ideographs blocks BERT's _is_chinese_char lists. */
static bool wp_is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

typedef struct wp_scratch {
    wp_ch *chars;  /* [len] cleaned text */
    wp_ch *norm;   /* [3 * len] one word, normalised */
    char *bytes;   /* [2 + 12 * len] "##" + one piece in UTF-8 */
    uint32_t *pos; /* [3 * len + 1] byte offset of each piece character in bytes + 2 */
} wp_scratch;

/* Greedy longest-match-first WordPiece of one piece (norm [n], n >= 1). */
static attn_status wp_piece(const attn_tokenizer *t, const wp_scratch *s, const wp_ch *p, size_t n,
                            size_t base, attn__toklist *l)
{
    const int32_t unk = t->special[ATTN_SPECIAL_UNK];
    if (n > t->wp.max_input_chars_per_word)
        return attn__toklist_push(l, unk, base + p[0].b, base + p[n - 1].e, 0);
    char *buf = s->bytes + 2;
    uint32_t at = 0;
    for (size_t k = 0; k < n; k++) {
        s->pos[k] = at;
        at += (uint32_t)attn__utf8_encode(p[k].cp, buf + at);
    }
    s->pos[n] = at;
    const size_t mark = l->n;
    size_t start = 0;
    while (start < n) {
        /* "##" goes right before the piece's bytes, over characters already consumed. */
        char *key = buf + s->pos[start];
        if (start > 0) {
            key -= 2;
            key[0] = key[1] = '#';
        }
        int32_t id = -1;
        size_t end = n;
        for (; end > start; end--) {
            size_t klen = (size_t)(buf + s->pos[end] - key);
            id = attn__strmap_get(&t->vocab, key, klen, NULL);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            l->n = mark; /* the whole piece is unknown */
            return attn__toklist_push(l, unk, base + p[0].b, base + p[n - 1].e, 0);
        }
        attn_status rc = attn__toklist_push(l, id, base + p[start].b, base + p[end - 1].e, 0);
        if (rc != ATTN_OK)
            return rc;
        start = end;
    }
    return ATTN_OK;
}

/* Lower-cases and strips accents of word [n] into s->norm; returns the count. */
static size_t wp_normalise(const attn_tokenizer *t, const wp_scratch *s, const wp_ch *word,
                           size_t n)
{
    const bool lower = t->wp.lowercase;
    const bool strip = lower ? t->wp.strip_accents != 0 : t->wp.strip_accents == 1;
    size_t m = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t cps[2] = {word[k].cp, 0};
        size_t n_cps = 1;
        if (lower) {
            if (cps[0] == 0x130) { /* İ lower-cases to i + combining dot above */
                cps[1] = 0x307;
                n_cps = 2;
            }
            cps[0] = attn__uc_lower(cps[0]);
        }
        for (size_t j = 0; j < n_cps; j++) {
            uint32_t dec[3];
            size_t n_dec = 1;
            if (strip)
                n_dec = attn__uc_strip(cps[j], dec);
            else
                dec[0] = cps[j];
            for (size_t d = 0; d < n_dec; d++) {
                s->norm[m].cp = dec[d];
                s->norm[m].b = word[k].b;
                s->norm[m].e = word[k].e;
                m++;
            }
        }
    }
    return m;
}

attn_status attn__wordpiece_segment(const attn_tokenizer *t, const char *text, size_t len,
                                    size_t base, attn__toklist *l)
{
    const attn_allocator *al = &t->al;
    if (len == 0)
        return ATTN_OK;
    wp_scratch s;
    size_t n_chars_bytes, n_norm_bytes, n_bytes, n_pos_bytes, n3;
    if (!attn__size_mul(len, 3, &n3) || !attn__size_mul(len, sizeof(wp_ch), &n_chars_bytes) ||
        !attn__size_mul(n3, sizeof(wp_ch), &n_norm_bytes) || !attn__size_mul(n3, 4, &n_bytes) ||
        !attn__size_add(n_bytes, 2, &n_bytes) ||
        !attn__size_mul(n3 + 1, sizeof(uint32_t), &n_pos_bytes))
        return ATTN_ERR_NOMEM;
    s.chars = attn__mem_alloc(al, n_chars_bytes);
    s.norm = attn__mem_alloc(al, n_norm_bytes);
    s.bytes = attn__mem_alloc(al, n_bytes);
    s.pos = attn__mem_alloc(al, n_pos_bytes);
    attn_status rc = ATTN_OK;
    if (!s.chars || !s.norm || !s.bytes || !s.pos)
        rc = ATTN_ERR_NOMEM;

    /* Clean: drop NUL, U+FFFD and control characters; whitespace becomes a space. */
    size_t n = 0;
    for (size_t i = 0; rc == ATTN_OK && i < len;) {
        uint32_t cp;
        size_t k = attn__utf8_decode((const unsigned char *)text + i, len - i, &cp);
        if (k == 0) { /* checked by the caller */
            rc = ATTN_ERR_INVALID;
            break;
        }
        if (!(cp == 0 || cp == 0xFFFD || wp_is_control(cp))) {
            s.chars[n].cp =
                (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || attn__uc_is_space(cp)) ? ' '
                                                                                               : cp;
            s.chars[n].b = (uint32_t)i;
            s.chars[n].e = (uint32_t)(i + k);
            n++;
        }
        i += k;
    }
    /* Words: runs between spaces, each CJK ideograph a word of its own. */
    for (size_t w = 0; rc == ATTN_OK && w < n;) {
        if (s.chars[w].cp == ' ') {
            w++;
            continue;
        }
        size_t we = w + 1;
        const bool cjk = t->wp.tokenize_chinese_chars;
        if (!(cjk && wp_is_cjk(s.chars[w].cp)))
            while (we < n && s.chars[we].cp != ' ' && !(cjk && wp_is_cjk(s.chars[we].cp)))
                we++;
        const size_t m = wp_normalise(t, &s, s.chars + w, we - w);
        /* Pieces: punctuation characters alone, the runs between them. */
        for (size_t p = 0; rc == ATTN_OK && p < m;) {
            size_t pe = p + 1;
            if (!wp_is_punct(s.norm[p].cp))
                while (pe < m && !wp_is_punct(s.norm[pe].cp))
                    pe++;
            rc = wp_piece(t, &s, s.norm + p, pe - p, base, l);
            p = pe;
        }
        w = we;
    }
    attn__mem_free(al, s.chars);
    attn__mem_free(al, s.norm);
    attn__mem_free(al, s.bytes);
    attn__mem_free(al, s.pos);
    return rc;
}
