/* attn_model.h - libattn_model: pretrained-model files (safetensors, WordPiece, byte-level BPE). */
#ifndef ATTN_MODEL_H
#define ATTN_MODEL_H

/*
 * Conventions: those of attn.h (status codes, caller-owned buffers,
 * create/free pairs whose free(NULL) is a no-op, shapes outermost first),
 * plus two that concern files.
 *
 * Messages: every function that reads a file or user text takes
 * (char *err, size_t err_size). On failure it writes one NUL-terminated line
 * there (truncated to fit; err may be NULL or err_size 0) naming the file and
 * the item at fault, e.g.
 *   "dir/model.safetensors: tensor 'h.0.attn.c_attn.weight': data_offsets [100, 90] are reversed".
 * ATTN_MODEL_ERR_SIZE bytes hold every message whose names are of reasonable length.
 *
 * Statuses: ATTN_ERR_IO (the file cannot be opened, read or mapped),
 * ATTN_ERR_FORMAT (its contents are malformed), ATTN_ERR_UNSUPPORTED (well
 * formed, but not something this library handles, e.g. a dtype), ATTN_ERR_OVERFLOW
 * (a declared size does not fit size_t), ATTN_ERR_NOMEM, ATTN_ERR_INVALID (bad
 * arguments, invalid UTF-8 text).
 *
 * Allocation: the objects below allocate through the attn_allocator given at
 * creation (NULL: malloc/free; an allocator with only one of alloc/free set is
 * ATTN_ERR_INVALID), so tests can fail the Nth allocation. JSON is parsed with
 * cJSON, whose memory comes from cJSON's own hooks (cJSON_InitHooks); a failed
 * allocation there is ATTN_ERR_NOMEM too, told apart from malformed JSON.
 *
 * Threads: no globals. Opened files and tokenizers are immutable after
 * creation: any number of threads may read and encode with one at once
 * (encodings allocate through the tokenizer's allocator, which must then be
 * thread-safe; malloc is).
 */

#include "attn.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_MODEL_ERR_SIZE 512

/* ------------------------------------------------------------ safetensors */

/*
 * Element types. F32, F16 and BF16 convert to float32. I64 is accepted in a
 * file but not converted (older BERT and RoBERTa checkpoints store their
 * embeddings.position_ids buffer as I64; refusing it would refuse the model).
 * Any other dtype of the format (F64, I32, U8, BOOL, F8_*, ...) makes the
 * whole file ATTN_ERR_UNSUPPORTED; an unknown dtype string is ATTN_ERR_FORMAT.
 */
typedef enum attn_dtype {
    ATTN_DTYPE_F32 = 0,
    ATTN_DTYPE_F16 = 1,
    ATTN_DTYPE_BF16 = 2,
    ATTN_DTYPE_I64 = 3,
} attn_dtype;

/* The format's name ("F32", "F16", "BF16", "I64"), or NULL for an unknown value. */
const char *attn_dtype_name(attn_dtype dtype);

/* Bytes per element (4, 2, 2, 8), or 0 for an unknown value. */
size_t attn_dtype_size(attn_dtype dtype);

/* IEEE binary16 and bfloat16 to float32: exact, subnormals, infinities and
 * NaN (payload kept) included. */
float attn_f16_to_f32(uint16_t h);
float attn_bf16_to_f32(uint16_t b);

#define ATTN_ST_MAX_DIMS 8 /* ranks above this are ATTN_ERR_UNSUPPORTED */

/* One tensor of an open file. Everything points into the file object and is
 * valid until attn_st_close. */
typedef struct attn_st_tensor {
    const char *name; /* NUL-terminated */
    attn_dtype dtype;
    size_t n_dims;                  /* 0 for a scalar */
    size_t shape[ATTN_ST_MAX_DIMS]; /* [n_dims], outermost first */
    size_t n_elements;              /* product of shape (1 for a scalar) */
    size_t n_bytes;                 /* n_elements * attn_dtype_size(dtype) */
    const void *data; /* [n_bytes] little-endian, read-only mapping, not necessarily aligned */
} attn_st_tensor;

typedef struct attn_st attn_st;

