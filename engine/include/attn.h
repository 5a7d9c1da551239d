/* attn.h - libattn, the numerics of explore-attention: attention on OpenBLAS. */
#ifndef ATTN_H
#define ATTN_H

/*
 * Conventions, stated once and followed by every function below.
 *
 * Tensors are float32, row-major, contiguous; shapes are given outermost first
 * in a comment on every argument: q [n][dq] is n rows of dq floats.
 * Weight matrices use torch.nn.Linear layout [out][in], applied as y = x*W^T + b.
 *
 * Ownership: the caller owns every pointer it passes in, inputs and output
 * buffers alike; the engine never keeps a pointer past the call that received
 * it and never frees what it did not allocate. Objects the engine allocates
 * come in pairs attn_X_create()/attn_X_free(); attn_X_free(NULL) is a no-op.
 *
 * Errors: every function that can fail returns attn_status (0 = ok, negative
 * = error). On error the caller's output buffers may hold partial results but
 * nothing else the caller owns has changed; no function aborts on bad input
 * or on out-of-memory.
 *
 * Threads: no globals. A workspace (attn_ws) belongs to one thread at a time;
 * give each worker thread its own. Scratch memory comes from the workspace,
 * which keeps its largest block between calls, so steady-state requests do
 * not allocate.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

/* Append-only: values are part of the ABI and of error messages. */
typedef enum attn_status {
    ATTN_OK = 0,
    ATTN_ERR_NOMEM = -1,       /* an allocation failed */
    ATTN_ERR_INVALID = -2,     /* an argument is out of range or inconsistent */
    ATTN_ERR_SHAPE = -3,       /* tensor dimensions do not agree */
    ATTN_ERR_UNSUPPORTED = -4, /* a valid combination this engine does not do */
    ATTN_ERR_OVERFLOW = -5,    /* a size computation would overflow size_t */
    ATTN_ERR_IO = -6,          /* a file could not be opened, read or mapped (attn_model.h) */
    ATTN_ERR_FORMAT = -7,      /* a file's contents are malformed (attn_model.h) */
} attn_status;

/* Returns a static, human-readable string for s ("unknown status" if unknown). */
const char *attn_status_str(attn_status s);

/* Library version string, e.g. "0.1.0". */
const char *attn_version(void);

/* BLAS configuration as reported by the library, e.g. "OpenBLAS 0.3.21 ...".
 * Returns a static string. */
const char *attn_blas_info(void);

/* Number of threads the BLAS library uses for one call. */
int attn_blas_threads(void);

/* Sets the BLAS thread count for every later call (process-wide: a BLAS
 * setting, not engine state). Values < 1 are treated as 1. */
void attn_blas_set_threads(int n_threads);

/* ------------------------------------------------------------- workspace */

/* Allocation hooks: every allocation the engine makes goes through these, so
 * tests can fail the Nth allocation. Both may be NULL (malloc/free). */
typedef struct attn_allocator {
    void *(*alloc)(size_t n_bytes, void *user); /* NULL on failure */
    void (*free)(void *ptr, void *user);        /* ptr may be NULL */
    void *user;
} attn_allocator;

typedef struct attn_ws attn_ws;

/* Creates a workspace. alloc may be NULL (malloc/free); it is copied.
 * On error, NULL is returned. */
attn_ws *attn_ws_create(const attn_allocator *alloc);

/* Frees the workspace and its memory. NULL is a no-op. */
void attn_ws_free(attn_ws *ws);

/* Bytes currently reserved by the workspace (for metrics and tests). */
size_t attn_ws_reserved(const attn_ws *ws);

/* Gives back reserved memory above keep_bytes (after an unusually large request). */
void attn_ws_trim(attn_ws *ws, size_t keep_bytes);

/* ----------------------------------------------------------------- masks */

typedef enum attn_causal {
    ATTN_CAUSAL_NONE = 0,
    ATTN_CAUSAL_TOP_LEFT = 1,     /* query i sees keys j <= i (torch SDPA is_causal) */
    ATTN_CAUSAL_BOTTOM_RIGHT = 2, /* query i sees keys j <= i + (m - n) (FlashAttention >= 2.1) */
} attn_causal;

