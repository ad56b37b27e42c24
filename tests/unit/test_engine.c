/*
 * test_engine.c -- the engine end to end: batching invariance, chunked
 * prefill, prefix cache hits, preemption with a tiny KV cache, abort,
 * requests that can never fit, max_tokens, stop ids, seeded sampling and
 * logprobs. Built twice: test_engine drives a real tiny Qwen3 made by
 * tests/tools/mkmodel on the cpu backend; test_engine_fake (compiled with
 * TEST_ENGINE_FAKE_MODEL) links a fake model below whose logits are a hash
 * of the context it READS BACK from its paged cache, so any block-table,
 * prefix-cache or recompute mistake changes the tokens.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine.h"
#include "log.h"
#include "model.h"
#include "tap.h"
#include "util.h"

#ifdef TEST_ENGINE_FAKE_MODEL
/* ---- the fake model ------------------------------------------------------ */

struct model {
    struct model_config cfg;
    int n_blocks, block_size;
    int32_t *kv_tok, *kv_pos;   /* (n_blocks * block_size) */
    int corrupt;                /* a slot held the wrong position */
    int forwards;
    int delay_us;               /* per forward, to make timing tests robust */
};

const struct model_config *model_get_config(const struct model *m)
{
    return &m->cfg;
}

size_t model_kv_block_bytes(const struct model *m, int block_size)
{
    (void)m;
    return (size_t)block_size * 8;
}

int model_kv_alloc(struct model *m, int n_blocks, int block_size)
{
    free(m->kv_tok);
    free(m->kv_pos);
    m->n_blocks = n_blocks;
    m->block_size = block_size;
    m->kv_tok = xmalloc((size_t)n_blocks * block_size * sizeof(int32_t));
    m->kv_pos = xmalloc((size_t)n_blocks * block_size * sizeof(int32_t));
    for (int i = 0; i < n_blocks * block_size; i++)
        m->kv_pos[i] = -1;
    return 0;
}

/* Logits of the context <ctx>[0..n): a fixed function of its tokens. */
static void fake_logits(const int32_t *ctx, int n, int vocab, float *out)
{
    uint64_t h = hash64(ctx, (size_t)n * sizeof(int32_t), 77);
    for (int v = 0; v < vocab; v++) {
        uint64_t x = hash64(&v, sizeof(v), h);
        out[v] = (float)((double)(x >> 40) * 0x1.0p-24 * 8.0 - 4.0);
    }
}

int model_forward(struct model *m, const struct model_batch *b, float *logits)
{
    int row = 0, bs = m->block_size;
    int32_t *ctx = xmalloc(sizeof(int32_t) * 8192);
    m->forwards++;
    if (m->delay_us)
        usleep((useconds_t)m->delay_us);
    for (int i = 0; i < b->n_seqs; i++) {
        const int32_t *bt = b->block_table + (size_t)i * b->max_blocks;
        int s0 = b->seq_start[i], n_new = b->seq_start[i + 1] - s0, len = b->seq_len[i];
        for (int j = 0; j < n_new; j++) {
            int p = len - n_new + j, blk = bt[p / bs];
            if (b->positions[s0 + j] != p || blk < 0 || blk >= m->n_blocks)
                m->corrupt = 1;
            else {
                m->kv_tok[blk * bs + p % bs] = b->tokens[s0 + j];
                m->kv_pos[blk * bs + p % bs] = p;
            }
        }
        for (; row < b->n_logits && b->logit_rows[row] < s0 + n_new; row++) {
            int p = len - n_new + (b->logit_rows[row] - s0);
            for (int q = 0; q <= p && q < 8192; q++) {
                int slot = bt[q / bs] * bs + q % bs;
                if (m->kv_pos[slot] != q)
                    m->corrupt = 1;
                ctx[q] = m->kv_tok[slot];
            }
            fake_logits(ctx, p + 1, m->cfg.vocab_size, logits + (size_t)row * m->cfg.vocab_size);
        }
    }
    free(ctx);
    return 0;
}

static struct model *test_model_open(void)
{
    struct model *m = xcalloc(1, sizeof(*m));
    m->cfg.vocab_size = 64;
    m->cfg.max_position_embeddings = 4096;
    return m;
}

static void test_model_close(struct model *m)
{
    free(m->kv_tok);
    free(m->kv_pos);
    free(m);
}

#define VOCAB 64
#define MODEL_NAME "fake model"
#else
/* ---- a real tiny model ----------------------------------------------------- */

static struct kn_backend *backend;
static char tmpdir[] = "/tmp/llmux-test-engine-XXXXXX";

