"""SpecCLIP search engine core: readers, preprocessing, models, bundles, store and queries.

`engine` imports none of `indexer`, `training` or `app`; they all build on it.
"""

__version__ = "0.1.0"
