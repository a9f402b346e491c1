"""The analysis engine, one module per stage: `media` (frames), `faces` (MTCNN, crops, tracks),
`ensemble` (the trained models score faces), `verdict` (per person and per media), `explain`
(explanation maps), and `analyze.Engine`, which runs them in order. `bench` times it."""
