/*
 * test_sampler.c -- every sampling parameter against hand-computed cases
 * (the sampler leaves the processed logits in place, so masks and penalties
 * are checked value by value), seeded reproducibility, the distribution of
 * many draws with a fixed seed, and logprobs/ranks from the raw logits.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "tap.h"
#include "util.h"

static struct sampler *smp;
static struct sampler_rng rng;

static int32_t run(float *x, const struct sampling_params *sp, const int32_t *prompt, int np,
                   const int32_t *out, int no, const int32_t *eos, int neos,
                   struct token_logprob *lp)
{
    struct sampler_seq q = { sp, prompt, np, out, no, eos, neos, &rng };
    return sampler_sample(smp, x, &q, lp);
}

static int near(float a, float b)
{
    return fabsf(a - b) <= 1e-6f * (1 + fabsf(b));
}

static void greedy_params(struct sampling_params *sp)
{
    sampling_params_default(sp);
    sp->temperature = 0;
}

static void test_greedy_and_penalties(void)
{
    struct sampling_params sp;
    int32_t prompt[] = { 0, 0 }, out[] = { 1, 2, 2, 3 }, eos[] = { 3 };

    greedy_params(&sp);
    {
        float x[6] = { 1, 3, 3, 2, -1, 0 };
        ok(run(x, &sp, prompt, 1, NULL, 0, NULL, 0, NULL) == 1,
           "greedy: argmax, lowest id on ties");
    }
    sp.repetition_penalty = 2;
    {
        float x[6] = { 2, -2, 1, 0.5f, 4, 0 };
        int32_t t = run(x, &sp, prompt, 2, out, 4, NULL, 0, NULL);
        ok(near(x[0], 1) && near(x[1], -4) && near(x[2], 0.5f) && near(x[3], 0.25f) &&
           near(x[4], 4) && near(x[5], 0),
           "repetition 2: positive /2, negative *2, once per distinct id, others untouched "
           "(%g %g %g %g %g %g)", x[0], x[1], x[2], x[3], x[4], x[5]);
        ok(t == 4, "greedy after penalty");
    }
    sp.repetition_penalty = 1;
    sp.frequency_penalty = 0.5f;
    sp.presence_penalty = 1;
    {
        float x[6] = { 2, 2, 2, 2, 2, 2 };
        run(x, &sp, prompt, 2, out, 4, NULL, 0, NULL);
        ok(near(x[0], 2) && near(x[1], 0.5f) && near(x[2], 0) && near(x[3], 0.5f) &&
           near(x[4], 2), "frequency 0.5 * count + presence 1 on output ids only "
           "(%g %g %g %g %g)", x[0], x[1], x[2], x[3], x[4]);
    }
    sp.frequency_penalty = -1;
    sp.presence_penalty = 0;
    {
        float x[6] = { 0 };
        run(x, &sp, prompt, 2, out, 4, NULL, 0, NULL);
        ok(near(x[2], 2) && near(x[1], 1) && x[0] == 0, "negative frequency penalty rewards");
        /* the count scratch is clean for the next call */
        float y[6] = { 0 };
        run(y, &sp, prompt, 2, out, 1, NULL, 0, NULL);
        ok(near(y[1], 1) && y[2] == 0, "counts do not leak between calls");
    }
    greedy_params(&sp);
    sp.min_tokens = 2;
    int32_t stop[] = { 1 };
    sp.stop_token_ids = stop;
    sp.n_stop_token_ids = 1;
    {
        float x[6] = { 0, 9, 0, 8, 0, 1 };
        int32_t t = run(x, &sp, prompt, 1, out, 1, eos, 1, NULL);
        ok(isinf(x[1]) && x[1] < 0 && isinf(x[3]) && x[3] < 0 && t == 5,
           "min_tokens: eos and stop ids suppressed before 2 outputs");
    }
    {
        float x[6] = { 0, 9, 0, 8, 0, 1 };
        int32_t t = run(x, &sp, prompt, 1, out, 2, eos, 1, NULL);
        ok(x[1] == 9 && x[3] == 8 && t == 1, "min_tokens reached: nothing suppressed");
    }
    sp.ignore_eos = 1;
    {
        float x[6] = { 0, 9, 0, 8, 0, 1 };
        int32_t t = run(x, &sp, prompt, 1, out, 0, eos, 1, NULL);
        ok(x[3] == 8 && isinf(x[1]) && t == 3, "ignore_eos: eos not suppressed, stop id is");
    }
}

