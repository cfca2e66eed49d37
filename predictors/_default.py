"""The predictor a space gets when none is given: its own shipped one, else the multi-space one transferred."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsnas.predictors._predictor import WeightPredictor, load

if TYPE_CHECKING:
    import torch

    from wsnas.search_spaces import SearchSpace

__all__ = ["MULTI_SPACE", "default_predictor"]

#: the shipped predictor trained on the zoos of several spaces (``load("multi")``): the default of a space that
#: has no shipped predictor of its own
MULTI_SPACE = "multi"


def default_predictor(space: SearchSpace | str, *, device: torch.device | str | None = None) -> WeightPredictor:
    """The predictor ``wsnas predict`` and ``wsnas search`` use for ``space`` (an object or a registered name)
    when none is given: its own shipped predictor (``load(space.name)``) if one is installed, else the
    shipped multi-space predictor (:data:`MULTI_SPACE`) transferred to it (:meth:`WeightPredictor.transfer`:
    the width and target statistics it was trained at for a space it was trained on; for another space the
    default transfer width, and an :class:`~wsnas.predictors.UnseenLayerWarning` naming layer types none of
    its zoos had).

    Raises:
        wsnas.PredictorFileError: neither is installed.
        ValueError: ``space`` cannot be built at the transfer width.
    """
    from wsnas.predictors._persist import shipped_path
    from wsnas.search_spaces import get_space

    space_obj = get_space(space) if isinstance(space, str) else space
    if shipped_path(space_obj.name).is_file():
        return load(space_obj.name, device=device, space=space_obj)
    if not shipped_path(MULTI_SPACE).is_file():
        return load(space_obj.name, device=device)  # the loader's error: nothing is shipped for this space
    return load(MULTI_SPACE, device=device).transfer(space_obj)
