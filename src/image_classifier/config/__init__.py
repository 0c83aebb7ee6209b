"""The configuration: typed schemas (``schema``), value checks (``checks``) and the entry-point wrapper (``entry``)."""
