/* test_render.c - text and SVG renderings: layout, labels, elision, and SVG that xmllint and
 * rsvg-convert accept. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "render.h"

static char *render_text(const srv_view *v, size_t width, size_t max_rows, size_t max_cols)
{
    srv_buf b;
    srv_buf_init(&b);
    ck_assert(srv_render_text(v, width, max_rows, max_cols, &b));
    size_t len;
    return srv_buf_detach(&b, &len);
}

static char *render_svg(const srv_view *v)
{
    srv_buf b;
    srv_buf_init(&b);
    ck_assert(srv_render_svg(v, &b));
    size_t len;
    return srv_buf_detach(&b, &len);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

START_TEST(text_small_matrix_is_labelled_with_two_decimals)
{
    static const float w[2 * 2 * 3] = {1, 0, 0, 0.25f, 0.75f, 0, 0.5f, 0.5f, 0, 0.123f, 0.877f, 0};
    static const char *const rows[] = {"the", "cat"}, *const cols[] = {"the", "cat", "sat"};
    srv_view v = {.data = w,
                  .layers = 1,
                  .heads = 2,
                  .n = 2,
                  .m = 3,
                  .row_labels = rows,
                  .col_labels = cols,
                  .title = "weights"};
    char *t = render_text(&v, 100, 0, 0);
    const char *want = "weights: head 0 [2 x 3]\n"
                       "      the   cat   sat\n"
                       "the  1.00  0.00  0.00\n"
                       "cat  0.25  0.75  0.00\n"
                       "\n"
                       "weights: head 1 [2 x 3]\n"
                       "      the   cat   sat\n"
                       "the  0.50  0.50  0.00\n"
                       "cat  0.12  0.88  0.00\n";
    ck_assert_msg(strcmp(t, want) == 0, "got:\n%s\nwant:\n%s", t, want);
    free(t);
}
END_TEST

START_TEST(text_without_labels_uses_indices_and_shows_masked_pairs)
{
    static const float w[4] = {-INFINITY, 1.5f, -0.001f, -2.25f};
    srv_view v = {.data = w, .layers = 1, .heads = 1, .n = 2, .m = 2, .show_layer = true};
    char *t = render_text(&v, 80, 0, 0);
    ck_assert_msg(strstr(t, "layer 0, head 0 [2 x 2]\n") == t, "%s", t);
    ck_assert_msg(strstr(t, "0  -inf  1.50\n") != NULL, "%s", t);
    ck_assert_msg(strstr(t, "1  0.00 -2.25\n") != NULL, "%s", t); /* no "-0.00" */
    free(t);
}
END_TEST

START_TEST(text_long_and_utf8_labels_are_cut_by_characters)
{
    static const float w[2] = {0.5f, 0.5f};
    static const char *const rows[] = {"Unbelievably"};
    static const char *const cols[] = {
        "\xc3\xa9t\xc3\xa9\xc3\xa9t\xc3\xa9\xc3\xa9t\xc3\xa9\xc3\xa9t\xc3\xa9", "\xe7\x8c\xab"};
    srv_view v = {
        .data = w, .layers = 1, .heads = 1, .n = 1, .m = 2, .row_labels = rows, .col_labels = cols};
    char *t = render_text(&v, 80, 0, 0);
    ck_assert_msg(strstr(t, "Unbelieva~") != NULL, "%s", t);
    /* 12 characters (24 bytes) cut to 9 + "~", never inside a character */
    ck_assert_msg(strstr(t, "\xc3\xa9t\xc3\xa9\xc3\xa9t\xc3\xa9\xc3\xa9t\xc3\xa9~") != NULL, "%s",
                  t);
    ck_assert_msg(strstr(t, "\xe7\x8c\xab") != NULL, "%s", t);
    free(t);
}
END_TEST

START_TEST(text_wide_matrix_wraps_into_column_blocks)
{
    enum { M = 30 };
    float w[M];
    for (int j = 0; j < M; j++)
        w[j] = (float)j / 100;
    srv_view v = {.data = w, .layers = 1, .heads = 1, .n = 1, .m = M};
    char *t = render_text(&v, 40, 0, 0);
    ck_assert_msg(count(t, "(columns ") >= 4, "%s", t);
    ck_assert_msg(strstr(t, "(columns 0..5)") != NULL, "%s", t);
    /* every line fits the width */
    for (char *line = t, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1)
        ck_assert_msg(nl - line <= 40, "line too long: %.*s", (int)(nl - line), line);
    ck_assert_msg(strstr(t, "0.29") != NULL, "%s", t);
    free(t);
}
END_TEST

START_TEST(text_many_rows_and_columns_are_elided_in_the_middle)
{
    enum { N = 100, M = 90 };
    float *w = calloc(N * M, sizeof *w);
    w[50 * M + 45] = 0.99f; /* in the elided middle */
    w[99 * M + 89] = 0.77f; /* last row, last column: shown */
    srv_view v = {.data = w, .layers = 1, .heads = 1, .n = N, .m = M};
    char *t = render_text(&v, 10000, 10, 8);
    ck_assert_msg(strstr(t, "... (90 rows)") != NULL, "%s", t);
    ck_assert_msg(strstr(t, "0.99") == NULL, "%s", t);
    ck_assert_msg(strstr(t, "0.77") != NULL, "%s", t);
    ck_assert_msg(strstr(t, "(10 x 8 shown of 100 x 90") != NULL, "%s", t);
    free(t);
    free(w);
}
END_TEST

