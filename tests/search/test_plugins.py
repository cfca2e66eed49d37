"""A user's own space and evaluator as ``package.module:attr`` plug-ins (stored in the study, loaded again
by a joining worker), and a TrainEvaluator that the study stores as data."""

from __future__ import annotations

import textwrap

import pytest

import wsnas
import wsnas.search_spaces as spaces
from wsnas.search_spaces import get_space

MODULE = """
from wsnas.search_spaces import NB201

class Mine(NB201):
    name = "mine3"
    description = "NB201 under another name"

def make():
    return Mine()

instance = Mine()
not_a_space = 42

def broken():
    raise RuntimeError("no GPU here")

def convs(arch):
    return Mine().ops(arch).count("nor_conv_3x3") / 6

class Scorer:
    def __call__(self, arch):
        return 0.25
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> str:
    """A module ``myspaces_<tmp>`` of the user's on ``sys.path``; its name."""
    name = f"myspaces_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_get_space_loads_a_space_instance_factory_or_class(plugin) -> None:
    for attr in ("Mine", "make", "instance"):
        space = get_space(f"{plugin}:{attr}")
        assert isinstance(space, spaces.SearchSpace) and space.name == "mine3"
    assert get_space(f"{plugin}:instance") is get_space(f"{plugin}:instance")  # the module's own object
    assert spaces.is_plugin_path(f"{plugin}:Mine") and not spaces.is_plugin_path("nb201")


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("nope", "has no attribute 'nope'"),
        ("not_a_space", "is a int, not a SearchSpace or a zero-argument factory"),
        ("broken", "calling it failed: RuntimeError: no GPU here"),
        ("convs", "calling it failed: TypeError"),
    ],
)
def test_a_bad_space_plugin_is_one_clear_line(plugin, attr, message) -> None:
    with pytest.raises(wsnas.UnknownSearchSpace, match=message) as info:
        get_space(f"{plugin}:{attr}")
    assert "\n" not in str(info.value) and f"'{plugin}:{attr}'" in str(info.value)


def test_a_missing_or_malformed_plugin_path_is_one_clear_line(plugin, tmp_path) -> None:
    with pytest.raises(wsnas.UnknownSearchSpace, match=r"no module named 'nosuch_mod_xyz' \(install it, or put"):
        get_space("nosuch_mod_xyz.sub:Mine")
    with pytest.raises(wsnas.UnknownSearchSpace, match="a search space plug-in is 'package.module:attr'"):
        get_space(f"{plugin}:")
    out = tmp_path / "out"
    with pytest.raises(wsnas.EvaluatorError, match=f"evaluator plug-in '{plugin}:not_a_space' is a int, not callable"):
        wsnas.search("nb201", evaluator=f"{plugin}:not_a_space", eval_budget=1, predictor=None, output_dir=out,
                     progress=False)  # fmt: skip
    with pytest.raises(wsnas.EvaluatorError, match="has no attribute 'score'"):
        wsnas.search("nb201", evaluator=f"{plugin}:score", eval_budget=1, predictor=None, output_dir=out,
                     progress=False)  # fmt: skip
    assert not out.exists()


def test_a_search_on_plugins_is_joined_by_a_worker_that_loads_them_again(plugin, tmp_path) -> None:
    space, ev = f"{plugin}:Mine", f"{plugin}:convs"
    first = wsnas.search(space, evaluator=ev, eval_budget=2, predictor=None, output_dir=tmp_path, progress=False)
    stored = first.study.user_attrs["wsnas:config"]
    assert (stored["space"], stored["evaluator"]) == (space, ev) and first.study_name.startswith("mine3-")
    assert all(r.values["accuracy"] == get_space(space).ops(get_space(space).from_string(r.arch)).count(
        "nor_conv_3x3") / 6 for r in first.history)  # fmt: skip
    first.study.set_user_attr("wsnas:config", {**stored, "eval_budget": 3})  # one more evaluation for a worker
    joined = wsnas.join(first.study_name, first.storage, output_dir=tmp_path, progress=False)  # nothing passed
    assert len(joined.history) == 3 and joined._config.space.name == "mine3"
    assert joined._config.evaluator.spec == ev
    scorer = wsnas.search("nb201", evaluator=f"{plugin}:Scorer", eval_budget=1, predictor=None,
                          output_dir=tmp_path / "s", progress=False)  # fmt: skip
    assert scorer.best.values["accuracy"] == 0.25  # a class is made with no arguments


