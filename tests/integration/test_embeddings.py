"""`POST /v1/embeddings` with the official OpenAI SDK against the real Envoy, on both layouts:
one input and a batch, `float` and `base64` (the SDK's default), through OpenAI, Azure (the
same model, as the fallback), Gemini and Bedrock (Titan v2 and Cohere v3 through `InvokeModel`,
SigV4-signed; translated both ways), and batches above a provider's cap split into several
provider calls. The fakes make each vector from its text, so the expected vectors are computed
here the same way."""

import base64
import struct
import uuid
from decimal import Decimal

import httpx
import openai
import pytest
from conftest import DEMO_KEYS, PRICE_BOOK


def vector(text, dims):
    """The fakes' vector of `text` (tests/fake-providers/src/embeddings.rs): exact in float32."""
    x = 0xCBF29CE484222325
    for b in text.encode():
        x = ((x ^ b) * 0x100000001B3) & (2**64 - 1)
    out = []
    for _ in range(dims):
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        out.append(((x >> 54) - 512) / 1024)
    return out


def client(gw, key="acme"):
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=DEMO_KEYS[key], max_retries=0)


def unique():
    return f"embed me {uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("alias,dims", [("embed", 1536), ("embed-gemini", 3072), ("embed-cohere", 1024)])
def test_one_input_and_a_batch_in_both_encodings(gateway, alias, dims):
    c = client(gateway)
    text = unique()
    # The SDK asks for base64 when the caller names no format, and decodes it.
    one = c.embeddings.create(model=alias, input=text)
    assert len(one.data) == 1 and one.data[0].embedding == vector(text, dims)
    assert one.usage.prompt_tokens >= 3
    texts = [unique(), unique(), unique()]
    floats = c.embeddings.create(model=alias, input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert [d.embedding for d in floats.data] == [vector(t, dims) for t in texts]
    # Asked for base64 explicitly, the caller gets the exact bytes: float32, little-endian.
    raw = httpx.post(f"{gateway.url}/v1/embeddings", timeout=10,
                     headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                     json={"model": alias, "input": texts[0], "encoding_format": "base64"}).json()
    assert raw["data"][0]["embedding"] == base64.b64encode(struct.pack(f"<{dims}f", *vector(texts[0], dims))).decode()


def test_dimensions_reach_the_provider_and_openai_token_arrays_pass_through(gateway):
    c = client(gateway)
    text = unique()
    short = c.embeddings.create(model="embed-gemini", input=text, dimensions=256, encoding_format="float")
    assert short.data[0].embedding == vector(text, 256)
    short = c.embeddings.create(model="embed", input=text, dimensions=64, encoding_format="float")
    assert len(short.data[0].embedding) == 64
    tokens = c.embeddings.create(model="embed", input=[[1, 2, 3]], encoding_format="float")
    assert tokens.usage.prompt_tokens == 3
    # Token arrays mean nothing to Gemini: refused by name.
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="embed-gemini", input=[[1, 2, 3]])
    assert e.value.code == "unsupported_for_provider" and e.value.param == "input"


def test_a_failing_openai_step_falls_back_to_the_same_model_on_azure(gateway):
    text = unique()
    r = httpx.post(f"{gateway.url}/v1/embeddings", timeout=10,
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "x-fake-fault": "openai=503"},
                   json={"model": "embed", "input": text, "encoding_format": "float"})
    assert r.status_code == 200, r.text
    assert r.headers["x-aigw-provider"] == "azure" and r.headers["x-aigw-attempts"] == "2"
    assert r.json()["data"][0]["embedding"] == vector(text, 1536)
    sent = gateway.provider_requests("azure", containing=text)
    assert len(sent) == 1 and "/openai/deployments/text-embedding-3-small/embeddings" in sent[0]["path"]
    # Through Azure with the SDK's default (base64), and a batch.
    azure = client(gateway).with_options(default_headers={"x-fake-fault": "openai=503"})
    texts = [unique(), unique()]
    out = azure.embeddings.create(model="embed", input=texts)
    assert [d.embedding for d in out.data] == [vector(t, 1536) for t in texts]
    assert len(gateway.provider_requests("azure", containing=texts[0])) == 1