static struct model *test_model_open(void)
{
    const char *b = getenv("LLMUX_BUILDDIR");
    char *mk = b ? xasprintf("%s/tests/tools/mkmodel", b) : xstrdup("tests/tools/mkmodel");
    char *dir, err[512] = "";
    struct model *m = NULL;
    pid_t pid;
    int st = -1;

    if (access(mk, X_OK) != 0 || !mkdtemp(tmpdir)) {
        free(mk);
        tap_skip_all("tests/tools/mkmodel not built");
    }
    dir = xasprintf("%s/m", tmpdir);
    pid = fork();
    if (pid == 0) {
        execl(mk, mk, "--out", dir, "--vocab", "300", "--hidden", "32", "--heads", "2",
              "--kv-heads", "1", "--head-dim", "16", "--intermediate", "64", "--layers", "2",
              "--max-pos", "4096", (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, &st, 0);
    backend = kn_backend_init("cpu", 0);
    if (st == 0 && backend)
        m = model_load(dir, backend, err, sizeof(err));
    if (!m) {
        printf("# cannot make or load the tiny model: %s\n", err);
        printf("1..0 # SKIP no tiny model\n");
        exit(0);
    }
    free(mk);
    free(dir);
    return m;
}

static void test_model_close(struct model *m)
{
    char *cmd = xasprintf("rm -rf %s", tmpdir);
    model_free(m);
    kn_backend_free(backend);
    if (system(cmd) != 0)
        diag("could not remove %s", tmpdir);
    free(cmd);
}

#define VOCAB 300
#define MODEL_NAME "tiny qwen3"
#endif

/* ---- running requests ------------------------------------------------------- */

#define MAX_IDS 64
#define MAX_TOK 256

struct result {
    int done, n, n_outputs, n_cached;
    enum finish_reason finish;
    int32_t tokens[MAX_TOK];
    float logprob[MAX_TOK];
    int rank[MAX_TOK], n_top[MAX_TOK];
    int32_t stop_token;
    char error[160];
    struct token_logprob *prompt_lp;
    int n_prompt_lp;
    int finish_order;
};

static struct model *model;
static struct result res[MAX_IDS];
static uint64_t next_id = 1;
static int notifies;
static int32_t cur_eos = VOCAB - 1;
static int cur_priority, finish_counter;
static pthread_mutex_t notify_mu = PTHREAD_MUTEX_INITIALIZER;

static void on_notify(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&notify_mu);
    notifies++;
    pthread_mutex_unlock(&notify_mu);
}

static struct engine *start(int n_blocks, int block_size, int max_tokens_step, int max_seqs,
                            int prefix)
{
    char err[256] = "";
    int32_t eos = cur_eos;
    struct engine_config c = { .block_size = block_size, .n_blocks = n_blocks,
                               .max_num_seqs = max_seqs,
                               .max_num_batched_tokens = max_tokens_step,
                               .enable_prefix_caching = prefix, .eos_ids = &eos,
                               .n_eos_ids = 1 };
    struct engine *e = engine_start(model, &c, on_notify, NULL, err, sizeof(err));
    if (!e)
        diag("engine_start: %s", err);
    return e;
}

static void result_clear(struct result *r)
{
    if (r->prompt_lp) {
        for (int i = 0; i < r->n_prompt_lp; i++) {
            free(r->prompt_lp[i].top_ids);
            free(r->prompt_lp[i].top_logprobs);
        }
        free(r->prompt_lp);
    }
    memset(r, 0, sizeof(*r));
}

static uint64_t submit(struct engine *e, const int32_t *prompt, int n,
                       const struct sampling_params *sp)
{
    struct engine_request *r = xcalloc(1, sizeof(*r));
    uint64_t id = next_id++ % MAX_IDS;
    if (id == 0)
        id = next_id++ % MAX_IDS;
    result_clear(&res[id]);
    r->id = id;
    r->prompt = xmalloc((size_t)n * sizeof(int32_t));
    memcpy(r->prompt, prompt, (size_t)n * sizeof(int32_t));
    r->n_prompt = n;
    r->priority = cur_priority;
    r->sp = *sp;
    if (sp->n_stop_token_ids) {
        r->sp.stop_token_ids = xmalloc((size_t)sp->n_stop_token_ids * sizeof(int32_t));
        memcpy(r->sp.stop_token_ids, sp->stop_token_ids,
               (size_t)sp->n_stop_token_ids * sizeof(int32_t));
    }
    if (engine_add_request(e, r) != 0)
        engine_request_free(r);
    return id;
}

static void take(struct engine *e)
{
    struct engine_output *o = engine_take_outputs(e), *next;
    for (; o; o = next) {
        struct result *r = &res[o->req_id];
        next = o->next;
        if (r->n_outputs++ == 0) {
            r->n_cached = o->n_cached_tokens;
            r->prompt_lp = o->prompt_logprobs;
            r->n_prompt_lp = o->n_prompt_logprobs;
            o->prompt_logprobs = NULL;
            o->n_prompt_logprobs = 0;
        }
        for (int i = 0; i < o->n_tokens && r->n < MAX_TOK; i++, r->n++) {
            r->tokens[r->n] = o->tokens[i];
            if (o->logprobs) {
                r->logprob[r->n] = o->logprobs[i].logprob;
                r->rank[r->n] = o->logprobs[i].rank;
                r->n_top[r->n] = o->logprobs[i].n_top;
            }
        }
        if (o->finish != FINISH_NONE) {
            r->done = 1;
            r->finish_order = ++finish_counter;
            r->finish = o->finish;
            r->stop_token = o->stop_token;
            memcpy(r->error, o->error, sizeof(r->error));
        }
        engine_output_free(o);
    }
}

/* Wait until every id in <ids> is done (20 s at most). 1 when they are. */
static int wait_all(struct engine *e, const uint64_t *ids, int n)
{
    int64_t end = now_ms() + 20000;
    for (;;) {
        int all = 1;
        take(e);
        for (int i = 0; i < n; i++)
            all &= res[ids[i]].done;
        if (all)
            return 1;
        if (now_ms() > end)
            return 0;
        usleep(500);
    }
}

static uint64_t run_one(struct engine *e, const int32_t *prompt, int n,
                        const struct sampling_params *sp)
{
    uint64_t id = submit(e, prompt, n, sp);
    if (!wait_all(e, &id, 1))
        diag("request %llu did not finish", (unsigned long long)id);
    return id;
}

static int same_tokens(const struct result *a, const struct result *b)
{
    return a->n == b->n && memcmp(a->tokens, b->tokens, (size_t)a->n * sizeof(int32_t)) == 0;
}

static void make_prompt(int32_t *p, int n, int seed)
{
    uint64_t h = (uint64_t)seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < n; i++) {
        h = h * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (int32_t)((h >> 33) % (VOCAB - 1));
    }
}

