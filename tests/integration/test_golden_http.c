/* test_golden_http.c - the PyTorch golden cases through HTTP, as JSON lists and base64. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

#define CASES_PATH ATTN_TEST_DATA "/tensor_cases.json"
#define TOL 1e-4
#define MAX_CASES 128

/* Parsed once in main; the forked test processes inherit it. */
static cJSON *golden;
static const cJSON *sdpa_cases[MAX_CASES], *mha_cases[MAX_CASES], *score_cases[MAX_CASES];
static int n_sdpa, n_mha, n_score;

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static const char *case_name(const cJSON *c)
{
    const cJSON *n = member(c, "name");
    return cJSON_IsString(n) ? n->valuestring : "?";
}

/* A float input: the list itself, or a base64 tensor object made from it. */
static cJSON *float_input(const cJSON *list, bool b64)
{
    cJSON *o = b64 ? it_tensor_object_from_list(list) : cJSON_Duplicate(list, 1);
    ck_assert_msg(o != NULL, "cannot convert an input to a tensor object");
    return o;
}

static void copy_float(cJSON *req, const cJSON *c, const char *from, const char *to, bool b64)
{
    const cJSON *v = member(c, from);
    if (v != NULL && !cJSON_IsNull(v))
        cJSON_AddItemToObject(req, to, float_input(v, b64));
}

static void copy_plain(cJSON *req, const cJSON *c, const char *key)
{
    const cJSON *v = member(c, key);
    if (v != NULL && !cJSON_IsNull(v))
        cJSON_AddItemToObject(req, key, cJSON_Duplicate(v, 1));
}

static void add_return(cJSON *req, const char *const *names, int n)
{
    cJSON_AddItemToObject(req, "return", cJSON_CreateStringArray(names, n));
}

/* Posts req, asserts 200, returns the parsed answer. */
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

/* Compares answer member name with the expected nested list. */
static void expect_tensor(const cJSON *answer, const char *name, const cJSON *expected, bool b64,
                          const char *ctx)
{
    const cJSON *item = member(answer, name);
    ck_assert_msg(item != NULL, "%s: the answer has no \"%s\"", ctx, name);
    if (b64)
        ck_assert_msg(cJSON_IsObject(item), "%s: \"%s\" must be a tensor object with base64", ctx,
                      name);
    else
        ck_assert_msg(cJSON_IsArray(item), "%s: \"%s\" must be a nested list", ctx, name);
    it_tensor t;
    char why[512];
    ck_assert_msg(it_tensor_read(item, &t, why, sizeof why), "%s: \"%s\": %s", ctx, name, why);
    bool ok = it_tensor_close(&t, expected, TOL, true, why, sizeof why);
    it_tensor_free(&t);
    ck_assert_msg(ok, "%s: \"%s\" %s", ctx, name, why);
}

/* Rows of an expected [n][m] list that are all null (fully masked). */
static double null_rows(const cJSON *w)
{
    double n = 0;
    for (const cJSON *row = w->child; row != NULL; row = row->next) {
        bool all = row->child != NULL;
        for (const cJSON *x = row->child; x != NULL; x = x->next)
            all = all && cJSON_IsNull(x);
        n += all;
    }
    return n;
}

/* ---------------------------------------------------------------- sdpa */

