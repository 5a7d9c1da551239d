/* test_model_tokenizer.c - WordPiece and BPE against HuggingFace, edge cases, memory. */
#include "attn_model.h"
#include "util_golden.h"

#include <check.h>
#include <cjson/cJSON.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODELS ATTN_TEST_DATA "/models"

/* ------------------------------------------------------------ a counting, failing allocator */

typedef struct counter {
    size_t n_calls, n_ok, n_free, fail_at;
} counter;

static counter g_count;

static void *count_malloc(size_t n)
{
    g_count.n_calls++;
    if (g_count.fail_at && g_count.n_calls == g_count.fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        g_count.n_ok++;
    return p;
}

static void count_free(void *p)
{
    if (p) {
        g_count.n_free++;
        free(p);
    }
}

static void *al_alloc(size_t n, void *user)
{
    (void)user;
    return count_malloc(n);
}

static void al_free(void *p, void *user)
{
    (void)user;
    count_free(p);
}

static const attn_allocator COUNTING = {al_alloc, al_free, NULL};

/* ------------------------------------------------------------ helpers */

static attn_tokenizer *bert_tiny(void)
{
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_tokenizer *t = NULL;
    attn_status rc = attn_tokenizer_wordpiece_create(MODELS "/bert-tiny/vocab.txt", NULL, NULL, &t,
                                                     err, sizeof err);
    ck_assert_msg(rc == ATTN_OK, "%s", err);
    return t;
}

static attn_tokenizer *bpe_model(const char *model)
{
    char vocab[512], merges[512], err[ATTN_MODEL_ERR_SIZE] = "";
    snprintf(vocab, sizeof vocab, "%s/%s/vocab.json", MODELS, model);
    snprintf(merges, sizeof merges, "%s/%s/merges.txt", MODELS, model);
    attn_tokenizer *t = NULL;
    attn_status rc = attn_tokenizer_bpe_create(vocab, merges, NULL, NULL, &t, err, sizeof err);
    ck_assert_msg(rc == ATTN_OK, "%s", err);
    return t;
}

static attn_encoding *encode(const attn_tokenizer *t, const char *text, const char *text_b,
                             bool special)
{
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_encoding *e = NULL;
    attn_status rc = attn_tokenizer_encode(
        t, text, strlen(text), text_b, text_b ? strlen(text_b) : 0, special, &e, err, sizeof err);
    ck_assert_msg(rc == ATTN_OK, "'%s': %s", text, err);
    return e;
}

/* Tokens joined by single spaces (none of the vocabularies here has a space in a token). */
static const char *joined_tokens(const attn_encoding *e)
{
    static char buf[8192];
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->n_tokens; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s", i ? " " : "", e->tokens[i]);
    return buf;
}

static const char *joined_ids(const attn_encoding *e)
{
    static char buf[8192];
    size_t at = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->n_tokens; i++)
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%d", i ? " " : "", (int)e->ids[i]);
    return buf;
}

/* Every runs[] entry of a model's expected.json: identical tokens and input_ids. */
static void check_runs(const attn_tokenizer *t, const char *model)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/expected.json", MODELS, model);
    cJSON *root = load_json(path);
    ck_assert_msg(root != NULL, "cannot read %s", path);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(root, "runs");
    ck_assert_int_gt(cJSON_GetArraySize(runs), 0);
    const cJSON *run;
    cJSON_ArrayForEach(run, runs)
    {
        const char *text = cJSON_GetObjectItemCaseSensitive(run, "text")->valuestring;
        const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(run, "tokens");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(run, "input_ids");
        attn_encoding *e = encode(t, text, NULL, true);
        ck_assert_msg(e->n_tokens == (size_t)cJSON_GetArraySize(ids), "%s '%s': %zu tokens (%s)",
                      model, text, e->n_tokens, joined_tokens(e));
        for (size_t i = 0; i < e->n_tokens; i++) {
            const char *want = cJSON_GetArrayItem(tokens, (int)i)->valuestring;
            const int want_id = (int)cJSON_GetArrayItem(ids, (int)i)->valuedouble;
            ck_assert_msg(strcmp(e->tokens[i], want) == 0 && e->ids[i] == want_id,
                          "%s '%s': token %zu is '%s' (%d), expected '%s' (%d)", model, text, i,
                          e->tokens[i], (int)e->ids[i], want, want_id);
            ck_assert_int_eq(e->type_ids[i], 0);
            ck_assert_uint_le(e->offsets[2 * i], e->offsets[2 * i + 1]);
            ck_assert_uint_le(e->offsets[2 * i + 1], strlen(text));
        }
        attn_encoding_free(e);
    }
    cJSON_Delete(root);
}

/* ------------------------------------------------------------ golden runs */

START_TEST(bert_tiny_runs_give_identical_tokens_and_ids)
{
    attn_tokenizer *t = bert_tiny();
    check_runs(t, "bert-tiny");
    attn_tokenizer_free(t);
}
END_TEST

START_TEST(gpt2_tiny_runs_give_identical_tokens_and_ids)
{
    attn_tokenizer *t = bpe_model("gpt2-tiny");
    check_runs(t, "gpt2-tiny");
    attn_tokenizer_free(t);
}
END_TEST

START_TEST(demo_gpt2_runs_give_identical_tokens_and_ids)
{
    attn_tokenizer *t = bpe_model("demo-gpt2");
    check_runs(t, "demo-gpt2");
    attn_tokenizer_free(t);
}
END_TEST

/* Each row of padded_batch is a run's sentence: same ids before the padding,
 * [PAD] and attention_mask 0 after it, padded to the longest. */
