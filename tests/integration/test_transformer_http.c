/* test_transformer_http.c - /v1/transformer/encoder and /decoder through HTTP against torch.nn. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

#define CASES_PATH ATTN_TEST_DATA "/layer_cases.json"
#define TOL 1e-4
#define ENCODER "/v1/transformer/encoder"
#define DECODER "/v1/transformer/decoder"

/* Parsed once in main; the forked test processes inherit it. */
static cJSON *golden;

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static const char *str_member(const cJSON *obj, const char *key)
{
    const cJSON *s = member(obj, key);
    return cJSON_IsString(s) ? s->valuestring : "?";
}

/* Posts req, asserts 200 and the timing headers, returns the parsed answer. */
static cJSON *post_ok(const it_server *s, const char *path, const cJSON *req, const char *ctx)
{
    it_resp r;
    it_post_json_ok(s, path, req, &r);
    ck_assert_msg(r.status == 200, "%s: %s", ctx, it_resp_describe(&r));
    ck_assert_msg(it_is_ms_value(r.inference_time) && it_is_ms_value(r.total_time),
                  "%s: X-Inference-Time / X-Total-Time missing or not numeric", ctx);
    cJSON *j = it_resp_json_ok(&r);
    it_resp_free(&r);
    return j;
}

/* Answer member name against an expected nested list, within TOL. */
static void expect_tensor(const cJSON *answer, const char *name, const cJSON *expected,
                          const char *ctx)
{
    const cJSON *item = member(answer, name);
    ck_assert_msg(item != NULL, "%s: the answer has no \"%s\"", ctx, name);
    it_tensor t;
    char why[512];
    ck_assert_msg(it_tensor_read(item, &t, why, sizeof why), "%s: \"%s\": %s", ctx, name, why);
    bool ok = it_tensor_close(&t, expected, TOL, true, why, sizeof why);
    it_tensor_free(&t);
    ck_assert_msg(ok, "%s: \"%s\" %s", ctx, name, why);
}

/* Two answers' member name agree within tol (same shape). */
static void expect_same(const cJSON *a, const cJSON *b, const char *name, double tol,
                        const char *ctx)
{
    ck_assert_msg(member(a, name) && member(b, name), "%s: \"%s\" missing", ctx, name);
    char why[512];
    bool ok = it_json_match(member(a, name), member(b, name), tol, 0, why, sizeof why);
    ck_assert_msg(ok, "%s: \"%s\" differs at %s", ctx, name, why);
}

static cJSON *wrap(const cJSON *x)
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_Duplicate(x, 1));
    return a;
}

static void add_float_input(cJSON *req, const char *key, const cJSON *list, bool b64)
{
    cJSON *o = b64 ? it_tensor_object_from_list(list) : cJSON_Duplicate(list, 1);
    ck_assert_ptr_nonnull(o);
    cJSON_AddItemToObject(req, key, o);
}

/* The request for a golden case: its hyper-parameters, inputs and state_dict. */
static cJSON *case_request(const cJSON *c, bool b64)
{
    const bool decoder = strcmp(str_member(c, "kind"), "decoder_layer") == 0;
    cJSON *req = cJSON_CreateObject();
    if (decoder) {
        add_float_input(req, "target", member(c, "target"), b64);
        add_float_input(req, "memory", member(c, "memory"), b64);
    } else {
        add_float_input(req, "input", member(c, "input"), b64);
    }
    cJSON_AddNumberToObject(req, "nhead", member(c, "nhead")->valuedouble);
    cJSON_AddNumberToObject(req, "dim_feedforward", member(c, "dim_feedforward")->valuedouble);
    cJSON_AddStringToObject(req, "activation", str_member(c, "activation"));
    cJSON_AddBoolToObject(req, "norm_first", cJSON_IsTrue(member(c, "norm_first")));
    if (cJSON_IsNumber(member(c, "layer_norm_eps")))
        cJSON_AddNumberToObject(req, "layer_norm_eps", member(c, "layer_norm_eps")->valuedouble);
    if (cJSON_IsNumber(member(c, "num_layers")))
        cJSON_AddNumberToObject(req, "num_layers", member(c, "num_layers")->valuedouble);
    if (cJSON_IsTrue(member(c, "final_norm")))
        cJSON_AddTrueToObject(req, "final_norm");
    if (cJSON_IsTrue(member(c, "causal")))
        cJSON_AddTrueToObject(req, "causal");
    cJSON *sd = cJSON_CreateObject();
    for (const cJSON *it = member(c, "state_dict")->child; it; it = it->next)
        add_float_input(sd, it->string, it, b64);
    cJSON_AddItemToObject(req, "weights", sd);
    if (b64)
        cJSON_AddStringToObject(req, "encoding", "base64");
    return req;
}

