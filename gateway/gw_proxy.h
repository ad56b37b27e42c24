/*
 * gw_proxy.h -- one proxied request: resolve the model, pick a backend, send
 * the original body, relay the response as it arrives (raw bytes, no
 * re-encoding), fail over before the first byte, end broken streams with an
 * SSE error event. Owned by its client connection (c->req).
 */
#ifndef LLMUX_GW_PROXY_H
#define LLMUX_GW_PROXY_H

struct gw_client;
struct gw_request;

/* Start proxying the complete request buffered in <c>. Answers errors itself. */
void gw_proxy_start(struct gw_client *c);
/* The client connection is going away: close the upstream side, account, free. */
void gw_proxy_client_gone(struct gw_request *req);
/* The client's output buffer drained below the low watermark. */
void gw_proxy_client_drained(struct gw_request *req);

/* A spawned replica became ready (or a model's state changed): requests
 * waiting for a loading model try again. */
void gw_proxy_wake(void);

#endif