/*
 * Sparse/local/global attention pattern: query i may attend key j when ANY
 * part that is set allows (i, j) (the union); the result is then combined
 * with every mask (a pair must also pass causal, mask and key_padding).
 * i and j are plain indices, 0 <= i < n, 0 <= j < m_masked, compared as they
 * are also when n != m (no re-alignment; causal alignment is separate).
 * The pattern covers the first m_masked key columns; appended columns (see
 * attn_masks) stay allowed. Zero-initialise, then set the parts wanted; a
 * pattern with no part set is ATTN_ERR_INVALID. A NULL pattern means dense.
 *
 *   has_window, window_left, window_right, dilation:
 *       i - L*d <= j <= i + R*d and d divides (i - j), with L = window_left,
 *       R = window_right, d = dilation (0 means 1). A symmetric window w
 *       (|i - j| <= w) is L = R = w; FlashAttention's window_size (l, r)
 *       is L = l, R = r; -1 = unbounded on that side (both -1: all pairs).
 *       Values < -1 are invalid; dilation < 0 is invalid.
 *   stride s (0 = unset): s divides (i - j), either sign (Sparse Transformer
 *       strided; (i - j) mod s == 0 with a non-negative mod). s < 0 invalid.
 *   global_tokens [n_global]: query g sees every key (if g < n) and every
 *       query sees key g (if g < m_masked). Each index must be < max(n, m_masked).
 *   block_size b (0 = unset): block-diagonal, i / b == j / b. b < 0 invalid.
 *   random r (0 = unset), seed: BigBird-style random keys. For query i the
 *       engine draws r keys with replacement, j_t = attn_rng_next(&st) % m_masked
 *       for t = 0..r-1 with st = seed ^ ((i + 1) * 0x9E3779B97F4A7C15), so a
 *       row gets at most r distinct extra keys (fewer on collisions), the same
 *       for a given (seed, i, m_masked). r < 0 invalid.
 */
typedef struct attn_pattern {
    bool has_window;
    int64_t window_left;         /* keys before i (-1 unbounded) */
    int64_t window_right;        /* keys after i (-1 unbounded) */
    int64_t dilation;            /* 0 or 1: contiguous window */
    int64_t stride;              /* 0: unset */
    const size_t *global_tokens; /* [n_global] or NULL */
    size_t n_global;
    int64_t block_size; /* 0: unset */
    int64_t random;     /* 0: unset */
    uint64_t seed;
} attn_pattern;

/* Checks p for an [n][m] score matrix (m = the masked key columns):
 * ATTN_ERR_INVALID for NULL, no part set, window/dilation/stride/block/random
 * out of range (see attn_pattern), a global token >= max(n, m), or
 * global_tokens NULL with n_global > 0. */
attn_status attn_pattern_check(const attn_pattern *p, size_t n, size_t m);

/* Fills allowed [n][m] (1 = may attend) with the pattern combined with the
 * causal mode (pass ATTN_CAUSAL_NONE for the pattern alone). Other masks are
 * the caller's to apply. Returns attn_pattern_check's errors, or
 * ATTN_ERR_INVALID for a NULL allowed with n * m > 0 or an unknown causal. */
attn_status attn_pattern_allowed(const attn_pattern *p, attn_causal causal, size_t n, size_t m,
                                 uint8_t *allowed);

/*
 * Everything that removes or biases (query, key) pairs of one [n][m] score
 * matrix. All given masks combine: a key must pass every one.
 * Bias and masks describe the first m_masked key columns; key columns at or
 * past m_masked (the bias_k / zero-attention columns nn.MultiheadAttention
 * appends) are always allowed and unbiased. m_masked == 0 means "all m".
 */
typedef struct attn_masks {
    attn_causal causal;
    const uint8_t *mask;        /* [n][m_masked] 1 = may attend (SDPA attn_mask), or NULL */
    const uint8_t *key_padding; /* [m_masked] 1 = padding, ignored (MHA key_padding_mask), or NULL */
    const float *bias;          /* [n][m_masked] added to the scaled (and capped) scores, or NULL */
    size_t bias_head_stride;    /* multi-head only: head h adds bias + h * stride
                                   (n * m_masked for [H][n][m] bias, 0 to share one) */
    size_t m_masked;
    const attn_pattern *pattern; /* NULL: dense */
    /* Relative-position bias (ALiBi, T5 buckets): pair (i, j) of head h adds
     * rel_bias[h * rel_bias_head_stride + (j - i) + (n - 1)], a vector of
     * n + m_masked - 1 per head (distances -(n-1) .. m_masked-1), or NULL.
     * O(n + m) memory where an [n][m] bias would be O(n m). */
    const float *rel_bias;
    size_t rel_bias_head_stride;
} attn_masks;

/* -------------------------------------------------- positional information */

typedef enum attn_rope_style {
    ATTN_ROPE_HALF = 0,        /* pairs (i, i + d/2): HuggingFace rotate_half (Llama, GPT-NeoX) */
    ATTN_ROPE_INTERLEAVED = 1, /* pairs (2i, 2i + 1): GPT-J, Meta's original LLaMA */
} attn_rope_style;

/*
 * Sinusoidal table (Vaswani et al. 2017): pe [length][dim] for positions
 * offset .. offset + length - 1, pe[p][2i] = sin(p / base^(2i / dim)),
 * pe[p][2i + 1] = cos(p / base^(2i / dim)) (an odd dim ends with a sin
 * column); base is 10000 in the paper. Computed in double, stored as float.
 * Returns ATTN_ERR_INVALID for dim 0, base <= 1 or NaN, or pe NULL with
 * length > 0.
 */
