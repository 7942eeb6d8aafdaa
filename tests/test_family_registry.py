"""The family registry: one spec per family drives the settings' family names, the objectives, the protocol's
adapters, the importers and the versions pinned; a plug-in is named by INFERENCE_FAMILY_PLUGINS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inference.families.registry import BUILT_IN, FamilySpec, attribute, specs
from inference.http.oip.models import protocol_models
from inference.http.routes import protocol_family, registered_routes
from inference.settings import LATEST, Settings

PLUGIN = "tests.plugins.toxicity.spec:SPEC"
DUPLICATE = FamilySpec(name="skills", family="tests.plugins.toxicity.family:ToxicityFamily")


def test_the_built_in_families_are_registered_in_order_with_their_objectives():
    registered = specs()
    assert list(registered) == ["skills", "intent", "textpair"] == [attribute(ref).name for ref in BUILT_IN]
    assert {objective.name for spec in registered.values() for objective in spec.objectives} >= {
        "skills/single",
        "intent/single/ensemble",
        "textpair/single",
    }


def test_a_plugin_is_registered_beside_them_and_its_parts_are_found():
    registered = specs([PLUGIN])
    assert list(registered)[-1] == "toxicity"
    assert [model.family for model in protocol_models((PLUGIN,))] == ["skills", "intent", "textpair", "toxicity"]
    assert protocol_family([PLUGIN])("/v2/models/toxicity/infer") == "toxicity"
    assert protocol_family([PLUGIN])("/v2/models/skill-leadership/infer") == "skills"
    assert protocol_family()("/v2/models/toxicity/infer") == "unknown"  # not registered without the setting
    settings = Settings(family_plugins=[PLUGIN], families=["toxicity"])
    routes = [(spec.template, spec.family, spec.endpoint) for spec in registered_routes(settings)]
    assert routes[-2:] == [
        ("/api/v1/toxicity/score", "toxicity", "single"),
        ("/api/v1/toxicity/score/batch", "toxicity", "batch"),
    ]
    assert ("/api/v1/skills/infer/batch", "skills", "batch") in routes  # the built-in families' routes, as theirs


def test_settings_name_only_registered_families():
    with pytest.raises(ValidationError, match=r"families: unknown families \['toxicity'\]"):
        Settings(families=["toxicity"])
    with pytest.raises(ValidationError, match=r"shadow: unknown families \['nope'\]"):
        Settings(shadow={"nope": "v1.0.0"})
    with pytest.raises(ValidationError, match="routes: unknown family 'nope'"):
        Settings(routes={"nope": {"v1.0.0": 100}})
    with pytest.raises(ValidationError, match=r"family_plugins: no\.such\.module:SPEC: cannot import it"):
        Settings(family_plugins=["no.such.module:SPEC"])
    with pytest.raises(ValidationError, match="expected a FamilySpec, got function"):
        Settings(family_plugins=["tests.plugins.toxicity.schema:one_request"])


def test_two_families_of_one_name_are_refused(monkeypatch):
    monkeypatch.setattr("tests.plugins.toxicity.spec.DUPLICATE", DUPLICATE, raising=False)
    with pytest.raises(ValueError, match="a family named 'skills' is registered already"):
        specs(["tests.plugins.toxicity.spec:DUPLICATE"])


def test_one_mapping_pins_every_familys_version_over_the_older_settings():
    settings = Settings(
        _env_file=None, model_versions={"skills": "v2.0.0"}, skills_version="v1.0.0", intent_version="v1.1.0"
    )
    assert settings.version_of("skills") == "v2.0.0"  # the mapping wins
    assert settings.version_of("intent") == "v1.1.0"  # the older setting is still read
    assert settings.version_of("textpair") == LATEST
    # A family no setting names serves its registration's default version.
    assert Settings(_env_file=None, family_plugins=[PLUGIN]).version_of("toxicity") == "v1.0.0"


def test_the_built_in_models_routes_are_the_paths_the_clients_call():
    from inference.http import paths

    registered = specs()
    assert registered["skills"].models_route == paths.SKILLS_MODELS_ROUTE
    assert registered["textpair"].models_route == paths.MODEL_INFO_ROUTE
    assert registered["intent"].models_route is None
