"""Reports from the store: the run and sweep tables printed on stdout, and the report folder
(report.md, a self-contained report.html, PNG figures, runs.csv and runs.parquet).

Everything here reads the store; nothing trains and nothing is downloaded. Statistics live in
stats.py, figures in figures.py, and the page layouts in templates/.
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..core.log import plural
from ..core.paths import check_out_dir
from ..core.results import TRAIN_SECONDS_INCLUDES
from ..store.database import DEFAULT_DB
from ..store.runs import Group, fixed, group_runs, load_groups, sort_key, value_text, varying

def format_run(result: dict, label: str) -> str:
    """A finished run as a few readable lines, from its JSON form (fresh or read back from the store)."""
    shape = result["input_shape"]
    lines = [
        f"config       {result['config_hash']}  {label}",
        f"input        {shape[0]}x{shape[1]} px, precision {result['effective_precision']}, weights {result['weights_tag']}",
        f"train        {result['train_seconds']:.2f} s ({result['images_per_second']:.0f} img/s) over {plural(result['epochs'], 'epoch')}; "
        f"first step after {result['time_to_first_step_seconds']:.2f} s",
    ]
    for e in result["epoch_history"]:
        lines.append(f"  epoch {e['epoch']}    loss {e['train_loss']:.4f}  train accuracy {e['train_accuracy']:.2f}%  {e['seconds']:.2f} s")
    for ev in result["evals"]:
        lines.append(f"test         {ev['accuracy']:.2f}% at {ev['size_px']} px ({ev['interpolation']}, {plural(ev['images'], 'image')})")
    lines.append(f"cost         {result['macs_per_image'] / 1e6:.1f} M MACs/image, {result['params'] / 1e6:.2f} M params, "
                 f"peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB ({result['peak_memory_kind']})")
    return "\n".join(lines)


# Digits of a config hash the tables show: what `serve --run` and `probe --run` take (any unique prefix of 4 or more).
SHORT_HASH = 8


def results_table(rows: list[dict]) -> str:
    """One line per run: its short hash (for `serve --run`, `probe --run`), what varies, train seconds, images/s,
    test accuracy, status."""
    configs = [json.loads(r["config_json"]) for r in rows]
    columns = varying(configs, always=("size", "interpolation"))
    header = ["run"] + columns + ["train s", "img/s", "test acc %", "status"]
    body = []
    for row, cfg in zip(rows, configs):
        cells = [row["config_hash"][:SHORT_HASH]] + [value_text(c, cfg.get(c)) for c in columns]
        if row["status"] == "done":
            cells += [f"{row['train_seconds']:.1f}", f"{row['images_per_second']:.0f}", f"{row['test_accuracy']:.2f}", "done"]
        else:
            cells += ["-", "-", "-", row["status"] + (f": {row['error']}" if row.get("error") else "")]
        body.append(cells)
    return _aligned(header, body)


def runs_table(rows: list[dict]) -> str:
    """`resizelab runs`: one line per stored run, its full hash first, what varies, accuracy, status, and whether its
    weights were saved (what `serve --run` and `probe --run` need)."""
    configs = [json.loads(r["config_json"]) for r in rows]
    columns = varying(configs, always=("size", "interpolation"))
    header = ["run"] + columns + ["test acc %", "status", "weights"]
    body = []
    for row, cfg in zip(rows, configs):
        result = json.loads(row["result_json"]) if row.get("result_json") else {}
        accuracy = f"{row['test_accuracy']:.2f}" if row["status"] == "done" and row.get("test_accuracy") is not None else "-"
        body.append([row["config_hash"]] + [value_text(c, cfg.get(c)) for c in columns]
                    + [accuracy, row["status"], "saved" if result.get("weights_file") else "-"])
    return _aligned(header, body)


def _aligned(header: list[str], body: list[list[str]]) -> str:
    """A plain-text table: columns padded to their widest cell, a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in body])


# --- the report folder -----------------------------------------------------------------------

@dataclass(frozen=True)
class ReportConfig:
    db: str = DEFAULT_DB
    sweep: str | None = None
    out: str = "reports/all"
    example_images: int = 4
    findings: bool = True  # a Findings section when the runs form a findings study (findings.py)
    split_on: tuple[str, ...] = ()  # execution settings (results.EXECUTION_KEYS) that make configurations of their own


