/* render.c - pictures of attention: labelled text matrices and SVG heatmaps, per layer and head. */
#include "render.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define LABEL_MAX 10 /* characters of a label before it is cut */

size_t srv_view_cells(const srv_view *v)
{
    size_t t = v->layers;
    const size_t f[3] = {v->heads, v->n, v->m};
    for (int i = 0; i < 3; i++) {
        if (f[i] && t > SIZE_MAX / f[i])
            return SIZE_MAX;
        t *= f[i];
    }
    return t;
}

static const float *panel(const srv_view *v, size_t l, size_t h)
{
    return v->data + (l * v->heads + h) * v->n * v->m;
}

/* ------------------------------------------------------------- labels */

/* Characters (code points) of a UTF-8 string. */
static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Label i (or its index) cut to LABEL_MAX characters, into buf. Returns its width. */
static size_t label(const char *const *labels, size_t i, char *buf, size_t len)
{
    if (!labels || !labels[i]) {
        snprintf(buf, len, "%zu", i);
        return strlen(buf);
    }
    const char *s = labels[i];
    size_t chars = 0, o = 0;
    const size_t total = utf8_len(s);
    for (size_t b = 0; s[b] && o + 5 < len; b++) {
        const bool lead = ((unsigned char)s[b] & 0xC0) != 0x80;
        if (lead) {
            if (total > LABEL_MAX && chars == LABEL_MAX - 1)
                break;
            chars++;
        }
        /* control characters would break the layout */
        buf[o++] = (unsigned char)s[b] < 0x20 ? ' ' : s[b];
    }
    if (total > LABEL_MAX) {
        buf[o++] = '~';
        chars++;
    }
    buf[o] = '\0';
    return chars;
}

/* Appends s left-padded (right-aligned) or right-padded to width characters. */
static void put_aligned(srv_buf *b, const char *s, size_t chars, size_t width, bool right)
{
    size_t pad = width > chars ? width - chars : 0;
    if (right)
        for (size_t i = 0; i < pad; i++)
            srv_buf_append(b, " ", 1);
    srv_buf_puts(b, s);
    if (!right)
        for (size_t i = 0; i < pad; i++)
            srv_buf_append(b, " ", 1);
}

static void fmt_value(float x, char *buf, size_t len)
{
    if (isnan(x))
        snprintf(buf, len, "nan");
    else if (isinf(x))
        snprintf(buf, len, x < 0 ? "-inf" : "inf");
    else
        snprintf(buf, len, "%.2f", fabsf(x) < 0.005f ? 0.0f : (double)x);
}

/* Indices shown of count, with SIZE_MAX standing for the elided middle. */
static size_t shown(size_t count, size_t max, size_t *idx)
{
    size_t k = 0;
    if (max < 2 || count <= max) {
        for (size_t i = 0; i < count; i++)
            idx[k++] = i;
        return k;
    }
    const size_t head = max / 2, tail = max - head;
    for (size_t i = 0; i < head; i++)
        idx[k++] = i;
    idx[k++] = SIZE_MAX;
    for (size_t i = count - tail; i < count; i++)
        idx[k++] = i;
    return k;
}

/* The numbers panel (l, h) shows: the selection's, else its indices. */
static size_t layer_no(const srv_view *v, size_t l)
{
    return v->layer_ids ? v->layer_ids[l] : l;
}

static size_t head_no(const srv_view *v, size_t h)
{
    return v->head_ids ? v->head_ids[h] : h;
}

static void panel_title(const srv_view *v, size_t l, size_t h, srv_buf *b)
{
    if (v->title)
        srv_buf_printf(b, "%s: ", v->title);
    if (v->show_layer)
        srv_buf_printf(b, "%s %zu, head %zu", v->outer_name ? v->outer_name : "layer",
                       layer_no(v, l), head_no(v, h));
    else
        srv_buf_printf(b, "head %zu", head_no(v, h));
}

