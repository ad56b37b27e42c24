/*
 * http.h -- HTTP/1.1 message framing on llhttp, for requests (gateway and
 * worker servers) and responses (the gateway's upstream side). The parser
 * stops at two points so the caller can act between them: when the header
 * block is complete and when the message is complete; bytes after a message
 * stay unconsumed (pipelining). Header names/values are copied into the
 * struct http_msg; body bytes go to an optional callback (already de-chunked)
 * while the caller may also relay the raw consumed bytes unchanged.
 */
#ifndef LLMUX_HTTP_H
#define LLMUX_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

struct http_header {
    char *name;
    char *value;
};

struct http_msg {
    int      method;            /* llhttp_method_t (requests) */
    char    *url;               /* request target, new string (requests) */
    int      status;            /* responses */
    int      http_major, http_minor;
    struct http_header *headers;
    size_t   n_headers, cap_headers;
    int      keep_alive;        /* llhttp_should_keep_alive() at header end */
    int      chunked;           /* Transfer-Encoding: chunked */
    int64_t  content_length;    /* -1 when absent */
    int      expect_continue;   /* Expect: 100-continue */
};

enum http_event {
    HTTP_EV_MORE = 0,           /* all input consumed; need more bytes */
    HTTP_EV_HEADERS,            /* header block complete (stopped right after it) */
    HTTP_EV_COMPLETE,           /* message complete (stopped right after it) */
    HTTP_EV_ERROR               /* malformed; see http_parser_error() */
};

/* Body callback: <len> de-chunked body bytes. Return 0, or -1 to fail the parse. */
typedef int (*http_body_cb)(void *arg, const char *at, size_t len);

struct http_parser {
    llhttp_t          ll;
    llhttp_settings_t settings;
    struct http_msg   msg;
    http_body_cb      on_body;  /* may be NULL */
    void             *arg;
    size_t            max_header_bytes;  /* request line + headers; 0 = 64 KiB */
    size_t            header_bytes;
    int               in_field;          /* last header callback was a field */
    char             *cur_field;         /* accumulating header name/value */
    size_t            cur_field_len;
    char             *cur_value;
    size_t            cur_value_len;
    int               at_chunk_boundary; /* chunked body: between chunks */
    int               headers_done;
    int               too_large;         /* header limit exceeded */
    int               pause_reason;      /* internal */
};

/* <type> HTTP_REQUEST or HTTP_RESPONSE. <on_body>/<arg> may be NULL. */
void http_parser_init(struct http_parser *hp, int type, http_body_cb on_body, void *arg);
/* Free the message contents; the parser is reusable after http_parser_reset(). */
void http_parser_free(struct http_parser *hp);
/* Prepare for the next message on the same connection (keeps type, callback). */
void http_parser_reset(struct http_parser *hp);

/* Feed <len> bytes. *<consumed> is set to the bytes used; the caller drops
 * them and keeps the rest. Returns the event that stopped parsing. After
 * HTTP_EV_HEADERS the caller calls again with the remaining bytes, even when
 * none remain: a message without a body completes on that (0-byte) call. */
enum http_event http_parser_feed(struct http_parser *hp, const char *data, size_t len,
                                 size_t *consumed);
/* The peer closed: for bodies delimited by close this completes the message.
 * Returns HTTP_EV_COMPLETE, HTTP_EV_MORE (nothing in progress) or HTTP_EV_ERROR. */
enum http_event http_parser_finish(struct http_parser *hp);
/* Message of the last error (borrowed). */
const char *http_parser_error(const struct http_parser *hp);
/* 1 when the parser is inside a message (some bytes of it were fed). */
int http_parser_in_message(const struct http_parser *hp);

/* Borrowed value of the first header named <name> (case-insensitive), or NULL. */
const char *http_msg_header(const struct http_msg *m, const char *name);
const char *http_method_name(int method);
const char *http_status_reason(int status);
/* 1 for headers a proxy must not forward (RFC 9110 7.6.1 connection-specific). */
int http_header_is_hop_by_hop(const char *name);

#endif
