/*
 * asr.c -- the speech batching engine thread: decode + split + features per
 * request (off the event loop), then packed batches of segments across all
 * queued requests (FIFO, bounded by max_num_seqs and max_batch_frames),
 * one forward each, greedy CTC per segment, whole requests handed back.
 * Only this thread frees jobs; asr_cancel only marks them.
 */
#include "asr.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define ASR_MIN_SAMPLES 400         /* one 25 ms frame at 16 kHz */

struct seg_job {
    float *feats;
    int n_frames;
    size_t start, end;              /* samples */
    int32_t *argmax;                /* (n_frames + SV_N_PROMPT) */
};

struct job {
    struct job *next;
    struct asr_request r;
    int prepped;
    int cancelled;
    int in_batch;                   /* segments in the running batch */
    int n_segs, next_seg, n_done;
    struct seg_job *segs;
    struct asr_output *out;         /* errors and results gather here */
};

struct asr_engine {
    struct asr_config cfg;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    struct job *head, *tail;
    struct asr_output *out_head, *out_tail;
    void (*notify)(void *);
    void *notify_arg;
    int has_run;
    int in_dim;
    struct asr_load load;
    double rate_t0, rate_audio;     /* window for audio_s_per_s */
};

void asr_output_free(struct asr_output *o)
{
    if (o == NULL)
        return;
    for (int i = 0; i < o->n_segs; i++) {
        free(o->segs[i].ids);
        free(o->segs[i].rows);
        free(o->segs[i].ends);
    }
    free(o->segs);
    free(o);
}

static void job_free(struct job *j)
{
    free(j->r.audio);
    for (int i = 0; i < j->n_segs; i++) {
        free(j->segs[i].feats);
        free(j->segs[i].argmax);
    }
    free(j->segs);
    asr_output_free(j->out);
    free(j);
}

int asr_split(const float *pcm, size_t n, double max_segment_s, struct audio_segment **segs,
              int *n_segs)
{
    if (max_segment_s <= 0)
        max_segment_s = 30.0;
    if ((double)n <= max_segment_s * AUDIO_RATE) {
        *segs = xcalloc(1, sizeof(**segs));
        (*segs)[0].start = 0;
        (*segs)[0].end = n;
        *n_segs = 1;
        return 0;
    }
    return vad_split(pcm, n, max_segment_s, segs, n_segs);
}

/* Decode, split and featurize job <j> (no lock held: only this thread
 * touches it). 0, or -1 with j->out->status/message set. */
static int job_prep(struct asr_engine *e, struct job *j)
{
    struct asr_output *o = j->out;
    float *pcm = NULL;
    size_t n = 0;
    double dur = 0;
    struct audio_segment *as = NULL;
    int n_as = 0;
    if (audio_decode(j->r.audio, j->r.len, e->cfg.max_audio_seconds, &pcm, &n, &dur, o->message,
                     sizeof(o->message)) < 0) {
        o->status = 400;
        return -1;
    }
    free(j->r.audio);
    j->r.audio = NULL;
    o->duration = dur > 0 ? dur : (double)n / AUDIO_RATE;
    if (n < ASR_MIN_SAMPLES) {
        snprintf(o->message, sizeof(o->message), "audio is too short (%.1f ms; at least 25 ms "
                 "is needed)", (double)n * 1000.0 / AUDIO_RATE);
        o->status = 400;
        free(pcm);
        return -1;
    }
    if (asr_split(pcm, n, e->cfg.max_segment_seconds, &as, &n_as) < 0) {
        snprintf(o->message, sizeof(o->message), "audio could not be split");
        o->status = 500;
        free(pcm);
        return -1;
    }
    j->segs = xcalloc((size_t)(n_as > 0 ? n_as : 1), sizeof(*j->segs));
    for (int i = 0; i < n_as; i++) {
        struct seg_job *s = &j->segs[j->n_segs];
        int dim = 0;
        size_t len = as[i].end - as[i].start;
        if (len < ASR_MIN_SAMPLES)
            continue;
        if (fbank_frontend_compute(e->cfg.frontend, pcm + as[i].start, len, &s->feats,
                                   &s->n_frames, &dim) < 0 || s->n_frames <= 0) {
            free(s->feats);
            s->feats = NULL;
            continue;
        }
        s->start = as[i].start;
        s->end = as[i].end;
        s->argmax = xmalloc((size_t)(s->n_frames + SV_N_PROMPT) * sizeof(int32_t));
        j->n_segs++;
    }
    free(as);
    free(pcm);
    return 0;
}

