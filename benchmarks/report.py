"""Render benchmarks/README.md from the committed JSON results, so the tables can never drift from the data.

    .venv/bin/python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"

INTRO = """# Benchmarks

Every number the project states about speed or quality comes from a script here; each writes JSON into
`results/` with the exact command, the time and the machine. This page is generated from those files by
`python benchmarks/report.py`. The machine: 2 cores, 24 GB, no GPU; benchmarks that ran while other work
shared the cores say so in their notes. Install the extras first: `.venv/bin/pip install -e '.[bench]'`
(matplotlib for the plots) and, for the serving benchmark, `apt-get install wrk`.

| Benchmark | Script | Result file |
| --- | --- | --- |
| Ingest: pull + parse + features at 200k users x 20k items x 5M interactions | `ingest.py` | `results/ingest.json` |
| Quality and training time: every algorithm, `auto`, the reference procedure, `popular` | `quality.py` | `results/quality.json`, `results/quality_ndcg.png` |
| Similar items: held-out hit rate of the served similar-items lists | `similar_items.py` | `results/similar_items.json` |
| Cold start: learners with every interaction held out | `cold_start.py` | `results/cold_start.json` |
| Serving: wrk against `ml-service serve`, and in-process scoring vs its floor | `serving.py` | `results/serving.json` |
| Store: publish and load of a 50k x 10k tenant, and what publish's checks cost | `store_publish.py` | `results/store_publish.json` |
| Fuzz: generated requests over every route against `ml-service serve`, checked against the wire contract | `fuzz.py` | `results/fuzz.json` |
| Ranking refactor: in-process serving ranking and offline evaluation, code before vs after one ranking module | `ranking_refactor.py` | `results/ranking_refactor.json` |
| Typed model parts: the same serving and evaluation measurements, code before vs after the typed parts | `ranking_refactor.py --out results/typed_parts_ranking.json` | `results/typed_parts_ranking.json` |
| Typed model parts: tuning time per algorithm before vs after (no serving extras built per fit) | `tuning_time.py` | `results/tuning_time.json` |
| Hostile inputs: memory and time of a file without newlines, a 1 GB field, a 1M-character token, before/after | `hostile_inputs.py` | `results/hostile_inputs.json` |
| Reliability: fuzzed requests, injected faults (kill -9, Totara faults, corrupt store, full disk) and a soak | `reliability.py` (+ `soak.py`) | `results/reliability.json` |
| Serving with Prometheus metrics on vs off (interleaved) | `serving.py --metrics both` | `results/serving_metrics.json` |
| Dashboard page render time, 100-tenant site | `dashboard.py` | `results/dashboard.json` |
| MovieLens-1M under RecBole's "general" protocol, next to RecBole's published table | `recbole_ml1m.py` | `results/recbole_ml1m.json` |
| Time to the first `success: true` through the service path, anytime publishing on vs off | `first_answer.py` | `results/first_answer.json` |
| `auto`'s cost models against measured tuning/refit time and peak RSS | `costs.py` | `results/costs.json`, `results/costs_seq_edlae.json` |
| A fresh-clone install and test run, as CI runs it | the CI command | `results/install.json` |
| The request metrics' cost before and after they moved into the access log's middleware | `serving.py` | `results/metrics_middleware_merge.json` |
| What an algorithm's later candidates add over its first: the evidence for `auto`'s early drop (`DROP_MARGIN`) | `candidate_spread.py` | `results/candidate_spread.json` |
| Recency-weighted histories of the item-item models, before vs after, both hold-outs and validations | `recency.py` | `results/recency.json` |
| Recency weights: every half-life x floor on the internal validation and on both hold-outs, and what the rule picks | `recency_tradeoff.py` | `results/recency_tradeoff.json` |
| MovieLens-1M under RecBole's protocol: the variants of `seq_edlae` tried on validation | `recbole_explore.py` | `results/recbole_explore.json` |
| Replica switch-over: publish to an S3 store (moto) -> two `serve --no-scheduler` replicas serving it, under load | `replica_switch.py` | `results/replica_switch.json` |
| Scale: a 200-tenant site, local executor vs Dask with 1 and 2 workers, per-task overhead, 500-tenant projection | `scale.py` | `results/scale.json` |
"""


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def ingest_section(d: dict) -> str:
    rows = [[d["scale"]["users"], d["scale"]["items"], d["scale"]["interactions_kept"], d["pull_s"], d["parse_s"],
             d["features_s"], d["total_s"], f"{d['rows_per_s']:,}", d["peak_rss_mb"]]]
    return "\n".join([
        "## Ingest", "", f"`{d['command']}` ({d['generated_at']}). Goal: {d['goal']}.", "",
        table(["users", "items", "interactions", "pull s", "parse s", "hybrid features s", "total s", "rows/s", "peak RSS MB"], rows),
    ])


def quality_section(d: dict) -> str:
    commands = d.get("commands") or [d["command"]]
    out = ["## Quality and training time", "", f"Generated {d['generated_at']} by:", "",
           *[f"    {c}" for c in commands], "", *[f"- {note}" for note in d.get("notes", [])], "",
           "Held-out: 20 % of each qualifying learner's positives (seeded `random`, or each learner's `latest`); "
           "lists built exactly as `/user-items` serves them (per type, seen items excluded, n = 10). "
           "`reference-*` = the reference service's procedure (spec §6.5: WARP + adadelta, simulated annealing "
           "over epochs 1-20 x components 25-100, 30 iterations, AUC objective) on the same features. "
           "`+id` = with identity feature columns (the default since these results). "
           "Training seconds are wall time on the shared 2-core machine.", "",
           "![NDCG@10 per algorithm](results/quality_ndcg.png)", ""]
    rows = [r for r in d["results"] if "ndcg@10" in r]
    for dataset in sorted({r["dataset"] for r in rows}):
        for protocol in ("random", "latest"):
            group = [r for r in rows if r["dataset"] == dataset and r["protocol"] == protocol]
            if not group:
                continue
            refs = [r for r in group if r["algorithm"].startswith("reference-")]
            best_ref = max(refs, key=lambda r: r["ndcg@10"]) if refs else None
            out += [f"### {dataset}, {protocol} hold-out", ""]
            body = []
            for r in sorted(group, key=lambda r: -r["ndcg@10"]):
                ratio = f"{r['ndcg@10'] / best_ref['ndcg@10']:.2f}" if best_ref else ""
                extra = r.get("choice", "")
                body.append([r["algorithm"] + (f" → {extra}" if extra else ""), f"{r['ndcg@10']:.4f}", ratio,
                             f"{r.get('recall@10', 0):.4f}", f"{r.get('precision@10', 0):.4f}", f"{r.get('auc', 0):.4f}",
                             f"{r.get('coverage@10', 0):.3f}", r["train_seconds"], r["peak_rss_mb"]])
            ref_name = best_ref["algorithm"] if best_ref else "-"
            out += [table(["algorithm", "NDCG@10", f"x {ref_name}", "recall@10", "precision@10", "AUC", "coverage",
                           "train s", "peak RSS MB"], body), ""]
            out += _speed_lines(group)
    return "\n".join(out)


def _speed_lines(group: list[dict]) -> list[str]:
    lines = []
    by_name = {r["algorithm"]: r for r in group}
    for mode, variant in (("mf", "mf"), ("partial", "partial+id"), ("partial", "partial"), ("hybrid", "hybrid+id"),
                          ("hybrid", "hybrid")):
        ours, ref = by_name.get(variant), by_name.get(f"reference-{mode}")
        if ours and ref:
            note = " (default)" if variant == mode + "+id" or variant == "mf" else " (no identity columns, as the reference)"
            lines.append(f"- `{variant}`{note} vs `reference-{mode}`: {ref['train_seconds'] / ours['train_seconds']:.1f}x "
                         f"faster, NDCG@10 {ours['ndcg@10']:.4f} vs {ref['ndcg@10']:.4f}")
    auto, ref_h = by_name.get("auto"), by_name.get("reference-hybrid")
    if auto and ref_h:
        lines.append(f"- `auto` trained in {auto['train_seconds']} s; the reference procedure's `hybrid` in {ref_h['train_seconds']} s")
    return lines + [""] if lines else []


def similar_section(d: dict) -> str:
    rows = [[r["dataset"], r["method"], f"{r['hit_rate@10']:.4f}", r.get("coverage", ""), r["pairs"]] for r in d["results"]]
    return "\n".join(["## Similar items", "", f"`{d['command']}` ({d['generated_at']}).", "",
                      "A pair (learner, item the learner liked in training) is a hit when one of the learner's held-out "
                      "items is among the item's 10 similar items as served (same family, never the item itself). "
                      "Coverage: share of the catalogue that appears in any list.", "",
                      table(["data set", "method", "hit rate@10", "coverage", "pairs"], rows)])


def cold_section(d: dict) -> str:
    lines = ["## Cold start", "", f"`python {d['command']}` on the synthetic tenant of the model tests ({d['users']} users, {d['items']} items, 3 seeds); 20 % of learners have every interaction held out.", ""]
    summary = d.get("mean_ndcg@10") or {}
    if summary:
        lines.append(table(["method", "NDCG@10 for learners never seen in training"],
                           [[k, f"{v:.4f}" if isinstance(v, float) else v] for k, v in summary.items()]))
    else:
        lines.append("```json\n" + json.dumps(d, indent=1)[:3000] + "\n```")
    return "\n".join(lines)


CEILING_NAMES = {
    "oracle": "oracle: true topic preferences and item popularities (the generator's own parameters)",
    "posterior-features": "true items; each learner's preferences inferred exactly from training positives + position/organisation",
    "posterior": "true items; each learner's preferences inferred exactly from training positives",
    "counts-a1": "true items; preferences = topic counts of training positives, smoothed (alpha 1)",
    "popular": "popular",
}


def ceiling_section(d: dict) -> str:
    rows = [[r["protocol"], CEILING_NAMES.get(r["scorer"], r["scorer"]), f"{r['ndcg@10']:.4f}"]
            for r in d["results"] if r["scorer"] in CEILING_NAMES]
    return "\n".join([
        "## How high can NDCG@10 go on synthetic-20k?", "", f"`{d['command'].strip()}` ({d['generated_at']}).", "",
        "The synthetic data comes from our generator, so the best possible scorer is known: it rebuilds the "
        "generator's hidden world (checked against the export) and scores the same split with the same evaluation. "
        "The rows in between show what is left when parts of that knowledge must be estimated.", "",
        table(["protocol", "scorer", "NDCG@10"], rows),
    ])


def serving_section(d: dict) -> str:
    ip = d["in_process"]
    rows = [[r["workers"], r["route"], r["concurrency"], f"{r['requests_per_s']:,.0f}", r["p50_ms"], r["p99_ms"],
             r["errors"]] for r in d["http"]]
    return "\n".join([
        "## Serving", "", f"`{d['command']}` ({d['generated_at']}); tenant of {d['tenant']['users']:,} users x "
        f"{d['tenant']['items']:,} items x {d['tenant']['factors']} factors; wrk runs on the same 2 cores as the server.", "",
        f"In process, {ip.get('blas_threads', 'default')} BLAS thread(s): one pass over all item vectors (the floor) "
        f"{ip['floor_item_vectors_pass_us']} µs; as served (TenantIndex blocks) `/user-items` ranking "
        f"{ip.get('served_user_items_us', '-')} µs ({ip.get('served_user_items_over_floor', '-')}x the floor), "
        f"`/similar-items` {ip.get('served_similar_items_us', '-')} µs ({ip.get('served_similar_items_over_floor', '-')}x); "
        f"the plain ranking functions that evaluation uses: {ip['user_items_us']} µs ({ip['user_items_over_floor']}x) "
        f"and {ip['similar_items_us']} µs ({ip['similar_items_over_floor']}x).", "",
        table(["workers", "route", "concurrency", "requests/s", "p50 ms", "p99 ms", "errors"], rows),
        "", "Goal: >= 3,000 requests/s at concurrency 32 with p99 <= 10 ms and zero errors; scoring within 2x the floor.",
    ])


def store_section(d: dict) -> str:
    m = d["median"]
    rows = [[d["shape"]["users"], d["shape"]["items"], d["shape"]["factors"], d["version_mb"], m["publish_s"], m["check_s"],
             f"{d['check_share_of_publish']:.1%}", m["load_verified_s"], m["load_unverified_s"]]]
    return "\n".join([
        "## Store", "", f"`{d['command']}` ({d['generated_at']}); medians; {'; '.join(d.get('notes', []))}.", "",
        table(["users", "items", "factors", "version MB", "publish s", "of which checks s", "checks share",
               "load (SHA-256 verified) s", "load (sizes only) s"], rows),
    ])


def fuzz_section(d: dict) -> str:
    rows = [[route, r["requests"], ", ".join(f"{status}: {n}" for status, n in r["statuses"].items()), r["5xx"], r["violations"]]
            for route, r in d["by_route"].items()]
    log = d["access_log"]
    return "\n".join([
        "## Fuzz", "", f"`{d['command']}` ({d['generated_at']}); {d['server']}, the bundled sample trained with "
        f"`{d['data']['algorithm']}`; hypothesis seed {d['seed']}. Requests over every route with valid and invalid "
        "parameters and authentication, bad percent-encoding, non-UTF-8, repeated parameters, oversized and malformed "
        "requests, each answer checked against the wire contract (tests/fuzz_support.py).", "",
        f"**{d['requests']:,} requests: {d['5xx']} answered 5xx, {d['contract_violations']} broke the contract**; the "
        f"service still answered afterwards: {str(d['still_answering']).lower()}; RSS {d['rss_mb']['start']} → "
        f"{d['rss_mb']['end']} MB; access log: {log['lines']:,} lines for {log['fuzz_requests_reaching_the_app']:,} "
        f"requests that reached the app + {log['checks']} checks ({log['forged_or_missing']} forged or missing).", "",
        table(["route", "requests", "statuses", "5xx", "contract violations"], rows),
        "", "Goal: zero 5xx and zero contract violations.",
    ])
def ranking_section(d: dict) -> str:
    rows = [[name, round(v["old"], 4), round(v["new"], 4), v["new_over_old"]] for name, v in d["summary"].items()]
    return "\n".join([
        "## Ranking refactor", "", f"`{d['command']}` ({d['finished']}); old = `{d['old_src']}`, new = this tree; "
        f"{d['rounds']} rounds of one fresh process each, order alternating; medians over rounds. Sizes: {d['sizes']}. "
        f"Old and new returned identical evaluation results and served lists: {d['identical_results']}. {d['notes']}", "",
        table(["measure", "old", "new", "new / old"], rows),
        "", "Goal: serving ranking and evaluation within 5 % of the code before the refactor (new / old <= 1.05).",
        *_paired_lines(d),
    ])


def typed_parts_section(d: dict) -> str:
    """ranking_refactor.py's measurements again, old = the tree before the typed model parts (issue 10, item 2)."""
    return ranking_section(d).replace("## Ranking refactor", "## Typed model parts: serving and evaluation", 1) + (
        "\n\nThis run shared the machine with the full test suite (load average about 15 on 2 cores): the wall-clock "
        "medians moved by up to 50 % between rounds of the same code, so the process-CPU rows are the measure to read.")


