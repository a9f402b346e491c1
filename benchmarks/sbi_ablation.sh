#!/usr/bin/env bash
# Self-blending ablation: MobileNetV2 trained on DFDC only, with and without self-blended
# pseudo-fakes; measured on DFDC val (seen manipulation) and GAN val (unseen generator).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DEEPFAKE_DATA_DIR:-../shared/data}
for sbi in 0 0.5; do
  .venv/bin/python -m pipeline train --backbone mobilenetv2 --data $D/dfdc-faces --out runs/ablation-sbi$sbi \
    --ensemble-dir runs/ablation-sbi$sbi/ensemble --train-per-class 1500 --val-per-class 300 --views 1 \
    --self-blend $sbi --trainable-blocks 5 --head-epochs 1 --epochs 3
  .venv/bin/python -m pipeline evaluate $D/dfdc-faces $D/gan-faces --split val --per-class 300 \
    --models-dir runs/ablation-sbi$sbi/ensemble --json runs/ablation-sbi$sbi/val.json
done
