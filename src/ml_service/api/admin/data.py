"""What the dashboard pages show, computed from the serving state, the store, the training log and the progress files."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import fields
from typing import Any

import numpy as np

from ml_service.config import Settings
from ml_service.metrics_training import STAGES, defect_counts, stage_seconds

SECRET_FIELDS = {"totara_key", "metrics_token", "admin_password"}
ENV_NAMES = {
    "totara_url": "ML_TOTARA_URL", "totara_key": "ML_TOTARA_KEY", "models_dir": "ML_MODELS_DIR", "logs_dir": "ML_LOGS_DIR",
    "retrain_freq_minutes": "ML_RECOMMENDATION_RETRAIN_FREQ", "num_threads": "ML_NUM_THREADS",
    "algorithm": "ML_RECOMMENDATION_ALGORITHM", "dev": "ML_DEV", "bind": "ML_BIND", "app_mode": "FLASK_ENV",
    "workers": "ML_WORKERS", "keep_versions": "ML_KEEP_VERSIONS", "download_retry_wait_s": "ML_DOWNLOAD_RETRY_WAIT",
    "download_retries": "ML_DOWNLOAD_RETRIES", "connect_timeout_s": "ML_CONNECT_TIMEOUT", "read_timeout_s": "ML_READ_TIMEOUT",
    "seen_policy": "ML_SEEN_POLICY", "auto_time_budget_s": "ML_AUTO_TIME_BUDGET", "seed": "ML_SEED",
    "validation_protocol": "ML_VALIDATION_PROTOCOL", "identity_features": "ML_IDENTITY_FEATURES",
    "metrics_enabled": "ML_METRICS", "metrics_token": "ML_METRICS_TOKEN", "admin_users_file": "ML_ADMIN_USERS",
    "admin_password": "ML_ADMIN_PASSWORD", "admin_session_s": "ML_ADMIN_SESSION_SECONDS",
    "admin_login_attempts": "ML_ADMIN_LOGIN_ATTEMPTS", "recent_per_learner": "ML_RECENT_PER_LEARNER",
}


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def age_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def settings_rows(settings: Settings, environ: dict[str, str] | None = None) -> list[dict[str, str]]:
    """(variable, effective value with secrets masked, source: environment or default)."""
    env = dict(os.environ if environ is None else environ)
    rows = []
    for f in fields(settings):
        name = ENV_NAMES.get(f.name)
        if name is None:
            continue
        value: Any = getattr(settings, f.name)
        if f.name in SECRET_FIELDS:
            shown = "(set, hidden)" if value else "(not set)"
        elif isinstance(value, tuple):
            shown = " ".join(str(v) for v in value)
        else:
            shown = "(not set)" if value is None or value == "" else str(value)
        rows.append({"name": name, "value": shown, "source": "environment" if env.get(name, "").strip() else "default"})
    return rows


def tenant_records(records: list[dict[str, Any]], tenant: str, limit: int = 10) -> list[dict[str, Any]]:
    """The tenant's last training records (newest first)."""
    rows = [r for r in records if r.get("event") == "tenant" and r.get("tenant") == tenant]
    return list(reversed(rows))[:limit]


RUN_TENANTS_SHOWN = 10  # per run; beyond it the runs page lists the failed tenants and the slowest ones


def runs_table(records: list[dict[str, Any]], limit: int = 50) -> list[dict[str, Any]]:
    """Training runs from the log, newest first, each with its tenants' outcome and per-stage seconds."""
    runs: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for record in records:
        if record.get("event") == "tenant":
            pending.append(record)
        elif record.get("event") == "run":
            download = record.get("download") or {}
            totals: dict[str, float] = {}
            states: dict[str, int] = {}
            for r in pending:
                states[str(r.get("state"))] = states.get(str(r.get("state")), 0) + 1
                for stage, secs in stage_seconds(r.get("seconds") or {}).items():
                    totals[stage] = totals.get(stage, 0.0) + secs
            shown = pending
            if len(pending) > RUN_TENANTS_SHOWN:  # a big site: the failed tenants and the slowest ones
                slowest = sorted(pending, key=lambda r: -sum(stage_seconds(r.get("seconds") or {}).values()))
                shown = [r for r in pending if r.get("state") == "failed"][:RUN_TENANTS_SHOWN]
                shown += [r for r in slowest if r.get("state") != "failed"][: max(0, RUN_TENANTS_SHOWN - len(shown))]
            runs.append({
                "n_tenants": len(pending), "states": states, "stage_totals": {k: round(totals[k], 3) for k in STAGES if k in totals},
                "at": iso(record.get("at")), "ok": bool(record.get("ok")), "seconds": record.get("seconds"),
                "error": record.get("error") or "", "download_s": download.get("seconds"), "download_bytes": download.get("bytes"),
                "attempts": dict(sorted((download.get("attempts") or {}).items())),
                "tenants": [{"tenant": r.get("tenant"), "state": r.get("state"), "algorithm": r.get("algorithm"), "msg": r.get("msg"),
                             "seconds": stage_seconds(r.get("seconds") or {})} for r in shown],
            })
            pending = []
    return list(reversed(runs))[:limit]


