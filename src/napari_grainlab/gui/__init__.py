"""napari docks of napari-grainlab: the only package that imports Qt, napari and magicgui.

One package per dock, each a ``dock.py`` with the dock widget plus small panels:
``annotate``, ``train``, ``predict``, ``measure`` and ``synthesize`` (the docks never import each
other).  What they share:

``jobs/``
    the prediction and training jobs several docks run (worker bodies without Qt or viewer);
``workers``
    runs the headless core generators in napari thread workers (stop flags, progress, errors →
    notifications);
``_forms``
    forms generated from the metadata of option dataclasses;
``_layers``
    layer roles in ``layer.metadata["grainlab"]``, naming rules, the pixel size of a layer;
``_widgets``
    the docks' common styles and small widgets (sections, status lines, dialogs, number format);
``_napari_compat``
    every reach into napari internals, version-guarded;
``_engine`` / ``_settings``
    loading torch inside napari; the recent models list.
"""
