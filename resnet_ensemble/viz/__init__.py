"""Layer 1, the figures: tables in, figures out, never a model (importing it loads no torch).

- ``style``: the house style (sizes, fonts, legends, variant colours)
- ``plots``: the paper's figures and ``plot_all``, which draws what a folder of tables holds
- ``depth``, ``dynamics``, ``lm``: the depth series, the training dynamics, the LM figures

Imports the torch-free top level (tables, vocabularies) only.
"""
