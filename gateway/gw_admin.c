/*
 * gw_admin.c -- the admin socket: a unix socket (mode 0600; peers must be
 * root or the gateway's own user, checked with SO_PEERCRED) speaking a line
 * protocol in the manner of HAProxy's runtime API: one command per line or
 * several separated by ';', every reply ends with an empty line, "json CMD"
 * makes the reply one JSON document. Commands are rows of one table (name,
 * arguments, help, handler). Handlers reach the gateway only through
 * gw_ops.h. A connection never blocks the loop: input lines are bounded,
 * output beyond a high mark pauses the client's commands, a client that
 * does not read is dropped after a send timeout. One admin socket per
 * process: its state is this file's statics.
 */
#include "gw_admin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "gw.h"
#include "log.h"
#include "util.h"

#define ADMIN_OUT_HIGH      (256 * 1024)    /* pause a client's commands above this */
#define ADMIN_SEND_TIMEOUT  10              /* seconds without write progress: drop */
#define ADMIN_MAX_CONNS     128
#define ADMIN_ERRLEN        1024

struct admin_conn {
    struct admin_conn  *next, *prev;
    struct bufferevent *bev;
    int                 uid, pid;           /* peer, from SO_PEERCRED */
    char               *line;               /* line being executed (commands left), or NULL */
    size_t              line_len, line_pos;
    int                 eof;                /* peer shut down its side */
    int                 closing;            /* close once the output is flushed */
    int                 paused;             /* output above ADMIN_OUT_HIGH */
    int                 orphan;             /* the socket was stopped while it ran a command */
};

static struct admin_state {
    struct gw             *gw;
    char                  *path;
    struct evconnlistener *lev;
    struct event          *retry_ev;        /* re-enables accepting after EMFILE */
    dev_t                  dev;             /* the socket file we made (unlink only that) */
    ino_t                  ino;
    struct admin_conn     *conns;
    int                    n_conns;
    struct admin_conn     *busy;            /* running a command now (a reload may stop us) */
} admin;

/* ---- parsing ------------------------------------------------------------------ */

/* 1 when the <n> bytes at <s> are well-formed UTF-8 (replies may be JSON, and
 * jansson takes nothing else). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            min = 0x80;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            min = 0x800;
            c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            min = 0x10000;
            c &= 0x07;
        } else {
            return 0;
        }
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return 0;
        i += len;
    }
    return 1;
}

void gw_admin_words_free(struct gw_admin_words *w)
{
    free(w->buf);
    w->buf = NULL;
    w->argc = 0;
    w->argv[0] = NULL;
}

int gw_admin_next_command(const char *line, size_t len, size_t *pos, struct gw_admin_words *w,
                          char *err, size_t errlen)
{
    size_t i = *pos;
    memset(w, 0, sizeof(*w));
    if (i >= len)
        return 0;
    /* Words are unescaped into <buf>, each followed by a NUL: never longer
     * than the input. */
    char *buf = xmalloc(len - i + 1);
    size_t o = 0;
    int in_word = 0;
    char quote = 0;
    for (; i < len; i++) {
        char ch = line[i];
        if (ch == '\0') {
            snprintf(err, errlen, "NUL byte in command");
            goto fail;
        }
        if (quote) {
            if (ch == quote) {
                quote = 0;
            } else if (ch == '\\' && quote == '"' && i + 1 < len) {
                buf[o++] = line[++i];
            } else {
                buf[o++] = ch;
            }
            continue;
        }
        if (ch == ';')
            break;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            if (in_word) {
                buf[o++] = '\0';
                in_word = 0;
            }
            continue;
        }
        if (!in_word) {
            if (w->argc == GW_ADMIN_MAX_ARGS) {
                snprintf(err, errlen, "too many arguments (at most %d words)", GW_ADMIN_MAX_ARGS);
                goto fail;
            }
            w->argv[w->argc++] = (char *)(uintptr_t)o;   /* offset until buf is final */
            in_word = 1;
        }
        if (ch == '"' || ch == '\'') {
            quote = ch;
        } else if (ch == '\\' && i + 1 < len) {
            buf[o++] = line[++i];
        } else {
            buf[o++] = ch;
        }
    }
    if (quote) {
        snprintf(err, errlen, "unterminated %s quote", quote == '"' ? "double" : "single");
        goto fail;
    }
    if (in_word)
        buf[o++] = '\0';
    if (!utf8_valid((const unsigned char *)buf, o)) {
        snprintf(err, errlen, "invalid UTF-8 in command");
        goto fail;
    }
    for (int k = 0; k < w->argc; k++)
        w->argv[k] = buf + (uintptr_t)w->argv[k];
    w->argv[w->argc] = NULL;
    w->buf = buf;
    *pos = i < len ? i + 1 : len;       /* past the ';' */
    return 1;
