/*
 * encode_job.c -- encoder requests in flight: parse-or-answer, the
 * tokenizing thread for large bodies, queueing in the encode engine,
 * dispatch of the engine's finished outputs to their jobs (the formatter
 * answers), abort on client disconnect; base64 and usage helpers shared by
 * embeddings.c, pooling.c and rerank.c.
 */
#include "encode_job.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "log.h"
#include "server.h"
#include "util.h"

/* The tokenizing thread: jobs in, jobs out, the worker's eventfd woken. */
struct enc_prep {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    struct wk_enc *in_head, *in_tail;
    struct wk_enc *out_head, *out_tail;
    struct enc_ctx ctx;
    struct wk *w;
};

void enc_ctx_of(struct wk *w, struct enc_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->api = &w->api;
    ctx->hidden = w->enc_hidden;
    ctx->max_batch_inputs = w->max_batch_inputs;
    ctx->has_sparse = w->enc_has_sparse;
    ctx->has_colbert = w->enc_has_colbert;
}

int enc_parse_or_answer(struct wk_conn *c, enum enc_api api, struct enc_request *req)
{
    struct wk *w = wk_conn_worker(c);
    struct enc_ctx ctx;
    struct api_err err;
    size_t len;
    const char *body = wk_conn_body(c, &len);
    enc_ctx_of(w, &ctx);
    memset(&err, 0, sizeof(err));
    if (enc_request_parse_body(&ctx, api, body, len, wk_conn_header(c, "x-llmux-model"), req,
                               &err) < 0 ||
        (len < ENC_INLINE_BYTES && enc_request_tokenize(&ctx, req, &err) < 0)) {
        enc_request_free(req);
        wk_conn_error(c, &err);
        return -1;
    }
    return 0;
}

static void job_unlink_free(struct wk_enc *j)
{
    struct wk *w = j->w;
    if (j->prev)
        j->prev->next = j->next;
    else
        w->encs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    enc_request_free(&j->req);
    free(j);
}

static void *prep_thread(void *arg)
{
    struct enc_prep *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct wk_enc *j = p->in_head;
        if (j == NULL) {
            pthread_cond_wait(&p->cv, &p->mu);
            continue;
        }
        p->in_head = j->prep_next;
        if (p->in_head == NULL)
            p->in_tail = NULL;
        j->prep_next = NULL;
        int skip = j->abandoned;
        pthread_mutex_unlock(&p->mu);
        /* only this thread touches j->req while the job is in PREP */
        j->prep_rc = skip ? -1 : enc_request_tokenize(&p->ctx, &j->req, &j->prep_err);
        pthread_mutex_lock(&p->mu);
        if (p->out_tail)
            p->out_tail->prep_next = j;
        else
            p->out_head = j;
        p->out_tail = j;
        pthread_mutex_unlock(&p->mu);
        wk_engine_notify(p->w);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static struct enc_prep *prep_get(struct wk *w)
{
    if (w->prep != NULL)
        return w->prep;
    struct enc_prep *p = xcalloc(1, sizeof(*p));
    p->w = w;
    enc_ctx_of(w, &p->ctx);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, prep_thread, p) != 0) {
        log_error("cannot start the tokenizing thread: large bodies are tokenized inline");
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return NULL;
    }
    w->prep = p;
    return p;
}

/* Hand the job's ids to the engine. 0, or -1 (answered, job freed). */
static int job_submit(struct wk_enc *j)
{
    struct wk *w = j->w;
    struct encode_request er = { j->req_id, j->req.n_inputs, j->req.ids, j->req.n_ids, j->want };
    j->req.ids = NULL;          /* the engine owns them now (given back in the output) */
    j->req.n_ids = NULL;
    int n_inputs = j->req.n_inputs;
    j->req.n_inputs = 0;
    if (encode_submit(w->encq, &er) < 0) {
        encode_request_free_ids(&er);
        if (j->conn) {
            wk_conn_set_enc(j->conn, NULL);
            wk_conn_error_msg(j->conn, 503, NULL, "the worker is stopping");
        }
        job_unlink_free(j);
        return -1;
    }
    j->req.n_inputs = n_inputs;
    j->state = ENC_JOB_RUN;
    return 0;
}

