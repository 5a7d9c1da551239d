/* attn_pretrained.h - pretrained HuggingFace models (BERT, GPT-2, ViT, BART): load, run, attend. */
#ifndef ATTN_PRETRAINED_H
#define ATTN_PRETRAINED_H

/*
 * Conventions: those of attn.h and attn_model.h (status codes, caller-owned
 * buffers, create/free pairs with free(NULL) a no-op, shapes outermost first,
 * (err, err_size) messages naming the file and the item at fault).
 *
 * A model is a HuggingFace-layout folder: config.json (model_type "bert",
 * "gpt2", "vit" or "bart"; every size is read from it, so any size works),
 * model.safetensors (names with or without the task-model prefix "bert.",
 * "transformer.", "model.", "vit."), and the tokenizer files present
 * (vocab.txt: WordPiece; vocab.json + merges.txt: byte-level BPE).
 * Loading converts every weight to float32 once (GPT-2's Conv1D weights are
 * transposed to the Linear layout [out][in]; separate q/k/v projections are
 * stacked into the in_proj layout of attn_tf_layer), so a forward pass reads
 * only float32 arrays. A loaded model is immutable: any number of threads may
 * run it at once, each with its own workspace.
 *
 * Results match HuggingFace transformers' eager attention in float32:
 *   bert: word + position + token_type embeddings, LayerNorm, post-norm layers;
 *   gpt2: wte + wpe, pre-norm blocks, causal, final ln_f;
 *   vit:  Conv2d patch embedding, [CLS], position embeddings, pre-norm layers,
 *         final layernorm;
 *   bart: shared embeddings x embed_scale + learned positions (offset 2),
 *         layernorm_embedding, post-norm encoder, post-norm decoder with causal
 *         self-attention and cross-attention over the encoder's output.
 */

#include "attn.h"
#include "attn_model.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum attn_arch {
    ATTN_ARCH_BERT = 0, /* BertModel: encoder, WordPiece */
    ATTN_ARCH_GPT2 = 1, /* GPT2Model: causal decoder, byte-level BPE */
    ATTN_ARCH_VIT = 2,  /* ViTModel: image encoder, pixel_values */
    ATTN_ARCH_BART = 3, /* BartModel: encoder-decoder */
} attn_arch;

/* The config.json model_type of an architecture ("bert", ...), or NULL if unknown. */
const char *attn_arch_name(attn_arch arch);

/* What a loaded model is, read from its config.json. For BART, the plain
 * fields describe the encoder and the decoder_* fields the decoder; other
 * architectures have decoder_* 0. */
typedef struct attn_pretrained_info {
    attn_arch arch;
    size_t hidden_size;       /* E */
    size_t num_layers;        /* L (BART: encoder layers) */
    size_t num_heads;         /* H (BART: encoder heads); head_dim = E / H */
    size_t intermediate_size; /* F (BART: encoder_ffn_dim) */
    size_t decoder_layers;
    size_t decoder_heads;
    size_t decoder_intermediate_size;
    size_t max_positions;                        /* longest sequence (ViT: patches + 1) */
    size_t vocab_size;                           /* 0 for ViT */
    size_t type_vocab_size;                      /* BERT segments (token_type_ids < this) */
    size_t image_size, patch_size, num_channels; /* ViT */
    float layer_norm_eps;
    attn_activation activation;
    bool causal;                    /* GPT-2: self-attention sees earlier tokens only */
    bool has_pooler;                /* BERT checkpoint with pooler.dense */
    int32_t pad_token_id;           /* -1 when the config has none */
    int32_t decoder_start_token_id; /* BART, else -1 */
} attn_pretrained_info;

typedef struct attn_pretrained attn_pretrained;

/*
 * Loads the model in folder dir (see the top of this header). Every tensor
 * the architecture needs must be there with the shape the config implies;
 * config values must be consistent (heads dividing the hidden size, sizes
 * > 0, a supported activation); a tokenizer's vocabulary must fit the
 * model's vocab_size. On success *out is the model (attn_pretrained_free).
 * On error *out is NULL and err names the file and the key or tensor:
 * ATTN_ERR_IO (a file cannot be read), ATTN_ERR_FORMAT (malformed file,
 * missing config key or tensor), ATTN_ERR_SHAPE (a tensor's shape differs
 * from the config), ATTN_ERR_UNSUPPORTED (a model_type, activation or option
 * this library does not run), ATTN_ERR_INVALID (NULL dir or out, half
 * allocator, an inconsistent config), ATTN_ERR_OVERFLOW, ATTN_ERR_NOMEM.
 * config.json and tokenizer JSON files are parsed with cJSON (its hooks).
 */
attn_status attn_pretrained_load(const char *dir, const attn_allocator *alloc,
                                 attn_pretrained **out, char *err, size_t err_size);

/* Frees the model and its tokenizer. NULL is a no-op. */
void attn_pretrained_free(attn_pretrained *m);

