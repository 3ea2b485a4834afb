"""Anno engine: models, tokenizer, generation, quantization, checkpoints and Hub I/O. No gradio here."""
