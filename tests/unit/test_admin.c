/*
 * test_admin.c -- gateway/gw_admin.c and gw_ops_runtime.c: the command
 * line's words and ';' chaining, number and MODEL#R parsing, every reply
 * ending with an empty line, text and JSON replies, errors, split weights on
 * a router built from a conf string, then the socket itself (mode 0600,
 * chaining, a too-long line, a client that half-closes). The supervisor's
 * gw_op_* are weak stand-ins here, so the replies are deterministic.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "gw.h"
#include "gw_admin.h"
#include "gw_metrics.h"
#include "gw_router.h"
#include "log.h"
#include "tap.h"
#include "util.h"

/* ---- stand-ins for the supervisor's half of gw_ops.h --------------------------- */

#define WEAK __attribute__((weak))
static char last_op[256];

WEAK int gw_op_reload(struct gw *gw, char *err, size_t errlen)
{
    snprintf(last_op, sizeof(last_op), "reload");
    return 0;
}

WEAK int gw_op_model_load(struct gw *gw, const char *name, const char *path, int n_kv,
                          char *const *kv, char *err, size_t errlen)
{
    snprintf(last_op, sizeof(last_op), "load %s %s %d %s", name, path, n_kv,
             n_kv > 0 ? kv[n_kv - 1] : "-");
    if (strcmp(name, "dup") == 0) {
        snprintf(err, errlen, "model 'dup' exists");
        return -1;
    }
    return 0;
}

WEAK int gw_op_model_unload(struct gw *gw, const char *name, char *err, size_t errlen)
{
    snprintf(last_op, sizeof(last_op), "unload %s", name);
    return 0;
}

WEAK int gw_op_replica_drain(struct gw *gw, const char *model, int replica, int drain,
                             char *err, size_t errlen)
{
    snprintf(last_op, sizeof(last_op), "drain %s %d %d", model, replica, drain);
    return 0;
}

WEAK int gw_op_replica_restart(struct gw *gw, const char *model, int replica, char *err,
                               size_t errlen)
{
    snprintf(last_op, sizeof(last_op), "restart %s %d", model, replica);
    return 0;
}

WEAK json_t *gw_op_models(struct gw *gw)
{
    return json_pack("[{s:s, s:s, s:[{s:i, s:i, s:s}, {s:i, s:i, s:s}]}, {s:s, s:s, s:[]}]",
                     "name", "qwen3", "state", "ready", "replicas",
                     "replica", 0, "pid", 101, "state", "ready",
                     "replica", 1, "pid", 102, "state", "loading",
                     "name", "remote", "state", "ready", "replicas");
}

WEAK json_t *gw_op_backends(struct gw *gw)
{
    return json_pack("[{s:s, s:s}]", "name", "qwen3#0", "health", "up");
}

/* ---- helpers ------------------------------------------------------------------ */

static struct gw G;

/* Runs every command of <line>; returns the replies (caller frees). */
static char *run_line(const char *line, int *worst)
{
    struct evbuffer *out = evbuffer_new();
    char err[256];
    size_t pos = 0, len = strlen(line);
    struct gw_admin_words w;
    int rc, bad = 0;
    while ((rc = gw_admin_next_command(line, len, &pos, &w, err, sizeof(err))) != 0) {
        if (rc == -1) {
            evbuffer_add_printf(out, "error: %s\n\n", err);
            bad = 1;
            continue;
        }
        int r = gw_admin_run(&G, w.argc, w.argv, out);
        if (r > bad)
            bad = r;
        gw_admin_words_free(&w);
    }
    if (worst)
        *worst = bad;
    size_t n = evbuffer_get_length(out);
    char *s = xmalloc(n + 1);
    evbuffer_remove(out, s, n);
    s[n] = '\0';
    evbuffer_free(out);
    return s;
}

