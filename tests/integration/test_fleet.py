"""Fleet mode against real servers: a real Redis (password-protected, the gateway's function
library loaded), a real Webdis in front of it (its ACL allows only FCALL, behind HTTP basic auth),
and three Envoy replicas of one configuration on loopback. Calls are spread across the replicas:
the fleet admits exactly its limit, never more, and serves as configured when Redis cannot be
reached."""

import json
import math
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from decimal import Decimal
import pytest
from conftest import DEMO_KEYS, ROOT, Gateway, free_port

REDIS_PASSWORD = "fleet-redis-secret"
WEBDIS_AUTH = "aigw:fleet-webdis-secret"
# Tenant `tiny`: 30 calls, and one more a minute; leases of 4 calls.
TINY = '"tiny":{"requests_per_minute":3,'
TINY_FLEET = '"tiny":{"requests_per_minute":1,"requests_burst":30,'


def wait_port(port, timeout=10):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Fleet:
    """A Redis, a Webdis and the gateway replicas sharing them."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.procs = []
        self.redis_port, self.webdis_port = free_port(), free_port()
        self.start_redis()
        conf = {"redis_host": "127.0.0.1", "redis_port": self.redis_port, "redis_auth": REDIS_PASSWORD,
                "http_host": "127.0.0.1", "http_port": self.webdis_port, "threads": 2, "pool_size": 8,
                "daemonize": False, "database": 0, "verbosity": 3, "logfile": str(workdir / "webdis.log"),
                "acl": [{"disabled": ["*"]}, {"http_basic_auth": WEBDIS_AUTH, "enabled": ["FCALL"]}]}
        (workdir / "webdis.json").write_text(json.dumps(conf))
        self.webdis = subprocess.Popen(["webdis", str(workdir / "webdis.json")], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.STDOUT)
        self.procs.append(self.webdis)
        wait_port(self.webdis_port)
        self.replicas = []

    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--requirepass", REDIS_PASSWORD,
             # Persisted (every write), as a fleet's Redis must be: a restart forgets nothing.
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=open(self.dir / "redis.log", "a"), stderr=subprocess.STDOUT)
        wait_port(self.redis_port)
        lua = (ROOT / "deploy" / "redis" / "aigw.lua").read_text()
        subprocess.run(self.cli("FUNCTION", "LOAD", "REPLACE", lua), check=True, capture_output=True)

    def wait_webdis(self, timeout=10):
        """Until Webdis answers an FCALL (it reconnects to a restarted Redis on first use)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{self.webdis_port}/FCALL/aigw_marks_get/1/probe:bad/0",
                              auth=tuple(WEBDIS_AUTH.split(":", 1)), timeout=2)
                if r.status_code == 200 and isinstance(r.json().get("FCALL"), list):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("Webdis does not answer")

    def cli(self, *args):
        return ["redis-cli", "-p", str(self.redis_port), "-a", REDIS_PASSWORD, "--no-auth-warning", *args]

    def hget(self, key, field, timeout=10):
        """A hash field once Redis answers (it is loading its log right after a start)."""
        deadline = time.time() + timeout
        while True:
            out = subprocess.run(self.cli("HGET", key, field), capture_output=True, text=True).stdout.strip()
            if not out.startswith("LOADING") or time.time() > deadline:
                return out
            time.sleep(0.05)

    def stop_redis(self):
        self.redis.terminate()
        self.redis.wait(timeout=10)

    def replica(self, fleet, auth=WEBDIS_AUTH, name=None, edit=None, modules="one"):
        n = len(self.replicas)
        values = {"FLEET_PORT": self.webdis_port, "QUOTA_FLEET": json.dumps(fleet)}
        gw = Gateway(self.dir / (name or f"replica{n}"),
                     lambda t: (edit or (lambda x: x))(t.replace(TINY, TINY_FLEET)), values=values, modules=modules)
        gw.start_envoy(extra_env={"AIGW_FLEET_AUTH": auth})
        self.replicas.append(gw)
        return gw

    def stop(self):
        for gw in self.replicas:
            gw.stop()
        for p in [*self.procs, self.redis]:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if not shutil.which("redis-server") or not shutil.which("webdis"):
        pytest.fail("redis-server and webdis are needed (scripts/test installs them)")
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    try:
        yield f
    finally:
        f.stop()


