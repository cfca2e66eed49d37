"""Predictors as MLflow models, through a real ``mlflow server``: log, register, score with pyfunc, load back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wsnas import PredictorFileError
from wsnas.predictors import EncoderConfig, WeightPredictor, load, log_predictor
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def predictor() -> WeightPredictor:
    archs = sample_distinct(SPACE, 24, 0)
    y = np.array([SPACE.ops(a).count("nor_conv_3x3") for a in archs], dtype=float)
    pred = WeightPredictor(SPACE, encoder=EncoderConfig(hidden=8, layers=1), ensemble=2, size={"C": 2, "N": 1})
    return pred.fit(archs, y, epochs=3, batch_size=8, progress=False)


@pytest.fixture()
def tracking(mlflow_server, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    mlflow.set_tracking_uri(mlflow_server.uri)
    yield mlflow_server.uri
    mlflow.set_tracking_uri(None)


def test_registered_predictor_scores_like_the_in_memory_one(predictor, tracking, tmp_path) -> None:
    import mlflow

    mlflow.set_experiment("wsnas-test-registry")
    info = log_predictor(predictor, registered_model_name="nb201-test-predictor")
    version = info.registered_model_version
    assert version is not None
    texts = [SPACE.to_string(a) for a in sample_distinct(SPACE, 30, 7)]
    expected = predictor.predict(texts)

    # dst_path: MLflow downloads into a temporary folder of its own otherwise, and never removes it
    model = mlflow.pyfunc.load_model(f"models:/nb201-test-predictor/{version}", dst_path=str(tmp_path))
    frame = pd.DataFrame({"arch": texts}, index=np.arange(100, 130))
    out = model.predict(frame)
    assert list(out.columns) == ["score", "uncertainty"] and list(out.index) == list(frame.index)
    np.testing.assert_array_equal(out["score"].to_numpy(), expected.score)
    np.testing.assert_array_equal(out["uncertainty"].to_numpy(), expected.uncertainty)

    again = load(f"models:/nb201-test-predictor/{version}")
    assert isinstance(again, WeightPredictor) and again.card["space"] == "nb201"
    np.testing.assert_array_equal(again.predict(texts).score, expected.score)
    via_run = load(f"runs:/{info.run_id}/predictor")
    np.testing.assert_array_equal(via_run.predict(texts).score, expected.score)


def test_bad_model_uris_and_inputs(predictor, tracking, tmp_path) -> None:
    import mlflow

    with pytest.raises(PredictorFileError, match="cannot fetch the MLflow model 'models:/no-such-model/1'"):
        load("models:/no-such-model/1")
    mlflow.set_experiment("wsnas-test-registry")
    info = log_predictor(predictor, name="pred2")
    model = mlflow.pyfunc.load_model(info.model_uri, dst_path=str(tmp_path))
    with pytest.raises(ValueError, match="an 'arch' column"):
        model.predict(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(Exception, match="NB201"):
        model.predict(pd.DataFrame({"arch": ["not an arch"]}))
