/*
 * gw_main.c -- the llmux gateway process: command line, configuration test
 * (-t/-T), signalling a running daemon (-s), daemonizing (the parent waits on
 * a pipe until the child listens, so start-up errors reach the terminal and
 * the exit status), the pid file, signals (TERM/INT/QUIT: graceful stop
 * bounded by shutdown_timeout; HUP: reload; USR1: reopen logs) and the event
 * loop. Everything else lives in the modules it wires together.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "config.h"
#include "gw.h"
#include "gw_access_log.h"
#include "gw_health.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "gw_proxy.h"
#include "gw_supervisor.h"
#include "gw_router.h"
#include "gw_server.h"
#include "gw_upstream.h"
#include "log.h"
#include "util.h"

#define DEFAULT_CONF LLMUX_SYSCONFDIR "/llmux/llmux.conf"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: llmux [-hvtT] [-c file] [-s signal]\n"
            "  -c file    configuration file (default " DEFAULT_CONF ")\n"
            "  -t         test the configuration and exit\n"
            "  -T         test the configuration, dump it and exit\n"
            "  -s signal  send a signal to the running daemon: stop, quit, reopen, reload\n"
            "  -v         print the version and exit\n"
            "  -h         this help\n");
}

/* ---- pid file and -s ---------------------------------------------------------- */

static int pid_file_write(const char *path)
{
    char buf[32];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) {
        log_error("cannot write pid file %s: %s", path, strerror(errno));
        return -1;
    }
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    ssize_t w = write(fd, buf, (size_t)n);
    close(fd);
    return w == n ? 0 : -1;
}

static int send_signal(struct gw_conf *conf, const char *name)
{
    static const struct { const char *name; int sig; } sigs[] = {
        { "stop", SIGTERM }, { "quit", SIGQUIT }, { "reopen", SIGUSR1 }, { "reload", SIGHUP },
    };
    int sig = -1;
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        if (strcmp(name, sigs[i].name) == 0)
            sig = sigs[i].sig;
    if (sig == -1) {
        fprintf(stderr, "llmux: invalid signal \"%s\" (stop, quit, reopen, reload)\n", name);
        return 1;
    }
    if (conf->pid_file == NULL) {
        fprintf(stderr, "llmux: no \"pid\" directive in %s: cannot find the daemon\n", conf->file);
        return 1;
    }
    FILE *f = fopen(conf->pid_file, "r");
    int pid = 0;
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        fprintf(stderr, "llmux: cannot read pid from %s\n", conf->pid_file);
        if (f)
            fclose(f);
        return 1;
    }
    fclose(f);
    if (kill(pid, sig) == -1) {
        fprintf(stderr, "llmux: kill(%d, %s) failed: %s\n", pid, name, strerror(errno));
        return 1;
    }
    return 0;
}

static void conf_dump(const struct gw_conf *conf)
{
    for (size_t i = 0; i < conf->n_files; i++) {
        FILE *f = fopen(conf->files[i], "r");
        char buf[4096];
        size_t n;
        printf("# configuration file %s:\n", conf->files[i]);
        if (f == NULL)
            continue;
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            fwrite(buf, 1, n, stdout);
        fclose(f);
        printf("\n");
    }
}

/* ---- logs ------------------------------------------------------------------ */