START_TEST(bert_tiny_padded_batch_rows_match_their_sentences_before_padding)
{
    attn_tokenizer *t = bert_tiny();
    cJSON *root = load_json(MODELS "/bert-tiny/expected.json");
    ck_assert_ptr_nonnull(root);
    const cJSON *batch = cJSON_GetObjectItemCaseSensitive(root, "padded_batch");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(batch, "input_ids");
    const cJSON *mask = cJSON_GetObjectItemCaseSensitive(batch, "attention_mask");
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(root, "runs");
    ck_assert_int_eq(cJSON_GetArraySize(ids), 2);
    const int32_t pad = attn_tokenizer_special_id(t, ATTN_SPECIAL_PAD);
    ck_assert_int_eq(pad, 0);
    size_t longest = 0, width = 0;
    for (int row = 0; row < 2; row++) {
        const cJSON *r = cJSON_GetArrayItem(ids, row), *m = cJSON_GetArrayItem(mask, row);
        width = (size_t)cJSON_GetArraySize(r);
        size_t n = 0;
        while (n < width && cJSON_GetArrayItem(m, (int)n)->valueint == 1)
            n++;
        /* Find the run whose encoding this row holds. */
        bool found = false;
        const cJSON *run;
        cJSON_ArrayForEach(run, runs)
        {
            attn_encoding *e =
                encode(t, cJSON_GetObjectItemCaseSensitive(run, "text")->valuestring, NULL, true);
            bool same = e->n_tokens == n;
            for (size_t i = 0; same && i < n; i++)
                same = e->ids[i] == cJSON_GetArrayItem(r, (int)i)->valueint;
            attn_encoding_free(e);
            found = found || same;
        }
        ck_assert_msg(found, "row %d matches no sentence", row);
        for (size_t i = n; i < width; i++) {
            ck_assert_int_eq(cJSON_GetArrayItem(r, (int)i)->valueint, pad);
            ck_assert_int_eq(cJSON_GetArrayItem(m, (int)i)->valueint, 0);
        }
        if (n > longest)
            longest = n;
    }
    ck_assert_uint_eq(longest, width);
    cJSON_Delete(root);
    attn_tokenizer_free(t);
}
END_TEST