static struct sampling_params greedy(int max_tokens)
{
    struct sampling_params sp;
    sampling_params_default(&sp);
    sp.temperature = 0;
    sp.max_tokens = max_tokens;
    sp.ignore_eos = 1;
    return sp;
}

/* ---- the tests --------------------------------------------------------------- */

static void test_batching(void)
{
    struct engine *e = start(64, 4, 64, 16, 0);
    int32_t prompts[6][40];
    int lens[6] = { 9, 17, 3, 30, 12, 40 };
    struct sampling_params sp = greedy(10);
    uint64_t alone[6], ids[6], dup[2];
    struct result keep[6];
    int same = 1;

    ok(e && engine_has_stepped(e), "engine started, warm-up step ran");
    if (!e)
        return;
    for (int i = 0; i < 6; i++) {
        make_prompt(prompts[i], lens[i], i);
        alone[i] = run_one(e, prompts[i], lens[i], &sp);
        keep[i] = res[alone[i]];
        keep[i].prompt_lp = NULL;
    }
    ok(keep[0].n == 10 && keep[0].finish == FINISH_LENGTH,
       "max_tokens 10: 10 tokens, finish length");
    for (int i = 0; i < 6; i++)
        ids[i] = submit(e, prompts[i], lens[i], &sp);
    ok(wait_all(e, ids, 6), "six requests at once finish");
    for (int i = 0; i < 6; i++)
        same &= same_tokens(&res[ids[i]], &keep[i]);
    ok(same, "each request's greedy tokens in a busy batch equal those run alone");
    /* n=2 style: two requests with the same prompt in the same step */
    dup[0] = submit(e, prompts[3], lens[3], &sp);
    dup[1] = submit(e, prompts[3], lens[3], &sp);
    ok(wait_all(e, dup, 2) && same_tokens(&res[dup[0]], &keep[3]) &&
       same_tokens(&res[dup[1]], &keep[3]), "the same prompt twice in one step");
    engine_stop(e);

    /* chunked prefill: 3 tokens per step */
    e = start(64, 4, 3, 16, 0);
    same = 1;
    for (int i = 0; i < 6; i++)
        ids[i] = submit(e, prompts[i], lens[i], &sp);
    ok(wait_all(e, ids, 6), "chunked: all finish");
    for (int i = 0; i < 6; i++)
        same &= same_tokens(&res[ids[i]], &keep[i]);
    ok(same, "chunked prefill (3 tokens a step) gives the same tokens");
    engine_stop(e);

    /* max_num_seqs 2: the rest waits its turn */
    e = start(64, 4, 64, 2, 1);
    same = 1;
    for (int i = 0; i < 6; i++)
        ids[i] = submit(e, prompts[i], lens[i], &sp);
    ok(wait_all(e, ids, 6), "max_num_seqs 2: all finish");
    for (int i = 0; i < 6; i++)
        same &= same_tokens(&res[ids[i]], &keep[i]);
    ok(same, "max_num_seqs 2: same tokens");
    engine_stop(e);
}

