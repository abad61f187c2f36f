"""Running a build: the stage runner and its run folder, the same build on Ray, and what a finished
run says about itself.

``pipeline`` runs stages in order with a manifest per stage (resume, fingerprints, quarantine);
``distributed`` runs the same stages on a Ray cluster with the same results; ``funnel`` reads the
manifests into the funnel of paper Table 3 and a row's lineage; ``compare`` puts two runs side by
side.
"""
