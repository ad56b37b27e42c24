/*
 * api.h -- the worker's route handlers, one file per family: chat.c,
 * completions.c, tokenize.c, info.c (models, health, load, version),
 * embeddings.c, pooling.c, rerank.c (rerank and score). Each
 * reads the request body of <c> and answers through wk_conn_*; none blocks.
 */
#ifndef LLMUX_API_H
#define LLMUX_API_H

struct wk_conn;

void api_chat_completions(struct wk_conn *c);
void api_completions(struct wk_conn *c);
void api_tokenize(struct wk_conn *c);
void api_detokenize(struct wk_conn *c);
void api_models(struct wk_conn *c);
void api_health(struct wk_conn *c);
void api_load(struct wk_conn *c);
void api_version(struct wk_conn *c);
/* encoder workers: embeddings.c, pooling.c, rerank.c */
void api_embeddings(struct wk_conn *c);
void api_pooling(struct wk_conn *c);
void api_rerank(struct wk_conn *c);
void api_score(struct wk_conn *c);

#endif