static void test_prefix_cache(void)
{
    struct engine *e = start(64, 4, 64, 16, 1);
    int32_t p[30], q[30];
    struct sampling_params sp = greedy(6);
    struct engine_load ld;
    uint64_t a, b, c;

    if (!e)
        return;
    make_prompt(p, 30, 11);
    memcpy(q, p, sizeof(q));
    q[25] = (q[25] + 1) % (VOCAB - 1);
    a = run_one(e, p, 30, &sp);
    b = run_one(e, p, 30, &sp);
    ok(res[a].n_cached == 0, "first run: nothing cached");
    ok(res[b].n_cached == 28, "repeat: 28 of 30 prompt tokens cached (7 full blocks of 4), "
       "got %d", res[b].n_cached);
    ok(same_tokens(&res[a], &res[b]), "repeat: same tokens");
    c = run_one(e, q, 30, &sp);
    ok(res[c].n_cached == 24, "a prompt differing at 25 reuses 6 blocks, got %d",
       res[c].n_cached);
    {
        /* exact boundary: 32 tokens = 8 full blocks; the last stays to compute */
        int32_t r[32];
        uint64_t x, y;
        make_prompt(r, 32, 12);
        x = run_one(e, r, 32, &sp);
        y = run_one(e, r, 32, &sp);
        ok(res[y].n_cached == 28 && same_tokens(&res[x], &res[y]),
           "block-aligned prompt: 7 of 8 blocks reused, same tokens");
    }
    engine_get_load(e, &ld);
    ok(ld.prefix_cache_hits == 28 + 24 + 28 && ld.prefix_cache_queries == 30 * 3 + 32 * 2,
       "/load: prefix cache %llu hits of %llu queried tokens",
       (unsigned long long)ld.prefix_cache_hits, (unsigned long long)ld.prefix_cache_queries);
    ok(ld.kv_blocks_total == 64 && ld.kv_blocks_free == 64 && ld.running == 0 &&
       ld.waiting == 0 && ld.steps > 0, "/load: all blocks free when idle");
    ok(ld.generation_tokens_per_s > 0 && ld.prompt_tokens_per_s > 0,
       "/load: tokens/s %.1f prompt, %.1f generation", ld.prompt_tokens_per_s,
       ld.generation_tokens_per_s);
    engine_stop(e);
}

static void test_preemption(void)
{
    /* 10 blocks of 4 = 40 tokens; each request needs up to 24 */
    struct engine *big = start(64, 4, 64, 16, 1), *e;
    int32_t prompts[5][14];
    struct sampling_params sp = greedy(10);
    struct result keep[5];
    uint64_t ids[5];
    struct engine_load ld;
    int same = 1;

    if (!big)
        return;
    for (int i = 0; i < 5; i++) {
        make_prompt(prompts[i], 14, 20 + i);
        keep[i] = res[run_one(big, prompts[i], 14, &sp)];
        keep[i].prompt_lp = NULL;
    }
    engine_stop(big);
    for (int prefix = 0; prefix <= 1; prefix++) {
        e = start(10, 4, 64, 16, prefix);
        same = 1;
        for (int i = 0; i < 5; i++)
            ids[i] = submit(e, prompts[i], 14, &sp);
        ok(wait_all(e, ids, 5), "tiny cache (prefix caching %s): five requests finish",
           prefix ? "on" : "off");
        for (int i = 0; i < 5; i++)
            same &= same_tokens(&res[ids[i]], &keep[i]) && res[ids[i]].finish == FINISH_LENGTH;
        engine_get_load(e, &ld);
        ok(same, "preempted requests give the tokens they give alone");
        ok(ld.preemptions > 0, "preemptions happened (%llu)",
           (unsigned long long)ld.preemptions);
        ok(ld.kv_blocks_free == 10, "every block free afterwards");
        engine_stop(e);
    }
}

