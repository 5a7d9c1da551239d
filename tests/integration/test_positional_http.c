/* test_positional_http.c - positional encodings through HTTP: golden tables and positions inside attention. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

#define CASES_PATH ATTN_TEST_DATA "/tensor_cases.json"

static cJSON *golden;
static it_server *srv;

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static const cJSON *golden_case(const char *kind, int nth)
{
    const cJSON *cs = member(golden, "cases");
    for (const cJSON *c = cs != NULL ? cs->child : NULL; c != NULL; c = c->next) {
        const cJSON *k = member(c, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, kind) == 0 && nth-- == 0)
            return c;
    }
    return NULL;
}

static void setup(void)
{
    golden = it_json_file_ok(CASES_PATH);
    srv = it_start_ok(NULL);
}

static void teardown(void)
{
    it_stop_ok(srv);
    cJSON_Delete(golden);
}

/* POSTs req (deleted here), expects 200 and returns the parsed answer. */
static cJSON *post_ok(const char *path, cJSON *req)
{
    it_resp r;
    it_post_json_ok(srv, path, req, &r);
    ck_assert_msg(r.status == 200, "%s: %s", path, it_resp_describe(&r));
    cJSON *a = it_resp_json_ok(&r);
    it_resp_free(&r);
    cJSON_Delete(req);
    return a;
}

static void expect_match(const cJSON *actual, const cJSON *expected, double tol, const char *what)
{
    char why[512];
    ck_assert_msg(it_json_match(actual, expected, tol, 0, why, sizeof why), "%s: %s", what, why);
}

static void read_tensor(const cJSON *item, it_tensor *t)
{
    char why[256];
    ck_assert_msg(it_tensor_read(item, t, why, sizeof why), "%s", why);
}

/* ------------------------------------------------------------- golden cases */

START_TEST(sinusoidal_golden_case_through_http_json_and_base64)
{
    const cJSON *c = golden_case("sinusoidal", 0);
    ck_assert(c != NULL);
    for (int b64 = 0; b64 < 2; b64++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "type", "sinusoidal");
        cJSON_AddNumberToObject(req, "length", member(c, "length")->valuedouble);
        cJSON_AddNumberToObject(req, "dim", member(c, "dim")->valuedouble);
        if (b64)
            cJSON_AddStringToObject(req, "encoding", "base64");
        cJSON *a = post_ok("/v1/positional_encoding", req);
        it_tensor pe;
        read_tensor(member(a, "pe"), &pe);
        char why[256];
        ck_assert_msg(it_tensor_close(&pe, member(member(c, "expected"), "pe"), 1e-4, false, why,
                                      sizeof why),
                      "pe (base64 %d): %s", b64, why);
        it_tensor_free(&pe);
        cJSON_Delete(a);
    }
}
END_TEST

START_TEST(alibi_golden_slopes_through_http)
{
    int n = 0;
    for (const cJSON *c; (c = golden_case("alibi", n)) != NULL; n++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "type", "alibi");
        cJSON_AddNumberToObject(req, "num_heads", member(c, "num_heads")->valuedouble);
        cJSON_AddNumberToObject(req, "length", 5);
        cJSON *a = post_ok("/v1/positional_encoding", req);
        expect_match(member(a, "slopes"), member(member(c, "expected"), "slopes"), 1e-4,
                     member(c, "name")->valuestring);
        /* bias[h][i][j] = -slope_h |i - j| */
        it_tensor bias, slopes;
        read_tensor(member(a, "bias"), &bias);
        read_tensor(member(a, "slopes"), &slopes);
        ck_assert_uint_eq(bias.rank, 3);
        ck_assert_uint_eq(bias.shape[0], slopes.size);
        for (size_t h = 0; h < slopes.size; h++)
            for (size_t i = 0; i < 5; i++)
                for (size_t j = 0; j < 5; j++)
                    ck_assert_float_eq_tol(bias.data[(h * 5 + i) * 5 + j],
                                           -slopes.data[h] * fabs((double)i - (double)j), 1e-6);
        it_tensor_free(&bias);
        it_tensor_free(&slopes);
        cJSON_Delete(a);
    }
    ck_assert_int_ge(n, 3);
}
END_TEST

