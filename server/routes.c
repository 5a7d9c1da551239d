/* routes.c - the route table: every endpoint the service answers, in one place. */
#include "pictures.h"
#include "positional.h"
#include "srv.h"

/* Order matters only among patterns that could match the same path: the
 * first match wins, so literal routes go before {name} patterns. */
const srv_route srv_routes[] = {
    {"GET", "/healthz", srv_h_healthz, false, false},
    {"GET", "/readyz", srv_h_readyz, false, false},
    {"GET", "/v1/info", srv_h_info, false, false},
    {"GET", "/openapi.yaml", srv_h_openapi, false, false},
    {"GET", "/metrics", srv_h_metrics, false, false},
    {"POST", "/v1/attention", srv_h_attention, true, true},
    {"POST", "/v1/multihead_attention", srv_h_mha, true, true},
    {"POST", "/v1/transformer/encoder", srv_h_transformer_encoder, true, true},
    {"POST", "/v1/transformer/decoder", srv_h_transformer_decoder, true, true},
    {"POST", "/v1/positional_encoding", srv_h_positional, true, false},
    {"POST", "/v1/render", srv_h_render, true, false},
};

const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];
