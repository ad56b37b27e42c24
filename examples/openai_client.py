"""examples/openai_client.py -- the official openai client against llmux.

    .venv/bin/python examples/openai_client.py
"""
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ.get("LLMUX_URL", "http://127.0.0.1:8000") + "/v1",
                api_key="unused")
print([m.id for m in client.models.list()])
r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hello"}], max_tokens=16)
print(r.choices[0].message.content)
for chunk in client.chat.completions.create(model="assistant", user="bob", stream=True, max_tokens=16,
                                            messages=[{"role": "user", "content": "Hi"}]):
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
print()
e = client.embeddings.create(model="bge-m3-tiny", input=["hello", "world"])
print(len(e.data), "embeddings of dim", len(e.data[0].embedding), "usage", e.usage.prompt_tokens)
# rerank and score are not in the openai client: plain POSTs through its HTTP layer
r = client.post("/rerank", cast_to=object,
                body={"model": "bge-reranker-tiny", "query": "what is a panda?",
                      "documents": ["hi", "The giant panda is a bear."]})
print([(x["index"], round(x["relevance_score"], 4)) for x in r["results"]])
# speech to text (multipart upload): text, plus SenseVoice's language/emotion/event
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "models", "sensevoice", "ko.wav"), "rb") as f:
    t = client.audio.transcriptions.create(model="asr", file=f, response_format="verbose_json")
print(repr(t.text), t.language, t.duration, getattr(t, "emotion", None), getattr(t, "event", None))
