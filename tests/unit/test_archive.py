"""Tests of torchwire.archive: manifest, safe unpacking, writing, torch-model-archiver parity."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from torchwire.archive import (
    MANIFEST_PATH,
    Manifest,
    open_archive,
    read_manifest,
    read_model_config,
    write_archive,
)
from torchwire.errors import ArchiveError

FORMATS = ["default", "zip-store", "tgz", "no-archive"]
WEIGHTS = b"\x80\x02weights" * 200
GOOD_MANIFEST = json.dumps({"model": {"modelName": "m", "handler": "handler.py"}}).encode()


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
def src(tmp_path: Path) -> dict[str, Path]:
    """Source files of a small model, keyed by their name inside the archive."""
    d = tmp_path / "src"
    d.mkdir()
    contents = {
        "handler.py": b"class Handler:\n    pass\n",
        "digits.pt": WEIGHTS,
        "model.py": b"import torch\n",
        "index_to_name.json": b'{"0": "zero"}',
        "model-config.yaml": b"batchSize: 2\nmaxBatchDelay: 50\n",
        "requirements.txt": b"numpy\n",
    }
    for name, data in contents.items():
        (d / name).write_bytes(data)
    return {name: d / name for name in contents}


def _manifest(**overrides: object) -> Manifest:
    fields: dict[str, object] = {
        "model_name": "digits",
        "model_version": "2.0",
        "handler": "handler.py",
        "serialized_file": "digits.pt",
        "model_file": "model.py",
        "config_file": "model-config.yaml",
        "requirements_file": "requirements.txt",
    }
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


def _tree(root: Path) -> set[str]:
    """Every path under ``root``, relative, as POSIX strings."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _write_zip(path: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return path


def _tar_file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _tar_special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, b""


def _write_tgz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def _archiver() -> Path:
    tool = Path(sys.executable).parent / "torch-model-archiver"
    if not tool.exists():
        pytest.skip("torch-model-archiver is not installed next to the interpreter")
    return tool


def _run_archiver(tmp_path: Path, src: dict[str, Path], fmt: str, name: str = "tsmade") -> Path:
    """Run TorchServe's torch-model-archiver; returns its export directory."""
    export = tmp_path / f"ts-{fmt}"
    export.mkdir()
    scratch = tmp_path / f"ts-tmp-{fmt}"  # it stages files in $TMPDIR/<model-name>
    scratch.mkdir()
    cmd = [
        str(_archiver()),
        "--model-name", name,
        "--version", "2.0",
        "--serialized-file", str(src["digits.pt"]),
        "--handler", str(src["handler.py"]),
        "--model-file", str(src["model.py"]),
        "--config-file", str(src["model-config.yaml"]),
        "--requirements-file", str(src["requirements.txt"]),
        "--extra-files", str(src["index_to_name.json"]),
        "--export-path", str(export),
        "--archive-format", fmt,
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(scratch)}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return export


# --- manifest --------------------------------------------------------------------------


def test_to_json_has_torchserve_layout() -> None:
    manifest = _manifest(created_on="01/12/2026 10:00:00", archiver_version="0.12.0")
    assert manifest.to_json() == {
        "createdOn": "01/12/2026 10:00:00",
        "runtime": "python",
        "model": {
            "modelName": "digits",
            "serializedFile": "digits.pt",
            "handler": "handler.py",
            "modelFile": "model.py",
            "modelVersion": "2.0",
            "requirementsFile": "requirements.txt",
            "configFile": "model-config.yaml",
        },
        "archiverVersion": "0.12.0",
    }


def test_to_json_omits_none_model_keys() -> None:
    manifest = Manifest(model_name="m", handler="image_classifier")
    assert manifest.to_json()["model"] == {
        "modelName": "m",
        "handler": "image_classifier",
        "modelVersion": "1.0",
    }


def test_from_json_defaults_and_round_trip() -> None:
    data = {
        "runtime": "python3",
        "model": {"modelName": "m", "handler": "h.py", "extensions": {"x": 1}},
        "custom": [1, 2],
    }
    manifest = Manifest.from_json(data, "here")
    assert manifest.model_version == "1.0"
    assert manifest.runtime == "python3"
    assert manifest.serialized_file is None
    out = manifest.to_json()
    assert out["model"]["extensions"] == {"x": 1}
    assert out["custom"] == [1, 2]
    assert Manifest.from_json(out, "again").to_json() == out


