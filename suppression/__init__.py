"""The domain: identifiers, suppressions, consents, audit, the Redis store.

Importable without aiohttp or aiosmtpd: protocol edges live in ``handlers/``.
"""
