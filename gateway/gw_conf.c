/*
 * gw_conf.c -- the nginx-style configuration parser behind gw_conf.h. A
 * tokenizer (words, quoted strings, ";", "{", "}", "#" comments) feeds one
 * directive table; each entry names its contexts, its arity and a setter that
 * writes at an offset of the struct of the block being parsed. Fields start
 * UNSET; conf_init_defaults() is the one place that fills defaults, and
 * conf_check_refs() the one place that checks names across the whole file.
 * No global mutable state: everything lives in a struct conf_parser on the
 * caller's stack. This file reads files and nothing else: no sockets, no logs.
 */
#include "gw_conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "log.h"
#include "util.h"

#define CONF_INCLUDE_DEPTH  16              /* nested includes before we call it a loop */
#define CONF_MAX_FILE_SIZE  (64 << 20)      /* a bigger conf is a mistake */
#define CONF_NAME_MAX       128

/* Contexts (where a directive may appear). */
#define CF_MAIN     0x0001
#define CF_HTTP     0x0002
#define CF_MODEL    0x0004
#define CF_ROUTE    0x0008
#define CF_ANY      (CF_MAIN | CF_HTTP | CF_MODEL | CF_ROUTE)
/* Arity. TAKE bits may be or-ed (TAKE12). */
#define CF_NOARGS   0x0100
#define CF_TAKE1    0x0200
#define CF_TAKE2    0x0400
#define CF_TAKE12   (CF_TAKE1 | CF_TAKE2)
#define CF_1MORE    0x0800
#define CF_FLAG     0x1000                  /* exactly one of on|off */
#define CF_BLOCK    0x2000                  /* followed by { ... } */
#define CF_MULTI    0x4000                  /* may repeat in one block */

struct conf_parser;
struct conf_frame;
struct conf_cmd;

/* A setter gets the directive's words (args[0] is its name, NULL-terminated)
 * and writes into the block p->frame; 0, or -1 with p->err set. */
typedef int (*conf_set_fn)(struct conf_parser *p, const struct conf_cmd *cmd, char **args);

/* One directive. <offset> is into the struct of the block being parsed
 * (struct gw_conf for main and http, gw_model_conf, gw_route_conf); <min> and
 * <max> bound int, size and msec values; <names> lists enum values. */
struct conf_cmd {
    const char *name;
    unsigned    flags;
    conf_set_fn set;
    size_t      offset;
    int64_t     min, max;
    const char *const *names;
};

