"""Write the manual's benchmarks page (docs/benchmarks.md) from the benchmark JSON files in reports/bench/.

    python scripts/bench_page.py [--bench reports/bench] [--out docs/benchmarks.md] [--check]

Measured figures live in those JSON files only; this page is regenerated from them (`scripts/build_docs.sh` does it
before every docs build), so a new measurement is a new JSON file, never an edit of prose. A file may be the raw
`--json` output of a benchmark script (`benchmarks/bench_*.py`) or a hand-made record with the same keys; these
optional keys are read when present:

    title     one line naming the measurement
    command   the command that re-measures it
    measured  {"date", "commit", "source"}: when and at which commit it was measured
    machine   {"cpus", "cpu", "backend", "load_avg_1m", "conditions"} (raw scripts' `cpu_count`, `backend`,
              `loadavg_before` / `loadavg_after` are read too)

Every other field is shown as it is in a table of all fields, so fields added later appear without a change here;
the known benchmarks (lab, trl, compare, compare_memory, compare_ray, test_suite) also get a summary table, built
only from the fields they have. A file that is not valid JSON or not an object is named on stderr and on the page,
and the rest still renders. `--check` writes nothing and exits 1 when the page is out of date.
"""

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = (
    "test_suite",
    "verify",
    "sims",
    "compare",
    "compare_memory",
    "compare_ray",
    "lab",
    "trl",
    "smollm2_study",
)
META_KEYS = ("title", "command", "measured", "machine")
MAX_INLINE_LIST = 8
_MISSING = object()


def fmt(value) -> str:
    """A JSON value as table text: floats to 4 significant digits, long lists counted, pipes escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    if isinstance(value, list):
        if len(value) <= MAX_INLINE_LIST and all(not isinstance(v, dict | list) for v in value):
            return ", ".join(fmt(v) for v in value) or "(empty)"
        return f"[{len(value)} items]"
    if isinstance(value, dict):
        return f"{{{len(value)} fields}}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def flatten(data: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    """(dotted key, value) for every leaf of nested objects; lists are leaves."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def get(data: dict, *paths: str, default=_MISSING):
    """The first of the dotted `paths` present in `data` (`default`, else None, when none is)."""
    for path in paths:
        node = data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return node
    return None if default is _MISSING else default


def seconds(value) -> str:
    return "—" if value is None else f"{fmt(value)} s"


def memory(data: dict, base: str = "") -> str:
    """Peak RSS from `peak_rss_mb` or `peak_rss_gb` (whichever the file has), as the file gives it."""
    mb, gb = get(data, f"{base}peak_rss_mb"), get(data, f"{base}peak_rss_gb")
    if isinstance(mb, int | float):
        return f"{mb / 1000:.1f} GB" if mb >= 10000 else f"{fmt(mb)} MB"
    return "—" if gb is None else f"{fmt(gb)} GB"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def summary_lab(d: dict) -> list[str]:
    rows = [
        ["seconds per step (median)", seconds(get(d, "step_seconds"))],
        ["rollout (incl. verifier)", seconds(get(d, "rollout_seconds"))],
        ["log-probs + forward + backward + AdamW", seconds(get(d, "update_seconds"))],
        ["compile", seconds(get(d, "compile_seconds"))],
        ["matmul FLOPs per step", _tera(get(d, "flops"))],
        ["float32 GEMM rate, same run", _giga(get(d, "gemm_flops_per_s"))],
        ["FLOP floor", seconds(get(d, "flop_floor_seconds"))],
        ["step / floor", fmt(get(d, "step_over_floor"))],
        ["peak RSS", memory(d)],
    ]
    return table(["", "threegate lab"], [r for r in rows if r[1] != "—"])


def _tera(x) -> str:
    return "—" if not isinstance(x, int | float) else f"{x / 1e12:.3g} TFLOP"


def _giga(x) -> str:
    return "—" if not isinstance(x, int | float) else f"{x / 1e9:.3g} GFLOP/s"


def summary_trl(d: dict) -> list[str]:
    rows = [
        [
            "TRL `GRPOTrainer`",
            seconds(get(d, "step_seconds")),
            seconds(get(d, "breakdown_seconds.generation")),
            seconds(get(d, "breakdown_seconds.forward")),
            seconds(get(d, "breakdown_seconds.backward_optimizer")),
            memory(d),
        ]
    ]
    if isinstance(get(d, "ours"), dict):
        rows.append(
            [
                "threegate lab",
                seconds(get(d, "ours.step_seconds")),
                seconds(get(d, "ours.rollout_seconds")) + " (rollout)",
                seconds(get(d, "ours.update_seconds")) + " (log-probs, forward, backward, AdamW)",
                "",
                memory(d, "ours."),
            ]
        )
    out = table(
        ["", "seconds per step", "generation", "forward", "backward + optimizer", "peak RSS"], rows
    )
    ratios = [
        ("TRL / ours, time", get(d, "ratio_trl_over_ours")),
        ("TRL / ours, peak RSS", get(d, "rss_ratio_trl_over_ours")),
        ("ours / TRL, peak RSS", get(d, "rss_ratio_ours_over_trl")),
    ]
    extra = [f"{name}: {fmt(v)}" for name, v in ratios if v is not None]
    return out + (["", "; ".join(extra) + "."] if extra else [])


