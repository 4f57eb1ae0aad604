"""genarc: a generational full-copy archiver for immutable storage.

The library the CLI is built on: ``config.load``, ``repository.Repository``,
``backup.run_job``, ``restore.restore`` and ``verify.verify``.
"""

__version__ = "0.1.0"
