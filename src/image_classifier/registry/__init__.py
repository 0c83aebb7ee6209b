"""The model registry: GTO tags over bundles versioned with DVC.

- :mod:`~image_classifier.registry.store`: git, DVC and GTO, where the versions are kept;
- :mod:`~image_classifier.registry.versions`: a version's record, ``resolve`` (a reference to its version) and
  ``fetch`` (its bundle's bytes, checked against the registered checksums);
- :mod:`~image_classifier.registry.publish`: ``register`` a bundle, ``promote`` a version to a stage;
- :mod:`~image_classifier.registry.gate`: the accuracy check a version must pass to be promoted, and
  :mod:`~image_classifier.registry.verdicts`, its results as git notes;
- ``python -m image_classifier.registry register|promote|resolve|check --help``: the command line.

``gto show`` lists the versions and stages.
"""
