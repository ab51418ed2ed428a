"""The step and method registry: importable everywhere, complete, and the one vocabulary."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from bids_enhance import steps
from bids_enhance.steps import (
    AUTO_DENOISE,
    CHAIN_ORDER,
    DENOISE_METHODS,
    GENERATIVE_STEPS,
    PIPELINE_METHODS,
    STEPS,
    X2_STEPS,
)

PACKAGE = Path(steps.__file__).resolve().parent

#: String literals equal to a step or method name that are *not* that vocabulary, by file:
#: another vocabulary that happens to share the word. Anything else belongs in the registry.
ALLOWED: dict[tuple[str, str], str] = {
    ("degrade/motion.py", "motion"): "the kind of a degradation step, not an enhancement step",
    ("degrade/pipeline.py", "motion"): "a degradation preset name",
    ("training/config.py", "motion"): "the degradation preset a training task defaults to",
    ("inference/__init__.py", "superres"): "the submodule inference/superres.py (lazy exports)",
    ("workflows/enhance.py", "denoise"): "the nipype node name of the denoising node",
    ("cli/run.py", "denoise"): "the nipype node name, watched by the progress callback",
    ("workflows/outputs.py", "superres"): "a reportlet key of data/reports-spec.yml",
    ("reports/captions.py", "superres"): "a caption key of data/reports-spec.yml",
    ("classical/__init__.py", "odct3d"): "PRI-NLM's default guide image, in the step's record",
    ("degrade/prefilter.py", "odct3d"): "the default prefilter of a learned refinement",
    ("degrade/pipeline.py", "odct3d-wiener"): "the prefilter of a training preset",
    ("degrade/pipeline.py", "blockmatch"): "the prefilter of a training preset",
    ("inference/weights.py", "prinlm"): "a baseline of the learned denoiser's model card",
    ("training/card.py", "prinlm"): "a baseline of the learned denoiser's model card",
    ("training/card.py", "odct3d"): "a baseline of the learned denoiser's model card",
    **{(rel, "denoise"): "the training task of the learned denoiser (`train --model denoise`)"
       for rel in ("training/config.py", "models/registry.py", "cli/parser.py")},
}


def _names() -> set[str]:
    return set(STEPS) | set(DENOISE_METHODS)


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of ``path`` equal to a step or method name, outside ``__all__``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                skip |= {id(n) for n in ast.walk(node)}
    names = _names()
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in names and id(node) not in skip]


def test_registry_imports_without_nipype_or_torch():
    code = ("import sys, bids_enhance.steps; "
            "heavy = [m for m in ('nipype', 'torch', 'numpy') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_cli_choices_come_from_the_registry():
    from bids_enhance.cli.parser import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert tuple(actions["enhance"].choices) == CHAIN_ORDER == tuple(STEPS)
    assert tuple(actions["denoise_method"].choices) == (AUTO_DENOISE, *PIPELINE_METHODS)
    assert actions["denoise_method"].default == AUTO_DENOISE
    for name in (*STEPS, *PIPELINE_METHODS):
        assert name in actions["enhance"].help + actions["denoise_method"].help, name
    assert ", ".join(GENERATIVE_STEPS) in actions["checkpoint"].help


def test_cli_help_text_unchanged():
    """The help built from the registry says what the hand-written help said."""
    from bids_enhance.cli.parser import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert actions["enhance"].help == (
        "enhancement steps, always applied in this order: motion (motion-artefact correction, "
        "motion-gan or motion-ddpm model) → denoise (classical ODCT3D/ODCT3D-Wiener/BM-DCT/PRI-NLM/"
        "SANLM, "
        "or the learned denoiser) → superres (x2 "
        "super-resolution, three-player GAN) or superres-denoise (x2 super-resolution with "
        "noise removal, DISGAN)")
    assert actions["denoise_method"].help == (
        "auto (default): chosen per image by its contrast, PRI-NLM for PDw/PD, "
        "ODCT3D for the others (docs/benchmarks/denoise.md); "
        "odct3d: oracle DCT filter alone (Manjón 2012); odct3d-wiener: oracle DCT filter with "
        "a Wiener second pass (Manjón 2012, Dabov 2007); blockmatch: block-matching "
        "collaborative filter (BM4D's two stages) (Maggioni 2013, Dabov 2007); prinlm: ODCT-guided rotation-invariant "
        "NLM (Manjón 2012); sanlm: spatially adaptive NLM (Manjón 2010); learned: a trained "
        "3D network (shipped CPU-trained weights, or --checkpoint denoise=PATH) (RRDB generator "
        "of Wang 2023)")


def test_interface_and_workflow_accept_every_offered_method():
    from bids_enhance.interfaces.denoise import ClassicalDenoise
    from bids_enhance.workflows.enhance import STEPS as FACTORIES
    from bids_enhance.workflows.enhance import init_denoise_wf, init_generative_wf

    spec = ClassicalDenoise.input_spec()
    assert tuple(spec.trait("method").trait_type.values) == PIPELINE_METHODS
    assert spec.method == PIPELINE_METHODS[0]
    for name in PIPELINE_METHODS:
        text = init_denoise_wf(method=name).__desc__
        method = DENOISE_METHODS[name]
        assert (method.abbreviation if method.learned else f"({method.abbreviation})") in text
        assert ("search radius" in text) == ("search_radius" in DENOISE_METHODS[name].parameters)
    assert list(FACTORIES) == list(CHAIN_ORDER)
    for name, step in STEPS.items():
        assert FACTORIES[name] is (init_generative_wf if step.generative else init_denoise_wf)


def test_steps_are_complete():
    from bids_enhance.degrade import PRESETS
    from bids_enhance.training.config import TASKS

    assert X2_STEPS == tuple(s for s in CHAIN_ORDER if STEPS[s].scale == 2)
    assert all(CHAIN_ORDER.index(s) >= len(CHAIN_ORDER) - len(X2_STEPS) for s in X2_STEPS)
    for step in STEPS.values():
        assert step.desc.isalnum() and step.desc[0].islower(), step.name
        assert set(step.presets) <= set(PRESETS), step.name
        if step.generative:
            assert step.tasks and set(step.tasks) <= set(TASKS), step.name
            assert set(step.methods_text) == set(step.tasks), step.name
            assert step.default_model, step.name
        else:  # a classical step runs a model only through its learned method(s)
            learned = [DENOISE_METHODS[m] for m in steps.LEARNED_METHODS]
            assert not step.methods_text
            assert step.tasks == tuple(m.task for m in learned), step.name
            assert step.default_model == (learned[0].default_model if learned else None)
        assert set(step.task_references) == set(step.tasks), step.name
    tasks = [t for s in STEPS.values() for t in s.tasks]
    assert sorted(tasks) == sorted(TASKS)  # every training task is run by exactly one step


def test_method_parameters_match_their_functions():
    from bids_enhance.classical import _method_function

    reserved = {"volume", "sigma", "noise_model", "device"}
    for name, method in DENOISE_METHODS.items():
        signature = inspect.signature(_method_function(name)).parameters
        keyword = {k: p.default for k, p in signature.items()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in reserved}
        assert list(method.parameters.items()) == list(keyword.items()), name
        assert set(method.sloppy) <= set(method.parameters), name
        if method.offered:
            method.methods_text.format(**method.parameters)  # every placeholder is a parameter


def test_reference_keys_are_in_the_bibliography():
    from bids_enhance.bids.provenance import references

    for method in DENOISE_METHODS.values():
        assert method.reference_keys, method.name
        references(method.reference_keys)  # raises KeyError on an unknown key


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match="kind"):
        steps.Step(name="x", kind="magic", scale=1, desc="x", description="", phrase="",
                   help="", label="", noun="", look_for="")
    with pytest.raises(ValueError, match="scale"):
        steps.Step(name="x", kind=steps.CLASSICAL, scale=3, desc="x", description="",
                   phrase="", help="", label="", noun="", look_for="")


def test_no_step_or_method_name_outside_the_registry():
    """A step or method name typed out as a string literal outside ``steps.py`` is a second
    vocabulary to keep in step; import it from :mod:`bids_enhance.steps` instead."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "steps.py":
            continue
        found += [f"{rel}:{line}: {value!r}" for line, value in _literals(path)
                  if (rel, value) not in ALLOWED]
    assert not found, "step/method names outside bids_enhance/steps.py:\n" + "\n".join(found)


