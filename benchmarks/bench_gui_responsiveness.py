"""Does training from the Train dock keep napari responsive, and does the GUI slow training down?

Opens a real napari viewer (on a headless machine run it under Xvfb), puts two synthetic
micrographs and their grain labels into it, and trains a small model from the *Train* dock
while a ``QTimer`` probe fires every ``--probe-ms`` ms and records how late each timeout
arrives: the event loop's latency, which is what a user feels as lag while panning, painting
or clicking.  Then it trains the same configuration headless (a plain ``for event in fit(...)``
loop on the same samples and seed) and compares the epoch times.  GUI and headless runs are
interleaved (``--rounds``) to spread machine noise over both.

Targets (from the issue): p95 latency < 50 ms; GUI epoch time <= 1.10 x headless.

    xvfb-run -a python benchmarks/bench_gui_responsiveness.py [--rounds 2] [--epochs 3] [--json out.json]

The first epoch of every run is left out of the epoch-time ratio (one-off allocations and
warm-up); the ratio compares medians.

``--stalls`` measures instead the longest event-loop stall (the largest gap between two probe
timeouts beyond their interval) of what a user does first in a fresh napari, each scenario in a fresh
process (imports happen once per process): opening the Train dock and the first *Start training*,
opening the Annotate dock and its first *From model*, opening the Predict dock and its first run,
opening the Synthesize dock and three 512 px previews (generated in a worker).
Target (from issue 14): about 50 ms on the GUI thread.  Each fresh viewer holds the micrograph only
(the Train scenario also its grain labels), as after a user opened a file.  A ``napari`` scenario
measures napari's own floor in the same conditions: docking an empty widget and adding a first uint32
Labels layer; opening a grainlab dock is also printed as a multiple of the empty dock.  The package's
bytecode is compiled first, as a pip install leaves it.

    xvfb-run -a python benchmarks/bench_gui_responsiveness.py --stalls [--repeat 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(size: int, n: int = 2):
    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    out = []
    for i in range(n):
        s = generate(SynthParams(height=size, width=size, tessellation=TessellationParams(grains=60)), seed=100 + i)
        out.append((f"micrograph{i}", s.image, s.labels))
    return out


def make_config(args, out: Path):
    from napari_grainlab.core.training import TrainConfig

    return TrainConfig(backbone=args.backbone, weights="none", strategy="scratch", epochs=args.epochs,
                       steps_per_epoch=args.steps, batch_size=args.batch, patch_size=args.patch,
                       synthetic="none", device=args.device, seed=0, out=str(out), val_fraction=0.5)


def percentile(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def gui_run(viewer, dock, cfg, probe_ms: int) -> dict:
    """Train from the dock; returns the event-loop latencies (ms) and the epoch times (s)."""
    from qtpy.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer

    from napari_grainlab.core.training import Epoch, Started, Step

    dock.set_config(cfg)
    lat_all: list[float] = []
    lat_train: list[float] = []
    epochs: list[float] = []
    state = {"training": False}
    clock = QElapsedTimer()
    last = {"t": None}

    def probe():
        now = clock.nsecsElapsed() / 1e6
        if last["t"] is not None:
            late = max(0.0, now - last["t"] - probe_ms)
            lat_all.append(late)
            if state["training"]:
                lat_train.append(late)
        last["t"] = now

    def on_event(ev):
        if isinstance(ev, Started):
            state["training"] = True
        elif isinstance(ev, Epoch):
            epochs.append(ev.seconds)
        elif isinstance(ev, Step):
            pass

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(probe_ms)
    timer.timeout.connect(probe)
    dock.event_received.connect(on_event)
    loop = QEventLoop()
    results = []

    def finished(result):
        results.append(result)
        state["training"] = False
        loop.quit()

    dock.training_finished.connect(finished)
    clock.start()
    timer.start()
    t0 = time.perf_counter()
    if dock.start() is None:
        raise RuntimeError("the dock did not start training")
    loop.exec()
    wall = time.perf_counter() - t0
    timer.stop()
    dock.event_received.disconnect(on_event)
    dock.training_finished.disconnect(finished)
    if not results or results[0].status != "completed":
        raise RuntimeError(f"training from the dock failed: {results[0].error if results else 'no result'}")
    return {"latency_all_ms": lat_all, "latency_training_ms": lat_train, "epoch_s": epochs, "wall_s": wall,
            "redraws": dock.plot.redraws}


def headless_run(samples, cfg) -> dict:
    from napari_grainlab.core.training import Epoch, fit

    t0 = time.perf_counter()
    epochs = [ev.seconds for ev in fit(cfg, samples) if isinstance(ev, Epoch)]
    return {"epoch_s": epochs, "wall_s": time.perf_counter() - t0}


# ================================================================================ first-use stalls
STALL_SCENARIOS = ("napari", "train", "annotate", "predict", "synthesize")
STALL_TARGET_MS = 50.0


def make_tiny_model(folder: Path) -> Path:
    """A small segmentation checkpoint (resnet18 encoder, narrow decoder, random weights)."""
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model, save_checkpoint

    torch.manual_seed(0)
    net = build_model(ModelSpec(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))).eval()
    save_checkpoint(folder, net)
    return folder


class StallProbe:
    """A ``QTimer`` every ``interval_ms``; :meth:`phase` runs a step and returns its longest stall (ms)."""

    def __init__(self, interval_ms: int = 5) -> None:
        from qtpy.QtCore import QElapsedTimer, Qt, QTimer

        self.interval = interval_ms
        self.clock = QElapsedTimer()
        self.clock.start()
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(self.clock.nsecsElapsed() / 1e6))
        self.timer.start()

    def now(self) -> float:
        return self.clock.nsecsElapsed() / 1e6

    def wait(self, done, timeout_s: float = 600.0, settle_ms: float = 300.0) -> None:
        """Run the event loop until ``done()`` is true, then ``settle_ms`` more."""
        from qtpy.QtCore import QEventLoop
        from qtpy.QtWidgets import QApplication

        app = QApplication.instance()
        end = time.perf_counter() + timeout_s
        while not done():
            if time.perf_counter() > end:
                raise RuntimeError("the step did not finish in time")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.001)
        t = time.perf_counter() + settle_ms / 1000
        while time.perf_counter() < t:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.001)

    def phase(self, action, done, timeout_s: float = 600.0) -> dict:
        """Schedule ``action`` from the event loop (as a click would run it), wait for ``done()``; the
        longest gap between ticks from just before the action to the end, and the wall time (s)."""
        from qtpy.QtCore import QTimer

        self.wait(lambda: True, settle_ms=100)
        state: dict = {}

        def run():
            state["t0"] = self.now()
            try:
                state["value"] = action()
            except BaseException as exc:  # noqa: BLE001 - reported by the parent
                state["error"] = exc
            state["ran"] = True

        t_start = self.now()
        QTimer.singleShot(0, run)
        self.wait(lambda: "error" in state or (state.get("ran") and done(state.get("value"))), timeout_s)
        if "error" in state:
            raise state["error"]
        t_end = self.now()
        ticks = [t_start] + [t for t in self.ticks if t_start < t <= t_end] + [t_end]
        gaps = [b - a - self.interval for a, b in zip(ticks, ticks[1:])]
        return {"max_stall_ms": max(0.0, max(gaps)), "seconds": (t_end - state["t0"]) / 1000}


def _dock_ready(scenario: str, dock) -> bool:
    """The dock's background loading is done: the engine imported (the docks that run models) and what
    napari's first Labels layer needs (the docks that make Labels layers), the opening image attached."""
    from napari_grainlab.gui import _engine, _napari_compat

    if scenario in ("train", "annotate", "predict") and not _engine.engine_loaded():
        return False
    if scenario in ("annotate", "predict", "synthesize") and not _napari_compat.labels_layer_ready():
        return False
    return not getattr(dock, "attach_pending", False)


