/* test_model_safetensors.c - safetensors reader: golden models, conversions, bad files, memory. */
#include "attn_model.h"

#include <check.h>
#include <cjson/cJSON.h>

#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODELS ATTN_TEST_DATA "/models"

/* ------------------------------------------------------------ a counting, failing allocator */

/* One counter for the library's allocator and cJSON's hooks (which take no
 * user pointer), so a failure can land in either. */
typedef struct counter {
    size_t n_calls, n_ok, n_free, fail_at;
} counter;

static counter g_count;

static void *count_malloc(size_t n)
{
    g_count.n_calls++;
    if (g_count.fail_at && g_count.n_calls == g_count.fail_at)
        return NULL;
    void *p = malloc(n);
    if (p)
        g_count.n_ok++;
    return p;
}

static void count_free(void *p)
{
    if (p) {
        g_count.n_free++;
        free(p);
    }
}

static void *al_alloc(size_t n, void *user)
{
    (void)user;
    return count_malloc(n);
}

static void al_free(void *p, void *user)
{
    (void)user;
    count_free(p);
}

static const attn_allocator COUNTING = {al_alloc, al_free, NULL};

static void hooks_counting(void)
{
    cJSON_Hooks h = {count_malloc, count_free};
    cJSON_InitHooks(&h);
    memset(&g_count, 0, sizeof g_count);
}

static void hooks_default(void)
{
    cJSON_InitHooks(NULL);
}

/* ------------------------------------------------------------ files made by the tests */

static char g_dir[256];

static void tmp_setup(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/attn_st_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
}

static void tmp_teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
}

/* Writes an 8-byte header length (header_len, or strlen(header) when
 * header_len is UINT64_MAX), the header, and data [n_data]; returns the path. */
static const char *write_st_raw(const char *file, const char *header, uint64_t header_len,
                                const void *data, size_t n_data)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    const size_t hl = strlen(header);
    const uint64_t declared = header_len == UINT64_MAX ? hl : header_len;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(declared >> (8 * i));
    ck_assert_uint_eq(fwrite(len, 1, 8, f), 8);
    ck_assert_uint_eq(fwrite(header, 1, hl, f), hl);
    if (n_data)
        ck_assert_uint_eq(fwrite(data, 1, n_data, f), n_data);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

/* Same with n_data bytes of a counting pattern. */
static const char *write_st(const char *file, const char *header, size_t n_data)
{
    unsigned char *data = malloc(n_data ? n_data : 1);
    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i < n_data; i++)
        data[i] = (unsigned char)i;
    const char *p = write_st_raw(file, header, UINT64_MAX, data, n_data);
    free(data);
    return p;
}

/* ------------------------------------------------------------ golden models */

static cJSON *read_config(const char *model)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/config.json", MODELS, model);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *c = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(c);
    return c;
}

static size_t cfg_int(const cJSON *c, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    ck_assert_msg(cJSON_IsNumber(v), "config has no %s", key);
    return (size_t)v->valuedouble;
}

