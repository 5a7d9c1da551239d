/* fuzz_tokenizer.c - WordPiece and byte-level BPE: the first byte picks what the rest is (text
 * for bert-tiny or demo-gpt2, a text pair split at the first NUL, or a vocab.txt / vocab.json +
 * merges.txt to build a tokenizer from), and every encoding is checked for consistency. */
#include <stdlib.h>
#include <string.h>

#include "attn_model.h"
#include "fuzz.h"

#define MODELS ATTN_TEST_DATA "/models"

static attn_tokenizer *bert, *gpt2;

/* Texts for the tokenizers built from fuzzed vocabularies. */
static const char wp_sample[] = "Hello, [MASK] world! cafe\xcc\x81 \xe4\xb8\xad";
static const char bpe_sample[] = "Hello, world! it's  3 \xe4\xb8\xad<|endoftext|>";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[ATTN_MODEL_ERR_SIZE];
    if (attn_tokenizer_wordpiece_create(MODELS "/bert-tiny/vocab.txt", NULL, NULL, &bert, err,
                                        sizeof err) != ATTN_OK ||
        attn_tokenizer_bpe_create(MODELS "/demo-gpt2/vocab.json", MODELS "/demo-gpt2/merges.txt",
                                  NULL, NULL, &gpt2, err, sizeof err) != ATTN_OK)
        abort();
    return 0;
}

/* Encodes and checks what any encoding must satisfy. */
static void encode_check(const attn_tokenizer *t, const char *a, size_t la, const char *b,
                         size_t lb)
{
    char err[ATTN_MODEL_ERR_SIZE];
    attn_encoding *e = NULL;
    for (int special = 0; special < 2; special++) {
        attn_status rc = attn_tokenizer_encode(t, a, la, b, lb, special, &e, err, sizeof err);
        if (rc != ATTN_OK) {
            if (e || rc != ATTN_ERR_INVALID || !strstr(err, "invalid UTF-8"))
                abort();
            continue;
        }
        for (size_t i = 0; i < e->n_tokens; i++) {
            const size_t limit = e->type_ids[i] ? lb : la;
            if (e->ids[i] < 0 || (size_t)e->ids[i] >= attn_tokenizer_vocab_size(t) ||
                strcmp(e->tokens[i], attn_tokenizer_id_to_token(t, e->ids[i])) != 0 ||
                e->offsets[2 * i] > e->offsets[2 * i + 1] || e->offsets[2 * i + 1] > limit ||
                (e->type_ids[i] && !b))
                abort();
        }
        attn_encoding_free(e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;
    const char *nul = memchr(text, '\0', len);
    const size_t first = nul ? (size_t)(nul - text) : len;
    const char *second = nul ? nul + 1 : "";
    const size_t second_len = nul ? len - first - 1 : 0;
    char err[ATTN_MODEL_ERR_SIZE];
    attn_tokenizer *t = NULL;
    switch (data[0] % 6) {
    case 0:
        encode_check(bert, text, len, NULL, 0);
        break;
    case 1:
        encode_check(gpt2, text, len, NULL, 0);
        break;
    case 2:
        encode_check(bert, text, first, second, second_len);
        break;
    case 3:
        encode_check(gpt2, text, first, second, second_len);
        break;
    case 4:
        if (attn_tokenizer_wordpiece_create_from_buffer("fuzz.txt", text, len, NULL, NULL, &t, err,
                                                        sizeof err) == ATTN_OK) {
            encode_check(t, wp_sample, sizeof wp_sample - 1, "x", 1);
            attn_tokenizer_free(t);
        }
        break;
    default:
        if (attn_tokenizer_bpe_create_from_buffers("fuzz.json", text, first, "fuzz.txt", second,
                                                   second_len, NULL, NULL, &t, err,
                                                   sizeof err) == ATTN_OK) {
            encode_check(t, bpe_sample, sizeof bpe_sample - 1, NULL, 0);
            attn_tokenizer_free(t);
        }
        break;
    }
    return 0;
}