def summary_compare(d: dict) -> list[str]:
    rows = []
    for key, label in (("compare", "`threegate compare`"), ("naive", "naive baseline")):
        r = get(d, key)
        if not isinstance(r, dict):
            continue
        name = f"{label}: {r['method']}" if "method" in r and key == "naive" else label
        rows.append(
            [
                name,
                seconds(r.get("wall_s")),
                memory(r),
                "—" if r.get("peak_rss_anon_mb") is None else f"{fmt(r['peak_rss_anon_mb'])} MB",
            ]
        )
    out = table(["method", "wall", "peak RSS", "peak anonymous"], rows)
    extra = []
    if get(d, "speedup_vs_naive") is not None:
        extra.append(f"naive / compare wall time: {fmt(get(d, 'speedup_vs_naive'))}")
    if get(d, "rss_ratio_naive_over_compare") is not None:
        extra.append(f"naive / compare peak RSS: {fmt(get(d, 'rss_ratio_naive_over_compare'))}")
    if get(d, "memory_target_mb") is not None:
        extra.append(
            f"target {fmt(get(d, 'memory_target_mb'))} MB, met: {fmt(get(d, 'memory_ok'))}"
        )
    return out + (["", "; ".join(extra) + "."] if extra else [])


def summary_compare_ray(d: dict) -> list[str]:
    rows = []
    for key in ("serial", "ray"):
        r = get(d, key)
        if isinstance(r, dict):
            start = r.get("ray_start_s")
            wall = seconds(r.get("wall_s")) + (f" (+ {fmt(start)} s Ray start-up)" if start else "")
            rows.append([key, wall, fmt(r.get("processes"))])
    out = table(["run", "wall", "processes"], rows)
    if get(d, "speedup") is not None:
        out += ["", f"serial / ray wall time: {fmt(get(d, 'speedup'))}."]
    same = get(d, "identical_files")
    if isinstance(same, dict):
        out += [
            "",
            "Identical output files: " + ", ".join(f"`{k}` {fmt(v)}" for k, v in same.items()),
        ]
    plan = get(d, "extrapolation_70b")
    if isinstance(plan, dict):
        per_type = plan.get("per_type_s")
        if isinstance(per_type, dict):
            out += ["", "70B plan, predicted seconds per matrix:", ""]
            out += table(["matrix", "seconds"], [[k, fmt(v)] for k, v in per_type.items()])
        nodes = plan.get("nodes_s") or plan.get("nodes_predicted")
        if isinstance(nodes, dict):
            workers = plan.get("workers_per_node")
            out += ["", f"Predicted wall time on N nodes ({fmt(workers)} workers each):", ""]
            vals = [v if isinstance(v, str) else seconds(v) for v in nodes.values()]
            out += table(["nodes", *nodes.keys()], [["wall", *vals]])
    return out


def summary_test_suite(d: dict) -> list[str]:
    rows = [
        ["tests", fmt(get(d, "tests"))],
        ["wall", fmt(get(d, "wall")) if get(d, "wall") else seconds(get(d, "wall_s"))],
        ["CPU", "—" if get(d, "cpu_min") is None else f"{fmt(get(d, 'cpu_min'))} min"],
        ["peak RSS", memory(d)],
    ]
    return table(["", "value"], [r for r in rows if r[1] != "—"])


SUMMARIES: dict[str, Callable[[dict], list[str]]] = {
    "lab": summary_lab,
    "trl": summary_trl,
    "compare": summary_compare,
    "compare_memory": summary_compare,
    "compare_ray": summary_compare_ray,
    "test_suite": summary_test_suite,
}


