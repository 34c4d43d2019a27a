"""Pool-based active learning: acquisition ``scores``, MC dropout without T x memory (``mc``), the batched pool
scorer (``pool``), diversity methods (``diversity``), batch-aware Bayesian ones (``batchbald``), the registry of
query strategies (``strategies``), the loop with its saved round ``state``, the retrained model (``learner``) and
the human annotator's folder (``annotator``)."""
