/* mhd_fixed.c - the HTTP ceiling for attn_bench: libmicrohttpd answering every request with one
 * fixed body, on the same daemon settings as attention-server (internal polling threads, poll,
 * a thread pool), so the difference to the service is the service's own work. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

static struct MHD_Response *g_response;

/* Reads (and drops) the upload, then queues the fixed response. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    static int marker;
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload;
    if (*req_cls == NULL) {
        *req_cls = &marker;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        *upload_size = 0;
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, g_response);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (data = malloc((size_t)n + 1)) && fread(data, 1, (size_t)n, f) == (size_t)n) {
        *len = (size_t)n;
        fclose(f);
        return data;
    }
    free(data);
    fclose(f);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = 2;
    const char *body_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            threads = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--body-file") == 0)
            body_file = argv[i + 1];
    }
    size_t len = 2;
    char *body = body_file ? read_file(body_file, &len) : NULL;
    if (body_file && !body) {
        fprintf(stderr, "mhd_fixed: cannot read %s\n", body_file);
        return 1;
    }
    g_response = MHD_create_response_from_buffer(len, body ? body : (void *)"{}",
                                                 MHD_RESPMEM_PERSISTENT);
    if (!g_response)
        return 1;
    MHD_add_response_header(g_response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");

    /* Blocked before MHD's threads exist, so they inherit the mask and sigwait gets the signal. */
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC;
    if (MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES)
        flags |= MHD_USE_POLL;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE,
        threads < 1 ? 1u : threads, MHD_OPTION_CONNECTION_LIMIT, 1024u, MHD_OPTION_END);
    if (!d)
        return 1;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("listening on http://127.0.0.1:%u\n", info ? info->port : 0);
    fflush(stdout);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    MHD_destroy_response(g_response);
    free(body);
    return 0;
}