/* Asserts that name exists with the given shape and F32 data that converts to finite floats. */
static void expect_tensor(const attn_st *st, const char *name, size_t n_dims, size_t d0, size_t d1,
                          size_t d2, size_t d3)
{
    const size_t want[4] = {d0, d1, d2, d3};
    const attn_st_tensor *t = attn_st_find(st, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", attn_st_path(st), name);
    ck_assert_int_eq(t->dtype, ATTN_DTYPE_F32);
    ck_assert_uint_eq(t->n_dims, n_dims);
    size_t count = 1;
    for (size_t i = 0; i < n_dims; i++) {
        ck_assert_msg(t->shape[i] == want[i], "%s: dim %zu is %zu, config implies %zu", name, i,
                      t->shape[i], want[i]);
        count *= want[i];
    }
    ck_assert_uint_eq(t->n_elements, count);
    ck_assert_uint_eq(t->n_bytes, 4 * count);
    float *x = malloc(count * sizeof(float));
    char err[ATTN_MODEL_ERR_SIZE] = "";
    ck_assert_int_eq(attn_st_read_f32(st, name, n_dims, want, x, err, sizeof err), ATTN_OK);
    ck_assert(memcmp(x, t->data, t->n_bytes) == 0); /* little-endian host: the bytes as stored */
    for (size_t i = 0; i < count; i++)
        ck_assert(isfinite(x[i]));
    free(x);
}

static attn_st *open_model(const char *model)
{
    char path[512], err[ATTN_MODEL_ERR_SIZE] = "";
    snprintf(path, sizeof path, "%s/%s/model.safetensors", MODELS, model);
    attn_st *st = NULL;
    attn_status rc = attn_st_open(path, NULL, &st, err, sizeof err);
    ck_assert_msg(rc == ATTN_OK, "%s: %s", path, err);
    ck_assert_str_eq(attn_st_metadata(st, "format"), "pt");
    ck_assert_ptr_null(attn_st_metadata(st, "nope"));
    /* Every tensor lies in the data area, none overlaps the next in file order. */
    for (size_t i = 0; i < attn_st_count(st); i++) {
        const attn_st_tensor *t = attn_st_at(st, i);
        ck_assert_ptr_eq(attn_st_find(st, t->name), t);
    }
    ck_assert_ptr_null(attn_st_at(st, attn_st_count(st)));
    return st;
}

START_TEST(bert_tiny_shapes_match_config)
{
    cJSON *c = read_config("bert-tiny");
    attn_st *st = open_model("bert-tiny");
    const size_t hid = cfg_int(c, "hidden_size"), L = cfg_int(c, "num_hidden_layers");
    const size_t inter = cfg_int(c, "intermediate_size");
    ck_assert_uint_eq(attn_st_count(st), 5 + 16 * L + 2);
    expect_tensor(st, "embeddings.word_embeddings.weight", 2, cfg_int(c, "vocab_size"), hid, 0, 0);
    expect_tensor(st, "embeddings.position_embeddings.weight", 2,
                  cfg_int(c, "max_position_embeddings"), hid, 0, 0);
    expect_tensor(st, "embeddings.token_type_embeddings.weight", 2, cfg_int(c, "type_vocab_size"),
                  hid, 0, 0);
    for (size_t l = 0; l < L; l++) {
        char name[128];
        const char *qkv[3] = {"query", "key", "value"};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "encoder.layer.%zu.attention.self.%s.weight", l, qkv[k]);
            expect_tensor(st, name, 2, hid, hid, 0, 0);
            snprintf(name, sizeof name, "encoder.layer.%zu.attention.self.%s.bias", l, qkv[k]);
            expect_tensor(st, name, 1, hid, 0, 0, 0);
        }
        snprintf(name, sizeof name, "encoder.layer.%zu.intermediate.dense.weight", l);
        expect_tensor(st, name, 2, inter, hid, 0, 0);
    }
    /* BertForX checkpoints carry "bert.": both spellings find the tensor. */
    const attn_st_tensor *t = attn_st_find(st, "embeddings.LayerNorm.weight");
    ck_assert_ptr_eq(attn_st_find_any_prefix(st, "bert.embeddings.LayerNorm.weight"), t);
    ck_assert_ptr_eq(attn_st_find_any_prefix(st, "embeddings.LayerNorm.weight"), t);
    ck_assert_ptr_null(attn_st_find(st, "bert.embeddings.LayerNorm.weight"));
    ck_assert_ptr_null(attn_st_find_any_prefix(st, "bert.nothing"));
    attn_st_close(st);
    cJSON_Delete(c);
}
END_TEST

static void gpt2_shapes(const char *model)
{
    cJSON *c = read_config(model);
    attn_st *st = open_model(model);
    const size_t E = cfg_int(c, "n_embd"), L = cfg_int(c, "n_layer");
    expect_tensor(st, "wte.weight", 2, cfg_int(c, "vocab_size"), E, 0, 0);
    expect_tensor(st, "wpe.weight", 2, cfg_int(c, "n_positions"), E, 0, 0);
    expect_tensor(st, "ln_f.weight", 1, E, 0, 0, 0);
    for (size_t l = 0; l < L; l++) {
        char name[128];
        snprintf(name, sizeof name, "h.%zu.attn.c_attn.weight", l); /* Conv1D: [in][out] */
        expect_tensor(st, name, 2, E, 3 * E, 0, 0);
        snprintf(name, sizeof name, "h.%zu.attn.c_attn.bias", l);
        expect_tensor(st, name, 1, 3 * E, 0, 0, 0);
        snprintf(name, sizeof name, "h.%zu.mlp.c_fc.weight", l);
        expect_tensor(st, name, 2, E, 4 * E, 0, 0);
    }
    /* GPT2LMHeadModel checkpoints carry "transformer.". */
    ck_assert_ptr_eq(attn_st_find_any_prefix(st, "transformer.wte.weight"),
                     attn_st_find(st, "wte.weight"));
    attn_st_close(st);
    cJSON_Delete(c);
}