bool srv_render_text(const srv_view *v, size_t width, size_t max_rows, size_t max_cols,
                     srv_buf *out)
{
    char lab[64], num[32];
    size_t rows_idx[1024], cols_idx[1024];
    /* 0 means "all", within what the index arrays hold */
    if (max_rows == 0 || max_rows > 1000)
        max_rows = 1000;
    if (max_cols == 0 || max_cols > 1000)
        max_cols = 1000;
    const size_t nr = shown(v->n, max_rows, rows_idx);
    const size_t nc = shown(v->m, max_cols, cols_idx);

    /* widths: row labels on the left, one width for every value column */
    size_t lw = 1, cw = 5;
    for (size_t r = 0; r < nr; r++)
        if (rows_idx[r] != SIZE_MAX) {
            size_t w = label(v->row_labels, rows_idx[r], lab, sizeof lab);
            lw = w > lw ? w : lw;
        }
    for (size_t c = 0; c < nc; c++)
        if (cols_idx[c] != SIZE_MAX) {
            size_t w = label(v->col_labels, cols_idx[c], lab, sizeof lab);
            cw = w > cw ? w : cw;
        }
    const size_t per_block = width > lw + cw + 2 ? (width - lw - 1) / (cw + 1) : 1;

    for (size_t l = 0; l < v->layers; l++)
        for (size_t h = 0; h < v->heads; h++) {
            const float *w = panel(v, l, h);
            if (l || h)
                srv_buf_puts(out, "\n");
            panel_title(v, l, h, out);
            srv_buf_printf(out, " [%zu x %zu]\n", v->n, v->m);
            for (size_t c0 = 0; c0 < nc; c0 += per_block) {
                const size_t c1 = c0 + per_block < nc ? c0 + per_block : nc;
                if (nc > per_block)
                    srv_buf_printf(out, "%s(columns %zu..%zu)\n", c0 ? "\n" : "",
                                   cols_idx[c0] == SIZE_MAX ? cols_idx[c0 + 1] : cols_idx[c0],
                                   cols_idx[c1 - 1] == SIZE_MAX ? cols_idx[c1 - 2]
                                                                : cols_idx[c1 - 1]);
                put_aligned(out, "", 0, lw, true);
                for (size_t c = c0; c < c1; c++) {
                    srv_buf_puts(out, " ");
                    if (cols_idx[c] == SIZE_MAX) {
                        put_aligned(out, "...", 3, cw, true);
                        continue;
                    }
                    size_t cl = label(v->col_labels, cols_idx[c], lab, sizeof lab);
                    put_aligned(out, lab, cl, cw, true);
                }
                srv_buf_puts(out, "\n");
                for (size_t r = 0; r < nr; r++) {
                    if (rows_idx[r] == SIZE_MAX) {
                        srv_buf_printf(out, "... (%zu rows)\n", v->n - (nr - 1));
                        continue;
                    }
                    size_t rl = label(v->row_labels, rows_idx[r], lab, sizeof lab);
                    put_aligned(out, lab, rl, lw, false);
                    for (size_t c = c0; c < c1; c++) {
                        srv_buf_puts(out, " ");
                        if (cols_idx[c] == SIZE_MAX) {
                            put_aligned(out, "...", 3, cw, true);
                            continue;
                        }
                        fmt_value(w[rows_idx[r] * v->m + cols_idx[c]], num, sizeof num);
                        put_aligned(out, num, strlen(num), cw, true);
                    }
                    srv_buf_puts(out, "\n");
                }
            }
        }
    if (nc < v->m || nr < v->n)
        srv_buf_printf(out, "\n(%zu x %zu shown of %zu x %zu; ask for JSON for every value)\n",
                       nr - (nr < v->n), nc - (nc < v->m), v->n, v->m);
    return !out->oom;
}

/* ------------------------------------------------------------- SVG */

void srv_xml_escape(srv_buf *out, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            srv_buf_puts(out, "&amp;");
            break;
        case '<':
            srv_buf_puts(out, "&lt;");
            break;
        case '>':
            srv_buf_puts(out, "&gt;");
            break;
        case '"':
            srv_buf_puts(out, "&quot;");
            break;
        case '\'':
            srv_buf_puts(out, "&#39;");
            break;
        default:
            /* XML 1.0 forbids most control characters */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                srv_buf_puts(out, " ");
            else
                srv_buf_append(out, s, 1);
        }
    }
}

