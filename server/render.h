/* render.h - pictures of attention: labelled text matrices and SVG heatmaps, per layer and head. */
#ifndef SRV_RENDER_H
#define SRV_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include "srv.h"

/*
 * What to draw: a stack of [layers][heads][n][m] matrices (weights, or any
 * scores: -inf marks a removed pair) with optional labels. layers and heads
 * are at least 1 (a single matrix is 1 x 1).
 */
typedef struct srv_view {
    const float *data; /* [layers][heads][n][m] */
    size_t layers, heads, n, m;
    const char *const *row_labels; /* [n] UTF-8 (query tokens), or NULL: 0 .. n-1 */
    const char *const *col_labels; /* [m] (key tokens), or NULL: 0 .. m-1 */
    const char *title;             /* e.g. "weights"; NULL: none */
    bool show_layer;               /* name panels "layer l, head h" (else "head h") */
    const char *outer_name;        /* what the first dimension is: NULL = "layer" ("batch", ...) */
    /* The layer and head numbers the panels show (a selection of a model's
     * heads), [layers] and [heads], or NULL: 0, 1, ... */
    const size_t *layer_ids, *head_ids;
    /* Colour scale; vmin >= vmax: from the data (min(0, smallest), largest). */
    float vmin, vmax;
} srv_view;

/* Cells a view holds (saturating), for limits before rendering. */
size_t srv_view_cells(const srv_view *v);

/*
 * Text: per panel a title line, then a matrix with the column labels on top
 * and the row labels on the left, values with two decimals. Labels are cut to
 * 10 characters (UTF-8 aware, ending in "~"). Matrices wider than width
 * characters are wrapped into column blocks; more than max_rows rows or
 * max_cols columns are elided in the middle ("..." with the count). Returns
 * false when out is out of memory.
 */
bool srv_render_text(const srv_view *v, size_t width, size_t max_rows, size_t max_cols,
                     srv_buf *out);

/*
 * SVG 1.1: one heatmap per panel (viridis colours, cells with a <title>
 * tooltip giving row, column and value; removed pairs grey), labels on both
 * axes, a title per panel, and one colour scale with its values. Self-
 * contained (no external fonts or references). Returns false when out is out
 * of memory.
 */
bool srv_render_svg(const srv_view *v, srv_buf *out);

/* Appends s with &, <, >, " and ' escaped for XML/HTML text and attributes. */
void srv_xml_escape(srv_buf *out, const char *s);

#endif /* SRV_RENDER_H */
