"""Time the MNIST recipe: hand-written Keras (a) against `distill run` (b).

    DISTILL_DATA_DIR=../shared/data python bench/bench_mnist.py [--repeats N]

(a) is bench/baseline_keras.py, the seed recipe as a user of the talk writes it.
(b) is `distill run configs/mnist.yaml` without its scratch stage (the recipe
itself: teacher, then distilled student). Each runs in its own process, one
after the other, so both pay for starting Python and TensorFlow; the CPU time
and peak RSS of each process are read from the kernel (wait4). Each repeat uses
the next seed for both. Prints both wall times, the ratio (b)/(a) (and the
ratio of CPU seconds, which a noisy shared machine disturbs less), both student
accuracies and (b)'s peak RSS; the summary line gives medians and means.
Targets: ratio <= 0.4 at equal or better student accuracy, peak RSS <= 1.5 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent


def measure(command: list[str], env: dict) -> tuple[float, float, int, str]:
    """Run a command; return its wall seconds, CPU seconds, peak RSS in bytes and stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternate (a) and (b) this often, seeds --seed, --seed + 1, ...")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    env = dict(os.environ)
    if "DISTILL_DATA_DIR" not in env:
        raise SystemExit("set DISTILL_DATA_DIR to the folder holding mnist/")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    work = pathlib.Path(tempfile.mkdtemp(prefix="distill-bench-"))
    rows = []
    for repeat in range(args.repeats):
        seed = args.seed + repeat  # both sides use the same seed; repeats vary it
        config = yaml.safe_load((REPO / "configs" / "mnist.yaml").read_text())
        config["stages"] = [s for s in config["stages"] if s["name"] != "scratch"]
        config["experiment"]["seed"] = seed
        recipe = work / f"mnist_recipe_{seed}.yaml"
        recipe.write_text(yaml.safe_dump(config, sort_keys=False))
        distill = [sys.executable, "-m", "distill", "run", str(recipe),
                   "--logs-dir", str(work / "logs")]
        baseline = [sys.executable, str(REPO / "bench" / "baseline_keras.py"), str(seed)]
        a_wall, a_cpu, a_rss, a_out = measure(baseline, env)
        a = json.loads(a_out.strip().splitlines()[-1])
        b_wall, b_cpu, b_rss, b_out = measure(distill, env)
        run_dir = b_out.strip().splitlines()[-1]
        summary = json.loads(pathlib.Path(run_dir, "summary.json").read_text())
        rows.append({
            "seed": seed, "a_seconds": a_wall, "b_seconds": b_wall, "ratio": b_wall / a_wall,
            "a_cpu_seconds": a_cpu, "b_cpu_seconds": b_cpu, "cpu_ratio": b_cpu / a_cpu,
            "a_student": a["student_accuracy"], "a_teacher": a["teacher_accuracy"],
            "b_student": summary["stages"]["student"]["test_accuracy"],
            "b_teacher": summary["stages"]["teacher"]["test_accuracy"],
            "a_peak_rss_gib": a_rss / 2**30, "b_peak_rss_gib": b_rss / 2**30,
        })
        row = rows[-1]
        print(f"seed {seed}: (a) hand-written Keras {row['a_seconds']:.1f}s "
              f"({row['a_cpu_seconds']:.1f} CPU-s), student {row['a_student']:.4f} "
              f"(teacher {row['a_teacher']:.4f}), peak RSS {row['a_peak_rss_gib']:.2f} GiB")
        print(f"         (b) distill run        {row['b_seconds']:.1f}s "
              f"({row['b_cpu_seconds']:.1f} CPU-s), student {row['b_student']:.4f} "
              f"(teacher {row['b_teacher']:.4f}), peak RSS {row['b_peak_rss_gib']:.2f} GiB")
        print(f"         ratio (b)/(a): wall {row['ratio']:.3f}, CPU {row['cpu_ratio']:.3f}",
              flush=True)
    ratio = statistics.median(r["ratio"] for r in rows)
    cpu_ratio = statistics.median(r["cpu_ratio"] for r in rows)
    peak = max(r["b_peak_rss_gib"] for r in rows)
    student_b = statistics.mean(r["b_student"] for r in rows)
    student_a = statistics.mean(r["a_student"] for r in rows)
    print(f"\nmedian ratio (b)/(a): wall {ratio:.3f} (target <= 0.4), CPU {cpu_ratio:.3f}; "
          f"mean student accuracy (b) {student_b:.4f} vs (a) {student_a:.4f}; "
          f"peak RSS (b) {peak:.2f} GiB (target <= 1.5)")
    print(json.dumps({"ratio": ratio, "cpu_ratio": cpu_ratio, "b_peak_rss_gib": peak,
                      "b_student": student_b, "a_student": student_a, "runs": rows}))


if __name__ == "__main__":
    main()
