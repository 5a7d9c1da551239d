/* test_model_arch.c - pretrained BERT, GPT-2, ViT and BART against HuggingFace's outputs. */
#include "attn_pretrained.h"
#include "util_golden.h"

#include <check.h>
#include <cjson/cJSON.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODELS ATTN_TEST_DATA "/models"

/* The tolerances: float32 against HuggingFace's float64. */
#define TOL_ATTN 2e-4
#define TOL_HIDDEN 2e-3

/* ------------------------------------------------------------ helpers */

static attn_pretrained *load_ok(const char *name)
{
    char dir[512], err[ATTN_MODEL_ERR_SIZE];
    snprintf(dir, sizeof dir, "%s/%s", MODELS, name);
    attn_pretrained *m = NULL;
    attn_status rc = attn_pretrained_load(dir, NULL, &m, err, sizeof err);
    ck_assert_msg(rc == ATTN_OK, "%s: %s (%s)", name, attn_status_str(rc), err);
    ck_assert_ptr_nonnull(m);
    return m;
}

static cJSON *expected_ok(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/expected.json", MODELS, name);
    cJSON *e = load_json(path);
    ck_assert_msg(e != NULL, "cannot read %s", path);
    return e;
}

/* Largest |got - want| over count values; asserts the counts agree. */
static double max_err(const float *got, const tensor *want, size_t count, const char *what)
{
    ck_assert_msg(want->count == count, "%s: %zu values expected, %zu computed", what, want->count,
                  count);
    double worst = 0;
    for (size_t i = 0; i < count; i++) {
        const double d = fabs((double)got[i] - want->x[i]);
        if (!(d <= worst))
            worst = d;
    }
    return worst;
}

/* Worst errors seen per model, printed at the end of each golden test. */
typedef struct errs {
    double attn, hidden;
} errs;

static void check_close(const float *got, const cJSON *obj, const char *key, size_t count,
                        double tol, double *worst, const char *ctx)
{
    tensor t = tensor_get(obj, key);
    const double e = max_err(got, &t, count, key);
    free(t.x);
    ck_assert_msg(e <= tol, "%s: %s differs by %g (tolerance %g)", ctx, key, e, tol);
    if (e > *worst)
        *worst = e;
}

static int32_t *ids_of(const cJSON *obj, const char *key, size_t *n)
{
    tensor t = tensor_get(obj, key);
    int32_t *ids = malloc((t.count ? t.count : 1) * sizeof *ids);
    ck_assert_ptr_nonnull(ids);
    for (size_t i = 0; i < t.count; i++)
        ids[i] = (int32_t)t.x[i];
    *n = t.count;
    free(t.x);
    return ids;
}

/*
 * Every runs[] entry of a text model: the tokenizer gives HuggingFace's
 * tokens and ids, the model its attentions and last hidden state (and, for
 * BERT, the pooler output).
 */
static void text_model_matches(const char *name)
{
    attn_pretrained *m = load_ok(name);
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    const attn_tokenizer *tok = attn_pretrained_tokenizer(m);
    ck_assert_ptr_nonnull(tok);
    cJSON *exp = expected_ok(name);
    attn_ws *ws = attn_ws_create(NULL);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(exp, "runs");
    ck_assert_int_gt(cJSON_GetArraySize(runs), 0);
    errs worst = {0, 0};
    const cJSON *run;
    size_t k = 0;
    cJSON_ArrayForEach(run, runs)
    {
        const char *text = cJSON_GetObjectItemCaseSensitive(run, "text")->valuestring;
        char err[ATTN_MODEL_ERR_SIZE], ctx[160];
        snprintf(ctx, sizeof ctx, "%s run %zu \"%.60s\"", name, k++, text);
        attn_encoding *enc = NULL;
        ck_assert_int_eq(
            attn_tokenizer_encode(tok, text, strlen(text), NULL, 0, true, &enc, err, sizeof err),
            ATTN_OK);
        size_t n;
        int32_t *ids = ids_of(run, "input_ids", &n);
        const cJSON *toks = cJSON_GetObjectItemCaseSensitive(run, "tokens");
        ck_assert_msg(enc->n_tokens == n, "%s: %zu tokens, expected %zu", ctx, enc->n_tokens, n);
        for (size_t i = 0; i < n; i++) {
            ck_assert_msg(enc->ids[i] == ids[i], "%s: id %zu", ctx, i);
            ck_assert_str_eq(enc->tokens[i], cJSON_GetArrayItem(toks, (int)i)->valuestring);
        }
        const size_t E = info->hidden_size, L = info->num_layers, H = info->num_heads;
        float *att = malloc(L * H * n * n * sizeof(float));
        float *last = malloc(n * E * sizeof(float));
        float *pool = malloc(E * sizeof(float));
        ck_assert(att && last && pool);
        attn_pretrained_inputs in = {.input_ids = enc->ids, .n = n};
        attn_pretrained_outputs out = {.attentions = att,
                                       .last_hidden_state = last,
                                       .pooler_output = info->has_pooler ? pool : NULL};
        attn_status rc = attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err);
        ck_assert_msg(rc == ATTN_OK, "%s: %s", ctx, err);
        check_close(att, run, "attentions", L * H * n * n, TOL_ATTN, &worst.attn, ctx);
        check_close(last, run, "last_hidden_state", n * E, TOL_HIDDEN, &worst.hidden, ctx);
        if (info->has_pooler && cJSON_GetObjectItemCaseSensitive(run, "pooler_output"))
            check_close(pool, run, "pooler_output", E, TOL_HIDDEN, &worst.hidden, ctx);
        free(att);
        free(last);
        free(pool);
        free(ids);
        attn_encoding_free(enc);
    }
    printf("%s: %zu runs, max |error| attentions %.3g, hidden states %.3g\n", name, k, worst.attn,
           worst.hidden);
    attn_ws_free(ws);
    cJSON_Delete(exp);
    attn_pretrained_free(m);
}

