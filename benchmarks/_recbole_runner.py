"""Train and test RecBole 1.2.1's SASRec; the RecBole side of the SASRec peer benchmark.

Run it with the RecBole venv's python (``benchmarks/_recbole_env.py``), not trustrec's::

    python _recbole_runner.py --data-dir DIR --dataset NAME --epochs E --seed S \
        --out result.json [--threads N] [--split-out split.tsv]

``DIR/NAME/NAME.inter`` is a RecBole atomic file. The split is RecBole's leave-one-out by time
(per user: last interaction -> test, second last -> valid), full ranking over all items, no
filtering. Validation runs once, after the last epoch (``eval_step = epochs``), so the
per-epoch times are pure training. The JSON written to ``--out`` (and printed) holds the
per-epoch and total training wall time, the test evaluation wall time, test NDCG@10, HR@10
(RecBole: hit@10) and MRR@10, the number of training examples RecBole's prefix augmentation
built, and a fingerprint of the split; ``--split-out`` writes the split itself
(``user, valid item, test item`` as the file's tokens) for a side-by-side check;
``split_sha256`` is the sha256 of those rows, without the header, sorted by user token as a
string, each ``user\\tvalid\\ttest\\n``.

How RecBole 1.2.1 orders the data (to rebuild its split exactly elsewhere): timestamps are
read as float64, min-max normalised when ``normalize_all`` is on (it is for the name
"ml-100k", from RecBole's ml-100k.yaml; off for other names), then stored as float32, which
merges nearby timestamps into ties. Rows are stably sorted by user, then by that float32 key,
ties keeping file order; each user's last row is the test target, the second last the
valid target, and every earlier row from the second on is a training target whose history
is the at most 50 rows before it. The full-ranking evaluation of sequential models does not
mask items the user has already seen; only the padding id is excluded.

Checkpoints: RecBole saves the best model to ``checkpoint_dir`` and by default reloads it with
``torch.load`` before testing, which fails on torch >= 2.6 (``weights_only=True`` by default,
and the checkpoint pickles RecBole's config). Here the test runs with
``load_best_model=False`` on the model in memory. That is the same model: with a single
validation, the only checkpoint written is the final one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, type=Path, help="folder holding NAME/NAME.inter")
    p.add_argument("--dataset", required=True, help="dataset name, e.g. ml-100k")
    p.add_argument("--epochs", required=True, type=int)
    p.add_argument("--seed", required=True, type=int)
    p.add_argument("--out", required=True, type=Path, help="result JSON")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    p.add_argument("--split-out", type=Path, default=None, help="TSV: user, valid item, test item")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def recbole_config(args: argparse.Namespace, checkpoint_dir: str) -> dict:
    return {
        # model: RecBole's SASRec defaults, spelled out so the benchmark does not drift
        "loss_type": "CE",
        "MAX_ITEM_LIST_LENGTH": 50,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_size": 64,
        "inner_size": 256,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "initializer_range": 0.02,
        # training
        "learning_rate": 0.001,
        "train_batch_size": 2048,
        "train_neg_sample_args": None,  # CE over all items, no sampled negatives
        "epochs": args.epochs,
        "eval_step": args.epochs,  # validate once, after the last epoch
        "stopping_step": 10**9,  # never stop early
        # data: timestamps are needed for ordering; nothing is filtered out
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "val_interval": None,
        "user_inter_num_interval": None,
        "item_inter_num_interval": None,
        "rm_dup_inter": None,
        # evaluation
        "eval_args": {
            "split": {"LS": "valid_and_test"},
            "order": "TO",
            "group_by": "user",
            "mode": "full",
        },
        "metrics": ["NDCG", "Hit", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "metric_decimal_place": 8,  # RecBole rounds metrics to 4 places by default
        # environment
        "use_gpu": False,
        "gpu_id": "",  # empty -> RecBole picks torch.device("cpu")
        "reproducibility": True,
        "seed": args.seed,
        "checkpoint_dir": checkpoint_dir,
        "show_progress": False,
        "state": "INFO",
    }


def split_table(dataset, valid_ds, test_ds) -> list[tuple[str, str, str]]:
    """(user, valid item, test item) as the atomic file's tokens, sorted by user token."""
    uid, iid = dataset.uid_field, dataset.iid_field

    def targets(ds) -> dict[str, str]:
        users = dataset.id2token(uid, ds.inter_feat[uid].numpy())
        items = dataset.id2token(iid, ds.inter_feat[iid].numpy())
        return dict(zip(users.tolist(), items.tolist()))

    valid, test = targets(valid_ds), targets(test_ds)
    return [(u, valid.get(u, ""), test[u]) for u in sorted(test)]


