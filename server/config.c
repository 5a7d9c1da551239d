/* config.c - settings from ATTN_* environment variables and command-line flags, with validation. */
#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cors.h"
#include "models.h"
#include "srv.h"

#define CFG_DEFAULT_HOST "127.0.0.1"
#define CFG_DEFAULT_PORT 8080u
#define CFG_DEFAULT_BLAS_THREADS 1
#define CFG_DEFAULT_MAX_BODY ((size_t)64 << 20)
#define CFG_DEFAULT_MAX_ELEMENTS ((size_t)64 << 20)
#define CFG_DEFAULT_TIMEOUT 30u
#define CFG_DEFAULT_DRAIN 10u
#define CFG_MAX_THREADS 256
#define CFG_DEFAULT_MAX_SEQ_LEN 65536u
#define CFG_DEFAULT_MAX_HEADS 256u
#define CFG_DEFAULT_MAX_LAYERS 64u
#define CFG_DEFAULT_MAX_CONNECTIONS 1024u
#define CFG_DEFAULT_QUEUE_TIMEOUT_MS 2000u

/* Online cores, clamped to the --threads range. */
static unsigned cfg_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > CFG_MAX_THREADS ? CFG_MAX_THREADS : (unsigned)n;
}

void srv_config_defaults(srv_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->host, sizeof c->host, "%s", CFG_DEFAULT_HOST);
    c->port = CFG_DEFAULT_PORT;
    c->threads = cfg_cores();
    c->blas_threads = CFG_DEFAULT_BLAS_THREADS;
    c->max_body_bytes = CFG_DEFAULT_MAX_BODY;
    c->max_elements = CFG_DEFAULT_MAX_ELEMENTS;
    c->timeout_s = CFG_DEFAULT_TIMEOUT;
    c->drain_s = CFG_DEFAULT_DRAIN;
    c->quiet = false;
    c->max_seq_len = CFG_DEFAULT_MAX_SEQ_LEN;
    c->max_heads = CFG_DEFAULT_MAX_HEADS;
    c->max_layers = CFG_DEFAULT_MAX_LAYERS;
    c->max_connections = CFG_DEFAULT_MAX_CONNECTIONS;
    c->max_concurrent = 0; /* = threads */
    c->queue_timeout_ms = CFG_DEFAULT_QUEUE_TIMEOUT_MS;
}

/* --------------------------------------------------------- the option table */

typedef enum cfg_kind {
    CFG_KIND_HOST,
    CFG_KIND_UINT, /* unsigned in [lo, hi] */
    CFG_KIND_INT,  /* int in [lo, hi] */
    CFG_KIND_SIZE, /* size_t > 0 with optional K/M/G suffix */
    CFG_KIND_BOOL,
    CFG_KIND_STRING,  /* text up to hi - 1 bytes (hi = the field's size) */
    CFG_KIND_ORIGINS, /* comma-separated origins appended to a list of hi bytes (cors.h) */
    CFG_KIND_MODELS,  /* comma-separated NAME=DIR appended to a list of hi bytes (models.h) */
    CFG_KIND_HELP,
    CFG_KIND_VERSION,
} cfg_kind;

typedef struct cfg_opt {
    const char *flag; /* without the leading "--" */
    const char *env;  /* NULL: flag only */
    cfg_kind kind;
    unsigned long long lo, hi;
    size_t offset;    /* into srv_config */
    const char *arg;  /* value name in --help */
    const char *help; /* --help text; the default is appended */
} cfg_opt;

