/* test_h_models.c - the model registry, --model parsing and the model handlers, without sockets. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "models.h"
#include "srv.h"

#define MODELS ATTN_TEST_DATA "/models"

/* ------------------------------------------------------------ specs and flags */

START_TEST(specs_accept_name_dir_lists_and_refuse_the_rest)
{
    char list[128] = "", err[256];
    ck_assert(
        srv_model_specs_add(list, sizeof list, "--model", "demo=models/demo", err, sizeof err));
    ck_assert(srv_model_specs_add(list, sizeof list, "--model", " a.b_c-1=/x/y , z=rel", err,
                                  sizeof err));
    ck_assert_str_eq(list, "demo=models/demo\na.b_c-1=/x/y\nz=rel");
    static const struct {
        const char *value, *says;
    } bad[] = {
        {"nofolder", "NAME=DIR"}, {"=dir", "model name"},  {"a b=dir", "model name"},
        {"x=", "no folder"},      {"demo=other", "twice"}, {"ok=1,,", "NAME=DIR"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(
            !srv_model_specs_add(list, sizeof list, "--model", bad[i].value, err, sizeof err),
            "accepted '%s'", bad[i].value);
        ck_assert_msg(strstr(err, bad[i].says) && strstr(err, "--model"), "'%s': %s", bad[i].value,
                      err);
    }
    char small[16] = "";
    ck_assert(!srv_model_specs_add(small, sizeof small, "ATTN_MODELS", "name=a/very/long/dir", err,
                                   sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "ATTN_MODELS"));
}
END_TEST

static const char *env_models(const char *name)
{
    return strcmp(name, "ATTN_MODELS") == 0 ? "c=dir3,d=dir4" : NULL;
}

START_TEST(model_flags_replace_the_environment_then_add_up)
{
    srv_config c;
    char out[8192], err[256];
    srv_config_defaults(&c);
    char *env_only[] = {"attention-server", NULL};
    ck_assert_int_eq(
        srv_config_parse(&c, 1, env_only, env_models, out, sizeof out, err, sizeof err),
        SRV_CLI_RUN);
    ck_assert_str_eq(c.models, "c=dir3\nd=dir4");
    srv_config_defaults(&c);
    char *flags[] = {"attention-server", "--model", "a=dir1", "--model=b=dir2", NULL};
    ck_assert_int_eq(srv_config_parse(&c, 4, flags, env_models, out, sizeof out, err, sizeof err),
                     SRV_CLI_RUN);
    ck_assert_str_eq(c.models, "a=dir1\nb=dir2");
    srv_config_defaults(&c);
    char *twice[] = {"attention-server", "--model", "a=dir1", "--model", "a=dir2", NULL};
    ck_assert_int_eq(srv_config_parse(&c, 5, twice, env_models, out, sizeof out, err, sizeof err),
                     SRV_CLI_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "named twice"));
    srv_config_defaults(&c);
    char *help[] = {"attention-server", "--help", NULL};
    ck_assert_int_eq(srv_config_parse(&c, 2, help, env_models, out, sizeof out, err, sizeof err),
                     SRV_CLI_EXIT);
    ck_assert_ptr_nonnull(strstr(out, "--model NAME=DIR"));
    ck_assert_ptr_nonnull(strstr(out, "ATTN_MODELS"));
}
END_TEST

/* ------------------------------------------------------------ registry */

/* Polls until every model is loaded (1) or one failed (-1). */
static int wait_loaded(srv_models *ms, char *err, size_t len)
{
    const struct timespec tick = {0, 2 * 1000 * 1000};
    for (int i = 0; i < 10000; i++) {
        int st = srv_models_poll(ms, err, len);
        if (st != 0)
            return st;
        nanosleep(&tick, NULL);
    }
    return 0;
}

