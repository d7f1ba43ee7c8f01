"""vSphere access: the session (govc's settings), look-ups by name or moid, bulk property reads,
the fast SOAP reader, the inventory tables, and tasks."""
