"""PyTorch-named functional wrappers (see convprop.nn.functional)."""
