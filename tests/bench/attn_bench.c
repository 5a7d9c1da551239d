/* attn_bench.c - engine and service benchmark: one table of named cases, medians with min-max,
 * PASS/FAIL checks. */
#include "attn.h"
#include "json.h"
#include "srv.h"

#include <cblas.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * Every row of the table is a bench_case, measured in the same run: `reps`
 * timed runs after a warm-up, reported as median [min - max]. Cases marked
 * `child` run in a fresh process (this binary re-executed with --child NAME),
 * so their peak resident memory (wait4's ru_maxrss) is theirs alone: inputs,
 * outputs, the engine's scratch and the process itself.
 *
 * The rows that run in this process (the engine, the PyTorch helper, plain
 * sgemm, the JSON layer) run interleaved: one warm-up each, then round after
 * round one run of every row, so rows compared with each other see the same
 * machine. PyTorch runs in one helper process (tests/bench/torch_bench.py)
 * that times one call per command, so its runs interleave with ours too. The
 * HTTP rows (wrk against attention-server, a fixed-body libmicrohttpd server
 * and a Flask + PyTorch server) interleave among themselves, one wrk run per
 * server per round.
 *
 * Rows compare with each other by name (bench_check) or with a memory bound
 * (`max_peak_mib`); the verdicts print as PASS/FAIL and the exit status is 1
 * when one fails (not in --quick mode, whose sizes are too small for the
 * bounds to mean anything and which skips rows whose tools are missing; it
 * only keeps the program from rotting).
 */

typedef enum bench_kind {
    BENCH_SOFTMAX,    /* attn_forward, output only, q, k, v [n][d] */
    BENCH_LINEAR,     /* attn_linear_kernel_forward, output only */
    BENCH_MHA,        /* attn_mha_forward self-attention, x [n][E], H heads */
    BENCH_TORCH_MHA,  /* nn.MultiheadAttention in the PyTorch helper */
    BENCH_TORCH_SDPA, /* single-head scaled dot product attention in the PyTorch helper */
    BENCH_SGEMM_MHA,  /* the GEMMs of an MHA row, cblas_sgemm only: the ceiling */
    BENCH_SGEMM_SDPA, /* the two GEMMs of a single-head row */
    BENCH_JSON_OUT,   /* srv_jw_tensor of [H][n][n] weights */
    BENCH_JSON_IN,    /* srv_json_parse_object + srv_json_read_tensor of the same */
    BENCH_HTTP,       /* wrk against a server, requests/s */
} bench_kind;

typedef enum check_kind {
    CHECK_NONE,
    CHECK_FASTER,  /* PASS when other median / this median >= bound */
    CHECK_TIME,    /* PASS when this median / other median <= bound */
    CHECK_CEILING, /* same GEMMs: PASS when this GFLOP/s / other GFLOP/s >= bound */
    CHECK_RPS,     /* PASS when this requests/s / other requests/s >= bound */
} check_kind;

typedef struct bench_check {
    check_kind kind;
    const char *other; /* row name */
    double bound;      /* 0: show the ratio, no verdict */
} bench_check;

typedef enum http_server {
    HTTP_SERVICE, /* attention-server */
    HTTP_FIXED,   /* tests/bench/mhd_fixed.c with our answer as its fixed body */
    HTTP_FLASK,   /* tests/bench/flask_server.py */
} http_server;

typedef struct bench_case {
    const char *name; /* row label and the argument of --child / --only */
    bench_kind kind;
    size_t n, d;    /* sequence length (n = m, self-attention); head width, or E for MHA */
    size_t heads;   /* MHA, JSON: H */
    size_t quick_n; /* n in --quick mode */
    bool weights;   /* MHA: need_weights (per head, average_attn_weights=False) */
    bool base64;    /* JSON: tensor objects instead of nested lists */
    http_server server;
    attn_causal causal;
    int64_t window;      /* softmax: pattern window w, |i - j| <= w (0: dense) */
    attn_feature_map fm; /* linear: ELU or FAVOR */
    size_t num_features; /* favor: r */
    bool child;          /* run in its own process and report its peak RSS */
    int reps;            /* timed runs (after one warm-up) */
    int batch;           /* calls per timed run, for rows too short to time one by one (0: 1);
                            the row reports the mean of a run */
    bench_check checks[2];
    double max_peak_mib; /* PASS when peak RSS < this many MiB (0: no check) */
} bench_case;

#define SM(nm, n_, ...)                                                                            \
    {.name = nm, .kind = BENCH_SOFTMAX, .n = n_, .d = 64, .quick_n = 256, .reps = 7, __VA_ARGS__}
#define MHA(nm, n_, E_, H_, w_, reps_, ...)                                                        \
    {.name = nm, .kind = BENCH_MHA, .n = n_, .d = E_, .heads = H_, .weights = w_,                  \
     .quick_n = n_ < 64 ? n_ : 64, .reps = reps_, .batch = n_ < 64 ? 500 : n_ < 256 ? 20 : 1,     \
     __VA_ARGS__}
#define TMHA(nm, n_, E_, H_, w_, reps_)                                                            \
    {.name = nm, .kind = BENCH_TORCH_MHA, .n = n_, .d = E_, .heads = H_, .weights = w_,            \
     .quick_n = n_ < 64 ? n_ : 64, .reps = reps_, .batch = n_ < 64 ? 500 : n_ < 256 ? 20 : 1}
#define VS_TORCH(t) {CHECK_TIME, t, 0.8}
#define HTTP(nm, n_, d_, ...)                                                                      \
    {.name = nm, .kind = BENCH_HTTP, .n = n_, .d = d_, .quick_n = n_, .reps = 9, __VA_ARGS__}

static const bench_case cases[] = {
    SM("softmax dense", 4096, .checks = {VS_TORCH("torch sdpa"), {CHECK_CEILING, "sgemm sdpa", 0}}),
    {.name = "torch sdpa", .kind = BENCH_TORCH_SDPA, .n = 4096, .d = 64, .quick_n = 256, .reps = 7},
    {.name = "sgemm sdpa", .kind = BENCH_SGEMM_SDPA, .n = 4096, .d = 64, .quick_n = 256, .reps = 7},
    SM("softmax window 64", 4096, .window = 64, .checks = {{CHECK_FASTER, "softmax dense", 10}}),
    SM("softmax causal dense", 4096, .causal = ATTN_CAUSAL_TOP_LEFT),
    SM("softmax causal window 64", 4096, .causal = ATTN_CAUSAL_TOP_LEFT, .window = 64,
       .checks = {{CHECK_FASTER, "softmax causal dense", 10}}),

    MHA("mha 6/8/2 weights", 6, 8, 2, true, 7, .checks = {VS_TORCH("torch 6/8/2 weights")}),
    TMHA("torch 6/8/2 weights", 6, 8, 2, true, 7),
    MHA("mha 6/8/2", 6, 8, 2, false, 7, .checks = {VS_TORCH("torch 6/8/2")}),
    TMHA("torch 6/8/2", 6, 8, 2, false, 7),
    MHA("mha 128/256/4 weights", 128, 256, 4, true, 7,
        .checks = {VS_TORCH("torch 128/256/4 weights")}),
    TMHA("torch 128/256/4 weights", 128, 256, 4, true, 7),
    MHA("mha 128/256/4", 128, 256, 4, false, 7, .checks = {VS_TORCH("torch 128/256/4")}),
    TMHA("torch 128/256/4", 128, 256, 4, false, 7),
    MHA("mha 512/768/12 weights", 512, 768, 12, true, 7,
        .checks = {VS_TORCH("torch 512/768/12 weights"), {CHECK_CEILING, "sgemm 512/768/12", 0}}),
    TMHA("torch 512/768/12 weights", 512, 768, 12, true, 7),
    MHA("mha 512/768/12", 512, 768, 12, false, 7,
        .checks = {VS_TORCH("torch 512/768/12"), {CHECK_CEILING, "sgemm 512/768/12", 0.6}}),
    TMHA("torch 512/768/12", 512, 768, 12, false, 7),
    {.name = "sgemm 512/768/12", .kind = BENCH_SGEMM_MHA, .n = 512, .d = 768, .heads = 12,
     .quick_n = 64, .reps = 7},
    MHA("mha 2048/512/8 weights", 2048, 512, 8, true, 5,
        .checks = {VS_TORCH("torch 2048/512/8 weights")}),
    TMHA("torch 2048/512/8 weights", 2048, 512, 8, true, 5),
    MHA("mha 2048/512/8", 2048, 512, 8, false, 7,
        .checks = {VS_TORCH("torch 2048/512/8"), {CHECK_CEILING, "sgemm 2048/512/8", 0}}),
    TMHA("torch 2048/512/8", 2048, 512, 8, false, 7),
    {.name = "sgemm 2048/512/8", .kind = BENCH_SGEMM_MHA, .n = 2048, .d = 512, .heads = 8,
     .quick_n = 64, .reps = 7},

    {.name = "json out nested", .kind = BENCH_JSON_OUT, .n = 512, .heads = 12, .quick_n = 32,
     .reps = 7},
    {.name = "json out base64", .kind = BENCH_JSON_OUT, .n = 512, .heads = 12, .quick_n = 32,
     .base64 = true, .reps = 7},
    {.name = "json in nested", .kind = BENCH_JSON_IN, .n = 512, .heads = 12, .quick_n = 32,
     .reps = 7},
    {.name = "json in base64", .kind = BENCH_JSON_IN, .n = 512, .heads = 12, .quick_n = 32,
     .base64 = true, .reps = 7},

    {.name = "softmax dense 32768", .kind = BENCH_SOFTMAX, .n = 32768, .d = 64, .quick_n = 512,
     .child = true, .reps = 3, .max_peak_mib = 64},
    {.name = "linear elu", .kind = BENCH_LINEAR, .n = 65536, .d = 64, .quick_n = 512,
     .fm = ATTN_FEATURE_MAP_ELU, .child = true, .reps = 7, .max_peak_mib = 64},
    {.name = "linear elu causal", .kind = BENCH_LINEAR, .n = 65536, .d = 64, .quick_n = 512,
     .causal = ATTN_CAUSAL_TOP_LEFT, .fm = ATTN_FEATURE_MAP_ELU, .child = true, .reps = 7,
     .max_peak_mib = 64},
    {.name = "favor r=256", .kind = BENCH_LINEAR, .n = 65536, .d = 64, .quick_n = 512,
     .fm = ATTN_FEATURE_MAP_FAVOR, .num_features = 256, .child = true, .reps = 5},
    {.name = "favor r=256 causal", .kind = BENCH_LINEAR, .n = 65536, .d = 64, .quick_n = 512,
     .causal = ATTN_CAUSAL_TOP_LEFT, .fm = ATTN_FEATURE_MAP_FAVOR, .num_features = 256,
     .child = true, .reps = 5},

    HTTP("http small", 6, 8, .server = HTTP_SERVICE,
         .checks = {{CHECK_RPS, "http small fixed body", 0.5}, {CHECK_RPS, "http small flask", 10}}),
    HTTP("http small fixed body", 6, 8, .server = HTTP_FIXED),
    HTTP("http small flask", 6, 8, .server = HTTP_FLASK),
    HTTP("http medium", 64, 64, .server = HTTP_SERVICE,
         .checks = {{CHECK_RPS, "http medium fixed body", 0}, {CHECK_RPS, "http medium flask", 0}}),
    HTTP("http medium fixed body", 64, 64, .server = HTTP_FIXED),
    HTTP("http medium flask", 64, 64, .server = HTTP_FLASK),
};

#define N_CASES (sizeof cases / sizeof cases[0])
#define MAX_REPS 64

typedef struct bench_result {
    bool ok;
    bool skipped; /* --quick only: a tool (torch, wrk, flask) is missing */
    int reps;
    double ms[MAX_REPS]; /* HTTP rows: requests/s */
    double p50[MAX_REPS], p99[MAX_REPS];
    double median, min, max;
    double p50_med, p99_med; /* HTTP: latency medians, ms */
    double peak_mib;         /* child rows: peak resident set of the process */
    double scratch_mib;      /* engine workspace after the runs */
    double bytes;            /* JSON rows: text size */
    char error[256];
} bench_result;

static bool g_quick;
static char g_tmpdir[64];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(const double *v, int n, double *mn, double *mx)
{
    double s[MAX_REPS];
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    if (mn)
        *mn = s[0];
    if (mx)
        *mx = s[n - 1];
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static void summarise(bench_result *r)
{
    r->median = median_of(r->ms, r->reps, &r->min, &r->max);
}

static size_t case_n(const bench_case *c)
{
    return g_quick ? c->quick_n : c->n;
}

static int case_batch(const bench_case *c)
{
    return c->batch > 1 && !g_quick ? c->batch : 1;
}

/* GEMM work of a row (QK^T and PV, plus the four projections of a block), 0 if none. */
static double case_flops(const bench_case *c)
{
    const double n = (double)case_n(c), d = (double)c->d;
    switch (c->kind) {
    case BENCH_SOFTMAX:
        return c->window == 0 && c->causal == ATTN_CAUSAL_NONE ? 4.0 * n * n * d : 0;
    case BENCH_TORCH_SDPA:
    case BENCH_SGEMM_SDPA:
        return 4.0 * n * n * d;
    case BENCH_MHA:
    case BENCH_TORCH_MHA:
    case BENCH_SGEMM_MHA:
        return 8.0 * n * d * d + 4.0 * n * n * d;
    default:
        return 0;
    }
}

/* Inputs in [-1, 1) from splitmix64, the same for every row of one size. */
static float *random_matrix(size_t rows, size_t cols, uint64_t seed)
{
    const size_t count = rows * cols;
    float *x = malloc((count > 0 ? count : 1) * sizeof *x);
    if (!x)
        return NULL;
    for (size_t i = 0; i < rows * cols; i++)
        x[i] = 2.0f * attn_rng_uniform(&seed) - 1.0f;
    return x;
}

/* ------------------------------------------------------- the PyTorch helper */

typedef struct torch_helper {
    bool tried, ok;
    pid_t pid;
    FILE *to, *from;
    char why[160];
} torch_helper;

static torch_helper g_torch;

static const char *python_bin(void)
{
    const char *p = getenv("ATTN_BENCH_PYTHON");
    if (p && *p)
        return p;
    /* Debian's python3-torch lives in the system interpreter, which a PATH
     * python3 (pyenv, a virtualenv) may not be. */
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Starts argv with stdin and stdout as pipes (either pointer may be NULL: that
 * end stays the bench's own), stderr to /dev/null unless keep_stderr. */
static pid_t spawn(char *const argv[], FILE **to, FILE **from, bool keep_stderr)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if ((to && pipe(in) != 0) || (from && pipe(out) != 0))
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (to) {
            dup2(in[0], STDIN_FILENO);
            close(in[0]);
            close(in[1]);
        }
        if (from) {
            dup2(out[1], STDOUT_FILENO);
            close(out[0]);
            close(out[1]);
        }
        if (!keep_stderr) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0)
                dup2(null, STDERR_FILENO);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (to) {
        close(in[0]);
        *to = fdopen(in[1], "w");
    }
    if (from) {
        close(out[1]);
        *from = fdopen(out[0], "r");
    }
    return pid;
}

static bool torch_start(void)
{
    if (g_torch.tried)
        return g_torch.ok;
    g_torch.tried = true;
    char script[512], threads[16], line[256];
    snprintf(script, sizeof script, "%s/torch_bench.py", ATTN_BENCH_DIR);
    snprintf(threads, sizeof threads, "%d", attn_blas_threads());
    char *argv[] = {(char *)python_bin(), script, "--threads", threads, NULL};
    g_torch.pid = spawn(argv, &g_torch.to, &g_torch.from, false);
    if (g_torch.pid < 0 || !g_torch.to || !g_torch.from) {
        snprintf(g_torch.why, sizeof g_torch.why, "cannot start %s", argv[0]);
        return false;
    }
    if (!fgets(line, sizeof line, g_torch.from) || strncmp(line, "ready", 5) != 0) {
        snprintf(g_torch.why, sizeof g_torch.why, "%.*s",
                 (int)strcspn(line, "\n"),
                 strncmp(line, "error ", 6) == 0 ? line + 6 : "the PyTorch helper did not start");
        return false;
    }
    fprintf(stderr, "attn_bench: PyTorch helper: %s", line + 6);
    g_torch.ok = true;
    return true;
}

static void torch_stop(void)
{
    if (!g_torch.pid)
        return;
    if (g_torch.to) {
        fputs("quit\n", g_torch.to);
        fclose(g_torch.to);
    }
    if (g_torch.from)
        fclose(g_torch.from);
    waitpid(g_torch.pid, NULL, 0);
    memset(&g_torch, 0, sizeof g_torch);
}

/* Sends one command line; copies the answer (without newline) to reply. */
static bool torch_cmd(const char *cmd, char *reply, size_t len)
{
    if (!g_torch.ok)
        return false;
    fprintf(g_torch.to, "%s\n", cmd);
    fflush(g_torch.to);
    if (!fgets(reply, (int)len, g_torch.from)) {
        g_torch.ok = false;
        snprintf(g_torch.why, sizeof g_torch.why, "the PyTorch helper exited");
        snprintf(reply, len, "error %s", g_torch.why);
        return false;
    }
    reply[strcspn(reply, "\n")] = '\0';
    return strncmp(reply, "error", 5) != 0;
}

/* ---------------------------------------------------------- in-process rows */

/* What one row needs between runs: its inputs, outputs and workspace. */
typedef struct bench_state {
    size_t n, id;
    float *q, *k, *v, *out, *wts, *scr;
    attn_ws *ws;
    attn_pattern pat;
    attn_params p;
    attn_outputs o;
    attn_linear_kernel kern;
    attn_mha_config mc;
    attn_mha_weights mw;
    float *mstore;
    char *text; /* JSON in: the text to parse */
    size_t text_len;
} bench_state;

static void case_teardown(bench_state *s)
{
    if (s->k != s->q)
        free(s->k);
    if (s->v != s->q)
        free(s->v);
    free(s->q);
    free(s->out);
    free(s->wts);
    free(s->scr);
    free(s->text);
    attn_free_buffer(s->mstore);
    attn_ws_free(s->ws);
    memset(s, 0, sizeof *s);
}

/* Per-head weights [H][n][n] of a seeded block on random inputs: what a
 * multi-head answer carries (values of realistic size for the writer). */
static float *mha_weights_sample(size_t n, size_t H, attn_ws *ws)
{
    const size_t E = 64 * H;
    attn_mha_config mc = {.embed_dim = E, .num_heads = H};
    attn_mha_weights mw;
    float *store = NULL, *x = random_matrix(n, E, 7), *w = malloc(H * n * n * sizeof *w);
    attn_mha_outputs o = {.weights = w};
    bool ok = x && w && attn_mha_init_seeded(&mc, 1, true, false, &mw, &store) == ATTN_OK &&
              attn_mha_forward(ws, &mc, &mw, n, n, x, x, x, &o, NULL) == ATTN_OK;
    attn_free_buffer(store);
    free(x);
    if (!ok) {
        free(w);
        return NULL;
    }
    return w;
}

static bool json_render(const float *w, size_t H, size_t n, bool base64, srv_buf *b)
{
    srv_jw jw;
    const size_t shape[3] = {H, n, n};
    srv_buf_init(b);
    srv_jw_init(&jw, b, 0, base64);
    srv_jw_obj_begin(&jw);
    srv_jw_key(&jw, "weights");
    srv_jw_tensor(&jw, w, 3, shape);
    srv_jw_obj_end(&jw);
    return !b->oom;
}

static bool case_setup(const bench_case *c, size_t id, bench_state *s, bench_result *r)
{
    const size_t n = case_n(c), d = c->d, H = c->heads;
    char cmd[160], reply[200];
    memset(s, 0, sizeof *s);
    memset(r, 0, sizeof *r);
    s->n = n;
    s->id = id;
    s->ws = attn_ws_create(NULL);
    bool ok = s->ws != NULL;
    switch (c->kind) {
    case BENCH_SOFTMAX:
    case BENCH_SGEMM_SDPA:
        s->q = random_matrix(n, d, 1);
        s->k = random_matrix(n, d, 2);
        s->v = random_matrix(n, d, 3);
        s->out = malloc(n * d * sizeof *s->out);
        if (c->kind == BENCH_SGEMM_SDPA)
            s->scr = malloc(n * n * sizeof *s->scr);
        ok = ok && s->q && s->k && s->v && s->out && (c->kind == BENCH_SOFTMAX || s->scr);
        break;
    case BENCH_LINEAR:
        s->q = s->k = s->v = random_matrix(n, d, 1);
        s->out = malloc(n * d * sizeof *s->out);
        ok = ok && s->q && s->out;
        break;
    case BENCH_MHA:
    case BENCH_SGEMM_MHA:
        s->mc = (attn_mha_config){.embed_dim = d, .num_heads = H};
        s->q = random_matrix(n, d, 1);
        s->out = malloc(n * d * sizeof *s->out);
        ok = ok && s->q && s->out &&
             attn_mha_init_seeded(&s->mc, 1, true, false, &s->mw, &s->mstore) == ATTN_OK;
        if (c->kind == BENCH_SGEMM_MHA) { /* projected q, k, v [3][n][E] and one [n][n] */
            s->wts = malloc(3 * n * d * sizeof *s->wts);
            s->scr = malloc(n * n * sizeof *s->scr);
            ok = ok && s->wts && s->scr;
        } else if (c->weights) {
            s->wts = malloc(H * n * n * sizeof *s->wts);
            ok = ok && s->wts;
        }
        s->k = s->v = s->q;
        break;
    case BENCH_TORCH_MHA:
    case BENCH_TORCH_SDPA:
        if (!torch_start()) {
            snprintf(r->error, sizeof r->error, "%s", g_torch.why);
            r->skipped = g_quick;
            case_teardown(s);
            return false;
        }
        if (c->kind == BENCH_TORCH_MHA)
            snprintf(cmd, sizeof cmd, "setup %zu mha %zu %zu %zu %d", id, n, d, H, c->weights);
        else
            snprintf(cmd, sizeof cmd, "setup %zu sdpa %zu %zu", id, n, d);
        if (!torch_cmd(cmd, reply, sizeof reply)) {
            snprintf(r->error, sizeof r->error, "torch: %.200s", reply);
            case_teardown(s);
            return false;
        }
        break;
    case BENCH_JSON_OUT:
    case BENCH_JSON_IN:
        s->wts = mha_weights_sample(n, H, s->ws);
        ok = ok && s->wts;
        if (ok && c->kind == BENCH_JSON_IN) {
            srv_buf b;
            ok = json_render(s->wts, H, n, c->base64, &b);
            s->text = srv_buf_detach(&b, &s->text_len);
            ok = ok && s->text;
        }
        break;
    case BENCH_HTTP:
        break;
    }
    if (!ok) {
        snprintf(r->error, sizeof r->error, "out of memory");
        case_teardown(s);
        return false;
    }
    s->pat =
        (attn_pattern){.has_window = true, .window_left = c->window, .window_right = c->window};
    s->p.score = ATTN_SCORE_SCALED_DOT;
    s->p.masks.causal = c->causal;
    s->p.masks.pattern = c->window > 0 ? &s->pat : NULL;
    s->o.output = s->out;
    s->kern = (attn_linear_kernel){c->fm, c->num_features, 1};
    return true;
}

/* The GEMMs attn_mha_forward runs for a self-attention block (4 projections,
 * per head QK^T and PV), with nothing in between: the ceiling. */
static void sgemm_mha(const bench_state *s, size_t n, size_t E, size_t H)
{
    const int N = (int)n, e = (int)E, hd = (int)(E / H);
    float *qkv[3] = {s->wts, s->wts + n * E, s->wts + 2 * n * E};
    const float *wp[3] = {s->mw.q_proj, s->mw.k_proj, s->mw.v_proj};
    for (int x = 0; x < 3; x++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, e, e, 1.0f, s->q, e, wp[x], e, 0.0f,
                    qkv[x], e);
    for (size_t h = 0; h < H; h++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, hd, 1.0f, qkv[0] + h * hd, e,
                    qkv[1] + h * hd, e, 0.0f, s->scr, N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, hd, N, 1.0f, s->scr, N,
                    qkv[2] + h * hd, e, 0.0f, s->out + h * hd, e);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, e, e, 1.0f, s->out, e, s->mw.out_proj,
                e, 0.0f, qkv[0], e);
}

/* One timed run; false (error in r) when the engine refuses. */
static bool case_run(const bench_case *c, bench_state *s, bench_result *r, bool keep)
{
    const size_t n = s->n, d = c->d;
    attn_status st = ATTN_OK;
    char cmd[64], reply[200];
    double t0 = now_ms(), t1 = 0;
    switch (c->kind) {
    case BENCH_SOFTMAX:
        st = attn_forward(s->ws, &s->p, n, n, d, d, d, s->q, s->k, s->v, &s->o, NULL);
        break;
    case BENCH_LINEAR:
        st = attn_linear_kernel_forward(s->ws, &s->kern, c->causal, n, n, d, d, s->q, s->k, s->v,
                                        NULL, s->out, NULL, NULL);
        break;
    case BENCH_MHA: {
        attn_mha_outputs o = {.output = s->out, .weights = s->wts};
        for (int b = 0; b < case_batch(c) && st == ATTN_OK; b++)
            st = attn_mha_forward(s->ws, &s->mc, &s->mw, n, n, s->q, s->q, s->q, &o, NULL);
        break;
    }
    case BENCH_SGEMM_MHA:
        sgemm_mha(s, n, d, c->heads);
        break;
    case BENCH_SGEMM_SDPA:
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, (int)d, 0.125f, s->q,
                    (int)d, s->k, (int)d, 0.0f, s->scr, (int)n);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)n, 1.0f,
                    s->scr, (int)n, s->v, (int)d, 0.0f, s->out, (int)d);
        break;
    case BENCH_TORCH_MHA:
    case BENCH_TORCH_SDPA: {
        double ms;
        snprintf(cmd, sizeof cmd, "run %zu %d", s->id, case_batch(c));
        if (!torch_cmd(cmd, reply, sizeof reply) || sscanf(reply, "ms %lf", &ms) != 1) {
            snprintf(r->error, sizeof r->error, "torch: %.200s", reply);
            return false;
        }
        t1 = t0 + ms * case_batch(c); /* the helper's own timing of the calls alone */
        break;
    }
    case BENCH_JSON_OUT: {
        srv_buf b;
        const bool ok = json_render(s->wts, c->heads, n, c->base64, &b);
        t1 = now_ms();
        r->bytes = (double)b.len;
        srv_buf_free(&b);
        if (!ok) {
            snprintf(r->error, sizeof r->error, "out of memory");
            return false;
        }
        break;
    }
    case BENCH_JSON_IN: {
        srv_err e;
        srv_ptr root;
        srv_tensor t;
        memset(&t, 0, sizeof t);
        srv_ptr_root(&root);
        cJSON *doc = srv_json_parse_object(s->text, s->text_len, &e);
        const bool ok = doc && srv_json_read_tensor(cJSON_GetObjectItemCaseSensitive(doc, "weights"),
                                                    &root, "weights", 3, 3, false, SIZE_MAX, &t,
                                                    &e);
        t1 = now_ms();
        r->bytes = (double)s->text_len;
        srv_tensor_free(&t);
        cJSON_Delete(doc);
        if (!ok) {
            snprintf(r->error, sizeof r->error, "json: %.200s", doc ? e.message : "parse failed");
            return false;
        }
        break;
    }
    case BENCH_HTTP:
        break;
    }
    if (t1 == 0)
        t1 = now_ms();
    if (st != ATTN_OK) {
        snprintf(r->error, sizeof r->error, "%s", attn_status_str(st));
        return false;
    }
    if (keep && r->reps < MAX_REPS)
        r->ms[r->reps++] = (t1 - t0) / case_batch(c);
    return true;
}

