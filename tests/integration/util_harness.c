/* util_harness.c - integration test harness: run the real server, talk HTTP to it, read JSON. */
#include "util_harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------ time */

double it_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void it_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

bool it_verbose(void)
{
    const char *v = getenv("ATTN_IT_VERBOSE");
    return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

double it_wait_s(void)
{
    const char *v = getenv("ATTN_IT_WAIT_S");
    if (v != NULL) {
        double d = strtod(v, NULL);
        if (d > 0)
            return d;
    }
    return IT_DEFAULT_WAIT_S;
}

/* ----------------------------------------------------------------- files */

char *it_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* ---------------------------------------------------------------- server */

/* Servers started by this process and not yet reaped: killed at exit, so a
 * failed assertion (which ends the test process) does not leave one behind. */
#define IT_MAX_LIVE 32
static it_server *live_servers[IT_MAX_LIVE];
static bool atexit_registered;

static void live_remove(const it_server *s)
{
    for (size_t i = 0; i < IT_MAX_LIVE; i++)
        if (live_servers[i] == s)
            live_servers[i] = NULL;
}

static void server_files_remove(it_server *s)
{
    if (s->stdout_path[0] != '\0')
        unlink(s->stdout_path);
    if (s->stderr_path[0] != '\0')
        unlink(s->stderr_path);
    s->stdout_path[0] = s->stderr_path[0] = '\0';
}

static void live_kill_all(void)
{
    for (size_t i = 0; i < IT_MAX_LIVE; i++) {
        it_server *s = live_servers[i];
        if (s == NULL)
            continue;
        live_servers[i] = NULL;
        fprintf(stderr,
                "harness: the test ended with attention-server (pid %d, port %u) still running; "
                "its stderr follows\n",
                (int)s->pid, s->port);
        it_server_dump_stderr(s, 16384);
        if (s->running) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
        }
        server_files_remove(s);
        free(s);
    }
}

static void live_add(it_server *s)
{
    if (!atexit_registered) {
        atexit(live_kill_all);
        atexit_registered = true;
    }
    for (size_t i = 0; i < IT_MAX_LIVE; i++) {
        if (live_servers[i] == NULL) {
            live_servers[i] = s;
            return;
        }
    }
}

void it_server_dump_stderr(const it_server *s, size_t max_bytes)
{
    if (s == NULL || s->stderr_path[0] == '\0')
        return;
    size_t len = 0;
    char *text = it_read_file(s->stderr_path, &len);
    fprintf(stderr, "---- attention-server stderr (pid %d, port %u) ----\n", (int)s->pid, s->port);
    if (text != NULL) {
        const char *start = text;
        if (len > max_bytes) {
            start = text + (len - max_bytes);
            fprintf(stderr, "[... %zu bytes before ...]\n", len - max_bytes);
        }
        fputs(start, stderr);
        if (len > 0 && text[len - 1] != '\n')
            fputc('\n', stderr);
        free(text);
    }
    fprintf(stderr, "---- end of stderr ----\n");
}

/* One folder per run of a test program (made by it_run_suite in the parent
 * process): Check ends a failed forked test with _exit(), so no handler of
 * the test process runs; the parent then shows what the servers of failed
 * tests wrote and removes the folder. */
static char run_dir[64];

static bool make_temp(char *path, size_t path_len, const char *tag)
{
    snprintf(path, path_len, "%.60s/attn-it-%.8s-XXXXXX", run_dir[0] ? run_dir : "/tmp", tag);
    int fd = mkstemp(path);
    if (fd < 0) {
        path[0] = '\0';
        return false;
    }
    close(fd);
    return true;
}

/* The child's environment: ours without ATTN_* (so a developer's shell does
 * not change what the tests see), plus extra. NULL on allocation failure. */
static char **child_env_build(const char *const *extra)
{
    size_t n = 0, n_extra = 0;
    while (environ[n] != NULL)
        n++;
    while (extra != NULL && extra[n_extra] != NULL)
        n_extra++;
    char **env = calloc(n + n_extra + 1, sizeof *env);
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ATTN_", 5) != 0)
            env[k++] = environ[i];
    for (size_t i = 0; i < n_extra; i++)
        env[k++] = (char *)extra[i];
    env[k] = NULL;
    return env;
}

