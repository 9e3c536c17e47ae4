"""The GPU check (issue 14): every figure BENCHMARKS.md's GPU section asks for, in one run of minutes.

Run it through benchmarks/gpu.sh. Each measurement is a separate process (`python -m resizelab.cli ...`),
timed from outside with its start-up included, under a time limit of its own and one for the whole
check; a measurement that fails or runs out of time is recorded as such and the others go on.
gpu.json in the output folder is rewritten after every step, so a check cut short still leaves what
it measured. This script measures and recommends; it never changes a default itself.

    (a) bench     `resizelab bench` at 16-224 px: b/a, b/c, and b with each setting changed (ablation)
    (b) seed      the seed preset's three runs, wall time of the whole command, data already in the cache
    (c) packing   the resolution preset at 8-64 px (scaled down), one run at a time against --executor packed
    (d) graphs    a 2-epoch run at 32 px with --graphs off / capture / reduce-overhead, capture and compile inside
    (e) matmul    the single-window matmul on against off: (a)'s ablation (eager) and (d) run with it off
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What each device runs. cuda: CIFAR-10's size (50,000 + 10,000 synthetic images); cpu: a smoke test of
# the script itself, every size so small that the figures mean nothing.
PROFILES = {
    "cuda": {
        "data": "synthetic:50000",
        "run": {},  # run options added to every command
        "bench": {"sizes": "16,32,64,128,224", "steps": 50, "windows": 5, "workers": 2, "eval_images": 1000},
        "seed": {"size": None},  # None: the preset's own sizes (32, 64, 16)
        "seed_graphs": ["auto", "capture"],
        "graphs": {"size": 32, "epochs": 2, "limit_train": None,
                   "modes": ["off", "capture", "capture/1x1mm-off", "off/1x1mm-off", "reduce-overhead"]},
        # 6 sizes x 3 methods, one seed, one epoch over 10,000 images: the preset's 8-64 px grid (54 runs of two
        # full epochs, about 15 minutes one at a time) scaled to fit the check.
        "pack": {"sizes": [8, 16, 24, 32, 48, 64], "seeds": 1, "epochs": 1, "limit_train": 10000, "pack": 6,
                 "deterministic": True},
        "budget_s": 450,
    },
    "cpu": {
        "data": "synthetic:128:32",
        # fp32: a CPU's first bf16 steps spend seconds creating oneDNN kernels, which a smoke test need not wait for.
        "run": {"precision": "fp32"},
        "bench": {"sizes": "8", "steps": 1, "windows": 1, "workers": 0, "eval_images": 32},
        "seed": {"size": [8, 16]},
        "seed_graphs": ["auto"],
        "graphs": {"size": 8, "epochs": 1, "limit_train": None, "modes": ["off"]},
        "pack": {"sizes": [8], "seeds": 1, "epochs": 1, "limit_train": None, "pack": 2, "deterministic": True},
        "budget_s": 600,
    },
}
# Per-step limits in seconds (the whole check's budget cuts them shorter when it runs low).
LIMITS = {"prepare": 120, "bench": 200, "seed": 120, "graphs": 150, "pack": 150}
MIN_STEP_S = 15  # a step with less time left than this is skipped, not started
TARGETS = {"b_over_a_32px": 20.0, "b_over_c": 0.85, "seed_seconds": 60.0, "pack_speedup": 3.0}
# A setting is worth flipping when it is this much faster; below it, the measurement cannot tell.
CLEAR_WIN = 1.05


# --- running one measurement ----------------------------------------------------------------

def run_timed(cmd: list[str], log: Path, limit_s: float) -> dict:
    """Run cmd (its own process group) with a time limit; wall seconds, exit code, stdout lines."""
    t0, cpu0 = time.perf_counter(), _children_cpu()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=limit_s)
            status = "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            # The whole group: a packed sweep's workers are its children.
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            status = "timeout"
    seconds = time.perf_counter() - t0
    with open(log, "a") as f:
        f.write(f"\n# {' '.join(cmd)}\n# {status}, exit code {proc.returncode}, {seconds:.1f} s\n")
    result = {"status": status, "seconds": seconds, "cpu_seconds": _children_cpu() - cpu0, "exit_code": proc.returncode, "stdout": out}
    if status != "ok":
        result["error_tail"] = log.read_text()[-1500:]
    return result


def _children_cpu() -> float:
    """CPU seconds of the finished child processes: on a shared machine, what a step cost besides its wall time."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "resizelab.cli", *args]