static const cfg_opt cfg_opts[] = {
    {"host", "ATTN_HOST", CFG_KIND_HOST, 0, 0, offsetof(srv_config, host), "ADDR",
     "address to listen on: IPv4, IPv6 or localhost"},
    {"port", "ATTN_PORT", CFG_KIND_UINT, 0, 65535, offsetof(srv_config, port), "N",
     "TCP port; 0 = any free port (printed at start-up)"},
    {"threads", "ATTN_THREADS", CFG_KIND_UINT, 1, CFG_MAX_THREADS, offsetof(srv_config, threads),
     "N", "request worker threads"},
    {"blas-threads", "ATTN_BLAS_THREADS", CFG_KIND_INT, 1, 64, offsetof(srv_config, blas_threads),
     "N", "BLAS threads per request"},
    {"max-body-bytes", "ATTN_MAX_BODY_BYTES", CFG_KIND_SIZE, 1, 0,
     offsetof(srv_config, max_body_bytes), "SIZE",
     "largest request body in bytes; K, M, G suffixes (binary)"},
    {"max-elements", "ATTN_MAX_ELEMENTS", CFG_KIND_SIZE, 1, 0, offsetof(srv_config, max_elements),
     "SIZE", "most floats one response may hold; K, M, G suffixes (binary)"},
    {"timeout", "ATTN_TIMEOUT", CFG_KIND_UINT, 1, 3600, offsetof(srv_config, timeout_s), "SEC",
     "idle connection timeout in seconds"},
    {"drain-timeout", "ATTN_DRAIN_TIMEOUT", CFG_KIND_UINT, 1, 3600, offsetof(srv_config, drain_s),
     "SEC", "seconds to finish in-flight requests after SIGTERM/SIGINT"},
    {"quiet", "ATTN_QUIET", CFG_KIND_BOOL, 0, 0, offsetof(srv_config, quiet), NULL,
     "no start-up line on stdout, no stop note on stderr"},
    {"max-seq-len", "ATTN_MAX_SEQ_LEN", CFG_KIND_UINT, 1, 1u << 30,
     offsetof(srv_config, max_seq_len), "N", "most query or key rows in one request (413 past it)"},
    {"max-heads", "ATTN_MAX_HEADS", CFG_KIND_UINT, 1, 65536, offsetof(srv_config, max_heads), "N",
     "most attention heads per block (413 past it)"},
    {"max-layers", "ATTN_MAX_LAYERS", CFG_KIND_UINT, 1, 65536, offsetof(srv_config, max_layers),
     "N", "most layers in one transformer stack (413 past it)"},
    {"max-connections", "ATTN_MAX_CONNECTIONS", CFG_KIND_UINT, 1, 65536,
     offsetof(srv_config, max_connections), "N", "open connections at once; more are refused"},
    {"max-concurrent", "ATTN_MAX_CONCURRENT", CFG_KIND_UINT, 0, 65536,
     offsetof(srv_config, max_concurrent), "N",
     "computations at once; others wait (0 = --threads)"},
    {"queue-timeout-ms", "ATTN_QUEUE_TIMEOUT_MS", CFG_KIND_UINT, 0, 600000,
     offsetof(srv_config, queue_timeout_ms), "MS",
     "how long a computation waits for a slot before 429 with Retry-After"},
    {"api-key", "ATTN_API_KEY", CFG_KIND_STRING, 0, sizeof(((srv_config *)0)->api_key),
     offsetof(srv_config, api_key), "KEY",
     "require Authorization: Bearer KEY on /v1 and /v2 (health, metrics stay open)"},
    {"api-key-file", "ATTN_API_KEY_FILE", CFG_KIND_STRING, 0,
     sizeof(((srv_config *)0)->api_key_file), offsetof(srv_config, api_key_file), "FILE",
     "read the API key from the first line of FILE"},
    {"access-log", "ATTN_ACCESS_LOG", CFG_KIND_BOOL, 0, 0, offsetof(srv_config, access_log), NULL,
     "one JSON line per request on stderr"},
    {"cors-origin", "ATTN_CORS_ORIGIN", CFG_KIND_ORIGINS, 0,
     sizeof(((srv_config *)0)->cors_origins), offsetof(srv_config, cors_origins), "ORIGIN",
     "let pages of ORIGIN (scheme://host[:port], or *) call the API; repeatable or "
     "comma-separated"},
    {"model", "ATTN_MODELS", CFG_KIND_MODELS, 0, sizeof(((srv_config *)0)->models),
     offsetof(srv_config, models), "NAME=DIR",
     "serve the HuggingFace model folder DIR as NAME (bert, gpt2, vit, bart); repeatable or "
     "comma-separated; a model that fails to load stops the start (exit status 3)"},
    {"help", NULL, CFG_KIND_HELP, 0, 0, 0, NULL, "print this help and exit"},
    {"version", NULL, CFG_KIND_VERSION, 0, 0, 0, NULL,
     "print version and BLAS configuration, exit"},
};