attn_status attn_pos_sinusoidal(size_t length, size_t dim, size_t offset, double base, float *pe);

/*
 * ALiBi slopes (Press et al. 2022) for num_heads heads, as BLOOM's
 * build_alibi_tensor computes them: for the largest power of two P <= H,
 * slope_h = 2^(-8 (h + 1) / P); the remaining H - P heads take the odd
 * powers of 2^(-4 / P) (interleaved slopes of 2P heads). slopes [H].
 * Returns ATTN_ERR_INVALID for 0 heads or slopes NULL.
 */
attn_status attn_alibi_slopes(size_t num_heads, float *slopes);

/*
 * T5's relative position bucket (HuggingFace T5Attention._relative_position_bucket)
 * for rel = key_pos - query_pos: exact buckets for small distances, then
 * logarithmic up to max_distance; bidirectional halves the buckets between
 * the two signs. Returns a bucket in [0, num_buckets), or -1 when
 * num_buckets < 2 (4 bidirectional) or max_distance <= the exact range.
 */
int64_t attn_t5_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                       int64_t max_distance);

/*
 * Rotary position embedding (Su et al. 2021) in place: row r of x [n][d]
 * (row stride ldx) is at position pos0 + r and its pair (a, b) (see
 * attn_rope_style) at frequency k = 0 .. d/2 - 1 turns by angle
 * pos * base^(-2k / d): (a, b) -> (a cos - b sin, b cos + a sin).
 * Returns ATTN_ERR_INVALID for an odd or zero d, ldx < d, base <= 1 or an
 * unknown style, or x NULL with n > 0.
 */
attn_status attn_rope_apply(attn_rope_style style, double base, size_t n, size_t d, size_t pos0,
                            float *x, size_t ldx);

/*
 * Positions inside attention (attn_params.pos). Query i is at position i
 * and key j at position j (0-based in both, also when n != m).
 *   rope: queries and keys are rotated (attn_rope_apply) before the scores;
 *     multi-head attention rotates each head's projected slice (hd even).
 *   shaw_clip k, shaw_k [2k + 1][dk], shaw_v [2k + 1][dv] (Shaw et al. 2018):
 *     with c = clip(j - i, -k, k) + k, the score of (i, j) adds
 *     scale * q_i . shaw_k[c] and the output of row i adds
 *     sum_j w_ij shaw_v[c]. Either table may be NULL (both NULL: off).
 *     Scaled-dot and dot scores only; appended key columns get no term.
 * Biases that depend on j - i alone (ALiBi, T5) go in attn_masks.rel_bias.
 */
typedef struct attn_positional {
    bool rope;
    attn_rope_style rope_style;
    float rope_base; /* <= 0: 10000 */
    size_t shaw_clip;
    const float *shaw_k;
    const float *shaw_v;
} attn_positional;

/* ------------------------------------------------------ single head */

typedef enum attn_score {
    ATTN_SCORE_SCALED_DOT = 0, /* q.k * scale, scale defaults to 1/sqrt(dk) */
    ATTN_SCORE_DOT = 1,        /* q.k (Luong dot) */
    ATTN_SCORE_GENERAL = 2,    /* q^T W k, W [dq][dk] (Luong general) */
    ATTN_SCORE_ADDITIVE = 3,   /* v^T tanh(W1 q + W2 k) (Bahdanau) */
    ATTN_SCORE_CONCAT = 4,     /* v^T tanh(W [q; k]) (Luong concat) */
} attn_score;

/* Returns "scaled_dot", "dot", ... or NULL if s is unknown. */
const char *attn_score_name(attn_score s);

/* Parses a score name; returns 0 and sets *out, or ATTN_ERR_INVALID. */
attn_status attn_score_parse(const char *name, attn_score *out);

typedef struct attn_params {
    attn_score score;
    /* Scale for ATTN_SCORE_SCALED_DOT; a value <= 0 or NaN means 1/sqrt(dk).
     * The value actually used is written to attn_result.scale. */
    float scale;
    /* Softcapping: s = softcap * tanh(s / softcap), after scaling and before
     * masks and bias (FlashAttention, Gemma 2). 0 = off. */
    float softcap;
    /* Score weights, by score kind; unused ones are ignored:
     * GENERAL:  w [dq][dk]
     * ADDITIVE: w1 [da][dq], w2 [da][dk], v [da]
     * CONCAT:   w [da][dq + dk], v [da] */
    const float *w;
    const float *w1;
    const float *w2;
    const float *v;
    size_t da;
    attn_masks masks;
    attn_positional pos; /* zero: no positional term */
} attn_params;

