"""benchmarks/first_answer.py: when each tenant first had a personalised (not `popular`) model published."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import first_answer  # noqa: E402


def test_personalised_s_skips_popular_and_unpublished_versions() -> None:
    published = [
        {"tenant": "0", "stage": "quick", "algorithm": "popular", "published": True, "at_s": 3.0},
        {"tenant": "1", "stage": "quick", "algorithm": "popular", "published": True, "at_s": 3.5},
        {"tenant": "0", "stage": "interim", "algorithm": "knn", "published": False, "at_s": 9.0},
        {"tenant": "0", "stage": "interim", "algorithm": "als", "published": True, "at_s": 12.0},
        {"tenant": "0", "stage": "final", "algorithm": "auto:hybrid+lda", "published": True, "at_s": 40.0},
        {"tenant": "1", "stage": "final", "algorithm": "auto:popular", "published": True, "at_s": 50.0},
        {"tenant": "2", "stage": None, "algorithm": "auto:popular+als", "published": True, "at_s": 60.0},
    ]
    assert first_answer.personalised_s(published) == {"0": 12.0, "2": 60.0}
