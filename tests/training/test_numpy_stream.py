"""The TorchIO-free patch stream (bare GPU machines): same pairing, determinism, resumption."""

from __future__ import annotations

import subprocess
import sys

import torch

from bids_enhance.training import NumpyPatchStream, PairedPatchStream, PatchGeometry

SR = PatchGeometry(scale=2, patch_size=(16, 16, 16))


def _stream(vols, cls=NumpyPatchStream, seed=3, **kw):
    kw.setdefault("samples_per_volume", 3)
    kw.setdefault("queue_length", 4)
    return cls(vols, degradation=kw.pop("degradation", "sr-box-x2"), geometry=kw.pop(
        "geometry", SR), seed=seed, **kw)


def test_x2_pairs_are_exact_box_averages_inside_the_head(train_volumes):
    stream = _stream(train_volumes)
    lr, hr = stream.next_batch(6)
    assert lr.shape == (6, 1, 8, 8, 8) and hr.shape == (6, 1, 16, 16, 16)
    torch.testing.assert_close(lr, hr.reshape(6, 1, 8, 2, 8, 2, 8, 2).mean((3, 5, 7)),
                               atol=1e-6, rtol=0)
    # every target patch lies at an even origin of one volume, centred in its head mask
    for patch in hr[:, 0].numpy():
        found = [(v, o) for v in train_volumes if (o := _origin(v.data, patch)) is not None]
        assert found
        vol, origin = found[0]
        assert vol.mask[tuple(a + 8 for a in origin)]


def _origin(volume, patch):
    """Where ``patch`` sits in ``volume`` (brute force over even origins; tiny volumes)."""
    for i in range(0, volume.shape[0] - 15, 2):
        for j in range(0, volume.shape[1] - 15, 2):
            for k in range(0, volume.shape[2] - 15, 2):
                if (volume[i:i + 16, j:j + 16, k:k + 16] == patch).all():
                    return (i, j, k)
    return None


def test_same_records_and_rounds_as_the_torchio_stream(train_volumes):
    ours = _stream(train_volumes, degradation="sr-box-x2-rician")
    theirs = _stream(train_volumes, cls=PairedPatchStream, degradation="sr-box-x2-rician")
    assert ours.records == theirs.records and len(ours) == len(theirs)


def test_deterministic_resumable_and_sharded(train_volumes):
    a = _stream(train_volumes).take(10)  # more than one round (6 patches per round)
    b = _stream(train_volumes).take(10)
    assert all(torch.equal(x[1], y[1]) and torch.equal(x[0], y[0]) for x, y in zip(a, b,
                                                                                  strict=True))
    resumed = _stream(train_volumes)
    resumed.load_state_dict({"position": 7, "seed": 3, "round_size": resumed.round_size})
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a[7:], resumed.take(3), strict=True))
    whole = _stream(train_volumes).next_batch(4)[1]
    parts = [_stream(train_volumes).next_batch(2, rank=r, world_size=2)[1] for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)


def test_runs_where_torchio_cannot_be_imported():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torchio', 'nibabel', 'nipype'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.path.insert(0, 'tests/training')\n"
        "from training_helpers import volumes\n"
        "from bids_enhance.training import NumpyPatchStream, PatchGeometry\n"
        "s = NumpyPatchStream(volumes(1), degradation='sr-box-x2', seed=1,\n"
        "                     geometry=PatchGeometry(scale=2, patch_size=(8, 8, 8)),\n"
        "                     samples_per_volume=2, queue_length=2)\n"
        "lr, hr = s.next_batch(3)\n"
        "print(tuple(lr.shape), tuple(hr.shape), 'torchio' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "(3, 1, 4, 4, 4) (3, 1, 8, 8, 8) False"