def flags(options: dict) -> list[str]:
    """Run options as resizelab flags (lists as comma-separated grid axes)."""
    out = []
    for key, value in options.items():
        if value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value).lower() if isinstance(value, bool) else str(value)
        out += ["--" + key.replace("_", "-"), text]
    return out


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in (text or "").splitlines() if line.startswith("{")]


def run_summary(r: dict) -> dict:
    """What the check keeps of one run's JSON result."""
    prov = r.get("provenance", {})
    return {"config_hash": r["config_hash"], "size": r["config"]["size"], "interpolation": r["config"]["interpolation"],
            "seed": r["config"]["seed"], "train_seconds": r["train_seconds"], "prepare_seconds": r["prepare_seconds"],
            "eval_seconds": r["eval_seconds"], "time_to_first_step_seconds": r["time_to_first_step_seconds"],
            "epoch_seconds": [e["seconds"] for e in r["epoch_history"]], "train_loss": [e["train_loss"] for e in r["epoch_history"]],
            "test_accuracy": r["test_accuracy"], "images_per_second": r["images_per_second"],
            "precision": r["effective_precision"], "channels_last": prov.get("channels_last"),
            "single_window_matmul": prov.get("single_window_matmul"), "graphs": prov.get("graphs"), "pack": prov.get("pack", 1)}


# --- the steps ------------------------------------------------------------------------------

def given(options: dict) -> dict:
    """Options without the unset ones: a None would override a preset's axis with the default."""
    return {k: v for k, v in options.items() if v is not None}


def seed_overrides(profile: dict, device: str) -> dict:
    return given({"data": profile["data"], "weights": "none", "device": device, **profile["seed"], **profile["run"]})


def graphs_options(profile: dict, device: str, mode: str) -> dict:
    graphs, _, matmul = mode.partition("/")
    g = profile["graphs"]
    # The seed preset's 32 px run (PIL bilinear, batch 32, SGD 0.001/0.9), so the data is the seed step's cache.
    return given({"data": profile["data"], "weights": "none", "device": device, "size": g["size"], "epochs": g["epochs"],
                  "limit_train": g["limit_train"], "backend": "pil", "graphs": graphs,
                  "single_window_matmul": False if matmul == "1x1mm-off" else None, **profile["run"]})


def pack_overrides(profile: dict, device: str) -> dict:
    p = profile["pack"]
    return given({"data": profile["data"], "weights": "none", "device": device, "size": p["sizes"], "epochs": p["epochs"],
                  "limit_train": p["limit_train"], "deterministic": p["deterministic"], "seed": list(range(p["seeds"])),
                  **profile["run"]})


def warm(spec: dict) -> dict:
    """In a child process: load the data and fill the resize caches every timed step will read, so those
    steps time training rather than a first resize. Also says what machine this is."""
    import torch

    from resizelab.training import provenance
    from resizelab.core.config import RunConfig
    from resizelab.training.data import load_dataset
    from resizelab.training.engine import Run
    from resizelab.sweeps.presets import get_preset
    from resizelab.training.resize import ResizeCache
    from resizelab.training.runtime import resolve_device

    t0 = time.perf_counter()
    device = resolve_device(spec["device"])
    configs = list(get_preset("seed").plan(spec["seed"]).configs) + list(get_preset("resolution").plan(spec["pack"]).configs)
    configs.append(RunConfig.from_dict(spec["graphs"]))
    dataset = load_dataset(spec["data"])
    data_seconds = time.perf_counter() - t0
    cache = ResizeCache()
    done = set()
    for cfg in configs:
        r = cfg.resolved()
        key = (r.size, r.interpolation, r.antialias, r.backend, r.limit_train, r.limit_test, r.test_size, r.test_interpolation)
        if key in done:
            continue
        done.add(key)
        run = Run(cfg, dataset=dataset, cache=cache).setup()
        if run.data.filling:  # a tensor-backend split is resized by its first epoch: run through one
            for _ in run.data.epoch(run.config.batch_size):
                pass
        run.test_images(run.config.test_size)
    machine = provenance.collect(device)
    machine["torch_threads"] = torch.get_num_threads()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine.update(gpu_memory_gib=round(props.total_memory / 2**30, 1), compute_capability=f"{props.major}.{props.minor}",
                       bf16_supported=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version(),
                       multiprocessors=props.multi_processor_count)
    return {"machine": machine, "data_seconds": data_seconds, "resized_splits": len(done), "seconds": time.perf_counter() - t0}


