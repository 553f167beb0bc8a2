"""Block sync: a node behind its peers fetches blocks with their commits and hands them to
consensus as `CommitReceived`.

A peer's claimed height is only a hint. The height this node believes the chain has reached
(`best_peer_height`, which makes it answer 503 while far behind) is the highest one a
verified commit proves: a block fetched for the next height, or the head header and commit a
peer sends with its status, checked against the validator set this node knows for its next
height (a commit certificate for height H by that set proves H exists; after a set change
this node has not reached, such a claim proves nothing and sync simply goes on block by
block, each checked against the set in force at its height). A peer lying about its height
changes nothing; a peer serving bad data is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from consensus import core as cc
from ledger.blocks import Block, Commit, Header, verify_checkpoint
from ledger.errors import LedgerError, VerificationFailed

if TYPE_CHECKING:
    from node.server.p2p import PeerLink
    from node.server.service import NodeService

# Blocks behind a proven height before this node refuses submissions (503); the service's
# `CATCH_UP_LAG` is this constant.
CATCH_UP_LAG = 2

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
        heads = await asyncio.gather(*(link.fetch_head() for link in links))
        known: list[tuple[int, PeerLink]] = []
        for head, link in zip(heads, links, strict=True):
            if head is None:
                claimed = link.state.height
                if claimed is not None and claimed > store.height:
                    known.append((claimed, link))
                continue
            height, header, commit = head
            known.append((height, link))
            self.prove_head(height, header, commit)
        for peer_height, link in sorted(known, key=lambda item: -item[0]):
            while peer_height > store.height:
                target = store.height + 1
                fetched = await link.fetch_block(target)
                if fetched is None or not self.plausible(target, *fetched):
                    break
                self.best_peer_height = max(self.best_peer_height, target)
                applied = service.height_changed
                service.put(
                    cc.CommitReceived(block=fetched[0], commit=fetched[1], now=service.clock())
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(applied.wait(), timeout=APPLY_WAIT_S)
                if store.height < target:
                    break

    def prove_head(self, height: int, header: Header, commit: Commit) -> None:
        """Believe a peer's head height if its header and commit verify (only when that
        would raise what this node believes and put it behind: one check per new claim)."""
        service = self.service
        if height <= max(self.best_peer_height, service.store.height + CATCH_UP_LAG):
            return
        if header.height != height:
            return
        validators = service.replica.executor.validators_at(service.store.height + 1)
        assert validators is not None, "the next height's set is known"
        try:
            verify_checkpoint(header, commit, service.genesis.chain_id, validators)
        except (LedgerError, TypeError, ValueError):
            service.stats.peer_messages_rejected += 1
            return
        self.best_peer_height = height

    def plausible(self, height: int, block: Block, commit: Commit) -> bool:
        """Cheap checks before handing a peer's block to consensus; bad peers are ignored."""
        service = self.service
        header = block.header
        if header.height != height or commit.block_hash != header.block_hash:
            return False
        if header.prev != service.store.head_hash:
            return False
        validators = service.replica.executor.validators_at(height)
        if validators is None:
            return False
        try:
            commit.verify(service.genesis.chain_id, validators)
        except VerificationFailed:
            service.stats.peer_messages_rejected += 1
            return False
        return True
