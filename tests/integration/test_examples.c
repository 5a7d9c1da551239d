/* test_examples.c - replays api/examples on the real server; checks them against openapi.yaml. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <check.h>

#include "util_harness.h"

#define MAX_EXAMPLES 256
#define ATOL 1e-4
#define RTOL 1e-4

/* The examples folder: api/examples, or ATTN_EXAMPLES_DIR (to try the
 * replayer on examples kept elsewhere). */
static const char *examples_dir(void)
{
    const char *d = getenv("ATTN_EXAMPLES_DIR");
    return d != NULL && d[0] != '\0' ? d : ATTN_API_DIR "/examples";
}

static char *example_files[MAX_EXAMPLES];
static int n_examples;

static int json_file_filter(const struct dirent *e)
{
    size_t n = strlen(e->d_name);
    return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".json") == 0;
}

static void examples_list(void)
{
    struct dirent **list = NULL;
    int n = scandir(examples_dir(), &list, json_file_filter, alphasort);
    for (int i = 0; i < n; i++) {
        if (n_examples < MAX_EXAMPLES) {
            size_t len = strlen(examples_dir()) + strlen(list[i]->d_name) + 2;
            char *p = malloc(len);
            if (p != NULL) {
                snprintf(p, len, "%s/%s", examples_dir(), list[i]->d_name);
                example_files[n_examples++] = p;
            }
        }
        free(list[i]);
    }
    free(list);
}

static void examples_free(void)
{
    for (int i = 0; i < n_examples; i++)
        free(example_files[i]);
    n_examples = 0;
}

/* ------------------------------------------------------------ openapi */

static size_t indent_of(const char *line)
{
    size_t n = 0;
    while (line[n] == ' ')
        n++;
    return n;
}

/* The line's text without indentation and trailing spaces / CR / comment. */
static void line_key(const char *line, size_t len, char *out, size_t out_len)
{
    size_t i = indent_of(line), n = 0;
    while (i < len && n + 1 < out_len && line[i] != '\r' && line[i] != '#')
        out[n++] = line[i++];
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

/* A paths: key with {parameters} ("/v1/models/{name}:", maybe quoted) that path fits,
 * each {parameter} standing for one non-empty segment (/v1/models/demo-gpt2). */
static bool path_template_fits(const char *key, const char *path)
{
    size_t n = strlen(key);
    if (n < 2 || key[n - 1] != ':' || strchr(key, '{') == NULL)
        return false;
    n--;
    if ((key[0] == '\'' || key[0] == '"') && n >= 2 && key[n - 1] == key[0]) {
        key++;
        n -= 2;
    }
    const char *k = key, *const k_end = key + n, *p = path;
    while (k < k_end) {
        if (*k == '{') {
            const char *close = memchr(k, '}', (size_t)(k_end - k));
            const size_t seg = strcspn(p, "/");
            if (close == NULL || seg == 0)
                return false;
            p += seg;
            k = close + 1;
        } else if (*k++ != *p++) {
            return false;
        }
    }
    return *p == '\0';
}

/*
 * True when api/openapi.yaml has, under the top-level paths:, the path as a
 * key and the method (lower case) as one of its direct children. A text
 * search (no YAML parser): simple, and enough to catch drift.
 */
static bool openapi_has(const char *yaml, const char *path, const char *method)
{
    char want_path[3][512], want_method[32];
    snprintf(want_path[0], sizeof want_path[0], "%s:", path);
    snprintf(want_path[1], sizeof want_path[1], "'%s':", path);
    snprintf(want_path[2], sizeof want_path[2], "\"%s\":", path);
    size_t ml = strlen(method);
    if (ml + 2 > sizeof want_method)
        return false;
    for (size_t i = 0; i < ml; i++)
        want_method[i] = (char)tolower((unsigned char)method[i]);
    want_method[ml] = ':';
    want_method[ml + 1] = '\0';

    enum { BEFORE_PATHS, IN_PATHS, IN_PATH } state = BEFORE_PATHS;
    size_t path_indent = 0, child_indent = 0;
    const char *line = yaml;
    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        char key[512];
        line_key(line, len, key, sizeof key);
        size_t ind = indent_of(line);
        bool blank = key[0] == '\0';
        if (!blank) {
            if (state == BEFORE_PATHS) {
                if (ind == 0 && strcmp(key, "paths:") == 0)
                    state = IN_PATHS;
            } else if (ind == 0) {
                return false; /* the paths: section ended */
            } else if (state == IN_PATH && ind <= path_indent) {
                state = IN_PATHS; /* the next path */
            }
            if (state == IN_PATH) {
                if (child_indent == 0)
                    child_indent = ind;
                /* "post:" with its members below, or "post: {...}" inline */
                size_t wl = strlen(want_method);
                if (ind == child_indent && strncmp(key, want_method, wl) == 0 &&
                    (key[wl] == '\0' || key[wl] == ' '))
                    return true;
            } else if (state == IN_PATHS && ind > 0 &&
                       (strcmp(key, want_path[0]) == 0 || strcmp(key, want_path[1]) == 0 ||
                        strcmp(key, want_path[2]) == 0 || path_template_fits(key, path))) {
                state = IN_PATH;
                path_indent = ind;
                child_indent = 0;
            }
        }
        if (end == NULL)
            break;
        line = end + 1;
    }
    return false;
}

