"""Budget-controlled generation, scoring and sweeps (installed as `m1data.infer`).

`budget` runs s1/m1 budget forcing over any m1data engine, `score` grades the records with
`m1data.stages.answers`, `sweep` repeats a run over budgets and forcing rounds and draws the paper's plots.
"""
