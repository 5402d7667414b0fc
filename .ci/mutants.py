#!/usr/bin/env python3
"""Re-apply the mutants that once survived the test suite and check that each now fails a test.

Usage (from anywhere in the repository): python3 .ci/mutants.py [M1 M2 ...]

Each mutant is one exact text replacement in one file: the script applies it, runs the tests of the packages
it names, records the failing tests, and restores the file (also on Ctrl-C). A mutant whose text is no longer
found is reported as STALE: update its entry when the code it mutates changes. Exit status 1 when a mutant
survives or is stale. Add the mutant of every bug a new test is written for.
"""
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# (id, what the bug is, file, original text, mutated text, packages to test)
MUTANTS = [
    ("M1", "Groups: g1 summed over the groups instead of averaged", "optimizers/gr/groups.go",
     "\ts.allGrad = s.meanOf(sum)\n", "\ts.allGrad = sum\n", ["./optimizers/gr"]),
    ("M2", "state keyed by variable name only (not its scope)", "optimizers/gr/state.go",
     "\t\tif v.Scope() != context.RootScope {\n\t\t\tsc += v.Scope()\n\t\t}\n", "", ["./optimizers/gr"]),
    ("M3", "bfloat16 gradients not widened to float32", "optimizers/gr/lowprec.go",
     "\t\tif isLowPrecision(xi.DType()) {\n\t\t\tout[i] = graph.ConvertDType(xi, dtypes.Float32)\n\t\t}\n", "",
     ["./optimizers/gr"]),
    ("M4", "theta + o summed in bfloat16 (o rounded first)", "optimizers/gr/lowprec.go",
     "\t\t\tout[i] = graph.ConvertDType(graph.Add(graph.ConvertDType(theta, o.DType()), o), theta.DType())\n",
     "\t\t\tout[i] = graph.Add(theta, graph.ConvertDType(o, theta.DType()))\n", ["./optimizers/gr"]),
    ("M5", "guard tests the loss but not the gradient", "optimizers/gr/compose.go",
     "prep.ok = graph.LogicalAnd(allFinite(s.stepLoss()), allFinite(all...))",
     "prep.ok = allFinite(s.stepLoss())", ["./optimizers/gr"]),
    ("M6", "both-branch Every graph: curvature of the full branch published on reuse steps",
     "optimizers/gr/compose.go", "\ts.publishMetrics(ascent)\n", "\ts.publishMetrics(nil)\n", ["./optimizers/gr"]),
    ("M7", "NaN-loss steps counted as fallbacks (equivalent: the guard restores the counter on skipped steps)",
     "optimizers/gr/compose.go", "graph.LogicalAnd(allFinite(s.stepLoss()), allFinite(s.grad...)))",
     "allFinite(s.grad...))", ["./optimizers/gr"]),
    ("M9", "Exclude ignored: excluded variables perturbed and given the method's gradient", "optimizers/gr/mask.go",
     "if c.excludeRE != nil && c.excludeRE.MatchString(v.ScopeAndName()) {",
     "if false && c.excludeRE.MatchString(v.ScopeAndName()) {", ["./optimizers/gr"]),
    ("M8", "flooding/iFlood/SoftAD: boolean labels[0] taken as the mask", "regularizers/common.go",
     "if i == 0 || extra == nil", "if _ = i; extra == nil", ["./regularizers"]),
    ("M10", "Every: the correction computed before the fallback stored (not the 0 of a fallback step)",
     "optimizers/gr/compose.go",
     "\t\tg = s.withFallback(s.groupsGrad()) // Steps 2 and 3.\n\t\tif store {\n\t\t\tcorr = grvec.SubVec(g, s.grad)",
     "\t\traw := s.groupsGrad()\n\t\trawCopy := append([]*Node{}, raw...)\n\t\tg = s.withFallback(raw)\n\t\tif store {\n\t\t\tcorr = grvec.SubVec(rawCopy, s.grad)",
     ["./optimizers/gr"]),
    ("M11", "FollowLearningRate: lrMin dropped (only a non-zero floor shows it)", "optimizers/gr/schedule.go",
     "frac := graph.DivScalar(graph.AddScalar(lr, -lrMin), lrMax-lrMin)", "frac := graph.DivScalar(lr, lrMax-lrMin)",
     ["./optimizers/gr"]),
    ("M12", "grcheckpoint: a decoding error of a gzip .bin ignored", "optimizers/grcheckpoint/grcheckpoint.go",
     "\traw, err := io.ReadAll(zr)\n\tif err != nil {", "\traw, _ := io.ReadAll(zr)\n\tif false {",
     ["./optimizers/grcheckpoint"]),
    ("M13", "grcheckpoint: the .json renamed first in a commit", "optimizers/grcheckpoint/grcheckpoint.go",
     "for _, suffix := range []string{checkpoints.BinDataSuffix, MetaSuffix, checkpoints.JsonNameSuffix} {\n\t\tsrc :=",
     "for _, suffix := range []string{checkpoints.JsonNameSuffix, checkpoints.BinDataSuffix, MetaSuffix} {\n\t\tsrc :=",
     ["./optimizers/grcheckpoint"]),
    ("M14", "grcheckpoint: metric variables of a loaded checkpoint carried on", "optimizers/grcheckpoint/grcheckpoint.go",
     "\t\tif isMetricVariable(name) {\n\t\t\tdelete(h.gomlx.LoadedVariables(), name)",
     "\t\tif isMetricVariable(name) {\n\t\t\tcontinue", ["./optimizers/grcheckpoint"]),
    ("M15", "runner: -set=gr_method keeps the defaults of -method's method", "examples/internal/run/settings.go",
     "if eff != grMethod { // -set chose", "if false { // -set chose", ["./examples/internal/run"]),
]

# Mutants that cannot change any result (kept in the list so that the reason stays written down).
EQUIVALENT = {"M7"}


def main():
    wanted = set(sys.argv[1:])
    bad = 0
    for mid, what, path, old, new, pkgs in MUTANTS:
        if wanted and mid not in wanted:
            continue
        full = os.path.join(ROOT, path)
        with open(full, encoding="utf-8") as f:
            src = f.read()
        if src.count(old) != 1:
            print(f"{mid} STALE ({what}): the text to mutate occurs {src.count(old)} times in {path}")
            bad += 1
            continue
        try:
            with open(full, "w", encoding="utf-8") as f:
                f.write(src.replace(old, new))
            run = subprocess.run(["go", "test", "-count=1", *pkgs], cwd=ROOT, capture_output=True, text=True)
        finally:
            with open(full, "w", encoding="utf-8") as f:
                f.write(src)
        out = run.stdout + run.stderr
        failing = sorted({t for t in re.findall(r"--- FAIL: (\S+)", out) if "/" not in t})
        if run.returncode == 0:
            status = "EQUIVALENT (survives, as expected)" if mid in EQUIVALENT else "SURVIVED"
            bad += mid not in EQUIVALENT
        elif "build failed" in out or "[setup failed]" in out:
            status = "BUILD FAILED (fix the mutant's text)"
            bad += 1
        else:
            status = "killed by " + (", ".join(failing) or "a failing test run")
        print(f"{mid} {what}: {status}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
