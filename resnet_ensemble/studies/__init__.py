"""Layer 4, the studies: a model and data in, a table (and its figures) out.

- ``experiment``: a model spec plus a dataset, opened once
- ``sweeps``: deletions and reorderings (``study_sweep``; Fig. 3, 5a, 5b)
- ``subnetworks``: path counts and evaluated sub-networks (Fig. 6a)
- ``gradient_analysis``: gradient per path length (Fig. 6b, 6c)
- ``proxies``: cheap per-block measures beside lesion damage
- ``training`` (+ ``training_report``): He et al.'s recipe, stochastic depth, effective paths
- ``effective_path_eval``, ``depth_series``, ``dynamics``: the series built on the above
- ``reproduce``: the paper's figures, stage by stage, from the entries above

Imports every layer below, and ``viz/`` to draw a study's own report.
"""
