"""The training workflow's interfaces: what they hash, where they write, the model sink."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from nipype.pipeline import engine as pe

from bids_enhance.interfaces.training import ModelCard, ModelSink, TrainModel


def test_train_node_hash_ignores_where_it_trains_and_what_it_resumes():
    spec = TrainModel.input_spec()
    for name in ("state_dir", "resume", "nproc_per_node", "omp_nthreads", "use_gpu"):
        assert spec.trait(name).nohash, name
    for name in ("train_files", "train_subjects", "val_files", "config", "training_command"):
        assert not spec.trait(name).nohash, name
    assert "out_dir" not in spec.copyable_trait_names()


def test_model_card_is_written_in_the_node_folder(tmp_path):
    result = tmp_path / "training_result.json"
    result.write_text(json.dumps({"task": "gan3p", "iterations": 3, "config": {},
                                  "checkpoint_sha256": "ab" * 32}))
    cwd = tmp_path / "node"
    cwd.mkdir()
    out = ModelCard(model_name="m", training_result=str(result), train_sources=["bids:raw:a"],
                    command=["bids_enhance"]).run(cwd=str(cwd)).outputs
    assert out.out_json == str(cwd / "model_card.json")
    assert out.out_markdown == str(cwd / "model_card.md")
    assert json.loads((cwd / "model_card.json").read_text())["checkpoint"]["sha256"] == "ab" * 32


def _model(folder):
    folder.mkdir(parents=True)
    for name in ("checkpoint.pt", "checkpoint_state.pt", "losses.csv"):
        (folder / name).write_text(name)
    return folder


def test_the_model_sink_publishes_always_and_removes_the_state_folder(tmp_path):
    model = _model(tmp_path / "work" / "train" / "model")
    card = tmp_path / "work" / "model_card.json"
    card.write_text("{}")
    out = tmp_path / "out" / "models" / "m"
    state = _model(tmp_path / "out" / "models" / "m.partial")

    def run_node():
        return pe.Node(ModelSink(model_dir=str(model), in_files=[str(card)], out_dir=str(out),
                                 state_dir=str(state)),
                       name="ds_model", base_dir=str(tmp_path / "work")).run()

    result = run_node()
    assert result.outputs.checkpoint == str(out / "checkpoint.pt")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "checkpoint_state.pt",
                                                     "losses.csv", "model_card.json"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["m"]
    (out / "checkpoint.pt").unlink()  # a rerun finds the node cached, and still restores it
    run_node()
    assert (out / "checkpoint.pt").read_text() == "checkpoint.pt"


def test_simulation_and_comparison_nodes_write_what_the_core_computes(tmp_path):
    from bids_enhance.degrade import simulate
    from bids_enhance.interfaces.degrade import SimulateDegradation
    from bids_enhance.interfaces.metrics import CompareToReference

    clean = np.random.default_rng(0).random((17, 16, 16), dtype=np.float32)
    nib.save(nib.Nifti1Image(clean, np.eye(4)), tmp_path / "clean.nii.gz")
    out = SimulateDegradation(in_file=str(tmp_path / "clean.nii.gz"), preset="sr-box-x2",
                              seed=4).run(cwd=str(tmp_path)).outputs
    sim = simulate(clean, np.eye(4), preset="sr-box-x2", seed=4)
    np.testing.assert_array_equal(nib.load(out.out_file).get_fdata(dtype=np.float32),
                                  sim.degraded)
    np.testing.assert_array_equal(nib.load(out.out_reference).get_fdata(dtype=np.float32),
                                  sim.reference)
    assert json.loads((tmp_path / "degradation.json").read_text()) == json.loads(
        json.dumps(sim.record()))
    cmp = CompareToReference(in_file=out.out_reference, reference=out.out_reference,
                             in_degraded=out.out_file, baselines=["cubic", "identity"]
                             ).run(cwd=str(tmp_path)).outputs
    result = json.loads((tmp_path / "comparison.json").read_text())
    assert cmp.out_file == str(tmp_path / "comparison.json")
    assert result["label"] == "clean_reference" and list(result["baselines"]) == ["cubic"]
