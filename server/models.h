/* models.h - the pretrained models the server serves (--model NAME=DIR) and the routes that run
 * them. */
#ifndef SRV_MODELS_H
#define SRV_MODELS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "attn_pretrained.h"
#include "srv.h"

/*
 * Models are named on the command line (--model NAME=DIR, repeatable) or in
 * ATTN_MODELS ("a=dir1,b=dir2"), kept in srv_config.models as "NAME=DIR"
 * lines. main() creates the registry before the listener starts and loads
 * the models in a background thread once it listens, so /healthz answers at
 * once while /readyz says 503 (naming the model being loaded) until all are
 * in. A model that fails to load stops the start (exit status 3): a server
 * that is missing a model it was asked to serve is not one to route to.
 * Loaded models are immutable and shared by every request thread.
 */

#define SRV_MODEL_NAME_MAX 64

/* Appends the comma-separated NAME=DIR entries of value to list (size bytes,
 * one "NAME=DIR" per line). NAME is 1..63 of [A-Za-z0-9._-], unique; DIR is
 * not empty. On a bad entry writes one line naming `flag` into err. */
bool srv_model_specs_add(char *list, size_t size, const char *flag, const char *value, char *err,
                         size_t err_len);

/* Creates the registry for specs (srv_config.models; "" = no models).
 * NULL when out of memory. */
srv_models *srv_models_create(const char *specs);

/* Waits for the loader (srv_models_start) and frees every model. NULL is a no-op. */
void srv_models_free(srv_models *ms);

/* Number of models named (0 for NULL). */
size_t srv_models_count(const srv_models *ms);

/* Starts loading every model, in order, in a background thread.
 * False (with err) when the thread cannot be started. */
bool srv_models_start(srv_models *ms, char *err, size_t err_len);

/* 1 when every model is loaded, 0 while loading, -1 when one failed (err
 * gets "model 'NAME' (DIR): <reason naming the file>"). */
int srv_models_poll(srv_models *ms, char *err, size_t err_len);

/* The model being loaded now ("" when none) into name. */
void srv_models_loading(srv_models *ms, char *name, size_t len);

/* The loaded model called name. NULL when there is none: *loading (if not
 * NULL) then tells a model still loading from an unknown name. */
const attn_pretrained *srv_models_get(srv_models *ms, const char *name, bool *loading);

/* Comma-separated names of every model, for messages ("none" when empty). */
void srv_models_names(const srv_models *ms, char *out, size_t len);

/* Adds "models": [{name, architecture, status}] to root (for /v1/info);
 * false when out of memory. ms may be NULL (empty list). */
bool srv_models_info_add(srv_models *ms, cJSON *root);

/* Name of model i (NULL past the end). */
const char *srv_models_name(const srv_models *ms, size_t i);

/* --------------------------------------------------------------- routes */

/* GET /v1/models, GET /v1/models/{name}, POST /v1/models/{name}/attention (h_models.c). */
void srv_h_models_list(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_model_get(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_model_attention(srv_app *app, const srv_request *req, srv_response *res);

/* Open Inference Protocol (KServe v2) (h_kserve.c): GET /v2, /v2/health/live,
 * /v2/health/ready, /v2/models/{name}, /v2/models/{name}/ready,
 * POST /v2/models/{name}/infer. */
void srv_h_v2_server(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_v2_live(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_v2_ready(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_v2_model(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_v2_model_ready(srv_app *app, const srv_request *req, srv_response *res);
void srv_h_v2_infer(srv_app *app, const srv_request *req, srv_response *res);

#endif /* SRV_MODELS_H */
