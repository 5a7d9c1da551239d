/* test_pictures.c - format negotiation and answers drawn as text, SVG and HTML, through srv_dispatch. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "pictures.h"
#include "srv.h"

static srv_app app;

static void setup(void)
{
    memset(&app, 0, sizeof app);
    srv_config_defaults(&app.config);
    app.ready = 1;
}

typedef struct call {
    srv_response res;
    char text[1 << 16]; /* NUL-terminated copy of the body (cut) */
} call;

/* POST path?query with body and an optional Accept header, through the router. */
static void post(call *c, const char *path, const char *format, const char *accept,
                 const char *body)
{
    srv_request req;
    srv_kv headers[2] = {{"Content-Type", "application/json"}, {"Accept", accept}};
    srv_kv query[1] = {{"format", format}};
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = path;
    req.headers = headers;
    req.n_headers = accept ? 2 : 1;
    req.query = query;
    req.n_query = format ? 1 : 0;
    req.body = body;
    req.body_len = strlen(body);
    srv_response_init(&c->res);
    srv_dispatch(&app, &req, &c->res);
    size_t n = c->res.body_len < sizeof c->text - 1 ? c->res.body_len : sizeof c->text - 1;
    memcpy(c->text, c->res.body ? c->res.body : "", n);
    c->text[n] = '\0';
}

static void done(call *c)
{
    srv_response_clear(&c->res);
}

static const char *MHA = "{\"query\": [[1,0,0,1],[0,1,1,0],[1,1,0,0],[0,0,1,1]], \"num_heads\": 2, "
                         "\"seed\": 3, \"causal\": true, \"tokens\": [\"The\",\"cat\",\"sat\",\"down\"]}";

/* ------------------------------------------------------------- negotiation */

static srv_format negotiate(const char *format, const char *accept, bool *ok)
{
    srv_request req;
    srv_kv headers[1] = {{"Accept", accept}};
    srv_kv query[1] = {{"format", format}};
    memset(&req, 0, sizeof req);
    req.headers = headers;
    req.n_headers = accept ? 1 : 0;
    req.query = query;
    req.n_query = format ? 1 : 0;
    srv_format f;
    srv_err e;
    *ok = srv_format_negotiate(&req, SRV_FORMAT_JSON, &f, &e);
    return f;
}

START_TEST(accept_and_format_choose_the_picture)
{
    bool ok;
    ck_assert_int_eq(negotiate(NULL, NULL, &ok), SRV_FORMAT_JSON);
    ck_assert_int_eq(negotiate(NULL, "*/*", &ok), SRV_FORMAT_JSON);
    ck_assert_int_eq(negotiate(NULL, "text/plain", &ok), SRV_FORMAT_TEXT);
    ck_assert_int_eq(negotiate(NULL, "image/svg+xml", &ok), SRV_FORMAT_SVG);
    ck_assert_int_eq(negotiate(NULL, "TEXT/HTML", &ok), SRV_FORMAT_HTML);
    ck_assert_int_eq(negotiate(NULL, "application/json, text/plain", &ok), SRV_FORMAT_JSON);
    ck_assert_int_eq(negotiate(NULL, "application/json;q=0.5, text/plain", &ok), SRV_FORMAT_TEXT);
    ck_assert_int_eq(negotiate(NULL, "text/plain;q=0, image/svg+xml;q=0.1", &ok), SRV_FORMAT_SVG);
    ck_assert_int_eq(negotiate(NULL, "image/png", &ok), SRV_FORMAT_JSON);
    ck_assert_int_eq(negotiate("svg", "text/plain", &ok), SRV_FORMAT_SVG);
    ck_assert(ok);
    negotiate("png", NULL, &ok);
    ck_assert(!ok);
}
END_TEST

/* ------------------------------------------------------------- answers */

START_TEST(text_answer_has_one_labelled_matrix_per_head)
{
    static call c;
    post(&c, "/v1/multihead_attention", NULL, "text/plain", MHA);
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(c.res.content_type, "text/plain; charset=utf-8");
    ck_assert_msg(strstr(c.text, "weights: head 0 [4 x 4]\n       The   cat   sat  down\n"
                                 "The   1.00  0.00  0.00  0.00\n") != NULL,
                  "%s", c.text);
    ck_assert_msg(strstr(c.text, "weights: head 1 [4 x 4]") != NULL, "%s", c.text);
    ck_assert_msg(c.res.inference_ms > 0, "the compute time header is kept");
    done(&c);
}
END_TEST

