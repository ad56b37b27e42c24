/*
 * multipart.h -- a walker over a multipart/form-data body (RFC 7578): the
 * boundary from the Content-Type, then each part's name, filename, part
 * Content-Type and bytes, borrowed from the body. Never copies or changes
 * the body; no allocation. Shared by the worker (transcriptions) and able
 * to serve the gateway's model-field peek.
 */
#ifndef LLMUX_MULTIPART_H
#define LLMUX_MULTIPART_H

#include <stddef.h>

struct multipart_part {
    char name[128];             /* form field name ("" when absent) */
    char filename[256];         /* "" when absent; has_filename says if given */
    int has_filename;
    char content_type[128];     /* the part's Content-Type, "" when absent */
    const char *data;           /* borrowed from the body */
    size_t len;
};

/* Called for each part. Return nonzero to stop the walk. */
typedef int (*multipart_fn)(void *arg, const struct multipart_part *part);

/* Copy the boundary parameter of Content-Type <ct> into <out>; 0 or -1. */
int multipart_boundary(const char *ct, char *out, size_t outlen);

/* Walk the parts of <body>. Returns 1 when the closing delimiter was
 * reached or <fn> stopped, 0 when the body ends early (truncated or
 * malformed after the last whole part), -1 with <err> when there is no
 * valid boundary or no part at all. */
int multipart_each(const char *body, size_t len, const char *content_type, multipart_fn fn,
                   void *arg, char *err, size_t errlen);

#endif
