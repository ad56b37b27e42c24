/*
 * test_router.c -- gateway/gw_router.c: upstream URL parsing, name
 * resolution, smooth weighted round robin, sticky rendezvous hashing,
 * backend picking, passive health and suggestions. Confs are built by hand
 * here (no gw_conf_load), so this test depends on the router alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_router.h"
#include "gw_supervisor.h"
#include "log.h"
#include "tap.h"
#include "util.h"

/* ---- hand-built confs ---------------------------------------------------------- */

#define MAXU 8

struct model_spec {
    const char *name;
    const char *upstreams[MAXU];
    const char *aliases[MAXU];
    int max_connections;
};

struct route_spec {
    const char *name;
    const char *models[MAXU];
    int weights[MAXU];
    int sticky;
    const char *sticky_key;
    const char *fallback;
};

static size_t count(const char *const *v)
{
    size_t n = 0;
    while (n < MAXU && v[n] != NULL)
        n++;
    return n;
}

/* A conf over <ms> and <rs> (terminated by a NULL name). The strings are
 * borrowed from the specs (static); free with conf_free(). */
static struct gw_conf *conf_make(const struct model_spec *ms, const struct route_spec *rs)
{
    struct gw_conf *c = xcalloc(1, sizeof(*c));
    c->timeout_ms = 600000;
    c->connect_timeout_ms = 5000;
    c->upstream_keepalive = 32;
    c->max_fails = GW_CONF_UNSET;
    c->fail_timeout_ms = GW_CONF_UNSET;
    while (ms != NULL && ms[c->n_models].name != NULL)
        c->n_models++;
    c->models = xcalloc(c->n_models, sizeof(*c->models));
    for (size_t i = 0; i < c->n_models; i++) {
        struct gw_model_conf *mc = &c->models[i];
        mc->name = (char *)ms[i].name;
        mc->upstreams = (char **)ms[i].upstreams;
        mc->n_upstreams = count(ms[i].upstreams);
        mc->aliases = (char **)ms[i].aliases;
        mc->n_aliases = count(ms[i].aliases);
        mc->max_connections = ms[i].max_connections;
        mc->timeout_ms = GW_CONF_UNSET;
        mc->connect_timeout_ms = 2000;
        mc->keepalive = GW_CONF_UNSET;
        mc->pos.file = (char *)"test.conf";
        mc->pos.line = (int)i + 1;
    }
    while (rs != NULL && rs[c->n_routes].name != NULL)
        c->n_routes++;
    c->routes = xcalloc(c->n_routes, sizeof(*c->routes));
    for (size_t i = 0; i < c->n_routes; i++) {
        struct gw_route_conf *rc = &c->routes[i];
        rc->name = (char *)rs[i].name;
        rc->n_splits = count(rs[i].models);
        rc->splits = xcalloc(rc->n_splits, sizeof(*rc->splits));
        for (size_t j = 0; j < rc->n_splits; j++) {
            rc->splits[j].model = (char *)rs[i].models[j];
            rc->splits[j].weight = rs[i].weights[j];
        }
        rc->sticky = rs[i].sticky;
        rc->sticky_key = (char *)rs[i].sticky_key;
        rc->fallback = (char *)rs[i].fallback;
        rc->pos.file = (char *)"test.conf";
        rc->pos.line = 100 + (int)i;
    }
    return c;
}

static void conf_free(struct gw_conf *c)
{
    for (size_t i = 0; i < c->n_routes; i++)
        free(c->routes[i].splits);
    free(c->routes);
    free(c->models);
    free(c);
}

static struct gw_router *router_make(const struct model_spec *ms, const struct route_spec *rs,
                                     char *err)
{
    struct gw_conf *c = conf_make(ms, rs);
    struct gw_router *r = gw_router_new(c, err);
    conf_free(c);
    return r;
}

/* ---- URL parsing ----------------------------------------------------------------- */

struct url_case {
    const char *url;
    int ok;
    int is_unix;
    const char *host, *unix_path, *prefix, *host_header;
    int port;
};

