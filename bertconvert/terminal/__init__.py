"""What a person at a terminal sees while a command runs: progress bars (:mod:`.progress`).

A leaf like ``errors`` or ``layout``: it imports nothing else of bertconvert, so every pillar
(checkpoint, convert, cache, verify) may use it.
"""
