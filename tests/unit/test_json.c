/* test_json.c - the JSON layer: pointers, parsing, tensors, base64, float text, the writer. */
#include <check.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ------------------------------------------------------------- helpers */

/* Deterministic generator so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static float float_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Parses text that must be valid; the test owns the result. */
static cJSON *parse_ok(const char *text)
{
    srv_err e;
    memset(&e, 0, sizeof e);
    cJSON *root = srv_json_parse_object(text, strlen(text), &e);
    ck_assert_msg(root != NULL, "parse failed: %s (%s)", e.message, text);
    return root;
}

/* Reads member "key" of the object text as a tensor; returns the result. */
static bool read_key(const char *text, size_t lo, size_t hi, bool allow_empty, size_t max_el,
                     srv_tensor *t, srv_err *e)
{
    cJSON *root = parse_ok(text);
    srv_ptr root_ptr, key_ptr;
    srv_ptr_root(&root_ptr);
    srv_ptr_key(&key_ptr, &root_ptr, "key");
    memset(e, 0, sizeof *e);
    bool ok = srv_json_read_tensor(cJSON_GetObjectItemCaseSensitive(root, "key"), &key_ptr, "key",
                                   lo, hi, allow_empty, max_el, t, e);
    cJSON_Delete(root);
    return ok;
}

static void expect_tensor_error(const char *text, size_t lo, size_t hi, bool allow_empty,
                                size_t max_el, int status, const char *code, const char *message,
                                const char *field)
{
    srv_tensor t;
    srv_err e;
    bool ok = read_key(text, lo, hi, allow_empty, max_el, &t, &e);
    ck_assert_msg(!ok, "accepted: %s", text);
    ck_assert_ptr_null(t.data);
    ck_assert_int_eq(e.status, status);
    ck_assert_str_eq(e.code, code);
    if (message != NULL) {
        ck_assert_str_eq(e.message, message);
    }
    ck_assert_str_eq(e.field, field);
}

/* Error message must contain needle. */
static void expect_tensor_error_has(const char *text, size_t lo, size_t hi, bool allow_empty,
                                    size_t max_el, int status, const char *needle,
                                    const char *field)
{
    srv_tensor t;
    srv_err e;
    bool ok = read_key(text, lo, hi, allow_empty, max_el, &t, &e);
    ck_assert_msg(!ok, "accepted: %s", text);
    ck_assert_int_eq(e.status, status);
    ck_assert_msg(strstr(e.message, needle) != NULL, "message '%s' lacks '%s'", e.message, needle);
    ck_assert_str_eq(e.field, field);
}

/* "[[0,1,...],[...]]" with rows[i] values in row i. */
static void matrix_text(srv_buf *b, const size_t *row_lens, size_t n_rows)
{
    srv_buf_puts(b, "[");
    for (size_t i = 0; i < n_rows; i++) {
        srv_buf_puts(b, i ? ",[" : "[");
        for (size_t j = 0; j < row_lens[i]; j++) {
            srv_buf_printf(b, "%s%zu", j ? "," : "", i * 10 + j);
        }
        srv_buf_puts(b, "]");
    }
    srv_buf_puts(b, "]");
}

static char *detach(srv_buf *b)
{
    size_t len;
    char *s = srv_buf_detach(b, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(strlen(s), len);
    return s;
}

/* Independent reference for the shortest float text: printf at rising
 * precision until the float reads back, directly and through a double. */
static void reference_shortest(float f, char *out)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(out, 32, "%.*g", p, (double)f);
        if (strtof(out, NULL) == f && (float)strtod(out, NULL) == f) {
            return;
        }
    }
}

/* Significant digits of a decimal text: "-862970" and "8.6297e+05" have 5. */
static size_t count_digits(const char *s)
{
    size_t n = 0, last_nonzero = 0;
    bool leading = true;
    for (; *s && *s != 'e'; s++) {
        if (*s >= '1' && *s <= '9') {
            leading = false;
        }
        if (*s >= '0' && *s <= '9' && !leading) {
            n++;
            if (*s != '0') {
                last_nonzero = n;
            }
        }
    }
    return last_nonzero;
}

/* ------------------------------------------------------------ pointers */

START_TEST(ptr_root_is_empty_string)
{
    srv_ptr p;
    srv_ptr_root(&p);
    ck_assert_str_eq(p.s, "");
    ck_assert_uint_eq(p.len, 0);
}
END_TEST

START_TEST(ptr_key_escapes_tilde_as_0_and_slash_as_1)
{
    srv_ptr root, p;
    srv_ptr_root(&root);
    srv_ptr_key(&p, &root, "a/b~c");
    ck_assert_str_eq(p.s, "/a~1b~0c");
    srv_ptr_index(&p, &p, 12);
    ck_assert_str_eq(p.s, "/a~1b~0c/12");
    srv_ptr_key(&p, &p, "~/");
    ck_assert_str_eq(p.s, "/a~1b~0c/12/~0~1");
    ck_assert_uint_eq(p.len, strlen(p.s));
}
END_TEST

START_TEST(ptr_empty_key_gives_lone_slash)
{
    srv_ptr root, p;
    srv_ptr_root(&root);
    srv_ptr_key(&p, &root, "");
    ck_assert_str_eq(p.s, "/");
}
END_TEST

START_TEST(ptr_long_key_truncates_inside_buffer)
{
    char key[1000];
    memset(key, '~', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    srv_ptr root, p;
    srv_ptr_root(&root);
    srv_ptr_key(&p, &root, key);
    ck_assert_uint_lt(p.len, sizeof p.s);
    ck_assert_uint_eq(strlen(p.s), p.len);
    /* never half an escape at the end */
    ck_assert_int_eq(p.s[p.len - 1], '0');
    srv_ptr_index(&p, &p, 5);
    ck_assert_uint_lt(p.len, sizeof p.s);
}
END_TEST

/* -------------------------------------------------------------- parsing */

static void expect_parse_error(const char *body, size_t len, const char *code, const char *message)
{
    srv_err e;
    memset(&e, 0, sizeof e);
    cJSON *root = srv_json_parse_object(body, len, &e);
    ck_assert_ptr_null(root);
    ck_assert_int_eq(e.status, 400);
    ck_assert_str_eq(e.code, code);
    ck_assert_str_eq(e.message, message);
    ck_assert_str_eq(e.field, "");
}

START_TEST(parse_empty_body_is_malformed)
{
    expect_parse_error(NULL, 0, SRV_CODE_MALFORMED, "malformed JSON at byte 0 (empty body)");
    expect_parse_error("", 0, SRV_CODE_MALFORMED, "malformed JSON at byte 0 (empty body)");
    expect_parse_error(" \n\t", 3, SRV_CODE_MALFORMED, "malformed JSON at byte 3 (empty body)");
}
END_TEST

START_TEST(parse_errors_report_byte_offset)
{
    expect_parse_error("{\"a\": 1", 7, SRV_CODE_MALFORMED, "malformed JSON at byte 7");
    expect_parse_error("{\"a\": tru}", 10, SRV_CODE_MALFORMED, "malformed JSON at byte 6");
    expect_parse_error("{\"a\" 1}", 7, SRV_CODE_MALFORMED, "malformed JSON at byte 5");
    expect_parse_error("{\"a\":[1,2}", 10, SRV_CODE_MALFORMED, "malformed JSON at byte 9");
    expect_parse_error("nul", 3, SRV_CODE_MALFORMED, "malformed JSON at byte 0");
}
END_TEST

START_TEST(parse_trailing_data_is_malformed_at_its_offset)
{
    expect_parse_error("{\"a\": 1} x", 10, SRV_CODE_MALFORMED,
                       "malformed JSON at byte 9 (unexpected data after the JSON value)");
    expect_parse_error("{}{}", 4, SRV_CODE_MALFORMED,
                       "malformed JSON at byte 2 (unexpected data after the JSON value)");
    /* an embedded NUL ends the value early: the rest is trailing data */
    expect_parse_error("{}\0 ", 4, SRV_CODE_MALFORMED,
                       "malformed JSON at byte 2 (unexpected data after the JSON value)");
}
END_TEST

START_TEST(parse_top_level_non_object_is_invalid_argument)
{
    expect_parse_error("[1]", 3, SRV_CODE_INVALID,
                       "the request body must be a JSON object, got array");
    expect_parse_error("1", 1, SRV_CODE_INVALID,
                       "the request body must be a JSON object, got number");
}
END_TEST

START_TEST(parse_trailing_whitespace_is_accepted)
{
    const char *text = " {\"a\": [1, 2]} \r\n\t ";
    srv_err e;
    cJSON *root = srv_json_parse_object(text, strlen(text), &e);
    ck_assert_ptr_nonnull(root);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "a")), 2);
    cJSON_Delete(root);
}
END_TEST

START_TEST(parse_numbers_read_exactly_as_strtod_does)
{
    /* every shape the fast reader handles, and some it hands to strtod */
    char text[128], body[160];
    for (int i = 0; i < 200000; i++) {
        int n_int = (int)(rng_next() % 13), n_frac = (int)(rng_next() % 22);
        size_t o = 0;
        if (rng_next() % 2) {
            text[o++] = '-';
        }
        if (n_int == 0 || rng_next() % 4 == 0) {
            text[o++] = '0';
        } else {
            text[o++] = (char)('1' + rng_next() % 9);
            for (int k = 1; k < n_int; k++) {
                text[o++] = (char)('0' + rng_next() % 10);
            }
        }
        if (n_frac > 0) {
            text[o++] = '.';
            for (int k = 0; k < n_frac; k++) {
                text[o++] = (char)('0' + rng_next() % 10);
            }
        }
        if (rng_next() % 4 == 0) {
            o += (size_t)snprintf(text + o, sizeof text - o, "e%d", (int)(rng_next() % 61) - 30);
        }
        text[o] = '\0';
        /* the number last in the body, so reads past it meet the end */
        int n = snprintf(body, sizeof body, "{\"a\":%s}", text);
        srv_err e;
        cJSON *root = srv_json_parse_object(body, (size_t)n, &e);
        ck_assert_msg(root != NULL, "%s: %s", text, e.message);
        double got = cJSON_GetObjectItem(root, "a")->valuedouble;
        double want = strtod(text, NULL);
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%s: got %.17g, want %.17g", text, got,
                      want);
        cJSON_Delete(root);
    }
}
END_TEST