START_TEST(bert_sentence_pair_has_template_and_token_type_ids)
{
    attn_tokenizer *t = bert_tiny();
    attn_encoding *e = encode(t, "The cat sat.", "The dog ran!", true);
    ck_assert_str_eq(joined_tokens(e), "[CLS] the cat sat . [SEP] the dog ran ! [SEP]");
    ck_assert_str_eq(joined_ids(e), "2 5 6 7 48 3 5 45 46 49 3");
    const int32_t types[] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    const uint8_t special[] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    for (size_t i = 0; i < 11; i++) {
        ck_assert_int_eq(e->type_ids[i], types[i]);
        ck_assert_int_eq(e->special[i], special[i]);
    }
    /* Offsets are byte ranges in each token's own text; template tokens have none. */
    ck_assert_uint_eq(e->offsets[0], 0);
    ck_assert_uint_eq(e->offsets[1], 0);
    ck_assert_uint_eq(e->offsets[2 * 2], 4); /* "cat" in text a */
    ck_assert_uint_eq(e->offsets[2 * 2 + 1], 7);
    ck_assert_uint_eq(e->offsets[2 * 7], 4); /* "dog" in text b */
    ck_assert_uint_eq(e->offsets[2 * 7 + 1], 7);
    attn_encoding_free(e);
    /* Without the template: the two segments back to back, types 0 then 1. */
    e = encode(t, "The cat", "sat", false);
    ck_assert_str_eq(joined_ids(e), "5 6 7");
    ck_assert_int_eq(e->type_ids[1], 0);
    ck_assert_int_eq(e->type_ids[2], 1);
    ck_assert_int_eq(e->special[0], 0);
    attn_encoding_free(e);
    attn_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------ WordPiece edge cases */

/* Ids are line numbers from 0. */
static const char EDGE_VOCAB[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncafe\nnaive\nuber\nistanbul\ncafé\n"
    "Café\nCAFÉ\n,\n.\n!\n?\n¿\n«\n»\n—\n…\n中\n文\nᄒ\n##ᅡ\n##ᆫ\n한\n##s\n"
    "σασ\n[\n]\nmask\nok\nx\n##x\n";

typedef struct wp_case {
    const char *name;
    const char *text;
    int lowercase, strip_accents, max_chars;
    const char *tokens, *ids;
} wp_case;

/* Expected outputs follow HuggingFace's BertTokenizer (tokenizers' BertNormalizer,
 * BertPreTokenizer and WordPiece) on EDGE_VOCAB. */
static const wp_case WP_CASES[] = {
    {"accents stripped and lower-cased", "Café NAÏVE Über", 1, -1, 100,
     "[CLS] cafe naive uber [SEP]", "2 5 6 7 3"},
    {"cased keeps accents", "Café CAFÉ café", 0, -1, 100, "[CLS] Café CAFÉ café [SEP]",
     "2 10 11 9 3"},
    {"lower-cased, accents kept", "CAFÉ Café", 1, 0, 100, "[CLS] café café [SEP]", "2 9 9 3"},
    {"decomposed accent is stripped", "cafe\u0301 nai\u0308ve", 1, -1, 100,
     "[CLS] cafe naive [SEP]", "2 5 6 3"},
    {"dotted capital I", "İSTANBUL İstanbul", 1, -1, 100, "[CLS] istanbul istanbul [SEP]",
     "2 8 8 3"},
    {"capital sigma lower-cases per character", "ΣΑΣ", 1, -1, 100, "[CLS] σασ [SEP]", "2 28 3"},
    {"CJK ideographs split", "中文cafe文", 1, -1, 100, "[CLS] 中 文 cafe 文 [SEP]",
     "2 21 22 5 22 3"},
    {"Hangul decomposes to jamo when stripping", "한", 1, -1, 100, "[CLS] ᄒ ##ᅡ ##ᆫ [SEP]",
     "2 23 24 25 3"},
    {"Hangul kept when cased", "한", 0, -1, 100, "[CLS] 한 [SEP]", "2 26 3"},
    {"punctuation split", "¿cafe?«naive»—uber…x,x.", 1, -1, 100,
     "[CLS] ¿ cafe ? « naive » — uber … x , x . [SEP]", "2 16 5 15 17 6 18 19 7 20 33 12 33 13 3"},
    {"unicode whitespace", "\tcafe\u00a0naive\u3000uber\u2028cafe\r\n\u2009x", 1, -1, 100,
     "[CLS] cafe naive uber cafe x [SEP]", "2 5 6 7 5 33 3"},
    {"controls dropped", "ca\u200bfe na\007ive\ufffd ub\ufeffer", 1, -1, 100,
     "[CLS] cafe naive uber [SEP]", "2 5 6 7 3"},
    {"special tokens kept whole", "cafe[MASK]naive [SEP] [mask]", 1, -1, 100,
     "[CLS] cafe [MASK] naive [SEP] [ mask ] [SEP]", "2 5 4 6 3 29 31 30 3"},
    {"unmatchable word is unk", "cafez x", 1, -1, 100, "[CLS] [UNK] x [SEP]", "2 1 33 3"},
    {"continuations", "cafes xxx", 1, -1, 100, "[CLS] cafe ##s x ##x ##x [SEP]",
     "2 5 27 33 34 34 3"},
    {"word longer than the limit is unk", "cafes cafess x", 1, -1, 5,
     "[CLS] cafe ##s [UNK] x [SEP]", "2 5 27 1 33 3"},
    {"empty text", "", 1, -1, 100, "[CLS] [SEP]", "2 3"},
    {"whitespace only", " \t\n ", 1, -1, 100, "[CLS] [SEP]", "2 3"},
};
#define N_WP_CASES ((int)(sizeof(WP_CASES) / sizeof(WP_CASES[0])))

static attn_tokenizer *edge_wordpiece(int lowercase, int strip_accents, int max_chars)
{
    attn_wordpiece_config c = attn_wordpiece_config_default();
    c.lowercase = lowercase != 0;
    c.strip_accents = strip_accents;
    c.max_input_chars_per_word = (size_t)max_chars;
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_tokenizer *t = NULL;
    attn_status rc = attn_tokenizer_wordpiece_create_from_buffer(
        "edge_vocab.txt", EDGE_VOCAB, strlen(EDGE_VOCAB), &c, NULL, &t, err, sizeof err);
    ck_assert_msg(rc == ATTN_OK, "%s", err);
    return t;
}

START_TEST(wordpiece_edge_case_matches_huggingface)
{
    const wp_case *c = &WP_CASES[_i];
    attn_tokenizer *t = edge_wordpiece(c->lowercase, c->strip_accents, c->max_chars);
    attn_encoding *e = encode(t, c->text, NULL, true);
    ck_assert_msg(strcmp(joined_tokens(e), c->tokens) == 0, "%s: tokens '%s', expected '%s'",
                  c->name, joined_tokens(e), c->tokens);
    ck_assert_msg(strcmp(joined_ids(e), c->ids) == 0, "%s: ids '%s', expected '%s'", c->name,
                  joined_ids(e), c->ids);
    attn_encoding_free(e);
    attn_tokenizer_free(t);
}
END_TEST

START_TEST(wordpiece_offsets_point_at_the_original_bytes)
{
    attn_tokenizer *t = edge_wordpiece(1, -1, 100);
    /* "Café" is 5 bytes; "İ" is 2 bytes and lower-cases to one character. */
    const char *text = "Café NAÏVE İstanbul cafes[MASK]";
    attn_encoding *e = encode(t, text, NULL, false);
    ck_assert_str_eq(joined_tokens(e), "cafe naive istanbul cafe ##s [MASK]");
    const size_t want[][2] = {{0, 5}, {6, 12}, {13, 22}, {23, 27}, {27, 28}, {28, 34}};
    for (size_t i = 0; i < 6; i++) {
        ck_assert_uint_eq(e->offsets[2 * i], want[i][0]);
        ck_assert_uint_eq(e->offsets[2 * i + 1], want[i][1]);
    }
    attn_encoding_free(e);
    /* A NUL inside the text (explicit length) is dropped like any control character. */
    char err[ATTN_MODEL_ERR_SIZE];
    ck_assert_int_eq(attn_tokenizer_encode(t, "ca\0fe", 5, NULL, 0, false, &e, err, sizeof err),
                     ATTN_OK);
    ck_assert_str_eq(joined_tokens(e), "cafe");
    ck_assert_uint_eq(e->offsets[1], 5);
    attn_encoding_free(e);
    attn_tokenizer_free(t);
}
END_TEST

START_TEST(wordpiece_vocabulary_lines_specials_and_lookups)
{
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_tokenizer *t = NULL;
    /* CRLF, CR and LF all end lines; a repeated token keeps its last line. */
    const char vocab[] = "[PAD]\r\n[UNK]\r[CLS]\n[SEP]\nx\n\nx";
    ck_assert_int_eq(attn_tokenizer_wordpiece_create_from_buffer("v.txt", vocab, strlen(vocab),
                                                                 NULL, NULL, &t, err, sizeof err),
                     ATTN_OK);
    ck_assert_int_eq(attn_tokenizer_get_kind(t), ATTN_TOKENIZER_WORDPIECE);
    ck_assert_uint_eq(attn_tokenizer_vocab_size(t), 7);
    ck_assert_int_eq(attn_tokenizer_token_to_id(t, "x"), 6);
    ck_assert_int_eq(attn_tokenizer_token_to_id(t, ""), 5);
    ck_assert_ptr_null(attn_tokenizer_id_to_token(t, 4));
    ck_assert_str_eq(attn_tokenizer_id_to_token(t, 1), "[UNK]");
    ck_assert_ptr_null(attn_tokenizer_id_to_token(t, 7));
    ck_assert_ptr_null(attn_tokenizer_id_to_token(t, -1));
    ck_assert_int_eq(attn_tokenizer_token_to_id(t, "y"), -1);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_CLS), 2);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_BOS), 2);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_EOS), 3);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_MASK),
                     -1); /* not in this vocabulary */
    ck_assert_int_eq(attn_tokenizer_special_id(t, (attn_special)99), -1);
    attn_encoding *e = encode(t, "X x", NULL, true);
    ck_assert_str_eq(joined_ids(e), "2 6 6 3");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    /* Other special strings by configuration. */
    attn_wordpiece_config c = attn_wordpiece_config_default();
    c.cls_token = "<s>";
    c.sep_token = "</s>";
    c.unk_token = "?";
    const char v2[] = "<s>\n</s>\n?\nhi\n";
    ck_assert_int_eq(attn_tokenizer_wordpiece_create_from_buffer("v2.txt", v2, strlen(v2), &c, NULL,
                                                                 &t, err, sizeof err),
                     ATTN_OK);
    e = encode(t, "hi ho", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "<s> hi ? </s>");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
}
END_TEST

