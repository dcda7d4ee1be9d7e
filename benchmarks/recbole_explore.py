"""Quick validation-only exploration of seq_edlae variants under RecBole's protocol on MovieLens-1M (issue 12).

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 15 .venv/bin/python benchmarks/recbole_explore.py --stage grid_timeline

Loads the protocol's train / valid parts once (benchmarks/recbole_ml1m.py, cached in benchmarks/.cache), fits item-item
components on train and scores blends of them on validation: NDCG@10 / Recall@10 over every validation user, history =
train masked, exactly as benchmarks/recbole_ml1m.py scores candidates. Component score matrices (history @ weights,
scaled by seq_edlae's mean spread) are kept in memory so a blend costs one evaluation. Never looks at the test part.
Every variant is appended to benchmarks/results/recbole_explore.json (stage, variant, params, validation metrics,
seconds to fit its components on one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.linalg
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))

from recbole_ml1m import CACHE, RESULTS, load_protocol_data  # noqa: E402
from recbole_protocol import evaluate_scores  # noqa: E402
from ml_service.models.edlae import edlae_weights_from_gram  # noqa: E402

OUT = RESULTS / "recbole_explore.json"
SEED = 42


def load_split() -> dict[str, Any]:
    """train Interactions, the binary train history, the validation truth and sizes (pickled once)."""
    cached = CACHE / "recbole-explore-split.pkl"
    if cached.exists():
        return pickle.loads(cached.read_bytes())
    from ml_service.models.fields import history_matrix

    loaded = load_protocol_data()
    data, part = loaded["data"], loaded["part"]
    train = data.interactions.subset(part == 0)
    valid = data.interactions.subset(part == 1)
    split = {
        "train": train, "n_users": data.n_users, "n_items": data.n_items,
        "history": history_matrix(data, train, "binary"),
        "truth": data.interaction_matrix(valid).tocsr(),
        "per_item": len(train) / data.n_items,
    }
    cached.write_bytes(pickle.dumps(split))
    return split


class Explorer:
    def __init__(self, split: dict[str, Any]):
        self.split = split
        self.history: sp.csr_matrix = split["history"]
        self.train = split["train"]
        self.n_items: int = split["n_items"]
        self.per_item: float = split["per_item"]
        self.cache: dict[Any, tuple[np.ndarray, float]] = {}  # key -> (scaled scores, fit seconds)
        self.gram = np.asarray((self.history.T @ self.history).toarray(), dtype=np.float64)
        self.results: list[dict[str, Any]] = json.loads(OUT.read_text())["variants"] if OUT.exists() else []

    # components: (n_users, n_items) float32 scores of the train history, divided by seq_edlae's mean spread
    def component(self, key: tuple, build: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
        if key not in self.cache:
            from ml_service.models.seq_edlae import mean_spread

            started = time.process_time()
            weights = build()
            weights = weights / mean_spread(self.history, weights, SEED)
            seconds = time.process_time() - started
            self.cache[key] = (np.asarray(self.history @ weights, dtype=np.float32), seconds)
        return self.cache[key]

    def edlae(self, scale: float, dropout: float, gamma: float) -> tuple[np.ndarray, float]:
        from ml_service.models.edlae import edlae_weights

        lam = max(scale * self.per_item, 1.0)
        return self.component(("edlae", scale, dropout, gamma), lambda: edlae_weights(self.history, lam, dropout, gamma))

    def timeline(self, window: int, scale: float, mode: str = "window", tau: float = 0.0,
                 dropout: float = 0.0, gamma: float = 0.0) -> tuple[np.ndarray, float]:
        lam = max(scale * self.per_item, 1.0)
        return self.component(("timeline", window, scale, mode, tau, dropout, gamma),
                              lambda: ease_on(self.gram_of(window, mode, tau), lam, dropout, gamma))

    def gram_of(self, window: int, mode: str, tau: float) -> np.ndarray:
        return weighted_timeline_gram(self.train, self.n_items, window, mode, tau)

    def evaluate(self, stage: str, variant: str, params: dict[str, Any],
                 parts: list[tuple[float, tuple[np.ndarray, float]]]) -> float:
        def rows(users: np.ndarray) -> np.ndarray:
            total = np.zeros((users.size, self.n_items), np.float32)
            for weight, (scores, _) in parts:
                total += weight * scores[users]
            return total

        metrics = evaluate_scores(rows, self.history, self.split["truth"])
        seconds = sum(seconds for _, (_, seconds) in parts)
        row = {"stage": stage, "variant": variant, "params": params, "valid_ndcg@10": round(metrics["ndcg@10"], 5),
               "valid_recall@10": round(metrics["recall@10"], 5), "fit_cpu_seconds": round(seconds, 1)}
        print(json.dumps(row), flush=True)
        self.results.append(row)
        self.save(row)
        return metrics["ndcg@10"]

    def save(self, row: dict[str, Any]) -> None:
        # read-modify-write under a lock, so that stages run by several processes all land in the file
        import fcntl

        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / "recbole_explore.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._append(row)

    def _append(self, row: dict[str, Any]) -> None:
        kept = json.loads(OUT.read_text()) if OUT.exists() else {}
        previous = kept.get("variants", [])
        payload = kept | {
            "about": __doc__.splitlines()[0],
            "command": "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 15 .venv/bin/python "
                       "benchmarks/recbole_explore.py --stage <stage> ...",
            "stages": STAGES,
            "baseline": "seq_edlae today (λ 1.5x, p 0.5, γ 0.1; window 20, timeline λ 0.9x, weight 0.8): 0.23875",
            "variants": previous + [row],
        }
        OUT.write_text(json.dumps(payload, indent=1))


def weighted_timeline_gram(train: Any, n_items: int, window: int, mode: str = "window", tau: float = 0.0) -> np.ndarray:
    """Timeline Gram with pair weights: "window" 1 per pair within `window` positions; "gap" exp(-|Δt| / tau) for
    pairs within `window` positions; "harmonic" 1 / offset^tau within `window`. Diagonal = item counts."""
    order = np.lexsort((train.item, train.timestamp, train.user))
    users, items = np.asarray(train.user)[order], np.asarray(train.item)[order]
    stamps = np.asarray(train.timestamp, dtype=np.float64)[order]
    rows, cols, vals = [], [], []
    for offset in range(1, window + 1):
        same = users[offset:] == users[:-offset]
        rows.append(items[:-offset][same])
        cols.append(items[offset:][same])
        if mode == "window":
            vals.append(np.ones(int(same.sum())))
        elif mode == "gap":
            vals.append(np.exp(-np.abs(stamps[offset:] - stamps[:-offset])[same] / tau))
        elif mode == "harmonic":
            vals.append(np.full(int(same.sum()), float(offset) ** -tau))
        else:
            raise ValueError(mode)
    first, second, value = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    pairs = sp.coo_matrix((value, (first, second)), shape=(n_items, n_items)).tocsr()
    gram = (pairs + pairs.T).toarray()
    gram[np.diag_indices_from(gram)] = np.bincount(items, minlength=n_items)
    return gram


def ease_on(gram: np.ndarray, lam: float, dropout: float = 0.0, gamma: float = 0.0) -> np.ndarray:
    """EASE / EDLAE closed form on a given Gram (copied), zero diagonal, columns * count^-gamma."""
    gram = np.array(gram, dtype=np.float64, order="C", copy=True)  # scipy 1.17 inv crashed on a Fortran-order copy
    return edlae_weights_from_gram(gram, lam, dropout, gamma)


BASE_E = (1.5, 0.5, 0.1)
BASE_T = (20, 0.9)


def stage_baseline(x: Explorer) -> None:
    e = x.edlae(*BASE_E)
    x.evaluate("baseline", "edlae", {"edlae": BASE_E}, [(1.0, e)])
    for window, scale, weight in ((20, 2.3, 0.5), (20, 0.9, 0.8)):
        t = x.timeline(window, scale)
        x.evaluate("baseline", "seq_edlae", {"edlae": BASE_E, "window": window, "t_scale": scale, "weight": weight},
                   [(1.0, e), (weight, t)])


def blend_weights(x: Explorer, stage: str, name: str, params: dict, e: Any, t: Any,
                  weights=(0.3, 0.5, 0.65, 0.8, 1.0, 1.2, 1.5)) -> tuple[float, float]:
    best = (-1.0, 0.0)
    for weight in weights:
        score = x.evaluate(stage, name, params | {"weight": weight}, [(1.0, e), (weight, t)])
        best = max(best, (score, weight))
    return best


def stage_grid_timeline(x: Explorer) -> None:
    e = x.edlae(*BASE_E)
    for window in (10, 20, 40, 80):
        for scale in (0.4, 0.9, 2.3):
            t = x.timeline(window, scale)
            blend_weights(x, "grid_timeline", "seq_edlae", {"edlae": BASE_E, "window": window, "t_scale": scale}, e, t,
                          weights=(0.5, 0.8, 1.2))


def stage_grid_edlae(x: Explorer) -> None:
    t = x.timeline(*BASE_T)
    for scale in (0.75, 1.5, 3.0):
        for dropout in (0.33, 0.5, 0.67):
            for gamma in (0.0, 0.1, 0.2):
                e = x.edlae(scale, dropout, gamma)
                x.evaluate("grid_edlae", "seq_edlae", {"edlae": (scale, dropout, gamma), "window": 20, "t_scale": 0.9,
                                                       "weight": 0.8}, [(1.0, e), (0.8, t)])


def stage_timeline_reg(x: Explorer) -> None:
    """The timeline EASE with EDLAE's dropout term and popularity exponent."""
    e = x.edlae(*BASE_E)
    for scale, dropout, gamma in ((0.9, 0.0, 0.1), (0.9, 0.0, 0.2), (0.3, 0.5, 0.0), (0.3, 0.5, 0.1), (0.1, 0.67, 0.1)):
        t = x.timeline(20, scale, dropout=dropout, gamma=gamma)
        blend_weights(x, "timeline_reg", "seq_edlae", {"edlae": BASE_E, "window": 20, "t_scale": scale,
                                                        "t_dropout": dropout, "t_gamma": gamma}, e, t,
                      weights=(0.5, 0.8, 1.2))