#define CFG_N_OPTS (sizeof cfg_opts / sizeof cfg_opts[0])

/* ------------------------------------------------------------ value parsing */

/* Strict unsigned decimal: digits only, no sign, no spaces. */
static bool cfg_parse_ull(const char *s, unsigned long long *out, const char **end)
{
    char *e;

    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    *out = strtoull(s, &e, 10);
    if (errno == ERANGE)
        return false;
    *end = e;
    return true;
}

/* Plain integer or K/M/G suffix (binary: 1K = 1024). */
static bool cfg_parse_size(const char *s, size_t *out)
{
    unsigned long long v;
    const char *end;
    unsigned shift = 0;

    if (!cfg_parse_ull(s, &v, &end))
        return false;
    if (*end != '\0') {
        switch (*end) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return false;
        }
        if (end[1] != '\0')
            return false;
    }
    if (v == 0 || v > (unsigned long long)(SIZE_MAX >> shift))
        return false;
    *out = (size_t)(v << shift);
    return true;
}

static bool cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* IPv4 or IPv6 literal (brackets allowed around IPv6) or "localhost";
 * stored without brackets. Names other than localhost are refused rather
 * than resolved, so the address a server binds never depends on DNS. */
static bool cfg_parse_host(const char *s, char *out, size_t out_len)
{
    unsigned char addr[16];
    char tmp[256];
    size_t len = strlen(s);

    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        if (len - 2 >= sizeof tmp)
            return false;
        memcpy(tmp, s + 1, len - 2);
        tmp[len - 2] = '\0';
    } else {
        if (len >= sizeof tmp)
            return false;
        memcpy(tmp, s, len + 1);
    }
    if (strcmp(tmp, "localhost") != 0 && inet_pton(AF_INET, tmp, addr) != 1 &&
        inet_pton(AF_INET6, tmp, addr) != 1)
        return false;
    if (strlen(tmp) >= out_len)
        return false;
    snprintf(out, out_len, "%s", tmp);
    return true;
}

/* Appends the comma-separated origins of v (spaces around each ignored,
 * duplicates kept once) to the list in field (size bytes, "a,b"). */
static bool cfg_apply_origins(char *field, size_t size, const char *name, const char *v, char *err,
                              size_t err_len)
{
    const char *p = v;
    char why[320];

    for (;;) {
        const size_t n = strcspn(p, ",");
        const char *const next = p + n; /* the comma or the end */
        const char *e = next;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e == p) {
            snprintf(err, err_len,
                     "%s: empty origin in '%.64s' (expected scheme://host[:port] or *)", name, v);
            return false;
        }
        if (!srv_cors_origin_valid(p, (size_t)(e - p), why, sizeof why)) {
            snprintf(err, err_len, "%s: %s", name, why);
            return false;
        }
        char one[SRV_CORS_MAX_ORIGIN + 1];
        snprintf(one, sizeof one, "%.*s", (int)(e - p), p);
        bool have = false;
        for (const char *q = field; *q != '\0' && !have;) {
            size_t m = strcspn(q, ",");
            have = m == strlen(one) && strncasecmp(q, one, m) == 0;
            q += m;
            q += *q == ',';
        }
        size_t used = strlen(field);
        if (!have) {
            if (used + (used > 0) + strlen(one) + 1 > size) {
                snprintf(err, err_len, "%s: the origins take more than %zu characters", name,
                         size - 1);
                return false;
            }
            snprintf(field + used, size - used, "%s%s", used > 0 ? "," : "", one);
        }
        if (*next == '\0')
            return true;
        p = next + 1;
    }
}

/* Applies one value to c; on error writes one line into err. `name` is how
 * the user gave it ("--port" or "ATTN_PORT"). */