static int case_reps(const bench_case *c)
{
    return g_quick ? 2 : c->reps;
}

/*
 * Untimed runs of the row about to be timed, for at least LEAD_IN_MS. After
 * a call OpenBLAS's idle threads keep spinning on the cores for about
 * 0.1 s (2^28 cycles by default), in this process and in PyTorch's helper
 * alike; when rows take turns, a timed run that starts right after another
 * row shares the 2 cores with that row's spinning threads. The engine at
 * 128/256/4 measured 0.61 ms alone and 1.05 ms right after PyTorch's row
 * (PyTorch 1.47 ms alone). With the lead-in every timed run starts with the
 * previous row's threads gone quiet and its own warm, whichever side it is.
 */
#define LEAD_IN_MS 150.0

static bool lead_in(const bench_case *c, bench_state *s, bench_result *r, size_t rows)
{
    if (rows < 2 || g_quick)
        return true;
    const double t0 = now_ms();
    do {
        if (!case_run(c, s, r, false))
            return false;
    } while (now_ms() - t0 < LEAD_IN_MS);
    return true;
}

/*
 * Runs rows [idx] in this process, interleaved: one warm-up each, then round
 * after round one run of every row that still needs one. Rows that are
 * compared with each other so see the same machine (other processes, clock
 * boost) rather than one a quiet moment and the other a busy one.
 */
