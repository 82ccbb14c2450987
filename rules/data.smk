rule load_dataset:
    input:
        unpack(load_inputs),
        gmt=gmt_inputs,
    output:
        matrix="results/{dataset}/matrix.parquet",
        samples="results/{dataset}/samples.tsv",
    log:
        "logs/{dataset}/load.log",
    benchmark:
        "benchmarks/{dataset}/load_dataset.tsv"
    conda:
        "../envs/data.yaml"
    params:
        dataset=dataset_cfg,
        groups=lambda wildcards: mconfig.expanded_groups(config, wildcards.dataset),
        cache=config["cache"],
        config_file=CONFIG_FILE,
        reads=lambda wildcards, input: read_inputs(wildcards.dataset, input),
        folds=lambda wildcards: fold_settings(wildcards.dataset),
    script:
        "../scripts/load_dataset.py"


# normalized.parquet is the matrix every later step reads ("normalized" as far as it can be
# before the folds split the samples): per-sample transforms (log2p1, log2cpm) are applied here;
# with in-fold normalization (deseq2, vst: the default for counts) it holds the counts unchanged,
# and the training job normalizes inside each training fold (metasig.learn.preprocess).
rule normalize:
    input:
        "results/{dataset}/matrix.parquet",
    output:
        "results/{dataset}/normalized.parquet",
    log:
        "logs/{dataset}/normalize.log",
    benchmark:
        "benchmarks/{dataset}/normalize.tsv"
    conda:
        "../envs/data.yaml"
    params:
        method=lambda wildcards: mconfig.normalization(config, wildcards.dataset),
    script:
        "../scripts/normalize.py"


rule gene_groups:
    input:
        matrix="results/{dataset}/normalized.parquet",
        gmt=gmt_inputs,
    output:
        "results/{dataset}/groups.json",
    log:
        "logs/{dataset}/gene_groups.log",
    benchmark:
        "benchmarks/{dataset}/gene_groups.tsv"
    conda:
        "../envs/data.yaml"
    params:
        groups=lambda wildcards: mconfig.expanded_groups(config, wildcards.dataset),
        covariates=lambda wildcards: dataset_cfg(wildcards).get("covariates", []),
        config_file=CONFIG_FILE,
        originals=lambda wildcards: mconfig.group_originals(config, wildcards.dataset),
    script:
        "../scripts/gene_groups.py"


rule qc_plots:
    input:
        matrix="results/{dataset}/normalized.parquet",
        samples="results/{dataset}/samples.tsv",
    output:
        qc=report(
            "results/plots/{dataset}/qc.svg",
            caption="../resources/report/qc.rst",
            category="{dataset}",
            subcategory="Quality control",
        ),
        pca=report(
            "results/plots/{dataset}/pca.svg",
            caption="../resources/report/pca.rst",
            category="{dataset}",
            subcategory="Quality control",
        ),
    log:
        "logs/{dataset}/qc_plots.log",
    benchmark:
        "benchmarks/{dataset}/qc_plots.tsv"
    conda:
        "../envs/report.yaml"
    params:
        colour_by=lambda wildcards: mconfig.display_label(config, wildcards.dataset),
    script:
        "../scripts/qc_plots.py"
