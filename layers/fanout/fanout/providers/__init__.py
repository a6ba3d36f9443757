"""Provider modules, one per destination, behind one interface (`fanout.providers.base.Provider`)."""

from __future__ import annotations

from fanout.destinations import Destination
from fanout.providers.altcraft import Altcraft
from fanout.providers.base import Provider
from fanout.providers.mateo import Mateo
from fanout.providers.mateo_message import MateoMessage
from fanout.providers.symplify import Symplify
from fanout.providers.workshop import Workshop

PROVIDERS: dict[Destination, Provider] = {
    p.destination: p for p in (Mateo(), MateoMessage(), Symplify(), Workshop(), Altcraft())
}


def provider_for(destination: Destination) -> Provider:
    """The provider module of `destination`."""
    return PROVIDERS[destination]