START_TEST(t5_golden_buckets_through_http)
{
    int n = 0;
    for (const cJSON *c; (c = golden_case("t5_bucket", n)) != NULL; n++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "type", "t5");
        cJSON_AddItemToObject(req, "relative_positions",
                              cJSON_Duplicate(member(c, "relative_positions"), 1));
        cJSON_AddBoolToObject(req, "bidirectional", cJSON_IsTrue(member(c, "bidirectional")));
        cJSON_AddNumberToObject(req, "num_buckets", member(c, "num_buckets")->valuedouble);
        cJSON_AddNumberToObject(req, "max_distance", member(c, "max_distance")->valuedouble);
        cJSON *a = post_ok("/v1/positional_encoding", req);
        expect_match(member(a, "buckets"), member(member(c, "expected"), "buckets"), 0,
                     member(c, "name")->valuestring);
        cJSON_Delete(a);
    }
    ck_assert_int_ge(n, 2);
    /* the [n][m] form agrees with the list form: row i, column j is bucket(j - i) */
    cJSON *req = cJSON_Parse("{\"type\": \"t5\", \"length\": 3, \"key_length\": 40}");
    cJSON *a = post_ok("/v1/positional_encoding", req);
    const cJSON *rows = member(a, "buckets");
    ck_assert_int_eq(cJSON_GetArraySize(rows), 3);
    const cJSON *bi = golden_case("t5_bucket", 0); /* bidirectional, 32 buckets, 128 */
    ck_assert(cJSON_IsTrue(member(bi, "bidirectional")));
    const cJSON *rel = member(bi, "relative_positions"), *want = member(member(bi, "expected"), "buckets");
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 40; j++) {
            int d = j - i, found = 0;
            for (int t = 0; t < cJSON_GetArraySize(rel); t++)
                if (cJSON_GetArrayItem(rel, t)->valueint == d) {
                    ck_assert_int_eq(cJSON_GetArrayItem(cJSON_GetArrayItem(rows, i), j)->valueint,
                                     cJSON_GetArrayItem(want, t)->valueint);
                    found = 1;
                }
            ck_assert(found);
        }
    cJSON_Delete(a);
}
END_TEST

START_TEST(rope_golden_case_through_http_half_style)
{
    const cJSON *c = golden_case("rope", 0);
    ck_assert(c != NULL);
    for (int b64 = 0; b64 < 2; b64++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "type", "rope");
        cJSON_AddNumberToObject(req, "base", member(c, "base")->valuedouble);
        cJSON_AddItemToObject(req, "query", b64 ? it_tensor_object_from_list(member(c, "query"))
                                                : cJSON_Duplicate(member(c, "query"), 1));
        cJSON_AddItemToObject(req, "key", cJSON_Duplicate(member(c, "key"), 1));
        cJSON *a = post_ok("/v1/positional_encoding", req);
        const cJSON *exp = member(c, "expected");
        expect_match(member(a, "query"), member(exp, "query_rotated"), 1e-4, "query");
        expect_match(member(a, "key"), member(exp, "key_rotated"), 1e-4, "key");
        cJSON_Delete(a);
    }
}
END_TEST

/* ------------------------------------------------------------- inside attention */

/* {"query", "key", "value"} of one head from the rope case (head h), value = key. */
static cJSON *rope_head_request(int h, const char *q_member, const char *k_member,
                                const cJSON *from)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query",
                          cJSON_Duplicate(cJSON_GetArrayItem(member(from, q_member), h), 1));
    cJSON_AddItemToObject(req, "key",
                          cJSON_Duplicate(cJSON_GetArrayItem(member(from, k_member), h), 1));
    cJSON_AddItemToObject(req, "value",
                          cJSON_Duplicate(cJSON_GetArrayItem(member(from, k_member), h), 1));
    cJSON_AddBoolToObject(req, "causal", true);
    return req;
}

