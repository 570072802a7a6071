"""Learning-rate schedules for GFLA training."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="gfla")
class LinearDecayTail(keras.optimizers.schedules.LearningRateSchedule):
    """A constant learning rate that decays linearly to zero over the last steps of a run.

    The paper trains at a constant rate; short runs (the CPU quickstart) end sharper when
    the rate is annealed at the end.

    Args:
      learning_rate: the constant rate.
      total_steps: the run's length in optimizer steps (> 0).
      decay_fraction: fraction of ``total_steps``, at the end, over which the rate goes
        linearly to zero; in (0, 1].

    Example:

    ```python
    schedule = LinearDecayTail(5e-4, total_steps=1600, decay_fraction=0.5)
    optimizer = keras.optimizers.Adam(schedule)  # 5e-4 until step 800, then down to 0
    ```

    Raises:
      ValueError: for a non-positive rate or step count, or a fraction outside (0, 1].
    """

    def __init__(self, learning_rate, total_steps, decay_fraction):
        if float(learning_rate) <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
        if int(total_steps) < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps!r}")
        if not 0.0 < float(decay_fraction) <= 1.0:
            raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction!r}")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.decay_fraction = float(decay_fraction)

    def __call__(self, step):
        decay_steps = max(self.total_steps * self.decay_fraction, 1.0)
        start = self.total_steps - decay_steps
        progress = ops.clip((ops.cast(step, "float32") - start) / decay_steps, 0.0, 1.0)
        return self.learning_rate * (1.0 - progress)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "decay_fraction": self.decay_fraction,
        }
