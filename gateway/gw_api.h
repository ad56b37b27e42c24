/*
 * gw_api.h -- the gateway's routes: which paths are proxied to a model's
 * backend (POST, OpenAI/vLLM endpoints) and which are answered locally
 * (GET /v1/models, /v1/models/NAME, /health, /version, /metrics). Unknown
 * paths are 404 and known paths with another method 405, in OpenAI's shape.
 */
#ifndef LLMUX_GW_API_H
#define LLMUX_GW_API_H

struct gw_client;

/* Answer the complete request buffered in <c> (which may be freed on return). */
void gw_api_dispatch(struct gw_client *c);

/* 1 when <path> is one of the proxied POST endpoints. */
int gw_api_is_proxied_path(const char *path);

/* The metrics "route" label of <path> (a borrowed static string): the
 * endpoint itself when the gateway serves it (query dropped),
 * "/v1/models/{model}" for model lookups, else "other" -- so that scanners
 * cannot grow the series set. */
const char *gw_api_route_label(const char *path);

#endif