def test_an_alias_serves_one_kind_of_call(gateway):
    c = client(gateway)
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="chat", input="hi")
    assert e.value.code == "wrong_model_kind"
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model="embed", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "wrong_model_kind"


def test_embeddings_are_charged_audited_and_priced_by_their_input(gateway):
    texts = [unique(), unique()]
    h = {"authorization": f"Bearer {DEMO_KEYS['acme']}"}
    r = httpx.post(f"{gateway.url}/v1/embeddings", headers=h, timeout=10,
                   json={"model": "embed", "input": texts, "encoding_format": "float"})
    assert r.status_code == 200 and int(r.headers["x-ratelimit-remaining-requests"]) >= 0
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    used = r.json()["usage"]["prompt_tokens"]
    assert (rec["outcome"], rec["provider"], rec["model"]) == ("ok", "openai", "text-embedding-3-small")
    assert rec["workload_class"] == "embeddings", "whatever the key says"
    assert rec["door"] == "embeddings"
    assert rec["tokens"]["input"] == used and rec["tokens"]["output"] == 0
    price = Decimal(PRICE_BOOK["models"]["text-embedding-3-small"]["input"])
    assert Decimal(rec["cost_usd"]) == used * price / 1_000_000
    # Gemini reports no token count: the call is billed at the gateway's estimate, and says so.
    r = httpx.post(f"{gateway.url}/v1/embeddings", headers=h, timeout=10,
                   json={"model": "embed-gemini", "input": texts[0], "encoding_format": "float"})
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert rec["outcome"] == "ok" and "usage_estimated" in rec["flags"]
    assert rec["tokens"]["input"] == r.json()["usage"]["prompt_tokens"] > 0


