"""Export a trained model to ONNX (any image size), checked against PyTorch.

:func:`export_onnx` loads a checkpoint (``model.safetensors`` + ``model.json``), exports the
network with dynamic batch, height and width, stores the napari-grainlab description (task,
classes, input size multiple, tile defaults, histogram reference, training summary, meaning of
the output channels, post-processing parameters) as JSON in the ONNX ``metadata_props`` under
``"napari_grainlab"``, and checks that onnxruntime reproduces the PyTorch outputs on random
images of two sizes other than the one used for the export. The file alone is enough for
:func:`napari_grainlab.core.onnx_predict.predict_onnx`, which needs no torch.

>>> report = export_onnx("models/sem")         # writes models/sem/model.onnx   # doctest: +SKIP
>>> print(report)                                                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write_bytes
from .errors import ExportError
from .inference._rescale import model_grain_diameter
from .inference._result import _default_tile
from .inference.tiling import model_channels, model_multiple
from .models.checkpoint import checkpoint_files, load_checkpoint
from .onnx_predict import METADATA_KEY, ONNX_FORMAT, ONNX_FORMAT_VERSION, _first_line

__all__ = ["DEFAULT_OPSET", "ExportError", "ExportReport", "export_onnx", "onnx_metadata"]

#: ONNX opset of the export (onnxruntime >= 1.14 runs it)
DEFAULT_OPSET = 18
#: exporters tried by ``exporter="auto"``, in order
EXPORTERS = ("dynamo", "torchscript")
#: training settings copied into the ONNX description
_TRAINING_KEYS = ("task", "backbone", "weights", "strategy", "epochs", "patch_size", "batch_size", "lr",
                  "augment", "synthetic", "synthetic_ratio", "dropout", "label_smoothing", "seed")




@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well onnxruntime matched PyTorch."""

    path: Path
    task: str
    exporter: str
    opset: int
    size_bytes: int
    checked: bool
    atol: float
    rtol: float
    #: per checked input shape (N, C, H, W): the largest absolute difference of the outputs
    max_abs_diff: dict[tuple[int, ...], float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values()) if self.max_abs_diff else float("nan")

    def to_dict(self) -> dict:
        return {"path": str(self.path), "task": self.task, "exporter": self.exporter, "opset": self.opset,
                "size_bytes": self.size_bytes, "checked": self.checked, "atol": self.atol, "rtol": self.rtol,
                "max_abs_diff": {"x".join(map(str, k)): v for k, v in self.max_abs_diff.items()},
                "seconds": round(self.seconds, 2)}

    def __str__(self) -> str:
        return "\n".join([f"wrote {self.path} ({self.size_bytes / 1e6:.2f} MB, {self.task} model, opset {self.opset}, "
                          f"{self.exporter} exporter)", *self.check_lines()])

    def check_lines(self) -> list[str]:
        lines = []
        if self.checked:
            for shape, diff in self.max_abs_diff.items():
                lines.append(f"check {'x'.join(map(str, shape))}: max abs diff onnxruntime vs PyTorch {diff:.3g}")
            lines.append(f"check passed (tolerance atol={self.atol:g}, rtol={self.rtol:g})")
        else:
            lines.append("not checked against PyTorch")
        return lines


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    return str(value)


