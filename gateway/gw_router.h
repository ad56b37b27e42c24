/*
 * gw_router.h -- maps a request's "model" to a backend. Names resolve through
 * one namespace: model, alias (-> model) or route (-> a member model picked by
 * smooth weighted round robin, or sticky by weighted rendezvous hashing on a
 * header or body field). Within a model it picks a healthy backend, least
 * loaded first. The router owns the runtime model/backend/route objects built
 * from a struct gw_conf; it does no I/O (gw_upstream.c owns connections, and
 * keeps its per-backend pool behind backend->pool).
 */
#ifndef LLMUX_GW_ROUTER_H
#define LLMUX_GW_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "gw_conf.h"

struct gw_pool;                 /* gw_upstream.c */
struct gw_model;

enum gw_backend_state { GW_BACKEND_UP = 0, GW_BACKEND_DOWN };

/* Active health and load of one backend (gw_health.c writes it). A spawned
 * replica keeps its own across reloads (the supervisor's replica owns it and
 * the backend points at it); an external backend uses the one embedded in it. */
struct gw_bhealth {
    int     checked;            /* active checks run on it */
    int     up;                 /* circuit closed; 0 = ejected until <passes> good checks */
    int     loading;            /* spawned replica not serving (starting, loading, restarting, failed) */
    int     failed;             /* spawned replica down until an operator acts (not worth waiting for) */
    int     draining;           /* out of rotation by the operator */
    int     fails, passes;      /* consecutive failed / good checks */
    int     fails_thr, passes_thr;
    int     has_load;           /* /load answered */
    int64_t waiting, running, kv_free, kv_total;
    int     in_flight;          /* across routers (spawned replicas) */
    int     done_since_load;    /* our requests on it that ended since the last /load:
                                 * they cannot still be among its "waiting" */
};

struct gw_backend {
    char   *name;               /* "MODEL#i" */
    char   *url;                /* as configured: "http://h:p/prefix" or "unix:/path" */
    /* parsed address */
    int     is_unix;
    char   *host;               /* NULL for unix */
    int     port;
    char   *unix_path;          /* NULL for tcp */
    char   *path_prefix;        /* "" or "/prefix" (no trailing slash) */
    char   *host_header;        /* "host:port" or "localhost" for unix */
    struct gw_model *model;     /* borrowed back pointer */
    int     index;              /* i in MODEL#i */

    /* health (passive, see gw_router_report) */
    int     state;              /* enum gw_backend_state */
    int     consecutive_fails;
    int64_t down_until_ms;      /* when DOWN: next time one probe request may try it */
    /* load */
    int     in_flight;          /* requests being served now */
    uint64_t requests;          /* total requests sent */
    uint64_t connect_errors;

    struct gw_pool *pool;       /* owned by gw_upstream.c; NULL until used */

    struct gw_bhealth own;      /* external backends */
    struct gw_bhealth *hs;      /* &own, or the spawned replica's */
    void   *replica;            /* struct gw_sup_replica * of a spawned model, or NULL */
};

struct gw_model {
    char   *name;
    int     task;               /* enum gw_task */
    struct gw_backend **backends;
    size_t  n_backends;
    int     max_connections;    /* per backend, 0 = unlimited */
    int64_t timeout_ms;
    int64_t connect_timeout_ms;
    int     keepalive;
    char  **aliases;            /* borrowed copies owned by the model */
    size_t  n_aliases;
    uint64_t rr_next;           /* round-robin cursor among equally loaded backends */
    int64_t created;            /* wall time when the router was built (for /v1/models) */
    int     spawned;            /* backends are workers the gateway runs ("path") */
    struct gw_health_conf health;   /* active checks (external backends: when set) */
    int64_t queue_timeout_ms;   /* wait for a loading replica */
    void   *sup_inst;           /* struct gw_sup_inst * of a spawned model, or NULL */
    void  (*sup_release)(void *sup_inst);   /* called when the model is freed (set by gw_sup_attach) */
};