START_TEST(parse_reads_only_len_bytes_of_unterminated_body)
{
    /* Exactly-sized heap copies: ASan flags any read past the end. */
    const char *text = "{\"a\":123}";
    size_t len = strlen(text);
    char *body = malloc(len);
    memcpy(body, text, len);
    srv_err e;
    cJSON *root = srv_json_parse_object(body, len, &e);
    ck_assert_ptr_nonnull(root);
    ck_assert_double_eq(cJSON_GetObjectItem(root, "a")->valuedouble, 123.0);
    cJSON_Delete(root);
    /* the number is cut at len: what follows in memory must not count */
    root = srv_json_parse_object("{\"a\":12}3", 7, &e);
    ck_assert_ptr_null(root);
    ck_assert_str_eq(e.code, SRV_CODE_MALFORMED);
    free(body);
}
END_TEST

START_TEST(parse_nesting_past_cjson_limit_is_malformed_with_reason)
{
    size_t n = 5 + 2 * (CJSON_NESTING_LIMIT + 50);
    char *body = malloc(n);
    size_t k = 0;
    memcpy(body, "{\"a\":", 5);
    k = 5;
    for (int i = 0; i < CJSON_NESTING_LIMIT + 50; i++) {
        body[k++] = '[';
    }
    srv_err e;
    cJSON *root = srv_json_parse_object(body, k, &e);
    ck_assert_ptr_null(root);
    ck_assert_str_eq(e.code, SRV_CODE_MALFORMED);
    ck_assert_msg(strstr(e.message, "nested deeper than 1000 levels") != NULL, "%s", e.message);
    free(body);
}
END_TEST

/* ------------------------------------------------------ tensors (lists) */

