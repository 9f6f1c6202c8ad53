#!/usr/bin/env python3
"""Compares the loss columns of two runs' metrics.csv files, row by row, as text:
equal text means bit-for-bit the same losses at the precision wmx writes them.

    scripts/compare_metrics.py runs-before/base/<id>/metrics.csv runs-after/base/<id>/metrics.csv

Prints the first and last rows of each and exits 1 on the first differing row.
"""
import csv
import sys

LOSSES = ("stage", "epoch", "step", "learning_rate", "text_loss", "grad_norm")


def rows(path):
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    columns = [c for c in table[0] if c in LOSSES or c.startswith("wat_loss_")]
    return columns, [[r[c] for c in columns] for r in table]


def main(before, after):
    columns, a = rows(before)
    columns_b, b = rows(after)
    if columns != columns_b:
        print(f"columns differ: {columns} vs {columns_b}")
        return 1
    print(",".join(columns))
    for name, table in (("before", a), ("after", b)):
        print(f"{name}: {len(table)} rows")
        print(f"  first {','.join(table[0])}")
        print(f"  last  {','.join(table[-1])}")
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            print(f"row {i + 1} differs:\n  before {','.join(x)}\n  after  {','.join(y)}")
            return 1
    if len(a) != len(b):
        print(f"the first {min(len(a), len(b))} rows are equal, but one run has more")
        return 1
    print(f"all {len(a)} rows equal in {', '.join(columns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
