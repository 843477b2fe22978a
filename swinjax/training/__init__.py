"""The training core: the train state (:mod:`.state`), the jitted steps (:mod:`.steps`, with the
loss in :mod:`.losses` and test-time views in :mod:`.tta`), the loop (:mod:`.loop`), scoring a
split or a saved checkpoint (:mod:`.evaluation`), checkpoints (:mod:`.checkpoint`), data
parallelism (:mod:`.parallel`), populations of models (:mod:`.population`), the recipe tools that
shape the step (:mod:`.recipe`), metric writers and figures (:mod:`.writers`, :mod:`.plots`), a
step's profile (:mod:`.profiling`), setting a run up (:mod:`.setup`: one ``setup_run`` for
training, sweeps, the benchmark and evaluation), what a workdir holds beside its checkpoints
(:mod:`.workdir`), a whole training run in a workdir (:mod:`.trainer`) and the throughput
benchmark (:mod:`.benchmark`).

May import: :mod:`swinjax.config` and everything below it (weights, data, augment, optim, models,
errors); not the sweeps or the programs.
"""
