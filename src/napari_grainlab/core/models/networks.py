"""Networks: a U-Net decoder on any timm encoder, and a timm classifier, for grey or colour micrographs.

``ModelSpec.in_chans`` is 1 (grey) or 3 (RGB).  Colour models use timm's pretrained RGB stem as it is and
normalise with the backbone's per-channel ImageNet mean and std.  Grey models: timm adapts the stem by
summing the pretrained RGB filters (``in_chans=1``), close to feeding the grey image replicated into three
channels at a third of the stem cost, and they normalise with the channel-averaged mean and std.  Both
networks take N x C x H x W float images in [0, 1] and normalise internally, so callers never deal with
normalisation.  :func:`adapt_in_chans` converts the weights of a model of one channel count to the other
(only the layers that see the input image change), so a grey model can be fine-tuned on colour data.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError

SEG_OUTPUTS = ("boundary", "distance")
#: the outputs of a segmentation model with a twin class (``ModelSpec.twin_class``)
TWIN_OUTPUTS = (*SEG_OUTPUTS, "twin_boundary")


def seg_outputs(twin_class: bool = False) -> tuple[str, ...]:
    """The output channels of a segmentation model, in order."""
    return TWIN_OUTPUTS if twin_class else SEG_OUTPUTS




@dataclass
class ModelSpec:
    """Everything needed to rebuild a network (stored in ``model.json``)."""

    task: str = "segment"  # segment | classify
    backbone: str = "efficientnet_lite0"
    num_classes: int = 2  # classification only
    classes: list[str] = field(default_factory=list)
    dropout: float = 0.1
    decoder_channels: tuple[int, ...] = (64, 48, 32, 24, 16)
    in_chans: int = 1
    twin_class: bool = False  # segmentation: a third output, the twin-boundary probability

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "decoder_channels" in known:
            known["decoder_channels"] = tuple(int(c) for c in known["decoder_channels"])
        return cls(**known)


@contextlib.contextmanager
def _quiet_timm():
    lg = logging.getLogger("timm")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(old)


def check_backbone(name: str) -> None:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:6]}*")[:6]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ModelError(f"unknown backbone '{name}'{hint}; any timm model name works, see timm.list_models()")


def _create(name: str, state: dict | None, **kwargs) -> nn.Module:
    import timm

    check_backbone(name)
    overlay = {"state_dict": state} if state is not None else None
    with _quiet_timm():
        try:
            return timm.create_model(name, pretrained=state is not None, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError) as exc:
            if state is None:
                raise ModelError(f"backbone '{name}' cannot be built this way: {exc}") from None
            raise ModelError(f"weights do not fit '{name}': {str(exc).splitlines()[0]}") from None


def input_stats(name: str, in_chans: int = 1) -> tuple[list[float], list[float]]:
    """The per-channel input mean and std of backbone ``name`` for a model of ``in_chans`` channels: its
    pretrained configuration's RGB values (ImageNet's by default) for 3, their channel averages for 1."""
    import timm

    if in_chans not in (1, 3):
        raise ModelError(f"a model takes 1 or 3 input channels, not {in_chans}")
    cfg = timm.get_pretrained_cfg(name)
    mean = tuple(getattr(cfg, "mean", None) or (0.485, 0.456, 0.406))
    std = tuple(getattr(cfg, "std", None) or (0.229, 0.224, 0.225))
    if len(mean) != 3 or len(std) != 3:  # a backbone pretrained on grey images
        mean, std = (sum(mean) / len(mean),) * 3, (sum(std) / len(std),) * 3
    if in_chans == 3:
        return [float(v) for v in mean], [float(v) for v in std]
    return [float(sum(mean) / 3)], [float(sum(std) / 3)]


def adapt_in_chans(state: dict[str, torch.Tensor], src_in_chans: int, model: _GrainNet) -> dict[str, torch.Tensor]:
    """Weights of a model taking ``src_in_chans`` channels, converted to fit ``model`` (1 <-> 3 channels).

    Only the tensors that see the input image change: the backbone's first convolution and, in the U-Net,
    the image channels of the full-resolution decoder block.  1 -> 3 replicates the filters (a third each,
    and for the stem scaled by each channel's std over the grey std), so the converted model gives exactly
    the grey model's output on a grey image replicated into three channels; 3 -> 1 sums them (the stem as
    ``std_grey * sum_c W_c / std_c``), exact on the image's contrast and close on its offset.
    """
    dst = int(model.spec.in_chans)
    src = int(src_in_chans)
    if src == dst:
        return dict(state)
    if {src, dst} != {1, 3}:
        raise ModelError(f"cannot convert the weights of a {src}-channel model to {dst} channels")
    own = model.state_dict()
    _, std_src = input_stats(model.spec.backbone, src)
    _, std_dst = input_stats(model.spec.backbone, dst)
    prefix = model.backbone_prefix() + "."
    out = dict(state)
    for key, w in state.items():
        ref = own.get(key)
        if ref is None or w.ndim != 4 or ref.ndim != 4 or tuple(ref.shape) == tuple(w.shape):
            continue
        if ref.shape[0] != w.shape[0] or ref.shape[2:] != w.shape[2:] or ref.shape[1] - w.shape[1] != dst - src:
            continue
        other = w.shape[1] - src  # input channels before the image (the decoder features of the full-res block)
        if other < 0:
            continue
        image_w = w[:, other:].float()
        if key.startswith(prefix) and other == 0:  # the stem: it sees the normalised image
            if dst == 3:
                gain = torch.tensor(std_dst, dtype=torch.float32).view(1, 3, 1, 1) / (3.0 * std_src[0])
                new = image_w.repeat(1, 3, 1, 1) * gain
            else:
                gain = std_dst[0] / torch.tensor(std_src, dtype=torch.float32).view(1, 3, 1, 1)
                new = (image_w * gain).sum(1, keepdim=True)
        else:  # the raw image
            new = image_w.repeat(1, 3, 1, 1) / 3.0 if dst == 3 else image_w.sum(1, keepdim=True)
        out[key] = torch.cat([w[:, :other], new.to(w.dtype)], 1)
    return out


def parameter_stages(module: nn.Module, feature_modules: list[str]) -> dict[str, int]:
    """Map every parameter (and BatchNorm module) name of ``module`` to a backbone stage index.

    A stage is the part of the network that produces one feature level (timm ``feature_info``). Layers
    outside any feature module (a stem before the first feature, or blocks between two taps) belong to the
    next feature level they feed; layers after the last tap belong to the last stage.
    """
    names = list(dict(module.named_modules()).keys())
    pos = {n: i for i, n in enumerate(names)}
    taps = []
    for fm in feature_modules:
        for cand in (fm, fm.replace(".", "_")):
            if cand in pos:
                taps.append((cand, pos[cand]))
                break
        else:
            raise ModelError(f"feature module {fm} not found in the backbone")
    last = len(taps) - 1

    def stage_of(owner: str) -> int:
        for i, (tap, _) in enumerate(taps):
            if owner == tap or owner.startswith(tap + "."):
                return i
        p = pos.get(owner, len(names))
        for i, (_, tpos) in enumerate(taps):
            if tpos > p:
                return i
        return last

    out = {}
    for pname, _ in module.named_parameters():
        out[pname] = stage_of(pname.rsplit(".", 1)[0] if "." in pname else "")
    for mname, mod in module.named_modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            out.setdefault(mname, stage_of(mname))
            out[mname] = stage_of(mname)
    return out


class _GrainNet(nn.Module):
    """Common parts: input normalisation, stage bookkeeping and BatchNorm freezing."""

    task = ""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        if spec.in_chans not in (1, 3) or isinstance(spec.in_chans, bool):
            raise ModelError(f"in_chans: a model takes 1 or 3 input channels, not {spec.in_chans!r}")
        self.spec = spec
        mean, std = input_stats(spec.backbone, spec.in_chans)
        c = len(mean)
        # per channel, used by normalize(); in_mean / in_std are their averages (the values of a grey model)
        self.register_buffer("in_mean_c", torch.tensor(mean).view(c, 1, 1), persistent=False)
        self.register_buffer("in_std_c", torch.tensor(std).view(c, 1, 1), persistent=False)
        self.register_buffer("in_mean", torch.tensor(sum(mean) / c), persistent=False)
        self.register_buffer("in_std", torch.tensor(sum(std) / c), persistent=False)
        self.frozen_bn: set[str] = set()

    def input_stats(self) -> tuple[list[float], list[float]]:
        """The per-channel mean and std that :meth:`normalize` uses (one value per input channel)."""
        return [float(v) for v in self.in_mean_c.flatten()], [float(v) for v in self.in_std_c.flatten()]

    # --- subclasses define: backbone_module(), feature_modules(), head_modules()
    def backbone_module(self) -> nn.Module:
        raise NotImplementedError

    def feature_modules(self) -> list[str]:
        raise NotImplementedError

    @property
    def num_stages(self) -> int:
        return len(self.feature_modules())

    def backbone_prefix(self) -> str:
        for name, mod in self.named_modules():
            if mod is self.backbone_module():
                return name
        raise ModelError("backbone not found")

    def stage_map(self) -> dict[str, int]:
        """Full parameter / BatchNorm names -> backbone stage; names absent here belong to the head."""
        prefix = self.backbone_prefix()
        head = {id(p) for m in self.head_in_backbone() for p in m.parameters()}
        bb = self.backbone_module()
        out = {}
        params = dict(bb.named_parameters())
        for name, stage in parameter_stages(bb, self.feature_modules()).items():
            if name in params and id(params[name]) in head:
                continue
            out[f"{prefix}.{name}"] = stage
        return out

    def head_in_backbone(self) -> list[nn.Module]:
        return []

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.spec.in_chans:
            raise ModelError(f"expected N x {self.spec.in_chans} x H x W input, got {tuple(x.shape)}")
        return (x - self.in_mean_c) / self.in_std_c

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.frozen_bn:
            for name, mod in self.named_modules():
                if name in self.frozen_bn:
                    mod.eval()
        return self


class _ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _DecoderBlock(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = _ConvBNAct(cin + cskip, cout)
        self.conv2 = _ConvBNAct(cout, cout)

    def forward(self, x, skip, size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class GrainUNet(_GrainNet):
    """U-Net decoder on a timm ``features_only`` encoder; outputs boundary and distance logits, and
    twin-boundary logits as a third channel when ``spec.twin_class`` (:attr:`outputs` names them).

    The deepest feature map is upsampled level by level, concatenated with the encoder's skip features,
    and finally with the input image itself at full resolution, so one-pixel boundaries stay sharp. Works
    for encoders whose first tap is at stride 2 (ResNet, EfficientNet) or 4 (ConvNeXt): missing levels
    are plain upsampling blocks.
    """

    task = "segment"

    def __init__(self, spec: ModelSpec, encoder_state: dict | None = None):
        super().__init__(spec)
        self.outputs = seg_outputs(bool(spec.twin_class))
        self.out_channels = len(self.outputs)
        self.encoder = _create(spec.backbone, encoder_state, features_only=True, in_chans=spec.in_chans)
        info = self.encoder.feature_info
        chans = list(info.channels())
        reds = list(info.reduction())
        self._taps = list(info.module_name())
        self.reductions = reds
        # decoder levels: one per reduction below the deepest, down to stride 1 (full resolution)
        levels = []
        r = reds[-1]
        while r > 1:
            r //= 2
            levels.append(r)
        dec = list(spec.decoder_channels)
        while len(dec) < len(levels):
            dec.append(dec[-1])
        blocks = []
        cin = chans[-1]
        for i, red in enumerate(levels):
            cskip = chans[reds.index(red)] if red in reds else (spec.in_chans if red == 1 else 0)
            blocks.append(_DecoderBlock(cin, cskip, dec[i]))
            cin = dec[i]
        self.decoder = nn.ModuleList(blocks)
        self._levels = levels
        self.dropout = nn.Dropout2d(spec.dropout) if spec.dropout > 0 else nn.Identity()
        self.head = nn.Conv2d(cin, self.out_channels, 1)
        self.stride = reds[-1]

    def backbone_module(self) -> nn.Module:
        return self.encoder

    def feature_modules(self) -> list[str]:
        return self._taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ModelError(f"input size {h}x{w} must be a multiple of {self.stride}")
        feats = self.encoder(self.normalize(x))
        by_red = dict(zip(self.reductions, feats))
        y = feats[-1]
        for block, red in zip(self.decoder, self._levels):
            skip = by_red.get(red)
            if red == 1:
                skip = x
            y = block(y, skip, (h // red, w // red))
        return self.head(self.dropout(y))


class GrainClassifier(_GrainNet):
    """A timm classifier with a fresh head (dropout before it) for micrographs or tiles."""

    task = "classify"

    def __init__(self, spec: ModelSpec, backbone_state: dict | None = None):
        super().__init__(spec)
        if spec.num_classes < 2:
            raise ModelError("classification needs at least 2 classes")
        self.net = _create(spec.backbone, backbone_state, num_classes=spec.num_classes, in_chans=spec.in_chans,
                           drop_rate=spec.dropout)
        fi = self.net.feature_info
        self._taps = [f["module"] for f in fi] if isinstance(fi, list) else list(fi.module_name())
        self.out_channels = spec.num_classes
        self.stride = max(f["reduction"] for f in fi) if isinstance(fi, list) else max(fi.reduction())

    def backbone_module(self) -> nn.Module:
        return self.net

    def feature_modules(self) -> list[str]:
        return self._taps

    def head_in_backbone(self) -> list[nn.Module]:
        return [self.net.get_classifier()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def build_model(spec: ModelSpec, backbone_state: dict | None = None) -> _GrainNet:
    """Build the network for ``spec``; ``backbone_state`` (timm keys of the full model) initialises the backbone."""
    if spec.task == "segment":
        return GrainUNet(spec, backbone_state)
    if spec.task == "classify":
        return GrainClassifier(spec, backbone_state)
    raise ModelError(f"unknown task '{spec.task}' (use segment or classify)")