static void run_sdpa(const it_server *s, const cJSON *c, bool b64)
{
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s (%s)", case_name(c), b64 ? "base64" : "json");
    cJSON *req = cJSON_CreateObject();
    copy_float(req, c, "query", "query", b64);
    copy_float(req, c, "key", "key", b64);
    copy_float(req, c, "value", "value", b64);
    copy_float(req, c, "attn_bias", "attn_bias", b64);
    copy_plain(req, c, "causal");
    copy_plain(req, c, "mask");
    copy_plain(req, c, "scale");
    if (b64)
        cJSON_AddStringToObject(req, "encoding", "base64");
    const char *ret[] = {"output", "weights"};
    add_return(req, ret, 2);
    cJSON *j = post_ok(s, "/v1/attention", req, ctx);
    const cJSON *exp = member(c, "expected");
    expect_tensor(j, "output", member(exp, "output_torch_sdpa"), b64, ctx);
    expect_tensor(j, "weights", member(exp, "weights_softmax"), b64, ctx);

    const cJSON *meta = member(j, "meta");
    const cJSON *scale = member(meta, "scale");
    const cJSON *q0 = member(c, "query")->child;
    double want = cJSON_IsNumber(member(c, "scale")) ? member(c, "scale")->valuedouble
                                                     : 1.0 / sqrt(cJSON_GetArraySize(q0));
    ck_assert_msg(cJSON_IsNumber(scale) && fabs(scale->valuedouble - want) < 1e-6,
                  "%s: meta.scale must be %g", ctx, want);
    const cJSON *empty = member(meta, "empty_rows");
    double want_empty = null_rows(member(exp, "weights_softmax"));
    ck_assert_msg(cJSON_IsNumber(empty) && empty->valuedouble == want_empty,
                  "%s: meta.empty_rows must be %g", ctx, want_empty);
    cJSON_Delete(j);
    cJSON_Delete(req);
}

START_TEST(golden_sdpa_case_matches_torch_json_and_base64)
{
    const cJSON *c = sdpa_cases[_i];
    it_server *s = it_start_ok(NULL);
    run_sdpa(s, c, false);
    run_sdpa(s, c, true);
    it_stop_ok(s);
}
END_TEST

/* ----------------------------------------------------------------- mha */

static void run_mha(const it_server *s, const cJSON *c, bool b64, bool self)
{
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s (%s%s)", case_name(c), b64 ? "base64" : "json",
             self ? ", key/value omitted" : "");
    cJSON *req = cJSON_CreateObject();
    copy_float(req, c, "query_in", "query", b64);
    if (!self) {
        copy_float(req, c, "key_in", "key", b64);
        copy_float(req, c, "value_in", "value", b64);
    }
    copy_plain(req, c, "num_heads");
    copy_plain(req, c, "bias");
    copy_plain(req, c, "causal");
    copy_plain(req, c, "key_padding_mask");
    cJSON *w = cJSON_AddObjectToObject(req, "weights");
    for (const cJSON *e = member(c, "state_dict")->child; e != NULL; e = e->next)
        cJSON_AddItemToObject(w, e->string, float_input(e, b64));
    cJSON_AddBoolToObject(req, "average_weights", 1);
    if (b64)
        cJSON_AddStringToObject(req, "encoding", "base64");
    cJSON *j = post_ok(s, "/v1/multihead_attention", req, ctx);
    const cJSON *exp = member(c, "expected");
    expect_tensor(j, "output", member(exp, "output"), b64, ctx);
    expect_tensor(j, "weights", member(exp, "weights"), b64, ctx);
    expect_tensor(j, "weights_avg", member(exp, "weights_avg"), b64, ctx);
    const cJSON *meta = member(j, "meta");
    const cJSON *src = member(meta, "weights_source");
    ck_assert_msg(cJSON_IsString(src) && strcmp(src->valuestring, "state_dict") == 0,
                  "%s: meta.weights_source must be \"state_dict\"", ctx);
    const cJSON *h = member(meta, "num_heads");
    ck_assert_msg(cJSON_IsNumber(h) && h->valuedouble == member(c, "num_heads")->valuedouble,
                  "%s: meta.num_heads", ctx);
    cJSON_Delete(j);
    cJSON_Delete(req);
}

