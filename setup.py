"""What pyproject.toml cannot declare: the kernel sources inside the package.

The C++ and CUDA sources stay in the repository's top-level ``csrc/``; the
package maps that folder to ``hdetr._csrc`` so that a wheel, an sdist and any
``pip install .`` carry them, and an installed hdetr builds its kernels on first
use (``hdetr.ops.extension_build.csrc_dir`` finds either location). Everything
else, metadata included, is in pyproject.toml.
"""
from setuptools import find_packages, setup

# The sources and headers the CPU and the CUDA builds read, and the CUDA kernels'
# C++ emulation harness (its tests run from an installed package too).
KERNEL_SOURCES = ["*.cpp", "*.h", "**/*.cpp", "**/*.h", "**/*.cu", "**/*.cuh"]

setup(
    packages=[*find_packages(include=["hdetr", "hdetr.*"]), "hdetr._csrc"],
    package_dir={"hdetr._csrc": "csrc"},
    package_data={
        "hdetr": ["paper_tables.json", "presets/*.yaml", "checkpoints/reference_files/*"],
        "hdetr._csrc": KERNEL_SOURCES,
    },
)
