"""The fused logits kernel and the chunk tally (xentcli/_ckernel.c, _ctally.c, sharing _cmath.h) are built as an optional extension: where no C compiler
is available the install still succeeds and xent uses its numpy kernels (`xent --version` says which)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xentcli._ckernel",
            sources=["xentcli/_ckernel.c", "xentcli/_ctally.c"],
            depends=["xentcli/_cmath.h"],
            extra_compile_args=["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"],
            optional=True,
        )
    ]
)
