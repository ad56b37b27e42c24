/*
 * test_stop.c -- worker/stop.c: stop strings found across every split of the
 * text into feeds, never released, earliest match wins, held-back tails are
 * released at the end, and nothing is held without stop strings.
 */
#include <stdlib.h>
#include <string.h>

#include "stop.h"
#include "strbuf.h"
#include "tap.h"

/* Feed <text> in pieces of <step> bytes; returns the released text (new)
 * and sets *hit. */
static char *run(char *const *stops, int n, const char *text, size_t step, int *hit)
{
    struct stop_matcher m;
    struct strbuf out = { 0 };
    const char *o;
    size_t ol, len = strlen(text);
    stop_init(&m, stops, n);
    *hit = -1;
    for (size_t i = 0; i < len; i += step) {
        size_t k = len - i < step ? len - i : step;
        int h = stop_feed(&m, text + i, k, &o, &ol);
        strbuf_add(&out, o, ol);
        if (h) {
            *hit = m.hit;
            break;
        }
    }
    if (*hit < 0) {
        stop_flush(&m, &o, &ol);
        strbuf_add(&out, o, ol);
    }
    stop_free(&m);
    strbuf_add(&out, "", 0);
    return out.p;
}

struct tcase {
    const char *stops[3];
    int n;
    const char *text;
    const char *want;
    int hit;
};

int main(void)
{
    static const struct tcase cases[] = {
        { { "STOP" }, 1, "hello STOP world", "hello ", 0 },
        { { "STOP" }, 1, "hello STO", "hello STO", -1 },
        { { "STOP" }, 1, "no stop here", "no stop here", -1 },
        { { "\n\n", "END" }, 2, "a\nb END\n\nc", "a\nb ", 1 },
        { { "END", "\n\n" }, 2, "x\n\ny END", "x", 1 },
        { { "abab" }, 1, "ababab", "", 0 },
        { { "aab" }, 1, "aaaab!", "aa", 0 },
        { { "é!" }, 1, "café! ok", "caf", 0 },
        { { "" }, 1, "empty stops are ignored", "empty stops are ignored", -1 },
        { { "S" }, 1, "S", "", 0 },
        { { "long stop string" }, 1, "a long stop strin", "a long stop strin", -1 },
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct tcase *t = &cases[c];
        int all = 1;
        for (size_t step = 1; step <= strlen(t->text) + 1; step++) {
            int hit;
            char *got = run((char *const *)t->stops, t->n, t->text, step, &hit);
            if (strcmp(got, t->want) != 0 || hit != t->hit) {
                diag("case %zu step %zu: got '%s' hit %d, want '%s' hit %d", c, step, got, hit,
                     t->want, t->hit);
                all = 0;
            }
            free(got);
        }
        ok(all, "case %zu: '%s' -> '%s' at every feed size", c, t->text, t->want);
    }

    /* streaming hold-back: the prefix of a stop string is not released early */
    struct stop_matcher m;
    char *stops[] = { "</end>" };
    const char *o;
    size_t ol;
    stop_init(&m, stops, 1);
    stop_feed(&m, "abc</e", 6, &o, &ol);
    ok(ol == 3 && memcmp(o, "abc", 3) == 0, "partial stop string held back");
    stop_feed(&m, "x", 1, &o, &ol);
    ok(ol == 4 && memcmp(o, "</ex", 4) == 0, "released once it cannot match");
    int h = stop_feed(&m, "</end> tail", 11, &o, &ol);
    ok(h == 1 && ol == 0 && m.hit == 0, "match at a feed start releases nothing");
    h = stop_feed(&m, "more", 4, &o, &ol);
    ok(h == 1 && ol == 0, "nothing after a hit");
    stop_free(&m);

    /* without stop strings text passes straight through */
    stop_init(&m, NULL, 0);
    stop_feed(&m, "abc", 3, &o, &ol);
    ok(ol == 3, "no stops: pass through");
    stop_flush(&m, &o, &ol);
    ok(ol == 0, "no stops: nothing to flush");
    stop_free(&m);

    /* long text: the buffer stays small */
    stop_init(&m, stops, 1);
    size_t total = 0;
    for (int i = 0; i < 10000; i++) {
        stop_feed(&m, "0123456789<", 11, &o, &ol);
        total += ol;
    }
    ok(m.len < 64 && total == 10000 * 11 - 1, "buffer bounded over long streams (%zu)", m.len);
    stop_free(&m);
    return tap_done();
}
