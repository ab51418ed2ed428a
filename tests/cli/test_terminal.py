"""What the terminal says (issue 10): argument errors in one line, BIDS names, reused steps
said to be reused, a heartbeat while long steps run, no third-party INFO noise."""

from __future__ import annotations

import logging
import time
import types

import pytest

from bids_enhance.cli.parser import parse_args
from bids_enhance.cli.run import Progress, main
from tests.conftest import phantom, write_bids


@pytest.mark.parametrize("argv", [
    ["/no/such/dataset", "out", "participant"],
    ["bids", "out", "participant", "--nprocs", "x"],
    ["bids"],
])
def test_argument_errors_are_one_line_with_a_help_hint(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("bids_enhance: error: ") and "(see bids_enhance --help)" in err
    assert "usage:" not in err


def _node(fullname: str, name: str, *, ended: str | None = None, seconds: float = 1.5):
    runtime = types.SimpleNamespace(duration=seconds, endTime=ended)
    result = types.SimpleNamespace(runtime=runtime, outputs=types.SimpleNamespace(out_file="x"))
    return types.SimpleNamespace(fullname=fullname, name=name, result=result)


def test_progress_names_images_by_bids_name_and_says_what_was_reused(tmp_path, caplog):
    from datetime import datetime, timedelta

    source = tmp_path / "sub-02" / "ses-1" / "anat" / "sub-02_ses-1_T1w.nii.gz"
    progress = Progress()
    progress.set_images({"02": [source]})
    progress.FIRST_HEARTBEAT_S = 3600
    fullname = "bids_enhance_wf.sub_02_wf.ses_1_T1w_wf.denoise_wf.denoise"
    earlier = (datetime.now() - timedelta(hours=1)).isoformat()
    with caplog.at_level(logging.INFO, logger="bids_enhance"), progress:
        progress(_node(fullname, "denoise", ended=datetime.now().isoformat()), "end")
        progress(_node(fullname, "denoise", ended=earlier, seconds=181.7), "end")
    lines = caplog.messages
    assert "sub-02_ses-1_T1w: denoise finished in 1.5 s" in lines
    assert ("sub-02_ses-1_T1w: denoise reused from the work directory (it took 181.7 s in an "
            "earlier run)") in lines
    assert not any("sub_02" in line for line in lines)


def test_a_heartbeat_says_what_is_running_while_long_steps_run(tmp_path, caplog):
    progress = Progress()
    progress.set_images({"01": [tmp_path / "sub-01_T1w.nii.gz"]})
    progress.FIRST_HEARTBEAT_S = 0.05
    node = _node("wf.sub_01_wf.T1w_wf.denoise_wf.denoise", "denoise")
    with caplog.at_level(logging.INFO, logger="bids_enhance"), progress:
        progress(node, "start")
        time.sleep(0.4)
        progress(node, "end")
        beats = [m for m in caplog.messages if m.startswith("still running")]
        time.sleep(0.3)  # nothing runs: no heartbeat
    assert beats and "sub-01_T1w denoise (0 s)" in beats[0]
    # intervals double: 0.05, 0.1, 0.2 … so at most a few lines in 0.4 s
    assert len(beats) <= 4
    assert len([m for m in caplog.messages if m.startswith("still running")]) == len(beats)


@pytest.mark.slow
def test_a_run_and_its_rerun_as_the_user_sees_them(tmp_path, capfd):
    bids = write_bids(tmp_path / "bids", {
        "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz": phantom(noise=3.0)})
    argv = [str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
            "--sloppy", "--nprocs", "1"]
    assert main([*argv, "--skip-bids-validation"]) == 0
    first = capfd.readouterr().err
    assert "sub-02_ses-1_T1w: denoise finished in" in first
    assert "bidsschematools" not in first and "No schema path" not in first
    assert main(argv) == 0  # with the validator (if installed): still no third-party INFO
    second = capfd.readouterr().err
    assert "sub-02_ses-1_T1w: denoise reused from the work directory" in second
    assert "bidsschematools" not in second and "sub_02" not in second
