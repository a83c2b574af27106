"""blocks.submodules: typed access to a model's children, checked against plain attribute
access on small torch modules."""

import pytest
from torch import nn

from resnet_ensemble.blocks.submodules import (
    int_attribute,
    module_sequence,
    optional_submodule,
    tensor_fn,
)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)
        self.stage = nn.Sequential(nn.ReLU(), nn.Identity())
        self.se = None
        self.image_size = 32
        self.flag = True

    def head(self, h):
        return h


def test_children_are_the_attributes_themselves():
    net = _Net()
    assert optional_submodule(net, "conv") is net.conv
    assert optional_submodule(net, "se") is None
    assert module_sequence(net.stage) is net.stage
    assert list(module_sequence(net.stage)) == list(net.stage)
    assert int_attribute(net.conv, "in_channels") == 3
    assert int_attribute(net, "image_size") == 32
    assert tensor_fn(net, "head") == net.head
    assert tensor_fn(net, "conv") is net.conv


def test_what_is_not_the_kind_asked_for_is_refused_in_one_line():
    net = _Net()
    with pytest.raises(TypeError, match="_Net.image_size is a int, not a module or None"):
        optional_submodule(net, "image_size")
    with pytest.raises(TypeError, match="Conv2d is not a Sequential or ModuleList"):
        module_sequence(net.conv)
    with pytest.raises(TypeError, match="_Net.flag is a bool, not an int"):
        int_attribute(net, "flag")
    with pytest.raises(TypeError, match="_Net.image_size is a int, not callable"):
        tensor_fn(net, "image_size")
    with pytest.raises(AttributeError):
        optional_submodule(net, "missing")