class Check:
    def __init__(self, device: str, out: Path, scratch: Path, budget_s: float | None):
        self.device, self.out, self.scratch = device, out, scratch
        self.profile = PROFILES["cpu" if device == "cpu" else "cuda"]
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + (budget_s or self.profile["budget_s"])
        (out / "logs").mkdir(parents=True, exist_ok=True)
        self.doc: dict = {"check": {"device": device, "profile": self.profile, "budget_seconds": budget_s or self.profile["budget_s"],
                                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                          "steps": {}}

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.t0:5.0f} s] {message}", flush=True)

    def save(self) -> None:
        self.doc["check"]["seconds"] = time.perf_counter() - self.t0
        self.doc.update(summarize(self.doc))
        tmp = self.out / "gpu.json.tmp"
        tmp.write_text(json.dumps(self.doc, indent=2, default=str))
        os.replace(tmp, self.out / "gpu.json")

    def step(self, name: str, cmd: list[str], cap: str) -> dict | None:
        """Run one measurement if the budget allows; record its status either way."""
        left = self.deadline - time.perf_counter()
        limit = min(LIMITS[cap], left)
        if limit < MIN_STEP_S:
            self.doc["steps"][name] = {"status": "skipped", "reason": f"out of time ({left:.0f} s of the budget left)"}
            self.say(f"{name}: skipped, out of time")
            return None
        self.say(f"{name}: running (limit {limit:.0f} s)")
        result = run_timed(cmd, self.out / "logs" / f"{name.replace('/', '_')}.log", limit)
        self.doc["steps"][name] = {k: v for k, v in result.items() if k != "stdout"}
        self.say(f"{name}: {result['status']} in {result['seconds']:.1f} s")
        return result

    def run(self) -> dict:
        p, dev = self.profile, self.device
        self.say(f"GPU check on {dev}; output in {self.out}; caches in {os.environ.get('RESIZELAB_CACHE_DIR')}")
        spec = {"device": dev, "data": p["data"], "seed": seed_overrides(p, dev), "pack": pack_overrides(p, dev),
                "graphs": graphs_options(p, dev, "off")}
        prep = self.step("prepare", [sys.executable, __file__, "warm", json.dumps(spec)], "prepare")
        if prep is None or prep["status"] != "ok":
            self.save()
            return self.doc
        info = json_lines(prep["stdout"])[-1]
        self.doc["machine"] = info.pop("machine")
        self.doc["prepare"] = info
        self.save()

        # (a) the benchmark
        b = p["bench"]
        bench_json = self.out / "bench.json"
        r = self.step("bench", cli("bench", "--data", p["data"], "--weights", "none", "--device", dev, "--sizes", b["sizes"],
                                   "--steps", str(b["steps"]), "--windows", str(b["windows"]), "--workers", str(b["workers"]),
                                   "--eval-images", str(b["eval_images"]), "--json-out", str(bench_json), *flags(p["run"])), "bench")
        if r is not None and r["status"] == "ok":
            self.doc["bench"] = bench_figures(json.loads(bench_json.read_text()))
            (self.out / "bench.txt").write_text(r["stdout"])
        self.save()

        # (b) the seed preset; (d) graphs; (b) again under capture when capture ran; (c) packing; (d) the rest
        self.seed_variant(p["seed_graphs"][0])
        self.graphs_mode("off")
        if "capture" in p["graphs"]["modes"]:
            self.graphs_mode("capture")
        for variant in p["seed_graphs"][1:]:
            if self.doc.get("graphs", {}).get(variant, {}).get("status") == "ok":
                self.seed_variant(variant)
        self.packing()
        for mode in p["graphs"]["modes"]:
            if mode not in self.doc.get("graphs", {}):
                self.graphs_mode(mode)
        self.save()
        return self.doc

    def seed_variant(self, graphs: str) -> None:
        name = f"seed/{graphs}"
        opts = {**seed_overrides(self.profile, self.device), "graphs": graphs}
        r = self.step(name, cli("study", "--preset", "seed", *flags(opts), "--db", str(self.scratch / f"seed-{graphs}.db"),
                                "--no-report", "--json", "--quiet"), "seed")
        entry: dict = {"status": r["status"] if r else "skipped"}
        if r is not None:
            runs = [run_summary(x) for x in json_lines(r["stdout"])]
            entry.update(wall_seconds=r["seconds"], runs=runs, train_seconds=sum(x["train_seconds"] for x in runs))
        self.doc.setdefault("seed", {})[graphs] = entry
        self.save()

    def graphs_mode(self, mode: str) -> None:
        if mode.startswith("capture") and self.doc.get("graphs", {}).get("capture", {}).get("status") not in (None, "ok"):
            self.doc.setdefault("graphs", {})[mode] = {"status": "skipped", "reason": "capture failed"}
            return
        opts = graphs_options(self.profile, self.device, mode)
        r = self.step(f"graphs/{mode}", cli("run", *flags(opts), "--db", str(self.scratch / f"graphs-{mode.replace('/', '_')}.db"),
                                            "--json", "--quiet"), "graphs")
        entry: dict = {"status": r["status"] if r else "skipped"}
        if r is not None:
            entry["wall_seconds"] = r["seconds"]
            runs = json_lines(r["stdout"])
            if runs:
                entry.update(run_summary(runs[0]))
        self.doc.setdefault("graphs", {})[mode] = entry
        self.save()

    def packing(self) -> None:
        p = self.profile["pack"]
        common = ["study", "--preset", "resolution", *flags(pack_overrides(self.profile, self.device)), "--no-report", "--json", "--quiet"]
        entry: dict = {"settings": {**p, "data": self.profile["data"]}}
        results = {}
        for executor in ("local", "packed"):
            extra = ["--executor", executor] + (["--pack", str(p["pack"])] if executor == "packed" else [])
            r = self.step(f"pack/{executor}", cli(*common, *extra, "--db", str(self.scratch / f"pack-{executor}.db")), "pack")
            entry[executor] = {"status": r["status"] if r else "skipped"}
            if r is not None:
                runs = [run_summary(x) for x in json_lines(r["stdout"])]
                results[executor] = {x["config_hash"]: x for x in runs}
                entry[executor].update(wall_seconds=r["seconds"], runs=len(runs),
                                       train_seconds=sum(x["train_seconds"] for x in runs))
        if all(entry[e]["status"] == "ok" for e in ("local", "packed")):
            entry.update(compare_runs(results["local"], results["packed"]))
            entry["speedup"] = entry["local"]["wall_seconds"] / entry["packed"]["wall_seconds"]
        self.doc["packing"] = entry
        self.save()


