"""Publishing: from a run folder to a Hub-layout folder, its card's metadata, and one commit to the Hub.

``export`` writes the folder (rows, configs, card); ``cardmeta`` reads and writes the card's YAML
header; ``hub`` checks the folder and uploads it. What may not be published is decided in
``m1data.redact``, which every writer calls.
"""
