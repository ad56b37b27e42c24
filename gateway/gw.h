/*
 * gw.h -- the gateway's process-wide context, passed to every module instead
 * of globals. One event loop thread; nothing here is locked. The router is
 * reference-counted per request so a reload can swap it while old requests
 * finish on the old one.
 */
#ifndef LLMUX_GW_H
#define LLMUX_GW_H

#include <stdint.h>

#include "gw_conf.h"

struct event_base;
struct evconnlistener;
struct gw_router;
struct gw_metrics;
struct gw_access_log;
struct gw_client;
struct gw_sup;

struct gw {
    struct event_base  *base;
    char               *conf_path;
    struct gw_conf     *conf;
    struct gw_router   *router;
    struct gw_metrics  *metrics;
    struct gw_access_log *access_log;

    struct evconnlistener **listeners;
    char              **listen_unix_paths;  /* to unlink at exit */
    size_t              n_listeners;
    int                 listeners_paused;   /* worker_connections reached */

    struct gw_client   *clients;            /* doubly linked list of open connections */
    int                 n_clients;
    int                 shutting_down;
    struct event       *shutdown_timer;
    int64_t             start_time;         /* wall clock */

    struct gw_sup      *sup;                /* spawned workers (gw_supervisor.c) */
    struct gw_conf     *pending_conf;       /* reload waiting for new replicas (make-before-break) */
    struct gw_router   *pending_router;
    char               *extra_models;       /* model blocks added by hot load (conf text) */
    char              **removed;            /* models removed by hot unload */
    size_t              n_removed;
    char               *admin_path;         /* admin socket being served */
};

/* Re-read the configuration (plus hot-loaded blocks, minus unloaded models)
 * and apply it as SIGHUP does: 0, or -1 with <err> and nothing changed. */
int gw_reload_apply(struct gw *gw, char *err, size_t errlen);

#endif