static void run_interleaved(const size_t *idx, size_t count, bench_result *res)
{
    static bench_state st[N_CASES];
    bool live[N_CASES];
    int most = 0;
    for (size_t x = 0; x < count; x++) {
        const bench_case *c = &cases[idx[x]];
        live[x] = case_setup(c, idx[x], &st[x], &res[idx[x]]) &&
                  case_run(c, &st[x], &res[idx[x]], false);
        most = case_reps(c) > most ? case_reps(c) : most;
    }
    for (int rep = 0; rep < most; rep++)
        for (size_t x = 0; x < count; x++)
            if (live[x] && rep < case_reps(&cases[idx[x]])) {
                live[x] = lead_in(&cases[idx[x]], &st[x], &res[idx[x]], count);
                live[x] = live[x] && case_run(&cases[idx[x]], &st[x], &res[idx[x]], true);
            }
    for (size_t x = 0; x < count; x++) {
        bench_result *r = &res[idx[x]];
        if (live[x]) {
            r->scratch_mib = (double)attn_ws_reserved(st[x].ws) / (1024.0 * 1024.0);
            summarise(r);
            r->ok = true;
        }
        if (st[x].ws)
            case_teardown(&st[x]);
    }
}

/* --child NAME: runs the case and writes "ms <t>" per rep and "scratch <MiB>" to stdout. */
static int child_main(const char *name)
{
    for (size_t i = 0; i < N_CASES; i++) {
        if (strcmp(cases[i].name, name) != 0)
            continue;
        static bench_result res[N_CASES];
        run_interleaved(&i, 1, res);
        const bench_result *r = &res[i];
        if (!r->ok) {
            printf("error %s\n", r->error);
            return 1;
        }
        for (int x = 0; x < r->reps; x++)
            printf("ms %.6f\n", r->ms[x]);
        printf("scratch %.6f\n", r->scratch_mib);
        return 0;
    }
    printf("error unknown case\n");
    return 2;
}

