/* test_models_http.c - pretrained models through HTTP: /v1/models and KServe v2 against
 * HuggingFace. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>

#include "util_harness.h"

#define MODELS ATTN_TEST_DATA "/models"
#define TOL_ATTN 2e-4
#define TOL_HIDDEN 2e-3
#define JSON_CT "application/json"

/* The five model folders, served under their folder names. */
static const char *const model_names[] = {"bert-tiny", "gpt2-tiny", "vit-tiny", "bart-tiny",
                                          "demo-gpt2"};
#define N_MODELS 5

/* Parsed once in main; the forked test processes inherit them. */
static cJSON *expected[N_MODELS];

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static const cJSON *expected_of(const char *name)
{
    for (size_t i = 0; i < N_MODELS; i++)
        if (strcmp(model_names[i], name) == 0)
            return expected[i];
    ck_abort_msg("no expected.json for %s", name);
    return NULL;
}

/* Waits until /readyz says 200; every answer before must be a 503. */
static void wait_ready(const it_server *s)
{
    const double deadline = it_now_s() + it_wait_s();
    for (;;) {
        it_resp r;
        it_get_ok(s, "/readyz", &r);
        const long status = r.status;
        if (status != 200)
            ck_assert_msg(status == 503, "/readyz while loading: %s", it_resp_describe(&r));
        it_resp_free(&r);
        if (status == 200)
            return;
        ck_assert_msg(it_now_s() < deadline, "the models did not load in time");
        it_sleep_ms(10);
    }
}

/* A server with every test model (plus extra flags, NULL-terminated), ready. */
static it_server *start_models(const char *extra1, const char *extra2)
{
    char specs[N_MODELS][512];
    const char *args[2 * N_MODELS + 3];
    size_t n = 0;
    for (size_t i = 0; i < N_MODELS; i++) {
        snprintf(specs[i], sizeof specs[i], "%s=%s/%s", model_names[i], MODELS, model_names[i]);
        args[n++] = "--model";
        args[n++] = specs[i];
    }
    if (extra1)
        args[n++] = extra1;
    if (extra2)
        args[n++] = extra2;
    args[n] = NULL;
    it_server *s = it_server_start(args, NULL);
    ck_assert_msg(s != NULL, "attention-server did not start with the models");
    wait_ready(s);
    return s;
}

static cJSON *post_ok(const it_server *s, const char *path, const cJSON *req, const char *ctx)
{
    it_resp r;
    it_post_json_ok(s, path, req, &r);
    ck_assert_msg(r.status == 200, "%s: %s", ctx, it_resp_describe(&r));
    ck_assert_msg(it_is_ms_value(r.inference_time), "%s: X-Inference-Time missing", ctx);
    cJSON *j = it_resp_json_ok(&r);
    it_resp_free(&r);
    return j;
}

/* The answer's member name is within tol of expected (a nested list); returns the error. */
static double expect_close(const cJSON *answer, const char *name, const cJSON *want, double tol,
                           const char *ctx)
{
    const cJSON *item = member(answer, name);
    ck_assert_msg(item != NULL, "%s: the answer has no \"%s\"", ctx, name);
    it_tensor got, exp;
    char why[512];
    ck_assert_msg(it_tensor_read(item, &got, why, sizeof why), "%s: %s: %s", ctx, name, why);
    ck_assert_msg(it_tensor_read(want, &exp, why, sizeof why), "%s: expected %s", ctx, name);
    bool ok = it_tensor_close(&got, want, tol, true, why, sizeof why);
    double worst = 0;
    for (size_t i = 0; ok && i < got.size; i++)
        worst = fmax(worst, fabs((double)got.data[i] - exp.data[i]));
    it_tensor_free(&got);
    it_tensor_free(&exp);
    ck_assert_msg(ok, "%s: %s %s", ctx, name, why);
    return worst;
}

/* tokens and input_ids of the answer equal the run's. */
static void expect_tokens(const cJSON *answer, const cJSON *run, const char *ctx)
{
    char why[512];
    ck_assert_msg(
        it_json_match(member(answer, "tokens"), member(run, "tokens"), 0, 0, why, sizeof why),
        "%s: tokens differ at %s", ctx, why);
    ck_assert_msg(
        it_json_match(member(answer, "input_ids"), member(run, "input_ids"), 0, 0, why, sizeof why),
        "%s: input_ids differ at %s", ctx, why);
}

