"""Training configuration: one dataclass, serialised to JSON next to the weights."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from .._schema import check_options, option
from ..errors import ConfigError

STRATEGIES = ("scratch", "frozen", "finetune", "gradual")
TASKS = ("segment", "classify")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_PRESETS = ("geometric", "intensity", "noise", "sem", "colour")
CHANNELS = ("auto", "1", "3")




#: offered in the backbone box and in ``--help`` (any timm model name works)
BACKBONES = ("efficientnet_lite0", "resnet18", "resnet34", "resnet50", "convnext_tiny", "efficientnet_b0",
             "mobilenetv3_large_100", "regnety_008")
STRATEGY_HELP = {
    "scratch": "train every layer from random weights (needs much more data than the others)",
    "frozen": "keep the pretrained backbone fixed (weights and BatchNorm statistics); train only the decoder/head",
    "finetune": "also train the last backbone stages (finetune_stages) at a lower learning rate, plus the head",
    "gradual": "start frozen, unfreeze one more backbone stage (deepest first) every unfreeze_every epochs",
}
AUGMENT_HELP = {
    "geometric": "flips, 90° turns, free rotation and isotropic scaling",
    "intensity": "brightness, contrast and gamma",
    "noise": "Gaussian noise, Poisson shot noise at a random dose, and blur",
    "sem": "SEM artefacts: scan-line shifts, line noise, charging, scratches, dust, shading",
    "colour": "colour images only: hue rotation, saturation and white balance (as etching time, polariser "
              "and lamp change them); grey images are left as they are",
    "invert": "contrast inversion (dark boundaries become bright)",
}
CHANNELS_HELP = {
    "auto": "3 when a training image is colour or the starting weights are a colour grainlab model, else 1",
    "1": "grey: colour images are turned into their luminance",
    "3": "colour (RGB): grey images are replicated into the three channels",
}
SYNTHETIC_HELP = {
    "none": "no synthetic data",
    "randomized": "domain randomisation: every look and artefact of the generator varied widely (SEM and optical, "
                  "faint or missing boundaries, charging, noise, inverted polarity)",
    "sem": "preset: the generator's SEM look, grain size varied",
    "sem-elongated": "preset: SEM look with elongated grains",
    "sem-twins": "preset: SEM look with annealing twins",
    "optical": "preset: etched light-optical look (dark boundary lines)",
    "porous": "preset: SEM look with pores and second-phase particles",
}
DEVICE_HELP = {"auto": "CUDA if available, else Apple MPS, else the CPU", "cpu": "CPU", "cuda": "CUDA GPU",
               "mps": "Apple MPS"}

#: option groups, in the order forms and ``--help`` show them
GROUPS = ("Model", "Training", "Augmentation", "Synthetic data", "Validation", "Regularisation", "Advanced")


@dataclass
class TrainConfig:
    """Everything that defines a training run.

    Strategies: ``scratch`` trains every layer from random weights; ``frozen`` keeps the pretrained
    backbone (weights and BatchNorm statistics) fixed and trains only the decoder / head; ``finetune``
    also trains the last ``finetune_stages`` backbone stages at ``lr * backbone_lr_factor``; ``gradual``
    starts frozen and unfreezes one more backbone stage, deepest first, every ``unfreeze_every`` epochs.

    Every field declares its range, help and group once (``field.metadata``, see
    :mod:`napari_grainlab.core._schema`): :meth:`validate`, ``grainlab train``'s flags and the
    Train dock's option sections are derived from it.
    """

    # ------------------------------------------------------------------ model
    task: str = option("segment", choices=TASKS, group="Model", cli=False,
                       descriptions={"segment": "grain boundaries and instances (U-Net)",
                                     "classify": "one class per image or tile, from class folders"},
                       help="segment: grain boundaries and instances (U-Net); classify: one class per image or "
                            "tile, from class folders (grainlab train --task; default: detected from the data)")
    backbone: str = option("efficientnet_lite0", suggest=BACKBONES, group="Model", metavar="NAME",
                           help="any timm model name, e.g. resnet18, resnet50, convnext_tiny")
    weights: str = option("imagenet", suggest=("imagenet", "none"), group="Model", metavar="SRC", widget="hidden",
                          help="imagenet | none | PATH (.safetensors, .pth state dict, or a grainlab model folder)")
    strategy: str = option("finetune", choices=STRATEGIES, descriptions=STRATEGY_HELP, group="Model",
                           help="how much of the pretrained backbone trains")
    channels: str = option("auto", choices=CHANNELS, descriptions=CHANNELS_HELP, group="Model",
                           label="Input channels", metavar="C",
                           help="input channels of the model: auto (3 when any training image is colour or the "
                                "starting weights are a colour grainlab model, else 1), 1 (grey) or 3 (RGB)")
    twin_class: bool = option(False, group="Model", label="Twin boundaries as a class",
                              help="segmentation: a third output, the twin-boundary probability, trained on the "
                                   "twin masks (twins/NAME.tif; images without one do not train it) and on "
                                   "synthetic twins; grain boundaries then exclude twin boundaries")
    finetune_stages: int = option(2, min=1, max=16, group="Advanced", label="Fine-tuned stages", metavar="K",
                                  help="finetune: how many of the deepest backbone stages train")
    unfreeze_every: int = option(2, min=1, max=1000, group="Advanced", suffix=" epochs", metavar="E",
                                 help="gradual: epochs between unfreezing one more backbone stage")
    backbone_lr_factor: float = option(0.1, min=0.0, max=10.0, min_open=True, widget="log", prefix="× ",
                                       group="Advanced", label="Backbone LR", metavar="F",
                                       help="learning rate of the trained backbone stages relative to the "
                                            "decoder's (backbone LR = LR x F)")
    # --------------------------------------------------------------- training
    epochs: int = option(30, min=1, max=100_000, group="Training", metavar="N",
                         help="passes over the training patches; early stopping may end sooner")
    steps_per_epoch: int | None = option(None, min=1, max=1_000_000, group="Advanced", label="Steps / epoch",
                                         special="auto", metavar="S",
                                         help="training steps per epoch; auto (default): from the annotated "
                                              "area (10 to 500)")
    batch_size: int = option(8, min=1, max=4096, group="Training", metavar="B",
                             help="patches per step; halved automatically when the GPU runs out of memory")
    patch_size: int = option(256, min=32, max=4096, multiple_of=32, step=32, suffix=" px", group="Training",
                             metavar="PX", help="side of the square training patches (a multiple of 32)")
    grain_diameter: float | None = option(None, min=4.0, max=1000.0, special="auto", suffix=" px", group="Training",
                                          label="Grain diameter", metavar="PX",
                                          help="train at this grain scale: every training image is resized so that "
                                               "its grains (median equivalent-circle diameter of its labels) are "
                                               "about PX px across, and synthetic grains are drawn at that size; "
                                               "auto (default): the starting model's scale when fine-tuning a "
                                               "grainlab model that records one (e.g. generalist), else the "
                                               "data's own scale. The model records its training scale either way")
    lr: float = option(1e-3, min=0.0, max=1.0, min_open=True, widget="log", group="Training",
                       label="Learning rate", metavar="LR",
                       help="learning rate of the decoder / head (AdamW, warm-up then cosine decay)")
    weight_decay: float = option(1e-4, min=0.0, group="Regularisation", metavar="WD", help="AdamW weight decay")
    warmup_epochs: float = option(1.0, min=0.0, group="Advanced", widget="hidden", cli=False,
                                  help="epochs of linear learning-rate warm-up")
    min_lr_ratio: float = option(0.01, min=0.0, max=1.0, group="Advanced", widget="hidden", cli=False,
                                 help="final learning rate of the cosine decay, relative to lr")
    patience: int = option(8, min=1, max=10_000, suffix=" epochs", group="Advanced", metavar="P",
                           help="early stopping: stop after this many epochs without improvement of the "
                                "validation metric")
    min_delta: float = option(1e-3, min=0.0, group="Advanced", widget="hidden", cli=False,
                              help="smallest change of the monitored metric that counts as an improvement")
    monitor: str = option("auto", group="Advanced", widget="hidden", cli=False,
                          help="metric for early stopping and the best model: auto (boundary_f1 for "
                               "segmentation, macro_f1 for classification) or val_loss")
    # -------------------------------------------------------------- validation
    val_fraction: float = option(0.2, min=0.0, max=0.9, group="Validation", scale=100, suffix=" %",
                                 metavar="F", widget="hidden",
                                 help="fraction of the micrographs held out for validation (tiles of one "
                                      "micrograph stay together); with a single image, a spatial cut of it")
    val_tile: int | None = option(None, min=32, max=8192, multiple_of=32, group="Validation", widget="hidden",
                                  cli=False, help="validation tile size (default: 2 x patch size, at most 512)")
    # ------------------------------------------------------------ augmentation
    augment: tuple[str, ...] = option(AUGMENT_PRESETS, choices=AUGMENT_PRESETS + ("invert",),
                                      descriptions=AUGMENT_HELP, widget="checklist", group="Augmentation",
                                      metavar="LIST", help="augmentation presets, applied after the split")
    oriented_growth: bool = option(False, group="Augmentation",
                                   help="the microstructure has a growth direction (e.g. columnar or rolled): "
                                        "no rotations or flips that change it, only zoom and the 180° turn")
    # ---------------------------------------------------------- synthetic data
    synthetic: str = option("randomized", suggest=tuple(SYNTHETIC_HELP), descriptions=SYNTHETIC_HELP,
                            group="Synthetic data", metavar="SRC", widget="hidden",
                            help="synthetic source: randomized (domain randomisation), a preset (sem, optical, "
                                 "...), or none")
    synthetic_ratio: float = option(0.0, min=0.0, max=1.0, group="Synthetic data", metavar="R", widget="hidden",
                                    help="fraction of training patches that are synthetic (1 = synthetic only)")
    val_synthetic: int = option(8, min=0, max=10_000, group="Synthetic data", widget="hidden", cli=False,
                                help="synthetic validation images when there is no real data to validate on")
    # ---------------------------------------------------------- regularisation
    dropout: float = option(0.1, min=0.0, max=0.95, step=0.05, group="Regularisation", metavar="P",
                            help="dropout before the head")
    label_smoothing: float = option(0.1, min=0.0, max=0.5, step=0.05, group="Regularisation", metavar="E",
                                    help="label smoothing of the targets")
    mixup: float = option(0.0, min=0.0, max=100.0, step=0.1, group="Regularisation", metavar="ALPHA",
                          help="classification: mixup alpha (0 = off)")
    cutmix: float = option(0.0, min=0.0, max=100.0, step=0.1, group="Regularisation", metavar="ALPHA",
                           help="classification: cutmix alpha (0 = off)")
    boundary_width: int = option(2, min=1, max=32, group="Advanced", widget="hidden", cli=False,
                                 help="width in px of the boundary class of the segmentation targets")
    # ------------------------------------------------------------------ running
    device: str = option("auto", suggest=DEVICES, descriptions=DEVICE_HELP, group="Advanced", metavar="DEV",
                         help="where to train: auto | cpu | cuda | cuda:N | mps")
    amp: bool = option(True, group="Advanced", label="Mixed precision (AMP, CUDA only)",
                       help="bf16 where the GPU supports it, fp16 with a gradient scaler otherwise; ignored on "
                            "the CPU and MPS")
    workers: int = option(0, min=0, max=256, group="Advanced", widget="hidden", metavar="W",
                          help="data loader processes")
    seed: int = option(0, min=0, max=2**31 - 1, group="Advanced", metavar="S",
                       help="runs with the same seed, data and settings draw the same patches")
    out: str | None = option(None, widget="hidden", cli=False, help="output folder (best/ and last/ checkpoints)")
    resume: bool = option(False, widget="hidden", help="continue the run in MODEL from its last checkpoint")
    classes: tuple[str, ...] = option((), widget="hidden", cli=False, help="class names (classification)")
    decoder_channels: tuple[int, ...] = option((64, 48, 32, 24, 16), min=1, max=4096, widget="hidden", cli=False,
                                               help="channels of the U-Net decoder stages")
    log_every: int = option(1, min=1, max=1_000_000, widget="hidden", cli=False,
                            help="emit a Step event every N steps")

    def __post_init__(self):
        self.augment = tuple(self.augment)
        self.classes = tuple(self.classes)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.validate()

    def validate(self) -> None:
        """Check every option against its declared type and range (``field.metadata``), then the
        rules that involve more than one option; raises :class:`ConfigError` naming the option."""
        if isinstance(self.channels, int) and not isinstance(self.channels, bool):
            self.channels = str(self.channels)  # TrainConfig(channels=3) from a script
        check_options(self, ConfigError)
        if self.twin_class and self.task != "segment":
            raise ConfigError("twin_class: twin boundaries are a segmentation output; turn it off for classification")
        if self.device not in DEVICES and not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise ConfigError(f"device: '{self.device}' is not one of {', '.join(DEVICES)} (or cuda:N)")

    def in_chans(self, colour_data: bool = False, colour_weights: bool = False) -> int:
        """The model's input channel count: ``channels`` when set, else (auto) 3 when the training data has a
        colour image or the starting weights are a colour grainlab model, else 1."""
        if self.channels != "auto":
            return int(self.channels)
        return 3 if colour_data or colour_weights else 1

    @property
    def monitor_metric(self) -> str:
        if self.monitor != "auto":
            return self.monitor
        return "boundary_f1" if self.task == "segment" else "macro_f1"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        d = self.to_dict()
        d.update(changes)
        return TrainConfig.from_dict(d)


__all__ = ["AUGMENT_HELP", "AUGMENT_PRESETS", "BACKBONES", "CHANNELS", "CHANNELS_HELP", "ConfigError", "DEVICES",
           "DEVICE_HELP", "GROUPS", "STRATEGIES", "STRATEGY_HELP", "SYNTHETIC_HELP", "TASKS", "TrainConfig", "field"]
