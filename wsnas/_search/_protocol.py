"""What a search needs of a predictor: the :class:`SearchPredictor` protocol, checked at the door.

:class:`wsnas.predictors.WeightPredictor` satisfies it; so can any object of yours. ``wsnas.search``
and ``wsnas.join`` check a predictor they are given with :func:`check_predictor` before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from wsnas._errors import SearchConfigError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

    from wsnas._arch import Arch
    from wsnas.search_spaces import SearchSpace

__all__ = ["SearchPredictor", "Scores", "MEMBERS", "check_predictor"]


class Scores(Protocol):
    """What ``predict`` returns (as :class:`wsnas.predictors.Prediction` does): one entry per architecture."""

    @property
    def score(self) -> ArrayLike:
        """``[n]`` predicted accuracy (higher is better), in the units of ``target``."""

    @property
    def uncertainty(self) -> ArrayLike:
        """``[n]`` how unsure each score is (>= 0; the search ranks by ``score + kappa * uncertainty``)."""


@runtime_checkable
class SearchPredictor(Protocol):
    """A predictor that :func:`wsnas.search` can screen with (``predictor=``).

    The search deep-copies the predictor it is given, so fine-tuning never changes the caller's object.
    It scores candidates in batches, one ``predict`` call per new set (with one objective: each candidate
    once, as the prior mean of a GP that real results correct; ``uncertainty`` is not used there). With
    several objectives, after real results arrive it maps them into the units of the scores with ``target``
    (``mean + std * z`` of their z-scores) and calls ``fine_tune`` on all of them so far. ``card`` is
    logged with the search (its digest as an MLflow param, the whole card as an artifact); ``space`` must
    be the space the search runs on.
    """

    @property
    def space(self) -> SearchSpace:
        """The search space whose architectures it scores."""

    @property
    def target(self) -> Mapping[str, Any]:
        """The units of its scores: at least ``"mean"`` and ``"std"`` of the targets it was trained on."""

    @property
    def card(self) -> Mapping[str, Any]:
        """A JSON-ready description (what it was trained on, how it scored)."""

    def predict(self, archs: Sequence[Arch]) -> Scores:
        """Scores of ``archs`` (architectures of ``space``), one batched call."""

    def fine_tune(self, archs: Sequence[str], targets: np.ndarray, *, epochs: int) -> object:
        """Continue training on ``archs`` (the space's strings) with measured ``targets [n]`` (float64)."""


#: the members of :class:`SearchPredictor`, in the order an error names them
MEMBERS = ("predict", "fine_tune", "target", "card", "space")
_METHODS = ("predict", "fine_tune")


def check_predictor(obj: object) -> SearchPredictor:
    """``obj`` if it is a :class:`SearchPredictor`.

    Raises:
        SearchConfigError: a member is missing (or ``predict``/``fine_tune`` is not callable); the
            message names every such member.
    """
    missing = [m for m in MEMBERS if not hasattr(obj, m) or (m in _METHODS and not callable(getattr(obj, m)))]
    if missing:
        raise SearchConfigError(
            "predictor must be 'default', a predictor file, None, or an object with the members of "
            f"wsnas.SearchPredictor ({', '.join(MEMBERS)}); got a {type(obj).__name__} without "
            f"{', '.join(missing)}"
        )
    return obj  # type: ignore[return-value]
