"""`distill reproduce`, `distill runs` and `distill compare` through click's CliRunner."""

from __future__ import annotations

import json
import pathlib

from click.testing import CliRunner

from distill.cli import cli
from distill.runs.folder import MetricsWriter
from distill.runs.records import compare_runs


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fake_run(root: pathlib.Path, experiment: str, stamp: str, status: str,
             stages: dict[str, tuple[float | None, list[float]]]) -> pathlib.Path:
    """A run folder as `distill run` leaves it: summary.json, config.yaml, metrics per stage."""
    run_dir = root / experiment / stamp
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("# not read by these commands\n")
    entries = {}
    for name, (accuracy, losses) in stages.items():
        (run_dir / name).mkdir()
        writer = MetricsWriter(str(run_dir / name / "metrics.csv"))
        for epoch, loss in enumerate(losses, 1):
            writer.append({"epoch": epoch, "loss": loss, "val_accuracy": 0.5 + epoch / 100,
                           "learning_rate": 0.001, "seconds": 1.5})
        entries[name] = {"type": "train", "model": name, "status": "pending", "epochs": 3,
                         "epochs_completed": len(losses), "params": 1234}
        if accuracy is not None:
            entries[name].update(status="completed", test_accuracy=accuracy, test_loss=0.25,
                                 wall_seconds=4.5)
    day, time = stamp.split("-")
    started = f"{day[:4]}-{day[4:6]}-{day[6:]}T{time[:2]}:{time[2:4]}:{time[4:]}+00:00"
    (run_dir / "summary.json").write_text(json.dumps({
        "experiment": experiment, "status": status, "started_at": started, "stages": entries,
        "versions": {"tensorflow": "2.21.0"}}))
    return run_dir


def test_runs_lists_every_run_oldest_first(tmp_path):
    fake_run(tmp_path, "mnist_kd", "20260102-090000", "interrupted",
             {"teacher": (0.981, [0.3, 0.1, 0.05]), "student": (None, [0.4])})
    fake_run(tmp_path, "mnist_kd", "20260101-120000", "completed",
             {"teacher": (0.979, [0.3, 0.1, 0.06]), "student": (0.9812, [0.4, 0.2, 0.1])})
    fake_run(tmp_path, "other", "20260103-080000", "running", {"teacher": (None, [0.5])})
    (tmp_path / "other" / "notes").mkdir()
    result = invoke("runs", str(tmp_path))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["run", "experiment", "started", "status", "test", "accuracy"]
    assert lines[1].split() == ["mnist_kd/20260101-120000", "mnist_kd", "2026-01-01", "12:00:00",
                                "completed", "teacher", "0.9790", "student", "0.9812"]
    assert lines[2].split()[4:] == ["interrupted", "teacher", "0.9810", "student", "-"]
    assert lines[3].split()[4] == "killed"  # says running, but no process holds it
    assert len({line.index("started") if i == 0 else line.index("2026-0") for i, line in
                enumerate(lines)}) == 1  # aligned columns
    assert len(invoke("runs", str(tmp_path / "mnist_kd")).output.splitlines()) == 1 + 2
    assert invoke("runs", str(tmp_path / "empty_or_missing")).exit_code == 2


def test_compare_prints_each_stage_final_metrics(tmp_path):
    a = fake_run(tmp_path, "x", "20260101-120000", "completed",
                 {"teacher": (0.97, [0.3, 0.1]), "student": (0.96, [0.4, 0.2, 0.15])})
    b = fake_run(tmp_path, "x", "20260101-130000", "interrupted",
                 {"teacher": (0.98, [0.3, 0.09]), "student": (None, [0.4])})
    result = invoke("compare", str(a), str(b))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["run", "stage", "status", "epochs"]
    assert "test_accuracy" in lines[0]
    assert lines[2].split()[1:5] == ["student", "completed", "3/3", "0.1500"]
    assert lines[4].split()[1:5] == ["student", "pending", "1/3", "0.4000"]
    assert "0.9600" in lines[2] and lines[4].count("-") >= 3
    missing = invoke("compare", str(a), str(tmp_path / "nope"))
    assert missing.exit_code == 2 and "no such run folder" in missing.output


def test_compare_runs_counts_every_epoch_and_a_tolerance_loosens_it(tmp_path):
    a = fake_run(tmp_path, "x", "20260101-120000", "completed", {"s": (0.9, [0.3, 0.2])})
    b = fake_run(tmp_path, "x", "20260101-130000", "completed", {"s": (0.9, [0.3, 0.2000001])})
    exact = compare_runs(str(a), str(b))
    assert not exact.agree
    assert [(v.epoch, v.metric) for v in exact.disagreements] == [(2, "loss")]
    assert len(exact.values) == 2 * 3 + 3  # loss, val_accuracy, learning_rate per epoch; test
    assert compare_runs(str(a), str(b), tolerance=1e-6).agree
    assert exact.environment == {}


def test_reproduce_reruns_the_saved_config_and_says_whether_the_numbers_agree(
        tiny_config_text, write_config, tmp_path):
    # Without XLA: four short runs compile faster, and reproduce the same either way.
    text = tiny_config_text.replace("epochs: 2", "epochs: 1").replace(
        "runtime:\n", "runtime:\n  jit_compile: false\n")
    first = invoke("run", str(write_config(text)), "--logs-dir", str(tmp_path / "logs"))
    original = first.output.strip().splitlines()[-1]

    same = invoke("reproduce", original)
    assert same.exit_code == 0, same.output
    table = same.output[same.output.index("original  "):]
    assert "stage    epoch  metric" in table
    assert "student  1      kd_loss" in table and "teacher  test   test_accuracy" in table
    assert "agree: all 22 values" in table and "are identical" in table
    assert "environment: the same versions, source commit and machine." in table
    new_runs = sorted((tmp_path / "logs" / "tiny").iterdir())
    assert len(new_runs) == 2  # the reproduction went beside the original

    metrics = pathlib.Path(original, "student", "metrics.csv")
    header, row = metrics.read_text().splitlines()
    loss = row.split(",")[1]
    metrics.write_text(header + "\n" + row.replace(loss, repr(float(loss) + 1e-6), 1) + "\n")
    loose = invoke("reproduce", original, "--tolerance", "1e-3")
    assert loose.exit_code == 0 and "are within 0.001" in loose.output
    strict = invoke("reproduce", original)
    assert strict.exit_code == 1
    assert "differ: 1 of 22 values are not identical; first: student epoch 1 loss" in strict.output

    missing = invoke("reproduce", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "no such run folder" in missing.output
