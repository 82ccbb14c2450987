"""Configuration: schema validation with messages that name the field, semantic checks, and the
helpers the Snakefile uses to enumerate jobs. Everything here runs before any job starts."""

from copy import deepcopy
from pathlib import Path

import jsonschema
import yaml

from metasig.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "config" / "schemas" / "config.schema.yaml"

MODEL_KINDS = {
    "binary": {"linear_sweep", "elasticnet", "random_forest", "xgboost"},
    "multiclass": {"linear_sweep", "elasticnet", "random_forest", "xgboost"},
    "survival": {"coxph", "xgboost_cox"},
}
METRICS = {
    "binary": ("roc_auc", "pr_auc", "balanced_accuracy", "f1", "mcc", "accuracy"),
    "multiclass": ("roc_auc", "pr_auc", "balanced_accuracy", "f1", "mcc", "accuracy"),
    "survival": ("c_index", "ibs"),
}
# Model kinds that train with XGBoost, so can use a GPU (config key `device`).
XGBOOST_KINDS = ("xgboost", "xgboost_cox")
# Metrics where lower is better cannot be gated with a minimum.
LOWER_IS_BETTER = {"ibs"}
DEFAULT_GATE = {
    "binary": {"metric": "roc_auc", "bound": "ci_low", "min": 0.6, "beat_permuted": True},
    "multiclass": {"metric": "roc_auc", "bound": "ci_low", "min": 0.6, "beat_permuted": True},
    "survival": {"metric": "c_index", "bound": "ci_low", "min": 0.55, "beat_permuted": True},
}
DEFAULT_CV = {
    "outer_folds": 5,
    "outer_repeats": 3,
    "inner_folds": 3,
    "bootstrap": 1000,
    "permuted_repeats": 1,
    "n_jobs": 1,
}
DEFAULT_PREPROCESSING = {"min_mean": None, "top_variance": None, "select_k": None, "scale": True}
# Counts default to DESeq2's median-of-ratios + log2, fitted in-fold on every gene (it corrects
# composition, which log2-CPM does not); `vst` adds DESeq2's variance-stabilizing transform.
AUTO_NORMALIZATION = {"counts": "deseq2", "tpm": "log2p1", "fpkm": "log2p1"}


def load_schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _field(path):
    return ".".join(str(p) for p in path) or "(top level)"


def check_schema(config, config_file="config"):
    """Validate against the JSON schema; raise InputError naming the deepest offending field."""
    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        # oneOf/anyOf errors are vague; their most specific sub-error says more.
        while error.context:
            error = jsonschema.exceptions.best_match(error.context)
        raise InputError(config_file, _field(error.absolute_path), error.message)


