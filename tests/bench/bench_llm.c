/*
 * bench_llm.c -- CPU throughput of worker/models on a model folder: prefill
 * tokens/s (one prompt of --prompt tokens), decode tokens/s at batch 1 and
 * --batch, beside the memory roofline measured in the same run: a read-only
 * pass over a 1 GiB buffer with the same thread count gives the bandwidth;
 * weight bytes read per decode step / bandwidth is the fastest a step can
 * be. Prints one "key value" line per number. Not a test.
 * --device cuda (tests/bench/llm_cuda.sh) skips the host bandwidth pass (the
 * script measures the device's), warms each phase up once, and takes
 * --batch-prompt tokens per sequence before the batched decode.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "log.h"
#include "model.h"
#include "safetensors.h"
#include "util.h"

#define BLOCK 16

struct bw_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
};

static void *bw_read(void *arg)
{
    struct bw_arg *a = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= a->n; i += 4) {
        s0 += a->p[i];
        s1 += a->p[i + 1];
        s2 += a->p[i + 2];
        s3 += a->p[i + 3];
    }
    a->sum = s0 + s1 + s2 + s3;
    return NULL;
}

/* Read bandwidth in bytes/s: best of 3 passes over 1 GiB with <threads>. */
static double bandwidth(int threads)
{
    size_t bytes = (size_t)1 << 30, n = bytes / 8;
    uint64_t *buf = xmalloc(bytes);
    for (size_t i = 0; i < n; i++)
        buf[i] = i;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        pthread_t th[64];
        struct bw_arg args[64];
        int64_t t0 = now_us();
        for (int t = 0; t < threads; t++) {
            args[t].p = buf + n / threads * t;
            args[t].n = n / threads;
            pthread_create(&th[t], NULL, bw_read, &args[t]);
        }
        uint64_t sum = 0;
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            sum += args[t].sum;
        }
        double s = (double)(now_us() - t0) / 1e6, bw = (double)bytes / s;
        if (sum == 42)
            printf("#\n");      /* keep the sum alive */
        if (bw > best)
            best = bw;
    }
    free(buf);
    return best;
}

/* Bytes of weights one decode step reads: every tensor, except the input
 * embedding table when lm_head is separate (a lookup reads one row). */
static double weight_bytes(const char *dir, const struct model_config *c)
{
    struct st_set st;
    char err[256];
    double total = 0;
    if (st_open_dir(&st, dir, err, sizeof(err)) < 0)
        return 0;
    for (int i = 0; i < st.n_tensors; i++)
        total += (double)st.tensors[i].nbytes;
    const struct st_tensor *e = st_find(&st, "model.embed_tokens.weight");
    if (e && st_find(&st, "lm_head.weight"))
        total -= (double)e->nbytes;
    (void)c;
    st_close(&st);
    return total;
}

struct run {
    struct model *m;
    int n_seqs, max_blocks;
    int32_t *len, *bt;
};

/* Prefill <n> random tokens into each of the sequences, then <steps> decode
 * steps of all. Returns decode seconds; *prefill_s gets the prefill time. */
