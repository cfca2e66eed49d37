"""The predictor evaluation: the weight encoder against its baselines on a held-out split of zoo files.

    python benchmarks/predictor_eval.py --zoo benchmarks/results/fidelity/ref_e10_r32_c8_9k.jsonl \\
        [--zoo ...] [--budgets 50,100,200,all] [--seed 0] [--methods all] [--data-dir CIFAR_DIR] \\
        [--size C=2 --size N=1] [--save-predictor nb201.safetensors] [--pretrained nb201-pretrained.safetensors]

With --pretrained (a file of benchmarks/pretrain_nb201.py) the encoder rows fit copies of that pretrained
predictor (its width, ensemble and seed) instead of training from scratch.

Prints the markdown table, then one JSON line per row (method, budget, n_train, n_test, spearman,
kendall, top5_precision, seconds) and a last JSON line with the settings and the split. Every random
choice (split, training subsets, models, generated weights, the zero-cost batch) follows --seed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", action="append", required=True, help="zoo file (repeatable)")
    parser.add_argument("--budgets", default="50,100,200,all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="all", help="comma-separated methods, 'zero_cost' or 'all'")
    parser.add_argument("--target", default="val_acc")
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--aggregators", default=None, help="encoder aggregators, e.g. sum,mean")
    parser.add_argument("--size", action="append", default=[], metavar="KEY=VALUE", help="encoding width, e.g. C=2")
    parser.add_argument("--baseline-size", action="append", default=[], metavar="KEY=VALUE",
                        help="width of the networks the zero-cost proxies and weight statistics see")  # fmt: skip
    parser.add_argument("--save-predictor", default=None, help="write the encoder fitted at the largest budget")
    parser.add_argument("--pretrained", default=None, help="pretrained predictor file the encoder rows start from")
    parser.add_argument("--data-dir", default=None, help="dataset folder of the zoo's task (cifar10)")
    parser.add_argument("--device", default=None, help="where the encoders run (default: CUDA if any)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from wsnas.cli._common import CliError, parse_size
    from wsnas.cli._predictor import encoder_config, parse_budgets, parse_methods
    from wsnas.predictors import load
    from wsnas.predictors._evaluate import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        budgets, methods = parse_budgets(args.budgets), parse_methods(args.methods)
        encoder = encoder_config(args.hidden, args.layers, args.aggregators)
        size, baseline_size = parse_size(args.size) or None, parse_size(args.baseline_size) or None
    except CliError as exc:
        parser.error(exc.format_message())
    t0 = time.perf_counter()
    table = evaluate(
        args.zoo,
        target=args.target,
        label_budgets=budgets,
        test_fraction=args.test_fraction,
        seed=args.seed,
        methods=methods,
        encoder=encoder,
        size=size,
        baseline_size=baseline_size,
        save_predictor=args.save_predictor,
        ensemble=args.ensemble,
        fit_options={"epochs": args.epochs},
        data_dir=args.data_dir,
        device=args.device,
        pretrained=load(args.pretrained) if args.pretrained else None,
    )
    print(table.to_markdown())
    for row in table.rows:
        print(json.dumps(row, sort_keys=True))
    tail = {"meta": table.meta, "splits": table.splits, "wall_seconds": time.perf_counter() - t0}
    print(json.dumps(tail, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
