"""Twin boundaries as a second boundary class: targets, augmentation, the model's third output, the loss,
training on mixed data, checkpoints (new and old), prediction, batch outputs and the ONNX path."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_grainlab.core.data.augment import build_augmentation
from napari_grainlab.core.data.datasets import SegSample
from napari_grainlab.core.data.patches import SegPatchDataset, SegTileDataset
from napari_grainlab.core.errors import ConfigError, DataError
from napari_grainlab.core.models import ModelSpec, build_model, load_checkpoint, load_into, save_checkpoint
from napari_grainlab.core.synthetic import SynthParams, generate
from napari_grainlab.core.training import Finished, TrainConfig, TrainWarning, fit
from napari_grainlab.core.training.losses import segmentation_loss

TINY = dict(backbone="resnet18", weights="none", strategy="scratch", decoder_channels=(16, 16, 8, 8, 8), device="cpu",
            augment=("geometric",), val_tile=64, patch_size=64, synthetic="none", batch_size=2)
SPEC = dict(task="segment", backbone="resnet18", decoder_channels=(16, 16, 8, 8, 8))
NO_SCALE = dict(tile=64, overlap=16, device="cpu", rescale=False)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(n)


def twinned_sample(i: int, size: int = 96, with_mask: bool = True) -> SegSample:
    p = SynthParams.preset("sem-twins", height=size, width=size)
    p.tessellation.grains = 12
    p.tessellation.twin_fraction = 0.9
    s = generate(p, seed=i)
    return SegSample(name=f"m{i}", image=s.image_float(), labels=s.labels, group=f"m{i}",
                     twins=s.twin_boundaries if with_mask else None)


# ---------------------------------------------------------------------------------- targets and patches
def test_augmentation_keeps_image_labels_and_twin_mask_aligned():
    yy, xx = np.mgrid[0:160, 0:160]
    labels = (yy // 20 * 8 + xx // 20 + 1).astype(np.uint32)
    odd = labels % 2 == 1
    image = odd.astype(np.float32)  # the image shows which grains are odd, so does the "twin" mask
    sample = SegSample(name="a", image=image, labels=labels, group="a", twins=odd)
    ds = SegPatchDataset([sample], 64, build_augmentation(("geometric",), patch_size=64), length=8, seed=3,
                         twin_class=True)
    turned = 0
    for i in range(8):
        r = np.random.default_rng([3, 0, i])
        r.random()  # the synthetic draw of __getitem__
        img, lab, outside, twins = ds._augment(r, *ds._real(r))
        inside = lab > 0
        # the twin mask moved exactly with the labels (nearest neighbour, one transform) ...
        np.testing.assert_array_equal(twins, (lab % 2 == 1) & inside)
        # ... and with the image (bilinear: equal away from the edges)
        assert np.mean((img[inside] > 0.5) == twins[inside]) > 0.95
        turned += not np.array_equal(np.unique(lab), np.unique(labels[:64, :64]))
    assert turned  # the transforms did move things
    item = ds[0]
    assert set(item) >= {"twin_boundary", "twin_valid"}
    assert item["twin_boundary"].shape == item["boundary"].shape == (1, 64, 64)
    np.testing.assert_array_equal(item["twin_valid"].numpy(), item["valid"].numpy())


def test_images_without_a_twin_mask_have_no_twin_valid_pixels():
    with_mask, without = twinned_sample(0), twinned_sample(1, with_mask=False)
    ds = SegTileDataset([with_mask, without], 64, twin_class=True)
    items = [ds[i] for i in range(len(ds))]
    n = len(ds) // 2
    assert all(it["twin_valid"].sum() > 0 for it in items[:n])
    assert all(it["twin_valid"].sum() == 0 and it["twin_boundary"].sum() == 0 for it in items[n:])
    assert sum(float(it["twin_boundary"].sum()) for it in items[:n]) > 50
    # the grain boundary target is the parents' boundaries: twins do not split their grain
    from napari_grainlab.core.data.targets import segmentation_targets

    b, _, _ = segmentation_targets(with_mask.labels)
    assert (b.astype(bool) & with_mask.twins).sum() < 0.2 * with_mask.twins.sum()
    assert "twin_boundary" not in SegTileDataset([with_mask], 64)[0]  # off by default


def test_synthetic_sources_give_twin_masks():
    from napari_grainlab.core.training.sources import PresetSource

    src = PresetSource("sem-twins", diameter=(20.0, 24.0))
    img, lab, tw = src.sample_twins(np.random.default_rng(1), 64)
    img2, lab2 = src.sample(np.random.default_rng(1), 64)
    np.testing.assert_array_equal(lab, lab2)
    assert tw.shape == lab.shape and tw.dtype == bool
    _, _, none = PresetSource("sem").sample_twins(np.random.default_rng(1), 64)
    assert not none.any()  # a look without twins: known to have none


# ------------------------------------------------------------------------------------ model and loss
def test_the_loss_uses_the_twin_channel_where_a_twin_mask_exists():
    torch.manual_seed(0)
    out = torch.randn(2, 3, 64, 64)  # the logits of a model with the twin class
    ds = SegTileDataset([twinned_sample(0, 64)], 64, twin_class=True)
    batch = {k: v[None].repeat(2, 1, 1, 1) for k, v in ds[0].items()}
    base = float(segmentation_loss(out, batch))
    changed = dict(batch, twin_boundary=1 - batch["twin_boundary"])
    assert float(segmentation_loss(out, changed)) != pytest.approx(base, rel=1e-4)
    ignored = dict(changed, twin_valid=torch.zeros_like(batch["twin_valid"]))
    no_twins = dict(batch, twin_valid=torch.zeros_like(batch["twin_valid"]))
    assert float(segmentation_loss(out, ignored)) == pytest.approx(float(segmentation_loss(out, no_twins)))
    # the grain channels' loss is the same as a 2-output model's
    assert float(segmentation_loss(out[:, :2], batch)) == pytest.approx(float(segmentation_loss(out, no_twins)))


def test_the_option_is_declared_once():
    from dataclasses import fields

    f = next(f for f in fields(TrainConfig) if f.name == "twin_class")
    assert f.default is False and f.metadata["group"] == "Model"
    with pytest.raises(ConfigError, match="twin_class"):
        TrainConfig(task="classify", twin_class=True)


def test_train_help_lists_the_flag(capsys):
    from napari_grainlab.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--twin-class" in capsys.readouterr().out


# ----------------------------------------------------------------------- training, checkpoints, prediction
@pytest.fixture(scope="module")
def twin_run(tmp_path_factory):
    """A 1-epoch run on a mixed dataset: two images with twin masks, one without."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("twin_run") / "run"
    train = [twinned_sample(0, 64), twinned_sample(1, 64, with_mask=False), twinned_sample(2, 64)]
    val = [twinned_sample(3, 64)]
    cfg = TrainConfig(twin_class=True, epochs=1, steps_per_epoch=2, out=str(out), **TINY)
    events = list(fit(cfg, train, val))
    return out, events