static void test_finish_reasons(void)
{
    struct engine *e = start(16, 4, 64, 16, 1);
    int32_t p[20];
    struct sampling_params sp = greedy(8);
    uint64_t a, b, c;

    if (!e)
        return;
    make_prompt(p, 20, 31);
    sp.max_tokens = 60;
    a = run_one(e, p, 20, &sp);
    ok(res[a].finish == FINISH_ERROR && strstr(res[a].error, "KV cache") && res[a].n == 0,
       "80 tokens in a 64-token cache: error \"%s\"", res[a].error);
    sp.max_tokens = 46;
    b = run_one(e, p, 20, &sp);
    ok(res[b].finish == FINISH_ERROR, "66 tokens (65 cached) do not fit");
    sp.max_tokens = 45;
    b = run_one(e, p, 20, &sp);
    ok(res[b].finish == FINISH_LENGTH && res[b].n == 45,
       "65 tokens fit 64 slots: the last one is never cached");
    {
        const struct engine_config *ec = engine_get_config(e);
        ok(ec->n_blocks == 16 && ec->block_size == 4 && ec->max_model_len ==
           model_get_config(model)->max_position_embeddings && ec->max_num_seqs == 16 &&
           ec->n_eos_ids == 1 && ec->eos_ids[0] == VOCAB - 1,
           "engine_get_config: defaults filled in");
    }
    sp.max_tokens = 1;
    c = run_one(e, p, 20, &sp);
    ok(res[c].finish == FINISH_LENGTH && res[c].n == 1 && res[c].n_outputs == 1,
       "max_tokens 1: one output, one token");
    {
        struct engine_request *r = xcalloc(1, sizeof(*r));
        r->id = 60;
        result_clear(&res[60]);
        sampling_params_default(&r->sp);
        engine_add_request(e, r);
        uint64_t id = 60;
        ok(wait_all(e, &id, 1) && res[60].finish == FINISH_ERROR, "empty prompt: error");
        int32_t bad[2] = { 1, VOCAB + 5 };
        id = run_one(e, bad, 2, &sp);
        ok(res[id].finish == FINISH_ERROR && strstr(res[id].error, "vocabulary"),
           "out-of-vocabulary prompt id: error");
    }
    /* stop ids: stop at the 4th greedy token, which is emitted */
    {
        struct sampling_params s2 = greedy(8);
        int32_t stop, first;
        uint64_t d, f;
        s2.max_tokens = 8;
        d = run_one(e, p, 8, &s2);
        stop = res[d].tokens[3];
        for (first = 0; res[d].tokens[first] != stop; first++)
            ;
        s2.stop_token_ids = &stop;
        s2.n_stop_token_ids = 1;
        f = run_one(e, p, 8, &s2);
        ok(res[f].finish == FINISH_STOP && res[f].stop_token == stop && res[f].n == first + 1 &&
           res[f].tokens[first] == stop, "stop_token_ids: finish stop at its first occurrence");
        s2.min_tokens = 6;
        f = run_one(e, p, 8, &s2);
        {
            int early = 0;
            for (int i = 0; i < res[f].n && i < 5; i++)
                early |= res[f].tokens[i] == stop;
            ok(!early && res[f].n >= 6, "min_tokens 6: the stop id is not produced before");
        }
        /* eos from the engine config: the 3rd greedy token becomes eos */
        cur_eos = res[d].tokens[2];
        {
            struct engine *e2 = start(16, 4, 64, 16, 1);
            uint64_t x, y;
            for (first = 0; res[d].tokens[first] != cur_eos; first++)
                ;
            s2 = greedy(8);
            s2.ignore_eos = 0;
            x = run_one(e2, p, 8, &s2);
            ok(res[x].finish == FINISH_STOP && res[x].stop_token == cur_eos &&
               res[x].n == first + 1, "eos: finish stop, the eos token emitted last");
            s2.ignore_eos = 1;
            y = run_one(e2, p, 8, &s2);
            ok(res[y].finish == FINISH_LENGTH && same_tokens(&res[y], &res[d]),
               "ignore_eos: runs to max_tokens");
            engine_stop(e2);
        }
        cur_eos = VOCAB - 1;
    }
    engine_stop(e);
}

