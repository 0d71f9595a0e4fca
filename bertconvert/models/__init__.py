"""The PyTorch BERT models.

Owns the configuration and which config file is used (``config``), what a config must hold
to build a model from it (``config_checks``), the trunk (``trunk``:
embeddings, encoder, pooler, ``BertModel``), the eight task heads (``heads``),
``from_pretrained``/``save_pretrained`` (``loading``), state-dict dialects and fit checks
(``statedict``), Google's initialisation (``initialise``), shape-mismatch hints
(``shapehints``) and reading/writing weight files (``weightfiles``). May import ``layout``,
``checkpoint`` and the top-level leaves; fetching a model by name goes through
``cache.names``. Nothing here imports ``verify`` or the CLI, and ``convert`` only once:
``from_pretrained(from_tf=True)`` imports ``convert.stream`` lazily (see ``loading``).
"""
