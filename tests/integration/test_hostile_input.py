"""Hostile bytes in headers: no request may take the gateway down.

A header byte that is not UTF-8, or a multi-byte character where the credential parser expects
`Bearer `, once panicked inside the Wasm VM; a panicked VM fails every later call on its worker.
Each hostile request here goes over a connection of its own, four times; then 100 normal calls,
half on each worker, must all be served.
"""

import json
import socket

from conftest import DEMO_KEYS, clients_on_both_workers

# Valid at both doors (chat completions and Messages).
BODY = b'{"model":"chat","max_tokens":50,"messages":[{"role":"user","content":"hello"}]}'
# The other doors' bodies.
DOOR_BODIES = {"/v1/responses": b'{"model":"chat","input":"hello","max_output_tokens":50}',
               "/v1/embeddings": b'{"model":"embed","input":["hello","again"]}'}
ODD = b"caf\xe9"  # a Latin-1 byte: not UTF-8
SPLIT = b"\xc3\xa9x"  # one two-byte character at bytes 7-8 of "Bearer..."

# Every request header a filter reads, each with a value that is not UTF-8.
READ_HEADERS = [
    b"authorization", b"x-api-key", b"api-key", b"x-gateway-feature", b"x-gateway-agent",
    b"x-gateway-latency-budget-ms", b"x-gateway-cost-ceiling-usd", b"x-request-id", b"content-type",
    b"anthropic-version", b"anthropic-beta", b"x-note",
]


def raw_call(gw, head: bytes, body: bytes = BODY, path: bytes = b"/v1/chat/completions"):
    """One request, written byte for byte on a connection of its own: (status, headers, body)."""
    req = (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + head
           + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=20) as s:
        s.sendall(req)
        data = b""
        # Read one response (not until the connection closes: Envoy delays its close).
        while b"\r\n\r\n" not in data:
            data += s.recv(65536) or b"\r\n\r\n"
        head_bytes, _, rest = data.partition(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if "content-length" in headers:
            while len(rest) < int(headers["content-length"]):
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
        elif headers.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            body = b""
            while rest:
                size, _, rest = rest.partition(b"\r\n")
                n = int(size.split(b";")[0], 16)
                if n == 0:
                    break
                body, rest = body + rest[:n], rest[n + 2:]
            rest = body
    return status, headers, rest


def hostile_requests():
    key = f"Bearer {DEMO_KEYS['acme']}".encode()
    yield "bearer-split-char", b"Authorization: Bearer" + SPLIT + b"\r\n", "/v1/chat/completions"
    yield "bearer-split-char-messages", b"Authorization: Bearer" + SPLIT + b"\r\n", "/v1/messages"
    yield "odd-byte-no-key", b"x-note: " + ODD + b"\r\n", "/v1/chat/completions"
    for h in READ_HEADERS:
        auth = b"" if h == b"authorization" else b"Authorization: " + key + b"\r\n"
        yield f"odd-{h.decode()}", auth + h + b": " + ODD + b"\r\n", "/v1/chat/completions"
        yield f"odd-{h.decode()}-messages", (auth + h + b": " + ODD + b"\r\nanthropic-version: 2023-06-01\r\n"
                                             if h != b"anthropic-version" else auth + h + b": " + ODD + b"\r\n"), \
            "/v1/messages"
        for door in DOOR_BODIES:
            yield f"odd-{h.decode()}-{door.rsplit('/', 1)[1]}", auth + h + b": " + ODD + b"\r\n", door


def test_hostile_headers_are_refused_or_served_and_the_gateway_keeps_serving(gateway):
    seen = {}
    for _round in range(4):
        for name, head, path in hostile_requests():
            status, headers, body = raw_call(gateway, head, body=DOOR_BODIES.get(path, BODY), path=path.encode())
            seen[name] = (status, headers, body)
            # Refused in the caller's shape, or served; never Envoy's empty 503 of a dead VM.
            assert status < 500, (name, status, body)
            if status >= 400:
                err = json.loads(body)
                if path == "/v1/messages":
                    assert err["type"] == "error" and err["error"]["type"], (name, err)
                else:
                    assert err["error"]["code"], (name, err)

    # The two probes from the report: a 401 in the caller's shape, and an audit record each.
    status, headers, body = seen["bearer-split-char"]
    assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key", body
    rec = gateway.audit(headers["x-aigw-request-id"])
    assert len(rec) == 1 and rec[0]["outcome"] == "refused_auth" and rec[0]["status"] == 401
    status, headers, body = seen["bearer-split-char-messages"]
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error", body
    status, headers, body = seen["odd-byte-no-key"]
    assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key", body
    assert len(gateway.audit(headers["x-aigw-request-id"])) == 1
    # A valid key with an odd byte in a header nobody needs: served.
    assert seen["odd-x-note"][0] == 200, seen["odd-x-note"]

    # Then every normal call is served, on both workers.
    with clients_on_both_workers(gateway) as clients:
        for i in range(100):
            r = clients[i % 2].post("/v1/chat/completions", content=BODY,
                                    headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "Echo: hello"


def test_provider_headers_that_are_not_utf8_do_not_break_the_answer(gateway):
    """A provider's answer whose headers carry bytes that are not UTF-8 is still read."""
    for _ in range(6):
        status, headers, body = raw_call(
            gateway,
            f"Authorization: Bearer {DEMO_KEYS['acme']}\r\nx-fake-fault: *=odd-header\r\n".encode(),
            body=json.dumps({"model": "chat-openai-first", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        )
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"] == "Echo: hi"
        assert headers["x-aigw-tokens-input"]


def test_a_providers_own_gateway_headers_never_reach_the_caller(gateway):
    """Headers in the gateway's `x-aigw-` namespace that a provider sends are dropped: only the
    gateway says what a call cost. (The attempt once let them through, as the credential stage
    used one such header to tell the route stage which key it used.)"""
    for _ in range(3):
        r = gateway.chat("hi", model="chat-openai-first", headers={"x-fake-fault": "openai=gateway-header"})
        assert r.status_code == 200, r.text
        assert "x-aigw-debug" not in r.headers
        assert r.headers["x-aigw-provider"] == "openai"
        rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
        # The cost the caller sees is the gateway's (from usage and the price book), not the
        # provider's "0", and it is the audit record's.
        assert r.headers["x-aigw-cost-usd"] == rec["cost_usd"] != "0"
        # The credential the attempt used still reaches its record (said in the call state).
        assert rec["attempts"][-1]["credential"]
