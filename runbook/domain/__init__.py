"""The domain of a move: what the operator asks (plan), what it means in the vCenter (resolution),
the prerequisite checks, the relocation spec, and the enable-vMotion remedy."""