START_TEST(wordpiece_bad_vocabulary_is_refused_with_file_and_line)
{
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_tokenizer *t = (attn_tokenizer *)&err;
    const char no_cls[] = "[PAD]\n[UNK]\n[SEP]\n";
    ck_assert_int_eq(attn_tokenizer_wordpiece_create_from_buffer("v.txt", no_cls, strlen(no_cls),
                                                                 NULL, NULL, &t, err, sizeof err),
                     ATTN_ERR_FORMAT);
    ck_assert_ptr_null(t);
    ck_assert_str_eq(err, "v.txt: special token '[CLS]' is not in the vocabulary");
    const char bad_utf8[] = "[UNK]\n[CLS]\n[SEP]\nok\nb\xc3(d\n";
    ck_assert_int_eq(attn_tokenizer_wordpiece_create_from_buffer(
                         "v.txt", bad_utf8, strlen(bad_utf8), NULL, NULL, &t, err, sizeof err),
                     ATTN_ERR_FORMAT);
    ck_assert_str_eq(err, "v.txt:5: invalid UTF-8");
    ck_assert_int_eq(attn_tokenizer_wordpiece_create(ATTN_TEST_DATA "/models/none/vocab.txt", NULL,
                                                     NULL, &t, err, sizeof err),
                     ATTN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "none/vocab.txt: cannot open"));
    attn_wordpiece_config c = attn_wordpiece_config_default();
    c.strip_accents = 2;
    ck_assert_int_eq(attn_tokenizer_wordpiece_create_from_buffer("v.txt", no_cls, strlen(no_cls),
                                                                 &c, NULL, &t, err, sizeof err),
                     ATTN_ERR_INVALID);
    c = attn_wordpiece_config_default();
    c.max_input_chars_per_word = 2000000;
    ck_assert_int_eq(attn_tokenizer_wordpiece_create_from_buffer("v.txt", no_cls, strlen(no_cls),
                                                                 &c, NULL, &t, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_tokenizer_wordpiece_create(NULL, NULL, NULL, &t, err, sizeof err),
                     ATTN_ERR_INVALID);
    attn_allocator half = {al_alloc, NULL, NULL};
    ck_assert_int_eq(attn_tokenizer_wordpiece_create(MODELS "/bert-tiny/vocab.txt", NULL, &half, &t,
                                                     err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_null(t);
}
END_TEST

/* ------------------------------------------------------------ invalid UTF-8 */

typedef struct bad_text {
    const char *bytes;
    size_t bad_at;
} bad_text;

static const bad_text BAD_TEXT[] = {
    {"\xff", 0},                   /* never a UTF-8 byte */
    {"\x80", 0},                   /* stray continuation byte */
    {"ab\xc0\x80", 2},             /* overlong NUL */
    {"ab\xe0\x80\xaf", 2},         /* overlong '/' */
    {"\xed\xa0\x80", 0},           /* UTF-16 surrogate */
    {"ok \xf4\x90\x80\x80", 3},    /* above U+10FFFF */
    {"abc\xe2\x82", 3},            /* truncated at the end */
    {"caf\xc3 x", 3},              /* truncated before ASCII */
    {"ok\xf8\x88\x80\x80\x80", 2}, /* five-byte form */
};
#define N_BAD_TEXT ((int)(sizeof(BAD_TEXT) / sizeof(BAD_TEXT[0])))

START_TEST(invalid_utf8_is_refused_with_its_byte_offset)
{
    attn_tokenizer *tk[2] = {bert_tiny(), bpe_model("gpt2-tiny")};
    const bad_text *b = &BAD_TEXT[_i];
    for (int k = 0; k < 2; k++) {
        char err[ATTN_MODEL_ERR_SIZE] = "", want[64];
        attn_encoding *e = (attn_encoding *)&err;
        ck_assert_int_eq(attn_tokenizer_encode(tk[k], b->bytes, strlen(b->bytes), NULL, 0, true, &e,
                                               err, sizeof err),
                         ATTN_ERR_INVALID);
        ck_assert_ptr_null(e);
        snprintf(want, sizeof want, "text: invalid UTF-8 at byte %zu", b->bad_at);
        ck_assert_str_eq(err, want);
        ck_assert_int_eq(attn_tokenizer_encode(tk[k], "fine", 4, b->bytes, strlen(b->bytes), true,
                                               &e, err, sizeof err),
                         ATTN_ERR_INVALID);
        snprintf(want, sizeof want, "text_b: invalid UTF-8 at byte %zu", b->bad_at);
        ck_assert_str_eq(err, want);
        attn_tokenizer_free(tk[k]);
    }
}
END_TEST

START_TEST(encode_checks_its_arguments)
{
    attn_tokenizer *t = bert_tiny();
    char err[ATTN_MODEL_ERR_SIZE];
    attn_encoding *e = NULL;
    ck_assert_int_eq(attn_tokenizer_encode(NULL, "a", 1, NULL, 0, true, &e, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_tokenizer_encode(t, "a", 1, NULL, 0, true, NULL, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_tokenizer_encode(t, NULL, 1, NULL, 0, true, &e, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_tokenizer_encode(t, "a", 1, NULL, 3, true, &e, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(
        attn_tokenizer_encode(t, "a", (size_t)1 << 31, NULL, 0, true, &e, err, sizeof err),
        ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "more than the"));
    /* NULL text of length 0 is the empty text. */
    ck_assert_int_eq(attn_tokenizer_encode(t, NULL, 0, NULL, 0, true, &e, err, sizeof err),
                     ATTN_OK);
    ck_assert_uint_eq(e->n_tokens, 2);
    attn_encoding_free(e);
    attn_encoding_free(NULL);
    attn_tokenizer_free(NULL);
    ck_assert_uint_eq(attn_tokenizer_vocab_size(NULL), 0);
    ck_assert_int_eq(attn_tokenizer_token_to_id(NULL, "a"), -1);
    ck_assert_ptr_null(attn_tokenizer_id_to_token(NULL, 0));
    ck_assert_int_eq(attn_tokenizer_special_id(NULL, ATTN_SPECIAL_UNK), -1);
    attn_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------ BPE edge cases */

typedef struct bpe_case {
    const char *text, *tokens, *ids;
} bpe_case;

/* Expected outputs follow HuggingFace's GPT2Tokenizer (the regex above, run by
 * a regex engine, then bytes_to_unicode and merges by rank). */
static const bpe_case DEMO_CASES[] = {
    {"I'm sure you'll see it's fine, they're OK.",
     "I ' m Ġsure Ġyou ' ll Ġsee Ġit 's Ġf ine , Ġthey 're ĠO K .",
     "73 39 109 1390 541 39 700 1235 334 487 271 446 44 786 1744 608 75 46"},
    {"a  b\n\nc   ", "a Ġ Ġb Ċ Ċ c ĠĠ Ġ", "97 32 273 10 10 99 813 32"},
    {"  leading spaces", "Ġ Ġlead ing Ġsp aces", "32 1952 278 405 1278"},
    {"tab\tand\u3000wide space", "t ab ĉ and ã Ģ Ģ w ide Ġspace",
     "116 347 9 363 227 128 128 119 597 1576"},
    {"café 123 ½ Ⅻ ٣", "c a f Ã © Ġ1 2 3 Ġ Â ½ Ġ â ħ « Ġ Ù £",
     "99 97 102 195 169 540 50 51 32 194 189 32 226 133 171 32 217 163"},
    {"emoji 😀 and 中文", "em o j i Ġ ð Ł ĺ Ģ Ġand Ġ ä ¸ Ń æ ĸ ĩ",
     "357 111 106 105 32 240 159 152 128 305 32 228 184 173 230 150 135"},
    {"Hello<|endoftext|>world", "H el lo <|endoftext|> w or l d",
     "72 398 618 2047 119 266 108 100"},
    {"don't DON'T 'S !!!'s", "d on 't ĠD ON ' T Ġ' S Ġ ! ! ! ' s",
     "100 261 502 529 1289 39 84 585 83 32 33 33 33 39 115"},
    {"x\u00a0y \u2028z", "x Â ł y Ġ â Ģ ¨ z", "120 194 160 121 32 226 128 168 122"},
    {"", "", ""},
};

static const bpe_case TINY_CASES[] = {
    {"I'm sure you'll see it's fine, they're OK.",
     "I ' m Ġs ur e Ġ you ' ll Ġs e e Ġ i t ' s Ġ f i n e , Ġthe y ' r e Ġ O K .",
     "40 6 76 262 313 68 220 314 6 301 262 68 68 220 72 83 6 82 220 69 72 77 68 11 264 88 6 81 68 "
     "220 46 42 13"},
    {"a  b\n\nc   ", "a Ġ Ġ b Ċ Ċ c Ġ Ġ Ġ", "64 220 220 65 198 198 66 220 220 220"},
    {"café 123 ½ Ⅻ ٣", "c a f Ã © Ġ 1 2 3 Ġ Â ½ Ġ â ħ « Ġ Ù £",
     "66 64 69 127 102 220 16 17 18 220 126 121 220 158 227 104 220 149 96"},
    /* gpt2-tiny has no <|endoftext|>: the string is ordinary text there. */
    {"Hello<|endoftext|>world", "H e ll o < | en d o f t e x t | > wor l d",
     "39 68 301 78 27 91 260 67 78 69 83 68 87 83 91 29 270 75 67"},
    {"don't DON'T 'S !!!'s", "d on ' t Ġ D O N ' T Ġ ' S Ġ ! ! ! ' s",
     "67 268 6 83 220 35 46 45 6 51 220 6 50 220 0 0 0 6 82"},
};

static void check_bpe_cases(const char *model, const bpe_case *cases, size_t n)
{
    attn_tokenizer *t = bpe_model(model);
    for (size_t i = 0; i < n; i++) {
        attn_encoding *e = encode(t, cases[i].text, NULL, true);
        ck_assert_msg(strcmp(joined_tokens(e), cases[i].tokens) == 0,
                      "%s '%s': tokens '%s', expected '%s'", model, cases[i].text, joined_tokens(e),
                      cases[i].tokens);
        ck_assert_msg(strcmp(joined_ids(e), cases[i].ids) == 0, "%s '%s': ids '%s'", model,
                      cases[i].text, joined_ids(e));
        /* Byte-level: the tokens tile the text exactly. */
        size_t at = 0;
        for (size_t k = 0; k < e->n_tokens; k++) {
            ck_assert_uint_eq(e->offsets[2 * k], at);
            at = e->offsets[2 * k + 1];
            ck_assert_int_eq(e->special[k], 0);
        }
        ck_assert_uint_eq(at, strlen(cases[i].text));
        attn_encoding_free(e);
    }
    attn_tokenizer_free(t);
}

START_TEST(demo_gpt2_edge_cases_match_huggingface)
{
    check_bpe_cases("demo-gpt2", DEMO_CASES, sizeof DEMO_CASES / sizeof DEMO_CASES[0]);
}
END_TEST

START_TEST(gpt2_tiny_edge_cases_match_huggingface)
{
    check_bpe_cases("gpt2-tiny", TINY_CASES, sizeof TINY_CASES / sizeof TINY_CASES[0]);
}
END_TEST

START_TEST(bpe_specials_lookups_pairs_and_prefix_space)
{
    attn_tokenizer *t = bpe_model("demo-gpt2");
    ck_assert_int_eq(attn_tokenizer_get_kind(t), ATTN_TOKENIZER_BPE);
    ck_assert_uint_eq(attn_tokenizer_vocab_size(t), 2048);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_EOS), 2047);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_BOS), 2047);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_UNK), 2047);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_CLS), -1);
    ck_assert_int_eq(attn_tokenizer_special_id(t, ATTN_SPECIAL_MASK), -1);
    ck_assert_str_eq(attn_tokenizer_id_to_token(t, 262), "Ġthe");
    ck_assert_int_eq(attn_tokenizer_token_to_id(t, "<|endoftext|>"), 2047);
    /* Pairs: back to back, types 0 then 1, offsets in each text. */
    attn_encoding *e = encode(t, "The cat", " sat", true);
    ck_assert_str_eq(joined_tokens(e), "The Ġc at Ġs at");
    const int32_t types[] = {0, 0, 0, 1, 1};
    for (size_t i = 0; i < 5; i++)
        ck_assert_int_eq(e->type_ids[i], types[i]);
    ck_assert_uint_eq(e->offsets[2 * 3], 0);
    ck_assert_uint_eq(e->offsets[2 * 3 + 1], 2);
    attn_encoding_free(e);
    ck_assert_ptr_null(attn_tokenizer_id_to_token(t, 2048));
    attn_tokenizer_free(t);

    /* add_prefix_space: "the" encodes as " the"; the added space has no bytes in the text. */
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_bpe_config cfg = {.add_prefix_space = true};
    ck_assert_int_eq(attn_tokenizer_bpe_create(MODELS "/demo-gpt2/vocab.json",
                                               MODELS "/demo-gpt2/merges.txt", &cfg, NULL, &t, err,
                                               sizeof err),
                     ATTN_OK);
    e = encode(t, "the cat", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "Ġthe Ġc at");
    ck_assert_uint_eq(e->offsets[0], 0);
    ck_assert_uint_eq(e->offsets[1], 3);
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    /* Other special strings by configuration; an absent one is ignored. */
    const char *const specials[] = {"the", "<nope>"};
    attn_bpe_config cfg2 = {.special_tokens = specials, .n_special_tokens = 2};
    ck_assert_int_eq(attn_tokenizer_bpe_create(MODELS "/demo-gpt2/vocab.json",
                                               MODELS "/demo-gpt2/merges.txt", &cfg2, NULL, &t, err,
                                               sizeof err),
                     ATTN_OK);
    e = encode(t, "other<|endoftext|><nope>", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "o the r < | end of t ext | > < n ope >");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
}
END_TEST

