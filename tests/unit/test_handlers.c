/* test_handlers.c - the attention handlers called directly, without sockets. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "json.h"
#include "srv.h"

static srv_app app;

static void setup(void)
{
    srv_json_pool_install();
    memset(&app, 0, sizeof app);
    srv_config_defaults(&app.config);
    app.ready = 1;
}

/* Runs handler on body; returns the parsed response (caller deletes) and its status. */
static cJSON *call(srv_handler h, const char *body, int *status)
{
    srv_request req;
    srv_response res;
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = "/";
    req.body = body;
    req.body_len = strlen(body);
    srv_response_init(&res);
    /* As srv_dispatch does: the request tree comes from the pool, which the
     * end releases; the answer must not depend on it. */
    srv_json_pool_begin();
    h(&app, &req, &res);
    srv_json_pool_end();
    *status = res.status;
    ck_assert_ptr_nonnull(res.body);
    cJSON *j = cJSON_ParseWithLength(res.body, res.body_len);
    ck_assert_msg(j != NULL, "response is not JSON: %.*s", (int)res.body_len, res.body);
    srv_response_clear(&res);
    return j;
}

static void assert_error(cJSON *j, int status, int want_status, const char *code,
                         const char *field)
{
    const cJSON *err = cJSON_GetObjectItem(j, "error");
    ck_assert_msg(err != NULL, "no error envelope");
    ck_assert_int_eq(status, want_status);
    ck_assert_int_eq(cJSON_GetObjectItem(err, "status")->valueint, want_status);
    ck_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, code);
    ck_assert_str_eq(cJSON_GetObjectItem(err, "field")->valuestring, field);
    ck_assert(strlen(cJSON_GetObjectItem(err, "message")->valuestring) > 0);
}

static double at2(const cJSON *m, int i, int j)
{
    return cJSON_GetArrayItem(cJSON_GetArrayItem(m, i), j)->valuedouble;
}

START_TEST(attention_matches_naive_softmax)
{
    static const double q[2][2] = {{1, 0}, {0.5, -1}};
    static const double k[3][2] = {{1, 1}, {0, 2}, {-1, 0.25}};
    static const double v[3][1] = {{1}, {2}, {3}};
    const char *body = "{\"query\": [[1,0],[0.5,-1]], \"key\": [[1,1],[0,2],[-1,0.25]],"
                       " \"value\": [[1],[2],[3]]}";
    int st;
    cJSON *j = call(srv_h_attention, body, &st);
    ck_assert_int_eq(st, 200);
    const cJSON *out = cJSON_GetObjectItem(j, "output");
    const cJSON *w = cJSON_GetObjectItem(j, "weights");
    for (int i = 0; i < 2; i++) {
        double s[3], mx = -1e300, z = 0, o = 0;
        for (int c = 0; c < 3; c++) {
            s[c] = (q[i][0] * k[c][0] + q[i][1] * k[c][1]) / sqrt(2.0);
            mx = fmax(mx, s[c]);
        }
        for (int c = 0; c < 3; c++)
            z += exp(s[c] - mx);
        for (int c = 0; c < 3; c++) {
            double p = exp(s[c] - mx) / z;
            ck_assert_double_eq_tol(at2(w, i, c), p, 1e-6);
            o += p * v[c][0];
        }
        ck_assert_double_eq_tol(at2(out, i, 0), o, 1e-6);
    }
    const cJSON *meta = cJSON_GetObjectItem(j, "meta");
    ck_assert_double_eq_tol(cJSON_GetObjectItem(meta, "scale")->valuedouble, 1 / sqrt(2.0), 1e-7);
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "score")->valuestring, "scaled_dot");
    cJSON_Delete(j);
}
END_TEST