START_TEST(gpt2_tiny_shapes_match_config)
{
    gpt2_shapes("gpt2-tiny");
}
END_TEST

START_TEST(demo_gpt2_shapes_match_config)
{
    gpt2_shapes("demo-gpt2");
}
END_TEST

START_TEST(vit_tiny_shapes_match_config)
{
    cJSON *c = read_config("vit-tiny");
    attn_st *st = open_model("vit-tiny");
    const size_t hid = cfg_int(c, "hidden_size"), p = cfg_int(c, "patch_size");
    const size_t img = cfg_int(c, "image_size"), ch = cfg_int(c, "num_channels");
    expect_tensor(st, "embeddings.cls_token", 3, 1, 1, hid, 0);
    expect_tensor(st, "embeddings.patch_embeddings.projection.weight", 4, hid, ch, p, p);
    expect_tensor(st, "embeddings.position_embeddings", 3, 1, (img / p) * (img / p) + 1, hid, 0);
    expect_tensor(st, "encoder.layer.1.attention.attention.query.weight", 2, hid, hid, 0, 0);
    /* ViTForImageClassification checkpoints carry "vit.". */
    ck_assert_ptr_nonnull(attn_st_find_any_prefix(st, "vit.layernorm.weight"));
    attn_st_close(st);
    cJSON_Delete(c);
}
END_TEST

START_TEST(bart_tiny_shapes_match_config)
{
    cJSON *c = read_config("bart-tiny");
    attn_st *st = open_model("bart-tiny");
    const size_t d = cfg_int(c, "d_model");
    expect_tensor(st, "shared.weight", 2, cfg_int(c, "vocab_size"), d, 0, 0);
    /* BART's learned positions have an offset of 2. */
    expect_tensor(st, "encoder.embed_positions.weight", 2,
                  cfg_int(c, "max_position_embeddings") + 2, d, 0, 0);
    for (size_t l = 0; l < cfg_int(c, "decoder_layers"); l++) {
        char name[128];
        snprintf(name, sizeof name, "decoder.layers.%zu.encoder_attn.k_proj.weight", l);
        expect_tensor(st, name, 2, d, d, 0, 0);
        snprintf(name, sizeof name, "decoder.layers.%zu.fc1.weight", l);
        expect_tensor(st, name, 2, cfg_int(c, "decoder_ffn_dim"), d, 0, 0);
    }
    /* BartForX checkpoints carry "model.". */
    ck_assert_ptr_nonnull(attn_st_find_any_prefix(st, "model.shared.weight"));
    attn_st_close(st);
    cJSON_Delete(c);
}
END_TEST

START_TEST(read_f32_reports_missing_and_wrong_shape_with_names)
{
    attn_st *st = open_model("gpt2-tiny");
    float x[32 * 96];
    char err[ATTN_MODEL_ERR_SIZE] = "";
    const size_t bad[2] = {96, 32};
    ck_assert_int_eq(attn_st_read_f32(st, "h.0.attn.c_attn.weight", 2, bad, x, err, sizeof err),
                     ATTN_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err, "model.safetensors"));
    ck_assert_ptr_nonnull(strstr(err, "'h.0.attn.c_attn.weight'"));
    ck_assert_ptr_nonnull(strstr(err, "[32, 96], expected [96, 32]"));
    ck_assert_int_eq(attn_st_read_f32(st, "h.9.attn.c_attn.weight", 2, bad, x, err, sizeof err),
                     ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "'h.9.attn.c_attn.weight' is missing"));
    ck_assert_int_eq(attn_st_read_f32(st, NULL, 0, NULL, x, err, sizeof err), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_st_read_f32(NULL, "x", 0, NULL, x, NULL, 0), ATTN_ERR_INVALID);
    const attn_st_tensor *t = attn_st_find(st, "ln_f.bias");
    ck_assert_int_eq(attn_st_to_f32(t, x, 31), ATTN_ERR_SHAPE);
    ck_assert_int_eq(attn_st_to_f32(t, NULL, 32), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_st_to_f32(NULL, x, 32), ATTN_ERR_INVALID);
    attn_st_close(st);
}
END_TEST