/* Where results go. Any pointer may be NULL: that result is not computed
 * (weights are only materialised when asked for). */
typedef struct attn_outputs {
    float *output;  /* [n][dv] */
    float *weights; /* [n][m] softmax weights; rows with no key left are 0 */
    float *scores;  /* [n][m] pre-softmax scores after scale, softcap and bias;
                       pairs removed by masks are -INFINITY */
} attn_outputs;

/* Resolved values a caller may want to report. */
typedef struct attn_result {
    float scale;            /* the scale actually applied (1 for dot/general/additive/concat) */
    size_t n_empty_rows;    /* query rows that had no key left (their output is 0) */
    size_t n_allowed_pairs; /* (query, key) pairs that took part */
} attn_result;

/*
 * One attention head: out = softmax(score(q, k) masked) * v.
 * q [n][dq], k [m][dk], v [m][dv]. For scaled_dot and dot dq must equal dk.
 * A query row with no key left gets output 0 and weights 0 (as torch 2.x SDPA
 * for the output), never NaN. Softmax subtracts the row maximum.
 * res may be NULL.
 * Returns ATTN_ERR_SHAPE / ATTN_ERR_INVALID for inconsistent arguments,
 * ATTN_ERR_NOMEM if scratch memory cannot be had.
 */
attn_status attn_forward(attn_ws *ws, const attn_params *p, size_t n, size_t m,
                         size_t dq, size_t dk, size_t dv, const float *q,
                         const float *k, const float *v, attn_outputs *out,
                         attn_result *res);

/* ------------------------------------------------------ linear kernels */

/*
 * Linear attention with feature map phi(x) = elu(x) + 1 (Katharopoulos et al.
 * 2020): out_i = phi(q_i) S / (phi(q_i) . z + 1e-6) with S = sum_j phi(k_j)^T v_j
 * and z = sum_j phi(k_j) over the keys query i may see; no 1/sqrt(d) scaling.
 * causal: ATTN_CAUSAL_NONE, or TOP_LEFT / BOTTOM_RIGHT as for softmax
 * attention, computed with prefix sums. key_padding [m] (1 = ignored) or
 * NULL. q [n][d], k [m][d], v [m][dv]; out [n][dv] or NULL; weights [n][m]
 * (the implied phi(q_i).phi(k_j) / normaliser) or NULL: the n x m matrix is
 * only built when weights is given; otherwise the scratch is O(d (dv + block)),
 * independent of n and m (see attn_linear_kernel_forward, of which this is the
 * ELU case). Returns ATTN_ERR_INVALID / ATTN_ERR_SHAPE for bad arguments,
 * ATTN_ERR_NOMEM when scratch cannot be had.
 */
attn_status attn_linear_forward(attn_ws *ws, attn_causal causal, size_t n, size_t m, size_t d,
                                size_t dv, const float *q, const float *k, const float *v,
                                const uint8_t *key_padding, float *out, float *weights);

/* Feature maps of linear attention. NONE (0) marks "no linear kernel" in attn_mha_config. */
typedef enum attn_feature_map {
    ATTN_FEATURE_MAP_NONE = 0,  /* softmax attention (multi-head config only) */
    ATTN_FEATURE_MAP_ELU = 1,   /* phi(x) = elu(x) + 1, width d */
    ATTN_FEATURE_MAP_FAVOR = 2, /* FAVOR+ positive orthogonal random features, width r */
} attn_feature_map;

/* Largest num_features FAVOR+ accepts (the projection is [r][d] floats). */
#define ATTN_FAVOR_MAX_FEATURES 16384

typedef struct attn_linear_kernel {
    attn_feature_map feature_map;
    size_t num_features; /* FAVOR+: r, 1..ATTN_FAVOR_MAX_FEATURES; ignored for ELU */
    uint64_t seed;       /* FAVOR+: selects the random features; ignored for ELU */
} attn_linear_kernel;