def tuning_time_section(d: dict) -> str:
    cpu = d.get("training_process_cpu_seconds", {})
    rows = [[name, v["old_s"], v["new_s"], v["ratio_new_over_old"], *[cpu.get(name, {}).get(key, "") for key in ("old_s", "new_s", "ratio_new_over_old")]]
            for name, v in d["tuning_seconds_summed_over_tenants"].items()]
    return "\n".join([
        "## Typed model parts: tuning time", "", f"`{d['command']}` ({d['finished']}, load average "
        f"{' '.join(f'{x:.2f}' for x in d['machine']['load_average'])}); data `{d['source']}`; {d['rounds']} rounds, old "
        "and new tree alternating; tune()'s seconds as the published model records them, summed over tenants, median "
        f"over rounds. Old and new chose the same parameters with the same validation NDCG@10: "
        f"{d['identical_params_and_validation']}.", "",
        table(["algorithm", "tune() old s", "tune() new s", "new / old", "process CPU old s", "process CPU new s", "new / old"], rows),
        "", "Wall times on a loaded shared machine vary by a factor of two between rounds; the CPU seconds of the whole "
        "training process (load, tuning, final fit, extras, publish) are the steadier measure. "
        "Before, every candidate fit built similar-item vectors (a randomized SVD for the item-item models) and "
        "content vectors that the pipeline replaced after the final fit; now a fit returns only its scoring part and "
        "the extras are built once.", *_tune_cpu_lines(d),
    ])


