"""The inference service's package: the Python client (`inference.client`), the serving layer, the model families,
the model store's importer and the batch scorer. Importing it loads nothing: `pip install inference[client]`
installs only what the client needs."""
