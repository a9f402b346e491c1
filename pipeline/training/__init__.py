"""Building and measuring the models: `prepare` (media -> face crops framed by the engine),
`data` and `augment` (samples and what training does to them), `backbones` and `torch_weights`
(ImageNet starting points), `train` (one member), `calibration` and `ensemble_fit` (the shipped
ensemble), `evaluate` and `plots` (metrics and figures), and `cli` (their commands)."""
