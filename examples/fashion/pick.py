#!/usr/bin/env python3
"""Pick hyperparameters on validation data from examples/fashion's JSON files.

    python3 examples/fashion/pick.py docs/runs/fashion/noise40na-lr-*/fashion_compare.json

Every run of every file is grouped by its entry (e.g. "sgd:learning_rate=0.1"); the table gives, per entry,
the seeds it ran, the mean and standard deviation over those seeds of the validation accuracy (the
held-out part of the training subset, -val), and the means of the test and train accuracies. Within each
method the entry of best mean validation accuracy over the seeds all its entries share is marked "pick".
Only the standard library is used.
"""
import collections
import json
import statistics
import sys


def main(paths):
    runs = collections.defaultdict(dict)  # spec -> seed -> run
    for p in paths:
        with open(p) as f:
            for group in json.load(f)["runs"]:
                for r in group or []:  # a partial file (a run still going) has no runs for the entries to come
                    if r.get("val_accuracy") is None:
                        sys.exit(f"{p}: {r['spec']} seed {r['seed']} has no validation accuracy (run with -val)")
                    old = runs[r["spec"]].get(r["seed"])
                    if old is not None and old["settings"] != r["settings"]:
                        sys.exit(f"{p}: {r['spec']} seed {r['seed']} appears twice with different settings: "
                                 "give the files of one setting (e.g. one label noise) at a time")
                    runs[r["spec"]][r["seed"]] = r
    by_method = collections.defaultdict(list)
    for spec in runs:
        by_method[spec.split(":")[0]].append(spec)
    print("| entry | seeds | validation % | test % | train % (its labels) |")
    print("|---|---|---:|---:|---:|")
    for method, specs in by_method.items():
        shared = set.intersection(*(set(runs[s]) for s in specs))
        best = max(specs, key=lambda s: statistics.mean(runs[s][k]["val_accuracy"] for k in shared)) if shared else None
        for s in sorted(specs):
            seeds = sorted(runs[s])
            val = [100 * runs[s][k]["val_accuracy"] for k in seeds]
            test = [100 * runs[s][k]["test_accuracy"] for k in seeds]
            train = [100 * runs[s][k]["train_accuracy"] for k in seeds]
            sd = f" ± {statistics.stdev(val):.2f}" if len(val) > 1 else ""
            mark = " **pick**" if s == best and len(specs) > 1 else ""
            print(f"| {s}{mark} | {','.join(map(str, seeds))} | {statistics.mean(val):.2f}{sd} | "
                  f"{statistics.mean(test):.2f} | {statistics.mean(train):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