FLEET = {"cluster": "aigw_fleet", "lease": {"requests": 4, "tokens": 20000}, "expected_replicas": 3,
         "unavailable": "local", "timeout_ms": 1000}


def call(gw, key="tiny"):
    return gw.chat("fleet", key=DEMO_KEYS[key], max_tokens=5)


def test_the_fleet_admits_exactly_its_limit_across_three_replicas(fleet):
    replicas = [fleet.replica(FLEET) for _ in range(3)]
    started = time.time()
    # 60 calls at once, spread round robin over the replicas (a limit of 30).
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(lambda i: call(replicas[i % 3]).status_code, range(60)))
    assert set(codes) <= {200, 429}, codes
    flood = codes.count(200)
    # Then each replica alone until it refuses: whatever lease it still held is spent.
    drained = 0
    for gw in replicas:
        while call(gw).status_code == 200:
            drained += 1
            assert drained < 40
    refill = int((time.time() - started) / 60) + 1
    total = flood + drained
    assert 30 <= total <= 30 + refill, (flood, drained)
    # While leases were held, fewer were admitted, never more: at most the leases left unspent.
    assert flood >= 30 - 2 * (4 - 1) - 1, flood
    # Every replica served some: the limit is the fleet's, not one replica's.
    time.sleep(0.2)
    for gw in replicas:
        assert any(line for line in gw.audit_lines() if line.get("tenant") == "tiny" and line.get("status") == 200)
    refused = call(replicas[0])
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "tenant_requests_per_minute"
    assert int(refused.headers["retry-after"]) >= 1
    # Redis holds the fleet's bucket under the gateway's prefix.
    keys = subprocess.run(fleet.cli("KEYS", "aigw:*"), capture_output=True, text=True).stdout.split()
    assert "aigw:t.tiny:r" in keys


def test_a_quiet_tenant_keeps_its_share_while_another_floods_one_replica(fleet):
    a, b = fleet.replicas[:2] if len(fleet.replicas) >= 2 else [fleet.replica(FLEET) for _ in range(2)]
    # `tiny` is spent (the test before); `beta` (600 a minute) is served on both replicas.
    with ThreadPoolExecutor(8) as pool:
        flood = list(pool.map(lambda _: call(a).status_code, range(40)))
    assert set(flood) == {429}
    assert all(call(gw, key="beta").status_code == 200 for gw in (a, b) for _ in range(5))


def test_webdis_refusing_the_credential_is_unavailable_never_a_grant(fleet):
    closed = fleet.replica({**FLEET, "unavailable": "closed", "prefix": "closedtest"}, auth="aigw:wrong", name="closed")
    r = call(closed, key="beta")
    assert r.status_code == 503 and r.json()["error"]["code"] == "quota_unavailable", r.text
    assert int(r.headers["retry-after"]) >= 1
    rec = closed.audit(r.headers["x-aigw-request-id"])[0]
    assert "fleet_unavailable:closed" in json.dumps(rec), rec
    assert "closedtest" not in subprocess.run(fleet.cli("KEYS", "*"), capture_output=True, text=True).stdout


