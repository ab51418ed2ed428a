"""Nipype interfaces for simulation, generative inference, evaluation and training.

The participant workflow (simulation mode) and the training workflow share these nodes with
the load/normalise nodes of :mod:`bids_enhance.interfaces.image`.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.utils.filemanip import fname_presuffix, split_filename

from bids_enhance.steps import GENERATIVE


class _SimulateDegradationInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="clean image (normalised intensities)")
    preset = traits.Str(mandatory=True, desc="degradation preset (bids_enhance.degrade.PRESETS)")
    seed = traits.Int(mandatory=True, desc="seed of this image's draw (replayable)")


class _SimulateDegradationOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="degraded image (its own grid for low-resolution presets)")
    out_reference = File(exists=True, desc="the clean image on the grid outputs are compared on")
    out_record = File(exists=True, desc="JSON records that replay the degradation exactly")


class SimulateDegradation(SimpleInterface):
    """Degrade a clean image as the models were trained (low resolution, noise, motion)."""

    input_spec = _SimulateDegradationInputSpec
    output_spec = _SimulateDegradationOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.degrade import degrade
        from bids_enhance.utils import dump_json

        img = nib.load(self.inputs.in_file)
        clean = img.get_fdata(dtype=np.float32)
        data, affine, records = degrade(clean, img.affine, steps=self.inputs.preset,
                                        rng=np.random.default_rng(self.inputs.seed))
        reference = clean
        for record in records:  # odd axes lose their last voxel before a x2 reduction
            crop = record.get("cropped")
            if crop:
                reference = reference[tuple(slice(0, s - c) for s, c in
                                            zip(reference.shape, crop, strict=True))]
        cwd = Path(runtime.cwd)
        out_file = fname_presuffix(self.inputs.in_file, suffix="_degraded.nii.gz", newpath=cwd,
                                   use_ext=False)
        out_ref = fname_presuffix(self.inputs.in_file, suffix="_reference.nii.gz", newpath=cwd,
                                  use_ext=False)
        nib.save(nib.Nifti1Image(data.astype(np.float32), affine), out_file)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(reference), img.affine), out_ref)
        out_record = cwd / "degradation.json"
        out_record.write_text(dump_json({"Simulation": {
            "Preset": self.inputs.preset, "Seed": self.inputs.seed, "Records": records}}))
        self._results.update(out_file=out_file, out_reference=out_ref,
                             out_record=str(out_record))
        return runtime


class _GenerativeEnhanceInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to enhance")
    checkpoint = File(exists=True, mandatory=True, desc="bids_enhance model checkpoint")
    expected_sha256 = traits.Str(desc="refuse the checkpoint unless its sha256 matches")
    consistency = traits.Enum("measure", "project", "off", usedefault=True,
                              desc="x2 models: measure the data consistency, or enforce it")
    seed = traits.Int(0, usedefault=True, desc="diffusion sampling seed")
    step = traits.Str("generative", usedefault=True,
                      desc="name of the enhancement step, recorded in out_info")
    model_summary = traits.Dict(desc="model-card summary recorded in out_info")
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="torch CPU threads")
    mem_gb = traits.Float(desc="memory budget for choosing the patch size", nohash=True)
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="tell nipype's MultiProc this node occupies a GPU")


class _GenerativeEnhanceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="enhanced image (x2 grid for super-resolution models)")
    out_info = File(exists=True, desc="JSON: model, sha256, device, patching, consistency")


class GenerativeEnhance(SimpleInterface):
    """Run a trained model on one image (whole volume or blended patches)."""

    input_spec = _GenerativeEnhanceInputSpec
    output_spec = _GenerativeEnhanceOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np
        import torch

        from bids_enhance.inference import run_checkpoint
        from bids_enhance.utils import dump_json

        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        img = nib.load(self.inputs.in_file)
        out, affine, info = run_checkpoint(
            self.inputs.checkpoint, img.get_fdata(dtype=np.float32), img.affine,
            expected_sha256=(self.inputs.expected_sha256 or None)
            if isdefined(self.inputs.expected_sha256) else None,
            device=self.inputs.device, seed=self.inputs.seed,
            consistency=None if self.inputs.consistency == "off" else self.inputs.consistency,
            mem_budget_gb=self.inputs.mem_gb if isdefined(self.inputs.mem_gb) else None)
        info["step"] = self.inputs.step
        info["kind"] = GENERATIVE
        if isdefined(self.inputs.model_summary):
            info["model_card"] = dict(self.inputs.model_summary)
        info.update(shape_in=list(img.shape[:3]), shape_out=list(out.shape),
                    voxel_size_in=_voxel_sizes(img.affine), voxel_size_out=_voxel_sizes(affine))
        out_file = fname_presuffix(self.inputs.in_file, suffix="_enhanced.nii.gz",
                                   newpath=runtime.cwd, use_ext=False)
        result = nib.Nifti1Image(out.astype(np.float32), affine)
        # the input's transform codes (scanner/aligned …), on the new grid when super-resolved
        result.set_sform(affine, int(img.header["sform_code"]) or 1)
        result.set_qform(affine, int(img.header["qform_code"]) or 1)
        result.header.set_xyzt_units(*img.header.get_xyzt_units())
        nib.save(result, out_file)
        out_info = Path(runtime.cwd) / "inference_info.json"
        out_info.write_text(dump_json(info))
        self._results.update(out_file=out_file, out_info=str(out_info))
        return runtime


def _voxel_sizes(affine) -> list[float]:
    import numpy as np

    return [float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)]


class _CompareToReferenceInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="enhanced image")
    reference = File(exists=True, mandatory=True, desc="clean image on the same grid")
    in_degraded = File(exists=True, desc="the degraded input, to score baselines as well")
    baselines = traits.List(traits.Enum("identity", "trilinear", "cubic", "kspace"),
                            desc="baselines scored on in_degraded: identity (the degraded input "
                                 "itself, same-grid tasks), trilinear/cubic/kspace (x2 tasks)")
    lowres_method = traits.Str("box", usedefault=True, desc="geometry of the x2 degradation")
    label = traits.Str(desc="name of the image in the output (e.g. its BIDS name)")


class _CompareToReferenceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON: PSNR, 3D SSIM, NRMSE, HFEN per image and baseline")


class CompareToReference(SimpleInterface):
    """Full-reference metrics in the head mask (evaluation protocol of METHODS.md)."""

    input_spec = _CompareToReferenceInputSpec
    output_spec = _CompareToReferenceOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.image.mask import head_mask
        from bids_enhance.metrics.quality import evaluate
        from bids_enhance.utils import dump_json

        ref = nib.load(self.inputs.reference).get_fdata(dtype=np.float32)
        out = nib.load(self.inputs.in_file).get_fdata(dtype=np.float32)
        if out.shape != ref.shape:
            raise ValueError(f"{self.inputs.in_file}: shape {out.shape} differs from the "
                             f"reference's {ref.shape}")
        mask = head_mask(ref)
        result = {"label": self.inputs.label if isdefined(self.inputs.label)
                  else split_filename(self.inputs.in_file)[1],
                  "protocol": "reference / its 99.9th percentile in the head mask; metrics in "
                              "the head mask; 3D SSIM (Gaussian σ 1.5)",
                  "enhanced": evaluate(ref, out, mask=mask), "baselines": {}}
        if isdefined(self.inputs.in_degraded) and isdefined(self.inputs.baselines):
            deg_img = nib.load(self.inputs.in_degraded)
            degraded = deg_img.get_fdata(dtype=np.float32)
            for kind in self.inputs.baselines:
                if kind == "identity":
                    base = degraded
                else:
                    from bids_enhance.inference import upsample_baseline

                    base, _ = upsample_baseline(degraded, deg_img.affine, kind=kind,
                                                method=self.inputs.lowres_method)
                if base.shape == ref.shape:
                    result["baselines"][kind] = evaluate(ref, base, mask=mask)
        out_file = Path(runtime.cwd) / "comparison.json"
        out_file.write_text(dump_json(result))
        self._results["out_file"] = str(out_file)
        return runtime


class _TrainModelInputSpec(BaseInterfaceInputSpec):
    train_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="clean training images (normalised)")
    train_subjects = traits.List(traits.Str, mandatory=True, desc="subject of each image")
    val_files = InputMultiObject(File(exists=True), desc="held-out images (normalised)")
    val_subjects = traits.List(traits.Str, desc="subject of each held-out image")
    config = traits.Dict(mandatory=True, desc="TrainConfig fields")
    out_dir = Directory(mandatory=True, desc="where the checkpoint, CSVs and plot go")
    training_command = traits.List(traits.Str, desc="command line recorded in the checkpoint")
    resume = File(exists=True, desc="checkpoint of an interrupted run to continue")
    nproc_per_node = traits.Int(1, usedefault=True, nohash=True,
                                desc="processes (GPUs) for torchrun; 1 trains in this process")
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="torch CPU threads")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="tell nipype's MultiProc this node occupies a GPU")


class _TrainModelOutputSpec(TraitedSpec):
    checkpoint = File(exists=True, desc="trained checkpoint (self-describing)")
    out_result = File(exists=True, desc="JSON: metrics, wall time, iterations, device, paths")


class TrainModel(SimpleInterface):
    """Train one of the thesis' models (GAN, DISGAN, motion GAN, conditional DDPM)."""

    input_spec = _TrainModelInputSpec
    output_spec = _TrainModelOutputSpec

    def _run_interface(self, runtime):
        from bids_enhance.utils import dump_json

        inputs = self.inputs
        out_dir = Path(inputs.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        command = list(inputs.training_command) if isdefined(inputs.training_command) else None
        resume = inputs.resume if isdefined(inputs.resume) else None
        val_files = list(inputs.val_files) if isdefined(inputs.val_files) else []
        val_subjects = list(inputs.val_subjects) if isdefined(inputs.val_subjects) else []
        if inputs.nproc_per_node > 1:
            result = _train_torchrun(inputs, out_dir, command, resume, val_files, val_subjects,
                                     Path(runtime.cwd))
        else:
            import torch

            from bids_enhance.training import TrainConfig, train

            torch.set_num_threads(max(1, inputs.omp_nthreads))
            trained = train(_volumes(inputs.train_files, inputs.train_subjects),
                            config=TrainConfig.from_dict(dict(inputs.config)), out_dir=out_dir,
                            val_volumes=_volumes(val_files, val_subjects) or None,
                            resume=resume, training_command=command)
            result = trained.to_dict()
        out_result = Path(runtime.cwd) / "training_result.json"
        out_result.write_text(dump_json(result))
        self._results.update(checkpoint=str(out_dir / "checkpoint.pt"),
                             out_result=str(out_result))
        return runtime


def _volumes(files, subjects):
    import nibabel as nib
    import numpy as np

    from bids_enhance.training import TrainingVolume

    vols = []
    for path, subject in zip(files, subjects, strict=True):
        img = nib.load(path)
        vols.append(TrainingVolume(subject=subject, data=img.get_fdata(dtype=np.float32),
                                   affine=img.affine))
    return vols


def _train_torchrun(inputs, out_dir: Path, command, resume, val_files, val_subjects,
                    cwd: Path) -> dict:
    """Multi-GPU training: ``torchrun -m bids_enhance.training --spec spec.json``."""
    import subprocess
    import sys

    spec = {
        "config": dict(inputs.config), "out_dir": str(out_dir), "normalise": False,
        "train": [{"subject": s, "path": p} for p, s in zip(inputs.train_files,
                                                             inputs.train_subjects, strict=True)],
        "validation": [{"subject": s, "path": p} for p, s in zip(val_files, val_subjects,
                                                                  strict=True)],
        "resume": resume, "training_command": command,
    }
    spec_file = cwd / "torchrun_spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    from bids_enhance.utils import find_executable

    torchrun = find_executable("torchrun")
    cmd = ([torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]) + [
        "--standalone", f"--nproc_per_node={inputs.nproc_per_node}", "-m",
        "bids_enhance.training", "--spec", str(spec_file)]
    subprocess.run(cmd, check=True, cwd=cwd)
    return json.loads((out_dir / "result.json").read_text())


class _ModelCardInputSpec(BaseInterfaceInputSpec):
    out_dir = Directory(mandatory=True, desc="the model's folder (checkpoint, CSVs, plot)")
    model_name = traits.Str(mandatory=True, desc="name of the model")
    training_result = File(exists=True, mandatory=True, desc="TrainModel's JSON result")
    comparisons = InputMultiObject(File(exists=True), desc="CompareToReference JSONs")
    train_sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs used to train")
    val_sources = traits.List(traits.Str, desc="BIDS URIs held out for evaluation")
    command = traits.List(traits.Str, desc="the command line that trained the model")


class _ModelCardOutputSpec(TraitedSpec):
    out_json = File(exists=True, desc="model_card.json")
    out_markdown = File(exists=True, desc="model_card.md")


class ModelCard(SimpleInterface):
    """Write the model card: data, command, iterations, device, wall time, held-out metrics."""

    input_spec = _ModelCardInputSpec
    output_spec = _ModelCardOutputSpec

    def _run_interface(self, runtime):
        from bids_enhance.training.card import write_model_card

        inputs = self.inputs
        comparisons = [json.loads(Path(f).read_text())
                       for f in (inputs.comparisons if isdefined(inputs.comparisons) else [])]
        json_path, md_path = write_model_card(
            Path(inputs.out_dir), name=inputs.model_name,
            result=json.loads(Path(inputs.training_result).read_text()),
            comparisons=comparisons, train_sources=list(inputs.train_sources),
            val_sources=list(inputs.val_sources) if isdefined(inputs.val_sources) else [],
            command=list(inputs.command) if isdefined(inputs.command) else [])
        self._results.update(out_json=str(json_path), out_markdown=str(md_path))
        return runtime
