"""Reads tensors, or only the slices a rank owns, from a Hugging Face safetensors checkpoint.

Slices go through safetensors' ``get_slice``, so a rank never materialises the rows of other ranks.
``bytes_read`` and ``reads`` record every read so tests can prove exactly that.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open

INDEX_FILE = "model.safetensors.index.json"

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

Ranges = Sequence[tuple[int, int]]


class CheckpointReader:
    """Tensors of the ``*.safetensors`` files of one model folder, sharded (with an index) or not."""

    def __init__(self, model_dir: str | Path):
        self.model_dir = Path(model_dir)
        self._file_of = _locate_tensors(self.model_dir)
        self._handles: dict[Path, safe_open] = {}
        self.bytes_read = 0
        self.reads: list[tuple[str, int, list[tuple[int, int]] | None]] = []

    def names(self) -> list[str]:
        return sorted(self._file_of)

    def has(self, name: str) -> bool:
        return name in self._file_of

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._slice(name).get_shape())

    def dtype(self, name: str) -> torch.dtype:
        stored = self._slice(name).get_dtype()
        if stored not in _DTYPES:
            raise TypeError(f"tensor '{name}' in {self._file_of[name]} has unsupported dtype {stored}")
        return _DTYPES[stored]

    def read(
        self,
        name: str,
        dim: int = 0,
        ranges: Ranges | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The whole tensor, or the half-open ``ranges`` along ``dim`` concatenated in the given order."""
        return self.read_box(name, None if ranges is None else {dim: ranges}, dtype=dtype, device=device)

    def read_box(
        self,
        name: str,
        boxes: dict[int, Ranges] | None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Ranges on several dims at once (e.g. a rank's experts x its slice of their rows): every
        combination of ranges is read with ``get_slice`` and the pieces are concatenated per dim."""
        if not boxes:
            tensor = self._handle(name).get_tensor(name)
            self.reads.append((name, 0, None))
            self.bytes_read += tensor.nbytes
        else:
            tensor = self._read_box(name, boxes)
        return tensor.to(dtype=dtype, device=device)

    def _read_box(self, name: str, boxes: dict[int, Ranges]) -> torch.Tensor:
        tensor_slice = self._slice(name)
        shape = tensor_slice.get_shape()
        normalized: dict[int, list[tuple[int, int]]] = {}
        for dim, ranges in boxes.items():
            if not -len(shape) <= dim < len(shape):
                raise ValueError(f"tensor '{name}' has {len(shape)} dims, cannot slice dim {dim}")
            dim %= len(shape)
            ranges = [(int(a), int(b)) for a, b in ranges]
            if not ranges:
                raise ValueError(f"tensor '{name}': ranges must be None (whole tensor) or non-empty")
            for start, stop in ranges:
                if not 0 <= start <= stop <= shape[dim]:
                    raise ValueError(f"tensor '{name}' {list(shape)}: range ({start}, {stop}) outside dim {dim}")
            normalized[dim] = ranges
        dims = sorted(normalized)

        def assemble(level: int, index: tuple) -> torch.Tensor:
            if level == len(dims):
                part = tensor_slice[index]
                self.bytes_read += part.nbytes
                return part
            dim = dims[level]
            gap = (slice(None),) * (dim - len(index))
            parts = [assemble(level + 1, index + gap + (slice(a, b),)) for a, b in normalized[dim]]
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)

        tensor = assemble(0, ())
        for dim in dims:
            self.reads.append((name, dim, normalized[dim]))
        return tensor

    def _slice(self, name: str):
        return self._handle(name).get_slice(name)

    def _handle(self, name: str) -> safe_open:
        path = self._file_of.get(name)
        if path is None:
            raise KeyError(f"tensor '{name}' is not in the checkpoint at {self.model_dir}")
        if path not in self._handles:
            self._handles[path] = safe_open(str(path), framework="pt")
        return self._handles[path]


def _locate_tensors(model_dir: Path) -> dict[str, Path]:
    """Map each tensor name to the file holding it: from the index when there is one, else by listing."""
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such model folder")
    index = model_dir / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = {model_dir / file for file in weight_map.values()}
        missing = sorted(str(f) for f in files if not f.is_file())
        if missing:
            raise FileNotFoundError(f"{index} names shard files that are missing: {missing}")
        return {name: model_dir / file for name, file in weight_map.items()}
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors file found")
    file_of: dict[str, Path] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                if name in file_of:
                    raise ValueError(f"tensor '{name}' is in both {file_of[name]} and {path}")
                file_of[name] = path
    return file_of
