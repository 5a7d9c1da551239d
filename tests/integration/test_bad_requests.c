/* test_bad_requests.c - replays tests/data/bad_requests*.json: status, code, field of each. */
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "util_harness.h"

/* Every table: bad_requests.json (the core) and bad_requests_<area>.json. */
#define TABLE_GLOB ATTN_TEST_DATA "/bad_requests*.json"

/* The second server's flags, for rows with "server": "small_limit". */
#define SMALL_LIMIT_ARGS "--max-body-bytes", "65536", "--max-elements", "1000"

/* ------------------------------------------------------------- bodies */

static char *gen_huge_matrix(const cJSON *g)
{
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(g, "rows");
    const cJSON *cols = cJSON_GetObjectItemCaseSensitive(g, "cols");
    ck_assert_msg(cJSON_IsNumber(rows) && cJSON_IsNumber(cols), "huge_matrix needs rows, cols");
    size_t r = (size_t)rows->valuedouble, c = (size_t)cols->valuedouble;
    /* {"query": r x c, "key": 2 x c, "value": 2 x 1} written directly: fast for big r. */
    size_t cap = 64 + r * (c * 6 + 4) + c * 20;
    char *out = malloc(cap);
    ck_assert(out != NULL);
    size_t n = (size_t)snprintf(out, cap, "{\"query\": [");
    for (size_t i = 0; i < r; i++) {
        out[n++] = i ? ',' : '[';
        if (i)
            out[n++] = '[';
        for (size_t j = 0; j < c; j++)
            n += (size_t)snprintf(out + n, cap - n, "%s0.25", j ? "," : "");
        out[n++] = ']';
    }
    n += (size_t)snprintf(out + n, cap - n, "], \"key\": [");
    for (size_t i = 0; i < 2; i++) {
        n += (size_t)snprintf(out + n, cap - n, "%s[", i ? "," : "");
        for (size_t j = 0; j < c; j++)
            n += (size_t)snprintf(out + n, cap - n, "%s0.5", j ? "," : "");
        out[n++] = ']';
    }
    n += (size_t)snprintf(out + n, cap - n, "], \"value\": [[1], [2]]");
    if (cJSON_GetObjectItemCaseSensitive(g, "num_heads") != NULL)
        n += (size_t)snprintf(out + n, cap - n, ", \"num_heads\": 1");
    n += (size_t)snprintf(out + n, cap - n, "}");
    ck_assert(n < cap);
    return out;
}

static char *gen_deep_nesting(const cJSON *g)
{
    const cJSON *depth = cJSON_GetObjectItemCaseSensitive(g, "depth");
    ck_assert_msg(cJSON_IsNumber(depth), "deep_nesting needs depth");
    size_t d = (size_t)depth->valuedouble;
    char *out = malloc(2 * d + 32);
    ck_assert(out != NULL);
    size_t n = (size_t)sprintf(out, "{\"query\": ");
    memset(out + n, '[', d);
    n += d;
    memset(out + n, ']', d);
    n += d;
    strcpy(out + n, "}");
    return out;
}

/* The body of a row (malloc'd, NUL-terminated), or NULL for none. */
static char *row_body(const cJSON *row)
{
    const cJSON *body = cJSON_GetObjectItemCaseSensitive(row, "body");
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(row, "raw");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(row, "generate");
    if (raw != NULL) {
        ck_assert_msg(cJSON_IsString(raw), "raw must be a string");
        return strdup(raw->valuestring);
    }
    if (body != NULL) {
        char *text = it_json_print_ok(body);
        char *copy = strdup(text);
        cJSON_free(text);
        return copy;
    }
    if (gen != NULL) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(gen, "kind");
        ck_assert_msg(cJSON_IsString(kind), "generate needs a kind");
        if (strcmp(kind->valuestring, "huge_matrix") == 0)
            return gen_huge_matrix(gen);
        if (strcmp(kind->valuestring, "deep_nesting") == 0)
            return gen_deep_nesting(gen);
        ck_abort_msg("unknown generate kind %s", kind->valuestring);
    }
    return NULL;
}

