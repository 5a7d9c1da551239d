/* cors.h - cross-origin requests: which pages may call the API, preflight answers, the headers. */
#ifndef SRV_CORS_H
#define SRV_CORS_H

#include <stdbool.h>
#include <stddef.h>

#include "srv.h"

/*
 * The browser's rules (the Fetch standard's CORS protocol), kept by the
 * service as follows. With no --cors-origin nothing changes: no response
 * carries an Access-Control-* header, so browsers keep pages of other
 * origins from reading answers. With --cors-origin, a request whose Origin
 * header is one of the configured origins (compared without regard to case)
 * or any origin when "*" is configured, gets:
 *   Access-Control-Allow-Origin: <its origin> (or "*")
 *   Access-Control-Expose-Headers: X-Inference-Time, X-Total-Time, Retry-After
 * and a preflight (OPTIONS with Access-Control-Request-Method on a known
 * path) answers 204 with Allow plus
 *   Access-Control-Allow-Methods: <the path's methods>
 *   Access-Control-Allow-Headers: Content-Type, Authorization, Accept
 *   Access-Control-Max-Age: 600
 * A configured list other than "*" makes every answer carry Vary: Origin
 * (the answer depends on it). Requests from other origins get no
 * Access-Control-* header at all. Credentials (cookies) are never involved:
 * the API key travels in Authorization, which the preflight allows.
 */

#define SRV_CORS_ALLOW_HEADERS "Content-Type, Authorization, Accept"
#define SRV_CORS_EXPOSE_HEADERS "X-Inference-Time, X-Total-Time, Retry-After"
#define SRV_CORS_MAX_AGE "600"
/* Longest origin accepted (it is echoed in one response header slot). */
#define SRV_CORS_MAX_ORIGIN 120

/*
 * True when origin is a valid --cors-origin entry: "*", or
 * scheme://host[:port] with a scheme of letters, digits, '+', '-', '.', a
 * host without '/', '?', '#', '@', ',', spaces or controls, no path (not
 * even a trailing '/'), at most SRV_CORS_MAX_ORIGIN characters. On false
 * writes a one-line reason into why.
 */
bool srv_cors_origin_valid(const char *origin, size_t len, char *why, size_t why_len);

/* True when a request with this Origin header may read answers under
 * config c. NULL or "" origin: false. */
bool srv_cors_allowed(const srv_config *c, const char *origin);

/*
 * Adds the CORS headers that req calls for to res (see above): the preflight
 * set when req is OPTIONS with Access-Control-Request-Method and res is its
 * 204 (whose Allow header gives the methods), the simple set otherwise.
 * Idempotent; does nothing when no origin is configured.
 */
void srv_cors_apply(const srv_config *c, const srv_request *req, srv_response *res);

#endif /* SRV_CORS_H */
