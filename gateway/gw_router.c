/*
 * gw_router.c -- the runtime routing objects built from a struct gw_conf:
 * models with their backends (parsed upstream URLs), routes with weighted
 * members, and one name index (open addressing) over models, aliases and
 * routes. Invariants: every name in the index is unique and points into
 * objects the router owns; route members and fallbacks point to models of the
 * same router; backend->pool belongs to gw_upstream.c and is never touched
 * here. The router does no I/O and keeps no global state; only the event loop
 * thread uses it.
 */
#include "gw_router.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define ROUTER_DEFAULT_FAILS     1
#define ROUTER_DEFAULT_DOWN_MS   10000
/* After a DOWN backend is picked for a probe, others wait this long before
 * probing it too: one probe at a time instead of a stampede. */
#define ROUTER_PROBE_HOLD_MS     1000
#define ROUTER_SUGGEST_MAXLEN    256

enum name_kind { NAME_MODEL = 0, NAME_ALIAS, NAME_ROUTE };

struct name_slot {
    const char *name;           /* borrowed from the model/alias/route; NULL = empty */
    int         kind;           /* enum name_kind */
    void       *target;         /* struct gw_model * or struct gw_route * */
};

struct name_index {
    struct name_slot *slots;
    size_t            cap;      /* power of two */
    size_t            n;
};

/* ---- name index ------------------------------------------------------------ */

static uint64_t name_hash(const char *name)
{
    return hash64(name, strlen(name), 0);
}

/* A new empty index able to hold <n> names at a load factor of at most 1/2. */
static struct name_index *index_new(size_t n)
{
    struct name_index *ix = xcalloc(1, sizeof(*ix));
    ix->cap = 8;
    while (ix->cap < 2 * n)
        ix->cap *= 2;
    ix->slots = xcalloc(ix->cap, sizeof(*ix->slots));
    return ix;
}

static void index_free(struct name_index *ix)
{
    if (ix == NULL)
        return;
    free(ix->slots);
    free(ix);
}

static struct name_slot *index_find(const struct name_index *ix, const char *name)
{
    if (ix == NULL || name == NULL)
        return NULL;
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)name_hash(name) & mask, probes = 0; probes < ix->cap;
         i = (i + 1) & mask, probes++) {
        struct name_slot *s = &ix->slots[i];
        if (s->name == NULL)
            return NULL;
        if (strcmp(s->name, name) == 0)
            return s;
    }
    return NULL;
}

/* Insert <name> (borrowed). Returns 0, or -1 when the name is already there.
 * The index was sized for every name up front, so it never fills. */
static int index_add(struct name_index *ix, const char *name, int kind, void *target)
{
    size_t mask = ix->cap - 1;
    size_t i = (size_t)name_hash(name) & mask;
    while (ix->slots[i].name != NULL) {
        if (strcmp(ix->slots[i].name, name) == 0)
            return -1;
        i = (i + 1) & mask;
    }
    ix->slots[i].name = name;
    ix->slots[i].kind = kind;
    ix->slots[i].target = target;
    ix->n++;
    return 0;
}

/* ---- building ---------------------------------------------------------------- */

static void set_err(char *err, const struct gw_conf_pos *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, const struct gw_conf_pos *pos, const char *fmt, ...)
{
    if (err == NULL)
        return;
    size_t off = 0;
    err[0] = '\0';
    if (pos != NULL && pos->file != NULL) {
        int n = snprintf(err, GW_CONF_ERRLEN, "%s:%d: ", pos->file, pos->line);
        off = n > 0 && n < GW_CONF_ERRLEN ? (size_t)n : 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + off, GW_CONF_ERRLEN - off, fmt, ap);
    va_end(ap);
}

/* 1 when <s> (length <n>) has no byte that cannot go into a request line or a
 * Host header: controls, space, DEL. */