static void test_masks(void)
{
    struct sampling_params sp;
    float l[4] = { logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f) };

    sampling_params_default(&sp);
    sp.temperature = 0.5f;
    {
        float x[4] = { 1, 2, -1, 0 };
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(near(x[0], 2) && near(x[1], 4) && near(x[2], -2) && near(x[3], 0),
           "temperature 0.5 doubles the logits");
    }
    sampling_params_default(&sp);
    sp.min_p = 0.2f;
    {
        float x[4];
        memcpy(x, l, sizeof(x));
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(x[0] == l[0] && x[1] == l[1] && x[2] == l[2] && isinf(x[3]),
           "min_p 0.2: p < 0.1 masked (0.05), 0.15 kept");
    }
    sp.min_p = 0.35f;
    {
        float x[4];
        memcpy(x, l, sizeof(x));
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(!isinf(x[1]) && isinf(x[2]) && isinf(x[3]), "min_p 0.35: threshold 0.175");
    }
    sampling_params_default(&sp);
    sp.top_k = 2;
    {
        float x[4] = { 1, 4, 3, 4 };
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(isinf(x[0]) && x[1] == 4 && isinf(x[2]) && x[3] == 4, "top_k 2: the two 4s");
    }
    sp.top_k = 3;
    {
        float x[4] = { 1, 4, 3, 4 };
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(isinf(x[0]) && x[1] == 4 && x[2] == 3 && x[3] == 4, "top_k 3: 4, 3, 4");
    }
    sp.top_k = 1;
    {
        float x[4] = { 1, 4, 3, 4 };
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(x[1] == 4 && x[3] == 4 && isinf(x[2]) && isinf(x[0]), "top_k 1 keeps ties at the cut");
    }
    sp.top_k = 4;
    {
        float x[4] = { 1, 4, 3, 4 };
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        ok(x[0] == 1 && x[2] == 3, "top_k = vocab: off");
    }
    sampling_params_default(&sp);
    struct { float p; int keep; } cases[] = { { 0.45f, 1 }, { 0.75f, 2 }, { 0.81f, 3 },
                                              { 0.99f, 4 } };
    for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
        float x[4];
        int kept = 0, prefix = 1;
        memcpy(x, l, sizeof(x));
        sp.top_p = cases[c].p;
        run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        for (int i = 0; i < 4; i++) {
            kept += !isinf(x[i]);
            if (i < cases[c].keep && isinf(x[i]))
                prefix = 0;
        }
        ok(kept == cases[c].keep && prefix, "top_p %.2f keeps the %d most likely",
           cases[c].p, cases[c].keep);
    }
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* top_p over a large vocabulary against a brute-force sort and cumsum. */
static void test_top_p_large(void)
{
    enum { V = 5000 };
    struct sampler *big = sampler_new(V, 1);
    struct sampling_params sp;
    static float x[V], sorted[V];
    float ps[] = { 0.1f, 0.5f, 0.9f, 0.999f };
    sampling_params_default(&sp);
    for (size_t c = 0; c < ARRAY_SIZE(ps); c++) {
        struct sampler_seq q = { &sp, NULL, 0, NULL, 0, NULL, 0, &rng };
        double z = 0, acc = 0;
        int expect = 0, kept = 0;
        for (int i = 0; i < V; i++)
            x[i] = (float)(((i * 7919) % V) * -0.003);   /* a permutation of a ramp */
        memcpy(sorted, x, sizeof(x));
        qsort(sorted, V, sizeof(float), cmp_desc);
        for (int i = 0; i < V; i++)
            z += exp(sorted[i] - sorted[0]);
        while (expect < V) {
            acc += exp(sorted[expect] - sorted[0]);
            expect++;
            if (acc >= ps[c] * z)
                break;
        }
        sp.top_p = ps[c];
        sampler_sample(big, x, &q, NULL);
        for (int i = 0; i < V; i++)
            kept += !isinf(x[i]);
        ok(kept == expect, "top_p %.3f over %d tokens keeps %d (brute force %d)", ps[c], V,
           kept, expect);
    }
    sampler_free(big);
}

static void test_seeded(void)
{
    struct sampling_params sp;
    struct sampler_rng a, b;
    int32_t s1[64], s2[64], s3[64];
    int same12 = 1, diff13 = 0;

    sampling_params_default(&sp);
    sampler_rng_seed(&a, 42);
    sampler_rng_seed(&b, 42);
    {
        int eq = 1, range = 1;
        for (int i = 0; i < 1000; i++) {
            double u = sampler_rng_uniform(&a), v = sampler_rng_uniform(&b);
            eq &= u == v;
            range &= u >= 0 && u < 1;
        }
        ok(eq && range, "same seed, same uniform stream in [0,1)");
    }
    for (int run_i = 0; run_i < 3; run_i++) {
        int32_t *dst = run_i == 0 ? s1 : run_i == 1 ? s2 : s3;
        sampler_rng_seed(&rng, run_i == 2 ? 43 : 42);
        for (int i = 0; i < 64; i++) {
            float x[4] = { 0, 0.1f, 0.2f, 0.3f };
            dst[i] = run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL);
        }
    }
    for (int i = 0; i < 64; i++) {
        same12 &= s1[i] == s2[i];
        diff13 |= s1[i] != s3[i];
    }
    ok(same12, "same seed: same 64 draws");
    ok(diff13, "another seed: other draws");
    {
        uint64_t x = sampler_next_seed(smp), y = sampler_next_seed(smp);
        ok(x != y, "unseeded sequences get distinct seeds");
    }
}

