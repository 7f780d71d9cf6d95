#!/usr/bin/env python3
"""Measures what the gateway costs against bare Envoy, in one run (driven by scripts/bench).

Every configuration is derived from the real envoy/envoy.yaml, so the filters run with their
real configs: bare Envoy (same listener and clusters, no filters), the full chain (an OpenAI call
translated to Anthropic), and each filter alone. Configurations alternate (A B C ... A B C ...)
for several repetitions; medians are reported, each as a ratio to bare Envoy from the same run.
"""

import argparse
import copy
import datetime
import http.client
import itertools
import json
import os
import platform
import re
import socket
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import render_envoy  # noqa: E402

ENVOY = ROOT / ".venv" / "bin" / "envoy"
FAKES = ROOT / "target" / "release" / "fake-providers"
WASM_DIR = ROOT / "target" / "wasm32-wasip1" / "release"
KEY = "aigw-demo-key-acme"
PROVIDER_KEYS = {"OPENAI_API_KEY": "sk-bench-openai", "ANTHROPIC_API_KEY": "sk-bench-anthropic",
                 "AZURE_OPENAI_API_KEY": "bench-azure", "GEMINI_API_KEY": "bench-gemini",
                 "AWS_ACCESS_KEY_ID": "AKIDBENCH", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                 "AIGW_CACHE_EMBED_KEY": "aigw-demo-key-cache", "AIGW_SHADOW_KEY": "aigw-demo-key-shadow", "AIGW_FLEET_AUTH": "aigw:bench-webdis"}
# Fleet mode's Webdis (started only when a fleet row is measured).
FLEET_PORT = 7379
REDIS_PASSWORD = "bench-redis"
ENVOY_CPU, LOAD_CPU = "0", "1"
# The floor rows' modules (bench/floor), built when a floor row is measured.
FLOOR_MODULES = (None, None)
# Streaming: the fake's answer (206 characters of text) in pieces of at most 1 character (a long
# stream: 212 events, 206 of them content) and of 20 (a short one: 17 events). The difference of
# the two gives the cost of an event apart from the call's own.
STREAM_PIECES = {"long": 1, "short": 20}

OPENAI_ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1767225600, "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! I am fine, thank you.", "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23,
              "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}},
    separators=(",", ":"))
ANTHROPIC_ANSWER = json.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Hello! I am fine, thank you."}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 14, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 9}},
    separators=(",", ":"))
# Embeddings: a batch of two short inputs; the upstream answers with small vectors (16 values),
# so the bodies are of the chat call's size and the row shows the gateway's work, not copying.
EMBED_BODY = json.dumps({"model": "embed", "input": ["Hello, how are you today?", "You are a helpful assistant."],
                         "encoding_format": "float"})
EMBED_ANSWER = json.dumps({
    "object": "list", "model": "text-embedding-3-small",
    "data": [{"object": "embedding", "index": i, "embedding": [round(0.01 * (i + k) - 0.08, 4) for k in range(16)]}
             for i in range(2)],
    "usage": {"prompt_tokens": 11, "total_tokens": 11}}, separators=(",", ":"))
RESPONSES_BODY = json.dumps({"model": "chat", "instructions": "You are a helpful assistant.",
                             "input": "Hello, how are you today?", "store": False})