def stage_multi(x: Explorer) -> None:
    """Two timeline parts: short and long windows, separate weights."""
    e = x.edlae(*BASE_E)
    for short, long in ((3, 50), (5, 50), (5, 100), (10, 80)):
        ts, tl = x.timeline(short, 0.9), x.timeline(long, 0.9)
        for ws in (0.4, 0.8):
            for wl in (0.2, 0.4, 0.8):
                x.evaluate("multi", "seq_edlae+2", {"edlae": BASE_E, "short": short, "long": long, "t_scale": 0.9,
                                                    "w_short": ws, "w_long": wl}, [(1.0, e), (ws, ts), (wl, tl)])


def stage_gap(x: Explorer) -> None:
    """Pairs within `window` positions weighted exp(-|Δt| / τ)."""
    e = x.edlae(*BASE_E)
    for window in (50,):
        for tau in (60.0, 600.0, 3600.0, 86400.0):
            for scale in (0.3, 0.9):
                t = x.timeline(window, scale, mode="gap", tau=tau)
                blend_weights(x, "gap", "seq_edlae_gap", {"edlae": BASE_E, "window": window, "tau_s": tau,
                                                          "t_scale": scale}, e, t, weights=(0.5, 0.8, 1.2))


def stage_harmonic(x: Explorer) -> None:
    """Pairs within `window` positions weighted offset^-a."""
    e = x.edlae(*BASE_E)
    for window, power in ((50, 0.5), (50, 1.0), (100, 1.0)):
        for scale in (0.3, 0.9):
            t = x.timeline(window, scale, mode="harmonic", tau=power)
            blend_weights(x, "harmonic", "seq_edlae_harmonic", {"edlae": BASE_E, "window": window, "power": power,
                                                                "t_scale": scale}, e, t, weights=(0.5, 0.8, 1.2))


