/* pictures.h - answers as pictures: format negotiation, JSON answers turned into text, SVG or HTML. */
#ifndef SRV_PICTURES_H
#define SRV_PICTURES_H

#include <stdbool.h>

#include "srv.h"

typedef enum srv_format {
    SRV_FORMAT_JSON = 0, /* application/json */
    SRV_FORMAT_TEXT,     /* text/plain: labelled matrices */
    SRV_FORMAT_SVG,      /* image/svg+xml: heatmaps */
    SRV_FORMAT_HTML,     /* text/html: one self-contained page */
} srv_format;

/*
 * The answer format a request asks for: ?format=json|text|svg|html wins,
 * then the Accept header (highest q among application/json, text/plain,
 * image/svg+xml, text/html; ties go to the first listed; wildcards and other
 * types mean def). An unknown ?format= value is a 400 (field "").
 */
bool srv_format_negotiate(const srv_request *req, srv_format def, srv_format *out, srv_err *e);

/* MIME type of a format. */
const char *srv_format_mime(srv_format f);

/*
 * Replaces a 200 JSON answer of a compute route by its picture: every
 * attention stack in it (attentions, self_attentions, cross_attentions,
 * encoder/decoder attentions, weights, weights_avg, scores, pattern; nested
 * lists, base64 tensor objects or sparsify triplets) with the tokens as
 * labels. SVG draws one stack (?view=<member> picks it; default the first).
 * An answer without any stack becomes a 400 saying what to return; one too
 * large to draw a 413. Other answers are left alone.
 */
void srv_pictures_convert(const srv_request *req, srv_format f, srv_response *res);

/* POST /v1/render: {"weights": [n][m] | [H][n][m] | [L][H][n][m], "tokens", "key_tokens",
 * "title"} drawn as SVG (default), text or HTML. */
void srv_h_render(srv_app *app, const srv_request *req, srv_response *res);

#endif /* SRV_PICTURES_H */
