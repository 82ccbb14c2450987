# From sequencing reads to the expression matrix: validate -> fastp -> salmon -> (tximport in
# load_dataset), or BAM -> featureCounts; MultiQC and a mapping QC table on the side.


from metasig.reads.transcripts import transcript_inputs


rule validate_reads:
    input:
        lambda wildcards: [
            f
            for col in ("fq1", "fq2", "bam")
            if col in units(wildcards.dataset)
            for f in units(wildcards.dataset)[col].dropna()
        ],
        transcripts=lambda wildcards: list(
            transcript_inputs(
                config["datasets"][wildcards.dataset], wildcards.dataset
            ).values()
        ),
    output:
        "results/{dataset}/qc/validated_units.tsv",
    log:
        "logs/{dataset}/validate_reads.log",
    benchmark:
        "benchmarks/{dataset}/validate_reads.tsv"
    conda:
        "../envs/data.yaml"
    threads: 4
    params:
        units=lambda wildcards: units(wildcards.dataset),
        transcripts=lambda wildcards: transcript_inputs(
            config["datasets"][wildcards.dataset], wildcards.dataset
        ),
    script:
        "../scripts/validate_reads.py"


rule sra_fetch:
    output:
        "results/{dataset}/sra/{accession}_1.fastq.gz",
        "results/{dataset}/sra/{accession}_2.fastq.gz",
    log:
        "logs/{dataset}/sra/{accession}.log",
    conda:
        "../envs/sra.yaml"
    script:
        "../scripts/sra_fetch.py"


rule fastp_pe:
    input:
        fq=raw_fastq,
        validated="results/{dataset}/qc/validated_units.tsv",
    output:
        r1="results/{dataset}/fastp/{sample}-{unit}.1.fastq.gz",
        r2="results/{dataset}/fastp/{sample}-{unit}.2.fastq.gz",
        json="results/{dataset}/fastp/{sample}-{unit}.json",
        html="results/{dataset}/fastp/{sample}-{unit}.html",
    log:
        "logs/{dataset}/fastp/{sample}-{unit}.log",
    benchmark:
        "benchmarks/{dataset}/fastp/{sample}-{unit}.tsv"
    conda:
        "../envs/fastp.yaml"
    threads: 2
    shell:
        "fastp --in1 {input.fq[0]} --in2 {input.fq[1]} --out1 {output.r1} --out2 {output.r2}"
        " --json {output.json} --html {output.html} --thread {threads} 2> {log}"


rule fastp_se:
    input:
        fq=raw_fastq,
        validated="results/{dataset}/qc/validated_units.tsv",
    output:
        r1="results/{dataset}/fastp/{sample}-{unit}.se.fastq.gz",
        json="results/{dataset}/fastp/{sample}-{unit}.se.json",
        html="results/{dataset}/fastp/{sample}-{unit}.se.html",
    log:
        "logs/{dataset}/fastp/{sample}-{unit}.se.log",
    benchmark:
        "benchmarks/{dataset}/fastp/{sample}-{unit}.se.tsv"
    conda:
        "../envs/fastp.yaml"
    threads: 2
    shell:
        "fastp --in1 {input.fq[0]} --out1 {output.r1}"
        " --json {output.json} --html {output.html} --thread {threads} 2> {log}"


rule salmon_index:
    input:
        transcriptome_path,
        # the transcriptome's IDs are checked against the gene map before salmon indexes it
        validated="results/{dataset}/qc/validated_units.tsv",
    output:
        directory("results/{dataset}/salmon/index"),
    log:
        "logs/{dataset}/salmon_index.log",
    cache: True
    conda:
        "../envs/salmon.yaml"
    threads: 2
    shell:
        "salmon index --transcripts {input} --index {output} --threads {threads} > {log} 2>&1"


