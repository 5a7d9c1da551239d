/* routes.c - the route table: every endpoint the service answers, in one place. */
#include "positional.h"
#include "srv.h"

/* Order matters only among patterns that could match the same path: the
 * first match wins, so literal routes go before {name} patterns. */
const srv_route srv_routes[] = {
    {"GET", "/healthz", srv_h_healthz, false},
    {"GET", "/readyz", srv_h_readyz, false},
    {"GET", "/v1/info", srv_h_info, false},
    {"GET", "/openapi.yaml", srv_h_openapi, false},
    {"POST", "/v1/attention", srv_h_attention, true},
    {"POST", "/v1/multihead_attention", srv_h_mha, true},
    {"POST", "/v1/transformer/encoder", srv_h_transformer_encoder, true},
    {"POST", "/v1/transformer/decoder", srv_h_transformer_decoder, true},
    {"POST", "/v1/positional_encoding", srv_h_positional, true},
};

const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];
