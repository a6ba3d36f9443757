"""Local emulators of the providers' APIs (Mateo, Symplify, Workshop, Altcraft) with fault injection.

Start them with ``emulators.server.start_emulators()`` or ``python -m emulators``; each emulator has an
admin API under ``/_emulator/`` (see emulators/base.py) and fault settings (see emulators/faults.py).
"""