/*
 * FAVOR+ (Performer, Choromanski et al. 2021): positive orthogonal random
 * features whose dot products estimate the softmax kernel exp(q.k / sqrt(d)):
 *   x' = x / d^(1/4),  phi(x)_f = exp(w_f . x' - |x'|^2 / 2) / sqrt(r),  f = 0..r-1,
 * so E[phi(q) . phi(k)] = exp(q'.k') = exp(q.k / sqrt(d)). Attention is then
 * out_i = phi(q_i) S / (phi(q_i) . z + 1e-6) with S and z as for elu + 1.
 *
 * The projection W [r][d] for (r, d, seed), as attn_favor_projection returns it:
 *   st = seed ^ 0x6A09E667F3BCC909; every normal is one Box-Muller draw from
 *   two attn_rng_uniform(&st) calls u1, u2: sqrt(-2 ln(1 - u1)) cos(2 pi u2).
 *   1. Directions, in blocks of d rows (the last block has r mod d rows when d
 *      does not divide r): draw the block's rows x d normals row by row, then
 *      orthonormalise its rows in order by modified Gram-Schmidt in double
 *      (each row projected out twice; a row left with under 1e-6 of its norm,
 *      a probability-zero event, is redrawn). Rows of one block are
 *      orthonormal; blocks are independent (the Performer's "ORF").
 *   2. Lengths: for f = 0..r-1, draw d normals; row f is scaled by the norm of
 *      that vector (chi distributed with d degrees of freedom), which makes
 *      each row distributed as a Gaussian vector, as the reference
 *      implementation's scaling=0 (GaussianOrthogonalRandomMatrix).
 * Multi-head attention draws one W of width head_dim and shares it across
 * heads, as the reference implementation shares its projection in a layer.
 *
 * Numerical stabilisation, as the reference implementation's
 * softmax_kernel_transformation: each query row subtracts its own largest
 * exponent, every key row the largest exponent over all keys that are not
 * padding (also under causal, so one constant serves every prefix). Both
 * factors cancel between numerator and normaliser; they only change the
 * relative size of the 1e-6, which is added to the stabilised normaliser.
 * Two differences to the reference, both deliberate: the maximum is taken over
 * the whole exponent w.x' - |x'|^2/2 rather than over w.x' alone (so the
 * largest feature of a row is exactly 1/sqrt(r) and never underflows), and
 * the 1e-6 sits in the normaliser as for elu + 1 rather than being added to
 * every feature.
 */

/* Fills proj [r][d] with the FAVOR+ projection for (r, d, seed) described
 * above; scratch comes from ws. Returns ATTN_ERR_INVALID for a NULL argument,
 * r outside 1..ATTN_FAVOR_MAX_FEATURES or d == 0, ATTN_ERR_NOMEM when scratch
 * cannot be had. */
attn_status attn_favor_projection(attn_ws *ws, size_t r, size_t d, uint64_t seed, float *proj);

/*
 * Linear attention with the feature map of kern (ELU or FAVOR), non-causal
 * or causal (TOP_LEFT / BOTTOM_RIGHT, by chunked prefix sums), as
 * attn_linear_forward: q [n][d], k [m][d], v [m][dv], key_padding [m] or
 * NULL, out [n][dv] or NULL, weights [n][m] (the implied normalised
 * phi(q_i).phi(k_j)) or NULL. Features are computed in row blocks, so
 * without weights the scratch is O(r d + F (dv + block)) with F = d (elu) or
 * r (favor), independent of n and m; with weights the key features are kept,
 * O(m F) more. A row with no key left gets output 0 and weights 0.
 * res (may be NULL): scale = 1 (elu) or 1/sqrt(d) (favor: the softmax
 * temperature it estimates), empty rows and the pairs that took part.
 * Returns ATTN_ERR_INVALID for a bad kernel (feature map NONE or unknown,
 * num_features out of range), NULL pointers or an unknown causal mode,
 * ATTN_ERR_SHAPE for d == 0 or dv == 0, ATTN_ERR_OVERFLOW for sizes too large
 * to address, ATTN_ERR_NOMEM when scratch cannot be had.
 */
attn_status attn_linear_kernel_forward(attn_ws *ws, const attn_linear_kernel *kern,
                                       attn_causal causal, size_t n, size_t m, size_t d,
                                       size_t dv, const float *q, const float *k, const float *v,
                                       const uint8_t *key_padding, float *out, float *weights,
                                       attn_result *res);

/* --------------------------------------------------------- multi-head */

/*
 * Projection weights of a multi-head block, as in torch.nn.MultiheadAttention
 * (state_dict names in brackets). With E = embed_dim, H = num_heads,
 * hd = E / H, Hkv = num_kv_heads (H when 0), Ekv = Hkv * hd:
 *   q_proj [E][E]      (in_proj_weight rows 0..E-1, or q_proj_weight)
 *   k_proj [Ekv][kdim] (in_proj_weight rows E..E+Ekv-1, or k_proj_weight)
 *   v_proj [Ekv][vdim] (in_proj_weight rows E+Ekv..E+2Ekv-1, or v_proj_weight)
 *   q_bias [E], k_bias [Ekv], v_bias [Ekv] (slices of in_proj_bias), or NULL
 *   out_proj [E][E] (out_proj.weight), out_bias [E] (out_proj.bias) or NULL
 *   bias_k [Ekv], bias_v [Ekv]: appended as one extra key/value row, or NULL
 * Query head h reads key/value head floor(h * Hkv / H) (SDPA enable_gqa).
 */
