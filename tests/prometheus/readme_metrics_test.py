#!/usr/bin/python3
"""The README's metrics table against a real server's /metrics.

Every family in the table exists on /metrics with exactly the labels the
table gives, of the type it gives; every registrar_*, grpc_server_* and
process_* family on /metrics is in the table.

usage: readme_metrics_test.py REGISTRAR_BINARY README.md
"""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "pylib"))
from registrar_process import Registrar, family_labels  # noqa: E402

OURS = ("registrar_", "grpc_server_", "process_")


def readme_table(path):
    """{family: (type, {labels})} from the table under '## Metrics'."""
    with open(path) as f:
        text = f.read()
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 3:
            raise AssertionError(f"README metrics row with too few cells: "
                                 f"{row}")
        names = re.findall(r"`([a-z_]+)`", cells[0])
        labels = set(re.findall(r"`([a-z_]+)`", cells[2]))
        if len(names) != 1:
            raise AssertionError(f"one metric per README row: {row}")
        if names[0] in table:
            raise AssertionError(f"{names[0]} is in the README table twice")
        table[names[0]] = (cells[1], labels)
    return table


def main():
    binary, readme = sys.argv[1], sys.argv[2]
    table = readme_table(readme)
    assert len(table) >= 20, f"only {len(table)} rows parsed from the README"
    with Registrar(binary, ["--store=rocksdb"]) as server:
        types, live = family_labels(server.scrape())
    errors = []
    for name, (kind, labels) in sorted(table.items()):
        if name not in live:
            errors.append(f"README lists {name}, /metrics has no such family")
            continue
        if types.get(name) != kind:
            errors.append(f"{name}: README says {kind}, /metrics says "
                          f"{types.get(name)}")
        if live[name] != labels:
            errors.append(f"{name}: README labels {sorted(labels)}, /metrics "
                          f"labels {sorted(live[name])}")
    ours_live = [n for n in live if n.startswith(OURS)]
    assert len(ours_live) >= 20, f"only {len(ours_live)} families on /metrics"
    for name in sorted(ours_live):
        if name not in table:
            errors.append(f"/metrics has {name} ({types.get(name)}, labels "
                          f"{sorted(live[name])}), the README table does not")
    if errors:
        print("\n".join(errors))
        return 1
    print(f"README metrics table matches /metrics: {len(table)} families")
    return 0


if __name__ == "__main__":
    sys.exit(main())