static int clean_bytes(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

/* Parse the upstream <url> into the address fields of <b>. Accepts
 * "http://host[:port][/prefix]", the same without "http://", IPv6 as
 * "[addr]:port", and "unix:/path". The port defaults to 80; the prefix loses
 * its trailing slashes. Returns 0, or -1 with a reason in <why> (256 bytes). */
static int backend_parse_url(struct gw_backend *b, const char *url, char *why)
{
    const char *p = url;
    if (strncmp(p, "unix:", 5) == 0) {
        p += 5;
        if (p[0] != '/' || !clean_bytes(p, strlen(p))) {
            snprintf(why, 256, "unix socket path must be absolute and plain");
            return -1;
        }
        b->is_unix = 1;
        b->unix_path = xstrdup(p);
        b->port = 0;
        b->path_prefix = xstrdup("");
        b->host_header = xstrdup("localhost");
        return 0;
    }
    const char *scheme_end = strstr(p, "://");
    if (scheme_end != NULL) {
        if (scheme_end - p == 4 && str_ieq_n("http", p, 4)) {
            p = scheme_end + 3;
        } else {
            snprintf(why, 256, "unsupported scheme \"%.*s\" (only http:// and unix:)",
                     (int)(scheme_end - p > 32 ? 32 : scheme_end - p), p);
            return -1;
        }
    }
    size_t auth_len = strcspn(p, "/");
    const char *path = p + auth_len;
    if (memchr(p, '@', auth_len) != NULL) {
        snprintf(why, 256, "user info in upstream URLs is not supported");
        return -1;
    }
    if (strpbrk(path, "?#") != NULL) {
        snprintf(why, 256, "upstream URL must not have a query or fragment");
        return -1;
    }

    const char *host = p, *host_end, *port_str = NULL;
    int ipv6 = 0;
    if (auth_len > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', auth_len);
        if (close == NULL || close == p + 1) {
            snprintf(why, 256, "bad IPv6 address: missing ']'");
            return -1;
        }
        host = p + 1;
        host_end = close;
        ipv6 = 1;
        if (close + 1 < p + auth_len) {
            if (close[1] != ':') {
                snprintf(why, 256, "junk after ']' in upstream address");
                return -1;
            }
            port_str = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', auth_len);
        host_end = colon ? colon : p + auth_len;
        if (colon != NULL) {
            if (memchr(colon + 1, ':', (size_t)(p + auth_len - colon - 1)) != NULL) {
                snprintf(why, 256, "IPv6 addresses must be written in brackets: [::1]:8000");
                return -1;
            }
            port_str = colon + 1;
        }
    }
    if (host_end == host || !clean_bytes(host, (size_t)(host_end - host))) {
        snprintf(why, 256, "missing or bad host");
        return -1;
    }
    long port = 80;
    if (port_str != NULL) {
        const char *end = p + auth_len;
        if (port_str == end) {
            snprintf(why, 256, "empty port");
            return -1;
        }
        port = 0;
        for (const char *c = port_str; c < end; c++) {
            if (!isdigit((unsigned char)*c) || port > 65535) {
                snprintf(why, 256, "bad port");
                return -1;
            }
            port = port * 10 + (*c - '0');
        }
        if (port < 1 || port > 65535) {
            snprintf(why, 256, "port out of range");
            return -1;
        }
    }
    size_t path_len = strlen(path);
    while (path_len > 0 && path[path_len - 1] == '/')
        path_len--;
    if (!clean_bytes(path, path_len)) {
        snprintf(why, 256, "bad byte in path prefix");
        return -1;
    }
    b->is_unix = 0;
    b->host = xstrndup(host, (size_t)(host_end - host));
    b->port = (int)port;
    b->path_prefix = xstrndup(path, path_len);
    b->host_header = ipv6 ? xasprintf("[%s]:%d", b->host, b->port)
                          : xasprintf("%s:%d", b->host, b->port);
    return 0;
}

static void backend_free(struct gw_backend *b)
{
    if (b == NULL)
        return;
    free(b->name);
    free(b->url);
    free(b->host);
    free(b->unix_path);
    free(b->path_prefix);
    free(b->host_header);
    free(b);
}

static void model_free(struct gw_model *m)
{
    if (m == NULL)
        return;
    if (m->sup_release != NULL && m->sup_inst != NULL)
        m->sup_release(m->sup_inst);    /* the backends' health may live there */
    for (size_t i = 0; i < m->n_backends; i++)
        backend_free(m->backends[i]);
    free(m->backends);
    for (size_t i = 0; i < m->n_aliases; i++)
        free(m->aliases[i]);
    free(m->aliases);
    free(m->name);
    free(m);
}

static void route_free(struct gw_route *rt)
{
    if (rt == NULL)
        return;
    free(rt->name);
    free(rt->members);
    free(rt->sticky_key);
    free(rt);
}

/* A new model from <mc>, with http-level defaults from <conf> for values left
 * unset (hand-built confs in tests). NULL with <err> set on a bad upstream. */
static struct gw_model *model_build(const struct gw_conf *conf, const struct gw_model_conf *mc,
                                    int64_t created, char *err)
{
    struct gw_model *m = xcalloc(1, sizeof(*m));
    char why[256];

    m->name = xstrdup(mc->name);
    m->task = mc->task >= 0 ? mc->task : GW_TASK_CHAT;
    m->max_connections = mc->max_connections > 0 ? mc->max_connections : 0;
    m->timeout_ms = mc->timeout_ms >= 0 ? mc->timeout_ms
                    : conf->timeout_ms >= 0 ? conf->timeout_ms : 600000;
    m->connect_timeout_ms = mc->connect_timeout_ms >= 0 ? mc->connect_timeout_ms
                            : conf->connect_timeout_ms >= 0 ? conf->connect_timeout_ms : 5000;
    m->keepalive = mc->keepalive >= 0 ? mc->keepalive
                   : conf->upstream_keepalive >= 0 ? conf->upstream_keepalive : 32;
    m->created = created;
    m->spawned = mc->path != NULL;
    m->sup_inst = mc->sup_inst;
    m->health = mc->health;
    m->queue_timeout_ms = mc->queue_timeout_ms > 0 ? mc->queue_timeout_ms : 0;
    m->aliases = xcalloc(mc->n_aliases, sizeof(char *));
    for (size_t i = 0; i < mc->n_aliases; i++)
        m->aliases[m->n_aliases++] = xstrdup(mc->aliases[i]);
    m->backends = xcalloc(mc->n_upstreams, sizeof(struct gw_backend *));
    for (size_t i = 0; i < mc->n_upstreams; i++) {
        struct gw_backend *b = xcalloc(1, sizeof(*b));
        m->backends[m->n_backends++] = b;
        b->name = xasprintf("%s#%zu", mc->name, i);
        b->url = xstrdup(mc->upstreams[i]);
        b->model = m;
        b->index = (int)i;
        b->state = GW_BACKEND_UP;
        b->own.up = 1;
        b->own.fails_thr = mc->health.fails > 0 ? mc->health.fails : 3;
        b->own.passes_thr = mc->health.passes > 0 ? mc->health.passes : 2;
        b->hs = &b->own;
        if (backend_parse_url(b, mc->upstreams[i], why) == -1) {
            set_err(err, &mc->pos, "invalid upstream \"%s\" of model \"%s\": %s",
                    mc->upstreams[i], mc->name, why);
            goto err;
        }
    }
    return m;
err:
    model_free(m);
    return NULL;
}

/* The model a split or fallback names: a model, or an alias of one. */
static struct gw_model *lookup_model_or_alias(const struct name_index *ix, const char *name)
{
    struct name_slot *s = index_find(ix, name);
    if (s == NULL || s->kind == NAME_ROUTE)
        return NULL;
    return s->target;
}

static struct gw_route *route_build(const struct name_index *ix, const struct gw_route_conf *rc,
                                    char *err)
{
    struct gw_route *rt = xcalloc(1, sizeof(*rt));
    rt->name = xstrdup(rc->name);
    rt->sticky = rc->sticky;
    rt->sticky_key = xstrdup(rc->sticky_key);
    if (rt->sticky != GW_STICKY_NONE && (rt->sticky_key == NULL || rt->sticky_key[0] == '\0')) {
        set_err(err, &rc->pos, "route \"%s\": sticky needs a header or field name", rc->name);
        goto err;
    }
    if (rc->n_splits == 0) {
        set_err(err, &rc->pos, "route \"%s\" has no split", rc->name);
        goto err;
    }
    rt->members = xcalloc(rc->n_splits, sizeof(*rt->members));
    for (size_t i = 0; i < rc->n_splits; i++) {
        const struct gw_split_conf *sc = &rc->splits[i];
        struct gw_model *m = lookup_model_or_alias(ix, sc->model);
        if (m == NULL) {
            set_err(err, sc->pos.file ? &sc->pos : &rc->pos,
                    "route \"%s\": unknown model \"%s\" in split", rc->name, sc->model);
            goto err;
        }
        if (sc->weight < 0) {
            set_err(err, sc->pos.file ? &sc->pos : &rc->pos,
                    "route \"%s\": negative weight for \"%s\"", rc->name, sc->model);
            goto err;
        }
        /* One arm per model: rendezvous hashing seeds by model name, and two
         * arms of one model would be one arm with the summed weight anyway. */
        for (size_t j = 0; j < rt->n_members; j++) {
            if (rt->members[j].model == m) {
                set_err(err, sc->pos.file ? &sc->pos : &rc->pos,
                        "route \"%s\": model \"%s\" is split twice", rc->name, m->name);
                goto err;
            }
        }
        rt->members[rt->n_members].model = m;
        rt->members[rt->n_members].weight = sc->weight;
        rt->members[rt->n_members].current = 0;
        rt->n_members++;
    }
    if (rc->fallback != NULL) {
        rt->fallback = lookup_model_or_alias(ix, rc->fallback);
        if (rt->fallback == NULL) {
            set_err(err, &rc->pos, "route \"%s\": unknown fallback model \"%s\"",
                    rc->name, rc->fallback);
            goto err;
        }
    }
    return rt;
err:
    route_free(rt);
    return NULL;
}

struct gw_router *gw_router_new(const struct gw_conf *conf, char *err)
{
    struct gw_router *r = xcalloc(1, sizeof(*r));
    struct name_index *ix;
    size_t n_names = conf->n_models + conf->n_routes;
    int64_t created = wall_time_s();

    if (err != NULL)
        err[0] = '\0';
    for (size_t i = 0; i < conf->n_models; i++)
        n_names += conf->models[i].n_aliases;
    ix = index_new(n_names);
    r->index = ix;
    r->fail_threshold = conf->max_fails > 0 ? conf->max_fails : ROUTER_DEFAULT_FAILS;
    r->down_ms = conf->fail_timeout_ms > 0 ? conf->fail_timeout_ms : ROUTER_DEFAULT_DOWN_MS;

    r->models = xcalloc(conf->n_models, sizeof(struct gw_model *));
    for (size_t i = 0; i < conf->n_models; i++) {
        const struct gw_model_conf *mc = &conf->models[i];
        if (mc->name == NULL || mc->name[0] == '\0') {
            set_err(err, &mc->pos, "model without a name");
            goto err;
        }
        struct gw_model *m = model_build(conf, mc, created, err);
        if (m == NULL)
            goto err;
        r->models[r->n_models++] = m;
        if (index_add(ix, m->name, NAME_MODEL, m) == -1) {
            set_err(err, &mc->pos, "duplicate name \"%s\"", m->name);
            goto err;
        }
        for (size_t a = 0; a < m->n_aliases; a++) {
            if (index_add(ix, m->aliases[a], NAME_ALIAS, m) == -1) {
                set_err(err, &mc->pos, "duplicate name \"%s\" (alias of \"%s\")",
                        m->aliases[a], m->name);
                goto err;
            }
        }
    }
    r->routes = xcalloc(conf->n_routes, sizeof(struct gw_route *));
    for (size_t i = 0; i < conf->n_routes; i++) {
        const struct gw_route_conf *rc = &conf->routes[i];
        if (rc->name == NULL || rc->name[0] == '\0') {
            set_err(err, &rc->pos, "route without a name");
            goto err;
        }
        struct gw_route *rt = route_build(ix, rc, err);
        if (rt == NULL)
            goto err;
        r->routes[r->n_routes++] = rt;
    }
    /* Routes enter the index only now, so a split cannot name a route. */
    for (size_t i = 0; i < r->n_routes; i++) {
        if (index_add(ix, r->routes[i]->name, NAME_ROUTE, r->routes[i]) == -1) {
            set_err(err, &conf->routes[i].pos, "duplicate name \"%s\"", r->routes[i]->name);
            goto err;
        }
    }
    return r;
err:
    gw_router_free(r);
    return NULL;
}

void gw_router_free(struct gw_router *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_models; i++)
        model_free(r->models[i]);
    free(r->models);
    for (size_t i = 0; i < r->n_routes; i++)
        route_free(r->routes[i]);
    free(r->routes);
    index_free(r->index);
    free(r);
}

/* ---- lookups and route picks ------------------------------------------------- */

struct gw_model *gw_router_find_model(struct gw_router *r, const char *name)
{
    struct name_slot *s = index_find(r->index, name);
    return s != NULL && s->kind == NAME_MODEL ? s->target : NULL;
}

struct gw_route *gw_router_find_route(struct gw_router *r, const char *name)
{
    struct name_slot *s = index_find(r->index, name);
    return s != NULL && s->kind == NAME_ROUTE ? s->target : NULL;
}

/* Smooth weighted round robin, as nginx's ngx_http_upstream_get_peer: every
 * member gains its weight, the largest current wins and pays the total back.
 * Returns the member index, or -1 when every weight is 0. */
static int route_pick_swrr(struct gw_route *rt)
{
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < rt->n_members; i++) {
        struct gw_route_member *mb = &rt->members[i];
        if (mb->weight <= 0) {
            mb->current = 0;    /* re-enabled later, it starts afresh */
            continue;
        }
        mb->current += mb->weight;
        total += mb->weight;
        if (best == -1 || mb->current > rt->members[best].current)
            best = (int)i;
    }
    if (best != -1)
        rt->members[best].current -= total;
    return best;
}