typedef struct attn_mha_weights {
    const float *q_proj;
    const float *k_proj;
    const float *v_proj;
    const float *q_bias;
    const float *k_bias;
    const float *v_bias;
    const float *out_proj;
    const float *out_bias;
    const float *bias_k;
    const float *bias_v;
} attn_mha_weights;

typedef struct attn_mha_config {
    size_t embed_dim;    /* E */
    size_t num_heads;    /* H, divides E */
    size_t num_kv_heads; /* Hkv, divides H; 0 means H */
    size_t kdim;         /* key input width; 0 means E */
    size_t vdim;         /* value input width; 0 means E */
    bool add_zero_attn;  /* append a zero key/value row after bias_k/bias_v */
    attn_params attn;    /* score must be SCALED_DOT or DOT; scale, softcap, masks apply per head */
    /* Linear attention per head (zero-initialised: feature_map NONE = softmax).
     * With ELU or FAVOR each head runs attn_linear_kernel_forward's kernel on its
     * slices (FAVOR+: one projection of width head_dim shared by the heads);
     * only causal and key_padding apply: attn.scale must be default, softcap 0,
     * no mask, bias or pattern, and no scores asked for (else ATTN_ERR_UNSUPPORTED).
     * The appended bias_k / zero rows are always seen, also under causal. */
    attn_linear_kernel kernel;
} attn_mha_config;

/* Key length a head sees: m, +1 with bias_k, +1 with add_zero_attn. */
size_t attn_mha_keys(const attn_mha_config *c, const attn_mha_weights *w, size_t m);

/* Results of a multi-head block; any pointer may be NULL. m' = attn_mha_keys(). */
typedef struct attn_mha_outputs {
    float *output;       /* [n][E] */
    float *weights;      /* [H][n][m'] per head */
    float *weights_avg;  /* [n][m'] mean over heads */
    float *scores;       /* [H][n][m'] */
    float *head_outputs; /* [H][n][hd] before out_proj */
    float *q;            /* [n][E] projected queries */
    float *k;            /* [m][Ekv] projected keys (without bias_k / zero row) */
    float *v;            /* [m][Ekv] projected values */
} attn_mha_outputs;

/*
 * Multi-head attention, self (key == query) or cross.
 * query [n][E], key [m][kdim], value [m][vdim]; key/value may alias query.
 * Masks in c->attn.masks cover [n][m] (the appended bias_k/zero rows are
 * always allowed, as nn.MultiheadAttention pads its masks).
 * Returns ATTN_ERR_SHAPE / ATTN_ERR_INVALID for inconsistent arguments,
 * ATTN_ERR_NOMEM if scratch memory cannot be had.
 */
attn_status attn_mha_forward(attn_ws *ws, const attn_mha_config *c,
                             const attn_mha_weights *w, size_t n, size_t m,
                             const float *query, const float *key,
                             const float *value, attn_mha_outputs *out,
                             attn_result *res);

/*
 * Deterministic initial weights for a seed, so a user can start from
 * embeddings alone. With the shapes of attn_mha_weights:
 *   q_proj, k_proj, v_proj: xavier_uniform over the stacked in_proj
 *     ([E + 2 Ekv][E] when kdim = vdim = E, else each on its own shape),
 *     as torch.nn.MultiheadAttention._reset_parameters does;
 *   out_proj: xavier_uniform [E][E] (torch keeps nn.Linear's default,
 *     U(-1/sqrt(E), 1/sqrt(E)), there: the one distribution that differs);
 *   biases (when bias is true): 0, as torch initialises them;
 *   bias_k, bias_v (when add_bias_kv): xavier_normal on torch's [1][1][Ekv]
 *     shape (fan_in = fan_out = Ekv, std = sqrt(1 / Ekv)).
 * Random numbers: splitmix64 seeded with seed, 24-bit uniform floats in [0,1),
 * normals by Box-Muller, drawn in the order in_proj (or q, k, v), out_proj,
 * bias_k, bias_v. The numbers differ from torch's RNG.
 * Storage: *out_store receives one buffer (free with attn_free_buffer) that
 * all pointers in *w point into.
 * Returns ATTN_ERR_NOMEM, ATTN_ERR_INVALID or ATTN_ERR_OVERFLOW on failure
 * (nothing allocated).
 */
attn_status attn_mha_init_seeded(const attn_mha_config *c, uint64_t seed,
                                  bool bias, bool add_bias_kv,
                                  attn_mha_weights *w, float **out_store);

/* Frees a buffer the engine allocated for the caller with malloc. NULL is a no-op. */
void attn_free_buffer(void *p);

/* ---------------------------------------------------- transformer blocks */

