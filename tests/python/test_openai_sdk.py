"""The official `openai` Python SDK against a real Tandem server, unchanged."""
import math

import openai
import pytest

CHAT = "smollm2-135m"
EMBED = "minilm-l6"


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert CHAT in ids and EMBED in ids
    assert client.models.retrieve(CHAT).id == CHAT


def test_chat(client):
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0, seed=3,
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0, seed=3,
    )
    assert again.choices[0].message.content == r.choices[0].message.content


def test_chat_stream_matches_plain(client):
    kw = dict(model=CHAT, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, temperature=0)
    plain = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_logprobs(client):
    r = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0,
        logprobs=True, top_logprobs=2,
    )
    lp = r.choices[0].logprobs.content
    assert lp and all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in lp)


def test_completions(client):
    r = client.completions.create(model=CHAT, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.usage.completion_tokens <= 5


def test_embeddings_default_base64(client):
    # The SDK asks for base64 by default and decodes it to floats.
    r = client.embeddings.create(model=EMBED, input=["a cat", "a kitten", "stock prices"])
    vs = [d.embedding for d in r.data]
    assert [len(v) for v in vs] == [384, 384, 384]
    norm = math.sqrt(sum(x * x for x in vs[0]))
    assert abs(norm - 1.0) < 1e-3
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))
    assert cos(vs[0], vs[1]) > cos(vs[0], vs[2])
    f = client.embeddings.create(model=EMBED, input="a cat", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(f.data[0].embedding, vs[0])) < 1e-6


def test_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CHAT, messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "x"}], temperature=5)
    # The server still answers after errors.
    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "ok"}], max_tokens=2)
    assert r.choices