def test_redis_stopped_serves_each_replica_its_local_share_and_a_restart_counts_nothing_twice(fleet):
    # (Its lease is not given back while it idles during the test. Its ticker sizes the lease to
    # one tick of the rate it sees: with the default 2 s of headroom, 5 calls spread over ticks on
    # a loaded machine could grow it to this replica's share, 10.)
    gw = fleet.replica({**FLEET, "prefix": "down", "retry_ms": 500, "idle_return_ms": 600000, "tick_ms": 200,
                        "headroom_ms": 200}, name="down")
    closed = fleet.replica({**FLEET, "prefix": "downc", "unavailable": "closed"}, name="down-closed")
    opened = fleet.replica({**FLEET, "prefix": "downo", "unavailable": "open"}, name="down-open")
    # 5 calls through the fleet: leases of 4 taken from Redis by the calls, and topped up by the
    # ticker when the lease is down to 1 (a call's top-up and the ticker's can both be in flight,
    # so the replica may hold up to 7 when Redis stops). The ticker's last top-up lands before
    # Redis stops.
    assert [call(gw).status_code for _ in range(5)] == [200] * 5
    time.sleep(0.6)
    fleet.stop_redis()
    try:
        # `closed`: refused, 503 with Retry-After; `open`: admitted past the fleet limit (30).
        r = call(closed)
        assert r.status_code == 503 and r.json()["error"]["code"] == "quota_unavailable" and "retry-after" in r.headers
        assert [call(opened).status_code for _ in range(35)] == [200] * 35
        rec = opened.audit(call(opened).headers["x-aigw-request-id"])[0]
        assert "fleet_unavailable:open" in rec["flags"], rec
        stats = fleet_stats(opened)
        assert stats.get("wasmcustom.aigw_fleet_unavailable_total.mode.open", 0) >= 35, stats
        # `local`: this replica serves from its leases while they last (with no call to Redis),
        # then `tiny`'s 30 / 3 = 10 calls on buckets of its own. A scope is served from its leases
        # only while each of them holds enough, and a replica holds calls-in-flight slots only
        # while it has calls (its ticker gives them back when it idles): the first call may lack
        # a slot, and the requests the lease still holds are then spent after the restart. (The
        # flag is set as soon as the call's tenant or its provider is served locally.)
        rs = [call(gw) for _ in range(20)]
        codes = [r.status_code for r in rs]
        served_down = codes.count(200)
        assert set(codes) == {200, 429} and codes == [200] * served_down + [429] * (20 - served_down), codes
        local = ["fleet_unavailable:local" in gw.audit(r.headers["x-aigw-request-id"])[0]["flags"] for r in rs]
        assert local[served_down - 1] and local == sorted(local), local
        from_lease = served_down - 10
        assert "fleet store unavailable" in gw.envoy_log.read_text()
    finally:
        fleet.start_redis()
    # What Redis held when it stopped (persisted, as last written) says what the replica leased:
    # 30 calls less what is left (Redis's bucket refills one call a minute, so less than one
    # call's worth since its first take), less the 5 calls served before the stop.
    level = fleet.hget("down:t.tiny:r", "u")
    held = math.ceil(30 - float(level) / 60000 - 1e-9) - 5
    assert 0 <= from_lease <= held <= 10, (level, codes)
    # Webdis reconnects to the restarted Redis when it is next used: until it answers, a call's
    # top-up fails and the replica stays in `local` mode another retry_ms.
    fleet.wait_webdis()
    time.sleep(0.6)
    # The fleet serves only what is left of its 30 after the first 5 calls, never the 30 again:
    # what Redis held, and what the replica's lease still holds.
    started = time.time()
    after = 0
    while (r := call(gw)).status_code == 200:
        after += 1
        assert after < 40
    refill = int((time.time() - started) / 60) + 1
    assert 25 <= after + from_lease <= 25 + refill, (after, from_lease, held, r.status_code, r.text[:300])


def fleet_stats(gw):
    text = httpx.get(f"http://127.0.0.1:{gw.admin_port}/stats?filter=aigw_fleet", timeout=5).text
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        out[name.strip()] = int(value) if value.strip().isdigit() else value
    return out