struct gw_route_member {
    struct gw_model *model;
    int     weight;
    int64_t current;            /* smooth weighted round robin state */
};

struct gw_route {
    char   *name;
    struct gw_route_member *members;
    size_t  n_members;
    int     sticky;             /* enum gw_sticky */
    char   *sticky_key;
    struct gw_model *fallback;  /* or NULL */
};

struct gw_router {
    struct gw_model **models;
    size_t  n_models;
    struct gw_route **routes;
    size_t  n_routes;
    /* name index: models, aliases and routes */
    void   *index;              /* private hash table */
    int     fail_threshold;     /* consecutive failures that take a backend DOWN; default 1 */
    int64_t down_ms;            /* how long a DOWN backend is skipped before a probe; default 10000 */
    /* lifetime across reloads (gw_main.c / gw_proxy.c): requests in flight
     * hold a reference; a retired router is freed when the last one ends */
    int     refs;
    int     retired;
    struct gw_prober **probers; /* active checks of external backends (gw_health.c) */
    size_t  n_probers;
};

/* Build the runtime objects from <conf> (which must have passed gw_conf_load).
 * Returns a new router (free with gw_router_free) or NULL with a message in
 * <err> (GW_CONF_ERRLEN bytes). The router copies what it needs from <conf>. */
struct gw_router *gw_router_new(const struct gw_conf *conf, char *err);
void gw_router_free(struct gw_router *r);

/* What a name resolves to. */
struct gw_resolved {
    struct gw_model *model;     /* the model chosen (after alias/route/split) */
    struct gw_route *route;     /* non-NULL when the name was a route */
    const char *kind;           /* "model", "alias" or "route" */
};

/* Resolve <name>. For a route, picks a member: when the route is sticky and
 * <sticky_value> is non-NULL, by weighted rendezvous hashing of it (one value
 * keeps one arm while weights are unchanged), else by smooth weighted round
 * robin (90/10 over 1000 picks gives exactly 900/100). Members of weight 0 are
 * never picked. Returns 0, or -1 when the name is unknown (or every weight is 0). */
int gw_router_resolve(struct gw_router *r, const char *name, const char *sticky_value,
                      struct gw_resolved *out);

/* Borrowed model by exact model name (not alias/route), or NULL. */
struct gw_model *gw_router_find_model(struct gw_router *r, const char *name);
struct gw_route *gw_router_find_route(struct gw_router *r, const char *name);

/* Up to <max> known names closest to <name> (edit distance, then prefix), as a
 * new string "'a', 'b', 'c'" (caller frees), or NULL when none is close. */
char *gw_router_suggest(struct gw_router *r, const char *name, int max);

/* Pick a backend of <m> for a new attempt: a DOWN one whose down_until_ms has
 * passed first (one probe request), then UP backends, skipping those whose
 * index is set in <tried_mask> and those at max_connections; least in_flight
 * wins, round robin among equals. Returns a borrowed backend or NULL. */
struct gw_backend *gw_model_pick_backend(struct gw_model *m, uint64_t tried_mask, int64_t now);

/* Passive health: report the outcome of an attempt. <ok> 1 for a response that
 * was not a connect failure/502/503/504; 0 otherwise. A failure count reaching
 * r->fail_threshold marks the backend DOWN for r->down_ms; a success marks it UP. */
void gw_router_report(struct gw_router *r, struct gw_backend *b, int ok, int64_t now);

/* 1 when no backend of <m> can serve now but one of its spawned replicas is
 * on its way (starting, loading, restarting): requests may wait for it. */
int gw_model_loading(const struct gw_model *m);

/* Passive health count into the active circuit (fails -> ejected). */
void gw_bhealth_report(struct gw_bhealth *hs, const char *name, int ok);

/* Number of backends of <m> that are UP. */
size_t gw_model_healthy(const struct gw_model *m);

#endif
