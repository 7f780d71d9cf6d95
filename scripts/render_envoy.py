#!/usr/bin/env python3
"""Renders envoy/envoy.yaml: fills in ports, paths, demo key digests and the price book.

Usage: render_envoy.py OUT [NAME=VALUE ...]   (names as in the template, e.g. LISTEN_PORT=10000)
Unset names take the defaults below; an unknown placeholder left in the template is an error.
MODULES=one (default) runs every listener filter from target/.../aigw_gateway.wasm and every
per-attempt filter from aigw_gateway_upstream.wasm (one VM per worker for each side);
MODULES=separate uses one module per filter.

BENCHMARKS_FILE=path reads the offline evaluation results from there instead of
envoy/benchmarks.json: each task route rule is resolved from them to the cheapest alias that
meets its score, and which one and why is printed (scripts/benchmarks.py).

ECDS_DIR=path moves every gateway filter's configuration out of the listener and clusters into
one file per filter in that directory, loaded by Envoy's extension config discovery (ECDS): a
new configuration then takes effect without a restart when the file is replaced.

Usage: render_envoy.py --push ECDS_DIR [NAME=VALUE ...]
re-renders and replaces the ECDS files atomically (what a control plane would push), once the
new configuration passes `aigw validate` (scripts/aigw_validate.py); it refuses one with errors.
"""
import hashlib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmarks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEMO_KEYS = {
    "DEMO_KEY_ACME": "aigw-demo-key-acme",
    "DEMO_KEY_TINY": "aigw-demo-key-tiny",
    "DEMO_KEY_BETA": "aigw-demo-key-beta",
    # The key the semantic cache's embedding calls present (Envoy's AIGW_CACHE_EMBED_KEY).
    "DEMO_KEY_CACHE": "aigw-demo-key-cache",
    # The key shadow legs present (Envoy's AIGW_SHADOW_KEY; README, "Shadow dual-run").
    "DEMO_KEY_SHADOW": "aigw-demo-key-shadow",
}


LAYOUT_MARK = "# aigw-layout: "


def layout_of(text):
    """The layout a rendered text was rendered for (see `render`)."""
    for line in text.splitlines()[:3]:
        if line.startswith(LAYOUT_MARK):
            return line[len(LAYOUT_MARK):].strip()
    return "filters"


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
        "AZURE_PORT": "18003",
        "GEMINI_PORT": "18004",
        "BEDROCK_PORT": "18005",
        # Fleet mode (README, "Fleet mode"): Webdis, in front of the fleet's Redis.
        "FLEET_HOST": "127.0.0.1",
        "FLEET_PORT": "7379",
        "WASM_DIR": os.path.join(ROOT, "target", "wasm32-wasip1", "release"),
        "ACCESS_LOG": "/dev/stdout",
        "PRICE_BOOK": json.dumps(book, separators=(",", ":")),
        # The environment variables the filters may read provider credentials from: each
        # provider's current key and a slot for the next one, so a new key can be rolled out
        # by pushing configuration (README, "Rotating a provider credential").
        "PROVIDER_ENV_KEYS": ", ".join([
            "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AZURE_OPENAI_API_KEY", "GEMINI_API_KEY",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "OPENAI_API_KEY_NEXT", "ANTHROPIC_API_KEY_NEXT", "AIGW_CACHE_EMBED_KEY", "AIGW_FLEET_AUTH",
            "AIGW_SHADOW_KEY"]),
    }
    # Task route rules are resolved from these once the text is parsed (`load`), after any edit.
    bench_file = values.get("BENCHMARKS_FILE") or os.path.join(ROOT, "envoy", "benchmarks.json")
    v["BENCHMARKS"] = json.dumps(benchmarks.load(str(bench_file)), separators=(",", ":"))
    with open(os.path.join(ROOT, "envoy", "privacy-zones.json")) as f:
        v["PRIVACY_ZONES"] = json.dumps(json.load(f)["zones"], separators=(",", ":"))
    with open(os.path.join(ROOT, "envoy", "quota.json")) as f:
        quota = json.load(f)
    quota.pop("_comment", None)
    quota["price_book"] = book
    # QUOTA_FLEET (JSON): the quota stage's `fleet`, which turns fleet mode on.
    if values.get("QUOTA_FLEET"):
        quota["fleet"] = json.loads(values["QUOTA_FLEET"])
    v["QUOTA_CONFIG"] = json.dumps(quota, separators=(",", ":"))
    for name, key in DEMO_KEYS.items():
        v[name + "_SHA256"] = hashlib.sha256(key.encode()).hexdigest()
    v.update(values)
    v.pop("QUOTA_FLEET", None)
    v.pop("BENCHMARKS_FILE", None)
    modules = str(v.pop("MODULES", "one"))
    if modules not in ("one", "separate"):
        raise SystemExit("render_envoy: MODULES is one or separate")
    # LAYOUT=gateway (the default): two filters, `gateway` and `gateway_upstream`, from the one
    # module. LAYOUT=filters: the design card's filters, one per stage (MODULES=separate: each
    # from its own module).
    layout = str(v.pop("LAYOUT", "filters" if modules == "separate" else "gateway"))
    if layout not in ("gateway", "filters") or (layout == "gateway" and modules == "separate"):
        raise SystemExit("render_envoy: LAYOUT is gateway (MODULES=one) or filters")
    for filt in ("audit_emit", "auth_key_swap", "quota", "route_select"):
        for side, module in (("", "aigw_gateway"), ("_upstream", "aigw_gateway_upstream")):
            name = module if modules == "one" else filt
            v.setdefault(f"WASM_{(filt + side).upper()}", os.path.join(str(v["WASM_DIR"]), f"{name}.wasm"))

    def sub(m):
        name = m.group(1)
        if name not in v:
            raise SystemExit(f"render_envoy: no value for {{{{{name}}}}}")
        return str(v[name])

    return LAYOUT_MARK + layout + "\n" + re.sub(r"\{\{([A-Z0-9_]+)\}\}", sub, text)


