"""Stage checkpoints, epoch alignment, metrics cut back for a resume, learning-rate schedules."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from distill.config import parse_config
from distill.data import load_raw, make_splits
from distill.errors import ConfigError, DeclarationError
from distill.models import build_model
from distill.runs.folder import MetricsWriter, read_metrics
from distill.stages import Distillation, build_optimizer, run_stage
from distill.stages.checkpoint import Checkpoint, CheckpointMismatch, capture, restore


@pytest.fixture(scope="module")
def splits(tiny_data):
    return make_splits(load_raw("mnist", str(tiny_data)), seed=0, validation_split=0.2,
                       scale=True, flatten=True)


DROPOUT_MODEL = {"layers": [{"Dense": {"units": 16, "activation": "relu"}},
                            {"Dropout": {"rate": 0.5}}, {"Dense": {"units": 10}}]}
COSINE = {"name": "cosine_decay", "initial_learning_rate": 0.01, "decay_steps": 60}


def train(splits, epochs, *, resume_from=None, checkpoints=None, spe=4):
    """A train stage of a model with dropout and a schedule; 240 samples, 15 steps an epoch."""
    keras.utils.set_random_seed(7)
    model = build_model("m", DROPOUT_MODEL, splits.input_shape, 10)
    stage = {"name": "m", "type": "train", "model": "m", "epochs": epochs, "batch_size": 16,
             "optimizer": {"name": "adam", "learning_rate": COSINE}}
    runtime = {"steps_per_execution": spe, "jit_compile": True, "eval_batch_size": 1024,
               "cache_teacher_logits": "auto"}
    return run_stage(index=0, stage=stage, model=model, teacher=None, splits=splits,
                     runtime=runtime, seed=7, resume_from=resume_from,
                     on_checkpoint=checkpoints.append if checkpoints is not None else None)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_a_stage_resumed_from_a_checkpoint_trains_exactly_like_one_that_never_stopped(
        splits, tmp_path):
    checkpoints = []
    whole = train(splits, 4, checkpoints=checkpoints)
    assert [c.epoch for c in checkpoints] == [1, 2, 3, 4]
    path = tmp_path / "checkpoint.npz"
    with open(path, "wb") as out:  # through the file, as a resume reads it
        checkpoints[1].write(out)
    rest = train(splits, 4, resume_from=Checkpoint.read(str(path)))
    assert [row["epoch"] for row in rest.history] == [3, 4]
    assert without_seconds(rest.history) == without_seconds(whole.history[2:])
    for a, b in zip(rest.model.get_weights(), whole.model.get_weights()):
        assert np.array_equal(a, b)
    # The schedule went on from where it stopped: the rate fell every epoch.
    rates = [row["learning_rate"] for row in whole.history]
    assert rates == sorted(rates, reverse=True) and len(set(rates)) == 4


def test_checkpoint_keeps_the_dropout_seed_generator_position(splits):
    checkpoints = []
    train(splits, 1, checkpoints=checkpoints)
    keras.utils.set_random_seed(7)
    fresh = build_model("m", DROPOUT_MODEL, splits.input_shape, 10)
    state = [v for v in fresh.variables if "seed_generator" in v.path]
    assert len(state) == 1
    before = np.array(state[0].numpy())
    trainer = Distillation(fresh, name="m_trainer")  # as a resumed stage restores it
    optimizer = build_optimizer({"name": "adam", "learning_rate": COSINE})
    optimizer.build(trainer.trainable_variables)
    restore(checkpoints[0], trainer, optimizer)
    assert not np.array_equal(state[0].numpy(), before)  # 15 steps of dropout masks later
    assert int(optimizer.iterations.numpy()) == 15


def test_a_checkpoint_that_does_not_fit_the_model_is_refused(splits):
    checkpoints = []
    train(splits, 1, checkpoints=checkpoints)
    other = build_model("o", {"layers": [{"Dense": {"units": 10}}]}, splits.input_shape, 10)
    with pytest.raises(CheckpointMismatch, match="model variables"):
        restore(checkpoints[0], other, None)


def test_every_epoch_is_exactly_its_own_batches_whatever_steps_per_execution(splits):
    # 15 steps an epoch: with 4 steps per execution Keras would run 16 without the
    # one-fit-per-epoch loop, eating into the next epoch's batches.
    iterations = []
    original = Distillation.fit

    def fit(self, *args, **kwargs):
        history = original(self, *args, **kwargs)
        iterations.append(int(self.optimizer.iterations.numpy()))
        return history

    Distillation.fit = fit
    try:
        train(splits, 3, spe=4)
    finally:
        Distillation.fit = original
    assert iterations == [15, 30, 45]


def test_checkpoint_file_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    checkpoint = capture(model, optimizer, 3, stage="s", seed=1)
    path = tmp_path / "checkpoint.npz"
    with open(path, "wb") as out:
        checkpoint.write(out)
    back = Checkpoint.read(str(path))
    assert back.epoch == 3 and back.meta["stage"] == "s" and back.meta["seed"] == 1
    assert all(np.array_equal(a, b) for a, b in zip(back.model, checkpoint.model))
    assert len(back.optimizer) == len(optimizer.variables)
    assert np.array_equal(back.meta["numpy_rng"][1], checkpoint.meta["numpy_rng"][1])
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a distill checkpoint"):
        Checkpoint.read(str(tmp_path / "bad.npz"))


def test_metrics_cut_back_to_the_checkpoint_drop_later_and_half_written_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    writer = MetricsWriter(str(path))
    for epoch in (1, 2, 3):
        writer.append({"epoch": epoch, "loss": 1.0 / epoch, "seconds": 0.5})
    with open(path, "a", encoding="utf-8") as out:
        out.write("4,0.2")  # a kill in the middle of a line
    resumed = MetricsWriter(str(path))
    assert [row["epoch"] for row in resumed.resume(2)] == [1, 2]
    resumed.append({"epoch": 3, "loss": 0.3, "seconds": 0.5})
    assert [row["loss"] for row in read_metrics(str(path))] == [1.0, 0.5, 0.3]
    assert MetricsWriter(str(path)).resume(0) == [] and not path.exists()


def test_a_schedule_by_name_with_located_errors_and_suggestions(tiny_config_text):
    text = tiny_config_text.replace(
        "    epochs: 2\n  - name: student",
        "    epochs: 2\n    optimizer: {name: adam, learning_rate: {name: cosine_decy, "
        "initial_learning_rate: 0.01, decay_steps: 10}}\n  - name: student")
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    assert "stages[0].optimizer.learning_rate.name: unknown learning-rate schedule " \
           "'cosine_decy'. Did you mean 'cosine_decay'?" in message
    assert "<config>:" in message
    with pytest.raises(DeclarationError, match="has no argument 'decay_step'. Did you mean "
                                               "'decay_steps'"):
        build_optimizer({"name": "sgd", "learning_rate": {"name": "CosineDecay",
                                                          "initial_learning_rate": 0.1,
                                                          "decay_step": 5}})
    with pytest.raises(DeclarationError, match="missing 1 required positional argument"):
        build_optimizer({"name": "sgd", "learning_rate": {"name": "exponential_decay",
                                                          "initial_learning_rate": 0.1,
                                                          "decay_steps": 5}})
