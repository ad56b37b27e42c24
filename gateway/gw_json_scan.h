/*
 * gw_json_scan.h -- a validating, allocation-free JSON scanner for request
 * bodies: checks the whole text is one RFC 8259 value (UTF-8 validated,
 * as strict as jansson's decoder: no NUL escapes, depth-bounded) and
 * reports where the members of the top-level object are. The gateway reads
 * only a few fields, so building a tree per request would be waste. It
 * never copies or changes the body.
 */
#ifndef LLMUX_GW_JSON_SCAN_H
#define LLMUX_GW_JSON_SCAN_H

#include <stddef.h>

enum gw_json_type { GWJ_NONE, GWJ_OBJECT, GWJ_ARRAY, GWJ_STRING, GWJ_NUMBER, GWJ_TRUE,
                    GWJ_FALSE, GWJ_NULL };

/* A value inside the body: its type and bytes (for a string: the raw
 * contents between the quotes, escapes not decoded). */
struct gw_json_span {
    enum gw_json_type type;
    const char *p;
    size_t len;
};

/* Validate <body> and find the top-level members named in <keys> (n keys,
 * NUL-terminated, compared after unescaping); vals[i] gets the LAST
 * occurrence (as jansson), type GWJ_NONE when absent. *top gets the
 * top-level type. Returns 0, or -1 with "<what> (line L, column C)" in
 * <err>. */
int gw_json_scan(const char *body, size_t len, const char *const *keys, size_t n,
                 struct gw_json_span *vals, enum gw_json_type *top, char *err, size_t errlen);

/* Decode a GWJ_STRING span's escapes into a new NUL-terminated string
 * (caller frees). The span was validated by gw_json_scan. */
char *gw_json_string(const struct gw_json_span *s);

#endif
