/* fuzz_models.c - the pretrained-model routes (/v1/models/{name}/attention, KServe v2 infer)
 * through the router with the test models loaded: the first byte picks the model, the
 * protocol and the answer format, the rest is the body. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "models.h"
#include "json.h"
#include "srv.h"

#define MODEL_DIR ATTN_TEST_DATA "/models/"

static srv_app app;
static const char *const names[] = {"bert", "gpt2", "vit", "bart"};
#define N_NAMES (sizeof names / sizeof names[0])

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    srv_json_pool_install(); /* requests parse into the pool, as in the server */
    srv_config_defaults(&app.config);
    /* small limits: the fuzzer looks for crashes, not for ways to use memory */
    app.config.max_elements = 1 << 16;
    app.config.max_body_bytes = 1 << 20;
    app.models =
        srv_models_create("bert=" MODEL_DIR "bert-tiny\ngpt2=" MODEL_DIR "gpt2-tiny\nvit=" MODEL_DIR
                          "vit-tiny\nbart=" MODEL_DIR "bart-tiny");
    char err[1024];
    if (!app.models || !srv_models_start(app.models, err, sizeof err))
        abort();
    const struct timespec tick = {0, 1000 * 1000};
    int st;
    while ((st = srv_models_poll(app.models, err, sizeof err)) == 0)
        nanosleep(&tick, NULL);
    if (st != 1)
        abort(); /* the test models must load */
    app.ready = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const formats[] = {NULL, "text", "svg", "html"};
    if (size == 0)
        return 0;
    const unsigned sel = data[0];
    const bool v2 = (sel / N_NAMES) % 2 == 1;
    char path[64];
    snprintf(path, sizeof path, v2 ? "/v2/models/%s/infer" : "/v1/models/%s/attention",
             names[sel % N_NAMES]);
    srv_request req;
    srv_response res;
    srv_kv headers[1] = {{"Content-Type", "application/json"}};
    srv_kv query[1] = {{"format", v2 ? NULL : formats[(sel / (2 * N_NAMES)) % 4]}};
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = path;
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
