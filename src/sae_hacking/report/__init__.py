"""Result reports people open: pair tables, histograms, pages, optional Neuronpedia explanations."""
