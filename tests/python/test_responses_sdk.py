"""The OpenAI Responses API through the official `openai` SDK against a real `tandem serve`:
text, instructions, streaming events, function tools and JSON-schema output on the bundled
SLM, and clear refusals of what a stateless gateway cannot do."""
import json

import openai
import pytest
from pydantic import BaseModel

SLM = "qwen2.5-coder-0.5b"
SMALL = "smollm2-135m"

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_text_and_stream_agree(client):
    kw = dict(model=SMALL, instructions="Answer briefly.", input="Name a fruit.",
              max_output_tokens=16, temperature=0)
    r = client.responses.create(**kw)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.output_text
    assert r.usage.output_tokens <= 16 and r.usage.input_tokens > 0
    with client.responses.stream(**kw) as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == r.output_text
    assert final.output_text == r.output_text


def test_function_call_and_its_output(slm):
    ask = [{"role": "user", "content": "What is the weather in Taipei?"}]
    r = slm.responses.create(model=SLM, input=ask, tools=[WEATHER], tool_choice="required",
                             temperature=0, max_output_tokens=60)
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    args = json.loads(calls[0].arguments)
    assert "taipei" in args["city"].lower()
    follow = ask + [c.model_dump(exclude_none=True) for c in calls] + [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "31°C and sunny"}
    ]
    r2 = slm.responses.create(model=SLM, input=follow, tools=[WEATHER], tool_choice="none",
                              temperature=0, max_output_tokens=60)
    assert "31" in r2.output_text, r2.output_text


class Claim(BaseModel):
    policy_number: str
    amount_twd: int
    approved: bool


def test_json_schema_output_parses_into_the_model(slm):
    r = slm.responses.parse(
        model=SLM, temperature=0, max_output_tokens=120, text_format=Claim,
        input="Claim for policy P-2024-118, amount 52000 TWD, approved: yes. Extract it.",
    )
    claim = r.output_parsed
    assert isinstance(claim, Claim)
    assert claim.amount_twd == 52000


def test_stateless_refusals_are_clear(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=SMALL, input="hi", previous_response_id="resp_123")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=SMALL, input="hi", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"