static cJSON *returning(cJSON *req, const char *a, const char *b, const char *c)
{
    cJSON *ret = cJSON_AddArrayToObject(req, "return");
    const char *names[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (names[i])
            cJSON_AddItemToArray(ret, cJSON_CreateString(names[i]));
    return req;
}

/* ------------------------------------------------------------ text models */

/* Every runs[] entry, once as text and once as input_ids: same tokens and ids as
 * HuggingFace, attentions within 2e-4, hidden states within 2e-3. */
START_TEST(text_model_runs_match_huggingface_through_http)
{
    static const char *const text_models[] = {"bert-tiny", "gpt2-tiny", "demo-gpt2"};
    const char *name = text_models[_i];
    const cJSON *exp = expected_of(name);
    it_server *s = start_models(NULL, NULL);
    char path[128];
    snprintf(path, sizeof path, "/v1/models/%s/attention", name);
    double wa = 0, wh = 0;
    size_t k = 0;
    const cJSON *run;
    cJSON_ArrayForEach(run, member(exp, "runs"))
    {
        const bool bert = strcmp(name, "bert-tiny") == 0;
        for (int by_ids = 0; by_ids < 2; by_ids++) {
            char ctx[160];
            snprintf(ctx, sizeof ctx, "%s run %zu by %s", name, k, by_ids ? "input_ids" : "text");
            cJSON *req = cJSON_CreateObject();
            if (by_ids)
                cJSON_AddItemToObject(req, "input_ids",
                                      cJSON_Duplicate(member(run, "input_ids"), 1));
            else
                cJSON_AddStringToObject(req, "text", member(run, "text")->valuestring);
            returning(req, "attentions", "last_hidden_state", bert ? "pooler_output" : NULL);
            cJSON *a = post_ok(s, path, req, ctx);
            expect_tokens(a, run, ctx);
            wa = fmax(wa, expect_close(a, "attentions", member(run, "attentions"), TOL_ATTN, ctx));
            wh = fmax(wh, expect_close(a, "last_hidden_state", member(run, "last_hidden_state"),
                                       TOL_HIDDEN, ctx));
            if (bert)
                wh = fmax(wh, expect_close(a, "pooler_output", member(run, "pooler_output"),
                                           TOL_HIDDEN, ctx));
            cJSON_Delete(a);
            cJSON_Delete(req);
        }
        k++;
    }
    ck_assert_uint_gt(k, 2);
    printf("%s over HTTP: %zu runs, max |error| attentions %.3g, hidden %.3g\n", name, k, wa, wh);
    it_stop_ok(s);
}
END_TEST

/* bert-tiny's padded batch: each sentence with its attention_mask (attentions [L][B][H][n][n]). */
START_TEST(bert_padded_batch_matches_with_attention_mask)
{
    const cJSON *pb = member(expected_of("bert-tiny"), "padded_batch");
    it_server *s = start_models(NULL, NULL);
    const cJSON *att = member(pb, "attentions");
    for (int b = 0; b < 2; b++) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "padded batch row %d", b);
        cJSON *req = cJSON_CreateObject();
        cJSON_AddItemToObject(req, "input_ids",
                              cJSON_Duplicate(cJSON_GetArrayItem(member(pb, "input_ids"), b), 1));
        cJSON_AddItemToObject(
            req, "attention_mask",
            cJSON_Duplicate(cJSON_GetArrayItem(member(pb, "attention_mask"), b), 1));
        returning(req, "attentions", "last_hidden_state", NULL);
        cJSON *want = cJSON_CreateArray();
        const cJSON *layer;
        cJSON_ArrayForEach(layer, att)
        {
            cJSON_AddItemToArray(want, cJSON_Duplicate(cJSON_GetArrayItem(layer, b), 1));
        }
        cJSON *a = post_ok(s, "/v1/models/bert-tiny/attention", req, ctx);
        expect_close(a, "attentions", want, TOL_ATTN, ctx);
        expect_close(a, "last_hidden_state", cJSON_GetArrayItem(member(pb, "last_hidden_state"), b),
                     TOL_HIDDEN, ctx);
        cJSON_Delete(want);
        cJSON_Delete(a);
        cJSON_Delete(req);
    }
    it_stop_ok(s);
}
END_TEST

START_TEST(vit_pixel_values_match_huggingface_in_both_encodings)
{
    const cJSON *exp = expected_of("vit-tiny");
    it_server *s = start_models(NULL, NULL);
    for (int b64 = 0; b64 < 2; b64++) {
        cJSON *req = cJSON_CreateObject();
        const cJSON *px = member(exp, "pixel_values");
        cJSON_AddItemToObject(req, "pixel_values",
                              b64 ? it_tensor_object_from_list(px) : cJSON_Duplicate(px, 1));
        if (b64)
            cJSON_AddStringToObject(req, "encoding", "base64");
        returning(req, "attentions", "last_hidden_state", NULL);
        cJSON *a = post_ok(s, "/v1/models/vit-tiny/attention", req, "vit-tiny");
        expect_close(a, "attentions", member(exp, "attentions"), TOL_ATTN, "vit-tiny");
        expect_close(a, "last_hidden_state", member(exp, "last_hidden_state"), TOL_HIDDEN,
                     "vit-tiny");
        const cJSON *toks = member(a, "tokens");
        ck_assert_int_eq(cJSON_GetArraySize(toks), 17);
        ck_assert_str_eq(cJSON_GetArrayItem(toks, 0)->valuestring, "[CLS]");
        ck_assert_str_eq(cJSON_GetArrayItem(toks, 16)->valuestring, "(3,3)");
        cJSON_Delete(a);
        cJSON_Delete(req);
    }
    it_stop_ok(s);
}
END_TEST