struct wk_enc *enc_job_start(struct wk *w, struct wk_conn *c, struct enc_request *req,
                             unsigned want, const char *id_prefix, enc_done_fn done)
{
    struct wk_enc *j = xcalloc(1, sizeof(*j));
    j->w = w;
    j->conn = c;
    j->req = *req;
    memset(req, 0, sizeof(*req));
    j->req_id = ++w->next_req_id;
    j->created = wall_time_s();
    j->done = done;
    j->want = want;
    j->state = ENC_JOB_PREP;
    gen_new_id(j->id, sizeof(j->id), id_prefix);
    j->next = w->encs;
    if (w->encs)
        w->encs->prev = j;
    w->encs = j;
    wk_conn_set_enc(c, j);
    if (j->req.pending != NULL) {
        struct enc_prep *p = prep_get(w);
        if (p == NULL) {        /* no thread: tokenize here */
            struct enc_ctx ctx;
            enc_ctx_of(w, &ctx);
            if (enc_request_tokenize(&ctx, &j->req, &j->prep_err) < 0) {
                wk_conn_set_enc(c, NULL);
                wk_conn_error(c, &j->prep_err);
                job_unlink_free(j);
                return NULL;
            }
        } else {
            pthread_mutex_lock(&p->mu);
            if (p->in_tail)
                p->in_tail->prep_next = j;
            else
                p->in_head = j;
            p->in_tail = j;
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
            return j;
        }
    }
    return job_submit(j) < 0 ? NULL : j;
}

void enc_prep_drain(struct wk *w)
{
    struct enc_prep *p = w->prep;
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    struct wk_enc *j = p->out_head, *next;
    p->out_head = p->out_tail = NULL;
    pthread_mutex_unlock(&p->mu);
    for (; j != NULL; j = next) {
        next = j->prep_next;
        j->prep_next = NULL;
        if (j->abandoned || j->conn == NULL) {
            job_unlink_free(j);
        } else if (j->prep_rc < 0) {
            struct wk_conn *c = j->conn;
            wk_conn_set_enc(c, NULL);
            wk_conn_error(c, &j->prep_err);
            job_unlink_free(j);
        } else {
            job_submit(j);
        }
    }
}

void enc_jobs_free_all(struct wk *w)
{
    struct enc_prep *p = w->prep;
    if (p != NULL) {
        pthread_mutex_lock(&p->mu);
        p->stopping = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        w->prep = NULL;
    }
    while (w->encs != NULL) {
        struct wk_enc *j = w->encs;
        if (j->state == ENC_JOB_RUN && w->encq)
            encode_cancel(w->encq, j->req_id);
        if (j->conn)
            wk_conn_set_enc(j->conn, NULL);
        job_unlink_free(j);
    }
}

void enc_dispatch_output(struct wk *w, struct encode_output *o)
{
    struct wk_enc *j = w->encs;
    while (j && j->req_id != o->req_id)
        j = j->next;
    if (j == NULL) {            /* aborted meanwhile */
        encode_output_free(o);
        return;
    }
    if (j->conn) {
        struct wk_conn *c = j->conn;
        wk_conn_set_enc(c, NULL);
        if (o->error)
            wk_conn_error_msg(c, 500, NULL, o->message[0] ? o->message : "encoder failure");
        else
            j->done(j, o);
    }
    encode_output_free(o);
    job_unlink_free(j);
}

void enc_job_abort(struct wk_enc *j)
{
    struct wk *w = j->w;
    if (j->conn)
        wk_conn_set_enc(j->conn, NULL);
    if (j->state == ENC_JOB_PREP && w->prep != NULL) {
        /* the tokenizing thread has it: mark it, free it when it is back */
        pthread_mutex_lock(&w->prep->mu);
        j->abandoned = 1;
        j->conn = NULL;
        pthread_mutex_unlock(&w->prep->mu);
        return;
    }
    encode_cancel(w->encq, j->req_id);
    job_unlink_free(j);
}

/* ---- helpers ------------------------------------------------------------------ */

json_t *enc_b64_floats(const float *v, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = n * 4;
    unsigned char *b = xmalloc(nb + 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        b[4 * i] = (unsigned char)(u & 0xff);
        b[4 * i + 1] = (unsigned char)((u >> 8) & 0xff);
        b[4 * i + 2] = (unsigned char)((u >> 16) & 0xff);
        b[4 * i + 3] = (unsigned char)(u >> 24);
    }
    size_t olen = (nb + 2) / 3 * 4;
    char *out = xmalloc(olen + 1);
    size_t k = 0;
    for (size_t i = 0; i < nb; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16;
        if (i + 1 < nb)
            x |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < nb)
            x |= b[i + 2];
        out[k++] = tbl[(x >> 18) & 63];
        out[k++] = tbl[(x >> 12) & 63];
        out[k++] = i + 1 < nb ? tbl[(x >> 6) & 63] : '=';
        out[k++] = i + 2 < nb ? tbl[x & 63] : '=';
    }
    json_t *j = json_stringn(out, k);
    free(out);
    free(b);
    return j;
}