static int ends_with_empty_line(const char *s)
{
    size_t n = strlen(s);
    return n >= 2 && s[n - 1] == '\n' && s[n - 2] == '\n' &&
           (n == 2 || s[n - 3] != '\n');
}

/* A reply has no empty line before its end. */
static int count_replies(const char *s)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, "\n\n")) != NULL; p += 2)
        n++;
    return n;
}

/* <s> on one line, cut to 60 bytes, for test names (static buffer). */
static const char *flat(const char *s)
{
    static char buf[4][64];
    static int k;
    char *b = buf[k++ & 3];
    size_t i = 0;
    for (; s[i] && i < 60; i++)
        b[i] = s[i] == '\n' ? '|' : s[i];
    b[i] = '\0';
    return b;
}

/* ---- tokenizer -------------------------------------------------------------------- */

static void test_words(void)
{
    static const struct {
        const char *line;
        int argc;
        const char *words[5];
        const char *rest;           /* what follows the first command */
    } cases[] = {
        { "status", 1, { "status" }, "" },
        { "  split  chat   m2 50 ", 4, { "split", "chat", "m2", "50" }, "" },
        { "load m \"/a dir/x\" gpus=0|1", 4, { "load", "m", "/a dir/x", "gpus=0|1" }, "" },
        { "load m '/a \"b\"' x\\ y", 4, { "load", "m", "/a \"b\"", "x y" }, "" },
        { "a \"q\\\"uote\" b", 3, { "a", "q\"uote", "b" }, "" },
        { "status; models", 1, { "status" }, " models" },
        { "help \";\"; x", 2, { "help", ";" }, " x" },
        { "a\\;b", 1, { "a;b" }, "" },
        { "ab\"cd ef\"gh", 1, { "abcd efgh" }, "" },
        { "x \"\"", 2, { "x", "" }, "" },
        { ";", 0, { NULL }, "" },
        { "   ", 0, { NULL }, "" },
        { "drain qwen3#0", 2, { "drain", "qwen3#0" }, "" },
    };
    char err[128];
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct gw_admin_words w;
        size_t pos = 0, len = strlen(cases[i].line);
        int rc = gw_admin_next_command(cases[i].line, len, &pos, &w, err, sizeof(err));
        int good = rc == 1 && w.argc == cases[i].argc && w.argv[w.argc] == NULL &&
                   strcmp(cases[i].line + pos, cases[i].rest) == 0;
        for (int k = 0; good && k < w.argc; k++)
            good = strcmp(w.argv[k], cases[i].words[k]) == 0;
        ok(good, "words of [%s]", cases[i].line);
        if (rc == 1)
            gw_admin_words_free(&w);
    }
    static const char *const bad[] = { "a \"open", "a 'open", "x \"a\\\"" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct gw_admin_words w;
        size_t pos = 0, len = strlen(bad[i]);
        int rc = gw_admin_next_command(bad[i], len, &pos, &w, err, sizeof(err));
        ok(rc == -1 && strstr(err, "unterminated") && pos == len, "[%s] -> %s", bad[i], err);
    }
    /* too many words */
    char many[400] = "";
    for (int k = 0; k < GW_ADMIN_MAX_ARGS + 1; k++)
        strcat(many, "a ");
    struct gw_admin_words w;
    size_t pos = 0;
    ok(gw_admin_next_command(many, strlen(many), &pos, &w, err, sizeof(err)) == -1 &&
       strstr(err, "too many"), "%d words are refused", GW_ADMIN_MAX_ARGS + 1);
    /* NUL inside */
    pos = 0;
    ok(gw_admin_next_command("a\0b", 3, &pos, &w, err, sizeof(err)) == -1, "NUL refused");
    /* chained commands come one by one, then 0 */
    const char *chain = "status;models ; ;help";
    size_t len = strlen(chain);
    int counts[8], n = 0, rc;
    pos = 0;
    while ((rc = gw_admin_next_command(chain, len, &pos, &w, err, sizeof(err))) == 1 && n < 8) {
        counts[n++] = w.argc;
        gw_admin_words_free(&w);
    }
    ok(rc == 0 && n == 4 && counts[0] == 1 && counts[1] == 1 && counts[2] == 0 &&
       counts[3] == 1, "chain gives 4 commands (one empty), then 0 (n=%d)", n);
}

