/* model_arch.h - the loaded form of a pretrained model, shared by its loader and its forward pass.
 */
#ifndef MODEL_ARCH_H
#define MODEL_ARCH_H

#include "attn_pretrained.h"
#include "model_internal.h"

/* One transformer stack as attn_tf_* runs it, one layer per call (so each
 * layer's attention can be kept or dropped, and GPT-2 can scale by layer). */
typedef struct attn__arch_stack {
    attn_tf_layer *layers; /* [n_layers], pointing into the model's store */
    size_t n_layers;
    attn_tf_config cfg; /* num_layers 1; masks and scale are set per call */
} attn__arch_stack;

struct attn_pretrained {
    attn_allocator al;
    attn_pretrained_info info;
    attn_tokenizer *tok;        /* NULL: no tokenizer files */
    float *store;               /* every weight, float32, one allocation */
    attn_tf_layer *layer_store; /* encoder layers, then decoder layers */

    /* embeddings */
    const float *tok_emb;    /* [V][E] word_embeddings / wte / shared */
    const float *pos_emb;    /* [P + pos_offset][E] (ViT: [patches + 1][E]) */
    const float *type_emb;   /* [T][E] BERT */
    attn_tf_affine emb_norm; /* BERT embeddings.LayerNorm, BART encoder.layernorm_embedding */
    size_t pos_offset;       /* BART: 2 (learned positions start at row 2) */
    float embed_scale;       /* BART: sqrt(d_model) with scale_embedding, else 1 */
    const float *patch_w;    /* ViT [E][C * P * P] */
    const float *patch_b;    /* ViT [E] */
    const float *cls_token;  /* ViT [E] */

    attn__arch_stack enc;      /* BERT, ViT, BART encoder; GPT-2's blocks */
    attn_tf_affine final_norm; /* GPT-2 ln_f, ViT layernorm; weight NULL: none */
    attn_tf_affine pooler;     /* BERT pooler.dense [E][E], [E]; weight NULL: none */

    /* BART decoder */
    attn__arch_stack dec;
    const float *dec_pos_emb; /* [P + 2][E] */
    attn_tf_affine dec_emb_norm;

    /* GPT-2 attention scale: 1/sqrt(hd) when scale_attn_weights, divided by
     * (layer + 1) when scale_attn_by_inverse_layer_idx. */
    bool scale_attn_weights;
    bool scale_by_layer;
    bool qkv_bias; /* ViT: query/key/value Linears have biases */
};

#endif /* MODEL_ARCH_H */
