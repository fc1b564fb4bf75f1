"""What the rendered NetworkPolicies allow, evaluated the way the Kubernetes API defines it, so tests can ask
"may the drift job reach the retrain trigger on 8080?" instead of reading selectors.

Semantics (networking.k8s.io/v1): a pod selected by no policy of a direction allows everything in that
direction; once selected, a connection passes only if some selecting policy has a rule whose peers match the
other side and whose ports match (no ports = all ports). A connection needs the source's egress and the
destination's ingress. Supported selectors: ``matchLabels`` and ``matchExpressions`` (In, NotIn, Exists,
DoesNotExist); ``ipBlock`` peers match the ``external`` endpoint only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace: str = "marlops"
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    external: bool = False  # outside the cluster (an ipBlock peer matches it, selectors do not)

    def ns_labels(self) -> Mapping[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        has = key in labels
        ok = {
            "In": has and labels[key] in values,
            "NotIn": not has or labels[key] not in values,
            "Exists": has,
            "DoesNotExist": not has,
        }[op]
        if not ok:
            return False
    return True


def _peer_matches(peer: Obj, other: Endpoint, policy_ns: str) -> bool:
    if "ipBlock" in peer:
        return other.external
    if other.external:
        return False
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    ns_ok = selects(ns_sel, other.ns_labels()) if ns_sel is not None else other.namespace == policy_ns
    pod_ok = selects(pod_sel, other.labels) if pod_sel is not None else True
    return ns_ok and pod_ok


def _port_matches(ports: list[Obj] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        lo = p.get("port")
        if lo is None or (lo == port) or (isinstance(lo, int) and lo <= port <= p.get("endPort", lo)):
            return True
    return False


def _direction_allows(
    policies: Iterable[Obj], subject: Endpoint, other: Endpoint, port: int, protocol: str, direction: str
) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p.get("metadata", {}).get("namespace", subject.namespace) == subject.namespace
        and selects(p["spec"].get("podSelector") or {}, subject.labels)
        and direction in (p["spec"].get("policyTypes") or ["Ingress"])
    ]
    if not selecting:
        return True
    for p in selecting:
        ns = p.get("metadata", {}).get("namespace", subject.namespace)
        for rule in p["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(peer, other, ns) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allowed(policies: Iterable[Obj], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    """Whether ``src`` may open a connection to ``dst`` on ``port`` under ``policies``."""
    policies = [p for p in policies if p.get("kind") == "NetworkPolicy"]
    egress_ok = src.external or _direction_allows(policies, src, dst, port, protocol, "Egress")
    ingress_ok = dst.external or _direction_allows(policies, dst, src, port, protocol, "Ingress")
    return egress_ok and ingress_ok