def _timed(fn, sink: list[float]):
    """Wrap ``fn`` so that each call's wall time is appended to ``sink``."""

    def wrapper(*a, **kw):
        start = time.perf_counter()
        result = fn(*a, **kw)
        sink.append(time.perf_counter() - start)
        return result

    return wrapper


def train_and_test(args: argparse.Namespace, data_path: Path, work: str) -> tuple[dict, str]:
    """Run RecBole in ``work`` (the current directory); return the result and the split TSV."""
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    if args.threads:
        torch.set_num_threads(args.threads)

    # RecBole's Config also parses sys.argv (`--key=value` overrides everything else), so
    # keep this script's own options away from it.
    sys.argv = sys.argv[:1]
    config = Config(
        model="SASRec",
        dataset=args.dataset,
        config_dict=recbole_config(args, os.path.join(work, "saved")),
    )
    # For the name "ml-100k" RecBole always reads the copy bundled in its wheel, whatever
    # data_path says; point it at the requested folder instead.
    config["data_path"] = str(data_path)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t0 = time.perf_counter()
    dataset = create_dataset(config)
    n_interactions = dataset.inter_num  # before build(), which replaces rows by prefixes
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_prep_s = time.perf_counter() - t0

    # Re-seed before building the model, as RecBole's own quick_start does.
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    # Per-epoch training time and validation time, from the trainer's own methods.
    epoch_s: list[float] = []
    valid_s: list[float] = []
    trainer._train_epoch = _timed(trainer._train_epoch, epoch_s)
    trainer._valid_epoch = _timed(trainer._valid_epoch, valid_s)

    t0 = time.perf_counter()
    _, valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    test_eval_s = time.perf_counter() - t0

    split = split_table(dataset, valid_data._dataset, test_data._dataset)
    split_text = "".join("\t".join(row) + "\n" for row in split)
    result = {
        "framework": "recbole",
        "recbole_version": recbole.__version__,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "model": "SASRec",
        "dataset": args.dataset,
        "data_path": os.path.relpath(data_path),  # relative: results carry no machine paths
        "seed": args.seed,
        "epochs": args.epochs,
        "threads": torch.get_num_threads(),
        "device": str(config["device"]),
        "n_users": dataset.user_num - 1,  # id 0 is RecBole's [PAD]
        "n_items": dataset.item_num - 1,
        "n_interactions": n_interactions,
        "n_train_examples": len(train_data._dataset),
        "n_valid_examples": len(valid_data._dataset),
        "n_test_examples": len(test_data._dataset),
        "data_prep_s": data_prep_s,
        "epoch_train_s": epoch_s,
        "train_total_s": sum(epoch_s),
        "fit_wall_s": fit_s,  # training + the one validation + checkpoint save
        "valid_eval_s": valid_s,
        "test_eval_s": test_eval_s,
        "test": {
            "ndcg@10": float(test_result["ndcg@10"]),
            "hr@10": float(test_result["hit@10"]),
            "mrr@10": float(test_result["mrr@10"]),
        },
        "valid": {k: float(v) for k, v in (valid_result or {}).items()},
        "checkpoint_reload": "skipped: test uses the in-memory final model (load_best_model=False)",
        "normalize_all": bool(config["normalize_all"]),
        "split_sha256": hashlib.sha256(split_text.encode()).hexdigest(),
    }
    return result, split_text


def main(argv=None) -> dict:
    args = parse_args(argv)
    data_path = args.data_dir.resolve() / args.dataset
    out = args.out.resolve()
    split_out = args.split_out.resolve() if args.split_out else None

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="recbole-run-") as work:
        # RecBole writes ./log/ and ./log_tensorboard/ relative to the working directory.
        os.chdir(work)
        try:
            result, split_text = train_and_test(args, data_path, work)
        finally:
            os.chdir(cwd)

    if split_out:
        split_out.parent.mkdir(parents=True, exist_ok=True)
        split_out.write_text("user\tvalid_item\ttest_item\n" + split_text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
