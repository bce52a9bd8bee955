"""This repo's own pytest entry. expspec's fixtures come from its installed ``pytest11``
entry points (``expspec.fixtures.plugin`` and one plugin per family, see pyproject.toml),
exactly as in any other repository that installs expspec; ``make setup`` installs it.
pytester runs small sessions through those plugins in tests/."""

pytest_plugins = ["pytester"]


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("expspec.fixtures.plugin"):
        import pytest

        raise pytest.UsageError("expspec's pytest plugin is not installed here: run `make setup` "
                                "(or `pip install -e .`) first")
