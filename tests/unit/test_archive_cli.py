"""``torchwire archive``: torch-model-archiver's flags, --inspect, errors, progress, memory."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, torch_model_archiver
from torchwire.archive import MANIFEST_PATH, open_archive, read_manifest, read_model_config
from torchwire.cli import main

FORMATS = ["default", "zip-store", "tgz", "no-archive"]
SUFFIX = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
MB = 1024 * 1024


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A model's sources as a user would have them lying around."""
    d = tmp_path / "src"
    (d / "assets" / "vocab" / "__pycache__").mkdir(parents=True)
    (d / "assets" / ".git").mkdir()
    files = {
        "handler.py": "def handle(data, context):\n    return data\n",
        "model.py": "import torch\n",
        "weights.pt": "w" * 3000,
        "index_to_name.json": '{"0": "zero"}',
        "model-config.yaml": "batchSize: 4\nmaxBatchDelay: 20\nhandler:\n  topk: 2\n",
        "requirements.txt": "numpy\n",
        "notes-a.txt": "a",
        "notes-b.txt": "b",
        "assets/labels.txt": "x\n",
        "assets/.env": "hidden file, kept\n",
        "assets/vocab/words.txt": "w\n",
        "assets/vocab/__pycache__/junk.pyc": "skip",
        "assets/.git/HEAD": "skip",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def archive_args(src: Path, name: str = "mymodel", *extra: str) -> list[str]:
    """One command line, valid for both torch-model-archiver and ``torchwire archive``."""
    return [
        "--model-name", name, "--version", "2.0",
        "--model-file", str(src / "model.py"),
        "--serialized-file", str(src / "weights.pt"),
        "--handler", str(src / "handler.py"),
        "--extra-files", f"{src / 'index_to_name.json'},{src / 'assets'},{src / 'notes-*.txt'}",
        "--requirements-file", str(src / "requirements.txt"),
        "--config-file", str(src / "model-config.yaml"),
        *extra,
    ]  # fmt: skip


def torchwire_archive(*args: str) -> int:
    return main(["archive", *args])


def contents(path: Path) -> dict[str, bytes]:
    """Every file of a .mar, .tar.gz (without its top folder) or directory."""
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes()
                for p in path.rglob("*") if p.is_file()}  # fmt: skip
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    with tarfile.open(path) as tf:
        out = {}
        for m in tf.getmembers():
            fh = tf.extractfile(m) if m.isfile() else None
            if fh is not None:
                out[m.name.split("/", 1)[1]] = fh.read()
        return out


def without_dates(manifest: bytes) -> dict[str, object]:
    data = json.loads(manifest)
    assert set(data) == {"createdOn", "runtime", "model", "archiverVersion"}
    return {k: v for k, v in data.items() if k not in ("createdOn", "archiverVersion")}


EXPECTED_FILES = {
    MANIFEST_PATH, "handler.py", "model.py", "weights.pt", "index_to_name.json",
    "model-config.yaml", "requirements.txt", "notes-a.txt", "notes-b.txt",
    "labels.txt", ".env", "vocab/words.txt",
}  # fmt: skip


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, src: Path, fmt: str) -> None:
    export = tmp_path / "out"
    export.mkdir()
    rc = torchwire_archive(*archive_args(src), "--export-path", str(export),
                           "--archive-format", fmt)
    assert rc == 0
    out = export / f"mymodel{SUFFIX[fmt]}"
    assert [p.name for p in export.iterdir()] == [out.name]
    assert set(contents(out)) == EXPECTED_FILES
    model_dir = open_archive(out, tmp_path / "store")
    manifest = read_manifest(model_dir)
    assert (manifest.model_name, manifest.model_version) == ("mymodel", "2.0")
    assert manifest.handler == "handler.py"
    assert manifest.serialized_file == "weights.pt"
    assert manifest.model_file == "model.py"
    assert manifest.requirements_file == "requirements.txt"
    assert read_model_config(model_dir, manifest)["handler"] == {"topk": 2}
    assert (model_dir / "weights.pt").read_text() == "w" * 3000
    assert (model_dir / "vocab" / "words.txt").read_text() == "w\n"