START_TEST(tensor_matrix_reads_row_major)
{
    srv_tensor t;
    srv_err e;
    ck_assert(read_key("{\"key\": [[1, 2, 3], [4.5, -5, 6e-3]]}", 2, 2, false, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 2);
    ck_assert_uint_eq(t.shape[0], 2);
    ck_assert_uint_eq(t.shape[1], 3);
    ck_assert_uint_eq(t.size, 6);
    const float want[6] = {1, 2, 3, 4.5f, -5, 6e-3f};
    for (int i = 0; i < 6; i++) {
        ck_assert_uint_eq(bits_of(t.data[i]), bits_of(want[i]));
    }
    srv_tensor_free(&t);
    ck_assert_ptr_null(t.data);
    ck_assert_uint_eq(t.size, 0);
}
END_TEST

START_TEST(tensor_ragged_row_depth2_names_row_and_counts)
{
    size_t lens[5] = {8, 8, 8, 7, 8};
    srv_buf b;
    srv_buf_init(&b);
    srv_buf_puts(&b, "{\"key\": ");
    matrix_text(&b, lens, 5);
    srv_buf_puts(&b, "}");
    char *text = detach(&b);
    expect_tensor_error(text, 2, 2, false, 1000, 400, SRV_CODE_INVALID,
                        "key: row 3 has 7 values, expected 8", "/key/3");
    free(text);
    /* a longer row is named the same way */
    expect_tensor_error("{\"key\": [[1, 2], [3, 4, 5]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: row 1 has 3 values, expected 2", "/key/1");
}
END_TEST

START_TEST(tensor_ragged_row_depth3_uses_full_index)
{
    /* [2][4][8] with [0][3] one value short */
    size_t full[4] = {8, 8, 8, 8}, short3[4] = {8, 8, 8, 7};
    srv_buf b;
    srv_buf_init(&b);
    srv_buf_puts(&b, "{\"key\": [");
    matrix_text(&b, short3, 4);
    srv_buf_puts(&b, ",");
    matrix_text(&b, full, 4);
    srv_buf_puts(&b, "]}");
    char *text = detach(&b);
    expect_tensor_error(text, 3, 3, false, 1000, 400, SRV_CODE_INVALID,
                        "key: row [0][3] has 7 values, expected 8", "/key/0/3");
    free(text);
    /* a matrix with a missing row */
    expect_tensor_error("{\"key\": [[[1, 2], [3, 4]], [[5, 6]]]}", 3, 3, false, 100, 400,
                        SRV_CODE_INVALID, "key: entry 1 has 1 rows, expected 2", "/key/1");
}
END_TEST

START_TEST(tensor_ragged_depth4_names_entries)
{
    expect_tensor_error("{\"key\": [[[[1]], [[2]]], [[[3]]]]}", 4, 4, false, 100, 400,
                        SRV_CODE_INVALID, "key: entry 1 has 1 entries, expected 2", "/key/1");
    expect_tensor_error("{\"key\": [[[[1]], [[2]]], [[[3]], [[4, 5]]]]}", 4, 4, false, 100, 400,
                        SRV_CODE_INVALID, "key: row [1][1][0] has 2 values, expected 1",
                        "/key/1/1/0");
}
END_TEST

START_TEST(tensor_string_element_points_at_it)
{
    expect_tensor_error("{\"key\": [[1, 2, 3], [4, 5, \"6\"]]}", 2, 2, false, 100, 400,
                        SRV_CODE_INVALID, "key: expected a number, got string", "/key/1/2");
    expect_tensor_error("{\"key\": [[1, null]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a number, got null", "/key/0/1");
    expect_tensor_error("{\"key\": [[1, true]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a number, got boolean", "/key/0/1");
    expect_tensor_error("{\"key\": [[1, [2]]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a number, got array", "/key/0/1");
}
END_TEST

START_TEST(tensor_scalar_where_row_expected_points_at_it)
{
    expect_tensor_error("{\"key\": [[1, 2], 3]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected an array, got number", "/key/1");
}
END_TEST

START_TEST(tensor_nonfinite_value_points_at_it)
{
    /* cJSON reads 1e999 as infinity */
    expect_tensor_error("{\"key\": [[1, 2], [3, 1e999]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: value is not finite", "/key/1/1");
    expect_tensor_error("{\"key\": [[-1e999]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: value is not finite", "/key/0/0");
}
END_TEST

START_TEST(tensor_beyond_float32_range_is_rejected_but_float_max_text_is_not)
{
    expect_tensor_error("{\"key\": [[1e39]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: value 1e+39 is outside the float32 range", "/key/0/0");
    srv_tensor t;
    srv_err e;
    ck_assert(
        read_key("{\"key\": [[3.4028235e38, -3.4028235e+38, 1e-45]]}", 2, 2, false, 100, &t, &e));
    ck_assert_float_eq(t.data[0], FLT_MAX);
    ck_assert_float_eq(t.data[1], -FLT_MAX);
    ck_assert_uint_eq(bits_of(t.data[2]), 1);
    srv_tensor_free(&t);
}
END_TEST

START_TEST(tensor_rank_out_of_range_says_expected_and_got)
{
    expect_tensor_error("{\"key\": [[[1, 2]], [[3, 4]]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a 2-D array (a list of rows, e.g. [[1, 2], [3, 4]]), "
                        "got a 3-D array of shape [2,1,2]",
                        "/key");
    expect_tensor_error("{\"key\": [1, 2]}", 2, 3, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a 2-D or 3-D array, got a 1-D array of shape [2]", "/key");
    expect_tensor_error("{\"key\": 5}", 1, 1, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a 1-D array (a list of numbers), got a number", "/key");
    expect_tensor_error("{\"key\": \"abc\"}", 2, 4, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a 2-D to 4-D array, got a string", "/key");
    expect_tensor_error("{\"key\": [1]}", 0, 0, false, 100, 400, SRV_CODE_INVALID,
                        "key: expected a number, got a 1-D array of shape [1]", "/key");
    expect_tensor_error_has("{\"key\": [[[[[[1]]]]]]}", 2, 2, false, 100, 400,
                            "got an array nested more than 5 levels deep", "/key");
}
END_TEST

START_TEST(tensor_rank_range_accepts_each_rank)
{
    srv_tensor t;
    srv_err e;
    ck_assert(read_key("{\"key\": [[1, 2]]}", 2, 3, false, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 2);
    srv_tensor_free(&t);
    ck_assert(read_key("{\"key\": [[[1, 2]], [[3, 4]]]}", 2, 3, false, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 3);
    ck_assert_uint_eq(t.shape[0], 2);
    ck_assert_uint_eq(t.shape[1], 1);
    ck_assert_uint_eq(t.shape[2], 2);
    ck_assert_float_eq(t.data[3], 4.0f);
    srv_tensor_free(&t);
}
END_TEST

START_TEST(tensor_scalar_is_rank0)
{
    srv_tensor t;
    srv_err e;
    ck_assert(read_key("{\"key\": -2.5}", 0, 0, false, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 0);
    ck_assert_uint_eq(t.size, 1);
    ck_assert_float_eq(t.data[0], -2.5f);
    srv_tensor_free(&t);
}
END_TEST

START_TEST(tensor_empty_dimension_rejected_when_not_allowed)
{
    expect_tensor_error("{\"key\": []}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: empty array; every dimension must have at least one entry", "/key");
    expect_tensor_error("{\"key\": [[]]}", 2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: empty array; every dimension must have at least one entry", "/key/0");
}
END_TEST

START_TEST(tensor_empty_dimension_allowed_pads_rank_with_zeros)
{
    srv_tensor t;
    srv_err e;
    ck_assert(read_key("{\"key\": []}", 2, 2, true, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 2);
    ck_assert_uint_eq(t.shape[0], 0);
    ck_assert_uint_eq(t.shape[1], 0);
    ck_assert_uint_eq(t.size, 0);
    ck_assert_ptr_nonnull(t.data);
    srv_tensor_free(&t);
    ck_assert(read_key("{\"key\": [[], []]}", 2, 2, true, 100, &t, &e));
    ck_assert_uint_eq(t.shape[0], 2);
    ck_assert_uint_eq(t.shape[1], 0);
    srv_tensor_free(&t);
    expect_tensor_error("{\"key\": [[], [1]]}", 2, 2, true, 100, 400, SRV_CODE_INVALID,
                        "key: row 1 has 1 values, expected 0", "/key/1");
}
END_TEST

START_TEST(tensor_over_max_elements_is_413)
{
    expect_tensor_error("{\"key\": [[1, 2], [3, 4]]}", 2, 2, false, 3, 413, SRV_CODE_TOO_LARGE,
                        "key: shape [2,2] has 4 elements, over the limit of 3", "/key");
    srv_tensor t;
    srv_err e;
    ck_assert(read_key("{\"key\": [[1, 2], [3, 4]]}", 2, 2, false, 4, &t, &e));
    srv_tensor_free(&t);
}
END_TEST

START_TEST(tensor_missing_item_is_required_error)
{
    srv_ptr root, p;
    srv_ptr_root(&root);
    srv_ptr_key(&p, &root, "query");
    srv_tensor t;
    srv_err e;
    ck_assert(!srv_json_read_tensor(NULL, &p, "query", 2, 2, false, 10, &t, &e));
    ck_assert_str_eq(e.message, "query is required");
    ck_assert_str_eq(e.field, "/query");
}
END_TEST

START_TEST(tensor_pointer_escapes_member_name)
{
    cJSON *root = parse_ok("{\"w/1\": [[1, \"x\"]]}");
    srv_ptr rp, p;
    srv_ptr_root(&rp);
    srv_ptr_key(&p, &rp, "weights");
    srv_ptr_key(&p, &p, "w/1");
    srv_tensor t;
    srv_err e;
    ck_assert(!srv_json_read_tensor(cJSON_GetObjectItem(root, "w/1"), &p, "w/1", 2, 2, false, 10,
                                    &t, &e));
    ck_assert_str_eq(e.field, "/weights/w~11/0/1");
    cJSON_Delete(root);
}
END_TEST

/* ----------------------------------------------- tensors (base64 objects) */

START_TEST(tensor_object_decodes_little_endian_floats)
{
    /* 1.0f = 00 00 80 3f, 2.0f = 00 00 00 40 */
    srv_tensor t;
    srv_err e;
    ck_assert(read_key("{\"key\": {\"dtype\": \"float32\", \"shape\": [1, 2], "
                       "\"data\": \"AACAPwAAAEA=\"}}",
                       2, 2, false, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 2);
    ck_assert_uint_eq(t.shape[0], 1);
    ck_assert_uint_eq(t.shape[1], 2);
    ck_assert_float_eq(t.data[0], 1.0f);
    ck_assert_float_eq(t.data[1], 2.0f);
    srv_tensor_free(&t);
    /* dtype may be left out; padding may be left out */
    ck_assert(read_key("{\"key\": {\"shape\": [2], \"data\": \"AACAPwAAAEA\"}}", 1, 1, false, 100,
                       &t, &e));
    ck_assert_float_eq(t.data[1], 2.0f);
    srv_tensor_free(&t);
}
END_TEST

START_TEST(tensor_object_wrong_data_size_names_both_sizes)
{
    expect_tensor_error("{\"key\": {\"dtype\": \"float32\", \"shape\": [2, 3], "
                        "\"data\": \"AAAAAAAAAAAAAAAA\"}}",
                        2, 2, false, 100, 400, SRV_CODE_INVALID,
                        "key: data holds 12 bytes, shape [2,3] needs 24", "/key/data");
}
END_TEST

START_TEST(tensor_object_unknown_dtype_points_at_dtype)
{
    expect_tensor_error(
        "{\"key\": {\"dtype\": \"float64\", \"shape\": [1], \"data\": \"AAAAAA==\"}}", 1, 1, false,
        100, 400, SRV_CODE_INVALID, "key: dtype 'float64' is not supported; use 'float32'",
        "/key/dtype");
    expect_tensor_error_has("{\"key\": {\"dtype\": 32, \"shape\": [1], \"data\": \"AAAAAA==\"}}", 1,
                            1, false, 100, 400, "dtype must be a string", "/key/dtype");
}
END_TEST

START_TEST(tensor_object_bad_shape_entry_points_at_it)
{
    expect_tensor_error("{\"key\": {\"shape\": [1, -1], \"data\": \"\"}}", 2, 2, false, 100, 400,
                        SRV_CODE_INVALID, "key: shape[1] must be a non-negative integer, got -1",
                        "/key/shape/1");
    expect_tensor_error("{\"key\": {\"shape\": [1.5, 1], \"data\": \"\"}}", 2, 2, false, 100, 400,
                        SRV_CODE_INVALID, "key: shape[0] must be a non-negative integer, got 1.5",
                        "/key/shape/0");
    expect_tensor_error("{\"key\": {\"shape\": [1, \"2\"], \"data\": \"\"}}", 2, 2, false, 100, 400,
                        SRV_CODE_INVALID,
                        "key: shape[1] must be a non-negative integer, got string", "/key/shape/1");
    expect_tensor_error_has("{\"key\": {\"shape\": 3, \"data\": \"\"}}", 2, 2, false, 100, 400,
                            "shape must be an array", "/key/shape");
    expect_tensor_error("{\"key\": {\"shape\": [1, 2, 3], \"data\": \"\"}}", 2, 2, false, 100, 400,
                        SRV_CODE_INVALID,
                        "key: expected a 2-D array (a list of rows, e.g. [[1, 2], [3, 4]]), "
                        "got shape with 3 dimensions",
                        "/key/shape");
    expect_tensor_error("{\"key\": {\"shape\": [2, 0], \"data\": \"\"}}", 2, 2, false, 100, 400,
                        SRV_CODE_INVALID, "key: shape[1] is 0; every dimension must be at least 1",
                        "/key/shape/1");
}
END_TEST

START_TEST(tensor_object_huge_declared_shape_is_413_without_allocating)
{
    /* Under ASan an attempt to allocate these sizes aborts the test. */
    expect_tensor_error(
        "{\"key\": {\"dtype\": \"float32\", \"shape\": [1e9, 1e9], \"data\": \"\"}}", 2, 2, false,
        (size_t)1 << 26, 413, SRV_CODE_TOO_LARGE,
        "key: shape [1000000000,1000000000] has 1000000000000000000 elements, "
        "over the limit of 67108864",
        "/key/shape");
    expect_tensor_error_has("{\"key\": {\"shape\": [1e300, 1e300, 1e300], \"data\": \"\"}}", 3, 3,
                            false, (size_t)1 << 26, 413,
                            "has more elements than the limit of 67108864", "/key/shape");
    /* Within a generous limit, a short data string is refused by its size
     * before the 16 GB the shape declares is ever requested. */
    expect_tensor_error("{\"key\": {\"shape\": [4000000000], \"data\": \"AAAA\"}}", 1, 1, false,
                        SIZE_MAX / 8, 400, SRV_CODE_INVALID,
                        "key: data holds 3 bytes, shape [4000000000] needs 16000000000",
                        "/key/data");
}
END_TEST

START_TEST(tensor_object_bad_base64_points_at_data_with_offset)
{
    expect_tensor_error("{\"key\": {\"shape\": [1, 2], \"data\": \"AAAAAAAA*AA=\"}}", 2, 2, false,
                        100, 400, SRV_CODE_INVALID,
                        "key: data is not valid base64: a character outside the base64 alphabet "
                        "at offset 8",
                        "/key/data");
    expect_tensor_error_has("{\"key\": {\"shape\": [1, 2], \"data\": \"AAAA AAAAAA\"}}", 2, 2,
                            false, 100, 400, "at offset 4", "/key/data");
    expect_tensor_error_has("{\"key\": {\"shape\": [1, 2], \"data\": \"AAAA=AAAAAA\"}}", 2, 2,
                            false, 100, 400, "misplaced padding '=' at offset 4", "/key/data");
}
END_TEST

START_TEST(tensor_object_nan_bits_name_flat_index)
{
    /* element 1 = 0x7fc00000 (NaN), element 2 = 0x7f800000 (+inf) */
    expect_tensor_error("{\"key\": {\"shape\": [1, 2], \"data\": \"AAAAAAAAwH8=\"}}", 2, 2, false,
                        100, 400, SRV_CODE_INVALID,
                        "key: data element 1 (index [0][1]) is not finite", "/key/data");
    expect_tensor_error("{\"key\": {\"shape\": [3], \"data\": \"AACAPwAAgD8AAIB/\"}}", 1, 1, false,
                        100, 400, SRV_CODE_INVALID, "key: data element 2 (index [2]) is not finite",
                        "/key/data");
}
END_TEST

START_TEST(tensor_object_missing_or_unknown_members_are_named)
{
    expect_tensor_error_has("{\"key\": {\"shape\": [1]}}", 1, 1, false, 100, 400,
                            "'data' is missing", "/key/data");
    expect_tensor_error_has("{\"key\": {\"data\": \"\"}}", 1, 1, false, 100, 400,
                            "'shape' is missing", "/key/shape");
    expect_tensor_error("{\"key\": {\"shape\": [1], \"data\": \"AAAAAA==\", \"order\": \"C\"}}", 1,
                        1, false, 100, 400, SRV_CODE_INVALID,
                        "key: unknown member 'order'; accepted: dtype, shape, data", "/key/order");
    expect_tensor_error_has("{\"key\": {\"shape\": [1], \"data\": 5}}", 1, 1, false, 100, 400,
                            "data must be a base64 string, got number", "/key/data");
}
END_TEST

START_TEST(tensor_object_empty_shape_is_scalar)
{
    srv_tensor t;
    srv_err e;
    ck_assert(
        read_key("{\"key\": {\"shape\": [], \"data\": \"AADAPw==\"}}", 0, 2, false, 100, &t, &e));
    ck_assert_uint_eq(t.rank, 0);
    ck_assert_uint_eq(t.size, 1);
    ck_assert_float_eq(t.data[0], 1.5f);
    srv_tensor_free(&t);
}
END_TEST

/* ------------------------------------------------------------- btensors */

static bool read_bkey(const char *text, size_t lo, size_t hi, srv_btensor *t, srv_err *e)
{
    cJSON *root = parse_ok(text);
    srv_ptr rp, p;
    srv_ptr_root(&rp);
    srv_ptr_key(&p, &rp, "key");
    memset(e, 0, sizeof *e);
    bool ok = srv_json_read_btensor(cJSON_GetObjectItem(root, "key"), &p, "key", lo, hi, 100, t, e);
    cJSON_Delete(root);
    return ok;
}

START_TEST(btensor_reads_booleans_and_zero_one)
{
    srv_btensor t;
    srv_err e;
    ck_assert(read_bkey("{\"key\": [[true, false, 1], [0, true, false]]}", 2, 2, &t, &e));
    ck_assert_uint_eq(t.rank, 2);
    ck_assert_uint_eq(t.size, 6);
    const uint8_t want[6] = {1, 0, 1, 0, 1, 0};
    ck_assert_mem_eq(t.data, want, 6);
    srv_btensor_free(&t);
    ck_assert_ptr_null(t.data);
}
END_TEST

START_TEST(btensor_other_values_are_rejected_at_their_pointer)
{
    srv_btensor t;
    srv_err e;
    ck_assert(!read_bkey("{\"key\": [[true, 2]]}", 2, 2, &t, &e));
    ck_assert_str_eq(e.message, "key: expected true or false (or 0/1), got 2");
    ck_assert_str_eq(e.field, "/key/0/1");
    ck_assert(!read_bkey("{\"key\": [[true], [\"yes\"]]}", 2, 2, &t, &e));
    ck_assert_str_eq(e.message, "key: expected true or false, got string");
    ck_assert_str_eq(e.field, "/key/1/0");
    ck_assert(!read_bkey("{\"key\": [[true], [false, true]]}", 2, 2, &t, &e));
    ck_assert_str_eq(e.message, "key: row 1 has 2 values, expected 1");
    ck_assert_str_eq(e.field, "/key/1");
    ck_assert(!read_bkey("{\"key\": [true]}", 2, 3, &t, &e));
    ck_assert_str_eq(e.field, "/key");
}
END_TEST

START_TEST(btensor_object_reads_bool_bytes)
{
    srv_btensor t;
    srv_err e;
    /* bytes 01 00 01 */
    ck_assert(read_bkey("{\"key\": {\"dtype\": \"bool\", \"shape\": [3], \"data\": \"AQAB\"}}", 1,
                        1, &t, &e));
    const uint8_t want[3] = {1, 0, 1};
    ck_assert_mem_eq(t.data, want, 3);
    srv_btensor_free(&t);
    /* bytes 01 02 01: a 2 is not a boolean */
    ck_assert(!read_bkey("{\"key\": {\"dtype\": \"uint8\", \"shape\": [3], \"data\": \"AQIB\"}}", 1,
                         1, &t, &e));
    ck_assert_str_eq(e.message, "key: data element 1 (index [1]) is 2, expected 0 or 1");
    ck_assert_str_eq(e.field, "/key/data");
    ck_assert(!read_bkey("{\"key\": {\"dtype\": \"float32\", \"shape\": [3], \"data\": \"AQIB\"}}",
                         1, 1, &t, &e));
    ck_assert_str_eq(e.field, "/key/dtype");
}
END_TEST

/* -------------------------------------------------------- option readers */

START_TEST(opt_absent_or_null_keeps_default)
{
    cJSON *root = parse_ok("{\"n\": null}");
    srv_ptr rp;
    srv_ptr_root(&rp);
    srv_err e;
    long long v = 7;
    double d = 0.5;
    bool b = true;
    char s[8] = "json";
    ck_assert(srv_json_opt_int(root, &rp, "missing", 0, 10, &v, &e));
    ck_assert(srv_json_opt_int(root, &rp, "n", 0, 10, &v, &e));
    ck_assert_int_eq(v, 7);
    ck_assert(srv_json_opt_float(root, &rp, "n", 0, 1, &d, &e));
    ck_assert_double_eq(d, 0.5);
    ck_assert(srv_json_opt_bool(root, &rp, "n", &b, &e));
    ck_assert(b);
    ck_assert(srv_json_opt_string(root, &rp, "n", s, sizeof s, &e));
    ck_assert_str_eq(s, "json");
    cJSON_Delete(root);
}
END_TEST

START_TEST(opt_int_rejects_fraction_and_out_of_range_with_range)
{
    cJSON *root = parse_ok("{\"precision\": 3.5, \"p2\": 12, \"seed\": -1, \"big\": 1e300, "
                           "\"s\": \"3\", \"ok\": 9, \"inf\": 1e999}");
    srv_ptr rp;
    srv_ptr_root(&rp);
    srv_err e;
    long long v = 0;
    ck_assert(!srv_json_opt_int(root, &rp, "precision", 1, 9, &v, &e));
    ck_assert_str_eq(e.message, "precision: expected an integer, got 3.5");
    ck_assert_str_eq(e.field, "/precision");
    ck_assert(!srv_json_opt_int(root, &rp, "p2", 1, 9, &v, &e));
    ck_assert_str_eq(e.message, "p2: must be an integer from 1 to 9, got 12");
    ck_assert(!srv_json_opt_int(root, &rp, "seed", 0, LLONG_MAX, &v, &e));
    ck_assert_str_eq(e.message, "seed: must be >= 0, got -1");
    ck_assert(!srv_json_opt_int(root, &rp, "big", 0, LLONG_MAX, &v, &e));
    ck_assert_str_eq(e.message, "big: must be >= 0, got 1e+300");
    ck_assert(!srv_json_opt_int(root, &rp, "s", 0, 10, &v, &e));
    ck_assert_str_eq(e.message, "s: expected an integer, got string");
    ck_assert(!srv_json_opt_int(root, &rp, "inf", 0, 10, &v, &e));
    ck_assert_str_eq(e.field, "/inf");
    ck_assert_int_eq(v, 0);
    ck_assert(srv_json_opt_int(root, &rp, "ok", 1, 9, &v, &e));
    ck_assert_int_eq(v, 9);
    cJSON_Delete(root);
}
END_TEST

START_TEST(opt_float_checks_type_finiteness_and_range)
{
    cJSON *root = parse_ok("{\"scale\": 0.25, \"neg\": -1, \"s\": \"x\", \"inf\": 1e999}");
    srv_ptr rp;
    srv_ptr_root(&rp);
    srv_err e;
    double d = 1;
    ck_assert(srv_json_opt_float(root, &rp, "scale", 0, HUGE_VAL, &d, &e));
    ck_assert_double_eq(d, 0.25);
    ck_assert(!srv_json_opt_float(root, &rp, "neg", 0, HUGE_VAL, &d, &e));
    ck_assert_str_eq(e.message, "neg: must be >= 0, got -1");
    ck_assert_str_eq(e.field, "/neg");
    ck_assert(!srv_json_opt_float(root, &rp, "neg", 0, 1, &d, &e));
    ck_assert_str_eq(e.message, "neg: must be from 0 to 1, got -1");
    ck_assert(!srv_json_opt_float(root, &rp, "s", 0, 1, &d, &e));
    ck_assert_str_eq(e.message, "s: expected a number, got string");
    ck_assert(!srv_json_opt_float(root, &rp, "inf", -HUGE_VAL, HUGE_VAL, &d, &e));
    ck_assert_str_eq(e.message, "inf: value is not finite");
    ck_assert_double_eq(d, 0.25);
    cJSON_Delete(root);
}
END_TEST

START_TEST(opt_bool_and_string_reject_wrong_types)
{
    cJSON *root = parse_ok("{\"flag\": 1, \"enc\": 5, \"name\": \"bottom_right\", \"t\": true}");
    srv_ptr rp, sub;
    srv_ptr_root(&rp);
    srv_ptr_key(&sub, &rp, "weights");
    srv_err e;
    bool b = false;
    ck_assert(!srv_json_opt_bool(root, &sub, "flag", &b, &e));
    ck_assert_str_eq(e.message, "flag: expected true or false, got number");
    ck_assert_str_eq(e.field, "/weights/flag");
    ck_assert(srv_json_opt_bool(root, &rp, "t", &b, &e));
    ck_assert(b);
    char s[8] = "";
    ck_assert(!srv_json_opt_string(root, &rp, "enc", s, sizeof s, &e));
    ck_assert_str_eq(e.message, "enc: expected a string, got number");
    ck_assert(srv_json_opt_string(root, &rp, "name", s, sizeof s, &e));
    ck_assert_str_eq(s, "bottom_"); /* truncated to the buffer */
    cJSON_Delete(root);
}
END_TEST

START_TEST(check_keys_names_unknown_member_and_lists_accepted)
{
    static const char *const allowed[] = {"query", "key", "value", "causal", NULL};
    cJSON *root = parse_ok("{\"query\": 1, \"casual\": true}");
    srv_ptr rp;
    srv_ptr_root(&rp);
    srv_err e;
    ck_assert(!srv_json_check_keys(root, &rp, allowed, &e));
    ck_assert_int_eq(e.status, 400);
    ck_assert_str_eq(e.code, SRV_CODE_INVALID);
    ck_assert_str_eq(e.message, "unknown member 'casual'; accepted: query, key, value, causal");
    ck_assert_str_eq(e.field, "/casual");
    cJSON_Delete(root);
    root = parse_ok("{\"query\": 1, \"causal\": true}");
    ck_assert(srv_json_check_keys(root, &rp, allowed, &e));
    cJSON_Delete(root);
}
END_TEST

START_TEST(check_keys_rejects_duplicates_and_escapes_pointer)
{
    static const char *const allowed[] = {"query", NULL};
    cJSON *root = parse_ok("{\"query\": 1, \"query\": 2}");
    srv_ptr rp;
    srv_ptr_root(&rp);
    srv_err e;
    ck_assert(!srv_json_check_keys(root, &rp, allowed, &e));
    ck_assert_str_eq(e.message, "duplicate member 'query'");
    ck_assert_str_eq(e.field, "/query");
    cJSON_Delete(root);
    root = parse_ok("{\"a/b~\": 1}");
    ck_assert(!srv_json_check_keys(root, &rp, allowed, &e));
    ck_assert_str_eq(e.field, "/a~1b~0");
    cJSON_Delete(root);
}
END_TEST

START_TEST(check_keys_long_accepted_list_is_truncated_safely)
{
    static char names[60][24];
    static const char *allowed[61];
    for (unsigned i = 0; i < 60; i++) {
        snprintf(names[i], sizeof names[i], "member_%02u", i);
        allowed[i] = names[i];
    }
    allowed[60] = NULL;
    cJSON *root = parse_ok("{\"zzz\": 1}");
    srv_ptr rp;
    srv_ptr_root(&rp);
    srv_err e;
    ck_assert(!srv_json_check_keys(root, &rp, allowed, &e));
    ck_assert_msg(strstr(e.message, "unknown member 'zzz'; accepted: member_00, member_01") ==
                      e.message,
                  "%s", e.message);
    ck_assert_msg(strstr(e.message, "...") != NULL, "%s", e.message);
    cJSON_Delete(root);
}
END_TEST

/* ---------------------------------------------------------------- base64 */

START_TEST(base64_rfc4648_vectors_encode_and_decode)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                        "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char out[32];
        size_t n = srv_base64_encode(plain[i], strlen(plain[i]), out);
        ck_assert_uint_eq(n, srv_base64_encoded_len(strlen(plain[i])));
        ck_assert_str_eq(out, coded[i]);
        unsigned char back[32];
        size_t len = 99, bad = 99;
        ck_assert(srv_base64_decode(coded[i], strlen(coded[i]), back, &len, &bad));
        ck_assert_uint_eq(len, strlen(plain[i]));
        ck_assert(memcmp(back, plain[i], len) == 0);
    }
}
END_TEST

START_TEST(base64_round_trips_lengths_0_to_10_all_byte_values)
{
    for (size_t n = 0; n <= 10; n++) {
        for (int trial = 0; trial < 50; trial++) {
            unsigned char in[10], back[16];
            for (size_t i = 0; i < n; i++) {
                in[i] = (unsigned char)rng_next();
            }
            if (trial == 0) {
                memset(in, 0xFF, n);
            }
            char enc[32];
            size_t m = srv_base64_encode(in, n, enc);
            ck_assert_uint_eq(m % 4, 0);
            ck_assert_uint_eq(strlen(enc), m);
            ck_assert_uint_le(srv_base64_decoded_max(m), sizeof back);
            size_t len = 0, bad = 0;
            ck_assert(srv_base64_decode(enc, m, back, &len, &bad));
            ck_assert_uint_eq(len, n);
            ck_assert(memcmp(in, back, n) == 0);
            /* without padding */
            size_t core = m;
            while (core > 0 && enc[core - 1] == '=') {
                core--;
            }
            ck_assert(srv_base64_decode(enc, core, back, &len, &bad));
            ck_assert_uint_eq(len, n);
            ck_assert(memcmp(in, back, n) == 0);
        }
    }
}
END_TEST

START_TEST(base64_decode_rejects_bad_input_with_offset)
{
    unsigned char out[64];
    size_t len, bad;
    static const struct {
        const char *in;
        size_t bad_at;
    } cases[] = {
        {"Zm9v*mFy", 4},
        {"Zm9vYmF!", 7},
        {"Zm9v YmFy", 4},
        {"Zm9v\nYmFy", 4},
        {"Zm=v", 2},
        {"Z", 0},
        {"Zm9vY", 4},
        {"Zg===", 4},
        {"Zm9v=", 4},
        {"-_-_", 0},
        {"Zm8==", 4},
        {"\xc3\xa9"
         "AAA",
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bad = 999;
        ck_assert_msg(!srv_base64_decode(cases[i].in, strlen(cases[i].in), out, &len, &bad),
                      "accepted %s", cases[i].in);
        ck_assert_msg(bad == cases[i].bad_at, "%s: bad_at %zu, want %zu", cases[i].in, bad,
                      cases[i].bad_at);
    }
    /* partial padding is accepted like none */
    ck_assert(srv_base64_decode("Zg=", 3, out, &len, &bad));
    ck_assert_uint_eq(len, 1);
    ck_assert_int_eq(out[0], 'f');
}
END_TEST

/* ------------------------------------------------------ float formatting */

START_TEST(format_float_known_values)
{
    static const struct {
        float f;
        const char *text;
    } cases[] = {
        {0.1f, "0.1"},
        {1.0f, "1"},
        {0.0f, "0"},
        {-2.5f, "-2.5"},
        {100.0f, "100"},
        {0.3f, "0.3"},
        {1.0f / 3.0f, "0.33333334"},
        {2.0f / 3.0f, "0.6666667"},
        {1e-5f, "1e-05"},
        {1.5e-4f, "0.00015"},
        {123456.0f, "123456"},
        {1234567.0f, "1234567"},
        {1e6f, "1e+06"},
        {16777216.0f, "16777216"},
        {3.4028235e38f, "3.4028235e+38"},
        {-3.4028235e38f, "-3.4028235e+38"},
        {1.17549435e-38f, "1.1754944e-38"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[32];
        size_t n = srv_format_float(cases[i].f, 0, out);
        ck_assert_str_eq(out, cases[i].text);
        ck_assert_uint_eq(n, strlen(out));
    }
}
END_TEST

START_TEST(format_float_negative_zero_and_denormals)
{
    char out[32];
    srv_format_float(-0.0f, 0, out);
    ck_assert_str_eq(out, "-0");
    /* the smallest denormal: the shortest text is one digit */
    srv_format_float(float_from_bits(1), 0, out);
    ck_assert_str_eq(out, "1e-45");
    ck_assert_uint_eq(bits_of(strtof(out, NULL)), 1);
    srv_format_float(-float_from_bits(2), 0, out);
    ck_assert_str_eq(out, "-3e-45");
    /* the largest denormal */
    srv_format_float(float_from_bits(0x007FFFFF), 0, out);
    ck_assert_str_eq(out, "1.1754942e-38");
    for (uint32_t u = 1; u < 0x00800000; u += 4099) {
        float f = float_from_bits(u);
        char ref[32];
        srv_format_float(f, 0, out);
        reference_shortest(f, ref);
        ck_assert_str_eq(out, ref);
    }
}
END_TEST

START_TEST(format_float_double_rounding_case_gets_one_more_digit)
{
    /* "7.038531e-26" is exact for strtof, but read as a double (as cJSON,
     * Python and JavaScript do) and then rounded to float it lands on the
     * neighbour; found by checking every float. */
    float f = float_from_bits(0x15ae43fd);
    char out[32];
    srv_format_float(f, 0, out);
    ck_assert_str_eq(out, "7.0385307e-26");
    srv_format_float(-f, 0, out);
    ck_assert_str_eq(out, "-7.0385307e-26");
    ck_assert_uint_eq(bits_of(strtof("7.038531e-26", NULL)), 0x15ae43fd);
    ck_assert_uint_ne(bits_of((float)strtod("7.038531e-26", NULL)), 0x15ae43fd);
}
END_TEST

START_TEST(format_float_nonfinite_writes_null)
{
    char out[32];
    ck_assert_uint_eq(srv_format_float(INFINITY, 0, out), 4);
    ck_assert_str_eq(out, "null");
    srv_format_float(-INFINITY, 3, out);
    ck_assert_str_eq(out, "null");
    srv_format_float(NAN, 0, out);
    ck_assert_str_eq(out, "null");
}
END_TEST

START_TEST(format_float_random_bits_round_trip_and_are_shortest)
{
    cJSON *num;
    for (int i = 0; i < 300000; i++) {
        uint32_t u = (uint32_t)rng_next();
        float f = float_from_bits(u);
        if (!isfinite(f)) {
            continue;
        }
        char out[32], ref[32];
        size_t n = srv_format_float(f, 0, out);
        ck_assert_uint_eq(n, strlen(out));
        ck_assert_uint_le(n, 15);
        /* reads back exactly, also through double (how cJSON reads it) */
        ck_assert_msg(bits_of(strtof(out, NULL)) == u, "%08x -> %s", u, out);
        ck_assert_msg(bits_of((float)strtod(out, NULL)) == u, "%08x -> %s (double)", u, out);
        reference_shortest(f, ref);
        ck_assert_msg(count_digits(out) <= count_digits(ref), "%08x: %s longer than %s", u, out,
                      ref);
        if (i % 97 == 0) { /* a valid JSON number */
            num = cJSON_Parse(out);
            ck_assert_msg(cJSON_IsNumber(num), "%s", out);
            cJSON_Delete(num);
        }
    }
}
END_TEST

START_TEST(format_float_random_weights_match_reference_text)
{
    /* values in (-1, 1), like attention weights */
    for (int i = 0; i < 200000; i++) {
        float f = (float)((double)(rng_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        char out[32], ref[32];
        srv_format_float(f, 0, out);
        reference_shortest(f, ref);
        ck_assert_str_eq(out, ref);
    }
}
END_TEST

START_TEST(format_float_precision_k_matches_printf_g)
{
    char out[32], ref[32];
    srv_format_float(3.14159265f, 3, out);
    ck_assert_str_eq(out, "3.14");
    srv_format_float(3.14159265f, 1, out);
    ck_assert_str_eq(out, "3");
    srv_format_float(9.7f, 1, out);
    ck_assert_str_eq(out, "1e+01");
    for (int k = 1; k <= 9; k++) {
        for (int i = 0; i < 20000; i++) {
            uint32_t u = (uint32_t)rng_next();
            float f = float_from_bits(u);
            if (!isfinite(f)) {
                continue;
            }
            srv_format_float(f, k, out);
            snprintf(ref, sizeof ref, "%.*g", k, (double)f);
            ck_assert_msg(strcmp(out, ref) == 0, "%08x k=%d: %s vs %s", u, k, out, ref);
        }
    }
}
END_TEST

/* ---------------------------------------------------------------- writer */

START_TEST(writer_output_parses_back_to_same_structure)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "quote\"back\\slash");
    srv_jw_str(&w, "line\nfeed\ttab\r\b\f\x01\x1f end");
    srv_jw_key(&w, "utf8");
    srv_jw_str(&w, "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80");
    srv_jw_key(&w, "nums");
    srv_jw_arr_begin(&w);
    srv_jw_int(&w, LLONG_MIN);
    srv_jw_int(&w, 0);
    srv_jw_uint(&w, 42);
    srv_jw_double(&w, 0.1);
    srv_jw_double(&w, 1e300);
    srv_jw_double(&w, 1.0 / 3.0);
    srv_jw_float(&w, 0.1f);
    srv_jw_bool(&w, true);
    srv_jw_bool(&w, false);
    srv_jw_null(&w);
    srv_jw_arr_end(&w);
    srv_jw_key(&w, "empty_obj");
    srv_jw_obj_begin(&w);
    srv_jw_obj_end(&w);
    srv_jw_key(&w, "empty_arr");
    srv_jw_arr_begin(&w);
    srv_jw_arr_end(&w);
    srv_jw_key(&w, "nested");
    srv_jw_arr_begin(&w);
    srv_jw_arr_begin(&w);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "a");
    srv_jw_int(&w, 1);
    srv_jw_key(&w, "b");
    srv_jw_arr_begin(&w);
    srv_jw_int(&w, 2);
    srv_jw_arr_end(&w);
    srv_jw_obj_end(&w);
    srv_jw_obj_begin(&w);
    srv_jw_obj_end(&w);
    srv_jw_arr_end(&w);
    srv_jw_str(&w, NULL);
    srv_jw_arr_end(&w);
    srv_jw_obj_end(&w);
    char *text = detach(&b);

    cJSON *root = cJSON_Parse(text);
    ck_assert_msg(root != NULL, "not JSON: %s", text);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(root, "quote\"back\\slash")->valuestring,
                     "line\nfeed\ttab\r\b\f\x01\x1f end");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(root, "utf8")->valuestring,
                     "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80");
    cJSON *nums = cJSON_GetObjectItemCaseSensitive(root, "nums");
    ck_assert_int_eq(cJSON_GetArraySize(nums), 10);
    ck_assert_double_eq(cJSON_GetArrayItem(nums, 0)->valuedouble, (double)LLONG_MIN);
    ck_assert_double_eq(cJSON_GetArrayItem(nums, 2)->valuedouble, 42.0);
    ck_assert_double_eq(cJSON_GetArrayItem(nums, 3)->valuedouble, 0.1);
    ck_assert_double_eq(cJSON_GetArrayItem(nums, 4)->valuedouble, 1e300);
    ck_assert_double_eq(cJSON_GetArrayItem(nums, 5)->valuedouble, 1.0 / 3.0);
    ck_assert_float_eq((float)cJSON_GetArrayItem(nums, 6)->valuedouble, 0.1f);
    ck_assert(cJSON_IsTrue(cJSON_GetArrayItem(nums, 7)));
    ck_assert(cJSON_IsFalse(cJSON_GetArrayItem(nums, 8)));
    ck_assert(cJSON_IsNull(cJSON_GetArrayItem(nums, 9)));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "empty_obj")), 0);
    ck_assert(cJSON_IsObject(cJSON_GetObjectItem(root, "empty_obj")));
    ck_assert(cJSON_IsArray(cJSON_GetObjectItem(root, "empty_arr")));
    cJSON *nested = cJSON_GetObjectItem(root, "nested");
    ck_assert_int_eq(cJSON_GetArraySize(nested), 2);
    ck_assert(cJSON_IsNull(cJSON_GetArrayItem(nested, 1)));
    cJSON *inner = cJSON_GetArrayItem(nested, 0);
    ck_assert_int_eq(cJSON_GetArraySize(inner), 2);
    ck_assert_double_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(inner, 0), "a")->valuedouble, 1);
    cJSON_Delete(root);
    free(text);
}
END_TEST

START_TEST(writer_escapes_control_chars_as_u00xx)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_str(&w, "a\x01\x1f\x7f\"\\/\n");
    char *text = detach(&b);
    ck_assert_str_eq(text, "\"a\\u0001\\u001f\x7f\\\"\\\\/\\n\"");
    free(text);
}
END_TEST

START_TEST(writer_replaces_invalid_utf8_so_output_stays_valid)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_arr_begin(&w);
    srv_jw_str(&w, "a\xff"
                   "b");            /* stray byte */
    srv_jw_str(&w, "\xc3");         /* truncated sequence */
    srv_jw_str(&w, "\xc0\xaf");     /* overlong '/' */
    srv_jw_str(&w, "\xed\xa0\x80"); /* UTF-16 surrogate */
    srv_jw_str(&w, "\xe2\x82\xac"); /* valid euro sign */
    srv_jw_arr_end(&w);
    char *text = detach(&b);
    ck_assert_str_eq(text,
                     "[\"a\\ufffdb\",\"\\ufffd\",\"\\ufffd\\ufffd\",\"\\ufffd\\ufffd\\ufffd\","
                     "\"\xe2\x82\xac\"]");
    free(text);
}
END_TEST