def test_a_mixed_dataset_trains_and_the_checkpoint_records_the_outputs(twin_run):
    out, events = twin_run
    assert isinstance(events[-1], Finished) and events[-1].best_path
    warnings = [e.message for e in events if isinstance(e, TrainWarning)]
    assert any("no twin-boundary mask" in w and "m1" in w for w in warnings)
    assert "twin_boundary_f1" in events[-1].best_metrics
    meta = json.loads((out / "best" / "model.json").read_text())
    assert meta["outputs"] == ["boundary", "distance", "twin_boundary"]
    assert meta["spec"]["twin_class"] is True and meta["training"]["twin_class"] is True


def test_save_load_predict_gives_a_twin_map(twin_run, tmp_path):
    from napari_grainlab.core.inference import predict_array, segment_image

    out, _ = twin_run
    model, meta = load_checkpoint(out)
    assert model.outputs == ("boundary", "distance", "twin_boundary") and model.out_channels == 3
    with torch.no_grad():
        assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3, 64, 64)
    image = twinned_sample(5, size=80).image
    res = predict_array(model, meta, image, **NO_SCALE)
    assert res.twin_boundary is not None and res.twin_boundary.shape == image.shape
    assert res.twin_boundary.dtype == np.float32 and 0 <= res.twin_boundary.min() <= res.twin_boundary.max() <= 1
    assert res.labels.shape == image.shape
    seg = segment_image(model, image, tile=64, overlap=16)
    assert seg.twin_boundary is not None and seg.twin_boundary.shape == image.shape
    # tiling treats the twin channel like the boundary channel: one tile or many, the same map
    whole = predict_array(model, meta, image, **{**NO_SCALE, "tile": 96, "overlap": 32})
    assert np.abs(whole.twin_boundary - res.twin_boundary).max() < 0.2