/* Runs a case in a fresh process of this binary; its peak RSS comes from wait4. */
static void run_child(const bench_case *c, bench_result *r)
{
    int fd[2];
    memset(r, 0, sizeof *r);
    if (pipe(fd) != 0) {
        snprintf(r->error, sizeof r->error, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->error, sizeof r->error, "fork: %s", strerror(errno));
        close(fd[0]);
        close(fd[1]);
        return;
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        char *argv[] = {"attn_bench", "--child", (char *)c->name, g_quick ? "--quick" : NULL, NULL};
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    char line[256];
    while (in && fgets(line, sizeof line, in)) {
        double x;
        if (sscanf(line, "ms %lf", &x) == 1 && r->reps < MAX_REPS)
            r->ms[r->reps++] = x;
        else if (sscanf(line, "scratch %lf", &x) == 1)
            r->scratch_mib = x;
        else if (strncmp(line, "error ", 6) == 0)
            snprintf(r->error, sizeof r->error, "%.*s", (int)strcspn(line + 6, "\n"), line + 6);
    }
    if (in)
        fclose(in);
    else
        close(fd[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (wait4(pid, &status, 0, &ru) < 0) {
        snprintf(r->error, sizeof r->error, "wait4: %s", strerror(errno));
        return;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || r->reps == 0) {
        if (!r->error[0])
            snprintf(r->error, sizeof r->error, "child exited with status %d", status);
        return;
    }
    r->peak_mib = (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
    summarise(r);
    r->ok = true;
}

/* ----------------------------------------------------------------- HTTP rows */

typedef struct server_proc {
    bool tried, ok;
    pid_t pid;
    unsigned port;
    FILE *out;
    char why[160];
} server_proc;

/* Starts a server that prints "listening on http://127.0.0.1:PORT" on stdout. */
static bool server_start(server_proc *s, char *const argv[])
{
    s->tried = true;
    s->pid = spawn(argv, NULL, &s->out, false);
    if (s->pid < 0 || !s->out) {
        snprintf(s->why, sizeof s->why, "cannot start %s", argv[0]);
        return false;
    }
    char line[256];
    struct pollfd pfd = {fileno(s->out), POLLIN, 0};
    const double deadline = now_ms() + 60000;
    while (now_ms() < deadline) {
        if (poll(&pfd, 1, 1000) <= 0)
            continue;
        if (!fgets(line, sizeof line, s->out))
            break;
        const char *at = strstr(line, "http://127.0.0.1:");
        if (at && sscanf(at, "http://127.0.0.1:%u", &s->port) == 1 && s->port) {
            s->ok = true;
            return true;
        }
    }
    snprintf(s->why, sizeof s->why, "%s did not start", argv[0]);
    return false;
}

static void server_stop(server_proc *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
    }
    if (s->out)
        fclose(s->out);
    memset(s, 0, sizeof *s);
}

/* One POST /v1/attention over a fresh connection; the status, and the body in *body. */
static int http_post(unsigned port, const char *req_body, size_t len, char **body, size_t *blen)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *body = NULL;
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "POST /v1/attention HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                      "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      len);
    bool ok = write(fd, head, (size_t)hl) == hl;
    for (size_t off = 0; ok && off < len;) {
        ssize_t w = write(fd, req_body + off, len - off);
        ok = w > 0;
        off += ok ? (size_t)w : 0;
    }
    srv_buf in;
    srv_buf_init(&in);
    char chunk[65536];
    ssize_t got;
    while (ok && (got = read(fd, chunk, sizeof chunk)) > 0)
        srv_buf_append(&in, chunk, (size_t)got);
    close(fd);
    srv_buf_append(&in, "", 1);
    if (in.oom || sscanf(in.data, "HTTP/1.%*d %d", &status) != 1) {
        srv_buf_free(&in);
        return 0;
    }
    const char *sep = strstr(in.data, "\r\n\r\n");
    if (sep) {
        *blen = in.len - 1 - (size_t)(sep + 4 - in.data);
        *body = malloc(*blen + 1);
        if (*body)
            memcpy(*body, sep + 4, *blen + 1);
    }
    srv_buf_free(&in);
    return status;
}

/* {"query": [[...]], "key": ..., "value": ...} with n rows of d values, written to path. */
static bool write_request(const char *path, size_t n, size_t d)
{
    FILE *f = fopen(path, "w");
    uint64_t seed = 11;
    if (!f)
        return false;
    const char *names[3] = {"query", "key", "value"};
    fputc('{', f);
    for (int t = 0; t < 3; t++) {
        fprintf(f, "%s\"%s\":[", t ? "," : "", names[t]);
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ",[" : "[", f);
            for (size_t j = 0; j < d; j++)
                fprintf(f, "%s%.6g", j ? "," : "", 2.0f * attn_rng_uniform(&seed) - 1.0f);
            fputc(']', f);
        }
        fputc(']', f);
    }
    fputs("}\n", f);
    return fclose(f) == 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    srv_buf b;
    char chunk[65536];
    size_t got;
    if (!f)
        return NULL;
    srv_buf_init(&b);
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        srv_buf_append(&b, chunk, got);
    fclose(f);
    return srv_buf_detach(&b, len);
}

