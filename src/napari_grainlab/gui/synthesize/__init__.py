"""The *Synthesize* dock (:class:`SynthesizeWidget`): the synthetic-micrograph generator's
parameters (:mod:`.parameters`), its live preview (:mod:`.preview`) and dataset writer
(:mod:`.dataset`)."""

from .dock import SynthesizeWidget
from .preview import PREVIEW_IMAGE, PREVIEW_LABELS, PREVIEW_MAX_PIXELS, PreviewResult, make_preview, preview_params

__all__ = ["PREVIEW_IMAGE", "PREVIEW_LABELS", "PREVIEW_MAX_PIXELS", "PreviewResult", "SynthesizeWidget",
           "make_preview", "preview_params"]
