"""Predictors that score architectures from their generated weights (the weight encoder and baselines).

>>> from wsnas.predictors import WeightPredictor, load, save
>>> pred = WeightPredictor.from_zoo("zoo.jsonl", ensemble=5)
>>> save(pred, "nb201.safetensors"); pred = load("nb201.safetensors")

Importing this package is cheap: names load their module (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module, imported on first access (these modules import torch at import time)
_LAZY: dict[str, str] = {
    **dict.fromkeys(["EncoderConfig", "WeightEncoder", "AGGREGATORS"], "wsnas.predictors._encoder"),
    **dict.fromkeys(["ZERO_COST_PROXIES", "zero_cost", "zero_cost_all"], "wsnas.predictors._zero_cost"),
    **dict.fromkeys(["WeightPredictor", "Prediction", "load"], "wsnas.predictors._predictor"),
    **dict.fromkeys(["default_predictor", "MULTI_SPACE"], "wsnas.predictors._default"),
    **dict.fromkeys(
        ["pairwise_ranking_loss", "spearman", "zoo_training_set", "zoo_spaces", "ZOO_TARGETS"],
        "wsnas.predictors._training",
    ),
    **dict.fromkeys(["save", "SHIPPED_DIR", "download_predictor", "shipped_names"], "wsnas.predictors._persist"),
    **dict.fromkeys(
        ["ZeroCostBaseline", "ArchGNNBaseline", "WeightStatsBaseline", "weight_stat_features"],
        "wsnas.predictors._baselines",
    ),  # fmt: skip
    **dict.fromkeys(["ZeroCostScores", "ZeroCostGBMBaseline", "arch_tokens"], "wsnas.predictors._zc_gbm"),
    **dict.fromkeys(["gaussianise", "costless_targets"], "wsnas.predictors._pretrain"),
    **dict.fromkeys(["log_predictor", "PyfuncPredictor"], "wsnas.predictors._mlflow"),
    **dict.fromkeys(["ShuffledCandidateGraphs", "ShuffledWeightPredictor"], "wsnas.predictors._shuffled"),
    **dict.fromkeys(
        ["evaluate", "EvalTable", "top_fraction_precision", "METHODS", "TRAINABLE_METHODS", "ZERO_COST_METHODS"],
        "wsnas.predictors._evaluate",
    ),
    **dict.fromkeys(
        ["TRANSFER_SIZES", "UnseenLayerWarning", "adapt_unseen", "default_transfer_size", "layer_types",
         "seen_layer_types"],
        "wsnas.predictors._transfer",
    ),  # fmt: skip
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsnas.predictors' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
