"""`aigw validate`: checks a whole gateway configuration before it is pushed.

    scripts/aigw validate [--json] [--now UTC] [--allow-unpriced MODEL,...] [--no-envoy]
                          [--benchmarks FILE] [ENVOY_CONFIG ...]

Without a file it validates what the project ships: envoy/envoy.yaml rendered in both layouts
(the two gateway filters, and the design card's filters), and every config in envoy/examples/.
For each Envoy configuration (YAML or JSON; ECDS files it references are read too):

- every gateway filter's configuration is compiled with the code the filters run
  (target/release/aigw-validate, built from aigw-core), and checked: price-book coverage of
  every model a chain can reach, retired models without a successor, expired and not yet valid
  keys, privacy zones against the endpoints' regions, quota limits that can never admit a call
  of the configured size (and everything the filters themselves refuse: unknown canary aliases,
  duplicate key digests, ...);
- the fallback chains against the clusters and routes (as render_envoy.py does);
- each task route rule, resolved again from the benchmark table (envoy/benchmarks.json, or
  --benchmarks): which alias it gets and why (a note), a warning when the table now picks
  another alias than the configuration has (re-render and push), an error when no alias
  qualifies; and a warning for every benchmark entry older than the table's max_age_days;
- `envoy --mode validate` on the file.

envoy/validate.json lists what is accepted on purpose (models allowed to be unpriced, each
with why); --policy names another file. Each problem names its file and path; `--json` prints one JSON object per line. Exit status 1
when there is an error (warnings alone: 0). render_envoy.py --push runs the same checks and
refuses to push a configuration with errors.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import benchmarks  # noqa: E402
import render_envoy  # noqa: E402

WASM_TYPE = render_envoy.WASM_TYPE
CHECKER = os.path.join(ROOT, "target", "release", "aigw-validate")
POLICY = os.path.join(ROOT, "envoy", "validate.json")
ENVOY = os.environ.get("ENVOY", os.path.join(ROOT, ".venv", "bin", "envoy"))


def load(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


def inline_ecds(cfg):
    """Replaces each ECDS reference with the filter it names; returns the ECDS files read, by
    filter name."""
    files = {}

    def visit(filters):
        for i, f in enumerate(filters):
            src = f.get("config_discovery", {}).get("config_source", {}).get("path_config_source", {}).get("path")
            if src and os.path.exists(src):
                with open(src) as fh:
                    res = json.load(fh)["resources"][0]
                filters[i] = {"name": f["name"], "typed_config": res["typed_config"]}
                files[f["name"]] = src

    for li in cfg.get("static_resources", {}).get("listeners", []):
        for chain in li.get("filter_chains", []):
            for nf in chain.get("filters", []):
                visit(nf.get("typed_config", {}).get("http_filters", []))
    for c in cfg.get("static_resources", {}).get("clusters", []):
        opts = c.get("typed_extension_protocol_options", {})
        visit(opts.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}).get("http_filters", []))
    return files


def extract(path, cfg, ecds):
    """The gateway filters of one Envoy configuration (where each is), its clusters' endpoints
    and its aggregate clusters."""
    filters, clusters, aggregates = [], {}, {}

    def visit(lst, base):
        for i, f in enumerate(lst):
            tc = f.get("typed_config", {})
            if tc.get("@type") != WASM_TYPE:
                continue
            conf = tc.get("config", {})
            value = conf.get("configuration", {}).get("value")
            root = conf.get("root_id", "")
            if value is None or root.startswith("aigw_test"):
                continue
            if f["name"] in ecds:
                where = (ecds[f["name"]], "resources[0].typed_config.config")
            else:
                where = (path, f"{base}[{i}].typed_config.config")
            filters.append({"group": path, "file": where[0], "path": where[1], "root_id": root, "configuration": value})

    sr = cfg.get("static_resources", {})
    for li, listener in enumerate(sr.get("listeners", [])):
        for ci, chain in enumerate(listener.get("filter_chains", [])):
            for ni, nf in enumerate(chain.get("filters", [])):
                visit(nf.get("typed_config", {}).get("http_filters", []),
                      f"static_resources.listeners[{li}].filter_chains[{ci}].filters[{ni}].typed_config.http_filters")
    for c in sr.get("clusters", []):
        name = c.get("name")
        ct = c.get("cluster_type", {})
        if ct.get("name") == "envoy.clusters.aggregate":
            aggregates[name] = ct.get("typed_config", {}).get("clusters", [])
        eps = []
        for ep in c.get("load_assignment", {}).get("endpoints", []):
            for lb in ep.get("lb_endpoints", []):
                md = lb.get("metadata", {}).get("filter_metadata", {}).get("aigw", {})
                eps.append({"provider": md.get("provider"), "region": md.get("region")})
        clusters[name] = eps
        opts = c.get("typed_extension_protocol_options", {})
        visit(opts.get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}).get("http_filters", []),
              f"static_resources.clusters[{name}].typed_extension_protocol_options.http_filters")
    return filters, clusters, aggregates


def chains(path, cfg):
    """The renderer's check of fallback chains against clusters and routes."""
    try:
        found = render_envoy.check_chains(cfg)
    except (KeyError, TypeError, UnboundLocalError, ValueError):
        return []  # no route stage in this configuration
    return [{"file": path, "path": "static_resources (fallback chains)", "severity": "error", "message": p}
            for p in found]