START_TEST(registry_loads_in_the_background_and_finds_by_name)
{
    srv_models *ms = srv_models_create("bert=" MODELS "/bert-tiny\ngpt=" MODELS "/gpt2-tiny");
    ck_assert_ptr_nonnull(ms);
    ck_assert_uint_eq(srv_models_count(ms), 2);
    ck_assert_str_eq(srv_models_name(ms, 1), "gpt");
    ck_assert_ptr_null(srv_models_name(ms, 2));
    char err[1024], names[128];
    bool loading = false;
    ck_assert_ptr_null(srv_models_get(ms, "bert", &loading));
    ck_assert(loading); /* named, not loaded yet */
    ck_assert(srv_models_start(ms, err, sizeof err));
    ck_assert_int_eq(wait_loaded(ms, err, sizeof err), 1);
    const attn_pretrained *m = srv_models_get(ms, "gpt", &loading);
    ck_assert_ptr_nonnull(m);
    ck_assert(!loading);
    ck_assert_int_eq(attn_pretrained_get_info(m)->arch, ATTN_ARCH_GPT2);
    ck_assert_ptr_null(srv_models_get(ms, "nope", &loading));
    ck_assert(!loading);
    srv_models_loading(ms, names, sizeof names);
    ck_assert_str_eq(names, "");
    srv_models_names(ms, names, sizeof names);
    ck_assert_str_eq(names, "bert, gpt");
    cJSON *root = cJSON_CreateObject();
    ck_assert(srv_models_info_add(ms, root));
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "models"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(first, "architecture")->valuestring, "bert");
    ck_assert_str_eq(cJSON_GetObjectItem(first, "status")->valuestring, "ready");
    cJSON_Delete(root);
    srv_models_free(ms);

    /* no models: everything answers as for an empty list */
    ms = srv_models_create("");
    ck_assert_uint_eq(srv_models_count(ms), 0);
    ck_assert(srv_models_start(ms, err, sizeof err));
    ck_assert_int_eq(srv_models_poll(ms, err, sizeof err), 1);
    srv_models_free(ms);
    ck_assert_int_eq(srv_models_poll(NULL, err, sizeof err), 1);
    srv_models_names(NULL, names, sizeof names);
    ck_assert_ptr_nonnull(strstr(names, "--model"));
    srv_models_free(NULL);
}
END_TEST

START_TEST(registry_reports_the_model_that_failed)
{
    srv_models *ms = srv_models_create("ok=" MODELS "/vit-tiny\nbroken=/nonexistent/dir");
    char err[1024];
    ck_assert(srv_models_start(ms, err, sizeof err));
    ck_assert_int_eq(wait_loaded(ms, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "model 'broken' (/nonexistent/dir)") &&
                      strstr(err, "/nonexistent/dir/config.json"),
                  "%s", err);
    srv_models_free(ms);
}
END_TEST

/* ------------------------------------------------------------ handlers */

static srv_app app;

static void app_setup(void)
{
    memset(&app, 0, sizeof app);
    srv_config_defaults(&app.config);
    app.models = srv_models_create("bert=" MODELS "/bert-tiny\nbart=" MODELS "/bart-tiny");
    char err[1024];
    ck_assert(srv_models_start(app.models, err, sizeof err));
    ck_assert_int_eq(wait_loaded(app.models, err, sizeof err), 1);
    app.ready = 1;
}

static void app_teardown(void)
{
    srv_models_free(app.models);
    app.models = NULL;
}

/* Runs handler with {name} = model on body (NULL: a GET); parsed answer and status. */
static cJSON *call(srv_handler h, const char *model, const char *body, int *status)
{
    srv_request req;
    srv_response res;
    memset(&req, 0, sizeof req);
    req.method = body ? "POST" : "GET";
    req.path = "/";
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    if (model) {
        snprintf(req.params[0], sizeof req.params[0], "%s", model);
        req.n_params = 1;
    }
    srv_response_init(&res);
    h(&app, &req, &res);
    *status = res.status;
    ck_assert_ptr_nonnull(res.body);
    cJSON *j = cJSON_ParseWithLength(res.body, res.body_len);
    ck_assert_msg(j != NULL, "not JSON: %.*s", (int)res.body_len, res.body);
    srv_response_clear(&res);
    return j;
}