static void run_case(const it_server *s, const cJSON *c, bool b64)
{
    char ctx[160];
    const char *kind = str_member(c, "kind");
    const bool decoder = strcmp(kind, "decoder_layer") == 0;
    const bool stacked = strcmp(kind, "encoder_stack") == 0;
    snprintf(ctx, sizeof ctx, "%s (%s)", str_member(c, "name"), b64 ? "base64" : "json");
    cJSON *req = case_request(c, b64);
    cJSON *j = post_ok(s, decoder ? DECODER : ENCODER, req, ctx);
    const cJSON *exp = member(c, "expected");
    expect_tensor(j, "output", member(exp, "output"), ctx);
    /* per layer [L][H][n][m]: a single layer's [H][n][m] gains L = 1 */
    cJSON *sw = stacked ? cJSON_Duplicate(member(exp, "self_attn_weights"), 1)
                        : wrap(member(exp, "self_attn_weights"));
    expect_tensor(j, decoder ? "self_attentions" : "attentions", sw, ctx);
    cJSON_Delete(sw);
    if (decoder) {
        cJSON *cw = wrap(member(exp, "cross_attn_weights"));
        expect_tensor(j, "cross_attentions", cw, ctx);
        cJSON_Delete(cw);
    }
    const cJSON *meta = member(j, "meta");
    const double E = member(c, "d_model")->valuedouble, H = member(c, "nhead")->valuedouble;
    ck_assert_msg(fabs(member(meta, "scale")->valuedouble - 1.0 / sqrt(E / H)) < 1e-6,
                  "%s: meta.scale", ctx);
    ck_assert_str_eq(str_member(meta, "weights_source"), "state_dict");
    ck_assert_str_eq(str_member(meta, "activation"), str_member(c, "activation"));
    ck_assert(cJSON_IsTrue(member(meta, "final_norm")) == cJSON_IsTrue(member(c, "final_norm")));
    ck_assert(cJSON_IsNumber(member(meta, "elapsed_ms")));
    cJSON_Delete(j);
    cJSON_Delete(req);
}

START_TEST(golden_layer_cases_match_torch_json_and_base64)
{
    const cJSON *cases = member(golden, "cases");
    ck_assert_msg(cJSON_GetArraySize(cases) >= 9, "cannot read the cases of %s", CASES_PATH);
    it_server *s = it_start_ok(NULL);
    int kinds[3] = {0, 0, 0};
    for (const cJSON *c = cases->child; c; c = c->next) {
        const char *kind = str_member(c, "kind");
        kinds[strcmp(kind, "encoder_layer") == 0   ? 0
              : strcmp(kind, "decoder_layer") == 0 ? 1
                                                   : 2]++;
        run_case(s, c, false);
        run_case(s, c, true);
    }
    ck_assert(kinds[0] >= 4 && kinds[1] >= 4 && kinds[2] >= 1);
    it_stop_ok(s);
}
END_TEST

/* The stack case by its kind. */
static const cJSON *case_of_kind(const char *kind)
{
    for (const cJSON *c = member(golden, "cases")->child; c; c = c->next)
        if (strcmp(str_member(c, "kind"), kind) == 0)
            return c;
    ck_abort_msg("no %s case", kind);
    return NULL;
}

