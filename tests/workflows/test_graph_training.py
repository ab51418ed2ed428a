"""The training workflow's graph: nodes write in their own folders; one sink publishes."""

from __future__ import annotations

from tests.conftest import phantom, write_bids


def test_only_the_model_sink_writes_into_the_output_folder(tmp_path):
    from bids_enhance.workflows.training import init_training_wf

    bids = write_bids(tmp_path / "bids", {f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz": phantom(seed=i)
                                          for i in (1, 2)})
    images = {s: [bids / f"sub-{s}" / "anat" / f"sub-{s}_T1w.nii.gz"] for s in ("01", "02")}
    out = tmp_path / "out"
    partial = out / "models" / "m.partial"
    partial.mkdir(parents=True)
    (partial / "checkpoint.pt").write_bytes(b"")
    workflow = init_training_wf(
        train_images={"01": images["01"]}, val_images={"02": images["02"]}, bids_dir=bids,
        output_dir=out, model_name="m", config={"task": "gan3p"}, device="cpu",
        omp_nthreads=1, seeds={str(images["02"][0]): 3}, command=["bids_enhance"],
        resume=partial / "checkpoint.pt", base_dir=tmp_path / "work")
    nodes = {n.name: n for n in workflow._get_all_nodes()}
    train, card, sink = nodes["train"], nodes["model_card"], nodes["ds_model"]
    assert train.inputs.state_dir == str(out / "models" / "m.partial")
    assert "out_dir" not in card.inputs.copyable_trait_names()
    assert sink.inputs.out_dir == str(out / "models" / "m")
    assert sink.inputs.state_dir == str(out / "models" / "m.partial")
    flat = workflow._create_flat_graph()
    feeds = {(u.name, v.name) for u, v in flat.edges()}
    assert {("train", "ds_model"), ("merge_card", "ds_model"), ("model_card", "merge_card"),
            ("train", "model_card")} <= feeds
    # what the nodes hash names no path under the output folder: it is the sink's alone
    for node in nodes.values():
        if node.name == "ds_model":
            continue
        hashed = node.inputs.get_hashval()[0]
        assert str(out) not in repr(hashed), node.name
    assert train.inputs.resume == str(partial / "checkpoint.pt")  # given, but not hashed
