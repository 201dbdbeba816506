"""Build of the optional C kernels (chainrule._native); everything else is in pyproject.toml.

The extension is optional: where no C compiler is found the install goes on without it and
chainrule runs the same ops in NumPy.
"""

import importlib.util
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def elementwise_header(directory):
    """Write ``_elementwise.h``, the C of every row of the elementwise table
    (src/chainrule/backend/elementwise.py, a standard-library-only module loaded by path), into
    ``directory``."""
    path = os.path.join(HERE, "src", "chainrule", "backend", "elementwise.py")
    spec = importlib.util.spec_from_file_location("_chainrule_elementwise", path)
    table = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = table  # (dataclasses look their module up there)
    spec.loader.exec_module(table)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "_elementwise.h"), "w") as f:
        f.write(table.c_source())


class BuildNative(build_ext):
    def build_extensions(self):
        gen = os.path.join(self.build_temp, "generated")
        elementwise_header(gen)
        for ext in self.extensions:
            ext.include_dirs = [*ext.include_dirs, gen]
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math",
                                          "-std=gnu11"]
        super().build_extensions()


setup(
    ext_modules=[Extension("chainrule._native", ["src/chainrule/_native.c"], optional=True,
                           depends=["src/chainrule/backend/elementwise.py"])],
    cmdclass={"build_ext": BuildNative},
)
