"""The package as users get it: a wheel, installed into a fresh environment, runs the demo.

A source checkout hides packaging mistakes: a data file the wheel leaves out is still on disk, a
module the package imports but does not declare is still in the developer's environment. So:

1. The wheel is built from a copy of the source tree (``pip wheel --no-deps --no-build-isolation
   --no-index``; nothing is downloaded, and the checkout gets no ``build/`` folder whose stale
   files could end up in a later wheel).
2. Its contents are compared with the source tree: every module and every file under
   ``bids_enhance/`` (report spec and template, bibliography, model weights and cards) must be in
   it. A file that ``[tool.setuptools.package-data]`` or ``packages.find`` misses fails here, by
   name, even when no test happens to open it.
3. Its ``Requires-Dist`` is compared with what the code imports: every third-party module
   imported anywhere in ``bids_enhance/`` (also inside functions, where torch is imported) must
   belong to a declared dependency. "It is installed anyway, by another dependency" does not
   count: that can change with the other package's next release.
4. A fresh virtual environment (``python -m venv --without-pip``) gets the wheel
   (``pip --python <venv> install --no-index --no-deps``) and, as its dependencies, a folder of
   links to exactly the distributions the wheel's ``Requires-Dist`` needs (transitively, as
   installed in the test environment), so nothing undeclared is importable, and neither is the
   source tree (the commands run elsewhere; the editable install's ``.pth`` is not processed).
   There every module of the package is imported, and the console script runs the demo end to
   end, as the SLURM array guide does it: build the pybids index once (``--boilerplate-only
   --bids-database-dir``), then a participant with that index, then the group level. Where mount
   namespaces are available (root, ``unshare``), the participant run sees the BIDS folder, the
   index and ``HOME`` read-only, as in a container on a cluster.

Building, installing and running take about a minute on two cores (``slow``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "bids_enhance"
TAG = "test/bids_enhance:wheel"


def _load_freeze_module():
    spec = importlib.util.spec_from_file_location("freeze_constraints",
                                                  ROOT / "docker" / "freeze_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


freeze = _load_freeze_module()


def _pip_env() -> dict[str, str]:
    """No pip configuration (index mirrors, find-links, constraints) and no index at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PIP_NO_INPUT="1")
    return env


def _run(cmd, *, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def _source_files() -> list[str]:
    """Every file of the package in the source tree, as wheel paths."""
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / PACKAGE, src / PACKAGE,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "--wheel-dir", tmp / "dist", src], cwd=tmp, env=_pip_env())
    (built,) = (tmp / "dist").glob(f"{PACKAGE}-*.whl")
    return built


def _wheel_metadata(wheel: Path) -> tuple[list[str], str]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = zf.read(name).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    version = next(line.split(":", 1)[1].strip() for line in meta.splitlines()
                   if line.startswith("Version:"))
    return requires, version


def _runtime_requires(requires: list[str]) -> list[str]:
    """Requires-Dist without the optional extras (test, benchmark)."""
    out = []
    for text in requires:
        req = Requirement(text)
        if req.marker is None or "extra" not in str(req.marker):
            out.append(text)
    return out


def test_wheel_holds_every_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    missing = [f for f in _source_files() if f not in names]
    assert not missing, (
        f"the wheel lacks {len(missing)} file(s) of the source tree: {missing[:10]}. Modules "
        "need an __init__.py in their folder (packages.find); data files need a pattern in "
        "[tool.setuptools.package-data] of pyproject.toml")
    assert f"{PACKAGE}/data/reports-spec.yml" in names  # the report spec, by name


