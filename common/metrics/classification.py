"""Binary classification metrics as MURA reports them (accuracy, sensitivity/specificity, Cohen's kappa, AUROC).

Kappa and AUROC come from scikit-learn; the confusion-based ones are a few lines and tested against it.
"""

from __future__ import annotations

import numpy as np

from common.metrics._arrays import as_numpy, same_shape


def _labels(y_true, y_pred):
    y_true, y_pred = same_shape(y_true, y_pred, "classification metric")
    if y_true.ndim != 1:
        raise ValueError(f"expected 1D label vectors, got shape {y_true.shape}")
    return y_true.astype(int), y_pred.astype(int)


def binary_confusion(y_true, y_pred) -> dict:
    t, p = _labels(y_true, y_pred)
    return {"tp": int(((t == 1) & (p == 1)).sum()), "tn": int(((t == 0) & (p == 0)).sum()),
            "fp": int(((t == 0) & (p == 1)).sum()), "fn": int(((t == 1) & (p == 0)).sum())}


def accuracy(y_true, y_pred) -> float:
    t, p = _labels(y_true, y_pred)
    return float((t == p).mean()) if t.size else float("nan")


def sensitivity_specificity(y_true, y_pred) -> tuple[float, float]:
    """Sensitivity = TP/(TP+FN) (recall of abnormal), specificity = TN/(TN+FP); NaN when undefined."""
    c = binary_confusion(y_true, y_pred)
    sens = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else float("nan")
    spec = c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else float("nan")
    return float(sens), float(spec)


def cohen_kappa(y_true, y_pred) -> float:
    from sklearn.metrics import cohen_kappa_score

    t, p = _labels(y_true, y_pred)
    if len(np.unique(np.concatenate([t, p]))) < 2:  # sklearn returns NaN with a warning here
        return 1.0 if np.array_equal(t, p) else 0.0
    return float(cohen_kappa_score(t, p))


def auroc(y_true, scores) -> float:
    """Area under the ROC curve; NaN when only one class is present (undefined)."""
    from sklearn.metrics import roc_auc_score

    t, s = same_shape(y_true, scores, "auroc")
    t = as_numpy(t).astype(int)
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(roc_auc_score(t, as_numpy(s).astype(np.float64)))


def binary_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Kappa, AUROC, accuracy, sensitivity, specificity at threshold 0.5."""
    pred = (probs > 0.5).astype(int)
    sens, spec = sensitivity_specificity(labels, pred)
    return {"kappa": cohen_kappa(labels, pred), "auroc": auroc(labels, probs), "accuracy": accuracy(labels, pred),
            "sensitivity": sens, "specificity": spec, "n": int(len(labels))}