def test_in_the_steady_state_the_ticker_keeps_leases_ahead_and_calls_never_wait(fleet):
    gw = fleet.replica({**FLEET, "prefix": "steady", "tick_ms": 50, "headroom_ms": 500,
                        "lease": {"requests": 2, "tokens": 20000}}, name="steady")
    # Calls at a steady pace (2 to 4 a tick). While the ticker learns the rate, a few calls top
    # their lease up themselves; then the ticker keeps it ahead of them and no call waits.
    # The ticker takes 500 ms of the rate it sees once the lease is under half of that: the 80
    # steady calls (over 1.5 s) spend several such leases whatever the machine's pace. (With the
    # default 2 s of headroom one lease could cover them all, so the ticker need not top up.)
    def pace(n):
        codes = []
        for _ in range(n):
            codes.append(call(gw, key="beta").status_code)
            time.sleep(0.012)
        assert set(codes) == {200}
        s = fleet_stats(gw)
        return (s.get("wasmcustom.aigw_fleet_top_ups_total.by.call", 0),
                s.get("wasmcustom.aigw_fleet_top_ups_total.by.ticker", 0))

    learned = pace(40)
    steady = pace(80)
    assert steady[1] >= learned[1] + 1, (learned, steady)  # the ticker topped up meanwhile
    assert steady[0] <= learned[0] + 1, (learned, steady)  # calls hardly ever waited
    level = subprocess.run(fleet.cli("HGET", "steady:t.beta:r", "u"), capture_output=True, text=True).stdout.strip()
    assert level and int(float(level)) < 600 * 60000, "the fleet's bucket was drawn from"


def test_an_idle_replica_gives_its_unspent_lease_back_to_the_fleet(fleet):
    gw = fleet.replica({**FLEET, "prefix": "give", "tick_ms": 50, "idle_return_ms": 1500}, name="give")
    units = lambda: float(subprocess.run(fleet.cli("HGET", "give:t.tiny:r", "u"),  # noqa: E731
                                         capture_output=True, text=True).stdout.strip() or "nan")
    assert [call(gw).status_code for _ in range(3)] == [200] * 3
    # The replica holds a lease (`tiny`: 30, one more a minute; leases of 4, which its ticker
    # may have topped up): Redis has 26 at most.
    assert units() / 60000 <= 26.1, units() / 60000
    # Idle past idle_return_ms: the ticker gives the one call it did not spend back (aigw_give).
    deadline = time.time() + 15
    level = units() / 60000
    while not level >= 26.9 and time.time() < deadline:  # (nan: a read that failed; read again)
        time.sleep(0.1)
        level = units() / 60000
    assert 26.9 <= level < 28, level


def test_a_replica_killed_mid_run_never_lets_its_lease_be_spent_twice(fleet):
    conf = {**FLEET, "prefix": "kill"}
    replicas = [fleet.replica(conf, name=f"kill{i}") for i in range(3)]
    started = time.time()
    admitted = 0
    for i in range(12):
        admitted += call(replicas[i % 3]).status_code == 200
    # One replica dies with whatever lease it held.
    replicas[2].envoy.kill()
    replicas[2].envoy.wait(timeout=10)
    for gw in replicas[:2]:
        while call(gw).status_code == 200:
            admitted += 1
            assert admitted < 60
    refill = int((time.time() - started) / 60) + 1
    # Never more than the limit; less by at most what the dead replica held (its lease is at
    # most burst / expected_replicas = 10).
    assert 30 - 10 <= admitted <= 30 + refill, admitted


