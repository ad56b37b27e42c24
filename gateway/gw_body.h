/*
 * gw_body.h -- reads the few fields the gateway needs from a request body
 * without changing it: "model", "stream" and one sticky field from JSON, or
 * the "model" part of a multipart/form-data upload. The body is never
 * re-encoded; these functions only look.
 */
#ifndef LLMUX_GW_BODY_H
#define LLMUX_GW_BODY_H

#include <stddef.h>

struct gw_body_info {
    char *model;                /* new string or NULL when absent */
    int   model_bad_type;       /* "model" present but not a string */
    int   stream;               /* "stream": true */
    char *sticky;               /* value of the requested field (string or number), or NULL */
};

/* Inspect a JSON body. <sticky_field> may be NULL. Returns 0, or -1 with a
 * message in <err> (<errlen> bytes) when the body is not a JSON object.
 * Free the info with gw_body_info_free(). */
int gw_body_inspect_json(const char *body, size_t len, const char *sticky_field,
                         struct gw_body_info *info, char *err, size_t errlen);

/* Inspect a multipart/form-data body whose Content-Type is <content_type>
 * (with its boundary parameter): the "model" field and, when given, the
 * <sticky_field> field. Returns 0, or -1 with a message in <err>. */
int gw_body_inspect_multipart(const char *body, size_t len, const char *content_type,
                              const char *sticky_field, struct gw_body_info *info,
                              char *err, size_t errlen);

void gw_body_info_free(struct gw_body_info *info);

#endif
