"""Dock widgets, one module per dock (referenced from ``napari.yaml``).

Modules are imported by napari on demand, so importing this package stays cheap.
"""
