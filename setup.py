"""Everything declarative lives in setup.cfg; this file only adds the two small C
extensions (the capture record walker and the per-flow statistics kernel), which
setup.cfg cannot declare."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sensor.capture._walk",
            sources=["sensor/capture/_walk.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
        ),
        Extension(
            "sensor._flowstats",
            sources=["sensor/_flowstats.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
        ),
    ]
)
