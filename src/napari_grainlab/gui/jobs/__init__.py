"""Jobs the docks share, detached from any one dock: prediction (:mod:`.predict`) and
training (:mod:`.train`).  Their worker bodies take plain data and touch neither Qt nor the
viewer; the docks run them through :class:`~napari_grainlab.gui.workers.GeneratorTask`."""
