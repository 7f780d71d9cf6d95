"""Harness: the real Envoy with the real .wasm filters, in front of the fake providers.

Each gateway gets free ports, its own access log and its own Envoy base id, so test modules
(and pytest-xdist workers) run in parallel. scripts/test builds the .wasm files and the fake
providers before pytest starts.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import render_envoy  # noqa: E402

ENVOY = Path(os.environ.get("AIGW_ENVOY", ROOT / ".venv" / "bin" / "envoy"))
FAKES = ROOT / "target" / "release" / "fake-providers"
PROVIDER_KEYS = {"openai": "sk-fake-openai-test-1f2e3d", "anthropic": "sk-ant-fake-test-9a8b7c",
                 "azure": "azure-fake-key-3c4d5e6f", "gemini": "AIzaFakeGeminiKey-7a8b9c",
                 "bedrock": "AKIDFAKEGATEWAY01:wJalrFakeSecretKey/EXAMPLE0123"}
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY = PROVIDER_KEYS["bedrock"].split(":")
# What Envoy's environment holds (the filters read provider credentials from it).
PROVIDER_ENV = {"OPENAI_API_KEY": PROVIDER_KEYS["openai"], "ANTHROPIC_API_KEY": PROVIDER_KEYS["anthropic"],
                "AZURE_OPENAI_API_KEY": PROVIDER_KEYS["azure"], "GEMINI_API_KEY": PROVIDER_KEYS["gemini"],
                "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
                "AIGW_CACHE_EMBED_KEY": "aigw-demo-key-cache", "AIGW_SHADOW_KEY": "aigw-demo-key-shadow"}
PROVIDERS = ("openai", "anthropic", "azure", "gemini", "bedrock")
DEMO_KEYS = {"acme": "aigw-demo-key-acme", "tiny": "aigw-demo-key-tiny", "beta": "aigw-demo-key-beta"}
PRICE_BOOK = json.loads((ROOT / "envoy" / "price-book.json").read_text())


def no_ejection(text):
    assert "enforcing_consecutive_5xx: 100" in text
    return text.replace("enforcing_consecutive_5xx: 100", "enforcing_consecutive_5xx: 0")


def _ports():
    """Ports for the test servers, below the kernel's ephemeral range (32768 up), a block of
    4,000 per xdist worker, handed out in turn. A port the kernel picked (bind to 0) could be
    handed again to an outgoing connection, or to the other worker, before the server bound it:
    a CI run once failed on "Address already in use"."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(worker[2:]) if worker[2:].isdigit() else 0
    lo = 20000 + (n % 3) * 4000
    start = os.getpid() % 4000
    for i in range(1_000_000):
        yield lo + (start + i) % 4000


_PORTS = _ports()


