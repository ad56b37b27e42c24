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
};

#endif