START_TEST(attention_fully_masked_row_gives_zeros)
{
    const char *body = "{\"query\": [[1,0],[0,1]], \"key\": [[1,1],[0,2]], \"value\": [[1,2],[3,4]],"
                       " \"mask\": [[true,false],[false,false]], \"return\": [\"output\",\"weights\",\"scores\"]}";
    int st;
    cJSON *j = call(srv_h_attention, body, &st);
    ck_assert_int_eq(st, 200);
    const cJSON *out = cJSON_GetObjectItem(j, "output");
    const cJSON *w = cJSON_GetObjectItem(j, "weights");
    const cJSON *s = cJSON_GetObjectItem(j, "scores");
    ck_assert_double_eq(at2(w, 0, 0), 1.0);
    ck_assert_double_eq(at2(w, 1, 0), 0.0);
    ck_assert_double_eq(at2(w, 1, 1), 0.0);
    ck_assert_double_eq(at2(out, 1, 0), 0.0);
    ck_assert_double_eq(at2(out, 1, 1), 0.0);
    /* masked scores are -inf: null in JSON */
    ck_assert(cJSON_IsNull(cJSON_GetArrayItem(cJSON_GetArrayItem(s, 0), 1)));
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "meta"), "empty_rows")->valueint, 1);
    cJSON_Delete(j);
}
END_TEST

START_TEST(attention_batch_dimension_is_kept)
{
    const char *body = "{\"query\": [[[1,0]],[[0,1]]], \"key\": [[[1,0],[0,1]],[[1,0],[0,1]]],"
                       " \"value\": [[[1],[2]],[[1],[2]]], \"causal\": \"bottom_right\"}";
    int st;
    cJSON *j = call(srv_h_attention, body, &st);
    ck_assert_int_eq(st, 200);
    const cJSON *out = cJSON_GetObjectItem(j, "output");
    ck_assert_int_eq(cJSON_GetArraySize(out), 2);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(out, 0)), 1);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "meta"), "batch")->valueint, 2);
    /* bottom-right: the single query sees both keys */
    const cJSON *w0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "weights"), 0);
    ck_assert(at2(w0, 0, 1) > 0);
    cJSON_Delete(j);
}
END_TEST

START_TEST(attention_bad_requests_name_the_field)
{
    static const struct {
        const char *body;
        int status;
        const char *code, *field;
    } cases[] = {
        {"{\"query\": [[1,2],[3]], \"key\": [[1,2]], \"value\": [[1]]}", 400, "invalid_argument", "/query/1"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"attn_mask\": [[true]]}", 400, "invalid_argument", "/attn_mask"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"casual\": true}", 400, "invalid_argument", "/casual"},
        {"{\"query\": [[1,2]], \"key\": [[1,2,3]], \"value\": [[1]]}", 400, "invalid_argument", "/key"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1],[2]]}", 400, "invalid_argument", "/value"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"score\": \"cosine\"}", 400, "invalid_argument", "/score"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"score\": \"general\"}", 400, "invalid_argument", "/w"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"scale\": 0}", 400, "invalid_argument", "/scale"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"mask\": [[true, true]]}", 400, "invalid_argument", "/mask"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"return\": [\"output\", \"logits\"]}", 400, "invalid_argument", "/return/1"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"causal\": \"sideways\"}", 400, "invalid_argument", "/causal"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"pattern\": {\"window\": -1}}", 400, "invalid_argument", "/pattern/window"},
        {"{\"query\": [[1,2,3]], \"key\": [[1,2,3]], \"value\": [[1]], \"positional\": {\"type\": \"rope\"}}", 400, "invalid_argument", "/positional/type"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]], \"value\": [[1]], \"tokens\": [\"a\", \"b\"]}", 400, "invalid_argument", "/tokens"},
        {"{\"query\": [[1,2]], \"key\": [[1,2]]", 400, "malformed_json", ""},
        {"[1,2]", 400, "invalid_argument", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st;
        cJSON *j = call(srv_h_attention, cases[i].body, &st);
        assert_error(j, st, cases[i].status, cases[i].code, cases[i].field);
        cJSON_Delete(j);
    }
}
END_TEST

START_TEST(attention_output_limit_is_413)
{
    app.config.max_elements = 5; /* inputs fit, output + weights (6) do not */
    int st;
    cJSON *j = call(srv_h_attention,
                    "{\"query\": [[1,2],[3,4]], \"key\": [[1,2],[0,0]], \"value\": [[1],[2]]}",
                    &st);
    assert_error(j, st, 413, "payload_too_large", "");
    cJSON_Delete(j);
}
END_TEST

