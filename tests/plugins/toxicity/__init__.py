"""A fourth model family, as a team would bring its own: a toxicity classifier for texts (a linear model over the
words of a text), in this one folder, registered by its spec (`spec.py`) through INFERENCE_FAMILY_PLUGINS. No
file of the service is edited for it: tests/test_plugin_family.py serves it over the JSON API and the Open
Inference Protocol with version routing, the result cache, metrics and a shadow version."""
