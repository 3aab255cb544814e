"""Networks: a U-Net decoder on any timm encoder, and a timm classifier, both for grayscale micrographs.

Grayscale input: timm adapts the stem by summing the pretrained RGB filters (``in_chans=1``), which gives
exactly the output of feeding the gray image replicated into three channels, at a third of the stem cost.
Both networks take N x 1 x H x W float images in [0, 1] and normalise internally with the backbone's
(channel-averaged) ImageNet mean and std, so callers never deal with normalisation.
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


def _gray_stats(name: str) -> tuple[float, float]:
    import timm

    cfg = timm.get_pretrained_cfg(name)
    mean = getattr(cfg, "mean", None) or (0.485, 0.456, 0.406)
    std = getattr(cfg, "std", None) or (0.229, 0.224, 0.225)
    return float(sum(mean) / len(mean)), float(sum(std) / len(std))


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
        self.spec = spec
        mean, std = _gray_stats(spec.backbone)
        self.register_buffer("in_mean", torch.tensor(mean), persistent=False)
        self.register_buffer("in_std", torch.tensor(std), persistent=False)
        self.frozen_bn: set[str] = set()

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
        return (x - self.in_mean) / self.in_std

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
    """U-Net decoder on a timm ``features_only`` encoder; outputs boundary and distance logits.

    The deepest feature map is upsampled level by level, concatenated with the encoder's skip features,
    and finally with the input image itself at full resolution, so one-pixel boundaries stay sharp. Works
    for encoders whose first tap is at stride 2 (ResNet, EfficientNet) or 4 (ConvNeXt): missing levels
    are plain upsampling blocks.
    """

    task = "segment"
    out_channels = len(SEG_OUTPUTS)

    def __init__(self, spec: ModelSpec, encoder_state: dict | None = None):
        super().__init__(spec)
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