/* Weighted rendezvous hashing of <value>: each member scores
 * -weight / ln(u), u = hash(value, seed = hash(model name)) in (0,1); the
 * highest score wins. A value keeps its member while weights are unchanged,
 * and a weight change moves only the values the change must move. Returns the
 * member index, or -1 when every weight is 0. */
static int route_pick_sticky(const struct gw_route *rt, const char *value)
{
    size_t len = strlen(value);
    double best_score = 0.0;
    int best = -1;
    for (size_t i = 0; i < rt->n_members; i++) {
        const struct gw_route_member *mb = &rt->members[i];
        if (mb->weight <= 0)
            continue;
        uint64_t seed = name_hash(mb->model->name);
        uint64_t h = hash64(value, len, seed);
        double u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0); /* 2^53 */
        double score = -(double)mb->weight / log(u);
        if (best == -1 || score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

int gw_router_resolve(struct gw_router *r, const char *name, const char *sticky_value,
                      struct gw_resolved *out)
{
    memset(out, 0, sizeof(*out));
    struct name_slot *s = index_find(r->index, name);
    if (s == NULL)
        return -1;
    if (s->kind == NAME_MODEL || s->kind == NAME_ALIAS) {
        out->model = s->target;
        out->kind = s->kind == NAME_MODEL ? "model" : "alias";
        return 0;
    }
    struct gw_route *rt = s->target;
    int i = rt->sticky != GW_STICKY_NONE && sticky_value != NULL && sticky_value[0] != '\0'
                ? route_pick_sticky(rt, sticky_value)
                : route_pick_swrr(rt);
    if (i < 0)
        return -1;
    out->model = rt->members[i].model;
    out->route = rt;
    out->kind = "route";
    return 0;
}

/* ---- suggestions ------------------------------------------------------------ */

/* Optimal string alignment distance (Damerau-Levenshtein with adjacent
 * transpositions), ASCII case-insensitive. Both lengths are at most
 * ROUTER_SUGGEST_MAXLEN. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t *row0 = xcalloc(lb + 1, sizeof(size_t));   /* i - 2 */
    size_t *row1 = xcalloc(lb + 1, sizeof(size_t));   /* i - 1 */
    size_t *row2 = xcalloc(lb + 1, sizeof(size_t));   /* i */
    for (size_t j = 0; j <= lb; j++)
        row1[j] = j;
    for (size_t i = 1; i <= la; i++) {
        row2[0] = i;
        int ca = tolower((unsigned char)a[i - 1]);
        for (size_t j = 1; j <= lb; j++) {
            int cb = tolower((unsigned char)b[j - 1]);
            size_t cost = ca != cb;
            size_t d = row1[j] + 1;
            if (row2[j - 1] + 1 < d)
                d = row2[j - 1] + 1;
            if (row1[j - 1] + cost < d)
                d = row1[j - 1] + cost;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && row0[j - 2] + 1 < d)
                d = row0[j - 2] + 1;
            row2[j] = d;
        }
        size_t *t = row0;
        row0 = row1;
        row1 = row2;
        row2 = t;
    }
    size_t d = row1[lb];
    free(row0);
    free(row1);
    free(row2);
    return d;
}