START_TEST(writer_nonfinite_numbers_write_null)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_arr_begin(&w);
    srv_jw_float(&w, INFINITY);
    srv_jw_float(&w, -INFINITY);
    srv_jw_float(&w, NAN);
    srv_jw_double(&w, HUGE_VAL);
    srv_jw_double(&w, NAN);
    const float v[4] = {1.0f, -INFINITY, NAN, 0.5f};
    const size_t shape[1] = {4};
    srv_jw_tensor(&w, v, 1, shape);
    srv_jw_arr_end(&w);
    char *text = detach(&b);
    ck_assert_str_eq(text, "[null,null,null,null,null,[1,null,null,0.5]]");
    free(text);
}
END_TEST

START_TEST(writer_precision_applies_to_floats_not_doubles)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 3, false);
    srv_jw_arr_begin(&w);
    srv_jw_float(&w, 3.14159265f);
    srv_jw_double(&w, 3.14159265);
    const float v[2] = {2.0f / 3.0f, 123456.0f};
    const size_t shape[1] = {2};
    srv_jw_tensor(&w, v, 1, shape);
    srv_jw_arr_end(&w);
    char *text = detach(&b);
    ck_assert_str_eq(text, "[3.14,3.14159265,[0.667,1.23e+05]]");
    free(text);
}
END_TEST

