"""[mem] vectors: trainable input rows fitted per chunk so that the model decodes the chunk by
itself (Kuratov et al. 2025). Either engine codes the chunks from them.

    optimize.py   fitting a group of chunks (the loss, the optimizer, the stopping rule)
    recipes.py    how to fit: the authors' recipe and memzip's (plain settings, no torch)
    fitting.py    fitting and rounding to storage, as the engines ask for it; what chunks cost without
    rounding.py   the storage's rounding seen by the optimizer, with a straight-through gradient
    chunking.py   cutting tokens into chunks by information (what each token costs the model)
"""