def quality_report(load_report: dict[str, Any]) -> dict[str, Any]:
    """Rows dropped per defect class and up to 5 example warnings (file, line, value, expected) per kind."""
    examples: dict[str, list[str]] = {}
    for text in load_report.get("warnings") or []:
        kind = str(text).split(": got", 1)[0].split(",")[0]  # the file the warning is about
        if len(examples.setdefault(kind, [])) < 5:
            examples[kind].append(str(text))
    return {"counts": defect_counts(load_report), "rows_read": load_report.get("rows_read") or {},
            "warning_count": load_report.get("warning_count", 0), "examples": examples}


def learner_view(index: Any, user: str, n: int = 5, seen_policy: str = "exclude") -> dict[str, Any]:
    """A learner's items in the model and the recommendations of each type, with scores and why."""
    model = index.model
    position = index.find_user(user)
    liked: list[int] = []
    if position is not None:
        row = model.extras.positives[position]
        liked = [int(i) for i in row.indices]
    cold = position is None or bool(np.asarray(model.scoring.user_cold)[position])
    vectors = model.extras.similarity_vectors
    recs: dict[str, list[dict[str, Any]]] = {}
    for item_type in model.type_names:
        ranked = index.rank_user(user, item_type, n, seen_policy)
        rows = []
        for item, score in ranked:
            why = ""
            if liked and vectors is not None:
                sims = np.asarray(vectors)[liked] @ np.asarray(vectors)[item]
                top = np.argsort(-sims)[:3]
                why = "closest of the learner's items: " + ", ".join(
                    f"{model.item_ids[liked[j]]} ({float(sims[j]):.2f})" for j in top if float(sims[j]) > 0
                ) or "no item of the learner is similar; ranked by the model's learner factors"
            elif cold:
                why = "cold start: the learner has no interactions in the model; ranked by " + (
                    "profile features" if model.algorithm in ("hybrid", "partial") else "popularity"
                )
            rows.append({"item": model.item_ids[item], "wire": index.wire_ids[item], "score": float(score), "why": why})
        recs[item_type] = rows
    return {
        "known": position is not None, "cold": cold,
        "interactions": recent_rows(model, position, set(liked)), "dated": model.recent is not None,
        "recommendations": recs,
    }


def recent_rows(model: Any, position: int | None, liked: set[int]) -> list[dict[str, Any]]:
    """The learner's latest interactions, newest first: item, type, rating, date (no date in models without `recent`)."""
    if position is None:
        return []
    if model.recent is None:  # stored before models kept dates: the rating-1 items only
        return [{"item": model.item_ids[i], "type": model.type_names[int(model.item_types[i])], "rating": 1, "date": ""}
                for i in sorted(liked)]
    row = model.recent[position]
    pairs = sorted(zip(row.indices.tolist(), row.data.tolist()), key=lambda p: (-p[1], p[0]))
    return [{"item": model.item_ids[i], "type": model.type_names[int(model.item_types[i])], "rating": 1 if i in liked else 0,
             "date": iso(t)} for i, t in pairs]


def item_view(index: Any, item: str, n: int = 10) -> list[dict[str, Any]] | None:
    similar = index.similar_items(item, n)
    if similar is None:
        return None
    return [{"item": i, "score": float(s)} for i, s in similar]
