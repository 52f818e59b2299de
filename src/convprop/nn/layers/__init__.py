"""The layers of ``convprop.nn``, one module per family (as ``torch.nn.modules``)."""