typedef struct bad_bpe {
    const char *name, *vocab, *merges;
    attn_status want;
    const char *message;
} bad_bpe;

/* A vocabulary with every byte symbol is built by the test; "+" appends entries to it. */
static const bad_bpe BAD_BPE[] = {
    {"vocab not JSON", "{\"a\": 1", "", ATTN_ERR_FORMAT,
     "v.json: not a JSON object of token -> id"},
    {"vocab an array", "[1, 2]", "", ATTN_ERR_FORMAT, "v.json: not a JSON object"},
    {"negative id", "+\"ab\": -1", "", ATTN_ERR_FORMAT, "v.json: token 'ab': id is not an integer"},
    {"fractional id", "+\"ab\": 1.5", "", ATTN_ERR_FORMAT, "v.json: token 'ab': id is not"},
    {"string id", "+\"ab\": \"7\"", "", ATTN_ERR_FORMAT, "v.json: token 'ab': id is not"},
    {"sparse ids", "+\"ab\": 100000", "", ATTN_ERR_FORMAT, "v.json: ids up to 100000"},
    {"byte symbol missing", "{\"a\": 0}", "", ATTN_ERR_FORMAT,
     "v.json: the symbol 'Ā' of byte 0x00 is missing"},
    {"merge of three parts", "+\"ab\": 256", "#version: 0.2\na b c\n", ATTN_ERR_FORMAT,
     "m.txt:2: expected two symbols separated by one space"},
    {"merge without space", "+\"ab\": 256", "ab\n", ATTN_ERR_FORMAT, "m.txt:1: expected two"},
    {"merge result not in vocab", "+\"ab\": 256", "a b\nb a\n", ATTN_ERR_FORMAT,
     "m.txt:2: 'ba' is not in the vocabulary"},
    {"merge part not in vocab", "+\"ab\": 256", "a b\nab zz\n", ATTN_ERR_FORMAT,
     "m.txt:2: 'zz' is not in the vocabulary"},
};
#define N_BAD_BPE ((int)(sizeof(BAD_BPE) / sizeof(BAD_BPE[0])))