def edlae_debiased(history: sp.csr_matrix, scale: float, dropout: float, gamma: float, beta: float) -> np.ndarray:
    """EDLAE on X D^-β (D = item counts): B = D^-β B' D^(β-γ); λ = scale x the mean diagonal of the scaled Gram."""
    gram = np.asarray((history.T @ history).toarray(), dtype=np.float64)
    counts = np.maximum(np.diag(gram).copy(), 1.0)
    norm = counts ** -beta
    gram *= norm[:, None]
    gram *= norm[None, :]
    weights = ease_on(gram, scale * float(np.diag(gram).mean()), dropout, 0.0).astype(np.float64)
    weights *= norm[:, None]
    weights *= (counts ** (beta - gamma))[None, :]
    return weights.astype(np.float32)


def gfcf_weights(history: sp.csr_matrix, k: int, alpha: float) -> np.ndarray:
    """GF-CF (Shen et al. 2021) as an item-item matrix: R̃ᵀR̃ + alpha D_I^-1/2 U_k U_kᵀ D_I^1/2, R̃ = D_U^-1/2 R D_I^-1/2."""
    users = np.asarray(history.sum(axis=1)).ravel()
    items = np.asarray(history.sum(axis=0)).ravel()
    du = np.where(users > 0, users, 1.0) ** -0.5
    di = np.where(items > 0, items, 1.0) ** -0.5
    norm = sp.diags(du) @ history @ sp.diags(di)
    linear = np.asarray((norm.T @ norm).toarray(), dtype=np.float64)
    n = linear.shape[0]
    _, vectors = scipy.linalg.eigh(linear, subset_by_index=(n - k, n - 1))
    ideal = (di[:, None] * vectors) @ (vectors.T / di[None, :])
    return (linear + alpha * ideal).astype(np.float32)