static void test_distribution(void)
{
    struct sampling_params sp;
    float l[4] = { logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f) };
    enum { N = 20000 };
    struct {
        const char *what;
        float temp;
        int top_k;
        double p[4];
    } cases[] = {
        { "temperature 1", 1, 0, { 0.5, 0.3, 0.15, 0.05 } },
        { "temperature 2", 2, 0, { 0, 0, 0, 0 } },
        { "top_k 2", 1, 2, { 0.625, 0.375, 0, 0 } },
    };
    /* temperature 2: p^(1/2) normalized */
    {
        double s = sqrt(0.5) + sqrt(0.3) + sqrt(0.15) + sqrt(0.05);
        cases[1].p[0] = sqrt(0.5) / s;
        cases[1].p[1] = sqrt(0.3) / s;
        cases[1].p[2] = sqrt(0.15) / s;
        cases[1].p[3] = sqrt(0.05) / s;
    }
    sampling_params_default(&sp);
    sampler_rng_seed(&rng, 7);
    for (size_t c = 0; c < ARRAY_SIZE(cases); c++) {
        int count[4] = { 0 };
        double worst = 0;
        sp.temperature = cases[c].temp;
        sp.top_k = cases[c].top_k;
        for (int i = 0; i < N; i++) {
            float x[4];
            memcpy(x, l, sizeof(x));
            count[run(x, &sp, NULL, 0, NULL, 0, NULL, 0, NULL)]++;
        }
        for (int t = 0; t < 4; t++) {
            double d = fabs((double)count[t] / N - cases[c].p[t]);
            if (d > worst)
                worst = d;
        }
        /* 4.5 standard deviations of the largest-variance frequency */
        ok(worst < 0.016, "%s: %d draws match the distribution (worst |f - p| %.4f)",
           cases[c].what, N, worst);
    }
}

static void test_logprobs(void)
{
    struct sampling_params sp;
    struct token_logprob lp;
    float raw[4] = { 1, 2, 3, 4 }, x[4];
    double lse = 4 + log(1 + exp(-1) + exp(-2) + exp(-3));

    greedy_params(&sp);
    sp.logprobs = 2;
    memcpy(x, raw, sizeof(x));
    ok(run(x, &sp, NULL, 0, NULL, 0, NULL, 0, &lp) == 3, "greedy picks 3");
    ok(lp.id == 3 && near(lp.logprob, (float)(4 - lse)) && lp.rank == 1,
       "chosen logprob %.6f (expect %.6f), rank 1", lp.logprob, 4 - lse);
    ok(lp.n_top == 2 && lp.top_ids[0] == 3 && lp.top_ids[1] == 2 &&
       near(lp.top_logprobs[1], (float)(3 - lse)), "top 2: ids 3, 2");
    sampler_logprob_clear(&lp);

    /* raw logits, not processed ones: penalties and temperature do not change them */
    sampling_params_default(&sp);
    sp.temperature = 0.3f;
    sp.repetition_penalty = 3;
    sp.top_k = 1;
    sp.logprobs = 0;
    int32_t prompt[] = { 3 };
    memcpy(x, raw, sizeof(x));
    {
        int32_t t = run(x, &sp, prompt, 1, NULL, 0, NULL, 0, &lp);
        ok(t == 2 && lp.id == 2 && near(lp.logprob, (float)(3 - lse)) && lp.rank == 2 &&
           lp.n_top == 0 && lp.top_ids == NULL,
           "logprob from the raw logits: penalized choice 2 has raw rank 2");
        sampler_logprob_clear(&lp);
    }
}

int main(void)
{
    smp = sampler_new(6, 12345);
    sampler_rng_seed(&rng, 1);
    test_greedy_and_penalties();
    sampler_free(smp);
    smp = sampler_new(4, 12345);
    test_masks();
    test_seeded();
    test_distribution();
    test_logprobs();
    sampler_free(smp);
    smp = sampler_new(5, 1);
    {
        struct token_logprob lp;
        float t[5] = { 2, 2, 1, 2, -INFINITY };
        sampler_logprob(smp, t, 1, 3, &lp);
        ok(lp.rank == 3 && lp.top_ids[0] == 0 && lp.top_ids[1] == 1 && lp.top_ids[2] == 3,
           "ties: rank counts ids >= (3), top ids lowest first");
        sampler_logprob_clear(&lp);
        sampler_logprob(smp, t, 4, 1, &lp);
        ok(isinf(lp.logprob) && lp.rank == 5, "a -inf token: logprob -inf, last rank");
        sampler_logprob_clear(&lp);
    }
    test_top_p_large();
    sampler_free(smp);
    return tap_done();
}
