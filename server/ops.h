/* ops.h - operations: request metrics (Prometheus text), the computation limiter, the access log. */
#ifndef SRV_OPS_H
#define SRV_OPS_H

#include <stdbool.h>
#include <stddef.h>

#include "srv.h"

/* ------------------------------------------------------------- metrics */

/* Counters for n_routes routes (plus one for requests no route matched).
 * Returns NULL when out of memory. */
srv_metrics *srv_metrics_create(size_t n_routes);
void srv_metrics_free(srv_metrics *m);

/*
 * One answered request: route index (-1: none matched), status, total
 * milliseconds, bytes of the request body and of the answer, and the error
 * code of a refusal (NULL for a success). Thread-safe; m may be NULL.
 */
void srv_metrics_observe(srv_metrics *m, int route, int status, double total_ms,
                         size_t bytes_in, size_t bytes_out, const char *error_code);

/* Time a computation waited for a slot. Thread-safe; m may be NULL. */
void srv_metrics_queue_wait(srv_metrics *m, double wait_ms);

/* Renders every metric in Prometheus text format (version 0.0.4) into out. */
void srv_metrics_render(const srv_metrics *m, const srv_app *app, srv_buf *out);

/* Requests in flight, as the transport counts them (set once by main). */
void srv_metrics_set_in_flight_source(srv_metrics *m, unsigned (*fn)(void *), void *ctx);

/* ------------------------------------------------------------- limiter */

/* Up to slots computations at once. Returns NULL when out of memory. */
srv_limiter *srv_limiter_create(unsigned slots);
void srv_limiter_free(srv_limiter *l);

/* Waits up to timeout_ms for a slot; returns false (no slot taken) on
 * timeout. *waited_ms receives the time spent waiting. l may be NULL (always
 * true at once). */
bool srv_limiter_acquire(srv_limiter *l, unsigned timeout_ms, double *waited_ms);
void srv_limiter_release(srv_limiter *l);

/* ------------------------------------------------------------- access log */

/* One JSON line on stderr for an answered request (when --access-log). */
void srv_access_log(const srv_request *req, int status, double total_ms, size_t bytes_in,
                    size_t bytes_out);

/* ------------------------------------------------------------- API key */

/*
 * True when req may use a route with this path: no key configured, a path
 * that stays open (/healthz, /readyz, /metrics, /openapi.yaml, /v2/health/...,
 * the explorer page), or "Authorization: Bearer <key>" matching the key
 * (compared in constant time).
 */
bool srv_auth_ok(const srv_app *app, const srv_request *req, const char *path);

/* Reads --api-key-file into c->api_key (first line, surrounding whitespace
 * trimmed). Returns false with a one-line reason in err. */
bool srv_config_load_api_key(srv_config *c, char *err, size_t err_len);

#endif /* SRV_OPS_H */
