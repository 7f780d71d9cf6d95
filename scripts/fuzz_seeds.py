#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/) from the fake providers' real wire formats.

Starts the fake providers, asks each for its answers (whole and streamed, success and error),
and writes what came back, byte for byte, as seeds: provider answers for `provider_responses`
and `messages_door`, SSE streams for `sse`, Bedrock event-stream frames (built as the fake builds
them, plus the provider reference's botocore-checked frame) for `eventstream`, requests for
`unified_request` and `messages_door`, credential headers and header maps for
`credentials` and `header_map`, and the values the gateway's contexts hand each other (in the
`codec` encoding, written here as filters/core/src/codec.rs writes them) for `codec`.

Usage: fuzz_seeds.py FAKES_BINARY CORPUS_DIR
"""
import json
import os
import struct
import subprocess
import sys
import zlib

import httpx

KEYS = {"openai": "sk-seed", "anthropic": "sk-ant-seed", "gemini": "AIza-seed"}


def start(fakes):
    args = [fakes]
    for name, key in KEYS.items():
        args += ["--listen", f"{name}=127.0.0.1:0", "--key", f"{name}={key}"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    urls = {}
    for line in p.stdout:
        if line.strip() == "ready":
            break
        name, addr = line.split()
        urls[name] = f"http://{addr}"
    return p, urls


def frame(message_type, event, payload):
    """One AWS event-stream message (prelude, headers, payload, CRCs)."""
    headers = b""
    for k, v in ((":event-type", event), (":content-type", "application/json"), (":message-type", message_type)):
        headers += bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
    body = json.dumps(payload, separators=(",", ":")).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    msg = prelude + headers + body
    return msg + struct.pack(">I", zlib.crc32(msg))


class Codec:
    """filters/core/src/codec.rs's Writer: a tag byte, then fields in order (numbers u64
    little-endian, strings as a u32 length and bytes, an optional value as 0, or 1 and it)."""

    def __init__(self):
        self.b = bytearray([0x01])

    def u8(self, v):
        self.b.append(v)
        return self

    def u64(self, v):
        self.b += struct.pack("<Q", v)
        return self

    def str(self, v):
        v = v.encode()
        self.b += struct.pack("<I", len(v)) + v
        return self

    def opt_str(self, v):
        return self.u8(0) if v is None else self.u8(1).str(v)

    def opt_u64(self, v):
        return self.u8(0) if v is None else self.u8(1).u64(v)


def codec_seeds():
    """A call identity, the attempts of a call that fell back once, an answer's facts, a usage."""
    identity = (Codec().str("acme").str("k-acme-1").str("3f2a9c").opt_str("eu").u8(2).opt_str("search")
                .opt_str(None).opt_str("summarise").opt_str(None).str("*"))
    attempts = Codec().u64(2)
    attempts.str("openai").opt_str("us").opt_str("gpt-4o-mini").opt_u64(429).opt_u64(12).u8(3) \
        .opt_str("c1a2").u64(1767225600000)
    attempts.str("anthropic").opt_str(None).opt_str("claude-sonnet-4-5").opt_u64(200).opt_u64(340).u8(0) \
        .opt_str("d3b4").u64(1767225600015)
    facts = Codec().u8(1).u64(0).u8(0).str("Hello! I am fine, thank you.").opt_u64(28).opt_str("9e1f").u8(2)
    usage = Codec().u64(14).u64(0).u64(9).u64(0)
    return [bytes(c.b) for c in (identity, attempts, facts, usage, Codec().u64(0))]


