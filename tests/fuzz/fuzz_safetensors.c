/* fuzz_safetensors.c - the safetensors reader: the input is the whole file (header length,
 * JSON header, data); whatever opens is read back through every accessor and conversion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn_model.h"
#include "fuzz.h"

static char path[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/fuzz_safetensors_%ld.safetensors", tmp && *tmp ? tmp : "/tmp",
             (long)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    char err[ATTN_MODEL_ERR_SIZE];
    attn_st *st = NULL;
    attn_status rc = attn_st_open(path, NULL, &st, err, sizeof err);
    if (rc != ATTN_OK) {
        if (st || strstr(err, path) != err)
            abort(); /* on error: no object, and a message that names the file */
        unlink(path);
        return 0;
    }
    for (size_t i = 0; i < attn_st_count(st); i++) {
        const attn_st_tensor *t = attn_st_at(st, i);
        if (attn_st_find(st, t->name) != t || !attn_st_find_any_prefix(st, t->name))
            abort();
        const unsigned char *p = t->data;
        unsigned sum = 0;
        for (size_t k = 0; k < t->n_bytes; k++) /* every byte lies inside the mapping */
            sum += p[k];
        (void)sum;
        if (t->n_elements > (1u << 20))
            continue;
        float *x = malloc((t->n_elements ? t->n_elements : 1) * sizeof(float));
        if (!x)
            abort();
        rc = attn_st_read_f32(st, t->name, t->n_dims, t->shape, x, err, sizeof err);
        if (rc != (t->dtype == ATTN_DTYPE_I64 ? ATTN_ERR_UNSUPPORTED : ATTN_OK))
            abort();
        free(x);
    }
    (void)attn_st_metadata(st, "format");
    attn_st_close(st);
    unlink(path);
    return 0;
}
