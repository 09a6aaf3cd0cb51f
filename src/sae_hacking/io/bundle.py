"""Tensor bundles: one safetensors file plus a JSON manifest beside it, both written atomically.

A bundle ``name`` in ``directory`` is ``name.safetensors`` and ``name.json``. The manifest is
written after the tensors, so a manifest that exists always describes complete tensors. It
records each tensor's shape, dtype and CRC-32 of its bytes, and every load checks them: a
truncated, garbled or bit-flipped file is refused in one line naming it, never read as data.
CRC-32 catches damage (disks, copies, kills), not tampering; it is the fastest check the standard
library has (about 0.8 GB/s on one core here, against 0.1-0.25 GB/s for SHA-256 and BLAKE2).
"""

import json
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write, atomic_write_json

MANIFEST_FORMAT = "sae_hacking.bundle/1"
CHECKSUM = "crc32"
# Bytes hashed per read, so checking a 17 GB file needs no more memory than this.
_READ_BYTES = 1 << 24
_ITEM_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
# The largest header safetensors itself accepts (100 MB).
_MAX_HEADER_BYTES = 100_000_000


def bundle_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """The tensor file and the manifest file of a bundle."""
    return directory / f"{name}.safetensors", directory / f"{name}.json"


def damaged(flag: str, path: Path, detail: str) -> UserInputError:
    """The one-line refusal of a damaged file."""
    return UserInputError(
        flag,
        f"'{path}' is damaged ({detail}); restore it from a copy or redo the run that wrote it",
    )


def tensor_checksum(tensor: Tensor) -> str:
    """CRC-32 of a CPU tensor's bytes as stored (row-major, little-endian), as 8 hex digits."""
    flat = tensor.detach().contiguous().cpu().reshape(-1)
    data = flat.view(torch.uint8).numpy() if flat.numel() else np.zeros(0, np.uint8)
    crc = 0
    for start in range(0, data.shape[0], _READ_BYTES):
        crc = zlib.crc32(data[start : start + _READ_BYTES].tobytes(), crc)
    return f"{crc:08x}"


def describe_tensors(tensors: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    """What a manifest records of each tensor: shape, dtype and checksum."""
    return {
        key: {"shape": list(v.shape), "dtype": str(v.dtype), CHECKSUM: tensor_checksum(v)}
        for key, v in tensors.items()
    }


@contextmanager
def readable(path: Path, flag: str, not_json: str) -> Iterator[None]:
    """Turn a missing, unreadable or undecodable file into a one-line refusal naming it."""
    try:
        yield
    except FileNotFoundError as error:
        raise UserInputError(
            flag, f"'{path}' is missing; the run directory is incomplete"
        ) from error
    except OSError as error:
        raise UserInputError(flag, f"cannot read '{path}': {error.strerror}") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise damaged(flag, path, not_json) from error


def read_header(path: Path, flag: str) -> tuple[dict[str, Any], int]:
    """A safetensors file's JSON header and where its data begins, after checking that the file
    is as long as the header says and every tensor's bytes fit its shape and dtype."""
    with readable(path, flag, "its header is not JSON"):
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise damaged(flag, path, f"{size} bytes, shorter than any safetensors header")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > min(_MAX_HEADER_BYTES, size - 8):
                raise damaged(flag, path, "its header length is garbled or the file is truncated")
            header = json.loads(handle.read(header_len))
    if not isinstance(header, dict):
        raise damaged(flag, path, "its header is not a JSON object")
    data_start = 8 + header_len
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            n_bytes = int(np.prod(entry["shape"], dtype=np.int64)) * _ITEM_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError) as error:
            raise damaged(flag, path, f"tensor '{key}' has a garbled header entry") from error
        if end - begin != n_bytes or begin < 0:
            raise damaged(flag, path, f"tensor '{key}' has offsets that do not fit its shape")
        if data_start + end > size:
            raise damaged(flag, path, f"truncated: {size:,} bytes, tensor '{key}' needs more")
    return header, data_start


def file_checksum(path: Path, header: dict[str, Any], data_start: int, key: str) -> str:
    """CRC-32 of one tensor's bytes as they are in the file, read a slice at a time."""
    begin, end = header[key]["data_offsets"]
    crc = 0
    with open(path, "rb") as handle:
        handle.seek(data_start + begin)
        remaining = end - begin
        while remaining:
            chunk = handle.read(min(_READ_BYTES, remaining))
            if not chunk:
                break
            crc = zlib.crc32(chunk, crc)
            remaining -= len(chunk)
    return f"{crc:08x}"


def verify_file(
    path: Path, described: dict[str, Any], flag: str, keys: list[str] | None = None
) -> dict[str, Any]:
    """Check a tensor file against its manifest's ``tensors`` entry (every key, or ``keys``);
    returns the file's header. A manifest without checksums (older files) is checked for shape only.
    """
    header, data_start = read_header(path, flag)
    if not isinstance(described, dict):
        raise damaged(flag, path, "its manifest lists no tensors")
    for key in keys if keys is not None else list(described):
        entry = described.get(key)
        if key not in header or not isinstance(entry, dict):
            raise damaged(flag, path, f"tensor '{key}' is missing")
        if list(header[key]["shape"]) != list(entry.get("shape", [])):
            raise damaged(flag, path, f"tensor '{key}' has shape {header[key]['shape']}")
        expected = entry.get(CHECKSUM)
        if expected is None:
            continue
        actual = file_checksum(path, header, data_start, key)
        if actual != expected:
            raise damaged(
                flag,
                path,
                f"tensor '{key}' fails its checksum: crc32 {actual}, manifest {expected}",
            )
    return header


def save_bundle(
    directory: Path, name: str, tensors: dict[str, Tensor], manifest: dict[str, Any]
) -> None:
    """Save tensors (moved to CPU, made contiguous) and their manifest atomically."""
    tensor_path, manifest_path = bundle_paths(directory, name)
    cpu = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    atomic_write(tensor_path, lambda tmp: save_file(cpu, str(tmp)))
    described = describe_tensors(cpu)
    atomic_write_json(manifest_path, {"format": MANIFEST_FORMAT, **manifest, "tensors": described})


def read_json_object(path: Path, flag: str) -> dict[str, Any]:
    """A JSON file holding an object, or a one-line refusal naming it."""
    with readable(path, flag, "not JSON, perhaps cut short"):
        value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise damaged(flag, path, "not a JSON object")
    return value


def load_manifest(directory: Path, name: str, flag: str = "--resume") -> dict[str, Any]:
    """Read a bundle's manifest."""
    _, manifest_path = bundle_paths(directory, name)
    return read_json_object(manifest_path, flag)


def load_bundle(
    directory: Path,
    name: str,
    device: torch.device | str = "cpu",
    keys: list[str] | None = None,
    flag: str = "--resume",
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a bundle's tensors (all, or only ``keys``), checked against its manifest, and the manifest.

    safetensors memory-maps the file, so loading a few keys of a large bundle reads only those.
    """
    tensor_path, _ = bundle_paths(directory, name)
    manifest = load_manifest(directory, name, flag)
    described = manifest.get("tensors", {})
    verify_file(tensor_path, described, flag, keys)
    tensors: dict[str, Tensor] = {}
    with safe_open(str(tensor_path), framework="pt", device=str(device)) as handle:
        for key in keys if keys is not None else list(described):
            tensors[key] = handle.get_tensor(key)
    return tensors, manifest
