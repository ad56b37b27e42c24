/*
 * test_encode.c -- the encoder batching engine (worker/encode.c) with a
 * fake forward: batch planning (round-robin, token and sequence bounds, an
 * over-long input alone), results equal to one-by-one whatever the
 * batching, fairness for a small request behind a large one, cancel,
 * forward failure, load figures.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encode.h"
#include "log.h"
#include "tap.h"
#include "util.h"

#define HID 4
#define CDIM 3

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_closed;
    int fail;
    int n_calls;
    int max_seqs_seen;
    long max_tokens_seen;
    int first_seq_token[256];       /* first token of seq 0 per call */
};

/* Each output depends on its own sequence only. */
static int fake_forward(void *arg, const struct encoder_batch *b, struct encoder_out *out)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    while (f->gate_closed)
        pthread_cond_wait(&f->cv, &f->mu);
    int fail = f->fail;
    if (f->n_calls < 256)
        f->first_seq_token[f->n_calls] = b->n_seqs ? b->tokens[b->seq_start[0]] : -1;
    f->n_calls++;
    if (b->n_seqs > f->max_seqs_seen)
        f->max_seqs_seen = b->n_seqs;
    if (b->seq_start[b->n_seqs] > f->max_tokens_seen)
        f->max_tokens_seen = b->seq_start[b->n_seqs];
    pthread_mutex_unlock(&f->mu);
    if (fail)
        return -1;
    for (int s = 0; s < b->n_seqs; s++) {
        int from = b->seq_start[s], to = b->seq_start[s + 1];
        double sum = 0;
        for (int t = from; t < to; t++)
            sum += b->tokens[t];
        if (out->dense)
            for (int d = 0; d < HID; d++)
                out->dense[s * HID + d] = (float)(sum * (d + 1) + (to - from));
        if (out->scores)
            out->scores[s] = (float)(to - from) + 0.5f;
        for (int t = from; t < to; t++) {
            if (out->sparse)
                out->sparse[t] = (float)b->tokens[t] * 0.25f;
            if (out->colbert)
                for (int d = 0; d < CDIM; d++)
                    out->colbert[t * CDIM + d] = (float)(b->tokens[t] + d);
        }
    }
    return 0;
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
};

static void notify_cb(void *arg)
{
    struct waiter *w = arg;
    pthread_mutex_lock(&w->mu);
    w->n++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Collect outputs until <want> requests came back (or <ms>). */
static int collect(struct encode_engine *e, struct waiter *w, struct encode_output **all,
                   int want, int ms)
{
    int got = 0;
    int64_t deadline = now_ms() + ms;
    while (got < want && now_ms() < deadline) {
        struct encode_output *o = encode_take_outputs(e), *next;
        for (; o; o = next) {
            next = o->next;
            all[got++] = o;
        }
        if (got >= want)
            break;
        pthread_mutex_lock(&w->mu);
        if (w->n == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
        }
        w->n = 0;
        pthread_mutex_unlock(&w->mu);
    }
    return got;
}

static void make_req(struct encode_request *r, uint64_t id, int n, int base_len, unsigned want)
{
    memset(r, 0, sizeof(*r));
    r->id = id;
    r->n_inputs = n;
    r->want = want;
    r->ids = xcalloc((size_t)n, sizeof(int32_t *));
    r->n_ids = xcalloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) {
        int len = base_len + (int)((i * 7 + id * 3) % 11);
        r->n_ids[i] = len;
        r->ids[i] = xmalloc((size_t)len * sizeof(int32_t));
        for (int t = 0; t < len; t++)
            r->ids[i][t] = (int32_t)(id * 1000 + i * 10 + t);
    }
}

static int check_output(const struct encode_output *o, unsigned want)
{
    for (int i = 0; i < o->n_inputs; i++) {
        double sum = 0;
        int len = o->n_ids[i];
        for (int t = 0; t < len; t++)
            sum += o->ids[i][t];
        if (want & ENCODE_DENSE)
            for (int d = 0; d < HID; d++)
                if (o->dense[i * HID + d] != (float)(sum * (d + 1) + len))
                    return 0;
        if ((want & ENCODE_SCORES) && o->scores[i] != (float)len + 0.5f)
            return 0;
        for (int t = 0; t < len; t++) {
            if ((want & ENCODE_SPARSE) && o->sparse[i][t] != (float)o->ids[i][t] * 0.25f)
                return 0;
            if (want & ENCODE_COLBERT)
                for (int d = 0; d < CDIM; d++)
                    if (o->colbert[i][t * CDIM + d] != (float)(o->ids[i][t] + d))
                        return 0;
        }
    }
    return 1;
}

