"""Everything declarative lives in setup.cfg; this file only adds the C record walker,
which setup.cfg cannot declare."""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sensor.capture._walk",
            sources=["sensor/capture/_walk.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
        )
    ]
)