def env_keys(node):
    """Every environment variable name the configuration's Wasm VMs read (host_env_keys)."""
    if isinstance(node, dict):
        keys = list(node.get("host_env_keys", [])) if isinstance(node.get("host_env_keys"), list) else []
        return keys + [k for v in node.values() for k in env_keys(v)]
    if isinstance(node, list):
        return [k for v in node for k in env_keys(v)]
    return []


def envoy_validate(path, cfg):
    """`envoy --mode validate`. Filters configured inline are loaded and configured by Envoy (the
    real .wasm modules compile their configuration); the secrets they read from the environment
    are not needed for that, so any that is unset is given a placeholder."""
    if not os.path.exists(ENVOY):
        return [{"file": path, "path": "", "severity": "error", "message": f"no Envoy at {ENVOY} to validate with"}]
    env = dict(os.environ)
    for k in env_keys(cfg):
        env.setdefault(k, "aigw-validate-placeholder")
    out = subprocess.run([ENVOY, "--mode", "validate", "-c", path, "-l", "error"], capture_output=True, text=True,
                         timeout=120, env=env)
    if out.returncode == 0:
        return []
    text = (out.stdout + out.stderr).strip().splitlines()
    return [{"file": path, "path": "", "severity": "error",
             "message": "envoy --mode validate: " + (text[-1] if text else f"exit {out.returncode}")}]


def policy_allowances(path=POLICY):
    """The models the policy file (envoy/validate.json) allows to be unpriced, each with why."""
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return list(json.load(f).get("allow_unpriced", {}))