/* ------------------------------------------------------------ golden models */

START_TEST(bert_tiny_every_run_matches_huggingface)
{
    text_model_matches("bert-tiny");
}
END_TEST

START_TEST(gpt2_tiny_every_run_matches_huggingface)
{
    text_model_matches("gpt2-tiny");
}
END_TEST

/* The trained demo model: another size (3 layers, hidden 128, vocabulary 2048). */
START_TEST(demo_gpt2_every_run_matches_huggingface)
{
    text_model_matches("demo-gpt2");
}
END_TEST

START_TEST(bert_tiny_padded_batch_matches_with_attention_mask)
{
    attn_pretrained *m = load_ok("bert-tiny");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    cJSON *exp = expected_ok("bert-tiny");
    const cJSON *pb = cJSON_GetObjectItemCaseSensitive(exp, "padded_batch");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(pb, "input_ids");
    const cJSON *mask = cJSON_GetObjectItemCaseSensitive(pb, "attention_mask");
    tensor att_all = tensor_get(pb, "attentions"), last_all = tensor_get(pb, "last_hidden_state");
    attn_ws *ws = attn_ws_create(NULL);
    const size_t B = (size_t)cJSON_GetArraySize(ids), E = info->hidden_size;
    const size_t L = info->num_layers, H = info->num_heads;
    ck_assert_uint_eq(B, 2);
    double worst_a = 0, worst_h = 0;
    for (size_t b = 0; b < B; b++) {
        const cJSON *row = cJSON_GetArrayItem(ids, (int)b),
                    *mrow = cJSON_GetArrayItem(mask, (int)b);
        const size_t n = (size_t)cJSON_GetArraySize(row);
        int32_t in_ids[64];
        uint8_t am[64];
        ck_assert_uint_le(n, 64);
        for (size_t i = 0; i < n; i++) {
            in_ids[i] = (int32_t)cJSON_GetArrayItem(row, (int)i)->valuedouble;
            am[i] = cJSON_GetArrayItem(mrow, (int)i)->valuedouble != 0;
        }
        float *att = malloc(L * H * n * n * sizeof(float)), *last = malloc(n * E * sizeof(float));
        ck_assert(att && last);
        attn_pretrained_inputs in = {.input_ids = in_ids, .n = n, .attention_mask = am};
        attn_pretrained_outputs out = {.attentions = att, .last_hidden_state = last};
        char err[ATTN_MODEL_ERR_SIZE];
        ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
        /* HuggingFace's attentions are a tuple per layer of [B][H][n][n]: [L][B][H][n][n] */
        const size_t na = L * H * n * n, nh = n * E, per = H * n * n;
        double *mine = malloc(na * sizeof(double));
        ck_assert_ptr_nonnull(mine);
        for (size_t l = 0; l < L; l++)
            memcpy(mine + l * per, att_all.x + (l * B + b) * per, per * sizeof(double));
        tensor ta = {mine, na}, th = {last_all.x + b * nh, nh};
        double ea = max_err(att, &ta, na, "attentions"), eh = max_err(last, &th, nh, "hidden");
        free(mine);
        ck_assert_msg(ea <= TOL_ATTN, "row %zu: attentions differ by %g", b, ea);
        ck_assert_msg(eh <= TOL_HIDDEN, "row %zu: last_hidden_state differs by %g", b, eh);
        worst_a = fmax(worst_a, ea);
        worst_h = fmax(worst_h, eh);
        /* padding keys get no weight at all */
        for (size_t r = 0; r < L * H * n; r++)
            for (size_t j = 0; j < n; j++)
                if (!am[j])
                    ck_assert_float_eq(att[r * n + j], 0.0f);
        free(att);
        free(last);
    }
    printf("bert-tiny padded batch: max |error| attentions %.3g, hidden states %.3g\n", worst_a,
           worst_h);
    free(att_all.x);
    free(last_all.x);
    attn_ws_free(ws);
    cJSON_Delete(exp);
    attn_pretrained_free(m);
}
END_TEST

