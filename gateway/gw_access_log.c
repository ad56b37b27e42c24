/*
 * gw_access_log.c -- the access log file. Owns its descriptor; lines are
 * formatted into a stack buffer and written at once (O_APPEND), so rotation
 * by rename + SIGUSR1 never splits a line.
 */
#include "gw_access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gw_server.h"
#include "util.h"

struct gw_access_log {
    char *path;
    int   fd;
};

struct gw_access_log *gw_access_log_open(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1)
        return NULL;
    struct gw_access_log *l = xcalloc(1, sizeof(*l));
    l->path = xstrdup(path);
    l->fd = fd;
    return l;
}

int gw_access_log_reopen(struct gw_access_log *l)
{
    int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1)
        return -1;
    close(l->fd);
    l->fd = fd;
    return 0;
}

void gw_access_log_close(struct gw_access_log *l)
{
    if (l == NULL)
        return;
    close(l->fd);
    free(l->path);
    free(l);
}

void gw_access_log_write(struct gw_access_log *l, const char *client, const char *method,
                         const char *path, const struct gw_req_summary *sum,
                         uint64_t bytes_in, uint64_t bytes_out, double latency_s, double ttfb_s)
{
    char line[1024], ts[40], ttfb[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S%z", &tm);
    if (ttfb_s >= 0)
        snprintf(ttfb, sizeof(ttfb), "%.6f", ttfb_s);
    else
        snprintf(ttfb, sizeof(ttfb), "-");
    int n = snprintf(line, sizeof(line),
                     "%s %s \"%s %.200s\" %d model=%.200s backend=%.200s in=%llu out=%llu "
                     "rt=%.6f ttfb=%s attempts=%d\n",
                     ts, client, method, path, sum->status,
                     sum->model && sum->model[0] ? sum->model : "-",
                     sum->backend && sum->backend[0] ? sum->backend : "-",
                     (unsigned long long)bytes_in, (unsigned long long)bytes_out, latency_s, ttfb,
                     sum->attempts);
    if (n >= (int)sizeof(line))
        n = (int)sizeof(line) - 1;
    ssize_t w;
    do {
        w = write(l->fd, line, (size_t)n);
    } while (w == -1 && errno == EINTR);
}
