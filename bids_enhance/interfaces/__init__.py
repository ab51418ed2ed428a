"""Nipype interfaces: each node reads its inputs, makes one call into the core packages, and
writes its outputs in its own folder (sinks excepted), so nipype's caching holds.

One module per core package it wraps: :mod:`.image` (:mod:`bids_enhance.image`),
:mod:`.degrade` (:mod:`bids_enhance.degrade`: simulated degradations), :mod:`.denoise`
(:mod:`bids_enhance.classical`), :mod:`.generative` (trained networks,
:mod:`bids_enhance.inference`), :mod:`.superres` (interpolation baselines), :mod:`.metrics`
(:mod:`bids_enhance.metrics`), :mod:`.bids` (sidecars and the derivatives sink,
:mod:`bids_enhance.bids`), :mod:`.reports` (:mod:`bids_enhance.reports`) and :mod:`.training`
(:mod:`bids_enhance.training`: train, model card, model sink).
"""
