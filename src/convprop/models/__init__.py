"""The model zoo of the notes: LeNet-5, CIFAR ResNets, DenseNet-BC, TDNN, scanning MLP, the
fully-convolutional form of a classifier (scanning as convolution) and the fully-convolutional
segmenters (FCN, U-Net)."""

from convprop.models.densenet import DenseNetBC, densenet_bc
from convprop.models.fully_convolutional import FullyConvolutional, fully_convolutional
from convprop.models.lenet import LeNet5, lenet5
from convprop.models.resnet import CifarResNet, resnet20, resnet32, resnet56
from convprop.models.scanning_mlp import (
    DistributedScanningMLP,
    ScanningMLP,
    to_conv1d,
    to_scanning_mlp,
)
from convprop.models.segmentation import UNet, fcn, unet
from convprop.models.tdnn import TDNN, tdnn

__all__ = [
    "TDNN",
    "UNet",
    "CifarResNet",
    "DenseNetBC",
    "DistributedScanningMLP",
    "FullyConvolutional",
    "LeNet5",
    "ScanningMLP",
    "densenet_bc",
    "fcn",
    "fully_convolutional",
    "lenet5",
    "resnet20",
    "resnet32",
    "resnet56",
    "tdnn",
    "to_conv1d",
    "to_scanning_mlp",
    "unet",
]
