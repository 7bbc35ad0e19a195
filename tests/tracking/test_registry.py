"""`flexseg.tracking.export` without a model: registry versions with score tags, `models:/` references back to
the Keras file, and the errors a user sees for a name, version or alias that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import seed_store

from flexseg.errors import FlexsegError


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    seed_store([f"tracking.uri={uri}"])
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(exp)
    client.set_terminated(run.info.run_id)
    model = tmp_path / "model"
    (model / "artifacts").mkdir(parents=True)
    (model / "artifacts" / "model.keras").write_bytes(b"PK")
    return client, run.info.run_id, model


def test_register_tags_versions_and_models_uris_resolve(store) -> None:  # type: ignore[no-untyped-def]
    from flexseg.tracking.export import fetch_registered_checkpoint, log_to_run, register_model

    client, run_id, model = store
    source = log_to_run(run_id, model)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert register_model("cells", source, run_id, {"test_mean_foreground_dice": "0.8"}) == "1"
    assert register_model("cells", source, run_id, {}) == "2"
    assert client.get_model_version("cells", "1").tags["test_mean_foreground_dice"] == "0.8"
    client.set_registered_model_alias("cells", "prod", "2")
    for uri in ("models:/cells/1", "models:/cells@prod", "models:/cells/latest"):
        path, found = fetch_registered_checkpoint(uri)
        assert path.name == "model.keras" and path.read_bytes() == b"PK" and found == run_id


@pytest.mark.parametrize("uri, match", [
    ("models:/cells/3", "'cells' has versions 1"),
    ("models:/cells@nope", "'cells' has versions 1"),
    ("models:/other/1", "'other' has no versions"),
    ("models:/cells/first", "models:/NAME/VERSION"),
])
def test_unknown_references_say_what_exists(store, uri: str, match: str) -> None:  # type: ignore[no-untyped-def]
    from flexseg.tracking.export import fetch_registered_checkpoint, log_to_run, register_model

    client, run_id, model = store
    register_model("cells", log_to_run(run_id, model), run_id, {})
    with pytest.raises(FlexsegError, match=match):
        fetch_registered_checkpoint(uri)


def test_a_name_the_registry_refuses_names_the_key(store) -> None:  # type: ignore[no-untyped-def]
    from flexseg.tracking.export import register_model

    _, run_id, model = store
    with pytest.raises(FlexsegError, match="tracking.register_as=''"):
        register_model("", str(model), run_id, {})
