"""What the three GFLA networks share: the input keys and the channel schedule."""

from __future__ import annotations

INPUT_KEYS = ("source_image", "source_pose", "target_pose")


def check_input_dict(inputs, who: str) -> None:
    """Raises a clear error unless ``inputs`` is a dict with the three GFLA inputs.

    Args:
      inputs: what the model was called with.
      who: the model's name, for the message.

    Raises:
      TypeError: ``inputs`` is not a dict.
      ValueError: a key of :data:`INPUT_KEYS` is missing.
    """
    if not isinstance(inputs, dict):
        raise TypeError(f"{who} expects a dict with keys {INPUT_KEYS}, got {type(inputs).__name__}")
    missing = [k for k in INPUT_KEYS if k not in inputs]
    if missing:
        raise ValueError(f"{who}: input dict is missing {missing}; expected keys {INPUT_KEYS}")


def channel_schedule(ngf: int, layers: int, max_channels: int) -> list[int]:
    """Channels of encoder block ``i``: ``ngf * 2**i`` capped at ``max_channels``.

    Written as the reference writes it, ``ngf * min(2**i, max_channels // ngf)``, which is
    ``min(ngf * 2**i, max_channels)`` whenever ``max_channels`` is a multiple of ``ngf``
    (and never drops below ``ngf`` when it is smaller).

    Args:
      ngf: channels of the first block.
      layers: number of blocks.
      max_channels: the cap.

    Returns:
      One channel count per block.
    """
    cap = max(int(max_channels) // int(ngf), 1)
    return [int(ngf) * min(2**i, cap) for i in range(int(layers))]
