"""The ``wsnas`` command line (the console script is :func:`main`).

One module per command group: :mod:`~wsnas.cli._arch` (``spaces``, ``arch show``), :mod:`~wsnas.cli._zoo`
(``zoo build``, ``zoo show``), :mod:`~wsnas.cli._predictor` (``predictor train``, ``pretrain``, ``eval``;
``finetune`` in :mod:`~wsnas.cli._finetune`),
:mod:`~wsnas.cli._predict` (``predict``), :mod:`~wsnas.cli._search` (``search``, ``worker``),
:mod:`~wsnas.cli._track` (``ui``, ``track sync``) and :mod:`~wsnas.cli._export` (``export``);
:mod:`~wsnas.cli._main` attaches them to the main group, and :mod:`~wsnas.cli._common` holds the one-line
errors and the options several commands share.
Importing this package loads click only: ``wsnas --help`` imports no torch, optuna, mlflow or triton.
"""

from __future__ import annotations

from wsnas.cli._common import CliError
from wsnas.cli._main import main

__all__ = ["main", "CliError"]
