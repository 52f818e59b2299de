"""Neural-network building blocks with PyTorch's names (``convprop.nn.Conv2d`` etc.)."""

from convprop.nn import functional, init, parallel
from convprop.nn.containers import ModuleDict, ModuleList, Sequential
from convprop.nn.layers.activation import (
    ELU,
    GELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
)
from convprop.nn.layers.conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from convprop.nn.layers.dropout import Dropout, Dropout2d
from convprop.nn.layers.linear import Flatten, Identity, Linear, Unflatten
from convprop.nn.layers.loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, NLLLoss
from convprop.nn.layers.normalization import BatchNorm1d, BatchNorm2d
from convprop.nn.layers.pooling import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
    MaxUnpool1d,
    MaxUnpool2d,
)
from convprop.nn.layers.resample import (
    Decimate1d,
    Decimate2d,
    Dilate1d,
    Dilate2d,
    PixelShuffle,
    PixelUnshuffle,
    Upsample,
)
from convprop.nn.layers.sync_batchnorm import SyncBatchNorm
from convprop.nn.module import Module, Parameter, StateDictError

__all__ = [
    "ELU",
    "GELU",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Decimate1d",
    "Decimate2d",
    "Dilate1d",
    "Dilate2d",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "NLLLoss",
    "Parameter",
    "PixelShuffle",
    "PixelUnshuffle",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "StateDictError",
    "SyncBatchNorm",
    "Tanh",
    "Unflatten",
    "Upsample",
    "functional",
    "init",
    "parallel",
]