/*
 * torch.nn.TransformerEncoder / TransformerDecoder and their layers
 * (batch_first, dropout 0), one sequence per call. With E = d_model,
 * H = nhead, F = dim_feedforward, L = num_layers:
 *   encoder layer, post-norm: x = norm1(x + sa(x)); x = norm2(x + ff(x))
 *   encoder layer, norm_first: x = x + sa(norm1(x)); x = x + ff(norm2(x))
 *   decoder layer, post-norm: x = norm1(x + sa(x)); x = norm2(x + ca(x, mem));
 *                             x = norm3(x + ff(x))
 *   decoder layer, norm_first: x = x + sa(norm1(x)); x = x + ca(norm2(x), mem);
 *                              x = x + ff(norm3(x))
 *   stack: L layers, then the final norm when one is given.
 * sa/ca are attn_mha_forward blocks (self-attention, cross-attention over the
 * memory), ff is linear2(act(linear1(x))). A single layer is a stack with
 * L = 1 and no final norm.
 */

typedef enum attn_activation {
    ATTN_ACTIVATION_RELU = 0,
    ATTN_ACTIVATION_GELU = 1, /* exact x * Phi(x) with erf (torch's approximate='none') */
    ATTN_ACTIVATION_GELU_TANH = 2, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))):
                                      torch's approximate='tanh', HF's gelu_new (GPT-2) */
} attn_activation;

/* Returns "relu", "gelu" or "gelu_tanh", or NULL if a is unknown. */
const char *attn_activation_name(attn_activation a);

/* Parses an activation name; returns 0 and sets *out, or ATTN_ERR_INVALID. */
attn_status attn_activation_parse(const char *name, attn_activation *out);

/*
 * Layer norm over the last dimension, as torch.nn.LayerNorm:
 * y = (x - mean) / sqrt(var + eps) * weight + bias, var the biased variance.
 * x [n][d], weight [d] or NULL (1), bias [d] or NULL (0), y [n][d] (may be x).
 * Returns ATTN_ERR_INVALID for eps <= 0 or not finite, d == 0, or a NULL
 * x / y with n > 0; ATTN_ERR_OVERFLOW if n * d overflows.
 */
attn_status attn_layer_norm(size_t n, size_t d, float eps, const float *x, const float *weight,
                            const float *bias, float *y);

/* A Linear or LayerNorm's parameters (state_dict "<name>.weight", "<name>.bias").
 * Linear: weight [out][in], bias [out]; LayerNorm: weight [E], bias [E].
 * bias NULL means none (torch's bias=False). */
typedef struct attn_tf_affine {
    const float *weight;
    const float *bias;
} attn_tf_affine;

/*
 * Feed-forward block: y = act(x * w1^T + b1) * w2^T + b2.
 * x [n][E], linear1 weight [F][E] bias [F], linear2 weight [E][F] bias [E],
 * y [n][E] (must not overlap x). Scratch [n][F] comes from ws.
 * Returns ATTN_ERR_INVALID for NULL arguments (x / y with n > 0, weights),
 * E or F == 0 or an unknown activation; ATTN_ERR_OVERFLOW for sizes beyond
 * size_t or the BLAS integer; ATTN_ERR_NOMEM if scratch cannot be had.
 */
attn_status attn_ffn_forward(attn_ws *ws, attn_activation act, size_t n, size_t E, size_t F,
                             const float *x, const attn_tf_affine *linear1,
                             const attn_tf_affine *linear2, float *y);

/* An nn.MultiheadAttention inside a layer (state_dict "self_attn.*" or
 * "multihead_attn.*"): in_proj_weight [3E][E], in_proj_bias [3E] or NULL,
 * out_proj.weight [E][E], out_proj.bias [E] or NULL. */
typedef struct attn_tf_attention {
    const float *in_proj_weight;
    const float *in_proj_bias;
    const float *out_proj_weight;
    const float *out_proj_bias;
} attn_tf_attention;

/* One layer, field for state_dict key ("layers.{i}." prefix in a stack).
 * multihead_attn and norm3 are the decoder's; an encoder ignores them. */
typedef struct attn_tf_layer {
    attn_tf_attention self_attn;      /* self_attn.* */
    attn_tf_attention multihead_attn; /* multihead_attn.* (decoder) */
    attn_tf_affine linear1;           /* linear1.weight [F][E], linear1.bias [F] */
    attn_tf_affine linear2;           /* linear2.weight [E][F], linear2.bias [E] */
    attn_tf_affine norm1;             /* norm1.weight [E], norm1.bias [E] */
    attn_tf_affine norm2;             /* norm2.* [E] */
    attn_tf_affine norm3;             /* norm3.* [E] (decoder) */
} attn_tf_layer;

/* A stack: layers [L] ("layers.{i}.*") and the final norm ("norm.weight",
 * "norm.bias"), applied when norm.weight is set. */
typedef struct attn_tf_weights {
    const attn_tf_layer *layers;
    attn_tf_affine norm;
} attn_tf_weights;

