"""Raw reads (FASTQ, SRA runs, BAM) to the expression-matrix contract: validation, quantification, QC."""
