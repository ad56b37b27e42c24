/*
 * chat_template.h -- chat templates: an interpreter of the Jinja2 subset that
 * Hugging Face chat templates use, rendering a context of jansson values
 * exactly as transformers' apply_chat_template does. A template error (parse
 * or runtime, raise_exception included) is a message, never a crash.
 * Owned by worker/template/; it knows nothing of tokenizers or HTTP.
 */
#ifndef LLMUX_CHAT_TEMPLATE_H
#define LLMUX_CHAT_TEMPLATE_H

#include <stddef.h>
#include <jansson.h>

struct chat_template;

/* Compile template source <src> (<len> bytes). NULL with a message naming
 * the line on a syntax error. */
struct chat_template *chat_template_compile(const char *src, size_t len, char *err,
                                            size_t errlen);
void chat_template_free(struct chat_template *t);

/* Find a model folder's template: chat_template.jinja when present, else
 * tokenizer_config.json's "chat_template" (a string, or the entry named
 * "default" of a list). NULL with a message when the folder has none. */
struct chat_template *chat_template_load_dir(const char *dir, char *err, size_t errlen);

/* Render with <vars> (a JSON object, borrowed) as the template's globals,
 * e.g. messages, tools, add_generation_prompt, bos_token, eos_token and the
 * chat_template_kwargs merged in (enable_thinking...). Behaves like
 * transformers: trim_blocks and lstrip_blocks on, undefined is falsy and
 * renders as "", tojson as transformers' (ensure_ascii=False, indent). *out
 * is malloc'd, NUL-terminated, the caller frees it. Returns 0, or -1 with a
 * message (a raise_exception text is passed through verbatim). */
int chat_template_render(const struct chat_template *t, json_t *vars, char **out,
                         size_t *out_len, char *err, size_t errlen);

/* The variables transformers (5.23) passes to a template, built from an
 * OpenAI-style request: <messages> (array, borrowed) with each message's
 * None-valued top-level keys dropped and its reasoning aliased (when
 * reasoning_content, thinking or reasoning is set, the message becomes
 * {"thinking": r, ...message, "reasoning_content": r}); "tools" (<tools>,
 * borrowed, or null); "documents": null; "add_generation_prompt"; the special
 * tokens of the model folder that are set (bos_token, eos_token, unk_token,
 * pad_token... from tokenizer_config.json, when <t> came from
 * chat_template_load_dir); then every key of <kwargs> (the request's
 * chat_template_kwargs, may be NULL) except those four names. New reference;
 * NULL when <messages> is not an array of objects (<err> says why). */
json_t *chat_template_vars(const struct chat_template *t, json_t *messages, json_t *tools,
                           int add_generation_prompt, json_t *kwargs, char *err, size_t errlen);

#endif