static bool cfg_apply(srv_config *c, const cfg_opt *o, const char *name, const char *v, char *err,
                      size_t err_len)
{
    char *field = (char *)c + o->offset;
    unsigned long long u;
    const char *end;
    size_t sz;
    bool b;

    switch (o->kind) {
    case CFG_KIND_HOST:
        if (cfg_parse_host(v, field, sizeof c->host))
            return true;
        snprintf(err, err_len, "%s: '%.64s' is not an IPv4 or IPv6 address (or localhost)", name,
                 v);
        return false;
    case CFG_KIND_UINT:
    case CFG_KIND_INT:
        if (!cfg_parse_ull(v, &u, &end) || *end != '\0') {
            snprintf(err, err_len, "%s: '%.64s' is not a number (expected an integer %llu..%llu)",
                     name, v, o->lo, o->hi);
            return false;
        }
        if (u < o->lo || u > o->hi) {
            snprintf(err, err_len, "%s: %.64s is out of range (expected %llu..%llu)", name, v,
                     o->lo, o->hi);
            return false;
        }
        if (o->kind == CFG_KIND_UINT)
            *(unsigned *)(void *)field = (unsigned)u;
        else
            *(int *)(void *)field = (int)u;
        return true;
    case CFG_KIND_SIZE:
        if (cfg_parse_size(v, &sz)) {
            *(size_t *)(void *)field = sz;
            return true;
        }
        snprintf(err, err_len,
                 "%s: '%.64s' is not a size (expected a positive integer, optionally with a K, M "
                 "or G suffix)",
                 name, v);
        return false;
    case CFG_KIND_BOOL:
        if (cfg_parse_bool(v, &b)) {
            *(bool *)(void *)field = b;
            return true;
        }
        snprintf(err, err_len,
                 "%s: '%.64s' is not a boolean (expected true/false, 1/0, yes/no, on/off)", name,
                 v);
        return false;
    case CFG_KIND_STRING:
        if (strlen(v) < o->hi) {
            snprintf(field, (size_t)o->hi, "%s", v);
            return true;
        }
        snprintf(err, err_len, "%s: longer than %llu characters", name, o->hi - 1);
        return false;
    case CFG_KIND_ORIGINS:
        return cfg_apply_origins(field, (size_t)o->hi, name, v, err, err_len);
    case CFG_KIND_MODELS:
        return srv_model_specs_add(field, (size_t)o->hi, name, v, err, err_len);
    case CFG_KIND_HELP:
    case CFG_KIND_VERSION:
        break;
    }
    snprintf(err, err_len, "%s does not take a value", name);
    return false;
}

/* ------------------------------------------------------------ help, version */

static void cfg_default_text(const cfg_opt *o, const srv_config *d, char *out, size_t out_len)
{
    const char *field = (const char *)d + o->offset;

    switch (o->kind) {
    case CFG_KIND_HOST:
        snprintf(out, out_len, "%s", field);
        break;
    case CFG_KIND_UINT:
        if (strcmp(o->flag, "threads") == 0)
            snprintf(out, out_len, "%u (the number of cores)",
                     *(const unsigned *)(const void *)field);
        else
            snprintf(out, out_len, "%u", *(const unsigned *)(const void *)field);
        break;
    case CFG_KIND_INT:
        snprintf(out, out_len, "%d", *(const int *)(const void *)field);
        break;
    case CFG_KIND_SIZE: {
        size_t v = *(const size_t *)(const void *)field;
        if (v % ((size_t)1 << 20) == 0)
            snprintf(out, out_len, "%zuM = %zu", v >> 20, v);
        else
            snprintf(out, out_len, "%zu", v);
        break;
    }
    case CFG_KIND_BOOL:
        snprintf(out, out_len, "%s", *(const bool *)(const void *)field ? "on" : "off");
        break;
    case CFG_KIND_STRING:
        snprintf(out, out_len, "%s", field[0] ? "set" : "none");
        break;
    case CFG_KIND_ORIGINS:
        snprintf(out, out_len, "%.60s", field[0] ? field : "none");
        break;
    case CFG_KIND_MODELS:
        snprintf(out, out_len, "none");
        break;
    case CFG_KIND_HELP:
    case CFG_KIND_VERSION:
        out[0] = '\0';
        break;
    }
}

