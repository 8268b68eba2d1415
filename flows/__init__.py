"""Orchestration: the stage registry, case folders and their dvc.yaml, Prefect flows and the eym-edit CLI."""
