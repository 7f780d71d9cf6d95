"""SQL over the gateway's audit log, with DuckDB, directly over the JSON lines.

    scripts/audit-sql [--zones FILE] [--format table|csv|json] [QUERY|FILE|REPORT] [LOG...]

QUERY is SQL text, FILE a .sql file, REPORT the name of a shipped query in reports/ (spend,
privacy, providers, top-keys, refusals). LOG defaults to .run/audit.log (what scripts/run
writes); several logs (replicas, rotated files, globs) are read as one. Without a query, lists
the shipped ones.

The query sees three views:
  audit     one row per call: every field of the audit record (README, "The audit record"),
            with `started`/`ended` as UTC timestamps and `cost` as an exact DECIMAL
  attempts  one row per upstream attempt, with its call's request_id, tenant, key_id,
            privacy_zone, alias and started
  zones     the privacy zones (zone, regions[]) from envoy/privacy-zones.json or --zones
"""

import argparse
import glob
import json
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "reports"

# The audit record, version 2, typed: a log that lacks a newer field reads it as NULL.
ATTEMPT = ("STRUCT(provider VARCHAR, region VARCHAR, model VARCHAR, status INTEGER, latency_ms BIGINT, "
           "error_class VARCHAR, credential VARCHAR)")
COLUMNS = {
    "version": "INTEGER", "request_id": "VARCHAR", "start_time_ms": "BIGINT", "end_time_ms": "BIGINT",
    "tenant": "VARCHAR", "feature": "VARCHAR", "agent": "VARCHAR", "key_id": "VARCHAR",
    "key_fingerprint": "VARCHAR", "door": "VARCHAR", "route": "VARCHAR", "alias": "VARCHAR", "slice": "VARCHAR",
    "workload_class": "VARCHAR", "privacy_zone": "VARCHAR", "provider": "VARCHAR", "model": "VARCHAR",
    "attempts": f"{ATTEMPT}[]", "status": "INTEGER", "outcome": "VARCHAR", "error_code": "VARCHAR",
    "stream": "BOOLEAN",
    "tokens": "STRUCT(input BIGINT, cached_input BIGINT, cache_write BIGINT, cache_write_1h BIGINT, output BIGINT, reasoning BIGINT)",
    "cost_usd": "VARCHAR", "price_book_version": "VARCHAR", "latency_ms": "BIGINT", "ttft_ms": "BIGINT",
    "cache_status": "VARCHAR", "cost_saved_usd": "VARCHAR",
    "cache_semantic": "STRUCT(similarity DOUBLE, would_serve VARCHAR, served BOOLEAN)",
    "compliance_flags": "VARCHAR[]", "flags": "VARCHAR[]",
}


def connect(logs, zones_file):
    con = duckdb.connect()
    files = sorted({f for pattern in logs for f in (glob.glob(pattern) or [pattern])})
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise SystemExit(f"audit-sql: no such log: {', '.join(missing)}")
    cols = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
    file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    con.execute(f"""
        CREATE VIEW audit AS
        SELECT *,
               make_timestamp(start_time_ms * 1000) AS started,
               make_timestamp(end_time_ms * 1000)   AS ended,
               cost_usd::DECIMAL(38, 12)            AS cost
        FROM read_json({file_list}, format = 'newline_delimited', columns = {{{cols}}})
    """)
    con.execute("""
        CREATE VIEW attempts AS
        SELECT request_id, tenant, key_id, privacy_zone, alias, started, a.*
        FROM (SELECT *, unnest(attempts) AS a FROM audit)
    """)
    zones = json.loads(Path(zones_file).read_text())["zones"]
    con.execute("CREATE TABLE zones (zone VARCHAR, regions VARCHAR[])")
    con.executemany("INSERT INTO zones VALUES (?, ?)", list(zones.items()))
    return con


def query_text(q):
    if (REPORTS / f"{q}.sql").is_file():
        return (REPORTS / f"{q}.sql").read_text()
    if q.endswith(".sql") or Path(q).is_file():
        return Path(q).read_text()
    return q


def main(argv):
    p = argparse.ArgumentParser(prog="audit-sql", description=__doc__.split("\n")[0])
    p.add_argument("--zones", default=str(ROOT / "envoy" / "privacy-zones.json"))
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("query", nargs="?")
    p.add_argument("logs", nargs="*")
    a = p.parse_args(argv)
    if not a.query:
        print("Shipped queries (reports/):")
        for f in sorted(REPORTS.glob("*.sql")):
            first = f.read_text().splitlines()[0].lstrip("- ")
            print(f"  {f.stem:10} {first}")
        return 0
    con = connect(a.logs or [str(ROOT / ".run" / "audit.log")], a.zones)
    try:
        rel = con.sql(query_text(a.query))
    except duckdb.Error as e:
        print(f"audit-sql: {e}", file=sys.stderr)
        return 2
    if rel is None:
        return 0
    if a.format == "table":
        rows = rel.fetchall()
        rel.show(max_rows=10_000, max_width=200)
        print(f"{len(rows)} rows")
    elif a.format == "csv":
        import csv
        w = csv.writer(sys.stdout)
        w.writerow(rel.columns)
        w.writerows(rel.fetchall())
    else:
        for row in rel.fetchall():
            print(json.dumps(dict(zip(rel.columns, row)), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