static const struct url_case url_cases[] = {
    { "http://127.0.0.1:8001", 1, 0, "127.0.0.1", NULL, "", "127.0.0.1:8001", 8001 },
    { "http://backend.local", 1, 0, "backend.local", NULL, "", "backend.local:80", 80 },
    { "http://10.0.0.5:8000/", 1, 0, "10.0.0.5", NULL, "", "10.0.0.5:8000", 8000 },
    { "http://h:9/api/v2//", 1, 0, "h", NULL, "/api/v2", "h:9", 9 },
    { "http://h/prefix", 1, 0, "h", NULL, "/prefix", "h:80", 80 },
    { "HTTP://H:1", 1, 0, "H", NULL, "", "H:1", 1 },
    { "http://[::1]:8000", 1, 0, "::1", NULL, "", "[::1]:8000", 8000 },
    { "http://[fe80::1]/x/", 1, 0, "fe80::1", NULL, "/x", "[fe80::1]:80", 80 },
    { "[::1]:8000", 1, 0, "::1", NULL, "", "[::1]:8000", 8000 },
    { "localhost:8002", 1, 0, "localhost", NULL, "", "localhost:8002", 8002 },
    { "unix:/run/llmux/qwen.sock", 1, 1, NULL, "/run/llmux/qwen.sock", "", "localhost", 0 },
    { "unix:relative.sock", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "unix:", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "https://h:443", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "ftp://h", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://h:0", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://h:65536", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://h:12a", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://h:", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://:80", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://::1:8000", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://[::1", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://[::1]x", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://u@h:80", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://h/p?q=1", 0, 0, NULL, NULL, NULL, NULL, 0 },
    { "http://h/a b", 0, 0, NULL, NULL, NULL, NULL, 0 },
};

static int streq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static void test_urls(void)
{
    char err[GW_CONF_ERRLEN];
    for (size_t i = 0; i < ARRAY_SIZE(url_cases); i++) {
        const struct url_case *uc = &url_cases[i];
        struct model_spec ms[] = { { "m", { uc->url }, { NULL }, 0 }, { NULL, { NULL }, { NULL }, 0 } };
        struct gw_router *r = router_make(ms, NULL, err);
        if (!uc->ok) {
            ok(r == NULL && strstr(err, "test.conf:1: invalid upstream") != NULL,
               "url \"%s\" rejected (%s)", uc->url, err);
            gw_router_free(r);
            continue;
        }
        if (!ok(r != NULL, "url \"%s\" accepted", uc->url)) {
            diag("%s", err);
            continue;
        }
        struct gw_backend *b = r->models[0]->backends[0];
        ok(b->is_unix == uc->is_unix && streq(b->host, uc->host) &&
           streq(b->unix_path, uc->unix_path) && streq(b->path_prefix, uc->prefix) &&
           streq(b->host_header, uc->host_header) && b->port == uc->port &&
           streq(b->url, uc->url),
           "url \"%s\" -> host=%s port=%d unix=%s prefix=\"%s\" Host: %s", uc->url,
           b->host ? b->host : "-", b->port, b->unix_path ? b->unix_path : "-",
           b->path_prefix, b->host_header);
        gw_router_free(r);
    }
}

/* ---- build and resolve --------------------------------------------------------- */

static const struct model_spec base_models[] = {
    { "qwen3", { "http://127.0.0.1:8001", "http://127.0.0.1:8002", "unix:/tmp/q.sock" },
      { "qwen3-30b", "chat-default" }, 0 },
    { "bge-m3", { "http://127.0.0.1:9001" }, { NULL }, 2 },
    { "remote", { "http://10.0.0.5:8000/v1x" }, { NULL }, 0 },
    { NULL, { NULL }, { NULL }, 0 },
};

static void test_build(void)
{
    char err[GW_CONF_ERRLEN];
    struct route_spec rs[] = {
        { "chat", { "qwen3", "remote" }, { 90, 10 }, GW_STICKY_NONE, NULL, "qwen3" },
        { NULL, { NULL }, { 0 }, 0, NULL, NULL },
    };
    int64_t before = wall_time_s();
    struct gw_router *r = router_make(base_models, rs, err);
    if (!ok(r != NULL, "router builds (%s)", r ? "" : err))
        return;
    ok(r->n_models == 3 && r->n_routes == 1, "3 models, 1 route");
    struct gw_model *q = r->models[0];
    ok(q->n_backends == 3 && strcmp(q->backends[0]->name, "qwen3#0") == 0 &&
       strcmp(q->backends[2]->name, "qwen3#2") == 0 && q->backends[2]->index == 2 &&
       q->backends[1]->model == q, "backends named MODEL#i with back pointers");
    ok(q->n_aliases == 2 && strcmp(q->aliases[1], "chat-default") == 0, "aliases copied");
    ok(q->timeout_ms == 600000 && q->connect_timeout_ms == 2000 && q->keepalive == 32,
       "timeouts: unset inherits http level, set is kept");
    ok(r->models[1]->max_connections == 2, "max_connections copied");
    ok(q->created >= before && q->created <= wall_time_s(), "created is the build time");
    ok(r->fail_threshold == 1 && r->down_ms == 10000, "passive health defaults 1 / 10000 ms");
    ok(r->routes[0]->fallback == q && r->routes[0]->members[1].model == r->models[2],
       "route members and fallback point to models");
    ok(gw_router_find_model(r, "qwen3") == q && gw_router_find_model(r, "qwen3-30b") == NULL &&
       gw_router_find_model(r, "chat") == NULL, "find_model: exact model names only");
    ok(gw_router_find_route(r, "chat") == r->routes[0] && gw_router_find_route(r, "qwen3") == NULL,
       "find_route");

    struct gw_resolved res;
    ok(gw_router_resolve(r, "qwen3", NULL, &res) == 0 && res.model == q && res.route == NULL &&
       strcmp(res.kind, "model") == 0, "resolve model");
    ok(gw_router_resolve(r, "qwen3-30b", NULL, &res) == 0 && res.model == q &&
       strcmp(res.kind, "alias") == 0, "resolve alias");
    ok(gw_router_resolve(r, "chat", NULL, &res) == 0 && res.route == r->routes[0] &&
       strcmp(res.kind, "route") == 0 && (res.model == q || res.model == r->models[2]),
       "resolve route");
    ok(gw_router_resolve(r, "QWEN3", NULL, &res) == -1 && res.model == NULL,
       "names are case-sensitive");
    ok(gw_router_resolve(r, "nope", NULL, &res) == -1, "unknown name");
    ok(gw_router_resolve(r, "", NULL, &res) == -1, "empty name");
    gw_router_free(r);

    /* conf values for passive health */
    struct gw_conf *c = conf_make(base_models, NULL);
    c->max_fails = 3;
    c->fail_timeout_ms = 2500;
    r = gw_router_new(c, err);
    ok(r != NULL && r->fail_threshold == 3 && r->down_ms == 2500, "max_fails / fail_timeout used");
    gw_router_free(r);
    conf_free(c);
}

static void test_build_errors(void)
{
    char err[GW_CONF_ERRLEN];
    struct {
        const char *what;
        struct route_spec rs[2];
        const char *expect;
    } cases[] = {
        { "unknown split model", { { "r", { "qwen3", "nope" }, { 1, 1 }, 0, NULL, NULL } },
          "test.conf:100: route \"r\": unknown model \"nope\" in split" },
        { "unknown fallback", { { "r", { "qwen3" }, { 1 }, 0, NULL, "gone" } },
          "unknown fallback model \"gone\"" },
        { "route name taken by a model", { { "bge-m3", { "qwen3" }, { 1 }, 0, NULL, NULL } },
          "duplicate name \"bge-m3\"" },
        { "route name taken by an alias", { { "qwen3-30b", { "qwen3" }, { 1 }, 0, NULL, NULL } },
          "duplicate name \"qwen3-30b\"" },
        { "model split twice", { { "r", { "qwen3", "qwen3" }, { 1, 2 }, 0, NULL, NULL } },
          "split twice" },
        { "no splits", { { "r", { NULL }, { 0 }, 0, NULL, NULL } }, "has no split" },
        { "sticky without key", { { "r", { "qwen3" }, { 1 }, GW_STICKY_HEADER, NULL, NULL } },
          "sticky needs" },
        { "negative weight", { { "r", { "qwen3" }, { -1 }, 0, NULL, NULL } }, "negative weight" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        err[0] = '\0';
        struct gw_router *r = router_make(base_models, cases[i].rs, err);
        ok(r == NULL && strstr(err, cases[i].expect) != NULL, "error: %s (%s)", cases[i].what, err);
        gw_router_free(r);
    }

    struct model_spec dup[] = {
        { "a", { "http://h:1" }, { "x" }, 0 },
        { "b", { "http://h:2" }, { "x" }, 0 },
        { NULL, { NULL }, { NULL }, 0 },
    };
    struct gw_router *r = router_make(dup, NULL, err);
    ok(r == NULL && strstr(err, "test.conf:2: duplicate name \"x\"") != NULL,
       "duplicate alias across models (%s)", err);
    struct model_spec dup2[] = {
        { "a", { "http://h:1" }, { NULL }, 0 },
        { "a", { "http://h:2" }, { NULL }, 0 },
        { NULL, { NULL }, { NULL }, 0 },
    };
    r = router_make(dup2, NULL, err);
    ok(r == NULL && strstr(err, "duplicate name \"a\"") != NULL, "duplicate model (%s)", err);

    /* A split may name an alias; a model without upstreams is allowed (503s). */
    struct model_spec lone[] = {
        { "a", { NULL }, { "a1" }, 0 },
        { NULL, { NULL }, { NULL }, 0 },
    };
    struct route_spec ra[] = { { "r", { "a1" }, { 1 }, 0, NULL, "a1" }, { NULL, { NULL }, { 0 }, 0, NULL, NULL } };
    r = router_make(lone, ra, err);
    ok(r != NULL && r->routes[0]->members[0].model == r->models[0] &&
       r->routes[0]->fallback == r->models[0], "split and fallback through an alias");
    ok(r != NULL && gw_model_pick_backend(r->models[0], 0, 0) == NULL &&
       gw_model_healthy(r->models[0]) == 0, "model without backends picks none");
    gw_router_free(r);
}

/* ---- SWRR ------------------------------------------------------------------------ */

static struct gw_router *split_router(const char *const *names, const int *weights, size_t n,
                                      int sticky)
{
    static const char *const all[] = { "a", "b", "c", "d" };
    struct model_spec ms[5];
    struct route_spec rs[2];
    char err[GW_CONF_ERRLEN];
    memset(ms, 0, sizeof(ms));
    memset(rs, 0, sizeof(rs));
    for (size_t i = 0; i < 4; i++) {
        ms[i].name = all[i];
        ms[i].upstreams[0] = "http://127.0.0.1:1";
    }
    rs[0].name = "split";
    for (size_t i = 0; i < n; i++) {
        rs[0].models[i] = names[i];
        rs[0].weights[i] = weights[i];
    }
    rs[0].sticky = sticky;
    rs[0].sticky_key = sticky ? "user" : NULL;
    struct gw_router *r = router_make(ms, rs, err);
    if (r == NULL)
        diag("%s", err);
    return r;
}

/* Index (0 = "a", ...) of the model <name> resolves to, or -1. */
static int pick(struct gw_router *r, const char *sticky)
{
    struct gw_resolved res;
    if (gw_router_resolve(r, "split", sticky, &res) == -1)
        return -1;
    return res.model->name[0] - 'a';
}

static void test_swrr(void)
{
    static const char *const ab[] = { "a", "b" };
    static const char *const abc[] = { "a", "b", "c" };
    int counts[4], run, max_run_a, prev;

    struct gw_router *r = split_router(ab, (const int[]){ 90, 10 }, 2, GW_STICKY_NONE);
    memset(counts, 0, sizeof(counts));
    run = max_run_a = 0;
    prev = -1;
    for (int i = 0; i < 1000; i++) {
        int k = pick(r, NULL);
        counts[k]++;
        run = k == prev ? run + 1 : 1;
        prev = k;
        if (k == 0 && run > max_run_a)
            max_run_a = run;
    }
    ok(counts[0] == 900 && counts[1] == 100, "90/10 over 1000 -> %d/%d", counts[0], counts[1]);
    ok(max_run_a <= 9, "smooth: longest run of the 90 arm is %d", max_run_a);
    gw_router_free(r);

    r = split_router(abc, (const int[]){ 5, 3, 2 }, 3, GW_STICKY_NONE);
    memset(counts, 0, sizeof(counts));
    int seq[10];
    for (int i = 0; i < 1000; i++) {
        int k = pick(r, NULL);
        if (i < 10)
            seq[i] = k;
        counts[k]++;
    }
    ok(counts[0] == 500 && counts[1] == 300 && counts[2] == 200, "5/3/2 over 1000 -> %d/%d/%d",
       counts[0], counts[1], counts[2]);
    /* nginx's sequence for 5/3/2: a b c a a b a c b a */
    static const int nginx_seq[10] = { 0, 1, 2, 0, 0, 1, 0, 2, 1, 0 };
    ok(memcmp(seq, nginx_seq, sizeof(seq)) == 0, "same sequence as nginx for 5/3/2");
    gw_router_free(r);

    r = split_router(abc, (const int[]){ 3, 0, 1 }, 3, GW_STICKY_NONE);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 400; i++)
        counts[pick(r, NULL)]++;
    ok(counts[1] == 0 && counts[0] == 300 && counts[2] == 100, "weight 0 never picked (3/0/1)");
    gw_router_free(r);

    r = split_router(ab, (const int[]){ 0, 0 }, 2, GW_STICKY_NONE);
    ok(pick(r, NULL) == -1 && pick(r, "u") == -1, "all weights 0 -> -1");
    gw_router_free(r);
}

/* ---- sticky ---------------------------------------------------------------------- */

static void test_sticky(void)
{
    static const char *const ab[] = { "a", "b" };
    static const char *const abc[] = { "a", "b", "c" };
    char user[32];
    struct gw_router *r = split_router(ab, (const int[]){ 70, 30 }, 2, GW_STICKY_FIELD);

    int first = pick(r, "alice"), same = 1;
    for (int i = 0; i < 1000; i++)
        same &= pick(r, "alice") == first;
    ok(first >= 0 && same, "same user -> same arm across 1000 calls");

    int *arm = xcalloc(10000, sizeof(int));
    int n_a = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        arm[i] = pick(r, user);
        n_a += arm[i] == 0;
    }
    ok(n_a >= 6700 && n_a <= 7300, "10000 users on 70/30: %.2f%% on the 70 arm", n_a / 100.0);

    /* Without a value, the sticky route falls back to SWRR. */
    int c0 = 0;
    for (int i = 0; i < 100; i++)
        c0 += pick(r, NULL) == 0;
    ok(c0 == 70, "sticky route without a value uses SWRR (%d/100)", c0);
    ok(pick(r, "") >= 0, "empty value is no value");

    /* Consistency: 70/30 -> 60/40 moves only a->b users, about 10%. */
    r->routes[0]->members[0].weight = 60;
    r->routes[0]->members[1].weight = 40;
    int moved = 0, wrong_way = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        int k = pick(r, user);
        if (k != arm[i]) {
            moved++;
            wrong_way += arm[i] == 1;
        }
    }
    ok(moved > 500 && moved < 2000 && wrong_way == 0,
       "70/30 -> 60/40 moves %d users, all from a to b (%d the other way)", moved, wrong_way);
    gw_router_free(r);

    /* Adding a third arm takes users from both and moves none between a and b. */
    r = split_router(abc, (const int[]){ 70, 30, 0 }, 3, GW_STICKY_HEADER);
    int *arm3 = xcalloc(10000, sizeof(int));
    for (int i = 0; i < 10000; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        arm3[i] = pick(r, user);
    }
    r->routes[0]->members[2].weight = 10;
    int to_c = 0, ab_swaps = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(user, sizeof(user), "user-%d", i);
        int k = pick(r, user);
        to_c += k == 2;
        ab_swaps += k != arm3[i] && k != 2;
    }
    ok(ab_swaps == 0 && to_c > 600 && to_c < 1400,
       "new arm of weight 10/110 takes %d users, %d moved between old arms", to_c, ab_swaps);
    gw_router_free(r);
    free(arm);
    free(arm3);
}

