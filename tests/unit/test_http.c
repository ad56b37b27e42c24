/*
 * test_http.c -- the llhttp wrapper: pauses after headers and after each
 * message, pipelined requests, chunked bodies (callback gets de-chunked bytes,
 * raw consumption stops at the message end), header limits, responses
 * delimited by close, hop-by-hop names, and OpenAI error bodies.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "oai_error.h"
#include "tap.h"
#include "util.h"

struct sink { char buf[4096]; size_t len; };

static int body_cb(void *arg, const char *at, size_t len)
{
    struct sink *s = arg;
    memcpy(s->buf + s->len, at, len);
    s->len += len;
    return 0;
}

/* Feed <data> in pieces of <step> bytes, collecting events; returns the
 * number of bytes consumed when the first message completed, or -1. */
static long feed_all(struct http_parser *hp, const char *data, size_t len, size_t step,
                     int *saw_headers)
{
    size_t off = 0;
    int again = 0;
    while (off < len || again) {
        again = 0;
        size_t n = len - off < step ? len - off : step;
        size_t used = 0;
        enum http_event ev = http_parser_feed(hp, data + off, n, &used);
        off += used;
        if (ev == HTTP_EV_HEADERS) {
            *saw_headers = 1;
            again = 1;      /* a message without body completes on a 0-byte feed */
            continue;
        }
        if (ev == HTTP_EV_COMPLETE)
            return (long)off;
        if (ev == HTTP_EV_ERROR)
            return -1;
    }
    return -2;
}

static void test_request_pipelined(void)
{
    const char *two =
        "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Content-Length: 5\r\nX-Multi: a\r\nX-Multi: b\r\n\r\nhello"
        "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t step = 1; step <= strlen(two); step = step * 2 + 1) {
        struct http_parser hp;
        struct sink s = { .len = 0 };
        int saw = 0;
        http_parser_init(&hp, HTTP_REQUEST, body_cb, &s);
        long used = feed_all(&hp, two, strlen(two), step, &saw);
        long first_len = (long)(strstr(two, "GET") - two);
        ok(used == first_len && saw, "step %zu: first message ends at %ld (got %ld)", step, first_len, used);
        ok(s.len == 5 && memcmp(s.buf, "hello", 5) == 0, "step %zu: body de-chunked", step);
        ok(hp.msg.method == HTTP_POST && strcmp(hp.msg.url, "/v1/chat/completions?x=1") == 0,
           "step %zu: method and url", step);
        ok(hp.msg.content_length == 5 && hp.msg.keep_alive && !hp.msg.chunked, "step %zu: framing", step);
        ok(strcmp(http_msg_header(&hp.msg, "content-type"), "application/json") == 0 &&
           strcmp(http_msg_header(&hp.msg, "X-MULTI"), "a") == 0 && hp.msg.n_headers == 5,
           "step %zu: headers case-insensitive, repeated kept", step);
        http_parser_reset(&hp);
        s.len = 0;
        saw = 0;
        long used2 = feed_all(&hp, two + used, strlen(two) - (size_t)used, step, &saw);
        ok(used2 == (long)(strlen(two) - (size_t)used) && hp.msg.method == HTTP_GET &&
           strcmp(hp.msg.url, "/health") == 0, "step %zu: second pipelined request", step);
        http_parser_free(&hp);
    }
}

static void test_chunked_response_raw(void)
{
    const char *resp =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
        "6\r\ndata: \r\n3\r\nab\n\r\n0\r\n\r\nEXTRA";
    struct http_parser hp;
    struct sink s = { .len = 0 };
    http_parser_init(&hp, HTTP_RESPONSE, body_cb, &s);
    size_t used = 0;
    enum http_event ev = http_parser_feed(&hp, resp, strlen(resp), &used);
    size_t hdr_len = (size_t)(strstr(resp, "\r\n\r\n") - resp) + 4;
    ok(ev == HTTP_EV_HEADERS && used == hdr_len, "response pauses right after the header block (%zu == %zu)", used, hdr_len);
    ok(hp.msg.status == 200 && hp.msg.chunked && hp.at_chunk_boundary, "status, chunked, at boundary");
    size_t used2 = 0;
    ev = http_parser_feed(&hp, resp + used, 5, &used2);
    ok(ev == HTTP_EV_MORE && used2 == 5 && !hp.at_chunk_boundary, "inside a chunk");
    size_t used3 = 0;
    ev = http_parser_feed(&hp, resp + used + 5, strlen(resp) - used - 5, &used3);
    ok(ev == HTTP_EV_COMPLETE && used + 5 + used3 == strlen(resp) - 5, "complete stops before trailing bytes");
    ok(s.len == 9 && memcmp(s.buf, "data: ab\n", 9) == 0, "body callback gets de-chunked bytes");
    http_parser_free(&hp);
}