def task_rules(filters, table, bench_path, now=None):
    """Each task route rule of the listener's route stage, resolved again from `table`."""
    import datetime

    when = None
    if now:
        when = datetime.datetime.fromisoformat(now.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
    out = []
    for f in filters:
        if f["root_id"] not in ("route_select", "gateway"):
            continue
        try:
            conf = json.loads(f["configuration"])
        except ValueError:
            continue  # the checker reports a configuration that is not JSON
        route = _route_of(f)
        rules = benchmarks.task_rules(route)
        if not rules:
            continue
        book = conf.get("price_book") or next(
            (json.loads(g["configuration"]).get("price_book") for g in filters
             if g["group"] == f["group"] and g["root_id"] in ("audit_emit", "quota")), None)
        for i, r in enumerate(route.get("rules", [])):
            if "task" not in r:
                continue
            at = f"{f['path']}.configuration{'.route' if f['root_id'] == 'gateway' else ''}.rules[{i}]"
            try:
                alias, why = benchmarks.resolve(dict(r), route, book, table, when)
            except (benchmarks.TaskRuleError, KeyError, TypeError, ValueError) as e:
                out.append({"file": f["file"], "path": at, "severity": "error", "message": f"{e} ({bench_path})"})
                continue
            out.append({"file": f["file"], "path": at, "severity": "note", "message": "\n    ".join(why)})
            if r.get("alias") != alias:
                out.append({"file": f["file"], "path": at, "severity": "warning",
                            "message": f"{bench_path} now resolves task rule {r.get('name')!r} to {alias!r}, "
                                       f"but the configuration sends it to {r.get('alias')!r}: re-render and push"})
    if out:
        for task, model, age in benchmarks.stale_entries(table, when):
            out.append({"file": bench_path, "path": f"tasks.{task}.{model}", "severity": "warning",
                        "message": f"benchmark of {model} for {task} is "
                                   + (f"{age} days old" if age is not None else "undated")
                                   + f" (max_age_days {table.get('max_age_days', 90)}): run the evaluation again"})
    return out


def validate(paths, now=None, allow_unpriced=(), run_envoy=True, policy=POLICY, bench_path=benchmarks.DEFAULT_PATH):
    """Every problem of the Envoy configurations at `paths`, as dicts."""
    allow_unpriced = [*allow_unpriced, *policy_allowances(policy)]
    problems, filters, clusters, aggregates = [], [], {}, {}
    for path in paths:
        try:
            cfg = load(path)
        except Exception as e:  # noqa: BLE001 (a file that is not YAML is a problem to report)
            problems.append({"file": path, "path": "", "severity": "error", "message": f"not YAML or JSON: {e}"})
            continue
        if run_envoy:
            problems += envoy_validate(path, cfg)
        ecds = inline_ecds(cfg)
        f, c, a = extract(path, cfg, ecds)
        filters += f
        clusters[path], aggregates[path] = c, a
        if f:
            problems += chains(path, cfg)
    if filters:
        if not os.path.exists(CHECKER):
            raise SystemExit(f"aigw validate: {CHECKER} is missing (cargo build --release -p aigw-validate)")
        doc = {"filters": filters, "clusters": clusters, "aggregates": aggregates, "allow_unpriced": list(allow_unpriced)}
        if now:
            doc["now"] = now
        out = subprocess.run([CHECKER], input=json.dumps(doc), capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise SystemExit(f"aigw validate: {out.stderr.strip()}")
        problems += [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        if any(benchmarks.task_rules(_route_of(f)) for f in filters):
            try:
                table = benchmarks.load(bench_path)
            except (OSError, ValueError) as e:
                problems.append({"file": bench_path, "path": "", "severity": "error",
                                 "message": f"task rules need the benchmark table: {e}"})
            else:
                problems += task_rules(filters, table, bench_path, now)
    return problems


def _route_of(f):
    try:
        conf = json.loads(f["configuration"])
    except ValueError:
        return {}
    return conf.get("route", {}) if f["root_id"] == "gateway" else conf


def shipped(tmp):
    """The project's own configurations, rendered: both layouts (with ECDS files, as scripts/run
    does), and the examples."""
    paths = []
    for layout in ("gateway", "filters"):
        d = os.path.join(tmp, layout)
        os.makedirs(d, exist_ok=True)
        out = os.path.join(d, "envoy.yaml")
        render_envoy.render_to(out, {"LAYOUT": layout, "ECDS_DIR": os.path.join(d, "ecds"),
                                     "ACCESS_LOG": os.path.join(d, "audit.log")})
        paths.append(out)
    return paths + sorted(glob.glob(os.path.join(ROOT, "envoy", "examples", "*.yaml")))


def report(problems, as_json):
    for p in problems:
        if as_json:
            print(json.dumps(p))
        else:
            where = f"{p['file']}: {p['path']}" if p["path"] else p["file"]
            print(f"{p['severity']}: {where}\n    {p['message']}")
    errors = sum(p["severity"] == "error" for p in problems)
    warnings = sum(p["severity"] == "warning" for p in problems)
    if not as_json:
        print(f"{errors} errors, {warnings} warnings")
    return errors


def main(argv):
    ap = argparse.ArgumentParser(prog="aigw validate", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--now", help="check expiry and sunsets at this UTC time (default: now)")
    ap.add_argument("--allow-unpriced", default="", help="more models allowed to have no price (comma-separated)")
    ap.add_argument("--no-envoy", action="store_true", help="skip envoy --mode validate")
    ap.add_argument("--policy", default=POLICY, help="accepted exceptions (default: envoy/validate.json)")
    ap.add_argument("--benchmarks", default=benchmarks.DEFAULT_PATH,
                    help="the benchmark table task rules are resolved from (default: envoy/benchmarks.json)")
    ap.add_argument("configs", nargs="*")
    a = ap.parse_args(argv)
    allow = [m for m in a.allow_unpriced.split(",") if m]
    with tempfile.TemporaryDirectory() as tmp:
        paths = a.configs or shipped(tmp)
        problems = validate(paths, a.now, allow, not a.no_envoy, a.policy, a.benchmarks)
        return 1 if report(problems, a.json) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