/* vocab.json text with the 256 byte symbols (ids 0..255) and extra entries. */
static char *byte_vocab(const char *extra)
{
    char *s = malloc(8192);
    ck_assert_ptr_nonnull(s);
    size_t at = (size_t)sprintf(s, "{");
    for (unsigned b = 0, next = 256; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp = printable ? b : next++;
        char u[8] = {0};
        if (cp < 0x80) {
            u[0] = (char)cp;
        } else {
            u[0] = (char)(0xC0 | (cp >> 6));
            u[1] = (char)(0x80 | (cp & 0x3F));
        }
        if (cp == '"' || cp == '\\')
            at += (size_t)sprintf(s + at, "%s\"\\%s\": %u", b ? "," : "", u, b);
        else
            at += (size_t)sprintf(s + at, "%s\"%s\": %u", b ? "," : "", u, b);
    }
    sprintf(s + at, "%s%s}", *extra ? "," : "", extra);
    return s;
}

START_TEST(bpe_bad_files_are_refused_with_file_and_line)
{
    const bad_bpe *b = &BAD_BPE[_i];
    char *vocab = b->vocab[0] == '+' ? byte_vocab(b->vocab + 1) : strdup(b->vocab);
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_tokenizer *t = (attn_tokenizer *)&err;
    attn_status rc =
        attn_tokenizer_bpe_create_from_buffers("v.json", vocab, strlen(vocab), "m.txt", b->merges,
                                               strlen(b->merges), NULL, NULL, &t, err, sizeof err);
    ck_assert_msg(rc == b->want, "%s: got %d (%s)", b->name, (int)rc, err);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, b->message) != NULL, "%s: '%s' lacks '%s'", b->name, err, b->message);
    free(vocab);
}
END_TEST

