"""``python -m image_classifier.bench``: see :mod:`image_classifier.bench.suite`."""

from image_classifier.bench.suite import main

if __name__ == "__main__":
    raise SystemExit(main())
