"""Layer 1, the torch foundation: what a residual block is, and how a model is taken apart.

- ``types``: ``Block``, ``Anatomy``, ``Transition``, ``CallContext``, the ``Adapter`` protocol
- ``registry``: ``anatomy``/``residual_blocks`` (the first adapter that recognises a model),
  ``register_adapter``, ``resolve_block`` (a block by index, from the end, or by name)
- ``builtin``: adapters for the toolkit's CIFAR ResNets and torchvision's ResNets and ViT
- ``adapters/``: timm's and Hugging Face's families, loaded on first use
- ``shapes``: each block's input and output shape, probed once (for validating orders)
- ``runtime``: device resolution and ``eval_mode``
- ``submodules``: typed access to a model's children for the adapters (torch's
  ``Module.__getattr__`` types every attribute ``Tensor | Module``)

Imports the torch-free top-level modules only.
"""