def load(path):
    """Read, validate and check a config file; return it with defaults filled in."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, "(file)", f"not valid YAML: {exc}") from exc
    return check(config, path)


def check(config, config_file="config", base_dir="."):
    """Schema + semantic checks; returns the config unchanged in meaning (a deep copy)."""
    if not isinstance(config, dict):
        raise InputError(config_file, "(top level)", "the config must be a mapping")
    check_schema(config, config_file)
    config = deepcopy(config)
    base = Path(base_dir)
    models = config["models"]
    for dname, dataset in config["datasets"].items():
        where = f"datasets.{dname}"
        for key in ("matrix", "samples", "units", "transcriptome", "tx2gene", "gtf"):
            if key in dataset and not (base / dataset[key]).is_file():
                raise InputError(config_file, f"{where}.{key}", f"file not found: {dataset[key]}")
        for gname, group in dataset["gene_groups"].items():
            if isinstance(group, dict) and not (base / group["gmt"]).is_file():
                raise InputError(config_file, f"{where}.gene_groups.{gname}.gmt", f"file not found: {group['gmt']}")
        groups = group_names(config, dname, base_dir)
        for tname, task in dataset["tasks"].items():
            twhere = f"{where}.tasks.{tname}"
            for mname in task["models"]:
                if mname not in models:
                    raise InputError(config_file, f"{twhere}.models", f"model '{mname}' is not defined under 'models' (defined: {sorted(models)})")
                kind = models[mname]["kind"]
                if kind not in MODEL_KINDS[task["type"]]:
                    raise InputError(config_file, f"{twhere}.models", f"model '{mname}' (kind {kind}) cannot fit a {task['type']} task; use one of {sorted(MODEL_KINDS[task['type']])}")
            for gname in task.get("groups", []):
                if gname not in groups:
                    raise InputError(config_file, f"{twhere}.groups", f"gene group '{gname}' is not defined for dataset '{dname}' (defined: {groups})")
            gate = task.get("gate")
            if gate:
                if gate["metric"] not in METRICS[task["type"]] or gate["metric"] in LOWER_IS_BETTER:
                    allowed = [m for m in METRICS[task["type"]] if m not in LOWER_IS_BETTER]
                    raise InputError(config_file, f"{twhere}.gate.metric", f"'{gate['metric']}' cannot gate a {task['type']} task; use one of {allowed}")
    return config


# ---- helpers for the Snakefile -------------------------------------------------------------


def read_gmt(path):
    """GMT: one set per line, name<TAB>description<TAB>gene<TAB>gene..."""
    sets = {}
    for line in Path(path).read_text().splitlines():
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) >= 2 and fields[0]:
            sets[fields[0]] = [g for g in fields[2:] if g]
    return sets


def expanded_groups(config, dataset, base_dir="."):
    """Gene groups of a dataset with GMT entries expanded: name -> 'ALL' or a list of genes."""
    out = {}
    for gname, group in config["datasets"][dataset]["gene_groups"].items():
        if isinstance(group, dict):
            sets = read_gmt(Path(base_dir) / group["gmt"])
            wanted = group.get("sets", list(sets))
            for name in wanted:
                if name not in sets:
                    raise InputError(group["gmt"], name, "gene set not found in this GMT file")
                out[name] = sets[name]
        else:
            out[gname] = group
    return out


def group_names(config, dataset, base_dir="."):
    return list(expanded_groups(config, dataset, base_dir))


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


def model_settings(config, model):
    """A model's config as its training job uses it: XGBoost kinds get the study's `device`
    (unless the model sets `params.device` itself); other kinds are unchanged."""
    cfg = config["models"][model]
    device = config.get("device", "cpu")
    if cfg["kind"] not in XGBOOST_KINDS or device == "cpu" or "device" in (cfg.get("params") or {}):
        return cfg
    return {**cfg, "params": {**(cfg.get("params") or {}), "device": device}}


def uses_gpu(config, model):
    """Whether the model's training job asks the scheduler for a GPU."""
    return str((model_settings(config, model).get("params") or {}).get("device", "cpu")).startswith("cuda")


def cv_settings(config, dataset, task):
    return {**DEFAULT_CV, **config.get("cv", {}), **config["datasets"][dataset]["tasks"][task].get("cv", {})}


def gate_settings(config, dataset, task):
    task_cfg = config["datasets"][dataset]["tasks"][task]
    return {**DEFAULT_GATE[task_cfg["type"]], **task_cfg.get("gate", {})}


def preprocessing_settings(config, dataset):
    return {**DEFAULT_PREPROCESSING, **config.get("preprocessing", {}), **config["datasets"][dataset].get("preprocessing", {})}


def normalization(config, dataset):
    ds = config["datasets"][dataset]
    method = ds.get("normalization", "auto")
    return AUTO_NORMALIZATION.get(ds["unit"], "none") if method == "auto" else method


def display_label(config, dataset):
    """The sample-sheet column to colour samples by in QC plots: the first task's label (or event)."""
    task = next(iter(config["datasets"][dataset]["tasks"].values()))
    return task["event"] if task["type"] == "survival" else task["label"]
