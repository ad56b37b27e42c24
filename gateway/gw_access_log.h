/*
 * gw_access_log.h -- one line per request, written with a single write(2):
 *   2026-11-23T12:00:00+0000 127.0.0.1 "POST /v1/chat/completions" 200
 *   model=qwen3 backend=qwen3#0 in=312 out=4096 rt=1.204 ttfb=0.031 attempts=1
 * (on one line). Reopened on SIGUSR1.
 */
#ifndef LLMUX_GW_ACCESS_LOG_H
#define LLMUX_GW_ACCESS_LOG_H

#include <stdint.h>

struct gw_access_log;
struct gw_req_summary;

/* New log appending to <path>, or NULL with errno set. */
struct gw_access_log *gw_access_log_open(const char *path);
int gw_access_log_reopen(struct gw_access_log *l);
void gw_access_log_close(struct gw_access_log *l);
void gw_access_log_write(struct gw_access_log *l, const char *client, const char *method,
                         const char *path, const struct gw_req_summary *sum,
                         uint64_t bytes_in, uint64_t bytes_out, double latency_s, double ttfb_s);

#endif
