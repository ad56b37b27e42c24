/*
 * oai_error.h -- OpenAI-shaped error bodies:
 *   {"error":{"message":"...","type":"...","param":null,"code":404}}
 * The type follows the status as OpenAI and vLLM name it. Shared by the
 * gateway and the worker; builds strings only, does no I/O.
 */
#ifndef LLMUX_OAI_ERROR_H
#define LLMUX_OAI_ERROR_H

/* "invalid_request_error", "authentication_error", "not_found_error", ... by status. */
const char *oai_error_type(int status);

/* New JSON string (caller frees). <param> and <code> may be NULL: param is
 * then null and code the numeric status. */
char *oai_error_json(int status, const char *message, const char *param, const char *code);

#endif
