"""Deepfake analysis engine: media -> frames -> faces -> scores -> verdict.

Stages, one module each: `media` (frames), `faces` (MTCNN, crops, tracks), `backbones` (ImageNet
CNNs), `detector` (the trained ensemble), `verdict` (aggregation and decision), `gradcam`
(explanations); `analyze.Engine` runs them in order.
"""
