"""napari docks of napari-grainlab: the only package that imports Qt, napari and magicgui.

``workers`` runs the headless core generators in napari thread workers (stop flags, progress,
errors → notifications); ``widgets`` holds one module per dock.
"""
