/*
 * bench_encoder.c -- throughput of worker/models/ encoder_forward (the
 * XLM-RoBERTa encoder) on a model folder: for each --lens L and --batches B,
 * B sequences of L tokens (<s>, random ids, </s>) in one packed forward, dense
 * vectors to the host; one untimed pass, then passes until --reps are done or
 * --seconds have passed. Prints one line per (L, B):
 *   enc device D len L batch B ms M emb_s E reps R
 * Used by tests/bench/encoders.sh. Not a test.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder.h"
#include "kernels.h"
#include "log.h"
#include "util.h"

static int parse_list(const char *s, int *v, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < 1)
            return -1;
        v[n++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

static int run_one(struct encoder *e, const char *device, int L, int B, int reps, double seconds)
{
    const struct encoder_info *info = encoder_get_info(e);
    int32_t *tok = xmalloc((size_t)L * B * sizeof(int32_t));
    int32_t *start = xmalloc((size_t)(B + 1) * sizeof(int32_t));
    float *dense = xmalloc((size_t)B * info->hidden_size * sizeof(float));
    uint64_t rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(L * 131 + B);
    int rc = -1;
    for (int s = 0; s < B; s++) {
        start[s] = s * L;
        for (int i = 0; i < L; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            tok[s * L + i] = i == 0 ? 0 : i == L - 1 ? 2
                           : 5 + (int32_t)((rng >> 33) % (uint64_t)(info->vocab_size - 5));
        }
    }
    start[B] = B * L;
    struct encoder_batch b = { .n_seqs = B, .tokens = tok, .seq_start = start };
    struct encoder_out out = { .dense = dense };
    if (encoder_forward(e, &b, &out) < 0)
        goto fail;
    int n = 0;
    int64_t t0 = now_us();
    while (n < reps && (double)(now_us() - t0) / 1e6 < seconds) {
        if (encoder_forward(e, &b, &out) < 0)
            goto fail;
        n++;
    }
    double ms = (double)(now_us() - t0) / 1e3 / n;
    printf("enc device %s len %d batch %d ms %.3f emb_s %.2f reps %d\n", device, L, B, ms,
           B * 1e3 / ms, n);
    fflush(stdout);
    rc = 0;
fail:
    free(tok);
    free(start);
    free(dense);
    return rc;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *device = "cpu";
    int threads = 1, reps = 10, lens[16] = { 64, 256, 1024 }, n_lens = 3, batches[16] = { 1, 64 },
        n_batches = 2;
    double seconds = 10;
    static const struct option lo[] = {
        { "model", 1, 0, 'm' }, { "device", 1, 0, 'd' }, { "threads", 1, 0, 't' },
        { "lens", 1, 0, 'l' }, { "batches", 1, 0, 'b' }, { "reps", 1, 0, 'r' },
        { "seconds", 1, 0, 's' }, { 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'm': dir = optarg; break;
        case 'd': device = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'l': n_lens = parse_list(optarg, lens, 16); break;
        case 'b': n_batches = parse_list(optarg, batches, 16); break;
        case 'r': reps = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        default: goto usage;
        }
    }
    if (!dir || threads < 1 || reps < 1 || seconds <= 0 || n_lens < 1 || n_batches < 1)
        goto usage;
    log_init("bench");
    char err[512];
    struct kn_backend *be = kn_backend_init(device, 0);
    if (!be || kn_backend_set_threads(be, threads) < 0)
        return 1;
    int64_t t0 = now_us();
    struct encoder *e = encoder_load(dir, be, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "bench_encoder: %s\n", err);
        return 1;
    }
    printf("load_s %.3f\n", (double)(now_us() - t0) / 1e6);
    int rc = 0;
    for (int i = 0; i < n_lens && rc == 0; i++)
        for (int j = 0; j < n_batches && rc == 0; j++)
            rc = run_one(e, device, lens[i], batches[j], reps, seconds);
    encoder_free(e);
    kn_backend_free(be);
    return rc ? 1 : 0;
usage:
    fprintf(stderr, "usage: bench_encoder --model DIR [--device cpu|cuda] [--threads N] "
            "[--lens 64,256,1024] [--batches 1,64] [--reps N] [--seconds S]\n");
    return 2;
}
