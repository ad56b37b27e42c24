/*
 * gw_supervisor.h -- the worker processes of spawned models ("path" blocks):
 * fork+exec of each replica with its GPUs, socket, flags and log; SIGCHLD
 * reaping, restarts with exponential backoff, `failed` after max_restarts in
 * a window; readiness and health through gw_health probers; drain and stop
 * (SIGTERM, then SIGKILL after a bound). An instance is one model block's
 * workers; reloads keep instances whose block did not change. Does not
 * route or proxy: the router's backends point at the replicas' health.
 */
#ifndef LLMUX_GW_SUPERVISOR_H
#define LLMUX_GW_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct gw;
struct gw_conf;
struct gw_router;
struct gw_sup;

enum gw_replica_state {
    GW_REPLICA_STOPPED = 0, GW_REPLICA_LOADING, GW_REPLICA_READY, GW_REPLICA_BACKOFF,
    GW_REPLICA_FAILED, GW_REPLICA_STOPPING
};

struct gw_sup *gw_sup_new(struct gw *gw);
/* SIGTERM every worker, SIGKILL what is left after a bound, reap, free. */
void gw_sup_free(struct gw_sup *sup);

/* For each "path" model of <conf>: reuse the running instance with the same
 * block (signature), or make a new one (not started); fills the model's
 * upstreams with its replicas' sockets and mc->sup_inst. 0, or -1 + <err>. */
int gw_sup_prepare(struct gw_sup *sup, struct gw_conf *conf, char *err, size_t errlen);
/* <conf> was rejected after prepare: forget the instances it made. */
void gw_sup_abort(struct gw_sup *sup, struct gw_conf *conf);
/* Start the instances of <conf> not running yet. */
void gw_sup_start(struct gw_sup *sup, struct gw_conf *conf);
/* Point the spawned backends of <r> at their replicas' health. */
void gw_sup_attach(struct gw_sup *sup, struct gw_router *r);
/* 1 when every instance of <conf> that <old> does not use is ready (or failed). */
int gw_sup_settled(struct gw_sup *sup, struct gw_conf *conf, struct gw_conf *old);
/* The name of a model whose replacement instance in <conf> (a block of
 * <old> changed) has every replica failed, or NULL: a reload waiting for it
 * should give up and keep <old>. */
const char *gw_sup_replacement_failed(struct gw_sup *sup, struct gw_conf *conf,
                                      struct gw_conf *old);
/* Drain (up to each block's drain_timeout) and stop every instance that
 * neither <a> nor <b> (may be NULL) uses. */
void gw_sup_retire_unused(struct gw_sup *sup, struct gw_conf *a, struct gw_conf *b);
/* Called whenever a replica becomes ready or failed (pending reloads check here). */
void gw_sup_set_ready_hook(struct gw_sup *sup, void (*fn)(struct gw *gw));

/* Model state ("loading", "ready", "degraded", "failed", "unloading") and
 * replicas for /v1/models and the admin socket; NULL when <name> is not a
 * spawned model of the current configuration. */
json_t *gw_sup_model_json(struct gw_sup *sup, struct gw_conf *conf, const char *name);
/* Operator actions on the current instance of <model>. */
int gw_sup_replica_drain(struct gw_sup *sup, struct gw_conf *conf, const char *model, int replica,
                         int drain, char *err, size_t errlen);
int gw_sup_replica_restart(struct gw_sup *sup, struct gw_conf *conf, const char *model,
                           int replica, char *err, size_t errlen);
const char *gw_replica_state_name(int state);

/* Pure parts, for tests. The restart delay after <cur>: doubled, within
 * [min, max]. */
int64_t gw_backoff_next(int64_t cur, int64_t min, int64_t max);
/* Keep the restart times of <times> (n) within <window_ms> before <now>, in
 * order; returns how many are left (a replica fails when that reaches
 * max_restarts at its next exit). */
int gw_restart_window_prune(int64_t *times, int n, int64_t now, int64_t window_ms);
/* A spawned model's state from its replicas' states (enum gw_replica_state,
 * n of them): "unloading" when retired, "ready" when all are, "degraded"
 * when some are, "loading" while any is on its way, else "failed". */
const char *gw_model_state(const int *states, int n, int retired);

#endif