static int bench(struct run *r, int prompt, int steps, int chunk, double *prefill_s,
                 double *decode_s)
{
    const struct model_config *c = model_get_config(r->m);
    int B = r->n_seqs, T = chunk > B ? chunk : B;
    int32_t *tok = xmalloc((size_t)T * sizeof(int32_t)), *pos = xmalloc((size_t)T * sizeof(int32_t));
    int32_t *start = xmalloc((size_t)(B + 1) * sizeof(int32_t)), *rows = xmalloc((size_t)B * 4);
    float *logits = xmalloc((size_t)B * c->vocab_size * sizeof(float));
    uint64_t rng = 12345;
    int rc = 0;
    int64_t t0 = now_us();
    for (int s = 0; s < B && rc == 0; s++) {
        for (int p = 0; p < prompt && rc == 0; p += chunk) {
            int n = prompt - p < chunk ? prompt - p : chunk;
            for (int i = 0; i < n; i++) {
                rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
                tok[i] = (int32_t)((rng >> 33) % (uint64_t)c->vocab_size);
                pos[i] = p + i;
            }
            int32_t st[2] = { 0, n }, len = p + n, row = n - 1;
            struct model_batch b = { .n_tokens = n, .tokens = tok, .positions = pos, .n_seqs = 1,
                                     .seq_start = st, .seq_len = &len,
                                     .block_table = r->bt + (size_t)s * r->max_blocks,
                                     .max_blocks = r->max_blocks, .n_logits = 1, .logit_rows = &row };
            rc = model_forward(r->m, &b, logits);
        }
        r->len[s] = prompt;
    }
    *prefill_s = (double)(now_us() - t0) / 1e6;
    t0 = now_us();
    for (int k = 0; k < steps && rc == 0; k++) {
        for (int s = 0; s < B; s++) {
            tok[s] = (int32_t)((k * 7919 + s * 104729) % c->vocab_size);
            pos[s] = r->len[s];
            r->len[s]++;
            start[s] = s;
            rows[s] = s;
        }
        start[B] = B;
        struct model_batch b = { .n_tokens = B, .tokens = tok, .positions = pos, .n_seqs = B,
                                 .seq_start = start, .seq_len = r->len, .block_table = r->bt,
                                 .max_blocks = r->max_blocks, .n_logits = B, .logit_rows = rows };
        rc = model_forward(r->m, &b, logits);
    }
    *decode_s = (double)(now_us() - t0) / 1e6;
    free(tok);
    free(pos);
    free(start);
    free(rows);
    free(logits);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    const char *device = "cpu";
    int threads = 1, batch = 8, prompt = 512, steps = 16, chunk = 512, bprompt = 16;
    static const struct option lo[] = {
        { "model", 1, 0, 'm' }, { "threads", 1, 0, 't' }, { "batch", 1, 0, 'b' },
        { "prompt", 1, 0, 'p' }, { "steps", 1, 0, 's' }, { "chunk", 1, 0, 'c' },
        { "device", 1, 0, 'd' }, { "batch-prompt", 1, 0, 'q' }, { 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': dir = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'p': prompt = atoi(optarg); break;
        case 's': steps = atoi(optarg); break;
        case 'c': chunk = atoi(optarg); break;
        case 'd': device = optarg; break;
        case 'q': bprompt = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (!dir || threads < 1 || threads > 64 || batch < 1 || prompt < 1 || steps < 1 || chunk < 1 ||
        bprompt < 1)
        goto usage;
    int gpu = strcmp(device, "cpu") != 0;
    log_init("bench");
    char err[512];
    struct kn_backend *be = kn_backend_init(device, 0);
    if (!be || kn_backend_set_threads(be, threads) < 0)
        return 1;
    int64_t t0 = now_us();
    struct model *m = model_load(dir, be, err, sizeof(err));
    if (!m) {
        fprintf(stderr, "bench_llm: %s\n", err);
        return 1;
    }
    const struct model_config *c = model_get_config(m);
    printf("load_s %.3f\n", (double)(now_us() - t0) / 1e6);
    int longest = prompt > bprompt ? prompt : bprompt;
    int max_blocks = (longest + steps + BLOCK) / BLOCK + 1, n_blocks = max_blocks * batch;
    if (model_kv_alloc(m, n_blocks, BLOCK) < 0)
        return 1;
    int32_t *bt = xmalloc((size_t)n_blocks * sizeof(int32_t));
    int32_t *len = xcalloc((size_t)batch, sizeof(int32_t));
    for (int i = 0; i < n_blocks; i++)
        bt[i] = i;
    double pf, dec;
    struct run r = { m, 1, max_blocks, len, bt };
    if (gpu) {
        /* device: no host bandwidth pass; one untimed pass of each phase
         * (module load, cuBLAS handles, first allocations) */
        printf("device %s\nweight_bytes_per_step %.0f\n", device, weight_bytes(dir, c));
        fflush(stdout);
        if (bench(&r, prompt, 2, chunk, &pf, &dec) < 0)
            return 1;
        if (bench(&r, prompt, steps, chunk, &pf, &dec) < 0)
            return 1;
        printf("prefill_tokens %d\nprefill_tok_s %.2f\n", prompt, prompt / pf);
        printf("decode_tok_s_batch1 %.2f\n", steps / dec);
        fflush(stdout);
        r.n_seqs = batch;
        if (bench(&r, bprompt, 2, chunk, &pf, &dec) < 0 ||
            bench(&r, bprompt, steps, chunk, &pf, &dec) < 0)
            return 1;
        printf("decode_tok_s_batch%d %.2f\n", batch, batch * steps / dec);
        goto done;
    }
    double wb = weight_bytes(dir, c), bw = bandwidth(threads);
    printf("threads %d\nweight_bytes_per_step %.0f\nread_bandwidth_GBps %.2f\n", threads, wb,
           bw / 1e9);
    printf("roofline_decode_tok_s_batch1 %.2f\n", bw / wb);
    if (bench(&r, prompt, steps, chunk, &pf, &dec) < 0)
        return 1;
    printf("prefill_tokens %d\nprefill_tok_s %.2f\n", prompt, prompt / pf);
    printf("decode_tok_s_batch1 %.2f\ndecode_pct_roofline_batch1 %.1f\n", steps / dec,
           100.0 * (steps / dec) / (bw / wb));
    /* batch: short prompts so the step is dominated by the weights */
    r.n_seqs = batch;
    if (bench(&r, bprompt, steps, chunk, &pf, &dec) < 0)
        return 1;
    printf("decode_tok_s_batch%d %.2f\n", batch, batch * steps / dec);
done:
    free(bt);
    free(len);
    model_free(m);
    kn_backend_free(be);
    return 0;
usage:
    fprintf(stderr, "usage: bench_llm --model DIR [--threads N] [--batch B] [--prompt N] "
            "[--steps N] [--chunk N] [--device cpu|cuda] [--batch-prompt N (16)]\n");
    return 2;
}
