"""The file level of fastopt checkpoints: write atomically, read defensively.

Format: a ZIP archive as ``np.savez`` writes it.  Member ``header.npy`` holds a
1-D ``uint8`` array, the UTF-8 bytes of a JSON object (the caller's header, with
its ``"sha256"``).  Every other member is ``state.<identifier>.npy`` (or
``state.<identifier>.absmax.npy``), a 1-D array
of a plain numeric dtype (bool, int, uint, float, complex; native or little-endian;
never objects or pickles).  Members are written stored; deflated ones
(``np.savez_compressed``) are read too.  Names are used here without ``.npy``.

``write_atomic`` writes a temporary ``.fastopt-*.tmp`` in the target's folder,
fsyncs it, renames it over the target and fsyncs the folder: a crash leaves the
old file or the new one.  The new file keeps the mode of the one it replaces,
else gets ``0o666 & ~umask``.  A symlink is written through (its final target is
replaced, the link stays).  ``read_checked`` checks the member list and count,
the ZIP directory's sizes against the file, the JSON header and every member's
``.npy`` header before it reads any data: it allocates only what the file backs
(deflated: <= 1032x).  Every defect raises ``StateFileError`` whose message starts with
``where``; only an ``OSError`` from opening the file passes through.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import reprlib
import stat
import struct
import tempfile
import zipfile
from collections.abc import Callable, Mapping

import numpy as np

from .errors import StateFileError

HEADER = "header"
# An int8 state's per-block scales are "state.<identifier>.absmax".
_NAME = re.compile(r"header|state\.[A-Za-z_][A-Za-z0-9_]*(\.absmax)?")  # used with fullmatch
_NPY_MAGIC = b"\x93NUMPY"
_MAX_NPY_HEADER = 10000  # numpy's own limit for a safe .npy header
_MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data more than this
_CHUNK = 1 << 20


def _fail(where: str, message: str) -> StateFileError:
    return StateFileError(f"{where}: {message}")


def checked_shape(value, where: str, what: str = "shape") -> tuple[int, ...]:
    """``value`` (a list or tuple of ints >= 0, as in a JSON header) as a tuple."""
    if not isinstance(value, (list, tuple)) or len(value) > 64:
        raise _fail(where, f"{what} must be a list of at most 64 ints, got {reprlib.repr(value)}")
    for d in value:
        if type(d) is bool or not isinstance(d, (int, np.integer)) or d < 0:
            raise _fail(where, f"{what} must hold ints >= 0, got {reprlib.repr(value)}")
    return tuple(int(d) for d in value)


def _check_dtype(dtype: np.dtype, where: str, what: str) -> None:
    plain = dtype.kind in "biufc" and not dtype.hasobject
    if not plain or not (dtype.isnative or dtype.byteorder == "<"):
        raise _fail(where, f"{what}: dtype {dtype.str!r} is not a plain numeric dtype")


def _umask() -> int:
    try:  # Linux >= 4.7 shows it; os.umask would change it for all threads meanwhile
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_atomic(path, members: Mapping[str, np.ndarray], where: str) -> None:
    """Write ``members`` ({"header": uint8 JSON, "state.<name>": 1-D array}) to ``path``."""
    path = os.fsdecode(os.fspath(path))
    if not isinstance(members.get(HEADER), np.ndarray) or members[HEADER].dtype != np.uint8:
        raise _fail(where, "no 'header' member of uint8 to write")
    for name, a in members.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _fail(where, f"member name {name!r} is not 'header' or 'state.<identifier>'")
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            raise _fail(where, f"member {name!r} must be a 1-D ndarray")
        _check_dtype(a.dtype, where, f"member {name!r}")
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".fastopt-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, a in members.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as m:
                        np.lib.format.write_array(m, a, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_checked(path, where: str, max_header_bytes: int = 1 << 20,
                 expected_sizes: Callable[[dict], Mapping[str, int]] | None = None,
                 ) -> tuple[dict, dict[str, np.ndarray]]:  # fmt: skip
    """Return (header dict, {"state.<name>": 1-D array}) from a checkpoint file.

    ``expected_sizes(header)``, if given, returns {member name: element count}:
    the state members must be exactly those, checked before any data is read.
    """
    with open(os.fsdecode(os.fspath(path)), "rb") as f:
        try:
            return _read(f, where, max_header_bytes, expected_sizes)
        except StateFileError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, LookupError, OverflowError,
                NotImplementedError, RuntimeError, struct.error) as exc:  # fmt: skip
            detail = f"{type(exc).__name__}: {reprlib.repr(str(exc))}"
            raise _fail(where, f"corrupt or truncated archive ({detail})") from None


def _read(f, where, max_header_bytes, expected_sizes):
    file_size = os.fstat(f.fileno()).st_size
    start = f.read(8)
    if start.startswith(_NPY_MAGIC) or not start.startswith(b"PK"):
        raise _fail(where, "not a fastopt checkpoint (not an .npz archive)")
    if not zipfile.is_zipfile(f):
        raise _fail(where, "corrupt or truncated archive (no ZIP directory)")
    count = _listed_count(f, file_size)
    with zipfile.ZipFile(f) as zf:
        infos = zf.infolist()
        names = [zi.filename for zi in infos]
        if count != len(infos) and count != 0xFFFF:
            raise _fail(where, f"corrupt archive (directory of {count} members, {len(infos)} parse)")
        if len(set(names)) != len(names):
            raise _fail(where, "the archive lists a member twice")
        for zi in infos:
            what = f"member {reprlib.repr(zi.filename)}"
            if not (zi.filename.endswith(".npy") and _NAME.fullmatch(zi.filename[:-4])):
                raise _fail(where, f"unexpected {what} in the archive")
            stored = zi.compress_type == zipfile.ZIP_STORED
            if zi.flag_bits & 0x1 or not (stored or zi.compress_type == zipfile.ZIP_DEFLATED):
                raise _fail(where, f"{what} is encrypted or compressed with an unsupported method")
            limit = zi.compress_size if stored else _MAX_DEFLATE_RATIO * zi.compress_size + 64
            ok = zi.file_size == limit if stored else zi.file_size <= limit
            end = zi.header_offset + 30 + len(zi.filename.encode()) + zi.compress_size
            if not ok or end > file_size:
                raise _fail(where, f"{what}: its sizes in the ZIP directory do not fit the file")
        if HEADER + ".npy" not in names:
            raise _fail(where, "not a fastopt checkpoint (no header member)")
        hinfo = zf.getinfo(HEADER + ".npy")
        hdtype, hcount, hlen = _npy_header(zf, hinfo, where)  # its size matches the member's
        if hdtype != np.uint8 or hcount > max_header_bytes:
            raise _fail(where, f"header must be uint8, at most {max_header_bytes}: {hcount} {hdtype}")
        raw = _read_data(zf, hinfo, hlen, hdtype, hcount, where)
        try:
            header = json.loads(raw.tobytes().decode("utf-8"))
        except RecursionError:
            raise _fail(where, "header JSON is nested too deeply") from None
        except ValueError as exc:  # includes UnicodeDecodeError, JSONDecodeError
            raise _fail(where, f"header is not UTF-8 JSON ({reprlib.repr(str(exc))})") from None
        if not isinstance(header, dict):
            raise _fail(where, f"header is a JSON {type(header).__name__}, not an object")
        layout = {zi.filename[:-4]: (zi, *_npy_header(zf, zi, where)) for zi in infos if zi is not hinfo}
        if expected_sizes is not None:
            _check_expected(expected_sizes, header, layout, where)
        members = {n: _read_data(zf, zi, hl, dt, c, where) for n, (zi, dt, c, hl) in layout.items()}
    return header, members


def _listed_count(f, file_size: int) -> int:
    """The member count the end-of-central-directory record states (zipfile ignores it)."""
    size = min(file_size, 22 + 0xFFFF)
    f.seek(file_size - size)
    tail = f.read(size)
    at = tail.rfind(b"PK\x05\x06")
    return int.from_bytes(tail[at + 10 : at + 12], "little")  # 0xFFFF: see the zip64 record


def _check_expected(expected_sizes, header, layout, where):
    try:
        expected = dict(expected_sizes(header))
    except (LookupError, TypeError, AttributeError) as exc:  # it raises StateFileError itself
        raise _fail(where, f"header does not describe the members ({type(exc).__name__})") from None
    got = {name: count for name, (_, _, count, _) in layout.items()}
    if got != expected:
        raise _fail(where, f"the archive holds {got} values, the header says {expected}")


def _npy_header(zf: zipfile.ZipFile, zi: zipfile.ZipInfo, where: str):
    """(dtype, element count, header length) of a 1-D .npy member, checked against its size."""
    what = f"member {zi.filename!r}"
    with zf.open(zi) as m:  # at most 10 kB are read before the checks below
        pre = m.read(12)
        if len(pre) < 10 or not pre.startswith(_NPY_MAGIC) or pre[6] not in (1, 2) or pre[7]:
            raise _fail(where, f"{what} is not an .npy array (format 1.0 or 2.0)")
        start = 10 if pre[6] == 1 else 12
        end = start + int.from_bytes(pre[8:start], "little")
        if end - start > _MAX_NPY_HEADER:
            raise _fail(where, f"{what}: its .npy header of {end - start} bytes is too large")
        blob = pre + m.read(max(0, end - len(pre)))
    if len(blob) < end:
        raise _fail(where, f"{what} is truncated")
    bio = io.BytesIO(blob[:end])
    try:
        fmt = np.lib.format
        read = fmt.read_array_header_1_0 if fmt.read_magic(bio) == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(bio, max_header_size=_MAX_NPY_HEADER)
    except Exception as exc:  # a bounded (<= 10 kB) header numpy could not parse
        raise _fail(where, f"{what}: bad .npy header ({type(exc).__name__})") from None
    _check_dtype(dtype, where, what)
    shape = checked_shape(list(shape), where, f"{what} shape")
    if len(shape) != 1:
        raise _fail(where, f"{what} must be 1-D, its shape is {shape}")
    if shape[0] * dtype.itemsize != zi.file_size - end:
        raise _fail(where, f"{what} claims {shape[0]} x {dtype} but holds {zi.file_size - end} bytes")
    return dtype, shape[0], end


def _read_data(zf, zi, header_len, dtype, count, where):
    out = np.empty(count, dtype)
    buf = memoryview(out.view(np.uint8))
    with zf.open(zi) as m:
        m.read(header_len)
        for pos in range(0, len(buf), _CHUNK):
            chunk = m.read(min(_CHUNK, len(buf) - pos))
            if len(chunk) != min(_CHUNK, len(buf) - pos):
                raise _fail(where, f"member {zi.filename!r} is truncated")
            buf[pos : pos + len(chunk)] = chunk
        if m.read(1):  # also makes zipfile check the CRC
            raise _fail(where, f"member {zi.filename!r} holds more data than its header says")
    return out