def _tune_cpu_lines(d: dict) -> list[str]:
    """tune() alone in one process per tree, CPU seconds (the part the change is about, without load and publish)."""
    if "tune_cpu" not in d:
        return []
    rows = [[name, v["old_s"], v["new_s"], v["ratio_new_over_old"], v["same_choice"]] for name, v in d["tune_cpu"].items()]
    return ["", f"tune() alone (`{d['tune_cpu_command']}`, load average "
            f"{' '.join(f'{x:.2f}' for x in d['tune_cpu_load_average'])}): a fresh process per tree and round, order "
            "alternating, process CPU seconds of each tune() call, median. The old tune() also built the content "
            "vectors, which its final fit then reused from the feature cache; the new pipeline builds them once after "
            "the final fit.", "",
            table(["algorithm", "old CPU s", "new CPU s", "new / old", "same choice and NDCG@10"], rows)]


def _paired_lines(d: dict) -> list[str]:
    """The paired part: old and new code in one process, alternating on the same calls (steadier on a busy machine)."""
    if "paired" not in d:
        return []
    rows = [[name, v["old"], v["new"], v["median_ratio_new_over_old"], v["ratio_quartiles"]] for name, v in d["paired"].items()]
    return ["", f"Paired, in one process (`{d['paired_command']}`, {d['paired_finished']}): the original modules loaded "
            "from the old tree beside this tree's, alternating block by block; process CPU time; identical lists and "
            "results asserted.", "",
            table(["measure", "old", "new", "median of new / old per pair", "quartiles of new / old"], rows)]


