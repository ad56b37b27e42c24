/*
 * test_body.c -- request body inspection: JSON fields (model, stream, sticky
 * field of any scalar type), malformed JSON, multipart/form-data model and
 * sticky fields, quoted boundaries, file parts before the model field.
 */
#include <stdlib.h>
#include <string.h>

#include "gw_body.h"
#include "tap.h"

static void test_json(void)
{
    struct gw_body_info bi;
    char err[256];
    const char *b = "{\"model\":\"qwen3\",\"stream\":true,\"user\":\"alice\",\"messages\":[]}";
    char *sticky = NULL;
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == 0 &&
       strcmp(bi.model, "qwen3") == 0 && bi.stream &&
       strcmp(sticky = gw_body_field(&bi, "user"), "alice") == 0,
       "model, stream and sticky field");
    free(sticky);
    gw_body_info_free(&bi);
    b = "{\"model\":\"m\",\"user\":42}";
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == 0 &&
       strcmp(sticky = gw_body_field(&bi, "user"), "42") == 0 && !bi.stream,
       "numeric sticky value, stream defaults off");
    free(sticky);
    gw_body_info_free(&bi);
    b = "{\"messages\":[]}";
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == 0 && bi.model == NULL &&
       !bi.model_bad_type, "missing model");
    gw_body_info_free(&bi);
    b = "{\"model\":7}";
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == 0 && bi.model_bad_type,
       "non-string model flagged");
    gw_body_info_free(&bi);
    b = "{\"model\":\"m\",";
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == -1 &&
       strstr(err, "not valid JSON") != NULL, "truncated JSON: %s", err);
    b = "[1,2]";
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == -1 &&
       strstr(err, "JSON object") != NULL, "array body rejected");
    b = "{\"model\":\"a\\u0000b\"}";
    ok(gw_body_inspect_json(b, strlen(b), &bi, err, sizeof(err)) == -1,
       "NUL inside strings rejected by jansson");
}

static void test_multipart(void)
{
    struct gw_body_info bi;
    char err[256];
    const char *body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
        "Content-Type: audio/wav\r\n\r\nRIFF\0\0\0\0WAVEdata\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nsensevoice\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nbob\r\n"
        "--XyZ--\r\n";
    size_t len = 0;
    /* the body holds NUL bytes: measure up to the closing delimiter */
    const char *end = "--XyZ--\r\n";
    for (size_t i = 0;; i++)
        if (memcmp(body + i, end, strlen(end)) == 0) {
            len = i + strlen(end);
            break;
        }
    char *sticky = NULL;
    ok(gw_body_inspect_multipart(body, len, "multipart/form-data; boundary=XyZ", &bi, err,
                                 sizeof(err)) == 0 &&
       bi.model && strcmp(bi.model, "sensevoice") == 0 &&
       (sticky = gw_body_field(&bi, "user")) != NULL && strcmp(sticky, "bob") == 0,
       "model after a binary file part, sticky field");
    free(sticky);
    gw_body_info_free(&bi);
    ok(gw_body_inspect_multipart(body, len, "multipart/form-data; boundary=\"XyZ\"", &bi, err,
                                 sizeof(err)) == 0 && strcmp(bi.model, "sensevoice") == 0,
       "quoted boundary");
    gw_body_info_free(&bi);
    ok(gw_body_inspect_multipart(body, len, "multipart/form-data", &bi, err, sizeof(err)) == -1 &&
       strstr(err, "boundary") != NULL, "missing boundary: %s", err);
    ok(gw_body_inspect_multipart("garbage", 7, "multipart/form-data; boundary=XyZ", &bi, err,
                                 sizeof(err)) == -1, "no parts");
    const char *nomodel = "--B\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--B--\r\n";
    ok(gw_body_inspect_multipart(nomodel, strlen(nomodel), "multipart/form-data; boundary=B",
                                 &bi, err, sizeof(err)) == 0 && bi.model == NULL,
       "multipart without a model field");
    gw_body_info_free(&bi);
}

int main(void)
{
    test_json();
    test_multipart();
    return tap_done();
}
