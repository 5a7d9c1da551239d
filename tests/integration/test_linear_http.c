/* test_linear_http.c - linear attention (elu + 1) golden case through HTTP, as JSON and base64. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

#define CASES_PATH ATTN_TEST_DATA "/tensor_cases.json"

static cJSON *golden;
static const cJSON *linear_case;

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static void case_load(void)
{
    size_t len = 0;
    char *text = it_read_file(CASES_PATH, &len);
    golden = text != NULL ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    const cJSON *cs = member(golden, "cases");
    for (const cJSON *c = cs != NULL ? cs->child : NULL; c != NULL; c = c->next) {
        const cJSON *k = member(c, "kind");
        if (cJSON_IsString(k) && strcmp(k->valuestring, "linear") == 0)
            linear_case = c;
    }
}

START_TEST(linear_golden_case_matches_through_http)
{
    ck_assert_msg(linear_case != NULL, "%s has no linear case", CASES_PATH);
    const cJSON *exp = member(linear_case, "expected");
    it_server *s = it_start_ok(NULL);
    for (int causal = 0; causal < 2; causal++) {
        for (int b64 = 0; b64 < 2; b64++) {
            cJSON *req = cJSON_CreateObject();
            static const char *const qkv[] = {"query", "key", "value"};
            for (int i = 0; i < 3; i++) {
                const cJSON *src = member(linear_case, qkv[i]);
                cJSON_AddItemToObject(req, qkv[i], b64 ? it_tensor_object_from_list(src)
                                                       : cJSON_Duplicate(src, 1));
            }
            cJSON *kernel = cJSON_AddObjectToObject(req, "kernel");
            cJSON_AddStringToObject(kernel, "type", "linear");
            cJSON_AddStringToObject(kernel, "feature_map", "elu");
            cJSON_AddBoolToObject(req, "causal", causal);
            it_resp r;
            it_post_json_ok(s, "/v1/attention", req, &r);
            ck_assert_msg(r.status == 200, "causal %d: %s", causal, it_resp_describe(&r));
            cJSON *a = it_resp_json_ok(&r);
            char why[512];
            ck_assert_msg(it_json_match(member(a, "output"),
                                        member(exp, causal ? "output_causal" : "output"), 1e-4, 0,
                                        why, sizeof why),
                          "causal %d output: %s", causal, why);
            ck_assert_msg(it_json_match(member(a, "weights"),
                                        member(exp, causal ? "weights_causal" : "weights"), 1e-4,
                                        0, why, sizeof why),
                          "causal %d weights: %s", causal, why);
            cJSON_Delete(a);
            it_resp_free(&r);
            cJSON_Delete(req);
        }
    }
    it_stop_ok(s);
}
END_TEST

int main(void)
{
    case_load();
    Suite *s = suite_create("linear_http");
    TCase *tc = tcase_create("linear");
    tcase_add_test(tc, linear_golden_case_matches_through_http);
    suite_add_tcase(s, tc);
    int rc = it_run_suite(s);
    cJSON_Delete(golden);
    return rc;
}