typedef struct attn_tf_config {
    size_t d_model;         /* E */
    size_t nhead;           /* H, divides E */
    size_t dim_feedforward; /* F */
    size_t num_layers;      /* L >= 1 */
    attn_activation activation;
    bool norm_first;
    float layer_norm_eps; /* > 0; torch's default is 1e-5 */
    /* Template for every layer's self-attention, passed on unchanged: score
     * (SCALED_DOT or DOT), scale, softcap, masks over [n][n] (mask 1 = may
     * attend, key_padding [n] 1 = ignored, causal, bias, pattern) and any
     * positional setting attn_params carries. Zero-initialised: plain
     * scaled-dot attention, as torch. */
    attn_params self_attn;
    /* Decoder cross-attention (scaled dot, default scale) over [n][m]: mask
     * (memory_mask, 1 = may attend), key_padding [m] (memory_key_padding_mask,
     * 1 = ignored), causal, bias, pattern. Encoders ignore it. */
    attn_masks cross_masks;
} attn_tf_config;

/* Results; any pointer may be NULL (per-head weights are only computed when asked for). */
typedef struct attn_tf_outputs {
    float *output;        /* [n][E] */
    float *self_weights;  /* [L][H][n][n] per layer, per head */
    float *cross_weights; /* [L][H][n][m] (decoder) */
    float *hidden_states; /* [L + 1][n][E]: the input, then each layer's output (before
                             the final norm) */
    float *q;             /* [L][n][E] each layer's projected self-attention queries */
    float *k;             /* [L][n][E] ... keys */
    float *v;             /* [L][n][E] ... values */
} attn_tf_outputs;

/*
 * Encoder stack over src [n][E]. res (may be NULL) gets the self-attention
 * scale, and the most empty rows and allowed pairs any block saw.
 * Returns ATTN_ERR_INVALID for a NULL argument or weight, a bad config
 * (E, H, F, L == 0, H not dividing E, eps <= 0, unknown activation, a score
 * other than SCALED_DOT / DOT, a bad mask or softcap), ATTN_ERR_SHAPE when
 * the masks do not cover [n][n], ATTN_ERR_OVERFLOW for sizes beyond size_t
 * or the BLAS integer, ATTN_ERR_NOMEM if scratch cannot be had. Arguments are
 * checked before anything is computed.
 */
attn_status attn_tf_encoder_forward(attn_ws *ws, const attn_tf_config *c, const attn_tf_weights *w,
                                    size_t n, const float *src, attn_tf_outputs *out,
                                    attn_result *res);

/*
 * Decoder stack over tgt [n][E] and memory [m][E]; as the encoder, plus the
 * cross-attention masks (c->cross_masks over [n][m]) and cross_weights.
 * Returns the encoder's errors, for the decoder's weights too.
 */
attn_status attn_tf_decoder_forward(attn_ws *ws, const attn_tf_config *c, const attn_tf_weights *w,
                                    size_t n, size_t m, const float *tgt, const float *memory,
                                    attn_tf_outputs *out, attn_result *res);

/*
 * Deterministic initial weights for a stack (decoder layers when decoder is
 * true), with torch's distributions:
 *   in_proj_weight: xavier_uniform on [3E][E]; in_proj_bias, out_proj.bias: 0
 *     (nn.MultiheadAttention._reset_parameters);
 *   out_proj.weight, linear1.*, linear2.*: nn.Linear's default,
 *     U(-1/sqrt(in), 1/sqrt(in)) with in = E (linear2: F);
 *   norm*.weight: 1, norm*.bias: 0; the final norm too when final_norm.
 * bias false leaves every bias NULL (torch's bias=False).
 * Random numbers: splitmix64 seeded with seed (attn_rng_uniform), drawn layer
 * by layer in state_dict order: self_attn.in_proj_weight,
 * self_attn.out_proj.weight, [multihead_attn.in_proj_weight,
 * multihead_attn.out_proj.weight,] linear1.weight, linear1.bias,
 * linear2.weight, linear2.bias. The numbers differ from torch's RNG.
 * Storage: *out_store receives one buffer (free with attn_free_buffer) that
 * w->layers and every weight point into.
 * Returns ATTN_ERR_INVALID for NULL arguments or a bad config (as the
 * forward functions), ATTN_ERR_OVERFLOW or ATTN_ERR_NOMEM (nothing allocated).
 */
attn_status attn_tf_init_seeded(const attn_tf_config *c, bool decoder, bool bias, bool final_norm,
                                uint64_t seed, attn_tf_weights *w, void **out_store);

/* ------------------------------------------------------------- random */

/* splitmix64 step; deterministic per seed, used for seeded init and tests. */
uint64_t attn_rng_next(uint64_t *state);

/* Uniform float in [0, 1) with 24 random bits. */
float attn_rng_uniform(uint64_t *state);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_H */
