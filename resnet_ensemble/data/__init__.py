"""Layer 1, the data: datasets as torchvision loads them, and token windows for LMs.

- ``datasets``: ``load_dataset``, ``make_loader``, ``dataset_info``; CIFAR, Fashion-MNIST,
  ImageNet folders, the embedded test subset, synthetic images
- ``text``: a text file tokenised into fixed windows with a model's tokenizer
- ``tensor_batches``: a small dataset held as one uint8 tensor, augmented a batch at a time

Imports the top level only (no model code).
"""
