"""CPU prediction speed, end to end (network + watershed + grain table), per backend, as ratios in one run.

End to end, the model is the built-in one (U-Net on ``efficientnet_lite0``, 3 input channels, its real
weights) on synthetic SEM micrographs with ~32 px grains, so the watershed gets real grain maps; the
network-only part uses the same architecture with random weights. The backends are those of
:mod:`napari_grainlab.core.inference.backend`: ``torch-eager`` (the path before the backend choice),
``torch`` (channels-last copy) and ``onnxruntime`` (exported on the fly, cached; the export time is
printed once). Every time is the median of ``--repeat`` runs after a warm-up on a small image; the
load average is printed, because the machine may be shared.

A second part times the network alone on one 512 px tile for the tunings that were considered
(channels-last, TorchScript freeze + optimize_for_inference, bfloat16 autocast, onnxruntime with and
without spinning threads), and a third the post-processing at 2048 px on grain-like maps (the watershed
and the grain table separately).

    OMP_NUM_THREADS=2 python benchmarks/bench_cpu_predict.py [--sizes 1024 2048] [--repeat 3]
        [--threads 2] [--skip-network] [--skip-post]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

#: end-to-end targets on 2 CPU cores (issue: 1024 px in 2 s, 2048 px in 6 s)
TARGET_S = {1024: 2.0, 2048: 6.0}


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _median(fn, repeat: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _image(size: int, seed: int = 0):
    import numpy as np
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.random((size, size, 3), dtype=np.float32), (3, 3, 0))
    return ((img - img.min()) / (img.max() - img.min())).astype(np.float32)


def _model():
    import torch

    from napari_grainlab.core.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(task="segment", backbone="efficientnet_lite0", in_chans=3)).eval()
    with torch.no_grad():  # larger logits: grain-like maps with many markers, so the watershed has work
        head = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        head.weight.mul_(40.0)
    return model


def _micrograph(size: int, grain: float = 32.0, seed: int = 0):
    """A synthetic SEM micrograph (float32 in [0, 1]) with ~``grain`` px grains: real grain maps, so the
    watershed has its real work (random weights give maps with hardly any grain)."""
    import numpy as np

    from napari_grainlab.core.synthetic import SynthParams, generate

    params = SynthParams(height=size, width=size, style="sem")
    params.tessellation.grains = max(2, int(size * size / grain**2))
    return generate(params, seed).image.astype(np.float32) / 255.0


def end_to_end(sizes: list[int], repeat: int) -> dict:
    """The built-in model (its real weights) on synthetic SEM micrographs at its grain scale."""
    import numpy as np

    from napari_grainlab.core.batch import cached_model
    from napari_grainlab.core.inference import predict_array
    from napari_grainlab.core.inference.backend import clear_cache
    from napari_grainlab.core.measure import grain_table

    model, meta, _ = cached_model("generalist")
    model = model.eval()
    small = _micrograph(256, seed=1)
    results: dict = {}
    clear_cache()
    t0 = time.perf_counter()
    predict_array(model, meta, small, device="cpu", backend="onnxruntime")
    print(f"onnxruntime first use (export, check, session; cached afterwards): {time.perf_counter() - t0:.2f} s")
    for size in sizes:
        image = _micrograph(size)
        labels = {}
        for backend in ("torch-eager", "torch", "onnxruntime"):
            def run(image=image, backend=backend, labels=labels):
                r = predict_array(model, meta, image, device="cpu", backend=backend, diameter=32.0)
                grain_table(r.labels)
                labels[backend] = r
            predict_array(model, meta, small, device="cpu", backend=backend, diameter=32.0)  # warm-up
            results[(size, backend)] = _median(run, repeat, warmup=False)
        ref = labels["torch-eager"]
        line = "  ".join(f"{b} {results[(size, b)]:.2f} s" for b in ("torch-eager", "torch", "onnxruntime"))
        print(f"{size}² end to end: {line}   ratio torch-eager / onnxruntime "
              f"{results[(size, 'torch-eager')] / results[(size, 'onnxruntime')]:.2f}, torch-eager / torch "
              f"{results[(size, 'torch-eager')] / results[(size, 'torch')]:.2f}   (load {_load()})")
        for b in ("torch", "onnxruntime"):
            diff = float(np.abs(labels[b].boundary - ref.boundary).max())
            same = bool(np.array_equal(labels[b].labels, ref.labels))
            print(f"    {b}: boundary max abs diff {diff:.2g}, labels identical: {same} "
                  f"({int(ref.labels.max())} grains)")
        t_auto = _median(lambda image=image: grain_table(predict_array(model, meta, image, device="cpu").labels),
                         repeat, warmup=False)
        print(f"    default path with the diameter estimated (auto backend, scale check): {t_auto:.2f} s; "
              f"target {TARGET_S.get(size, float('nan')):.0f} s: x{t_auto / TARGET_S.get(size, float('nan')):.2f}")
        if size <= 1024:  # the tile geometry: one tile instead of 3 x 3 (not the default: other outputs)
            t = _median(lambda image=image, size=size: grain_table(predict_array(
                model, meta, image, device="cpu", backend="onnxruntime", tile=size, diameter=32.0).labels),
                repeat, warmup=False)
            r = predict_array(model, meta, image, device="cpu", backend="onnxruntime", tile=size, diameter=32.0)
            agree = float((r.labels == ref.labels).mean())
            print(f"    onnxruntime with tile {size} (one tile): {t:.2f} s; labels equal to the default at "
                  f"{agree * 100:.1f} % of the pixels (not the default)")
    return results


def network(repeat: int, threads: int) -> dict:
    import copy

    import numpy as np
    import onnxruntime as ort
    import torch

    model = _model()
    x = torch.rand(1, 3, 512, 512)
    out = {}
    with torch.inference_mode():
        ref = model(x)
        out["eager NCHW"] = (_median(lambda: model(x), repeat), 0.0)
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out["channels-last"] = (_median(lambda: cl(xc), repeat), float((cl(xc) - ref).abs().max()))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["channels-last bf16 autocast"] = (_median(lambda: cl(xc), repeat),
                                                  float((cl(xc).float() - ref).abs().max()))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model.eval(), x)))
        out["TorchScript freeze+optimize"] = (_median(lambda: frozen(x), repeat), float((frozen(x) - ref).abs().max()))
    from napari_grainlab.core.inference.backend import _export

    data = _export(model, 3, 32)
    xn = x.numpy()
    for spin in ("1", "0"):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        got = sess.run(None, {"image": xn})[0]
        out[f"onnxruntime (spinning {'on' if spin == '1' else 'off'})"] = (
            _median(lambda sess=sess: sess.run(None, {"image": xn}), repeat), float(np.abs(got - ref.numpy()).max()))
    base = out["eager NCHW"][0]
    print(f"network alone, one 512² tile, {torch.get_num_threads()} torch threads, {threads} onnxruntime "
          f"threads (load {_load()}):")
    for name, (t, diff) in out.items():
        print(f"    {name:32s} {t * 1000:6.0f} ms   ×{base / t:4.2f} vs eager   max abs diff {diff:.2g}")
    return out


def postprocess(size: int, repeat: int) -> dict:
    import numpy as np
    from scipy import ndimage as ndi

    from napari_grainlab.core.inference.postprocess import boundary_from_labels, watershed_grains
    from napari_grainlab.core.measure import grain_table

    rng = np.random.default_rng(0)
    n = size * size // 900  # grains of ~30 px
    seeds = np.zeros((size, size), dtype=np.int32)
    seeds[rng.integers(0, size, n), rng.integers(0, size, n)] = np.arange(1, n + 1)
    _, (iy, ix) = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    truth = seeds[iy, ix]
    edge = boundary_from_labels(truth, thick=True)
    boundary = ndi.gaussian_filter(edge.astype(np.float32), 1.0)
    dist = ndi.distance_transform_edt(~edge).astype(np.float32)
    distance = np.clip(dist / 8.0, 0, 1)
    boundary += rng.normal(0, 0.05, boundary.shape).astype(np.float32)
    t_ws = _median(lambda: watershed_grains(boundary, distance), repeat)
    labels = watershed_grains(boundary, distance)
    t_gt = _median(lambda: grain_table(labels), repeat)
    print(f"post-processing {size}² ({int(labels.max())} grains; load {_load()}): watershed_grains {t_ws:.2f} s, "
          f"grain_table {t_gt:.2f} s")
    return {"watershed_s": t_ws, "grain_table_s": t_gt}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch / onnxruntime threads (0: torch's default)")
    ap.add_argument("--skip-network", action="store_true")
    ap.add_argument("--skip-post", action="store_true")
    ap.add_argument("--skip-end-to-end", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    print(f"CPU threads {threads} (of {os.cpu_count()} logical CPUs), load average {_load()}")
    out: dict = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GRAINLAB_CACHE"] = cache  # a fresh session cache
        if not args.skip_network:
            out["network"] = network(args.repeat, threads)
        if not args.skip_post:
            out["post"] = postprocess(2048, args.repeat)
        if not args.skip_end_to_end:
            out["end_to_end"] = end_to_end(args.sizes, args.repeat)
    print(f"load average at the end {_load()}")
    return out


if __name__ == "__main__":
    main()
