/*
 * gw_admin.h -- the admin socket: a line protocol on a unix socket, served
 * on the gateway's event loop (gw_admin_start/gw_admin_stop are declared in
 * gw_ops.h). This header exposes the protocol's parsing and execution so unit
 * tests can drive them without a socket. Nothing here touches gateway
 * internals except through gw_ops.h.
 */
#ifndef LLMUX_GW_ADMIN_H
#define LLMUX_GW_ADMIN_H

#include <stddef.h>

#include "gw_ops.h"

struct gw;
struct evbuffer;

#define GW_ADMIN_MAX_LINE  65536    /* bytes of one line, without its newline */
#define GW_ADMIN_MAX_ARGS  64       /* words of one command */

/* One command's words. argv[argc] is NULL; the strings live in <buf>. */
struct gw_admin_words {
    int   argc;
    char *argv[GW_ADMIN_MAX_ARGS + 1];
    char *buf;
};

/* Parse the command of <line> (<len> bytes) that starts at *<pos>: words are
 * separated by blanks; "..." and '...' group, a backslash escapes the next
 * character (also inside "..."); an unquoted ';' ends the command. Returns
 * 1 with <w> filled (argc may be 0: an empty command) and *<pos> past the
 * command and its ';', 0 when nothing is left, or -1 with a message in <err>
 * (unterminated quote, too many words, NUL byte); after -1 *<pos> is <len>:
 * the rest of the line is dropped. Free <w> with gw_admin_words_free() after
 * a 1. */
int gw_admin_next_command(const char *line, size_t len, size_t *pos, struct gw_admin_words *w,
                          char *err, size_t errlen);
void gw_admin_words_free(struct gw_admin_words *w);

/* Run one parsed command (<argc> words, optionally led by "json") and append
 * its reply to <out>: text lines, or one JSON document with the "json"
 * prefix, always ending with an empty line. Errors read "error: MSG" (JSON:
 * {"error": "MSG"}). Returns 0, 1 when the reply was an error, or 2 for
 * "quit" (nothing appended: the caller closes the connection). An empty
 * command appends nothing and returns 0. */
int gw_admin_run(struct gw *gw, int argc, char **argv, struct evbuffer *out);

/* Parse "MODEL#R" into a new model name (caller frees) and replica index.
 * Returns 0, or -1 with a message in <err>. */
int gw_admin_parse_replica(const char *s, char **model, int *replica, char *err, size_t errlen);

/* Parse a whole decimal integer in [<min>, <max>]; 0 or -1. */
int gw_admin_parse_int(const char *s, long min, long max, long *out);

#endif