/* ------------------------------------------------------------ conversions */

/* IEEE binary16 by its definition, in double. */
static double f16_reference(uint16_t h)
{
    const int s = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v;
    if (e == 0x1F)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -24);
    else
        v = ldexp(1.0 + m / 1024.0, e - 15);
    return s ? -v : v;
}

/* bfloat16 by its definition: 8 exponent bits, 7 mantissa bits. */
static double bf16_reference(uint16_t b)
{
    const int s = b >> 15, e = (b >> 7) & 0xFF, m = b & 0x7F;
    double v;
    if (e == 0xFF)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -133);
    else
        v = ldexp(1.0 + m / 128.0, e - 127);
    return s ? -v : v;
}

START_TEST(f16_and_bf16_convert_every_value_exactly)
{
    for (uint32_t i = 0; i < 65536; i++) {
        const float h = attn_f16_to_f32((uint16_t)i), b = attn_bf16_to_f32((uint16_t)i);
        const double rh = f16_reference((uint16_t)i), rb = bf16_reference((uint16_t)i);
        if (isnan(rh))
            ck_assert_msg(isnan(h), "f16 0x%04x", i);
        else
            ck_assert_msg((double)h == rh && !signbit(h) == !signbit(rh), "f16 0x%04x: %g != %g", i,
                          (double)h, rh);
        if (isnan(rb))
            ck_assert_msg(isnan(b), "bf16 0x%04x", i);
        else
            ck_assert_msg((double)b == rb && !signbit(b) == !signbit(rb), "bf16 0x%04x", i);
    }
    /* NaN payloads survive (the quiet bit and the rest). */
    float q = attn_f16_to_f32(0x7E01);
    uint32_t bits;
    memcpy(&bits, &q, 4);
    ck_assert_uint_eq(bits, 0x7FC02000u);
}
END_TEST