START_TEST(golden_mha_case_matches_torch_json_and_base64)
{
    const cJSON *c = mha_cases[_i];
    it_server *s = it_start_ok(NULL);
    run_mha(s, c, false, false);
    run_mha(s, c, true, false);
    /* Self-attention cases also without key/value: the server uses query. */
    if (cJSON_Compare(member(c, "key_in"), member(c, "query_in"), 1) &&
        cJSON_Compare(member(c, "value_in"), member(c, "query_in"), 1)) {
        run_mha(s, c, false, true);
        run_mha(s, c, true, true);
    }
    it_stop_ok(s);
}
END_TEST

/* -------------------------------------------- additive/general/concat/dot */

static void run_score(const it_server *s, const cJSON *c, bool b64)
{
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s (%s)", case_name(c), b64 ? "base64" : "json");
    cJSON *req = cJSON_CreateObject();
    const char *inputs[] = {"query", "key", "value", "w", "w1", "w2", "v"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
        copy_float(req, c, inputs[i], inputs[i], b64);
    cJSON_AddStringToObject(req, "score", member(c, "kind")->valuestring);
    const char *ret[] = {"output", "weights", "scores"};
    add_return(req, ret, 3);
    if (b64)
        cJSON_AddStringToObject(req, "encoding", "base64");
    cJSON *j = post_ok(s, "/v1/attention", req, ctx);
    const cJSON *exp = member(c, "expected");
    for (int i = 0; i < 3; i++)
        expect_tensor(j, ret[i], member(exp, ret[i]), b64, ctx);
    const cJSON *score = member(member(j, "meta"), "score");
    ck_assert_msg(cJSON_IsString(score) &&
                      strcmp(score->valuestring, member(c, "kind")->valuestring) == 0,
                  "%s: meta.score must echo the score", ctx);
    cJSON_Delete(j);
    cJSON_Delete(req);
}

START_TEST(golden_score_case_matches_reference_json_and_base64)
{
    const cJSON *c = score_cases[_i];
    it_server *s = it_start_ok(NULL);
    run_score(s, c, false);
    run_score(s, c, true);
    it_stop_ok(s);
}
END_TEST

START_TEST(golden_file_has_every_kind)
{
    ck_assert_msg(golden != NULL, "cannot read %s", CASES_PATH);
    ck_assert_msg(n_sdpa >= 9 && n_mha >= 7 && n_score >= 4,
                  "expected the sdpa, mha and score cases (got %d, %d, %d)", n_sdpa, n_mha,
                  n_score);
}
END_TEST

static void cases_load(void)
{
    size_t len = 0;
    char *text = it_read_file(CASES_PATH, &len);
    golden = text != NULL ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *cases = member(golden, "cases");
    for (const cJSON *c = cases != NULL ? cases->child : NULL; c != NULL; c = c->next) {
        const cJSON *kind = member(c, "kind");
        if (!cJSON_IsString(kind))
            continue;
        const char *k = kind->valuestring;
        if (strcmp(k, "sdpa") == 0 && n_sdpa < MAX_CASES)
            sdpa_cases[n_sdpa++] = c;
        else if (strcmp(k, "mha") == 0 && n_mha < MAX_CASES)
            mha_cases[n_mha++] = c;
        else if ((strcmp(k, "additive") == 0 || strcmp(k, "general") == 0 ||
                  strcmp(k, "concat") == 0 || strcmp(k, "dot") == 0) &&
                 n_score < MAX_CASES)
            score_cases[n_score++] = c;
    }
}

int main(void)
{
    cases_load();
    Suite *s = suite_create("golden_http");
    TCase *tc = tcase_create("golden");
    tcase_add_test(tc, golden_file_has_every_kind);
    tcase_add_loop_test(tc, golden_sdpa_case_matches_torch_json_and_base64, 0, n_sdpa);
    tcase_add_loop_test(tc, golden_mha_case_matches_torch_json_and_base64, 0, n_mha);
    tcase_add_loop_test(tc, golden_score_case_matches_reference_json_and_base64, 0, n_score);
    suite_add_tcase(s, tc);
    int rc = it_run_suite(s);
    cJSON_Delete(golden);
    return rc;
}
