/*
 * gw_supervisor.c -- spawned workers (see gw_supervisor.h): one instance per
 * model block, one replica per worker process. Runs on the event loop: the
 * SIGCHLD event reaps, timers restart and stop, a pipe event relays each
 * worker's stderr/stdout to the error log as "[model#r] line". A retired
 * instance is freed once its workers stopped and no router (each holds a
 * reference: its backends point at the replicas' health) nor configuration
 * uses it; a deferred "gc" event does it, outside any of the instance's
 * own callbacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "gw.h"
#include "gw_health.h"
#include "gw_proxy.h"
#include "gw_router.h"
#include "gw_supervisor.h"
#include "log.h"
#include "util.h"

extern char **environ;

#define TAIL_LINES     10
#define STOP_KILL_MS   5000
#define DRAIN_POLL_MS  100

struct gw_sup_inst;

struct gw_sup_replica {
    struct gw_sup_inst *inst;
    int                 index;
    pid_t               pid;
    int                 state;          /* enum gw_replica_state */
    int                 restarts;       /* total, shown in /v1/models */
    int64_t            *restart_at;     /* ms of recent restarts (window) */
    int                 n_restart_at;
    int64_t             backoff_ms;
    int                 restart_now;    /* operator restart: no backoff */
    char               *sock;           /* socket path */
    char               *url;            /* "unix:" sock */
    char               *gpus;           /* CUDA_VISIBLE_DEVICES or NULL (inherit) */
    char               *name;           /* "model#r" */
    struct gw_bhealth   hs;
    struct gw_prober   *prober;
    struct event       *restart_timer;
    int                 out_fd;         /* read end of the worker's stderr pipe */
    struct event       *out_ev;
    struct evbuffer    *out_buf;
    char               *tail[TAIL_LINES];
    int                 tail_next;
};

struct gw_sup_inst {
    struct gw_sup      *sup;
    struct gw_sup_inst *next;
    char               *name;
    char               *sig;
    int                 gen;
    int                 started;
    int                 retired;        /* draining or stopped for good */
    int                 stopped;        /* retired and told to stop (drain over) */
    int                 router_refs;    /* routers whose backends point here */
    char              **argv;           /* without --listen */
    size_t              argc;
    char              **env;            /* env NAME=VALUE */
    size_t              n_env;
    uid_t               uid;
    gid_t               gid;
    int                 set_uid, set_gid;
    char               *log;
    char               *sock_dir;       /* runtime_dir, or a directory of its own (user/group) */
    int                 own_sock_dir;
    int64_t             backoff_min, backoff_max, window_ms, drain_ms;
    int                 max_restarts;
    struct gw_health_conf health;
    struct gw_sup_replica *reps;
    int                 n_reps;
    struct event       *drain_timer;
    int64_t             drain_deadline;
    struct event       *kill_timer;
};

struct gw_sup {
    struct gw          *gw;
    struct event       *sigchld;
    struct gw_sup_inst *insts;
    char               *worker_binary;
    char               *runtime_dir;
    int                 made_runtime_dir;
    void              (*ready_hook)(struct gw *gw);
    struct event       *gc;             /* frees retired instances nobody uses */
};

static void replica_start(struct gw_sup_replica *r);
static void sup_gc_cb(evutil_socket_t fd, short what, void *arg);
static struct gw_sup_inst *current_inst(struct gw_conf *conf, const char *name);

static void sup_gc_schedule(struct gw_sup *sup)
{
    struct timeval tv = { 0, 0 };
    if (sup->gc != NULL)
        evtimer_add(sup->gc, &tv);
}

int64_t gw_backoff_next(int64_t cur, int64_t min, int64_t max)
{
    int64_t next = cur > max / 2 ? max : cur * 2;
    if (next > max)
        next = max;
    return next < min ? min : next;
}

int gw_restart_window_prune(int64_t *times, int n, int64_t now, int64_t window_ms)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (now - times[i] < window_ms)
            times[k++] = times[i];
    return k;
}

const char *gw_replica_state_name(int state)
{
    static const char *const names[] = { "stopped", "loading", "ready", "restarting", "failed",
                                         "stopping" };
    return state >= 0 && state <= GW_REPLICA_STOPPING ? names[state] : "?";
}

/* ---- worker output -> error log --------------------------------------------------- */

static void replica_output_lines(struct gw_sup_replica *r, int flush)
{
    char *line;
    size_t n;
    while ((line = evbuffer_readln(r->out_buf, &n, EVBUFFER_EOL_LF)) != NULL) {
        log_notice("[%s] %s", r->name, line);
        free(r->tail[r->tail_next]);
        r->tail[r->tail_next] = line;
        r->tail_next = (r->tail_next + 1) % TAIL_LINES;
    }
    if (flush && evbuffer_get_length(r->out_buf) > 0) {
        size_t len = evbuffer_get_length(r->out_buf);
        line = xmalloc(len + 1);
        evbuffer_remove(r->out_buf, line, len);
        line[len] = '\0';
        log_notice("[%s] %s", r->name, line);
        free(r->tail[r->tail_next]);
        r->tail[r->tail_next] = line;
        r->tail_next = (r->tail_next + 1) % TAIL_LINES;
    }
    if (evbuffer_get_length(r->out_buf) > 16384) {      /* an endless line */
        replica_output_lines(r, 1);
    }
}

