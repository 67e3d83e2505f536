"""Packaging for amshan: read and decode the HAN port of European smart electricity meters."""

from pathlib import Path

from setuptools import find_packages, setup

WEB = ["aiohttp>=3.9", "prometheus-client>=0.17"]  # amshan serve: the page, the JSON API, /metrics

setup(
    name="amshan",
    version="2.0.0",
    description=(
        "Read and decode the data stream of European smart electricity meters "
        "(Norwegian HAN port and its cousins): HDLC, DLMS/COSEM, Aidon, Kaifa, Kamstrup"
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["amshan", "amshan.*"]),
    package_data={"amshan": ["py.typed", "data/*"], "amshan.web": ["static/*"]},
    install_requires=["crcmod-plus>=2.0", "cryptography>=3.4", "pyserial>=3.4", "pyserial-asyncio>=0.6"],
    extras_require={
        "mqtt": ["aiomqtt>=2.0"],
        "web": WEB,
        "test": [
            "pytest>=7",
            "pytest-asyncio>=0.21",
            "hypothesis>=6",
            "aiomqtt>=2.0",
            "selenium>=4.11",
            *WEB,
        ],
        "dev": ["ruff", "mypy", "types-pyserial", "mutmut>=3", "aiomqtt>=2.0", *WEB],  # mypy reads all
        "fuzz": ["atheris>=2"],
    },
    entry_points={"console_scripts": ["amshan=amshan.cli:main"]},
    keywords="meter han ams mbus hdlc dlms cosem obis aidon kaifa kamstrup",
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Framework :: AsyncIO",
        "Typing :: Typed",
    ],
)