def free_port():
    for port in _PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Gateway:
    def __init__(self, workdir: Path, template_edit=None, modules="one", values=None, eject=False):
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.procs = []
        self.access_log = workdir / "audit.log"
        self.envoy_log = workdir / "envoy.log"
        self.fakes = {}
        self._start_fakes()
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ecds_dir = workdir / "ecds"
        self.template_edit = template_edit
        self.values = {
            "LISTEN_PORT": self.port,
            "ADMIN_PORT": self.admin_port,
            **{f"{name.upper()}_PORT": self.fakes[name].rsplit(":", 1)[1] for name in PROVIDERS},
            "ACCESS_LOG": self.access_log,
            "MODULES": modules,
            **(values or {}),
        }
        # As scripts/run does: every filter's configuration in an ECDS file of its own.
        text = balance_exactly(render_envoy.render(self.values))
        if not eject:
            # Outlier detection still runs, but ejects nothing: the suite injects provider
            # failures on purpose, and an ejection would leak from one test into the next.
            # test_health.py runs the shipped ejection.
            text = no_ejection(text)
        if template_edit:
            text = template_edit(text)
        text, files = render_envoy.to_ecds(text, str(self.ecds_dir))
        render_envoy.write_ecds(str(self.ecds_dir), files)
        self.config = workdir / "envoy.yaml"
        self.config.write_text(text)
        self.client = httpx.Client(base_url=self.url, timeout=20)
        # gateway: the two gateway filters (the default); filters: one filter per stage.
        self.layout = "filters" if modules == "separate" else self.values.get("LAYOUT", "gateway")

    def filter_name(self, filt):
        """The Envoy filter (and ECDS resource) that runs a design-card filter's stage here."""
        if self.layout == "gateway":
            return "aigw.gateway_upstream" if filt.endswith("_upstream") else "aigw.gateway"
        return f"aigw.{filt}"

    def config_error(self, filt, stage, path):
        """The log line's start for an invalid configuration at `path` of a stage."""
        if self.layout == "gateway":
            return f"gateway: invalid configuration at `{stage}.{path}`"
        return f"{filt}: invalid configuration at `{path}`"

    def _start_fakes(self):
        args = [str(FAKES)]
        for name in PROVIDERS:
            args += ["--listen", f"{name}=127.0.0.1:0", "--key", f"{name}={PROVIDER_KEYS[name]}"]
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(p)
        for line in p.stdout:
            line = line.strip()
            if line == "ready":
                break
            name, addr = line.split()
            self.fakes[name] = f"http://{addr}"
        assert set(self.fakes) == set(PROVIDERS), f"fake providers did not start: {self.fakes}"

    def start_envoy(self, wait=True, extra_env=None):
        env = dict(os.environ, **PROVIDER_ENV)
        env.update(extra_env or {})
        self.envoy = subprocess.Popen(
            [str(ENVOY), "-c", str(self.config), "--concurrency", "2", "--use-dynamic-base-id",
             "--file-flush-interval-msec", "50", "-l", "warning"],
            stdout=open(self.envoy_log, "w"), stderr=subprocess.STDOUT, env=env,
        )
        self.procs.append(self.envoy)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.envoy.poll() is not None:
                raise RuntimeError(f"Envoy exited ({self.envoy.returncode}):\n{self.envoy_log.read_text()[-3000:]}")
            try:
                if "LIVE" in httpx.get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1).text:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("Envoy did not become ready:\n" + self.envoy_log.read_text()[-3000:])

    def reloads(self):
        """How many ECDS updates each gateway filter has taken."""
        stats = httpx.get(f"http://127.0.0.1:{self.admin_port}/stats?filter=extension_config_discovery",
                          timeout=5).text
        out = {}
        for line in stats.splitlines():
            name, _, value = line.partition(": ")
            if name.endswith(".config_reload"):
                out[name.split("extension_config_discovery.")[1].rsplit(".config_reload", 1)[0]] = int(value)
        return out

    def push(self, template_edit=None, **values):
        """Pushes new filter configuration, as a control plane would (no restart), and waits
        until every filter whose configuration changed has taken it."""
        self.values.update(values)
        text = balance_exactly(render_envoy.render(self.values))
        for edit in (self.template_edit, template_edit):
            if edit:
                text = edit(text)
        _, files = render_envoy.to_ecds(text, str(self.ecds_dir))
        changed = [n for n, body in files.items() if (self.ecds_dir / n).read_text() != body]
        before = self.reloads()
        render_envoy.write_ecds(str(self.ecds_dir), {n: files[n] for n in changed})
        want = [n.removesuffix(".json") for n in changed]
        deadline = time.time() + 10
        while time.time() < deadline:
            now = self.reloads()
            if all(any(k.endswith(w) and now[k] > before.get(k, 0) for k in now) for w in want):
                return want
            time.sleep(0.05)
        raise AssertionError(f"Envoy did not take the pushed configuration of {want}: {self.reloads()}")

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    # -- calling the gateway ------------------------------------------------------------------

    def chat(self, content, model="chat", key=DEMO_KEYS["acme"], headers=None, **body):
        h = {"authorization": f"Bearer {key}"} if key else {}
        h.update(headers or {})
        payload = {"model": model, "messages": [{"role": "user", "content": content}], **body}
        return self.client.post("/v1/chat/completions", json=payload, headers=h)

    # -- what the providers saw ---------------------------------------------------------------

    def provider_requests(self, name, containing=None):
        reqs = httpx.get(f"{self.fakes[name]}/__fake/requests", timeout=5).json()
        if containing is not None:
            reqs = [r for r in reqs if containing in r["body"]]
        return reqs

    # -- audit records ------------------------------------------------------------------------

    def audit_lines(self):
        return access_log_records(self.access_log)

    def audit(self, request_id, timeout=5):
        """The audit records of one call (waits for the access log to be flushed)."""
        deadline = time.time() + timeout
        while True:
            found = [r for r in self.audit_lines() if r.get("request_id") == request_id]
            if found or time.time() > deadline:
                return found
            time.sleep(0.05)


def access_log_records(path):
    """The access log's whole records. Envoy flushes the log while a test reads it, so the last
    line can be half written (a CI run once failed on one): only lines ending in a newline count."""
    if not path.exists():
        return []
    *whole, _unfinished = path.read_bytes().split(b"\n")
    return [json.loads(line) for line in whole if line.startswith(b"{")]