static const char **child_argv_build(const char *const *args, bool server_flags)
{
    size_t n_args = 0;
    while (args != NULL && args[n_args] != NULL)
        n_args++;
    const char **argv = calloc(n_args + 6, sizeof *argv);
    if (argv == NULL)
        return NULL;
    size_t k = 0;
    argv[k++] = ATTN_SERVER_BIN;
    if (server_flags) {
        argv[k++] = "--host";
        argv[k++] = "127.0.0.1";
        argv[k++] = "--port";
        argv[k++] = "0";
    }
    for (size_t i = 0; i < n_args; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    return argv;
}

/* fork + exec with stdout/stderr redirected to files; only async-signal-safe
 * calls after fork (the test process may have threads). */
static pid_t spawn(const char **argv, char **envp, const char *out_path, const char *err_path)
{
    int out_fd = open(out_path, O_WRONLY | O_TRUNC | O_APPEND);
    int err_fd = open(err_path, O_WRONLY | O_TRUNC | O_APPEND);
    int null_fd = open("/dev/null", O_RDONLY);
    if (out_fd < 0 || err_fd < 0 || null_fd < 0) {
        if (out_fd >= 0)
            close(out_fd);
        if (err_fd >= 0)
            close(err_fd);
        if (null_fd >= 0)
            close(null_fd);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Dies with the test process even when the test is killed. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(null_fd, 0);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        signal(SIGPIPE, SIG_DFL);
        execve(argv[0], (char *const *)argv, envp);
        _exit(127);
    }
    close(out_fd);
    close(err_fd);
    close(null_fd);
    return pid;
}

/* Parses the contract's start-up line; returns the port or 0. */
static unsigned startup_line_port(const char *line)
{
    unsigned port = 0;
    int end = -1;
    if (sscanf(line, "attention-server 0.1.0 listening on http://127.0.0.1:%u%n", &port, &end) !=
            1 ||
        end < 0)
        return 0;
    if (line[end] != '\n')
        return 0;
    return port;
}

it_server *it_server_start(const char *const *args, const char *const *env)
{
    it_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (!make_temp(s->stdout_path, sizeof s->stdout_path, "out") ||
        !make_temp(s->stderr_path, sizeof s->stderr_path, "err")) {
        fprintf(stderr, "harness: cannot create temp files: %s\n", strerror(errno));
        server_files_remove(s);
        free(s);
        return NULL;
    }
    char **envp = child_env_build(env);
    const char **argv = child_argv_build(args, true);
    if (envp == NULL || argv == NULL) {
        free(envp);
        free(argv);
        server_files_remove(s);
        free(s);
        return NULL;
    }
    s->pid = spawn(argv, envp, s->stdout_path, s->stderr_path);
    free(envp);
    free(argv);
    if (s->pid < 0) {
        fprintf(stderr, "harness: cannot start %s: %s\n", ATTN_SERVER_BIN, strerror(errno));
        server_files_remove(s);
        free(s);
        return NULL;
    }
    s->running = true;
    live_add(s);

    double deadline = it_now_s() + it_wait_s();
    while (1) {
        char *text = it_read_file(s->stdout_path, NULL);
        char *nl = text != NULL ? strchr(text, '\n') : NULL;
        if (nl != NULL) {
            nl[1] = '\0';
            s->port = startup_line_port(text);
            if (s->port == 0) {
                fprintf(stderr,
                        "harness: unexpected start-up line %s(expected \"attention-server 0.1.0 "
                        "listening on http://127.0.0.1:PORT\")\n",
                        text);
                free(text);
                break;
            }
            free(text);
            snprintf(s->base_url, sizeof s->base_url, "http://127.0.0.1:%u", s->port);
            if (it_verbose())
                fprintf(stderr, "harness: attention-server pid %d on port %u, up in %.3f s\n",
                        (int)s->pid, s->port, it_now_s() - (deadline - it_wait_s()));
            return s;
        }
        free(text);
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->running = false;
            s->wait_status = st;
            fprintf(stderr, "harness: attention-server exited before its start-up line (%s %d)\n",
                    WIFEXITED(st) ? "status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
            break;
        }
        if (it_now_s() > deadline) {
            fprintf(stderr, "harness: no start-up line within %.0f s\n", it_wait_s());
            break;
        }
        it_sleep_ms(5);
    }
    it_server_dump_stderr(s, 16384);
    it_server_kill(s);
    return NULL;
}

it_server *it_start_ok(const char *arg, ...)
{
    const char *args[64];
    size_t n = 0;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL && n < 63; a = va_arg(ap, const char *))
        args[n++] = a;
    va_end(ap);
    args[n] = NULL;
    it_server *s = it_server_start(args, NULL);
    ck_assert_msg(s != NULL, "attention-server did not start (see its stderr above)");
    return s;
}

void it_server_signal(const it_server *s, int sig)
{
    if (s != NULL && s->running)
        kill(s->pid, sig);
}

int it_server_wait(it_server *s, double wait_s)
{
    if (!s->running)
        return s->wait_status;
    double deadline = it_now_s() + wait_s;
    while (1) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            s->running = false;
            s->wait_status = st;
            if (it_verbose()) {
                fprintf(stderr, "harness: attention-server pid %d exited, wait status %d\n",
                        (int)s->pid, st);
                it_server_dump_stderr(s, 4096);
            }
            return st;
        }
        if (r < 0 && errno != EINTR) {
            s->running = false;
            s->wait_status = -1;
            return -1;
        }
        if (it_now_s() > deadline)
            return -1;
        it_sleep_ms(5);
    }
}