# --- reading the measurements ---------------------------------------------------------------

def median_ratio(num: list[float], den: list[float]) -> float:
    """As bench.ratio: the median over rounds of each round's ratio."""
    return statistics.median(n / d for n, d in zip(num, den))


def bench_figures(bench: dict) -> dict:
    sizes = {}
    for size, row in bench["sizes"].items():
        b = row["resizelab"]
        entry = {"a_images_per_second": row["plain"]["train_images_per_second"], "b_images_per_second": b["train_images_per_second"],
                 "c_images_per_second": row["model-only"]["train_images_per_second"], "b_over_a": row["b_over_a"],
                 "b_over_c": row["b_over_c"], "b_runs_as": setting_text(b),
                 "first_step_seconds": {"a": row["plain"]["time_to_first_step_seconds"], "b": b["time_to_first_step_seconds"]},
                 "eval_images_per_second": {k: row[n]["eval_images_per_second"] for k, n in (("a", "plain"), ("b", "resizelab"), ("c", "model-only"))},
                 "ablation": {}}
        for name in ("other precision", "other layout", "other 1x1 convs", "all off"):
            if name in row:
                entry["ablation"][name] = {"runs_as": setting_text(row[name]),
                                           "speed_vs_b": median_ratio(row[name]["windows"], b["windows"])}
        sizes[size] = entry
    return {"device": bench["machine"]["device_name"], "torch": bench["machine"]["torch"], "sizes": sizes}


def setting_text(t: dict) -> str:
    return f"{t['precision']} {'CL' if t['channels_last'] else 'NCHW'}{' 1x1mm' if t['single_window_matmul'] else ''}"


def compare_runs(alone: dict, packed: dict) -> dict:
    """Each run packed against the same run alone: how many are bit for bit the same, the largest differences."""
    common = sorted(set(alone) & set(packed))
    identical = sum(1 for h in common if alone[h]["train_loss"] == packed[h]["train_loss"]
                    and alone[h]["test_accuracy"] == packed[h]["test_accuracy"])
    loss = max((abs(a - b) for h in common for a, b in zip(alone[h]["train_loss"], packed[h]["train_loss"])), default=None)
    acc = max((abs(alone[h]["test_accuracy"] - packed[h]["test_accuracy"]) for h in common), default=None)
    return {"compared": len(common), "identical": identical, "max_abs_diff_train_loss": loss,
            "max_abs_diff_test_accuracy_points": acc}


