"""What answers say about the model's behaviour (README, "The audit record": `answer`; "Metrics"):
how each ended, tool calls, refusals (the provider's own, and the configured refusal phrases),
JSON validity where JSON was asked for, and a non-streamed answer's length and digest. Read
through every door and provider translation, streamed or not, and counted per provider and
model in Envoy's metrics (the drift signals)."""

import hashlib
import json
import time
import uuid

import httpx
import pytest
from conftest import DEMO_KEYS
from test_observability import metric, scrape

KEY = DEMO_KEYS["acme"]
SONNET, MINI, FLASH = "claude-sonnet-4-5-20250929", "gpt-4o-mini-2024-07-18", "gemini-2.5-flash"
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object",
                                                                            "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture
def gw(gateway):
    """conftest's gateway: both layouts (the two gateway filters, and the design card's
    separate modules)."""
    return gateway


def call(gw, path="/v1/chat/completions", fault=None, **body):
    rid = f"sig-{uuid.uuid4()}"
    headers = {"authorization": f"Bearer {KEY}", "x-request-id": rid}
    if fault:
        headers["x-fake-fault"] = fault
    if path == "/v1/messages":
        headers = {"x-api-key": KEY, "x-request-id": rid, "anthropic-version": "2023-06-01",
                   **({"x-fake-fault": fault} if fault else {})}
    body.setdefault("model", "chat")
    if path == "/v1/responses":
        body.setdefault("input", f"Say hello ({rid})")
    else:
        body.setdefault("messages", [{"role": "user", "content": f"Say hello ({rid})"}])
    r = gw.client.post(path, json=body, headers=headers)
    [rec] = gw.audit(rid)
    return r, rec


def streamed_text(r):
    out = ""
    for line in r.text.splitlines():
        if line.startswith("data: {"):
            d = json.loads(line[6:])
            for c in d.get("choices", []):
                out += c.get("delta", {}).get("content") or ""
    return out


def test_a_whole_answer_says_how_it_ended_its_length_and_its_digest(gw):
    r, rec = call(gw)
    assert r.status_code == 200
    text = r.json()["choices"][0]["message"]["content"]
    a = rec["answer"]
    assert (a["finish_reason"], a["tool_calls"], a["refusal"], a["json_valid"]) == ("stop", 0, False, None)
    assert a["output_chars"] == len(text)
    assert a["output_digest"] == hashlib.sha256(text.encode()).hexdigest()[:16]
    # Cut by the token limit (Anthropic's max_tokens, translated), and on OpenAI itself.
    r, rec = call(gw, max_tokens=2)
    assert rec["answer"]["finish_reason"] == "length"
    r, rec = call(gw, model="chat-openai-first", max_tokens=2)
    assert (rec["provider"], rec["answer"]["finish_reason"]) == ("openai", "length")
    # A tool call, whole and streamed, through Anthropic and OpenAI.
    for model in ("chat", "chat-openai-first"):
        _, rec = call(gw, model=model, tools=TOOLS, tool_choice="required")
        assert (rec["answer"]["finish_reason"], rec["answer"]["tool_calls"]) == ("tool_calls", 1), rec
        _, rec = call(gw, model=model, tools=TOOLS, tool_choice="required", stream=True)
        assert rec["stream"] and (rec["answer"]["finish_reason"], rec["answer"]["tool_calls"]) == ("tool_calls", 1)
    # A stream: how it ended, no length or digest (a stream is not collected).
    r, rec = call(gw, stream=True, max_tokens=3)
    assert rec["answer"]["finish_reason"] == "length"
    assert rec["answer"]["output_digest"] is None and rec["answer"]["output_chars"] is None