static void server_free(it_server *s)
{
    live_remove(s);
    server_files_remove(s);
    free(s);
}

void it_server_kill(it_server *s)
{
    if (s == NULL)
        return;
    if (s->running) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->running = false;
    }
    server_free(s);
}

static const char *status_text(int st, char *buf, size_t len)
{
    if (st == -1)
        snprintf(buf, len, "did not exit in time (killed)");
    else if (WIFEXITED(st))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, len, "wait status 0x%x", st);
    return buf;
}

/* Stops s and returns its status; does not free. */
static int server_stop_keep(it_server *s, double wait_s)
{
    if (!s->running)
        return s->wait_status;
    double t0 = it_now_s();
    kill(s->pid, SIGTERM);
    int st = it_server_wait(s, wait_s);
    if (it_verbose()) {
        fprintf(stderr, "harness: attention-server pid %d stopped %.3f s after SIGTERM\n",
                (int)s->pid, it_now_s() - t0);
        it_server_dump_stderr(s, 4096);
    }
    if (st == -1 && s->running) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->running = false;
        s->wait_status = -1;
    }
    return st;
}

int it_server_stop(it_server *s, double wait_s)
{
    int st = server_stop_keep(s, wait_s);
    if (st != 0) {
        char buf[128];
        fprintf(stderr, "harness: attention-server %s after SIGTERM\n",
                status_text(st, buf, sizeof buf));
        it_server_dump_stderr(s, 16384);
    }
    server_free(s);
    return st;
}

void it_stop_ok(it_server *s)
{
    int st = server_stop_keep(s, it_wait_s());
    char buf[128];
    status_text(st, buf, sizeof buf);
    if (st != 0) {
        fprintf(stderr, "harness: attention-server %s after SIGTERM\n", buf);
        it_server_dump_stderr(s, 16384);
    }
    server_free(s);
    ck_assert_msg(st == 0, "attention-server must exit 0 after SIGTERM; it %s (stderr above)", buf);
}

