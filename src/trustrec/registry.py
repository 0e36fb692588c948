"""The registries of trustrec's named things, one mechanism for all (:mod:`trustrec._registry`).

``kinds()`` lists them (``audits``, ``datasets``, ``executors``, ``filters``, ``metrics``,
``models``, ``splitters``, and ``mitigations`` where that package registers them); ``registry(kind)``
returns one: a :class:`NamedRegistry`, read like a mapping of names to entries.

Built-ins are discovered (registration decorators in the modules of trustrec's packages, run on
the first lookup). A third-party package adds entries through the entry-point group
``trustrec.<kind>`` of its distribution, e.g. in its ``pyproject.toml``::

    [project.entry-points."trustrec.models"]
    my_model = "my_package.models:MyRecommender"      # MyRecommender.name == "my_model"

    [project.entry-points."trustrec.metrics"]
    my_metric = "my_package.metrics:my_metric"        # fn(hits, n_relevant) -> per-user values

An entry point is loaded when its name is first looked up; one that fails to load raises
:class:`PluginError` naming the distribution and the entry point.
"""

from trustrec._registry import GROUP_PREFIX, NamedRegistry, PluginError, kinds, registry

__all__ = ["GROUP_PREFIX", "NamedRegistry", "PluginError", "kinds", "registry"]