static void replica_output_close(struct gw_sup_replica *r)
{
    if (r->out_ev) {
        event_free(r->out_ev);
        r->out_ev = NULL;
    }
    if (r->out_fd >= 0) {
        close(r->out_fd);
        r->out_fd = -1;
    }
}

/* Read what is there; 0 at EOF (or error). */
static int replica_output_read(struct gw_sup_replica *r)
{
    for (;;) {
        int n = evbuffer_read(r->out_buf, r->out_fd, 65536);
        if (n > 0) {
            replica_output_lines(r, 0);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return 1;
        replica_output_lines(r, 1);
        return 0;
    }
}

static void replica_output_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_sup_replica *r = arg;
    (void)fd;
    (void)what;
    if (replica_output_read(r) == 0)
        replica_output_close(r);
}

/* The last lines of the worker's log, one string (caller frees). */
static char *replica_tail(struct gw_sup_replica *r)
{
    char *s = xstrdup("");
    if (r->inst->log != NULL) {
        FILE *f = fopen(r->inst->log, "r");
        if (f != NULL) {
            char buf[2049];
            fseek(f, 0, SEEK_END);
            long end = ftell(f);
            fseek(f, end > 2048 ? end - 2048 : 0, SEEK_SET);
            size_t n = fread(buf, 1, 2048, f);
            buf[n] = '\0';
            fclose(f);
            free(s);
            s = xstrdup(buf);
        }
        return s;
    }
    for (int i = 0; i < TAIL_LINES; i++) {
        const char *l = r->tail[(r->tail_next + i) % TAIL_LINES];
        if (l == NULL)
            continue;
        char *n = xasprintf("%s\n    %s", s, l);
        free(s);
        s = n;
    }
    return s;
}

/* ---- spawning ------------------------------------------------------------------ */

static char **build_env(struct gw_sup_replica *r)
{
    struct gw_sup_inst *in = r->inst;
    size_t n = 0, cap;
    while (environ[n])
        n++;
    cap = n + in->n_env + 2;
    char **env = xcalloc(cap, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = environ[i];
        int drop = r->gpus != NULL && strncmp(e, "CUDA_VISIBLE_DEVICES=", 21) == 0;
        for (size_t j = 0; !drop && j < in->n_env; j++) {
            size_t l = (size_t)(strchr(in->env[j], '=') - in->env[j]) + 1;
            drop = strncmp(e, in->env[j], l) == 0;
        }
        if (!drop)
            env[k++] = (char *)e;
    }
    for (size_t j = 0; j < in->n_env; j++)
        env[k++] = in->env[j];
    if (r->gpus != NULL)
        env[k++] = xasprintf("CUDA_VISIBLE_DEVICES=%s", r->gpus);
    env[k] = NULL;
    return env;
}

static void replica_set_state(struct gw_sup_replica *r, int state)
{
    r->state = state;
    r->hs.loading = state != GW_REPLICA_READY;
    r->hs.failed = state == GW_REPLICA_FAILED;
}

static void replica_prober_cb(void *arg, int ok)
{
    struct gw_sup_replica *r = arg;
    if (ok && r->state == GW_REPLICA_LOADING) {
        replica_set_state(r, GW_REPLICA_READY);
        r->backoff_ms = r->inst->backoff_min;
        r->hs.up = 1;
        r->hs.fails = 0;
        log_notice("model %s replica %d ready (pid %d)", r->inst->name, r->index, (int)r->pid);
        gw_proxy_wake();
        if (r->inst->sup->ready_hook)
            r->inst->sup->ready_hook(r->inst->sup->gw);
    }
}