def first_answer_section(d: dict) -> str:
    rows = []
    extra = []
    sites, tenants = [], []
    for data, section in d.items():
        for run in section["runs"]:
            finals = ", ".join(f"{t}: {m['algorithm']} {m['ndcg@10']:.3f}" for t, m in sorted(run["final_models"].items(), key=_tenant_order))
            rows.append([data, run["ML_ANYTIME_PUBLISH"], ", ".join(f"{t}: {s}" for t, s in sorted(run["first_answer_s"].items(), key=_tenant_order)),
                         run["all_tenants_answer_s"], run["run_done_s"], finals])
            if "personalised_s" in run:  # a multi-tenant run: one row per tenant below instead of one long cell
                load = section["machine"]
                sites.append([data, run["all_tenants_answer_s"], run["all_tenants_personalised_s"] or "-", run["run_done_s"],
                              run.get("training_peak_rss_mb") or "-", f"{' '.join(load['loadavg_before'])} / {' '.join(load['loadavg_after'])}",
                              section.get("code", "-")])
                tenants += _tenant_rows(data, run)
            elif "published" in run:
                stages = "; ".join(f"{p['tenant']} {p['stage']} {p['algorithm']} at {p['at_s']} s"
                                   + ("" if p["published"] else " (not published)") for p in run["published"])
                again = run.get("second_run") or {}
                second = (f"{again['run_s']} s vs {again['first_run_s']} s ({again['run_s'] / again['first_run_s']:.2f}x), "
                          f"{', '.join(f'{t}: {k}' for t, k in sorted(again['search'].items()))}") if again.get("run_s") and again.get("first_run_s") else "-"
                extra.append([data, stages, run.get("training_peak_rss_mb") or "-", second])
    commands = "; ".join(f"`{section['command']}` ({section['at']}, load average {' '.join(section['machine']['loadavg_before'])} "
                         f"before, {' '.join(section['machine']['loadavg_after'])} after)" for section in d.values())
    quick = [sum(v for k, v in secs.items() if k != "load") for section in d.values() for run in section["runs"]
             for secs in (run.get("quick_model_seconds") or {}).values()]
    cost = (f" A quick model (validate and fit `popular`, similar items, publish; its parsed data is reused) took "
            f"{min(quick):.2f}–{max(quick):.2f} s per tenant; the rest of a difference in the run's end was not spent on "
            "it, and on this shared machine the same setting varies as much from run to run (the rows above)." if quick else "")
    out = [
        "## First answer: anytime publishing", "",
        f"{commands}. A new user's path: `ml-service serve` with defaults (`auto`) on an empty store, the Totara "
        "simulator over HTTP; seconds from starting the service to each tenant's first `/user-items` "
        "`success: true`, and to the run's end (every final model published). The machine was shared with other "
        "jobs: compare on and off within a table, not across days." + cost, "",
        table(["data", "ML_ANYTIME_PUBLISH", "first answer s (tenant: s)", "every tenant answers s", "all final s",
               "final models (validation NDCG@10)"], rows)]
    if extra:
        out += ["", "Versions published during the run (seconds from the service's start), the training child's peak "
                "RSS (VmHWM), and a second run on the unchanged export (`ml-service train`: the scheduled run's path; "
                "`reuse` = the last search's choice refitted, training/reuse.py) against the first run's training time:", "",
                table(["data", "published (tenant stage algorithm at)", "training peak RSS MB", "second run vs first"], extra)]
    if sites:
        out += ["", "A multi-tenant site (`site-8`: tenant 0 holds everyone, tenants 1..8 own subsets; benchmarks/datasets.py). "
                "`before` is the code before issue 11's anytime publishing (the parent of the `wt2-anytime` merge, "
                "`git archive <commit> src` put first on PYTHONPATH, the same benchmark script): every tenant waits for "
                "its final model, one tenant after another; the other rows are main's code of the day (the `code` column: "
                "other work was committed to main while these ran). The runs, in the order of the table (each right after the "
                "last), under `nice -n 10` on a machine shared with other benchmark jobs: the first `before` had the "
                "machine nearly to itself and the first `after` did not; `before, run 2` and `run 2` ran beside other "
                "jobs under similar load; `before, run 3` and `run 4` started on an idle machine (see the load averages). Times after the first answers depend on that load as "
                "much as on the code. Seconds from the service's start until every tenant answers "
                "(polled), until every tenant has a personalised (not `popular`) model published (from training.jsonl's "
                "records, so it can read a fraction of a second before the poll saw it), and until the run's end:", "",
                table(["data", "every tenant answers s", "every tenant personalised s", "all final s", "training peak RSS MB",
                       "load average before / after", "code"], sites),
                "", "Per tenant (seconds from the service's start; `popular` answers are not personalised):", "",
                table(["data", "tenant", "first answer s", "first personalised s", "final published s",
                       "final model (validation NDCG@10)"], tenants)]
    return "\n".join(out)


def _tenant_order(pair: tuple) -> tuple:
    """Tenants in numeric order (10 after 9)."""
    return (len(str(pair[0])), str(pair[0]))


def _tenant_rows(data: str, run: dict) -> list[list[object]]:
    """One row per tenant of a multi-tenant first-answer run: first answer, first personalised model, final model."""
    rows = []
    for tenant, first in sorted(run["first_answer_s"].items(), key=_tenant_order):
        mine = [p for p in run.get("published", []) if p["tenant"] == tenant and p["published"]]
        personal = run["personalised_s"].get(tenant)
        how = next((f"{personal} ({p['stage'] or 'final'} {p['algorithm']})" for p in mine if p["at_s"] == personal), personal or "-")
        final_at = next((p["at_s"] for p in mine if p["stage"] in ("final", None)), "-")
        model = run["final_models"].get(tenant) or {}
        rows.append([data, tenant, first, how, final_at,
                     f"{model.get('algorithm', '-')} {model['ndcg@10']:.3f}" if model.get("ndcg@10") is not None else "-"])
    return rows


