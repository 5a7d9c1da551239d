/* models.c - the registry of pretrained models: NAME=DIR specs, background loading, lookup. */
#include "models.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum model_state {
    MODEL_PENDING = 0,
    MODEL_LOADING,
    MODEL_READY,
    MODEL_FAILED,
} model_state;

typedef struct srv_model {
    char name[SRV_MODEL_NAME_MAX];
    char *dir;
    attn_pretrained *m; /* set once, when loaded; immutable after */
    model_state state;
} srv_model;

struct srv_models {
    srv_model *v;
    size_t n;
    pthread_mutex_t mu; /* guards every state and m, and the fields below */
    pthread_t thread;
    bool started;
    bool running; /* the loader has not finished */
    bool cancel;  /* stop between models (shutdown while loading) */
    char err[ATTN_MODEL_ERR_SIZE + 2 * SRV_MODEL_NAME_MAX + 4096];
};

/* ------------------------------------------------------------ specs */

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* The NAME of the line at p (up to '=') equals name [len]. */
static bool list_has(const char *list, const char *name, size_t len)
{
    for (const char *p = list; *p != '\0';) {
        const size_t eq = strcspn(p, "=\n");
        if (eq == len && strncmp(p, name, len) == 0)
            return true;
        p += strcspn(p, "\n");
        p += *p == '\n';
    }
    return false;
}

bool srv_model_specs_add(char *list, size_t size, const char *flag, const char *value, char *err,
                         size_t err_len)
{
    const char *p = value;
    for (;;) {
        const size_t n = strcspn(p, ",");
        const char *const next = p + n;
        const char *b = p, *e = next;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        const char *eq = memchr(b, '=', (size_t)(e - b));
        if (!eq) {
            snprintf(err, err_len, "%s: '%.*s' is not NAME=DIR (e.g. demo=models/demo-gpt2)", flag,
                     (int)(e - b > 200 ? 200 : e - b), b);
            return false;
        }
        const size_t name_len = (size_t)(eq - b), dir_len = (size_t)(e - eq - 1);
        bool ok = name_len > 0 && name_len < SRV_MODEL_NAME_MAX;
        for (size_t i = 0; ok && i < name_len; i++)
            ok = name_char(b[i]);
        if (!ok) {
            snprintf(err, err_len,
                     "%s: model name '%.*s' must be 1 to %d of the characters A-Z a-z 0-9 . _ -",
                     flag, (int)(name_len > 80 ? 80 : name_len), b, SRV_MODEL_NAME_MAX - 1);
            return false;
        }
        if (dir_len == 0) {
            snprintf(err, err_len, "%s: model '%.*s' has no folder after '='", flag, (int)name_len,
                     b);
            return false;
        }
        if (memchr(eq + 1, '\n', dir_len)) {
            snprintf(err, err_len, "%s: a folder name may not hold a line break", flag);
            return false;
        }
        if (list_has(list, b, name_len)) {
            snprintf(err, err_len, "%s: model '%.*s' is named twice", flag, (int)name_len, b);
            return false;
        }
        const size_t used = strlen(list), need = (size_t)(e - b) + (used > 0);
        if (used + need + 1 > size) {
            snprintf(err, err_len, "%s: the model list takes more than %zu characters", flag,
                     size - 1);
            return false;
        }
        snprintf(list + used, size - used, "%s%.*s", used > 0 ? "\n" : "", (int)(e - b), b);
        if (*next == '\0')
            return true;
        p = next + 1;
    }
}

/* ------------------------------------------------------------ registry */

srv_models *srv_models_create(const char *specs)
{
    srv_models *ms = calloc(1, sizeof *ms);
    if (!ms)
        return NULL;
    pthread_mutex_init(&ms->mu, NULL);
    size_t count = 0;
    for (const char *p = specs; p && *p; p += strcspn(p, "\n"), p += *p == '\n')
        count++;
    ms->v = count ? calloc(count, sizeof *ms->v) : NULL;
    if (count && !ms->v) {
        srv_models_free(ms);
        return NULL;
    }
    for (const char *p = specs; p && *p; p += *p == '\n') {
        const size_t len = strcspn(p, "\n"), eq = strcspn(p, "=");
        srv_model *md = &ms->v[ms->n];
        snprintf(md->name, sizeof md->name, "%.*s", (int)eq, p);
        md->dir = strndup(p + eq + 1, len - eq - 1);
        if (!md->dir) {
            srv_models_free(ms);
            return NULL;
        }
        ms->n++;
        p += len;
    }
    return ms;
}

void srv_models_free(srv_models *ms)
{
    if (!ms)
        return;
    pthread_mutex_lock(&ms->mu);
    ms->cancel = true;
    const bool started = ms->started, running = ms->running;
    pthread_mutex_unlock(&ms->mu);
    if (running) {
        /* A stop while a model loads: the load cannot be interrupted and may take long
         * (or wait on a file forever), so the registry is left to the process's exit. */
        pthread_detach(ms->thread);
        return;
    }
    if (started)
        pthread_join(ms->thread, NULL);
    for (size_t i = 0; i < ms->n; i++) {
        attn_pretrained_free(ms->v[i].m);
        free(ms->v[i].dir);
    }
    free(ms->v);
    pthread_mutex_destroy(&ms->mu);
    free(ms);
}