json_t *enc_float_array(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real(isfinite(v[i]) ? (double)v[i] : 0.0));
    return a;
}

json_t *enc_usage(long prompt_tokens)
{
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(u, "total_tokens", json_integer(prompt_tokens));
    return u;
}

double enc_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}

/* ---- fast float text ------------------------------------------------------------ */

/* jansson's finishing of "%.17g": ".0" when it looks like an integer, no
 * '+' and no leading zeros in the exponent. */
static size_t fmt_slow(double x, char *out)
{
    char tmp[40];
    int n = snprintf(tmp, sizeof(tmp), "%.17g", x);
    size_t k = 0;
    int has_dot = 0;
    for (int i = 0; i < n; i++) {
        char ch = tmp[i];
        if (ch == '.' || ch == 'e')
            has_dot = 1;
        out[k++] = ch;
        if (ch == 'e') {
            i++;
            if (tmp[i] == '-')
                out[k++] = '-';
            else if (tmp[i] != '+')
                i--;
            while (i + 1 < n - 1 && tmp[i + 1] == '0')
                i++;
        }
    }
    if (!has_dot) {
        out[k++] = '.';
        out[k++] = '0';
    }
    out[k] = '\0';
    return k;
}

size_t enc_fmt_float(float f, char *out)
{
    double x = (double)f;
    if (!isfinite(x))
        x = 0.0;
#ifdef __SIZEOF_INT128__
    static const uint64_t P10[20] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
        100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
        10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL
    };
    if (x == 0.0)
        return fmt_slow(x, out);
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    int neg = (int)(bits >> 31), ex = (int)((bits >> 23) & 0xff);
    uint32_t m = bits & 0x7fffff;
    if (ex == 0)
        return fmt_slow(x, out);        /* subnormal */
    m |= 0x800000;
    int e2 = ex - 150;                  /* |x| = m * 2^e2 */
    int d = (int)floor(log10(fabs(x)));
    uint64_t q = 0;
    for (int tries = 0;; tries++) {
        int s = 16 - d;
        if (tries > 3 || s < 0 || s > 27 || e2 < -100)
            return fmt_slow(x, out);
        unsigned __int128 n = m;
        if (s > 19) {
            n *= P10[19];
            n *= P10[s - 19];
        } else {
            n *= P10[s];
        }
        if (e2 >= 0) {
            n <<= e2;
            q = (uint64_t)n;
        } else {
            int k = -e2;
            unsigned __int128 qq = n >> k, r = n - (qq << k), half = (unsigned __int128)1 << (k - 1);
            if (r > half || (r == half && (qq & 1)))
                qq++;
            q = (uint64_t)qq;
        }
        if (q >= P10[17])
            d++;
        else if (q < P10[16])
            d--;
        else
            break;
    }
    char dig[17];
    for (int i = 16; i >= 0; i--) {
        dig[i] = (char)('0' + q % 10);
        q /= 10;
    }
    int nd = 17;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    size_t k = 0;
    if (neg)
        out[k++] = '-';
    if (d >= -4 && d < 17) {            /* %g's fixed notation */
        if (d >= 0) {
            for (int i = 0; i <= d; i++)
                out[k++] = i < nd ? dig[i] : '0';
            out[k++] = '.';
            if (nd > d + 1)
                for (int i = d + 1; i < nd; i++)
                    out[k++] = dig[i];
            else
                out[k++] = '0';         /* jansson's ".0" */
        } else {
            out[k++] = '0';
            out[k++] = '.';
            for (int i = 0; i < -d - 1; i++)
                out[k++] = '0';
            for (int i = 0; i < nd; i++)
                out[k++] = dig[i];
        }
    } else {                            /* scientific, exponent as jansson trims it */
        out[k++] = dig[0];
        if (nd > 1) {
            out[k++] = '.';
            for (int i = 1; i < nd; i++)
                out[k++] = dig[i];
        }
        k += (size_t)sprintf(out + k, "e%d", d);
    }
    out[k] = '\0';
    return k;
#else
    return fmt_slow(x, out);
#endif
}

void enc_append_floats(struct strbuf *b, const float *v, size_t n)
{
    char tmp[48];
    strbuf_add(b, "[", 1);
    for (size_t i = 0; i < n; i++) {
        size_t k = enc_fmt_float(v[i], tmp);
        if (i + 1 < n)
            tmp[k++] = ',';
        strbuf_add(b, tmp, k);
    }
    strbuf_add(b, "]", 1);
}