def _ok(entry: dict | None) -> bool:
    return bool(entry) and entry.get("status") == "ok"


def summarize(doc: dict) -> dict:
    """The targets, met or missed, and which default each measurement says to keep or change."""
    defaults = _constants()
    targets, advice = [], []
    bench = doc.get("bench", {}).get("sizes", {})
    if "32" in bench:
        v = bench["32"]["b_over_a"]
        targets.append({"target": "b/a >= 20 at 32 px", "measured": v, "met": v >= TARGETS["b_over_a_32px"]})
    for size, row in bench.items():
        v = row["b_over_c"]
        targets.append({"target": f"b/c >= 0.85 at {size} px", "measured": v, "met": v >= TARGETS["b_over_c"]})

    graphs = doc.get("graphs", {})
    # (d) graphs: the fastest 2-epoch run, compile or capture included; a mode that ran out of time lost.
    timed = {m: g["train_seconds"] for m, g in graphs.items() if "/" not in m and _ok(g) and "train_seconds" in g}
    if "off" in timed:
        best = min(timed, key=timed.get)
        pick = best if timed["off"] / timed[best] >= CLEAR_WIN else "off"
        why = "; ".join(f"{m}: {s:.1f} s" for m, s in timed.items())
        lost = [m for m, g in graphs.items() if "/" not in m and g.get("status") == "timeout"]
        advice.append(_advice("training.runtime.CUDA_GRAPHS", defaults["training.runtime.CUDA_GRAPHS"], pick,
                              f"train seconds of a {doc['check']['profile']['graphs']['epochs']}-epoch run at "
                              f"{doc['check']['profile']['graphs']['size']} px, capture/compile included: {why}"
                              + (f"; ran out of time: {', '.join(lost)}" if lost else "")))
    graphs_pick = next((a["recommended"] for a in advice if a["default"] == "training.runtime.CUDA_GRAPHS"), defaults["training.runtime.CUDA_GRAPHS"])

    # precision and layout: b against b with the other one, every size, in the same rounds; the other one
    # becomes the default only if it is clearly faster at most sizes.
    for name, const in (("other precision", "training.runtime.CUDA_PRECISION"), ("other layout", "training.runtime.CUDA_CHANNELS_LAST")):
        rows = [(size, r["ablation"][name]) for size, r in bench.items() if name in r["ablation"]]
        if not rows:
            continue
        runs_as = rows[0][1]["runs_as"].split()  # e.g. ["fp32", "CL", "1x1mm"]
        b_as = bench[rows[0][0]]["b_runs_as"].split()
        part = 0 if name == "other precision" else 1
        other, mine = (runs_as[part], b_as[part]) if part == 0 else (runs_as[part] == "CL", b_as[part] == "CL")
        wins = sum(1 for _, a in rows if a["speed_vs_b"] >= CLEAR_WIN)
        advice.append(_advice(const, defaults[const], other if wins > len(rows) / 2 else mine,
                              f"b with {name} ({' '.join(runs_as)}) against b: "
                              + ", ".join(f"{size} px x{a['speed_vs_b']:.2f}" for size, a in rows)))

    # (e) single-window matmul: where maps reach 1x1 (<= 32 px); under the graph mode that will run.
    # It stays on only where it helps: 2% faster with it than without.
    mm = defaults["training.runtime.CUDA_SINGLE_WINDOW_MATMUL"]
    on, off = graphs.get(graphs_pick), graphs.get(f"{graphs_pick}/1x1mm-off")
    if _ok(on) and _ok(off):
        helps = on["train_seconds"] * 1.02 <= off["train_seconds"]
        advice.append(_advice("training.runtime.CUDA_SINGLE_WINDOW_MATMUL", mm, helps,
                              f"graphs {graphs_pick}, train seconds: {on['train_seconds']:.1f} with it, {off['train_seconds']:.1f} without"))
    else:
        rows = [(s, r["ablation"]["other 1x1 convs"]) for s, r in bench.items() if "other 1x1 convs" in r["ablation"] and int(s) <= 32]
        if rows:
            # speed_vs_b is matmul-off over matmul-on; on is kept only if it is faster by 2% somewhere it applies.
            helps = any(a["speed_vs_b"] <= 1 / 1.02 for s, a in rows)
            advice.append(_advice("training.runtime.CUDA_SINGLE_WINDOW_MATMUL", mm, helps,
                                  "eager step with it off against on: " + ", ".join(f"{s} px x{a['speed_vs_b']:.2f}" for s, a in rows)))

    seed = doc.get("seed", {})
    variant = "capture" if graphs_pick == "capture" and _ok(seed.get("capture")) else "auto"
    if _ok(seed.get(variant)) or seed.get(variant, {}).get("status") == "timeout":
        v = seed[variant]["wall_seconds"]
        targets.append({"target": "seed preset < 60 s, wall time of the command, start-up included", "measured": v,
                        "met": _ok(seed[variant]) and v < TARGETS["seed_seconds"], "graphs": variant,
                        **({} if _ok(seed[variant]) else {"note": "stopped at the step's time limit: it takes longer"})})

    pack = doc.get("packing", {})
    if "speedup" in pack:
        v = pack["speedup"]
        same = pack["identical"] == pack["compared"]
        targets.append({"target": "packed sweep >= 3x one at a time (resolution preset at 8-64 px)", "measured": v,
                        "met": v >= TARGETS["pack_speedup"], "identical_runs": f"{pack['identical']} of {pack['compared']}"})
        pick = pack["settings"]["pack"] if v >= 1.5 and same else 1
        advice.append(_advice("sweeps.packed.CUDA_AUTO_PACK", defaults["sweeps.packed.CUDA_AUTO_PACK"], pick,
                              f"packed x{v:.2f} with --pack {pack['settings']['pack']}; {pack['identical']} of {pack['compared']} "
                              "runs identical to their run alone"))
    return {"targets": targets, "recommendation": advice}


