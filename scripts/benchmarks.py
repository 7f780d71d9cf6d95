"""Benchmark-validated routing: resolves task route rules from envoy/benchmarks.json.

A route rule may name a task instead of an alias:

    {"name": "summaries", "task": "summarize", "min_score": 0.8, "match": {"models": ["chat"]},
     "among": ["chat", "chat-openai-first", "chat-gemini"]}

It is resolved, when the configuration is rendered (scripts/render_envoy.py) and again when it
is checked (`scripts/aigw validate`), to the cheapest alias whose chain meets the score:

- the candidates are the rule's `among` (default: every chat alias), each with its canary's
  alias when it has one (a canary slice must meet the score too);
- a candidate qualifies when EVERY step's model (the fallbacks serve the task too) has an entry
  for the task scoring at least `min_score`;
- its price is the first step's model (the one that serves while the provider is up), from the
  price book, for the task's typical call (`typical_calls`; default 1,000 tokens in and out);
- the cheapest qualifying candidate wins; ties go to the higher lowest score, then the name.

Entries older than `max_age_days` (default 90) are warned about; they still count.
"""

import datetime
import json
import os
from decimal import Decimal, InvalidOperation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PATH = os.path.join(ROOT, "envoy", "benchmarks.json")
DEFAULT_CALL = {"input_tokens": 1000, "output_tokens": 1000}


class TaskRuleError(ValueError):
    """A task rule that cannot be resolved (no candidate qualifies, an unknown task, ...)."""


def load(path=DEFAULT_PATH):
    with open(path) as f:
        table = json.load(f)
    table.pop("_comment", None)
    return table


def _price(book, model):
    p = (book or {}).get("models", {}).get(model)
    if not p:
        return None
    try:
        return Decimal(str(p["input"])), Decimal(str(p["output"]))
    except (KeyError, InvalidOperation):
        return None


def _usd(d):
    return f"USD {d.normalize():f}" if d else "USD 0"


def _age_days(date, now):
    try:
        day = datetime.date.fromisoformat(str(date)[:10])
    except ValueError:
        return None
    return (now.date() - day).days


def stale_entries(table, now=None):
    """(task, model, age in days) of every entry older than max_age_days (or with no date)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    max_age = table.get("max_age_days", 90)
    out = []
    for task, models in sorted(table.get("tasks", {}).items()):
        for model, e in sorted(models.items()):
            age = _age_days(e.get("date"), now)
            if age is None or age > max_age:
                out.append((task, model, age))
    return out


def resolve(rule, route, book, table, now=None):
    """Resolves one task rule against a route configuration (its aliases), a price book and a
    benchmark table. Returns (alias, why: list of lines). Raises TaskRuleError."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    name, task = rule.get("name"), rule["task"]
    if "min_score" not in rule:
        raise TaskRuleError(f"task rule {name!r} has no min_score")
    min_score = float(rule["min_score"])
    scores = table.get("tasks", {}).get(task)
    if scores is None:
        raise TaskRuleError(f"task rule {name!r}: the benchmarks have no task {task!r} "
                            f"(they have: {', '.join(sorted(table.get('tasks', {}))) or 'none'})")
    call = {**DEFAULT_CALL, **table.get("typical_calls", {}).get(task, {})}
    aliases = route.get("aliases", {})
    among = rule.get("among") or sorted(a for a, v in aliases.items() if v.get("kind", "chat") == "chat")
    max_age = table.get("max_age_days", 90)
    qualifying, rejected = [], []
    for cand in among:
        a = aliases.get(cand)
        if a is None:
            raise TaskRuleError(f"task rule {name!r}: `among` names {cand!r}, which is not an alias")
        if a.get("kind", "chat") != "chat":
            rejected.append(f"{cand!r}: an embeddings alias")
            continue
        steps = list(a.get("steps", []))
        canary = (a.get("canary") or {}).get("alias")
        if canary in aliases:
            steps += aliases[canary].get("steps", [])
        problem, lowest = None, None
        for s in steps:
            e = scores.get(s["model"])
            if e is None:
                problem = f"no benchmark of {s['model']} for {task}"
                break
            if float(e["score"]) < min_score:
                problem = f"{s['model']} scores {e['score']} < {min_score} (n={e.get('samples')}, {e.get('date')})"
                break
            lowest = min(lowest if lowest is not None else 1e9, float(e["score"]))
        if problem:
            rejected.append(f"{cand!r}: {problem}")
            continue
        first = steps[0]["model"]
        price = _price(book, first)
        if price is None:
            rejected.append(f"{cand!r}: {first} has no price in the price book")
            continue
        cost = (price[0] * call["input_tokens"] + price[1] * call["output_tokens"]) / Decimal(1_000_000)
        qualifying.append((cost, -lowest, cand, first, steps))
    if not qualifying:
        raise TaskRuleError(f"task rule {name!r}: no alias meets min_score {min_score} on {task!r}: "
                            + "; ".join(rejected))
    qualifying.sort(key=lambda q: (q[0], q[1], q[2]))
    cost, _, alias, first, steps = qualifying[0]

    def entry(model):
        e = scores[model]
        age = _age_days(e.get("date"), now)
        old = f", {age} days old" if age is None or age > max_age else ""
        return f"{model} {e['score']} (n={e.get('samples')}, {e.get('date')}{old})"

    why = [f"rule {name!r} (task {task}, min_score {min_score}) -> alias {alias!r}: "
           f"{first} first, {_usd(cost)} per typical call ({call['input_tokens']} tokens in, "
           f"{call['output_tokens']} out); every step meets the score: "
           + ", ".join(entry(s["model"]) for s in steps)]
    for c, _, other, f, _ in qualifying[1:]:
        why.append(f"  also qualifying, dearer: {other!r} ({f}, {_usd(c)})")
    for r in rejected:
        why.append(f"  not qualifying: {r}")
    return alias, why


def task_rules(route):
    return [r for r in route.get("rules", []) if "task" in r]


def resolve_route(route, book, table, now=None):
    """Sets `alias` on every task rule of a route configuration (in place). Returns the
    explanation lines. Raises TaskRuleError."""
    lines = []
    for r in task_rules(route):
        alias, why = resolve(r, route, book, table, now)
        r["alias"] = alias
        lines += why
    return lines
