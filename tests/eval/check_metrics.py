#!/usr/bin/python3
"""mp_metrics against scikit-learn (Debian python3-sklearn) on the cases metrics_tool prints.

Every defined metric must match sklearn to 1e-12 (accuracy, precision, recall, F1, MCC,
ROC AUC = roc_auc_score, PR AUC = average_precision_score); undefined ones must be 0 (AUCs
null) and flagged: sklearn's zero_division=0 for precision/recall/F1, matthews_corrcoef's 0,
and roc_auc_score's refusal (one class only) for the AUCs.
Usage: metrics_tool | check_metrics.py
"""
import json
import math
import sys
import warnings

import numpy as np
from sklearn import metrics as skm

warnings.simplefilter("ignore")
passes = fails = 0
for line in sys.stdin:
    c = json.loads(line)
    s, t, thr = np.array(c["scores"], np.float64), np.array(c["truth"], int), c["threshold"]
    p = (s >= thr).astype(int)
    bad = []

    def close(name, ours, theirs):
        if not math.isclose(ours, theirs, rel_tol=1e-12, abs_tol=1e-12):
            bad.append(f"{name} {ours!r} != sklearn {theirs!r}")

    close("accuracy", c["accuracy"], skm.accuracy_score(t, p))
    close("precision", c["precision"], skm.precision_score(t, p, zero_division=0))
    close("recall", c["recall"], skm.recall_score(t, p, zero_division=0))
    close("f1", c["f1"], skm.f1_score(t, p, zero_division=0))
    close("mcc", c["mcc"], skm.matthews_corrcoef(t, p))
    tn, fp, fn, tp = skm.confusion_matrix(t, p, labels=[0, 1]).ravel()
    if (c["tp"], c["fp"], c["tn"], c["fn"]) != (tp, fp, tn, fn):
        bad.append(f"confusion {c['tp'], c['fp'], c['tn'], c['fn']} != sklearn {tp, fp, tn, fn}")
    if c["precision_undefined"] != int(tp + fp == 0) or c["recall_undefined"] != int(tp + fn == 0):
        bad.append("precision/recall undefined flags")
    if c["mcc_undefined"] != int((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn) == 0):
        bad.append("mcc undefined flag")
    one_class = len(set(t.tolist())) < 2
    if one_class:
        if c["roc_auc"] is not None or c["pr_auc"] is not None or not c["auc_undefined"]:
            bad.append("AUCs of a one-class set must be null and flagged")
    else:
        close("roc_auc", c["roc_auc"], skm.roc_auc_score(t, s))
        close("pr_auc", c["pr_auc"], skm.average_precision_score(t, s))
    if bad:
        fails += 1
        print(f"FAIL {c['case']}: " + "; ".join(bad))
    else:
        passes += 1
        auc = "AUCs undefined (flagged)" if one_class else f"ROC AUC {c['roc_auc']:.4f} PR AUC {c['pr_auc']:.4f}"
        print(f"ok   {c['case']}: n={len(t)} MCC {c['mcc']:.4f} F1 {c['f1']:.4f} {auc}")
print(f"{passes} passed, {fails} failed")
sys.exit(0 if fails == 0 and passes >= 8 else 1)
