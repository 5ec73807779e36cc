"""Compare the distillation methods on Fashion-MNIST: a Markdown table of results.

    python bench/results_fashion.py [--seeds 42 43 44] [--epochs 5]

Runs `distill run configs/fashion_mnist_methods.yaml` once per seed, each in its
own process, with every stage's epochs set to --epochs on the full dataset: the
CNN teacher, the MLP student distilled by each method (kd, dist, dkd,
logit_std, kd + dist) and the same student from scratch. Prints a Markdown table
of test accuracy (mean +- sample standard deviation over the seeds) and wall
seconds per stage (teacher logits included), and writes it, with the raw
numbers as JSON, to bench/results/ (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "fashion_mnist_methods.yaml"
RESULTS = REPO / "bench" / "results"


def describe(stage: dict) -> str:
    """What a stage trains on, in a few words."""
    if stage["type"] == "train":
        return "labels only"
    loss = stage["loss"]
    if "terms" in loss:
        parts = [f"{loss.get('hard_label_weight', 1.0):g} CE"]
        parts += [f"{term.get('weight', 1.0):g} {term['method']}" for term in loss["terms"]]
        return " + ".join(parts)
    alpha = loss.get("alpha", 0.1)
    return f"{alpha:g} CE + {1 - alpha:g} {loss['method']}"


def run_seed(config: dict, seed: int, work: pathlib.Path) -> dict:
    """Run the experiment with `seed` in a fresh process; return its summary."""
    config = {**config, "experiment": {**config["experiment"], "seed": seed}}
    path = work / f"seed_{seed}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "distill", "run", str(path), "--logs-dir", str(work / "logs")]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stdout[-3000:]}"
                         f"{completed.stderr[-3000:]}")
    run_dir = completed.stdout.strip().splitlines()[-1]
    return json.loads(pathlib.Path(run_dir, "summary.json").read_text())


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def table(config: dict, summaries: list[dict], seeds: list[int], epochs: int) -> str:
    """The Markdown table, one row per stage, with a header saying how it was measured."""
    scratch = [s["stages"]["scratch"]["test_accuracy"] for s in summaries]
    lines = [
        f"Fashion-MNIST, `configs/fashion_mnist_methods.yaml`, {epochs} epochs per stage, "
        f"seeds {', '.join(map(str, seeds))}; test accuracy on the 10,000 test images "
        "(mean +- sample std over seeds); wall seconds per stage, teacher logits included.",
        "",
        "| stage | trained on | test accuracy | vs scratch | wall s / stage |",
        "|---|---|---|---|---|",
    ]
    for stage in config["stages"]:
        name = stage["name"]
        accuracy = [s["stages"][name]["test_accuracy"] for s in summaries]
        seconds = [s["stages"][name]["wall_seconds"] for s in summaries]
        acc_mean, acc_std = mean_std(accuracy)
        sec_mean, sec_std = mean_std(seconds)
        gain = "" if stage["model"] != "student" or name == "scratch" else (
            f"{100 * statistics.mean(a - b for a, b in zip(accuracy, scratch)):+.2f} pts")
        lines.append(f"| {name} | {describe(stage)} "
                     f"| {100 * acc_mean:.2f} +- {100 * acc_std:.2f} % "
                     f"| {gain} | {sec_mean:.1f} +- {sec_std:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every stage")
    parser.add_argument("--limit-train", type=int, default=None,
                        help="use this many training images (a quick check of the script)")
    args = parser.parse_args()

    config = yaml.safe_load(CONFIG.read_text())
    for stage in config["stages"]:
        stage["epochs"] = args.epochs
    if args.limit_train:
        config["data"]["limit"] = {"train": args.limit_train, "test": None}
        config["data"]["validation_split"] = 0.1
    started = datetime.datetime.now().astimezone()
    summaries = []
    with tempfile.TemporaryDirectory(prefix="distill-results-") as work:
        for seed in args.seeds:
            summary = run_seed(config, seed, pathlib.Path(work))
            summaries.append(summary)
            print(f"seed {seed}: " + ", ".join(
                f"{name} {entry['test_accuracy']:.4f} ({entry['wall_seconds']:.0f}s)"
                for name, entry in summary["stages"].items()), file=sys.stderr, flush=True)

    versions = summaries[0]["versions"]
    text = (f"{table(config, summaries, args.seeds, args.epochs)}\n\n"
            f"Measured {started:%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} CPU cores; "
            f"distill {versions['distill']}, TensorFlow {versions['tensorflow']}, "
            f"Keras {versions['keras']}.\n")
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"fashion_methods-{started:%Y%m%d-%H%M%S}"
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps(
        {"seeds": args.seeds, "epochs": args.epochs, "limit_train": args.limit_train,
         "summaries": summaries}, indent=2))
    print(f"written to {stem}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