/*
 * Opens a .safetensors file: maps it read-only and validates the whole
 * header before returning. Checked: the 8-byte little-endian header length
 * (at most 100 MB and within the file); the header is one JSON object
 * (trailing spaces allowed) without NUL bytes; "__metadata__", when present,
 * maps strings to strings; every other entry is an object with "dtype",
 * "shape" (at most ATTN_ST_MAX_DIMS integers >= 0 whose product, times the
 * dtype size, fits size_t) and "data_offsets" [begin, end] with
 * begin <= end <= size of the data area (the bytes after the header, which
 * offsets count from) and end - begin == the tensor's byte size; no name
 * appears twice; no two non-empty tensors share a byte. Gaps between tensors
 * and bytes after the last one are allowed.
 * On success *out is the file object (attn_st_close frees it); on error *out
 * is NULL and err names the file (and the tensor): ATTN_ERR_IO, ATTN_ERR_FORMAT,
 * ATTN_ERR_UNSUPPORTED, ATTN_ERR_OVERFLOW, ATTN_ERR_NOMEM, or ATTN_ERR_INVALID
 * for NULL path or out or a half allocator.
 * The mapping stays valid while the file object lives; a file truncated by
 * someone else afterwards makes reads fault (SIGBUS), as with any mapping.
 */
attn_status attn_st_open(const char *path, const attn_allocator *alloc, attn_st **out, char *err,
                         size_t err_size);

/* Unmaps and frees. NULL is a no-op. */
void attn_st_close(attn_st *st);

/* The path given to attn_st_open ("" for NULL). */
const char *attn_st_path(const attn_st *st);

/* Number of tensors (0 for NULL). */
size_t attn_st_count(const attn_st *st);

/* Tensor i in header order, or NULL when i >= count. */
const attn_st_tensor *attn_st_at(const attn_st *st, size_t i);

/* The tensor with exactly this name (binary search), or NULL. */
const attn_st_tensor *attn_st_find(const attn_st *st, const char *name);

/*
 * Looks name up as given, then with each task-model prefix ("bert.",
 * "transformer.", "model.", "vit.") added, then, when name starts with one
 * of those prefixes, without it: checkpoints of BertForX carry "bert.",
 * GPT2LMHeadModel "transformer.", BartForX "model.", ViTForX "vit.".
 * Returns the first match, or NULL.
 */
const attn_st_tensor *attn_st_find_any_prefix(const attn_st *st, const char *name);

/* The "__metadata__" value for key, or NULL when absent. */
const char *attn_st_metadata(const attn_st *st, const char *key);

/*
 * Converts the tensor to float32 into out [n_out] (the first n_elements
 * floats are written). F16 and BF16 convert exactly (attn_f16_to_f32).
 * Returns ATTN_ERR_INVALID for NULL t or out (with n_elements > 0),
 * ATTN_ERR_SHAPE when n_out < n_elements, ATTN_ERR_UNSUPPORTED for I64;
 * nothing is written then.
 */
attn_status attn_st_to_f32(const attn_st_tensor *t, float *out, size_t n_out);

/*
 * Finds name (attn_st_find_any_prefix), checks its shape equals
 * shape [n_dims], and converts it into out [product of shape].
 * Errors, with err naming file and tensor: ATTN_ERR_FORMAT when the tensor is
 * missing, ATTN_ERR_SHAPE when its shape differs, attn_st_to_f32's otherwise
 * (ATTN_ERR_INVALID for NULL st, name or out, or n_dims > ATTN_ST_MAX_DIMS).
 */
attn_status attn_st_read_f32(const attn_st *st, const char *name, size_t n_dims,
                             const size_t *shape, float *out, char *err, size_t err_size);

/* ------------------------------------------------------------ tokenizers */

/*
 * The result of encoding a text (or a pair of texts): token i has the id
 * ids[i], the vocabulary string tokens[i], the segment type_ids[i] (0 for the
 * first text, 1 for the second) and the byte range offsets[2i] .. offsets[2i+1]
 * (end exclusive) in its segment's text; tokens that the template added
 * ([CLS], [SEP]) have special[i] = 1 and offsets 0, 0. Offsets are the bytes
 * a token came from: a WordPiece token covers whole source characters (an
 * accented letter stripped to "e" covers its 2 bytes), a BPE token its bytes,
 * a leading space included (HuggingFace's trim_offsets is not applied).
 * All arrays belong to the encoding (one allocation) and live until
 * attn_encoding_free.
 */
