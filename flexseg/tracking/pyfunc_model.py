"""The MLflow model `mode=export` writes, as MLflow's "models from code": this file *is* the model.

`mlflow.pyfunc.save_model(python_model=<this file>)` copies it into the model folder and loading runs
it (`mlflow.models.set_model` below): nothing is pickled. `load_context` reads the Keras file artifact
with `safe_mode=True` (`flexseg.inference.checkpoint.load_model_file`) and the colour / tiling settings
from the model config (`flexseg.inference.serving.ServingOptions`); `predict` is
`flexseg.inference.serving.Segmenter.predict`. flexseg itself travels in the model's `code/` folder.
Not imported by flexseg: only `flexseg.tracking.export` names this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import mlflow
from mlflow.pyfunc import PythonModel, PythonModelContext

from flexseg.inference.checkpoint import load_model_file
from flexseg.inference.serving import Segmenter, ServingOptions
from flexseg.tracking.export import KERAS_ARTIFACT


class FlexsegSegmenter(PythonModel):
    """Images of any size -> label maps, or probabilities with `params={"output": "probabilities"}`."""

    # `model_input` has no type hint on purpose: MLflow would derive an input schema from one and then
    # accept only that form (a DataFrame column, or one tensor shape); the saved signature has none. This
    # MLflow switch (ChatModel's) skips wrapping `predict` for type-hint validation, and its warning.
    _skip_type_hint_validation = True

    def load_context(self, context: PythonModelContext) -> None:
        model = load_model_file(Path(context.artifacts[KERAS_ARTIFACT]), key="the MLflow model's keras_model")
        self._segmenter = Segmenter(model, ServingOptions.from_dict(context.model_config))

    def predict(self, context: PythonModelContext, model_input, params: Optional[dict[str, Any]] = None):  # type: ignore[no-untyped-def]
        """Images (see `flexseg.inference.serving.images_from_input`) -> labels or probabilities."""
        return self._segmenter.predict(model_input, output=(params or {}).get("output", "labels"))


mlflow.models.set_model(FlexsegSegmenter())
