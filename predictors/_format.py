"""The predictor file format's name and version, written into every card and checked on every load.

A module of its own so that the predictor (:mod:`wsnas.predictors._predictor`, which writes them into its
card) and the file reader (:mod:`wsnas.predictors._persist`) both import it without importing each other.
"""

from __future__ import annotations

__all__ = ["FORMAT", "FORMAT_VERSION"]

#: ``card["format"]`` and ``card["format_version"]`` of predictors this version writes and reads
FORMAT = "wsnas-predictor"
FORMAT_VERSION = 1