/* Viridis at nine stops (matplotlib's), interpolated linearly. */
static void viridis(float t, char *hex)
{
    static const unsigned char stops[9][3] = {
        {0x44, 0x01, 0x54}, {0x47, 0x2d, 0x7b}, {0x3b, 0x52, 0x8b},
        {0x2c, 0x72, 0x8e}, {0x21, 0x91, 0x8c}, {0x28, 0xae, 0x80},
        {0x5e, 0xc9, 0x62}, {0xad, 0xdc, 0x30}, {0xfd, 0xe7, 0x25},
    };
    if (!(t > 0))
        t = 0;
    if (t > 1)
        t = 1;
    const float x = t * 8;
    int i = (int)x;
    if (i > 7)
        i = 7;
    const float f = x - (float)i;
    int c[3];
    for (int k = 0; k < 3; k++)
        c[k] = (int)lroundf((float)stops[i][k] + f * ((float)stops[i + 1][k] - stops[i][k]));
    snprintf(hex, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* The colour range of the view. */
static void range(const srv_view *v, float *lo, float *hi)
{
    if (v->vmin < v->vmax) {
        *lo = v->vmin;
        *hi = v->vmax;
        return;
    }
    float a = 0, b = -INFINITY;
    const size_t cells = srv_view_cells(v);
    for (size_t i = 0; i < cells; i++) {
        const float x = v->data[i];
        if (!isfinite(x))
            continue;
        a = x < a ? x : a;
        b = x > b ? x : b;
    }
    if (!(b > a))
        b = a + 1;
    *lo = a;
    *hi = b;
}

/* Every k-th label so that labels do not overlap at this cell size. */
static size_t label_step(size_t count, float cell, float font)
{
    size_t step = 1;
    while (cell * (float)step < font && step < count)
        step++;
    return step;
}

bool srv_render_svg(const srv_view *v, srv_buf *out)
{
    char lab[64], col[8], num[32];
    float lo, hi;
    range(v, &lo, &hi);

    const size_t big = v->n > v->m ? v->n : v->m;
    float cell = big ? floorf(360.0f / (float)big) : 24;
    cell = cell > 28 ? 28 : cell < 3 ? 3 : cell;
    const float font = 11;
    size_t max_rl = 1, max_cl = 1;
    for (size_t i = 0; i < v->n; i++) {
        size_t w = label(v->row_labels, i, lab, sizeof lab);
        max_rl = w > max_rl ? w : max_rl;
    }
    for (size_t j = 0; j < v->m; j++) {
        size_t w = label(v->col_labels, j, lab, sizeof lab);
        max_cl = w > max_cl ? w : max_cl;
    }
    const float left = 8 + (float)max_rl * font * 0.62f, top = 26 + (float)max_cl * font * 0.62f;
    const float pw = left + (float)v->m * cell + 16, ph = top + (float)v->n * cell + 16;
    const size_t per_row = v->heads < 4 ? v->heads : 4;
    const size_t rows_per_layer = (v->heads + per_row - 1) / per_row;
    const size_t grid_rows = rows_per_layer * v->layers;
    const float head_h = v->title ? 28 : 8, scale_h = 56;
    const float W = (float)per_row * pw + 16 > 380 ? (float)per_row * pw + 16 : 380;
    const float H = head_h + (float)grid_rows * ph + scale_h;
    const size_t rstep = label_step(v->n, cell, font), cstep = label_step(v->m, cell, font);

    srv_buf_printf(out,
                   "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
                   "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, "
                   "Verdana, sans-serif\" font-size=\"%.0f\">\n",
                   W, H, W, H, font);
    srv_buf_puts(out, "<defs><linearGradient id=\"scale\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">");
    for (int s = 0; s <= 8; s++) {
        viridis((float)s / 8, col);
        srv_buf_printf(out, "<stop offset=\"%.3f\" stop-color=\"%s\"/>", s / 8.0, col);
    }
    srv_buf_puts(out, "</linearGradient></defs>\n");
    srv_buf_printf(out, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", W, H);
    if (v->title) {
        srv_buf_puts(out, "<text x=\"8\" y=\"19\" font-size=\"14\" font-weight=\"bold\">");
        srv_xml_escape(out, v->title);
        srv_buf_printf(out, " [%zu x %zu]</text>\n", v->n, v->m);
    }

    for (size_t l = 0; l < v->layers; l++)
        for (size_t h = 0; h < v->heads; h++) {
            const float *w = panel(v, l, h);
            const float x0 = 8 + (float)(h % per_row) * pw;
            const float y0 = head_h + (float)(l * rows_per_layer + h / per_row) * ph;
            srv_buf_printf(out,
                           "<g class=\"head\" data-layer=\"%zu\" data-head=\"%zu\" "
                           "shape-rendering=\"crispEdges\">\n",
                           l, h);
            srv_buf_printf(out, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">", x0 + left,
                           y0 + 14);
            if (v->show_layer)
                srv_buf_printf(out, "%s %zu, head %zu", v->outer_name ? v->outer_name : "layer",
                               layer_no(v, l), head_no(v, h));
            else
                srv_buf_printf(out, "head %zu", head_no(v, h));
            srv_buf_puts(out, "</text>\n");
            for (size_t i = 0; i < v->n; i += rstep) { /* row labels, right-aligned */
                label(v->row_labels, i, lab, sizeof lab);
                srv_buf_printf(out,
                               "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                               "dominant-baseline=\"middle\">",
                               x0 + left - 4, y0 + top + ((float)i + 0.5f) * cell);
                srv_xml_escape(out, lab);
                srv_buf_puts(out, "</text>\n");
            }
            for (size_t j = 0; j < v->m; j += cstep) { /* column labels, vertical */
                label(v->col_labels, j, lab, sizeof lab);
                const float cx = x0 + left + ((float)j + 0.5f) * cell, cy = y0 + top - 4;
                srv_buf_printf(out,
                               "<text x=\"%.1f\" y=\"%.1f\" transform=\"rotate(-90 %.1f %.1f)\" "
                               "dominant-baseline=\"middle\">",
                               cx, cy, cx, cy);
                srv_xml_escape(out, lab);
                srv_buf_puts(out, "</text>\n");
            }
            for (size_t i = 0; i < v->n; i++)
                for (size_t j = 0; j < v->m; j++) {
                    const float x = w[i * v->m + j];
                    if (isfinite(x))
                        viridis((x - lo) / (hi - lo), col);
                    else
                        strcpy(col, "#d9d9d9");
                    fmt_value(x, num, sizeof num);
                    srv_buf_printf(out,
                                   "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                                   "fill=\"%s\"><title>",
                                   x0 + left + (float)j * cell, y0 + top + (float)i * cell, cell,
                                   cell, col);
                    char rl[64], cl[64];
                    label(v->row_labels, i, rl, sizeof rl);
                    label(v->col_labels, j, cl, sizeof cl);
                    srv_xml_escape(out, rl);
                    srv_buf_puts(out, " \xe2\x86\x92 ");
                    srv_xml_escape(out, cl);
                    srv_buf_printf(out, ": %.4g</title></rect>\n", (double)x);
                }
            srv_buf_puts(out, "</g>\n");
        }

    /* the colour scale with its values */
    const float sy = head_h + (float)grid_rows * ph + 8;
    srv_buf_printf(out,
                   "<g class=\"scale\"><rect x=\"8\" y=\"%.1f\" width=\"200\" height=\"12\" "
                   "fill=\"url(#scale)\" stroke=\"#888888\" stroke-width=\"0.5\"/>\n",
                   sy);
    for (int t = 0; t <= 4; t++) {
        const double val = lo + (hi - lo) * t / 4.0;
        const double tx = 8 + 200.0 * t / 4.0;
        srv_buf_printf(out,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444444\"/>"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n",
                       tx, sy + 12, tx, sy + 16, tx, sy + 28, val);
    }
    srv_buf_printf(out, "<text x=\"216\" y=\"%.1f\" dominant-baseline=\"middle\">%s</text></g>\n",
                   sy + 6, "value (grey: removed)");
    srv_buf_puts(out, "</svg>\n");
    return !out->oom;
}
