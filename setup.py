"""The fused logits kernel (xentcli/_ckernel.c) is built as an optional extension: where no C compiler
is available the install still succeeds and xent uses its numpy kernels (`xent --version` says which)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xentcli._ckernel",
            sources=["xentcli/_ckernel.c"],
            extra_compile_args=["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"],
            optional=True,
        )
    ]
)
