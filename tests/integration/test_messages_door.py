"""The second front door, Anthropic's Messages API: the official anthropic SDK with only its
base_url changed, to an Anthropic upstream (passed as written but for the model, its answer as it
comes) and to an OpenAI upstream (translated there and back); streamed tool calls in both
directions."""

import base64
import json
import uuid
from decimal import Decimal

import anthropic
import openai
import pytest
from conftest import DEMO_KEYS, expected_cost

WEATHER = {"name": "get_weather", "description": "Current weather",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def unique(text="hello"):
    return f"{text} {uuid.uuid4().hex[:12]}"


@pytest.fixture
def claude(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=DEMO_KEYS["acme"], max_retries=0)


@pytest.mark.parametrize("model,provider,served_by", [
    ("chat", "anthropic", "claude-sonnet-4-5-20250929"),
    ("chat-openai-first", "openai", "gpt-4o-mini-2024-07-18")])
def test_anthropic_sdk_non_streaming(gateway, claude, model, provider, served_by):
    msg = unique()
    out = claude.messages.with_raw_response.create(model=model, max_tokens=64, system="Be terse.",
                                                   messages=[{"role": "user", "content": msg}])
    m = out.parse()
    assert out.headers["x-aigw-provider"] == provider
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text == f"Echo: {msg}"
    assert m.stop_reason == "end_turn" and m.model == served_by
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == len(f"Echo: {msg}".split())
    [seen] = gateway.provider_requests(provider, containing=msg)
    assert "x-api-key" not in seen["headers"] or seen["headers"]["x-api-key"] != DEMO_KEYS["acme"]
    if provider == "openai":
        sent = json.loads(seen["body"])
        assert sent["messages"][0] == {"role": "system", "content": "Be terse."} and sent["max_tokens"] == 64
    [rec] = gateway.audit(out.headers["x-aigw-request-id"])
    assert rec["outcome"] == "ok" and rec["tokens"]["output"] == m.usage.output_tokens
    assert Decimal(rec["cost_usd"]) == expected_cost(served_by, rec["tokens"])


@pytest.mark.parametrize("model", ["chat", "chat-openai-first"])
def test_anthropic_sdk_streaming(gateway, claude, model):
    msg = unique("stream")
    with claude.messages.stream(model=model, max_tokens=64, messages=[{"role": "user", "content": msg}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == f"Echo: {msg}"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(f"Echo: {msg}".split()) and final.usage.input_tokens > 0


@pytest.mark.parametrize("model", ["chat", "chat-openai-first"])
def test_anthropic_sdk_streamed_tool_call(gateway, claude, model):
    with claude.messages.stream(model=model, max_tokens=64, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"},
                                messages=[{"role": "user", "content": unique("weather")}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    # The tool result goes back in Anthropic's shape and reaches the provider in its own.
    msg = unique("after")
    m = claude.messages.create(model=model, max_tokens=64, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"},
                                     {"type": "text", "text": msg}]}])
    assert m.content[0].text == f"Echo: {msg}"


def test_openai_sdk_streamed_tool_call_from_an_anthropic_upstream(gateway):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}]
    chunks = list(client.chat.completions.create(
        model="chat", stream=True, tools=tools, tool_choice="required",
        messages=[{"role": "user", "content": unique("weather")}]))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]
    # Not streamed, the same call in one message.
    out = client.chat.completions.create(model="chat", tools=tools, tool_choice="required",
                                         messages=[{"role": "user", "content": unique("weather")}])
    assert out.choices[0].finish_reason == "tool_calls"
    assert json.loads(out.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}