def test_batch_writes_the_twin_map_and_statistics(twin_run, tmp_path):
    import tifffile

    from napari_grainlab.core.batch import BatchOptions, predict_image_file, summary_columns

    out, _ = twin_run
    model, meta = load_checkpoint(out)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, (twinned_sample(6, size=80).image * 255).astype(np.uint8))
    opts = BatchOptions(tile=64, overlap=16, rescale=False, pixel_size=0.5)
    row, written = predict_image_file(model, meta, path, tmp_path, options=opts, device="cpu")
    assert "m_twin_boundary.tif" in written
    twin_map = tifffile.imread(tmp_path / "m_twin_boundary.tif")
    assert twin_map.shape == (80, 80) and twin_map.dtype == np.float32
    for col in ("twin_boundary_fraction", "twinned_grains", "G_twins_counted", "G_twins_excluded"):
        assert col in row and col in summary_columns(meta)


def _old_checkpoint(folder):
    """A checkpoint as versions before the twin class wrote it: no twin_class in its spec."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(**SPEC)).eval()
    save_checkpoint(folder, model)
    meta_path = folder / "model.json"
    meta = json.loads(meta_path.read_text())
    del meta["spec"]["twin_class"]
    meta_path.write_text(json.dumps(meta))
    return model


def test_an_old_two_output_checkpoint_still_predicts_without_a_twin_map(tmp_path):
    from napari_grainlab.core.batch import summary_columns
    from napari_grainlab.core.inference import predict_array

    _old_checkpoint(tmp_path / "old")
    model, meta = load_checkpoint(tmp_path / "old")
    assert model.out_channels == 2 and model.outputs == ("boundary", "distance") and "twin_class" not in meta["spec"]
    res = predict_array(model, meta, twinned_sample(5, size=64).image, **NO_SCALE)
    assert res.twin_boundary is None and res.boundary.shape == (64, 64)
    assert "G_twins_counted" not in summary_columns(meta)


def test_fine_tuning_an_old_model_with_the_twin_class_keeps_its_grain_outputs(tmp_path):
    old = _old_checkpoint(tmp_path / "old")
    new = build_model(ModelSpec(**SPEC, twin_class=True))
    load_into(new, tmp_path / "old")
    head_old, head_new = old.state_dict()["head.weight"], new.state_dict()["head.weight"]
    assert head_new.shape[0] == 3
    torch.testing.assert_close(head_new[:2], head_old)
    new.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(new(x)[:, :2], old(x))


def test_twin_class_needs_some_twin_ground_truth(tmp_path):
    train = [twinned_sample(0, with_mask=False), twinned_sample(1, with_mask=False)]
    cfg = TrainConfig(twin_class=True, epochs=1, steps_per_epoch=1, out=str(tmp_path / "r"), **TINY)
    with pytest.raises(DataError, match="twin-boundary mask"):
        list(fit(cfg, train))


def test_onnx_export_and_prediction_keep_the_twin_channel(twin_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from napari_grainlab.core.export import export_onnx
    from napari_grainlab.core.inference import predict_array
    from napari_grainlab.core.onnx_predict import OnnxModel, predict_onnx

    out, _ = twin_run
    export_onnx(out, tmp_path / "twin.onnx", exporter="torchscript")  # the faster exporter
    onnx_model = OnnxModel(tmp_path / "twin.onnx")
    assert onnx_model.meta["output"]["channels"] == ["boundary", "distance", "twin_boundary"]
    image = twinned_sample(7, size=64).image
    got = predict_onnx(onnx_model, image, tile=64, overlap=16, rescale=False)
    model, meta = load_checkpoint(out)
    ref = predict_array(model, meta, image, **NO_SCALE)
    assert got.twin_boundary is not None and got.twin_boundary.shape == image.shape
    assert np.abs(got.twin_boundary - ref.twin_boundary).max() < 1e-3