START_TEST(bart_three_attention_kinds_match_huggingface)
{
    const cJSON *exp = expected_of("bart-tiny");
    it_server *s = start_models(NULL, NULL);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "input_ids", cJSON_Duplicate(member(exp, "input_ids"), 1));
    cJSON_AddItemToObject(req, "decoder_input_ids",
                          cJSON_Duplicate(member(exp, "decoder_input_ids"), 1));
    cJSON *ret = cJSON_AddArrayToObject(req, "return");
    static const char *const names[] = {"encoder_attentions", "decoder_attentions",
                                        "cross_attentions", "last_hidden_state",
                                        "encoder_last_hidden_state"};
    for (int i = 0; i < 5; i++)
        cJSON_AddItemToArray(ret, cJSON_CreateString(names[i]));
    cJSON *a = post_ok(s, "/v1/models/bart-tiny/attention", req, "bart-tiny");
    for (int i = 0; i < 5; i++)
        expect_close(a, names[i], member(exp, names[i]), i < 3 ? TOL_ATTN : TOL_HIDDEN,
                     "bart-tiny");
    char why[256];
    ck_assert(it_json_match(member(a, "decoder_input_ids"), member(exp, "decoder_input_ids"), 0, 0,
                            why, sizeof why));
    cJSON_Delete(a);
    cJSON_Delete(req);

    /* text needs a tokenizer: bart-tiny has none */
    it_resp r;
    it_post_ok(s, "/v1/models/bart-tiny/attention", "{\"text\": \"hello\"}", &r);
    it_expect_error_ok(&r, 400, "invalid_argument", "/text", "bart-tiny text");
    ck_assert_ptr_nonnull(strstr(r.body, "tokenizer"));
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ options */