typedef struct attn_encoding {
    size_t n_tokens;
    int32_t *ids;        /* [n_tokens] */
    int32_t *type_ids;   /* [n_tokens] */
    const char **tokens; /* [n_tokens] NUL-terminated */
    size_t *offsets;     /* [n_tokens][2] */
    uint8_t *special;    /* [n_tokens] 1 = added by the template */
} attn_encoding;

/* Frees an encoding. NULL is a no-op. */
void attn_encoding_free(attn_encoding *enc);

typedef enum attn_tokenizer_kind {
    ATTN_TOKENIZER_WORDPIECE = 0, /* BERT: vocab.txt */
    ATTN_TOKENIZER_BPE = 1,       /* GPT-2: byte-level BPE, vocab.json + merges.txt */
} attn_tokenizer_kind;

typedef enum attn_special {
    ATTN_SPECIAL_UNK = 0,
    ATTN_SPECIAL_CLS = 1,
    ATTN_SPECIAL_SEP = 2,
    ATTN_SPECIAL_PAD = 3,
    ATTN_SPECIAL_MASK = 4,
    ATTN_SPECIAL_BOS = 5,
    ATTN_SPECIAL_EOS = 6,
} attn_special;

/*
 * WordPiece options, as HuggingFace's BertTokenizer takes them. Start from
 * attn_wordpiece_config_default() (bert-base-uncased: lowercase, strip accents
 * as lowercase says, split CJK characters, 100 characters per word,
 * "[UNK]" "[CLS]" "[SEP]" "[PAD]" "[MASK]").
 */
typedef struct attn_wordpiece_config {
    bool lowercase;                  /* do_lower_case */
    int strip_accents;               /* -1: as lowercase (HF None), 0: no, 1: yes */
    bool tokenize_chinese_chars;     /* surround CJK ideographs with spaces */
    size_t max_input_chars_per_word; /* longer words become unk (0: 100) */
    const char *unk_token, *cls_token, *sep_token, *pad_token, *mask_token; /* NULL: default */
} attn_wordpiece_config;

attn_wordpiece_config attn_wordpiece_config_default(void);

/* Byte-level BPE options (GPT2Tokenizer defaults when zero-initialised or NULL). */
typedef struct attn_bpe_config {
    bool add_prefix_space; /* encode " " + text (RoBERTa-style option; GPT-2: false) */
    /* Strings matched literally in the text before anything else (HuggingFace's
     * added special tokens); those absent from the vocabulary are ignored.
     * NULL: {"<|endoftext|>"}. */
    const char *const *special_tokens;
    size_t n_special_tokens;
} attn_bpe_config;

typedef struct attn_tokenizer attn_tokenizer;

/*
 * WordPiece from vocab.txt: one token per line, its id the line number from 0
 * ("\n", "\r\n" or "\r" end lines; a repeated token keeps its last line, as
 * HuggingFace's load_vocab). cfg NULL = attn_wordpiece_config_default().
 * The unk, cls and sep tokens must be in the vocabulary (ATTN_ERR_FORMAT
 * otherwise); pad and mask may be missing (their ids are then -1).
 * Errors: ATTN_ERR_IO, ATTN_ERR_FORMAT (invalid UTF-8, a missing special
 * token, more than INT32_MAX lines), ATTN_ERR_NOMEM, ATTN_ERR_INVALID (NULL
 * path or out, max_input_chars_per_word above 1e6, a half allocator).
 * *out is NULL on error.
 */
attn_status attn_tokenizer_wordpiece_create(const char *vocab_path,
                                            const attn_wordpiece_config *cfg,
                                            const attn_allocator *alloc, attn_tokenizer **out,
                                            char *err, size_t err_size);

/* Same from vocab.txt's bytes (vocab [len]); name is used in messages. */
attn_status attn_tokenizer_wordpiece_create_from_buffer(
    const char *name, const char *vocab, size_t len, const attn_wordpiece_config *cfg,
    const attn_allocator *alloc, attn_tokenizer **out, char *err, size_t err_size);

/*
 * Byte-level BPE from vocab.json (an object token -> id, ids dense enough:
 * every id < 2 * count + 256) and merges.txt ("a b" per line in rank order;
 * a first line starting "#version" and empty lines skipped). All 256
 * byte symbols of GPT-2's bytes_to_unicode must be in the vocabulary, and both
 * parts and the result of every merge (ATTN_ERR_FORMAT naming the merges line
 * otherwise, as HuggingFace tokenizers refuses them). A repeated merge keeps
 * its last rank. cfg NULL: GPT-2 defaults. Errors as for WordPiece.
 */