def test_default_export_path_is_the_current_directory(
    tmp_path: Path, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert torchwire_archive("--model-name", "m", "-v", "1", "--handler", str(src / "handler.py"),
                             "-f") == 0
    assert read_manifest(open_archive(tmp_path / "m.mar", tmp_path / "s")).handler == "handler.py"


@pytest.mark.parametrize(
    ("handler", "manifest_handler", "stored"),
    [
        ("image_classifier", "image_classifier", set()),
        ("{src}/handler.py:handle", "handler.py:handle", {"handler.py"}),
        ("{src}/handler:handle", "handler:handle", {"handler.py"}),
        ("{src}/handler", "handler", {"handler.py"}),
    ],
)
def test_handler_forms(
    tmp_path: Path, src: Path, handler: str, manifest_handler: str, stored: set[str]
) -> None:
    rc = torchwire_archive("--model-name", "h", "-v", "1", "--handler",
                           handler.format(src=src), "--export-path", str(tmp_path))
    assert rc == 0
    files = contents(tmp_path / "h.mar")
    assert set(files) == {MANIFEST_PATH, *stored}
    assert json.loads(files[MANIFEST_PATH])["model"]["handler"] == manifest_handler


# --- the same as torch-model-archiver -------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_command_line_same_archive_as_torch_model_archiver(
    tmp_path: Path, src: Path, fmt: str
) -> None:
    """The same flags, only the program name changed, give the same files and manifest."""
    args = archive_args(src, "same", "--archive-format", fmt)
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    done = torch_model_archiver([*args, "--export-path", str(theirs)], tmp_path / "scratch")
    assert done.returncode == 0, done.stderr
    assert torchwire_archive(*args, "--export-path", str(ours)) == 0
    assert [p.name for p in ours.iterdir()] == [p.name for p in theirs.iterdir()]
    name = f"same{SUFFIX[fmt]}"
    their_files, our_files = contents(theirs / name), contents(ours / name)
    assert set(our_files) == set(their_files) == EXPECTED_FILES
    for member in their_files.keys() - {MANIFEST_PATH}:
        assert our_files[member] == their_files[member], member
    assert without_dates(our_files[MANIFEST_PATH]) == without_dates(their_files[MANIFEST_PATH])
    assert list(json.loads(our_files[MANIFEST_PATH])["model"]) == list(
        json.loads(their_files[MANIFEST_PATH])["model"]
    )
    if fmt != "tgz" and fmt != "no-archive":
        with zipfile.ZipFile(theirs / name) as t, zipfile.ZipFile(ours / name) as o:
            assert {i.compress_type for i in o.infolist()} == {
                i.compress_type for i in t.infolist()
            }


def test_manifest_is_what_torch_model_archivers_own_classes_build(
    tmp_path: Path, src: Path
) -> None:
    """torch-model-archiver has no manifest reader; its Manifest/Model classes and name check
    are its validation, so rebuild our manifest through them and compare."""
    from model_archiver.manifest_components.manifest import Manifest, RuntimeType
    from model_archiver.manifest_components.model import Model
    from model_archiver.model_packaging_utils import ModelExportUtils

    assert torchwire_archive(*archive_args(src), "--export-path", str(tmp_path)) == 0
    ours = json.loads(contents(tmp_path / "mymodel.mar")[MANIFEST_PATH])
    m = ours["model"]
    ModelExportUtils.check_model_name_regex_or_exit(m["modelName"])
    model = Model(model_name=m["modelName"], serialized_file=m["serializedFile"],
                  handler=m["handler"], model_file=m["modelFile"],
                  model_version=m["modelVersion"], requirements_file=m["requirementsFile"],
                  config_file=m["configFile"])
    rebuilt = Manifest(runtime=RuntimeType(ours["runtime"]).value, model=model).manifest_dict
    assert list(rebuilt) == list(ours)
    assert rebuilt["model"] == ours["model"]
    assert rebuilt["runtime"] == ours["runtime"]


# --- errors: clear, and nothing written ------------------------------------------------


def _refused(capsys: pytest.CaptureFixture[str], export: Path, *args: str) -> str:
    capsys.readouterr()
    before = sorted(export.rglob("*")) if export.exists() else []
    rc = torchwire_archive(*args, "--export-path", str(export))
    after = sorted(export.rglob("*")) if export.exists() else []
    assert rc == 1
    assert after == before, "a refused archive must leave nothing behind"
    err = capsys.readouterr().err
    assert err.startswith("torchwire archive: error: ")
    return err


