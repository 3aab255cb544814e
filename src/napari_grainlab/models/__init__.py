"""Package data: the built-in model registry (``registry.json``) and the weights bundled with the wheel.

Read through :mod:`napari_grainlab.core.models.registry`; nothing here is imported as code.
"""
