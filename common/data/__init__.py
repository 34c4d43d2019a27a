"""Data: the built-in phantoms (:mod:`common.data.phantoms`), loaders of real datasets (:mod:`common.data.datasets`),
in-memory caching (:mod:`common.data.cache`) and joint image / mask transforms (:mod:`common.data.transforms`)."""
