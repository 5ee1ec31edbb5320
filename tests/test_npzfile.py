"""The checkpoint file level (fastopt._npzfile), tested directly."""

from __future__ import annotations

import io
import json
import os
import stat
import time
import zipfile

import numpy as np
import pytest

from fastopt._npzfile import checked_shape, read_checked, write_atomic
from fastopt.errors import StateFileError

WHERE = "load('/x/ckpt.npz')"


def header_array(obj) -> np.ndarray:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return np.frombuffer(text.encode(), dtype=np.uint8)


def sample_members() -> dict:
    rng = np.random.default_rng(0)
    return {
        "header": header_array({"format": "fastopt.state", "sha256": "0" * 64, "n": 7}),
        "state.m": rng.standard_normal(7).astype(np.float32),
        "state.v": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.5]),
        "state.count": np.arange(5, dtype=np.int8),
        "state.empty": np.zeros(0, np.float64),
    }


def assert_same(members: dict, header: dict, got: dict) -> None:
    assert header == json.loads(members["header"].tobytes())
    state = {k: v for k, v in members.items() if k != "header"}
    assert set(got) == set(state)
    for k, a in state.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        assert got[k].tobytes() == a.tobytes()  # bit-exact, nan and -0.0 included


def raises_state_error(path, **kwargs) -> str:
    with pytest.raises(StateFileError) as info:
        read_checked(path, WHERE, **kwargs)
    msg = str(info.value)
    assert msg.startswith(WHERE + ": ") and len(msg) > len(WHERE) + 5
    return msg