static void test_response_until_close(void)
{
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body";
    struct http_parser hp;
    struct sink s = { .len = 0 };
    http_parser_init(&hp, HTTP_RESPONSE, body_cb, &s);
    size_t used = 0, used2 = 0;
    enum http_event ev = http_parser_feed(&hp, resp, strlen(resp), &used);
    ok(ev == HTTP_EV_HEADERS && hp.msg.content_length == -1, "no length: body until close");
    ev = http_parser_feed(&hp, resp + used, strlen(resp) - used, &used2);
    ok(ev == HTTP_EV_MORE, "body keeps coming");
    ok(http_parser_finish(&hp) == HTTP_EV_COMPLETE, "EOF completes it");
    ok(s.len == 9, "all body bytes seen");
    http_parser_free(&hp);
}

static void test_errors(void)
{
    struct http_parser hp;
    size_t used;
    http_parser_init(&hp, HTTP_REQUEST, NULL, NULL);
    ok(http_parser_feed(&hp, "GARBAGE\r\n\r\n", 11, &used) == HTTP_EV_ERROR, "garbage request line is an error");
    ok(http_parser_error(&hp) != NULL, "error has a message: %s", http_parser_error(&hp));
    http_parser_free(&hp);

    http_parser_init(&hp, HTTP_REQUEST, NULL, NULL);
    hp.max_header_bytes = 100;
    char big[400];
    snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nX-Big: %0200d\r\n\r\n", 1);
    ok(http_parser_feed(&hp, big, strlen(big), &used) == HTTP_EV_ERROR && hp.too_large,
       "header limit enforced");
    ok(strstr(http_parser_error(&hp), "too large") != NULL, "limit message");
    http_parser_free(&hp);

    http_parser_init(&hp, HTTP_REQUEST, NULL, NULL);
    const char *bad_cl = "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    ok(http_parser_feed(&hp, bad_cl, strlen(bad_cl), &used) == HTTP_EV_ERROR,
       "duplicate Content-Length rejected (request smuggling)");
    http_parser_free(&hp);

    http_parser_init(&hp, HTTP_REQUEST, NULL, NULL);
    const char *h10 = "GET /v1/models HTTP/1.0\r\n\r\n";
    ok(http_parser_feed(&hp, h10, strlen(h10), &used) == HTTP_EV_HEADERS && !hp.msg.keep_alive &&
       hp.msg.http_minor == 0, "HTTP/1.0 without keep-alive");
    http_parser_free(&hp);
}

static void test_reset_abandoned(void)
{
    /* A 503 whose body is never read, then the next attempt's answer on a
     * fresh connection through the same parser (gateway failover). */
    const char *r1 = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\n\r\n";
    const char *r2 = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    struct http_parser hp;
    size_t used;
    http_parser_init(&hp, HTTP_RESPONSE, NULL, NULL);
    ok(http_parser_feed(&hp, r1, strlen(r1), &used) == HTTP_EV_HEADERS && hp.msg.status == 503,
       "first answer: 503 headers");
    http_parser_reset(&hp);
    ok(http_parser_feed(&hp, r2, strlen(r2), &used) == HTTP_EV_HEADERS && hp.msg.status == 200,
       "after reset the parser expects a new message, not the abandoned body");
    http_parser_free(&hp);
}

static void test_misc(void)
{
    ok(http_header_is_hop_by_hop("connection") && http_header_is_hop_by_hop("Transfer-Encoding") &&
       !http_header_is_hop_by_hop("Content-Type"), "hop-by-hop names");
    ok(strcmp(http_status_reason(413), "Payload Too Large") == 0, "reason phrase");
    char *e = oai_error_json(404, "The model `x\"y` does not exist.", NULL, NULL);
    json_error_t je;
    json_t *j = json_loads(e, 0, &je);
    json_t *err = j ? json_object_get(j, "error") : NULL;
    ok(err && strcmp(json_string_value(json_object_get(err, "type")), "not_found_error") == 0 &&
       json_integer_value(json_object_get(err, "code")) == 404 &&
       json_is_null(json_object_get(err, "param")) &&
       strcmp(json_string_value(json_object_get(err, "message")), "The model `x\"y` does not exist.") == 0,
       "OpenAI error shape: %s", e);
    json_decref(j);
    free(e);
}

int main(void)
{
    test_request_pipelined();
    test_chunked_response_raw();
    test_response_until_close();
    test_errors();
    test_reset_abandoned();
    test_misc();
    return tap_done();
}
