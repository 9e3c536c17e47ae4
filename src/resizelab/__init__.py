"""resizelab: measure how resizing the input changes what a ResNet achieves on CIFAR-10, and what it costs."""

__version__ = "0.1.0"
