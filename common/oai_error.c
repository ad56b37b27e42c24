/*
 * oai_error.c -- builds OpenAI error bodies with jansson so that messages are
 * always escaped correctly.
 */
#include "oai_error.h"

#include <jansson.h>
#include <stdlib.h>

#include "util.h"

const char *oai_error_type(int status)
{
    switch (status) {
    case 400: case 405: case 411: case 413: case 414: case 415: case 422: case 431:
        return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 408: case 504: return "timeout_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    default:  return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

char *oai_error_json(int status, const char *message, const char *param, const char *code)
{
    json_t *err = json_object();
    json_object_set_new(err, "message", json_string(message ? message : ""));
    json_object_set_new(err, "type", json_string(oai_error_type(status)));
    json_object_set_new(err, "param", param ? json_string(param) : json_null());
    json_object_set_new(err, "code", code ? json_string(code) : json_integer(status));
    json_t *root = json_object();
    json_object_set_new(root, "error", err);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s == NULL)      /* message was not valid UTF-8 */
        return xstrdup("{\"error\":{\"message\":\"error\",\"type\":\"server_error\",\"param\":null,\"code\":500}}");
    char *out = xstrdup(s);
    free(s);
    return out;
}