def test_the_fleet_admits_tokens_exactly_once_calls_are_settled_to_their_usage(fleet):
    """`tiny`'s 100,000 tokens: each call reserves its estimate from its replica's lease and is
    settled to what the provider reported; the tokens billed fleet-wide stay within the limit,
    and short of it by less than one call's estimate per replica."""
    conf = {**FLEET, "prefix": "tok", "lease": {"requests": 4, "tokens": 3000}}
    edit = lambda t: t.replace(TINY, '"tiny":{"requests_per_minute":1000,"tokens_per_minute":1,"tokens_burst":100000,')
    replicas = []
    for i in range(3):
        values = {"FLEET_PORT": fleet.webdis_port, "QUOTA_FLEET": json.dumps(conf)}
        gw = Gateway(fleet.dir / f"tok{i}", edit, values=values)
        gw.start_envoy(extra_env={"AIGW_FLEET_AUTH": WEBDIS_AUTH})
        fleet.replicas.append(gw)
        replicas.append(gw)
    prompt = " ".join(["word"] * 1000)

    def one(i):
        r = replicas[i % 3].chat(prompt, key=DEMO_KEYS["tiny"], max_tokens=100)
        return r.status_code, r.headers.get("x-aigw-request-id"), r.text

    with ThreadPoolExecutor(9) as pool:
        results = [(s, rid) for s, rid, text in pool.map(one, range(150)) if s in (200, 429) or print(s, text)]
    assert len(results) == 150
    for gw in replicas:  # each drained until it refuses
        while True:
            r = gw.chat(prompt, key=DEMO_KEYS["tiny"], max_tokens=100)
            if r.status_code != 200:
                assert r.json()["error"]["code"] == "tenant_tokens_per_minute", r.text
                break
            results.append((200, r.headers["x-aigw-request-id"]))
    time.sleep(0.3)
    billed = 0
    records = {rec["request_id"]: rec for gw in replicas for rec in gw.audit_lines()}
    for status, rid in results:
        if status == 200:
            t = records[rid]["tokens"]
            billed += t["input"] + t["output"]
    per_call = billed / sum(1 for s, _ in results if s == 200)
    assert billed <= 100_000 + 2, billed  # + the refill over the test (1 a minute)
    estimate = 1000 + 4 + 100 + 300  # at most: the prompt's estimate is at most 1.3 x its words here
    assert billed >= 100_000 - 4 * estimate, (billed, per_call)


def test_a_usd_budget_holds_across_replicas(fleet):
    """`tiny`'s daily budget, USD 0.05, leased in pico-USD from Redis: what the admitted calls
    cost (their audit records) stays within it fleet-wide."""
    conf = {**FLEET, "prefix": "usd", "lease": {"requests": 4, "tokens": 20000, "usd": "0.01"}}
    edit = lambda t: t.replace(TINY, '"tiny":{"requests_per_minute":1000,').replace('"daily_usd":"1.00"', '"daily_usd":"0.05"')
    replicas = []
    for i in range(3):
        values = {"FLEET_PORT": fleet.webdis_port, "QUOTA_FLEET": json.dumps(conf)}
        gw = Gateway(fleet.dir / f"usd{i}", edit, values=values)
        gw.start_envoy(extra_env={"AIGW_FLEET_AUTH": WEBDIS_AUTH})
        fleet.replicas.append(gw)
        replicas.append(gw)
    prompt = " ".join(["word"] * 1000)

    def one(i):
        r = replicas[i % 3].chat(prompt, key=DEMO_KEYS["tiny"], max_tokens=100)
        return r.status_code, r.headers.get("x-aigw-request-id"), r.text

    with ThreadPoolExecutor(9) as pool:
        results = list(pool.map(one, range(120)))
    codes = [s for s, _, _ in results]
    assert set(codes) <= {200, 402}, [t for s, _, t in results if s not in (200, 402)][:2]
    refused = next(t for s, _, t in results if s == 402)
    assert json.loads(refused)["error"]["code"] == "tenant_daily_budget"
    for gw in replicas:  # each drained until it refuses
        while True:
            s, rid, _ = one(replicas.index(gw))
            if s != 200:
                break
            results.append((s, rid, ""))
    time.sleep(0.3)
    records = {rec["request_id"]: rec for gw in replicas for rec in gw.audit_lines()}
    spent = sum(Decimal(records[rid]["cost_usd"]) for s, rid, _ in results if s == 200)
    upper = max(Decimal(records[rid]["cost_usd"]) for s, rid, _ in results if s == 200) * 3
    assert spent <= Decimal("0.05"), spent
    # Short of the budget by less than what is held back per replica for one call's upper bound.
    assert spent >= Decimal("0.05") - 4 * upper, (spent, upper)
    # The soft threshold (80%) is the fleet's: once Redis had handed out that much, the calls
    # spending the later leases were warned. (What replicas hold in leases counts as spent, so
    # with leases a fifth of the budget and nine calls at once it comes early: see the README.)
    warned = [records[rid] for s, rid, _ in results if s == 200 and "budget_soft_limit" in records[rid]["flags"]]
    assert warned