int it_run_binary(const char *const *args, char *out, size_t out_len, double wait_s)
{
    char path[128];
    if (!make_temp(path, sizeof path, "run"))
        return -1;
    char **envp = child_env_build(NULL);
    const char **argv = child_argv_build(args, false);
    pid_t pid = -1;
    if (envp != NULL && argv != NULL)
        pid = spawn(argv, envp, path, path);
    free(envp);
    free(argv);
    if (pid < 0) {
        unlink(path);
        return -1;
    }
    int st = -1;
    double deadline = it_now_s() + wait_s;
    while (1) {
        int w;
        if (waitpid(pid, &w, WNOHANG) == pid) {
            st = w;
            break;
        }
        if (it_now_s() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        it_sleep_ms(5);
    }
    char *text = it_read_file(path, NULL);
    if (out_len > 0) {
        snprintf(out, out_len, "%s", text != NULL ? text : "");
    }
    free(text);
    unlink(path);
    return st;
}

/* ------------------------------------------------------------------ HTTP */

typedef struct grow_buf {
    char *data;
    size_t len, cap;
    bool oom;
} grow_buf;

static void grow_append(grow_buf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nd = realloc(b->data, cap);
        if (nd == NULL) {
            b->oom = true;
            return;
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static size_t on_body(char *p, size_t size, size_t n, void *user)
{
    grow_append(user, p, size * n);
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *user)
{
    grow_buf *b = user;
    /* A new status line (after 100 Continue, or a redirect): keep only the
     * last header block. */
    if (size * n >= 5 && strncmp(p, "HTTP/", 5) == 0)
        b->len = 0;
    grow_append(b, p, size * n);
    return size * n;
}

typedef struct upload {
    const char *p;
    size_t len, pos;
} upload;

static size_t on_read(char *buf, size_t size, size_t n, void *user)
{
    upload *u = user;
    size_t want = size * n;
    /* Small pieces, so a chunked upload really is several chunks. */
    if (want > 16384)
        want = 16384;
    if (want > u->len - u->pos)
        want = u->len - u->pos;
    memcpy(buf, u->p + u->pos, want);
    u->pos += want;
    return want;
}

static bool header_find(const char *block, const char *name, char *out, size_t out_len)
{
    if (block == NULL)
        return false;
    size_t nl = strlen(name);
    const char *line = block;
    while (*line != '\0') {
        const char *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        if (len > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            const char *ve = line + len;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            size_t vl = (size_t)(ve - v);
            if (out_len > 0) {
                if (vl >= out_len)
                    vl = out_len - 1;
                memcpy(out, v, vl);
                out[vl] = '\0';
            }
            return true;
        }
        if (end == NULL)
            break;
        line = end + 1;
    }
    return false;
}

bool it_resp_header(const it_resp *r, const char *name, char *out, size_t out_len)
{
    return header_find(r->raw_headers, name, out, out_len);
}

bool it_http(const it_server *s, const it_req *rq, it_resp *out)
{
    memset(out, 0, sizeof *out);
    out->curl_code = CURLE_FAILED_INIT;
    CURL *h = rq->handle;
    if (h != NULL)
        curl_easy_reset(h); /* options only: the connection cache stays */
    else
        h = curl_easy_init();
    if (h == NULL) {
        snprintf(out->curl_error, sizeof out->curl_error, "curl_easy_init failed");
        return false;
    }
    char url[2048];
    snprintf(url, sizeof url, "%s%s", s->base_url, rq->path);
    grow_buf body = {0}, head = {0};
    upload up = {rq->body != NULL ? rq->body : "", rq->body_len, 0};
    struct curl_slist *hl = NULL;
    const char *method = rq->method != NULL ? rq->method : "GET";
    bool has_body = rq->send_body || rq->body != NULL;

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, out->curl_error);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, rq->timeout_ms > 0 ? rq->timeout_ms : 60000L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, NULL);
    if (rq->progress != NULL) {
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, rq->progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, rq->progress_data);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    }

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
        if (rq->chunked) {
            curl_easy_setopt(h, CURLOPT_POST, 1L);
            curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(h, CURLOPT_READDATA, &up);
            hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
        } else {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body != NULL ? rq->body : "");
        }
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        if (strcmp(method, "GET") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    char ct[256];
    if (rq->content_type != NULL && rq->content_type[0] == '\0') {
        hl = curl_slist_append(hl, "Content-Type:");
    } else if (rq->content_type != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", rq->content_type);
        hl = curl_slist_append(hl, ct);
    } else if (has_body) {
        hl = curl_slist_append(hl, "Content-Type: application/json");
    }
    if (!rq->expect_continue)
        hl = curl_slist_append(hl, "Expect:");
    for (size_t i = 0; rq->headers != NULL && rq->headers[i] != NULL; i++)
        hl = curl_slist_append(hl, rq->headers[i]);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);

    double t0 = it_now_s();
    out->curl_code = curl_easy_perform(h);
    out->elapsed_s = it_now_s() - t0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &out->num_connects);
    if (out->curl_code != CURLE_OK && out->curl_error[0] == '\0')
        snprintf(out->curl_error, sizeof out->curl_error, "%s", curl_easy_strerror(out->curl_code));

    curl_slist_free_all(hl);
    if (rq->handle == NULL)
        curl_easy_cleanup(h);
    else
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);

    if (body.data == NULL) {
        body.data = calloc(1, 1);
    }
    out->body = body.data;
    out->body_len = body.len;
    out->raw_headers = head.data != NULL ? head.data : calloc(1, 1);
    header_find(out->raw_headers, "Content-Type", out->content_type, sizeof out->content_type);
    header_find(out->raw_headers, "Allow", out->allow, sizeof out->allow);
    header_find(out->raw_headers, "Connection", out->connection, sizeof out->connection);
    header_find(out->raw_headers, "X-Inference-Time", out->inference_time,
                sizeof out->inference_time);
    header_find(out->raw_headers, "X-Total-Time", out->total_time, sizeof out->total_time);
    return out->curl_code == CURLE_OK;
}

void it_resp_free(it_resp *r)
{
    free(r->body);
    free(r->raw_headers);
    r->body = NULL;
    r->raw_headers = NULL;
}

const char *it_resp_describe(const it_resp *r)
{
    static _Thread_local char buf[2048];
    if (r->status == 0) {
        snprintf(buf, sizeof buf, "no response (curl: %.200s)", r->curl_error);
        return buf;
    }
    snprintf(buf, sizeof buf,
             "status %ld, Content-Type \"%.100s\", body (%zu bytes) %.1200s%s%s%.200s", r->status,
             r->content_type, r->body_len, r->body != NULL ? r->body : "",
             r->body_len > 1200 ? "..." : "", r->curl_code != CURLE_OK ? "; curl: " : "",
             r->curl_code != CURLE_OK ? r->curl_error : "");
    return buf;
}

void it_get_ok(const it_server *s, const char *path, it_resp *out)
{
    it_req rq = {.method = "GET", .path = path};
    bool ok = it_http(s, &rq, out);
    ck_assert_msg(ok, "GET %s: %s", path, it_resp_describe(out));
}

void it_post_ok(const it_server *s, const char *path, const char *json, it_resp *out)
{
    it_req rq = {.method = "POST", .path = path, .body = json, .body_len = strlen(json)};
    bool ok = it_http(s, &rq, out);
    ck_assert_msg(ok, "POST %s: %s", path, it_resp_describe(out));
}