/* ------------------------------------------------------------ replay */

static const cJSON *need(const cJSON *obj, const char *key, const char *file)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    ck_assert_msg(j != NULL, "%s: \"%s\" missing", file, key);
    return j;
}

static bool media_type_equal(const char *got, const char *want)
{
    /* Compare up to the parameters unless the example spells them out. */
    if (strchr(want, ';') != NULL)
        return strcasecmp(got, want) == 0;
    size_t n = strcspn(got, ";");
    while (n > 0 && got[n - 1] == ' ')
        n--;
    return strlen(want) == n && strncasecmp(got, want, n) == 0;
}

static void expect_headers(const it_resp *r, const cJSON *headers, const char *file)
{
    for (const cJSON *h = headers != NULL ? headers->child : NULL; h != NULL; h = h->next) {
        char got[512];
        ck_assert_msg(cJSON_IsString(h), "%s: response header %s must be a string", file,
                      h->string);
        bool present = it_resp_header(r, h->string, got, sizeof got);
        ck_assert_msg(present, "%s: response header %s missing", file, h->string);
        if (strcasecmp(h->string, "X-Inference-Time") == 0 ||
            strcasecmp(h->string, "X-Total-Time") == 0) {
            ck_assert_msg(it_is_ms_value(got), "%s: %s must be a number of ms, got \"%s\"", file,
                          h->string, got);
        } else if (strcasecmp(h->string, "Content-Type") == 0) {
            ck_assert_msg(media_type_equal(got, h->valuestring),
                          "%s: Content-Type \"%s\", expected \"%s\"", file, got, h->valuestring);
        } else {
            ck_assert_msg(strcmp(got, h->valuestring) == 0,
                          "%s: header %s is \"%s\", expected \"%s\"", file, h->string, got,
                          h->valuestring);
        }
    }
}