static void test_abort(void)
{
    struct engine *e = start(1024, 4, 64, 16, 1);
    int32_t p[10];
    struct sampling_params sp = greedy(4000);
    struct engine_load ld;
    uint64_t a, b;
    int64_t end;
    int done;

    if (!e)
        return;
    make_prompt(p, 10, 41);
    a = submit(e, p, 10, &sp);
    end = now_ms() + 10000;
    while (res[a].n < 2 && now_ms() < end) {
        take(e);
        usleep(200);
    }
    engine_abort(e, a);
    engine_abort(e, 9999);      /* unknown: ignored */
    done = wait_all(e, &a, 1);
    ok(done && res[a].finish == FINISH_ABORT && res[a].n < 4000,
       "abort mid-generation: FINISH_ABORT after %d tokens (finish %d)", res[a].n,
       (int)res[a].finish);
    /* abort before it ever ran */
    b = submit(e, p, 10, &sp);
    engine_abort(e, b);
    ok(wait_all(e, &b, 1) && res[b].finish == FINISH_ABORT, "abort of a queued request");
    usleep(20000);
    engine_get_load(e, &ld);
    ok(ld.kv_blocks_free == 1024 && ld.running == 0, "aborted requests freed their blocks");
    pthread_mutex_lock(&notify_mu);
    ok(notifies > 0, "notify was called (%d times)", notifies);
    pthread_mutex_unlock(&notify_mu);
    /* stop with requests in flight: dropped, no leak */
    submit(e, p, 10, &sp);
    submit(e, p, 10, &sp);
    engine_stop(e);
    ok(1, "stop with requests in flight");
}

static void test_seeded(void)
{
    struct engine *e = start(64, 4, 64, 16, 1);
    int32_t p[12], others[4][12];
    struct sampling_params sp;
    uint64_t a, b, c, ids[5];
    int differs = 0;

    if (!e)
        return;
    sampling_params_default(&sp);
    sp.temperature = 1;
    sp.max_tokens = 12;
    sp.ignore_eos = 1;
    sp.has_seed = 1;
    sp.seed = 1234;
    make_prompt(p, 12, 51);
    a = run_one(e, p, 12, &sp);
    b = run_one(e, p, 12, &sp);
    ok(res[a].n == 12 && same_tokens(&res[a], &res[b]), "same seed, same prompt: same tokens");
    /* inside a batch of other seeded and unseeded requests */
    for (int i = 0; i < 4; i++) {
        struct sampling_params o = sp;
        make_prompt(others[i], 12, 60 + i);
        o.has_seed = i & 1;
        o.seed = 99 + (uint64_t)i;
        ids[i] = submit(e, others[i], 12, &o);
    }
    ids[4] = submit(e, p, 12, &sp);
    ok(wait_all(e, ids, 5) && same_tokens(&res[ids[4]], &res[a]),
       "same seed inside a busy batch: same tokens");
    sp.seed = 4321;
    c = run_one(e, p, 12, &sp);
    for (int i = 0; i < 12; i++)
        differs |= res[c].tokens[i] != res[a].tokens[i];
    ok(differs, "another seed: other tokens");
    engine_stop(e);
}