/* ------------------------------------------------------------- checks */

/* True when v (a number or a list of numbers / strings) admits got. */
static bool one_of_number(const cJSON *v, long got)
{
    if (cJSON_IsNumber(v))
        return (long)v->valuedouble == got;
    for (const cJSON *c = cJSON_IsArray(v) ? v->child : NULL; c != NULL; c = c->next)
        if (cJSON_IsNumber(c) && (long)c->valuedouble == got)
            return true;
    return false;
}

static bool one_of_string(const cJSON *v, const char *got)
{
    if (cJSON_IsString(v))
        return strcmp(v->valuestring, got) == 0;
    for (const cJSON *c = cJSON_IsArray(v) ? v->child : NULL; c != NULL; c = c->next)
        if (cJSON_IsString(c) && strcmp(c->valuestring, got) == 0)
            return true;
    return false;
}

/* Checks one answer against its row; on a mismatch writes why. */
static bool row_answer_ok(const cJSON *row, const it_resp *r, char *why, size_t why_len)
{
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(row, "status");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(row, "code");
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(row, "field");
    const cJSON *contains = cJSON_GetObjectItemCaseSensitive(row, "message_contains");
    const cJSON *max_ms = cJSON_GetObjectItemCaseSensitive(row, "max_ms");
    if (r->status == 0) {
        snprintf(why, why_len, "no response: %s", r->curl_error);
        return false;
    }
    if (!one_of_number(status, r->status)) {
        snprintf(why, why_len, "status %ld", r->status);
        return false;
    }
    if (strncmp(r->content_type, "application/json", 16) != 0) {
        snprintf(why, why_len, "Content-Type \"%s\"", r->content_type);
        return false;
    }
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(e, "field");
    bool ok = false;
    if (!cJSON_IsNumber(st) || (long)st->valuedouble != r->status || !cJSON_IsString(cd) ||
        !cJSON_IsString(msg) || !cJSON_IsString(fl))
        snprintf(why, why_len, "not the error envelope");
    else if (msg->valuestring[0] == '\0')
        snprintf(why, why_len, "empty message");
    else if (!one_of_string(code, cd->valuestring))
        snprintf(why, why_len, "code \"%s\"", cd->valuestring);
    else if (field != NULL && strcmp(fl->valuestring, field->valuestring) != 0)
        snprintf(why, why_len, "field \"%s\", expected \"%s\"", fl->valuestring,
                 field->valuestring);
    else
        ok = true;
    for (const cJSON *c = contains != NULL ? contains->child : NULL; ok && c != NULL; c = c->next)
        if (strstr(msg->valuestring, c->valuestring) == NULL) {
            snprintf(why, why_len, "message does not mention \"%s\"", c->valuestring);
            ok = false;
        }
    if (ok && cJSON_IsNumber(max_ms) && r->elapsed_s * 1000 > max_ms->valuedouble) {
        snprintf(why, why_len, "took %.0f ms, more than %.0f ms", r->elapsed_s * 1000,
                 max_ms->valuedouble);
        ok = false;
    }
    cJSON_Delete(j);
    return ok;
}

/* Sends every row meant for this server (small_limit or not); returns the
 * number of mismatches, each printed to stderr with its request and answer. */