def balance_exactly(text):
    """A template edit every test gateway gets: its listener balances connections exactly (a new
    connection goes to the worker with the fewest open ones), so a test can put a connection on
    each worker whatever the kernel does with SO_REUSEPORT (`clients_on_both_workers`). A kernel
    once sent every connection of a run to one worker, and the tests that need both failed."""
    marker = "    per_connection_buffer_limit_bytes: 8388608\n"
    assert marker in text
    return text.replace(marker, marker + "    connection_balance_config: {exact_balance: {}}\n", 1)


def worker_stats(gw, stat):
    """One listener statistic per worker: {"0": n, "1": m}."""
    stats = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats?filter={stat}$", timeout=5).text
    per = {}
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if f"listener.127.0.0.1_{gw.port}.worker_" in name:
            per[name.split(".worker_")[1].split(".")[0]] = int(value)
    return per


def assert_both_workers_used(gw):
    per = worker_stats(gw, "downstream_cx_total")
    assert len(per) == 2 and all(v > 0 for v in per.values()), per


@contextmanager
def clients_on_both_workers(gw):
    """Two keep-alive clients whose connections are open at once, on different workers.

    Clients are opened one at a time and each is kept open, so the listener's exact balance
    puts the next one on the worker with fewer connections; the statistics say where each
    landed. The request that opens a connection has no key: the gateway refuses it before any
    bucket is charged."""
    opened, on = [], {}
    try:
        for _ in range(6):
            before = worker_stats(gw, "downstream_cx_total")
            c = httpx.Client(base_url=gw.url, timeout=20)
            opened.append(c)
            assert c.get("/v1/models").status_code == 401
            after = worker_stats(gw, "downstream_cx_total")
            landed = [w for w in after if after[w] > before.get(w, 0)]
            assert len(landed) == 1, (before, after)
            on.setdefault(landed[0], c)
            if len(on) == 2:
                break
        assert len(on) == 2, f"no connection landed on a second worker: {worker_stats(gw, 'downstream_cx_total')}"
        yield [on[w] for w in sorted(on)]
    finally:
        for c in opened:
            c.close()


def add_test_filter(text, name, root_id, extra=""):
    """A template edit: a test-only filter of the module (`root_id`, which no gateway
    configuration names) first on the listener, in the gateway's VM; `extra` adds config lines."""
    vm = re.search(r"vm_config: \{vm_id: aigw, .*?\n.*?\}\}\n", text, re.S).group(0)
    lines = (
        f"          - name: {name}\n"
        "            typed_config:\n"
        '              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm\n'
        "              config:\n"
        f"                name: {root_id}\n"
        f"                root_id: {root_id}\n"
        + "".join(f"                {x}\n" for x in extra.splitlines() if x)
        + f"                {vm.strip()}\n"
    )
    marker = "          - name: aigw.audit_emit\n"  # first: it sees every request
    assert marker in text
    return text.replace(marker, lines + marker, 1)


def expected_cost(model, tokens):
    """Hand-computed cost in USD, from the price book file, with exact decimals."""
    p = PRICE_BOOK["models"][model]
    per = Decimal(1_000_000)
    cached, written = tokens["cached_input"], tokens.get("cache_write", 0)
    hour = tokens.get("cache_write_1h", 0)
    write = p.get("cache_write", p["input"])
    return (
        (tokens["input"] - cached - written) * Decimal(p["input"]) / per
        + cached * Decimal(p.get("cached_input", p["input"])) / per
        + (written - hour) * Decimal(write) / per
        + hour * Decimal(p.get("cache_write_1h", write)) / per
        + (tokens["output"] - tokens["reasoning"]) * Decimal(p["output"]) / per
        + tokens["reasoning"] * Decimal(p.get("reasoning", p["output"])) / per
    )


@pytest.fixture(scope="module", params=["gateway", "separate-modules"])
def gateway(request, tmp_path_factory):
    """The gateway as two filters (`gateway` on the listener, `gateway_upstream` per attempt,
    from the one module: the default layout), and again as the design card's separate filters,
    one module each: both layouts must behave the same."""
    gw = Gateway(tmp_path_factory.mktemp("gw"), modules="separate" if request.param == "separate-modules" else "one")
    try:
        gw.start_envoy()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def fresh_gateway_factory(tmp_path):
    made = []

    def make(template_edit=None, wait=True, extra_env=None, values=None, modules="one"):
        gw = Gateway(tmp_path / f"gw{len(made)}", template_edit, values=values, modules=modules)
        made.append(gw)
        return gw.start_envoy(wait=wait, extra_env=extra_env)

    yield make
    for gw in made:
        gw.stop()
