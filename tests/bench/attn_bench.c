/* attn_bench.c - engine benchmark: one table of named cases, medians with min-max, PASS/FAIL
 * checks. */
#include "attn.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * Every row of the table is a bench_case, measured in the same run: `reps`
 * timed runs after one warm-up, reported as median [min - max]. Cases marked
 * `child` run in a fresh process (this binary re-executed with --child NAME),
 * so their peak resident memory (wait4's ru_maxrss) is theirs alone: inputs,
 * outputs, the engine's scratch and the process itself.
 *
 * Rows compare with each other by name (`baseline`, `min_speedup`) or with a
 * memory bound (`max_peak_mib`); the verdicts print as PASS/FAIL and the exit
 * status is 1 when one fails (not in --quick mode, whose sizes are too small
 * for the bounds to mean anything; it only keeps the program from rotting).
 * Further kinds of rows (another library on the same inputs, a load
 * generator against the server) are new bench_kind values with their own
 * runner: the table, the statistics and the checks stay as they are.
 */

typedef enum bench_kind {
    BENCH_SOFTMAX, /* attn_forward, output only */
    BENCH_LINEAR,  /* attn_linear_kernel_forward, output only */
} bench_kind;

typedef struct bench_case {
    const char *name; /* row label and the argument of --child / --only */
    bench_kind kind;
    size_t n, d;    /* sequence length (n = m, self-attention) and head width */
    size_t quick_n; /* n in --quick mode */
    attn_causal causal;
    int64_t window;       /* softmax: pattern window w, |i - j| <= w (0: dense) */
    attn_feature_map fm;  /* linear: ELU or FAVOR */
    size_t num_features;  /* favor: r */
    bool child;           /* run in its own process and report its peak RSS */
    int reps;             /* timed runs (after one warm-up) */
    const char *baseline; /* speed-up check against this row's median, or NULL */
    double min_speedup;   /* PASS when baseline median / this median >= min_speedup */
    double max_peak_mib;  /* PASS when peak RSS < this many MiB (0: no check) */
} bench_case;

static const bench_case cases[] = {
    {"softmax dense", BENCH_SOFTMAX, 4096, 64, 256, ATTN_CAUSAL_NONE, 0, 0, 0, false, 7, NULL, 0,
     0},
    {"softmax window 64", BENCH_SOFTMAX, 4096, 64, 256, ATTN_CAUSAL_NONE, 64, 0, 0, false, 7,
     "softmax dense", 10, 0},
    {"softmax causal dense", BENCH_SOFTMAX, 4096, 64, 256, ATTN_CAUSAL_TOP_LEFT, 0, 0, 0, false, 7,
     NULL, 0, 0},
    {"softmax causal window 64", BENCH_SOFTMAX, 4096, 64, 256, ATTN_CAUSAL_TOP_LEFT, 64, 0, 0,
     false, 7, "softmax causal dense", 10, 0},
    {"linear elu", BENCH_LINEAR, 65536, 64, 512, ATTN_CAUSAL_NONE, 0, ATTN_FEATURE_MAP_ELU, 0, true,
     7, NULL, 0, 64},
    {"linear elu causal", BENCH_LINEAR, 65536, 64, 512, ATTN_CAUSAL_TOP_LEFT, 0,
     ATTN_FEATURE_MAP_ELU, 0, true, 7, NULL, 0, 64},
    {"favor r=256", BENCH_LINEAR, 65536, 64, 512, ATTN_CAUSAL_NONE, 0, ATTN_FEATURE_MAP_FAVOR, 256,
     true, 5, NULL, 0, 0},
    {"favor r=256 causal", BENCH_LINEAR, 65536, 64, 512, ATTN_CAUSAL_TOP_LEFT, 0,
     ATTN_FEATURE_MAP_FAVOR, 256, true, 5, NULL, 0, 0},
};

#define N_CASES (sizeof cases / sizeof cases[0])
#define MAX_REPS 64

typedef struct bench_result {
    bool ok;
    int reps;
    double ms[MAX_REPS];
    double median, min, max;
    double peak_mib;    /* child rows: peak resident set of the process */
    double scratch_mib; /* engine workspace after the runs */
    char error[128];
} bench_result;

static bool g_quick;

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

static void summarise(bench_result *r)
{
    double s[MAX_REPS];
    memcpy(s, r->ms, (size_t)r->reps * sizeof *s);
    qsort(s, (size_t)r->reps, sizeof *s, cmp_double);
    r->min = s[0];
    r->max = s[r->reps - 1];
    r->median = r->reps % 2 ? s[r->reps / 2] : 0.5 * (s[r->reps / 2 - 1] + s[r->reps / 2]);
}

/* Inputs in [-1, 1) from splitmix64, the same for every row of one size. */
static float *random_matrix(size_t rows, size_t cols, uint64_t seed)
{
    float *x = malloc(rows * cols * sizeof *x);
    if (!x)
        return NULL;
    for (size_t i = 0; i < rows * cols; i++)
        x[i] = 2.0f * attn_rng_uniform(&seed) - 1.0f;
    return x;
}

/* What one row needs between runs: its inputs, output and workspace. */
typedef struct bench_state {
    size_t n;
    float *q, *k, *v, *out;
    attn_ws *ws;
    attn_pattern pat;
    attn_params p;
    attn_outputs o;
    attn_linear_kernel kern;
} bench_state;

static void case_teardown(bench_state *s)
{
    if (s->k != s->q)
        free(s->k);
    if (s->v != s->q)
        free(s->v);
    free(s->q);
    free(s->out);
    attn_ws_free(s->ws);
    memset(s, 0, sizeof *s);
}

/*
 * Softmax rows get separate q, k, v; linear rows are self-attention on one
 * input x [n][d] (q = k = v = x), as a layer's input would be, which keeps
 * the process to the input, the output and the engine's scratch.
 */
static bool case_setup(const bench_case *c, bench_state *s, bench_result *r)
{
    const size_t n = g_quick ? c->quick_n : c->n, d = c->d;
    memset(s, 0, sizeof *s);
    memset(r, 0, sizeof *r);
    s->n = n;
    s->ws = attn_ws_create(NULL);
    if (c->kind == BENCH_SOFTMAX) {
        s->q = random_matrix(n, d, 1);
        s->k = random_matrix(n, d, 2);
        s->v = random_matrix(n, d, 3);
    } else {
        s->q = s->k = s->v = random_matrix(n, d, 1);
    }
    s->out = malloc(n * d * sizeof *s->out);
    if (!s->ws || !s->q || !s->k || !s->v || !s->out) {
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

/* One timed run; false (error in r) when the engine refuses. */
static bool case_run(const bench_case *c, bench_state *s, bench_result *r, bool keep)
{
    const size_t n = s->n, d = c->d;
    const double t0 = now_ms();
    attn_status st = c->kind == BENCH_SOFTMAX
                         ? attn_forward(s->ws, &s->p, n, n, d, d, d, s->q, s->k, s->v, &s->o, NULL)
                         : attn_linear_kernel_forward(s->ws, &s->kern, c->causal, n, n, d, d, s->q,
                                                      s->k, s->v, NULL, s->out, NULL, NULL);
    const double t1 = now_ms();
    if (st != ATTN_OK) {
        snprintf(r->error, sizeof r->error, "%s", attn_status_str(st));
        return false;
    }
    if (keep && r->reps < MAX_REPS)
        r->ms[r->reps++] = t1 - t0;
    return true;
}

static int case_reps(const bench_case *c)
{
    return g_quick ? 2 : c->reps;
}

/*
 * Runs rows [idx] in this process, interleaved: one warm-up each, then round
 * after round one run of every row that still needs one. Rows that are
 * compared with each other so see the same machine (other processes, clock
 * boost) rather than one a quiet moment and the other a busy one.
 */
static void run_interleaved(const size_t *idx, size_t count, bench_result *res)
{
    bench_state st[N_CASES];
    bool live[N_CASES];
    int most = 0;
    for (size_t x = 0; x < count; x++) {
        const bench_case *c = &cases[idx[x]];
        live[x] = case_setup(c, &st[x], &res[idx[x]]) && case_run(c, &st[x], &res[idx[x]], false);
        most = case_reps(c) > most ? case_reps(c) : most;
    }
    for (int rep = 0; rep < most; rep++)
        for (size_t x = 0; x < count; x++)
            if (live[x] && rep < case_reps(&cases[idx[x]]))
                live[x] = case_run(&cases[idx[x]], &st[x], &res[idx[x]], true);
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
        bench_result res[N_CASES];
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
           "  --quick      tiny sizes, 2 repeats, checks not enforced (smoke test)\n"
           "  --only NAME  run the named rows only (repeatable); rows:\n");
    for (size_t i = 0; i < N_CASES; i++)
        printf("               \"%s\"\n", cases[i].name);
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

    bench_result res[N_CASES];
    size_t inproc[N_CASES], n_inproc = 0;
    memset(res, 0, sizeof res);
    for (size_t i = 0; i < N_CASES; i++)
        if ((!any_only || selected[i]) && !cases[i].child)
            inproc[n_inproc++] = i;
    fprintf(stderr, "attn_bench: %zu in-process rows, interleaved ...\n", n_inproc);
    run_interleaved(inproc, n_inproc, res);
    for (size_t i = 0; i < N_CASES; i++) {
        if ((any_only && !selected[i]) || !cases[i].child)
            continue;
        fprintf(stderr, "attn_bench: %s (own process) ...\n", cases[i].name);
        run_child(&cases[i], &res[i]);
    }

    printf("attn_bench%s: %s, %d BLAS thread(s), %ld CPU(s); times in ms, median [min - max]\n",
           g_quick ? " --quick (sizes too small for the checks)" : "", attn_blas_info(),
           attn_blas_threads(), sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-26s %6s %4s %5s %10s %23s %9s %9s  %s\n", "case", "n", "d", "reps", "median",
           "[min - max]", "peak MiB", "scratch", "check");
    int failed = 0, broken = 0;
    for (size_t i = 0; i < N_CASES; i++) {
        const bench_case *c = &cases[i];
        const bench_result *r = &res[i];
        if (any_only && !selected[i])
            continue;
        const size_t n = g_quick ? c->quick_n : c->n;
        if (!r->ok) {
            printf("%-26s %6zu %4zu  error: %s\n", c->name, n, c->d, r->error);
            broken++;
            continue;
        }
        char range[48], peak[16] = "-", check[96] = "";
        snprintf(range, sizeof range, "[%.2f - %.2f]", r->min, r->max);
        if (c->child)
            snprintf(peak, sizeof peak, "%.1f", r->peak_mib);
        int b = case_index(c->baseline);
        if (b >= 0 && res[b].ok) {
            const double ratio = res[b].median / r->median;
            const bool pass = ratio >= c->min_speedup;
            snprintf(check, sizeof check, "%.1fx faster than \"%s\": %s (>= %.0fx)", ratio,
                     c->baseline,
                     g_quick ? "not checked"
                     : pass  ? "PASS"
                             : "FAIL",
                     c->min_speedup);
            failed += !g_quick && !pass;
        }
        if (c->max_peak_mib > 0) {
            const bool pass = r->peak_mib < c->max_peak_mib;
            snprintf(check + strlen(check), sizeof check - strlen(check),
                     "%speak %.1f MiB: %s (< %.0f MiB)", check[0] ? "; " : "", r->peak_mib,
                     g_quick ? "not checked"
                     : pass  ? "PASS"
                             : "FAIL",
                     c->max_peak_mib);
            failed += !g_quick && !pass;
        }
        printf("%-26s %6zu %4zu %5d %10.2f %23s %9s %9.2f  %s\n", c->name, n, c->d, r->reps,
               r->median, range, peak, r->scratch_mib, check);
    }
    printf("rows: softmax = attn_forward (output only, q, k, v [n][d]); linear = "
           "attn_linear_kernel_forward\n(output only, self-attention q = k = v = x [n][d], run "
           "in a fresh process: peak MiB is its whole resident set;\nscratch MiB is the engine "
           "workspace). favor: seed 1.\n");
    if (broken)
        return 1;
    return failed ? 1 : 0;
}
