"""YAML for recipes and ``--set`` values: ``yaml.safe_load`` with a bound on aliases, and
no key given twice in one mapping (YAML would keep the last one silently).

A YAML alias (``*name``) repeats the node it names; nested, a few hundred bytes of them
(a "billion laughs") stand for gigabytes of values once one is printed or copied. Aliases
stay allowed (``&lr 0.001`` ... ``*lr``), up to a document of MAX_VALUES values in all.
"""

from __future__ import annotations

from typing import Any

import yaml

from nmt_cli.errors import NmtError

MAX_VALUES = 10_000  # far beyond any recipe; aliases count each time they are used


def load(text: str, where: str) -> Any:
    """``yaml.safe_load``; a document whose aliases expand it past MAX_VALUES values is
    a one-line error (naming ``where``) before anything is built from it."""
    loader = _UniqueKeys(text)
    loader.where = where
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}, set()) > MAX_VALUES:
            raise NmtError(
                f"{where}: its YAML aliases (*name) expand it past {MAX_VALUES:,} values; write the values out"
            )
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` holds with every alias expanded (memoized: the walk is
    linear in the document, whatever the expansion); a node inside itself is unbounded."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        return MAX_VALUES + 1
    open_nodes.add(key)
    children = (
        node.value
        if isinstance(node, yaml.SequenceNode)
        else [item for pair in node.value for item in pair]
        if isinstance(node, yaml.MappingNode)
        else []
    )
    total = 1
    for child in children:
        total += _expanded_size(child, sizes, open_nodes)
        if total > MAX_VALUES:
            break
    open_nodes.discard(key)
    sizes[key] = total
    return total


class _UniqueKeys(yaml.SafeLoader):
    """The safe loader (no python tags), refusing a key given twice in one mapping: checked
    as each mapping is composed, before merge keys (``<<: *base``) add the keys it may replace."""

    where = ""

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node, seen = super().compose_mapping_node(anchor), set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in seen:
                    name = " ".join(key.value[:200].split())  # one line
                    raise NmtError(f"{self.where}:{key.start_mark.line + 1}: duplicate key {name}")
                seen.add((key.tag, key.value))
        return node