static const char *mha_seed = "{\"query\": [[1,0,0,1],[0,1,1,0],[1,1,0,0]], \"num_heads\": 2, \"seed\": 7,"
                              " \"return\": [\"output\", \"weights\", \"weights_avg\", \"head_outputs\", \"q\", \"k\", \"v\"]}";

START_TEST(mha_seeded_is_deterministic_and_rows_sum_to_one)
{
    int st1, st2;
    cJSON *a = call(srv_h_mha, mha_seed, &st1);
    cJSON *b = call(srv_h_mha, mha_seed, &st2);
    ck_assert_int_eq(st1, 200);
    ck_assert_int_eq(st2, 200);
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(a, "output"), cJSON_GetObjectItem(b, "output"), 1));
    const cJSON *w = cJSON_GetObjectItem(a, "weights");
    ck_assert_int_eq(cJSON_GetArraySize(w), 2);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 3; i++) {
            double s = 0;
            for (int c = 0; c < 3; c++)
                s += at2(cJSON_GetArrayItem(w, h), i, c);
            ck_assert_double_eq_tol(s, 1.0, 1e-6);
        }
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(a, "head_outputs")), 2);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "k"), 0)), 4);
    const cJSON *meta = cJSON_GetObjectItem(a, "meta");
    ck_assert_str_eq(cJSON_GetObjectItem(meta, "weights_source")->valuestring, "seed");
    ck_assert_int_eq(cJSON_GetObjectItem(meta, "head_dim")->valueint, 2);
    cJSON_Delete(a);
    cJSON_Delete(b);
}
END_TEST

START_TEST(mha_self_equals_explicit_key_value)
{
    int st1, st2;
    cJSON *a = call(srv_h_mha, "{\"query\": [[1,0,0,1],[0,1,1,0]], \"num_heads\": 2, \"seed\": 3}", &st1);
    cJSON *b = call(srv_h_mha,
                    "{\"query\": [[1,0,0,1],[0,1,1,0]], \"key\": [[1,0,0,1],[0,1,1,0]],"
                    " \"value\": [[1,0,0,1],[0,1,1,0]], \"num_heads\": 2, \"seed\": 3}",
                    &st2);
    ck_assert_int_eq(st1, 200);
    ck_assert_int_eq(st2, 200);
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(a, "output"), cJSON_GetObjectItem(b, "output"), 1));
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(a, "weights"), cJSON_GetObjectItem(b, "weights"), 1));
    cJSON_Delete(a);
    cJSON_Delete(b);
}
END_TEST

START_TEST(mha_gqa_projects_fewer_key_heads)
{
    int st;
    cJSON *j = call(srv_h_mha,
                    "{\"query\": [[1,0,0,1,1,0,0,1],[0,1,1,0,0,1,1,0]], \"num_heads\": 4,"
                    " \"num_kv_heads\": 2, \"seed\": 1, \"return\": [\"weights\", \"k\"]}",
                    &st);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "weights")), 4);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "k"), 0)), 4);
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "output"));
    cJSON_Delete(j);
}
END_TEST

START_TEST(mha_bias_kv_and_zero_attn_add_key_columns)
{
    int st;
    cJSON *j = call(srv_h_mha,
                    "{\"query\": [[1,0],[0,1],[1,1]], \"num_heads\": 1, \"seed\": 2,"
                    " \"add_bias_kv\": true, \"add_zero_attn\": true, \"causal\": true}",
                    &st);
    ck_assert_int_eq(st, 200);
    const cJSON *w0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "weights"), 0);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(w0, 0)), 5);
    /* the appended columns are never masked, even by causal */
    ck_assert(at2(w0, 0, 3) > 0);
    ck_assert(at2(w0, 0, 4) > 0);
    ck_assert_double_eq(at2(w0, 0, 1), 0.0);
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "meta"), "key_length")->valueint, 5);
    cJSON_Delete(j);
}
END_TEST