def git_last_commit(path: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "log", "-1", "--format=%h %cs", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return proc.stdout.strip() or None


def measured_line(d: dict, path: Path) -> str:
    m = d.get("measured") if isinstance(d.get("measured"), dict) else {}
    date = m.get("date") or d.get("date")
    commit = m.get("commit") or d.get("commit") or d.get("git_commit")
    if date or commit:
        line = f"Measured {date or '(date not recorded)'} at commit `{commit or 'not recorded'}`."
    else:
        last = git_last_commit(path)
        line = "Measurement date not recorded" + (
            f"; the file was last committed in `{last}`."
            if last
            else "; the file is not committed."
        )
    if m.get("source"):
        line += f" {m['source']}"
    return line


def machine_line(d: dict) -> str:
    m = d.get("machine") if isinstance(d.get("machine"), dict) else {}
    parts = []
    cpu = m.get("cpu")
    cpus = m.get("cpus", d.get("cpu_count"))
    if cpu:
        parts.append(str(cpu))
    elif cpus is not None:
        parts.append(f"{cpus} CPUs")
    backend = m.get("backend", d.get("backend"))
    if backend:
        parts.append(f"JAX backend {backend}")
    load = m.get("load_avg_1m", m.get("load_average"))
    before, after = d.get("loadavg_before"), d.get("loadavg_after")
    if load is None and before is not None:
        load = f"{fmt(before)} before, {fmt(after)} after"
    parts.append(f"load average {fmt(load) if load is not None else 'not recorded'}")
    if m.get("conditions"):
        parts.append(str(m["conditions"]))
    return "Machine: " + "; ".join(parts) + "."


def section(stem: str, d: dict, path: Path) -> list[str]:
    title = str(d.get("title") or stem.replace("_", " "))
    title = title[:1].upper() + title[1:]
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    out = [f"## {title}", "", f"From `{where}`. {measured_line(d, path)}", ""]
    out += [machine_line(d), ""]
    if d.get("command"):
        out += [f"Re-measure: `{d['command']}`", ""]
    if d.get("workload") is not None:
        wl = d["workload"]
        text = (
            ", ".join(f"{k} {fmt(v)}" for k, v in wl.items()) if isinstance(wl, dict) else fmt(wl)
        )
        out += [f"Workload: {text}.", ""]
    summary = SUMMARIES.get(stem)
    if summary is not None:
        try:
            out += [*summary(d), ""]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            print(f"bench_page: {path.name}: no summary table ({err})", file=sys.stderr)
            out += [f"(No summary table: {fmt(str(err))}; every field is below.)", ""]
    fields = [(k, v) for k, v in flatten(d) if k.split(".")[0] not in META_KEYS]
    if fields:
        out += [f'??? info "All fields of {path.name}"', ""]
        out += [
            "    " + line for line in table(["field", "value"], [[k, fmt(v)] for k, v in fields])
        ]
        out += [""]
    return out


def load(bench: Path) -> tuple[list[tuple[str, dict, Path]], list[str]]:
    good, bad = [], []
    rank = {s: i for i, s in enumerate(ORDER)}
    for path in sorted(bench.glob("*.json"), key=lambda p: (rank.get(p.stem, len(ORDER)), p.stem)):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            bad.append(f"{path.name}: {str(err).splitlines()[0]}")
            continue
        if not isinstance(data, dict):
            bad.append(f"{path.name}: not a JSON object")
            continue
        good.append((path.stem, data, path))
    return good, bad


def render(bench: Path) -> tuple[str, list[str]]:
    good, bad = load(bench)
    out = [
        "<!-- Generated by scripts/bench_page.py from reports/bench/*.json: edit the JSON, not this page. -->",
        "",
        "# Benchmarks",
        "",
        "Every measured figure of the project is on this page, generated from the JSON files in",
        "`reports/bench/`, each with the date and commit it was measured at, the machine and its load average.",
        "Speed is measured side by side with a baseline or a floor in one run, never asserted in tests.",
        "",
        "To re-measure, on a quiet machine (nothing else running; `uptime` first and after):",
        "",
        "```",
        "uptime",
        "make bench bench-ray bench-lab bench-trl     # writes results/bench/*.json",
        "uptime",
        "cp results/bench/compare.json results/bench/compare_ray.json results/bench/lab.json \\",
        "   results/bench/trl.json reports/bench/",
        "python scripts/bench_page.py                 # regenerates this page",
        "```",
        "",
    ]
    if bad:
        out += ['!!! warning "Unreadable benchmark files"', ""]
        out += [f"    - `{b.split(':', 1)[0]}`: {fmt(b.split(':', 1)[1].strip())}" for b in bad]
        out += [""]
    if not good:
        out += ["No benchmark files in `reports/bench/` yet.", ""]
    for stem, data, path in good:
        out += section(stem, data, path)
    return "\n".join(out).rstrip() + "\n", bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, default=ROOT / "reports" / "bench")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--check", action="store_true", help="exit 1 if --out is out of date")
    args = p.parse_args(argv)
    if not args.bench.is_dir():
        print(f"bench_page: error: {args.bench} is not a folder", file=sys.stderr)
        return 2
    text, bad = render(args.bench)
    for b in bad:
        print(f"bench_page: unreadable benchmark file {b}", file=sys.stderr)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(
                f"bench_page: {args.out} is out of date: run scripts/bench_page.py", file=sys.stderr
            )
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
