/* util_golden.h - reading the golden JSON files into flat arrays, for the engine suites. */
#ifndef UTIL_GOLDEN_H
#define UTIL_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* A flattened nested list, in double (expected values keep their precision);
 * null (NaN in the golden files) reads as NAN, booleans as 0/1. */
typedef struct tensor {
    double *x;
    size_t count;
} tensor;

/* Parses a whole JSON file; NULL when it cannot be read or parsed. */
cJSON *load_json(const char *path);
/* obj[key] flattened (asserts it is there); free t.x. */
tensor tensor_get(const cJSON *obj, const char *key);
/* Rows x cols of the 2-D list obj[key] (asserts it is a list). */
void json_dims2(const cJSON *obj, const char *key, size_t *rows, size_t *cols);
/* malloc'd float / 0-1 byte copies of t (assert on allocation failure). */
float *to_f32(const tensor *t);
uint8_t *to_u8(const tensor *t);

#endif