/* Collect the finished job's segments into its output. */
static void job_finish(struct asr_engine *e, struct job *j)
{
    struct asr_output *o = j->out;
    o->n_segs = j->n_segs;
    o->segs = xcalloc((size_t)(j->n_segs > 0 ? j->n_segs : 1), sizeof(*o->segs));
    for (int i = 0; i < j->n_segs; i++) {
        struct seg_job *s = &j->segs[i];
        struct asr_segment *d = &o->segs[i];
        int rows = s->n_frames + SV_N_PROMPT;
        d->start = (double)s->start / AUDIO_RATE;
        d->end = (double)s->end / AUDIO_RATE;
        d->n_frames = s->n_frames;
        d->ids = xmalloc((size_t)rows * sizeof(int32_t));
        d->rows = xmalloc((size_t)rows * sizeof(int32_t));
        d->n_ids = sensevoice_ctc_collapse(s->argmax, rows, e->cfg.blank_id, d->ids, d->rows);
        d->ends = xmalloc((size_t)(d->n_ids > 0 ? d->n_ids : 1) * sizeof(int32_t));
        for (int k = 0; k < d->n_ids; k++) {
            int r = d->rows[k];
            while (r < rows && s->argmax[r] == d->ids[k])
                r++;
            d->ends[k] = r;
        }
    }
}

/* Unlink <j> from the queue (lock held). */
static void job_unlink(struct asr_engine *e, struct job *j)
{
    struct job **pp = &e->head, *prev = NULL;
    while (*pp && *pp != j) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp == NULL)
        return;
    *pp = j->next;
    if (e->tail == j)
        e->tail = prev;
}

/* Hand <j>'s output back and free it (lock held). */
static void job_emit(struct asr_engine *e, struct job *j)
{
    job_unlink(e, j);
    struct asr_output *o = j->out;
    j->out = NULL;
    if (!j->cancelled) {
        if (e->out_tail)
            e->out_tail->next = o;
        else
            e->out_head = o;
        e->out_tail = o;
        e->load.requests_done++;
        e->load.audio_seconds_done += o->duration;
    } else {
        asr_output_free(o);
    }
    job_free(j);
}