static void test_numbers(void)
{
    long v;
    ok(gw_admin_parse_int("50", 0, 100, &v) == 0 && v == 50, "50");
    ok(gw_admin_parse_int("0", 0, 100, &v) == 0 && v == 0, "0");
    ok(gw_admin_parse_int("101", 0, 100, &v) == -1, "101 out of range");
    ok(gw_admin_parse_int("-1", 0, 100, &v) == -1, "-1 out of range");
    ok(gw_admin_parse_int("5x", 0, 100, &v) == -1, "5x");
    ok(gw_admin_parse_int("", 0, 100, &v) == -1, "empty");
    ok(gw_admin_parse_int(" 5", 0, 100, &v) == -1, "leading blank");
    ok(gw_admin_parse_int("99999999999999999999999", 0, 100, &v) == -1, "overflow");
    char err[128], *m = NULL;
    int r;
    ok(gw_admin_parse_replica("qwen3#1", &m, &r, err, sizeof(err)) == 0 &&
       strcmp(m, "qwen3") == 0 && r == 1, "qwen3#1");
    free(m);
    m = NULL;
    ok(gw_admin_parse_replica("a#b#2", &m, &r, err, sizeof(err)) == 0 &&
       strcmp(m, "a#b") == 0 && r == 2, "the last # splits");
    free(m);
    m = NULL;
    ok(gw_admin_parse_replica("qwen3", &m, &r, err, sizeof(err)) == -1 && m == NULL, "no #");
    ok(gw_admin_parse_replica("qwen3#", &m, &r, err, sizeof(err)) == -1, "no number");
    ok(gw_admin_parse_replica("qwen3#x", &m, &r, err, sizeof(err)) == -1, "bad number");
    ok(gw_admin_parse_replica("#0", &m, &r, err, sizeof(err)) == -1, "no model");
}

/* ---- commands --------------------------------------------------------------------- */

