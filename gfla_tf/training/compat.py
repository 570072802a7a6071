"""Compatibility shims that let ``keras.Model.fit`` run under every ``tf.distribute`` strategy.

Keras 3.15's TensorFlow trainer fails under ``MultiWorkerMirroredStrategy`` in two places:

1. ``Trainer._maybe_symbolic_build`` takes the first distributed batch and calls
   ``strategy.reduce("MEAN", batch, axis=None)`` on the whole (dict) structure, which
   ``CollectiveAllReduceStrategy`` cannot reduce ("Attempt to convert a value ({'x':
   PerReplica...}) ... to a Tensor").
2. ``reduce_per_replica`` reduces every step output in multi-worker mode with
   ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar losses a train step
   returns (there is no axis 0).

:class:`DistributedFitMixin` replaces both for models that (a) are fully built before
``fit`` and (b) return step outputs that are already identical on every replica (our
train step all-reduces its logged losses inside the replica context). The outputs are then
taken from the first local replica: no cross-worker collective is needed outside the step,
which is also what TPUStrategy does. The shim only changes behaviour for those models;
``keras.Model`` itself is not patched.

These two are the only private Keras methods gfla-tf overrides, and this is the only module
that does. :data:`OVERRIDES` names each with the Keras signature it was written against and
the Keras call it replaces; :func:`check_keras` (run by the tests) fails loudly when a Keras
release renames, re-signs or stops calling one, instead of the override silently no longer
being used.
"""

import inspect

import tensorflow as tf

# Private Keras method -> (the parameters it has in Keras 3.15, a call Keras makes to it that
# must still be in the source of the given TensorFlowTrainer method).
OVERRIDES = {
    "_maybe_symbolic_build": (
        ("self", "iterator", "data_batch"),
        ("fit", "self._maybe_symbolic_build(iterator=epoch_iterator)"),
    ),
    "_make_function": (
        ("self", "step_function"),
        ("make_train_function", "self._make_function(self.train_step)"),
    ),
}


def check_keras():
    """Raises ``RuntimeError`` unless Keras still defines and calls every override as written.

    Raises:
      RuntimeError: naming the method and what changed.
    """
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    for name, (parameters, (caller, call)) in OVERRIDES.items():
        method = getattr(TensorFlowTrainer, name, None)
        if method is None:
            raise RuntimeError(f"Keras no longer has TensorFlowTrainer.{name}: update compat.py")
        found = tuple(inspect.signature(method).parameters)
        if found != parameters:
            raise RuntimeError(
                f"Keras' TensorFlowTrainer.{name}{found} changed from {parameters}: update "
                "compat.py"
            )
        if call not in inspect.getsource(getattr(TensorFlowTrainer, caller)):
            raise RuntimeError(
                f"Keras' TensorFlowTrainer.{caller} no longer calls {call!r}: update compat.py"
            )


def first_local_value(values, strategy):
    """Maps every distributed value in a structure to its first local component.

    Args:
      values: a nested structure of tensors and/or ``tf.distribute.DistributedValues``.
      strategy: the ``tf.distribute.Strategy`` that produced them.

    Returns:
      The same structure with plain tensors.
    """

    def pick(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(pick, values)


def sync_replicas(values, reduce_op=tf.distribute.ReduceOp.SUM):
    """All-reduces a structure of tensors inside a replica context (no-op outside one).

    Args:
      values: nested structure of tensors, in a replica context.
      reduce_op: how to combine replicas (SUM for losses already scaled by the global
        batch, MEAN for per-replica averages).

    Returns:
      The structure with every tensor replaced by its cross-replica reduction.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    flat = tf.nest.flatten(values)
    reduced = context.all_reduce(reduce_op, flat)
    return tf.nest.pack_sequence_as(values, reduced)


class DistributedFitMixin:
    """Mixin for a ``keras.Model`` subclass whose ``train_step`` outputs are replica-synced.

    Put it before ``keras.Model`` in the bases. The model must be built (variables created)
    before ``fit``/``evaluate``; its optimizers are built here if they are not yet.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # The model is built by its owner; only make sure optimizer slots exist (inside the
        # strategy scope, so they are mirrored like the variables they track).
        del iterator, data_batch
        with self.distribute_strategy.scope():
            self.build_optimizers()

    def build_optimizers(self):
        """Creates optimizer state; subclasses with several optimizers extend this."""
        if self.optimizer is not None and not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)

    def _make_function(self, step_function):
        strategy = self.distribute_strategy

        def one_step_on_data(data):
            outputs = strategy.run(step_function, args=(data,))
            return first_local_value(outputs, strategy)

        if not self.run_eagerly:
            one_step_on_data = tf.function(
                one_step_on_data, reduce_retracing=True, jit_compile=self.jit_compile
            )
        steps = max(1, int(self.steps_per_execution))

        def multi_step_on_iterator(iterator):
            outputs = one_step_on_data(next(iterator))
            for _ in range(steps - 1):
                outputs = one_step_on_data(next(iterator))
            return outputs

        if not self.run_eagerly:
            multi_step_on_iterator = tf.function(multi_step_on_iterator, reduce_retracing=True)

        def function(iterator):
            if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                return multi_step_on_iterator(iterator)
            outputs = None
            for _, data in zip(range(steps), iterator):
                outputs = one_step_on_data(data)
            if outputs is None:
                raise StopIteration
            return outputs

        return function
