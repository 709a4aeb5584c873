"""Checkpoints as plain data: safe loading, a clear match check, RNG state and the run's config inside.

Every checkpoint is loaded with ``torch.load(..., weights_only=True)``: tensors, numbers, strings, lists and dicts
only, so a ``.ckpt`` whose pickle would call code (``os.system`` through ``__reduce__``) is refused before
anything of it runs. What attnbench saves fits that: hparams are plain config dicts (``lit.base``), the run's
resolved config sits under ``CONFIG_KEY`` and the torch / numpy / python RNG states under ``RNG_KEY`` as tensors
and lists.

Every checkpoint is written by ``atomic_save``: into a temporary file beside it, flushed to disk, then renamed over
it, so a process killed during the write (SIGKILL, a lost node) leaves the previous file or the new one, never a
truncated one.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attnbench.errors import ConfigError

CONFIG_KEY = "attnbench_config"  # the run's resolved config (plain dict)
RNG_KEY = "attnbench_rng"  # torch / cuda / numpy / python RNG states (tensors and lists)
# config groups whose differences explain a checkpoint that does not fit the model
_MODEL_GROUPS = ("model", "data")
_MAX_DIFFS = 12


class CheckpointError(ConfigError):
    """``ckpt_path`` names a file that is unreadable, unsafe, or a checkpoint of another model."""


def load(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """``torch.load`` with ``weights_only=True`` on CPU; a CheckpointError that says why (naming the config ``key``
    that gave ``path``), never a raw trace."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{key}={str(path)!r}: no such file")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; a truncated or foreign file is not one
        raise CheckpointError(f"{key}={str(path)!r} is not a PyTorch checkpoint (not a zip archive, "
                              f"{p.stat().st_size} bytes): truncated, or another kind of file?")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure of the loader means the same thing to the user
        msg = str(e)
        found = re.search(r"GLOBAL (\S+)", msg)
        if found:
            raise CheckpointError(
                f"{key}={str(path)!r} holds objects other than tensors and plain data (it would call "
                f"{found.group(1)}); it was refused unread, since loading it could run code. attnbench checkpoints "
                "never need that: use one written by this version, or convert a trusted one by hand.") from None
        detail = msg.splitlines()[0] if msg and "weights_only" not in msg else type(e).__name__
        raise CheckpointError(f"{key}={str(path)!r} is not a PyTorch checkpoint ({detail})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{key}={str(path)!r} is not a Lightning checkpoint (no state_dict)")
    unwrap_compiled(ckpt["state_dict"])
    return ckpt


COMPILED = "_orig_mod."  # the prefix torch.compile's wrapper gave a net's keys (checkpoints before net.compile())


def unwrap_compiled(state_dict: dict[str, Any]) -> None:
    """Rename in place the keys of a net saved inside ``torch.compile``'s wrapper (``net._orig_mod.x``) to the
    plain module's (``net.x``), as nets are compiled in place now and save plain keys."""
    for k in [k for k in state_dict if COMPILED in k]:
        state_dict[k.replace(COMPILED, "")] = state_dict.pop(k)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_diff(saved: dict | None, run: dict, groups: tuple[str, ...] = _MODEL_GROUPS) -> list[str]:
    """``key: checkpoint -> run`` for every key of ``groups`` that differs (paths of data dirs left out)."""
    if saved is None:
        return []
    a, b = flatten({g: saved.get(g) for g in groups}), flatten({g: run.get(g) for g in groups})
    skip = ("data.data_dir",)
    return [f"{k}: {a.get(k, '<absent>')!r} (checkpoint) vs {b.get(k, '<absent>')!r} (this run)"
            for k in sorted(a.keys() | b.keys()) if k not in skip and a.get(k, "<absent>") != b.get(k, "<absent>")]


def check_fits(ckpt: dict, model: torch.nn.Module, run_config: dict, path: str | Path,
               ignore: tuple[str, ...] = ()) -> None:
    """Raise one CheckpointError when the checkpoint's weights do not fit ``model`` (names or shapes): it names the
    mismatching tensors and, from the config saved in the checkpoint, the model/data keys that differ."""
    own = {k: v.shape for k, v in model.state_dict().items() if not any(s in k for s in ignore)}
    got = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()
           if isinstance(v, torch.Tensor) and not any(s in k for s in ignore)}
    missing, unexpected = sorted(own.keys() - got.keys()), sorted(got.keys() - own.keys())
    shapes = sorted(k for k in own.keys() & got.keys() if tuple(own[k]) != got[k])
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensors differ in shape (e.g. {k}: {got[k]} in the checkpoint, "
                     f"{tuple(own[k])} here)")
    if missing:
        parts.append(f"{len(missing)} are missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} are not in this model (e.g. {unexpected[0]})")
    saved = ckpt.get(CONFIG_KEY)
    diffs = config_diff(saved, run_config)
    if saved is None:
        why = "it holds no attnbench config to compare with (written by another program or an older version)"
    elif diffs:
        more = f"\n  ... and {len(diffs) - _MAX_DIFFS} more" if len(diffs) > _MAX_DIFFS else ""
        why = "its config differs from this run's in\n  " + "\n  ".join(diffs[:_MAX_DIFFS]) + more
    else:
        why = "its model and data config equal this run's (the code changed since it was written?)"
    raise CheckpointError(f"ckpt_path={str(path)!r} is a checkpoint of another model: {'; '.join(parts)}; {why}. "
                          "Pass the same model/data overrides as the run that wrote it.")


# ----------------------------------------------------------------------------- atomic writes
TMP_SUFFIX = ".tmp"  # ``.<name>.<pid>.<random>.tmp`` beside the file being written (never matches ``*.ckpt``)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` atomically: into a temporary file in the same folder, flushed to disk
    (``fsync``), then ``os.replace``-d over ``path`` (a rename within one file system). A write that fails
    removes its temporary file; a killed one leaves it (``stale_temporaries`` finds it) and ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        with open(tmp, "xb") as f:  # created with the umask's mode, as the file it replaces was
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk (not possible on every system)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stale_temporaries(folder: str | Path) -> list[Path]:
    """The temporary files ``atomic_save`` left in ``folder`` when its process was killed during a write."""
    return sorted(Path(folder).glob(f".*.ckpt.*{TMP_SUFFIX}"))


# ----------------------------------------------------------------------------- RNG state
def numpy_state(rs: np.random.RandomState | None = None) -> list:
    """A numpy RandomState's state (the global one by default) as a list with a tensor."""
    name, keys, pos, has_gauss, gauss = (rs or np.random).get_state()
    return [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]


def set_numpy_state(state: list, rs: np.random.RandomState | None = None) -> None:
    """Restore what ``numpy_state`` saved."""
    name, keys, pos, has_gauss, gauss = state
    (rs or np.random).set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))


def rng_state() -> dict[str, Any]:
    """Every global RNG's state as tensors and lists (loadable with weights_only=True)."""
    py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": numpy_state(),
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    set_numpy_state(state["numpy"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