static void test_commands(void)
{
    int bad;
    char *s;

    s = run_line("help", &bad);
    ok(bad == 0 && ends_with_empty_line(s) && count_replies(s) == 1, "help is one reply");
    static const char *const cmds[] = { "status", "models", "backends", "load", "unload",
                                        "reload", "split", "drain", "undrain", "restart",
                                        "stats", "log-level", "help", "quit" };
    int all = 1;
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
        char *k = xasprintf("\n%s ", cmds[i]);
        char *k0 = xasprintf("%s ", cmds[i]);
        if (strstr(s, k) == NULL && strncmp(s, k0, strlen(k0)) != 0) {
            diag("help lacks %s", cmds[i]);
            all = 0;
        }
        free(k);
        free(k0);
    }
    ok(all, "help lists every command");
    free(s);

    s = run_line("help split", &bad);
    ok(bad == 0 && strncmp(s, "split ROUTE MODEL WEIGHT", 24) == 0 && count_replies(s) == 1,
       "help split: [%s]", flat(s));
    free(s);

    s = run_line("frobnicate 1 2", &bad);
    ok(bad == 1 && strcmp(s, "error: unknown command 'frobnicate' (try help)\n\n") == 0,
       "unknown command: [%s]", flat(s));
    free(s);

    s = run_line("json frobnicate", &bad);
    json_t *j = json_loads(s, 0, NULL);
    ok(bad == 1 && j && json_is_string(json_object_get(j, "error")) && ends_with_empty_line(s),
       "json unknown command is a JSON error");
    json_decref(j);
    free(s);

    s = run_line("status", &bad);
    ok(bad == 0 && strstr(s, "version: ") && strstr(s, "\npid: ") && strstr(s, "\nmodels: 3") &&
       strstr(s, "\nroutes: 1") && ends_with_empty_line(s) && count_replies(s) == 1,
       "status: key: value lines [%s]", flat(s));
    free(s);

    s = run_line("json status", &bad);
    j = json_loads(s, 0, NULL);
    ok(bad == 0 && j && json_integer_value(json_object_get(j, "pid")) == getpid() &&
       json_integer_value(json_object_get(j, "models")) == 3 && ends_with_empty_line(s),
       "json status parses");
    json_decref(j);
    free(s);

    s = run_line("status extra", &bad);
    ok(bad == 1 && strstr(s, "error: status: wrong number of arguments"), "status extra: [%s]", flat(s));
    free(s);

    s = run_line("models", &bad);
    ok(bad == 0 && strstr(s, "NAME ") && strstr(s, "qwen3") && strstr(s, "\n  REPLICA") &&
       !strstr(s, "REPLICAS") &&
       strstr(s, "loading") && ends_with_empty_line(s) && count_replies(s) == 1,
       "models renders a table with replica rows [%s]", flat(s));
    free(s);

    s = run_line("json models; backends", &bad);
    ok(bad == 0 && count_replies(s) == 2 && s[0] == '[' && strstr(s, "\n\nNAME"),
       "two chained replies, json then text [%s]", flat(s));
    free(s);

    s = run_line("split chat m2 0; split chat m1 x; split nope m1 1; split chat zz 1", &bad);
    ok(bad == 1 && count_replies(s) == 4 && strncmp(s, "ok: ", 4) == 0 &&
       strstr(s, "\n\nerror: bad weight 'x'") && strstr(s, "error: no route 'nope'") &&
       strstr(s, "error: no model 'zz'"), "split errors [%s]", flat(s));
    free(s);
    struct gw_route *rt = gw_router_find_route(G.router, "chat");
    ok(rt && rt->members[1].weight == 0, "split set m2's weight to 0");
    struct gw_resolved res;
    int m1 = 0;
    for (int i = 0; i < 10; i++)
        if (gw_router_resolve(G.router, "chat", NULL, &res) == 0 &&
            strcmp(res.model->name, "m1") == 0)
            m1++;
    ok(m1 == 10, "weight 0: every pick goes to m1 (%d/10)", m1);
    s = run_line("split chat m2 3; split chat m1-alias 1", &bad);
    free(s);
    int cnt[2] = { 0, 0 };
    for (int i = 0; i < 8; i++)
        if (gw_router_resolve(G.router, "chat", NULL, &res) == 0)
            cnt[strcmp(res.model->name, "m1") == 0 ? 0 : 1]++;
    ok(bad == 0 && cnt[0] == 2 && cnt[1] == 6, "1:3 by alias and name gives 2/6 (%d/%d)",
       cnt[0], cnt[1]);
    s = run_line("split chat m3 1", &bad);
    rt = gw_router_find_route(G.router, "chat");
    ok(bad == 0 && rt->n_members == 3 && rt->members[2].weight == 1, "a new model joins");
    free(s);
    s = run_line("split chat m2 1000001", &bad);
    ok(bad == 1 && strstr(s, "bad weight"), "weight too large");
    free(s);

    s = run_line("log-level", &bad);
    ok(bad == 0 && strstr(s, "level: "), "log-level shows [%s]", flat(s));
    free(s);
    s = run_line("log-level debug", &bad);
    ok(bad == 0 && log_current_level == LOG_DEBUG && strstr(s, "level: debug"),
       "log-level debug [%s]", flat(s));
    free(s);
    s = run_line("log-level loud", &bad);
    ok(bad == 1 && strstr(s, "error: unknown level 'loud'") && log_current_level == LOG_DEBUG,
       "log-level loud refused [%s]", flat(s));
    free(s);
    log_set_level(LOG_ERR);

    s = run_line("load m /models/m replicas=2 gpus=0|1", &bad);
    ok(bad == 0 && strncmp(s, "ok: loading model 'm'", 21) == 0 &&
       strcmp(last_op, "load m /models/m 2 gpus=0|1") == 0, "load [%s] [%s]", flat(s), last_op);
    free(s);
    s = run_line("load m /p novalue; load dup /p; load onlyname", &bad);
    ok(bad == 1 && count_replies(s) == 3 && strstr(s, "expected key=value, got 'novalue'") &&
       strstr(s, "error: model 'dup' exists") && strstr(s, "error: load: wrong number"),
       "load errors [%s]", flat(s));
    free(s);
    s = run_line("json load m /p", &bad);
    j = json_loads(s, 0, NULL);
    ok(bad == 0 && j && json_is_true(json_object_get(j, "ok")), "json load: ok true");
    json_decref(j);
    free(s);
    s = run_line("drain qwen3#1", &bad);
    ok(bad == 0 && strcmp(last_op, "drain qwen3 1 1") == 0, "drain [%s]", last_op);
    free(s);
    s = run_line("undrain qwen3#1", &bad);
    ok(bad == 0 && strcmp(last_op, "drain qwen3 1 0") == 0, "undrain [%s]", last_op);
    free(s);
    s = run_line("restart qwen3#0", &bad);
    ok(bad == 0 && strcmp(last_op, "restart qwen3 0") == 0, "restart [%s]", last_op);
    free(s);
    s = run_line("drain qwen3", &bad);
    ok(bad == 1 && strstr(s, "expected MODEL#REPLICA"), "drain without # [%s]", flat(s));
    free(s);
    s = run_line("unload m; reload", &bad);
    ok(bad == 0 && strcmp(last_op, "reload") == 0 && count_replies(s) == 2, "unload; reload");
    free(s);

    s = run_line("stats", &bad);
    ok(bad == 0 && strstr(s, "requests: ") && ends_with_empty_line(s), "stats [%s]", flat(s));
    free(s);

    s = run_line("quit", &bad);
    ok(bad == 2 && s[0] == '\0', "quit: no reply, close");
    free(s);
    s = run_line("", &bad);
    ok(bad == 0 && s[0] == '\0', "empty line: no reply");
    free(s);
    s = run_line("json", &bad);
    ok(bad == 1 && strstr(s, "json needs a command"), "bare json [%s]", flat(s));
    free(s);
}