CHAT_BODY = json.dumps({"model": "chat", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello, how are you today?"}]})
# The same conversation through the Messages door, with the Anthropic SDK's request headers.
MESSAGES_BODY = json.dumps({"model": "chat", "max_tokens": 1024, "system": "You are a helpful assistant.",
                            "messages": [{"role": "user", "content": "Hello, how are you today?"}]})


# What callers and providers really send, so that the calls measured carry the headers the
# gateway must drop: the official OpenAI Python SDK's request headers (captured from the SDK
# itself; wrk adds Host and Content-Length), and the response headers a provider's answer
# carries (Anthropic's and OpenAI's documented account headers and their CDN's: see
# shared/reference/providers.md, 1.1, 1.7 and 3.7).
SDK_HEADERS = {
    "Accept-Encoding": "gzip, deflate", "accept": "application/json", "user-agent": "OpenAI/Python 3.54.0",
    "x-stainless-lang": "python", "x-stainless-package-version": "3.54.0", "x-stainless-os": "Linux",
    "x-stainless-arch": "x64", "x-stainless-runtime": "CPython", "x-stainless-runtime-version": "3.11.7",
    "x-stainless-async": "false", "x-stainless-retry-count": "0", "x-stainless-read-timeout": "600",
}
RESET = "2026-01-15T12:00:59Z"
ANTHROPIC_ANSWER_HEADERS = [
    ("request-id", "req_011CBenchAnthropic"), ("anthropic-organization-id", "0e7c1a4e-bench"),
    *[(f"anthropic-ratelimit-{kind}-{what}", v)
      for kind in ("requests", "input-tokens", "output-tokens", "tokens")
      for what, v in (("limit", "4000"), ("remaining", "3999"), ("reset", RESET))],
    ("cf-cache-status", "DYNAMIC"), ("cf-ray", "8f1e2d3c4b5a6978-FRA"), ("via", "1.1 google"),
    ("x-robots-tag", "none"), ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"),
    ("x-envoy-upstream-service-time", "612"),
]
OPENAI_ANSWER_HEADERS = [
    ("x-request-id", "req_bench_openai"), ("openai-organization", "org-bench"), ("openai-project", "proj_bench"),
    ("openai-processing-ms", "410"), ("openai-version", "2020-10-01"),
    *[(f"x-ratelimit-{what}-{kind}", v) for kind in ("requests", "tokens")
      for what, v in (("limit", "5000"), ("remaining", "4999"), ("reset", "12ms"))],
    ("cf-cache-status", "DYNAMIC"), ("cf-ray", "8f1e2d3c4b5a6979-FRA"), ("x-content-type-options", "nosniff"),
    ("strict-transport-security", "max-age=31536000; includeSubDomains; preload"), ("alt-svc", 'h3=":443"; ma=86400'),
    ("access-control-expose-headers", "X-Request-ID"),
]


def nginx_headers(pairs):
    return " ".join(f"add_header {k} '{v}' always;" for k, v in pairs)


def guarded_body(size):
    """A chat request of about `size` bytes of prose, with an email, a phone number and an
    Aadhaar number to mask in every 1 KiB."""
    prose = ("The quarterly report covers revenue, churn and the hiring plan for the new office. "
             "Please summarise the main risks and the actions the team agreed on last week. ")
    piece = prose + "Contact priya.sharma@example.in or +91 98765 43210; id 2345 6789 0124. "
    text = (piece * (size // len(piece) + 1))[:size]
    return json.dumps({"model": "chat-guarded", "messages": [{"role": "user", "content": text}]})


# Counts the fleet replicas a run starts (each one's Redis keys are its own).
REPLICAS = itertools.count(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# ---------------------------------------------------------------------------------------------
# Upstreams


def start_nginx(work):
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path {work}/nginx-body;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    location = /v1/chat/completions {{ default_type application/json; {nginx_headers(OPENAI_ANSWER_HEADERS)}
                                       return 200 '{OPENAI_ANSWER}'; }}
    location = /v1/messages {{ default_type application/json; {nginx_headers(ANTHROPIC_ANSWER_HEADERS)}
                              return 200 '{ANTHROPIC_ANSWER}'; }}
    location = /v1/embeddings {{ default_type application/json; return 200 '{EMBED_ANSWER}'; }}
  }}
}}
""")
    p = subprocess.Popen(["taskset", "-c", LOAD_CPU, "nginx", "-c", str(conf), "-p", str(work)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port)
    return p, port


def start_fleet(work):
    """Redis (the function library loaded) and Webdis in front of it, on the load CPU."""
    redis_port, webdis_port = free_port(), free_port()
    redis = subprocess.Popen(["taskset", "-c", LOAD_CPU, "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(work)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(redis_port)
    subprocess.run(["redis-cli", "-p", str(redis_port), "-a", REDIS_PASSWORD, "--no-auth-warning", "FUNCTION", "LOAD",
                    "REPLACE", (ROOT / "deploy" / "redis" / "aigw.lua").read_text()], check=True, capture_output=True)
    conf = json.loads((ROOT / "deploy" / "webdis" / "webdis.json").read_text())
    conf.update({"redis_port": redis_port, "http_port": webdis_port, "redis_auth": REDIS_PASSWORD,
                 "logfile": str(work / "webdis.log"), "verbosity": 1})
    conf["acl"][1]["http_basic_auth"] = PROVIDER_KEYS["AIGW_FLEET_AUTH"]
    (work / "webdis.json").write_text(json.dumps(conf))
    webdis = subprocess.Popen(["taskset", "-c", LOAD_CPU, "webdis", str(work / "webdis.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(webdis_port)
    return [redis, webdis], webdis_port


def start_fakes():
    p = subprocess.Popen(["taskset", "-c", LOAD_CPU, str(FAKES), "--listen", "anthropic=127.0.0.1:0",
                          "--key", f"anthropic={PROVIDER_KEYS['ANTHROPIC_API_KEY']}"],
                         stdout=subprocess.PIPE, text=True)
    port = None
    for line in p.stdout:
        if line.strip() == "ready":
            break
        port = int(line.split()[1].rsplit(":", 1)[1])
    return p, port


# ---------------------------------------------------------------------------------------------
# Envoy configurations, derived from the real template


# binaryen's wasm-opt, for the `full-wasm-opt` row: the features the modules use.
WASM_OPT_FEATURES = ["--enable-bulk-memory", "--enable-sign-ext", "--enable-mutable-globals",
                     "--enable-nontrapping-float-to-int", "--enable-multivalue", "--enable-reference-types"]


def wasm_opt_dir(work):
    """The modules after `wasm-opt -O3` (binaryen from Debian, installed if missing), made once."""
    out = work / "wasm-opt"
    if not out.exists():
        if not shutil.which("wasm-opt"):
            subprocess.run(["apt-get", "install", "-y", "-q", "binaryen"], check=True, capture_output=True)
        out.mkdir()
        for w in sorted(WASM_DIR.glob("*.wasm")):
            subprocess.run(["wasm-opt", "-O3", *WASM_OPT_FEATURES, str(w), "-o", str(out / w.name)], check=True)
    return out


def floor_modules():
    """The floor's own module and the gateway's two modules with the floor contexts linked in
    (`bench/floor`), built once into their own target directory (not the shipped modules)."""
    target = ROOT / "target" / "bench-floor"
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    build = ["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1"]
    subprocess.run(build + ["-p", "aigw-bench-floor"], check=True, cwd=ROOT, env=env)
    own = target / "wasm32-wasip1" / "release" / "aigw_bench_floor.wasm"
    keep = target / "aigw_bench_floor.wasm"
    shutil.copy(own, keep)
    subprocess.run(build + ["-p", "aigw-gateway", "-p", "aigw-gateway-upstream", "--features", "aigw-filters/bench-floor"],
                   check=True, cwd=ROOT, env=env)
    release = target / "wasm32-wasip1" / "release"
    return keep, (release / "aigw_gateway.wasm", release / "aigw_gateway_upstream.wasm")


def base_config(port, admin, upstream_port, work, modules="one", wasm_dir=None):
    text = render_envoy.render({
        "LISTEN_PORT": port, "ADMIN_PORT": admin, "OPENAI_PORT": upstream_port, "ANTHROPIC_PORT": upstream_port,
        "ACCESS_LOG": work / "access.log", "WASM_DIR": wasm_dir or WASM_DIR, "MODULES": modules,
        "FLEET_PORT": FLEET_PORT})
    cfg = render_envoy.load(text, quiet=True)
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    # No throttling while measuring: the demo quota configuration, every limit raised out of reach.
    quota = [f for f in hcm["http_filters"] if f["name"] == "aigw.quota"]
    for c in cfg["static_resources"]["clusters"]:
        opts = c.get("typed_extension_protocol_options", {}).get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        quota += [f for f in (opts or {}).get("http_filters", []) if f["name"] == "aigw.quota_upstream"]
    for f in quota:
        conf = f["typed_config"]["config"]["configuration"]
        conf["value"] = unthrottled(conf["value"])
    return cfg, hcm


def unthrottled(quota_json):
    q = json.loads(quota_json)
    for spec in list(q.get("tenants", {}).values()) + list(q.get("providers", {}).values()):
        for k in ("requests_per_minute", "tokens_per_minute"):
            if k in spec:
                spec[k] = 10**12
        if "concurrent" in spec:
            spec["concurrent"] = 10**6
        if "budget" in spec:
            spec["budget"] = {"daily_usd": "1000000000", "monthly_usd": "1000000000"}
    return json.dumps(q)


def clusters(cfg):
    return {c["name"]: c for c in cfg["static_resources"]["clusters"]}


def keep_filters(hcm, names):
    hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] in names or f["name"] == "envoy.filters.http.router"]


def direct_route(hcm, cluster="provider_openai"):
    vh = hcm["route_config"]["virtual_hosts"][0]
    vh["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": cluster, "timeout": "60s"}}]


def make_config(name, port, admin, upstream_port, work):
    """Returns (config dict, request path, body, headers) for a named configuration."""
    cfg, hcm = base_config(port, admin, upstream_port, work, "separate" if name == "full-separate-modules" else "one",
                           wasm_opt_dir(work) if name == "full-wasm-opt" else None)
    cl = clusters(cfg)
    chain_filters = cl["chain_chat"]["typed_extension_protocol_options"]
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}", **SDK_HEADERS}
    if name in ("full", "full-wasm-opt"):
        # The default layout: the two gateway filters (listener and per attempt); with
        # `full-wasm-opt`, from the module as binaryen's `wasm-opt -O3` rewrites it (not what
        # scripts/run serves: the row says what that pass would buy in size and speed).
        cfg = render_envoy.combine(cfg)
    elif name.startswith("full-without-"):
        # The default layout with stages taken out of both gateway filters' configuration
        # (`full-without-audit`, `full-without-audit+quota`, ...): what each stage costs. The
        # route stage cannot go: it chooses where the call goes.
        cfg = render_envoy.combine(cfg)
        drop = name.removeprefix("full-without-").split("+")
        if not set(drop) <= {"audit", "quota", "auth"}:
            raise SystemExit(f"{name}: only audit, quota and auth can be taken out")
        for f in gateway_filters(cfg):
            conf = f["typed_config"]["config"]["configuration"]
            c = json.loads(conf["value"])
            for stage in drop:
                c.pop(stage, None)
            conf["value"] = json.dumps(c)
    elif name in ("full-fleet", "fleet-refill"):
        # The default layout in fleet mode (README, "Fleet mode"): `full-fleet`, the steady
        # state (the ticker keeps the leases ahead: the request path should not change);
        # `fleet-refill`, every call's lease is one call's worth (a share of 1 per replica), so
        # every call waits for a refill through Webdis: what one costs.
        cfg = render_envoy.combine(cfg)
        # Each Envoy started here is a new replica: keys of its own, so that a replica measured
        # before (gone, its calls-in-flight holding not yet expired) does not count, nor the
        # buckets it spent. (Named by the process and a count, not by the listener's port: a
        # later repetition can be given a port again, and found its buckets spent: every call
        # refused.)
        fleet = {"cluster": "aigw_fleet", "timeout_ms": 2000, "prefix": f"bench{os.getpid()}-{next(REPLICAS)}"}
        if name == "fleet-refill":
            fleet.update({"expected_replicas": 10**12, "tick_ms": 10000})
        for f in gateway_filters(cfg):
            conf = f["typed_config"]["config"]["configuration"]
            c = json.loads(conf["value"])
            if "quota" in c:
                c["quota"]["fleet"] = fleet
                if name == "fleet-refill":
                    # A refill of the request and token leases only (calls in flight, whose
                    # holdings a refill-per-call configuration would churn, are left out).
                    for t in c["quota"].get("tenants", {}).values():
                        t.pop("concurrent", None)
                conf["value"] = json.dumps(c)
        return cfg, "/v1/chat/completions", CHAT_BODY, headers
    elif name == "responses":
        # The default layout on the Responses door: the same conversation as `full`, as a
        # Responses request (translated to the unified one, the answer back to a Response).
        cfg = render_envoy.combine(cfg)
        return cfg, "/v1/responses", RESPONSES_BODY, headers
    elif name == "messages":
        # The default layout on the Messages door (the Anthropic SDK's call), served by the
        # chain's first step, Anthropic: the request passes as written but for its model, and
        # the answer as it came (read once for its usage and facts).
        cfg = render_envoy.combine(cfg)
        sdk = {"anthropic-version": "2023-06-01", "x-api-key": KEY, "user-agent": "Anthropic/Python 2.12.0",
               **{k: v for k, v in SDK_HEADERS.items() if k.startswith("x-stainless") or k == "accept"}}
        return cfg, "/v1/messages", MESSAGES_BODY, {"Content-Type": "application/json", **sdk}
    elif name in ("guardrails-1k", "guardrails-64k"):
        # The default layout on the demo's guarded alias (every detector on: PII masked, secrets
        # refused, IP addresses flagged), a prompt of 1 KiB or 64 KiB of ordinary text with a
        # few values to mask; the answer carries the placeholders back (restored).
        cfg = render_envoy.combine(cfg)
        size = 1024 if name == "guardrails-1k" else 64 * 1024
        return cfg, "/v1/chat/completions", guarded_body(size), headers
    elif name in ("shadow", "shadow-100"):
        # The default layout on the demo's `chat-shadowed` alias: the `full` call, and for a
        # sample of the calls (`shadow`: 10%, a typical dual-run; `shadow-100`: every call) a
        # shadow leg to `chat-openai-first`, sent through the gateway itself when the call ends,
        # not waited for. Throughput and CPU per caller's call include the legs' own calls; the
        # paced latency (calls PACE_MS apart) shows whether a caller waits for its leg.
        cfg = render_envoy.combine(cfg)
        percent = 10 if name == "shadow" else 100
        for f in gateway_filters(cfg):
            conf = f["typed_config"]["config"]["configuration"]
            c = json.loads(conf["value"])
            if "route" in c:
                c["route"]["aliases"]["chat-shadowed"]["shadow"]["percent"] = percent
                conf["value"] = json.dumps(c)
        return cfg, "/v1/chat/completions", CHAT_BODY.replace('"model": "chat"', '"model": "chat-shadowed"'), headers
    elif name == "fastest":
        # The default layout on the demo's `chat-fastest` alias (`prefer: fastest`): the `full`
        # call, whose listener reads both providers' live figures to choose the chain's order
        # and whose attempt adds its sample to them.
        cfg = render_envoy.combine(cfg)
        return cfg, "/v1/chat/completions", CHAT_BODY.replace('"model": "chat"', '"model": "chat-fastest"'), headers
    elif name == "cache-hit":
        # The default layout on the demo's cached alias: the `full` call, answered from the
        # exact cache after the first (no upstream).
        cfg = render_envoy.combine(cfg)
        return cfg, "/v1/chat/completions", CHAT_BODY.replace('"model": "chat"', '"model": "chat-cached"'), headers
    elif name in ("embeddings", "models"):
        # The default layout, on the other calls it serves: an embeddings batch (OpenAI, passed
        # through), and the model list (answered by the gateway itself, no upstream).
        cfg = render_envoy.combine(cfg)
        if name == "models":
            return cfg, "/v1/models", None, {"Authorization": f"Bearer {KEY}", **SDK_HEADERS}
        return cfg, "/v1/embeddings", EMBED_BODY, headers
    elif name in ("floor", "floor-bundle") or name.startswith("floor+"):
        # The floor (bench/floor): the default layout's two filters replaced by the least a
        # listener and a per-attempt context that both rewrite bodies can do, in the same Envoy
        # configuration; `floor` from its own small module, `floor-bundle` from the gateway's.
        cfg = render_envoy.combine(cfg)
        own, (bundle, bundle_upstream) = FLOOR_MODULES
        for f in gateway_filters(cfg):
            c = f["typed_config"]["config"]
            upstream = f["name"] == "aigw.gateway_upstream"
            c["root_id"] = "floor_upstream" if upstream else "floor"
            # `floor+meta+headers`: the floor with those of the gateway's host calls (bench/floor).
            c["configuration"]["value"] = name.partition("+")[2]
            module = (bundle_upstream if upstream else bundle) if name == "floor-bundle" else own
            c["vm_config"] = dict(c["vm_config"], vm_id=name, code={"local": {"filename": str(module)}})
        # Envoy-side variants of the floor: `nolog` without the access log, `noretry` without
        # the chains' retry policy: what those parts of the configuration cost.
        extras = name.partition("+")[2].split("+")
        if "nolog" in extras:
            hcm.pop("access_log", None)
        if "noretry" in extras:
            for vh in hcm["route_config"]["virtual_hosts"]:
                for r in vh["routes"]:
                    r.get("route", {}).pop("retry_policy", None)
    elif name in ("full-filters", "full-separate-modules"):
        pass  # the design card's seven filter instances, from one module or one module each
    elif name == "route-select":
        keep_filters(hcm, {"aigw.route_select"})
        opts = copy.deepcopy(chain_filters)
        pf = opts["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
        opts["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"] = [
            f for f in pf if f["name"] != "aigw.auth_key_swap_upstream"]
        for c in ("chain_chat", "chain_openai_first"):
            cl[c]["typed_extension_protocol_options"] = opts
    else:
        only = {"bare": set(), "audit-emit": {"aigw.audit_emit"}, "auth-key-swap": {"aigw.auth_key_swap"},
                "quota": {"aigw.quota"}}[name]
        keep_filters(hcm, only)
        direct_route(hcm)
        if name == "auth-key-swap":  # its per-attempt half too, on the provider cluster
            opts = copy.deepcopy(chain_filters)
            pf = opts["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
            opts["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"] = [
                f for f in pf if f["name"] != "aigw.route_select_upstream"]
            cl["provider_openai"]["typed_extension_protocol_options"] = opts
    return cfg, "/v1/chat/completions", CHAT_BODY, headers


def gateway_filters(cfg):
    """The gateway filters (listener and per attempt) of a configuration."""
    found = []

    def walk(o):
        if isinstance(o, dict):
            if o.get("name") in ("aigw.gateway", "aigw.gateway_upstream"):
                found.append(o)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(cfg)
    return found


def stream_config(name, port, admin, upstream_port, work, pieces):
    """Streaming: the same Anthropic stream, proxied as is (bare) or translated (full). The fake
    streams the answer's text in pieces of at most `pieces` characters (its `pieces-N` fault), one
    content event each, so that two piece sizes give two stream lengths (see `stream_events`)."""
    words = " ".join(f"w{i}" for i in range(199))
    fault = {"x-fake-fault": f"*=pieces-{pieces}"}
    if name == "bare":
        cfg, hcm = base_config(port, admin, upstream_port, work)
        keep_filters(hcm, set())
        direct_route(hcm, "provider_anthropic")
        # The caller holds the provider's key here: Envoy must not remove it (or the version)
        # as the gateway's virtual host does.
        hcm["route_config"]["virtual_hosts"][0].pop("request_headers_to_remove", None)
        body = json.dumps({"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "stream": True,
                           "messages": [{"role": "user", "content": words}]})
        headers = {"Content-Type": "application/json", "x-api-key": PROVIDER_KEYS["ANTHROPIC_API_KEY"],
                   "anthropic-version": "2023-06-01", **fault}
        return cfg, "/v1/messages", body, headers
    cfg, _, _, headers = make_config("full", port, admin, upstream_port, work)
    body = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": words}]})
    return cfg, "/v1/chat/completions", body, {**headers, **fault}


def stream_events(fake_port, pieces):
    """How many events the fake's stream has at that piece size, asked of the fake itself: the
    divisor of the per-event figures."""
    words = " ".join(f"w{i}" for i in range(199))
    req = json.dumps({"model": "claude-sonnet-4-5-20250929", "max_tokens": 1024, "stream": True,
                      "messages": [{"role": "user", "content": words}]}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", fake_port, timeout=10)
    try:
        conn.request("POST", "/v1/messages", body=req, headers={
            "Content-Type": "application/json", "x-api-key": PROVIDER_KEYS["ANTHROPIC_API_KEY"],
            "anthropic-version": "2023-06-01", "x-fake-fault": f"*=pieces-{pieces}"})
        data = conn.getresponse().read()
    finally:
        conn.close()
    return data.count(b"event: ")


def wait_ready(proc, admin, log, timeout, every):
    """Until Envoy's admin says LIVE; raises if it exits first (with its log's end) or takes
    longer than `timeout` seconds."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("Envoy exited: " + log.read_text()[-3000:])
        if time.time() > deadline:
            raise RuntimeError(f"Envoy did not become ready in {timeout} s")
        try:
            with socket.create_connection(("127.0.0.1", admin), timeout=0.5) as s:
                s.sendall(b"GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                if b"LIVE" in s.recv(4096):
                    return
        except OSError:
            pass
        time.sleep(every)


class Envoy:
    def __init__(self, cfg, work, workers, pin):
        self.path = work / f"envoy-{time.time_ns()}.json"
        self.path.write_text(json.dumps(cfg))
        admin = cfg["admin"]["address"]["socket_address"]["port_value"]
        cmd = [str(ENVOY), "-c", str(self.path), "--concurrency", str(workers), "--use-dynamic-base-id", "-l", "error"]
        if pin:
            cmd = ["taskset", "-c", ENVOY_CPU] + cmd
        self.proc = subprocess.Popen(cmd, stdout=open(work / "envoy.log", "a"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **PROVIDER_KEYS))
        try:
            wait_ready(self.proc, admin, work / "envoy.log", 60, 0.05)
        except RuntimeError:
            self.stop()
            raise

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self):
        m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(m.group(1)) / 1024 if m else float("nan")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ---------------------------------------------------------------------------------------------
