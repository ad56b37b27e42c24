#!/bin/sh
# examples/curl.sh -- talk to the demo gateway with curl.
set -x
URL=${LLMUX_URL:-http://127.0.0.1:8000}
curl -s "$URL/v1/models"; echo
curl -s "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
     -d '{"model":"chat","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16}' -D - ; echo
curl -sN "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
     -d '{"model":"assistant","user":"alice","stream":true,"messages":[{"role":"user","content":"Hi"}],"max_tokens":16}'
curl -s "$URL/v1/embeddings" -H 'Content-Type: application/json' \
     -d '{"model":"bge-m3-tiny","input":["a","b"],"encoding_format":"base64"}'; echo
curl -s "$URL/pooling" -H 'Content-Type: application/json' \
     -d '{"model":"embed","input":"the sparse weights of a sentence","task":"sparse"}'; echo
curl -s "$URL/v1/rerank" -H 'Content-Type: application/json' \
     -d '{"model":"bge-reranker-tiny","query":"what is a panda?","documents":["hi","The giant panda is a bear."],"top_n":1}'; echo
curl -s "$URL/v1/score" -H 'Content-Type: application/json' \
     -d '{"model":"rerank","text_1":"what is a panda?","text_2":["hi","a bear"]}'; echo
curl -s "$URL/v1/audio/transcriptions" -F model=asr -F response_format=verbose_json \
     -F file=@"$(dirname "$0")/models/sensevoice/ko.wav"; echo
curl -s "$URL/v1/audio/transcriptions" -F model=sensevoice-tiny -F response_format=srt \
     -F language=ko -F file=@"$(dirname "$0")/models/sensevoice/ko.mp3"; echo
curl -s "$URL/health"; echo
curl -s "$URL/metrics" | grep '^llmux_requests_total'
