/*
 * stop.h -- stop strings found across token boundaries on the detokenized
 * text. Text is fed as it is decoded; the matcher releases only what can no
 * longer be the start of a stop string, so a stop string is never emitted,
 * and truncates at the earliest match. Knows nothing of tokens or HTTP.
 */
#ifndef LLMUX_STOP_H
#define LLMUX_STOP_H

#include <stddef.h>

struct stop_matcher {
    char **stops;               /* copies of the non-empty stop strings */
    size_t *lens;
    int n;
    size_t max_len;
    char *buf;                  /* text not yet released (and released text
                                 * kept until the next feed) */
    size_t len, cap, released;
    int hit;                    /* index of the stop string found, or -1 */
};

/* <stops>: <n> NUL-terminated strings (copied; empty ones are ignored). */
void stop_init(struct stop_matcher *m, char *const *stops, int n);
void stop_free(struct stop_matcher *m);
/* Feed <len> bytes of new text. <out> and <out_len> receive the text that may
 * be emitted now (borrowed; valid until the next call). Returns 1 when a
 * stop string was found (the text before it was released, the rest is
 * dropped; later feeds release nothing), else 0. */
int stop_feed(struct stop_matcher *m, const char *text, size_t len, const char **out,
              size_t *out_len);
/* The stream ended without a stop string: release the held-back tail. */
void stop_flush(struct stop_matcher *m, const char **out, size_t *out_len);

#endif