static int logs_open(struct gw *gw, struct gw_conf *conf)
{
    if (log_open(conf->error_log) == -1) {
        fprintf(stderr, "llmux: cannot open error log %s: %s\n", conf->error_log, strerror(errno));
        return -1;
    }
    log_set_level(conf->error_log_level);
    if (conf->access_log != NULL) {
        gw->access_log = gw_access_log_open(conf->access_log);
        if (gw->access_log == NULL) {
            log_error("cannot open access log %s: %s", conf->access_log, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ---- admin socket --------------------------------------------------------------- */

/* Serve the admin socket of gw->conf (start, move, or stop it). 0, or -1
 * when it could not be opened (logged): fatal at start-up, as nginx treats a
 * listen error; a reload keeps running without it. */
static int gw_admin_update(struct gw *gw)
{
    const char *want = gw->conf->admin_socket;
    if (gw->admin_path != NULL && want != NULL && strcmp(gw->admin_path, want) == 0)
        return 0;
    if (gw->admin_path != NULL) {
        gw_admin_stop(gw);
        free(gw->admin_path);
        gw->admin_path = NULL;
    }
    if (want != NULL) {
        char err[512];
        if (gw_admin_start(gw, want, err, sizeof(err)) == -1) {
            log_error("admin socket %s: %s", want, err);
            return -1;
        }
        gw->admin_path = xstrdup(want);
    }
    return 0;
}

/* ---- shutdown, reload, signals ------------------------------------------------- */

static void shutdown_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw *gw = arg;
    log_warn("shutdown_timeout reached with %d connection(s) open, closing them", gw->n_clients);
    event_base_loopbreak(gw->base);
}

static void gw_begin_shutdown(struct gw *gw, const char *why)
{
    if (gw->shutting_down)
        return;
    log_notice("%s, shutting down gracefully (%d connection(s) open)", why, gw->n_clients);
    gw->shutting_down = 1;
    gw_server_stop_accepting(gw);
    if (gw->n_clients == 0) {
        event_base_loopexit(gw->base, NULL);
        return;
    }
    int64_t ms = gw->conf->shutdown_timeout_ms;
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    gw->shutdown_timer = evtimer_new(gw->base, shutdown_timeout_cb, gw);
    evtimer_add(gw->shutdown_timer, &tv);
}

/* Switch to the pending configuration and router. Listeners stay as they
 * are (a change of "listen" needs a restart). In-flight requests keep the
 * router they started with until they end: the old router is retired only
 * when no request refers to it. */
static void gw_swap_pending(struct gw *gw)
{
    struct gw_conf *conf = gw->pending_conf;
    struct gw_router *router = gw->pending_router;
    gw->pending_conf = NULL;
    gw->pending_router = NULL;
    int listen_changed = conf->n_listens != gw->conf->n_listens;
    for (size_t i = 0; !listen_changed && i < conf->n_listens; i++)
        listen_changed = strcmp(conf->listens[i].addr, gw->conf->listens[i].addr) != 0;
    if (listen_changed)
        log_warn("\"listen\" changes take effect after a restart");
    if (log_open(conf->error_log) == -1)
        log_error("cannot open error log %s: %s", conf->error_log, strerror(errno));
    log_set_level(conf->error_log_level);
    gw_access_log_close(gw->access_log);
    gw->access_log = conf->access_log ? gw_access_log_open(conf->access_log) : NULL;
    if (conf->access_log && gw->access_log == NULL)
        log_error("cannot open access log %s: %s", conf->access_log, strerror(errno));

    /* Listener addresses of the old conf stay in use. */
    struct gw_listen_conf *keep = gw->conf->listens;
    size_t n_keep = gw->conf->n_listens;
    gw->conf->listens = conf->listens;
    gw->conf->n_listens = conf->n_listens;
    conf->listens = keep;
    conf->n_listens = n_keep;
    for (size_t i = 0; i < n_keep; i++)
        keep[i].pos.file = NULL;    /* pointed into the old conf's file list */
    gw_conf_free(gw->conf);
    gw->conf = conf;

    struct gw_router *old = gw->router;
    gw->router = router;
    gw_health_router_stop(old);
    gw_health_router_start(gw->base, router);
    old->retired = 1;
    if (old->refs == 0)
        gw_upstream_router_free(old);
    gw_sup_retire_unused(gw->sup, gw->conf, NULL);
    gw_admin_update(gw);
    log_notice("configuration reloaded from %s: %zu model(s), %zu route(s)", gw->conf_path,
               router->n_models, router->n_routes);
    gw_proxy_wake();
}

/* A replica became ready or failed: a reload waiting for it may go ahead,
 * or give up when a replacement model's workers all failed (the running
 * ones stay: make-before-break). */
static void gw_try_swap(struct gw *gw)
{
    if (gw->pending_conf == NULL)
        return;
    const char *bad = gw_sup_replacement_failed(gw->sup, gw->pending_conf, gw->conf);
    if (bad != NULL) {
        log_error("reload abandoned: the new workers of model \"%s\" failed; the running "
                  "configuration stays", bad);
        gw_upstream_router_free(gw->pending_router);
        gw_conf_free(gw->pending_conf);
        gw->pending_router = NULL;
        gw->pending_conf = NULL;
        gw_sup_retire_unused(gw->sup, gw->conf, NULL);
        return;
    }
    if (gw_sup_settled(gw->sup, gw->pending_conf, gw->conf))
        gw_swap_pending(gw);
}

int gw_reload_apply(struct gw *gw, char *err, size_t errlen)
{
    char cerr[GW_CONF_ERRLEN];
    struct gw_conf *conf = gw_conf_load_overlay(gw->conf_path, gw->extra_models, gw->removed,
                                                gw->n_removed, cerr);
    if (conf == NULL) {
        snprintf(err, errlen, "%s", cerr);
        return -1;
    }
    if (gw_sup_prepare(gw->sup, conf, err, errlen) == -1) {
        gw_conf_free(conf);
        return -1;
    }
    struct gw_router *router = gw_router_new(conf, cerr);
    if (router == NULL) {
        snprintf(err, errlen, "%s", cerr);
        gw_sup_abort(gw->sup, conf);
        gw_conf_free(conf);
        return -1;
    }
    if (gw->pending_conf != NULL) {     /* a newer reload replaces a waiting one */
        gw_upstream_router_free(gw->pending_router);
        gw_conf_free(gw->pending_conf);
    }
    gw_sup_start(gw->sup, conf);
    gw_sup_attach(gw->sup, router);
    gw->pending_conf = conf;
    gw->pending_router = router;
    gw_sup_retire_unused(gw->sup, gw->conf, conf);
    if (!gw_sup_settled(gw->sup, conf, gw->conf))
        log_notice("reload: waiting for the replacement workers before switching");
    gw_try_swap(gw);
    return 0;
}

static void gw_reload(struct gw *gw)
{
    char err[GW_CONF_ERRLEN];
    if (gw_reload_apply(gw, err, sizeof(err)) == -1)
        log_error("reload failed, configuration unchanged: %s", err);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct gw *gw = arg;
    switch (sig) {
    case SIGTERM: gw_begin_shutdown(gw, "SIGTERM received"); break;
    case SIGINT:  gw_begin_shutdown(gw, "SIGINT received"); break;
    case SIGQUIT: gw_begin_shutdown(gw, "SIGQUIT received"); break;
    case SIGHUP:
        log_notice("SIGHUP received, reloading %s", gw->conf_path);
        gw_reload(gw);
        break;
    case SIGUSR1:
        log_notice("SIGUSR1 received, reopening logs");
        if (log_reopen() == -1)
            log_error("cannot reopen error log: %s", strerror(errno));
        if (gw->access_log && gw_access_log_reopen(gw->access_log) == -1)
            log_error("cannot reopen access log: %s", strerror(errno));
        break;
    }
}

/* ---- daemon -------------------------------------------------------------------- */

/* Fork; the parent waits for the child's word on a pipe and exits with it.
 * Returns the write end of the pipe in the child. */
static int daemonize(void)
{
    int p[2];
    if (pipe(p) == -1) {
        perror("llmux: pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid == -1) {
        perror("llmux: fork");
        exit(1);
    }
    if (pid > 0) {
        char buf[1024];
        close(p[1]);
        ssize_t n = read(p[0], buf, sizeof(buf) - 1);
        /* _exit: the daemon child owns everything from here on; the parent
         * must not run exit handlers or flush stdio the child inherited. */
        if (n > 0 && buf[0] == '0')
            _exit(0);
        if (n > 1) {
            buf[n] = '\0';
            fprintf(stderr, "llmux: %s\n", buf + 1);
        } else {
            fprintf(stderr, "llmux: daemon failed to start (see the error log)\n");
        }
        _exit(1);
    }
    close(p[0]);
    setsid();
    int fd = open("/dev/null", O_RDWR);
    if (fd != -1) {
        dup2(fd, 0);
        dup2(fd, 1);
        if (fd > 2)
            close(fd);
    }
    return p[1];
}

static void daemon_report(int fd, const char *err)
{
    if (fd < 0)
        return;
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%c%s", err ? '1' : '0', err ? err : "");
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;
    close(fd);
}

int main(int argc, char **argv)
{
    const char *conf_path = DEFAULT_CONF, *signame = NULL;
    int test = 0, dump = 0, opt;
    char err[GW_CONF_ERRLEN];

    log_init("gateway");
    while ((opt = getopt(argc, argv, "hvtTc:s:")) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 't': test = 1; break;
        case 'T': test = 1; dump = 1; break;
        case 's': signame = optarg; break;
        case 'v': printf("llmux %s\n", PACKAGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default:  usage(stderr); return 1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "llmux: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 1;
    }

    struct gw_conf *conf = gw_conf_load(conf_path, err);
    if (conf == NULL) {
        fprintf(stderr, "llmux: %s\n", err);
        if (test)
            fprintf(stderr, "llmux: configuration file %s test failed\n", conf_path);
        return 1;
    }
    struct gw_router *router = gw_router_new(conf, err);
    if (router == NULL) {
        fprintf(stderr, "llmux: %s\n", err);
        if (test)
            fprintf(stderr, "llmux: configuration file %s test failed\n", conf_path);
        gw_conf_free(conf);
        return 1;
    }
    if (signame != NULL) {
        int rc = send_signal(conf, signame);
        gw_router_free(router);
        gw_conf_free(conf);
        return rc;
    }
    if (test) {
        printf("llmux: the configuration file %s syntax is ok\n", conf_path);
        printf("llmux: configuration file %s test is successful\n", conf_path);
        if (dump)
            conf_dump(conf);
        gw_router_free(router);
        gw_conf_free(conf);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    int ready_fd = conf->daemon ? daemonize() : -1;

    struct gw gw;
    memset(&gw, 0, sizeof(gw));
    gw.conf_path = xstrdup(conf_path);
    gw.conf = conf;
    gw.router = router;
    gw.start_time = wall_time_s();
    gw.metrics = gw_metrics_new();
    /* The changelist folds an event's add and delete within one loop turn
     * into no epoll_ctl at all. */
    struct event_config *ecfg = event_config_new();
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    gw.base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    int rc = 1, wrote_pid = 0;
    const char *fail = NULL;
    struct event *sev[5] = { NULL };
    static const int sigs[] = { SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 };
    if (gw.base == NULL) {
        fail = "event_base_new failed";
        rc = 2;
        goto out;
    }
    if (logs_open(&gw, conf) == -1) {
        fail = "cannot open the logs";
        goto out;
    }
    gw.sup = gw_sup_new(&gw);
    gw_sup_set_ready_hook(gw.sup, gw_try_swap);
    {
        char serr[GW_CONF_ERRLEN];
        if (gw_sup_prepare(gw.sup, conf, serr, sizeof(serr)) == -1) {
            log_error("%s", serr);
            fail = "cannot prepare the model workers (see the error log)";
            goto out;
        }
        struct gw_router *r2 = gw_router_new(conf, serr);
        if (r2 == NULL) {
            log_error("%s", serr);
            fail = "cannot build the router";
            goto out;
        }
        gw_router_free(router);
        router = gw.router = r2;
        gw_sup_attach(gw.sup, router);
    }
    if (gw_server_listen(&gw) == -1) {
        fail = "cannot listen (see the error log)";
        goto out;
    }
    if (conf->pid_file != NULL) {
        if (pid_file_write(conf->pid_file) == -1) {
            fail = "cannot write the pid file";
            goto out;
        }
        wrote_pid = 1;
    }
    if (ready_fd >= 0 && conf->error_log != NULL && strcmp(conf->error_log, "stderr") != 0)
        dup2(log_fd(), 2);
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
        sev[i] = evsignal_new(gw.base, sigs[i], signal_cb, &gw);
        evsignal_add(sev[i], NULL);
    }
    if (gw_admin_update(&gw) == -1) {
        fail = "cannot open the admin socket";
        goto out;
    }
    gw_sup_start(gw.sup, conf);
    gw_health_router_start(gw.base, router);
    log_notice("llmux %s started: %zu model(s), %zu route(s), pid %d", PACKAGE_VERSION,
               router->n_models, router->n_routes, (int)getpid());
    daemon_report(ready_fd, NULL);
    ready_fd = -1;

    event_base_dispatch(gw.base);
    log_notice("exiting");
    rc = 0;

out:
    if (fail != NULL)
        daemon_report(ready_fd, fail);
    gw_server_free_all(&gw);
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        if (sev[i] != NULL)
            event_free(sev[i]);
    if (gw.shutdown_timer)
        event_free(gw.shutdown_timer);
    if (wrote_pid)
        unlink(gw.conf->pid_file);
    if (gw.admin_path != NULL) {
        gw_admin_stop(&gw);
        free(gw.admin_path);
    }
    /* routers first: their models release the supervisor's instances */
    if (gw.pending_conf != NULL) {
        gw_upstream_router_free(gw.pending_router);
        gw.pending_router = NULL;
    }
    gw_upstream_router_free(gw.router);
    gw.router = NULL;
    gw_sup_free(gw.sup);
    if (gw.pending_conf != NULL)
        gw_conf_free(gw.pending_conf);
    free(gw.extra_models);
    for (size_t i = 0; i < gw.n_removed; i++)
        free(gw.removed[i]);
    free(gw.removed);
    gw_metrics_free(gw.metrics);
    gw_access_log_close(gw.access_log);
    gw_conf_free(gw.conf);
    free(gw.conf_path);
    if (gw.base != NULL)
        event_base_free(gw.base);
    return rc;
}