def summary_table(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """One row per configuration: every option that varies among them, then n and the metrics."""
    columns = varying([g.config for g in groups], always=("size", "interpolation", "antialias"))
    header = columns + ["n", "test acc % (95% CI)", "train s", "img/s", "M MACs", "params M"]
    body = []
    for g in _ordered(groups):
        cells = [value_text(c, g.config.get(c)) for c in columns]
        cells += [str(len(g.runs)), str(g.summary("test_accuracy")), str(g.summary("train_seconds")),
                  f"{g.summary('images_per_second').mean:.0f}", f"{g.runs[0]['macs_per_image'] / 1e6:.1f}",
                  f"{g.runs[0]['params'] / 1e6:.2f}"]
        body.append(cells)
    return header, body


def _md(text) -> str:
    """Markdown-escape a cell or line of text (class and sweep names are user data)."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", str(text))


def _html_flags(text) -> str:
    """Escaped text with each --flag in <code>, which the page keeps on one line (a browser breaks after '--')."""
    from markupsafe import Markup, escape

    return Markup(re.sub(r"(--[a-z][a-z-]*)", r"<code>\1</code>", str(escape(text))))


def _column_kinds(body: list[list[str]]) -> list[str]:
    """'num' for a column whose every cell is a number (or mean ± half-width), else 'text': the HTML
    table aligns numbers right, so digits line up, and words left."""
    number = re.compile(r"[-+]?(\d[\d,]*\.?\d*|nan|inf)( ± ([\d.]+|nan|inf))?")
    columns = list(zip(*body)) if body else []
    return ["num" if all(number.fullmatch(cell) for cell in column) else "text" for column in columns]


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("resizelab.report", "templates"), autoescape=select_autoescape(["html.j2"]),
                      undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=False)
    env.filters["md"] = _md
    env.filters["flags"] = _html_flags
    return env


def adapted_threads(groups: list[Group]) -> list[tuple[str, str]]:
    """(run label, what changed) of each run whose thread policy changed its torch threads (a busy machine):
    its images/s were measured partly on fewer threads, which the report must not hide."""
    from ..training.threads import describe_changes

    out = []
    for g in _ordered(groups):
        for run in g.runs:
            said = describe_changes(json.loads(run.get("execution_json") or "{}").get("thread_changes"))
            if said:
                out.append((run.get("label") or run["config_hash"], said))
    return out


def write_report(config: ReportConfig, advice: dict | None = None) -> Path:
    """Write report.md, report.html (images embedded), the PNG figures and runs.csv (+ Parquet); with `advice`
    (report.advice.advice_section: an advise study's answer in words, on one screen, and its figures), an Advice
    section leads the report."""
    from .figures import FIGURES, figure_examples

    if not isinstance(config.out, (str, os.PathLike)) or not str(config.out).strip():
        raise ConfigError(f"the report folder must be a path; got {config.out!r} (give --report-dir a folder)")
    groups, failed = load_groups(config.db, config.sweep, config.split_on)
    out = Path(config.out)
    check_out_dir(out)
    # A reused folder must not keep figures from an earlier report that this one does not draw.
    for name in [f[0] for f in FIGURES] + ["examples.png", "findings.json", "findings.csv", "findings.txt", "learned.csv", "learned.txt"]:
        (out / name).unlink(missing_ok=True)
    header, body = summary_table(groups)
    figures = []
    if groups:
        for filename, heading, draw, caption in FIGURES:
            if draw(groups, out / filename):
                figures.append((filename, heading, caption))
        if figure_examples(groups, out / "examples.png", config.example_images):
            figures.append(("examples.png", "What the network saw", "The same test images after each method at each size, drawn pixel for pixel."))
    _write_csv(groups, out)
    findings = None
    if groups and config.findings:
        from ..analysis.findings import compute_findings

        findings = compute_findings(groups, config.db, out)
    from ..analysis.learnedverdicts import learned_verdicts, write_learned

    learned = learned_verdicts(groups)
    write_learned(learned, out)
    seeds = sorted({len(g.runs) for g in groups})
    configs = [g.config for g in groups]
    shared = fixed(configs) if len(configs) > 1 else (configs[0] if configs else {})
    context = {
        "title": f"resizelab report: {config.sweep or 'all runs'}",
        "db": config.db,
        "n_runs": sum(len(g.runs) for g in groups),
        "n_configs": len(groups),
        "seeds_text": ("n = " + "/".join(map(str, seeds)) + (" seed" if seeds == [1] else " seeds") + " per configuration") if seeds else "no seeds",
        "train_seconds_includes": TRAIN_SECONDS_INCLUDES,
        "fixed": [(k, value_text(k, v)) for k, v in shared.items()],
        "header": header,
        "body": body,
        "kinds": _column_kinds(body) or ["text"] * len(header),
        "figures": [{"filename": f, "heading": h, "caption": c, "data": base64.b64encode((out / f).read_bytes()).decode()}
                    for f, h, c in figures if f != SERVING_FIGURE],
        # The train x serve section leads with its heat map and the cells that matter, its full table below.
        "serving_figure": next(({"filename": f, "heading": h, "caption": c,
                                 "data": base64.b64encode((out / f).read_bytes()).decode()}
                                for f, h, c in figures if f == SERVING_FIGURE), None),
        "serving_lead": serving_lead(groups),
        "failed": [(r["label"], r["error"] or "") for r in failed],
        "adapted": adapted_threads(groups),
        "findings": findings_rows(findings) if findings else [],
        "findings_setting": findings.setting if findings else "",
        "serving": serving_rows(groups),
        "learned": [v.text() for v in learned],
        "advice": advice,
    }
    env = _environment()
    (out / "report.md").write_text(env.get_template("report.md.j2").render(context))
    (out / "report.html").write_text(env.get_template("report.html.j2").render(context))
    return out


def serving_rows(groups: list[Group]) -> list[dict[str, str]]:
    """The train x serve section: one row per off-diagonal cell (runs stored with --serve), its sentence and verdict."""
    from ..analysis.serve import VERDICT_TEXT, mismatch_claim, serving_matrix

    threshold = mismatch_claim().threshold
    return [{"train": c.train_recipe, "serve": c.serve_recipe, "size": str(c.size_px),
             "change": f"{c.change.value:+.2f}" + (f" [{c.change.low:+.2f}, {c.change.high:+.2f}]" if c.change.low == c.change.low else ""),
             "n": str(c.change.n), "verdict": VERDICT_TEXT[c.verdict].format(t=threshold), "text": c.text}
            for c in serving_matrix(groups)]


SERVING_FIGURE = "serving_matrix.png"
SERVING_LEAD = 5  # cells the serve section names in words before its full table


def serving_lead(groups: list[Group]) -> list[str]:
    """The few cells that matter, largest effect first, in words; when none does, the largest unresolved ones, and the
    summary of what n resolves."""
    from ..analysis.serve import serving_matrix

    cells = serving_matrix(groups)
    if not cells:
        return []
    matters = sorted((c for c in cells if c.verdict == "supported"), key=lambda c: -abs(c.change.value))
    lead = matters or sorted((c for c in cells if c.verdict == "not resolved at this n"), key=lambda c: -abs(c.change.value))
    return [serving_summary(groups)] + [c.text for c in lead[:SERVING_LEAD]]


SERVING_COLUMNS = (("train", "trained with"), ("serve", "served with"), ("size", "size px"),
                   ("change", "change (points) [95% CI]"), ("n", "n"), ("verdict", "verdict"))


def serving_table(rows: list[dict]) -> str:
    """The train x serve matrix of a sweep's store rows as a text table, the report section's rows (serving_rows)
    with its columns, one line per (train recipe, serve recipe, size); "" when no run was stored with --serve."""
    cells = serving_rows(group_runs(rows))
    if not cells:
        return ""
    from ..analysis.serve import mismatch_claim

    caption = ("train x serve: accuracy served with another recipe minus served with the one trained with (points, mean over "
               f"seeds [95% CI], n seeds); verdict at +-{mismatch_claim().threshold:g} point, as in the report")
    table = _aligned([title for _, title in SERVING_COLUMNS], [[c[key] for key, _ in SERVING_COLUMNS] for c in cells])
    return caption + "\n" + table + "\n" + serving_summary(group_runs(rows))


def serving_summary(groups: list[Group]) -> str:
    """In words, under the matrix: how many cells n resolves, and what would resolve the largest unresolved change."""
    from ..analysis.serve import mismatch_claim, serving_matrix, unresolved_text

    cells = serving_matrix(groups)
    open_cells = [c for c in cells if c.verdict == "not resolved at this n"]
    matters = [c for c in cells if c.verdict == "supported"]
    words = [f"{len(matters)} of {plural(len(cells), 'cell')} a mismatch that matters"]
    if open_cells:
        largest = max(open_cells, key=lambda c: abs(c.change.value))
        words.append(f"{len(open_cells)} not resolved at this n (the largest, {largest.serve_recipe} on a {largest.train_recipe} "
                     f"model at {largest.size_px} px, {unresolved_text(largest.change, mismatch_claim().threshold)})")
    return "; ".join(words)


def findings_rows(findings) -> list[dict[str, str]]:
    from ..analysis.findings import rows

    return rows(findings)


def _ordered(groups: list[Group]) -> list[Group]:
    """The configurations in the summary table's order: by each varying option, sizes as numbers (8, 16, 100)."""
    columns = varying([g.config for g in groups], always=("size", "interpolation", "antialias"))
    return sorted(groups, key=lambda g: tuple(sort_key(g.config.get(c)) for c in columns))


def _column_key(name: str) -> tuple:
    # test_accuracy_at_100px after test_accuracy_at_32px: the numbers in a column's name compare as numbers.
    return (name.startswith("config."), name.startswith("provenance."),
            [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)])


def _write_serving_csv(groups: list[Group], out: Path) -> None:
    """serving.csv: one row per run x serving recipe x size, for runs trained with --serve (none: no file)."""
    from ..store.read import StoredRuns, serving_rows

    runs = [{"config_hash": run["config_hash"], "result_json": json.dumps(run["result"])} for g in groups for run in g.runs]
    rows = serving_rows(StoredRuns(runs, {}, {}, {}))
    (out / "serving.csv").unlink(missing_ok=True)
    if not rows:
        return
    labels = {run["config_hash"]: run.get("label") for g in groups for run in g.runs}
    fieldnames = ["config_hash", "label", "train_recipe", "serve_recipe", "serve_size_px", "accuracy", "baseline", "change_points",
                  "library", "images", "per_class_accuracy"]
    with open(out / "serving.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "label": labels.get(r["config_hash"]), "per_class_accuracy": json.dumps(r["per_class_accuracy"])})


def _write_csv(groups: list[Group], out: Path) -> None:
    rows = []
    for g in _ordered(groups):
        for run in sorted(g.runs, key=lambda r: sort_key(r["config"].get("seed"))):
            # Sizes are written as `native` rather than an empty cell, so a pandas groupby keeps those rows.
            flat = {f"config.{k}": (value_text(k, v) if k in ("size", "test_size") else json.dumps(v) if isinstance(v, (list, dict)) else v)
                    for k, v in run["config"].items()}
            result = run["result"]
            flat.update({
                "config_hash": run["config_hash"], "test_accuracy": run["test_accuracy"], "train_seconds": run["train_seconds"],
                "images_per_second": run["images_per_second"], "macs_per_image": run["macs_per_image"], "params": run["params"],
                "peak_memory_bytes": run["peak_memory_bytes"], "effective_precision": result.get("effective_precision"),
                "weights_tag": result.get("weights_tag"), "time_to_first_step_seconds": result.get("time_to_first_step_seconds"),
            })
            for ev in result.get("evals", []):
                flat[f"test_accuracy_at_{ev['size_px']}px"] = ev["accuracy"]
            for ev in result.get("serving", []):  # --serve: one column per recipe and size (serving.csv has them as rows)
                flat[f"serve_accuracy_{ev['recipe']}_at_{ev['size_px']}px"] = ev["accuracy"]
            # Execution settings of the attempt stored (threads, layout, ...): what ran, beside config.* (what was asked).
            for k, v in json.loads(run.get("execution_json") or "{}").items():
                flat[f"execution.{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
            prov = json.loads(run["provenance_json"] or "{}")
            for k in ("torch", "torchvision", "device_name", "git_revision", "antialias_effective", "backend"):
                flat[f"provenance.{k}"] = prov.get(k)
            rows.append(flat)
    fieldnames = sorted({k for r in rows for k in r}, key=_column_key)
    with open(out / "runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    _write_serving_csv(groups, out)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        # An extra copy of runs.csv nobody asked for: said only with -v, not as a warning on every default install.
        logging.getLogger("resizelab").debug("runs.parquet not written: pyarrow is not installed (pip install 'resizelab[parquet]')")
        return
    if rows:
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in fieldnames} for r in rows]), out / "runs.parquet")
