"""The pipeline's stages, one module per step of the paper's Figure 2, in the order a build runs them.

1. ``loading``: the four raw sources into one schema.
2. ``dedup`` (fuzzy dedup and decontamination) on the exact matcher ``fuzzy``; ``ngram`` is an
   independent second opinion on contamination.
3. ``difficulty``: keep the questions the student models get wrong; ``answers`` reads the option
   a reply chose, for this step, the next one and scoring.
4. ``traces``: the teacher's chain of thought, kept when its answer is right (m23K).
5. ``mesh`` (LLM tagger) or ``mesh_offline`` (no LLM) tag each question with one of the 76
   ``qualifiers``; ``mesh_eval`` scores a tagger; ``sampling`` draws m1K.
6. ``formatting``: the SFT format the published rows carry.

Each module imports only what its step needs: the offline tagger and the samplers run without the
LLM stack installed.
"""