def test_a_worker_that_cannot_find_the_space_says_how_to_share_it(tmp_path, monkeypatch) -> None:
    class Registered(spaces.NB201):
        name = "tmpreg"

    monkeypatch.setitem(spaces._REGISTRY, "tmpreg", Registered)  # registered in this process only
    res = wsnas.search("tmpreg", evaluator=lambda a: 0.5, eval_budget=1, predictor=None, output_dir=tmp_path,
                       progress=False)  # fmt: skip
    monkeypatch.delitem(spaces._REGISTRY, "tmpreg")  # another process: it never registered the space
    with pytest.raises(wsnas.SearchConfigError, match=r"searches space 'tmpreg'.*plug-in path \(--space package"):
        wsnas.join(res.study_name, res.storage, evaluator=lambda a: 0.5, output_dir=tmp_path, progress=False)


def test_a_train_evaluator_is_stored_as_data_and_rebuilt(tmp_path) -> None:
    task = wsnas.synthetic(n=64, classes=2, image_size=8, epochs=1, val_size=16, size={"C": 2, "N": 1})
    ev = wsnas.TrainEvaluator(task, seed=3)
    spec = ev.spec
    assert spec["kind"] == "train" and spec["task"] == "synthetic" and spec["seed"] == 3
    assert spec["recipe"]["size"] == {"C": 2, "N": 1} and spec["fingerprint"] == task.fingerprint
    again = wsnas.TrainEvaluator.from_spec(spec)
    assert again.task.fingerprint == task.fingerprint and again.seed == 3 and again.spec == spec
    assert wsnas.TrainEvaluator("digits").spec == "train:digits"  # the built-in as it is: its short name
    assert isinstance(wsnas.TrainEvaluator("digits", seed=1).spec, dict)  # a seed other than 0 is kept
    res = wsnas.search("nb201", evaluator=ev, eval_budget=1, predictor=None, output_dir=tmp_path, progress=False)
    assert res.study.user_attrs["wsnas:config"]["evaluator"] == spec
    res.study.set_user_attr("wsnas:config", {**res.study.user_attrs["wsnas:config"], "eval_budget": 2})
    joined = wsnas.join(res.study_name, res.storage, output_dir=tmp_path, progress=False)
    assert len(joined.history) == 2 and joined._config.evaluator.task.fingerprint == task.fingerprint
    assert joined._config.evaluator.seed == 3
    for r in joined.history:  # both trained at the stored size (C=2, N=1), not the space's proxy size
        net = get_space("nb201").build(get_space("nb201").from_string(r.arch), C=2, N=1, num_classes=2, in_channels=3)
        assert r.measured["params"] == wsnas.count_params(net)
    with pytest.raises(wsnas.EvaluatorError, match="task 'synthetic' reads no data folder"):
        wsnas.join(res.study_name, res.storage, output_dir=tmp_path, data_dir=tmp_path, progress=False)


def test_a_custom_task_keeps_the_join_error_and_says_why(tmp_path) -> None:
    source = wsnas.synthetic(n=64, classes=2, image_size=8).source
    task = wsnas.Task(name="mine", source=source, epochs=1, val_size=16, size={"C": 2, "N": 1})
    ev = wsnas.TrainEvaluator(task)
    assert ev.spec is None and "no built-in task" in ev.why_not_data
    res = wsnas.search("nb201", evaluator=ev, eval_budget=1, predictor=None, output_dir=tmp_path, progress=False)
    with pytest.raises(wsnas.SearchConfigError) as info:
        wsnas.join(res.study_name, res.storage, output_dir=tmp_path, progress=False)
    message = str(info.value)
    assert "evaluates with a Python TrainEvaluator" in message and "its task 'mine'" in message
    assert "pass it (evaluator=)" in message and "\n" not in message
    joined = wsnas.join(res.study_name, res.storage, evaluator=ev, output_dir=tmp_path, progress=False)
    assert len(joined.history) == 1


def test_predict_scores_a_plugin_space_with_its_own_predictor(plugin, tmp_path) -> None:
    from click.testing import CliRunner

    from wsnas.cli import main
    from wsnas.predictors import WeightPredictor
    from wsnas.training import sample_distinct

    space = get_space(f"{plugin}:Mine")
    archs = sample_distinct(space, 8, 0)
    pred = WeightPredictor(space, ensemble=1, size={"C": 2, "N": 1}, seed=0)
    pred.fit(archs, [a.hash.count("a") / 8 for a in archs], epochs=1, progress=False)
    pred.save(tmp_path / "mine.safetensors")  # its card names space 'mine3', which no registry knows
    (tmp_path / "archs.txt").write_text("\n".join(space.to_string(a) for a in archs[:3]) + "\n")
    args = ["predict", "--space", f"{plugin}:Mine", "--predictor", str(tmp_path / "mine.safetensors"),
            "--input", str(tmp_path / "archs.txt"), "--output", "-", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = result.stdout.strip().splitlines()
    assert rows[0] == "arch,score,uncertainty" and [r.split(",")[0] for r in rows[1:]] == [
        space.to_string(a) for a in archs[:3]
    ]
