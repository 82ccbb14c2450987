"""Report stage: one module per figure subject, all drawn in the look of `style`.

`leaderboard` (forest plot of a task's models), `curves` (ROC/PR, calibration), `confusion`,
`survival` (Kaplan-Meier), `importance`, `qc` and `pca` (expression QC), `mapping` (reads QC);
`predictions` reads the out-of-fold prediction tables they share; `steps` holds the rule adapters.
"""