static void test_logprobs(void)
{
    struct engine *e = start(64, 4, 64, 16, 1), *chunked;
    int32_t p[14];
    struct sampling_params sp = greedy(5);
    uint64_t a, b, g;
    int ok_rank = 1, same = 1;

    if (!e)
        return;
    make_prompt(p, 14, 71);
    g = run_one(e, p, 14, &sp);     /* warms the prefix cache */
    sp.logprobs = 3;
    sp.prompt_logprobs = 2;
    a = run_one(e, p, 14, &sp);
    ok(same_tokens(&res[a], &res[g]), "logprobs do not change greedy tokens");
    ok(res[a].n_cached == 0, "prompt_logprobs bypass the prefix cache");
    for (int i = 0; i < res[a].n; i++)
        ok_rank &= res[a].rank[i] == 1 && res[a].n_top[i] == 3 && res[a].logprob[i] <= 0;
    ok(ok_rank, "greedy tokens have rank 1, 3 alternatives, logprob <= 0");
    ok(res[a].n_prompt_lp == 14 && res[a].prompt_lp && isnan(res[a].prompt_lp[0].logprob) &&
       res[a].prompt_lp[0].n_top == 0, "14 prompt logprob entries, the first empty");
    {
        int good = res[a].n_prompt_lp == 14;
        for (int i = 1; good && i < 14; i++) {
            struct token_logprob *lp = &res[a].prompt_lp[i];
            good &= lp->id == p[i] && lp->logprob <= 0 && lp->rank >= 1 && lp->n_top == 2 &&
                    lp->top_logprobs[0] >= lp->top_logprobs[1] &&
                    (lp->rank > 1 || lp->top_ids[0] == p[i]);
        }
        ok(good, "prompt logprob entries: ids, ranks, two alternatives");
    }
#ifdef TEST_ENGINE_FAKE_MODEL
    {
        /* exact values: log_softmax of the fake logits of each prefix */
        float lg[VOCAB];
        double worst = 0;
        for (int i = 1; i < 14 && res[a].n_prompt_lp == 14; i++) {
            double m = -INFINITY, z = 0;
            fake_logits(p, i, VOCAB, lg);
            for (int v = 0; v < VOCAB; v++)
                m = lg[v] > m ? lg[v] : m;
            for (int v = 0; v < VOCAB; v++)
                z += exp(lg[v] - m);
            double want = lg[p[i]] - m - log(z);
            double d = fabs(want - res[a].prompt_lp[i].logprob);
            worst = d > worst ? d : worst;
        }
        ok(worst < 1e-5, "prompt logprobs equal log_softmax of the context's logits (%.2g)",
           worst);
    }
#endif
    engine_stop(e);
    chunked = start(64, 4, 3, 16, 1);
    if (!chunked)
        return;
    b = run_one(chunked, p, 14, &sp);
    for (int i = 1; i < 14 && res[b].n_prompt_lp == 14 && res[a].n_prompt_lp == 14; i++)
        same &= fabsf(res[b].prompt_lp[i].logprob - res[a].prompt_lp[i].logprob) < 1e-4f &&
                res[b].prompt_lp[i].rank == res[a].prompt_lp[i].rank;
    ok(same && res[b].n_prompt_lp == 14 && same_tokens(&res[a], &res[b]),
       "prompt logprobs over 3-token chunks match one-chunk ones");
    engine_stop(chunked);
}

/* Many requests with shared prefixes, mixed greedy and seeded sampling, a
 * tiny cache, a tiny token budget and a few aborts: every request that was
 * not aborted gives exactly the tokens it gives alone in a large cache. */
static void test_stress(void)
{
    enum { N = 40 };
    static int32_t prompts[N][48];
    int lens[N];
    struct sampling_params sps[N];
    struct result *alone = xcalloc(N, sizeof(*alone));
    uint64_t ids[N];
    struct engine *e = start(512, 4, 512, 64, 1);
    struct engine_load ld;
    uint64_t h = 5;
    int same = 1, aborted = 0, n_done;

    if (!e) {
        free(alone);
        return;
    }
    make_prompt(prompts[0], 48, 90);
    for (int i = 0; i < N; i++) {
        h = h * 6364136223846793005ULL + 1442695040888963407ULL;
        lens[i] = 1 + (int)((h >> 33) % 40);
        /* a third share the first 16 tokens of prompt 0 */
        make_prompt(prompts[i], 48, 100 + i);
        if (i % 3 == 0)
            memcpy(prompts[i], prompts[0], 16 * sizeof(int32_t));
        sps[i] = greedy(1 + (int)((h >> 20) % 30));
        if (i % 2) {
            sps[i].temperature = 0.8f;
            sps[i].top_p = 0.9f;
            sps[i].has_seed = 1;
            sps[i].seed = (uint64_t)i;
        }
        alone[i] = res[run_one(e, prompts[i], lens[i], &sps[i])];
        alone[i].prompt_lp = NULL;
    }
    engine_stop(e);
    e = start(24, 4, 7, 5, 1);
    for (int i = 0; i < N; i++)
        ids[i] = submit(e, prompts[i], lens[i], &sps[i]);
    for (int i = 5; i < N; i += 11) {
        engine_abort(e, ids[i]);
        aborted++;
    }
    n_done = wait_all(e, ids, N);
    ok(n_done, "stress: %d requests finish in a 24-block cache, 7 tokens a step", N);
    for (int i = 0; i < N; i++) {
        if (res[ids[i]].finish == FINISH_ABORT)
            continue;
        if (!same_tokens(&res[ids[i]], &alone[i]) || res[ids[i]].finish != alone[i].finish) {
            diag("request %d: %d tokens, alone %d", i, res[ids[i]].n, alone[i].n);
            same = 0;
        }
    }
    engine_get_load(e, &ld);
    ok(same, "stress: every finished request matches its run alone");
    ok(ld.preemptions > 0 && ld.prefix_cache_hits > 0,
       "stress: %llu preemptions, %llu prefix-cached tokens",
       (unsigned long long)ld.preemptions, (unsigned long long)ld.prefix_cache_hits);
    ok(ld.kv_blocks_free == 24 && ld.running == 0 && ld.waiting == 0,
       "stress: idle afterwards with every block free");
    engine_stop(e);
    free(alone);
}

