"""The seed recipe written by hand in plain Keras, as a user of the talk would write it.

Subclassed models, `model.fit` defaults, the teacher's `predict` on the whole
training set, and a Distiller with its own `train_step`. Teacher
784-512-256-128-64-10, student 784-512-256-10, Adam, batch 32, 5 epochs each,
T = 5, alpha = 0.5 (the weight of the hard labels, as in configs/mnist.yaml).

Prints one JSON line: wall seconds of the work and test accuracies.
Reads MNIST from $DISTILL_DATA_DIR/mnist (the four IDX .gz files).
"""

import gzip
import json
import os
import sys
import time

import numpy as np

started = time.perf_counter()
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

TEMPERATURE, ALPHA, EPOCHS, BATCH = 5.0, 0.5, 5, 32


def read_idx(path):
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(data[3])]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


folder = os.path.join(os.environ["DISTILL_DATA_DIR"], "mnist")
x_train = read_idx(f"{folder}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255
y_train = read_idx(f"{folder}/train-labels-idx1-ubyte.gz").astype("int32")
x_test = read_idx(f"{folder}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255
y_test = read_idx(f"{folder}/t10k-labels-idx1-ubyte.gz").astype("int32")
keras.utils.set_random_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 42)


class Teacher(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = [keras.layers.Dense(n, activation="relu") for n in (512, 256, 128, 64)]
        self.out = keras.layers.Dense(10)

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


class Student(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = [keras.layers.Dense(n, activation="relu") for n in (512, 256)]
        self.out = keras.layers.Dense(10)

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


class Distiller(keras.Model):
    def __init__(self, student):
        super().__init__()
        self.student = student
        self.ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.kl = keras.losses.KLDivergence()

    def call(self, x):
        return self.student(x)

    def train_step(self, data):
        x, (y, teacher_logits) = data
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            hard = self.ce(y, logits)
            soft = self.kl(tf.nn.softmax(teacher_logits / TEMPERATURE),
                           tf.nn.softmax(logits / TEMPERATURE)) * TEMPERATURE ** 2
            loss = ALPHA * hard + (1 - ALPHA) * soft
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
        return {"loss": loss, "hard": hard, "soft": soft}


def accuracy(model):
    return float((np.argmax(model.predict(x_test), axis=1) == y_test).mean())


teacher = Teacher()
teacher.compile(optimizer=keras.optimizers.Adam(),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
teacher.fit(x_train, y_train, batch_size=BATCH, epochs=EPOCHS)
teacher_logits = teacher.predict(x_train)

student = Student()
distiller = Distiller(student)
distiller.compile(optimizer=keras.optimizers.Adam())
distiller.fit(x_train, (y_train, teacher_logits), batch_size=BATCH, epochs=EPOCHS)

result = {"wall_seconds": time.perf_counter() - started,
          "teacher_accuracy": accuracy(teacher), "student_accuracy": accuracy(student)}
print(json.dumps(result))