START_TEST(vit_tiny_matches_huggingface)
{
    attn_pretrained *m = load_ok("vit-tiny");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    ck_assert_int_eq(info->arch, ATTN_ARCH_VIT);
    ck_assert_ptr_null(attn_pretrained_tokenizer(m));
    ck_assert_uint_eq(info->max_positions, 17);
    cJSON *exp = expected_ok("vit-tiny");
    tensor px = tensor_get(exp, "pixel_values");
    float *pixels = to_f32(&px);
    const size_t n = 17, E = info->hidden_size, L = info->num_layers, H = info->num_heads;
    float *att = malloc(L * H * n * n * sizeof(float)), *last = malloc(n * E * sizeof(float));
    float *hid = malloc((L + 1) * n * E * sizeof(float));
    ck_assert(att && last && hid);
    attn_ws *ws = attn_ws_create(NULL);
    attn_pretrained_inputs in = {.pixel_values = pixels, .height = 32, .width = 32};
    attn_pretrained_outputs out = {
        .attentions = att, .last_hidden_state = last, .hidden_states = hid};
    char err[ATTN_MODEL_ERR_SIZE];
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    errs worst = {0, 0};
    check_close(att, exp, "attentions", L * H * n * n, TOL_ATTN, &worst.attn, "vit-tiny");
    check_close(last, exp, "last_hidden_state", n * E, TOL_HIDDEN, &worst.hidden, "vit-tiny");
    printf("vit-tiny: max |error| attentions %.3g, hidden states %.3g\n", worst.attn, worst.hidden);
    /* ViT's hidden_states end before the final layernorm, as HuggingFace's */
    float diff = 0;
    for (size_t i = 0; i < n * E; i++)
        diff = fmaxf(diff, fabsf(hid[L * n * E + i] - last[i]));
    ck_assert_float_gt(diff, 1e-3f);

    /* another image size is refused: HuggingFace needs interpolate_pos_encoding for it */
    in.height = 16;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "pixel_values"));
    free(att);
    free(last);
    free(hid);
    free(pixels);
    free(px.x);
    attn_ws_free(ws);
    cJSON_Delete(exp);
    attn_pretrained_free(m);
}
END_TEST

START_TEST(bart_tiny_matches_huggingface)
{
    attn_pretrained *m = load_ok("bart-tiny");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    ck_assert_int_eq(info->arch, ATTN_ARCH_BART);
    cJSON *exp = expected_ok("bart-tiny");
    size_t n, nd;
    int32_t *ids = ids_of(exp, "input_ids", &n), *dids = ids_of(exp, "decoder_input_ids", &nd);
    const size_t E = info->hidden_size, L = info->num_layers, H = info->num_heads;
    const size_t Ld = info->decoder_layers, Hd = info->decoder_heads;
    float *ea = malloc(L * H * n * n * sizeof(float)),
          *da = malloc(Ld * Hd * nd * nd * sizeof(float));
    float *ca = malloc(Ld * Hd * nd * n * sizeof(float)), *last = malloc(nd * E * sizeof(float));
    float *elast = malloc(n * E * sizeof(float));
    ck_assert(ea && da && ca && last && elast);
    attn_ws *ws = attn_ws_create(NULL);
    attn_pretrained_inputs in = {.input_ids = ids, .n = n, .decoder_input_ids = dids, .n_dec = nd};
    attn_pretrained_outputs out = {.attentions = ea,
                                   .decoder_attentions = da,
                                   .cross_attentions = ca,
                                   .last_hidden_state = last,
                                   .encoder_last_hidden_state = elast};
    char err[ATTN_MODEL_ERR_SIZE];
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    errs worst = {0, 0};
    check_close(ea, exp, "encoder_attentions", L * H * n * n, TOL_ATTN, &worst.attn, "bart");
    check_close(da, exp, "decoder_attentions", Ld * Hd * nd * nd, TOL_ATTN, &worst.attn, "bart");
    check_close(ca, exp, "cross_attentions", Ld * Hd * nd * n, TOL_ATTN, &worst.attn, "bart");
    check_close(last, exp, "last_hidden_state", nd * E, TOL_HIDDEN, &worst.hidden, "bart");
    check_close(elast, exp, "encoder_last_hidden_state", n * E, TOL_HIDDEN, &worst.hidden, "bart");
    printf("bart-tiny: max |error| attentions %.3g, hidden states %.3g\n", worst.attn,
           worst.hidden);
    free(ea);
    free(da);
    free(ca);
    free(last);
    free(elast);
    free(ids);
    free(dids);
    attn_ws_free(ws);
    cJSON_Delete(exp);
    attn_pretrained_free(m);
}
END_TEST