def test_the_shared_cache_serves_an_entry_on_a_replica_other_than_the_one_that_stored_it(fleet):
    """`chat-cached` with the route's cache shared through Redis: a call answered on replica A
    is stored there and, by A's ticker, in Redis; the same call on replica B is answered from
    Redis (`x-aigw-cache: shared_hit`), with no provider, then from B's own store."""
    shared = lambda t: t.replace('"cache": {"slots": 256,',
                                 '"cache": {"shared": {"cluster": "aigw_fleet", "prefix": "cachetest"}, "slots": 256,')
    a, b = (fleet.replica(FLEET, name=f"cache{i}", edit=shared) for i in range(2))
    question = f"What is the capital of France? {time.time_ns()}"
    first = a.chat(question, model="chat-cached")
    assert first.status_code == 200 and first.headers.get("x-aigw-cache") == "miss", first.headers
    deadline = time.time() + 5
    while time.time() < deadline:  # A's ticker puts it in Redis
        keys = subprocess.run(fleet.cli("KEYS", "cachetest:c:*"), capture_output=True, text=True).stdout.split()
        if keys:
            break
        time.sleep(0.05)
    assert keys, "the entry reached Redis"
    second = b.chat(question, model="chat-cached")
    assert second.status_code == 200 and second.headers["x-aigw-cache"] == "shared_hit", second.headers
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    assert not b.provider_requests("anthropic", containing=question), "no provider on B"
    rec = b.audit(second.headers["x-aigw-request-id"])[0]
    assert rec["cache_status"] == "shared_hit" and rec["cost_usd"] == "0.0"
    third = b.chat(question, model="chat-cached")
    assert third.headers["x-aigw-cache"] == "hit"


