"""The PyTorch BERT models.

Owns the configuration (``config``), the trunk (``trunk``: embeddings, encoder, pooler,
``BertModel``), the eight task heads (``heads``), ``from_pretrained``/``save_pretrained``
(``loading``) and reading/writing weight files (``weightfiles``). May import ``layout``,
``checkpoint`` and the top-level leaves; fetching a model by name goes through
``cache.names``. Nothing here imports ``convert``, ``verify`` or the CLI.
"""