ROUTE_FILTERS = ("aigw.route_select", "aigw.route_select_upstream", "aigw.gateway", "aigw.gateway_upstream")


def wasm_filters(cfg):
    """Every Wasm filter of a parsed configuration (listeners' and clusters' upstream filters)."""
    for listener in cfg.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for nf in chain.get("filters", []):
                yield from nf.get("typed_config", {}).get("http_filters", [])
    for cluster in cfg.get("static_resources", {}).get("clusters", []):
        opts = cluster.get("typed_extension_protocol_options", {})
        yield from opts.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}).get("http_filters", [])


def resolve_tasks(cfg, quiet=False):
    """Resolves every task route rule of a parsed configuration from the benchmark table the
    template carries in the route configuration (`benchmarks`, taken out here: the filters never
    see it), and prints which alias each rule got and why. Exits on a rule that cannot be resolved."""
    confs = [(f, json.loads(f["typed_config"]["config"]["configuration"]["value"]))
             for f in wasm_filters(cfg)
             if "typed_config" in f and "configuration" in f["typed_config"].get("config", {})]
    book = next((c.get("price_book") or c.get("quota", {}).get("price_book") for _, c in confs
                 if c.get("price_book") or c.get("quota", {}).get("price_book")), None)
    if book is None:
        with open(os.path.join(ROOT, "envoy", "price-book.json")) as fh:
            book = json.load(fh)
    printed = set()
    for f, c in confs:
        if f.get("name") not in ROUTE_FILTERS:
            continue
        route = c.get("route", c) if f["name"].startswith("aigw.gateway") else c
        table = route.pop("benchmarks", None)
        if table is None and not benchmarks.task_rules(route):
            continue
        if benchmarks.task_rules(route):
            if table is None:
                raise SystemExit(f"render_envoy: {f['name']} has task rules but no benchmark table")
            try:
                why = benchmarks.resolve_route(route, book, table)
            except benchmarks.TaskRuleError as e:
                raise SystemExit(f"render_envoy: {e}")
            for line in why:
                if line not in printed and not quiet:
                    print(f"render_envoy: {line}", file=sys.stderr)
                printed.add(line)
        f["typed_config"]["config"]["configuration"]["value"] = json.dumps(c, separators=(",", ":"))
    return cfg


def load(text, quiet=False):
    """A rendered (and possibly edited) text, parsed, with its task rules resolved."""
    import yaml  # in the venv that scripts/lib.sh makes

    return resolve_tasks(yaml.safe_load(text), quiet)


ECDS_FILTERS = ("aigw.audit_emit", "aigw.auth_key_swap", "aigw.quota", "aigw.route_select",
                "aigw.route_select_upstream", "aigw.quota_upstream", "aigw.auth_key_swap_upstream",
                "aigw.gateway", "aigw.gateway_upstream")
