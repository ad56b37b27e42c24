/*
 * test_json_scan.c -- the gateway's body scanner against jansson as the
 * reference: fixed cases, then thousands of random mutations of real
 * request bodies where "is a valid JSON object" must agree with
 * json_loadb() and the model/stream fields must equal jansson's.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "gw_json_scan.h"
#include "tap.h"
#include "util.h"

static int scan_obj(const char *b, size_t n, struct gw_json_span *v)
{
    static const char *const keys[] = { "model", "stream" };
    enum gw_json_type top;
    char err[200];
    if (gw_json_scan(b, n, keys, 2, v, &top, err, sizeof(err)) < 0)
        return 0;
    return top == GWJ_OBJECT;
}

/* jansson's verdict, counting documents with integers jansson cannot hold
 * as "unknown" (-1): the scanner accepts any number grammar on purpose. */
static int jansson_obj(const char *b, size_t n, json_t **root)
{
    json_error_t je;
    *root = json_loadb(b, n, 0, &je);
    if (*root == NULL)
        return strstr(je.text, "too big") != NULL ? -1 : 0;
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return 0;
    }
    return 1;
}

static const char *seeds[] = {
    "{\"model\":\"qwen3\",\"messages\":[{\"role\":\"user\",\"content\":\"hi \\u00e9\\ud83d\\ude00\"}],"
    "\"stream\":true,\"max_tokens\":16,\"temperature\":0.7e-1}",
    "{\"model\":\"m\\/x\",\"input\":[\"a\",\"b\"],\"stream\":false,\"user\":null}",
    " {\"prompt\":[1,2,3],\"model\":\"\xc3\xa9t\xc3\xa9\",\"n\":-0.5E+3} ",
    "{\"a\":{\"b\":[{\"c\":[]},{}]},\"model\":\"last\",\"model\":\"wins\"}",
};

int main(void)
{
    struct gw_json_span v[2];
    /* fixed cases */
    const char *simple = "{\"model\":\"a\\\"b\",\"stream\":true}";
    ok(scan_obj(simple, strlen(simple), v) && v[0].type == GWJ_STRING &&
       v[1].type == GWJ_TRUE, "model and stream found");
    char *m = gw_json_string(&v[0]);
    ok(strcmp(m, "a\"b") == 0, "escape decoded: %s", m);
    free(m);
    const char *dup = seeds[3];
    ok(scan_obj(dup, strlen(dup), v) && (m = gw_json_string(&v[0])) && strcmp(m, "wins") == 0,
       "last duplicate wins, as jansson");
    free(m);
    const char *bad[] = { "", "{", "{\"a\":}", "{\"a\":1,}", "[1,]", "{\"a\":01}", "{\"a\":1.}",
                          "{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\t\"}",
                          "{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":tru}",
                          "{} x", "{\"a\":\"\\x\"}" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ok(!scan_obj(bad[i], strlen(bad[i]), v), "rejected: %s", bad[i]);
    char *deep = xmalloc(5000 * 2 + 16);
    size_t n = 0;
    deep[n++] = '{';
    memcpy(deep + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 5000; i++)
        deep[n++] = '[';
    for (int i = 0; i < 5000; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    ok(!scan_obj(deep, n, v), "nesting deeper than 2048 rejected");
    free(deep);

    /* random mutations against jansson */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int agree = 0, total = 0, fields = 1;
    const char alphabet[] = "{}[]\",:\\u0aetfn-1.e \x80\xc3\xa9\xff";
    for (int it = 0; it < 20000; it++) {
        const char *seed = seeds[it % 4];
        size_t len = strlen(seed);
        char buf[512];
        memcpy(buf, seed, len);
        int edits = 1 + (int)((rng >> 60) & 3);
        for (int e = 0; e < edits; e++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            size_t pos = (size_t)(rng % len);
            char c = alphabet[(rng >> 20) % (sizeof(alphabet) - 1)];
            switch ((rng >> 40) % 3) {
            case 0: buf[pos] = c; break;                                 /* replace */
            case 1: if (len > 1) { memmove(buf + pos, buf + pos + 1, len - pos - 1); len--; }
                    break;                                               /* delete */
            default: if (len < sizeof(buf) - 1) {                        /* insert */
                         memmove(buf + pos + 1, buf + pos, len - pos); buf[pos] = c; len++; }
            }
        }
        json_t *root;
        int want = jansson_obj(buf, len, &root);
        if (want < 0)
            continue;
        int got = scan_obj(buf, len, v);
        total++;
        if (got == want) {
            agree++;
        } else if (total - agree <= 3) {
            diag("disagree (jansson %d, scan %d): %.*s", want, got, (int)len, buf);
        }
        if (got && want) {
            json_t *jm = json_object_get(root, "model");
            char *sm = v[0].type == GWJ_STRING ? gw_json_string(&v[0]) : NULL;
            if ((json_is_string(jm) != (sm != NULL)) ||
                (sm && strcmp(sm, json_string_value(jm)) != 0) ||
                (json_is_true(json_object_get(root, "stream")) != (v[1].type == GWJ_TRUE)))
                fields = 0;
            free(sm);
        }
        json_decref(root);
    }
    ok(agree == total && total > 10000, "validity agrees with jansson on %d/%d mutated bodies",
       agree, total);
    ok(fields, "model and stream equal jansson's on every valid mutation");
    return tap_done();
}
