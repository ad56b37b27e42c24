/*
 * gw_conf.h -- the gateway's configuration: an nginx-style file parsed into
 * plain structs. The parser knows nothing of sockets or routing; the router and
 * server read these structs after gw_conf_load() succeeded. Every directive is
 * one entry of the directive table in gw_conf.c (name, context, arity, setter,
 * offset). All strings and arrays belong to the struct gw_conf and are freed by
 * gw_conf_free().
 */
#ifndef LLMUX_GW_CONF_H
#define LLMUX_GW_CONF_H

#include <stddef.h>
#include <stdint.h>

#define GW_CONF_UNSET      (-1)
#define GW_CONF_ERRLEN     1024

/* Where a directive was read: used in later error messages (router, reload). */
struct gw_conf_pos {
    char *file;                 /* shared string, owned by the conf's file list */
    int   line;
};

struct gw_listen_conf {
    char *addr;                 /* "127.0.0.1:8000", "[::1]:8000", "*:8000", "8000" or "unix:/path" */
    struct gw_conf_pos pos;
};

enum gw_task { GW_TASK_CHAT = 0, GW_TASK_EMBED, GW_TASK_RERANK, GW_TASK_TRANSCRIBE };

struct gw_model_conf {
    char  *name;
    char **upstreams;           /* "http://host:port[/prefix]" or "unix:/path"; repeatable */
    size_t n_upstreams;
    char **aliases;             /* repeatable */
    size_t n_aliases;
    int    task;                /* enum gw_task; default chat */
    int    max_connections;     /* per backend, 0 = unlimited; default 0 */
    int64_t timeout_ms;         /* whole request incl. stream; default from http timeout */
    int64_t connect_timeout_ms; /* default from http connect_timeout */
    int    keepalive;           /* idle upstream connections kept per backend; default from http */
    int    task_set;            /* "task" was given (else the worker reads config.json) */
    /* spawned workers ("path" instead of "upstream") */
    char  *path;                /* model folder, or NULL for external upstreams */
    int    replicas;            /* default 1 */
    char **gpus;                /* per replica CUDA_VISIBLE_DEVICES ("" = cpu); n_gpus entries */
    size_t n_gpus;              /* 0: inherit; 1: every replica the same; else == replicas */
    char  *device;              /* cpu|cuda|auto or NULL (cpu when gpus is cpu) */
    char  *dtype;               /* stored, not passed (the worker has no flag) */
    int    max_model_len;       /* 0 = worker default */
    int    max_num_seqs;
    int    max_num_batched_tokens;
    char  *gpu_memory_utilization;  /* stored, not passed */
    char  *kv_cache_memory;     /* --kv-cache-memory */
    int    threads;             /* --threads; -1 = worker default */
    char **served_names;        /* extra --served-name */
    size_t n_served_names;
    char  *reasoning_parser;
    char  *tool_call_parser;
    char **env;                 /* "NAME=VALUE" */
    size_t n_env;
    char  *user, *group;
    char  *log;                 /* own log file, or NULL: the error log with a [model#r] prefix */
    int64_t queue_timeout_ms;   /* default 30s */
    int64_t drain_timeout_ms;   /* default 30s */
    int64_t restart_backoff_min_ms, restart_backoff_max_ms;  /* default 1s, 30s */
    int    max_restarts;        /* default 5 */
    int64_t max_restarts_window_ms;  /* default 60s */
    struct gw_health_conf {
        int64_t interval_ms, timeout_ms;
        int fails, passes;
        int set;                /* given in this block (model) or in http */
    } health;
    void  *sup_inst;            /* runtime: the supervisor's instance (not owned) */
    struct gw_conf_pos pos;
};

enum gw_sticky { GW_STICKY_NONE = 0, GW_STICKY_HEADER, GW_STICKY_FIELD };