/* ---- backends -------------------------------------------------------------------- */

static void test_pick_backend(void)
{
    char err[GW_CONF_ERRLEN];
    struct model_spec ms[] = {
        { "m", { "http://h:1", "http://h:2", "http://h:3" }, { NULL }, 0 },
        { "lim", { "http://h:1", "http://h:2" }, { NULL }, 2 },
        { NULL, { NULL }, { NULL }, 0 },
    };
    struct gw_router *r = router_make(ms, NULL, err);
    if (!ok(r != NULL, "backend router builds"))
        return;
    struct gw_model *m = r->models[0];
    struct gw_backend **b = m->backends;

    int seen[3] = { 0, 0, 0 };
    for (int i = 0; i < 30; i++)
        seen[gw_model_pick_backend(m, 0, 1000)->index]++;
    ok(seen[0] == 10 && seen[1] == 10 && seen[2] == 10, "equal load: round robin %d/%d/%d",
       seen[0], seen[1], seen[2]);

    b[0]->in_flight = 3;
    b[1]->in_flight = 1;
    b[2]->in_flight = 2;
    ok(gw_model_pick_backend(m, 0, 1000) == b[1], "least in_flight wins");
    ok(gw_model_pick_backend(m, 1u << 1, 1000) == b[2], "tried backend skipped");
    ok(gw_model_pick_backend(m, 7, 1000) == NULL, "all tried -> NULL");
    b[0]->in_flight = b[1]->in_flight = b[2]->in_flight = 0;

    /* max_connections */
    struct gw_model *lim = r->models[1];
    lim->backends[0]->in_flight = 2;
    lim->backends[1]->in_flight = 1;
    ok(gw_model_pick_backend(lim, 0, 1000) == lim->backends[1], "backend below max_connections");
    lim->backends[1]->in_flight = 2;
    ok(gw_model_pick_backend(lim, 0, 1000) == NULL, "all at max_connections -> NULL");

    /* passive health; transitions are logged at notice */
    char path[] = "/tmp/llmux-routerlogXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    log_open(path);
    log_set_level(LOG_NOTICE);
    ok(gw_model_healthy(m) == 3, "3 healthy");
    gw_router_report(r, b[0], 0, 5000);
    ok(b[0]->state == GW_BACKEND_DOWN && b[0]->consecutive_fails == 1 &&
       b[0]->down_until_ms == 15000 && gw_model_healthy(m) == 2,
       "one failure takes it DOWN until now + 10000");
    int hit = 0;
    for (int i = 0; i < 20; i++)
        hit += gw_model_pick_backend(m, 0, 6000) == b[0];
    ok(hit == 0, "DOWN backend skipped while UP ones remain");
    ok(gw_model_pick_backend(m, 6, 14999) == NULL, "DOWN backend not probed before down_until");
    ok(gw_model_pick_backend(m, 6, 15000) == b[0] && b[0]->down_until_ms == 16000,
       "DOWN backend probed once down_until passed; next probe held 1 s");
    ok(gw_model_pick_backend(m, 6, 15500) == NULL, "no second probe during the hold");
    b[0]->down_until_ms = 15000;
    ok(gw_model_pick_backend(m, 0, 15000) == b[0],
       "an expired DOWN backend gets its probe even while UP ones remain (it can recover)");
    ok(gw_model_pick_backend(m, 0, 15100) != b[0], "then UP ones again during the hold");
    gw_router_report(r, b[0], 0, 15600);
    ok(b[0]->state == GW_BACKEND_DOWN && b[0]->consecutive_fails == 2 &&
       b[0]->down_until_ms == 25600, "failed probe: DOWN again for down_ms");
    gw_router_report(r, b[0], 1, 26000);
    ok(b[0]->state == GW_BACKEND_UP && b[0]->consecutive_fails == 0 && gw_model_healthy(m) == 3,
       "success marks it UP");
    gw_router_report(r, b[0], 1, 27000);
    log_open(NULL);
    log_set_level(LOG_ERR);
    FILE *f = fopen(path, "r");
    char buf[2048] = "";
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    unlink(path);
    const char *down = strstr(buf, "backend m#0 is down after 1 failure(s)\n");
    const char *up = strstr(buf, "backend m#0 is up again\n");
    ok(down && up && down < up && strstr(down + 20, "is down") == NULL &&
       strstr(up + 20, "is up") == NULL, "one notice per transition:\n%s", buf);
    gw_router_free(r);

    /* threshold 3 */
    struct gw_conf *c = conf_make(ms, NULL);
    c->max_fails = 3;
    r = gw_router_new(c, err);
    conf_free(c);
    b = r->models[0]->backends;
    gw_router_report(r, b[1], 0, 0);
    gw_router_report(r, b[1], 0, 0);
    ok(b[1]->state == GW_BACKEND_UP && b[1]->consecutive_fails == 2, "2 of 3 failures: still UP");
    gw_router_report(r, b[1], 1, 0);
    gw_router_report(r, b[1], 0, 0);
    gw_router_report(r, b[1], 0, 0);
    ok(b[1]->state == GW_BACKEND_UP, "a success resets the count");
    gw_router_report(r, b[1], 0, 0);
    ok(b[1]->state == GW_BACKEND_DOWN && b[1]->down_until_ms == 10000, "third in a row: DOWN");
    gw_router_free(r);
}