def costs_section(d: dict) -> str:
    rows = []
    for r in d["rows"]:
        if "measured" not in r:
            rows.append([r["candidate"], r["size"], "failed", "", "", ""])
            continue
        m, e = r["measured"], r["estimated"] or {}
        rows.append([r["candidate"], r["size"], f"{m['tune_s']} / {e.get('tune_s', '-')}", f"{m['fit_s']} / {e.get('fit_s', '-')}",
                     f"{m['peak_mb']} / {e.get('peak_mb', '-')}", m["fits"]])
    return "\n".join([
        "## Cost models of auto's candidates", "",
        f"`{d['command']}` ({d['at']}, load average {' '.join(d['machine']['loadavg_before'])} before). {d['notes']}. "
        "Measured / estimated by training/costs.py; `auto` scales the time estimates by the measured/estimated ratio "
        "of the candidates it has tuned (training/budget.py).", "",
        table(["candidate", "users x items x interactions", "tune s", "refit s", "peak RSS MB", "fits"], rows)])


def install_section(d: dict) -> str:
    s = d["seconds"]
    return "\n".join([
        "## Fresh-clone install and test run", "", f"`{d['command']}` ({d['generated_at']}, commit {d['commit']}). {d['how']}; "
        f"pip cache {d['pip_cache']}.", "",
        table(["clone + venv s", "pip upgrade s", "install s", "tests s", "total s", "passed", "failed"],
              [[s["clone_and_venv"], s["pip_upgrade"], s["install_project_and_test_extra"], s["tests"], s["total"],
                d["tests"]["passed"], d["tests"]["failed"]]]), "", f"Before the fix in pyproject.toml: {d['before_fix']}."])


def middleware_merge_section(d: dict) -> str:
    rows = [[r["order"], r["tree"], s["route"], s["median_cpu_us_on"], s["median_cpu_us_off"], f"{s['cpu_overhead']:+.1%}",
             s["on_over_off"], " ".join(map(str, r["load_average_start"]))] for r in d["runs"] for s in r["summary"]]
    return "\n".join([
        "## Request metrics in the access log's middleware", "", f"`{d['command']}` ({d['generated_at']}). {d['question']}",
        "", *[f"- {n}" for n in d["notes"]], "",
        table(["run", "tree", "route", "CPU µs on", "CPU µs off", "on vs off", "req/s on/off", "load avg"], rows), "",
        f"Conclusion: {d['conclusion']}."])


def candidate_spread_section(d: dict) -> str:
    margins = [f"{m:g}" for m in d["margins"]]
    rows = []
    for r in d["results"]:
        a = r["analysis"]
        gains = a["later_candidate_gain"]
        top = max(gains, key=lambda n: gains[n])
        rows.append([f"{r['data']} {r['tenant']}", r["protocol"], a["best_single"], f"{top} +{gains[top]:.0%}",
                     *[("same" if a[f"drop_{m}"]["same_choice"] else f"{a[f'drop_{m}']['best_single']} (-{a[f'drop_{m}']['score_lost']:.4f})")
                       + f", {a[f'drop_{m}']['tuning_seconds_saved']} of {a[f'drop_{m}']['tuning_seconds']} s saved" for m in margins]])
    return "\n".join([
        "## Later candidates and the early drop", "",
        f"`{d['command']}` ({d['generated_at']}, load average {d['machine']['loadavg_before']} before). tune() of every "
        "algorithm with the service's defaults on each tenant and hold-out; \"largest later gain\" is the most a later "
        "hyper-parameter candidate added over an algorithm's first; each margin column says whether dropping an "
        "algorithm after its first candidate when that scored more than the margin below the best so far would "
        "have kept the best single algorithm, and the tuning time it would have saved (simulated in auto's "
        "registry order, not its cost order).", "",
        table(["tenant", "hold-out", "best algorithm", "largest later gain", *[f"drop at {m}" for m in margins]], rows)])


def hostile_section(d: dict) -> str:
    def cell(value: object) -> object:
        return "-" if value is None else value

    def peak(r: dict) -> object:
        return f"{r['peak_rss_mb']} (when stopped)" if r.get("peak_rss_note") else cell(r["peak_rss_mb"])

    rows = [[r["case"], r["code"], f"{r['input_bytes'] / 2**20:,.0f}" if r["input_bytes"] else "-", cell(r["seconds"]),
             peak(r), r["outcome"].replace("|", "\\|")] for r in d["rows"]]
    return "\n".join([
        "## Hostile inputs", "", f"`{d['command']}` ({d['generated_at']}); before = `{d['before']}`, after = this tree. "
        f"Children are stopped after {d['timeout_s']:g} s and capped at {d['memory_cap_gb']:g} GB of address space. "
        + d["note"], "",
        table(["case", "code", "input MB", "seconds", "peak RSS MB", "outcome"], rows),
        "", "Goal: every hostile file fails fast with a clear error in bounded memory; text cleaning linear in its input.",
    ])


