"""Models: built from a YAML list of Keras layers, or loaded from `.keras` files."""

from distill.models.build import (build_layer, build_model, check_logits, layer_classes, load_model,
                                  saved_model_file)

__all__ = ["build_layer", "build_model", "check_logits", "layer_classes", "load_model",
           "saved_model_file"]