@pytest.mark.parametrize(
    "model",
    [
        {"modelName": "../evil", "handler": "h.py"},
        {"modelName": ".hidden", "handler": "h.py"},
        {"modelName": "a/b", "handler": "h.py"},
        {"modelName": "a b", "handler": "h.py"},
        {"modelName": "", "handler": "h.py"},
        {"modelName": 3, "handler": "h.py"},
        {"handler": "h.py"},
    ],
)
def test_from_json_refuses_bad_model_name(model: dict[str, object]) -> None:
    with pytest.raises(ArchiveError, match="the-source.*modelName"):
        Manifest.from_json({"model": model}, "the-source")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, '"model" object'),
        ({"model": "x"}, '"model" object'),
        ({"model": {"modelName": "m"}}, "handler"),
        ({"model": {"modelName": "m", "handler": ""}}, "handler"),
        ({"model": {"modelName": "m", "handler": "h", "serializedFile": 1}}, "serializedFile"),
    ],
)
def test_from_json_refuses_bad_manifest(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ArchiveError, match="src-name") as info:
        Manifest.from_json(data, "src-name")
    assert problem in str(info.value)


def test_read_manifest_missing(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="has no MAR-INF/MANIFEST.json"):
        read_manifest(tmp_path)


def test_read_manifest_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "MAR-INF").mkdir()
    (tmp_path / MANIFEST_PATH).write_text("{not json")
    with pytest.raises(ArchiveError, match="MANIFEST.json is not valid JSON"):
        read_manifest(tmp_path)


def test_read_model_config(tmp_path: Path) -> None:
    (tmp_path / "model-config.yaml").write_text("batchSize: 4\nhandler:\n  k: v\n")
    manifest = Manifest(model_name="m", handler="h.py", config_file="model-config.yaml")
    assert read_model_config(tmp_path, manifest) == {"batchSize": 4, "handler": {"k": "v"}}
    assert read_model_config(tmp_path, Manifest(model_name="m", handler="h.py")) == {}


@pytest.mark.parametrize(
    ("config_file", "text", "problem"),
    [
        ("missing.yaml", None, "missing"),
        ("list.yaml", "- 1\n- 2\n", "YAML mapping"),
        ("bad.yaml", "a: [1\n", "not valid YAML"),
        ("../outside.yaml", None, "unsafe"),
    ],
)
def test_read_model_config_errors(
    tmp_path: Path, config_file: str, text: str | None, problem: str
) -> None:
    if text is not None:
        (tmp_path / config_file).write_text(text)
    manifest = Manifest(model_name="m", handler="h.py", config_file=config_file)
    with pytest.raises(ArchiveError, match=problem):
        read_model_config(tmp_path, manifest)


# --- write_archive / open_archive round trips ------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, src: dict[str, Path], fmt: str) -> None:
    export = tmp_path / "export"
    out = write_archive(_manifest(), src, export, fmt=fmt)
    suffix = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}[fmt]
    assert out == export / f"digits{suffix}"
    assert {p.name for p in export.iterdir()} == {out.name}  # no temp files left

    model_dir = open_archive(out, tmp_path / "store")
    manifest = read_manifest(model_dir)
    assert manifest.model_name == "digits"
    assert manifest.model_version == "2.0"
    assert manifest.handler == "handler.py"
    assert manifest.serialized_file == "digits.pt"
    assert manifest.archiver_version is not None and manifest.created_on is not None
    assert _files(model_dir) == {*src, MANIFEST_PATH}
    assert (model_dir / "digits.pt").read_bytes() == WEIGHTS
    assert read_model_config(model_dir, manifest) == {"batchSize": 2, "maxBatchDelay": 50}
    if fmt == "no-archive":
        assert model_dir == out  # directories are used in place
    else:
        assert model_dir.is_relative_to(tmp_path / "store")


@pytest.mark.parametrize(("fmt", "compression"), [("default", 8), ("zip-store", 0)])
def test_zip_compression(tmp_path: Path, src: dict[str, Path], fmt: str, compression: int) -> None:
    out = write_archive(_manifest(), src, tmp_path, fmt=fmt)
    with zipfile.ZipFile(out) as zf:
        assert {info.compress_type for info in zf.infolist()} == {compression}


def test_tgz_has_top_level_folder(tmp_path: Path, src: dict[str, Path]) -> None:
    out = write_archive(_manifest(), src, tmp_path, fmt="tgz")
    with tarfile.open(out) as tf:
        assert {name.split("/")[0] for name in tf.getnames()} == {"digits"}