START_TEST(rope_in_attention_equals_attention_of_golden_rotated_inputs)
{
    const cJSON *c = golden_case("rope", 0);
    for (int h = 0; h < 2; h++) {
        cJSON *plain = rope_head_request(h, "query_rotated", "key_rotated", member(c, "expected"));
        cJSON *roped = rope_head_request(h, "query", "key", c);
        /* values must not turn: send the rotated keys as values in both */
        cJSON_ReplaceItemInObject(
            roped, "value",
            cJSON_Duplicate(cJSON_GetArrayItem(member(member(c, "expected"), "key_rotated"), h), 1));
        cJSON *pos = cJSON_AddObjectToObject(roped, "positional");
        cJSON_AddStringToObject(pos, "type", "rope");
        cJSON *a = post_ok("/v1/attention", plain), *b = post_ok("/v1/attention", roped);
        expect_match(member(b, "weights"), member(a, "weights"), 1e-4, "rope weights");
        expect_match(member(b, "output"), member(a, "output"), 1e-4, "rope output");
        ck_assert_str_eq(member(member(member(b, "meta"), "positional"), "rope_style")->valuestring,
                         "half");
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
}
END_TEST

START_TEST(sinusoidal_in_attention_equals_adding_the_table_by_hand)
{
    /* q, k, v of width 4 plus the table from the endpoint must give the same answer */
    const char *qkv = "\"query\": [[0.5, -1, 0.25, 2], [1, 0, -0.5, 0.5], [0, 1, 1, -1]], "
                      "\"key\": [[1, 1, 0, 0], [0, -1, 2, 1], [0.5, 0.5, 0.5, 0.5], [-1, 0, 0, 1]], "
                      "\"value\": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]";
    char body[1024];
    snprintf(body, sizeof body, "{%s, \"positional\": {\"type\": \"sinusoidal\"}}", qkv);
    cJSON *with = post_ok("/v1/attention", cJSON_Parse(body));
    cJSON *pe = post_ok("/v1/positional_encoding",
                        cJSON_Parse("{\"type\": \"sinusoidal\", \"length\": 4, \"dim\": 4}"));
    snprintf(body, sizeof body, "{%s}", qkv);
    cJSON *req = cJSON_Parse(body);
    it_tensor t;
    read_tensor(member(pe, "pe"), &t);
    static const char *const names[] = {"query", "key", "value"};
    for (int x = 0; x < 3; x++) {
        cJSON *rows = cJSON_GetObjectItemCaseSensitive(req, names[x]);
        int i = 0;
        for (cJSON *row = rows->child; row; row = row->next, i++) {
            int j = 0;
            for (cJSON *v = row->child; v; v = v->next, j++)
                cJSON_SetNumberValue(v, v->valuedouble + t.data[i * 4 + j]);
        }
    }
    it_tensor_free(&t);
    cJSON *by_hand = post_ok("/v1/attention", req);
    expect_match(member(with, "output"), member(by_hand, "output"), 1e-5, "sinusoidal output");
    expect_match(member(with, "weights"), member(by_hand, "weights"), 1e-5, "sinusoidal weights");
    const cJSON *inputs = member(member(member(with, "meta"), "positional"), "inputs");
    ck_assert_int_eq(cJSON_GetArraySize(inputs), 3);
    cJSON_Delete(with);
    cJSON_Delete(pe);
    cJSON_Delete(by_hand);
    /* inputs narrows the targets; a learned table too short is refused at the input */
    cJSON *only_q = post_ok("/v1/attention",
                            cJSON_Parse("{\"query\": [[1, 0]], \"key\": [[1, 0], [0, 1]], "
                                        "\"value\": [[1], [2]], \"positional\": {\"type\": "
                                        "\"learned\", \"table\": [[0, 5]], \"inputs\": "
                                        "[\"query\"]}}"));
    /* q + table = [1, 5]: scores [1, 5] / sqrt(2) */
    it_tensor w;
    read_tensor(member(only_q, "weights"), &w);
    double e0 = exp(1 / sqrt(2.0)), e1 = exp(5 / sqrt(2.0));
    ck_assert_float_eq_tol(w.data[0], e0 / (e0 + e1), 1e-6);
    it_tensor_free(&w);
    cJSON_Delete(only_q);
    it_resp r;
    it_post_ok(srv, "/v1/attention",
               "{\"query\": [[1, 0]], \"key\": [[1, 0], [0, 1]], \"value\": [[1, 0], [0, 1]], "
               "\"positional\": {\"type\": \"learned\", \"table\": [[0, 5]]}}",
               &r);
    it_expect_error_ok(&r, 400, "invalid_argument", "/key", NULL);
    it_resp_free(&r);
}
END_TEST

START_TEST(alibi_and_t5_in_multihead_equal_the_per_head_bias)
{
    /* the same request with attn_bias [H][n][n] built from the endpoint's answers */
    const char *base = "\"query\": [[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1], "
                       "[1, -1, 1, -1]], \"num_heads\": 2, \"seed\": 7, \"causal\": true";
    char body[2048];
    for (int kind = 0; kind < 2; kind++) {
        it_tensor bias;
        cJSON *pos_ans;
        if (kind == 0) {
            snprintf(body, sizeof body, "{%s, \"positional\": {\"type\": \"alibi\"}}", base);
            pos_ans = post_ok("/v1/positional_encoding",
                              cJSON_Parse("{\"type\": \"alibi\", \"num_heads\": 2, \"length\": 5}"));
            read_tensor(member(pos_ans, "bias"), &bias);
        } else {
            static const float table[8][2] = {{0.5f, -1}, {1, 0}, {-0.5f, 2}, {0, 0.25f},
                                               {1.5f, 1}, {-1, -1}, {0.75f, 0}, {2, 0.5f}};
            snprintf(body, sizeof body,
                     "{%s, \"positional\": {\"type\": \"t5\", \"num_buckets\": 8, "
                     "\"max_distance\": 4, \"table\": [[0.5, -1], [1, 0], [-0.5, 2], [0, 0.25], "
                     "[1.5, 1], [-1, -1], [0.75, 0], [2, 0.5]]}}",
                     base);
            pos_ans = post_ok("/v1/positional_encoding",
                              cJSON_Parse("{\"type\": \"t5\", \"num_buckets\": 8, "
                                          "\"max_distance\": 4, \"length\": 5}"));
            const cJSON *b = member(pos_ans, "buckets");
            bias.rank = 3;
            bias.shape[0] = 2;
            bias.shape[1] = bias.shape[2] = 5;
            bias.size = 50;
            bias.data = malloc(50 * sizeof(float));
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 5; i++)
                    for (int j = 0; j < 5; j++)
                        bias.data[(h * 5 + i) * 5 + j] =
                            table[cJSON_GetArrayItem(cJSON_GetArrayItem(b, i), j)->valueint][h];
        }
        cJSON *with = post_ok("/v1/multihead_attention", cJSON_Parse(body));
        snprintf(body, sizeof body, "{%s}", base);
        cJSON *req = cJSON_Parse(body);
        cJSON_AddItemToObject(req, "attn_bias", it_list_from_floats(bias.data, 3, bias.shape));
        cJSON *by_hand = post_ok("/v1/multihead_attention", req);
        expect_match(member(with, "weights"), member(by_hand, "weights"), 1e-5,
                     kind ? "t5 weights" : "alibi weights");
        expect_match(member(with, "output"), member(by_hand, "output"), 1e-5,
                     kind ? "t5 output" : "alibi output");
        it_tensor_free(&bias);
        cJSON_Delete(pos_ans);
        cJSON_Delete(with);
        cJSON_Delete(by_hand);
    }
}
END_TEST