void it_post_json_ok(const it_server *s, const char *path, const cJSON *j, it_resp *out)
{
    char *text = it_json_print_ok(j);
    it_req rq = {.method = "POST", .path = path, .body = text, .body_len = strlen(text)};
    bool ok = it_http(s, &rq, out);
    cJSON_free(text);
    ck_assert_msg(ok, "POST %s: %s", path, it_resp_describe(out));
}

cJSON *it_resp_json_ok(const it_resp *r)
{
    cJSON *j = cJSON_ParseWithLength(r->body != NULL ? r->body : "", r->body_len);
    ck_assert_msg(j != NULL, "response body is not JSON: %s", it_resp_describe(r));
    return j;
}

static bool media_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

void it_expect_error_ok(const it_resp *r, long status, const char *code, const char *field,
                        const char *context)
{
    ck_assert_msg(r->status == status, "%s: expected status %ld, got %s", context, status,
                  it_resp_describe(r));
    ck_assert_msg(media_type_is(r->content_type, "application/json"),
                  "%s: error Content-Type must be application/json: %s", context,
                  it_resp_describe(r));
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    ck_assert_msg(j != NULL, "%s: error body is not JSON: %s", context, it_resp_describe(r));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "status");
    const cJSON *cd = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(e, "field");
    bool ok_env = cJSON_IsObject(e) && cJSON_IsNumber(st) && st->valuedouble == (double)status &&
                  cJSON_IsString(cd) && cJSON_IsString(msg) && msg->valuestring[0] != '\0' &&
                  cJSON_IsString(fl);
    bool ok_code = ok_env && strcmp(cd->valuestring, code) == 0;
    bool ok_field = ok_env && (field == NULL || strcmp(fl->valuestring, field) == 0);
    cJSON_Delete(j);
    ck_assert_msg(ok_env,
                  "%s: body must be {\"error\": {\"status\": %ld, \"code\", \"message\" "
                  "(non-empty), \"field\"}}: %s",
                  context, status, it_resp_describe(r));
    ck_assert_msg(ok_code, "%s: expected code \"%s\": %s", context, code, it_resp_describe(r));
    ck_assert_msg(ok_field, "%s: expected field \"%s\": %s", context, field != NULL ? field : "",
                  it_resp_describe(r));
}

bool it_is_ms_value(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ')
        end++;
    return errno == 0 && *end == '\0' && end != s && isfinite(v) && v >= 0;
}

/* -------------------------------------------------------------- raw sockets */