fail:
    free(buf);
    memset(w, 0, sizeof(*w));
    *pos = len;
    return -1;
}

int gw_admin_parse_int(const char *s, long min, long max, long *out)
{
    if (s == NULL || *s == '\0')
        return -1;
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    if (*p == '\0')
        return -1;
    for (; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno != 0 || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int gw_admin_parse_replica(const char *s, char **model, int *replica, char *err, size_t errlen)
{
    const char *hash = strrchr(s, '#');
    long r;
    if (hash == NULL || hash == s) {
        snprintf(err, errlen, "expected MODEL#REPLICA (e.g. qwen3#0), got '%s'", s);
        return -1;
    }
    if (gw_admin_parse_int(hash + 1, 0, 1000000, &r) == -1) {
        snprintf(err, errlen, "bad replica number '%s' in '%s' (want 0, 1, ...)", hash + 1, s);
        return -1;
    }
    *model = xstrndup(s, (size_t)(hash - s));
    *replica = (int)r;
    return 0;
}

/* ---- text rendering of JSON results -------------------------------------------- */

/* A reply's lines must never be empty (an empty line ends the reply) nor
 * hold a newline: scalar text is flattened and "-" stands for nothing. */
static char *scalar_text(const json_t *v)
{
    char *s;
    switch (json_typeof(v)) {
    case JSON_STRING:
        s = xstrdup(json_string_value(v));
        break;
    case JSON_INTEGER:
        s = xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        s = xasprintf("%.6g", json_real_value(v));
        break;
    case JSON_TRUE:
        s = xstrdup("yes");
        break;
    case JSON_FALSE:
        s = xstrdup("no");
        break;
    case JSON_NULL:
        s = xstrdup("-");
        break;
    case JSON_ARRAY: {
        /* scalars joined by ','; objects as k=v groups */
        size_t n = json_array_size(v);
        char *acc = xstrdup("");
        for (size_t i = 0; i < n; i++) {
            char *e = scalar_text(json_array_get(v, i));
            char *t = xasprintf("%s%s%s", acc, i ? "," : "", e);
            free(acc);
            free(e);
            acc = t;
        }
        s = acc;
        break;
    }
    case JSON_OBJECT: {
        const char *k;
        json_t *e;
        char *acc = xstrdup("");
        json_object_foreach((json_t *)v, k, e) {
            char *et = scalar_text(e);
            char *t = xasprintf("%s%s%s=%s", acc, acc[0] ? " " : "", k, et);
            free(acc);
            free(et);
            acc = t;
        }
        s = acc;
        break;
    }
    default:
        s = xstrdup("?");
    }
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (s[0] == '\0') {
        free(s);
        s = xstrdup("-");
    }
    return s;
}

static int is_table(const json_t *v)
{
    /* an array whose elements are all objects, or an object of objects */
    const char *k;
    json_t *e;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0)
            return 0;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!json_is_object(json_array_get(v, i)))
                return 0;
        return 1;
    }
    if (!json_is_object(v) || json_object_size(v) == 0)
        return 0;
    json_object_foreach((json_t *)v, k, e)
        if (!json_is_object(e))
            return 0;
    return 2;
}

static void render_table(const json_t *v, const char *indent, struct evbuffer *out);

static void add_upper(struct evbuffer *out, const char *s, int width)
{
    int n = 0;
    for (; *s; s++, n++)
        evbuffer_add_printf(out, "%c", *s >= 'a' && *s <= 'z' ? *s - 32 : *s);
    for (; n < width; n++)
        evbuffer_add(out, " ", 1);
}

