"""One worker's search loop: propose with Optuna, screen with the predictor, evaluate the best for real.

With a predictor and one objective (the default), the predictor is a prior that real results overrule
(:mod:`wsnas._search._acquire`): the candidates are the evaluator's whole domain when it has one (a
:class:`~wsnas.TableEvaluator`'s rows), else a pool of sampler proposals grown each round with
``space.neighbours`` of the best results; the predictor scores each candidate once (one batched call per
new set, cached by hash); the first ``K0`` picks are the prior's top, then each pick is the candidate with
the best UCB of a Gaussian process whose mean is the prior's score with a learned weight and whose kernel
runs over edit distance. No fine-tuning.

Otherwise (no predictor, or several objectives), a round: the sampler proposes ``batch_size`` new candidates
through ``space.suggest`` on an in-memory mirror of the study's finished trials (so it learns from every
worker's results); constraints and the evaluator's domain drop candidates before they are scored; the
predictor scores the batch in one call; the candidates ranked highest by ``score + kappa * uncertainty``
(non-dominated sorting with several objectives) are claimed and evaluated one by one, each result stored as a trial
before the next evaluation starts; then the predictor is fine-tuned on every real result so far. When the
evaluator has a domain and the sampler keeps missing it, the rest of the batch is drawn from the domain's
unevaluated rows; the search stops early only when the domain is exhausted.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas._errors import EvaluatorError
from wsnas._search._acquire import BETA, K0, TokenIndex, gp_ucb
from wsnas._search._evaluators import TrialReporter, check_values
from wsnas._search._objectives import front_ranks
from wsnas._search._optuna import generation_key
from wsnas._search._store import Coordinator, token_finished, token_used

if TYPE_CHECKING:
    import optuna

    from wsnas._arch import Arch
    from wsnas._search._config import SearchConfig

__all__ = ["Loop"]


@dataclass
class Candidate:
    arch: Arch
    string: str
    params: dict[str, Any]
    distributions: dict[str, Any]
    predicted: float | None = None
    uncertainty: float | None = None
    net: dict[str, float] = field(default_factory=dict)


class Loop:
    """The rounds of one worker on ``study`` (see the module docstring); ``worker`` is its position among
    the study's workers (0: the first), which seeds its sampler (:meth:`SearchConfig.worker_seed`)."""

    def __init__(
        self, config: SearchConfig, study: optuna.Study, coordinator: Coordinator, bar: Any, *, worker: int = 0,
        screening_log: Any = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.study = study
        self.coord = coordinator
        self.bar = bar
        self.log = screening_log
        self.sampler = config.sampler(config.worker_seed(worker))
        self.pruner = config.pruner() if config.pruner is not None else None  # stateful (Hyperband): one per worker
        self.tuned_on = 0
        self.screened = 0
        self.poll = 0.2
        self.on_result: Any = None  # called with the trial id after each real result is stored
        self._domain: list[Arch] | None = None
        self._pool: dict[str, Candidate] = {}  # GP acquisition: candidates by hash (scored)
        self._tokens = TokenIndex()
        self._ref: tuple[float, float] | None = None  # the prior's mean and sd over the first candidate set
        self._jitter = np.random.default_rng(config.worker_seed(worker))

    def domain(self) -> list[Arch] | None:
        """The evaluator's architectures when it can only evaluate a finite set (a table), else ``None``."""
        if self._domain is None:
            archs = getattr(self.config.evaluator, "archs", None)
            if not callable(archs):
                return None
            space = self.config.space
            self._domain = sorted((space.from_string(s) for s in archs()), key=lambda a: a.hash)
        return self._domain

    # -- proposals ----------------------------------------------------------------------------------
    def _mirror(self, trials: list[optuna.trial.FrozenTrial]) -> optuna.Study:
        """An in-memory study holding the finished trials' params and values, for the sampler."""
        import optuna
        from optuna.trial import TrialState

        mirror = optuna.create_study(directions=self.config.directions, sampler=self.sampler)
        kinds = ("eval", "predicted")
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("kind") in kinds]
        gen_key = generation_key(self.sampler)
        pop = getattr(self.sampler, "population_size", None) or 1
        for i, t in enumerate(done):
            system = {gen_key: i // pop} if gen_key else {}
            mirror.add_trial(
                optuna.trial.create_trial(
                    params=t.params, distributions=t.distributions, values=t.values, system_attrs=system
                )
            )
        return mirror

    def _propose(
        self, trials: list[optuna.trial.FrozenTrial], exclude: set[str], count: int | None = None
    ) -> list[Candidate]:
        """Up to ``count`` (default ``batch_size``) new candidates: distinct, not in ``exclude``, evaluable,
        within constraints; what the sampler misses of a domain is drawn from its unevaluated rows (seeded)."""
        config = self.config
        count = config.batch_size if count is None else count
        mirror = self._mirror(trials)
        can = getattr(config.evaluator, "can_evaluate", None)
        out: list[Candidate] = []
        seen = set(exclude)
        max_draws = 50 * count + 200
        for _ in range(max_draws):
            if len(out) >= count:
                break
            trial = mirror.ask()
            arch = config.space.suggest(trial)
            if arch.hash in seen:
                continue
            seen.add(arch.hash)
            if can is not None and not can(arch):
                continue
            if not self._fits(arch):
                continue
            out.append(Candidate(arch, config.space.to_string(arch), dict(trial.params), dict(trial.distributions)))
        domain = self.domain() if len(out) < count else None
        if domain is not None:
            rest = [a for a in domain if a.hash not in seen and self._fits(a)]
            rng = np.random.default_rng([config.seed, len(exclude)])
            picks = rng.permutation(len(rest))[: count - len(out)]
            out += [Candidate(rest[i], config.space.to_string(rest[i]), {}, {}) for i in sorted(picks)]
        return out

    def _fits(self, arch: Arch) -> bool:
        return self.config.max_params is None or self.config.measures.params(arch) <= self.config.max_params

    def _screen(self, cands: list[Candidate]) -> None:
        """Predicted accuracy (one batched call) and the network objectives of every candidate."""
        config = self.config
        if config.predictor is not None and cands:
            pred = config.predictor.predict([c.arch for c in cands])
            for c, s, u in zip(cands, np.asarray(pred.score), np.asarray(pred.uncertainty)):
                c.predicted, c.uncertainty = float(s), float(u)
        net_names = [o for o in config.objectives if o != "accuracy"]
        for c in cands:
            c.net = config.measures.measure(c.arch, net_names)
        self.screened += len(cands)

    def _ranked(self, cands: list[Candidate]) -> list[Candidate]:
        """Candidates in the order they should be evaluated (UCB; non-dominated fronts with several objectives)."""
        config = self.config
        if config.predictor is None:
            return list(cands)

        def ucb(c: Candidate) -> float:
            return float(c.predicted) + config.kappa * float(c.uncertainty or 0.0)

        if len(config.objectives) == 1:
            return sorted(cands, key=lambda c: -ucb(c))
        points = [[ucb(c) if o == "accuracy" else c.net[o] for o in config.objectives] for c in cands]
        ranks = front_ranks(points, config.directions)
        order = sorted(range(len(cands)), key=lambda i: (ranks[i], -ucb(cands[i])))
        return [cands[i] for i in order]

    # -- real evaluations ---------------------------------------------------------------------------
    def _free_slot(self) -> int | None:
        """The lowest free evaluation slot; waits while every slot is in flight; ``None`` when the budget is spent."""
        budget = self.config.eval_budget
        while True:
            tokens = self.coord.tokens()
            if self.coord.reap_stale(tokens):
                tokens = self.coord.tokens()
            finished = sum(token_finished(t) for t in tokens)
            self._progress(finished)
            if finished >= budget:
                return None
            used = {t.user_attrs.get("slot") for t in tokens if token_used(t)}
            for k in range(budget):
                if k not in used:
                    return k
            time.sleep(self.poll)

    def _evaluate(self, tid: int, cand: Candidate) -> None:
        """Evaluate ``cand`` on its won token ``tid`` and store the result: COMPLETE, FAIL with the reason,
        or PRUNED (the evaluator raised ``optuna.TrialPruned``; see :meth:`_pruned`)."""
        import optuna

        config = self.config
        measured: dict[str, float] | None = None
        reason: str | None = None
        assert config.evaluator is not None
        trial = TrialReporter(self.study, tid, self.pruner)
        with self.coord.beating(tid):
            try:
                if getattr(config.evaluator, "takes_trial", False):
                    measured = config.evaluator(cand.arch, trial=trial)
                else:
                    measured = config.evaluator(cand.arch)
                check_values(measured, ("accuracy",))
            except KeyboardInterrupt:
                self.coord.release(tid, "interrupted")
                raise
            except optuna.TrialPruned:
                self._pruned(tid, trial)
                return
            except Exception as exc:  # any evaluator failure is a FAIL trial with its reason
                reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, EvaluatorError) else str(exc)
        values = None
        attrs: dict[str, Any] = {}
        if measured is not None and reason is None:
            attrs["measured"] = {k: (v if math.isfinite(v) else None) for k, v in measured.items()}
            net = {**cand.net}
            for name in config.objectives:
                if name != "accuracy" and not math.isfinite(measured.get(name, math.nan)):
                    net.setdefault(name, config.measures.measure(cand.arch, [name])[name])
            values = [measured["accuracy"] if o == "accuracy" else measured.get(o, net.get(o))
                      for o in config.objectives]  # fmt: skip
        self.coord.tell(tid, values, attrs, reason)
        if self.on_result is not None:
            self.on_result(tid)

    def _pruned(self, tid: int, trial: TrialReporter) -> None:
        """Store a pruned evaluation: PRUNED (outcome ``pruned``: it spent its slot) with its last reported
        value as the trial's value (one objective) and ``measured`` accuracy, ``pruned_at`` its step."""
        from optuna.trial import TrialState

        storage = self.coord.storage
        storage.set_trial_user_attr(tid, "outcome", "pruned")
        value = None
        if trial.last is not None and math.isfinite(trial.last[1]):
            value = trial.last[1]
            storage.set_trial_user_attr(tid, "pruned_at", trial.last[0])
            storage.set_trial_user_attr(tid, "measured", {"accuracy": value})
        one = value is not None and len(self.config.objectives) == 1
        storage.set_trial_state_values(tid, TrialState.PRUNED, values=[value] if one else None)
        if self.on_result is not None:
            self.on_result(tid)

    def _fine_tune(self) -> None:
        """Fine-tune the predictor on every real result (targets mapped into its units by z-score).

        Not when the budget is spent before this worker screened anything (a rerun of a finished search, or
        a worker joining one): nothing is left to screen, and the predictor stays as it was given."""
        config = self.config
        if config.predictor is None:
            return
        from optuna.trial import TrialState

        acc = config.objectives.index("accuracy")
        tokens = self.coord.tokens()
        if self.screened == 0 and sum(token_finished(t) for t in tokens) >= config.eval_budget:
            return
        done = [t for t in tokens if t.state == TrialState.COMPLETE]
        if len(done) < 4 or len(done) <= self.tuned_on:
            return
        y = np.array([t.values[acc] for t in done], dtype=np.float64)
        if float(y.std()) == 0.0:
            return
        target = config.predictor.target
        y = float(target["mean"]) + float(target["std"]) * (y - y.mean()) / y.std()
        config.predictor.fine_tune([t.user_attrs["arch"] for t in done], y, epochs=config.fine_tune_epochs)
        self.tuned_on = len(done)

    # -- rounds -------------------------------------------------------------------------------------
    def _progress(self, n: int) -> None:
        if self.bar is not None and n != self.bar.n:
            self.bar.n = min(n, self.bar.total or n)
            self.bar.refresh()

    def run(self) -> None:
        """Rounds until the budget is spent (or, training-free, ``n_candidates`` are scored).

        Ctrl-C (or SIGTERM, raised the same way) gives back every token this worker holds unfinished,
        wherever it lands: in an evaluation, or between claiming a slot and starting to evaluate it."""
        try:
            self._run()
        except KeyboardInterrupt:
            self.coord.release_mine("interrupted")
            raise

    def _run(self) -> None:
        if self.config.eval_budget == 0:
            self._run_training_free()
            return
        if self.config.predictor is not None and len(self.config.objectives) == 1:
            self._run_gp()
            return
        self._fine_tune()  # resuming: learn from what is already there
        empty_rounds = 0
        while True:
            tokens = self.coord.tokens()
            if self._free_slot() is None:
                return
            exclude = {str(t.user_attrs.get("arch_hash")) for t in tokens if token_used(t)}
            cands = self._propose(self.coord.trials(), exclude)
            if not cands:
                empty_rounds += 1
                if self.domain() is not None or empty_rounds >= 3:
                    self._stop_early()
                    return
                continue
            empty_rounds = 0
            self._screen(cands)
            chosen = self._evaluate_best(self._ranked(cands))
            if chosen is None:
                return
            self._log(cands, chosen)
            if chosen:
                self._fine_tune()

    def _stop_early(self) -> None:
        domain = self.domain()
        if domain is not None:
            print(f"wsnas search: every one of the evaluator's {len(domain)} architectures that fits the constraints "
                  "is evaluated or in flight; stopping early", file=sys.stderr)  # fmt: skip
        else:
            print("wsnas search: no new candidates left to evaluate; stopping early", file=sys.stderr)

    # -- the prior as a GP mean (one objective, a predictor) -----------------------------------------
    def _add(self, cands: list[Candidate], ref: bool = False) -> list[Candidate]:
        """Score the candidates not seen yet (one batched call) and add them to the pool; the new ones.
        ``ref``: the first such set fixes the mean and sd that z-score the prior."""
        new = [c for c in {c.arch.hash: c for c in cands}.values() if c.arch.hash not in self._pool]
        self._screen(new)
        for c in new:
            self._pool[c.arch.hash] = c
            self._tokens.add(c.arch)
        if new and ref and self._ref is None:
            p = np.array([c.predicted for c in new], dtype=np.float64)
            self._ref = (float(p.mean()), float(p.std()) or 1.0)
        self._log(new, set())
        return new

    def _grow(self, done: list[tuple[Candidate, float]]) -> None:
        """Candidates: the whole domain once, or sampler proposals plus the neighbours of the best results."""
        config = self.config
        domain = self.domain()
        first = self._ref is None
        if domain is not None:
            if first:
                self._add([Candidate(a, config.space.to_string(a), {}, {}) for a in domain if self._fits(a)], ref=True)
            return
        used = set(self._pool)
        count = config.n_candidates if first else config.batch_size
        cands = self._propose(self.coord.trials(), used, count)
        can = getattr(config.evaluator, "can_evaluate", None)
        for c, _ in sorted(done, key=lambda cy: -cy[1])[:3]:
            for a in config.space.neighbours(c.arch):
                if a.hash not in used and (can is None or can(a)) and self._fits(a):
                    used.add(a.hash)
                    cands.append(Candidate(a, config.space.to_string(a), {}, {}))
        self._add(cands, ref=True)

    def _prior(self, cands: list[Candidate]) -> np.ndarray:
        if self._ref is None:  # nothing proposed yet (resumed, every proposal taken): the pool so far
            p = np.array([c.predicted for c in self._pool.values()], dtype=np.float64)
            self._ref = (float(p.mean()), float(p.std()) or 1.0)
        return (np.array([c.predicted for c in cands], dtype=np.float64) - self._ref[0]) / self._ref[1]

    def _run_gp(self) -> None:
        """Rounds of one GP-UCB pick each (see the module docstring) until the budget is spent.

        Only COMPLETE trials are observations, as in Optuna's ``GPSampler``: a PRUNED trial's last reported
        value measures a shorter training than the others' and would bias the fit. Pruned and failed
        architectures still count as used (:func:`token_used`), so none is proposed again."""
        from optuna.trial import TrialState

        config = self.config
        space = config.space
        while True:
            if self._free_slot() is None:
                return
            tokens = self.coord.tokens()
            used = {str(t.user_attrs.get("arch_hash")) for t in tokens if token_used(t)}
            done: list[tuple[Candidate, float]] = []
            for t in sorted((t for t in tokens if t.state == TrialState.COMPLETE), key=lambda t: t.number):
                c = self._pool.get(str(t.user_attrs.get("arch_hash")))
                if c is None:  # another worker's pick (or a resumed search's) outside this pool
                    a = space.from_string(t.user_attrs["arch"])
                    self._add([Candidate(a, space.to_string(a), dict(t.params), dict(t.distributions))])
                    c = self._pool[a.hash]
                done.append((c, float(t.values[0])))
            self._grow(done)
            open_ = [c for h, c in self._pool.items() if h not in used]
            if not open_:
                self._stop_early()
                return
            acq = self._prior(open_)
            if len(done) >= K0:
                obs = [c for c, _ in done]
                acq = gp_ucb(
                    acq, self._tokens.matrix([c.arch.hash for c in open_]), self._prior(obs),
                    self._tokens.matrix([c.arch.hash for c in obs]), np.array([y for _, y in done]), beta=BETA,
                )  # fmt: skip
            acq = acq + 1e-9 * self._jitter.random(len(open_))
            ranked = [open_[i] for i in np.argsort(-acq, kind="stable")]
            chosen = self._evaluate_best(ranked, limit=1)
            if chosen is None:
                return
            self._log([c for c in ranked if c.arch.hash in chosen], chosen)

    def _evaluate_best(self, ranked: list[Candidate], limit: int | None = None) -> set[str] | None:
        """Claim and evaluate the best ``limit`` (default ``evals_per_round``) of ``ranked``; their hashes
        (``None``: budget spent)."""
        chosen: set[str] = set()
        limit = self.config.evals_per_round if limit is None else limit
        for cand in ranked:
            if len(chosen) >= limit:
                break
            slot = self._free_slot()
            if slot is None:
                return None if not chosen else chosen
            attrs = {"arch": cand.string}
            if cand.predicted is not None:
                attrs.update(predicted=cand.predicted, uncertainty=cand.uncertainty)
            tid = self.coord.claim(cand.arch.hash, slot, cand.params, cand.distributions, attrs)
            if tid is None:
                continue
            self._evaluate(tid, cand)
            chosen.add(cand.arch.hash)
        return chosen

    def _run_training_free(self) -> None:
        import optuna

        config = self.config
        while True:
            trials = self.coord.trials()
            have = [t for t in trials if t.user_attrs.get("kind") == "predicted"]
            self._progress(len(have))
            if len(have) >= config.n_candidates:
                return
            cands = self._propose(trials, {str(t.user_attrs.get("arch_hash")) for t in have})
            cands = cands[: config.n_candidates - len(have)]
            if not cands:
                return
            self._screen(cands)
            for c in cands:
                values = [c.predicted if o == "accuracy" else c.net[o] for o in config.objectives]
                attrs = {"kind": "predicted", "arch": c.string, "arch_hash": c.arch.hash, "predicted": c.predicted}
                attrs["uncertainty"] = c.uncertainty
                self.study.add_trial(
                    optuna.trial.create_trial(
                        params=c.params, distributions=c.distributions, values=values, user_attrs=attrs
                    )
                )
            self._log(cands, set())

    def _log(self, cands: list[Candidate], chosen: set[str]) -> None:
        """Append this round's screening rows (one write) to the screening CSV."""
        if self.log is None or not cands:
            return
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf)
        new = not os.path.exists(self.log) or os.path.getsize(self.log) == 0
        names = [o for o in self.config.objectives if o != "accuracy"]
        if new:
            writer.writerow(["worker", "arch", "predicted", "uncertainty", *names, "evaluated"])
        for c in cands:
            net = [c.net.get(n) for n in names]
            writer.writerow([self.coord.worker, c.string, c.predicted, c.uncertainty, *net, int(c.arch.hash in chosen)])
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode())
        finally:
            os.close(fd)