/* BartModel without decoder_input_ids shifts input_ids right behind decoder_start_token_id. */
START_TEST(bart_default_decoder_input_is_input_shifted_right)
{
    attn_pretrained *m = load_ok("bart-tiny");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    const int32_t ids[5] = {0, 10, 11, 12, 2};
    const int32_t shifted[5] = {info->decoder_start_token_id, 0, 10, 11, 12};
    const size_t E = info->hidden_size;
    float a[5 * 32], b[5 * 32];
    ck_assert_uint_eq(E, 32);
    attn_ws *ws = attn_ws_create(NULL);
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained_inputs in = {.input_ids = ids, .n = 5};
    attn_pretrained_outputs out = {.last_hidden_state = a};
    size_t n, nd;
    ck_assert_int_eq(attn_pretrained_lengths(m, &in, &n, &nd), ATTN_OK);
    ck_assert_uint_eq(nd, 5);
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    in.decoder_input_ids = shifted;
    in.n_dec = 5;
    out.last_hidden_state = b;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    ck_assert_mem_eq(a, b, sizeof a);
    attn_ws_free(ws);
    attn_pretrained_free(m);
}
END_TEST

/* ------------------------------------------------------------ outputs and selection */

/* Layer and head selection returns exactly those slices of the full stack, in the order asked. */
START_TEST(selection_returns_the_asked_layers_and_heads_in_order)
{
    attn_pretrained *m = load_ok("demo-gpt2");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    const size_t L = info->num_layers, H = info->num_heads, E = info->hidden_size, hd = E / H;
    const int32_t ids[6] = {330, 267, 265, 263, 265, 322};
    const size_t n = 6;
    float *full = malloc(L * H * n * n * sizeof(float)),
          *fq = malloc(L * H * n * hd * sizeof(float));
    float part[2 * 2 * 36], pq[2 * 2 * 6 * 32];
    ck_assert(full && fq && hd == 32);
    attn_ws *ws = attn_ws_create(NULL);
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained_inputs in = {.input_ids = ids, .n = n};
    attn_pretrained_outputs out = {.attentions = full, .q = fq};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    const size_t layers[2] = {2, 0}, heads[2] = {3, 1};
    attn_pretrained_select sel = {layers, 2, heads, 2};
    out = (attn_pretrained_outputs){.attentions = part, .q = pq};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, &sel, &out, err, sizeof err), ATTN_OK);
    /* equal up to rounding: a layer whose weights are not kept may take the engine's
     * other (fused) path, whose sums round differently */
    float worst = 0;
    for (size_t li = 0; li < 2; li++)
        for (size_t hi = 0; hi < 2; hi++) {
            const float *a = part + (li * 2 + hi) * n * n;
            const float *b = full + (layers[li] * H + heads[hi]) * n * n;
            for (size_t i = 0; i < n * n; i++)
                worst = fmaxf(worst, fabsf(a[i] - b[i]));
            a = pq + (li * 2 + hi) * n * hd;
            b = fq + (layers[li] * H + heads[hi]) * n * hd;
            for (size_t i = 0; i < n * hd; i++)
                worst = fmaxf(worst, fabsf(a[i] - b[i]));
        }
    ck_assert_msg(worst < 1e-5f, "selected slices differ by %g", (double)worst);
    /* out of range, repeated and empty selections are refused by name */
    const size_t bad_layer[1] = {3}, twice[2] = {1, 1};
    sel = (attn_pretrained_select){bad_layer, 1, NULL, 0};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, &sel, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "layers[0]"));
    sel = (attn_pretrained_select){NULL, 0, twice, 2};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, &sel, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "heads[1]"));
    sel = (attn_pretrained_select){bad_layer, 0, NULL, 0};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, &sel, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    free(full);
    free(fq);
    attn_ws_free(ws);
    attn_pretrained_free(m);
}
END_TEST

/* q and k reproduce the attentions: softmax(q k^T / sqrt(hd)) with the causal mask. */
START_TEST(q_and_k_reproduce_the_attention_weights)
{
    attn_pretrained *m = load_ok("gpt2-tiny");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    const size_t L = info->num_layers, H = info->num_heads, E = info->hidden_size, hd = E / H;
    const int32_t ids[7] = {283, 278, 262, 257, 317, 264, 277};
    const size_t n = 7;
    float *att = malloc(L * H * n * n * sizeof(float)), *q = malloc(L * H * n * hd * sizeof(float));
    float *k = malloc(L * H * n * hd * sizeof(float)), *v = malloc(L * H * n * hd * sizeof(float));
    float *hid = malloc((L + 1) * n * E * sizeof(float)), *last = malloc(n * E * sizeof(float));
    ck_assert(att && q && k && v && hid && last);
    attn_ws *ws = attn_ws_create(NULL);
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained_inputs in = {.input_ids = ids, .n = n};
    attn_pretrained_outputs out = {
        .attentions = att, .q = q, .k = k, .v = v, .hidden_states = hid, .last_hidden_state = last};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    double worst = 0;
    for (size_t lh = 0; lh < L * H; lh++)
        for (size_t i = 0; i < n; i++) {
            double s[7], mx = -1e300, sum = 0;
            for (size_t j = 0; j <= i; j++) {
                double d = 0;
                for (size_t c = 0; c < hd; c++)
                    d += (double)q[(lh * n + i) * hd + c] * k[(lh * n + j) * hd + c];
                s[j] = d / sqrt((double)hd);
                mx = fmax(mx, s[j]);
            }
            for (size_t j = 0; j <= i; j++)
                sum += (s[j] = exp(s[j] - mx));
            for (size_t j = 0; j < n; j++) {
                double w = j <= i ? s[j] / sum : 0.0;
                worst = fmax(worst, fabs(w - att[(lh * n + i) * n + j]));
            }
        }
    ck_assert_msg(worst < 1e-5, "softmax(q k^T) differs from the attentions by %g", worst);
    /* GPT-2's last hidden state is after ln_f, and so is the last of hidden_states */
    ck_assert_mem_eq(hid + L * n * E, last, n * E * sizeof(float));
    free(att);
    free(q);
    free(k);
    free(v);
    free(hid);
    free(last);
    attn_ws_free(ws);
    attn_pretrained_free(m);
}
END_TEST