START_TEST(hand_made_f16_bf16_i64_file_converts_and_keeps_unaligned_data)
{
    tmp_setup();
    const uint16_t h[] = {0x0000, 0x8000, 0x3C00, 0xC000, 0x7BFF, 0x0001,
                          0x03FF, 0x0400, 0x7C00, 0xFC00, 0x7E00, 0x3555};
    const double hw[] = {
        0.0,           -0.0,     1.0,       -2.0, 65504.0,       ldexp(1, -24), ldexp(1023, -24),
        ldexp(1, -14), INFINITY, -INFINITY, NAN,  0.333251953125};
    const uint16_t b[] = {0x3F80, 0xC040, 0x0001, 0x7F80, 0xFF80, 0x7FC0, 0x4049, 0x0080};
    const double bw[] = {1.0,       -3.0, ldexp(1, -133), INFINITY,
                         -INFINITY, NAN,  3.140625,       ldexp(1, -126)};
    unsigned char data[24 + 16 + 16 + 4];
    for (size_t i = 0; i < 12; i++) {
        data[2 * i] = (unsigned char)(h[i] & 0xFF);
        data[2 * i + 1] = (unsigned char)(h[i] >> 8);
    }
    for (size_t i = 0; i < 8; i++) {
        data[24 + 2 * i] = (unsigned char)(b[i] & 0xFF);
        data[24 + 2 * i + 1] = (unsigned char)(b[i] >> 8);
    }
    for (size_t i = 0; i < 16; i++) /* position_ids [2] = {1, 2}, little-endian I64 */
        data[40 + i] = (unsigned char)(i == 0 ? 1 : i == 8 ? 2 : 0);
    const float f32 = 0.5f; /* at data offset 56: unaligned, the header is 3 mod 4 long */
    memcpy(data + 56, &f32, 4);
    /* Header padded so that its length is odd: the data start is unaligned. */
    const char *header = "{\"half\":{\"dtype\":\"F16\",\"shape\":[3,4],\"data_offsets\":[0,24]},"
                         "\"brain\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[24,40]},"
                         "\"embeddings.position_ids\":{\"dtype\":\"I64\",\"shape\":[1,2],"
                         "\"data_offsets\":[40,56]},"
                         "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[56,60]},"
                         "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[60,60]},"
                         "\"__metadata__\":{\"note\":\"hand made\"}}  ";
    ck_assert_uint_eq(strlen(header) % 2, 1);
    const char *path = write_st_raw("conv.safetensors", header, UINT64_MAX, data, sizeof data);
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_st *st = NULL;
    ck_assert_msg(attn_st_open(path, NULL, &st, err, sizeof err) == ATTN_OK, "%s", err);
    ck_assert_uint_eq(attn_st_count(st), 5);
    ck_assert_str_eq(attn_st_at(st, 0)->name, "half"); /* header order */
    ck_assert_str_eq(attn_st_at(st, 4)->name, "empty");
    ck_assert_str_eq(attn_st_metadata(st, "note"), "hand made");
    float out[12];
    const attn_st_tensor *t = attn_st_find(st, "half");
    ck_assert_int_eq(t->dtype, ATTN_DTYPE_F16);
    ck_assert_int_eq(attn_st_to_f32(t, out, 12), ATTN_OK);
    for (size_t i = 0; i < 12; i++) {
        if (isnan(hw[i]))
            ck_assert(isnan(out[i]));
        else
            ck_assert_msg((double)out[i] == hw[i] && !signbit(out[i]) == !signbit(hw[i]),
                          "half[%zu] = %.17g, expected %.17g", i, (double)out[i], hw[i]);
    }
    t = attn_st_find(st, "brain");
    ck_assert_int_eq(attn_st_to_f32(t, out, 12), ATTN_OK);
    for (size_t i = 0; i < 8; i++) {
        if (isnan(bw[i]))
            ck_assert(isnan(out[i]));
        else
            ck_assert_msg((double)out[i] == bw[i], "brain[%zu] = %.17g", i, (double)out[i]);
    }
    t = attn_st_find_any_prefix(st, "bert.embeddings.position_ids");
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->dtype, ATTN_DTYPE_I64);
    ck_assert_uint_eq(t->n_bytes, 16);
    ck_assert_int_eq(((const unsigned char *)t->data)[8], 2);
    ck_assert_int_eq(attn_st_to_f32(t, out, 12), ATTN_ERR_UNSUPPORTED);
    const size_t pshape[2] = {1, 2};
    ck_assert_int_eq(
        attn_st_read_f32(st, "embeddings.position_ids", 2, pshape, out, err, sizeof err),
        ATTN_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err, "'embeddings.position_ids'"));
    ck_assert_ptr_nonnull(strstr(err, "I64"));
    t = attn_st_find(st, "scalar");
    ck_assert_uint_eq(t->n_dims, 0);
    ck_assert_uint_eq(t->n_elements, 1);
    ck_assert_int_eq(attn_st_read_f32(st, "scalar", 0, NULL, out, err, sizeof err), ATTN_OK);
    ck_assert_float_eq(out[0], 0.5f);
    t = attn_st_find(st, "empty");
    ck_assert_uint_eq(t->n_elements, 0);
    ck_assert_int_eq(attn_st_to_f32(t, NULL, 0), ATTN_OK);
    ck_assert_str_eq(attn_dtype_name(ATTN_DTYPE_BF16), "BF16");
    ck_assert_ptr_null(attn_dtype_name((attn_dtype)9));
    ck_assert_uint_eq(attn_dtype_size(ATTN_DTYPE_I64), 8);
    ck_assert_uint_eq(attn_dtype_size((attn_dtype)9), 0);
    attn_st_close(st);
    tmp_teardown();
}
END_TEST

/* ------------------------------------------------------------ corrupted files */

typedef struct bad_file {
    const char *name;   /* what is wrong */
    const char *header; /* JSON header */
    size_t n_data;      /* bytes after the header */
    attn_status want;
    const char *message; /* a piece of the expected message (the tensor's name when it has one) */
} bad_file;

#define W16 "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}"

