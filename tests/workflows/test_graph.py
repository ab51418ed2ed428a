"""Workflow graphs for option combinations: built, never run."""

import itertools

import pytest

from bids_enhance.workflows.base import init_bids_enhance_wf, workflow_name
from bids_enhance.workflows.spec import ChainSpec


def _build(tiny_bids, tmp_path, **kwargs):
    from bids_enhance.bids.layout import collect_images, make_layout

    subjects = collect_images(make_layout(tiny_bids), suffixes=kwargs.pop("suffixes", ["T1w"]))
    seeds = {str(p): i for i, p in enumerate(p for v in subjects.values() for p in v)}
    options = {"enhance": ["denoise"], "denoise_method": "prinlm", "noise_model": "rician",
               "device": "cpu", "omp_nthreads": 1, "random_seed": 1, **kwargs}
    return init_bids_enhance_wf(subjects=subjects, bids_dir=tiny_bids,
                                output_dir=tmp_path / "out", spec=ChainSpec(**options),
                                seeds=seeds, base_dir=tmp_path / "work")


@pytest.mark.parametrize(("method", "noise_model", "device", "sloppy"), list(itertools.product(
    ["prinlm", "sanlm"], ["rician", "gaussian"], ["cpu", "cuda:1"], [False, True])))
def test_graph_builds_for_every_option_combination(tiny_bids, tmp_path, method, noise_model,
                                                   device, sloppy):
    wf = _build(tiny_bids, tmp_path, denoise_method=method, noise_model=noise_model,
                device=device, sloppy=sloppy)
    names = wf.list_node_names()
    assert wf.name == workflow_name() and wf.name.startswith("bids_enhance_0_1")
    denoise_nodes = [n for n in names if n.endswith("denoise_wf.denoise")]
    assert len(denoise_nodes) == 4  # sub-01 + three T1w of sub-02
    node = wf.get_node(denoise_nodes[0])
    assert node.inputs.method == method and node.inputs.noise_model == noise_model
    assert node.inputs.device == device and node.inputs.use_gpu == (device != "cpu")
    assert node.inputs.sloppy == sloppy
    wf._create_flat_graph()  # connections are valid


def test_one_subworkflow_per_subject_and_image(tiny_bids, tmp_path):
    wf = _build(tiny_bids, tmp_path, suffixes=["T1w", "T2w"])
    names = wf.list_node_names()
    assert {n.split(".")[0] for n in names} == {"sub_01_wf", "sub_02_wf"}
    images = {n.split(".")[1] for n in names  # (ds_*_wf: the subject's output sinks)
              if n.startswith("sub_02_wf.") and n.split(".")[1].endswith("_wf")
              and not n.split(".")[1].startswith("ds_")}
    assert images == {"ses_a_run_1_T1w_wf", "ses_a_run_2_T1w_wf", "ses_b_T1w_wf",
                      "ses_b_T2w_wf"}
    sinks = [wf.get_node(n) for n in names if n.endswith("ds_image")]
    assert {s.inputs.desc for s in sinks} == {"denoised"}


def test_methods_text_cites_the_chosen_method(tiny_bids, tmp_path):
    prinlm = _build(tiny_bids, tmp_path).visit_desc()
    sanlm = _build(tiny_bids, tmp_path, denoise_method="sanlm").visit_desc()
    assert "[@manjon2012]" in prinlm and "PRI-NLM" in prinlm and "@coupe2010" in prinlm
    assert "[@manjon2010" in sanlm and "SANLM" in sanlm
    assert prinlm.count("Results included in this manuscript") == 1


def test_thread_device_and_gpu_inputs_do_not_change_hashes():
    from bids_enhance.interfaces.denoise import ClassicalDenoise

    spec = ClassicalDenoise.input_spec()
    for name in ("device", "omp_nthreads", "use_gpu"):
        assert spec.trait(name).nohash, name
    for name in ("method", "noise_model", "sigma", "sloppy", "in_file"):
        assert not spec.trait(name).nohash, name


def test_preproc_representatives_one_per_subject_session_and_suffix(tmp_path):
    from pathlib import Path

    from bids_enhance.workflows.base import preproc_representatives

    images = [Path(f"/d/sub-01/ses-{s}/anat/sub-01_ses-{s}_{e}_{x}.nii.gz")
              for s in ("1", "2") for e in ("acq-fast_run-2", "acq-fast_run-1", "run-1")
              for x in ("T1w", "T2w")]
    chosen = preproc_representatives(images)
    assert sorted(chosen.values()) == ["sub-01_ses-1_T1w.nii.gz", "sub-01_ses-1_T2w.nii.gz",
                                       "sub-01_ses-2_T1w.nii.gz", "sub-01_ses-2_T2w.nii.gz"]
    assert {p.name for p in chosen} == {f"sub-01_ses-{s}_acq-fast_run-1_{x}.nii.gz"
                                        for s in ("1", "2") for x in ("T1w", "T2w")}
    assert preproc_representatives([Path("/d/sub-02/anat/sub-02_T1w.nii.gz")]) == {
        Path("/d/sub-02/anat/sub-02_T1w.nii.gz"): "sub-02_T1w.nii.gz"}