static void test_plan(void)
{
    int lens0[] = { 5, 1, 3, 2 }, order0[] = { 1, 3, 2, 0 };
    int lens1[] = { 4, 4 }, order1[] = { 0, 1 };
    int lens2[] = { 50 }, order2[] = { 0 };
    const int *orders[] = { order0, order1, order2 }, *lens[] = { lens0, lens1, lens2 };
    int left[] = { 4, 2, 1 }, next[] = { 0, 0, 0 };
    struct encode_plan_src s = { 3, left, next, orders, lens };
    int rq[16], ix[16];
    long tok;
    /* round robin: r0 (len 1), r1 (4), r2 (50: too long, not first) ... */
    int n = encode_plan_batch(&s, 12, 16, rq, ix, &tok);
    ok(n == 4 && tok == 11, "plan under 12 tokens: %d seqs, %ld tokens", n, tok);
    ok(rq[0] == 0 && ix[0] == 1 && rq[1] == 1 && ix[1] == 0 && rq[2] == 0 && ix[2] == 3 &&
       rq[3] == 1 && ix[3] == 1, "round-robin order, shortest first; a request stops at its first misfit");
    n = encode_plan_batch(&s, 1000, 3, rq, ix, &tok);
    ok(n == 3 && rq[0] == 0 && rq[1] == 1 && rq[2] == 2, "max_seqs bounds the batch, one per request first");
    /* the over-long input alone */
    int left2[] = { 0, 0, 1 };
    struct encode_plan_src s2 = { 3, left2, next, orders, lens };
    n = encode_plan_batch(&s2, 12, 16, rq, ix, &tok);
    ok(n == 1 && rq[0] == 2 && tok == 50, "an input over the token bound runs alone");
    int left3[] = { 0, 0, 0 };
    struct encode_plan_src s3 = { 3, left3, next, orders, lens };
    ok(encode_plan_batch(&s3, 12, 16, rq, ix, &tok) == 0, "nothing left: empty batch");
    /* partially scheduled request resumes at next */
    int left4[] = { 2, 0, 0 }, next4[] = { 2, 0, 0 };
    struct encode_plan_src s4 = { 3, left4, next4, orders, lens };
    n = encode_plan_batch(&s4, 100, 16, rq, ix, &tok);
    ok(n == 2 && ix[0] == 2 && ix[1] == 0 && tok == 8, "resumes at its next input");
}

static struct encode_engine *start(struct fake *f, struct waiter *w, int max_tok, int max_seqs,
                                   int warm)
{
    static const int32_t warm_ids[] = { 0, 2 };
    struct encode_config c = { .max_num_batched_tokens = max_tok, .max_num_seqs = max_seqs,
                               .hidden = HID, .n_labels = 1, .colbert_dim = CDIM,
                               .forward = fake_forward, .forward_arg = f,
                               .warmup_ids = warm_ids, .n_warmup = warm ? 2 : 0 };
    char err[128];
    struct encode_engine *e = encode_start(&c, notify_cb, w, err, sizeof(err));
    if (e == NULL)
        diag("encode_start: %s", err);
    return e;
}

static void test_results(void)
{
    struct fake f = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, { 0 } };
    struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    struct encode_engine *e = start(&f, &w, 64, 8, 1);
    ok(e != NULL, "engine starts");
    int64_t t0 = now_ms();
    while (!encode_has_run(e) && now_ms() - t0 < 5000)
        usleep(1000);
    ok(encode_has_run(e), "warm-up ran");
    unsigned wants[] = { ENCODE_DENSE, ENCODE_SCORES, ENCODE_DENSE | ENCODE_SPARSE | ENCODE_COLBERT,
                         ENCODE_DENSE, ENCODE_SPARSE, ENCODE_COLBERT, ENCODE_DENSE | ENCODE_SCORES };
    int nreq = (int)(sizeof(wants) / sizeof(wants[0]));
    for (int i = 0; i < nreq; i++) {
        struct encode_request r;
        make_req(&r, (uint64_t)(i + 1), 1 + i * 5, 1 + i * 3, wants[i]);
        ok(encode_submit(e, &r) == 0 && r.ids == NULL, "submit request %d (%d inputs)", i + 1,
           1 + i * 5);
    }
    struct encode_output *all[16];
    int got = collect(e, &w, all, nreq, 5000);
    ok(got == nreq, "all %d requests came back (%d)", nreq, got);
    for (int i = 0; i < got; i++) {
        int k = (int)all[i]->req_id - 1;
        ok(!all[i]->error && check_output(all[i], wants[k]),
           "request %d: every result belongs to its own input", k + 1);
        long tok = 0;
        for (int j = 0; j < all[i]->n_inputs; j++)
            tok += all[i]->n_ids[j];
        ok(all[i]->n_tokens == tok, "request %d: n_tokens", k + 1);
        encode_output_free(all[i]);
    }
    ok(f.max_seqs_seen <= 8, "batches hold at most 8 sequences (%d)", f.max_seqs_seen);
    ok(f.max_tokens_seen <= 64, "batches hold at most 64 tokens (%ld)", f.max_tokens_seen);
    struct encode_load l;
    encode_get_load(e, &l);
    ok(l.batches > 1 && l.inputs_waiting == 0 && l.waiting == 0 && l.tokens_done > 0,
       "load: %llu batches, nothing waiting", (unsigned long long)l.batches);
    encode_stop(e);
}