/* BERT segments: token_type_ids change the result; an out-of-range one is refused. */
START_TEST(bert_token_type_ids_enter_the_embeddings)
{
    attn_pretrained *m = load_ok("bert-tiny");
    const int32_t ids[6] = {2, 5, 6, 3, 7, 3}, types[6] = {0, 0, 0, 0, 1, 1};
    const int32_t bad_types[6] = {0, 0, 0, 0, 2, 2};
    float a[6 * 32], b[6 * 32];
    attn_ws *ws = attn_ws_create(NULL);
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained_inputs in = {.input_ids = ids, .n = 6};
    attn_pretrained_outputs out = {.last_hidden_state = a};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    in.token_type_ids = types;
    out.last_hidden_state = b;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    ck_assert(memcmp(a, b, 4 * 32 * sizeof(float)) != 0);
    in.token_type_ids = bad_types;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "token_type_ids[4]"));
    attn_ws_free(ws);
    attn_pretrained_free(m);
}
END_TEST

START_TEST(bad_inputs_are_refused_with_the_input_named)
{
    attn_pretrained *m = load_ok("gpt2-tiny");
    const attn_pretrained_info *info = attn_pretrained_get_info(m);
    attn_ws *ws = attn_ws_create(NULL);
    char err[ATTN_MODEL_ERR_SIZE];
    float last[65 * 32];
    int32_t ids[65];
    for (size_t i = 0; i < 65; i++)
        ids[i] = 5;
    attn_pretrained_outputs out = {.last_hidden_state = last};
    attn_pretrained_inputs in = {.input_ids = ids, .n = info->max_positions + 1};
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "max_position_embeddings"));
    in.n = info->max_positions; /* the longest sequence works */
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    in.n = 0;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ids[2] = (int32_t)info->vocab_size;
    in.n = 4;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "input_ids[2]"));
    ids[2] = -1;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ids[2] = 5;
    float cross[16];
    out.cross_attentions = cross;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    out.cross_attentions = NULL;
    float px[3];
    in.pixel_values = px;
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    in.pixel_values = NULL;
    ck_assert_int_eq(attn_pretrained_forward(NULL, ws, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pretrained_forward(m, NULL, &in, NULL, &out, err, sizeof err),
                     ATTN_ERR_INVALID);
    attn_ws_free(ws);
    attn_pretrained_free(m);
}
END_TEST

/* ------------------------------------------------------------ refused folders */

static void al_free(void *p, void *user);

static char g_dir[256];

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    ck_assert_msg(a && b, "copy %s -> %s", from, to);
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, a)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, got, b), got);
    fclose(a);
    fclose(b);
}

/* A scratch copy of a model folder in g_dir, with config.json replaced by config (when not NULL).
 */
static void make_folder(const char *model, const char *const *files, const char *config)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/attn_arch_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    for (size_t i = 0; files[i]; i++) {
        char from[512], to[512];
        snprintf(from, sizeof from, "%s/%s/%s", MODELS, model, files[i]);
        snprintf(to, sizeof to, "%s/%s", g_dir, files[i]);
        copy_file(from, to);
    }
    if (config) {
        char to[512];
        snprintf(to, sizeof to, "%s/config.json", g_dir);
        FILE *f = fopen(to, "wb");
        ck_assert_ptr_nonnull(f);
        fputs(config, f);
        fclose(f);
    }
}