def test_missing_serialized_file(tmp_path: Path, src: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(capsys, tmp_path / "out", "--model-name", "m", "-v", "1", "--handler",
                   str(src / "handler.py"), "--serialized-file", str(src / "nope.pt"))
    assert f"serialized file {src / 'nope.pt'} does not exist" in err


def test_handler_file_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(capsys, tmp_path / "out", "--model-name", "m", "-v", "1",
                   "--handler", str(tmp_path / "my_handler.py"))
    assert "handler file" in err and "my_handler.py not found" in err
    assert "image_classifier" in err  # says which built-in names exist


def test_handler_with_a_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def handle(:\n")
    err = _refused(capsys, tmp_path / "out", "--model-name", "m", "-v", "1", "--handler", str(bad))
    assert "is not valid Python" in err


@pytest.mark.parametrize("fmt", FORMATS)
def test_existing_output_needs_force(tmp_path: Path, src: Path, fmt: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    export = tmp_path / "out"
    args = ["--model-name", "m", "-v", "1", "--handler", str(src / "handler.py"),
            "--archive-format", fmt]
    assert torchwire_archive(*args, "--export-path", str(export)) == 0
    out = export / f"m{SUFFIX[fmt]}"
    first = contents(out)
    err = _refused(capsys, export, *args)
    assert f"{out} already exists; use --force to overwrite" in err
    assert contents(out) == first
    assert torchwire_archive(*args, "-v", "2", "--force", "--export-path", str(export)) == 0
    assert json.loads(contents(out)[MANIFEST_PATH])["model"]["modelVersion"] == "2"
    assert [p.name for p in export.iterdir()] == [out.name]


@pytest.mark.parametrize("name", ["../evil", "a/b", "a b", "-dash", ".hidden", "a?b", "ü", "x%2F"])
def test_unsafe_model_names(tmp_path: Path, src: Path, name: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(capsys, tmp_path / "out", f"--model-name={name}", "-v", "1",
                   "--handler", str(src / "handler.py"))
    assert f"model name {name!r} is unsafe in paths and URLs" in err
    assert not (tmp_path / "evil.mar").exists()


def test_two_files_with_one_name(tmp_path: Path, src: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "handler.py").write_text("x = 1\n")
    err = _refused(capsys, tmp_path / "out", "--model-name", "m", "-v", "1", "--handler",
                   str(src / "handler.py"), "--extra-files", str(other / "handler.py"))
    assert "would be stored as 'handler.py'" in err


def test_invalid_model_config(tmp_path: Path, src: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "model-config.yaml"
    cfg.write_text("batchSize: -3\n")
    err = _refused(capsys, tmp_path / "out", "--model-name", "m", "-v", "1", "--handler",
                   str(src / "handler.py"), "--config-file", str(cfg))
    assert "batchSize=-3 is invalid" in err


def test_missing_extra_file_and_required_flags(tmp_path: Path, src: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(capsys, tmp_path / "out", "--model-name", "m", "-v", "1", "--handler",
                   str(src / "handler.py"), "--extra-files", str(src / "gone.json"))
    assert "extra file" in err and "gone.json does not exist" in err
    assert torchwire_archive("--model-name", "m") == 2
    assert "required: --version, --handler" in capsys.readouterr().err


# --- --inspect ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_inspect_prints_manifest_and_files_without_extracting(
    tmp_path: Path, src: Path, fmt: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert torchwire_archive(*archive_args(src), "--export-path", str(tmp_path / "out"),
                             "--archive-format", fmt) == 0
    out = tmp_path / "out" / f"mymodel{SUFFIX[fmt]}"
    capsys.readouterr()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert torchwire_archive("--inspect", str(out)) == 0
    assert sorted(tmp_path.rglob("*")) == before  # nothing extracted anywhere
    text = capsys.readouterr().out
    manifest_start = text.index("{")
    manifest = json.loads(text[manifest_start:text.index("\nfiles:")])
    assert manifest["model"]["modelName"] == "mymodel"
    assert manifest["model"]["serializedFile"] == "weights.pt"
    listed = {line.split()[-1] for line in text.split("\nfiles:\n")[1].splitlines()}
    top = "mymodel/" if fmt == "tgz" else ""
    assert {f"{top}{name}" for name in EXPECTED_FILES} <= listed
    assert "3,000" in text  # sizes are shown


def test_inspect_names_unsafe_members(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.mar"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr(MANIFEST_PATH, '{"model": {"modelName": "evil", "handler": "h.py"}}')
        zf.writestr("../escape.py", "print('x')")
    assert torchwire_archive("--inspect", str(evil)) == 1
    text = capsys.readouterr().out
    assert "unsafe: member '../escape.py': '..' in member path" in text
    assert "torchwire refuses to load this archive" in text
    assert not (tmp_path.parent / "escape.py").exists()


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [(None, "has no MAR-INF/MANIFEST.json"), ("{nope", "is not valid JSON"),
     ('{"model": {"modelName": "m"}}', "handler is missing")],
)  # fmt: skip
def test_inspect_reports_missing_or_invalid_manifest(
    tmp_path: Path, manifest: str | None, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        members = {"m/handler.py": b"x = 1\n"}
        if manifest is not None:
            members[f"m/{MANIFEST_PATH}"] = manifest.encode()
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert torchwire_archive("--inspect", str(path)) == 1
    text = capsys.readouterr().out
    assert f"invalid: {path}" in text and problem in text
    assert "m/handler.py" in text


def test_inspect_of_something_else(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.mar"
    junk.write_bytes(os.urandom(2048))
    assert torchwire_archive("--inspect", str(junk)) == 1
    assert f"model archive {junk} is not a zip/.mar" in capsys.readouterr().err
    assert torchwire_archive("--inspect", str(tmp_path / "none.mar")) == 1
    assert "none.mar does not exist" in capsys.readouterr().err


# --- large files: progress on a terminal, flat memory ----------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "torchwire", "archive", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def _read_pty(master: int, proc: subprocess.Popen[bytes]) -> str:
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(60)
    return b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only(tmp_path: Path, src: Path) -> None:
    weights = _sparse(tmp_path / "big.pt", 40 * MB)
    args = _cli("--model-name", "big", "-v", "1", "--handler", str(src / "handler.py"),
                "--serialized-file", str(weights), "--archive-format", "zip-store", "-f",
                "--export-path", str(tmp_path / "out"))
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave, env=_env())
    os.close(slave)
    try:
        shown = _read_pty(master, proc)
    finally:
        os.close(master)
    assert proc.returncode == 0, shown
    assert "writing big.mar [##############################] 100% 40/40 MB" in shown
    assert "MB/s" in shown
    piped = subprocess.run(args, capture_output=True, text=True, env=_env(), check=True)
    assert "writing big.mar [" not in piped.stderr  # no bar when stderr is not a terminal
    assert "wrote" in piped.stderr


MEASURE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _peak_rss_mb(args: list[str]) -> float:
    """Peak RSS of one ``torchwire archive`` run, from a fresh parent (so no other child counts)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True,
                          text=True, env=_env(), check=True, timeout=300)
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and sparse files")
@pytest.mark.parametrize("fmt", ["zip-store", "default"])
def test_200_mb_weights_are_archived_with_flat_memory(tmp_path: Path, src: Path,
                                                      fmt: str) -> None:
    small = _sparse(tmp_path / "small.pt", 1024)
    big = _sparse(tmp_path / "big.pt", 200 * MB)
    out = tmp_path / "out"
    try:
        def run(weights: Path) -> float:
            return _peak_rss_mb(_cli("--model-name", weights.stem, "-v", "1", "--handler",
                                     str(src / "handler.py"), "--serialized-file", str(weights),
                                     "--archive-format", fmt, "--export-path", str(out)))

        baseline, peak = run(small), run(big)
        print(f"\n{fmt}: peak RSS {peak:.1f} MB for 200 MB of weights, "
              f"{baseline:.1f} MB for 1 KB (+{peak - baseline:.1f} MB)")
        assert peak - baseline < 50, f"{peak:.0f} MB vs {baseline:.0f} MB baseline"
        assert contents_size(out / "big.mar") == 200 * MB
    finally:
        big.unlink()
        for p in out.glob("*"):
            p.unlink()


def contents_size(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return zf.getinfo("big.pt").file_size
