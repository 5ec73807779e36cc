"""A stage's state after a finished epoch: capture it, store it, put it back.

A `Checkpoint` holds everything that the rest of a stage depends on:

- the values of the trainer's own variables: the student's weights, batch-norm
  statistics and the state of each layer's `SeedGenerator` (which dropout masks
  come next), and the epoch counter. The frozen teachers' weights are left out:
  they never change in the stage, and a resumed run loads them from where they
  came from (an earlier stage's `model.keras`, or a file), so storing them each
  epoch would only rewrite megabytes that are already on disk;
- the optimizer's variables: its moments and its iteration counter, which is
  also the position of a learning-rate schedule;
- the epoch it was taken after, and the global Python and NumPy random states.

The data order needs nothing: each epoch's order is rebuilt from (seed, stage,
epoch). Cached teacher logits need nothing either: the teacher runs in inference
mode, so they are recomputed, bit for bit, from the teacher's saved weights.

On disk a checkpoint is one `.npz` file (see `Checkpoint.write`). One file keeps
the epoch number and the state it belongs to together, so a single rename
replaces both. Keras' `save_weights` is not enough here: it does not keep the
position of a `SeedGenerator`, so a resumed stage would draw its dropout masks
again from the start.
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
from typing import IO

import keras
import numpy as np

FORMAT = 1
_META = "meta"
_NUMPY_KEYS = "numpy_rng_keys"


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the model and optimizer it is restored into."""


@dataclasses.dataclass
class Checkpoint:
    """A stage's state after its epoch `epoch` (1-based).

    Attributes:
        epoch: The last finished epoch.
        model: Values of the trainer's `variables`, in order.
        optimizer: Values of the optimizer's `variables`, in order.
        meta: Everything else, JSON-ready: variable paths, random states, and
            what the caller added (stage name, seed ...).
    """

    epoch: int
    model: list[np.ndarray]
    optimizer: list[np.ndarray]
    meta: dict

    def write(self, out: IO[bytes]) -> None:
        """Write the checkpoint as one `.npz` archive to an open binary file."""
        arrays = {f"model_{i}": value for i, value in enumerate(self.model)}
        arrays.update({f"optimizer_{i}": value for i, value in enumerate(self.optimizer)})
        meta = dict(self.meta, format=FORMAT, epoch=self.epoch, model_variables=len(self.model),
                    optimizer_variables=len(self.optimizer))
        numpy_state = meta.pop("numpy_rng", None)
        if numpy_state is not None:
            arrays[_NUMPY_KEYS] = numpy_state[1]
            meta["numpy_rng"] = [numpy_state[0], int(numpy_state[2]), int(numpy_state[3]),
                                 float(numpy_state[4])]
        arrays[_META] = np.array(json.dumps(meta))
        np.savez(out, **arrays)

    @classmethod
    def read(cls, path: str) -> "Checkpoint":
        """Read a checkpoint file.

        Raises:
            OSError: if the file cannot be read.
            ValueError: if it is not a checkpoint of this format.
        """
        with open(path, "rb") as handle:
            data = handle.read()
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                meta = json.loads(str(archive[_META]))
                if meta.get("format") != FORMAT:
                    raise ValueError(f"checkpoint format {meta.get('format')!r}, expected {FORMAT}")
                model = [archive[f"model_{i}"] for i in range(meta.pop("model_variables"))]
                optimizer = [archive[f"optimizer_{i}"]
                             for i in range(meta.pop("optimizer_variables"))]
                if "numpy_rng" in meta:
                    name, position, has_gauss, cached = meta.pop("numpy_rng")
                    meta["numpy_rng"] = (name, archive[_NUMPY_KEYS], position, has_gauss, cached)
        except (KeyError, ValueError, OSError, EOFError) as error:
            raise ValueError(f"not a distill checkpoint ({error})") from None
        return cls(epoch=int(meta.pop("epoch")), model=model, optimizer=optimizer, meta=meta)


def state_variables(model: keras.Model) -> list:
    """The model's variables without those of its frozen teachers (`Distillation.teachers`)."""
    frozen = {id(variable) for teacher in getattr(model, "teachers", ())
              for variable in teacher.variables}
    return [variable for variable in model.variables if id(variable) not in frozen]


def _values(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(variable)) for variable in variables]


def capture(model: keras.Model, optimizer: keras.optimizers.Optimizer, epoch: int,
            **meta) -> Checkpoint:
    """Take a checkpoint of `model` and `optimizer` after epoch `epoch` (1-based).

    Args:
        model: The trainer (a `Distillation`; its teachers are left out), or any
            model being trained.
        optimizer: Its optimizer.
        epoch: The epoch just finished.
        meta: JSON-ready facts to keep with it (stage name, seed ...).
    """
    version, state, gauss = random.getstate()
    variables = state_variables(model)
    return Checkpoint(
        epoch=epoch, model=_values(variables), optimizer=_values(optimizer.variables),
        meta=dict(meta, model_paths=[v.path for v in variables],
                  optimizer_paths=[v.path for v in optimizer.variables],
                  python_rng=[version, list(state), gauss],
                  numpy_rng=np.random.get_state()))


def _assign(variables, values: list[np.ndarray], paths: list[str], what: str) -> None:
    variables = list(variables)
    if len(variables) != len(values):
        raise CheckpointMismatch(f"the checkpoint holds {len(values)} {what} variables, the "
                                 f"{what} has {len(variables)}")
    for variable, value, path in zip(variables, values, paths):
        if tuple(variable.shape) != value.shape:
            raise CheckpointMismatch(f"{what} variable {path} has shape {value.shape} in the "
                                     f"checkpoint and {tuple(variable.shape)} in the {what}")
    for variable, value in zip(variables, values):
        variable.assign(value)


def restore(checkpoint: Checkpoint, model: keras.Model,
            optimizer: keras.optimizers.Optimizer | None) -> None:
    """Put a checkpoint's state back into a freshly built trainer and built optimizer.

    With `optimizer` None only the model's variables are restored (enough when
    no epoch is left to train).

    Raises:
        CheckpointMismatch: if the variables differ in number or shape.
    """
    meta = checkpoint.meta
    paths = meta.get("model_paths") or [""] * len(checkpoint.model)
    _assign(state_variables(model), checkpoint.model, paths, "model")
    if optimizer is not None:
        paths = meta.get("optimizer_paths") or [""] * len(checkpoint.optimizer)
        _assign(optimizer.variables, checkpoint.optimizer, paths, "optimizer")
    if "python_rng" in meta:
        version, state, gauss = meta["python_rng"]
        random.setstate((version, tuple(state), gauss))
    if "numpy_rng" in meta:
        np.random.set_state(meta["numpy_rng"])
