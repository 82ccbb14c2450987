"""Resolve configured gene groups against the genes a matrix actually has. Genes that are absent
are reported, never silently dropped; a group with none of its genes present is an input error."""

import re

from metasig.errors import InputError, few


def _loose(gene):
    """Case- and version-insensitive key (TP53 ~ tp53, ENSG00000141510.17 ~ ENSG00000141510)."""
    return re.sub(r"\.\d+$", "", str(gene)).upper()


def resolve(groups, features, file="config", field_prefix="gene_groups", id_map=None, covariates=()):
    """groups: name -> 'ALL' or a list of genes (metasig.config.expanded_groups).
    Returns {name: {"genes": [present, in the group's order], "missing": [absent, in order]}};
    'ALL' means every feature, in matrix order. `id_map`: the matrix's ID-map record
    (metasig.data.id_map.apply); with collapse `keep` a gene selects its columns '<gene>|<ID>'
    (in matrix order), and each group gets "mapped": how many of its genes were found only thanks
    to the mapping (`covariates`, listed among `features`, are not genes)."""
    from metasig.data.id_map import keep_gene, mapped_genes

    features = [str(f) for f in features]
    keep = (id_map or {}).get("collapse") == "keep"
    columns = {}  # gene -> its feature columns
    for f in features:
        columns.setdefault(keep_gene(f) if keep else f, []).append(f)
    loose = {}
    for f in features:
        loose.setdefault(_loose(f), f)
    out = {}
    for name, spec in groups.items():
        if spec == "ALL":
            out[name] = {"genes": list(features), "missing": []}
            continue
        wanted = list(dict.fromkeys(str(g) for g in spec))  # drop repeats, keep first position
        genes = [c for g in wanted for c in columns.get(g, [])]
        missing = [g for g in wanted if g not in columns]
        if not genes:
            near = [f"{g}~{loose[_loose(g)]}" for g in missing if _loose(g) in loose]
            hint = f"; IDs that differ only in case or version: {few(near)}" if near else ""
            raise InputError(
                file,
                f"{field_prefix}.{name}",
                f"none of its {len(wanted)} genes are in the data (first few: {few(wanted)}; "
                f"the data has e.g. {few(features)}){hint}",
            )
        out[name] = {"genes": genes, "missing": missing}
        if keep:  # genes lists columns, several per gene
            out[name]["found"] = len(wanted) - len(missing)
    if id_map:
        for entry in out.values():
            entry["mapped"] = mapped_genes(entry["genes"], id_map, covariates)
    return out


def missing_report(resolved):
    """One line per group for the log: how many genes are present and which are missing (and the
    set's name in its GMT file when it was renamed to a safe group name)."""
    lines = []
    for name, entry in resolved.items():
        n_genes, n_missing = entry.get("found", len(entry["genes"])), len(entry["missing"])
        shown = f"{name} (GMT set '{entry['gmt_name']}')" if entry.get("gmt_name") else name
        line = f"{shown}: {n_genes}/{n_genes + n_missing} genes present"
        if "found" in entry:
            line += f" in {len(entry['genes'])} column(s)"
        if entry.get("mapped"):
            line += f" ({entry['mapped']} found only after ID mapping)"
        if n_missing:
            line += f"; missing: {few(entry['missing'], 20)}"
        lines.append(line)
    return "\n".join(lines)
