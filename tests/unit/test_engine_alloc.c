/* test_engine_alloc.c - libattn memory handling (failing the Nth allocation, leaks, reuse) and
 * argument errors. */
#include "attn.h"

#include <check.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ a counting, failing allocator */

typedef struct counter {
    size_t n_calls; /* alloc requests */
    size_t n_ok;    /* successful allocations */
    size_t n_free;  /* frees of non-NULL pointers */
    size_t fail_at; /* the request (1-based) that fails; 0 = none */
} counter;

static void *counting_alloc(size_t n_bytes, void *user)
{
    counter *c = user;
    c->n_calls++;
    if (c->fail_at && c->n_calls == c->fail_at)
        return NULL;
    void *p = malloc(n_bytes);
    if (p)
        c->n_ok++;
    return p;
}

static void counting_free(void *ptr, void *user)
{
    counter *c = user;
    if (ptr) {
        c->n_free++;
        free(ptr);
    }
}

static attn_allocator allocator_for(counter *c)
{
    attn_allocator al = {counting_alloc, counting_free, c};
    return al;
}

/* ------------------------------------------------------------ problems to run */

static uint64_t g_rng;

static float *rand_floats(size_t count)
{
    float *x = malloc((count ? count : 1) * sizeof(float));
    ck_assert(x != NULL);
    for (size_t i = 0; i < count; i++) {
        uint64_t z = (g_rng += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        z ^= z >> 31;
        x[i] = (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return x;
}

/* One single-head problem (additive score: two scratch pieces) and one multi-head problem. */
typedef struct problem {
    size_t n, m, d, da;
    float *q, *k, *v, *w1, *w2, *va;
    attn_params p;
    float *out, *weights;
    /* multi-head */
    attn_mha_config cfg;
    attn_mha_weights mw;
    float *store;
    size_t keys;
    float *mout, *mavg;
} problem;

static problem problem_make(void)
{
    problem pr = {.n = 150, .m = 97, .d = 24, .da = 12};
    g_rng = 11;
    pr.q = rand_floats(pr.n * pr.d);
    pr.k = rand_floats(pr.m * pr.d);
    pr.v = rand_floats(pr.m * pr.d);
    pr.w1 = rand_floats(pr.da * pr.d);
    pr.w2 = rand_floats(pr.da * pr.d);
    pr.va = rand_floats(pr.da);
    pr.p.score = ATTN_SCORE_ADDITIVE;
    pr.p.w1 = pr.w1;
    pr.p.w2 = pr.w2;
    pr.p.v = pr.va;
    pr.p.da = pr.da;
    pr.p.masks.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    pr.out = calloc(pr.n * pr.d, sizeof(float));
    pr.weights = calloc(pr.n * pr.m, sizeof(float));

    pr.cfg.embed_dim = pr.d;
    pr.cfg.num_heads = 4;
    pr.cfg.num_kv_heads = 2;
    pr.cfg.add_zero_attn = true;
    pr.cfg.attn.score = ATTN_SCORE_SCALED_DOT;
    ck_assert_int_eq(attn_mha_init_seeded(&pr.cfg, 5, true, true, &pr.mw, &pr.store), ATTN_OK);
    pr.keys = attn_mha_keys(&pr.cfg, &pr.mw, pr.m);
    pr.mout = calloc(pr.n * pr.d, sizeof(float));
    pr.mavg = calloc(pr.n * pr.keys, sizeof(float));
    ck_assert(pr.out && pr.weights && pr.mout && pr.mavg);
    return pr;
}

static void problem_free(problem *pr)
{
    free(pr->q);
    free(pr->k);
    free(pr->v);
    free(pr->w1);
    free(pr->w2);
    free(pr->va);
    free(pr->out);
    free(pr->weights);
    free(pr->mout);
    free(pr->mavg);
    attn_free_buffer(pr->store);
}

typedef attn_status (*run_fn)(attn_ws *ws, problem *pr, float *result);

/* attn_forward without weights: output only (scores in block scratch). */
static attn_status run_single(attn_ws *ws, problem *pr, float *result)
{
    attn_outputs o = {.output = result};
    return attn_forward(ws, &pr->p, pr->n, pr->m, pr->d, pr->d, pr->d, pr->q, pr->k, pr->v, &o,
                        NULL);
}

/* attn_mha_forward, cross attention with weights_avg but no per-head weights. */
static attn_status run_mha(attn_ws *ws, problem *pr, float *result)
{
    attn_mha_outputs o = {.output = result, .weights_avg = pr->mavg};
    return attn_mha_forward(ws, &pr->cfg, &pr->mw, pr->n, pr->m, pr->q, pr->k, pr->v, &o, NULL);
}

/*
 * For every N up to the allocations a successful first call makes (workspace
 * creation included), fails the Nth: the call returns ATTN_ERR_NOMEM, a later
 * call on the same workspace with allocations working again succeeds with the
 * same result, and every block is given back by attn_ws_free.
 */
static void fail_every_allocation(run_fn run, const char *name)
{
    problem pr = problem_make();
    const size_t count = pr.n * pr.d;
    float *want = calloc(count, sizeof(float)), *got = calloc(count, sizeof(float));
    ck_assert(want && got);

    counter c = {0};
    attn_allocator al = allocator_for(&c);
    attn_ws *ws = attn_ws_create(&al);
    ck_assert(ws != NULL);
    ck_assert_int_eq(run(ws, &pr, want), ATTN_OK);
    const size_t total = c.n_calls;
    /* The second call of the same shape merges what the first chained into one
     * block (at most one allocation); from then on calls allocate nothing. */
    ck_assert_int_eq(run(ws, &pr, got), ATTN_OK);
    ck_assert_uint_le(c.n_calls, total + 1);
    const size_t settled = c.n_calls;
    const size_t reserved = attn_ws_reserved(ws);
    for (int again = 0; again < 3; again++) {
        ck_assert_int_eq(run(ws, &pr, got), ATTN_OK);
        ck_assert_uint_eq(c.n_calls, settled);
        ck_assert_uint_eq(attn_ws_reserved(ws), reserved);
        ck_assert_mem_eq(want, got, count * sizeof(float));
    }
    attn_ws_free(ws);
    ck_assert_uint_eq(c.n_ok, c.n_free);
    printf("%s: a first call makes %zu allocations (workspace included)\n", name, total);
    ck_assert_uint_ge(total, 2);

    for (size_t fail = 1; fail <= total; fail++) {
        counter f = {.fail_at = fail};
        attn_allocator fal = allocator_for(&f);
        attn_ws *fws = attn_ws_create(&fal);
        if (!fws) {
            ck_assert_uint_eq(fail, 1); /* only the workspace itself */
            ck_assert_uint_eq(f.n_ok, f.n_free);
            continue;
        }
        ck_assert_msg(run(fws, &pr, got) == ATTN_ERR_NOMEM,
                      "%s: failing allocation %zu of %zu "
                      "did not give ATTN_ERR_NOMEM",
                      name, fail, total);
        f.fail_at = 0;
        memset(got, 0, count * sizeof(float));
        ck_assert_int_eq(run(fws, &pr, got), ATTN_OK);
        ck_assert_msg(memcmp(want, got, count * sizeof(float)) == 0,
                      "%s: result after recovering from failure %zu differs", name, fail);
        attn_ws_free(fws);
        ck_assert_msg(f.n_ok == f.n_free, "%s: failure %zu: %zu allocations, %zu frees", name, fail,
                      f.n_ok, f.n_free);
    }
    free(want);
    free(got);
    problem_free(&pr);
}

START_TEST(attn_forward_each_failed_allocation_returns_nomem_then_recovers)
{
    fail_every_allocation(run_single, "attn_forward");
}
END_TEST

START_TEST(attn_mha_forward_each_failed_allocation_returns_nomem_then_recovers)
{
    fail_every_allocation(run_mha, "attn_mha_forward");
}
END_TEST

START_TEST(workspace_keeps_largest_block_trim_gives_it_back_no_leak)
{
    problem pr = problem_make();
    counter c = {0};
    attn_allocator al = allocator_for(&c);
    attn_ws *ws = attn_ws_create(&al);
    ck_assert_uint_eq(attn_ws_reserved(ws), 0);
    ck_assert_int_eq(run_mha(ws, &pr, pr.mout), ATTN_OK);
    ck_assert_int_eq(run_mha(ws, &pr, pr.mout), ATTN_OK); /* settles on one block */
    const size_t reserved = attn_ws_reserved(ws);
    ck_assert_uint_gt(reserved, 0);
    /* a smaller call reuses what is there */
    const size_t calls = c.n_calls;
    attn_outputs o = {.output = pr.out};
    ck_assert_int_eq(attn_forward(ws, &pr.p, 3, 5, pr.d, pr.d, pr.d, pr.q, pr.k, pr.v, &o, NULL),
                     ATTN_OK);
    ck_assert_uint_eq(c.n_calls, calls);
    ck_assert_uint_eq(attn_ws_reserved(ws), reserved);
    /* trim gives memory back; the workspace keeps working */
    attn_ws_trim(ws, 0);
    ck_assert_uint_eq(attn_ws_reserved(ws), 0);
    ck_assert_uint_eq(c.n_ok, c.n_free + 1); /* the workspace struct itself */
    ck_assert_int_eq(run_mha(ws, &pr, pr.mout), ATTN_OK);
    attn_ws_trim(ws, SIZE_MAX); /* nothing above the limit: kept */
    ck_assert_uint_gt(attn_ws_reserved(ws), 0);
    attn_ws_free(ws);
    ck_assert_uint_eq(c.n_ok, c.n_free);
    attn_ws_free(NULL);
    attn_ws_trim(NULL, 0);
    ck_assert_uint_eq(attn_ws_reserved(NULL), 0);
    problem_free(&pr);
}
END_TEST

START_TEST(workspace_create_rejects_half_allocator_and_reports_failure)
{
    counter c = {.fail_at = 1};
    attn_allocator half = {counting_alloc, NULL, &c};
    ck_assert_ptr_null(attn_ws_create(&half));
    attn_allocator failing = allocator_for(&c);
    ck_assert_ptr_null(attn_ws_create(&failing));
    attn_ws *ws = attn_ws_create(NULL);
    ck_assert_ptr_nonnull(ws);
    attn_ws_free(ws);
}
END_TEST

START_TEST(seeded_init_invalid_config_allocates_nothing)
{
    attn_mha_weights w;
    float *store = (float *)&w; /* must stay untouched on error */
    attn_mha_config bad = {.embed_dim = 10, .num_heads = 3};
    ck_assert_int_eq(attn_mha_init_seeded(&bad, 0, true, false, &w, &store), ATTN_ERR_INVALID);
    ck_assert_ptr_eq(store, (float *)&w);
    attn_mha_config zero = {.embed_dim = 0, .num_heads = 1};
    ck_assert_int_eq(attn_mha_init_seeded(&zero, 0, true, false, &w, &store), ATTN_ERR_INVALID);
    attn_mha_config gqa = {.embed_dim = 12, .num_heads = 4, .num_kv_heads = 3};
    ck_assert_int_eq(attn_mha_init_seeded(&gqa, 0, true, false, &w, &store), ATTN_ERR_INVALID);
    attn_mha_config ok = {.embed_dim = 8, .num_heads = 2};
    ck_assert_int_eq(attn_mha_init_seeded(NULL, 0, true, false, &w, &store), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_mha_init_seeded(&ok, 0, true, false, NULL, &store), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_mha_init_seeded(&ok, 0, true, false, &w, NULL), ATTN_ERR_INVALID);
    attn_mha_config huge = {.embed_dim = SIZE_MAX / 2 + 1, .num_heads = 1};
    ck_assert_int_eq(attn_mha_init_seeded(&huge, 0, true, false, &w, &store), ATTN_ERR_OVERFLOW);
    ck_assert_ptr_eq(store, (float *)&w);
}
END_TEST

/* ------------------------------------------------------------ argument errors */

typedef struct bad_single {
    const char *name;
    attn_status want;
} bad_single;

/* Cases for attn_forward: index into the mutations applied in the test below. */
static const bad_single BAD_SINGLE[] = {
    {"null workspace", ATTN_ERR_INVALID},
    {"null params", ATTN_ERR_INVALID},
    {"null outputs", ATTN_ERR_INVALID},
    {"dq != dk for scaled_dot", ATTN_ERR_SHAPE},
    {"dq != dk for dot", ATTN_ERR_SHAPE},
    {"dq == 0", ATTN_ERR_SHAPE},
    {"general without w", ATTN_ERR_INVALID},
    {"additive without w1", ATTN_ERR_INVALID},
    {"additive without w2", ATTN_ERR_INVALID},
    {"additive without v", ATTN_ERR_INVALID},
    {"additive with da == 0", ATTN_ERR_INVALID},
    {"concat without w", ATTN_ERR_INVALID},
    {"concat with da == 0", ATTN_ERR_INVALID},
    {"negative softcap", ATTN_ERR_INVALID},
    {"NaN softcap", ATTN_ERR_INVALID},
    {"infinite softcap", ATTN_ERR_INVALID},
    {"infinite scale", ATTN_ERR_INVALID},
    {"unknown score", ATTN_ERR_INVALID},
    {"unknown causal mode", ATTN_ERR_INVALID},
    {"m_masked > m", ATTN_ERR_SHAPE},
    {"pattern with a negative stride", ATTN_ERR_INVALID},
    {"null query", ATTN_ERR_INVALID},
    {"null key", ATTN_ERR_INVALID},
    {"null value", ATTN_ERR_INVALID},
    {"n beyond the BLAS integer", ATTN_ERR_OVERFLOW},
};
#define N_BAD_SINGLE ((int)(sizeof(BAD_SINGLE) / sizeof(BAD_SINGLE[0])))

START_TEST(attn_forward_bad_argument_returns_documented_error_and_writes_nothing)
{
    float q[4 * 3], k[5 * 3], v[5 * 2], w[3 * 3], w1[2 * 3], w2[2 * 3], va[2];
    for (size_t x = 0; x < 12; x++)
        q[x] = (float)x;
    for (size_t x = 0; x < 15; x++)
        k[x] = (float)x * 0.1f;
    for (size_t x = 0; x < 10; x++)
        v[x] = 1.0f;
    for (size_t x = 0; x < 9; x++)
        w[x] = 0.5f;
    for (size_t x = 0; x < 6; x++)
        w1[x] = w2[x] = 0.25f;
    va[0] = va[1] = 1.0f;
    float out[4 * 2], wt[4 * 5];
    for (size_t x = 0; x < 8; x++)
        out[x] = -7.0f;
    for (size_t x = 0; x < 20; x++)
        wt[x] = -7.0f;
    attn_ws *ws = attn_ws_create(NULL);
    attn_params p = {.score = ATTN_SCORE_SCALED_DOT};
    attn_outputs o = {.output = out, .weights = wt};
    attn_ws *use_ws = ws;
    const attn_params *use_p = &p;
    attn_outputs *use_o = &o;
    size_t n = 4, m = 5, dq = 3, dk = 3, dv = 2;
    const float *pq = q, *pk = k, *pv = v;
    attn_pattern bad_pattern;
    memset(&bad_pattern, 0, sizeof bad_pattern);
    bad_pattern.stride = -1; /* invalid: the engine must refuse it */

    switch (_i) {
    case 0:
        use_ws = NULL;
        break;
    case 1:
        use_p = NULL;
        break;
    case 2:
        use_o = NULL;
        break;
    case 3:
        dk = 2;
        break;
    case 4:
        p.score = ATTN_SCORE_DOT;
        dq = 2;
        break;
    case 5:
        p.score = ATTN_SCORE_GENERAL;
        p.w = w;
        dq = 0;
        break;
    case 6:
        p.score = ATTN_SCORE_GENERAL;
        break;
    case 7:
        p.score = ATTN_SCORE_ADDITIVE;
        p.w2 = w2;
        p.v = va;
        p.da = 2;
        break;
    case 8:
        p.score = ATTN_SCORE_ADDITIVE;
        p.w1 = w1;
        p.v = va;
        p.da = 2;
        break;
    case 9:
        p.score = ATTN_SCORE_ADDITIVE;
        p.w1 = w1;
        p.w2 = w2;
        p.da = 2;
        break;
    case 10:
        p.score = ATTN_SCORE_ADDITIVE;
        p.w1 = w1;
        p.w2 = w2;
        p.v = va;
        break;
    case 11:
        p.score = ATTN_SCORE_CONCAT;
        p.v = va;
        p.da = 1;
        break;
    case 12:
        p.score = ATTN_SCORE_CONCAT;
        p.w = w;
        p.v = va;
        break;
    case 13:
        p.softcap = -1.0f;
        break;
    case 14:
        p.softcap = NAN;
        break;
    case 15:
        p.softcap = INFINITY;
        break;
    case 16:
        p.scale = INFINITY;
        break;
    case 17:
        p.score = (attn_score)99;
        break;
    case 18:
        p.masks.causal = (attn_causal)7;
        break;
    case 19:
        p.masks.m_masked = 6;
        break;
    case 20:
        p.masks.pattern = &bad_pattern;
        break;
    case 21:
        pq = NULL;
        break;
    case 22:
        pk = NULL;
        break;
    case 23:
        pv = NULL;
        break;
    case 24:
        n = (size_t)1 << 40;
        break;
    default:
        ck_abort_msg("no case %d", _i);
    }
    attn_status st = attn_forward(use_ws, use_p, n, m, dq, dk, dv, pq, pk, pv, use_o, NULL);
    ck_assert_msg(st == BAD_SINGLE[_i].want, "%s: got %d (%s), expected %d", BAD_SINGLE[_i].name,
                  (int)st, attn_status_str(st), (int)BAD_SINGLE[_i].want);
    for (size_t x = 0; x < 8; x++)
        ck_assert_float_eq(out[x], -7.0f);
    for (size_t x = 0; x < 20; x++)
        ck_assert_float_eq(wt[x], -7.0f);
    attn_ws_free(ws);
}
END_TEST

static const bad_single BAD_MHA[] = {
    {"embed_dim 0", ATTN_ERR_INVALID},
    {"num_heads 0", ATTN_ERR_INVALID},
    {"num_heads does not divide embed_dim", ATTN_ERR_INVALID},
    {"num_kv_heads does not divide num_heads", ATTN_ERR_INVALID},
    {"num_kv_heads > num_heads", ATTN_ERR_INVALID},
    {"general score", ATTN_ERR_INVALID},
    {"additive score", ATTN_ERR_INVALID},
    {"missing q_proj", ATTN_ERR_INVALID},
    {"missing out_proj", ATTN_ERR_INVALID},
    {"bias_k without bias_v", ATTN_ERR_INVALID},
    {"m_masked not m", ATTN_ERR_SHAPE},
    {"null key", ATTN_ERR_INVALID},
    {"null query", ATTN_ERR_INVALID},
    {"pattern with a negative stride", ATTN_ERR_INVALID},
    {"negative softcap", ATTN_ERR_INVALID},
    {"null config", ATTN_ERR_INVALID},
    {"null weights", ATTN_ERR_INVALID},
    {"null workspace", ATTN_ERR_INVALID},
    {"null outputs", ATTN_ERR_INVALID},
    {"unknown causal mode", ATTN_ERR_INVALID},
};
#define N_BAD_MHA ((int)(sizeof(BAD_MHA) / sizeof(BAD_MHA[0])))

START_TEST(attn_mha_forward_bad_argument_returns_documented_error_and_writes_nothing)
{
    attn_mha_config cfg = {.embed_dim = 8, .num_heads = 2};
    attn_mha_weights w;
    float *store = NULL;
    ck_assert_int_eq(attn_mha_init_seeded(&cfg, 1, true, true, &w, &store), ATTN_OK);
    float x[3 * 8], out[3 * 8];
    for (size_t i = 0; i < 24; i++) {
        x[i] = (float)i * 0.1f;
        out[i] = -7.0f;
    }
    attn_ws *ws = attn_ws_create(NULL);
    attn_mha_outputs o = {.output = out};
    const attn_mha_config *use_c = &cfg;
    const attn_mha_weights *use_w = &w;
    attn_ws *use_ws = ws;
    attn_mha_outputs *use_o = &o;
    const float *query = x, *key = x;
    attn_pattern bad_pattern;
    memset(&bad_pattern, 0, sizeof bad_pattern);
    bad_pattern.stride = -1; /* invalid: the engine must refuse it */
    switch (_i) {
    case 0:
        cfg.embed_dim = 0;
        break;
    case 1:
        cfg.num_heads = 0;
        break;
    case 2:
        cfg.num_heads = 3;
        break;
    case 3:
        cfg.num_heads = 4;
        cfg.num_kv_heads = 3;
        break;
    case 4:
        cfg.num_kv_heads = 4;
        break;
    case 5:
        cfg.attn.score = ATTN_SCORE_GENERAL;
        cfg.attn.w = x;
        break;
    case 6:
        cfg.attn.score = ATTN_SCORE_ADDITIVE;
        break;
    case 7:
        w.q_proj = NULL;
        break;
    case 8:
        w.out_proj = NULL;
        break;
    case 9:
        w.bias_v = NULL;
        break;
    case 10:
        cfg.attn.masks.m_masked = 2;
        break;
    case 11:
        key = NULL;
        break;
    case 12:
        query = NULL;
        break;
    case 13:
        cfg.attn.masks.pattern = &bad_pattern;
        break;
    case 14:
        cfg.attn.softcap = -2.0f;
        break;
    case 15:
        use_c = NULL;
        break;
    case 16:
        use_w = NULL;
        break;
    case 17:
        use_ws = NULL;
        break;
    case 18:
        use_o = NULL;
        break;
    case 19:
        cfg.attn.masks.causal = (attn_causal)3;
        break;
    default:
        ck_abort_msg("no case %d", _i);
    }
    attn_status st = attn_mha_forward(use_ws, use_c, use_w, 3, 3, query, key, key, use_o, NULL);
    ck_assert_msg(st == BAD_MHA[_i].want, "%s: got %d (%s), expected %d", BAD_MHA[_i].name, (int)st,
                  attn_status_str(st), (int)BAD_MHA[_i].want);
    for (size_t i = 0; i < 24; i++)
        ck_assert_float_eq(out[i], -7.0f);
    attn_ws_free(ws);
    attn_free_buffer(store);
}
END_TEST

START_TEST(names_status_strings_version_and_blas_info_are_defined)
{
    const attn_status all[] = {ATTN_OK,        ATTN_ERR_NOMEM,       ATTN_ERR_INVALID,
                               ATTN_ERR_SHAPE, ATTN_ERR_UNSUPPORTED, ATTN_ERR_OVERFLOW};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *s = attn_status_str(all[i]);
        ck_assert(s && *s && strcmp(s, "unknown status") != 0);
    }
    ck_assert_str_eq(attn_status_str((attn_status)-99), "unknown status");
    const char *names[] = {"scaled_dot", "dot", "general", "additive", "concat"};
    for (int i = 0; i < 5; i++) {
        attn_score s;
        ck_assert_str_eq(attn_score_name((attn_score)i), names[i]);
        ck_assert_int_eq(attn_score_parse(names[i], &s), ATTN_OK);
        ck_assert_int_eq(s, i);
    }
    attn_score s = ATTN_SCORE_DOT;
    ck_assert_ptr_null(attn_score_name((attn_score)5));
    ck_assert_int_eq(attn_score_parse("Dot", &s), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_score_parse(NULL, &s), ATTN_ERR_INVALID);
    ck_assert_int_eq(s, ATTN_SCORE_DOT);
    const char *ver = attn_version();
    ck_assert(ver && ver[0] >= '0' && ver[0] <= '9' && strchr(ver, '.'));
    ck_assert_ptr_nonnull(strstr(attn_blas_info(), "OpenBLAS"));
    const int threads = attn_blas_threads();
    ck_assert_int_ge(threads, 1);
    attn_blas_set_threads(0);
    ck_assert_int_eq(attn_blas_threads(), 1);
    attn_blas_set_threads(threads);
    attn_free_buffer(NULL);
}
END_TEST

static Suite *alloc_suite(void)
{
    Suite *s = suite_create("engine_alloc");
    TCase *tc = tcase_create("memory");
    tcase_add_test(tc, attn_forward_each_failed_allocation_returns_nomem_then_recovers);
    tcase_add_test(tc, attn_mha_forward_each_failed_allocation_returns_nomem_then_recovers);
    tcase_add_test(tc, workspace_keeps_largest_block_trim_gives_it_back_no_leak);
    tcase_add_test(tc, workspace_create_rejects_half_allocator_and_reports_failure);
    tcase_add_test(tc, seeded_init_invalid_config_allocates_nothing);
    suite_add_tcase(s, tc);
    TCase *ta = tcase_create("arguments");
    tcase_add_loop_test(ta, attn_forward_bad_argument_returns_documented_error_and_writes_nothing,
                        0, N_BAD_SINGLE);
    tcase_add_loop_test(ta,
                        attn_mha_forward_bad_argument_returns_documented_error_and_writes_nothing,
                        0, N_BAD_MHA);
    tcase_add_test(ta, names_status_strings_version_and_blas_info_are_defined);
    suite_add_tcase(s, ta);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(alloc_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