static void replica_start(struct gw_sup_replica *r)
{
    struct gw_sup_inst *in = r->inst;
    struct gw_sup *sup = in->sup;
    int pfd[2] = { -1, -1 };

    if (in->log == NULL && pipe2(pfd, O_CLOEXEC) == -1) {
        log_error("model %s: pipe: %s", r->name, strerror(errno));
        return;
    }
    unlink(r->sock);
    char **env = build_env(r);
    size_t argc = in->argc;
    char **argv = xcalloc(argc + 3, sizeof(char *));
    memcpy(argv, in->argv, argc * sizeof(char *));
    char *listen = xasprintf("unix:%s", r->sock);
    argv[argc] = "--listen";
    argv[argc + 1] = listen;
    argv[argc + 2] = NULL;
    pid_t parent = getpid();

    pid_t pid = fork();
    if (pid == 0) {
        /* child: only async-signal-safe calls until exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_DFL);
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        int out = pfd[1];
        if (in->log != NULL)
            out = open(in->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (out >= 0) {
            dup2(out, 1);
            dup2(out, 2);
        }
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
        setsid();
        if (in->set_gid && (setgroups(0, NULL) == -1 || setgid(in->gid) == -1))
            _exit(126);
        if (in->set_uid && setuid(in->uid) == -1)
            _exit(126);
        execve(argv[0], argv, env);
        static const char msg[] = "llmux: cannot execute the worker binary\n";
        ssize_t w = write(2, msg, sizeof(msg) - 1);
        (void)w;
        _exit(127);
    }
    free(listen);
    free(argv);
    if (r->gpus != NULL) {
        for (size_t i = 0; env[i]; i++)
            if (strncmp(env[i], "CUDA_VISIBLE_DEVICES=", 21) == 0)
                free(env[i]);
    }
    free(env);
    if (pfd[1] >= 0)
        close(pfd[1]);
    if (pid == -1) {
        log_error("model %s: fork: %s", r->name, strerror(errno));
        if (pfd[0] >= 0)
            close(pfd[0]);
        return;
    }
    r->pid = pid;
    replica_set_state(r, GW_REPLICA_LOADING);
    log_notice("model %s replica %d started: pid %d, %s%s%s, %s", in->name, r->index, (int)pid,
               r->gpus ? "CUDA_VISIBLE_DEVICES=" : "GPUs inherited", r->gpus ? r->gpus : "",
               r->gpus && !*r->gpus ? "(cpu)" : "", r->url);
    if (pfd[0] >= 0) {
        r->out_fd = pfd[0];
        evutil_make_socket_nonblocking(r->out_fd);
        r->out_ev = event_new(sup->gw->base, r->out_fd, EV_READ | EV_PERSIST, replica_output_cb, r);
        event_add(r->out_ev, NULL);
    }
    if (r->prober == NULL)
        r->prober = gw_prober_new(sup->gw->base, r->url, r->name, &r->hs, &in->health,
                                  replica_prober_cb, r);
    else
        gw_prober_kick(r->prober);
}

static void restart_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_sup_replica *r = arg;
    (void)fd;
    (void)what;
    if (r->state == GW_REPLICA_BACKOFF)
        replica_start(r);
}

static void inst_check_stopped(struct gw_sup_inst *in)
{
    for (int i = 0; i < in->n_reps; i++)
        if (in->reps[i].pid > 0)
            return;
    if (in->kill_timer)
        evtimer_del(in->kill_timer);
    for (int i = 0; i < in->n_reps; i++)
        unlink(in->reps[i].sock);
    if (in->retired)
        sup_gc_schedule(in->sup);
}

/* A worker exited (reaped). */
static void replica_exited(struct gw_sup_replica *r, int status)
{
    struct gw_sup_inst *in = r->inst;
    char how[64];
    if (WIFEXITED(status))
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
    else
        snprintf(how, sizeof(how), "ended (status 0x%x)", status);
    if (r->out_fd >= 0) {
        replica_output_read(r);
        replica_output_close(r);
    }
    pid_t pid = r->pid;
    r->pid = 0;
    if (r->state == GW_REPLICA_STOPPING || in->retired) {
        log_notice("model %s replica %d (pid %d) %s", in->name, r->index, (int)pid, how);
        replica_set_state(r, GW_REPLICA_STOPPED);
        inst_check_stopped(in);
        return;
    }
    char *tail = replica_tail(r);
    log_error("model %s replica %d (pid %d) %s; last lines of its log:%s", in->name, r->index,
              (int)pid, how, tail);
    free(tail);

    int64_t now = now_ms();
    r->n_restart_at = gw_restart_window_prune(r->restart_at, r->n_restart_at, now, in->window_ms);
    if (!r->restart_now && r->n_restart_at >= in->max_restarts) {
        replica_set_state(r, GW_REPLICA_FAILED);
        gw_prober_free(r->prober);      /* nothing to check until an operator acts */
        r->prober = NULL;
        if (in->sup->ready_hook)        /* a reload waiting for it gives up */
            in->sup->ready_hook(in->sup->gw);
        log_error("model %s replica %d failed: %d restart(s) within %lld ms; it stays down "
                  "until an operator restarts it", in->name, r->index, r->n_restart_at,
                  (long long)in->window_ms);
        gw_proxy_wake();
        return;
    }
    r->restart_at = xrealloc(r->restart_at, (size_t)(r->n_restart_at + 1) * sizeof(int64_t));
    r->restart_at[r->n_restart_at++] = now;
    r->restarts++;
    int64_t delay = r->restart_now ? 0 : r->backoff_ms;
    r->restart_now = 0;
    r->backoff_ms = gw_backoff_next(r->backoff_ms, in->backoff_min, in->backoff_max);
    replica_set_state(r, GW_REPLICA_BACKOFF);
    log_notice("model %s replica %d restarts in %lld ms", in->name, r->index, (long long)delay);
    struct timeval tv = { .tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000 };
    evtimer_add(r->restart_timer, &tv);
    gw_proxy_wake();
}

static struct gw_sup_replica *find_pid(struct gw_sup *sup, pid_t pid)
{
    for (struct gw_sup_inst *in = sup->insts; in; in = in->next)
        for (int i = 0; i < in->n_reps; i++)
            if (in->reps[i].pid == pid)
                return &in->reps[i];
    return NULL;
}

static void sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
    struct gw_sup *sup = arg;
    int status;
    pid_t pid;
    (void)sig;
    (void)what;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct gw_sup_replica *r = find_pid(sup, pid);
        if (r != NULL)
            replica_exited(r, status);
    }
}

