"""The dbaccess benchmark harness: ``python -m benchmarks --help``.

Modules: ``__main__`` (the command line), ``config`` (sizes and URLs), ``schema`` (tables,
SQL text, generated rows), ``dataset`` (creating and filling tables, the admin connection),
``contenders`` (one module per library measured), ``runner`` (interleaved timed rounds),
``memory`` and ``memory_worker`` (peak RSS while streaming), ``report`` (tables and JSON),
``environment`` (versions and machine facts), ``loops`` (asyncio or uvloop).
"""