START_TEST(bpe_merges_rank_and_missing_files)
{
    /* Ranks decide, not file order of the vocabulary: "a b" before "b c" makes "ab c". */
    char *vocab = byte_vocab("\"ab\": 256, \"bc\": 257, \"abc\": 258");
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_tokenizer *t = NULL;
    const char *m1 = "#version: 0.2\r\na b\r\nb c\r\nab c\r\n";
    ck_assert_int_eq(attn_tokenizer_bpe_create_from_buffers("v.json", vocab, strlen(vocab), "m.txt",
                                                            m1, strlen(m1), NULL, NULL, &t, err,
                                                            sizeof err),
                     ATTN_OK);
    attn_encoding *e = encode(t, "abc bca", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "abc Ġ bc a");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    /* "b c" first: "a bc", and the later repeat of "b c" moves it after "a b". */
    const char *m2 = "b c\na b\nab c\n";
    ck_assert_int_eq(attn_tokenizer_bpe_create_from_buffers("v.json", vocab, strlen(vocab), "m.txt",
                                                            m2, strlen(m2), NULL, NULL, &t, err,
                                                            sizeof err),
                     ATTN_OK);
    e = encode(t, "abc", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "a bc");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    const char *m3 = "b c\na b\nab c\nb c";
    ck_assert_int_eq(attn_tokenizer_bpe_create_from_buffers("v.json", vocab, strlen(vocab), "m.txt",
                                                            m3, strlen(m3), NULL, NULL, &t, err,
                                                            sizeof err),
                     ATTN_OK);
    e = encode(t, "abc", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "abc");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    /* A long run of one repeated pair merges left to right. */
    char *v2 = byte_vocab("\"aa\": 256, \"aaaa\": 257");
    const char *m4 = "a a\naa aa\n";
    ck_assert_int_eq(attn_tokenizer_bpe_create_from_buffers("v.json", v2, strlen(v2), "m.txt", m4,
                                                            strlen(m4), NULL, NULL, &t, err,
                                                            sizeof err),
                     ATTN_OK);
    e = encode(t, "aaaaaaa", NULL, true);
    ck_assert_str_eq(joined_tokens(e), "aaaa aa a");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    free(v2);
    free(vocab);
    ck_assert_int_eq(attn_tokenizer_bpe_create(MODELS "/gpt2-tiny/vocab.json", MODELS "/none.txt",
                                               NULL, NULL, &t, err, sizeof err),
                     ATTN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "none.txt: cannot open"));
    ck_assert_int_eq(
        attn_tokenizer_bpe_create(NULL, MODELS "/none.txt", NULL, NULL, &t, err, sizeof err),
        ATTN_ERR_INVALID);
    attn_bpe_config bad = {.n_special_tokens = 1};
    ck_assert_int_eq(attn_tokenizer_bpe_create(MODELS "/gpt2-tiny/vocab.json",
                                               MODELS "/gpt2-tiny/merges.txt", &bad, NULL, &t, err,
                                               sizeof err),
                     ATTN_ERR_INVALID);
}
END_TEST

/* ------------------------------------------------------------ long inputs */

START_TEST(long_words_and_long_texts)
{
    attn_tokenizer *t = bert_tiny();
    /* 100 characters is still a word; 101 is [UNK]. */
    char word[102];
    memset(word, 'a', 101);
    word[101] = '\0';
    attn_encoding *e = encode(t, word, NULL, false);
    ck_assert_str_eq(joined_tokens(e), "[UNK]");
    ck_assert_uint_eq(e->offsets[1], 101);
    attn_encoding_free(e);
    word[100] = '\0';
    e = encode(t, word, NULL, false);
    ck_assert_uint_eq(e->n_tokens, 100); /* a ##a ##a ...: bert-tiny has no longer piece */
    ck_assert_str_eq(e->tokens[0], "a");
    ck_assert_str_eq(e->tokens[99], "##a");
    attn_encoding_free(e);
    attn_tokenizer_free(t);
    /* A 200 kB text without spaces goes through BPE in one pre-token. */
    t = bpe_model("demo-gpt2");
    const size_t n = 200000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = "abcdefghij"[i % 10];
    big[n] = '\0';
    e = encode(t, big, NULL, false);
    ck_assert_uint_gt(e->n_tokens, 1000);
    ck_assert_uint_eq(e->offsets[2 * e->n_tokens - 1], n);
    attn_encoding_free(e);
    free(big);
    attn_tokenizer_free(t);
}
END_TEST

/* ------------------------------------------------------------ memory */

typedef attn_status (*make_fn)(attn_tokenizer **out, char *err);

static attn_status make_wordpiece(attn_tokenizer **out, char *err)
{
    return attn_tokenizer_wordpiece_create(MODELS "/bert-tiny/vocab.txt", NULL, &COUNTING, out, err,
                                           ATTN_MODEL_ERR_SIZE);
}