@pytest.mark.parametrize("modules", ["one", "separate"])
def test_a_credential_one_replica_saw_refused_is_skipped_by_every_replica(fleet, modules):
    """Anthropic's credentials: `stale` (refused by the provider) before `current`. Replica A
    tries `stale` once, gets a 401 and marks it; through Redis, replica B skips it without ever
    sending it. In the design card's layout (`separate`), `auth_key_swap_upstream` makes the mark
    and `quota_upstream`, which holds the fleet configuration, shares it."""
    from conftest import PROVIDER_ENV, PROVIDER_KEYS
    stale = "sk-ant-stale-rotated-out-0000"

    def creds(t):
        return t.replace('"anthropic": {"api": "anthropic", "key_env": "ANTHROPIC_API_KEY"}',
                         '"anthropic": {"api": "anthropic", "credentials": ['
                         '{"name": "stale", "key_env": "ANTHROPIC_API_KEY_STALE"},'
                         '{"name": "current", "key_env": "ANTHROPIC_API_KEY"}]}')

    prefix = f"marks-{modules}"
    replicas = []
    for i in range(2):
        values = {"FLEET_PORT": fleet.webdis_port, "QUOTA_FLEET": json.dumps({**FLEET, "prefix": prefix}),
                  "PROVIDER_ENV_KEYS": ", ".join([*PROVIDER_ENV, "ANTHROPIC_API_KEY_STALE", "AIGW_FLEET_AUTH"])}
        gw = Gateway(fleet.dir / f"{prefix}{i}", creds, values=values, modules=modules)
        gw.start_envoy(extra_env={"AIGW_FLEET_AUTH": WEBDIS_AUTH, "ANTHROPIC_API_KEY_STALE": stale})
        fleet.replicas.append(gw)
        replicas.append(gw)
    a, b = replicas
    first = a.chat(f"mark {time.time_ns()}")
    assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_authentication", first.text
    deadline = time.time() + 5
    shared = ""
    while not shared and time.time() < deadline:
        time.sleep(0.05)
        shared = subprocess.run(fleet.cli("HGET", f"{prefix}:bad", "anthropic\tstale"),
                                capture_output=True, text=True).stdout.strip()
    assert shared.isdigit() and int(shared) > time.time() * 1000, shared
    time.sleep(1.3)  # B reads the fleet's marks every second
    for _ in range(3):
        r = b.chat(f"skip {time.time_ns()}")
        assert r.status_code == 200 and r.headers["x-aigw-provider"] == "anthropic", r.text
    assert [q["headers"]["x-api-key"] for q in b.provider_requests("anthropic")] == [PROVIDER_KEYS["anthropic"]] * 3
    assert stale not in b.access_log.read_text() and stale not in b.envoy_log.read_text()


def test_calls_in_flight_are_limited_fleet_wide(fleet):
    """`tiny` may have 4 calls in flight across the fleet: 10 slow calls at once over two
    replicas, 4 are served and the others refused; then slots come back as calls end."""
    # (Idle slots go back to the fleet after 2 s rather than the default 10: which replica took
    # the 4 slots in the burst is a race, and one that took them all keeps them until it has been
    # idle that long, while the other replica's probe below waits for one.)
    conf = {**FLEET, "prefix": "inflight", "lease": {"requests": 4, "tokens": 20000, "slots": 1},
            "idle_return_ms": 2000}
    edit = lambda t: t.replace(TINY, '"tiny":{"requests_per_minute":1000,"concurrent":4,')
    replicas = []
    for i in range(2):
        values = {"FLEET_PORT": fleet.webdis_port, "QUOTA_FLEET": json.dumps(conf)}
        gw = Gateway(fleet.dir / f"inflight{i}", edit, values=values)
        gw.start_envoy(extra_env={"AIGW_FLEET_AUTH": WEBDIS_AUTH})
        fleet.replicas.append(gw)
        replicas.append(gw)
    slow = {"x-fake-fault": "*=delay-1500"}

    def one(i):
        return replicas[i % 2].chat("slow", key=DEMO_KEYS["tiny"], max_tokens=5, headers=slow)

    with ThreadPoolExecutor(10) as pool:
        rs = list(pool.map(one, range(10)))
    codes = [r.status_code for r in rs]
    assert codes.count(200) == 4 and codes.count(429) == 6, codes
    refused = next(r for r in rs if r.status_code == 429)
    assert refused.json()["error"]["code"] == "tenant_concurrent_requests", refused.text
    # All ended: the fleet's slots are free again, on either replica. (A call's slot is given
    # back when Envoy logs it, just after its caller has the answer, and a slot one replica
    # leased goes back to the fleet once it has been idle for `idle_return_ms`: a busy machine
    # may take some seconds more. The probes are quick calls, so that each replica gets its own
    # share of the time; a CI run once failed when a served slow probe on the first replica used
    # up the second's.)
    for i in (0, 1):
        deadline = time.time() + 10
        while (r := replicas[i].chat("quick", key=DEMO_KEYS["tiny"], max_tokens=5)).status_code != 200 \
                and time.time() < deadline:
            time.sleep(0.1)
        assert r.status_code == 200, r.text


