"""A Wasm VM that traps is replaced, and the gateway serves again (failure_policy: FAIL_RELOAD).

The trap is real: a test-only filter of the module (root id `aigw_test_trap`, which no gateway
configuration names) executes `unreachable` when a request carries `x-aigw-test-trap`, in the
same VM as the gateway's filters. Shared data lives in Envoy, not in the VM, so quota state
survives the reload.
"""

import json
import re
import time

import httpx
from conftest import DEMO_KEYS, add_test_filter, clients_on_both_workers, worker_stats
from test_quota import quota_config


def add_trap_filter(text):
    return add_test_filter(
        text, "test.trap", "aigw_test_trap",
        "failure_policy: FAIL_RELOAD\nreload_config: {backoff: {base_interval: 0.1s, max_interval: 5s}}")


def call(client):
    return client.post("/v1/chat/completions", timeout=10,
                       json={"model": "chat", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]},
                       headers={"authorization": f"Bearer {DEMO_KEYS['acme']}"})


def test_a_trapped_vm_is_replaced_and_quota_state_survives(fresh_gateway_factory):
    gw = fresh_gateway_factory(
        template_edit=add_trap_filter,
        values={"QUOTA_CONFIG": quota_config({"acme": {"requests_per_minute": 1, "requests_burst": 1000}})})
    with httpx.Client(base_url=gw.url) as client:
        for _ in range(5):
            assert call(client).status_code == 200
        before = int(call(client).headers["x-ratelimit-remaining-requests"])
    assert before == 1000 - 6

    with clients_on_both_workers(gw) as clients:
        # Trap the VM on both workers: one connection on each.
        trapped = time.monotonic()
        for c in clients:
            try:
                c.post("/v1/chat/completions", timeout=5, content=b"{}", headers={"x-aigw-test-trap": "1"})
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
        traps = re.findall(r"\]\[(\d+)\]\[error\]\[wasm\].*Uncaught RuntimeError: unreachable",
                           gw.envoy_log.read_text())
        assert len(set(traps)) == 2, f"the VM did not trap on both workers: {traps}"

        # On each worker, calls fail until its VM is replaced, then every one is served again. (A
        # connection Envoy closes is opened again on the same worker: the other client holds one
        # on the other worker, and the listener balances exactly.)
        between, first_ok = 0, None
        for c in clients:
            streak, deadline = 0, time.monotonic() + 30
            while streak < 20 and time.monotonic() < deadline:
                try:
                    ok = call(c).status_code == 200
                except httpx.HTTPError:
                    ok = False
                between += 1
                if ok:
                    streak += 1
                    first_ok = first_ok or time.monotonic()
                else:
                    streak = 0
                    time.sleep(0.05)
            assert streak == 20, "the gateway did not recover from a trapped VM"
        print(f"served again {first_ok - trapped:.2f} s after the trap; {between} calls in between")
        for i in range(100):
            r = call(clients[i % 2])
            assert r.status_code == 200, r.text
            assert json.loads(r.text)["choices"][0]["message"]["content"] == "Echo: hi"
        per = worker_stats(gw, "downstream_cx_active")
        assert sorted(per.values()) == [1, 1], f"the two clients are not one on each worker: {per}"

        # The request bucket was not reset by the reload: it lives in Envoy's shared data.
        after = int(call(clients[0]).headers["x-ratelimit-remaining-requests"])
    assert before - 1 - between - 100 <= after < before - 100, (before, between, after)


def quota_upstream_first(text):
    """The design card's per-attempt quota filter moved before the route filter in the chains'
    upstream filters: where Envoy 1.40 calls a retried attempt's callbacks for a context that
    has ended (envoy.yaml keeps it second for that reason)."""
    start = text.index("        # Per-provider buckets, charged per attempt.")
    end = text.index("        - name: aigw.auth_key_swap_upstream")
    block = text[start:end]
    text = text[:start] + text[end:]
    at = text.index("        - name: aigw.route_select_upstream")
    text = text[:at] + block + text[at:]
    assert text.index("- name: aigw.quota_upstream") < text.index("- name: aigw.route_select_upstream")
    return text


def test_a_callback_for_a_context_that_has_ended_does_not_trap_the_vm(fresh_gateway_factory):
    """The modules' own entry points (filters/host/src/dispatch.rs) answer a callback for a
    context they do not have as a filter that does nothing would. The SDK's dispatcher
    panicked there ("invalid context_id"), trapping the VM, so every later call on that worker
    failed until Envoy replaced it. Retried attempts through a chain whose first upstream
    filter meets that order of callbacks are served, and the VM never fails."""
    gw = fresh_gateway_factory(template_edit=quota_upstream_first, values={"LAYOUT": "filters"})
    fault = {"x-fake-fault": "anthropic=503"}
    for i in range(20):
        r = gw.chat(f"retried {i}", max_tokens=20, headers=fault)
        assert r.status_code == 200 and r.headers["x-aigw-provider"] == "openai", r.text
        assert r.headers["x-aigw-attempts"] == "2", r.headers
    for i in range(10):
        assert gw.chat(f"after {i}", max_tokens=20).status_code == 200
    log = gw.envoy_log.read_text()
    assert "panicked" not in log and "invalid context_id" not in log, log[-2000:]
    stats = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats", timeout=5).text
    failed = [line for line in stats.splitlines() if re.search(r"wasm.*(vm_failed|was_failed|failed_vm)", line)]
    assert all(line.rstrip().endswith(": 0") for line in failed), failed
