"""One module per demo recipe: what belongs to one demo (its dataset assembly, its cached model, its defaults)."""