attn_status attn_tokenizer_bpe_create(const char *vocab_json_path, const char *merges_path,
                                      const attn_bpe_config *cfg, const attn_allocator *alloc,
                                      attn_tokenizer **out, char *err, size_t err_size);

/* Same from the files' bytes; the names are used in messages. */
attn_status attn_tokenizer_bpe_create_from_buffers(
    const char *vocab_name, const char *vocab_json, size_t vocab_len, const char *merges_name,
    const char *merges, size_t merges_len, const attn_bpe_config *cfg, const attn_allocator *alloc,
    attn_tokenizer **out, char *err, size_t err_size);

/* Frees a tokenizer. NULL is a no-op. */
void attn_tokenizer_free(attn_tokenizer *tok);

attn_tokenizer_kind attn_tokenizer_get_kind(const attn_tokenizer *tok);

/* Largest id + 1 (0 for NULL). */
size_t attn_tokenizer_vocab_size(const attn_tokenizer *tok);

/* The string of id (the last vocabulary entry with that id), or NULL when no
 * entry has it. */
const char *attn_tokenizer_id_to_token(const attn_tokenizer *tok, int32_t id);

/* The id of token (exact bytes), or -1 when it is not in the vocabulary. */
int32_t attn_tokenizer_token_to_id(const attn_tokenizer *tok, const char *token);

/*
 * The id of a special token, or -1 when the tokenizer has none. WordPiece:
 * unk, cls, sep, pad, mask from its config (bos = cls, eos = sep). BPE:
 * "<|endoftext|>" is unk, bos and eos when in the vocabulary (GPT-2);
 * cls, sep, pad, mask are -1.
 */
int32_t attn_tokenizer_special_id(const attn_tokenizer *tok, attn_special which);

/*
 * Encodes text [len] (UTF-8), and text_b [len_b] as a second segment when
 * text_b is not NULL, exactly as HuggingFace's BertTokenizer / GPT2Tokenizer
 * (transformers 5) do. Special tokens written in the text ("[MASK]",
 * "<|endoftext|>") are matched first, leftmost-longest, and kept whole.
 *
 * WordPiece: clean (drop U+0000, U+FFFD and control/format/unassigned
 * characters; whitespace becomes a space), space around CJK ideographs, split
 * on whitespace, lower-case and strip accents (NFD without Mn marks) when
 * configured, split off punctuation (ASCII 33-47, 58-64, 91-96, 123-126 and
 * Unicode P*), then greedy longest-match-first WordPiece with "##"
 * continuations; a word longer than max_input_chars_per_word, or one that
 * cannot be matched, becomes the unk token. With add_special_tokens:
 * [CLS] a [SEP] or [CLS] a [SEP] b [SEP], type ids 0 up to the first [SEP]
 * and 1 after it.
 *
 * BPE: GPT-2's pre-tokenisation regex
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * (implemented by hand; \p{L}, \p{N} from Unicode 14 general categories,
 * \s the White_Space property), bytes mapped by bytes_to_unicode, merges
 * applied lowest rank first. No template: add_special_tokens adds nothing;
 * a pair is the two encodings back to back, type ids 0 then 1.
 *
 * Limits: the Unicode data is Unicode 14 (general categories, simple
 * lower case, canonical decompositions; code points assigned later count as
 * unassigned, so WordPiece drops them). Lower-casing is per character, as in
 * the tokenizers library (one-to-one but U+0130 -> i + U+0307; capital sigma
 * always gives medial sigma, where transformers 4's Python-only tokenizer
 * gave a final one). Accent stripping decomposes each character on its own
 * (no canonical reordering, which only moves the marks it removes), and no
 * NFC is applied first (the Python-only tokenizer did).
 *
 * On success *out is the encoding (attn_encoding_free). Errors:
 * ATTN_ERR_INVALID for NULL tok, out or text (with len > 0), invalid UTF-8
 * (overlong forms, surrogates, code points above U+10FFFF, truncated
 * sequences: err gives the byte offset) or a text of 2^31 bytes or more;
 * ATTN_ERR_NOMEM. *out is NULL on error. Memory is O(len), freed before return.
 */
attn_status attn_tokenizer_encode(const attn_tokenizer *tok, const char *text, size_t len,
                                  const char *text_b, size_t len_b, bool add_special_tokens,
                                  attn_encoding **out, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
