"""The ``semcache demo`` and the support workload it replays, apart from the engine.

- `semcache_demo.workload`: 40 support intents of a fictional company (pure data, standard
  library only), used by the demo, the notebooks, the tests and the benchmarks.
- `semcache_demo.langchain_fakes`: `FakeSupportChatModel`, a deterministic LangChain chat
  model that answers the workload (needs ``semcache[langchain]``).
- `semcache_demo.llamaindex_fakes`: `FakeLLM` and `FakeFunctionCallingLLM`, the same for
  LlamaIndex (needs ``semcache[llamaindex]``).
- `semcache_demo.langchain_demo`: `run_demo`, the replay through LangChain and its report.
- `semcache_demo.cli`: the ``semcache demo`` command, which the ``semcache`` CLI loads
  from the ``semcache.commands`` entry-point group.

Nothing here is imported by `semcache_core`; this package imports no framework itself
(its framework modules do), so loading the CLI command stays cheap.
"""
