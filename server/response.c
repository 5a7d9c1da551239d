/* response.c - responses, error envelopes, request look-ups, clock, per-thread workspace. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "srv.h"

/* ------------------------------------------------------------- response */

void srv_response_init(srv_response *r)
{
    memset(r, 0, sizeof *r);
    r->status = 200;
    r->route = -1;
}

void srv_response_clear(srv_response *r)
{
    free(r->body);
    srv_response_init(r);
}

/* Sets (or replaces: a header is sent once) a header. Names longer than the
 * fixed slot are dropped rather than sent truncated, values are truncated;
 * a full table drops the header: handlers only ever set a handful. */
/* src into dst[cap], cut to fit and NUL-terminated (what "%s" with
 * snprintf did, without printf on every answer). */
static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

void srv_response_header(srv_response *r, const char *name, const char *fmt, ...)
{
    size_t i;
    va_list ap;

    if (strlen(name) >= sizeof r->header_names[0])
        return;
    for (i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->header_names[i], name) == 0)
            break;
    if (i == SRV_MAX_HEADERS)
        return;
    memcpy(r->header_names[i], name, strlen(name) + 1); /* fits: checked above */
    if (strchr(fmt, '%') == NULL) {
        /* a constant ("Vary: Accept"), on every answer: no printf */
        copy_cut(r->header_values[i], sizeof r->header_values[i], fmt);
    } else {
        va_start(ap, fmt);
        vsnprintf(r->header_values[i], sizeof r->header_values[i], fmt, ap);
        va_end(ap);
    }
    if (i == r->n_headers)
        r->n_headers++;
}

void srv_response_set(srv_response *r, int status, const char *content_type, char *body, size_t len)
{
    free(r->body);
    r->status = status;
    copy_cut(r->content_type, sizeof r->content_type, content_type ? content_type : "");
    r->body = body;
    r->body_len = body ? len : 0;
}

/* On out-of-memory the response carries no body (the transport then sends
 * a minimal error envelope for statuses >= 400, or an empty body). */
void srv_response_text(srv_response *r, int status, const char *content_type, const char *text)
{
    size_t len = strlen(text);
    char *copy = malloc(len + 1);

    if (copy == NULL) {
        srv_response_set(r, 500, "application/json", NULL, 0);
        return;
    }
    memcpy(copy, text, len + 1);
    srv_response_set(r, status, content_type, copy, len);
}

/* ---------------------------------------------------------------- errors */

/* Without cJSON (out of memory): status and code are kept, the message is
 * dropped because escaping it is not worth a second code path. NULL if even
 * this small allocation fails. */
static char *error_body_minimal(const srv_err *e, size_t *len)
{
    char tmp[160];
    int n = snprintf(tmp, sizeof tmp,
                     "{\"error\":{\"status\":%d,\"code\":\"%s\",\"message\":\"\",\"field\":\"\"}}",
                     e->status, e->code ? e->code : SRV_CODE_INTERNAL);
    char *body;

    if (n < 0 || (size_t)n >= sizeof tmp)
        return NULL;
    body = malloc((size_t)n + 1);
    if (body == NULL)
        return NULL;
    memcpy(body, tmp, (size_t)n + 1);
    *len = (size_t)n;
    return body;
}

void srv_respond_error(srv_response *r, const srv_err *e)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = root ? cJSON_AddObjectToObject(root, "error") : NULL;
    char *text = NULL;
    char *body = NULL;
    size_t len = 0;
    int status = e->status >= 400 && e->status <= 599 ? e->status : 500;

    if (err != NULL && cJSON_AddNumberToObject(err, "status", status) != NULL &&
        cJSON_AddStringToObject(err, "code", e->code ? e->code : SRV_CODE_INTERNAL) != NULL &&
        cJSON_AddStringToObject(err, "message", e->message) != NULL &&
        cJSON_AddStringToObject(err, "field", e->field) != NULL)
        text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    if (text != NULL) {
        /* cJSON allocates with malloc (no hooks are installed), so the
         * transport may free() the text like any other body. */
        body = text;
        len = strlen(text);
    } else {
        body = error_body_minimal(e, &len);
    }
    srv_response_clear(r);
    srv_response_set(r, status, "application/json", body, len);
    r->error_code = e->code ? e->code : SRV_CODE_INTERNAL;
}

/* --------------------------------------------------------------- request */

const char *srv_req_header(const srv_request *r, const char *name)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (r->headers[i].key != NULL && strcasecmp(r->headers[i].key, name) == 0)
            return r->headers[i].value ? r->headers[i].value : "";
    return NULL;
}

const char *srv_req_query(const srv_request *r, const char *key)
{
    for (size_t i = 0; i < r->n_query; i++)
        if (r->query[i].key != NULL && strcmp(r->query[i].key, key) == 0)
            return r->query[i].value ? r->query[i].value : "";
    return NULL;
}

/* ------------------------------------------------------- clock, workspace */

double srv_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static pthread_key_t ws_key;
static pthread_once_t ws_key_once = PTHREAD_ONCE_INIT;
static int ws_key_ok;

/* Runs when a thread that used a workspace exits (MHD's pool threads at
 * MHD_stop_daemon), so workspaces never outlive their thread. */
static void ws_destroy(void *p)
{
    attn_ws_free(p);
}

static void ws_key_make(void)
{
    ws_key_ok = pthread_key_create(&ws_key, ws_destroy) == 0;
}

attn_ws *srv_thread_ws(void)
{
    attn_ws *ws;

    pthread_once(&ws_key_once, ws_key_make);
    if (!ws_key_ok)
        return NULL;
    ws = pthread_getspecific(ws_key);
    if (ws != NULL)
        return ws;
    ws = attn_ws_create(NULL);
    if (ws == NULL)
        return NULL;
    if (pthread_setspecific(ws_key, ws) != 0) {
        attn_ws_free(ws);
        return NULL;
    }
    return ws;
}