size_t srv_models_count(const srv_models *ms)
{
    return ms ? ms->n : 0;
}

const char *srv_models_name(const srv_models *ms, size_t i)
{
    return ms && i < ms->n ? ms->v[i].name : NULL;
}

static void *loader_main(void *arg)
{
    srv_models *ms = arg;
    for (size_t i = 0; i < ms->n; i++) {
        srv_model *md = &ms->v[i];
        pthread_mutex_lock(&ms->mu);
        const bool cancel = ms->cancel;
        if (!cancel)
            md->state = MODEL_LOADING;
        pthread_mutex_unlock(&ms->mu);
        if (cancel)
            break;
        char err[ATTN_MODEL_ERR_SIZE];
        attn_pretrained *m = NULL;
        attn_status rc = attn_pretrained_load(md->dir, NULL, &m, err, sizeof err);
        pthread_mutex_lock(&ms->mu);
        if (rc == ATTN_OK) {
            md->m = m;
            md->state = MODEL_READY;
        } else {
            md->state = MODEL_FAILED;
            snprintf(ms->err, sizeof ms->err, "model '%s' (%s): %s", md->name, md->dir,
                     err[0] ? err : attn_status_str(rc));
        }
        pthread_mutex_unlock(&ms->mu);
        if (rc != ATTN_OK)
            break;
    }
    pthread_mutex_lock(&ms->mu);
    ms->running = false;
    pthread_mutex_unlock(&ms->mu);
    return NULL;
}

bool srv_models_start(srv_models *ms, char *err, size_t err_len)
{
    if (!ms || ms->n == 0)
        return true;
    pthread_mutex_lock(&ms->mu);
    ms->running = true;
    pthread_mutex_unlock(&ms->mu);
    int rc = pthread_create(&ms->thread, NULL, loader_main, ms);
    pthread_mutex_lock(&ms->mu);
    ms->started = rc == 0;
    if (rc != 0)
        ms->running = false;
    pthread_mutex_unlock(&ms->mu);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the model loader: %s", strerror(rc));
        return false;
    }
    return true;
}

int srv_models_poll(srv_models *ms, char *err, size_t err_len)
{
    if (!ms)
        return 1;
    int result = 1;
    pthread_mutex_lock(&ms->mu);
    for (size_t i = 0; i < ms->n; i++) {
        if (ms->v[i].state == MODEL_FAILED) {
            snprintf(err, err_len, "%s", ms->err);
            result = -1;
            break;
        }
        if (ms->v[i].state != MODEL_READY)
            result = 0;
    }
    pthread_mutex_unlock(&ms->mu);
    return result;
}

void srv_models_loading(srv_models *ms, char *name, size_t len)
{
    name[0] = '\0';
    if (!ms)
        return;
    pthread_mutex_lock(&ms->mu);
    for (size_t i = 0; i < ms->n; i++)
        if (ms->v[i].state != MODEL_READY) {
            snprintf(name, len, "%s", ms->v[i].name);
            break;
        }
    pthread_mutex_unlock(&ms->mu);
}

const attn_pretrained *srv_models_get(srv_models *ms, const char *name, bool *loading)
{
    const attn_pretrained *m = NULL;
    bool pending = false;
    if (ms && name) {
        pthread_mutex_lock(&ms->mu);
        for (size_t i = 0; i < ms->n; i++)
            if (strcmp(ms->v[i].name, name) == 0) {
                m = ms->v[i].m;
                pending = !m;
                break;
            }
        pthread_mutex_unlock(&ms->mu);
    }
    if (loading)
        *loading = pending;
    return m;
}

void srv_models_names(const srv_models *ms, char *out, size_t len)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; ms && i < ms->n && at < len; i++)
        at += (size_t)snprintf(out + at, len - at, "%s%s", i ? ", " : "", ms->v[i].name);
    if (!ms || ms->n == 0)
        snprintf(out, len, "none (start the server with --model NAME=DIR)");
}

bool srv_models_info_add(srv_models *ms, cJSON *root)
{
    static const char *const states[] = {"pending", "loading", "ready", "failed"};
    cJSON *arr = cJSON_AddArrayToObject(root, "models");
    if (!arr)
        return false;
    for (size_t i = 0; ms && i < ms->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return false;
        cJSON_AddItemToArray(arr, o);
        pthread_mutex_lock(&ms->mu);
        const attn_pretrained *m = ms->v[i].m;
        const model_state st = ms->v[i].state;
        pthread_mutex_unlock(&ms->mu);
        const attn_pretrained_info *info = attn_pretrained_get_info(m);
        if (!cJSON_AddStringToObject(o, "name", ms->v[i].name) ||
            !(info ? cJSON_AddStringToObject(o, "architecture", attn_arch_name(info->arch))
                   : cJSON_AddNullToObject(o, "architecture")) ||
            !cJSON_AddStringToObject(o, "status", states[st]))
            return false;
    }
    return true;
}