static int run_rows(const it_server *s, const cJSON *rows, bool small_limit, int *n_run,
                    char *names, size_t names_len)
{
    int failed = 0;
    size_t nl = 0;
    names[0] = '\0';
    for (const cJSON *row = rows->child; row != NULL; row = row->next) {
        const cJSON *server = cJSON_GetObjectItemCaseSensitive(row, "server");
        bool row_small = cJSON_IsString(server) && strcmp(server->valuestring, "small_limit") == 0;
        if (row_small != small_limit)
            continue;
        const char *name = cJSON_GetObjectItemCaseSensitive(row, "name")->valuestring;
        const cJSON *method = cJSON_GetObjectItemCaseSensitive(row, "method");
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(row, "path");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(row, "content_type");
        char *body = row_body(row);
        it_req rq = {.method = method->valuestring,
                     .path = path->valuestring,
                     .body = body,
                     .body_len = body != NULL ? strlen(body) : 0,
                     .chunked = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "chunked"))};
        if (cJSON_IsString(ct))
            rq.content_type = ct->valuestring;
        else if (cJSON_IsNull(ct))
            rq.content_type = IT_NO_CONTENT_TYPE;
        it_resp r;
        it_http(s, &rq, &r);
        char why[512];
        (*n_run)++;
        if (!row_answer_ok(row, &r, why, sizeof why)) {
            failed++;
            char *expect = NULL;
            cJSON *e = cJSON_CreateObject();
            const char *keys[] = {"status", "code", "field"};
            for (int k = 0; k < 3; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, keys[k]);
                if (v != NULL)
                    cJSON_AddItemToObject(e, keys[k], cJSON_Duplicate(v, 1));
            }
            expect = cJSON_PrintUnformatted(e);
            cJSON_Delete(e);
            fprintf(stderr,
                    "bad_requests: row \"%s\" FAILED (%s)\n  request: %s %s%s%s body (%zu bytes) "
                    "%.300s%s\n  expected: %s\n  got: %s\n",
                    name, why, method->valuestring, path->valuestring, rq.chunked ? " chunked" : "",
                    cJSON_IsString(ct) ? " content-type " : "", body != NULL ? strlen(body) : 0,
                    body != NULL ? body : "(none)", body != NULL && strlen(body) > 300 ? "..." : "",
                    expect, it_resp_describe(&r));
            free(expect);
            nl += (size_t)snprintf(names + nl, nl < names_len ? names_len - nl : 0, "%s%s",
                                   failed > 1 ? ", " : "", name);
            if (nl >= names_len)
                nl = names_len;
        }
        it_resp_free(&r);
        free(body);
    }
    return failed;
}

/* After the table: still healthy and still right. */
static void expect_still_right(const it_server *s)
{
    it_resp r;
    it_get_ok(s, "/healthz", &r);
    ck_assert_msg(r.status == 200, "/healthz after the bad requests: %s", it_resp_describe(&r));
    it_resp_free(&r);
    /* q = [[1, 0]], k = [[1, 0], [0, 1]], scale 1: weights softmax([1, 0]). */
    it_post_ok(s, "/v1/attention",
               "{\"query\": [[1, 0]], \"key\": [[1, 0], [0, 1]], \"value\": [[10], [20]], "
               "\"scale\": 1}",
               &r);
    ck_assert_msg(r.status == 200, "a valid request after the bad requests: %s",
                  it_resp_describe(&r));
    cJSON *j = it_resp_json_ok(&r);
    it_tensor out, w;
    char why[256];
    ck_assert(it_tensor_read(cJSON_GetObjectItemCaseSensitive(j, "output"), &out, why, sizeof why));
    ck_assert(it_tensor_read(cJSON_GetObjectItemCaseSensitive(j, "weights"), &w, why, sizeof why));
    double w0 = exp(1.0) / (exp(1.0) + 1.0);
    ck_assert_msg(out.size == 1 && fabs(out.data[0] - (10 * w0 + 20 * (1 - w0))) < 1e-4,
                  "wrong output after the bad requests: %s", it_resp_describe(&r));
    ck_assert_msg(w.size == 2 && fabs(w.data[0] - w0) < 1e-6, "wrong weights: %s",
                  it_resp_describe(&r));
    it_tensor_free(&out);
    it_tensor_free(&w);
    cJSON_Delete(j);
    it_resp_free(&r);
}