int it_raw_connect(const it_server *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool it_raw_send(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

bool it_raw_send_str(int fd, const char *s)
{
    return it_raw_send(fd, s, strlen(s));
}

/* True once buf holds a whole response (headers + Content-Length body, or a
 * chunked body up to its last chunk). */
static bool raw_complete(const char *buf, size_t len)
{
    const char *hend = strstr(buf, "\r\n\r\n");
    if (hend == NULL)
        return false;
    size_t head_len = (size_t)(hend - buf) + 4;
    char *head = malloc(head_len + 1);
    if (head == NULL)
        return false;
    memcpy(head, buf, head_len);
    head[head_len] = '\0';
    char v[64];
    bool done = false;
    int status = 0;
    sscanf(head, "HTTP/%*d.%*d %d", &status);
    if (status == 204 || status == 304 || (status >= 100 && status < 200)) {
        done = true;
    } else if (header_find(head, "Content-Length", v, sizeof v)) {
        done = len >= head_len + strtoull(v, NULL, 10);
    } else if (header_find(head, "Transfer-Encoding", v, sizeof v) &&
               strstr(v, "chunked") != NULL) {
        done = len >= head_len + 5 && strstr(buf + head_len - 2, "\r\n0\r\n\r\n") != NULL;
    }
    free(head);
    return done;
}

void it_raw_read_response(int fd, double timeout_s, it_raw_resp *out)
{
    memset(out, 0, sizeof *out);
    grow_buf b = {0};
    grow_append(&b, "", 0);
    double deadline = it_now_s() + timeout_s;
    while (!raw_complete(b.data != NULL ? b.data : "", b.len)) {
        double left = deadline - it_now_s();
        if (left <= 0) {
            out->timed_out = true;
            break;
        }
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            continue;
        char chunk[65536];
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            out->eof = true;
            break;
        }
        grow_append(&b, chunk, (size_t)r);
    }
    out->data = b.data != NULL ? b.data : calloc(1, 1);
    out->len = b.len;
    if (out->data != NULL)
        sscanf(out->data, "HTTP/%*d.%*d %d", &out->status);
}

double it_raw_wait_closed(int fd, double timeout_s)
{
    double t0 = it_now_s(), deadline = t0 + timeout_s;
    while (1) {
        double left = deadline - it_now_s();
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            continue;
        char chunk[4096];
        ssize_t r = recv(fd, chunk, sizeof chunk, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return it_now_s() - t0;
    }
}

/* ------------------------------------------------------------------ JSON */

cJSON *it_json_file_ok(const char *path)
{
    size_t len = 0;
    char *text = it_read_file(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    ck_assert_msg(j != NULL, "%s is not valid JSON", path);
    return j;
}

char *it_json_print_ok(const cJSON *j)
{
    char *text = cJSON_PrintUnformatted(j);
    ck_assert_msg(text != NULL, "cannot serialise JSON");
    return text;
}

static void ptr_append(char *dst, size_t dst_len, const char *parent, const char *key)
{
    size_t n = (size_t)snprintf(dst, dst_len, "%s/", parent);
    for (const char *c = key; *c != '\0' && n + 3 < dst_len; c++) {
        if (*c == '~') {
            dst[n++] = '~';
            dst[n++] = '0';
        } else if (*c == '/') {
            dst[n++] = '~';
            dst[n++] = '1';
        } else {
            dst[n++] = *c;
        }
    }
    if (n < dst_len)
        dst[n] = '\0';
}

static const char *json_type_name(const cJSON *j)
{
    if (j == NULL)
        return "missing";
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsBool(j))
        return "bool";
    if (cJSON_IsNumber(j))
        return "number";
    if (cJSON_IsString(j))
        return "string";
    if (cJSON_IsArray(j))
        return "array";
    if (cJSON_IsObject(j))
        return "object";
    return "invalid";
}

static bool match_rec(const cJSON *a, const cJSON *e, double atol, double rtol, const char *where,
                      const char *key, char *why, size_t why_len)
{
    if (key != NULL && strcmp(key, "elapsed_ms") == 0) {
        if (!cJSON_IsNumber(a) || !(a->valuedouble >= 0)) {
            snprintf(why, why_len, "%s: expected a number >= 0, got %s", where, json_type_name(a));
            return false;
        }
        return true;
    }
    if (cJSON_IsNumber(e)) {
        if (!cJSON_IsNumber(a)) {
            snprintf(why, why_len, "%s: expected number %.9g, got %s", where, e->valuedouble,
                     json_type_name(a));
            return false;
        }
        double d = fabs(a->valuedouble - e->valuedouble);
        if (!(d <= atol + rtol * fabs(e->valuedouble))) {
            snprintf(why, why_len, "%s: expected %.9g, got %.9g (difference %.3g)", where,
                     e->valuedouble, a->valuedouble, d);
            return false;
        }
        return true;
    }
    if (cJSON_IsString(e)) {
        if (!cJSON_IsString(a) || strcmp(a->valuestring, e->valuestring) != 0) {
            snprintf(why, why_len, "%s: expected string \"%.200s\", got %s%.200s%s", where,
                     e->valuestring, cJSON_IsString(a) ? "\"" : json_type_name(a),
                     cJSON_IsString(a) ? a->valuestring : "", cJSON_IsString(a) ? "\"" : "");
            return false;
        }
        return true;
    }
    if (cJSON_IsBool(e) || cJSON_IsNull(e)) {
        bool same = cJSON_IsNull(e) ? cJSON_IsNull(a)
                                    : (cJSON_IsBool(a) && cJSON_IsTrue(a) == cJSON_IsTrue(e));
        if (!same) {
            snprintf(why, why_len, "%s: expected %s, got %s", where,
                     cJSON_IsNull(e) ? "null" : (cJSON_IsTrue(e) ? "true" : "false"),
                     cJSON_IsBool(a) ? (cJSON_IsTrue(a) ? "true" : "false") : json_type_name(a));
            return false;
        }
        return true;
    }
    if (cJSON_IsArray(e)) {
        if (!cJSON_IsArray(a)) {
            snprintf(why, why_len, "%s: expected array, got %s", where, json_type_name(a));
            return false;
        }
        int na = cJSON_GetArraySize(a), ne = cJSON_GetArraySize(e);
        if (na != ne) {
            snprintf(why, why_len, "%s: expected %d elements, got %d", where, ne, na);
            return false;
        }
        const cJSON *ia = a->child;
        int i = 0;
        for (const cJSON *ie = e->child; ie != NULL; ie = ie->next, ia = ia->next, i++) {
            char sub[512], idx[32];
            snprintf(idx, sizeof idx, "%d", i);
            ptr_append(sub, sizeof sub, where, idx);
            if (!match_rec(ia, ie, atol, rtol, sub, NULL, why, why_len))
                return false;
        }
        return true;
    }
    if (cJSON_IsObject(e)) {
        if (!cJSON_IsObject(a)) {
            snprintf(why, why_len, "%s: expected object, got %s", where, json_type_name(a));
            return false;
        }
        for (const cJSON *ie = e->child; ie != NULL; ie = ie->next) {
            char sub[512];
            ptr_append(sub, sizeof sub, where, ie->string);
            const cJSON *ia = cJSON_GetObjectItemCaseSensitive(a, ie->string);
            if (ia == NULL) {
                snprintf(why, why_len, "%s: member missing", sub);
                return false;
            }
            if (!match_rec(ia, ie, atol, rtol, sub, ie->string, why, why_len))
                return false;
        }
        for (const cJSON *ia = a->child; ia != NULL; ia = ia->next) {
            if (cJSON_GetObjectItemCaseSensitive(e, ia->string) == NULL) {
                char sub[512];
                ptr_append(sub, sizeof sub, where, ia->string);
                snprintf(why, why_len, "%s: unexpected member", sub);
                return false;
            }
        }
        return true;
    }
    snprintf(why, why_len, "%s: unsupported expected value", where);
    return false;
}

bool it_json_match(const cJSON *actual, const cJSON *expected, double atol, double rtol, char *why,
                   size_t why_len)
{
    if (why_len > 0)
        why[0] = '\0';
    return match_rec(actual, expected, atol, rtol, "", NULL, why, why_len);
}

/* --------------------------------------------------------------- base64 */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *it_base64_encode(const void *p, size_t n)
{
    const unsigned char *in = p;
    char *out = malloc(((n + 2) / 3) * 4 + 1);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[k++] = b64_alphabet[(v >> 18) & 63];
        out[k++] = b64_alphabet[(v >> 12) & 63];
        out[k++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
        out[k++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
    }
    out[k] = '\0';
    return out;
}

static int b64_value(char c)
{
    const char *p = c != '\0' ? strchr(b64_alphabet, c) : NULL;
    return p != NULL ? (int)(p - b64_alphabet) : -1;
}

unsigned char *it_base64_decode(const char *s, size_t *n)
{
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == '=')
        len--;
    unsigned char *out = malloc(len * 3 / 4 + 3);
    if (out == NULL)
        return NULL;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[k++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    *n = k;
    return out;
}

/* -------------------------------------------------------------- tensors */

bool it_list_shape(const cJSON *item, size_t *rank, size_t *shape)
{
    size_t r = 0;
    const cJSON *c = item;
    while (cJSON_IsArray(c)) {
        if (r >= IT_MAX_RANK)
            return false;
        shape[r++] = (size_t)cJSON_GetArraySize(c);
        c = c->child;
        if (c == NULL)
            break;
    }
    *rank = r;
    return true;
}

static bool flatten(const cJSON *item, size_t depth, size_t rank, const size_t *shape, float *out,
                    size_t *k)
{
    if (depth == rank) {
        if (cJSON_IsNumber(item))
            out[(*k)++] = (float)item->valuedouble;
        else if (cJSON_IsNull(item))
            out[(*k)++] = NAN;
        else
            return false;
        return true;
    }
    if (!cJSON_IsArray(item) || (size_t)cJSON_GetArraySize(item) != shape[depth])
        return false;
    for (const cJSON *c = item->child; c != NULL; c = c->next)
        if (!flatten(c, depth + 1, rank, shape, out, k))
            return false;
    return true;
}

bool it_tensor_read(const cJSON *item, it_tensor *t, char *why, size_t why_len)
{
    memset(t, 0, sizeof *t);
    if (cJSON_IsObject(item)) {
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
        const cJSON *da = cJSON_GetObjectItemCaseSensitive(item, "data");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "float32") != 0 || !cJSON_IsArray(sh) ||
            !cJSON_IsString(da) || cJSON_GetArraySize(item) != 3) {
            snprintf(why, why_len,
                     "tensor object must be exactly {\"dtype\": \"float32\", \"shape\", \"data\"}");
            return false;
        }
        size_t size = 1;
        for (const cJSON *d = sh->child; d != NULL; d = d->next) {
            if (!cJSON_IsNumber(d) || d->valuedouble < 0 || t->rank >= IT_MAX_RANK ||
                d->valuedouble != floor(d->valuedouble)) {
                snprintf(why, why_len, "bad shape in tensor object");
                return false;
            }
            t->shape[t->rank++] = (size_t)d->valuedouble;
            size *= (size_t)d->valuedouble;
        }
        size_t n = 0;
        unsigned char *bytes = it_base64_decode(da->valuestring, &n);
        if (bytes == NULL || n != size * sizeof(float)) {
            snprintf(why, why_len, "tensor object data: %s (%zu bytes for %zu floats)",
                     bytes == NULL ? "bad base64" : "size does not match shape", n, size);
            free(bytes);
            return false;
        }
        t->data = malloc(size * sizeof(float) + 1);
        if (t->data == NULL) {
            free(bytes);
            snprintf(why, why_len, "out of memory");
            return false;
        }
        memcpy(t->data, bytes, n); /* little-endian host (x86-64, arm64) */
        free(bytes);
        t->size = size;
        return true;
    }
    if (!it_list_shape(item, &t->rank, t->shape)) {
        snprintf(why, why_len, "not a nested list");
        return false;
    }
    size_t size = 1;
    for (size_t i = 0; i < t->rank; i++)
        size *= t->shape[i];
    t->data = malloc(size * sizeof(float) + 1);
    size_t k = 0;
    if (t->data == NULL || !flatten(item, 0, t->rank, t->shape, t->data, &k) || k != size) {
        snprintf(why, why_len, "not a rectangular numeric list");
        it_tensor_free(t);
        return false;
    }
    t->size = size;
    return true;
}

void it_tensor_free(it_tensor *t)
{
    free(t->data);
    memset(t, 0, sizeof *t);
}

cJSON *it_tensor_object_from_list(const cJSON *item)
{
    it_tensor t;
    char why[128];
    if (!cJSON_IsArray(item) || !it_tensor_read(item, &t, why, sizeof why))
        return NULL;
    char *b64 = it_base64_encode(t.data, t.size * sizeof(float));
    cJSON *o = cJSON_CreateObject();
    cJSON *sh = cJSON_CreateArray();
    for (size_t i = 0; i < t.rank; i++)
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t.shape[i]));
    cJSON_AddStringToObject(o, "dtype", "float32");
    cJSON_AddItemToObject(o, "shape", sh);
    cJSON_AddStringToObject(o, "data", b64 != NULL ? b64 : "");
    free(b64);
    it_tensor_free(&t);
    return o;
}

