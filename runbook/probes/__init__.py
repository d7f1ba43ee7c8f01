"""Probes of the VM during a move: ICMP or TCP probes on a fixed schedule, and what they measured."""
