"""Scaffolding for tests, benchmarks and trying the pipeline: tiny random models in the diffusers layout
(``models``) and throwaway DVC workspaces with puppet inputs (``workspace``). Not part of an edit."""
