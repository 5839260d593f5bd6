"""Pseudo-labels as datasets: quality signals, filters, the prompt ontology, exports and the QC sheet."""