def npy_bytes(descr: str, shape: str, data: bytes = b"", version: int = 1) -> bytes:
    """A hand-made .npy member: any header text, any data."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    text += " " * (-(len(text) + 11) % 64) + "\n"
    if version == 1:
        pre = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little")
    else:
        pre = b"\x93NUMPY\x02\x00" + len(text).to_bytes(4, "little")
    return pre + text.encode("latin1") + data


def good_header_npy(obj=None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, header_array(obj if obj is not None else {"sha256": "x"}))
    return buf.getvalue()


def make_zip(path, entries: dict) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def no_temp_files(folder) -> bool:
    return not [n for n in os.listdir(folder) if n.startswith(".fastopt-")]


@pytest.fixture
def umask():
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


# -- writing ------------------------------------------------------------------


def test_round_trip_is_bit_exact(tmp_path):
    members = sample_members()
    path = tmp_path / "ckpt.npz"
    write_atomic(path, members, "save")
    header, got = read_checked(path, WHERE)
    assert_same(members, header, got)
    assert no_temp_files(tmp_path)
    # np.load reads it too: it is a plain uncompressed .npz
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(members)
    with zipfile.ZipFile(path) as zf:
        assert all(zi.compress_type == zipfile.ZIP_STORED for zi in zf.infolist())


def test_str_bytes_and_pathlike_paths(tmp_path):
    members = sample_members()
    for i, path in enumerate(
        [str(tmp_path / "a.npz"), os.fsencode(tmp_path / "b.npz"), tmp_path / "c.npz"]
    ):
        write_atomic(path, members, "save")
        header, got = read_checked(path, WHERE)
        assert_same(members, header, got)
    assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz", "c.npz"]


def test_reads_zip64_layout(tmp_path, monkeypatch):
    # what a checkpoint over 4 GiB looks like: zip64 offsets and end records
    members = sample_members()
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    write_atomic(tmp_path / "z64.npz", members, "save")
    monkeypatch.undo()
    assert b"PK\x06\x06" in (tmp_path / "z64.npz").read_bytes()
    assert_same(members, *read_checked(tmp_path / "z64.npz", WHERE))


@pytest.mark.parametrize("savez", [np.savez, np.savez_compressed])
def test_reads_what_numpy_writes(tmp_path, savez):
    members = sample_members()
    savez(tmp_path / "z.npz", **members)  # how fastopt.save wrote checkpoints so far
    header, got = read_checked(tmp_path / "z.npz", WHERE)
    assert_same(members, header, got)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_file_honours_umask(tmp_path, umask, mask, expected):
    umask(mask)
    write_atomic(tmp_path / "new.npz", sample_members(), "save")
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == expected


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o444])
def test_existing_mode_is_kept(tmp_path, umask, mode):
    umask(0o077)
    path = tmp_path / "old.npz"
    path.write_bytes(b"old")
    os.chmod(path, mode)
    write_atomic(path, sample_members(), "save")
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    read_checked(path, WHERE)


@pytest.mark.parametrize("relative", [True, False])
def test_symlink_is_written_through(tmp_path, relative):
    real_dir = tmp_path / "store"
    real_dir.mkdir()
    target = real_dir / "real.npz"
    write_atomic(target, {"header": header_array({"old": 1})}, "save")
    os.chmod(target, 0o640)
    link = tmp_path / "ckpt.npz"
    os.symlink("store/real.npz" if relative else target, link)
    members = sample_members()
    write_atomic(link, members, "save")
    assert os.path.islink(link)
    assert os.readlink(link) == ("store/real.npz" if relative else str(target))
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert_same(members, *read_checked(target, WHERE))
    assert no_temp_files(tmp_path) and no_temp_files(real_dir)


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "ckpt.npz"
    os.symlink("real.npz", link)
    write_atomic(link, sample_members(), "save")
    assert os.path.islink(link) and (tmp_path / "real.npz").is_file()


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    write_atomic(path, {"header": header_array({"old": 1})}, "save")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(path, sample_members(), "save")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize(
    "members",
    [
        {"state.m": np.zeros(3)},  # no header
        {"header": np.zeros(3)},  # header not bytes
        {"header": header_array({}), "headerx": np.zeros(3)},
        {"header": header_array({}), "extra": np.zeros(3)},
        {"header": header_array({}), "state.bad-name": np.zeros(3)},
        {"header": header_array({}), "state.m": np.zeros((2, 2))},
        {"header": header_array({}), "state.m": np.array([None, 1], dtype=object)},
        {"header": header_array({}), "state.m": np.zeros(3, ">f8")},
        {"header": header_array({}), "state.m": [1.0, 2.0]},
    ],
)
def test_write_rejects_bad_members(tmp_path, members):
    with pytest.raises(StateFileError, match=r"^save\('x'\): "):
        write_atomic(tmp_path / "x.npz", members, "save('x')")
    assert os.listdir(tmp_path) == []


# -- reading: archive level ---------------------------------------------------


def test_missing_file_passes_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checked(tmp_path / "nope.npz", WHERE)


def test_npy_file_is_not_a_checkpoint(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    assert "not an .npz archive" in raises_state_error(tmp_path / "a.npy")


@pytest.mark.parametrize("data", [b"", b"hello world", os.urandom(4096), b"PK\x03\x04garbage"])
def test_garbage_is_rejected(tmp_path, data):
    (tmp_path / "g.npz").write_bytes(data)
    raises_state_error(tmp_path / "g.npz")


def test_every_truncation_is_rejected(tmp_path):
    path = tmp_path / "ckpt.npz"
    write_atomic(path, sample_members(), "save")
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    for n in range(len(data)):
        cut.write_bytes(data[:n])
        raises_state_error(cut)


def test_every_bit_flip_is_rejected_or_harmless(tmp_path):
    members = sample_members()
    path = tmp_path / "ckpt.npz"
    write_atomic(path, members, "save")
    data = path.read_bytes()
    bad = tmp_path / "bad.npz"
    rejected = 0
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            flipped = bytearray(data)
            flipped[i] ^= bit
            bad.write_bytes(bytes(flipped))
            try:
                header, got = read_checked(bad, WHERE)
            except StateFileError as exc:
                assert str(exc).startswith(WHERE + ": ")
                rejected += 1
            else:  # a flip in a field nobody reads (timestamps, attributes)
                assert_same(members, header, got)
    assert rejected > len(data)  # every data byte is covered by a CRC
    # a flip in the array data itself is always caught
    flipped = bytearray(data)
    flipped[data.index(members["state.v"].tobytes()) + 3] ^= 0x10
    bad.write_bytes(bytes(flipped))
    assert "CRC" in raises_state_error(bad)


def test_unknown_member_is_rejected(tmp_path):
    for extra in ["extra.npy", "headerx.npy", "header", "state.m", "state.m.npy.bak", "state.a-b.npy", "state..npy", "../state.m.npy"]:
        make_zip(tmp_path / "u.npz", {"header.npy": good_header_npy(), extra: good_header_npy()})
        raises_state_error(tmp_path / "u.npz")


def test_missing_header_is_rejected(tmp_path):
    np.savez(tmp_path / "n.npz", **{"state.m": np.zeros(3)})
    assert "no header" in raises_state_error(tmp_path / "n.npz")


def test_duplicate_member_is_rejected(tmp_path):
    with pytest.warns(UserWarning):
        make_zip(tmp_path / "d.npz", {"header.npy": good_header_npy()})
        with zipfile.ZipFile(tmp_path / "d.npz", "a") as zf:
            zf.writestr("header.npy", good_header_npy({"other": 1}))
    assert "twice" in raises_state_error(tmp_path / "d.npz")


# -- reading: header ----------------------------------------------------------


def test_deeply_nested_json_header(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    write_atomic(tmp_path / "deep.npz", {"header": header_array(deep)}, "save")
    assert "nested too deeply" in raises_state_error(tmp_path / "deep.npz")


@pytest.mark.parametrize("text", ["[1, 2]", "3", "null", '"s"', "{bad json", "\xff\xfe"])
def test_header_must_be_a_json_object(tmp_path, text):
    raw = text.encode("latin1") if text == "\xff\xfe" else text.encode()
    write_atomic(tmp_path / "h.npz", {"header": np.frombuffer(raw, np.uint8)}, "save")
    raises_state_error(tmp_path / "h.npz")


def test_huge_header_is_rejected(tmp_path):
    write_atomic(tmp_path / "big.npz", {"header": header_array({"pad": "x" * (2 << 20)})}, "save")
    assert "at most" in raises_state_error(tmp_path / "big.npz")
    write_atomic(tmp_path / "mid.npz", {"header": header_array({"pad": "x" * 5000})}, "save")
    assert "at most" in raises_state_error(tmp_path / "mid.npz", max_header_bytes=1000)
    read_checked(tmp_path / "mid.npz", WHERE)


def test_header_must_be_uint8(tmp_path):
    np.savez(tmp_path / "h.npz", header=np.zeros(4, np.float32))
    assert "uint8" in raises_state_error(tmp_path / "h.npz")


# -- reading: member .npy headers ---------------------------------------------


def test_member_claiming_1e13_elements_fails_fast(tmp_path):
    path = tmp_path / "huge.npz"
    make_zip(path, {"header.npy": good_header_npy(), "state.m.npy": npy_bytes("<f4", "(10000000000000,)", b"\0" * 1000)})
    assert os.path.getsize(path) < 2000
    t0 = time.perf_counter()
    msg = raises_state_error(path)
    assert time.perf_counter() - t0 < 1.0
    assert "10000000000000" in msg


def central_entry(data: bytes, name: bytes) -> int:
    """Offset of ``name``'s record in the ZIP central directory."""
    at = data.index(b"PK\x05\x06")  # end of central directory
    at = int.from_bytes(data[at + 16 : at + 20], "little")
    while data.startswith(b"PK\x01\x02", at):
        n, m, k = (int.from_bytes(data[at + o : at + o + 2], "little") for o in (28, 30, 32))
        if data[at + 46 : at + 46 + n] == name:
            return at
        at += 46 + n + m + k
    raise LookupError(name)


