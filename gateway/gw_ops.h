/*
 * gw_ops.h -- what the admin socket asks of a running gateway (issue 5).
 * The admin code (gw_admin.c) touches gateway internals only through these
 * (plus struct gw for the event base and the log). Every function runs on the
 * gateway's event-loop thread. Returns 0 or -1 with a one-line message in
 * <err> (errlen bytes); json_t results are new references (caller decrefs).
 */
#ifndef LLMUX_GW_OPS_H
#define LLMUX_GW_OPS_H

#include <stddef.h>

#include <jansson.h>

struct gw;

/* -- implemented by the supervisor helper (gateway/gw_ops_models.c) -- */
/* Re-read the configuration file as SIGHUP does (make-before-break for
 * changed model blocks; an invalid file changes nothing and the error is
 * returned). */
int gw_op_reload(struct gw *gw, char *err, size_t errlen);
/* Start model <name> from folder <path> with block settings given as n
 * "key=value" strings (replicas=2, gpus=0|1, max_model_len=4096, ...: the
 * model block's directives). Fails if the name exists. */
int gw_op_model_load(struct gw *gw, const char *name, const char *path, int n_kv,
                     char *const *kv, char *err, size_t errlen);
/* Drain (no new requests; in-flight ones finish up to drain_timeout) and
 * stop the model's workers; the model disappears once drained. */
int gw_op_model_unload(struct gw *gw, const char *name, char *err, size_t errlen);
/* Take replica <replica> of <model> out of rotation (drain=1) or back (0). */
int gw_op_replica_drain(struct gw *gw, const char *model, int replica, int drain,
                        char *err, size_t errlen);
/* Restart a replica (also brings a `failed` model back: restart counters reset). */
int gw_op_replica_restart(struct gw *gw, const char *model, int replica, char *err,
                          size_t errlen);
/* Models with state (loading, ready, degraded, failed, unloading) and per replica:
 * pid, gpus, state, restarts, load figures, address. */
json_t *gw_op_models(struct gw *gw);
/* Every backend (spawned replicas and external upstreams): name MODEL#i, address,
 * health (up/down/draining), consecutive fails, in_flight, requests, last /load. */
json_t *gw_op_backends(struct gw *gw);

/* -- implemented by the admin-socket helper (gateway/gw_ops_runtime.c) -- */
/* Set the weight of <model> in route <route> (0 allowed: no new traffic). */
int gw_op_split_set(struct gw *gw, const char *route, const char *model, int weight,
                    char *err, size_t errlen);
/* version, pid, uptime, connections, requests in flight/total, models/routes counts */
json_t *gw_op_status(struct gw *gw);
/* request counters by model/status, bytes, failovers (from gw_metrics) */
json_t *gw_op_stats(struct gw *gw);
/* error_log level at run time: debug info notice warn error */
int gw_op_log_level(struct gw *gw, const char *level, char *err, size_t errlen);

/* -- admin socket life cycle (gateway/gw_admin.c), called from gw_main.c -- */
/* Listen on unix socket <path> (mode 0600; replaces a stale socket file). */
int gw_admin_start(struct gw *gw, const char *path, char *err, size_t errlen);
void gw_admin_stop(struct gw *gw);      /* closes it and its connections, unlinks */

#endif