def stage_debias(x: Explorer) -> None:
    """EDLAE on a popularity-normalised input, alone and with the timeline part."""
    t = x.timeline(*BASE_T)
    base = x.edlae(*BASE_E)
    x.evaluate("debias", "edlae", {"edlae": BASE_E}, [(1.0, base)])
    for beta in (0.1, 0.25):
        for scale in (0.5, 1.5, 4.0):
            key = ("edlae_debiased", scale, beta)
            e = x.component(key, lambda: edlae_debiased(x.history, scale, 0.5, 0.1, beta))
            x.evaluate("debias", "edlae_debiased", {"scale_of_mean_diag": scale, "dropout": 0.5, "gamma": 0.1,
                                                    "beta": beta}, [(1.0, e)])
            x.evaluate("debias", "seq_edlae_debiased", {"scale_of_mean_diag": scale, "dropout": 0.5, "gamma": 0.1,
                                                        "beta": beta, "window": 20, "t_scale": 0.9, "weight": 0.8},
                       [(1.0, e), (0.8, t)])


def stage_gfcf(x: Explorer) -> None:
    """GF-CF alone and blended into seq_edlae."""
    e, t = x.edlae(*BASE_E), x.timeline(*BASE_T)
    for k, alpha in ((256, 0.3), (128, 0.3), (256, 1.0)):
        g = x.component(("gfcf", k, alpha), lambda: gfcf_weights(x.history, k, alpha))
        x.evaluate("gfcf", "gfcf", {"k": k, "alpha": alpha}, [(1.0, g)])
        for wg in (0.2, 0.4, 0.7):
            x.evaluate("gfcf", "seq_edlae+gfcf", {"k": k, "alpha": alpha, "w_gfcf": wg, "edlae": BASE_E,
                                                  "window": 20, "t_scale": 0.9, "weight": 0.8},
                       [(1.0, e), (0.8, t), (wg, g)])


