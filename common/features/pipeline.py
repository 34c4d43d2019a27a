"""Shallow classifiers on hand-crafted features: an RBF SVM (Cortes & Vapnik 1995) and a random forest (Breiman 2001)
in scikit-learn Pipelines, their hyper-parameters chosen by stratified k-fold cross-validation on the training set
alone (GridSearchCV inside; nothing else is passed in, so a validation or test image cannot enter the search)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

CLASSIFIERS = ("svm", "rf")


@dataclass(frozen=True)
class ShallowParams:
    folds: int = 5                                      # at most; fewer when a class has fewer training images
    svm_c: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    svm_gamma: tuple[str | float, ...] = ("scale", 0.1)  # 0.1 x scale's 1 / (D var): smoother, for small n
    rf_trees: int = 200
    rf_max_features: tuple[str | float, ...] = ("sqrt", 0.1)
    rf_min_leaf: tuple[int, ...] = (1, 3)


def make_pipeline(method: str, params: ShallowParams, seed: int, n_features: int) -> tuple[Pipeline, dict]:
    """The estimator of ``method`` and its hyper-parameter grid (Pipeline step names as GridSearchCV keys)."""
    if method == "svm":
        pipe = Pipeline([("scale", StandardScaler()), ("svm", SVC(kernel="rbf"))])
        # a numeric gamma is relative to "scale" = 1 / D for standardised features
        gammas = [g if g == "scale" else float(g) / n_features for g in params.svm_gamma]
        return pipe, {"svm__C": list(params.svm_c), "svm__gamma": gammas}
    if method == "rf":
        pipe = Pipeline([("rf", RandomForestClassifier(n_estimators=params.rf_trees, random_state=seed, n_jobs=1))])
        return pipe, {"rf__max_features": list(params.rf_max_features),
                      "rf__min_samples_leaf": list(params.rf_min_leaf)}
    raise ValueError(f"unknown shallow classifier {method!r}; choose from {', '.join(CLASSIFIERS)}")


def fit_shallow(features: np.ndarray, labels: np.ndarray, method: str, params: ShallowParams = ShallowParams(),
                seed: int = 0) -> GridSearchCV | Pipeline:
    """Choose the hyper-parameters by stratified CV (AUROC) on ``features`` (N, D) / ``labels`` (N,) and refit on
    all N. A class with a single image leaves no CV split: the grid's first values are fitted then."""
    features, labels = np.asarray(features, np.float64), np.asarray(labels).astype(int)
    assert features.ndim == 2 and len(features) == len(labels), (features.shape, labels.shape)
    pipe, grid = make_pipeline(method, params, seed, features.shape[1])
    counts = np.bincount(labels, minlength=2)
    if len(counts) != 2 or counts.min() == 0:
        raise ValueError(f"a binary classifier needs both classes among the training labels, got counts {counts}")
    folds = min(params.folds, int(counts.min()))
    if folds < 2:
        return pipe.set_params(**{k: v[0] for k, v in grid.items()}).fit(features, labels)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return GridSearchCV(pipe, grid, scoring="roc_auc", cv=cv, refit=True, n_jobs=1).fit(features, labels)


def decision_scores(model, features: np.ndarray) -> np.ndarray:
    """A score that ranks positives above negatives: the SVM's decision function, the forest's P(class 1)."""
    est = model.best_estimator_ if isinstance(model, GridSearchCV) else model
    features = np.asarray(features, np.float64)
    if hasattr(est, "decision_function"):
        return np.asarray(est.decision_function(features), np.float64)
    return np.asarray(est.predict_proba(features)[:, 1], np.float64)


def chosen(model) -> dict:
    """The hyper-parameters in use and the best CV AUROC (None without a search)."""
    if isinstance(model, GridSearchCV):
        return {"params": {k: v for k, v in model.best_params_.items()}, "cv_auroc": float(model.best_score_),
                "cv_folds": int(model.n_splits_)}
    return {"params": {}, "cv_auroc": None, "cv_folds": 0}
