#!/usr/bin/env python3
"""Counts the instructions Envoy executes per call, under valgrind's callgrind (driven by
scripts/bench-instructions).

Timed figures on a shared 2-core host move 5-30% between runs; instruction counts do not: the
same module, configuration and call give the same count to within 0.1%, whatever else the
machine is doing. So this is the A/B measure for a change to the Wasm code or to its host calls
(`scripts/bench` stays the measure of time, latency and throughput).

For each configuration (the same rows as scripts/bench, e.g. `bare`, `full`, `floor`,
`full-without-audit`): Envoy (1 worker) runs under callgrind with instrumentation off while it
starts and while it serves a warm-up; then instrumentation is switched on for N calls made one
at a time, and the total is divided by N. The count is split by where the instructions ran:
Envoy's binary (its own work, the host calls' bodies, V8's runtime), the JIT-compiled code (the
Wasm module), and libc (memcpy, ...). Configurations run two at a time (the counts do not depend
on load).

    scripts/bench-instructions [--calls N] [--configs bare,full] [--wasm-dir DIR ...]

With several `--wasm-dir`s, every configuration but `bare` is counted once per module
directory (an A/B of two builds).
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import bench  # noqa: E402

# The pip package's `envoy` is a Python launcher; valgrind must start the binary itself.
ENVOY_BIN = Path(bench.ENVOY).parent.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
    "site-packages" / "envoy" / "_bin" / "envoy"
WARMUP = 200
# Envoy's binary is position-independent and loaded by valgrind at 0x108000; its mappings end
# below 128 MiB (it remaps its own text, so much of it has no file name). An unnamed address
# above this is V8's JIT-compiled code (its code space lies elsewhere in the address space).
JIT_FLOOR = 0x10000000
# bench's module directory is a global: one configuration is rendered at a time.
RENDER = threading.Lock()


# What `--cache-sim` counts besides instructions: callgrind's simulated first-level instruction
# and data cache misses, and mispredicted conditional and indirect branches.
SIM_EVENTS = ("I1mr", "D1mr", "Bcm", "Bim")


def where_ran(where):
    # (A function called from itself is named with its depth, `???:0x...'2`: still the same code.)
    unnamed = re.match(r"\?\?\?:0x([0-9a-f]+)(?:'\d+)? \[(.*)\]$", where)
    if unnamed and int(unnamed.group(1), 16) >= JIT_FLOOR:
        return "wasm"
    if unnamed or "/envoy/_bin/envoy" in where:
        return "envoy"
    return "libc" if "libc.so" in where else "other"


def split(profile, calls, events=("Ir",)):
    """Events per call by where they ran, from callgrind's flat profile: {event: {part: n}}."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", f"--show={','.join(events)}", str(profile)],
                         capture_output=True, text=True, check=True).stdout
    parts = {e: {"envoy": 0, "wasm": 0, "libc": 0, "other": 0} for e in events}
    # Each event's column is `N (p%)`, a bare `0`, or `.` (none); the function's place follows.
    column = r"\s*([\d,]+(?: \([\s\d.]+%\))?|\.)"
    for line in out.splitlines():
        m = re.match(column * len(events) + r"\s+(\S.*)$", line)
        if not m or "PROGRAM TOTALS" in line or not any(c[0].isdigit() for c in m.groups()[:-1]):
            continue
        part = where_ran(m.group(len(events) + 1))
        for e, c in zip(events, m.groups()):
            if c != ".":
                parts[e][part] += int(c.split(" ")[0].replace(",", ""))
    return {e: {k: v / calls for k, v in p.items()} for e, p in parts.items()}