def test_messages_door_errors_are_in_anthropic_shape(gateway, claude):
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error" and "no-such-model" in e.value.body["error"]["message"]
    r = gateway.client.post("/v1/messages", headers={"x-api-key": DEMO_KEYS["acme"]},
                            json={"model": "chat", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}
    # A failed chain explains itself in Anthropic's shape too.
    r = gateway.client.post("/v1/messages", headers={"x-api-key": DEMO_KEYS["acme"], "x-fake-fault": "*=503"},
                            json={"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "overloaded_error"
    assert "anthropic answered 503" in r.json()["error"]["message"]


def test_what_a_translating_step_cannot_carry_is_a_400_in_anthropic_shape_and_audited(gateway, claude):
    """A document block passes to Anthropic as written; a chain whose step is OpenAI (the Messages
    request translated there) refuses it by name, before the provider is asked, in the door's
    shape, and the call is on record."""
    doc = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}}
    msg = unique("pdf")
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.with_raw_response.create(model="chat-openai-first", max_tokens=20, messages=[
            {"role": "user", "content": [doc, {"type": "text", "text": msg}]}])
    assert e.value.status_code == 400
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "invalid_request_error"
    assert "unsupported content block" in e.value.body["error"]["message"]
    assert gateway.provider_requests("openai", containing=msg) == []
    [rec] = gateway.audit(e.value.response.headers["x-aigw-request-id"])
    assert (rec["outcome"], rec["status"], rec["door"]) == ("refused_request", 400, "messages")


def test_every_refusal_on_the_messages_door_is_in_anthropic_shape(gateway):
    body = {"model": "chat", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    # auth-key-swap (before route-select has run): an unknown key.
    r = gateway.client.post("/v1/messages", headers={"x-api-key": "aigw_sk_nobody"}, json=body)
    assert r.status_code == 401
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    # quota (after route-select): the demo tenant `tiny` may make 3 calls a minute.
    statuses = [gateway.client.post("/v1/messages", headers={"x-api-key": DEMO_KEYS["tiny"]}, json=body)
                for _ in range(4)]
    assert [s.status_code for s in statuses] == [200, 200, 200, 429]
    refused = statuses[-1]
    assert refused.json()["error"]["type"] == "rate_limit_error" and "retry-after" in refused.headers
    with pytest.raises(anthropic.RateLimitError):
        anthropic.Anthropic(base_url=gateway.url, api_key=DEMO_KEYS["tiny"], max_retries=0).messages.create(**body)


def test_streams_of_one_character_events_come_through_both_doors_byte_for_byte(gateway, claude):
    """Every character its own event (`pieces-1`), with quotes, a backslash, non-ASCII and an
    emoji: the chat door's chunks translated from Anthropic's deltas and the Messages door's
    deltas translated from OpenAI's chunks (each written without a JSON tree) carry exactly the
    text, one event each, and the calls are audited with the stream's usage."""
    msg = f'say "hi" \\ caf\u00e9 \U0001F600 {uuid.uuid4().hex[:8]}'
    answer = f"Echo: {msg}"
    pieces = {"x-fake-fault": "*=pieces-1"}
    oa = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)
    raw = oa.chat.completions.with_raw_response.create(
        model="chat", stream=True, stream_options={"include_usage": True}, extra_headers=pieces,
        messages=[{"role": "user", "content": msg}])
    chunks = list(raw.parse())
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == list(answer), texts
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == len(answer.split())
    [rec] = gateway.audit(raw.headers["x-aigw-request-id"])
    assert rec["outcome"] == "ok" and rec["tokens"]["output"] == len(answer.split())

    with claude.messages.with_streaming_response.create(
            model="chat-openai-first", max_tokens=200, stream=True, extra_headers=pieces,
            messages=[{"role": "user", "content": msg}]) as r:
        rid = r.headers["x-aigw-request-id"]
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    deltas = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == list(answer), deltas
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2]["usage"]["output_tokens"] == len(answer.split())
    [rec] = gateway.audit(rid)
    assert rec["outcome"] == "ok" and rec["tokens"]["output"] == len(answer.split())