/* Writes s to a temporary file and runs a command on it; returns the exit status. */
static int run_on_file(const char *s, const char *cmd_fmt)
{
    char path[] = "/tmp/attn-render-XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    size_t len = strlen(s);
    ck_assert_int_eq(write(fd, s, len), (ssize_t)len);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, cmd_fmt, path, path);
    int st = system(cmd);
    unlink(path);
    char png[600];
    snprintf(png, sizeof png, "%s.png", path);
    unlink(png);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(svg_has_one_heatmap_per_head_labels_scale_and_escaping)
{
    static const float w[2 * 3 * 2 * 2] = {1, 0, 0.5f, 0.5f, 0.2f, 0.8f, 0.9f, 0.1f,
                                           0, 1, 1,    0,    0.3f, 0.7f, 0.6f, 0.4f,
                                           1, 0, 0,    1,    0.5f, 0.5f, 1,    0};
    static const char *const rows[] = {"<a>", "b&c"}, *const cols[] = {"\"x\"", "y'"};
    srv_view v = {.data = w,
                  .layers = 2,
                  .heads = 3,
                  .n = 2,
                  .m = 2,
                  .row_labels = rows,
                  .col_labels = cols,
                  .title = "attentions",
                  .show_layer = true};
    char *s = render_svg(&v);
    ck_assert_int_eq(count(s, "<g class=\"head\""), 6);
    ck_assert_int_eq(count(s, "<rect x="), 6 * 4 + 1 /* the scale */);
    ck_assert_msg(strstr(s, "layer 1, head 2") != NULL, "no panel title");
    ck_assert_msg(strstr(s, "&lt;a&gt;") != NULL && strstr(s, "b&amp;c") != NULL &&
                      strstr(s, "&quot;x&quot;") != NULL && strstr(s, "y&#39;") != NULL,
                  "labels not escaped");
    ck_assert_msg(strstr(s, "<a>") == NULL, "raw label in the SVG");
    ck_assert_msg(strstr(s, "linearGradient") != NULL && strstr(s, ">0.5<") != NULL,
                  "no colour scale with values");
    ck_assert_msg(strstr(s, "<title>&lt;a&gt; \xe2\x86\x92 &quot;x&quot;: 1</title>") != NULL,
                  "no tooltip");
    ck_assert_int_eq(run_on_file(s, "xmllint --noout %s"), 0);
    ck_assert_int_eq(run_on_file(s, "rsvg-convert -o %s.png %s"), 0);
    free(s);
}
END_TEST

START_TEST(svg_of_scores_with_removed_pairs_and_a_long_sequence_is_valid)
{
    enum { N = 150 };
    float *w = malloc(N * N * sizeof *w);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            w[i * N + j] = j > i ? -INFINITY : (float)(i - j) * -0.1f;
    srv_view v = {.data = w, .layers = 1, .heads = 1, .n = N, .m = N, .title = "scores"};
    char *s = render_svg(&v);
    ck_assert_msg(strstr(s, "#d9d9d9") != NULL, "removed pairs are not grey");
    ck_assert_msg(strstr(s, ">-14.9<") != NULL, "the scale does not start at the minimum");
    ck_assert_int_eq(run_on_file(s, "xmllint --noout %s"), 0);
    ck_assert_int_eq(run_on_file(s, "rsvg-convert -o %s.png %s"), 0);
    free(s);
    free(w);
}
END_TEST

START_TEST(view_cells_saturates)
{
    srv_view v = {.layers = (size_t)1 << 40, .heads = (size_t)1 << 40, .n = 2, .m = 2};
    ck_assert_uint_eq(srv_view_cells(&v), SIZE_MAX);
    srv_view small = {.layers = 2, .heads = 3, .n = 4, .m = 5};
    ck_assert_uint_eq(srv_view_cells(&small), 120);
}
END_TEST

static Suite *render_suite(void)
{
    Suite *s = suite_create("render");
    TCase *t = tcase_create("text");
    tcase_add_test(t, text_small_matrix_is_labelled_with_two_decimals);
    tcase_add_test(t, text_without_labels_uses_indices_and_shows_masked_pairs);
    tcase_add_test(t, text_long_and_utf8_labels_are_cut_by_characters);
    tcase_add_test(t, text_wide_matrix_wraps_into_column_blocks);
    tcase_add_test(t, text_many_rows_and_columns_are_elided_in_the_middle);
    suite_add_tcase(s, t);
    TCase *g = tcase_create("svg");
    tcase_set_timeout(g, 60);
    tcase_add_test(g, svg_has_one_heatmap_per_head_labels_scale_and_escaping);
    tcase_add_test(g, svg_of_scores_with_removed_pairs_and_a_long_sequence_is_valid);
    tcase_add_test(g, view_cells_saturates);
    suite_add_tcase(s, g);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(render_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
