"""Anno web UI (gradio): layout and wiring only; every action calls an engine/training/evals function."""