/* ---- suggestions ----------------------------------------------------------------- */

static void test_suggest(void)
{
    char err[GW_CONF_ERRLEN];
    struct model_spec ms[] = {
        { "qwen3", { "http://h:1" }, { "qwen3-30b" }, 0 },
        { "bge-m3", { "http://h:2" }, { NULL }, 0 },
        { "sensevoice", { "http://h:3" }, { NULL }, 0 },
        { NULL, { NULL }, { NULL }, 0 },
    };
    struct route_spec rs[] = {
        { "chat", { "qwen3" }, { 1 }, 0, NULL, NULL },
        { NULL, { NULL }, { 0 }, 0, NULL, NULL },
    };
    struct gw_router *r = router_make(ms, rs, err);
    char *s;

    s = gw_router_suggest(r, "qwen", 3);
    ok(s != NULL && str_starts_with(s, "'qwen3'") && strstr(s, "'qwen3-30b'") != NULL,
       "\"qwen\" -> %s", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "bge-m4", 3);
    ok(s != NULL && strcmp(s, "'bge-m3'") == 0, "\"bge-m4\" -> %s", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "Qwen3", 3);
    ok(s != NULL && str_starts_with(s, "'qwen3'"), "case-insensitive: \"Qwen3\" -> %s",
       s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "snesevoice", 3);
    ok(s != NULL && strcmp(s, "'sensevoice'") == 0, "transposition -> %s", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "chta", 3);
    ok(s != NULL && strcmp(s, "'chat'") == 0, "routes are suggested: %s", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "qwen", 1);
    ok(s != NULL && strcmp(s, "'qwen3'") == 0, "max 1 -> %s", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "gpt-4o-mini", 3);
    ok(s == NULL, "nonsense -> NULL (%s)", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "xy", 3);
    ok(s == NULL, "short nonsense -> NULL (%s)", s ? s : "NULL");
    free(s);
    s = gw_router_suggest(r, "q", 3);
    ok(s != NULL && strstr(s, "'qwen3'") != NULL, "a one-letter prefix suggests: %s", s ? s : "NULL");
    free(s);
    ok(gw_router_suggest(r, "qwen", 0) == NULL, "max 0 -> NULL");
    char longname[600];
    memset(longname, 'q', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    s = gw_router_suggest(r, longname, 3);
    ok(s == NULL, "very long name -> NULL");
    free(s);
    gw_router_free(r);
}

/* Load-aware picking (/load figures), the active circuit, and loading /
 * failed spawned replicas. */
static void test_pick_by_load(void)
{
    char err[GW_CONF_ERRLEN];
    struct model_spec ms[] = {
        { "m", { "http://h:1", "http://h:2" }, { NULL }, 0 },
        { NULL, { NULL }, { NULL }, 0 },
    };
    struct gw_router *r = router_make(ms, NULL, err);
    if (!ok(r != NULL, "load router builds"))
        return;
    struct gw_model *m = r->models[0];
    struct gw_backend **b = m->backends;
    struct gw_bhealth *h0 = b[0]->hs, *h1 = b[1]->hs;

    h0->has_load = h1->has_load = 1;
    h0->kv_total = 100;
    h1->kv_total = 1000;
    h0->kv_free = 50;           /* half free */
    h1->kv_free = 900;          /* 90 % free */
    ok(gw_model_pick_backend(m, 0, 1000) == b[1] && gw_model_pick_backend(m, 0, 1000) == b[1],
       "larger free KV share wins (not the larger absolute count)");
    h0->kv_free = 100;
    h1->kv_free = 1000;
    int seen[2] = { 0, 0 };
    for (int i = 0; i < 10; i++)
        seen[gw_model_pick_backend(m, 0, 1000)->index]++;
    ok(seen[0] == 5 && seen[1] == 5, "equal share: round robin %d/%d", seen[0], seen[1]);
    h1->waiting = 2;
    h1->kv_free = 1000;
    h0->kv_free = 10;
    ok(gw_model_pick_backend(m, 0, 1000) == b[0], "fewer waiting requests first, then KV");
    h1->waiting = 0;
    h0->kv_free = 100;
    b[0]->in_flight = 1;
    ok(gw_model_pick_backend(m, 0, 1000) == b[1], "equal load figures: fewer in flight");
    b[0]->in_flight = 0;
    h0->has_load = 0;
    seen[0] = seen[1] = 0;
    for (int i = 0; i < 10; i++)
        seen[gw_model_pick_backend(m, 0, 1000)->index]++;
    ok(seen[0] == 5 && seen[1] == 5, "one reports no load: round robin %d/%d", seen[0], seen[1]);
    h1->has_load = 0;

    /* a shared health struct (spawned replica): in flight counted there */
    struct gw_bhealth shared = { .up = 1 };
    b[0]->hs = &shared;
    shared.in_flight = 2;       /* requests of an older router */
    ok(gw_model_pick_backend(m, 0, 1000) == b[1], "in flight across routers counts");
    shared.in_flight = 0;

    /* active circuit: <fails> failures eject, only when checked */
    gw_bhealth_report(&shared, "m#0", 0);
    ok(shared.up == 1, "unchecked backend: passive report does not eject");
    shared.checked = 1;
    shared.fails_thr = 2;
    gw_bhealth_report(&shared, "m#0", 0);
    ok(shared.up == 1 && shared.fails == 1, "one failure of 2");
    gw_bhealth_report(&shared, "m#0", 0);
    ok(shared.up == 0, "two failures eject");
    int hit = 0;
    for (int i = 0; i < 6; i++)
        hit += gw_model_pick_backend(m, 0, 1000) == b[0];
    ok(hit == 0, "an ejected backend is not picked");
    shared.up = 1;

    /* spawned: loading replicas are waited for, failed ones are not */
    m->spawned = 1;
    struct gw_bhealth shared1 = { .up = 1 };
    b[1]->hs = &shared1;
    shared.loading = shared1.loading = 1;
    ok(gw_model_pick_backend(m, 0, 1000) == NULL && gw_model_loading(m) == 1,
       "all replicas loading: none picked, the model is loading (requests queue)");
    shared.failed = 1;
    ok(gw_model_loading(m) == 1, "one failed, one loading: still loading");
    shared1.failed = 1;
    ok(gw_model_loading(m) == 0, "all failed: not loading (503 at once)");
    shared1.failed = shared1.loading = 0;
    ok(gw_model_pick_backend(m, 0, 1000) == b[1] && gw_model_loading(m) == 0,
       "a ready replica serves");
    shared1.draining = 1;
    ok(gw_model_pick_backend(m, 0, 1000) == NULL, "a draining replica gets no new request");
    b[0]->hs = &b[0]->own;
    b[1]->hs = &b[1]->own;
    m->spawned = 0;
    gw_router_free(r);
}

static void test_supervisor_pure(void)
{
    ok(gw_backoff_next(100, 100, 1000) == 200, "backoff doubles");
    ok(gw_backoff_next(800, 100, 1000) == 1000, "backoff capped at max");
    ok(gw_backoff_next(1000, 100, 1000) == 1000, "stays at max");
    ok(gw_backoff_next(0, 100, 1000) == 100, "at least min");
    ok(gw_backoff_next(INT64_MAX / 2 + 1, 1, INT64_MAX) == INT64_MAX, "no overflow");
    int64_t t[] = { 1000, 5000, 9000, 9500 };
    int n = gw_restart_window_prune(t, 4, 10000, 2000);
    ok(n == 2 && t[0] == 9000 && t[1] == 9500, "restart window keeps the last 2 s (%d)", n);
    ok(gw_restart_window_prune(t, n, 20000, 2000) == 0, "all expire");

    int st[3] = { GW_REPLICA_READY, GW_REPLICA_READY, GW_REPLICA_READY };
    ok(strcmp(gw_model_state(st, 3, 0), "ready") == 0, "all ready");
    ok(strcmp(gw_model_state(st, 3, 1), "unloading") == 0, "retired: unloading");
    st[1] = GW_REPLICA_BACKOFF;
    ok(strcmp(gw_model_state(st, 3, 0), "degraded") == 0, "one restarting: degraded");
    st[0] = GW_REPLICA_FAILED;
    st[2] = GW_REPLICA_LOADING;
    ok(strcmp(gw_model_state(st, 3, 0), "loading") == 0, "none ready, some on the way: loading");
    st[1] = st[2] = GW_REPLICA_FAILED;
    ok(strcmp(gw_model_state(st, 3, 0), "failed") == 0, "all failed");
    ok(strcmp(gw_model_state(st, 0, 0), "loading") == 0, "no replica yet: loading");
    ok(strcmp(gw_replica_state_name(GW_REPLICA_BACKOFF), "restarting") == 0 &&
       strcmp(gw_replica_state_name(99), "?") == 0, "replica state names");
}

int main(void)
{
    log_init("test");
    log_set_level(LOG_ERR);
    test_urls();
    test_build();
    test_build_errors();
    test_swrr();
    test_sticky();
    test_pick_backend();
    test_pick_by_load();
    test_supervisor_pure();
    test_suggest();
    return tap_done();
}
