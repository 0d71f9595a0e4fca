#!/usr/bin/env bash
# The README's main command: convert a bundled Google-format TensorFlow checkpoint into a
# PyTorch model directory (./demo-out), then prove numerical parity with TensorFlow's own
# forward pass, layer by layer. Run from anywhere; `make demo` sets up the venv first.
set -euo pipefail
cd "$(dirname "$0")/.."

CKPT=fixtures/checkpoints/pretraining   # written by TensorFlow: fixtures/make_fixtures.py

# 1. TF checkpoint -> model.safetensors + config.json + vocab.txt + conversion.json
bertconvert convert "$CKPT" --out demo-out --overwrite

# 2. Same tokens through TensorFlow and through the converted PyTorch model; exit 1 on mismatch.
bertconvert verify "$CKPT" demo-out