/* 1 when <key> holds an array of objects in some row: a sub-table, not a column. */
static int sub_table_key(json_t **rows, size_t n, const char *key)
{
    for (size_t r = 0; r < n; r++)
        if (is_table(json_object_get(rows[r], key)) == 1)
            return 1;
    return 0;
}

/* Rows are the array's objects (or the object's members, keyed by a first
 * NAME column). Columns: every key whose value is not an array of objects,
 * in first-seen order; arrays of objects become indented sub-tables under
 * their row. */
static void render_table(const json_t *v, const char *indent, struct evbuffer *out)
{
    int keyed = json_is_object(v);
    size_t n = keyed ? json_object_size(v) : json_array_size(v);
    json_t **rows = xcalloc(n ? n : 1, sizeof(*rows));
    const char **names = xcalloc(n ? n : 1, sizeof(*names));
    size_t r = 0;
    if (keyed) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e) {
            names[r] = k;
            rows[r++] = e;
        }
    } else {
        for (; r < n; r++)
            rows[r] = json_array_get(v, r);
    }
    /* columns */
    const char **cols = NULL;
    size_t ncols = 0, capcols = 0;
    if (keyed) {
        xgrow((void **)&cols, &capcols, ncols + 1, sizeof(*cols));
        cols[ncols++] = "name";
    }
    for (r = 0; r < n; r++) {
        const char *k;
        json_t *e;
        json_object_foreach(rows[r], k, e) {
            if (sub_table_key(rows, n, k))
                continue;
            size_t c = 0;
            while (c < ncols && strcmp(cols[c], k) != 0)
                c++;
            if (c == ncols) {
                xgrow((void **)&cols, &capcols, ncols + 1, sizeof(*cols));
                cols[ncols++] = k;
            }
        }
    }
    /* cells and widths */
    char **cells = xcalloc(n * ncols + 1, sizeof(*cells));
    int *width = xcalloc(ncols + 1, sizeof(*width));
    for (size_t c = 0; c < ncols; c++)
        width[c] = (int)strlen(cols[c]);
    for (r = 0; r < n; r++) {
        for (size_t c = 0; c < ncols; c++) {
            json_t *e = json_object_get(rows[r], cols[c]);
            char *s;
            if (keyed && c == 0 && e == NULL)
                s = xstrdup(names[r]);
            else
                s = e ? scalar_text(e) : xstrdup("-");
            cells[r * ncols + c] = s;
            if ((int)strlen(s) > width[c])
                width[c] = (int)strlen(s);
        }
    }
    evbuffer_add_printf(out, "%s", indent);
    for (size_t c = 0; c < ncols; c++)
        add_upper(out, cols[c], c + 1 < ncols ? width[c] + 2 : 0);
    evbuffer_add(out, "\n", 1);
    char *sub_indent = xasprintf("%s  ", indent);
    for (r = 0; r < n; r++) {
        evbuffer_add_printf(out, "%s", indent);
        for (size_t c = 0; c < ncols; c++) {
            if (c + 1 < ncols)
                evbuffer_add_printf(out, "%-*s  ", width[c], cells[r * ncols + c]);
            else
                evbuffer_add_printf(out, "%s", cells[r * ncols + c]);
        }
        evbuffer_add(out, "\n", 1);
        const char *k;
        json_t *e;
        json_object_foreach(rows[r], k, e)
            if (is_table(e) == 1 && sub_table_key(rows, n, k))
                render_table(e, sub_indent, out);
    }
    free(sub_indent);
    for (size_t i = 0; i < n * ncols; i++)
        free(cells[i]);
    free(cells);
    free(width);
    free(cols);
    free(names);
    free(rows);
}

/* An object: its scalar members as "key: value" lines (as redis INFO), then each
 * table or nested object under a "# key" section line. An array of objects
 * is a table. */
