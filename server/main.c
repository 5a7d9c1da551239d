/* main.c - attention-server: flags and environment, start, wait for a signal, drain, stop. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "healthcheck.h"
#include "json.h"
#include "models.h"
#include "ops.h"
#include "srv.h"

static unsigned in_flight_of(void *h)
{
    return srv_http_in_flight(h);
}

/* Waits until no request is in flight or the drain timeout passes; returns
 * the requests still running (they are cut short by the stop). */
static unsigned drain_wait(srv_http *h, unsigned drain_s)
{
    double deadline = srv_now_ms() + drain_s * 1000.0;
    const struct timespec tick = {0, 10 * 1000 * 1000};

    while (srv_http_in_flight(h) > 0 && srv_now_ms() < deadline)
        nanosleep(&tick, NULL);
    return srv_http_in_flight(h);
}

/* Static, not on main's stack: when the drain gives up on a request, its
 * thread still uses the app while the process exits. */
static srv_app app;

/* Waits for the models while watching for a stop signal: 1 when all are
 * loaded, -1 when one failed (err says which and why), 0 when *sig stopped
 * the wait. */
static int wait_for_models(const sigset_t *stop_set, int *sig, char *err, size_t err_len)
{
    const struct timespec tick = {0, 20 * 1000 * 1000};

    for (;;) {
        int got = srv_models_poll(app.models, err, err_len);
        if (got != 0)
            return got;
        int s = sigtimedwait(stop_set, NULL, &tick);
        if (s > 0) {
            *sig = s;
            return 0;
        }
    }
}

int main(int argc, char **argv)
{
    srv_http *h;
    char out[8192], err[1536];
    sigset_t stop_set;
    struct sigaction ign;
    int sig = 0;
    unsigned cut;
    bool v6;

    /* The container probe: a GET against a running server, then exit (healthcheck.h). */
    if (argc >= 2 && srv_healthcheck_is_flag(argv[1]))
        return srv_healthcheck_main(argc, argv, NULL);
    /* Before any thread exists: cJSON's hooks are process-wide. */
    srv_json_pool_install();
    memset(&app, 0, sizeof app);
    srv_config_defaults(&app.config);
    switch (srv_config_parse(&app.config, argc, argv, NULL, out, sizeof out, err, sizeof err)) {
    case SRV_CLI_EXIT:
        fputs(out, stdout);
        return 0;
    case SRV_CLI_ERROR:
        fprintf(stderr, "attention-server: %s\n", err);
        return 2;
    case SRV_CLI_RUN:
        break;
    }
    attn_blas_set_threads(app.config.blas_threads);
    if (!srv_config_load_api_key(&app.config, err, sizeof err)) {
        fprintf(stderr, "attention-server: %s\n", err);
        return 2;
    }
    if (app.config.max_concurrent == 0)
        app.config.max_concurrent = app.config.threads;
    app.metrics = srv_metrics_create(srv_n_routes);
    app.limiter = srv_limiter_create(app.config.max_concurrent);
    app.models = srv_models_create(app.config.models);
    if (app.metrics == NULL || app.limiter == NULL || app.models == NULL) {
        fprintf(stderr, "attention-server: out of memory\n");
        return 1;
    }

    /* A client that hangs up mid-response must not kill the process. */
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    /* Blocked before any thread exists, so MHD's threads inherit the mask
     * and the signals wait for sigwait() below instead of interrupting a
     * worker mid-request. */
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);

    app.start_time = srv_now_ms();
    h = srv_http_start(&app, err, sizeof err);
    if (h == NULL) {
        fprintf(stderr, "attention-server: %s\n", err);
        return 1;
    }
    srv_metrics_set_in_flight_source(app.metrics, in_flight_of, h);
    /* Models load after the listener is up: /healthz answers at once and
     * /readyz says which model it waits for. */
    if (!srv_models_start(app.models, err, sizeof err)) {
        fprintf(stderr, "attention-server: %s\n", err);
        srv_http_stop(h);
        return 1;
    }
    app.ready = srv_models_count(app.models) == 0;
    v6 = strchr(app.config.host, ':') != NULL;
    if (!app.config.quiet) {
        printf("attention-server %s listening on http://%s%s%s:%u\n", SRV_VERSION, v6 ? "[" : "",
               app.config.host, v6 ? "]" : "", app.bound_port);
        fflush(stdout);
    }

    if (!app.ready) {
        switch (wait_for_models(&stop_set, &sig, err, sizeof err)) {
        case 1:
            app.ready = 1;
            if (!app.config.quiet)
                fprintf(stderr, "attention-server: %zu model%s loaded, ready\n",
                        srv_models_count(app.models), srv_models_count(app.models) == 1 ? "" : "s");
            break;
        case -1:
            /* refuse to start: serving without a model asked for would only move the failure
             * to the clients */
            fprintf(stderr, "attention-server: %s\n", err);
            srv_http_stop(h);
            srv_models_free(app.models);
            srv_metrics_free(app.metrics);
            srv_limiter_free(app.limiter);
            return 3;
        default: /* a stop signal while loading */
            break;
        }
    }
    while (sig == 0 && sigwait(&stop_set, &sig) != 0)
        ;

    /* Readiness goes first so load balancers stop routing here, then the
     * listener; requests already accepted get up to --drain-timeout. */
    app.draining = 1;
    app.ready = 0;
    srv_http_quiesce(h);
    cut = drain_wait(h, app.config.drain_s);
    /* Stopping joins MHD's threads, which would wait for the computations
     * the drain timeout just gave up on; past it, the process simply ends
     * and takes them along. */
    if (cut == 0) {
        srv_http_stop(h);
        srv_models_free(app.models);
        srv_metrics_free(app.metrics);
        srv_limiter_free(app.limiter);
    }
    if (!app.config.quiet)
        fprintf(stderr, "attention-server: stopped on %s (%u request%s cut short)\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM", cut, cut == 1 ? "" : "s");
    return 0;
}
