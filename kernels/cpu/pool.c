/*
 * pool.c -- the cpu backend's thread pool: n-1 pthreads created once per
 * backend, woken per op by a generation counter, sharing the op's items
 * through an atomic counter with the caller. After a job a worker spins (a
 * pause, then sched_yield so that a busy machine loses little) for up to
 * SPIN_US before it sleeps on a condition variable, so that the ~200 ops of
 * a decode step cost no futex round trip each. The caller waits only for
 * workers that joined the job, never for one that was not scheduled in time.
 * Knows nothing about ops.
 */
#include "kn_cpu.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define SPIN_US 100             /* how long a waiter spins before sleeping */
#define PAUSE_US 10             /* then how long of that with pause only */
#define MAX_THREADS 256

struct scratch {
    float *p;
    size_t cap;
    char pad[64 - sizeof(float *) - sizeof(size_t)];    /* no false sharing */
};

struct worker {
    struct kn_pool *pool;
    int tid;
};

struct kn_pool {
    int n;                      /* threads, caller included */
    pthread_t *th;
    struct scratch *scratch;    /* (n,) */
    struct worker *workers;     /* (n,); [0] unused */

    /* the job; written by the caller before gen is bumped, stable while open */
    kn_pool_fn fn;
    void *arg;
    int64_t n_items, grain;
    int nth;
    _Atomic int64_t next;       /* first item not handed out */
    _Atomic unsigned gen;       /* bumped once per job, never 0 after */
    _Atomic unsigned open;      /* gen of the job workers may join; 0: none */
    _Atomic int active;         /* workers inside a job */
    _Atomic int stop;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;     /* gen changed */
    pthread_cond_t done_cv;     /* active reached 0 */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One step of a bounded spin; <t0> starts at 0. Returns 0 once SPIN_US passed. */
static int spin_step(unsigned i, int64_t *t0)
{
    cpu_relax();
    if ((i & 63) != 0)
        return 1;
    int64_t t = mono_us();
    if (*t0 == 0)
        *t0 = t;
    if (t - *t0 > PAUSE_US)
        sched_yield();
    return t - *t0 <= SPIN_US;
}

static void run_items(struct kn_pool *p, int tid)
{
    int64_t i0;
    while ((i0 = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed)) < p->n_items) {
        int64_t i1 = i0 + p->grain;
        p->fn(p->arg, tid, i0, i1 < p->n_items ? i1 : p->n_items);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct kn_pool *p = w->pool;
    unsigned seen = 0, g;
    for (;;) {
        int64_t t0 = 0;
        unsigned i = 1;
        while ((g = atomic_load(&p->gen)) == seen && spin_step(i++, &t0))
            ;
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen)
                pthread_cond_wait(&p->work_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop))
            break;
        /* join, then check the job is still open: the caller closes it and
         * then waits for active == 0 (both seq_cst, so one of us sees the other) */
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->open) == g && w->tid < p->nth)
            run_items(p, w->tid);
        if (atomic_fetch_sub(&p->active, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

struct kn_pool *kn_pool_new(int n_threads)
{
    struct kn_pool *p = xcalloc(1, sizeof(*p));
    p->n = n_threads < 1 ? 1 : n_threads > MAX_THREADS ? MAX_THREADS : n_threads;
    p->scratch = xcalloc((size_t)p->n, sizeof(*p->scratch));
    p->th = xcalloc((size_t)p->n, sizeof(*p->th));
    p->workers = xcalloc((size_t)p->n, sizeof(*p->workers));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    /* workers inherit a full signal mask: signals stay with the daemon's threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 1; i < p->n; i++) {
        p->workers[i].pool = p;
        p->workers[i].tid = i;
        if (pthread_create(&p->th[i], NULL, worker_main, &p->workers[i]) != 0) {
            log_warn("cpu backend: only %d of %d threads started", i, p->n);
            p->n = i;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return p;
}

void kn_pool_free(struct kn_pool *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    for (int i = 0; i < p->n; i++)
        free(p->scratch[i].p);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->scratch);
    free(p->th);
    free(p->workers);
    free(p);
}

int kn_pool_threads(const struct kn_pool *p)
{
    return p->n;
}

void kn_pool_for(struct kn_pool *p, kn_pool_fn fn, void *arg, int64_t n, int64_t grain, int nth)
{
    nth = nth > p->n ? p->n : nth;
    grain = grain < 1 ? 1 : grain;
    if (n <= 0)
        return;
    if (nth <= 1 || n <= grain) {
        fn(arg, 0, 0, n);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_items = n;
    p->grain = grain;
    p->nth = nth;
    atomic_store(&p->next, 0);
    unsigned g = atomic_load(&p->gen) + 1;
    g = g == 0 ? 1 : g;
    atomic_store(&p->open, g);
    pthread_mutex_lock(&p->mu);     /* pairs with a worker's check before it sleeps */
    atomic_store(&p->gen, g);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    run_items(p, 0);

    atomic_store(&p->open, 0);      /* late workers skip this job */
    int64_t t0 = 0;
    unsigned i = 1;
    while (atomic_load(&p->active) > 0 && spin_step(i++, &t0))
        ;
    if (atomic_load(&p->active) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) > 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

float *kn_pool_scratch(struct kn_pool *p, int tid, size_t nfloats)
{
    struct scratch *s = &p->scratch[tid];
    if (nfloats > s->cap) {
        free(s->p);
        size_t cap = nfloats + nfloats / 4 + 16;
        void *q = NULL;
        if (posix_memalign(&q, 64, cap * sizeof(float)) != 0)
            abort();    /* OOM aborts, as xmalloc does */
        s->p = q;
        s->cap = cap;
    }
    return s->p;
}