static void *asr_thread(void *arg)
{
    struct asr_engine *e = arg;
    int cap = e->cfg.max_num_seqs > 0 ? e->cfg.max_num_seqs : 1;
    struct sensevoice_clip *clips = xcalloc((size_t)cap, sizeof(*clips));
    struct seg_job **bseg = xcalloc((size_t)cap, sizeof(*bseg));
    struct job **bjob = xcalloc((size_t)cap, sizeof(*bjob));
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        int notify = 0;
        /* cancelled jobs not in a batch go at once */
        for (struct job *j = e->head, *next; j; j = next) {
            next = j->next;
            if (j->cancelled && j->in_batch == 0) {
                job_unlink(e, j);
                job_free(j);
            }
        }
        /* prepare every new request first, so concurrent ones share batches */
        struct job *np = NULL;
        for (struct job *j = e->head; j; j = j->next)
            if (!j->prepped) {
                np = j;
                break;
            }
        if (np != NULL) {
            np->prepped = 1;
            pthread_mutex_unlock(&e->mu);
            int rc = job_prep(e, np);
            pthread_mutex_lock(&e->mu);
            if (rc < 0 || np->n_segs == 0) {
                if (rc == 0)
                    job_finish(e, np);
                job_emit(e, np);
                notify = 1;
            }
            if (notify) {
                pthread_mutex_unlock(&e->mu);
                e->notify(e->notify_arg);
                pthread_mutex_lock(&e->mu);
            }
            continue;
        }
        /* a batch: segments in queue order */
        int nb = 0;
        long frames = 0;
        for (struct job *j = e->head; j && nb < cap; j = j->next) {
            if (j->cancelled)
                continue;
            while (j->next_seg < j->n_segs && nb < cap) {
                struct seg_job *s = &j->segs[j->next_seg];
                if (nb > 0 && e->cfg.max_batch_frames > 0 &&
                    frames + s->n_frames > e->cfg.max_batch_frames)
                    break;
                frames += s->n_frames;
                bseg[nb] = s;
                bjob[nb] = j;
                j->in_batch++;
                j->next_seg++;
                nb++;
            }
            if (e->cfg.max_batch_frames > 0 && frames >= e->cfg.max_batch_frames)
                break;
        }
        if (nb == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        int running = 0;
        for (struct job *j = e->head; j; j = j->next)
            running += j->in_batch > 0;
        e->load.running = running;
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < nb; i++) {
            memset(&clips[i], 0, sizeof(clips[i]));
            clips[i].feats = bseg[i]->feats;
            clips[i].n_frames = bseg[i]->n_frames;
            clips[i].language = bjob[i]->r.language;
            clips[i].use_itn = bjob[i]->r.use_itn;
            clips[i].argmax = bseg[i]->argmax;
        }
        int64_t t0 = now_us();
        int rc = e->cfg.forward(e->cfg.forward_arg, clips, nb);
        double dt = (double)(now_us() - t0) / 1e6;
        pthread_mutex_lock(&e->mu);
        e->load.running = 0;
        e->load.batches++;
        e->load.last_batch_seqs = nb;
        e->load.last_batch_frames = frames;
        e->load.segments_done += (uint64_t)nb;
        if (rc == 0)
            e->has_run = 1;
        double audio = 0;
        for (int i = 0; i < nb; i++)
            audio += (double)(bseg[i]->end - bseg[i]->start) / AUDIO_RATE;
        e->rate_audio += audio;
        double now = (double)now_us() / 1e6;
        if (e->rate_t0 == 0)
            e->rate_t0 = now - dt;
        if (now - e->rate_t0 > 0) {
            e->load.audio_s_per_s = e->rate_audio / (now - e->rate_t0);
            if (now - e->rate_t0 > 10) {
                e->rate_t0 = now;
                e->rate_audio = 0;
            }
        }
        for (int i = 0; i < nb; i++) {
            struct job *j = bjob[i];
            j->in_batch--;
            j->n_done++;
            if (rc < 0 && j->out->status == 0) {
                j->out->status = 500;
                snprintf(j->out->message, sizeof(j->out->message),
                         "the speech model failed on this batch");
            }
        }
        for (int i = 0; i < nb; i++) {
            struct job *j = bjob[i];
            if (j == NULL || j->in_batch > 0)
                continue;
            for (int k = i + 1; k < nb; k++)
                if (bjob[k] == j)
                    bjob[k] = NULL;
            if (j->cancelled) {
                job_unlink(e, j);
                job_free(j);
            } else if (j->out->status != 0 || j->n_done == j->n_segs) {
                if (j->out->status == 0)
                    job_finish(e, j);   /* on error no segment is handed back */
                job_emit(e, j);
                notify = 1;
            }
        }
        if (notify) {
            pthread_mutex_unlock(&e->mu);
            e->notify(e->notify_arg);
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    free(clips);
    free(bseg);
    free(bjob);
    return NULL;
}

static int asr_warmup(struct asr_engine *e, char *err, size_t errlen)
{
    int nf = 8;
    float *feats = xcalloc((size_t)nf * (size_t)e->in_dim, sizeof(float));
    int32_t argmax[8 + SV_N_PROMPT];
    struct sensevoice_clip c = { .feats = feats, .n_frames = nf, .language = SV_LANG_AUTO,
                                 .use_itn = 1, .argmax = argmax };
    int rc = e->cfg.forward(e->cfg.forward_arg, &c, 1);
    free(feats);
    if (rc < 0) {
        snprintf(err, errlen, "the warm-up forward failed");
        return -1;
    }
    e->has_run = 1;
    return 0;
}

struct asr_engine *asr_start(const struct asr_config *cfg, void (*notify)(void *), void *arg,
                             char *err, size_t errlen)
{
    if (cfg->forward == NULL || cfg->frontend == NULL || notify == NULL) {
        snprintf(err, errlen, "asr engine: no forward, frontend or notify");
        return NULL;
    }
    struct asr_engine *e = xcalloc(1, sizeof(*e));
    e->cfg = *cfg;
    if (e->cfg.max_num_seqs < 1)
        e->cfg.max_num_seqs = 1;
    e->notify = notify;
    e->notify_arg = arg;
    e->in_dim = fbank_frontend_dim(cfg->frontend);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (cfg->warmup && asr_warmup(e, err, errlen) < 0)
        goto fail;
    if (pthread_create(&e->thread, NULL, asr_thread, e) != 0) {
        snprintf(err, errlen, "cannot start the speech engine thread");
        goto fail;
    }
    e->started = 1;
    return e;
fail:
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
    return NULL;
}

void asr_stop(struct asr_engine *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started)
        pthread_join(e->thread, NULL);
    while (e->head) {
        struct job *j = e->head;
        e->head = j->next;
        job_free(j);
    }
    struct asr_output *o = e->out_head, *next;
    for (; o; o = next) {
        next = o->next;
        asr_output_free(o);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int asr_submit(struct asr_engine *e, struct asr_request *r)
{
    struct job *j = xcalloc(1, sizeof(*j));
    j->r = *r;
    j->out = xcalloc(1, sizeof(*j->out));
    j->out->req_id = r->id;
    j->out->frame_s = 0.06;
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        asr_output_free(j->out);
        free(j);
        return -1;
    }
    r->audio = NULL;
    if (e->tail)
        e->tail->next = j;
    else
        e->head = j;
    e->tail = j;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void asr_cancel(struct asr_engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    for (struct job *j = e->head; j; j = j->next)
        if (j->r.id == id)
            j->cancelled = 1;
    struct asr_output **pp = &e->out_head, *prev = NULL;
    while (*pp) {               /* finished but not taken yet */
        struct asr_output *o = *pp;
        if (o->req_id == id) {
            *pp = o->next;
            if (e->out_tail == o)
                e->out_tail = prev;
            asr_output_free(o);
            continue;
        }
        prev = o;
        pp = &o->next;
    }
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

struct asr_output *asr_take_outputs(struct asr_engine *e)
{
    pthread_mutex_lock(&e->mu);
    struct asr_output *o = e->out_head;
    e->out_head = e->out_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    return o;
}

void asr_get_load(struct asr_engine *e, struct asr_load *l)
{
    pthread_mutex_lock(&e->mu);
    *l = e->load;
    l->waiting = 0;
    l->segments_waiting = 0;
    for (struct job *j = e->head; j; j = j->next) {
        if (j->cancelled)
            continue;
        if (!j->prepped || (j->next_seg == 0 && j->in_batch == 0))
            l->waiting++;
        l->segments_waiting += j->n_segs - j->next_seg;
    }
    pthread_mutex_unlock(&e->mu);
}

int asr_has_run(struct asr_engine *e)
{
    pthread_mutex_lock(&e->mu);
    int r = e->has_run;
    pthread_mutex_unlock(&e->mu);
    return r;
}
