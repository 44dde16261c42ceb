"""Reads a publish folder the way downstream systems would.

Usage: published_peer.py PUBLISH_DIR

Follows PUBLISH_DIR/latest, reads weights.parquet with pyarrow and with
DuckDB, checks the schema against data/SCHEMA.md's `weights` table and that
the weights sum to 1 per segment, and validates weights.json against
weights.schema.json with the jsonschema package (Draft 2020-12). Prints one
JSON line.
"""
import json
import os
import sys

import duckdb
import jsonschema
import pyarrow.parquet as pq

EXPECTED = [
    ("target_period", "string", False),
    ("segment_id", "uint32", False),
    ("segment_name", "string", False),
    ("scheme_id", "string", False),
    ("weight", "double", False),
    ("previous_weight", "double", True),
    ("holdout_share", "double", False),
    ("reason", "string", False),
]


def main():
    latest = os.path.join(sys.argv[1], "latest")
    table = pq.read_table(os.path.join(latest, "weights.parquet"))
    schema = [(f.name, str(f.type), f.nullable) for f in table.schema]
    sums = duckdb.sql(
        f"select segment_id, sum(weight) as total, count(*) as schemes "
        f"from read_parquet('{os.path.join(latest, 'weights.parquet')}') group by segment_id order by segment_id"
    ).fetchall()
    with open(os.path.join(latest, "weights.json")) as f:
        rows = json.load(f)
    with open(os.path.join(latest, "weights.schema.json")) as f:
        weights_schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(weights_schema)
    errors = [e.message for e in jsonschema.Draft202012Validator(weights_schema).iter_errors(rows)]
    # A broken copy must fail: the validator is really checking.
    broken = [dict(rows[0], weight=1.5)] + rows[1:]
    broken_errors = list(jsonschema.Draft202012Validator(weights_schema).iter_errors(broken))
    print(json.dumps({
        "schema_matches": schema == [(n, t, null) for n, t, null in EXPECTED],
        "schema": schema,
        "rows": table.num_rows,
        "json_rows": len(rows),
        "segment_sums": [[s, t, n] for s, t, n in sums],
        "json_errors": errors,
        "broken_copy_rejected": len(broken_errors) > 0,
    }))


if __name__ == "__main__":
    main()
