"""Shared library of the Edit-Your-Motion pipeline: skeletons, media and table I/O, case
manifests, parameters, and the synthetic "puppet world" that feeds tests and benchmarks."""

__version__ = "0.1.0"