def absolute_time_gram(train: Any, n_items: int, bucket_s: float, normalise: bool) -> np.ndarray:
    """Cᵀ C, C[b, i] = ratings of item i in time bucket b over all learners (rows / √bucket size when normalise);
    diagonal replaced by the item counts."""
    bucket = ((np.asarray(train.timestamp) - np.min(train.timestamp)) // bucket_s).astype(np.int64)
    counts = sp.csr_matrix((np.ones(len(train)), (bucket, np.asarray(train.item))),
                           shape=(int(bucket.max()) + 1, n_items))
    if normalise:
        sizes = np.asarray(counts.sum(axis=1)).ravel()
        counts = sp.diags(1.0 / np.sqrt(np.maximum(sizes, 1.0))) @ counts
    gram = np.asarray((counts.T @ counts).toarray(), dtype=np.float64)
    item_counts = np.bincount(np.asarray(train.item), minlength=n_items).astype(np.float64)
    gram *= item_counts.sum() / max(np.trace(gram), 1e-12)  # on the scale of the counts
    gram[np.diag_indices_from(gram)] = item_counts
    return gram


def stage_abs_time(x: Explorer) -> None:
    """A third part: EASE on co-occurrence in absolute time across learners (what was rated in the same days)."""
    e, t = x.edlae(*BASE_E), x.timeline(*BASE_T)
    for bucket, normalise in ((86400.0, True), (7 * 86400.0, True), (86400.0, False)):
        gram = absolute_time_gram(x.train, x.n_items, bucket, normalise)
        for scale in (0.3, 2.0):
            a = x.component(("abs", bucket, normalise, scale), lambda: ease_on(gram, max(scale * x.per_item, 1.0)))
            for wa in (0.1, 0.25, 0.5):
                x.evaluate("abs_time", "seq_edlae+abs", {"bucket_s": bucket, "normalise": normalise, "a_scale": scale,
                                                         "w_abs": wa, "window": 20, "t_scale": 0.9, "weight": 0.8},
                           [(1.0, e), (0.8, t), (wa, a)])


def stage_fine(x: Explorer) -> None:
    """Finer gap / harmonic settings around the best of the first pass."""
    e = x.edlae(*BASE_E)
    for tau in (300.0, 1200.0):
        for scale in (0.3, 0.9):
            t = x.timeline(50, scale, mode="gap", tau=tau)
            blend_weights(x, "fine", "seq_edlae_gap", {"edlae": BASE_E, "window": 50, "tau_s": tau, "t_scale": scale},
                          e, t, weights=(0.4, 0.6, 0.8))
    for window, power in ((30, 0.5), (50, 0.25), (30, 0.25)):
        for scale in (0.15, 0.3):
            t = x.timeline(window, scale, mode="harmonic", tau=power)
            blend_weights(x, "fine", "seq_edlae_harmonic", {"edlae": BASE_E, "window": window, "power": power,
                                                            "t_scale": scale}, e, t, weights=(0.3, 0.5, 0.7))


def stage_joint(x: Explorer) -> None:
    """One EDLAE on XᵀX + alpha x the timeline Gram's off-diagonal (window 20), alone and with the timeline part."""
    from ml_service.models.seq_edlae import timeline_gram

    t = x.timeline(*BASE_T)
    timeline = timeline_gram(x.train, x.n_items, 20)
    timeline[np.diag_indices_from(timeline)] = 0.0
    for alpha in (0.1, 0.3, 1.0):
        gram = x.gram + alpha * timeline
        j = x.component(("joint", alpha), lambda: ease_on(gram, 1.5 * x.per_item, 0.5, 0.1))
        x.evaluate("joint", "edlae_joint", {"alpha": alpha, "edlae": BASE_E}, [(1.0, j)])
        for w in (0.4, 0.8):
            x.evaluate("joint", "edlae_joint+timeline", {"alpha": alpha, "edlae": BASE_E, "window": 20,
                                                         "t_scale": 0.9, "weight": w}, [(1.0, j), (w, t)])


def stage_idf(x: Explorer) -> None:
    """History entries weighted by item count^-delta (rows of the item-item matrix scaled)."""
    from ml_service.models.edlae import edlae_weights
    from ml_service.models.seq_edlae import mean_spread, timeline_weights

    counts = np.maximum(np.asarray(x.history.sum(axis=0)).ravel(), 1.0)
    we = edlae_weights(x.history, 1.5 * x.per_item, 0.5, 0.1)
    wt = timeline_weights(x.train, x.n_items, 20, 0.9 * x.per_item)
    we /= mean_spread(x.history, we, SEED)
    wt /= mean_spread(x.history, wt, SEED)
    for delta in (-0.1, 0.1, 0.2, 0.35):
        scaled = (counts ** -delta)[:, None].astype(np.float32)
        key = ("idf", delta)
        x.cache[key] = (np.asarray(x.history @ (scaled * (we + 0.8 * wt)), dtype=np.float32), 0.0)
        x.evaluate("idf", "seq_edlae_idf", {"delta": delta, "edlae": BASE_E, "window": 20, "t_scale": 0.9,
                                            "weight": 0.8}, [(1.0, x.cache[key])])


def stage_grid_edlae2(x: Explorer) -> None:
    """Stronger EDLAE dropout (the first grid's best was its largest, 0.67)."""
    t = x.timeline(*BASE_T)
    for dropout in (0.67, 0.75, 0.8, 0.85):
        for scale in (0.1, 0.5, 1.5, 3.0):
            for gamma in (0.0, 0.1):
                e = x.edlae(scale, dropout, gamma)
                x.evaluate("grid_edlae2", "seq_edlae", {"edlae": (scale, dropout, gamma), "window": 20, "t_scale": 0.9,
                                                        "weight": 0.8}, [(1.0, e), (0.8, t)])


def gfcf_parts(history: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """GF-CF's two filters separately: the linear R̃ᵀR̃ and the ideal low-pass D_I^-1/2 U_k U_kᵀ D_I^1/2."""
    users = np.asarray(history.sum(axis=1)).ravel()
    items = np.asarray(history.sum(axis=0)).ravel()
    du = np.where(users > 0, users, 1.0) ** -0.5
    di = np.where(items > 0, items, 1.0) ** -0.5
    norm = sp.diags(du) @ history @ sp.diags(di)
    linear = np.asarray((norm.T @ norm).toarray(), dtype=np.float64)
    n = linear.shape[0]
    _, vectors = scipy.linalg.eigh(linear, subset_by_index=(n - k, n - 1))
    ideal = (di[:, None] * vectors) @ (vectors.T / di[None, :])
    return linear.astype(np.float32), ideal.astype(np.float32)


def stage_gfcf2(x: Explorer) -> None:
    """GF-CF's linear and ideal filters as separate parts next to EDLAE and the timeline."""
    t = x.timeline(*BASE_T)
    parts = {}
    for k in (32, 64, 128, 256):
        linear, ideal = gfcf_parts(x.history, k)
        parts["linear"] = x.component(("gf_linear",), lambda: linear)
        parts[k] = x.component(("gf_ideal", k), lambda: ideal)
    for edlae in (BASE_E, (1.5, 0.67, 0.1)):
        e = x.edlae(*edlae)
        for k in (32, 64, 128, 256):
            for wl, wi in ((0.0, 0.3), (0.0, 0.6), (0.3, 0.3), (0.5, 0.2), (0.5, 0.5), (0.7, 0.3), (1.0, 0.3), (1.0, 0.6)):
                x.evaluate("gfcf2", "seq_edlae+gf", {"edlae": edlae, "window": 20, "t_scale": 0.9, "weight": 0.8,
                                                     "k": k, "w_linear": wl, "w_ideal": wi},
                           [(1.0, e), (0.8, t), (wl, parts["linear"]), (wi, parts[k])])


def session_density(train: Any, n_users: int, n_items: int, seconds: float) -> sp.csr_matrix:
    """(n_users, n_items): how many of the learner's train interactions lie within ±seconds of this one (itself
    included), over the learner's count."""
    order = np.lexsort((np.asarray(train.timestamp), np.asarray(train.user)))
    users = np.asarray(train.user)[order].astype(np.int64)
    stamps = np.asarray(train.timestamp)[order].astype(np.float64)
    key = users * 1e10 + stamps  # users apart by far more than any time span
    lo = np.searchsorted(key, key - seconds, side="left")
    hi = np.searchsorted(key, key + seconds, side="right")
    per_user = np.bincount(users, minlength=n_users).astype(np.float64)
    value = (hi - lo) / per_user[users]
    matrix = sp.csr_matrix((value.astype(np.float32), (users, np.asarray(train.item)[order])), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def stage_density(x: Explorer) -> None:
    """History entries weighted by the learner's density of interactions around them (share within ±Δ)^ρ."""
    from ml_service.models.edlae import edlae_weights
    from ml_service.models.seq_edlae import mean_spread, timeline_weights

    we = edlae_weights(x.history, 1.5 * x.per_item, 0.67, 0.1)
    wt = timeline_weights(x.train, x.n_items, 20, 0.9 * x.per_item)
    linear, ideal = gfcf_parts(x.history, 64)
    total = (we / mean_spread(x.history, we, SEED) + 0.8 * wt / mean_spread(x.history, wt, SEED)
             + 0.3 * linear / mean_spread(x.history, linear, SEED) + 0.3 * ideal / mean_spread(x.history, ideal, SEED))
    x.cache[("density", "none")] = (np.asarray(x.history @ total, dtype=np.float32), 0.0)
    x.evaluate("density", "seq_edlae+gf", {"edlae": (1.5, 0.67, 0.1), "k": 64, "w_linear": 0.3, "w_ideal": 0.3,
                                           "rho": 0.0}, [(1.0, x.cache[("density", "none")])])
    for seconds in (600.0, 3600.0, 86400.0):
        density = session_density(x.train, x.split["n_users"], x.n_items, seconds)
        for rho in (0.25, 0.5, 1.0):
            weighted = density.copy()
            weighted.data = weighted.data ** rho
            scores = np.asarray(weighted @ total, dtype=np.float32)
            x.cache[("density", seconds, rho)] = (scores, 0.0)
            x.evaluate("density", "seq_edlae+gf", {"edlae": (1.5, 0.67, 0.1), "k": 64, "w_linear": 0.3,
                                                   "w_ideal": 0.3, "density_s": seconds, "rho": rho},
                       [(1.0, x.cache[("density", seconds, rho)])])


def fit_module(x: Explorer, stage: str, variant: str, params: dict[str, Any], threads: int = 1) -> float:
    """seq_edlae itself (models/seq_edlae.py) fitted on train with `params`, scored on validation; wall seconds."""
    from ml_service.models.base import FitContext
    from ml_service.models.seq_edlae import SeqEDLAEAlgorithm

    loaded = load_protocol_data()
    data, part = loaded["data"], loaded["part"]
    started = time.monotonic()
    model = SeqEDLAEAlgorithm().fit(data, data.interactions.subset(part == 0), params, FitContext(threads=threads, seed=SEED))
    seconds = time.monotonic() - started
    key = ("module", json.dumps(params, sort_keys=True))
    x.cache[key] = (model.score(np.arange(model.n_users)), seconds)
    return x.evaluate(stage, variant, dict(model.params) | {"threads": threads, "fit_wall_seconds": round(seconds, 1)},
                      [(1.0, x.cache[key])])


def stage_module(x: Explorer) -> None:
    """The implementation in models/seq_edlae.py: its candidates on this train part (as recbole_ml1m.py fits them)."""
    import dataclasses

    from ml_service.models.seq_edlae import SeqEDLAEAlgorithm

    loaded = load_protocol_data()
    data, part = loaded["data"], loaded["part"]
    train_data = dataclasses.replace(data, interactions=data.interactions.subset(part == 0))
    for params in SeqEDLAEAlgorithm().candidates(train_data):
        fit_module(x, "module", "seq_edlae (module)", params)


def stage_gf_fine(x: Explorer) -> None:
    """Coordinate search around EDLAE (p 0.67) + timeline + GF-CF (rank 64, 0.3 / 0.3)."""
    gf = {}
    for k in (48, 64, 96):
        linear, ideal = gfcf_parts(x.history, k)
        gf["linear"] = x.component(("gf_linear",), lambda: linear)
        gf[k] = x.component(("gf_ideal", k), lambda: ideal)
    e = x.edlae(1.5, 0.67, 0.1)

    def run(name: str, edlae: Any, timeline: tuple, tw: float, k: int, wl: float, wi: float, extra=()) -> float:
        t = x.timeline(*timeline)
        params = {"edlae": edlae, "window": timeline[0], "t_scale": timeline[1], "weight": tw, "k": k,
                  "w_linear": wl, "w_ideal": wi}
        return x.evaluate("gf_fine", name, params | dict(p for p, _ in extra),
                          [(1.0, x.edlae(*edlae)), (tw, t), (wl, gf["linear"]), (wi, gf[k]), *[(w, c) for (_, w), c in
                                                                                          ((p, c) for p, c in extra)]])

    best = (-1.0, None)
    for timeline in ((20, 0.9), (20, 2.3), (10, 0.9)):
        for tw in (0.5, 0.8, 1.1):
            best = max(best, (run("seq_edlae+gf", (1.5, 0.67, 0.1), timeline, tw, 64, 0.3, 0.3), (timeline, tw)),
                       key=lambda b: b[0])
    timeline, tw = best[1]
    best = (-1.0, None)
    for k in (48, 64, 96):
        for wl, wi in ((0.2, 0.2), (0.3, 0.3), (0.4, 0.3), (0.3, 0.45), (0.2, 0.45), (0.45, 0.45)):
            best = max(best, (run("seq_edlae+gf", (1.5, 0.67, 0.1), timeline, tw, k, wl, wi), (k, wl, wi)),
                       key=lambda b: b[0])
    k, wl, wi = best[1]
    for edlae in ((3.0, 0.67, 0.1), (3.0, 0.75, 0.1), (0.75, 0.67, 0.1), (1.5, 0.67, 0.0)):
        run("seq_edlae+gf", edlae, timeline, tw, k, wl, wi)
    # the timeline Gram as a normalised linear filter too (no inversion)
    from ml_service.models.seq_edlae import timeline_gram

    def timeline_linear() -> np.ndarray:
        gram = timeline_gram(x.train, x.n_items, timeline[0])
        scale = np.maximum(np.diag(gram), 1.0) ** -0.5
        gram[np.diag_indices_from(gram)] = 0.0
        return (scale[:, None] * gram * scale[None, :]).astype(np.float32)

    tl = x.component(("timeline_linear", timeline[0]), timeline_linear)
    for wtl in (0.1, 0.2, 0.4):
        run("seq_edlae+gf+tl", (1.5, 0.67, 0.1), timeline, tw, k, wl, wi, extra=((("w_timeline_linear", wtl), tl),))


def stage_ials(x: Explorer) -> None:
    """implicit's ALS factors, blended at the score level with the kept seq_edlae (+ GF-CF): worth a second model only
    if it adds > 0.003."""
    from implicit.cpu.als import AlternatingLeastSquares

    kept = x.cache.get(("kept",))
    if kept is None:
        fit_module(x, "ials", "seq_edlae (module, kept)", {"lambda": 323.275, "dropout": 0.67,
                   "popularity_exponent": 0.1, "window": 20, "timeline_lambda": 193.965, "weight": 0.8, "gf_rank": 64,
                   "gf_linear": 0.3, "gf_ideal": 0.3})
        kept = [v for k, v in x.cache.items() if k[0] == "module"][-1]
    for factors, reg, alpha in ((128, 30.0, 2.0), (256, 30.0, 2.0)):
        started = time.process_time()
        model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15,
                                        random_state=SEED, num_threads=1, calculate_training_loss=False)
        model.fit(x.history, show_progress=False)
        scores = np.asarray(model.user_factors @ model.item_factors.T, dtype=np.float32)
        seconds = time.process_time() - started
        warm = np.random.default_rng(SEED).choice(scores.shape[0], 2000, replace=False)
        scores /= float(scores[warm].std(axis=1).mean())
        part = (scores, seconds)
        x.evaluate("ials", "ials", {"factors": factors, "regularization": reg, "alpha": alpha, "iterations": 15},
                   [(1.0, part)])
        spread = float(kept[0][warm].std(axis=1).mean())
        kept_scaled = (kept[0] / spread, kept[1])
        for w in (0.1, 0.2, 0.4):
            x.evaluate("ials", "seq_edlae+gf + ials (score blend)", {"factors": factors, "regularization": reg,
                       "alpha": alpha, "w_ials": w}, [(1.0, kept_scaled), (w, part)])


def stage_gf_time(x: Explorer) -> None:
    """The kept GF-CF parts with the first pass's best timeline variants (time-gap and harmonic pair weights)."""
    linear, ideal = gfcf_parts(x.history, 64)
    gl, gi = x.component(("gf_linear",), lambda: linear), x.component(("gf_ideal", 64), lambda: ideal)
    e = x.edlae(1.5, 0.67, 0.1)
    for window, scale, mode, tau in ((50, 0.9, "gap", 600.0), (50, 0.3, "harmonic", 0.5)):
        t = x.timeline(window, scale, mode=mode, tau=tau)
        for tw in (0.5, 0.8):
            x.evaluate("gf_time", f"seq_edlae_{mode}+gf", {"edlae": (1.5, 0.67, 0.1), "window": window, "t_scale": scale,
                       "mode": mode, "tau_or_power": tau, "weight": tw, "k": 64, "w_linear": 0.3, "w_ideal": 0.3},
                       [(1.0, e), (tw, t), (0.3, gl), (0.3, gi)])


STAGES = [name.removeprefix("stage_") for name in list(globals()) if name.startswith("stage_")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", nargs="+", default=["baseline"], choices=STAGES)
    args = parser.parse_args(argv)
    x = Explorer(load_split())
    for stage in args.stage:
        globals()[f"stage_{stage}"](x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