START_TEST(mha_bad_requests_name_the_field)
{
    static const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"{\"query\": [[1,0,0]], \"num_heads\": 2}", "/num_heads"},
        {"{\"query\": [[1,0,0,1]], \"num_heads\": 0}", "/num_heads"},
        {"{\"query\": [[1,0,0,1]], \"num_heads\": -2}", "/num_heads"},
        {"{\"query\": [[1,0,0,1]]}", "/num_heads"},
        {"{\"query\": [[1,0,0,1]], \"num_heads\": 4, \"num_kv_heads\": 3}", "/num_kv_heads"},
        {"{\"query\": [[1,0,0,1]], \"num_heads\": 2, \"key\": [[1,0,0,1]]}", "/value"},
        {"{\"query\": [[1,0]], \"num_heads\": 1, \"weights\": {\"in_proj_weight\": [[1,0],[0,1]], \"out_proj.weight\": [[1,0],[0,1]]}}", "/weights/in_proj_weight"},
        {"{\"query\": [[1,0]], \"num_heads\": 1, \"weights\": {\"in_proj_weights\": []}}", "/weights/in_proj_weights"},
        {"{\"query\": [[1,0]], \"num_heads\": 1, \"weights\": {\"in_proj_weight\": [[1,0],[0,1],[1,0],[0,1],[1,0],[0,1]]}}", "/weights/out_proj.weight"},
        {"{\"query\": [[1,0]], \"num_heads\": 1, \"attn_bias\": [[0],[0]]}", "/attn_bias"},
        {"{\"query\": [[1,0]], \"num_heads\": 1, \"key_padding_mask\": [true, false]}", "/key_padding_mask"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st;
        cJSON *j = call(srv_h_mha, cases[i].body, &st);
        assert_error(j, st, 400, "invalid_argument", cases[i].field);
        cJSON_Delete(j);
    }
}
END_TEST

START_TEST(base64_output_decodes_to_the_json_numbers)
{
    int st1, st2;
    cJSON *a = call(srv_h_attention,
                    "{\"query\": [[1,0],[0.5,-1]], \"key\": [[1,1],[0,2]], \"value\": [[1,2],[3,4]]}",
                    &st1);
    cJSON *b = call(srv_h_attention,
                    "{\"query\": [[1,0],[0.5,-1]], \"key\": [[1,1],[0,2]], \"value\": [[1,2],[3,4]],"
                    " \"encoding\": \"base64\"}",
                    &st2);
    ck_assert_int_eq(st1, 200);
    ck_assert_int_eq(st2, 200);
    const cJSON *t = cJSON_GetObjectItem(b, "output");
    ck_assert_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring, "float32");
    const char *data = cJSON_GetObjectItem(t, "data")->valuestring;
    float f[4];
    size_t len = 0, bad = 0;
    unsigned char raw[32];
    ck_assert(srv_base64_decode(data, strlen(data), raw, &len, &bad));
    ck_assert_uint_eq(len, 16);
    memcpy(f, raw, 16);
    const cJSON *o = cJSON_GetObjectItem(a, "output");
    for (int i = 0; i < 4; i++)
        ck_assert_float_eq((float)at2(o, i / 2, i % 2), f[i]);
    cJSON_Delete(a);
    cJSON_Delete(b);
}
END_TEST


/* COO triplets agree with the dense weights: every kept entry, and only those. */
static void check_coo_against_dense(const char *extra, size_t topk, double threshold)
{
    char dense_body[512], sparse_body[600];
    const char *base = "\"query\": [[1,0],[0,1],[1,1],[2,0.5]], \"key\": [[1,0],[0,1],[1,1],[0,0],[3,1]],"
                       " \"value\": [[1],[2],[3],[4],[5]], \"mask\": [[true,true,true,true,true],"
                       "[true,true,true,true,true],[false,false,false,false,false],[true,true,true,true,true]]";
    snprintf(dense_body, sizeof dense_body, "{%s}", base);
    snprintf(sparse_body, sizeof sparse_body, "{%s, \"sparsify\": %s}", base, extra);
    int st1, st2;
    cJSON *d = call(srv_h_attention, dense_body, &st1);
    cJSON *sp = call(srv_h_attention, sparse_body, &st2);
    ck_assert_int_eq(st1, 200);
    ck_assert_int_eq(st2, 200);
    const cJSON *w = cJSON_GetObjectItem(d, "weights");
    const cJSON *coo = cJSON_GetObjectItem(sp, "weights");
    const cJSON *rows = cJSON_GetObjectItem(coo, "rows"), *cols = cJSON_GetObjectItem(coo, "cols");
    const cJSON *vals = cJSON_GetObjectItem(coo, "values");
    int nnz = cJSON_GetArraySize(rows);
    ck_assert_int_eq(cJSON_GetArraySize(cols), nnz);
    ck_assert_int_eq(cJSON_GetArraySize(vals), nnz);
    int kept[4][5] = {{0}};
    for (int t = 0; t < nnz; t++) {
        int i = cJSON_GetArrayItem(rows, t)->valueint, j = cJSON_GetArrayItem(cols, t)->valueint;
        kept[i][j] = 1;
        ck_assert_double_eq_tol(cJSON_GetArrayItem(vals, t)->valuedouble, at2(w, i, j), 1e-7);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 5; j++) {
            double v = at2(w, i, j);
            size_t larger = 0;
            for (int t = 0; t < 5; t++)
                larger += at2(w, i, t) > v || (at2(w, i, t) == v && t < j);
            int want = v > 0 && (topk ? larger < topk : v >= threshold);
            ck_assert_msg(kept[i][j] == want, "row %d col %d: kept %d, expected %d", i, j,
                          kept[i][j], want);
        }
    }
    ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(sp, "meta"), "nnz")->valueint, nnz);
    cJSON_Delete(d);
    cJSON_Delete(sp);
}