def _advice(default: str, now, recommended, because: str) -> dict:
    return {"default": default, "now": now, "recommended": recommended, "change": now != recommended, "because": because}


def _constants() -> dict:
    """The CUDA defaults as the code has them now ("training.runtime.CUDA_GRAPHS": "off", ...), read from the
    source so that this process needs no torch."""
    import ast

    out = {}
    for module in ("training.runtime", "sweeps.packed"):
        path = Path(__file__).resolve().parent.parent / "src" / "resizelab" / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", "").startswith("CUDA_"):
                out[f"{module}.{node.targets[0].id}"] = ast.literal_eval(node.value)
    return out


def report(doc: dict) -> str:
    lines = ["", "GPU check: " + doc.get("machine", {}).get("device_name", "?") + f", torch {doc.get('machine', {}).get('torch', '?')}",
             f"  took {doc['check']['seconds']:.0f} s; steps: "
             + ", ".join(f"{n} {s['status']}" for n, s in doc["steps"].items())]
    for t in doc.get("targets", []):
        lines.append(f"  {'MET   ' if t['met'] else 'MISSED'} {t['target']}: {t['measured']:.2f}")
    lines.append("Recommendation (edit the constant, rerun this check, record the figures in BENCHMARKS.md):")
    for a in doc.get("recommendation", []):
        verb = f"CHANGE to {a['recommended']!r}" if a["change"] else "keep"
        lines.append(f"  {a['default']} = {a['now']!r}: {verb} ({a['because']})")
    if doc["check"]["device"] == "cpu":
        lines.append("  (cpu smoke test: the sizes are tiny and the figures mean nothing; only the layout of gpu.json does)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["warm"]:
        print(json.dumps(warm(json.loads(argv[1])), default=str))
        return 0
    parser = argparse.ArgumentParser(description="The GPU check; run it through benchmarks/gpu.sh")
    parser.add_argument("--device", default="cuda", help="cuda (the check), cuda:N, or cpu (a smoke test on tiny data)")
    parser.add_argument("--out", required=True, help="folder for gpu.json, bench.json and logs/")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the whole check (default 450 on cuda)")
    args = parser.parse_args(argv)
    if not (args.device in ("cuda", "cpu") or (args.device.startswith("cuda:") and args.device[5:].isdigit())):
        print(f"gpu_check: --device must be cuda, cuda:N or cpu; got {args.device!r}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="resizelab-gpu-check-"))
    # Caches and stores in scratch space, not in the output folder (resized splits run to gigabytes).
    os.environ.setdefault("RESIZELAB_CACHE_DIR", str(scratch / "cache"))
    if args.device == "cpu":
        # One thread per process for the smoke test: on a shared 2-core machine two OpenMP threads wait at every
        # barrier for a core (4 training steps at 8 px took 23 s with two threads under load, 0.3 s with one).
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        check = Check(args.device, out, scratch, args.budget)
        doc = check.run()
        check.save()
        print(report(doc))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
