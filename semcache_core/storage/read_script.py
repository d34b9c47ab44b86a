"""A lookup's reads in one round trip: the exact entry, else the KNN search (pure).

One Lua script (``EVAL``) reads the exact entry (``HMGET``) and, only when it is
absent, runs the KNN query (``FT.SEARCH``) in the same call: an exact hit costs one
HMGET on the server, a semantic hit or a miss one round trip instead of two. The query
returns keys and distances only; the script reads (``HMGET``) the fields of the
candidates within ``max_distance`` (the farthest a candidate could be and still matter
to the decision, `core.read.relevant_similarity`). A farther one comes back as its key
and distance, which is all a miss records: a miss loads no entry on the server and
parses none in the client. A candidate whose hash is gone (expired since it was
indexed) is left out, as the search leaves out a document whose fields come back nil.

Keys: ``KEYS[1]`` is the exact entry's key, which shares its hash tag (so its slot and
shard) with the bucket index the query searches (`layout.Layout`): on a cluster the
script runs on the shard that holds both. ``ARGV``: read the exact entry first (``1``)
or not (``0``), ``max_distance``, the index, the query string, the vector and k (the
read fields are in the script's text).

Reply: ``{1, values}`` (the exact entry's values, in `READ_FIELDS` order) or ``{0, key1,
distance1, values1 or 0, key2, ...}`` (candidates nearest first; ``0``: not within
``max_distance``; a document whose fields came back nil is left out).
"""

from __future__ import annotations

from typing import Any

from ..entry import READ_FIELDS

# The read fields are part of the script's text (one fewer argument list to send).
_NAMES = ", ".join(f"'{name}'" for name in READ_FIELDS)
READ_SCRIPT_TEXT = (
    f"local names = {{{_NAMES}}}\n"
    """local n = #names
if ARGV[1] == '1' then
  local v = redis.call('HMGET', KEYS[1], unpack(names))
  for i = 1, n do
    if v[i] then return {1, v} end
  end
end
local r = redis.call('FT.SEARCH', ARGV[3], ARGV[4], 'PARAMS', 2, 'vec', ARGV[5],
  'RETURN', 1, 'distance', 'SORTBY', 'distance', 'LIMIT', 0, ARGV[6], 'DIALECT', 2)
local maxd = tonumber(ARGV[2])
local out = {0}
for i = 2, #r, 2 do
  local doc = r[i + 1]
  local d = type(doc) == 'table' and doc[2] or nil
  local dn = d and tonumber(d)
  if dn then
    if dn <= maxd then
      local v = redis.call('HMGET', r[i], unpack(names))
      for j = 1, n do
        if v[j] then
          out[#out + 1] = r[i]
          out[#out + 1] = d
          out[#out + 1] = v
          break
        end
      end
    else
      out[#out + 1] = r[i]
      out[#out + 1] = d
      out[#out + 1] = 0
    end
  end
end
return out
"""
)
READ_SCRIPT = READ_SCRIPT_TEXT.encode()
_FULL_MARGIN = 1e-3  # RediSearch prints distances rounded: fetch a little too much


def script_args(
    key: str,
    index: str,
    query: str,
    vector: bytes,
    k: int,
    *,
    exact: bool,
    min_similarity: float,
) -> list[Any]:
    """What follows the script in ``EVAL``: the key count, the key and ``ARGV``, for
    the KNN query ``query`` on ``index`` (`commands.search_query`; ``exact``: read the
    entry first; ``min_similarity``: the lowest similarity whose candidate's fields are
    returned)."""
    max_distance = repr(1.0 - min_similarity + _FULL_MARGIN)
    return [1, key, b"1" if exact else b"0", max_distance, index, query, vector, k]


def parse_script_reply(
    reply: Any,
) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any] | None, Any]]]:
    """``(exact fields or None, [(key, fields or None, distance)])`` of a reply; each
    candidate's fields carry its ``distance`` (as `entry.parse_search_reply`'s do)."""
    if not isinstance(reply, list) or not reply:
        return None, []
    if int(reply[0]) == 1:
        return dict(zip(READ_FIELDS, reply[1], strict=True)), []
    hits: list[tuple[str, dict[str, Any] | None, Any]] = []
    for i in range(1, len(reply) - 2, 3):
        key, distance, values = reply[i], reply[i + 1], reply[i + 2]
        name = key.decode() if isinstance(key, bytes) else str(key)
        fields = None
        if isinstance(values, list):
            fields = dict(zip(READ_FIELDS, values, strict=True))
            fields["distance"] = distance
        hits.append((name, fields, distance))
    return None, hits