/* ---- stopping --------------------------------------------------------------------- */

static void kill_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_sup_inst *in = arg;
    (void)fd;
    (void)what;
    for (int i = 0; i < in->n_reps; i++)
        if (in->reps[i].pid > 0) {
            log_warn("model %s replica %d (pid %d) did not stop, killing it", in->name, i,
                     (int)in->reps[i].pid);
            kill(in->reps[i].pid, SIGKILL);
        }
}

static void inst_stop(struct gw_sup_inst *in)
{
    in->stopped = 1;
    for (int i = 0; i < in->n_reps; i++) {
        struct gw_sup_replica *r = &in->reps[i];
        evtimer_del(r->restart_timer);
        gw_prober_free(r->prober);
        r->prober = NULL;
        r->hs.loading = 1;
        if (r->pid > 0) {
            kill(r->pid, SIGTERM);
            r->state = GW_REPLICA_STOPPING;
        } else {
            r->state = GW_REPLICA_STOPPED;
        }
    }
    struct timeval tv = { .tv_sec = STOP_KILL_MS / 1000, .tv_usec = 0 };
    evtimer_add(in->kill_timer, &tv);
    inst_check_stopped(in);
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_sup_inst *in = arg;
    int busy = 0;
    (void)fd;
    (void)what;
    for (int i = 0; i < in->n_reps; i++)
        busy += in->reps[i].hs.in_flight;
    if (busy > 0 && now_ms() < in->drain_deadline) {
        struct timeval tv = { 0, DRAIN_POLL_MS * 1000 };
        evtimer_add(in->drain_timer, &tv);
        return;
    }
    if (busy > 0)
        log_warn("model %s: drain_timeout reached with %d request(s) in flight", in->name, busy);
    log_notice("model %s (generation %d) drained, stopping its workers", in->name, in->gen);
    inst_stop(in);
}

static void inst_retire(struct gw_sup_inst *in)
{
    if (in->retired)
        return;
    in->retired = 1;
    for (int i = 0; i < in->n_reps; i++)
        in->reps[i].hs.draining = 1;
    if (!in->started) {
        in->started = 1;
        in->stopped = 1;
        sup_gc_schedule(in->sup);
        return;
    }
    in->drain_deadline = now_ms() + in->drain_ms;
    struct timeval tv = { 0, 0 };
    evtimer_add(in->drain_timer, &tv);
}

/* ---- instances ------------------------------------------------------------------- */

static void inst_free(struct gw_sup_inst *in)
{
    for (int i = 0; i < in->n_reps; i++) {
        struct gw_sup_replica *r = &in->reps[i];
        gw_prober_free(r->prober);
        event_free(r->restart_timer);
        replica_output_close(r);
        evbuffer_free(r->out_buf);
        for (int k = 0; k < TAIL_LINES; k++)
            free(r->tail[k]);
        free(r->restart_at);
        free(r->sock);
        free(r->url);
        free(r->gpus);
        free(r->name);
    }
    free(in->reps);
    if (in->drain_timer)
        event_free(in->drain_timer);
    if (in->kill_timer)
        event_free(in->kill_timer);
    if (in->own_sock_dir)
        rmdir(in->sock_dir);        /* empty once its sockets are unlinked */
    free(in->sock_dir);
    for (size_t i = 0; i < in->argc; i++)
        free(in->argv[i]);
    free(in->argv);
    for (size_t i = 0; i < in->n_env; i++)
        free(in->env[i]);
    free(in->env);
    free(in->log);
    free(in->name);
    free(in->sig);
    free(in);
}

static void argv_add(struct gw_sup_inst *in, const char *a, const char *b)
{
    in->argv = xrealloc(in->argv, (in->argc + 2) * sizeof(char *));
    in->argv[in->argc++] = xstrdup(a);
    if (b)
        in->argv[in->argc++] = xstrdup(b);
}

static void argv_add_int(struct gw_sup_inst *in, const char *flag, int v)
{
    char num[32];
    if (v <= 0)
        return;
    snprintf(num, sizeof(num), "%d", v);
    argv_add(in, flag, num);
}

