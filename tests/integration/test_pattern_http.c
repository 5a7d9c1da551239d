/* test_pattern_http.c - sparse/local/global pattern golden cases and pattern errors through HTTP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

#define CASES_PATH ATTN_TEST_DATA "/pattern_cases.json"
#define TOL 1e-4
#define MAX_CASES 64

static cJSON *golden;
static const cJSON *cases[MAX_CASES];
static int n_cases;

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static void cases_load(void)
{
    size_t len = 0;
    char *text = it_read_file(CASES_PATH, &len);
    golden = text != NULL ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *cs = member(golden, "cases");
    for (const cJSON *c = cs != NULL ? cs->child : NULL; c != NULL; c = c->next)
        if (n_cases < MAX_CASES)
            cases[n_cases++] = c;
}

START_TEST(pattern_file_has_cases)
{
    ck_assert_msg(n_cases >= 8, "%s: expected the 8 golden pattern cases, found %d", CASES_PATH,
                  n_cases);
}
END_TEST

static cJSON *case_request(const cJSON *c, bool multihead)
{
    cJSON *req = cJSON_CreateObject();
    cJSON_AddItemToObject(req, "query", cJSON_Duplicate(member(c, "query"), 1));
    cJSON_AddItemToObject(req, "key", cJSON_Duplicate(member(c, "key"), 1));
    cJSON_AddItemToObject(req, "value", cJSON_Duplicate(member(c, "value"), 1));
    cJSON_AddItemToObject(req, "pattern", cJSON_Duplicate(member(c, "pattern"), 1));
    cJSON_AddBoolToObject(req, "causal", cJSON_IsTrue(member(c, "causal")));
    if (!multihead) {
        static const char *const ret[] = {"output", "weights", "pattern"};
        cJSON_AddItemToObject(req, "return", cJSON_CreateStringArray(ret, 3));
    }
    return req;
}

static void expect_member(const cJSON *answer, const char *name, const cJSON *expected,
                          const char *ctx)
{
    char why[512];
    const cJSON *item = member(answer, name);
    ck_assert_msg(item != NULL, "%s: no \"%s\" in the answer", ctx, name);
    ck_assert_msg(it_json_match(item, expected, TOL, 0, why, sizeof why), "%s: %s: %s", ctx,
                  name, why);
}

START_TEST(pattern_case_matches_reference_through_http)
{
    const cJSON *c = cases[_i];
    const char *name = member(c, "name")->valuestring;
    const cJSON *exp = member(c, "expected");
    it_server *s = it_start_ok(NULL);
    cJSON *req = case_request(c, false);
    it_resp r;
    it_post_json_ok(s, "/v1/attention", req, &r);
    ck_assert_msg(r.status == 200, "%s: %s", name, it_resp_describe(&r));
    cJSON *a = it_resp_json_ok(&r);
    expect_member(a, "output", member(exp, "output"), name);
    expect_member(a, "weights", member(exp, "weights"), name);
    expect_member(a, "pattern", member(exp, "allowed"), name);
    const cJSON *meta = member(a, "meta");
    ck_assert_msg(member(meta, "pattern") != NULL, "%s: meta.pattern missing", name);
    if (member(member(c, "pattern"), "window"))
        ck_assert_msg(member(meta, "window_left_right") != NULL,
                      "%s: the window is not echoed in [left, right] form", name);
    cJSON_Delete(a);
    it_resp_free(&r);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

/* [rows][cols] with ones on the diagonal. */
static cJSON *eye(int rows, int cols)
{
    cJSON *m = cJSON_CreateArray();
    for (int r = 0; r < rows; r++) {
        cJSON *row = cJSON_CreateArray();
        for (int k = 0; k < cols; k++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(r == k ? 1 : 0));
        cJSON_AddItemToArray(m, row);
    }
    return m;
}

/* Per head: a one-head block with identity q/k projections has the
 * single-head case's weights. */
START_TEST(pattern_applies_per_head_in_multihead_attention)
{
    const cJSON *c = cases[_i];
    const char *name = member(c, "name")->valuestring;
    int d = cJSON_GetArraySize(cJSON_GetArrayItem(member(c, "query"), 0));
    int dv = cJSON_GetArraySize(cJSON_GetArrayItem(member(c, "value"), 0));
    it_server *s = it_start_ok(NULL);
    cJSON *req = case_request(c, true);
    cJSON_AddNumberToObject(req, "num_heads", 1);
    cJSON *w = cJSON_CreateObject();
    cJSON_AddItemToObject(w, "q_proj_weight", eye(d, d));
    cJSON_AddItemToObject(w, "k_proj_weight", eye(d, d));
    cJSON_AddItemToObject(w, "v_proj_weight", eye(d, dv));
    cJSON_AddItemToObject(w, "out_proj.weight", eye(d, d));
    cJSON_AddItemToObject(req, "weights", w);
    it_resp r;
    it_post_json_ok(s, "/v1/multihead_attention", req, &r);
    ck_assert_msg(r.status == 200, "%s: %s", name, it_resp_describe(&r));
    cJSON *a = it_resp_json_ok(&r);
    const cJSON *exp = member(c, "expected");
    char why[512];
    ck_assert_msg(it_json_match(cJSON_GetArrayItem(member(a, "weights"), 0), member(exp, "weights"),
                                TOL, 0, why, sizeof why),
                  "%s: head 0 weights: %s", name, why);
    cJSON_Delete(a);
    it_resp_free(&r);
    cJSON_Delete(req);
    it_stop_ok(s);
}
END_TEST

START_TEST(malformed_patterns_get_400_naming_the_field)
{
    static const struct {
        const char *pattern, *field;
    } bad[] = {
        {"{\"window\": -1}", "/pattern/window"},
        {"{\"window\": [1, -3]}", "/pattern/window/1"},
        {"{\"window\": \"wide\"}", "/pattern/window"},
        {"{\"windw\": 2}", "/pattern/windw"},
        {"{\"global_tokens\": [0, 9]}", "/pattern/global_tokens/1"},
        {"{\"stride\": 0}", "/pattern/stride"},
        {"{\"block_size\": -4}", "/pattern/block_size"},
        {"{\"dilation\": 2}", "/pattern/dilation"},
        {"{\"window\": 1, \"dilation\": 0}", "/pattern/dilation"},
        {"{\"seed\": 3}", "/pattern/seed"},
        {"{}", "/pattern"},
        {"[1]", "/pattern"},
    };
    it_server *s = it_start_ok(NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"query\": [[1,0],[0,1],[1,1]], \"key\": [[1,0],[0,1],[1,1]],"
                 " \"value\": [[1],[2],[3]], \"pattern\": %s}",
                 bad[i].pattern);
        it_resp r;
        it_post_ok(s, "/v1/attention", body, &r);
        it_expect_error_ok(&r, 400, "invalid_argument", bad[i].field, bad[i].pattern);
        it_resp_free(&r);
    }
    it_stop_ok(s);
}
END_TEST

int main(void)
{
    cases_load();
    Suite *s = suite_create("pattern_http");
    TCase *tc = tcase_create("pattern");
    tcase_add_test(tc, pattern_file_has_cases);
    tcase_add_loop_test(tc, pattern_case_matches_reference_through_http, 0, n_cases);
    tcase_add_loop_test(tc, pattern_applies_per_head_in_multihead_attention, 0, n_cases);
    tcase_add_test(tc, malformed_patterns_get_400_naming_the_field);
    suite_add_tcase(s, tc);
    int rc = it_run_suite(s);
    cJSON_Delete(golden);
    return rc;
}