def test_the_design_cards_quota_filter_keeps_the_fleet_limit_too(fleet):
    """The design card's layout (one module per filter): its `quota` filter runs fleet mode (and
    its ticker) as the `gateway` filter does."""
    replicas = [fleet.replica({**FLEET, "prefix": "card"}, name=f"card{i}", modules="separate") for i in range(2)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: call(replicas[i % 2]).status_code, range(40)))
    assert set(codes) <= {200, 429}, codes
    admitted = codes.count(200)
    for gw in replicas:
        while call(gw).status_code == 200:
            admitted += 1
            assert admitted < 60
    assert 30 <= admitted <= 31, admitted
    keys = subprocess.run(fleet.cli("KEYS", "card:*"), capture_output=True, text=True).stdout.split()
    assert "card:t.tiny:r" in keys


ANTHROPIC = '"anthropic":{"requests_per_minute":4000,"tokens_per_minute":8000000}'


@pytest.mark.parametrize("layout", ["gateway", "filters"])
def test_a_providers_bucket_is_the_fleets_and_an_attempt_waits_for_its_lease(fleet, layout):
    # Anthropic's capacity: 12 calls, and one more a minute, for the whole fleet (the `fleet`
    # alias goes to Anthropic first; a provider bucket's refusal is final).
    def edit(t):
        assert ANTHROPIC in t
        return t.replace(ANTHROPIC, '"anthropic":{"requests_per_minute":1,"requests_burst":12}')
    if layout == "filters":
        # The design card's layout, each filter from its own module: `quota_upstream` waits.
        replicas = [fleet.replica({**FLEET, "prefix": "prov-f"}, name=f"prov-f{i}", edit=edit, modules="separate")
                    for i in range(2)]
    else:
        replicas = [fleet.replica({**FLEET, "prefix": "prov"}, name=f"prov{i}", edit=edit) for i in range(3)]
    started = time.time()
    n = len(replicas)
    with ThreadPoolExecutor(8) as pool:
        rs = list(pool.map(lambda i: call(replicas[i % n], key="acme"), range(30)))
    codes = [r.status_code for r in rs]
    assert set(codes) <= {200, 429}, codes
    assert {r.json()["error"]["code"] for r in rs if r.status_code == 429} == {"provider_requests_per_minute"}
    flood = codes.count(200)
    drained = 0
    for gw in replicas:
        while call(gw, key="acme").status_code == 200:
            drained += 1
            assert drained < 30
    refill = int((time.time() - started) / 60) + 1
    assert 12 <= flood + drained <= 12 + refill, (flood, drained)
    # Every replica sent some: the capacity is the fleet's, and its attempts took leases.
    for gw in replicas:
        assert fleet_stats(gw).get("wasmcustom.aigw_fleet_top_ups_total.by.attempt", 0) >= 1
    prefix = "prov-f" if layout == "filters" else "prov"
    keys = subprocess.run(fleet.cli("KEYS", f"{prefix}:*"), capture_output=True, text=True).stdout.split()
    assert f"{prefix}:p.anthropic:r" in keys, keys


def test_a_budget_beyond_what_redis_counts_exactly_is_still_granted(fleet):
    # USD 10^9 a day is 10^21 pico-USD: past a Redis integer. The grant is still read as one
    # (what is left is reported at most 2^53), never as Redis unavailable.
    edit = lambda t: t.replace('"daily_usd":"1.00"', '"daily_usd":"1000000000"').replace(  # noqa: E731
        '"monthly_usd":"10.00"', '"monthly_usd":"1000000000"')
    gw = fleet.replica({**FLEET, "prefix": "huge"}, name="huge", edit=edit)
    r = call(gw)
    assert r.status_code == 200, r.text
    rec = gw.audit(r.headers["x-aigw-request-id"])[0]
    assert not any(f.startswith("fleet_unavailable") for f in rec["flags"]), rec
    assert "budget_soft_limit" not in rec["flags"]
