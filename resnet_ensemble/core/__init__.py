"""Layer 2, the measurements: what the toolkit does to a model's blocks.

- ``interventions``: ``lesion``, ``reorder``, ``route`` and ``Parallel`` (masking hooks that
  restore the model on exit)
- ``engine``: ``evaluate_routes``, many routes over the same batches, sharing the work
- ``metrics``: error, top-5, loss, perplexity (and user callables)
- ``gradients``: ``path_length_gradients`` (exact, per path length) and
  ``sample_path_gradients`` (the paper's estimator)
- ``painters``: the layer-painting interventions for language models
- ``distributed``: torch.distributed set-up for sweeps and training

Imports ``blocks/`` and the top level.
"""
