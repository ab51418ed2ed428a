"""Visual reports (model: fMRIPrep's ``sub-XX.html``).

- :mod:`~bids_enhance.reports.figures`: residual mosaic (matplotlib → small SVG).
- :mod:`~bids_enhance.reports.fragments`: HTML reportlets (IQM table, summary, about).
- :mod:`~bids_enhance.reports.assemble`: ``<out>/sub-XX.html`` with nireports and our spec.
- :mod:`~bids_enhance.reports.boilerplate`: ``logs/CITATION.{md,bib,html}`` without pandoc.
- :mod:`~bids_enhance.reports.group`: ``group_<suffix>.{tsv,html}``.

The nipype interfaces that write the reportlets are in :mod:`bids_enhance.interfaces.reports`.
"""