def test_zip_directory_claiming_huge_size_fails_fast(tmp_path):
    # the npy header and the ZIP directory agree on 4e9 bytes; the file is tiny
    path = tmp_path / "liar.npz"
    npy = npy_bytes("<f4", "(1000000000,)", b"\0" * 4000)
    make_zip(path, {"header.npy": good_header_npy(), "state.m.npy": npy})
    data = bytearray(path.read_bytes())
    cd = central_entry(data, b"state.m.npy")
    claimed = len(npy) - 4000 + 4 * 10**9
    data[cd + 20 : cd + 28] = claimed.to_bytes(4, "little") * 2  # compressed and uncompressed size
    path.write_bytes(bytes(data))
    t0 = time.perf_counter()
    assert "do not fit the file" in raises_state_error(path)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize(
    "npy",
    [
        npy_bytes("<f4", "(-1,)"),
        npy_bytes("<f4", "(-4, -1)", b"\0" * 16),
        npy_bytes("<f8", "(2, 2)", b"\0" * 32),
        npy_bytes("<f8", "()", b"\0" * 8),
        npy_bytes("|O", "(1,)", b"\0" * 8),
        npy_bytes(">f8", "(1,)", b"\0" * 8),
        npy_bytes("<U4", "(1,)", b"\0" * 16),
        npy_bytes("[('a', '<f8')]", "(1,)", b"\0" * 8),
        npy_bytes("<f8", "(3,)", b"\0" * 16),  # short data
        npy_bytes("<f8", "(1,)", b"\0" * 16),  # extra data
        npy_bytes("<f8", "(1.5,)", b"\0" * 8),
        npy_bytes("<f8", "(" * 3000 + ")" * 3000, b"\0" * 8),
        npy_bytes("<f8", "(1,)", b"\0" * 8, version=2)[:11],
        b"\x93NUMPY\x02\x00\xff\xff\xff\xff" + b" " * 100,
        b"\x93NUMPY\x03\x00" + npy_bytes("<f8", "(1,)", b"\0" * 8)[8:],
        b"not an npy member at all",
    ],
)
def test_bad_member_npy_headers(tmp_path, npy):
    make_zip(tmp_path / "b.npz", {"header.npy": good_header_npy(), "state.m.npy": npy})
    raises_state_error(tmp_path / "b.npz")


