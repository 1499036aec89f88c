"""Atomic save/resume of loop state: tensors, numbers and strings only, loaded with ``weights_only=True``."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .._errors import NetinvError

_UMASK = os.umask(0)  # read once (os.umask can only be read by setting it), then restored
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what open() gives a new file; every output gets it


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so an interrupted write never leaves a half file (and a link at
    ``path`` is replaced, never written through). The file gets the usual permissions (0666 minus the umask).
    Temporary files a killed process on this machine left for the same path (SIGKILL mid-write) are removed: their
    names carry the writer's process id, and only those of processes that no longer exist go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    ours = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[a-z0-9_]{8}")  # the names this function gives
    for old in path.parent.glob(f".{glob.escape(path.name)}.*"):
        m = ours.fullmatch(old.name)
        if m and not _alive(int(m.group(1))) and old.is_file() and not old.is_symlink():
            old.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's, or not a pid we can ask about: leave its file alone
    return True


#: set once a loop state has been written or loaded in this process: the CLI names --resume on Ctrl-C only then
STATE_ON_DISK = False


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' bytes, in order (what a resume checks its inputs against)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes, the same for the same tensors and metadata in every process: safetensors writes its
    metadata map in the order of a Rust HashMap, which changes from process to process (audit G: the same seed gave
    two generator.safetensors files with the same tensors). The header is rewritten with sorted keys, padded to 8
    bytes as the format asks; the tensor offsets are relative to the data, which is unchanged.

    Example:
        >>> import struct
        >>> b = safetensors_bytes({"w": torch.ones(2)}, {"seed": "0", "format": "x"})
        >>> n = struct.unpack("<Q", b[:8])[0]
        >>> b[8:8 + n].decode().rstrip()
        '{"__metadata__":{"format":"x","seed":"0"},"w":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}}'
    """
    import struct

    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + raw[8 + n:]


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically save a loop state (tensors, numbers, strings, lists and dicts of them)."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
    global STATE_ON_DISK
    STATE_ON_DISK = True


def load_state(path: Path) -> dict[str, Any]:
    """Load a loop state saved by :func:`save_state` with ``weights_only=True`` (no arbitrary unpickling)."""
    global STATE_ON_DISK
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        STATE_ON_DISK = True
        return state
    except Exception as e:  # corrupt or foreign file
        raise NetinvError(f"cannot read checkpoint {path}: {type(e).__name__}",
                          "delete it to start afresh, or point --out at the run it belongs to") from None


_NO_EFFECT = {"show_progress", "checkpoint_every"}  # settings that never change a run's result


def _resume_view(settings: dict[str, Any]) -> dict[str, Any]:
    """What must match for a resume: everything but the display and checkpointing settings (JSON-normalised, so a
    record read back from run.json compares equal to the settings it was written from)."""
    cfg = settings.get("config")
    if isinstance(cfg, dict):
        settings = {**settings, "config": {k: v for k, v in cfg.items() if k not in _NO_EFFECT}}
    return json.loads(json.dumps(settings, default=_json_default))


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON file that holds one object (run.json, meta.json: files that may come from anyone).

    Raises:
        ValueError: naming why not: unreadable, not UTF-8, invalid JSON, nested too deeply, or not an object.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(e.strerror or type(e).__name__) from None
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    return data


def finished_run(out: str | Path | None, state_file: str, result_file: str, settings: dict[str, Any], *,
                 record_file: str = "run.json",
                 view: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> bool:
    """Whether ``out`` holds a finished run of these settings (``result_file`` and ``record_file``, no ``state_file``
    left): a resume then has nothing to continue and returns that result. A finished run of other settings is refused
    as a resume of an interrupted one would be (:func:`check_resume`). ``view`` maps the record onto the keys of
    ``settings`` (default: they are its top-level keys, as in run.json)."""
    if out is None or (Path(out) / state_file).exists() or not (Path(out) / result_file).is_file() \
            or not (Path(out) / record_file).is_file():
        return False
    try:
        record = read_json_object(Path(out) / record_file)
    except ValueError:
        return False
    recorded = view(record) if view is not None else {k: record.get(k) for k in settings}
    check_resume({"settings": recorded}, settings, Path(out) / record_file)
    return True


def check_resume(state: dict[str, Any], settings: dict[str, Any], path: Path) -> None:
    """Refuse to resume a state saved with other settings: the run would match neither its record nor an
    uninterrupted run (a state without recorded settings is refused too: it cannot be checked).

    Raises:
        ConfigError: naming up to three settings that differ.
    """
    from .._errors import ConfigError

    saved = state.get("settings")
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} records no settings to check a resume against",
                          "delete it to start afresh, or use a new --out")
    old, new = _resume_view(saved), _resume_view(settings)
    if old == new:
        return
    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:  # config fields bare, others dotted
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = "" if k == "config" and not prefix else f"{prefix}{k}."
            out.update(flat(v, key) if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    flat_old, flat_new = flat(old), flat(new)
    def short(v: Any) -> str:  # a list of training indices must not make a 16 KB "line"
        r = repr(v)
        return r if len(r) <= 60 else r[:57] + "…"

    diff = [f"{k} {short(flat_old.get(k))} → {short(flat_new.get(k))}" for k in sorted(set(flat_old) | set(flat_new))
            if flat_old.get(k) != flat_new.get(k)]
    raise ConfigError(f"{path} was made with other settings ({'; '.join(diff[:3])})",
                      "resume with the same settings, or use a new --out")


def warn_on_restart(out: Path | None, state_file: str, result_file: str, resume: bool) -> None:
    """Say so when a run starts afresh in a folder that holds an interrupted run's checkpoint or a finished run's
    results: both are replaced as the new run goes (``--resume`` continues the interrupted one)."""
    import warnings

    if out is None:
        return
    if resume:
        if not (Path(out) / state_file).exists() and (Path(out) / result_file).exists():
            warnings.warn(f"{out} holds a finished run, not an interrupted one: nothing to resume, so this run starts "
                          "afresh and replaces it", UserWarning, stacklevel=4)
        elif not (Path(out) / state_file).exists():  # a typo in --out, or a run stopped before its first checkpoint
            warnings.warn(f"{out} holds no checkpoint ({state_file}) to resume: this run starts from the beginning",
                          UserWarning, stacklevel=4)
        return
    if (Path(out) / state_file).exists():
        warnings.warn(f"{out} holds an interrupted run's checkpoint; this run starts afresh and replaces it (add "
                      "--resume to continue it instead)", UserWarning, stacklevel=4)
    elif (Path(out) / result_file).exists():
        warnings.warn(f"{out} holds an earlier run's {result_file}; this run replaces it (use another --out to keep "
                      "both)", UserWarning, stacklevel=4)


def resume_state(out: str | Path | None, state_file: str, result_file: str, settings: dict[str, Any],
                 resume: bool) -> dict[str, Any] | None:
    """The start of every resumable loop: say so when a fresh run replaces an interrupted or finished one
    (:func:`warn_on_restart`), and with ``resume`` return ``out/state_file`` checked against ``settings``
    (:func:`check_resume`); None when there is nothing to continue."""
    outp = Path(out) if out is not None else None
    warn_on_restart(outp, state_file, result_file, resume)
    if not resume or outp is None or not (outp / state_file).exists():
        return None
    state = load_state(outp / state_file)
    check_resume(state, settings, outp / state_file)
    return state
