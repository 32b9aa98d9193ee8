"""The float engine, `float-ranks` (format 2's): the model in float, each token named by its rank
under a drift margin so that another machine whose logits differ by less than half of it decodes
the same. For models the exact engine does not cover, or `--engine float`.

    engine.py     the engine as the pipeline meets it (`RanksEngine`)
    decoder.py    greedy decoding of chunk groups in a fixed batch shape, naming or picking tokens
    ranking.py    how a token is named (rank, and hash bits near ties) and found again
"""