START_TEST(single_layer_accepts_unprefixed_and_layers_0_keys)
{
    const cJSON *c = case_of_kind("encoder_layer");
    it_server *s = it_start_ok(NULL);
    cJSON *plain = case_request(c, false);
    cJSON *prefixed = case_request(c, false);
    cJSON *sd = cJSON_CreateObject();
    for (const cJSON *it = member(c, "state_dict")->child; it; it = it->next) {
        char key[128];
        snprintf(key, sizeof key, "layers.0.%s", it->string);
        cJSON_AddItemToObject(sd, key, cJSON_Duplicate(it, 1));
    }
    cJSON_ReplaceItemInObject(prefixed, "weights", sd);
    cJSON *a = post_ok(s, ENCODER, plain, "unprefixed");
    cJSON *b = post_ok(s, ENCODER, prefixed, "layers.0.");
    expect_same(a, b, "output", 0, "prefixes");
    expect_same(a, b, "attentions", 0, "prefixes");
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(plain);
    cJSON_Delete(prefixed);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ seeded, batched */

static cJSON *matrix(size_t rows, size_t cols, double a, double b)
{
    float *x = malloc(rows * cols * sizeof(float));
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < rows * cols; i++)
        x[i] = (float)sin(a * (double)i + b);
    const size_t shape[2] = {rows, cols};
    cJSON *m = it_list_from_floats(x, 2, shape);
    free(x);
    return m;
}

static cJSON *seeded_encoder(cJSON *input, long long seed)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "input", input);
    cJSON_AddNumberToObject(req, "nhead", 2);
    cJSON_AddNumberToObject(req, "num_layers", 2);
    cJSON_AddNumberToObject(req, "dim_feedforward", 16);
    cJSON_AddStringToObject(req, "activation", "gelu");
    cJSON_AddNumberToObject(req, "seed", (double)seed);
    return req;
}

