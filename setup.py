"""Everything declarative lives in setup.cfg; this file only adds the three small C
extensions (the capture record walker, the per-flow statistics kernel and the
aggregation's lattice search), which setup.cfg cannot declare."""

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
        Extension(
            "sensor.aggregate._lattice",
            sources=["sensor/aggregate/_lattice.c"],
            extra_compile_args=["-O2", "-std=c99", "-Wall", "-Wextra"],
        ),
    ]
)