def test_fmriprep_compat_and_simulate_exclude_each_other(tiny_bids, tmp_path, capsys):
    from bids_enhance.cli.parser import parse_args

    with pytest.raises(SystemExit):
        parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--fmriprep-compat",
                    "--simulate", "noise-rician-3"])
    assert "exclude each other" in capsys.readouterr().err


@pytest.mark.parametrize("options", [{"fmriprep_compat": True},
                                     {"simulate": "noise-rician-3"}], ids=["compat", "simulate"])
def test_command_line_and_run_id_reach_every_image_sidecar(tiny_bids, tmp_path, options):
    run = {"CommandLine": "bids_enhance /data /out participant --sloppy",
           "RunId": "20261203-101010_0c9d1f1e-aaaa-bbbb-cccc-123456789abc"}
    wf = _build(tiny_bids, tmp_path, command_line=run["CommandLine"], run_id=run["RunId"],
                **options)
    names = wf.list_node_names()
    sinks = [wf.get_node(n) for n in names
             if n.rsplit(".", 1)[1] in {"ds_image", "ds_preproc", "ds_degraded"}]
    kinds = {s.name for s in sinks}
    assert kinds == ({"ds_image", "ds_preproc"} if "fmriprep_compat" in options
                     else {"ds_image", "ds_degraded"})
    for sink in sinks:
        assert {k: sink.inputs.meta_dict.get(k) for k in run} == run, sink.fullname
    # not an input of the cached sidecar node: a new run id must not recompute it (and the
    # reportlets made from it)
    sidecar = wf.get_node(next(n for n in names if n.endswith(".sidecar")))
    assert run["RunId"] not in repr(sidecar.inputs.get())


def test_without_a_run_sidecars_name_none(tiny_bids, tmp_path):
    wf = _build(tiny_bids, tmp_path)
    sinks = [wf.get_node(n) for n in wf.list_node_names() if n.endswith(".ds_image")]
    assert sinks and all(not s.inputs.meta_dict for s in sinks)


def test_pdw_images_are_collected_and_measured_as_pd(tmp_path):
    # PDw is BIDS' proton-density-weighted suffix (PD its deprecated name): both are found, and
    # the IQMs order the tissues as for PD
    from tests.conftest import phantom, write_bids

    bids = write_bids(tmp_path / "bids", {
        "sub-01/anat/sub-01_PDw.nii.gz": phantom(noise=3.0, seed=1),
        "sub-02/anat/sub-02_PD.nii.gz": phantom(noise=3.0, seed=2),
        "sub-02/anat/sub-02_T1w.nii.gz": phantom(noise=3.0, seed=3),
    })
    wf = _build(bids, tmp_path, suffixes=["PDw", "PD"])
    names = wf.list_node_names()
    iqms = {n.split(".")[1]: wf.get_node(n).inputs.contrast for n in names
            if n.endswith(".iqms")}
    assert iqms == {"PDw_wf": "PD", "PD_wf": "PD"}


def test_auto_denoise_method_follows_each_image_contrast(tmp_path):
    # --denoise-method auto (the default): PRI-NLM for PDw/PD images, ODCT3D for the others,
    # decided per image; the summary names what each contrast got
    from tests.conftest import phantom, write_bids

    bids = write_bids(tmp_path / "bids", {
        "sub-01/anat/sub-01_PDw.nii.gz": phantom(noise=3.0, seed=1),
        "sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=3.0, seed=2),
        "sub-01/anat/sub-01_T2w.nii.gz": phantom(noise=3.0, seed=3),
    })
    wf = _build(bids, tmp_path, suffixes=["T1w", "T2w", "PDw"], denoise_method="auto")
    names = wf.list_node_names()
    methods = {n.split(".")[1]: wf.get_node(n).inputs.method for n in names
               if n.endswith("denoise_wf.denoise")}
    assert methods == {"PDw_wf": "prinlm", "T1w_wf": "odct3d", "T2w_wf": "odct3d"}
    text = wf.visit_desc()
    assert "(PRI-NLM)" in text and "(ODCT3D)" in text
    summary = wf.get_node("sub_01_wf.summary")
    assert summary.inputs.denoise_method == "auto"
    # an explicit method is applied to every contrast
    wf = _build(bids, tmp_path, suffixes=["T1w", "PDw"], denoise_method="odct3d")
    assert {wf.get_node(n).inputs.method for n in wf.list_node_names()
            if n.endswith("denoise_wf.denoise")} == {"odct3d"}