START_TEST(selection_mask_tokens_and_segments)
{
    it_server *s = start_models(NULL, NULL);
    it_resp r;
    /* layers and heads: shapes and the meta's lists follow the selection */
    it_post_ok(s, "/v1/models/demo-gpt2/attention",
               "{\"text\": \"The cat sat on the mat\", \"layers\": [2, 0], \"heads\": [3], "
               "\"return\": [\"attentions\", \"q\", \"hidden_states\"]}",
               &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *a = it_resp_json_ok(&r);
    it_resp_free(&r);
    char why[256];
    cJSON *want = cJSON_Parse("{\"attentions\": [2, 1, 8, 8], \"q\": [2, 1, 8, 32], "
                              "\"hidden_states\": [4, 8, 128]}");
    ck_assert_msg(it_json_match(member(member(a, "meta"), "shapes"), want, 0, 0, why, sizeof why),
                  "shapes: %s", why);
    cJSON_Delete(want);
    want = cJSON_Parse("[2, 0]");
    ck_assert(it_json_match(member(member(a, "meta"), "layers"), want, 0, 0, why, sizeof why));
    cJSON_Delete(want);
    cJSON_Delete(a);

    /* mask_tokens = the same ids with [MASK] (id 4) sent directly */
    it_post_ok(s, "/v1/models/bert-tiny/attention",
               "{\"text\": \"The cat sat on the mat.\", \"mask_tokens\": [2, 6]}", &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    a = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert_str_eq(cJSON_GetArrayItem(member(a, "tokens"), 2)->valuestring, "[MASK]");
    ck_assert_int_eq(cJSON_GetArrayItem(member(a, "input_ids"), 6)->valueint, 4);
    it_post_ok(s, "/v1/models/bert-tiny/attention", "{\"input_ids\": [2, 5, 4, 7, 8, 5, 4, 48, 3]}",
               &r);
    cJSON *b = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert(
        it_json_match(member(a, "attentions"), member(b, "attentions"), 0, 0, why, sizeof why));
    want = cJSON_Parse("[2, 6]");
    ck_assert(
        it_json_match(member(member(a, "meta"), "masked_positions"), want, 0, 0, why, sizeof why));
    cJSON_Delete(want);
    cJSON_Delete(a);
    cJSON_Delete(b);

    /* segment_b_start and text_pair give BERT's token_type_ids */
    it_post_ok(s, "/v1/models/bert-tiny/attention",
               "{\"text\": \"The cat sat.\", \"text_pair\": \"The dog\"}", &r);
    a = it_resp_json_ok(&r);
    it_resp_free(&r);
    want = cJSON_Parse("[0, 0, 0, 0, 0, 0, 1, 1, 1]");
    ck_assert_msg(it_json_match(member(a, "token_type_ids"), want, 0, 0, why, sizeof why),
                  "token_type_ids: %s", why);
    it_post_ok(s, "/v1/models/bert-tiny/attention",
               "{\"input_ids\": [2, 5, 6, 7, 48, 3, 5, 45, 3], \"segment_b_start\": 6}", &r);
    b = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert(it_json_match(member(b, "token_type_ids"), want, 0, 0, why, sizeof why));
    ck_assert(
        it_json_match(member(a, "attentions"), member(b, "attentions"), 0, 0, why, sizeof why));
    cJSON_Delete(want);
    cJSON_Delete(a);
    cJSON_Delete(b);
    it_stop_ok(s);
}
END_TEST

START_TEST(text_and_svg_pictures_label_tokens_and_heads)
{
    it_server *s = start_models(NULL, NULL);
    const char *body = "{\"text\": \"The cat sat on the mat\", \"layers\": [1], \"heads\": [2]}";
    it_req rq = {.method = "POST",
                 .path = "/v1/models/demo-gpt2/attention?format=text",
                 .body = body,
                 .body_len = strlen(body)};
    it_resp r;
    ck_assert(it_http(s, &rq, &r));
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ck_assert_ptr_nonnull(strstr(r.content_type, "text/plain"));
    ck_assert_ptr_nonnull(strstr(r.body, "layer 1, head 2"));
    ck_assert_ptr_nonnull(strstr(r.body, "Ġmat"));
    it_resp_free(&r);
    rq.path = "/v1/models/bart-tiny/attention?format=svg&view=cross_attentions";
    body = "{\"input_ids\": [0, 10, 11, 2]}";
    rq.body = body;
    rq.body_len = strlen(body);
    ck_assert(it_http(s, &rq, &r));
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ck_assert_ptr_nonnull(strstr(r.body, "<svg"));
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(models_are_listed_and_described)
{
    it_server *s = start_models(NULL, NULL);
    it_resp r;
    it_get_ok(s, "/v1/models", &r);
    ck_assert_int_eq(r.status, 200);
    cJSON *j = it_resp_json_ok(&r);
    it_resp_free(&r);
    const cJSON *list = member(j, "models");
    ck_assert_int_eq(cJSON_GetArraySize(list), N_MODELS);
    const cJSON *demo = cJSON_GetArrayItem(list, 4);
    ck_assert_str_eq(member(demo, "name")->valuestring, "demo-gpt2");
    ck_assert_str_eq(member(demo, "architecture")->valuestring, "gpt2");
    ck_assert_int_eq(member(demo, "num_layers")->valueint, 3);
    ck_assert_int_eq(member(demo, "num_heads")->valueint, 4);
    ck_assert_int_eq(member(demo, "hidden_size")->valueint, 128);
    ck_assert_int_eq(member(demo, "max_position_embeddings")->valueint, 128);
    ck_assert_int_eq(member(demo, "vocab_size")->valueint, 2048);
    ck_assert_str_eq(cJSON_GetArrayItem(member(demo, "inputs"), 0)->valuestring, "text");
    cJSON_Delete(j);

    it_get_ok(s, "/v1/models/bart-tiny", &r);
    j = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert_int_eq(member(j, "decoder_layers")->valueint, 2);
    ck_assert(cJSON_IsNull(member(j, "tokenizer")));
    cJSON_Delete(j);

    it_get_ok(s, "/v1/models/nope", &r);
    it_expect_error_ok(&r, 404, "not_found", "", "unknown model");
    ck_assert_ptr_nonnull(strstr(r.body, "demo-gpt2"));
    it_resp_free(&r);

    it_get_ok(s, "/v1/info", &r);
    j = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert_int_eq(cJSON_GetArraySize(member(j, "models")), N_MODELS);
    cJSON_Delete(j);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ refusals */

typedef struct bad_req {
    const char *model;
    const char *body;
    long status;
    const char *field;
} bad_req;

static const bad_req bad_reqs[] = {
    {"nope", "{\"text\": \"x\"}", 404, ""},
    {"bert-tiny", "{\"input_ids\": [2, 5, 500]}", 400, "/input_ids/2"},
    {"bert-tiny", "{\"input_ids\": [2, 5.5]}", 400, "/input_ids/1"},
    {"bert-tiny", "{\"input_ids\": [2, -1]}", 400, "/input_ids/1"},
    {"bert-tiny", "{\"input_ids\": []}", 400, "/input_ids"},
    {"bert-tiny", "{\"input_ids\": \"2 5\"}", 400, "/input_ids"},
    {"bert-tiny", "{\"text\": \"x\", \"input_ids\": [2]}", 400, "/input_ids"},
    {"bert-tiny", "{}", 400, ""},
    {"bert-tiny", "{\"text\": 7}", 400, "/text"},
    {"bert-tiny", "{\"text\": \"x\", \"return\": [\"encoder_attentions\"]}", 400, "/return/0"},
    {"bert-tiny", "{\"text\": \"x\", \"layers\": [2]}", 400, "/layers/0"},
    {"bert-tiny", "{\"text\": \"x\", \"heads\": [1, 1]}", 400, "/heads/1"},
    {"bert-tiny", "{\"text\": \"x\", \"heads\": []}", 400, "/heads"},
    {"bert-tiny", "{\"text\": \"the cat\", \"token_type_ids\": [0, 1]}", 400, "/token_type_ids"},
    {"bert-tiny", "{\"text\": \"the cat\", \"token_type_ids\": [0, 0, 2, 0]}", 400,
     "/token_type_ids/2"},
    {"bert-tiny", "{\"text\": \"the cat\", \"segment_b_start\": 9}", 400, "/segment_b_start"},
    {"bert-tiny", "{\"text\": \"the cat\", \"mask_tokens\": [4]}", 400, "/mask_tokens/0"},
    {"bert-tiny", "{\"text\": \"the cat\", \"attention_mask\": [1, 2, 1, 1]}", 400,
     "/attention_mask/1"},
    {"bert-tiny", "{\"text\": \"x\", \"decoder_input_ids\": [1]}", 400, "/decoder_input_ids"},
    {"bert-tiny", "{\"text\": \"x\", \"pixel_values\": [[[1]]]}", 400, "/pixel_values"},
    {"bert-tiny", "{\"text\": \"x\", \"temperature\": 1}", 400, "/temperature"},
    {"gpt2-tiny", "{\"text\": \"x\", \"mask_tokens\": [0]}", 400, "/mask_tokens"},
    {"gpt2-tiny", "{\"text\": \"x\", \"segment_b_start\": 1}", 400, "/segment_b_start"},
    {"gpt2-tiny", "{\"text\": \"x\", \"text_pair\": \"y\"}", 400, "/text_pair"},
    {"gpt2-tiny", "{\"text\": \"x\", \"return\": [\"pooler_output\"]}", 400, "/return/0"},
    {"vit-tiny", "{\"pixel_values\": [[[0.5, 0.5], [0.5, 0.5]]]}", 400, "/pixel_values"},
    {"vit-tiny", "{\"text\": \"a cat\"}", 400, "/text"},
    {"bart-tiny", "{\"input_ids\": [0, 10], \"decoder_input_ids\": [2, 999]}", 400,
     "/decoder_input_ids/1"},
    {"bart-tiny", "{\"input_ids\": [0, 10], \"return\": [\"attentions\"]}", 400, "/return/0"},
};
#define N_BAD_REQS (sizeof bad_reqs / sizeof bad_reqs[0])

START_TEST(bad_requests_are_refused_naming_the_field)
{
    it_server *s = start_models(NULL, NULL);
    for (size_t i = 0; i < N_BAD_REQS; i++) {
        const bad_req *b = &bad_reqs[i];
        char path[128], ctx[300];
        snprintf(path, sizeof path, "/v1/models/%s/attention", b->model);
        snprintf(ctx, sizeof ctx, "%s %s", b->model, b->body);
        it_resp r;
        it_post_ok(s, path, b->body, &r);
        it_expect_error_ok(&r, b->status, b->status == 404 ? "not_found" : "invalid_argument",
                           b->field, ctx);
        it_resp_free(&r);
    }
    /* longer than max_position_embeddings: 400 naming the field and the limit */
    char body[2048] = "{\"input_ids\": [2";
    for (int i = 0; i < 64; i++)
        strcat(body, ", 5");
    strcat(body, "]}");
    it_resp r;
    it_post_ok(s, "/v1/models/bert-tiny/attention", body, &r);
    it_expect_error_ok(&r, 400, "invalid_argument", "/input_ids", "65 ids");
    ck_assert_ptr_nonnull(strstr(r.body, "max_position_embeddings"));
    it_resp_free(&r);
    char text[1024] = "{\"text\": \"";
    for (int i = 0; i < 70; i++)
        strcat(text, "cat ");
    strcat(text, "\"}");
    it_post_ok(s, "/v1/models/bert-tiny/attention", text, &r);
    it_expect_error_ok(&r, 400, "invalid_argument", "/text", "70 words");
    it_resp_free(&r);
    /* the server is still fine */
    it_post_ok(s, "/v1/models/bert-tiny/attention", "{\"text\": \"the cat\"}", &r);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

START_TEST(element_and_length_limits_answer_413)
{
    it_server *s = start_models("--max-elements", "1000");
    it_resp r;
    /* 3 layers x 4 heads x n x n with n > 10 tokens: over 1000 numbers */
    it_post_ok(s, "/v1/models/demo-gpt2/attention",
               "{\"text\": \"The quick brown fox jumps over the lazy dog again and again\"}", &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "", "element limit");
    ck_assert_ptr_nonnull(strstr(r.body, "--max-elements"));
    it_resp_free(&r);
    /* one head of one layer fits */
    it_post_ok(s, "/v1/models/demo-gpt2/attention",
               "{\"text\": \"The quick brown fox jumps over the lazy dog again and again\", "
               "\"layers\": [0], \"heads\": [0]}",
               &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    it_resp_free(&r);
    it_stop_ok(s);
    s = start_models("--max-seq-len", "4");
    it_post_ok(s, "/v1/models/gpt2-tiny/attention", "{\"input_ids\": [1, 2, 3, 4, 5]}", &r);
    it_expect_error_ok(&r, 413, "payload_too_large", "/input_ids", "--max-seq-len");
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ KServe v2 */

START_TEST(kserve_v2_round_trip)
{
    it_server *s = start_models(NULL, NULL);
    it_resp r;
    it_get_ok(s, "/v2/health/live", &r);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    it_get_ok(s, "/v2/health/ready", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"ready\":true"));
    it_resp_free(&r);
    it_get_ok(s, "/v2/models/gpt2-tiny/ready", &r);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    it_get_ok(s, "/v2/models/gpt2-tiny", &r);
    ck_assert_int_eq(r.status, 200);
    cJSON *meta = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert_str_eq(member(meta, "name")->valuestring, "gpt2-tiny");
    const cJSON *out0 = cJSON_GetArrayItem(member(meta, "outputs"), 0);
    ck_assert_str_eq(member(out0, "name")->valuestring, "attentions");
    ck_assert_str_eq(member(out0, "datatype")->valuestring, "FP32");
    cJSON *want_shape = cJSON_Parse("[2, 4, -1, -1]");
    char why[256];
    ck_assert(it_json_match(member(out0, "shape"), want_shape, 0, 0, why, sizeof why));
    cJSON_Delete(want_shape);
    cJSON_Delete(meta);

    /* input_ids INT64 [1, n] -> attentions FP32 [L, H, T, T], flattened, as HuggingFace's */
    const cJSON *run = cJSON_GetArrayItem(member(expected_of("gpt2-tiny"), "runs"), 0);
    const cJSON *ids = member(run, "input_ids");
    const int n = cJSON_GetArraySize(ids);
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "id", "req-1");
    cJSON *inputs = cJSON_AddArrayToObject(req, "inputs");
    cJSON *in = cJSON_CreateObject();
    cJSON_AddItemToArray(inputs, in);
    cJSON_AddStringToObject(in, "name", "input_ids");
    cJSON_AddStringToObject(in, "datatype", "INT64");
    cJSON *shape = cJSON_AddArrayToObject(in, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(n));
    cJSON_AddItemToObject(in, "data", cJSON_Duplicate(ids, 1));
    it_post_json_ok(s, "/v2/models/gpt2-tiny/infer", req, &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    cJSON *ans = it_resp_json_ok(&r);
    it_resp_free(&r);
    ck_assert_str_eq(member(ans, "model_name")->valuestring, "gpt2-tiny");
    ck_assert_str_eq(member(ans, "id")->valuestring, "req-1");
    const cJSON *outs = member(ans, "outputs");
    ck_assert_int_eq(cJSON_GetArraySize(outs), 2);
    const cJSON *att = cJSON_GetArrayItem(outs, 0);
    ck_assert_str_eq(member(att, "name")->valuestring, "attentions");
    it_tensor flat, want;
    ck_assert(it_tensor_read(member(att, "data"), &flat, why, sizeof why));
    ck_assert(it_tensor_read(member(run, "attentions"), &want, why, sizeof why));
    ck_assert_uint_eq(flat.size, want.size);
    ck_assert_uint_eq(flat.size, (size_t)(2 * 4 * n * n));
    for (size_t i = 0; i < flat.size; i++)
        ck_assert_msg(fabs(flat.data[i] - want.data[i]) <= TOL_ATTN, "attentions[%zu]", i);
    it_tensor_free(&flat);
    it_tensor_free(&want);
    ck_assert_str_eq(member(cJSON_GetArrayItem(outs, 1), "name")->valuestring, "last_hidden_state");
    cJSON_Delete(ans);
    cJSON_Delete(req);

    /* text as BYTES for a model with a tokenizer, tokens back */
    it_post_ok(s, "/v2/models/bert-tiny/infer",
               "{\"inputs\": [{\"name\": \"text\", \"datatype\": \"BYTES\", \"shape\": [1], "
               "\"data\": [\"The cat sat on the mat.\"]}], \"outputs\": [{\"name\": "
               "\"tokens\"}, {\"name\": \"attentions\"}], \"parameters\": {\"layers\": [1]}}",
               &r);
    ck_assert_msg(r.status == 200, "%s", it_resp_describe(&r));
    ans = it_resp_json_ok(&r);
    it_resp_free(&r);
    const cJSON *bert_run = cJSON_GetArrayItem(member(expected_of("bert-tiny"), "runs"), 0);
    outs = member(ans, "outputs");
    att = cJSON_GetArrayItem(outs, 0);
    want_shape = cJSON_Parse("[1, 4, 9, 9]");
    ck_assert(it_json_match(member(att, "shape"), want_shape, 0, 0, why, sizeof why));
    cJSON_Delete(want_shape);
    ck_assert(it_json_match(member(cJSON_GetArrayItem(outs, 1), "data"), member(bert_run, "tokens"),
                            0, 0, why, sizeof why));
    cJSON_Delete(ans);

    /* v2 errors: {"error": "..."} */
    static const struct {
        const char *path, *body;
        long status;
        const char *says;
    } bad[] = {
        {"/v2/models/nope/infer", "{\"inputs\": []}", 404, "no model named"},
        {"/v2/models/gpt2-tiny/infer", "{\"inputs\": []}", 400, "inputs"},
        {"/v2/models/gpt2-tiny/infer",
         "{\"inputs\": [{\"name\": \"input_ids\", \"datatype\": \"INT65\", \"shape\": [1], "
         "\"data\": [1]}]}",
         400, "datatype"},
        {"/v2/models/gpt2-tiny/infer",
         "{\"inputs\": [{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [1, 3], "
         "\"data\": [1, 2]}]}",
         400, "data elements"},
        {"/v2/models/gpt2-tiny/infer",
         "{\"inputs\": [{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [1, 2], "
         "\"data\": [1, 999]}]}",
         400, "input_ids[1]"},
        {"/v2/models/gpt2-tiny/infer",
         "{\"inputs\": [{\"name\": \"ids\", \"datatype\": \"INT64\", \"shape\": [1], \"data\": "
         "[1]}]}",
         400, "unknown input"},
        {"/v2/models/gpt2-tiny/infer",
         "{\"inputs\": [{\"name\": \"input_ids\", \"datatype\": \"INT64\", \"shape\": [1, 1], "
         "\"data\": [1]}], \"outputs\": [{\"name\": \"logits\"}]}",
         400, "logits"},
        {"/v2/models/vit-tiny/infer",
         "{\"inputs\": [{\"name\": \"pixel_values\", \"datatype\": \"FP32\", \"shape\": [1, 3, 2, "
         "2], \"data\": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}",
         400, "pixel_values"},
        {"/v2/models/gpt2-tiny/versions/7/infer", "{\"inputs\": []}", 404, "version"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        it_post_ok(s, bad[i].path, bad[i].body, &r);
        ck_assert_msg(r.status == bad[i].status, "%s %s: %s", bad[i].path, bad[i].body,
                      it_resp_describe(&r));
        cJSON *e = it_resp_json_ok(&r);
        const cJSON *msg = member(e, "error");
        ck_assert_msg(cJSON_IsString(msg) && strstr(msg->valuestring, bad[i].says),
                      "%s: error \"%s\" lacks \"%s\"", bad[i].path,
                      cJSON_IsString(msg) ? msg->valuestring : "?", bad[i].says);
        cJSON_Delete(e);
        it_resp_free(&r);
    }
    it_get_ok(s, "/v2/models/nope/ready", &r);
    ck_assert_int_eq(r.status, 404);
    it_resp_free(&r);
    it_stop_ok(s);
}
END_TEST

/* ------------------------------------------------------------ start-up */

/*
 * A model whose config.json is a FIFO stays "loading" until the test writes
 * to it: meanwhile /readyz and the model's routes answer 503 naming it; once
 * written, the FIFO is refused (not a regular file) and the server stops
 * with exit status 3 and a message naming the model and the file.
 */
START_TEST(readyz_is_503_while_loading_and_a_failed_model_stops_the_start)
{
    char dir[256];
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/attn_slow_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char fifo[300], spec[400];
    snprintf(fifo, sizeof fifo, "%s/config.json", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    snprintf(spec, sizeof spec, "slow=%s", dir);
    const char *args[] = {"--model", "demo=" MODELS "/demo-gpt2", "--model", spec, NULL};
    it_server *s = it_server_start(args, NULL);
    ck_assert_ptr_nonnull(s);
    it_resp r;
    it_get_ok(s, "/readyz", &r);
    it_expect_error_ok(&r, 503, "unavailable", "", "readyz while loading");
    ck_assert_msg(strstr(r.body, "loading model"), "%s", r.body);
    it_resp_free(&r);
    it_get_ok(s, "/healthz", &r);
    ck_assert_int_eq(r.status, 200);
    it_resp_free(&r);
    it_get_ok(s, "/v2/health/ready", &r);
    ck_assert_int_eq(r.status, 503);
    it_resp_free(&r);
    it_post_ok(s, "/v1/models/slow/attention", "{\"text\": \"x\"}", &r);
    it_expect_error_ok(&r, 503, "unavailable", "", "a model still loading");
    it_resp_free(&r);
    it_get_ok(s, "/v1/models/slow", &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"loading\""));
    it_resp_free(&r);
    it_get_ok(s, "/v2/models/slow/ready", &r);
    ck_assert_int_eq(r.status, 503);
    it_resp_free(&r);

    /* let the load go on (opening the other end is enough): the FIFO is no model file */
    int fd = open(fifo, O_WRONLY);
    ck_assert_int_ge(fd, 0);
    close(fd);
    int st = it_server_wait(s, it_wait_s());
    ck_assert_msg(st != -1, "the server did not stop after its model failed");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "exit status %d, expected 3",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    size_t len = 0;
    char *err = it_read_file(s->stderr_path, &len);
    ck_assert_ptr_nonnull(err);
    ck_assert_msg(strstr(err, "model 'slow'") && strstr(err, "config.json"), "stderr: %s", err);
    free(err);
    it_server_kill(s); /* already reaped: only frees */
    unlink(fifo);
    rmdir(dir);
}
END_TEST

START_TEST(model_flags_are_checked_before_start)
{
    char out[2048];
    const char *dup[] = {"--model", "a=x", "--model", "a=y", NULL};
    int st = it_run_binary(dup, out, sizeof out, it_wait_s());
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "duplicate names: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "named twice"));
    const char *bad[] = {"--model", "no-folder", NULL};
    st = it_run_binary(bad, out, sizeof out, it_wait_s());
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 2, "no '=': %s", out);
    ck_assert_ptr_nonnull(strstr(out, "NAME=DIR"));
    /* a folder that is no model: the start is refused with status 3 */
    const char *missing[] = {"--port", "0", "--model", "m=/nonexistent/folder", NULL};
    st = it_run_binary(missing, out, sizeof out, it_wait_s());
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 3, "missing folder: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "/nonexistent/folder/config.json"));
}
END_TEST

static Suite *models_suite(void)
{
    Suite *s = suite_create("models_http");
    TCase *tg = tcase_create("golden");
    tcase_set_timeout(tg, 300);
    tcase_add_loop_test(tg, text_model_runs_match_huggingface_through_http, 0, 3);
    tcase_add_test(tg, bert_padded_batch_matches_with_attention_mask);
    tcase_add_test(tg, vit_pixel_values_match_huggingface_in_both_encodings);
    tcase_add_test(tg, bart_three_attention_kinds_match_huggingface);
    suite_add_tcase(s, tg);
    TCase *to = tcase_create("options");
    tcase_set_timeout(to, 120);
    tcase_add_test(to, selection_mask_tokens_and_segments);
    tcase_add_test(to, text_and_svg_pictures_label_tokens_and_heads);
    tcase_add_test(to, models_are_listed_and_described);
    tcase_add_test(to, bad_requests_are_refused_naming_the_field);
    tcase_add_test(to, element_and_length_limits_answer_413);
    tcase_add_test(to, kserve_v2_round_trip);
    suite_add_tcase(s, to);
    TCase *ts = tcase_create("start-up");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, readyz_is_503_while_loading_and_a_failed_model_stops_the_start);
    tcase_add_test(ts, model_flags_are_checked_before_start);
    suite_add_tcase(s, ts);
    return s;
}

int main(void)
{
    for (size_t i = 0; i < N_MODELS; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/expected.json", MODELS, model_names[i]);
        char *text = it_read_file(path, NULL);
        expected[i] = text ? cJSON_Parse(text) : NULL;
        free(text);
        if (!expected[i]) {
            fprintf(stderr, "cannot read %s\n", path);
            return 1;
        }
    }
    int rc = it_run_suite(models_suite());
    for (size_t i = 0; i < N_MODELS; i++)
        cJSON_Delete(expected[i]);
    return rc;
}
