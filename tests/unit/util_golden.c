/* util_golden.c - reading the golden JSON files into flat arrays, for the engine suites. */
#include "util_golden.h"

#include <check.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

cJSON *load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cJSON *root = NULL;
    if (buf && fread(buf, 1, (size_t)len, f) == (size_t)len) {
        buf[len] = '\0';
        root = cJSON_ParseWithLength(buf, (size_t)len);
    }
    free(buf);
    fclose(f);
    return root;
}

/* Number of leaves of a nested list. */
static size_t json_count(const cJSON *a)
{
    if (!cJSON_IsArray(a))
        return 1;
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        n += json_count(e);
    }
    return n;
}

static void json_fill(const cJSON *a, double *out, size_t *pos)
{
    if (cJSON_IsArray(a)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, a)
        {
            json_fill(e, out, pos);
        }
        return;
    }
    double v;
    if (cJSON_IsNumber(a))
        v = a->valuedouble;
    else if (cJSON_IsBool(a))
        v = cJSON_IsTrue(a) ? 1.0 : 0.0;
    else
        v = NAN; /* null stands for NaN in the golden files */
    out[(*pos)++] = v;
}

/* A flattened nested list, in double (expected values keep their precision). */
tensor tensor_get(const cJSON *obj, const char *key)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    ck_assert_msg(a != NULL, "golden case lacks \"%s\"", key);
    tensor t = {.count = json_count(a)};
    t.x = calloc(t.count ? t.count : 1, sizeof(double));
    ck_assert(t.x != NULL);
    size_t pos = 0;
    json_fill(a, t.x, &pos);
    return t;
}

/* Rows x cols of a 2-D list. */
void json_dims2(const cJSON *obj, const char *key, size_t *rows, size_t *cols)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    ck_assert_msg(cJSON_IsArray(a), "\"%s\" is not a list", key);
    *rows = (size_t)cJSON_GetArraySize(a);
    *cols = *rows ? (size_t)cJSON_GetArraySize(cJSON_GetArrayItem(a, 0)) : 0;
}

float *to_f32(const tensor *t)
{
    float *f = malloc((t->count ? t->count : 1) * sizeof(float));
    ck_assert(f != NULL);
    for (size_t i = 0; i < t->count; i++)
        f[i] = (float)t->x[i];
    return f;
}

uint8_t *to_u8(const tensor *t)
{
    uint8_t *b = malloc(t->count ? t->count : 1);
    ck_assert(b != NULL);
    for (size_t i = 0; i < t->count; i++)
        b[i] = t->x[i] != 0.0;
    return b;
}