static attn_status make_bpe(attn_tokenizer **out, char *err)
{
    return attn_tokenizer_bpe_create(MODELS "/gpt2-tiny/vocab.json", MODELS "/gpt2-tiny/merges.txt",
                                     NULL, &COUNTING, out, err, ATTN_MODEL_ERR_SIZE);
}

/*
 * Fails every allocation of creating the tokenizer and of one encode (the
 * library's and cJSON's): ATTN_ERR_NOMEM, nothing leaked, *out NULL; then the
 * same calls succeed with the same result.
 */
static void fail_every_allocation(make_fn make, const char *text, const char *text_b)
{
    char err[ATTN_MODEL_ERR_SIZE];
    cJSON_Hooks hooks = {count_malloc, count_free};
    cJSON_InitHooks(&hooks);
    memset(&g_count, 0, sizeof g_count);
    attn_tokenizer *t = NULL;
    ck_assert_int_eq(make(&t, err), ATTN_OK);
    const size_t total = g_count.n_calls;
    attn_encoding *want = NULL;
    ck_assert_int_eq(attn_tokenizer_encode(t, text, strlen(text), text_b, strlen(text_b), true,
                                           &want, err, sizeof err),
                     ATTN_OK);
    const size_t enc_total = g_count.n_calls - total;
    ck_assert_uint_gt(enc_total, 1);
    for (size_t fail = 1; fail <= enc_total; fail++) {
        const size_t ok0 = g_count.n_ok, free0 = g_count.n_free;
        g_count.fail_at = g_count.n_calls + fail;
        attn_encoding *e = (attn_encoding *)&err;
        attn_status rc = attn_tokenizer_encode(t, text, strlen(text), text_b, strlen(text_b), true,
                                               &e, err, sizeof err);
        g_count.fail_at = 0;
        ck_assert_msg(rc == ATTN_ERR_NOMEM, "encode failure %zu: %d (%s)", fail, (int)rc, err);
        ck_assert_ptr_null(e);
        ck_assert_uint_eq(g_count.n_ok - ok0, g_count.n_free - free0);
    }
    attn_encoding *got = encode(t, text, text_b, true);
    ck_assert_uint_eq(got->n_tokens, want->n_tokens);
    ck_assert_mem_eq(got->ids, want->ids, want->n_tokens * sizeof(int32_t));
    attn_encoding_free(got);
    attn_encoding_free(want);
    attn_tokenizer_free(t);
    ck_assert_uint_eq(g_count.n_ok, g_count.n_free);

    for (size_t fail = 1; fail <= total; fail++) {
        memset(&g_count, 0, sizeof g_count);
        g_count.fail_at = fail;
        t = (attn_tokenizer *)&err;
        attn_status rc = make(&t, err);
        ck_assert_msg(rc == ATTN_ERR_NOMEM, "create failure %zu of %zu: %d (%s)", fail, total,
                      (int)rc, err);
        ck_assert_ptr_null(t);
        ck_assert_msg(g_count.n_ok == g_count.n_free,
                      "create failure %zu: %zu allocations, %zu frees", fail, g_count.n_ok,
                      g_count.n_free);
    }
    cJSON_InitHooks(NULL);
}

START_TEST(wordpiece_each_failed_allocation_returns_nomem_without_leaks)
{
    fail_every_allocation(make_wordpiece, "Unbelievably, [MASK] cat sat.", "The dog ran!");
}
END_TEST

START_TEST(bpe_each_failed_allocation_returns_nomem_without_leaks)
{
    fail_every_allocation(make_bpe, "Unbelievably, the transformer attends to distant tokens.",
                          " An image is worth 16x16 words");
}
END_TEST

static Suite *tokenizer_suite(void)
{
    Suite *s = suite_create("model_tokenizer");
    TCase *tg = tcase_create("golden");
    tcase_add_test(tg, bert_tiny_runs_give_identical_tokens_and_ids);
    tcase_add_test(tg, gpt2_tiny_runs_give_identical_tokens_and_ids);
    tcase_add_test(tg, demo_gpt2_runs_give_identical_tokens_and_ids);
    tcase_add_test(tg, bert_tiny_padded_batch_rows_match_their_sentences_before_padding);
    tcase_add_test(tg, bert_sentence_pair_has_template_and_token_type_ids);
    suite_add_tcase(s, tg);
    TCase *tw = tcase_create("wordpiece");
    tcase_add_loop_test(tw, wordpiece_edge_case_matches_huggingface, 0, N_WP_CASES);
    tcase_add_test(tw, wordpiece_offsets_point_at_the_original_bytes);
    tcase_add_test(tw, wordpiece_vocabulary_lines_specials_and_lookups);
    tcase_add_test(tw, wordpiece_bad_vocabulary_is_refused_with_file_and_line);
    suite_add_tcase(s, tw);
    TCase *tb = tcase_create("bpe");
    tcase_add_test(tb, demo_gpt2_edge_cases_match_huggingface);
    tcase_add_test(tb, gpt2_tiny_edge_cases_match_huggingface);
    tcase_add_test(tb, bpe_specials_lookups_pairs_and_prefix_space);
    tcase_add_loop_test(tb, bpe_bad_files_are_refused_with_file_and_line, 0, N_BAD_BPE);
    tcase_add_test(tb, bpe_merges_rank_and_missing_files);
    suite_add_tcase(s, tb);
    TCase *tt = tcase_create("text");
    tcase_add_loop_test(tt, invalid_utf8_is_refused_with_its_byte_offset, 0, N_BAD_TEXT);
    tcase_add_test(tt, encode_checks_its_arguments);
    tcase_add_test(tt, long_words_and_long_texts);
    suite_add_tcase(s, tt);
    TCase *tm = tcase_create("memory");
    tcase_add_test(tm, wordpiece_each_failed_allocation_returns_nomem_without_leaks);
    tcase_add_test(tm, bpe_each_failed_allocation_returns_nomem_without_leaks);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tokenizer_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
