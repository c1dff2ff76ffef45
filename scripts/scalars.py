#!/usr/bin/env python3
"""Prints the scalars of a TensorBoard run folder as a table (every Nth step).

    .venv/bin/python scripts/scalars.py runs/puy_perez [--every 50] [--tags loss_output,loss_input]
"""
import argparse

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="a TensorBoard run folder")
    ap.add_argument("--every", type=int, default=1, help="print every Nth logged step")
    ap.add_argument("--tags", default="", help="comma-separated tags (default: all)")
    a = ap.parse_args()
    acc = EventAccumulator(a.run, size_guidance={"scalars": 0})
    acc.Reload()
    tags = [t for t in a.tags.split(",") if t] or sorted(acc.Tags()["scalars"])
    rows = {}
    for t in tags:
        for e in acc.Scalars(t):
            rows.setdefault(e.step, {})[t] = e.value
    print("step".rjust(8) + "".join(t[-14:].rjust(15) for t in tags))
    for i, step in enumerate(sorted(rows)):
        if i % a.every == 0 or i == len(rows) - 1:
            print(f"{step:8d}" + "".join(f"{rows[step].get(t, float('nan')):15.4e}" for t in tags))


if __name__ == "__main__":
    main()
