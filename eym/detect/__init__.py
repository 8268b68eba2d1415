"""Human detectors behind the segmentation and pose stages and the evaluation: ``pose`` and
``segmentation`` pick the configured backend, one module per backend."""
