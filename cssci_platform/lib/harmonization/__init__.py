"""ComBat harmonization across centers: our own fit/transform implementation (scikit-learn compatible).

`ComBat` is the transformer (see `combat.py` for inputs, outputs and the unseen-center policies);
`estimation.py` holds the statistics on plain arrays, `frame.py` the DataFrame validation.
`undersized_batches` lets a blocking check find too-small centers before a fit; `scope.py` decides what ComBat
harmonizes (feature classes left out, e.g. shape) and what it does with small centers (pool, unseen, error).

The names below are imported from their module on first use (`__init__.pyi` lists them): the study config imports
`settings.py`, and every run's definitions with it, without importing ComBat, scikit-learn or pandas.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