START_TEST(relative_shaw_in_attention_matches_a_reference)
{
    /* n = 3, m = 4, d = 2, clip 1: s_ij = q_i.(k_j + A[c]) / sqrt 2, out_i = sum w_ij (v_j + B[c]) */
    static const double q[3][2] = {{1, 0}, {0, 1}, {1, 1}};
    static const double k[4][2] = {{1, 0}, {0, 1}, {1, 1}, {-1, 0.5}};
    static const double v[4][1] = {{1}, {2}, {3}, {4}};
    static const double A[3][2] = {{0.5, 0}, {0, 0}, {0, -0.5}};
    static const double B[3][1] = {{-1}, {0}, {1}};
    cJSON *a = post_ok(
        "/v1/attention",
        cJSON_Parse("{\"query\": [[1, 0], [0, 1], [1, 1]], \"key\": [[1, 0], [0, 1], [1, 1], "
                    "[-1, 0.5]], \"value\": [[1], [2], [3], [4]], \"positional\": {\"type\": "
                    "\"relative\", \"clip\": 1, \"key_table\": [[0.5, 0], [0, 0], [0, -0.5]], "
                    "\"value_table\": [[-1], [0], [1]]}}"));
    it_tensor out, w;
    read_tensor(member(a, "output"), &out);
    read_tensor(member(a, "weights"), &w);
    for (int i = 0; i < 3; i++) {
        double s[4], mx = -1e300, sum = 0, o = 0;
        for (int j = 0; j < 4; j++) {
            int c = j - i < -1 ? 0 : j - i > 1 ? 2 : j - i + 1;
            s[j] = (q[i][0] * (k[j][0] + A[c][0]) + q[i][1] * (k[j][1] + A[c][1])) / sqrt(2.0);
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < 4; j++)
            sum += exp(s[j] - mx);
        for (int j = 0; j < 4; j++) {
            int c = j - i < -1 ? 0 : j - i > 1 ? 2 : j - i + 1;
            double wij = exp(s[j] - mx) / sum;
            ck_assert_float_eq_tol(w.data[i * 4 + j], wij, 1e-5);
            o += wij * (v[j][0] + B[c][0]);
        }
        ck_assert_float_eq_tol(out.data[i], o, 1e-5);
    }
    it_tensor_free(&out);
    it_tensor_free(&w);
    cJSON_Delete(a);
}
END_TEST

/* ------------------------------------------------------------- errors */

