"""Label quality: agreement between labelers, consensus rankings and gold-item accuracy.

``agreement`` and ``consensus`` are pure functions over plain rankings (lists of tiers of ids), so
they are tested on hand-made labels; ``gold`` and ``consensus.consensus_rankings`` read a project.
"""
