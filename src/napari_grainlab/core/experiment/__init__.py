"""Experiments on the training recipe: learning curves, pre-training, transfer, adaptation, leakage.

>>> cfg = load_config("experiments/transfer.toml", quick=True)      # doctest: +SKIP
>>> for event in run_experiment(cfg, "runs/quick"):                 # doctest: +SKIP
...     print(event)
>>> write_report("runs/quick", "docs/report.md")                     # doctest: +SKIP
"""
from .config import (
                     ADAPT_MODES,
                     STUDY_KINDS,
                     ExperimentConfig,
                     ExperimentError,
                     Material,
                     Study,
                     load_config,
                     parse_config,
)
from .report import write_report
from .runner import (
                     ExperimentFinished,
                     ExperimentStarted,
                     RunDone,
                     RunStarted,
                     evaluate_model,
                     load_results,
                     plan,
                     run_experiment,
)

__all__ = ["ADAPT_MODES", "ExperimentConfig", "ExperimentError", "ExperimentFinished", "ExperimentStarted", "Material",
           "RunDone", "RunStarted", "STUDY_KINDS", "Study", "evaluate_model", "load_config", "load_results",
           "parse_config", "plan", "run_experiment", "write_report"]
