/* h_models.h - running a pretrained model for a request: the part /v1/models and /v2 share. */
#ifndef SRV_H_MODELS_H
#define SRV_H_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn_pretrained.h"
#include "json.h"
#include "models.h"
#include "srv.h"

/* Results a request may ask for, by name (hm_out_names). */
typedef enum hm_out {
    HM_ATTENTIONS = 0,   /* [Ls][Hs][n][n] (not BART) */
    HM_LAST_HIDDEN,      /* last_hidden_state [n][E] (BART: decoder, [nd][E]) */
    HM_HIDDEN,           /* hidden_states [L + 1][n][E] (not BART) */
    HM_Q,                /* q [Ls][Hs][n][hd] */
    HM_K,                /* k */
    HM_V,                /* v */
    HM_POOLER,           /* pooler_output [E] (BERT with a pooler) */
    HM_ENC_ATTENTIONS,   /* encoder_attentions [Ls][Hs][n][n] (BART) */
    HM_DEC_ATTENTIONS,   /* decoder_attentions [Ls][Hs][nd][nd] */
    HM_CROSS_ATTENTIONS, /* cross_attentions [Ls][Hs][nd][n] */
    HM_ENC_LAST_HIDDEN,  /* encoder_last_hidden_state [n][E] */
    HM_ENC_HIDDEN,       /* encoder_hidden_states [L + 1][n][E] */
    HM_DEC_HIDDEN,       /* decoder_hidden_states [Ld + 1][nd][E] */
    HM_N_OUT
} hm_out;

extern const char *const hm_out_names[HM_N_OUT];

/* One request to a model, whatever protocol it came in. Everything is malloc'd
 * and freed by hm_req_free. */
typedef struct hm_req {
    const char *name; /* the model's name (the route's {name}) */
    const attn_pretrained *m;
    const attn_pretrained_info *info;
    int32_t *ids;     /* [n] (not ViT) */
    size_t n;         /* sequence length (ViT: patches + 1) */
    int32_t *types;   /* [n] BERT token_type_ids, or NULL */
    uint8_t *mask;    /* [n] attention_mask (1 = token), or NULL */
    int32_t *dec_ids; /* [n_dec] BART decoder_input_ids, or NULL (input shifted right) */
    size_t n_dec;
    float *pixels;     /* ViT [C][S][S] */
    char **tokens;     /* [n] labels */
    char **dec_tokens; /* [n_dec] BART labels */
    size_t *masked;    /* [n_masked] positions mask_tokens replaced */
    size_t n_masked;
    size_t *layers; /* selection, or NULL: all */
    size_t n_layers;
    size_t *heads; /* selection, or NULL: all */
    size_t n_heads;
    unsigned want; /* 1 << hm_out */
} hm_req;

/* The results of hm_run: buf[i] [count[i]] of shape [rank[i]] when asked for. */
typedef struct hm_res {
    float *buf[HM_N_OUT];
    size_t shape[HM_N_OUT][4];
    size_t rank[HM_N_OUT];
    size_t count[HM_N_OUT];
    size_t n_layers, n_heads; /* returned per stack (Ls, Hs; BART: the encoder's) */
    size_t dec_layers, dec_heads;
    double engine_ms;
} hm_res;

void hm_req_free(hm_req *r);
void hm_res_free(hm_res *o);

/* The loaded model for the route's {name}; false with 404 (unknown) or 503
 * (still loading). */
bool hm_lookup(srv_app *app, const char *name, hm_req *r, srv_err *e);

/* Outputs this model has, and those returned by default (bit masks of hm_out). */
unsigned hm_allowed(const attn_pretrained_info *info);
unsigned hm_default(const attn_pretrained_info *info);

/* Names of the inputs the model takes into out (for /v1/models); returns the count. */
#define HM_MAX_INPUTS 8
size_t hm_inputs(const attn_pretrained *m, const char *out[HM_MAX_INPUTS]);

/* The id of the model's mask token, -1 when it has none. */
int32_t hm_mask_id(const attn_pretrained *m);

/*
 * Tokenizes text (and text_pair, BERT only) with the model's template into
 * r->ids, r->tokens (and r->types for a pair). field names the request member
 * in errors (400: no tokenizer, invalid UTF-8, longer than max_position_embeddings).
 */
bool hm_encode_text(hm_req *r, const char *text, size_t len, const char *pair, size_t pair_len,
                    const char *field, srv_err *e);

/* Labels for ids given directly (tokenizer strings, else the ids); and for ViT patches. */
bool hm_label_ids(hm_req *r, srv_err *e);

/* Checks ids [n] against the vocabulary and max_position_embeddings; field
 * names the member ("/input_ids"), errors point at the bad element. */
bool hm_check_ids(const hm_req *r, const int32_t *ids, size_t n, const char *field, srv_err *e);

/* mask_tokens: positions [count] replaced by the model's mask token (ids and labels). */
bool hm_apply_mask(hm_req *r, const long long *pos, size_t count, const char *field, srv_err *e);

/* segment_b_start: token_type_ids 0 before k, 1 from k (BERT). */
bool hm_segment_b(hm_req *r, long long k, const char *field, srv_err *e);

/* Checks the selection, the limits (413: --max-seq-len, --max-heads,
 * --max-layers, --max-elements), allocates, runs the model. */
bool hm_run(srv_app *app, hm_req *r, hm_res *o, srv_err *e);

/* {name, architecture, sizes, inputs, outputs, status} of one model. */
void hm_describe(srv_jw *w, const char *name, const attn_pretrained *m);

#endif /* SRV_H_MODELS_H */
