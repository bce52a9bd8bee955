"""The wheel: one top-level name, the shipped data, the entry points, and an install
that works on its own (imports resolve into the install, not into this checkout).

The wheel is built from a copy of the repository: building in place leaves ``build/``
(and rewrites ``*.egg-info``) in the working tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from configparser import ConfigParser
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("packaging")]  # one wheel build per worker

REPO = Path(__file__).resolve().parents[1]
NOVELS = {"emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility"}
# what a build leaves behind, and what never belongs in a source copy
BUILD_LEFTOVERS = ("build", "dist", "*.egg-info")
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache",
                                     "reports", "work", *BUILD_LEFTOVERS)


def _leftovers(root: Path) -> dict[str, int]:
    """build/, dist/ and *.egg-info at the top of ``root``, with their mtimes."""
    return {p.name: p.stat().st_mtime_ns for pattern in BUILD_LEFTOVERS for p in root.glob(pattern)}


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel path, pip's build output), built from a copy of the repository."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=COPY_IGNORE)
    before = _leftovers(REPO)
    # -v: without it pip hides the build backend's output, warnings included
    proc = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                 "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    assert _leftovers(REPO) == before, "building the wheel touched the working tree"
    wheels = sorted((tmp / "dist").glob("expspec-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def names(built) -> list[str]:
    with zipfile.ZipFile(built[0]) as zf:
        return zf.namelist()


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory) -> Path:
    """The wheel installed into a bare folder (``pip install --target``)."""
    target = tmp_path_factory.mktemp("target")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(target),
          str(built[0])], cwd=target)
    return target


def _run_installed(target: Path, tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    """``python -c code`` with only the install on PYTHONPATH, in a folder outside the repo."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPSPEC_", "LANE_B_"))}
    env["PYTHONPATH"] = str(target)
    return _run([sys.executable, "-c", code], cwd=cwd, env=env)


def test_wheel_has_one_top_level_name(names):
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"expspec"}
    assert not any(name.startswith("expspec/__init__") for name in names)  # a namespace package


def test_wheel_ships_the_data_and_profiles(names):
    novels = {Path(n).name.removesuffix(".txt.gz") for n in names
              if n.startswith("expspec/fixtures/data/austen/") and n.endswith(".txt.gz")}
    assert novels == NOVELS
    for path in ("expspec/fixtures/profiles/smoke.toml", "expspec/fixtures/profiles/hero.toml",
                 "expspec/fixtures/profiles/gpu.toml", "expspec/fixtures/data/PROVENANCE.md",
                 "expspec/fixtures/data/contexts.txt", "expspec/fixtures/data/prompts.jsonl"):
        assert path in names


def test_wheel_entry_points(built, names):
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(built[0]) as zf:
        parser = ConfigParser(delimiters=("=",))
        parser.optionxform = str  # keep names as written
        parser.read_string(zf.read(entry_points).decode())
    assert dict(parser["console_scripts"]) == {"expspec": "expspec.kernels.cli:main"}
    assert dict(parser["pytest11"]) == {"expspec.fixtures.plugin": "expspec.fixtures.plugin",
                                        "expspec.fixtures.lane_b": "expspec.fixtures.lane_b",
                                        "expspec.fixtures.hero": "expspec.fixtures.hero",
                                        "expspec.fixtures.bon": "expspec.fixtures.bon",
                                        "expspec.fixtures.tempnorm": "expspec.fixtures.tempnorm"}
    assert dict(parser["expspec.families"]) == {"lane_b": "expspec.kernels.lane_b.config:FAMILY",
                                                "hero": "expspec.kernels.hero.config:FAMILY",
                                                "bon": "expspec.kernels.bon.config:FAMILY",
                                                "tempnorm": "expspec.kernels.tempnorm.config:FAMILY"}


def test_build_output_has_no_deprecation_warnings(built):
    output = built[1]
    assert "Successfully built expspec" in output or "Created wheel for expspec" in output
    bad = [line for line in output.splitlines()
           if "BuildBackendWarning" in line or "SetuptoolsDeprecationWarning" in line]
    assert not bad, "\n".join(bad)


def test_installed_wheel_loads_the_embedded_corpus(installed, tmp_path):
    code = (
        "import json\n"
        "from pathlib import Path\n"
        "import expspec.kernels.data.corpus as corpus\n"
        "split = corpus.load_corpus('embedded:austen')\n"
        "print(json.dumps({'file': str(Path(corpus.__file__).resolve()),\n"
        "                  'documents': len({d.name for d in split.train + split.val}),\n"
        "                  'train_chars': sum(len(d.text) for d in split.train),\n"
        "                  'val_chars': sum(len(d.text) for d in split.val)}))\n"
    )
    out = json.loads(_run_installed(installed, tmp_path, code).stdout.strip().splitlines()[-1])
    file = Path(out["file"])
    assert file.is_relative_to(installed.resolve()), f"imported from {file}, not from the install"
    assert not file.is_relative_to(REPO)
    assert out["documents"] == 6
    assert out["train_chars"] > 1_000_000
    assert 0.03 < out["val_chars"] / (out["train_chars"] + out["val_chars"]) < 0.08  # common.val_fraction 0.05


def test_installed_cli_help_is_a_sentence(installed, tmp_path):
    code = "import sys; from expspec.kernels.cli import main; sys.exit(main(['--help']))"
    lines = _run_installed(installed, tmp_path, code).stdout.splitlines()
    assert lines[0].startswith("usage: expspec")
    blank = lines.index("")  # the usage block (maybe wrapped) ends at the first blank line
    rest = lines[blank:]
    start = next(i for i, line in enumerate(rest) if line.strip())
    description = []
    for line in rest[start:]:
        if not line.strip():
            break
        description.append(line.strip())
    text = " ".join(description)
    assert text[:1].isupper(), f"the description should start with a capital letter: {text!r}"
    assert text.endswith("."), f"the description should be a complete sentence: {text!r}"