START_TEST(example_replays_with_the_documented_answer)
{
    const char *file = example_files[_i];
    cJSON *ex = it_json_file_ok(file);
    const cJSON *name = need(ex, "name", file);
    ck_assert_msg(cJSON_IsString(name) && name->valuestring[0] != '\0', "%s: name", file);
    ck_assert_msg(cJSON_IsString(need(ex, "description", file)), "%s: description", file);
    const cJSON *req = need(ex, "request", file), *want = need(ex, "response", file);
    const cJSON *method = need(req, "method", file), *path = need(req, "path", file);
    ck_assert_msg(cJSON_IsString(method) && cJSON_IsString(path), "%s: method and path", file);
    const cJSON *status = need(want, "status", file);
    const cJSON *want_body = need(want, "body", file);
    ck_assert_msg(cJSON_IsNumber(status), "%s: response.status", file);

    /* The example's route is documented (an example of the 404 answer shows
     * a path that by design is not). */
    bool route_expected = (long)status->valuedouble != 404;
    char *yaml = it_read_file(ATTN_API_DIR "/openapi.yaml", NULL);
    ck_assert_msg(yaml != NULL, "cannot read api/openapi.yaml");
    char route[512];
    snprintf(route, sizeof route, "%s", path->valuestring);
    route[strcspn(route, "?")] = '\0';
    bool documented = !route_expected || openapi_has(yaml, route, method->valuestring);
    free(yaml);
    ck_assert_msg(documented, "%s: %s %s is not under paths: in api/openapi.yaml", file,
                  method->valuestring, route);

    /* Request headers: Content-Type apart, the rest as given. */
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(req, "headers");
    const char *extra[32];
    char lines[32][512];
    size_t n_extra = 0;
    const char *content_type = NULL;
    for (const cJSON *h = headers != NULL ? headers->child : NULL; h != NULL; h = h->next) {
        ck_assert_msg(cJSON_IsString(h), "%s: request header %s must be a string", file, h->string);
        if (strcasecmp(h->string, "Content-Type") == 0) {
            content_type = h->valuestring;
        } else if (n_extra < 31) {
            snprintf(lines[n_extra], sizeof lines[n_extra], "%s: %s", h->string, h->valuestring);
            extra[n_extra] = lines[n_extra];
            n_extra++;
        }
    }
    extra[n_extra] = NULL;
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(req, "body");
    char *text = body != NULL ? it_json_print_ok(body) : NULL;

    /* "models": ["demo-gpt2", ...] serves those folders of tests/data/models under their
     * names, and the replay waits until /readyz says they are loaded */
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(ex, "models");
    const char *args[2 * 8 + 1];
    char specs[8][512];
    size_t n_args = 0, n_models = 0;
    for (const cJSON *m = models != NULL ? models->child : NULL; m != NULL && n_models < 8;
         m = m->next, n_models++) {
        ck_assert_msg(cJSON_IsString(m), "%s: models lists folder names", file);
        snprintf(specs[n_models], sizeof specs[n_models], "%s=%s/models/%s", m->valuestring,
                 ATTN_TEST_DATA, m->valuestring);
        args[n_args++] = "--model";
        args[n_args++] = specs[n_models];
    }
    args[n_args] = NULL;
    it_server *s = it_server_start(args, NULL);
    ck_assert_msg(s != NULL, "%s: attention-server did not start", file);
    for (double deadline = it_now_s() + it_wait_s(); n_models > 0;) {
        it_resp ready;
        it_get_ok(s, "/readyz", &ready);
        const long st = ready.status;
        it_resp_free(&ready);
        if (st == 200)
            break;
        ck_assert_msg(it_now_s() < deadline, "%s: the models did not load", file);
        it_sleep_ms(10);
    }
    it_req rq = {.method = method->valuestring,
                 .path = path->valuestring,
                 .content_type = content_type,
                 .body = text,
                 .body_len = text != NULL ? strlen(text) : 0,
                 .headers = extra};
    it_resp r;
    it_http(s, &rq, &r);
    ck_assert_msg(r.status == (long)status->valuedouble, "%s (%s): status %ld, expected %d: %s",
                  file, name->valuestring, r.status, (int)status->valuedouble,
                  it_resp_describe(&r));
    expect_headers(&r, cJSON_GetObjectItemCaseSensitive(want, "headers"), file);
    cJSON *got = cJSON_ParseWithLength(r.body, r.body_len);
    ck_assert_msg(got != NULL, "%s: the answer is not JSON: %s", file, it_resp_describe(&r));
    char why[1024];
    bool same = it_json_match(got, want_body, ATOL, RTOL, why, sizeof why);
    ck_assert_msg(same, "%s (%s): the answer differs from the documented one at %s", file,
                  name->valuestring, why);
    cJSON_Delete(got);
    it_resp_free(&r);
    if (text != NULL)
        cJSON_free(text);
    cJSON_Delete(ex);
    it_stop_ok(s);
}
END_TEST

START_TEST(examples_folder_has_examples)
{
    ck_assert_msg(n_examples > 0, "no examples in %s: every endpoint needs replayable examples",
                  examples_dir());
}
END_TEST

START_TEST(openapi_text_search_finds_routes)
{
    /* The route finder itself, on a small document: the examples test relies on it. */
    const char *yaml = "openapi: 3.1.0\n"
                       "info:\n  title: t\n"
                       "paths:\n"
                       "  /healthz:\n"
                       "    get:\n"
                       "      responses: {}\n"
                       "  /v1/attention:\n"
                       "    # compute\n"
                       "    post:\n"
                       "      requestBody:\n"
                       "        content:\n"
                       "          application/json: {}\n"
                       "  \"/v1/multihead_attention\":\n"
                       "    post: {}\n"
                       "components:\n"
                       "  /v1/other:\n"
                       "    post: {}\n";
    ck_assert(openapi_has(yaml, "/healthz", "GET"));
    ck_assert(openapi_has(yaml, "/v1/attention", "POST"));
    ck_assert(openapi_has(yaml, "/v1/multihead_attention", "POST"));
    ck_assert(!openapi_has(yaml, "/v1/attention", "GET"));
    ck_assert(!openapi_has(yaml, "/healthz", "POST"));
    ck_assert(!openapi_has(yaml, "/v1/other", "POST"));
    ck_assert(!openapi_has(yaml, "/v1/nothing", "POST"));
    ck_assert(!openapi_has(yaml, "/v1/multihead_attention", "GET"));
    ck_assert(!openapi_has(yaml, "/v1/models/demo/attention", "POST"));
}
END_TEST

int main(void)
{
    examples_list();
    Suite *s = suite_create("examples");
    TCase *tc = tcase_create("examples");
    tcase_add_test(tc, examples_folder_has_examples);
    tcase_add_test(tc, openapi_text_search_finds_routes);
    tcase_add_loop_test(tc, example_replays_with_the_documented_answer, 0, n_examples);
    suite_add_tcase(s, tc);
    int rc = it_run_suite(s);
    examples_free();
    return rc;
}