/* Status of a command run on text written to a temporary file. */
static int check_file(const char *text, const char *cmd_fmt)
{
    char path[] = "/tmp/attn-pictures-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char cmd[512], png[64];
    snprintf(cmd, sizeof cmd, cmd_fmt, path, path);
    int st = system(cmd);
    snprintf(png, sizeof png, "%s.png", path);
    unlink(png);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(svg_answer_is_valid_and_view_selects_the_stack)
{
    static call c;
    const char *dec = "{\"target\": [[1,0,1,0],[0,2,0,1],[1,1,-1,0]], \"memory\": [[0.5,-1,0,1],"
                      "[1,1,0.5,0]], \"nhead\": 2, \"num_layers\": 2, \"causal\": true, \"seed\": 7, "
                      "\"dim_feedforward\": 8, \"tokens\": [\"a\",\"b\",\"c\"]}";
    post(&c, "/v1/transformer/decoder", NULL, "image/svg+xml", dec);
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(c.res.content_type, "image/svg+xml");
    ck_assert_msg(strstr(c.text, "self_attentions [3 x 3]") != NULL, "first stack by default");
    ck_assert_msg(strstr(c.text, "layer 1, head 1") != NULL, "every layer and head");
    ck_assert_int_eq(check_file(c.text, "xmllint --noout %s"), 0);
    ck_assert_int_eq(check_file(c.text, "rsvg-convert -o %s.png %s"), 0);
    done(&c);

    srv_kv q[2] = {{"format", "svg"}, {"view", "cross_attentions"}};
    srv_request req;
    memset(&req, 0, sizeof req);
    srv_kv h[1] = {{"Content-Type", "application/json"}};
    req.method = "POST";
    req.path = "/v1/transformer/decoder";
    req.headers = h;
    req.n_headers = 1;
    req.query = q;
    req.n_query = 2;
    req.body = dec;
    req.body_len = strlen(dec);
    srv_response_init(&c.res);
    srv_dispatch(&app, &req, &c.res);
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_msg(strstr(c.res.body, "cross_attentions [3 x 2]") != NULL, "view picks the stack");
    done(&c);
    q[1].value = "attentions";
    srv_response_init(&c.res);
    srv_dispatch(&app, &req, &c.res);
    ck_assert_int_eq(c.res.status, 400);
    ck_assert_msg(strstr(c.res.body, "it has: self_attentions, cross_attentions") != NULL, "%s",
                  c.res.body);
    done(&c);
}
END_TEST

START_TEST(html_answer_is_one_self_contained_page)
{
    static call c;
    post(&c, "/v1/attention", "html", NULL,
         "{\"query\": [[1,0],[0,1]], \"key\": [[1,0],[0,1],[1,1]], \"value\": [[1],[2],[3]], "
         "\"causal\": true, \"return\": [\"weights\", \"scores\", \"pattern\"], "
         "\"tokens\": [\"<q1>\", \"q2\"]}");
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(c.res.content_type, "text/html; charset=utf-8");
    ck_assert_msg(strncmp(c.text, "<!DOCTYPE html>", 15) == 0, "%s", c.text);
    ck_assert_int_eq(c.text[strlen(c.text) - 8], '<'); /* ends with </html>\n */
    ck_assert_msg(strstr(c.text, "<h2 id=\"weights\">") && strstr(c.text, "<h2 id=\"scores\">") &&
                      strstr(c.text, "<h2 id=\"pattern\">"),
                  "a section per stack");
    ck_assert_msg(strstr(c.text, "http://") == NULL || strstr(c.text, "http://www.w3.org/2000/svg"),
                  "no external reference");
    ck_assert_msg(strstr(c.text, "<script src") == NULL && strstr(c.text, "<link") == NULL,
                  "no external assets");
    ck_assert_msg(strstr(c.text, "&lt;q1&gt;") != NULL && strstr(c.text, "<q1>") == NULL,
                  "labels escaped");
    ck_assert_msg(strstr(c.text, "-inf") != NULL, "removed pairs shown in the scores text");
    done(&c);
}
END_TEST

START_TEST(base64_and_sparsified_answers_are_drawn_too)
{
    static call c;
    post(&c, "/v1/attention", "text", NULL,
         "{\"query\": [[1,0],[0,1]], \"key\": [[1,0],[0,1],[1,1]], \"value\": [[1],[2],[3]], "
         "\"encoding\": \"base64\", \"sparsify\": {\"topk\": 1}}");
    ck_assert_int_eq(c.res.status, 200);
    /* top-1 of each row kept: q1 -> key 0 and key 2 tie (key 0 kept), q2 -> key 1 */
    ck_assert_msg(strstr(c.text, "0  0.40  0.00  0.00\n") != NULL, "%s", c.text);
    done(&c);
    post(&c, "/v1/attention", "text", NULL,
         "{\"query\": [[[1,0],[0,1]],[[0,1],[1,0]]], \"key\": [[[1,0],[0,1]],[[1,0],[0,1]]], "
         "\"value\": [[[1],[2]],[[1],[2]]], \"encoding\": \"base64\"}");
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_msg(strstr(c.text, "weights: batch 1, head 0 [2 x 2]") != NULL, "%s", c.text);
    done(&c);
}
END_TEST

START_TEST(pictures_refuse_what_they_cannot_draw)
{
    static call c;
    post(&c, "/v1/attention", "text", NULL,
         "{\"query\": [[1,0]], \"key\": [[1,0]], \"value\": [[1]], \"return\": [\"output\"]}");
    ck_assert_int_eq(c.res.status, 400);
    ck_assert_msg(strstr(c.text, "no attention to draw") != NULL, "%s", c.text);
    done(&c);
    post(&c, "/v1/attention", "png", NULL, "{\"query\": [[1,0]], \"key\": [[1,0]], \"value\": [[1]]}");
    ck_assert_int_eq(c.res.status, 400);
    ck_assert_msg(strstr(c.text, "format: unknown") != NULL, "%s", c.text);
    done(&c);
    /* errors stay JSON whatever was asked */
    post(&c, "/v1/attention", "svg", NULL, "{\"query\": [[1,0]]}");
    ck_assert_int_eq(c.res.status, 400);
    ck_assert_str_eq(c.res.content_type, "application/json");
    done(&c);
    /* 600 x 600 weights: too many cells for an SVG, fine as elided text */
    cJSON *req = cJSON_CreateObject();
    cJSON *q = cJSON_AddArrayToObject(req, "query");
    for (int i = 0; i < 600; i++) {
        cJSON *row = cJSON_CreateArray();
        cJSON_AddItemToArray(row, cJSON_CreateNumber(i % 7));
        cJSON_AddItemToArray(q, row);
    }
    cJSON_AddItemToObject(req, "key", cJSON_Duplicate(q, true));
    cJSON_AddItemToObject(req, "value", cJSON_Duplicate(q, true));
    char *body = cJSON_PrintUnformatted(req);
    post(&c, "/v1/attention", "svg", NULL, body);
    ck_assert_int_eq(c.res.status, 413);
    done(&c);
    post(&c, "/v1/attention", "text", NULL, body);
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_msg(strstr(c.text, "shown of 600 x 600") != NULL, "%.300s", c.text);
    done(&c);
    free(body);
    cJSON_Delete(req);
}
END_TEST

START_TEST(render_route_draws_given_weights)
{
    static call c;
    post(&c, "/v1/render", NULL, NULL,
         "{\"weights\": [[[[0.5, 0.5], [0.1, 0.9]], [[1, 0], [null, 1]]]], "
         "\"tokens\": [\"a\", \"b\"], \"title\": \"layer view\"}");
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_str_eq(c.res.content_type, "image/svg+xml");
    ck_assert_msg(strstr(c.text, "layer view [2 x 2]") && strstr(c.text, "layer 0, head 1"),
                  "%.400s", c.text);
    ck_assert_int_eq(check_file(c.text, "xmllint --noout %s"), 0);
    done(&c);
    post(&c, "/v1/render", NULL, "text/plain",
         "{\"weights\": [[0.5, 0.5], [0.1, 0.9]], \"tokens\": [\"a\", \"b\"]}");
    ck_assert_int_eq(c.res.status, 200);
    ck_assert_msg(strstr(c.text, "      a     b\na  0.50  0.50\nb  0.10  0.90\n") != NULL, "%s",
                  c.text);
    done(&c);
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{}", "/weights"},
        {"{\"weights\": [1, 2]}", "/weights"},
        {"{\"weights\": [[1, 2], [3]]}", "/weights"},
        {"{\"weights\": [[1, 2]], \"tokens\": [\"a\", \"b\"]}", "/tokens"},
        {"{\"weights\": [[1, 2]], \"key_tokens\": [1, 2]}", "/key_tokens"},
        {"{\"weights\": [[1, 2]], \"colour\": \"red\"}", "/colour"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        post(&c, "/v1/render", NULL, NULL, bad[i].body);
        ck_assert_int_eq(c.res.status, 400);
        cJSON *j = cJSON_Parse(c.text);
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "field")->valuestring,
                         bad[i].field);
        cJSON_Delete(j);
        done(&c);
    }
}
END_TEST

static Suite *pictures_suite(void)
{
    Suite *s = suite_create("pictures");
    TCase *t = tcase_create("pictures");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, accept_and_format_choose_the_picture);
    tcase_add_test(t, text_answer_has_one_labelled_matrix_per_head);
    tcase_add_test(t, svg_answer_is_valid_and_view_selects_the_stack);
    tcase_add_test(t, html_answer_is_one_self_contained_page);
    tcase_add_test(t, base64_and_sparsified_answers_are_drawn_too);
    tcase_add_test(t, pictures_refuse_what_they_cannot_draw);
    tcase_add_test(t, render_route_draws_given_weights);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pictures_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
