/* attn_blas.c - the engine's only contact with BLAS: sgemm and the library's configuration. */
#include "attn_internal.h"

#include <assert.h>
#include <limits.h>

#include <cblas.h>

bool attn__blas_fits(size_t x)
{
    return x <= (size_t)INT_MAX;
}

/* BLAS insists on a leading dimension >= max(1, columns) even when a matrix is empty. */
static blasint blas_ld(size_t ld, size_t cols)
{
    size_t v = ld > cols ? ld : cols;
    return (blasint)(v ? v : 1);
}

void attn__sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                 const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                 size_t ldc)
{
    assert(attn__blas_fits(m) && attn__blas_fits(n) && attn__blas_fits(k));
    assert(attn__blas_fits(lda) && attn__blas_fits(ldb) && attn__blas_fits(ldc));
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        /* An empty sum: BLAS would reject the zero-width operands, the answer is beta * C. */
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                blas_ld(lda, trans_a ? m : k), b, blas_ld(ldb, trans_b ? k : n), beta, c,
                blas_ld(ldc, n));
}

const char *attn_blas_info(void)
{
    const char *s = openblas_get_config();
    return s ? s : "OpenBLAS";
}

int attn_blas_threads(void)
{
    return openblas_get_num_threads();
}

void attn_blas_set_threads(int n_threads)
{
    openblas_set_num_threads(n_threads < 1 ? 1 : n_threads);
}