static void remove_folder(void)
{
    static const char *const names[] = {
        "config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
        "vocab.json",  "merges.txt",        NULL};
    for (size_t i = 0; names[i]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    rmdir(g_dir);
}

/* The golden gpt2-tiny config with one change. */
static char *gpt2_config_with(const char *key, const char *value_json)
{
    cJSON *c = load_json(MODELS "/gpt2-tiny/config.json");
    ck_assert_ptr_nonnull(c);
    cJSON_DeleteItemFromObjectCaseSensitive(c, key);
    if (value_json)
        cJSON_AddItemToObject(c, key, cJSON_Parse(value_json));
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

typedef struct bad_case {
    const char *key;   /* config key changed (NULL: none) */
    const char *value; /* its new JSON value (NULL: removed) */
    attn_status rc;
    const char *says[2]; /* the message names these */
} bad_case;

static const bad_case bad_cases[] = {
    {"n_embd", NULL, ATTN_ERR_FORMAT, {"config.json", "'n_embd' is missing"}},
    {"n_layer", "\"two\"", ATTN_ERR_FORMAT, {"config.json", "n_layer"}},
    {"n_head", "5", ATTN_ERR_INVALID, {"config.json", "does not divide"}},
    {"n_embd", "48", ATTN_ERR_SHAPE, {"model.safetensors", "wte.weight"}},
    {"n_inner", "100", ATTN_ERR_SHAPE, {"model.safetensors", "h.0.mlp.c_fc.weight"}},
    {"n_layer", "3", ATTN_ERR_FORMAT, {"model.safetensors", "'h.2.ln_1.weight' is missing"}},
    {"vocab_size", "300", ATTN_ERR_SHAPE, {"model.safetensors", "wte.weight"}},
    {"activation_function", "\"swish\"", ATTN_ERR_UNSUPPORTED, {"config.json", "swish"}},
    {"model_type", "\"llama\"", ATTN_ERR_UNSUPPORTED, {"config.json", "llama"}},
    {"model_type", NULL, ATTN_ERR_FORMAT, {"config.json", "model_type"}},
    {"add_cross_attention", "true", ATTN_ERR_UNSUPPORTED, {"config.json", "add_cross_attention"}},
};
#define N_BAD_CASES (sizeof bad_cases / sizeof bad_cases[0])

START_TEST(inconsistent_folder_is_refused_naming_file_and_item)
{
    const bad_case *bc = &bad_cases[_i];
    static const char *const files[] = {"model.safetensors", "vocab.json", "merges.txt", NULL};
    char *config = gpt2_config_with(bc->key, bc->value);
    make_folder("gpt2-tiny", files, config);
    free(config);
    attn_pretrained *m = (attn_pretrained *)g_dir;
    char err[ATTN_MODEL_ERR_SIZE];
    attn_status rc = attn_pretrained_load(g_dir, NULL, &m, err, sizeof err);
    remove_folder();
    ck_assert_msg(rc == bc->rc, "%s=%s: got %s (%s)", bc->key, bc->value ? bc->value : "(removed)",
                  attn_status_str(rc), err);
    ck_assert_ptr_null(m);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(strstr(err, bc->says[i]) != NULL, "\"%s\" lacks \"%s\"", err, bc->says[i]);
}
END_TEST

START_TEST(missing_and_malformed_files_are_refused)
{
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained *m = NULL;
    /* no folder at all */
    ck_assert_int_eq(attn_pretrained_load("/nonexistent/model", NULL, &m, err, sizeof err),
                     ATTN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/model/config.json"));
    /* no weights */
    static const char *const none[] = {NULL};
    make_folder("bert-tiny", none, "{\"model_type\": \"bert\"}");
    ck_assert_int_eq(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "'hidden_size' is missing"));
    remove_folder();
    static const char *const cfg_only[] = {"config.json", NULL};
    make_folder("bert-tiny", cfg_only, NULL);
    ck_assert_int_eq(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "model.safetensors"));
    remove_folder();
    /* config.json that is not JSON */
    make_folder("bert-tiny", none, "{\"model_type\": \"bert\",");
    ck_assert_int_eq(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "config.json: not valid JSON"));
    remove_folder();
    /* truncated weights */
    static const char *const files[] = {"config.json", "model.safetensors", NULL};
    make_folder("bert-tiny", files, NULL);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", g_dir);
    ck_assert_int_eq(truncate(p, 5000), 0);
    ck_assert_int_ne(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_OK);
    ck_assert_ptr_nonnull(strstr(err, "model.safetensors"));
    ck_assert_ptr_null(m);
    remove_folder();
    /* a tokenizer whose ids do not fit the embeddings */
    static const char *const with_vocab[] = {"config.json", "model.safetensors", "vocab.txt", NULL};
    make_folder("bert-tiny", with_vocab, NULL);
    snprintf(p, sizeof p, "%s/vocab.txt", g_dir);
    FILE *f = fopen(p, "ab");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 10; i++)
        fprintf(f, "extra%d\n", i);
    fclose(f);
    ck_assert_int_eq(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "vocab.txt"));
    ck_assert_ptr_nonnull(strstr(err, "vocab_size"));
    remove_folder();
    /* arguments */
    ck_assert_int_eq(attn_pretrained_load(NULL, NULL, &m, err, sizeof err), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_pretrained_load(MODELS "/bert-tiny", NULL, NULL, err, sizeof err),
                     ATTN_ERR_INVALID);
    attn_allocator half = {NULL, al_free, NULL};
    ck_assert_int_eq(attn_pretrained_load(MODELS "/bert-tiny", &half, &m, err, sizeof err),
                     ATTN_ERR_INVALID);
    attn_pretrained_free(NULL);
    ck_assert_ptr_null(attn_pretrained_get_info(NULL));
    ck_assert_ptr_null(attn_pretrained_tokenizer(NULL));
    ck_assert_str_eq(attn_arch_name(ATTN_ARCH_BART), "bart");
}
END_TEST

/* Without a vocabulary file the model still loads (ids in, no text). A WordPiece
 * vocabulary without tokenizer files is lower-cased, as BertTokenizer's default. */
