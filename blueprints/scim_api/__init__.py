"""The SCIM 2.0 API that identity providers call (SPEC F5, RFC 7643/7644)."""