static struct gw_sup_inst *inst_new(struct gw_sup *sup, const struct gw_model_conf *mc,
                                    const char *sig, int gen, char *err, size_t errlen)
{
    struct gw_sup_inst *in = xcalloc(1, sizeof(*in));
    struct event_base *base = sup->gw->base;
    char *fname = NULL;
    in->sup = sup;
    in->name = xstrdup(mc->name);
    in->sig = xstrdup(sig);
    in->gen = gen;
    in->log = mc->log ? xstrdup(mc->log) : NULL;
    in->backoff_min = mc->restart_backoff_min_ms;
    in->backoff_max = mc->restart_backoff_max_ms;
    in->window_ms = mc->max_restarts_window_ms;
    in->max_restarts = mc->max_restarts;
    in->drain_ms = mc->drain_timeout_ms;
    in->health = mc->health;
    if (mc->user != NULL) {
        struct passwd *pw = getpwnam(mc->user);
        if (pw == NULL) {
            snprintf(err, errlen, "model \"%s\": unknown user \"%s\"", mc->name, mc->user);
            goto fail;
        }
        in->uid = pw->pw_uid;
        in->set_uid = 1;
        if (mc->group == NULL) {
            in->gid = pw->pw_gid;
            in->set_gid = 1;
        }
    }
    if (mc->group != NULL) {
        struct group *gr = getgrnam(mc->group);
        if (gr == NULL) {
            snprintf(err, errlen, "model \"%s\": unknown group \"%s\"", mc->name, mc->group);
            goto fail;
        }
        in->gid = gr->gr_gid;
        in->set_gid = 1;
    }
    argv_add(in, sup->worker_binary, NULL);
    argv_add(in, "--model", mc->path);
    argv_add(in, "--served-name", mc->name);
    for (size_t i = 0; i < mc->n_served_names; i++)
        argv_add(in, "--served-name", mc->served_names[i]);
    for (size_t i = 0; i < mc->n_aliases; i++)
        argv_add(in, "--served-name", mc->aliases[i]);
    if (mc->task_set)           /* else the worker reads it from the model's config */
        argv_add(in, "--task", gw_task_name(mc->task));
    argv_add_int(in, "--max-model-len", mc->max_model_len);
    argv_add_int(in, "--max-num-seqs", mc->max_num_seqs);
    argv_add_int(in, "--max-num-batched-tokens", mc->max_num_batched_tokens);
    if (mc->threads >= 0) {
        char num[32];
        snprintf(num, sizeof(num), "%d", mc->threads);
        argv_add(in, "--threads", num);
    }
    if (mc->kv_cache_memory)
        argv_add(in, "--kv-cache-memory", mc->kv_cache_memory);
    if (mc->reasoning_parser)
        argv_add(in, "--reasoning-parser", mc->reasoning_parser);
    if (mc->tool_call_parser)
        argv_add(in, "--tool-call-parser", mc->tool_call_parser);
    for (size_t i = 0; i < mc->n_env; i++) {
        in->env = xrealloc(in->env, (in->n_env + 1) * sizeof(char *));
        in->env[in->n_env++] = xstrdup(mc->env[i]);
    }
    /* --device: the block's, else cpu for "gpus cpu", else auto when GPUs are named */
    const char *device = mc->device;
    if (device == NULL && mc->n_gpus > 0)
        device = mc->gpus[0][0] == '\0' ? "cpu" : "auto";
    if (device)
        argv_add(in, "--device", device);

    /* socket file names: the model name with '/' as "%2F"; a worker that
     * drops privileges gets a directory of its own it may write in */
    fname = xstrdup("");
    for (const char *c = mc->name; *c; c++) {
        char *n = *c == '/' ? xasprintf("%s%%2F", fname) : xasprintf("%s%c", fname, *c);
        free(fname);
        fname = n;
    }
    if (in->set_uid || in->set_gid) {
        in->sock_dir = xasprintf("%s/%s.g%d.d", sup->runtime_dir, fname, gen);
        if ((mkdir(in->sock_dir, 0700) == -1 && errno != EEXIST) ||
            chown(in->sock_dir, in->set_uid ? in->uid : (uid_t)-1,
                  in->set_gid ? in->gid : (gid_t)-1) == -1) {
            snprintf(err, errlen, "model \"%s\": cannot prepare %s for user/group: %s",
                     mc->name, in->sock_dir, strerror(errno));
            goto fail;
        }
        in->own_sock_dir = 1;
    } else {
        in->sock_dir = xstrdup(sup->runtime_dir);
    }
    in->n_reps = mc->replicas;
    in->reps = xcalloc((size_t)in->n_reps, sizeof(*in->reps));
    for (int i = 0; i < in->n_reps; i++) {
        struct gw_sup_replica *r = &in->reps[i];
        r->inst = in;
        r->index = i;
        r->out_fd = -1;
        r->out_buf = evbuffer_new();
        r->name = xasprintf("%s#%d", mc->name, i);
        r->sock = gen == 0 ? xasprintf("%s/%s.%d.sock", in->sock_dir, fname, i)
                           : xasprintf("%s/%s.%d.g%d.sock", in->sock_dir, fname, i, gen);
        r->url = xasprintf("unix:%s", r->sock);
        if (mc->n_gpus > 0)
            r->gpus = xstrdup(mc->gpus[mc->n_gpus == 1 ? 0 : (size_t)i]);
        r->backoff_ms = in->backoff_min;
        r->hs.up = 1;
        r->hs.loading = 1;
        r->restart_timer = evtimer_new(base, restart_timer_cb, r);
    }
    in->drain_timer = evtimer_new(base, drain_timer_cb, in);
    in->kill_timer = evtimer_new(base, kill_timer_cb, in);
    free(fname);
    return in;
fail:
    free(fname);
    inst_free(in);
    return NULL;
}