START_TEST(seeded_requests_are_deterministic_batched_equals_one_by_one)
{
    it_server *s = it_start_ok(NULL);
    cJSON *x0 = matrix(5, 8, 0.3, 0.1), *x1 = matrix(5, 8, 0.7, 2.0);
    cJSON *r0 = seeded_encoder(cJSON_Duplicate(x0, 1), 7);
    cJSON *a = post_ok(s, ENCODER, r0, "seed 7");
    cJSON *b = post_ok(s, ENCODER, r0, "seed 7 again");
    expect_same(a, b, "output", 0, "same seed");
    expect_same(a, b, "attentions", 0, "same seed");
    const cJSON *meta = member(a, "meta");
    ck_assert_str_eq(str_member(meta, "weights_source"), "seed");
    ck_assert_int_eq((int)member(meta, "seed")->valuedouble, 7);
    ck_assert(cJSON_IsFalse(member(meta, "final_norm")));
    ck_assert(cJSON_IsTrue(member(meta, "bias")));
    ck_assert_int_eq((int)member(meta, "dim_feedforward")->valuedouble, 16);
    ck_assert(fabs(member(meta, "layer_norm_eps")->valuedouble - 1e-5) < 1e-12);

    cJSON *r8 = seeded_encoder(cJSON_Duplicate(x0, 1), 8);
    cJSON *c8 = post_ok(s, ENCODER, r8, "seed 8");
    char why[256];
    ck_assert_msg(
        !it_json_match(member(a, "output"), member(c8, "output"), 1e-6, 0, why, sizeof why),
        "seeds 7 and 8 gave the same output");

    /* [2][n][E]: each batch element as if sent alone, with its own key padding */
    cJSON *r1 = seeded_encoder(cJSON_Duplicate(x1, 1), 7);
    cJSON *pad1 = cJSON_Parse("[false, false, false, true, true]");
    cJSON_AddItemToObject(r1, "key_padding_mask", cJSON_Duplicate(pad1, 1));
    cJSON *one = post_ok(s, ENCODER, r1, "second alone");
    cJSON *batch = cJSON_CreateArray();
    cJSON_AddItemToArray(batch, cJSON_Duplicate(x0, 1));
    cJSON_AddItemToArray(batch, cJSON_Duplicate(x1, 1));
    cJSON *rb = seeded_encoder(batch, 7);
    cJSON *pads = cJSON_Parse("[[false, false, false, false, false], "
                              "[false, false, false, true, true]]");
    cJSON_AddItemToObject(rb, "key_padding_mask", pads);
    cJSON *ab = post_ok(s, ENCODER, rb, "batched");
    const cJSON *outs = member(ab, "output"), *atts = member(ab, "attentions");
    ck_assert_int_eq(cJSON_GetArraySize(outs), 2);
    ck_assert_msg(
        it_json_match(cJSON_GetArrayItem(outs, 0), member(a, "output"), 1e-6, 0, why, sizeof why),
        "batch 0: %s", why);
    ck_assert_msg(
        it_json_match(cJSON_GetArrayItem(outs, 1), member(one, "output"), 1e-6, 0, why, sizeof why),
        "batch 1: %s", why);
    ck_assert_msg(it_json_match(cJSON_GetArrayItem(atts, 1), member(one, "attentions"), 1e-6, 0,
                                why, sizeof why),
                  "batch 1 attentions: %s", why);
    /* padded keys get weight 0 in every layer and head */
    it_tensor t;
    ck_assert(it_tensor_read(member(one, "attentions"), &t, why, sizeof why));
    ck_assert_uint_eq(t.rank, 4);
    for (size_t i = 0; i < t.size; i++)
        if (i % 5 >= 3)
            ck_assert_float_eq(t.data[i], 0.0f);
    it_tensor_free(&t);
    ck_assert_int_eq((int)member(member(ab, "meta"), "batch")->valuedouble, 2);

    /* return: output only */
    cJSON_AddItemToObject(r0, "return", cJSON_Parse("[\"output\"]"));
    cJSON *o = post_ok(s, ENCODER, r0, "output only");
    ck_assert_ptr_nonnull(member(o, "output"));
    ck_assert_ptr_null(member(o, "attentions"));
    /* up to rounding: without weights the engine runs its flash path */
    expect_same(a, o, "output", 1e-5, "return output only");

    cJSON *all[] = {x0, x1, r0, a, b, r8, c8, r1, pad1, one, rb, ab, o};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cJSON_Delete(all[i]);
    it_stop_ok(s);
}
END_TEST