# --minAssignedFrags 1: a sample that barely maps is quantified and flagged by mapping QC
# rather than failing the whole run.
rule salmon_quant:
    input:
        unpack(trimmed_fastq),
        index="results/{dataset}/salmon/index",
    output:
        directory("results/{dataset}/salmon/{sample}"),
    log:
        "logs/{dataset}/salmon/{sample}.log",
    benchmark:
        "benchmarks/{dataset}/salmon/{sample}.tsv"
    conda:
        "../envs/salmon.yaml"
    threads: 2
    params:
        reads=lambda wildcards, input: (
            f"--mates1 {' '.join(input.r1)} --mates2 {' '.join(input.r2)}"
            if input.r2
            else f"--unmatedReads {' '.join(input.r1)}"
        ),
    shell:
        "salmon quant --index {input.index} --libType A --validateMappings --minAssignedFrags 1 {params.reads}"
        " --threads {threads} --output {output} > {log} 2>&1"


rule featurecounts:
    input:
        bams=lambda wildcards: mreads.bam_files(units(wildcards.dataset)),
        gtf=lambda wildcards: dataset_cfg(wildcards)["gtf"],
        validated="results/{dataset}/qc/validated_units.tsv",
    output:
        counts="results/{dataset}/featurecounts/counts.txt",
        summary="results/{dataset}/featurecounts/counts.txt.summary",
    log:
        "logs/{dataset}/featurecounts.log",
    conda:
        "../envs/subread.yaml"
    threads: 2
    params:
        pairs=lambda wildcards: (
            "-p --countReadPairs" if dataset_cfg(wildcards)["paired"] else ""
        ),
    shell:
        "featureCounts {params.pairs} -T {threads} -a {input.gtf} -o {output.counts}"
        " {input.bams} > {log} 2>&1"


rule mapping_qc:
    input:
        unpack(mapping_qc_inputs),
    output:
        "results/{dataset}/qc/mapping.tsv",
    log:
        "logs/{dataset}/mapping_qc.log",
    conda:
        "../envs/data.yaml"
    params:
        units=lambda wildcards: units(wildcards.dataset),
        floor=lambda wildcards: dataset_cfg(wildcards)["min_mapping_rate"],
        exclude=lambda wildcards: dataset_cfg(wildcards)["exclude_low_mapping"],
    script:
        "../scripts/mapping_qc.py"


rule plot_mapping:
    input:
        "results/{dataset}/qc/mapping.tsv",
    output:
        report(
            "results/plots/{dataset}/mapping.svg",
            caption="../resources/report/mapping.rst",
            category="{dataset}",
            subcategory="Quality control",
        ),
    log:
        "logs/{dataset}/plot_mapping.log",
    conda:
        "../envs/report.yaml"
    params:
        floor=lambda wildcards: dataset_cfg(wildcards)["min_mapping_rate"],
    script:
        "../scripts/plot_mapping.py"


rule multiqc:
    input:
        unpack(mapping_qc_inputs),
    output:
        report(
            "results/{dataset}/qc/multiqc.html",
            caption="../resources/report/multiqc.rst",
            category="{dataset}",
            subcategory="Quality control",
        ),
    log:
        "logs/{dataset}/multiqc.log",
    conda:
        "../envs/multiqc.yaml"
    shell:
        "multiqc --force --no-data-dir --outdir $(dirname {output}) --filename multiqc.html"
        " {input} > {log} 2>&1"


rule tpm_matrix:
    input:
        unpack(load_inputs),
    output:
        "results/{dataset}/tpm.parquet",
    log:
        "logs/{dataset}/tpm_matrix.log",
    conda:
        "../envs/data.yaml"
    params:
        reads=lambda wildcards, input: read_inputs(wildcards.dataset, input),
    script:
        "../scripts/tpm_matrix.py"


# A simulated cohort is one job per dataset; its files are known from the config, so each
# simulated dataset gets its own rule with the exact outputs.
for simulated in [
    d for d, ds in config["datasets"].items() if ds["source"] == "simulated"
]:
    simulated_files = mreads.simulated_outputs(
        simulated, config["datasets"][simulated]["simulation"]
    )

    rule:
        name:
            f"simulate_{simulated}"
        output:
            transcriptome=simulated_files["transcriptome"],
            tx2gene=simulated_files["tx2gene"],
            samples=simulated_files["samples"],
            truth=simulated_files["truth"],
            reads=simulated_files["reads"],
        log:
            f"logs/{simulated}/simulate.log",
        conda:
            "../envs/simulate.yaml"
        params:
            simulation=config["datasets"][simulated]["simulation"],
        script:
            "../scripts/simulate_reads.py"