static const bad_file BAD[] = {
    {"header not JSON", "{\"w\":{\"dtype\":\"F32\",", 16, ATTN_ERR_FORMAT,
     "header is not valid JSON"},
    {"header a JSON array", "[1,2,3]", 0, ATTN_ERR_FORMAT, "header is not a JSON object"},
    {"text after the JSON object", "{" W16 "} x", 16, ATTN_ERR_FORMAT, "header is not valid JSON"},
    {"truncated data", "{" W16 "}", 12, ATTN_ERR_FORMAT,
     "'w': data_offsets [0, 16] run past the end of the data (12 bytes"},
    {"offsets out of range", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[96,112]}}",
     32, ATTN_ERR_FORMAT, "'w': data_offsets [96, 112] run past"},
    {"offsets reversed",
     "{\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[100,90]}}",
     128, ATTN_ERR_FORMAT, "'h.0.attn.c_attn.weight': data_offsets [100, 90] are reversed"},
    {"overlapping offsets",
     "{" W16 ",\"v\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[8,16]}}", 16,
     ATTN_ERR_FORMAT, "'v': data_offsets [8, 16] overlap tensor 'w' [0, 16]"},
    {"unsupported dtype F64", "{\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]}}",
     16, ATTN_ERR_UNSUPPORTED, "'w': dtype F64 is not supported"},
    {"unsupported dtype I32", "{\"w\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
     16, ATTN_ERR_UNSUPPORTED, "'w': dtype I32"},
    {"unknown dtype", "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
     ATTN_ERR_FORMAT, "'w': unknown dtype 'Q4_K'"},
    {"dtype not a string", "{\"w\":{\"dtype\":4,\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
     ATTN_ERR_FORMAT, "'w': \"dtype\" is missing"},
    {"shape and size disagree", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}",
     16, ATTN_ERR_FORMAT,
     "'w': data_offsets [0, 16] hold 16 bytes but dtype F32 shape [3] needs 12"},
    {"shape product overflows",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,16]}}", 16,
     ATTN_ERR_OVERFLOW, "'w': shape [4294967296, 4294967296, 16] has more bytes than size_t holds"},
    {"bytes overflow",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],"
     "\"data_offsets\":[0,16]}}",
     16, ATTN_ERR_OVERFLOW, "'w': shape[0] is too large"},
    {"negative dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", 16,
     ATTN_ERR_FORMAT, "'w': shape[0] is not a non-negative integer"},
    {"fractional dimension",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,16]}}", 16, ATTN_ERR_FORMAT,
     "'w': shape[1] is not a non-negative integer"},
    {"too many dimensions",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}", 16,
     ATTN_ERR_UNSUPPORTED, "'w': 9 dimensions"},
    {"shape missing", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,16]}}", 16, ATTN_ERR_FORMAT,
     "'w': \"shape\" is missing"},
    {"three offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,8,16]}}", 16,
     ATTN_ERR_FORMAT, "'w': \"data_offsets\" is missing or not an array of two"},
    {"string offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[\"0\",16]}}", 16,
     ATTN_ERR_FORMAT, "'w': data_offsets are not two non-negative integers"},
    {"entry not an object", "{\"w\":[1,2]}", 16, ATTN_ERR_FORMAT,
     "'w': entry is not a JSON object"},
    {"duplicate names",
     "{" W16 ",\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}", 32,
     ATTN_ERR_FORMAT, "'w': the name appears twice"},
    {"metadata value not a string", "{\"__metadata__\":{\"format\":1}," W16 "}", 16,
     ATTN_ERR_FORMAT, "\"__metadata__\" entry 'format' is not a string"},
    {"metadata not an object", "{\"__metadata__\":\"pt\"," W16 "}", 16, ATTN_ERR_FORMAT,
     "\"__metadata__\" is not a JSON object"},
};
#define N_BAD ((int)(sizeof(BAD) / sizeof(BAD[0])))

START_TEST(corrupted_header_is_refused_with_status_and_message_naming_file_and_tensor)
{
    tmp_setup();
    const bad_file *b = &BAD[_i];
    const char *path = write_st("bad.safetensors", b->header, b->n_data);
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_st *st = (attn_st *)&err; /* must become NULL */
    attn_status rc = attn_st_open(path, NULL, &st, err, sizeof err);
    ck_assert_msg(rc == b->want, "%s: got %d (%s: %s), expected %d", b->name, (int)rc,
                  attn_status_str(rc), err, (int)b->want);
    ck_assert_ptr_null(st);
    ck_assert_msg(strncmp(err, path, strlen(path)) == 0, "%s: message does not name the file: %s",
                  b->name, err);
    ck_assert_msg(strstr(err, b->message) != NULL, "%s: message '%s' lacks '%s'", b->name, err,
                  b->message);
    tmp_teardown();
}
END_TEST