def test_subdirectory_names(tmp_path: Path, src: dict[str, Path]) -> None:
    files = {**src, "assets/vocab/words.txt": src["requirements.txt"]}
    for fmt in FORMATS:
        out = write_archive(_manifest(), files, tmp_path / fmt, fmt=fmt)
        model_dir = open_archive(out, tmp_path / "store")
        assert (model_dir / "assets/vocab/words.txt").read_bytes() == b"numpy\n"


def test_write_refuses_existing_output(tmp_path: Path, src: dict[str, Path]) -> None:
    for fmt in FORMATS:
        export = tmp_path / fmt
        out = write_archive(_manifest(), src, export, fmt=fmt)
        with pytest.raises(ArchiveError, match="already exists; use --force to overwrite"):
            write_archive(_manifest(), src, export, fmt=fmt)
        again = write_archive(_manifest(model_version="3.0"), src, export, fmt=fmt, force=True)
        assert again == out
        assert read_manifest(open_archive(out, tmp_path / "store")).model_version == "3.0"
        assert [p.name for p in export.iterdir()] == [out.name]


@pytest.mark.parametrize(
    ("manifest", "files", "problem"),
    [
        (_manifest(model_name="../x"), None, "unsafe"),
        (_manifest(serialized_file="other.pt"), None, "serializedFile"),
        (_manifest(), {"../handler.py": "handler.py"}, "'..'"),
        (_manifest(), {MANIFEST_PATH: "handler.py"}, "reserved"),
    ],
)
def test_write_refuses_bad_input(
    tmp_path: Path,
    src: dict[str, Path],
    manifest: Manifest,
    files: dict[str, str] | None,
    problem: str,
) -> None:
    given = dict(src)
    if files is not None:
        given.update({name: src[source] for name, source in files.items()})
    export = tmp_path / "export"
    with pytest.raises(ArchiveError, match=problem):
        write_archive(manifest, given, export, fmt="default")
    assert not export.exists() or not any(export.iterdir())