START_TEST(sparsify_topk_keeps_each_rows_largest)
{
    check_coo_against_dense("{\"topk\": 2}", 2, 0);
    check_coo_against_dense("{\"topk\": 9}", 9, 0);
}
END_TEST

START_TEST(sparsify_threshold_keeps_weights_at_or_above)
{
    check_coo_against_dense("{\"threshold\": 0.2}", 0, 0.2);
}
END_TEST

START_TEST(sparsify_bad_requests_name_the_field)
{
    static const struct {
        const char *body, *field;
    } cases[] = {
        {"{\"query\": [[1,0]], \"key\": [[1,0]], \"value\": [[1]], \"sparsify\": {\"topk\": 1, \"threshold\": 0.5}}", "/sparsify"},
        {"{\"query\": [[1,0]], \"key\": [[1,0]], \"value\": [[1]], \"sparsify\": {\"topk\": 0}}", "/sparsify/topk"},
        {"{\"query\": [[1,0]], \"key\": [[1,0]], \"value\": [[1]], \"sparsify\": {\"threshold\": 2}}", "/sparsify/threshold"},
        {"{\"query\": [[1,0]], \"key\": [[1,0]], \"value\": [[1]], \"sparsify\": 3}", "/sparsify"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st;
        cJSON *j = call(srv_h_attention, cases[i].body, &st);
        assert_error(j, st, 400, "invalid_argument", cases[i].field);
        cJSON_Delete(j);
    }
    int st;
    cJSON *j = call(srv_h_mha, "{\"query\": [[1,0]], \"num_heads\": 1, \"sparsify\": {\"topk\": 0}}", &st);
    assert_error(j, st, 400, "invalid_argument", "/sparsify/topk");
    cJSON_Delete(j);
}
END_TEST

static Suite *handlers_suite(void)
{
    Suite *s = suite_create("handlers");
    TCase *tc = tcase_create("attention");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, attention_matches_naive_softmax);
    tcase_add_test(tc, attention_fully_masked_row_gives_zeros);
    tcase_add_test(tc, attention_batch_dimension_is_kept);
    tcase_add_test(tc, attention_bad_requests_name_the_field);
    tcase_add_test(tc, attention_output_limit_is_413);
    tcase_add_test(tc, base64_output_decodes_to_the_json_numbers);
    tcase_add_test(tc, sparsify_topk_keeps_each_rows_largest);
    tcase_add_test(tc, sparsify_threshold_keeps_weights_at_or_above);
    tcase_add_test(tc, sparsify_bad_requests_name_the_field);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("multihead");
    tcase_add_checked_fixture(tm, setup, NULL);
    tcase_add_test(tm, mha_seeded_is_deterministic_and_rows_sum_to_one);
    tcase_add_test(tm, mha_self_equals_explicit_key_value);
    tcase_add_test(tm, mha_gqa_projects_fewer_key_heads);
    tcase_add_test(tm, mha_bias_kv_and_zero_attn_add_key_columns);
    tcase_add_test(tm, mha_bad_requests_name_the_field);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(handlers_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
