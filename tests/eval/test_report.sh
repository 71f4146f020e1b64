#!/usr/bin/env bash
# `mammopatch report` on a small fixture experiment (no training, seconds): the report's
# configuration section is the configuration the experiment recorded, not the one given to
# `report`; a GAN sweep given to `report` only locates the sweep (and the report says it was
# read from there); a paired difference identical on every split is "no_variance" — no
# interval, never "excludes 0" / starred / called clear — in experiment.json, report.md,
# index.html, differences.csv and the highlights; an experiment.json written before that
# flag is upgraded by `report` from its own per-split numbers.
# Usage: test_report.sh MAMMOPATCH TESTS_DIR EXPERIMENT_TOOL
set -uo pipefail
mp=$1 tests=$2 tool=$3 mpiexec=
export OMP_NUM_THREADS=1 MAMMOPATCH_SITE_KEY=test-site-key-for-report-0123456
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
py() { /usr/bin/python3 - "$@"; }

# 1. the fixture: 2 splits x (baseline, gan) job directories with known metrics.  gan - baseline:
#    recall +0.05 on both splits (from different baselines: equal up to rounding, its std ~1e-17), MCC -0.1 on
#    both (exactly equal), precision -0.02 / -0.021 (its t interval excludes 0), F1 +0.02 / +0.04
#    (its interval contains 0); a sweep directory "moved" from the one the experiment recorded
py "$tmp/x" <<'PY' || bad "fixture"
import json, os, sys
out = sys.argv[1]
LEVELS = ("patch", "view", "patient")
base = {5: dict(accuracy=0.8, precision=0.7, recall=0.1, f1=0.65, mcc=0.5, roc_auc=0.85, pr_auc=0.75),
        6: dict(accuracy=0.82, precision=0.72, recall=0.7, f1=0.61, mcc=0.5, roc_auc=0.8, pr_auc=0.7)}
shift = {5: dict(recall=0.05, mcc=-0.1, precision=-0.02, f1=0.02), 6: dict(recall=0.05, mcc=-0.1, precision=-0.021, f1=0.04)}
for v in ("baseline", "gan"):
    for s in (5, 6):
        d = os.path.join(out, "runs", v, f"split-{s}")
        os.makedirs(d, exist_ok=True)
        m = {k: x + (shift[s].get(k, 0) if v == "gan" else 0) for k, x in base[s].items()}
        lv = dict(n=100, positives=30, confusion=dict(tp=18, fp=8, tn=62, fn=12), undefined=[],
                  roc=[[0, 0], [0.2, 0.7], [1, 1]], pr=[[0, 1], [0.6, 0.7], [1, 0.3]], **m)
        json.dump(dict(threshold=dict(value=0.5, chosen="fixed"), test={l: lv for l in LEVELS}),
                  open(os.path.join(d, "eval.json"), "w"))
        json.dump(dict(status="completed", train_patches=500, best=dict(epoch=2),
                       curve=[dict(epoch=e, train_loss=1.0 / e, validation=dict(loss=1.1 / e, mcc=0.1 * e, f1=0.1 * e))
                              for e in (1, 2)]), open(os.path.join(d, "train.json"), "w"))
for sw in ("sweep-recorded", "sweep-moved"):
    os.makedirs(os.path.join(out, sw), exist_ok=True)
    json.dump(dict(split_seed=5, fid=dict(extractor="domain", dimension=64, n_real=40, n_generated=40,
                                          real_vs_real_floor=1.0), runs=[], best=dict(run=f"{sw}-best", fid=12.5)),
              open(os.path.join(out, sw, "sweep.json"), "w"))
PY
"$tool" "$tmp/nostore.h5" "$tmp/x" 2 5 baseline gan > "$tmp/tool.log" 2>&1 || bad "aggregation tool: $(tail -2 "$tmp/tool.log")"
# the experiment's recorded configuration: what it "ran with" (the tool records the defaults)
py "$tmp/x" <<'PY' || bad "record the configuration"
import json, os, sys
p = os.path.join(sys.argv[1], "experiment.json")
x = json.load(open(p))
c = x["provenance"]["config"]
c["train"]["epochs"], c["train"]["lr"] = 4, 1e-4
c["experiment"]["gan_sweep"] = os.path.join(sys.argv[1], "sweep-recorded")
json.dump(x, open(p, "w"), indent=1)
PY

# 2. `report` given another configuration: train.* of its own, and a moved sweep
"$mp" report --experiment "$tmp/x" --store "$tmp/nostore.h5" --set train.epochs=999 --set train.lr=0.5 \
  --set experiment.gan_sweep="$tmp/x/sweep-moved" > "$tmp/r.log" 2>&1 && ok "report re-rendered" \
  || bad "report: $(tail -3 "$tmp/r.log")"
