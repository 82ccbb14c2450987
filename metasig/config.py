"""Configuration: schema validation with messages that name the field, semantic checks, and the
helpers the Snakefile uses to enumerate jobs. Everything here runs before any job starts."""

import difflib
import functools
import math
import re
import sys
from copy import deepcopy
from pathlib import Path

import jsonschema
import yaml

from metasig.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schemas" / "config.schema.yaml"

MODEL_KINDS = {
    "binary": {"linear_sweep", "elasticnet", "logistic", "svm", "random_forest", "xgboost"},
    "multiclass": {"linear_sweep", "elasticnet", "logistic", "svm", "random_forest", "xgboost"},
    "survival": {"coxph", "xgboost_cox"},
}
METRICS = {
    "binary": ("roc_auc", "pr_auc", "balanced_accuracy", "f1", "mcc", "accuracy"),
    "multiclass": ("roc_auc", "pr_auc", "balanced_accuracy", "f1", "mcc", "accuracy"),
    "survival": ("c_index", "ibs"),
}
# Model kinds that train with XGBoost, so can use a GPU (config key `device`).
XGBOOST_KINDS = ("xgboost", "xgboost_cox")
# Sources whose sample sheet takes a dataset-level `labels` derivation (xena, geo and gdc derive
# theirs inside their own block; the reads sources' sheet is read elsewhere).
LABELLED_SOURCES = ("builtin", "table", "url")
# Metrics where lower is better cannot be gated with a minimum.
LOWER_IS_BETTER = {"ibs"}
# Counts default to DESeq2's median-of-ratios + log2, fitted in-fold on every gene (it corrects
# composition, which log2-CPM does not); `vst` adds DESeq2's variance-stabilizing transform.
AUTO_NORMALIZATION = {"counts": "deseq2", "tpm": "log2p1", "fpkm": "log2p1"}


@functools.lru_cache(maxsize=1)
def load_schema():
    """The config schema, read once per process (callers must not change it)."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_defaults(*path) -> dict:
    """{property: default} of an object in the schema, the one place defaults are written: the
    top level (no path), a `$defs` entry (`schema_defaults("cv")`) or an object property nested in
    one (`schema_defaults("dataset", "simulation")`). Copies, so callers may change them."""
    schema = load_schema()
    node = schema["$defs"][path[0]] if path else schema
    for key in path[1:]:
        node = node["properties"][key]
    return {key: deepcopy(prop["default"]) for key, prop in node["properties"].items() if "default" in prop}


def gate_defaults(task_type) -> dict:
    """The gate a task of this type gets without a `gate:` entry: the schema's gate defaults plus
    its per-type metric and minimum (`x-task-type-defaults`)."""
    gate = load_schema()["$defs"]["gate"]
    merged = {**schema_defaults("gate"), **deepcopy(gate["x-task-type-defaults"][task_type])}
    return {key: merged[key] for key in gate["properties"] if key in merged}  # in the schema's order


def _field(path):
    return ".".join(str(p) for p in path) or "(top level)"


NAME_RULE = (
    "names are used in file paths and model names, so they may hold only letters, digits, "
    "'_' and '-' (no spaces, dots, colons or slashes)"
)


def _plain(error):
    """A jsonschema error in plain words: (field path, message)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return _field(path + [unknown[0]]), f"unknown key '{unknown[0]}' (allowed here: {', '.join(known)}){hint}"
    if error.validator == "pattern" and error.validator_value == load_schema()["$defs"]["name"]["pattern"]:
        # a propertyNames error points at the mapping; name the offending key itself
        where = path + [error.instance] if "propertyNames" in error.schema_path else path
        return _field(where), f"{error.instance!r} is not a valid name: {NAME_RULE}"
    return _field(path), error.message


def _fill_defaults(validator, properties, instance, schema):
    """The `properties` keyword, also setting each absent property that has a default (as
    Snakemake's `validate` does), so validating and filling in defaults are one pass. Objects
    marked `x-fill-defaults: false` are left as written: they are merged over each other (global,
    dataset, model preprocessing), and a filled-in default would override a setting made above."""
    if validator.is_type(instance, "object") and schema.get("x-fill-defaults", True):
        for key, subschema in properties.items():
            if "default" in subschema:
                instance.setdefault(key, deepcopy(subschema["default"]))
    yield from _PROPERTIES(validator, properties, instance, schema)


_PROPERTIES = jsonschema.Draft202012Validator.VALIDATORS["properties"]
_FILLING = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": _fill_defaults})