def test_bedrock_titan_takes_one_text_and_its_own_dimensions(gateway):
    c = client(gateway)
    text = unique()
    one = c.embeddings.create(model="embed-titan", input=text, dimensions=256)
    assert one.data[0].embedding == vector(text, 256)
    assert one.usage.prompt_tokens == len(text.split())
    sent = gateway.provider_requests("bedrock", containing=text)
    assert len(sent) == 1 and sent[0]["path"] == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert sent[0]["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    with pytest.raises(openai.BadRequestError) as e:
        c.embeddings.create(model="embed-titan", input=text, dimensions=300)
    assert e.value.code == "unsupported_for_provider" and e.value.param == "dimensions"


def test_bedrock_cohere_usage_comes_from_its_token_count_header(gateway):
    texts = [unique(), unique()]
    r = httpx.post(f"{gateway.url}/v1/embeddings", timeout=10,
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"},
                   json={"model": "embed-cohere", "input": texts, "encoding_format": "float"})
    assert r.status_code == 200, r.text
    words = sum(len(t.split()) for t in texts)
    assert r.json()["usage"] == {"prompt_tokens": words, "total_tokens": words}
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert rec["tokens"]["input"] == words and "usage_estimated" not in rec["flags"]
    price = Decimal(PRICE_BOOK["models"]["cohere.embed-english-v3"]["input"])
    assert Decimal(rec["cost_usd"]) == words * price / 1_000_000


@pytest.mark.parametrize("body,code,param", [
    (b'{"model":"embed-gemini"}', "invalid_request", None),
    (b'{"model":"embed-gemini","input":"x","encoding_format":"int8"}', "invalid_encoding_format", "encoding_format"),
    (b'{"model":"embed-gemini","input":[]}', "invalid_input", "input"),
    (b'{"model":"embed-titan","input":"x","dimensions":"big"}', "invalid_request", None),
    (b'{"model": "embed", "input": ', "invalid_json", None),
])
def test_bad_embeddings_input_is_a_clear_400_and_audited(gateway, body, code, param):
    r = httpx.post(f"{gateway.url}/v1/embeddings", content=body, timeout=10,
                   headers={"authorization": f"Bearer {DEMO_KEYS['acme']}", "content-type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"]) == (code, param), err
    [rec] = gateway.audit(r.headers["x-aigw-request-id"])
    assert (rec["outcome"], rec["status"], rec["door"]) == ("refused_request", 400, "embeddings")


def embed(gw, alias, texts, fault=None):
    headers = {"authorization": f"Bearer {DEMO_KEYS['acme']}"}
    if fault:
        headers["x-fake-fault"] = fault
    return httpx.post(f"{gw.url}/v1/embeddings", timeout=20, headers=headers,
                      json={"model": alias, "input": texts, "encoding_format": "float"})


@pytest.mark.parametrize("alias,cap,dims,count", [
    ("embed-titan", 1, 1024, 5),
    ("embed-cohere", 96, 1024, 100),
    ("embed-gemini", 100, 3072, 150),
])
def test_a_batch_larger_than_the_provider_takes_is_split_and_merged_in_order(gateway, alias, cap, dims, count):
    tag = uuid.uuid4().hex[:8]
    texts = [f"part {tag} text {i}" + " word" * (i % 3) for i in range(count)]
    r = embed(gateway, alias, texts)
    provider = "gemini" if alias == "embed-gemini" else "bedrock"
    if gateway.layout == "filters":
        # The route filter alone cannot send calls with the attempt's credential: it refuses.
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "input"
        assert gateway.provider_requests(provider, containing=tag) == []
        return
    assert r.status_code == 200, r.text
    out = r.json()
    assert [d["index"] for d in out["data"]] == list(range(count))
    assert [d["embedding"] for d in out["data"]] == [vector(t, dims) for t in texts]
    # One provider call per part of at most `cap` inputs, each authenticated (Bedrock: signed
    # over its own body, which the fake checks).
    sent = gateway.provider_requests(provider, containing=tag)
    parts = -(-count // cap)
    assert len(sent) == parts
    sizes = sorted(b.count(tag) for b in (req["body"] for req in sent))
    assert sizes == sorted([cap] * (count // cap) + ([count % cap] if count % cap else []))
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert rec["outcome"] == "ok" and f"embeddings_split:{parts}" in rec["flags"]
    if provider == "bedrock":
        # Bedrock reports each part's tokens: the call is billed at their sum.
        words = sum(len(t.split()) for t in texts)
        assert out["usage"]["prompt_tokens"] == rec["tokens"]["input"] == words
        price = Decimal(PRICE_BOOK["models"][rec["model"]]["input"])
        assert Decimal(rec["cost_usd"]) == words * price / 1_000_000
    else:
        assert "usage_estimated" in rec["flags"]


def test_a_part_that_fails_fails_the_whole_batch_with_its_status(gateway):
    tag = uuid.uuid4().hex[:8]
    texts = [f"ok {tag} one", f"ok {tag} two", f"doomed {tag} three"]
    r = embed(gateway, "embed-titan", texts, fault=f"bedrock=503-if-doomed {tag}")
    if gateway.layout == "filters":
        assert r.status_code == 400
        return
    # Bedrock's 503 for the third input, in OpenAI's shape; Envoy retried the step once, as
    # for any 503, and no partial answer reached the caller.
    assert r.status_code == 503, r.text
    assert "data" not in r.json() and r.json()["error"]["type"]
    rec = gateway.audit(r.headers["x-aigw-request-id"])[0]
    assert [a["status"] for a in rec["attempts"]] == [503, 503]
    assert len(gateway.provider_requests("bedrock", containing=f"doomed {tag}")) == 2


def test_a_batch_that_would_take_more_than_128_provider_calls_is_a_clear_400_and_audited(gateway):
    tag = uuid.uuid4().hex[:8]
    r = embed(gateway, "embed-titan", [f"{tag} {i}" for i in range(129)])
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["code"], err["param"]) == ("unsupported_for_provider", "input")
    assert gateway.provider_requests("bedrock", containing=tag) == []
    [rec] = gateway.audit(r.headers["x-aigw-request-id"])
    assert (rec["outcome"], rec["status"], rec["door"]) == ("refused_request", 400, "embeddings")