check() {
  py "$tmp/x" "$1" <<'PY'
import csv, json, os, re, sys
out, what = sys.argv[1], sys.argv[2]
rep = os.path.join(out, "report")
md = open(os.path.join(rep, "report.md")).read()
html = open(os.path.join(rep, "index.html")).read()
def fail(m):
    print(m)
    sys.exit(1)
if what == "config":
    ini = md.split("## Configuration", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    train = ini.split("[train]", 1)[1].split("\n[", 1)[0]
    if not re.search(r"^epochs = 4$", train, re.M) or not re.search(r"^lr = 0\.0001$", train, re.M):
        fail("report.md's configuration is not the recorded one (train.epochs 4, train.lr 1e-4):\n" + train[:800])
    if re.search(r"^epochs = 999$", ini, re.M) or re.search(r"^lr = 0\.5$", ini, re.M):
        fail("report.md's configuration shows the values given to `report` (train.epochs 999 / train.lr 0.5)")
    cfg_html = html.split('<section id="config">', 1)[1]
    if "epochs = 4\n" not in cfg_html or "epochs = 999" in cfg_html:
        fail("index.html's configuration section is not the recorded one")
    rec = os.path.join(out, "sweep-recorded")
    if not re.search(r"^gan_sweep = " + re.escape(rec) + "$", ini, re.M):
        fail(f"the configuration's experiment.gan_sweep is not the recorded {rec}")
    gan = md.split("## GAN augmentation", 1)[1].split("\n## ", 1)[0] if "## GAN augmentation" in md else ""
    if "sweep-moved" not in gan or "sweep-recorded" not in gan or "read from" not in gan:
        fail("the GAN section does not say its results were read from the sweep given to `report`:\n" + gan[:400])
    if "sweep-moved-best" not in html:
        fail("the GAN section did not read the sweep given to `report`")
    if 'id="report-settings"' not in html:
        fail("index.html names no report setting (the moved sweep) apart from the configuration")
    print("configuration = the recorded one (epochs 4, lr 1e-4); the sweep read from the given directory, said so")
elif what == "variance":
    x = json.load(open(os.path.join(rep, "experiment.json")))
    d = x["differences_from_baseline"]["gan"]
    for lv in ("patch", "view", "patient"):
        for m in ("recall", "mcc"):  # the same shift on both splits
            c = d[lv][m]
            if c["excludes_zero"] or not c.get("no_variance") or c["ci95"] is not None:
                fail(f"{lv} {m}: identical on both splits but {c}")
        c = d[lv]["precision"]
        if not c["excludes_zero"] or c.get("no_variance") or c["ci95"] is None:
            fail(f"{lv} precision: its interval excludes 0, but {c}")
        c = d[lv]["f1"]
        if c["excludes_zero"] or c.get("no_variance"):
            fail(f"{lv} f1: {c}")
    rows = {(r["level"], r["metric"]): r for r in csv.DictReader(open(os.path.join(rep, "differences.csv")))}
    for lv in ("patch", "view", "patient"):
        r = rows[(lv, "recall")]
        if r["no_variance"] != "1" or r["ci95_lo"] or r["ci95_hi"]:
            fail(f"differences.csv {lv} recall: {r}")
        if rows[(lv, "precision")]["no_variance"] != "0":
            fail(f"differences.csv {lv} precision: {rows[(lv, 'precision')]}")
    table = md.split("gan − baseline:", 1)[1].split("\n## ", 1)[0]
    for line in table.splitlines():
        if line.startswith("| patch"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            # level, accuracy, precision, recall, F1, MCC, ...
            if not cells[2].endswith("*") or cells[3].endswith("*") or cells[5].endswith("*"):
                fail(f"report.md patch row: {cells}")
            if not cells[3].endswith("†") or not cells[5].endswith("†"):
                fail(f"report.md patch row marks no identical difference: {cells}")
    if "identical on all 2 splits; no variance estimate" not in table:
        fail("report.md's differences table does not say 'identical on all 2 splits; no variance estimate'")
    if "identical on all 2 splits; no variance estimate" not in html.split('<section id="differences">', 1)[1]:
        fail("index.html's differences table does not name the identical differences")
    h = [s for s in x["highlights"] if s.startswith("gan vs baseline")][0]
    if "recall for patch-wise classification (" in h or "clear" not in h:
        fail(f"the highlight calls an identical difference clear: {h}")
    if "identical on all 2 splits; no variance estimate" not in h or "precision for patch-wise classification (" not in h:
        fail(f"the highlight: {h}")
    if h not in md:
        fail("report.md's highlights differ from experiment.json's")
    print("identical differences: no_variance, no interval, marked † not * (json, csv, md, html, highlight)")
PY
}
out=$(check config) && ok "$out" || bad "$out"
out=$(check variance) && ok "$out" || bad "$out"

# 3. an experiment.json from before the no_variance flag (a zero-width interval "excluding" 0):
#    `report` makes its differences and highlights again; the record itself is left alone
py "$tmp/x" <<'PY' || bad "the old record"
import json, os, sys
p = os.path.join(sys.argv[1], "experiment.json")
x = json.load(open(p))
for lv in x["differences_from_baseline"]["gan"].values():
    for c in lv.values():
        if c.pop("no_variance"):
            c["excludes_zero"], c["ci95"] = c["mean"] != 0, [c["mean"], c["mean"]]
x["highlights"] = ["gan vs baseline (2 paired splits): an old sentence"]
json.dump(x, open(p, "w"), indent=1)
PY
cp "$tmp/x/experiment.json" "$tmp/old.json"
"$mp" report --experiment "$tmp/x" --store "$tmp/nostore.h5" --set experiment.gan_sweep="$tmp/x/sweep-moved" \
  > "$tmp/r2.log" 2>&1 && grep -q "predates the no_variance flag" "$tmp/r2.log" && ok "an old record is upgraded (said so)" \
  || bad "report on an old record: $(tail -3 "$tmp/r2.log")"
cmp -s "$tmp/old.json" "$tmp/x/experiment.json" && ok "the experiment's own experiment.json is left as it is" \
  || bad "report rewrote DIR/experiment.json"
out=$(check variance) && ok "old record: $out" || bad "old record: $out"

finish
