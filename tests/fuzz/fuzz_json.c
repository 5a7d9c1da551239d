/* fuzz_json.c - the JSON layer: body parsing, tensor and bool-tensor decoding (lists and base64
 * objects), scalar readers, base64 both ways, the streaming writer and float formatting. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "json.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Decodes every member every way; writes back what decoded and parses that again. */
static void members(const uint8_t *data, size_t size)
{
    srv_err e;
    cJSON *root = srv_json_parse_object((const char *)data, size, &e);
    if (!root)
        return;
    srv_ptr rp;
    srv_ptr_root(&rp);
    static const char *const keys[] = {"query", "key", "value", "mask", NULL};
    srv_json_check_keys(root, &rp, keys, &e);
    for (const cJSON *m = root->child; m; m = m->next) {
        srv_ptr p;
        srv_ptr_key(&p, &rp, m->string ? m->string : "");
        for (size_t rmax = 0; rmax <= 5; rmax++) {
            srv_tensor t = {0};
            if (srv_json_read_tensor(m, &p, "x", 0, rmax, rmax & 1, 1 << 16, &t, &e)) {
                srv_buf b;
                srv_buf_init(&b);
                srv_jw w;
                srv_jw_init(&w, &b, (int)(t.size % 10), rmax >= 3);
                srv_jw_tensor(&w, t.data, t.rank, t.shape);
                size_t len = 0;
                char *text = srv_buf_detach(&b, &len);
                if (text) {
                    cJSON *back = cJSON_ParseWithLength(text, len);
                    if (!back)
                        abort(); /* the writer produced something that is not JSON */
                    cJSON_Delete(back);
                    free(text);
                }
            }
            srv_tensor_free(&t);
        }
        srv_btensor bt = {0};
        srv_json_read_btensor(m, &p, "m", 1, 3, 1 << 16, &bt, &e);
        srv_btensor_free(&bt);
        long long i = 0;
        double d = 0;
        bool bo = false;
        char s[16];
        srv_json_opt_int(root, &rp, m->string ? m->string : "", -5, 5, &i, &e);
        srv_json_opt_float(root, &rp, m->string ? m->string : "", 0, 1, &d, &e);
        srv_json_opt_bool(root, &rp, m->string ? m->string : "", &bo, &e);
        srv_json_opt_string(root, &rp, m->string ? m->string : "", s, sizeof s, &e);
    }
    cJSON_Delete(root);
}

static void base64(const uint8_t *data, size_t size)
{
    size_t cap = srv_base64_decoded_max(size) + 1, got = 0, bad = 0;
    uint8_t *out = malloc(cap);
    if (out && srv_base64_decode((const char *)data, size, out, &got, &bad)) {
        char *enc = malloc(srv_base64_encoded_len(got) + 1);
        uint8_t *again = malloc(got + 1);
        size_t got2 = 0;
        if (enc && again) {
            size_t elen = srv_base64_encode(out, got, enc);
            if (!srv_base64_decode(enc, elen, again, &got2, &bad) || got2 != got ||
                memcmp(again, out, got) != 0)
                abort(); /* encode then decode must give the bytes back */
        }
        free(enc);
        free(again);
    }
    free(out);
}

static void floats(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i + 4 <= size; i += 4) {
        float f;
        memcpy(&f, data + i, 4);
        if (!isfinite(f))
            continue;
        char buf[32];
        srv_format_float(f, 0, buf);
        if (strtof(buf, NULL) != f)
            abort(); /* the shortest form must read back to the same float */
        srv_format_float(f, (int)(data[i] % 9) + 1, buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0:
    case 1:
        members(data + 1, size - 1);
        break;
    case 2:
        base64(data + 1, size - 1);
        break;
    default:
        floats(data + 1, size - 1);
        break;
    }
    return 0;
}
