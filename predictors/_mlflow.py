"""Predictors as MLflow models: log and register a predictor, score through ``mlflow.pyfunc``, load it back.

>>> info = log_predictor(pred, registered_model_name="nb201-predictor")   # in the active (or a new) run
>>> mlflow.pyfunc.load_model("models:/nb201-predictor/1").predict(pd.DataFrame({"arch": strings}))
>>> wsnas.predictors.load("models:/nb201-predictor/1")                   # the WeightPredictor again

``mlflow.pyfunc.load_model`` downloads the model into a temporary folder that MLflow never removes; give it
``dst_path`` (a folder of the caller's) to keep ``/tmp`` clean. :func:`wsnas.predictors.load` downloads into a
temporary folder of its own and removes it.

The model directory holds the predictor's safetensors file as its data and names this module as the pyfunc
loader (``loader_module``): loading imports the installed ``wsnas`` and reads the file with
:func:`wsnas.predictors.load` (digests checked). Nothing is pickled and no code is stored in the model, so
loading one never runs code that came with it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas.predictors._persist import MODEL_DATA as _DATA
from wsnas.predictors._persist import MODEL_URI_SCHEMES, download_predictor

if TYPE_CHECKING:
    import pandas as pd

    from wsnas.predictors._predictor import WeightPredictor

__all__ = ["log_predictor", "download_predictor", "PyfuncPredictor", "MODEL_URI_SCHEMES"]



class PyfuncPredictor:
    """What ``mlflow.pyfunc.load_model`` wraps: scores a frame of architecture strings.

    ``predict(frame)`` takes a ``pandas.DataFrame`` with an ``arch`` column (or a single column), a
    ``pandas.Series`` or a list of strings, and returns a DataFrame with ``score`` and ``uncertainty``
    (float64, one row per input row, same index), equal to :meth:`WeightPredictor.predict`.
    """

    def __init__(self, predictor: WeightPredictor) -> None:
        self.predictor = predictor

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import pandas as pd

        texts, index = _strings(model_input)
        if not texts:
            return pd.DataFrame({"score": [], "uncertainty": []}, index=index, dtype="float64")
        out = self.predictor.predict(texts, batch_size=int((params or {}).get("batch_size", 64)))
        return pd.DataFrame({"score": out.score, "uncertainty": out.uncertainty}, index=index)


def _strings(model_input: Any) -> tuple[list[str], Any]:
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        if "arch" in model_input.columns:
            col = model_input["arch"]
        elif model_input.shape[1] == 1:
            col = model_input.iloc[:, 0]
        else:
            raise ValueError(
                f"the input frame needs an 'arch' column (or exactly one column), got {list(model_input.columns)}"
            )
        return [str(v) for v in col], model_input.index
    if isinstance(model_input, pd.Series):
        return [str(v) for v in model_input], model_input.index
    if isinstance(model_input, Sequence) and not isinstance(model_input, (str, bytes)):
        return [str(v) for v in model_input], pd.RangeIndex(len(model_input))
    kind = type(model_input).__name__
    raise ValueError(f"expected a DataFrame, a Series or a list of architecture strings, got {kind}")


def _load_pyfunc(data_path: str) -> PyfuncPredictor:
    """The pyfunc loader hook: ``data_path`` is the model's copy of the predictor file."""
    from wsnas.predictors._predictor import load

    path = Path(data_path)
    if path.is_dir():
        path = path / _DATA
    return PyfuncPredictor(load(path, device="cpu"))


def log_predictor(
    predictor: WeightPredictor,
    *,
    name: str = "predictor",
    registered_model_name: str | None = None,
    run_id: str | None = None,
) -> Any:
    """Log ``predictor`` as a pyfunc model of the active MLflow run (``run_id``: of that run; neither: a new
    run), optionally registering it as a new version of ``registered_model_name``.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri``, ``registered_model_version``, ...).
    """
    import mlflow

    from wsnas._version import __version__

    with tempfile.TemporaryDirectory(prefix="wsnas-mlflow-") as tmp:
        data = Path(tmp) / _DATA
        predictor.save(data)
        options: dict[str, Any] = {
            "name": name,
            "loader_module": __name__,
            "data_path": str(data),
            "registered_model_name": registered_model_name,
            "pip_requirements": [f"wsnas=={__version__}"],  # given: inferring them would load the model
            "metadata": {"wsnas_space": predictor.space.name, "wsnas_ensemble": predictor.ensemble},
        }
        if run_id is not None:
            with mlflow.start_run(run_id=run_id):
                return mlflow.pyfunc.log_model(**options)
        if mlflow.active_run() is not None:
            return mlflow.pyfunc.log_model(**options)
        with mlflow.start_run():
            return mlflow.pyfunc.log_model(**options)

