"""`POST /v1/responses` with the official OpenAI SDK against the real Envoy, on both layouts:
OpenAI steps take the request as it is (their own Responses API, state and built-in tools
included); the other steps translate it to the unified one and the answer (whole or streamed)
back into a Response object or its event sequence."""

import json
import uuid
from decimal import Decimal

import openai
import pytest
from conftest import DEMO_KEYS, expected_cost

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def client(gw):
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)


def unique():
    return f"respond {uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("alias,provider", [("chat", "anthropic"), ("chat-openai-first", "openai")])
def test_a_response_whole_and_streamed(gateway, alias, provider):
    c = client(gateway)
    msg = unique()
    r = c.responses.with_raw_response.create(model=alias, input=msg, instructions="Be terse.", store=False)
    assert r.headers["x-aigw-provider"] == provider
    resp = r.parse()
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.output_text == f"Echo: {msg}"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.store is False and resp.instructions == "Be terse."
    sent = gateway.provider_requests(provider, containing=msg)
    assert len(sent) == 1 and "Be terse." in sent[0]["body"]
    if provider == "openai":
        # Passed through to OpenAI's own Responses API: only the model changed.
        assert sent[0]["path"] == "/v1/responses"
        assert json.loads(sent[0]["body"])["instructions"] == "Be terse."
        assert json.loads(sent[0]["body"])["model"] == "gpt-4o-mini-2024-07-18"

    msg = unique()
    with c.responses.stream(model=alias, input=msg) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.output_text == f"Echo: {msg}" and final.usage.output_tokens > 0


@pytest.mark.parametrize("alias", ["chat", "chat-openai-first"])
def test_a_function_call_round_trip(gateway, alias):
    c = client(gateway)
    first = c.responses.create(model=alias, input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris"}
    second = c.responses.create(model=alias, tools=[WEATHER], input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, cloudy"}])
    assert second.status == "completed" and second.output_text
    # Streamed, the call comes as its own item with its arguments.
    with c.responses.stream(model=alias, input="Weather in Paris?", tools=[WEATHER], tool_choice="required") as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert "response.function_call_arguments.done" in kinds
    assert [o.type for o in final.output if o.type == "function_call"] == ["function_call"]


@pytest.mark.parametrize("alias,fault,served_by", [("chat", "anthropic=529", "openai"),
                                                   ("chat-openai-first", "openai=503", "anthropic")])
def test_a_failing_first_step_is_served_by_the_next_provider(gateway, alias, fault, served_by):
    c = client(gateway).with_options(default_headers={"x-fake-fault": fault})
    msg = unique()
    r = c.responses.with_raw_response.create(model=alias, input=msg)
    assert r.headers["x-aigw-provider"] == served_by and r.headers["x-aigw-attempts"] == "2"
    assert r.parse().output_text == f"Echo: {msg}"


def test_openais_stored_state_and_built_in_tools_reach_openai_steps(gateway):
    c = client(gateway)
    first = c.responses.create(model="chat-openai-first", input=unique())
    follow = c.responses.create(model="chat-openai-first", input=unique(), previous_response_id=first.id)
    assert follow.status == "completed" and follow.previous_response_id == first.id
    # OpenAI's own answer to an id it does not know comes back as it is.
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat-openai-first", input=unique(), previous_response_id="resp_unknown")
    assert e.value.code == "previous_response_not_found"
    assert c.responses.create(model="chat-openai-first", input=unique(), tools=[{"type": "web_search"}]).output_text


def test_what_needs_openais_stored_state_is_refused_by_name_on_other_steps_not_as_an_outage(gateway):
    c = client(gateway)
    msg = unique()
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat", input=msg, previous_response_id="resp_0123")
    assert e.value.code == "unsupported_parameter" and e.value.param == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="chat", input=msg, tools=[{"type": "web_search"}])
    assert e.value.param == "tools"
    # Refused by the Anthropic step before it was sent, and not moved on to the next provider.
    assert gateway.provider_requests("anthropic", containing=msg) == []
    assert gateway.provider_requests("openai", containing=msg) == []


def test_a_response_is_charged_and_audited_like_a_chat_call(gateway):
    c = client(gateway)
    r = c.responses.with_raw_response.create(model="chat-openai-first", input=unique())
    resp = r.parse()
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert (rec["outcome"], rec["provider"], rec["model"], rec["door"]) == ("ok", "openai", "gpt-4o-mini-2024-07-18",
                                                                           "responses")
    assert (rec["tokens"]["input"], rec["tokens"]["output"]) == (resp.usage.input_tokens, resp.usage.output_tokens)
    want = expected_cost("gpt-4o-mini-2024-07-18", {"input": resp.usage.input_tokens, "cached_input": 0,
                                                     "output": resp.usage.output_tokens, "reasoning": 0})
    assert Decimal(rec["cost_usd"]) == want
    assert int(r.headers["x-ratelimit-remaining-requests"]) >= 0


@pytest.mark.parametrize("alias", ["chat", "chat-openai-first"])
def test_a_streamed_response_is_audited_as_complete_with_its_usage(gateway, alias):
    import httpx

    body = {"model": alias, "input": unique(), "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/responses", json=body, timeout=10,
                      headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"}) as r:
        text = r.read().decode()
        rid = r.headers["x-aigw-request-id"]
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    usage = events[-1]["response"]["usage"]
    rec = gateway.audit(rid)[0]
    assert (rec["outcome"], rec["stream"]) == ("ok", True), rec
    assert (rec["tokens"]["input"], rec["tokens"]["output"]) == (usage["input_tokens"], usage["output_tokens"])
    assert not [f for f in rec["flags"] if f.startswith("usage")], rec["flags"]


def test_an_azure_step_takes_the_request_on_its_v1_responses_surface(gateway):
    c = client(gateway)
    msg = unique()
    r = c.responses.with_raw_response.create(model="chat-azure", input=msg)
    assert r.headers["x-aigw-provider"] == "azure"
    assert r.parse().output_text == f"Echo: {msg}"
    [sent] = gateway.provider_requests("azure", containing=msg)
    assert sent["path"] == "/openai/v1/responses" and "api-key" in sent["headers"]
    assert json.loads(sent["body"])["model"] == "gpt-4o-mini-2024-07-18"



@pytest.mark.parametrize("body,code,param", [
    (b'{"model":"chat","input":5}', "invalid_request", "input"),
    (b'{"model":"chat","input":[{"type":"mystery"}]}', "invalid_request", "input"),
    (b'{"model":"chat","input":"hi","text":{"format":{"type":"xml"}}}', "invalid_request", "text"),
    (b'{"input":"hi"}', "missing_model", "model"),
    (b'{"model": "chat", "input": ', "invalid_json", None),
])
def test_bad_responses_input_is_a_clear_400_and_audited(gateway, body, code, param):
    import httpx

    r = httpx.post(f"{gateway.url}/v1/responses", content=body, timeout=10,
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"]) == (code, param), err
    [rec] = gateway.audit(r.headers["x-aigw-request-id"])
    assert (rec["outcome"], rec["status"], rec["door"]) == ("refused_request", 400, "responses")