START_TEST(malformed_positional_requests_name_the_field)
{
    static const struct {
        const char *path, *body, *field;
    } rows[] = {
        {"/v1/positional_encoding", "{\"type\": \"wavelet\"}", "/type"},
        {"/v1/positional_encoding", "{\"type\": \"sinusoidal\", \"length\": 4}", "/dim"},
        {"/v1/positional_encoding", "{\"type\": \"sinusoidal\", \"length\": -1, \"dim\": 4}",
         "/length"},
        {"/v1/positional_encoding", "{\"type\": \"rope\", \"query\": [[1, 2, 3]]}", "/query"},
        {"/v1/positional_encoding", "{\"type\": \"rope\", \"query\": [[1, 2]], \"rope_style\": "
                                    "\"spiral\"}", "/rope_style"},
        {"/v1/positional_encoding", "{\"type\": \"alibi\", \"num_heads\": 2, \"dim\": 3}", "/dim"},
        {"/v1/positional_encoding", "{\"type\": \"t5\", \"num_buckets\": 8, \"max_distance\": 2, "
                                    "\"length\": 3}", "/max_distance"},
        {"/v1/attention", "{\"query\": [[1, 2, 3]], \"key\": [[1, 2, 3]], \"value\": [[1]], "
                          "\"positional\": {\"type\": \"rope\"}}", "/positional/type"},
        {"/v1/attention", "{\"query\": [[1, 2]], \"key\": [[1, 2]], \"value\": [[1]], "
                          "\"positional\": {\"type\": \"rope\", \"clip\": 2}}", "/positional/clip"},
        {"/v1/attention", "{\"query\": [[1, 2]], \"key\": [[1, 2]], \"value\": [[1]], "
                          "\"positional\": {\"kind\": \"rope\"}}", "/positional/kind"},
        {"/v1/attention", "{\"query\": [[1, 2]], \"key\": [[1, 2]], \"value\": [[1]], "
                          "\"positional\": {\"type\": \"relative\", \"clip\": 1, "
                          "\"key_table\": [[1, 2], [3, 4]]}}", "/positional/key_table"},
        {"/v1/attention", "{\"query\": [[1, 2]], \"key\": [[1, 2]], \"value\": [[1]], "
                          "\"positional\": {\"type\": \"relative\", \"key_table\": [[1, 2]]}}",
         "/positional/clip"},
        {"/v1/attention", "{\"query\": [[1, 2]], \"key\": [[1, 2]], \"value\": [[1]], "
                          "\"positional\": {\"type\": \"alibi\"}, \"kernel\": {\"type\": "
                          "\"linear\"}}", "/positional/type"},
        {"/v1/multihead_attention", "{\"query\": [[1, 2, 3, 4]], \"num_heads\": 2, \"seed\": 1, "
                                    "\"positional\": {\"type\": \"t5\", \"table\": [[1]]}}",
         "/positional/table"},
        {"/v1/multihead_attention", "{\"query\": [[1, 2, 3, 4]], \"num_heads\": 2, \"seed\": 1, "
                                    "\"positional\": {\"type\": \"alibi\", \"slopes\": [1]}}",
         "/positional/slopes"},
        {"/v1/multihead_attention", "{\"query\": [[1, 2, 3, 4, 5, 6]], \"num_heads\": 2, "
                                    "\"seed\": 1, \"positional\": {\"type\": \"rope\"}}",
         "/positional/type"},
        {"/v1/multihead_attention", "{\"query\": [[1, 2, 3, 4]], \"num_heads\": 2, \"seed\": 1, "
                                    "\"positional\": {\"type\": \"learned\", \"table\": "
                                    "[[1, 2, 3]]}}", "/positional/table"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        it_resp r;
        it_post_ok(srv, rows[i].path, rows[i].body, &r);
        it_expect_error_ok(&r, 400, "invalid_argument", rows[i].field, rows[i].body);
        it_resp_free(&r);
    }
}
END_TEST

static Suite *positional_suite(void)
{
    Suite *s = suite_create("positional_http");
    TCase *tc = tcase_create("positional");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, sinusoidal_golden_case_through_http_json_and_base64);
    tcase_add_test(tc, alibi_golden_slopes_through_http);
    tcase_add_test(tc, t5_golden_buckets_through_http);
    tcase_add_test(tc, rope_golden_case_through_http_half_style);
    tcase_add_test(tc, rope_in_attention_equals_attention_of_golden_rotated_inputs);
    tcase_add_test(tc, sinusoidal_in_attention_equals_adding_the_table_by_hand);
    tcase_add_test(tc, alibi_and_t5_in_multihead_equal_the_per_head_bias);
    tcase_add_test(tc, relative_shaw_in_attention_matches_a_reference);
    tcase_add_test(tc, malformed_positional_requests_name_the_field);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(positional_suite());
}