def count(name, wasm_dir, calls, upstream_port, fake_port=None, sim=False):
    """Instructions per call for one configuration, as {"total", "envoy", "wasm", "libc", "other"}.
    `stream-bare-long`, `stream-full-short`, ...: scripts/bench's streaming calls (the fake's
    Anthropic stream, `long` or `short`), proxied as is or translated. With `sim`, also the
    simulated cache misses and branch mispredictions per call (`SIM_EVENTS`), under "sim"."""
    work = Path(tempfile.mkdtemp(prefix="aigw-instr-"))
    try:
        with RENDER:
            bench.WASM_DIR = Path(wasm_dir)
            port, admin = bench.free_port(), bench.free_port()
            if name.startswith("stream-"):
                _, kind, length = name.split("-")
                cfg, path, body, headers = bench.stream_config(kind, port, admin, fake_port, work,
                                                               bench.STREAM_PIECES[length])
            else:
                cfg, path, body, headers = bench.make_config(name, port, admin, upstream_port, work)
        conf = work / "envoy.json"
        conf.write_text(json.dumps(cfg))
        log = work / "valgrind.log"
        out = work / "callgrind.out"
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all"] +
            (["--cache-sim=yes", "--branch-sim=yes"] if sim else []) + [
             f"--callgrind-out-file={out}", str(ENVOY_BIN), "-c", str(conf), "--concurrency", "1",
             "--use-dynamic-base-id", "-l", "error"],
            stdout=open(log, "w"), stderr=subprocess.STDOUT, env=dict(os.environ, **bench.PROVIDER_KEYS))
        try:
            # (V8 compiling the module under valgrind takes minutes.)
            bench.wait_ready(proc, admin, log, 900, 0.5)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

            def call():
                conn.request("POST" if body is not None else "GET", path, body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                if r.status != 200:
                    raise RuntimeError(f"{name}: {r.status} {data[:300]!r}")

            for _ in range(WARMUP):
                call()
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            for _ in range(calls):
                call()
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        finally:
            proc.terminate()
            proc.wait(120)
        dumps = sorted(work.glob("callgrind.out*"), key=lambda f: f.stat().st_size)
        events = split(dumps[-1], calls, ("Ir",) + (SIM_EVENTS if sim else ()))
        parts = dict(events.pop("Ir"))
        parts["total"] = sum(parts.values())
        if sim:
            parts["sim"] = events
        return parts
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--configs", default="bare,floor,full")
    ap.add_argument("--wasm-dir", action="append", help="module directory (repeat for an A/B); default: the build")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also simulate the caches and branch predictors: first-level instruction and data "
                         "cache misses and mispredicted branches per call (slower; on a host without "
                         "hardware counters, what tells a timed ratio from a counted one)")
    ap.add_argument("--stream", action="store_true",
                    help="count scripts/bench's two streams instead (bare and full): instructions added per event")
    args = ap.parse_args()
    dirs = args.wasm_dir or [str(bench.WASM_DIR)]
    if args.stream:
        return stream(args, dirs)
    names = args.configs.split(",")
    if names[0] != "bare":
        names.insert(0, "bare")
    if any(n.startswith("floor") for n in names):
        bench.FLOOR_MODULES = bench.floor_modules()
    jobs = [("bare", dirs[0])] + [(n, d) for n in names[1:] for d in dirs]
    with tempfile.TemporaryDirectory(prefix="aigw-instr-") as tmp:
        nginx, nginx_port = bench.start_nginx(Path(tmp))
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                futures = {job: pool.submit(count, job[0], job[1], args.calls, nginx_port, None, args.cache_sim)
                           for job in jobs}
                results = {job: f.result() for job, f in futures.items()}
        finally:
            nginx.terminate()
    bare = results[jobs[0]]["total"]
    lines = [f"Instructions per call under callgrind ({args.calls} calls after {WARMUP} of warm-up, 1 worker)", "",
             "| configuration | module dir | total | × bare | Envoy binary | Wasm code (JIT) | libc | other |",
             "|---|---|---|---|---|---|---|---|"]
    for (n, d), r in results.items():
        lines.append(f"| {n} | {d if n != 'bare' else '-'} | {r['total']:,.0f} | {r['total'] / bare:.2f} | "
                     f"{r['envoy']:,.0f} | {r['wasm']:,.0f} | {r['libc']:,.0f} | {r['other']:,.0f} |")
    if args.cache_sim:
        lines += ["", "Simulated per call (callgrind: I1 and D1 misses, mispredicted conditional and indirect "
                  "branches), all code, then the Wasm code's share; × bare in brackets", "",
                  "| configuration | module dir | " + " | ".join(SIM_EVENTS) + " | Wasm: " +
                  " | Wasm: ".join(SIM_EVENTS) + " |", "|---|---|" + "---|" * (2 * len(SIM_EVENTS))]
        sim_bare = {e: sum(v.values()) for e, v in results[jobs[0]]["sim"].items()}
        for (n, d), r in results.items():
            total = {e: sum(v.values()) for e, v in r["sim"].items()}
            cells = [f"{total[e]:,.0f} ({total[e] / max(sim_bare[e], 1):.2f})" for e in SIM_EVENTS]
            cells += [f"{r['sim'][e]['wasm']:,.0f}" for e in SIM_EVENTS]
            lines.append(f"| {n} | {d if n != 'bare' else '-'} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


def stream(args, dirs):
    """The streaming figure of scripts/bench in instructions: what the full gateway adds per
    event, the difference of what it adds to the long stream and to the short one over the
    difference of their events (so the call's own cost cancels). Under valgrind Envoy is slower
    than the fake, so more events arrive per body callback than in a timed run: per-callback
    costs count less here than there."""
    jobs = [(f"stream-bare-{k}", dirs[0]) for k in bench.STREAM_PIECES] + \
        [(f"stream-full-{k}", d) for d in dirs for k in bench.STREAM_PIECES]
    fakes, fake_port = bench.start_fakes()
    try:
        events = {k: bench.stream_events(fake_port, v) for k, v in bench.STREAM_PIECES.items()}
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            futures = {job: pool.submit(count, job[0], job[1], args.calls, None, fake_port) for job in jobs}
            results = {job: f.result() for job, f in futures.items()}
    finally:
        fakes.terminate()
    bare = {k: results[(f"stream-bare-{k}", dirs[0])] for k in bench.STREAM_PIECES}
    lines = [f"Instructions per streamed call under callgrind ({args.calls} calls after {WARMUP} of warm-up, "
             f"1 worker); events per stream: " + ", ".join(f"{k} {v}" for k, v in events.items()), "",
             "| module dir | bare long | bare short | full long | full short | added per event | "
             "of which Wasm code |", "|---|---|---|---|---|---|---|"]
    for d in dirs:
        full = {k: results[(f"stream-full-{k}", d)] for k in bench.STREAM_PIECES}
        per_event = {part: ((full["long"][part] - bare["long"][part]) - (full["short"][part] - bare["short"][part]))
                     / (events["long"] - events["short"]) for part in ("total", "wasm")}
        lines.append(f"| {d} | {bare['long']['total']:,.0f} | {bare['short']['total']:,.0f} | "
                     f"{full['long']['total']:,.0f} | {full['short']['total']:,.0f} | {per_event['total']:,.0f} | "
                     f"{per_event['wasm']:,.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
