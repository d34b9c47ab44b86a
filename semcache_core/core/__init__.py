"""Pure decisions: no Redis, no asyncio, no framework imports (DESIGN.md section 1)."""