def test_requires_dist_is_pyprojects_dependencies(wheel):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requires, version = _wheel_metadata(wheel)
    assert version == project["version"]
    declared = sorted(str(Requirement(r)) for r in project["dependencies"])
    assert sorted(str(Requirement(r)) for r in _runtime_requires(requires)) == declared


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names of modules imported anywhere in the package -> files importing them.

    Absolute imports only; ``from . import x`` and the package itself are ours. Imports inside a
    ``try`` whose handler catches ImportError are optional and skipped.
    """
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        optional: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ("ImportError",
                                                                   "ModuleNotFoundError")
                    for h in node.handlers):
                optional.update(id(n) for stmt in node.body for n in ast.walk(stmt))
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in (PACKAGE, "__future__"):
                    continue
                found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_module_is_a_declared_dependency(wheel):
    requires, _ = _wheel_metadata(wheel)
    declared = {freeze.canonical(Requirement(r).name) for r in _runtime_requires(requires)}
    providers = metadata.packages_distributions()
    problems = []
    for module, files in sorted(_third_party_imports().items()):
        dists = {freeze.canonical(d) for d in providers.get(module, [])}
        if not dists:
            problems.append(f"{module} (imported in {', '.join(sorted(files))}) is not installed "
                            "in the test environment at all")
        elif not dists & declared:
            problems.append(f"{module} (imported in {', '.join(sorted(files))}) comes from "
                            f"{'/'.join(sorted(dists))}, which pyproject.toml does not declare")
    assert not problems, "undeclared dependencies:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------
def _link_dependencies(requires: list[str], target: Path) -> None:
    """Links in ``target`` to the top-level files of every distribution ``requires`` needs."""
    target.mkdir()
    for dist in freeze.requirement_closure(requires).values():
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        if not tops:
            raise AssertionError(f"{dist.metadata['Name']} has no file list (RECORD)")
        for top in tops:
            link = target / top
            if not link.exists() and (base / top).exists():
                link.symlink_to(base / top)


def _readonly_prefix(tmp: Path) -> list[str] | None:
    """A command prefix that runs a command with some folders bound read-only, or None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    probe = tmp / "ro-probe"
    probe.mkdir(exist_ok=True)
    script = ('set -e; IFS=: read -ra dirs <<< "$RO_DIRS"; '
              'for d in "${dirs[@]}"; do mount --bind "$d" "$d"; '
              'mount -o remount,ro,bind "$d"; '
              'if touch "$d/.write-probe" 2>/dev/null; then echo "$d is writable" >&2; exit 97; '
              'fi; done; exec "$@"')
    prefix = ["unshare", "--mount", "--", "bash", "-c", script, "readonly"]
    proc = subprocess.run([*prefix, "true"], env={**os.environ, "RO_DIRS": str(probe)},
                          capture_output=True, text=True, check=False)
    return prefix if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("fresh")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=_pip_env())
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True, text=True, check=True).stdout.strip())
    requires, version = _wheel_metadata(wheel)
    _link_dependencies(_runtime_requires(requires), tmp / "deps")
    # A plain path line: the folder goes on sys.path, but .pth files inside it (such as the
    # developer's editable install of this package) are not processed.
    (purelib / "_declared_dependencies.pth").write_text(f"{tmp / 'deps'}\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps",
          wheel], cwd=tmp, env=_pip_env())

    run_dir = tmp / "run"
    home = tmp / "home"
    run_dir.mkdir()
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(run_dir),
        # As the image sets them:
        "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(run_dir / "matplotlib"), "NIPYPE_NO_ET": "1",
        "BIDS_ENHANCE_CONTAINER_TYPE": "docker", "BIDS_ENHANCE_CONTAINER_TAG": TAG,
    }
    return {"tmp": tmp, "venv": venv, "python": python, "purelib": purelib, "env": env,
            "run": run_dir, "home": home, "version": version}


def test_fresh_environment_imports_the_wheel_not_the_source(installed):
    proc = _run([installed["python"], "-c",
                 "import json, sys, bids_enhance; "
                 "print(json.dumps({'file': bids_enhance.__file__, "
                 "'version': bids_enhance.__version__, 'path': sys.path}))"],
                cwd=installed["run"], env=installed["env"])
    info = json.loads(proc.stdout)
    assert Path(info["file"]).is_relative_to(installed["purelib"])
    assert info["version"] == installed["version"]
    assert not any(Path(p).resolve() == ROOT for p in info["path"] if p)


