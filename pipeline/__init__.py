"""Deepfake analysis: media -> frames -> faces -> scores -> verdict -> store -> pages.

- `pipeline.engine`: the analysis itself (media, faces, ensemble, verdict, explanation maps,
  `Engine`).
- `pipeline.training`: data preparation, training, calibration, ensemble fit and evaluation.
- `pipeline.app`: the dashboard's services (history store, analysis service, exports, charts,
  model card).
- `pipeline.results`, `pipeline.config`, `pipeline.errors`: the plain data, settings and errors
  every layer shares. `pipeline.cli` is the command line over all of them.
"""