def serving_metrics_section(d: dict) -> str:
    def span(pair: list) -> str:
        return f"{pair[0]:,.0f}–{pair[1]:,.0f}"

    rows = [[r["workers"], r["route"], r["concurrency"], f"{r['median_on_rps']:,.0f} ({span(r['rps_range_on'])})",
             f"{r['median_off_rps']:,.0f} ({span(r['rps_range_off'])})", f"{r['on_over_off']:.3f}",
             f"{r['median_cpu_us_on']} ({span(r['cpu_range_on'])})", f"{r['median_cpu_us_off']} ({span(r['cpu_range_off'])})",
             f"{r['cpu_overhead']:+.1%}"] for r in d["summary"]]
    machine = d["machine"]
    probe = []
    for o in d.get("middleware_overhead", []):
        mode = "multiprocess" if o["multiprocess"] else "single-process"
        probe.append([mode, o["plain"]["median_us"], o["before"]["median_us"], o["after"]["median_us"], o["before_overhead_us"],
                      o["after_overhead_us"]])
    return "\n".join([
        "## Serving with metrics on vs off", "", f"`{d['command']}` ({d['generated_at']}); {machine.get('note', '')}; load average "
        f"{machine.get('load_average_start')} at the start, {machine.get('load_average_end')} at the end. Two servers (ML_METRICS=1 "
        "and 0) run side by side; wrk alternates between them (on, off, off, on, ...) and the medians over the rounds are compared, "
        "with the range in brackets. Server CPU per request = user + system CPU seconds of the server's process tree (from /proc) "
        "during the wrk run divided by the requests answered: less sensitive to other jobs on the host than requests per second.", "",
        table(["workers", "route", "conc.", "req/s on", "req/s off", "on / off", "CPU µs/req on", "CPU µs/req off", "CPU on vs off"], rows),
        "", "The middleware alone, in process around a do-nothing ASGI app (medians of 9 interleaved repetitions of 20,000 requests; "
        "before = one histogram observe() per request, the previous code; after = batched tallies, the current code):", "",
        table(["mode", "no middleware µs", "before µs", "after µs", "before: added µs", "after: added µs"], probe),
        "", "Goal: metrics on within 5 % of off. Reading: the end-to-end ratios swing with the host's load (ranges in brackets) "
        "far more than the effect sought; the middleware's own added cost against the server CPU per request of the same run is "
        "the usable estimate (both inflated alike by the load).",
    ])


def dashboard_section(d: dict) -> str:
    rows = [[page, v.get("first_ms", ""), v["median_ms"], v["p95_ms"], v["max_ms"], f"{v['bytes']:,}"] for page, v in d["pages"].items()]
    site = d["site"]
    return "\n".join([
        "## Dashboard render time", "", f"`{d['command']}` ({d['generated_at']}); {site['tenants']} tenants x "
        f"{site['versions_per_tenant']} versions, a training log of {site['training_log_runs']} runs; {d['method']}; "
        f"{d['machine'].get('note', '')}.", "",
        table(["page", "first render ms", "median ms", "p95 ms", "max ms", "bytes"], rows), "", f"Goal: under {d['goal_ms']} ms per page.",
        *_first_render_lines(d),
    ])


def _first_render_lines(d: dict) -> list[str]:
    """The overview's first render before and after its fix, same run, alternating (dashboard.py --rounds)."""
    first = d.get("first_render_overview")
    if not first:
        return []
    rows = [[variant, v["median_ms"], v["min_ms"], v["max_ms"], ", ".join(str(x) for x in v["runs_ms"])] for variant, v in first.items()]
    return ["", "First render of the overview on a freshly started app, in the same run, alternating (load average "
            f"{d.get('load_average', '?')}): before = every version's integrity check and folder size for the sparklines and "
            "templates compiled by the first request; after = each version's meta.json read once, templates compiled at start-up.",
            "", table(["code", "median ms", "min ms", "max ms", "runs ms"], rows)]


def recbole_section(d: dict) -> str:
    rows = [[r["model"], r["source"], r.get("ndcg@10", "error"), r.get("recall@10", "-"),
             "-" if r.get("fit_seconds") is None else r["fit_seconds"], r.get("choice", "")] for r in d["rows"]]
    protocol = d["protocol"]
    notes = [f"- {key}: {value}" for key, value in protocol.items() if key != "statistics"]
    notes += [f"- data after filtering and split: {protocol.get('statistics', {})}"]
    notes += [f"- {note}" for note in d.get("notes", [])]
    commands = d.get("commands") or [d["command"]]
    return "\n".join([
        "## MovieLens-1M under RecBole's protocol", "", f"Generated {d['generated_at']} by:", "",
        *[f"    {c}" for c in commands], "", *notes, "",
        table(["model", "source", "NDCG@10", "recall@10", "fit s (ours: tuning included)", "auto's choice"], rows),
    ])


def soak_lines(s: dict) -> list[str]:
    """The soak's paragraph: the soak proper (graceful restarts) and, apart, the worker SIGKILL."""
    if "sigkill_extra" not in s:  # an older soak, one worker SIGKILLed inside it
        return [f"Soak: {s['seconds']:.0f} s, {s['requests']:,} requests, {s['errors']} failed, p99 {s['p99_ms']} ms, "
                f"RSS {s['rss_mb_total_start']} -> {s['rss_mb_total_end']} MB."]
    hup = next((e for e in s["events"] if e["event"].startswith("SIGHUP")), {})
    term = next((e for e in s["events"] if e["event"].startswith("SIGTERM")), {})
    k = s["sigkill_extra"]
    return [
        f"Soak: {s['seconds']:.0f} s at concurrency {s['concurrency']} against {s['workers']} workers, a publish every "
        f"{s['publish_every_s']:g} s ({s['publishes']} publishes), a graceful restart of every worker (SIGHUP, uvicorn's "
        f"rolling restart, done in {hup.get('completed_within_s', '-')} s) at {hup.get('at_s', '-')} s and a SIGTERM to "
        f"one worker (its replacement started {term.get('replaced_within_s', '-')} s later) at {term.get('at_s', '-')} s: "
        f"**{s['requests']:,} requests ({s['requests_per_s']}/s), {s['errors']} failed**, p50 {s['p50_ms']} ms, p99 "
        f"{s['p99_ms']} ms (client and server share the 2 busy cores). Server RSS {s['rss_mb_total_start']} MB at the "
        f"start, {s['rss_mb_total_end']} MB at the end (drift {s['rss_mb_drift']:+} MB; the same processes over the "
        f"first half, before the restart: {s['rss_mb_drift_same_processes_first_half']:+} MB). Server log errors: "
        f"{len(s.get('server_log_errors', []))}.",
        "",
        f"Apart from the goal, {k['seconds']:.0f} s more of the same load with one worker SIGKILLed (its replacement "
        f"started {k['event'].get('replaced_within_s', '-')} s later): {k['requests']:,} requests, {k['errors']} failed "
        f"({'; '.join(sorted(set(e.split(': ', 1)[1] for e in k['error_samples'])))[:160] or '-'}). A killed process "
        "finishes nothing: the kernel resets the connections it had accepted, so the requests on them fail.",
    ]