def main():
    fakes, out = sys.argv[1], sys.argv[2]
    seeds = {t: [] for t in ("credentials", "header_map", "unified_request", "messages_door", "responses_door",
                             "sse", "eventstream", "provider_responses", "codec", "json")}
    chat = {"model": "m", "max_tokens": 20, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there, 12345 ok?"}]}
    tools = dict(chat, tools=[{"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}], tool_choice="required")
    msgs = {"model": "m", "max_tokens": 20, "system": "be brief",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]}
    schema = {"type": "json_schema", "json_schema": {"name": "c", "schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    seeds["unified_request"] += [json.dumps(chat).encode(), json.dumps(dict(chat, stream=True)).encode(),
                                 json.dumps(tools).encode(), json.dumps(dict(chat, response_format=schema)).encode(),
                                 json.dumps(dict(chat, response_format={"type": "json_object"})).encode()]
    # What only Anthropic has: a Messages request that goes on as written (top_k, thinking,
    # cache marks, a document block, a thinking block passed back).
    native = dict(msgs, top_k=5, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=2048,
                  system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                  messages=[{"role": "user", "content": [
                      {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
                      {"type": "text", "text": "hello"}]},
                            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "c2ln"},
                                                              {"type": "text", "text": "hi"}]},
                            {"role": "user", "content": "more"}])
    seeds["messages_door"] += [json.dumps(msgs).encode(), json.dumps(dict(msgs, stream=True)).encode(),
                               json.dumps(native).encode()]
    responses = {"model": "m", "instructions": "be brief", "store": False, "max_output_tokens": 32,
                 "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}],
                 "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
                 "input": [{"role": "user", "content": [{"type": "input_text", "text": "hello"},
                                                        {"type": "input_image", "image_url": "https://x/y.png"}]},
                           {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
                           {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]}
    seeds["responses_door"] += [json.dumps(responses).encode(), json.dumps({"model": "m", "input": "hi", "stream": True}).encode()]
    embed = {"model": "e", "input": ["hello there", "second"], "encoding_format": "base64", "dimensions": 256}
    seeds["unified_request"] += [json.dumps(embed).encode(), json.dumps(dict(embed, input=[[1, 2, 3]])).encode()]
    seeds["provider_responses"] += [
        json.dumps({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0, 0.0]}]}).encode(),
        json.dumps({"embedding": [0.5, -0.25], "inputTextTokenCount": 3}).encode(),
        json.dumps({"id": "x", "texts": ["a"], "embeddings": [[0.5]], "response_type": "embeddings_floats"}).encode()]
    p, urls = start(fakes)
    try:
        c = httpx.Client(timeout=10)
        oa = {"authorization": f"Bearer {KEYS['openai']}"}
        an = {"x-api-key": KEYS["anthropic"], "anthropic-version": "2023-06-01"}
        ge = {"x-goog-api-key": KEYS["gemini"]}
        gem_body = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
        for fault in (None, "*=500", "*=429", "*=malformed", "*=error-after-2"):
            h = {"x-fake-fault": fault} if fault else {}
            for stream in (False, True):
                r = c.post(f"{urls['openai']}/v1/chat/completions", json=dict(tools if fault else chat, stream=stream),
                           headers={**oa, **h})
                seeds["sse" if stream else "provider_responses"].append(r.content)
                seeds["messages_door"].append(r.content)
                seeds["responses_door"].append(r.content)
                r = c.post(f"{urls['anthropic']}/v1/messages",
                           json={"model": "m", "max_tokens": 20, "stream": stream,
                                 "messages": [{"role": "user", "content": "hello there"}]}, headers={**an, **h})
                seeds["provider_responses"].append(r.content)
                if stream:
                    seeds["sse"].append(r.content)
                # With extended thinking and a cached prefix: thinking blocks, signatures, cache usage.
                r = c.post(f"{urls['anthropic']}/v1/messages",
                           json={"model": "m", "max_tokens": 2048, "stream": stream, "thinking": {
                               "type": "enabled", "budget_tokens": 1024},
                               "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
                               "messages": [{"role": "user", "content": "hello there"}]}, headers={**an, **h})
                seeds["provider_responses"].append(r.content)
                seeds["messages_door"].append(r.content)
                if stream:
                    seeds["sse"].append(r.content)
                path = "streamGenerateContent?alt=sse" if stream else "generateContent"
                r = c.post(f"{urls['gemini']}/v1beta/models/gemini-2.5-flash:{path}", json=gem_body, headers={**ge, **h})
                seeds["provider_responses"].append(r.content)
                if stream:
                    seeds["sse"].append(r.content)
            headers_seen = c.get(f"{urls['openai']}/__fake/requests").json()
            for req in headers_seen[-2:]:
                pairs = [(k.encode(), v.encode()) for k, v in req["headers"].items()]
                enc = struct.pack("<I", len(pairs))
                for k, v in pairs:
                    enc += struct.pack("<II", len(k), len(v))
                for k, v in pairs:
                    enc += k + b"\0" + v + b"\0"
                seeds["header_map"].append(enc)
    finally:
        p.terminate()
    seeds["eventstream"] += [
        frame("event", "messageStart", {"role": "assistant"})
        + frame("event", "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Echo: hi"}})
        + frame("event", "messageStop", {"stopReason": "end_turn"})
        + frame("event", "metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}}),
        frame("exception", "throttlingException", {"message": "Too many requests"}),
        bytes.fromhex("0000007600000052 96d5fade0b3a6576 656e742d74797065 07000c6d65737361 67655374617274 "
                      "0d3a636f6e74656e74 2d74797065070010 6170706c69636174 696f6e2f6a736f6e 0d3a6d6573736167 "
                      "652d74797065 0700056576656e74 7b22726f6c65223a 22617373697374616e74 227d6fa8c599"),
    ]
    seeds["provider_responses"].append(json.dumps({
        "output": {"message": {"role": "assistant", "content": [{"text": "Echo: hi"}]}}, "stopReason": "end_turn",
        "usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}}).encode())
    # Prompt-cache writes by TTL, as Converse and Anthropic report them.
    cache_details = {"inputTokens": 5, "outputTokens": 2, "totalTokens": 13, "cacheWriteInputTokens": 6,
                     "cacheDetails": [{"ttl": "1h", "inputTokens": 2}, {"ttl": "5m", "inputTokens": 4}]}
    seeds["provider_responses"] += [
        json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
                    "stopReason": "end_turn", "usage": cache_details}).encode(),
        frame("event", "metadata", {"usage": cache_details}),
        json.dumps({"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}],
                    "stop_reason": "end_turn", "usage": {"input_tokens": 3, "cache_creation_input_tokens": 6,
                    "cache_read_input_tokens": 0, "output_tokens": 2,
                    "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 2}}}).encode(),
    ]
    seeds["credentials"] += [b"Bearer aigw_sk_one\xff\xff\xffsearch", b"\xffaigw_sk_one\xff\xffchat",
                             b"Bearer\xc3\xa9x\xff\xff\xff", b"bearer  aigw_sk_two \xff\xffaigw_sk_three\xff",
                             b'{"tenant":"t","key_id":"k1","alias_scope":"*"}']
    seeds["codec"] += codec_seeds()
    # The JSON reader and writer: every request and whole answer above, and the edges of the
    # grammar (escapes, surrogates, numbers at the ends of their ranges, nesting).
    seeds["json"] += [s for t in ("unified_request", "messages_door", "responses_door", "provider_responses")
                      for s in seeds[t] if s[:1] in (b"{", b"[")]
    seeds["json"] += [b'"\\u00e9\\ud83d\\ude00\\n\\/"', b"[18446744073709551615,-9223372036854775808,1e308,-0,0.1]",
                      b'{"a":{"b":[[[{}]]]},"a":null}', b"[1.5e-320, 123456789012345678901234567890]"]
    for target, items in seeds.items():
        d = os.path.join(out, target)
        os.makedirs(d, exist_ok=True)
        for i, data in enumerate(items):
            with open(os.path.join(d, f"seed-{i:03d}"), "wb") as f:
                f.write(data)
        print(f"{target}: {len(items)} seeds")


if __name__ == "__main__":
    main()
