"""Import models into the BentoML model store: `python import_models.py --help`. The command line lives in
`inference.importer` (installed from the package as `inference-import`); this file keeps `python import_models.py`
working in a checkout."""

import sys

from inference.importer import main, recognise_family

__all__ = ["main", "recognise_family"]

if __name__ == "__main__":
    sys.exit(main())
