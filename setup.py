"""vaepipe: compress tables to latent codes and flag anomalous records (Beam + TFDV + Keras VAE).

Dependencies come from requirements.txt, the project's one pinned list (also used by CI and
the Dataflow worker image); test tools from requirements-test.txt.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def _pinned(name: str) -> list[str]:
    lines = (HERE / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="vaepipe",
    version="0.1.0",
    description="Beam + TFDV + Keras VAE pipeline: latent codes and calibrated anomaly flags",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["pipeline", "pipeline.*", "vae_model", "configs", "vaepipe"]),
    package_data={"configs": ["*.yaml"]},
    include_package_data=True,
    install_requires=_pinned("requirements.txt"),
    extras_require={"test": _pinned("requirements-test.txt")},
    entry_points={"console_scripts": ["vaepipe=pipeline.cli:main"]},
)