def onnx_metadata(model, meta: dict) -> dict:
    """The napari-grainlab description stored in an exported ONNX file (JSON-serialisable)."""
    from .inference.options import DEFAULTS

    task = model.task
    classes = [str(c) for c in (meta.get("classes") or model.spec.classes or [])]
    if task == "segment":
        channels = list(getattr(model, "outputs", ("boundary", "distance")))
        meaning = {"boundary": "grain-boundary probability after the sigmoid",
                   "distance": "distance to the nearest boundary, normalised to 1 at grain centres, after the sigmoid",
                   "twin_boundary": "twin-boundary probability (interfaces between a twin and its parent grain) "
                                    "after the sigmoid"}
        output = {"name": "logits", "layout": "NCHW", "channels": channels, "activation": "sigmoid",
                  "meaning": {c: meaning[c] for c in channels}}
        tile = {"size": _default_tile(task, meta), "overlap": 64}
        post = DEFAULTS.watershed()
    else:
        names = classes if len(classes) == model.out_channels else [str(i) for i in range(model.out_channels)]
        output = {"name": "logits", "layout": "NK", "channels": names, "activation": "softmax",
                  "meaning": {"logits": "class scores of the whole input; softmax gives class probabilities"}}
        size = _default_tile(task, meta)
        tile = {"size": size, "stride": size // 2}
        post = None
    training = meta.get("training") or {}
    summary = {k: training[k] for k in _TRAINING_KEYS if k in training}
    from .. import __version__

    return _jsonable({
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "napari_grainlab_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "task": task,
        "backbone": model.spec.backbone,
        "spec": model.spec.to_dict(),
        "classes": classes,
        "grain_diameter": model_grain_diameter(meta, model),
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": int(model_channels(model, meta)),
                  "range": [0.0, 1.0], "size_multiple": int(model_multiple(model)),
                  "normalization": "per-image percentile stretch (0.1, 99.9) to [0, 1] before the model; "
                                   "(x - mean) / std inside the model",
                  "mean": float(model.in_mean), "std": float(model.in_std)},
        "output": output,
        "tile": tile,
        "postprocess": post,
        "histogram_reference": meta.get("histogram_reference") or None,
        "training": summary,
        "metrics": meta.get("metrics") or {},
        "source": {"created": meta.get("created"), "napari_grainlab_version": meta.get("napari_grainlab_version"),
                   "epoch": meta.get("epoch"), "weights_source": meta.get("weights_source")},
    })


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, warnings and logging."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_dynamo(model, sample: torch.Tensor, opset: int, multiple: int):
    dim = torch.export.Dim
    batch = dim("batch", min=1, max=4096)
    rows = dim("rows", min=1, max=4096)
    cols = dim("cols", min=1, max=4096)
    dynamic = ({0: batch, 2: multiple * rows, 3: multiple * cols},)
    program = torch.onnx.export(model, (sample,), dynamo=True, dynamic_shapes=dynamic, input_names=["image"],
                                output_names=["logits"], opset_version=opset, verbose=False, external_data=False)
    return program.model_proto


def _export_torchscript(model, sample: torch.Tensor, opset: int, multiple: int):
    import onnx

    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes["logits"] = {0: "batch", 2: "height", 3: "width"} if model.task == "segment" else {0: "batch"}
    buf = io.BytesIO()
    torch.onnx.export(model, (sample,), buf, dynamo=False, input_names=["image"], output_names=["logits"],
                      dynamic_axes=axes, opset_version=opset)
    return onnx.load_from_string(buf.getvalue())