/* Whether wrk can be run at all (a --quick run without it skips its rows). */
static bool have_program(const char *name)
{
    const char *path = getenv("PATH");
    char buf[1024];
    while (path && *path) {
        size_t l = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)l, path, name);
        if (access(buf, X_OK) == 0)
            return true;
        path += l + (path[l] == ':');
    }
    return false;
}

/* One wrk run against url with the body in body_path: requests/s, p50 and p99 (ms). */
static bool wrk_run(const char *url, const char *body_path, int seconds, double *rps, double *p50,
                    double *p99, char *err, size_t err_len)
{
    char script[512], dur[16], line[512];
    snprintf(script, sizeof script, "%s/post.lua", ATTN_BENCH_DIR);
    snprintf(dur, sizeof dur, "%ds", seconds);
    setenv("BENCH_BODY", body_path, 1);
    char *argv[] = {"wrk", "-t1", "-c8", "-d", dur, "--timeout", "10s", "-s", script, (char *)url,
                    NULL};
    FILE *out = NULL;
    pid_t pid = spawn(argv, NULL, &out, false);
    if (pid < 0 || !out) {
        snprintf(err, err_len, "cannot run wrk");
        return false;
    }
    bool ok = false;
    long long requests = 0, errors = 0, bad = 0;
    while (fgets(line, sizeof line, out))
        if (sscanf(line, "bench rps %lf p50 %lf p99 %lf requests %lld errors %lld status %lld",
                   rps, p50, p99, &requests, &errors, &bad) == 6)
            ok = true;
    fclose(out);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!ok || requests == 0) {
        snprintf(err, err_len, "wrk gave no figures (exit status %d)", status);
        return false;
    }
    if (errors > 0 || bad > 0) {
        snprintf(err, err_len, "%lld socket errors, %lld answers >= 400 of %lld", errors, bad,
                 requests);
        return false;
    }
    *p50 /= 1000.0; /* wrk reports microseconds */
    *p99 /= 1000.0;
    return true;
}

