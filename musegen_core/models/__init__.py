"""Model families (one module each), shared sampling functions, safetensors checkpoints and the registry."""