START_TEST(tokenizer_files_are_optional_and_default_to_lowercase)
{
    static const char *const no_tok[] = {"config.json", "model.safetensors", NULL};
    make_folder("bert-tiny", no_tok, NULL);
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained *m = NULL;
    ck_assert_int_eq(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_OK);
    ck_assert_ptr_null(attn_pretrained_tokenizer(m));
    attn_pretrained_free(m);
    remove_folder();
    static const char *const vocab_only[] = {"config.json", "model.safetensors", "vocab.txt", NULL};
    make_folder("bert-tiny", vocab_only, NULL);
    ck_assert_int_eq(attn_pretrained_load(g_dir, NULL, &m, err, sizeof err), ATTN_OK);
    remove_folder();
    attn_encoding *enc = NULL;
    ck_assert_int_eq(attn_tokenizer_encode(attn_pretrained_tokenizer(m), "THE Cat", 7, NULL, 0,
                                           true, &enc, err, sizeof err),
                     ATTN_OK);
    ck_assert_uint_eq(enc->n_tokens, 4);
    ck_assert_int_eq(enc->ids[1], 5);
    ck_assert_int_eq(enc->ids[2], 6);
    attn_encoding_free(enc);
    attn_pretrained_free(m);
}
END_TEST

/* Checkpoints converted from TensorFlow name LayerNorm parameters gamma and beta: the
 * same numbers load under those names (the header is rewritten, padded to its length). */
START_TEST(layer_norm_gamma_beta_names_load_as_weight_bias)
{
    static const char *const files[] = {"config.json", "model.safetensors", NULL};
    make_folder("bert-tiny", files, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    unsigned char len8[8];
    ck_assert_uint_eq(fread(len8, 1, 8, f), 8);
    size_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen * 256 + len8[i];
    char *h = malloc(hlen + 1), *out = malloc(hlen + 1);
    ck_assert(h && out);
    ck_assert_uint_eq(fread(h, 1, hlen, f), hlen);
    h[hlen] = '\0';
    size_t o = 0, renamed = 0;
    for (size_t i = 0; i < hlen;) {
        if (strncmp(h + i, "LayerNorm.weight\"", 17) == 0) {
            memcpy(out + o, "LayerNorm.gamma\"", 16);
            o += 16;
            i += 17;
            renamed++;
        } else if (strncmp(h + i, "LayerNorm.bias\"", 15) == 0) {
            memcpy(out + o, "LayerNorm.beta\"", 15);
            o += 15;
            i += 15;
        } else {
            out[o++] = h[i++];
        }
    }
    ck_assert_uint_eq(renamed, 5); /* the embeddings' and two per layer */
    while (o < hlen)
        out[o++] = ' ';
    ck_assert_int_eq(fseek(f, 8, SEEK_SET), 0);
    ck_assert_uint_eq(fwrite(out, 1, hlen, f), hlen);
    fclose(f);
    free(h);
    free(out);

    attn_pretrained *a = load_ok("bert-tiny"), *b = NULL;
    char err[ATTN_MODEL_ERR_SIZE];
    attn_status rc = attn_pretrained_load(g_dir, NULL, &b, err, sizeof err);
    remove_folder();
    ck_assert_msg(rc == ATTN_OK, "%s", err);
    const int32_t ids[5] = {2, 5, 6, 7, 3};
    float ya[5 * 32], yb[5 * 32];
    attn_ws *ws = attn_ws_create(NULL);
    attn_pretrained_inputs in = {.input_ids = ids, .n = 5};
    attn_pretrained_outputs out_a = {.last_hidden_state = ya}, out_b = {.last_hidden_state = yb};
    ck_assert_int_eq(attn_pretrained_forward(a, ws, &in, NULL, &out_a, err, sizeof err), ATTN_OK);
    ck_assert_int_eq(attn_pretrained_forward(b, ws, &in, NULL, &out_b, err, sizeof err), ATTN_OK);
    ck_assert_mem_eq(ya, yb, sizeof ya);
    attn_ws_free(ws);
    attn_pretrained_free(a);
    attn_pretrained_free(b);
}
END_TEST

/* ------------------------------------------------------------ memory */

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

/* Each allocation of a load (the library's and cJSON's) fails in turn: NOMEM, nothing leaked. */
static void load_fails_cleanly_at_every_allocation(const char *name)
{
    char dir[512], err[ATTN_MODEL_ERR_SIZE];
    snprintf(dir, sizeof dir, "%s/%s", MODELS, name);
    cJSON_Hooks h = {count_malloc, count_free};
    cJSON_InitHooks(&h);
    memset(&g_count, 0, sizeof g_count);
    attn_pretrained *m = NULL;
    ck_assert_int_eq(attn_pretrained_load(dir, &COUNTING, &m, err, sizeof err), ATTN_OK);
    attn_pretrained_free(m);
    const size_t total = g_count.n_calls;
    ck_assert_uint_eq(g_count.n_ok, g_count.n_free);
    for (size_t fail = 1; fail <= total; fail++) {
        memset(&g_count, 0, sizeof g_count);
        g_count.fail_at = fail;
        attn_status rc = attn_pretrained_load(dir, &COUNTING, &m, err, sizeof err);
        ck_assert_msg(rc == ATTN_ERR_NOMEM, "%s: failure %zu of %zu: %s (%s)", name, fail, total,
                      attn_status_str(rc), err);
        ck_assert_ptr_null(m);
        ck_assert_msg(g_count.n_ok == g_count.n_free, "%s: failure %zu: %zu allocations, %zu frees",
                      name, fail, g_count.n_ok, g_count.n_free);
    }
    cJSON_InitHooks(NULL);
}

START_TEST(load_each_failed_allocation_returns_nomem_without_leaks)
{
    load_fails_cleanly_at_every_allocation("bert-tiny");
    load_fails_cleanly_at_every_allocation("gpt2-tiny");
    load_fails_cleanly_at_every_allocation("bart-tiny");
}
END_TEST

/* Each allocation of a forward pass (workspace growth) fails in turn: NOMEM, then the same
 * workspace computes the right answer. */
START_TEST(forward_each_failed_allocation_returns_nomem_and_recovers)
{
    attn_pretrained *m = load_ok("bart-tiny");
    const int32_t ids[6] = {0, 10, 11, 12, 13, 2};
    float want[6 * 32], got[6 * 32], att[2 * 4 * 36];
    char err[ATTN_MODEL_ERR_SIZE];
    attn_pretrained_inputs in = {.input_ids = ids, .n = 6};
    attn_pretrained_outputs out = {.last_hidden_state = want, .cross_attentions = att, .q = NULL};
    attn_ws *ws = attn_ws_create(NULL);
    ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
    attn_ws_free(ws);
    out.last_hidden_state = got;
    size_t total = 0;
    for (size_t fail = 1;; fail++) {
        memset(&g_count, 0, sizeof g_count);
        g_count.fail_at = fail;
        ws = attn_ws_create(&COUNTING);
        if (!ws) { /* the workspace itself was the failed allocation */
            ck_assert_uint_eq(fail, 1);
            continue;
        }
        attn_status rc = attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err);
        if (rc == ATTN_OK) {
            total = fail;
            ck_assert_mem_eq(got, want, sizeof want);
            attn_ws_free(ws);
            ck_assert_uint_eq(g_count.n_ok, g_count.n_free);
            break;
        }
        ck_assert_msg(rc == ATTN_ERR_NOMEM, "failure %zu: %s", fail, attn_status_str(rc));
        g_count.fail_at = 0; /* the same workspace then recovers */
        ck_assert_int_eq(attn_pretrained_forward(m, ws, &in, NULL, &out, err, sizeof err), ATTN_OK);
        ck_assert_mem_eq(got, want, sizeof want);
        attn_ws_free(ws);
        ck_assert_uint_eq(g_count.n_ok, g_count.n_free);
        ck_assert_uint_lt(fail, 1000);
    }
    ck_assert_uint_gt(total, 2);
    attn_pretrained_free(m);
}
END_TEST