static void cfg_help(char *out, size_t out_len)
{
    srv_config d;
    size_t used = 0;

    srv_config_defaults(&d);
    used +=
        (size_t)snprintf(out, out_len,
                         "usage: attention-server [options]\n"
                         "\n"
                         "Computes attention over HTTP (see GET /openapi.yaml).\n"
                         "Every option can also be set by its environment variable; flags win.\n"
                         "Flags take a value as --port 9000 or --port=9000.\n"
                         "\n");
    for (size_t i = 0; i < CFG_N_OPTS && used < out_len; i++) {
        const cfg_opt *o = &cfg_opts[i];
        char flag[48], def[64], line[160];
        size_t n;

        snprintf(flag, sizeof flag, "--%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        cfg_default_text(o, &d, def, sizeof def);
        snprintf(line, sizeof line, "  %-22s %-20s %s%s", flag, o->env ? o->env : "",
                 def[0] ? "default " : "", def);
        n = strlen(line);
        while (n > 0 && line[n - 1] == ' ')
            line[--n] = '\0';
        used += (size_t)snprintf(out + used, out_len - used, "%s\n      %s\n", line, o->help);
    }
}

static void cfg_version(char *out, size_t out_len)
{
    snprintf(out, out_len, "attention-server %s\nBLAS: %s\n", SRV_VERSION, attn_blas_info());
}

/* ------------------------------------------------------------------ parse */

static const char *cfg_getenv(const char *name)
{
    return getenv(name);
}

static const cfg_opt *cfg_find(const char *flag, size_t len)
{
    for (size_t i = 0; i < CFG_N_OPTS; i++)
        if (strlen(cfg_opts[i].flag) == len && strncmp(cfg_opts[i].flag, flag, len) == 0)
            return &cfg_opts[i];
    return NULL;
}

srv_cli_action srv_config_parse(srv_config *c, int argc, char **argv,
                                const char *(*getenv_fn)(const char *), char *out, size_t out_len,
                                char *err, size_t err_len)
{
    if (getenv_fn == NULL)
        getenv_fn = cfg_getenv;
    if (out_len > 0)
        out[0] = '\0';
    if (err_len > 0)
        err[0] = '\0';

    /* Environment first; an empty variable counts as unset (compose files
     * often declare variables they leave blank). */
    for (size_t i = 0; i < CFG_N_OPTS; i++) {
        const char *v = cfg_opts[i].env ? getenv_fn(cfg_opts[i].env) : NULL;

        if (v != NULL && v[0] != '\0' &&
            !cfg_apply(c, &cfg_opts[i], cfg_opts[i].env, v, err, err_len))
            return SRV_CLI_ERROR;
    }

    bool origins_from_flags = false;
    bool models_from_flags = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq, *val;
        const cfg_opt *o;
        char name[64];

        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, err_len, "unexpected argument '%.64s' (see --help)", a);
            return SRV_CLI_ERROR;
        }
        eq = strchr(a + 2, '=');
        o = cfg_find(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        if (o == NULL) {
            snprintf(err, err_len, "unknown flag '%.64s' (see --help)", a);
            return SRV_CLI_ERROR;
        }
        snprintf(name, sizeof name, "--%s", o->flag);

        if (o->kind == CFG_KIND_HELP || o->kind == CFG_KIND_VERSION) {
            if (eq != NULL) {
                snprintf(err, err_len, "%s does not take a value", name);
                return SRV_CLI_ERROR;
            }
            if (o->kind == CFG_KIND_HELP)
                cfg_help(out, out_len);
            else
                cfg_version(out, out_len);
            return SRV_CLI_EXIT;
        }
        if (o->kind == CFG_KIND_BOOL && eq == NULL) {
            /* A bare switch; its value, if any, comes only as --quiet=false. */
            *(bool *)(void *)((char *)c + o->offset) = true;
            continue;
        }
        if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, err_len, "%s: missing value", name);
            return SRV_CLI_ERROR;
        }
        if (o->kind == CFG_KIND_ORIGINS && !origins_from_flags) {
            /* list flags add up, but the first one replaces the environment's list */
            ((char *)c + o->offset)[0] = '\0';
            origins_from_flags = true;
        }
        if (o->kind == CFG_KIND_MODELS && !models_from_flags) {
            /* as origins: --model flags replace ATTN_MODELS, then add up */
            ((char *)c + o->offset)[0] = '\0';
            models_from_flags = true;
        }
        if (!cfg_apply(c, o, name, val, err, err_len))
            return SRV_CLI_ERROR;
    }
    return SRV_CLI_RUN;
}
