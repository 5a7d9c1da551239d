/* fuzz_endpoints.c - every compute route's parse, validate, compute and render, through the
 * router without sockets: the first byte picks the route and the answer format, the rest is
 * the body. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "srv.h"

static srv_app app;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    srv_json_pool_install(); /* requests parse into the pool, as in the server */
    srv_config_defaults(&app.config);
    /* small limits: the fuzzer looks for crashes, not for ways to use memory */
    app.config.max_elements = 1 << 16;
    app.config.max_body_bytes = 1 << 20;
    app.ready = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const paths[] = {
        "/v1/attention",          "/v1/multihead_attention", "/v1/transformer/encoder",
        "/v1/transformer/decoder", "/v1/positional_encoding", "/v1/render",
    };
    static const char *const formats[] = {NULL, "text", "svg", "html"};
    if (size == 0)
        return 0;
    const size_t n_paths = sizeof paths / sizeof paths[0];
    srv_request req;
    srv_response res;
    srv_kv headers[1] = {{"Content-Type", "application/json"}};
    srv_kv query[1] = {{"format", formats[(data[0] / n_paths) % 4]}};
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = paths[data[0] % n_paths];
    req.headers = headers;
    req.n_headers = 1;
    req.query = query;
    req.n_query = query[0].value ? 1 : 0;
    req.body = size > 1 ? (const char *)data + 1 : NULL;
    req.body_len = size - 1;
    srv_response_init(&res);
    srv_dispatch(&app, &req, &res);
    /* every answer is a status the contract names, with a body */
    if (res.status != 200 && res.status != 400 && res.status != 413 && res.status != 503)
        abort();
    if (!res.body || res.body_len == 0)
        abort();
    srv_response_clear(&res);
    return 0;
}
