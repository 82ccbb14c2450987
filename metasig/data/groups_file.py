"""groups.json (`results/<dataset>/groups.json`): the gene groups of a dataset resolved against its
matrix. Its writer and its reader.

Shape: {group: {"genes": [present, in the group's order], "missing": [absent, in order]
[, "gmt_name": the set's name in its GMT file, when it was renamed to a safe group name]
[, "mapped": how many of its genes were found only thanks to the dataset's id_map]
[, "found": with id_map collapse keep, how many of its genes were found; "genes" then lists their
columns '<gene>|<ID>']}}, as built by `metasig.data.groups.resolve`. "ALL" lists every feature in
matrix order. "genes" are always the features a model of the group trains on.
"""

from metasig import io


def write_groups(resolved: dict, path):
    """Write resolved groups atomically."""
    io.write_json(resolved, path)


def read_groups(path) -> dict:
    return io.read_json(path)


def group_genes(path, group) -> list:
    """The features of one group, in order (its present genes and covariates)."""
    return list(read_groups(path)[group]["genes"])