/* The rows of every table, in one array (file order, then row order). */
static cJSON *load_rows(int *n_files)
{
    glob_t g;
    cJSON *all = cJSON_CreateArray();
    ck_assert(all != NULL);
    ck_assert_msg(glob(TABLE_GLOB, 0, NULL, &g) == 0 && g.gl_pathc > 0, "no %s", TABLE_GLOB);
    for (size_t f = 0; f < g.gl_pathc; f++) {
        cJSON *t = it_json_file_ok(g.gl_pathv[f]);
        cJSON *rows = cJSON_DetachItemFromObjectCaseSensitive(t, "requests");
        ck_assert_msg(cJSON_IsArray(rows), "%s: no \"requests\" list", g.gl_pathv[f]);
        while (rows->child)
            cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(rows, rows->child));
        cJSON_Delete(rows);
        cJSON_Delete(t);
    }
    *n_files = (int)g.gl_pathc;
    globfree(&g);
    return all;
}

/* ------------------------------------------------------------- tests */

START_TEST(table_has_at_least_45_well_formed_rows)
{
    int n_files = 0;
    cJSON *rows = load_rows(&n_files);
    ck_assert_msg(cJSON_IsArray(rows) && cJSON_GetArraySize(rows) >= 45,
                  "the bad_requests tables (%d files) must hold at least 45 requests", n_files);
    for (const cJSON *row = rows->child; row != NULL; row = row->next) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(row, "name");
        ck_assert_msg(cJSON_IsString(name), "every row needs a name");
        ck_assert_msg(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row, "method")) &&
                          cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row, "path")),
                      "%s: method and path", name->valuestring);
        ck_assert_msg(cJSON_GetObjectItemCaseSensitive(row, "status") != NULL &&
                          cJSON_GetObjectItemCaseSensitive(row, "code") != NULL,
                      "%s: status and code", name->valuestring);
        for (const cJSON *o = row->next; o != NULL; o = o->next)
            ck_assert_msg(strcmp(cJSON_GetObjectItemCaseSensitive(o, "name")->valuestring,
                                 name->valuestring) != 0,
                          "duplicate row name %s", name->valuestring);
    }
    cJSON_Delete(rows);
}
END_TEST

START_TEST(every_bad_request_gets_its_status_code_and_field_server_survives)
{
    int n_files = 0;
    cJSON *rows = load_rows(&n_files);
    it_server *s = it_start_ok(NULL);
    int n_run = 0;
    char names[4096];
    int failed = run_rows(s, rows, false, &n_run, names, sizeof names);
    ck_assert_msg(n_run >= 45, "only %d rows ran", n_run);
    ck_assert_msg(failed == 0, "%d of %d bad requests got the wrong answer (details on stderr): %s",
                  failed, n_run, names);
    expect_still_right(s);
    cJSON_Delete(rows);
    it_stop_ok(s);
}
END_TEST

START_TEST(bad_requests_over_small_limits_get_413_server_survives)
{
    int n_files = 0;
    cJSON *rows = load_rows(&n_files);
    it_server *s = it_start_ok(SMALL_LIMIT_ARGS, NULL);
    int n_run = 0;
    char names[4096];
    int failed = run_rows(s, rows, true, &n_run, names, sizeof names);
    ck_assert_msg(n_run >= 1, "no small_limit rows ran");
    ck_assert_msg(failed == 0, "%d of %d requests got the wrong answer (details on stderr): %s",
                  failed, n_run, names);
    expect_still_right(s);
    cJSON_Delete(rows);
    it_stop_ok(s);
}
END_TEST

static Suite *bad_requests_suite(void)
{
    Suite *s = suite_create("bad_requests");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, table_has_at_least_45_well_formed_rows);
    tcase_add_test(tc, every_bad_request_gets_its_status_code_and_field_server_survives);
    tcase_add_test(tc, bad_requests_over_small_limits_get_413_server_survives);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return it_run_suite(bad_requests_suite());
}
