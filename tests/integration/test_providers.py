"""Azure OpenAI, Gemini and Bedrock behind the gateway: each provider's own auth scheme, injected
per attempt, and its wire format translated both ways. The fake Bedrock verifies every SigV4
signature itself (written independently of the gateway's signer)."""

import json
import uuid

import httpx
import openai
import pytest
from conftest import AWS_ACCESS_KEY_ID, DEMO_KEYS, PROVIDER_KEYS


def unique(text="hello"):
    return f"{text} {uuid.uuid4().hex[:12]}"


def sse_data(text):
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def sdk(gw):
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=DEMO_KEYS["acme"], max_retries=0)


def test_azure_gets_its_deployment_path_api_version_and_api_key(gateway):
    msg = unique()
    r = gateway.chat(msg, model="chat-azure")
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "azure"
    assert r.json()["choices"][0]["message"]["content"] == f"Echo: {msg}"
    [seen] = gateway.provider_requests("azure", containing=msg)
    assert seen["path"] == "/openai/deployments/gpt-4o-mini-2024-07-18/chat/completions?api-version=2024-10-21"
    assert seen["headers"]["api-key"] == PROVIDER_KEYS["azure"]
    assert "authorization" not in seen["headers"]
    # Streamed through the official SDK, Azure's leading filter-results chunk included.
    msg = unique("stream")
    chunks = list(sdk(gateway).chat.completions.create(
        model="chat-azure", messages=[{"role": "user", "content": msg}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Echo: {msg}"


def test_gemini_gets_generate_content_with_x_goog_api_key_and_answers_in_openai_format(gateway):
    msg = unique()
    r = gateway.chat(msg, model="chat-gemini", max_tokens=50, temperature=0.3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-aigw-provider"] == "gemini" and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == f"Echo: {msg}"
    assert body["choices"][0]["finish_reason"] == "stop"
    [seen] = gateway.provider_requests("gemini", containing=msg)
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert seen["headers"]["x-goog-api-key"] == PROVIDER_KEYS["gemini"]
    assert "authorization" not in seen["headers"]
    sent = json.loads(seen["body"])
    assert sent["contents"] == [{"role": "user", "parts": [{"text": msg}]}]
    assert sent["generationConfig"] == {"maxOutputTokens": 50, "temperature": 0.3}
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert rec["provider"] == "gemini" and rec["tokens"]["input"] == body["usage"]["prompt_tokens"] > 0
    assert rec["cost_usd"] is not None


# Halfway between 0.7 and the next float up, exactly: a tie, read as the even 0.7; with a
# nonzero digit 900 places later, above the tie (the exact reading keeps 800 digits and a 1).
# (Below 1, so that the same texts would hold for Anthropic's and Bedrock's maximum too.)
HALF_ABOVE = "0.700000000000000011102230246251565404236316680908203125"


@pytest.mark.parametrize("text", [
    "0.40900993826735515",  # 17 digits: the estimate from a made power of ten
    "0.3",  # Clinger's exact two-float path
    HALF_ABOVE,  # an exact tie: the big-integer comparison
    HALF_ABOVE + "0" * 900 + "1",  # past the tie only in its 955th digit
    "7e-1",
])
def test_a_translated_request_carries_the_callers_float_exactly(gateway, text):
    """The gateway reads a float correctly rounded (its own reader, `wire::float::read`; serde_json's
    default read 0.40900993826735515 as 0.4090099382673551, a unit in the last place off) and
    writes it back as the shortest text of the same number, so the provider gets the caller's
    value. Python's float() rounds correctly too: it is the oracle."""
    msg = unique("float")
    raw = '{"model": "chat-gemini", "temperature": %s, "messages": [{"role": "user", "content": "%s"}]}' % (text, msg)
    r = gateway.client.post("/v1/chat/completions", content=raw.encode(),
                            headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "content-type": "application/json"})
    assert r.status_code == 200, r.text
    [seen] = gateway.provider_requests("gemini", containing=msg)
    # (Python reads the text correctly rounded too.)
    assert json.loads(seen["body"])["generationConfig"]["temperature"] == float(text)
    if text == HALF_ABOVE:
        assert float(text) == 0.7
    elif text.startswith(HALF_ABOVE):
        assert float(text) == 0.7000000000000001



def test_gemini_tool_call_and_a_streamed_answer(gateway):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    r = gateway.chat(unique("weather"), model="chat-gemini", tools=tools, tool_choice="required")
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    # The tool result goes back as a functionResponse naming the function.
    msg = unique("after tool")
    follow = gateway.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                                 json={"model": "chat-gemini", "tools": tools, "messages": [
                                     {"role": "user", "content": msg},
                                     {"role": "assistant", "content": None, "tool_calls": [call]},
                                     {"role": "tool", "tool_call_id": call["id"], "content": "18C"}]})
    assert follow.status_code == 200, follow.text
    [seen] = gateway.provider_requests("gemini", containing=msg)
    parts = json.loads(seen["body"])["contents"][2]["parts"]
    assert parts == [{"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}}]
    # Streamed from streamGenerateContent (SSE), translated chunk by chunk, usage chunk included.
    msg = unique("stream")
    chunks = list(sdk(gateway).chat.completions.create(
        model="chat-gemini", messages=[{"role": "user", "content": msg}], stream=True,
        stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == f"Echo: {msg}" and len(pieces) == len(f"Echo: {msg}".split())
    assert chunks[-1].usage and chunks[-1].usage.completion_tokens == len(pieces)
    [seen] = gateway.provider_requests("gemini", containing=msg)
    assert seen["path"] == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    # A streamed tool call arrives whole, as one tool-call chunk.
    calls = [tc for c in sdk(gateway).chat.completions.create(
        model="chat-gemini", stream=True, tools=tools, tool_choice="required",
        messages=[{"role": "user", "content": unique("weather")}]) if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and json.loads(calls[0].function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize("model,provider,sent", [
    ("chat-gemini", "gemini", lambda b: b["generationConfig"]["temperature"]),  # Gemini takes 0-2
    ("chat", "anthropic", lambda b: b["temperature"]),  # Anthropic's maximum is 1
    ("chat-bedrock", "bedrock", lambda b: b["inferenceConfig"]["temperature"]),  # so is Bedrock's
])
def test_a_temperature_above_one_reaches_each_provider_within_its_own_range(gateway, model, provider, sent):
    """OpenAI's and Gemini's temperatures run to 2, Anthropic's and Bedrock's to 1: each attempt
    caps the caller's value at its provider's maximum, and only there (Gemini's and Bedrock's
    requests are made from the same typed request as Anthropic's)."""
    msg = unique("temp")
    r = gateway.chat(msg, model=model, temperature=1.5)
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == provider
    [seen] = gateway.provider_requests(provider, containing=msg)
    assert sent(json.loads(seen["body"])) == (1.5 if provider == "gemini" else 1.0)


def test_a_tool_loop_begun_on_gemini_goes_on_at_anthropic(gateway):
    """Gemini's function calls have no ids; the gateway's differ from answer to answer, since
    Anthropic refuses a history whose `tool_use` ids repeat (as its fake does, with Anthropic's
    error): two rounds on Gemini, then the same conversation on Anthropic."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    client = sdk(gateway)
    history = [{"role": "user", "content": unique("weather in Paris")}]
    ids = []
    for city in ("Paris", "Rome"):
        if city != "Paris":
            history.append({"role": "user", "content": f"And {city}?"})
        r = client.chat.completions.create(model="chat-gemini", tools=tools, tool_choice="required", messages=history)
        [call] = r.choices[0].message.tool_calls
        ids.append(call.id)
        history += [r.choices[0].message, {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    last = client.chat.completions.with_raw_response.create(model="chat", tools=tools, messages=history)
    assert last.headers["x-aigw-provider"] == "anthropic"
    assert ids[0] != ids[1] and all(len(i) <= 40 for i in ids), ids
    [seen] = gateway.provider_requests("anthropic", containing=history[0]["content"])
    uses = [b["id"] for m in json.loads(seen["body"])["messages"] for b in m["content"]
            if isinstance(b, dict) and b.get("type") == "tool_use"]
    assert uses == ids


def test_gemini_gets_the_callers_seed_and_penalties(gateway):
    """Gemini takes `seed`, `presencePenalty` and `frequencyPenalty`, which Anthropic has no form
    of: its request carries them although it is made from the same typed request as Anthropic's."""
    msg = unique("seeded")
    r = sdk(gateway).chat.completions.create(model="chat-gemini", messages=[{"role": "user", "content": msg}],
                                             max_tokens=20, seed=42, presence_penalty=0.5, frequency_penalty=-0.5)
    assert r.choices[0].message.content == f"Echo: {msg}"
    [seen] = gateway.provider_requests("gemini", containing=msg)
    assert json.loads(seen["body"])["generationConfig"] == {
        "maxOutputTokens": 20, "seed": 42, "presencePenalty": 0.5, "frequencyPenalty": -0.5}


def test_a_gemini_3_tool_loop_passes_gemini_3s_thought_signature_check(fresh_gateway_factory):
    """Gemini 3 refuses a turn whose function call comes back without its thought signature, and
    an OpenAI SDK caller has no field to send one in: each model turn's first function call is
    sent with Gemini's documented stand-in (`skip_thought_signature_validator`); the signature
    Gemini answered with is not passed to the caller."""
    gw = fresh_gateway_factory(lambda t: t.replace(
        '{"provider": "gemini", "model": "gemini-2.5-flash"}', '{"provider": "gemini", "model": "gemini-3-pro-preview"}'))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    client = sdk(gw)
    ask = unique("weather")
    first = client.chat.completions.create(model="chat-gemini", tools=tools, tool_choice="required",
                                           messages=[{"role": "user", "content": ask}])
    [call] = first.choices[0].message.tool_calls
    [seen] = gw.provider_requests("gemini", containing=ask)
    assert seen["path"] == "/v1beta/models/gemini-3-pro-preview:generateContent"
    assert "thoughtSignature" not in first.model_dump_json()
    # The SDK's own message object goes back in the history, as callers write a tool loop.
    history = [{"role": "user", "content": ask}, first.choices[0].message,
               {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
    second = client.chat.completions.create(model="chat-gemini", tools=tools, messages=history)
    assert second.choices[0].finish_reason == "stop"
    sent = json.loads([r for r in gw.provider_requests("gemini", containing=ask) if "functionResponse" in r["body"]][0]["body"])
    assert sent["contents"][1] == {"role": "model", "parts": [{
        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
        "thoughtSignature": "skip_thought_signature_validator"}]}
    # The fake checks as Gemini 3 does: the same history without the signature is refused.
    del sent["contents"][1]["parts"][0]["thoughtSignature"]
    r = httpx.post(f"{gw.fakes['gemini']}/v1beta/models/gemini-3-pro-preview:generateContent",
                   headers={"x-goog-api-key": PROVIDER_KEYS["gemini"]}, json=sent, timeout=5)
    assert r.status_code == 400 and "missing a thought_signature" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("model,provider,sampling", [
    ("chat", "anthropic", lambda b: b),  # Claude Sonnet 4.5
    ("chat-bedrock", "bedrock", lambda b: {"temperature": b["inferenceConfig"].get("temperature"),
                                           "top_p": b["inferenceConfig"].get("topP")}),  # Claude Haiku 4.5
])
def test_a_claude_model_that_takes_one_of_temperature_and_top_p_is_sent_the_temperature(gateway, model, provider, sampling):
    """Claude since Opus 4.1 refuses `temperature` and `top_p` together (400; the fakes too),
    and OpenAI callers often send both: the temperature goes, `top_p` is left out."""
    msg = unique("sampled")
    r = sdk(gateway).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": msg}], temperature=0.7, top_p=1)
    assert r.headers["x-aigw-provider"] == provider
    [seen] = gateway.provider_requests(provider, containing=msg)
    sent = sampling(json.loads(seen["body"]))
    assert sent.get("temperature") == 0.7 and sent.get("top_p") is None


@pytest.mark.parametrize("model,provider,stops", [
    ("chat", "anthropic", lambda b: b.get("stop_sequences")),
    ("chat-bedrock", "bedrock", lambda b: b["inferenceConfig"].get("stopSequences")),
])
def test_a_blank_stop_sequence_is_left_out_for_claude(gateway, model, provider, stops):
    """Claude refuses a stop sequence of whitespace alone (400; the fakes too), which OpenAI
    callers often send (`"\\n"`): the others go."""
    msg = unique("stopped")
    r = gateway.chat(msg, model=model, stop=["\n", "END"])
    assert r.status_code == 200, r.text
    [seen] = gateway.provider_requests(provider, containing=msg)
    assert stops(json.loads(seen["body"])) == ["END"]
    only_blank = gateway.chat(unique(), model=model, stop="\n")
    assert only_blank.status_code == 200, only_blank.text


def test_empty_text_and_a_prefills_trailing_whitespace_are_not_sent_to_claude(gateway):
    """Claude refuses an empty text block and a final assistant turn ending in whitespace (400;
    the fake too): OpenAI callers send both (an empty part, a prefill ending in a line break)."""
    msg = unique("prefilled")
    r = gateway.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                            json={"model": "chat", "messages": [
                                {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": msg}]},
                                {"role": "assistant", "content": "Here is the answer:\n"}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "anthropic"
    [seen] = gateway.provider_requests("anthropic", containing=msg)
    assert json.loads(seen["body"])["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": msg}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Here is the answer:"}]}]


def test_a_conversation_opening_with_the_assistant_reaches_bedrock_after_a_user_turn(gateway):
    """Converse refuses a conversation that does not start with the user (the fake too, with
    Bedrock's message); a chat UI's history often opens with the assistant's greeting."""
    msg = unique("greeted")
    r = gateway.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                            json={"model": "chat-bedrock", "messages": [
                                {"role": "assistant", "content": "Hello! How can I help?"},
                                {"role": "user", "content": msg}]})
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "bedrock"
    [seen] = gateway.provider_requests("bedrock", containing=msg)
    assert [m["role"] for m in json.loads(seen["body"])["messages"]] == ["user", "assistant", "user"]
    assert json.loads(seen["body"])["messages"][0]["content"] == [{"text": "."}]


def test_tool_choice_none_reaches_bedrock_as_a_call_without_tools(gateway):
    """Converse has no `tool_choice: "none"`; with no tool use in the history the call goes
    without its tools (what "none" asks); with tool use in it, Converse needs the tools, and the
    call is refused by name."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    msg = unique("no tools")
    r = gateway.chat(msg, model="chat-bedrock", tools=tools, tool_choice="none")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == f"Echo: {msg}"
    [seen] = gateway.provider_requests("bedrock", containing=msg)
    assert "toolConfig" not in json.loads(seen["body"])
    used = gateway.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                               json={"model": "chat-bedrock", "tools": tools, "tool_choice": "none", "messages": [
                                   {"role": "user", "content": unique()},
                                   {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": "{}"}}]},
                                   {"role": "tool", "tool_call_id": "c1", "content": "18C"}]})
    assert used.status_code == 400, used.text
    assert used.json()["error"]["code"] == "unsupported_for_provider" and used.json()["error"]["param"] == "tool_choice"
    [rec] = gateway.audit(used.headers["x-aigw-request-id"])
    assert rec["outcome"] == "refused_request" and rec["status"] == 400


def test_a_request_of_nothing_but_empty_text_is_an_audited_400_in_the_callers_shape(gateway):
    """Empty text is left out for the translated providers; a request with nothing else is the
    gateway's own 400 (OpenAI's shape, audited), not a provider's error or a 5xx."""
    r = gateway.client.post("/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                            json={"model": "chat", "messages": [
                                {"role": "user", "content": [{"type": "text", "text": ""}]}]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_value" and err["type"] == "invalid_request_error" and err["message"]
    [rec] = gateway.audit(r.headers["x-aigw-request-id"])
    assert rec["outcome"] == "refused_request" and rec["status"] == 400


@pytest.mark.parametrize("reason,finish", [("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"),
                                           ("SAFETY", "content_filter"), ("MAX_TOKENS", "length")])
@pytest.mark.parametrize("stream", [False, True])
def test_geminis_stop_reasons_reach_the_caller_and_the_audit_record_as_the_reference_maps_them(
        gateway, reason, finish, stream):
    """Only Gemini's safety and recitation stops are `content_filter` (counted as filtered
    answers in the drift signals); a malformed call or an `OTHER` stop is `stop`."""
    msg = unique("finish")
    r = gateway.client.post("/v1/chat/completions",
                            headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": f"gemini=finish-{reason}"},
                            json={"model": "chat-gemini", "stream": stream, "messages": [{"role": "user", "content": msg}]})
    assert r.status_code == 200, r.text
    if stream:
        got = [json.loads(d)["choices"][0]["finish_reason"] for d in sse_data(r.text)
               if d != "[DONE]" and json.loads(d).get("choices") and json.loads(d)["choices"][0].get("finish_reason")]
        assert got == [finish]
    else:
        assert r.json()["choices"][0]["finish_reason"] == finish
    [rec] = gateway.audit(r.headers["x-aigw-request-id"])
    assert rec["answer"]["finish_reason"] == finish


def test_bedrock_call_is_sigv4_signed_and_verified_by_the_fake(gateway):
    msg = unique()
    r = gateway.chat(msg, model="chat-bedrock", max_tokens=64)
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "bedrock"
    assert r.json()["choices"][0]["message"]["content"] == f"Echo: {msg}"
    [seen] = gateway.provider_requests("bedrock", containing=msg)
    assert seen["path"] == "/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/converse"
    auth = seen["headers"]["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request, SignedHeaders=" in auth
    assert PROVIDER_KEYS["bedrock"].split(":")[1] not in json.dumps(seen)  # the secret never travels
    sent = json.loads(seen["body"])
    assert sent["messages"] == [{"role": "user", "content": [{"text": msg}]}]
    assert sent["inferenceConfig"] == {"maxTokens": 64}
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert [(a["provider"], a["status"]) for a in rec["attempts"]] == [("bedrock", 200)]
    # Streamed: ConverseStream (signed too), its binary event stream translated frame by frame.
    msg = unique("stream one two")
    with gateway.client.stream("POST", "/v1/chat/completions", headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                               json={"model": "chat-bedrock", "stream": True, "stream_options": {"include_usage": True},
                                     "messages": [{"role": "user", "content": msg}]}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        data = sse_data("".join(s.iter_text()))
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "".join(p for p in pieces if p) == f"Echo: {msg}"
    assert len([p for p in pieces if p]) == len(f"Echo: {msg}".split())  # one chunk per word, as sent
    assert chunks[-1]["usage"]["completion_tokens"] == len(f"Echo: {msg}".split())
    [seen] = gateway.provider_requests("bedrock", containing=msg)
    assert seen["path"] == "/model/anthropic.claude-haiku-4-5-20251001-v1%3A0/converse-stream"
    # A streamed tool call, and an in-stream exception that ends the stream with an error event.
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    calls = [tc for c in sdk(gateway).chat.completions.create(
        model="chat-bedrock", stream=True, tools=tools, tool_choice="required",
        messages=[{"role": "user", "content": unique("weather")}]) if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id.startswith("tooluse_") and json.loads("".join(c.function.arguments for c in calls)) == {"city": "Paris"}
    with gateway.client.stream("POST", "/v1/chat/completions",
                               headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": "bedrock=error-after-2"},
                               json={"model": "chat-bedrock", "stream": True,
                                     "messages": [{"role": "user", "content": unique("a b c d")}]}) as s:
        data = sse_data("".join(s.iter_text()))
    assert "modelStreamErrorException" in json.loads(data[-1])["error"]["message"]


@pytest.mark.parametrize("wrong", ["secret", "region"])
def test_a_bad_signature_is_rejected_by_the_fake(fresh_gateway_factory, wrong):
    if wrong == "secret":
        gw = fresh_gateway_factory(extra_env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"})
    else:  # the endpoint's metadata names another region: the request is signed for that one
        gw = fresh_gateway_factory(lambda t: t.replace(
            'metadata: {filter_metadata: {aigw: {provider: bedrock, region: us-east-1}}}',
            'metadata: {filter_metadata: {aigw: {provider: bedrock, region: eu-central-1}}}'))
    msg = unique()
    r = gw.chat(msg, model="chat-bedrock")
    # Bedrock said 403 (InvalidSignatureException): not a fallback trigger; the caller is told
    # the gateway's credential was refused.
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_authentication"
    [seen] = gw.provider_requests("bedrock", containing=msg)
    assert seen["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    rec = gw.audit(r.headers["x-aigw-request-id"])[0]
    assert [(a["provider"], a["status"], a["error_class"]) for a in rec["attempts"]] == [("bedrock", 403, "auth")]
    assert 'rejected credential "default" (403)' in gw.envoy_log.read_text()


def test_gemini_invalid_key_marks_the_credential(fresh_gateway_factory):
    gw = fresh_gateway_factory(extra_env={"GEMINI_API_KEY": "AIza-wrong"})
    r = gw.chat(unique(), model="chat-gemini")
    assert r.status_code == 502, r.text  # the gateway's credential, not the caller's key
    assert r.json()["error"]["code"] == "upstream_authentication"
    import time
    time.sleep(0.3)
    assert 'rejected credential "default" (400 API_KEY_INVALID)' in gw.envoy_log.read_text()
