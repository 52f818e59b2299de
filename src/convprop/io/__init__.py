"""Files without pickle: safetensors and JSON, written atomically and reproducibly."""