/* The model's description (valid while the model lives); NULL for NULL. */
const attn_pretrained_info *attn_pretrained_get_info(const attn_pretrained *m);

/*
 * The model's tokenizer, NULL when the folder has none. WordPiece takes
 * do_lower_case / strip_accents / tokenize_chinese_chars from
 * tokenizer_config.json, else from tokenizer.json's normalizer, else
 * BertTokenizer's defaults (lower-cased). BPE takes add_prefix_space from
 * tokenizer_config.json (default false) and matches "<|endoftext|>", "<s>",
 * "</s>", "<pad>", "<unk>", "<mask>" literally when in the vocabulary.
 */
const attn_tokenizer *attn_pretrained_tokenizer(const attn_pretrained *m);

/* Inputs of one sequence, as the HuggingFace model's forward takes them. */
typedef struct attn_pretrained_inputs {
    const int32_t *input_ids;      /* [n] each < vocab_size (BERT, GPT-2, BART encoder) */
    size_t n;                      /* 1 .. max_positions (ViT: ignored) */
    const int32_t *token_type_ids; /* [n] each < type_vocab_size (BERT), or NULL: zeros */
    const uint8_t *attention_mask; /* [n] 1 = token, 0 = padding (not attended to), or NULL */
    /* BART: decoder input [n_dec], or NULL: input_ids shifted right with
     * decoder_start_token_id first (BartModel's default), n_dec = n. */
    const int32_t *decoder_input_ids;
    size_t n_dec;
    /* ViT: pixel_values [num_channels][image_size][image_size], already
     * normalised; height and width must equal image_size (as HuggingFace
     * without interpolate_pos_encoding). */
    const float *pixel_values;
    size_t height, width;
} attn_pretrained_inputs;

/* Layers and heads whose attentions (and q/k/v) are returned; NULL lists mean
 * all. Indices must be in range for every stack returned (BART: encoder and
 * decoder), may not repeat, and come back in the order given. */
typedef struct attn_pretrained_select {
    const size_t *layers;
    size_t n_layers;
    const size_t *heads;
    size_t n_heads;
} attn_pretrained_select;

/*
 * Results; any pointer may be NULL (not computed). With Ls, Hs the selected
 * layer and head counts, n the sequence length (ViT: patches + 1), nd the
 * decoder length, E the hidden size, hd = E / H:
 */
typedef struct attn_pretrained_outputs {
    float *attentions;                /* [Ls][Hs][n][n] self-attention (BART: the encoder's) */
    float *decoder_attentions;        /* [Ls][Hs][nd][nd] BART decoder self-attention */
    float *cross_attentions;          /* [Ls][Hs][nd][n] BART decoder over the encoder */
    float *last_hidden_state;         /* [n][E] (BART: the decoder's, [nd][E]) */
    float *encoder_last_hidden_state; /* [n][E] BART */
    /* [L + 1][n][E]: the embeddings, then every layer's output, as HuggingFace's
     * hidden_states (GPT-2's last entry is after ln_f, ViT's before its final
     * layernorm, as there). BART: the encoder's. */
    float *hidden_states;
    float *decoder_hidden_states; /* [Ld + 1][nd][E] BART */
    float *pooler_output;         /* [E] BERT with a pooler: tanh(dense([CLS])) */
    float *q;                     /* [Ls][Hs][n][hd] self-attention queries (BART: encoder) */
    float *k;                     /* [Ls][Hs][n][hd] keys */
    float *v;                     /* [Ls][Hs][n][hd] values */
} attn_pretrained_outputs;

/* Sequence lengths of a call: *n (encoder / main stack) and *n_dec (BART
 * decoder, else 0), as attn_pretrained_forward will use them. Returns
 * ATTN_ERR_INVALID for NULL arguments. */
attn_status attn_pretrained_lengths(const attn_pretrained *m, const attn_pretrained_inputs *in,
                                    size_t *n, size_t *n_dec);

/*
 * Runs the model on one sequence. Scratch comes from ws (one per thread).
 * A query whose keys are all padding (attention_mask) gets weights 0, where
 * HuggingFace's additive mask would spread its weight evenly.
 * Returns ATTN_ERR_INVALID (err says which input) for NULL arguments, a
 * sequence empty or longer than max_positions, an id out of range, inputs
 * the architecture does not take or lacks (pixel_values for ViT, ids for
 * the others), a wrong image size, bad layer or head selection, or an
 * output the model has not (pooler_output, decoder outputs of an encoder);
 * ATTN_ERR_OVERFLOW for sizes beyond size_t; ATTN_ERR_NOMEM when scratch
 * cannot be had. Arguments are checked before anything is written.
 */
attn_status attn_pretrained_forward(const attn_pretrained *m, attn_ws *ws,
                                    const attn_pretrained_inputs *in,
                                    const attn_pretrained_select *sel, attn_pretrained_outputs *out,
                                    char *err, size_t err_size);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_PRETRAINED_H */
