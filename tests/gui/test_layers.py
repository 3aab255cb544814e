"""Layer roles live in layer.metadata["grainlab"], not in names (gui/_layers.py)."""

from __future__ import annotations

import numpy as np

from napari_grainlab.gui._layers import (
    is_prediction,
    layers_with_role,
    prediction_metadata,
    prediction_name,
    put_layer,
    role_metadata,
    role_name,
    role_of,
    set_role,
)


def test_roles_survive_renaming_and_are_found_by_source(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="a")
    ann = viewer.add_labels(np.zeros((8, 8), np.uint32), name=role_name("a", "annotation"),
                            metadata=role_metadata("annotation", "a"))
    assert ann.name == "a annotation" and role_of(ann) == "annotation"
    ann.name = "my grains"
    assert layers_with_role(viewer, "annotation", source="a") == [ann]
    assert layers_with_role(viewer, "annotation", source="b") == []
    user = viewer.add_labels(np.zeros((8, 8), np.uint32), name="b annotation")
    assert role_of(user) is None  # a name alone makes no role
    set_role(user, "proposal", "b")
    assert role_of(user) == "proposal" and not is_prediction(user)


def test_a_rerun_updates_the_renamed_prediction_and_never_a_users_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    meta = prediction_metadata("img", "models/m", role="grains", made_by="Predict dock")
    first = put_layer(viewer, "labels", np.ones((8, 8), np.uint32), role_name("img", "grains"), metadata=meta)
    assert is_prediction(first) and role_of(first) == "grains"
    first.name = "renamed by the user"
    second = put_layer(viewer, "labels", np.full((8, 8), 2, np.uint32), role_name("img", "grains"), metadata=meta)
    assert second is first and int(first.data.max()) == 2 and len(viewer.layers) == 1
    # a prediction of another image is another layer
    other = put_layer(viewer, "labels", np.ones((8, 8), np.uint32), "img2 grains",
                      metadata=prediction_metadata("img2", "models/m"))
    assert other is not first and len(viewer.layers) == 2
    # the user's own layer named like a prediction is never overwritten
    mine = viewer.add_labels(np.zeros((8, 8), np.uint32), name="img3 grains")
    name = prediction_name(viewer, "img3 grains")
    assert name == "img3 grains (prediction)"
    put_layer(viewer, "labels", np.ones((8, 8), np.uint32), name, metadata=prediction_metadata("img3", "m"))
    assert int(mine.data.max()) == 0 and len(viewer.layers) == 4