static int conf_set_flag(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_str(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_int(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_size(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_msec(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_enum(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_error_log(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_access_log(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_include(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_http(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_listen(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_model(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_route(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_upstream(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_alias(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_split(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_sticky(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_fallback(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_gpus(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_strv(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_env(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_device(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_fraction(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_kvsize(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_backoff(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_max_restarts(struct conf_parser *, const struct conf_cmd *, char **);
static int conf_set_health(struct conf_parser *, const struct conf_cmd *, char **);

static const char *const task_names[] = { "chat", "embed", "rerank", "transcribe", NULL };

#define C_OFF(f) offsetof(struct gw_conf, f)
#define M_OFF(f) offsetof(struct gw_model_conf, f)
#define MS_MAX   INT64_MAX

/* The directive table: adding a directive is one line here (plus its field,
 * its default in conf_init_defaults, and its documentation). */
static const struct conf_cmd conf_cmds[] = {
    /* main */
    { "daemon", CF_MAIN | CF_FLAG, conf_set_flag, C_OFF(daemon), 0, 1, NULL },
    { "pid", CF_MAIN | CF_TAKE1, conf_set_str, C_OFF(pid_file), 0, 0, NULL },
    { "error_log", CF_MAIN | CF_TAKE12, conf_set_error_log, 0, 0, 0, NULL },
    { "worker_connections", CF_MAIN | CF_TAKE1, conf_set_int, C_OFF(worker_connections),
      1, INT_MAX, NULL },
    { "admin_socket", CF_MAIN | CF_TAKE1, conf_set_str, C_OFF(admin_socket), 0, 0, NULL },
    { "http", CF_MAIN | CF_BLOCK | CF_NOARGS, conf_set_http, 0, 0, 0, NULL },
    { "include", CF_ANY | CF_TAKE1 | CF_MULTI, conf_set_include, 0, 0, 0, NULL },

    /* http */
    { "listen", CF_HTTP | CF_TAKE1 | CF_MULTI, conf_set_listen, 0, 0, 0, NULL },
    { "access_log", CF_HTTP | CF_TAKE1, conf_set_access_log, 0, 0, 0, NULL },
    { "client_max_body_size", CF_HTTP | CF_TAKE1, conf_set_size, C_OFF(client_max_body_size),
      0, INT64_MAX, NULL },
    { "client_header_timeout", CF_HTTP | CF_TAKE1, conf_set_msec,
      C_OFF(client_header_timeout_ms), 1, MS_MAX, NULL },
    { "client_body_timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(client_body_timeout_ms),
      1, MS_MAX, NULL },
    { "send_timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(send_timeout_ms), 1, MS_MAX, NULL },
    { "keepalive_timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(keepalive_timeout_ms),
      0, MS_MAX, NULL },
    { "timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(timeout_ms), 1, MS_MAX, NULL },
    { "connect_timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(connect_timeout_ms),
      1, MS_MAX, NULL },
    { "upstream_keepalive", CF_HTTP | CF_TAKE1, conf_set_int, C_OFF(upstream_keepalive),
      0, INT_MAX, NULL },
    { "max_attempts", CF_HTTP | CF_TAKE1, conf_set_int, C_OFF(max_attempts), 1, 16, NULL },
    { "max_fails", CF_HTTP | CF_TAKE1, conf_set_int, C_OFF(max_fails), 1, INT_MAX, NULL },
    { "fail_timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(fail_timeout_ms), 1, MS_MAX, NULL },
    { "shutdown_timeout", CF_HTTP | CF_TAKE1, conf_set_msec, C_OFF(shutdown_timeout_ms),
      0, MS_MAX, NULL },
    { "worker_binary", CF_HTTP | CF_TAKE1, conf_set_str, C_OFF(worker_binary), 0, 0, NULL },
    { "runtime_dir", CF_HTTP | CF_TAKE1, conf_set_str, C_OFF(runtime_dir), 0, 0, NULL },
    { "health_check", CF_HTTP | CF_MODEL | CF_1MORE, conf_set_health, 0, 0, 0, NULL },
    { "model", CF_HTTP | CF_BLOCK | CF_TAKE1 | CF_MULTI, conf_set_model, 0, 0, 0, NULL },
    { "route", CF_HTTP | CF_BLOCK | CF_TAKE1 | CF_MULTI, conf_set_route, 0, 0, 0, NULL },

    /* model */
    { "upstream", CF_MODEL | CF_TAKE1 | CF_MULTI, conf_set_upstream, 0, 0, 0, NULL },
    { "alias", CF_MODEL | CF_TAKE1 | CF_MULTI, conf_set_alias, 0, 0, 0, NULL },
    { "task", CF_MODEL | CF_TAKE1, conf_set_enum, M_OFF(task), 0, 0, task_names },
    { "max_connections", CF_MODEL | CF_TAKE1, conf_set_int, M_OFF(max_connections),
      0, INT_MAX, NULL },
    { "timeout", CF_MODEL | CF_TAKE1, conf_set_msec, M_OFF(timeout_ms), 1, MS_MAX, NULL },
    { "connect_timeout", CF_MODEL | CF_TAKE1, conf_set_msec, M_OFF(connect_timeout_ms),
      1, MS_MAX, NULL },
    { "keepalive", CF_MODEL | CF_TAKE1, conf_set_int, M_OFF(keepalive), 0, INT_MAX, NULL },
    { "path", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(path), 0, 0, NULL },
    { "replicas", CF_MODEL | CF_TAKE1, conf_set_int, M_OFF(replicas), 1, 64, NULL },
    { "gpus", CF_MODEL | CF_1MORE, conf_set_gpus, 0, 0, 0, NULL },
    { "device", CF_MODEL | CF_TAKE1, conf_set_device, M_OFF(device), 0, 0, NULL },
    { "dtype", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(dtype), 0, 0, NULL },
    { "max_model_len", CF_MODEL | CF_TAKE1, conf_set_int, M_OFF(max_model_len), 1, INT_MAX, NULL },
    { "max_num_seqs", CF_MODEL | CF_TAKE1, conf_set_int, M_OFF(max_num_seqs), 1, INT_MAX, NULL },
    { "max_num_batched_tokens", CF_MODEL | CF_TAKE1, conf_set_int,
      M_OFF(max_num_batched_tokens), 1, INT_MAX, NULL },
    { "gpu_memory_utilization", CF_MODEL | CF_TAKE1, conf_set_fraction,
      M_OFF(gpu_memory_utilization), 0, 0, NULL },
    { "kv_cache_memory", CF_MODEL | CF_TAKE1, conf_set_kvsize, M_OFF(kv_cache_memory), 0, 0, NULL },
    { "threads", CF_MODEL | CF_TAKE1, conf_set_int, M_OFF(threads), 0, 4096, NULL },
    { "served_name", CF_MODEL | CF_TAKE1 | CF_MULTI, conf_set_strv, M_OFF(served_names), 0, 0,
      NULL },
    { "reasoning_parser", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(reasoning_parser), 0, 0, NULL },
    { "tool_call_parser", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(tool_call_parser), 0, 0, NULL },
    { "env", CF_MODEL | CF_TAKE1 | CF_MULTI, conf_set_env, 0, 0, 0, NULL },
    { "user", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(user), 0, 0, NULL },
    { "group", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(group), 0, 0, NULL },
    { "log", CF_MODEL | CF_TAKE1, conf_set_str, M_OFF(log), 0, 0, NULL },
    { "queue_timeout", CF_MODEL | CF_TAKE1, conf_set_msec, M_OFF(queue_timeout_ms), 0, MS_MAX, NULL },
    { "drain_timeout", CF_MODEL | CF_TAKE1, conf_set_msec, M_OFF(drain_timeout_ms), 0, MS_MAX, NULL },
    { "restart_backoff", CF_MODEL | CF_TAKE2, conf_set_backoff, 0, 0, 0, NULL },
    { "max_restarts", CF_MODEL | CF_TAKE12, conf_set_max_restarts, 0, 0, 0, NULL },

    /* route */
    { "split", CF_ROUTE | CF_TAKE2 | CF_MULTI, conf_set_split, 0, 0, 0, NULL },
    { "sticky", CF_ROUTE | CF_TAKE1, conf_set_sticky, 0, 0, 0, NULL },
    { "fallback", CF_ROUTE | CF_TAKE1, conf_set_fallback, 0, 0, 0, NULL },
};

#define CONF_N_CMDS (sizeof(conf_cmds) / sizeof(conf_cmds[0]))

/* A block being parsed: its context, the index of its model or route, and
 * which single-use directives it has seen (includes share their block's frame). */
struct conf_frame {
    unsigned ctx;
    size_t   obj;
    unsigned char seen[CONF_N_CMDS];
};

/* The file being tokenized. */
struct conf_file {
    const char *name;           /* borrowed from conf->files */
    const char *buf;
    size_t      len, pos;
    int         line;
    int         tok_line;       /* line of the last thing read: end-of-file errors */
};

/* One name of the shared model/alias/route namespace. */
struct conf_name {
    const char *name;           /* borrowed from the conf */
    const char *kind;           /* "model", "alias", "route" */
    struct gw_conf_pos pos;
};

struct conf_args {
    char **v;
    size_t n, cap;
};

struct conf_parser {
    struct gw_conf   *conf;
    char             *err;      /* GW_CONF_ERRLEN bytes */
    char             *prefix;   /* directory of the main file: relative includes */
    struct conf_file *file;     /* current file */
    struct conf_frame *frame;   /* current block */
    int               line;     /* line of the directive being set */
    int               seen_http;
    int               depth;    /* include depth */
    struct { dev_t dev; ino_t ino; } stack[CONF_INCLUDE_DEPTH + 2];
    int               n_stack;  /* files being read, outermost first */
    struct conf_name *names;
    size_t            n_names, cap_names;
    struct gw_conf_pos *fallback_pos;   /* parallel to conf->routes */
    size_t            cap_fallback_pos;
    size_t            cap_listens, cap_models, cap_routes;
};

enum conf_tok { TOK_DIRECTIVE, TOK_BLOCK_START, TOK_BLOCK_END, TOK_EOF, TOK_ERROR };

static int conf_parse_block(struct conf_parser *p, struct conf_frame *f, int in_block);
static void conf_model_free(struct gw_model_conf *m);

/* ---- errors ---------------------------------------------------------------- */

static void conf_error_at(struct conf_parser *p, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conf_error_at(struct conf_parser *p, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(p->err, GW_CONF_ERRLEN, "%s:%d: ", file, line);
    if (n < 0 || n >= GW_CONF_ERRLEN)
        return;
    va_start(ap, fmt);
    vsnprintf(p->err + n, GW_CONF_ERRLEN - (size_t)n, fmt, ap);
    va_end(ap);
}

#define conf_error(p, line, ...) conf_error_at((p), (p)->file->name, (line), __VA_ARGS__)

/* ---- values ------------------------------------------------------------------ */

int64_t gw_conf_parse_size(const char *s)
{
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    int64_t v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    int64_t mul = 1;
    switch (*s) {
    case '\0': return v;
    case 'k': case 'K': mul = (int64_t)1 << 10; break;
    case 'm': case 'M': mul = (int64_t)1 << 20; break;
    case 'g': case 'G': mul = (int64_t)1 << 30; break;
    default: return -1;
    }
    if (s[1] != '\0' || v > INT64_MAX / mul)
        return -1;
    return v * mul;
}

int64_t gw_conf_parse_msec(const char *s)
{
    static const struct { const char *unit; int64_t ms; } units[] = {
        { "d", 86400000 }, { "h", 3600000 }, { "ms", 1 }, { "m", 60000 }, { "s", 1000 },
    };
    if (s == NULL || !isdigit((unsigned char)*s))
        return -1;
    int64_t total = 0, last_ms = INT64_MAX;
    int parts = 0;
    while (*s != '\0') {
        if (!isdigit((unsigned char)*s))
            return -1;
        int64_t v = 0;
        for (; isdigit((unsigned char)*s); s++) {
            if (v > (INT64_MAX - (*s - '0')) / 10)
                return -1;
            v = v * 10 + (*s - '0');
        }
        int64_t ms = -1;
        if (*s == '\0') {
            if (parts > 0)          /* "1m30": a unit is needed after the first part */
                return -1;
            ms = 1000;
        } else {
            for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                size_t ul = strlen(units[i].unit);
                if (strncmp(s, units[i].unit, ul) == 0) {
                    ms = units[i].ms;
                    s += ul;
                    break;
                }
            }
            if (ms < 0)
                return -1;
        }
        if (ms >= last_ms)          /* units must go from large to small: "1m30s", not "30s1m" */
            return -1;
        last_ms = ms;
        if (v > INT64_MAX / ms || total > INT64_MAX - v * ms)
            return -1;
        total += v * ms;
        parts++;
    }
    return total;
}

const char *gw_task_name(int task)
{
    if (task < 0 || task >= (int)(sizeof(task_names) / sizeof(task_names[0])) - 1)
        return "unknown";
    return task_names[task];
}

/* 1 when <s> is a valid model, alias or route name. */
static int conf_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CONF_NAME_MAX)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && strchr("._:/@+-", *s) == NULL)
            return 0;
    return 1;
}

/* Port: 1..65535, digits only. Returns the port or -1. */
static int conf_parse_port(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* "unix:/path": 0, or -1 with a reason in <why>. */
static int conf_check_unix(const char *a, const char **why)
{
    const char *path = a + 5;
    if (*path == '\0') {
        *why = "the socket path is empty";
        return -1;
    }
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        *why = "the socket path is too long";
        return -1;
    }
    return 0;
}

/* A listen address as gw_server.c binds it: "unix:/path", "[::1]:8000",
 * "*:8000", "127.0.0.1:8000", "localhost:8000" or "8000". */
static int conf_check_listen(const char *a, const char **why)
{
    char host[64];
    const char *port;
    if (strncmp(a, "unix:", 5) == 0)
        return conf_check_unix(a, why);
    *why = "it must be ADDRESS:PORT, [IPV6]:PORT, *:PORT, PORT or unix:PATH";
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - a - 1) >= sizeof(host))
            return -1;
        memcpy(host, a + 1, (size_t)(close - a - 1));
        host[close - a - 1] = '\0';
        struct in6_addr in6;
        if (inet_pton(AF_INET6, host, &in6) != 1) {
            *why = "invalid IPv6 address";
            return -1;
        }
        port = close + 2;
    } else {
        const char *colon = strrchr(a, ':');
        if (colon == NULL) {
            port = a;
        } else {
            if (colon == a || (size_t)(colon - a) >= sizeof(host))
                return -1;
            memcpy(host, a, (size_t)(colon - a));
            host[colon - a] = '\0';
            port = colon + 1;
            struct in_addr in4;
            if (strcmp(host, "*") != 0 && strcmp(host, "localhost") != 0 &&
                inet_pton(AF_INET, host, &in4) != 1) {
                *why = "the host must be an IPv4 address, [IPv6], \"localhost\" or \"*\"";
                return -1;
            }
        }
    }
    if (conf_parse_port(port, strlen(port)) < 0) {
        *why = "the port must be a number from 1 to 65535";
        return -1;
    }
    return 0;
}

/* An upstream URL: "http://host[:port][/prefix]" or "unix:/path" (absolute). */
static int conf_check_upstream(const char *u, const char **why)
{
    if (strncmp(u, "unix:", 5) == 0) {
        if (conf_check_unix(u, why) == -1)
            return -1;
        if (u[5] != '/') {
            *why = "the socket path must be absolute";
            return -1;
        }
        return 0;
    }
    if (str_ieq_n("https://", u, 8)) {
        *why = "TLS upstreams (https://) are not supported yet";
        return -1;
    }
    *why = "it must be http://HOST[:PORT][/PREFIX] or unix:PATH";
    if (!str_ieq_n("http://", u, 7))
        return -1;
    const char *h = u + 7, *e;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        char host[64];
        struct in6_addr in6;
        if (close == NULL || (size_t)(close - h - 1) >= sizeof(host))
            return -1;
        memcpy(host, h + 1, (size_t)(close - h - 1));
        host[close - h - 1] = '\0';
        if (inet_pton(AF_INET6, host, &in6) != 1) {
            *why = "invalid IPv6 address";
            return -1;
        }
        e = close + 1;
    } else {
        for (e = h; isalnum((unsigned char)*e) || *e == '.' || *e == '-' || *e == '_'; e++)
            ;
        if (e == h) {
            *why = "the host is missing or invalid";
            return -1;
        }
    }
    if (*e == ':') {
        const char *ps = e + 1;
        for (e = ps; isdigit((unsigned char)*e); e++)
            ;
        if (conf_parse_port(ps, (size_t)(e - ps)) < 0) {
            *why = "the port must be a number from 1 to 65535";
            return -1;
        }
    }
    if (*e != '\0' && *e != '/')
        return -1;
    for (; *e; e++) {
        if (*e == '?' || *e == '#' || (unsigned char)*e <= ' ' || *e == 0x7f) {
            *why = "the path prefix must not hold a query, a fragment or spaces";
            return -1;
        }
    }
    return 0;
}

/* ---- tokenizer --------------------------------------------------------------- */

static void conf_args_push(struct conf_args *a, char *s)
{
    xgrow((void **)&a->v, &a->cap, a->n + 2, sizeof(*a->v));
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
}

static void conf_args_clear(struct conf_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    a->n = 0;
}

/* Read the next directive into <a> (words; a->v[0] is the name). Returns what
 * ended it; TOK_ERROR with p->err set. <line> gets the line of its first word. */
static enum conf_tok conf_read_token(struct conf_parser *p, struct conf_args *a, int *line)
{
    struct conf_file *cf = p->file;

    conf_args_clear(a);
    for (;;) {
        while (cf->pos < cf->len && isspace((unsigned char)cf->buf[cf->pos])) {
            if (cf->buf[cf->pos] == '\n')
                cf->line++;
            cf->pos++;
        }
        if (cf->pos >= cf->len) {
            if (a->n > 0) {
                conf_error(p, cf->tok_line, "unexpected end of file, expecting \";\" or \"}\"");
                return TOK_ERROR;
            }
            return TOK_EOF;
        }
        char ch = cf->buf[cf->pos];
        if (ch == '#') {
            while (cf->pos < cf->len && cf->buf[cf->pos] != '\n')
                cf->pos++;
            continue;
        }
        if (ch == ';' || ch == '{') {
            if (a->n == 0) {
                conf_error(p, cf->line, "unexpected \"%c\"", ch);
                return TOK_ERROR;
            }
            cf->pos++;
            cf->tok_line = cf->line;
            return ch == ';' ? TOK_DIRECTIVE : TOK_BLOCK_START;
        }
        if (ch == '}') {
            if (a->n > 0) {
                conf_error(p, cf->line, "unexpected \"}\"");
                return TOK_ERROR;
            }
            cf->pos++;
            cf->tok_line = cf->line;
            return TOK_BLOCK_END;
        }

        /* a word, quoted or not; escapes as nginx: \" \' \\ \n \t \r, and in
         * an unquoted word also "\;" "\{" "\}" "\ "; any other "\x" stays as is */
        char quote = (ch == '"' || ch == '\'') ? ch : 0;
        int start_line = cf->line;
        size_t cap = 16, n = 0;
        char *w = xmalloc(cap);
        if (quote)
            cf->pos++;
        for (;;) {
            if (cf->pos >= cf->len) {
                if (quote) {
                    free(w);
                    conf_error(p, start_line, "unterminated quoted string");
                    return TOK_ERROR;
                }
                break;
            }
            char c = cf->buf[cf->pos];
            if (quote && c == quote) {
                cf->pos++;
                break;
            }
            if (!quote && (isspace((unsigned char)c) || c == ';' || c == '{' || c == '}'))
                break;
            cf->pos++;
            if (c == '\n')
                cf->line++;
            if (c == '\\' && cf->pos < cf->len) {
                char e = cf->buf[cf->pos];
                char out = 0;
                switch (e) {
                case '"': case '\'': case '\\': out = e; break;
                case 'n': out = '\n'; break;
                case 't': out = '\t'; break;
                case 'r': out = '\r'; break;
                case ';': case '{': case '}': case ' ': if (!quote) out = e; break;
                }
                if (out) {
                    c = out;
                    cf->pos++;
                }
            }
            if (n + 2 > cap) {
                cap *= 2;
                w = xrealloc(w, cap);
            }
            w[n++] = c;
        }
        w[n] = '\0';
        if (quote && cf->pos < cf->len) {
            char c = cf->buf[cf->pos];
            if (!isspace((unsigned char)c) && c != ';' && c != '{' && c != '}') {
                free(w);
                conf_error(p, cf->line, "unexpected \"%c\" after a quoted string", c);
                return TOK_ERROR;
            }
        }
        if (a->n == 0)
            *line = start_line;
        conf_args_push(a, w);
        cf->tok_line = cf->line;
    }
}

/* ---- directive dispatch ------------------------------------------------------ */

/* Levenshtein distance of <a> and <b>, or a large number for long words. */
static int conf_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[65];
    if (la > 64 || lb > 64)
        return 100;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The known directive closest to <name> (edit distance <= 2), preferring
 * those allowed in <ctx>; NULL when none is close. */
static const char *conf_suggest(const char *name, unsigned ctx)
{
    const char *best = NULL;
    int best_score = 1000;
    size_t len = strlen(name);
    for (size_t i = 0; i < CONF_N_CMDS; i++) {
        int d = conf_edit_distance(name, conf_cmds[i].name);
        if (d > 2 || (size_t)d >= len)
            continue;
        int score = d * 2 + ((conf_cmds[i].flags & ctx) ? 0 : 1);
        if (score < best_score) {
            best_score = score;
            best = conf_cmds[i].name;
        }
    }
    return best;
}

/* The struct the directives of the current block write into. */
static void *conf_base(struct conf_parser *p)
{
    struct conf_frame *f = p->frame;
    if (f->ctx == CF_MODEL)
        return &p->conf->models[f->obj];
    if (f->ctx == CF_ROUTE)
        return &p->conf->routes[f->obj];
    return p->conf;
}

static int conf_check_arity(const struct conf_cmd *cmd, size_t nargs)
{
    unsigned fl = cmd->flags;
    if (fl & CF_FLAG)
        return nargs == 1;
    if (fl & CF_1MORE)
        return nargs >= 1;
    return ((fl & CF_NOARGS) && nargs == 0) || ((fl & CF_TAKE1) && nargs == 1) ||
           ((fl & CF_TAKE2) && nargs == 2);
}

static int conf_handle(struct conf_parser *p, struct conf_frame *f, struct conf_args *a,
                       enum conf_tok tok, int line)
{
    const char *name = a->v[0];
    const struct conf_cmd *cmd = NULL;
    int known = 0;
    for (size_t i = 0; i < CONF_N_CMDS; i++) {
        if (strcmp(conf_cmds[i].name, name) != 0)
            continue;
        known = 1;
        if (conf_cmds[i].flags & f->ctx) {
            cmd = &conf_cmds[i];
            break;
        }
    }
    if (cmd == NULL) {
        const char *hint = known ? NULL : conf_suggest(name, f->ctx);
        if (known)
            conf_error(p, line, "\"%s\" directive is not allowed here", name);
        else if (hint)
            conf_error(p, line, "unknown directive \"%s\"; did you mean \"%s\"?", name, hint);
        else
            conf_error(p, line, "unknown directive \"%s\"", name);
        return -1;
    }
    if ((cmd->flags & CF_BLOCK) && tok != TOK_BLOCK_START) {
        conf_error(p, line, "directive \"%s\" has no opening \"{\"", name);
        return -1;
    }
    if (!(cmd->flags & CF_BLOCK) && tok != TOK_DIRECTIVE) {
        conf_error(p, line, "directive \"%s\" is not terminated by \";\"", name);
        return -1;
    }
    if (!conf_check_arity(cmd, a->n - 1)) {
        conf_error(p, line, "invalid number of arguments in \"%s\" directive", name);
        return -1;
    }
    size_t idx = (size_t)(cmd - conf_cmds);
    if (!(cmd->flags & CF_MULTI)) {
        if (f->seen[idx]) {
            conf_error(p, line, "\"%s\" directive is duplicate", name);
            return -1;
        }
        f->seen[idx] = 1;
    }
    p->line = line;
    return cmd->set(p, cmd, a->v);
}

/* Parse directives until "}" (when <in_block>) or end of file. */
static int conf_parse_block(struct conf_parser *p, struct conf_frame *f, int in_block)
{
    struct conf_args a = { NULL, 0, 0 };
    struct conf_frame *outer = p->frame;
    int rc = -1;
    p->frame = f;
    for (;;) {
        int line = p->file->line;
        enum conf_tok tok = conf_read_token(p, &a, &line);
        if (tok == TOK_ERROR)
            goto done;
        if (tok == TOK_EOF) {
            if (in_block) {
                conf_error(p, p->file->tok_line, "unexpected end of file, expecting \"}\"");
                goto done;
            }
            break;
        }
        if (tok == TOK_BLOCK_END) {
            if (!in_block) {
                conf_error(p, p->file->line, "unexpected \"}\"");
                goto done;
            }
            break;
        }
        if (conf_handle(p, f, &a, tok, line) == -1)
            goto done;
    }
    rc = 0;
done:
    p->frame = outer;
    conf_args_clear(&a);
    free(a.v);
    return rc;
}

/* ---- generic setters --------------------------------------------------------- */

static struct gw_conf_pos conf_pos(struct conf_parser *p)
{
    struct gw_conf_pos pos = { (char *)p->file->name, p->line };
    return pos;
}

/* 'invalid value "V" in "D" directive' plus an optional ", <why>". Returns -1. */
static int conf_invalid(struct conf_parser *p, const struct conf_cmd *cmd, const char *value,
                        const char *why)
{
    if (why)
        conf_error(p, p->line, "invalid value \"%s\" in \"%s\" directive, %s", value,
                   cmd->name, why);
    else
        conf_error(p, p->line, "invalid value \"%s\" in \"%s\" directive", value, cmd->name);
    return -1;
}

/* Decimal without sign -> value, or -1. */
static int64_t conf_parse_int(const char *s)
{
    if (*s == '\0')
        return -1;
    int64_t v = 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s) || v > (INT64_MAX - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* Check <v> against cmd->min..max; <unit> follows the numbers in the message. */
static int conf_check_range(struct conf_parser *p, const struct conf_cmd *cmd, const char *value,
                            int64_t v, const char *unit)
{
    char why[128];
    if (v >= cmd->min && v <= cmd->max)
        return 0;
    if (cmd->max == INT64_MAX || cmd->max == INT_MAX)
        snprintf(why, sizeof(why), "it must be at least %lld%s", (long long)cmd->min, unit);
    else
        snprintf(why, sizeof(why), "it must be from %lld%s to %lld%s", (long long)cmd->min, unit,
                 (long long)cmd->max, unit);
    return conf_invalid(p, cmd, value, why);
}

static int conf_set_flag(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    int *field = (int *)((char *)conf_base(p) + cmd->offset);
    if (strcmp(args[1], "on") == 0)
        *field = 1;
    else if (strcmp(args[1], "off") == 0)
        *field = 0;
    else
        return conf_invalid(p, cmd, args[1], "it must be \"on\" or \"off\"");
    return 0;
}

static int conf_set_str(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    char **field = (char **)((char *)conf_base(p) + cmd->offset);
    if (args[1][0] == '\0')
        return conf_invalid(p, cmd, args[1], NULL);
    free(*field);
    *field = xstrdup(args[1]);
    return 0;
}

/* Parse args[1] with <parse> (-1: invalid) and check the directive's range
 * (<unit> names it in messages). 0 with *<out> set, or -1 after reporting. */
static int conf_parse_number(struct conf_parser *p, const struct conf_cmd *cmd, char **args,
                             int64_t (*parse)(const char *), const char *unit, int64_t *out)
{
    int64_t v = parse(args[1]);
    if (v < 0)
        return conf_invalid(p, cmd, args[1], NULL);
    if (conf_check_range(p, cmd, args[1], v, unit) == -1)
        return -1;
    *out = v;
    return 0;
}

static int conf_set_int(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    int64_t v;
    if (conf_parse_number(p, cmd, args, conf_parse_int, "", &v) == -1)
        return -1;
    *(int *)((char *)conf_base(p) + cmd->offset) = (int)v;
    return 0;
}

static int conf_set_size(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    return conf_parse_number(p, cmd, args, gw_conf_parse_size, "",
                             (int64_t *)((char *)conf_base(p) + cmd->offset));
}

static int conf_set_msec(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    return conf_parse_number(p, cmd, args, gw_conf_parse_msec, "ms",
                             (int64_t *)((char *)conf_base(p) + cmd->offset));
}

static int conf_set_enum(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    int *field = (int *)((char *)conf_base(p) + cmd->offset);
    char why[256] = "it must be one of";
    for (int i = 0; cmd->names[i] != NULL; i++) {
        if (strcmp(args[1], cmd->names[i]) == 0) {
            *field = i;
            return 0;
        }
        size_t l = strlen(why);
        snprintf(why + l, sizeof(why) - l, "%s %s", i ? "," : "", cmd->names[i]);
    }
    return conf_invalid(p, cmd, args[1], why);
}

/* ---- main and http ----------------------------------------------------------- */

static int conf_set_error_log(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_conf *conf = p->conf;
    if (args[1][0] == '\0')
        return conf_invalid(p, cmd, args[1], NULL);
    if (args[2] != NULL) {
        int level = log_level_parse(args[2]);
        if (level < 0)
            return conf_invalid(p, cmd, args[2],
                                "it must be one of debug, info, notice, warn, error, crit, "
                                "alert, emerg");
        conf->error_log_level = level;
    }
    free(conf->error_log);
    conf->error_log = strcmp(args[1], "stderr") == 0 ? NULL : xstrdup(args[1]);
    return 0;
}

static int conf_set_access_log(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    if (args[1][0] == '\0')
        return conf_invalid(p, cmd, args[1], NULL);
    free(p->conf->access_log);
    p->conf->access_log = strcmp(args[1], "off") == 0 ? NULL : xstrdup(args[1]);
    return 0;
}

static int conf_set_http(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct conf_frame nf;
    (void)cmd;
    (void)args;
    memset(&nf, 0, sizeof(nf));
    nf.ctx = CF_HTTP;
    p->seen_http = 1;
    return conf_parse_block(p, &nf, 1);
}

static int conf_set_listen(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_conf *conf = p->conf;
    const char *why = NULL;
    if (conf_check_listen(args[1], &why) == -1)
        return conf_invalid(p, cmd, args[1], why);
    for (size_t i = 0; i < conf->n_listens; i++) {
        if (strcmp(conf->listens[i].addr, args[1]) == 0) {
            conf_error(p, p->line, "duplicate \"listen\" address \"%s\" (first defined at %s:%d)",
                       args[1], conf->listens[i].pos.file, conf->listens[i].pos.line);
            return -1;
        }
    }
    xgrow((void **)&conf->listens, &p->cap_listens, conf->n_listens + 1, sizeof(*conf->listens));
    conf->listens[conf->n_listens].addr = xstrdup(args[1]);
    conf->listens[conf->n_listens].pos = conf_pos(p);
    conf->n_listens++;
    return 0;
}

/* ---- the shared namespace of models, aliases and routes ------------------------ */

/* Register <name> (borrowed: a string the conf owns) of <kind> at <pos>;
 * -1 with an error naming both positions when it is taken. */
static int conf_name_add(struct conf_parser *p, const char *name, const char *kind,
                         struct gw_conf_pos pos)
{
    for (size_t i = 0; i < p->n_names; i++) {
        struct conf_name *o = &p->names[i];
        if (strcmp(o->name, name) != 0)
            continue;
        if (strcmp(o->kind, kind) == 0)
            conf_error_at(p, pos.file, pos.line, "duplicate %s \"%s\" (first defined at %s:%d)",
                          kind, name, o->pos.file, o->pos.line);
        else
            conf_error_at(p, pos.file, pos.line,
                          "duplicate %s \"%s\" (first defined as %s at %s:%d)", kind, name,
                          o->kind, o->pos.file, o->pos.line);
        return -1;
    }
    xgrow((void **)&p->names, &p->cap_names, p->n_names + 1, sizeof(*p->names));
    p->names[p->n_names].name = name;
    p->names[p->n_names].kind = kind;
    p->names[p->n_names].pos = pos;
    p->n_names++;
    return 0;
}

static const struct conf_name *conf_name_find(struct conf_parser *p, const char *name)
{
    for (size_t i = 0; i < p->n_names; i++)
        if (strcmp(p->names[i].name, name) == 0)
            return &p->names[i];
    return NULL;
}

static int conf_check_name(struct conf_parser *p, const struct conf_cmd *cmd, const char *name)
{
    if (conf_name_valid(name))
        return 0;
    return conf_invalid(p, cmd, name,
                        "a name is 1 to 128 characters of A-Z a-z 0-9 . _ : / @ + -");
}

/* ---- model ------------------------------------------------------------------- */

/* The checks a complete model block must pass. Kept in one place: spawned
 * workers ("path") will make "upstream" optional. */
static int conf_check_model(struct conf_parser *p, const struct gw_model_conf *m)
{
    if (m->n_upstreams == 0 && m->path == NULL) {
        conf_error_at(p, m->pos.file, m->pos.line,
                      "model \"%s\" has neither \"upstream\" nor \"path\"", m->name);
        return -1;
    }
    if (m->n_upstreams > 0 && m->path != NULL) {
        conf_error_at(p, m->pos.file, m->pos.line,
                      "model \"%s\" has both \"upstream\" and \"path\"", m->name);
        return -1;
    }
    int replicas = m->replicas == GW_CONF_UNSET ? 1 : m->replicas;
    if (m->n_gpus > 1 && m->n_gpus != (size_t)replicas) {
        conf_error_at(p, m->pos.file, m->pos.line,
                      "model \"%s\": \"gpus\" lists %zu replica(s) but \"replicas\" is %d",
                      m->name, m->n_gpus, replicas);
        return -1;
    }
    return 0;
}

/* ---- spawned workers ------------------------------------------------------------ */

/* "gpus 0,1 | 2,3;" (the words may also be "0,1|2,3"): one CUDA_VISIBLE_DEVICES
 * per replica; "cpu" is the empty list. */
static int conf_set_gpus(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_model_conf *m = conf_base(p);
    size_t len = 0;
    for (size_t i = 1; args[i]; i++)
        len += strlen(args[i]);
    char *all = xmalloc(len + 1), *q = all;
    for (size_t i = 1; args[i]; i++) {
        size_t l = strlen(args[i]);
        memcpy(q, args[i], l);
        q += l;
    }
    *q = '\0';
    char *save = NULL;
    int rc = 0;
    if (all[0] == '\0' || all[0] == '|' || all[len - 1] == '|' || strstr(all, "||")) {
        rc = conf_invalid(p, cmd, all, "an empty replica list");
        goto out;
    }
    for (char *tok = strtok_r(all, "|", &save); tok; tok = strtok_r(NULL, "|", &save)) {
        int cpu = strcmp(tok, "cpu") == 0;
        for (const char *c = tok; !cpu && *c; c++) {
            if (!isdigit((unsigned char)*c) &&
                !(*c == ',' && c != tok && c[1] != '\0' && c[1] != ',')) {
                rc = conf_invalid(p, cmd, tok, "it must be \"cpu\" or GPU numbers like 0,1");
                goto out;
            }
        }
        m->gpus = xrealloc(m->gpus, (m->n_gpus + 1) * sizeof(*m->gpus));
        m->gpus[m->n_gpus++] = xstrdup(cpu ? "" : tok);
    }
out:
    free(all);
    return rc;
}

/* A repeatable string directive into a char ** array followed by its size_t count. */
static int conf_set_strv(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    char ***v = (char ***)((char *)conf_base(p) + cmd->offset);
    size_t *n = (size_t *)((char *)v + sizeof(char **));
    if (args[1][0] == '\0')
        return conf_invalid(p, cmd, args[1], NULL);
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = xstrdup(args[1]);
    return 0;
}

static int conf_set_env(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_model_conf *m = conf_base(p);
    const char *eq = strchr(args[1], '=');
    if (eq == NULL || eq == args[1])
        return conf_invalid(p, cmd, args[1], "it must be NAME=VALUE");
    m->env = xrealloc(m->env, (m->n_env + 1) * sizeof(*m->env));
    m->env[m->n_env++] = xstrdup(args[1]);
    return 0;
}

static int conf_set_device(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    if (strcmp(args[1], "cpu") != 0 && strcmp(args[1], "cuda") != 0 &&
        strcmp(args[1], "auto") != 0)
        return conf_invalid(p, cmd, args[1], "it must be one of cpu, cuda, auto");
    return conf_set_str(p, cmd, args);
}

static int conf_set_fraction(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    char *end;
    double v = strtod(args[1], &end);
    if (end == args[1] || *end != '\0' || !(v > 0 && v <= 1))
        return conf_invalid(p, cmd, args[1], "it must be a number in (0, 1]");
    return conf_set_str(p, cmd, args);
}

static int conf_set_kvsize(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    if (gw_conf_parse_size(args[1]) <= 0)
        return conf_invalid(p, cmd, args[1], NULL);
    return conf_set_str(p, cmd, args);
}

static int conf_set_backoff(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_model_conf *m = conf_base(p);
    int64_t lo = gw_conf_parse_msec(args[1]), hi = gw_conf_parse_msec(args[2]);
    if (lo < 0)
        return conf_invalid(p, cmd, args[1], NULL);
    if (hi < lo)
        return conf_invalid(p, cmd, args[2], "the maximum must not be below the minimum");
    m->restart_backoff_min_ms = lo;
    m->restart_backoff_max_ms = hi;
    return 0;
}

static int conf_set_max_restarts(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_model_conf *m = conf_base(p);
    int64_t n = conf_parse_int(args[1]);
    if (n < 0 || n > INT_MAX)
        return conf_invalid(p, cmd, args[1], NULL);
    m->max_restarts = (int)n;
    if (args[2] != NULL) {
        int64_t w = gw_conf_parse_msec(args[2]);
        if (w <= 0)
            return conf_invalid(p, cmd, args[2], NULL);
        m->max_restarts_window_ms = w;
    }
    return 0;
}

/* health_check interval=5s timeout=2s fails=3 passes=2; (any subset, any order) */
static int conf_set_health(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_health_conf *h = p->frame->ctx == CF_MODEL
                               ? &((struct gw_model_conf *)conf_base(p))->health
                               : &p->conf->health;
    for (size_t i = 1; args[i]; i++) {
        const char *a = args[i], *eq = strchr(a, '=');
        if (eq == NULL)
            return conf_invalid(p, cmd, a, "expected interval=, timeout=, fails= or passes=");
        size_t kl = (size_t)(eq - a);
        const char *v = eq + 1;
        if (kl == 8 && strncmp(a, "interval", 8) == 0) {
            if ((h->interval_ms = gw_conf_parse_msec(v)) <= 0)
                return conf_invalid(p, cmd, a, NULL);
        } else if (kl == 7 && strncmp(a, "timeout", 7) == 0) {
            if ((h->timeout_ms = gw_conf_parse_msec(v)) <= 0)
                return conf_invalid(p, cmd, a, NULL);
        } else if (kl == 5 && strncmp(a, "fails", 5) == 0) {
            int64_t n = conf_parse_int(v);
            if (n < 1 || n > 1000)
                return conf_invalid(p, cmd, a, "it must be from 1 to 1000");
            h->fails = (int)n;
        } else if (kl == 6 && strncmp(a, "passes", 6) == 0) {
            int64_t n = conf_parse_int(v);
            if (n < 1 || n > 1000)
                return conf_invalid(p, cmd, a, "it must be from 1 to 1000");
            h->passes = (int)n;
        } else {
            return conf_invalid(p, cmd, a, "expected interval=, timeout=, fails= or passes=");
        }
    }
    h->set = 1;
    return 0;
}

static void sig_add(char **s, const char *k, const char *v)
{
    char *n = xasprintf("%s%s=%s;", *s, k, v ? v : "-");
    free(*s);
    *s = n;
}

char *gw_model_conf_signature(const struct gw_model_conf *m)
{
    char *s = xstrdup(""), num[64];
    sig_add(&s, "path", m->path);
    snprintf(num, sizeof(num), "%d/%d/%d/%d/%d/%d/%d", m->replicas, m->task_set ? m->task : -1,
             m->max_model_len, m->max_num_seqs, m->max_num_batched_tokens, m->threads,
             m->max_restarts);
    sig_add(&s, "nums", num);
    for (size_t i = 0; i < m->n_gpus; i++)
        sig_add(&s, "gpus", m->gpus[i]);
    sig_add(&s, "device", m->device);
    sig_add(&s, "dtype", m->dtype);
    sig_add(&s, "gmu", m->gpu_memory_utilization);
    sig_add(&s, "kv", m->kv_cache_memory);
    for (size_t i = 0; i < m->n_served_names; i++)
        sig_add(&s, "served", m->served_names[i]);
    for (size_t i = 0; i < m->n_aliases; i++)
        sig_add(&s, "alias", m->aliases[i]);
    sig_add(&s, "rp", m->reasoning_parser);
    sig_add(&s, "tp", m->tool_call_parser);
    for (size_t i = 0; i < m->n_env; i++)
        sig_add(&s, "env", m->env[i]);
    sig_add(&s, "user", m->user);
    sig_add(&s, "group", m->group);
    sig_add(&s, "log", m->log);
    return s;
}

static int conf_set_model(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_conf *conf = p->conf;
    if (conf_check_name(p, cmd, args[1]) == -1)
        return -1;
    xgrow((void **)&conf->models, &p->cap_models, conf->n_models + 1, sizeof(*conf->models));
    size_t idx = conf->n_models++;
    struct gw_model_conf *m = &conf->models[idx];
    memset(m, 0, sizeof(*m));
    m->name = xstrdup(args[1]);
    m->task = GW_CONF_UNSET;
    m->max_connections = GW_CONF_UNSET;
    m->timeout_ms = GW_CONF_UNSET;
    m->connect_timeout_ms = GW_CONF_UNSET;
    m->keepalive = GW_CONF_UNSET;
    m->replicas = GW_CONF_UNSET;
    m->threads = GW_CONF_UNSET;
    m->queue_timeout_ms = GW_CONF_UNSET;
    m->drain_timeout_ms = GW_CONF_UNSET;
    m->restart_backoff_min_ms = GW_CONF_UNSET;
    m->restart_backoff_max_ms = GW_CONF_UNSET;
    m->max_restarts = GW_CONF_UNSET;
    m->max_restarts_window_ms = GW_CONF_UNSET;
    m->pos = conf_pos(p);
    if (conf_name_add(p, m->name, "model", m->pos) == -1)
        return -1;

    struct conf_frame nf;
    memset(&nf, 0, sizeof(nf));
    nf.ctx = CF_MODEL;
    nf.obj = idx;
    if (conf_parse_block(p, &nf, 1) == -1)
        return -1;
    return conf_check_model(p, &conf->models[idx]);
}

static int conf_set_upstream(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_model_conf *m = conf_base(p);
    const char *why = NULL;
    if (conf_check_upstream(args[1], &why) == -1)
        return conf_invalid(p, cmd, args[1], why);
    m->upstreams = xrealloc(m->upstreams, (m->n_upstreams + 1) * sizeof(*m->upstreams));
    m->upstreams[m->n_upstreams++] = xstrdup(args[1]);
    return 0;
}

static int conf_set_alias(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_model_conf *m = conf_base(p);
    if (conf_check_name(p, cmd, args[1]) == -1)
        return -1;
    m->aliases = xrealloc(m->aliases, (m->n_aliases + 1) * sizeof(*m->aliases));
    char *alias = xstrdup(args[1]);
    m->aliases[m->n_aliases++] = alias;
    return conf_name_add(p, alias, "alias", conf_pos(p));
}

/* ---- route ------------------------------------------------------------------- */

static int conf_check_route(struct conf_parser *p, const struct gw_route_conf *r)
{
    int live = 0;
    for (size_t i = 0; i < r->n_splits; i++)
        live += r->splits[i].weight > 0;
    if (r->n_splits == 0) {
        conf_error_at(p, r->pos.file, r->pos.line, "route \"%s\" has no \"split\"", r->name);
        return -1;
    }
    if (live == 0) {
        conf_error_at(p, r->pos.file, r->pos.line,
                      "route \"%s\" has no \"split\" with a weight above 0", r->name);
        return -1;
    }
    return 0;
}

static int conf_set_route(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_conf *conf = p->conf;
    if (conf_check_name(p, cmd, args[1]) == -1)
        return -1;
    xgrow((void **)&conf->routes, &p->cap_routes, conf->n_routes + 1, sizeof(*conf->routes));
    xgrow((void **)&p->fallback_pos, &p->cap_fallback_pos, conf->n_routes + 1,
          sizeof(*p->fallback_pos));
    size_t idx = conf->n_routes++;
    struct gw_route_conf *r = &conf->routes[idx];
    memset(r, 0, sizeof(*r));
    memset(&p->fallback_pos[idx], 0, sizeof(p->fallback_pos[idx]));
    r->name = xstrdup(args[1]);
    r->sticky = GW_STICKY_NONE;
    r->pos = conf_pos(p);
    if (conf_name_add(p, r->name, "route", r->pos) == -1)
        return -1;

    struct conf_frame nf;
    memset(&nf, 0, sizeof(nf));
    nf.ctx = CF_ROUTE;
    nf.obj = idx;
    if (conf_parse_block(p, &nf, 1) == -1)
        return -1;
    return conf_check_route(p, &conf->routes[idx]);
}

static int conf_set_split(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_route_conf *r = conf_base(p);
    int64_t w = conf_parse_int(args[2]);
    if (w < 0 || w > 1000000)
        return conf_invalid(p, cmd, args[2], "the weight must be a number from 0 to 1000000");
    for (size_t i = 0; i < r->n_splits; i++) {
        if (strcmp(r->splits[i].model, args[1]) == 0) {
            conf_error(p, p->line, "duplicate \"split\" of model \"%s\" in route \"%s\" "
                       "(first defined at %s:%d)", args[1], r->name, r->splits[i].pos.file,
                       r->splits[i].pos.line);
            return -1;
        }
    }
    r->splits = xrealloc(r->splits, (r->n_splits + 1) * sizeof(*r->splits));
    struct gw_split_conf *s = &r->splits[r->n_splits++];
    s->model = xstrdup(args[1]);
    s->weight = (int)w;
    s->pos = conf_pos(p);
    return 0;
}

static int conf_set_sticky(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_route_conf *r = conf_base(p);
    const char *v = args[1], *key;
    int kind;
    if (strncmp(v, "header:", 7) == 0) {
        kind = GW_STICKY_HEADER;
        key = v + 7;
        /* an HTTP token (RFC 9110 tchar) */
        for (const char *c = key; *c; c++)
            if (!isalnum((unsigned char)*c) && strchr("!#$%&'*+-.^_`|~", *c) == NULL)
                return conf_invalid(p, cmd, v, "the header name holds an invalid character");
    } else if (strncmp(v, "field:", 6) == 0) {
        kind = GW_STICKY_FIELD;
        key = v + 6;
    } else {
        return conf_invalid(p, cmd, v, "it must be header:NAME or field:NAME");
    }
    if (*key == '\0')
        return conf_invalid(p, cmd, v, "the name after \":\" is empty");
    r->sticky = kind;
    r->sticky_key = xstrdup(key);
    return 0;
}

static int conf_set_fallback(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    struct gw_route_conf *r = conf_base(p);
    if (conf_check_name(p, cmd, args[1]) == -1)
        return -1;
    r->fallback = xstrdup(args[1]);
    p->fallback_pos[p->frame->obj] = conf_pos(p);
    return 0;
}

/* "split" and "fallback" must name models; checked once the whole file is read
 * so that a route may come before the models it names. */
static int conf_check_ref(struct conf_parser *p, const char *directive, const char *name,
                          struct gw_conf_pos pos)
{
    const struct conf_name *n = conf_name_find(p, name);
    if (n == NULL) {
        conf_error_at(p, pos.file, pos.line, "\"%s\" names unknown model \"%s\"", directive, name);
        return -1;
    }
    if (strcmp(n->kind, "model") != 0) {
        conf_error_at(p, pos.file, pos.line, "\"%s\" names %s \"%s\", not a model (defined at %s:%d)",
                      directive, n->kind, name, n->pos.file, n->pos.line);
        return -1;
    }
    return 0;
}

static int conf_check_refs(struct conf_parser *p)
{
    struct gw_conf *conf = p->conf;
    for (size_t i = 0; i < conf->n_routes; i++) {
        struct gw_route_conf *r = &conf->routes[i];
        for (size_t j = 0; j < r->n_splits; j++)
            if (conf_check_ref(p, "split", r->splits[j].model, r->splits[j].pos) == -1)
                return -1;
        if (r->fallback && conf_check_ref(p, "fallback", r->fallback, p->fallback_pos[i]) == -1)
            return -1;
    }
    return 0;
}

/* ---- files and includes ---------------------------------------------------------- */

/* Read <path> whole into a new NUL-terminated buffer (caller frees). -1 with
 * errno set (EISDIR for directories, EFBIG for huge files). */
static int conf_read_file(const char *path, char **buf, size_t *len, struct stat *st)
{
    FILE *fp = fopen(path, "rb");
    char *b = NULL;
    if (fp == NULL)
        return -1;
    if (fstat(fileno(fp), st) == -1)
        goto fail;
    if (S_ISDIR(st->st_mode)) {
        errno = EISDIR;
        goto fail;
    }
    size_t cap = 4096, n = 0;
    b = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= CONF_MAX_FILE_SIZE) {
                errno = EFBIG;
                goto fail;
            }
            cap *= 2;
            b = xrealloc(b, cap);
        }
        size_t got = fread(b + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0) {
            if (ferror(fp))
                goto fail;
            break;
        }
    }
    fclose(fp);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
fail:
    {
        int e = errno;
        free(b);
        fclose(fp);
        errno = e;
    }
    return -1;
}

/* Tokenize and apply <buf> as the file <name> (already in conf->files) in the
 * block <f>. */
static int conf_parse_buffer(struct conf_parser *p, struct conf_frame *f, const char *name,
                             const char *buf, size_t len)
{
    struct conf_file file = { name, buf, len, 0, 1, 1 };
    struct conf_file *outer = p->file;
    const char *nul = memchr(buf, '\0', len);
    int rc = -1;

    p->file = &file;
    if (nul != NULL) {          /* a binary file, or text cut by a NUL: refuse it */
        int line = 1;
        for (const char *c = buf; c < nul; c++)
            line += *c == '\n';
        conf_error(p, line, "unexpected NUL byte");
    } else {
        rc = conf_parse_block(p, f, 0);
    }
    p->file = outer;
    return rc;
}

static const char *conf_files_add(struct gw_conf *conf, const char *path)
{
    conf->files = xrealloc(conf->files, (conf->n_files + 1) * sizeof(*conf->files));
    conf->files[conf->n_files] = xstrdup(path);
    return conf->files[conf->n_files++];
}

/* Read the included file <path> into the current block. */
static int conf_include_file(struct conf_parser *p, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    struct stat st;
    int line = p->line, rc = -1;

    if (p->depth >= CONF_INCLUDE_DEPTH) {
        conf_error(p, line, "too many nested includes (more than %d) at \"%s\"",
                   CONF_INCLUDE_DEPTH, path);
        return -1;
    }
    if (conf_read_file(path, &buf, &len, &st) == -1) {
        conf_error(p, line, "cannot open included file \"%s\": %s", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < p->n_stack; i++) {
        if (p->stack[i].dev == st.st_dev && p->stack[i].ino == st.st_ino) {
            conf_error(p, line, "include loop: \"%s\" is already being read", path);
            goto done;
        }
    }
    const char *name = conf_files_add(p->conf, path);
    p->stack[p->n_stack].dev = st.st_dev;
    p->stack[p->n_stack].ino = st.st_ino;
    p->n_stack++;
    p->depth++;
    rc = conf_parse_buffer(p, p->frame, name, buf, len);
    p->depth--;
    p->n_stack--;
done:
    free(buf);
    return rc;
}

static int conf_set_include(struct conf_parser *p, const struct conf_cmd *cmd, char **args)
{
    const char *pattern = args[1];
    char *full = NULL;
    glob_t g;
    int rc = -1, line = p->line;

    if (pattern[0] == '\0')
        return conf_invalid(p, cmd, pattern, NULL);
    if (pattern[0] == '/' || strcmp(p->prefix, ".") == 0)
        full = xstrdup(pattern);
    else
        full = xasprintf("%s%s%s", p->prefix,
                         p->prefix[strlen(p->prefix) - 1] == '/' ? "" : "/", pattern);

    if (strpbrk(full, "*?[") == NULL) {
        rc = conf_include_file(p, full);
        free(full);
        return rc;
    }
    int gr = glob(full, 0, NULL, &g);
    if (gr == GLOB_NOMATCH) {
        rc = 0;                 /* a pattern that matches nothing is fine, as in nginx */
    } else if (gr != 0) {
        conf_error(p, line, "cannot read the files matching \"%s\": %s", full,
                   gr == GLOB_NOSPACE ? "out of memory" : strerror(errno));
    } else {
        rc = 0;
        for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) {
            p->line = line;
            rc = conf_include_file(p, g.gl_pathv[i]);
        }
    }
    if (gr != GLOB_NOMATCH)
        globfree(&g);
    free(full);
    return rc;
}

/* ---- load, defaults, free ------------------------------------------------------ */

#define CONF_INIT(field, def) do { if ((field) == GW_CONF_UNSET) (field) = (def); } while (0)
#define CONF_INIT_H(h) do { if ((h).interval_ms <= 0) (h).interval_ms = 5000; \
                            if ((h).timeout_ms <= 0) (h).timeout_ms = 2000; \
                            if ((h).fails <= 0) (h).fails = 3; \
                            if ((h).passes <= 0) (h).passes = 2; } while (0)

/* The one defaults pass: every UNSET field gets its default; models inherit
 * the http-level upstream settings. */
static void conf_init_defaults(struct gw_conf *conf)
{
    CONF_INIT(conf->daemon, 0);
    CONF_INIT(conf->error_log_level, LOG_NOTICE);
    CONF_INIT(conf->worker_connections, 1024);
    CONF_INIT(conf->client_max_body_size, (int64_t)16 << 20);
    CONF_INIT(conf->client_header_timeout_ms, 60000);
    CONF_INIT(conf->client_body_timeout_ms, 60000);
    CONF_INIT(conf->send_timeout_ms, 60000);
    CONF_INIT(conf->keepalive_timeout_ms, 75000);
    CONF_INIT(conf->timeout_ms, 600000);
    CONF_INIT(conf->connect_timeout_ms, 5000);
    CONF_INIT(conf->upstream_keepalive, 32);
    CONF_INIT(conf->max_attempts, 3);
    CONF_INIT(conf->shutdown_timeout_ms, 30000);
    CONF_INIT(conf->max_fails, 1);
    CONF_INIT(conf->fail_timeout_ms, 10000);
    CONF_INIT_H(conf->health);
    if (conf->n_listens == 0) {
        conf->listens = xcalloc(1, sizeof(*conf->listens));
        conf->listens[0].addr = xstrdup("127.0.0.1:8000");
        conf->listens[0].pos.file = conf->files[0];
        conf->listens[0].pos.line = 0;
        conf->n_listens = 1;
    }
    for (size_t i = 0; i < conf->n_models; i++) {
        struct gw_model_conf *m = &conf->models[i];
        m->task_set = m->task != GW_CONF_UNSET;
        CONF_INIT(m->task, GW_TASK_CHAT);
        CONF_INIT(m->replicas, 1);
        CONF_INIT(m->queue_timeout_ms, 30000);
        CONF_INIT(m->drain_timeout_ms, 30000);
        CONF_INIT(m->restart_backoff_min_ms, 1000);
        CONF_INIT(m->restart_backoff_max_ms, 30000);
        CONF_INIT(m->max_restarts, 5);
        CONF_INIT(m->max_restarts_window_ms, 60000);
        if (!m->health.set)
            m->health = conf->health;
        CONF_INIT_H(m->health);
        CONF_INIT(m->max_connections, 0);
        CONF_INIT(m->timeout_ms, conf->timeout_ms);
        CONF_INIT(m->connect_timeout_ms, conf->connect_timeout_ms);
        CONF_INIT(m->keepalive, conf->upstream_keepalive);
    }
}

static struct gw_conf *conf_new(const char *name)
{
    struct gw_conf *conf = xcalloc(1, sizeof(*conf));
    conf->file = xstrdup(name);
    conf->daemon = GW_CONF_UNSET;
    conf->error_log_level = GW_CONF_UNSET;
    conf->worker_connections = GW_CONF_UNSET;
    conf->client_max_body_size = GW_CONF_UNSET;
    conf->client_header_timeout_ms = GW_CONF_UNSET;
    conf->client_body_timeout_ms = GW_CONF_UNSET;
    conf->send_timeout_ms = GW_CONF_UNSET;
    conf->keepalive_timeout_ms = GW_CONF_UNSET;
    conf->timeout_ms = GW_CONF_UNSET;
    conf->connect_timeout_ms = GW_CONF_UNSET;
    conf->upstream_keepalive = GW_CONF_UNSET;
    conf->max_attempts = GW_CONF_UNSET;
    conf->shutdown_timeout_ms = GW_CONF_UNSET;
    conf->max_fails = GW_CONF_UNSET;
    conf->fail_timeout_ms = GW_CONF_UNSET;
    return conf;
}

/* Parse <text> (or, when NULL, the file <path>) into a new conf; NULL with
 * <err> set on any error. One exit: the parser's scratch is always freed, the
 * conf unless it is returned. */
/* Drop model <name> (hot unload): its names leave the namespace, so a route
 * still naming it fails the reference check. */
static int conf_remove_model(struct conf_parser *p, const char *name)
{
    struct gw_conf *conf = p->conf;
    size_t i;
    for (i = 0; i < conf->n_models; i++)
        if (strcmp(conf->models[i].name, name) == 0)
            break;
    if (i == conf->n_models) {
        snprintf(p->err, GW_CONF_ERRLEN, "model \"%s\" is not loaded", name);
        return -1;
    }
    struct gw_model_conf *m = &conf->models[i];
    for (size_t k = 0; k < p->n_names; k++) {
        int own = p->names[k].name == m->name;
        for (size_t j = 0; j < m->n_aliases; j++)
            own |= p->names[k].name == m->aliases[j];
        if (own) {
            p->names[k].name = name;
            p->names[k].kind = "unloaded model";
        }
    }
    conf_model_free(m);
    memmove(m, m + 1, (conf->n_models - i - 1) * sizeof(*m));
    conf->n_models--;
    return 0;
}

static struct gw_conf *conf_load(const char *path, const char *text, const char *extra,
                                 char *const *removed, size_t n_removed, char *err)
{
    struct conf_parser p;
    struct conf_frame f;
    struct gw_conf *conf = conf_new(path), *ret = NULL;
    char *buf = NULL;
    size_t len;
    struct stat st;

    memset(&p, 0, sizeof(p));
    memset(&f, 0, sizeof(f));
    err[0] = '\0';
    p.conf = conf;
    p.err = err;
    f.ctx = CF_MAIN;
    const char *slash = strrchr(path, '/');
    p.prefix = slash == NULL ? xstrdup(".") :
               slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));

    const char *name = conf_files_add(conf, path);
    if (text == NULL) {
        if (conf_read_file(path, &buf, &len, &st) == -1) {
            snprintf(err, GW_CONF_ERRLEN, "%s:0: cannot open configuration file: %s", path,
                     strerror(errno));
            goto done;
        }
        p.stack[0].dev = st.st_dev;
        p.stack[0].ino = st.st_ino;
        p.n_stack = 1;
        text = buf;
    } else {
        len = strlen(text);
    }
    if (conf_parse_buffer(&p, &f, name, text, len) == -1)
        goto done;
    if (!p.seen_http) {
        int line = 1;
        for (size_t i = 0; i < len; i++)
            line += text[i] == '\n';
        conf_error_at(&p, name, line, "no \"http\" block");
        goto done;
    }
    if (extra != NULL) {
        struct conf_frame hf;
        memset(&hf, 0, sizeof(hf));
        hf.ctx = CF_HTTP;
        const char *xname = conf_files_add(conf, "(runtime)");
        if (conf_parse_buffer(&p, &hf, xname, extra, strlen(extra)) == -1)
            goto done;
    }
    for (size_t i = 0; i < n_removed; i++)
        if (conf_remove_model(&p, removed[i]) == -1)
            goto done;
    if (conf_check_refs(&p) == -1)
        goto done;
    conf_init_defaults(conf);
    ret = conf;
    conf = NULL;
done:
    free(buf);
    free(p.prefix);
    free(p.names);
    free(p.fallback_pos);
    gw_conf_free(conf);
    return ret;
}

struct gw_conf *gw_conf_load(const char *path, char *err)
{
    return conf_load(path, NULL, NULL, NULL, 0, err);
}

struct gw_conf *gw_conf_load_overlay(const char *path, const char *extra, char *const *removed,
                                     size_t n_removed, char *err)
{
    return conf_load(path, NULL, extra, removed, n_removed, err);
}

struct gw_conf *gw_conf_load_string(const char *text, const char *name, char *err)
{
    return conf_load(name ? name : "(string)", text, NULL, NULL, 0, err);
}

static void conf_model_free(struct gw_model_conf *m)
{
    free(m->name);
    for (size_t j = 0; j < m->n_upstreams; j++)
        free(m->upstreams[j]);
    free(m->upstreams);
    for (size_t j = 0; j < m->n_aliases; j++)
        free(m->aliases[j]);
    free(m->aliases);
    for (size_t j = 0; j < m->n_gpus; j++)
        free(m->gpus[j]);
    free(m->gpus);
    for (size_t j = 0; j < m->n_served_names; j++)
        free(m->served_names[j]);
    free(m->served_names);
    for (size_t j = 0; j < m->n_env; j++)
        free(m->env[j]);
    free(m->env);
    free(m->path);
    free(m->device);
    free(m->dtype);
    free(m->gpu_memory_utilization);
    free(m->kv_cache_memory);
    free(m->reasoning_parser);
    free(m->tool_call_parser);
    free(m->user);
    free(m->group);
    free(m->log);
}

void gw_conf_free(struct gw_conf *conf)
{
    if (conf == NULL)
        return;
    for (size_t i = 0; i < conf->n_listens; i++)
        free(conf->listens[i].addr);
    free(conf->listens);
    for (size_t i = 0; i < conf->n_models; i++)
        conf_model_free(&conf->models[i]);
    free(conf->models);
    for (size_t i = 0; i < conf->n_routes; i++) {
        struct gw_route_conf *r = &conf->routes[i];
        free(r->name);
        for (size_t j = 0; j < r->n_splits; j++)
            free(r->splits[j].model);
        free(r->splits);
        free(r->sticky_key);
        free(r->fallback);
    }
    free(conf->routes);
    free(conf->pid_file);
    free(conf->admin_socket);
    free(conf->worker_binary);
    free(conf->runtime_dir);
    free(conf->error_log);
    free(conf->access_log);
    for (size_t i = 0; i < conf->n_files; i++)
        free(conf->files[i]);
    free(conf->files);
    free(conf->file);
    free(conf);
}
