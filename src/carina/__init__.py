"""carina: drive the rax.carina collection (create, list, delete clusters) from Python."""

__version__ = "0.1.0"
