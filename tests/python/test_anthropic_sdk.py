"""The Anthropic Messages API through the official `anthropic` SDK, unchanged, against a real
`tandem serve` with the bundled models: plain and streamed messages, tools (tool_use and
tool_result, streamed input_json_delta), count_tokens, and errors in Anthropic's shape."""
import json

import anthropic
import pytest
from pydantic import BaseModel

SLM = "qwen2.5-coder-0.5b"
SMALL = "smollm2-135m"

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
# The current SDK no longer takes sampling arguments; older clients send them in the body.
GREEDY = {"temperature": 0}
ASK = [{"role": "user", "content": "What is the weather in Taipei right now, in celsius?"}]


@pytest.fixture(scope="module")
def small(server):
    return anthropic.Anthropic(base_url=server, api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def claude_slm(slm_server):
    return anthropic.Anthropic(base_url=slm_server, api_key="not-needed", max_retries=0)


def test_message_and_stream_agree(small):
    kw = dict(model=SMALL, max_tokens=16, extra_body=GREEDY, system="Answer briefly.",
              messages=[{"role": "user", "content": "Name a fruit."}])
    m = small.messages.create(**kw)
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens")
    assert m.usage.input_tokens > 0 and 0 < m.usage.output_tokens <= 16
    with small.messages.stream(**kw) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    assert streamed == m.content[0].text
    assert final.content[0].text == m.content[0].text
    assert final.stop_reason == m.stop_reason
    assert final.usage.output_tokens == m.usage.output_tokens


def test_stop_sequences(small):
    m = small.messages.create(model=SMALL, max_tokens=40, extra_body=GREEDY,
                              messages=[{"role": "user", "content": "Count from 1 to 10, comma separated."}],
                              stop_sequences=["5"])
    assert "5" not in m.content[0].text


def test_forced_tool_use_fills_the_schema(claude_slm):
    m = claude_slm.messages.create(model=SLM, max_tokens=80, extra_body=GREEDY, messages=ASK,
                                   tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    assert m.stop_reason == "tool_use", m
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["get_weather"]
    assert uses[0].input["unit"] in ("celsius", "fahrenheit")
    assert "taipei" in uses[0].input["city"].lower()
    assert uses[0].id


def test_streamed_tool_use_accumulates_its_input(claude_slm):
    with claude_slm.messages.stream(model=SLM, max_tokens=80, extra_body=GREEDY, messages=ASK,
                                    tools=[WEATHER], tool_choice={"type": "any"}) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert "input_json" in events or "content_block_delta" in events, events
    uses = [b for b in final.content if b.type == "tool_use"]
    assert uses and uses[0].name == "get_weather"
    assert set(uses[0].input) == {"city", "unit"}
    assert final.stop_reason == "tool_use"


def test_tool_result_round_trip(claude_slm):
    first = claude_slm.messages.create(model=SLM, max_tokens=80, extra_body=GREEDY, messages=ASK,
                                       tools=[WEATHER], tool_choice={"type": "any"})
    use = next(b for b in first.content if b.type == "tool_use")
    history = ASK + [
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": json.dumps({"temperature": 31, "sky": "sunny"})}]},
    ]
    m = claude_slm.messages.create(model=SLM, max_tokens=60, extra_body=GREEDY, messages=history,
                                   tools=[WEATHER], tool_choice={"type": "none"})
    text = "".join(b.text for b in m.content if b.type == "text")
    assert "31" in text, text
    assert m.stop_reason in ("end_turn", "max_tokens")


class Claim(BaseModel):
    policy_number: str
    amount_twd: int
    approved: bool


def test_parse_fills_a_pydantic_model(claude_slm):
    m = claude_slm.messages.parse(
        model=SLM, max_tokens=120, output_format=Claim, extra_body=GREEDY,
        messages=[{"role": "user", "content": "Claim for policy P-2024-118, amount 52000 TWD, approved: yes. Extract it."}],
    )
    claim = m.parsed_output
    assert isinstance(claim, Claim)
    assert claim.amount_twd == 52000


def test_count_tokens_grows_with_the_prompt(claude_slm):
    a = claude_slm.messages.count_tokens(model=SLM, messages=ASK)
    b = claude_slm.messages.count_tokens(model=SLM, messages=ASK, tools=[WEATHER])
    assert a.input_tokens > 5
    assert b.input_tokens > a.input_tokens + 20


def test_errors_are_anthropic_shaped(small):
    with pytest.raises(anthropic.BadRequestError) as e:
        small.messages.create(model=SMALL, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                              tools=[{"name": "bad name", "input_schema": {"type": "object"}}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "tools.0.name" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        small.messages.create(model="no-such-model", max_tokens=5,
                              messages=[{"role": "user", "content": "hi"}])
    # Still serving.
    assert small.messages.create(model=SMALL, max_tokens=2,
                                 messages=[{"role": "user", "content": "hi"}]).content