static void test_fairness_cancel_fail(void)
{
    struct fake f = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1, 0, 0, 0, 0, { 0 } };
    struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
    struct encode_engine *e = start(&f, &w, 1000, 4, 0);
    struct encode_request big, small;
    make_req(&big, 1, 200, 5, ENCODE_DENSE);
    make_req(&small, 2, 2, 5, ENCODE_DENSE);
    encode_submit(e, &big);
    usleep(20000);              /* the first batch (big's) waits at the gate */
    encode_submit(e, &small);
    struct encode_load l;
    encode_get_load(e, &l);
    ok(l.inputs_waiting == 196 + 2, "load: %ld inputs waiting", l.inputs_waiting);
    pthread_mutex_lock(&f.mu);
    f.gate_closed = 0;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    struct encode_output *all[4];
    int got = collect(e, &w, all, 2, 5000);
    ok(got == 2 && all[0]->req_id == 2 && all[1]->req_id == 1,
       "the small request finishes before the large one queued ahead of it");
    ok(f.n_calls >= 50, "the large request ran over many batches (%d)", f.n_calls);
    for (int i = 0; i < got; i++) {
        ok(check_output(all[i], ENCODE_DENSE), "request %llu results",
           (unsigned long long)all[i]->req_id);
        encode_output_free(all[i]);
    }

    /* cancel: the gate holds the first batch; cancel; nothing comes back */
    pthread_mutex_lock(&f.mu);
    f.gate_closed = 1;
    int calls0 = f.n_calls;
    pthread_mutex_unlock(&f.mu);
    make_req(&big, 3, 400, 5, ENCODE_DENSE);
    encode_submit(e, &big);
    usleep(20000);
    encode_cancel(e, 3);
    pthread_mutex_lock(&f.mu);
    f.gate_closed = 0;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    make_req(&small, 4, 3, 2, ENCODE_DENSE);
    encode_submit(e, &small);
    got = collect(e, &w, all, 1, 5000);
    ok(got == 1 && all[0]->req_id == 4, "after a cancel the next request is served");
    ok(f.n_calls - calls0 <= 3, "the cancelled request's remaining inputs never ran (%d calls)",
       f.n_calls - calls0);
    for (int i = 0; i < got; i++)
        encode_output_free(all[i]);
    got = collect(e, &w, all, 1, 300);
    ok(got == 0, "no output for the cancelled request");
    encode_get_load(e, &l);
    ok(l.inputs_waiting == 0 && l.waiting == 0, "load after cancel: nothing waiting");

    /* a failing forward: an error output */
    f.fail = 1;
    make_req(&small, 5, 3, 2, ENCODE_DENSE);
    encode_submit(e, &small);
    got = collect(e, &w, all, 1, 5000);
    ok(got == 1 && all[0]->error && all[0]->message[0], "a failed forward gives an error output");
    for (int i = 0; i < got; i++)
        encode_output_free(all[i]);
    f.fail = 0;

    /* requests still queued at stop are freed (ASan checks) */
    pthread_mutex_lock(&f.mu);
    f.gate_closed = 1;
    pthread_mutex_unlock(&f.mu);
    make_req(&big, 6, 50, 5, ENCODE_DENSE);
    encode_submit(e, &big);
    usleep(10000);
    pthread_mutex_lock(&f.mu);
    f.gate_closed = 0;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    encode_stop(e);
    ok(1, "stop with work queued");
}

int main(void)
{
    log_init("test_encode");
    log_set_level(LOG_WARN);
    test_plan();
    test_results();
    test_fairness_cancel_fail();
    return tap_done();
}
