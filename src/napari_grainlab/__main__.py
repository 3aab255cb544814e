"""``python -m napari_grainlab`` runs the ``grainlab`` command line."""

import sys

from .cli import main

sys.exit(main())
