/*
 * http.c -- llhttp wrapper: copies the request line / status and headers into
 * a struct http_msg, enforces the header size limit, and pauses llhttp after
 * the header block and after each message so that callers can relay bytes and
 * keep pipelined requests in their buffers.
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

enum { PAUSE_NONE = 0, PAUSE_HEADERS, PAUSE_COMPLETE };

static struct http_parser *from_ll(llhttp_t *ll)
{
    return (struct http_parser *)ll->data;
}

static int count_header_bytes(struct http_parser *hp, size_t len)
{
    size_t limit = hp->max_header_bytes ? hp->max_header_bytes : 65536;
    hp->header_bytes += len;
    if (hp->header_bytes > limit) {
        hp->too_large = 1;
        return -1;
    }
    return 0;
}

static void append(char **dst, size_t *dlen, const char *at, size_t len)
{
    *dst = xrealloc(*dst, *dlen + len + 1);
    memcpy(*dst + *dlen, at, len);
    *dlen += len;
    (*dst)[*dlen] = '\0';
}

static void flush_header(struct http_parser *hp)
{
    struct http_msg *m = &hp->msg;
    if (hp->cur_field == NULL)
        return;
    xgrow((void **)&m->headers, &m->cap_headers, m->n_headers + 1, sizeof(*m->headers));
    m->headers[m->n_headers].name = hp->cur_field;
    m->headers[m->n_headers].value = hp->cur_value ? hp->cur_value : xstrdup("");
    m->n_headers++;
    hp->cur_field = NULL;
    hp->cur_value = NULL;
    hp->cur_field_len = hp->cur_value_len = 0;
}

static int on_message_begin(llhttp_t *ll)
{
    struct http_parser *hp = from_ll(ll);
    hp->msg.content_length = -1;
    return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *hp = from_ll(ll);
    if (count_header_bytes(hp, len) == -1)
        return -1;
    size_t cur = hp->msg.url ? strlen(hp->msg.url) : 0;
    append(&hp->msg.url, &cur, at, len);
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *hp = from_ll(ll);
    if (count_header_bytes(hp, len) == -1)
        return -1;
    if (!hp->in_field) {
        flush_header(hp);
        hp->in_field = 1;
    }
    append(&hp->cur_field, &hp->cur_field_len, at, len);
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *hp = from_ll(ll);
    if (count_header_bytes(hp, len) == -1)
        return -1;
    hp->in_field = 0;
    append(&hp->cur_value, &hp->cur_value_len, at, len);
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    struct http_parser *hp = from_ll(ll);
    struct http_msg *m = &hp->msg;
    flush_header(hp);
    hp->in_field = 0;
    m->method = ll->method;
    m->status = ll->status_code;
    m->http_major = ll->http_major;
    m->http_minor = ll->http_minor;
    m->keep_alive = llhttp_should_keep_alive(ll);
    m->chunked = (ll->flags & F_CHUNKED) != 0;
    if (ll->flags & F_CONTENT_LENGTH)
        m->content_length = (int64_t)ll->content_length;
    const char *expect = http_msg_header(m, "Expect");
    m->expect_continue = expect != NULL && strcasecmp(expect, "100-continue") == 0;
    hp->headers_done = 1;
    hp->at_chunk_boundary = 1;
    hp->pause_reason = PAUSE_HEADERS;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *ll, const char *at, size_t len)
{
    struct http_parser *hp = from_ll(ll);
    if (hp->on_body != NULL)
        return hp->on_body(hp->arg, at, len);
    return 0;
}

static int on_chunk_header(llhttp_t *ll)
{
    struct http_parser *hp = from_ll(ll);
    hp->at_chunk_boundary = 0;
    return 0;
}

static int on_chunk_complete(llhttp_t *ll)
{
    struct http_parser *hp = from_ll(ll);
    hp->at_chunk_boundary = 1;
    return 0;
}

static int on_message_complete(llhttp_t *ll)
{
    struct http_parser *hp = from_ll(ll);
    hp->pause_reason = PAUSE_COMPLETE;
    return HPE_PAUSED;
}

void http_parser_init(struct http_parser *hp, int type, http_body_cb body_cb, void *arg)
{
    memset(hp, 0, sizeof(*hp));
    llhttp_settings_init(&hp->settings);
    hp->settings.on_message_begin = on_message_begin;
    hp->settings.on_url = on_url;
    hp->settings.on_header_field = on_header_field;
    hp->settings.on_header_value = on_header_value;
    hp->settings.on_headers_complete = on_headers_complete;
    hp->settings.on_body = on_body;
    hp->settings.on_chunk_header = on_chunk_header;
    hp->settings.on_chunk_complete = on_chunk_complete;
    hp->settings.on_message_complete = on_message_complete;
    llhttp_init(&hp->ll, (llhttp_type_t)type, &hp->settings);
    hp->ll.data = hp;
    hp->on_body = body_cb;
    hp->arg = arg;
    hp->msg.content_length = -1;
}

static void msg_free(struct http_msg *m)
{
    for (size_t i = 0; i < m->n_headers; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
    free(m->url);
    memset(m, 0, sizeof(*m));
    m->content_length = -1;
}

void http_parser_free(struct http_parser *hp)
{
    msg_free(&hp->msg);
    free(hp->cur_field);
    free(hp->cur_value);
    hp->cur_field = hp->cur_value = NULL;
    hp->cur_field_len = hp->cur_value_len = 0;
}

void http_parser_reset(struct http_parser *hp)
{
    http_parser_free(hp);
    /* llhttp back to its start state: after an abandoned message (a retried
     * 503 whose body was never read) it would still expect that body. */
    llhttp_reset(&hp->ll);
    hp->header_bytes = 0;
    hp->in_field = 0;
    hp->headers_done = 0;
    hp->too_large = 0;
    hp->at_chunk_boundary = 0;
    hp->pause_reason = PAUSE_NONE;
}