def test_npy_version_2_member_is_read(tmp_path):
    data = np.arange(3, dtype="<f8")
    make_zip(tmp_path / "v2.npz", {"header.npy": good_header_npy(), "state.m.npy": npy_bytes("<f8", "(3,)", data.tobytes(), version=2)})
    _, got = read_checked(tmp_path / "v2.npz", WHERE)
    assert got["state.m"].tobytes() == data.tobytes()


def test_absurd_compression_ratio_is_rejected(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.npy", good_header_npy())
        zf.writestr("state.m.npy", npy_bytes("<f8", "(1000000,)", bytes(8_000_000)))
    data = bytearray(path.read_bytes())
    cd = central_entry(data, b"state.m.npy")
    size = int.from_bytes(data[cd + 24 : cd + 28], "little")
    data[cd + 24 : cd + 28] = (size * 200).to_bytes(4, "little")  # claim 1.6 GB
    path.write_bytes(bytes(data))
    t0 = time.perf_counter()
    raises_state_error(path)
    assert time.perf_counter() - t0 < 1.0


# -- expected sizes from the header -------------------------------------------


def test_expected_sizes_callback(tmp_path):
    path = tmp_path / "e.npz"
    write_atomic(path, {"header": header_array({"n": 3}), "state.m": np.zeros(3)}, "save")
    sizes = lambda h: {"state.m": h["n"]}
    read_checked(path, WHERE, expected_sizes=sizes)
    write_atomic(path, {"header": header_array({"n": 2}), "state.m": np.zeros(3)}, "save")
    assert "the header says" in raises_state_error(path, expected_sizes=sizes)
    write_atomic(path, {"header": header_array({}), "state.m": np.zeros(3)}, "save")
    assert "does not describe" in raises_state_error(path, expected_sizes=sizes)
    write_atomic(path, {"header": header_array({"n": 3}), "state.m": np.zeros(3), "state.v": np.zeros(3)}, "save")
    raises_state_error(path, expected_sizes=sizes)


# -- shapes in the header -----------------------------------------------------


def test_checked_shape():
    assert checked_shape([2, 3], WHERE, "shape of 'w'") == (2, 3)
    assert checked_shape((), WHERE, "shape of 'w'") == ()
    assert checked_shape([np.int64(4)], WHERE, "s") == (4,)
    assert type(checked_shape([np.int64(4)], WHERE, "s")[0]) is int
    for bad in [[-1], [2, -3], [1.5], ["3"], [True], None, 3, "23", {"a": 1}, [[2]], [1] * 65]:
        with pytest.raises(StateFileError) as info:
            checked_shape(bad, WHERE, "shape of 'w'")
        assert str(info.value).startswith(WHERE + ": shape of 'w'")
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(StateFileError):
        checked_shape(deep, WHERE, "shape")