static int conf_uses(const struct gw_conf *conf, const struct gw_sup_inst *in)
{
    for (size_t i = 0; conf && i < conf->n_models; i++)
        if (conf->models[i].sup_inst == in)
            return 1;
    return 0;
}

static int sup_setup_paths(struct gw_sup *sup, const struct gw_conf *conf, char *err,
                           size_t errlen)
{
    free(sup->worker_binary);
    if (conf->worker_binary) {
        sup->worker_binary = xstrdup(conf->worker_binary);
    } else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n <= 0) {
            snprintf(err, errlen, "cannot find the llmux binary: %s", strerror(errno));
            sup->worker_binary = NULL;
            return -1;
        }
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        *slash = '\0';
        sup->worker_binary = xasprintf("%s/llmux-worker", exe);
    }
    if (sup->runtime_dir == NULL || (conf->runtime_dir && strcmp(conf->runtime_dir, sup->runtime_dir))) {
        char *dir = conf->runtime_dir ? xstrdup(conf->runtime_dir)
                                      : xasprintf("/tmp/llmux-%d", (int)getpid());
        /* 0711: workers that drop privileges reach their own directory in it */
        if (mkdir(dir, 0711) == -1 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create runtime_dir %s: %s", dir, strerror(errno));
            free(dir);
            return -1;
        }
        if (sup->runtime_dir == NULL)
            sup->made_runtime_dir = conf->runtime_dir == NULL;
        free(sup->runtime_dir);
        sup->runtime_dir = dir;
    }
    return 0;
}

/* ---- public ----------------------------------------------------------------------- */

struct gw_sup *gw_sup_new(struct gw *gw)
{
    struct gw_sup *sup = xcalloc(1, sizeof(*sup));
    sup->gw = gw;
    sup->sigchld = evsignal_new(gw->base, SIGCHLD, sigchld_cb, sup);
    evsignal_add(sup->sigchld, NULL);
    sup->gc = evtimer_new(gw->base, sup_gc_cb, sup);
    return sup;
}

void gw_sup_set_ready_hook(struct gw_sup *sup, void (*fn)(struct gw *gw))
{
    sup->ready_hook = fn;
}

int gw_sup_prepare(struct gw_sup *sup, struct gw_conf *conf, char *err, size_t errlen)
{
    int any = 0;
    for (size_t i = 0; i < conf->n_models; i++)
        any |= conf->models[i].path != NULL;
    if (!any)
        return 0;
    if (sup_setup_paths(sup, conf, err, errlen) == -1)
        return -1;
    for (size_t i = 0; i < conf->n_models; i++) {
        struct gw_model_conf *mc = &conf->models[i];
        if (mc->path == NULL)
            continue;
        char *sig = gw_model_conf_signature(mc);
        struct gw_sup_inst *found = NULL;
        int gen = 0;
        for (struct gw_sup_inst *in = sup->insts; in; in = in->next) {
            if (strcmp(in->name, mc->name) != 0)
                continue;
            if (in->gen >= gen)
                gen = in->gen + 1;
            if (!in->retired && strcmp(in->sig, sig) == 0)
                found = in;
        }
        if (found == NULL) {
            /* a failed instance of a changed block is replaced; reuse the
             * lowest generation whose sockets are free */
            found = inst_new(sup, mc, sig, gen, err, errlen);
            if (found == NULL) {
                free(sig);
                gw_sup_abort(sup, conf);
                return -1;
            }
            found->next = sup->insts;
            sup->insts = found;
        }
        free(sig);
        mc->sup_inst = found;
        for (size_t j = 0; j < mc->n_upstreams; j++)
            free(mc->upstreams[j]);
        free(mc->upstreams);
        mc->upstreams = xcalloc((size_t)found->n_reps, sizeof(char *));
        mc->n_upstreams = (size_t)found->n_reps;
        for (int j = 0; j < found->n_reps; j++)
            mc->upstreams[j] = xstrdup(found->reps[j].url);
    }
    return 0;
}

void gw_sup_abort(struct gw_sup *sup, struct gw_conf *conf)
{
    struct gw_sup_inst **pp = &sup->insts;
    while (*pp) {
        struct gw_sup_inst *in = *pp;
        if (!in->started && conf_uses(conf, in)) {
            *pp = in->next;
            inst_free(in);
            continue;
        }
        pp = &in->next;
    }
    for (size_t i = 0; i < conf->n_models; i++)
        conf->models[i].sup_inst = NULL;
}

void gw_sup_start(struct gw_sup *sup, struct gw_conf *conf)
{
    for (struct gw_sup_inst *in = sup->insts; in; in = in->next) {
        if (in->started || !conf_uses(conf, in))
            continue;
        in->started = 1;
        for (int i = 0; i < in->n_reps; i++)
            replica_start(&in->reps[i]);
    }
}

