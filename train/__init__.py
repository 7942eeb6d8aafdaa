"""Training of the demo models on generated data: `python -m train <family> --version vX.Y.Z`."""