static void render_json_text(const json_t *v, struct evbuffer *out)
{
    if (is_table(v) == 1) {
        render_table(v, "", out);
        return;
    }
    if (!json_is_object(v)) {
        char *s = scalar_text(v);
        evbuffer_add_printf(out, "%s\n", s);
        free(s);
        return;
    }
    const char *k;
    json_t *e;
    json_object_foreach((json_t *)v, k, e) {
        if (json_is_object(e) || is_table(e))
            continue;
        char *s = scalar_text(e);
        evbuffer_add_printf(out, "%s: %s\n", k, s);
        free(s);
    }
    json_object_foreach((json_t *)v, k, e) {
        if (!json_is_object(e) && !is_table(e))
            continue;
        evbuffer_add_printf(out, "# %s\n", k);
        if (json_object_size(e) == 0 && json_is_object(e))
            evbuffer_add_printf(out, "(none)\n");
        else if (is_table(e))
            render_table(e, "", out);
        else
            render_json_text(e, out);
    }
}

/* ---- commands ------------------------------------------------------------------ */

struct admin_cmd;
/* A handler returns its result (new reference) or NULL with <err> set. */
typedef json_t *(*admin_handler)(struct gw *gw, const struct admin_cmd *cmd, int argc,
                                 char **argv, char *err, size_t errlen);

struct admin_cmd {
    const char   *name;
    const char   *args;         /* usage of the arguments, "" when none */
    const char   *help;
    int           min_args, max_args;   /* after the name; max -1: unbounded */
    int           changes;      /* logged at notice: it changes the gateway */
    admin_handler handler;
};

static const struct admin_cmd admin_cmds[];
static const size_t n_admin_cmds;

static json_t *ok_result(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *ok_result(const char *fmt, ...)
{
    char msg[ADMIN_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return json_pack("{s:b, s:s}", "ok", 1, "message", msg);
}

static json_t *cmd_help(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                        char *err, size_t errlen)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n_admin_cmds; i++) {
        const struct admin_cmd *c = &admin_cmds[i];
        if (argc == 2 && strcmp(argv[1], c->name) != 0)
            continue;
        json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "command", c->name, "args",
                                              c->args, "help", c->help));
    }
    if (argc == 2 && json_array_size(list) == 0) {
        json_decref(list);
        snprintf(err, errlen, "unknown command '%s' (try help)", argv[1]);
        return NULL;
    }
    return list;
}

static json_t *cmd_status(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                          char *err, size_t errlen)
{
    json_t *j = gw_op_status(gw);
    if (j == NULL)
        snprintf(err, errlen, "status unavailable");
    return j;
}

static json_t *cmd_models(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                          char *err, size_t errlen)
{
    json_t *j = gw_op_models(gw);
    if (j == NULL)
        snprintf(err, errlen, "models unavailable");
    return j;
}

static json_t *cmd_backends(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                            char *err, size_t errlen)
{
    json_t *j = gw_op_backends(gw);
    if (j == NULL)
        snprintf(err, errlen, "backends unavailable");
    return j;
}

static json_t *cmd_stats(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                         char *err, size_t errlen)
{
    json_t *j = gw_op_stats(gw);
    if (j == NULL)
        snprintf(err, errlen, "stats unavailable");
    return j;
}

static json_t *cmd_load(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                        char *err, size_t errlen)
{
    for (int i = 3; i < argc; i++) {
        const char *eq = strchr(argv[i], '=');
        if (eq == NULL || eq == argv[i]) {
            snprintf(err, errlen, "expected key=value, got '%s'", argv[i]);
            return NULL;
        }
    }
    if (gw_op_model_load(gw, argv[1], argv[2], argc - 3, argv + 3, err, errlen) == -1)
        return NULL;
    return ok_result("loading model '%s' from %s (see models for its state)", argv[1], argv[2]);
}

static json_t *cmd_unload(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                          char *err, size_t errlen)
{
    if (gw_op_model_unload(gw, argv[1], err, errlen) == -1)
        return NULL;
    return ok_result("unloading model '%s': draining, then its workers stop", argv[1]);
}

static json_t *cmd_reload(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                          char *err, size_t errlen)
{
    if (gw_op_reload(gw, err, errlen) == -1)
        return NULL;
    return ok_result("configuration reloaded");
}

static json_t *cmd_split(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                         char *err, size_t errlen)
{
    long w;
    if (gw_admin_parse_int(argv[3], 0, 1000000, &w) == -1) {
        snprintf(err, errlen, "bad weight '%s' (want an integer from 0 to 1000000)", argv[3]);
        return NULL;
    }
    if (gw_op_split_set(gw, argv[1], argv[2], (int)w, err, errlen) == -1)
        return NULL;
    return ok_result("route '%s': '%s' weight %ld", argv[1], argv[2], w);
}

