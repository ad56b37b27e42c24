/*
 * gw_body.h -- reads the few fields the gateway needs from a request body
 * without changing it: "model", "stream" and a sticky field from JSON, or
 * the parts of a multipart/form-data upload. Each body is parsed once. The body is never
 * re-encoded; these functions only look.
 */
#ifndef LLMUX_GW_BODY_H
#define LLMUX_GW_BODY_H

#include <stddef.h>

struct gw_body_info {
    char *model;                /* new string or NULL when absent */
    int   model_bad_type;       /* "model" present but not a string */
    int   stream;               /* "stream": true */
    /* private, for gw_body_field(): the body (borrowed from the caller;
     * a JSON body is scanned again, a multipart one walked again) and a
     * multipart body's Content-Type */
    int         is_json;
    const char *body;
    size_t      len;
    const char *content_type;
};

/* Inspect a JSON body: "model" and "stream" (the body is validated whole,
 * no tree is built). <body> must outlive <info> (gw_body_field reads it).
 * Returns 0, or -1 with a message in <err> (<errlen> bytes) when the body
 * is not a JSON object. Free the info with gw_body_info_free(). */
int gw_body_inspect_json(const char *body, size_t len, struct gw_body_info *info,
                         char *err, size_t errlen);

/* Inspect a multipart/form-data body whose Content-Type is <content_type>
 * (with its boundary parameter): the "model" and "stream" fields. <body> and
 * <content_type> must outlive <info> (gw_body_field reads them). Returns 0,
 * or -1 with a message in <err>. */
int gw_body_inspect_multipart(const char *body, size_t len, const char *content_type,
                              struct gw_body_info *info, char *err, size_t errlen);

/* Another field of the inspected body (a sticky key), without parsing it
 * again: a JSON string or number as text, or the multipart field's value.
 * New string (caller frees) or NULL when absent. */
char *gw_body_field(const struct gw_body_info *info, const char *name);

void gw_body_info_free(struct gw_body_info *info);

#endif
