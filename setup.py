"""Package discovery (metadata, dependencies and extras are in setup.cfg).

Three source folders become three installed packages, and every sub-package under them is
found, not listed: a list kept by hand once left ``es_plugins.engines.outofcore`` out of the wheel.
"""

from setuptools import find_packages, setup

# installed name -> folder in this tree
ROOTS = {
    "es_plugins": "es_plugins",
    "es_plugins.integrations": "integrations",
    # Optimum's extension point, a PEP 420 namespace: makes `optimum-cli sparsity ...` appear
    "optimum.commands.register": "optimum_plugin/optimum/commands/register",
}


def discover_packages() -> list[str]:
    packages = []
    for name, folder in ROOTS.items():
        packages.append(name)
        packages.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return packages


setup(packages=discover_packages(), package_dir=ROOTS)