/* 1 when <needle> occurs in <hay>, ASCII case-insensitive. */
static int contains_ci(const char *hay, size_t lh, const char *needle, size_t ln)
{
    if (ln == 0 || ln > lh)
        return 0;
    for (size_t i = 0; i + ln <= lh; i++)
        if (str_ieq_n(needle, hay + i, ln))
            return 1;
    return 0;
}

struct suggestion {
    const char *name;
    size_t      score;          /* lower is closer */
    size_t      order;          /* declaration order, for stable ties */
};

static int suggestion_cmp(const void *pa, const void *pb)
{
    const struct suggestion *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* Score <cand> against <name>: edit distance when it is at most
 * max(2, len/3) and smaller than both lengths (so "ab" does not suggest "cd"),
 * else 1000 + length difference when one contains the other (3 characters at
 * least), else 2000 + length difference when <name> is a prefix of <cand>,
 * else SIZE_MAX (not close). */
static size_t suggest_score(const char *name, size_t ln, const char *cand)
{
    size_t lc = strlen(cand);
    if (ln <= ROUTER_SUGGEST_MAXLEN && lc <= ROUTER_SUGGEST_MAXLEN) {
        size_t limit = ln / 3 > 2 ? ln / 3 : 2;
        size_t d = edit_distance(name, ln, cand, lc);
        if (d <= limit && d < ln && d < lc)
            return d;
    }
    if ((ln >= 3 && contains_ci(cand, lc, name, ln)) || (lc >= 3 && contains_ci(name, ln, cand, lc)))
        return 1000 + (lc > ln ? lc - ln : ln - lc);
    if (ln > 0 && ln < lc && str_ieq_prefix(cand, name, ln))
        return 2000 + (lc - ln);        /* a short prefix: "m" -> "m1" */
    return SIZE_MAX;
}

static void suggest_consider(struct suggestion *s, size_t *n, const char *name, size_t ln,
                             const char *cand)
{
    size_t score = suggest_score(name, ln, cand);
    if (score == SIZE_MAX)
        return;
    s[*n].name = cand;
    s[*n].score = score;
    s[*n].order = *n;
    (*n)++;
}

char *gw_router_suggest(struct gw_router *r, const char *name, int max)
{
    if (name == NULL || max <= 0)
        return NULL;
    struct name_index *ix = r->index;
    struct suggestion *s = xcalloc(ix->n + 1, sizeof(*s));
    size_t n = 0, ln = strlen(name);
    char *out = NULL;

    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        suggest_consider(s, &n, name, ln, m->name);
        for (size_t a = 0; a < m->n_aliases; a++)
            suggest_consider(s, &n, name, ln, m->aliases[a]);
    }
    for (size_t i = 0; i < r->n_routes; i++)
        suggest_consider(s, &n, name, ln, r->routes[i]->name);
    if (n == 0)
        goto done;
    qsort(s, n, sizeof(*s), suggestion_cmp);
    if (n > (size_t)max)
        n = (size_t)max;
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(s[i].name) + 4;
    out = xmalloc(len);
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(out + off, len - off, "%s'%s'", i ? ", " : "", s[i].name);
done:
    free(s);
    return out;
}