def test_refusals_are_told_by_the_providers_signal_or_by_the_phrase(gw):
    # Anthropic's `refusal` stop reason (OpenAI's content_filter once translated), whole and
    # streamed, through the chat and Messages doors.
    for stream in (False, True):
        _, rec = call(gw, fault="anthropic=refuse", stream=stream)
        assert (rec["provider"], rec["answer"]["refusal"], rec["answer"]["finish_reason"]) == (
            "anthropic", True, "content_filter"), rec
        _, rec = call(gw, "/v1/messages", fault="anthropic=refuse", max_tokens=50, stream=stream)
        assert (rec["door"], rec["answer"]["refusal"]) == ("messages", True), rec
    # OpenAI's `refusal` field (finish_reason stays `stop`), whole and streamed.
    for stream in (False, True):
        _, rec = call(gw, model="chat-openai-first", fault="openai=refuse", stream=stream)
        assert (rec["provider"], rec["answer"]["refusal"], rec["answer"]["finish_reason"]) == ("openai", True, "stop")
    # Gemini says it in words only: the configured refusal phrases tell.
    _, rec = call(gw, model="chat-gemini", fault="gemini=refuse")
    assert (rec["provider"], rec["answer"]["refusal"], rec["answer"]["finish_reason"]) == ("gemini", True, "stop")
    _, rec = call(gw, model="chat-gemini")
    assert rec["answer"]["refusal"] is False
    # The Responses door.
    _, rec = call(gw, "/v1/responses", fault="anthropic=refuse")
    assert (rec["door"], rec["answer"]["refusal"]) == ("responses", True), rec


def test_json_validity_is_recorded_where_json_was_asked_for(gw):
    want = {"response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": '{"ok": true, "n": 1}'}]}
    _, rec = call(gw, **want)
    assert (rec["provider"], rec["answer"]["json_valid"]) == ("anthropic", True)
    _, rec = call(gw, stream=True, **want)
    assert rec["answer"]["json_valid"] is True
    # Anthropic answers in prose: that attempt is invalid output, OpenAI's answer is valid.
    _, rec = call(gw, fault="anthropic=not-json", **want)
    assert [a["error_class"] for a in rec["attempts"]] == ["invalid_output", None]
    assert (rec["provider"], rec["answer"]["json_valid"]) == ("openai", True)
    # A stream cannot move on: its answer is on record as not the JSON asked for.
    _, rec = call(gw, fault="anthropic=not-json", stream=True, **want)
    assert rec["answer"]["json_valid"] is False
    # No JSON asked: null.
    _, rec = call(gw)
    assert rec["answer"]["json_valid"] is None


def test_no_answer_record_for_what_no_provider_answered(gw):
    _, rec = call(gw, fault="*=503")
    assert rec["outcome"] != "ok" and rec["answer"] is None
    r = gw.client.get("/v1/models", headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 200


def test_answer_signals_are_counted_per_provider_and_model(gw):
    before = scrape(gw)
    for _ in range(2):
        call(gw, fault="anthropic=refuse")
    call(gw, model="chat-openai-first", tools=TOOLS, tool_choice="required")
    call(gw, max_tokens=2)
    call(gw, fault="anthropic=not-json", response_format={"type": "json_object"},
         messages=[{"role": "user", "content": '{"a": 1}'}])
    deadline = time.time() + 10
    while True:
        m = scrape(gw)

        def d(name, **labels):
            return metric(m, name, **labels) - metric(before, name, **labels)

        if d("aigw_answers_total") >= 5 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert d("aigw_answers_total", provider="anthropic", model=SONNET, finish="content_filter") == 2
    assert d("aigw_answer_refusals_total", provider="anthropic", model=SONNET) == 2
    assert d("aigw_answer_tool_calls_total", provider="openai", model=MINI) == 1
    assert d("aigw_answers_total", provider="openai", model=MINI, finish="tool_calls") == 1
    assert d("aigw_answers_total", provider="anthropic", model=SONNET, finish="length") == 1
    assert d("aigw_json_answers_total", provider="anthropic", model=SONNET, valid="false") == 1
    assert d("aigw_json_answers_total", provider="openai", model=MINI, valid="true") == 1
    assert d("aigw_answers_total") == 5
    assert httpx.get(f"http://127.0.0.1:{gw.admin_port}/ready", timeout=5).status_code == 200