START_TEST(seeded_decoder_causal_and_memory_padding_batched)
{
    it_server *s = it_start_ok(NULL);
    cJSON *tgt = matrix(4, 8, 0.4, 0.3), *mem = matrix(3, 8, 0.9, 1.0);
    const char *body_fmt = "{\"nhead\": 4, \"num_layers\": 2, \"dim_feedforward\": 12, "
                           "\"norm_first\": true, \"final_norm\": true, \"seed\": 3, "
                           "\"causal\": true}";
    cJSON *req = cJSON_Parse(body_fmt);
    cJSON_AddItemToObject(req, "target", cJSON_Duplicate(tgt, 1));
    cJSON_AddItemToObject(req, "memory", cJSON_Duplicate(mem, 1));
    cJSON_AddItemToObject(req, "memory_key_padding_mask", cJSON_Parse("[false, false, true]"));
    cJSON *a = post_ok(s, DECODER, req, "decoder");
    it_tensor sw, cw;
    char why[256];
    ck_assert(it_tensor_read(member(a, "self_attentions"), &sw, why, sizeof why));
    ck_assert(it_tensor_read(member(a, "cross_attentions"), &cw, why, sizeof why));
    ck_assert_uint_eq(sw.rank, 4);
    ck_assert_uint_eq(sw.shape[0], 2);
    ck_assert_uint_eq(sw.shape[1], 4);
    ck_assert_uint_eq(cw.shape[3], 3);
    for (size_t i = 0; i < sw.size; i++) /* causal: row r sees keys <= r */
        if (i % 4 > (i / 4) % 4)
            ck_assert_float_eq(sw.data[i], 0.0f);
    for (size_t i = 0; i < cw.size; i++)
        if (i % 3 == 2)
            ck_assert_float_eq(cw.data[i], 0.0f);
    it_tensor_free(&sw);
    it_tensor_free(&cw);
    const cJSON *meta = member(a, "meta");
    ck_assert_str_eq(str_member(meta, "causal"), "top_left");
    ck_assert_int_eq(cJSON_GetArraySize(member(meta, "memory_masks")), 1);
    ck_assert_int_eq((int)member(meta, "memory_length")->valuedouble, 3);

    /* batched: two copies, the second without memory padding */
    cJSON *rb = cJSON_Parse(body_fmt);
    cJSON *tb = cJSON_CreateArray(), *mb = cJSON_CreateArray();
    for (int i = 0; i < 2; i++) {
        cJSON_AddItemToArray(tb, cJSON_Duplicate(tgt, 1));
        cJSON_AddItemToArray(mb, cJSON_Duplicate(mem, 1));
    }
    cJSON_AddItemToObject(rb, "target", tb);
    cJSON_AddItemToObject(rb, "memory", mb);
    cJSON_AddItemToObject(rb, "memory_key_padding_mask",
                          cJSON_Parse("[[false, false, true], [false, false, false]]"));
    cJSON *ab = post_ok(s, DECODER, rb, "decoder batched");
    const cJSON *outs = member(ab, "output");
    ck_assert_msg(
        it_json_match(cJSON_GetArrayItem(outs, 0), member(a, "output"), 1e-6, 0, why, sizeof why),
        "batch 0: %s", why);
    ck_assert_msg(
        !it_json_match(cJSON_GetArrayItem(outs, 1), member(a, "output"), 1e-6, 0, why, sizeof why),
        "batch 1 ignored its own memory padding");
    cJSON *all[] = {tgt, mem, req, a, rb, ab};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cJSON_Delete(all[i]);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ positional */

START_TEST(positional_sinusoidal_is_the_table_added_and_alibi_is_its_bias)
{
    it_server *s = it_start_ok(NULL);
    const size_t n = 6, E = 8, H = 2;
    cJSON *x = matrix(n, E, 0.5, 0.2);
    /* sinusoidal: same as adding PE(pos, 2i) = sin(pos / 10000^(2i/E)), PE(pos, 2i+1) = cos */
    cJSON *rp = seeded_encoder(cJSON_Duplicate(x, 1), 11);
    cJSON_AddItemToObject(rp, "positional", cJSON_Parse("{\"type\": \"sinusoidal\"}"));
    cJSON *a = post_ok(s, ENCODER, rp, "sinusoidal");
    float *xp = malloc(n * E * sizeof(float));
    ck_assert_ptr_nonnull(xp);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < E; j++) {
            const double ang = (double)i / pow(10000.0, (double)(j - j % 2) / (double)E);
            xp[i * E + j] =
                (float)(cJSON_GetArrayItem(cJSON_GetArrayItem(x, (int)i), (int)j)->valuedouble +
                        (j % 2 ? cos(ang) : sin(ang)));
        }
    const size_t shape[2] = {n, E};
    cJSON *rs = seeded_encoder(it_list_from_floats(xp, 2, shape), 11);
    cJSON *b = post_ok(s, ENCODER, rs, "table added by hand");
    expect_same(a, b, "output", 2e-5, "sinusoidal");
    expect_same(a, b, "attentions", 2e-5, "sinusoidal");
    ck_assert_str_eq(str_member(member(member(a, "meta"), "positional"), "type"), "sinusoidal");

    /* alibi: the same as attn_bias [H][n][n] = -slope_h |i - j| in every layer */
    cJSON *ra = seeded_encoder(cJSON_Duplicate(x, 1), 11);
    cJSON_AddItemToObject(ra, "positional", cJSON_Parse("{\"type\": \"alibi\"}"));
    cJSON *c = post_ok(s, ENCODER, ra, "alibi");
    const cJSON *slopes = member(member(member(c, "meta"), "positional"), "slopes");
    ck_assert_int_eq(cJSON_GetArraySize(slopes), (int)H);
    float *bias = malloc(H * n * n * sizeof(float));
    ck_assert_ptr_nonnull(bias);
    for (size_t h = 0; h < H; h++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                bias[(h * n + i) * n + j] =
                    -(float)cJSON_GetArrayItem(slopes, (int)h)->valuedouble *
                    (float)(i > j ? i - j : j - i);
    const size_t bshape[3] = {H, n, n};
    cJSON *rb = seeded_encoder(cJSON_Duplicate(x, 1), 11);
    cJSON_AddItemToObject(rb, "attn_bias", it_list_from_floats(bias, 3, bshape));
    cJSON *d = post_ok(s, ENCODER, rb, "alibi as attn_bias");
    expect_same(c, d, "output", 2e-5, "alibi");
    expect_same(c, d, "attentions", 2e-5, "alibi");

    /* rope reaches the self-attention of a decoder (the weights change) */
    cJSON *rr = cJSON_Parse("{\"nhead\": 2, \"seed\": 1, \"dim_feedforward\": 8, "
                            "\"positional\": {\"type\": \"rope\"}}");
    cJSON_AddItemToObject(rr, "target", cJSON_Duplicate(x, 1));
    cJSON_AddItemToObject(rr, "memory", cJSON_Duplicate(x, 1));
    cJSON *e1 = post_ok(s, DECODER, rr, "rope");
    cJSON_DeleteItemFromObject(rr, "positional");
    cJSON *e2 = post_ok(s, DECODER, rr, "no rope");
    char why[256];
    ck_assert(!it_json_match(member(e1, "self_attentions"), member(e2, "self_attentions"), 1e-6, 0,
                             why, sizeof why));

    free(xp);
    free(bias);
    cJSON *all[] = {x, rp, a, rs, b, ra, c, rb, d, rr, e1, e2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cJSON_Delete(all[i]);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ limits */

START_TEST(outputs_over_the_element_limit_are_413_unless_attentions_are_dropped)
{
    it_server *s = it_start_ok("--max-elements", "2000", NULL);
    /* 3 layers x 2 heads x 20 x 20 attentions + 20 x 8 output = 2560 numbers > 2000 */
    cJSON *req = seeded_encoder(matrix(20, 8, 0.2, 0.0), 1);
    cJSON_ReplaceItemInObject(req, "num_layers", cJSON_CreateNumber(3));
    it_resp r;
    it_post_json_ok(s, ENCODER, req, &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "attentions over the limit");
    ck_assert_ptr_nonnull(strstr(r.body, "max-elements"));
    it_resp_free(&r);
    cJSON_AddItemToObject(req, "return", cJSON_Parse("[\"output\"]"));
    cJSON *j = post_ok(s, ENCODER, req, "output only fits");
    cJSON_Delete(j);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

static void cases_load(void)
{
    size_t len = 0;
    char *text = it_read_file(CASES_PATH, &len);
    golden = text != NULL ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
}

int main(void)
{
    cases_load();
    if (golden == NULL) {
        fprintf(stderr, "cannot read %s\n", CASES_PATH);
        return EXIT_FAILURE;
    }
    Suite *s = suite_create("transformer_http");
    TCase *tc = tcase_create("transformer");
    tcase_add_test(tc, golden_layer_cases_match_torch_json_and_base64);
    tcase_add_test(tc, single_layer_accepts_unprefixed_and_layers_0_keys);
    tcase_add_test(tc, seeded_requests_are_deterministic_batched_equals_one_by_one);
    tcase_add_test(tc, seeded_decoder_causal_and_memory_padding_batched);
    tcase_add_test(tc, positional_sinusoidal_is_the_table_added_and_alibi_is_its_bias);
    tcase_add_test(tc, outputs_over_the_element_limit_are_413_unless_attentions_are_dropped);
    suite_add_tcase(s, tc);
    int rc = it_run_suite(s);
    cJSON_Delete(golden);
    return rc;
}
