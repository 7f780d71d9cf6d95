#!/usr/bin/env python3
"""Renders envoy/envoy.yaml: fills in ports, paths, demo key digests and the price book.

Usage: render_envoy.py OUT [NAME=VALUE ...]   (names as in the template, e.g. LISTEN_PORT=10000)
Unset names take the defaults below; an unknown placeholder left in the template is an error.
MODULES=one (default) runs every filter from target/.../aigw_filters.wasm (one VM per worker);
MODULES=separate uses one module per filter.
"""
import hashlib
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEMO_KEYS = {
    "DEMO_KEY_ACME": "aigw-demo-key-acme",
    "DEMO_KEY_TINY": "aigw-demo-key-tiny",
    "DEMO_KEY_BETA": "aigw-demo-key-beta",
}


def render(values):
    with open(os.path.join(ROOT, "envoy", "envoy.yaml")) as f:
        text = f.read()
    with open(os.path.join(ROOT, "envoy", "price-book.json")) as f:
        book = json.load(f)
    v = {
        "LISTEN_ADDRESS": "127.0.0.1",
        "LISTEN_PORT": "10000",
        "ADMIN_PORT": "9901",
        "OPENAI_PORT": "18001",
        "ANTHROPIC_PORT": "18002",
        "WASM_DIR": os.path.join(ROOT, "target", "wasm32-wasip1", "release"),
        "ACCESS_LOG": "/dev/stdout",
        "PRICE_BOOK": json.dumps(book, separators=(",", ":")),
    }
    with open(os.path.join(ROOT, "envoy", "quota.json")) as f:
        quota = json.load(f)
    quota.pop("_comment", None)
    quota["price_book"] = book
    v["QUOTA_CONFIG"] = json.dumps(quota, separators=(",", ":"))
    for name, key in DEMO_KEYS.items():
        v[name + "_SHA256"] = hashlib.sha256(key.encode()).hexdigest()
    v.update(values)
    modules = str(v.pop("MODULES", "one"))
    if modules not in ("one", "separate"):
        raise SystemExit("render_envoy: MODULES is one or separate")
    for filt in ("audit_emit", "auth_key_swap", "quota", "route_select"):
        name = "aigw_filters" if modules == "one" else filt
        v.setdefault(f"WASM_{filt.upper()}", os.path.join(str(v["WASM_DIR"]), f"{name}.wasm"))

    def sub(m):
        name = m.group(1)
        if name not in v:
            raise SystemExit(f"render_envoy: no value for {{{{{name}}}}}")
        return str(v[name])

    return re.sub(r"\{\{([A-Z0-9_]+)\}\}", sub, text)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    values = dict(a.split("=", 1) for a in argv[2:])
    out = render(values)
    with open(argv[1], "w") as f:
        f.write(out)


if __name__ == "__main__":
    main(sys.argv)
