"""The ``wsnas`` command: the main group, with every command group of :mod:`wsnas.cli` attached.

Heavy libraries (torch, optuna, mlflow) are imported inside the commands that need them, so that
``wsnas --help`` answers at once. Errors that come from bad input (every :class:`wsnas.WsnasError`)
print as one line on stderr and exit with status 2.
"""

from __future__ import annotations

import click

from wsnas.cli._arch import arch_group, spaces_cmd
from wsnas.cli._common import ErrorLineGroup
from wsnas.cli._export import export_cmd
from wsnas.cli._predict import predict_cmd
from wsnas.cli._predictor import predictor_group
from wsnas.cli._search import search_cmd, worker_cmd
from wsnas.cli._track import track_group, ui_cmd
from wsnas.cli._zoo import zoo_group

__all__ = ["main"]


@click.group(cls=ErrorLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wsnas", prog_name="wsnas")
def main() -> None:
    """wsnas: weight-space neural architecture search.

    Candidate architectures become real PyTorch networks with generated weights; a graph neural
    network reads those weights to predict how well each candidate will train.
    """


for _command in (spaces_cmd, arch_group, zoo_group, predictor_group, predict_cmd, search_cmd, worker_cmd, ui_cmd,
                 track_group, export_cmd):  # fmt: skip
    main.add_command(_command)