static Suite *arch_suite(void)
{
    Suite *s = suite_create("model_arch");
    TCase *tg = tcase_create("golden");
    tcase_set_timeout(tg, 120);
    tcase_add_test(tg, bert_tiny_every_run_matches_huggingface);
    tcase_add_test(tg, gpt2_tiny_every_run_matches_huggingface);
    tcase_add_test(tg, demo_gpt2_every_run_matches_huggingface);
    tcase_add_test(tg, bert_tiny_padded_batch_matches_with_attention_mask);
    tcase_add_test(tg, vit_tiny_matches_huggingface);
    tcase_add_test(tg, bart_tiny_matches_huggingface);
    tcase_add_test(tg, bart_default_decoder_input_is_input_shifted_right);
    suite_add_tcase(s, tg);
    TCase *to = tcase_create("outputs");
    tcase_add_test(to, selection_returns_the_asked_layers_and_heads_in_order);
    tcase_add_test(to, q_and_k_reproduce_the_attention_weights);
    tcase_add_test(to, bert_token_type_ids_enter_the_embeddings);
    tcase_add_test(to, bad_inputs_are_refused_with_the_input_named);
    suite_add_tcase(s, to);
    TCase *tb = tcase_create("refused");
    tcase_add_loop_test(tb, inconsistent_folder_is_refused_naming_file_and_item, 0, N_BAD_CASES);
    tcase_add_test(tb, missing_and_malformed_files_are_refused);
    tcase_add_test(tb, tokenizer_files_are_optional_and_default_to_lowercase);
    tcase_add_test(tb, layer_norm_gamma_beta_names_load_as_weight_bias);
    suite_add_tcase(s, tb);
    TCase *tm = tcase_create("memory");
    tcase_set_timeout(tm, 300);
    tcase_add_test(tm, load_each_failed_allocation_returns_nomem_without_leaks);
    tcase_add_test(tm, forward_each_failed_allocation_returns_nomem_and_recovers);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(arch_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