/* ---- backends ---------------------------------------------------------------- */

/* Eligibility of <b> for a new attempt at <now>: 0 not eligible, 1 UP, 2 DOWN
 * with its hold-down passed (a probe). */
static int backend_eligibility(const struct gw_backend *b, const struct gw_model *m,
                               uint64_t tried_mask, int64_t now)
{
    if (tried_mask & (1ULL << ((unsigned)b->index & 63)))
        return 0;
    if (m->max_connections > 0 && b->in_flight >= m->max_connections)
        return 0;
    if (b->hs->loading || b->hs->draining || !b->hs->up)
        return 0;
    if (b->state == GW_BACKEND_UP)
        return 2;
    return now >= b->down_until_ms ? 1 : 0;
}

/* Requests in flight on <b>: every router's for a spawned replica (its
 * health struct is shared across reloads), this router's otherwise. */
static int backend_busy(const struct gw_backend *b)
{
    return b->hs != &b->own ? b->hs->in_flight : b->in_flight;
}

/* -1 when <a> is the better pick than <b> by load: fewer waiting requests,
 * then a larger free share of the KV cache, then fewer requests in flight
 * (across routers for spawned replicas); 0 when equal. */
static int backend_load_cmp(const struct gw_backend *a, const struct gw_backend *b)
{
    const struct gw_bhealth *x = a->hs, *y = b->hs;
    if (x->has_load && y->has_load) {
        int64_t wx = x->waiting - x->done_since_load, wy = y->waiting - y->done_since_load;
        wx = wx < 0 ? 0 : wx;
        wy = wy < 0 ? 0 : wy;
        if (wx != wy)
            return wx < wy ? -1 : 1;
        /* free share of the KV cache (backends differ in size): x_free/x_total
         * against y_free/y_total, cross-multiplied; absolute when a total is 0 */
        int64_t fx = x->kv_free, fy = y->kv_free;
        if (x->kv_total > 0 && y->kv_total > 0) {
            fx = x->kv_free * y->kv_total;
            fy = y->kv_free * x->kv_total;
        }
        if (fx != fy)
            return fx > fy ? -1 : 1;
    }
    int ia = backend_busy(a), ib = backend_busy(b);
    if (ia != ib)
        return ia < ib ? -1 : 1;
    return 0;
}

