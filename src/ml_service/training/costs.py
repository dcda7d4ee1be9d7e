"""Cost models of `auto`'s candidates: seconds of tuning, of one refit, and peak bytes, from users, items, interactions.

Each is a sum of terms whose shape follows the algorithm (EASE/EDLAE: an items³ inversion and items² dense
matrices; kNN: an items² similarity; ALS, LDA and the LightFM modes: passes over the interactions) and whose
coefficients are fitted to measurements on this 2-core machine (benchmarks/costs.py writes them to
benchmarks/results/costs.json; the issue's MovieLens-100k and 10k-item runs are the other two points):

- MovieLens-100k (943 users, 1,682 items, 100k interactions), tuning seconds: lda 15.5, hybrid 11.6,
  partial 10.4, mf 3.8, als 3.6, knn 1.8, ease 1.6; the final refit of hybrid 5.5 s.
- 10k items, 100k ratings: EASE tuning 44 s and 4.1 GB peak (float64 Gram matrix, its inverse and copies,
  ~41 bytes per item pair), kNN 28 s and 2.1 GB (~21 bytes per item pair).

benchmarks/results/costs.json (run on this machine at load ~13 on 2 cores): the peak-memory estimates came within
0.8-1.3x of the measured RSS; the time estimates were 20-80x below the measured seconds there (fixed per-fit costs
such as the content features are not modelled, and the machine was shared). That is why training/budget.py scales
every time estimate by the median measured/estimated ratio of the candidates tuned so far: the relative costs
matter, the machine's speed is measured as the search goes.

Evaluation scores every validation user against every item (fits x users x items float32 scores); it is
counted in the tuning time. The estimates are deliberately rough (within a factor of about two); `auto` uses
them only to skip what would clearly overrun the time budget or ML_TRAIN_MEMORY_MB.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """Estimated seconds to tune (all candidate fits + validation), seconds of one refit on all data, peak bytes."""

    tune_s: float
    fit_s: float
    peak_bytes: int


@dataclass(frozen=True)
class CostModel:
    """seconds per fit = per_interaction·N + per_item_pair·I² + per_item_cube·I³ (+ evaluation per_score·U·I);
    peak bytes = base + bytes_per_interaction·N + bytes_per_item_pair·I² + bytes_per_entity·(U + I)."""

    fits: int  # candidate fits in tune (algorithm.candidates)
    per_interaction: float = 0.0
    per_item_pair: float = 0.0
    per_item_cube: float = 0.0
    bytes_per_interaction: float = 64.0
    bytes_per_item_pair: float = 0.0
    bytes_per_entity: float = 0.0


PER_SCORE_S = 3e-8  # validation: one user x item score, its ranking and the metrics (MovieLens-100k: ~0.05 s a fit)
BASE_BYTES = 150 * 2**20  # the interpreter, numpy/scipy/sklearn and the tenant's parsed data
SCORE_BATCH_BYTES = 56 * 2**20  # metrics.evaluate's batch peak

MODELS: dict[str, CostModel] = {
    "popular": CostModel(fits=3, per_interaction=2e-7),
    # 10k items: 44 s / 3 fits ≈ 1.5e-11·I³; MovieLens-100k: the remaining ~0.45 s a fit from the Gram product.
    "ease": CostModel(fits=3, per_interaction=4e-6, per_item_cube=1.5e-11, bytes_per_item_pair=41.0),
    "edlae": CostModel(fits=3, per_interaction=4e-6, per_item_cube=1.5e-11, bytes_per_item_pair=41.0),
    # Two dense solves a fit (EDLAE and the timeline's EASE) and the timeline Gram: measured 2,000 users x 3,000 / 5,000
    # items x 60k interactions, 2 fits: tuning 6.9 / 23.4 s (edlae's 3 fits: 3.5 / 11.7 s), peak 546 / 1,152 MB (edlae
    # 417 / 860 MB), i.e. ~38 bytes per item pair against edlae's ~29; scaled by edlae's safety margin (41 / 29). The
    # timeline's item pairs grow with the interactions: MovieLens-1M's whole training peaked at 1,351 MB with it and
    # 973 MB without it, which ~400 bytes per interaction accounts for.
    "seq_edlae": CostModel(fits=2, per_interaction=1.2e-5, per_item_cube=4.5e-11, bytes_per_interaction=400.0,
                           bytes_per_item_pair=53.0),
    # 28 s at 10k items, 1.8 s at 1,682 (3 fits each): ≈ 9e-8·I² + 3.5e-6·N a fit.
    "knn": CostModel(fits=3, per_interaction=3.5e-6, per_item_pair=9e-8, bytes_per_item_pair=21.0),
    "als": CostModel(fits=3, per_interaction=1.2e-5, bytes_per_entity=128 * 8 * 2),
    "lda": CostModel(fits=3, per_interaction=5e-5, bytes_per_entity=32 * 8 * 4),
    "mf": CostModel(fits=2, per_interaction=1.9e-5, bytes_per_entity=64 * 4 * 4),
    "partial": CostModel(fits=2, per_interaction=5.2e-5, bytes_per_entity=64 * 4 * 8),
    "hybrid": CostModel(fits=2, per_interaction=5.8e-5, bytes_per_entity=64 * 4 * 12),
}


def evaluation_s(users: int, items: int) -> float:
    """Estimated seconds of one validation (metrics.evaluate): every validation user scored against every item."""
    return PER_SCORE_S * users * items


def estimate(name: str, users: int, items: int, interactions: int) -> Cost | None:
    """The cost of candidate `name` on a tenant of this size, or None for an algorithm without a cost model."""
    model = MODELS.get(name.split("@", 1)[0])
    if model is None:
        return None
    fit = (model.per_interaction * interactions + model.per_item_pair * items**2 + model.per_item_cube * items**3)
    evaluation = PER_SCORE_S * users * items
    peak = (BASE_BYTES + SCORE_BATCH_BYTES + model.bytes_per_interaction * interactions
            + model.bytes_per_item_pair * items**2 + model.bytes_per_entity * (users + items))
    # The final refit sees all interactions (validation holds out ~20%) and does no validation.
    return Cost(tune_s=model.fits * (fit + evaluation), fit_s=1.25 * fit, peak_bytes=int(peak))
