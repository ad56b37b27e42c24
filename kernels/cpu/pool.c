/*
 * pool.c -- the cpu backend's thread pool: n-1 pthreads created once per
 * backend, woken per op by a generation counter. After a job a worker spins
 * (with a pause) for up to SPIN_US before it sleeps on a condition variable,
 * so that the ~200 ops of a decode step cost no futex round trip each; the
 * caller waits for the workers the same way. Knows nothing about ops.
 */
#include "kn_cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define SPIN_US 200             /* how long a waiter spins before sleeping */
#define MAX_THREADS 256

struct scratch {
    float *p;
    size_t cap;
    char pad[64 - sizeof(float *) - sizeof(size_t)];    /* no false sharing */
};

struct kn_pool {
    int n;                      /* threads, caller included */
    pthread_t *th;
    struct scratch *scratch;    /* (n,) */
    struct worker *workers;     /* (n-1,) */

    /* the job; written by the caller before gen is bumped */
    kn_pool_fn fn;
    void *arg;
    int nth;
    _Atomic unsigned gen;       /* bumped once per job; 0 before the first */
    _Atomic int pending;        /* workers that have not finished the job */
    _Atomic int stop;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;     /* gen changed */
    pthread_cond_t done_cv;     /* pending reached 0 */
};

struct worker {
    struct kn_pool *pool;
    int tid;
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

/* Spin until *gen != seen or SPIN_US passed; returns the last value read. */
static unsigned spin_gen(struct kn_pool *p, unsigned seen)
{
    int64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
        if ((i & 255) == 0) {
            int64_t t = mono_us();
            if (t0 == 0)
                t0 = t;
            else if (t - t0 > SPIN_US)
                return g;
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct kn_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g = spin_gen(p, seen);
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->work_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop))
            break;
        if (w->tid < p->nth)
            p->fn(p->arg, w->tid, p->nth);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
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
    for (int i = 1; i < p->n; i++) {
        p->workers[i].pool = p;
        p->workers[i].tid = i;
        if (pthread_create(&p->th[i], NULL, worker_main, &p->workers[i]) != 0) {
            log_warn("cpu backend: only %d of %d threads started", i, p->n);
            p->n = i;
            break;
        }
    }
    return p;
}

void kn_pool_free(struct kn_pool *p)
{
    if (p == NULL)
        return;
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
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

void kn_pool_run(struct kn_pool *p, kn_pool_fn fn, void *arg, int nth)
{
    nth = nth < 1 ? 1 : nth > p->n ? p->n : nth;
    if (nth == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->nth = nth;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);     /* pairs with a worker's check before it sleeps */
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, nth);

    int64_t t0 = 0;
    for (unsigned i = 1; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
        cpu_relax();
        if ((i & 255) == 0) {
            int64_t t = mono_us();
            if (t0 == 0) {
                t0 = t;
            } else if (t - t0 > SPIN_US) {
                pthread_mutex_lock(&p->mu);
                while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
                    pthread_cond_wait(&p->done_cv, &p->mu);
                pthread_mutex_unlock(&p->mu);
                break;
            }
        }
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
