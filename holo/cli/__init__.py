"""The ``holo`` command line. Each sub-command lives in its own module of this package and
exposes ``register(app)``; :mod:`holo.cli.main` assembles them."""
