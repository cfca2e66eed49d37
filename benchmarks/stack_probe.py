"""Probe (not shipped): does gradient boosting over the pretrained encoder's predicted proxies add to the encoder?

The boosting baseline (``zc_gbm``: every zero-cost proxy of the network plus its op tokens) beats the shipped
encoder at 200 labels on the acceptance split. Its proxies cost about 0.1 CPU-s a cell, too slow for
``predict``; the pretrained encoder predicts the same proxies from the generated weights (held-out Spearman
0.95-0.99) at no extra cost. This script measures, on the evaluation's splits (``evaluate``'s seeded
permutation: 300 test cells, budgets from the rest), each of:

- ``enc``: the encoder fitted from the pretrained file at the budget (what ``predictor_eval`` reports);
- ``gbm_aux0_tok``: ``GradientBoostingRegressor`` over the pretrained encoder's predicted proxies and the op
  tokens; ``gbm_aux_tok``: the same over the fitted members' predicted proxies;
- ``zc_gbm_cached``: the boosting baseline itself, over the proxies of ``--proxies`` (a cache written by
  ``benchmarks/pretrain_nb201.py --cache``: seed 0, so for other split seeds it is an approximation);
- ``blendW_X``: ``(1 - W) * rank(enc) + W * rank(X)``.

    python benchmarks/stack_probe.py --zoo predictors/_shipped/zoos/nb201-cifar10-e3c16.jsonl \
        --pretrained nb201-pretrained-e15.safetensors --proxies nb201-zc-all.npz --seeds 0,1,2 --budgets 50,100,200

Prints one JSON line per (seed, budget).
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np


def _ranks(v: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(v)) / (len(v) - 1)


def main() -> None:
    import torch
    from scipy.stats import spearmanr
    from sklearn.ensemble import GradientBoostingRegressor

    from wsnas.encoding import batch_graphs
    from wsnas.predictors import WeightPredictor
    from wsnas.predictors._training import zoo_training_set
    from wsnas.predictors._zc_gbm import arch_tokens

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--pretrained", required=True)
    ap.add_argument("--proxies", help="the pretraining's proxy cache (.npz with zc, archs, names)")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--budgets", default="50,100,200")
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--weights", default="0.3,0.5")
    args = ap.parse_args()
    torch.set_num_threads(1)

    pre = WeightPredictor.load(args.pretrained)
    space, archs, y, _ = zoo_training_set([args.zoo], None, "val_acc")
    zc_rows: dict[str, np.ndarray] = {}
    if args.proxies:
        cache = np.load(args.proxies, allow_pickle=False)
        zc_rows = {space.from_string(str(s)).hash: row for s, row in zip(cache["archs"], cache["zc"])}

    def aux(model: WeightPredictor, chosen: list) -> np.ndarray:  # [n, A], the members' mean
        graphs = model._single_graphs(chosen)
        out = []
        with torch.inference_mode():
            for m in model.members:
                m.eval()
                out.append(np.concatenate([m.auxiliary(batch_graphs(graphs[i : i + 64])).double().numpy()
                                           for i in range(0, len(graphs), 64)]))  # fmt: skip
        return np.mean(out, axis=0)

    def tokens(chosen: list, vocab: dict[str, int]) -> np.ndarray:
        x = np.zeros((len(chosen), len(vocab)))
        for r, a in enumerate(chosen):
            for t in arch_tokens(a):
                if t in vocab:
                    x[r, vocab[t]] = 1.0
        return x

    weights = [float(w) for w in args.weights.split(",")]
    for seed in (int(s) for s in args.seeds.split(",")):
        perm = np.random.default_rng(seed).permutation(len(archs))
        test_idx, pool = np.sort(perm[: args.n_test]), perm[args.n_test :]
        test, y_te = [archs[i] for i in test_idx], y[test_idx]
        a0_te = aux(pre, test)
        for b in args.budgets.split(","):
            idx = pool if b == "all" else pool[: int(b)]
            train, y_tr = [archs[i] for i in idx], y[idx]
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = copy.deepcopy(pre).fit(train, y_tr, progress=False, target_name="val_acc")
            enc = model.predict(test).score
            vocab = {t: i for i, t in enumerate(sorted({t for a in train for t in arch_tokens(a)}))}
            tok_tr, tok_te = tokens(train, vocab), tokens(test, vocab)
            features = {
                "gbm_aux0_tok": (np.hstack([aux(pre, train), tok_tr]), np.hstack([a0_te, tok_te])),
                "gbm_aux_tok": (np.hstack([aux(model, train), tok_tr]), np.hstack([aux(model, test), tok_te])),
            }
            if zc_rows:
                def zc(chosen: list) -> np.ndarray:
                    return np.nan_to_num(np.stack([zc_rows[a.hash] for a in chosen]), neginf=-1e30, posinf=1e30)

                features["zc_gbm_cached"] = (np.hstack([zc(train), tok_tr]), np.hstack([zc(test), tok_te]))
            row: dict[str, object] = {"seed": seed, "budget": b, "enc": spearmanr(enc, y_te)[0]}
            for name, (f_tr, f_te) in features.items():
                g = GradientBoostingRegressor(random_state=seed).fit(f_tr, y_tr).predict(f_te)
                row[name] = spearmanr(g, y_te)[0]
                for w in weights:
                    row[f"blend{w}_{name}"] = spearmanr((1 - w) * _ranks(enc) + w * _ranks(g), y_te)[0]
            row["seconds"] = time.perf_counter() - t0
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
