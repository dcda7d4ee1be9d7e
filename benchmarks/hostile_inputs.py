"""Hostile inputs: peak memory and seconds of parsing and text cleaning on files and tokens built to exhaust them.

    .venv/bin/python benchmarks/hostile_inputs.py --before /work/main/src     # before (that tree) and after (this one)

Cases, each in a fresh child process (so peak RSS is that case's own), run once against the code under
`--before` (PYTHONPATH) and once against this tree's src:
- `no_newline_300mb`: a tenant whose user_interactions file is a header and then 300 MB without a newline;
- `field_1gb_one_line` / `field_1gb_multiline`: an item_data row whose quoted `document` field is 1 GB, on one
  line, or as 80-character lines (a quoted field spanning lines);
- `fields_1mb_x100`: a valid item_data file of 100 items whose documents are 1 MB each (80-character lines, with
  quotes): under ML_MAX_RECORD_MB, over the csv module's own 128 KiB field limit;
- `token_100k` / `token_1m`: `clean_text` of one token of 100k / 1M characters without `@`.
Seconds are those of `load_tenant` / `clean_text` alone (imports and pattern building excluded). Files are
generated on the fly into a temporary folder and deleted afterwards. Children run with an address
space cap (`--memory-cap-gb`) and a time-out (`--timeout`), so a case that would exhaust the machine is stopped
and reported as such. Writes benchmarks/results/hostile_inputs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SRC = Path(__file__).resolve().parent.parent / "src"
MB = 1 << 20

USER_HEADER = b"user_id,lang,city,country,interests,asp_position,positions,organisations,competencies_scale,badges,description\n"
ITEM_HEADER = b"item_id,container_course,container_workspace,engage_article,engage_microlearning,totara_playlist,topic_a,document\n"
INTERACTION_HEADER = b"user_id,item_id,rating,timestamp\n"
CASES = ("no_newline_300mb", "field_1gb_one_line", "field_1gb_multiline", "fields_1mb_x100", "token_100k", "token_1m")


def write_tenant(folder: Path, case: str) -> None:
    """A tenant "0" whose one file is hostile; the other two are small and valid."""
    folder.mkdir(parents=True, exist_ok=True)
    users = USER_HEADER + b"".join(b"%d,en,,,,,,,,,\n" % u for u in range(1, 51))
    items = ITEM_HEADER + b"".join(b"engage_article%d,0,0,1,0,0,1,text\n" % i for i in range(1, 31))
    interactions = INTERACTION_HEADER + b"".join(b"%d,engage_article%d,1,1700000000\n" % (u, u % 30 + 1) for u in range(1, 51))
    (folder / "user_data_0.csv").write_bytes(users)
    (folder / "item_data_0.csv").write_bytes(items)
    (folder / "user_interactions_0.csv").write_bytes(interactions)
    piece_size = 8 * MB
    if case == "no_newline_300mb":
        row = b"1,engage_article1,1,1700000000,"
        piece = row * (piece_size // len(row))
        with open(folder / "user_interactions_0.csv", "wb") as out:
            out.write(INTERACTION_HEADER)
            for _ in range(300 * MB // len(piece)):
                out.write(piece)
    elif case.startswith("field_1gb"):
        line = b"x" * 79 + b"\n" if case.endswith("multiline") else b"x" * 80
        piece = line * (piece_size // len(line))
        with open(folder / "item_data_0.csv", "wb") as out:
            out.write(ITEM_HEADER + b'engage_article1,0,0,1,0,0,1,"')
            for _ in range(1000 * 1000 * 1000 // len(piece)):
                out.write(piece)
            out.write(b'"\n')
    elif case == "fields_1mb_x100":
        line = b'a ""quoted"" word, then more text' + b"." * 46 + b"\n"  # 80 bytes, 79 characters of text
        document = line * (MB // len(line))
        with open(folder / "item_data_0.csv", "wb") as out:
            out.write(ITEM_HEADER)
            for i in range(1, 101):
                out.write(b'engage_article%d,0,0,1,0,0,1,"%s"\n' % (i, document))


def child(case: str, folder: Path) -> None:
    """Run one case in this (child) process and print its outcome, seconds and peak RSS as one JSON line."""
    import ml_service
    from ml_service.data.load import load_tenant
    from ml_service.data.text import clean_text
    from ml_service.source.base import TenantFiles

    clean_text("warm up, e-mail a@b.c")  # the patterns are built on first use: not part of the measure
    started = time.monotonic()
    try:
        if case.startswith("token"):
            n = 100_000 if case == "token_100k" else 1_000_000
            cleaned = clean_text("a" * n)
            outcome = f"cleaned ({len(cleaned)} characters kept)"
        else:
            files = TenantFiles("0", folder / "user_interactions_0.csv", folder / "user_data_0.csv", folder / "item_data_0.csv")
            data = load_tenant(files)
            longest = max((len(d) for d in data.items.documents), default=0)
            outcome = (
                f"loaded without error: {data.n_users} users, {data.n_items} items, {len(data.interactions)} "
                f"interactions, {data.report.skipped_rows} rows skipped, longest document {longest} characters"
            )
    except Exception as exc:  # the outcome is what we measure: a clear error is the goal
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"outcome": outcome, "seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb, 1),
                      "code": str(Path(ml_service.__file__).parent)}))


def run_case(case: str, folder: Path, src: Path, timeout_s: float, cap_gb: float) -> dict[str, object]:
    cap = int(cap_gb * (1 << 30))

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    started = time.monotonic()
    with subprocess.Popen([sys.executable, __file__, "--child", case, "--folder", str(folder)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            peak = _peak_rss_mb(proc.pid)  # the high-water mark so far, read before the child is stopped
            proc.kill()
            proc.communicate()
            return {"outcome": f"did not finish within {timeout_s:g} s (stopped)", "seconds": None,
                    "peak_rss_mb": peak, "peak_rss_note": "high-water mark when stopped"}
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"outcome": f"crashed (exit {done.returncode}, address space cap {cap_gb:g} GB): {tail}",
                "seconds": round(time.monotonic() - started, 2), "peak_rss_mb": None}
    result = json.loads(lines[-1])
    if str(src.resolve()) not in result.pop("code"):
        raise SystemExit(f"the child did not import ml_service from {src}: check PYTHONPATH and the editable install")
    return result


def _peak_rss_mb(pid: int) -> float | None:
    """VmHWM of a running process (Linux), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="src folder of the code to compare against (e.g. /work/main/src)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case and code")
    parser.add_argument("--memory-cap-gb", type=float, default=12.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "hostile_inputs.json")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.folder)
        return 0

    codes = ([("before", args.before)] if args.before else []) + [("after", SRC)]
    rows: list[dict[str, object]] = []
    for case in args.cases:
        with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
            folder = Path(tmp) / "tenant"
            if not case.startswith("token"):
                write_tenant(folder, case)
            size = sum(p.stat().st_size for p in folder.glob("*.csv")) if folder.exists() else 0
            for label, src in codes:
                result = run_case(case, folder, src, args.timeout, args.memory_cap_gb)
                print(f"{case:22} {label:6} {result}", flush=True)
                rows.append({"case": case, "code": label, "input_bytes": size, **result})
    command = "python benchmarks/hostile_inputs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {
        "command": command.strip(),
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "before": str(args.before) if args.before else None,
        "timeout_s": args.timeout,
        "memory_cap_gb": args.memory_cap_gb,
        "note": "Defaults of the after code: ML_MAX_RECORD_MB=16. Each case runs in its own child process; peak RSS "
                "is that child's ru_maxrss. The machine was shared with other work, so seconds are indicative.",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