/* ---- the socket --------------------------------------------------------------------- */

static int client(const char *path)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until <fd> is closed, turning the loop meanwhile. New string. */
static char *read_all(int fd)
{
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int64_t end = now_ms() + 5000;
    for (;;) {
        event_base_loop(G.base, EVLOOP_NONBLOCK);
        xgrow((void **)&buf, &cap, n + 4097, 1);
        ssize_t r = recv(fd, buf + n, 4096, MSG_DONTWAIT);
        if (r == 0 || (r == -1 && errno != EAGAIN))
            break;
        if (r > 0)
            n += (size_t)r;
        else if (now_ms() > end)
            break;
        else
            usleep(1000);
    }
    buf[n] = '\0';
    return buf;
}

static void test_socket(void)
{
    char dir[] = "/tmp/llmux-admin-XXXXXX", err[256];
    ok(mkdtemp(dir) != NULL, "tmp dir");
    char *path = xasprintf("%s/admin.sock", dir);
    err[0] = '\0';
    ok(gw_admin_start(&G, path, err, sizeof(err)) == 0, "gw_admin_start %s", err);
    struct stat st;
    memset(&st, 0, sizeof(st));
    int st_rc = stat(path, &st);
    ok(st_rc == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
       "socket mode is 0600 (%o)", (unsigned)(st.st_mode & 0777));

    int fd = client(path);
    const char *req = "status;help log-level\nbogus\n";
    ok(send(fd, req, strlen(req), 0) == (ssize_t)strlen(req), "sent");
    shutdown(fd, SHUT_WR);
    char *s = read_all(fd);
    ok(count_replies(s) == 3 && strstr(s, "version: ") && strstr(s, "log-level [LEVEL]") &&
       strstr(s, "error: unknown command 'bogus'"), "three replies then close [%s]", flat(s));
    free(s);
    close(fd);

    /* a last line without a newline still runs */
    fd = client(path);
    send(fd, "log-level", 9, 0);
    shutdown(fd, SHUT_WR);
    s = read_all(fd);
    ok(strncmp(s, "level: ", 7) == 0, "unterminated last line [%s]", flat(s));
    free(s);
    close(fd);

    /* quit closes, what follows is not run */
    fd = client(path);
    send(fd, "quit; status\nstatus\n", 20, 0);
    s = read_all(fd);
    ok(s[0] == '\0', "quit closes at once [%s]", flat(s));
    free(s);
    close(fd);

    /* a line over the limit: error, then close */
    fd = client(path);
    size_t big = GW_ADMIN_MAX_LINE + 10;
    char *line = xmalloc(big);
    memset(line, 'a', big);
    size_t off = 0;
    while (off < big) {
        ssize_t w = send(fd, line + off, big - off, MSG_DONTWAIT);
        if (w > 0)
            off += (size_t)w;
        event_base_loop(G.base, EVLOOP_NONBLOCK);
        if (w <= 0 && errno != EAGAIN)
            break;
    }
    s = read_all(fd);
    ok(strncmp(s, "error: line too long", 20) == 0, "long line refused [%s]", flat(s));
    free(s);
    free(line);
    close(fd);

    /* a stale socket file is replaced; a live one is not */
    gw_admin_stop(&G);
    ok(access(path, F_OK) == -1, "stop unlinks the socket");
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    bind(stale, (struct sockaddr *)&sun, sizeof(sun));
    close(stale);
    err[0] = '\0';
    ok(gw_admin_start(&G, path, err, sizeof(err)) == 0, "stale socket replaced %s", err);
    gw_admin_stop(&G);
    int live = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(live, (struct sockaddr *)&sun, sizeof(sun));
    listen(live, 1);
    ok(gw_admin_start(&G, path, err, sizeof(err)) == -1 && strstr(err, "in use"),
       "a live socket is kept: %s", err);
    close(live);
    unlink(path);
    FILE *f = fopen(path, "w");
    fclose(f);
    ok(gw_admin_start(&G, path, err, sizeof(err)) == -1 && strstr(err, "not a socket"),
       "a regular file is kept: %s", err);
    unlink(path);
    rmdir(dir);
    free(path);
}

int main(void)
{
    char err[GW_CONF_ERRLEN];
    log_init("test");
    log_set_level(LOG_ERR);
    struct gw_conf *conf = gw_conf_load_string(
        "http {\n"
        "  model m1 { upstream http://127.0.0.1:1; alias m1-alias; }\n"
        "  model m2 { upstream http://127.0.0.1:2; }\n"
        "  model m3 { upstream http://127.0.0.1:3; }\n"
        "  route chat { split m1 1; split m2 1; }\n"
        "}\n", "t.conf", err);
    if (conf == NULL) {
        diag("conf: %s", err);
        return 1;
    }
    memset(&G, 0, sizeof(G));
    G.conf = conf;
    G.conf_path = "t.conf";
    G.router = gw_router_new(conf, err);
    G.metrics = gw_metrics_new();
    G.base = event_base_new();
    G.start_time = wall_time_s();
    test_words();
    test_numbers();
    test_commands();
    test_socket();
    event_base_free(G.base);
    gw_metrics_free(G.metrics);
    gw_router_free(G.router);
    gw_conf_free(conf);
    return tap_done();
}