START_TEST(writer_cjson_echo_round_trips)
{
    const char *doc = "{\"tokens\": [\"the\", \"q\\\"u\\u0001ote\", \"\\u00e9\"], "
                      "\"n\": [1, -2.5, 1e-7, 12345678901], \"o\": {\"a\": null, \"b\": [true, "
                      "false, {}], \"c\": []}, \"deep\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                      "[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}";
    cJSON *a = cJSON_Parse(doc);
    ck_assert_ptr_nonnull(a);
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_arr_begin(&w);
    srv_jw_cjson(&w, a);
    srv_jw_cjson(&w, cJSON_GetObjectItem(a, "n"));
    srv_jw_arr_end(&w);
    char *text = detach(&b);
    cJSON *back = cJSON_Parse(text);
    ck_assert_msg(back != NULL, "%s", text);
    ck_assert(cJSON_Compare(a, cJSON_GetArrayItem(back, 0), true));
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(a, "n"), cJSON_GetArrayItem(back, 1), true));
    cJSON_Delete(back);
    cJSON_Delete(a);
    free(text);
}
END_TEST

START_TEST(writer_depth_past_limit_fails_the_buffer)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    for (int i = 0; i < SRV_JW_MAX_DEPTH + 5; i++) {
        srv_jw_arr_begin(&w);
    }
    for (int i = 0; i < SRV_JW_MAX_DEPTH + 5; i++) {
        srv_jw_arr_end(&w);
    }
    ck_assert(b.oom);
    size_t len = 7;
    ck_assert_ptr_null(srv_buf_detach(&b, &len));
    ck_assert_uint_eq(len, 0);
}
END_TEST