static json_t *cmd_replica(struct gw *gw, const struct admin_cmd *cmd, int argc, char **argv,
                           char *err, size_t errlen)
{
    char *model = NULL;
    int r, rc;
    json_t *res = NULL;
    if (gw_admin_parse_replica(argv[1], &model, &r, err, errlen) == -1)
        return NULL;
    if (strcmp(cmd->name, "restart") == 0)
        rc = gw_op_replica_restart(gw, model, r, err, errlen);
    else
        rc = gw_op_replica_drain(gw, model, r, strcmp(cmd->name, "drain") == 0, err, errlen);
    if (rc == 0) {
        if (strcmp(cmd->name, "restart") == 0)
            res = ok_result("restarting %s#%d", model, r);
        else if (strcmp(cmd->name, "drain") == 0)
            res = ok_result("%s#%d drained: no new requests", model, r);
        else
            res = ok_result("%s#%d back in rotation", model, r);
    }
    free(model);
    return res;
}

static json_t *cmd_log_level(struct gw *gw, const struct admin_cmd *cmd, int argc,
                             char **argv, char *err, size_t errlen)
{
    const char *before = log_level_name(log_current_level);
    if (argc == 1)
        return json_pack("{s:s}", "level", before);
    if (gw_op_log_level(gw, argv[1], err, errlen) == -1)
        return NULL;
    return json_pack("{s:s, s:s}", "level", log_level_name(log_current_level), "previous",
                     before);
}

static const struct admin_cmd admin_cmds[] = {
    { "help", "[COMMAND]", "list the commands, or show one", 0, 1, 0, cmd_help },
    { "status", "", "version, pid, uptime, connections, requests", 0, 0, 0, cmd_status },
    { "models", "", "models with their state and replicas", 0, 0, 0, cmd_models },
    { "backends", "", "every backend: address, health, load, requests", 0, 0, 0, cmd_backends },
    { "stats", "", "request counters by model and status, bytes, failovers", 0, 0, 0, cmd_stats },
    { "load", "NAME PATH [key=value ...]", "start a model from folder PATH (model block settings)",
      2, -1, 1, cmd_load },
    { "unload", "NAME", "drain a model, then stop its workers", 1, 1, 1, cmd_unload },
    { "reload", "", "re-read the configuration file (as SIGHUP)", 0, 0, 1, cmd_reload },
    { "split", "ROUTE MODEL WEIGHT", "set MODEL's weight in ROUTE (0: no new traffic)", 3, 3, 1,
      cmd_split },
    { "drain", "MODEL#R", "take replica R of MODEL out of rotation", 1, 1, 1, cmd_replica },
    { "undrain", "MODEL#R", "put a drained replica back in rotation", 1, 1, 1, cmd_replica },
    { "restart", "MODEL#R", "restart a replica (also revives a failed model)", 1, 1, 1,
      cmd_replica },
    { "log-level", "[LEVEL]", "show or set the error log level (debug info notice warn error)",
      0, 1, 1, cmd_log_level },
    { "quit", "", "close the connection", 0, 0, 0, NULL },
};
static const size_t n_admin_cmds = ARRAY_SIZE(admin_cmds);

static void text_help(const json_t *list, struct evbuffer *out)
{
    size_t i;
    json_t *e;
    int w = 0;
    json_array_foreach(list, i, e) {
        int n = (int)(strlen(json_string_value(json_object_get(e, "command"))) + 1 +
                      strlen(json_string_value(json_object_get(e, "args"))));
        if (n > w)
            w = n;
    }
    json_array_foreach(list, i, e) {
        char *usage = xasprintf("%s %s", json_string_value(json_object_get(e, "command")),
                                json_string_value(json_object_get(e, "args")));
        evbuffer_add_printf(out, "%-*s  %s\n", w, usage,
                            json_string_value(json_object_get(e, "help")));
        free(usage);
    }
    if (json_array_size(list) > 1)
        evbuffer_add_printf(out, "%-*s  %s\n", w, "json COMMAND ...",
                            "any command's reply as one JSON document");
}