/* Pick: eligible backends (see backend_eligibility), a due probe first,
 * least loaded (backend_load_cmp), round robin among equals starting at
 * m->rr_next. */
struct gw_backend *gw_model_pick_backend(struct gw_model *m, uint64_t tried_mask, int64_t now)
{
    struct gw_backend *best = NULL;
    int best_class = 0;
    size_t n = m->n_backends;
    if (n == 0)
        return NULL;
    size_t start = (size_t)(m->rr_next % n);
    for (size_t k = 0; k < n; k++) {
        struct gw_backend *b = m->backends[(start + k) % n];
        int cls = backend_eligibility(b, m, tried_mask, now);
        if (cls == 0)
            continue;
        if (best == NULL || cls < best_class ||
            (cls == best_class && backend_load_cmp(b, best) < 0)) {
            best = b;
            best_class = cls;
        }
    }
    if (best == NULL)
        return NULL;
    m->rr_next++;
    if (best->state == GW_BACKEND_DOWN)
        best->down_until_ms = now + ROUTER_PROBE_HOLD_MS;
    return best;
}

void gw_bhealth_report(struct gw_bhealth *hs, const char *name, int ok)
{
    if (!hs->checked)
        return;
    if (ok) {
        hs->fails = 0;
        return;
    }
    hs->passes = 0;
    if (hs->fails < INT_MAX)
        hs->fails++;
    if (hs->up && hs->fails >= hs->fails_thr) {
        hs->up = 0;
        log_warn("backend %s ejected after %d failure(s)", name, hs->fails);
    }
}

