"""Security building blocks: SASL mechanisms (PLAIN, SCRAM), the credential store, and the
ACL authorizer. Pure and synchronous (no sockets, no asyncio): the server and the broker
drive them."""
