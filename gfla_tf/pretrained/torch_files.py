"""Reads PyTorch state-dict files (``torch.save``) into numpy arrays without PyTorch.

A user of this TensorFlow project who has torchvision's ``vgg19`` or ``inception_v3``
ImageNet weights has them as ``.pth`` files; reading them must not require installing
PyTorch. Both of ``torch.save``'s formats are read:

* the zip format (PyTorch >= 1.6, ``torch.save`` default): ``<name>/data.pkl`` plus one
  raw little- or big-endian file per storage, ``<name>/data/<key>``;
* the legacy format (``_use_new_zipfile_serialization=False`` and the files torchvision's
  hub has long served): five pickles and the raw storages one after another.

The unpickler is restricted to what a state dict holds (``OrderedDict``, tensors, their
typed storages); anything else (arbitrary code in a pickle) is refused. ``.npz`` files of
the same tensors by their PyTorch names (``np.savez(path, **{k: v.numpy() ...})``) are
read too.
"""

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from gfla_tf.pretrained.errors import WeightsUnavailableError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _Storage:
    def __init__(self, key, storage_type):
        self.key = key
        self.type = storage_type


class _Tensor:
    """A tensor to be built once its storage's bytes are known."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)

    def build(self, arrays):
        flat = arrays[self.storage.key]
        if not self.size:
            return np.array(flat[self.offset])
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


class _Unpickler(pickle.Unpickler):
    """Builds ``_Tensor`` placeholders; refuses every global a state dict does not need."""

    _GLOBALS = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path
        self.storages = {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        raise WeightsUnavailableError(
            f"{self.path}: not a plain state dict (it pickles {module}.{name}); save "
            "model.state_dict() with torch.save, or convert it to .npz"
        )

    def persistent_load(self, saved_id):
        if not isinstance(saved_id, tuple) or saved_id[0] != "storage":
            raise WeightsUnavailableError(f"{self.path}: unsupported persistent id {saved_id!r}")
        storage_type, key = saved_id[1], str(saved_id[2])
        if len(saved_id) > 5 and saved_id[5] is not None:
            raise WeightsUnavailableError(f"{self.path}: storage views are not supported")
        if not isinstance(storage_type, _StorageType):
            raise WeightsUnavailableError(f"{self.path}: untyped storage {storage_type!r}")
        storage = self.storages.setdefault(key, _Storage(key, storage_type))
        return storage


def _to_numpy(raw, storage_type, byteorder):
    if storage_type.dtype == "bfloat16":
        bits = np.frombuffer(raw, np.dtype("<u2" if byteorder == "little" else ">u2"))
        return (bits.astype(np.uint32) << 16).view(np.float32)
    dtype = np.dtype(storage_type.dtype).newbyteorder("<" if byteorder == "little" else ">")
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="), copy=False)


def _resolve(value, arrays, keep=None):
    """Replaces the ``_Tensor`` placeholders by arrays (those ``keep`` rejects are dropped)."""
    if isinstance(value, _Tensor):
        return value.build(arrays) if value.storage.key in arrays else None
    if isinstance(value, dict):
        resolved = {}
        for key, item in value.items():
            if isinstance(item, _Tensor) and keep is not None and not keep(str(key)):
                continue
            resolved[key] = _resolve(item, arrays, keep)
        return resolved
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(item, arrays, keep) for item in value)
    return value


def _needed_storages(result, keep):
    """The storage keys of the tensors ``keep`` accepts (all when ``keep`` is None)."""
    if keep is None or not isinstance(result, dict):
        return None
    state = result
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return {
        value.storage.key
        for key, value in state.items()
        if isinstance(value, _Tensor) and keep(str(key))
    }


def _read_zip(path, keep):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise WeightsUnavailableError(f"{path}: a zip file without data.pkl is not a .pth")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        unpickler = _Unpickler(io.BytesIO(archive.read(pickles[0])), path)
        result = unpickler.load()
        needed = _needed_storages(result, keep)
        arrays = {
            key: _to_numpy(archive.read(f"{prefix}data/{key}"), storage.type, byteorder)
            for key, storage in unpickler.storages.items()
            if needed is None or key in needed
        }
    return _resolve(result, arrays, keep)


def _read_legacy(path, keep):
    with open(path, "rb") as file:
        try:
            magic = pickle.load(file)
        except Exception as error:  # noqa: BLE001 - any unpickling failure: not a .pth
            raise WeightsUnavailableError(f"{path}: not a PyTorch file ({error})") from error
        if magic != _LEGACY_MAGIC:
            raise WeightsUnavailableError(f"{path}: not a PyTorch file (bad magic number)")
        pickle.load(file)  # protocol version
        pickle.load(file)  # system info
        unpickler = _Unpickler(file, path)
        result = unpickler.load()
        keys = pickle.load(file)
        needed = _needed_storages(result, keep)
        arrays = {}
        for key in keys:
            storage = unpickler.storages[str(key)]
            (count,) = struct.unpack("<q", file.read(8))
            if needed is not None and str(key) not in needed:
                file.seek(count * storage.type.itemsize, os.SEEK_CUR)
                continue
            raw = file.read(count * storage.type.itemsize)
            if len(raw) != count * storage.type.itemsize:
                raise WeightsUnavailableError(f"{path}: truncated storage {key}")
            arrays[str(key)] = _to_numpy(raw, storage.type, "little")
    return _resolve(result, arrays, keep)


def _flatten_state(state, path):
    """Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` and checks every value."""
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: expected a state dict, found {type(state)}")
    tensors = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            tensors[str(key)] = value
    if not tensors:
        raise WeightsUnavailableError(f"{path}: the file holds no tensors")
    return tensors


def read_state_dict(path, keep=None):
    """Reads a PyTorch state dict (``.pth``/``.pt``, either format) or an ``.npz`` of one.

    Args:
      path: the file.
      keep: optional predicate on the parameter names; only the tensors it accepts are
        read (VGG19's classifier, 80% of its file, is never loaded).

    Returns:
      dict from the PyTorch parameter names to numpy arrays (PyTorch layout).

    Raises:
      WeightsUnavailableError: the file is missing, is not a state dict, or pickles
        anything but tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"{path} does not exist")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files if keep is None or keep(key)}
    if zipfile.is_zipfile(path):
        state = _read_zip(path, keep)
    else:
        state = _read_legacy(path, keep)
    return _flatten_state(state, path)