/* A router that pointed at <arg>'s replicas is freed. */
static void inst_release(void *arg)
{
    struct gw_sup_inst *in = arg;
    in->router_refs--;
    if (in->retired)
        sup_gc_schedule(in->sup);
}

/* 1 when <in> may be freed: retired, stopped, no worker left, and neither a
 * router nor the current or pending configuration refers to it. */
static int inst_unused(const struct gw_sup_inst *in)
{
    struct gw *gw = in->sup->gw;
    if (!in->retired || !in->stopped || in->router_refs > 0 || conf_uses(gw->conf, in) ||
        conf_uses(gw->pending_conf, in))
        return 0;
    for (int i = 0; i < in->n_reps; i++)
        if (in->reps[i].pid > 0)
            return 0;
    return 1;
}

static void sup_gc_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_sup *sup = arg;
    (void)fd;
    (void)what;
    struct gw_sup_inst **pp = &sup->insts;
    while (*pp) {
        struct gw_sup_inst *in = *pp;
        if (inst_unused(in)) {
            *pp = in->next;
            log_info("model %s (generation %d): freed", in->name, in->gen);
            inst_free(in);
            continue;
        }
        pp = &in->next;
    }
}

void gw_sup_attach(struct gw_sup *sup, struct gw_router *r)
{
    (void)sup;
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        struct gw_sup_inst *in = m->sup_inst;
        if (in == NULL)
            continue;
        for (size_t j = 0; j < m->n_backends && (int)j < in->n_reps; j++) {
            m->backends[j]->hs = &in->reps[j].hs;
            m->backends[j]->replica = &in->reps[j];
        }
        if (m->sup_release == NULL) {
            in->router_refs++;
            m->sup_release = inst_release;
        }
    }
}

const char *gw_sup_replacement_failed(struct gw_sup *sup, struct gw_conf *conf,
                                      struct gw_conf *old)
{
    for (struct gw_sup_inst *in = sup->insts; in; in = in->next) {
        if (!conf_uses(conf, in) || conf_uses(old, in) || current_inst(old, in->name) == NULL)
            continue;
        int failed = 0;
        for (int i = 0; i < in->n_reps; i++)
            failed += in->reps[i].state == GW_REPLICA_FAILED;
        if (failed == in->n_reps)
            return in->name;
    }
    return NULL;
}

int gw_sup_settled(struct gw_sup *sup, struct gw_conf *conf, struct gw_conf *old)
{
    for (struct gw_sup_inst *in = sup->insts; in; in = in->next) {
        if (!conf_uses(conf, in) || conf_uses(old, in))
            continue;
        int known = 0;      /* only blocks that replace a running model wait */
        for (size_t i = 0; old && i < old->n_models; i++)
            known |= strcmp(old->models[i].name, in->name) == 0;
        if (!known)
            continue;
        for (int i = 0; i < in->n_reps; i++)
            if (in->reps[i].state == GW_REPLICA_LOADING || in->reps[i].state == GW_REPLICA_BACKOFF)
                return 0;
    }
    return 1;
}

void gw_sup_retire_unused(struct gw_sup *sup, struct gw_conf *a, struct gw_conf *b)
{
    for (struct gw_sup_inst *in = sup->insts; in; in = in->next)
        if (!in->retired && !conf_uses(a, in) && !conf_uses(b, in)) {
            log_notice("model %s (generation %d): unloading", in->name, in->gen);
            inst_retire(in);
        }
    gw_proxy_wake();
    sup_gc_schedule(sup);
}

void gw_sup_free(struct gw_sup *sup)
{
    if (sup == NULL)
        return;
    int live = 0;
    for (struct gw_sup_inst *in = sup->insts; in; in = in->next)
        for (int i = 0; i < in->n_reps; i++)
            if (in->reps[i].pid > 0) {
                kill(in->reps[i].pid, SIGTERM);
                live++;
            }
    int64_t deadline = now_ms() + STOP_KILL_MS;
    while (live > 0) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            struct gw_sup_replica *r = find_pid(sup, pid);
            if (r) {
                r->pid = 0;
                live--;
            }
            continue;
        }
        if (pid == -1 && errno == ECHILD)
            break;
        if (now_ms() > deadline) {
            for (struct gw_sup_inst *in = sup->insts; in; in = in->next)
                for (int i = 0; i < in->n_reps; i++)
                    if (in->reps[i].pid > 0) {
                        log_warn("worker %s (pid %d) ignored SIGTERM, killing it",
                                 in->reps[i].name, (int)in->reps[i].pid);
                        kill(in->reps[i].pid, SIGKILL);
                    }
            deadline = INT64_MAX;
        }
        usleep(10000);
    }
    while (sup->insts) {
        struct gw_sup_inst *in = sup->insts;
        sup->insts = in->next;
        for (int i = 0; i < in->n_reps; i++)
            unlink(in->reps[i].sock);
        inst_free(in);
    }
    if (sup->made_runtime_dir && sup->runtime_dir)
        rmdir(sup->runtime_dir);
    if (sup->sigchld)
        event_free(sup->sigchld);
    if (sup->gc)
        event_free(sup->gc);
    free(sup->worker_binary);
    free(sup->runtime_dir);
    free(sup);
}

