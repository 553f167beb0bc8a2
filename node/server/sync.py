"""Block sync: a node behind its peers fetches blocks with their commits and hands them to
consensus as `CommitReceived`.

A peer's claimed height is believed only as far as the peer backs it with a block whose
commit verifies against the validators and whose header extends this node's chain; a peer
serving bad data is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from consensus import core as cc
from ledger.blocks import Block, Commit
from ledger.errors import VerificationFailed

if TYPE_CHECKING:
    from node.server.service import NodeService

log = logging.getLogger("provledger.sync")

# How long to wait for consensus to apply a fetched block before trying the next peer.
APPLY_WAIT_S = 5.0


class BlockSync:
    """The sync loop of one node service."""

    def __init__(self, service: NodeService) -> None:
        self.service = service
        self.best_peer_height = 0

    async def run(self) -> None:
        interval = self.service.settings.sync_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync_once()
            except Exception:
                log.exception("block sync failed")

    async def sync_once(self) -> None:
        service = self.service
        store = service.store
        links = service.network.links
        heights = await asyncio.gather(*(link.fetch_height() for link in links))
        known = [(h, link) for h, link in zip(heights, links, strict=True) if h is not None]
        # A claimed height counts only once the peer backs it with a verified next block:
        # a peer lying about its height must not make this node refuse clients (503).
        proven = store.height
        for peer_height, link in sorted(known, key=lambda item: -item[0]):
            while peer_height > store.height:
                target = store.height + 1
                fetched = await link.fetch_block(target)
                if fetched is None or not self.plausible(target, *fetched):
                    break
                proven = max(proven, peer_height)
                self.best_peer_height = max(self.best_peer_height, peer_height)
                applied = service.height_changed
                service.put(
                    cc.CommitReceived(block=fetched[0], commit=fetched[1], now=service.clock())
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(applied.wait(), timeout=APPLY_WAIT_S)
                if store.height < target:
                    break
        self.best_peer_height = proven

    def plausible(self, height: int, block: Block, commit: Commit) -> bool:
        """Cheap checks before handing a peer's block to consensus; bad peers are ignored."""
        service = self.service
        header = block.header
        if header.height != height or commit.block_hash != header.block_hash:
            return False
        if header.prev != service.store.head_hash:
            return False
        try:
            commit.verify(service.genesis.chain_id, service.genesis.validators)
        except VerificationFailed:
            service.stats.peer_messages_rejected += 1
            return False
        return True
