"""The modules the gateway ships, as scripts/test builds them: each at most 600 KiB (the "one call,
one context" issue's bound, which the gateway meets with a module per side: README, "What holds
the size, session 32")."""
from pathlib import Path

import render_envoy

WASM_DIR = Path(render_envoy.ROOT) / "target" / "wasm32-wasip1" / "release"
MODULES = ("aigw_gateway.wasm", "aigw_gateway_upstream.wasm", "auth_key_swap.wasm", "quota.wasm",
           "route_select.wasm", "audit_emit.wasm")


def test_every_shipped_module_is_at_most_600_kib():
    sizes = {m: (WASM_DIR / m).stat().st_size for m in MODULES}
    over = {m: s for m, s in sizes.items() if s > 600 * 1024}
    assert not over, f"over 614,400 bytes: {over}"