def test_what_only_anthropic_has_reaches_it_as_written_and_comes_back_as_it_is(gateway, claude):
    """To an Anthropic upstream the request goes as the caller wrote it but for `model`: top_k,
    extended thinking, prompt-caching marks and a PDF document reach the provider. The answer
    comes back as the provider sent it: thinking blocks with their signatures (passed back in the
    next turn, the provider checks them), and usage with the cache's writes and reads, which the
    audit record counts as input (the reads as cached input) and prices as such."""
    pdf = base64.b64encode(b"%PDF-1.4 a contract").decode()
    system = [{"type": "text", "text": f"Read contracts with care. {uuid.uuid4().hex}",
               "cache_control": {"type": "ephemeral"}}]
    msg = unique("summarise")
    first = [{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
        {"type": "text", "text": msg}]}]
    # (This SDK has no `top_k` argument any more; the API still takes it.)
    kw = dict(model="chat", max_tokens=2048, system=system, extra_body={"top_k": 5},
              thinking={"type": "enabled", "budget_tokens": 1024})
    out = claude.messages.with_raw_response.create(messages=first, **kw)
    m = out.parse()
    assert out.headers["x-aigw-provider"] == "anthropic"
    [seen] = gateway.provider_requests("anthropic", containing=msg)
    sent = {k: v for k, v in kw.items() if k != "extra_body"}
    assert json.loads(seen["body"]) == {**sent, "top_k": 5, "model": "claude-sonnet-4-5-20250929", "messages": first}
    thought, text = m.content
    assert thought.type == "thinking" and thought.thinking and thought.signature
    assert text.type == "text" and text.text == f"Echo: {msg}"
    u = m.usage
    assert u.cache_creation_input_tokens > 0 and u.cache_read_input_tokens == 0
    [rec] = gateway.audit(out.headers["x-aigw-request-id"])
    assert rec["tokens"]["input"] == u.input_tokens + u.cache_creation_input_tokens
    assert rec["tokens"]["cache_write"] == u.cache_creation_input_tokens
    assert Decimal(rec["cost_usd"]) == expected_cost("claude-sonnet-4-5-20250929", rec["tokens"])
    # Cache writes at the book's cache-write price (1.25x input for this model), not as input.
    as_input = expected_cost("claude-sonnet-4-5-20250929", {**rec["tokens"], "cache_write": 0})
    assert Decimal(rec["cost_usd"]) - as_input == u.cache_creation_input_tokens * Decimal("0.75") / 1_000_000

    # The next turn passes the thinking block back; the cached prefix is read this time.
    msg2 = unique("and the term")
    history = first + [
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": thought.thinking, "signature": thought.signature},
            {"type": "text", "text": text.text}]},
        {"role": "user", "content": msg2}]
    out = claude.messages.with_raw_response.create(messages=history, **kw)
    m2 = out.parse()
    assert m2.content[1].text == f"Echo: {msg2}"
    assert m2.usage.cache_read_input_tokens == u.cache_creation_input_tokens
    assert m2.usage.cache_creation_input_tokens == 0
    [rec] = gateway.audit(out.headers["x-aigw-request-id"])
    assert rec["tokens"]["cached_input"] == m2.usage.cache_read_input_tokens
    assert rec["tokens"]["input"] == m2.usage.input_tokens + m2.usage.cache_read_input_tokens
    assert Decimal(rec["cost_usd"]) == expected_cost("claude-sonnet-4-5-20250929", rec["tokens"])
    # A thinking block whose text was changed is refused by the provider, as Anthropic does.
    tampered = json.loads(json.dumps(history))
    tampered[1]["content"][0]["thinking"] += " (edited)"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(messages=tampered, **kw)
    assert "signature" in e.value.body["error"]["message"]

    # Streamed: the thinking and its signature arrive as deltas, and the audit has the usage.
    msg3 = unique("stream")
    with claude.messages.stream(messages=[{"role": "user", "content": msg3}], **kw) as s:
        final = s.get_final_message()
        rid = s.response.headers["x-aigw-request-id"]
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].signature and final.content[1].text == f"Echo: {msg3}"
    [rec] = gateway.audit(rid)
    assert rec["outcome"] == "ok" and rec["tokens"]["output"] == final.usage.output_tokens
    assert rec["tokens"]["input"] == final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) + (
        final.usage.cache_creation_input_tokens or 0)


def test_hour_long_cache_writes_are_audited_and_priced_at_their_own_price(gateway, claude):
    """A prompt-cache mark kept for an hour (`ttl: "1h"`) before one kept for five minutes:
    Anthropic counts the hour's writes apart (`cache_creation.ephemeral_1h_input_tokens`) and
    charges 2x input for them, against 1.25x for the others. The audit record counts them
    (`tokens.cache_write_1h`, part of `cache_write`) and prices each at the book's own price,
    whole and streamed."""
    model = "claude-sonnet-4-5-20250929"

    def system():
        tag = uuid.uuid4().hex
        return [{"type": "text", "text": f"Standing rules for every reply {tag}",
                 "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "text", "text": f"Notes for today only {tag}", "cache_control": {"type": "ephemeral"}}]

    msg = unique("an hour")
    out = claude.messages.with_raw_response.create(model="chat", max_tokens=64, system=system(),
                                                   messages=[{"role": "user", "content": msg}])
    u = out.parse().usage
    hour, five = u.cache_creation.ephemeral_1h_input_tokens, u.cache_creation.ephemeral_5m_input_tokens
    assert hour > 0 and five > 0 and hour + five == u.cache_creation_input_tokens, u
    [rec] = gateway.audit(out.headers["x-aigw-request-id"])
    assert (rec["tokens"]["cache_write"], rec["tokens"]["cache_write_1h"]) == (hour + five, hour)
    assert Decimal(rec["cost_usd"]) == expected_cost(model, rec["tokens"])
    # The hour's writes cost 6.00 USD/Mtok for this model, not the 5-minute 3.75.
    flat = expected_cost(model, {**rec["tokens"], "cache_write_1h": 0})
    assert Decimal(rec["cost_usd"]) - flat == hour * Decimal("2.25") / 1_000_000

    with claude.messages.stream(model="chat", max_tokens=64, system=system(),
                                messages=[{"role": "user", "content": unique("an hour, streamed")}]) as s:
        final = s.get_final_message()
        rid = s.response.headers["x-aigw-request-id"]
    [rec] = gateway.audit(rid)
    assert rec["tokens"]["cache_write_1h"] == final.usage.cache_creation.ephemeral_1h_input_tokens > 0
    assert Decimal(rec["cost_usd"]) == expected_cost(model, rec["tokens"])
    # A ttl Anthropic does not know is its 400, as calling it directly would be.
    bad = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="chat", max_tokens=64, system=bad, messages=[{"role": "user", "content": "y"}])