# Load


# Calls spaced this far apart (wrk's `delay`) for the paced latency of the shadow rows: long
# enough for a shadow leg to end before the next call, so the figure shows whether the caller
# waits for its leg, apart from the worker being busy with it.
PACE_MS = 3
# The configurations whose paced latency is measured too (`full` for comparison).
PACED = {"full", "shadow", "shadow-100"}


def lua_script(work, path, body, headers, pace_ms=None):
    f = work / f"req-{abs(hash((path, body, pace_ms))) % 10**8}.lua"
    if body is None:
        lines = ['wrk.method = "GET"', f"wrk.path = {json.dumps(path)}"]
    else:
        lines = ['wrk.method = "POST"', f"wrk.path = {json.dumps(path)}", f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if pace_ms:
        lines.append(f"function delay() return {pace_ms} end")
    f.write_text("\n".join(lines) + "\n")
    return f


UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def wrk(port, script, conns, seconds, threads=1):
    out = subprocess.run(["taskset", "-c", LOAD_CPU, "wrk", "--latency", "-t", str(threads), "-c", str(conns),
                          "-d", f"{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx or "requests in" not in out:
        raise RuntimeError(f"load run failed:\n{out}")
    lat = {m.group(1): float(m.group(2)) * UNITS[m.group(3)]
           for m in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    avg = re.search(r"Latency\s+([\d.]+)(us|ms|s)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50": lat.get("50"), "p99": lat.get("99"),
        "avg": float(avg.group(1)) * UNITS[avg.group(2)],
    }


def measure(name, work, upstream_port, seconds):
    port, admin = free_port(), free_port()
    cfg, path, body, headers = make_config(name, port, admin, upstream_port, work)
    script = lua_script(work, path, body, headers)
    r = {}
    # One worker, pinned: latency at concurrency 1, then throughput and CPU per request.
    e = Envoy(cfg, work, workers=1, pin=True)
    try:
        wrk(port, script, 1, 1)  # warm-up
        lat = wrk(port, script, 1, seconds)
        r["p50"], r["p99"], r["calls_c1"] = lat["p50"], lat["p99"], lat["requests"]
        if name in PACED:
            paced = wrk(port, lua_script(work, path, body, headers, PACE_MS), 1, seconds)
            r["p50_paced"], r["p99_paced"] = paced["p50"], paced["p99"]
        cpu0 = e.cpu_seconds()
        thr = wrk(port, script, 32, seconds)
        r["cpu_us"] = (e.cpu_seconds() - cpu0) * 1e6 / thr["requests"]
        r["rps1"] = thr["rps"]
    finally:
        e.stop()
    # Two workers (unpinned: they need both cores): throughput and peak memory.
    port, admin = free_port(), free_port()
    cfg, path, body, headers = make_config(name, port, admin, upstream_port, work)
    e = Envoy(cfg, work, workers=2, pin=False)
    try:
        wrk(port, script, 32, 1, threads=2)
        r["rps2"] = wrk(port, script, 32, seconds, threads=2)["rps"]
        r["rss2"] = e.peak_rss_mib()
    finally:
        e.stop()
    return r


def measure_stream(name, work, fake_port, seconds, pieces):
    port, admin = free_port(), free_port()
    cfg, path, body, headers = stream_config(name, port, admin, fake_port, work, pieces)
    script = lua_script(work, path, body, headers)
    e = Envoy(cfg, work, workers=1, pin=True)
    try:
        wrk(port, script, 1, 1)
        return wrk(port, script, 1, seconds)["avg"]
    finally:
        e.stop()


# ---------------------------------------------------------------------------------------------
# Report


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024 // 1024
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB, {platform.system()} {platform.release()}"


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout + subprocess.run(cmd, capture_output=True, text=True).stderr
    except OSError:
        return "?"
    m = re.search(r"(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "?"


def fmt(v, unit=""):
    return "-" if v is None else (f"{v:,.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}")


def report(results, stream, reps, seconds):
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in results.items()}
    b = med["bare"]
    lines = [
        f"# Gateway benchmark, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"- Machine: {machine()}",
        f"- Envoy {version([str(ENVOY), '--version'])}, load generator wrk {version(['wrk', '--version'])}, "
        f"upstream nginx {version(['nginx', '-v'])} answering fixed provider bodies",
        f"- Pinning: 1-worker runs put Envoy on CPU {ENVOY_CPU} and wrk + the upstream on CPU {LOAD_CPU}; "
        "2-worker runs leave Envoy unpinned (it needs both cores) with wrk + upstream on CPU 1",
        f"- {reps} repetitions, configurations alternating within each; medians of the repetitions; "
        f"each run {seconds} s after a 1 s warm-up (latency: {int(statistics.median(r['calls_c1'] for r in results['bare']))}+ calls per run at concurrency 1)",
        "- Ratios are against bare Envoy (same listener, clusters and access log, no filters) from this run",
        "",
        "| configuration | p50 µs (c=1) | p99 µs | added p50 | added p99 | req/s 1 worker (c=32) | ratio | req/s 2 workers | ratio | CPU µs/req | ratio | peak RSS MiB, 2 workers |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, m in med.items():
        lines.append(
            f"| {n} | {fmt(m['p50'])} | {fmt(m['p99'])} | {fmt(m['p50'] - b['p50'])} | {fmt(m['p99'] - b['p99'])} | "
            f"{fmt(m['rps1'])} | {m['rps1'] / b['rps1']:.2f} | {fmt(m['rps2'])} | {m['rps2'] / b['rps2']:.2f} | "
            f"{fmt(m['cpu_us'])} | {m['cpu_us'] / b['cpu_us']:.2f} | {m['rss2']:.1f} (+{m['rss2'] - b['rss2']:.1f}) |")
    # The medians hide how far the repetitions spread on a shared host: bare's and full's CPU
    # per call in each repetition, and their ratio repetition by repetition.
    pairs = list(zip(results["bare"], results["full"]))
    lines += [
        "",
        "CPU µs per call in each repetition (the spread the medians hide): bare "
        + ", ".join(fmt(b_["cpu_us"]) for b_, _ in pairs) + "; full " + ", ".join(fmt(f_["cpu_us"]) for _, f_ in pairs)
        + "; full ÷ bare, repetition by repetition, " + ", ".join(f"{f_['cpu_us'] / b_['cpu_us']:.2f}" for b_, f_ in pairs)
        + ".",
        "",
    ]
    per_chunk = None
    if stream:
        sm = {k: statistics.median(v) for k, v in stream["times"].items()}
        ev = stream["events"]
        added = {k: sm[f"full-{k}"] - sm[f"bare-{k}"] for k in STREAM_PIECES}
        whole = added["long"] / ev["long"]
        per_chunk = (added["long"] - added["short"]) / (ev["long"] - ev["short"])
        lines += [
            f"Streaming, at concurrency 1 (upstream: the fake provider), an Anthropic stream of {ev['long']} events "
            f"(the answer's text in 1-character pieces) and one of {ev['short']} (20-character pieces): bare Envoy "
            f"{sm['bare-long'] / 1000:.2f} and {sm['bare-short'] / 1000:.2f} ms per stream, the full gateway "
            f"(translated to OpenAI chunks) {sm['full-long'] / 1000:.2f} and {sm['full-short'] / 1000:.2f} ms: "
            f"**{per_chunk:.1f} µs added per event** (the difference of the two streams' added times over the "
            f"difference of their events, the call's own cost apart); {whole:.1f} µs per event of the long "
            "stream with the call's own cost spread over its events.",
            "",
        ]
    paced = [(n, m) for n, m in med.items() if "p50_paced" in m]
    if len(paced) > 1:
        lines += [
            f"Paced latency (concurrency 1, calls {PACE_MS} ms apart, so that a shadow leg ends before the "
            "next call): " + "; ".join(f"{n} p50 {fmt(m['p50_paced'])} µs, p99 {fmt(m['p99_paced'])} µs" for n, m in paced)
            + ".",
            "",
        ]
    lines += [
        "| .wasm | bytes |",
        "|---|---|",
    ]
    for w in sorted(WASM_DIR.glob("*.wasm")):
        lines.append(f"| {w.name} | {w.stat().st_size:,} |")
    f = med["full"]
    largest = max((w.stat().st_size for w in WASM_DIR.glob("*.wasm")), default=0) / 1024
    # The goals of the "one call, one context" issue.
    targets = [
        ("added latency p50 at c=1", f["p50"] - b["p50"], 120, "µs", lambda v, t: v <= t),
        ("throughput at 32 connections (1 worker), share of bare", f["rps1"] / b["rps1"] * 100, 40, "%",
         lambda v, t: v >= t),
        ("CPU per request, times bare", f["cpu_us"] / b["cpu_us"], 2.5, "×", lambda v, t: v <= t),
        ("added time per streamed chunk (event)", per_chunk, 3, "µs", lambda v, t: v <= t),
        ("largest .wasm", largest, 600, "KiB", lambda v, t: v <= t),
    ]
    lines += ["", "| target (full gateway) | measured | goal | met |", "|---|---|---|---|"]
    for label, v, t, unit, ok in targets:
        if v is None:
            lines.append(f"| {label} | not measured | {'≥' if unit == '%' else '≤'} {t} {unit} | - |")
            continue
        lines.append(f"| {label} | {v:.1f} {unit} | {'≥' if unit == '%' else '≤'} {t} {unit} | {'yes' if ok(v, t) else 'no'} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--configs",
                    default="bare,full,full-filters,full-separate-modules,audit-emit,auth-key-swap,quota,route-select,"
                            "embeddings,models,responses,messages,cache-hit,guardrails-1k,guardrails-64k,full-fleet,fleet-refill,fastest,shadow,shadow-100")
    ap.add_argument("--out", default=str(ROOT / "bench"))
    ap.add_argument("--gateway-config", metavar="CONFIG",
                    help="print the `gateway` filter's configuration of that row (e.g. full) and exit: "
                         "the input of filters/core/examples/call_cost.rs")
    args = ap.parse_args()
    if args.gateway_config:
        with tempfile.TemporaryDirectory(prefix="aigw-bench-") as tmp:
            cfg, _, _, _ = make_config(args.gateway_config, free_port(), free_port(), free_port(), Path(tmp))
        listener = [f for f in gateway_filters(cfg) if f["name"] == "aigw.gateway"]
        if not listener:
            sys.exit(f"bench: {args.gateway_config} has no gateway filter")
        print(listener[0]["typed_config"]["config"]["configuration"]["value"])
        return
    names = args.configs.split(",")
    if names[0] != "bare":
        names.insert(0, "bare")
    if "full" not in names:
        names.insert(1, "full")
    if any(n.startswith("floor") for n in names):
        global FLOOR_MODULES
        FLOOR_MODULES = floor_modules()
    with tempfile.TemporaryDirectory(prefix="aigw-bench-") as tmp:
        work = Path(tmp)
        nginx, nginx_port = start_nginx(work)
        fakes, fake_port = start_fakes()
        fleet_procs = []
        if any("fleet" in n for n in names):
            global FLEET_PORT
            fleet_procs, FLEET_PORT = start_fleet(work)
        results = {n: [] for n in names}
        events = {k: stream_events(fake_port, v) for k, v in STREAM_PIECES.items()}
        stream = {"events": events, "times": {f"{n}-{k}": [] for k in STREAM_PIECES for n in ("bare", "full")}}
        try:
            for rep in range(args.reps):
                for n in names:
                    print(f"[{rep + 1}/{args.reps}] {n}", file=sys.stderr, flush=True)
                    results[n].append(measure(n, work, nginx_port, args.seconds))
                for k, pieces in STREAM_PIECES.items():
                    for n in ("bare", "full"):
                        stream["times"][f"{n}-{k}"].append(measure_stream(n, work, fake_port, args.seconds, pieces))
        finally:
            nginx.terminate()
            fakes.terminate()
            for p in fleet_procs:
                p.terminate()
        table = report(results, stream, args.reps, args.seconds)
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    (out / f"results-{stamp}.md").write_text(table)
    (out / "latest.md").write_text(table)
    (out / f"raw-{stamp}.json").write_text(json.dumps({"results": results, "stream": stream}, indent=1))
    print(table)
    print(f"written to {out / 'latest.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
