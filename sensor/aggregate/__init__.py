"""Aggregate stage: AGURIM-style hierarchical heavy hitters for one second.

This follows the rules of WIDE's ``aguri3`` (Kato, Cho, Fukuda, "Agurim",
2014) so that its output can be checked against the original tool: traffic is
first summarized per (source, destination) address pair, then a recursive
search over the lattice of (source prefix, destination prefix) lengths
extracts every aggregate whose *residual* volume — what is left after more
specific aggregates below it were extracted — reaches the threshold (1% of the
second's bytes or packets by default: the "combination" criterion).  The
search visits the bottom edges first (full source with every destination
prefix, then full destination), then the whole lattice, so host-level
aggregates are preferred.  IPv4 prefixes shorter than /16 move in 8-bit
steps; IPv6 never splits the interface identifier (/64../128 are searched
separately) and moves in 16-bit steps below /32.  The catch-all ``* *``
appears whenever traffic is left after the host-level passes.  Each
aggregate's traffic is then summarized the same way over (protocol, source
port) × (protocol, destination port), with a threshold of 4% of the aggregate.
docs/aggregation.md states every rule and every known difference from aguri3.

Counts are wire bytes (pcap ``orig_len``) and packets of IP packets only.

Modules: ``config`` (thresholds), ``second`` (``aggregate_second``, the driver),
``search`` (the lattice search; the C extension ``_lattice`` runs it), ``ports``
(the ports aguri3 files packets under), ``results`` (the result types), ``render``
(aguri3's text forms, JSON), ``match`` (flows → aggregates) and ``aguri_text``
(the Aguri-2.0 text reader).
"""

from __future__ import annotations

from .aguri_text import AguriBlock, AguriEntry, AguriProto, parse_proto_label, read_aguri, read_aguri_file
from .config import BYTE, COMBINATION, PACKET, AggregateConfig
from .match import match_aggregates
from .render import proto_label, render_prefix, to_json_dict
from .results import Aggregate, AggregateSet, ProtoAggregate
from .second import aggregate_second

__all__ = [
    "BYTE",
    "COMBINATION",
    "PACKET",
    "Aggregate",
    "AggregateConfig",
    "AggregateSet",
    "AguriBlock",
    "AguriEntry",
    "AguriProto",
    "ProtoAggregate",
    "aggregate_second",
    "match_aggregates",
    "parse_proto_label",
    "proto_label",
    "read_aguri",
    "read_aguri_file",
    "render_prefix",
    "to_json_dict",
]
