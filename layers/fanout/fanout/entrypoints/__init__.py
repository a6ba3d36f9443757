"""Lambda entry points: Powertools wiring around one logic call each. `functions/*/app.py` import these.

Each module validates its configuration at import (cold start), so a misconfigured function fails loudly
before it touches a file or a chunk.
"""