/* Writes a random tensor of the given shape in one of the two forms, reads
 * it back through srv_json_read_tensor and compares bit for bit. */
static void tensor_round_trip(size_t rank, const size_t *shape, bool base64, int precision)
{
    size_t size = 1;
    for (size_t i = 0; i < rank; i++) {
        size *= shape[i];
    }
    float *v = malloc((size ? size : 1) * sizeof *v);
    for (size_t i = 0; i < size; i++) {
        uint32_t u;
        do {
            u = (uint32_t)rng_next();
            if (i % 3 == 0) { /* also ordinary magnitudes */
                v[i] = (float)((double)(rng_next() >> 11) / 9007199254740992.0 - 0.5);
                u = bits_of(v[i]);
            }
        } while (!isfinite(float_from_bits(u)));
        v[i] = float_from_bits(u);
    }
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, precision, base64);
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "key");
    srv_jw_tensor(&w, v, rank, shape);
    srv_jw_obj_end(&w);
    char *text = detach(&b);
    srv_tensor t;
    srv_err e;
    bool ok = read_key(text, rank, rank, true, SIZE_MAX, &t, &e);
    ck_assert_msg(ok, "%s: %s", e.message, text);
    ck_assert_uint_eq(t.rank, rank);
    for (size_t i = 0; i < rank; i++) {
        ck_assert_uint_eq(t.shape[i], shape[i]);
    }
    ck_assert_uint_eq(t.size, size);
    for (size_t i = 0; i < size; i++) {
        if (precision == 0) {
            ck_assert_msg(bits_of(t.data[i]) == bits_of(v[i]), "element %zu: %a vs %a", i,
                          (double)t.data[i], (double)v[i]);
        } else {
            char ref[32];
            snprintf(ref, sizeof ref, "%.*g", precision, (double)v[i]);
            ck_assert_float_eq(t.data[i], (float)strtod(ref, NULL));
        }
    }
    srv_tensor_free(&t);
    free(text);
    free(v);
}

START_TEST(writer_tensor_lists_round_trip_through_reader)
{
    const size_t s0[1] = {0};
    const size_t s1[1] = {17};
    const size_t s2[2] = {5, 7};
    const size_t s3[3] = {2, 3, 4};
    const size_t s4[4] = {2, 1, 3, 2};
    const size_t s5[2] = {3, 0};
    tensor_round_trip(0, s0, false, 0);
    tensor_round_trip(1, s1, false, 0);
    tensor_round_trip(2, s2, false, 0);
    tensor_round_trip(3, s3, false, 0);
    tensor_round_trip(4, s4, false, 0);
    tensor_round_trip(2, s5, false, 0);
    tensor_round_trip(2, s2, false, 4);
    tensor_round_trip(1, s0, false, 0);
}
END_TEST