def test_fresh_environment_imports_every_module(installed):
    code = (
        "import importlib, pkgutil, bids_enhance\n"
        "names = [m.name for m in pkgutil.walk_packages(bids_enhance.__path__, 'bids_enhance.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    proc = _run([installed["python"], "-c", code], cwd=installed["run"], env=installed["env"])
    assert int(proc.stdout.strip()) > 20


@pytest.fixture(scope="module")
def demo_run(installed) -> dict:
    env, run_dir = installed["env"], installed["run"]
    exe = installed["venv"] / "bin" / "bids_enhance"
    bids, out, db = run_dir / "bids", run_dir / "out", run_dir / "db"
    _run([installed["python"], "-m", "bids_enhance.demo", bids, "--voxel-size", "6"],
         cwd=run_dir, env=env)
    # 1. The index job of the SLURM guide: the only run that writes the pybids index.
    _run([exe, bids, out, "participant", "--bids-database-dir", db, "--boilerplate-only",
          "--skip-bids-validation", "-w", run_dir / "work-index"], cwd=run_dir, env=env)
    # 2. One array task: input, index and HOME read-only where that can be arranged.
    prefix = _readonly_prefix(installed["tmp"])
    task_env = {**env, "RO_DIRS": ":".join(map(str, (bids, db, installed["home"])))}
    _run([*(prefix or []), exe, bids, out, "participant", "--participant-label", "01",
          "--bids-database-dir", db, "--skip-bids-validation", "--nprocs", "1", "--sloppy",
          "--random-seed", "1", "-w", run_dir / "work"], cwd=run_dir, env=task_env)
    # 2b. The shipped superres weights travel inside the wheel and run on the demo's sub-03
    # (the template at twice the voxel size; 6 mm here, as 12 mm leaves too few voxels for the
    # image-quality metrics).
    bids_sr = run_dir / "bids-sr"
    _run([installed["python"], "-m", "bids_enhance.demo", bids_sr, "--voxel-size", "3"],
         cwd=run_dir, env=env)
    _run([exe, bids_sr, out, "participant", "--participant-label", "03", "--enhance", "superres",
          "--skip-bids-validation", "--nprocs", "1", "--random-seed", "1",
          "-w", run_dir / "work-sr"], cwd=run_dir, env=env)
    # 3. The group level.
    _run([exe, bids, out, "group"], cwd=run_dir, env=env)
    return {"out": out, "read_only": prefix is not None}


def test_demo_runs_from_the_wheel(demo_run):
    out = demo_run["out"]
    assert (out / "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz").is_file()
    assert (out / "sub-01/anat/sub-01_desc-denoised_T1w.json").is_file()
    sidecar = json.loads((out / "sub-03/anat/sub-03_res-x2_desc-superres_T1w.json").read_text())
    model = sidecar["EnhancementSteps"][0]["Model"]
    assert model["Origin"] == "default" and "site-packages" in model["Checkpoint"]
    # The report needs the spec, template and CSS from the package data; the methods text the
    # bibliography.
    report = (out / "sub-01.html").read_text()
    assert "sub-01" in report and len(report) > 10_000
    assert (out / "logs" / "CITATION.bib").stat().st_size > 0
    assert (out / "group_T1w.tsv").is_file() and (out / "group_T1w.html").is_file()
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": TAG}


def test_demo_runs_with_read_only_input_index_and_home(demo_run):
    if not demo_run["read_only"]:
        pytest.skip("read-only binds need root and unshare (mount namespaces)")
    # The task above succeeded while they were mounted read-only (and checked to be so).
    assert (demo_run["out"] / "sub-01.html").is_file()


def test_console_script_is_the_declared_entry_point(installed):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (script,) = project["scripts"]
    exe = installed["venv"] / "bin" / script
    first = exe.read_text().splitlines()[0]
    assert first.startswith(f"#!{installed['venv'] / 'bin'}/python"), first
    proc = _run([exe, "--version"], cwd=installed["run"], env=installed["env"])
    assert re.fullmatch(rf"{script} {re.escape(installed['version'])}\s*", proc.stdout)