int gw_model_loading(const struct gw_model *m)
{
    if (!m->spawned)
        return 0;
    int loading = 0;
    for (size_t i = 0; i < m->n_backends; i++) {
        const struct gw_bhealth *h = m->backends[i]->hs;
        if (!h->loading && !h->draining && h->up)
            return 0;
        loading |= h->loading && !h->failed;
    }
    return loading;
}

void gw_router_report(struct gw_router *r, struct gw_backend *b, int ok, int64_t now)
{
    gw_bhealth_report(b->hs, b->name, ok);
    if (ok) {
        if (b->state == GW_BACKEND_DOWN)
            log_notice("backend %s is up again", b->name);
        b->consecutive_fails = 0;
        b->state = GW_BACKEND_UP;
        b->down_until_ms = 0;
        return;
    }
    if (b->consecutive_fails < INT_MAX)
        b->consecutive_fails++;
    if (b->consecutive_fails < r->fail_threshold)
        return;
    if (b->state == GW_BACKEND_UP)
        log_notice("backend %s is down after %d failure(s)", b->name, b->consecutive_fails);
    b->state = GW_BACKEND_DOWN;
    b->down_until_ms = now + r->down_ms;
}

size_t gw_model_healthy(const struct gw_model *m)
{
    size_t up = 0;
    for (size_t i = 0; i < m->n_backends; i++)
        up += m->backends[i]->state == GW_BACKEND_UP && m->backends[i]->hs->up &&
              !m->backends[i]->hs->loading && !m->backends[i]->hs->draining;
    return up;
}
