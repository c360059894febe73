"""Foundation: what every model family shares and that imports nothing else of the package.

``losses`` (every loss of the three papers, dense teaching form beside the fast
form, and the tau solvers of eqs. 11-12), ``metrics`` (ranks, NDCG/HR, paired
bootstrap), ``samplers`` (negatives), ``profiles`` (one table for all
families), ``recommender`` (the interface every family implements), ``rundir``
(run directories: config, log, checkpoints, results), ``io`` (atomic files and
folders), ``tensors`` (padding).
"""