enum http_event http_parser_feed(struct http_parser *hp, const char *data, size_t len,
                                 size_t *consumed)
{
    hp->pause_reason = PAUSE_NONE;
    llhttp_errno_t e = llhttp_execute(&hp->ll, data, len);
    if (e == HPE_OK) {
        *consumed = len;
        return HTTP_EV_MORE;
    }
    if (e == HPE_PAUSED) {
        const char *pos = llhttp_get_error_pos(&hp->ll);
        *consumed = pos ? (size_t)(pos - data) : len;
        llhttp_resume(&hp->ll);
        if (hp->pause_reason == PAUSE_HEADERS)
            return HTTP_EV_HEADERS;
        return HTTP_EV_COMPLETE;
    }
    *consumed = 0;
    return HTTP_EV_ERROR;
}

enum http_event http_parser_finish(struct http_parser *hp)
{
    hp->pause_reason = PAUSE_NONE;
    llhttp_errno_t e = llhttp_finish(&hp->ll);
    if (e == HPE_PAUSED || hp->pause_reason == PAUSE_COMPLETE) {
        llhttp_resume(&hp->ll);
        return HTTP_EV_COMPLETE;
    }
    if (e == HPE_OK)
        return HTTP_EV_MORE;
    return HTTP_EV_ERROR;
}

const char *http_parser_error(const struct http_parser *hp)
{
    if (hp->too_large)
        return "request header fields too large";
    const char *r = llhttp_get_error_reason(&hp->ll);
    return r ? r : llhttp_errno_name(llhttp_get_errno(&hp->ll));
}

int http_parser_in_message(const struct http_parser *hp)
{
    return hp->header_bytes > 0 || hp->headers_done || llhttp_message_needs_eof(&hp->ll);
}

const char *http_msg_header(const struct http_msg *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (strcasecmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

const char *http_method_name(int method)
{
    return llhttp_method_name((llhttp_method_t)method);
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

int http_header_is_hop_by_hop(const char *name)
{
    static const char *const hop[] = {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
        "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
    };
    switch (name[0] | 0x20) {  /* every proxied header is checked: reject most by letter */
    case 'c': case 'k': case 'p': case 't': case 'u':
        break;
    default:
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(hop); i++)
        if (strcasecmp(name, hop[i]) == 0)
            return 1;
    return 0;
}