# The stages of the gateway filters, and the filter of the template that configures each.
STAGES = {"audit": "aigw.audit_emit", "auth": "aigw.auth_key_swap", "route": "aigw.route_select",
          "quota": "aigw.quota"}
UPSTREAM_STAGES = {"route": "aigw.route_select_upstream", "quota": "aigw.quota_upstream",
                   "auth": "aigw.auth_key_swap_upstream"}


def hoist(gateway):
    """The gateway filters' own form: ONE table of providers (each with its API, credentials and
    limits, from route-select's, auth-key-swap's and quota's tables) and ONE price book (quota's
    and audit-emit's), instead of a copy in each stage."""
    providers = {}
    for stage in ("route", "auth"):
        for name, p in gateway.get(stage, {}).pop("providers", {}).items():
            providers.setdefault(name, {}).update(p)
    for name, limits in gateway.get("quota", {}).pop("providers", {}).items():
        if name not in providers:
            raise ValueError(f"quota limits provider {name!r}, which no route or credential names")
        providers[name]["limits"] = limits
    if providers:
        gateway["providers"] = providers
    books = [gateway[s].pop("price_book") for s in ("audit", "quota") if "price_book" in gateway.get(s, {})]
    if any(b != books[0] for b in books):
        raise ValueError("quota and audit-emit are given different price books; the gateway prices with one")
    if books:
        gateway["price_book"] = books[0]
    return gateway


def combine(cfg):
    """LAYOUT=gateway (the default): replaces the template's four listener filters with one
    `aigw.gateway` filter and its three per-attempt filters (in every chain's cluster) with one
    `aigw.gateway_upstream`, from the gateway's two modules. Both take one configuration: each stage's
    own JSON under its name, with one `providers` table and one `price_book` for all (hoist)."""
    def conf(f):
        return json.loads(f["typed_config"]["config"]["configuration"]["value"])

    gateway = None
    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for nf in chain["filters"]:
                hcm = nf.get("typed_config", {})
                filters = hcm.get("http_filters", [])
                by_name = {f["name"]: f for f in filters if f.get("name") in STAGES.values()}
                if not by_name:
                    continue
                gateway = {stage: conf(by_name[name]) for stage, name in STAGES.items() if name in by_name}
                first = filters.index(next(f for f in filters if f.get("name") in by_name))
                template = by_name["aigw.audit_emit"]["typed_config"]
                g = json.loads(json.dumps(template))
                g["config"].update(name="gateway", root_id="gateway", allow_on_headers_stop_iteration=True)
                hcm["http_filters"] = ([f for f in filters[:first] if f.get("name") not in by_name]
                                       + [{"name": "aigw.gateway", "typed_config": g}]
                                       + [f for f in filters[first:] if f.get("name") not in by_name])
    if gateway is None:
        return cfg
    upstream_done = {}
    for cluster in cfg["static_resources"]["clusters"]:
        opts = cluster.get("typed_extension_protocol_options", {}).get(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
        filters = opts.get("http_filters", [])
        ours = [f for f in filters if f.get("name") in UPSTREAM_STAGES.values()]
        if not ours:
            continue
        for stage, name in UPSTREAM_STAGES.items():
            for f in ours:
                if f["name"] == name and stage == "auth":
                    gateway.setdefault("auth", {}).update(conf(f))
        first = filters.index(ours[0])
        g = json.loads(json.dumps(ours[0]["typed_config"]))
        g["config"].update(name="gateway_upstream", root_id="gateway_upstream", allow_on_headers_stop_iteration=True)
        opts["http_filters"] = ([f for f in filters[:first] if f not in ours]
                                + [{"name": "aigw.gateway_upstream", "typed_config": g}]
                                + [f for f in filters[first:] if f not in ours])
        upstream_done[cluster["name"]] = g
    value = json.dumps(hoist(gateway), separators=(",", ":"))
    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for nf in chain["filters"]:
                for f in nf.get("typed_config", {}).get("http_filters", []):
                    if f.get("name") == "aigw.gateway":
                        f["typed_config"]["config"]["configuration"]["value"] = value
    for g in upstream_done.values():
        g["config"]["configuration"]["value"] = value
    return cfg
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def to_ecds(text, ecds_dir):
    """Moves each gateway filter's typed_config into ECDS_DIR/<name>.json; returns (the Envoy
    config as JSON text, {file name: resource JSON})."""
    cfg = load(text)
    if layout_of(text) == "gateway":
        cfg = combine(cfg)
    refuse_inconsistent(cfg)
    resources = {}

    def convert(filters):
        for i, f in enumerate(filters):
            if f.get("name") in ECDS_FILTERS and "typed_config" in f:
                resources[f["name"]] = f["typed_config"]
                path = os.path.join(ecds_dir, f["name"] + ".json")
                filters[i] = {"name": f["name"], "config_discovery": {
                    "config_source": {"path_config_source": {"path": path, "watched_directory": {"path": ecds_dir}}},
                    "type_urls": [WASM_TYPE]}}

    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for nf in chain["filters"]:
                convert(nf.get("typed_config", {}).get("http_filters", []))
    for cluster in cfg["static_resources"]["clusters"]:
        opts = cluster.get("typed_extension_protocol_options", {})
        convert(opts.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}).get("http_filters", []))
    # Dynamic configuration needs a node identity.
    cfg.setdefault("node", {"id": "aigw", "cluster": "aigw"})
    files = {
        name + ".json": json.dumps({"resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": name, "typed_config": tc}]}, indent=1)
        for name, tc in resources.items()
    }
    return json.dumps(cfg, indent=1), files


