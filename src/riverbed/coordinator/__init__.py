"""Pure coordinator state machines with an injected clock (consumer groups, transactions).
Empty until the consumer-group issue: the layer exists so the import contract is in place."""