static void reply_error(struct evbuffer *out, int json, const char *msg)
{
    if (json) {
        json_t *j = json_pack("{s:s}", "error", msg);
        if (j == NULL)      /* not UTF-8 (cut inside a character) */
            j = json_pack("{s:s}", "error", "invalid UTF-8 in the message");
        char *s = json_dumps(j, JSON_COMPACT);
        evbuffer_add_printf(out, "%s\n\n", s);
        free(s);
        json_decref(j);
        return;
    }
    char *m = xstrdup(msg);
    for (unsigned char *p = (unsigned char *)m; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    evbuffer_add_printf(out, "error: %s\n\n", m);
    free(m);
}

int gw_admin_run(struct gw *gw, int argc, char **argv, struct evbuffer *out)
{
    char err[ADMIN_ERRLEN];
    int json = 0;
    while (argc > 0 && strcmp(argv[0], "json") == 0) {     /* "json json x" is "json x" */
        json = 1;
        argc--;
        argv++;
        if (argc == 0) {
            reply_error(out, json, "json needs a command (e.g. json models)");
            return 1;
        }
    }
    if (argc == 0)
        return 0;
    const struct admin_cmd *cmd = NULL;
    for (size_t i = 0; i < n_admin_cmds; i++)
        if (strcmp(argv[0], admin_cmds[i].name) == 0)
            cmd = &admin_cmds[i];
    if (cmd == NULL) {
        snprintf(err, sizeof(err), "unknown command '%.100s' (try help)", argv[0]);
        reply_error(out, json, err);
        return 1;
    }
    if (cmd->handler == NULL)
        return 2;   /* quit */
    int nargs = argc - 1;
    if (nargs < cmd->min_args || (cmd->max_args >= 0 && nargs > cmd->max_args)) {
        snprintf(err, sizeof(err), "%s: wrong number of arguments (usage: %s%s%s)", cmd->name,
                 cmd->name, cmd->args[0] ? " " : "", cmd->args);
        reply_error(out, json, err);
        return 1;
    }
    if (cmd->changes) {
        char what[256];
        size_t o = 0;
        for (int i = 0; i < argc && o + 1 < sizeof(what); i++)
            o += (size_t)snprintf(what + o, sizeof(what) - o, "%s%s", i ? " " : "", argv[i]);
        log_notice("admin: %s", what);
    }
    err[0] = '\0';
    json_t *res = cmd->handler(gw, cmd, argc, argv, err, sizeof(err));
    if (res == NULL) {
        if (err[0] == '\0')
            snprintf(err, sizeof(err), "%s failed", cmd->name);
        if (cmd->changes)
            log_warn("admin: %s failed: %s", cmd->name, err);
        reply_error(out, json, err);
        return 1;
    }
    if (json) {
        char *s = json_dumps(res, JSON_INDENT(2));
        evbuffer_add_printf(out, "%s\n\n", s ? s : "null");
        free(s);
    } else if (cmd->handler == cmd_help) {
        text_help(res, out);
        evbuffer_add(out, "\n", 1);
    } else if (json_is_object(res) && json_object_get(res, "ok") != NULL &&
               json_is_string(json_object_get(res, "message")) && json_object_size(res) == 2) {
        evbuffer_add_printf(out, "ok: %s\n\n", json_string_value(json_object_get(res, "message")));
    } else {
        struct evbuffer *tmp = evbuffer_new();
        render_json_text(res, tmp);
        if (evbuffer_get_length(tmp) == 0)
            evbuffer_add_printf(tmp, "(none)\n");
        evbuffer_add_buffer(out, tmp);
        evbuffer_free(tmp);
        evbuffer_add(out, "\n", 1);
    }
    json_decref(res);
    return 0;
}

/* ---- connections ----------------------------------------------------------------- */

static void conn_free(struct admin_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        admin.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    admin.n_conns--;
    bufferevent_free(c->bev);
    free(c->line);
    free(c);
}

/* Stop reading; close once the output is flushed (at once when it is
 * empty: <c> must not be used after this). */
static void conn_close_after_flush(struct admin_conn *c)
{
    c->closing = 1;
    bufferevent_disable(c->bev, EV_READ);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_free(c);
}

/* Execute what the connection holds: the rest of the current line, then
 * complete lines of input, until the output passes ADMIN_OUT_HIGH (resumed by
 * write_cb once it drains). Returns -1 when <c> was freed. */
static int conn_process(struct admin_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char err[ADMIN_ERRLEN];

    while (!c->closing) {
        if (evbuffer_get_length(out) > ADMIN_OUT_HIGH) {
            if (!c->paused) {
                c->paused = 1;
                bufferevent_disable(c->bev, EV_READ);
                bufferevent_setwatermark(c->bev, EV_WRITE, ADMIN_OUT_HIGH / 2, 0);
            }
            return 0;
        }
        if (c->line != NULL) {
            struct gw_admin_words w;
            int rc = gw_admin_next_command(c->line, c->line_len, &c->line_pos, &w, err,
                                           sizeof(err));
            if (rc == 0) {
                free(c->line);
                c->line = NULL;
                continue;
            }
            if (rc == -1) {
                reply_error(out, 0, err);
                continue;
            }
            admin.busy = c;
            rc = gw_admin_run(admin.gw, w.argc, w.argv, out);
            admin.busy = NULL;
            gw_admin_words_free(&w);
            if (rc == 2 || c->orphan) {     /* quit, or the socket went away: <c> may be freed */
                conn_close_after_flush(c);
                return -1;
            }
            continue;
        }
        size_t n = 0;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
        if (line == NULL) {
            size_t left = evbuffer_get_length(in);
            if (left > GW_ADMIN_MAX_LINE) {
                snprintf(err, sizeof(err), "line too long (more than %d bytes), closing",
                         GW_ADMIN_MAX_LINE);
                reply_error(out, 0, err);
                log_warn("admin: uid %d pid %d sent a line over %d bytes, closed", c->uid,
                         c->pid, GW_ADMIN_MAX_LINE);
                conn_close_after_flush(c);
                return -1;
            }
            if (c->eof && left > 0) {       /* a last line without its newline */
                n = left;
                line = xmalloc(n + 1);
                evbuffer_remove(in, line, n);
                line[n] = '\0';
            } else {
                break;
            }
        }
        if (n > GW_ADMIN_MAX_LINE) {
            free(line);
            snprintf(err, sizeof(err), "line too long (more than %d bytes), closing",
                     GW_ADMIN_MAX_LINE);
            reply_error(out, 0, err);
            conn_close_after_flush(c);
            return -1;
        }
        c->line = line;
        c->line_len = n;
        c->line_pos = 0;
    }
    if (c->closing)
        return -1;
    if (c->eof && c->line == NULL && evbuffer_get_length(in) == 0) {
        conn_close_after_flush(c);
        return -1;
    }
    return 0;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    conn_process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct admin_conn *c = arg;
    if (c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            conn_free(c);
        return;
    }
    if (c->paused) {
        c->paused = 0;
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        if (!c->eof)
            bufferevent_enable(bev, EV_READ);
        conn_process(c);
    }
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct admin_conn *c = arg;
    if (what & BEV_EVENT_EOF && !(what & BEV_EVENT_WRITING)) {
        /* the peer is done sending: run what it sent, flush, close */
        c->eof = 1;
        bufferevent_disable(bev, EV_READ);
        if (!c->closing)
            conn_process(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        log_info("admin: uid %d pid %d does not read its replies, closed", c->uid, c->pid);
    conn_free(c);
}

/* A peer that is neither root nor our user gets one error line and EOF. */
static void refuse(int fd, const char *msg)
{
    char buf[512];
    int n = snprintf(buf, sizeof(buf), "error: %s\n\n", msg);
    ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    shutdown(fd, SHUT_WR);
    /* Unread input would turn our close into a reset for the peer. */
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
    close(fd);
}

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    char msg[256];
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
        log_error("admin: SO_PEERCRED failed: %s", strerror(errno));
        refuse(fd, "cannot identify the peer");
        return;
    }
    uid_t me = geteuid();
    if (cred.uid != 0 && cred.uid != me) {
        log_warn("admin: refused uid %d pid %d (only root and uid %d)", (int)cred.uid,
                 (int)cred.pid, (int)me);
        snprintf(msg, sizeof(msg), "permission denied: uid %d is neither root nor the gateway's "
                 "user (uid %d)", (int)cred.uid, (int)me);
        refuse(fd, msg);
        return;
    }
    if (admin.n_conns >= ADMIN_MAX_CONNS) {
        log_warn("admin: %d connections open, refused uid %d pid %d", admin.n_conns,
                 (int)cred.uid, (int)cred.pid);
        refuse(fd, "too many admin connections, try again later");
        return;
    }
    struct admin_conn *c = xcalloc(1, sizeof(*c));
    c->uid = (int)cred.uid;
    c->pid = (int)cred.pid;
    c->bev = bufferevent_socket_new(admin.gw->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        free(c);
        return;
    }
    c->next = admin.conns;
    if (admin.conns)
        admin.conns->prev = c;
    admin.conns = c;
    admin.n_conns++;
    struct timeval wt = { .tv_sec = ADMIN_SEND_TIMEOUT, .tv_usec = 0 };
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    /* Input is bounded: past a line's limit reading stops and the line is refused. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, GW_ADMIN_MAX_LINE + 4096);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    log_debug("admin: connection from uid %d pid %d", c->uid, c->pid);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    if (admin.lev != NULL)
        evconnlistener_enable(admin.lev);
}

/* accept() failed (EMFILE...): pause accepting for a moment instead of spinning. */
static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    log_error("admin: accept on %s failed: %s", admin.path, evutil_socket_error_to_string(e));
    evconnlistener_disable(lev);
    struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
    evtimer_add(admin.retry_ev, &tv);
}

/* ---- life cycle ------------------------------------------------------------------ */

int gw_admin_start(struct gw *gw, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd = -1;

    if (admin.lev != NULL)
        gw_admin_stop(admin.gw);
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "admin socket path %s is too long (at most %zu bytes)", path,
                 sizeof(sun.sun_path) - 1);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "admin socket %s exists and is not a socket", path);
            return -1;
        }
        /* A socket someone answers on belongs to a live process: keep it. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe != -1 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(probe);
            snprintf(err, errlen, "admin socket %s is in use by another process", path);
            return -1;
        }
        if (probe != -1)
            close(probe);
        unlink(path);       /* stale */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, errlen, "admin socket: socket(): %s", strerror(errno));
        return -1;
    }
    /* Created 0600 from the start: there is no moment when others may connect. */
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    int e = errno;
    umask(old);
    if (rc == -1) {
        snprintf(err, errlen, "cannot bind admin socket %s: %s", path, strerror(e));
        goto fail;
    }
    if (chmod(path, 0600) == -1 || stat(path, &st) == -1) {
        snprintf(err, errlen, "admin socket %s: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    if (listen(fd, 64) == -1) {
        snprintf(err, errlen, "cannot listen on admin socket %s: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    admin.lev = evconnlistener_new(gw->base, accept_cb, NULL,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (admin.lev == NULL) {
        snprintf(err, errlen, "admin socket %s: evconnlistener_new failed", path);
        unlink(path);
        goto fail;
    }
    evconnlistener_set_error_cb(admin.lev, accept_error_cb);
    admin.retry_ev = evtimer_new(gw->base, retry_cb, NULL);
    admin.gw = gw;
    admin.path = xstrdup(path);
    admin.dev = st.st_dev;
    admin.ino = st.st_ino;
    log_info("admin socket listening on %s", path);
    return 0;
fail:
    close(fd);
    return -1;
}

void gw_admin_stop(struct gw *gw)
{
    struct stat st;
    /* The connection whose command (a reload that moves the socket) got us
     * here is closed by conn_process once its reply is queued. */
    struct admin_conn *c = admin.conns;
    while (c != NULL) {
        struct admin_conn *next = c->next;
        if (c == admin.busy)
            c->orphan = 1;
        else
            conn_free(c);
        c = next;
    }
    if (admin.lev != NULL) {
        evconnlistener_free(admin.lev);
        admin.lev = NULL;
        /* Only our own file: a successor may have bound the path since. */
        if (stat(admin.path, &st) == 0 && st.st_dev == admin.dev && st.st_ino == admin.ino)
            unlink(admin.path);
    }
    if (admin.retry_ev != NULL) {
        event_free(admin.retry_ev);
        admin.retry_ev = NULL;
    }
    free(admin.path);
    admin.path = NULL;
    admin.gw = NULL;
}
