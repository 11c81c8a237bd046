"""Tool calls and structured outputs through the official `openai` SDK, unchanged, against
the real bundled SLM (Qwen2.5-Coder-0.5B, whose chat template renders tools) and SmolLM2
(whose template does not: Tandem describes the tools itself)."""
import json
from typing import List, Optional

import openai
import pytest
from pydantic import BaseModel, Field

SLM = "qwen2.5-coder-0.5b"
SMALL = "smollm2-135m"

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
            "additionalProperties": False,
        },
    },
}


def _ask_weather(**kw):
    return dict(
        model=SLM,
        messages=[{"role": "user", "content": "What is the weather in Taipei right now, in celsius?"}],
        tools=[WEATHER, TIME],
        temperature=0,
        max_tokens=80,
        **kw,
    )


def test_auto_tool_call(slm):
    r = slm.chat.completions.create(**_ask_weather())
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    call = ch.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert args["unit"] in ("celsius", "fahrenheit")
    assert "taipei" in args["city"].lower()


def test_required_and_named_tool_choice(slm):
    r = slm.chat.completions.create(**_ask_weather(tool_choice="required"))
    assert r.choices[0].message.tool_calls, r
    forced = slm.chat.completions.create(
        **_ask_weather(tool_choice={"type": "function", "function": {"name": "get_time"}})
    )
    calls = forced.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_time"]
    assert set(json.loads(calls[0].function.arguments)) == {"timezone"}


def test_tool_choice_none_answers_in_text(slm):
    r = slm.chat.completions.create(**_ask_weather(tool_choice="none"))
    assert not r.choices[0].message.tool_calls
    assert r.choices[0].message.content


def test_streamed_tool_call_deltas(slm):
    plain = slm.chat.completions.create(**_ask_weather())
    chunks = list(slm.chat.completions.create(stream=True, **_ask_weather()))
    calls = {}
    firsts = []
    for c in chunks:
        if not c.choices:
            continue
        for d in c.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(d.index, {"id": None, "name": None, "args": ""})
            if d.id:
                firsts.append(d.index)
                slot["id"] = d.id
                slot["name"] = d.function.name
            slot["args"] += d.function.arguments or ""
    # id and name come once per call, then argument fragments in order.
    assert firsts == sorted(calls)
    want = plain.choices[0].message.tool_calls
    assert [calls[i]["name"] for i in sorted(calls)] == [w.function.name for w in want]
    assert [json.loads(calls[i]["args"]) for i in sorted(calls)] == [
        json.loads(w.function.arguments) for w in want
    ]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_tool_result_round_trip(slm):
    first = slm.chat.completions.create(**_ask_weather())
    call = first.choices[0].message.tool_calls[0]
    messages = [
        {"role": "user", "content": "What is the weather in Taipei right now, in celsius?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 31, "sky": "sunny"})},
    ]
    # The history (an assistant call, the tool's result) renders in the model's template:
    # asked to answer now, the model reads the result.
    r = slm.chat.completions.create(
        model=SLM, messages=messages, tools=[WEATHER, TIME], tool_choice="none",
        temperature=0, max_tokens=60,
    )
    msg = r.choices[0].message
    assert r.choices[0].finish_reason in ("stop", "length")
    assert msg.content and "31" in msg.content


class City(BaseModel):
    name: str
    country: str
    population_millions: float
    landmarks: List[str] = Field(max_length=3)
    nickname: Optional[str] = None


def test_parse_with_pydantic(slm):
    r = slm.beta.chat.completions.parse(
        model=SLM,
        messages=[{"role": "user", "content": "Describe Taipei as structured data."}],
        response_format=City,
        temperature=0,
        max_tokens=160,
    )
    city = r.choices[0].message.parsed
    assert isinstance(city, City)
    assert city.name


def test_json_object_mode_streams_valid_json(slm):
    chunks = slm.chat.completions.create(
        model=SLM,
        messages=[{"role": "user", "content": "Give me a JSON object with keys a and b set to 1 and 2."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=60,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(json.loads(text), dict)


def test_generic_template_tool_call(client):
    """SmolLM2's template has no tool support: the tools are described by Tandem and the
    call is still constrained to the schema."""
    r = client.chat.completions.create(
        model=SMALL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_tokens=60,
    )
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit")


def test_unenforceable_schema_is_a_400_naming_the_keyword(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=SMALL,
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "odd", "schema": {"type": "object", "not": {"required": ["a"]}}}},
            max_tokens=5,
        )
    err = e.value.body
    assert err["param"] == "response_format.json_schema.schema"
    assert "not" in err["message"]


def test_malformed_tools_are_400s_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=SMALL, messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "bad name"}}],
        )
    assert e.value.body["param"] == "tools[0].function.name"