/* Preemption picks the largest priority value even when it was admitted
 * first: A (priority 5) starts, B (priority 0) arrives a step later and
 * the cache cannot hold both to the end; A is preempted, B finishes first,
 * both give the tokens they give alone. */
static void test_priority(void)
{
    struct engine *e = start(64, 4, 64, 16, 1);
    int32_t pa[14], pb[14];
    struct sampling_params sa = greedy(100), sb = greedy(100);
    struct result ra, rb;
    struct engine_load ld;
    uint64_t ids[2];
    int64_t end;
    int order_ok;

    if (!e)
        return;
    make_prompt(pa, 14, 301);
    make_prompt(pb, 14, 302);
    ra = res[run_one(e, pa, 14, &sa)];
    rb = res[run_one(e, pb, 14, &sb)];
    ra.prompt_lp = rb.prompt_lp = NULL;
    engine_stop(e);
#ifdef TEST_ENGINE_FAKE_MODEL
    model->delay_us = 300;
#endif
    e = start(40, 4, 64, 16, 0);
    cur_priority = 5;
    ids[0] = submit(e, pa, 14, &sa);
    cur_priority = 0;
    end = now_ms() + 10000;
    while (res[ids[0]].n < 1 && now_ms() < end) {
        take(e);
        usleep(100);
    }
    ids[1] = submit(e, pb, 14, &sb);
    order_ok = wait_all(e, ids, 2);
    engine_get_load(e, &ld);
#ifdef TEST_ENGINE_FAKE_MODEL
    model->delay_us = 0;
#endif
    ok(order_ok && same_tokens(&res[ids[0]], &ra) && same_tokens(&res[ids[1]], &rb),
       "priority: both give the tokens they give alone");
    ok(ld.preemptions == 0 || res[ids[1]].finish_order < res[ids[0]].finish_order,
       "priority: the priority-5 request is the one preempted (%llu preemptions)",
       (unsigned long long)ld.preemptions);
#ifdef TEST_ENGINE_FAKE_MODEL
    ok(ld.preemptions > 0, "priority: the cache forced a preemption");
#endif
    engine_stop(e);
}

/* Requests and aborts from several threads at once while outputs are taken
 * on this one. */
struct submitter {
    struct engine *e;
    int base;
    uint64_t ids[6];
};

static pthread_mutex_t submit_mu = PTHREAD_MUTEX_INITIALIZER;

static void *submit_thread(void *arg)
{
    struct submitter *s = arg;
    for (int i = 0; i < 6; i++) {
        int32_t p[9];
        struct sampling_params sp = greedy(4 + i);
        make_prompt(p, 9, s->base + i);
        pthread_mutex_lock(&submit_mu);     /* guards next_id and res[] only */
        s->ids[i] = submit(s->e, p, 9, &sp);
        pthread_mutex_unlock(&submit_mu);
        if (i == 5)
            engine_abort(s->e, s->ids[i]);
    }
    return NULL;
}

static void test_threads(void)
{
    struct engine *e = start(64, 4, 32, 8, 1);
    struct submitter sub[4];
    pthread_t th[4];
    uint64_t ids[24];
    int n_ok = 0;

    if (!e)
        return;
    for (int t = 0; t < 4; t++) {
        sub[t].e = e;
        sub[t].base = 500 + 10 * t;
        pthread_create(&th[t], NULL, submit_thread, &sub[t]);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 6; i++)
            ids[t * 6 + i] = sub[t].ids[i];
    ok(wait_all(e, ids, 24), "24 requests from 4 threads finish");
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 5; i++)
            n_ok += res[sub[t].ids[i]].finish == FINISH_LENGTH && res[sub[t].ids[i]].n == 4 + i;
    ok(n_ok == 20, "each got its max_tokens (%d of 20)", n_ok);
    engine_stop(e);
}

int main(void)
{
    log_init("test");
    log_set_level(LOG_ERR);
    model = test_model_open();
    diag("model: %s", MODEL_NAME);
    test_batching();
    test_prefix_cache();
    test_preemption();
    test_finish_reasons();
    test_abort();
    test_seeded();
    test_logprobs();
    test_stress();
    test_priority();
    test_threads();
#ifdef TEST_ENGINE_FAKE_MODEL
    ok(!model->corrupt, "the fake model never read a slot holding another position");
#endif
    for (int i = 0; i < MAX_IDS; i++)
        result_clear(&res[i]);
    test_model_close(model);
    return tap_done();
}