START_TEST(writer_tensor_base64_round_trips_through_reader)
{
    const size_t s0[1] = {0};
    const size_t s1[1] = {1};
    const size_t s2[2] = {5, 7};
    const size_t s3[3] = {2, 3, 4};
    const size_t big[2] = {33, 100}; /* more than one encoding chunk */
    tensor_round_trip(0, s0, true, 0);
    tensor_round_trip(1, s1, true, 0);
    tensor_round_trip(2, s2, true, 0);
    tensor_round_trip(3, s3, true, 0);
    tensor_round_trip(2, big, true, 0);
    tensor_round_trip(1, s0, true, 0);
}
END_TEST

START_TEST(writer_tensor_forms_have_expected_text)
{
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const size_t shape[2] = {2, 3};
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_arr_begin(&w);
    srv_jw_tensor(&w, v, 2, shape);
    srv_jw_tensor(&w, v + 5, 0, NULL);
    srv_jw_arr_end(&w);
    char *text = detach(&b);
    ck_assert_str_eq(text, "[[[1,2,3],[4,5,6]],6]");
    free(text);
    srv_jw_init(&w, &b, 0, true);
    srv_jw_tensor(&w, v, 1, shape);
    text = detach(&b);
    ck_assert_str_eq(text, "{\"dtype\":\"float32\",\"shape\":[2],\"data\":\"AACAPwAAAEA=\"}");
    free(text);
}
END_TEST

START_TEST(writer_btensor_writes_nested_booleans)
{
    const uint8_t v[6] = {1, 0, 0, 1, 1, 1};
    const size_t shape[2] = {3, 2};
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, true); /* base64 never applies to booleans */
    srv_jw_obj_begin(&w);
    srv_jw_key(&w, "m");
    srv_jw_btensor(&w, v, 2, shape);
    srv_jw_key(&w, "s");
    srv_jw_btensor(&w, v, 0, NULL);
    srv_jw_obj_end(&w);
    char *text = detach(&b);
    ck_assert_str_eq(text, "{\"m\":[[true,false],[false,true],[true,true]],\"s\":true}");
    free(text);
}
END_TEST

START_TEST(writer_large_tensor_is_valid_json)
{
    enum { N = 300, M = 500 };
    float *v = malloc(sizeof(float) * N * M);
    for (size_t i = 0; i < (size_t)N * M; i++) {
        v[i] = (float)((double)(rng_next() >> 11) / 9007199254740992.0) * (i % 2 ? -1e-3f : 1e3f);
    }
    const size_t shape[2] = {N, M};
    srv_buf b;
    srv_buf_init(&b);
    srv_jw w;
    srv_jw_init(&w, &b, 0, false);
    srv_jw_tensor(&w, v, 2, shape);
    char *text = detach(&b);
    cJSON *root = cJSON_Parse(text);
    ck_assert_ptr_nonnull(root);
    ck_assert_int_eq(cJSON_GetArraySize(root), N);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetArrayItem(root, N - 1)), M);
    float last = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(root, N - 1), M - 1)->valuedouble;
    ck_assert_uint_eq(bits_of(last), bits_of(v[(size_t)N * M - 1]));
    cJSON_Delete(root);
    free(text);
    free(v);
}
END_TEST

/* --------------------------------------------------------- buffer, error */

START_TEST(buf_printf_grows_and_detach_terminates)
{
    srv_buf b;
    srv_buf_init(&b);
    char *empty = srv_buf_detach(&b, NULL);
    ck_assert_ptr_nonnull(empty);
    ck_assert_str_eq(empty, "");
    free(empty);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    srv_buf_printf(&b, "%d:", 42);
    srv_buf_printf(&b, "%s", big);
    srv_buf_append(&b, "yz", 2);
    srv_buf_puts(&b, "!");
    size_t len;
    char *s = srv_buf_detach(&b, &len);
    ck_assert_uint_eq(len, 3 + 999 + 3);
    ck_assert_uint_eq(strlen(s), len);
    ck_assert(strncmp(s, "42:xxx", 6) == 0);
    ck_assert_str_eq(s + len - 3, "yz!");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    free(s);
}
END_TEST

START_TEST(buf_oom_ignores_writes_and_detach_returns_null)
{
    srv_buf b;
    srv_buf_init(&b);
    srv_buf_puts(&b, "abc");
    srv_buf_reserve(&b, SIZE_MAX - 1); /* cannot be had */
    ck_assert(b.oom);
    srv_buf_puts(&b, "more");
    ck_assert_uint_eq(b.len, 3);
    ck_assert_ptr_null(srv_buf_detach(&b, NULL));
    ck_assert_ptr_null(b.data);
    ck_assert(!b.oom);
}
END_TEST

START_TEST(err_set_fills_every_member_and_returns_false)
{
    srv_err e;
    char field[600];
    memset(field, 'f', sizeof field - 1);
    field[sizeof field - 1] = '\0';
    ck_assert(!srv_err_set(&e, 413, SRV_CODE_TOO_LARGE, field, "n=%d", 5));
    ck_assert_int_eq(e.status, 413);
    ck_assert_str_eq(e.code, "payload_too_large");
    ck_assert_str_eq(e.message, "n=5");
    ck_assert_uint_eq(strlen(e.field), sizeof e.field - 1);
    ck_assert(!srv_err_set(&e, 400, SRV_CODE_INVALID, NULL, "x"));
    ck_assert_str_eq(e.field, "");
}
END_TEST

/* ----------------------------------------------------------------- suite */

START_TEST(format_uint_matches_printf)
{
    static const unsigned long long fixed[] = {
        0, 1, 9, 10, 99, 100, 4294967295ull, 4294967296ull, 18446744073709551615ull};
    char got[32], want[32];
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        snprintf(want, sizeof want, "%llu", fixed[i]);
        ck_assert_uint_eq(srv_format_uint(fixed[i], got), strlen(want));
        ck_assert_str_eq(got, want);
    }
    for (int i = 0; i < 10000; i++) {
        unsigned long long v = rng_next() >> (rng_next() % 64);
        snprintf(want, sizeof want, "%llu", v);
        ck_assert_uint_eq(srv_format_uint(v, got), strlen(want));
        ck_assert_str_eq(got, want);
    }
}
END_TEST

START_TEST(format_fixed_matches_printf_away_from_ties)
{
    char got[48], want[48];
    for (int i = 0; i < 20000; i++) {
        int decimals = (int)(rng_next() % 7);
        /* milliseconds from nanoseconds to hours, and a few negatives */
        double v = (double)(rng_next() % 1000000000000ull) / 1e6 * ((i % 10 == 0) ? -1 : 1);
        snprintf(want, sizeof want, "%.*f", decimals, v);
        double scaled = fabs(v) * pow(10, decimals);
        if (fabs(scaled - floor(scaled) - 0.5) < 1e-6) {
            continue; /* ties: printf rounds the binary value, either is right */
        }
        if (strcmp(want, "-0") == 0 || strncmp(want, "-0.", 3) == 0) {
            if (strspn(want + 1, "0.") == strlen(want + 1)) {
                continue; /* "-0.00": printf keeps the sign of a value that rounds to zero */
            }
        }
        ck_assert_uint_eq(srv_format_fixed(v, decimals, false, got), strlen(want));
        ck_assert_msg(strcmp(got, want) == 0, "%.17g at %d: got %s, want %s", v, decimals, got,
                      want);
    }
}
END_TEST

START_TEST(format_fixed_trim_drops_trailing_zeros_and_point)
{
    char out[48];
    srv_format_fixed(0.02015, 6, true, out);
    ck_assert_str_eq(out, "0.02015");
    srv_format_fixed(2.0, 6, true, out);
    ck_assert_str_eq(out, "2");
    srv_format_fixed(0.0000004, 6, true, out);
    ck_assert_str_eq(out, "0");
    srv_format_fixed(1234.5, 3, false, out);
    ck_assert_str_eq(out, "1234.500");
    srv_format_fixed(1e13, 3, false, out); /* beyond the fast range: printf */
    ck_assert_str_eq(out, "10000000000000.000");
}
END_TEST

/* ------------------------------------------------------------ the pool */

START_TEST(pool_tree_in_a_request_reads_as_outside_one)
{
    /* strings with escapes send the parse to cJSON's own parser; both are pooled */
    static const char *const bodies[] = {
        "{\"query\": [[1, -2.5e-3], [3, 4]], \"name\": \"plain\", \"ok\": true, \"n\": null}",
        "{\"text\": \"tab\\there \\u00e9\", \"list\": [1, [2, [3, {\"a\": []}]]]}",
    };
    for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
        cJSON *outside = parse_ok(bodies[b]);
        char *want = cJSON_PrintUnformatted(outside);
        cJSON_Delete(outside);
        ck_assert_uint_eq(srv_json_pool_used(), 0);

        srv_json_pool_begin();
        cJSON *inside = parse_ok(bodies[b]);
        ck_assert_msg(srv_json_pool_used() >= 8 * sizeof(cJSON),
                      "the nodes did not come from the pool");
        char *got = cJSON_PrintUnformatted(inside); /* malloc'd, not pooled */
        cJSON_Delete(inside);
        srv_json_pool_end();
        ck_assert_uint_eq(srv_json_pool_used(), 0);

        ck_assert_str_eq(got, want);
        free(got); /* outlives the request */
        free(want);
    }
}
END_TEST

START_TEST(pool_trees_built_in_a_request_outlive_it)
{
    srv_json_pool_begin();
    cJSON *parsed = parse_ok("{\"a\": 1}");
    cJSON *built = cJSON_CreateObject();
    cJSON_AddNumberToObject(built, "b", 2);
    cJSON_AddStringToObject(built, "c", "three");
    cJSON_Delete(parsed);
    srv_json_pool_end();

    char *text = cJSON_PrintUnformatted(built);
    ck_assert_str_eq(text, "{\"b\":2,\"c\":\"three\"}");
    free(text);
    cJSON_Delete(built);
}
END_TEST