def check_schema(config, config_file="config", fill_defaults=False):
    """Validate against the JSON schema; raise InputError naming the deepest offending field.
    With `fill_defaults`, absent properties that have a default get it (`config` is changed)."""
    validator = (_FILLING if fill_defaults else jsonschema.Draft202012Validator)(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        # oneOf/anyOf errors are vague; their most specific sub-error says more.
        while error.context:
            error = jsonschema.exceptions.best_match(error.context)
        raise InputError(config_file, *_plain(error))


def read_yaml(path):
    """A YAML file's content; a syntax error names the file, line and column (Snakemake's own
    message for a --configfile names none of them)."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = " ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) or str(
            exc
        )
        start = getattr(exc, "context_mark", None)
        if start and mark and start.line != mark.line:
            problem += f" (the construct began at line {start.line + 1}, column {start.column + 1})"
        raise InputError(path, where, f"not valid YAML: {problem}") from exc


def load(path):
    """Read, validate and check a config file; return it with defaults filled in."""
    return check(read_yaml(path), path)


def check(config, config_file="config", base_dir="."):
    """The one check of a config: schema (validated once, filling in the schema's defaults) and
    semantic checks. Returns a deep copy with the defaults filled in; `config` is unchanged."""
    if not isinstance(config, dict):
        raise InputError(config_file, "(top level)", "the config must be a mapping")
    config = deepcopy(config)
    check_schema(config, config_file, fill_defaults=True)
    base = Path(base_dir)
    models = config["models"]
    check_model_parameters(models, config_file)
    check_preprocessing(config, config_file)
    for dname, dataset in config["datasets"].items():
        where = f"datasets.{dname}"
        for key in ("matrix", "samples", "units", "transcriptome", "tx2gene", "gtf"):
            if key in dataset and not (base / dataset[key]).is_file():
                raise InputError(config_file, f"{where}.{key}", f"file not found: {dataset[key]}")
        id_map = dataset.get("id_map") or {}
        if id_map.get("file") and not (base / id_map["file"]).is_file():
            raise InputError(config_file, f"{where}.id_map.file", f"file not found: {id_map['file']}")
        if dataset.get("labels"):
            check_labels_source(dataset["source"], config_file, where)
        for gname, group in dataset["gene_groups"].items():
            if isinstance(group, dict) and not (base / group["gmt"]).is_file():
                raise InputError(config_file, f"{where}.gene_groups.{gname}.gmt", f"file not found: {group['gmt']}")
        groups = group_names(config, dname, base_dir, config_file)
        for tname, task in dataset["tasks"].items():
            twhere = f"{where}.tasks.{tname}"
            if task["type"] == "survival" and task.get("min_class_size") is not None:
                raise InputError(
                    config_file, f"{twhere}.min_class_size", "applies to binary and multiclass tasks, not survival"
                )
            for mname in task["models"]:
                if mname not in models:
                    raise InputError(
                        config_file,
                        f"{twhere}.models",
                        f"model '{mname}' is not defined under 'models' (defined: {sorted(models)})",
                    )
                kind = models[mname]["kind"]
                if kind not in MODEL_KINDS[task["type"]]:
                    raise InputError(
                        config_file,
                        f"{twhere}.models",
                        f"model '{mname}' (kind {kind}) cannot fit a {task['type']} task; "
                        f"use one of {sorted(MODEL_KINDS[task['type']])}",
                    )
            for gname in task.get("groups", []):
                if gname not in groups:
                    raise InputError(
                        config_file,
                        f"{twhere}.groups",
                        f"gene group '{gname}' is not defined for dataset '{dname}' (defined: {groups})",
                    )
            cv = cv_settings(config, dname, tname)
            if cv["scheme"] != "kfold" and not cv.get("group_by"):
                raise InputError(
                    config_file,
                    f"{twhere}.cv.scheme",
                    f"scheme {cv['scheme']} needs cv.group_by (the sample-sheet column whose groups are left out)",
                )
            check_random_sets(config, dname, tname, config_file, base_dir)
            gate = task.get("gate")
            if gate:
                if gate["metric"] not in METRICS[task["type"]] or gate["metric"] in LOWER_IS_BETTER:
                    allowed = [m for m in METRICS[task["type"]] if m not in LOWER_IS_BETTER]
                    raise InputError(
                        config_file,
                        f"{twhere}.gate.metric",
                        f"'{gate['metric']}' cannot gate a {task['type']} task; use one of {allowed}",
                    )
    return config


def check_random_sets(config, dataset, task, config_file="config", base_dir="."):
    """`random_sets` names groups and models of the task, never an ALL group (its random sets
    would be the group itself); `gate.beat_random` needs random sets, enough of them to reach
    `gate.random_p`, for every (group, model) it gates. Checked here, before any training."""
    where = f"datasets.{dataset}.tasks.{task}"
    task_cfg = config["datasets"][dataset]["tasks"][task]
    spec = task_cfg.get("random_sets") or {}
    groups, entries = task_groups(config, dataset, task, base_dir), config["datasets"][dataset]["gene_groups"]
    for gname in spec.get("groups", []):
        if gname not in groups:
            raise InputError(
                config_file,
                f"{where}.random_sets.groups",
                f"gene group '{gname}' is not one of the task's groups ({groups})",
            )
        if entries.get(gname) == "ALL":
            raise InputError(
                config_file,
                f"{where}.random_sets.groups",
                f"group '{gname}' is ALL: a random set of all genes is the group itself; list a smaller group",
            )
    for mname in spec.get("models", []):
        if mname not in task_cfg["models"]:
            raise InputError(
                config_file,
                f"{where}.random_sets.models",
                f"model '{mname}' is not one of the task's models ({task_cfg['models']})",
            )
    gate = gate_settings(config, dataset, task)
    if not gate["beat_random"]:
        return
    count = random_sets_settings(config, dataset, task)["count"]
    covered = {(g, m) for g, m, _ in random_set_jobs_of_task(config, dataset, task, base_dir)}
    missing = [f"{g}/{m}" for g in groups for m in task_cfg["models"] if (g, m) not in covered]
    if missing:
        raise InputError(
            config_file,
            f"{where}.gate.beat_random",
            f"needs random gene sets for every gated model, but {', '.join(missing)} have none; set "
            f"{where}.random_sets.count (and its groups/models), or narrow the task's groups/models",
        )
    if 1 / (1 + count) > gate["random_p"]:
        raise InputError(
            config_file,
            f"{where}.random_sets.count",
            f"{count} random sets can never give a p-value <= gate.random_p {gate['random_p']} "
            f"(the smallest is 1 / (1 + {count})); use at least {math.ceil(1 / gate['random_p'] - 1)}",
        )


def check_labels_source(source, config_file, where):
    """Dataset-level `labels` only where the sample sheet passes through them (LABELLED_SOURCES)."""
    if source in LABELLED_SOURCES:
        return
    inner = {"xena": "xena.labels", "geo": "geo.labels", "gdc": "gdc.labels_table.labels"}.get(source)
    raise InputError(
        config_file,
        f"{where}.labels",
        f"dataset-level labels apply to the sources {list(LABELLED_SOURCES)}, not {source}"
        + (f": derive them under {where}.{inner}" if inner else ": put the labels in the sample sheet"),
    )


def check_model_parameters(models, config_file="config"):
    """Every `params`/`search` key must be a parameter the model kind accepts: a typo would
    otherwise fail every training job, or worse, be ignored."""
    if not any(m.get("params") or m.get("search") for m in models.values()):
        return  # nothing to check, and no need to import scikit-learn while Snakemake parses
    from metasig.learn.models import accepted_parameters

    for mname, model in models.items():
        for section in ("params", "search"):
            accepted = accepted_parameters(model["kind"])[section]
            for key in model.get(section) or {}:
                if key not in accepted:
                    close = difflib.get_close_matches(key, accepted, n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    raise InputError(
                        config_file,
                        f"models.{mname}.{section}.{key}",
                        f"unknown parameter for model kind {model['kind']}{hint} (accepted: {', '.join(accepted)})",
                    )
        if model["kind"] == "svm":
            from metasig.learn.svm import KERNELS

            kernels = [(model.get("params") or {}).get("kernel", "rbf"), *(model.get("search") or {}).get("kernel", [])]
            for kernel in kernels:
                if kernel not in KERNELS:
                    problem = f"kernel {kernel!r} is not supported; use one of {KERNELS}"
                    raise InputError(config_file, f"models.{mname}.kernel", problem)


def check_preprocessing(config, config_file="config"):
    """`pca` is a whole number of components (>= 1) or a variance fraction in (0, 1): 1.5 is neither."""
    places = [("preprocessing", config.get("preprocessing"))]
    places += [(f"datasets.{d}.preprocessing", ds.get("preprocessing")) for d, ds in config["datasets"].items()]
    places += [(f"models.{m}.preprocessing", model.get("preprocessing")) for m, model in config["models"].items()]
    for where, settings in places:
        value = (settings or {}).get("pca")
        if value is not None and value >= 1 and float(value) != int(value):
            raise InputError(
                config_file,
                f"{where}.pca",
                f"{value} is neither a number of components (a whole number) nor a variance fraction in (0, 1)",
            )


# ---- helpers for the Snakefile -------------------------------------------------------------


GMT_FORMAT = "one gene set per line: name<TAB>description<TAB>gene<TAB>gene..."


@functools.lru_cache(maxsize=32)
def _parse_gmt(path, _stamp):
    """Sets of a GMT file as ((name, safe name, genes), ...); cached per (path, mtime, size) because the
    Snakefile asks for a dataset's groups many times while it builds the DAG."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            path, "(file)", f"not UTF-8 text ({exc.reason} at byte {exc.start}); save the GMT file as UTF-8"
        ) from exc
    sets, seen = [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise InputError(
                path,
                f"line {number}",
                f"not tab-separated (a GMT file has {GMT_FORMAT}; spaces or commas do not separate fields)",
            )
        fields = [f.strip() for f in line.split("\t")]
        name = fields[0]
        if not name:
            raise InputError(path, f"line {number}", "the gene set has no name (the first field is empty)")
        if name in seen:
            raise InputError(
                path, f"line {number}", f"gene set '{name}' is defined twice (lines {seen[name]} and {number})"
            )
        seen[name] = number
        sets.append((name, tuple(g for g in fields[2:] if g)))
    if not sets:
        raise InputError(path, "(file)", f"the GMT file is empty; expected {GMT_FORMAT}")
    taken, out = set(), []
    for name, genes in sets:  # safe names in file order, so suffixes do not depend on `sets:`
        safe = safe_name(name, taken)
        taken.add(safe)
        out.append((name, safe, genes))
    return tuple(out)


def _gmt(path):
    path = Path(path)
    stat = path.stat()
    return _parse_gmt(str(path), (stat.st_mtime_ns, stat.st_size))


def read_gmt(path):
    """GMT: one set per line, name<TAB>description<TAB>gene<TAB>gene... -> {name: [genes]}.
    An empty file, a line without tabs or a repeated set name is an InputError naming the file."""
    return {name: list(genes) for name, _, genes in _gmt(path)}


def safe_name(name, taken=()):
    """A set name usable as a group name (letters, digits, '_' and '-'): real GO, Reactome and
    WikiPathways names hold spaces, colons and slashes. Runs of other characters become '_',
    long names are cut (they end up in file paths), and a clash gets a numeric suffix."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name)).strip("_")[:100] or "set"
    out, n = base, 1
    while out in taken:
        n += 1
        out = f"{base}_{n}"
    return out


def _expand(config, dataset, base_dir=".", config_file="config"):
    """(groups, originals): groups = name -> 'ALL' or a list of genes, with GMT entries expanded;
    originals = group name -> the set's name as written in the GMT file, for renamed sets."""
    groups, originals = {}, {}
    where = f"datasets.{dataset}.gene_groups"
    entries = config["datasets"][dataset]["gene_groups"]
    inline = {g for g, spec in entries.items() if not isinstance(spec, dict)}
    for gname, group in entries.items():
        if not isinstance(group, dict):
            groups[gname] = group
            continue
        parsed = _gmt(Path(base_dir) / group["gmt"])
        sets = {name: list(genes) for name, _, genes in parsed}
        safe = {name: gid for name, gid, _ in parsed}
        by_safe = {gid: name for name, gid, _ in parsed}
        for wanted in group.get("sets", list(sets)):
            name = wanted if wanted in sets else by_safe.get(wanted)
            if name is None:
                raise InputError(group["gmt"], wanted, "gene set not found in this GMT file")
            if not sets[name]:
                raise InputError(group["gmt"], name, "the gene set lists no genes")
            gid = safe[name]
            if gid in groups or gid in inline:
                raise InputError(
                    config_file,
                    f"{where}.{gname}",
                    f"gene set '{name}' of {group['gmt']} gives group name '{gid}', which another group of "
                    f"dataset '{dataset}' already has; rename one of them",
                )
            groups[gid] = sets[name]
            if gid != name:
                originals[gid] = name
    return groups, originals


def expanded_groups(config, dataset, base_dir=".", config_file="config"):
    """Gene groups of a dataset with GMT entries expanded: name -> 'ALL' or a list of genes."""
    return _expand(config, dataset, base_dir, config_file)[0]


def group_originals(config, dataset, base_dir="."):
    """Group name -> the GMT set name it was made from, for sets renamed to a safe name."""
    return _expand(config, dataset, base_dir)[1]


def group_names(config, dataset, base_dir=".", config_file="config"):
    return list(expanded_groups(config, dataset, base_dir, config_file))


def task_groups(config, dataset, task, base_dir="."):
    return config["datasets"][dataset]["tasks"][task].get("groups") or group_names(config, dataset, base_dir)


def jobs(config, base_dir="."):
    """Every (dataset, task, group, model) the workflow trains, in config order."""
    out = []
    for dname, dataset in config["datasets"].items():
        for tname, task in dataset["tasks"].items():
            for gname in task_groups(config, dname, tname, base_dir):
                for mname in task["models"]:
                    out.append((dname, tname, gname, mname))
    return out


def random_sets_settings(config, dataset, task):
    """A task's random-gene-set control with the schema's defaults: {"count", ["groups"], ["models"]}."""
    return {**schema_defaults("random_sets"), **(config["datasets"][dataset]["tasks"][task].get("random_sets") or {})}


def random_set_jobs_of_task(config, dataset, task, base_dir="."):
    """(group, model, count) of every random-set job of one task (none when count is 0)."""
    spec = random_sets_settings(config, dataset, task)
    if not spec["count"]:
        return []
    entries = config["datasets"][dataset]["gene_groups"]
    default = [g for g in task_groups(config, dataset, task, base_dir) if entries.get(g) != "ALL"]
    models = spec.get("models") or config["datasets"][dataset]["tasks"][task]["models"]
    return [(g, m, int(spec["count"])) for g in spec.get("groups") or default for m in models]


def random_set_jobs(config, base_dir="."):
    """Every (dataset, task, group, model) with random gene sets, in config order (a subset of `jobs`)."""
    return [
        (d, t, g, m)
        for d, dataset in config["datasets"].items()
        for t in dataset["tasks"]
        for g, m, _ in random_set_jobs_of_task(config, d, t, base_dir)
    ]


def model_settings(config, model):
    """A model's config as its training job uses it: XGBoost kinds get the study's `device`
    (unless the model sets `params.device` itself); other kinds are unchanged."""
    cfg = config["models"][model]
    device = config.get("device", schema_defaults()["device"])
    if cfg["kind"] not in XGBOOST_KINDS or device == "cpu" or "device" in (cfg.get("params") or {}):
        return cfg
    return {**cfg, "params": {**(cfg.get("params") or {}), "device": device}}


def uses_gpu(config, model):
    """Whether the model's training job asks the scheduler for a GPU."""
    return str((model_settings(config, model).get("params") or {}).get("device", "cpu")).startswith("cuda")


def cv_settings(config, dataset, task):
    return {**schema_defaults("cv"), **config.get("cv", {}), **config["datasets"][dataset]["tasks"][task].get("cv", {})}


def fold_settings(config, dataset, task):
    """What a task's samples are checked against before any training (metasig.data.checks.check_folds):
    the fold counts, and with grouped CV the group column and scheme (only then, so that the
    checks' inputs of an ungrouped study do not change)."""
    cv = cv_settings(config, dataset, task)
    keys = ("outer_folds", "inner_folds") + (("group_by", "scheme") if cv.get("group_by") else ())
    return {k: cv[k] for k in keys}


def gate_settings(config, dataset, task):
    task_cfg = config["datasets"][dataset]["tasks"][task]
    return {**gate_defaults(task_cfg["type"]), **task_cfg.get("gate", {})}


def preprocessing_settings(config, dataset):
    """Global preprocessing, overridden by the dataset's (a model's own is merged over this one by
    metasig.learn.models.build, which receives the model's settings)."""
    return {
        **schema_defaults("preprocessing"),
        **config.get("preprocessing", {}),
        **config["datasets"][dataset].get("preprocessing", {}),
    }


def normalization(config, dataset):
    ds = config["datasets"][dataset]
    return resolve_normalization(ds, ds["unit"])


def resolve_normalization(dataset_cfg, unit):
    """The normalization a dataset really gets: its `normalization` (schema default if absent),
    with 'auto' resolved for the matrix's unit."""
    method = dataset_cfg.get("normalization", schema_defaults("dataset")["normalization"])
    return AUTO_NORMALIZATION.get(unit, "none") if method == "auto" else method


def display_label(config, dataset):
    """The sample-sheet column to colour samples by in QC plots: the first task's label (or event)."""
    task = next(iter(config["datasets"][dataset]["tasks"].values()))
    return task["event"] if task["type"] == "survival" else task["label"]


def main(argv=None):
    """`python -m metasig.config FILE...`: check config files as the workflow would (Snakemake
    reads a --configfile itself, and its YAML error names no line or column)."""
    status = 0
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            load(path)
            print(f"{path}: OK")
        except InputError as exc:
            print(exc, file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
