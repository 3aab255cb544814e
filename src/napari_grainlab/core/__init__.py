"""Headless engine of napari-grainlab.

Nothing under ``napari_grainlab.core`` imports Qt, napari or magicgui, so everything here
runs in scripts, on clusters and in tests without a display.
"""