def test_allow_list_is_not_stale():
    for rel, value in ALLOWED:
        assert any(v == value for _, v in _literals(PACKAGE / rel)), (rel, value)


def test_step_records_are_typed():
    from bids_enhance.steps import CLASSICAL, GENERATIVE, StepRecord

    classical = StepRecord.from_info({"method": "prinlm", "sigma": 0.1})
    assert classical.kind == CLASSICAL and not classical.generative
    assert classical.step == "denoise"
    older = StepRecord.from_info({"step": "superres", "sha256": "ab" * 32, "model": "gan3p"})
    assert older.generative and older.step == "superres"
    learned = StepRecord.from_info({"step": "denoise", "kind": CLASSICAL,
                                    "model": {"sha256": "ab" * 32}})
    assert not learned.generative  # a model ran, but as the denoise step's method
    assert StepRecord.from_info({"kind": GENERATIVE, "step": "motion"}).generative
    with pytest.raises(ValueError, match="kind"):
        StepRecord.from_info({"kind": "magic"})


def test_auto_denoise_method_is_resolved_by_contrast():
    assert steps.resolve_denoise_method("auto", "PDw") == "prinlm"
    assert steps.resolve_denoise_method("auto", "PD") == "prinlm"
    for suffix in ("T1w", "T2w", "FLAIR", None):
        assert steps.resolve_denoise_method("auto", suffix) == steps.DEFAULT_DENOISE_METHOD
    for method in PIPELINE_METHODS:  # an explicit choice is never overridden
        assert steps.resolve_denoise_method(method, "PDw") == method
    assert set(steps.AUTO_DENOISE_BY_SUFFIX.values()) <= set(PIPELINE_METHODS)