START_TEST(pool_large_request_spans_chunks_and_reads_every_value)
{
    /* 200000 numbers are 200000 nodes, about 13 MB: several chunks */
    const size_t rows = 20000, cols = 10;
    srv_buf b;
    srv_buf_init(&b);
    srv_buf_puts(&b, "{\"key\": [");
    for (size_t i = 0; i < rows; i++) {
        srv_buf_puts(&b, i ? ",[" : "[");
        for (size_t j = 0; j < cols; j++) {
            srv_buf_printf(&b, j ? ",%zu.5" : "%zu.5", (i * cols + j) % 1000);
        }
        srv_buf_puts(&b, "]");
    }
    srv_buf_puts(&b, "]}");
    for (int round = 0; round < 3; round++) {
        srv_json_pool_begin();
        srv_err e;
        memset(&e, 0, sizeof e);
        cJSON *root = srv_json_parse_object(b.data, b.len, &e);
        ck_assert_msg(root != NULL, "%s", e.message);
        ck_assert_uint_ge(srv_json_pool_used(), rows * cols * sizeof(cJSON));
        srv_ptr p;
        srv_ptr_root(&p);
        srv_tensor t;
        ck_assert(srv_json_read_tensor(cJSON_GetObjectItem(root, "key"), &p, "key", 2, 2, false,
                                       rows * cols, &t, &e));
        cJSON_Delete(root);
        srv_json_pool_end();
        ck_assert_uint_eq(t.shape[0], rows);
        ck_assert_uint_eq(t.shape[1], cols);
        for (size_t k = 0; k < rows * cols; k++) {
            ck_assert_float_eq(t.data[k], (float)(k % 1000) + 0.5f);
        }
        srv_tensor_free(&t);
    }
    srv_buf_free(&b);
}
END_TEST

START_TEST(pool_malformed_body_in_a_request_is_the_same_error)
{
    srv_json_pool_begin();
    srv_err e;
    memset(&e, 0, sizeof e);
    ck_assert_ptr_null(srv_json_parse_object("{\"a\": [1, 2,]}", 14, &e));
    ck_assert_int_eq(e.status, 400);
    ck_assert_str_eq(e.code, SRV_CODE_MALFORMED);
    ck_assert_str_eq(e.message, "malformed JSON at byte 12");
    srv_json_pool_end();
}
END_TEST

START_TEST(pool_outside_a_request_is_not_used)
{
    cJSON *root = parse_ok("{\"a\": [1, 2, 3]}");
    ck_assert_uint_eq(srv_json_pool_used(), 0);
    cJSON_Delete(root);
}
END_TEST

START_TEST(pool_delete_frees_trees_outside_it_and_leaves_pooled_ones_to_the_end)
{
    /* outside a request: srv_json_delete must free the tree (LSan reports it otherwise) */
    srv_json_delete(parse_ok("{\"a\": [1, 2, {\"b\": \"c\"}]}"));
    srv_json_delete(NULL);

    srv_json_pool_begin();
    cJSON *pooled = parse_ok("{\"a\": [1, 2, {\"b\": \"c\"}]}");
    cJSON *built = cJSON_CreateObject(); /* malloc'd even inside a request */
    cJSON_AddStringToObject(built, "x", "y");
    const size_t used = srv_json_pool_used();
    srv_json_delete(pooled);
    ck_assert_uint_eq(srv_json_pool_used(), used); /* nothing walked or given back yet */
    srv_json_delete(built);
    srv_json_pool_end();
}
END_TEST

static Suite *json_suite(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("pointers");
    tcase_add_test(tc, ptr_root_is_empty_string);
    tcase_add_test(tc, ptr_key_escapes_tilde_as_0_and_slash_as_1);
    tcase_add_test(tc, ptr_empty_key_gives_lone_slash);
    tcase_add_test(tc, ptr_long_key_truncates_inside_buffer);
    suite_add_tcase(s, tc);

    tc = tcase_create("parse");
    tcase_add_test(tc, parse_empty_body_is_malformed);
    tcase_add_test(tc, parse_errors_report_byte_offset);
    tcase_add_test(tc, parse_trailing_data_is_malformed_at_its_offset);
    tcase_add_test(tc, parse_top_level_non_object_is_invalid_argument);
    tcase_add_test(tc, parse_trailing_whitespace_is_accepted);
    tcase_add_test(tc, parse_reads_only_len_bytes_of_unterminated_body);
    tcase_add_test(tc, parse_numbers_read_exactly_as_strtod_does);
    tcase_add_test(tc, parse_nesting_past_cjson_limit_is_malformed_with_reason);
    suite_add_tcase(s, tc);

    tc = tcase_create("pool");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, pool_tree_in_a_request_reads_as_outside_one);
    tcase_add_test(tc, pool_trees_built_in_a_request_outlive_it);
    tcase_add_test(tc, pool_large_request_spans_chunks_and_reads_every_value);
    tcase_add_test(tc, pool_malformed_body_in_a_request_is_the_same_error);
    tcase_add_test(tc, pool_outside_a_request_is_not_used);
    tcase_add_test(tc, pool_delete_frees_trees_outside_it_and_leaves_pooled_ones_to_the_end);
    suite_add_tcase(s, tc);

    tc = tcase_create("tensor_lists");
    tcase_add_test(tc, tensor_matrix_reads_row_major);
    tcase_add_test(tc, tensor_ragged_row_depth2_names_row_and_counts);
    tcase_add_test(tc, tensor_ragged_row_depth3_uses_full_index);
    tcase_add_test(tc, tensor_ragged_depth4_names_entries);
    tcase_add_test(tc, tensor_string_element_points_at_it);
    tcase_add_test(tc, tensor_scalar_where_row_expected_points_at_it);
    tcase_add_test(tc, tensor_nonfinite_value_points_at_it);
    tcase_add_test(tc, tensor_beyond_float32_range_is_rejected_but_float_max_text_is_not);
    tcase_add_test(tc, tensor_rank_out_of_range_says_expected_and_got);
    tcase_add_test(tc, tensor_rank_range_accepts_each_rank);
    tcase_add_test(tc, tensor_scalar_is_rank0);
    tcase_add_test(tc, tensor_empty_dimension_rejected_when_not_allowed);
    tcase_add_test(tc, tensor_empty_dimension_allowed_pads_rank_with_zeros);
    tcase_add_test(tc, tensor_over_max_elements_is_413);
    tcase_add_test(tc, tensor_missing_item_is_required_error);
    tcase_add_test(tc, tensor_pointer_escapes_member_name);
    suite_add_tcase(s, tc);

    tc = tcase_create("tensor_objects");
    tcase_add_test(tc, tensor_object_decodes_little_endian_floats);
    tcase_add_test(tc, tensor_object_wrong_data_size_names_both_sizes);
    tcase_add_test(tc, tensor_object_unknown_dtype_points_at_dtype);
    tcase_add_test(tc, tensor_object_bad_shape_entry_points_at_it);
    tcase_add_test(tc, tensor_object_huge_declared_shape_is_413_without_allocating);
    tcase_add_test(tc, tensor_object_bad_base64_points_at_data_with_offset);
    tcase_add_test(tc, tensor_object_nan_bits_name_flat_index);
    tcase_add_test(tc, tensor_object_missing_or_unknown_members_are_named);
    tcase_add_test(tc, tensor_object_empty_shape_is_scalar);
    suite_add_tcase(s, tc);

    tc = tcase_create("btensor");
    tcase_add_test(tc, btensor_reads_booleans_and_zero_one);
    tcase_add_test(tc, btensor_other_values_are_rejected_at_their_pointer);
    tcase_add_test(tc, btensor_object_reads_bool_bytes);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_test(tc, opt_absent_or_null_keeps_default);
    tcase_add_test(tc, opt_int_rejects_fraction_and_out_of_range_with_range);
    tcase_add_test(tc, opt_float_checks_type_finiteness_and_range);
    tcase_add_test(tc, opt_bool_and_string_reject_wrong_types);
    tcase_add_test(tc, check_keys_names_unknown_member_and_lists_accepted);
    tcase_add_test(tc, check_keys_rejects_duplicates_and_escapes_pointer);
    tcase_add_test(tc, check_keys_long_accepted_list_is_truncated_safely);
    suite_add_tcase(s, tc);

    tc = tcase_create("base64");
    tcase_add_test(tc, base64_rfc4648_vectors_encode_and_decode);
    tcase_add_test(tc, base64_round_trips_lengths_0_to_10_all_byte_values);
    tcase_add_test(tc, base64_decode_rejects_bad_input_with_offset);
    suite_add_tcase(s, tc);

    tc = tcase_create("format_float");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, format_float_known_values);
    tcase_add_test(tc, format_float_negative_zero_and_denormals);
    tcase_add_test(tc, format_float_double_rounding_case_gets_one_more_digit);
    tcase_add_test(tc, format_float_nonfinite_writes_null);
    tcase_add_test(tc, format_float_random_bits_round_trip_and_are_shortest);
    tcase_add_test(tc, format_float_random_weights_match_reference_text);
    tcase_add_test(tc, format_float_precision_k_matches_printf_g);
    tcase_add_test(tc, format_uint_matches_printf);
    tcase_add_test(tc, format_fixed_matches_printf_away_from_ties);
    tcase_add_test(tc, format_fixed_trim_drops_trailing_zeros_and_point);
    suite_add_tcase(s, tc);

    tc = tcase_create("writer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, writer_output_parses_back_to_same_structure);
    tcase_add_test(tc, writer_escapes_control_chars_as_u00xx);
    tcase_add_test(tc, writer_replaces_invalid_utf8_so_output_stays_valid);
    tcase_add_test(tc, writer_nonfinite_numbers_write_null);
    tcase_add_test(tc, writer_precision_applies_to_floats_not_doubles);
    tcase_add_test(tc, writer_cjson_echo_round_trips);
    tcase_add_test(tc, writer_depth_past_limit_fails_the_buffer);
    tcase_add_test(tc, writer_tensor_lists_round_trip_through_reader);
    tcase_add_test(tc, writer_tensor_base64_round_trips_through_reader);
    tcase_add_test(tc, writer_tensor_forms_have_expected_text);
    tcase_add_test(tc, writer_btensor_writes_nested_booleans);
    tcase_add_test(tc, writer_large_tensor_is_valid_json);
    suite_add_tcase(s, tc);

    tc = tcase_create("buf");
    tcase_add_test(tc, buf_printf_grows_and_detach_terminates);
    tcase_add_test(tc, buf_oom_ignores_writes_and_detach_returns_null);
    tcase_add_test(tc, err_set_fills_every_member_and_returns_false);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    srv_json_pool_install(); /* as the server does: every test runs with the pool's hooks */
    SRunner *sr = srunner_create(json_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
