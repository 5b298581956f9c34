"""fv: batch feature visualization for PyTorch models (Olah, Mordvintsev, Schubert, Distill 2017)."""
__version__ = "0.1.0"
