"""Human detectors behind the segmentation and pose stages: one module per backend."""
