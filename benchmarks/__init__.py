"""Side-by-side timing of convprop against PyTorch CPU (run ``python -m benchmarks``)."""