struct gw_split_conf {
    char *model;                /* a model name (not an alias, not a route) */
    int   weight;               /* 1..1000000 (0 allowed: arm disabled) */
    struct gw_conf_pos pos;
};

struct gw_route_conf {
    char  *name;
    struct gw_split_conf *splits;
    size_t n_splits;
    int    sticky;              /* enum gw_sticky */
    char  *sticky_key;          /* header name (e.g. "X-User") or JSON field ("user") */
    char  *fallback;            /* model name or NULL */
    struct gw_conf_pos pos;
};

struct gw_conf {
    char   *file;               /* main file path as given */
    char  **files;              /* every file read (main + includes), for error positions */
    size_t  n_files;

    /* main context */
    int     daemon;             /* default 0 (off) */
    char   *pid_file;           /* default NULL: no pid file */
    char   *error_log;          /* default NULL: stderr */
    int     error_log_level;    /* enum log_level; default notice */
    int     worker_connections; /* max client connections; default 1024 */
    char   *admin_socket;       /* unix socket of the admin API; default NULL: none */

    /* http context */
    struct gw_listen_conf *listens;
    size_t  n_listens;          /* default: one "127.0.0.1:8000" when http{} has none */
    char   *access_log;         /* default NULL: off */
    int64_t client_max_body_size;   /* bytes; default 16m; 0 = unlimited */
    int64_t client_header_timeout_ms; /* default 60s */
    int64_t client_body_timeout_ms;   /* default 60s */
    int64_t send_timeout_ms;          /* default 60s */
    int64_t keepalive_timeout_ms;     /* default 75s; 0 disables client keep-alive */
    int64_t timeout_ms;               /* default upstream request timeout; default 600s */
    int64_t connect_timeout_ms;       /* default 5s */
    int     upstream_keepalive;       /* idle conns per backend; default 32 */
    int     max_attempts;             /* backends tried per request incl. fallback; default 3 */
    int64_t shutdown_timeout_ms;      /* graceful stop bound; default 30s */
    int     max_fails;                /* passive health: failures that take a backend down; default 1 */
    int64_t fail_timeout_ms;          /* how long a down backend is skipped; default 10s */
    char   *worker_binary;            /* default: llmux-worker next to the llmux binary */
    char   *runtime_dir;              /* worker sockets; default /tmp/llmux-PID */
    struct gw_health_conf health;     /* http-level health_check (inherited by models) */

    struct gw_model_conf *models;
    size_t  n_models;
    struct gw_route_conf *routes;
    size_t  n_routes;
};

/* Parse <path> (and its includes). Returns a new conf (free with gw_conf_free)
 * or NULL with "file:line: message" in <err> (GW_CONF_ERRLEN bytes). Checks
 * syntax, arguments, duplicates (models, aliases, routes share one namespace),
 * and that splits/fallbacks name existing models. Defaults are applied. */
struct gw_conf *gw_conf_load(const char *path, char *err);
/* Same, from a string; <name> is used as the file name in messages. */
/* Same, plus the model blocks in <extra> (http context, may be NULL) and
 * without the models named in <removed> (n_removed; a route still naming one
 * is an error). Used by hot load/unload. */
struct gw_conf *gw_conf_load_overlay(const char *path, const char *extra, char *const *removed,
                                     size_t n_removed, char *err);
/* A string describing everything a spawned model's workers depend on: two
 * blocks with equal signatures need no restart on reload (caller frees). */
char *gw_model_conf_signature(const struct gw_model_conf *m);
struct gw_conf *gw_conf_load_string(const char *text, const char *name, char *err);
void gw_conf_free(struct gw_conf *conf);

/* Parse "512k", "8g", "100" (bytes) -> bytes, or -1. */
int64_t gw_conf_parse_size(const char *s);
/* Parse "250ms", "5s", "1m", "1h", "1d", "30" (seconds) and sums "1m30s" -> ms, or -1. */
int64_t gw_conf_parse_msec(const char *s);

const char *gw_task_name(int task);

#endif