def _session(data: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def check_shapes(multiple: int, channels: int = 1) -> list[tuple[int, int, int, int]]:
    """The two input shapes of the export check (neither is the export sample's)."""
    return [(1, channels, 4 * multiple, 2 * multiple), (2, channels, 3 * multiple, 5 * multiple)]


def _compare(model, session, shapes, atol: float, rtol: float, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    name = session.get_inputs()[0].name
    diffs = {}
    for shape in shapes:
        x = rng.random(shape, dtype=np.float32)
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).float().numpy()
        try:
            got = session.run(None, {name: x})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise ExportError(f"the exported model fails on input {shape}: {_first_line(exc)}") from None
        if got.shape != ref.shape:
            raise ExportError(f"the exported model returns shape {got.shape} for input {shape}, PyTorch "
                              f"{ref.shape}; it does not accept this image size")
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        diffs[tuple(shape)] = float(diff.max())
        if not np.isfinite(got).all():
            raise ExportError(f"the exported model gives NaN or infinite values on input {shape}")
        bad = diff > atol + rtol * np.abs(ref)
        if bad.any():
            raise ExportError(f"onnxruntime output differs from PyTorch on input {shape}: max abs diff "
                              f"{diffs[tuple(shape)]:.3g} exceeds atol={atol:g} + rtol={rtol:g} x |output| at "
                              f"{int(bad.sum())} values; the file was not written (check=False, --no-check on the command line, writes it anyway)")
    return diffs


def _with_description(proto, description: str, model, multiple: int) -> bytes:
    """The serialised model with the napari-grainlab description in its ``metadata_props``."""
    for prop in list(proto.metadata_props):
        if prop.key == METADATA_KEY:
            proto.metadata_props.remove(prop)
    prop = proto.metadata_props.add()
    prop.key = METADATA_KEY
    prop.value = description
    proto.doc_string = (f"napari-grainlab {model.task} model on {model.spec.backbone}; input N x "
                        f"{model_channels(model)} x H x W float32 "
                        f"in [0, 1], H and W multiples of {multiple}; see the '{METADATA_KEY}' metadata")
    try:
        return proto.SerializeToString()
    except ValueError as exc:
        raise ExportError(f"the exported model cannot be stored in one file ({_first_line(exc)})") from None


def export_onnx(
    model_path: str | Path,
    out_path: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    exporter: str = "auto",
) -> ExportReport:
    """Export the checkpoint at ``model_path`` to ONNX, check it and write it atomically.

    Parameters
    ----------
    model_path : a model folder (or run folder, ``model.json`` / ``model.safetensors``).
    out_path : the ``.onnx`` file (a folder gets ``model.onnx`` in it); default ``model.onnx`` next to
        the checkpoint's ``model.safetensors``.
    opset : ONNX opset version.
    check : run onnxruntime and PyTorch on random images of two sizes (not the export sample's) and
        raise :class:`ExportError` unless ``|onnx - torch| <= atol + rtol * |torch|`` everywhere; the
        file is written only when the check passes.
    exporter : ``"dynamo"`` (``torch.export``), ``"torchscript"`` (the tracing exporter) or ``"auto"``
        (dynamo, and the tracing exporter when dynamo fails or its export fails the check).

    Returns
    -------
    ExportReport
    """
    if exporter not in ("auto", *EXPORTERS):
        raise ExportError(f"exporter must be auto, dynamo or torchscript, got {exporter!r}")
    if not 7 <= int(opset) <= 25:
        raise ExportError(f"opset must be between 7 and 25, got {opset}")
    if not (np.isfinite(atol) and np.isfinite(rtol) and atol >= 0 and rtol >= 0):
        raise ExportError(f"atol and rtol must be finite and >= 0, got {atol}, {rtol}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ExportError(f"ONNX export needs the onnx, onnxscript and onnxruntime packages ({exc})") from None
    t0 = time.perf_counter()
    weights, _ = checkpoint_files(model_path)
    out = Path(out_path).expanduser() if out_path is not None else weights.with_name("model.onnx")
    if out.is_dir():
        out = out / "model.onnx"
    if not out.parent.is_dir():
        raise ExportError(f"{out.parent}: no such folder")
    model, meta = load_checkpoint(model_path, device="cpu")
    model.eval()
    multiple = model_multiple(model)
    # export sample: batch 2, height != width, so no size is specialised into the graph
    channels = model_channels(model, meta)
    sample = torch.rand(2, channels, 2 * multiple, 3 * multiple, generator=torch.Generator().manual_seed(0))
    order = EXPORTERS if exporter == "auto" else (exporter,)
    description = json.dumps(onnx_metadata(model, meta))
    data, used, diffs, errors = None, None, {}, []
    for name in order:
        try:
            with _quiet(), torch.inference_mode(False), torch.no_grad():
                fn = _export_dynamo if name == "dynamo" else _export_torchscript
                proto = fn(model, sample, int(opset), multiple)
        except Exception as exc:  # noqa: BLE001 - the exporters raise many unrelated exception types
            errors.append(f"{name}: {_first_line(exc)}")
            continue
        candidate = _with_description(proto, description, model, multiple)
        if check:
            try:
                try:
                    session = _session(candidate)
                except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
                    raise ExportError(f"onnxruntime cannot load the exported model: {_first_line(exc)}") from None
                diffs = _compare(model, session, check_shapes(multiple, channels), float(atol), float(rtol))
            except ExportError as exc:
                if name == order[-1]:
                    if errors:
                        raise ExportError("; ".join([*errors, f"{name}: {exc}"])) from None
                    raise
                errors.append(f"{name}: {exc}")
                continue
        data, used = candidate, name
        break
    if data is None:
        raise ExportError(f"ONNX export of this {model.task} model on {model.spec.backbone} failed ("
                          + "; ".join(errors) + ")")
    atomic_write_bytes(out, data)
    return ExportReport(path=out, task=model.task, exporter=used, opset=int(opset), size_bytes=len(data),
                        checked=bool(check), atol=float(atol), rtol=float(rtol), max_abs_diff=diffs,
                        seconds=time.perf_counter() - t0)


# ================================================================================== bioimage.io
@dataclass
class BioimageioReport:
    """What :func:`export_bioimageio` wrote and the bioimage.io validation result."""

    path: Path
    onnx: ExportReport
    status: str
    spec_version: str

    def __str__(self) -> str:
        return "\n".join([*self.onnx.check_lines(),
                          f"wrote bioimage.io model package {self.path} ({self.onnx.size_bytes / 1e6:.2f} MB ONNX "
                          f"weights; bioimageio.spec {self.spec_version} validation: {self.status})"])


def _sample_micrograph(size: int = 256, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A grain micrograph lookalike in [0, 1]: with one channel bright Voronoi boundaries and darker grains of
    varied shade (an SEM look), with three a colour (tint) etched look, ``(H, W, 3)``: each grain its own
    colour, thin dark boundaries."""
    from scipy import ndimage as ndi

    from .data.channels import normalize_image

    rng = np.random.default_rng(seed)
    seeds = rng.random((int(size * size / 28 ** 2), 2)) * size
    yy, xx = np.mgrid[:size, :size]
    owner = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=2)
    edge = np.zeros((size, size), bool)
    edge[:-1] |= owner[:-1] != owner[1:]
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    line = np.exp(-ndi.distance_transform_edt(~edge) / 1.5)
    if channels == 3:
        import colorsys

        n = int(owner.max()) + 1
        colours = np.array([colorsys.hsv_to_rgb(h, 0.6, 0.8) for h in rng.random(n)], np.float64)
        image = colours[owner] * (1.0 - 0.6 * line[..., None]) + rng.normal(0, 0.02, (*owner.shape, 3))
        return normalize_image(ndi.gaussian_filter(image, (0.7, 0.7, 0)))
    shade = rng.uniform(0.15, 0.45, owner.max() + 1)[owner]
    image = shade + 0.5 * line + rng.normal(0, 0.03, owner.shape)
    return normalize_image(ndi.gaussian_filter(image, 0.7))


def _channel_names(channels: int) -> list[str]:
    """The names of a model's input channels in its bioimage.io description."""
    return ["r", "g", "b"] if channels == 3 else ["gray"]


def _input_words(channels: int) -> str:
    return "an RGB colour micrograph" if channels == 3 else "a grayscale micrograph"


def _documentation(description: dict, report: ExportReport) -> str:
    task = description["task"]
    multiple = description["input"]["size_multiple"]
    channels = int(description["input"].get("channels") or 1)
    lines = [f"# napari-grainlab {task} model ({description['backbone']})", ""]
    if task == "segment":
        lines += ["Grain segmentation of materials micrographs (SEM, optical). The network maps "
                  f"{_input_words(channels)} to two maps (after the sigmoid of the package's post-processing): "
                  "the probability of a grain boundary and the distance to the nearest boundary, normalised to 1 "
                  "at grain centres. napari-grainlab turns them into grain instances with a marker-controlled watershed "
                  f"(parameters: {json.dumps(description.get('postprocess'))}).", ""]
    else:
        lines += [f"Micrograph classification into {', '.join(description['classes'])}; the output is the "
                  "softmax over the classes of the whole input tile.", ""]
    if channels == 3:
        text = ("Three channels, RGB (`r`, `g`, `b`); grey micrographs are given as three equal channels. The 0.1 "
                "and 99.9 percentiles of all three channels together are stretched to [0, 1] (clipped), so hues "
                "stay as they are")
    else:
        text = ("One grayscale channel (colour micrographs as their luminance). The 0.1 and 99.9 percentiles are "
                "stretched to [0, 1] (clipped)")
    grain = description.get("grain_diameter")
    scale = ([f"The model was trained on grains of about {grain:.0f} px mean diameter; napari-grainlab resizes "
              "an input so that its grains have that size (estimated, or given with --diameter).", ""]
             if isinstance(grain, (int, float)) else [])
    lines += ["## Input", "",
              f"{text}; height and width multiples of {multiple}. The model normalises internally.", "", *scale,
              "## Use with napari-grainlab", "",
              "The ONNX file carries the napari-grainlab description in its metadata:", "",
              "    grainlab predict-onnx weights.onnx IMAGE... --out DIR", "",
              "## Training", "", "```json", json.dumps(description.get("training") or {}, indent=2), "```", ""]
    lines += ["## Validation", "", "The ONNX weights were checked against the PyTorch model on random inputs:", "",
              *[f"- {line}" for line in report.check_lines()], ""]
    if description.get("metrics"):
        lines += ["Metrics on the validation data during training:", "", "```json",
                  json.dumps(description["metrics"], indent=2), "```", ""]
    return "\n".join(lines)


def _cover(image: np.ndarray, result: np.ndarray) -> np.ndarray:
    """Input (grey or colour) and output side by side (8-bit RGB, 1:2)."""
    h, w = image.shape[:2]
    right = result if result.ndim == 2 else np.full((h, w), float(result.max()), dtype=np.float32)
    left = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    both = np.concatenate([left, np.repeat(np.clip(right, 0, 1)[..., None], 3, axis=2)], axis=1)
    return (np.clip(both, 0, 1) * 255).round().astype(np.uint8)


def export_bioimageio(
    model_path: str | Path,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    name: str | None = None,
    authors: list[str] | None = None,
    license: str = "CC-BY-4.0",
    summary_text: str | None = None,
    cite: list[tuple[str, str | None]] | None = None,
    test_image: np.ndarray | None = None,
    exporter: str = "auto",
) -> BioimageioReport:
    """Write a bioimage.io model-zoo package: ONNX weights, test tensors, cover, documentation, ``rdf.yaml``.

    ``out`` is a folder (created; files of the same names inside are replaced) or a ``.zip`` file.
    The ONNX export is checked as in :func:`export_onnx`; the description is validated with
    ``bioimageio.spec`` (offline: format, file hashes) and :class:`ExportError` is raised unless it
    passes. The package's input pre-processing is the percentile stretch napari-grainlab applies
    (0.1 - 99.9 % to [0, 1], clipped), its output post-processing the sigmoid (segmentation) or
    softmax (classification).

    Parameters
    ----------
    name, summary_text : model name and one-paragraph description (defaults from the model).
    authors : author names (default ``["napari-grainlab user"]``).
    license : SPDX license identifier of the weights.
    cite : ``(text, doi or None)`` pairs (default: napari-grainlab itself).
    test_image : grey (H, W) or colour (H, W, 3) image for the test tensors (default: a synthetic
        micrograph, in colour for a 3-channel model); it is cropped to multiples of the model's input
        size multiple, percentile-stretched and given the model's channels (grey replicated for a
        3-channel model, colour as its luminance for a 1-channel one).
    exporter : see :func:`export_onnx`.

    The input tensor is ``(batch, channel, y, x)``: one channel ``gray``, or three ``r``, ``g``, ``b``
    for a colour model, whose percentile stretch is taken over the three channels together (as
    napari-grainlab normalises colour).
    """
    import os
    import shutil
    import tempfile

    try:
        import bioimageio.spec as bs
        from bioimageio.spec.model import v0_5 as bm
    except ImportError:
        raise ExportError("bioimage.io export needs the bioimageio.spec package "
                          "(pip install 'napari-grainlab[bioimageio]')") from None
    from ._io import atomic_write_png
    from .data.channels import normalize_image, to_channels, to_chw

    out = Path(out).expanduser()
    as_zip = out.suffix.lower() == ".zip"
    if out.exists() and not as_zip and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    parent = out.parent
    if not parent.is_dir():
        raise ExportError(f"{parent}: no such folder")
    with tempfile.TemporaryDirectory(prefix=".grainlab-bioimageio-", dir=parent) as tmp:
        stage = Path(tmp)
        report = export_onnx(model_path, stage / "weights.onnx", opset=opset, check=True, atol=atol, rtol=rtol,
                             exporter=exporter)
        session = _session((stage / "weights.onnx").read_bytes())
        info = json.loads(next(p.value for p in _onnx_props(stage / "weights.onnx") if p.key == METADATA_KEY))
        multiple = int(info["input"]["size_multiple"])
        channels = int(info["input"]["channels"])
        if test_image is None:
            image = _sample_micrograph(max(256, multiple * 2), channels=channels)
        else:
            image = np.asarray(test_image, "f4")
        colour = image.ndim == 3 and image.shape[-1] == 3
        if not (image.ndim == 2 or colour) or min(image.shape[:2]) < multiple:
            raise ExportError(f"test image must be grey (H, W) or colour (H, W, 3) and at least {multiple} px on "
                              "each side")
        h, w = (s // multiple * multiple for s in image.shape[:2])
        image = to_channels(normalize_image(np.ascontiguousarray(image[:h, :w], dtype=np.float32)), channels)
        x = to_chw(image, channels)[None]
        logits = session.run(None, {"image": x})[0]
        task = report.task
        if task == "segment":
            y = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        else:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            y = e / e.sum(axis=1, keepdims=True)
        y = y.astype(np.float32)
        np.save(stage / "test_input.npy", x)
        np.save(stage / "test_output.npy", y)
        atomic_write_png(stage / "cover.png", _cover(image, y[0, 0] if task == "segment" else y[0]))
        (stage / "README.md").write_text(_documentation(info, report), encoding="utf-8")

        yx = [bm.AxisId("y"), bm.AxisId("x")]
        # colour: one percentile range over the three channels together (the channel axis is reduced too)
        joint = [bm.AxisId("channel"), *yx] if channels == 3 else yx
        inputs = [bm.InputTensorDescr(
            id=bm.TensorId("image"),
            description="RGB colour micrograph" if channels == 3 else "grayscale micrograph",
            axes=[bm.BatchAxis(), bm.ChannelAxis(channel_names=[bm.Identifier(c) for c in _channel_names(channels)]),
                  *[bm.SpaceInputAxis(id=a, size=bm.ParameterizedSize(min=multiple, step=multiple)) for a in yx]],
            test_tensor=bm.FileDescr(source=stage / "test_input.npy"),
            data=bm.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[bm.ScaleRangeDescr(kwargs=bm.ScaleRangeKwargs(axes=joint, min_percentile=0.1,
                                                                           max_percentile=99.9)),
                           bm.ClipDescr(kwargs=bm.ClipKwargs(min=0.0, max=1.0))],
        )]
        out_names = [bm.Identifier(str(c)) for c in info["output"]["channels"]]
        if task == "segment":
            out_axes = [bm.BatchAxis(), bm.ChannelAxis(channel_names=out_names),
                        *[bm.SpaceOutputAxis(id=a, size=bm.SizeReference(tensor_id=bm.TensorId("image"), axis_id=a))
                          for a in yx]]
            post = [bm.SigmoidDescr()]
            out_text = "grain-boundary probability and normalised distance to the boundary"
            if "twin_boundary" in info["output"]["channels"]:
                out_text += ", and twin-boundary probability"
        else:
            out_axes = [bm.BatchAxis(), bm.ChannelAxis(channel_names=out_names)]
            post = [bm.SoftmaxDescr(kwargs=bm.SoftmaxKwargs(axis=bm.AxisId("channel")))]
            out_text = "class probabilities"
        outputs = [bm.OutputTensorDescr(id=bm.TensorId("probabilities"), description=out_text, axes=out_axes,
                                        test_tensor=bm.FileDescr(source=stage / "test_output.npy"),
                                        postprocessing=post)]
        from .. import __version__

        names = [a for a in (authors or []) if a.strip()] or ["napari-grainlab user"]
        citations = cite or [("napari-grainlab: grain segmentation for materials micrographs in napari", None)]
        try:
            descr = bm.ModelDescr(
                name=name or f"napari-grainlab {task} {info['backbone']}",
                description=summary_text or description_text(task, info),
                authors=[bm.Author(name=a) for a in names],
                cite=[bm.CiteEntry(text=t, doi=bm.Doi(d) if d else None,
                                   url=None if d else "https://github.com/napari-grainlab/napari-grainlab")
                      for t, d in citations],
                license=license,
                documentation=bm.FileDescr(source=stage / "README.md"),
                covers=[bm.FileDescr(source=stage / "cover.png")],
                tags=["napari-grainlab", "materials-science", "grains", "micrograph",
                      "segmentation" if task == "segment" else "classification", "onnx", "2d",
                      "rgb" if channels == 3 else "grayscale"],
                inputs=inputs,
                outputs=outputs,
                weights=bm.WeightsDescr(onnx=bm.OnnxWeightsDescr(source=stage / "weights.onnx",
                                                                  opset_version=report.opset)),
                version="0.1.0",
                config={"napari_grainlab": {"version": __version__, "onnx_metadata_key": METADATA_KEY,
                                            "channels": _channel_names(channels),
                                            "grain_diameter": info.get("grain_diameter")}},
            )
        except Exception as exc:  # noqa: BLE001 - pydantic validation errors
            raise ExportError(f"bioimage.io description rejected: {' '.join(str(exc).split())[:400]}") from None
        target = stage / "package" if not as_zip else stage / "package.zip"
        with _quiet():
            if as_zip:
                bs.save_bioimageio_package(descr, output_path=target)
            else:
                bs.save_bioimageio_package_as_folder(descr, output_path=target)
            loaded = bs.load_description(target, perform_io_checks=True)
        summary = loaded.validation_summary
        if isinstance(loaded, bs.InvalidDescr) or summary.status not in ("passed", "valid-format"):
            errors = "; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in summary.details for e in d.errors)
            raise ExportError(f"the bioimage.io description does not validate ({errors[:400] or summary.status})")
        if as_zip:
            os.replace(target, out)
        else:
            out.mkdir(exist_ok=True)
            for f in sorted(target.iterdir()):
                dest = out / f.name
                if dest.is_dir():
                    shutil.rmtree(dest)
                shutil.move(str(f), str(dest))
        onnx_final = ExportReport(**{**report.__dict__, "path": out if as_zip else out / "weights.onnx"})
        return BioimageioReport(path=out, onnx=onnx_final, status=str(summary.status),
                                spec_version=str(getattr(bs, "__version__", "?")))


def description_text(task: str, description: dict) -> str:
    colour = int((description.get("input") or {}).get("channels") or 1) == 3
    kind = "colour (RGB) " if colour else ""
    if task == "segment":
        return (f"Grain segmentation of {kind}materials micrographs: grain-boundary probability and "
                f"distance-to-boundary maps from a U-Net on {description['backbone']}, for napari-grainlab's "
                "watershed.")
    return (f"{'Colour (RGB) m' if colour else 'M'}icrograph classification ({', '.join(description['classes'])}) "
            f"with {description['backbone']}.")


def _onnx_props(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).metadata_props
