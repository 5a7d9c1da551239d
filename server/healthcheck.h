/* healthcheck.h - `attention-server --healthcheck [URL]`: a container probe needing no tools. */
#ifndef HEALTHCHECK_H
#define HEALTHCHECK_H

/*
 * A container's HEALTHCHECK (or any supervisor) runs the server binary itself
 * as the probe, so the runtime image needs neither curl nor a shell: one HTTP
 * GET over a plain socket, exit 0 on 200 and 1 otherwise. Only IP literals and
 * "localhost" are accepted as hosts, never resolved names: a probe that
 * depends on DNS can fail for reasons that say nothing about the server.
 */

#include <stdbool.h>
#include <stddef.h>

/* The whole exchange (connect, send, status line) must finish within this. */
#define SRV_HEALTHCHECK_TIMEOUT_MS 3000u

/* True for "--healthcheck" and "--healthcheck=URL". */
bool srv_healthcheck_is_flag(const char *arg);

/*
 * Splits "http://HOST[:PORT][/PATH]" (HOST an IPv4 literal, [IPv6] or
 * localhost; PORT 1..65535, default 80; PATH default "/"). "localhost" comes
 * back as 127.0.0.1. Returns false and writes one line into err when url is
 * not such a URL; host, port and path are then unspecified.
 */
bool srv_healthcheck_parse_url(const char *url, char *host, size_t host_len, unsigned *port,
                               char *path, size_t path_len, char *err, size_t err_len);

/*
 * The URL probed when none is given: /readyz on the port of ATTN_PORT (8080
 * when unset or empty), at the address of ATTN_HOST when it names one (a
 * wildcard or unset: 127.0.0.1, or ::1 for "::"). getenv_fn NULL = getenv.
 * Returns false with a reason in err when ATTN_PORT is not a port 1..65535.
 */
bool srv_healthcheck_default_url(const char *(*getenv_fn)(const char *), char *out, size_t out_len,
                                 char *err, size_t err_len);

/*
 * GETs url and returns the response's HTTP status (100..599), or 0 when no
 * status line arrived within timeout_ms (refused, reset, timed out, not
 * HTTP); the reason is then in err. Never blocks longer than timeout_ms.
 */
int srv_healthcheck_get(const char *url, unsigned timeout_ms, char *err, size_t err_len);

/*
 * The --healthcheck mode: argv[1] is the flag, the URL is its "=URL" or
 * argv[2], else srv_healthcheck_default_url(). Prints one line (stdout when
 * healthy, stderr otherwise) and returns the exit code: 0 on status 200, 1 on
 * any other status or none, 2 on a bad URL or extra arguments.
 */
int srv_healthcheck_main(int argc, char **argv, const char *(*getenv_fn)(const char *));

#endif /* HEALTHCHECK_H */