def test_write_refuses_missing_source_and_bad_format(tmp_path: Path, src: dict[str, Path]) -> None:
    with pytest.raises(ArchiveError, match="is not a file"):
        write_archive(_manifest(), {**src, "extra.txt": tmp_path / "nope"}, tmp_path)
    with pytest.raises(ArchiveError, match="unknown archive format"):
        write_archive(_manifest(), src, tmp_path, fmt="rar")


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_failure_leaves_nothing(
    tmp_path: Path, src: dict[str, Path], fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchwire.archive import pack

    def boom(tmp: Path, out: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pack, "_install", boom)
    with pytest.raises(OSError, match="disk full"):
        write_archive(_manifest(), src, tmp_path / "export", fmt=fmt)
    assert list((tmp_path / "export").iterdir()) == []


def test_open_directory_as_is(tmp_path: Path) -> None:
    (tmp_path / "MAR-INF").mkdir()
    (tmp_path / MANIFEST_PATH).write_bytes(GOOD_MANIFEST)
    store = tmp_path / "store"
    assert open_archive(tmp_path, store) == tmp_path
    assert not store.exists()


def test_reopen_gives_fresh_directories(tmp_path: Path, src: dict[str, Path]) -> None:
    out = write_archive(_manifest(), src, tmp_path / "export")
    store = tmp_path / "store"
    first = open_archive(out, store)
    (first / "scratch.txt").write_text("written by a handler")
    second = open_archive(out, store)
    assert first != second
    assert second.name.startswith(first.name)
    assert not (second / "scratch.txt").exists()
    assert sorted(p.name for p in store.iterdir()) == sorted([first.name, second.name])


def test_tar_with_dot_prefix_and_inner_symlink(tmp_path: Path) -> None:
    members = [
        _tar_special(".", tarfile.DIRTYPE),
        _tar_file("./MAR-INF/MANIFEST.json", GOOD_MANIFEST),
        _tar_file("./handler.py", b"x = 1\n"),
        _tar_special("./alias.py", tarfile.SYMTYPE, "handler.py"),
        _tar_special("./sub/copy.py", tarfile.LNKTYPE, "./handler.py"),
    ]
    model_dir = open_archive(_write_tgz(tmp_path / "m.tgz", members), tmp_path / "store")
    assert read_manifest(model_dir).model_name == "m"
    assert (model_dir / "alias.py").is_symlink()
    assert (model_dir / "alias.py").read_text() == "x = 1\n"
    assert (model_dir / "sub/copy.py").read_text() == "x = 1\n"


def test_tar_with_two_models_is_ambiguous(tmp_path: Path) -> None:
    members = [_tar_file("a/MAR-INF/MANIFEST.json", GOOD_MANIFEST),
               _tar_file("b/MAR-INF/MANIFEST.json", GOOD_MANIFEST)]  # fmt: skip
    store = tmp_path / "store"
    with pytest.raises(ArchiveError, match="several models"):
        open_archive(_write_tgz(tmp_path / "two.tar.gz", members), store)
    assert list(store.iterdir()) == []


# --- unsafe archives -------------------------------------------------------------------


def _symlink_zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _zip_slip_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    absolute = str(tmp_path / "abs_evil.py")
    good: list[tuple[zipfile.ZipInfo | str, bytes]] = [
        (MANIFEST_PATH, GOOD_MANIFEST),
        ("handler.py", b"x = 1\n"),
    ]

    def z(name: str, member: zipfile.ZipInfo | str) -> tuple[Path, str]:
        path = _write_zip(tmp_path / f"{name}.mar", [*good, (member, b"evil")])
        return path, member if isinstance(member, str) else member.filename

    def t(name: str, *evil: tuple[tarfile.TarInfo, bytes]) -> tuple[Path, str]:
        members = [_tar_file(f"m/{MANIFEST_PATH}", GOOD_MANIFEST), *evil]
        return _write_tgz(tmp_path / f"{name}.tar.gz", members), evil[0][0].name

    return {
        "zip-dotdot": z("dotdot", "../evil.py"),
        "zip-nested-dotdot": z("nested", "a/../../evil.py"),
        "zip-absolute": z("absolute", absolute),
        "zip-backslash": z("backslash", "..\\evil.py"),
        "zip-drive": z("drive", "C:/evil.py"),
        "zip-symlink": z("symlink", _symlink_zip_info("passwd")),
        "tar-dotdot": t("tdotdot", _tar_file("../x", b"evil")),
        "tar-absolute": t("tabsolute", _tar_file(absolute, b"evil")),
        "tar-symlink-abs": t("tsymabs", _tar_special("m/pw", tarfile.SYMTYPE, "/etc/passwd")),
        "tar-symlink-up": t("tsymup", _tar_special("m/up", tarfile.SYMTYPE, "../../x")),
        "tar-hardlink": t("thard", _tar_special("m/hl", tarfile.LNKTYPE, "../etc/passwd")),
        "tar-device": t("tdev", _tar_special("m/dev", tarfile.CHRTYPE)),
        "tar-fifo": t("tfifo", _tar_special("m/fifo", tarfile.FIFOTYPE)),
        # lexically inside, but m/l1 -> m makes m/l1/../.. the store's parent
        "tar-symlink-chain": t(
            "tchain",
            _tar_special("m/l2", tarfile.SYMTYPE, "l1/../.."),
            _tar_special("m/l1", tarfile.SYMTYPE, "."),
        ),
        # a hard link to a symlink copies the link text to a place where it escapes
        "tar-hardlink-to-symlink": t(
            "thardsym",
            _tar_special("h", tarfile.LNKTYPE, "m/a/s"),
            _tar_special("m/a/s", tarfile.SYMTYPE, "../x"),
        ),
        "tar-through-symlink": t(
            "tthrough",
            _tar_special("m/d", tarfile.SYMTYPE, "sub"),
            _tar_file("m/d/evil.py", b"evil"),
        ),
    }


CASES = [
    "zip-dotdot",
    "zip-nested-dotdot",
    "zip-absolute",
    "zip-backslash",
    "zip-drive",
    "zip-symlink",
    "tar-dotdot",
    "tar-absolute",
    "tar-symlink-abs",
    "tar-symlink-up",
    "tar-hardlink",
    "tar-device",
    "tar-fifo",
    "tar-symlink-chain",
    "tar-through-symlink",
    "tar-hardlink-to-symlink",
]


@pytest.mark.parametrize("case", CASES)
def test_unsafe_archive_refused(tmp_path: Path, case: str) -> None:
    archive, member = _zip_slip_cases(tmp_path)[case]
    store = tmp_path / "store"
    before = _tree(tmp_path)
    with pytest.raises(ArchiveError) as info:
        open_archive(archive, store)
    message = str(info.value)
    assert str(archive) in message
    assert repr(member) in message or member in message
    assert _tree(tmp_path) - before <= {"store"}  # nothing written anywhere else
    assert list(store.iterdir()) == []  # not even the good members


def test_zip_symlink_member_even_without_unix_create_system(tmp_path: Path) -> None:
    info = _symlink_zip_info("link")
    info.create_system = 0
    archive = _write_zip(tmp_path / "x.zip", [(MANIFEST_PATH, GOOD_MANIFEST), (info, b"/etc")])
    with pytest.raises(ArchiveError, match="'link': symbolic links"):
        open_archive(archive, tmp_path / "store")


# --- missing, corrupt ------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="nope.mar does not exist"):
        open_archive(tmp_path / "nope.mar", tmp_path / "store")


def test_archive_without_manifest(tmp_path: Path) -> None:
    archive = _write_zip(tmp_path / "bare.mar", [("handler.py", b"x = 1\n")])
    store = tmp_path / "store"
    with pytest.raises(ArchiveError, match="bare.mar has no MAR-INF/MANIFEST.json"):
        open_archive(archive, store)
    assert list(store.iterdir()) == []


def test_directory_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="has no MAR-INF/MANIFEST.json"):
        open_archive(tmp_path, tmp_path / "store")


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "junk.mar"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ArchiveError, match="junk.mar is corrupt"):
        open_archive(path, tmp_path / "store")


