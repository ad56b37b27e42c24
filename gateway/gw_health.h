/*
 * gw_health.h -- active health checks: a prober per backend asks GET /health
 * (and GET /load for the load figures) every interval over its own short
 * connection, and keeps the backend's struct gw_bhealth (circuit: <fails>
 * bad checks eject, <passes> good ones re-admit). Never runs a completion:
 * checks cost no tokens (llmux-worker runs its engine's warm-up step before
 * it listens, so its /health is 200 once it accepts connections). Knows
 * nothing of processes (gw_supervisor.c).
 */
#ifndef LLMUX_GW_HEALTH_H
#define LLMUX_GW_HEALTH_H

#include <stdint.h>

#include "gw_conf.h"

struct event_base;
struct gw_bhealth;
struct gw_router;
struct gw_prober;

/* Called after each check with ok = /health answered 200. */
typedef void (*gw_prober_fn)(void *arg, int ok);

/* Probe <url> ("unix:/path" or "http://host:port") every h->interval_ms
 * (every 200 ms while hs->loading), writing <hs>. While hs->loading, any
 * answer but 200 (or none) is "still loading", not a failure. */
struct gw_prober *gw_prober_new(struct event_base *base, const char *url, const char *name,
                                struct gw_bhealth *hs, const struct gw_health_conf *h,
                                gw_prober_fn cb, void *arg);
/* Check again now (e.g. a replica was just started). */
void gw_prober_kick(struct gw_prober *p);
void gw_prober_free(struct gw_prober *p);

/* Probers for the external backends of <r> whose model has health_check
 * set (model block or http); stopped by gw_health_router_stop. */
void gw_health_router_start(struct event_base *base, struct gw_router *r);
void gw_health_router_stop(struct gw_router *r);

#endif