/* The HTTP rows among idx: their servers, then reps rounds of one wrk run per row. */
static void run_http(const size_t *idx, size_t count, bench_result *res)
{
    /* small and medium each get a request file, and the fixed server our answer to it */
    enum { N_SIZES = 2 };
    const size_t sizes[N_SIZES][2] = {{6, 8}, {64, 64}};
    char req_path[N_SIZES][128], ans_path[N_SIZES][128], threads[16];
    server_proc service = {0}, flask = {0}, fixed[N_SIZES];
    memset(fixed, 0, sizeof fixed);
    bool live[N_CASES];
    int most = 0;
    const int seconds = g_quick ? 1 : 2;
    const bool wrk_ok = have_program("wrk");

    snprintf(threads, sizeof threads, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    char *svc_argv[] = {ATTN_SERVER_BIN, "--port", "0", NULL};
    for (size_t x = 0; x < count; x++) {
        const bench_case *c = &cases[idx[x]];
        bench_result *r = &res[idx[x]];
        size_t sz = c->n == sizes[0][0] ? 0 : 1;
        memset(r, 0, sizeof *r);
        live[x] = false;
        most = case_reps(c) > most ? case_reps(c) : most;
        if (!wrk_ok) {
            snprintf(r->error, sizeof r->error, "wrk is not installed");
            r->skipped = g_quick;
            continue;
        }
        snprintf(req_path[sz], sizeof req_path[sz], "%s/request-%zu.json", g_tmpdir, sz);
        snprintf(ans_path[sz], sizeof ans_path[sz], "%s/answer-%zu.json", g_tmpdir, sz);
        if (!write_request(req_path[sz], sizes[sz][0], sizes[sz][1])) {
            snprintf(r->error, sizeof r->error, "cannot write %s", req_path[sz]);
            continue;
        }
        server_proc *s = c->server == HTTP_SERVICE ? &service
                         : c->server == HTTP_FLASK ? &flask
                                                   : &fixed[sz];
        if (!s->tried) {
            if (c->server == HTTP_SERVICE) {
                server_start(s, svc_argv);
            } else if (c->server == HTTP_FLASK) {
                char script[512];
                snprintf(script, sizeof script, "%s/flask_server.py", ATTN_BENCH_DIR);
                char *argv[] = {(char *)python_bin(), script, "--port", "0", "--threads", "1",
                                NULL};
                server_start(s, argv);
            } else { /* the service's own answer to this request, as the fixed body */
                size_t len = 0, alen = 0;
                char *body = slurp(req_path[sz], &len), *answer = NULL;
                FILE *f;
                if (!service.ok)
                    server_start(&service, svc_argv);
                if (service.ok && body &&
                    http_post(service.port, body, len, &answer, &alen) == 200 && answer &&
                    (f = fopen(ans_path[sz], "wb"))) {
                    fwrite(answer, 1, alen, f);
                    fclose(f);
                    char *argv[] = {ATTN_BENCH_MHD_BIN, "--threads", threads, "--body-file",
                                    ans_path[sz], NULL};
                    server_start(s, argv);
                } else {
                    s->tried = true;
                    snprintf(s->why, sizeof s->why, "no answer from attention-server to copy");
                }
                free(body);
                free(answer);
            }
        }
        if (!s->ok) {
            snprintf(r->error, sizeof r->error, "%s", s->why);
            r->skipped = g_quick && c->server == HTTP_FLASK;
            continue;
        }
        /* Every server must answer the request with 200 before it is timed. */
        size_t len = 0, alen = 0;
        char *body = slurp(req_path[sz], &len), *answer = NULL;
        int code = body ? http_post(s->port, body, len, &answer, &alen) : 0;
        free(body);
        free(answer);
        if (code != 200) {
            snprintf(r->error, sizeof r->error, "the server answered %d", code);
            continue;
        }
        live[x] = true;
    }
    for (int rep = 0; rep < most; rep++) {
        for (size_t x = 0; x < count; x++) {
            const bench_case *c = &cases[idx[x]];
            bench_result *r = &res[idx[x]];
            if (!live[x] || rep >= case_reps(c))
                continue;
            const size_t sz = c->n == sizes[0][0] ? 0 : 1;
            const server_proc *s = c->server == HTTP_SERVICE ? &service
                                   : c->server == HTTP_FLASK ? &flask
                                                             : &fixed[sz];
            char url[96];
            double rps, p50, p99;
            snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/attention", s->port);
            fprintf(stderr, "attn_bench: %s, round %d ...\n", c->name, rep + 1);
            if (!wrk_run(url, req_path[sz], seconds, &rps, &p50, &p99, r->error,
                         sizeof r->error)) {
                live[x] = false;
                continue;
            }
            r->ms[r->reps] = rps;
            r->p50[r->reps] = p50;
            r->p99[r->reps] = p99;
            r->reps++;
        }
    }
    for (size_t x = 0; x < count; x++) {
        bench_result *r = &res[idx[x]];
        if (live[x] && r->reps > 0) {
            summarise(r);
            r->p50_med = median_of(r->p50, r->reps, NULL, NULL);
            r->p99_med = median_of(r->p99, r->reps, NULL, NULL);
            r->ok = true;
        }
    }
    server_stop(&service);
    server_stop(&flask);
    for (int z = 0; z < N_SIZES; z++) {
        server_stop(&fixed[z]);
        unlink(req_path[z]);
        unlink(ans_path[z]);
    }
}

/* -------------------------------------------------------------------- table */

static int case_index(const char *name)
{
    for (size_t i = 0; i < N_CASES; i++)
        if (name && strcmp(cases[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void usage(void)
{
    printf("usage: attn_bench [--quick] [--only NAME]...\n"
           "  --quick      tiny sizes, 2 repeats, checks not enforced, rows whose tools are\n"
           "               missing skipped (smoke test)\n"
           "  --only NAME  run the named rows only (repeatable); rows:\n");
    for (size_t i = 0; i < N_CASES; i++)
        printf("               \"%s\"\n", cases[i].name);
}

static const char *verdict(bool pass, double bound)
{
    if (bound <= 0)
        return "";
    if (g_quick)
        return ": not checked";
    return pass ? ": PASS" : ": FAIL";
}

/* Appends one check's text to out; returns 1 when it failed (and counts). */
static int check_text(const bench_case *c, const bench_result *r, const bench_check *k,
                      const bench_result *res, char *out, size_t len)
{
    const int o = case_index(k->other);
    const size_t used = strlen(out);
    char *p = out + used;
    const size_t left = len - used;
    const char *sep = used ? "; " : "";
    if (k->kind == CHECK_NONE || o < 0)
        return 0;
    const bench_result *b = &res[o];
    if (!b->ok) {
        snprintf(p, left, "%sno \"%s\" to compare with%s", sep, k->other,
                 g_quick || k->bound <= 0 ? "" : ": FAIL");
        return !g_quick && k->bound > 0;
    }
    double ratio = 0;
    bool pass = false;
    char bound[48] = "";
    switch (k->kind) {
    case CHECK_FASTER:
        ratio = b->median / r->median;
        pass = ratio >= k->bound;
        if (k->bound > 0)
            snprintf(bound, sizeof bound, " (>= %.0fx)", k->bound);
        snprintf(p, left, "%s%.1fx faster than \"%s\"%s%s", sep, ratio, k->other,
                 verdict(pass, k->bound), bound);
        break;
    case CHECK_TIME:
        ratio = r->median / b->median;
        pass = ratio <= k->bound;
        if (k->bound > 0)
            snprintf(bound, sizeof bound, " (<= %.2fx)", k->bound);
        snprintf(p, left, "%s%.2fx torch's time%s%s", sep, ratio, verdict(pass, k->bound), bound);
        break;
    case CHECK_CEILING:
        ratio = b->median / r->median;
        pass = ratio >= k->bound;
        if (k->bound > 0)
            snprintf(bound, sizeof bound, " (>= %.0f%%)", k->bound * 100);
        snprintf(p, left, "%s%.0f%% of sgemm's GFLOP/s%s%s", sep, ratio * 100,
                 verdict(pass, k->bound), bound);
        break;
    case CHECK_RPS:
        ratio = r->median / b->median;
        pass = ratio >= k->bound;
        if (k->bound > 0 && k->bound < 1)
            snprintf(bound, sizeof bound, " (>= %.0f%%)", k->bound * 100);
        else if (k->bound > 0)
            snprintf(bound, sizeof bound, " (>= %.0fx)", k->bound);
        if (o >= 0 && cases[o].server == HTTP_FIXED)
            snprintf(p, left, "%s%.0f%% of the fixed-body req/s%s%s", sep, ratio * 100,
                     verdict(pass, k->bound), bound);
        else
            snprintf(p, left, "%s%.1fx flask's req/s%s%s", sep, ratio, verdict(pass, k->bound),
                     bound);
        break;
    case CHECK_NONE:
        break;
    }
    (void)c;
    return !g_quick && k->bound > 0 && !pass;
}

int main(int argc, char **argv)
{
    bool selected[N_CASES], any_only = false;
    memset(selected, 0, sizeof selected);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            g_quick = true;
        } else if (strcmp(argv[i], "--child") == 0 && i + 1 < argc) {
            for (int j = i + 2; j < argc; j++)
                g_quick |= strcmp(argv[j], "--quick") == 0;
            return child_main(argv[i + 1]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            int x = case_index(argv[++i]);
            if (x < 0) {
                fprintf(stderr, "attn_bench: no row named \"%s\"\n", argv[i]);
                usage();
                return 2;
            }
            selected[x] = any_only = true;
        } else {
            usage();
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/attn_bench.XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        fprintf(stderr, "attn_bench: mkdtemp: %s\n", strerror(errno));
        return 1;
    }

    static bench_result res[N_CASES];
    size_t inproc[N_CASES], http[N_CASES], n_inproc = 0, n_http = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        if (any_only && !selected[i])
            continue;
        if (cases[i].kind == BENCH_HTTP)
            http[n_http++] = i;
        else if (!cases[i].child)
            inproc[n_inproc++] = i;
    }
    double load0[3] = {0, 0, 0}, load1[3] = {0, 0, 0};
    getloadavg(load0, 3);
    /* Fresh-process rows first, while this process is small: a child's peak
     * resident set (ru_maxrss) also counts the pages it shared with this
     * process between fork and exec. */
    for (size_t i = 0; i < N_CASES; i++) {
        if ((any_only && !selected[i]) || !cases[i].child)
            continue;
        fprintf(stderr, "attn_bench: %s (own process) ...\n", cases[i].name);
        run_child(&cases[i], &res[i]);
    }
    fprintf(stderr, "attn_bench: %zu in-process rows, interleaved ...\n", n_inproc);
    run_interleaved(inproc, n_inproc, res);
    torch_stop();
    if (n_http) {
        fprintf(stderr, "attn_bench: %zu HTTP rows under wrk, interleaved ...\n", n_http);
        run_http(http, n_http, res);
    }
    getloadavg(load1, 3);
    rmdir(g_tmpdir);

    printf("attn_bench%s: %s, %d BLAS thread(s), %ld CPU(s); load average %.2f before, %.2f "
           "after (1 min)\n",
           g_quick ? " --quick (sizes too small for the checks)" : "", attn_blas_info(),
           attn_blas_threads(), sysconf(_SC_NPROCESSORS_ONLN), load0[0], load1[0]);
    printf("times in ms (HTTP rows: requests/s), median [min - max] of the reps\n");
    printf("%-26s %6s %4s %4s %11s %25s %9s %9s  %s\n", "case", "n", "d|E", "reps", "median",
           "[min - max]", "peak MiB", "GFLOP/s", "notes and checks");
    int failed = 0, broken = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        const bench_case *c = &cases[i];
        const bench_result *r = &res[i];
        if (any_only && !selected[i])
            continue;
        const size_t n = case_n(c);
        if (!r->ok) {
            printf("%-26s %6zu %4zu  %s: %s\n", c->name, n, c->d,
                   r->skipped ? "skipped" : "error", r->error);
            broken += !r->skipped;
            continue;
        }
        char range[48], med[24], peak[16] = "-", gf[16] = "-", check[256] = "";
        const int digits = r->median < 0.1 ? 4 : 2; /* the tiny rows are microseconds */
        snprintf(range, sizeof range, "[%.*f - %.*f]", digits, r->min, digits, r->max);
        snprintf(med, sizeof med, "%.*f", digits, r->median);
        if (c->child)
            snprintf(peak, sizeof peak, "%.1f", r->peak_mib);
        const double flops = case_flops(c);
        if (flops > 0)
            snprintf(gf, sizeof gf, "%.1f", flops / (r->median * 1e6));
        if (c->kind == BENCH_HTTP)
            snprintf(check, sizeof check, "req/s; p50 %.3f ms, p99 %.3f ms", r->p50_med,
                     r->p99_med);
        else if (c->kind == BENCH_JSON_OUT || c->kind == BENCH_JSON_IN)
            snprintf(check, sizeof check, "[%zu][%zu][%zu] weights, %.1f MB, %.0f MB/s", c->heads,
                     n, n, r->bytes / 1e6, r->bytes / 1e3 / r->median);
        for (int k = 0; k < 2; k++)
            failed += check_text(c, r, &c->checks[k], res, check, sizeof check);
        if (c->max_peak_mib > 0) {
            const bool pass = r->peak_mib < c->max_peak_mib;
            snprintf(check + strlen(check), sizeof check - strlen(check),
                     "%speak %.1f MiB%s (< %.0f MiB)", check[0] ? "; " : "", r->peak_mib,
                     verdict(pass, 1), c->max_peak_mib);
            failed += !g_quick && !pass;
        }
        printf("%-26s %6zu %4zu %4d %11s %25s %9s %9s  %s\n", c->name, n, c->d, r->reps, med,
               range, peak, gf, check);
    }
    printf("rows: softmax = attn_forward (output only, q, k, v [n][d]); mha = attn_mha_forward "
           "(self-attention,\nx [1][n][E], H heads, in_proj and out_proj with bias; \"weights\": "
           "per-head weights [H][n][n]);\ntorch = the same in PyTorch (nn.MultiheadAttention "
           "batch_first, need_weights, average_attn_weights=False;\nsdpa: scaled dot product "
           "attention), same BLAS thread count; sgemm = only the GEMMs of that row\n(cblas_sgemm, "
           "the ceiling); json = the response writer and the request reader on per-head "
           "weights;\nlinear = attn_linear_kernel_forward and softmax dense 32768 run in a fresh "
           "process (peak MiB is\nits whole resident set; favor: seed 1); http = wrk -t1 -c8 "
           "POST /v1/attention (n x d query,\nkey, value; answer: output and weights) against "
           "attention-server, a libmicrohttpd server\nanswering our answer as a fixed body, and "
           "Flask + PyTorch (tests/bench/flask_server.py).\n");
    if (broken)
        return 1;
    return failed ? 1 : 0;
}