def write_ecds(ecds_dir, files):
    """Replaces each file atomically (Envoy watches the directory for moves into it)."""
    os.makedirs(ecds_dir, exist_ok=True)
    for name, body in files.items():
        tmp = os.path.join(ecds_dir, f".{name}.tmp")
        with open(tmp, "w") as f:
            f.write(body)
        os.replace(tmp, os.path.join(ecds_dir, name))


def check_chains(cfg):
    """Checks that each model alias's fallback chain is what Envoy will run: an aggregate cluster
    whose provider clusters (by their endpoints' aigw.provider) are the alias's steps in order,
    reached by a route on x-aigw-chain whose retry policy allows a retry per step after the
    first. Returns the problems found (empty: consistent)."""
    clusters = {c["name"]: c for c in cfg["static_resources"]["clusters"]}
    routes = {}
    removed = {}  # header name -> the virtual host whose request_headers_to_remove lists it
    for listener in cfg["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for nf in chain["filters"]:
                hcm = nf.get("typed_config", {})
                for vh in hcm.get("route_config", {}).get("virtual_hosts", []):
                    for n in vh.get("request_headers_to_remove", []):
                        removed[n.lower()] = vh.get("name")
                    for r in vh.get("routes", []):
                        for h in r.get("match", {}).get("headers", []):
                            if h.get("name") == "x-aigw-chain":
                                routes[h["string_match"]["exact"]] = dict(
                                    r.get("route", {}), path=r.get("match", {}).get("prefix"))
                for f in hcm.get("http_filters", []):
                    if f.get("name") == "aigw.route_select" and "typed_config" in f:
                        route_cfg = json.loads(f["typed_config"]["config"]["configuration"]["value"])
                    if f.get("name") == "aigw.gateway" and "typed_config" in f:
                        whole = json.loads(f["typed_config"]["config"]["configuration"]["value"])
                        route_cfg = dict(whole["route"])
                        route_cfg.setdefault("providers", whole.get("providers") or {})

    def provider_of(cluster_name):
        c = clusters.get(cluster_name, {})
        for ep in c.get("load_assignment", {}).get("endpoints", []):
            for lb in ep.get("lb_endpoints", []):
                return lb.get("metadata", {}).get("filter_metadata", {}).get("aigw", {}).get("provider")
        return None

    problems = []
    # A header the operator forwards to providers must survive Envoy's own removals, which run
    # before the per-attempt filter.
    for n in route_cfg.get("forward_request_headers", []):
        if n.lower() in removed:
            problems.append(f"forward_request_headers names {n!r}, but virtual host {removed[n.lower()]!r} "
                            f"removes it (request_headers_to_remove): take it out of that list to forward it")
    for name, alias in route_cfg["aliases"].items():
        chain = alias["chain"]
        agg = clusters.get(chain)
        if agg is None or agg.get("cluster_type", {}).get("name") != "envoy.clusters.aggregate":
            problems.append(f"alias {name!r}: chain {chain!r} is not an aggregate cluster")
            continue
        members = agg["cluster_type"]["typed_config"]["clusters"]
        order = [provider_of(m) for m in members]
        steps = [s["provider"] for s in alias["steps"]]
        if order != steps:
            problems.append(f"alias {name!r}: steps {steps} but chain {chain!r} tries {order}")
        # `prefer: fastest`: each other order starts with its provider, the rest in step order.
        for first, other in alias.get("orders", {}).items():
            want = [first] + [p for p in steps if p != first]
            got = clusters.get(other, {}).get("cluster_type", {}).get("typed_config", {}).get("clusters")
            if got is None or [provider_of(m) for m in got] != want:
                problems.append(f"alias {name!r}: order {first!r} should be a chain that tries {want}, "
                                f"but {other!r} tries {None if got is None else [provider_of(m) for m in got]}")
            elif other not in routes:
                problems.append(f"alias {name!r}: no route matches x-aigw-chain: {other}")
        route = routes.get(chain)
        embeddings = alias.get("kind") == "embeddings"
        if embeddings and len({s["model"] for s in alias["steps"]}) > 1:
            problems.append(f"alias {name!r}: an embeddings chain mixes models "
                            f"{[s['model'] for s in alias['steps']]}: their vectors are not comparable")
        for step in alias["steps"] if embeddings else []:
            # A batch above the provider's cap is split into calls to the provider's own cluster.
            p = route_cfg.get("providers", {}).get(step["provider"], {})
            if p.get("api") in ("gemini", "bedrock"):
                own = p.get("cluster") or f"provider_{step['provider']}"
                if provider_of(own) != step["provider"]:
                    problems.append(f"alias {name!r}: the calls of a split batch go to cluster {own!r}, "
                                    f"which is not {step['provider']!r}'s (set the provider's `cluster`)")
        want_path = "/v1/embeddings" if embeddings else "/v1/chat/completions"
        if route is None:
            problems.append(f"alias {name!r}: no route matches x-aigw-chain: {chain}")
        elif route.get("path") != want_path:
            problems.append(f"alias {name!r}: the route for {chain!r} matches {route.get('path')!r}, not {want_path!r}")
        elif route.get("retry_policy", {}).get("num_retries", 1) < len(steps) - 1:
            problems.append(f"alias {name!r}: route for {chain!r} retries fewer times than it has steps after the first")
    return problems


def refuse_inconsistent(cfg):
    problems = check_chains(cfg)
    if problems:
        raise SystemExit("render_envoy: fallback chains do not match the route config:\n  " + "\n  ".join(problems))


def render_to(out_path, values):
    """Renders the Envoy config to out_path (and the ECDS files, when ECDS_DIR is set)."""
    values = dict(values)
    ecds_dir = values.pop("ECDS_DIR", None)
    text = render(values)
    if not ecds_dir:
        cfg = load(text)
        if layout_of(text) == "gateway":
            cfg = combine(cfg)
        text = json.dumps(cfg, indent=1)
        refuse_inconsistent(cfg)
    if ecds_dir:
        ecds_dir = os.path.abspath(str(ecds_dir))
        text, files = to_ecds(text, ecds_dir)
        write_ecds(ecds_dir, files)
    with open(out_path, "w") as f:
        f.write(text)


def refuse_invalid(text, bench_file=None):
    """Runs `aigw validate` (scripts/aigw_validate.py) on a rendered configuration; exits, naming
    every error, when it has any."""
    import tempfile

    import aigw_validate

    cfg = load(text, quiet=True)
    if layout_of(text) == "gateway":
        cfg = combine(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "envoy.candidate.yaml")
        with open(path, "w") as f:
            f.write(json.dumps(cfg, indent=1))
        problems = aigw_validate.validate([path], bench_path=bench_file or benchmarks.DEFAULT_PATH)
    errors = [p for p in problems if p["severity"] == "error"]
    if errors:
        raise SystemExit("render_envoy: refusing to push an invalid configuration (aigw validate):\n  "
                         + "\n  ".join(f"{p['path']}: {p['message']}" for p in errors))


def push(ecds_dir, values):
    """Re-renders the filters' configurations and replaces the ECDS files: no restart. The new
    configuration must pass `aigw validate` first."""
    ecds_dir = os.path.abspath(str(ecds_dir))
    text = render(values)
    refuse_invalid(text, values.get("BENCHMARKS_FILE"))
    _, files = to_ecds(text, ecds_dir)
    write_ecds(ecds_dir, files)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    if argv[1] == "--push":
        if len(argv) < 3:
            raise SystemExit(__doc__)
        push(argv[2], dict(a.split("=", 1) for a in argv[3:]))
        return
    render_to(argv[1], dict(a.split("=", 1) for a in argv[2:]))


if __name__ == "__main__":
    main(sys.argv)