static struct gw_sup_inst *current_inst(struct gw_conf *conf, const char *name)
{
    for (size_t i = 0; conf && i < conf->n_models; i++)
        if (strcmp(conf->models[i].name, name) == 0)
            return conf->models[i].sup_inst;
    return NULL;
}

const char *gw_model_state(const int *states, int n, int retired)
{
    int ready = 0, loading = 0, failed = 0;
    if (retired)
        return "unloading";
    for (int i = 0; i < n; i++) {
        ready += states[i] == GW_REPLICA_READY;
        loading += states[i] == GW_REPLICA_LOADING || states[i] == GW_REPLICA_BACKOFF ||
                   states[i] == GW_REPLICA_STOPPED;
        failed += states[i] == GW_REPLICA_FAILED;
    }
    if (n > 0 && ready == n)
        return "ready";
    if (ready > 0)
        return "degraded";
    if (loading > 0)
        return "loading";
    return failed ? "failed" : "loading";
}

static const char *inst_state(const struct gw_sup_inst *in)
{
    int states[64];
    int n = in->n_reps < 64 ? in->n_reps : 64;
    for (int i = 0; i < n; i++)
        states[i] = in->reps[i].state;
    return gw_model_state(states, n, in->retired);
}

json_t *gw_sup_model_json(struct gw_sup *sup, struct gw_conf *conf, const char *name)
{
    (void)sup;
    struct gw_sup_inst *in = current_inst(conf, name);
    if (in == NULL)
        return NULL;
    json_t *j = json_object(), *reps = json_array();
    json_object_set_new(j, "state", json_string(inst_state(in)));
    for (int i = 0; i < in->n_reps; i++) {
        struct gw_sup_replica *r = &in->reps[i];
        json_t *o = json_object();
        json_object_set_new(o, "replica", json_integer(i));
        json_object_set_new(o, "pid", r->pid > 0 ? json_integer(r->pid) : json_null());
        json_object_set_new(o, "gpus", r->gpus ? json_string(*r->gpus ? r->gpus : "cpu")
                                               : json_null());
        json_object_set_new(o, "state", json_string(r->hs.draining && r->state == GW_REPLICA_READY
                                                    ? "draining" : gw_replica_state_name(r->state)));
        json_object_set_new(o, "restarts", json_integer(r->restarts));
        json_object_set_new(o, "address", json_string(r->url));
        json_object_set_new(o, "healthy", json_boolean(r->hs.up));
        json_object_set_new(o, "in_flight", json_integer(r->hs.in_flight));
        if (r->hs.has_load) {
            json_t *l = json_object();
            json_object_set_new(l, "running", json_integer(r->hs.running));
            json_object_set_new(l, "waiting", json_integer(r->hs.waiting));
            json_object_set_new(l, "kv_blocks_free", json_integer(r->hs.kv_free));
            json_object_set_new(l, "kv_blocks_total", json_integer(r->hs.kv_total));
            json_object_set_new(o, "load", l);
        } else {
            json_object_set_new(o, "load", json_null());
        }
        json_array_append_new(reps, o);
    }
    json_object_set_new(j, "replicas", reps);
    return j;
}

static struct gw_sup_replica *find_replica(struct gw_conf *conf, const char *model, int replica,
                                           char *err, size_t errlen)
{
    struct gw_sup_inst *in = current_inst(conf, model);
    if (in == NULL) {
        snprintf(err, errlen, "no spawned model \"%s\"", model);
        return NULL;
    }
    if (replica < 0 || replica >= in->n_reps) {
        snprintf(err, errlen, "model \"%s\" has %d replica(s)", model, in->n_reps);
        return NULL;
    }
    return &in->reps[replica];
}

int gw_sup_replica_drain(struct gw_sup *sup, struct gw_conf *conf, const char *model, int replica,
                         int drain, char *err, size_t errlen)
{
    (void)sup;
    struct gw_sup_replica *r = find_replica(conf, model, replica, err, errlen);
    if (r == NULL)
        return -1;
    r->hs.draining = drain;
    log_notice("replica %s %s", r->name, drain ? "drained: out of rotation" : "back in rotation");
    gw_proxy_wake();
    return 0;
}

int gw_sup_replica_restart(struct gw_sup *sup, struct gw_conf *conf, const char *model,
                           int replica, char *err, size_t errlen)
{
    (void)sup;
    struct gw_sup_replica *r = find_replica(conf, model, replica, err, errlen);
    if (r == NULL)
        return -1;
    r->n_restart_at = 0;
    r->backoff_ms = r->inst->backoff_min;
    log_notice("replica %s: restart requested", r->name);
    if (r->pid > 0) {
        r->restart_now = 1;
        kill(r->pid, SIGTERM);
        return 0;
    }
    evtimer_del(r->restart_timer);
    replica_start(r);
    return 0;
}