static cJSON *list_rec(const float *data, size_t rank, const size_t *shape, size_t *k)
{
    if (rank == 0) {
        float v = data[(*k)++];
        return isfinite(v) ? cJSON_CreateNumber((double)v) : cJSON_CreateNull();
    }
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < shape[0]; i++)
        cJSON_AddItemToArray(a, list_rec(data, rank - 1, shape + 1, k));
    return a;
}

cJSON *it_list_from_floats(const float *data, size_t rank, const size_t *shape)
{
    size_t k = 0;
    return list_rec(data, rank, shape, &k);
}

static void shape_text(const size_t *shape, size_t rank, char *out, size_t out_len)
{
    size_t n = (size_t)snprintf(out, out_len, "[");
    for (size_t i = 0; i < rank && n < out_len; i++)
        n += (size_t)snprintf(out + n, out_len - n, "%s%zu", i ? ", " : "", shape[i]);
    if (n < out_len)
        snprintf(out + n, out_len - n, "]");
}

bool it_tensor_close(const it_tensor *actual, const cJSON *expected, double atol, bool null_is_zero,
                     char *why, size_t why_len)
{
    it_tensor e;
    char w[128];
    if (!it_tensor_read(expected, &e, w, sizeof w)) {
        snprintf(why, why_len, "expected value: %s", w);
        return false;
    }
    bool same_shape = e.rank == actual->rank;
    for (size_t i = 0; same_shape && i < e.rank; i++)
        same_shape = e.shape[i] == actual->shape[i];
    if (!same_shape) {
        char sa[96], se[96];
        shape_text(actual->shape, actual->rank, sa, sizeof sa);
        shape_text(e.shape, e.rank, se, sizeof se);
        snprintf(why, why_len, "shape %s, expected %s", sa, se);
        it_tensor_free(&e);
        return false;
    }
    for (size_t i = 0; i < e.size; i++) {
        double want = e.data[i], got = actual->data[i];
        bool ok;
        if (isnan(want) && !null_is_zero)
            ok = isnan(got);
        else {
            if (isnan(want))
                want = 0;
            ok = fabs(got - want) <= atol;
        }
        if (!ok) {
            snprintf(why, why_len, "flat index %zu: got %.9g, expected %.9g (tolerance %g)", i, got,
                     want, atol);
            it_tensor_free(&e);
            return false;
        }
    }
    it_tensor_free(&e);
    return true;
}

/* ---------------------------------------------------------------- runner */

/* Prints the stderr files of servers whose test ended without stopping
 * them (a failed assertion), then removes the run folder. */
static void run_dir_finish(void)
{
    if (run_dir[0] == '\0')
        return;
    DIR *d = opendir(run_dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", run_dir, e->d_name);
        size_t len = 0;
        char *text = strncmp(e->d_name, "attn-it-err-", 12) == 0 ? it_read_file(path, &len) : NULL;
        if (text != NULL && len > 0) {
            const char *start = len > 16384 ? text + len - 16384 : text;
            fprintf(stderr,
                    "---- stderr of an attention-server left running by a failed test (%s) ----\n"
                    "%s%s---- end of stderr ----\n",
                    e->d_name, start, text[len - 1] == '\n' ? "" : "\n");
        }
        free(text);
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(run_dir);
    run_dir[0] = '\0';
}

int it_run_suite(Suite *suite)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(run_dir, sizeof run_dir, "/tmp/attn-it-run-XXXXXX");
    if (mkdtemp(run_dir) == NULL)
        run_dir[0] = '\0';
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    /* Servers of failed tests died with their test process (PDEATHSIG). */
    run_dir_finish();
    curl_global_cleanup();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