def stall_child(scenario: str, model: Path, work: Path) -> dict:
    """One scenario in this (fresh) process: open the dock, then its first heavy action."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_grainlab.core.synthetic import SynthParams, TessellationParams, generate

    s = generate(SynthParams(height=256, width=256, tessellation=TessellationParams(grains=40)), seed=3)
    viewer = napari.Viewer(show=True, title=f"bench stalls {scenario}")
    viewer.add_image(s.image, name="micrograph0")  # what a user opened; Labels only where a scenario needs them
    if scenario == "train":
        viewer.add_labels(s.labels, name="micrograph0 grains")
    app = QApplication.instance()
    for _ in range(30):
        app.processEvents()
        time.sleep(0.01)
    probe = StallProbe()
    out = {"scenario": scenario}
    if scenario == "napari":  # napari's own floor: a dock with one label, then a uint32 Labels layer
        from qtpy.QtWidgets import QLabel

        out["open"] = probe.phase(lambda: viewer.window.add_dock_widget(QLabel("empty"), name="empty"),
                                  lambda _: True)
        out["first_action"] = probe.phase(
            lambda: viewer.add_labels(np.zeros(s.labels.shape, np.uint32), name="micrograph0 labels"),
            lambda _: True)
        # what every Labels layer costs napari, not only the session's first (its overlays' vispy visuals)
        out["second_action"] = probe.phase(
            lambda: viewer.add_labels(np.zeros(s.labels.shape, np.uint32), name="micrograph0 labels 2"),
            lambda _: True)
        out["status"] = "ok"
        viewer.close()
        return out
    dock_name = {"train": "Train", "annotate": "Annotate", "predict": "Predict", "synthesize": "Synthesize"}[scenario]
    opened: dict = {}

    def open_dock():
        _, opened["widget"] = viewer.window.add_plugin_dock_widget("napari-grainlab", dock_name)
        return opened["widget"]

    out["open"] = probe.phase(open_dock, lambda w: _dock_ready(scenario, w))
    dock = opened["widget"]
    results: list = []
    if scenario == "train":
        from napari_grainlab.core.training.config import TrainConfig  # what the dock imported already

        dock.ask_overwrite = lambda folder: True
        dock.set_config(TrainConfig(backbone="resnet18", weights="none", strategy="scratch", epochs=1,
                                    steps_per_epoch=2, batch_size=2, patch_size=64, synthetic="none",
                                    device="cpu", seed=0, out=str(work / "train"), val_fraction=0.5))
        dock.training_finished.connect(results.append)

        def first():
            if dock.start() is None:
                raise RuntimeError("the Train dock did not start")
        out["first_action"] = probe.phase(first, lambda _: bool(results))
    elif scenario == "synthesize":  # three 512 px previews of 300 grains, one after the other
        from napari_grainlab.core.synthetic import SynthParams, TessellationParams

        dock.set_params(SynthParams(height=512, width=512, tessellation=TessellationParams(grains=300)))
        seeds = iter((11, 12, 13))
        state = {"seed": next(seeds)}

        def shown(seed):
            return any(layer.metadata.get("grainlab", {}).get("seed") == seed for layer in viewer.layers)

        def first():
            dock.set_seed(state["seed"])
            return True

        def done(_):
            if not shown(state["seed"]):
                return False
            nxt = next(seeds, None)
            if nxt is None:
                results.append(True)
                return True
            state["seed"] = nxt
            dock.set_seed(nxt)
            return False
        out["first_action"] = probe.phase(first, done)
    elif scenario == "annotate":
        def first():
            task = dock.propose_from_model(str(model))
            if task is None:
                raise RuntimeError("From model did not start")
            task.finished.connect(results.append)
        out["first_action"] = probe.phase(first, lambda _: bool(results))
    else:
        dock.set_checkpoint(model)

        def first():
            task = dock.run()
            if task is None:
                raise RuntimeError("Predict did not start")
            task.finished.connect(results.append)
        out["first_action"] = probe.phase(first, lambda _: bool(results))
    status = getattr(results[0], "status", "ok") if results else "none"
    out["status"] = status
    viewer.close()
    return out


def run_stalls(args) -> int:
    import compileall
    import subprocess

    import napari_grainlab

    # the bytecode a pip install writes: without it (an editable install under PYTHONDONTWRITEBYTECODE)
    # every fresh process compiles the dock's modules on the GUI thread, ~0.1 s per dock
    compileall.compile_dir(str(Path(napari_grainlab.__file__).parent), quiet=1)
    tmp = Path(tempfile.mkdtemp(prefix="grainlab-bench-stalls-"))
    try:
        model = make_tiny_model(tmp / "model")
        rows: dict[str, list[dict]] = {s: [] for s in STALL_SCENARIOS}
        for r in range(args.repeat):
            for scenario in STALL_SCENARIOS:
                out = tmp / f"{scenario}{r}.json"
                cmd = [sys.executable, __file__, "--stall-child", scenario, "--model", str(model),
                       "--work", str(tmp / f"work-{scenario}{r}"), "--json", str(out)]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if proc.returncode != 0 or not out.is_file():
                    print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
                    raise RuntimeError(f"scenario {scenario} failed (exit {proc.returncode})")
                res = json.loads(out.read_text())
                rows[scenario].append(res)
                print(f"round {r + 1} {scenario:9s}: open dock stall {res['open']['max_stall_ms']:7.0f} ms "
                      f"({res['open']['seconds']:.1f} s until ready); first {scenario} action stall "
                      f"{res['first_action']['max_stall_ms']:7.0f} ms ({res['first_action']['seconds']:.1f} s, "
                      f"{res['status']})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    labels = {"napari": ("napari: empty dock", "napari: uint32 Labels", "napari: second Labels"),
              "train": ("open Train dock", "first Start training"),
              "annotate": ("open Annotate dock", "first From model"),
              "predict": ("open Predict dock", "first Predict run"),
              "synthesize": ("open Synthesize dock", "three 512 px previews")}
    report = {}
    print()
    print(f"longest event-loop stall (median over {args.repeat} fresh processes; target ~{STALL_TARGET_MS:.0f} ms):")
    for scenario in STALL_SCENARIOS:
        for key, label in zip(("open", "first_action", "second_action"), labels[scenario]):
            vals = [row[key]["max_stall_ms"] for row in rows[scenario]]
            report[label] = {"median_ms": statistics.median(vals), "max_ms": max(vals), "runs_ms": vals}
            print(f"  {label:22s} {statistics.median(vals):7.0f} ms  (max {max(vals):.0f} ms)")
    floor_dock = report["napari: empty dock"]["median_ms"]
    floor_labels = report["napari: uint32 Labels"]["median_ms"]
    print(f"napari's own floor in the same session: a dock {floor_dock:.0f} ms, a first Labels layer "
          f"{floor_labels:.0f} ms, any later Labels layer {report['napari: second Labels']['median_ms']:.0f} ms; "
          f"opening a grainlab dock, as a multiple of the empty dock:")
    for label in ("open Train dock", "open Annotate dock", "open Predict dock"):
        print(f"  {label:22s} x{report[label]['median_ms'] / max(floor_dock, 1.0):.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="GUI / headless pairs, interleaved")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="steps per epoch")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=128)
    parser.add_argument("--size", type=int, default=256, help="side of the two training micrographs (px)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--probe-ms", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--stalls", action="store_true",
                        help="measure the longest event-loop stall of first dock opening / first action instead")
    parser.add_argument("--repeat", type=int, default=2, help="fresh processes per --stalls scenario")
    parser.add_argument("--stall-child", choices=STALL_SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stall_child:
        args.work.mkdir(parents=True, exist_ok=True)
        res = stall_child(args.stall_child, args.model, args.work)
        args.json.write_text(json.dumps(res))
        return 0
    if args.stalls:
        return run_stalls(args)

    # import torch & friends before the OpenGL context exists (see gui/_engine.py)
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_grainlab.core.data import samples_from_arrays
    from napari_grainlab.gui.train import TrainWidget

    data = make_data(args.size)
    samples = samples_from_arrays([d[1] for d in data], [d[2] for d in data], names=[d[0] for d in data])
    viewer = napari.Viewer(show=True, title="bench_gui_responsiveness")
    viewer.window._qt_window.resize(1400, 900)
    for name, image, labels in data:
        viewer.add_image(image, name=name)
        viewer.add_labels(labels, name=f"{name} grains")
    dock = TrainWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Train", area="right")
    dock.ask_overwrite = lambda folder: True
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)

    tmp = Path(tempfile.mkdtemp(prefix="grainlab-bench-gui-"))
    gui, head = [], []
    try:
        for r in range(args.rounds):
            cfg = make_config(args, tmp / f"gui{r}")
            g = gui_run(viewer, dock, cfg, args.probe_ms)
            gui.append(g)
            print(f"round {r + 1}: GUI      epochs {[round(s, 2) for s in g['epoch_s']]} s, wall {g['wall_s']:.1f} s, "
                  f"p95 latency {percentile(g['latency_training_ms'], 95):.1f} ms", flush=True)
            h = headless_run(samples, make_config(args, tmp / f"head{r}"))
            head.append(h)
            print(f"round {r + 1}: headless epochs {[round(s, 2) for s in h['epoch_s']]} s, wall {h['wall_s']:.1f} s",
                  flush=True)
    finally:
        viewer.close()
        shutil.rmtree(tmp, ignore_errors=True)

    lat = [x for g in gui for x in g["latency_training_ms"]]
    lat_all = [x for g in gui for x in g["latency_all_ms"]]
    g_ep = [s for g in gui for s in g["epoch_s"][1:]] or [s for g in gui for s in g["epoch_s"]]
    h_ep = [s for h in head for s in h["epoch_s"][1:]] or [s for h in head for s in h["epoch_s"]]
    ratio = statistics.median(g_ep) / statistics.median(h_ep)
    ratio_mean = statistics.mean(g_ep) / statistics.mean(h_ep)
    report = {
        "config": {k: getattr(args, k) for k in ("rounds", "epochs", "steps", "batch", "patch", "size", "backbone",
                                                 "device", "probe_ms")},
        "probe_samples": len(lat),
        "latency_ms": {"p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
                       "max": max(lat) if lat else float("nan")},
        "latency_whole_run_ms": {"p50": percentile(lat_all, 50), "p95": percentile(lat_all, 95),
                                 "max": max(lat_all) if lat_all else float("nan")},
        "epoch_s": {"gui_median": statistics.median(g_ep), "headless_median": statistics.median(h_ep)},
        "gui_over_headless_epoch_time": {"median": ratio, "mean": ratio_mean},
        "plot_redraws": [g["redraws"] for g in gui],
    }
    print()
    print(f"event-loop latency while training ({len(lat)} probes every {args.probe_ms} ms): "
          f"p50 {report['latency_ms']['p50']:.1f} ms, p95 {report['latency_ms']['p95']:.1f} ms, "
          f"p99 {report['latency_ms']['p99']:.1f} ms, max {report['latency_ms']['max']:.1f} ms   (target p95 < 50 ms)")
    print(f"  whole run incl. model building: p95 {report['latency_whole_run_ms']['p95']:.1f} ms, "
          f"max {report['latency_whole_run_ms']['max']:.1f} ms")
    print(f"epoch time GUI / headless: median {ratio:.3f} (mean {ratio_mean:.3f}); "
          f"GUI {report['epoch_s']['gui_median']:.2f} s, headless {report['epoch_s']['headless_median']:.2f} s "
          f"(target <= 1.10)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = report["latency_ms"]["p95"] < 50 and ratio <= 1.10
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
