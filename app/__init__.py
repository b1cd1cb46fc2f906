"""MedSynth web application: curation, datasets, training jobs, evaluation and reader studies."""
