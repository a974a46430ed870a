"""ufence: KFENCE for Linux processes, and a control and analysis tool for the kernel's KFENCE."""

__version__ = "0.1.0"