START_TEST(broken_files_and_lengths_are_refused)
{
    tmp_setup();
    char err[ATTN_MODEL_ERR_SIZE] = "";
    attn_st *st = NULL;
    /* Header length past the end of the file. */
    const char *path = write_st_raw("long.safetensors", "{" W16 "}", 1000, "0123456789abcdef", 16);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_ERR_FORMAT);
    char want[128];
    snprintf(want, sizeof want, "header length 1000 runs past the end of the file (%zu bytes)",
             8 + strlen("{" W16 "}") + 16);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
    ck_assert_ptr_nonnull(strstr(err, path));
    /* A length that would wrap around when added to 8. */
    path = write_st_raw("wrap.safetensors", "{}", UINT64_MAX - 3, NULL, 0);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "runs past the end"));
    /* Above the 100 MB limit, in a sparse file large enough to hold it. */
    path = write_st_raw("huge.safetensors", "{}", 100000001u, NULL, 0);
    ck_assert_int_eq(truncate(path, 8 + 100000001 + 16), 0);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "header length 100000001 is above the 100000000-byte limit"));
    /* Shorter than the length field. */
    path = write_st_raw("short.safetensors", "", 0, NULL, 0);
    ck_assert_int_eq(truncate(path, 5), 0);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "5 bytes, too short"));
    /* Empty header; a NUL inside the header. */
    path = write_st_raw("empty.safetensors", "", 0, NULL, 0);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_ERR_FORMAT);
    const char nul_header[] = "{\"a\0\":{}}";
    path = write_st_raw("nul.safetensors", "", 0, NULL, 0);
    FILE *f = fopen(path, "wb");
    const unsigned char len9[8] = {9, 0, 0, 0, 0, 0, 0, 0};
    ck_assert_uint_eq(fwrite(len9, 1, 8, f), 8);
    ck_assert_uint_eq(fwrite(nul_header, 1, 9, f), 9);
    fclose(f);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(err, "NUL byte"));
    /* Missing file, a directory. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.safetensors", g_dir);
    ck_assert_int_eq(attn_st_open(missing, NULL, &st, err, sizeof err), ATTN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "none.safetensors: cannot open"));
    ck_assert_int_eq(attn_st_open(g_dir, NULL, &st, err, sizeof err), ATTN_ERR_IO);
    ck_assert_ptr_null(st);
    /* Messages are truncated to the buffer given, and err may be NULL. */
    char tiny[8];
    ck_assert_int_eq(attn_st_open(missing, NULL, &st, tiny, sizeof tiny), ATTN_ERR_IO);
    ck_assert_uint_eq(strlen(tiny), 7);
    ck_assert_int_eq(attn_st_open(missing, NULL, &st, NULL, 0), ATTN_ERR_IO);
    /* An empty header object, gaps and trailing bytes are fine. */
    path = write_st("gaps.safetensors",
                    "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}   ", 40);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_OK);
    ck_assert_uint_eq(attn_st_count(st), 1);
    attn_st_close(st);
    path = write_st("none.safetensors", "{}", 0);
    ck_assert_int_eq(attn_st_open(path, NULL, &st, err, sizeof err), ATTN_OK);
    ck_assert_uint_eq(attn_st_count(st), 0);
    ck_assert_ptr_null(attn_st_find(st, "w"));
    attn_st_close(st);
    tmp_teardown();
}
END_TEST

