/* routes.c - the route table: every endpoint the service answers, in one place. */
#include "assets.h"
#include "models.h"
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
    {"GET", "/", srv_h_explorer, false, false},
    {"GET", "/assets/{name}", srv_h_asset, false, false},
    {"POST", "/v1/attention", srv_h_attention, true, true},
    {"POST", "/v1/multihead_attention", srv_h_mha, true, true},
    {"POST", "/v1/transformer/encoder", srv_h_transformer_encoder, true, true},
    {"POST", "/v1/transformer/decoder", srv_h_transformer_decoder, true, true},
    {"POST", "/v1/positional_encoding", srv_h_positional, true, false},
    {"POST", "/v1/render", srv_h_render, true, false},
    {"GET", "/v1/models", srv_h_models_list, false, false},
    {"GET", "/v1/models/{name}", srv_h_model_get, false, false},
    {"POST", "/v1/models/{name}/attention", srv_h_model_attention, true, true},
    {"GET", "/v2", srv_h_v2_server, false, false},
    {"GET", "/v2/health/live", srv_h_v2_live, false, false},
    {"GET", "/v2/health/ready", srv_h_v2_ready, false, false},
    {"GET", "/v2/models/{name}", srv_h_v2_model, false, false},
    {"GET", "/v2/models/{name}/ready", srv_h_v2_model_ready, false, false},
    {"POST", "/v2/models/{name}/infer", srv_h_v2_infer, true, false},
    {"GET", "/v2/models/{name}/versions/{version}", srv_h_v2_model, false, false},
    {"GET", "/v2/models/{name}/versions/{version}/ready", srv_h_v2_model_ready, false, false},
    {"POST", "/v2/models/{name}/versions/{version}/infer", srv_h_v2_infer, true, false},
};

const size_t srv_n_routes = sizeof srv_routes / sizeof srv_routes[0];