def reliability_section(d: dict) -> str:
    fuzz = d["fuzz"]
    fuzz_line = (f"Fuzz (`benchmarks/fuzz.py`'s `fuzz_service`, seed {fuzz.get('seed')}): {fuzz['requests']:,} requests "
                 f"({fuzz.get('generated', '-'):,} generated + the sweep of every route) in {fuzz.get('fuzz_s', '-')} s, "
                 f"{fuzz['5xx']} answered 5xx, {fuzz.get('contract_violations', '-')} broke the wire contract; the server "
                 f"{'still answered' if fuzz.get('server_answers_afterwards') else 'did NOT answer'} afterwards."
                 if "requests" in fuzz else f"Fuzz: not run here ({fuzz.get('why', fuzz.get('status', ''))}).")
    rows = [[kind, v["injected"], v["ok"], v["failed"], ", ".join(f"{k} x{n}" for k, n in v["details"].items())]
            for kind, v in d["faults"].items()]
    failed = [r for r in d["fault_records"] if not r["ok"]]
    s = d["soak"]
    return "\n".join([
        "## Reliability", "", f"`{d['command']}` ({d['generated_at']}, {d['seconds']:.0f} s on the shared 2-core machine).", "",
        fuzz_line, "",
        table(["fault", "injected", "ok", "failed", "details"], rows), "",
        "ok = afterwards the previous models still served (checked over HTTP against a running `ml-service serve`), "
        "every served version loaded with all hashes verified, and the next run succeeded. "
        + "".join(f"{v['missed_the_aimed_stage']} of the {kind} faults came too late for the aimed stage (the child had "
                  "moved on); they still count as injected faults. " for kind, v in d["faults"].items() if v.get("missed_the_aimed_stage")),
        "",
        *(["Failed checks:", ""] + [f"- {r['kind']}, {r['detail']}: {'; '.join(r['problems'])[:300]}" for r in failed] + [""] if failed else []),
        *soak_lines(s),
        "", "Goal: every count of failures zero.",
    ])


def replica_switch_section(d: dict) -> str:
    sw, req, setup = d["switch_s"], d["requests"], d["setup"]
    m = setup["model"]
    return "\n".join([
        "## Replica switch-over", "", f"`{d['command']}` ({d['generated_at']}, load average {d['machine']['loadavg_before']} "
        f"before, {d['machine']['loadavg_after']} after). {setup['store']}; {setup['replicas']} replicas polling every "
        f"{setup['poll_s']:g} s; a {m['users']:,} x {m['items']:,} x {m['factors']} factor model ({m['bytes']:,} bytes).", "",
        table(["publishes", "switch p50 s", "mean s", "max s", "within 2 polls", "never switched", "requests ok", "failed"],
              [[d["publishes"], sw["p50"], sw["mean"], sw["max"], d["within_2_polls"], d["never_switched"], req["ok"], req["failed"]]]),
        "", f"Goal: {d['goal']}: {'met' if d['goal_met'] else 'NOT met'}. {d['notes']}.",
    ])


def scale_section(d: dict) -> str:
    site, tiny, p = d["site"], d["tiny"], d["projection_500"]
    rows = [[r["executor"], r["workers"] or "-", r["threads_per_worker"], r["wall_s"], len(r["failed"]),
             " ".join(map(str, r["load_average_before"])), " ".join(map(str, r["load_average_after"]))] for r in d["runs"]]
    proj = [[label.replace("_", " "), p[label]["work_s"], p[label]["longest_task_s"], p[label]["one_worker_h"],
             p[label]["workers_for"]["24h"] or "none", p[label]["workers_for"]["1h"] or "none (the longest task is longer)"]
            for label in ("measured_algorithm", "auto", "auto_every_tenant_largest") if label in p]
    return "\n".join([
        "## Scale: distributed training", "",
        f"`{d['command']}` ({d['generated_at']}, {d['cpus']} cores). A site of {site['tenants']} tenants with power-law sizes "
        f"(largest {', '.join(map(str, site['largest']))} learners, median {site['median']}, {site['learners_total']} in all, "
        f"{site['interactions_per_learner']} interactions each), `{site['algorithm']}`; "
        f"{'; '.join(d.get('notes', []))}.", "",
        table(["executor", "workers", "threads each", "wall s", "failed tenants", "load avg before", "load avg after"], rows), "",
        f"2 workers vs 1: speed-up {d['speedup_2_vs_1_worker']}×, scaling efficiency {d['scaling_efficiency']:.0%} (goal ≥ 85 %); "
        f"Dask with 2 workers vs the local executor with 2 threads: {d['dask2_vs_local_ratio']}× (local wall / Dask wall). "
        f"Per-task overhead of the Dask path on {tiny['tenants']} tenants of {tiny['learners']} learners (`popular`): "
        f"{tiny['overhead_per_task_s']} s per task{' (below what this shared machine can resolve)' if tiny['overhead_per_task_s'] < 0 else ''} (local {tiny['local_wall_s']} s vs Dask 1 worker {tiny['dask_1_worker_wall_s']} s "
        f"in all; a task's own load + train + publish {tiny['mean_task_s']} s; goal < 1 s).", "",
        f"Projection (a model, not a measurement) of a {p['tenants']}-tenant site, largest tenant {p['largest_learners']} learners: "
        f"task time t(n) = {p['fit']['a_s']} s + {p['fit']['b_s_per_learner']} s × learners fitted to the 1-worker run; "
        "makespan on N single-thread workers = max(Σt / N, longest task) + overhead × tenants / N; `auto` scales t(n) so "
        "that a 20k-learner tenant takes the issue's 5 min on this machine (not measured here).", "",
        table(["site model", "total task s", "longest task s", "1 worker h", "workers for 24 h", "workers for 1 h"], proj),
    ])