START_TEST(arguments_are_checked_and_null_is_harmless)
{
    char err[ATTN_MODEL_ERR_SIZE];
    attn_st *st = NULL;
    ck_assert_int_eq(attn_st_open(NULL, NULL, &st, err, sizeof err), ATTN_ERR_INVALID);
    ck_assert_int_eq(attn_st_open("x", NULL, NULL, err, sizeof err), ATTN_ERR_INVALID);
    attn_allocator half = {al_alloc, NULL, NULL};
    ck_assert_int_eq(
        attn_st_open(MODELS "/bert-tiny/model.safetensors", &half, &st, err, sizeof err),
        ATTN_ERR_INVALID);
    ck_assert_ptr_null(st);
    attn_st_close(NULL);
    ck_assert_uint_eq(attn_st_count(NULL), 0);
    ck_assert_ptr_null(attn_st_at(NULL, 0));
    ck_assert_ptr_null(attn_st_find(NULL, "x"));
    ck_assert_ptr_null(attn_st_find_any_prefix(NULL, "x"));
    ck_assert_ptr_null(attn_st_metadata(NULL, "x"));
    ck_assert_str_eq(attn_st_path(NULL), "");
    ck_assert_str_eq(attn_status_str(ATTN_ERR_IO), "file could not be read");
    ck_assert_str_eq(attn_status_str(ATTN_ERR_FORMAT), "malformed file");
}
END_TEST

/* ------------------------------------------------------------ memory */

/*
 * Fails every allocation in turn (the library's and cJSON's): each open
 * returns ATTN_ERR_NOMEM with nothing leaked, and the next one succeeds.
 */
START_TEST(open_each_failed_allocation_returns_nomem_without_leaks)
{
    const char *path = MODELS "/bert-tiny/model.safetensors";
    char err[ATTN_MODEL_ERR_SIZE];
    hooks_counting();
    attn_st *st = NULL;
    ck_assert_int_eq(attn_st_open(path, &COUNTING, &st, err, sizeof err), ATTN_OK);
    attn_st_close(st);
    const size_t total = g_count.n_calls;
    ck_assert_uint_gt(total, 40); /* cJSON's nodes are counted too */
    ck_assert_uint_eq(g_count.n_ok, g_count.n_free);
    for (size_t fail = 1; fail <= total; fail++) {
        memset(&g_count, 0, sizeof g_count);
        g_count.fail_at = fail;
        st = (attn_st *)&err;
        attn_status rc = attn_st_open(path, &COUNTING, &st, err, sizeof err);
        ck_assert_msg(rc == ATTN_ERR_NOMEM, "failure %zu of %zu: got %d (%s)", fail, total, (int)rc,
                      err);
        ck_assert_ptr_null(st);
        ck_assert_ptr_nonnull(strstr(err, "out of memory"));
        ck_assert_msg(g_count.n_ok == g_count.n_free, "failure %zu: %zu allocations, %zu frees",
                      fail, g_count.n_ok, g_count.n_free);
    }
    memset(&g_count, 0, sizeof g_count);
    ck_assert_int_eq(attn_st_open(path, &COUNTING, &st, err, sizeof err), ATTN_OK);
    ck_assert_ptr_nonnull(attn_st_find(st, "pooler.dense.weight"));
    attn_st_close(st);
    ck_assert_uint_eq(g_count.n_ok, g_count.n_free);
    hooks_default();
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("model_safetensors");
    TCase *tg = tcase_create("golden");
    tcase_add_test(tg, bert_tiny_shapes_match_config);
    tcase_add_test(tg, gpt2_tiny_shapes_match_config);
    tcase_add_test(tg, demo_gpt2_shapes_match_config);
    tcase_add_test(tg, vit_tiny_shapes_match_config);
    tcase_add_test(tg, bart_tiny_shapes_match_config);
    tcase_add_test(tg, read_f32_reports_missing_and_wrong_shape_with_names);
    suite_add_tcase(s, tg);
    TCase *tc = tcase_create("conversion");
    tcase_add_test(tc, f16_and_bf16_convert_every_value_exactly);
    tcase_add_test(tc, hand_made_f16_bf16_i64_file_converts_and_keeps_unaligned_data);
    suite_add_tcase(s, tc);
    TCase *tb = tcase_create("corrupted");
    tcase_add_loop_test(
        tb, corrupted_header_is_refused_with_status_and_message_naming_file_and_tensor, 0, N_BAD);
    tcase_add_test(tb, broken_files_and_lengths_are_refused);
    tcase_add_test(tb, arguments_are_checked_and_null_is_harmless);
    suite_add_tcase(s, tb);
    TCase *tm = tcase_create("memory");
    tcase_add_test(tm, open_each_failed_allocation_returns_nomem_without_leaks);
    suite_add_tcase(s, tm);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(safetensors_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
