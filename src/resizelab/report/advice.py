"""The Advice section: the recommendation in words, best-so-far against compute spent, and the Pareto front
(test accuracy against training time) with the grid's pipelines where they are known; one self-contained HTML
page (figures embedded) beside advice.json and the figures as PNG files."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..core.plotting import fitted, pyplot, save_figure
from ..core.stats import pareto_front
from ..search.advise import Advice
from .writer import ReportConfig, write_report


def best_so_far_figure(advice: Advice, path: Path) -> bool:
    r = advice.result
    if not r.best_so_far:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    grid = advice.grid_seconds
    xs = [100 * s / grid if grid else s for s, _ in r.best_so_far]
    # The leader's test accuracy, as the search would report it after each run (its mean over the seeds it had by then).
    accs = []
    for (job, _, spent), (_, label) in zip(r.jobs, r.best_so_far):
        cand = next((c for c in r.candidates if c.point.label() == label), None)
        truth = advice.truth.get(label)
        accs.append(truth["test"] if truth else (cand.test_interval()[0] if cand else float("nan")))
    ax.step(xs, accs, where="post", label="leading pipeline (mean test accuracy over the stored seeds)")
    if advice.truth:
        best = max(t["test"] for t in advice.truth.values())
        ax.axhline(best, color="grey", ls="--", lw=1, label=f"best of the grid's stored pipelines {best:.1f}%")
    ax.set_xlabel("compute spent (% of the full grid)" if grid else "compute spent (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(fitted(fig, "Best so far against compute spent", 10), fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(plt, fig, path)


def front_figure(advice: Advice, path: Path) -> bool:
    r = advice.result
    if not r.candidates:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    if advice.truth:
        pts = list(advice.truth.values())
        ax.scatter([t["seconds"] for t in pts], [t["test"] for t in pts], s=18, color="lightgrey", label="grid: every pipeline" if advice.replay else "stored runs of this grid")
        front = [pts[i] for i in pareto_front([(t["seconds"], t["test"]) for t in pts])]
        front.sort(key=lambda t: t["seconds"])
        ax.step([t["seconds"] for t in front], [t["test"] for t in front], where="post", color="grey", lw=1, label="grid's front")
    cands = [c.to_dict() for c in r.candidates]
    ax.scatter([c["train_seconds"] for c in cands], [c["test_accuracy"] for c in cands], s=22, color="tab:blue",
               label="trained by the search")
    # The front of what the search measured, on the axes drawn (its own test accuracies and times).
    front = sorted((cands[i] for i in pareto_front([(c["train_seconds"], c["test_accuracy"]) for c in cands])),
                   key=lambda c: c["train_seconds"])
    ax.step([c["train_seconds"] for c in front], [c["test_accuracy"] for c in front], where="post", color="tab:blue", lw=1.2,
            label="search's front")
    rec = r.recommended.to_dict()
    ax.scatter([rec["train_seconds"]], [rec["test_accuracy"]], s=90, marker="*", color="tab:red", zorder=3,
               label=f"recommended: {rec['label']}")
    ax.set_xlabel("training time per run (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(fitted(fig, "Accuracy against training time", 10), fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(plt, fig, path)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>resizelab advice</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.4}}
pre{{white-space:pre-wrap;background:#f6f6f6;padding:.8rem}} img{{max-width:100%}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}} td:first-child{{text-align:left}}</style></head>
<body><h1>Advice</h1>
<p>{words}</p>
<pre>{text}</pre>
<h2>Best so far against compute spent</h2>{best}
<h2>Pareto front: accuracy against training time</h2>{front}
<h2>Pipelines trained at full fidelity</h2>
<table><tr><th>pipeline</th><th>seeds</th><th>validation %</th><th>test %</th><th>95% CI</th><th>train s</th></tr>{rows}</table>
<p>Selected on the validation split held out of training; test accuracy reported. Raw numbers: advice.json.</p>
</body></html>
"""


def _img(path: Path, alt: str) -> str:
    if not path.is_file():
        return "<p>(nothing to draw)</p>"
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'


def words(advice: Advice) -> str:
    rec = advice.result.recommended
    if rec is None:
        return "No pipeline finished at full fidelity within the budget."
    p = rec.point
    mean, lo, hi = rec.test_interval()
    runner = advice.result.runner_up
    tail = (f" {runner.point.label()} is within seed noise of it." if runner else " No other pipeline is within seed noise of it.")
    return (f"Train at {p.size} px with {p.interpolation} (antialias {str(p.antialias).lower()}, {p.backend} backend) and serve "
            f"with {advice.serving_recipe()}: {mean:.1f}% test accuracy over {rec.n} seeds"
            + (f" (95% CI {lo:.1f} to {hi:.1f})." if rec.n >= 2 else ".") + tail)


def advice_figures(advice: Advice, out: Path) -> list[tuple[str, Path]]:
    """Draw the two figures into `out`: (heading, path) of each that had something to draw."""
    drawn = []
    for heading, name, draw in (("Best so far against compute spent", "advice_best_so_far.png", best_so_far_figure),
                                ("Pareto front: accuracy against training time", "advice_front.png", front_figure)):
        if draw(advice, out / name):
            drawn.append((heading, out / name))
    return drawn


def advice_section(advice: Advice, out: Path) -> dict:
    """What the study's report leads with: the recommendation in words and on one screen, and the two figures."""
    figures = [{"heading": heading, "filename": path.name, "data": base64.b64encode(path.read_bytes()).decode()}
               for heading, path in advice_figures(advice, out)]
    return {"words": words(advice), "text": advice.text(), "figures": figures}


def write_advice_report(advice: Advice, out: str | Path) -> Path:
    """advice.html and advice.json; for a study that trained (not a replay), also the study's report (report.html,
    report.md, runs.csv) with the Advice section leading it. Returns the page that leads: report.html, or
    advice.html for a replay."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "advice.json").write_text(json.dumps(advice.to_dict(), indent=1, default=str))
    section = advice_section(advice, out)
    rows = "".join(
        f"<tr><td>{html.escape(c['label'])}</td><td>{c['n']}</td><td>{c['val_accuracy']:.2f}</td><td>{c['test_accuracy']:.2f}</td>"
        f"<td>{c['test_ci95'][0]:.1f} to {c['test_ci95'][1]:.1f}</td><td>{c['train_seconds']:.1f}</td></tr>"
        for c in (c.to_dict() for c in advice.result.candidates))
    page = PAGE.format(words=html.escape(words(advice)), text=html.escape(advice.text()),
                       best=_img(out / "advice_best_so_far.png", "best so far against compute"),
                       front=_img(out / "advice_front.png", "accuracy against training time"), rows=rows.replace("nan to nan", "-"))
    (out / "advice.html").write_text(page)
    if advice.replay or not (advice.db and advice.sweep):
        return out / "advice.html"
    # Findings are left out: a study's cheap runs (fewer epochs) and seeds given only to the finalists are no grid.
    write_report(ReportConfig(db=advice.db, sweep=advice.sweep, out=str(out), findings=False), advice=section)
    return out / "report.html"