def recency_section(d: dict) -> str:
    rows = []
    keyed = {(r["code"], r["dataset"], r["holdout"], r["validation"], r["algorithm"]): r for r in d["rows"]}
    for (code, dataset, holdout, validation, algorithm), after in sorted(keyed.items(), key=lambda kv: kv[0][1:]):
        if code != "after":
            continue
        before = keyed.get(("before", dataset, holdout, validation, algorithm), {})
        params = after.get("params") or {}
        half_life = f"{params.get('half_life', '∞')}" + (f"@{params['history_floor']:g}" if "history_floor" in params else "")
        name = algorithm + (f" → {after['choice']}" if after.get("choice") else "")
        rows.append([dataset, holdout, validation, name, before.get("ndcg@10", "-"), after.get("ndcg@10", "-"),
                     half_life if algorithm != "auto" else "", after.get("train_seconds", "-")])
    return "\n".join([
        "## Recency-weighted histories (item-item models), before vs after", "",
        f"`{d['command']}` ({d['generated_at']}, load average {d['machine']['loadavg_before']} before, "
        f"{d['machine']['loadavg_after']} after). The service path as in the quality section; each hold-out with "
        "the service's default internal validation (`latest`), and the random hold-out also with validation "
        f"matching it. Before = `{d['before']}`; after = {d.get('after', 'the working tree')}. {d['notes']}.", "",
        table(["data", "hold-out", "validation", "algorithm", "NDCG@10 before", "NDCG@10 after", "half-life@floor", "train s"],
              rows), *_reference_lines(d, keyed)])


def recency_tradeoff_section(d: dict) -> str:
    rows = []
    for r in d["rows"]:
        validation, test = r["validation"], r["test"]
        best_val = max(validation, key=validation.get)
        best_test = max(test, key=test.get)
        rules = [f"{rule}: {validation[rule]:.4f} / {test[rule]:.4f}" for rule in r["rule_by_low_floor_margin"].values()]
        rows.append([r["label"], r["dataset"], r["holdout"], r["algorithm"], f"{validation['none']:.4f} / {test['none']:.4f}",
                     *rules, f"{best_val}: {test[best_val]:.4f}", f"{best_test}: {test[best_test]:.4f}"])
    margins = [f"rule, margin {m}: validation / hold-out" for m in d["rows"][0]["rule_by_low_floor_margin"]] if d["rows"] else []
    runs = "; ".join(f"{run['label']}: `{run['command']}` ({run['generated_at']}, load {run['machine']['loadavg_before']})"
                     for run in d["runs"])
    return "\n".join([
        "## Recency weights: what they gain on the newest interactions and cost on random ones", "",
        f"{runs}. Each algorithm with its default hyper-parameters, fitted once on the internal validation split "
        "(each learner's newest 20 % of the training part) and once on the whole training part; every half-life x "
        "floor (`none` = no decay; `10@0.1` = half-life 10 interactions, floor 0.1) re-weights the history and is "
        "scored on both (NDCG@10, per-type lists). \"Rule\" = models/recency.py's choice replayed on the validation "
        "scores, with the low floor's margin (`LOW_FLOOR_MARGIN`) at 0.03 (before) and 0.10 (now). The label says which hold-out split made the rows: before 2026-12-03 the `latest` split left a "
        "learner's rating-0 interactions from the held-out period in train, where a recency-weighted history read "
        "them (on MovieLens-1M the hold-out then preferred far steeper weights than validation did). " + d.get("notes", ""), "",
        table(["split", "data", "hold-out", "algorithm", "no decay: validation / hold-out", *margins,
               "best on validation: hold-out", "best on hold-out"], rows)])


def _reference_lines(d: dict, keyed: dict) -> list[str]:
    """`auto` against the reference procedure's best mode on each (data set, hold-out) that has one."""
    best: dict[tuple[str, str], dict] = {}
    for ref in d.get("references", []):  # the reference procedure's best mode on each data set and hold-out
        key = (ref["dataset"], ref["protocol"])
        if key not in best or ref["ndcg@10"] > best[key]["ndcg@10"]:
            best[key] = ref
    lines = []
    for ref in (best[key] for key in sorted(best)):
        for code in ("before", "after"):
            ours = keyed.get((code, ref["dataset"], ref["protocol"], "latest", "auto"))
            if ours:
                lines.append(f"- {ref['dataset']}, {ref['protocol']} hold-out: `auto` {code} {ours['ndcg@10']:.4f} = "
                             f"{ours['ndcg@10'] / ref['ndcg@10']:.2f}x `{ref['algorithm']}` ({ref['ndcg@10']:.4f}, "
                             f"from {ref['from']}, {ref.get('train_seconds', '?')} s)")
    return ["", *lines] if lines else []


def main() -> int:
    parts = [INTRO]
    for name, render in (
        ("ingest.json", ingest_section),
        ("quality.json", quality_section),
        ("ceiling.json", ceiling_section),
        ("similar_items.json", similar_section),
        ("cold_start.json", cold_section),
        ("serving.json", serving_section),
        ("store_publish.json", store_section),
        ("fuzz.json", fuzz_section),
        ("ranking_refactor.json", ranking_section),
        ("typed_parts_ranking.json", typed_parts_section),
        ("tuning_time.json", tuning_time_section),
        ("hostile_inputs.json", hostile_section),
        ("reliability.json", reliability_section),
        ("serving_metrics.json", serving_metrics_section),
        ("dashboard.json", dashboard_section),
        ("recbole_ml1m.json", recbole_section),
        ("first_answer.json", first_answer_section),
        ("costs.json", costs_section),
        ("costs_seq_edlae.json", lambda d: costs_section(d).replace("## Cost models of auto's candidates", "## seq_edlae's cost, measured for its cost model", 1)),
        ("candidate_spread.json", candidate_spread_section),
        ("recency.json", recency_section),
        ("recency_tradeoff.json", recency_tradeoff_section),
        ("metrics_middleware_merge.json", middleware_merge_section),
        ("install.json", install_section),
        ("replica_switch.json", replica_switch_section),
        ("scale.json", scale_section),
    ):
        data = load(name)
        parts.append(render(data) if data else f"## {name}\n\nNot run yet.")
    (HERE / "README.md").write_text("\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
