/*
 * gw_metrics.h -- the gateway's Prometheus metrics: counters, gauges and
 * histograms kept in memory and rendered as text exposition format 0.0.4 for
 * GET /metrics. Only the event loop thread touches it. Label values are
 * escaped on output; series are created on first use.
 */
#ifndef LLMUX_GW_METRICS_H
#define LLMUX_GW_METRICS_H

#include <stdint.h>

struct evbuffer;
struct gw_router;
struct gw_metrics;

struct gw_metrics *gw_metrics_new(void);
void gw_metrics_free(struct gw_metrics *m);

/* One finished request. <model> is the resolved model name or "" (unknown /
 * local routes), <route> the endpoint path ("/v1/chat/completions"), <status>
 * the HTTP status sent. <latency_s> total; <ttfb_s> time to the first response
 * byte, or < 0 when none was sent. Byte counts are what crossed the client
 * socket. Feeds llmux_requests_total{model,route,status},
 * llmux_request_duration_seconds{model,route} (histogram),
 * llmux_time_to_first_byte_seconds{model} (histogram),
 * llmux_request_bytes_total{model}, llmux_response_bytes_total{model}. */
void gw_metrics_request_done(struct gw_metrics *m, const char *model, const char *route,
                             int status, double latency_s, double ttfb_s,
                             uint64_t bytes_in, uint64_t bytes_out);

/* llmux_upstream_connect_errors_total{backend} */
void gw_metrics_connect_error(struct gw_metrics *m, const char *backend);
/* llmux_upstream_retries_total{model}: an attempt that failed over. */
void gw_metrics_retry(struct gw_metrics *m, const char *model);
/* llmux_requests_in_flight gauge (+1 on accept of a request, -1 when done). */
void gw_metrics_in_flight(struct gw_metrics *m, int delta);
/* llmux_connections_active gauge, llmux_connections_total counter. */
void gw_metrics_connection(struct gw_metrics *m, int delta);

/* Append the exposition text to <out>. Per-backend gauges come from <r>
 * (may be NULL): llmux_backend_up{model,backend}, llmux_backend_in_flight,
 * llmux_backend_requests_total. */
void gw_metrics_render(struct gw_metrics *m, const struct gw_router *r, struct evbuffer *out);

#endif
