"""Build of the optional C kernels (chainrule._native); everything else is in pyproject.toml.

The extension is optional: where no C compiler is found the install goes on without it and
chainrule runs the same ops in NumPy.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildNative(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math",
                                          "-std=gnu11"]
        super().build_extensions()


setup(
    ext_modules=[Extension("chainrule._native", ["src/chainrule/_native.c"], optional=True)],
    cmdclass={"build_ext": BuildNative},
)