def test_zip_with_bad_crc(tmp_path: Path, src: dict[str, Path]) -> None:
    out = write_archive(_manifest(), src, tmp_path / "export", fmt="zip-store")
    data = bytearray(out.read_bytes())
    at = data.index(WEIGHTS)
    data[at + 10] ^= 0xFF
    out.write_bytes(bytes(data))
    store = tmp_path / "store"
    with pytest.raises(ArchiveError, match="digits.mar is corrupt"):
        open_archive(out, store)
    assert list(store.iterdir()) == []


@pytest.mark.parametrize("fmt", ["default", "tgz"])
def test_truncated_archive(tmp_path: Path, src: dict[str, Path], fmt: str) -> None:
    out = write_archive(_manifest(), src, tmp_path / "export", fmt=fmt)
    out.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    store = tmp_path / "store"
    with pytest.raises(ArchiveError, match="corrupt"):
        open_archive(out, store)
    assert not store.exists() or list(store.iterdir()) == []


# --- TorchServe's own torch-model-archiver ---------------------------------------------


def _check_tsmade(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    assert manifest.model_name == "tsmade"
    assert manifest.model_version == "2.0"
    assert manifest.handler == "handler.py"
    assert manifest.serialized_file == "digits.pt"
    assert manifest.archiver_version == "0.12.0"
    assert (model_dir / "index_to_name.json").read_text() == '{"0": "zero"}'
    assert (model_dir / "handler.py").is_file()
    assert (model_dir / "digits.pt").read_bytes() == WEIGHTS
    assert read_model_config(model_dir, manifest) == {"batchSize": 2, "maxBatchDelay": 50}


@pytest.mark.parametrize(
    ("fmt", "made"),
    [("default", "tsmade.mar"), ("zip-store", "tsmade.mar"),
     ("tgz", "tsmade.tar.gz"), ("no-archive", "tsmade")],
)  # fmt: skip
def test_open_torch_model_archiver_output(
    tmp_path: Path, src: dict[str, Path], fmt: str, made: str
) -> None:
    export = _run_archiver(tmp_path, src, fmt)
    assert [p.name for p in export.iterdir()] == [made]
    store = tmp_path / "store"
    model_dir = open_archive(export / made, store)
    _check_tsmade(model_dir)
    if fmt == "no-archive":
        assert model_dir == export / made
    elif fmt == "tgz":
        assert model_dir.name == "tsmade"  # its single top-level folder
        assert model_dir.parent.parent == store


def test_write_archive_matches_torch_model_archiver(tmp_path: Path, src: dict[str, Path]) -> None:
    export = _run_archiver(tmp_path, src, "default")
    ours = write_archive(_manifest(model_name="tsmade"), src, tmp_path / "ours")
    with zipfile.ZipFile(export / "tsmade.mar") as theirs_zip, zipfile.ZipFile(ours) as ours_zip:
        assert set(ours_zip.namelist()) == set(theirs_zip.namelist())
        theirs_json = json.loads(theirs_zip.read(MANIFEST_PATH))
        ours_json = json.loads(ours_zip.read(MANIFEST_PATH))
        assert {i.compress_type for i in ours_zip.infolist()} == {
            i.compress_type for i in theirs_zip.infolist()
        }
    assert list(ours_json) == list(theirs_json)
    assert set(ours_json["model"]) == set(theirs_json["model"])
    assert list(ours_json["model"]) == list(theirs_json["model"])
    assert ours_json["model"] == theirs_json["model"]