START_TEST(handlers_list_describe_and_run)
{
    int st;
    cJSON *j = call(srv_h_models_list, NULL, NULL, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "models")), 2);
    cJSON_Delete(j);

    j = call(srv_h_model_get, "bart", NULL, &st);
    ck_assert_int_eq(st, 200);
    ck_assert_int_eq(cJSON_GetObjectItem(j, "decoder_heads")->valueint, 4);
    cJSON_Delete(j);

    j = call(srv_h_model_attention, "bert",
             "{\"text\": \"the cat\", \"layers\": [1], \"heads\": [0, 3], \"return\": "
             "[\"attentions\", \"q\", \"hidden_states\", \"pooler_output\"]}",
             &st);
    ck_assert_int_eq(st, 200);
    const cJSON *shapes = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "meta"), "shapes");
    char *text = cJSON_PrintUnformatted(shapes);
    ck_assert_str_eq(text, "{\"attentions\":[1,2,4,4],\"hidden_states\":[3,4,32],\"q\":[1,2,4,8],"
                           "\"pooler_output\":[32]}");
    free(text);
    cJSON_Delete(j);

    /* BART from ids alone: the decoder input is the input shifted right */
    j = call(srv_h_model_attention, "bart", "{\"input_ids\": [0, 10, 11, 2]}", &st);
    ck_assert_int_eq(st, 200);
    text = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "decoder_input_ids"));
    ck_assert_str_eq(text, "[2,0,10,11]");
    free(text);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(j, "cross_attentions"));
    cJSON_Delete(j);

    /* KServe v2 */
    j = call(srv_h_v2_infer, "bert",
             "{\"inputs\": [{\"name\": \"input_ids\", \"datatype\": \"INT32\", \"shape\": [3], "
             "\"data\": [[2, 5], [3]]}], \"outputs\": [{\"name\": \"last_hidden_state\"}]}",
             &st);
    ck_assert_int_eq(st, 200);
    const cJSON *out = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "outputs"), 0);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(out, "data")), 3 * 32);
    cJSON_Delete(j);
    j = call(srv_h_v2_model_ready, "bart", NULL, &st);
    ck_assert_int_eq(st, 200);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "ready")));
    cJSON_Delete(j);
    j = call(srv_h_v2_ready, NULL, NULL, &st);
    ck_assert_int_eq(st, 200);
    cJSON_Delete(j);
    app.ready = 0;
    j = call(srv_h_v2_ready, NULL, NULL, &st);
    ck_assert_int_eq(st, 503);
    cJSON_Delete(j);
}
END_TEST

START_TEST(handlers_refuse_unknown_models_in_each_protocol)
{
    int st;
    cJSON *j = call(srv_h_model_attention, "gpt3", "{\"text\": \"x\"}", &st);
    ck_assert_int_eq(st, 404);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    ck_assert_str_eq(cJSON_GetObjectItem(e, "code")->valuestring, "not_found");
    ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(e, "message")->valuestring, "bert, bart"));
    cJSON_Delete(j);
    j = call(srv_h_v2_model, "gpt3", NULL, &st);
    ck_assert_int_eq(st, 404);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(j, "error"))); /* v2: a string */
    cJSON_Delete(j);
    j = call(srv_h_model_attention, "bert", "{\"text\": \"x\",", &st);
    ck_assert_int_eq(st, 400);
    cJSON_Delete(j);
}
END_TEST

static Suite *h_models_suite(void)
{
    Suite *s = suite_create("h_models");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, specs_accept_name_dir_lists_and_refuse_the_rest);
    tcase_add_test(tc, model_flags_replace_the_environment_then_add_up);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("registry");
    tcase_add_test(tr, registry_loads_in_the_background_and_finds_by_name);
    tcase_add_test(tr, registry_reports_the_model_that_failed);
    suite_add_tcase(s, tr);
    TCase *th = tcase_create("handlers");
    tcase_add_checked_fixture(th, app_setup, app_teardown);
    tcase_add_test(th, handlers_list_describe_and_run);
    tcase_add_test(th, handlers_refuse_unknown_models_in_each_protocol);
    suite_add_tcase(s, th);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(h_models_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
